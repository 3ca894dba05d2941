/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gRPC server end to end (grpc/h2 + grpc/router): the input is what a
 * client sends on one connection after the HTTP/2 preface (frames, HPACK
 * headers, gRPC messages), written to a real unix socket of a real
 * h2_server that dispatches through the real CRI method table. The handlers
 * behind it are stand-ins that answer in the ways the real ones do (a reply
 * now, an error quoting the request, a reply from a later loop turn, several
 * messages), chosen by the request's size. The connection must end (the
 * input is followed by EOF) within a bounded number of loop turns, leaving
 * no connection, call or held request byte behind; ASan and UBSan watch the
 * rest.
 */
#include "autoconf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "api.pb-c.h"
#include "core/error.h"
#include "core/loop.h"
#include "core/util.h"
#include "cri/methods.h"
#include "fuzz.h"
#include "grpc/h2.h"
#include "grpc/router.h"

#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define MAX_TURNS 200000

static struct router *router;
static struct h2_server *server;
static struct sockaddr_un addr;
static size_t pending_later;

struct later {
    uint64_t call_id;
    struct loop_timer *timer;
    uint8_t *reply;
    size_t len;
};

static void on_later(void *arg)
{
    struct later *l = arg;
    struct h2_call *call = h2_call_lookup(l->call_id);
    if (call) {
        struct error *err = NULL;
        if (h2_call_send(call, l->reply, l->len, &err) < 0) {
            h2_call_finish(call, err->grpc_code, err->msg);
            error_free(err);
        } else {
            h2_call_finish(call, GRPC_OK, NULL);
        }
    }
    loop_timer_free(l->timer);
    free(l->reply);
    free(l);
    pending_later--;
}

static void on_cancel(uint64_t call_id, void *arg)
{
    /* The later reply finds the call gone (h2_call_lookup() is NULL then). */
    FUZZ_CHECK(h2_call_lookup(call_id) == NULL);
}

static void handler(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    size_t len = protobuf_c_message_get_packed_size(req);
    _cleanup_free_ uint8_t *bytes = xmalloc(len ? len : 1);
    protobuf_c_message_pack(req, bytes);
    switch (len % 4) {
    case 0:
        rpc_reply(call, req);
        break;
    case 1:
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT, "refused: %.*s", (int)len, (const char *)bytes);
        break;
    case 2: {
        struct later *l = xcalloc(1, sizeof(*l));
        l->call_id = h2_call_id(call);
        l->reply = steal_ptr(&bytes);
        l->len = len;
        l->timer = loop_timer_new(on_later, l);
        loop_timer_arm(l->timer, 0);
        h2_call_on_cancel(call, on_cancel, NULL);
        pending_later++;
        break;
    }
    default: {
        struct error *err = NULL;
        if (rpc_send(call, req, &err) == 0 && rpc_send(call, req, &err) == 0) {
            h2_call_finish(call, GRPC_OK, NULL);
        } else {
            h2_call_finish(call, err->grpc_code, err->msg);
            error_free(err);
        }
        break;
    }
    }
}

static void setup(void)
{
    fuzz_init_loop();
    router = cri_methods_router_new_with(handler, NULL);
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/h2.sock", fuzz_tmpdir());
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
    FUZZ_CHECK(listen(fd, 16) == 0);
    struct h2_server_opts opts = {
        .max_recv_msg = 64 << 10,
        .max_send_msg = 64 << 10,
        .max_streams = 32,
        .max_connections = 4,
    };
    struct error *err = NULL;
    server = h2_server_new(fd, &opts, router_dispatch, router, &err);
    FUZZ_CHECK(server);
}

static void turn(void)
{
    FUZZ_CHECK(event_base_loop(loop_base(), EVLOOP_NONBLOCK) >= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!server)
        setup();
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    FUZZ_CHECK(c >= 0);
    FUZZ_CHECK(connect(c, (struct sockaddr *)&addr, sizeof(addr)) == 0);
    size_t total = strlen(PREFACE) + size;
    _cleanup_free_ uint8_t *out = xmalloc(total);
    memcpy(out, PREFACE, strlen(PREFACE));
    if (size)
        memcpy(out + strlen(PREFACE), data, size);

    size_t sent = 0;
    bool write_done = false, closed = false;
    for (int n = 0; !closed || h2_server_connection_count(server) > 0 || pending_later > 0; n++) {
        FUZZ_CHECK(n < MAX_TURNS);
        if (!write_done) {
            ssize_t w = send(c, out + sent, total - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0)
                sent += (size_t)w;
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                sent = total; /* the server closed first */
            if (sent == total) {
                shutdown(c, SHUT_WR);
                write_done = true;
            }
        }
        turn();
        char buf[65536];
        ssize_t r = -1;
        while (!closed && (r = recv(c, buf, sizeof(buf), MSG_DONTWAIT)) != 0) {
            if (r < 0) {
                if (errno == ECONNRESET)
                    closed = true;
                else
                    FUZZ_CHECK(errno == EAGAIN || errno == EINTR);
                break;
            }
        }
        if (r == 0)
            closed = true;
    }
    close(c);
    turn(); /* deferred frees */
    FUZZ_CHECK(h2_server_call_count(server) == 0);
    FUZZ_CHECK(h2_server_held_bytes(server) == 0);
    return 0;
}
