/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The metric table and the samples-to-metrics conversion (metrics.h). The
 * names, help texts and labels are cAdvisor's, as kubelet's
 * /metrics/cadvisor serves them (kubelet turns per-CPU usage off, so "cpu"
 * is always "total").
 */
#include "autoconf.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "cri/metrics.h"
#include "pod/cgroup.h"
#include "pod/stats.h"

#define BASE "container", "id", "image", "name", "namespace", "pod"
#define COUNTER RUNTIME__V1__METRIC_TYPE__COUNTER
#define GAUGE RUNTIME__V1__METRIC_TYPE__GAUGE

static const struct metric_desc table[METRIC_N] = {
    [METRIC_CPU_USAGE] = {"container_cpu_usage_seconds_total",
                          "Cumulative cpu time consumed in seconds.",
                          COUNTER,
                          {BASE, "cpu"}},
    [METRIC_CPU_USER] = {"container_cpu_user_seconds_total",
                         "Cumulative user cpu time consumed in seconds.",
                         COUNTER,
                         {BASE}},
    [METRIC_CPU_SYSTEM] = {"container_cpu_system_seconds_total",
                           "Cumulative system cpu time consumed in seconds.",
                           COUNTER,
                           {BASE}},
    [METRIC_CFS_PERIODS] = {"container_cpu_cfs_periods_total",
                            "Number of elapsed enforcement period intervals.",
                            COUNTER,
                            {BASE}},
    [METRIC_CFS_THROTTLED_PERIODS] = {"container_cpu_cfs_throttled_periods_total",
                                      "Number of throttled period intervals.",
                                      COUNTER,
                                      {BASE}},
    [METRIC_CFS_THROTTLED_SECONDS] = {"container_cpu_cfs_throttled_seconds_total",
                                      "Total time duration the container has been throttled.",
                                      COUNTER,
                                      {BASE}},
    [METRIC_MEMORY_USAGE] = {"container_memory_usage_bytes",
                             "Current memory usage in bytes, including all memory regardless of "
                             "when it was accessed",
                             GAUGE,
                             {BASE}},
    [METRIC_MEMORY_WORKING_SET] = {"container_memory_working_set_bytes",
                                   "Current working set in bytes.",
                                   GAUGE,
                                   {BASE}},
    [METRIC_MEMORY_RSS] = {"container_memory_rss", "Size of RSS in bytes.", GAUGE, {BASE}},
    [METRIC_MEMORY_CACHE] = {"container_memory_cache",
                             "Number of bytes of page cache memory.",
                             GAUGE,
                             {BASE}},
    [METRIC_MEMORY_MAPPED_FILE] = {"container_memory_mapped_file",
                                   "Size of memory mapped files in bytes.",
                                   GAUGE,
                                   {BASE}},
    [METRIC_MEMORY_SWAP] = {"container_memory_swap",
                            "Container swap usage in bytes.",
                            GAUGE,
                            {BASE}},
    [METRIC_MEMORY_FAILCNT] = {"container_memory_failcnt",
                               "Number of memory usage hits limits",
                               COUNTER,
                               {BASE}},
    [METRIC_MEMORY_MAX_USAGE] = {"container_memory_max_usage_bytes",
                                 "Maximum memory usage recorded in bytes",
                                 GAUGE,
                                 {BASE}},
    [METRIC_MEMORY_FAILURES] = {"container_memory_failures_total",
                                "Cumulative count of memory allocation failures.",
                                COUNTER,
                                {BASE, "failure_type", "scope"}},
    [METRIC_SPEC_MEMORY_LIMIT] = {"container_spec_memory_limit_bytes",
                                  "Memory limit for the container.",
                                  GAUGE,
                                  {BASE}},
    [METRIC_PROCESSES] = {"container_processes",
                          "Number of processes running inside the container.",
                          GAUGE,
                          {BASE}},
    [METRIC_START_TIME] = {"container_start_time_seconds",
                           "Start time of the container since unix epoch in seconds.",
                           GAUGE,
                           {BASE}},
    [METRIC_FS_USAGE] = {"container_fs_usage_bytes",
                         "Number of bytes that are consumed by the container on this filesystem.",
                         GAUGE,
                         {BASE, "device"}},
    [METRIC_NET_RX_BYTES] = {"container_network_receive_bytes_total",
                             "Cumulative count of bytes received",
                             COUNTER,
                             {BASE, "interface"}},
    [METRIC_NET_RX_PACKETS] = {"container_network_receive_packets_total",
                               "Cumulative count of packets received",
                               COUNTER,
                               {BASE, "interface"}},
    [METRIC_NET_RX_DROPPED] = {"container_network_receive_packets_dropped_total",
                               "Cumulative count of packets dropped while receiving",
                               COUNTER,
                               {BASE, "interface"}},
    [METRIC_NET_RX_ERRORS] = {"container_network_receive_errors_total",
                              "Cumulative count of errors encountered while receiving",
                              COUNTER,
                              {BASE, "interface"}},
    [METRIC_NET_TX_BYTES] = {"container_network_transmit_bytes_total",
                             "Cumulative count of bytes transmitted",
                             COUNTER,
                             {BASE, "interface"}},
    [METRIC_NET_TX_PACKETS] = {"container_network_transmit_packets_total",
                               "Cumulative count of packets transmitted",
                               COUNTER,
                               {BASE, "interface"}},
    [METRIC_NET_TX_DROPPED] = {"container_network_transmit_packets_dropped_total",
                               "Cumulative count of packets dropped while transmitting",
                               COUNTER,
                               {BASE, "interface"}},
    [METRIC_NET_TX_ERRORS] = {"container_network_transmit_errors_total",
                              "Cumulative count of errors encountered while transmitting",
                              COUNTER,
                              {BASE, "interface"}},
};

const struct metric_desc *metric_desc_get(enum metric_id id)
{
    return id < METRIC_N ? &table[id] : NULL;
}

static size_t n_labels(const struct metric_desc *d)
{
    size_t n = 0;
    while (n < METRIC_MAX_LABELS && d->labels[n])
        n++;
    return n;
}

const Runtime__V1__ListMetricDescriptorsResponse *metrics_descriptors(void)
{
    static Runtime__V1__MetricDescriptor descs[METRIC_N];
    static Runtime__V1__MetricDescriptor *ptrs[METRIC_N];
    static Runtime__V1__ListMetricDescriptorsResponse resp;
    static bool made;
    if (!made) {
        for (size_t i = 0; i < METRIC_N; i++) {
            runtime__v1__metric_descriptor__init(&descs[i]);
            descs[i].name = (char *)table[i].name;
            descs[i].help = (char *)table[i].help;
            descs[i].n_label_keys = n_labels(&table[i]);
            descs[i].label_keys = (char **)table[i].labels;
            ptrs[i] = &descs[i];
        }
        runtime__v1__list_metric_descriptors_response__init(&resp);
        resp.n_descriptors = METRIC_N;
        resp.descriptors = ptrs;
        made = true;
    }
    return &resp;
}

/* One Metric with its value and label value slots, in one allocation. */
struct metric_block {
    Runtime__V1__Metric m;
    Runtime__V1__UInt64Value v;
    char *labels[METRIC_MAX_LABELS];
};

/* Add a metric; extra label values (NULL-terminated) follow the base ones. */
static void add(struct metric_set *set, enum metric_id id, const struct metric_subject *who,
                int64_t ts, uint64_t value, const char *const *extra)
{
    const struct metric_desc *d = &table[id];
    struct metric_block *b = xcalloc(1, sizeof(*b));
    runtime__v1__metric__init(&b->m);
    runtime__v1__uint64_value__init(&b->v);
    b->m.name = (char *)d->name;
    b->m.timestamp = ts;
    b->m.metric_type = d->type;
    b->v.value = value;
    b->m.value = &b->v;
    const char *base[] = {who->container, who->id,         who->image,
                          who->name,      who->namespace_, who->pod};
    size_t n = 0, want = n_labels(d);
    for (size_t i = 0; i < ARRAY_SIZE(base) && n < want; i++)
        b->labels[n++] = (char *)(base[i] ? base[i] : "");
    for (size_t i = 0; extra && extra[i] && n < want; i++)
        b->labels[n++] = (char *)extra[i];
    while (n < want)
        b->labels[n++] = (char *)"";
    b->m.n_label_values = n;
    b->m.label_values = b->labels;
    if (set->n == set->alloc) {
        set->alloc = set->alloc ? 2 * set->alloc : 32;
        set->ptrs = xrealloc(set->ptrs, set->alloc * sizeof(*set->ptrs));
    }
    /* The block starts with the Metric: freeing the pointer frees the block. */
    set->ptrs[set->n++] = &b->m;
}

#define NS_PER_S 1000000000ULL

void metrics_add_container(struct metric_set *set, const struct metric_subject *who,
                           const struct stats_ctr_sample *s, int64_t start_ns)
{
    if (start_ns > 0)
        add(set, METRIC_START_TIME, who, 0, (uint64_t)start_ns / NS_PER_S, NULL);
    if (s->has_cgroup) {
        const struct cgroup_stats *cg = &s->cg;
        if (cg->have & CGROUP_HAVE_CPU) {
            const char *total[] = {"total", NULL};
            add(set, METRIC_CPU_USAGE, who, 0, cg->cpu_usage_ns / NS_PER_S, total);
            add(set, METRIC_CPU_USER, who, 0, cg->cpu_user_ns / NS_PER_S, NULL);
            add(set, METRIC_CPU_SYSTEM, who, 0, cg->cpu_system_ns / NS_PER_S, NULL);
        }
        if (cg->have & CGROUP_HAVE_THROTTLE) {
            add(set, METRIC_CFS_PERIODS, who, 0, cg->cpu_periods, NULL);
            add(set, METRIC_CFS_THROTTLED_PERIODS, who, 0, cg->cpu_throttled_periods, NULL);
            add(set, METRIC_CFS_THROTTLED_SECONDS, who, 0, cg->cpu_throttled_ns / NS_PER_S, NULL);
        }
        if (cg->have & CGROUP_HAVE_MEMORY) {
            add(set, METRIC_MEMORY_USAGE, who, 0, cg->mem_usage, NULL);
            add(set, METRIC_MEMORY_WORKING_SET, who, 0, cg->mem_working_set, NULL);
            add(set, METRIC_MEMORY_RSS, who, 0, cg->mem_rss, NULL);
            add(set, METRIC_MEMORY_CACHE, who, 0, cg->mem_cache, NULL);
            add(set, METRIC_MEMORY_MAPPED_FILE, who, 0, cg->mem_mapped_file, NULL);
            add(set, METRIC_MEMORY_FAILCNT, who, 0, cg->mem_failcnt, NULL);
            add(set, METRIC_MEMORY_MAX_USAGE, who, 0, cg->mem_max_usage, NULL);
            const char *pgfault[] = {"pgfault", "container", NULL};
            const char *pgmaj[] = {"pgmajfault", "container", NULL};
            add(set, METRIC_MEMORY_FAILURES, who, 0, cg->pgfault, pgfault);
            add(set, METRIC_MEMORY_FAILURES, who, 0, cg->pgmajfault, pgmaj);
            /* cAdvisor reports 0 for "no limit". */
            add(set, METRIC_SPEC_MEMORY_LIMIT, who, 0,
                cg->mem_limit == CGROUP_UNLIMITED ? 0 : cg->mem_limit, NULL);
        }
        if (cg->have & CGROUP_HAVE_SWAP)
            add(set, METRIC_MEMORY_SWAP, who, 0, cg->swap_usage, NULL);
        if (cg->have & CGROUP_HAVE_PIDS)
            add(set, METRIC_PROCESSES, who, 0, cg->pids_current, NULL);
    }
    if (s->has_fs) {
        const char *dev[] = {who->device ? who->device : "", NULL};
        add(set, METRIC_FS_USAGE, who, s->fs_ts_ns, s->fs_bytes, dev);
    }
}

void metrics_add_pod(struct metric_set *set, const struct metric_subject *who,
                     const struct stats_pod_sample *s)
{
    if (!s->has_net)
        return;
    for (size_t i = 0; i < s->n_ifaces; i++) {
        const struct stats_iface *it = &s->ifaces[i];
        const char *ifname[] = {it->name, NULL};
        add(set, METRIC_NET_RX_BYTES, who, 0, it->rx_bytes, ifname);
        add(set, METRIC_NET_RX_PACKETS, who, 0, it->rx_packets, ifname);
        add(set, METRIC_NET_RX_DROPPED, who, 0, it->rx_dropped, ifname);
        add(set, METRIC_NET_RX_ERRORS, who, 0, it->rx_errors, ifname);
        add(set, METRIC_NET_TX_BYTES, who, 0, it->tx_bytes, ifname);
        add(set, METRIC_NET_TX_PACKETS, who, 0, it->tx_packets, ifname);
        add(set, METRIC_NET_TX_DROPPED, who, 0, it->tx_dropped, ifname);
        add(set, METRIC_NET_TX_ERRORS, who, 0, it->tx_errors, ifname);
    }
}

void metric_set_clear(struct metric_set *set)
{
    for (size_t i = 0; i < set->n; i++)
        free(set->ptrs[i]);
    free(set->ptrs);
    memset(set, 0, sizeof(*set));
}
