/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The scripted HTTP server of registry_server.h.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "core/loop.h"
#include "core/util.h"
#include "registry_server.h"

struct srv srv;

static void srv_process(struct srv_conn *c);

static void conn_free(struct srv_conn *c)
{
    for (struct srv_conn **pp = &srv.conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    for (size_t i = 0; i < srv.n_held; i++) {
        if (srv.held[i] == c) {
            memmove(&srv.held[i], &srv.held[i + 1], (srv.n_held - i - 1) * sizeof(srv.held[0]));
            srv.n_held--;
            break;
        }
    }
    if (c->busy)
        srv.in_flight--;
    bufferevent_free(c->bev);
    free(c);
}

static void on_conn_read(struct bufferevent *bev, void *arg)
{
    srv_process(arg);
}

static void on_conn_write(struct bufferevent *bev, void *arg)
{
    struct srv_conn *c = arg;
    if (c->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        conn_free(c);
}

static void on_conn_event(struct bufferevent *bev, short what, void *arg)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_free(arg);
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    struct srv_conn *c = xcalloc(1, sizeof(*c));
    srv.accepted++;
    c->bev = bufferevent_socket_new(loop_base(), fd, BEV_OPT_CLOSE_ON_FREE);
    c->next = srv.conns;
    srv.conns = c;
    bufferevent_setcb(c->bev, on_conn_read, on_conn_write, on_conn_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static size_t head_content_length(const char *head)
{
    for (const char *p = strstr(head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, "content-length:", 15) == 0)
            return strtoul(p + 17, NULL, 10);
    }
    return 0;
}

static void srv_process(struct srv_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    const unsigned char *first = evbuffer_pullup(in, 1);
    if (first && first[0] == 0x16) {
        /* A TLS ClientHello: this server speaks plain HTTP only. */
        conn_free(c);
        return;
    }
    while (!c->busy && !c->closing) {
        struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (end.pos < 0)
            return;
        size_t head_len = (size_t)end.pos + 4;
        char *head = xmalloc(head_len + 1);
        evbuffer_copyout(in, head, head_len);
        head[head_len] = '\0';
        size_t cl = head_content_length(head);
        if (evbuffer_get_length(in) < head_len + cl) {
            free(head);
            return;
        }
        evbuffer_drain(in, head_len);
        if (srv.n_reqs == MAX_REQS) {
            srv.overflow = true;
            free(head);
            conn_free(c);
            return;
        }
        struct srv_req *req = &srv.reqs[srv.n_reqs++];
        req->head = head;
        req->body = xmalloc(cl + 1);
        evbuffer_remove(in, req->body, cl);
        req->body[cl] = '\0';
        req->body_len = cl;
        if (sscanf(head, "%15s %2047s", req->method, req->target) != 2)
            req->method[0] = req->target[0] = '\0';
        c->busy = true;
        srv.in_flight++;
        if (srv.in_flight > srv.max_in_flight)
            srv.max_in_flight = srv.in_flight;
        srv.handler(c, req);
    }
}

/*
 * Answer the request waiting on c. content_length < 0: no Content-Length,
 * the body ends when the connection closes. Only send bytes of body go out;
 * close: close the connection after them.
 */
void reply_ex(struct srv_conn *c, int status, const char *headers, const void *body,
              long content_length, size_t send, bool close)
{
    char head[4096];
    if (content_length >= 0)
        snprintf(head, sizeof(head), "HTTP/1.1 %d Scripted\r\nContent-Length: %ld\r\n%s\r\n",
                 status, content_length, headers ? headers : "");
    else
        snprintf(head, sizeof(head), "HTTP/1.1 %d Scripted\r\nConnection: close\r\n%s\r\n", status,
                 headers ? headers : "");
    bufferevent_write(c->bev, head, strlen(head));
    if (send)
        bufferevent_write(c->bev, body, send);
    c->busy = false;
    srv.in_flight--;
    if (close) {
        c->closing = true;
        bufferevent_disable(c->bev, EV_READ);
    }
}

void reply(struct srv_conn *c, int status, const char *headers, const void *body, size_t len)
{
    reply_ex(c, status, headers, body, (long)len, len, false);
}

void reply_str(struct srv_conn *c, int status, const char *headers, const char *body)
{
    reply(c, status, headers, body, strlen(body));
}

void hold(struct srv_conn *c)
{
    assert_state(srv.n_held < MAX_HELD);
    srv.held[srv.n_held++] = c;
}

struct srv_conn *unhold(void)
{
    if (srv.n_held == 0)
        return NULL;
    struct srv_conn *c = srv.held[0];
    memmove(&srv.held[0], &srv.held[1], (srv.n_held - 1) * sizeof(srv.held[0]));
    srv.n_held--;
    return c;
}

void srv_start(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    memset(&srv, 0, sizeof(srv));
    srv.lis =
        evconnlistener_new_bind(loop_base(), on_accept, NULL,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE,
                                16, (struct sockaddr *)&sin, sizeof(sin));
    assert_non_null(srv.lis);
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(evconnlistener_get_fd(srv.lis), (struct sockaddr *)&sin, &len), 0);
    srv.port = ntohs(sin.sin_port);
}

void srv_stop(void)
{
    while (srv.conns)
        conn_free(srv.conns);
    if (srv.lis)
        evconnlistener_free(srv.lis);
    for (size_t i = 0; i < srv.n_reqs; i++) {
        free(srv.reqs[i].head);
        free(srv.reqs[i].body);
    }
    memset(&srv, 0, sizeof(srv));
}

/* A header of a recorded request (case-insensitive name), or NULL. */
const char *req_header(const struct srv_req *req, const char *name)
{
    static char out[4][1024];
    static int slot;
    size_t nl = strlen(name);
    for (const char *p = strstr(req->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            char *o = out[slot++ % 4];
            snprintf(o, sizeof(out[0]), "%.*s", (int)(e - v), v);
            return o;
        }
    }
    return NULL;
}

bool target_is(const struct srv_req *req, const char *path)
{
    size_t n = strlen(path);
    return strncmp(req->target, path, n) == 0 && (req->target[n] == '\0' || req->target[n] == '?');
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* The decoded value of key in "a=1&b=2" (form or query), or NULL. */
const char *form_value(const char *qs, const char *key)
{
    static char out[4][1024];
    static int slot;
    size_t kl = strlen(key);
    const char *p = qs;
    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
            char *o = out[slot++ % 4];
            size_t n = 0;
            for (size_t i = kl + 1; i < len && n + 1 < sizeof(out[0]); i++) {
                if (p[i] == '%' && i + 2 < len + 1 && hexval(p[i + 1]) >= 0 &&
                    hexval(p[i + 2]) >= 0) {
                    o[n++] = (char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
                    i += 2;
                } else {
                    o[n++] = p[i] == '+' ? ' ' : p[i];
                }
            }
            o[n] = '\0';
            return o;
        }
        p = amp ? amp + 1 : NULL;
    }
    return NULL;
}

const char *query_value(const struct srv_req *req, const char *key)
{
    const char *q = strchr(req->target, '?');
    return q ? form_value(q + 1, key) : NULL;
}
