/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Layer unpacking behind unpack.h. The daemon forks a child through
 * child_fork(), which does the whole job and never returns: the daemon has
 * one thread, so libarchive and malloc are safe after fork. The child removes a
 * leftover "<dest>.tmp", creates it, opens the blob, closes every other fd,
 * chroots into the new directory, extracts, syncs the filesystem and exits.
 * It reports "size=<n>" on stdout, or "code=<grpc code> msg=<text>" on
 * stderr; other stderr lines are its log lines and are relayed. On success
 * the parent renames "<dest>.tmp" to dest (cheap, fine on the loop); on any
 * failure, including a timeout or a cancel, a second child removes
 * "<dest>.tmp" (never an rm -rf on the loop) before done runs.
 *
 * The extraction pipes two libarchive readers: the first undoes the
 * compression (gzip, zstd or none) and hashes the uncompressed stream for the
 * diff_id, the second reads the tar from it. Each entry is checked before
 * libarchive's secure writer sees it, and OCI whiteouts become overlayfs ones.
 */
#include "autoconf.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/error.h"
#include "core/id.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/path.h"
#include "core/text.h"
#include "core/util.h"
#include "image/unpack.h"
#include "image/xferlib.h"

/* Caps on what a layer may contain; beyond them the layer is refused. */
#define MAX_ENTRIES 1000000
#define MAX_PATH_LEN 4096
#define MAX_XATTRS_PER_ENTRY 128
#define MAX_XATTR_NAME_LEN 255          /* XATTR_NAME_MAX */
#define MAX_XATTR_VALUE_LEN (64 * 1024) /* XATTR_SIZE_MAX */
#define MAX_WARNINGS_LOGGED 10
#define READ_BLOCK (64 * 1024)

#define WHITEOUT_PREFIX ".wh."
#define WHITEOUT_META_PREFIX ".wh..wh."
#define WHITEOUT_OPAQUE ".wh..wh..opq"
#define OVERLAY_XATTR_PREFIX "trusted.overlay."
#define OVERLAY_OPAQUE_XATTR "trusted.overlay.opaque"

#define EXTRACT_FLAGS                                                                              \
    (ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS |                           \
     ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS | ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM |       \
     ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_XATTR)

/* ---- small helpers ---- */

/*
 * Errors the host causes (full disk, I/O, no memory) are INTERNAL; the rest
 * of what libarchive refuses (errno 0 for its security checks, EINVAL,
 * ENAMETOOLONG, ...) comes from the layer's content.
 */
int unpack_errno_code(int e)
{
    switch (e) {
    case ENOSPC:
    case EDQUOT:
        return GRPC_RESOURCE_EXHAUSTED;
    case EIO:
    case ENOMEM:
    case EROFS:
    case EMFILE:
    case ENFILE:
    case EPERM:
    case EACCES:
    case EBADF:
    case EFBIG:
        return GRPC_INTERNAL;
    default:
        return GRPC_INVALID_ARGUMENT;
    }
}

int unpack_archive_fail(struct error **err, struct archive *a, const char *what)
{
    int e = xarchive.errno_of(a);
    const char *msg = xarchive.error_string(a);
    _cleanup_free_ char *safe = text_safe(msg ? msg : "unknown error", TEXT_SAFE_MAX);
    return error_set(err, unpack_errno_code(e), e > 0 ? e : 0, "%s: %s", what, safe);
}

/* Split "a/b/c/" into a newly allocated "a/b" ("." for none) and a pointer to "c" in *base. */
static char *split_path(const char *path, char **base)
{
    char *copy = xstrdup(path);
    size_t len = strlen(copy);
    while (len > 1 && copy[len - 1] == '/')
        copy[--len] = '\0';
    char *slash = strrchr(copy, '/');
    if (!slash) {
        *base = xstrdup(copy);
        free(copy);
        return xstrdup(".");
    }
    *base = xstrdup(slash + 1);
    slash[slash == copy ? 1 : 0] = '\0';
    return copy;
}

/* ---- digest ---- */

/* "sha256:<64 hex>" or "sha512:<128 hex>", lower case, as OCI digests are written. */
static bool digest_algo(const char *digest, enum xferlib_hash_algo *algo)
{
    size_t hex_len = 0;
    if (str_has_prefix(digest, "sha256:")) {
        *algo = XFERLIB_SHA256;
        hex_len = 64;
    } else if (str_has_prefix(digest, "sha512:")) {
        *algo = XFERLIB_SHA512;
        hex_len = 128;
    } else {
        return false;
    }
    const char *hex = strchr(digest, ':') + 1;
    return strlen(hex) == hex_len && id_is_hex(hex, hex_len);
}

static int check_diff_id(const char *diff_id, struct error **err)
{
    enum xferlib_hash_algo algo;
    if (diff_id && !digest_algo(diff_id, &algo)) {
        _cleanup_free_ char *safe = text_safe(diff_id, TEXT_SAFE_MAX);
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "bad diff_id %s", safe);
    }
    return 0;
}

/* ---- directories without following symlinks ---- */

/*
 * Open dir (relative to base_fd) one component at a time with O_NOFOLLOW,
 * creating missing components (0755) when create is set: a whiteout or an
 * opaque marker must never land outside the layer through a symlink.
 */
static int open_dir_nofollow(int base_fd, const char *dir, bool create, struct error **err)
{
    _cleanup_free_ char *copy = xstrdup(dir);
    _cleanup_close_ int fd = fcntl(base_fd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0)
        return error_set(err, GRPC_INTERNAL, errno, "dup");
    char *save = NULL;
    for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0)
            continue;
        int next = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT && create) {
            if (mkdirat(fd, c, 0755) < 0 && errno != EEXIST)
                return error_set(err, unpack_errno_code(errno), errno, "mkdir %s", c);
            next = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (next < 0 && (errno == ELOOP || errno == ENOTDIR)) {
            _cleanup_free_ char *safe = text_safe(dir, TEXT_SAFE_MAX);
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "unsafe path in layer: %s is not a directory", safe);
        }
        if (next < 0)
            return error_set(err, unpack_errno_code(errno), errno, "open %s", c);
        close(fd);
        fd = next;
    }
    return steal_fd(&fd);
}

/* One directory on the way down during a tree removal. */
struct rm_frame {
    char *name;     /* this directory's name in its parent */
    char **subdirs; /* subdirectories still to remove; taken ones are NULL */
    size_t n_subdirs, next;
};

struct rm_stack {
    struct rm_frame *v;
    size_t n, alloc;
};

static void rm_frame_clear(struct rm_frame *f)
{
    for (size_t i = 0; i < f->n_subdirs; i++)
        free(f->subdirs[i]);
    free(f->subdirs);
    free(f->name);
    *f = (struct rm_frame){0};
}

/*
 * Enter a directory: push a frame named name (taken), unlink everything in
 * dir_fd but directories, and note those in the frame.
 */
static int rm_push(struct rm_stack *s, char *name, int dir_fd, struct error **err)
{
    if (s->n == s->alloc) {
        s->alloc = s->alloc ? 2 * s->alloc : 16;
        s->v = xrealloc(s->v, s->alloc * sizeof(*s->v));
    }
    struct rm_frame *f = &s->v[s->n++];
    *f = (struct rm_frame){.name = name};

    int fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0)
        return error_set(err, GRPC_INTERNAL, errno, "dup");
    _cleanup_closedir_ DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return error_set(err, GRPC_INTERNAL, errno, "fdopendir");
    }
    size_t alloc = 0;
    struct dirent *de;
    for (errno = 0; (de = readdir(d)); errno = 0) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (unlinkat(dir_fd, de->d_name, 0) == 0 || errno == ENOENT)
            continue;
        if (errno != EISDIR)
            return error_set(err, GRPC_INTERNAL, errno, "unlink %s", de->d_name);
        if (f->n_subdirs == alloc) {
            alloc = alloc ? 2 * alloc : 8;
            f->subdirs = xrealloc(f->subdirs, alloc * sizeof(*f->subdirs));
        }
        f->subdirs[f->n_subdirs++] = xstrdup(de->d_name);
    }
    if (errno != 0)
        return error_set(err, GRPC_INTERNAL, errno, "readdir");
    return 0;
}

static void rm_stack_freep(struct rm_stack *s)
{
    for (size_t i = 0; i < s->n; i++)
        rm_frame_clear(&s->v[i]);
    free(s->v);
}
#define _cleanup_rm_stack_ __attribute__((cleanup(rm_stack_freep)))

/*
 * rm -rf of name under dir_fd, never following symlinks. Iterative with one
 * directory open at a time (the way back up is ".."; nothing else touches the
 * tree meanwhile), so a deep tree from a layer exhausts neither fds nor stack.
 */
static int remove_tree_at(int dir_fd, const char *name, struct error **err)
{
    if (unlinkat(dir_fd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR)
        return error_set(err, GRPC_INTERNAL, errno, "unlink %s", name);

    _cleanup_rm_stack_ struct rm_stack s = {0};
    _cleanup_close_ int cur = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (cur < 0)
        return error_set(err, GRPC_INTERNAL, errno, "open %s", name);
    if (rm_push(&s, xstrdup(name), cur, err) < 0)
        return -1;
    while (s.n > 0) {
        struct rm_frame *f = &s.v[s.n - 1];
        if (f->next < f->n_subdirs) {
            _cleanup_free_ char *sub = steal_ptr(&f->subdirs[f->next]);
            f->next++; /* not inside steal_ptr(), which evaluates its argument twice */
            int fd = openat(cur, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0)
                return error_set(err, GRPC_INTERNAL, errno, "open %s", sub);
            close(cur);
            cur = fd;
            if (rm_push(&s, steal_ptr(&sub), cur, err) < 0)
                return -1;
            continue;
        }
        /* Empty now: step up and remove it. */
        if (s.n > 1) {
            int parent = openat(cur, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (parent < 0)
                return error_set(err, GRPC_INTERNAL, errno, "open ..");
            close(cur);
            cur = parent;
        }
        if (unlinkat(s.n > 1 ? cur : dir_fd, f->name, AT_REMOVEDIR) < 0)
            return error_set(err, GRPC_INTERNAL, errno, "rmdir %s", f->name);
        rm_frame_clear(f);
        s.n--;
    }
    return 0;
}

/* ---- extraction ---- */

/* The first reader: undoes the compression and hashes what comes out. */
struct decompressor {
    struct archive *raw;
    struct xferlib_hash md; /* not started when no diff_id is checked */
    int64_t offset;         /* uncompressed bytes so far */
    bool at_eof;
    struct error *err; /* why the stream broke, once it did */
};

/* Next block of the uncompressed stream: 1 with data, 0 at the end, -1 with d->err set. */
static int decompressor_pull(struct decompressor *d, const void **buf, size_t *size)
{
    while (!d->at_eof && !d->err) {
        la_int64_t offset = 0;
        int r = xarchive.read_data_block(d->raw, buf, size, &offset);
        if (r == ARCHIVE_EOF) {
            d->at_eof = true;
            break;
        }
        if (r < ARCHIVE_WARN)
            return unpack_archive_fail(&d->err, d->raw, "corrupt layer");
        if (offset != d->offset)
            return error_set(&d->err, GRPC_INVALID_ARGUMENT, 0, "corrupt layer: hole in stream");
        if (*size == 0)
            continue;
        if (d->md.ctx)
            xferlib_hash_update(&d->md, *buf, *size);
        d->offset += (int64_t)*size;
        return 1;
    }
    return d->err ? -1 : 0;
}

/* The tar reader's read callback: blocks come straight from the decompressor, unchanged. */
static la_ssize_t on_tar_read(struct archive *tar, void *arg, const void **buf)
{
    size_t size = 0;
    int r = decompressor_pull(arg, buf, &size);
    if (r < 0) {
        /* The cause is in the decompressor's err; this only stops the tar reader. */
        xarchive.set_error(tar, -1, "decompression failed");
        return -1;
    }
    return r == 0 ? 0 : (la_ssize_t)size;
}

struct extractor {
    struct decompressor dec;
    struct archive *tar;
    struct archive *disk;
    int base_fd;   /* borrowed */
    uint64_t size; /* file content written */
    size_t entries;
    char **opaque_dirs; /* to be marked opaque once everything is written */
    size_t n_opaque, alloc_opaque;
    unsigned warnings;
};

static void extractor_clear(struct extractor *x)
{
    /* The tar reader pulls from the decompressor, so it goes first. */
    if (x->tar)
        xarchive.free(x->tar);
    if (x->disk)
        xarchive.free(x->disk);
    if (x->dec.raw)
        xarchive.free(x->dec.raw);
    xferlib_hash_clear(&x->dec.md);
    error_free(x->dec.err);
    for (size_t i = 0; i < x->n_opaque; i++)
        free(x->opaque_dirs[i]);
    free(x->opaque_dirs);
}
#define _cleanup_extractor_ __attribute__((cleanup(extractor_clear)))

/* Something was not restored (an xattr the filesystem refuses, say): log it, keep going. */
static void warn_entry(struct extractor *x, const char *path, struct archive *a)
{
    if (x->warnings++ >= MAX_WARNINGS_LOGGED)
        return;
    const char *msg = xarchive.error_string(a);
    _cleanup_free_ char *safe_path = text_safe(path, TEXT_SAFE_MAX);
    _cleanup_free_ char *safe_msg = text_safe(msg ? msg : "unknown", TEXT_SAFE_MAX);
    log_warn("layer entry not fully restored path=\"%s\" reason=\"%s\"", safe_path, safe_msg);
}

/*
 * libarchive reports a failed write(), a failed ftruncate() of a sparse file's
 * tail and a failed fsetxattr() as ARCHIVE_WARN, like a refused owner or
 * timestamp. What the host caused (a full disk, I/O) leaves the entry
 * incomplete, so it fails the layer; anything else only warns.
 */
static bool is_host_write_error(int e)
{
    switch (e) {
    case ENOSPC:
    case EDQUOT:
    case EIO:
    case EFBIG:
    case EROFS:
    case ENOMEM:
        return true;
    default:
        return false;
    }
}

/* An ARCHIVE_WARN from the disk writer: fail on a host write error, else log it and go on. */
static int disk_warn(struct extractor *x, const char *path, const char *what, struct error **err)
{
    if (is_host_write_error(xarchive.errno_of(x->disk))) {
        _cleanup_free_ char *safe = text_safe(path, TEXT_SAFE_MAX);
        _cleanup_free_ char *msg = xasprintf("%s %s", what, safe);
        return unpack_archive_fail(err, x->disk, msg);
    }
    warn_entry(x, path, x->disk);
    return 0;
}

/* The tar reader failed: report the decompressor's error when it is the cause. */
static int tar_fail(struct extractor *x, struct error **err)
{
    if (x->dec.err) {
        if (err && !*err)
            *err = steal_ptr(&x->dec.err);
        return -1;
    }
    return unpack_archive_fail(err, x->tar, "corrupt layer");
}

static int unsafe_path(struct error **err, const char *path)
{
    _cleanup_free_ char *safe = text_safe(path, TEXT_SAFE_MAX);
    return error_set(err, GRPC_INVALID_ARGUMENT, 0, "unsafe path in layer: %s", safe);
}

/*
 * Bound the xattrs, and drop trusted.overlay.* ones: only our own whiteout
 * conversion may tell overlayfs what is opaque or redirected.
 */
static int filter_xattrs(struct archive_entry *e, const char *path, struct error **err)
{
    const char *name;
    const void *value;
    size_t size, count = 0;
    bool has_overlay = false;
    xarchive.entry_xattr_reset(e);
    while (xarchive.entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
        if (++count > MAX_XATTRS_PER_ENTRY || strlen(name) > MAX_XATTR_NAME_LEN ||
            size > MAX_XATTR_VALUE_LEN) {
            _cleanup_free_ char *safe = text_safe(path, TEXT_SAFE_MAX);
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "xattrs too large in layer: %s", safe);
        }
        if (str_has_prefix(name, OVERLAY_XATTR_PREFIX))
            has_overlay = true;
    }
    if (!has_overlay)
        return 0;

    struct kept {
        char *name;
        void *value;
        size_t size;
    } kept[MAX_XATTRS_PER_ENTRY];
    size_t n = 0;
    xarchive.entry_xattr_reset(e);
    while (xarchive.entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
        if (str_has_prefix(name, OVERLAY_XATTR_PREFIX))
            continue;
        kept[n].name = xstrdup(name);
        kept[n].value = xmalloc(size);
        memcpy(kept[n].value, value, size);
        kept[n++].size = size;
    }
    xarchive.entry_xattr_clear(e);
    for (size_t i = 0; i < n; i++) {
        xarchive.entry_xattr_add_entry(e, kept[i].name, kept[i].value, kept[i].size);
        free(kept[i].name);
        free(kept[i].value);
    }
    return 0;
}

/*
 * An OCI whiteout: ".wh..wh..opq" marks dir opaque (at the end, once the
 * directory's own entry cannot come later), ".wh.<name>" becomes the 0/0
 * character device overlayfs uses. A file of the same name in this layer
 * wins over the whiteout, whichever comes first (OCI: a whiteout only hides
 * lower layers), so an existing name is left alone.
 */
static int apply_whiteout(struct extractor *x, const char *path, const char *dir, const char *base,
                          struct error **err)
{
    if (strcmp(base, WHITEOUT_OPAQUE) == 0) {
        if (x->n_opaque == x->alloc_opaque) {
            x->alloc_opaque = x->alloc_opaque ? 2 * x->alloc_opaque : 8;
            x->opaque_dirs = xrealloc(x->opaque_dirs, x->alloc_opaque * sizeof(char *));
        }
        x->opaque_dirs[x->n_opaque++] = xstrdup(dir);
        return 0;
    }
    /* Other ".wh..wh." names are aufs bookkeeping and mean nothing to overlayfs. */
    if (str_has_prefix(base, WHITEOUT_META_PREFIX))
        return 0;
    const char *name = base + strlen(WHITEOUT_PREFIX);
    if (name[0] == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return unsafe_path(err, path);
    _cleanup_close_ int dir_fd = open_dir_nofollow(x->base_fd, dir, true, err);
    if (dir_fd < 0) {
        _cleanup_free_ char *safe = text_safe(path, TEXT_SAFE_MAX);
        return error_prefix(err, "whiteout %s", safe);
    }
    if (mknodat(dir_fd, name, S_IFCHR | 0000, makedev(0, 0)) < 0 && errno != EEXIST) {
        _cleanup_free_ char *safe = text_safe(path, TEXT_SAFE_MAX);
        return error_set(err, unpack_errno_code(errno), errno, "whiteout %s", safe);
    }
    return 0;
}

static int write_entry(struct extractor *x, struct archive_entry *e, const char *path,
                       struct error **err)
{
    _cleanup_free_ char *what = NULL;
    int r = xarchive.write_header(x->disk, e);
    if (r < ARCHIVE_WARN) {
        _cleanup_free_ char *safe = text_safe(path, TEXT_SAFE_MAX);
        what = xasprintf("extract %s", safe);
        return unpack_archive_fail(err, x->disk, what);
    }
    if (r == ARCHIVE_WARN && disk_warn(x, path, "extract", err) < 0)
        return -1;
    for (;;) {
        const void *buf;
        size_t size;
        la_int64_t offset;
        r = xarchive.read_data_block(x->tar, &buf, &size, &offset);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN)
            return tar_fail(x, err);
        /*
         * Any warning here (a failed write, or more data than the header
         * said) means the file on disk is not the file in the layer.
         */
        la_ssize_t w = xarchive.write_data_block(x->disk, buf, size, offset);
        if (w < ARCHIVE_OK) {
            _cleanup_free_ char *safe = text_safe(path, TEXT_SAFE_MAX);
            what = xasprintf("write %s", safe);
            return unpack_archive_fail(err, x->disk, what);
        }
        x->size += size;
    }
    r = xarchive.write_finish_entry(x->disk);
    if (r < ARCHIVE_WARN) {
        _cleanup_free_ char *safe = text_safe(path, TEXT_SAFE_MAX);
        what = xasprintf("finish %s", safe);
        return unpack_archive_fail(err, x->disk, what);
    }
    if (r == ARCHIVE_WARN && disk_warn(x, path, "finish", err) < 0)
        return -1;
    return 0;
}

/* Our own checks first (libarchive's secure flags check again), then whiteout or write. */
static int extract_entry(struct extractor *x, struct archive_entry *e, struct error **err)
{
    const char *path = xarchive.entry_pathname(e);
    if (!path)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "entry without a name in layer");
    if (strlen(path) > MAX_PATH_LEN) {
        _cleanup_free_ char *safe = text_safe(path, TEXT_SAFE_MAX);
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "path too long in layer: %s", safe);
    }
    if (!path_is_safe_relpath(path))
        return unsafe_path(err, path);
    const char *hardlink = xarchive.entry_hardlink(e);
    if (hardlink && (strlen(hardlink) > MAX_PATH_LEN || !path_is_safe_relpath(hardlink)))
        return unsafe_path(err, path);
    const char *symlink = xarchive.entry_symlink(e);
    if (symlink && strlen(symlink) > MAX_PATH_LEN) {
        _cleanup_free_ char *safe = text_safe(path, TEXT_SAFE_MAX);
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "symlink target too long in layer: %s",
                         safe);
    }
    if (filter_xattrs(e, path, err) < 0)
        return -1;

    _cleanup_free_ char *base = NULL;
    _cleanup_free_ char *dir = split_path(path, &base);
    if (str_has_prefix(base, WHITEOUT_PREFIX))
        return apply_whiteout(x, path, dir, base, err);
    return write_entry(x, e, path, err);
}

static int mark_opaque_dirs(struct extractor *x, struct error **err)
{
    for (size_t i = 0; i < x->n_opaque; i++) {
        const char *dir = x->opaque_dirs[i];
        _cleanup_free_ char *safe = text_safe(dir, TEXT_SAFE_MAX);
        _cleanup_close_ int fd = open_dir_nofollow(x->base_fd, dir, true, err);
        if (fd < 0)
            return error_prefix(err, "opaque whiteout in %s", safe);
        if (fsetxattr(fd, OVERLAY_OPAQUE_XATTR, "y", 1, 0) < 0)
            return error_set(err, GRPC_INTERNAL, errno, "mark %s opaque", safe);
    }
    return 0;
}

static int check_digest(struct extractor *x, const char *diff_id, struct error **err)
{
    char hex[XFERLIB_HASH_HEX_MAX];
    xferlib_hash_final_hex(&x->dec.md, hex);
    const char *colon = strchr(diff_id, ':');
    if (strcmp(colon + 1, hex) != 0)
        return error_set(err, GRPC_DATA_LOSS, 0, "layer diff_id mismatch: expected %s, got %.*s%s",
                         diff_id, (int)(colon + 1 - diff_id), diff_id, hex);
    return 0;
}

static int extract(struct extractor *x, int blob_fd, const char *diff_id, struct error **err)
{
    struct archive_entry *e;
    /*
     * Only the compressions OCI layers use, built in: filter_all would also
     * accept formats that libarchive decodes by running an external program.
     */
    x->dec.raw = xarchive.read_new();
    if (!x->dec.raw)
        return error_set(err, GRPC_INTERNAL, ENOMEM, "archive_read_new");
    if (xarchive.read_support_filter_gzip(x->dec.raw) != ARCHIVE_OK ||
        xarchive.read_support_filter_zstd(x->dec.raw) != ARCHIVE_OK ||
        xarchive.read_support_format_raw(x->dec.raw) != ARCHIVE_OK)
        return unpack_archive_fail(err, x->dec.raw, "libarchive lacks built-in gzip or zstd");
    if (xarchive.read_open_fd(x->dec.raw, blob_fd, READ_BLOCK) != ARCHIVE_OK ||
        xarchive.read_next_header(x->dec.raw, &e) < ARCHIVE_WARN)
        return unpack_archive_fail(err, x->dec.raw, "corrupt layer");
    if (diff_id) {
        enum xferlib_hash_algo algo;
        bool ok = digest_algo(diff_id, &algo); /* unpack_extract_fd() checked it */
        assert_state(ok);
        if (xferlib_hash_init(&x->dec.md, algo, err) < 0)
            return -1;
    }

    x->tar = xarchive.read_new();
    x->disk = xarchive.write_disk_new();
    if (!x->tar || !x->disk)
        return error_set(err, GRPC_INTERNAL, ENOMEM, "archive_read_new");
    if (xarchive.read_support_format_tar(x->tar) != ARCHIVE_OK)
        return unpack_archive_fail(err, x->tar, "libarchive lacks tar");
    if (xarchive.read_open(x->tar, &x->dec, NULL, on_tar_read, NULL) != ARCHIVE_OK)
        return tar_fail(x, err);
    /*
     * No ARCHIVE_EXTRACT_UNLINK: with it libarchive replaces a symlinked
     * parent with a directory instead of refusing the entry. A later entry
     * still replaces an earlier one of the same name. No user lookup is set,
     * so owners are the numeric ids of the tar.
     */
    if (xarchive.write_disk_set_options(x->disk, EXTRACT_FLAGS) != ARCHIVE_OK)
        return unpack_archive_fail(err, x->disk, "set extract options");

    for (;;) {
        int r = xarchive.read_next_header(x->tar, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN)
            return tar_fail(x, err);
        if (r == ARCHIVE_WARN)
            warn_entry(x, xarchive.entry_pathname(e) ? xarchive.entry_pathname(e) : "", x->tar);
        if (++x->entries > MAX_ENTRIES)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "layer has more than %d entries",
                             MAX_ENTRIES);
        if (extract_entry(x, e, err) < 0)
            return -1;
    }
    /* The digest covers the whole stream, padding after the tar's end included. */
    const void *buf;
    size_t size;
    int r;
    while ((r = decompressor_pull(&x->dec, &buf, &size)) > 0)
        ;
    if (r < 0)
        return tar_fail(x, err);
    if (diff_id && check_digest(x, diff_id, err) < 0)
        return -1;
    if (mark_opaque_dirs(x, err) < 0)
        return -1;
    /* Directory modes and times are applied here, after their contents. */
    r = xarchive.write_close(x->disk);
    if (r < ARCHIVE_WARN)
        return unpack_archive_fail(err, x->disk, "finish layer");
    if (r == ARCHIVE_WARN && disk_warn(x, ".", "finish", err) < 0)
        return -1;
    if (x->warnings > MAX_WARNINGS_LOGGED)
        log_warn("layer warnings not logged count=%u", x->warnings - MAX_WARNINGS_LOGGED);
    return 0;
}

int unpack_extract_fd(int blob_fd, const char *base, const char *diff_id, uint64_t *size,
                      struct error **err)
{
    if (check_diff_id(diff_id, err) < 0 || xferlib_archive_load(err) < 0)
        return -1;
    _cleanup_close_ int base_fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (base_fd < 0)
        return error_set(err, GRPC_INTERNAL, errno, "open %s", base);
    _cleanup_close_ int cwd_fd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cwd_fd < 0)
        return error_set(err, GRPC_INTERNAL, errno, "open the working directory");
    /* libarchive resolves entry names against the working directory. */
    if (fchdir(base_fd) < 0)
        return error_set(err, GRPC_INTERNAL, errno, "chdir %s", base);

    int r;
    {
        _cleanup_extractor_ struct extractor x = {.base_fd = base_fd};
        r = extract(&x, blob_fd, diff_id, err);
        if (r == 0)
            *size = x.size;
    }
    if (fchdir(cwd_fd) < 0 && r == 0)
        return error_set(err, GRPC_INTERNAL, errno, "restore the working directory");
    return r;
}

/* ---- the operation ---- */

enum unpack_state {
    UNPACK_EXTRACT, /* extract child running; waiting for its exit */
    UNPACK_CLEANUP, /* failed or cancelled; cleanup child removing <dest>.tmp; waiting for it */
    UNPACK_DONE,    /* reported; queued for free */
};

/*
 * Owned by this module from unpack_layer() until it is freed in UNPACK_DONE,
 * also after a cancel. Only when loop_shutdown() kills a child (and drops its
 * callback) is an op never freed; the daemon is exiting then.
 */
struct unpack_op {
    enum unpack_state state;
    char *blob_path;
    char *diff_id; /* NULL: not checked */
    char *dest;
    char *tmp;       /* "<dest>.tmp" */
    char *dir;       /* the directory holding both */
    char *dest_name; /* dest's and tmp's names in dir */
    char *tmp_name;
    int64_t timeout_ms;
    struct child *child; /* the child running now, NULL between children */
    struct error *err;   /* why it failed; CANCELLED once cancelled */
    uint64_t size;
    unpack_done_cb done;
    void *arg;
};

static void op_free(void *obj)
{
    struct unpack_op *op = obj;
    free(op->blob_path);
    free(op->diff_id);
    free(op->dest);
    free(op->tmp);
    free(op->dir);
    free(op->dest_name);
    free(op->tmp_name);
    error_free(op->err);
    free(op);
}

/* ---- in the forked children: never return, _exit() ---- */

/* Close every fd above stderr but keep_a and keep_b. */
static int close_fds_except(int keep_a, int keep_b, struct error **err)
{
    unsigned int lo = (unsigned int)(keep_a < keep_b ? keep_a : keep_b);
    unsigned int hi = (unsigned int)(keep_a < keep_b ? keep_b : keep_a);
    unsigned int ranges[3][2] = {{3, lo - 1}, {lo + 1, hi - 1}, {hi + 1, ~0U}};
    for (size_t i = 0; i < ARRAY_SIZE(ranges); i++) {
        if (ranges[i][0] <= ranges[i][1] && close_range(ranges[i][0], ranges[i][1], 0) < 0)
            return error_set(err, GRPC_INTERNAL, errno, "close_range");
    }
    return 0;
}

static int extract_in_child(const struct unpack_op *op, uint64_t *size, struct error **err)
{
    umask(022);
    _cleanup_close_ int dir_fd = open(op->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0)
        return error_set(err, GRPC_INTERNAL, errno, "open %s", op->dir);
    struct stat st;
    if (fstatat(dir_fd, op->dest_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return error_set(err, GRPC_ALREADY_EXISTS, 0, "%s already exists", op->dest);
    if (errno != ENOENT)
        return error_set(err, GRPC_INTERNAL, errno, "stat %s", op->dest);
    if (remove_tree_at(dir_fd, op->tmp_name, err) < 0)
        return error_prefix(err, "remove leftover %s", op->tmp);
    if (mkdirat(dir_fd, op->tmp_name, 0755) < 0)
        return error_set(err, GRPC_INTERNAL, errno, "mkdir %s", op->tmp);
    _cleanup_close_ int root_fd =
        openat(dir_fd, op->tmp_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root_fd < 0)
        return error_set(err, GRPC_INTERNAL, errno, "open %s", op->tmp);
    _cleanup_close_ int blob_fd = open(op->blob_path, O_RDONLY | O_CLOEXEC);
    if (blob_fd < 0)
        return error_set(err, GRPC_INTERNAL, errno, "open layer blob %s", op->blob_path);
    enum xferlib_hash_algo algo;
    if (op->diff_id && digest_algo(op->diff_id, &algo)) {
        /*
         * Load libcrypto and let OpenSSL read its configuration while there
         * is a filesystem to read them from; a forked child never unloads.
         */
        _cleanup_xferlib_hash_ struct xferlib_hash md = {0};
        if (xferlib_hash_init(&md, algo, err) < 0)
            return -1;
    }
    /* libarchive too, while its files are reachable. */
    if (xferlib_archive_load(err) < 0)
        return -1;
    /* Nothing of the daemon (sockets, the loop, the parent directory) goes into the chroot. */
    close(steal_fd(&dir_fd));
    if (close_fds_except(blob_fd, root_fd, err) < 0)
        return -1;
    if (fchdir(root_fd) < 0 || chroot(".") < 0 || chdir("/") < 0)
        return error_set(err, GRPC_INTERNAL, errno, "chroot into %s", op->tmp);
    if (unpack_extract_fd(blob_fd, "/", op->diff_id, size, err) < 0)
        return -1;
    if (syncfs(root_fd) < 0)
        return error_set(err, unpack_errno_code(errno), errno, "sync %s", op->tmp);
    return 0;
}

static int extract_child_main(void *arg)
{
    struct error *err = NULL;
    uint64_t size = 0;
    /* A file size limit then fails the write with EFBIG, which names the file. */
    signal(SIGXFSZ, SIG_IGN);
    if (extract_in_child(arg, &size, &err) < 0)
        child_exit_error(err);
    char line[64];
    int n = snprintf(line, sizeof(line), "size=%" PRIu64 "\n", size);
    _exit(fd_write_all(1, line, (size_t)n) < 0 ? 1 : 0);
}

static int cleanup_child_main(void *arg)
{
    const struct unpack_op *op = arg;
    struct error *err = NULL;
    int dir_fd = open(op->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) {
        error_set(&err, GRPC_INTERNAL, errno, "open %s", op->dir);
        child_exit_error(err);
    }
    if (remove_tree_at(dir_fd, op->tmp_name, &err) < 0) {
        error_prefix(&err, "remove %s", op->tmp);
        child_exit_error(err);
    }
    _exit(0);
}

/* ---- on the loop ---- */

static void unpack_step(struct unpack_op *op);

static void relay_child_log(const struct unpack_op *op, const struct child_result *res)
{
    for (const char *line = res->err; *line;) {
        size_t n = strcspn(line, "\n");
        if (n > 0 && str_has_prefix(line, "time="))
            log_warn("unpack child output dest=%s line=%.*s", op->dest, (int)n, line);
        line += n;
        if (*line == '\n')
            line++;
    }
}

static int parse_size(const struct child_result *res, uint64_t *size, struct error **err)
{
    const char *p = res->out;
    if (!str_has_prefix(p, "size="))
        return error_set(err, GRPC_INTERNAL, 0, "unpack child reported no size");
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(p + strlen("size="), &end, 10);
    if (errno != 0 || end == p + strlen("size=") || *end != '\n')
        return error_set(err, GRPC_INTERNAL, 0, "unpack child reported a bad size");
    *size = v;
    return 0;
}

static void on_extract_exit(const struct child_result *res, void *arg)
{
    struct unpack_op *op = arg;
    op->child = NULL;
    relay_child_log(op, res);
    _cleanup_free_ char *what = xasprintf("unpack %s", op->dest);
    if (child_result_error(res, what, op->timeout_ms, &op->err) == 0)
        parse_size(res, &op->size, &op->err);
    unpack_step(op);
}

static void on_cleanup_exit(const struct child_result *res, void *arg)
{
    struct unpack_op *op = arg;
    op->child = NULL;
    relay_child_log(op, res);
    struct error *tmp = NULL;
    _cleanup_free_ char *what = xasprintf("remove unpack leftovers of %s", op->dest);
    if (child_result_error(res, what, op->timeout_ms, &tmp) < 0)
        log_debug("unpack cleanup failed dest=%s: %s", op->dest, tmp->msg);
    error_free(tmp);
    unpack_step(op);
}

static int spawn(struct unpack_op *op, int (*child_main)(void *), child_done_cb cb,
                 struct error **err)
{
    struct child_opts opts = {
        .timeout_ms = op->timeout_ms,
    };
    op->child = child_fork(&opts, child_main, op, cb, op, err);
    return op->child ? 0 : -1;
}

/* The finished tree becomes dest. NOREPLACE: dest may have appeared meanwhile. */
static int commit(const struct unpack_op *op, struct error **err)
{
    int r = renameat2(AT_FDCWD, op->tmp, AT_FDCWD, op->dest, RENAME_NOREPLACE);
    if (r < 0 && errno == EINVAL) /* the filesystem lacks RENAME_NOREPLACE */
        r = rename(op->tmp, op->dest);
    if (r < 0 && (errno == EEXIST || errno == ENOTEMPTY))
        return error_set(err, GRPC_ALREADY_EXISTS, 0, "%s already exists", op->dest);
    if (r < 0)
        return error_set(err, GRPC_INTERNAL, errno, "rename %s", op->tmp);
    return 0;
}

/* Reported once, in UNPACK_DONE (not a cancelled op); then freed. */
static void unpack_finish(struct unpack_op *op)
{
    op->state = UNPACK_DONE;
    if (!op->err || op->err->grpc_code != GRPC_CANCELLED)
        op->done(op->err, op->err ? 0 : op->size, op->arg);
    loop_defer_free(op_free, op);
}

/* Fails the one way (image/pull.c says how); below the switch the leftovers go. */
static void unpack_step(struct unpack_op *op)
{
    struct error *e = NULL;
    switch (op->state) {
    case UNPACK_EXTRACT: /* waiting for the extract child */
        if (op->child)
            return;
        if (op->err)
            break;
        if (commit(op, &op->err) < 0)
            break;
        unpack_finish(op);
        return;
    case UNPACK_CLEANUP: /* waiting for the cleanup child */
        if (op->child)
            return;
        unpack_finish(op);
        return;
    case UNPACK_DONE:
        return;
    }
    /* Failed or cancelled: "<dest>.tmp" goes, in a child, before the report. */
    op->state = UNPACK_CLEANUP;
    if (spawn(op, cleanup_child_main, on_cleanup_exit, &e) == 0)
        return;
    log_debug("unpack cleanup failed dest=%s: %s", op->dest, e->msg);
    error_free(e);
    unpack_finish(op);
}

struct unpack_op *unpack_layer(const char *blob_path, const char *dest, const char *diff_id,
                               int64_t timeout_ms, unpack_done_cb done, void *arg,
                               struct error **err)
{
    assert_state(done);
    if (check_diff_id(diff_id, err) < 0)
        return NULL;
    _cleanup_free_ char *name = NULL;
    _cleanup_free_ char *dir = split_path(dest, &name);
    if (name[0] == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "bad unpack destination %s", dest), NULL;

    struct unpack_op *op = xcalloc(1, sizeof(*op));
    op->state = UNPACK_EXTRACT;
    op->blob_path = xstrdup(blob_path);
    op->diff_id = diff_id ? xstrdup(diff_id) : NULL;
    op->dest = strcmp(dir, "/") == 0 ? xasprintf("/%s", name) : xasprintf("%s/%s", dir, name);
    op->tmp = xasprintf("%s.tmp", op->dest);
    op->tmp_name = xasprintf("%s.tmp", name);
    op->dest_name = steal_ptr(&name);
    op->dir = steal_ptr(&dir);
    op->timeout_ms = timeout_ms;
    op->done = done;
    op->arg = arg;
    if (spawn(op, extract_child_main, on_extract_exit, err) < 0) {
        error_prefix(err, "unpack %s", op->dest);
        op_free(op);
        return NULL;
    }
    return op;
}

void unpack_cancel(struct unpack_op *op)
{
    if (!op)
        return;
    /* The op lives on until the child is gone and <dest>.tmp removed; done never runs. */
    error_clear(&op->err);
    error_set(&op->err, GRPC_CANCELLED, 0, "unpack of %s cancelled", op->dest);
    if (op->state == UNPACK_EXTRACT && op->child)
        child_signal(op->child, SIGKILL);
}
