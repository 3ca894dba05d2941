/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for the gRPC-over-HTTP/2 server: the message framer, grpc-timeout
 * parsing and grpc-message encoding directly, then the server end to end
 * against a small nghttp2 client session written here, over a real unix
 * socket, on the same event_base, with a safety timeout on every wait.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "grpc/h2.h"
#include "grpc/h2_codec.h"
#include "helpers.h"

#define WAIT_MS 10000
#define BIG_REPLY (4u << 20)
#define TC_MAX_STREAMS 256
#define MAX_CLIENTS 128
#define MAX_LATER 128

/* ---- framing, timeouts and message encoding, tested directly ---- */

static size_t frame(uint8_t *out, uint8_t flag, const void *msg, uint32_t len)
{
    out[0] = flag;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
    if (len)
        memcpy(out + 5, msg, len);
    return 5 + (size_t)len;
}

/* The prefix the server writes is the one the framer (and every gRPC client) reads. */
static void test_frame_prefix(void **state)
{
    static const uint32_t lens[] = {0, 1, 255, 256, 65536, 0x01020304, UINT32_MAX};
    for (size_t i = 0; i < ARRAY_SIZE(lens); i++) {
        uint8_t got[H2_FRAME_PREFIX_LEN], want[H2_FRAME_PREFIX_LEN];
        h2_frame_prefix(got, lens[i]);
        frame(want, 0, NULL, 0);
        want[1] = (uint8_t)(lens[i] >> 24);
        want[2] = (uint8_t)(lens[i] >> 16);
        want[3] = (uint8_t)(lens[i] >> 8);
        want[4] = (uint8_t)lens[i];
        assert_memory_equal(got, want, sizeof(want));
    }
    uint8_t wire[16];
    h2_frame_prefix(wire, 3);
    memcpy(wire + H2_FRAME_PREFIX_LEN, "abc", 3);
    struct h2_framer f;
    h2_framer_init(&f, 16, NULL);
    assert_int_equal(h2_framer_feed(&f, wire, 8, NULL), 8);
    size_t len = 0;
    _cleanup_free_ uint8_t *msg = h2_framer_take(&f, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(msg, "abc", 3);
    h2_framer_free(&f);
}

static void test_framer_split_bytes(void **state)
{
    const char *msg = "hello, split world";
    uint8_t wire[64];
    size_t n = frame(wire, 0, msg, (uint32_t)strlen(msg));
    struct h2_framer f;
    h2_framer_init(&f, 1024, NULL);
    for (size_t i = 0; i < n; i++) {
        assert_null(h2_framer_take(&f, &(size_t){0}));
        assert_int_equal(h2_framer_feed(&f, wire + i, 1, NULL), 1);
    }
    size_t len = 0;
    _cleanup_free_ uint8_t *got = h2_framer_take(&f, &len);
    assert_non_null(got);
    assert_int_equal(len, strlen(msg));
    assert_memory_equal(got, msg, len);
    assert_int_equal(f.n_msgs, 1);
    assert_int_equal(h2_framer_end(&f, NULL), 0);
    h2_framer_free(&f);
}

static void test_framer_coalesced(void **state)
{
    uint8_t wire[64];
    size_t n1 = frame(wire, 0, "first", 5);
    size_t n2 = frame(wire + n1, 0, "second!", 7);
    struct h2_framer f;
    h2_framer_init(&f, 1024, NULL);
    /* One chunk with two messages: the framer stops after the first. */
    assert_int_equal(h2_framer_feed(&f, wire, n1 + n2, NULL), (ssize_t)n1);
    assert_int_equal(h2_framer_feed(&f, wire + n1, n2, NULL), 0);
    size_t len = 0;
    _cleanup_free_ uint8_t *a = h2_framer_take(&f, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(a, "first", 5);
    assert_int_equal(h2_framer_feed(&f, wire + n1, n2, NULL), (ssize_t)n2);
    _cleanup_free_ uint8_t *b = h2_framer_take(&f, &len);
    assert_int_equal(len, 7);
    assert_memory_equal(b, "second!", 7);
    assert_int_equal(f.n_msgs, 2);
    h2_framer_free(&f);
}

static void test_framer_prefix_split(void **state)
{
    uint8_t wire[64];
    size_t n = frame(wire, 0, "abcdefghij", 10);
    struct h2_framer f;
    h2_framer_init(&f, 1024, NULL);
    /* Prefix split 3 + 2, body split 4 + 6, as separate DATA frames would. */
    assert_int_equal(h2_framer_feed(&f, wire, 3, NULL), 3);
    assert_int_equal(f.state, H2_FRAMER_PREFIX);
    assert_int_equal(h2_framer_feed(&f, wire + 3, 6, NULL), 6);
    assert_int_equal(f.state, H2_FRAMER_BODY);
    assert_null(h2_framer_take(&f, &(size_t){0}));
    struct error *err = NULL;
    assert_int_equal(h2_framer_end(&f, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INTERNAL);
    error_clear(&err);
    assert_int_equal(h2_framer_feed(&f, wire + 9, n - 9, NULL), (ssize_t)(n - 9));
    size_t len = 0;
    _cleanup_free_ uint8_t *got = h2_framer_take(&f, &len);
    assert_int_equal(len, 10);
    assert_memory_equal(got, "abcdefghij", 10);
    h2_framer_free(&f);
}

static void test_framer_oversize(void **state)
{
    uint8_t wire[5 + 16] = {0, 0, 0, 0x04, 0x01}; /* 1025 bytes announced */
    struct h2_framer f;
    h2_framer_init(&f, 1024, NULL);
    struct error *err = NULL;
    assert_int_equal(h2_framer_feed(&f, wire, sizeof(wire), &err), -1);
    assert_int_equal(err->grpc_code, GRPC_RESOURCE_EXHAUSTED);
    assert_string_equal(err->msg, "received message larger than max (1025 vs. 1024)");
    error_clear(&err);
    /* Nothing of the body was buffered, and the framer stays failed. */
    assert_int_equal(f.body.alloc, 0);
    assert_int_equal(f.state, H2_FRAMER_FAILED);
    assert_int_equal(h2_framer_feed(&f, wire, 1, &err), -1);
    error_clear(&err);
    h2_framer_free(&f);

    /* Exactly at the cap is fine. */
    uint8_t *big = xcalloc(1, 5 + 1024);
    frame(big, 0, NULL, 0);
    big[3] = 0x04;
    h2_framer_init(&f, 1024, NULL);
    assert_int_equal(h2_framer_feed(&f, big, 5 + 1024, NULL), 5 + 1024);
    size_t len = 0;
    free(h2_framer_take(&f, &len));
    assert_int_equal(len, 1024);
    h2_framer_free(&f);
    free(big);
}

static void test_framer_compressed(void **state)
{
    uint8_t wire[16];
    size_t n = frame(wire, 1, "zz", 2);
    const char *no_codec[] = {NULL, "", "identity"};
    for (size_t i = 0; i < ARRAY_SIZE(no_codec); i++) {
        struct h2_framer f;
        struct error *err = NULL;
        h2_framer_init(&f, 1024, no_codec[i]);
        assert_int_equal(h2_framer_feed(&f, wire, n, &err), -1);
        assert_int_equal(err->grpc_code, GRPC_INTERNAL);
        assert_string_equal(err->msg, "compressed flag set but no grpc-encoding");
        error_clear(&err);
        h2_framer_free(&f);
    }
    struct h2_framer f;
    struct error *err = NULL;
    h2_framer_init(&f, 1024, "gzip");
    assert_int_equal(h2_framer_feed(&f, wire, n, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_UNIMPLEMENTED);
    assert_string_equal(err->msg, "grpc-encoding gzip is not supported");
    error_clear(&err);
    h2_framer_free(&f);

    /* grpc-encoding gzip with an uncompressed message is fine. */
    n = frame(wire, 0, "ok", 2);
    h2_framer_init(&f, 1024, "gzip");
    assert_int_equal(h2_framer_feed(&f, wire, n, NULL), (ssize_t)n);
    free(h2_framer_take(&f, &(size_t){0}));
    h2_framer_free(&f);

    /* A flag that is neither 0 nor 1. */
    n = frame(wire, 2, "zz", 2);
    h2_framer_init(&f, 1024, "gzip");
    assert_int_equal(h2_framer_feed(&f, wire, n, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INTERNAL);
    error_clear(&err);
    h2_framer_free(&f);
}

static void test_framer_zero_messages(void **state)
{
    struct h2_framer f;
    h2_framer_init(&f, 1024, NULL);
    assert_int_equal(h2_framer_end(&f, NULL), 0);
    assert_int_equal(f.n_msgs, 0);
    /* An empty message is a message. */
    uint8_t wire[5];
    frame(wire, 0, NULL, 0);
    assert_int_equal(h2_framer_feed(&f, wire, 5, NULL), 5);
    size_t len = 99;
    _cleanup_free_ uint8_t *m = h2_framer_take(&f, &len);
    assert_non_null(m);
    assert_int_equal(len, 0);
    assert_int_equal(f.n_msgs, 1);
    /* A prefix cut short at the end of the stream. */
    assert_int_equal(h2_framer_feed(&f, wire, 2, NULL), 2);
    struct error *err = NULL;
    assert_int_equal(h2_framer_end(&f, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INTERNAL);
    error_clear(&err);
    h2_framer_free(&f);
}

static void test_timeout_parse(void **state)
{
    static const struct {
        const char *s;
        int rc;
        int64_t ns;
    } cases[] = {
        {"1H", 0, 3600LL * 1000000000LL},
        {"2M", 0, 120LL * 1000000000LL},
        {"1S", 0, 1000000000LL},
        {"100m", 0, 100000000LL},
        {"5u", 0, 5000LL},
        {"7n", 0, 7LL},
        {"0S", 0, 0},
        {"12345678S", 0, 12345678LL * 1000000000LL},
        {"99999999H", 0, INT64_MAX},
        {"123456789S", -1, 0},
        {"", -1, 0},
        {"S", -1, 0},
        {"10", -1, 0},
        {"1x", -1, 0},
        {"1s", -1, 0},
        {"-1S", -1, 0},
        {" 1S", -1, 0},
        {"1.5S", -1, 0},
        {"abcS", -1, 0},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        int64_t ns = -42;
        int rc = h2_timeout_parse(cases[i].s, strlen(cases[i].s), &ns);
        if (rc != cases[i].rc)
            fail_msg("grpc-timeout \"%s\": rc %d", cases[i].s, rc);
        if (rc == 0 && ns != cases[i].ns)
            fail_msg("grpc-timeout \"%s\": %lld ns", cases[i].s, (long long)ns);
    }
}

static void test_percent_encode(void **state)
{
    _cleanup_free_ char *a = h2_grpc_message_encode("h\xc3\xa9llo 100% \xe2\x9c\x93\n");
    assert_string_equal(a, "h%C3%A9llo 100%25 %E2%9C%93%0A");
    _cleanup_free_ char *b = h2_grpc_message_encode("plain ASCII ~ {ok}");
    assert_string_equal(b, "plain ASCII ~ {ok}");
    _cleanup_free_ char *c = h2_grpc_message_encode("\x7f\x01");
    assert_string_equal(c, "%7F%01");

    /* Long messages are cut at a character boundary, never inside %XX or UTF-8. */
    char longmsg[3001];
    for (size_t i = 0; i < 1500; i++)
        memcpy(longmsg + 2 * i, "\xc3\xa9", 2);
    longmsg[3000] = '\0';
    _cleanup_free_ char *d = h2_grpc_message_encode(longmsg);
    size_t n = strlen(d);
    assert_true(n <= H2_GRPC_MESSAGE_MAX);
    assert_int_equal(n % 6, 0);
    assert_true(n > H2_GRPC_MESSAGE_MAX - 6);
}

static void test_percent_encode_invalid_utf8(void **state)
{
    /*
     * Error messages quote client input, which need not be UTF-8; clients must
     * be able to decode grpc-message, so each bad byte becomes U+FFFD.
     */
    _cleanup_free_ char *a = h2_grpc_message_encode("a\377b");
    assert_string_equal(a, "a%EF%BF%BDb");
    /* Overlong NUL, a UTF-16 surrogate, a code point past U+10FFFF, a cut sequence. */
    _cleanup_free_ char *b =
        h2_grpc_message_encode("\xc0\x80|\xed\xa0\x80|\xf4\x90\x80\x80|\xe2\x82");
    assert_string_equal(b, "%EF%BF%BD%EF%BF%BD|%EF%BF%BD%EF%BF%BD%EF%BF%BD|"
                           "%EF%BF%BD%EF%BF%BD%EF%BF%BD%EF%BF%BD|%EF%BF%BD%EF%BF%BD");
    /* The edges of the valid ranges stay as they are. */
    _cleanup_free_ char *c =
        h2_grpc_message_encode("\xc2\x80\xed\x9f\xbf\xee\x80\x80\xf0\x90\x80\x80\xf4\x8f\xbf\xbf");
    assert_string_equal(c, "%C2%80%ED%9F%BF%EE%80%80%F0%90%80%80%F4%8F%BF%BF");

    /* The cut never splits a replacement either. */
    char bad[1001];
    memset(bad, 0xff, 1000);
    bad[1000] = '\0';
    _cleanup_free_ char *d = h2_grpc_message_encode(bad);
    size_t n = strlen(d);
    assert_true(n <= H2_GRPC_MESSAGE_MAX);
    assert_int_equal(n % 9, 0);
    assert_true(n > H2_GRPC_MESSAGE_MAX - 9);
}

/* ---- the end-to-end fixture ---- */

struct tstream {
    int32_t id;
    int http_status;
    int grpc_status; /* -1 until seen */
    char grpc_message[H2_GRPC_MESSAGE_MAX + 64];
    char accept_encoding[64];
    uint8_t *data;
    size_t data_len, data_alloc;
    bool closed;
    uint32_t close_error;
    int order; /* position among the client's closed streams */
    bool slow; /* hold the stream window: its data is not consumed */
    size_t unconsumed;
    uint8_t *body;
    size_t body_len, body_off;
    bool no_end;
};

struct tclient {
    struct bufferevent *bev;
    nghttp2_session *session;
    bool manual_window;
    bool eof;
    int n_closed;
    int goaways;
    int ping_acks;
    struct tstream st[TC_MAX_STREAMS];
    size_t n_st;
};

struct later {
    uint64_t id;
    uint8_t *msg;
    size_t len;
    struct loop_timer *timer;
    bool used;
};

static struct {
    char dir[64];
    char path[108];
    struct h2_server *srv;
    struct h2_server_opts opts;
    size_t dispatched;
    uint64_t last_id;
    uint64_t ids[2048];
    size_t n_ids;
    size_t cancels;
    uint64_t cancelled[2048];
    size_t laters_gone;
    struct later laters[MAX_LATER];
    bool drained;
    size_t calls_at_drain, conns_at_drain;
    struct tclient *clients[MAX_CLIENTS];
    size_t n_clients;
    int send_err_code;
} fx;

static bool is_closed(void *arg)
{
    return ((struct tstream *)arg)->closed;
}

static bool stream_has_data(void *arg)
{
    return ((struct tstream *)arg)->data_len > 0;
}

static bool is_eof(void *arg)
{
    return ((struct tclient *)arg)->eof;
}

static bool is_drained(void *arg)
{
    return fx.drained;
}

static bool no_connections(void *arg)
{
    return h2_server_connection_count(fx.srv) == 0;
}

static bool one_connection(void *arg)
{
    return h2_server_connection_count(fx.srv) == 1;
}

static size_t want_count;

static bool enough_cancels(void *arg)
{
    return fx.cancels >= want_count;
}

static bool enough_dispatched(void *arg)
{
    return fx.dispatched >= want_count;
}

static bool enough_closed(void *arg)
{
    return ((struct tclient *)arg)->n_closed >= (int)want_count;
}

/* ---- the test client ---- */

static void tc_flush(struct tclient *tc)
{
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(tc->session, &data);
        assert_true(n >= 0);
        if (n == 0)
            break;
        bufferevent_write(tc->bev, data, (size_t)n);
    }
}

static void tc_on_read(struct bufferevent *bev, void *arg)
{
    struct tclient *tc = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    uint8_t *p = evbuffer_pullup(in, (ssize_t)len);
    ssize_t n = nghttp2_session_mem_recv(tc->session, p, len);
    if (n < 0) {
        tc->eof = true;
        return;
    }
    evbuffer_drain(in, len);
    tc_flush(tc);
}

static void tc_on_event(struct bufferevent *bev, short what, void *arg)
{
    struct tclient *tc = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        tc->eof = true;
}

static int tc_on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *user_data)
{
    struct tstream *st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!st)
        return 0;
    _cleanup_free_ char *v = xstrndup((const char *)value, valuelen);
    if (namelen == 7 && memcmp(name, ":status", 7) == 0)
        st->http_status = atoi(v);
    else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
        st->grpc_status = atoi(v);
    else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0)
        snprintf(st->grpc_message, sizeof(st->grpc_message), "%s", v);
    else if (namelen == 20 && memcmp(name, "grpc-accept-encoding", 20) == 0)
        snprintf(st->accept_encoding, sizeof(st->accept_encoding), "%s", v);
    return 0;
}

static int tc_on_data(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                      const uint8_t *data, size_t len, void *user_data)
{
    struct tclient *tc = user_data;
    struct tstream *st = nghttp2_session_get_stream_user_data(session, stream_id);
    if (!st)
        return 0;
    if (st->data_len + len > st->data_alloc) {
        st->data_alloc = (st->data_len + len) * 2;
        st->data = xrealloc(st->data, st->data_alloc);
    }
    memcpy(st->data + st->data_len, data, len);
    st->data_len += len;
    if (tc->manual_window) {
        if (st->slow) {
            nghttp2_session_consume_connection(session, len);
            st->unconsumed += len;
        } else {
            nghttp2_session_consume(session, stream_id, len);
        }
    }
    return 0;
}

static int tc_on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct tclient *tc = user_data;
    if (frame->hd.type == NGHTTP2_GOAWAY)
        tc->goaways++;
    if (frame->hd.type == NGHTTP2_PING && (frame->hd.flags & NGHTTP2_FLAG_ACK))
        tc->ping_acks++;
    return 0;
}

static int tc_on_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                       void *user_data)
{
    struct tclient *tc = user_data;
    struct tstream *st = nghttp2_session_get_stream_user_data(session, stream_id);
    if (st) {
        st->closed = true;
        st->close_error = error_code;
        st->order = ++tc->n_closed;
    }
    return 0;
}

static ssize_t tc_read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                            size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                            void *user_data)
{
    struct tstream *st = source->ptr;
    size_t n = st->body_len - st->body_off;
    if (n > length)
        n = length;
    memcpy(buf, st->body + st->body_off, n);
    st->body_off += n;
    if (st->body_off == st->body_len) {
        if (st->no_end)
            return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

struct tc_opts {
    int32_t window;     /* SETTINGS_INITIAL_WINDOW_SIZE; 0: 1 MiB */
    bool manual_window; /* consume explicitly (to play a slow reader) */
};

static int connect_socket(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fx.path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static struct tclient *tc_new_opts(const struct tc_opts *o)
{
    assert_true(fx.n_clients < MAX_CLIENTS);
    struct tclient *tc = xcalloc(1, sizeof(*tc));
    fx.clients[fx.n_clients++] = tc;
    tc->manual_window = o->manual_window;
    tc->bev = bufferevent_socket_new(loop_base(), connect_socket(), BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(tc->bev);
    bufferevent_setcb(tc->bev, tc_on_read, NULL, tc_on_event, tc);
    bufferevent_enable(tc->bev, EV_READ | EV_WRITE);

    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, tc_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, tc_on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, tc_on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, tc_on_close);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    if (o->manual_window)
        nghttp2_option_set_no_auto_window_update(opt, 1);
    assert_int_equal(nghttp2_session_client_new2(&tc->session, cbs, tc, opt), 0);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, o->window ? (uint32_t)o->window : 1u << 20},
    };
    nghttp2_submit_settings(tc->session, NGHTTP2_FLAG_NONE, iv, ARRAY_SIZE(iv));
    if (!o->manual_window)
        nghttp2_session_set_local_window_size(tc->session, NGHTTP2_FLAG_NONE, 0, 16 << 20);
    tc_flush(tc);
    return tc;
}

static struct tclient *tc_new(void)
{
    return tc_new_opts(&(struct tc_opts){0});
}

static void tc_free(struct tclient *tc)
{
    if (!tc)
        return;
    if (tc->bev)
        bufferevent_free(tc->bev);
    nghttp2_session_del(tc->session);
    for (size_t i = 0; i < tc->n_st; i++) {
        free(tc->st[i].data);
        free(tc->st[i].body);
    }
    free(tc);
}

/* Close the client's socket now (the struct stays until teardown). */
static void tc_close(struct tclient *tc)
{
    bufferevent_free(tc->bev);
    tc->bev = NULL;
}

struct req {
    const char *path;
    const void *msg; /* framed as one message */
    size_t len;
    const uint8_t *raw; /* or: the body as is */
    size_t raw_len;
    bool no_body;             /* HEADERS with END_STREAM only */
    bool no_end;              /* never half-close */
    const char *content_type; /* NULL: application/grpc */
    const char *method;       /* NULL: POST */
    const char *timeout;
    const char *encoding;
    const char *xname[3];
    const char *xvalue[3];
};

static nghttp2_nv nv(const char *name, const char *value)
{
    return (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                        NGHTTP2_NV_FLAG_NONE};
}

static struct tstream *tc_call(struct tclient *tc, const struct req *r)
{
    assert_true(tc->n_st < TC_MAX_STREAMS);
    struct tstream *st = &tc->st[tc->n_st++];
    st->grpc_status = -1;
    st->no_end = r->no_end;
    if (r->raw) {
        st->body = xmalloc(r->raw_len ? r->raw_len : 1);
        memcpy(st->body, r->raw, r->raw_len);
        st->body_len = r->raw_len;
    } else if (!r->no_body) {
        st->body = xmalloc(r->len + 5);
        st->body_len = frame(st->body, 0, r->msg, (uint32_t)r->len);
    }
    nghttp2_nv nva[16];
    size_t n = 0;
    nva[n++] = nv(":method", r->method ? r->method : "POST");
    nva[n++] = nv(":scheme", "http");
    nva[n++] = nv(":authority", "localhost");
    nva[n++] = nv(":path", r->path);
    nva[n++] = nv("te", "trailers");
    nva[n++] = nv("content-type", r->content_type ? r->content_type : "application/grpc");
    if (r->timeout)
        nva[n++] = nv("grpc-timeout", r->timeout);
    if (r->encoding)
        nva[n++] = nv("grpc-encoding", r->encoding);
    for (size_t i = 0; i < 3 && r->xname[i]; i++)
        nva[n++] = nv(r->xname[i], r->xvalue[i]);
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = tc_read_body};
    st->id = nghttp2_submit_request(tc->session, NULL, nva, n, r->no_body ? NULL : &prd, st);
    assert_true(st->id > 0);
    tc_flush(tc);
    return st;
}

static struct tstream *tc_echo(struct tclient *tc, const char *path, const char *msg)
{
    return tc_call(tc, &(struct req){.path = path, .msg = msg, .len = strlen(msg)});
}

static void assert_reply(const struct tstream *st, const void *msg, size_t len)
{
    assert_true(st->closed);
    assert_int_equal(st->http_status, 200);
    assert_int_equal(st->grpc_status, GRPC_OK);
    assert_int_equal(st->data_len, len + 5);
    assert_int_equal(st->data[0], 0);
    uint32_t n = (uint32_t)st->data[1] << 24 | (uint32_t)st->data[2] << 16 |
                 (uint32_t)st->data[3] << 8 | st->data[4];
    assert_int_equal(n, len);
    assert_memory_equal(st->data + 5, msg, len);
}

static void assert_status(const struct tstream *st, int http, int code, const char *message)
{
    assert_true(st->closed);
    assert_int_equal(st->http_status, http);
    assert_int_equal(st->grpc_status, code);
    if (message)
        assert_string_equal(st->grpc_message, message);
}

/* ---- the handler ---- */

static void on_cancel(uint64_t id, void *arg)
{
    assert_null(h2_call_lookup(id));
    assert_true(fx.cancels < ARRAY_SIZE(fx.cancelled));
    fx.cancelled[fx.cancels++] = id;
}

static void reply(struct h2_call *call, const uint8_t *msg, size_t len)
{
    _cleanup_error_ struct error *err = NULL;
    uint64_t id = h2_call_id(call);
    if (h2_call_send(call, msg, len, &err) < 0) {
        fx.send_err_code = err->grpc_code;
        h2_call_finish(call, err->grpc_code, err->msg);
    } else {
        h2_call_finish(call, GRPC_OK, NULL);
    }
    /* Finished calls leave the table at once, not when their stream closes. */
    assert_null(h2_call_lookup(id));
}

/* A server stream that sends "1", then "2" a loop turn later, then ends. */
struct ticker {
    uint64_t id;
    int step;
    struct loop_timer *timer;
};

static void on_tick(void *arg)
{
    struct ticker *t = arg;
    struct h2_call *call = h2_call_lookup(t->id);
    if (!call || ++t->step == 3) {
        if (call)
            h2_call_finish(call, GRPC_OK, NULL);
        loop_timer_free(t->timer);
        free(t);
        return;
    }
    assert_int_equal(h2_call_send(call, (const uint8_t *)(t->step == 1 ? "1" : "2"), 1, NULL), 0);
    loop_timer_arm(t->timer, 100);
}

static void on_later(void *arg)
{
    struct later *l = arg;
    struct h2_call *call = h2_call_lookup(l->id);
    if (call)
        reply(call, l->msg, l->len);
    else
        fx.laters_gone++;
    free(steal_ptr(&l->msg));
    loop_timer_free(steal_ptr(&l->timer));
    l->used = false;
}

static void later(struct h2_call *call, const uint8_t *msg, size_t len, int64_t ms)
{
    struct later *l = NULL;
    for (size_t i = 0; i < MAX_LATER && !l; i++)
        l = fx.laters[i].used ? NULL : &fx.laters[i];
    assert_non_null(l);
    l->used = true;
    l->id = h2_call_id(call);
    l->msg = xmalloc(len ? len : 1);
    memcpy(l->msg, msg, len);
    l->len = len;
    l->timer = loop_timer_new(on_later, l);
    loop_timer_arm(l->timer, ms);
    h2_call_on_cancel(call, on_cancel, NULL);
}

static void on_dispatch(struct h2_call *call, const char *path, const uint8_t *msg, size_t len,
                        void *arg)
{
    assert_ptr_equal(arg, &fx);
    assert_string_equal(path, h2_call_path(call));
    assert_ptr_equal(h2_call_lookup(h2_call_id(call)), call);
    fx.dispatched++;
    fx.last_id = h2_call_id(call);
    if (fx.n_ids < ARRAY_SIZE(fx.ids))
        fx.ids[fx.n_ids++] = fx.last_id;
    if (strcmp(path, "/t/Echo") == 0) {
        reply(call, msg, len);
    } else if (strcmp(path, "/t/Later") == 0) {
        later(call, msg, len, 100);
    } else if (strcmp(path, "/t/Never") == 0) {
        h2_call_on_cancel(call, on_cancel, NULL);
    } else if (strcmp(path, "/t/Big") == 0) {
        uint8_t *big = xmalloc(BIG_REPLY);
        for (size_t i = 0; i < BIG_REPLY; i++)
            big[i] = (uint8_t)(i * 7 + (i >> 12));
        reply(call, big, BIG_REPLY);
        free(big);
    } else if (strcmp(path, "/t/Status") == 0) {
        /* First byte: the code; the rest: the message. */
        _cleanup_free_ char *text = xstrndup((const char *)msg + 1, len - 1);
        h2_call_finish(call, msg[0], text);
    } else if (strcmp(path, "/t/Ticks") == 0) {
        struct ticker *t = xcalloc(1, sizeof(*t));
        t->id = h2_call_id(call);
        t->timer = loop_timer_new(on_tick, t);
        loop_timer_arm(t->timer, 0);
    } else if (strcmp(path, "/t/Stream") == 0) {
        for (int i = 0; i < 3; i++)
            assert_int_equal(h2_call_send(call, (const uint8_t *)"abc", 3, NULL), 0);
        h2_call_finish(call, GRPC_OK, NULL);
        assert_int_equal(h2_call_send(call, (const uint8_t *)"x", 1, NULL), -1);
    } else if (strcmp(path, "/t/TooBig") == 0) {
        uint8_t *big = xcalloc(1, fx.opts.max_send_msg + 1);
        reply(call, big, fx.opts.max_send_msg + 1);
        free(big);
    } else if (strcmp(path, "/t/Deadline") == 0) {
        int64_t d = h2_call_deadline_ns(call);
        char text[32];
        snprintf(text, sizeof(text), "%lld",
                 (long long)(d ? (d - now_monotonic_ns()) / 1000000 : -1));
        reply(call, (const uint8_t *)text, strlen(text));
    } else {
        h2_call_finish(call, GRPC_UNIMPLEMENTED, "unknown method");
    }
}

static void on_drained(void *arg)
{
    assert_ptr_equal(arg, &fx);
    assert_false(fx.drained);
    fx.drained = true;
    fx.calls_at_drain = h2_server_call_count(fx.srv);
    fx.conns_at_drain = h2_server_connection_count(fx.srv);
}

static void start_server(const struct h2_server_opts *opts)
{
    fx.opts = *opts;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fx.path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 256), 0);
    struct error *err = NULL;
    fx.srv = h2_server_new(fd, opts, on_dispatch, &fx, &err);
    assert_null(err);
    assert_non_null(fx.srv);
}

static const struct h2_server_opts default_opts = {
    .max_recv_msg = 1 << 20,
    .max_send_msg = 8 << 20,
    .max_streams = 256,
};

static int setup(void **state)
{
    memset(&fx, 0, sizeof(fx));
    assert_int_equal(loop_init(NULL), 0);
    snprintf(fx.dir, sizeof(fx.dir), "/tmp/test_h2.XXXXXX");
    assert_non_null(mkdtemp(fx.dir));
    snprintf(fx.path, sizeof(fx.path), "%s/grpc.sock", fx.dir);
    return 0;
}

static int setup_server(void **state)
{
    setup(state);
    start_server(&default_opts);
    return 0;
}

static int teardown(void **state)
{
    for (size_t i = 0; i < fx.n_clients; i++)
        tc_free(fx.clients[i]);
    h2_server_free(fx.srv);
    for (size_t i = 0; i < MAX_LATER; i++) {
        if (fx.laters[i].used) {
            loop_timer_free(fx.laters[i].timer);
            free(fx.laters[i].msg);
        }
    }
    loop_shutdown();
    unlink(fx.path);
    rmdir(fx.dir);
    /* Every call is gone, so the global call table must be empty. */
    for (size_t i = 0; i < fx.n_ids; i++)
        assert_null(h2_call_lookup(fx.ids[i]));
    return 0;
}

/* ---- end-to-end tests ---- */

static void test_unary_echo(void **state)
{
    struct tclient *tc = tc_new();
    struct tstream *st = tc_echo(tc, "/t/Echo", "hello");
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_reply(st, "hello", 5);
    assert_int_equal(st->close_error, NGHTTP2_NO_ERROR);
    assert_string_equal(st->grpc_message, "");
    assert_int_equal(fx.dispatched, 1);
    assert_null(h2_call_lookup(fx.last_id));
    assert_int_equal(h2_server_call_count(fx.srv), 0);
    assert_int_equal(h2_server_connection_count(fx.srv), 1);

    /* The connection serves more calls, including an empty message and a stream of replies. */
    st = tc_call(tc, &(struct req){.path = "/t/Echo", .msg = "", .len = 0});
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_reply(st, "", 0);
    st = tc_echo(tc, "/t/Stream", "x");
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_int_equal(st->grpc_status, GRPC_OK);
    assert_int_equal(st->data_len, 3 * 8);
    static const uint8_t abc2[] = {0, 0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 0, 3, 'a', 'b', 'c'};
    assert_memory_equal(st->data, abc2, sizeof(abc2));
    /* An unknown method is the handler's business. */
    st = tc_echo(tc, "/t/Nope", "x");
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_status(st, 200, GRPC_UNIMPLEMENTED, "unknown method");
    assert_int_equal(st->data_len, 0);
}

static bool got_ping_ack(void *arg)
{
    return ((struct tclient *)arg)->ping_acks > 0;
}

static bool has_two_messages(void *arg)
{
    return ((struct tstream *)arg)->data_len >= 12;
}

static void test_server_stream_over_time(void **state)
{
    struct tclient *tc = tc_new();
    struct tstream *st = tc_echo(tc, "/t/Ticks", "x");
    assert_true(run_until(stream_has_data, st, WAIT_MS));
    assert_int_equal(st->data_len, 6);
    assert_false(st->closed);
    /* The second message goes out when it is sent, not with the trailers. */
    assert_true(run_until(has_two_messages, st, WAIT_MS));
    assert_false(st->closed);
    static const uint8_t want[] = {0, 0, 0, 0, 1, '1', 0, 0, 0, 0, 1, '2'};
    assert_memory_equal(st->data, want, sizeof(want));
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_int_equal(st->grpc_status, GRPC_OK);
    assert_int_equal(st->data_len, 12);
}

static void test_ping(void **state)
{
    struct tclient *tc = tc_new();
    nghttp2_submit_ping(tc->session, NGHTTP2_FLAG_NONE, NULL);
    tc_flush(tc);
    assert_true(run_until(got_ping_ack, tc, WAIT_MS));
}

static void test_async_and_immediate(void **state)
{
    struct tclient *tc = tc_new();
    struct tstream *slow = tc_echo(tc, "/t/Later", "later");
    struct tstream *fast = tc_echo(tc, "/t/Echo", "now");
    want_count = 2;
    assert_true(run_until(enough_closed, tc, WAIT_MS));
    assert_reply(fast, "now", 3);
    assert_reply(slow, "later", 5);
    assert_int_equal(fast->order, 1);
    assert_int_equal(slow->order, 2);
    assert_int_equal(fx.cancels, 0);
    assert_int_equal(h2_server_call_count(fx.srv), 0);
}

static void test_many_streams(void **state)
{
    struct tclient *tc = tc_new();
    char msgs[200][16];
    struct tstream *st[200];
    for (int i = 0; i < 200; i++) {
        snprintf(msgs[i], sizeof(msgs[i]), "msg-%d", i);
        st[i] = tc_echo(tc, i % 2 ? "/t/Later" : "/t/Echo", msgs[i]);
    }
    want_count = 200;
    assert_true(run_until(enough_closed, tc, WAIT_MS));
    for (int i = 0; i < 200; i++)
        assert_reply(st[i], msgs[i], strlen(msgs[i]));
    assert_int_equal(fx.dispatched, 200);
    assert_int_equal(h2_server_call_count(fx.srv), 0);
}

static void test_thousands_of_calls(void **state)
{
    enum { CONNS = 10, PER_CONN = 200 };
    struct tclient *tc[CONNS];
    for (int c = 0; c < CONNS; c++) {
        tc[c] = tc_new();
        for (int i = 0; i < PER_CONN; i++)
            tc_echo(tc[c], "/t/Never", "x");
    }
    want_count = CONNS * PER_CONN;
    assert_true(run_until(enough_dispatched, NULL, WAIT_MS));
    assert_int_equal(h2_server_call_count(fx.srv), CONNS * PER_CONN);
    for (size_t i = 0; i < fx.n_ids; i++) {
        struct h2_call *call = h2_call_lookup(fx.ids[i]);
        assert_non_null(call);
        assert_int_equal(h2_call_id(call), fx.ids[i]);
    }
    /* Ids are unique. */
    for (size_t i = 1; i < fx.n_ids; i++)
        assert_true(fx.ids[i] > fx.ids[i - 1]);
    /* Cancel half of one connection's streams, then drop every connection. */
    for (int i = 0; i < PER_CONN; i += 2)
        nghttp2_submit_rst_stream(tc[0]->session, NGHTTP2_FLAG_NONE, tc[0]->st[i].id,
                                  NGHTTP2_CANCEL);
    tc_flush(tc[0]);
    want_count = PER_CONN / 2;
    assert_true(run_until(enough_cancels, NULL, WAIT_MS));
    assert_int_equal(h2_server_call_count(fx.srv), CONNS * PER_CONN - PER_CONN / 2);
    /* Deleting from the table keeps every other call reachable. */
    size_t live = 0;
    for (size_t i = 0; i < fx.n_ids; i++) {
        bool cancelled = false;
        for (size_t j = 0; j < fx.cancels && !cancelled; j++)
            cancelled = fx.cancelled[j] == fx.ids[i];
        if (cancelled) {
            assert_null(h2_call_lookup(fx.ids[i]));
        } else {
            assert_non_null(h2_call_lookup(fx.ids[i]));
            live++;
        }
    }
    assert_int_equal(live, CONNS * PER_CONN - PER_CONN / 2);
    for (int c = 0; c < CONNS; c++)
        tc_close(tc[c]);
    want_count = CONNS * PER_CONN;
    assert_true(run_until(enough_cancels, NULL, WAIT_MS));
    assert_true(run_until(no_connections, NULL, WAIT_MS));
    assert_int_equal(h2_server_call_count(fx.srv), 0);
    for (size_t i = 0; i < fx.n_ids; i++)
        assert_null(h2_call_lookup(fx.ids[i]));
    /* Each cancel fired exactly once. */
    assert_int_equal(fx.cancels, CONNS * PER_CONN);
}

static void test_deadline(void **state)
{
    struct tclient *tc = tc_new();
    struct tstream *st =
        tc_call(tc, &(struct req){.path = "/t/Never", .msg = "x", .len = 1, .timeout = "50m"});
    int64_t start = now_monotonic_ns();
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_true(now_monotonic_ns() - start >= 45 * 1000000LL);
    assert_status(st, 200, GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
    assert_int_equal(fx.cancels, 1);
    assert_int_equal(fx.cancelled[0], fx.last_id);
    assert_null(h2_call_lookup(fx.last_id));

    /* The async handler comes back after the deadline: its lookup fails, nothing breaks. */
    st = tc_call(tc, &(struct req){.path = "/t/Later", .msg = "x", .len = 1, .timeout = "20m"});
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_status(st, 200, GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
    assert_int_equal(st->data_len, 0);
    assert_int_equal(fx.cancels, 2);
    run_loop_for(150);
    assert_int_equal(fx.laters_gone, 1);
    assert_int_equal(h2_server_call_count(fx.srv), 0);

    /* A generous deadline is visible to the handler and does not fire. */
    st = tc_call(tc, &(struct req){.path = "/t/Deadline", .msg = "x", .len = 1, .timeout = "2S"});
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_int_equal(st->grpc_status, GRPC_OK);
    _cleanup_free_ char *text = xstrndup((const char *)st->data + 5, st->data_len - 5);
    long left = strtol(text, NULL, 10);
    assert_true(left > 1000 && left <= 2000);
    st = tc_echo(tc, "/t/Deadline", "x");
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_reply(st, "-1", 2);

    /* A malformed grpc-timeout is refused before dispatch. */
    size_t before = fx.dispatched;
    st = tc_call(tc, &(struct req){.path = "/t/Echo", .msg = "x", .len = 1, .timeout = "1x"});
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_status(st, 200, GRPC_INTERNAL, "malformed grpc-timeout");
    assert_int_equal(fx.dispatched, before);
}

static void test_client_cancel(void **state)
{
    struct tclient *tc = tc_new();
    struct tstream *st = tc_echo(tc, "/t/Never", "x");
    want_count = 1;
    assert_true(run_until(enough_dispatched, NULL, WAIT_MS));
    uint64_t id = fx.last_id;
    assert_non_null(h2_call_lookup(id));
    nghttp2_submit_rst_stream(tc->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    tc_flush(tc);
    assert_true(run_until(enough_cancels, NULL, WAIT_MS));
    assert_int_equal(fx.cancelled[0], id);
    assert_null(h2_call_lookup(id));
    assert_int_equal(h2_server_call_count(fx.srv), 0);
    /* The connection lives on. */
    st = tc_echo(tc, "/t/Echo", "still here");
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_reply(st, "still here", 10);
    assert_int_equal(fx.cancels, 1);

    /* Losing the connection cancels too. */
    tc_echo(tc, "/t/Never", "x");
    want_count = 3;
    assert_true(run_until(enough_dispatched, NULL, WAIT_MS));
    tc_close(tc);
    want_count = 2;
    assert_true(run_until(enough_cancels, NULL, WAIT_MS));
    assert_int_equal(fx.cancelled[1], fx.last_id);
}

static void test_big_reply_slow_reader(void **state)
{
    struct tclient *tc = tc_new_opts(&(struct tc_opts){.window = 16384, .manual_window = true});
    struct tstream *big = tc_echo(tc, "/t/Big", "x");
    big->slow = true;
    assert_true(run_until(stream_has_data, big, WAIT_MS));
    struct tstream *small = tc_echo(tc, "/t/Echo", "small");
    assert_true(run_until(is_closed, small, WAIT_MS));
    assert_reply(small, "small", 5);
    /* The big reply is held by the stream window, not by the other stream. */
    run_loop_for(50);
    assert_false(big->closed);
    assert_true(big->data_len <= 16384);
    assert_int_equal(h2_server_call_count(fx.srv), 1);

    big->slow = false;
    nghttp2_session_consume_stream(tc->session, big->id, big->unconsumed);
    tc_flush(tc);
    assert_true(run_until(is_closed, big, WAIT_MS));
    assert_int_equal(big->grpc_status, GRPC_OK);
    assert_int_equal(big->data_len, BIG_REPLY + 5);
    for (size_t i = 0; i < BIG_REPLY; i++) {
        if (big->data[5 + i] != (uint8_t)(i * 7 + (i >> 12)))
            fail_msg("byte %zu differs", i);
    }
    assert_int_equal(h2_server_call_count(fx.srv), 0);
}

static bool output_idle(void *arg)
{
    return h2_server_output_bytes(fx.srv) == 0;
}

static void test_slow_socket_reader(void **state)
{
    /* Windows wide enough for the whole reply: only the socket holds it back. */
    struct tclient *tc = tc_new_opts(&(struct tc_opts){.window = 8 << 20});
    struct tstream *warm = tc_echo(tc, "/t/Echo", "x");
    assert_true(run_until(is_closed, warm, WAIT_MS));
    struct tstream *big = tc_echo(tc, "/t/Big", "x");
    bufferevent_disable(tc->bev, EV_READ);
    want_count = 2;
    assert_true(run_until(enough_dispatched, NULL, WAIT_MS));
    run_loop_for(100);
    /* The kernel's socket buffers are full; the daemon holds only its high-water mark. */
    size_t held = h2_server_output_bytes(fx.srv);
    assert_true(held > 0);
    assert_true(held <= (128u << 10) + 16384 + 9);
    assert_false(big->closed);

    bufferevent_enable(tc->bev, EV_READ);
    assert_true(run_until(stream_has_data, big, WAIT_MS));
    assert_true(run_until(is_closed, big, WAIT_MS));
    assert_int_equal(big->data_len, BIG_REPLY + 5);
    assert_true(run_until(output_idle, NULL, WAIT_MS));
}

static void test_send_limits(void **state)
{
    struct tclient *tc = tc_new();
    struct tstream *st = tc_echo(tc, "/t/TooBig", "x");
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_int_equal(fx.send_err_code, GRPC_RESOURCE_EXHAUSTED);
    assert_status(st, 200, GRPC_RESOURCE_EXHAUSTED, NULL);
    assert_non_null(strstr(st->grpc_message, "sent message larger than max"));
}

static void test_grpc_message_encoding(void **state)
{
    struct tclient *tc = tc_new();
    const char msg[] = "\x05h\xc3\xa9llo 100% \xe2\x9c\x93";
    struct tstream *st =
        tc_call(tc, &(struct req){.path = "/t/Status", .msg = msg, .len = sizeof(msg) - 1});
    assert_true(run_until(is_closed, st, WAIT_MS));
    /* Trailers-only: finished before any message. */
    assert_status(st, 200, GRPC_NOT_FOUND, "h%C3%A9llo 100%25 %E2%9C%93");
    assert_int_equal(st->data_len, 0);
    assert_string_equal(st->accept_encoding, "identity");
}

static void test_request_framing_errors(void **state)
{
    struct tclient *tc = tc_new();
    uint8_t wire[64];

    /* No message at all. */
    struct tstream *st = tc_call(tc, &(struct req){.path = "/t/Echo", .no_body = true});
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_status(st, 200, GRPC_INVALID_ARGUMENT, "expected exactly one request message");

    /* Two messages. */
    size_t n = frame(wire, 0, "one", 3);
    n += frame(wire + n, 0, "two", 3);
    st = tc_call(tc, &(struct req){.path = "/t/Echo", .raw = wire, .raw_len = n});
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_status(st, 200, GRPC_INVALID_ARGUMENT, "expected exactly one request message");

    /* Cut short. */
    n = frame(wire, 0, "truncated", 9);
    st = tc_call(tc, &(struct req){.path = "/t/Echo", .raw = wire, .raw_len = n - 2});
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_status(st, 200, GRPC_INTERNAL, NULL);

    /* Compressed without grpc-encoding. */
    n = frame(wire, 1, "zz", 2);
    st = tc_call(tc, &(struct req){.path = "/t/Echo", .raw = wire, .raw_len = n});
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_status(st, 200, GRPC_INTERNAL, "compressed flag set but no grpc-encoding");

    /* Compressed with gzip, which we do not speak. */
    st = tc_call(tc,
                 &(struct req){.path = "/t/Echo", .raw = wire, .raw_len = n, .encoding = "gzip"});
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_status(st, 200, GRPC_UNIMPLEMENTED, "grpc-encoding gzip is not supported");
    assert_string_equal(st->accept_encoding, "identity");

    assert_int_equal(fx.dispatched, 0);
    /* The connection is still good. */
    st = tc_echo(tc, "/t/Echo", "ok");
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_reply(st, "ok", 2);
}

static void test_oversize_request(void **state)
{
    struct tclient *tc = tc_new();
    /* Announce 4 MiB against a 1 MiB cap, send 64 KiB of it and keep the stream open. */
    size_t n = 5 + (64u << 10);
    uint8_t *wire = xcalloc(1, n);
    wire[1] = 0x00;
    wire[2] = 0x40;
    struct tstream *st =
        tc_call(tc, &(struct req){.path = "/t/Echo", .raw = wire, .raw_len = n, .no_end = true});
    free(wire);
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_status(st, 200, GRPC_RESOURCE_EXHAUSTED,
                  "received message larger than max (4194304 vs. 1048576)");
    /* The server told the client to stop uploading, without an error. */
    assert_int_equal(st->close_error, NGHTTP2_NO_ERROR);
    assert_int_equal(fx.dispatched, 0);
    assert_int_equal(h2_server_call_count(fx.srv), 0);

    st = tc_echo(tc, "/t/Echo", "after");
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_reply(st, "after", 5);
    assert_false(tc->eof);
}

/* An echo call of "ok" with the given content-type. */
static struct tstream *call_with_type(struct tclient *tc, const char *content_type)
{
    return tc_call(
        tc, &(struct req){.path = "/t/Echo", .msg = "ok", .len = 2, .content_type = content_type});
}

/* An echo call of "x" with up to three extra headers of the same value. */
static struct tstream *call_with_headers(struct tclient *tc, const char *value, int n)
{
    struct req r = {.path = "/t/Echo", .msg = "x", .len = 1};
    static const char *const names[] = {"x-a", "x-b", "x-c"};
    for (int i = 0; i < n; i++) {
        r.xname[i] = names[i];
        r.xvalue[i] = value;
    }
    return tc_call(tc, &r);
}

static void test_bad_requests(void **state)
{
    struct tclient *tc = tc_new();
    struct tstream *st = call_with_type(tc, "text/plain");
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_status(st, 415, GRPC_INTERNAL, NULL);

    st = call_with_type(tc, "application/grpcfoo");
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_int_equal(st->http_status, 415);

    st = tc_call(tc, &(struct req){.path = "/t/Echo", .no_body = true, .method = "GET"});
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_status(st, 405, GRPC_INTERNAL, NULL);

    /* A request whose :path is not a path is malformed: reset. */
    st = tc_call(tc, &(struct req){.path = "noslash", .msg = "x", .len = 1});
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_int_equal(st->close_error, NGHTTP2_PROTOCOL_ERROR);
    assert_int_equal(h2_server_call_count(fx.srv), 0);

    /* One header field above 8 KiB. */
    char *big = xmalloc(9000);
    memset(big, 'a', 8999);
    big[8999] = '\0';
    st = call_with_headers(tc, big, 1);
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_status(st, 200, GRPC_RESOURCE_EXHAUSTED, "request header list too large");
    /* Fields of 6 KiB each, 18 KiB together, above the 16 KiB list cap. */
    big[6000] = '\0';
    st = call_with_headers(tc, big, 3);
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_status(st, 200, GRPC_RESOURCE_EXHAUSTED, "request header list too large");
    /* Two of them fit. */
    st = call_with_headers(tc, big, 2);
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_reply(st, "x", 1);
    free(big);

    /* application/grpc+proto is gRPC. */
    st = call_with_type(tc, "application/grpc+proto");
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_reply(st, "ok", 2);
    assert_int_equal(fx.dispatched, 2);
    assert_false(tc->eof);
}

static void raw_garbage(const void *bytes, size_t len)
{
    struct tclient *tc = xcalloc(1, sizeof(*tc));
    fx.clients[fx.n_clients++] = tc;
    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_client_new(&tc->session, cbs, tc);
    nghttp2_session_callbacks_del(cbs);
    tc->bev = bufferevent_socket_new(loop_base(), connect_socket(), BEV_OPT_CLOSE_ON_FREE);
    /* Read and drop whatever the server says (its SETTINGS, maybe a GOAWAY). */
    bufferevent_setcb(tc->bev, NULL, NULL, tc_on_event, tc);
    bufferevent_enable(tc->bev, EV_READ | EV_WRITE);
    bufferevent_write(tc->bev, bytes, len);
    assert_true(run_until(is_eof, tc, WAIT_MS));
}

static size_t want_held;

static bool held_is(void *arg)
{
    return h2_server_held_bytes(fx.srv) == want_held;
}

/* A call announcing a message of `announced` bytes, sending `sent` of them, never ending. */
static struct tstream *partial_call(struct tclient *tc, uint32_t announced, size_t sent)
{
    uint8_t *wire = xcalloc(1, 5 + sent);
    frame(wire, 0, NULL, 0);
    wire[1] = (uint8_t)(announced >> 24);
    wire[2] = (uint8_t)(announced >> 16);
    wire[3] = (uint8_t)(announced >> 8);
    wire[4] = (uint8_t)announced;
    struct tstream *st = tc_call(
        tc, &(struct req){.path = "/t/Echo", .raw = wire, .raw_len = 5 + sent, .no_end = true});
    free(wire);
    return st;
}

static void test_held_request_caps(void **state)
{
    /*
     * Each call may buffer up to max_recv_msg, but the calls of a connection,
     * and of the server, only so much in all: the call that goes past a cap
     * fails alone, and what it held is released at once.
     */
    h2_server_free(fx.srv);
    unlink(fx.path);
    start_server(&(struct h2_server_opts){
        .max_recv_msg = 64 << 10, .max_conn_held = 100 << 10, .max_held = 150 << 10});
    struct tclient *a = tc_new();
    struct tstream *a1 = partial_call(a, 64 << 10, 40 << 10);
    want_held = 40 << 10;
    assert_true(run_until(held_is, NULL, WAIT_MS));
    struct tstream *a2 = partial_call(a, 64 << 10, 40 << 10);
    want_held = 80 << 10;
    assert_true(run_until(held_is, NULL, WAIT_MS));
    struct tstream *a3 = partial_call(a, 64 << 10, 40 << 10);
    assert_true(run_until(is_closed, a3, WAIT_MS));
    assert_status(a3, 200, GRPC_RESOURCE_EXHAUSTED,
                  "requests in progress on this connection hold more than 102400 bytes");
    assert_int_equal(h2_server_held_bytes(fx.srv), 80 << 10);
    assert_false(a1->closed);
    assert_false(a2->closed);

    /* Another connection has room of its own, up to what the server allows in all. */
    struct tclient *b = tc_new();
    struct tstream *b1 = partial_call(b, 64 << 10, 40 << 10);
    want_held = 120 << 10;
    assert_true(run_until(held_is, NULL, WAIT_MS));
    struct tstream *b2 = partial_call(b, 64 << 10, 40 << 10);
    assert_true(run_until(is_closed, b2, WAIT_MS));
    assert_status(b2, 200, GRPC_RESOURCE_EXHAUSTED,
                  "requests in progress hold more than 153600 bytes");
    assert_int_equal(h2_server_held_bytes(fx.srv), 120 << 10);
    /* Small calls still fit, on both connections. */
    struct tstream *small = tc_echo(b, "/t/Echo", "small");
    assert_true(run_until(is_closed, small, WAIT_MS));
    assert_reply(small, "small", 5);
    small = tc_echo(a, "/t/Echo", "small");
    assert_true(run_until(is_closed, small, WAIT_MS));
    assert_reply(small, "small", 5);
    assert_false(b1->closed);

    /* Once a's calls are gone with it, b can send a message of the largest size. */
    tc_close(a);
    assert_true(run_until(one_connection, NULL, WAIT_MS));
    assert_int_equal(h2_server_held_bytes(fx.srv), 40 << 10);
    uint8_t *big = xmalloc(60 << 10);
    for (size_t i = 0; i < (60 << 10); i++)
        big[i] = (uint8_t)(i * 13);
    struct tstream *b3 = tc_call(b, &(struct req){.path = "/t/Echo", .msg = big, .len = 60 << 10});
    assert_true(run_until(is_closed, b3, WAIT_MS));
    assert_reply(b3, big, 60 << 10);
    free(big);
    assert_int_equal(h2_server_held_bytes(fx.srv), 40 << 10);

    /* A call ended by its deadline while receiving lets go of its bytes too. */
    struct req r = {.path = "/t/Echo",
                    .raw = (const uint8_t *)"\0\0\0\x40\0",
                    .raw_len = 5,
                    .no_end = true,
                    .timeout = "50m"};
    struct tstream *b4 = tc_call(b, &r);
    assert_true(run_until(is_closed, b4, WAIT_MS));
    assert_int_equal(b4->grpc_status, GRPC_DEADLINE_EXCEEDED);
    assert_int_equal(h2_server_held_bytes(fx.srv), 40 << 10);
    tc_close(b);
    assert_true(run_until(no_connections, NULL, WAIT_MS));
    assert_int_equal(h2_server_held_bytes(fx.srv), 0);
    assert_int_equal(fx.dispatched, 3);
}

static void test_garbage(void **state)
{
    const char http1[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    raw_garbage(http1, sizeof(http1) - 1);

    uint8_t junk[4096];
    srand(42);
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)rand();
    raw_garbage(junk, sizeof(junk));

    /* A valid preface followed by junk frames. */
    uint8_t wire[sizeof(junk) + 24];
    memcpy(wire, NGHTTP2_CLIENT_MAGIC, 24);
    memcpy(wire + 24, junk, sizeof(junk));
    raw_garbage(wire, sizeof(wire));
    /* A SETTINGS frame followed by a DATA frame on stream 0. */
    const uint8_t frames[] = {0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    memcpy(wire + 24, frames, sizeof(frames));
    raw_garbage(wire, 24 + sizeof(frames));

    assert_true(run_until(no_connections, NULL, WAIT_MS));
    struct tclient *tc = tc_new();
    struct tstream *st = tc_echo(tc, "/t/Echo", "alive");
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_reply(st, "alive", 5);
}

static void test_client_goaway(void **state)
{
    struct tclient *tc = tc_new();
    struct tstream *st = tc_echo(tc, "/t/Later", "bye");
    want_count = 1;
    assert_true(run_until(enough_dispatched, NULL, WAIT_MS));
    nghttp2_submit_goaway(tc->session, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
    tc_flush(tc);
    /* The stream in flight still gets its reply, then the server hangs up. */
    assert_true(run_until(is_eof, tc, WAIT_MS));
    assert_reply(st, "bye", 3);
    assert_true(run_until(no_connections, NULL, WAIT_MS));
}

static void test_drain(void **state)
{
    struct tclient *tc = tc_new();
    struct tstream *st = tc_echo(tc, "/t/Later", "in flight");
    want_count = 1;
    assert_true(run_until(enough_dispatched, NULL, WAIT_MS));
    h2_server_drain(fx.srv, 5000, on_drained, &fx);
    assert_false(fx.drained);
    assert_true(run_until(is_drained, NULL, WAIT_MS));
    assert_int_equal(fx.calls_at_drain, 0);
    assert_int_equal(fx.conns_at_drain, 0);
    assert_int_equal(fx.cancels, 0);
    assert_true(run_until(is_eof, tc, WAIT_MS));
    assert_reply(st, "in flight", 9);
    assert_true(tc->goaways >= 1);
    /* A second drain is a no-op. */
    h2_server_drain(fx.srv, 5000, on_drained, &fx);
    run_loop_for(20);
}

static void test_drain_timeout(void **state)
{
    struct tclient *tc = tc_new();
    struct tstream *st = tc_echo(tc, "/t/Never", "stuck");
    want_count = 1;
    assert_true(run_until(enough_dispatched, NULL, WAIT_MS));
    int64_t start = now_monotonic_ns();
    h2_server_drain(fx.srv, 200, on_drained, &fx);
    assert_true(run_until(is_drained, NULL, WAIT_MS));
    assert_true(now_monotonic_ns() - start >= 190 * 1000000LL);
    assert_int_equal(fx.cancels, 1);
    assert_int_equal(fx.conns_at_drain, 0);
    assert_int_equal(fx.calls_at_drain, 0);
    assert_true(run_until(is_eof, tc, WAIT_MS));
    assert_status(st, 200, GRPC_UNAVAILABLE, "server shutting down");
}

static void test_drain_idle(void **state)
{
    struct tclient *tc = tc_new();
    struct tstream *st = tc_echo(tc, "/t/Echo", "x");
    assert_true(run_until(is_closed, st, WAIT_MS));
    h2_server_drain(fx.srv, 5000, on_drained, &fx);
    /* done runs on the loop, never inside h2_server_drain(). */
    assert_false(fx.drained);
    int64_t start = now_monotonic_ns();
    assert_true(run_until(is_drained, NULL, WAIT_MS));
    assert_true(now_monotonic_ns() - start < 1000 * 1000000LL);
    assert_true(run_until(is_eof, tc, WAIT_MS));
}

static void test_max_connections(void **state)
{
    h2_server_free(fx.srv);
    unlink(fx.path);
    start_server(&(struct h2_server_opts){.max_connections = 2});
    struct tclient *a = tc_new();
    struct tclient *b = tc_new();
    struct tstream *sa = tc_echo(a, "/t/Echo", "a");
    assert_true(run_until(is_closed, sa, WAIT_MS));
    struct tstream *sb = tc_echo(b, "/t/Echo", "b");
    assert_true(run_until(is_closed, sb, WAIT_MS));
    /* At the cap, a new connection is served: the one silent longest (a) makes room. */
    struct tclient *c = tc_new();
    struct tstream *sc = tc_echo(c, "/t/Echo", "c");
    assert_true(run_until(is_closed, sc, WAIT_MS));
    assert_reply(sc, "c", 1);
    assert_true(run_until(is_eof, a, WAIT_MS));
    assert_true(a->goaways >= 1);
    assert_int_equal(h2_server_connection_count(fx.srv), 2);
    struct tstream *sb2 = tc_echo(b, "/t/Echo", "b2");
    assert_true(run_until(is_closed, sb2, WAIT_MS));
    assert_reply(sb2, "b2", 2);
    /* A connection with a call a handler is working on is never the one: the new one goes. */
    tc_echo(b, "/t/Never", "x");
    tc_echo(c, "/t/Never", "y");
    want_count = fx.dispatched + 2;
    assert_true(run_until(enough_dispatched, NULL, WAIT_MS));
    struct tclient *d = tc_new();
    assert_true(run_until(is_eof, d, WAIT_MS));
    assert_false(b->eof || c->eof);
    assert_int_equal(h2_server_connection_count(fx.srv), 2);
}

/* A client that sends the given bytes, never answers, and reads what comes. */
static struct tclient *deaf_client(const void *bytes, size_t len)
{
    struct tclient *tc = xcalloc(1, sizeof(*tc));
    fx.clients[fx.n_clients++] = tc;
    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_client_new(&tc->session, cbs, tc);
    nghttp2_session_callbacks_del(cbs);
    tc->bev = bufferevent_socket_new(loop_base(), connect_socket(), BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(tc->bev, NULL, NULL, tc_on_event, tc);
    bufferevent_enable(tc->bev, EV_READ | EV_WRITE);
    if (len)
        bufferevent_write(tc->bev, bytes, len);
    return tc;
}

#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

static void test_handshake_timeout(void **state)
{
    h2_server_free(fx.srv);
    unlink(fx.path);
    start_server(&(struct h2_server_opts){.handshake_ms = 200});
    int64_t t0 = now_monotonic_ns();
    struct tclient *silent = deaf_client(NULL, 0);
    struct tclient *preface_only = deaf_client(PREFACE, strlen(PREFACE));
    struct tclient *good = tc_new();
    assert_true(run_until(is_eof, silent, WAIT_MS));
    assert_true(run_until(is_eof, preface_only, WAIT_MS));
    /*
     * Not before the deadline. libevent times its timers on the coarse
     * monotonic clock (a tick of up to 4 ms behind the precise one that
     * now_monotonic_ns() reads), so a timer may fire a tick "early" here.
     */
    assert_true(now_monotonic_ns() - t0 >= 190 * 1000000LL);
    /* The one that sent its SETTINGS stays, and is served. */
    assert_false(good->eof);
    struct tstream *st = tc_echo(good, "/t/Echo", "hi");
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_reply(st, "hi", 2);
    assert_int_equal(h2_server_connection_count(fx.srv), 1);
}

static void test_keepalive(void **state)
{
    h2_server_free(fx.srv);
    unlink(fx.path);
    start_server(&(struct h2_server_opts){.keepalive_ms = 100, .keepalive_timeout_ms = 200});
    /* Preface and an empty SETTINGS, then deaf: the keepalive PING goes unanswered. */
    static const uint8_t settings[] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
    uint8_t hello[sizeof(PREFACE) - 1 + sizeof(settings)];
    memcpy(hello, PREFACE, sizeof(PREFACE) - 1);
    memcpy(hello + sizeof(PREFACE) - 1, settings, sizeof(settings));
    int64_t t0 = now_monotonic_ns();
    struct tclient *deaf = deaf_client(hello, sizeof(hello));
    struct tclient *idle = tc_new(); /* nghttp2 answers PINGs by itself */
    assert_true(run_until(is_eof, deaf, WAIT_MS));
    assert_true(now_monotonic_ns() - t0 >= 300 * 1000000LL);
    /* An idle client that answers is never closed for being idle. */
    run_loop_for(800);
    assert_false(idle->eof);
    struct tstream *st = tc_echo(idle, "/t/Echo", "still here");
    assert_true(run_until(is_closed, st, WAIT_MS));
    assert_reply(st, "still here", 10);
}

/* How many fds are open, and the highest one. */
static int count_fds(int *max_fd)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0, max = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        n++;
        if (atoi(e->d_name) > max)
            max = atoi(e->d_name);
    }
    closedir(d);
    if (max_fd)
        *max_fd = max;
    return n;
}

static void test_fd_leak(void **state)
{
    h2_server_free(fx.srv);
    unlink(fx.path);
    start_server(&(struct h2_server_opts){.max_connections = 128});
    /* Settle what earlier set-up opened. */
    run_loop_for(10);
    int max_fd;
    int before = count_fds(&max_fd);

    struct tclient *tcs[100];
    struct tstream *sts[100];
    for (int i = 0; i < 100; i++) {
        tcs[i] = tc_new();
        sts[i] = tc_echo(tcs[i], i % 3 ? "/t/Echo" : "/t/Never", "x");
    }
    for (int i = 0; i < 100; i++) {
        if (i % 3)
            assert_true(run_until(is_closed, sts[i], WAIT_MS));
    }
    want_count = 100;
    assert_true(run_until(enough_dispatched, NULL, WAIT_MS));
    for (int i = 0; i < 100; i++)
        tc_close(tcs[i]);
    assert_true(run_until(no_connections, NULL, WAIT_MS));
    run_loop_for(10);
    assert_int_equal(count_fds(NULL), before);
    assert_int_equal(h2_server_call_count(fx.srv), 0);

    /* Churn with little fd head-room: a leak would make accept (or socket) fail. */
    struct rlimit saved, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    low = saved;
    low.rlim_cur = (rlim_t)max_fd + 8;
    /* valgrind refuses to lower it; the churn and the count below still run. */
    bool limited = setrlimit(RLIMIT_NOFILE, &low) == 0;
    for (int i = 0; i < 100; i++) {
        struct tclient *tc = tc_new();
        struct tstream *st = tc_echo(tc, "/t/Echo", "churn");
        assert_true(run_until(is_closed, st, WAIT_MS));
        assert_reply(st, "churn", 5);
        tc_close(tc);
        assert_true(run_until(no_connections, NULL, WAIT_MS));
        /* Free the client's memory now; fx.clients keeps a bounded list. */
        fx.clients[--fx.n_clients] = NULL;
        tc_free(tc);
    }
    if (limited)
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    run_loop_for(10);
    assert_int_equal(count_fds(NULL), before);
}

int main(void)
{
    /* LOG_LEVEL_DEBUG exercises the debug paths; TINYCRI_TEST_QUIET keeps the output short. */
    log_set_level(getenv("TINYCRI_TEST_QUIET") ? LOG_LEVEL_ERROR : LOG_LEVEL_DEBUG);
    alarm(300);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_prefix),
        cmocka_unit_test(test_framer_split_bytes),
        cmocka_unit_test(test_framer_coalesced),
        cmocka_unit_test(test_framer_prefix_split),
        cmocka_unit_test(test_framer_oversize),
        cmocka_unit_test(test_framer_compressed),
        cmocka_unit_test(test_framer_zero_messages),
        cmocka_unit_test(test_timeout_parse),
        cmocka_unit_test(test_percent_encode),
        cmocka_unit_test(test_percent_encode_invalid_utf8),
        cmocka_unit_test_setup_teardown(test_unary_echo, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_server_stream_over_time, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_ping, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_async_and_immediate, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_many_streams, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_thousands_of_calls, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_deadline, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_client_cancel, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_big_reply_slow_reader, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_slow_socket_reader, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_send_limits, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_grpc_message_encoding, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_request_framing_errors, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_oversize_request, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_held_request_caps, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_garbage, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_client_goaway, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_drain, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_drain_timeout, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_drain_idle, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_max_connections, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_timeout, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_fd_leak, setup_server, teardown),
    };
    if (getenv("TEST_FILTER"))
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
