/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Parsing of manifests, indexes and image configs with jansson, and the
 * platform choice in an index. Everything read from a document is
 * validated before use: digests are well formed, sizes are not negative,
 * and counts are bounded.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/error.h"
#include "core/util.h"
#include "image/manifest.h"
#include "image/ref.h"

#define MAX_DESCS 1024

static void descriptor_clear(struct descriptor *d)
{
    free(d->media_type);
    free(d->digest);
    free(d->os);
    free(d->arch);
    free(d->variant);
    memset(d, 0, sizeof(*d));
}

static char *opt_str(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? xstrdup(s) : NULL;
}

static int parse_descriptor(json_t *j, const char *what, struct descriptor *d, struct error **err)
{
    memset(d, 0, sizeof(*d));
    if (!json_is_object(j))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s is not an object", what);
    const char *digest = json_string_value(json_object_get(j, "digest"));
    if (!image_ref_is_digest(digest))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s has no valid sha256 digest", what);
    json_t *size = json_object_get(j, "size");
    if (!json_is_integer(size) || json_integer_value(size) < 0)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s has no valid size", what);
    d->digest = xstrdup(digest);
    d->size = json_integer_value(size);
    d->media_type = opt_str(j, "mediaType");
    json_t *platform = json_object_get(j, "platform");
    if (json_is_object(platform)) {
        d->os = opt_str(platform, "os");
        d->arch = opt_str(platform, "architecture");
        d->variant = opt_str(platform, "variant");
    }
    return 0;
}

static int parse_desc_array(json_t *arr, const char *what, struct manifest *m, struct error **err)
{
    if (!json_is_array(arr))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "manifest has no %s list", what);
    size_t n = json_array_size(arr);
    if (n > MAX_DESCS)
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0, "manifest lists %zu %s (max %d)", n, what,
                         MAX_DESCS);
    m->descs = xcalloc(n ? n : 1, sizeof(*m->descs));
    for (size_t i = 0; i < n; i++) {
        char label[64];
        snprintf(label, sizeof(label), "%s %zu", what, i);
        if (parse_descriptor(json_array_get(arr, i), label, &m->descs[i], err) < 0)
            return -1;
        m->n_descs++;
    }
    return 0;
}

bool manifest_is_layer_type(const char *t)
{
    static const char *const ok[] = {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.diff.tar",
    };
    for (size_t i = 0; t && i < ARRAY_SIZE(ok); i++) {
        if (strcmp(t, ok[i]) == 0)
            return true;
    }
    return false;
}

static int parse_into(const char *content_type, const uint8_t *body, size_t len, struct manifest *m,
                      struct error **err)
{
    json_error_t jerr;
    _cleanup_json_ json_t *doc = json_loadb((const char *)body, len, 0, &jerr);
    if (!doc || !json_is_object(doc))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "manifest is not a JSON object: %s",
                         doc ? "wrong type" : jerr.text);
    json_t *schema = json_object_get(doc, "schemaVersion");
    if (json_is_integer(schema) && json_integer_value(schema) == 1)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                         "Docker schema1 manifests are not supported (deprecated format); "
                         "push the image again with a current client");
    const char *mt = json_string_value(json_object_get(doc, "mediaType"));
    if (!mt && content_type) {
        /* Drop parameters such as "; charset=utf-8". */
        m->media_type = xstrndup(content_type, strcspn(content_type, "; "));
    } else if (mt) {
        m->media_type = xstrdup(mt);
    } else if (json_is_array(json_object_get(doc, "manifests"))) {
        m->media_type = xstrdup(MEDIA_OCI_INDEX);
    } else {
        m->media_type = xstrdup(MEDIA_OCI_MANIFEST);
    }
    if (str_has_prefix(m->media_type, "application/vnd.docker.distribution.manifest.v1"))
        return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                         "Docker schema1 manifests are not supported (deprecated format); "
                         "push the image again with a current client");
    if (!json_is_integer(schema) || json_integer_value(schema) != 2)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "manifest has no schemaVersion 2");

    if (!strcmp(m->media_type, MEDIA_OCI_INDEX) || !strcmp(m->media_type, MEDIA_DOCKER_LIST)) {
        m->is_index = true;
        return parse_desc_array(json_object_get(doc, "manifests"), "manifests", m, err);
    }
    if (strcmp(m->media_type, MEDIA_OCI_MANIFEST) && strcmp(m->media_type, MEDIA_DOCKER_MANIFEST))
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "unsupported manifest media type %s",
                         m->media_type);
    if (parse_descriptor(json_object_get(doc, "config"), "config", &m->config, err) < 0)
        return -1;
    const char *ct = m->config.media_type;
    if (ct && strcmp(ct, MEDIA_OCI_CONFIG) && strcmp(ct, MEDIA_DOCKER_CONFIG))
        return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                         "unsupported config media type %s (not a container image)", ct);
    if (parse_desc_array(json_object_get(doc, "layers"), "layers", m, err) < 0)
        return -1;
    for (size_t i = 0; i < m->n_descs; i++) {
        if (!manifest_is_layer_type(m->descs[i].media_type))
            return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                             "unsupported layer media type %s (layer %zu)",
                             m->descs[i].media_type ? m->descs[i].media_type : "(none)", i);
    }
    return 0;
}

int manifest_parse(const char *content_type, const uint8_t *body, size_t len, struct manifest *m,
                   struct error **err)
{
    memset(m, 0, sizeof(*m));
    if (parse_into(content_type, body, len, m, err) < 0) {
        manifest_clear(m);
        return -1;
    }
    return 0;
}

void manifest_clear(struct manifest *m)
{
    for (size_t i = 0; i < m->n_descs; i++)
        descriptor_clear(&m->descs[i]);
    free(m->descs);
    descriptor_clear(&m->config);
    free(m->media_type);
    memset(m, 0, sizeof(*m));
}

const char *manifest_host_arch(void)
{
#if defined(__x86_64__)
    return "amd64";
#elif defined(__aarch64__)
    return "arm64";
#elif defined(__arm__)
    return "arm";
#elif defined(__i386__)
    return "386";
#elif defined(__riscv) && __riscv_xlen == 64
    return "riscv64";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return "ppc64le";
#elif defined(__s390x__)
    return "s390x";
#else
    return "unknown";
#endif
}

const char *manifest_host_variant(void)
{
#if defined(__aarch64__)
    return "v8";
#elif defined(__arm__) && defined(__ARM_ARCH) && __ARM_ARCH >= 7
    return "v7";
#elif defined(__arm__)
    return "v6";
#else
    return NULL;
#endif
}

static bool variant_matches(const struct descriptor *d, const char *arch, const char *variant)
{
    if (!variant || !d->variant || !*d->variant)
        return true;
    if (strcmp(d->variant, variant) == 0)
        return true;
    /* arm64 images rarely say v8; an explicit other variant is a mismatch. */
    return false;
}

const struct descriptor *manifest_select_platform(const struct manifest *idx, const char *arch,
                                                  const char *variant, struct error **err)
{
    const struct descriptor *loose = NULL;
    for (size_t i = 0; i < idx->n_descs; i++) {
        const struct descriptor *d = &idx->descs[i];
        if (!d->os || strcmp(d->os, "linux") || !d->arch || strcmp(d->arch, arch))
            continue;
        if (d->variant && variant && strcmp(d->variant, variant) == 0)
            return d;
        if (!loose && variant_matches(d, arch, variant))
            loose = d;
    }
    if (loose)
        return loose;
    struct buf have;
    buf_init(&have, 4096);
    for (size_t i = 0; i < idx->n_descs; i++) {
        const struct descriptor *d = &idx->descs[i];
        char one[160];
        snprintf(one, sizeof(one), "%s%s/%s%s%s", i ? ", " : "", d->os ? d->os : "?",
                 d->arch ? d->arch : "?", d->variant ? "/" : "", d->variant ? d->variant : "");
        if (buf_append(&have, one, strlen(one)) < 0)
            break;
    }
    error_set(err, GRPC_NOT_FOUND, 0, "image index has no entry for linux/%s%s%s (it has: %s)",
              arch, variant ? "/" : "", variant ? variant : "", have.data ? have.data : "none");
    buf_free(&have);
    return NULL;
}

static int config_into(const uint8_t *body, size_t len, struct image_config *c, struct error **err)
{
    json_error_t jerr;
    _cleanup_json_ json_t *doc = json_loadb((const char *)body, len, 0, &jerr);
    if (!doc || !json_is_object(doc))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "image config is not a JSON object");
    c->os = opt_str(doc, "os");
    c->arch = opt_str(doc, "architecture");
    const char *user = json_string_value(json_object_get(json_object_get(doc, "config"), "User"));
    c->user = xstrdup(user ? user : "");
    json_t *rootfs = json_object_get(doc, "rootfs");
    const char *type = json_string_value(json_object_get(rootfs, "type"));
    if (!type || strcmp(type, "layers"))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "image config has no rootfs of layers");
    json_t *ids = json_object_get(rootfs, "diff_ids");
    if (!json_is_array(ids) || json_array_size(ids) > MAX_DESCS)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "image config has no valid diff_ids");
    size_t n = json_array_size(ids);
    c->diff_ids = xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        const char *d = json_string_value(json_array_get(ids, i));
        if (!image_ref_is_digest(d))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "image config diff_id %zu is invalid",
                             i);
        c->diff_ids[c->n_diff_ids++] = xstrdup(d);
    }
    return 0;
}

int image_config_parse(const uint8_t *body, size_t len, struct image_config *c, struct error **err)
{
    memset(c, 0, sizeof(*c));
    if (config_into(body, len, c, err) < 0) {
        image_config_clear(c);
        return -1;
    }
    return 0;
}

void image_config_clear(struct image_config *c)
{
    free(c->os);
    free(c->arch);
    free(c->user);
    for (size_t i = 0; i < c->n_diff_ids; i++)
        free(c->diff_ids[i]);
    free(c->diff_ids);
    memset(c, 0, sizeof(*c));
}
