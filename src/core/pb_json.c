/* SPDX-License-Identifier: Apache-2.0 */
/* Protobuf-c messages to Go-encoding/json-style JSON (pb_json.h), by their descriptors. */
#include "autoconf.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/util.h"
#include "core/pb_json.h"

/* Nesting never goes this deep in the CRI schema; this only bounds the walk. */
#define MAX_DEPTH 32

static json_t *message(const ProtobufCMessage *m, int depth);

/* A map<k,v> field is a repeated message of a generated "...Entry" type with key and value. */
static bool is_map(const ProtobufCFieldDescriptor *f)
{
    if (f->type != PROTOBUF_C_TYPE_MESSAGE || f->label != PROTOBUF_C_LABEL_REPEATED)
        return false;
    const ProtobufCMessageDescriptor *d = f->descriptor;
    return d->n_fields == 2 && strcmp(d->fields[0].name, "key") == 0 &&
           strcmp(d->fields[1].name, "value") == 0 && str_has_suffix(d->name, "Entry");
}

/* One value of field f at p, or NULL when it is a zero value (left out). */
static json_t *scalar(const ProtobufCFieldDescriptor *f, const void *p, bool keep_zero, int depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM: {
        int32_t v = *(const int32_t *)p;
        return v || keep_zero ? json_integer(v) : NULL;
    }
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: {
        uint32_t v = *(const uint32_t *)p;
        return v || keep_zero ? json_integer(v) : NULL;
    }
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: {
        int64_t v = *(const int64_t *)p;
        return v || keep_zero ? json_integer(v) : NULL;
    }
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        uint64_t v = *(const uint64_t *)p;
        return v || keep_zero ? json_integer((json_int_t)v) : NULL;
    }
    case PROTOBUF_C_TYPE_FLOAT: {
        float v = *(const float *)p;
        return v != 0 || keep_zero ? json_real(v) : NULL;
    }
    case PROTOBUF_C_TYPE_DOUBLE: {
        double v = *(const double *)p;
        return v != 0 || keep_zero ? json_real(v) : NULL;
    }
    case PROTOBUF_C_TYPE_BOOL: {
        protobuf_c_boolean v = *(const protobuf_c_boolean *)p;
        return v || keep_zero ? json_boolean(v) : NULL;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s && (*s || keep_zero) ? json_string(s) : NULL;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        if (!b->len && !keep_zero)
            return NULL;
        json_t *s = json_stringn((const char *)b->data, b->len);
        return s ? s : json_null();
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
        return sub ? message(sub, depth + 1) : NULL;
    }
    }
    return NULL;
}

static size_t elem_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    default:
        return 4;
    }
}

static json_t *message(const ProtobufCMessage *m, int depth)
{
    json_t *o = json_object();
    if (depth > MAX_DEPTH)
        return o;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)m + f->offset;
        json_t *v = NULL;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
            if (!n)
                continue;
            const char *arr = *(const char *const *)base;
            if (is_map(f)) {
                v = json_object();
                for (size_t k = 0; k < n; k++) {
                    const ProtobufCMessage *e = ((ProtobufCMessage *const *)(const void *)arr)[k];
                    const ProtobufCFieldDescriptor *kf = &e->descriptor->fields[0];
                    const ProtobufCFieldDescriptor *vf = &e->descriptor->fields[1];
                    const char *key = *(char *const *)((const char *)e + kf->offset);
                    json_t *val = scalar(vf, (const char *)e + vf->offset, true, depth);
                    if (key && val)
                        json_object_set_new(v, key, val);
                    else
                        json_decref(val);
                }
            } else {
                v = json_array();
                for (size_t k = 0; k < n; k++) {
                    json_t *e = scalar(f, arr + k * elem_size(f), true, depth);
                    json_array_append_new(v, e ? e : json_null());
                }
            }
        } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
                   f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING &&
                   !*(const protobuf_c_boolean *)((const char *)m + f->quantifier_offset)) {
            continue;
        } else {
            v = scalar(f, base, false, depth);
        }
        if (v)
            json_object_set_new(o, f->name, v);
    }
    return o;
}

json_t *pb_json(const ProtobufCMessage *m)
{
    return message(m, 0);
}
