/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one-shot request cache behind the streaming URLs. Exec, Attach and
 * PortForward store their (validated) request here and answer with a URL
 * holding the token; the streaming server takes the request out when a
 * client opens the URL. A token is 8 characters of base64url over 6 random
 * bytes, valid once, for ttl_ms; at most `max` wait at once.
 */
#ifndef TINYCRI_STREAM_TOKEN_H
#define TINYCRI_STREAM_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct error;

#define TOKEN_LEN 8

enum stream_kind {
    STREAM_EXEC,
    STREAM_ATTACH,
    STREAM_PORTFORWARD,
};

/* A cached CRI request: what the session may do, whatever the URL's query says. */
struct stream_request {
    enum stream_kind kind;
    char *container_id; /* exec, attach */
    char **cmd;         /* exec */
    size_t n_cmd;
    bool tty, in, out, err; /* exec, attach */
    char *sandbox_id;       /* portforward */
    int32_t *ports;         /* portforward (may be empty: any port, SPDY only) */
    size_t n_ports;
};

void stream_request_free(struct stream_request *r);
const char *stream_kind_name(enum stream_kind k); /* "exec", "attach", "portforward" */

struct token_cache;

struct token_cache *token_cache_new(size_t max, int64_t ttl_ms);
void token_cache_free(struct token_cache *c);
void token_cache_set_ttl(struct token_cache *c, int64_t ttl_ms);

/*
 * Store req (taken, also on failure) and write its token into token
 * (TOKEN_LEN + 1 bytes). Expired entries go first; RESOURCE_EXHAUSTED when
 * `max` live requests are waiting, INTERNAL when getrandom(2) fails.
 */
int token_cache_insert(struct token_cache *c, struct stream_request *req, char *token,
                       struct error **err);

/* Take the request of a live token out (owned), or NULL: unknown, used or expired. */
struct stream_request *token_cache_take(struct token_cache *c, const char *token);

/* Live requests waiting (expired ones are dropped first). */
size_t token_cache_count(struct token_cache *c);

#endif
