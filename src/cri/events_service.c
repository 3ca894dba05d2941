/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Container events fanned out to GetContainerEvents subscribers
 * (events_service.h). Subscribers are kept by call id: a call that went away
 * is dropped the next time an event finds it missing, or at once through
 * its cancel callback.
 */
#include "autoconf.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "api.pb-c.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "cri/container_service.h"
#include "cri/events_service.h"
#include "cri/sandbox_service.h"
#include "grpc/h2.h"
#include "pod/container.h"
#include "pod/sandbox.h"

struct subscriber {
    TAILQ_ENTRY(subscriber) link;
    uint64_t call_id;
};

static struct {
    TAILQ_HEAD(, subscriber) subs;
    size_t n;
    uint64_t sent; /* events sent, for logs */
} ev = {.subs = TAILQ_HEAD_INITIALIZER(ev.subs)};

static void sub_remove(struct subscriber *s)
{
    TAILQ_REMOVE(&ev.subs, s, link);
    ev.n--;
    free(s);
}

static struct subscriber *sub_find(uint64_t call_id)
{
    struct subscriber *s;
    TAILQ_FOREACH (s, &ev.subs, link)
        if (s->call_id == call_id)
            return s;
    return NULL;
}

static void on_subscriber_gone(uint64_t call_id, void *arg)
{
    struct subscriber *s = sub_find(call_id);
    if (s) {
        log_debug("container events subscriber left call=%" PRIu64, call_id);
        sub_remove(s);
    }
}

static Runtime__V1__ContainerEventType event_type(enum container_event e)
{
    switch (e) {
    case CONTAINER_EVENT_CREATED:
        return RUNTIME__V1__CONTAINER_EVENT_TYPE__CONTAINER_CREATED_EVENT;
    case CONTAINER_EVENT_STARTED:
        return RUNTIME__V1__CONTAINER_EVENT_TYPE__CONTAINER_STARTED_EVENT;
    case CONTAINER_EVENT_STOPPED:
        return RUNTIME__V1__CONTAINER_EVENT_TYPE__CONTAINER_STOPPED_EVENT;
    case CONTAINER_EVENT_DELETED:
        break;
    }
    return RUNTIME__V1__CONTAINER_EVENT_TYPE__CONTAINER_DELETED_EVENT;
}

/* The packed event (owned). */
static uint8_t *pack_event(const struct container *c, enum container_event e, size_t *len)
{
    Runtime__V1__ContainerEventResponse msg = RUNTIME__V1__CONTAINER_EVENT_RESPONSE__INIT;
    msg.container_id = c->id;
    msg.container_event_type = event_type(e);
    msg.created_at = now_realtime_ns();
    const struct sandbox *sb = sandbox_find(c->sandbox_id);
    struct sandbox_status_msg sm;
    bool have_sb = sb && strcmp(sb->id, c->sandbox_id) == 0;
    if (have_sb) {
        sandbox_status_msg_fill(&sm, sb);
        msg.pod_sandbox_status = &sm.st;
    }
    struct sandbox_containers_msg cm;
    sandbox_containers_msg_fill(&cm, c->sandbox_id);
    msg.n_containers_statuses = cm.n;
    msg.containers_statuses = cm.ptrs;
    *len = protobuf_c_message_get_packed_size(&msg.base);
    uint8_t *buf = xmalloc(*len ? *len : 1);
    protobuf_c_message_pack(&msg.base, buf);
    sandbox_containers_msg_clear(&cm);
    if (have_sb)
        sandbox_status_msg_clear(&sm);
    return buf;
}

void events_service_deliver(const uint8_t *msg, size_t len)
{
    ev.sent++;
    struct subscriber *next;
    for (struct subscriber *s = TAILQ_FIRST(&ev.subs); s; s = next) {
        next = TAILQ_NEXT(s, link);
        struct h2_call *call = h2_call_lookup(s->call_id);
        if (!call) {
            sub_remove(s);
            continue;
        }
        /* One event always fits; past the backlog, a client that stopped reading goes. */
        size_t pending = h2_call_out_pending(call);
        if (pending && pending + len + 5 > EVENTS_BACKLOG_MAX) {
            log_warn("container events subscriber too slow, cut off call=%" PRIu64
                     " unread_bytes=%zu",
                     s->call_id, pending);
            h2_call_cut_off(call);
            sub_remove(s);
            continue;
        }
        _cleanup_error_ struct error *err = NULL;
        if (h2_call_send(call, msg, len, &err) < 0) {
            rpc_fail(call, err);
            sub_remove(s);
        }
    }
}

static void on_container_event(const struct container *c, enum container_event e, void *arg)
{
    if (!ev.n)
        return;
    size_t len = 0;
    _cleanup_free_ uint8_t *buf = pack_event(c, e, &len);
    events_service_deliver(buf, len);
    log_debug("container event container=%s type=%s subscribers=%zu bytes=%zu", c->id,
              protobuf_c_enum_descriptor_get_value(&runtime__v1__container_event_type__descriptor,
                                                   (int)event_type(e))
                  ->name,
              ev.n, len);
}

void events_service_init(void)
{
    container_add_event_listener(on_container_event, NULL);
}

void events_service_close_all(void)
{
    struct subscriber *s;
    while ((s = TAILQ_FIRST(&ev.subs))) {
        struct h2_call *call = h2_call_lookup(s->call_id);
        if (call && h2_call_out_pending(call))
            h2_call_cut_off(call);
        else if (call)
            rpc_fail_code(call, GRPC_UNAVAILABLE, "tinycrid is shutting down");
        sub_remove(s);
    }
}

size_t events_service_subscribers(void)
{
    return ev.n;
}

void events_service_get(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    if (ev.n >= EVENTS_MAX_SUBSCRIBERS) {
        rpc_fail_code(call, GRPC_RESOURCE_EXHAUSTED,
                      "GetContainerEvents: %d subscribers already listen", EVENTS_MAX_SUBSCRIBERS);
        return;
    }
    _cleanup_error_ struct error *err = NULL;
    /* Headers at once: the client sees the subscription is in place before any event. */
    if (h2_call_send_headers(call, &err) < 0) {
        rpc_fail(call, err);
        return;
    }
    struct subscriber *s = xcalloc(1, sizeof(*s));
    s->call_id = h2_call_id(call);
    TAILQ_INSERT_TAIL(&ev.subs, s, link);
    ev.n++;
    h2_call_on_cancel(call, on_subscriber_gone, NULL);
    log_debug("container events subscriber joined call=%" PRIu64 " subscribers=%zu", s->call_id,
              ev.n);
}
