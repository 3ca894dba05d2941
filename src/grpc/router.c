/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Method routing and protobuf-c packing for gRPC calls. The method table is
 * sorted by path once all services are added, and looked up by bsearch.
 */
#include "autoconf.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "core/text.h"
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

enum walk_result {
    WALK_OK = 0,
    WALK_TOO_BIG = -1,    /* more than MAX_REQUEST_FIELDS, or nested too deep */
    WALK_BAD_FIELD = -2,  /* a field number outside 1..2^29-1 */
    WALK_BAD_STRING = -3, /* a string field with a NUL byte, or not UTF-8 */
};

/* What walk() found in a request. */
struct walk {
    size_t n;                                 /* fields seen */
    const char *names[MAX_REQUEST_DEPTH + 2]; /* the field being walked, per level */
    const char *problem;                      /* WALK_BAD_STRING: what is wrong */
    char where[256];                          /* WALK_BAD_STRING: "config.log_path" */
};

/* Is this string field's payload fit for a C string and for proto3? */
static enum walk_result check_string(struct walk *w, unsigned depth, const uint8_t *p, size_t len)
{
    if (memchr(p, '\0', len))
        w->problem = "a NUL byte";
    else if (!text_is_utf8((const char *)p, len))
        w->problem = "invalid UTF-8";
    else
        return WALK_OK;
    size_t o = 0;
    for (unsigned d = 0; d <= depth && o < sizeof(w->where); d++) {
        int n = snprintf(w->where + o, sizeof(w->where) - o, "%s%s", d ? "." : "", w->names[d]);
        o += n > 0 ? (size_t)n : 0;
    }
    return WALK_BAD_STRING;
}

/*
 * Walk a request of type desc in p[0..len) before protobuf-c unpacks it, one
 * check for every message of every method:
 *  - count its fields, those of nested messages and the elements of packed
 *    arrays included: WALK_TOO_BIG past MAX_REQUEST_FIELDS or nested deeper
 *    than MAX_REQUEST_DEPTH;
 *  - refuse field numbers outside 1..2^29-1, which protobuf-c lets through
 *    when the key is an overlong varint ("80 00" is field 0) and then packs
 *    as something else: WALK_BAD_FIELD;
 *  - refuse a string field (proto3 string, not bytes) holding a NUL byte,
 *    which would cut the C string protobuf-c makes of it, or that is not
 *    UTF-8, as proto3 requires: WALK_BAD_STRING, with the field's path.
 * Other malformed input ends the walk without error: the unpacker rejects it.
 */
static enum walk_result walk(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len,
                             unsigned depth, struct walk *w)
{
    if (depth > MAX_REQUEST_DEPTH)
        return WALK_TOO_BIG;
    size_t i = 0;
    while (i < len) {
        uint64_t key, v;
        if (!read_varint(p, len, &i, &key))
            return WALK_OK;
        if (key >> 3 == 0 || key >> 3 > MAX_FIELD_NUMBER)
            return WALK_BAD_FIELD;
        if (++w->n > MAX_REQUEST_FIELDS)
            return WALK_TOO_BIG;
        switch (key & 7) {
        case 0:
            if (!read_varint(p, len, &i, &v))
                return WALK_OK;
            break;
        case 1:
            if (len - i < 8)
                return WALK_OK;
            i += 8;
            break;
        case 5:
            if (len - i < 4)
                return WALK_OK;
            i += 4;
            break;
        case 2: {
            if (!read_varint(p, len, &i, &v) || v > len - i)
                return WALK_OK;
            const ProtobufCFieldDescriptor *f =
                protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3));
            enum walk_result r = WALK_OK;
            if (f)
                w->names[depth] = f->name;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                r = walk(f->descriptor, p + i, (size_t)v, depth + 1, w);
            } else if (f && f->type == PROTOBUF_C_TYPE_STRING) {
                r = check_string(w, depth, p + i, (size_t)v);
            } else {
                w->n += packed_count(f, p + i, (size_t)v);
                if (w->n > MAX_REQUEST_FIELDS)
                    r = WALK_TOO_BIG;
            }
            if (r != WALK_OK)
                return r;
            i += (size_t)v;
            break;
        }
        default:
            return WALK_OK; /* groups and invalid wire types */
        }
    }
    return WALK_OK;
}

const char *router_method_name(const struct router *r, const char *path)
{
    const struct route *rt = find_route(r, path);
    return rt ? rt->name : NULL;
}

/*
 * Unpack a request for rt (which has a handler): walk() first, then
 * protobuf-c. This is the request boundary: what passes holds no string a C
 * string would cut, so handlers need not check each field for NUL bytes.
 */
static ProtobufCMessage *route_unpack(const struct route *rt, const uint8_t *msg, size_t len,
                                      struct error **err)
{
    struct walk w = {.n = 0};
    switch (walk(rt->input, msg, len, 0, &w)) {
    case WALK_OK:
        break;
    case WALK_TOO_BIG:
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0,
                         "the %s request has more than %u fields or is nested more than %d deep",
                         rt->name, MAX_REQUEST_FIELDS, MAX_REQUEST_DEPTH),
               NULL;
    case WALK_BAD_STRING:
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "the %s request has %s in %s", rt->name,
                         w.problem, w.where),
               NULL;
    case WALK_BAD_FIELD:
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "cannot parse the %s request (%zu bytes)",
                         rt->name, len),
               NULL;
    }
    ProtobufCMessage *req = protobuf_c_message_unpack(rt->input, NULL, len, msg);
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
    log_debug("rpc failed call=%llu code=%s err=%s", (unsigned long long)h2_call_id(call),
              grpc_code_name(code), e->msg);
    h2_call_finish(call, code, e->msg);
}

void rpc_fail_code(struct h2_call *call, int grpc_code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    log_debug("rpc failed call=%llu code=%s err=%s", (unsigned long long)h2_call_id(call),
              grpc_code_name(grpc_code), msg);
    h2_call_finish(call, grpc_code, msg);
}
