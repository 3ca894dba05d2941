/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CRI container log writer: turns a container's stdout/stderr bytes into
 * the kubelet's log format, one record per line,
 *
 *     <RFC3339Nano UTC timestamp> <stdout|stderr> <P|F> <content>\n
 *     2026-11-25T18:00:00.123456789Z stdout F hello
 *
 * and appends the records to a file with write(2)/writev(2).
 *
 * Rules (shared with containerd, whose output the kubelet parser accepts):
 * - A line is content up to '\n' (the '\n' is not logged). It is emitted as
 *   one F record if it has at most CTR_LOG_MAX_LINE (16 KiB) bytes; a longer
 *   line is split into P records of exactly 16 KiB, the last piece (1..16 KiB)
 *   tagged F. So a line of exactly 16 KiB is one F record, 32 KiB is P + F,
 *   and an empty line is an F record with empty content.
 * - Output without a trailing newline is buffered (at most 16 KiB per stream,
 *   plus one held '\r' in tty mode) until the newline arrives. When a stream
 *   ends, ctr_log_flush() writes what is left as a P record: the container
 *   never wrote the newline, and containerd does the same. The kubelet joins
 *   P records without inserting a newline, so `kubectl logs` shows the
 *   container's bytes exactly.
 * - Timestamps are UTC with 9 fractional digits and a 'Z' (containerd writes
 *   local time with an offset; both are RFC3339Nano).
 * - In tty mode (ctr_log_open(..., tty=true)) a "\r\n" line ending is one
 *   newline: the '\r' is dropped, even when "\r" and "\n" arrive in separate
 *   chunks. Other '\r' bytes are content. Without tty, '\r' is always content.
 *   tty output has no stderr: the caller feeds it as CTR_LOG_STDOUT.
 * - Each record is written with a single writev(2) to an O_APPEND file, so
 *   records of the two streams never interleave inside a line.
 *
 * Memory: the struct holds both stream buffers (2 x 16 KiB) and the path;
 * nothing is allocated, and container output never grows memory. Complete
 * lines are written straight from the caller's data without copying; only an
 * unfinished line is copied into its stream's buffer.
 *
 * Errors: the keeper links libc only, so this module reports failures as -1
 * with errno set instead of `struct error`. A failed log write loses those
 * records but never stops the writer: the container's output must keep being
 * drained (containerd behaves the same). The first write error is kept in
 * `write_errno` for the caller to report once.
 */
#ifndef TINYCRI_KEEPER_CTR_LOG_H
#define TINYCRI_KEEPER_CTR_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CTR_LOG_MAX_LINE 16384
/* Length of "2026-11-25T18:00:00.123456789Z". */
#define CTR_LOG_TIMESTAMP_LEN 30
#define CTR_LOG_PATH_MAX 4096

enum ctr_log_stream {
    CTR_LOG_STDOUT,
    CTR_LOG_STDERR,
    CTR_LOG_NSTREAMS,
};

/* Wall-clock time in nanoseconds since the Unix epoch (injectable for tests). */
typedef int64_t (*ctr_log_clock_cb)(void);

struct ctr_log_buf {
    size_t len;
    /* One extra byte so a tty line of exactly 16 KiB can hold its '\r'. */
    char data[CTR_LOG_MAX_LINE + 1];
};

struct ctr_log {
    int fd; /* -1 when closed */
    bool tty;
    ctr_log_clock_cb clock;
    int write_errno; /* first failed write's errno, 0 if none */
    char path[CTR_LOG_PATH_MAX];
    struct ctr_log_buf bufs[CTR_LOG_NSTREAMS];
};

/*
 * Open (creating it 0640 if missing) the log file at path for appending,
 * O_APPEND|O_CLOEXEC, and reset both stream buffers. clock may be NULL for
 * CLOCK_REALTIME. Returns 0, or -1 with errno (ENAMETOOLONG if path does not
 * fit CTR_LOG_PATH_MAX, or open(2)'s errno); on failure log->fd is -1.
 */
int ctr_log_open(struct ctr_log *log, const char *path, bool tty, ctr_log_clock_cb clock);

/*
 * Consume len bytes of stream s: write a record for each line completed,
 * keep an unfinished line buffered. Always consumes all the data. Returns 0,
 * or -1 with errno if a record could not be written (the records are lost).
 */
int ctr_log_feed(struct ctr_log *log, enum ctr_log_stream s, const void *data, size_t len);

/*
 * The stream has ended: write its buffered unfinished line, if any, as a
 * P record. Returns 0, or -1 with errno if the write failed.
 */
int ctr_log_flush(struct ctr_log *log, enum ctr_log_stream s);

/*
 * Open the path again and switch to the new file (the kubelet rotates logs
 * by renaming the file, then asks for a reopen). Buffered unfinished lines
 * are kept and go to the new file. On failure the old file stays in use and
 * -1 is returned with errno.
 */
int ctr_log_reopen(struct ctr_log *log);

/* Flush both streams and close the file. A closed log is a no-op to close. */
void ctr_log_close(struct ctr_log *log);

/*
 * Format ns (Unix epoch nanoseconds, >= 0) as RFC3339Nano UTC into out, which
 * must have room for CTR_LOG_TIMESTAMP_LEN bytes (no NUL is written). Does not
 * touch libc's time zone state.
 */
void ctr_log_format_time(int64_t ns, char *out);

#endif
