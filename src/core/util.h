/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Small helpers every module uses: allocation that ends the process on
 * out-of-memory, cleanup attributes, ownership hand-over, a capped growable
 * byte buffer, clocks, and a few fd and path helpers.
 */
#ifndef TINYCRI_CORE_UTIL_H
#define TINYCRI_CORE_UTIL_H

#include <dirent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

struct error;

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define UNUSED __attribute__((unused))

/* Allocation: these never return NULL; out-of-memory ends the process. */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* A copy of s, or NULL when s is NULL or "". */
char *xstrdup_nonempty(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* Cleanup attributes for function-local resources. */
static inline void freep(void *p)
{
    free(*(void **)p);
}
void closep(int *fd);
void fclosep(FILE **f);
void closedirp(DIR **d);
#define _cleanup_free_ __attribute__((cleanup(freep)))
#define _cleanup_close_ __attribute__((cleanup(closep)))
#define _cleanup_fclose_ __attribute__((cleanup(fclosep)))
#define _cleanup_closedir_ __attribute__((cleanup(closedirp)))
/* json_decrefp() comes with jansson (2.11 and later); users include <jansson.h>. */
#define _cleanup_json_ __attribute__((cleanup(json_decrefp)))

/* Hand ownership over: return the value and reset the source. */
#define steal_ptr(pp)                                                                              \
    ({                                                                                             \
        __typeof__(pp) steal_pp_ = (pp);                                                           \
        __typeof__(*steal_pp_) steal_tmp_ = *steal_pp_;                                            \
        *steal_pp_ = NULL;                                                                         \
        steal_tmp_;                                                                                \
    })
static inline int steal_fd(int *fd)
{
    int r = *fd;
    *fd = -1;
    return r;
}

/* Internal invariant broken: log and abort. Never for outside input. */
#define assert_state(cond)                                                                         \
    do {                                                                                           \
        if (!(cond))                                                                               \
            util_die_invariant(__FILE__, __LINE__, #cond);                                         \
    } while (0)
__attribute__((noreturn)) void util_die_invariant(const char *file, int line, const char *what);

/*
 * A growable byte buffer with a hard cap. buf_append() fails (returns -1 and
 * leaves the buffer unchanged) when the result would exceed cap.
 */
struct buf {
    char *data;
    size_t len;
    size_t alloc;
    size_t cap;
};
void buf_init(struct buf *b, size_t cap);
int buf_append(struct buf *b, const void *data, size_t n);
/* Drop the first n bytes. */
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b);
/* Release the memory; the buffer may be reused after buf_init(). */
void buf_free(struct buf *b);
/* Take the contents as a NUL-terminated string; the buffer becomes empty. */
char *buf_take_str(struct buf *b, size_t *len);

/* Clocks, in nanoseconds. */
int64_t now_monotonic_ns(void);
int64_t now_realtime_ns(void);

/* Set O_NONBLOCK / FD_CLOEXEC on an fd. */
int fd_set_nonblock(int fd, bool on);
int fd_set_cloexec(int fd, bool on);

/* Write all n bytes, retrying on EINTR; -1 if write() fails (errno set) or writes nothing. */
int fd_write_all(int fd, const void *data, size_t n);

/* mkdir -p with the given mode for directories created (existing ones are left alone). */
int mkdir_p(const char *path, mode_t mode, struct error **err);

/* Read a whole small file, at most cap bytes (RESOURCE_EXHAUSTED beyond). */
char *read_file_capped(const char *path, size_t cap, size_t *len, struct error **err);

/*
 * Read a small file (a /proc or cgroup file) into buf, NUL-terminated, with
 * no allocation. Returns its length, or -1 with errno set: from open() (with
 * O_RDONLY | O_CLOEXEC | extra_flags) or read(), or EFBIG when the file is
 * longer than size - 1 bytes, unless cut: then buf holds its start.
 */
ssize_t read_file_into(const char *path, int extra_flags, char *buf, size_t size, bool cut);

/* Read an open fd to EOF, at most cap bytes (RESOURCE_EXHAUSTED beyond); what names it. */
char *read_fd_capped(int fd, const char *what, size_t cap, size_t *len, struct error **err);

/*
 * Where a helper binary of ours is (owned): the path in env_var when set, else
 * beside the running daemon (a build tree), else in LIBEXECDIR (an install).
 */
char *libexec_path(const char *name, const char *env_var);

/* Does the string start/end with the given prefix/suffix? */
bool str_has_prefix(const char *s, const char *prefix);
bool str_has_suffix(const char *s, const char *suffix);

/*
 * Split one /proc/self/mountinfo line in place: the mount point (field 5),
 * the fs type and the super options (after " - "). Octal escapes stay as they
 * are. false when the line has too few fields.
 */
bool mountinfo_split(char *line, char **mnt, char **fstype, char **superopts);

#endif
