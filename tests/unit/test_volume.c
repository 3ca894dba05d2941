/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for pod/volume: seeding image volumes from a rootfs. A fake
 * rootfs, a volumes directory and an "outside" directory (standing for the
 * host) live in a mkdtemp directory. volume_seed() is called directly and
 * what it made is checked entry by entry: data, modes, owners, times, xattrs,
 * hardlinks, symlinks kept as symlinks, and nothing read from outside the
 * rootfs whichever way the image's symlinks point, with openat2 and with
 * the portable resolver. The child entry point runs in a fork (it chroots).
 * Owners, device nodes and chroot need root; those checks skip without it.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/error.h"
#include "core/loop.h"
#include "core/util.h"
#include "pod/oci_spec.h"
#include "pod/volume.h"

static char tmp[64];
static int rootfs_fd = -1, volumes_fd = -1;

static bool is_root(void)
{
    return geteuid() == 0;
}

static char *tpath(const char *rel)
{
    return xasprintf("%s/%s", tmp, rel);
}

static void mkdir_at(const char *rel, mode_t mode)
{
    _cleanup_free_ char *p = tpath(rel);
    struct error *err = NULL;
    assert_int_equal(mkdir_p(p, 0755, &err), 0);
    assert_int_equal(chmod(p, mode), 0);
}

static void write_at(const char *rel, const char *text, mode_t mode)
{
    _cleanup_free_ char *p = tpath(rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(p, mode), 0);
}

static void symlink_at(const char *target, const char *rel)
{
    _cleanup_free_ char *p = tpath(rel);
    assert_int_equal(symlink(target, p), 0);
}

static char *read_at(const char *rel)
{
    _cleanup_free_ char *p = tpath(rel);
    struct error *err = NULL;
    char *text = read_file_capped(p, 1 << 20, NULL, &err);
    if (!text)
        error_free(err);
    return text;
}

static bool exists_at(const char *rel)
{
    _cleanup_free_ char *p = tpath(rel);
    struct stat st;
    return lstat(p, &st) == 0;
}

static struct stat stat_at(const char *rel)
{
    _cleanup_free_ char *p = tpath(rel);
    struct stat st;
    if (lstat(p, &st) < 0)
        fail_msg("lstat %s: %s", p, strerror(errno));
    return st;
}

static size_t entries_at(const char *rel)
{
    _cleanup_free_ char *p = tpath(rel);
    DIR *d = opendir(p);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

static int setup(void **state)
{
    snprintf(tmp, sizeof(tmp), "/tmp/tc-vol-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    mkdir_at("rootfs", 0755);
    mkdir_at("volumes", 0700);
    /* "The host": what no volume may ever get. */
    mkdir_at("outside", 0755);
    write_at("outside/secret", "host secret\n", 0600);
    _cleanup_free_ char *r = tpath("rootfs"), *v = tpath("volumes");
    rootfs_fd = open(r, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    volumes_fd = open(v, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(rootfs_fd >= 0 && volumes_fd >= 0);
    return 0;
}

static int teardown(void **state)
{
    oci_spec_no_openat2 = false; /* a test hook: back to the default on every path */
    close(rootfs_fd);
    close(volumes_fd);
    _cleanup_free_ char *cmd = xasprintf("rm -rf %s", tmp);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static void seed_ok(const char *path, const char *name)
{
    struct error *err = NULL;
    if (volume_seed(rootfs_fd, path, volumes_fd, name, &err) < 0)
        fail_msg("volume_seed %s: %s", path, err->msg);
}

static void seed_fails(const char *path, const char *name, int code, const char *needle)
{
    struct error *err = NULL;
    assert_int_equal(volume_seed(rootfs_fd, path, volumes_fd, name, &err), -1);
    assert_non_null(err);
    if (err->grpc_code != code || !strstr(err->msg, needle))
        fail_msg("got %s \"%s\", expected %s with \"%s\"", grpc_code_name(err->grpc_code), err->msg,
                 grpc_code_name(code), needle);
    error_free(err);
}

/* ------------------------------------------------------------------------ */

static void test_copies_the_tree(void **state)
{
    mkdir_at("rootfs/srv/data/sub/deeper", 0750);
    _cleanup_free_ char *data = tpath("rootfs/srv/data");
    assert_int_equal(chmod(data, 0770), 0);
    write_at("rootfs/srv/data/hello.txt", "seeded\n", 0640);
    write_at("rootfs/srv/data/sub/deeper/deep.txt", "deep\n", 0600);
    write_at("rootfs/srv/data/tool", "#!/bin/sh\n", 04755);
    symlink_at("hello.txt", "rootfs/srv/data/link");
    symlink_at("/../../../../../outside/secret", "rootfs/srv/data/escape");
    _cleanup_free_ char *h1 = tpath("rootfs/srv/data/hello.txt"),
                        *h2 = tpath("rootfs/srv/data/sub/hard");
    assert_int_equal(link(h1, h2), 0);
    _cleanup_free_ char *fifo = tpath("rootfs/srv/data/fifo");
    assert_int_equal(mkfifo(fifo, 0620), 0);
    assert_int_equal(chmod(fifo, 0620), 0);
    bool have_xattr = setxattr(h1, "user.tinycri", "yes", 3, 0) == 0;
    const struct timespec old[2] = {{1000000000, 0}, {1000000000, 0}};
    _cleanup_free_ char *deep = tpath("rootfs/srv/data/sub/deeper");
    assert_int_equal(utimensat(AT_FDCWD, deep, old, 0), 0);
    if (is_root()) {
        _cleanup_free_ char *link = tpath("rootfs/srv/data/link");
        assert_int_equal(chown(data, 1000, 1001), 0);
        assert_int_equal(chown(h1, 1000, 1000), 0);
        assert_int_equal(lchown(link, 1002, 1002), 0);
    }

    seed_ok("/srv/data", "srv_data");

    _cleanup_free_ char *hello = read_at("volumes/srv_data/hello.txt");
    assert_string_equal(hello, "seeded\n");
    _cleanup_free_ char *d = read_at("volumes/srv_data/sub/deeper/deep.txt");
    assert_string_equal(d, "deep\n");
    assert_int_equal(stat_at("volumes/srv_data").st_mode & 07777, 0770);
    assert_int_equal(stat_at("volumes/srv_data/hello.txt").st_mode & 07777, 0640);
    assert_int_equal(stat_at("volumes/srv_data/sub/deeper").st_mode & 07777, 0750);
    assert_int_equal(stat_at("volumes/srv_data/tool").st_mode & 07777, 04755);
    assert_int_equal(stat_at("volumes/srv_data/sub/deeper").st_mtim.tv_sec, 1000000000);
    /* Symlinks stay symlinks, with their targets as written. */
    struct stat st = stat_at("volumes/srv_data/escape");
    assert_true(S_ISLNK(st.st_mode));
    char target[256] = "";
    _cleanup_free_ char *esc = tpath("volumes/srv_data/escape");
    assert_true(readlink(esc, target, sizeof(target) - 1) > 0);
    assert_string_equal(target, "/../../../../../outside/secret");
    assert_true(S_ISLNK(stat_at("volumes/srv_data/link").st_mode));
    /* Hardlinks stay links; FIFOs stay FIFOs. */
    assert_int_equal(stat_at("volumes/srv_data/hello.txt").st_ino,
                     stat_at("volumes/srv_data/sub/hard").st_ino);
    assert_int_equal(stat_at("volumes/srv_data/hello.txt").st_nlink, 2);
    st = stat_at("volumes/srv_data/fifo");
    assert_true(S_ISFIFO(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0620);
    if (have_xattr) {
        char val[8] = "";
        _cleanup_free_ char *p = tpath("volumes/srv_data/hello.txt");
        assert_int_equal(getxattr(p, "user.tinycri", val, sizeof(val)), 3);
        assert_memory_equal(val, "yes", 3);
    }
    if (is_root()) {
        st = stat_at("volumes/srv_data");
        assert_true(st.st_uid == 1000 && st.st_gid == 1001);
        st = stat_at("volumes/srv_data/hello.txt");
        assert_true(st.st_uid == 1000 && st.st_gid == 1000);
        st = stat_at("volumes/srv_data/link");
        assert_true(st.st_uid == 1002 && st.st_gid == 1002);
        /* chown would have cleared setuid had the mode been set first. */
        assert_int_equal(stat_at("volumes/srv_data/tool").st_mode & 07777, 04755);
    }
}

/* Hard links are kept inside the copy only: writing the copy never changes the image. */
static void test_copy_is_independent(void **state)
{
    mkdir_at("rootfs/indep", 0755);
    write_at("rootfs/indep/f", "image\n", 0644);
    seed_ok("/indep", "indep");
    write_at("volumes/indep/f", "container\n", 0644);
    _cleanup_free_ char *img = read_at("rootfs/indep/f");
    assert_string_equal(img, "image\n");
    assert_int_not_equal(stat_at("rootfs/indep/f").st_ino, stat_at("volumes/indep/f").st_ino);
}

static void check_escapes(void)
{
    /* The volume path itself points out of the rootfs, absolutely and relatively. */
    _cleanup_free_ char *abs_outside = tpath("outside");
    symlink_at(abs_outside, "rootfs/abs");
    symlink_at("../../../../../../outside", "rootfs/rel");
    symlink_at("../outside", "rootfs/one-up");
    seed_ok("/abs", "abs");
    seed_ok("/rel", "rel");
    seed_ok("/one-up", "one-up");
    assert_int_equal(entries_at("volumes/abs"), 0);
    assert_int_equal(entries_at("volumes/rel"), 0);
    assert_int_equal(entries_at("volumes/one-up"), 0);
    /* A symlink that stays inside resolves there, as the runtime resolves mount targets. */
    mkdir_at("rootfs/run", 0755);
    write_at("rootfs/run/inside", "in the image\n", 0644);
    mkdir_at("rootfs/var", 0755);
    symlink_at("/run", "rootfs/var/run");
    seed_ok("/var/run", "var_run");
    _cleanup_free_ char *in = read_at("volumes/var_run/inside");
    assert_string_equal(in, "in the image\n");
    /* A parent that is a symlink out of the rootfs. */
    symlink_at("/../..", "rootfs/up");
    seed_ok("/up/outside", "up_outside");
    assert_int_equal(entries_at("volumes/up_outside"), 0);
    assert_false(exists_at("volumes/up_outside/secret"));
}

static void test_symlinks_never_leave_the_rootfs(void **state)
{
    check_escapes();
}

static void test_symlinks_never_leave_the_rootfs_portable(void **state)
{
    oci_spec_no_openat2 = true; /* teardown() puts it back, also when this fails */
    check_escapes();
}

static void test_missing_and_bad_paths(void **state)
{
    seed_ok("/nothing/here", "nothing_here");
    assert_int_equal(entries_at("volumes/nothing_here"), 0);
    assert_int_equal(stat_at("volumes/nothing_here").st_mode & 07777, 0755);
    write_at("rootfs/afile", "x", 0644);
    seed_fails("/afile", "afile", GRPC_INVALID_ARGUMENT, "no directory");
    seed_fails("/afile/below", "afile_below", GRPC_INVALID_ARGUMENT, "no directory");
    symlink_at("loop2", "rootfs/loop1");
    symlink_at("loop1", "rootfs/loop2");
    seed_fails("/loop1", "loop1", GRPC_INVALID_ARGUMENT, "no directory");
    /* The same name twice: the volume directory exists already. */
    seed_fails("/nothing/here", "nothing_here", GRPC_INTERNAL, "mkdir");
}

static void test_depth_is_capped(void **state)
{
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(buf_append(&b, "rootfs/deep", 11), 0);
    for (int i = 0; i < VOLUME_MAX_DEPTH + 1; i++)
        assert_int_equal(buf_append(&b, "/d", 2), 0);
    _cleanup_free_ char *rel = buf_take_str(&b, NULL);
    buf_free(&b);
    mkdir_at(rel, 0755);
    seed_fails("/deep", "deep", GRPC_RESOURCE_EXHAUSTED, "nested directories");
}

static void test_device_nodes(void **state)
{
    if (!is_root())
        skip();
    mkdir_at("rootfs/devs", 0755);
    _cleanup_free_ char *p = tpath("rootfs/devs/null");
    assert_int_equal(mknod(p, S_IFCHR | 0666, makedev(1, 3)), 0);
    assert_int_equal(chmod(p, 0666), 0);
    seed_ok("/devs", "devs");
    struct stat st = stat_at("volumes/devs/null");
    assert_true(S_ISCHR(st.st_mode));
    assert_int_equal(st.st_rdev, makedev(1, 3));
    assert_int_equal(st.st_mode & 07777, 0666);
}

/* The child entry point, in a fork: it chroots, seeds every volume, exits. */
static void test_child(void **state)
{
    if (!is_root())
        skip();
    mkdir_at("rootfs/c1", 0755);
    write_at("rootfs/c1/x", "x\n", 0644);
    char *paths[] = {(char *)"/c1", (char *)"/c2"};
    char *names[] = {(char *)"c1", (char *)"c2"};
    _cleanup_free_ char *r = tpath("rootfs"), *v = tpath("volumes/child");
    struct volume_job job = {r, v, paths, names, 2};
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        volume_seed_child(&job);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    _cleanup_free_ char *x = read_at("volumes/child/c1/x");
    assert_string_equal(x, "x\n");
    assert_int_equal(entries_at("volumes/child/c2"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_copies_the_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_is_independent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlinks_never_leave_the_rootfs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlinks_never_leave_the_rootfs_portable, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_missing_and_bad_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_depth_is_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
