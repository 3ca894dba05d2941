/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Implementation of h2_codec.h.
 */
#include "autoconf.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/text.h"
#include "core/util.h"
#include "grpc/h2_codec.h"

void h2_frame_prefix(uint8_t out[H2_FRAME_PREFIX_LEN], uint32_t len)
{
    out[0] = 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

/* ---- framing ---- */

void h2_framer_init(struct h2_framer *f, uint32_t max_msg, const char *encoding)
{
    memset(f, 0, sizeof(*f));
    f->state = H2_FRAMER_PREFIX;
    f->max_msg = max_msg;
    f->encoding = encoding;
    buf_init(&f->body, 0);
}

static bool is_identity(const char *encoding)
{
    return !encoding || !*encoding || strcmp(encoding, "identity") == 0;
}

static int check_prefix(const struct h2_framer *f, uint32_t len, struct error **err)
{
    uint8_t flag = f->prefix[0];
    if (flag == 1 && is_identity(f->encoding))
        return error_set(err, GRPC_INTERNAL, 0, "compressed flag set but no grpc-encoding");
    if (flag == 1)
        return error_set(err, GRPC_UNIMPLEMENTED, 0, "grpc-encoding %.64s is not supported",
                         f->encoding);
    if (flag != 0)
        return error_set(err, GRPC_INTERNAL, 0, "invalid compressed flag %u", flag);
    if (len > f->max_msg)
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0,
                         "received message larger than max (%" PRIu32 " vs. %" PRIu32 ")", len,
                         f->max_msg);
    return 0;
}

static void framer_complete(struct h2_framer *f)
{
    f->has_msg = true;
    f->n_msgs++;
    f->state = H2_FRAMER_PREFIX;
}

ssize_t h2_framer_feed(struct h2_framer *f, const uint8_t *data, size_t len, struct error **err)
{
    if (f->state == H2_FRAMER_FAILED)
        return error_set(err, GRPC_INTERNAL, 0, "message framing failed earlier");
    size_t used = 0;
    while (used < len && !f->has_msg) {
        if (f->state == H2_FRAMER_PREFIX) {
            size_t n = sizeof(f->prefix) - f->prefix_len;
            if (n > len - used)
                n = len - used;
            memcpy(f->prefix + f->prefix_len, data + used, n);
            f->prefix_len += n;
            used += n;
            if (f->prefix_len < sizeof(f->prefix))
                break;
            uint32_t msg_len = (uint32_t)f->prefix[1] << 24 | (uint32_t)f->prefix[2] << 16 |
                               (uint32_t)f->prefix[3] << 8 | (uint32_t)f->prefix[4];
            if (check_prefix(f, msg_len, err) < 0) {
                f->state = H2_FRAMER_FAILED;
                return -1;
            }
            f->prefix_len = 0;
            f->msg_len = msg_len;
            /* The cap is the announced length, so the buffer never grows past it. */
            buf_free(&f->body);
            buf_init(&f->body, msg_len);
            if (msg_len == 0)
                framer_complete(f);
            else
                f->state = H2_FRAMER_BODY;
        } else {
            size_t n = f->msg_len - f->body.len;
            if (n > len - used)
                n = len - used;
            assert_state(buf_append(&f->body, data + used, n) == 0);
            used += n;
            if (f->body.len == f->msg_len)
                framer_complete(f);
        }
    }
    return (ssize_t)used;
}

uint8_t *h2_framer_take(struct h2_framer *f, size_t *len)
{
    if (!f->has_msg)
        return NULL;
    f->has_msg = false;
    return (uint8_t *)buf_take_str(&f->body, len);
}

int h2_framer_end(const struct h2_framer *f, struct error **err)
{
    if (f->state == H2_FRAMER_BODY || f->prefix_len > 0)
        return error_set(err, GRPC_INTERNAL, 0, "request ended inside a message");
    return 0;
}

void h2_framer_free(struct h2_framer *f)
{
    buf_free(&f->body);
}

/* ---- header values ---- */

int h2_timeout_parse(const char *s, size_t len, int64_t *ns)
{
    if (len < 2 || len > 9)
        return -1;
    int64_t unit;
    switch (s[len - 1]) {
    case 'H':
        unit = 3600LL * 1000000000LL;
        break;
    case 'M':
        unit = 60LL * 1000000000LL;
        break;
    case 'S':
        unit = 1000000000LL;
        break;
    case 'm':
        unit = 1000000LL;
        break;
    case 'u':
        unit = 1000LL;
        break;
    case 'n':
        unit = 1;
        break;
    default:
        return -1;
    }
    int64_t v = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *ns = v > INT64_MAX / unit ? INT64_MAX : v * unit;
    return 0;
}

char *h2_grpc_message_encode(const char *msg)
{
    static const char hex[] = "0123456789ABCDEF";
    static const unsigned char replacement[] = {0xEF, 0xBF, 0xBD}; /* U+FFFD */
    const unsigned char *in = (const unsigned char *)msg;
    size_t n = strlen(msg);
    char *out = xmalloc(H2_GRPC_MESSAGE_MAX + 1);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = text_utf8_char_len(in + i, n - i);
        const unsigned char *ch = len ? in + i : replacement;
        size_t ch_len = len ? len : sizeof(replacement);
        bool plain = ch_len == 1 && ch[0] >= 0x20 && ch[0] <= 0x7E && ch[0] != '%';
        /* Cut before the character that does not fit, not inside it. */
        if (o + (plain ? 1 : 3 * ch_len) > H2_GRPC_MESSAGE_MAX)
            break;
        if (plain) {
            out[o++] = (char)ch[0];
        } else {
            for (size_t k = 0; k < ch_len; k++) {
                out[o++] = '%';
                out[o++] = hex[ch[k] >> 4];
                out[o++] = hex[ch[k] & 0xF];
            }
        }
        i += len ? len : 1;
    }
    out[o] = '\0';
    return out;
}
