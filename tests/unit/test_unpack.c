/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for image/unpack. Layers are built in the test with libarchive's
 * writer (pax tar, then gzip, zstd or nothing) into a fresh mkdtemp directory.
 *
 * unpack_extract_fd() is tested directly: the test chdirs into a destination
 * directory and passes "." as the base, the way the header describes. Here
 * the safety comes from our own checks and libarchive's secure flags only
 * (in the daemon the child is also chrooted), so every malicious layer must be
 * refused with INVALID_ARGUMENT and must leave nothing outside the
 * destination. unpack_layer() is tested on a real event_base with a safety
 * timer: the destination appears whole or not at all, "<dest>.tmp" never
 * survives, timeouts and cancels kill the child and clean up.
 *
 * Owners, device nodes, chroot and trusted.* xattrs need root; the tests
 * that need them skip without it.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/error.h"
#include "core/loop.h"
#include "core/util.h"
#include "image/unpack.h"
#include "image/xferlib.h"
#include "helpers.h"

#define SAFETY_MS 20000
#define DEFAULT_MTIME 1500000000
#define TAR_CAP ((size_t)64 * 1024 * 1024)

/* ---- fixture: a temp dir with a blob, a destination, and an "outside" ---- */

struct fx {
    char root[64];     /* the mkdtemp directory */
    char *blob;        /* root/blob */
    char *dest;        /* root/work/dest: where unpack_extract_fd() writes */
    char *outside;     /* root/outside: must stay untouched */
    char *layers;      /* root/layers: unpack_layer() destinations go here */
    char diff_id[160]; /* of the last layer built */
};

static bool is_root(void)
{
    return geteuid() == 0;
}

static int setup(void **state)
{
    struct fx *f = xcalloc(1, sizeof(*f));
    snprintf(f->root, sizeof(f->root), "/tmp/test_unpack.XXXXXX");
    if (!mkdtemp(f->root))
        return -1;
    f->blob = xasprintf("%s/blob", f->root);
    f->dest = xasprintf("%s/work/dest", f->root);
    f->outside = xasprintf("%s/outside", f->root);
    f->layers = xasprintf("%s/layers", f->root);
    struct error *err = NULL;
    if (mkdir_p(f->dest, 0755, &err) < 0 || mkdir_p(f->outside, 0755, &err) < 0 ||
        mkdir_p(f->layers, 0755, &err) < 0)
        return -1;
    alarm(60); /* a hang outside loop_run() kills the test */
    if (loop_init(&err) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    xferlib_shutdown();
    loop_shutdown();
    alarm(0);
    char *cmd = xasprintf("rm -rf '%s'", f->root);
    int r = system(cmd);
    free(cmd);
    free(f->blob);
    free(f->dest);
    free(f->outside);
    free(f->layers);
    free(f);
    return r == 0 ? 0 : -1;
}

/* ---- building layers ---- */

struct tent {
    const char *path;
    mode_t type; /* AE_IFREG when 0 */
    mode_t perm; /* 0644, or 0755 for directories, when 0 */
    const char *data;
    size_t data_len; /* strlen(data) when 0 */
    const char *symlink;
    const char *hardlink;
    int64_t uid, gid;
    time_t mtime; /* DEFAULT_MTIME when 0 */
    unsigned int rdev_major, rdev_minor;
    const char *xattr; /* one xattr: name, value, length (strlen when 0) */
    const char *xattr_value;
    size_t xattr_len;
};

#define ENTS(...)                                                                                  \
    ((const struct tent[]){__VA_ARGS__}), ARRAY_SIZE(((const struct tent[]){__VA_ARGS__}))

enum comp { COMP_NONE, COMP_GZIP, COMP_ZSTD };

static la_ssize_t on_mem_write(struct archive *a, void *arg, const void *data, size_t n)
{
    assert_int_equal(buf_append(arg, data, n), 0);
    return (la_ssize_t)n;
}

/* An uncompressed pax tar of ents, padded to libarchive's 10 KiB blocks like real tars. */
static void build_tar(struct buf *out, const struct tent *ents, size_t n)
{
    buf_init(out, TAR_CAP);
    struct archive *a = archive_write_new();
    assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open2(a, out, NULL, on_mem_write, NULL, NULL), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        const struct tent *t = &ents[i];
        struct archive_entry *e = archive_entry_new();
        mode_t type = t->type ? t->type : AE_IFREG;
        size_t len = t->data ? (t->data_len ? t->data_len : strlen(t->data)) : 0;
        archive_entry_set_pathname(e, t->path);
        archive_entry_set_filetype(e, type);
        archive_entry_set_perm(e, t->perm ? t->perm : type == AE_IFDIR ? 0755 : 0644);
        archive_entry_set_uid(e, t->uid);
        archive_entry_set_gid(e, t->gid);
        archive_entry_set_mtime(e, t->mtime ? t->mtime : DEFAULT_MTIME, 0);
        if (t->symlink)
            archive_entry_set_symlink(e, t->symlink);
        if (t->hardlink)
            archive_entry_set_hardlink(e, t->hardlink);
        if (type == AE_IFCHR || type == AE_IFBLK) {
            archive_entry_set_rdevmajor(e, t->rdev_major);
            archive_entry_set_rdevminor(e, t->rdev_minor);
        }
        if (t->xattr)
            archive_entry_xattr_add_entry(e, t->xattr, t->xattr_value,
                                          t->xattr_len ? t->xattr_len : strlen(t->xattr_value));
        archive_entry_set_size(e, type == AE_IFREG && !t->hardlink ? (la_int64_t)len : 0);
        assert_true(archive_write_header(a, e) >= ARCHIVE_WARN);
        if (len > 0 && type == AE_IFREG && !t->hardlink)
            assert_int_equal(archive_write_data(a, t->data, len), (la_ssize_t)len);
        archive_entry_free(e);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

static void sha256_of(const void *data, size_t n, char out[160])
{
    char hex[XFERLIB_SHA256_HEX_LEN + 1];
    assert_int_equal(xferlib_sha256_hex(data, n, hex, NULL), 0);
    snprintf(out, 160, "sha256:%s", hex);
}

static void write_file(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);
}

/* Compress data into path with libarchive's raw writer. */
static void write_blob(const char *path, const void *data, size_t n, enum comp c)
{
    if (c == COMP_NONE) {
        write_file(path, data, n);
        return;
    }
    struct archive *a = archive_write_new();
    assert_int_equal(archive_write_set_format_raw(a), ARCHIVE_OK);
    if (c == COMP_GZIP)
        assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    else
        assert_int_equal(archive_write_add_filter_zstd(a), ARCHIVE_OK);
    assert_int_equal(archive_write_set_bytes_in_last_block(a, 1), ARCHIVE_OK);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, "data");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_size(e, (la_int64_t)n);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    assert_int_equal(archive_write_data(a, data, n), (la_ssize_t)n);
    archive_entry_free(e);
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

/* Build a layer into path, and its diff_id into f->diff_id. */
static void make_layer_at(struct fx *f, const char *path, enum comp c, const struct tent *ents,
                          size_t n)
{
    struct buf tar;
    build_tar(&tar, ents, n);
    sha256_of(tar.data, tar.len, f->diff_id);
    write_blob(path, tar.data, tar.len, c);
    buf_free(&tar);
}

static void make_layer(struct fx *f, enum comp c, const struct tent *ents, size_t n)
{
    make_layer_at(f, f->blob, c, ents, n);
}

/* ---- running unpack_extract_fd() ---- */

/* Extract f->blob into f->dest (chdir there, base "."), restoring the working directory. */
static int extract(struct fx *f, const char *diff_id, uint64_t *size, struct error **err)
{
    int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    assert_true(cwd >= 0);
    int fd = open(f->blob, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(chdir(f->dest), 0);
    uint64_t dummy = 0;
    int r = unpack_extract_fd(fd, ".", diff_id, size ? size : &dummy, err);
    assert_int_equal(fchdir(cwd), 0);
    close(fd);
    close(cwd);
    return r;
}

/* Extraction must fail with code, and the message must contain want (when not NULL). */
static void expect_extract_error(struct fx *f, int code, const char *want)
{
    struct error *err = NULL;
    assert_int_equal(extract(f, NULL, NULL, &err), -1);
    assert_non_null(err);
    if (err->grpc_code != code || (want && !strstr(err->msg, want)))
        fail_msg("got %s \"%s\", want %s \"%s\"", grpc_code_name(err->grpc_code), err->msg,
                 grpc_code_name(code), want ? want : "");
    error_free(err);
}

static char *path_in(const char *dir, const char *name)
{
    return xasprintf("%s/%s", dir, name);
}

static bool exists(const char *dir, const char *name)
{
    char *p = path_in(dir, name);
    struct stat st;
    bool r = lstat(p, &st) == 0;
    free(p);
    return r;
}

static struct stat lstat_in(const char *dir, const char *name)
{
    char *p = path_in(dir, name);
    struct stat st;
    if (lstat(p, &st) < 0)
        fail_msg("lstat %s: %s", p, strerror(errno));
    free(p);
    return st;
}

static char *read_in(const char *dir, const char *name)
{
    char *p = path_in(dir, name);
    struct error *err = NULL;
    char *data = read_file_capped(p, 1 << 20, NULL, &err);
    if (!data)
        fail_msg("read %s: %s", p, err->msg);
    free(p);
    return data;
}

/* The xattr's value as a string, or NULL when it is not set. */
static char *xattr_in(const char *dir, const char *name, const char *attr)
{
    char *p = path_in(dir, name);
    char value[256];
    ssize_t n = lgetxattr(p, attr, value, sizeof(value) - 1);
    free(p);
    if (n < 0)
        return NULL;
    value[n] = '\0';
    return xstrdup(value);
}

/* Number of entries in a directory, "." and ".." excluded. */
static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    }
    closedir(d);
    return n;
}

/* ---- unpack_extract_fd: formats and metadata ---- */

static void check_metadata(void **state, enum comp c)
{
    struct fx *f = *state;
    if (!is_root())
        skip();
    const char big[] = "0123456789abcdef";
    make_layer(
        f, c,
        ENTS({.path = "./", .type = AE_IFDIR, .perm = 0755},
             {.path = "etc/",
              .type = AE_IFDIR,
              .perm = 0750,
              .uid = 1000,
              .gid = 1000,
              .mtime = 1600000000},
             {.path = "etc/hello",
              .perm = 0640,
              .data = "hello\n",
              .uid = 1000,
              .gid = 1000,
              .mtime = 1600000001,
              .xattr = "user.foo",
              .xattr_value = "bar"},
             {.path = "etc/hl", .hardlink = "etc/hello"},
             {.path = "etc/link", .type = AE_IFLNK, .perm = 0777, .symlink = "/anywhere/at/all"},
             {.path = "bin/su", .perm = 04755, .data = big},
             {.path = "dev/null", .type = AE_IFCHR, .perm = 0666, .rdev_major = 1, .rdev_minor = 3},
             {.path = "run/fifo", .type = AE_IFIFO, .perm = 0600},
             {.path = "caf\xc3\xa9.txt", .data = "x"}, {.path = "empty", .data = ""}));
    uint64_t size = 0;
    struct error *err = NULL;
    if (extract(f, f->diff_id, &size, &err) < 0)
        fail_msg("extract: %s", err->msg);
    assert_int_equal(size, 6 + 16 + 1);

    struct stat st = lstat_in(f->dest, "etc");
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0750);
    assert_int_equal(st.st_uid, 1000);
    assert_int_equal(st.st_gid, 1000);
    assert_int_equal(st.st_mtime, 1600000000); /* after its contents were written */

    st = lstat_in(f->dest, "etc/hello");
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0640);
    assert_int_equal(st.st_uid, 1000);
    assert_int_equal(st.st_gid, 1000);
    assert_int_equal(st.st_mtime, 1600000001);
    assert_int_equal(st.st_nlink, 2);
    char *data = read_in(f->dest, "etc/hello");
    assert_string_equal(data, "hello\n");
    free(data);
    char *x = xattr_in(f->dest, "etc/hello", "user.foo");
    assert_non_null(x);
    assert_string_equal(x, "bar");
    free(x);

    struct stat hl = lstat_in(f->dest, "etc/hl");
    assert_int_equal(hl.st_ino, st.st_ino);

    st = lstat_in(f->dest, "etc/link");
    assert_true(S_ISLNK(st.st_mode));
    char target[64] = {0};
    char *p = path_in(f->dest, "etc/link");
    assert_int_equal(readlink(p, target, sizeof(target) - 1), strlen("/anywhere/at/all"));
    free(p);
    assert_string_equal(target, "/anywhere/at/all");

    st = lstat_in(f->dest, "bin/su");
    assert_int_equal(st.st_mode & 07777, 04755);
    assert_int_equal(st.st_size, 16);

    st = lstat_in(f->dest, "dev/null");
    assert_true(S_ISCHR(st.st_mode));
    assert_int_equal(major(st.st_rdev), 1);
    assert_int_equal(minor(st.st_rdev), 3);
    assert_int_equal(st.st_mode & 07777, 0666);

    assert_true(S_ISFIFO(lstat_in(f->dest, "run/fifo").st_mode));
    assert_true(S_ISREG(lstat_in(f->dest, "caf\xc3\xa9.txt").st_mode));
    assert_int_equal(lstat_in(f->dest, "empty").st_size, 0);
}

static void test_plain_tar(void **state)
{
    check_metadata(state, COMP_NONE);
}

static void test_gzip_tar(void **state)
{
    check_metadata(state, COMP_GZIP);
}

static void test_zstd_tar(void **state)
{
    check_metadata(state, COMP_ZSTD);
}

/* A later entry of the same name replaces the earlier one, as in any tar. */
static void test_duplicate_entries(void **state)
{
    struct fx *f = *state;
    make_layer(f, COMP_GZIP,
               ENTS({.path = "f", .data = "one"}, {.path = "f", .data = "two"},
                    {.path = "g", .data = "file"},
                    {.path = "g", .type = AE_IFLNK, .symlink = "elsewhere"}));
    struct error *err = NULL;
    if (extract(f, NULL, NULL, &err) < 0)
        fail_msg("extract: %s", err->msg);
    char *data = read_in(f->dest, "f");
    assert_string_equal(data, "two");
    free(data);
    assert_true(S_ISLNK(lstat_in(f->dest, "g").st_mode));
}

/* ---- whiteouts ---- */

static bool is_whiteout(const char *dir, const char *name)
{
    struct stat st = lstat_in(dir, name);
    return S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

static bool is_opaque(const char *dir, const char *name)
{
    char *v = xattr_in(dir, name, "trusted.overlay.opaque");
    bool r = v && strcmp(v, "y") == 0;
    free(v);
    return r;
}

static void test_whiteouts(void **state)
{
    struct fx *f = *state;
    if (!is_root())
        skip();
    make_layer(
        f, COMP_GZIP,
        ENTS(
            {.path = "a/", .type = AE_IFDIR}, {.path = "a/.wh.gone"}, {.path = ".wh.top"},
            {.path = "deep/er/.wh.x"}, /* parents are not in the tar */
            /* the marker before its directory's own entry */
            {.path = "b/.wh..wh..opq"}, {.path = "b/", .type = AE_IFDIR, .perm = 0700},
            {.path = "b/keep", .data = "k"}, {.path = "c/.wh..wh..opq"}, /* no entry for c at all */
            {.path = "d/", .type = AE_IFDIR},
            {.path = "d/.wh..wh.plnk"}, /* aufs bookkeeping: ignored */
            /* the same layer's file wins over its whiteout, in either order */
            {.path = "same1", .data = "1"}, {.path = ".wh.same1"}, {.path = ".wh.same2"},
            {.path = "same2", .data = "2"},
            /* only our conversion may set overlay xattrs */
            {.path = "e/", .type = AE_IFDIR, .xattr = "trusted.overlay.opaque", .xattr_value = "y"},
            {.path = "e/f",
             .data = "f",
             .xattr = "trusted.overlay.redirect",
             .xattr_value = "/etc"}));
    struct error *err = NULL;
    if (extract(f, NULL, NULL, &err) < 0)
        fail_msg("extract: %s", err->msg);

    assert_true(is_whiteout(f->dest, "a/gone"));
    assert_true(is_whiteout(f->dest, "top"));
    assert_true(is_whiteout(f->dest, "deep/er/x"));
    assert_false(exists(f->dest, "a/.wh.gone"));
    assert_false(exists(f->dest, ".wh.top"));

    assert_true(is_opaque(f->dest, "b"));
    assert_int_equal(lstat_in(f->dest, "b").st_mode & 07777, 0700);
    assert_true(exists(f->dest, "b/keep"));
    assert_false(exists(f->dest, "b/.wh..wh..opq"));
    assert_true(is_opaque(f->dest, "c"));
    /* a top deep b c d same1 same2 e: no .wh. file anywhere */
    assert_int_equal(count_entries(f->dest), 9);
    char *d = path_in(f->dest, "d");
    assert_int_equal(count_entries(d), 0);
    free(d);
    assert_true(S_ISREG(lstat_in(f->dest, "same1").st_mode));
    assert_true(S_ISREG(lstat_in(f->dest, "same2").st_mode));

    assert_false(is_opaque(f->dest, "e"));
    char *v = xattr_in(f->dest, "e/f", "trusted.overlay.redirect");
    assert_null(v);
}

static void reset_dest(struct fx *f)
{
    char *cmd = xasprintf("rm -rf '%s' && mkdir '%s'", f->dest, f->dest);
    assert_int_equal(system(cmd), 0);
    free(cmd);
}

static void test_whiteout_bad_names(void **state)
{
    struct fx *f = *state;
    const char *bad[] = {".wh.", "a/.wh.", ".wh..", "a/.wh.."};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        make_layer(f, COMP_NONE, ENTS({.path = bad[i]}));
        expect_extract_error(f, GRPC_INVALID_ARGUMENT, "unsafe path in layer");
    }
}

/* A whiteout or an opaque marker under a symlink must not touch what the symlink points to. */
static void test_whiteout_through_symlink(void **state)
{
    struct fx *f = *state;
    if (!is_root())
        skip();
    char *victim = path_in(f->outside, "victim");
    write_file(victim, "v", 1);

    make_layer(
        f, COMP_NONE,
        ENTS({.path = "s", .type = AE_IFLNK, .symlink = f->outside}, {.path = "s/.wh.victim"}));
    expect_extract_error(f, GRPC_INVALID_ARGUMENT, "unsafe path in layer");
    assert_true(S_ISREG(lstat_in(f->outside, "victim").st_mode));

    reset_dest(f);
    make_layer(
        f, COMP_NONE,
        ENTS({.path = "s", .type = AE_IFLNK, .symlink = f->outside}, {.path = "s/.wh..wh..opq"}));
    expect_extract_error(f, GRPC_INVALID_ARGUMENT, "unsafe path in layer");
    char *v = xattr_in(f->root, "outside", "trusted.overlay.opaque");
    assert_null(v);
    free(victim);
}

/* ---- malicious layers ---- */

static void test_malicious_paths(void **state)
{
    struct fx *f = *state;
    char *abs_evil = path_in(f->outside, "abs_evil");
    char *fake_passwd_dir = path_in(f->root, "etc");
    assert_int_equal(mkdir(fake_passwd_dir, 0755), 0);
    char *fake_passwd = path_in(fake_passwd_dir, "passwd");
    write_file(fake_passwd, "root:x:0:0::/root:/bin/sh\n", 26);
    struct stat etc_passwd;
    assert_int_equal(stat("/etc/passwd", &etc_passwd), 0);

    struct {
        const char *path;
        const char *hardlink;
    } cases[] = {
        {"../evil", NULL},           {"a/../../evil", NULL},
        {"a/b/../../../evil", NULL}, {"..", NULL},
        {"/abs/evil", NULL},         {abs_evil, NULL},
        {"hl", "../../etc/passwd"},  {"hl", "/etc/passwd"},
        {"hl", fake_passwd},         {"hl", "a/../../../etc/passwd"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        reset_dest(f);
        make_layer(f, COMP_GZIP,
                   ENTS({.path = "ok", .data = "fine"}, {.path = cases[i].path,
                                                         .data = cases[i].hardlink ? NULL : "evil",
                                                         .hardlink = cases[i].hardlink}));
        expect_extract_error(f, GRPC_INVALID_ARGUMENT, "unsafe path in layer");
        assert_false(exists(f->root, "work/evil"));
        assert_false(exists(f->root, "evil"));
        assert_false(exists(f->outside, "abs_evil"));
        assert_false(exists("/", "abs"));
        assert_false(exists(f->dest, "hl"));
        assert_int_equal(lstat_in(f->root, "etc/passwd").st_nlink, 1);
        struct stat st;
        assert_int_equal(stat("/etc/passwd", &st), 0);
        assert_int_equal(st.st_nlink, etc_passwd.st_nlink);
    }
    free(abs_evil);
    free(fake_passwd);
    free(fake_passwd_dir);
}

/* Writing through a symlinked parent is refused by libarchive (ARCHIVE_EXTRACT_SECURE_SYMLINKS). */
static void test_malicious_symlinks(void **state)
{
    struct fx *f = *state;
    char *secret = path_in(f->outside, "secret");
    write_file(secret, "s", 1);
    char *rel_outside = xasprintf("../../outside");

    const char *targets[] = {f->outside, rel_outside};
    for (size_t i = 0; i < ARRAY_SIZE(targets); i++) {
        /* a file through the symlink */
        reset_dest(f);
        make_layer(f, COMP_NONE,
                   ENTS({.path = "link", .type = AE_IFLNK, .symlink = targets[i]},
                        {.path = "link/evil", .data = "evil"}));
        expect_extract_error(f, GRPC_INVALID_ARGUMENT, NULL);
        assert_false(exists(f->outside, "evil"));
        assert_true(S_ISLNK(lstat_in(f->dest, "link").st_mode));

        /* a directory and a file below it */
        reset_dest(f);
        make_layer(f, COMP_NONE,
                   ENTS({.path = "link", .type = AE_IFLNK, .symlink = targets[i]},
                        {.path = "link/sub/", .type = AE_IFDIR},
                        {.path = "link/sub/evil", .data = "evil"}));
        expect_extract_error(f, GRPC_INVALID_ARGUMENT, NULL);
        assert_false(exists(f->outside, "sub"));

        /* a hardlink whose target goes through the symlink */
        reset_dest(f);
        make_layer(f, COMP_NONE,
                   ENTS({.path = "link", .type = AE_IFLNK, .symlink = targets[i]},
                        {.path = "hl", .hardlink = "link/secret"}));
        expect_extract_error(f, GRPC_INVALID_ARGUMENT, NULL);
        assert_false(exists(f->dest, "hl"));
        assert_int_equal(lstat_in(f->outside, "secret").st_nlink, 1);
    }

    /* An entry named like an existing symlink replaces the symlink, not its target. */
    reset_dest(f);
    make_layer(f, COMP_NONE,
               ENTS({.path = "link", .type = AE_IFLNK, .symlink = secret},
                    {.path = "link", .data = "replaced"}));
    struct error *err = NULL;
    if (extract(f, NULL, NULL, &err) < 0)
        fail_msg("extract: %s", err->msg);
    assert_true(S_ISREG(lstat_in(f->dest, "link").st_mode));
    char *data = read_in(f->outside, "secret");
    assert_string_equal(data, "s");
    free(data);
    free(rel_outside);
    free(secret);
}

/* ---- diff_id ---- */

static void test_diff_id(void **state)
{
    struct fx *f = *state;
    make_layer(f, COMP_GZIP, ENTS({.path = "a", .data = "abc"}));
    struct error *err = NULL;
    uint64_t size = 0;
    if (extract(f, f->diff_id, &size, &err) < 0)
        fail_msg("extract: %s", err->msg);
    assert_int_equal(size, 3);

    reset_dest(f);
    const char *wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    assert_int_equal(extract(f, wrong, NULL, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_DATA_LOSS);
    char *want = xasprintf("layer diff_id mismatch: expected %s, got %s", wrong, f->diff_id);
    assert_string_equal(err->msg, want);
    free(want);
    error_clear(&err);

    const char *malformed[] = {"sha256:abc", "md5:d41d8cd98f00b204e9800998ecf8427e", "sha256",
                               "SHA256:0000000000000000000000000000000000000000000000000000000000"
                               "000000",
                               "sha256:000000000000000000000000000000000000000000000000000000000000"
                               "000G"};
    for (size_t i = 0; i < ARRAY_SIZE(malformed); i++) {
        assert_int_equal(extract(f, malformed[i], NULL, &err), -1);
        assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
        error_clear(&err);
    }
}

/* The digest covers the whole uncompressed stream, padding after the tar's end included. */
static void test_diff_id_covers_trailing_data(void **state)
{
    struct fx *f = *state;
    struct buf tar;
    build_tar(&tar, ENTS({.path = "a", .data = "abc"}));
    char head_digest[160];
    sha256_of(tar.data, tar.len, head_digest);
    char *zeros = xcalloc(1, 1 << 20);
    assert_int_equal(buf_append(&tar, zeros, 1 << 20), 0);
    free(zeros);
    char full_digest[160];
    sha256_of(tar.data, tar.len, full_digest);
    write_blob(f->blob, tar.data, tar.len, COMP_ZSTD);
    buf_free(&tar);

    struct error *err = NULL;
    if (extract(f, full_digest, NULL, &err) < 0)
        fail_msg("extract: %s", err->msg);
    reset_dest(f);
    assert_int_equal(extract(f, head_digest, NULL, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_DATA_LOSS);
    error_free(err);
}

/* ---- corrupt layers ---- */

static void test_corrupt(void **state)
{
    struct fx *f = *state;
    struct buf tar;
    char big[8192];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(i * 7919 % 251);
    build_tar(&tar, ENTS({.path = "a", .data = big, .data_len = sizeof(big)},
                         {.path = "b", .data = "b"}));

    /* gzip with its deflate data damaged */
    write_blob(f->blob, tar.data, tar.len, COMP_GZIP);
    char *gz = read_file_capped(f->blob, TAR_CAP, NULL, &(struct error *){NULL});
    struct stat st;
    assert_int_equal(stat(f->blob, &st), 0);
    for (off_t i = 20; i < st.st_size - 20; i += 7)
        gz[i] = (char)~gz[i];
    write_file(f->blob, gz, (size_t)st.st_size);
    expect_extract_error(f, GRPC_INVALID_ARGUMENT, NULL);

    /* gzip cut short */
    write_blob(f->blob, tar.data, tar.len, COMP_GZIP);
    free(gz);
    gz = read_file_capped(f->blob, TAR_CAP, NULL, &(struct error *){NULL});
    assert_int_equal(stat(f->blob, &st), 0);
    reset_dest(f);
    write_file(f->blob, gz, (size_t)st.st_size / 2);
    expect_extract_error(f, GRPC_INVALID_ARGUMENT, NULL);
    free(gz);

    /* zstd cut short */
    write_blob(f->blob, tar.data, tar.len, COMP_ZSTD);
    char *zs = read_file_capped(f->blob, TAR_CAP, NULL, &(struct error *){NULL});
    assert_int_equal(stat(f->blob, &st), 0);
    reset_dest(f);
    write_file(f->blob, zs, (size_t)st.st_size / 2);
    expect_extract_error(f, GRPC_INVALID_ARGUMENT, NULL);
    free(zs);

    /* a tar header with a bad checksum */
    tar.data[0] ^= 0x55;
    reset_dest(f);
    write_file(f->blob, tar.data, tar.len);
    expect_extract_error(f, GRPC_INVALID_ARGUMENT, NULL);
    buf_free(&tar);

    /* not a tar at all, and nothing at all */
    const char junk[] = "this is not a tar archive, not even close\n";
    write_file(f->blob, junk, sizeof(junk));
    expect_extract_error(f, GRPC_INVALID_ARGUMENT, NULL);
    write_file(f->blob, "", 0);
    expect_extract_error(f, GRPC_INVALID_ARGUMENT, NULL);
}

/* ---- write failures ---- */

/*
 * A file size limit makes write() fail with EFBIG past limit bytes, the way a
 * full disk makes it fail with ENOSPC: libarchive reports both as a warning
 * only. SIGXFSZ is ignored so the write returns the error instead.
 */
struct fsize_limit {
    struct rlimit old;
    void (*old_handler)(int);
};

static void limit_file_size(struct fsize_limit *l, rlim_t limit)
{
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &l->old), 0);
    l->old_handler = signal(SIGXFSZ, SIG_IGN);
    struct rlimit r = {.rlim_cur = limit, .rlim_max = l->old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &r), 0);
}

static void unlimit_file_size(struct fsize_limit *l)
{
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &l->old), 0);
    signal(SIGXFSZ, l->old_handler);
}

/* A layer whose "big" file is bigger than the limit used below; diff_id set. */
static void make_big_layer(struct fx *f, char *big, size_t n)
{
    for (size_t i = 0; i < n; i++)
        big[i] = (char)(i * 7919 % 251);
    make_layer(f, COMP_GZIP,
               ENTS({.path = "small", .data = "small"}, {.path = "big", .data = big, .data_len = n},
                    {.path = "after", .data = "after"}));
}

/* A file cut short by a write error fails the extraction; it is never a warning. */
static void test_write_error_fails(void **state)
{
    struct fx *f = *state;
    static char big[256 * 1024];
    make_big_layer(f, big, sizeof(big));

    struct fsize_limit l;
    limit_file_size(&l, 64 * 1024);
    struct error *err = NULL;
    uint64_t size = 0;
    int r = extract(f, f->diff_id, &size, &err);
    unlimit_file_size(&l);
    assert_int_equal(r, -1);
    assert_int_equal(err->grpc_code, GRPC_INTERNAL);
    assert_int_equal(err->sys_errno, EFBIG);
    assert_non_null(strstr(err->msg, "write big"));
    error_free(err);
}

/* ---- caps ---- */

static void test_caps(void **state)
{
    struct fx *f = *state;
    struct buf long_path;
    buf_init(&long_path, 8192);
    for (int i = 0; i < 2100; i++)
        buf_append(&long_path, "a/", 2);
    buf_append(&long_path, "f", 2);

    make_layer(f, COMP_NONE, ENTS({.path = long_path.data, .data = "x"}));
    expect_extract_error(f, GRPC_INVALID_ARGUMENT, "path too long in layer");

    make_layer(f, COMP_NONE,
               ENTS({.path = "x", .data = "x"}, {.path = "hl", .hardlink = long_path.data}));
    expect_extract_error(f, GRPC_INVALID_ARGUMENT, "unsafe path in layer");

    make_layer(f, COMP_NONE, ENTS({.path = "l", .type = AE_IFLNK, .symlink = long_path.data}));
    expect_extract_error(f, GRPC_INVALID_ARGUMENT, "symlink target too long");
    buf_free(&long_path);

    size_t big = 70000;
    char *value = xmalloc(big);
    memset(value, 'v', big);
    make_layer(f, COMP_GZIP,
               ENTS({.path = "x",
                     .data = "x",
                     .xattr = "user.big",
                     .xattr_value = value,
                     .xattr_len = big}));
    expect_extract_error(f, GRPC_INVALID_ARGUMENT, "xattrs too large");
    free(value);

    /* Control bytes in a name are escaped in the message. */
    make_layer(f, COMP_NONE, ENTS({.path = "../evil\nline", .data = "x"}));
    expect_extract_error(f, GRPC_INVALID_ARGUMENT, "unsafe path in layer: ../evil\\x0aline");
}

struct done_rec {
    int calls;
    int code;
    char *msg;
    uint64_t size;
};

static void on_done(const struct error *err, uint64_t size, void *arg)
{
    struct done_rec *r = arg;
    r->calls++;
    r->code = err ? err->grpc_code : GRPC_OK;
    free(r->msg);
    r->msg = err ? xstrdup(err->msg) : NULL;
    r->size = size;
    loop_exit();
}

/* done ran once with code; say what it got otherwise. */
static void expect_done(const struct done_rec *rec, int code)
{
    assert_int_equal(rec->calls, 1);
    if (rec->code != code)
        fail_msg("got %s \"%s\", want %s", grpc_code_name(rec->code), rec->msg ? rec->msg : "",
                 grpc_code_name(code));
}

/* Start an unpack of f->blob into layers/name and run the loop until done. */
static void unpack_and_wait(struct fx *f, const char *name, const char *diff_id, int64_t timeout_ms,
                            struct done_rec *rec)
{
    char *dest = path_in(f->layers, name);
    struct error *err = NULL;
    struct unpack_op *op = unpack_layer(f->blob, dest, diff_id, timeout_ms, on_done, rec, &err);
    if (!op)
        fail_msg("unpack_layer: %s", err->msg);
    run_loop(SAFETY_MS);
    assert_int_equal(rec->calls, 1);
    run_until_no_children(SAFETY_MS);
    free(dest);
}

static size_t count_fds(void)
{
    return count_entries("/proc/self/fd");
}

static void test_layer_ok(void **state)
{
    struct fx *f = *state;
    if (!is_root())
        skip();
    make_layer(f, COMP_GZIP,
               ENTS({.path = "etc/", .type = AE_IFDIR, .uid = 1000, .gid = 1000},
                    {.path = "etc/hello", .data = "hello\n", .uid = 1000, .gid = 1000},
                    {.path = "caf\xc3\xa9", .data = "utf-8 name"},
                    {.path = "link", .type = AE_IFLNK, .symlink = "/etc/hello"},
                    {.path = "etc/.wh.gone"}, {.path = "opq/.wh..wh..opq"}));
    size_t fds = count_fds();
    struct done_rec rec = {0};
    unpack_and_wait(f, "L1", f->diff_id, 10000, &rec);
    expect_done(&rec, GRPC_OK);
    assert_int_equal(rec.size, 6 + 10);
    assert_int_equal(count_fds(), fds);

    char *dest = path_in(f->layers, "L1");
    char *data = read_in(dest, "etc/hello");
    assert_string_equal(data, "hello\n");
    free(data);
    assert_int_equal(lstat_in(dest, "etc/hello").st_uid, 1000);
    assert_true(S_ISREG(lstat_in(dest, "caf\xc3\xa9").st_mode));
    assert_true(S_ISLNK(lstat_in(dest, "link").st_mode));
    assert_true(is_whiteout(dest, "etc/gone"));
    assert_true(is_opaque(dest, "opq"));
    assert_int_equal(lstat_in(dest, ".").st_mode & 07777, 0755);
    assert_false(exists(f->layers, "L1.tmp"));
    assert_int_equal(count_entries(f->layers), 1);
    free(dest);
}

static void test_layer_failure_leaves_nothing(void **state)
{
    struct fx *f = *state;
    if (!is_root())
        skip();
    /* Refused after good entries were written: they must go too. */
    make_layer(f, COMP_ZSTD,
               ENTS({.path = "a/", .type = AE_IFDIR}, {.path = "a/b", .data = "b"},
                    {.path = "a/../../evil", .data = "evil"}));
    struct done_rec rec = {0};
    unpack_and_wait(f, "L1", NULL, 10000, &rec);
    expect_done(&rec, GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(rec.msg, "unsafe path in layer: a/../../evil"));
    assert_int_equal(rec.size, 0);
    assert_int_equal(count_entries(f->layers), 0);
    assert_false(exists(f->root, "evil"));
    free(rec.msg);

    /* A diff_id mismatch comes back as DATA_LOSS through the child's report. */
    make_layer(f, COMP_GZIP, ENTS({.path = "a", .data = "a"}));
    char wrong[160];
    strcpy(wrong, f->diff_id);
    wrong[10] = wrong[10] == '0' ? '1' : '0';
    rec = (struct done_rec){0};
    unpack_and_wait(f, "L2", wrong, 10000, &rec);
    expect_done(&rec, GRPC_DATA_LOSS);
    assert_non_null(strstr(rec.msg, "layer diff_id mismatch"));
    assert_int_equal(count_entries(f->layers), 0);
    free(rec.msg);

    /* A missing blob. */
    assert_int_equal(unlink(f->blob), 0);
    rec = (struct done_rec){0};
    unpack_and_wait(f, "L3", NULL, 10000, &rec);
    expect_done(&rec, GRPC_INTERNAL);
    assert_non_null(strstr(rec.msg, "open layer blob"));
    assert_int_equal(count_entries(f->layers), 0);
    free(rec.msg);
}

/* The same through unpack_layer(): nothing is committed, no "<dest>.tmp" stays. */
static void test_layer_write_error_commits_nothing(void **state)
{
    struct fx *f = *state;
    if (!is_root())
        skip();
    static char big[256 * 1024];
    make_big_layer(f, big, sizeof(big));

    struct fsize_limit l;
    limit_file_size(&l, 64 * 1024); /* the child inherits it */
    struct done_rec rec = {0};
    unpack_and_wait(f, "L1", f->diff_id, 10000, &rec);
    unlimit_file_size(&l);
    expect_done(&rec, GRPC_INTERNAL);
    if (!strstr(rec.msg, "write big"))
        fail_msg("%s", rec.msg);
    assert_int_equal(rec.size, 0);
    assert_int_equal(count_entries(f->layers), 0);
    free(rec.msg);

    /* With room again the same layer unpacks whole. */
    rec = (struct done_rec){0};
    unpack_and_wait(f, "L1", f->diff_id, 10000, &rec);
    expect_done(&rec, GRPC_OK);
    char *dest = path_in(f->layers, "L1");
    assert_int_equal(lstat_in(dest, "big").st_size, (off_t)sizeof(big));
    assert_true(exists(dest, "after"));
    free(dest);
}

/* A "<dest>.tmp" left by a crash is removed first, without following its symlinks. */
static void test_layer_replaces_leftover(void **state)
{
    struct fx *f = *state;
    if (!is_root())
        skip();
    char *keep = path_in(f->outside, "keep");
    write_file(keep, "keep", 4);
    char *tmp = path_in(f->layers, "L1.tmp");
    assert_int_equal(mkdir(tmp, 0755), 0);
    /* deeper than RLIMIT_NOFILE: the removal must not hold one fd per level */
    int fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(fd >= 0);
    for (int i = 0; i < 1500; i++) {
        assert_int_equal(mkdirat(fd, "d", 0755), 0);
        int next = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(next >= 0);
        if (i % 100 == 0) {
            assert_int_equal(symlinkat(f->outside, next, "escape"), 0);
            int file = openat(next, "file", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
            assert_true(file >= 0);
            close(file);
        }
        close(fd);
        fd = next;
    }
    close(fd);
    char *link = path_in(tmp, "outside_link");
    assert_int_equal(symlink(f->outside, link), 0);
    free(link);

    make_layer(f, COMP_GZIP, ENTS({.path = "new", .data = "new"}));
    struct done_rec rec = {0};
    unpack_and_wait(f, "L1", f->diff_id, 10000, &rec);
    expect_done(&rec, GRPC_OK);
    assert_false(exists(f->layers, "L1.tmp"));
    char *dest = path_in(f->layers, "L1");
    assert_int_equal(count_entries(dest), 1);
    assert_true(exists(dest, "new"));
    char *data = read_in(f->outside, "keep");
    assert_string_equal(data, "keep");
    free(data);
    free(dest);
    free(tmp);
    free(keep);
}

static void test_layer_dest_exists(void **state)
{
    struct fx *f = *state;
    if (!is_root())
        skip();
    char *dest = path_in(f->layers, "L1");
    assert_int_equal(mkdir(dest, 0755), 0);
    char *marker = path_in(dest, "marker");
    write_file(marker, "m", 1);
    make_layer(f, COMP_NONE, ENTS({.path = "a", .data = "a"}));
    struct done_rec rec = {0};
    unpack_and_wait(f, "L1", NULL, 10000, &rec);
    expect_done(&rec, GRPC_ALREADY_EXISTS);
    assert_int_equal(count_entries(dest), 1);
    assert_true(exists(dest, "marker"));
    assert_false(exists(f->layers, "L1.tmp"));
    free(rec.msg);
    free(marker);
    free(dest);
}

static void on_done_count(const struct error *err, uint64_t size, void *arg)
{
    struct done_rec *r = arg;
    r->calls++;
    if (err) {
        r->code = err->grpc_code;
        free(r->msg);
        r->msg = xstrdup(err->msg);
    }
    r->size += size;
    if (child_count() == 0)
        loop_exit();
}

/* Several layers at once, as a pull does: each lands whole in its own dest. */
static void test_layer_concurrent(void **state)
{
    struct fx *f = *state;
    if (!is_root())
        skip();
    enum { N = 4 };
    struct done_rec rec = {0};
    for (int i = 0; i < N; i++) {
        char *blob = xasprintf("%s/blob%d", f->root, i);
        char *name = xasprintf("f%d", i);
        make_layer_at(f, blob, i % 2 ? COMP_ZSTD : COMP_GZIP,
                      ENTS({.path = name, .data = "0123456789"}));
        char *dest = xasprintf("%s/L%d", f->layers, i);
        struct error *err = NULL;
        assert_non_null(unpack_layer(blob, dest, f->diff_id, 10000, on_done_count, &rec, &err));
        free(dest);
        free(name);
        free(blob);
    }
    run_loop(SAFETY_MS);
    assert_int_equal(rec.calls, N);
    if (rec.msg)
        fail_msg("unpack: %s", rec.msg);
    assert_int_equal(rec.size, N * 10);
    assert_int_equal(count_entries(f->layers), N);
    for (int i = 0; i < N; i++) {
        char *name = xasprintf("L%d/f%d", i, i);
        assert_true(exists(f->layers, name));
        free(name);
    }
}

/* The child blocks opening a FIFO with no writer until the deadline kills it. */
static void test_layer_timeout(void **state)
{
    struct fx *f = *state;
    if (!is_root())
        skip();
    assert_int_equal(mkfifo(f->blob, 0600), 0);
    int64_t start = now_monotonic_ns();
    struct done_rec rec = {0};
    unpack_and_wait(f, "L1", NULL, 300, &rec);
    expect_done(&rec, GRPC_DEADLINE_EXCEEDED);
    assert_true(now_monotonic_ns() - start >= 300 * 1000000LL);
    assert_int_equal(count_entries(f->layers), 0);
    free(rec.msg);
}

static void test_layer_cancel(void **state)
{
    struct fx *f = *state;
    if (!is_root())
        skip();
    assert_int_equal(mkfifo(f->blob, 0600), 0);
    char *dest = path_in(f->layers, "L1");
    struct done_rec rec = {0};
    struct error *err = NULL;
    struct unpack_op *op = unpack_layer(f->blob, dest, NULL, 0, on_done, &rec, &err);
    assert_non_null(op);
    /* Let the child create L1.tmp and block on the FIFO. */
    for (int i = 0; i < 500 && !exists(f->layers, "L1.tmp"); i++)
        run_loop_for(10);
    assert_true(exists(f->layers, "L1.tmp"));
    assert_int_equal(child_count(), 1);
    unpack_cancel(op);
    run_until_no_children(SAFETY_MS);
    run_loop_for(50);
    assert_int_equal(rec.calls, 0);
    assert_int_equal(count_entries(f->layers), 0);
    unpack_cancel(NULL);
    free(dest);
}

/* Cancel right away, before the child got anywhere: still no callback and nothing left. */
static void test_layer_cancel_at_once(void **state)
{
    struct fx *f = *state;
    if (!is_root())
        skip();
    make_layer(f, COMP_GZIP, ENTS({.path = "a", .data = "a"}));
    char *dest = path_in(f->layers, "L1");
    struct done_rec rec = {0};
    struct error *err = NULL;
    struct unpack_op *op = unpack_layer(f->blob, dest, NULL, 0, on_done, &rec, &err);
    assert_non_null(op);
    unpack_cancel(op);
    run_until_no_children(SAFETY_MS);
    run_loop_for(50);
    assert_int_equal(rec.calls, 0);
    assert_int_equal(count_entries(f->layers), 0);
    free(dest);
}

static void test_layer_bad_arguments(void **state)
{
    struct fx *f = *state;
    struct done_rec rec = {0};
    struct error *err = NULL;
    char *dest = path_in(f->layers, "L1");
    assert_null(unpack_layer(f->blob, dest, "sha256:nothex", 0, on_done, &rec, &err));
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    error_clear(&err);
    const char *bad_dests[] = {"/", "", "..", "/tmp/.."};
    for (size_t i = 0; i < ARRAY_SIZE(bad_dests); i++) {
        assert_null(unpack_layer(f->blob, bad_dests[i], NULL, 0, on_done, &rec, &err));
        assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
        error_clear(&err);
    }
    assert_int_equal(child_count(), 0);
    assert_int_equal(rec.calls, 0);
    free(dest);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    umask(022);
    const struct CMUnitTest tests[] = {
        T(test_plain_tar),
        T(test_gzip_tar),
        T(test_zstd_tar),
        T(test_duplicate_entries),
        T(test_whiteouts),
        T(test_whiteout_bad_names),
        T(test_whiteout_through_symlink),
        T(test_malicious_paths),
        T(test_malicious_symlinks),
        T(test_diff_id),
        T(test_diff_id_covers_trailing_data),
        T(test_corrupt),
        T(test_write_error_fails),
        T(test_caps),
        T(test_layer_ok),
        T(test_layer_failure_leaves_nothing),
        T(test_layer_write_error_commits_nothing),
        T(test_layer_replaces_leftover),
        T(test_layer_dest_exists),
        T(test_layer_concurrent),
        T(test_layer_timeout),
        T(test_layer_cancel),
        T(test_layer_cancel_at_once),
        T(test_layer_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
