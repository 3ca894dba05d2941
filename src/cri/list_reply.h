/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One way to answer a listing, whole or streamed. Each List call has a
 * streamed twin (ListContainers / StreamContainers, ...): both build the
 * same List response, then list_finish() either sends it as one message or
 * sends its items in chunks.
 *
 *  - A List reply that would exceed the send limit is not sent: the call
 *    fails with RESOURCE_EXHAUSTED naming the streamed call to use instead
 *    (never a truncated reply).
 *  - A Stream call gets its items in messages of the streamed type, each
 *    below LIST_CHUNK_MAX and the send limit and holding at least one item,
 *    every item in exactly one message, then OK. No items: no message.
 *
 * Every List response and its Stream twin have exactly one field, a
 * repeated message of the same type; list_finish() relies on that.
 */
#ifndef TINYCRI_CRI_LIST_REPLY_H
#define TINYCRI_CRI_LIST_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

struct h2_call;

/* Chunks of a streamed list stay below this (and below the send limit). */
#define LIST_CHUNK_MAX (4u << 20)
/* A streamed list never queues more than this for one call (RESOURCE_EXHAUSTED beyond). */
#define LIST_STREAM_MAX (512u << 20)

struct list_mode {
    bool stream;
    const char *list_method;   /* "ListContainers" */
    const char *stream_method; /* "StreamContainers" */
    const ProtobufCMessageDescriptor *stream_desc;
};

/* The send limit (max_send_message_size). Call once at start-up. */
void list_reply_init(size_t max_send);

/* Answer the call with resp (a List response) as m says, and finish it. */
void list_finish(struct h2_call *call, const ProtobufCMessage *resp, const struct list_mode *m);

/*
 * Split n items (their packed sizes in sizes[]) into chunks: ends[k] is one
 * past the last item of chunk k. Returns the number of chunks, or -1 when
 * one item alone is over limit. Exposed for the unit tests.
 */
ssize_t list_chunk_plan(const size_t *sizes, size_t n, size_t limit, size_t *ends);

#endif
