/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The runtime-level RPCs of RuntimeService: Version, Status, RuntimeConfig
 * and UpdateRuntimeConfig. Pod and container RPCs live with their objects.
 */
#ifndef TINYCRI_CRI_RUNTIME_SERVICE_H
#define TINYCRI_CRI_RUNTIME_SERVICE_H

#include "grpc/router.h"

struct config;

struct runtime_service {
    const struct config *cfg; /* borrowed from main, updated in place on reload */
    char *pod_cidr;           /* from UpdateRuntimeConfig; NULL until kubelet sends one */
};

void runtime_service_init(struct runtime_service *rs, const struct config *cfg);
void runtime_service_clear(struct runtime_service *rs);

void runtime_service_version(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void runtime_service_status(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void runtime_service_runtime_config(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void runtime_service_update_runtime_config(struct h2_call *call, const ProtobufCMessage *req,
                                           void *ctx);

#endif
