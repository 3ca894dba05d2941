/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Standard base64 (RFC 4648 section 4: "A-Za-z0-9+/", "=" padding), the form
 * records keep packed protobuf in and Docker's "auth" credentials come in.
 */
#ifndef TINYCRI_CORE_BASE64_H
#define TINYCRI_CORE_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* The base64 text of len bytes, padded (owned, NUL-terminated). */
char *base64_encode(const void *data, size_t len);

/*
 * Decode strictly, as Go's base64.StdEncoding (what containerd uses for
 * "auth") does and more: the length is a multiple of 4, "=" is only the last
 * one or two characters, every other character is in the alphabet, and the
 * bits a padded group leaves unused are 0 (the canonical encoding). Returns
 * the bytes (owned, followed by a NUL that *len does not count; they may hold
 * NULs themselves) or NULL when s is not such text.
 */
uint8_t *base64_decode(const char *s, size_t *len);

#endif
