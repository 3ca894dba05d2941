/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The resource update RPCs (resources_service.h). The reply waits for the
 * operation; a caller that left meanwhile gets nothing and the outcome is
 * logged by pod/resources.
 */
#include "autoconf.h"

#include <stdlib.h>

#include "api.pb-c.h"
#include "core/error.h"
#include "core/util.h"
#include "cri/resources_service.h"
#include "grpc/h2.h"
#include "pod/resources.h"

struct pending {
    uint64_t call_id;
    const ProtobufCMessageDescriptor *ok;
};

static void on_done(const struct error *err, void *arg)
{
    struct pending *p = arg;
    struct h2_call *call = h2_call_lookup(p->call_id);
    if (call && err) {
        rpc_fail(call, err);
    } else if (call) {
        _cleanup_free_ ProtobufCMessage *msg = xcalloc(1, p->ok->sizeof_message);
        protobuf_c_message_init(p->ok, msg);
        rpc_reply(call, msg);
    }
    free(p);
}

static struct pending *pending_new(struct h2_call *call, const ProtobufCMessageDescriptor *ok)
{
    struct pending *p = xcalloc(1, sizeof(*p));
    p->call_id = h2_call_id(call);
    p->ok = ok;
    return p;
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
    struct pending *p =
        pending_new(call, &runtime__v1__update_container_resources_response__descriptor);
    _cleanup_error_ struct error *err = NULL;
    if (resources_update_container(r->container_id, r->linux, on_done, p, &err) < 0) {
        free(p);
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
    struct pending *p =
        pending_new(call, &runtime__v1__update_pod_sandbox_resources_response__descriptor);
    _cleanup_error_ struct error *err = NULL;
    if (resources_update_pod(r->pod_sandbox_id, r->overhead, r->resources, on_done, p, &err) < 0) {
        free(p);
        rpc_fail(call, err);
    }
}
