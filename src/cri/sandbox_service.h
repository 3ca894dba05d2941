/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pod sandbox RPCs of RuntimeService: RunPodSandbox, StopPodSandbox,
 * RemovePodSandbox, PodSandboxStatus (with its containers' statuses, as
 * kubelet's evented PLEG expects), ListPodSandbox and StreamPodSandboxes. They validate,
 * start a pod/sandbox operation and reply; the sandbox module holds the
 * state (sandbox_init() must have run). ctx is unused.
 */
#ifndef TINYCRI_CRI_SANDBOX_SERVICE_H
#define TINYCRI_CRI_SANDBOX_SERVICE_H

#include <stddef.h>

#include "api.pb-c.h"
#include "cri/container_service.h"
#include "grpc/router.h"

struct sandbox;

/*
 * A PodSandboxStatus message for sb, as PodSandboxStatus answers it (without
 * the verbose info), borrowing sb's strings: use it within the loop turn,
 * then sandbox_status_msg_clear(). Container events carry these too.
 */
struct sandbox_status_msg {
    Runtime__V1__PodSandboxStatus st;
    Runtime__V1__PodSandboxNetworkStatus net;
    Runtime__V1__NamespaceOption nsopt;
    Runtime__V1__Namespace ns;
    Runtime__V1__LinuxPodSandboxStatus linux_status;
    void *extra, *extra_ptrs, *labels, *annotations;
};
void sandbox_status_msg_fill(struct sandbox_status_msg *m, const struct sandbox *sb);
void sandbox_status_msg_clear(struct sandbox_status_msg *m);

/* The statuses of a pod's containers (PodSandboxStatusResponse.containers_statuses). */
struct sandbox_containers_msg {
    struct container_status_msg *msgs;
    Runtime__V1__ContainerStatus **ptrs;
    size_t n;
};
void sandbox_containers_msg_fill(struct sandbox_containers_msg *m, const char *sandbox_id);
void sandbox_containers_msg_clear(struct sandbox_containers_msg *m);

void sandbox_service_run(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void sandbox_service_stop(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void sandbox_service_remove(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void sandbox_service_status(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void sandbox_service_list(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void sandbox_service_stream(struct h2_call *call, const ProtobufCMessage *req, void *ctx);

#endif
