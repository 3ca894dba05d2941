/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for pinned pod namespaces (needs root): pinning net, ipc and
 * uts happens in a child and leaves the test process in its own namespaces,
 * the files are mount points other processes can join (nsenter), unpinning
 * is idempotent, a failure midway or a cancel leaves nothing behind, the shared namespace dir
 * propagates pins and unpins into another mount namespace, and sysctls are set from a child inside
 * the pinned namespaces only.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.h"
#include "core/loop.h"
#include "core/util.h"
#include "pod/nsfs.h"
#include "helpers.h"

#define SAFETY_MS 10000

static char tmp[64];
static char nsdir[128];

/* ---- helpers ---- */

static ino_t own_ns_ino(const char *type)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/ns/%s", type);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_ino;
}

struct own_ns {
    ino_t net, ipc, uts;
    char hostname[256];
};

static void own_ns_get(struct own_ns *o)
{
    o->net = own_ns_ino("net");
    o->ipc = own_ns_ino("ipc");
    o->uts = own_ns_ino("uts");
    assert_int_equal(gethostname(o->hostname, sizeof(o->hostname)), 0);
}

/* The test process is still in the namespaces it started in. */
static void assert_own_ns_unchanged(const struct own_ns *before)
{
    struct own_ns now;
    own_ns_get(&now);
    assert_true(now.net == before->net);
    assert_true(now.ipc == before->ipc);
    assert_true(now.uts == before->uts);
    assert_string_equal(now.hostname, before->hostname);
}

/* How many mounts of the mountinfo file have this mount point; *shared when one is shared. */
static int mounts_at(const char *mountinfo, const char *path, bool *shared)
{
    FILE *f = fopen(mountinfo, "r");
    assert_non_null(f);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        char mp[1024];
        if (sscanf(line, "%*s %*s %*s %*s %1023s", mp) == 1 && strcmp(mp, path) == 0) {
            n++;
            if (shared && strstr(line, " shared:"))
                *shared = true;
        }
    }
    fclose(f);
    return n;
}

/* Mounts under a directory prefix, in our own mount namespace. */
static int mounts_under(const char *prefix)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    assert_non_null(f);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        char mp[1024];
        if (sscanf(line, "%*s %*s %*s %*s %1023s", mp) == 1 && str_has_prefix(mp, prefix))
            n++;
    }
    fclose(f);
    return n;
}

/* Run a shell command and return its stdout (owned), failing on a non-zero exit. */
static char *run(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd = xvasprintf(fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    struct buf b;
    buf_init(&b, 1 << 20);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0)
        assert_int_equal(buf_append(&b, chunk, n), 0);
    int status = pclose(p);
    if (status != 0)
        fail_msg("command failed (%d): %s", status, cmd);
    free(cmd);
    return buf_take_str(&b, NULL);
}

static char *read_text(const char *path)
{
    struct error *err = NULL;
    char *s = read_file_capped(path, 4096, NULL, &err);
    assert_null(err);
    s[strcspn(s, "\n")] = '\0';
    return s;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

struct pin_wait {
    bool called;
    struct error *err;
    struct nsfs_paths paths;
};

static void on_pinned(const struct error *err, const struct nsfs_paths *paths, void *arg)
{
    struct pin_wait *w = arg;
    assert_false(w->called);
    w->called = true;
    if (err) {
        w->err = error_dup(err);
    } else {
        w->paths.net = paths->net ? xstrdup(paths->net) : NULL;
        w->paths.ipc = paths->ipc ? xstrdup(paths->ipc) : NULL;
        w->paths.uts = paths->uts ? xstrdup(paths->uts) : NULL;
    }
    loop_exit();
}

/*
 * Pin through nsfs_pin_start() and wait for done: -1 with *err for a failure
 * reported at once or by done. The work must be in a child, never in the call.
 */
static int pin(const char *dir, const char *id, int flags, const char *hostname,
               struct nsfs_paths *out, struct error **err)
{
    memset(out, 0, sizeof(*out));
    struct pin_wait w = {false, NULL, {NULL, NULL, NULL}};
    struct nsfs_pin_op *op = nsfs_pin_start(dir, id, flags, hostname, 5000, on_pinned, &w, err);
    if (!op) {
        assert_int_equal(child_count(), 0);
        return -1;
    }
    assert_false(w.called);
    assert_int_equal(child_count(), 1);
    run_loop(SAFETY_MS);
    assert_true(w.called);
    assert_int_equal(child_count(), 0);
    if (w.err) {
        *err = w.err;
        return -1;
    }
    *out = w.paths;
    return 0;
}

/* ---- fixtures ---- */

static int setup(void **state)
{
    snprintf(tmp, sizeof(tmp), "/tmp/tc-nsfs-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    snprintf(nsdir, sizeof(nsdir), "%s/netns", tmp);
    struct error *err = NULL;
    assert_int_equal(loop_init(&err), 0);
    return 0;
}

static int teardown(void **state)
{
    /* Whatever a failed test left: unpin by name, then drop the dir mount, then the files. */
    const char *ids[] = {"pod1", "pod2", "pod3", "pod4", "pod5", "podro"};
    for (size_t i = 0; i < ARRAY_SIZE(ids); i++) {
        struct error *err = NULL;
        nsfs_unpin(nsdir, ids[i], &err);
        error_free(err);
    }
    while (umount2(nsdir, MNT_DETACH) == 0)
        ;
    char ro[128];
    snprintf(ro, sizeof(ro), "%s/ro", tmp);
    umount2(ro, MNT_DETACH);
    char *cmd = xasprintf("rm -rf %s", tmp);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    loop_shutdown();
    return 0;
}

/* ---- pinning ---- */

static void test_pin_and_unpin(void **state)
{
    struct own_ns before;
    own_ns_get(&before);
    struct nsfs_paths paths;
    struct error *err = NULL;
    assert_int_equal(
        pin(nsdir, "pod1", CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS, "tc-pod-host", &paths, &err),
        0);
    assert_null(err);
    assert_own_ns_unchanged(&before);

    const char *files[] = {paths.net, paths.ipc, paths.uts};
    const char *types[] = {"net", "ipc", "uts"};
    for (size_t i = 0; i < 3; i++) {
        assert_non_null(files[i]);
        char *want = xasprintf("%s/pod1/%s", nsdir, types[i]);
        assert_string_equal(files[i], want);
        free(want);
        assert_int_equal(mounts_at("/proc/self/mountinfo", files[i], NULL), 1);
        /* The file is a namespace, and not ours. */
        struct stat st;
        assert_int_equal(stat(files[i], &st), 0);
        assert_true(st.st_ino != own_ns_ino(types[i]));
    }
    struct stat st;
    char *dir = xasprintf("%s/pod1", nsdir);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    /* Another process joins through the files: a fresh network with lo up, the pod's hostname. */
    char *links = run("nsenter --net=%s ip -o link", paths.net);
    assert_non_null(strstr(links, "1: lo:"));
    assert_non_null(strstr(links, "UP"));
    assert_int_equal(strchr(links, '\n') - links + 1, (long)strlen(links)); /* one line only */
    free(links);
    char *host = run("nsenter --uts=%s hostname", paths.uts);
    assert_string_equal(host, "tc-pod-host\n");
    free(host);
    char *ipc_ino = run("nsenter --ipc=%s readlink /proc/self/ns/ipc", paths.ipc);
    assert_int_equal(stat(paths.ipc, &st), 0);
    char *want_ipc = xasprintf("ipc:[%lu]\n", (unsigned long)st.st_ino);
    assert_string_equal(ipc_ino, want_ipc);
    free(ipc_ino);
    free(want_ipc);

    /* The same id again: refused, and the existing pins are untouched. */
    struct nsfs_paths again;
    assert_int_equal(pin(nsdir, "pod1", CLONE_NEWNET, NULL, &again, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_ALREADY_EXISTS);
    error_clear(&err);
    assert_int_equal(mounts_at("/proc/self/mountinfo", paths.net, NULL), 1);
    assert_own_ns_unchanged(&before);

    assert_int_equal(nsfs_unpin(nsdir, "pod1", &err), 0);
    assert_null(err);
    for (size_t i = 0; i < 3; i++) {
        assert_false(exists(files[i]));
        assert_int_equal(mounts_at("/proc/self/mountinfo", files[i], NULL), 0);
    }
    assert_false(exists(dir));
    /* Idempotent. */
    assert_int_equal(nsfs_unpin(nsdir, "pod1", &err), 0);
    assert_int_equal(nsfs_unpin(nsdir, "never-pinned", &err), 0);
    assert_null(err);
    assert_own_ns_unchanged(&before);
    free(dir);
    nsfs_paths_clear(&paths);
}

static void test_pin_subset(void **state)
{
    struct own_ns before;
    own_ns_get(&before);
    struct nsfs_paths paths;
    struct error *err = NULL;
    /* A UTS namespace without a hostname keeps a copy of ours. */
    assert_int_equal(pin(nsdir, "pod3", CLONE_NEWUTS, NULL, &paths, &err), 0);
    assert_null(paths.net);
    assert_null(paths.ipc);
    assert_non_null(paths.uts);
    char *host = run("nsenter --uts=%s hostname", paths.uts);
    char *want = xasprintf("%s\n", before.hostname);
    assert_string_equal(host, want);
    free(host);
    free(want);
    assert_int_equal(nsfs_unpin(nsdir, "pod3", &err), 0);
    assert_own_ns_unchanged(&before);
    nsfs_paths_clear(&paths);
}

static void test_pin_failure_leaves_nothing(void **state)
{
    struct own_ns before;
    own_ns_get(&before);
    struct error *err = NULL;
    /* The last namespace file cannot be created: net and ipc, already pinned, must be undone. */
    char *dir = xasprintf("%s/pod2", nsdir);
    assert_int_equal(mkdir_p(dir, 0700, &err), 0);
    char *uts = xasprintf("%s/uts", dir);
    FILE *f = fopen(uts, "w");
    assert_non_null(f);
    fclose(f);
    struct nsfs_paths paths;
    assert_int_equal(
        pin(nsdir, "pod2", CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS, "h", &paths, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_ALREADY_EXISTS);
    assert_non_null(strstr(err->msg, "pod2"));
    error_clear(&err);
    assert_null(paths.net);
    assert_int_equal(mounts_under(dir), 0);
    char *net = xasprintf("%s/net", dir);
    char *ipc = xasprintf("%s/ipc", dir);
    assert_false(exists(net));
    assert_false(exists(ipc));
    assert_true(exists(uts)); /* not ours: left alone, and so is the directory */
    assert_own_ns_unchanged(&before);

    /* An unwritable place (a read-only mount): nothing created, still in our namespaces. */
    char *ro = xasprintf("%s/ro", tmp);
    assert_int_equal(mkdir(ro, 0700), 0);
    assert_int_equal(mount("tmpfs", ro, "tmpfs", MS_RDONLY, "size=64k"), 0);
    assert_int_equal(pin(ro, "podro", CLONE_NEWNET | CLONE_NEWUTS, "h", &paths, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INTERNAL);
    error_clear(&err);
    assert_int_equal(mounts_under(ro), 1); /* the tmpfs itself only */
    assert_own_ns_unchanged(&before);
    assert_int_equal(umount2(ro, 0), 0);

    free(ro);
    free(net);
    free(ipc);
    free(uts);
    free(dir);
}

/* Cancelled before the child ran, or after it mounted but before its exit was seen. */
static void test_pin_cancel(void **state)
{
    struct own_ns before;
    own_ns_get(&before);
    struct error *err = NULL;
    char *dir = xasprintf("%s/pod5", nsdir);
    const int all = CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;
    for (int late = 0; late < 2; late++) {
        struct pin_wait w = {false, NULL, {NULL, NULL, NULL}};
        struct nsfs_pin_op *op = nsfs_pin_start(nsdir, "pod5", all, "h", 5000, on_pinned, &w, &err);
        assert_non_null(op);
        assert_true(exists(dir)); /* made before the child starts */
        if (late) {
            /* Without running the loop: the child pins, exits and waits to be reaped. */
            for (int i = 0; i < 500 && mounts_under(dir) < 3; i++)
                usleep(10 * 1000);
            assert_int_equal(mounts_under(dir), 3);
        }
        nsfs_pin_cancel(op);
        assert_false(exists(dir));
        assert_int_equal(mounts_under(dir), 0);
        run_until_no_children(SAFETY_MS);
        assert_false(w.called);
        assert_false(exists(dir));
        assert_int_equal(mounts_under(dir), 0);
        assert_own_ns_unchanged(&before);
    }
    nsfs_pin_cancel(NULL);
    free(dir);
}

static void test_pin_bad_arguments(void **state)
{
    struct own_ns before;
    own_ns_get(&before);
    struct nsfs_paths paths;
    struct error *err = NULL;
    const char *bad_ids[] = {"", ".", "..", "a/b", "x\ny"};
    for (size_t i = 0; i < ARRAY_SIZE(bad_ids); i++) {
        assert_int_equal(pin(nsdir, bad_ids[i], CLONE_NEWNET, NULL, &paths, &err), -1);
        assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
        error_clear(&err);
        assert_int_equal(nsfs_unpin(nsdir, bad_ids[i], &err), -1);
        assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
        error_clear(&err);
    }
    /* A PID namespace cannot be pinned by a running process. */
    assert_int_equal(pin(nsdir, "pod4", CLONE_NEWNET | CLONE_NEWPID, NULL, &paths, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    error_clear(&err);
    char longname[100];
    memset(longname, 'h', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(pin(nsdir, "pod4", CLONE_NEWUTS, longname, &paths, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    error_clear(&err);
    char *dir = xasprintf("%s/pod4", nsdir);
    assert_false(exists(dir));
    free(dir);
    assert_own_ns_unchanged(&before);
}

/* ---- the shared namespace dir ---- */

static void test_prepare_dir_propagates(void **state)
{
    struct error *err = NULL;
    assert_int_equal(nsfs_prepare_dir(nsdir, &err), 0);
    bool shared = false;
    assert_int_equal(mounts_at("/proc/self/mountinfo", nsdir, &shared), 1);
    assert_true(shared);
    /* Idempotent: no second mount. */
    assert_int_equal(nsfs_prepare_dir(nsdir, &err), 0);
    assert_int_equal(mounts_at("/proc/self/mountinfo", nsdir, NULL), 1);

    /* A process in its own mount namespace (as a container) sees pins come and go. */
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        char c = unshare(CLONE_NEWNS) == 0 ? 'y' : 'n';
        (void)!write(ready[1], &c, 1);
        pause();
        _exit(0);
    }
    close(ready[1]);
    char c = 0;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    assert_int_equal(c, 'y');

    struct nsfs_paths paths;
    assert_int_equal(pin(nsdir, "pod4", CLONE_NEWNET, NULL, &paths, &err), 0);
    char *their = xasprintf("/proc/%d/mountinfo", (int)pid);
    assert_int_equal(mounts_at(their, paths.net, NULL), 1);
    assert_int_equal(nsfs_unpin(nsdir, "pod4", &err), 0);
    assert_int_equal(mounts_at(their, paths.net, NULL), 0);

    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    free(their);
    nsfs_paths_clear(&paths);
    assert_int_equal(umount2(nsdir, MNT_DETACH), 0);
}

/* ---- sysctls ---- */

static void test_sysctl_names(void **state)
{
    static const struct {
        const char *name;
        int flag; /* 0: refused */
    } cases[] = {
        {"net.ipv4.ip_unprivileged_port_start", CLONE_NEWNET},
        {"net.ipv4.conf.eth0/100.rp_filter", CLONE_NEWNET},
        {"net/ipv4/conf/eth0.100/rp_filter", CLONE_NEWNET},
        {"net.core.somaxconn", CLONE_NEWNET},
        {"kernel.shm_rmid_forced", CLONE_NEWIPC},
        {"kernel.shmmax", CLONE_NEWIPC},
        {"kernel.msgmax", CLONE_NEWIPC},
        {"kernel.sem", CLONE_NEWIPC},
        {"fs.mqueue.msg_max", CLONE_NEWIPC},
        {"kernel/msgmnb", CLONE_NEWIPC},
        {"kernel.semx", 0},
        {"kernel.hostname", 0},
        {"vm.swappiness", 0},
        {"fs.mqueue", 0},
        {"net", 0},
        {"", 0},
        {"net..ipv4", 0},
        {"net.ipv4.", 0},
        {".net.ipv4", 0},
        {"net/../../etc/passwd", 0},
        {"net.ipv4.conf.../x", 0},
        {"net.ipv4.conf./.x", 0},
        {"Net.ipv4.ip_forward", 0},
        {"net.ipv4.ip forward", 0},
        {"net.ipv4.ip_forward\n", 0},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        int flag = -1;
        struct error *err = NULL;
        int r = nsfs_sysctl_check(cases[i].name, "1", &flag, &err);
        if (cases[i].flag) {
            if (r != 0)
                fail_msg("%s refused: %s", cases[i].name, err->msg);
            assert_int_equal(flag, cases[i].flag);
        } else {
            if (r == 0)
                fail_msg("%s accepted", cases[i].name);
            assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
        }
        error_free(err);
    }
    int flag = 0;
    struct error *err = NULL;
    assert_int_equal(nsfs_sysctl_check("net.ipv4.ip_local_port_range", "1024\t65000", &flag, &err),
                     0);
    const char *bad_values[] = {"", "1\n2", "1\r", "\x1b"};
    for (size_t i = 0; i < ARRAY_SIZE(bad_values); i++) {
        assert_int_equal(nsfs_sysctl_check("net.core.somaxconn", bad_values[i], &flag, &err), -1);
        assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
        error_clear(&err);
    }
}

struct sysctl_wait {
    bool called;
    struct error *err;
};

static void on_sysctl_done(const struct error *err, void *arg)
{
    struct sysctl_wait *w = arg;
    w->called = true;
    if (err) {
        w->err = xcalloc(1, sizeof(*w->err));
        w->err->grpc_code = err->grpc_code;
        w->err->msg = xstrdup(err->msg);
    }
    loop_exit();
}

static void test_sysctl_apply(void **state)
{
    struct own_ns before;
    own_ns_get(&before);
    char *host_port = read_text("/proc/sys/net/ipv4/ip_unprivileged_port_start");
    char *host_msgmax = read_text("/proc/sys/kernel/msgmax");
    struct nsfs_paths paths;
    struct error *err = NULL;
    assert_int_equal(pin(nsdir, "pod1", CLONE_NEWNET | CLONE_NEWIPC, NULL, &paths, &err), 0);

    const char *want_port = strcmp(host_port, "80") == 0 ? "81" : "80";
    const char *want_msgmax = strcmp(host_msgmax, "9000") == 0 ? "9001" : "9000";
    struct nsfs_sysctl set[] = {
        {"net.ipv4.ip_unprivileged_port_start", want_port},
        {"kernel/msgmax", want_msgmax},
        {"net.ipv4.ping_group_range", "0\t0"},
    };
    struct sysctl_wait w = {false, NULL};
    struct nsfs_sysctl_op *op = nsfs_sysctl_apply(paths.net, paths.ipc, set, ARRAY_SIZE(set), 5000,
                                                  on_sysctl_done, &w, &err);
    assert_non_null(op);
    run_loop(SAFETY_MS);
    assert_true(w.called);
    if (w.err)
        fail_msg("sysctl failed: %s", w.err->msg);

    char *in_pod =
        run("nsenter --net=%s cat /proc/sys/net/ipv4/ip_unprivileged_port_start", paths.net);
    char *want = xasprintf("%s\n", want_port);
    assert_string_equal(in_pod, want);
    free(in_pod);
    free(want);
    in_pod = run("nsenter --ipc=%s cat /proc/sys/kernel/msgmax", paths.ipc);
    want = xasprintf("%s\n", want_msgmax);
    assert_string_equal(in_pod, want);
    free(in_pod);
    free(want);
    char *now = read_text("/proc/sys/net/ipv4/ip_unprivileged_port_start");
    assert_string_equal(now, host_port);
    free(now);
    now = read_text("/proc/sys/kernel/msgmax");
    assert_string_equal(now, host_msgmax);
    free(now);
    assert_own_ns_unchanged(&before);

    /* A sysctl the kernel does not have, and a value it refuses: INVALID_ARGUMENT from the child.
     */
    struct nsfs_sysctl missing[] = {{"net.ipv4.no_such_sysctl", "1"}};
    w = (struct sysctl_wait){false, NULL};
    assert_non_null(nsfs_sysctl_apply(paths.net, NULL, missing, 1, 5000, on_sysctl_done, &w, &err));
    run_loop(SAFETY_MS);
    assert_non_null(w.err);
    assert_int_equal(w.err->grpc_code, GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(w.err->msg, "net.ipv4.no_such_sysctl"));
    error_free(w.err);
    struct nsfs_sysctl refused[] = {{"net.ipv4.ip_unprivileged_port_start", "notanumber"}};
    w = (struct sysctl_wait){false, NULL};
    assert_non_null(nsfs_sysctl_apply(paths.net, NULL, refused, 1, 5000, on_sysctl_done, &w, &err));
    run_loop(SAFETY_MS);
    assert_non_null(w.err);
    assert_int_equal(w.err->grpc_code, GRPC_INVALID_ARGUMENT);
    error_free(w.err);

    /* Refused before any child: bad names, host namespaces. */
    struct nsfs_sysctl bad[] = {{"net.ipv4.ip_forward", "1"}, {"vm.swappiness", "1"}};
    assert_null(nsfs_sysctl_apply(paths.net, paths.ipc, bad, 2, 5000, on_sysctl_done, &w, &err));
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(err->msg, "vm.swappiness"));
    error_clear(&err);
    struct nsfs_sysctl ipc_only[] = {{"kernel.msgmax", "1"}};
    assert_null(nsfs_sysctl_apply(paths.net, NULL, ipc_only, 1, 5000, on_sysctl_done, &w, &err));
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    error_clear(&err);
    assert_int_equal(child_count(), 0);

    /* Cancel: done never runs, the child is reaped. */
    w = (struct sysctl_wait){false, NULL};
    op = nsfs_sysctl_apply(paths.net, paths.ipc, set, 1, 5000, on_sysctl_done, &w, &err);
    assert_non_null(op);
    nsfs_sysctl_cancel(op);
    run_until_no_children(SAFETY_MS);
    assert_false(w.called);

    assert_int_equal(nsfs_unpin(nsdir, "pod1", &err), 0);
    nsfs_paths_clear(&paths);
    free(host_port);
    free(host_msgmax);
}

int main(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "test_nsfs needs root; skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pin_and_unpin),
        cmocka_unit_test(test_pin_subset),
        cmocka_unit_test(test_pin_failure_leaves_nothing),
        cmocka_unit_test(test_pin_cancel),
        cmocka_unit_test(test_pin_bad_arguments),
        cmocka_unit_test(test_prepare_dir_propagates),
        cmocka_unit_test(test_sysctl_names),
        cmocka_unit_test(test_sysctl_apply),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
