/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the fuzz targets (fuzz.h says what each does). */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "fuzz.h"

void fuzz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: fuzz check failed: %s\n", file, line, what);
    abort();
}

void fuzz_quiet_logs(void)
{
    log_set_level(LOG_LEVEL_ERROR);
}

void fuzz_init_loop(void)
{
    static bool done;
    if (done)
        return;
    fuzz_quiet_logs();
    struct error *err = NULL;
    if (loop_init(&err) < 0) {
        fprintf(stderr, "loop_init: %s\n", err->msg);
        abort();
    }
    done = true;
}

static char tmpdir[64];
static pid_t tmpdir_owner;

static int on_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (remove(path) < 0 && errno != ENOENT)
        fprintf(stderr, "fuzz: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

void fuzz_rm_tree(const char *path)
{
    nftw(path, on_rm, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static void remove_tmpdir(void)
{
    /* A forked child of the code under test exits through here too: not its directory. */
    if (tmpdir[0] && getpid() == tmpdir_owner)
        fuzz_rm_tree(tmpdir);
}

const char *fuzz_tmpdir(void)
{
    if (tmpdir[0])
        return tmpdir;
    struct stat st;
    const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(tmpdir, sizeof(tmpdir), "%s/tinycri-fuzz-XXXXXX", base);
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", tmpdir, strerror(errno));
        abort();
    }
    tmpdir_owner = getpid();
    atexit(remove_tmpdir);
    return tmpdir;
}

/* Undo the octal escapes (\040 for a space) of a /proc/self/mountinfo path, in place. */
static void unescape_mount_path(char *s)
{
    char *out = s;
    for (char *p = s; *p;) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
            p[3] >= '0' && p[3] <= '7') {
            *out++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
            p += 4;
        } else {
            *out++ = *p++;
        }
    }
    *out = '\0';
}

void fuzz_confine_writes(void)
{
    if (geteuid() != 0)
        return;
    const char *tmp = fuzz_tmpdir();
    char cwd[4096];
    FUZZ_CHECK(getcwd(cwd, sizeof(cwd)));
    FUZZ_CHECK(unshare(CLONE_NEWNS) == 0);
    FUZZ_CHECK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0);
    FUZZ_CHECK(mount("tinycri-fuzz", tmp, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700") == 0);
    FUZZ_CHECK(mount(cwd, cwd, NULL, MS_BIND, NULL) == 0);
    FILE *f = fopen("/proc/self/mountinfo", "re");
    FUZZ_CHECK(f);
    char line[8192];
    while (fgets(line, sizeof(line), f)) {
        /* "<id> <parent> <maj:min> <root> <mount point> <mount options> ..." */
        char point[4096], opts[1024];
        if (sscanf(line, "%*s %*s %*s %*s %4095s %1023s", point, opts) != 2)
            continue;
        unescape_mount_path(point);
        if (strcmp(point, tmp) == 0 || strcmp(point, cwd) == 0)
            continue;
        /* Keep the flags a bind remount would otherwise clear. */
        unsigned long keep = 0;
        char *save = NULL;
        for (char *o = strtok_r(opts, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
            if (strcmp(o, "nosuid") == 0)
                keep |= MS_NOSUID;
            else if (strcmp(o, "nodev") == 0)
                keep |= MS_NODEV;
            else if (strcmp(o, "noexec") == 0)
                keep |= MS_NOEXEC;
        }
        /* Mounts we cannot reach (overmounted) or change stay as they are. */
        mount(NULL, point, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | keep, NULL);
    }
    fclose(f);
}

void fuzz_write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || (len && fd_write_all(fd, data, len) < 0)) {
        fprintf(stderr, "write %s: %s\n", path, strerror(errno));
        abort();
    }
    close(fd);
}

size_t fuzz_split(const uint8_t *data, size_t size, const uint8_t **parts, size_t *lens, size_t max)
{
    const size_t sep_len = strlen(FUZZ_SEPARATOR);
    size_t n = 0;
    while (n + 1 < max) {
        const uint8_t *sep = size >= sep_len ? memmem(data, size, FUZZ_SEPARATOR, sep_len) : NULL;
        if (!sep)
            break;
        parts[n] = data;
        lens[n++] = (size_t)(sep - data);
        size -= (size_t)(sep - data) + sep_len;
        data = sep + sep_len;
    }
    parts[n] = data;
    lens[n++] = size;
    return n;
}

char *fuzz_strndup(const uint8_t *data, size_t len)
{
    char *s = xmalloc(len + 1);
    if (len)
        memcpy(s, data, len);
    s[len] = '\0';
    return s;
}
