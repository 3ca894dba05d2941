/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Atomic file replacement for state that must survive kill -9. Every step
 * below may be the last one that runs; the comments say why each is safe.
 */
#include "autoconf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/persist.h"
#include "core/util.h"

#define TEMP_MARK ".tmp-"

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return xstrdup(".");
    if (slash == path)
        return xstrdup("/");
    return xstrndup(path, (size_t)(slash - path));
}

/* A full disk (or quota) is the host's to fix and may pass: RESOURCE_EXHAUSTED, not INTERNAL. */
int persist_errno_code(int e)
{
    return e == ENOSPC || e == EDQUOT ? GRPC_RESOURCE_EXHAUSTED : GRPC_INTERNAL;
}

int persist_sync_dir(const char *dir, struct error **err)
{
    _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return error_set(err, GRPC_INTERNAL, errno, "open directory %s", dir);
    if (fsync(fd) < 0)
        return error_set(err, persist_errno_code(errno), errno, "fsync directory %s", dir);
    return 0;
}

int persist_write(const char *path, const void *data, size_t len, unsigned mode, struct error **err)
{
    _cleanup_free_ char *dir = dir_of(path);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    _cleanup_free_ char *tmp = xasprintf("%s/.%s" TEMP_MARK "XXXXXX", dir, base);
    _cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return error_set(err, persist_errno_code(errno), errno, "create temp file for %s", path);
    /* Until the rename, a crash leaves only a temp file that readers skip. */
    if (fchmod(fd, mode) < 0 || fd_write_all(fd, data, len) < 0 || fsync(fd) < 0) {
        int e = errno;
        unlink(tmp);
        return error_set(err, persist_errno_code(e), e, "write %s", tmp);
    }
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return error_set(err, persist_errno_code(e), e, "rename %s to %s", tmp, path);
    }
    /* After the rename the new content is visible; the dir fsync makes it durable. */
    return persist_sync_dir(dir, err);
}

int persist_remove(const char *path, struct error **err)
{
    if (unlink(path) < 0) {
        if (errno == ENOENT)
            return 0;
        return error_set(err, GRPC_INTERNAL, errno, "remove %s", path);
    }
    _cleanup_free_ char *dir = dir_of(path);
    return persist_sync_dir(dir, err);
}

int persist_quarantine(const char *dir, const char *name, char **moved_to, struct error **err)
{
    _cleanup_free_ char *cdir = xasprintf("%s/" PERSIST_CORRUPT_DIR, dir);
    if (mkdir(cdir, 0700) < 0 && errno != EEXIST)
        return error_set(err, persist_errno_code(errno), errno, "mkdir %s", cdir);
    _cleanup_free_ char *from = xasprintf("%s/%s", dir, name);
    /* An earlier record of the same name stays: the new one gets a number. */
    _cleanup_free_ char *to = NULL;
    for (unsigned i = 0;; i++) {
        free(to);
        to = i == 0 ? xasprintf("%s/%s", cdir, name) : xasprintf("%s/%s.%u", cdir, name, i);
        if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
            break;
        if (errno == EEXIST && i < 1000)
            continue;
        if (errno == EINVAL && access(to, F_OK) < 0 && rename(from, to) == 0)
            break; /* the filesystem lacks RENAME_NOREPLACE */
        return error_set(err, GRPC_INTERNAL, errno, "move %s to %s", from, to);
    }
    /* Both directories changed: a crash must not bring the record back, nor lose it. */
    if (persist_sync_dir(cdir, err) < 0 || persist_sync_dir(dir, err) < 0)
        return -1;
    if (moved_to)
        *moved_to = steal_ptr(&to);
    return 0;
}

void persist_set_aside(const char *dir, const char *name, const char *kind, const struct error *why)
{
    /* Only what does not parse is moved: a read error or a missing library may pass. */
    if (why->grpc_code != GRPC_DATA_LOSS) {
        log_warn("skipping %s record path=%s/%s: %s", kind, dir, name, why->msg);
        return;
    }
    struct error *tmp = NULL;
    _cleanup_free_ char *to = NULL;
    if (persist_quarantine(dir, name, &to, &tmp) < 0) {
        log_error("unreadable %s record path=%s/%s: %s; could not move it aside: %s", kind, dir,
                  name, why->msg, tmp->msg);
        error_free(tmp);
        return;
    }
    log_warn("unreadable %s record moved aside path=%s/%s moved_to=%s: %s", kind, dir, name, to,
             why->msg);
}

int persist_is_temp_name(const char *name)
{
    return name[0] == '.' && strstr(name, TEMP_MARK) != NULL;
}

void persist_clean_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (persist_is_temp_name(de->d_name))
            unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}
