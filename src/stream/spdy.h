/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SPDY/3.1 framing, as the Kubernetes streaming clients speak it (the Go
 * spdystream framer): an incremental frame parser, frame writers, and the
 * header-block codec (zlib with the SPDY/3 dictionary, one compression
 * context per direction for the whole connection, a sync flush per block).
 *
 * Frames: control `1|version 15|type 16|flags 8|length 24|payload`,
 * data `0|stream-id 31|flags 8|length 24|payload`; FIN is flag 0x01.
 * Header block: `u32 count`, then per pair `u32 len, name, u32 len, value`;
 * a value holding several values separates them with NUL.
 *
 * Limits: control frames carry at most SPDY_CONTROL_MAX payload bytes and a
 * header block inflates to at most SPDY_HEADERS_MAX bytes with at most
 * SPDY_HEADER_COUNT_MAX pairs; beyond, decoding fails (the connection is
 * then unusable: the compression context is shared). Data frames are
 * streamed to the caller in pieces, never buffered whole.
 */
#ifndef TINYCRI_STREAM_SPDY_H
#define TINYCRI_STREAM_SPDY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <zlib.h>

#include "core/util.h"

struct error;
struct evbuffer;

#define SPDY_VERSION 3
#define SPDY_FLAG_FIN 0x01
#define SPDY_DATA_MAX 0xffffff
#define SPDY_CONTROL_MAX (64 * 1024)
#define SPDY_HEADERS_MAX (16 * 1024)
#define SPDY_HEADER_COUNT_MAX 32

enum spdy_type {
    SPDY_SYN_STREAM = 1,
    SPDY_SYN_REPLY = 2,
    SPDY_RST_STREAM = 3,
    SPDY_SETTINGS = 4,
    SPDY_PING = 6,
    SPDY_GOAWAY = 7,
    SPDY_HEADERS = 8,
    SPDY_WINDOW_UPDATE = 9,
};

/* RST_STREAM status codes. */
enum spdy_rst {
    SPDY_RST_PROTOCOL_ERROR = 1,
    SPDY_RST_INVALID_STREAM = 2,
    SPDY_RST_REFUSED_STREAM = 3,
    SPDY_RST_CANCEL = 5,
    SPDY_RST_INTERNAL_ERROR = 6,
    SPDY_RST_STREAM_IN_USE = 8,
};

/* The SPDY/3 header compression dictionary (1423 bytes, adler32 0xe3c6a7c2). */
extern const unsigned char spdy_dictionary[];
extern const size_t spdy_dictionary_len;

/* A decoded header block; every string is owned by the block. */
struct spdy_header {
    char *name;  /* lower-case */
    char *value; /* several values joined with NUL: value_len tells the whole length */
    size_t value_len;
};
struct spdy_headers {
    struct spdy_header items[SPDY_HEADER_COUNT_MAX];
    size_t n;
};
void spdy_headers_clear(struct spdy_headers *h);
/* The (first) value of a header, or NULL. */
const char *spdy_headers_get(const struct spdy_headers *h, const char *name);

/* One connection's compression state: in (peer's blocks), out (ours). */
struct spdy_zlib {
    z_stream in, out;
    bool in_ready, out_ready;
    bool in_released, out_released;
};
void spdy_zlib_init(struct spdy_zlib *z);
/*
 * Free the inflate (in) or deflate (out) side. After that, decoding (or
 * encoding) a block fails: call it once no more header blocks can come
 * (each side costs tens of KiB while held).
 */
void spdy_zlib_release_in(struct spdy_zlib *z);
void spdy_zlib_release_out(struct spdy_zlib *z);
void spdy_zlib_clear(struct spdy_zlib *z);

/*
 * Decode one compressed header block into out (cleared first). Fails with
 * INVALID_ARGUMENT for a malformed block (bad zlib data, truncated pairs,
 * upper-case or empty names, duplicate names) and RESOURCE_EXHAUSTED past the
 * limits above.
 */
int spdy_headers_decode(struct spdy_zlib *z, const uint8_t *in, size_t n, struct spdy_headers *out,
                        struct error **err);

/* A header pair to encode (value: one value; no NUL inside). */
struct spdy_pair {
    const char *name;
    const char *value;
};

/*
 * Frame writers: each appends one whole frame to out. The header-carrying
 * frames compress their block with z->out (INTERNAL if released or zlib
 * fails). Data frames carry at most SPDY_DATA_MAX bytes.
 */
int spdy_write_syn_stream(struct spdy_zlib *z, struct evbuffer *out, uint32_t id, uint8_t flags,
                          const struct spdy_pair *h, size_t n, struct error **err);
int spdy_write_syn_reply(struct spdy_zlib *z, struct evbuffer *out, uint32_t id, uint8_t flags,
                         const struct spdy_pair *h, size_t n, struct error **err);
void spdy_write_rst_stream(struct evbuffer *out, uint32_t id, uint32_t status);
void spdy_write_ping(struct evbuffer *out, uint32_t id);
void spdy_write_goaway(struct evbuffer *out, uint32_t last_good_id, uint32_t status);
void spdy_write_data(struct evbuffer *out, uint32_t id, uint8_t flags, const void *data, size_t n);

/* What the parser hands over. Returning -1 (with *err set) stops parsing. */
struct spdy_parser_ops {
    /* A whole control frame (payload borrowed for the call). */
    int (*control)(void *arg, uint16_t version, uint16_t type, uint8_t flags,
                   const uint8_t *payload, size_t len, struct error **err);
    /*
     * A piece of a data frame's payload, in order; end is true on the frame's
     * last piece (which may be empty), and flags are the frame's.
     */
    int (*data)(void *arg, uint32_t id, uint8_t flags, const uint8_t *piece, size_t n, bool end,
                struct error **err);
};

struct spdy_parser {
    uint8_t head[8];
    size_t head_len;
    bool in_payload;
    bool control;
    uint16_t version, type;
    uint8_t flags;
    uint32_t id;
    uint32_t left;   /* payload bytes still to come */
    struct buf ctrl; /* a control frame's payload so far */
};
void spdy_parser_init(struct spdy_parser *p);
void spdy_parser_clear(struct spdy_parser *p);

/*
 * Parse n bytes, calling ops as frames complete. Fails (-1) with
 * RESOURCE_EXHAUSTED for a control frame over SPDY_CONTROL_MAX, or with the
 * callbacks' errors. All n bytes are used on success.
 */
int spdy_parser_feed(struct spdy_parser *p, const uint8_t *data, size_t n,
                     const struct spdy_parser_ops *ops, void *arg, struct error **err);

#endif
