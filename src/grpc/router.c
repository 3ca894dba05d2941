/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Method routing and protobuf-c packing for gRPC calls. The method table is
 * sorted by path once all services are added, and looked up by bsearch.
 */
#include "autoconf.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "grpc/h2.h"
#include "grpc/router.h"

struct route {
    char *path;
    const char *name;
    const ProtobufCMessageDescriptor *input;
    rpc_handler_fn fn;
    void *ctx;
};

struct router {
    struct route *routes;
    size_t n;
    bool sorted;
};

struct router *router_new(void)
{
    return xcalloc(1, sizeof(struct router));
}

void router_free(struct router *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        free(r->routes[i].path);
    free(r->routes);
    free(r);
}

static int route_cmp(const void *a, const void *b)
{
    return strcmp(((const struct route *)a)->path, ((const struct route *)b)->path);
}

void router_add_service(struct router *r, const ProtobufCServiceDescriptor *svc,
                        const struct rpc_handler *handlers, size_t n_handlers, void *ctx)
{
    r->routes = xrealloc(r->routes, (r->n + svc->n_methods) * sizeof(*r->routes));
    for (unsigned i = 0; i < svc->n_methods; i++) {
        const ProtobufCMethodDescriptor *m = &svc->methods[i];
        struct route *rt = &r->routes[r->n++];
        rt->path = xasprintf("/%s/%s", svc->name, m->name);
        rt->name = m->name;
        rt->input = m->input;
        rt->fn = NULL;
        rt->ctx = ctx;
        for (size_t h = 0; h < n_handlers; h++) {
            if (strcmp(handlers[h].method, m->name) == 0)
                rt->fn = handlers[h].fn;
        }
    }
    for (size_t h = 0; h < n_handlers; h++) {
        bool found = false;
        for (unsigned i = 0; i < svc->n_methods; i++)
            found = found || strcmp(handlers[h].method, svc->methods[i].name) == 0;
        assert_state(found);
    }
    qsort(r->routes, r->n, sizeof(*r->routes), route_cmp);
    r->sorted = true;
}

static const struct route *find_route(const struct router *r, const char *path)
{
    struct route key = {.path = (char *)path};
    return bsearch(&key, r->routes, r->n, sizeof(*r->routes), route_cmp);
}

const char *router_method_name(const struct router *r, const char *path)
{
    const struct route *rt = find_route(r, path);
    return rt ? rt->name : NULL;
}

void router_dispatch(struct h2_call *call, const char *path, const uint8_t *msg, size_t len,
                     void *arg)
{
    const struct router *r = arg;
    const struct route *rt = find_route(r, path);
    if (!rt) {
        rpc_fail_code(call, GRPC_UNIMPLEMENTED, "unknown method %s", path);
        return;
    }
    if (!rt->fn) {
        rpc_fail_code(call, GRPC_UNIMPLEMENTED, "not implemented yet: %s", rt->name);
        return;
    }
    ProtobufCMessage *req = protobuf_c_message_unpack(rt->input, NULL, len, msg);
    if (!req) {
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT, "cannot parse the %s request (%zu bytes)",
                      rt->name, len);
        return;
    }
    log_debug("rpc start rpc=%s call=%llu", rt->name, (unsigned long long)h2_call_id(call));
    rt->fn(call, req, rt->ctx);
    protobuf_c_message_free_unpacked(req, NULL);
}

static int pack_and_send(struct h2_call *call, const ProtobufCMessage *msg, struct error **err)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    _cleanup_free_ uint8_t *buf = xmalloc(len);
    protobuf_c_message_pack(msg, buf);
    return h2_call_send(call, buf, len, err);
}

void rpc_reply(struct h2_call *call, const ProtobufCMessage *msg)
{
    _cleanup_error_ struct error *err = NULL;
    if (pack_and_send(call, msg, &err) < 0) {
        rpc_fail(call, err);
        return;
    }
    h2_call_finish(call, GRPC_OK, NULL);
}

int rpc_send(struct h2_call *call, const ProtobufCMessage *msg, struct error **err)
{
    return pack_and_send(call, msg, err);
}

void rpc_fail(struct h2_call *call, const struct error *e)
{
    int code = e->grpc_code == GRPC_OK ? GRPC_UNKNOWN : e->grpc_code;
    log_debug("rpc failed call=%llu code=%s msg=%s", (unsigned long long)h2_call_id(call),
              grpc_code_name(code), e->msg);
    h2_call_finish(call, code, e->msg);
}

void rpc_fail_code(struct h2_call *call, int grpc_code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    log_debug("rpc failed call=%llu code=%s msg=%s", (unsigned long long)h2_call_id(call),
              grpc_code_name(grpc_code), msg);
    h2_call_finish(call, grpc_code, msg);
}
