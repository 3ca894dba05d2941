/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Samples behind the stats and metrics RPCs, kept per container and per pod
 * so that kubelet's polling costs next to nothing:
 *
 *  - CPU, memory and processes are read from the cgroup (pod/cgroup: a few
 *    bounded reads), and the sample is kept for STATS_FRESH_MS: kubelet asks
 *    ListContainerStats and ListPodSandboxStats (which has the containers
 *    too) back to back, and the second reads nothing again. A container's
 *    cgroup is found once, from /proc/<pid>/cgroup of its init while it
 *    lives (right for any runtime and cgroup driver), else from the
 *    cgroupsPath it was given.
 *  - nano-cores is the rate between this CPU sample and the last one at
 *    least STATS_RATE_MIN_MS older (a faster caller gets the last rate).
 *  - The writable layer's bytes and inodes are counted by a child process
 *    walking the upper directories (one child at a time, each container in
 *    at most one walk, at most STATS_WALK_BATCH per child), and cached with
 *    the time of the walk. A figure older than STATS_FS_MAX_AGE_MS is
 *    served while a fresh walk runs in the background.
 *  - A pod's network counters come from /proc/net/dev of its network
 *    namespace, read through an fd that a child opened inside the namespace
 *    (setns on the pinned file, never in the daemon) and passed back once
 *    per pod. Each later sample is one pread() of that fd: no process and no
 *    namespace switch per poll. The fd is closed when the pod stops.
 *
 * The module knows nothing about the container and sandbox tables: callers
 * pass what it needs (ids, pids, paths) and tell it when an id goes away.
 * Everything runs on the loop and never blocks.
 */
#ifndef TINYCRI_POD_STATS_H
#define TINYCRI_POD_STATS_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pod/cgroup.h"

#define STATS_RATE_MIN_MS 1000
#define STATS_FRESH_MS 1000
#define STATS_FS_MAX_AGE_MS 10000
#define STATS_WALK_BATCH 256
/* A pod's /proc/net/dev: one line per interface; beyond this it is cut (logged). */
#define STATS_NET_DEV_MAX (16 * 1024)

void stats_init(void);
/* Kill the children, close the fds, free everything. */
void stats_shutdown(void);

struct stats_ctr_input {
    const char *id;
    int pid;                   /* the container's init (host pid namespace); 0: none */
    bool live;                 /* CREATED or RUNNING: it has a cgroup to read */
    const char *cgroup_parent; /* the pod's; "" or NULL for none */
    bool systemd;              /* cgroup driver */
    const char *upper_dir;     /* the writable layer; NULL: none */
    bool detail;               /* the metrics' figures too (CGROUP_HAVE_DETAIL) */
};

struct stats_ctr_sample {
    int64_t ts_ns; /* realtime */
    bool has_cgroup;
    struct cgroup_stats cg;
    bool has_rate;
    uint64_t nano_cores;
    bool has_fs;
    int64_t fs_ts_ns; /* when the writable layer was walked (realtime) */
    uint64_t fs_bytes;
    uint64_t fs_inodes;
};

/*
 * Sample a container. Never fails: what cannot be read is left out (the
 * has_ flags). Starts a walk of the writable layer when its figure is
 * missing or older than STATS_FS_MAX_AGE_MS.
 */
void stats_container_sample(const struct stats_ctr_input *in, struct stats_ctr_sample *out);

/* Is the first writable-layer figure of this container being measured? */
bool stats_container_pending(const struct stats_ctr_input *in);

/* Queue a first walk of the writable layer now (a new container), without sampling. */
void stats_container_prepare(const struct stats_ctr_input *in);

/* The container is gone: drop its entry (a walk in flight forgets it). */
void stats_container_forget(const char *id);

struct stats_pod_input {
    const char *id;
    bool ready;                /* READY: the network namespace is set up */
    const char *netns_path;    /* pinned network namespace; NULL for host network */
    const char *cgroup_parent; /* "" or NULL: the pod has no cgroup of its own */
    bool systemd;
    bool detail; /* the metrics' figures too */
};

struct stats_iface {
    char name[IF_NAMESIZE + 1];
    uint64_t rx_bytes, rx_packets, rx_errors, rx_dropped;
    uint64_t tx_bytes, tx_packets, tx_errors, tx_dropped;
};

struct stats_pod_sample {
    int64_t ts_ns;
    bool has_cgroup; /* the pod's own cgroup (cgroup_parent) */
    struct cgroup_stats cg;
    bool has_rate;
    uint64_t nano_cores;
    bool has_net;
    struct stats_iface *ifaces; /* owned; "lo" left out */
    size_t n_ifaces;
};

/*
 * Sample a pod: its cgroup when it has one, its network when READY with a
 * namespace of its own (the first call opens the namespace's counters in
 * the background: see stats_pod_pending()). Free with stats_pod_sample_clear().
 */
void stats_pod_sample(const struct stats_pod_input *in, struct stats_pod_sample *out);
void stats_pod_sample_clear(struct stats_pod_sample *s);

/* Is the pod's network counter fd being opened? (starts it when needed) */
bool stats_pod_pending(const struct stats_pod_input *in);

/* The pod stopped or went away: close its counters and drop its entry. */
void stats_pod_forget(const char *id);

/*
 * Wait for what is being measured for the first time (walks and namespace
 * opens started so far): cb(arg) runs on the loop once they are done, or
 * after timeout_ms, never inside this call. The waiter is freed after cb;
 * cancel it before then to drop the call.
 */
struct stats_waiter;
struct stats_waiter *stats_wait(int64_t timeout_ms, void (*cb)(void *arg), void *arg);
void stats_waiter_cancel(struct stats_waiter *w);

/*
 * Parse /proc/net/dev text into interfaces ("lo" left out); owned array in
 * *out. Exposed for the unit tests. Returns the count, -1 when malformed.
 */
ssize_t stats_parse_net_dev(const char *text, struct stats_iface **out);

#endif
