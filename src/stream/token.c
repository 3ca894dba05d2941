/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The request cache behind token.h: a FIFO (every entry lives as long, so
 * the oldest expires first), searched linearly: it holds at most a few
 * thousand entries and is touched once per RPC and once per URL.
 */
#include "autoconf.h"

#include <string.h>
#include <sys/queue.h>

#include "core/base64.h"
#include "core/error.h"
#include "core/id.h"
#include "core/util.h"
#include "stream/token.h"

struct entry {
    TAILQ_ENTRY(entry) link; /* oldest first */
    char token[TOKEN_LEN + 1];
    int64_t expires_ns;
    struct stream_request *req;
};

struct token_cache {
    TAILQ_HEAD(, entry) entries;
    size_t n, max;
    int64_t ttl_ns;
};

void stream_request_free(struct stream_request *r)
{
    if (!r)
        return;
    free(r->container_id);
    for (size_t i = 0; i < r->n_cmd; i++)
        free(r->cmd[i]);
    free(r->cmd);
    free(r->sandbox_id);
    free(r->ports);
    free(r);
}

const char *stream_kind_name(enum stream_kind k)
{
    switch (k) {
    case STREAM_EXEC:
        return "exec";
    case STREAM_ATTACH:
        return "attach";
    case STREAM_PORTFORWARD:
        return "portforward";
    }
    return "?";
}

struct token_cache *token_cache_new(size_t max, int64_t ttl_ms)
{
    struct token_cache *c = xcalloc(1, sizeof(*c));
    TAILQ_INIT(&c->entries);
    c->max = max;
    c->ttl_ns = ttl_ms * 1000000;
    return c;
}

void token_cache_set_ttl(struct token_cache *c, int64_t ttl_ms)
{
    c->ttl_ns = ttl_ms * 1000000;
}

static void entry_free(struct entry *e)
{
    stream_request_free(e->req);
    explicit_bzero(e->token, sizeof(e->token));
    free(e);
}

void token_cache_free(struct token_cache *c)
{
    if (!c)
        return;
    struct entry *e;
    while ((e = TAILQ_FIRST(&c->entries))) {
        TAILQ_REMOVE(&c->entries, e, link);
        entry_free(e);
    }
    free(c);
}

static void unlink_entry(struct token_cache *c, struct entry *e)
{
    TAILQ_REMOVE(&c->entries, e, link);
    c->n--;
}

static void expire(struct token_cache *c)
{
    int64_t now = now_monotonic_ns();
    struct entry *e;
    while ((e = TAILQ_FIRST(&c->entries)) && e->expires_ns <= now) {
        unlink_entry(c, e);
        entry_free(e);
    }
}

/* 8 characters of base64url: the standard alphabet with '-' and '_' for '+' and '/'. */
static int random_token(char *out, struct error **err)
{
    uint8_t raw[TOKEN_LEN / 4 * 3];
    if (id_random(raw, sizeof(raw), err) < 0)
        return error_prefix(err, "streaming token");
    _cleanup_free_ char *text = base64_encode(raw, sizeof(raw));
    for (size_t i = 0; i < TOKEN_LEN; i++)
        out[i] = text[i] == '+' ? '-' : text[i] == '/' ? '_' : text[i];
    out[TOKEN_LEN] = '\0';
    return 0;
}

static struct entry *find(struct token_cache *c, const char *token)
{
    struct entry *e;
    TAILQ_FOREACH (e, &c->entries, link) {
        if (strcmp(e->token, token) == 0)
            return e;
    }
    return NULL;
}

int token_cache_insert(struct token_cache *c, struct stream_request *req, char *token,
                       struct error **err)
{
    expire(c);
    if (c->n >= c->max) {
        stream_request_free(req);
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0,
                         "maximum number of in-flight streaming requests (%zu) exceeded", c->max);
    }
    struct entry *e = xcalloc(1, sizeof(*e));
    do {
        if (random_token(e->token, err) < 0) {
            stream_request_free(req);
            free(e);
            return -1;
        }
    } while (find(c, e->token));
    e->expires_ns = now_monotonic_ns() + c->ttl_ns;
    e->req = req;
    TAILQ_INSERT_TAIL(&c->entries, e, link);
    c->n++;
    memcpy(token, e->token, TOKEN_LEN + 1);
    return 0;
}

struct stream_request *token_cache_take(struct token_cache *c, const char *token)
{
    expire(c);
    if (!token || strlen(token) != TOKEN_LEN)
        return NULL;
    struct entry *e = find(c, token);
    if (!e)
        return NULL;
    unlink_entry(c, e);
    /* Checked again: after a lower ttl, a later entry may expire before an earlier one. */
    struct stream_request *req = e->expires_ns > now_monotonic_ns() ? steal_ptr(&e->req) : NULL;
    entry_free(e);
    return req;
}

size_t token_cache_count(struct token_cache *c)
{
    expire(c);
    return c->n;
}
