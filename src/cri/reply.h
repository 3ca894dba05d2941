/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Replying to a call after an operation (RunPodSandbox, CreateContainer,
 * PullImage, ExecSync, ...): the one pattern every CRI service uses.
 *
 * A handler makes a struct reply for its call and passes it as the
 * operation's callback argument. The operation's callback runs on the loop,
 * never inside the call that started it (pod/ and image/ promise that), and
 * ends the reply with reply_finish(): the call is looked up again by id, so
 * a caller that left meanwhile (RST_STREAM, deadline, lost connection) gets
 * nothing and the outcome is logged instead. When the operation does not
 * start, the handler frees the reply with reply_free() and fails the call
 * with the error.
 *
 * Operations that should stop when their caller leaves (PullImage, ExecSync)
 * register a cancel function with reply_cancel_with(): it runs instead of
 * the reply, and the operation's callback must not run after it.
 *
 * Also the helpers the services share to build replies from their objects.
 */
#ifndef TINYCRI_CRI_REPLY_H
#define TINYCRI_CRI_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

struct error;
struct h2_call;
struct reply;

/*
 * A reply for call. method ("RunPodSandbox", a string literal) and id (what
 * the request named, copied; NULL for none) name it in the log.
 */
struct reply *reply_new(struct h2_call *call, const char *method, const char *id);

/* Free r without answering (the operation did not start). NULL is a no-op. */
void reply_free(struct reply *r);

/*
 * Answer the call r stands for, if it is still there: err when set, else
 * resp. When the caller has left, the outcome is logged. Frees r.
 */
void reply_finish(struct reply *r, const struct error *err, const ProtobufCMessage *resp);

/* reply_finish() with an empty message of type reply_type on success. */
void reply_finish_empty(struct reply *r, const struct error *err,
                        const ProtobufCMessageDescriptor *reply_type);

/*
 * When the caller goes away before reply_finish(), run cancel(arg) and free
 * r instead. Call it right after the operation started.
 */
void reply_cancel_with(struct reply *r, void (*cancel)(void *arg), void *arg);

/*
 * For a reply that is not one message (a list answered whole or streamed):
 * the call r stands for, to be answered now by the caller, or NULL when the
 * caller has left (then that is logged). A cancel function registered with
 * reply_cancel_with() will not run. Frees r.
 */
struct h2_call *reply_take_call(struct reply *r);

/*
 * Entries of a map<string,string> field whose entry type is entry_type,
 * borrowing keys and values from src (the entries of another map of that
 * shape, n of them). One block: free() it after the reply is sent.
 */
void *reply_map_dup(const ProtobufCMessageDescriptor *entry_type, void *const *src, size_t n);

#endif
