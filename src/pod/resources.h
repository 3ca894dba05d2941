/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Live resource updates (UpdateContainerResources, UpdatePodSandboxResources).
 *
 * A container's update goes through its OCI runtime (`<runtime> update
 * --resources <file>`), which applies it to the container's cgroup. The
 * request is merged into what the container has, as containerd does: a
 * field left 0 (or "") keeps its value, hugepage limits given replace the
 * old ones, unified keys are merged. Once the runtime succeeded the merged
 * figures become the container's (ContainerStatus.resources, the record)
 * and are written into the bundle's config.json; when it fails nothing
 * changes. Only CREATED and RUNNING containers can be updated. Updates of
 * one container run one at a time, in the order they came.
 *
 * A pod has no cgroup of its own unless kubelet gave one (the config's
 * linux.cgroup_parent, the parent of its containers' cgroups). There the
 * pod's limits are resources + overhead (CPU shares, CFS quota, memory and
 * hugepages added up; cpusets and unified keys from resources), written
 * into the cgroup files by a child process (lowering a memory limit makes
 * the kernel reclaim first, which can take a while). kubelet has already
 * written the same limits when it calls (the CRI says so), so this makes
 * crictl and other clients work alike. A pod without a cgroup parent is
 * FAILED_PRECONDITION: there is nothing to apply the limits to.
 */
#ifndef TINYCRI_POD_RESOURCES_H
#define TINYCRI_POD_RESOURCES_H

#include <stdbool.h>

#include "api.pb-c.h"

struct config;
struct error;

typedef void (*resources_done_cb)(const struct error *err, void *arg);

void resources_init(const struct config *cfg);
/* End the operations in flight: children killed, callbacks told UNAVAILABLE. */
void resources_shutdown(void);

/*
 * UpdateContainerResources. Errors at once: INVALID_ARGUMENT (bad figures,
 * see cgroup_resources_check()), NOT_FOUND, FAILED_PRECONDITION (not
 * CREATED or RUNNING). Then cb once, on the loop: the runtime's error
 * (INTERNAL with its message, DEADLINE_EXCEEDED) or NULL.
 */
int resources_update_container(const char *id, const Runtime__V1__LinuxContainerResources *r,
                               resources_done_cb cb, void *arg, struct error **err);

/*
 * UpdatePodSandboxResources. Errors at once: INVALID_ARGUMENT, NOT_FOUND,
 * FAILED_PRECONDITION (no cgroup parent, or a controller the limits need is
 * not mounted). Then cb once: INTERNAL naming the cgroup file the kernel
 * refused, or NULL.
 */
int resources_update_pod(const char *id, const Runtime__V1__LinuxContainerResources *overhead,
                         const Runtime__V1__LinuxContainerResources *resources,
                         resources_done_cb cb, void *arg, struct error **err);

/*
 * old with req merged in (see above); an owned unpacked message (free with
 * protobuf_c_message_free_unpacked). old may be NULL. Exposed for the unit
 * tests.
 */
Runtime__V1__LinuxContainerResources *
resources_merge(const Runtime__V1__LinuxContainerResources *old,
                const Runtime__V1__LinuxContainerResources *req);

/* A pod's limits: resources + overhead (owned, as above). Either may be NULL. */
Runtime__V1__LinuxContainerResources *
resources_pod_total(const Runtime__V1__LinuxContainerResources *overhead,
                    const Runtime__V1__LinuxContainerResources *resources);

#endif
