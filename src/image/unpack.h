/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Layer unpacking in a child process watched by the loop: the daemon never
 * decompresses. The child opens the layer blob, chroots into a fresh
 * directory and extracts the tar (gzip, zstd or plain) with libarchive's
 * secure flags, converting OCI whiteouts to overlayfs ones:
 *   .wh.<name>      -> a 0/0 character device <name>
 *   .wh..wh..opq    -> the directory gets trusted.overlay.opaque="y"
 * Paths with "..", absolute paths, writes through symlinked parents and
 * hardlinks to outside the layer are refused. Owners, modes, xattrs,
 * device nodes, hardlinks and timestamps are kept. The SHA-256 of the
 * uncompressed stream is checked against the layer's diff_id.
 */
#ifndef TINYCRI_IMAGE_UNPACK_H
#define TINYCRI_IMAGE_UNPACK_H

#include <stdint.h>

struct error;
struct unpack_op;

/*
 * Called once on the loop. err is NULL on success (the layer is in dest),
 * otherwise it says why (INVALID_ARGUMENT for an unsafe or corrupt layer,
 * DATA_LOSS for a diff_id mismatch, INTERNAL otherwise) and dest does not
 * exist. size is the bytes of file content unpacked.
 */
typedef void (*unpack_done_cb)(const struct error *err, uint64_t size, void *arg);

/*
 * Unpack blob_path (compression detected from the data) into dest, which
 * must not exist yet: the child extracts into "<dest>.tmp" and renames it to
 * dest on success, so a crash never leaves a half layer under dest. A
 * leftover "<dest>.tmp" is removed first. diff_id ("sha256:…") may be NULL
 * to skip the check. timeout_ms bounds the child (0: none).
 */
struct unpack_op *unpack_layer(const char *blob_path, const char *dest, const char *diff_id,
                               int64_t timeout_ms, unpack_done_cb done, void *arg,
                               struct error **err);

/* Kill the child and forget the operation; done will not run. */
void unpack_cancel(struct unpack_op *op);

/*
 * The extraction itself, as the child runs it, exposed for unit tests:
 * read the (possibly compressed) tar from blob_fd and extract it into the
 * current root directory (the child has chrooted; tests chdir into a temp
 * dir and pass a relative base). Returns 0 and the content size, or -1.
 */
int unpack_extract_fd(int blob_fd, const char *base, const char *diff_id, uint64_t *size,
                      struct error **err);

struct archive;

/*
 * How libarchive failures map to gRPC codes, shared with image import: a full
 * disk is RESOURCE_EXHAUSTED, local I/O trouble INTERNAL, anything else a bad
 * archive (INVALID_ARGUMENT). unpack_archive_fail() sets *err from the archive's
 * error (message made printable) and returns -1.
 */
int unpack_errno_code(int e);
int unpack_archive_fail(struct error **err, struct archive *a, const char *what);

#endif
