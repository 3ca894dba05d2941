/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tinycrid --check-config: what a user runs before pointing kubelet at
 * tinycrid. It checks a loaded configuration against this host, changes
 * nothing on it, and writes one line per problem:
 *
 *   runtime crun (default): /usr/bin/crun: No such file or directory
 *   runtime runc: /usr/bin/runc --version failed (status 1): ...
 *   runtime crun (default): crun 1.8.1 cannot run with cgroups in hybrid mode: ...
 *   keeper: /usr/libexec/tinycri/tinycri-keeper: No such file or directory
 *   cni: no network config file in /etc/cni/net.d
 *   cgroups: no cgroup filesystem is mounted at /sys/fs/cgroup
 *   cgroups: the cgroup v1 controller pids is not mounted
 *   cgroups: the cgroup v2 controller memory is not enabled in /sys/fs/cgroup
 *   cgroups: cgroup_driver = systemd, but systemd is not the init system ...
 *   kernel: no overlay filesystem ...
 *   root_dir: /var/lib/tinycri is owned by uid 1000, not by tinycrid's uid 0
 *   state_dir: /run/tinycri cannot be created: /run is read-only ...
 *   socket: /tmp/s/tinycri.sock: /tmp/s is writable by other users ...
 *
 * A handler other than the default that cannot be used is a warning
 * ("warning: runtime runc: ..."): pods that do not ask for it still run.
 * On success one "ok: ..." line sums up what was found.
 */
#ifndef TINYCRI_CHECK_H
#define TINYCRI_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/config.h"

/* Run every check; lines go to out. Returns the exit status: 0, or 1 when there are problems. */
int check_run(const struct config *cfg, FILE *out);

/*
 * Tests only: the cgroup checks on given texts. mountinfo is
 * /proc/self/mountinfo; v2_controllers /sys/fs/cgroup/cgroup.controllers
 * (NULL when unreadable); systemd_booted whether /run/systemd/system exists.
 * Writes a line per problem to out and returns how many; *layout (may be
 * NULL) gets "v1", "v2" or "hybrid" (borrowed, static).
 */
size_t check_cgroups(const char *mountinfo, const char *v2_controllers, enum cgroup_driver driver,
                     bool systemd_booted, const char **layout, FILE *out);

/*
 * Tests only: is overlayfs there? filesystems is /proc/filesystems, modules
 * the text of modules.builtin and modules.dep (either may be NULL).
 */
bool check_has_overlay(const char *filesystems, const char *modules);

#endif
