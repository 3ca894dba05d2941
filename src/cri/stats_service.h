/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The stats and metrics RPCs: ContainerStats, ListContainerStats,
 * StreamContainerStats, PodSandboxStats, ListPodSandboxStats,
 * StreamPodSandboxStats, ListMetricDescriptors, ListPodSandboxMetrics and
 * StreamPodSandboxMetrics, answered from pod/stats samples.
 *
 * A call answers at once from what is known. Only what is being measured
 * for the very first time (a container's writable layer, a pod's network
 * counters) makes it wait, at most STATS_FIRST_WAIT_MS; after that it
 * answers without those figures.
 *
 * Which records: ListContainerStats has every container the filter
 * matches (CPU and memory for those that are CREATED or RUNNING, the
 * writable layer for all, as containerd does); ListPodSandboxStats and
 * ListPodSandboxMetrics the READY pods. A pod's CPU and memory are those of
 * its own cgroup when kubelet gave it a cgroup parent, else the sum of its
 * containers'; its network counters are its namespace's (none for host
 * network pods).
 */
#ifndef TINYCRI_CRI_STATS_SERVICE_H
#define TINYCRI_CRI_STATS_SERVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "api.pb-c.h"
#include "grpc/router.h"

struct config;

#define STATS_FIRST_WAIT_MS 2000

/* Start pod/stats and listen to container events. cfg is borrowed for the daemon's life. */
void stats_service_init(const struct config *cfg);
void stats_service_shutdown(void);

void stats_service_container(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void stats_service_list_containers(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void stats_service_stream_containers(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void stats_service_pod(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void stats_service_list_pods(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void stats_service_stream_pods(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void stats_service_metric_descriptors(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void stats_service_list_metrics(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void stats_service_stream_metrics(struct h2_call *call, const ProtobufCMessage *req, void *ctx);

/*
 * ImageFsInfo's container_filesystems: the writable layers' total as last
 * measured (walks of old or missing figures are started). *mountpoint is
 * borrowed. Returns false when no layer has been measured yet.
 */
bool stats_service_writable_total(const char **mountpoint, uint64_t *bytes, uint64_t *inodes,
                                  int64_t *ts_ns);

#endif
