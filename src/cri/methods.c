/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which CRI methods are built, and by whom. Methods absent from these
 * tables answer UNIMPLEMENTED ("not implemented yet: <Method>").
 */
#include "autoconf.h"

#include <stdlib.h>

#include "api.pb-c.h"
#include "core/util.h"
#include "cri/container_service.h"
#include "cri/events_service.h"
#include "cri/image_service.h"
#include "cri/methods.h"
#include "cri/resources_service.h"
#include "cri/runtime_service.h"
#include "cri/sandbox_service.h"
#include "cri/stats_service.h"
#include "cri/stream_service.h"
#include "grpc/router.h"

static const struct rpc_handler runtime_handlers[] = {
    {"Version", runtime_service_version},
    {"Status", runtime_service_status},
    {"RuntimeConfig", runtime_service_runtime_config},
    {"UpdateRuntimeConfig", runtime_service_update_runtime_config},
    {"RunPodSandbox", sandbox_service_run},
    {"StopPodSandbox", sandbox_service_stop},
    {"RemovePodSandbox", sandbox_service_remove},
    {"PodSandboxStatus", sandbox_service_status},
    {"ListPodSandbox", sandbox_service_list},
    {"StreamPodSandboxes", sandbox_service_stream},
    {"CreateContainer", container_service_create},
    {"StartContainer", container_service_start},
    {"StopContainer", container_service_stop},
    {"RemoveContainer", container_service_remove},
    {"ContainerStatus", container_service_status},
    {"ListContainers", container_service_list},
    {"StreamContainers", container_service_stream},
    {"ExecSync", container_service_exec_sync},
    {"ReopenContainerLog", container_service_reopen_log},
    {"UpdateContainerResources", resources_service_update_container},
    {"UpdatePodSandboxResources", resources_service_update_pod},
    {"ContainerStats", stats_service_container},
    {"ListContainerStats", stats_service_list_containers},
    {"StreamContainerStats", stats_service_stream_containers},
    {"PodSandboxStats", stats_service_pod},
    {"ListPodSandboxStats", stats_service_list_pods},
    {"StreamPodSandboxStats", stats_service_stream_pods},
    {"ListMetricDescriptors", stats_service_metric_descriptors},
    {"ListPodSandboxMetrics", stats_service_list_metrics},
    {"StreamPodSandboxMetrics", stats_service_stream_metrics},
    {"GetContainerEvents", events_service_get},
    {"Exec", stream_service_exec},
    {"Attach", stream_service_attach},
    {"PortForward", stream_service_port_forward},
};

static const struct rpc_handler image_handlers[] = {
    {"PullImage", image_service_pull},      {"ImageStatus", image_service_status},
    {"ListImages", image_service_list},     {"RemoveImage", image_service_remove},
    {"ImageFsInfo", image_service_fs_info}, {"StreamImages", image_service_stream},
};

/* Add a service with its handler table; only, when set, stands in for every handler. */
static void add_service(struct router *r, const ProtobufCServiceDescriptor *svc,
                        const struct rpc_handler *handlers, size_t n, void *ctx,
                        rpc_handler_fn only)
{
    struct rpc_handler *table = xcalloc(n, sizeof(*table));
    for (size_t i = 0; i < n; i++)
        table[i] = (struct rpc_handler){handlers[i].method, only ? only : handlers[i].fn};
    router_add_service(r, svc, table, n, ctx);
    free(table);
}

static struct router *build(void *rs, void *is, rpc_handler_fn only)
{
    struct router *r = router_new();
    add_service(r, &runtime__v1__runtime_service__descriptor, runtime_handlers,
                ARRAY_SIZE(runtime_handlers), rs, only);
    add_service(r, &runtime__v1__image_service__descriptor, image_handlers,
                ARRAY_SIZE(image_handlers), is, only);
    return r;
}

struct router *cri_methods_router_new(struct runtime_service *rs, struct image_service *is)
{
    return build(rs, is, NULL);
}

struct router *cri_methods_router_new_with(rpc_handler_fn fn, void *ctx)
{
    return build(ctx, ctx, fn);
}
