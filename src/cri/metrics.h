/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The metrics behind ListMetricDescriptors and ListPodSandboxMetrics: the
 * cAdvisor metrics kubelet's /metrics/cadvisor serves, with cAdvisor's
 * names, help texts and label keys (container, id, image, name, namespace,
 * pod, plus cpu, interface, device, failure_type and scope where cAdvisor
 * has them), so dashboards built on cAdvisor keep working when kubelet takes
 * the metrics from the runtime.
 *
 * The CRI carries every value as an unsigned integer: the "_seconds"
 * counters are whole seconds (the nanosecond figures are in ContainerStats).
 * Timestamps are 0 for values read live and the time of the measurement for
 * cached ones (the writable layer's usage).
 *
 * Samples are turned into Metric messages in a metric_set, which owns the
 * messages and borrows the label values' strings (valid for the loop turn).
 */
#ifndef TINYCRI_CRI_METRICS_H
#define TINYCRI_CRI_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "api.pb-c.h"

struct stats_ctr_sample;
struct stats_pod_sample;

enum metric_id {
    METRIC_CPU_USAGE,
    METRIC_CPU_USER,
    METRIC_CPU_SYSTEM,
    METRIC_CFS_PERIODS,
    METRIC_CFS_THROTTLED_PERIODS,
    METRIC_CFS_THROTTLED_SECONDS,
    METRIC_MEMORY_USAGE,
    METRIC_MEMORY_WORKING_SET,
    METRIC_MEMORY_RSS,
    METRIC_MEMORY_CACHE,
    METRIC_MEMORY_MAPPED_FILE,
    METRIC_MEMORY_SWAP,
    METRIC_MEMORY_FAILCNT,
    METRIC_MEMORY_MAX_USAGE,
    METRIC_MEMORY_FAILURES,
    METRIC_SPEC_MEMORY_LIMIT,
    METRIC_PROCESSES,
    METRIC_START_TIME,
    METRIC_FS_USAGE,
    METRIC_NET_RX_BYTES,
    METRIC_NET_RX_PACKETS,
    METRIC_NET_RX_DROPPED,
    METRIC_NET_RX_ERRORS,
    METRIC_NET_TX_BYTES,
    METRIC_NET_TX_PACKETS,
    METRIC_NET_TX_DROPPED,
    METRIC_NET_TX_ERRORS,
    METRIC_N,
};

#define METRIC_MAX_LABELS 8

struct metric_desc {
    const char *name;
    const char *help;
    Runtime__V1__MetricType type;
    const char *labels[METRIC_MAX_LABELS]; /* NULL-terminated */
};

/* The table, indexed by enum metric_id. */
const struct metric_desc *metric_desc_get(enum metric_id id);

/* The descriptors message (static storage; borrowed). */
const Runtime__V1__ListMetricDescriptorsResponse *metrics_descriptors(void);

/* Who a set of metrics is about: the base label values. */
struct metric_subject {
    const char *container; /* container name; "" for the pod itself */
    const char *id;
    const char *image;
    const char *name;
    const char *namespace_;
    const char *pod;
    const char *device; /* the writable layer's file system, for the fs metrics */
};

/* A growing list of Metric messages; free with metric_set_clear(). */
struct metric_set {
    Runtime__V1__Metric **ptrs;
    size_t n;
    size_t alloc;
};

/* The container's metrics from its sample (start_ns: when it started; 0: not started). */
void metrics_add_container(struct metric_set *set, const struct metric_subject *who,
                           const struct stats_ctr_sample *s, int64_t start_ns);

/* The pod's own metrics: its network interfaces. */
void metrics_add_pod(struct metric_set *set, const struct metric_subject *who,
                     const struct stats_pod_sample *s);

void metric_set_clear(struct metric_set *set);

#endif
