/* SPDX-License-Identifier: Apache-2.0 */
/*
 * List replies and their streamed twins (list_reply.h). The chunking works
 * on any List response through the protobuf-c descriptors: the one repeated
 * field's items are packed chunk by chunk into messages of the Stream type,
 * whose one field has the same item type.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "cri/list_reply.h"
#include "grpc/h2.h"
#include "grpc/router.h"

static size_t max_send = 16u << 20;

void list_reply_init(size_t limit)
{
    if (limit)
        max_send = limit;
}

/* Bytes a length-delimited field takes around a payload of len bytes (tag 1 + varint). */
static size_t field_overhead(size_t len)
{
    size_t n = 1;
    do {
        n++;
        len >>= 7;
    } while (len);
    return n;
}

ssize_t list_chunk_plan(const size_t *sizes, size_t n, size_t limit, size_t *ends)
{
    size_t chunks = 0, used = 0;
    for (size_t i = 0; i < n; i++) {
        size_t item = sizes[i] + field_overhead(sizes[i]);
        if (item > limit)
            return -1;
        if (used && used + item > limit) {
            ends[chunks++] = i;
            used = 0;
        }
        used += item;
    }
    if (used)
        ends[chunks++] = n;
    return (ssize_t)chunks;
}

/* The one repeated message field of a List or Stream response. */
static const ProtobufCFieldDescriptor *items_field(const ProtobufCMessageDescriptor *d)
{
    assert_state(d->n_fields == 1);
    const ProtobufCFieldDescriptor *f = &d->fields[0];
    assert_state(f->label == PROTOBUF_C_LABEL_REPEATED && f->type == PROTOBUF_C_TYPE_MESSAGE);
    return f;
}

static void stream_items(struct h2_call *call, const ProtobufCMessage *resp,
                         const struct list_mode *m)
{
    const ProtobufCFieldDescriptor *lf = items_field(resp->descriptor);
    const ProtobufCFieldDescriptor *sf = items_field(m->stream_desc);
    assert_state(lf->descriptor == sf->descriptor);
    size_t n = *(const size_t *)((const char *)resp + lf->quantifier_offset);
    ProtobufCMessage *const *items =
        *(ProtobufCMessage *const *const *)((const char *)resp + lf->offset);

    _cleanup_free_ size_t *sizes = xcalloc(n + 1, sizeof(size_t));
    _cleanup_free_ size_t *ends = xcalloc(n + 1, sizeof(size_t));
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        sizes[i] = protobuf_c_message_get_packed_size(items[i]);
        total += sizes[i] + field_overhead(sizes[i]);
    }
    size_t limit = max_send < LIST_CHUNK_MAX ? max_send : LIST_CHUNK_MAX;
    ssize_t chunks = list_chunk_plan(sizes, n, limit, ends);
    if (chunks < 0) {
        rpc_fail_code(call, GRPC_RESOURCE_EXHAUSTED,
                      "%s: one record is larger than the %zu-byte message limit", m->stream_method,
                      limit);
        return;
    }
    if (total + 5 * (size_t)chunks > LIST_STREAM_MAX) {
        rpc_fail_code(call, GRPC_RESOURCE_EXHAUSTED,
                      "%s: %zu records take %zu bytes, more than the %u a stream may queue",
                      m->stream_method, n, total, LIST_STREAM_MAX);
        return;
    }
    /* Every chunk is queued now; the call holds them until the client has read them. */
    h2_call_set_out_cap(call, total + 5 * (size_t)chunks);
    _cleanup_free_ ProtobufCMessage *msg = xcalloc(1, m->stream_desc->sizeof_message);
    size_t start = 0;
    for (ssize_t k = 0; k < chunks; k++) {
        protobuf_c_message_init(m->stream_desc, msg);
        *(size_t *)((char *)msg + sf->quantifier_offset) = ends[k] - start;
        *(ProtobufCMessage ***)((char *)msg + sf->offset) = (ProtobufCMessage **)(items + start);
        _cleanup_error_ struct error *err = NULL;
        if (rpc_send(call, msg, &err) < 0) {
            rpc_fail(call, err);
            return;
        }
        start = ends[k];
    }
    log_debug("streamed list rpc=%s records=%zu messages=%zd bytes=%zu", m->stream_method, n,
              chunks, total);
    h2_call_finish(call, GRPC_OK, NULL);
}

void list_finish(struct h2_call *call, const ProtobufCMessage *resp, const struct list_mode *m)
{
    if (m->stream) {
        stream_items(call, resp, m);
        return;
    }
    size_t size = protobuf_c_message_get_packed_size(resp);
    if (size > max_send) {
        const ProtobufCFieldDescriptor *lf = items_field(resp->descriptor);
        size_t n = *(const size_t *)((const char *)resp + lf->quantifier_offset);
        rpc_fail_code(call, GRPC_RESOURCE_EXHAUSTED,
                      "%s: the reply (%zu records, %zu bytes) is larger than the %zu-byte message "
                      "limit; use %s, which sends them in parts",
                      m->list_method, n, size, max_send, m->stream_method);
        return;
    }
    rpc_reply(call, resp);
}
