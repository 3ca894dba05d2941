/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A container's OCI runtime config (config.json), built with jansson from the
 * CRI ContainerConfig, the sandbox's PodSandboxConfig and the image config,
 * following what containerd's CRI plugin produces:
 *
 *  - process: args from CRI command/args and the image Entrypoint/Cmd (the
 *    kubelet rules), env (PATH default, HOSTNAME, image Env, then CRI envs,
 *    later keys replacing earlier ones in place), cwd, user resolved through
 *    the image's /etc/passwd and /etc/group, capabilities (containerd's
 *    default set, CRI add/drop, "ALL"), noNewPrivileges, terminal, and
 *    oomScoreAdj;
 *  - root (the mounted rootfs, read-only on request), the default mounts,
 *    the sandbox's /etc/hostname, /etc/hosts, /etc/resolv.conf and /dev/shm,
 *    the CRI mounts and one directory per image-declared volume (seeded with
 *    the image's content by pod/volume before the spec is built);
 *  - linux: namespaces (joined through the sandbox's pinned files), cgroups
 *    path, resources, devices, the pod's sysctls, masked and read-only
 *    paths, seccomp.
 *
 * Namespaces follow containerd's rule (WithPodNamespaces): for network (with
 * UTS), IPC and PID, a container's POD and NODE both mean what its pod has,
 * since the pod's modes are what was admitted and bound its containers. A
 * host-network pod gives the host's network and UTS namespaces, a host-IPC
 * pod the host's IPC namespace and /dev/shm, a pod with pid POD its shared
 * PID namespace, pid NODE the host's, pid CONTAINER a new one. A container's
 * pid CONTAINER is always a new PID namespace, TARGET the target's. Absent
 * namespace options mean POD (the CRI default).
 *
 * Masked and read-only paths are the CRI lists as sent, as in containerd and
 * CRI-O: kubelet sends the defaults for procMount Default and empty lists for
 * Unmasked (an empty list means none). Only a container without any security
 * context (linux absent or empty), which kubelet never sends, gets the
 * defaults unasked. Privileged containers get none.
 *
 * As in containerd, "ALL" capabilities and privileged containers get the
 * capabilities the daemon itself holds (its CapEff), since a runtime cannot
 * grant more; privileged containers also get every host device, writable
 * /sys and cgroupfs, no masked paths and no seccomp. Mount propagation other
 * than private needs the host mount holding the source to be shared (or
 * slave, for host-to-container), checked in mountinfo as containerd does.
 *
 * Deliberate differences from containerd, each for this node's sake:
 *  - "hostname" is never set: containers join the sandbox's UTS namespace
 *    (or the host's), where runtimes refuse to set it; the pod's hostname
 *    reaches the container through that namespace, HOSTNAME and
 *    /etc/hostname.
 *  - A CRI mount whose host path is missing is an error (containerd creates
 *    it), and an unknown capability name is rejected here instead of by the
 *    runtime.
 *  - A negative oom_score_adj is left out (the process inherits the
 *    runtime's score): tinycrid runs without CAP_SYS_RESOURCE on some nodes,
 *    where lowering the score fails.
 *  - RuntimeDefault seccomp is our built-in table (seccomp_default.h).
 *  - AppArmor and SELinux settings are accepted and ignored (no LSM here).
 *  - User namespaces, idmapped mounts, image mounts (Mount.image) and CDI
 *    devices are not supported and are rejected.
 *
 * The builder reads the image's /etc/passwd and /etc/group, stats mount and
 * device paths, reads mountinfo and Localhost seccomp profiles, lists /dev
 * for privileged containers and creates image-volume directories: small,
 * capped, local file-system work done inline.
 */
#ifndef TINYCRI_POD_OCI_SPEC_H
#define TINYCRI_POD_OCI_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "api.pb-c.h"
#include "pod/seccomp_default.h"

struct error;

/* Largest /etc/passwd, /etc/group or Localhost seccomp profile read. */
#define OCI_SPEC_FILE_MAX (1024 * 1024)

/* OCI version written into "ociVersion". */
#define OCI_SPEC_VERSION "1.1.0"

enum oci_spec_tristate {
    OCI_SPEC_DETECT = 0, /* look at the running host */
    OCI_SPEC_YES,
    OCI_SPEC_NO,
};

/*
 * Facts about the host. Zero values mean "find out on this host"; tests pin
 * them so that golden files do not depend on the machine.
 */
struct oci_spec_host {
    enum oci_spec_tristate cgroup_v2; /* detect: /sys/fs/cgroup/cgroup.controllers */
    enum oci_spec_tristate apparmor;  /* detect: /sys/module/apparmor/parameters/enabled is Y */
    enum oci_spec_tristate selinux;   /* detect: selinuxfs at /sys/fs/selinux */
    uint64_t caps;          /* what "ALL" grants (bit n: capability n); 0: the daemon's CapEff */
    enum seccomp_arch arch; /* SECCOMP_ARCH_NATIVE: compiled-in arch */
    const char *dev_dir;    /* host devices for privileged containers; NULL: "/dev" */
    const char *hostname;   /* for pods without one; NULL: gethostname() */
    const char *mountinfo;  /* NULL: /proc/self/mountinfo */
    unsigned n_cpus;        /* CPUs 0..n-1 may be in a cpuset; 0: /sys/devices/system/cpu/online */
};

/*
 * Everything the builder needs. All pointers are borrowed for the call.
 * Namespace files are the sandbox's pinned namespaces; a NULL one is only
 * allowed where the pod's mode makes it unused (NODE, or pid CONTAINER).
 * Sandbox files (hostname_file...) that are NULL are simply not mounted.
 */
struct oci_spec_input {
    const Runtime__V1__ContainerConfig *ctr;  /* required */
    const Runtime__V1__PodSandboxConfig *pod; /* required */
    /* The image config document, or just its "config" member; NULL: empty. */
    const json_t *image_config;
    const char *container_id; /* required */
    const char *sandbox_id;   /* required */
    const char *rootfs;       /* required: absolute path of the mounted rootfs */
    const char *netns_path;
    const char *ipc_ns_path;
    const char *uts_ns_path;
    const char *pid_ns_path;        /* the pod's pid namespace (pid mode POD) */
    const char *target_pid_ns_path; /* pid namespace of namespace_options.target_id (TARGET) */
    const char *hostname_file;
    const char *hosts_file;
    const char *resolv_file;
    const char *shm_dir;       /* NULL: the container gets its own /dev/shm tmpfs */
    const char *cgroup_parent; /* NULL: the pod's linux.cgroup_parent */
    bool systemd_cgroup;       /* cgroup driver is systemd */
    /* Directory under which image volumes get "<dir>/<escaped path>"; NULL: not mounted. */
    const char *volumes_dir;
    /* Localhost seccomp profiles must be below this directory; NULL: any absolute path. */
    const char *seccomp_localhost_root;
    struct oci_spec_host host;
};

/*
 * Build the config.json object. Returns a new reference, or NULL with *err:
 * INVALID_ARGUMENT for anything wrong in the request or the image (no
 * command, unknown user or group, bad capability name, missing mount or
 * device host path, bad seccomp profile, privileged container in an
 * unprivileged sandbox, a container network or IPC mode other than POD or
 * NODE, a masked or read-only path that is not absolute, unsupported feature
 * such as user namespaces, a malformed AppArmor profile name or SELinux
 * option), FAILED_PRECONDITION for an AppArmor profile on a host without
 * AppArmor ("apparmor is not supported", as containerd says), for the
 * RuntimeDefault AppArmor profile (there is none to load), and for SELinux
 * options (SELinux off, or labels not supported),
 * UNIMPLEMENTED for image mounts and CDI devices, FAILED_PRECONDITION for a
 * propagated mount whose host mount does not propagate, NOT_FOUND when a
 * TARGET pid namespace is not given, RESOURCE_EXHAUSTED for over-large image
 * files or profiles, INTERNAL for local I/O failures and missing inputs the
 * caller should have given.
 */
json_t *oci_spec_build(const struct oci_spec_input *in, struct error **err);

/*
 * process.args from CRI command/args and the image config (kubelet rules):
 * command set: command + args; else args set: Entrypoint + args; else
 * Entrypoint + Cmd. An Entrypoint of [""] counts as none. Returns a new
 * array, or NULL with INVALID_ARGUMENT ("no command specified", or a
 * non-string image entry).
 */
json_t *oci_spec_process_args(const Runtime__V1__ContainerConfig *ctr, const json_t *image_config,
                              struct error **err);

/* A resolved process user. */
struct oci_spec_user {
    uint32_t uid;
    uint32_t gid;
    char *name;                /* owned; NULL when the uid has no passwd entry */
    uint32_t *additional_gids; /* owned; the primary gid first */
    size_t n_additional_gids;
};

void oci_spec_user_clear(struct oci_spec_user *u);

/*
 * Tests only: resolve image paths with the portable fallback used where
 * openat2() is missing (kernels before 5.6), instead of openat2().
 */
extern bool oci_spec_no_openat2;

/*
 * Resolve a Docker-style user string ("name", "uid", "uid:gid",
 * "name:group", ...) against <rootfs>/etc/passwd and <rootfs>/etc/group.
 * Both are opened with openat2(RESOLVE_IN_ROOT) (or an equivalent walk on
 * older kernels), so symlinks inside the image resolve within the rootfs, and
 * read up to OCI_SPEC_FILE_MAX bytes.
 * A numeric uid without a group takes its gid from passwd (0 when absent).
 * additional_gids holds the primary gid, then, when image_groups is true,
 * every /etc/group entry listing the user as a member (except a group named
 * like the user). On success fills *out (clear it with
 * oci_spec_user_clear()); fails with INVALID_ARGUMENT for a malformed string
 * or a name that cannot be resolved, RESOURCE_EXHAUSTED for oversized files,
 * INTERNAL for I/O errors.
 */
int oci_spec_resolve_user(const char *rootfs, const char *user, bool image_groups,
                          struct oci_spec_user *out, struct error **err);

/*
 * Capability number for a CRI or OCI name ("NET_ADMIN", "cap_net_admin",
 * "CAP_NET_ADMIN"), or -1 when unknown. "ALL" is not a capability.
 */
int oci_spec_capability(const char *name);

/*
 * The OCI linux.resources object for CRI resources (cpu, memory with swap
 * equal to the limit unless asked, hugepageLimits, unified), as
 * oci_spec_build() makes it; for `runtime update`. Owned; errors:
 * INVALID_ARGUMENT.
 */
json_t *oci_spec_resources(const Runtime__V1__LinuxContainerResources *r, struct error **err);

/*
 * linux.cgroupsPath: systemd → "<last slice of parent>:tinycri:<id>"
 * ("system.slice" when there is no parent); cgroupfs → "<parent>/<id>" with
 * a leading '/' ("/tinycri/<id>" when there is no parent). Returns an owned
 * string, or NULL with INVALID_ARGUMENT for a parent with ".." or, with
 * systemd, one not ending in ".slice".
 */
char *oci_spec_cgroups_path(const char *parent, const char *id, bool systemd, struct error **err);

/*
 * Directory name for an image volume at an absolute container path: the
 * cleaned path without its leading '/', '/' turned into '_', and bytes other
 * than [A-Za-z0-9.-] written as "%XX" (so distinct paths never collide).
 * Returns an owned string, or NULL with INVALID_ARGUMENT for a relative path,
 * the root, a ".." component, or a name longer than 255 bytes.
 */
char *oci_spec_volume_name(const char *container_path, struct error **err);

/* Image volumes a container gets: parallel arrays of n owned strings. */
struct oci_spec_volumes {
    char **paths; /* cleaned absolute container paths, sorted */
    char **names; /* oci_spec_volume_name() of each */
    size_t n;
};

void oci_spec_volumes_clear(struct oci_spec_volumes *v);

/*
 * The image config's Volumes (image_config as for oci_spec_input) minus those
 * a CRI mount of ctr covers (the mount wins) and the pod's /etc/hostname,
 * /etc/hosts, /etc/resolv.conf and /dev/shm, sorted. Fills *out (clear it
 * with oci_spec_volumes_clear()); INVALID_ARGUMENT for a Volumes member that
 * is not an object or a path oci_spec_volume_name() refuses.
 */
int oci_spec_image_volumes(const Runtime__V1__ContainerConfig *ctr, const json_t *image_config,
                           struct oci_spec_volumes *out, struct error **err);

/*
 * Open <rootfd>/<path> (a leading '/' is ignored) with every component,
 * symlink targets included, resolved inside rootfd: openat2(RESOLVE_IN_ROOT |
 * RESOLVE_NO_MAGICLINKS), or the same walk by hand where openat2 is missing
 * (or oci_spec_no_openat2 is set). flags as for openat(); O_CLOEXEC is added.
 * Returns an fd, or -1 with errno.
 */
int oci_spec_open_in_root(int rootfd, const char *path, int flags);

#endif
