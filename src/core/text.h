/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Outside text (tar entry names, archive and registry messages, a child's
 * stderr) made fit for an error message or a log line.
 */
#ifndef TINYCRI_CORE_TEXT_H
#define TINYCRI_CORE_TEXT_H

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

#endif
