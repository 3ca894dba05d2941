/* SPDX-License-Identifier: Apache-2.0 */
/*
 * WebSocket behind ws.h. wslay pulls input through a callback: ws_feed()
 * points it at the bytes just read, and the callback hands them over until
 * they are used up (then "would block"). Output frames are pushed into the
 * caller's evbuffer as soon as they are queued, so the connection's own
 * output high-water mark governs backpressure.
 */
#include "autoconf.h"

#include <string.h>

#include <event2/buffer.h>
#include <wslay/wslay.h>

#include "core/base64.h"
#include "core/util.h"
#include "image/xferlib.h"
#include "stream/ws.h"

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

char *ws_accept_key(const char *key, struct error **err)
{
    struct xferlib_hash h;
    if (xferlib_hash_init(&h, XFERLIB_SHA1, err) < 0)
        return NULL;
    xferlib_hash_update(&h, key, strlen(key));
    xferlib_hash_update(&h, ws_guid, strlen(ws_guid));
    uint8_t digest[XFERLIB_HASH_MAX];
    size_t n = xferlib_hash_final(&h, digest);
    return base64_encode(digest, n);
}

/* ---- the session ---- */

struct ws {
    wslay_event_context_ptr ctx;
    struct evbuffer *out;
    ws_msg_cb on_msg;
    void *arg;
    const uint8_t *in; /* bytes being fed */
    size_t in_len;
};

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    struct ws *w = user;
    if (w->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < w->in_len ? len : w->in_len;
    memcpy(buf, w->in, n);
    w->in += n;
    w->in_len -= n;
    return (ssize_t)n;
}

static ssize_t on_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    struct ws *w = user;
    if (evbuffer_add(w->out, data, len) < 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void on_msg_recv(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
                        void *user)
{
    struct ws *w = user;
    if (a->opcode == WSLAY_TEXT_FRAME || a->opcode == WSLAY_BINARY_FRAME)
        w->on_msg(w->arg, a->opcode == WSLAY_TEXT_FRAME ? WS_OPCODE_TEXT : WS_OPCODE_BINARY, a->msg,
                  a->msg_length);
}

struct ws *ws_new(struct evbuffer *out, ws_msg_cb on_msg, void *arg)
{
    static const struct wslay_event_callbacks cbs = {
        .recv_callback = on_recv,
        .send_callback = on_send,
        .on_msg_recv_callback = on_msg_recv,
    };
    struct ws *w = xcalloc(1, sizeof(*w));
    w->out = out;
    w->on_msg = on_msg;
    w->arg = arg;
    if (wslay_event_context_server_init(&w->ctx, &cbs, w) != 0) {
        /* wslay fails only when malloc does. */
        util_die_invariant(__FILE__, __LINE__, "wslay_event_context_server_init");
    }
    wslay_event_config_set_max_recv_msg_length(w->ctx, WS_MSG_MAX);
    return w;
}

void ws_free(struct ws *w)
{
    if (!w)
        return;
    wslay_event_context_free(w->ctx);
    free(w);
}

static void flush(struct ws *w)
{
    if (wslay_event_want_write(w->ctx))
        wslay_event_send(w->ctx);
}

int ws_feed(struct ws *w, const uint8_t *data, size_t n)
{
    w->in = data;
    w->in_len = n;
    int rc = wslay_event_recv(w->ctx);
    w->in = NULL;
    w->in_len = 0;
    flush(w);
    if (rc != 0 || !wslay_event_want_read(w->ctx))
        return -1;
    return 0;
}

void ws_send(struct ws *w, int opcode, const void *data, size_t n)
{
    struct wslay_event_msg m = {
        .opcode = (uint8_t)(opcode == WS_OPCODE_TEXT ? WSLAY_TEXT_FRAME : WSLAY_BINARY_FRAME),
        .msg = data,
        .msg_length = n,
    };
    /* Fails only once a close was queued: nothing more can be sent anyway. */
    if (wslay_event_queue_msg(w->ctx, &m) == 0)
        flush(w);
}

void ws_close(struct ws *w, uint16_t code)
{
    wslay_event_queue_close(w->ctx, code, NULL, 0);
    flush(w);
}

size_t ws_queued(const struct ws *w)
{
    return wslay_event_get_queued_msg_length(w->ctx);
}
