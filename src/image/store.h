/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The image store under <root_dir>:
 *   content/blobs/sha256/<hex>  verified blobs (manifests, configs, layers)
 *   content/ingest/             downloads in progress (verified, then renamed)
 *   layers/<chain-id hex>/      one unpacked layer, shared by every image using it
 *   images/<config hex>.json    image records, written atomically
 *
 * A blob enters the store only after its SHA-256 matched; a layer directory
 * appears only complete (renamed into place); an image record is written
 * last, so a crash at any point leaves no half image. Reference counts of
 * blobs and layers are derived from the image records rather than stored.
 * Records keep their layers' chain ids, so opening the store hashes nothing
 * (a record written without them gets them computed and saved once).
 */
#ifndef TINYCRI_IMAGE_STORE_H
#define TINYCRI_IMAGE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct error;
struct store;
struct store_ingest;

struct store_image {
    char *id;         /* config digest: the image id */
    char **repo_tags; /* "host/path:tag" */
    size_t n_repo_tags;
    char **repo_digests; /* "host/path@sha256:…" */
    size_t n_repo_digests;
    char *manifest_digest;
    char *user;           /* config User, "" when unset */
    uint64_t size;        /* content bytes: config + layers as stored compressed */
    char **layer_digests; /* per layer, compressed blob digest */
    char **diff_ids;
    char **chain_ids;
    size_t n_layers;
    bool pinned;
    int64_t created_ns;
};

void store_image_free(struct store_image *img);

/*
 * Open (creating the layout, 0700) and load the image records. A record
 * that does not parse is moved into images/corrupt/ with a log line, one
 * that cannot be read now is logged and skipped; ingest leftovers are removed.
 */
struct store *store_open(const char *root_dir, struct error **err);
void store_free(struct store *s);

const char *store_root(const struct store *s);

/* Paths (owned). */
char *store_blob_path(const struct store *s, const char *digest);
char *store_layer_path(const struct store *s, const char *chain_id);
bool store_has_blob(const struct store *s, const char *digest);
bool store_has_layer(const struct store *s, const char *chain_id);

/*
 * A download into the store: data is written to an ingest file while its
 * SHA-256 is computed; commit verifies the digest (DATA_LOSS on mismatch,
 * the file is dropped) and renames the file into blobs. More bytes than the
 * expected size (when >= 0) fail with DATA_LOSS. Writes go to the page
 * cache; durability comes from the fsync the unpack child does and from the
 * image record written last. An ingest holds libcrypto (xferlib) until it
 * is committed or aborted; store_ingest_new() fails with UNAVAILABLE or
 * INTERNAL when libcrypto cannot be loaded.
 */
struct store_ingest *store_ingest_new(struct store *s, const char *digest, int64_t size,
                                      struct error **err);
int store_ingest_write(struct store_ingest *in, const void *data, size_t len, struct error **err);
int64_t store_ingest_offset(const struct store_ingest *in);
/* Verify and commit; the ingest is freed whatever the result. */
int store_ingest_commit(struct store_ingest *in, struct error **err);
/* Drop the download; store_ingest_abort(NULL) is a no-op. */
void store_ingest_abort(struct store_ingest *in);

/* Store a small blob (manifest, config) given whole, verifying its digest. */
int store_put_blob(struct store *s, const char *digest, const void *data, size_t len,
                   struct error **err);

/*
 * Find an image by id ("sha256:<hex>" or the bare hex), a unique id prefix
 * of 12+ hex digits, a repo tag or a repo digest (normalised reference).
 * Borrowed; valid until the store changes.
 */
const struct store_image *store_image_find(const struct store *s, const char *key);

size_t store_image_count(const struct store *s);
const struct store_image *store_image_at(const struct store *s, size_t i);

/*
 * Add or update an image (taking img). Its tags and digests are merged into
 * an existing record with the same id, and removed from any other image that
 * had them (a tag moves). Every changed record is persisted.
 */
int store_image_put(struct store *s, struct store_image *img, struct error **err);

/* Remove an image record (by id). NOT_FOUND when unknown. */
int store_image_remove(struct store *s, const char *id, struct error **err);

/*
 * Collect garbage: remove blobs and layer directories that no image uses and
 * in_use(key, arg) (may be NULL) does not claim; key is "sha256:<hex>", a
 * blob digest or a layer chain id (pulls in flight and containers claim
 * theirs). Layer directories are removed by a child process; blobs are
 * unlinked. Returns the number of objects removed.
 */
size_t store_gc(struct store *s, bool (*in_use)(const char *key, void *arg), void *arg);

/*
 * What the store takes on disk (ImageFsInfo): the blocks and inodes under
 * content/ and layers/, a file with n hard links inside the store counted
 * 1/n each time it is met (so once), mounts inside not crossed. Measured by
 * a child process walking the trees, never on the loop: cb runs once, later,
 * with the figures, or with err (INTERNAL; "(timed out)" past timeout_ms).
 */
struct store_usage {
    uint64_t bytes;
    uint64_t inodes;
};
struct store_usage_walk;
typedef void (*store_usage_cb)(const struct store_usage *u, const struct error *err, void *arg);
struct store_usage_walk *store_usage_start(const struct store *s, int64_t timeout_ms,
                                           store_usage_cb cb, void *arg, struct error **err);
/* Stop a walk: cb will not run. NULL is a no-op. */
void store_usage_cancel(struct store_usage_walk *w);

/*
 * Compute chain ids from diff ids (owned array of owned strings). Hashes
 * through xferlib: UNAVAILABLE/INTERNAL when libcrypto cannot be loaded.
 */
char **store_chain_ids(char *const *diff_ids, size_t n, struct error **err);

#endif
