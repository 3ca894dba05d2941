/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Image pulls as non-blocking operations on the loop: resolve the
 * reference to a manifest (choosing this platform in an index), fetch the
 * config, then fetch and unpack every layer not yet on disk, and finally
 * write the image record. Blob downloads and layer unpacks are shared
 * jobs: concurrent pulls of the same image, or of images sharing layers,
 * wait on one job instead of fetching twice.
 */
#ifndef TINYCRI_IMAGE_PULL_H
#define TINYCRI_IMAGE_PULL_H

#include <stdbool.h>
#include <stdint.h>

struct config;
struct error;
struct registry;
struct registry_auth;
struct store;
struct puller;

/* Borrows store, registry and cfg for its whole life. */
struct puller *puller_new(struct store *st, struct registry *reg, const struct config *cfg);
/* Cancel every pull (no callbacks) and free; puller_free(NULL) is a no-op. */
void puller_free(struct puller *p);

/*
 * Called once when a pull ends: image_id is the config digest on success
 * (err NULL), otherwise err says why. Borrowed for the callback.
 */
typedef void (*pull_done_cb)(uint64_t pull_id, const char *image_id, const struct error *err,
                             void *arg);

/*
 * Start pulling ref (any form kubelet sends). auth is copied (may be NULL).
 * Returns the pull id, or 0 with *err (INVALID_ARGUMENT for a bad
 * reference). done runs later, never from inside pull_start.
 */
uint64_t pull_start(struct puller *p, const char *ref, const struct registry_auth *auth,
                    pull_done_cb done, void *arg, struct error **err);

/* Stop a pull: done will not run; shared jobs go on while another pull waits on them. */
void pull_cancel(struct puller *p, uint64_t pull_id);

/* Does a pull in flight use this blob digest or layer chain id? (For store_gc.) */
bool puller_uses(const char *key, void *puller);

#endif
