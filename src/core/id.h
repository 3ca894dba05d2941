/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Object ids: 64 lowercase hex digits (256 random bits), the form sandbox
 * and container ids take and sha256 digests are written in.
 */
#ifndef TINYCRI_CORE_ID_H
#define TINYCRI_CORE_ID_H

#include <stdbool.h>
#include <stddef.h>

struct error;

#define ID_LEN 64

/*
 * A new random id into out (ID_LEN hex digits and a NUL), from getrandom(2).
 * Errors: INTERNAL when the kernel refuses (the caller's operation fails;
 * the daemon goes on).
 */
int id_new(char out[ID_LEN + 1], struct error **err);

/* len random bytes into buf, from getrandom(2) (what id_new() draws on); errors as id_new(). */
int id_random(void *buf, size_t len, struct error **err);

/* Is s exactly ID_LEN lowercase hex digits? (false for NULL) */
bool id_is_valid(const char *s);

/* Are the n bytes at s lowercase hex digits? (s may go on after them) */
bool id_is_hex(const char *s, size_t n);

#endif
