/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pod namespaces held without any process. A short-lived child forked by the
 * daemon unshare()s the new namespaces, sets them up (hostname, loopback up)
 * and bind-mounts each /proc/self/ns/<type> onto "<dir>/<id>/<type>", then
 * exits; the bind mount keeps the namespace alive until nsfs_unpin(). The
 * child shares the daemon's mount namespace, so the mounts it makes are the
 * daemon's. The daemon itself never changes namespace: creating a network
 * namespace can wait seconds on a kernel lock held by namespace cleanup, which
 * must not stall the loop. Runtimes, CNI plugins and `nsenter --net=<file>`
 * join a pinned namespace through its file.
 *
 * Network, IPC and UTS namespaces can be pinned this way. A PID namespace
 * cannot: unshare(CLONE_NEWPID) only puts the caller's future children into
 * it, and it dies with its first process, so a pod-wide PID namespace needs a
 * pod-init process (the keeper), not this module.
 *
 * Sysctls inside a pinned namespace are written by a short-lived child that
 * setns()es into the file, so the daemon never enters a pod's namespace.
 */
#ifndef TINYCRI_POD_NSFS_H
#define TINYCRI_POD_NSFS_H

#include <sched.h>
#include <stddef.h>
#include <stdint.h>

struct error;

/* The namespace types nsfs_pin_start() accepts, as CLONE_* flags. */
#define NSFS_SUPPORTED (CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)

/* Longest pod id accepted (it becomes a directory name). */
#define NSFS_ID_MAX 128

/* Paths of a pod's pinned namespace files (owned; NULL for a type not pinned). */
struct nsfs_paths {
    char *net; /* "<dir>/<id>/net" */
    char *ipc; /* "<dir>/<id>/ipc" */
    char *uts; /* "<dir>/<id>/uts" */
};

void nsfs_paths_clear(struct nsfs_paths *p);

/*
 * Make dir (created 0700 when missing) a shared mount, bind-mounting it onto
 * itself first when it is not a mount point yet, as `ip netns` does for
 * /run/netns. Containers get their own mount namespace as a copy of ours;
 * through a shared mount, a later pin appears in those copies and, more
 * important, an unpin propagates too, so no copy keeps a pod's network alive.
 * Idempotent: a second call adds no mount. Errors: INTERNAL.
 */
int nsfs_prepare_dir(const char *dir, struct error **err);

/* Called once on the loop: paths (borrowed for the call) when err is NULL. */
typedef void (*nsfs_pin_cb)(const struct error *err, const struct nsfs_paths *paths, void *arg);

struct nsfs_pin_op;

/*
 * Create the namespaces in ns_flags (a subset of NSFS_SUPPORTED; 0 pins
 * nothing) and pin each on "<dir>/<id>/<net|ipc|uts>" (files 0600, the
 * directories 0700), from a child process; the daemon stays in its own
 * namespaces. A new UTS namespace gets hostname (NULL: keeps a copy of the
 * daemon's); a new network namespace gets its loopback interface up.
 * Arguments are copied. timeout_ms bounds the child (0: none).
 *
 * The directory and the empty namespace files are made before this returns;
 * a failure there is reported here: INVALID_ARGUMENT (bad id, flags or
 * hostname), ALREADY_EXISTS (a namespace file of that id exists) or INTERNAL,
 * with NULL returned, nothing left behind, and done never run. Otherwise
 * returns the operation, valid until done runs. done gets the paths, or
 * DEADLINE_EXCEEDED or INTERNAL after every file and mount made was removed.
 */
struct nsfs_pin_op *nsfs_pin_start(const char *dir, const char *id, int ns_flags,
                                   const char *hostname, int64_t timeout_ms, nsfs_pin_cb done,
                                   void *arg, struct error **err);

/*
 * Kill the child, remove every file and mount the pin made, and free the
 * operation; done will not run. Only before done has run; NULL is a no-op.
 */
void nsfs_pin_cancel(struct nsfs_pin_op *op);

/*
 * Unmount (lazily) and remove every namespace file of id, then its
 * directory. Idempotent: missing files or directory are fine. The namespace
 * itself goes away once nothing else (a process, another mount) holds it.
 * Errors: INVALID_ARGUMENT (bad id), INTERNAL.
 */
int nsfs_unpin(const char *dir, const char *id, struct error **err);

/* One sysctl to set, as in the pod config: "net.ipv4.ip_forward" = "1". */
struct nsfs_sysctl {
    const char *name;
    const char *value;
};

/*
 * Check a sysctl name and value and say which namespace holds it: net.* is
 * in the network namespace; kernel.shm*, kernel.msg*, kernel.sem and
 * fs.mqueue.* are in the IPC namespace. Names use '.' as separator with '/'
 * standing for a literal dot ("net.ipv4.conf.eth0/100.rp_filter"), or the
 * other way round when the first separator is '/' ("net/ipv4/conf/eth0.100/
 * rp_filter"); only [a-z0-9_./-] is allowed and no component may be empty,
 * "." or "..". The value is at most 4096 bytes without control characters
 * but tab. On success *ns_flag is CLONE_NEWNET or CLONE_NEWIPC.
 * Errors: INVALID_ARGUMENT, also for a sysctl outside those namespaces.
 */
int nsfs_sysctl_check(const char *name, const char *value, int *ns_flag, struct error **err);

/* Called once on the loop: err is NULL when every sysctl was set. */
typedef void (*nsfs_done_cb)(const struct error *err, void *arg);

struct nsfs_sysctl_op;

/*
 * Set sysctls inside pinned namespaces, in order, from a child process that
 * joins net_path and/or ipc_path (each may be NULL when no sysctl needs it)
 * and writes /proc/sys. Every name is checked first (nsfs_sysctl_check());
 * a net.* sysctl without net_path, or an IPC one without ipc_path, is
 * INVALID_ARGUMENT (the pod shares the host's namespace). Arguments are
 * copied. timeout_ms bounds the child (0: none).
 *
 * done gets INVALID_ARGUMENT for a sysctl the kernel does not have or a
 * value it refuses (the first one failing stops the rest), DEADLINE_EXCEEDED,
 * or INTERNAL. Returns the operation, valid until done runs, or NULL with
 * *err set (and done never runs).
 */
struct nsfs_sysctl_op *nsfs_sysctl_apply(const char *net_path, const char *ipc_path,
                                         const struct nsfs_sysctl *sysctls, size_t n,
                                         int64_t timeout_ms, nsfs_done_cb done, void *arg,
                                         struct error **err);

/* Kill the child and forget the operation; done will not run. */
void nsfs_sysctl_cancel(struct nsfs_sysctl_op *op);

#endif
