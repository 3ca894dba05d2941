/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The image's users and groups, behind oci_spec.h: <rootfs>/etc/passwd and
 * <rootfs>/etc/group are opened inside the rootfs (openat2(RESOLVE_IN_ROOT),
 * or an equivalent component-by-component walk on older kernels), so an
 * image cannot point them, or any file the daemon reads from it, at the
 * host's; then a Docker-style user string is resolved against them.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/openat2.h>

#include "core/error.h"
#include "core/util.h"
#include "pod/oci_internal.h"
#include "pod/oci_spec.h"

/* ------------------------------------------------------------------------ */
/* Reading small files                                                      */

char *oci_read_fd(int fd, const char *what, size_t *len, struct error **err)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return error_set(err, GRPC_INTERNAL, errno, "stat %s", what), NULL;
    if (!S_ISREG(st.st_mode))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s is not a regular file", what), NULL;
    if (st.st_size > OCI_SPEC_FILE_MAX)
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0, "%s is larger than %d bytes", what,
                         OCI_SPEC_FILE_MAX),
               NULL;
    return read_fd_capped(fd, what, OCI_SPEC_FILE_MAX, len, err);
}

bool oci_spec_no_openat2;

#define MAX_SYMLINKS 40

/* Push the components of path onto todo so that the first one is popped first. */
static void push_components(struct strv *todo, const char *path)
{
    _cleanup_strv_ struct strv parts = {0};
    for (const char *s = path; *s;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n)
            oci_strv_push(&parts, xstrndup(s, n));
        s += n;
        if (*s == '/')
            s++;
    }
    while (parts.n)
        oci_strv_push(todo, parts.v[--parts.n]);
}

/* The directory at root/dirs[0]/.../dirs[n-1], opened without following symlinks. */
static int walk_dirs(int rootfd, char *const *dirs, size_t n)
{
    int fd = openat(rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    for (size_t i = 0; fd >= 0 && i < n; i++) {
        int next = openat(fd, dirs[i], O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
        int saved = errno;
        close(fd);
        errno = saved;
        fd = next;
    }
    return fd;
}

/*
 * openat2(RESOLVE_IN_ROOT) done by hand, for kernels before 5.6 (and
 * valgrind): one component at a time with O_NOFOLLOW, symlink targets
 * re-resolved from the root when absolute, ".." never above the root.
 * Returns an fd opened with flags, or -1 with errno.
 */
static int open_in_root_portable(int rootfd, const char *rel, int flags)
{
    _cleanup_strv_ struct strv todo = {0}; /* next component last */
    _cleanup_strv_ struct strv dirs = {0}; /* directories resolved below root */
    push_components(&todo, rel);
    _cleanup_close_ int cur = walk_dirs(rootfd, NULL, 0);
    int links = 0;
    while (cur >= 0 && todo.n) {
        _cleanup_free_ char *comp = todo.v[--todo.n];
        if (strcmp(comp, ".") == 0)
            continue;
        if (strcmp(comp, "..") == 0) {
            if (dirs.n) {
                free(dirs.v[--dirs.n]);
                close(cur);
                cur = walk_dirs(rootfd, dirs.v, dirs.n);
            }
            continue;
        }
        struct stat st;
        if (fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) < 0)
            return -1;
        if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t n = readlinkat(cur, comp, target, sizeof(target) - 1);
            if (n < 0)
                return -1;
            if (++links > MAX_SYMLINKS) {
                errno = ELOOP;
                return -1;
            }
            target[n] = '\0';
            if (target[0] == '/') {
                oci_strv_clear(&dirs);
                close(cur);
                cur = walk_dirs(rootfd, NULL, 0);
            }
            push_components(&todo, target);
            continue;
        }
        if (todo.n == 0)
            return openat(cur, comp, flags | O_CLOEXEC | O_NOFOLLOW);
        if (!S_ISDIR(st.st_mode)) {
            errno = ENOTDIR;
            return -1;
        }
        int next = openat(cur, comp, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
        if (next < 0)
            return -1;
        close(cur);
        cur = next;
        oci_strv_push(&dirs, steal_ptr(&comp));
    }
    if (cur >= 0)
        errno = EISDIR; /* the path named a directory */
    return -1;
}

int oci_spec_open_in_root(int rootfd, const char *path, int flags)
{
    while (*path == '/')
        path++;
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    int fd = -1;
    if (!oci_spec_no_openat2)
        fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
    if (oci_spec_no_openat2 || (fd < 0 && errno == ENOSYS))
        fd = open_in_root_portable(rootfd, path, flags);
    return fd;
}

/*
 * Read <root>/<rel> with every path component resolved inside root. A
 * missing file is not an error: *text stays NULL.
 */
static int read_in_root(int rootfd, const char *rel, char **text, struct error **err)
{
    *text = NULL;
    int fd = oci_spec_open_in_root(rootfd, rel, O_RDONLY | O_NONBLOCK | O_NOCTTY);
    _cleanup_close_ int owned = fd;
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        return error_set(err, GRPC_INTERNAL, errno, "open /%s in the image", rel);
    }
    _cleanup_free_ char *what = xasprintf("/%s in the image", rel);
    size_t len = 0;
    *text = oci_read_fd(fd, what, &len, err);
    return *text ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* /etc/passwd and /etc/group                                               */

struct pw_entry {
    const char *name;
    uint32_t uid, gid;
};

struct gr_entry {
    const char *name;
    uint32_t gid;
    const char *members; /* comma-separated, maybe "" */
};

struct user_db {
    char *pw_text; /* NULL: no /etc/passwd */
    char *gr_text; /* NULL: no /etc/group */
    struct pw_entry *pw;
    size_t n_pw;
    struct gr_entry *gr;
    size_t n_gr;
};

static void user_db_clear(struct user_db *db)
{
    free(db->pw_text);
    free(db->gr_text);
    free(db->pw);
    free(db->gr);
    memset(db, 0, sizeof(*db));
}

static bool parse_u32(const char *s, uint32_t *out)
{
    if (!*s)
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > UINT32_MAX)
            return false;
    }
    *out = (uint32_t)v;
    return true;
}

/* Split a line in place at ':' into at most max fields; returns the count. */
static size_t split_fields(char *line, char **f, size_t max)
{
    size_t n = 0;
    f[n++] = line;
    for (char *s = line; *s && n < max; s++) {
        if (*s == ':') {
            *s = '\0';
            f[n++] = s + 1;
        }
    }
    return n;
}

/* Iterate the lines of text in place, skipping blanks and comments. */
char *oci_next_line(char **cursor)
{
    while (*cursor && **cursor) {
        char *line = *cursor;
        char *nl = strchr(line, '\n');
        if (nl) {
            *nl = '\0';
            *cursor = nl + 1;
        } else {
            *cursor = line + strlen(line);
        }
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r')
            line[l - 1] = '\0';
        if (line[0] && line[0] != '#' && line[0] != '+' && line[0] != '-')
            return line;
    }
    return NULL;
}

static void parse_passwd(struct user_db *db)
{
    size_t alloc = 0;
    char *cur = db->pw_text;
    char *line;
    while ((line = oci_next_line(&cur))) {
        char *f[4];
        struct pw_entry e;
        if (split_fields(line, f, 4) < 4 || !*f[0] || !parse_u32(f[2], &e.uid))
            continue;
        char *end = strchr(f[3], ':');
        if (end)
            *end = '\0';
        if (!parse_u32(f[3], &e.gid))
            continue;
        e.name = f[0];
        if (db->n_pw == alloc) {
            alloc = alloc ? alloc * 2 : 32;
            db->pw = xrealloc(db->pw, alloc * sizeof(*db->pw));
        }
        db->pw[db->n_pw++] = e;
    }
}

static void parse_group(struct user_db *db)
{
    size_t alloc = 0;
    char *cur = db->gr_text;
    char *line;
    while ((line = oci_next_line(&cur))) {
        char *f[4];
        size_t n = split_fields(line, f, 4);
        struct gr_entry e;
        if (n < 3 || !*f[0] || !parse_u32(f[2], &e.gid))
            continue;
        e.name = f[0];
        e.members = n == 4 ? f[3] : "";
        if (db->n_gr == alloc) {
            alloc = alloc ? alloc * 2 : 32;
            db->gr = xrealloc(db->gr, alloc * sizeof(*db->gr));
        }
        db->gr[db->n_gr++] = e;
    }
}

static int user_db_load(const char *rootfs, bool want_group, struct user_db *db, struct error **err)
{
    memset(db, 0, sizeof(*db));
    _cleanup_close_ int rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return error_set(err, GRPC_INTERNAL, errno, "open rootfs %s", rootfs);
    if (read_in_root(rootfd, "etc/passwd", &db->pw_text, err) < 0)
        return -1;
    if (want_group && read_in_root(rootfd, "etc/group", &db->gr_text, err) < 0)
        return -1;
    if (db->pw_text)
        parse_passwd(db);
    if (db->gr_text)
        parse_group(db);
    return 0;
}

static const struct pw_entry *pw_by_name(const struct user_db *db, const char *name)
{
    for (size_t i = 0; i < db->n_pw; i++)
        if (strcmp(db->pw[i].name, name) == 0)
            return &db->pw[i];
    return NULL;
}

static const struct pw_entry *pw_by_uid(const struct user_db *db, uint32_t uid)
{
    for (size_t i = 0; i < db->n_pw; i++)
        if (db->pw[i].uid == uid)
            return &db->pw[i];
    return NULL;
}

static bool is_member(const char *members, const char *name)
{
    size_t nl = strlen(name);
    for (const char *s = members; *s;) {
        const char *e = strchr(s, ',');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == nl && strncmp(s, name, n) == 0)
            return true;
        s += n;
        if (*s == ',')
            s++;
    }
    return false;
}

void oci_user_add_gid(struct oci_spec_user *u, uint32_t gid)
{
    for (size_t i = 0; i < u->n_additional_gids; i++)
        if (u->additional_gids[i] == gid)
            return;
    u->additional_gids =
        xrealloc(u->additional_gids, (u->n_additional_gids + 1) * sizeof(*u->additional_gids));
    u->additional_gids[u->n_additional_gids++] = gid;
}

void oci_spec_user_clear(struct oci_spec_user *u)
{
    if (!u)
        return;
    free(u->name);
    free(u->additional_gids);
    memset(u, 0, sizeof(*u));
}

int oci_spec_resolve_user(const char *rootfs, const char *user, bool image_groups,
                          struct oci_spec_user *out, struct error **err)
{
    memset(out, 0, sizeof(*out));
    if (!oci_is_set(user))
        user = "0";
    _cleanup_free_ char *upart = xstrdup(user);
    char *gpart = strchr(upart, ':');
    if (gpart)
        *gpart++ = '\0';
    if (!*upart || (gpart && (!*gpart || strchr(gpart, ':'))))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "invalid user \"%s\"", user);
    uint32_t uid = 0, gid = 0;
    bool uid_numeric = parse_u32(upart, &uid);
    bool gid_numeric = gpart && parse_u32(gpart, &gid);

    struct user_db db __attribute__((cleanup(user_db_clear))) = {0};
    if (user_db_load(rootfs, image_groups || (gpart && !gid_numeric), &db, err) < 0)
        return -1;

    const struct pw_entry *pw;
    if (uid_numeric) {
        pw = pw_by_uid(&db, uid);
    } else {
        if (!db.pw_text)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "cannot resolve user \"%s\": the image has no /etc/passwd", upart);
        pw = pw_by_name(&db, upart);
        if (!pw)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "user \"%s\" not found in the image's /etc/passwd", upart);
        uid = pw->uid;
    }
    if (gpart && !gid_numeric) {
        bool found = false;
        for (size_t i = 0; i < db.n_gr && !found; i++) {
            if (strcmp(db.gr[i].name, gpart) == 0) {
                gid = db.gr[i].gid;
                found = true;
            }
        }
        if (!found)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "group \"%s\" not found in the image's /etc/group", gpart);
    } else if (!gpart) {
        gid = pw ? pw->gid : 0;
    }

    out->uid = uid;
    out->gid = gid;
    out->name = pw ? xstrdup(pw->name) : NULL;
    oci_user_add_gid(out, gid);
    if (image_groups && out->name) {
        for (size_t i = 0; i < db.n_gr; i++)
            if (strcmp(db.gr[i].name, out->name) != 0 && is_member(db.gr[i].members, out->name))
                oci_user_add_gid(out, db.gr[i].gid);
    }
    return 0;
}
