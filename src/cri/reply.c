/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Implementation of reply.h.
 */
#include "autoconf.h"

#include <stdlib.h>

#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "cri/reply.h"
#include "grpc/h2.h"
#include "grpc/router.h"

struct reply {
    uint64_t call_id;
    const char *method;
    char *id;
    void (*cancel)(void *arg);
    void *cancel_arg;
};

struct reply *reply_new(struct h2_call *call, const char *method, const char *id)
{
    struct reply *r = xcalloc(1, sizeof(*r));
    r->call_id = h2_call_id(call);
    r->method = method;
    r->id = id ? xstrdup(id) : NULL;
    return r;
}

void reply_free(struct reply *r)
{
    if (!r)
        return;
    free(r->id);
    free(r);
}

/* The call still waiting for r, or NULL (then the outcome is logged here). Frees r. */
static struct h2_call *take(struct reply *r, const struct error *err)
{
    struct h2_call *call = h2_call_lookup(r->call_id);
    const char *id = r->id ? r->id : "-";
    if (!call && err)
        log_warn("rpc failed after its caller left rpc=%s id=%s: %s", r->method, id, err->msg);
    else if (!call)
        log_info("rpc done after its caller left rpc=%s id=%s", r->method, id);
    reply_free(r);
    return call;
}

void reply_finish(struct reply *r, const struct error *err, const ProtobufCMessage *resp)
{
    struct h2_call *call = take(r, err);
    if (call && err)
        rpc_fail(call, err);
    else if (call)
        rpc_reply(call, resp);
}

void reply_finish_empty(struct reply *r, const struct error *err,
                        const ProtobufCMessageDescriptor *reply_type)
{
    _cleanup_free_ ProtobufCMessage *msg = xcalloc(1, reply_type->sizeof_message);
    protobuf_c_message_init(reply_type, msg);
    reply_finish(r, err, msg);
}

static void on_call_cancelled(uint64_t call_id, void *arg)
{
    struct reply *r = arg;
    log_debug("rpc cancelled by its caller rpc=%s call=%llu", r->method,
              (unsigned long long)call_id);
    r->cancel(r->cancel_arg);
    reply_free(r);
}

void reply_cancel_with(struct reply *r, void (*cancel)(void *arg), void *arg)
{
    struct h2_call *call = h2_call_lookup(r->call_id);
    assert_state(call); /* registered by the handler, while its call lives */
    r->cancel = cancel;
    r->cancel_arg = arg;
    h2_call_on_cancel(call, on_call_cancelled, r);
}

struct h2_call *reply_take_call(struct reply *r)
{
    bool cancellable = r->cancel != NULL;
    struct h2_call *call = take(r, NULL);
    if (call && cancellable)
        h2_call_on_cancel(call, NULL, NULL);
    return call;
}

/* Every protobuf-c map entry message has this layout. */
struct kv_entry {
    ProtobufCMessage base;
    char *key;
    char *value;
};

void *reply_map_dup(const ProtobufCMessageDescriptor *entry_type, void *const *src, size_t n)
{
    assert_state(entry_type->sizeof_message == sizeof(struct kv_entry));
    void **ptrs = xcalloc(n + 1, sizeof(void *) + sizeof(struct kv_entry));
    struct kv_entry *entries = (struct kv_entry *)(ptrs + n + 1);
    for (size_t i = 0; i < n; i++) {
        const struct kv_entry *s = src[i];
        protobuf_c_message_init(entry_type, &entries[i]);
        entries[i].key = s->key;
        entries[i].value = s->value;
        ptrs[i] = &entries[i];
    }
    return ptrs;
}
