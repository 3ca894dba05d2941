/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gRPC method router: maps a call's ":path" to a handler, unpacks the
 * request with protobuf-c and packs replies. The table is built from the
 * protobuf-c service descriptors, so every method of every registered
 * service has an entry; methods without a handler answer UNIMPLEMENTED
 * ("not implemented yet: <Method>") and unknown paths answer UNIMPLEMENTED.
 */
#ifndef TINYCRI_GRPC_ROUTER_H
#define TINYCRI_GRPC_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

struct error;
struct h2_call;
struct router;

/*
 * A handler gets the unpacked request (borrowed: freed when the handler
 * returns; copy what outlives the call) and must end the call with
 * rpc_reply()/rpc_fail(), now or later (keep h2_call_id() for later).
 */
typedef void (*rpc_handler_fn)(struct h2_call *call, const ProtobufCMessage *req, void *ctx);

/* Handlers by method name, for router_add_service(). */
struct rpc_handler {
    const char *method; /* "Version" */
    rpc_handler_fn fn;
};

struct router *router_new(void);
void router_free(struct router *r);

/*
 * Add every method of a service. Handlers are matched by name; a handler
 * naming a method the service lacks is a programming error (assert_state).
 */
void router_add_service(struct router *r, const ProtobufCServiceDescriptor *svc,
                        const struct rpc_handler *handlers, size_t n_handlers, void *ctx);

/* An h2_dispatch_cb; arg is the router. */
void router_dispatch(struct h2_call *call, const char *path, const uint8_t *msg, size_t len,
                     void *arg);

/*
 * The request of a call to path, unpacked as router_dispatch() does before
 * calling the handler; free it with protobuf_c_message_free_unpacked(). NULL
 * with *err set: UNIMPLEMENTED for an unknown path or a method without a
 * handler, RESOURCE_EXHAUSTED for a request with too many fields (or nested
 * too deep), INVALID_ARGUMENT for one that does not parse.
 */
ProtobufCMessage *router_unpack(const struct router *r, const char *path, const uint8_t *msg,
                                size_t len, struct error **err);

/* The method name of a path registered in the router ("Version"), or NULL. */
const char *router_method_name(const struct router *r, const char *path);

/* Pack msg, send it and finish the call with OK. */
void rpc_reply(struct h2_call *call, const ProtobufCMessage *msg);

/* Pack msg and send it on a server-streaming call (not finished). */
int rpc_send(struct h2_call *call, const ProtobufCMessage *msg, struct error **err);

/* Finish the call with the error's code and message. */
void rpc_fail(struct h2_call *call, const struct error *e);

/* Finish the call with a code and message. */
void rpc_fail_code(struct h2_call *call, int grpc_code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
