/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Outside text (tar entry names, archive and registry messages, a child's
 * stderr, request strings, the config file): whether it is well-formed UTF-8,
 * and a copy made fit for an error message or a log line.
 */
#ifndef TINYCRI_CORE_TEXT_H
#define TINYCRI_CORE_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* The max that messages use unless they have a reason for another. */
#define TEXT_SAFE_MAX 256

/*
 * A copy of s (owned) that is printable ASCII on one line: every byte
 * outside 0x20-0x7e, and '\' and '"' (so quoting stays unambiguous), becomes
 * "\xNN". Only the first max bytes of s are kept; when s is longer, "..."
 * follows them. The result is at most 4 * max + 3 bytes long.
 */
char *text_safe(const char *s, size_t max);

/* The same for the last max bytes of s, with "..." before them when s is longer. */
char *text_safe_tail(const char *s, size_t max);

/*
 * UTF-8 as RFC 3629 has it (no overlong forms, no UTF-16 surrogates, nothing
 * past U+10FFFF): what proto3 requires of string fields, and what an error
 * message or a JSON document may carry.
 */

/* Length (1-4) of the well-formed sequence at s, which has n > 0 bytes left; 0 when none. */
size_t text_utf8_char_len(const unsigned char *s, size_t n);

/* Are the len bytes at s well-formed UTF-8 (NUL bytes count as characters)? */
bool text_is_utf8(const char *s, size_t len);

#endif
