/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for cri/metrics (the cAdvisor metric table and the samples to
 * metrics conversion) and cri/list_reply's chunk planning.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "cri/list_reply.h"
#include "cri/metrics.h"
#include "pod/stats.h"

static const char *const BASE[] = {"container", "id", "image", "name", "namespace", "pod"};

static void test_table(void **state)
{
    const Runtime__V1__ListMetricDescriptorsResponse *r = metrics_descriptors();
    assert_int_equal(r->n_descriptors, METRIC_N);
    for (size_t i = 0; i < METRIC_N; i++) {
        const Runtime__V1__MetricDescriptor *d = r->descriptors[i];
        const struct metric_desc *t = metric_desc_get((enum metric_id)i);
        assert_string_equal(d->name, t->name);
        assert_true(str_has_prefix(d->name, "container_"));
        assert_true(strlen(d->help) > 10);
        /* Counters, and only counters, are "_total" (a Prometheus rule cAdvisor keeps, but
         * for container_memory_failcnt). */
        bool total = str_has_suffix(d->name, "_total");
        if (i != METRIC_MEMORY_FAILCNT && (t->type == RUNTIME__V1__METRIC_TYPE__COUNTER) != total)
            fail_msg("%s is a %s", d->name,
                     t->type == RUNTIME__V1__METRIC_TYPE__COUNTER ? "counter" : "gauge");
        assert_true(d->n_label_keys >= ARRAY_SIZE(BASE) && d->n_label_keys <= METRIC_MAX_LABELS);
        for (size_t k = 0; k < ARRAY_SIZE(BASE); k++)
            assert_string_equal(d->label_keys[k], BASE[k]);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(d->name, r->descriptors[j]->name);
    }
    assert_null(metric_desc_get(METRIC_N));
    assert_string_equal(metric_desc_get(METRIC_CPU_USAGE)->name,
                        "container_cpu_usage_seconds_total");
    assert_string_equal(metric_desc_get(METRIC_MEMORY_WORKING_SET)->help,
                        "Current working set in bytes.");
}

static const Runtime__V1__Metric *find(const struct metric_set *set, const char *name,
                                       const char *last_label)
{
    for (size_t i = 0; i < set->n; i++) {
        const Runtime__V1__Metric *m = set->ptrs[i];
        if (strcmp(m->name, name) == 0 &&
            (!last_label || strcmp(m->label_values[m->n_label_values - 1], last_label) == 0))
            return m;
    }
    return NULL;
}

static size_t keys_of(const char *name)
{
    const Runtime__V1__ListMetricDescriptorsResponse *r = metrics_descriptors();
    for (size_t i = 0; i < r->n_descriptors; i++)
        if (strcmp(r->descriptors[i]->name, name) == 0)
            return r->descriptors[i]->n_label_keys;
    fail_msg("no descriptor %s", name);
    return 0;
}

static void test_container_metrics(void **state)
{
    struct stats_ctr_sample s;
    memset(&s, 0, sizeof(s));
    s.has_cgroup = true;
    s.cg.have = CGROUP_HAVE_CPU | CGROUP_HAVE_THROTTLE | CGROUP_HAVE_MEMORY | CGROUP_HAVE_SWAP |
                CGROUP_HAVE_PIDS;
    s.cg.cpu_usage_ns = 7900000000ULL; /* 7.9 s: whole seconds in a UInt64Value */
    s.cg.cpu_throttled_ns = 2000000000ULL;
    s.cg.mem_working_set = 12345;
    s.cg.mem_limit = CGROUP_UNLIMITED;
    s.cg.pgfault = 100;
    s.cg.pgmajfault = 3;
    s.cg.swap_usage = 4096;
    s.cg.pids_current = 5;
    s.has_fs = true;
    s.fs_ts_ns = 1234567890;
    s.fs_bytes = 8192;
    s.fs_inodes = 4;
    struct metric_subject who = {"web", "cid", "img:1", "cid", "ns", "pod", "/var/lib/x"};
    struct metric_set set = {0};
    metrics_add_container(&set, &who, &s, 1700000000123456789LL);
    for (size_t i = 0; i < set.n; i++) {
        const Runtime__V1__Metric *m = set.ptrs[i];
        assert_int_equal(m->n_label_values, keys_of(m->name));
        assert_string_equal(m->label_values[0], "web");
        assert_string_equal(m->label_values[5], "pod");
        assert_non_null(m->value);
    }
    const Runtime__V1__Metric *m = find(&set, "container_cpu_usage_seconds_total", "total");
    assert_non_null(m);
    assert_int_equal(m->value->value, 7);
    assert_int_equal(m->timestamp, 0); /* read live */
    assert_int_equal(m->metric_type, RUNTIME__V1__METRIC_TYPE__COUNTER);
    assert_int_equal(find(&set, "container_cpu_cfs_throttled_seconds_total", NULL)->value->value,
                     2);
    m = find(&set, "container_memory_working_set_bytes", NULL);
    assert_int_equal(m->value->value, 12345);
    assert_int_equal(m->metric_type, RUNTIME__V1__METRIC_TYPE__GAUGE);
    assert_int_equal(find(&set, "container_spec_memory_limit_bytes", NULL)->value->value, 0);
    m = find(&set, "container_memory_failures_total", "container");
    assert_string_equal(m->label_values[6], "pgfault");
    assert_int_equal(m->value->value, 100);
    assert_int_equal(find(&set, "container_memory_swap", NULL)->value->value, 4096);
    assert_int_equal(find(&set, "container_processes", NULL)->value->value, 5);
    assert_int_equal(find(&set, "container_start_time_seconds", NULL)->value->value, 1700000000);
    m = find(&set, "container_fs_usage_bytes", "/var/lib/x");
    assert_int_equal(m->value->value, 8192);
    assert_int_equal(m->timestamp, 1234567890); /* a cached figure: when it was measured */
    metric_set_clear(&set);

    /* An exited container (no cgroup), never started, no layer figure: nothing. */
    memset(&s, 0, sizeof(s));
    metrics_add_container(&set, &who, &s, 0);
    assert_int_equal(set.n, 0);
    metric_set_clear(&set);
}

static void test_pod_metrics(void **state)
{
    struct stats_iface ifs[2] = {{.name = "eth0", .rx_bytes = 10, .tx_errors = 2},
                                 {.name = "net1", .rx_bytes = 20}};
    struct stats_pod_sample s = {.has_net = true, .ifaces = ifs, .n_ifaces = 2};
    struct metric_subject who = {"", "pid", "", "pid", "ns", "pod", NULL};
    struct metric_set set = {0};
    metrics_add_pod(&set, &who, &s);
    assert_int_equal(set.n, 16); /* 8 per interface */
    assert_int_equal(find(&set, "container_network_receive_bytes_total", "net1")->value->value, 20);
    assert_int_equal(find(&set, "container_network_transmit_errors_total", "eth0")->value->value,
                     2);
    assert_string_equal(set.ptrs[0]->label_values[0], "");
    metric_set_clear(&set);
    s.has_net = false;
    metrics_add_pod(&set, &who, &s);
    assert_int_equal(set.n, 0);
    metric_set_clear(&set);
}

static void test_chunk_plan(void **state)
{
    /* Each item costs its size + 2 (tag and a one-byte length) below 128 bytes. */
    size_t sizes[] = {40, 40, 40, 40, 40};
    size_t ends[6];
    assert_int_equal(list_chunk_plan(sizes, 5, 100, ends), 3);
    assert_int_equal(ends[0], 2);
    assert_int_equal(ends[1], 4);
    assert_int_equal(ends[2], 5);
    assert_int_equal(list_chunk_plan(sizes, 5, 1000, ends), 1);
    assert_int_equal(ends[0], 5);
    /* Exactly at the limit fits. */
    assert_int_equal(list_chunk_plan(sizes, 5, 84, ends), 3);
    assert_int_equal(list_chunk_plan(sizes, 5, 83, ends), 5);
    /* One item alone over the limit: no plan. */
    assert_int_equal(list_chunk_plan(sizes, 5, 41, ends), -1);
    /* Nothing: no chunk (a stream sends no message). */
    assert_int_equal(list_chunk_plan(sizes, 0, 100, ends), 0);
    /* A two-byte length prefix from 128 bytes on. */
    size_t big[] = {128};
    assert_int_equal(list_chunk_plan(big, 1, 130, ends), -1);
    assert_int_equal(list_chunk_plan(big, 1, 131, ends), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_container_metrics),
        cmocka_unit_test(test_pod_metrics),
        cmocka_unit_test(test_chunk_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
