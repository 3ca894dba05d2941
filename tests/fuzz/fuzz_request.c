/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Request decoding (grpc/router): the first byte picks a method of the real
 * CRI method table (or a path that is not in it), the rest is the request
 * message. router_unpack() either refuses it (UNIMPLEMENTED, RESOURCE_EXHAUSTED
 * for the field cap, INVALID_ARGUMENT) or gives a message whose every string
 * is valid UTF-8, and that packs to bytes which unpack again and pack to the
 * same bytes.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.pb-c.h"
#include "core/error.h"
#include "core/text.h"
#include "core/util.h"
#include "cri/methods.h"
#include "fuzz.h"
#include "grpc/router.h"

static struct router *router;
static char **paths;
static size_t n_paths;

static void unused_handler(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    abort(); /* router_unpack() never calls a handler */
}

static void setup(void)
{
    fuzz_quiet_logs();
    router = cri_methods_router_new_with(unused_handler, NULL);
    const ProtobufCServiceDescriptor *svcs[] = {&runtime__v1__runtime_service__descriptor,
                                                &runtime__v1__image_service__descriptor};
    for (size_t s = 0; s < ARRAY_SIZE(svcs); s++) {
        for (unsigned i = 0; i < svcs[s]->n_methods; i++) {
            paths = xrealloc(paths, (n_paths + 1) * sizeof(*paths));
            paths[n_paths++] = xasprintf("/%s/%s", svcs[s]->name, svcs[s]->methods[i].name);
        }
    }
    paths = xrealloc(paths, (n_paths + 1) * sizeof(*paths));
    paths[n_paths++] = xstrdup("/runtime.v1.RuntimeService/NoSuchMethod");
}

/* Every string field of m, nested messages included, is UTF-8 without a NUL. */
static void check_strings(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *base = (const char *)m + f->offset;
        size_t n = 1;
        const void *const *items = (const void *const *)base;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            n = *(const size_t *)((const char *)m + f->quantifier_offset);
            items = *(const void *const *const *)base;
        } else if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (*(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id)
                continue;
        }
        for (size_t k = 0; k < n; k++) {
            const void *item = items[k];
            if (!item)
                continue;
            if (f->type == PROTOBUF_C_TYPE_MESSAGE)
                check_strings(item);
            else
                FUZZ_CHECK(text_is_utf8(item, strlen(item)));
        }
    }
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *out = xmalloc(*len ? *len : 1);
    FUZZ_CHECK(protobuf_c_message_pack(m, out) == *len);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!router)
        setup();
    if (size < 1)
        return 0;
    const char *path = paths[data[0] % n_paths];
    struct error *err = NULL;
    ProtobufCMessage *req = router_unpack(router, path, data + 1, size - 1, &err);
    if (!req) {
        FUZZ_CHECK(err->grpc_code == GRPC_UNIMPLEMENTED ||
                   err->grpc_code == GRPC_RESOURCE_EXHAUSTED ||
                   err->grpc_code == GRPC_INVALID_ARGUMENT);
        error_free(err);
        return 0;
    }
    check_strings(req);
    size_t len1 = 0, len2 = 0;
    _cleanup_free_ uint8_t *once = pack(req, &len1);
    protobuf_c_message_free_unpacked(req, NULL);
    req = router_unpack(router, path, once, len1, &err);
    if (!req) {
        fprintf(stderr, "%s: the packed request does not unpack again: %s\n", path, err->msg);
        abort();
    }
    _cleanup_free_ uint8_t *twice = pack(req, &len2);
    protobuf_c_message_free_unpacked(req, NULL);
    FUZZ_CHECK(len1 == len2 && memcmp(once, twice, len1) == 0);
    return 0;
}
