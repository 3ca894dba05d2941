/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for core/loop: deferred free, signals through the signalfd,
 * timers, and child processes (exit status, captured output and its cap,
 * stdin feeding, deadlines, cancel, fd hygiene, concurrency), each against a
 * real event_base with a safety timer so that a hang fails instead of blocking.
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
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/error.h"
#include "core/loop.h"
#include "core/util.h"
#include "helpers.h"

#define SAFETY_MS 5000
#define MS_NS 1000000LL

/* argv from string literals; the array lives until the end of the enclosing block. */
#define ARGV(...) argv_of((const char *[]){__VA_ARGS__, NULL})
static char *const *argv_of(const char **v)
{
    return (char *const *)v;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n;
}

static int setup(void **state)
{
    struct error *err = NULL;
    alarm(30); /* a hang outside loop_run() (say, in loop_shutdown) kills the test */
    assert_int_equal(loop_init(&err), 0);
    assert_null(err);
    return 0;
}

static int teardown(void **state)
{
    loop_shutdown();
    assert_int_equal(child_count(), 0);
    alarm(0);
    return 0;
}

/* ---- child helpers ---- */

/* A copy of one child's result; out/err point into owned copies. */
struct capture {
    int calls;
    struct child_result res;
    char *out;
    char *err;
};

static int pending; /* callbacks still expected; the last one stops the loop */

static char *copy_bytes(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static void on_child_done(const struct child_result *res, void *arg)
{
    struct capture *cap = arg;
    cap->calls++;
    assert_int_equal(cap->calls, 1);
    assert_non_null(res->out);
    assert_non_null(res->err);
    assert_int_equal(res->out[res->out_len], '\0');
    assert_int_equal(res->err[res->err_len], '\0');
    cap->res = *res;
    cap->out = copy_bytes(res->out, res->out_len);
    cap->err = copy_bytes(res->err, res->err_len);
    cap->res.out = cap->out;
    cap->res.err = cap->err;
    if (--pending == 0)
        loop_exit();
}

static void capture_free(struct capture *cap)
{
    free(cap->out);
    free(cap->err);
    memset(cap, 0, sizeof(*cap));
}

static struct child *spawn(const struct child_opts *opts, struct capture *cap)
{
    struct error *err = NULL;
    struct child *c = child_spawn(opts, on_child_done, cap, &err);
    if (!c) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s", err->msg);
        error_free(err);
        fail_msg("child_spawn: %s", msg);
    }
    pending++;
    return c;
}

/* Spawn one child, run the loop until it is reported. */
static void run_one(const struct child_opts *opts, struct capture *cap)
{
    pending = 0;
    spawn(opts, cap);
    run_loop(SAFETY_MS);
    assert_int_equal(cap->calls, 1);
    assert_int_equal(child_count(), 0);
}

/* ---- children: exit status ---- */

static void test_child_exit_codes(void **state)
{
    struct capture a = {0}, b = {0};
    struct child_opts oa = {.argv = ARGV("/bin/true")};
    struct child_opts ob = {.argv = ARGV("/bin/sh", "-c", "exit 3")};
    run_one(&oa, &a);
    assert_true(a.res.exited);
    assert_int_equal(a.res.exit_code, 0);
    assert_false(a.res.timed_out);
    assert_true(a.res.pid > 0);
    run_one(&ob, &b);
    assert_true(b.res.exited);
    assert_int_equal(b.res.exit_code, 3);
    capture_free(&a);
    capture_free(&b);
}

static void test_child_killed_by_signal(void **state)
{
    struct capture cap = {0};
    struct child_opts o = {.argv = ARGV("/bin/sh", "-c", "kill -TERM $$")};
    run_one(&o, &cap);
    assert_false(cap.res.exited);
    assert_int_equal(cap.res.term_signal, SIGTERM);
    assert_false(cap.res.timed_out);
    capture_free(&cap);
}

static void test_child_exec_failure(void **state)
{
    struct capture cap = {0};
    struct child_opts o = {.argv = ARGV("/nonexistent/tinycri-test-binary")};
    run_one(&o, &cap);
    assert_true(cap.res.exited);
    assert_int_equal(cap.res.exit_code, 127);
    assert_non_null(strstr(cap.res.err, "exec"));
    assert_non_null(strstr(cap.res.err, "/nonexistent/tinycri-test-binary"));
    capture_free(&cap);
}

static int fail_in_child(void *arg)
{
    return 1;
}

static int ok_in_child(void *arg)
{
    static const char msg[] = "from in_child\n";
    (void)!write(1, msg, sizeof(msg) - 1);
    return 0;
}

static void test_child_in_child(void **state)
{
    struct capture a = {0}, b = {0};
    struct child_opts oa = {.argv = ARGV("/bin/true"), .in_child = fail_in_child};
    struct child_opts ob = {.argv = ARGV("/bin/true"), .in_child = ok_in_child};
    run_one(&oa, &a);
    assert_true(a.res.exited);
    assert_int_equal(a.res.exit_code, 127);
    run_one(&ob, &b);
    assert_true(b.res.exited);
    assert_int_equal(b.res.exit_code, 0);
    assert_string_equal(b.res.out, "from in_child\n");
    capture_free(&a);
    capture_free(&b);
}

static void test_child_cwd_and_env(void **state)
{
    struct capture a = {0}, b = {0}, c = {0};
    struct child_opts oa = {.argv = ARGV("/bin/sh", "-c", "pwd"), .cwd = "/proc"};
    struct child_opts ob = {.argv = ARGV("/usr/bin/env"), .envp = ARGV("FOO=bar", "X=1")};
    struct child_opts oc = {.argv = ARGV("/bin/true"), .cwd = "/nonexistent-dir"};
    run_one(&oa, &a);
    assert_string_equal(a.res.out, "/proc\n");
    run_one(&ob, &b);
    assert_string_equal(b.res.out, "FOO=bar\nX=1\n");
    run_one(&oc, &c);
    assert_true(c.res.exited);
    assert_int_equal(c.res.exit_code, 127);
    assert_non_null(strstr(c.res.err, "chdir"));
    capture_free(&a);
    capture_free(&b);
    capture_free(&c);
}

static void on_ignored_signal(int signo, void *arg)
{
}

/* The daemon blocks watched signals and ignores SIGPIPE; children must not inherit that. */
static void test_child_signal_state_reset(void **state)
{
    struct error *err = NULL;
    assert_int_equal(loop_watch_signal(SIGUSR1, on_ignored_signal, NULL, &err), 0);
    struct capture a = {0}, b = {0};
    /* A shell cannot un-ignore an inherited SIG_IGN, so these only die if reset. */
    struct child_opts oa = {.argv = ARGV("/bin/sh", "-c", "kill -USR1 $$; exit 0")};
    struct child_opts ob = {.argv = ARGV("/bin/sh", "-c", "kill -PIPE $$; exit 0")};
    run_one(&oa, &a);
    assert_false(a.res.exited);
    assert_int_equal(a.res.term_signal, SIGUSR1);
    run_one(&ob, &b);
    assert_false(b.res.exited);
    assert_int_equal(b.res.term_signal, SIGPIPE);
    capture_free(&a);
    capture_free(&b);
}

/* ---- children: output and input ---- */

static void test_child_stdout_stderr(void **state)
{
    struct capture cap = {0};
    struct child_opts o = {
        .argv = ARGV("/bin/sh", "-c", "echo out; echo err >&2; printf more; printf less >&2")};
    run_one(&o, &cap);
    assert_true(cap.res.exited);
    assert_int_equal(cap.res.exit_code, 0);
    assert_string_equal(cap.res.out, "out\nmore");
    assert_int_equal(cap.res.out_len, 8);
    assert_string_equal(cap.res.err, "err\nless");
    assert_false(cap.res.out_truncated);
    assert_false(cap.res.err_truncated);
    capture_free(&cap);
}

static void test_child_stdin_small(void **state)
{
    struct capture cap = {0};
    static const char data[] = "hello, child\n";
    struct child_opts o = {
        .argv = ARGV("/bin/cat"), .stdin_data = data, .stdin_len = sizeof(data) - 1};
    run_one(&o, &cap);
    assert_true(cap.res.exited);
    assert_int_equal(cap.res.exit_code, 0);
    assert_string_equal(cap.res.out, data);
    capture_free(&cap);
}

/* More than a pipe's worth, so the writes are partial and resume on EPOLLOUT. */
static void test_child_stdin_large(void **state)
{
    const size_t len = 200 * 1024 + 7;
    char *data = xmalloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (char)('a' + (i * 7 + i / 251) % 26);
    struct capture cap = {0};
    struct child_opts o = {
        .argv = ARGV("/bin/cat"), .stdin_data = data, .stdin_len = len, .out_cap = 256 * 1024};
    run_one(&o, &cap);
    assert_true(cap.res.exited);
    assert_int_equal(cap.res.exit_code, 0);
    assert_int_equal(cap.res.out_len, len);
    assert_false(cap.res.out_truncated);
    assert_memory_equal(cap.res.out, data, len);
    free(data);
    capture_free(&cap);
}

static void test_child_stdin_none_and_empty(void **state)
{
    struct capture a = {0}, b = {0};
    struct child_opts oa = {.argv = ARGV("/bin/cat")};
    struct child_opts ob = {.argv = ARGV("/bin/cat"), .stdin_data = "", .stdin_len = 0};
    run_one(&oa, &a);
    assert_true(a.res.exited);
    assert_int_equal(a.res.exit_code, 0);
    assert_int_equal(a.res.out_len, 0);
    assert_string_equal(a.res.out, "");
    run_one(&ob, &b);
    assert_true(b.res.exited);
    assert_int_equal(b.res.exit_code, 0);
    assert_int_equal(b.res.out_len, 0);
    capture_free(&a);
    capture_free(&b);
}

/* The child drops its stdin while we still have 1 MiB to write: EPIPE, not SIGPIPE. */
static void test_child_stdin_epipe(void **state)
{
    const size_t len = 1024 * 1024;
    char *data = xcalloc(1, len);
    struct capture cap = {0};
    struct child_opts o = {.argv = ARGV("/bin/sh", "-c", "exec </dev/null; sleep 0.2; echo done"),
                           .stdin_data = data,
                           .stdin_len = len};
    run_one(&o, &cap);
    assert_true(cap.res.exited);
    assert_int_equal(cap.res.exit_code, 0);
    assert_string_equal(cap.res.out, "done\n");
    free(data);
    capture_free(&cap);
}

static void test_child_output_cap(void **state)
{
    struct capture cap = {0};
    struct child_opts o = {
        .argv = ARGV("/bin/sh", "-c",
                     "head -c 1048576 /dev/zero; head -c 1048576 /dev/zero >&2; exit 0"),
        .out_cap = 4096};
    int64_t start = now_monotonic_ns();
    run_one(&o, &cap);
    assert_true(elapsed_ms(start) < 3000);
    assert_true(cap.res.exited);
    assert_int_equal(cap.res.exit_code, 0);
    assert_false(cap.res.timed_out);
    assert_int_equal(cap.res.out_len, 4096);
    assert_int_equal(cap.res.err_len, 4096);
    assert_true(cap.res.out_truncated);
    assert_true(cap.res.err_truncated);
    capture_free(&cap);
}

/* Exactly the cap is not truncation; one byte more is. */
static void test_child_output_cap_boundary(void **state)
{
    struct capture a = {0}, b = {0};
    struct child_opts oa = {.argv = ARGV("/bin/sh", "-c", "head -c 100 /dev/zero"), .out_cap = 100};
    struct child_opts ob = {.argv = ARGV("/bin/sh", "-c", "head -c 101 /dev/zero"), .out_cap = 100};
    run_one(&oa, &a);
    assert_int_equal(a.res.out_len, 100);
    assert_false(a.res.out_truncated);
    run_one(&ob, &b);
    assert_int_equal(b.res.out_len, 100);
    assert_true(b.res.out_truncated);
    capture_free(&a);
    capture_free(&b);
}

/* The default cap is 64 KiB per stream. */
static void test_child_output_default_cap(void **state)
{
    struct capture cap = {0};
    struct child_opts o = {.argv = ARGV("/bin/sh", "-c", "head -c 100000 /dev/zero")};
    run_one(&o, &cap);
    assert_int_equal(cap.res.out_len, 64 * 1024);
    assert_true(cap.res.out_truncated);
    capture_free(&cap);
}

/* A grandchild keeps the pipes open; the exit is reported anyway, with what was written. */
static void test_child_grandchild_holds_pipe(void **state)
{
    struct capture cap = {0};
    struct child_opts o = {.argv = ARGV("/bin/sh", "-c", "sleep 5 & echo hi")};
    int64_t start = now_monotonic_ns();
    run_one(&o, &cap);
    assert_true(elapsed_ms(start) < 2500); /* not held up by the 5 s grandchild */
    assert_true(cap.res.exited);
    assert_int_equal(cap.res.exit_code, 0);
    assert_string_equal(cap.res.out, "hi\n");
    capture_free(&cap);
}

#define BIG_PIPE (1 << 20) /* the default pipe-max-size, allowed without privileges */

static int grow_stdout_pipe(void *arg)
{
    return fcntl(1, F_SETPIPE_SZ, BIG_PIPE) < 0;
}

/*
 * More output is waiting at the exit than one wake-up reads: the final drain
 * must fetch it. The child enlarges its pipe, fills it and has exited before
 * the loop first polls.
 */
static void test_child_drain_after_exit(void **state)
{
    int probe[2];
    assert_int_equal(pipe2(probe, O_CLOEXEC), 0);
    bool can_grow = fcntl(probe[1], F_SETPIPE_SZ, BIG_PIPE) >= BIG_PIPE;
    close(probe[0]);
    close(probe[1]);
    if (!can_grow)
        skip();
    struct capture cap = {0};
    struct child_opts o = {.argv = ARGV("/bin/sh", "-c", "head -c 1048576 /dev/zero"),
                           .out_cap = 2 * BIG_PIPE,
                           .in_child = grow_stdout_pipe};
    pending = 0;
    struct child *c = spawn(&o, &cap);
    siginfo_t si;
    assert_int_equal(waitid(P_PID, (id_t)child_pid(c), &si, WEXITED | WNOWAIT), 0);
    run_loop(SAFETY_MS);
    assert_int_equal(cap.calls, 1);
    assert_true(cap.res.exited);
    assert_int_equal(cap.res.exit_code, 0);
    assert_int_equal(cap.res.out_len, BIG_PIPE);
    assert_false(cap.res.out_truncated);
    capture_free(&cap);
}

/* ---- children: deadline, signal, cancel ---- */

static void test_child_deadline_kill(void **state)
{
    struct capture cap = {0};
    struct child_opts o = {.argv = ARGV("/bin/sleep", "10"), .timeout_ms = 200};
    int64_t start = now_monotonic_ns();
    run_one(&o, &cap);
    int64_t ms = elapsed_ms(start);
    assert_true(ms >= 200);
    assert_true(ms < 2000); /* not the 10 s sleep; loose enough for a loaded CI box */
    assert_true(cap.res.timed_out);
    assert_false(cap.res.exited);
    assert_int_equal(cap.res.term_signal, SIGKILL);
    capture_free(&cap);
}

static void test_child_deadline_not_reached(void **state)
{
    struct capture cap = {0};
    struct child_opts o = {.argv = ARGV("/bin/sh", "-c", "exit 4"), .timeout_ms = 5000};
    int64_t start = now_monotonic_ns();
    run_one(&o, &cap);
    assert_true(elapsed_ms(start) < 4000);
    assert_false(cap.res.timed_out);
    assert_true(cap.res.exited);
    assert_int_equal(cap.res.exit_code, 4);
    capture_free(&cap);
}

static void test_child_signal(void **state)
{
    struct capture cap = {0};
    struct child_opts o = {.argv = ARGV("/bin/sleep", "10")};
    pending = 0;
    struct child *c = spawn(&o, &cap);
    assert_true(child_pid(c) > 0);
    assert_int_equal(child_count(), 1);
    child_signal(c, SIGTERM);
    run_loop(SAFETY_MS);
    assert_int_equal(cap.calls, 1);
    assert_false(cap.res.exited);
    assert_int_equal(cap.res.term_signal, SIGTERM);
    assert_false(cap.res.timed_out);
    capture_free(&cap);
}

static void test_child_cancel(void **state)
{
    struct capture a = {0}, b = {0};
    struct child_opts oa = {.argv = ARGV("/bin/sleep", "10"), .timeout_ms = 100};
    struct child_opts ob = {.argv = ARGV("/bin/true")};
    pending = 0;
    struct child *ca = spawn(&oa, &a);
    struct child *cb = spawn(&ob, &b);
    assert_int_equal(child_count(), 2);
    usleep(50 * 1000); /* /bin/true has exited but is not reaped yet */
    child_cancel(ca);
    child_cancel(cb);
    child_cancel(cb); /* twice is harmless */
    int64_t start = now_monotonic_ns();
    run_until_no_children(SAFETY_MS);
    assert_true(elapsed_ms(start) < 2000);
    /* Past the (cancelled) deadline too: still nothing. */
    run_loop_for(150);
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.calls, 0);
    assert_int_equal(child_count(), 0);
}

static void test_child_shutdown_kills(void **state)
{
    struct capture cap[3] = {{0}};
    struct child_opts o = {.argv = ARGV("/bin/sleep", "10"), .stdin_data = "x", .stdin_len = 1};
    pid_t pids[3];
    pending = 0;
    for (int i = 0; i < 3; i++)
        pids[i] = child_pid(spawn(&o, &cap[i]));
    run_loop_for(20);
    int64_t start = now_monotonic_ns();
    loop_shutdown();
    assert_true(elapsed_ms(start) < 2000);
    assert_int_equal(child_count(), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cap[i].calls, 0);
        /* Reaped: the pid is gone. */
        assert_int_equal(kill(pids[i], 0), -1);
        assert_int_equal(errno, ESRCH);
    }
    loop_shutdown(); /* a second call is a no-op */
}

/* ---- children: many at once, and fd hygiene ---- */

static void test_child_many_concurrent(void **state)
{
    enum { N = 20 };
    struct capture cap[N];
    memset(cap, 0, sizeof(cap));
    pending = 0;
    for (int i = 0; i < N; i++) {
        char num[16], code[16];
        snprintf(num, sizeof(num), "%d", i);
        snprintf(code, sizeof(code), "%d", i % 7);
        struct child_opts o = {
            .argv = ARGV("/bin/sh", "-c", "sleep 0.1; echo $0; echo e$1 >&2; exit $1", num, code)};
        spawn(&o, &cap[i]);
    }
    assert_int_equal(child_count(), N);
    run_loop(SAFETY_MS);
    assert_int_equal(child_count(), 0);
    for (int i = 0; i < N; i++) {
        char want[32];
        assert_int_equal(cap[i].calls, 1);
        assert_true(cap[i].res.exited);
        assert_int_equal(cap[i].res.exit_code, i % 7);
        snprintf(want, sizeof(want), "%d\n", i);
        assert_string_equal(cap[i].res.out, want);
        snprintf(want, sizeof(want), "e%d\n", i % 7);
        assert_string_equal(cap[i].res.err, want);
        capture_free(&cap[i]);
    }
}

static void test_child_no_fd_leak(void **state)
{
    enum { WAVES = 5, PER_WAVE = 10 };
    int before = count_fds();
    /* With a leak of even one fd per child, 50 children run out of this. */
    struct rlimit saved, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    low = saved;
    low.rlim_cur = (rlim_t)before + PER_WAVE * 5 + 16;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);

    for (int w = 0; w < WAVES; w++) {
        struct capture cap[PER_WAVE];
        memset(cap, 0, sizeof(cap));
        pending = 0;
        struct child_opts kinds[] = {
            {.argv = ARGV("/bin/cat"), .stdin_data = "abc", .stdin_len = 3},
            {.argv = ARGV("/nonexistent/binary")},
            {.argv = ARGV("/bin/sleep", "10"), .timeout_ms = 50},
            {.argv = ARGV("/bin/sh", "-c", "echo x; echo y >&2; exit 1")},
            {.argv = ARGV("/bin/cat")},
        };
        for (int i = 0; i < PER_WAVE; i++)
            spawn(&kinds[(size_t)i % ARRAY_SIZE(kinds)], &cap[i]);
        run_loop(SAFETY_MS);
        for (int i = 0; i < PER_WAVE; i++) {
            assert_int_equal(cap[i].calls, 1);
            capture_free(&cap[i]);
        }
    }
    /* Cancelled children are cleaned up as well. */
    struct capture unused = {0};
    struct child_opts o = {.argv = ARGV("/bin/sleep", "10")};
    pending = 0;
    child_cancel(spawn(&o, &unused));
    run_until_no_children(SAFETY_MS);
    run_loop_for(10); /* let the deferred frees run */
    assert_int_equal(unused.calls, 0);

    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    assert_int_equal(count_fds(), before);
}

static void test_child_spawn_errors(void **state)
{
    struct error *err = NULL;
    struct child_opts o = {.argv = NULL};
    assert_null(child_spawn(&o, on_child_done, NULL, &err));
    assert_non_null(err);
    assert_int_equal(err->grpc_code, GRPC_INTERNAL);
    error_clear(&err);
    assert_int_equal(child_count(), 0);
}

/* ---- children without exec ---- */

static int fork_fn(void *arg)
{
    char cwd[256] = "";
    if (!getcwd(cwd, sizeof(cwd)))
        return 9;
    printf("%s %s\n", (const char *)arg, cwd);
    fflush(stdout);
    fprintf(stderr, "to stderr\n");
    return 42;
}

static int fork_fn_sleeps(void *arg)
{
    sleep(30);
    return 0;
}

static void test_child_fork(void **state)
{
    struct capture a = {0}, b = {0};
    struct error *err = NULL;
    struct child_opts oa = {.cwd = "/tmp"};
    pending = 2;
    assert_non_null(child_fork(&oa, fork_fn, (void *)"hello", on_child_done, &a, &err));
    struct child_opts ob = {.timeout_ms = 100};
    assert_non_null(child_fork(&ob, fork_fn_sleeps, NULL, on_child_done, &b, &err));
    run_loop(SAFETY_MS);
    assert_true(a.res.exited);
    assert_int_equal(a.res.exit_code, 42); /* what fn returned */
    assert_string_equal(a.res.out, "hello /tmp\n");
    assert_string_equal(a.res.err, "to stderr\n");
    assert_false(b.res.exited);
    assert_true(b.res.timed_out);
    assert_int_equal(b.res.term_signal, SIGKILL);
    assert_int_equal(child_count(), 0);
    capture_free(&a);
    capture_free(&b);
}

/* ---- pidfd watchers ---- */

struct pidfd_probe {
    struct loop_pidfd *w;
    int calls;
    bool exited_in_cb;
    bool free_in_cb;
};

static void on_pidfd_exit(void *arg)
{
    struct pidfd_probe *p = arg;
    p->calls++;
    p->exited_in_cb = loop_pidfd_exited(p->w);
    if (p->free_in_cb) {
        loop_pidfd_free(p->w);
        p->w = NULL;
    }
    loop_exit();
}

static pid_t fork_sleeper(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sleep(30);
        _exit(0);
    }
    return pid;
}

static void test_watch_pidfd(void **state)
{
    struct error *err = NULL;
    /* Our child: the watcher reaps it. */
    pid_t pid = fork_sleeper();
    struct pidfd_probe p = {0};
    p.w = loop_watch_pidfd(pidfd_open(pid, 0), on_pidfd_exit, &p, &err);
    assert_non_null(p.w);
    assert_false(loop_pidfd_exited(p.w));
    int dup = loop_pidfd_dup(p.w);
    assert_true(dup >= 0);
    loop_pidfd_signal(p.w, SIGKILL);
    run_loop(SAFETY_MS);
    assert_int_equal(p.calls, 1);
    assert_true(p.exited_in_cb);
    assert_true(loop_pidfd_exited(p.w));
    assert_int_equal(waitpid(pid, NULL, WNOHANG), -1); /* reaped already */
    assert_int_equal(errno, ECHILD);
    loop_pidfd_signal(p.w, SIGKILL); /* a no-op now */
    loop_pidfd_free(p.w);
    close(dup);

    /* Freed inside its own callback. */
    pid = fork_sleeper();
    struct pidfd_probe q = {.free_in_cb = true};
    q.w = loop_watch_pidfd(pidfd_open(pid, 0), on_pidfd_exit, &q, &err);
    assert_non_null(q.w);
    kill(pid, SIGKILL);
    run_loop(SAFETY_MS);
    assert_int_equal(q.calls, 1);
    assert_null(q.w);
    run_loop_for(10); /* the deferred free */
    loop_pidfd_free(NULL);
}

/* ---- children: rm -rf ---- */

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void make_tree(const char *top)
{
    char *cmd = xasprintf("mkdir -p %s/a/b/c %s/d && echo x >%s/a/b/c/f && ln -s / %s/d/root", top,
                          top, top, top);
    assert_int_equal(system(cmd), 0);
    free(cmd);
}

static void test_child_rm_rf(void **state)
{
    char tmpl[] = "/tmp/tinycri-rm-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    char *one = xasprintf("%s/one", tmpl), *two = xasprintf("%s/two", tmpl);
    make_tree(one);
    make_tree(two);
    struct capture cap = {0};
    const char *paths[] = {one, two};
    struct error *err = NULL;
    pending = 1;
    assert_non_null(child_rm_rf(paths, 2, SAFETY_MS, on_child_done, &cap, &err));
    run_loop(SAFETY_MS);
    assert_true(cap.res.exited);
    assert_int_equal(cap.res.exit_code, 0);
    assert_false(exists(one));
    assert_false(exists(two));
    assert_true(exists("/")); /* the symlink was removed, not followed */
    capture_free(&cap);
    free(one);
    free(two);
    rmdir(tmpl);
}

/* A mount inside a tree keeps its content; rm says so and fails. */
static void test_child_rm_rf_one_file_system(void **state)
{
    char tmpl[] = "/tmp/tinycri-rm-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    char *top = xasprintf("%s/top", tmpl), *mnt = xasprintf("%s/top/mnt", tmpl);
    char *kept = xasprintf("%s/top/mnt/kept", tmpl);
    make_tree(top);
    assert_int_equal(mkdir(mnt, 0700), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, NULL) < 0) {
        char *cmd = xasprintf("rm -rf %s", tmpl);
        assert_int_equal(system(cmd), 0);
        free(cmd);
        free(top);
        free(mnt);
        free(kept);
        skip(); /* needs CAP_SYS_ADMIN */
    }
    int fd = open(kept, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    struct capture cap = {0};
    const char *paths[] = {top};
    struct error *err = NULL;
    pending = 1;
    assert_non_null(child_rm_rf(paths, 1, SAFETY_MS, on_child_done, &cap, &err));
    run_loop(SAFETY_MS);
    assert_true(cap.res.exited);
    assert_int_not_equal(cap.res.exit_code, 0);
    assert_true(exists(kept));
    char *sub_dir = xasprintf("%s/a", top);
    assert_false(exists(sub_dir)); /* the rest went */
    free(sub_dir);
    assert_int_equal(umount2(mnt, MNT_DETACH), 0);
    capture_free(&cap);
    char *cmd = xasprintf("rm -rf %s", tmpl);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(top);
    free(mnt);
    free(kept);
}

/* ---- timers ---- */

struct timer_probe {
    struct loop_timer *t;
    int fired;
    int rearm_times; /* re-arm from inside the callback this many times */
    bool free_in_cb;
    bool armed_in_cb;
};

static void on_probe(void *arg)
{
    struct timer_probe *p = arg;
    p->fired++;
    p->armed_in_cb = loop_timer_is_armed(p->t);
    if (p->rearm_times > 0) {
        p->rearm_times--;
        loop_timer_arm(p->t, 5);
    }
    if (p->free_in_cb) {
        loop_timer_free(p->t);
        p->t = NULL;
    }
}

static void test_timer_fires_once(void **state)
{
    struct timer_probe p = {0};
    p.t = loop_timer_new(on_probe, &p);
    assert_false(loop_timer_is_armed(p.t));
    loop_timer_arm(p.t, 10);
    assert_true(loop_timer_is_armed(p.t));
    run_loop_for(100);
    assert_int_equal(p.fired, 1);
    assert_false(p.armed_in_cb);
    assert_false(loop_timer_is_armed(p.t));
    loop_timer_free(p.t);
    loop_timer_free(NULL);
}

static void test_timer_rearm(void **state)
{
    struct timer_probe p = {0};
    p.t = loop_timer_new(on_probe, &p);
    /* Re-arming replaces the earlier deadline. */
    loop_timer_arm(p.t, 1000);
    loop_timer_arm(p.t, 10);
    int64_t start = now_monotonic_ns();
    run_loop_for(100);
    assert_int_equal(p.fired, 1);
    loop_timer_arm(p.t, 30);
    loop_timer_arm(p.t, 2000);
    run_loop_for(100);
    assert_int_equal(p.fired, 1);
    assert_true(loop_timer_is_armed(p.t));
    loop_timer_disarm(p.t);
    /* Re-arm from inside the callback, twice. */
    p.rearm_times = 2;
    loop_timer_arm(p.t, 0);
    run_loop_for(100);
    assert_int_equal(p.fired, 4);
    assert_true(elapsed_ms(start) < 2000);
    loop_timer_free(p.t);
}

static void test_timer_disarm(void **state)
{
    struct timer_probe p = {0};
    p.t = loop_timer_new(on_probe, &p);
    loop_timer_arm(p.t, 10);
    loop_timer_disarm(p.t);
    assert_false(loop_timer_is_armed(p.t));
    loop_timer_disarm(p.t); /* twice is harmless */
    run_loop_for(60);
    assert_int_equal(p.fired, 0);
    /* Freeing an armed timer disarms it. */
    loop_timer_arm(p.t, 10);
    loop_timer_free(p.t);
    run_loop_for(60);
    assert_int_equal(p.fired, 0);
}

static void test_timer_free_in_callback(void **state)
{
    struct timer_probe p = {0}, q = {0};
    p.t = loop_timer_new(on_probe, &p);
    p.free_in_cb = true;
    loop_timer_arm(p.t, 5);
    /* Re-armed and then freed in the same callback: must not fire again. */
    q.t = loop_timer_new(on_probe, &q);
    q.free_in_cb = true;
    q.rearm_times = 1;
    loop_timer_arm(q.t, 5);
    run_loop_for(80);
    assert_int_equal(p.fired, 1);
    assert_null(p.t);
    assert_int_equal(q.fired, 1);
    assert_null(q.t);
}

/* ---- deferred free ---- */

struct defer_probe {
    int runs;
    bool in_callback;      /* set while the queuing callback is on the stack */
    bool ran_in_callback;  /* the free ran while it was */
    bool ran_before_later; /* the free ran before a later-polled event */
    int later_seen_runs;
    struct loop_timer *later;
    int pipe_fds[2];
    struct event *pipe_ev;
    int pipe_seen_runs;
};

static void on_deferred(void *obj)
{
    struct defer_probe *p = obj;
    p->runs++;
    if (p->in_callback)
        p->ran_in_callback = true;
}

static void on_deferred_requeue(void *obj)
{
    struct defer_probe *p = obj;
    p->runs++;
    loop_defer_free(on_deferred, p);
}

static void on_later(void *arg)
{
    struct defer_probe *p = arg;
    p->later_seen_runs = p->runs;
}

static void on_pipe_readable(evutil_socket_t fd, short what, void *arg)
{
    struct defer_probe *p = arg;
    char c;
    (void)!read(fd, &c, 1);
    p->pipe_seen_runs = p->runs;
    loop_exit();
}

static void on_queue_defer(void *arg)
{
    struct defer_probe *p = arg;
    p->in_callback = true;
    loop_defer_free(on_deferred, p);
    loop_defer_free(on_deferred_requeue, p);
    /* Due now and readable now: both are only seen after the next poll. */
    loop_timer_arm(p->later, 0);
    assert_int_equal(write(p->pipe_fds[1], "x", 1), 1);
    assert_int_equal(p->runs, 0);
    p->in_callback = false;
}

static void test_defer_free_order(void **state)
{
    struct defer_probe p = {0};
    assert_int_equal(pipe2(p.pipe_fds, O_CLOEXEC | O_NONBLOCK), 0);
    p.pipe_ev = event_new(loop_base(), p.pipe_fds[0], EV_READ, on_pipe_readable, &p);
    assert_non_null(p.pipe_ev);
    assert_int_equal(event_add(p.pipe_ev, NULL), 0);
    p.later = loop_timer_new(on_later, &p);
    struct loop_timer *t = loop_timer_new(on_queue_defer, &p);
    loop_timer_arm(t, 5);
    run_loop(SAFETY_MS);
    run_loop_for(20); /* let the 0 ms timer fire if the pipe won the race */
    assert_false(p.ran_in_callback);
    assert_int_equal(p.runs, 3); /* on_deferred, on_deferred_requeue, and its requeue */
    assert_int_equal(p.pipe_seen_runs, 3);
    assert_int_equal(p.later_seen_runs, 3);
    loop_timer_free(t);
    loop_timer_free(p.later);
    event_free(p.pipe_ev);
    close(p.pipe_fds[0]);
    close(p.pipe_fds[1]);
}

static void test_defer_free_at_shutdown(void **state)
{
    struct defer_probe p = {0};
    loop_defer_free(on_deferred, &p);
    loop_defer_free(on_deferred_requeue, &p);
    assert_int_equal(p.runs, 0);
    loop_shutdown();
    assert_int_equal(p.runs, 3);
    /* Without a loop there is nothing to wait for: it runs at once. */
    loop_defer_free(on_deferred, &p);
    assert_int_equal(p.runs, 4);
}

/* ---- signals ---- */

struct signal_probe {
    int signo;
    int calls;
    void *arg;
};

static void on_signal(int signo, void *arg)
{
    struct signal_probe *p = arg;
    p->signo = signo;
    p->calls++;
    p->arg = arg;
    loop_exit();
}

static void test_signal_watch(void **state)
{
    struct error *err = NULL;
    struct signal_probe a = {0}, b = {0};
    assert_int_equal(loop_watch_signal(SIGUSR1, on_signal, &a, &err), 0);
    assert_null(err);
    assert_int_equal(raise(SIGUSR1), 0);
    run_loop(SAFETY_MS);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.signo, SIGUSR1);
    assert_ptr_equal(a.arg, &a);

    /* A second watch replaces the first; other watched signals keep theirs. */
    assert_int_equal(loop_watch_signal(SIGUSR1, on_signal, &b, &err), 0);
    assert_int_equal(loop_watch_signal(SIGUSR2, on_signal, &a, &err), 0);
    assert_int_equal(kill(getpid(), SIGUSR1), 0);
    run_loop(SAFETY_MS);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.signo, SIGUSR1);
    assert_int_equal(raise(SIGUSR2), 0);
    run_loop(SAFETY_MS);
    assert_int_equal(a.calls, 2);
    assert_int_equal(a.signo, SIGUSR2);
}

static void test_signal_watch_errors(void **state)
{
    struct error *err = NULL;
    int bad[] = {0, -1, SIGKILL, SIGSTOP, _NSIG, 1000};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        assert_int_equal(loop_watch_signal(bad[i], on_ignored_signal, NULL, &err), -1);
        assert_non_null(err);
        error_clear(&err);
    }
}

/* Pending watched signals are swallowed at shutdown, and the old mask comes back. */
static void test_signal_mask_restored(void **state)
{
    struct error *err = NULL;
    sigset_t before, after;
    assert_int_equal(sigprocmask(SIG_SETMASK, NULL, &before), 0);
    assert_int_equal(sigismember(&before, SIGUSR2), 0);
    assert_int_equal(loop_watch_signal(SIGUSR2, on_ignored_signal, NULL, &err), 0);
    assert_int_equal(raise(SIGUSR2), 0); /* pending, never dispatched */
    loop_shutdown();
    assert_int_equal(sigprocmask(SIG_SETMASK, NULL, &after), 0);
    assert_int_equal(sigismember(&after, SIGUSR2), 0);
    assert_int_equal(loop_init(&err), 0);
}

static void test_init_twice(void **state)
{
    struct error *err = NULL;
    assert_non_null(loop_base());
    assert_int_equal(loop_init(&err), -1);
    assert_non_null(err);
    error_clear(&err);
}

static void test_child_result_error(void **state)
{
    (void)state;
    struct error *err = NULL;
    struct child_result res = {.exited = true, .exit_code = 0, .err = "", .out = ""};
    assert_int_equal(child_result_error(&res, "seed", 0, &err), 0);
    res.exit_code = 1;
    res.err = "noise\ntime=x level=warn msg=w\ncode=13 msg=first\n"
              "code=3 msg=image volume /x: no directory there\n";
    assert_int_equal(child_result_error(&res, "seed", 0, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    assert_string_equal(err->msg, "seed: image volume /x: no directory there");
    error_free(steal_ptr(&err));
    /* A log line is never the message; a crash's first line is. */
    res.err = "time=x level=warn msg=w\nSegmentation fault\nmore\n";
    res.exit_code = 139;
    assert_int_equal(child_result_error(&res, "seed", 0, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INTERNAL);
    assert_string_equal(err->msg, "seed: child exited with status 139: Segmentation fault");
    error_free(steal_ptr(&err));
    /* A "code=" line out of range is not trusted. */
    res.err = "code=0 msg=fine\n";
    res.exit_code = 1;
    assert_int_equal(child_result_error(&res, "seed", 0, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INTERNAL);
    error_free(steal_ptr(&err));
    res.exited = false;
    res.term_signal = 9;
    res.err = "";
    assert_int_equal(child_result_error(&res, "seed", 0, &err), -1);
    assert_string_equal(err->msg, "seed: child killed by signal 9");
    error_free(steal_ptr(&err));
    res.timed_out = true;
    assert_int_equal(child_result_error(&res, "seed", 250, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_DEADLINE_EXCEEDED);
    assert_string_equal(err->msg, "seed: timed out after 250 ms");
    error_free(err);
}

static int exit_errorf_child(void *arg)
{
    (void)arg;
    child_exit_errorf(GRPC_NOT_FOUND, ENOENT, "open %s", "/a\nb");
}

static int exit_error_child(void *arg)
{
    (void)arg;
    struct error *e = NULL;
    error_set(&e, GRPC_RESOURCE_EXHAUSTED, 0, "too\rbig");
    child_exit_error(e);
}

/* What a forked child reports comes back as the same code and text, line breaks flattened. */
static void test_child_exit_error_round_trip(void **state)
{
    (void)state;
    struct {
        int (*fn)(void *);
        int code;
        const char *msg;
    } cases[] = {
        {exit_errorf_child, GRPC_NOT_FOUND, "job: open /a b: No such file or directory"},
        {exit_error_child, GRPC_RESOURCE_EXHAUSTED, "job: too big"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct capture cap = {0};
        struct child_opts o = {0};
        struct error *err = NULL;
        pending = 1;
        assert_non_null(child_fork(&o, cases[i].fn, NULL, on_child_done, &cap, &err));
        run_loop(SAFETY_MS);
        assert_int_equal(cap.calls, 1);
        assert_int_equal(child_result_error(&cap.res, "job", 0, &err), -1);
        assert_int_equal(err->grpc_code, cases[i].code);
        assert_string_equal(err->msg, cases[i].msg);
        error_free(err);
        capture_free(&cap);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_child_result_error),
        cmocka_unit_test_setup_teardown(test_child_exit_error_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_exit_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_killed_by_signal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_exec_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_in_child, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_cwd_and_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_signal_state_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_stdout_stderr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_stdin_small, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_stdin_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_stdin_none_and_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_stdin_epipe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_output_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_output_cap_boundary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_output_default_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_grandchild_holds_pipe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_drain_after_exit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_deadline_kill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_deadline_not_reached, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_signal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_shutdown_kills, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_many_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_no_fd_leak, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_spawn_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_fork, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_pidfd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_rm_rf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_rm_rf_one_file_system, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timer_fires_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timer_rearm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timer_disarm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timer_free_in_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defer_free_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defer_free_at_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signal_watch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signal_watch_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signal_mask_restored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_twice, setup, teardown),
    };
    /* cmocka globs; TEST_SKIP='test_child_*' runs the rest under valgrind 3.19 (no pidfd_open). */
    if (getenv("TEST_FILTER"))
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    if (getenv("TEST_SKIP"))
        cmocka_set_skip_filter(getenv("TEST_SKIP"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
