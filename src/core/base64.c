/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Base64 behind base64.h: table-driven, no allocation but the caller's.
 */
#include "autoconf.h"

#include <string.h>

#include "core/base64.h"
#include "core/util.h"

static const char std_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t base64_encoded_len(size_t n, bool url)
{
    if (!url)
        return (n + 2) / 3 * 4;
    return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

size_t base64_encode_to(const void *data, size_t n, bool url, char *out)
{
    const uint8_t *p = data;
    const char *chars = url ? url_chars : std_chars;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[o++] = chars[(v >> 18) & 63];
        out[o++] = chars[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = chars[(v >> 6) & 63];
        else if (!url)
            out[o++] = '=';
        if (i + 2 < n)
            out[o++] = chars[v & 63];
        else if (!url)
            out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

char *base64_encode(const void *data, size_t n, bool url)
{
    char *out = xmalloc(base64_encoded_len(n, url) + 1);
    base64_encode_to(data, n, url, out);
    return out;
}

static int value_of(char c, bool url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

long base64_decode(const char *s, size_t len, bool url, uint8_t *out)
{
    size_t pad = 0;
    if (!url) {
        if (len % 4)
            return -1;
        while (pad < 2 && len > pad && s[len - 1 - pad] == '=')
            pad++;
    } else if (len % 4 == 1) {
        return -1;
    }
    size_t n = len - pad, o = 0;
    uint32_t v = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int d = value_of(s[i], url);
        if (d < 0)
            return -1;
        v = (v << 6) | (uint32_t)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(v >> bits);
        }
    }
    /* Bits left over must be zero (a canonical encoding). */
    if (bits && (v & ((1u << bits) - 1)))
        return -1;
    return (long)o;
}
