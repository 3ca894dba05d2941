/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Base64 (RFC 4648): the standard alphabet with '=' padding, and the URL
 * alphabet ('-', '_') without padding, as used in URLs and tokens.
 */
#ifndef TINYCRI_CORE_BASE64_H
#define TINYCRI_CORE_BASE64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Encoded length (without the NUL) of n bytes. */
size_t base64_encoded_len(size_t n, bool url);

/*
 * Encode n bytes into out, which holds base64_encoded_len(n, url) + 1 bytes;
 * NUL-terminated. Returns the length written.
 */
size_t base64_encode_to(const void *data, size_t n, bool url, char *out);

/* Encode n bytes into a new NUL-terminated string (owned). */
char *base64_encode(const void *data, size_t n, bool url);

/*
 * Decode len characters of s into out (at least len / 4 * 3 + 3 bytes).
 * The standard alphabet accepts '=' padding at the end only; the URL
 * alphabet takes none. Returns the decoded length, or -1 for a character
 * outside the alphabet, misplaced padding or a truncated quantum.
 */
long base64_decode(const char *s, size_t len, bool url, uint8_t *out);

#endif
