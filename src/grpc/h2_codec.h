/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gRPC frame/message codec of grpc/h2, apart from HTTP/2: the
 * length-prefixed message framing (both directions), grpc-timeout values,
 * and the percent-encoding of grpc-message. Pure functions on buffers: no
 * sessions, no loop; tests/unit/test_h2.c drives them directly.
 */
#ifndef TINYCRI_GRPC_H2_CODEC_H
#define TINYCRI_GRPC_H2_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/util.h"

struct error;

/* The 5 bytes before a message of len bytes: not compressed, then len big-endian. */
#define H2_FRAME_PREFIX_LEN 5
void h2_frame_prefix(uint8_t out[H2_FRAME_PREFIX_LEN], uint32_t len);

/*
 * Incremental parser of gRPC length-prefixed messages: a 1-byte compressed
 * flag, a 4-byte big-endian length, then the message. Bytes may arrive split
 * or coalesced in any way. The body is buffered as it arrives, never beyond
 * the length the prefix announced, and a prefix announcing more than max_msg
 * is rejected before any body byte is stored.
 */
enum h2_framer_state {
    H2_FRAMER_PREFIX, /* collecting the 5-byte prefix */
    H2_FRAMER_BODY,   /* collecting msg_len body bytes */
    H2_FRAMER_FAILED, /* a prefix was rejected; feeding fails from now on */
};

struct h2_framer {
    enum h2_framer_state state;
    uint32_t max_msg;
    const char *encoding; /* grpc-encoding (borrowed); NULL when absent */
    uint8_t prefix[5];
    size_t prefix_len;
    uint32_t msg_len;
    struct buf body;
    bool has_msg;  /* a complete message waits for h2_framer_take() */
    size_t n_msgs; /* messages completed so far */
};

void h2_framer_init(struct h2_framer *f, uint32_t max_msg, const char *encoding);

/*
 * Consume data up to the end of the next complete message. Returns the
 * number of bytes consumed (less than len when a message completed: take it,
 * then feed the rest; 0 while a message is waiting to be taken), or -1:
 * RESOURCE_EXHAUSTED (length above max_msg), INTERNAL (bad flag, or
 * compressed without grpc-encoding), UNIMPLEMENTED (compressed with an
 * encoding other than identity).
 */
ssize_t h2_framer_feed(struct h2_framer *f, const uint8_t *data, size_t len, struct error **err);

/* Take the completed message (owned; *len set), or NULL when none is ready. */
uint8_t *h2_framer_take(struct h2_framer *f, size_t *len);

/* At end of stream: INTERNAL when a message was cut short. */
int h2_framer_end(const struct h2_framer *f, struct error **err);

void h2_framer_free(struct h2_framer *f);

/*
 * Parse a grpc-timeout value (1-8 ASCII digits and a unit H M S m u n) into
 * nanoseconds, saturating at INT64_MAX. Returns -1 when malformed.
 */
int h2_timeout_parse(const char *s, size_t len, int64_t *ns);

/*
 * Percent-encode a grpc-message: bytes outside 0x20-0x7E and '%' become %XX.
 * A byte that does not belong to well-formed UTF-8 (messages quote client
 * input) becomes U+FFFD, so that clients can always decode the message.
 * The result is cut, at a character boundary, to H2_GRPC_MESSAGE_MAX bytes so
 * a long error never exceeds a client's header limits. Returns an owned string.
 */
#define H2_GRPC_MESSAGE_MAX 2048
char *h2_grpc_message_encode(const char *msg);

#endif
