/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Image references, normalised as kubelet and containerd do:
 *   busybox               -> docker.io/library/busybox:latest
 *   me/app:1              -> docker.io/me/app:1
 *   host:5000/app@sha256:… (tag optional alongside the digest)
 */
#ifndef TINYCRI_IMAGE_REF_H
#define TINYCRI_IMAGE_REF_H

struct error;

struct image_ref {
    char *domain; /* "docker.io", "localhost:5000", "[::1]:5000" */
    char *path;   /* "library/busybox" */
    char *tag;    /* "latest"; NULL when only a digest was given */
    char *digest; /* "sha256:<64 hex>"; NULL when none */
};

/*
 * Parse and normalise. Fails with INVALID_ARGUMENT naming the problem
 * (empty, upper case in the path, bad tag, bad digest, too long...).
 * No tag and no digest means tag "latest".
 */
int image_ref_parse(const char *s, struct image_ref *out, struct error **err);

/* "docker.io/library/busybox" (owned). */
char *image_ref_name(const struct image_ref *r);
/* "docker.io/library/busybox:latest", or "name@digest" when there is no tag (owned). */
char *image_ref_tagged(const struct image_ref *r);
/* "name@digest" for a given digest (owned). */
char *image_ref_with_digest(const struct image_ref *r, const char *digest);

/* Is s a well-formed digest "sha256:<64 lowercase hex>"? */
int image_ref_is_digest(const char *s);

void image_ref_clear(struct image_ref *r);

#endif
