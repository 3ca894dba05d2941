/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for image/registry. A tiny scripted HTTP/1.1 server
 * (registry_server.h) runs on 127.0.0.1 (ephemeral port) on the same
 * libevent loop as the client: each test installs a handler that answers
 * requests with recorded responses
 * (manifests, errors, auth challenges, tokens, cut or held blob bodies) and
 * the server keeps every request it saw, so tests check both what the caller
 * got and what went over the wire: auth headers, token scopes, Range
 * resumes, mirror order and how many transfers ran at once.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "image/ref.h"
#include "image/registry.h"
#include "image/xferlib.h"
#include "helpers.h"
#include "registry_server.h"

#define SAFETY_MS 15000
#define MS_NS 1000000LL
#define MAX_RESULTS 8
#define BLOB_LEN 300000
#define CUT_AT 70000

/* ---- test state ---- */

struct result {
    int done_calls;
    int code; /* -1 until done */
    char msg[1024];
    struct buf data;
    char media_type[256];
    char digest[256];
    bool has_digest;
    int data_calls;
    bool cancel_in_data;
    int fail_in_data; /* 1: return -1 with an error, 2: without */
    struct registry_fetch *f;
};

static struct test_state {
    struct registry *reg;
    struct config cfg;
    char host[64];
    char realm[128];
    char mirror1[128];
    char mirror2[128];
    int pending;
    int counter;
    bool ignore_range;
    struct result res[MAX_RESULTS];
    struct loop_timer *release_timer;
} T;

static uint8_t blob[BLOB_LEN];
static char digests[6][80];
static char dom[64];
static char path_app[] = "lib/app";
static char tag_v1[] = "v1";

static struct image_ref app_ref(void)
{
    return (struct image_ref){.domain = dom, .path = path_app, .tag = tag_v1, .digest = NULL};
}

static void done_one(void)
{
    if (--T.pending <= 0)
        loop_exit();
}

static void record_error(struct result *r, const struct error *err)
{
    r->code = err ? err->grpc_code : 0;
    if (err)
        snprintf(r->msg, sizeof(r->msg), "%s", err->msg);
}

static void on_manifest(const struct registry_manifest *m, const struct error *err, void *arg)
{
    struct result *r = arg;
    r->done_calls++;
    record_error(r, err);
    if (!err) {
        buf_append(&r->data, m->body, m->len);
        snprintf(r->media_type, sizeof(r->media_type), "%s", m->media_type);
        r->has_digest = m->digest != NULL;
        if (m->digest)
            snprintf(r->digest, sizeof(r->digest), "%s", m->digest);
    }
    done_one();
}

static int on_blob_data(const uint8_t *data, size_t len, void *arg, struct error **err)
{
    struct result *r = arg;
    r->data_calls++;
    if (buf_append(&r->data, data, len) < 0)
        return error_set(err, GRPC_INTERNAL, 0, "test buffer full");
    if (r->cancel_in_data) {
        registry_fetch_cancel(r->f);
        return 0;
    }
    if (r->fail_in_data == 1)
        return error_set(err, GRPC_DATA_LOSS, 0, "consumer says no");
    if (r->fail_in_data == 2)
        return -1;
    return 0;
}

static void on_blob_done(const struct error *err, void *arg)
{
    struct result *r = arg;
    r->done_calls++;
    record_error(r, err);
    done_one();
}

/* Run until every expected callback came; fail if the safety timer has to stop the loop. */
static void run_until_done(void)
{
    if (T.pending > 0)
        run_loop(SAFETY_MS);
}

static void reg_new(void)
{
    struct error *err = NULL;
    T.reg = registry_new(&T.cfg, &err);
    assert_null(err);
    assert_non_null(T.reg);
}

static struct result *fetch_manifest(int i, const char *reference, const struct registry_auth *a)
{
    struct error *err = NULL;
    struct image_ref ref = app_ref();
    struct result *r = &T.res[i];
    r->f = registry_fetch_manifest(T.reg, &ref, reference, a, on_manifest, r, &err);
    assert_null(err);
    assert_non_null(r->f);
    T.pending++;
    return r;
}

static struct result *fetch_blob(int i, const char *digest, int64_t size, int64_t offset,
                                 const struct registry_auth *a)
{
    struct error *err = NULL;
    struct image_ref ref = app_ref();
    struct result *r = &T.res[i];
    r->f = registry_fetch_blob(T.reg, &ref, digest, size, offset, a, on_blob_data, on_blob_done, r,
                               &err);
    assert_null(err);
    assert_non_null(r->f);
    T.pending++;
    return r;
}

static void assert_blob(const struct result *r, size_t from)
{
    assert_int_equal(r->code, 0);
    assert_int_equal(r->done_calls, 1);
    assert_int_equal(r->data.len, BLOB_LEN - from);
    assert_memory_equal(r->data.data, blob + from, BLOB_LEN - from);
}

static int setup(void **state)
{
    struct error *err = NULL;
    alarm(60);
    assert_int_equal(loop_init(&err), 0);
    srv_start();
    memset(&T, 0, sizeof(T));
    for (size_t i = 0; i < MAX_RESULTS; i++) {
        T.res[i].code = -1;
        buf_init(&T.res[i].data, 8u << 20);
    }
    snprintf(T.host, sizeof(T.host), "127.0.0.1:%d", srv.port);
    snprintf(dom, sizeof(dom), "%s", T.host);
    snprintf(T.realm, sizeof(T.realm), "http://%s/token", T.host);
    T.cfg.registries[0].host = T.host;
    T.cfg.registries[0].insecure = true;
    T.cfg.n_registries = 1;
    registry_set_multi_idle_ms(0); /* each test below opts in to keeping connections */
    return 0;
}

static int teardown(void **state)
{
    registry_free(T.reg);
    loop_timer_free(T.release_timer);
    for (size_t i = 0; i < MAX_RESULTS; i++)
        buf_free(&T.res[i].data);
    srv_stop();
    xferlib_shutdown();
    xferlib_set_idle_ms(XFERLIB_IDLE_MS);
    registry_set_multi_idle_ms(REGISTRY_MULTI_IDLE_MS);
    loop_shutdown();
    alarm(0);
    return 0;
}

#define MANIFEST_PATH "/v2/lib/app/manifests/v1"
#define MANIFEST_BODY "{\"schemaVersion\":2,\"mediaType\":\"x\"}"
#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"

static char blob_path[6][160];

static void send_blob_from(struct srv_conn *c, const struct srv_req *req)
{
    const char *range = req_header(req, "range");
    long from = 0;
    if (range && !T.ignore_range && sscanf(range, "bytes=%ld-", &from) == 1 && from > 0 &&
        from < BLOB_LEN) {
        char h[256];
        snprintf(h, sizeof(h), "Content-Range: bytes %ld-%d/%d\r\n", from, BLOB_LEN - 1, BLOB_LEN);
        reply(c, 206, h, blob + from, (size_t)(BLOB_LEN - from));
        return;
    }
    reply(c, 200, "Content-Type: application/octet-stream\r\n", blob, BLOB_LEN);
}

/* ---- manifests ---- */

static void h_manifest_ok(struct srv_conn *c, const struct srv_req *req)
{
    if (target_is(req, MANIFEST_PATH))
        reply_str(c, 200,
                  "Content-Type: " OCI_MANIFEST "; charset=utf-8\r\n"
                  "Docker-Content-Digest: sha256:"
                  "1111111111111111111111111111111111111111111111111111111111111111\r\n",
                  MANIFEST_BODY);
    else
        reply_str(c, 404, NULL, "");
}

static void test_manifest_ok(void **state)
{
    srv.handler = h_manifest_ok;
    reg_new();
    struct result *r = fetch_manifest(0, NULL, NULL);
    run_until_done();
    assert_int_equal(r->code, 0);
    assert_int_equal(r->done_calls, 1);
    assert_int_equal(r->data.len, strlen(MANIFEST_BODY));
    assert_memory_equal(r->data.data, MANIFEST_BODY, strlen(MANIFEST_BODY));
    assert_string_equal(r->media_type, OCI_MANIFEST);
    assert_true(r->has_digest);
    assert_string_equal(r->digest,
                        "sha256:"
                        "1111111111111111111111111111111111111111111111111111111111111111");

    assert_int_equal(srv.n_reqs, 1);
    const struct srv_req *req = &srv.reqs[0];
    assert_string_equal(req->method, "GET");
    assert_string_equal(req->target, MANIFEST_PATH);
    const char *accept = req_header(req, "accept");
    assert_non_null(accept);
    assert_non_null(strstr(accept, "application/vnd.oci.image.index.v1+json"));
    assert_non_null(strstr(accept, "application/vnd.docker.distribution.manifest.list.v2+json"));
    assert_non_null(strstr(accept, OCI_MANIFEST));
    assert_non_null(strstr(accept, "application/vnd.docker.distribution.manifest.v2+json"));
    assert_non_null(strstr(accept, "application/vnd.docker.distribution.manifest.v1+prettyjws"));
    assert_string_equal(req_header(req, "user-agent"), "tinycri/" PACKAGE_VERSION);
    assert_null(req_header(req, "authorization"));
}

static void h_errors(struct srv_conn *c, const struct srv_req *req)
{
    if (target_is(req, MANIFEST_PATH))
        reply_str(
            c, 404, "Content-Type: application/json\r\n",
            "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest unknown\"}]}");
    else if (target_is(req, "/v2/lib/app/manifests/v2"))
        reply_str(c, 403, NULL,
                  "{\"errors\":[{\"code\":\"DENIED\",\"message\":\"requested access to the "
                  "resource is denied\"}]}");
    else if (target_is(req, "/v2/lib/app/manifests/v3"))
        reply_str(c, 400, NULL, "{\"errors\":[{\"code\":\"NAME_INVALID\"}]}");
    else if (target_is(req, "/v2/lib/app/manifests/v4"))
        reply_str(c, 401, NULL,
                  "{\"errors\":[{\"code\":\"DENIED\",\"message\":\"no pulls for you\"}]}");
    else
        reply_str(c, 404, NULL, "{\"errors\":[{\"code\":\"BLOB_UNKNOWN\"}]}");
}

static void test_error_statuses(void **state)
{
    srv.handler = h_errors;
    reg_new();
    struct result *nf = fetch_manifest(0, NULL, NULL);
    struct result *denied = fetch_manifest(1, "v2", NULL);
    struct result *bad = fetch_manifest(2, "v3", NULL);
    struct result *denied401 = fetch_manifest(3, "v4", NULL);
    struct result *blob_nf = fetch_blob(4, digests[0], -1, 0, NULL);
    run_until_done();

    char want[256];
    assert_int_equal(nf->code, GRPC_NOT_FOUND);
    snprintf(want, sizeof(want), "manifest %s/lib/app:v1 not found on %s", T.host, T.host);
    assert_string_equal(nf->msg, want);
    assert_int_equal(denied->code, GRPC_PERMISSION_DENIED);
    assert_non_null(strstr(denied->msg, "DENIED: requested access to the resource is denied"));
    assert_int_equal(bad->code, GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(bad->msg, "HTTP 400"));
    assert_int_equal(denied401->code, GRPC_PERMISSION_DENIED);
    assert_int_equal(blob_nf->code, GRPC_NOT_FOUND);
    snprintf(want, sizeof(want), "blob %s of %s/lib/app not found on %s", digests[0], T.host,
             T.host);
    assert_string_equal(blob_nf->msg, want);
    for (int i = 0; i < 5; i++)
        assert_int_equal(T.res[i].done_calls, 1);
    assert_int_equal(srv.n_reqs, 5); /* no retries for these */
}

static void test_bad_arguments(void **state)
{
    reg_new();
    struct error *err = NULL;
    struct image_ref ref = app_ref();
    assert_null(registry_fetch_manifest(T.reg, &ref, "bad tag", NULL, on_manifest, NULL, &err));
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    error_clear(&err);
    assert_null(registry_fetch_blob(T.reg, &ref, "notadigest", -1, 0, NULL, on_blob_data,
                                    on_blob_done, NULL, &err));
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    error_clear(&err);
    assert_null(registry_fetch_blob(T.reg, &ref, digests[0], 10, 10, NULL, on_blob_data,
                                    on_blob_done, NULL, &err));
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    error_clear(&err);
    static char evil[] = "lib/../x";
    ref.path = evil;
    assert_null(registry_fetch_manifest(T.reg, &ref, "v1", NULL, on_manifest, NULL, &err));
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    error_clear(&err);
    struct registry_auth a = {.auth = "%%%not-base64"};
    ref = app_ref();
    assert_null(registry_fetch_manifest(T.reg, &ref, "v1", &a, on_manifest, NULL, &err));
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    error_clear(&err);
    assert_int_equal(srv.n_reqs, 0);
}

static char *big_body;

static void h_big(struct srv_conn *c, const struct srv_req *req)
{
    size_t len = REGISTRY_MANIFEST_MAX + 1000;
    if (target_is(req, "/v2/lib/app/manifests/sized"))
        reply(c, 200, "Content-Type: " OCI_MANIFEST "\r\n", big_body, len);
    else /* no Content-Length: the cap must trip while the body streams */
        reply_ex(c, 200, "Content-Type: " OCI_MANIFEST "\r\n", big_body, -1, len, true);
}

static void test_manifest_too_large(void **state)
{
    big_body = xmalloc(REGISTRY_MANIFEST_MAX + 1000);
    memset(big_body, ' ', REGISTRY_MANIFEST_MAX + 1000);
    srv.handler = h_big;
    reg_new();
    struct result *sized = fetch_manifest(0, "sized", NULL);
    struct result *streamed = fetch_manifest(1, "streamed", NULL);
    run_until_done();
    free(big_body);
    assert_int_equal(sized->code, GRPC_RESOURCE_EXHAUSTED);
    assert_int_equal(streamed->code, GRPC_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(streamed->msg, "is larger than"));
    assert_int_equal(sized->data.len, 0);
    assert_int_equal(streamed->data.len, 0);
}

/* ---- auth ---- */

#define BASIC_ALICE "Basic YWxpY2U6czNjcmV0" /* alice:s3cret */

static int token_hits;

static void bearer_challenge(struct srv_conn *c)
{
    char h[512];
    snprintf(h, sizeof(h),
             "WWW-Authenticate: Bearer realm=\"%s\",service=\"test-registry\","
             "scope=\"repository:lib/app:pull\"\r\n",
             T.realm);
    reply_str(c, 401, h, "{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}");
}

static void h_bearer(struct srv_conn *c, const struct srv_req *req)
{
    if (target_is(req, "/token")) {
        token_hits++;
        const char *auth = req_header(req, "authorization");
        if (strcmp(req->method, "POST") == 0) {
            if (strcmp(form_value(req->body, "refresh_token") ?: "", "rt-secret") == 0)
                reply_str(c, 200, NULL, "{\"access_token\":\"tok-2\",\"expires_in\":300}");
            else
                reply_str(c, 401, NULL, "{}");
        } else if (auth && strcmp(auth, BASIC_ALICE) == 0) {
            reply_str(c, 200, NULL, "{\"token\":\"tok-1\",\"expires_in\":300}");
        } else if (!auth) {
            reply_str(c, 200, NULL, "{\"token\":\"tok-anon\"}");
        } else {
            reply_str(c, 401, NULL, "{}");
        }
        return;
    }
    const char *auth = req_header(req, "authorization");
    if (!auth || (strcmp(auth, "Bearer tok-1") != 0 && strcmp(auth, "Bearer tok-2") != 0)) {
        bearer_challenge(c);
        return;
    }
    if (strstr(req->target, "/blobs/"))
        send_blob_from(c, req);
    else
        reply_str(c, 200, "Content-Type: " OCI_MANIFEST "\r\n", MANIFEST_BODY);
}

static void test_bearer_token(void **state)
{
    srv.handler = h_bearer;
    token_hits = 0;
    reg_new();
    struct registry_auth a = {.username = "alice", .password = "s3cret"};
    struct result *r = fetch_manifest(0, NULL, &a);
    run_until_done();
    assert_int_equal(r->code, 0);
    assert_int_equal(srv.n_reqs, 3);
    assert_null(req_header(&srv.reqs[0], "authorization"));
    const struct srv_req *tok = &srv.reqs[1];
    assert_true(target_is(tok, "/token"));
    assert_string_equal(tok->method, "GET");
    assert_string_equal(req_header(tok, "authorization"), BASIC_ALICE);
    assert_string_equal(query_value(tok, "service"), "test-registry");
    assert_string_equal(query_value(tok, "scope"), "repository:lib/app:pull");
    assert_string_equal(req_header(&srv.reqs[2], "authorization"), "Bearer tok-1");

    /* The token is cached: the next fetch sends it straight away. */
    struct result *b = fetch_blob(1, digests[0], BLOB_LEN, 0, &a);
    run_until_done();
    assert_blob(b, 0);
    assert_int_equal(token_hits, 1);
    assert_int_equal(srv.n_reqs, 4);
    assert_string_equal(req_header(&srv.reqs[3], "authorization"), "Bearer tok-1");

    /* Other credentials are another cache entry. */
    struct registry_auth other = {.username = "bob", .password = "x"};
    struct result *o = fetch_manifest(2, NULL, &other);
    run_until_done();
    assert_int_equal(o->code, GRPC_UNAUTHENTICATED);
    assert_int_equal(token_hits, 2);
}

static void test_identity_token(void **state)
{
    srv.handler = h_bearer;
    token_hits = 0;
    reg_new();
    struct registry_auth a = {.identity_token = "rt-secret"};
    struct result *r = fetch_manifest(0, NULL, &a);
    run_until_done();
    assert_int_equal(r->code, 0);
    assert_int_equal(srv.n_reqs, 3);
    const struct srv_req *tok = &srv.reqs[1];
    assert_string_equal(tok->method, "POST");
    assert_true(target_is(tok, "/token"));
    assert_null(req_header(tok, "authorization"));
    assert_string_equal(form_value(tok->body, "grant_type"), "refresh_token");
    assert_string_equal(form_value(tok->body, "refresh_token"), "rt-secret");
    assert_string_equal(form_value(tok->body, "service"), "test-registry");
    assert_string_equal(form_value(tok->body, "scope"), "repository:lib/app:pull");
    assert_string_equal(form_value(tok->body, "client_id"), "tinycri");
    assert_string_equal(req_header(&srv.reqs[2], "authorization"), "Bearer tok-2");
}

static const char *valid_token;

static void h_rotating(struct srv_conn *c, const struct srv_req *req)
{
    if (target_is(req, "/token")) {
        token_hits++;
        char body[128];
        snprintf(body, sizeof(body), "{\"token\":\"%s\",\"expires_in\":300}", valid_token);
        reply_str(c, 200, NULL, body);
        return;
    }
    char want[128];
    snprintf(want, sizeof(want), "Bearer %s", valid_token);
    const char *auth = req_header(req, "authorization");
    if (auth && strcmp(auth, want) == 0)
        reply_str(c, 200, "Content-Type: " OCI_MANIFEST "\r\n", MANIFEST_BODY);
    else
        bearer_challenge(c);
}

static void test_cached_token_refused(void **state)
{
    srv.handler = h_rotating;
    token_hits = 0;
    valid_token = "tok-old";
    reg_new();
    struct result *r = fetch_manifest(0, NULL, NULL);
    run_until_done();
    assert_int_equal(r->code, 0);
    /* The registry rotated its keys: the cached token is refused once, then replaced. */
    valid_token = "tok-new";
    struct result *r2 = fetch_manifest(1, NULL, NULL);
    run_until_done();
    assert_int_equal(r2->code, 0);
    assert_int_equal(token_hits, 2);
    assert_int_equal(srv.n_reqs, 6);
    assert_string_equal(req_header(&srv.reqs[3], "authorization"), "Bearer tok-old");
    assert_string_equal(req_header(&srv.reqs[5], "authorization"), "Bearer tok-new");
}

static void h_registry_token(struct srv_conn *c, const struct srv_req *req)
{
    const char *auth = req_header(req, "authorization");
    if (auth && strcmp(auth, "Bearer given-token") == 0)
        reply_str(c, 200, "Content-Type: " OCI_MANIFEST "\r\n", MANIFEST_BODY);
    else
        bearer_challenge(c);
}

static void test_registry_token(void **state)
{
    srv.handler = h_registry_token;
    reg_new();
    struct registry_auth a = {.registry_token = "given-token"};
    struct result *r = fetch_manifest(0, NULL, &a);
    struct registry_auth wrong = {.registry_token = "stale"};
    struct result *w = fetch_manifest(1, NULL, &wrong);
    run_until_done();
    assert_int_equal(r->code, 0);
    assert_int_equal(w->code, GRPC_UNAUTHENTICATED);
    assert_int_equal(srv.n_reqs, 2); /* sent directly, and no token endpoint */
}

static void h_basic(struct srv_conn *c, const struct srv_req *req)
{
    const char *auth = req_header(req, "authorization");
    if (auth && strcmp(auth, BASIC_ALICE) == 0)
        reply_str(c, 200, "Content-Type: " OCI_MANIFEST "\r\n", MANIFEST_BODY);
    else
        reply_str(c, 401, "WWW-Authenticate: Basic realm=\"test\"\r\n", "");
}

static void test_basic_challenge(void **state)
{
    srv.handler = h_basic;
    reg_new();
    struct registry_auth a = {.auth = "YWxpY2U6czNjcmV0"};
    struct result *r = fetch_manifest(0, NULL, &a);
    run_until_done();
    assert_int_equal(r->code, 0);
    assert_int_equal(srv.n_reqs, 2);
    assert_null(req_header(&srv.reqs[0], "authorization"));
    assert_string_equal(req_header(&srv.reqs[1], "authorization"), BASIC_ALICE);
}

static void test_config_credentials(void **state)
{
    /* Without credentials in the request, the host's section supplies them. */
    srv.handler = h_basic;
    T.cfg.registries[0].username = (char *)"alice";
    T.cfg.registries[0].password = (char *)"s3cret";
    reg_new();
    struct result *r = fetch_manifest(0, NULL, NULL);
    run_until_done();
    assert_int_equal(r->code, 0);
    assert_string_equal(req_header(&srv.reqs[1], "authorization"), BASIC_ALICE);
}

static void h_unauth(struct srv_conn *c, const struct srv_req *req)
{
    if (target_is(req, "/token")) {
        token_hits++;
        if (req_header(req, "authorization"))
            reply_str(c, 401, NULL, "{}");
        else
            reply_str(c, 200, NULL, "{\"token\":\"tok-anon\"}");
    } else if (target_is(req, MANIFEST_PATH)) {
        reply_str(c, 401, "WWW-Authenticate: Basic realm=\"test\"\r\n", "");
    } else {
        bearer_challenge(c); /* even the anonymous token is refused */
    }
}

static void test_unauthenticated(void **state)
{
    srv.handler = h_unauth;
    token_hits = 0;
    reg_new();
    struct result *basic = fetch_manifest(0, NULL, NULL);
    run_until_done();
    char want[128];
    snprintf(want, sizeof(want), "authentication required by %s", T.host);
    assert_int_equal(basic->code, GRPC_UNAUTHENTICATED);
    assert_non_null(strstr(basic->msg, want));
    assert_int_equal(srv.n_reqs, 1);

    struct result *bearer = fetch_manifest(1, "v2", NULL);
    run_until_done();
    assert_int_equal(bearer->code, GRPC_UNAUTHENTICATED);
    assert_non_null(strstr(bearer->msg, want));
    assert_int_equal(token_hits, 1);
    assert_null(req_header(&srv.reqs[2], "authorization"));
    assert_string_equal(req_header(&srv.reqs[3], "authorization"), "Bearer tok-anon");

    /* Wrong credentials at the token endpoint. */
    struct registry_auth a = {.username = "alice", .password = "wrong"};
    struct result *wrong = fetch_manifest(2, "v2", &a);
    run_until_done();
    assert_int_equal(wrong->code, GRPC_UNAUTHENTICATED);
    assert_non_null(strstr(wrong->msg, "refused the credentials"));
    assert_null(strstr(wrong->msg, "wrong")); /* never the password */
}

/* ---- retries ---- */

static void h_flaky(struct srv_conn *c, const struct srv_req *req)
{
    if (T.counter++ < 2)
        reply_str(c, 503, NULL, "busy");
    else
        reply_str(c, 200, "Content-Type: " OCI_MANIFEST "\r\n", MANIFEST_BODY);
}

static void test_retry_5xx(void **state)
{
    srv.handler = h_flaky;
    reg_new();
    int64_t start = now_monotonic_ns();
    struct result *r = fetch_manifest(0, NULL, NULL);
    run_until_done();
    int64_t ms = (now_monotonic_ns() - start) / MS_NS;
    assert_int_equal(r->code, 0);
    assert_int_equal(srv.n_reqs, 3);
    assert_true(ms >= 550); /* 200 + 400 ms of backoff */
}

static void h_always_503(struct srv_conn *c, const struct srv_req *req)
{
    reply_str(c, 503, "Retry-After: 0\r\n", "");
}

static void test_retries_exhausted(void **state)
{
    srv.handler = h_always_503;
    reg_new();
    int64_t start = now_monotonic_ns();
    struct result *r = fetch_blob(0, digests[0], -1, 0, NULL);
    run_until_done();
    assert_true((now_monotonic_ns() - start) / MS_NS < 1000); /* Retry-After: 0 was honoured */
    assert_int_equal(r->code, GRPC_UNAVAILABLE);
    assert_non_null(strstr(r->msg, "HTTP 503"));
    assert_non_null(strstr(r->msg, "gave up after 5 attempts"));
    assert_int_equal(srv.n_reqs, 5);
}

static void h_cut(struct srv_conn *c, const struct srv_req *req)
{
    if (T.counter++ == 0) {
        /* Announce the whole blob, send part of it, hang up. */
        reply_ex(c, 200, NULL, blob, BLOB_LEN, CUT_AT, true);
        return;
    }
    send_blob_from(c, req);
}

static void test_blob_resume(void **state)
{
    srv.handler = h_cut;
    reg_new();
    struct result *r = fetch_blob(0, digests[0], BLOB_LEN, 0, NULL);
    run_until_done();
    assert_blob(r, 0);
    assert_int_equal(registry_fetch_bytes(NULL), 0);
    assert_int_equal(srv.n_reqs, 2);
    assert_null(req_header(&srv.reqs[0], "range"));
    char want[64];
    snprintf(want, sizeof(want), "bytes=%d-", CUT_AT);
    assert_string_equal(req_header(&srv.reqs[1], "range"), want);
}

static void test_blob_resume_range_ignored(void **state)
{
    srv.handler = h_cut;
    T.ignore_range = true;
    reg_new();
    struct result *r = fetch_blob(0, digests[0], -1, 0, NULL);
    run_until_done();
    assert_blob(r, 0); /* the repeated first CUT_AT bytes were dropped */
    assert_int_equal(srv.n_reqs, 2);
    assert_non_null(req_header(&srv.reqs[1], "range"));
}

static void h_short(struct srv_conn *c, const struct srv_req *req)
{
    if (T.counter++ == 0) {
        /* A clean response that is shorter than the descriptor says. */
        reply(c, 200, NULL, blob, CUT_AT);
        return;
    }
    send_blob_from(c, req);
}

static void test_blob_short_body_resumes(void **state)
{
    srv.handler = h_short;
    reg_new();
    struct result *r = fetch_blob(0, digests[0], BLOB_LEN, 0, NULL);
    run_until_done();
    assert_blob(r, 0);
    char want[64];
    snprintf(want, sizeof(want), "bytes=%d-", CUT_AT);
    assert_string_equal(req_header(&srv.reqs[1], "range"), want);
}

static void h_blob(struct srv_conn *c, const struct srv_req *req)
{
    send_blob_from(c, req);
}

static void test_blob_offset(void **state)
{
    srv.handler = h_blob;
    reg_new();
    struct result *r = fetch_blob(0, digests[0], BLOB_LEN, 1000, NULL);
    run_until_done();
    assert_blob(r, 1000);
    assert_string_equal(req_header(&srv.reqs[0], "range"), "bytes=1000-");

    T.ignore_range = true;
    struct result *r2 = fetch_blob(1, digests[0], BLOB_LEN, 5000, NULL);
    run_until_done();
    assert_blob(r2, 5000);
    assert_int_equal(registry_fetch_bytes(NULL), 0);
}

static void test_blob_larger_than_descriptor(void **state)
{
    srv.handler = h_blob;
    reg_new();
    struct result *r = fetch_blob(0, digests[0], 1000, 0, NULL);
    run_until_done();
    assert_int_equal(r->code, GRPC_RESOURCE_EXHAUSTED);
    assert_true(r->data.len <= 1000);
}

static void h_redirect(struct srv_conn *c, const struct srv_req *req)
{
    if (strncmp(req->target, "/storage/", 9) == 0) {
        reply(c, 200, NULL, blob, BLOB_LEN);
        return;
    }
    reply_str(c, 307, "Location: /storage/blob1?X-Signature=secret\r\n", "moved");
}

static void test_blob_redirect(void **state)
{
    srv.handler = h_redirect;
    reg_new();
    struct result *r = fetch_blob(0, digests[0], BLOB_LEN, 0, NULL);
    run_until_done();
    assert_blob(r, 0);
    assert_int_equal(srv.n_reqs, 2);
    assert_string_equal(srv.reqs[1].target, "/storage/blob1?X-Signature=secret");
}

/* ---- mirrors ---- */

static void h_mirror(struct srv_conn *c, const struct srv_req *req)
{
    if (strncmp(req->target, "/m404/", 6) == 0)
        reply_str(c, 404, NULL, "");
    else if (strncmp(req->target, "/m503/", 6) == 0)
        reply_str(c, 503, "Retry-After: 0\r\n", "");
    else if (strstr(req->target, "/blobs/"))
        send_blob_from(c, req);
    else
        reply_str(c, 200, "Content-Type: " OCI_MANIFEST "\r\n", MANIFEST_BODY);
}

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd); /* nobody listens there now */
    return ntohs(sin.sin_port);
}

static void test_mirror_fallback(void **state)
{
    srv.handler = h_mirror;
    snprintf(T.mirror1, sizeof(T.mirror1), "http://%s/m404/", T.host);
    snprintf(T.mirror2, sizeof(T.mirror2), "http://127.0.0.1:%d", closed_port());
    T.cfg.registries[0].mirrors[0] = T.mirror1;
    T.cfg.registries[0].mirrors[1] = T.mirror2;
    T.cfg.registries[0].n_mirrors = 2;
    reg_new();
    int64_t start = now_monotonic_ns();
    struct result *r = fetch_manifest(0, NULL, NULL);
    run_until_done();
    int64_t ms = (now_monotonic_ns() - start) / MS_NS;
    assert_int_equal(r->code, 0);
    assert_int_equal(srv.n_reqs, 2);
    assert_string_equal(srv.reqs[0].target, "/m404" MANIFEST_PATH);
    assert_string_equal(srv.reqs[1].target, MANIFEST_PATH);
    assert_true(ms < 1000); /* a refused mirror is skipped at once */
}

static void test_mirror_5xx_then_origin(void **state)
{
    srv.handler = h_mirror;
    snprintf(T.mirror1, sizeof(T.mirror1), "http://%s/m503", T.host);
    T.cfg.registries[0].mirrors[0] = T.mirror1;
    T.cfg.registries[0].n_mirrors = 1;
    reg_new();
    struct result *r = fetch_blob(0, digests[0], BLOB_LEN, 0, NULL);
    run_until_done();
    assert_blob(r, 0);
    assert_int_equal(srv.n_reqs, 6); /* 5 attempts on the mirror, then the origin */
    assert_string_equal(srv.reqs[5].target, blob_path[0]);
}

static void test_tls_unless_insecure(void **state)
{
    /* 127.0.0.1 is not insecure unless configured: https, which this server refuses. */
    srv.handler = h_manifest_ok;
    T.cfg.n_registries = 0;
    reg_new();
    struct result *r = fetch_manifest(0, NULL, NULL);
    run_until_done();
    assert_int_equal(r->code, GRPC_UNAVAILABLE);
    assert_non_null(strstr(r->msg, T.host));
    assert_int_equal(srv.n_reqs, 0);
    assert_int_equal(srv.accepted, 1); /* a TLS failure is not retried */
}

static void test_bad_mirror_config(void **state)
{
    T.cfg.registries[0].mirrors[0] = (char *)"ftp://example.com";
    T.cfg.registries[0].n_mirrors = 1;
    struct error *err = NULL;
    assert_null(registry_new(&T.cfg, &err));
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    error_free(err);
}

/* Mirror URLs are parsed without libcurl, which registry_new() does not load. */
static void test_mirror_urls(void **state)
{
    static const char *const good[] = {
        "http://m.example:5000",  "https://m.example/prefix/", "HTTPS://m.example:0443/a/b",
        "m.example/no-scheme",    "http://[::1]:5000/",        "http://m.example:",
        "http://10.0.0.1/v2-pfx",
    };
    static const char *const bad[] = {
        "ftp://m.example",        "http://",       "http://:5000",    "http://m.example:99999",
        "http://m.example:0",     "http://u:p@m",  "http://m/a/../b", "http://m/./b",
        "http://m.example/a?b=c", "http://m#frag", "http://[zz]:1",   "http://m ex",
        "http://m.example:12ab",  "http://[::1]x", "http://m\\x",
    };
    struct error *err = NULL;
    T.cfg.registries[0].n_mirrors = 1;
    for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
        T.cfg.registries[0].mirrors[0] = (char *)good[i];
        struct registry *r = registry_new(&T.cfg, &err);
        if (!r)
            print_message("refused %s: %s\n", good[i], err->msg);
        assert_non_null(r);
        registry_free(r);
    }
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        T.cfg.registries[0].mirrors[0] = (char *)bad[i];
        struct registry *r = registry_new(&T.cfg, &err);
        if (r)
            print_message("accepted %s\n", bad[i]);
        assert_null(r);
        assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
        assert_null(strstr(err->msg, "u:p")); /* credentials are never quoted */
        error_clear(&err);
    }
    assert_false(xferlib_is_loaded());
}

/* ---- concurrency, cancel, free ---- */

static void h_hold(struct srv_conn *c, const struct srv_req *req)
{
    hold(c);
}

static void on_release(void *arg)
{
    struct srv_conn *c = unhold();
    if (c) /* every blob here has the same bytes */
        reply(c, 200, NULL, blob, BLOB_LEN);
    loop_timer_arm(T.release_timer, 50);
}

static void test_concurrency_limit(void **state)
{
    srv.handler = h_hold;
    T.cfg.max_downloads = 2;
    reg_new();
    for (int i = 0; i < 5; i++)
        fetch_blob(i, digests[i], BLOB_LEN, 0, NULL);
    T.release_timer = loop_timer_new(on_release, NULL);
    loop_timer_arm(T.release_timer, 200);
    run_until_done();
    for (int i = 0; i < 5; i++)
        assert_blob(&T.res[i], 0);
    assert_int_equal(srv.n_reqs, 5);
    assert_int_equal(srv.max_in_flight, 2);
    /* FIFO: the queued ones were sent in the order they were asked for. */
    assert_string_equal(srv.reqs[2].target, blob_path[2]);
    assert_string_equal(srv.reqs[3].target, blob_path[3]);
    assert_string_equal(srv.reqs[4].target, blob_path[4]);
}

static void h_hold_blobs(struct srv_conn *c, const struct srv_req *req)
{
    if (strstr(req->target, "/blobs/"))
        hold(c);
    else
        reply_str(c, 200, "Content-Type: " OCI_MANIFEST "\r\n", MANIFEST_BODY);
}

static void test_manifest_not_limited(void **state)
{
    srv.handler = h_hold_blobs;
    T.cfg.max_downloads = 1;
    reg_new();
    fetch_blob(0, digests[0], BLOB_LEN, 0, NULL);
    fetch_blob(1, digests[1], BLOB_LEN, 0, NULL);
    T.pending = 0;
    struct result *m = fetch_manifest(2, NULL, NULL);
    run_until_done(); /* only the manifest ends: the blob slot is taken */
    assert_int_equal(m->code, 0);
    assert_int_equal(srv.n_held, 1);
    assert_int_equal(T.res[1].done_calls, 0);
    /* Cancelling the queued blob and the running one: no callbacks, slot handed on. */
    registry_fetch_cancel(T.res[1].f);
    registry_fetch_cancel(T.res[0].f);
    T.pending = 1;
    fetch_blob(3, digests[3], BLOB_LEN, 0, NULL);
    run_loop_for(200);
    assert_int_equal(T.res[0].done_calls, 0);
    assert_int_equal(T.res[1].done_calls, 0);
    assert_int_equal(srv.n_reqs, 3); /* blob 0, the manifest, blob 3 */
    assert_string_equal(srv.reqs[2].target, blob_path[3]);
}

static void test_cancel_in_data_callback(void **state)
{
    srv.handler = h_blob;
    reg_new();
    struct result *r = fetch_blob(0, digests[0], BLOB_LEN, 0, NULL);
    r->cancel_in_data = true;
    run_loop_for(300);
    assert_true(r->data_calls >= 1);
    assert_int_equal(r->done_calls, 0);
    /* The client goes on working. */
    T.pending = 0;
    struct result *r2 = fetch_blob(1, digests[1], BLOB_LEN, 0, NULL);
    run_until_done();
    assert_blob(r2, 0);
}

static void test_data_callback_fails(void **state)
{
    srv.handler = h_blob;
    reg_new();
    struct result *with_err = fetch_blob(0, digests[0], BLOB_LEN, 0, NULL);
    with_err->fail_in_data = 1;
    struct result *plain = fetch_blob(1, digests[1], BLOB_LEN, 0, NULL);
    plain->fail_in_data = 2;
    run_until_done();
    assert_int_equal(with_err->code, GRPC_DATA_LOSS);
    assert_string_equal(with_err->msg, "consumer says no");
    assert_int_equal(plain->code, GRPC_CANCELLED);
    assert_int_equal(with_err->done_calls, 1);
    assert_int_equal(plain->done_calls, 1);
    assert_int_equal(srv.n_reqs, 2); /* no retry after the consumer said stop */
}

/* fds the test runner handed us (stdio, and whatever its shell left open). */
static bool inherited_at_start[1024];

static void note_inherited_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd != dirfd(d) && fd < 1024)
            inherited_at_start[fd] = true;
    }
    if (d)
        closedir(d);
}

/* Open fds without FD_CLOEXEC that we made. */
static int count_inheritable_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd == dirfd(d) || (fd < 1024 && inherited_at_start[fd]))
            continue;
        int fl = fcntl(fd, F_GETFD);
        if (fl >= 0 && !(fl & FD_CLOEXEC)) {
            char link[64], target[256] = "";
            snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
            ssize_t len = readlink(link, target, sizeof(target) - 1);
            if (len > 0)
                target[len] = '\0';
            print_message("inheritable fd %d -> %s\n", fd, target);
            n++;
        }
    }
    closedir(d);
    return n;
}

static void test_free_with_fetches_in_flight(void **state)
{
    srv.handler = h_hold;
    T.cfg.max_downloads = 1;
    reg_new();
    fetch_blob(0, digests[0], BLOB_LEN, 0, NULL);
    fetch_blob(1, digests[1], BLOB_LEN, 0, NULL);
    fetch_manifest(2, NULL, NULL);
    run_loop_for(200);
    assert_int_equal(srv.n_held, 2);
    assert_int_equal(count_inheritable_fds(), 0);
    registry_free(T.reg);
    T.reg = NULL;
    run_loop_for(100);
    for (int i = 0; i < 3; i++)
        assert_int_equal(T.res[i].done_calls, 0);
    assert_int_equal(srv.n_held, 0); /* the client hung up */
}

/*
 * The multi outlives its last fetch for a while: the next fetch, a blob of
 * the same pull or the next pull, goes over the connection already open.
 * Once the idle time has passed the multi and libcurl go.
 */
static void test_connections_kept_between_fetches(void **state)
{
    registry_set_multi_idle_ms(200);
    xferlib_set_idle_ms(50);
    srv.handler = h_blob;
    reg_new();
    struct result *a = fetch_blob(0, digests[0], BLOB_LEN, 0, NULL);
    run_until_done();
    assert_blob(a, 0);
    run_loop_for(50); /* well within the idle time */
    assert_true(xferlib_is_loaded());
    struct result *b = fetch_blob(1, digests[0], BLOB_LEN, 0, NULL);
    run_until_done();
    assert_blob(b, 0);
    assert_int_equal(srv.n_reqs, 2);
    assert_int_equal(srv.accepted, 1); /* one connection for both */

    run_loop_for(500); /* the multi's idle time, then libcurl's */
    assert_false(xferlib_is_loaded());
    struct result *c = fetch_blob(2, digests[0], BLOB_LEN, 0, NULL);
    run_until_done();
    assert_blob(c, 0);
    assert_int_equal(srv.accepted, 2); /* a new multi, a new connection */
}

/* libcurl comes with the first fetch and goes after the last; the token cache stays. */
static void test_libcurl_only_while_fetching(void **state)
{
    xferlib_set_idle_ms(50);
    srv.handler = h_bearer;
    token_hits = 0;
    reg_new();
    assert_false(xferlib_is_loaded());
    struct registry_auth a = {.username = "alice", .password = "s3cret"};
    struct result *r = fetch_manifest(0, NULL, &a);
    assert_true(xferlib_is_loaded());
    run_until_done();
    assert_int_equal(r->code, 0);
    assert_int_equal(token_hits, 1);
    run_loop_for(300);
    assert_false(xferlib_is_loaded());

    /* Loaded again, with a new multi whose socketpair does not leak into children. */
    struct result *b = fetch_blob(1, digests[0], BLOB_LEN, 0, &a);
    assert_true(xferlib_is_loaded());
    assert_int_equal(count_inheritable_fds(), 0);
    run_until_done();
    assert_blob(b, 0);
    assert_int_equal(token_hits, 1); /* the cached token was sent */
    assert_string_equal(req_header(&srv.reqs[srv.n_reqs - 1], "authorization"), "Bearer tok-1");

    /* A fetch that fails before it starts does not keep libcurl either. */
    struct image_ref ref = app_ref();
    struct registry_auth junk = {.auth = "not base64!"};
    struct error *err = NULL;
    assert_null(registry_fetch_manifest(T.reg, &ref, NULL, &junk, on_manifest, &T.res[2], &err));
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    error_free(err);
    run_loop_for(300);
    assert_false(xferlib_is_loaded());
}

int main(void)
{
    note_inherited_fds();
    uint32_t x = 12345;
    for (size_t i = 0; i < BLOB_LEN; i++) {
        x = x * 1103515245u + 12345u;
        blob[i] = (uint8_t)(x >> 16);
    }
    for (int i = 0; i < 6; i++) {
        char hex[65];
        memset(hex, '0' + i, 64);
        hex[64] = '\0';
        snprintf(digests[i], sizeof(digests[i]), "sha256:%s", hex);
        snprintf(blob_path[i], sizeof(blob_path[i]), "/v2/lib/app/blobs/%.72s", digests[i]);
    }
    /* The client honours proxy variables; the tests talk to 127.0.0.1 directly. */
    const char *proxies[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                             "HTTPS_PROXY", "all_proxy",  "ALL_PROXY"};
    for (size_t i = 0; i < sizeof(proxies) / sizeof(proxies[0]); i++)
        unsetenv(proxies[i]);
    if (getenv("TEST_DEBUG"))
        log_set_level(LOG_LEVEL_DEBUG);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_manifest_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_statuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bearer_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cached_token_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_basic_challenge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_credentials, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unauthenticated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_5xx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retries_exhausted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_resume_range_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_short_body_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_larger_than_descriptor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_redirect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mirror_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mirror_5xx_then_origin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_unless_insecure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_mirror_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mirror_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrency_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest_not_limited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_in_data_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_callback_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_fetches_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_libcurl_only_while_fetching, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connections_kept_between_fetches, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
