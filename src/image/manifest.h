/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Image manifests, indexes and configs: OCI image index / Docker manifest
 * list (choose the linux entry for this machine), OCI image manifest /
 * Docker schema2 manifest (config + layers), and the image config (user,
 * diff_ids, platform). Schema1 and unknown media types are refused with a
 * clear message. Callers cap bodies at REGISTRY_MANIFEST_MAX before parsing.
 */
#ifndef TINYCRI_IMAGE_MANIFEST_H
#define TINYCRI_IMAGE_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct error;

#define MEDIA_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MEDIA_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MEDIA_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define MEDIA_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MEDIA_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MEDIA_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"

struct descriptor {
    char *media_type;
    char *digest;
    int64_t size;
    /* Platform, for index entries (NULL when absent). */
    char *os;
    char *arch;
    char *variant;
};

struct manifest {
    char *media_type;
    bool is_index;
    /* An index: its entries. An image manifest: its layers, in order. */
    struct descriptor *descs;
    size_t n_descs;
    /* An image manifest's config. */
    struct descriptor config;
};

/*
 * Parse a manifest or index. The media type comes from the body's
 * "mediaType", else from content_type (the HTTP header; may be NULL).
 * Errors: FAILED_PRECONDITION for schema1 or unsupported media types,
 * INVALID_ARGUMENT for malformed documents.
 */
int manifest_parse(const char *content_type, const uint8_t *body, size_t len, struct manifest *m,
                   struct error **err);

/*
 * The index entry for linux on this machine's architecture (and variant),
 * borrowed from idx. NOT_FOUND lists the platforms the index has.
 */
const struct descriptor *manifest_select_platform(const struct manifest *idx, const char *arch,
                                                  const char *variant, struct error **err);

/* This machine's GOARCH-style architecture ("amd64", "arm64", "arm"...) and variant (or NULL). */
const char *manifest_host_arch(void);
const char *manifest_host_variant(void);

/* Is this a layer media type we can unpack (tar, tar+gzip, tar+zstd, Docker's gzip)? */
bool manifest_is_layer_type(const char *media_type);

void manifest_clear(struct manifest *m);

struct image_config {
    char *os;
    char *arch;
    char *user;      /* config.User, "" when unset */
    char **diff_ids; /* rootfs.diff_ids */
    size_t n_diff_ids;
};

/* Parse an image config. INVALID_ARGUMENT when malformed. */
int image_config_parse(const uint8_t *body, size_t len, struct image_config *c, struct error **err);
void image_config_clear(struct image_config *c);

#endif
