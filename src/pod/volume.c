/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Seeding image volumes from the rootfs (see volume.h). Everything below the
 * volume's source directory is reached through directory fds with O_NOFOLLOW
 * and *at() calls on names readdir() gave (never containing '/'), so no path
 * the image controls is ever resolved by the host, except the volume path
 * itself, which oci_spec_open_in_root() keeps inside the rootfs.
 */
#include "autoconf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <linux/limits.h>

#include "core/error.h"
#include "core/loop.h"
#include "core/util.h"
#include "pod/oci_spec.h"
#include "pod/volume.h"

#define COPY_BUF (128 * 1024)
#define MAX_HARDLINKS 65536

/* A multiply-linked file already copied, to link its other names to the copy. */
struct link_seen {
    dev_t dev;
    ino_t ino;
    char *rel; /* its path below the volume */
};

struct seed {
    const char *volume;      /* the container path, for messages */
    int dst_root;            /* the volume directory */
    char rel[PATH_MAX];      /* the entry being copied, below the volume */
    struct link_seen *links; /* open addressing; rel NULL: free slot */
    size_t n_links, cap_links;
    char *buf;    /* COPY_BUF bytes */
    char *xnames; /* XATTR_LIST_MAX bytes */
    char *xvalue; /* XATTR_SIZE_MAX bytes */
};

static void seed_clear(struct seed *s)
{
    for (size_t i = 0; i < s->cap_links; i++)
        free(s->links[i].rel);
    free(s->links);
    free(s->buf);
    free(s->xnames);
    free(s->xvalue);
}

static int io_fail(struct seed *s, const char *what, struct error **err)
{
    int e = errno;
    return error_set(err, e == ENOSPC || e == EDQUOT ? GRPC_RESOURCE_EXHAUSTED : GRPC_INTERNAL, e,
                     "image volume %s: %s %s", s->volume, what, *s->rel ? s->rel : ".");
}

/* Append name to s->rel; returns the old length to restore, or -1 when too long. */
static int rel_push(struct seed *s, const char *name, struct error **err)
{
    size_t len = strlen(s->rel);
    size_t need = len + (len ? 1 : 0) + strlen(name) + 1;
    if (need > sizeof(s->rel))
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0,
                         "image volume %s: a path is longer than %d bytes", s->volume, PATH_MAX);
    snprintf(s->rel + len, sizeof(s->rel) - len, "%s%s", len ? "/" : "", name);
    return (int)len;
}

static int copy_xattrs(struct seed *s, int src, int dst, struct error **err)
{
    ssize_t len = flistxattr(src, s->xnames, XATTR_LIST_MAX);
    if (len < 0)
        return errno == ENOTSUP || errno == EOPNOTSUPP ? 0 : io_fail(s, "list xattrs of", err);
    for (char *name = s->xnames; name < s->xnames + len; name += strlen(name) + 1) {
        if (strcmp(name, "security.selinux") == 0)
            continue;
        ssize_t n = fgetxattr(src, name, s->xvalue, XATTR_SIZE_MAX);
        if (n < 0) {
            if (errno == ENODATA)
                continue;
            return io_fail(s, "read an xattr of", err);
        }
        if (fsetxattr(dst, name, s->xvalue, (size_t)n, 0) < 0 && errno != ENOTSUP &&
            errno != EOPNOTSUPP)
            return io_fail(s, "set an xattr on", err);
    }
    return 0;
}

/*
 * Owner, then mode (chown clears setuid bits), then xattrs (chown clears
 * security.capability), then times, last since everything else changes ctime
 * and directories' contents change their mtime.
 */
static int copy_attrs(struct seed *s, int src, int dst, const struct stat *st, struct error **err)
{
    if (fchown(dst, st->st_uid, st->st_gid) < 0)
        return io_fail(s, "chown", err);
    if (fchmod(dst, st->st_mode & 07777) < 0)
        return io_fail(s, "chmod", err);
    if (copy_xattrs(s, src, dst, err) < 0)
        return -1;
    const struct timespec ts[2] = {st->st_atim, st->st_mtim};
    if (futimens(dst, ts) < 0)
        return io_fail(s, "set the times of", err);
    return 0;
}

static int copy_data(struct seed *s, int src, int dst, struct error **err)
{
    for (;;) {
        ssize_t n = copy_file_range(src, NULL, dst, NULL, COPY_BUF, 0);
        if (n == 0)
            return 0;
        if (n > 0)
            continue;
        if (errno == EINTR)
            continue;
        if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
            return io_fail(s, "copy", err);
        break; /* not between these file systems: read and write */
    }
    for (;;) {
        ssize_t n = read(src, s->buf, COPY_BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return io_fail(s, "read", err);
        if (n == 0)
            return 0;
        if (fd_write_all(dst, s->buf, (size_t)n) < 0)
            return io_fail(s, "write", err);
    }
}

static size_t link_slot(const struct seed *s, dev_t dev, ino_t ino)
{
    uint64_t h = ((uint64_t)ino * 0x9e3779b97f4a7c15ULL) ^ (uint64_t)dev;
    size_t i = (size_t)(h >> 16) & (s->cap_links - 1);
    while (s->links[i].rel && (s->links[i].dev != dev || s->links[i].ino != ino))
        i = (i + 1) & (s->cap_links - 1);
    return i;
}

static const struct link_seen *link_find(const struct seed *s, const struct stat *st)
{
    if (!s->n_links)
        return NULL;
    const struct link_seen *l = &s->links[link_slot(s, st->st_dev, st->st_ino)];
    return l->rel ? l : NULL;
}

/* Remember a copied multiply-linked file (beyond MAX_HARDLINKS, later names get copies). */
static void link_add(struct seed *s, const struct stat *st)
{
    if (s->n_links >= MAX_HARDLINKS)
        return;
    if (2 * (s->n_links + 1) > s->cap_links) {
        struct link_seen *old = s->links;
        size_t old_cap = s->cap_links;
        s->cap_links = old_cap ? 2 * old_cap : 64;
        s->links = xcalloc(s->cap_links, sizeof(*s->links));
        for (size_t i = 0; i < old_cap; i++)
            if (old[i].rel)
                s->links[link_slot(s, old[i].dev, old[i].ino)] = old[i];
        free(old);
    }
    s->links[link_slot(s, st->st_dev, st->st_ino)] =
        (struct link_seen){st->st_dev, st->st_ino, xstrdup(s->rel)};
    s->n_links++;
}

static int copy_file(struct seed *s, int src_dir, int dst_dir, const char *name,
                     const struct stat *st, struct error **err)
{
    if (st->st_nlink > 1) {
        const struct link_seen *l = link_find(s, st);
        if (l) {
            if (linkat(s->dst_root, l->rel, dst_dir, name, 0) < 0)
                return io_fail(s, "hardlink", err);
            return 0;
        }
    }
    _cleanup_close_ int src = openat(src_dir, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
    if (src < 0)
        return io_fail(s, "open", err);
    _cleanup_close_ int dst =
        openat(dst_dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (dst < 0)
        return io_fail(s, "create", err);
    if (copy_data(s, src, dst, err) < 0 || copy_attrs(s, src, dst, st, err) < 0)
        return -1;
    if (st->st_nlink > 1)
        link_add(s, st);
    return 0;
}

/* Symlinks, devices and FIFOs: made by name, owner and times set without following. */
static int copy_special(struct seed *s, int src_dir, int dst_dir, const char *name,
                        const struct stat *st, struct error **err)
{
    if (S_ISLNK(st->st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlinkat(src_dir, name, target, sizeof(target));
        if (n < 0)
            return io_fail(s, "readlink", err);
        if ((size_t)n >= sizeof(target))
            return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0,
                             "image volume %s: the target of %s is too long", s->volume, s->rel);
        target[n] = '\0';
        if (symlinkat(target, dst_dir, name) < 0)
            return io_fail(s, "symlink", err);
    } else {
        if (mknodat(dst_dir, name, (st->st_mode & S_IFMT) | 0600, st->st_rdev) < 0)
            return io_fail(s, "mknod", err);
    }
    if (fchownat(dst_dir, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0)
        return io_fail(s, "chown", err);
    /* A node this call made, in a directory only we write: chmod cannot meet a symlink. */
    if (!S_ISLNK(st->st_mode) && fchmodat(dst_dir, name, st->st_mode & 07777, 0) < 0)
        return io_fail(s, "chmod", err);
    const struct timespec ts[2] = {st->st_atim, st->st_mtim};
    if (utimensat(dst_dir, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return io_fail(s, "set the times of", err);
    return 0;
}

static int copy_tree(struct seed *s, int src_dir, int dst_dir, unsigned depth, struct error **err);

static int copy_dir(struct seed *s, int src_dir, int dst_dir, const char *name,
                    const struct stat *st, unsigned depth, struct error **err)
{
    if (depth >= VOLUME_MAX_DEPTH)
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0,
                         "image volume %s: more than %d nested directories at %s", s->volume,
                         VOLUME_MAX_DEPTH, s->rel);
    if (mkdirat(dst_dir, name, 0700) < 0)
        return io_fail(s, "mkdir", err);
    _cleanup_close_ int src =
        openat(src_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (src < 0)
        return io_fail(s, "open", err);
    _cleanup_close_ int dst =
        openat(dst_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dst < 0)
        return io_fail(s, "open the copy of", err);
    if (copy_tree(s, src, dst, depth + 1, err) < 0)
        return -1;
    return copy_attrs(s, src, dst, st, err);
}

static int copy_tree(struct seed *s, int src_dir, int dst_dir, unsigned depth, struct error **err)
{
    int fd = fcntl(src_dir, F_DUPFD_CLOEXEC, 3);
    if (fd < 0)
        return io_fail(s, "dup", err);
    _cleanup_closedir_ DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return io_fail(s, "read the directory", err);
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                return io_fail(s, "read the directory", err);
            return 0;
        }
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        int saved = rel_push(s, name, err);
        if (saved < 0)
            return -1;
        struct stat st;
        int rc = 0;
        if (fstatat(src_dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            rc = io_fail(s, "stat", err);
        else if (S_ISDIR(st.st_mode))
            rc = copy_dir(s, src_dir, dst_dir, name, &st, depth, err);
        else if (S_ISREG(st.st_mode))
            rc = copy_file(s, src_dir, dst_dir, name, &st, err);
        else if (!S_ISSOCK(st.st_mode))
            rc = copy_special(s, src_dir, dst_dir, name, &st, err);
        if (rc < 0)
            return -1;
        s->rel[saved] = '\0';
    }
}

int volume_seed(int rootfs_fd, const char *container_path, int volumes_fd, const char *name,
                struct error **err)
{
    if (mkdirat(volumes_fd, name, 0700) < 0)
        return error_set(err, errno == ENOSPC ? GRPC_RESOURCE_EXHAUSTED : GRPC_INTERNAL, errno,
                         "image volume %s: mkdir %s", container_path, name);
    _cleanup_close_ int dst =
        openat(volumes_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dst < 0)
        return error_set(err, GRPC_INTERNAL, errno, "image volume %s: open %s", container_path,
                         name);
    _cleanup_close_ int src =
        oci_spec_open_in_root(rootfs_fd, container_path, O_RDONLY | O_DIRECTORY | O_NOCTTY);
    if (src < 0) {
        if (errno == ENOENT) {
            /* Nothing in the image: an empty directory, as the runtime would make. */
            if (fchmod(dst, 0755) < 0)
                return error_set(err, GRPC_INTERNAL, errno, "image volume %s: chmod",
                                 container_path);
            return 0;
        }
        if (errno == ENOTDIR || errno == ELOOP)
            return error_set(err, GRPC_INVALID_ARGUMENT, errno,
                             "image volume %s: the image has no directory there", container_path);
        return error_set(err, GRPC_INTERNAL, errno, "image volume %s: open in the rootfs",
                         container_path);
    }
    struct seed s __attribute__((cleanup(seed_clear))) = {
        .volume = container_path,
        .dst_root = dst,
        .buf = xmalloc(COPY_BUF),
        .xnames = xmalloc(XATTR_LIST_MAX),
        .xvalue = xmalloc(XATTR_SIZE_MAX),
    };
    struct stat st;
    if (fstat(src, &st) < 0)
        return io_fail(&s, "stat", err);
    if (copy_tree(&s, src, dst, 0, err) < 0)
        return -1;
    return copy_attrs(&s, src, dst, &st, err);
}

/* ---- the child ---- */

int volume_seed_child(void *arg)
{
    const struct volume_job *job = arg;
    struct error *err = NULL;
    umask(022);
    if (mkdir(job->volumes_dir, 0700) < 0 && errno != EEXIST) {
        error_set(&err, GRPC_INTERNAL, errno, "mkdir %s", job->volumes_dir);
        child_exit_error(err);
    }
    int volumes_fd = open(job->volumes_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int rootfs_fd = open(job->rootfs, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (volumes_fd < 0 || rootfs_fd < 0) {
        error_set(&err, GRPC_INTERNAL, errno, "open %s",
                  volumes_fd < 0 ? job->volumes_dir : job->rootfs);
        child_exit_error(err);
    }
    /* Only the two directories (and stdio) go into the chroot, nothing of the daemon. */
    int lo = rootfs_fd < volumes_fd ? rootfs_fd : volumes_fd;
    int hi = rootfs_fd < volumes_fd ? volumes_fd : rootfs_fd;
    if ((lo > 3 && close_range(3, (unsigned)lo - 1, 0) < 0) ||
        (hi > lo + 1 && close_range((unsigned)lo + 1, (unsigned)hi - 1, 0) < 0) ||
        close_range((unsigned)hi + 1, ~0U, 0) < 0) {
        error_set(&err, GRPC_INTERNAL, errno, "close_range");
        child_exit_error(err);
    }
    /* Belt and braces: nothing of the host is reachable by path while copying. */
    if (fchdir(rootfs_fd) < 0 || chroot(".") < 0 || chdir("/") < 0) {
        error_set(&err, GRPC_INTERNAL, errno, "chroot into %s", job->rootfs);
        child_exit_error(err);
    }
    for (size_t i = 0; i < job->n; i++) {
        if (volume_seed(rootfs_fd, job->paths[i], volumes_fd, job->names[i], &err) < 0)
            child_exit_error(err);
    }
    /*
     * No syncfs: it would flush the whole file system, and the copy needs no
     * durability (after a crash the unfinished create's leftovers are removed;
     * the container's own writes are not synced either).
     */
    _exit(0);
}
