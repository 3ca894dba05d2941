/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The registry client behind registry.h: one libcurl multi handle driven by
 * the daemon's libevent loop through the multi-socket API (a libevent event
 * per socket curl asks us to watch, one loop timer for curl's timeouts).
 * Nothing here blocks: DNS runs in libcurl's resolver thread, and every
 * transfer is an easy handle in the multi.
 *
 * libcurl is not linked: xferlib loads it. The multi handle exists only
 * while fetches do. The first fetch loads libcurl and creates it; once the
 * last fetch is gone it is cleaned up and libcurl released (xferlib unloads
 * it after a while). The token cache and the host settings are ours and
 * stay; registry_new() does not touch libcurl, so mirror URLs are parsed
 * here.
 *
 * Each fetch is a small state machine. It walks a list of endpoints (the
 * configured mirrors in order, then the origin), and on each endpoint it
 * answers at most one auth challenge (Bearer through the token endpoint, or
 * Basic), retries 5xx, 429 and broken connections with exponential backoff,
 * and resumes a broken blob with a Range request so that the caller's data
 * stream never repeats a byte. Blob fetches beyond the configured limit wait
 * in FIFO order. Proxies come from libcurl's own handling of http_proxy,
 * https_proxy and no_proxy (we never set CURLOPT_PROXY).
 *
 * libcurl callbacks only record what happened: finished transfers are
 * collected after curl_multi_socket_action() returns, and only then are easy
 * handles removed, fetches freed and the caller's done callbacks run.
 * Credentials, tokens and Authorization headers are never logged.
 */
#include "autoconf.h"

#include <ctype.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>

#include "core/base64.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/text.h"
#include "core/util.h"
#include "image/ref.h"
#include "image/curl_glue.h"
#include "image/registry.h"
#include "image/registry_auth.h"
#include "image/registry_hosts.h"
#include "image/xferlib.h"

/* Failed attempts in a row on one endpoint before it is given up (progress resets the count). */
#define REGISTRY_RETRY_ATTEMPTS 5
/* Attempts over a fetch's whole life, progress or not, so a dribbling server cannot loop us. */
#define REGISTRY_RETRY_TOTAL_MAX 20
/* Backoff before retry n (1-based): BASE << (n - 1), at most MAX. */
#define REGISTRY_BACKOFF_BASE_MS 200
#define REGISTRY_BACKOFF_MAX_MS 5000
/* A larger Retry-After is cut down to this. */
#define REGISTRY_RETRY_AFTER_MAX_MS 10000
#define REGISTRY_CONNECT_TIMEOUT_S 30L
/* A transfer slower than 1 byte/s for this long is aborted and retried. */
#define REGISTRY_LOW_SPEED_TIME_S 30L
#define REGISTRY_MAX_REDIRS 5L
#define REGISTRY_DEFAULT_DOWNLOADS 3

/* Caps on what the outside fills. */
#define TOKEN_BODY_MAX ((size_t)64 * 1024)
#define ERROR_BODY_MAX ((size_t)16 * 1024)
#define HEADER_VALUE_MAX 256
#define AUTH_HEADER_MAX 4096
#define AUTH_HEADERS_MAX 4
#define TOKEN_MAX_LEN 16384
#define ERROR_DETAIL_MAX 200

#define TOKEN_DEFAULT_LIFETIME_S 60
#define MAX_ENDPOINTS (CONFIG_MAX_MIRRORS + 1)

#define MANIFEST_ACCEPT                                                                            \
    "Accept: application/vnd.oci.image.index.v1+json, "                                            \
    "application/vnd.docker.distribution.manifest.list.v2+json, "                                  \
    "application/vnd.oci.image.manifest.v1+json, "                                                 \
    "application/vnd.docker.distribution.manifest.v2+json, "                                       \
    "application/vnd.docker.distribution.manifest.v1+prettyjws"

#ifdef CURL_WRITEFUNC_ERROR
#define WRITE_ABORT CURL_WRITEFUNC_ERROR
#else
#define WRITE_ABORT 0
#endif

static void curl_strp(char **p)
{
    xcurl.free(*p);
}
#define _cleanup_curl_str_ __attribute__((cleanup(curl_strp)))

static void curl_urlp(CURLU **u)
{
    if (*u)
        xcurl.url_cleanup(*u);
}
#define _cleanup_curl_url_ __attribute__((cleanup(curl_urlp)))

struct registry {
    struct curl_glue curl;       /* the multi: see multi_idle() */
    struct loop_timer *idle;     /* cleans the multi up after REGISTRY_MULTI_IDLE_MS unused */
    struct registry_hosts hosts; /* [registry.<host>] sections */
    unsigned max_downloads;
    unsigned active_blobs;
    /* Every fetch not yet freed, oldest first; the QUEUED ones form the FIFO. */
    TAILQ_HEAD(, registry_fetch) fetches;
    uint64_t next_id;
    int cb_depth; /* > 0 while a caller's done callback runs */
    bool cancels_pending;
    struct registry_tokens tokens;
};

struct endpoint {
    char *base;      /* scheme://authority[/prefix] */
    char *authority; /* host[:port]: for messages, logs and the token cache */
    bool is_mirror;
    bool plain_http;
    bool tls_insecure;   /* from the host's insecure setting */
    const char *ca_file; /* borrowed from r->hosts */
    struct registry_creds creds;
};

enum fetch_kind {
    FETCH_MANIFEST,
    FETCH_BLOB,
};

enum fetch_state {
    FETCH_QUEUED,    /* waits to start: for a blob slot, or for libcurl to return */
    FETCH_RUNNING,   /* an easy handle is in the multi (the resource or a token request) */
    FETCH_BACKOFF,   /* waits for f->timer before the next attempt */
    FETCH_CANCELLED, /* cancelled inside libcurl; removed and freed once libcurl returns */
    FETCH_FINISHING, /* its done callback runs; freed when that returns */
};

/*
 * Authentication on the current endpoint: one state, never parallel flags.
 * Every new endpoint starts in NONE; a 401 in NONE or CACHED answers the
 * challenge (CHALLENGED while the token endpoint is asked, then TOKEN, or
 * BASIC), and a 401 in TOKEN or BASIC is final.
 */
enum fetch_auth {
    FETCH_AUTH_NONE,       /* no credentials sent yet (the next request may pick a token) */
    FETCH_AUTH_CACHED,     /* a cached token sent: a 401 drops it and answers the challenge */
    FETCH_AUTH_CHALLENGED, /* a Bearer challenge is being answered: the token request runs */
    FETCH_AUTH_TOKEN,      /* a fresh token (or the caller's registry token) sent */
    FETCH_AUTH_BASIC,      /* Basic credentials sent, in answer to a challenge */
};

enum req_kind {
    REQ_RESOURCE, /* the manifest or blob */
    REQ_TOKEN,    /* the token endpoint of a Bearer challenge */
};

enum body_sink {
    SINK_NONE,
    SINK_BUF,   /* manifest or token body, capped */
    SINK_DATA,  /* blob bytes to the caller */
    SINK_ERROR, /* error body, kept for the message, capped */
};

/* What the header callback kept from the current response (the last one after redirects). */
struct response {
    char content_type[HEADER_VALUE_MAX];
    char digest[HEADER_VALUE_MAX];
    char content_range[HEADER_VALUE_MAX];
    char retry_after[HEADER_VALUE_MAX];
    char *www_auth[AUTH_HEADERS_MAX];
    size_t n_www_auth;
};

struct registry_fetch {
    struct registry *r;
    TAILQ_ENTRY(registry_fetch) link; /* r->fetches */
    uint64_t id;
    enum fetch_kind kind;
    enum fetch_state state;
    enum req_kind req;
    bool holds_slot;
    bool curl_finished; /* libcurl reported the transfer done; handled after it returns */
    CURLcode curl_result;

    char *what; /* "manifest docker.io/library/busybox:latest", "blob sha256:…" */
    char *path;
    char *reference; /* tag or digest */
    char *scope;
    struct endpoint eps[MAX_ENDPOINTS];
    size_t n_eps, ep;

    /* Auth on the current endpoint. */
    enum fetch_auth auth;
    char *bearer; /* the token sent in FETCH_AUTH_CACHED and FETCH_AUTH_TOKEN */
    char *realm, *service;

    /* Retries. */
    int attempts; /* failed attempts in a row on this endpoint */
    int total_attempts;
    enum req_kind retry_req;
    struct loop_timer *timer;

    /* The transfer in flight. */
    CURL *easy;
    struct curl_slist *headers;
    char errbuf[CURL_ERROR_SIZE];
    struct response resp;
    enum body_sink sink;
    bool body_started;
    bool body_overflow; /* an error body was cut short at ERROR_BODY_MAX */
    struct buf body;
    int64_t range_from;      /* first byte this attempt asked for */
    int64_t skip;            /* bytes at the start of this response the caller already has */
    int64_t attempt_bytes;   /* delivered by this attempt */
    struct error *abort_err; /* why our callback stopped the transfer */
    bool abort_final;        /* ...and that ends the fetch (no other endpoint) */

    /* Blob. */
    int64_t size, offset, delivered;

    registry_manifest_cb manifest_done;
    registry_blob_data_cb blob_data;
    registry_blob_done_cb blob_done;
    void *arg;
};

static void start_request(struct registry_fetch *f);
static void pump(struct registry *r);

/* "algorithm:encoded" as the distribution spec defines a digest. */
static bool is_digest(const char *s)
{
    const char *colon = strchr(s, ':');
    if (!colon || colon == s || strlen(s) > 256)
        return false;
    for (const char *p = s; p < colon; p++)
        if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && !strchr("+._-", *p))
            return false;
    if (!colon[1])
        return false;
    for (const char *p = colon + 1; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("=_-", *p))
            return false;
    return true;
}

static bool is_tag(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 128 || s[0] == '.' || s[0] == '-')
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-')
            return false;
    return true;
}

/* A repository path we can put in a URL as is. */
static bool is_repo_path(const char *s)
{
    if (!*s || s[0] == '/' || str_has_suffix(s, "/") || strstr(s, "//") || strstr(s, ".."))
        return false;
    for (const char *p = s; *p; p++)
        if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && !strchr("._-/", *p))
            return false;
    return true;
}

/* Parse an absolute http(s) URL: its authority (host[:port]) and whether it is https. */
static char *url_authority(const char *url, unsigned flags, bool *https, char **path)
{
    _cleanup_curl_url_ CURLU *u = xcurl.url();
    _cleanup_curl_str_ char *scheme = NULL;
    _cleanup_curl_str_ char *host = NULL;
    _cleanup_curl_str_ char *port = NULL;
    _cleanup_curl_str_ char *p = NULL;
    if (!u)
        return NULL;
    if (xcurl.url_set(u, CURLUPART_URL, url, flags) != CURLUE_OK ||
        xcurl.url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        xcurl.url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        return NULL;
    if (strcasecmp(scheme, "https") != 0 && strcasecmp(scheme, "http") != 0)
        return NULL;
    if (https)
        *https = strcasecmp(scheme, "https") == 0;
    if (path) {
        *path = NULL;
        if (xcurl.url_get(u, CURLUPART_PATH, &p, 0) == CURLUE_OK)
            *path = xstrdup(p);
    }
    if (xcurl.url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK && port)
        return xasprintf("%s:%s", host, port);
    return xstrdup(host);
}

/* The token cache key for the fetch's scope on its current endpoint (owned). */
static char *token_key(const struct registry_fetch *f)
{
    const struct endpoint *ep = &f->eps[f->ep];
    return registry_auth_token_key(ep->authority, f->scope, &ep->creds);
}

/* ---- registry error bodies ---- */

char *registry_error_detail(const char *body, size_t len, bool *denied)
{
    if (denied)
        *denied = false;
    if (len == 0)
        return xstrdup("");
    json_error_t jerr;
    _cleanup_json_ json_t *root = json_loadb(body, len, 0, &jerr);
    json_t *errors = json_object_get(root, "errors");
    json_t *first = json_array_get(errors, 0);
    if (!json_is_object(first))
        return xstrdup("");
    if (denied) {
        size_t i;
        json_t *e;
        json_array_foreach(errors, i, e)
        {
            const char *code = json_string_value(json_object_get(e, "code"));
            if (code && strcmp(code, "DENIED") == 0)
                *denied = true;
        }
    }
    const char *code = json_string_value(json_object_get(first, "code"));
    const char *message = json_string_value(json_object_get(first, "message"));
    _cleanup_free_ char *c = text_safe(code ? code : "", 64);
    _cleanup_free_ char *m = text_safe(message ? message : "", ERROR_DETAIL_MAX);
    if (!*c && !*m)
        return xstrdup("");
    return xasprintf(" (%s%s%s)", c, *c && *m ? ": " : "", m);
}

/* The detail of the error body the fetch received, if it kept one (owned). */
static char *error_detail(const struct registry_fetch *f, bool *denied)
{
    if (f->sink != SINK_ERROR)
        return registry_error_detail("", 0, denied);
    return registry_error_detail(f->body.data, f->body.len, denied);
}

/* ---- fetch lifecycle ---- */

static void response_clear(struct response *resp)
{
    for (size_t i = 0; i < resp->n_www_auth; i++)
        free(resp->www_auth[i]);
    memset(resp, 0, sizeof(*resp));
}

/* Take the easy handle out of the multi and free it (never from inside a libcurl callback). */
static void easy_release(struct registry_fetch *f)
{
    if (f->easy) {
        xcurl.multi_remove_handle(f->r->curl.multi, f->easy);
        xcurl.easy_cleanup(f->easy);
        f->easy = NULL;
    }
    xcurl.slist_free_all(f->headers);
    f->headers = NULL;
}

static void release_slot(struct registry_fetch *f)
{
    if (f->holds_slot) {
        f->holds_slot = false;
        f->r->active_blobs--;
    }
}

static void endpoint_auth_reset(struct registry_fetch *f)
{
    registry_auth_secret_free(f->bearer);
    f->bearer = NULL;
    f->auth = FETCH_AUTH_NONE;
    free(f->realm);
    free(f->service);
    f->realm = f->service = NULL;
}

static int64_t multi_idle_ms = REGISTRY_MULTI_IDLE_MS;

void registry_set_multi_idle_ms(int64_t ms)
{
    multi_idle_ms = ms < 0 ? 0 : ms;
}

static bool is_idle(const struct registry *r)
{
    return TAILQ_EMPTY(&r->fetches) && r->curl.depth == 0 && r->cb_depth == 0;
}

static void on_multi_idle(void *arg)
{
    struct registry *r = arg;
    if (is_idle(r))
        curl_glue_close(&r->curl);
}

/*
 * After the last fetch, once neither libcurl nor a caller's callback is on
 * the stack: the multi goes after multi_idle_ms more without a fetch (the
 * next fetch disarms the timer and finds its connections still open).
 */
static void multi_idle(struct registry *r)
{
    if (!is_idle(r) || !r->curl.multi)
        return;
    if (multi_idle_ms == 0)
        curl_glue_close(&r->curl);
    else
        loop_timer_arm(r->idle, multi_idle_ms);
}

static void fetch_destroy(struct registry_fetch *f)
{
    struct registry *r = f->r;
    release_slot(f);
    easy_release(f);
    TAILQ_REMOVE(&r->fetches, f, link);
    loop_timer_free(f->timer);
    endpoint_auth_reset(f);
    for (size_t i = 0; i < f->n_eps; i++) {
        free(f->eps[i].base);
        free(f->eps[i].authority);
        registry_auth_creds_clear(&f->eps[i].creds);
    }
    response_clear(&f->resp);
    buf_free(&f->body);
    error_free(f->abort_err);
    free(f->what);
    free(f->path);
    free(f->reference);
    free(f->scope);
    free(f);
    multi_idle(r);
}

/* End the fetch: run its done callback with err (taken; NULL on success), then free it. */
static void fetch_finish(struct registry_fetch *f, struct error *err)
{
    struct registry *r = f->r;
    release_slot(f);
    easy_release(f);
    f->state = FETCH_FINISHING;
    r->cb_depth++;
    if (f->kind == FETCH_MANIFEST) {
        if (err) {
            f->manifest_done(NULL, err, f->arg);
        } else {
            /* The media type without parameters ("; charset=utf-8"). */
            char *semi = strchr(f->resp.content_type, ';');
            if (semi)
                *semi = '\0';
            size_t n = strlen(f->resp.content_type);
            while (n > 0 &&
                   (f->resp.content_type[n - 1] == ' ' || f->resp.content_type[n - 1] == '\t'))
                f->resp.content_type[--n] = '\0';
            struct registry_manifest m = {
                .body = f->body.data ? (const uint8_t *)f->body.data : (const uint8_t *)"",
                .len = f->body.len,
                .media_type = f->resp.content_type,
                .digest = is_digest(f->resp.digest) ? f->resp.digest : NULL,
            };
            f->manifest_done(&m, NULL, f->arg);
        }
    } else {
        f->blob_done(err, f->arg);
    }
    r->cb_depth--;
    if (err)
        log_debug("registry fetch ended fetch=%" PRIu64 " code=%s", f->id,
                  grpc_code_name(err->grpc_code));
    error_free(err);
    fetch_destroy(f);
}

/* The current endpoint failed for good: try the next one, or end the fetch with err (taken). */
static void endpoint_failed(struct registry_fetch *f, struct error *err)
{
    if (f->ep + 1 < f->n_eps) {
        log_debug("registry endpoint failed, trying the next fetch=%" PRIu64 " host=%s code=%s",
                  f->id, f->eps[f->ep].authority, grpc_code_name(err->grpc_code));
        error_free(err);
        f->ep++;
        f->attempts = 0;
        endpoint_auth_reset(f);
        start_request(f);
        return;
    }
    fetch_finish(f, err);
}

static int start_token_request(struct registry_fetch *f, struct error **err);

static void on_backoff(void *arg)
{
    struct registry_fetch *f = arg;
    struct registry *r = f->r;
    assert_state(f->state == FETCH_BACKOFF);
    if (f->retry_req == REQ_TOKEN) {
        struct error *err = NULL;
        if (start_token_request(f, &err) < 0)
            endpoint_failed(f, err);
    } else {
        start_request(f);
    }
    pump(r);
}

/*
 * A transient failure (cause, taken): wait and try the same request again,
 * or give up on this endpoint after REGISTRY_RETRY_ATTEMPTS in a row.
 * retry_after_ms < 0: use the exponential backoff.
 */
static void retry_later(struct registry_fetch *f, struct error *cause, int64_t retry_after_ms)
{
    if (f->attempt_bytes > 0)
        f->attempts = 0; /* it made progress: count again from here */
    f->attempts++;
    f->total_attempts++;
    if (f->attempts >= REGISTRY_RETRY_ATTEMPTS || f->total_attempts >= REGISTRY_RETRY_TOTAL_MAX) {
        struct error *err = NULL;
        error_set(&err, GRPC_UNAVAILABLE, 0, "%s (gave up after %d attempts)", cause->msg,
                  f->attempts);
        error_free(cause);
        endpoint_failed(f, err);
        return;
    }
    int64_t delay = REGISTRY_BACKOFF_BASE_MS << (f->attempts - 1);
    if (delay > REGISTRY_BACKOFF_MAX_MS)
        delay = REGISTRY_BACKOFF_MAX_MS;
    if (retry_after_ms >= 0)
        delay = retry_after_ms < REGISTRY_RETRY_AFTER_MAX_MS ? retry_after_ms
                                                             : REGISTRY_RETRY_AFTER_MAX_MS;
    log_debug("registry retry fetch=%" PRIu64 " host=%s attempt=%d delay_ms=%" PRId64, f->id,
              f->eps[f->ep].authority, f->attempts + 1, delay);
    error_free(cause);
    f->retry_req = f->req;
    f->state = FETCH_BACKOFF;
    if (!f->timer)
        f->timer = loop_timer_new(on_backoff, f);
    loop_timer_arm(f->timer, delay);
}

/* ---- libcurl callbacks: they only record ---- */

static void copy_header(char *dst, const char *value, size_t len)
{
    /* Too long for any sane value of the headers we keep: treat as absent. */
    if (len >= HEADER_VALUE_MAX) {
        dst[0] = '\0';
        return;
    }
    memcpy(dst, value, len);
    dst[len] = '\0';
}

static size_t on_curl_header(char *buffer, size_t size, size_t nitems, void *arg)
{
    struct registry_fetch *f = arg;
    size_t n = size * nitems;
    if (f->state != FETCH_RUNNING)
        return 0;
    if (n >= 5 && memcmp(buffer, "HTTP/", 5) == 0) {
        /* A new response (after a redirect or a 100): forget the previous one's headers. */
        response_clear(&f->resp);
        return n;
    }
    const char *colon = memchr(buffer, ':', n);
    if (!colon)
        return n;
    size_t name_len = (size_t)(colon - buffer);
    const char *v = colon + 1;
    const char *end = buffer + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);
#define IS_HEADER(name) (name_len == sizeof(name) - 1 && strncasecmp(buffer, name, name_len) == 0)
    if (IS_HEADER("content-type"))
        copy_header(f->resp.content_type, v, vlen);
    else if (IS_HEADER("docker-content-digest"))
        copy_header(f->resp.digest, v, vlen);
    else if (IS_HEADER("content-range"))
        copy_header(f->resp.content_range, v, vlen);
    else if (IS_HEADER("retry-after"))
        copy_header(f->resp.retry_after, v, vlen);
    else if (IS_HEADER("www-authenticate") && vlen <= AUTH_HEADER_MAX &&
             f->resp.n_www_auth < AUTH_HEADERS_MAX)
        f->resp.www_auth[f->resp.n_www_auth++] = xstrndup(v, vlen);
#undef IS_HEADER
    return n;
}

static void abort_with(struct registry_fetch *f, bool final, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void abort_with(struct registry_fetch *f, bool final, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_setv(&f->abort_err, code, 0, fmt, ap);
    va_end(ap);
    f->abort_final = final;
}

/* "bytes <start>-<end>/<total>": the start, or -1. */
static int64_t content_range_start(const char *s)
{
    if (strncasecmp(s, "bytes ", 6) != 0 || !isdigit((unsigned char)s[6]))
        return -1;
    char *end = NULL;
    long long v = strtoll(s + 6, &end, 10);
    if (*end != '-' || v < 0)
        return -1;
    return v;
}

/* The first body bytes arrived: decide where they go. */
static int body_begin(struct registry_fetch *f)
{
    long status = 0;
    xcurl.easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
    f->body_started = true;
    buf_free(&f->body);
    if (status < 200 || status >= 300) {
        f->sink = SINK_ERROR;
        buf_init(&f->body, ERROR_BODY_MAX);
        return 0;
    }
    if (f->req == REQ_TOKEN) {
        f->sink = SINK_BUF;
        buf_init(&f->body, TOKEN_BODY_MAX);
        return 0;
    }
    if (f->kind == FETCH_MANIFEST) {
        curl_off_t cl = -1;
        xcurl.easy_getinfo(f->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        if (cl > REGISTRY_MANIFEST_MAX) {
            abort_with(f, true, GRPC_RESOURCE_EXHAUSTED, "%s from %s is larger than %d bytes",
                       f->what, f->eps[f->ep].authority, REGISTRY_MANIFEST_MAX);
            return -1;
        }
        f->sink = SINK_BUF;
        buf_init(&f->body, REGISTRY_MANIFEST_MAX);
        return 0;
    }
    f->sink = SINK_DATA;
    f->skip = 0;
    if (f->range_from > 0) {
        if (status == 206) {
            int64_t start = f->resp.content_range[0] ? content_range_start(f->resp.content_range)
                                                     : f->range_from;
            if (start < 0 || start > f->range_from) {
                abort_with(f, false, GRPC_UNAVAILABLE,
                           "%s: %s answered a bad Content-Range for bytes=%" PRId64 "-", f->what,
                           f->eps[f->ep].authority, f->range_from);
                return -1;
            }
            f->skip = f->range_from - start;
        } else {
            /* The server ignored the Range: the whole blob again; drop what the caller has. */
            f->skip = f->range_from;
        }
    }
    return 0;
}

static int deliver(struct registry_fetch *f, const uint8_t *data, size_t len)
{
    if (f->skip > 0) {
        size_t drop = (uint64_t)f->skip < len ? (size_t)f->skip : len;
        f->skip -= (int64_t)drop;
        data += drop;
        len -= drop;
    }
    if (len == 0)
        return 0;
    if (f->size >= 0 && (uint64_t)(f->offset + f->delivered) + len > (uint64_t)f->size) {
        abort_with(f, true, GRPC_RESOURCE_EXHAUSTED,
                   "%s from %s is larger than the %" PRId64 " bytes its descriptor says", f->what,
                   f->eps[f->ep].authority, f->size);
        return -1;
    }
    struct error *uerr = NULL;
    int rc = f->blob_data(data, len, f->arg, &uerr);
    if (f->state == FETCH_CANCELLED) {
        error_free(uerr);
        return -1;
    }
    if (rc < 0) {
        if (!uerr)
            error_set(&uerr, GRPC_CANCELLED, 0, "%s: download stopped by its consumer", f->what);
        f->abort_err = uerr;
        f->abort_final = true;
        return -1;
    }
    error_free(uerr);
    f->delivered += (int64_t)len;
    f->attempt_bytes += (int64_t)len;
    return 0;
}

static size_t on_curl_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct registry_fetch *f = arg;
    size_t n = size * nmemb;
    if (f->state != FETCH_RUNNING || f->abort_err)
        return WRITE_ABORT;
    if (!f->body_started && body_begin(f) < 0)
        return WRITE_ABORT;
    switch (f->sink) {
    case SINK_BUF:
        if (buf_append(&f->body, ptr, n) < 0) {
            if (f->req == REQ_TOKEN)
                abort_with(f, false, GRPC_RESOURCE_EXHAUSTED,
                           "%s: token response from %s is larger than %zu bytes", f->what,
                           f->eps[f->ep].authority, TOKEN_BODY_MAX);
            else
                abort_with(f, true, GRPC_RESOURCE_EXHAUSTED, "%s from %s is larger than %d bytes",
                           f->what, f->eps[f->ep].authority, REGISTRY_MANIFEST_MAX);
            return WRITE_ABORT;
        }
        return n;
    case SINK_ERROR:
        if (buf_append(&f->body, ptr, n) < 0) {
            /* Enough to explain the status; no need to read the rest. */
            f->body_overflow = true;
            return WRITE_ABORT;
        }
        return n;
    case SINK_DATA:
        return deliver(f, (const uint8_t *)ptr, n) < 0 ? WRITE_ABORT : n;
    case SINK_NONE:
        break;
    }
    return WRITE_ABORT;
}

/* ---- requests ---- */

/* Our sockets must not leak into the children the daemon spawns. */
static curl_socket_t on_open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* A fresh easy handle with the options every request shares. */
static void easy_begin(struct registry_fetch *f, enum req_kind req, const char *url, bool https,
                       bool tls_insecure, const char *ca_file)
{
    response_clear(&f->resp);
    buf_free(&f->body);
    f->sink = SINK_NONE;
    f->body_started = false;
    f->body_overflow = false;
    f->skip = 0;
    f->range_from = 0;
    f->attempt_bytes = 0;
    f->errbuf[0] = '\0';
    error_clear(&f->abort_err);
    f->abort_final = false;
    assert_state(f->easy == NULL && f->headers == NULL);

    CURL *e = xcurl.easy_init();
    if (!e) {
        static const char msg[] = "level=fatal msg=\"out of memory creating a curl handle\"\n";
        (void)!write(2, msg, sizeof(msg) - 1);
        abort();
    }
    f->easy = e;
    f->req = req;
    xcurl.easy_setopt(e, CURLOPT_URL, url);
    xcurl.easy_setopt(e, CURLOPT_PRIVATE, f);
    xcurl.easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    xcurl.easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    xcurl.easy_setopt(e, CURLOPT_ERRORBUFFER, f->errbuf);
    xcurl.easy_setopt(e, CURLOPT_USERAGENT, "tinycri/" PACKAGE_VERSION);
#if LIBCURL_VERSION_NUM >= 0x075500
    xcurl.easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    /* Never follow an https endpoint down to plain http. */
    xcurl.easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, https ? "https" : "http,https");
#else
    xcurl.easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    xcurl.easy_setopt(e, CURLOPT_REDIR_PROTOCOLS,
                      https ? (long)CURLPROTO_HTTPS : (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    /*
     * Blob storage answers with redirects. libcurl sends credentials (ours
     * are CURLOPT_USERNAME/PASSWORD or XOAUTH2_BEARER) only to the host it
     * started with; CURLOPT_UNRESTRICTED_AUTH stays off.
     */
    xcurl.easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    xcurl.easy_setopt(e, CURLOPT_MAXREDIRS, REGISTRY_MAX_REDIRS);
    xcurl.easy_setopt(e, CURLOPT_CONNECTTIMEOUT, REGISTRY_CONNECT_TIMEOUT_S);
    xcurl.easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    xcurl.easy_setopt(e, CURLOPT_LOW_SPEED_TIME, REGISTRY_LOW_SPEED_TIME_S);
    xcurl.easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    xcurl.easy_setopt(e, CURLOPT_HEADERFUNCTION, on_curl_header);
    xcurl.easy_setopt(e, CURLOPT_HEADERDATA, f);
    xcurl.easy_setopt(e, CURLOPT_WRITEFUNCTION, on_curl_write);
    xcurl.easy_setopt(e, CURLOPT_WRITEDATA, f);
    /*
     * Proxies: libcurl reads http_proxy, https_proxy and no_proxy from the
     * environment on its own, which is what we want; CURLOPT_PROXY stays unset.
     *
     * TLS is verified against the system store. A host's ca_file becomes the
     * CA file; on Debian's libcurl the system store stays in use through the
     * default CA path (/etc/ssl/certs), so redirects to public blob storage
     * still verify. These settings apply to redirect targets too.
     */
    if (tls_insecure) {
        xcurl.easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        xcurl.easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    } else if (ca_file) {
        xcurl.easy_setopt(e, CURLOPT_CAINFO, ca_file);
    }
}

static void easy_submit(struct registry_fetch *f)
{
    if (f->headers)
        xcurl.easy_setopt(f->easy, CURLOPT_HTTPHEADER, f->headers);
    f->state = FETCH_RUNNING;
    CURLMcode rc = xcurl.multi_add_handle(f->r->curl.multi, f->easy);
    /* Fails only on misuse (inside a libcurl callback, which we never do) or out of memory. */
    assert_state(rc == CURLM_OK);
}

static void add_header(struct registry_fetch *f, const char *line)
{
    struct curl_slist *l = xcurl.slist_append(f->headers, line);
    assert_state(l != NULL);
    f->headers = l;
}

/* The manifest or blob request on the current endpoint. */
static void start_request(struct registry_fetch *f)
{
    struct registry *r = f->r;
    struct endpoint *ep = &f->eps[f->ep];
    if (f->auth == FETCH_AUTH_NONE) {
        if (ep->creds.registry_token) {
            /* Nothing better to offer if it is refused: a 401 is final. */
            f->bearer = xstrdup(ep->creds.registry_token);
            f->auth = FETCH_AUTH_TOKEN;
        } else {
            _cleanup_free_ char *key = token_key(f);
            const char *t = registry_auth_tokens_lookup(&r->tokens, key);
            if (t) {
                f->bearer = xstrdup(t);
                f->auth = FETCH_AUTH_CACHED;
            }
        }
    }
    _cleanup_free_ char *url =
        xasprintf("%s/v2/%s/%s/%s", ep->base, f->path,
                  f->kind == FETCH_MANIFEST ? "manifests" : "blobs", f->reference);
    easy_begin(f, REQ_RESOURCE, url, !ep->plain_http, ep->tls_insecure, ep->ca_file);
    if (f->kind == FETCH_MANIFEST) {
        add_header(f, MANIFEST_ACCEPT);
    } else {
        f->range_from = f->offset + f->delivered;
        if (f->range_from > 0) {
            char range[64];
            snprintf(range, sizeof(range), "Range: bytes=%" PRId64 "-", f->range_from);
            add_header(f, range);
        }
    }
    if (f->auth == FETCH_AUTH_CACHED || f->auth == FETCH_AUTH_TOKEN) {
        xcurl.easy_setopt(f->easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
        xcurl.easy_setopt(f->easy, CURLOPT_XOAUTH2_BEARER, f->bearer);
    } else if (f->auth == FETCH_AUTH_BASIC) {
        xcurl.easy_setopt(f->easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        xcurl.easy_setopt(f->easy, CURLOPT_USERNAME, ep->creds.username);
        xcurl.easy_setopt(f->easy, CURLOPT_PASSWORD, ep->creds.password);
    }
    easy_submit(f);
}

/* "<realm>?service=…&scope=…" (owned), or NULL. */
static char *token_url(const char *realm, const char *service, const char *scope, bool query)
{
    _cleanup_curl_url_ CURLU *u = xcurl.url();
    _cleanup_curl_str_ char *out = NULL;
    if (!u || xcurl.url_set(u, CURLUPART_URL, realm, 0) != CURLUE_OK)
        return NULL;
    if (query) {
        if (service) {
            _cleanup_free_ char *q = xasprintf("service=%s", service);
            if (xcurl.url_set(u, CURLUPART_QUERY, q, CURLU_APPENDQUERY | CURLU_URLENCODE) !=
                CURLUE_OK)
                return NULL;
        }
        _cleanup_free_ char *q = xasprintf("scope=%s", scope);
        if (xcurl.url_set(u, CURLUPART_QUERY, q, CURLU_APPENDQUERY | CURLU_URLENCODE) != CURLUE_OK)
            return NULL;
    }
    if (xcurl.url_get(u, CURLUPART_URL, &out, 0) != CURLUE_OK)
        return NULL;
    return xstrdup(out);
}

static char *escape(CURL *e, const char *s)
{
    char *x = xcurl.easy_escape(e, s, 0);
    assert_state(x != NULL);
    char *out = xstrdup(x);
    xcurl.free(x);
    return out;
}

/* Ask the Bearer challenge's realm for a token (f->realm, f->service). */
static int start_token_request(struct registry_fetch *f, struct error **err)
{
    struct registry *r = f->r;
    struct endpoint *ep = &f->eps[f->ep];
    bool https = false;
    _cleanup_free_ char *realm_auth = url_authority(f->realm, 0, &https, NULL);
    if (!realm_auth)
        return error_set(err, GRPC_UNAVAILABLE, 0, "%s: %s sent a bad token realm", f->what,
                         ep->authority);
    /* Credentials go over plain http only where the admin allowed plain http. */
    const struct registry_host *realm_cfg = registry_hosts_find(&r->hosts, realm_auth);
    bool same_host = strcasecmp(realm_auth, ep->authority) == 0;
    if (!https && !ep->plain_http && !(realm_cfg && realm_cfg->insecure))
        return error_set(err, GRPC_UNAVAILABLE, 0,
                         "%s: %s sent a plain http token realm for an https registry", f->what,
                         ep->authority);
    bool tls_insecure = realm_cfg ? realm_cfg->insecure : (same_host && ep->tls_insecure);
    const char *ca_file = realm_cfg ? realm_cfg->ca_file : (same_host ? ep->ca_file : NULL);

    bool refresh = ep->creds.identity_token != NULL;
    _cleanup_free_ char *url = token_url(f->realm, f->service, f->scope, !refresh);
    if (!url)
        return error_set(err, GRPC_UNAVAILABLE, 0, "%s: %s sent a bad token realm", f->what,
                         ep->authority);
    easy_begin(f, REQ_TOKEN, url, https, tls_insecure, ca_file);
    add_header(f, "Accept: application/json");
    if (refresh) {
        /* OAuth2 refresh-token grant, as docker does with an identity token. */
        _cleanup_free_ char *tok = escape(f->easy, ep->creds.identity_token);
        _cleanup_free_ char *svc = escape(f->easy, f->service ? f->service : "");
        _cleanup_free_ char *scope = escape(f->easy, f->scope);
        char *form = xasprintf("grant_type=refresh_token&refresh_token=%s&service=%s&scope=%s"
                               "&client_id=tinycri",
                               tok, svc, scope);
        xcurl.easy_setopt(f->easy, CURLOPT_COPYPOSTFIELDS, form);
        registry_auth_secret_free(form);
        explicit_bzero(tok, strlen(tok));
    } else if (registry_auth_creds_basic(&ep->creds)) {
        xcurl.easy_setopt(f->easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        xcurl.easy_setopt(f->easy, CURLOPT_USERNAME, ep->creds.username);
        xcurl.easy_setopt(f->easy, CURLOPT_PASSWORD, ep->creds.password);
    }
    easy_submit(f);
    return 0;
}

/* ---- what a finished transfer means ---- */

static bool is_tls_error(CURLcode res)
{
    switch (res) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
        return true;
    default:
        return false;
    }
}

static bool is_connect_error(CURLcode res)
{
    return res == CURLE_COULDNT_CONNECT || res == CURLE_COULDNT_RESOLVE_HOST ||
           res == CURLE_COULDNT_RESOLVE_PROXY;
}

static bool is_retryable(CURLcode res)
{
    switch (res) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

static void transport_failed(struct registry_fetch *f, CURLcode res)
{
    struct endpoint *ep = &f->eps[f->ep];
    const char *msg = f->errbuf[0] ? f->errbuf : xcurl.easy_strerror(res);
    struct error *cause = NULL;
    error_set(&cause, GRPC_UNAVAILABLE, 0, "%s: %s%s: %s", f->what,
              f->req == REQ_TOKEN ? "token endpoint of " : "", ep->authority, msg);
    if (is_tls_error(res) || (ep->is_mirror && is_connect_error(res)) || !is_retryable(res)) {
        endpoint_failed(f, cause);
        return;
    }
    retry_later(f, cause, -1);
}

static int64_t retry_after_ms(const struct registry_fetch *f)
{
    const char *s = f->resp.retry_after;
    if (!*s)
        return -1;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p))
            return -1; /* an HTTP date: use our own backoff */
    long long v = strtoll(s, NULL, 10);
    if (v > REGISTRY_RETRY_AFTER_MAX_MS / 1000)
        return REGISTRY_RETRY_AFTER_MAX_MS;
    return v * 1000;
}

static void status_failed(struct registry_fetch *f, long status, const char *endpoint_name)
{
    struct error *err = NULL;
    _cleanup_free_ char *detail = error_detail(f, NULL);
    if (status == 429 || status >= 500) {
        error_set(&err, GRPC_UNAVAILABLE, 0, "%s: %s answered HTTP %ld%s", f->what, endpoint_name,
                  status, detail);
        retry_later(f, err, retry_after_ms(f));
        return;
    }
    error_set(&err, status == 400 ? GRPC_INVALID_ARGUMENT : GRPC_FAILED_PRECONDITION, 0,
              "%s: %s answered HTTP %ld%s", f->what, endpoint_name, status, detail);
    endpoint_failed(f, err);
}

static void token_done(struct registry_fetch *f, long status)
{
    struct endpoint *ep = &f->eps[f->ep];
    struct error *err = NULL;
    _cleanup_free_ char *realm_host = url_authority(f->realm, 0, NULL, NULL);
    _cleanup_free_ char *name = xasprintf("token endpoint %s", realm_host ? realm_host : "?");
    if (status == 401 || status == 403) {
        _cleanup_free_ char *detail = error_detail(f, NULL);
        if (!registry_auth_creds_any(&ep->creds))
            error_set(&err, GRPC_UNAUTHENTICATED, 0, "%s: authentication required by %s%s", f->what,
                      ep->authority, detail);
        else
            error_set(&err, status == 401 ? GRPC_UNAUTHENTICATED : GRPC_PERMISSION_DENIED, 0,
                      "%s: %s refused the credentials for %s (HTTP %ld)%s", f->what, name,
                      ep->authority, status, detail);
        endpoint_failed(f, err);
        return;
    }
    if (status < 200 || status >= 300) {
        status_failed(f, status, name);
        return;
    }
    char *token = NULL;
    int64_t lifetime = 0;
    if (registry_auth_token_parse(f->body.data, f->body.len, TOKEN_MAX_LEN,
                                  TOKEN_DEFAULT_LIFETIME_S, &token, &lifetime) < 0) {
        error_set(&err, GRPC_UNAVAILABLE, 0, "%s: %s sent no usable token", f->what, name);
        endpoint_failed(f, err);
        return;
    }
    _cleanup_free_ char *key = token_key(f);
    registry_auth_tokens_store(&f->r->tokens, key, token, lifetime);
    registry_auth_secret_free(f->bearer);
    f->bearer = token;
    f->auth = FETCH_AUTH_TOKEN;
    buf_free(&f->body);
    start_request(f);
}

static void unauthorized(struct registry_fetch *f)
{
    struct registry *r = f->r;
    struct endpoint *ep = &f->eps[f->ep];
    struct error *err = NULL;
    bool denied = false;
    _cleanup_free_ char *detail = error_detail(f, &denied);
    if (denied) {
        error_set(&err, GRPC_PERMISSION_DENIED, 0, "%s: access denied by %s%s", f->what,
                  ep->authority, detail);
        endpoint_failed(f, err);
        return;
    }
    if (f->auth == FETCH_AUTH_CACHED) {
        /* The registry no longer takes the cached token: forget it and ask again. */
        _cleanup_free_ char *key = token_key(f);
        registry_auth_tokens_drop(&r->tokens, key);
        registry_auth_secret_free(f->bearer);
        f->bearer = NULL;
        f->auth = FETCH_AUTH_NONE;
    }
    if (f->auth != FETCH_AUTH_NONE) {
        if (!registry_auth_creds_any(&ep->creds))
            error_set(&err, GRPC_UNAUTHENTICATED, 0, "%s: authentication required by %s%s", f->what,
                      ep->authority, detail);
        else
            error_set(&err, GRPC_UNAUTHENTICATED, 0, "%s: %s rejected the credentials%s", f->what,
                      ep->authority, detail);
        endpoint_failed(f, err);
        return;
    }
    struct registry_challenge c = {0};
    for (size_t i = 0; i < f->resp.n_www_auth; i++)
        registry_auth_challenge_parse(f->resp.www_auth[i], &c);
    if (c.bearer && c.realm) {
        f->auth = FETCH_AUTH_CHALLENGED;
        f->realm = steal_ptr(&c.realm);
        f->service = steal_ptr(&c.service);
        registry_auth_challenge_clear(&c);
        if (start_token_request(f, &err) < 0)
            endpoint_failed(f, err);
        return;
    }
    bool basic = c.basic;
    registry_auth_challenge_clear(&c);
    if (basic && registry_auth_creds_basic(&ep->creds)) {
        f->auth = FETCH_AUTH_BASIC;
        start_request(f);
        return;
    }
    error_set(&err, GRPC_UNAUTHENTICATED, 0, "%s: authentication required by %s%s", f->what,
              ep->authority, detail);
    endpoint_failed(f, err);
}

static void resource_done(struct registry_fetch *f, long status)
{
    struct endpoint *ep = &f->eps[f->ep];
    struct error *err = NULL;
    if (status >= 200 && status < 300) {
        if (f->kind == FETCH_BLOB && f->size >= 0 && f->offset + f->delivered < f->size) {
            error_set(&err, GRPC_UNAVAILABLE, 0,
                      "%s: %s ended the blob after %" PRId64 " of %" PRId64 " bytes", f->what,
                      ep->authority, f->offset + f->delivered, f->size);
            retry_later(f, err, -1);
            return;
        }
        fetch_finish(f, NULL);
        return;
    }
    if (status == 401) {
        unauthorized(f);
        return;
    }
    _cleanup_free_ char *detail = error_detail(f, NULL);
    if (status == 403) {
        error_set(&err, GRPC_PERMISSION_DENIED, 0, "%s: access denied by %s%s", f->what,
                  ep->authority, detail);
        endpoint_failed(f, err);
        return;
    }
    if (status == 404) {
        error_set(&err, GRPC_NOT_FOUND, 0, "%s not found on %s", f->what, ep->authority);
        endpoint_failed(f, err);
        return;
    }
    status_failed(f, status, ep->authority);
}

static void log_request(const struct registry_fetch *f, long status, CURLcode res)
{
    if (LOG_LEVEL_DEBUG > log_current_level)
        return;
    char *url = NULL;
    long redirects = 0;
    xcurl.easy_getinfo(f->easy, CURLINFO_EFFECTIVE_URL, &url);
    xcurl.easy_getinfo(f->easy, CURLINFO_REDIRECT_COUNT, &redirects);
    /* Host and path only: a redirect's query string may carry a signature. */
    _cleanup_free_ char *path = NULL;
    _cleanup_free_ char *host = url ? url_authority(url, 0, NULL, &path) : NULL;
    bool post = f->req == REQ_TOKEN && f->eps[f->ep].creds.identity_token;
    log_debug("registry request fetch=%" PRIu64 " method=%s host=%s path=%s status=%ld "
              "redirects=%ld curl=%d",
              f->id, post ? "POST" : "GET", host ? host : "?", path ? path : "?", status, redirects,
              (int)res);
}

/* libcurl is done with the transfer (and has returned): decide what comes next. */
static void transfer_done(struct registry_fetch *f)
{
    CURLcode res = f->curl_result;
    long status = 0;
    xcurl.easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
    log_request(f, status, res);
    easy_release(f);

    struct error *abort_err = steal_ptr(&f->abort_err);
    if (abort_err) {
        if (f->abort_final)
            fetch_finish(f, abort_err);
        else
            endpoint_failed(f, abort_err);
        return;
    }
    if (res == CURLE_WRITE_ERROR && f->body_overflow)
        res = CURLE_OK;
    if (res != CURLE_OK) {
        transport_failed(f, res);
        return;
    }
    if (f->req == REQ_TOKEN)
        token_done(f, status);
    else
        resource_done(f, status);
}

/* Start what waits: every queued manifest, and blobs while download slots are free. */
static void pump(struct registry *r)
{
    if (r->curl.depth > 0)
        return;
    for (struct registry_fetch *f = TAILQ_FIRST(&r->fetches), *next; f;) {
        next = TAILQ_NEXT(f, link);
        if (f->state == FETCH_QUEUED) {
            if (f->kind == FETCH_BLOB) {
                if (r->active_blobs >= r->max_downloads) {
                    f = next;
                    continue;
                }
                r->active_blobs++;
                f->holds_slot = true;
            }
            start_request(f);
        }
        f = next;
    }
}

static struct registry_fetch *first_finished(struct registry *r)
{
    struct registry_fetch *f;
    TAILQ_FOREACH (f, &r->fetches, link)
        if (f->curl_finished)
            return f;
    return NULL;
}

/* After every call into libcurl that may run callbacks (curl_glue calls it). */
static void after_curl(void *arg)
{
    struct registry *r = arg;
    /* Read every message before removing any handle: removal invalidates them. */
    CURLMsg *msg;
    int left;
    while ((msg = xcurl.multi_info_read(r->curl.multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        xcurl.easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        struct registry_fetch *f = (struct registry_fetch *)priv;
        if (f && f->state == FETCH_RUNNING && f->easy == msg->easy_handle) {
            f->curl_finished = true;
            f->curl_result = msg->data.result;
        }
    }
    if (r->cancels_pending) {
        r->cancels_pending = false;
        for (struct registry_fetch *f = TAILQ_FIRST(&r->fetches), *next; f; f = next) {
            next = TAILQ_NEXT(f, link);
            if (f->state == FETCH_CANCELLED)
                fetch_destroy(f);
        }
    }
    /* One at a time from the head: a done callback may cancel or add fetches. */
    struct registry_fetch *f;
    while ((f = first_finished(r))) {
        f->curl_finished = false;
        transfer_done(f);
    }
    pump(r);
    multi_idle(r);
}

static void registry_destroy(struct registry *r)
{
    while (!TAILQ_EMPTY(&r->fetches))
        fetch_destroy(TAILQ_FIRST(&r->fetches));
    loop_timer_free(r->idle);
    curl_glue_clear(&r->curl);
    registry_auth_tokens_clear(&r->tokens);
    registry_hosts_clear(&r->hosts);
    free(r);
}

struct registry *registry_new(const struct config *cfg, struct error **err)
{
    if (!loop_base())
        return error_set(err, GRPC_INTERNAL, 0, "registry: the loop is not initialised"), NULL;
    struct registry *r = xcalloc(1, sizeof(*r));
    TAILQ_INIT(&r->fetches);
    registry_auth_tokens_init(&r->tokens);
    curl_glue_init(&r->curl, after_curl, r);
    r->idle = loop_timer_new(on_multi_idle, r);
    r->max_downloads = cfg && cfg->max_downloads ? cfg->max_downloads : REGISTRY_DEFAULT_DOWNLOADS;
    r->next_id = 1;
    if (registry_hosts_load(&r->hosts, cfg, err) < 0) {
        registry_destroy(r);
        return NULL;
    }
    return r;
}

void registry_free(struct registry *r)
{
    if (!r)
        return;
    /* Freeing the client from one of its own callbacks would pull it from under the caller. */
    assert_state(r->curl.depth == 0 && r->cb_depth == 0);
    registry_destroy(r);
}

static void endpoint_tls(const struct registry *r, struct endpoint *ep,
                         const struct registry_host *own)
{
    const struct registry_host *h = own ? own : registry_hosts_find(&r->hosts, ep->authority);
    if (!h)
        return;
    ep->tls_insecure = h->insecure && !ep->plain_http;
    ep->ca_file = h->ca_file;
}

static void creds_from_host(struct registry_creds *c, const struct registry_host *h)
{
    if (h && h->username) {
        c->username = xstrdup(h->username);
        c->password = xstrdup(h->password ? h->password : "");
    }
}

/* Mirrors in order, then the origin. */
static int endpoints_build(struct registry_fetch *f, const struct image_ref *ref,
                           const struct registry_auth *auth, struct error **err)
{
    struct registry *r = f->r;
    const struct registry_host *origin = registry_hosts_find(&r->hosts, ref->domain);
    if (origin) {
        for (size_t i = 0; i < origin->n_mirrors; i++) {
            struct endpoint *ep = &f->eps[f->n_eps++];
            ep->base = xstrdup(origin->mirrors[i].base);
            ep->authority = xstrdup(origin->mirrors[i].authority);
            ep->is_mirror = true;
            ep->plain_http = str_has_prefix(ep->base, "http://");
            /* A mirror gets its own section's settings and credentials, never the pull's. */
            const struct registry_host *mh = registry_hosts_find(&r->hosts, ep->authority);
            endpoint_tls(r, ep, mh);
            creds_from_host(&ep->creds, mh);
        }
    }
    struct endpoint *ep = &f->eps[f->n_eps++];
    if (strcasecmp(ref->domain, "docker.io") == 0 ||
        strcasecmp(ref->domain, "index.docker.io") == 0)
        ep->authority = xstrdup("registry-1.docker.io");
    else
        ep->authority = xstrdup(ref->domain);
    /*
     * insecure means plain http for the origin. An https registry with a
     * private CA wants ca_file instead; one with a certificate nothing can
     * verify can be listed as an https:// mirror of itself, which insecure
     * then leaves unverified.
     */
    ep->plain_http = origin && origin->insecure;
    ep->base = xasprintf("%s://%s", ep->plain_http ? "http" : "https", ep->authority);
    if (origin) {
        ep->ca_file = origin->ca_file;
    } else {
        endpoint_tls(r, ep, NULL);
    }
    if (registry_auth_is_set(auth))
        return registry_auth_creds_from(&ep->creds, auth, err);
    creds_from_host(&ep->creds, origin);
    return 0;
}

static struct registry_fetch *fetch_new(struct registry *r, enum fetch_kind kind,
                                        const struct image_ref *ref, const char *reference,
                                        const struct registry_auth *auth, struct error **err)
{
    if (!ref || !ref->domain || !*ref->domain || strpbrk(ref->domain, "/?#@ ") || !ref->path ||
        !is_repo_path(ref->path))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "bad image reference for a registry fetch"),
               NULL;
    loop_timer_disarm(r->idle);
    if (curl_glue_open(&r->curl, err) < 0)
        return error_prefix(err, "registry"), NULL;
    struct registry_fetch *f = xcalloc(1, sizeof(*f));
    f->r = r;
    f->id = r->next_id++;
    f->kind = kind;
    f->state = FETCH_QUEUED;
    f->path = xstrdup(ref->path);
    f->reference = xstrdup(reference);
    f->scope = xasprintf("repository:%s:pull", ref->path);
    f->size = -1;
    buf_init(&f->body, 0);
    if (kind == FETCH_MANIFEST)
        f->what = xasprintf("manifest %s/%s%s%s", ref->domain, ref->path,
                            is_digest(reference) ? "@" : ":", reference);
    else
        f->what = xasprintf("blob %s of %s/%s", reference, ref->domain, ref->path);
    /* Linked first so that fetch_destroy() can undo a half-built fetch. */
    TAILQ_INSERT_TAIL(&r->fetches, f, link);
    if (endpoints_build(f, ref, auth, err) < 0) {
        fetch_destroy(f);
        return NULL;
    }
    return f;
}

struct registry_fetch *registry_fetch_manifest(struct registry *r, const struct image_ref *ref,
                                               const char *reference,
                                               const struct registry_auth *auth,
                                               registry_manifest_cb done, void *arg,
                                               struct error **err)
{
    assert_state(r && done);
    if (!reference && ref)
        reference = ref->digest ? ref->digest : ref->tag;
    if (!reference || (!is_tag(reference) && !is_digest(reference)))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "bad manifest reference \"%s\"",
                         reference ? reference : ""),
               NULL;
    struct registry_fetch *f = fetch_new(r, FETCH_MANIFEST, ref, reference, auth, err);
    if (!f)
        return NULL;
    f->manifest_done = done;
    f->arg = arg;
    pump(r);
    return f;
}

struct registry_fetch *registry_fetch_blob(struct registry *r, const struct image_ref *ref,
                                           const char *digest, int64_t size, int64_t offset,
                                           const struct registry_auth *auth,
                                           registry_blob_data_cb data, registry_blob_done_cb done,
                                           void *arg, struct error **err)
{
    assert_state(r && data && done);
    if (!digest || !is_digest(digest))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "bad blob digest \"%s\"",
                         digest ? digest : ""),
               NULL;
    if (offset < 0 || (size >= 0 && offset > 0 && offset >= size))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "blob %s: offset %" PRId64 " is outside its %" PRId64 " bytes", digest,
                         offset, size),
               NULL;
    struct registry_fetch *f = fetch_new(r, FETCH_BLOB, ref, digest, auth, err);
    if (!f)
        return NULL;
    f->size = size < 0 ? -1 : size;
    f->offset = offset;
    f->blob_data = data;
    f->blob_done = done;
    f->arg = arg;
    pump(r);
    return f;
}

void registry_fetch_cancel(struct registry_fetch *f)
{
    if (!f)
        return;
    struct registry *r = f->r;
    switch (f->state) {
    case FETCH_FINISHING:
    case FETCH_CANCELLED:
        return;
    case FETCH_RUNNING:
        if (r->curl.depth > 0) {
            /* Maybe from its own data callback: libcurl still holds the handle. */
            f->state = FETCH_CANCELLED;
            release_slot(f);
            r->cancels_pending = true;
            return;
        }
        break;
    case FETCH_QUEUED:
    case FETCH_BACKOFF:
        break;
    }
    fetch_destroy(f);
    pump(r);
    multi_idle(r);
}

int64_t registry_fetch_bytes(const struct registry_fetch *f)
{
    return f ? f->delivered : 0;
}
