/* SPDX-License-Identifier: Apache-2.0 */
/*
 * UTF-8 as RFC 3629 has it: no overlong forms, no UTF-16 surrogates, nothing
 * past U+10FFFF. What proto3 requires of string fields, and what an error
 * message or a JSON document may carry.
 */
#ifndef TINYCRI_CORE_UTF8_H
#define TINYCRI_CORE_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length (1-4) of the well-formed sequence at s, which has n > 0 bytes left; 0 when none. */
size_t utf8_char_len(const unsigned char *s, size_t n);

/* Are the len bytes at s well-formed UTF-8 (NUL bytes count as characters)? */
bool utf8_is_valid(const char *s, size_t len);

#endif
