/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Manifests, indexes and image configs (image/manifest), as a registry or an
 * imported tarball sends them. The first byte picks the Content-Type the
 * body came with; the rest is the body, parsed as a manifest or index and as
 * an image config. What a parse accepts is what the pull then relies on:
 * well-formed digests, sizes not negative, counts bounded, layer media types
 * that can be unpacked; a refusal has a code and a message.
 */
#include "autoconf.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/util.h"
#include "fuzz.h"
#include "image/manifest.h"
#include "image/ref.h"

static const char *const content_types[] = {
    NULL,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    MEDIA_DOCKER_LIST,
    MEDIA_DOCKER_MANIFEST,
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/json; charset=utf-8",
    "",
};

static void check_error(struct error *err)
{
    FUZZ_CHECK(err && err->msg);
    FUZZ_CHECK(err->grpc_code == GRPC_INVALID_ARGUMENT ||
               err->grpc_code == GRPC_FAILED_PRECONDITION ||
               err->grpc_code == GRPC_RESOURCE_EXHAUSTED || err->grpc_code == GRPC_NOT_FOUND);
    error_free(err);
}

static void check_descriptor(const struct descriptor *d)
{
    FUZZ_CHECK(image_ref_is_digest(d->digest));
    FUZZ_CHECK(d->size >= 0);
}

static void check_manifest(const struct manifest *m)
{
    FUZZ_CHECK(m->media_type);
    FUZZ_CHECK(m->n_descs <= 1024);
    for (size_t i = 0; i < m->n_descs; i++)
        check_descriptor(&m->descs[i]);
    if (!m->is_index) {
        check_descriptor(&m->config);
        for (size_t i = 0; i < m->n_descs; i++)
            FUZZ_CHECK(manifest_is_layer_type(m->descs[i].media_type));
        return;
    }
    static const char *const arches[][2] = {{"amd64", NULL}, {"arm64", "v8"}, {"arm", "v7"}};
    for (size_t i = 0; i < ARRAY_SIZE(arches); i++) {
        struct error *err = NULL;
        const struct descriptor *d = manifest_select_platform(m, arches[i][0], arches[i][1], &err);
        if (d) {
            FUZZ_CHECK(d >= m->descs && d < m->descs + m->n_descs);
            FUZZ_CHECK(d->os && strcmp(d->os, "linux") == 0);
            FUZZ_CHECK(d->arch && strcmp(d->arch, arches[i][0]) == 0);
        } else {
            FUZZ_CHECK(err->grpc_code == GRPC_NOT_FOUND);
            error_free(err);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *ct = content_types[data[0] % ARRAY_SIZE(content_types)];
    data++;
    size--;

    struct manifest m;
    struct error *err = NULL;
    if (manifest_parse(ct, data, size, &m, &err) == 0) {
        check_manifest(&m);
        manifest_clear(&m);
    } else {
        check_error(err);
        FUZZ_CHECK(m.descs == NULL && m.media_type == NULL);
    }

    struct image_config c;
    err = NULL;
    if (image_config_parse(data, size, &c, &err) == 0) {
        FUZZ_CHECK(c.user);
        for (size_t i = 0; i < c.n_diff_ids; i++)
            FUZZ_CHECK(image_ref_is_digest(c.diff_ids[i]));
        image_config_clear(&c);
    } else {
        check_error(err);
    }
    return 0;
}
