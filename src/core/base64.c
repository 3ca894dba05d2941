/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Implementation of base64.h.
 */
#include "autoconf.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "core/util.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *base64_encode(const void *data, size_t len)
{
    const uint8_t *in = data;
    char *out = xmalloc((len + 2) / 3 * 4 + 1);
    char *o = out;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        *o++ = alphabet[(v >> 18) & 63];
        *o++ = alphabet[(v >> 12) & 63];
        *o++ = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
        *o++ = i + 2 < len ? alphabet[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

/* The 6-bit value of an alphabet character, -1 for anything else (NUL and '=' included). */
static int value_of(char ch)
{
    const char *p = ch ? strchr(alphabet, ch) : NULL;
    return p ? (int)(p - alphabet) : -1;
}

/* Decoded text may be a secret ("user:password"): no copy of it is left in freed memory. */
static void *fail(uint8_t *out, size_t size)
{
    explicit_bzero(out, size);
    free(out);
    return NULL;
}

uint8_t *base64_decode(const char *s, size_t *len)
{
    size_t n = strlen(s);
    if (n % 4)
        return NULL;
    size_t pad = n >= 1 && s[n - 1] == '=' ? (n >= 2 && s[n - 2] == '=' ? 2 : 1) : 0;
    size_t size = n / 4 * 3 + 1;
    uint8_t *out = xmalloc(size);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        bool last = i + 4 == n;
        size_t chars = last ? 4 - pad : 4;
        uint32_t v = 0;
        for (size_t j = 0; j < 4; j++) {
            int c = j < chars ? value_of(s[i + j]) : 0;
            if (c < 0)
                return fail(out, size);
            v = v << 6 | (uint32_t)c;
        }
        /* One '=' leaves 2 bits unused, two leave 4: a canonical encoder writes zeros. */
        if ((chars == 3 && (v & 0xff)) || (chars == 2 && (v & 0xffff)))
            return fail(out, size);
        out[o++] = (uint8_t)(v >> 16);
        if (chars > 2)
            out[o++] = (uint8_t)(v >> 8);
        if (chars > 3)
            out[o++] = (uint8_t)v;
    }
    out[o] = '\0';
    *len = o;
    return out;
}
