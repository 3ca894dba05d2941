/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pod sandboxes: namespaces pinned without a process (pod/nsfs), CNI
 * networking (pod/cni), /etc/hostname, /etc/hosts, /etc/resolv.conf and a
 * /dev/shm tmpfs per pod, a cgroup parent, and a record persisted
 * atomically on every change so a restart (even after kill -9) finds it.
 *
 * Layout:
 *   <root_dir>/sandboxes/<id>.json        the record (config as packed protobuf, base64)
 *   <state_dir>/sandboxes/<id>/           hostname, hosts, resolv.conf, shm/ (tmpfs)
 *   <state_dir>/netns/<id>/{net,ipc,uts}  pinned namespace files (nsfs)
 *   <state_dir>/cni-cache/<id>.json       the CNI ADD result (for DEL after a restart)
 *
 * Lifecycle: SANDBOX_READY after RunPodSandbox; SANDBOX_NOTREADY after
 * StopPodSandbox (containers killed, CNI DEL done); removed by
 * RemovePodSandbox. Containers belong to pod/container; the sandbox module
 * asks it to stop/remove a pod's containers through the callbacks below.
 */
#ifndef TINYCRI_POD_SANDBOX_H
#define TINYCRI_POD_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.pb-c.h"

struct config;
struct error;

enum sandbox_state {
    SANDBOX_READY,
    SANDBOX_NOTREADY,
};

struct sandbox {
    char *id;                              /* 64 lowercase hex */
    Runtime__V1__PodSandboxConfig *config; /* owned (unpacked copy) */
    char *runtime_handler;                 /* as requested ("" = default) */
    enum sandbox_state state;
    int64_t created_ns;
    /* Namespaces: pinned files, NULL when the pod uses the host's (NODE mode). */
    char *netns_path;
    char *ipc_path;
    char *uts_path;
    /* PID namespace shared by the pod's containers (POD mode), via a pod-init
     * process; NULL otherwise. */
    char *pid_ns_path;
    int pod_init_pid; /* 0 when none */
    /* Files bind-mounted into every container. */
    char *hostname_path;
    char *hosts_path;
    char *resolv_path;
    char *shm_path;      /* a tmpfs mount, or "/dev/shm" for host IPC */
    char *cgroup_parent; /* from the config's linux.cgroup_parent; may be "" */
    char **ips;          /* pod IPs, primary first; empty for host network */
    size_t n_ips;
    bool network_ready; /* CNI ADD done and not yet DEL'd (set as ADD starts: a crash gets a DEL) */
};

/*
 * What pod/container provides to the sandbox module (calls go down only:
 * the sandbox module does not include container.h).
 */
struct sandbox_container_hooks {
    /* Stop every container of the sandbox (SIGKILL), then call done(err, arg) once. */
    void (*stop_all)(const char *sandbox_id, void (*done)(const struct error *err, void *arg),
                     void *arg);
    /* Remove every container of the sandbox (forced), then call done(err, arg)
     * once, when their mounts and directories are gone (maybe from inside). */
    void (*remove_all)(const char *sandbox_id, void (*done)(const struct error *err, void *arg),
                       void *arg);
};

/*
 * Load records from disk and reconcile them with what survived (see
 * sandbox.c): a sandbox whose pinned namespaces are gone (reboot) or whose
 * pod-init died is NOTREADY. A record that does not parse is moved into
 * sandboxes/corrupt/ with a log line (persist_set_aside()).
 * hooks may be NULL, and so may each of its functions: "no containers".
 * Errors: INTERNAL (directories). Call once after loop_init.
 */
int sandbox_init(const struct config *cfg, const struct sandbox_container_hooks *hooks,
                 struct error **err);
/*
 * Forget every sandbox and cancel operations in flight (their done callbacks
 * do not run). Pods keep running: records, namespaces, pod-init processes and
 * mounts stay for the next start.
 */
void sandbox_shutdown(void);

/*
 * Operations. done runs exactly once, on the loop and never inside the
 * starting call, with err NULL on success; id is the sandbox's id (borrowed,
 * for the callback only; NULL when none was made). A function returning -1
 * has set *err and will not call done.
 */
typedef void (*sandbox_done_cb)(const struct error *err, const char *id, void *arg);

/*
 * RunPodSandbox. Validation errors come back at once: INVALID_ARGUMENT (no
 * metadata name/namespace/uid, unknown runtime handler, bad hostname, DNS
 * entry, port mapping, sysctl, bandwidth annotation, namespace mode or cgroup
 * parent), ALREADY_EXISTS (a sandbox, or one being made, with the same
 * name, namespace, uid and attempt). Then done gets the new id, or an error
 * after everything done so far was undone: FAILED_PRECONDITION "network
 * plugin not ready: ..." (no usable CNI config) or a CNI plugin's error (see
 * cni.h), INTERNAL otherwise. The operation always completes, even when the
 * caller stops waiting. If part of the undo fails (the CNI DEL, unmounting,
 * removing files), the sandbox is kept NOTREADY: listed, so kubelet removes
 * it, which retries what failed.
 */
int sandbox_run(const Runtime__V1__PodSandboxConfig *config, const char *runtime_handler,
                sandbox_done_cb done, void *arg, struct error **err);

/*
 * StopPodSandbox: stop the containers, kill the pod-init, CNI DEL (when the
 * network is set up), unmount /dev/shm; the sandbox is NOTREADY from the
 * moment the containers are gone. Idempotent. Namespaces stay pinned until
 * removal. A failed CNI DEL is returned and retried by the next Stop.
 * Errors: NOT_FOUND (unknown id, at start or when the sandbox was removed
 * meanwhile), the hooks' and CNI's errors, INTERNAL.
 */
int sandbox_stop(const char *id_or_prefix, sandbox_done_cb done, void *arg, struct error **err);

/*
 * RemovePodSandbox: Stop, remove the containers, unpin the namespaces,
 * remove the files and the record. An unknown id is success (idempotent).
 * Errors: those of Stop, INTERNAL.
 */
int sandbox_remove(const char *id_or_prefix, sandbox_done_cb done, void *arg, struct error **err);

/* How many sandboxes there are (for sandbox_at()). */
size_t sandbox_count(void);

/* "SANDBOX_READY" / "SANDBOX_NOTREADY", for logs and verbose info. */
const char *sandbox_state_name(enum sandbox_state state);

/* Lookup by full id or unique prefix; borrowed, valid until the loop turn ends. */
struct sandbox *sandbox_find(const char *id_or_prefix);

/* Iterate: returns the i-th sandbox or NULL past the end. */
struct sandbox *sandbox_at(size_t i);

/* "POD", "CONTAINER", "NODE", "TARGET" ("unknown" for anything else). */
const char *sandbox_namespace_mode_name(Runtime__V1__NamespaceMode m);

#endif
