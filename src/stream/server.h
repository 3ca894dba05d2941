/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The streaming server: serves the URLs that Exec, Attach and PortForward
 * answer with (kubectl exec/attach/port-forward and crictl reach them through
 * kubelet or directly), on its own TCP listener, inside the daemon's one
 * loop.
 *
 *   http://ADDR:PORT/exec/TOKEN         remotecommand over SPDY/3.1 or WebSocket
 *   http://ADDR:PORT/attach/TOKEN       the same, joined to the container's stdio
 *   http://ADDR:PORT/portforward/TOKEN  portforward.k8s.io over SPDY/3.1, or WebSocket
 *
 * GET and POST are accepted (405 otherwise). The request behind a URL is the
 * cached CRI request (stream/token): one use, valid token_timeout seconds;
 * unknown, used, expired or mismatched tokens get 404. When max_sessions
 * sessions are open, a new one gets 429 with Retry-After and its token stays
 * usable. Negotiation: SPDY needs Connection: Upgrade, Upgrade: SPDY/3.1 and
 * X-Stream-Protocol-Version (400 without; 403 with
 * X-Accepted-Stream-Protocol-Versions when none is supported); WebSocket
 * needs Upgrade: websocket, Sec-WebSocket-Key and version 13 (400), and a
 * supported subprotocol when the client offers any (403).
 *
 * With tls_cert and tls_key the URLs are https:// (stream/tls: libssl is loaded
 * only then).
 *
 * The server never calls the pod layer itself: what it needs from containers
 * and pods comes through struct stream_backend, filled by the CRI layer.
 */
#ifndef TINYCRI_STREAM_SERVER_H
#define TINYCRI_STREAM_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stream/token.h"

struct error;

/* The exec'd process ended: its exit code (128 + signal when killed), or an error. */
typedef void (*stream_exec_done_cb)(int exit_code, const struct error *err, void *arg);
/* A port connection is ready: fd (owned, connected, non-blocking) or -1 with err. */
typedef void (*stream_fd_cb)(int fd, const struct error *err, void *arg);

struct stream_backend {
    /*
     * Run req->cmd in req->container_id with stdio (borrowed, closed by the
     * caller right after; see container_exec_stream()). Returns a handle
     * for exec_cancel(), or NULL with *err. cb runs once, unless cancelled.
     */
    void *(*exec_start)(const struct stream_request *req, const int stdio[3],
                        stream_exec_done_cb cb, void *arg, struct error **err);
    /* The session is gone: end the process (tree); cb will not run; the handle is freed. */
    void (*exec_cancel)(void *handle);
    /*
     * A connection to the container's keeper attach socket (owned fd,
     * non-blocking), the request for req's streams sent: keeper/protocol.h's
     * attach framing follows. Or -1 with *err; *tty says whether the
     * container has a terminal.
     */
    int (*attach_connect)(const struct stream_request *req, bool *tty, struct error **err);
    /* Resize the container's terminal (attach). */
    int (*attach_resize)(const char *container_id, uint16_t cols, uint16_t rows,
                         struct error **err);
    /*
     * Connect to localhost:port in the pod's network namespace; cb runs once
     * on the loop unless cancelled. Returns a handle or NULL with *err.
     */
    void *(*port_connect)(const char *sandbox_id, uint16_t port, stream_fd_cb cb, void *arg,
                          struct error **err);
    void (*port_connect_cancel)(void *handle);
};

struct stream_server_opts {
    const char *address; /* listen address (IPv4 or IPv6 literal) */
    uint16_t port;       /* 0: any free port */
    uint32_t idle_timeout_s;
    uint32_t creation_timeout_s;
    uint32_t token_timeout_s;
    uint32_t max_sessions;
    const char *tls_cert; /* both or neither: HTTPS */
    const char *tls_key;
};

struct stream_server;

/* Listen and serve. backend is borrowed for the server's life. */
struct stream_server *stream_server_new(const struct stream_server_opts *opts,
                                        const struct stream_backend *backend, struct error **err);
/* Close every connection (their processes are ended) and the listener. */
void stream_server_free(struct stream_server *s);

/* "http://127.0.0.1:41234" (or https://), borrowed. */
const char *stream_server_base_url(const struct stream_server *s);

/* Apply new timeouts (reload). */
void stream_server_set_timeouts(struct stream_server *s, uint32_t idle_s, uint32_t creation_s,
                                uint32_t token_s);

/*
 * Cache req (taken) and return its URL (owned). RESOURCE_EXHAUSTED when
 * the cache is full.
 */
char *stream_server_url(struct stream_server *s, struct stream_request *req, struct error **err);

/* Sessions open (upgraded connections), for tests and Status. */
size_t stream_server_session_count(const struct stream_server *s);

#endif
