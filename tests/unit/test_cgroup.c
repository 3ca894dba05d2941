/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for pod/cgroup: the three layouts (cgroup v1 with cpu,cpuacct
 * co-mounted; v2 with systemd slices and scopes; this VM's hybrid one with
 * one v1 mount per controller and an empty cgroup2 at .../unified) read
 * from fixture trees in tests/unit/data/cgroup/<layout>/ (their mountinfo
 * names "@ROOT@", replaced by the fixture's directory), /proc/<pid>/cgroup
 * texts, systemd slice paths, the keyed-file parsers, the checks of CRI
 * limits and the writes planned for them (carried out on temporary files).
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
#include "core/util.h"
#include "pod/cgroup.h"

#define CID "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define MiB (1024ULL * 1024)

static char *fixture_path(const char *layout, const char *name)
{
    return xasprintf("%s/cgroup/%s/%s", TEST_DATA_DIR, layout, name);
}

static char *slurp(const char *layout, const char *name)
{
    _cleanup_free_ char *path = fixture_path(layout, name);
    _cleanup_error_ struct error *err = NULL;
    size_t len = 0;
    char *text = read_file_capped(path, 1 << 20, &len, &err);
    assert_non_null(text);
    return text;
}

/* The layout's mountinfo with @ROOT@ made the fixture's directory. */
static void load_layout(const char *layout, struct cgroup_layout *l)
{
    _cleanup_free_ char *mi = slurp(layout, "mountinfo");
    _cleanup_free_ char *root = xasprintf("%s/cgroup/%s", TEST_DATA_DIR, layout);
    struct buf b;
    buf_init(&b, 1 << 20);
    for (const char *p = mi; *p;) {
        const char *at = strstr(p, "@ROOT@");
        size_t n = at ? (size_t)(at - p) : strlen(p);
        assert_int_equal(buf_append(&b, p, n), 0);
        if (!at)
            break;
        assert_int_equal(buf_append(&b, root, strlen(root)), 0);
        p = at + strlen("@ROOT@");
    }
    _cleanup_free_ char *text = buf_take_str(&b, NULL);
    char *ctl_path = NULL;
    _cleanup_free_ char *ctl = NULL;
    struct cgroup_layout probe;
    _cleanup_error_ struct error *err = NULL;
    assert_int_equal(cgroup_layout_parse(text, NULL, &probe, &err), 0);
    if (probe.v2) {
        ctl_path = xasprintf("%s/cgroup.controllers", probe.v2);
        size_t len = 0;
        _cleanup_error_ struct error *cerr = NULL;
        ctl = read_file_capped(ctl_path, 4096, &len, &cerr);
        assert_non_null(ctl);
        free(ctl_path);
    }
    cgroup_layout_clear(&probe);
    assert_int_equal(cgroup_layout_parse(text, ctl, l, &err), 0);
}

static void load_paths(const char *layout, struct cgroup_paths *p)
{
    _cleanup_free_ char *text = slurp(layout, "proc-cgroup");
    _cleanup_error_ struct error *err = NULL;
    assert_int_equal(cgroup_paths_parse(text, p, &err), 0);
}

static bool ends_with(const char *s, const char *suffix)
{
    return s && str_has_suffix(s, suffix);
}

/* ---- layouts ---- */

static void test_layout_v1(void **state)
{
    struct cgroup_layout l;
    load_layout("v1", &l);
    assert_string_equal(cgroup_layout_kind(&l), "v1");
    assert_true(ends_with(l.v1[CGROUP_CPU], "/sys/fs/cgroup/cpu,cpuacct"));
    assert_true(ends_with(l.v1[CGROUP_CPUACCT], "/sys/fs/cgroup/cpu,cpuacct"));
    assert_true(ends_with(l.v1[CGROUP_MEMORY], "/sys/fs/cgroup/memory"));
    assert_true(ends_with(l.v1[CGROUP_HUGETLB], "/sys/fs/cgroup/hugetlb"));
    assert_string_equal(l.v1_root[CGROUP_MEMORY], "/");
    assert_null(l.v2);
    cgroup_layout_clear(&l);
}

static void test_layout_v2(void **state)
{
    struct cgroup_layout l;
    load_layout("v2", &l);
    assert_string_equal(cgroup_layout_kind(&l), "v2");
    for (int c = 0; c < CGROUP_N; c++)
        assert_null(l.v1[c]);
    assert_true(ends_with(l.v2, "/sys/fs/cgroup"));
    /* cpu on cgroup2 stands for cpuacct too; io, rdma and misc are not ours. */
    unsigned want = 1u << CGROUP_CPU | 1u << CGROUP_CPUACCT | 1u << CGROUP_CPUSET |
                    1u << CGROUP_MEMORY | 1u << CGROUP_PIDS | 1u << CGROUP_HUGETLB;
    assert_int_equal(l.v2_controllers, want);
    cgroup_layout_clear(&l);
}

static void test_layout_hybrid(void **state)
{
    struct cgroup_layout l;
    load_layout("hybrid", &l);
    assert_string_equal(cgroup_layout_kind(&l), "hybrid");
    assert_true(ends_with(l.v1[CGROUP_CPU], "/sys/fs/cgroup/cpu"));
    assert_true(ends_with(l.v1[CGROUP_CPUACCT], "/sys/fs/cgroup/cpuacct"));
    assert_true(ends_with(l.v2, "/sys/fs/cgroup/unified"));
    assert_int_equal(l.v2_controllers, 0);
    cgroup_layout_clear(&l);
}

static void test_layout_edge_cases(void **state)
{
    struct cgroup_layout l;
    _cleanup_error_ struct error *err = NULL;
    /* No cgroup at all. */
    assert_int_equal(cgroup_layout_parse("22 28 0:20 / /sys rw - sysfs sysfs rw\n", NULL, &l, &err),
                     -1);
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    /* A mount of part of a hierarchy (a container's view) loses to the whole one; escapes. */
    const char *mi = "1 0 0:1 /kubepods /a rw - cgroup cgroup rw,memory\n"
                     "2 0 0:1 / /sys/fs/cgroup/mem\\040ory rw - cgroup cgroup rw,memory\n"
                     "3 0 0:1 /sub /b rw - cgroup cgroup rw,pids\n";
    assert_int_equal(cgroup_layout_parse(mi, NULL, &l, &err), 0);
    assert_string_equal(l.v1[CGROUP_MEMORY], "/sys/fs/cgroup/mem ory");
    assert_string_equal(l.v1_root[CGROUP_PIDS], "/sub");
    struct cgroup_paths p;
    cgroup_paths_same("/sub/x", &p);
    _cleanup_free_ char *pids = cgroup_dir(&l, &p, CGROUP_PIDS);
    assert_string_equal(pids, "/b/x");
    cgroup_paths_clear(&p);
    /* Outside the mount's root, or with "..": no directory. */
    cgroup_paths_same("/other/x", &p);
    assert_null(cgroup_dir(&l, &p, CGROUP_PIDS));
    cgroup_paths_clear(&p);
    cgroup_paths_same("/sub/../../etc", &p);
    assert_null(cgroup_dir(&l, &p, CGROUP_PIDS));
    assert_null(cgroup_dir(&l, &p, CGROUP_MEMORY));
    cgroup_paths_clear(&p);
    cgroup_layout_clear(&l);
}

/* ---- paths ---- */

static void test_proc_cgroup_paths(void **state)
{
    struct cgroup_paths p;
    load_paths("v1", &p);
    const char *want = "/kubepods/burstable/pod1234/" CID;
    assert_string_equal(p.v1[CGROUP_CPU], want);
    assert_string_equal(p.v1[CGROUP_CPUACCT], want);
    assert_string_equal(p.v1[CGROUP_MEMORY], want);
    assert_null(p.v2);
    cgroup_paths_clear(&p);

    load_paths("v2", &p);
    assert_null(p.v1[CGROUP_MEMORY]);
    assert_true(ends_with(p.v2, "/cri-containerd-" CID ".scope"));
    cgroup_paths_clear(&p);

    _cleanup_error_ struct error *err = NULL;
    assert_int_equal(cgroup_paths_parse("garbage\n1:name=systemd:/x\n", &p, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
}

static void test_systemd_paths(void **state)
{
    const char *cases[][2] = {
        {"-.slice", "/"},
        {"system.slice", "/system.slice"},
        {"kubepods.slice", "/kubepods.slice"},
        {"kubepods-burstable-pod1.slice",
         "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        _cleanup_free_ char *p = cgroup_systemd_slice_path(cases[i][0]);
        assert_non_null(p);
        assert_string_equal(p, cases[i][1]);
    }
    const char *bad[] = {
        "kubepods", "-kubepods.slice", "kube--pods.slice", "kubepods-.slice", "a/b.slice", ".slice",
        ""};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        assert_null(cgroup_systemd_slice_path(bad[i]));

    _cleanup_free_ char *scope =
        cgroup_path_from_oci("kubepods-besteffort-pod9.slice:tinycri:" CID, true);
    assert_string_equal(scope, "/kubepods.slice/kubepods-besteffort.slice/"
                               "kubepods-besteffort-pod9.slice/tinycri-" CID ".scope");
    _cleanup_free_ char *dflt = cgroup_path_from_oci(":tinycri:x", true);
    assert_string_equal(dflt, "/system.slice/tinycri-x.scope");
    _cleanup_free_ char *plain = cgroup_path_from_oci("/tinycri/" CID, false);
    assert_string_equal(plain, "/tinycri/" CID);
    _cleanup_free_ char *relative = cgroup_path_from_oci("tinycri/x", false);
    assert_string_equal(relative, "/tinycri/x");
    assert_null(cgroup_path_from_oci("no-colons", true));
    assert_null(cgroup_path_from_oci("a:b:c:d", true));
    assert_null(cgroup_path_from_oci("", false));
}

/* ---- reading ---- */

static void test_stats_v1(void **state)
{
    struct cgroup_layout l;
    struct cgroup_paths p;
    load_layout("v1", &l);
    load_paths("v1", &p);
    struct cgroup_stats s;
    _cleanup_error_ struct error *err = NULL;
    assert_int_equal(cgroup_stats_read(&l, &p, true, &s, &err), 0);
    assert_int_equal(s.have, CGROUP_HAVE_CPU | CGROUP_HAVE_THROTTLE | CGROUP_HAVE_MEMORY |
                                 CGROUP_HAVE_SWAP | CGROUP_HAVE_PIDS | CGROUP_HAVE_DETAIL);
    assert_int_equal(s.cpu_usage_ns, 3500000000ULL);
    assert_int_equal(s.cpu_user_ns, 2500000000ULL);
    assert_int_equal(s.cpu_system_ns, 1000000000ULL);
    assert_int_equal(s.cpu_periods, 120);
    assert_int_equal(s.cpu_throttled_periods, 7);
    assert_int_equal(s.cpu_throttled_ns, 350000000ULL);
    assert_int_equal(s.mem_usage, 70 * MiB);
    assert_int_equal(s.mem_working_set, 60 * MiB); /* usage - total_inactive_file */
    assert_int_equal(s.mem_rss, 48 * MiB);
    assert_int_equal(s.mem_cache, 20 * MiB);
    assert_int_equal(s.mem_mapped_file, 4 * MiB);
    assert_int_equal(s.mem_limit, 128 * MiB);
    assert_int_equal(s.mem_max_usage, 80000000);
    assert_int_equal(s.mem_failcnt, 3);
    assert_int_equal(s.mem_kernel, MiB);
    assert_int_equal(s.pgfault, 25000);
    assert_int_equal(s.pgmajfault, 12);
    /* memsw counts memory too: swap = memsw - memory, its limit memsw - memory's. */
    assert_int_equal(s.swap_usage, 2 * MiB);
    assert_int_equal(s.swap_limit, 128 * MiB);
    assert_int_equal(s.pids_current, 4);
    assert_true(s.pids_max == CGROUP_UNLIMITED);

    /* The pod's own cgroup: 2^63 rounded to a page means no limit; no CPU files there. */
    struct cgroup_paths pod;
    cgroup_paths_same("/kubepods/burstable/pod1234", &pod);
    assert_int_equal(cgroup_stats_read(&l, &pod, true, &s, &err), 0);
    assert_int_equal(s.have, CGROUP_HAVE_MEMORY | CGROUP_HAVE_DETAIL);
    assert_true(s.mem_limit == CGROUP_UNLIMITED);
    assert_int_equal(s.mem_working_set, 60 * MiB);
    cgroup_paths_clear(&pod);

    /* Without detail: what the stats RPCs carry, and no more files read. */
    assert_int_equal(cgroup_stats_read(&l, &p, false, &s, &err), 0);
    assert_int_equal(s.have,
                     CGROUP_HAVE_CPU | CGROUP_HAVE_MEMORY | CGROUP_HAVE_SWAP | CGROUP_HAVE_PIDS);
    assert_int_equal(s.cpu_usage_ns, 3500000000ULL);
    assert_int_equal(s.mem_working_set, 60 * MiB);
    assert_int_equal(s.swap_usage, 2 * MiB);
    assert_int_equal(s.cpu_user_ns, 0);
    assert_int_equal(s.mem_max_usage, 0);
    assert_int_equal(s.pids_current, 4);

    /* A cgroup that is gone. */
    cgroup_paths_same("/kubepods/gone", &pod);
    assert_int_equal(cgroup_stats_read(&l, &pod, true, &s, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_NOT_FOUND);
    cgroup_paths_clear(&pod);
    cgroup_paths_clear(&p);
    cgroup_layout_clear(&l);
}

static void test_stats_v2(void **state)
{
    struct cgroup_layout l;
    struct cgroup_paths p;
    load_layout("v2", &l);
    load_paths("v2", &p);
    struct cgroup_stats s;
    _cleanup_error_ struct error *err = NULL;
    assert_int_equal(cgroup_stats_read(&l, &p, true, &s, &err), 0);
    assert_int_equal(s.have, CGROUP_HAVE_CPU | CGROUP_HAVE_THROTTLE | CGROUP_HAVE_MEMORY |
                                 CGROUP_HAVE_SWAP | CGROUP_HAVE_PIDS | CGROUP_HAVE_DETAIL);
    assert_int_equal(s.cpu_usage_ns, 4200000000ULL);
    assert_int_equal(s.cpu_user_ns, 3000000000ULL);
    assert_int_equal(s.cpu_system_ns, 1200000000ULL);
    assert_int_equal(s.cpu_periods, 50);
    assert_int_equal(s.cpu_throttled_periods, 5);
    assert_int_equal(s.cpu_throttled_ns, 250000000ULL);
    assert_int_equal(s.mem_usage, 60 * MiB);
    assert_int_equal(s.mem_working_set, 52 * MiB); /* memory.current - inactive_file */
    assert_int_equal(s.mem_rss, 40 * MiB);         /* anon */
    assert_int_equal(s.mem_cache, 16 * MiB);       /* file */
    assert_int_equal(s.mem_mapped_file, 3 * MiB);
    assert_int_equal(s.mem_kernel, 2 * MiB);
    assert_true(s.mem_limit == CGROUP_UNLIMITED); /* "max" */
    assert_int_equal(s.mem_max_usage, 70000000);
    assert_int_equal(s.mem_failcnt, 9); /* memory.events "max" */
    assert_int_equal(s.pgfault, 30000);
    assert_int_equal(s.pgmajfault, 20);
    assert_int_equal(s.swap_usage, MiB);
    assert_true(s.swap_limit == CGROUP_UNLIMITED);
    assert_int_equal(s.pids_current, 2);
    assert_int_equal(s.pids_max, 1024);
    cgroup_paths_clear(&p);
    cgroup_layout_clear(&l);
}

static void test_stats_hybrid(void **state)
{
    struct cgroup_layout l;
    struct cgroup_paths p;
    load_layout("hybrid", &l);
    load_paths("hybrid", &p);
    struct cgroup_stats s;
    _cleanup_error_ struct error *err = NULL;
    assert_int_equal(cgroup_stats_read(&l, &p, true, &s, &err), 0);
    /* cpuacct is on v1: cgroup2's cpu.stat (always there) must not win. */
    assert_int_equal(s.cpu_usage_ns, 1000000000ULL);
    /* No usage_user/usage_sys: cpuacct.stat's USER_HZ ticks. */
    long hz = sysconf(_SC_CLK_TCK);
    assert_int_equal(s.cpu_user_ns, 60 * (1000000000ULL / (uint64_t)hz));
    assert_int_equal(s.cpu_system_ns, 40 * (1000000000ULL / (uint64_t)hz));
    assert_int_equal(s.mem_usage, 10 * MiB);
    assert_int_equal(s.mem_working_set, 8 * MiB);
    assert_true(s.mem_limit == CGROUP_UNLIMITED);
    /* No memsw files: no swap figures. */
    assert_false(s.have & CGROUP_HAVE_SWAP);
    assert_int_equal(s.pids_current, 1);
    cgroup_paths_clear(&p);
    cgroup_layout_clear(&l);
}

static void test_stats_add(void **state)
{
    struct cgroup_stats a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    b.have = CGROUP_HAVE_CPU | CGROUP_HAVE_MEMORY | CGROUP_HAVE_PIDS;
    b.cpu_usage_ns = 10;
    b.mem_usage = 100;
    b.mem_working_set = 90;
    b.mem_limit = 1000;
    b.pids_current = 2;
    b.pids_max = CGROUP_UNLIMITED;
    cgroup_stats_add(&a, &b);
    cgroup_stats_add(&a, &b);
    assert_int_equal(a.have, b.have);
    assert_int_equal(a.cpu_usage_ns, 20);
    assert_int_equal(a.mem_working_set, 180);
    assert_int_equal(a.mem_limit, 2000);
    assert_int_equal(a.pids_current, 4);
    assert_true(a.pids_max == CGROUP_UNLIMITED);
    b.mem_limit = CGROUP_UNLIMITED;
    cgroup_stats_add(&a, &b);
    assert_true(a.mem_limit == CGROUP_UNLIMITED);
}

static void test_parsers(void **state)
{
    uint64_t v = 0;
    const char *text = "cache 1\nrss 2\ntotal_rss 3\nrss_huge 4\n";
    assert_true(cgroup_parse_keyed(text, "rss", &v));
    assert_int_equal(v, 2);
    assert_true(cgroup_parse_keyed(text, "total_rss", &v));
    assert_int_equal(v, 3);
    assert_false(cgroup_parse_keyed(text, "total", &v));
    assert_false(cgroup_parse_keyed(text, "swap", &v));
    assert_false(cgroup_parse_keyed("rss x\n", "rss", &v));
    assert_true(cgroup_parse_number("max\n", &v));
    assert_true(v == CGROUP_UNLIMITED);
    assert_true(cgroup_parse_number("-1\n", &v));
    assert_true(v == CGROUP_UNLIMITED);
    assert_true(cgroup_parse_number("9223372036854771712\n", &v));
    assert_true(v == CGROUP_UNLIMITED);
    assert_true(cgroup_parse_number("4096\n", &v));
    assert_int_equal(v, 4096);
    assert_false(cgroup_parse_number("", &v));
    assert_false(cgroup_parse_number("12abc", &v));
    assert_false(cgroup_parse_number("-7", &v));
}

/* ---- limits ---- */

static Runtime__V1__LinuxContainerResources res_init(void)
{
    Runtime__V1__LinuxContainerResources r = RUNTIME__V1__LINUX_CONTAINER_RESOURCES__INIT;
    return r;
}

static void expect_invalid(const Runtime__V1__LinuxContainerResources *r, const char *word)
{
    _cleanup_error_ struct error *err = NULL;
    assert_int_equal(cgroup_resources_check(r, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    if (!strstr(err->msg, word))
        fail_msg("\"%s\" does not name %s", err->msg, word);
}

static void test_resources_check(void **state)
{
    _cleanup_error_ struct error *err = NULL;
    assert_int_equal(cgroup_resources_check(NULL, &err), 0);
    Runtime__V1__LinuxContainerResources r = res_init();
    assert_int_equal(cgroup_resources_check(&r, &err), 0);
    r.cpu_shares = 2;
    r.cpu_period = 100000;
    r.cpu_quota = -1;
    r.memory_limit_in_bytes = 64 * MiB;
    r.memory_swap_limit_in_bytes = -1;
    r.cpuset_cpus = (char *)"0-3,5";
    r.cpuset_mems = (char *)"0";
    assert_int_equal(cgroup_resources_check(&r, &err), 0);

    r = res_init();
    r.cpu_shares = 1;
    expect_invalid(&r, "cpu_shares");
    r = res_init();
    r.cpu_shares = 262145;
    expect_invalid(&r, "cpu_shares");
    r = res_init();
    r.cpu_period = 999;
    expect_invalid(&r, "cpu_period");
    r = res_init();
    r.cpu_quota = 999;
    expect_invalid(&r, "cpu_quota");
    r = res_init();
    r.memory_limit_in_bytes = -1;
    expect_invalid(&r, "memory_limit_in_bytes");
    r = res_init();
    r.memory_limit_in_bytes = 64 * MiB;
    r.memory_swap_limit_in_bytes = 32 * MiB;
    expect_invalid(&r, "memory_swap_limit_in_bytes");
    r = res_init();
    r.memory_swap_limit_in_bytes = 32 * MiB;
    expect_invalid(&r, "needs memory_limit_in_bytes");
    const char *bad_sets[] = {"", "a", "1-", "-1", "3-1", "1,,2", "1 2", "70000"};
    for (size_t i = 1; i < ARRAY_SIZE(bad_sets); i++) {
        r = res_init();
        r.cpuset_cpus = (char *)bad_sets[i];
        expect_invalid(&r, "cpuset_cpus");
    }
    Runtime__V1__HugepageLimit hp = RUNTIME__V1__HUGEPAGE_LIMIT__INIT;
    Runtime__V1__HugepageLimit *hps[] = {&hp};
    hp.page_size = (char *)"2QB";
    r = res_init();
    r.n_hugepage_limits = 1;
    r.hugepage_limits = hps;
    expect_invalid(&r, "hugepage_limits");
    Runtime__V1__LinuxContainerResources__UnifiedEntry u =
        RUNTIME__V1__LINUX_CONTAINER_RESOURCES__UNIFIED_ENTRY__INIT;
    Runtime__V1__LinuxContainerResources__UnifiedEntry *us[] = {&u};
    const char *bad_keys[] = {"memory", "../x.y", "memory.high/x", ".memory", "Memory.high"};
    for (size_t i = 0; i < ARRAY_SIZE(bad_keys); i++) {
        r = res_init();
        u.key = (char *)bad_keys[i];
        u.value = (char *)"1";
        r.n_unified = 1;
        r.unified = us;
        expect_invalid(&r, "unified");
    }
    u.key = (char *)"memory.high";
    u.value = (char *)"1\nmemory.max";
    expect_invalid(&r, "unified");
}

static void test_hugepage_size(void **state)
{
    assert_int_equal(cgroup_hugepage_size("2MB"), 2 * MiB);
    assert_int_equal(cgroup_hugepage_size("1GB"), 1024 * MiB);
    assert_int_equal(cgroup_hugepage_size("64KB"), 64 * 1024);
    assert_int_equal(cgroup_hugepage_size("2mb"), 0);
    assert_int_equal(cgroup_hugepage_size("MB"), 0);
    assert_int_equal(cgroup_hugepage_size("0MB"), 0);
    assert_int_equal(cgroup_hugepage_size(NULL), 0);
}

static const char *plan_value(const struct cgroup_plan *plan, const char *file)
{
    for (size_t i = 0; i < plan->n; i++)
        if (str_has_suffix(plan->writes[i].path, file))
            return plan->writes[i].value;
    return NULL;
}

static void test_plan_v1(void **state)
{
    struct cgroup_layout l;
    load_layout("v1", &l);
    struct cgroup_paths p;
    cgroup_paths_same("/kubepods/burstable/pod1234/" CID, &p);
    Runtime__V1__LinuxContainerResources r = res_init();
    r.cpu_shares = 512;
    r.cpu_quota = 50000;
    r.cpu_period = 100000;
    r.memory_limit_in_bytes = 128 * MiB;
    r.cpuset_cpus = (char *)"0-1";
    Runtime__V1__HugepageLimit hp = RUNTIME__V1__HUGEPAGE_LIMIT__INIT;
    Runtime__V1__HugepageLimit *hps[] = {&hp};
    hp.page_size = (char *)"2MB";
    hp.limit = 4 * MiB;
    r.n_hugepage_limits = 1;
    r.hugepage_limits = hps;
    struct cgroup_plan plan;
    _cleanup_error_ struct error *err = NULL;
    assert_int_equal(cgroup_plan_resources(&l, &p, &r, &plan, &err), 0);
    assert_string_equal(
        plan_value(&plan, "/cpu,cpuacct/kubepods/burstable/pod1234/" CID "/cpu.shares"), "512");
    assert_string_equal(plan_value(&plan, "/cpu.cfs_period_us"), "100000");
    assert_string_equal(plan_value(&plan, "/cpu.cfs_quota_us"), "50000");
    assert_string_equal(plan_value(&plan, "/cpuset.cpus"), "0-1");
    assert_string_equal(plan_value(&plan, "/memory.limit_in_bytes"), "134217728");
    /* The fixture has memsw: memory+swap = memory, no swap unless asked for. */
    assert_string_equal(plan_value(&plan, "/memory.memsw.limit_in_bytes"), "134217728");
    assert_string_equal(plan_value(&plan, "/hugetlb.2MB.limit_in_bytes"), "4194304");
    assert_null(plan_value(&plan, "/cpuset.mems"));
    cgroup_plan_clear(&plan);

    /* unified keys need cgroup2, which this layout has not. */
    Runtime__V1__LinuxContainerResources__UnifiedEntry u =
        RUNTIME__V1__LINUX_CONTAINER_RESOURCES__UNIFIED_ENTRY__INIT;
    Runtime__V1__LinuxContainerResources__UnifiedEntry *us[] = {&u};
    u.key = (char *)"memory.high";
    u.value = (char *)"1000000";
    r = res_init();
    r.n_unified = 1;
    r.unified = us;
    assert_int_equal(cgroup_plan_resources(&l, &p, &r, &plan, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_FAILED_PRECONDITION);
    cgroup_paths_clear(&p);
    cgroup_layout_clear(&l);
}

static void test_plan_v2(void **state)
{
    struct cgroup_layout l;
    load_layout("v2", &l);
    struct cgroup_paths p;
    load_paths("v2", &p);
    Runtime__V1__LinuxContainerResources r = res_init();
    r.cpu_shares = 1024;
    r.cpu_quota = 50000;
    r.memory_limit_in_bytes = 128 * MiB;
    r.memory_swap_limit_in_bytes = 192 * MiB;
    Runtime__V1__LinuxContainerResources__UnifiedEntry u =
        RUNTIME__V1__LINUX_CONTAINER_RESOURCES__UNIFIED_ENTRY__INIT;
    Runtime__V1__LinuxContainerResources__UnifiedEntry *us[] = {&u};
    u.key = (char *)"memory.high";
    u.value = (char *)"100000000";
    r.n_unified = 1;
    r.unified = us;
    struct cgroup_plan plan;
    _cleanup_error_ struct error *err = NULL;
    assert_int_equal(cgroup_plan_resources(&l, &p, &r, &plan, &err), 0);
    /* shares 1024 is weight 1 + (1022 * 9999) / 262142 = 39 */
    assert_string_equal(plan_value(&plan, "/cpu.weight"), "39");
    assert_string_equal(plan_value(&plan, "/cpu.max"), "50000 100000");
    assert_string_equal(plan_value(&plan, "/memory.max"), "134217728");
    assert_string_equal(plan_value(&plan, "/memory.high"), "100000000");
    /* cgroup2 counts swap apart: memory+swap 192 MiB is 64 MiB of swap. */
    assert_string_equal(plan_value(&plan, "/memory.swap.max"), "67108864");
    cgroup_plan_clear(&plan);
    cgroup_paths_clear(&p);
    cgroup_layout_clear(&l);
}

static void test_write_plan(void **state)
{
    char dir[] = "/tmp/tc-cgroup-XXXXXX";
    assert_non_null(mkdtemp(dir));
    _cleanup_free_ char *a = xasprintf("%s/a", dir);
    _cleanup_free_ char *b = xasprintf("%s/b", dir);
    int fd = open(a, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    struct cgroup_write writes[] = {
        {a, (char *)"123", false}, {b, (char *)"456", true}, /* missing: fails on both passes */
    };
    struct cgroup_plan plan = {writes, 1};
    char msg[256];
    assert_int_equal(cgroup_write_plan(&plan, msg, sizeof(msg)), 0);
    _cleanup_error_ struct error *err = NULL;
    size_t len = 0;
    _cleanup_free_ char *got = read_file_capped(a, 64, &len, &err);
    assert_string_equal(got, "123");
    plan.n = 2;
    assert_int_equal(cgroup_write_plan(&plan, msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "/b = 456: No such file or directory"));
    unlink(a);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_v1),         cmocka_unit_test(test_layout_v2),
        cmocka_unit_test(test_layout_hybrid),     cmocka_unit_test(test_layout_edge_cases),
        cmocka_unit_test(test_proc_cgroup_paths), cmocka_unit_test(test_systemd_paths),
        cmocka_unit_test(test_stats_v1),          cmocka_unit_test(test_stats_v2),
        cmocka_unit_test(test_stats_hybrid),      cmocka_unit_test(test_stats_add),
        cmocka_unit_test(test_parsers),           cmocka_unit_test(test_resources_check),
        cmocka_unit_test(test_hugepage_size),     cmocka_unit_test(test_plan_v1),
        cmocka_unit_test(test_plan_v2),           cmocka_unit_test(test_write_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
