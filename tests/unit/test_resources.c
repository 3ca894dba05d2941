/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for pod/resources: how an update request merges into what a
 * container has (containerd's rule: fields left 0 keep their value), and a
 * pod's limits as resources + overhead.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "core/util.h"
#include "pod/resources.h"

#define MiB (1024LL * 1024)

static void free_res(Runtime__V1__LinuxContainerResources *r)
{
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void test_merge(void **state)
{
    Runtime__V1__LinuxContainerResources old = RUNTIME__V1__LINUX_CONTAINER_RESOURCES__INIT;
    old.cpu_shares = 512;
    old.cpu_quota = 20000;
    old.cpu_period = 100000;
    old.memory_limit_in_bytes = 64 * MiB;
    old.cpuset_cpus = (char *)"0-1";
    Runtime__V1__HugepageLimit h2 = RUNTIME__V1__HUGEPAGE_LIMIT__INIT;
    h2.page_size = (char *)"2MB";
    h2.limit = 2 * MiB;
    Runtime__V1__HugepageLimit *hold[] = {&h2};
    old.n_hugepage_limits = 1;
    old.hugepage_limits = hold;
    Runtime__V1__LinuxContainerResources__UnifiedEntry u1 =
        RUNTIME__V1__LINUX_CONTAINER_RESOURCES__UNIFIED_ENTRY__INIT;
    u1.key = (char *)"memory.high";
    u1.value = (char *)"1000";
    Runtime__V1__LinuxContainerResources__UnifiedEntry *uold[] = {&u1};
    old.n_unified = 1;
    old.unified = uold;

    Runtime__V1__LinuxContainerResources req = RUNTIME__V1__LINUX_CONTAINER_RESOURCES__INIT;
    req.memory_limit_in_bytes = 128 * MiB;
    req.cpu_quota = -1; /* "no quota" is a value, not "unset" */
    Runtime__V1__LinuxContainerResources__UnifiedEntry u2 =
        RUNTIME__V1__LINUX_CONTAINER_RESOURCES__UNIFIED_ENTRY__INIT;
    u2.key = (char *)"pids.max";
    u2.value = (char *)"50";
    Runtime__V1__LinuxContainerResources__UnifiedEntry *ureq[] = {&u2};
    req.n_unified = 1;
    req.unified = ureq;

    Runtime__V1__LinuxContainerResources *m = resources_merge(&old, &req);
    assert_int_equal(m->cpu_shares, 512);
    assert_int_equal(m->cpu_quota, -1);
    assert_int_equal(m->cpu_period, 100000);
    assert_int_equal(m->memory_limit_in_bytes, 128 * MiB);
    assert_string_equal(m->cpuset_cpus, "0-1");
    assert_int_equal(m->n_hugepage_limits, 1); /* kept: the request gave none */
    assert_int_equal(m->n_unified, 2);         /* maps merge by key */
    free_res(m);

    /* Hugepage limits given replace the old ones (not added to them). */
    Runtime__V1__HugepageLimit h1g = RUNTIME__V1__HUGEPAGE_LIMIT__INIT;
    h1g.page_size = (char *)"1GB";
    h1g.limit = 1024 * MiB;
    Runtime__V1__HugepageLimit *hreq[] = {&h1g};
    req.n_hugepage_limits = 1;
    req.hugepage_limits = hreq;
    m = resources_merge(&old, &req);
    assert_int_equal(m->n_hugepage_limits, 1);
    assert_string_equal(m->hugepage_limits[0]->page_size, "1GB");
    free_res(m);

    /* A copy of the request alone; the input is left as it was. */
    m = resources_merge(NULL, &old);
    assert_int_equal(m->cpu_shares, 512);
    assert_string_equal(m->unified[0]->value, "1000");
    free_res(m);
    assert_int_equal(old.cpu_quota, 20000);
}

static void test_pod_total(void **state)
{
    Runtime__V1__LinuxContainerResources res = RUNTIME__V1__LINUX_CONTAINER_RESOURCES__INIT;
    res.cpu_shares = 1024;
    res.cpu_quota = 100000;
    res.cpu_period = 100000;
    res.memory_limit_in_bytes = 256 * MiB;
    res.cpuset_cpus = (char *)"0";
    Runtime__V1__LinuxContainerResources over = RUNTIME__V1__LINUX_CONTAINER_RESOURCES__INIT;
    over.cpu_shares = 10;
    over.cpu_quota = 10000;
    over.cpu_period = 100000;
    over.memory_limit_in_bytes = 16 * MiB;
    over.cpuset_cpus = (char *)"1";
    Runtime__V1__LinuxContainerResources *t = resources_pod_total(&over, &res);
    assert_int_equal(t->cpu_shares, 1034);
    assert_int_equal(t->cpu_quota, 110000);
    assert_int_equal(t->cpu_period, 100000);
    assert_int_equal(t->memory_limit_in_bytes, 272 * MiB);
    assert_string_equal(t->cpuset_cpus, "0"); /* the pod's, not the overhead's */
    free_res(t);

    /* No limit stays no limit whatever the overhead. */
    res.memory_limit_in_bytes = 0;
    res.cpu_quota = -1;
    t = resources_pod_total(&over, &res);
    assert_int_equal(t->memory_limit_in_bytes, 0);
    assert_int_equal(t->cpu_quota, -1);
    free_res(t);
    t = resources_pod_total(NULL, &res);
    assert_int_equal(t->cpu_shares, 1024);
    free_res(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_pod_total),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
