/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for pod/runtime: the cgroup-layout check that decides whether
 * crun can run here (on mountinfo texts: hybrid with a controller only on
 * cgroup2, hybrid with everything on v1, pure v1, pure v2), and signal names.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "pod/runtime.h"

#define TMPFS "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
#define V1(n, ctl)                                                                                 \
    "3" #n " 31 0:3" #n " / /sys/fs/cgroup/" ctl " rw,relatime - cgroup cgroup rw," ctl "\n"
#define UNIFIED "42 31 0:42 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
#define SYSTEMD                                                                                    \
    "41 31 0:41 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"

static void test_hybrid_with_hugetlb_only_on_v2(void **state)
{
    const char *mi = TMPFS V1(2, "cpu") V1(3, "memory") V1(4, "pids") SYSTEMD UNIFIED;
    char *missing = runtime_hybrid_missing_controller(mi, "hugetlb\n");
    assert_non_null(missing);
    assert_string_equal(missing, "hugetlb");
    free(missing);
    /* The first one only on cgroup2 is named. */
    missing = runtime_hybrid_missing_controller(mi, "memory hugetlb rdma\n");
    assert_string_equal(missing, "hugetlb");
    free(missing);
}

static void test_hybrid_with_everything_on_v1(void **state)
{
    const char *mi = TMPFS V1(2, "cpu") V1(3, "hugetlb") SYSTEMD UNIFIED;
    /* A v1-bound controller is not listed by cgroup2 at all; an empty list is fine. */
    assert_null(runtime_hybrid_missing_controller(mi, ""));
    assert_null(runtime_hybrid_missing_controller(mi, "hugetlb\n"));
    /* "cpu" must match a whole option, not the prefix of "cpuacct". */
    const char *only_cpuacct = TMPFS V1(2, "cpuacct") UNIFIED;
    char *missing = runtime_hybrid_missing_controller(only_cpuacct, "cpu");
    assert_string_equal(missing, "cpu");
    free(missing);
}

static void test_not_hybrid(void **state)
{
    /* Pure v1: no cgroup2 at /sys/fs/cgroup/unified. */
    assert_null(runtime_hybrid_missing_controller(TMPFS V1(2, "cpu") SYSTEMD, "hugetlb"));
    /* Pure v2. */
    const char *v2 = "30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
    assert_null(runtime_hybrid_missing_controller(v2, "cpu memory hugetlb"));
    /* Unreadable inputs mean "cannot tell": no complaint. */
    assert_null(runtime_hybrid_missing_controller(NULL, "hugetlb"));
    assert_null(runtime_hybrid_missing_controller(TMPFS UNIFIED, NULL));
    /* Garbage lines are skipped. */
    assert_null(runtime_hybrid_missing_controller("x\n\n - -\n", "hugetlb"));
}

static void test_signal_names(void **state)
{
    assert_int_equal(runtime_signal_parse("SIGTERM"), SIGTERM);
    assert_int_equal(runtime_signal_parse("TERM"), SIGTERM);
    assert_int_equal(runtime_signal_parse("sigquit"), SIGQUIT);
    assert_int_equal(runtime_signal_parse("9"), SIGKILL);
    assert_int_equal(runtime_signal_parse("SIGRTMIN"), SIGRTMIN);
    assert_int_equal(runtime_signal_parse("SIGRTMIN+3"), SIGRTMIN + 3);
    assert_int_equal(runtime_signal_parse("RTMAX-1"), SIGRTMAX - 1);
    assert_int_equal(runtime_signal_parse("SIGNOPE"), -1);
    assert_int_equal(runtime_signal_parse(""), -1);
    assert_int_equal(runtime_signal_parse(NULL), -1);
    assert_int_equal(runtime_signal_parse("0"), -1);
    assert_int_equal(runtime_signal_parse("999"), -1);
    assert_int_equal(runtime_signal_parse("SIGRTMIN+99"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hybrid_with_hugetlb_only_on_v2),
        cmocka_unit_test(test_hybrid_with_everything_on_v1),
        cmocka_unit_test(test_not_hybrid),
        cmocka_unit_test(test_signal_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
