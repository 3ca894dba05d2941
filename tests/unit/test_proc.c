/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for process trees: proc_kill_tree() kills a process and all its
 * descendants (children, grandchildren, a stopped one, one that forks on),
 * leaves the rest alone, and does nothing for a pid that is gone.
 */
#include "autoconf.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/proc.h"
#include "core/util.h"

/* Write our pid to fd, then sleep until killed. */
static __attribute__((noreturn)) void report_and_sleep(int fd)
{
    pid_t me = getpid();
    assert_state(write(fd, &me, sizeof(me)) == (ssize_t)sizeof(me));
    for (;;)
        pause();
}

/*
 * Fork a tree: root (our child) -> two children -> one grandchild each; one
 * leaf forks a new sleeper every millisecond. Every process writes its pid
 * to the pipe. Returns the root.
 */
static pid_t fork_tree(int wfd)
{
    pid_t root = fork();
    assert_state(root >= 0);
    if (root > 0)
        return root;
    for (int i = 0; i < 2; i++) {
        if (fork() == 0) {
            if (fork() == 0) {
                if (i == 1) {
                    for (;;) {
                        if (fork() == 0)
                            report_and_sleep(wfd);
                        usleep(1000);
                    }
                }
                report_and_sleep(wfd);
            }
            report_and_sleep(wfd);
        }
    }
    report_and_sleep(wfd);
}

static bool is_alive(pid_t pid)
{
    /* A zombie of ours counts as dead: what matters is that it was killed. */
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

static void test_kills_whole_tree(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t root = fork_tree(fds[1]);
    close(fds[1]);
    pid_t seen[64];
    size_t n = 0;
    while (n < 6) {
        ssize_t r = read(fds[0], &seen[n], sizeof(seen[n]));
        assert_int_equal(r, sizeof(pid_t));
        n++;
    }
    /* An unrelated sleeper of ours must survive. */
    pid_t bystander = fork();
    if (bystander == 0) {
        for (;;)
            pause();
    }
    kill(seen[2], SIGSTOP);

    int pidfd = pidfd_open(root, 0);
    assert_true(pidfd >= 0);
    size_t killed = proc_kill_tree(root, pidfd, 5000);
    /* The bystander goes first, so that no failure below leaves it running. */
    bool bystander_survived = is_alive(bystander);
    kill(bystander, SIGKILL);
    waitpid(bystander, NULL, 0);
    assert_true(bystander_survived);
    assert_true(killed >= 6);
    int status;
    assert_int_equal(waitpid(root, &status, 0), root);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    /* Descendants die asynchronously; they are reparented, so poll. */
    for (int tries = 0; tries < 200; tries++) {
        bool any = false;
        for (size_t i = 0; i < n; i++)
            any |= is_alive(seen[i]);
        if (!any)
            break;
        usleep(10000);
    }
    for (size_t i = 0; i < n; i++)
        assert_false(is_alive(seen[i]));
    /*
     * Nothing forked out of reach either: every pid still in the pipe is dying.
     * EOF comes when their fds are closed, which is before they are zombies.
     */
    close(pidfd);
    pid_t late;
    while (read(fds[0], &late, sizeof(late)) == (ssize_t)sizeof(late)) {
        for (int tries = 0; tries < 200 && is_alive(late); tries++)
            usleep(10000);
        assert_false(is_alive(late));
    }
    close(fds[0]);

    /* We are their subreaper: leave no zombie behind. */
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

static void test_gone_pid(void **state)
{
    (void)state;
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    int pidfd = pidfd_open(pid, 0);
    assert_true(pidfd >= 0);
    waitpid(pid, NULL, 0);
    /* Reaped: its pidfd refers to nothing, and nothing is signalled. */
    assert_int_equal(proc_kill_tree(pid, pidfd, 100), 0);
    close(pidfd);
    assert_int_equal(proc_kill_tree(1, -1, 100), 0);
    assert_int_equal(proc_kill_tree(0, -1, 100), 0);
}

static void test_parent(void **state)
{
    (void)state;
    assert_int_equal(proc_parent(getpid()), getppid());
    assert_int_equal(proc_parent(0), -1);
}

int main(void)
{
    /* Orphaned descendants come back to us, not to an init that may never reap them. */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kills_whole_tree),
        cmocka_unit_test(test_gone_pid),
        cmocka_unit_test(test_parent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
