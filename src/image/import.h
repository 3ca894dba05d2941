/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Air-gapped image import: at start-up and on SIGHUP the daemon imports the
 * OCI-layout and `docker save` tarballs (*.tar, *.tar.gz, *.tgz) found in a
 * directory, so a node without a registry can still run its images.
 *
 * Tarballs are handled one at a time. A child process extracts one into a
 * staging directory under <root>/content/ingest/import-XXXXXX (regular files
 * and directories only, capped in size and entry count, secure-extract
 * flags), hashes every file, parses the layout and prints a small JSON
 * description of the images it holds. Back on the loop the verified blobs
 * are renamed into the store, missing layers are unpacked (unpack.h), and an
 * image record is written last, exactly as a pull writes it: an imported
 * image behaves like a pulled one, and a failure never leaves a half image.
 *
 * A bad tarball is logged ("import skipped file=...: reason") and skipped;
 * nothing here is fatal. What was imported (file name, size, mtime, image
 * ids) is kept in <root>/imports.json, so an unchanged tarball is not
 * imported again at the next start, and a changed one is.
 */
#ifndef TINYCRI_IMAGE_IMPORT_H
#define TINYCRI_IMAGE_IMPORT_H

#include <stdbool.h>

struct store;
struct importer;

/*
 * A new importer for the tarballs in import_dir, feeding st. Both are
 * borrowed: st must outlive the importer; import_dir is copied. Reads
 * <store root>/imports.json (a malformed one is logged and ignored). Needs
 * loop_init() before the first importer_scan().
 */
struct importer *importer_new(struct store *st, const char *import_dir);

/*
 * Look for new or changed tarballs in the directory and queue them; returns
 * at once, the work runs on the loop. A missing directory is not an error.
 * Files already queued or being imported are not queued twice.
 */
void importer_scan(struct importer *im);

/*
 * cb(arg) runs on the loop once the work of the scans so far is all
 * finished (queue empty, staging directories removed), also when there was
 * nothing to do; scans that overlap get one call. The callback must not free
 * the importer.
 */
void importer_set_done_cb(struct importer *im, void (*cb)(void *arg), void *arg);

/*
 * For store_gc(): does an import in progress use key (a blob digest or a
 * layer chain id, "sha256:<hex>")? importer is a struct importer *.
 */
bool importer_uses(const char *key, void *importer);

/*
 * Stop: the running child or unpacks are killed, the staging directory is
 * removed in the background, queued tarballs are forgotten (they are
 * imported at the next start). Call before loop_shutdown(), which frees the
 * children this cancels. importer_free(NULL) is a no-op.
 */
void importer_free(struct importer *im);

#endif
