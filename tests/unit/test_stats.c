/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for pod/stats: the /proc/net/dev parser, the writable-layer walk
 * (in a child, on a real loop: files, hard links counted once, a symlink to
 * a big file outside never followed, a layer that is missing), the waiter
 * that first figures make a call wait for, and a pod's network counters
 * opened inside a namespace by a child and read through the fd it passed
 * back (the daemon's own namespace, /proc/self/ns/net, stands in for a
 * pod's; needs root for setns, skipped otherwise).
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/loop.h"
#include "core/util.h"
#include "pod/stats.h"

#define SAFETY_MS 10000

static const char NET_DEV[] =
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs "
    "drop fifo colls carrier compressed\n"
    "    lo:    1000      10    0    0    0     0          0         0     1000      10    0    "
    "0    0     0       0          0\n"
    "  eth0: 10485760    7000    1    2    0     0          0         0   524288     400    3    "
    "4    0     0       0          0\n"
    "net1:5 6 7 8 0 0 0 0 9 10 11 12 0 0 0 0\n";

static void test_parse_net_dev(void **state)
{
    struct stats_iface *ifs = NULL;
    ssize_t n = stats_parse_net_dev(NET_DEV, &ifs);
    assert_int_equal(n, 2); /* lo left out */
    assert_string_equal(ifs[0].name, "eth0");
    assert_int_equal(ifs[0].rx_bytes, 10485760);
    assert_int_equal(ifs[0].rx_packets, 7000);
    assert_int_equal(ifs[0].rx_errors, 1);
    assert_int_equal(ifs[0].rx_dropped, 2);
    assert_int_equal(ifs[0].tx_bytes, 524288);
    assert_int_equal(ifs[0].tx_packets, 400);
    assert_int_equal(ifs[0].tx_errors, 3);
    assert_int_equal(ifs[0].tx_dropped, 4);
    assert_string_equal(ifs[1].name, "net1"); /* no space after the colon */
    assert_int_equal(ifs[1].tx_bytes, 9);
    free(ifs);

    const char *bad[] = {
        "h1\nh2\n  eth0: 1 2 3\n",                                 /* too few numbers */
        "h1\nh2\n  eth0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", /* no colon */
        "h1\nh2\n  averyveryverylongname: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        ifs = NULL;
        assert_int_equal(stats_parse_net_dev(bad[i], &ifs), -1);
        assert_null(ifs);
    }
    assert_int_equal(stats_parse_net_dev("h1\nh2\n", &ifs), 0);
    free(ifs);
}

/* ---- on the loop ---- */

static bool safety_fired;

static void on_safety(void *arg)
{
    safety_fired = true;
    loop_exit();
}

static void on_ready(void *arg)
{
    *(int *)arg += 1;
    loop_exit();
}

/* Wait for what pod/stats is measuring (the waiter's own deadline is long). */
static void wait_first_figures(void)
{
    int woken = 0;
    struct loop_timer *t = loop_timer_new(on_safety, NULL);
    safety_fired = false;
    loop_timer_arm(t, SAFETY_MS);
    stats_wait(SAFETY_MS, on_ready, &woken);
    assert_int_equal(loop_run(), 0);
    loop_timer_free(t);
    assert_false(safety_fired);
    assert_int_equal(woken, 1);
}

static void write_file(const char *path, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    char block[4096];
    memset(block, 'x', sizeof(block));
    for (size_t done = 0; done < size; done += sizeof(block))
        assert_int_equal(write(fd, block, sizeof(block)), (ssize_t)sizeof(block));
    close(fd);
}

static char tmp[64];

static char *in_tmp(const char *name)
{
    return xasprintf("%s/%s", tmp, name);
}

static int setup(void **state)
{
    _cleanup_error_ struct error *err = NULL;
    assert_int_equal(loop_init(&err), 0);
    stats_init();
    snprintf(tmp, sizeof(tmp), "/tmp/tc-stats-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    return 0;
}

static int teardown(void **state)
{
    stats_shutdown();
    loop_shutdown();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static void test_writable_layer_walk(void **state)
{
    /* upper/: a 1 MiB file and a second link to it, a dir with a file, a symlink to 8 MiB outside.
     */
    _cleanup_free_ char *upper = in_tmp("upper");
    _cleanup_free_ char *outside = in_tmp("outside");
    _cleanup_free_ char *big = in_tmp("big");
    _cleanup_free_ char *sub = in_tmp("upper/sub");
    _cleanup_free_ char *f1 = in_tmp("upper/f1");
    _cleanup_free_ char *f1b = in_tmp("upper/f1-link");
    _cleanup_free_ char *f2 = in_tmp("upper/sub/f2");
    _cleanup_free_ char *lnk = in_tmp("upper/escape");
    assert_int_equal(mkdir(upper, 0700), 0);
    assert_int_equal(mkdir(outside, 0700), 0);
    assert_int_equal(mkdir(sub, 0700), 0);
    write_file(f1, 1 << 20);
    assert_int_equal(link(f1, f1b), 0);
    write_file(f2, 4096);
    write_file(big, 8 << 20);
    assert_int_equal(symlink(outside, lnk), 0);

    struct stats_ctr_input in = {.id = "c1", .upper_dir = upper};
    struct stats_ctr_input gone = {.id = "c2", .upper_dir = "/nonexistent/upper"};
    struct stats_ctr_input none = {.id = "c3"};
    /* Nothing known: both are being measured, the one without a layer is not. */
    assert_true(stats_container_pending(&in));
    assert_true(stats_container_pending(&gone));
    assert_false(stats_container_pending(&none));
    wait_first_figures();
    assert_false(stats_container_pending(&in));
    assert_false(stats_container_pending(&gone));

    struct stats_ctr_sample s;
    stats_container_sample(&in, &s);
    assert_true(s.has_fs);
    assert_false(s.has_cgroup); /* not live: no cgroup read */
    /* upper, sub, f1 (two names, one inode), f2, escape: 5 inodes. */
    assert_int_equal(s.fs_inodes, 5);
    assert_true(s.fs_bytes >= (1 << 20) + 4096);
    assert_true(s.fs_bytes < (2 << 20)); /* the link counted once, the 8 MiB outside never */
    assert_true(s.fs_ts_ns > 0 && s.fs_ts_ns <= now_realtime_ns());
    int64_t first = s.fs_ts_ns;

    /* Served from the cache (no new walk within STATS_FS_MAX_AGE_MS). */
    write_file(big, 4096);
    stats_container_sample(&in, &s);
    assert_int_equal(s.fs_ts_ns, first);

    stats_container_sample(&gone, &s);
    assert_false(s.has_fs);

    stats_container_forget("c1");
    stats_container_forget("c1"); /* twice is fine */
    stats_container_sample(&none, &s);
    assert_false(s.has_fs);
}

static void test_pod_network_counters_through_a_passed_fd(void **state)
{
    if (geteuid() != 0)
        skip();
    struct stats_pod_input in = {.id = "p1", .ready = true, .netns_path = "/proc/self/ns/net"};
    struct stats_pod_input host = {.id = "p2", .ready = true, .netns_path = NULL};
    assert_false(stats_pod_pending(&host)); /* host network: nothing to open */
    assert_true(stats_pod_pending(&in));
    wait_first_figures();
    assert_false(stats_pod_pending(&in));
    struct stats_pod_sample s;
    stats_pod_sample(&in, &s);
    assert_true(s.has_net);
    assert_false(s.has_cgroup); /* no cgroup parent */
    /* The same interfaces as /proc/net/dev shows here, lo left out. */
    _cleanup_error_ struct error *err = NULL;
    size_t len = 0;
    _cleanup_free_ char *text = read_file_capped("/proc/self/net/dev", 1 << 20, &len, &err);
    struct stats_iface *want = NULL;
    ssize_t n = stats_parse_net_dev(text, &want);
    assert_int_equal(s.n_ifaces, n);
    for (ssize_t i = 0; i < n; i++)
        assert_string_equal(s.ifaces[i].name, want[i].name);
    free(want);
    stats_pod_sample_clear(&s);

    /* Not ready: the counters are dropped, not read. */
    in.ready = false;
    stats_pod_sample(&in, &s);
    assert_false(s.has_net);
    stats_pod_sample_clear(&s);
    stats_pod_forget("p1");

    /* A namespace file that is not one: tried, no figures, no wait next time. */
    struct stats_pod_input bad = {.id = "p3", .ready = true, .netns_path = "/dev/null"};
    assert_true(stats_pod_pending(&bad));
    wait_first_figures();
    assert_false(stats_pod_pending(&bad));
    stats_pod_sample(&bad, &s);
    assert_false(s.has_net);
    stats_pod_sample_clear(&s);
}

static void test_waiter_without_work_and_cancel(void **state)
{
    /* Nothing being measured: the waiter fires on the next turn, not after its timeout. */
    int64_t t0 = now_monotonic_ns();
    wait_first_figures();
    assert_true(now_monotonic_ns() - t0 < 1000000000LL);
    int woken = 0;
    struct stats_waiter *w = stats_wait(0, on_ready, &woken);
    stats_waiter_cancel(w);
    struct loop_timer *t = loop_timer_new(on_safety, NULL);
    loop_timer_arm(t, 50);
    loop_run();
    loop_timer_free(t);
    assert_int_equal(woken, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_net_dev),
        cmocka_unit_test_setup_teardown(test_writable_layer_walk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pod_network_counters_through_a_passed_fd, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_waiter_without_work_and_cancel, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
