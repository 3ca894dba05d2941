/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Atomic file replacement for state that must survive kill -9. Every step
 * below may be the last one that runs; the comments say why each is safe.
 */
#include "autoconf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
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
