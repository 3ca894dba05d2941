/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An upgraded streaming connection as the protocol handlers see it
 * (stream/remotecommand, stream/portforward): numbered channels over SPDY
 * streams or WebSocket channels, with backpressure.
 *
 * - SPDY: a channel id is a stream id the client opened (odd, increasing);
 *   the handler accepts or refuses each new stream (the connection then
 *   sends SYN_REPLY or RST_STREAM), gets its data, its FIN and its reset.
 * - WebSocket: a channel id is the channel number of the k8s channel
 *   protocols (first byte of each binary message, or first digit of each
 *   base64 text message); channels exist from the start, there is no FIN.
 *
 * Output is never held back for flow control (the Go peers implement none):
 * sconn_send() always queues, and the handler stops producing while
 * sconn_is_full() (its fds stay unread), resuming on ops->writable. A handler
 * that cannot take more input pauses the connection's reads.
 *
 * Lifetime: the connection owns itself. ops->closed runs exactly once, from
 * the loop (never inside a call the handler made), when the connection is
 * gone: by the peer, an error, the idle timeout, sconn_abort() or after
 * sconn_finish(). The handler frees its state there; after it, the handler
 * must not use the connection. Until then every sconn_*() call is safe, and
 * a no-op once the connection is closing.
 */
#ifndef TINYCRI_STREAM_CONN_H
#define TINYCRI_STREAM_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct spdy_headers;
struct sconn;

struct sconn_ops {
    /* SPDY: the client opened stream id (flags of its SYN_STREAM). 0: accept; -1: refuse. */
    int (*stream_open)(void *h, uint32_t id, uint8_t flags, const struct spdy_headers *hd);
    void (*data)(void *h, uint32_t id, const uint8_t *data, size_t n);
    void (*fin)(void *h, uint32_t id);   /* SPDY: the client closed its side of stream id */
    void (*reset)(void *h, uint32_t id); /* SPDY: the client reset stream id */
    void (*writable)(void *h);           /* output fell below the low-water mark */
    void (*closed)(void *h);
};

/* Which framing the connection speaks. */
enum sconn_framing {
    SCONN_SPDY,
    SCONN_WS_BINARY, /* channel.k8s.io, v4.channel.k8s.io (and no subprotocol) */
    SCONN_WS_BASE64, /* base64.channel.k8s.io, v4.base64.channel.k8s.io */
};

void sconn_set_handler(struct sconn *c, const struct sconn_ops *ops, void *h);
enum sconn_framing sconn_framing(const struct sconn *c);
/* The negotiated protocol name ("v4.channel.k8s.io", "portforward.k8s.io"; "" for none). */
const char *sconn_protocol(const struct sconn *c);
/* Stream creation deadline (config creation_timeout), ms. */
int64_t sconn_creation_timeout_ms(const struct sconn *c);
/* For log lines: "127.0.0.1:40000". */
const char *sconn_peer(const struct sconn *c);

/* Queue n bytes on channel id (FIN after them when fin; SPDY only). */
void sconn_send(struct sconn *c, uint32_t id, const void *data, size_t n, bool fin);
/* SPDY: reset stream id with a RST_STREAM status. */
void sconn_reset(struct sconn *c, uint32_t id, uint32_t status);
bool sconn_is_full(const struct sconn *c);
void sconn_pause_input(struct sconn *c, bool pause);
/* SPDY: no more streams will be opened or replied to: free the zlib contexts. */
void sconn_release_headers(struct sconn *c);
/*
 * Everything is queued: send it, then wait (a few seconds at most) for the
 * client to close; then GOAWAY (SPDY) or a close frame (WebSocket), and close.
 */
void sconn_finish(struct sconn *c);
/* Close now (queued output is dropped). */
void sconn_abort(struct sconn *c);

#endif
