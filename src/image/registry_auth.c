/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Implementation of registry_auth.h.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "core/base64.h"
#include "core/error.h"
#include "core/util.h"
#include "image/registry.h"
#include "image/registry_auth.h"
#include "image/xferlib.h"

#define TOKEN_CACHE_MAX 64
#define NS_PER_S 1000000000LL

/* ---- credentials ---- */

void registry_auth_secret_free(char *s)
{
    if (!s)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}

void registry_auth_creds_clear(struct registry_creds *c)
{
    registry_auth_secret_free(c->username);
    registry_auth_secret_free(c->password);
    registry_auth_secret_free(c->identity_token);
    registry_auth_secret_free(c->registry_token);
    memset(c, 0, sizeof(*c));
}

bool registry_auth_creds_basic(const struct registry_creds *c)
{
    return c->username && c->password;
}

bool registry_auth_creds_any(const struct registry_creds *c)
{
    return registry_auth_creds_basic(c) || c->identity_token || c->registry_token;
}

bool registry_auth_is_set(const struct registry_auth *a)
{
    return a &&
           ((a->username && *a->username) || (a->auth && *a->auth) ||
            (a->identity_token && *a->identity_token) || (a->registry_token && *a->registry_token));
}

/* Control bytes would end a header line (CR, LF) or corrupt one. */
static int check_credential(const char *field, const char *value, size_t len, struct error **err)
{
    for (size_t i = 0; value && i < len; i++) {
        if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "%s has a control character (such as CR or LF)", field);
    }
    return 0;
}

static int check_credential_str(const char *field, const char *value, struct error **err)
{
    return check_credential(field, value, value ? strlen(value) : 0, err);
}

int registry_auth_check(const struct registry_auth *a, struct error **err)
{
    if (!a)
        return 0;
    if (check_credential_str("auth.username", a->username, err) < 0 ||
        check_credential_str("auth.password", a->password, err) < 0 ||
        check_credential_str("auth.identity_token", a->identity_token, err) < 0 ||
        check_credential_str("auth.registry_token", a->registry_token, err) < 0)
        return -1;
    if (!a->auth || !*a->auth)
        return 0;
    size_t len = 0;
    char *plain = (char *)base64_decode(a->auth, &len);
    int rc =
        plain && memchr(plain, ':', len)
            ? check_credential("auth.auth", plain, len, err)
            : error_set(err, GRPC_INVALID_ARGUMENT, 0, "auth is not base64 of \"user:password\"");
    if (plain)
        explicit_bzero(plain, len);
    free(plain);
    return rc;
}

int registry_auth_creds_from(struct registry_creds *c, const struct registry_auth *a,
                             struct error **err)
{
    if (registry_auth_check(a, err) < 0)
        return -1;
    c->registry_token = xstrdup_nonempty(a->registry_token);
    c->identity_token = xstrdup_nonempty(a->identity_token);
    if (a->username && *a->username) {
        c->username = xstrdup(a->username);
        c->password = xstrdup(a->password ? a->password : "");
    } else if (a->auth && *a->auth) {
        size_t len = 0;
        char *plain = (char *)base64_decode(a->auth, &len);
        /* A NUL inside would cut the password short: refused with the rest. */
        char *colon = plain && strlen(plain) == len ? strchr(plain, ':') : NULL;
        if (!colon) {
            if (plain)
                explicit_bzero(plain, len);
            free(plain);
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "auth is not base64 of \"user:password\"");
        }
        c->username = xstrndup(plain, (size_t)(colon - plain));
        c->password = xstrdup(colon + 1);
        registry_auth_secret_free(plain);
    }
    return 0;
}

/* ---- the token cache ---- */

struct registry_token {
    TAILQ_ENTRY(registry_token) link;
    char *key; /* authority \n scope \n credential identity */
    char *value;
    int64_t expires_ns; /* monotonic */
};

void registry_auth_tokens_init(struct registry_tokens *t)
{
    TAILQ_INIT(&t->list);
    t->n = 0;
}

static void token_remove(struct registry_tokens *t, struct registry_token *tok)
{
    TAILQ_REMOVE(&t->list, tok, link);
    free(tok->key);
    registry_auth_secret_free(tok->value);
    free(tok);
    t->n--;
}

void registry_auth_tokens_clear(struct registry_tokens *t)
{
    while (!TAILQ_EMPTY(&t->list))
        token_remove(t, TAILQ_FIRST(&t->list));
}

/* Libcrypto is loaded while fetches exist (the multi's xferlib reference). */
static void sha256_hex(const char *s, char out[XFERLIB_SHA256_HEX_LEN + 1])
{
    int rc = xferlib_sha256_hex(s, strlen(s), out, NULL);
    assert_state(rc == 0);
}

char *registry_auth_token_key(const char *authority, const char *scope,
                              const struct registry_creds *creds)
{
    char hex[XFERLIB_SHA256_HEX_LEN + 1];
    if (creds->identity_token) {
        sha256_hex(creds->identity_token, hex);
        return xasprintf("%s\n%s\nrefresh:%s", authority, scope, hex);
    }
    if (registry_auth_creds_basic(creds)) {
        sha256_hex(creds->password, hex);
        return xasprintf("%s\n%s\nbasic:%s:%s", authority, scope, creds->username, hex);
    }
    return xasprintf("%s\n%s\nanonymous", authority, scope);
}

static void tokens_prune(struct registry_tokens *t)
{
    int64_t now = now_monotonic_ns();
    for (struct registry_token *tok = TAILQ_FIRST(&t->list), *next; tok; tok = next) {
        next = TAILQ_NEXT(tok, link);
        if (tok->expires_ns <= now)
            token_remove(t, tok);
    }
}

const char *registry_auth_tokens_lookup(struct registry_tokens *t, const char *key)
{
    tokens_prune(t);
    struct registry_token *tok;
    TAILQ_FOREACH (tok, &t->list, link)
        if (strcmp(tok->key, key) == 0)
            return tok->value;
    return NULL;
}

void registry_auth_tokens_drop(struct registry_tokens *t, const char *key)
{
    struct registry_token *tok;
    TAILQ_FOREACH (tok, &t->list, link) {
        if (strcmp(tok->key, key) == 0) {
            token_remove(t, tok);
            return;
        }
    }
}

void registry_auth_tokens_store(struct registry_tokens *t, const char *key, const char *value,
                                int64_t lifetime_s)
{
    registry_auth_tokens_drop(t, key);
    tokens_prune(t);
    if (t->n >= TOKEN_CACHE_MAX) /* newest first: drop the oldest */
        token_remove(t, TAILQ_LAST(&t->list, registry_token_list));
    struct registry_token *tok = xcalloc(1, sizeof(*tok));
    tok->key = xstrdup(key);
    tok->value = xstrdup(value);
    /* Stop using a token a little before the registry does. */
    tok->expires_ns = now_monotonic_ns() + lifetime_s * NS_PER_S * 9 / 10;
    TAILQ_INSERT_HEAD(&t->list, tok, link);
    t->n++;
}

/* ---- WWW-Authenticate ---- */

void registry_auth_challenge_clear(struct registry_challenge *c)
{
    free(c->realm);
    free(c->service);
    memset(c, 0, sizeof(*c));
}

/* A token or a quoted-string (backslash escapes undone); *p moves past it. */
static char *read_value(const char **p)
{
    const char *s = *p;
    if (*s != '"') {
        size_t n = strcspn(s, " \t,");
        *p = s + n;
        return xstrndup(s, n);
    }
    s++;
    char *out = xmalloc(strlen(s) + 1);
    size_t n = 0;
    while (*s && *s != '"') {
        if (*s == '\\' && s[1])
            s++;
        out[n++] = *s++;
    }
    out[n] = '\0';
    if (*s == '"')
        s++;
    *p = s;
    return out;
}

/*
 * A token followed by '=' is a parameter of the current challenge; any other
 * token starts a new challenge.
 */
void registry_auth_challenge_parse(const char *s, struct registry_challenge *c)
{
    enum { SCHEME_NONE, SCHEME_BASIC, SCHEME_BEARER, SCHEME_OTHER } cur = SCHEME_NONE;
    bool first_bearer = false;
    const char *p = s;
    for (;;) {
        p += strspn(p, " \t,");
        if (!*p)
            return;
        size_t n = strcspn(p, " \t,=");
        if (n == 0) { /* a stray '=' */
            p++;
            continue;
        }
        const char *tok = p;
        p += n;
        const char *q = p + strspn(p, " \t");
        if (*q == '=') {
            p = q + 1;
            p += strspn(p, " \t");
            _cleanup_free_ char *value = read_value(&p);
            if (cur != SCHEME_BEARER || !first_bearer)
                continue;
            if (n == 5 && strncasecmp(tok, "realm", 5) == 0 && !c->realm)
                c->realm = steal_ptr(&value);
            else if (n == 7 && strncasecmp(tok, "service", 7) == 0 && !c->service)
                c->service = steal_ptr(&value);
            continue;
        }
        if (n == 5 && strncasecmp(tok, "basic", 5) == 0) {
            cur = SCHEME_BASIC;
            c->basic = true;
        } else if (n == 6 && strncasecmp(tok, "bearer", 6) == 0) {
            cur = SCHEME_BEARER;
            first_bearer = !c->bearer;
            c->bearer = true;
        } else {
            cur = SCHEME_OTHER;
        }
    }
}

/* ---- token endpoint answers ---- */

int registry_auth_token_parse(const char *body, size_t len, size_t max_len,
                              int64_t default_lifetime_s, char **token_out, int64_t *lifetime_s)
{
    json_error_t jerr;
    _cleanup_json_ json_t *root = json_loadb(body ? body : "", len, 0, &jerr);
    const char *token = json_string_value(json_object_get(root, "token"));
    if (!token || !*token)
        token = json_string_value(json_object_get(root, "access_token"));
    bool ok = token && *token && strlen(token) <= max_len;
    /* It goes into a header: visible ASCII only. */
    for (const char *p = token; ok && *p; p++)
        if (*p < 0x21 || *p > 0x7e)
            ok = false;
    if (!ok)
        return -1;
    json_t *exp = json_object_get(root, "expires_in");
    int64_t lifetime = json_is_integer(exp) ? (int64_t)json_integer_value(exp) : 0;
    /* A token server's "expires_in": 9e15 overflowed the expiry in nanoseconds. */
    if (lifetime > REGISTRY_TOKEN_MAX_LIFETIME_S)
        lifetime = REGISTRY_TOKEN_MAX_LIFETIME_S;
    *lifetime_s = lifetime > 0 ? lifetime : default_lifetime_s;
    *token_out = xstrdup(token);
    return 0;
}
