/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Image volumes seeded with the image's content, as containerd does by
 * default: each VOLUME of the image gets a fresh directory that starts with
 * what the image has at that path, so the container sees the image's files
 * there, can write, and its writes go to the volume, never to a layer.
 *
 * The copy runs in a child process (pod/container starts it between the
 * rootfs mount and the bundle; the loop never walks a tree). The child opens
 * the mounted rootfs and the volumes directory, chroots into the rootfs and
 * copies through file descriptors only: the volume path is resolved inside
 * the rootfs (openat2 RESOLVE_IN_ROOT, or the same walk by hand on older
 * kernels), every entry below it is opened with O_NOFOLLOW, and symlinks are
 * copied as symlinks, never followed, so an untrusted image cannot make it
 * read or write outside the rootfs and the volume. Owners, modes (setuid
 * bits too), timestamps, xattrs (but security.selinux), hardlinks, device
 * nodes and FIFOs are kept; sockets are skipped.
 */
#ifndef TINYCRI_POD_VOLUME_H
#define TINYCRI_POD_VOLUME_H

#include <stddef.h>

struct child_result;
struct error;

/* Deepest directory nesting copied below a volume (RESOURCE_EXHAUSTED beyond). */
#define VOLUME_MAX_DEPTH 128

/* What the seeding child does (all borrowed; the child gets a copy by fork). */
struct volume_job {
    const char *rootfs;      /* the mounted rootfs */
    const char *volumes_dir; /* created if missing; each volume is <volumes_dir>/<names[i]> */
    char *const *paths;      /* absolute container paths */
    char *const *names;      /* oci_spec_volume_name() of each path */
    size_t n;
};

/*
 * Make <volumes_fd>/<name> and copy into it what the rootfs (rootfs_fd) has
 * at container_path, resolved inside the rootfs; an empty 0755 directory
 * when the image has nothing there. Blocking: for the child and for tests.
 * Errors: INVALID_ARGUMENT when the image has something other than a
 * directory at the path (or a symlink loop), RESOURCE_EXHAUSTED beyond
 * VOLUME_MAX_DEPTH or PATH_MAX, INTERNAL for I/O failures (ENOSPC:
 * RESOURCE_EXHAUSTED).
 */
int volume_seed(int rootfs_fd, const char *container_path, int volumes_fd, const char *name,
                struct error **err);

/*
 * The child's function for child_fork() (arg: a struct volume_job): seed
 * every volume, then _exit(0); on failure child_exit_error() (the parent
 * reads it with child_result_error()).
 */
int volume_seed_child(void *arg);

#endif
