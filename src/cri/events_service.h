/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GetContainerEvents: a server stream of CONTAINER_CREATED, STARTED,
 * STOPPED and DELETED events, each with the status of the container's pod
 * and of the pod's containers, as kubelet's evented PLEG reads them.
 *
 * Each event is built and packed once, when it happens, and queued on every
 * subscriber's call. A subscriber holds at most EVENTS_BACKLOG_MAX bytes of
 * events its client has not read (one event alone always fits): past that it
 * is cut off (RST_STREAM, which gRPC clients report as RESOURCE_EXHAUSTED)
 * and its memory released, so a client that stops reading never grows the
 * daemon. At most EVENTS_MAX_SUBSCRIBERS at once (RESOURCE_EXHAUSTED
 * beyond). With no subscriber an event costs nothing but the check.
 */
#ifndef TINYCRI_CRI_EVENTS_SERVICE_H
#define TINYCRI_CRI_EVENTS_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include "grpc/router.h"

#define EVENTS_BACKLOG_MAX (1u << 20)
#define EVENTS_MAX_SUBSCRIBERS 64

/* Listen to the container module. Call once, after container_init(). */
void events_service_init(void);

/*
 * End every subscription (UNAVAILABLE, or a cut-off for one with unread
 * events): at shutdown, so the drain does not wait for streams that never end.
 */
void events_service_close_all(void);

void events_service_get(struct h2_call *call, const ProtobufCMessage *req, void *ctx);

/*
 * Queue one packed ContainerEventResponse on every subscriber (cutting off
 * those past the backlog). The container listener calls it for each event;
 * exposed for tests/unit/test_events.c.
 */
void events_service_deliver(const uint8_t *msg, size_t len);

/* Subscribers now (tests). */
size_t events_service_subscribers(void);

#endif
