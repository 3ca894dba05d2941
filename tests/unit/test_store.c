/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for the image store: verified ingest, image records that
 * survive a reopen, tag moves, lookup by id/prefix/tag/digest, chain ids
 * (stored in the records, so that opening the store hashes nothing) and
 * garbage collection.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <jansson.h>

#include "core/error.h"
#include "core/loop.h"
#include "core/util.h"
#include "image/store.h"
#include "image/xferlib.h"

static char root[64];

static int setup(void **state)
{
    snprintf(root, sizeof(root), "/tmp/tc-store-XXXXXX");
    assert_non_null(mkdtemp(root));
    assert_int_equal(loop_init(NULL), 0);
    return 0;
}

static int teardown(void **state)
{
    xferlib_shutdown();
    xferlib_set_sonames(NULL, NULL);
    loop_shutdown();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* sha256("hello") */
#define HELLO "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"

static void test_ingest_verifies(void **state)
{
    struct error *err = NULL;
    struct store *s = store_open(root, &err);
    assert_non_null(s);
    struct store_ingest *in = store_ingest_new(s, HELLO, 5, &err);
    assert_non_null(in);
    assert_int_equal(store_ingest_write(in, "hel", 3, &err), 0);
    assert_int_equal(store_ingest_write(in, "lo", 2, &err), 0);
    assert_int_equal(store_ingest_offset(in), 5);
    assert_int_equal(store_ingest_commit(in, &err), 0);
    assert_true(store_has_blob(s, HELLO));

    /* Wrong content under a digest: refused, nothing stored. */
    in = store_ingest_new(s, D1, 5, &err);
    assert_int_equal(store_ingest_write(in, "HELLO", 5, &err), 0);
    assert_int_equal(store_ingest_commit(in, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_DATA_LOSS);
    assert_non_null(strstr(err->msg, "mismatch"));
    error_clear(&err);
    assert_false(store_has_blob(s, D1));

    /* More bytes than declared. */
    in = store_ingest_new(s, HELLO, 4, &err);
    assert_int_equal(store_ingest_write(in, "hello", 5, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_DATA_LOSS);
    error_clear(&err);
    store_ingest_abort(in);

    /* No ingest file is left behind. */
    char ingest[128];
    snprintf(ingest, sizeof(ingest), "rmdir %s/content/ingest", root);
    assert_int_equal(system(ingest), 0);
    store_free(s);
}

static struct store_image *make_image_diff(const char *id, const char *tag, const char *layer,
                                           const char *diff)
{
    struct store_image *img = xcalloc(1, sizeof(*img));
    img->id = xstrdup(id);
    img->manifest_digest = xstrdup(D2);
    img->user = xstrdup("1000");
    img->size = 42;
    img->n_layers = 1;
    img->layer_digests = xcalloc(1, sizeof(char *));
    img->layer_digests[0] = xstrdup(layer);
    img->diff_ids = xcalloc(1, sizeof(char *));
    img->diff_ids[0] = xstrdup(diff);
    img->chain_ids = store_chain_ids(img->diff_ids, 1, NULL);
    img->repo_tags = xcalloc(1, sizeof(char *));
    img->repo_tags[img->n_repo_tags++] = xstrdup(tag);
    img->repo_digests = xcalloc(1, sizeof(char *));
    img->repo_digests[img->n_repo_digests++] = xasprintf("docker.io/library/busybox@%s", D2);
    return img;
}

static struct store_image *make_image(const char *id, const char *tag, const char *layer)
{
    return make_image_diff(id, tag, layer, layer);
}

static void test_records_survive_reopen(void **state)
{
    struct error *err = NULL;
    struct store *s = store_open(root, &err);
    assert_int_equal(
        store_image_put(s, make_image(D1, "docker.io/library/busybox:latest", HELLO), &err), 0);
    store_free(s);

    s = store_open(root, &err);
    assert_int_equal(store_image_count(s), 1);
    const struct store_image *img = store_image_find(s, "busybox");
    assert_non_null(img);
    assert_string_equal(img->id, D1);
    assert_string_equal(img->user, "1000");
    assert_int_equal(img->size, 42);
    assert_ptr_equal(store_image_find(s, D1), img);
    assert_ptr_equal(store_image_find(s, D1 + 7), img);
    assert_ptr_equal(store_image_find(s, "111111111111"), img);
    assert_null(store_image_find(s, "11111"));
    assert_ptr_equal(store_image_find(s, "busybox@" D2), img);
    assert_null(store_image_find(s, "busybox:other"));
    assert_null(store_image_find(s, ""));
    store_free(s);
}

static void test_corrupt_record_skipped(void **state)
{
    struct error *err = NULL;
    struct store *s = store_open(root, &err);
    store_free(s);
    char path[160];
    snprintf(path, sizeof(path), "%s/images/%s.json", root, D2 + 7);
    FILE *f = fopen(path, "w");
    fputs("{\"id\": 12", f);
    fclose(f);
    /* A temp file of an interrupted write is ignored and removed. */
    snprintf(path, sizeof(path), "%s/images/.x.json.tmp-abc", root);
    f = fopen(path, "w");
    fputs("{}", f);
    fclose(f);
    s = store_open(root, &err);
    assert_non_null(s);
    assert_int_equal(store_image_count(s), 0);
    assert_int_equal(access(path, F_OK), -1);
    store_free(s);
}

static void test_tag_moves(void **state)
{
    struct error *err = NULL;
    struct store *s = store_open(root, &err);
    assert_int_equal(store_image_put(s, make_image(D1, "docker.io/library/app:1", HELLO), &err), 0);
    assert_int_equal(store_image_put(s, make_image(D2, "docker.io/library/app:1", HELLO), &err), 0);
    assert_int_equal(store_image_count(s), 2);
    assert_string_equal(store_image_find(s, "app:1")->id, D2);
    const struct store_image *old = store_image_find(s, D1);
    assert_int_equal(old->n_repo_tags, 0);
    /* Putting the same id again merges tags. */
    assert_int_equal(store_image_put(s, make_image(D2, "docker.io/library/app:2", HELLO), &err), 0);
    assert_int_equal(store_image_count(s), 2);
    assert_int_equal(store_image_find(s, D2)->n_repo_tags, 2);
    store_free(s);

    s = store_open(root, &err);
    assert_int_equal(store_image_find(s, D1)->n_repo_tags, 0);
    assert_int_equal(store_image_find(s, "app:2")->n_repo_tags, 2);
    store_free(s);
}

static void test_chain_ids(void **state)
{
    char *diffs[] = {(char *)D1, (char *)D2};
    char **chain = store_chain_ids(diffs, 2, NULL);
    assert_string_equal(chain[0], D1);
    /* sha256("sha256:111… sha256:222…"), computed independently with sha256sum. */
    FILE *p = popen("printf '%s %s' " D1 " " D2 " | sha256sum", "r");
    char line[128] = "";
    assert_non_null(fgets(line, sizeof(line), p));
    pclose(p);
    assert_memory_equal(chain[1] + 7, line, 64);
    free(chain[0]);
    free(chain[1]);
    free(chain);
}

/* A two-layer image, whose second chain id takes a hash. */
static struct store_image *make_image_two_layers(void)
{
    struct store_image *img = make_image_diff(D2, "docker.io/library/two:1", HELLO, D1);
    img->n_layers = 2;
    img->layer_digests = xrealloc(img->layer_digests, 2 * sizeof(char *));
    img->layer_digests[1] = xstrdup(HELLO);
    img->diff_ids = xrealloc(img->diff_ids, 2 * sizeof(char *));
    img->diff_ids[1] = xstrdup(D2);
    free(img->chain_ids[0]);
    free(img->chain_ids);
    img->chain_ids = store_chain_ids(img->diff_ids, 2, NULL);
    assert_non_null(img->chain_ids);
    return img;
}

static void test_chain_ids_stored(void **state)
{
    struct error *err = NULL;
    struct store *s = store_open(root, &err);
    assert_int_equal(store_image_put(s, make_image_two_layers(), &err), 0);
    char *want = xstrdup(store_image_find(s, D2)->chain_ids[1]);
    store_free(s);

    /* Reopening must not need libcrypto: make it impossible to load. */
    xferlib_shutdown();
    xferlib_set_sonames(NULL, "libtinycri-no-such-crypto.so.0");
    s = store_open(root, &err);
    const struct store_image *img = store_image_find(s, D2);
    assert_non_null(img);
    assert_int_equal(img->n_layers, 2);
    assert_string_equal(img->chain_ids[0], D1);
    assert_string_equal(img->chain_ids[1], want);
    store_free(s);

    /* A record of an older tinycri, without chain ids: skipped while they cannot be computed... */
    char path[160];
    snprintf(path, sizeof(path), "%s/images/%s.json", root, D2 + 7);
    json_error_t jerr;
    json_t *rec = json_load_file(path, 0, &jerr);
    assert_non_null(rec);
    assert_int_equal(json_array_size(json_object_get(rec, "chainIds")), 2);
    assert_int_equal(json_object_del(rec, "chainIds"), 0);
    assert_int_equal(json_dump_file(rec, path, 0), 0);
    json_decref(rec);
    s = store_open(root, &err);
    assert_int_equal(store_image_count(s), 0);
    store_free(s);

    /* ...then computed once, and saved. */
    xferlib_set_sonames(NULL, NULL);
    s = store_open(root, &err);
    img = store_image_find(s, D2);
    assert_non_null(img);
    assert_string_equal(img->chain_ids[1], want);
    store_free(s);
    rec = json_load_file(path, 0, &jerr);
    assert_string_equal(json_string_value(json_array_get(json_object_get(rec, "chainIds"), 1)),
                        want);
    json_decref(rec);
    free(want);
}

static bool claims_d1(const char *key, void *arg)
{
    return strcmp(key, arg) == 0;
}

static void on_timeout(void *arg)
{
    loop_exit();
}

static void test_gc(void **state)
{
    struct error *err = NULL;
    struct store *s = store_open(root, &err);
    assert_int_equal(store_put_blob(s, HELLO, "hello", 5, &err), 0);
    assert_int_equal(
        store_image_put(s, make_image_diff(D1, "docker.io/library/gc:1", HELLO, D2), &err), 0);
    char **chain = store_chain_ids((char *[]){(char *)D2}, 1, NULL);
    char *layer = store_layer_path(s, chain[0]);
    assert_int_equal(mkdir(layer, 0755), 0);
    char *file = xasprintf("%s/data", layer);
    FILE *f = fopen(file, "w");
    fputs("x", f);
    fclose(f);

    /* In use by an image: nothing goes. */
    assert_int_equal(store_gc(s, NULL, NULL), 0);
    assert_int_equal(store_image_remove(s, D1, &err), 0);
    assert_int_equal(store_image_remove(s, D1, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_NOT_FOUND);
    error_clear(&err);

    /* Claimed by someone else (a pull in flight, a container): kept. */
    assert_int_equal(store_gc(s, claims_d1, chain[0]), 1);
    assert_true(store_has_layer(s, chain[0]));
    assert_false(store_has_blob(s, HELLO));
    assert_int_equal(store_gc(s, NULL, NULL), 1);
    assert_false(store_has_layer(s, chain[0]));

    /* The tree is removed by a child process on the loop. */
    struct loop_timer *t = loop_timer_new(on_timeout, NULL);
    for (int i = 0; i < 50 && child_count() > 0; i++) {
        loop_timer_arm(t, 20);
        loop_run();
    }
    loop_timer_free(t);
    assert_int_equal(child_count(), 0);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A %s/layers)\"", root);
    assert_int_equal(system(cmd), 0);
    free(file);
    free(layer);
    free(chain[0]);
    free(chain);
    store_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ingest_verifies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_survive_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_record_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tag_moves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_ids_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
