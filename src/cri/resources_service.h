/* SPDX-License-Identifier: Apache-2.0 */
/*
 * UpdateContainerResources and UpdatePodSandboxResources: check the
 * request, start the pod/resources operation, reply when it ends (see
 * pod/resources.h for what each does).
 */
#ifndef TINYCRI_CRI_RESOURCES_SERVICE_H
#define TINYCRI_CRI_RESOURCES_SERVICE_H

#include "grpc/router.h"

void resources_service_update_container(struct h2_call *call, const ProtobufCMessage *req,
                                        void *ctx);
void resources_service_update_pod(struct h2_call *call, const ProtobufCMessage *req, void *ctx);

#endif
