/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Air-gapped import behind import.h.
 *
 * The risky part runs in a child forked through child_fork(), which does the
 * whole job and _exit()s (the daemon has one thread, so libarchive, jansson
 * and malloc are safe after fork). The child inherits the tarball's fd, works in the staging
 * directory (its cwd), extracts the tar into "x/" with libarchive's secure
 * flags, accepting regular files and directories only (symlinks are not
 * created but remembered, and followed lexically inside the tarball, because
 * docker save links duplicate layers), hashes every file while writing it,
 * parses the layout (OCI index.json or docker save manifest.json), verifies
 * every digest and size it relies on, syncs the filesystem, and prints a
 * JSON description: for each image its id, manifest digest, user, layers,
 * tags, repo digests, and the staged files that become store blobs.
 *
 * The parent (on the loop, cheap work only) walks each tarball through
 * IMPORT_EXTRACT → IMPORT_UNPACK → IMPORT_DONE (or IMPORT_FAILED): it
 * renames the verified blobs into the store, unpacks missing layers through
 * unpack_layer() (at most MAX_PARALLEL_UNPACKS at once), then writes the
 * image records last, as pull_commit() does. The staging directory is always
 * removed by a child `rm -rf`, never on the loop.
 */
#include "autoconf.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "core/error.h"
#include "core/id.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/path.h"
#include "core/text.h"
#include "core/persist.h"
#include "core/util.h"
#include "image/import.h"
#include "image/manifest.h"
#include "image/ref.h"
#include "image/registry.h"
#include "image/store.h"
#include "image/unpack.h"
#include "image/xferlib.h"

/* Caps on what the import directory and a tarball may hold; beyond them it is refused. */
#define MAX_FILES_PER_SCAN 1024
#define MAX_ENTRIES 100000
#define MAX_CONTENT_BYTES (64LL * 1024 * 1024 * 1024)
#define MAX_PATH_LEN 1024
#define MAX_IMAGES 64
#define MAX_TAGS 64
#define MAX_SYMLINK_HOPS 8
#define MAX_INDEX_HOPS 2
#define OUT_CAP (1024 * 1024)
#define RECORDS_MAX (4 * 1024 * 1024)
#define OCI_LAYOUT_MAX 4096

#define IMPORT_TIMEOUT_MS (60LL * 60 * 1000)
#define UNPACK_TIMEOUT_MS (30LL * 60 * 1000)
#define RM_TIMEOUT_MS (10LL * 60 * 1000)
#define MAX_PARALLEL_UNPACKS 2
#define READ_BLOCK (64 * 1024)

#define STAGING_PREFIX "import-"
#define TREE "x/" /* the extracted tree, inside the staging directory */
#define RECORDS_FILE "imports.json"
#define ANNOTATION_CONTAINERD_NAME "io.containerd.image.name"
#define ANNOTATION_OCI_REF_NAME "org.opencontainers.image.ref.name"
#define MEDIA_DOCKER_LAYER "application/vnd.docker.image.rootfs.diff.tar"
#define MEDIA_DOCKER_LAYER_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"
#define MEDIA_OCI_LAYER_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"

#define EXTRACT_FLAGS                                                                              \
    (ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS |                           \
     ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS)

enum import_state {
    IMPORT_EXTRACT, /* extract child running; waiting for its exit */
    IMPORT_UNPACK,  /* blobs are in the store; waiting for layer unpacks */
    IMPORT_DONE,
    IMPORT_FAILED,
};

/* A staged file that becomes a store blob. */
struct import_blob {
    char *digest;
    char *path; /* relative to the staging directory */
};

/* A layer directory to create. */
struct import_layer {
    struct import_job *job;
    char *digest; /* the blob */
    char *diff_id;
    char *chain_id;
    struct unpack_op *op;
};

/* One tarball. */
struct import_job {
    struct importer *im;
    enum import_state state;
    char *name; /* file name in the import directory */
    int64_t size, mtime_ns;
    char *staging;
    int fd; /* the tarball, handed to the child; -1 otherwise */
    struct child *child;
    struct store_image **imgs; /* records to write, from the child's description */
    size_t n_imgs;
    char **ids; /* ids of the images written, for imports.json */
    size_t n_ids;
    struct import_blob *blobs;
    size_t n_blobs;
    struct import_layer *layers;
    size_t n_layers, next_layer, running;
    struct error *err;
    TAILQ_ENTRY(import_job) link; /* im->queue while waiting */
};

/* A staging directory being removed (the importer cancels it when it goes first). */
struct rm_op {
    struct importer *im;
    char *path;
    struct child *child;
    TAILQ_ENTRY(rm_op) link; /* im->rms */
};

struct importer {
    struct store *st;
    char *dir;
    char *records_path;
    json_t *records;                /* imports.json "files": name -> {size, mtime_ns, images} */
    TAILQ_HEAD(, import_job) queue; /* waiting tarballs, in order */
    struct import_job *active;      /* one tarball at a time */
    TAILQ_HEAD(, rm_op) rms;
    struct loop_timer *kick;
    bool cleaned;      /* staging leftovers of an earlier run removed */
    bool scan_pending; /* a scan's done callback is owed */
    void (*done_cb)(void *arg);
    void *done_arg;
};

static void archive_freep(struct archive **a)
{
    if (*a)
        archive_free(*a);
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

static bool is_tarball_name(const char *name)
{
    return name[0] != '.' && (str_has_suffix(name, ".tar") || str_has_suffix(name, ".tar.gz") ||
                              str_has_suffix(name, ".tgz"));
}

/*
 * Normalise a relative path lexically: "./a//b/" -> "a/b", "" for the top.
 * With dotdot, ".." removes the previous component (never above the top);
 * without, any ".." is refused. -1 for absolute, escaping or too long paths.
 */
static int normalise_path(const char *in, bool dotdot, char **out)
{
    if (in[0] == '/' || strlen(in) > MAX_PATH_LEN)
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
        la_ssize_t n = archive_read_data(ar, block, READ_BLOCK);
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
        if (archive_write_data(aw, block, (size_t)n) != n) {
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
    const char *name = archive_entry_pathname(e);
    if (!name)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "tarball entry without a name");
    _cleanup_free_ char *safe = text_safe(name, TEXT_SAFE_MAX);
    _cleanup_free_ char *path = NULL;
    if (normalise_path(name, false, &path) < 0)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "unsafe path in tarball: %s (absolute, \"..\" or too long)", safe);
    if (archive_entry_hardlink(e))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "hard link in tarball: %s", safe);
    mode_t type = archive_entry_filetype(e);
    if (type == AE_IFLNK) {
        const char *target = archive_entry_symlink(e);
        if (!target || strlen(target) > MAX_PATH_LEN || !*path)
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
    int64_t size = type == AE_IFREG ? archive_entry_size(e) : 0;
    if (size < 0 || size > MAX_CONTENT_BYTES - *total)
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0, "tarball holds more than %lld bytes",
                         (long long)MAX_CONTENT_BYTES);

    _cleanup_free_ char *dest = xasprintf(TREE "%s", path);
    archive_entry_set_pathname(e, dest);
    archive_entry_set_perm(e, type == AE_IFDIR ? 0700 : 0600);
    if (archive_write_header(aw, e) < ARCHIVE_OK)
        return unpack_archive_fail(err, aw, "extract");
    struct tar_file f = {.path = steal_ptr(&path), .is_dir = type == AE_IFDIR, .size = size};
    int rc = type == AE_IFREG ? copy_data(ar, aw, &f, total, err) : 0;
    if (rc == 0 && archive_write_finish_entry(aw) < ARCHIVE_OK)
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
    _cleanup_archive_ struct archive *ar = archive_read_new();
    _cleanup_archive_ struct archive *aw = archive_write_disk_new();
    if (!ar || !aw)
        return error_set(err, GRPC_INTERNAL, ENOMEM, "libarchive");
    archive_read_support_filter_gzip(ar);
    archive_read_support_format_tar(ar);
    archive_write_disk_set_options(aw, EXTRACT_FLAGS);
    if (archive_read_open_fd(ar, fd, READ_BLOCK) != ARCHIVE_OK)
        return unpack_archive_fail(err, ar, "not a tar archive");
    if (mkdir(TREE, 0700) < 0)
        return error_set(err, GRPC_INTERNAL, errno, "mkdir " TREE);
    int64_t total = 0;
    for (size_t count = 0;; count++) {
        struct archive_entry *e = NULL;
        int r = archive_read_next_header(ar, &e);
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
    if (archive_write_close(aw) != ARCHIVE_OK)
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

static void add_unique(json_t *arr, const char *s)
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
                add_unique(json_object_get(img, "tags"), json_string_value(v));
        }
        json_array_foreach(r, k, v)
        {
            if (json_array_size(json_object_get(img, "repo_digests")) < MAX_TAGS)
                add_unique(json_object_get(img, "repo_digests"), json_string_value(v));
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
            add_unique(tags, tagged);
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
    if (extract(fd, &tb, err) < 0)
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
    if (!out || strlen(out) >= OUT_CAP) {
        free(steal_ptr(&out));
        error_set(err, GRPC_RESOURCE_EXHAUSTED, 0, "tarball description exceeds %d bytes", OUT_CAP);
    }
out:
    tarball_clear(&tb);
    return out;
}

/* in_child hook: never returns. */
static int import_child(void *arg)
{
    const struct import_job *job = arg;
    /* Die with the daemon, and keep none of its fds but stdio and the tarball (as fd 3). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (job->fd != 3 && dup2(job->fd, 3) < 0)
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

/* ======================================================================
 * The parent, on the loop.
 * ====================================================================== */

static void job_step(struct import_job *job);

static void job_free(void *arg)
{
    struct import_job *job = arg;
    if (!job)
        return;
    free(job->name);
    free(job->staging);
    if (job->fd >= 0)
        close(job->fd);
    for (size_t i = 0; i < job->n_imgs; i++)
        store_image_free(job->imgs[i]);
    free(job->imgs);
    for (size_t i = 0; i < job->n_ids; i++)
        free(job->ids[i]);
    free(job->ids);
    for (size_t i = 0; i < job->n_blobs; i++) {
        free(job->blobs[i].digest);
        free(job->blobs[i].path);
    }
    free(job->blobs);
    for (size_t i = 0; i < job->n_layers; i++) {
        free(job->layers[i].digest);
        free(job->layers[i].diff_id);
        free(job->layers[i].chain_id);
    }
    free(job->layers);
    error_free(job->err);
    free(job);
}

static void on_rm_done(const struct child_result *r, void *arg)
{
    struct rm_op *rm = arg;
    if (!r->exited || r->exit_code != 0)
        log_warn("could not remove staging directory path=%s: %.*s", rm->path, (int)r->err_len,
                 r->err);
    struct importer *im = rm->im;
    TAILQ_REMOVE(&im->rms, rm, link);
    loop_timer_arm(im->kick, 0);
    free(rm->path);
    free(rm);
}

/* rm -rf in a child: a staging tree may be large. */
static void remove_staging(struct importer *im, const char *path)
{
    struct rm_op *rm = xcalloc(1, sizeof(*rm));
    rm->im = im;
    rm->path = xstrdup(path);
    _cleanup_error_ struct error *err = NULL;
    rm->child = child_rm_rf(&path, 1, RM_TIMEOUT_MS, on_rm_done, rm, &err);
    if (!rm->child) {
        log_warn("could not remove staging directory path=%s: %s", path, err->msg);
        free(rm->path);
        free(rm);
        return;
    }
    TAILQ_INSERT_HEAD(&im->rms, rm, link);
}

static char *staging_parent(const struct importer *im)
{
    return xasprintf("%s/content/ingest", store_root(im->st));
}

/* Staging directories of an import a crash or restart interrupted. */
static void clean_leftovers(struct importer *im)
{
    _cleanup_free_ char *parent = staging_parent(im);
    DIR *d = opendir(parent);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!str_has_prefix(de->d_name, STAGING_PREFIX))
            continue;
        _cleanup_free_ char *p = xasprintf("%s/%s", parent, de->d_name);
        log_debug("removing import leftover path=%s", p);
        remove_staging(im, p);
    }
    closedir(d);
}

/* ---- imports.json ---- */

static void records_load(struct importer *im)
{
    im->records = json_object();
    _cleanup_error_ struct error *err = NULL;
    size_t len = 0;
    _cleanup_free_ char *text = read_file_capped(im->records_path, RECORDS_MAX, &len, &err);
    if (!text) {
        if (err->grpc_code != GRPC_NOT_FOUND)
            log_warn("ignoring import records path=%s: %s", im->records_path, err->msg);
        return;
    }
    json_error_t jerr;
    _cleanup_json_ json_t *doc = json_loadb(text, len, 0, &jerr);
    json_t *files = json_object_get(doc, "files");
    if (!json_is_object(files)) {
        log_warn("ignoring malformed import records path=%s", im->records_path);
        return;
    }
    json_object_update(im->records, files);
}

static void records_save(struct importer *im)
{
    _cleanup_json_ json_t *doc = json_pack("{s:O}", "files", im->records);
    _cleanup_free_ char *text = json_dumps(doc, JSON_INDENT(1) | JSON_SORT_KEYS);
    _cleanup_error_ struct error *err = NULL;
    assert_state(text);
    if (persist_write(im->records_path, text, strlen(text), 0600, &err) < 0)
        log_warn("could not save import records path=%s: %s", im->records_path, err->msg);
}

static bool is_unchanged(const struct importer *im, const char *name, int64_t size,
                         int64_t mtime_ns)
{
    json_t *r = json_object_get(im->records, name);
    return r && json_integer_value(json_object_get(r, "size")) == size &&
           json_integer_value(json_object_get(r, "mtime_ns")) == mtime_ns;
}

static void record_import(struct importer *im, const struct import_job *job)
{
    json_t *ids = json_array();
    for (size_t i = 0; i < job->n_ids; i++)
        add_unique(ids, job->ids[i]);
    json_object_set_new(im->records, job->name,
                        json_pack("{s:I, s:I, s:o}", "size", (json_int_t)job->size, "mtime_ns",
                                  (json_int_t)job->mtime_ns, "images", ids));
    records_save(im);
}

/* ---- the child's description ---- */

static const char *digest_at(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return image_ref_is_digest(s) ? s : NULL;
}

static int str_array(json_t *a, char ***out, size_t *n)
{
    if (!json_is_array(a))
        return -1;
    size_t len = json_array_size(a);
    *out = xcalloc(len ? len : 1, sizeof(char *));
    for (size_t i = 0; i < len; i++) {
        const char *s = json_string_value(json_array_get(a, i));
        if (!s)
            return -1;
        (*out)[(*n)++] = xstrdup(s);
    }
    return 0;
}

static int bad_description(struct error **err)
{
    return error_set(err, GRPC_INTERNAL, 0, "malformed description from the import child");
}

static int read_image(struct import_job *job, json_t *o, struct error **err)
{
    const char *id = digest_at(o, "id"), *md = digest_at(o, "manifest");
    const char *user = json_string_value(json_object_get(o, "user"));
    json_t *layers = json_object_get(o, "layers"), *blobs = json_object_get(o, "blobs");
    json_t *csize = json_object_get(o, "config_size");
    if (!id || !md || !user || !json_is_array(layers) || !json_is_array(blobs) ||
        !json_is_integer(csize) || json_integer_value(csize) < 0)
        return bad_description(err);

    struct store_image *img = xcalloc(1, sizeof(*img));
    job->imgs = xrealloc(job->imgs, (job->n_imgs + 1) * sizeof(*job->imgs));
    job->imgs[job->n_imgs++] = img;
    img->id = xstrdup(id);
    img->manifest_digest = xstrdup(md);
    img->user = xstrdup(user);
    img->size = (uint64_t)json_integer_value(csize);
    size_t n = json_array_size(layers);
    img->layer_digests = xcalloc(n ? n : 1, sizeof(char *));
    img->diff_ids = xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        json_t *l = json_array_get(layers, i);
        const char *digest = digest_at(l, "digest"), *diff_id = digest_at(l, "diff_id");
        json_t *size = json_object_get(l, "size");
        if (!digest || !diff_id || !json_is_integer(size) || json_integer_value(size) < 0)
            return bad_description(err);
        img->layer_digests[i] = xstrdup(digest);
        img->diff_ids[i] = xstrdup(diff_id);
        img->size += (uint64_t)json_integer_value(size);
        img->n_layers++;
    }
    img->chain_ids = store_chain_ids(img->diff_ids, img->n_layers, err);
    if (!img->chain_ids)
        return -1;
    if (str_array(json_object_get(o, "tags"), &img->repo_tags, &img->n_repo_tags) < 0 ||
        str_array(json_object_get(o, "repo_digests"), &img->repo_digests, &img->n_repo_digests) < 0)
        return bad_description(err);

    size_t i;
    json_t *b;
    json_array_foreach(blobs, i, b)
    {
        const char *digest = digest_at(b, "digest");
        const char *path = json_string_value(json_object_get(b, "path"));
        if (!digest || !path || strlen(path) > MAX_PATH_LEN || !path_is_clean_relpath(path))
            return bad_description(err);
        job->blobs = xrealloc(job->blobs, (job->n_blobs + 1) * sizeof(*job->blobs));
        job->blobs[job->n_blobs++] = (struct import_blob){xstrdup(digest), xstrdup(path)};
    }
    return 0;
}

static int read_description(struct import_job *job, const struct child_result *res,
                            struct error **err)
{
    if (res->err_len)
        log_debug("import child stderr file=%s: %.*s", job->name, (int)res->err_len, res->err);
    if (res->timed_out)
        return error_set(err, GRPC_DEADLINE_EXCEEDED, 0, "import did not finish within %lld min",
                         IMPORT_TIMEOUT_MS / 60000);
    if (!res->exited)
        return error_set(err, GRPC_INTERNAL, 0, "import child killed by signal %d",
                         res->term_signal);
    if (res->out_truncated)
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0, "import description exceeds %d bytes",
                         OUT_CAP);
    json_error_t jerr;
    _cleanup_json_ json_t *doc = json_loadb(res->out, res->out_len, 0, &jerr);
    json_t *e = json_object_get(doc, "error");
    if (e) {
        const char *msg = json_string_value(json_object_get(e, "msg"));
        int code = (int)json_integer_value(json_object_get(e, "code"));
        return error_set(err, code > 0 && code <= GRPC_UNAUTHENTICATED ? code : GRPC_INTERNAL, 0,
                         "%s", msg ? msg : "unknown error");
    }
    json_t *images = json_object_get(doc, "images");
    if (res->exit_code != 0 || !json_is_array(images)) {
        _cleanup_free_ char *tail = text_safe_tail(res->err, 200);
        return error_set(err, GRPC_INTERNAL, 0, "import child exited with status %d: %s",
                         res->exit_code, tail);
    }
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(doc, "warnings"), i, v)
    {
        const char *w = json_string_value(v);
        if (w)
            log_warn("import file=%s: %s", job->name, w);
    }
    json_array_foreach(images, i, v)
    {
        if (read_image(job, v, err) < 0)
            return -1;
    }
    return job->n_imgs ? 0 : bad_description(err);
}

static void on_extracted(const struct child_result *res, void *arg)
{
    struct import_job *job = arg;
    job->child = NULL;
    read_description(job, res, &job->err);
    job_step(job);
}

/* ---- steps ---- */

/* rename(2) the verified staged files into the store; blobs it has already stay staged. */
static int move_blobs(struct import_job *job, struct error **err)
{
    struct store *st = job->im->st;
    for (size_t i = 0; i < job->n_blobs; i++) {
        const struct import_blob *b = &job->blobs[i];
        if (store_has_blob(st, b->digest))
            continue;
        _cleanup_free_ char *src = xasprintf("%s/%s", job->staging, b->path);
        _cleanup_free_ char *dest = store_blob_path(st, b->digest);
        if (rename(src, dest) < 0)
            return error_set(err, GRPC_INTERNAL, errno, "move blob %s into the store", b->digest);
    }
    return 0;
}

/* Every layer directory that does not exist yet, once. */
static int plan_layers(struct import_job *job, struct error **err)
{
    struct store *st = job->im->st;
    for (size_t i = 0; i < job->n_imgs; i++) {
        const struct store_image *img = job->imgs[i];
        for (size_t l = 0; l < img->n_layers; l++) {
            const char *chain = img->chain_ids[l];
            bool planned = false;
            for (size_t k = 0; k < job->n_layers && !planned; k++)
                planned = !strcmp(job->layers[k].chain_id, chain);
            if (planned || store_has_layer(st, chain))
                continue;
            if (!store_has_blob(st, img->layer_digests[l]))
                return error_set(err, GRPC_INTERNAL, 0, "layer blob %s is not in the store",
                                 img->layer_digests[l]);
            job->layers = xrealloc(job->layers, (job->n_layers + 1) * sizeof(*job->layers));
            job->layers[job->n_layers++] = (struct import_layer){
                .job = job,
                .digest = xstrdup(img->layer_digests[l]),
                .diff_id = xstrdup(img->diff_ids[l]),
                .chain_id = xstrdup(chain),
            };
        }
    }
    return 0;
}

static void job_fail(struct import_job *job, struct error *err);

static void on_unpacked(const struct error *err, uint64_t size, void *arg)
{
    struct import_layer *l = arg;
    struct import_job *job = l->job;
    l->op = NULL;
    job->running--;
    /* A pull may have made the same layer meanwhile: what counts is that it exists. */
    if (err && !store_has_layer(job->im->st, l->chain_id)) {
        struct error *e = error_dup(err);
        error_prefix(&e, "layer %s", l->digest);
        job_fail(job, e);
        job_step(job);
        return;
    }
    if (!err)
        log_info("layer unpacked chain=%s bytes=%llu file=%s", l->chain_id,
                 (unsigned long long)size, job->name);
    job_step(job);
}

static int start_unpacks(struct import_job *job, struct error **err)
{
    struct store *st = job->im->st;
    while (job->running < MAX_PARALLEL_UNPACKS && job->next_layer < job->n_layers) {
        struct import_layer *l = &job->layers[job->next_layer++];
        if (store_has_layer(st, l->chain_id))
            continue;
        _cleanup_free_ char *blob = store_blob_path(st, l->digest);
        _cleanup_free_ char *dest = store_layer_path(st, l->chain_id);
        l->op = unpack_layer(blob, dest, l->diff_id, UNPACK_TIMEOUT_MS, on_unpacked, l, err);
        if (!l->op)
            return error_prefix(err, "layer %s", l->digest);
        job->running++;
    }
    return 0;
}

/* Write the image records, last, as pull_commit() does. */
static int commit(struct import_job *job, struct error **err)
{
    job->ids = xcalloc(job->n_imgs, sizeof(char *));
    for (size_t i = 0; i < job->n_imgs; i++) {
        struct store_image *img = steal_ptr(&job->imgs[i]);
        img->created_ns = now_realtime_ns();
        char *id = xstrdup(img->id);
        job->ids[job->n_ids++] = id;
        struct buf tags;
        buf_init(&tags, 4096);
        for (size_t t = 0; t < img->n_repo_tags; t++) {
            if (buf_append(&tags, t ? "," : "", t ? 1 : 0) < 0 ||
                buf_append(&tags, img->repo_tags[t], strlen(img->repo_tags[t])) < 0)
                break;
        }
        _cleanup_free_ char *tag_list = buf_take_str(&tags, NULL);
        buf_free(&tags);
        if (store_image_put(job->im->st, img, err) < 0)
            return error_prefix(err, "image %s", id);
        log_info("image imported file=%s id=%s tags=%s", job->name, id,
                 *tag_list ? tag_list : "(none)");
    }
    return 0;
}

/* Take the job off the importer, log, remove its staging directory, move on. */
static void job_end(struct import_job *job)
{
    struct importer *im = job->im;
    if (job->state == IMPORT_DONE)
        record_import(im, job);
    else
        log_warn("import skipped file=%s: %s", job->name,
                 job->err ? job->err->msg : "unknown error");
    if (job->staging)
        remove_staging(im, job->staging);
    im->active = NULL;
    loop_defer_free(job_free, job);
    loop_timer_arm(im->kick, 0);
}

/* Fails the one way (image/pull.c says how); below the switch the unpacks still running stop. */
static void job_step(struct import_job *job)
{
    struct error *err = NULL;
    switch (job->state) {
    case IMPORT_EXTRACT: /* waiting for the extract child */
        if (job->child)
            return;
        if (job->err)
            break;
        if (move_blobs(job, &err) < 0 || plan_layers(job, &err) < 0) {
            job_fail(job, err);
            break;
        }
        job->state = IMPORT_UNPACK;
        /* fall through */
    case IMPORT_UNPACK: /* waiting for the layer unpacks */
        if (job->err)
            break;
        if (start_unpacks(job, &err) < 0) {
            job_fail(job, err);
            break;
        }
        if (job->running > 0)
            return;
        if (commit(job, &err) < 0) {
            job_fail(job, err);
            break;
        }
        job->state = IMPORT_DONE;
        job_end(job);
        return;
    case IMPORT_DONE:
    case IMPORT_FAILED: /* ended; freed soon */
        return;
    }
    /* Failed: the unpacks still running stop (each removes what it left), then the job ends. */
    for (size_t i = 0; i < job->n_layers; i++) {
        if (job->layers[i].op)
            unpack_cancel(steal_ptr(&job->layers[i].op));
    }
    job->running = 0;
    job->state = IMPORT_FAILED;
    job_end(job);
}

/* Record the first failure; later ones are its consequences. Does not step. */
static void job_fail(struct import_job *job, struct error *err)
{
    if (job->err)
        error_free(err);
    else
        job->err = err;
}

/* Open the tarball (never blocking: O_NONBLOCK, regular files only) and fork the child. */
static int job_start(struct import_job *job, struct error **err)
{
    struct importer *im = job->im;
    _cleanup_free_ char *path = xasprintf("%s/%s", im->dir, job->name);
    job->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    struct stat st;
    if (job->fd < 0 || fstat(job->fd, &st) < 0)
        return error_set(err, GRPC_INTERNAL, errno, "open %s", path);
    if (!S_ISREG(st.st_mode))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s is not a regular file", path);
    /* What was actually imported, for imports.json. */
    job->size = st.st_size;
    job->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;

    _cleanup_free_ char *parent = staging_parent(im);
    _cleanup_free_ char *staging = xasprintf("%s/" STAGING_PREFIX "XXXXXX", parent);
    if (!mkdtemp(staging))
        return error_set(err, GRPC_INTERNAL, errno, "create staging directory in %s", parent);
    job->staging = steal_ptr(&staging);
    struct child_opts o = {
        .cwd = job->staging,
        .out_cap = OUT_CAP,
        .timeout_ms = IMPORT_TIMEOUT_MS,
    };
    job->child = child_fork(&o, import_child, job, on_extracted, job, err);
    close(job->fd);
    job->fd = -1;
    if (!job->child)
        return -1;
    log_info("import started file=%s bytes=%lld", job->name, (long long)job->size);
    return 0;
}

/* Start the next tarball when none runs; report a finished scan. */
static void pump(struct importer *im)
{
    struct import_job *job;
    while (!im->active && (job = TAILQ_FIRST(&im->queue))) {
        TAILQ_REMOVE(&im->queue, job, link);
        im->active = job;
        struct error *err = NULL;
        if (job_start(job, &err) < 0) {
            job_fail(job, err);
            job_step(job);
        }
    }
    if (im->scan_pending && !im->active && TAILQ_EMPTY(&im->queue) && TAILQ_EMPTY(&im->rms)) {
        im->scan_pending = false;
        if (im->done_cb)
            im->done_cb(im->done_arg);
    }
}

static void on_kick(void *arg)
{
    pump(arg);
}

/* ---- the API ---- */

struct importer *importer_new(struct store *st, const char *import_dir)
{
    struct importer *im = xcalloc(1, sizeof(*im));
    TAILQ_INIT(&im->queue);
    TAILQ_INIT(&im->rms);
    im->st = st;
    im->dir = xstrdup(import_dir);
    im->records_path = xasprintf("%s/" RECORDS_FILE, store_root(st));
    records_load(im);
    return im;
}

void importer_set_done_cb(struct importer *im, void (*cb)(void *arg), void *arg)
{
    im->done_cb = cb;
    im->done_arg = arg;
}

static bool is_queued(const struct importer *im, const char *name)
{
    if (im->active && !strcmp(im->active->name, name))
        return true;
    const struct import_job *j;
    TAILQ_FOREACH (j, &im->queue, link) {
        if (!strcmp(j->name, name))
            return true;
    }
    return false;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Regular files with a tarball name, sorted; at most MAX_FILES_PER_SCAN.
 * *complete says whether that is all of them (a missing directory has none).
 */
static char **list_tarballs(const struct importer *im, size_t *n, bool *complete)
{
    *n = 0;
    *complete = false;
    DIR *d = opendir(im->dir);
    if (!d) {
        *complete = errno == ENOENT;
        if (errno == ENOENT)
            log_debug("no import directory path=%s", im->dir);
        else
            log_warn("cannot read import directory path=%s: %s", im->dir, strerror(errno));
        return NULL;
    }
    *complete = true;
    char **names = NULL;
    struct dirent *de;
    while ((de = readdir(d))) {
        struct stat st;
        if (!is_tarball_name(de->d_name) || fstatat(dirfd(d), de->d_name, &st, 0) < 0 ||
            !S_ISREG(st.st_mode))
            continue;
        if (*n == MAX_FILES_PER_SCAN) {
            log_warn("import directory has more than %d tarballs; the rest wait path=%s",
                     MAX_FILES_PER_SCAN, im->dir);
            *complete = false;
            break;
        }
        names = xrealloc(names, (*n + 1) * sizeof(char *));
        names[(*n)++] = xstrdup(de->d_name);
    }
    closedir(d);
    if (*n)
        qsort(names, *n, sizeof(char *), cmp_str);
    return names;
}

void importer_scan(struct importer *im)
{
    if (!im->kick)
        im->kick = loop_timer_new(on_kick, im);
    if (!im->cleaned) {
        im->cleaned = true;
        clean_leftovers(im);
    }
    im->scan_pending = true;
    loop_timer_arm(im->kick, 0);

    size_t n = 0;
    bool complete = false;
    char **names = list_tarballs(im, &n, &complete);
    /* Forget tarballs that are gone, so one put back is imported again. */
    bool pruned = false;
    const char *key;
    json_t *v, *tmp;
    json_object_foreach_safe(im->records, tmp, key, v)
    {
        if (complete && (n == 0 || !bsearch(&key, names, n, sizeof(char *), cmp_str))) {
            json_object_del(im->records, key);
            pruned = true;
        }
    }
    if (pruned)
        records_save(im);

    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *name = steal_ptr(&names[i]);
        struct stat st;
        _cleanup_free_ char *path = xasprintf("%s/%s", im->dir, name);
        if (is_queued(im, name) || stat(path, &st) < 0)
            continue;
        int64_t mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
        if (is_unchanged(im, name, st.st_size, mtime_ns)) {
            log_debug("import unchanged, skipping file=%s", name);
            continue;
        }
        struct import_job *job = xcalloc(1, sizeof(*job));
        job->im = im;
        job->state = IMPORT_EXTRACT;
        job->name = steal_ptr(&name);
        job->fd = -1;
        TAILQ_INSERT_TAIL(&im->queue, job, link);
    }
    free(names);
}

bool importer_uses(const char *key, void *importer)
{
    const struct importer *im = importer;
    const struct import_job *job = im->active;
    if (!job)
        return false;
    for (size_t i = 0; i < job->n_blobs; i++) {
        if (!strcmp(job->blobs[i].digest, key))
            return true;
    }
    for (size_t i = 0; i < job->n_imgs; i++) {
        const struct store_image *img = job->imgs[i];
        if (!img)
            continue; /* written: the store claims it now */
        if (!strcmp(img->id, key) || !strcmp(img->manifest_digest, key))
            return true;
        for (size_t l = 0; l < img->n_layers; l++) {
            if (!strcmp(img->layer_digests[l], key) || !strcmp(img->chain_ids[l], key))
                return true;
        }
    }
    return false;
}

void importer_free(struct importer *im)
{
    if (!im)
        return;
    struct import_job *job = steal_ptr(&im->active);
    if (job) {
        log_info("import stopped file=%s", job->name);
        if (job->child)
            child_cancel(steal_ptr(&job->child));
        for (size_t i = 0; i < job->n_layers; i++) {
            if (job->layers[i].op)
                unpack_cancel(steal_ptr(&job->layers[i].op));
        }
        /* Its staging directory is removed by the next start (clean_leftovers). */
        job_free(job);
    }
    while ((job = TAILQ_FIRST(&im->queue))) {
        TAILQ_REMOVE(&im->queue, job, link);
        job_free(job);
    }
    /* The daemon is stopping: unfinished removals are left to the next start too. */
    struct rm_op *rm;
    while ((rm = TAILQ_FIRST(&im->rms))) {
        TAILQ_REMOVE(&im->rms, rm, link);
        child_cancel(rm->child);
        free(rm->path);
        free(rm);
    }
    loop_timer_free(im->kick);
    json_decref(im->records);
    free(im->dir);
    free(im->records_path);
    free(im);
}
