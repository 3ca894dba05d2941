/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by the fuzz targets in tests/fuzz/. Each fuzz_<name>.c defines
 * LLVMFuzzerTestOneInput() and is linked two ways: with libFuzzer's main in
 * a --enable-fuzz build (build-fuzz/tests/fuzz/fuzz_<name>, run by
 * scripts/fuzz), and with replay.c in every build (tests/fuzz/replay_<name>,
 * run by make check), which feeds it the committed corpus
 * tests/fuzz/corpus/<name>/ and the regression inputs tests/fuzz/regress/<name>/.
 *
 * A target checks what the code under test promises (its header comments):
 * a broken promise aborts through FUZZ_CHECK, so libFuzzer records the input.
 */
#ifndef TINYCRI_TESTS_FUZZ_H
#define TINYCRI_TESTS_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort with the condition's text when it does not hold (in every build). */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond);                                                  \
    } while (0)
__attribute__((noreturn)) void fuzz_fail(const char *file, int line, const char *what);

/* Once per process: logs at error level only (the inputs are meant to be bad). */
void fuzz_quiet_logs(void);

/* Once per process: the daemon's event loop (loop_init()). */
void fuzz_init_loop(void);

/*
 * A private directory for this process, on tmpfs when /dev/shm exists,
 * created at the first call and removed at exit (borrowed string).
 */
const char *fuzz_tmpdir(void);

/*
 * For targets that write files from the input (layer unpacking): when run as
 * root, move the process into a private mount namespace where fuzz_tmpdir()
 * is a fresh tmpfs and the working directory stays writable (libFuzzer keeps
 * its corpus and crash files there), and remount every other mount
 * read-only. A write that escapes the temp dir then fails with EROFS instead
 * of touching the host. Without root it does nothing. Call before anything
 * is put into fuzz_tmpdir().
 */
void fuzz_confine_writes(void);

/* Write len bytes to path (created 0600 or truncated); aborts on failure. */
void fuzz_write_file(const char *path, const void *data, size_t len);

/* Remove path and everything below it (no error when it is missing). */
void fuzz_rm_tree(const char *path);

/*
 * Split an input into parts at a separator line "\n--\n" (up to max parts):
 * parts[i] point into data, lens[i] give their lengths. Returns the count.
 * Targets that need several files or strings use it, so a seed stays a
 * readable text file.
 */
#define FUZZ_SEPARATOR "\n--\n"
size_t fuzz_split(const uint8_t *data, size_t size, const uint8_t **parts, size_t *lens,
                  size_t max);

/* An owned NUL-terminated copy of len bytes (embedded NULs are kept). */
char *fuzz_strndup(const uint8_t *data, size_t len);

#endif
