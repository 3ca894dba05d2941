/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the registry client knows about authentication, apart from the
 * fetches that use it: credentials (from the CRI's AuthConfig or the config
 * file), the cache of Bearer tokens, WWW-Authenticate challenges, and token
 * endpoint answers. Secrets are zeroed before they are freed and never
 * logged; a cached token is keyed by a hash of the credential it was issued
 * for, never the credential itself.
 */
#ifndef TINYCRI_IMAGE_REGISTRY_AUTH_H
#define TINYCRI_IMAGE_REGISTRY_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct error;
struct registry_auth;

/* Zero a secret string and free it; NULL is a no-op. */
void registry_auth_secret_free(char *s);

/* What one endpoint is offered (all owned, NULL when absent). */
struct registry_creds {
    char *username;
    char *password;
    char *identity_token; /* an OAuth2 refresh token (docker's identitytoken) */
    char *registry_token; /* sent as Bearer as it is */
};

void registry_auth_creds_clear(struct registry_creds *c);
bool registry_auth_creds_basic(const struct registry_creds *c);
bool registry_auth_creds_any(const struct registry_creds *c);

/* Does the CRI's AuthConfig carry anything? (NULL: no) */
bool registry_auth_is_set(const struct registry_auth *a);

/*
 * Every credential ends up in a header or a request body: refuse a CR, LF or
 * other control byte (0x00-0x1f, 0x7f) in any of them, the user and password
 * inside a base64 auth included, with INVALID_ARGUMENT naming the field
 * ("auth.registry_token"), never its value. A malformed base64 auth is
 * INVALID_ARGUMENT too. a may be NULL.
 */
int registry_auth_check(const struct registry_auth *a, struct error **err);

/*
 * The credentials of an AuthConfig: username/password, or "auth" (base64 of
 * "user:password", strict), and the tokens. INVALID_ARGUMENT for a bad "auth"
 * or a credential that registry_auth_check() refuses.
 */
int registry_auth_creds_from(struct registry_creds *c, const struct registry_auth *a,
                             struct error **err);

/* ---- the token cache ---- */

struct registry_token;
struct registry_tokens {
    TAILQ_HEAD(registry_token_list, registry_token) list; /* newest first */
    size_t n;
};

void registry_auth_tokens_init(struct registry_tokens *t);
void registry_auth_tokens_clear(struct registry_tokens *t);

/*
 * The cache key of a token for a scope on an authority, issued for creds:
 * the credential identity is hashed (needs libcrypto loaded through xferlib,
 * as it is while fetches exist). Owned.
 */
char *registry_auth_token_key(const char *authority, const char *scope,
                              const struct registry_creds *creds);
/* The token cached under key (borrowed until the cache changes), or NULL; expired ones go. */
const char *registry_auth_tokens_lookup(struct registry_tokens *t, const char *key);
void registry_auth_tokens_drop(struct registry_tokens *t, const char *key);
/* Keep value under key for 9/10 of lifetime_s; the oldest goes when the cache is full. */
void registry_auth_tokens_store(struct registry_tokens *t, const char *key, const char *value,
                                int64_t lifetime_s);

/* ---- WWW-Authenticate ---- */

struct registry_challenge {
    bool basic;
    bool bearer;
    char *realm;   /* of the first Bearer challenge */
    char *service; /* may stay NULL */
};

/*
 * Add what one header value says (it may hold several challenges:
 * `Basic realm="x", Bearer realm="https://auth/token",service="reg"`).
 */
void registry_auth_challenge_parse(const char *header, struct registry_challenge *c);
void registry_auth_challenge_clear(struct registry_challenge *c);

/*
 * A token endpoint's JSON answer: "token" (or "access_token"), visible ASCII
 * and at most max_len bytes, and "expires_in" (default_lifetime_s when absent
 * or not positive, REGISTRY_TOKEN_MAX_LIFETIME_S at most: the cache counts in
 * nanoseconds). 0 with *token (owned) set, or -1 when it holds no usable token.
 */
#define REGISTRY_TOKEN_MAX_LIFETIME_S (24 * 3600)
int registry_auth_token_parse(const char *body, size_t len, size_t max_len,
                              int64_t default_lifetime_s, char **token, int64_t *lifetime_s);

#endif
