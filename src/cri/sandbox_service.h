/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pod sandbox RPCs of RuntimeService: RunPodSandbox, StopPodSandbox,
 * RemovePodSandbox, PodSandboxStatus and ListPodSandbox. They validate,
 * start a pod/sandbox operation and reply; the sandbox module holds the
 * state (sandbox_init() must have run). ctx is unused.
 */
#ifndef TINYCRI_CRI_SANDBOX_SERVICE_H
#define TINYCRI_CRI_SANDBOX_SERVICE_H

#include "grpc/router.h"

void sandbox_service_run(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void sandbox_service_stop(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void sandbox_service_remove(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void sandbox_service_status(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void sandbox_service_list(struct h2_call *call, const ProtobufCMessage *req, void *ctx);

#endif
