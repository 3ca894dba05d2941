/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Port-forward sessions behind portforward.h.
 *
 * Each forwarded connection is a pair, with one state:
 *   PAIR_WAITING     one of its two streams is there (SPDY); creation deadline
 *   PAIR_CONNECTING  the backend's child is connecting in the pod's netns
 *   PAIR_SPLICING    bytes flow both ways; waiting for the pod's EOF or a reset
 *   PAIR_DONE        streams closed; freed from the loop
 * The pod socket is read only while the connection's output is under its
 * high-water mark; bytes from the client beyond PAIR_IN_HIGH waiting for the
 * pod pause the connection's reads (for every pair: they share it).
 */
#include "autoconf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/text.h"
#include "core/util.h"
#include "stream/conn.h"
#include "stream/portforward.h"
#include "stream/server.h"
#include "stream/spdy.h"
#include "stream/token.h"

#define READ_CHUNK (64 * 1024)
#define READS_PER_WAKEUP 4
#define PAIR_IN_HIGH (128 * 1024)
#define PAIR_IN_CAP (PAIR_IN_HIGH + 1024 * 1024)
#define REQUEST_ID_MAX 64
/* Pairs of one connection, at most (each holds a socket and a child while connecting). */
#define MAX_PAIRS 256

enum pair_state {
    PAIR_WAITING,
    PAIR_CONNECTING,
    PAIR_SPLICING,
    PAIR_DONE,
};

struct pf;

struct pair {
    TAILQ_ENTRY(pair) link; /* pf->pairs, until done */
    struct pf *pf;
    enum pair_state state;
    char request_id[REQUEST_ID_MAX];
    uint16_t port;
    uint32_t err_id, data_id; /* SPDY stream ids, or WebSocket channels */
    bool have_err, have_data;
    int64_t deadline_ns; /* PAIR_WAITING: both streams by then */
    void *connecting;    /* the backend's handle */
    int fd;
    struct event *rev, *wev;
    struct buf to_pod;
    bool blocked;    /* counted in pf->blocked */
    bool client_fin; /* the client will send no more */
    bool err_closed; /* error stream FINed */
};

struct pf {
    struct sconn *c; /* NULL once gone */
    const struct stream_backend *be;
    struct stream_request *req;
    bool ws;
    TAILQ_HEAD(, pair) pairs; /* newest first */
    size_t n_pairs;
    size_t blocked; /* pairs with too much input waiting: the connection is paused */
    struct loop_timer *timer;
    bool ending;
};

static uint8_t chunk[READ_CHUNK];

static void pair_step(struct pair *p);

/* ---------------------------------------------------------------------- */
/* pairs                                                                   */
/* ---------------------------------------------------------------------- */

static void set_blocked(struct pair *p, bool blocked)
{
    struct pf *pf = p->pf;
    if (p->blocked == blocked)
        return;
    p->blocked = blocked;
    size_t before = pf->blocked;
    pf->blocked += blocked ? 1 : (size_t)-1;
    if (pf->c && (before == 0) != (pf->blocked == 0))
        sconn_pause_input(pf->c, pf->blocked > 0);
}

static void pair_free(void *obj)
{
    struct pair *p = obj;
    if (p->connecting)
        p->pf->be->port_connect_cancel(p->connecting);
    if (p->rev)
        event_free(p->rev);
    if (p->wev)
        event_free(p->wev);
    if (p->fd >= 0)
        close(p->fd);
    buf_free(&p->to_pod);
    free(p);
}

static void close_err_stream(struct pair *p)
{
    struct pf *pf = p->pf;
    if (p->err_closed || !p->have_err || !pf->c)
        return;
    p->err_closed = true;
    if (!pf->ws)
        sconn_send(pf->c, p->err_id, NULL, 0, true);
}

/* The pair is over: close what is left, unlink it, free it from the loop. */
static void pair_done(struct pair *p)
{
    struct pf *pf = p->pf;
    if (p->state == PAIR_DONE)
        return;
    p->state = PAIR_DONE;
    if (p->connecting) {
        pf->be->port_connect_cancel(p->connecting);
        p->connecting = NULL;
    }
    set_blocked(p, false);
    close_err_stream(p);
    if (p->rev)
        event_del(p->rev);
    if (p->wev)
        event_del(p->wev);
    TAILQ_REMOVE(&pf->pairs, p, link);
    pf->n_pairs--;
    loop_defer_free(pair_free, p);
    /* WebSocket: the session is the fixed set of pairs; it ends with the last. */
    if (pf->ws && TAILQ_EMPTY(&pf->pairs) && pf->c && !pf->ending) {
        pf->ending = true;
        sconn_finish(pf->c);
    }
}

static void pair_error(struct pair *p, const char *reason)
{
    struct pf *pf = p->pf;
    _cleanup_free_ char *msg = xasprintf("error forwarding port %u to pod %s, uid : %s", p->port,
                                         pf->req->sandbox_id, reason);
    log_info("port-forward failed sandbox=%s port=%u: %s", pf->req->sandbox_id, p->port, reason);
    if (pf->c && p->have_err)
        sconn_send(pf->c, p->err_id, msg, strlen(msg), false);
    if (pf->c && p->have_data && !pf->ws)
        sconn_send(pf->c, p->data_id, NULL, 0, true);
    pair_done(p);
}

static void pod_flush(struct pair *p)
{
    while (p->to_pod.len > 0) {
        ssize_t n = send(p->fd, p->to_pod.data, p->to_pod.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n < 0) {
            /* The pod's side is gone for writing; its output may still come. */
            buf_reset(&p->to_pod);
            p->client_fin = true;
            break;
        }
        buf_consume(&p->to_pod, (size_t)n);
    }
    if (p->to_pod.len > 0) {
        event_add(p->wev, NULL);
    } else {
        event_del(p->wev);
        buf_free(&p->to_pod);
        buf_init(&p->to_pod, PAIR_IN_CAP);
        if (p->client_fin)
            shutdown(p->fd, SHUT_WR);
    }
    set_blocked(p, p->to_pod.len >= PAIR_IN_HIGH);
}

static void on_pod_writable(evutil_socket_t fd, short what, void *arg)
{
    pod_flush(arg);
}

static void on_pod_readable(evutil_socket_t fd, short what, void *arg)
{
    struct pair *p = arg;
    struct pf *pf = p->pf;
    for (int i = 0; i < READS_PER_WAKEUP && p->state == PAIR_SPLICING; i++) {
        if (!pf->c || sconn_is_full(pf->c)) {
            event_del(p->rev);
            return;
        }
        ssize_t n = recv(p->fd, chunk, sizeof(chunk), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            /* The pod is done sending: the data stream ends, and with it the pair. */
            if (n < 0)
                log_debug("port-forward read failed port=%u errno=%d", p->port, errno);
            if (!pf->ws)
                sconn_send(pf->c, p->data_id, NULL, 0, true);
            pair_done(p);
            return;
        }
        sconn_send(pf->c, p->data_id, chunk, (size_t)n, false);
    }
}

static void on_connected(int fd, const struct error *err, void *arg)
{
    struct pair *p = arg;
    p->connecting = NULL;
    if (fd < 0) {
        pair_error(p, err ? err->msg : "connection failed");
        return;
    }
    p->fd = fd;
    p->rev = loop_event_new(fd, EV_READ | EV_PERSIST, on_pod_readable, p);
    p->wev = loop_event_new(fd, EV_WRITE | EV_PERSIST, on_pod_writable, p);
    p->state = PAIR_SPLICING;
    log_debug("port-forward connected sandbox=%s port=%u", p->pf->req->sandbox_id, p->port);
    event_add(p->rev, NULL);
    pod_flush(p);
}

static void pair_step(struct pair *p)
{
    struct pf *pf = p->pf;
    switch (p->state) {
    case PAIR_WAITING: /* both streams must come */
        if (!p->have_err || !p->have_data)
            return;
        p->state = PAIR_CONNECTING;
        {
            _cleanup_error_ struct error *err = NULL;
            p->connecting =
                pf->be->port_connect(pf->req->sandbox_id, p->port, on_connected, p, &err);
            if (!p->connecting)
                pair_error(p, err->msg);
        }
        return;
    case PAIR_CONNECTING:
    case PAIR_SPLICING:
    case PAIR_DONE:
        return;
    }
}

static struct pair *pair_new(struct pf *pf, const char *request_id, uint16_t port)
{
    struct pair *p = xcalloc(1, sizeof(*p));
    p->pf = pf;
    p->state = PAIR_WAITING;
    snprintf(p->request_id, sizeof(p->request_id), "%s", request_id);
    p->port = port;
    p->fd = -1;
    buf_init(&p->to_pod, PAIR_IN_CAP);
    p->deadline_ns = now_monotonic_ns() + sconn_creation_timeout_ms(pf->c) * 1000000;
    TAILQ_INSERT_HEAD(&pf->pairs, p, link);
    pf->n_pairs++;
    return p;
}

/* ---------------------------------------------------------------------- */
/* the connection side                                                     */
/* ---------------------------------------------------------------------- */

static struct pair *pair_by_stream(struct pf *pf, uint32_t id, bool *is_data)
{
    struct pair *p;
    TAILQ_FOREACH (p, &pf->pairs, link) {
        if (p->have_data && p->data_id == id) {
            *is_data = true;
            return p;
        }
        if (p->have_err && p->err_id == id) {
            *is_data = false;
            return p;
        }
    }
    return NULL;
}

static void arm_deadlines(struct pf *pf)
{
    int64_t next = 0;
    struct pair *p;
    TAILQ_FOREACH (p, &pf->pairs, link) {
        if (p->state == PAIR_WAITING && (!next || p->deadline_ns < next))
            next = p->deadline_ns;
    }
    if (next)
        loop_timer_arm(pf->timer, (next - now_monotonic_ns()) / 1000000 + 1);
    else
        loop_timer_disarm(pf->timer);
}

static void on_timer(void *arg)
{
    struct pf *pf = arg;
    int64_t now = now_monotonic_ns();
    struct pair *next;
    for (struct pair *p = TAILQ_FIRST(&pf->pairs); p; p = next) {
        next = TAILQ_NEXT(p, link);
        if (p->state != PAIR_WAITING || p->deadline_ns > now)
            continue;
        _cleanup_free_ char *shown = text_safe(p->request_id, REQUEST_ID_MAX);
        log_info("port-forward: stream pair requestid=\"%s\" incomplete after the creation timeout",
                 shown);
        if (pf->c && p->have_err)
            sconn_reset(pf->c, p->err_id, SPDY_RST_CANCEL);
        if (pf->c && p->have_data)
            sconn_reset(pf->c, p->data_id, SPDY_RST_CANCEL);
        p->err_closed = true;
        pair_done(p);
    }
    arm_deadlines(pf);
}

static bool parse_port(const char *s, uint16_t *port)
{
    if (!s || !*s || strlen(s) > 5)
        return false;
    unsigned v = 0;
    for (const char *q = s; *q; q++) {
        if (*q < '0' || *q > '9')
            return false;
        v = v * 10 + (unsigned)(*q - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

static int on_stream_open(void *h, uint32_t id, uint8_t flags, const struct spdy_headers *hd)
{
    struct pf *pf = h;
    const char *type = spdy_headers_get(hd, "streamtype");
    bool is_err = type && strcmp(type, "error") == 0;
    bool is_data = type && strcmp(type, "data") == 0;
    uint16_t port = 0;
    if ((!is_err && !is_data) || !parse_port(spdy_headers_get(hd, "port"), &port)) {
        const char *given_port = spdy_headers_get(hd, "port");
        _cleanup_free_ char *shown_type = text_safe(type ? type : "(none)", 64);
        _cleanup_free_ char *shown_port = text_safe(given_port ? given_port : "(none)", 64);
        log_debug("port-forward: refused stream type=\"%s\" port=\"%s\"", shown_type, shown_port);
        return -1;
    }
    char rid[REQUEST_ID_MAX];
    const char *given = spdy_headers_get(hd, "requestid");
    if (given && strlen(given) < sizeof(rid)) {
        snprintf(rid, sizeof(rid), "%s", given);
    } else if (!given) {
        /* Old clients send no request id: error then data streams, consecutive odd ids. */
        snprintf(rid, sizeof(rid), "stream-%u", is_err ? id : id - 2);
    } else {
        return -1;
    }
    struct pair *p = NULL;
    TAILQ_FOREACH (p, &pf->pairs, link) {
        if (strcmp(p->request_id, rid) == 0)
            break;
    }
    if (!p) {
        if (pf->n_pairs >= MAX_PAIRS) {
            log_warn("port-forward: too many connections at once on one session (%d)", MAX_PAIRS);
            return -1;
        }
        p = pair_new(pf, rid, port);
        arm_deadlines(pf);
    }
    if (p->state != PAIR_WAITING || p->port != port || (is_err && p->have_err) ||
        (is_data && p->have_data))
        return -1;
    if (is_err) {
        p->have_err = true;
        p->err_id = id;
    } else {
        p->have_data = true;
        p->data_id = id;
    }
    pair_step(p);
    return 0;
}

static struct pair *pair_for_data(struct pf *pf, uint32_t id)
{
    if (pf->ws) {
        struct pair *p;
        TAILQ_FOREACH (p, &pf->pairs, link) {
            if (p->data_id == id)
                return p;
        }
        return NULL;
    }
    bool is_data = false;
    struct pair *p = pair_by_stream(pf, id, &is_data);
    return p && is_data ? p : NULL;
}

static void on_data(void *h, uint32_t id, const uint8_t *data, size_t n)
{
    struct pf *pf = h;
    struct pair *p = pair_for_data(pf, id);
    if (!p || p->client_fin || p->state == PAIR_DONE)
        return;
    if (buf_append(&p->to_pod, data, n) < 0) {
        log_warn("port-forward input overflow (the connection should have paused); dropped %zu "
                 "bytes",
                 n);
        return;
    }
    if (p->state == PAIR_SPLICING)
        pod_flush(p);
    else
        set_blocked(p, p->to_pod.len >= PAIR_IN_HIGH);
}

static void on_fin(void *h, uint32_t id)
{
    struct pf *pf = h;
    struct pair *p = pair_for_data(pf, id);
    if (!p || p->state == PAIR_DONE)
        return;
    p->client_fin = true;
    if (p->state == PAIR_SPLICING)
        pod_flush(p);
}

static void on_reset(void *h, uint32_t id)
{
    struct pf *pf = h;
    struct pair *p = pair_for_data(pf, id);
    if (p)
        pair_done(p);
}

static void on_writable(void *h)
{
    struct pf *pf = h;
    struct pair *p;
    TAILQ_FOREACH (p, &pf->pairs, link) {
        if (p->state == PAIR_SPLICING)
            event_add(p->rev, NULL);
    }
}

static void pf_free(void *obj)
{
    struct pf *pf = obj;
    struct pair *p;
    while ((p = TAILQ_FIRST(&pf->pairs))) {
        TAILQ_REMOVE(&pf->pairs, p, link);
        pair_free(p);
    }
    loop_timer_free(pf->timer);
    stream_request_free(pf->req);
    free(pf);
}

static void on_closed(void *h)
{
    struct pf *pf = h;
    pf->c = NULL;
    struct pair *p;
    TAILQ_FOREACH (p, &pf->pairs, link) {
        if (p->rev)
            event_del(p->rev);
        if (p->wev)
            event_del(p->wev);
    }
    log_info("port-forward session ended sandbox=%s", pf->req->sandbox_id);
    loop_defer_free(pf_free, pf);
}

static const struct sconn_ops pf_ops = {
    .stream_open = on_stream_open,
    .data = on_data,
    .fin = on_fin,
    .reset = on_reset,
    .writable = on_writable,
    .closed = on_closed,
};

void portforward_start(struct sconn *c, struct stream_request *req, const struct stream_backend *be)
{
    struct pf *pf = xcalloc(1, sizeof(*pf));
    pf->c = c;
    pf->be = be;
    pf->req = req;
    pf->ws = sconn_framing(c) != SCONN_SPDY;
    TAILQ_INIT(&pf->pairs);
    pf->timer = loop_timer_new(on_timer, pf);
    sconn_set_handler(c, &pf_ops, pf);
    if (!pf->ws)
        return;
    if (req->n_ports == 0) {
        log_info("port-forward over WebSocket without ports sandbox=%s", req->sandbox_id);
        pf->ending = true;
        sconn_finish(c);
        return;
    }
    /* Channel pairs from the request's ports: data 2i, error 2i+1, each led by the port. */
    for (size_t i = 0; i < req->n_ports && i < MAX_PAIRS; i++) {
        char rid[16];
        snprintf(rid, sizeof(rid), "%zu", i);
        struct pair *p = pair_new(pf, rid, (uint16_t)req->ports[i]);
        p->data_id = (uint32_t)(2 * i);
        p->err_id = (uint32_t)(2 * i + 1);
        p->have_data = p->have_err = true;
        uint8_t le[2] = {(uint8_t)p->port, (uint8_t)(p->port >> 8)};
        sconn_send(c, p->data_id, le, 2, false);
        sconn_send(c, p->err_id, le, 2, false);
    }
    /* Connect each (new pairs are at the head: walk a snapshot). */
    struct pair *list[MAX_PAIRS];
    size_t n = 0;
    struct pair *p;
    TAILQ_FOREACH (p, &pf->pairs, link) {
        if (n < MAX_PAIRS)
            list[n++] = p;
    }
    for (size_t i = 0; i < n; i++)
        pair_step(list[i]);
}
