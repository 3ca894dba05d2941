/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Implementation of text.h.
 */
#include "autoconf.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/text.h"
#include "core/util.h"

static char *escape(const char *s, size_t n, bool cut_before, bool cut_after)
{
    char *out = xmalloc(4 * n + 2 * 3 + 1);
    char *o = out;
    if (cut_before)
        o = stpcpy(o, "...");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e || c == '\\' || c == '"')
            o += sprintf(o, "\\x%02x", c);
        else
            *o++ = (char)c;
    }
    if (cut_after)
        o = stpcpy(o, "...");
    *o = '\0';
    return out;
}

char *text_safe(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    return escape(s, n, false, s[n] != '\0');
}

char *text_safe_tail(const char *s, size_t max)
{
    size_t len = strlen(s);
    size_t n = len < max ? len : max;
    return escape(s + len - n, n, len > n, false);
}

size_t text_utf8_char_len(const unsigned char *s, size_t n)
{
    unsigned char lo = 0x80, hi = 0xBF; /* the range of the second byte */
    size_t len;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        len = 2;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        len = 3;
        lo = s[0] == 0xE0 ? 0xA0 : lo; /* overlong */
        hi = s[0] == 0xED ? 0x9F : hi; /* UTF-16 surrogates */
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        len = 4;
        lo = s[0] == 0xF0 ? 0x90 : lo; /* overlong */
        hi = s[0] == 0xF4 ? 0x8F : hi; /* past U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    }
    return len;
}

bool text_is_utf8(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = text_utf8_char_len(p + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}
