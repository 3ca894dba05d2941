/* SPDX-License-Identifier: Apache-2.0 */
/*
 * remotecommand: the exec and attach sessions of the streaming server, for
 * the channel protocols v1 (channel.k8s.io) to v4 (v4.channel.k8s.io) over
 * SPDY and WebSocket.
 *
 * SPDY: the client opens its streams one at a time ("streamtype": error,
 * stdin, stdout, stderr without tty, resize with tty from v3), each
 * answered at once; which streams must come is decided by the cached CRI
 * request. When all have come (within creation_timeout, or the session
 * ends) the process starts (exec) or the keeper's attach socket is joined
 * (attach). WebSocket: channels 0 stdin, 1 stdout, 2 stderr, 3 error,
 * 4 resize exist from the start; an empty message on the first output
 * channel tells the client the session is up.
 *
 * Data: stdin to the process (EOF: an empty DATA frame with FIN closes the
 * process's stdin); its stdout and stderr to their streams, read only while
 * the connection's output is below its high-water mark; resize: a sequence
 * of JSON objects {"Width":W,"Height":H}, applied to the terminal.
 *
 * End (the exit is known and the output is over, or attach: the keeper
 * closed): stdin and resize are reset, the status is written to the error
 * stream (v4: a JSON Status — Success; Failure/NonZeroExitCode with the code
 * as the ExitCode cause; Failure/InternalError, code 500; v1-v3: the
 * message, on failure only), stdout, stderr and error get FIN, and the
 * client closes the connection. A client that goes away ends the session:
 * stdin is closed, a terminal is hung up (SIGHUP), and the process tree is
 * killed after EXEC_KILL_GRACE_MS if it is still there.
 */
#ifndef TINYCRI_STREAM_REMOTECOMMAND_H
#define TINYCRI_STREAM_REMOTECOMMAND_H

struct sconn;
struct stream_backend;
struct stream_request;

/* A grace period before a disconnected client's process tree is killed. */
#define EXEC_KILL_GRACE_MS 2000

/* Run an exec or attach session on an upgraded connection (req taken). */
void remotecommand_start(struct sconn *c, struct stream_request *req,
                         const struct stream_backend *be);

/*
 * Parse a resize stream: feed bytes; each complete {"Width":W,"Height":H}
 * object calls cb. Keeps up to 256 bytes of an unfinished object; an object
 * that is longer or malformed is skipped. (Exported for unit tests.)
 */
struct resize_parser {
    char buf[256];
    size_t len;
    int depth;
    bool skipping;
};
void resize_parser_feed(struct resize_parser *p, const char *data, size_t n,
                        void (*cb)(void *arg, unsigned w, unsigned h), void *arg);

/* The v4 status JSON for an outcome (owned): exit_code < 0 with msg is an internal error. */
char *remotecommand_status_json(int exit_code, const char *msg);

#endif
