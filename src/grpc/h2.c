/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gRPC over HTTP/2 on the loop. The server accepts on its listening socket;
 * each connection is a bufferevent feeding an nghttp2 server session. A call
 * is created at the request's HEADERS, validated there (method, content-type,
 * grpc-timeout), collects its one request message through the framer, and is
 * dispatched at END_STREAM. Replies go out through an nghttp2 data provider
 * reading from the call's own buffer, so HTTP/2 flow control paces each
 * stream separately, and the socket's output buffer is refilled only below a
 * high-water mark, so a slow reader never grows the daemon. Trailers carry
 * the status; a call finished before any message gets a trailers-only reply.
 *
 * nghttp2 is never re-entered: callbacks only submit frames and mark work,
 * and the session is flushed after nghttp2_session_mem_recv() returns or
 * from a per-connection event when a call ends later from elsewhere.
 * Closing a connection frees the socket at once but the connection, its
 * session and its calls only through loop_defer_free(), since nghttp2 or our
 * own code may still be on the stack.
 */
#include "autoconf.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <nghttp2/nghttp2.h>

#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "grpc/h2.h"
#include "grpc/h2_codec.h"

#define DEFAULT_MAX_MSG (16u << 20)
#define DEFAULT_MAX_STREAMS 128u
#define DEFAULT_MAX_CONNECTIONS 64u
#define DEFAULT_MAX_HEADER_LIST (16u << 10)
#define MAX_HEADER_FIELD (8u << 10) /* name + value of one header */
#define STREAM_WINDOW (1 << 20)
#define CONN_WINDOW (16 << 20)
/* Refill the socket's output buffer only while it holds less than this. */
#define OUT_HIGH (128u << 10)
/* ...and be called back to refill once a write leaves it at or below this. */
#define OUT_LOW (32u << 10)
/* Between the shutdown notice and the real GOAWAY: time for in-flight requests to land. */
#define GOAWAY_DELAY_MS 100
#define DEFAULT_HANDSHAKE_MS 10000
#define DEFAULT_KEEPALIVE_MS 120000
#define DEFAULT_KEEPALIVE_TIMEOUT_MS 20000
#define ACCEPT_RETRY_MS 200
#define MAX_TIMER_MS (100LL * 24 * 3600 * 1000)

enum call_state {
    CALL_RECV,     /* reading the request; waits for END_STREAM */
    CALL_RUNNING,  /* dispatched; waits for h2_call_finish() */
    CALL_FINISHED, /* status queued (or connection gone); waits for the stream to close */
};

/* Why a request is answered at its HEADERS without being dispatched. */
enum call_reject {
    REJECT_NONE,
    REJECT_HEADERS_TOO_LARGE,
    REJECT_BAD_TIMEOUT,
    REJECT_MALFORMED, /* RFC 9113 8.1.1: answered with RST_STREAM(PROTOCOL_ERROR) */
};

/* Request pseudo-header fields seen so far (bits of h2_call.pseudo). */
enum pseudo_header {
    PSEUDO_METHOD = 1 << 0,
    PSEUDO_SCHEME = 1 << 1,
    PSEUDO_PATH = 1 << 2,
    PSEUDO_AUTHORITY = 1 << 3,
};

enum content_type {
    CT_MISSING,
    CT_GRPC,
    CT_OTHER,
};

struct h2_call {
    uint64_t id;
    struct h2_conn *conn;
    TAILQ_ENTRY(h2_call) link; /* conn->calls */
    int32_t stream_id;
    enum call_state state;
    bool in_table;

    /* Request, as the headers arrive. */
    char *path;
    char *encoding;
    bool is_post;
    enum content_type content_type;
    enum call_reject reject;
    const char *malformed; /* why, when reject is REJECT_MALFORMED */
    unsigned pseudo;       /* enum pseudo_header bits */
    bool regular_seen;     /* a regular header field came: no pseudo-header may follow */
    size_t header_bytes;
    bool has_timeout;
    int64_t timeout_ns;
    struct h2_framer framer;
    uint8_t *req;
    size_t req_len;
    size_t held; /* request bytes counted in conn->held and srv->held */

    int64_t deadline_ns;
    struct loop_timer *deadline;

    /* Reply. */
    bool headers_sent;
    bool data_deferred; /* the data provider returned NGHTTP2_ERR_DEFERRED */
    /* Framed reply bytes not yet handed to nghttp2: out[out_off..out_len). */
    uint8_t *out;
    size_t out_off, out_len, out_alloc, out_cap;
    int status;
    char *message; /* percent-encoded grpc-message, or NULL */

    void (*cancel_cb)(uint64_t call_id, void *arg);
    void *cancel_arg;
};

/* Whether a connection is alive (its own timer); closing is the closed flag. */
enum conn_state {
    CONN_HANDSHAKE, /* accepted; waits for the client's SETTINGS, at most handshake_ms */
    CONN_OPEN,      /* serving; the timer checks for keepalive_ms of silence */
    CONN_PINGING,   /* silent that long: PING sent; waits keepalive_timeout_ms for any byte */
};

struct h2_conn {
    uint64_t id;
    struct h2_server *srv;     /* NULL once closed */
    TAILQ_ENTRY(h2_conn) link; /* srv->conns until closed */
    struct bufferevent *bev;   /* NULL once closed */
    nghttp2_session *session;
    struct event *flush_ev;
    TAILQ_HEAD(, h2_call) calls;
    size_t held; /* request bytes its calls hold */
    bool closed;
    bool goaway_sent;
    enum conn_state state;
    struct loop_timer *timer; /* the handshake or keepalive deadline of state */
    int64_t accepted_ns;
    int64_t last_recv_ns; /* when bytes last came from the client */
    int64_t ping_sent_ns;
};

enum server_state {
    SERVER_SERVING,
    SERVER_DRAINING, /* GOAWAY sent or about to; waits for calls, then connections, to end */
    SERVER_DRAINED,  /* done callback ran */
};

struct h2_server {
    struct evconnlistener *listener;
    struct loop_timer *accept_retry;
    struct h2_server_opts opts;
    h2_dispatch_cb dispatch;
    void *arg;
    nghttp2_session_callbacks *callbacks;
    nghttp2_option *option;
    TAILQ_HEAD(, h2_conn) conns;
    size_t n_conns;
    size_t n_calls;
    size_t held; /* request bytes held by the calls of all connections */
    enum server_state state;
    struct loop_timer *goaway_timer;
    struct loop_timer *drain_timer;
    struct event *check_ev;
    void (*done)(void *arg);
    void *done_arg;
};

static uint64_t next_call_id = 1;
static uint64_t next_conn_id = 1;

static enum content_type parse_content_type(const uint8_t *v, size_t len)
{
    static const char grpc[] = "application/grpc";
    size_t n = sizeof(grpc) - 1;
    if (len < n || strncasecmp((const char *)v, grpc, n) != 0)
        return CT_OTHER;
    if (len == n || v[n] == '+' || v[n] == ';')
        return CT_GRPC;
    return CT_OTHER;
}

static bool header_is(const uint8_t *name, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(name, want, len) == 0;
}

/* ---- the call table: open addressing, linear probing, keyed by call id ---- */

static struct {
    struct h2_call **slots;
    size_t cap; /* 0 or a power of two */
    size_t count;
} table;

static size_t id_hash(uint64_t id)
{
    /* splitmix64 finalizer: sequential ids spread over the table. */
    id ^= id >> 30;
    id *= 0xbf58476d1ce4e5b9ULL;
    id ^= id >> 27;
    id *= 0x94d049bb133111ebULL;
    id ^= id >> 31;
    return (size_t)id;
}

static void table_put(struct h2_call *call)
{
    size_t mask = table.cap - 1;
    size_t i = id_hash(call->id) & mask;
    while (table.slots[i])
        i = (i + 1) & mask;
    table.slots[i] = call;
}

static void table_insert(struct h2_call *call)
{
    if ((table.count + 1) * 2 > table.cap) {
        struct h2_call **old = table.slots;
        size_t old_cap = table.cap;
        table.cap = old_cap ? old_cap * 2 : 64;
        table.slots = xcalloc(table.cap, sizeof(*table.slots));
        for (size_t i = 0; i < old_cap; i++) {
            if (old[i])
                table_put(old[i]);
        }
        free(old);
    }
    table_put(call);
    table.count++;
    call->in_table = true;
}

static size_t table_find(uint64_t id)
{
    if (!table.cap)
        return SIZE_MAX;
    size_t mask = table.cap - 1;
    for (size_t i = id_hash(id) & mask; table.slots[i]; i = (i + 1) & mask) {
        if (table.slots[i]->id == id)
            return i;
    }
    return SIZE_MAX;
}

static void table_remove(struct h2_call *call)
{
    if (!call->in_table)
        return;
    call->in_table = false;
    size_t i = table_find(call->id);
    assert_state(i != SIZE_MAX);
    size_t mask = table.cap - 1;
    table.slots[i] = NULL;
    /* Backward-shift deletion: pull later entries of the probe run into the hole. */
    for (size_t j = (i + 1) & mask; table.slots[j]; j = (j + 1) & mask) {
        size_t home = id_hash(table.slots[j]->id) & mask;
        bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            table.slots[i] = table.slots[j];
            table.slots[j] = NULL;
            i = j;
        }
    }
    if (--table.count == 0) {
        free(table.slots);
        table.slots = NULL;
        table.cap = 0;
    }
}

struct h2_call *h2_call_lookup(uint64_t id)
{
    size_t i = table_find(id);
    return i == SIZE_MAX ? NULL : table.slots[i];
}

/* ---- calls ---- */

static void conn_schedule_flush(struct h2_conn *c);
static void conn_handshake_done(struct h2_conn *c);
static void server_schedule_check(struct h2_server *s);

static nghttp2_nv make_nv(const char *name, const char *value)
{
    return (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                        NGHTTP2_NV_FLAG_NONE};
}

static void on_deadline(void *arg);

static struct h2_call *call_new(struct h2_conn *c, int32_t stream_id)
{
    struct h2_call *call = xcalloc(1, sizeof(*call));
    call->id = next_call_id++;
    call->conn = c;
    call->stream_id = stream_id;
    call->state = CALL_RECV;
    h2_framer_init(&call->framer, c->srv->opts.max_recv_msg, NULL);
    /* Room for a reply message being written while the previous one still drains. */
    call->out_cap = 2 * ((size_t)c->srv->opts.max_send_msg + 5);
    table_insert(call);
    TAILQ_INSERT_HEAD(&c->calls, call, link);
    c->srv->n_calls++;
    return call;
}

static void call_unlink(struct h2_call *call)
{
    TAILQ_REMOVE(&call->conn->calls, call, link);
}

/*
 * Bring the connection's and the server's totals in step with what the call
 * holds of its request: a message being received, or a complete one waiting
 * for END_STREAM.
 */
static void call_recount(struct h2_call *call)
{
    struct h2_conn *c = call->conn;
    size_t now = call->framer.body.len + (call->req ? call->req_len : 0);
    c->held = c->held - call->held + now;
    c->srv->held = c->srv->held - call->held + now;
    call->held = now;
}

/* Errors: RESOURCE_EXHAUSTED when the connection's or the server's total is over its cap. */
static int check_held(const struct h2_conn *c, struct error **err)
{
    const struct h2_server *s = c->srv;
    if (c->held > s->opts.max_conn_held)
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0,
                         "requests in progress on this connection hold more than %zu bytes",
                         s->opts.max_conn_held);
    if (s->held > s->opts.max_held)
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0,
                         "requests in progress hold more than %zu bytes", s->opts.max_held);
    return 0;
}

/* Drop the request bytes the call still holds, and their count. */
static void call_release_request(struct h2_call *call)
{
    h2_framer_free(&call->framer);
    free(steal_ptr(&call->req));
    struct h2_conn *c = call->conn;
    if (!c->closed) {
        c->held -= call->held;
        c->srv->held -= call->held;
    }
    call->held = 0;
}

static void call_free(struct h2_call *call)
{
    call_release_request(call);
    table_remove(call);
    loop_timer_free(call->deadline);
    free(call->out);
    free(call->path);
    free(call->encoding);
    free(call->message);
    free(call);
}

static const char *call_path(const struct h2_call *call)
{
    return call->path ? call->path : "-";
}

/*
 * Mark the call finished: it leaves the table, its deadline stops and its
 * cancel callback is dropped. Returns the callback that was registered, so a
 * caller ending the call on the handler's behalf can fire it last.
 */
static void call_mark_finished(struct h2_call *call, void (**cb)(uint64_t, void *), void **cb_arg)
{
    call->state = CALL_FINISHED;
    /* A call ended while its request was still arriving must not hold on to it. */
    call_release_request(call);
    table_remove(call);
    loop_timer_free(steal_ptr(&call->deadline));
    *cb = steal_ptr(&call->cancel_cb);
    *cb_arg = steal_ptr(&call->cancel_arg);
}

/*
 * End the call with a status: a trailers-only reply when no message went
 * out, otherwise trailers after the queued data. Returns the cancel callback
 * to fire (see call_mark_finished); NULL when the call had already ended.
 */
static void call_end(struct h2_call *call, int http_status, int code, const char *message,
                     void (**cb)(uint64_t, void *), void **cb_arg)
{
    *cb = NULL;
    *cb_arg = NULL;
    if (call->state == CALL_FINISHED)
        return;
    call_mark_finished(call, cb, cb_arg);
    log_debug("call finished rpc=%s call=%" PRIu64 " status=%s", call_path(call), call->id,
              grpc_code_name(code));
    struct h2_conn *c = call->conn;
    if (c->closed)
        return;
    call->status = code;
    if (message && *message)
        call->message = h2_grpc_message_encode(message);
    if (call->headers_sent) {
        if (call->data_deferred) {
            call->data_deferred = false;
            nghttp2_session_resume_data(c->session, call->stream_id);
        }
        conn_schedule_flush(c);
        return;
    }
    call->headers_sent = true;
    char http[8], status[12];
    snprintf(http, sizeof(http), "%d", http_status);
    snprintf(status, sizeof(status), "%d", code);
    nghttp2_nv nva[5] = {
        make_nv(":status", http),
        make_nv("content-type", "application/grpc"),
        make_nv("grpc-accept-encoding", "identity"),
        make_nv("grpc-status", status),
    };
    size_t n = 4;
    if (call->message)
        nva[n++] = make_nv("grpc-message", call->message);
    int rv = nghttp2_submit_response(c->session, call->stream_id, nva, n, NULL);
    if (rv < 0) {
        log_warn("submit response failed rpc=%s call=%" PRIu64 " err=\"%s\"", call_path(call),
                 call->id, nghttp2_strerror(rv));
        nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, call->stream_id,
                                  NGHTTP2_INTERNAL_ERROR);
    }
    conn_schedule_flush(c);
}

/* End the call for a reason of our own and tell the handler, if it is waiting. */
static void call_end_and_cancel(struct h2_call *call, int http_status, int code,
                                const char *message)
{
    void (*cb)(uint64_t, void *);
    void *cb_arg;
    uint64_t id = call->id;
    call_end(call, http_status, code, message, &cb, &cb_arg);
    if (cb)
        cb(id, cb_arg);
}

static void call_fail(struct h2_call *call, const struct error *e)
{
    call_end_and_cancel(call, 200, e->grpc_code, e->msg);
}

static void on_deadline(void *arg)
{
    struct h2_call *call = arg;
    log_debug("deadline exceeded rpc=%s call=%" PRIu64, call_path(call), call->id);
    call_end_and_cancel(call, 200, GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
}

/*
 * A request HTTP/2 calls malformed: reset its stream with PROTOCOL_ERROR, as
 * nghttp2's own checks (off, see h2_server_new) and grpc-go's server do. The
 * connection and its other calls go on.
 */
static void call_reset_malformed(struct h2_call *call)
{
    void (*cb)(uint64_t, void *);
    void *cb_arg;
    log_debug("malformed request conn=%" PRIu64 " stream=%" PRId32 " reason=\"%s\"", call->conn->id,
              call->stream_id, call->malformed);
    call_mark_finished(call, &cb, &cb_arg);
    /* Nothing registers a cancel callback before dispatch. */
    assert_state(cb == NULL);
    nghttp2_submit_rst_stream(call->conn->session, NGHTTP2_FLAG_NONE, call->stream_id,
                              NGHTTP2_PROTOCOL_ERROR);
    conn_schedule_flush(call->conn);
}

static void call_on_headers(struct h2_call *call)
{
    if (call->state != CALL_RECV)
        return;
    if (call->reject != REJECT_MALFORMED &&
        (call->pseudo & (PSEUDO_METHOD | PSEUDO_SCHEME | PSEUDO_PATH)) !=
            (PSEUDO_METHOD | PSEUDO_SCHEME | PSEUDO_PATH)) {
        call->reject = REJECT_MALFORMED;
        call->malformed = "missing :method, :scheme or :path";
    }
    if (call->reject == REJECT_MALFORMED) {
        call_reset_malformed(call);
        return;
    }
    /* A non-gRPC client gets an HTTP status it understands (gRPC HTTP/2 spec). */
    if (call->reject == REJECT_HEADERS_TOO_LARGE) {
        call_end_and_cancel(call, 200, GRPC_RESOURCE_EXHAUSTED, "request header list too large");
        return;
    }
    if (call->content_type != CT_GRPC) {
        call_end_and_cancel(call, 415, GRPC_INTERNAL, "invalid gRPC request content-type");
        return;
    }
    if (!call->is_post) {
        call_end_and_cancel(call, 405, GRPC_INTERNAL, "gRPC requires method POST");
        return;
    }
    if (!call->path || call->path[0] != '/') {
        call_end_and_cancel(call, 200, GRPC_UNIMPLEMENTED, "malformed method name");
        return;
    }
    if (call->reject == REJECT_BAD_TIMEOUT) {
        call_end_and_cancel(call, 200, GRPC_INTERNAL, "malformed grpc-timeout");
        return;
    }
    h2_framer_init(&call->framer, call->conn->srv->opts.max_recv_msg, call->encoding);
    if (call->has_timeout) {
        int64_t now = now_monotonic_ns();
        call->deadline_ns = call->timeout_ns > INT64_MAX - now ? INT64_MAX : now + call->timeout_ns;
        int64_t ms = call->timeout_ns / 1000000 + (call->timeout_ns % 1000000 != 0);
        call->deadline = loop_timer_new(on_deadline, call);
        loop_timer_arm(call->deadline, ms > MAX_TIMER_MS ? MAX_TIMER_MS : ms);
    }
}

static void call_on_data(struct h2_call *call, const uint8_t *data, size_t len)
{
    if (call->state != CALL_RECV)
        return;
    while (len > 0) {
        _cleanup_error_ struct error *err = NULL;
        ssize_t n = h2_framer_feed(&call->framer, data, len, &err);
        if (n < 0) {
            call_fail(call, err);
            return;
        }
        data += n;
        len -= (size_t)n;
        size_t mlen = 0;
        _cleanup_free_ uint8_t *msg = h2_framer_take(&call->framer, &mlen);
        /* The framer stops early only at the end of a message. */
        assert_state(msg || len == 0);
        if (msg && call->req) {
            call_end_and_cancel(call, 200, GRPC_INVALID_ARGUMENT,
                                "expected exactly one request message");
            return;
        }
        if (msg) {
            call->req = steal_ptr(&msg);
            call->req_len = mlen;
        }
        call_recount(call);
        if (check_held(call->conn, &err) < 0) {
            call_fail(call, err);
            return;
        }
    }
}

static void call_on_end_stream(struct h2_call *call)
{
    if (call->state != CALL_RECV)
        return;
    _cleanup_error_ struct error *err = NULL;
    if (h2_framer_end(&call->framer, &err) < 0) {
        call_fail(call, err);
        return;
    }
    if (!call->req) {
        call_end_and_cancel(call, 200, GRPC_INVALID_ARGUMENT,
                            "expected exactly one request message");
        return;
    }
    call->state = CALL_RUNNING;
    struct h2_server *s = call->conn->srv;
    _cleanup_free_ uint8_t *req = steal_ptr(&call->req);
    /* The request is the handler's now, and gone when it returns: not held any more. */
    call_recount(call);
    log_debug("dispatch rpc=%s call=%" PRIu64, call->path, call->id);
    s->dispatch(call, call->path, req, call->req_len, s->arg);
}

/* ---- nghttp2 callbacks ---- */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct h2_conn *c = user_data;
    if (c->closed)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2_call *call = call_new(c, frame->hd.stream_id);
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, call);
    return 0;
}

static unsigned pseudo_bit(const uint8_t *name, size_t len)
{
    static const struct {
        const char *name;
        unsigned bit;
    } known[] = {
        {":method", PSEUDO_METHOD},
        {":scheme", PSEUDO_SCHEME},
        {":path", PSEUDO_PATH},
        {":authority", PSEUDO_AUTHORITY},
    };
    for (size_t i = 0; i < ARRAY_SIZE(known); i++) {
        if (header_is(name, len, known[i].name))
            return known[i].bit;
    }
    return 0;
}

/*
 * The HTTP/2 request rules that matter to a gRPC server (RFC 9113 8.2 and
 * 8.3), checked here because nghttp2's own checks are off: they refuse the
 * socket path that grpc-go (kubelet, crictl) sends as :authority. Any
 * :authority and host value is accepted, within the header size caps.
 * Returns why the field makes the request malformed, or NULL.
 */
static const char *header_malformed(struct h2_call *call, const uint8_t *name, size_t namelen,
                                    const uint8_t *value, size_t valuelen)
{
    static const char *const connection_specific[] = {
        "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
    };
    if (!nghttp2_check_header_name(name, namelen))
        return "invalid header field name";
    if (!nghttp2_check_header_value(value, valuelen))
        return "invalid header field value";
    if (name[0] == ':') {
        unsigned bit = pseudo_bit(name, namelen);
        if (!bit)
            return "unknown pseudo-header field";
        if (call->regular_seen)
            return "pseudo-header field after a regular one";
        if (call->pseudo & bit)
            return "repeated pseudo-header field";
        if (bit != PSEUDO_AUTHORITY && valuelen == 0)
            return "empty pseudo-header field";
        if (bit == PSEUDO_PATH && (value[0] != '/' || !nghttp2_check_path(value, valuelen)))
            return "invalid :path";
        call->pseudo |= bit;
        return NULL;
    }
    call->regular_seen = true;
    for (size_t i = 0; i < ARRAY_SIZE(connection_specific); i++) {
        if (header_is(name, namelen, connection_specific[i]))
            return "connection-specific header field";
    }
    if (header_is(name, namelen, "te") &&
        !(valuelen == 8 && strncasecmp((const char *)value, "trailers", 8) == 0))
        return "te other than trailers";
    return NULL;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    struct h2_conn *c = user_data;
    if (c->closed)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2_call *call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!call || call->reject == REJECT_HEADERS_TOO_LARGE)
        return 0;
    /* Accounted as SETTINGS_MAX_HEADER_LIST_SIZE counts: name + value + 32. */
    call->header_bytes += namelen + valuelen + 32;
    if (namelen + valuelen > MAX_HEADER_FIELD ||
        call->header_bytes > c->srv->opts.max_header_list) {
        call->reject = REJECT_HEADERS_TOO_LARGE;
        return 0;
    }
    if (call->reject == REJECT_MALFORMED)
        return 0;
    const char *why = header_malformed(call, name, namelen, value, valuelen);
    if (why) {
        call->reject = REJECT_MALFORMED;
        call->malformed = why;
        return 0;
    }
    if (header_is(name, namelen, ":method")) {
        call->is_post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
    } else if (header_is(name, namelen, ":path")) {
        free(call->path);
        call->path = xstrndup((const char *)value, valuelen);
    } else if (header_is(name, namelen, "content-type")) {
        call->content_type = parse_content_type(value, valuelen);
    } else if (header_is(name, namelen, "grpc-timeout")) {
        if (h2_timeout_parse((const char *)value, valuelen, &call->timeout_ns) == 0)
            call->has_timeout = true;
        else if (call->reject == REJECT_NONE)
            call->reject = REJECT_BAD_TIMEOUT;
    } else if (header_is(name, namelen, "grpc-encoding")) {
        free(call->encoding);
        call->encoding = xstrndup((const char *)value, valuelen);
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct h2_conn *c = user_data;
    if (c->closed)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    struct h2_call *call = NULL;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
        if (!call)
            break;
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
            call_on_headers(call);
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
            call_on_end_stream(call);
        break;
    case NGHTTP2_DATA:
        if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
            break;
        call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
        if (call)
            call_on_end_stream(call);
        break;
    case NGHTTP2_GOAWAY:
        log_debug("client sent GOAWAY conn=%" PRIu64 " error=%" PRIu32, c->id,
                  frame->goaway.error_code);
        break;
    case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK))
            conn_handshake_done(c);
        break;
    default:
        break;
    }
    return c->closed ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                              const uint8_t *data, size_t len, void *user_data)
{
    struct h2_conn *c = user_data;
    if (c->closed)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    struct h2_call *call = nghttp2_session_get_stream_user_data(session, stream_id);
    if (call)
        call_on_data(call, data, len);
    return c->closed ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct h2_conn *c = user_data;
    int32_t id = frame->hd.stream_id;
    if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR)
        log_warn("closing connection after client protocol error conn=%" PRIu64 " error=%s", c->id,
                 nghttp2_http2_strerror(frame->goaway.error_code));
    /*
     * Our END_STREAM went out while the client is still sending (an early
     * error such as an oversized message): ask it to stop, without error,
     * as HTTP/2 section 8.1 allows.
     */
    if (frame->hd.type == NGHTTP2_HEADERS && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        nghttp2_session_get_stream_remote_close(session, id) == 0)
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    struct h2_conn *c = user_data;
    if (c->closed)
        return 0;
    struct h2_call *call = nghttp2_session_get_stream_user_data(session, stream_id);
    if (!call)
        return 0;
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    call_unlink(call);
    c->srv->n_calls--;
    server_schedule_check(c->srv);
    void (*cb)(uint64_t, void *) = NULL;
    void *cb_arg = NULL;
    uint64_t id = call->id;
    if (call->state != CALL_FINISHED) {
        log_debug("call cancelled by client rpc=%s call=%" PRIu64 " error=%" PRIu32,
                  call_path(call), call->id, error_code);
        call_mark_finished(call, &cb, &cb_arg);
    }
    call_free(call);
    if (cb)
        cb(id, cb_arg);
    return 0;
}

static ssize_t on_data_read(nghttp2_session *session, int32_t stream_id, uint8_t *dst,
                            size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                            void *user_data)
{
    struct h2_call *call = source->ptr;
    size_t avail = call->out_len - call->out_off;
    size_t n = avail < length ? avail : length;
    if (n) {
        memcpy(dst, call->out + call->out_off, n);
        call->out_off += n;
        if (call->out_off == call->out_len) {
            /* Drained: give the memory back, a long stream may idle for a while. */
            free(steal_ptr(&call->out));
            call->out_off = call->out_len = call->out_alloc = 0;
        }
    }
    if (call->out_len > call->out_off)
        return (ssize_t)n;
    if (call->state != CALL_FINISHED) {
        if (n)
            return (ssize_t)n;
        call->data_deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    char status[12];
    snprintf(status, sizeof(status), "%d", call->status);
    nghttp2_nv nva[2] = {make_nv("grpc-status", status)};
    size_t nv = 1;
    if (call->message)
        nva[nv++] = make_nv("grpc-message", call->message);
    int rv = nghttp2_submit_trailer(session, stream_id, nva, nv);
    if (rv < 0) {
        log_warn("submit trailers failed rpc=%s call=%" PRIu64 " err=\"%s\"", call_path(call),
                 call->id, nghttp2_strerror(rv));
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    return (ssize_t)n;
}

static int on_error(nghttp2_session *session, int lib_error_code, const char *msg, size_t len,
                    void *user_data)
{
    struct h2_conn *c = user_data;
    log_warn("http2 protocol error from client conn=%" PRIu64 " err=\"%.*s\"", c->id, (int)len,
             msg);
    return 0;
}

static int on_invalid_frame(nghttp2_session *session, const nghttp2_frame *frame,
                            int lib_error_code, void *user_data)
{
    struct h2_conn *c = user_data;
    log_warn("invalid http2 frame from client conn=%" PRIu64 " type=%u stream=%" PRId32
             " err=\"%s\"",
             c->id, frame->hd.type, frame->hd.stream_id, nghttp2_strerror(lib_error_code));
    return 0;
}

/* ---- connections ---- */

static void conn_free(void *arg)
{
    struct h2_conn *c = arg;
    nghttp2_session_del(c->session);
    struct h2_call *call;
    while ((call = TAILQ_FIRST(&c->calls))) {
        call_unlink(call);
        call_free(call);
    }
    if (c->flush_ev)
        event_free(c->flush_ev);
    free(c);
}

/*
 * Close now: the socket goes at once, calls still running are cancelled, and
 * the rest is freed on the deferred queue. Safe from any callback, including
 * nghttp2's: it never calls into the session.
 */
static void conn_close(struct h2_conn *c, const char *why)
{
    if (c->closed)
        return;
    c->closed = true;
    struct h2_server *s = c->srv;
    log_debug("connection closed conn=%" PRIu64 " reason=\"%s\"", c->id, why);
    TAILQ_REMOVE(&s->conns, c, link);
    s->n_conns--;
    /* What its calls hold is freed with them; it no longer counts for the server. */
    s->held -= c->held;
    c->held = 0;
    event_del(c->flush_ev);
    loop_timer_free(steal_ptr(&c->timer));
    /* libevent keeps the bufferevent alive while its own callback is running. */
    bufferevent_free(c->bev);
    c->bev = NULL;
    struct h2_call *call;
    TAILQ_FOREACH (call, &c->calls, link)
        s->n_calls--;
    server_schedule_check(s);
    c->srv = NULL;
    loop_defer_free(conn_free, c);
    /* Handlers hear last: by now nothing of ours depends on the connection. */
    TAILQ_FOREACH (call, &c->calls, link) {
        if (call->state == CALL_FINISHED)
            continue;
        void (*cb)(uint64_t, void *);
        void *cb_arg;
        log_debug("call cancelled rpc=%s call=%" PRIu64 " reason=\"connection closed\"",
                  call_path(call), call->id);
        call_mark_finished(call, &cb, &cb_arg);
        if (cb)
            cb(call->id, cb_arg);
    }
}

/* Move what nghttp2 has to send into the socket's buffer, up to the high-water mark. */
static void conn_flush(struct h2_conn *c)
{
    if (c->closed)
        return;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    while (evbuffer_get_length(out) < OUT_HIGH) {
        const uint8_t *data = NULL;
        ssize_t n = nghttp2_session_mem_send(c->session, &data);
        if (c->closed)
            return;
        if (n < 0) {
            log_warn("http2 send failed conn=%" PRIu64 " err=\"%s\"", c->id,
                     nghttp2_strerror((int)n));
            conn_close(c, "send failed");
            return;
        }
        if (n == 0)
            break;
        if (evbuffer_add(out, data, (size_t)n) < 0) {
            conn_close(c, "out of buffer memory");
            return;
        }
    }
    if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session) &&
        evbuffer_get_length(out) == 0)
        conn_close(c, "session finished");
}

/*
 * Best effort before a forced close: hand what is buffered to the kernel
 * now, as far as it takes it without blocking. The output buffer of a socket
 * bufferevent is frozen for draining by anyone else, so peek and send.
 */
static void conn_write_now(struct h2_conn *c)
{
    struct iovec iov[16];
    struct evbuffer_iovec v[ARRAY_SIZE(iov)];
    int n = evbuffer_peek(bufferevent_get_output(c->bev), -1, NULL, v, ARRAY_SIZE(v));
    if (n > (int)ARRAY_SIZE(v))
        n = ARRAY_SIZE(v);
    for (int i = 0; i < n; i++)
        iov[i] = (struct iovec){v[i].iov_base, v[i].iov_len};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)(n > 0 ? n : 0)};
    if (n > 0 && sendmsg(bufferevent_getfd(c->bev), &msg, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        log_debug("final write failed conn=%" PRIu64 " err=\"%s\"", c->id, strerror(errno));
}

static void on_flush_event(evutil_socket_t fd, short what, void *arg)
{
    conn_flush(arg);
}

static void conn_schedule_flush(struct h2_conn *c)
{
    if (!c->closed)
        event_active(c->flush_ev, EV_TIMEOUT, 0);
}

static void on_conn_read(struct bufferevent *bev, void *arg)
{
    struct h2_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    c->last_recv_ns = now_monotonic_ns();
    while (!c->closed && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        ssize_t n = nghttp2_session_mem_recv(c->session, v.iov_base, v.iov_len);
        if (c->closed)
            return;
        if (n < 0) {
            log_warn("http2 protocol error from client conn=%" PRIu64 " err=\"%s\"", c->id,
                     nghttp2_strerror((int)n));
            conn_close(c, "protocol error");
            return;
        }
        evbuffer_drain(in, (size_t)n);
    }
    conn_flush(c);
}

static void on_conn_write(struct bufferevent *bev, void *arg)
{
    conn_flush(arg);
}

static void on_conn_event(struct bufferevent *bev, short what, void *arg)
{
    struct h2_conn *c = arg;
    if (what & BEV_EVENT_ERROR) {
        log_debug("connection error conn=%" PRIu64 " err=\"%s\"", c->id,
                  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        conn_close(c, "socket error");
    } else if (what & BEV_EVENT_EOF) {
        conn_close(c, "client closed");
    }
}

static void conn_goaway(struct h2_conn *c)
{
    if (c->closed || c->goaway_sent)
        return;
    c->goaway_sent = true;
    int32_t last = nghttp2_session_get_last_proc_stream_id(c->session);
    int rv = nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE, last, NGHTTP2_NO_ERROR, NULL, 0);
    if (rv < 0)
        log_debug("submit goaway failed conn=%" PRIu64 " err=\"%s\"", c->id, nghttp2_strerror(rv));
    conn_schedule_flush(c);
}

/* ---- liveness: handshake deadline, keepalive PINGs, room at the cap ---- */

static void conn_arm(struct h2_conn *c, int64_t ms)
{
    loop_timer_arm(c->timer, ms < 1 ? 1 : ms > MAX_TIMER_MS ? MAX_TIMER_MS : ms);
}

static void conn_handshake_done(struct h2_conn *c)
{
    if (c->state != CONN_HANDSHAKE)
        return;
    c->state = CONN_OPEN;
    conn_arm(c, c->srv->opts.keepalive_ms);
}

/* Tell a well-behaved client to go (GOAWAY, no error), hand it over, close. */
static void conn_goaway_close(struct h2_conn *c, const char *why)
{
    conn_goaway(c);
    conn_flush(c);
    if (c->closed)
        return;
    conn_write_now(c);
    conn_close(c, why);
}

static void on_conn_timer(void *arg)
{
    struct h2_conn *c = arg;
    const struct h2_server_opts *o = &c->srv->opts;
    int64_t now = now_monotonic_ns();
    switch (c->state) {
    case CONN_HANDSHAKE:
        log_debug("no HTTP/2 handshake in time conn=%" PRIu64 " timeout_ms=%" PRId64, c->id,
                  o->handshake_ms);
        conn_close(c, "handshake timeout");
        return;
    case CONN_OPEN: {
        int64_t silent_ms = (now - c->last_recv_ns) / 1000000;
        if (silent_ms < o->keepalive_ms) {
            conn_arm(c, o->keepalive_ms - silent_ms);
            return;
        }
        int rv = nghttp2_submit_ping(c->session, NGHTTP2_FLAG_NONE, NULL);
        if (rv < 0) {
            log_warn("submit ping failed conn=%" PRIu64 " err=\"%s\"", c->id, nghttp2_strerror(rv));
            conn_close(c, "cannot ping");
            return;
        }
        c->state = CONN_PINGING;
        c->ping_sent_ns = now;
        conn_arm(c, o->keepalive_timeout_ms);
        conn_schedule_flush(c);
        return;
    }
    case CONN_PINGING:
        /* Any byte since the PING (its ACK, or a request) shows the client is there. */
        if (c->last_recv_ns > c->ping_sent_ns) {
            c->state = CONN_OPEN;
            conn_arm(c, o->keepalive_ms - (now - c->last_recv_ns) / 1000000);
            return;
        }
        log_debug("no answer to a keepalive PING conn=%" PRIu64 " timeout_ms=%" PRId64, c->id,
                  o->keepalive_timeout_ms);
        /* A client that only stopped reading (grpcio between calls) learns why, later. */
        conn_goaway_close(c, "keepalive timeout");
        return;
    }
}

/* Is a handler at work for one of the connection's calls? */
static bool conn_has_running_call(const struct h2_conn *c)
{
    const struct h2_call *call;
    TAILQ_FOREACH (call, &c->calls, link)
        if (call->state == CALL_RUNNING)
            return true;
    return false;
}

/*
 * Room for a new connection at max_connections: the connection to close, or
 * NULL when every one has a call a handler is working on. A connection still
 * in its handshake goes first (the oldest), then the one silent longest among
 * the others: a client that keeps calling is never the one, and a request
 * that stopped arriving half-way does not hold a slot.
 */
static struct h2_conn *pick_victim(const struct h2_server *s)
{
    struct h2_conn *best = NULL, *c;
    TAILQ_FOREACH (c, &s->conns, link) {
        if (conn_has_running_call(c))
            continue;
        bool c_hs = c->state == CONN_HANDSHAKE, b_hs = best && best->state == CONN_HANDSHAKE;
        if (!best || (c_hs && !b_hs) ||
            (c_hs == b_hs &&
             (c_hs ? c->accepted_ns < best->accepted_ns : c->last_recv_ns < best->last_recv_ns)))
            best = c;
    }
    return best;
}

static int conn_new(struct h2_server *s, int fd, struct error **err)
{
    struct h2_conn *c = xcalloc(1, sizeof(*c));
    TAILQ_INIT(&c->calls);
    c->id = next_conn_id++;
    c->srv = s;
    c->bev = bufferevent_socket_new(loop_base(), fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        close(fd);
        free(c);
        return error_set(err, GRPC_INTERNAL, 0, "bufferevent_socket_new failed");
    }
    c->flush_ev = loop_event_new(-1, 0, on_flush_event, c);
    int rv = nghttp2_session_server_new2(&c->session, s->callbacks, c, s->option);
    if (rv < 0) {
        bufferevent_free(c->bev);
        event_free(c->flush_ev);
        free(c);
        return error_set(err, GRPC_INTERNAL, 0, "http2 session: %s", nghttp2_strerror(rv));
    }
    nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, s->opts.max_streams},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, s->opts.max_header_list},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
    };
    nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, settings, ARRAY_SIZE(settings));
    /* The connection window defaults to 64 KiB; widen it so large requests flow. */
    nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);

    TAILQ_INSERT_HEAD(&s->conns, c, link);
    s->n_conns++;
    c->state = CONN_HANDSHAKE;
    c->accepted_ns = c->last_recv_ns = now_monotonic_ns();
    c->timer = loop_timer_new(on_conn_timer, c);
    conn_arm(c, s->opts.handshake_ms);
    bufferevent_setcb(c->bev, on_conn_read, on_conn_write, on_conn_event, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    log_debug("connection accepted conn=%" PRIu64, c->id);
    conn_flush(c);
    return 0;
}

/* ---- server ---- */

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    struct h2_server *s = arg;
    if (s->state != SERVER_SERVING) {
        close(fd);
        return;
    }
    if (s->n_conns >= s->opts.max_connections) {
        struct h2_conn *victim = pick_victim(s);
        if (!victim) {
            log_warn("too many connections, all with calls in flight: closing a new one "
                     "max_connections=%" PRIu32,
                     s->opts.max_connections);
            close(fd);
            return;
        }
        log_debug("connection limit reached: closing the longest-silent idle connection "
                  "conn=%" PRIu64 " max_connections=%" PRIu32,
                  victim->id, s->opts.max_connections);
        conn_goaway_close(victim, "room for a new connection");
    }
    _cleanup_error_ struct error *err = NULL;
    if (conn_new(s, fd, &err) < 0)
        log_warn("cannot serve a new connection: %s", err->msg);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct h2_server *s = arg;
    int e = EVUTIL_SOCKET_ERROR();
    /* Out of fds and the like: pause rather than spin on a listener that stays readable. */
    log_warn("accept failed, pausing err=\"%s\"", strerror(e));
    evconnlistener_disable(l);
    loop_timer_arm(s->accept_retry, ACCEPT_RETRY_MS);
}

static void on_accept_retry(void *arg)
{
    struct h2_server *s = arg;
    if (s->state == SERVER_SERVING)
        evconnlistener_enable(s->listener);
}

static void server_schedule_check(struct h2_server *s)
{
    if (s->state == SERVER_DRAINING)
        event_active(s->check_ev, EV_TIMEOUT, 0);
}

static void server_drained(struct h2_server *s)
{
    s->state = SERVER_DRAINED;
    loop_timer_disarm(s->goaway_timer);
    loop_timer_disarm(s->drain_timer);
    void (*done)(void *) = steal_ptr(&s->done);
    if (done)
        done(s->done_arg);
}

static void on_drain_check(evutil_socket_t fd, short what, void *arg)
{
    struct h2_server *s = arg;
    if (s->state != SERVER_DRAINING)
        return;
    if (s->n_calls == 0) {
        /* Nothing left to wait for: final GOAWAY now; each connection closes once it is sent. */
        struct h2_conn *c;
        TAILQ_FOREACH (c, &s->conns, link)
            conn_goaway(c);
    }
    if (s->n_conns == 0)
        server_drained(s);
}

static void on_goaway_timer(void *arg)
{
    struct h2_server *s = arg;
    struct h2_conn *c;
    TAILQ_FOREACH (c, &s->conns, link)
        conn_goaway(c);
}

static void on_drain_timeout(void *arg)
{
    struct h2_server *s = arg;
    log_info("drain timed out, cancelling calls=%zu connections=%zu", s->n_calls, s->n_conns);
    struct h2_conn *c;
    TAILQ_FOREACH (c, &s->conns, link) {
        struct h2_call *call;
        TAILQ_FOREACH (call, &c->calls, link)
            call_end_and_cancel(call, 200, GRPC_UNAVAILABLE, "server shutting down");
    }
    while ((c = TAILQ_FIRST(&s->conns))) {
        conn_goaway(c);
        conn_flush(c);
        if (c->closed)
            continue;
        conn_write_now(c);
        conn_close(c, "drain timeout");
    }
    server_drained(s);
}

struct h2_server *h2_server_new(int listen_fd, const struct h2_server_opts *opts,
                                h2_dispatch_cb dispatch, void *arg, struct error **err)
{
    struct h2_server *s = xcalloc(1, sizeof(*s));
    TAILQ_INIT(&s->conns);
    s->opts = *opts;
    if (!s->opts.max_recv_msg)
        s->opts.max_recv_msg = DEFAULT_MAX_MSG;
    if (!s->opts.max_send_msg)
        s->opts.max_send_msg = DEFAULT_MAX_MSG;
    if (!s->opts.max_streams)
        s->opts.max_streams = DEFAULT_MAX_STREAMS;
    if (!s->opts.max_connections)
        s->opts.max_connections = DEFAULT_MAX_CONNECTIONS;
    if (!s->opts.max_header_list)
        s->opts.max_header_list = DEFAULT_MAX_HEADER_LIST;
    if (!s->opts.max_conn_held)
        s->opts.max_conn_held = 2 * (size_t)s->opts.max_recv_msg;
    if (!s->opts.max_held)
        s->opts.max_held = 4 * (size_t)s->opts.max_recv_msg;
    if (s->opts.handshake_ms <= 0)
        s->opts.handshake_ms = DEFAULT_HANDSHAKE_MS;
    if (s->opts.keepalive_ms <= 0)
        s->opts.keepalive_ms = DEFAULT_KEEPALIVE_MS;
    if (s->opts.keepalive_timeout_ms <= 0)
        s->opts.keepalive_timeout_ms = DEFAULT_KEEPALIVE_TIMEOUT_MS;
    s->dispatch = dispatch;
    s->arg = arg;
    s->state = SERVER_SERVING;

    if (nghttp2_session_callbacks_new(&s->callbacks) < 0 || nghttp2_option_new(&s->option) < 0) {
        close(listen_fd);
        h2_server_free(s);
        return error_set(err, GRPC_INTERNAL, ENOMEM, "http2 setup"), NULL;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(s->callbacks, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(s->callbacks, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(s->callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(s->callbacks, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(s->callbacks, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(s->callbacks, on_stream_close);
    nghttp2_session_callbacks_set_error_callback2(s->callbacks, on_error);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(s->callbacks, on_invalid_frame);
    /*
     * nghttp2's HTTP messaging checks refuse an :authority holding a '/', the
     * socket path grpc-go sends; header_malformed() applies the rest of them.
     */
    nghttp2_option_set_no_http_messaging(s->option, 1);
    /* Closed streams are of no use to us; do not keep them for the priority tree. */
    nghttp2_option_set_no_closed_streams(s->option, 1);

    s->accept_retry = loop_timer_new(on_accept_retry, s);
    s->goaway_timer = loop_timer_new(on_goaway_timer, s);
    s->drain_timer = loop_timer_new(on_drain_timeout, s);
    s->check_ev = loop_event_new(-1, 0, on_drain_check, s);
    /* Backlog 0: the socket is already listening. */
    s->listener = evconnlistener_new(loop_base(), on_accept, s,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, listen_fd);
    if (!s->listener) {
        close(listen_fd);
        h2_server_free(s);
        return error_set(err, GRPC_INTERNAL, 0, "cannot listen for gRPC connections"), NULL;
    }
    evconnlistener_set_error_cb(s->listener, on_accept_error);
    return s;
}

void h2_server_drain(struct h2_server *s, int64_t timeout_ms, void (*done)(void *arg), void *arg)
{
    if (s->state != SERVER_SERVING)
        return;
    s->state = SERVER_DRAINING;
    s->done = done;
    s->done_arg = arg;
    evconnlistener_disable(s->listener);
    loop_timer_disarm(s->accept_retry);
    log_info("draining gRPC server connections=%zu calls=%zu", s->n_conns, s->n_calls);
    struct h2_conn *c;
    TAILQ_FOREACH (c, &s->conns, link) {
        nghttp2_submit_shutdown_notice(c->session);
        conn_schedule_flush(c);
    }
    if (timeout_ms < 0)
        timeout_ms = 0;
    loop_timer_arm(s->goaway_timer, timeout_ms < GOAWAY_DELAY_MS ? timeout_ms : GOAWAY_DELAY_MS);
    loop_timer_arm(s->drain_timer, timeout_ms);
    server_schedule_check(s);
}

void h2_server_free(struct h2_server *s)
{
    if (!s)
        return;
    if (s->listener)
        evconnlistener_free(s->listener);
    s->state = SERVER_DRAINED;
    while (!TAILQ_EMPTY(&s->conns))
        conn_close(TAILQ_FIRST(&s->conns), "server stopped");
    loop_timer_free(s->accept_retry);
    loop_timer_free(s->goaway_timer);
    loop_timer_free(s->drain_timer);
    if (s->check_ev)
        event_free(s->check_ev);
    if (s->callbacks)
        nghttp2_session_callbacks_del(s->callbacks);
    if (s->option)
        nghttp2_option_del(s->option);
    free(s);
}

size_t h2_server_connection_count(const struct h2_server *s)
{
    return s->n_conns;
}

size_t h2_server_call_count(const struct h2_server *s)
{
    return s->n_calls;
}

size_t h2_server_held_bytes(const struct h2_server *s)
{
    return s->held;
}

size_t h2_server_output_bytes(const struct h2_server *s)
{
    size_t n = 0;
    const struct h2_conn *c;
    TAILQ_FOREACH (c, &s->conns, link)
        n += evbuffer_get_length(bufferevent_get_output(c->bev));
    return n;
}

/* ---- the call API ---- */

uint64_t h2_call_id(const struct h2_call *call)
{
    return call->id;
}

const char *h2_call_path(const struct h2_call *call)
{
    return call->path;
}

int64_t h2_call_deadline_ns(const struct h2_call *call)
{
    return call->deadline_ns;
}

/* The response HEADERS, with the call's reply bytes as the data source. */
static int submit_headers(struct h2_call *call, struct error **err)
{
    nghttp2_nv nva[] = {
        make_nv(":status", "200"),
        make_nv("content-type", "application/grpc"),
        make_nv("grpc-accept-encoding", "identity"),
    };
    nghttp2_data_provider prd = {.source.ptr = call, .read_callback = on_data_read};
    int rv =
        nghttp2_submit_response(call->conn->session, call->stream_id, nva, ARRAY_SIZE(nva), &prd);
    if (rv < 0)
        return error_set(err, GRPC_INTERNAL, 0, "submit response: %s", nghttp2_strerror(rv));
    call->headers_sent = true;
    return 0;
}

int h2_call_send_headers(struct h2_call *call, struct error **err)
{
    if (call->state != CALL_RUNNING || call->conn->closed)
        return error_set(err, GRPC_CANCELLED, 0, "call already ended");
    if (call->headers_sent)
        return 0;
    if (submit_headers(call, err) < 0)
        return -1;
    conn_schedule_flush(call->conn);
    return 0;
}

int h2_call_send(struct h2_call *call, const uint8_t *msg, size_t len, struct error **err)
{
    if (call->state != CALL_RUNNING || call->conn->closed)
        return error_set(err, GRPC_CANCELLED, 0, "call already ended");
    uint32_t max = call->conn->srv->opts.max_send_msg;
    if (len > max)
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0,
                         "sent message larger than max (%zu vs. %" PRIu32 ")", len, max);
    size_t pending = call->out_len - call->out_off;
    if (call->out_cap - pending < len + 5)
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0, "reply buffer full");
    if (call->out_off > 0) {
        memmove(call->out, call->out + call->out_off, pending);
        call->out_off = 0;
        call->out_len = pending;
    }
    size_t need = pending + 5 + len;
    if (need > call->out_alloc) {
        /* Exact for a first message (the unary case), doubling for a stream of them. */
        size_t want = need > 2 * call->out_alloc ? need : 2 * call->out_alloc;
        if (want > call->out_cap)
            want = call->out_cap;
        call->out = xrealloc(call->out, want);
        call->out_alloc = want;
    }
    uint8_t *p = call->out + call->out_len;
    h2_frame_prefix(p, (uint32_t)len);
    if (len)
        memcpy(p + H2_FRAME_PREFIX_LEN, msg, len);
    call->out_len = need;
    struct h2_conn *c = call->conn;
    if (!call->headers_sent) {
        if (submit_headers(call, err) < 0) {
            call->out_len -= len + 5;
            return -1;
        }
    } else if (call->data_deferred) {
        call->data_deferred = false;
        nghttp2_session_resume_data(c->session, call->stream_id);
    }
    conn_schedule_flush(c);
    return 0;
}

void h2_call_finish(struct h2_call *call, int grpc_code, const char *message)
{
    void (*cb)(uint64_t, void *);
    void *cb_arg;
    if (grpc_code < 0)
        grpc_code = GRPC_UNKNOWN;
    /* The handler ended the call itself: it needs no cancel notice. */
    call_end(call, 200, grpc_code, message, &cb, &cb_arg);
}

/* ---- long-lived server streams (events, streamed lists) ---- */

void h2_call_set_out_cap(struct h2_call *call, size_t cap)
{
    size_t floor = (size_t)call->conn->srv->opts.max_send_msg + 5;
    call->out_cap = cap > floor ? cap : floor;
}

size_t h2_call_out_pending(const struct h2_call *call)
{
    return call->out_len - call->out_off;
}

void h2_call_cut_off(struct h2_call *call)
{
    void (*cb)(uint64_t, void *);
    void *cb_arg;
    if (call->state == CALL_FINISHED)
        return;
    log_debug("call cut off rpc=%s call=%" PRIu64 " unsent=%zu", call_path(call), call->id,
              call->out_len - call->out_off);
    call_mark_finished(call, &cb, &cb_arg);
    free(steal_ptr(&call->out));
    call->out_off = call->out_len = call->out_alloc = 0;
    /* Should the data source be asked once more before the reset goes out: no OK trailers. */
    call->status = GRPC_RESOURCE_EXHAUSTED;
    struct h2_conn *c = call->conn;
    if (!c->closed) {
        nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, call->stream_id,
                                  NGHTTP2_ENHANCE_YOUR_CALM);
        conn_schedule_flush(c);
    }
}

void h2_call_on_cancel(struct h2_call *call, void (*cb)(uint64_t call_id, void *arg), void *arg)
{
    if (call->state == CALL_FINISHED)
        return;
    call->cancel_cb = cb;
    call->cancel_arg = arg;
}
