/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the files of the sandbox module share, and nobody else sees:
 * sandbox.c (the objects, their records, validation, the pod-init watch,
 * start-up), sandbox_files.c (a pod's files and /dev/shm) and
 * sandbox_ops.c (the run, stop and remove machines).
 *
 * Module state: each object is a private struct sb whose first member is
 * the public struct sandbox callers see (pod/container does the same with
 * struct ctr), and the module's state is one struct (sbs), owned by
 * sandbox.c.
 */
#ifndef TINYCRI_POD_SANDBOX_INTERNAL_H
#define TINYCRI_POD_SANDBOX_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "core/table.h"
#include "pod/sandbox.h"

struct config;
struct error;
struct loop_pidfd;
struct run_op;
struct sb_op;

struct sb {
    struct sandbox pub;          /* first: callers get &sb->pub */
    char *record_path;           /* <root_dir>/sandboxes/<id>.json */
    char *dir;                   /* <state_dir>/sandboxes/<id> */
    uint64_t pod_init_start;     /* start time of pod_init_pid (clock ticks after boot) */
    struct loop_pidfd *pod_init; /* NULL: no pod-init watched */
};

struct sb_module {
    const struct config *cfg;
    struct sandbox_container_hooks hooks;
    char *records_dir;   /* <root_dir>/sandboxes */
    char *files_dir;     /* <state_dir>/sandboxes */
    char *netns_dir;     /* <state_dir>/netns */
    char *cni_cache_dir; /* <state_dir>/cni-cache */
    char *keeper;        /* the pod-init binary */
    struct table table;  /* struct sb, in creation order */
    TAILQ_HEAD(, run_op) runs;
    TAILQ_HEAD(, sb_op) ops;
    uint64_t next_seq;
    bool netns_ready; /* netns_dir is a shared mount (made on first need: a daemon without
                       * pods leaves no mount behind, even when killed) */
};
extern struct sb_module sbs;

/* ---- sandbox.c: the config ---- */

bool sb_host_network(const Runtime__V1__PodSandboxConfig *c);
bool sb_host_ipc(const Runtime__V1__PodSandboxConfig *c);
/* pid mode POD (also an absent namespace_options): the pod gets a pod-init. */
bool sb_needs_pod_init(const Runtime__V1__PodSandboxConfig *c);
const char *sb_annotation(const Runtime__V1__PodSandboxConfig *c, const char *key);
/* The UTS hostname: the config's, else the pod name cut to 63 bytes as kubelet does (owned). */
char *sb_pod_hostname(const Runtime__V1__PodSandboxConfig *c);
bool sb_has_dns_config(const Runtime__V1__PodSandboxConfig *c);
bool sb_same_metadata(const Runtime__V1__PodSandboxMetadata *a,
                      const Runtime__V1__PodSandboxMetadata *b);
/* RunPodSandbox's checks (INVALID_ARGUMENT). */
int sb_validate(const Runtime__V1__PodSandboxConfig *c, const char *handler, struct error **err);

/* ---- sandbox.c: objects ---- */

struct sb *sb_new(const char *id);
void sb_free(struct sb *s);
void sb_free_cb(void *s);
void sb_ips_clear(struct sandbox *p);
/* Write the record (every change goes through here). */
int sb_persist(const struct sb *s, struct error **err);
/* Is path a pinned namespace (an nsfs bind mount)? */
bool sb_is_pinned(const char *path);
/*
 * Watch the pod-init process pid through a pidfd. start is its expected
 * start time (0: take the current one). Fails when the process is gone or
 * the pid now names another process.
 */
int sb_pod_init_adopt(struct sb *s, int pid, uint64_t start, struct error **err);
void sb_pod_init_kill(struct sb *s);

/* ---- sandbox_files.c ---- */

/* hostname, resolv.conf, hosts and the /dev/shm tmpfs, then the record. */
int sb_files_write(struct sb *s, struct error **err);
/* /etc/hosts: the host's for a host-network pod, else localhost and the pod's IPs. */
int sb_files_hosts(const struct sb *s, struct error **err);
/* Does the pod have its own /dev/shm (not host IPC)? */
bool sb_owns_shm(const struct sb *s);
int sb_shm_umount(const struct sb *s, struct error **err);
/*
 * Remove what the sandbox has on this node but its record: namespaces,
 * /dev/shm, files, directory, CNI cache. Idempotent. When the directory holds
 * more than what we put there, fails with sys_errno ENOTEMPTY.
 */
int sb_remove_local(const struct sb *s, struct error **err);

/* ---- sandbox_ops.c ---- */

/* Forget every operation in flight (no callbacks): the daemon is stopping. */
void sb_ops_shutdown(void);

#endif
