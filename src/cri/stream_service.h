/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The streaming RPCs of RuntimeService: Exec, Attach and PortForward. Each
 * validates its request, caches it in the streaming server and answers
 * with the URL the client streams on (src/stream/server.h). This module also
 * owns the streaming server and gives it what it needs from containers and
 * pods (struct stream_backend), so the stream layer never calls the pod
 * layer itself.
 */
#ifndef TINYCRI_CRI_STREAM_SERVICE_H
#define TINYCRI_CRI_STREAM_SERVICE_H

#include "grpc/router.h"

struct config;
struct error;

/* Start the streaming server with the [stream] settings (cfg borrowed for the daemon's life). */
int stream_service_init(const struct config *cfg, struct error **err);
/* Stop it: every session ends (processes are killed as for a client that left). */
void stream_service_shutdown(void);
/* A reloaded config: timeouts apply to new sessions and URLs. */
void stream_service_reload(const struct config *cfg);

/* The base URL ("http://127.0.0.1:41234"), or NULL when not serving. */
const char *stream_service_url(void);

void stream_service_exec(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void stream_service_attach(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void stream_service_port_forward(struct h2_call *call, const ProtobufCMessage *req, void *ctx);

#endif
