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

/*
 * protobuf-c allocates for every field it meets on the wire: 40 to 100 bytes
 * for each one, be it repeated, a singular field sent again, or unknown, and
 * 4 or 8 bytes for each element of a packed array, however short its
 * encoding. A 16 MiB request made of 2-byte fields would take hundreds of
 * MiB to unpack; a request with more fields than this is refused first.
 */
#define MAX_REQUEST_FIELDS (128u << 10)
/* The CRI schema is not recursive; this only bounds the walk below. */
#define MAX_REQUEST_DEPTH 32

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

/* Read a varint at *i; false when it is cut short or longer than 10 bytes. */
static bool read_varint(const uint8_t *p, size_t len, size_t *i, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 70 && *i < len; shift += 7) {
        uint8_t b = p[(*i)++];
        *v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

/* Elements in a packed array of field f (len bytes of payload p); 0 when f is not one. */
static size_t packed_count(const ProtobufCFieldDescriptor *f, const uint8_t *p, size_t len)
{
    if (!f || f->label != PROTOBUF_C_LABEL_REPEATED)
        return 0;
    switch (f->type) {
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        return len / 4;
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return len / 8;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        return 0;
    default: {
        /* A varint type: each element ends with a byte below 0x80. */
        size_t n = 0;
        for (size_t i = 0; i < len; i++)
            n += p[i] < 0x80;
        return n;
    }
    }
}

/* The largest field number protobuf allows (2^29 - 1). */
#define MAX_FIELD_NUMBER ((1u << 29) - 1)

/*
 * Count the fields of a message of type desc in p[0..len), those of nested
 * messages and the elements of packed arrays included, into *n. Returns -1
 * once *n passes MAX_REQUEST_FIELDS or the nesting MAX_REQUEST_DEPTH, and -2
 * for a field number outside 1..2^29-1, which protobuf-c lets through when
 * its key is an overlong varint ("80 00" is field 0) and then packs as
 * something else. Other malformed input ends the walk without error: the
 * unpacker rejects it.
 */
static int count_fields(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len,
                        unsigned depth, size_t *n)
{
    if (depth > MAX_REQUEST_DEPTH)
        return -1;
    size_t i = 0;
    while (i < len) {
        uint64_t key, v;
        if (!read_varint(p, len, &i, &key))
            return 0;
        if (key >> 3 == 0 || key >> 3 > MAX_FIELD_NUMBER)
            return -2;
        if (++*n > MAX_REQUEST_FIELDS)
            return -1;
        switch (key & 7) {
        case 0:
            if (!read_varint(p, len, &i, &v))
                return 0;
            break;
        case 1:
            if (len - i < 8)
                return 0;
            i += 8;
            break;
        case 5:
            if (len - i < 4)
                return 0;
            i += 4;
            break;
        case 2: {
            if (!read_varint(p, len, &i, &v) || v > len - i)
                return 0;
            const ProtobufCFieldDescriptor *f =
                key >> 3 <= UINT32_MAX
                    ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3))
                    : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                int rc = count_fields(f->descriptor, p + i, (size_t)v, depth + 1, n);
                if (rc < 0)
                    return rc;
            } else {
                *n += packed_count(f, p + i, (size_t)v);
                if (*n > MAX_REQUEST_FIELDS)
                    return -1;
            }
            i += (size_t)v;
            break;
        }
        default:
            return 0; /* groups and invalid wire types */
        }
    }
    return 0;
}

const char *router_method_name(const struct router *r, const char *path)
{
    const struct route *rt = find_route(r, path);
    return rt ? rt->name : NULL;
}

/* Unpack a request for rt (which has a handler): the field-count guard, then protobuf-c. */
static ProtobufCMessage *route_unpack(const struct route *rt, const uint8_t *msg, size_t len,
                                      struct error **err)
{
    size_t n_fields = 0;
    int counted = count_fields(rt->input, msg, len, 0, &n_fields);
    if (counted == -1)
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0,
                         "the %s request has more than %u fields or is nested more than %d deep",
                         rt->name, MAX_REQUEST_FIELDS, MAX_REQUEST_DEPTH),
               NULL;
    ProtobufCMessage *req =
        counted == 0 ? protobuf_c_message_unpack(rt->input, NULL, len, msg) : NULL;
    if (!req)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "cannot parse the %s request (%zu bytes)",
                         rt->name, len),
               NULL;
    return req;
}

/* The route of a path that has a handler, or NULL with UNIMPLEMENTED. */
static const struct route *route_served(const struct router *r, const char *path,
                                        struct error **err)
{
    const struct route *rt = find_route(r, path);
    if (!rt)
        return error_set(err, GRPC_UNIMPLEMENTED, 0, "unknown method %s", path), NULL;
    if (!rt->fn)
        return error_set(err, GRPC_UNIMPLEMENTED, 0, "not implemented yet: %s", rt->name), NULL;
    return rt;
}

ProtobufCMessage *router_unpack(const struct router *r, const char *path, const uint8_t *msg,
                                size_t len, struct error **err)
{
    const struct route *rt = route_served(r, path, err);
    return rt ? route_unpack(rt, msg, len, err) : NULL;
}

void router_dispatch(struct h2_call *call, const char *path, const uint8_t *msg, size_t len,
                     void *arg)
{
    const struct router *r = arg;
    _cleanup_error_ struct error *err = NULL;
    const struct route *rt = route_served(r, path, &err);
    ProtobufCMessage *req = rt ? route_unpack(rt, msg, len, &err) : NULL;
    if (!req) {
        rpc_fail(call, err);
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
