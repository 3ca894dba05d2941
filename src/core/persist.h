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

/* Is this directory entry a persist temp file? */
int persist_is_temp_name(const char *name);

#endif
