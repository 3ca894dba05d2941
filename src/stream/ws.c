/* SPDX-License-Identifier: Apache-2.0 */
/*
 * WebSocket behind ws.h. wslay pulls input through a callback: ws_feed()
 * points it at the bytes just read, and the callback hands them over until
 * they are used up (then "would block"). Output frames are pushed into the
 * caller's evbuffer as soon as they are queued, so the connection's own
 * output high-water mark governs backpressure.
 */
#include "autoconf.h"

#include <string.h>

#include <event2/buffer.h>
#include <wslay/wslay.h>

#include "core/base64.h"
#include "core/util.h"
#include "stream/ws.h"

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* ---- SHA-1 (FIPS 180-4), for the handshake only ---- */

static uint32_t rol(uint32_t v, int n)
{
    return (v << n) | (v >> (32 - n));
}

static void sha1_block(uint32_t h[5], const uint8_t *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5a827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ed9eba1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8f1bbcdc;
        } else {
            f = b ^ c ^ d;
            k = 0xca62c1d6;
        }
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(b, 30);
        b = a;
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

void ws_sha1(const void *data, size_t n, uint8_t out[20])
{
    uint32_t h[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
    const uint8_t *p = data;
    size_t left = n;
    while (left >= 64) {
        sha1_block(h, p);
        p += 64;
        left -= 64;
    }
    uint8_t tail[128] = {0};
    memcpy(tail, p, left);
    tail[left] = 0x80;
    size_t total = left + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)n * 8;
    for (int i = 0; i < 8; i++)
        tail[total - 1 - i] = (uint8_t)(bits >> (8 * i));
    sha1_block(h, tail);
    if (total == 128)
        sha1_block(h, tail + 64);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

char *ws_accept_key(const char *key)
{
    _cleanup_free_ char *joined = xasprintf("%s%s", key, ws_guid);
    uint8_t digest[20];
    ws_sha1(joined, strlen(joined), digest);
    return base64_encode(digest, sizeof(digest));
}

/* ---- the session ---- */

struct ws {
    wslay_event_context_ptr ctx;
    struct evbuffer *out;
    ws_msg_cb on_msg;
    void *arg;
    const uint8_t *in; /* bytes being fed */
    size_t in_len;
};

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    struct ws *w = user;
    if (w->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < w->in_len ? len : w->in_len;
    memcpy(buf, w->in, n);
    w->in += n;
    w->in_len -= n;
    return (ssize_t)n;
}

static ssize_t on_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    struct ws *w = user;
    if (evbuffer_add(w->out, data, len) < 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void on_msg_recv(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
                        void *user)
{
    struct ws *w = user;
    if (a->opcode == WSLAY_TEXT_FRAME || a->opcode == WSLAY_BINARY_FRAME)
        w->on_msg(w->arg, a->opcode == WSLAY_TEXT_FRAME ? WS_OPCODE_TEXT : WS_OPCODE_BINARY, a->msg,
                  a->msg_length);
}

struct ws *ws_new(struct evbuffer *out, ws_msg_cb on_msg, void *arg)
{
    static const struct wslay_event_callbacks cbs = {
        .recv_callback = on_recv,
        .send_callback = on_send,
        .on_msg_recv_callback = on_msg_recv,
    };
    struct ws *w = xcalloc(1, sizeof(*w));
    w->out = out;
    w->on_msg = on_msg;
    w->arg = arg;
    if (wslay_event_context_server_init(&w->ctx, &cbs, w) != 0) {
        /* wslay fails only when malloc does. */
        util_die_invariant(__FILE__, __LINE__, "wslay_event_context_server_init");
    }
    wslay_event_config_set_max_recv_msg_length(w->ctx, WS_MSG_MAX);
    return w;
}

void ws_free(struct ws *w)
{
    if (!w)
        return;
    wslay_event_context_free(w->ctx);
    free(w);
}

static void flush(struct ws *w)
{
    if (wslay_event_want_write(w->ctx))
        wslay_event_send(w->ctx);
}

int ws_feed(struct ws *w, const uint8_t *data, size_t n)
{
    w->in = data;
    w->in_len = n;
    int rc = wslay_event_recv(w->ctx);
    w->in = NULL;
    w->in_len = 0;
    flush(w);
    if (rc != 0 || !wslay_event_want_read(w->ctx))
        return -1;
    return 0;
}

void ws_send(struct ws *w, int opcode, const void *data, size_t n)
{
    struct wslay_event_msg m = {
        .opcode = (uint8_t)(opcode == WS_OPCODE_TEXT ? WSLAY_TEXT_FRAME : WSLAY_BINARY_FRAME),
        .msg = data,
        .msg_length = n,
    };
    /* Fails only once a close was queued: nothing more can be sent anyway. */
    if (wslay_event_queue_msg(w->ctx, &m) == 0)
        flush(w);
}

void ws_close(struct ws *w, uint16_t code)
{
    wslay_event_queue_close(w->ctx, code, NULL, 0);
    flush(w);
}

size_t ws_queued(const struct ws *w)
{
    return wslay_event_get_queued_msg_length(w->ctx);
}
