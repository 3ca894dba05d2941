/* SPDX-License-Identifier: Apache-2.0 */
/*
 * WebSocket (RFC 6455) server side over Debian's libwslay: the handshake's
 * accept key, and a message layer that takes bytes as the loop reads them
 * and appends frames to an output buffer the caller writes out.
 *
 * Incoming messages are capped (WS_MSG_MAX; beyond, the connection is
 * closed with status 1009); pings are answered by wslay.
 */
#ifndef TINYCRI_STREAM_WS_H
#define TINYCRI_STREAM_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct error;
struct evbuffer;

#define WS_MSG_MAX (1024 * 1024)
#define WS_OPCODE_TEXT 1
#define WS_OPCODE_BINARY 2

/*
 * Sec-WebSocket-Accept for a Sec-WebSocket-Key (owned; 28 characters): the
 * SHA-1 is libcrypto's (image/xferlib). NULL with UNAVAILABLE or INTERNAL
 * when libcrypto cannot be loaded.
 */
char *ws_accept_key(const char *key, struct error **err);

struct ws;

/* A whole data message arrived (text or binary; borrowed for the call). */
typedef void (*ws_msg_cb)(void *arg, int opcode, const uint8_t *data, size_t n);

/* A server-side session writing its frames to out (borrowed for its life). */
struct ws *ws_new(struct evbuffer *out, ws_msg_cb on_msg, void *arg);
void ws_free(struct ws *w);

/*
 * Take n received bytes. Returns 0, or -1 once the session is over (a close
 * frame was exchanged, or a protocol error): write out what is queued, then
 * close the connection.
 */
int ws_feed(struct ws *w, const uint8_t *data, size_t n);

/* Queue a message (copied) and move queued frames to out. */
void ws_send(struct ws *w, int opcode, const void *data, size_t n);

/* Queue a close frame with status code (1000: normal). */
void ws_close(struct ws *w, uint16_t code);

/* Bytes queued inside wslay that are not in out yet. */
size_t ws_queued(const struct ws *w);

#endif
