/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for image/import: tarballs built here with libarchive's writer
 * (docker save, OCI layout with a nested index, garbage, path escapes,
 * unsupported entry types) are imported into a real store in a temporary
 * root, on a real event_base with a safety timer, through the real extract
 * and unpack children. Checks what a user would see: images findable by tag
 * with their layers unpacked, bad tarballs skipped, nothing written outside
 * the staging area, and imports.json preventing a second import of an
 * unchanged tarball across a restart.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "image/import.h"
#include "image/manifest.h"
#include "image/store.h"
#include "image/xferlib.h"
#include "helpers.h"

#define SAFETY_MS 30000

struct fixture {
    char root[64];
    char *store_dir;
    char *import_dir;
    struct store *st;
    struct importer *im;
    int done_calls;
};

static bool has_children(void *arg)
{
    return child_count() > 0;
}

static void on_done(void *arg)
{
    struct fixture *f = arg;
    f->done_calls++;
    loop_exit();
}

/* Scan and run the loop until the scan's work is finished. */
static void scan_and_wait(struct fixture *f)
{
    int before = f->done_calls;
    importer_scan(f->im);
    run_loop(SAFETY_MS);
    assert_int_equal(f->done_calls, before + 1);
    assert_int_equal(child_count(), 0);
}

static void open_store(struct fixture *f)
{
    struct error *err = NULL;
    f->st = store_open(f->store_dir, &err);
    assert_null(err);
    assert_non_null(f->st);
    f->im = importer_new(f->st, f->import_dir);
    importer_set_done_cb(f->im, on_done, f);
}

static void close_store(struct fixture *f)
{
    importer_free(f->im);
    f->im = NULL;
    store_free(f->st);
    f->st = NULL;
}

static int setup(void **state)
{
    struct error *err = NULL;
    alarm(120);
    log_set_level(LOG_LEVEL_WARN);
    assert_int_equal(loop_init(&err), 0);
    struct fixture *f = xcalloc(1, sizeof(*f));
    strcpy(f->root, "/tmp/test-import-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    f->store_dir = xasprintf("%s/store", f->root);
    f->import_dir = xasprintf("%s/import", f->root);
    assert_int_equal(mkdir(f->import_dir, 0700), 0);
    open_store(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    close_store(f);
    xferlib_shutdown();
    loop_shutdown();
    _cleanup_free_ char *cmd = xasprintf("rm -rf %s", f->root);
    assert_int_equal(system(cmd), 0);
    free(f->store_dir);
    free(f->import_dir);
    free(f);
    alarm(0);
    return 0;
}

/* ---- building tarballs ---- */

static void sha256_of(const void *data, size_t len, char out[72])
{
    char hex[XFERLIB_SHA256_HEX_LEN + 1];
    assert_int_equal(xferlib_sha256_hex(data, len, hex, NULL), 0);
    snprintf(out, 72, "sha256:%s", hex);
}

static la_ssize_t on_write(struct archive *a, void *arg, const void *data, size_t n)
{
    assert_int_equal(buf_append(arg, data, n), 0);
    return (la_ssize_t)n;
}

static struct archive *tar_new(struct buf *out)
{
    buf_init(out, 64 * 1024 * 1024);
    struct archive *a = archive_write_new();
    assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open(a, out, NULL, on_write, NULL), ARCHIVE_OK);
    return a;
}

static void tar_entry(struct archive *a, const char *name, mode_t type, const char *target,
                      const void *data, size_t len)
{
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, type == AE_IFDIR ? 0755 : 0644);
    archive_entry_set_size(e, type == AE_IFREG ? (la_int64_t)len : 0);
    if (type == AE_IFLNK)
        archive_entry_set_symlink(e, target);
    if (type == AE_IFCHR)
        archive_entry_set_rdev(e, 0);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    if (type == AE_IFREG && len)
        assert_int_equal(archive_write_data(a, data, len), (la_ssize_t)len);
    archive_entry_free(e);
}

static void tar_file(struct archive *a, const char *name, const char *text)
{
    tar_entry(a, name, AE_IFREG, NULL, text, strlen(text));
}

static void tar_close(struct archive *a)
{
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

/* A layer: an uncompressed tar holding one file. */
static void make_layer(const char *file, const char *content, struct buf *out, char digest[72])
{
    struct archive *a = tar_new(out);
    tar_file(a, file, content);
    tar_close(a);
    sha256_of(out->data, out->len, digest);
}

static char *config_json(const char *user, const char *diff_ids)
{
    return xasprintf("{\"architecture\":\"%s\",\"os\":\"linux\",\"config\":{\"User\":\"%s\"},"
                     "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[%s]}}",
                     manifest_host_arch(), user, diff_ids);
}

static void write_file(const char *dir, const char *name, const void *data, size_t len)
{
    _cleanup_free_ char *path = xasprintf("%s/%s", dir, name);
    _cleanup_free_ char *tmp = xasprintf("%s/.%s.tmp", dir, name);
    FILE *fp = fopen(tmp, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(rename(tmp, path), 0);
}

static void save_tarball(struct fixture *f, const char *name, struct buf *b)
{
    write_file(f->import_dir, name, b->data, b->len);
    buf_free(b);
}

/* docker save of one image with one layer (hello.txt), tagged tag. */
static void make_docker_save(struct fixture *f, const char *name, const char *tag)
{
    struct buf layer;
    char diff_id[72], cfg_digest[72];
    make_layer("hello.txt", "hello\n", &layer, diff_id);
    _cleanup_free_ char *ids = xasprintf("\"%s\"", diff_id);
    _cleanup_free_ char *cfg = config_json("1000", ids);
    sha256_of(cfg, strlen(cfg), cfg_digest);
    _cleanup_free_ char *cfg_name = xasprintf("%s.json", cfg_digest + 7);
    _cleanup_free_ char *manifest =
        xasprintf("[{\"Config\":\"%s\",\"RepoTags\":[\"%s\"],\"Layers\":[\"abc123/layer.tar\"]}]",
                  cfg_name, tag);

    struct buf out;
    struct archive *a = tar_new(&out);
    tar_entry(a, "abc123/", AE_IFDIR, NULL, NULL, 0);
    tar_file(a, "abc123/VERSION", "1.0");
    tar_entry(a, "abc123/layer.tar", AE_IFREG, NULL, layer.data, layer.len);
    tar_file(a, cfg_name, cfg);
    tar_file(a, "manifest.json", manifest);
    tar_file(a, "repositories", "{}");
    tar_close(a);
    buf_free(&layer);
    save_tarball(f, name, &out);
}

/*
 * An OCI layout whose index.json names (io.containerd.image.name) a nested
 * image index with an entry for this machine and one for another platform.
 * Returns the digest of the nested index (the repo digest) in top_digest.
 */
static void make_oci_layout(struct fixture *f, const char *name, const char *image_name,
                            char top_digest[72])
{
    struct buf layer;
    char diff_id[72], cfg_digest[72], m_digest[72];
    make_layer("etc/oci.txt", "from oci\n", &layer, diff_id);
    _cleanup_free_ char *ids = xasprintf("\"%s\"", diff_id);
    _cleanup_free_ char *cfg = config_json("", ids);
    sha256_of(cfg, strlen(cfg), cfg_digest);
    _cleanup_free_ char *manifest = xasprintf(
        "{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_OCI_MANIFEST "\","
        "\"config\":{\"mediaType\":\"" MEDIA_OCI_CONFIG "\",\"digest\":\"%s\",\"size\":%zu},"
        "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\","
        "\"digest\":\"%s\",\"size\":%zu}]}",
        cfg_digest, strlen(cfg), diff_id, layer.len);
    sha256_of(manifest, strlen(manifest), m_digest);
    const char *other = strcmp(manifest_host_arch(), "s390x") ? "s390x" : "amd64";
    _cleanup_free_ char *index = xasprintf(
        "{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_OCI_INDEX "\",\"manifests\":["
        "{\"mediaType\":\"" MEDIA_OCI_MANIFEST "\",\"digest\":\"sha256:%064d\",\"size\":1,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"%s\"}},"
        "{\"mediaType\":\"" MEDIA_OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":%zu,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"%s\"}}]}",
        0, other, m_digest, strlen(manifest), manifest_host_arch());
    sha256_of(index, strlen(index), top_digest);
    _cleanup_free_ char *top = xasprintf(
        "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" MEDIA_OCI_INDEX "\","
        "\"digest\":\"%s\",\"size\":%zu,\"annotations\":{"
        "\"io.containerd.image.name\":\"%s\",\"org.opencontainers.image.ref.name\":\"2\"}}]}",
        top_digest, strlen(index), image_name);

    struct buf out;
    struct archive *a = tar_new(&out);
    tar_file(a, "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
    tar_file(a, "index.json", top);
    _cleanup_free_ char *p1 = xasprintf("blobs/sha256/%s", diff_id + 7);
    _cleanup_free_ char *p2 = xasprintf("blobs/sha256/%s", cfg_digest + 7);
    _cleanup_free_ char *p3 = xasprintf("blobs/sha256/%s", m_digest + 7);
    _cleanup_free_ char *p4 = xasprintf("blobs/sha256/%s", top_digest + 7);
    tar_entry(a, p1, AE_IFREG, NULL, layer.data, layer.len);
    tar_file(a, p2, cfg);
    tar_file(a, p3, manifest);
    tar_file(a, p4, index);
    tar_close(a);
    buf_free(&layer);
    save_tarball(f, name, &out);
}

/* ---- checks ---- */

static char *read_text(const char *path)
{
    struct error *err = NULL;
    char *s = read_file_capped(path, 1 << 20, NULL, &err);
    error_free(err);
    return s;
}

static void assert_layer_has(struct fixture *f, const struct store_image *img, size_t i,
                             const char *file, const char *content)
{
    _cleanup_free_ char *dir = store_layer_path(f->st, img->chain_ids[i]);
    _cleanup_free_ char *path = xasprintf("%s/%s", dir, file);
    _cleanup_free_ char *text = read_text(path);
    assert_non_null(text);
    assert_string_equal(text, content);
}

/* No staging directory is left in content/ingest. */
static void assert_no_staging(struct fixture *f)
{
    _cleanup_free_ char *ingest = xasprintf("%s/content/ingest", f->store_dir);
    DIR *d = opendir(ingest);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)))
        assert_false(str_has_prefix(de->d_name, "import-"));
    closedir(d);
}

/* ---- tests ---- */

static void test_docker_save(void **state)
{
    struct fixture *f = *state;
    make_docker_save(f, "hello.tar", "example.com/hello:1");
    scan_and_wait(f);

    const struct store_image *img = store_image_find(f->st, "example.com/hello:1");
    assert_non_null(img);
    assert_int_equal(img->n_layers, 1);
    assert_string_equal(img->user, "1000");
    assert_int_equal(img->n_repo_tags, 1);
    assert_string_equal(img->repo_tags[0], "example.com/hello:1");
    assert_int_equal(img->n_repo_digests, 0);
    assert_true(store_has_blob(f->st, img->id));
    assert_true(store_has_blob(f->st, img->manifest_digest));
    assert_true(store_has_blob(f->st, img->layer_digests[0]));
    /* docker save layers are uncompressed: the blob is the diff. */
    assert_string_equal(img->layer_digests[0], img->diff_ids[0]);
    assert_layer_has(f, img, 0, "hello.txt", "hello\n");
    assert_true(img->size > 0);
    assert_true(img->created_ns > 0);

    /* The synthesised manifest is a Docker schema2 manifest naming the config. */
    _cleanup_free_ char *mpath = store_blob_path(f->st, img->manifest_digest);
    _cleanup_free_ char *mtext = read_text(mpath);
    assert_non_null(mtext);
    struct manifest m;
    struct error *err = NULL;
    assert_int_equal(manifest_parse(NULL, (const uint8_t *)mtext, strlen(mtext), &m, &err), 0);
    assert_string_equal(m.media_type, MEDIA_DOCKER_MANIFEST);
    assert_string_equal(m.config.digest, img->id);
    assert_int_equal(m.n_descs, 1);
    assert_string_equal(m.descs[0].digest, img->layer_digests[0]);
    manifest_clear(&m);

    assert_no_staging(f);
    assert_false(importer_uses(img->id, f->im));

    /* The record survives a restart of the store. */
    _cleanup_free_ char *id = xstrdup(img->id);
    close_store(f);
    open_store(f);
    img = store_image_find(f->st, "example.com/hello:1");
    assert_non_null(img);
    assert_string_equal(img->id, id);
}

static void test_oci_layout(void **state)
{
    struct fixture *f = *state;
    char top[72];
    make_oci_layout(f, "oci.tar", "example.com/oci:2", top);
    scan_and_wait(f);

    const struct store_image *img = store_image_find(f->st, "example.com/oci:2");
    assert_non_null(img);
    assert_int_equal(img->n_layers, 1);
    assert_string_equal(img->user, "");
    assert_int_equal(img->n_repo_digests, 1);
    _cleanup_free_ char *rd = xasprintf("example.com/oci@%s", top);
    assert_string_equal(img->repo_digests[0], rd);
    assert_ptr_equal(store_image_find(f->st, rd), img);
    assert_true(store_has_blob(f->st, img->manifest_digest));
    assert_layer_has(f, img, 0, "etc/oci.txt", "from oci\n");
    assert_no_staging(f);
}

static void test_bad_tarballs_skipped(void **state)
{
    struct fixture *f = *state;
    /* Garbage. */
    char junk[4096];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(i * 7 + 3);
    write_file(f->import_dir, "garbage.tar", junk, sizeof(junk));

    /* A path escape next to an otherwise valid docker save. */
    struct buf out;
    struct archive *a = tar_new(&out);
    tar_file(a, "manifest.json", "[]");
    tar_file(a, "../escape.txt", "escaped\n");
    tar_close(a);
    save_tarball(f, "escape.tar", &out);

    /* An absolute path. */
    _cleanup_free_ char *abs = xasprintf("%s/absolute.txt", f->root);
    a = tar_new(&out);
    tar_file(a, "manifest.json", "[]");
    tar_file(a, abs, "escaped\n");
    tar_close(a);
    save_tarball(f, "absolute.tar", &out);

    /* A device node. */
    a = tar_new(&out);
    tar_file(a, "manifest.json", "[]");
    tar_entry(a, "dev", AE_IFCHR, NULL, NULL, 0);
    tar_close(a);
    save_tarball(f, "device.tar", &out);

    /* A symlink pointing out of the tarball used as a layer. */
    a = tar_new(&out);
    tar_file(a, "manifest.json",
             "[{\"Config\":\"c.json\",\"RepoTags\":[\"example.com/bad:1\"],"
             "\"Layers\":[\"l/layer.tar\"]}]");
    tar_file(a, "c.json",
             "{\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":["
             "\"sha256:0000000000000000000000000000000000000000000000000000000000000000\"]}}");
    tar_entry(a, "l/layer.tar", AE_IFLNK, "../../../etc/passwd", NULL, 0);
    tar_close(a);
    save_tarball(f, "symlink.tar", &out);

    /* A docker save whose config is not the one its name says. */
    make_docker_save(f, "good.tar", "example.com/good:1");
    a = tar_new(&out);
    tar_file(a, "manifest.json",
             "[{\"Config\":\""
             "0123456789012345678901234567890123456789012345678901234567890123"
             ".json\",\"RepoTags\":[],\"Layers\":[]}]");
    tar_file(a, "0123456789012345678901234567890123456789012345678901234567890123.json",
             "{\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}");
    tar_close(a);
    save_tarball(f, "mismatch.tar", &out);

    scan_and_wait(f);

    /* Only the good one made it; nothing escaped. */
    assert_int_equal(store_image_count(f->st), 1);
    assert_non_null(store_image_find(f->st, "example.com/good:1"));
    assert_null(store_image_find(f->st, "example.com/bad:1"));
    assert_int_not_equal(access(abs, F_OK), 0);
    _cleanup_free_ char *esc1 = xasprintf("%s/content/escape.txt", f->store_dir);
    _cleanup_free_ char *esc2 = xasprintf("%s/content/ingest/escape.txt", f->store_dir);
    _cleanup_free_ char *esc3 = xasprintf("%s/escape.txt", f->import_dir);
    assert_int_not_equal(access(esc1, F_OK), 0);
    assert_int_not_equal(access(esc2, F_OK), 0);
    assert_int_not_equal(access(esc3, F_OK), 0);
    assert_no_staging(f);

    /* Only the good tarball is recorded: the bad ones are tried again next time. */
    _cleanup_free_ char *rpath = xasprintf("%s/imports.json", f->store_dir);
    _cleanup_free_ char *records = read_text(rpath);
    assert_non_null(records);
    assert_non_null(strstr(records, "good.tar"));
    assert_null(strstr(records, "garbage.tar"));
    assert_null(strstr(records, "escape.tar"));
}

/* docker save links a layer saved twice to the first copy; the link is followed in the tarball. */
static void test_docker_save_symlinked_layer(void **state)
{
    struct fixture *f = *state;
    struct buf layer;
    char diff_id[72], cfg_digest[72];
    make_layer("a.txt", "a\n", &layer, diff_id);
    _cleanup_free_ char *ids = xasprintf("\"%s\",\"%s\"", diff_id, diff_id);
    _cleanup_free_ char *cfg = config_json("", ids);
    sha256_of(cfg, strlen(cfg), cfg_digest);
    _cleanup_free_ char *cfg_name = xasprintf("%s.json", cfg_digest + 7);
    _cleanup_free_ char *manifest =
        xasprintf("[{\"Config\":\"%s\",\"RepoTags\":[\"busybox:latest\"],"
                  "\"Layers\":[\"one/layer.tar\",\"two/layer.tar\"]}]",
                  cfg_name);
    struct buf out;
    struct archive *a = tar_new(&out);
    tar_entry(a, "one/layer.tar", AE_IFREG, NULL, layer.data, layer.len);
    tar_entry(a, "two/layer.tar", AE_IFLNK, "../one/layer.tar", NULL, 0);
    tar_file(a, cfg_name, cfg);
    tar_file(a, "manifest.json", manifest);
    tar_close(a);
    buf_free(&layer);
    save_tarball(f, "linked.tar", &out);
    scan_and_wait(f);

    /* RepoTags are normalised like kubelet's references. */
    const struct store_image *img = store_image_find(f->st, "docker.io/library/busybox:latest");
    assert_non_null(img);
    assert_int_equal(img->n_layers, 2);
    assert_string_equal(img->layer_digests[0], img->layer_digests[1]);
    assert_layer_has(f, img, 0, "a.txt", "a\n");
    assert_layer_has(f, img, 1, "a.txt", "a\n");
}

static void test_no_reimport_unless_changed(void **state)
{
    struct fixture *f = *state;
    make_docker_save(f, "hello.tar", "example.com/hello:1");
    scan_and_wait(f);
    const struct store_image *img = store_image_find(f->st, "example.com/hello:1");
    assert_non_null(img);
    _cleanup_free_ char *id = xstrdup(img->id);

    /* Remove the image, restart: the unchanged tarball is not imported again. */
    struct error *err = NULL;
    assert_int_equal(store_image_remove(f->st, id, &err), 0);
    close_store(f);
    open_store(f);
    scan_and_wait(f);
    assert_null(store_image_find(f->st, "example.com/hello:1"));

    /* A scan with the same importer does not either. */
    scan_and_wait(f);
    assert_null(store_image_find(f->st, "example.com/hello:1"));

    /* A changed tarball is imported again. */
    _cleanup_free_ char *path = xasprintf("%s/hello.tar", f->import_dir);
    struct timespec ts[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
    scan_and_wait(f);
    img = store_image_find(f->st, "example.com/hello:1");
    assert_non_null(img);
    assert_string_equal(img->id, id);

    /* New content under the same name: the tag moves to the new image. */
    make_docker_save(f, "hello.tar", "example.com/hello:2");
    scan_and_wait(f);
    assert_non_null(store_image_find(f->st, "example.com/hello:2"));
}

static void test_missing_dir_and_nothing_to_do(void **state)
{
    struct fixture *f = *state;
    scan_and_wait(f);
    assert_int_equal(store_image_count(f->st), 0);

    importer_free(f->im);
    _cleanup_free_ char *missing = xasprintf("%s/nope", f->root);
    f->im = importer_new(f->st, missing);
    importer_set_done_cb(f->im, on_done, f);
    scan_and_wait(f);
    assert_int_equal(store_image_count(f->st), 0);
}

/* A staging directory left by a crash is removed at the first scan. */
static void test_leftover_staging_removed(void **state)
{
    struct fixture *f = *state;
    _cleanup_free_ char *left = xasprintf("%s/content/ingest/import-abc123", f->store_dir);
    _cleanup_free_ char *sub = xasprintf("%s/x", left);
    assert_int_equal(mkdir(left, 0700), 0);
    assert_int_equal(mkdir(sub, 0700), 0);
    write_file(sub, "junk", "junk", 4);
    scan_and_wait(f);
    assert_int_not_equal(access(left, F_OK), 0);
}

/*
 * Freeing the importer mid-import (the daemon stops) kills the child and
 * leaves no image; the staging directory is removed by the next start.
 */
static void test_free_while_running(void **state)
{
    struct fixture *f = *state;
    make_docker_save(f, "hello.tar", "example.com/hello:1");
    importer_scan(f->im);
    assert_true(run_until(has_children, NULL, SAFETY_MS));
    assert_int_equal(child_count(), 1); /* the extract child */
    importer_free(f->im);
    f->im = NULL;
    run_until_no_children(SAFETY_MS);
    assert_null(store_image_find(f->st, "example.com/hello:1"));
    f->im = importer_new(f->st, f->import_dir);
    importer_set_done_cb(f->im, on_done, f);
    scan_and_wait(f);
    assert_no_staging(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_docker_save, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oci_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_tarballs_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_docker_save_symlinked_layer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_reimport_unless_changed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_dir_and_nothing_to_do, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leftover_staging_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_while_running, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
