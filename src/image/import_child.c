/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The child side of an air-gapped import (import_child.h): runs in a process
 * forked by child_fork() and _exit()s (the daemon has one thread, so
 * libarchive, jansson and malloc are safe after fork). It inherits the
 * tarball's fd, works in the staging directory (its cwd), extracts the tar
 * into "x/" with libarchive's secure flags, accepting regular files and
 * directories only (symlinks are not created but remembered, and followed
 * lexically inside the tarball, because docker save links duplicate
 * layers), hashes every file while writing it, parses the layout (OCI
 * index.json or docker save manifest.json), verifies every digest and size
 * it relies on, syncs the filesystem, and prints the description.
 */
#include "autoconf.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "core/error.h"
#include "core/id.h"
#include "core/path.h"
#include "core/text.h"
#include "core/util.h"
#include "image/import_child.h"
#include "image/manifest.h"
#include "image/ref.h"
#include "image/registry.h"
#include "image/store.h"
#include "image/unpack.h"
#include "image/xferlib.h"

#define MAX_ENTRIES 100000
#define MAX_CONTENT_BYTES (64LL * 1024 * 1024 * 1024)
#define MAX_IMAGES 64
#define MAX_TAGS 64
#define MAX_SYMLINK_HOPS 8
#define MAX_INDEX_HOPS 2
#define OCI_LAYOUT_MAX 4096
#define READ_BLOCK (64 * 1024)
#define TREE "x/" /* the extracted tree, inside the staging directory */
#define ANNOTATION_CONTAINERD_NAME "io.containerd.image.name"
#define ANNOTATION_OCI_REF_NAME "org.opencontainers.image.ref.name"
#define MEDIA_DOCKER_LAYER "application/vnd.docker.image.rootfs.diff.tar"
#define MEDIA_DOCKER_LAYER_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"
#define MEDIA_OCI_LAYER_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"
#define EXTRACT_FLAGS                                                                              \
    (ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS |                           \
     ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS)

static void archive_freep(struct archive **a)
{
    if (*a)
        xarchive.free(*a);
}
#define _cleanup_archive_ __attribute__((cleanup(archive_freep)))

static void manifest_clearp(struct manifest *m)
{
    manifest_clear(m);
}
#define _cleanup_manifest_ __attribute__((cleanup(manifest_clearp)))

static void image_config_clearp(struct image_config *c)
{
    image_config_clear(c);
}
#define _cleanup_image_config_ __attribute__((cleanup(image_config_clearp)))

static void image_ref_clearp(struct image_ref *r)
{
    image_ref_clear(r);
}
#define _cleanup_image_ref_ __attribute__((cleanup(image_ref_clearp)))

/* ---- small helpers ---- */

static int sha256_text(const void *data, size_t len, char out[72], struct error **err)
{
    char hex[XFERLIB_SHA256_HEX_LEN + 1];
    if (xferlib_sha256_hex(data, len, hex, err) < 0)
        return -1;
    snprintf(out, 72, "sha256:%s", hex);
    return 0;
}

/*
 * Normalise a relative path lexically: "./a//b/" -> "a/b", "" for the top.
 * With dotdot, ".." removes the previous component (never above the top);
 * without, any ".." is refused. -1 for absolute, escaping or too long paths.
 */
static int normalise_path(const char *in, bool dotdot, char **out)
{
    if (in[0] == '/' || strlen(in) > IMPORT_PATH_MAX)
        return -1;
    _cleanup_free_ char *p = xmalloc(strlen(in) + 1);
    size_t len = 0;
    for (const char *c = in; *c;) {
        size_t n = strcspn(c, "/");
        if (n == 2 && c[0] == '.' && c[1] == '.') {
            if (!dotdot || len == 0)
                return -1;
            while (len > 0 && p[len - 1] != '/')
                len--;
            if (len > 0)
                len--;
        } else if (n > 0 && !(n == 1 && c[0] == '.')) {
            if (len > 0)
                p[len++] = '/';
            memcpy(p + len, c, n);
            len += n;
        }
        c += n;
        while (*c == '/')
            c++;
    }
    p[len] = '\0';
    *out = steal_ptr(&p);
    return 0;
}

/* ======================================================================
 * The child: extract, hash, describe. Runs after fork, then _exit()s.
 * ====================================================================== */

struct tar_file {
    char *path; /* normalised, relative to the tree */
    char *link; /* a symlink's target (symlinks are not created), else NULL */
    bool is_dir;
    int64_t size;
    char digest[72]; /* regular files */
};

struct tarball {
    struct tar_file *files; /* sorted by path once extracted */
    size_t n, alloc;
    json_t *images;
    json_t *warnings;
    unsigned n_synth;  /* manifests synthesised for docker save images */
    char *skip_reason; /* why an OCI entry was skipped, for the "no image" error */
};

static void tarball_clear(struct tarball *tb)
{
    for (size_t i = 0; i < tb->n; i++) {
        free(tb->files[i].path);
        free(tb->files[i].link);
    }
    free(tb->files);
    json_decref(tb->images);
    json_decref(tb->warnings);
    free(tb->skip_reason);
    memset(tb, 0, sizeof(*tb));
}

static void tarball_add(struct tarball *tb, struct tar_file f)
{
    if (tb->n == tb->alloc) {
        tb->alloc = tb->alloc ? 2 * tb->alloc : 64;
        tb->files = xrealloc(tb->files, tb->alloc * sizeof(*tb->files));
    }
    tb->files[tb->n++] = f;
}

/* Copy one regular file's data to the disk writer, hashing it. */
static int copy_data(struct archive *ar, struct archive *aw, struct tar_file *f, int64_t *total,
                     struct error **err)
{
    _cleanup_xferlib_hash_ struct xferlib_hash md = {0};
    if (xferlib_hash_init(&md, XFERLIB_SHA256, err) < 0)
        return -1;
    _cleanup_free_ char *block = xmalloc(READ_BLOCK);
    int rc = 0;
    for (;;) {
        la_ssize_t n = xarchive.read_data(ar, block, READ_BLOCK);
        if (n == 0)
            break;
        if (n < 0) {
            rc = unpack_archive_fail(err, ar, "read tarball");
            break;
        }
        *total += n;
        if (*total > MAX_CONTENT_BYTES) {
            rc = error_set(err, GRPC_RESOURCE_EXHAUSTED, 0, "tarball holds more than %lld bytes",
                           (long long)MAX_CONTENT_BYTES);
            break;
        }
        xferlib_hash_update(&md, block, (size_t)n);
        if (xarchive.write_data(aw, block, (size_t)n) != n) {
            rc = unpack_archive_fail(err, aw, "write staged file");
            break;
        }
    }
    char hex[XFERLIB_SHA256_HEX_LEN + 1];
    xferlib_hash_final_hex(&md, hex);
    snprintf(f->digest, sizeof(f->digest), "sha256:%s", hex);
    return rc;
}

/* Check one entry and extract it under TREE (regular files and directories only). */
static int extract_entry(struct archive *ar, struct archive *aw, struct archive_entry *e,
                         struct tarball *tb, int64_t *total, struct error **err)
{
    const char *name = xarchive.entry_pathname(e);
    if (!name)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "tarball entry without a name");
    _cleanup_free_ char *safe = text_safe(name, TEXT_SAFE_MAX);
    _cleanup_free_ char *path = NULL;
    if (normalise_path(name, false, &path) < 0)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "unsafe path in tarball: %s (absolute, \"..\" or too long)", safe);
    if (xarchive.entry_hardlink(e))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "hard link in tarball: %s", safe);
    mode_t type = xarchive.entry_filetype(e);
    if (type == AE_IFLNK) {
        const char *target = xarchive.entry_symlink(e);
        if (!target || strlen(target) > IMPORT_PATH_MAX || !*path)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "bad symlink in tarball: %s", safe);
        tarball_add(tb, (struct tar_file){.path = steal_ptr(&path), .link = xstrdup(target)});
        return 0;
    }
    if (type != AE_IFREG && type != AE_IFDIR)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "tarball entry %s is not a regular file or directory", safe);
    if (!*path) {
        if (type == AE_IFDIR)
            return 0; /* the top directory ("./") */
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "bad file name in tarball: %s", safe);
    }
    int64_t size = type == AE_IFREG ? xarchive.entry_size(e) : 0;
    if (size < 0 || size > MAX_CONTENT_BYTES - *total)
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0, "tarball holds more than %lld bytes",
                         (long long)MAX_CONTENT_BYTES);

    _cleanup_free_ char *dest = xasprintf(TREE "%s", path);
    xarchive.entry_set_pathname(e, dest);
    xarchive.entry_set_perm(e, type == AE_IFDIR ? 0700 : 0600);
    if (xarchive.write_header(aw, e) < ARCHIVE_OK)
        return unpack_archive_fail(err, aw, "extract");
    struct tar_file f = {.path = steal_ptr(&path), .is_dir = type == AE_IFDIR, .size = size};
    int rc = type == AE_IFREG ? copy_data(ar, aw, &f, total, err) : 0;
    if (rc == 0 && xarchive.write_finish_entry(aw) < ARCHIVE_OK)
        rc = unpack_archive_fail(err, aw, "extract");
    tarball_add(tb, f);
    return rc;
}

static int cmp_file(const void *a, const void *b)
{
    return strcmp(((const struct tar_file *)a)->path, ((const struct tar_file *)b)->path);
}

/* Extract the tarball on fd into TREE in the current directory, recording every entry. */
static int extract(int fd, struct tarball *tb, struct error **err)
{
    _cleanup_archive_ struct archive *ar = xarchive.read_new();
    _cleanup_archive_ struct archive *aw = xarchive.write_disk_new();
    if (!ar || !aw)
        return error_set(err, GRPC_INTERNAL, ENOMEM, "libarchive");
    xarchive.read_support_filter_gzip(ar);
    xarchive.read_support_format_tar(ar);
    xarchive.write_disk_set_options(aw, EXTRACT_FLAGS);
    if (xarchive.read_open_fd(ar, fd, READ_BLOCK) != ARCHIVE_OK)
        return unpack_archive_fail(err, ar, "not a tar archive");
    if (mkdir(TREE, 0700) < 0)
        return error_set(err, GRPC_INTERNAL, errno, "mkdir " TREE);
    int64_t total = 0;
    for (size_t count = 0;; count++) {
        struct archive_entry *e = NULL;
        int r = xarchive.read_next_header(ar, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN)
            return unpack_archive_fail(err, ar, "read tarball");
        if (count >= MAX_ENTRIES)
            return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0, "tarball has more than %d entries",
                             MAX_ENTRIES);
        if (extract_entry(ar, aw, e, tb, &total, err) < 0)
            return -1;
    }
    if (xarchive.write_close(aw) != ARCHIVE_OK)
        return unpack_archive_fail(err, aw, "extract");
    if (tb->n == 0)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "empty tarball");
    qsort(tb->files, tb->n, sizeof(*tb->files), cmp_file);
    for (size_t i = 1; i < tb->n; i++) {
        const struct tar_file *a = &tb->files[i - 1], *b = &tb->files[i];
        if (!strcmp(a->path, b->path) && !(a->is_dir && b->is_dir)) {
            _cleanup_free_ char *safe = text_safe(a->path, TEXT_SAFE_MAX);
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "tarball has %s twice", safe);
        }
    }
    return 0;
}

static const struct tar_file *find_file(const struct tarball *tb, const char *path)
{
    struct tar_file key = {.path = (char *)path};
    return tb->n ? bsearch(&key, tb->files, tb->n, sizeof(*tb->files), cmp_file) : NULL;
}

/* The regular file a path names, following symlinks lexically and never out of the tarball. */
static const struct tar_file *resolve(const struct tarball *tb, const char *path,
                                      struct error **err)
{
    _cleanup_free_ char *safe = text_safe(path, TEXT_SAFE_MAX);
    _cleanup_free_ char *cur = NULL;
    if (normalise_path(path, false, &cur) < 0 || !*cur)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "bad path %s", safe), NULL;
    for (int hops = 0;; hops++) {
        const struct tar_file *f = find_file(tb, cur);
        if (!f)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s is missing from the tarball", safe),
                   NULL;
        if (!f->link && f->is_dir)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s is a directory", safe), NULL;
        if (!f->link)
            return f;
        if (hops == MAX_SYMLINK_HOPS)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s: too many symlinks", safe), NULL;
        const char *slash = strrchr(cur, '/');
        _cleanup_free_ char *joined =
            slash ? xasprintf("%.*s/%s", (int)(slash - cur), cur, f->link) : xstrdup(f->link);
        free(steal_ptr(&cur));
        if (f->link[0] == '/' || normalise_path(joined, true, &cur) < 0 || !*cur)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "%s: symlink points outside the tarball", safe),
                   NULL;
    }
}

/* Read a small staged file whole. */
static char *read_staged(const struct tar_file *f, size_t cap, size_t *len, struct error **err)
{
    if (f->size > (int64_t)cap) {
        _cleanup_free_ char *safe = text_safe(f->path, TEXT_SAFE_MAX);
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0, "%s is larger than %zu bytes", safe, cap),
               NULL;
    }
    _cleanup_free_ char *p = xasprintf(TREE "%s", f->path);
    return read_file_capped(p, cap, len, err);
}

static void add_warning(struct tarball *tb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_warning(struct tarball *tb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    if (json_array_size(tb->warnings) < 32)
        json_array_append_new(tb->warnings, json_string(msg));
}

static json_t *blob_json(const char *digest, const char *path)
{
    return json_pack("{s:s, s:s}", "digest", digest, "path", path);
}

static json_t *staged_blob_json(const struct tar_file *f)
{
    _cleanup_free_ char *p = xasprintf(TREE "%s", f->path);
    return blob_json(f->digest, p);
}

void import_json_add_unique(json_t *arr, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (!strcmp(json_string_value(v), s))
            return;
    }
    json_array_append_new(arr, json_string(s));
}

/*
 * Add an image (taking the json arguments), or merge its tags and digests
 * into the one with the same manifest already found.
 */
static int add_image(struct tarball *tb, const char *manifest, const struct tar_file *config,
                     const char *user, json_t *layers, json_t *blobs, json_t *tags, json_t *rds,
                     struct error **err)
{
    _cleanup_json_ json_t *l = layers, *b = blobs, *t = tags, *r = rds;
    size_t i;
    json_t *img;
    json_array_foreach(tb->images, i, img)
    {
        if (strcmp(json_string_value(json_object_get(img, "manifest")), manifest))
            continue;
        json_t *v;
        size_t k;
        json_array_foreach(t, k, v)
        {
            if (json_array_size(json_object_get(img, "tags")) < MAX_TAGS)
                import_json_add_unique(json_object_get(img, "tags"), json_string_value(v));
        }
        json_array_foreach(r, k, v)
        {
            if (json_array_size(json_object_get(img, "repo_digests")) < MAX_TAGS)
                import_json_add_unique(json_object_get(img, "repo_digests"), json_string_value(v));
        }
        return 0;
    }
    if (json_array_size(tb->images) >= MAX_IMAGES)
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0, "tarball holds more than %d images",
                         MAX_IMAGES);
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:O, s:O, s:O, s:O}", "id", config->digest,
                          "manifest", manifest, "config_size", (json_int_t)config->size, "user",
                          user, "layers", l, "blobs", b, "tags", t, "repo_digests", r);
    assert_state(o);
    json_array_append_new(tb->images, o);
    return 0;
}

/*
 * A full reference to tag an image with, from manifest.json's RepoTags or an
 * OCI annotation, normalised ("busybox:1" -> "docker.io/library/busybox:1").
 * NULL (with a warning) when it does not parse or has no tag.
 */
static char *tag_of(struct tarball *tb, const char *s, struct image_ref *ref_out)
{
    struct image_ref ref;
    _cleanup_error_ struct error *e = NULL;
    if (image_ref_parse(s, &ref, &e) < 0) {
        _cleanup_free_ char *safe = text_safe(s, TEXT_SAFE_MAX);
        add_warning(tb, "ignoring image name %s: %s", safe, e->msg);
        return NULL;
    }
    if (!ref.tag) {
        _cleanup_free_ char *safe = text_safe(s, TEXT_SAFE_MAX);
        add_warning(tb, "ignoring image name %s: no tag", safe);
        image_ref_clear(&ref);
        return NULL;
    }
    char *tagged = image_ref_tagged(&ref);
    if (ref_out)
        *ref_out = ref;
    else
        image_ref_clear(&ref);
    return tagged;
}

/* A bare OCI tag ("latest", "1.0"): the name it belongs to is not in the layout. */
static bool is_bare_tag(const char *s)
{
    return strlen(s) <= 128 && strcspn(s, "/:@") == strlen(s);
}

/* Read and verify blobs/sha256/<hex> of an OCI layout. */
static const struct tar_file *oci_blob(const struct tarball *tb, const char *digest, int64_t size,
                                       struct error **err)
{
    if (!image_ref_is_digest(digest))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "bad digest in OCI layout"), NULL;
    _cleanup_free_ char *path = xasprintf("blobs/sha256/%s", digest + 7);
    const struct tar_file *f = resolve(tb, path, err);
    if (!f)
        return NULL;
    if (strcmp(f->digest, digest))
        return error_set(err, GRPC_DATA_LOSS, 0, "blob %s has digest %s", digest, f->digest), NULL;
    if (size >= 0 && f->size != size)
        return error_set(err, GRPC_DATA_LOSS, 0, "blob %s has %lld bytes, not %lld", digest,
                         (long long)f->size, (long long)size),
               NULL;
    return f;
}

static int oci_parse_blob(const struct tarball *tb, const struct descriptor *d,
                          const struct tar_file **f, struct manifest *m, struct error **err)
{
    *f = oci_blob(tb, d->digest, d->size, err);
    if (!*f)
        return -1;
    size_t len = 0;
    _cleanup_free_ char *body = read_staged(*f, REGISTRY_MANIFEST_MAX, &len, err);
    if (!body || manifest_parse(d->media_type, (const uint8_t *)body, len, m, err) < 0)
        return error_prefix(err, "manifest %s", d->digest);
    return 0;
}

static void skip_entry(struct tarball *tb, struct error *e)
{
    free(tb->skip_reason);
    tb->skip_reason = xstrdup(e->msg);
    error_free(e);
}

static bool is_index_type(const char *mt)
{
    return mt && (!strcmp(mt, MEDIA_OCI_INDEX) || !strcmp(mt, MEDIA_DOCKER_LIST));
}

/* One entry of index.json: an image manifest, or an index to choose this platform from. */
static int oci_entry(struct tarball *tb, const struct descriptor *top, json_t *annotations,
                     struct error **err)
{
    if (!is_index_type(top->media_type) &&
        ((top->os && strcmp(top->os, "linux")) ||
         (top->arch && strcmp(top->arch, manifest_host_arch())))) {
        struct error *e = NULL;
        error_set(&e, GRPC_NOT_FOUND, 0, "index.json entry %s is for %s/%s", top->digest,
                  top->os ? top->os : "?", top->arch ? top->arch : "?");
        skip_entry(tb, e);
        return 0;
    }
    _cleanup_manifest_ struct manifest m = {0};
    const struct tar_file *mf = NULL;
    if (oci_parse_blob(tb, top, &mf, &m, err) < 0)
        return -1;
    for (int hops = 0; m.is_index; hops++) {
        if (hops == MAX_INDEX_HOPS)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "image index nests too deeply");
        struct error *e = NULL;
        const struct descriptor *sel =
            manifest_select_platform(&m, manifest_host_arch(), manifest_host_variant(), &e);
        if (!sel) {
            skip_entry(tb, e);
            return 0;
        }
        struct descriptor d = {.digest = xstrdup(sel->digest),
                               .size = sel->size,
                               .media_type = sel->media_type ? xstrdup(sel->media_type) : NULL};
        manifest_clear(&m);
        int rc = oci_parse_blob(tb, &d, &mf, &m, err);
        free(d.digest);
        free(d.media_type);
        if (rc < 0)
            return -1;
    }

    if (m.config.size > REGISTRY_MANIFEST_MAX)
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0, "image config is %lld bytes (max %d)",
                         (long long)m.config.size, REGISTRY_MANIFEST_MAX);
    const struct tar_file *cf = oci_blob(tb, m.config.digest, m.config.size, err);
    size_t len = 0;
    _cleanup_free_ char *text = cf ? read_staged(cf, REGISTRY_MANIFEST_MAX, &len, err) : NULL;
    _cleanup_image_config_ struct image_config cfg = {0};
    if (!text || image_config_parse((const uint8_t *)text, len, &cfg, err) < 0)
        return error_prefix(err, "image config %s", m.config.digest);
    if (cfg.os && strcmp(cfg.os, "linux")) {
        struct error *e = NULL;
        error_set(&e, GRPC_FAILED_PRECONDITION, 0, "image %s is for %s, not linux", m.config.digest,
                  cfg.os);
        skip_entry(tb, e);
        return 0;
    }
    if (cfg.n_diff_ids != m.n_descs)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "image config lists %zu layers but the manifest has %zu", cfg.n_diff_ids,
                         m.n_descs);

    _cleanup_json_ json_t *layers = json_array(), *blobs = json_array();
    json_array_append_new(blobs, staged_blob_json(mf));
    json_array_append_new(blobs, staged_blob_json(cf));
    for (size_t i = 0; i < m.n_descs; i++) {
        const struct tar_file *lf = oci_blob(tb, m.descs[i].digest, m.descs[i].size, err);
        if (!lf)
            return error_prefix(err, "layer %zu", i);
        json_array_append_new(layers, json_pack("{s:s, s:I, s:s}", "digest", lf->digest, "size",
                                                (json_int_t)lf->size, "diff_id", cfg.diff_ids[i]));
        json_array_append_new(blobs, staged_blob_json(lf));
    }

    /* The name: a full reference from containerd's annotation, or a ref.name that is one. */
    _cleanup_json_ json_t *tags = json_array(), *rds = json_array();
    const char *name = json_string_value(json_object_get(annotations, ANNOTATION_CONTAINERD_NAME));
    if (!name) {
        name = json_string_value(json_object_get(annotations, ANNOTATION_OCI_REF_NAME));
        if (name && is_bare_tag(name))
            name = NULL;
    }
    _cleanup_image_ref_ struct image_ref ref = {0};
    _cleanup_free_ char *tagged = name ? tag_of(tb, name, &ref) : NULL;
    if (tagged) {
        json_array_append_new(tags, json_string(tagged));
        _cleanup_free_ char *rd = image_ref_with_digest(&ref, top->digest);
        json_array_append_new(rds, json_string(rd));
    }
    return add_image(tb, mf->digest, cf, cfg.user, steal_ptr(&layers), steal_ptr(&blobs),
                     steal_ptr(&tags), steal_ptr(&rds), err);
}

static int describe_oci(struct tarball *tb, struct error **err)
{
    const struct tar_file *lf = resolve(tb, "oci-layout", err);
    size_t len = 0;
    _cleanup_free_ char *layout = lf ? read_staged(lf, OCI_LAYOUT_MAX, &len, err) : NULL;
    if (!layout)
        return error_prefix(err, "oci-layout");
    json_error_t jerr;
    _cleanup_json_ json_t *lj = json_loadb(layout, len, 0, &jerr);
    if (!json_is_string(json_object_get(lj, "imageLayoutVersion")))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "oci-layout has no imageLayoutVersion");

    const struct tar_file *xf = resolve(tb, "index.json", err);
    _cleanup_free_ char *text = xf ? read_staged(xf, REGISTRY_MANIFEST_MAX, &len, err) : NULL;
    _cleanup_manifest_ struct manifest idx = {0};
    if (!text || manifest_parse(MEDIA_OCI_INDEX, (const uint8_t *)text, len, &idx, err) < 0)
        return error_prefix(err, "index.json");
    if (!idx.is_index)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "index.json is not an image index");
    /* manifest_parse() checked the entries; their annotations are read here, same order. */
    _cleanup_json_ json_t *doc = json_loadb(text, len, 0, &jerr);
    json_t *entries = json_object_get(doc, "manifests");
    for (size_t i = 0; i < idx.n_descs; i++) {
        json_t *annotations = json_object_get(json_array_get(entries, i), "annotations");
        if (oci_entry(tb, &idx.descs[i], annotations, err) < 0)
            return error_prefix(err, "index.json entry %zu", i);
    }
    return 0;
}

/* The media type of a docker save layer, from its first bytes. */
static const char *layer_media_type(const struct tar_file *f)
{
    _cleanup_free_ char *p = xasprintf(TREE "%s", f->path);
    _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    unsigned char magic[4] = {0};
    if (fd < 0 || read(fd, magic, sizeof(magic)) != (ssize_t)sizeof(magic))
        return MEDIA_DOCKER_LAYER;
    if (magic[0] == 0x1f && magic[1] == 0x8b)
        return MEDIA_DOCKER_LAYER_GZIP;
    if (magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd)
        return MEDIA_OCI_LAYER_ZSTD;
    return MEDIA_DOCKER_LAYER;
}

/* A config named "<hex>.json" or ".../<hex>" must have that digest. */
static int check_config_name(const char *name, const struct tar_file *f, struct error **err)
{
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    size_t n = strlen(base);
    if (str_has_suffix(base, ".json"))
        n -= 5;
    if (n != ID_LEN || !id_is_hex(base, ID_LEN))
        return 0;
    if (strncmp(base, f->digest + 7, 64))
        return error_set(err, GRPC_DATA_LOSS, 0, "config %.64s has digest %s", base, f->digest);
    return 0;
}

/* Write the Docker schema2 manifest a docker save image lacks; its digest is the image's. */
static int synth_manifest(struct tarball *tb, const struct tar_file *cf, json_t *mlayers,
                          char digest[72], char **path, struct error **err)
{
    _cleanup_json_ json_t *m =
        json_pack("{s:i, s:s, s:{s:s, s:I, s:s}, s:O}", "schemaVersion", 2, "mediaType",
                  MEDIA_DOCKER_MANIFEST, "config", "mediaType", MEDIA_DOCKER_CONFIG, "size",
                  (json_int_t)cf->size, "digest", cf->digest, "layers", mlayers);
    assert_state(m);
    _cleanup_free_ char *text = json_dumps(m, JSON_COMPACT);
    assert_state(text);
    if (sha256_text(text, strlen(text), digest, err) < 0)
        return -1;
    *path = xasprintf("m%u.json", tb->n_synth++);
    _cleanup_close_ int fd = open(*path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || fd_write_all(fd, text, strlen(text)) < 0)
        return error_set(err, unpack_errno_code(errno), errno, "write manifest");
    return 0;
}

static int docker_image(struct tarball *tb, json_t *entry, struct error **err)
{
    const char *cfg_name = json_string_value(json_object_get(entry, "Config"));
    json_t *lpaths = json_object_get(entry, "Layers");
    json_t *repo_tags = json_object_get(entry, "RepoTags");
    if (!cfg_name || !json_is_array(lpaths) ||
        (repo_tags && !json_is_null(repo_tags) && !json_is_array(repo_tags)))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "malformed entry");
    const struct tar_file *cf = resolve(tb, cfg_name, err);
    if (!cf || check_config_name(cfg_name, cf, err) < 0)
        return error_prefix(err, "config");
    size_t len = 0;
    _cleanup_free_ char *text = read_staged(cf, REGISTRY_MANIFEST_MAX, &len, err);
    _cleanup_image_config_ struct image_config cfg = {0};
    if (!text || image_config_parse((const uint8_t *)text, len, &cfg, err) < 0)
        return error_prefix(err, "image config %s", cf->digest);
    if (cfg.os && strcmp(cfg.os, "linux"))
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "image %s is for %s, not linux",
                         cf->digest, cfg.os);
    if (json_array_size(lpaths) != cfg.n_diff_ids)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "image config lists %zu layers but manifest.json has %zu", cfg.n_diff_ids,
                         json_array_size(lpaths));

    _cleanup_json_ json_t *mlayers = json_array(), *layers = json_array(), *blobs = json_array();
    for (size_t i = 0; i < cfg.n_diff_ids; i++) {
        const char *lp = json_string_value(json_array_get(lpaths, i));
        const struct tar_file *lf = lp ? resolve(tb, lp, err) : NULL;
        if (!lf)
            return lp ? error_prefix(err, "layer %zu", i)
                      : error_set(err, GRPC_INVALID_ARGUMENT, 0, "layer %zu is not a path", i);
        json_array_append_new(mlayers,
                              json_pack("{s:s, s:I, s:s}", "mediaType", layer_media_type(lf),
                                        "size", (json_int_t)lf->size, "digest", lf->digest));
        json_array_append_new(layers, json_pack("{s:s, s:I, s:s}", "digest", lf->digest, "size",
                                                (json_int_t)lf->size, "diff_id", cfg.diff_ids[i]));
        json_array_append_new(blobs, staged_blob_json(lf));
    }
    char mdigest[72];
    _cleanup_free_ char *mpath = NULL;
    if (synth_manifest(tb, cf, mlayers, mdigest, &mpath, err) < 0)
        return -1;
    json_array_append_new(blobs, blob_json(mdigest, mpath));
    json_array_append_new(blobs, staged_blob_json(cf));

    _cleanup_json_ json_t *tags = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(repo_tags, i, v)
    {
        const char *s = json_string_value(v);
        _cleanup_free_ char *tagged = s ? tag_of(tb, s, NULL) : NULL;
        if (tagged && json_array_size(tags) < MAX_TAGS)
            import_json_add_unique(tags, tagged);
    }
    /* No repo digest: the image did not come from a registry. */
    return add_image(tb, mdigest, cf, cfg.user, steal_ptr(&layers), steal_ptr(&blobs),
                     steal_ptr(&tags), json_array(), err);
}

static int describe_docker(struct tarball *tb, struct error **err)
{
    const struct tar_file *mf = resolve(tb, "manifest.json", err);
    size_t len = 0;
    _cleanup_free_ char *text = mf ? read_staged(mf, REGISTRY_MANIFEST_MAX, &len, err) : NULL;
    if (!text)
        return error_prefix(err, "manifest.json");
    json_error_t jerr;
    _cleanup_json_ json_t *doc = json_loadb(text, len, 0, &jerr);
    if (!json_is_array(doc))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "manifest.json is not a JSON array");
    if (json_array_size(doc) > MAX_IMAGES)
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0, "manifest.json lists more than %d images",
                         MAX_IMAGES);
    size_t i;
    json_t *entry;
    json_array_foreach(doc, i, entry)
    {
        if (docker_image(tb, entry, err) < 0)
            return error_prefix(err, "manifest.json entry %zu", i);
    }
    return 0;
}

/* Extract and describe; returns the JSON text for stdout (owned). */
static char *describe(int fd, struct error **err)
{
    struct tarball tb = {.images = json_array(), .warnings = json_array()};
    char *out = NULL;
    if (xferlib_archive_load(err) < 0 || extract(fd, &tb, err) < 0)
        goto out;
    int rc;
    if (find_file(&tb, "oci-layout") && find_file(&tb, "index.json"))
        rc = describe_oci(&tb, err);
    else if (find_file(&tb, "manifest.json"))
        rc = describe_docker(&tb, err);
    else
        rc = error_set(err, GRPC_INVALID_ARGUMENT, 0,
                       "neither an OCI layout (oci-layout, index.json) nor a docker save "
                       "archive (manifest.json)");
    if (rc < 0)
        goto out;
    if (json_array_size(tb.images) == 0) {
        error_set(err, GRPC_NOT_FOUND, 0, "no image for linux/%s%s%s", manifest_host_arch(),
                  tb.skip_reason ? ": " : "", tb.skip_reason ? tb.skip_reason : "");
        goto out;
    }
    json_t *o = json_pack("{s:O, s:O}", "images", tb.images, "warnings", tb.warnings);
    out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!out || strlen(out) >= IMPORT_DESCRIPTION_MAX) {
        free(steal_ptr(&out));
        error_set(err, GRPC_RESOURCE_EXHAUSTED, 0, "tarball description exceeds %d bytes",
                  IMPORT_DESCRIPTION_MAX);
    }
out:
    tarball_clear(&tb);
    return out;
}

int import_child_main(void *arg)
{
    const int *tarball_fd = arg;
    /* Die with the daemon, and keep none of its fds but stdio and the tarball (as fd 3). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (*tarball_fd != 3 && dup2(*tarball_fd, 3) < 0)
        _exit(1);
    close_range(4, ~0U, 0);
    struct error *err = NULL;
    char *out = describe(3, &err);
    if (out) {
        /* What the parent renames into the store must be on disk before the record is. */
        _cleanup_close_ int dfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || syncfs(dfd) < 0) {
            free(steal_ptr(&out));
            error_set(&err, GRPC_INTERNAL, errno, "syncfs");
        }
    }
    if (!out) {
        json_t *o = json_pack("{s:{s:i, s:s}}", "error", "code", err->grpc_code, "msg", err->msg);
        out = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
    }
    if (out)
        fd_write_all(1, out, strlen(out));
    _exit(err ? 1 : 0);
}
