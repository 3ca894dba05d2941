/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A tiny scripted HTTP/1.1 server for the registry client's tests (image/
 * registry and image/pull): it listens on 127.0.0.1 (an ephemeral port) on
 * the daemon's loop, hands each request to the test's handler, which
 * answers with recorded responses (or holds the connection), and keeps every
 * request it saw so tests can check what went over the wire. Plain HTTP
 * only: a TLS ClientHello is hung up on.
 */
#ifndef TINYCRI_TESTS_UNIT_REGISTRY_SERVER_H
#define TINYCRI_TESTS_UNIT_REGISTRY_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#define MAX_REQS 64
#define MAX_HELD 16

struct srv_req {
    char method[16];
    char target[2048];
    char *head; /* request line and headers */
    char *body;
    size_t body_len;
};

struct srv_conn {
    struct srv_conn *next;
    struct bufferevent *bev;
    bool busy;    /* a request waits for its answer */
    bool closing; /* close once the output is written */
};

typedef void (*srv_handler)(struct srv_conn *c, const struct srv_req *req);

struct srv {
    struct evconnlistener *lis;
    int port;
    srv_handler handler;
    struct srv_req reqs[MAX_REQS];
    size_t n_reqs;
    bool overflow;
    struct srv_conn *conns;
    int accepted;
    int in_flight, max_in_flight;
    struct srv_conn *held[MAX_HELD];
    size_t n_held;
};
extern struct srv srv;

/* Listen on an ephemeral port of 127.0.0.1 (srv.port); forget what an earlier run saw. */
void srv_start(void);
/* Close every connection and the listener; free the recorded requests. */
void srv_stop(void);

/*
 * Answer the request waiting on c. content_length < 0: no Content-Length,
 * the body ends when the connection closes. Only send bytes of body go out;
 * close: close the connection after them.
 */
void reply_ex(struct srv_conn *c, int status, const char *headers, const void *body,
              long content_length, size_t send, bool close);
void reply(struct srv_conn *c, int status, const char *headers, const void *body, size_t len);
void reply_str(struct srv_conn *c, int status, const char *headers, const char *body);
/* Keep c's request unanswered until unhold() hands it back (oldest first; NULL: none). */
void hold(struct srv_conn *c);
struct srv_conn *unhold(void);

/* A header of a recorded request (case-insensitive name), or NULL. */
const char *req_header(const struct srv_req *req, const char *name);
/* Is the request's target path (before any '?') exactly path? */
bool target_is(const struct srv_req *req, const char *path);
/* The decoded value of key in "a=1&b=2" (form or query), or NULL. */
const char *form_value(const char *qs, const char *key);
const char *query_value(const struct srv_req *req, const char *key);

#endif
