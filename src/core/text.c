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
