/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The resource update RPCs (resources_service.h). The reply waits for the
 * operation (cri/reply: a caller that left meanwhile gets nothing, and the
 * outcome is logged).
 */
#include "autoconf.h"

#include <stdlib.h>

#include "api.pb-c.h"
#include "core/error.h"
#include "core/util.h"
#include "cri/reply.h"
#include "cri/resources_service.h"
#include "grpc/h2.h"
#include "pod/resources.h"

static void on_container_done(const struct error *err, void *arg)
{
    reply_finish_empty(arg, err, &runtime__v1__update_container_resources_response__descriptor);
}

static void on_pod_done(const struct error *err, void *arg)
{
    reply_finish_empty(arg, err, &runtime__v1__update_pod_sandbox_resources_response__descriptor);
}

void resources_service_update_container(struct h2_call *call, const ProtobufCMessage *req,
                                        void *ctx)
{
    const Runtime__V1__UpdateContainerResourcesRequest *r =
        (const Runtime__V1__UpdateContainerResourcesRequest *)req;
    if (!r->container_id || !*r->container_id) {
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT,
                      "UpdateContainerResources: container_id is required");
        return;
    }
    if (!r->linux) {
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT,
                      "UpdateContainerResources: linux resources are required (this is a Linux "
                      "runtime)");
        return;
    }
    struct reply *rep = reply_new(call, "UpdateContainerResources", r->container_id);
    _cleanup_error_ struct error *err = NULL;
    if (resources_update_container(r->container_id, r->linux, on_container_done, rep, &err) < 0) {
        reply_free(rep);
        rpc_fail(call, err);
    }
}

void resources_service_update_pod(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    const Runtime__V1__UpdatePodSandboxResourcesRequest *r =
        (const Runtime__V1__UpdatePodSandboxResourcesRequest *)req;
    if (!r->pod_sandbox_id || !*r->pod_sandbox_id) {
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT,
                      "UpdatePodSandboxResources: pod_sandbox_id is required");
        return;
    }
    if (!r->resources && !r->overhead) {
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT,
                      "UpdatePodSandboxResources: resources or overhead is required");
        return;
    }
    struct reply *rep = reply_new(call, "UpdatePodSandboxResources", r->pod_sandbox_id);
    _cleanup_error_ struct error *err = NULL;
    if (resources_update_pod(r->pod_sandbox_id, r->overhead, r->resources, on_pod_done, rep, &err) <
        0) {
        reply_free(rep);
        rpc_fail(call, err);
    }
}
