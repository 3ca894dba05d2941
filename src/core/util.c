/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Implementation of the helpers in util.h.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/util.h"

static __attribute__((noreturn)) void die_oom(size_t n)
{
    char msg[96];
    int len =
        snprintf(msg, sizeof(msg), "level=fatal msg=\"out of memory allocating %zu bytes\"\n", n);
    if (len > 0)
        (void)!write(2, msg, (size_t)len);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die_oom(n);
    return p;
}

void *xcalloc(size_t nmemb, size_t n)
{
    void *p = calloc(nmemb ? nmemb : 1, n ? n : 1);
    if (!p)
        die_oom(nmemb * n);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        die_oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *xstrdup_nonempty(const char *s)
{
    return s && *s ? xstrdup(s) : NULL;
}

char *xvasprintf(const char *fmt, va_list ap)
{
    char *p = NULL;
    if (vasprintf(&p, fmt, ap) < 0)
        die_oom(strlen(fmt));
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = xvasprintf(fmt, ap);
    va_end(ap);
    return p;
}

void closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}

void fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}

void closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

void util_die_invariant(const char *file, int line, const char *what)
{
    fprintf(stderr, "level=fatal msg=\"internal invariant broken\" file=%s line=%d cond=\"%s\"\n",
            file, line, what);
    abort();
}

void buf_init(struct buf *b, size_t cap)
{
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    b->cap = cap;
}

int buf_append(struct buf *b, const void *data, size_t n)
{
    if (n > b->cap || b->len > b->cap - n)
        return -1;
    if (b->len + n + 1 > b->alloc) {
        size_t want = b->alloc ? b->alloc : 256;
        while (want < b->len + n + 1)
            want *= 2;
        if (want > b->cap + 1)
            want = b->cap + 1;
        b->data = xrealloc(b->data, want);
        b->alloc = want;
    }
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data)
        b->data[b->len] = '\0';
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
}

char *buf_take_str(struct buf *b, size_t *len)
{
    char *s = b->data ? b->data : xstrdup("");
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    return s;
}

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t now_monotonic_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

int64_t now_realtime_ns(void)
{
    return clock_ns(CLOCK_REALTIME);
}

int fd_set_nonblock(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -1;
    fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    return fcntl(fd, F_SETFL, fl);
}

int fd_set_cloexec(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0)
        return -1;
    fl = on ? (fl | FD_CLOEXEC) : (fl & ~FD_CLOEXEC);
    return fcntl(fd, F_SETFD, fl);
}

int fd_write_all(int fd, const void *data, size_t n)
{
    const char *s = data;
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

int mkdir_p(const char *path, mode_t mode, struct error **err)
{
    _cleanup_free_ char *p = xstrdup(path);
    size_t len = strlen(p);
    if (len == 0)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "empty directory path");
    for (char *s = p + 1;; s++) {
        bool end = *s == '\0';
        if (*s == '/' || end) {
            *s = '\0';
            if (mkdir(p, mode) < 0 && errno != EEXIST)
                return error_set(err, GRPC_INTERNAL, errno, "mkdir %s", p);
            if (end)
                break;
            *s = '/';
        }
    }
    struct stat st;
    if (stat(path, &st) < 0)
        return error_set(err, GRPC_INTERNAL, errno, "stat %s", path);
    if (!S_ISDIR(st.st_mode))
        return error_set(err, GRPC_FAILED_PRECONDITION, ENOTDIR, "%s", path);
    return 0;
}

char *read_file_capped(const char *path, size_t cap, size_t *len, struct error **err)
{
    /* O_NONBLOCK: a FIFO planted at the path must not hang the loop; only regular files. */
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return error_set(err, errno == ENOENT ? GRPC_NOT_FOUND : GRPC_INTERNAL, errno, "open %s",
                         path),
               NULL;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "%s is not a regular file", path), NULL;
    return read_fd_capped(fd, path, cap, len, err);
}

ssize_t read_file_into(const char *path, int extra_flags, char *buf, size_t size, bool cut)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | extra_flags);
    if (fd < 0)
        return -1;
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == size - 1) {
            char extra;
            if (!cut && read(fd, &extra, 1) > 0) {
                errno = EFBIG;
                return -1;
            }
            break;
        }
    }
    buf[len] = '\0';
    return (ssize_t)len;
}

char *read_fd_capped(int fd, const char *what, size_t cap, size_t *len, struct error **err)
{
    struct buf b;
    buf_init(&b, cap);
    char chunk[4096];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            buf_free(&b);
            return error_set(err, GRPC_INTERNAL, errno, "read %s", what), NULL;
        }
        if (n == 0)
            break;
        if (buf_append(&b, chunk, (size_t)n) < 0) {
            buf_free(&b);
            return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0, "%s is larger than %zu bytes", what,
                             cap),
                   NULL;
        }
    }
    return buf_take_str(&b, len);
}

char *libexec_path(const char *name, const char *env_var)
{
    const char *env = getenv(env_var);
    if (env && *env)
        return xstrdup(env);
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            char *path = xasprintf("%s/%s", self, name);
            if (access(path, X_OK) == 0)
                return path;
            free(path);
        }
    }
    return xasprintf("%s/%s", LIBEXECDIR, name);
}

bool str_has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool str_has_suffix(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

bool mountinfo_split(char *line, char **mnt, char **fstype, char **superopts)
{
    char *f[6];
    char *save = NULL;
    char *tok = strtok_r(line, " ", &save);
    for (int i = 0; i < 6 && tok; i++, tok = strtok_r(NULL, " ", &save))
        f[i] = tok;
    if (!tok)
        return false;
    *mnt = f[4];
    while (tok && strcmp(tok, "-") != 0)
        tok = strtok_r(NULL, " ", &save);
    if (!tok)
        return false;
    *fstype = strtok_r(NULL, " ", &save);
    strtok_r(NULL, " ", &save); /* source */
    *superopts = strtok_r(NULL, " ", &save);
    return *fstype && *superopts;
}
