/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the two sides of an air-gapped import share (image/import.c is the
 * parent's job machine, image/import_child.c the child): the child's entry
 * point and the description it prints on stdout, which the parent reads.
 *
 * The description is one JSON object, at most IMPORT_DESCRIPTION_MAX bytes:
 *   {"images": [{"id", "manifest_digest", "user", "layers": [{"digest",
 *     "diff_id", "size"}], "tags": [...], "repo_digests": [...],
 *     "blobs": [{"digest", "path"}]}], "warnings": [...]}
 * where each blob's path (relative to the staging directory, clean, at most
 * IMPORT_PATH_MAX bytes) is a staged, verified file that becomes a store
 * blob; or {"error": {"code": <grpc code>, "msg": ...}} (exit status 1).
 */
#ifndef TINYCRI_IMAGE_IMPORT_CHILD_H
#define TINYCRI_IMAGE_IMPORT_CHILD_H

#include <jansson.h>

#define IMPORT_DESCRIPTION_MAX (1024 * 1024)
#define IMPORT_PATH_MAX 1024

/*
 * In the child forked by child_fork() with the staging directory as its cwd;
 * arg points to the tarball's fd. Never returns.
 */
int import_child_main(void *arg);

/* Append s (a string) to the JSON array arr unless it is there already. */
void import_json_add_unique(json_t *arr, const char *s);

#endif
