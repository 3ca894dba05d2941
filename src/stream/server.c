/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The streaming server behind server.h and the connections behind conn.h.
 *
 * A connection goes HEAD (reading the upgrade request, bounded in size and
 * time) -> UPGRADED (SPDY or WebSocket, handed to a remotecommand or
 * portforward session) -> LINGER (sconn_finish: the output drains, then the
 * client gets a few seconds to close) -> CLOSED (fd closed; the session hears
 * of it from the loop and frees itself, then the connection is freed).
 * Refused requests get a short HTTP answer and are closed once it is sent.
 *
 * One 64 KiB read buffer serves every connection: bytes are parsed where
 * they land, data frames are handed over in pieces, so an idle connection
 * holds no input buffer; output is an evbuffer that is empty when idle.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "core/base64.h"
#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "stream/conn.h"
#include "stream/http.h"
#include "stream/portforward.h"
#include "stream/remotecommand.h"
#include "stream/server.h"
#include "stream/spdy.h"
#include "stream/tls.h"
#include "stream/token.h"
#include "stream/ws.h"

#define READ_CHUNK (64 * 1024)
#define READS_PER_WAKEUP 4
/* Output queued beyond this makes sessions stop producing; they resume below the low mark. */
#define OUT_HIGH (256 * 1024)
#define OUT_LOW (64 * 1024)
/* Connections still sending their request head, at most. */
#define MAX_HEADS 256
#define TOKEN_CACHE_MAX 1000
/* After sconn_finish and a drained output: how long the client gets to close. */
#define LINGER_MS 5000
/* A refused request: how long its answer gets to leave. */
#define REFUSE_LINGER_MS 2000
#define PEER_MAX 64

enum conn_state {
    CONN_HEAD,     /* reading the request head; waiting for the blank line or the deadline */
    CONN_REFUSING, /* an HTTP error answer is queued; waiting for it to leave */
    CONN_UPGRADED, /* a session runs; waiting for data, the session's end, or idleness */
    CONN_LINGER,   /* the session is over: output drains, then the client closes */
    CONN_CLOSED,   /* fd closed; destroyed from the loop */
};

struct stream_server {
    struct stream_server_opts opts; /* strings owned */
    const struct stream_backend *be;
    int fd;
    struct event *ev;
    struct token_cache *tokens;
    TAILQ_HEAD(, sconn) conns;
    size_t n_heads, n_sessions;
    char *base_url;
    struct tls_context *tls; /* HTTPS; NULL: plain HTTP */
    bool freeing;
};

struct sconn {
    TAILQ_ENTRY(sconn) link; /* srv->conns, until closed */
    struct stream_server *srv;
    enum conn_state state;
    int fd;
    struct event *rev, *wev;
    struct evbuffer *out;
    struct loop_timer *timer;
    int64_t last_active_ns;
    bool paused;   /* the session asked not to read */
    bool was_full; /* output went over the high mark: tell the session when it drains */
    bool is_session;
    char peer[PEER_MAX];
    struct http_request *req;
    /* the upgraded protocol */
    enum sconn_framing framing;
    char protocol[40];
    struct spdy_parser parser;
    struct spdy_zlib z;
    uint32_t last_id; /* highest stream id the client opened */
    struct ws *ws;
    const struct sconn_ops *ops;
    void *h;
    struct tls_conn *tls;
    bool tls_read_wants_write; /* a TLS read waits for the socket to be writable */
    bool tls_write_wants_read; /* a TLS write waits for the socket to be readable */
};

static uint8_t read_buf[READ_CHUNK];

static void conn_close(struct sconn *c);
static void conn_flush(struct sconn *c);
static ssize_t conn_write(struct sconn *c);

/* ---------------------------------------------------------------------- */
/* connection plumbing                                                     */
/* ---------------------------------------------------------------------- */

static void conn_destroy(void *obj)
{
    struct sconn *c = obj;
    if (c->ops && c->ops->closed)
        c->ops->closed(c->h);
    if (c->rev)
        event_free(c->rev);
    if (c->wev)
        event_free(c->wev);
    if (c->out)
        evbuffer_free(c->out);
    loop_timer_free(c->timer);
    if (c->req) {
        http_request_clear(c->req);
        free(c->req);
    }
    spdy_parser_clear(&c->parser);
    spdy_zlib_clear(&c->z);
    ws_free(c->ws);
    tls_conn_free(c->tls);
    free(c);
}

static void conn_close(struct sconn *c)
{
    if (c->state == CONN_CLOSED)
        return;
    struct stream_server *s = c->srv;
    if (c->state == CONN_HEAD || c->state == CONN_REFUSING)
        s->n_heads--;
    if (c->is_session)
        s->n_sessions--;
    c->state = CONN_CLOSED;
    event_del(c->rev);
    event_del(c->wev);
    loop_timer_disarm(c->timer);
    close(c->fd);
    c->fd = -1;
    TAILQ_REMOVE(&s->conns, c, link);
    log_debug("stream connection closed peer=%s", c->peer);
    if (s->freeing)
        conn_destroy(c);
    else
        loop_defer_free(conn_destroy, c);
}

static void arm_idle(struct sconn *c)
{
    int64_t idle_ms = (int64_t)c->srv->opts.idle_timeout_s * 1000;
    int64_t since = (now_monotonic_ns() - c->last_active_ns) / 1000000;
    loop_timer_arm(c->timer, idle_ms - since > 1000 ? idle_ms - since : 1000);
}

static void on_timer(void *arg)
{
    struct sconn *c = arg;
    switch (c->state) {
    case CONN_HEAD:
        log_debug("stream request head timed out peer=%s", c->peer);
        conn_close(c);
        return;
    case CONN_REFUSING:
    case CONN_LINGER:
        if (c->state == CONN_LINGER && c->framing == SCONN_SPDY) {
            spdy_write_goaway(c->out, c->last_id, 0);
            (void)conn_write(c);
        }
        conn_close(c);
        return;
    case CONN_UPGRADED:
        if ((now_monotonic_ns() - c->last_active_ns) / 1000000 >=
            (int64_t)c->srv->opts.idle_timeout_s * 1000) {
            log_info("stream session idle for %us, closing peer=%s", c->srv->opts.idle_timeout_s,
                     c->peer);
            conn_close(c);
            return;
        }
        arm_idle(c);
        return;
    case CONN_CLOSED:
        return;
    }
}

/* Write some of out to the socket (through TLS when on); like write(2). */
static ssize_t conn_write(struct sconn *c)
{
    if (!c->tls)
        return evbuffer_write(c->out, c->fd);
    struct evbuffer_iovec v;
    if (evbuffer_peek(c->out, -1, NULL, &v, 1) < 1)
        return 0;
    ssize_t n = tls_write(c->tls, v.iov_base, v.iov_len, &c->tls_write_wants_read);
    if (n > 0)
        evbuffer_drain(c->out, (size_t)n);
    return n;
}

/* Read from the socket (through TLS when on); like read(2). */
static ssize_t conn_read(struct sconn *c, void *buf, size_t n)
{
    if (!c->tls)
        return read(c->fd, buf, n);
    ssize_t r = tls_read(c->tls, buf, n, &c->tls_read_wants_write);
    if (r < 0 && c->tls_read_wants_write && !event_pending(c->wev, EV_WRITE, NULL))
        event_add(c->wev, NULL);
    return r;
}

/* Write what the socket takes; watch for writability while something is left. */
static void conn_flush(struct sconn *c)
{
    while (c->state != CONN_CLOSED && evbuffer_get_length(c->out) > 0) {
        ssize_t n = conn_write(c);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            log_debug("stream write failed peer=%s errno=%d", c->peer, errno);
            conn_close(c);
            return;
        }
        c->last_active_ns = now_monotonic_ns();
    }
    if (c->state == CONN_CLOSED)
        return;
    size_t left = evbuffer_get_length(c->out);
    if (left > 0 && !c->tls_write_wants_read) {
        if (!event_pending(c->wev, EV_WRITE, NULL))
            event_add(c->wev, NULL);
    } else if (left == 0) {
        if (!c->tls_read_wants_write)
            event_del(c->wev);
        if (c->state == CONN_LINGER && !loop_timer_is_armed(c->timer))
            loop_timer_arm(c->timer, LINGER_MS);
        if (c->state == CONN_REFUSING)
            loop_timer_arm(c->timer, 0);
    }
    if (c->was_full && left < OUT_LOW && c->state == CONN_UPGRADED) {
        c->was_full = false;
        if (c->ops && c->ops->writable)
            c->ops->writable(c->h);
    }
}

static void on_readable(evutil_socket_t fd, short what, void *arg);

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    struct sconn *c = arg;
    conn_flush(c);
    if (c->state != CONN_CLOSED && c->tls_read_wants_write) {
        c->tls_read_wants_write = false;
        on_readable(c->fd, EV_READ, c);
    }
}

/* Send an HTTP error answer and close once it is out. */
static void refuse(struct sconn *c, int status, const char *extra, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void refuse(struct sconn *c, int status, const char *extra, const char *fmt, ...)
{
    char body[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    log_debug("stream request refused peer=%s status=%d reason=\"%s\"", c->peer, status, body);
    evbuffer_add_printf(c->out,
                        "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        "Content-Length: %zu\r\nConnection: close\r\n%s\r\n%s",
                        status, http_reason(status), strlen(body) + 1, extra ? extra : "", body);
    evbuffer_add(c->out, "\n", 1);
    c->state = CONN_REFUSING;
    event_del(c->rev);
    loop_timer_arm(c->timer, REFUSE_LINGER_MS);
    conn_flush(c);
}

/* ---------------------------------------------------------------------- */
/* sconn API                                                               */
/* ---------------------------------------------------------------------- */

void sconn_set_handler(struct sconn *c, const struct sconn_ops *ops, void *h)
{
    c->ops = ops;
    c->h = h;
}

enum sconn_framing sconn_framing(const struct sconn *c)
{
    return c->framing;
}

const char *sconn_protocol(const struct sconn *c)
{
    return c->protocol;
}

int64_t sconn_creation_timeout_ms(const struct sconn *c)
{
    return (int64_t)c->srv->opts.creation_timeout_s * 1000;
}

const char *sconn_peer(const struct sconn *c)
{
    return c->peer;
}

static void ws_send_channel(struct sconn *c, uint32_t id, const void *data, size_t n)
{
    if (c->framing == SCONN_WS_BINARY) {
        uint8_t *msg = xmalloc(n + 1);
        msg[0] = (uint8_t)id;
        if (n)
            memcpy(msg + 1, data, n);
        ws_send(c->ws, WS_OPCODE_BINARY, msg, n + 1);
        free(msg);
        return;
    }
    _cleanup_free_ char *text = base64_encode(data, n);
    size_t len = strlen(text);
    char *msg = xmalloc(len + 1);
    msg[0] = (char)('0' + id);
    memcpy(msg + 1, text, len);
    ws_send(c->ws, WS_OPCODE_TEXT, msg, len + 1);
    free(msg);
}

void sconn_send(struct sconn *c, uint32_t id, const void *data, size_t n, bool fin)
{
    if (c->state != CONN_UPGRADED)
        return;
    bool was_empty = evbuffer_get_length(c->out) == 0;
    if (c->framing == SCONN_SPDY) {
        const uint8_t *p = data;
        do {
            size_t piece = n > 1024 * 1024 ? 1024 * 1024 : n;
            n -= piece;
            spdy_write_data(c->out, id, fin && n == 0 ? SPDY_FLAG_FIN : 0, p, piece);
            p += piece;
        } while (n > 0);
    } else if (n > 0 || !fin) {
        ws_send_channel(c, id, data, n);
    }
    if (evbuffer_get_length(c->out) >= OUT_HIGH)
        c->was_full = true;
    /* Small answers leave at once (latency); bulk waits for the socket's readiness. */
    if (was_empty)
        conn_flush(c);
    else if (!event_pending(c->wev, EV_WRITE, NULL))
        event_add(c->wev, NULL);
}

void sconn_reset(struct sconn *c, uint32_t id, uint32_t status)
{
    if (c->state != CONN_UPGRADED || c->framing != SCONN_SPDY)
        return;
    spdy_write_rst_stream(c->out, id, status);
    conn_flush(c);
}

bool sconn_is_full(const struct sconn *c)
{
    return c->state != CONN_UPGRADED || evbuffer_get_length(c->out) >= OUT_HIGH;
}

void sconn_pause_input(struct sconn *c, bool pause)
{
    if (c->state != CONN_UPGRADED || c->paused == pause)
        return;
    c->paused = pause;
    if (pause) {
        event_del(c->rev);
    } else {
        event_add(c->rev, NULL);
        /* Bytes TLS already decrypted will not wake the socket again. */
        if (c->tls && tls_pending(c->tls))
            event_active(c->rev, EV_READ, 0);
    }
}

void sconn_release_headers(struct sconn *c)
{
    spdy_zlib_release_in(&c->z);
    spdy_zlib_release_out(&c->z);
}

void sconn_finish(struct sconn *c)
{
    if (c->state != CONN_UPGRADED)
        return;
    c->state = CONN_LINGER;
    if (c->framing != SCONN_SPDY && c->ws)
        ws_close(c->ws, 1000);
    /* Keep reading: the client's EOF is what we wait for (input is discarded now). */
    c->paused = false;
    event_add(c->rev, NULL);
    loop_timer_disarm(c->timer);
    conn_flush(c);
}

void sconn_abort(struct sconn *c)
{
    conn_close(c);
}

/* ---------------------------------------------------------------------- */
/* SPDY input                                                              */
/* ---------------------------------------------------------------------- */

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int protocol_error(struct sconn *c, struct error **err, const char *what)
{
    spdy_write_goaway(c->out, c->last_id, 1);
    return error_set(err, GRPC_INVALID_ARGUMENT, 0, "SPDY protocol error: %s", what);
}

static int on_spdy_control(void *arg, uint16_t version, uint16_t type, uint8_t flags,
                           const uint8_t *p, size_t len, struct error **err)
{
    struct sconn *c = arg;
    if (c->state == CONN_CLOSED)
        return error_set(err, GRPC_CANCELLED, 0, "closed");
    if (version != SPDY_VERSION)
        return protocol_error(c, err, "unsupported version");
    switch (type) {
    case SPDY_SYN_STREAM: {
        if (len < 10)
            return protocol_error(c, err, "short SYN_STREAM");
        uint32_t id = get32(p) & 0x7fffffff;
        struct spdy_headers hd = {0};
        if (spdy_headers_decode(&c->z, p + 10, len - 10, &hd, err) < 0) {
            spdy_write_goaway(c->out, c->last_id, 1);
            return -1;
        }
        if (id == 0 || !(id & 1) || id <= c->last_id) {
            spdy_headers_clear(&hd);
            return protocol_error(c, err, "bad stream id");
        }
        c->last_id = id;
        if (c->state != CONN_UPGRADED) {
            spdy_headers_clear(&hd);
            return 0;
        }
        /* Replied first: the session may end the connection from inside stream_open. */
        if (spdy_write_syn_reply(&c->z, c->out, id, 0, NULL, 0, err) < 0) {
            spdy_headers_clear(&hd);
            return -1;
        }
        int rc = c->ops && c->ops->stream_open ? c->ops->stream_open(c->h, id, flags, &hd) : -1;
        spdy_headers_clear(&hd);
        if (rc < 0 && c->state == CONN_UPGRADED)
            spdy_write_rst_stream(c->out, id, SPDY_RST_REFUSED_STREAM);
        conn_flush(c);
        return 0;
    }
    case SPDY_HEADERS: {
        /* Nothing we use, but the shared compression context must see the block. */
        if (len < 4)
            return protocol_error(c, err, "short HEADERS");
        struct spdy_headers hd = {0};
        int rc = spdy_headers_decode(&c->z, p + 4, len - 4, &hd, err);
        spdy_headers_clear(&hd);
        return rc;
    }
    case SPDY_RST_STREAM:
        if (len != 8)
            return protocol_error(c, err, "bad RST_STREAM");
        if (c->state == CONN_UPGRADED && c->ops && c->ops->reset)
            c->ops->reset(c->h, get32(p) & 0x7fffffff);
        return 0;
    case SPDY_PING:
        if (len != 4)
            return protocol_error(c, err, "bad PING");
        /* Client pings have odd ids: echo them. */
        if (get32(p) & 1) {
            spdy_write_ping(c->out, get32(p));
            conn_flush(c);
        }
        return 0;
    default:
        /* SYN_REPLY, SETTINGS, GOAWAY, WINDOW_UPDATE, unknown types: nothing to do. */
        return 0;
    }
}

static int on_spdy_data(void *arg, uint32_t id, uint8_t flags, const uint8_t *piece, size_t n,
                        bool end, struct error **err)
{
    struct sconn *c = arg;
    if (c->state == CONN_CLOSED)
        return error_set(err, GRPC_CANCELLED, 0, "closed");
    if (c->state != CONN_UPGRADED || !c->ops)
        return 0;
    if (n > 0 && c->ops->data)
        c->ops->data(c->h, id, piece, n);
    if (end && (flags & SPDY_FLAG_FIN) && c->state == CONN_UPGRADED && c->ops->fin)
        c->ops->fin(c->h, id);
    return 0;
}

static const struct spdy_parser_ops spdy_ops = {on_spdy_control, on_spdy_data};

/* ---------------------------------------------------------------------- */
/* WebSocket input                                                         */
/* ---------------------------------------------------------------------- */

static void on_ws_message(void *arg, int opcode, const uint8_t *data, size_t n)
{
    struct sconn *c = arg;
    if (c->state != CONN_UPGRADED || !c->ops || !c->ops->data || n == 0)
        return;
    if (c->framing == SCONN_WS_BINARY) {
        if (n > 1)
            c->ops->data(c->h, data[0], data + 1, n - 1);
        return;
    }
    if (data[0] < '0' || data[0] > '9')
        return;
    /* The decoder reads a C string: text with a NUL in it is not base64 either. */
    size_t len = 0;
    _cleanup_free_ char *text = xstrndup((const char *)data + 1, n - 1);
    _cleanup_free_ uint8_t *plain =
        memchr(data + 1, '\0', n - 1) ? NULL : base64_decode(text, &len);
    if (!plain) {
        log_debug("stream websocket: bad base64 message peer=%s", c->peer);
        return;
    }
    if (len > 0)
        c->ops->data(c->h, (uint32_t)(data[0] - '0'), plain, len);
}

/* ---------------------------------------------------------------------- */
/* the request head: routing and negotiation                               */
/* ---------------------------------------------------------------------- */

static const char *const exec_protocols[] = {"v4.channel.k8s.io", "v3.channel.k8s.io",
                                             "v2.channel.k8s.io", "channel.k8s.io"};
static const char *const pf_protocols[] = {"portforward.k8s.io"};
static const char *const ws_exec_protocols[] = {
    "v4.channel.k8s.io", "channel.k8s.io", "v4.base64.channel.k8s.io", "base64.channel.k8s.io"};
static const char *const ws_pf_protocols[] = {"v4.channel.k8s.io", "v4.base64.channel.k8s.io"};

/* The client's first offered protocol that is in list, or NULL. */
static const char *negotiate(const struct http_request *r, const char *header,
                             const char *const *list, size_t n)
{
    char item[64];
    for (size_t i = 0; http_request_token_at(r, header, i, item, sizeof(item)); i++) {
        for (size_t j = 0; j < n; j++) {
            if (strcmp(item, list[j]) == 0)
                return list[j];
        }
    }
    return NULL;
}

static void start_session(struct sconn *c, struct stream_request *req)
{
    struct stream_server *s = c->srv;
    s->n_heads--;
    s->n_sessions++;
    c->is_session = true;
    c->state = CONN_UPGRADED;
    c->last_active_ns = now_monotonic_ns();
    http_request_clear(c->req);
    free(c->req);
    c->req = NULL;
    arm_idle(c);
    log_info("stream session started kind=%s protocol=%s peer=%s", stream_kind_name(req->kind),
             *c->protocol ? c->protocol : "-", c->peer);
    if (req->kind == STREAM_PORTFORWARD)
        portforward_start(c, req, s->be);
    else
        remotecommand_start(c, req, s->be);
}

static void upgrade_spdy(struct sconn *c, struct stream_request *req, const char *proto)
{
    c->framing = SCONN_SPDY;
    snprintf(c->protocol, sizeof(c->protocol), "%s", proto);
    spdy_parser_init(&c->parser);
    spdy_zlib_init(&c->z);
    evbuffer_add_printf(c->out,
                        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                        "Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: %s\r\n\r\n",
                        proto);
    start_session(c, req);
    conn_flush(c);
}

static void upgrade_ws(struct sconn *c, struct stream_request *req, const char *proto,
                       const char *accept)
{
    c->framing = proto && strstr(proto, "base64") ? SCONN_WS_BASE64 : SCONN_WS_BINARY;
    snprintf(c->protocol, sizeof(c->protocol), "%s", proto ? proto : "");
    evbuffer_add_printf(c->out,
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n",
                        accept);
    if (proto)
        evbuffer_add_printf(c->out, "Sec-WebSocket-Protocol: %s\r\n", proto);
    evbuffer_add(c->out, "\r\n", 2);
    c->ws = ws_new(c->out, on_ws_message, c);
    start_session(c, req);
    conn_flush(c);
}

static bool is_token_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_';
}

/* The whole head is in: find the request, negotiate, upgrade or refuse. */
static void on_head(struct sconn *c)
{
    struct stream_server *s = c->srv;
    const struct http_request *r = c->req;
    char path[128];
    size_t plen = strcspn(r->target, "?#");
    if (plen >= sizeof(path)) {
        refuse(c, 404, NULL, "404 page not found");
        return;
    }
    memcpy(path, r->target, plen);
    path[plen] = '\0';
    enum stream_kind kind;
    const char *token;
    if (str_has_prefix(path, "/exec/")) {
        kind = STREAM_EXEC;
        token = path + 6;
    } else if (str_has_prefix(path, "/attach/")) {
        kind = STREAM_ATTACH;
        token = path + 8;
    } else if (str_has_prefix(path, "/portforward/")) {
        kind = STREAM_PORTFORWARD;
        token = path + 13;
    } else {
        refuse(c, 404, NULL, "404 page not found");
        return;
    }
    bool token_ok = strlen(token) == TOKEN_LEN;
    for (const char *p = token; *p && token_ok; p++)
        token_ok = is_token_char(*p);
    if (!token_ok) {
        refuse(c, 404, NULL, "404 page not found");
        return;
    }
    if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "POST") != 0) {
        refuse(c, 405, "Allow: GET, POST\r\n", "method %s not allowed", r->method);
        return;
    }
    if (s->n_sessions >= s->opts.max_sessions) {
        char extra[64];
        snprintf(extra, sizeof(extra), "Retry-After: %u\r\n", s->opts.token_timeout_s);
        refuse(c, 429, extra, "too many streaming sessions (%u)", s->opts.max_sessions);
        return;
    }
    struct stream_request *req = token_cache_take(s->tokens, token);
    if (req && req->kind != kind) {
        stream_request_free(req);
        req = NULL;
    }
    if (!req) {
        refuse(c, 404, NULL, "404 page not found");
        return;
    }

    bool upgrade = http_request_has_token(r, "Connection", "upgrade");
    const char *up = http_request_field(r, "Upgrade");
    if (upgrade && up && strcasecmp(up, "websocket") == 0) {
        const char *key = http_request_field(r, "Sec-WebSocket-Key");
        const char *version = http_request_field(r, "Sec-WebSocket-Version");
        size_t raw_len = 0;
        _cleanup_free_ uint8_t *raw =
            key && strlen(key) == 24 ? base64_decode(key, &raw_len) : NULL;
        if (!raw || raw_len != 16 || !version || strcmp(version, "13") != 0) {
            stream_request_free(req);
            refuse(c, 400, "Sec-WebSocket-Version: 13\r\n",
                   "unable to upgrade: a WebSocket key and version 13 are required");
            return;
        }
        const char *const *list = kind == STREAM_PORTFORWARD ? ws_pf_protocols : ws_exec_protocols;
        size_t n = kind == STREAM_PORTFORWARD ? ARRAY_SIZE(ws_pf_protocols)
                                              : ARRAY_SIZE(ws_exec_protocols);
        const char *proto = negotiate(r, "Sec-WebSocket-Protocol", list, n);
        char first[64];
        if (!proto && http_request_token_at(r, "Sec-WebSocket-Protocol", 0, first, sizeof(first))) {
            stream_request_free(req);
            refuse(c, 403, NULL,
                   "unable to upgrade: none of the offered subprotocols is supported");
            return;
        }
        _cleanup_error_ struct error *aerr = NULL;
        _cleanup_free_ char *accept = ws_accept_key(key, &aerr);
        if (!accept) {
            stream_request_free(req);
            refuse(c, 500, NULL, "unable to upgrade: %s", aerr->msg);
            return;
        }
        upgrade_ws(c, req, proto, accept);
        return;
    }

    const char *const *list = kind == STREAM_PORTFORWARD ? pf_protocols : exec_protocols;
    size_t n = kind == STREAM_PORTFORWARD ? ARRAY_SIZE(pf_protocols) : ARRAY_SIZE(exec_protocols);
    char first[64];
    if (!http_request_token_at(r, "X-Stream-Protocol-Version", 0, first, sizeof(first))) {
        stream_request_free(req);
        refuse(c, 400, NULL, "unable to upgrade: X-Stream-Protocol-Version is required");
        return;
    }
    const char *proto = negotiate(r, "X-Stream-Protocol-Version", list, n);
    if (!proto) {
        stream_request_free(req);
        char extra[256];
        size_t o = 0;
        for (size_t i = 0; i < n; i++)
            o += (size_t)snprintf(extra + o, sizeof(extra) - o,
                                  "X-Accepted-Stream-Protocol-Versions: %s\r\n", list[i]);
        refuse(c, 403, extra, "unable to upgrade: unable to negotiate protocol");
        return;
    }
    if (!upgrade || !up || strcasecmp(up, "SPDY/3.1") != 0) {
        stream_request_free(req);
        refuse(c, 400, NULL, "unable to upgrade: missing upgrade headers in request");
        return;
    }
    upgrade_spdy(c, req, proto);
}

/* ---------------------------------------------------------------------- */
/* reading                                                                 */
/* ---------------------------------------------------------------------- */

/* Bytes for the upgraded protocol; -1 when the connection must end. */
static int feed_protocol(struct sconn *c, const uint8_t *data, size_t n)
{
    if (c->state == CONN_LINGER)
        return 0; /* the session is over: input is dropped */
    if (c->framing == SCONN_SPDY) {
        _cleanup_error_ struct error *err = NULL;
        if (spdy_parser_feed(&c->parser, data, n, &spdy_ops, c, &err) < 0) {
            if (c->state != CONN_CLOSED)
                log_info("stream connection ended peer=%s: %s", c->peer, err->msg);
            return -1;
        }
        return 0;
    }
    return ws_feed(c->ws, data, n);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct sconn *c = arg;
    if (c->tls_write_wants_read) {
        c->tls_write_wants_read = false;
        conn_flush(c);
    }
    for (int i = 0; i < READS_PER_WAKEUP && c->state != CONN_CLOSED && !c->paused; i++) {
        ssize_t n = conn_read(c, read_buf, sizeof(read_buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            log_debug("stream peer closed peer=%s", c->peer);
            conn_close(c);
            return;
        }
        c->last_active_ns = now_monotonic_ns();
        const uint8_t *p = read_buf;
        size_t len = (size_t)n;
        if (c->state == CONN_REFUSING)
            continue; /* whatever follows a refused head is dropped */
        if (c->state == CONN_HEAD) {
            int status = 0;
            ssize_t used = http_request_feed(c->req, (const char *)p, len, &status);
            if (used < 0) {
                refuse(c, status, NULL, "bad request");
                return;
            }
            if (!c->req->done)
                continue;
            p += used;
            len -= (size_t)used;
            on_head(c);
            if (c->state != CONN_UPGRADED || len == 0)
                continue;
        }
        if (feed_protocol(c, p, len) < 0) {
            conn_flush(c);
            conn_close(c);
            return;
        }
        if (c->state != CONN_CLOSED)
            conn_flush(c);
    }
    if (c->state != CONN_CLOSED && !c->paused && c->tls && tls_pending(c->tls))
        event_active(c->rev, EV_READ, 0);
}

/* ---------------------------------------------------------------------- */
/* the listener                                                            */
/* ---------------------------------------------------------------------- */

static void peer_name(const struct sockaddr_storage *ss, char *out, size_t size)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
        snprintf(out, size, "%s:%d", host, port);
    } else {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
        snprintf(out, size, "[%s]:%d", host, port);
    }
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    struct stream_server *s = arg;
    for (int i = 0; i < 16; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(s->fd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR)
                log_warn("stream accept failed errno=%d", errno);
            return;
        }
        if (s->n_heads >= MAX_HEADS) {
            log_warn("stream server: too many connections sending requests; closing one");
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct sconn *c = xcalloc(1, sizeof(*c));
        c->srv = s;
        c->fd = fd;
        c->state = CONN_HEAD;
        peer_name(&ss, c->peer, sizeof(c->peer));
        c->out = evbuffer_new();
        if (!c->out)
            util_die_invariant(__FILE__, __LINE__, "out of memory (libevent)");
        c->rev = loop_event_new(fd, EV_READ | EV_PERSIST, on_readable, c);
        c->wev = loop_event_new(fd, EV_WRITE | EV_PERSIST, on_writable, c);
        c->timer = loop_timer_new(on_timer, c);
        if (s->tls)
            c->tls = tls_conn_new(s->tls, fd);
        c->req = xcalloc(1, sizeof(*c->req));
        http_request_init(c->req);
        c->last_active_ns = now_monotonic_ns();
        TAILQ_INSERT_HEAD(&s->conns, c, link);
        s->n_heads++;
        event_add(c->rev, NULL);
        loop_timer_arm(c->timer, (int64_t)s->opts.creation_timeout_s * 1000);
        log_debug("stream connection accepted peer=%s", c->peer);
    }
}

static int listen_tcp(const char *address, uint16_t port, bool tls, char **base_url,
                      struct error **err)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    int family;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, address, &a4->sin_addr) == 1) {
        family = a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        len = sizeof(*a4);
    } else if (inet_pton(AF_INET6, address, &a6->sin6_addr) == 1) {
        family = a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        len = sizeof(*a6);
    } else {
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "stream address %s is not an IPv4 or IPv6 address", address);
    }
    _cleanup_close_ int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return error_set(err, GRPC_INTERNAL, errno, "stream server: socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) < 0)
        return error_set(err, GRPC_INTERNAL, errno, "stream server: bind %s port %u", address,
                         port);
    if (listen(fd, 128) < 0)
        return error_set(err, GRPC_INTERNAL, errno, "stream server: listen");
    len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return error_set(err, GRPC_INTERNAL, errno, "stream server: getsockname");
    uint16_t bound = family == AF_INET ? ntohs(a4->sin_port) : ntohs(a6->sin6_port);
    const char *scheme = tls ? "https" : "http";
    *base_url = family == AF_INET ? xasprintf("%s://%s:%u", scheme, address, bound)
                                  : xasprintf("%s://[%s]:%u", scheme, address, bound);
    return steal_fd(&fd);
}

struct stream_server *stream_server_new(const struct stream_server_opts *opts,
                                        const struct stream_backend *backend, struct error **err)
{
    if ((opts->tls_cert != NULL) != (opts->tls_key != NULL))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "stream server: tls_cert and tls_key go together"),
               NULL;
    struct tls_context *tls = NULL;
    if (opts->tls_cert) {
        tls = tls_context_new(opts->tls_cert, opts->tls_key, err);
        if (!tls)
            return error_prefix(err, "stream server"), NULL;
    }
    struct stream_server *s = xcalloc(1, sizeof(*s));
    TAILQ_INIT(&s->conns);
    s->opts = *opts;
    s->opts.address = xstrdup(opts->address);
    s->opts.tls_cert = NULL;
    s->opts.tls_key = NULL;
    s->tls = tls;
    s->be = backend;
    s->fd = listen_tcp(opts->address, opts->port, tls != NULL, &s->base_url, err);
    if (s->fd < 0) {
        tls_context_free(tls);
        free((char *)s->opts.address);
        free(s);
        return NULL;
    }
    s->tokens = token_cache_new(TOKEN_CACHE_MAX, (int64_t)opts->token_timeout_s * 1000);
    s->ev = loop_event_new(s->fd, EV_READ | EV_PERSIST, on_accept, s);
    if (event_add(s->ev, NULL) < 0) {
        error_set(err, GRPC_INTERNAL, 0, "stream server: event_add failed");
        stream_server_free(s);
        return NULL;
    }
    log_info("streaming server listening url=%s", s->base_url);
    return s;
}

void stream_server_free(struct stream_server *s)
{
    if (!s)
        return;
    s->freeing = true;
    while (!TAILQ_EMPTY(&s->conns))
        conn_close(TAILQ_FIRST(&s->conns));
    if (s->ev)
        event_free(s->ev);
    if (s->fd >= 0)
        close(s->fd);
    token_cache_free(s->tokens);
    tls_context_free(s->tls);
    free((char *)s->opts.address);
    free(s->base_url);
    free(s);
}

const char *stream_server_base_url(const struct stream_server *s)
{
    return s->base_url;
}

void stream_server_set_timeouts(struct stream_server *s, uint32_t idle_s, uint32_t creation_s,
                                uint32_t token_s)
{
    s->opts.idle_timeout_s = idle_s;
    s->opts.creation_timeout_s = creation_s;
    s->opts.token_timeout_s = token_s;
    token_cache_set_ttl(s->tokens, (int64_t)token_s * 1000);
}

char *stream_server_url(struct stream_server *s, struct stream_request *req, struct error **err)
{
    char token[TOKEN_LEN + 1];
    enum stream_kind kind = req->kind;
    if (token_cache_insert(s->tokens, req, token, err) < 0)
        return NULL;
    return xasprintf("%s/%s/%s", s->base_url, stream_kind_name(kind), token);
}

size_t stream_server_session_count(const struct stream_server *s)
{
    return s->n_sessions;
}
