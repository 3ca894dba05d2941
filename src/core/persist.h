/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Atomic state files: write a temp file in the same directory, fsync it,
 * rename it over the target, fsync the directory. A kill -9 between any two
 * steps leaves either the old file or the new one, never a mix; a leftover
 * temp file (".<name>.tmp-*") is ignored by readers and removed by
 * persist_clean_dir().
 */
#ifndef TINYCRI_CORE_PERSIST_H
#define TINYCRI_CORE_PERSIST_H

#include <stddef.h>

struct error;

/*
 * Replace path with data atomically; mode for the new file. Errors:
 * RESOURCE_EXHAUSTED on a full disk or quota (ENOSPC, EDQUOT; the temp file
 * is removed, the old content stays), else INTERNAL.
 */
int persist_write(const char *path, const void *data, size_t len, unsigned mode,
                  struct error **err);

/* Remove path and fsync its directory; a missing file is not an error. */
int persist_remove(const char *path, struct error **err);

/* The gRPC code for a failed write with errno e: RESOURCE_EXHAUSTED for ENOSPC/EDQUOT. */
int persist_errno_code(int e);

/* fsync a directory. */
int persist_sync_dir(const char *dir, struct error **err);

/* Remove temp files left in dir by an interrupted persist_write(). */
void persist_clean_dir(const char *dir);

/* Where persist_quarantine() puts records that cannot be read, under their directory. */
#define PERSIST_CORRUPT_DIR "corrupt"

/*
 * Move dir/name aside into dir/corrupt/ (created 0700; a name already there
 * gets a ".<n>" suffix), fsyncing both directories, so that a record that
 * fails to parse is kept for a look but never read again. *moved_to (if
 * given) gets the new path, owned. Errors: INTERNAL, RESOURCE_EXHAUSTED.
 */
int persist_quarantine(const char *dir, const char *name, char **moved_to, struct error **err);

/*
 * A record dir/name of kind ("sandbox", "container", "image") failed to load
 * because of why. When it does not parse (DATA_LOSS: cut short by a power
 * cut, edited by hand) it is moved aside with persist_quarantine(), with one
 * log line saying where to; any other failure (a read error, say) is logged
 * and the record left in place for the next start. Never fatal.
 */
void persist_set_aside(const char *dir, const char *name, const char *kind,
                       const struct error *why);

/* Is this directory entry a persist temp file? */
int persist_is_temp_name(const char *name);

#endif
