/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small, bounded HTTP/1.1 request-head parser for the streaming server's
 * upgrade requests: the request line and the header fields, nothing else
 * (no body: an upgrade request has none, and the connection speaks another
 * protocol right after the head).
 *
 * The head is at most HTTP_HEAD_MAX bytes with at most HTTP_HEADERS_MAX
 * fields; beyond either the parser fails with 431. A malformed head fails
 * with 400, an HTTP version other than 1.x with 505. Parsing is incremental:
 * feed bytes as they arrive until the head is complete.
 */
#ifndef TINYCRI_STREAM_HTTP_H
#define TINYCRI_STREAM_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/util.h"

#define HTTP_HEAD_MAX (16 * 1024)
#define HTTP_HEADERS_MAX 64

struct http_field {
    const char *name;  /* as sent; compare case-insensitively */
    const char *value; /* leading and trailing blanks removed */
};

struct http_request {
    struct buf raw; /* the head as received (owned); the strings below point into it */
    bool done;
    const char *method;
    const char *target;
    int minor_version; /* HTTP/1.<minor> */
    struct http_field fields[HTTP_HEADERS_MAX];
    size_t n_fields;
};

void http_request_init(struct http_request *r);
void http_request_clear(struct http_request *r);

/*
 * Feed n bytes. Returns how many were used (the rest follow the head and
 * belong to whatever comes next) and sets r->done once the head is complete;
 * or -1 with *status set to the HTTP status to answer (400, 431, 505).
 */
ssize_t http_request_feed(struct http_request *r, const char *data, size_t n, int *status);

/* The first field named name (case-insensitive), or NULL. */
const char *http_request_field(const struct http_request *r, const char *name);

/* Does any field named name hold tok in its comma-separated list (case-insensitive)? */
bool http_request_has_token(const struct http_request *r, const char *name, const char *tok);

/*
 * The i-th item of the comma-separated lists of every field named name, in
 * order (blanks trimmed, empty items skipped), copied into out (size bytes,
 * NUL-terminated, cut if longer). Returns false past the last item.
 */
bool http_request_token_at(const struct http_request *r, const char *name, size_t i, char *out,
                           size_t size);

/* The reason phrase of a status code this server sends ("Not Found"). */
const char *http_reason(int status);

#endif
