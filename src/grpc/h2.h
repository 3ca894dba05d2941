/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gRPC over HTTP/2 on the loop: one nghttp2 server session per accepted
 * connection, length-prefixed message framing, deadlines, cancellation and
 * trailers. Knows nothing about CRI or protobuf: it hands each call's
 * request bytes to a dispatch callback, which answers now or later.
 *
 * A call (struct h2_call) lives from the request's HEADERS until its stream
 * closes. Work that answers later keeps h2_call_id() and looks the call up
 * again with h2_call_lookup(), which returns NULL once the client cancelled
 * (RST_STREAM), the deadline passed, or the connection went away.
 *
 * The message framing, grpc-timeout and grpc-message codec is
 * grpc/h2_codec.h.
 */
#ifndef TINYCRI_GRPC_H2_H
#define TINYCRI_GRPC_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/util.h"

struct error;
struct h2_server;
struct h2_call;

/* A field left 0 takes the default given in its comment. */
struct h2_server_opts {
    uint32_t max_recv_msg;    /* request message cap; RESOURCE_EXHAUSTED beyond; 16 MiB */
    uint32_t max_send_msg;    /* reply message cap; RESOURCE_EXHAUSTED beyond; 16 MiB */
    uint32_t max_streams;     /* SETTINGS_MAX_CONCURRENT_STREAMS per connection; 128 */
    uint32_t max_connections; /* open at once; at the cap see below; 64 */
    uint32_t max_header_list; /* SETTINGS_MAX_HEADER_LIST_SIZE; 16 KiB */
    /*
     * Request bytes held (received, not yet dispatched) by all the calls of
     * one connection, and of the whole server. The call whose data goes past
     * either ends with RESOURCE_EXHAUSTED; others are not affected.
     */
    size_t max_conn_held; /* 2 * max_recv_msg */
    size_t max_held;      /* 4 * max_recv_msg */
    /*
     * Connection liveness, in milliseconds. A new connection must send the
     * HTTP/2 preface and its SETTINGS within handshake_ms (10 s) or it is
     * closed. A connection that has sent nothing for keepalive_ms (2 min)
     * gets a PING and is closed when nothing comes back within
     * keepalive_timeout_ms (20 s). One that answers is never closed for
     * being idle, except to make room: with max_connections open, a new
     * connection closes the one silent longest among those with no call
     * (one still in its handshake first), or is itself closed when every
     * connection has a call in flight.
     */
    int64_t handshake_ms;
    int64_t keepalive_ms;
    int64_t keepalive_timeout_ms;
};

/*
 * Called once per call, when the client has half-closed its side after
 * exactly one request message. path is the ":path" header; msg/len are the
 * message bytes (borrowed for this callback only). The callee must end the
 * call with h2_call_finish(), now or later.
 */
typedef void (*h2_dispatch_cb)(struct h2_call *call, const char *path, const uint8_t *msg,
                               size_t len, void *arg);

/*
 * Serve gRPC on listen_fd (a bound, listening, non-blocking AF_UNIX or TCP
 * socket; the server takes it over, and closes it on failure too). Errors:
 * INTERNAL.
 */
struct h2_server *h2_server_new(int listen_fd, const struct h2_server_opts *opts,
                                h2_dispatch_cb dispatch, void *arg, struct error **err);

/*
 * Graceful stop: stop accepting, send GOAWAY on every connection, let calls
 * in flight finish. done(arg) runs on the loop once no call is left, or when
 * timeout_ms passes (then the remaining calls are cancelled with
 * UNAVAILABLE). Connections are closed before done runs.
 */
void h2_server_drain(struct h2_server *s, int64_t timeout_ms, void (*done)(void *arg), void *arg);

/*
 * Close everything and free; h2_server_free(NULL) is a no-op. Calls still
 * running get their cancel callback. Must not be called from a dispatch or
 * cancel callback (the done callback of h2_server_drain() is fine).
 */
void h2_server_free(struct h2_server *s);

/* Counters for tests and benchmarks. */
size_t h2_server_connection_count(const struct h2_server *s);
size_t h2_server_call_count(const struct h2_server *s);
/* Request bytes the server's calls hold now (see max_held). */
size_t h2_server_held_bytes(const struct h2_server *s);

/* A process-unique, never reused id for a call. */
uint64_t h2_call_id(const struct h2_call *call);

/* The live call with this id, or NULL when it has ended or was cancelled. */
struct h2_call *h2_call_lookup(uint64_t id);

/* The ":path" of the call (borrowed, valid while the call lives). */
const char *h2_call_path(const struct h2_call *call);

/* Monotonic deadline in ns from grpc-timeout, 0 when the client gave none. */
int64_t h2_call_deadline_ns(const struct h2_call *call);

/*
 * Queue one reply message (copied). Unary methods send exactly one, server
 * streaming ones any number, then finish. Sending respects HTTP/2 flow
 * control: a large reply is written as the client's window allows, without
 * holding up other streams. Fails with RESOURCE_EXHAUSTED past max_send_msg.
 */
int h2_call_send(struct h2_call *call, const uint8_t *msg, size_t len, struct error **err);

/*
 * End the call with a gRPC status; message may be NULL. Trailers carry
 * grpc-status and the percent-encoded grpc-message (a trailers-only reply
 * when nothing was sent). The call must not be used afterwards (its memory
 * is released once the stream closes).
 */
void h2_call_finish(struct h2_call *call, int grpc_code, const char *message);

/*
 * Ask to be told when the call goes away before it was finished (client
 * RST_STREAM, deadline, connection loss, drain timeout). cb runs once, on the
 * loop; the call is already unusable then. One callback per call.
 */
void h2_call_on_cancel(struct h2_call *call, void (*cb)(uint64_t call_id, void *arg), void *arg);

/*
 * Server streams that live long (container events) or send a lot (streamed
 * lists). A call queues at most its out cap of reply bytes not yet taken by
 * the client; the default is room for two max_send_msg messages.
 * h2_call_set_out_cap() sets another cap (never below one max-size message).
 */
void h2_call_set_out_cap(struct h2_call *call, size_t cap);

/*
 * Send the response headers now, before any message (a subscription the
 * client can see is established). Errors: CANCELLED when the call ended.
 */
int h2_call_send_headers(struct h2_call *call, struct error **err);

/* Reply bytes queued on the call that the client's flow control has not let out yet. */
size_t h2_call_out_pending(const struct h2_call *call);

/*
 * Cut a call off: drop what it has queued and reset its stream with
 * ENHANCE_YOUR_CALM, which gRPC clients report as RESOURCE_EXHAUSTED (a
 * trailer cannot overtake the queued data of a client that stopped
 * reading). The call is finished: its cancel callback does not run, and it
 * must not be used afterwards.
 */
void h2_call_cut_off(struct h2_call *call);

/*
 * Bytes waiting in the connections' socket output buffers. Bounded by about
 * 128 KiB per connection however slowly clients read: the rest of a reply
 * waits in its call, paced by HTTP/2 flow control.
 */
size_t h2_server_output_bytes(const struct h2_server *s);

#endif
