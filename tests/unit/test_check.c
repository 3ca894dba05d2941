/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for the host checks of tinycrid --check-config that read kernel
 * texts: the cgroup layout (v2, v1, hybrid, none; missing controllers; the
 * systemd driver without systemd) and whether overlayfs is there. The
 * conformance suite runs the whole command against real hosts' files.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "check.h"
#include "core/util.h"

#define V2_ROOT "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
#define V1(id, name)                                                                               \
    id " 31 0:" id " / /sys/fs/cgroup/" name " rw,relatime - cgroup cgroup rw," name "\n"
#define V1_TMPFS "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
#define V1_ALL                                                                                     \
    V1_TMPFS V1("32", "cpu") V1("33", "cpuacct") V1("34", "cpuset") V1("35", "memory")             \
        V1("36", "devices") V1("37", "freezer") V1("38", "pids")
#define UNIFIED "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"

/* Run check_cgroups; the lines it wrote go to *text (owned). */
static size_t run(const char *mountinfo, const char *controllers, enum cgroup_driver driver,
                  bool systemd, const char **layout, char **text)
{
    size_t len = 0;
    FILE *f = open_memstream(text, &len);
    assert_non_null(f);
    size_t n = check_cgroups(mountinfo, controllers, driver, systemd, layout, f);
    fclose(f);
    return n;
}

static void test_v2(void **state)
{
    _cleanup_free_ char *out = NULL;
    const char *layout = NULL;
    assert_int_equal(run(V2_ROOT, "cpuset cpu io memory hugetlb pids rdma\n",
                         CGROUP_DRIVER_CGROUPFS, false, &layout, &out),
                     0);
    assert_string_equal(layout, "v2");
    assert_string_equal(out, "");
}

static void test_v2_missing_controller(void **state)
{
    _cleanup_free_ char *out = NULL;
    assert_int_equal(run(V2_ROOT, "cpuset cpu io\n", CGROUP_DRIVER_CGROUPFS, false, NULL, &out), 2);
    assert_non_null(strstr(out, "cgroups: the cgroup v2 controller memory is not enabled"));
    assert_non_null(strstr(out, "cgroups: the cgroup v2 controller pids is not enabled"));
    /* a prefix of a name is not the name */
    _cleanup_free_ char *out2 = NULL;
    assert_int_equal(
        run(V2_ROOT, "cpuset cpu memoryx pids", CGROUP_DRIVER_CGROUPFS, false, NULL, &out2), 1);
    _cleanup_free_ char *out3 = NULL;
    assert_int_equal(run(V2_ROOT, NULL, CGROUP_DRIVER_CGROUPFS, false, NULL, &out3), 4);
    assert_non_null(strstr(out3, "cgroup.controllers is unreadable"));
}

static void test_v1_and_hybrid(void **state)
{
    _cleanup_free_ char *out = NULL;
    const char *layout = NULL;
    assert_int_equal(run(V1_ALL, NULL, CGROUP_DRIVER_CGROUPFS, false, &layout, &out), 0);
    assert_string_equal(layout, "v1");
    _cleanup_free_ char *out2 = NULL;
    assert_int_equal(run(V1_ALL UNIFIED, NULL, CGROUP_DRIVER_CGROUPFS, false, &layout, &out2), 0);
    assert_string_equal(layout, "hybrid");
    /* controllers co-mounted on one hierarchy count too */
    _cleanup_free_ char *out3 = NULL;
    const char *comounted = V1_TMPFS
        "32 31 0:32 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n" V1("34",
                                                                                         "cpuset")
            V1("35", "memory") V1("36", "devices") V1("37", "freezer") V1("38", "pids");
    assert_int_equal(run(comounted, NULL, CGROUP_DRIVER_CGROUPFS, false, NULL, &out3), 0);
}

static void test_v1_missing_controller(void **state)
{
    _cleanup_free_ char *out = NULL;
    const char *partial = V1_TMPFS V1("32", "cpu") V1("33", "cpuacct") V1("34", "cpuset")
        V1("35", "memory") V1("36", "devices") V1("37", "freezer");
    assert_int_equal(run(partial, NULL, CGROUP_DRIVER_CGROUPFS, false, NULL, &out), 1);
    assert_string_equal(
        out, "cgroups: the cgroup v1 controller pids is not mounted under /sys/fs/cgroup\n");
}

static void test_no_cgroups(void **state)
{
    _cleanup_free_ char *out = NULL;
    const char *layout = NULL;
    const char *none = "22 1 0:21 / /proc rw - proc proc rw\n" V1_TMPFS;
    assert_int_equal(run(none, NULL, CGROUP_DRIVER_CGROUPFS, false, &layout, &out), 1);
    assert_string_equal(layout, "none");
    assert_non_null(strstr(out, "cgroups: no cgroup filesystem is mounted at /sys/fs/cgroup"));
    /* v1 hierarchies elsewhere do not count */
    _cleanup_free_ char *out2 = NULL;
    assert_int_equal(run("40 1 0:40 / /mnt/cg rw - cgroup cgroup rw,memory\n", NULL,
                         CGROUP_DRIVER_CGROUPFS, false, NULL, &out2),
                     1);
    _cleanup_free_ char *out3 = NULL;
    assert_int_equal(run(NULL, NULL, CGROUP_DRIVER_CGROUPFS, false, NULL, &out3), 1);
}

static void test_systemd_driver(void **state)
{
    _cleanup_free_ char *out = NULL;
    assert_int_equal(run(V1_ALL, NULL, CGROUP_DRIVER_SYSTEMD, false, NULL, &out), 1);
    assert_non_null(strstr(out, "cgroups: cgroup_driver = systemd, but systemd is not the init"));
    _cleanup_free_ char *out2 = NULL;
    assert_int_equal(run(V1_ALL, NULL, CGROUP_DRIVER_SYSTEMD, true, NULL, &out2), 0);
}

static void test_overlay(void **state)
{
    assert_true(check_has_overlay("nodev\tsysfs\nnodev\ttmpfs\nnodev\toverlay\n", NULL));
    assert_false(check_has_overlay("nodev\tsysfs\nnodev\toverlayx\n", NULL));
    assert_false(check_has_overlay("nodev\tsysfs\n", "\nkernel/fs/ext4/ext4.ko\n"));
    assert_true(check_has_overlay("nodev\tsysfs\n", "\nkernel/fs/overlayfs/overlay.ko:\n"));
    assert_true(check_has_overlay(NULL, "\nkernel/fs/overlayfs/overlay.ko\n"));
    assert_false(check_has_overlay(NULL, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v2),
        cmocka_unit_test(test_v2_missing_controller),
        cmocka_unit_test(test_v1_and_hybrid),
        cmocka_unit_test(test_v1_missing_controller),
        cmocka_unit_test(test_no_cgroups),
        cmocka_unit_test(test_systemd_driver),
        cmocka_unit_test(test_overlay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
