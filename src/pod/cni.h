/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CNI: find the network kubelet's pods join, as libcni does — the first
 * valid .conflist/.conf/.json file in the configured directory, in lexical
 * order — and check that its plugins are installed; then run its plugins
 * (ADD, DEL) for a pod as asynchronous operations on the loop, following the
 * CNI specification (1.0.0 and 0.4.0; 0.3.x lists work without DEL's
 * prevResult). Every plugin runs as a child process with a deadline.
 */
#ifndef TINYCRI_POD_CNI_H
#define TINYCRI_POD_CNI_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct error;

/* Largest network config file read. */
#define CNI_CONF_MAX (1024 * 1024)

struct cni_network {
    char *name;     /* the network's "name" */
    char *path;     /* the file it came from */
    char *conflist; /* normalised conflist JSON text (a single .conf wrapped in a list) */
    char *plugins;  /* plugin types, comma separated, for messages */
};

/*
 * Load the network in effect. Fails with FAILED_PRECONDITION and a message
 * saying what is missing: no config dir, no config file, no valid one (with
 * the first file's problem), or a plugin binary absent from every bin dir.
 */
int cni_network_load(const struct config *cfg, struct cni_network *net, struct error **err);

void cni_network_clear(struct cni_network *net);

/* Largest plugin output kept (a result or an error); beyond it the call fails. */
#define CNI_OUTPUT_MAX (1024 * 1024)
/* Most IP addresses taken from a result. */
#define CNI_MAX_IPS 64

/* A hostPort mapping ("portMappings" capability). */
struct cni_port_mapping {
    int host_port;        /* 1..65535; 0 (no host port): the mapping is skipped */
    int container_port;   /* 1..65535 */
    const char *protocol; /* "tcp", "udp" or "sctp", any case; NULL: tcp */
    const char *host_ip;  /* NULL or "": every address */
};

/* Traffic shaping ("bandwidth" capability); rates in bit/s, bursts in bits, 0: none. */
struct cni_bandwidth {
    uint64_t ingress_rate;
    uint64_t ingress_burst;
    uint64_t egress_rate;
    uint64_t egress_burst;
};

/* The pod's DNS settings ("dns" capability). */
struct cni_dns {
    const char *const *servers;
    size_t n_servers;
    const char *const *searches;
    size_t n_searches;
    const char *const *options;
    size_t n_options;
};

/*
 * What the plugins are told about a pod. Everything is borrowed for the call
 * to cni_add()/cni_del() only (the operation copies what it needs).
 * Capability arguments are offered only when set here, and each plugin gets
 * in its "runtimeConfig" only those its "capabilities" map enables.
 */
struct cni_pod {
    const char *container_id;  /* the sandbox id: CNI_CONTAINERID, K8S_POD_INFRA_CONTAINER_ID */
    const char *netns_path;    /* CNI_NETNS: the pinned network namespace (may be NULL for DEL) */
    const char *ifname;        /* CNI_IFNAME; NULL: "eth0" */
    const char *pod_name;      /* K8S_POD_NAME */
    const char *pod_namespace; /* K8S_POD_NAMESPACE */
    const char *pod_uid;       /* K8S_POD_UID */
    const struct cni_port_mapping *port_mappings; /* "portMappings" */
    size_t n_port_mappings;
    const struct cni_bandwidth *bandwidth; /* "bandwidth"; NULL: none */
    const struct cni_dns *dns;             /* "dns"; NULL: none */
    const char *const *ips;                /* "ips": requested addresses ("10.1.2.3/24") */
    size_t n_ips;
    const char *mac;       /* "mac"; NULL: none */
    const char *cache_dir; /* the ADD result is kept in <cache_dir>/<container_id>.json; NULL: no */
};

/* The outcome of an ADD. */
struct cni_result {
    char **ips;   /* addresses on the pod's interface, without prefix, primary first */
    size_t n_ips; /* IPv4 before IPv6, each in the result's order */
    char *json;   /* the final result, compact JSON; NULL after a DEL */
};

void cni_result_clear(struct cni_result *r);

/*
 * Read a CNI result (any version with "ips"): the addresses whose
 * "interface" index names an interface with "sandbox" set (and, when ifname
 * is not NULL, with that name or no name), or that name no interface.
 * Entries that do not parse are skipped. Errors: INTERNAL when json is not a
 * JSON object.
 */
int cni_result_parse(const char *json, size_t len, const char *ifname, struct cni_result *out,
                     struct error **err);

/*
 * Called once on the loop when the operation ends. err is NULL on success;
 * res is borrowed for the call (never NULL; no IPs after a DEL).
 */
typedef void (*cni_done_cb)(const struct error *err, const struct cni_result *res, void *arg);

struct cni_op;

/*
 * Attach the pod to the network: run ADD for each plugin of the list in
 * order. Each plugin gets on stdin its own config with the list's "name" and
 * "cniVersion", its "runtimeConfig" and, but for the first, "prevResult" (the
 * result of the plugin before it). The last plugin's result is the pod's: it
 * is cached (see cni_pod.cache_dir) and its addresses go to done.
 *
 * When a plugin fails, times out, or the operation is cancelled, DEL runs
 * (best effort) for that plugin and the ones before it, in reverse order,
 * before done reports the first failure:
 *   FAILED_PRECONDITION  the plugin is missing, or reported a configuration
 *                        error (CNI codes 1, 2, 4, 6, 7)
 *   INTERNAL             any other plugin error, or no valid result
 *   DEADLINE_EXCEEDED    a plugin ran past cfg->cni_timeout_s
 *   RESOURCE_EXHAUSTED   a plugin printed more than CNI_OUTPUT_MAX
 * with a message "CNI plugin <type> failed (ADD): <msg>: <details>".
 *
 * Returns the operation, valid until done runs (or until cni_cancel()), or
 * NULL with *err set and nothing run: INVALID_ARGUMENT for a bad pod,
 * FAILED_PRECONDITION for an unusable network config or a missing plugin.
 */
struct cni_op *cni_add(const struct config *cfg, const struct cni_network *net,
                       const struct cni_pod *pod, cni_done_cb done, void *arg, struct error **err);

/*
 * Detach the pod: run DEL for each plugin in reverse order, each with the
 * cached ADD result as "prevResult" (cniVersion 0.4.0 and later; when the
 * cache exists and was written for this network and interface). Stops at
 * the first failure, keeping the cache so that a retry has it; on success
 * the cache is removed. Deleting a pod that is not attached succeeds as long
 * as the plugins say so (they are required to be idempotent). Errors as for
 * cni_add().
 */
struct cni_op *cni_del(const struct config *cfg, const struct cni_network *net,
                       const struct cni_pod *pod, cni_done_cb done, void *arg, struct error **err);

/*
 * Forget the operation: done will not run and the running plugin is killed.
 * A cancelled ADD still rolls back in the background (DEL of what may have
 * been set up, as after a failure); a cancelled DEL stops there. The
 * operation frees itself when its last child is gone.
 */
void cni_cancel(struct cni_op *op);

/*
 * Parse a Kubernetes bandwidth quantity (the kubernetes.io/ingress-bandwidth
 * and egress-bandwidth annotations, "10M", "1.5Gi", "500k") into bit/s,
 * rounded up. Errors: INVALID_ARGUMENT, also outside 1k..1P as kubelet has it.
 */
int cni_bandwidth_parse(const char *quantity, uint64_t *bits_per_s, struct error **err);

#endif
