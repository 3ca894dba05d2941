/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for image/pull, driven against the scripted registry server
 * (registry_server.h) with a real store, registry client and unpack child:
 * a pull walks manifest, config and layer into an image record and reports
 * once, never inside pull_start(); concurrent pulls of one image share its
 * downloads; a cancelled pull never reports, and its shared download goes on
 * for the other pull (or stops when nobody waits for it); failures (an
 * unknown manifest, a blob whose content does not match its digest, a bad
 * reference) come back with their codes and leave no image.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/error.h"
#include "core/loop.h"
#include "core/util.h"
#include "helpers.h"
#include "image/manifest.h"
#include "image/pull.h"
#include "image/registry.h"
#include "image/store.h"
#include "image/xferlib.h"
#include "registry_server.h"

#define SAFETY_MS 20000
#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define OCI_LAYER "application/vnd.oci.image.layer.v1.tar"

static char tmp[64];
static char host[64];
static struct config cfg;
static struct store *store;
static struct registry *reg;
static struct puller *puller;

/* The image the server has: one layer holding hello.txt. */
static struct {
    char *layer;
    size_t layer_len;
    char layer_digest[80];
    char *config;
    char config_digest[80];
    char *manifest;
    char manifest_digest[80];
    bool corrupt_layer; /* serve other bytes than the digest says */
    bool hold_layer;    /* keep layer requests unanswered until released */
    int layer_gets, config_gets, manifest_gets;
} img;

static void digest_of(const void *data, size_t len, char out[80])
{
    char hex[XFERLIB_SHA256_HEX_LEN + 1];
    struct error *err = NULL;
    assert_int_equal(xferlib_sha256_hex(data, len, hex, &err), 0);
    snprintf(out, 80, "sha256:%s", hex);
}

/* An uncompressed tar of one file, in memory. */
static void make_layer(void)
{
    size_t cap = 64 * 1024, used = 0;
    img.layer = xmalloc(cap);
    struct archive *a = archive_write_new();
    assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_memory(a, img.layer, cap, &used), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, "hello.txt");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, 3);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    assert_int_equal(archive_write_data(a, "hi\n", 3), 3);
    archive_entry_free(e);
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    img.layer_len = used;
    digest_of(img.layer, img.layer_len, img.layer_digest);
}

static void make_image(void)
{
    make_layer();
    img.config =
        xasprintf("{\"architecture\":\"%s\",\"os\":\"linux\",\"config\":{\"User\":\"1000\"},"
                  "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\"]}}",
                  manifest_host_arch(), img.layer_digest);
    digest_of(img.config, strlen(img.config), img.config_digest);
    img.manifest =
        xasprintf("{\"schemaVersion\":2,\"mediaType\":\"" OCI_MANIFEST "\","
                  "\"config\":{\"mediaType\":\"" OCI_CONFIG "\",\"digest\":\"%s\",\"size\":%zu},"
                  "\"layers\":[{\"mediaType\":\"" OCI_LAYER "\",\"digest\":\"%s\",\"size\":%zu}]}",
                  img.config_digest, strlen(img.config), img.layer_digest, img.layer_len);
    digest_of(img.manifest, strlen(img.manifest), img.manifest_digest);
}

static void send_layer(struct srv_conn *c)
{
    if (img.corrupt_layer) {
        _cleanup_free_ char *other = xmalloc(img.layer_len);
        memset(other, 'x', img.layer_len);
        reply(c, 200, NULL, other, img.layer_len);
        return;
    }
    reply(c, 200, NULL, img.layer, img.layer_len);
}

static void h_registry(struct srv_conn *c, const struct srv_req *req)
{
    _cleanup_free_ char *by_digest = xasprintf("/v2/lib/app/manifests/%s", img.manifest_digest);
    _cleanup_free_ char *config = xasprintf("/v2/lib/app/blobs/%s", img.config_digest);
    _cleanup_free_ char *layer = xasprintf("/v2/lib/app/blobs/%s", img.layer_digest);
    if (target_is(req, "/v2/lib/app/manifests/v1") || target_is(req, by_digest)) {
        img.manifest_gets++;
        reply_str(c, 200, "Content-Type: " OCI_MANIFEST "\r\n", img.manifest);
    } else if (target_is(req, config)) {
        img.config_gets++;
        reply_str(c, 200, NULL, img.config);
    } else if (target_is(req, layer)) {
        img.layer_gets++;
        if (img.hold_layer)
            hold(c);
        else
            send_layer(c);
    } else {
        reply_str(c, 404, NULL, "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\"}]}");
    }
}

static void release_held_layers(void)
{
    img.hold_layer = false;
    struct srv_conn *c;
    while ((c = unhold()))
        send_layer(c);
}

/* ---- pulls ---- */

struct outcome {
    int calls;
    bool in_start; /* set while pull_start() runs */
    bool called_inside;
    int code;
    char msg[512];
    char image_id[96];
};

static int pending;

static void on_pulled(uint64_t pull_id, const char *image_id, const struct error *err, void *arg)
{
    struct outcome *o = arg;
    o->calls++;
    o->called_inside = o->called_inside || o->in_start;
    o->code = err ? err->grpc_code : GRPC_OK;
    snprintf(o->msg, sizeof(o->msg), "%s", err ? err->msg : "");
    snprintf(o->image_id, sizeof(o->image_id), "%s", image_id ? image_id : "");
    if (--pending <= 0)
        loop_exit();
}

static uint64_t start(const char *ref, struct outcome *o)
{
    struct error *err = NULL;
    o->in_start = true;
    uint64_t id = pull_start(puller, ref, NULL, on_pulled, o, &err);
    o->in_start = false;
    if (!id)
        fail_msg("pull_start: %s", err->msg);
    pending++;
    return id;
}

static char *ref_of(const char *tail)
{
    return xasprintf("%s/lib/app%s", host, tail);
}

static int setup(void **state)
{
    snprintf(tmp, sizeof(tmp), "/tmp/tc-pull-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    struct error *err = NULL;
    assert_int_equal(loop_init(&err), 0);
    srv_start();
    srv.handler = h_registry;
    snprintf(host, sizeof(host), "127.0.0.1:%d", srv.port);
    memset(&cfg, 0, sizeof(cfg));
    cfg.registries[0].host = host;
    cfg.registries[0].insecure = true;
    cfg.n_registries = 1;
    cfg.progress_interval_s = 60;
    memset(&img, 0, sizeof(img));
    make_image();
    store = store_open(tmp, &err);
    assert_non_null(store);
    reg = registry_new(&cfg, &err);
    assert_non_null(reg);
    puller = puller_new(store, reg, &cfg);
    pending = 0;
    return 0;
}

static int teardown(void **state)
{
    puller_free(puller);
    registry_free(reg);
    run_until_no_children(SAFETY_MS); /* unpack children of cancelled jobs */
    store_free(store);
    srv_stop();
    xferlib_shutdown();
    loop_shutdown();
    free(img.layer);
    free(img.config);
    free(img.manifest);
    _cleanup_free_ char *cmd = xasprintf("rm -rf %s", tmp);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static void test_pull_image(void **state)
{
    _cleanup_free_ char *ref = ref_of(":v1");
    struct outcome o = {0};
    start(ref, &o);
    assert_int_equal(o.calls, 0); /* never inside pull_start() */
    run_loop(SAFETY_MS);
    assert_int_equal(o.calls, 1);
    assert_false(o.called_inside);
    assert_int_equal(o.code, GRPC_OK);
    assert_string_equal(o.image_id, img.config_digest);

    const struct store_image *si = store_image_find(store, ref);
    assert_non_null(si);
    assert_string_equal(si->id, img.config_digest);
    assert_string_equal(si->manifest_digest, img.manifest_digest);
    assert_string_equal(si->user, "1000");
    assert_int_equal(si->n_layers, 1);
    assert_string_equal(si->diff_ids[0], img.layer_digest);
    _cleanup_free_ char *tagged = ref_of(":v1");
    assert_string_equal(si->repo_tags[0], tagged);
    _cleanup_free_ char *digested = xasprintf("%s/lib/app@%s", host, img.manifest_digest);
    assert_string_equal(si->repo_digests[0], digested);
    assert_true(store_has_layer(store, si->chain_ids[0]));
    _cleanup_free_ char *layer = store_layer_path(store, si->chain_ids[0]);
    _cleanup_free_ char *hello = xasprintf("%s/hello.txt", layer);
    struct stat st;
    assert_int_equal(stat(hello, &st), 0);
    assert_int_equal(st.st_size, 3);

    /* Again by digest: everything is there, only the manifest is fetched. */
    _cleanup_free_ char *by_digest = xasprintf("%s/lib/app@%s", host, img.manifest_digest);
    struct outcome again = {0};
    start(by_digest, &again);
    run_loop(SAFETY_MS);
    assert_int_equal(again.code, GRPC_OK);
    assert_int_equal(img.layer_gets, 1);
    assert_int_equal(img.config_gets, 1);
    assert_int_equal(img.manifest_gets, 2);
}

/* Two pulls of one image: one download of each blob, both pulls succeed. */
static void test_shared_jobs(void **state)
{
    _cleanup_free_ char *ref = ref_of(":v1");
    img.hold_layer = true;
    struct outcome a = {0}, b = {0};
    start(ref, &a);
    start(ref, &b);
    for (int i = 0; i < 200 && img.layer_gets == 0; i++)
        run_loop_for(10);
    assert_int_equal(img.layer_gets, 1);
    assert_true(puller_uses(img.layer_digest, puller)); /* claimed against image GC */
    release_held_layers();
    run_loop(SAFETY_MS);
    assert_int_equal(a.code, GRPC_OK);
    assert_int_equal(b.code, GRPC_OK);
    assert_int_equal(img.layer_gets, 1);
    assert_int_equal(img.config_gets, 1);
    assert_false(puller_uses(img.layer_digest, puller));
}

/* A cancelled pull never reports; the shared download goes on for the other pull. */
static void test_cancel(void **state)
{
    _cleanup_free_ char *ref = ref_of(":v1");
    img.hold_layer = true;
    struct outcome a = {0}, b = {0};
    uint64_t ida = start(ref, &a);
    start(ref, &b);
    for (int i = 0; i < 200 && img.layer_gets == 0; i++)
        run_loop_for(10);
    pull_cancel(puller, ida);
    pending--;
    pull_cancel(puller, ida); /* twice: a no-op */
    release_held_layers();
    run_loop(SAFETY_MS);
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.code, GRPC_OK);
    assert_int_equal(img.layer_gets, 1);
}

/* Alone, a cancelled pull stops its download: nothing is stored, nothing reports. */
static void test_cancel_alone(void **state)
{
    _cleanup_free_ char *ref = ref_of(":v1");
    img.hold_layer = true;
    struct outcome a = {0};
    uint64_t id = start(ref, &a);
    for (int i = 0; i < 200 && img.layer_gets == 0; i++)
        run_loop_for(10);
    assert_true(puller_uses(img.layer_digest, puller));
    pull_cancel(puller, id);
    run_loop_for(100);
    assert_int_equal(a.calls, 0);
    assert_false(puller_uses(img.layer_digest, puller));
    assert_null(store_image_find(store, ref));
    assert_false(store_has_blob(store, img.layer_digest));
}

static void test_failures(void **state)
{
    _cleanup_free_ char *unknown = ref_of(":nope");
    struct outcome a = {0};
    start(unknown, &a);
    run_loop(SAFETY_MS);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.code, GRPC_NOT_FOUND);
    assert_non_null(strstr(a.msg, "not found"));

    /* A layer whose bytes do not match its digest: DATA_LOSS, named, and no image. */
    img.corrupt_layer = true;
    _cleanup_free_ char *ref = ref_of(":v1");
    struct outcome b = {0};
    start(ref, &b);
    run_loop(SAFETY_MS);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.code, GRPC_DATA_LOSS);
    assert_non_null(strstr(b.msg, img.layer_digest));
    assert_null(store_image_find(store, ref));

    /* A bad reference is refused at once. */
    struct error *err = NULL;
    assert_int_equal(pull_start(puller, "UPPER/Case:x", NULL, on_pulled, &a, &err), 0);
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    error_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pull_image, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failures, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
