/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for the CRI log writer: record format with a fixed clock, line
 * assembly across chunks, 16 KiB splitting into P/F records, tty "\r\n"
 * handling, the trailing partial line at stream end, per-stream buffers, and
 * reopen after the kubelet renames the file. Links ctr_log.c alone.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "keeper/ctr_log.h"

#define KiB 1024

/* 2026-11-25T18:00:00.123456789Z */
#define FIXED_NS INT64_C(1795629600123456789)
#define TS "2026-11-25T18:00:00.123456789Z"
#define HDR_LEN (sizeof(TS " stdout F ") - 1)

static char dir[64];
static char path[128];
static struct ctr_log *log_;

static int64_t fixed_clock(void)
{
    return FIXED_NS;
}

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/tc-ctrlog-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/0.log", dir);
    log_ = calloc(1, sizeof(*log_));
    assert_non_null(log_);
    assert_int_equal(ctr_log_open(log_, path, false, fixed_clock), 0);
    return 0;
}

static int teardown(void **state)
{
    ctr_log_close(log_);
    free(log_);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* The whole file at p; *len gets its size. The caller frees. */
static char *slurp(const char *p, size_t *len)
{
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    static const size_t cap = 256 * KiB;
    char *data = malloc(cap + 1);
    assert_non_null(data);
    size_t n = fread(data, 1, cap, f);
    fclose(f);
    data[n] = '\0';
    *len = n;
    return data;
}

static void assert_file(const char *p, const char *want)
{
    size_t len;
    char *got = slurp(p, &len);
    assert_string_equal(got, want);
    free(got);
}

static void feed_str(enum ctr_log_stream s, const char *text)
{
    assert_int_equal(ctr_log_feed(log_, s, text, strlen(text)), 0);
}

/* A fill pattern whose position is visible, so a wrong split shows. */
static char *pattern(size_t n)
{
    char *p = malloc(n + 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + i % 26);
    p[n] = '\0';
    return p;
}

/*
 * Check the file holds exactly the records whose tags and content lengths are
 * given, and that their contents concatenate to want (for stream name).
 */
static void assert_records(const char *stream, const char *tags, const size_t *lens,
                           const char *want)
{
    size_t len;
    char *got = slurp(path, &len);
    const char *p = got;
    size_t want_off = 0;
    for (size_t i = 0; tags[i]; i++) {
        char hdr[64];
        snprintf(hdr, sizeof(hdr), TS " %s %c ", stream, tags[i]);
        assert_true((size_t)(got + len - p) >= HDR_LEN + lens[i] + 1);
        assert_memory_equal(p, hdr, HDR_LEN);
        p += HDR_LEN;
        assert_memory_equal(p, want + want_off, lens[i]);
        p += lens[i];
        want_off += lens[i];
        assert_int_equal(*p, '\n');
        p++;
    }
    assert_int_equal(p - got, len);
    assert_int_equal(want_off, strlen(want));
    free(got);
}

static void test_format_time(void **state)
{
    char out[CTR_LOG_TIMESTAMP_LEN + 1] = {0};
    ctr_log_format_time(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00.000000000Z");
    ctr_log_format_time(FIXED_NS, out);
    assert_string_equal(out, TS);
    /* A leap day, and the last nanosecond of a year. */
    ctr_log_format_time(INT64_C(951782400) * 1000000000 + 5, out);
    assert_string_equal(out, "2000-02-29T00:00:00.000000005Z");
    ctr_log_format_time(INT64_C(1767225599) * 1000000000 + 999999999, out);
    assert_string_equal(out, "2025-12-31T23:59:59.999999999Z");
}

static void test_simple_line(void **state)
{
    feed_str(CTR_LOG_STDOUT, "hello\n");
    assert_file(path, TS " stdout F hello\n");
}

static void test_several_lines_one_chunk(void **state)
{
    feed_str(CTR_LOG_STDOUT, "one\ntwo\nthree\n");
    assert_file(path, TS " stdout F one\n" TS " stdout F two\n" TS " stdout F three\n");
}

static void test_line_across_chunks(void **state)
{
    feed_str(CTR_LOG_STDOUT, "hel");
    feed_str(CTR_LOG_STDOUT, "lo wo");
    assert_file(path, "");
    feed_str(CTR_LOG_STDOUT, "rld\nnext");
    assert_file(path, TS " stdout F hello world\n");
    feed_str(CTR_LOG_STDOUT, "\n");
    assert_file(path, TS " stdout F hello world\n" TS " stdout F next\n");
}

static void test_long_line_split(void **state)
{
    char *line = pattern(40 * KiB);
    assert_int_equal(ctr_log_feed(log_, CTR_LOG_STDOUT, line, 40 * KiB), 0);
    feed_str(CTR_LOG_STDOUT, "\n");
    size_t lens[] = {16 * KiB, 16 * KiB, 8 * KiB};
    assert_records("stdout", "PPF", lens, line);
    free(line);
}

static void test_long_line_in_small_chunks(void **state)
{
    /* Same line, arriving 1000 bytes at a time through the buffer. */
    char *line = pattern(40 * KiB);
    for (size_t off = 0; off < 40 * KiB; off += 1000) {
        size_t n = 40 * KiB - off < 1000 ? 40 * KiB - off : 1000;
        assert_int_equal(ctr_log_feed(log_, CTR_LOG_STDOUT, line + off, n), 0);
    }
    feed_str(CTR_LOG_STDOUT, "\n");
    size_t lens[] = {16 * KiB, 16 * KiB, 8 * KiB};
    assert_records("stdout", "PPF", lens, line);
    free(line);
}

static void test_exact_16k_line(void **state)
{
    char *line = pattern(16 * KiB);
    assert_int_equal(ctr_log_feed(log_, CTR_LOG_STDOUT, line, 16 * KiB), 0);
    /* Full buffer, no newline yet: nothing may be written before we know. */
    assert_file(path, "");
    feed_str(CTR_LOG_STDOUT, "\n");
    size_t lens[] = {16 * KiB};
    assert_records("stdout", "F", lens, line);
    free(line);
}

static void test_exact_32k_line_one_chunk(void **state)
{
    char *data = pattern(32 * KiB + 1);
    data[32 * KiB] = '\n';
    assert_int_equal(ctr_log_feed(log_, CTR_LOG_STDOUT, data, 32 * KiB + 1), 0);
    data[32 * KiB] = '\0';
    size_t lens[] = {16 * KiB, 16 * KiB};
    assert_records("stdout", "PF", lens, data);
    free(data);
}

static void test_16k_plus_one_without_newline(void **state)
{
    char *line = pattern(16 * KiB + 1);
    assert_int_equal(ctr_log_feed(log_, CTR_LOG_STDOUT, line, 16 * KiB + 1), 0);
    /* The first 16 KiB can no longer end the line: it is out as P. */
    size_t lens[] = {16 * KiB};
    char *first = strndup(line, 16 * KiB);
    assert_records("stdout", "P", lens, first);
    feed_str(CTR_LOG_STDOUT, "\n");
    size_t lens2[] = {16 * KiB, 1};
    assert_records("stdout", "PF", lens2, line);
    free(first);
    free(line);
}

static void test_empty_line(void **state)
{
    feed_str(CTR_LOG_STDOUT, "\n\nx\n");
    assert_file(path, TS " stdout F \n" TS " stdout F \n" TS " stdout F x\n");
}

static void test_stderr_tag(void **state)
{
    feed_str(CTR_LOG_STDERR, "oops\n");
    assert_file(path, TS " stderr F oops\n");
}

static void test_tty_crlf(void **state)
{
    ctr_log_close(log_);
    assert_int_equal(ctr_log_open(log_, path, true, fixed_clock), 0);
    feed_str(CTR_LOG_STDOUT, "hi\r\nsplit\r");
    feed_str(CTR_LOG_STDOUT, "\nmid\rdle\r\n\r\n");
    assert_file(path, TS " stdout F hi\n" TS " stdout F split\n" TS " stdout F mid\rdle\n" TS
                         " stdout F \n");
}

static void test_no_crlf_strip_without_tty(void **state)
{
    feed_str(CTR_LOG_STDOUT, "dos\r\n");
    assert_file(path, TS " stdout F dos\r\n");
}

static void test_tty_exact_16k_crlf(void **state)
{
    /* 16 KiB of content, then "\r" and "\n" in separate chunks: one F record. */
    ctr_log_close(log_);
    assert_int_equal(ctr_log_open(log_, path, true, fixed_clock), 0);
    char *line = pattern(16 * KiB);
    assert_int_equal(ctr_log_feed(log_, CTR_LOG_STDOUT, line, 16 * KiB), 0);
    feed_str(CTR_LOG_STDOUT, "\r");
    feed_str(CTR_LOG_STDOUT, "\n");
    size_t lens[] = {16 * KiB};
    assert_records("stdout", "F", lens, line);
    free(line);
}

static void test_tty_16k_and_cr_at_end_of_stream(void **state)
{
    /*
     * 16 KiB of content and a '\r' held back for a '\n' that never comes: the
     * stream ends, and no record may be longer than 16 KiB (found by
     * tests/fuzz/fuzz_ctr_log).
     */
    ctr_log_close(log_);
    assert_int_equal(ctr_log_open(log_, path, true, fixed_clock), 0);
    char *line = pattern(16 * KiB + 1);
    line[16 * KiB] = '\r';
    assert_int_equal(ctr_log_feed(log_, CTR_LOG_STDOUT, line, 16 * KiB + 1), 0);
    assert_int_equal(ctr_log_flush(log_, CTR_LOG_STDOUT), 0);
    size_t lens[] = {16 * KiB, 1};
    assert_records("stdout", "PP", lens, line);
    free(line);
}

static void test_partial_flush_at_close(void **state)
{
    feed_str(CTR_LOG_STDOUT, "done\nno newline");
    feed_str(CTR_LOG_STDERR, "err tail");
    assert_int_equal(ctr_log_flush(log_, CTR_LOG_STDOUT), 0);
    assert_file(path, TS " stdout F done\n" TS " stdout P no newline\n");
    /* Flushing an empty stream writes nothing. */
    assert_int_equal(ctr_log_flush(log_, CTR_LOG_STDOUT), 0);
    ctr_log_close(log_);
    assert_file(path, TS " stdout F done\n" TS " stdout P no newline\n" TS " stderr P err tail\n");
    /* Closing twice is harmless. */
    ctr_log_close(log_);
}

static void test_reopen_after_rename(void **state)
{
    char old[160];
    snprintf(old, sizeof(old), "%s.1", path);
    feed_str(CTR_LOG_STDOUT, "before\nhalf ");
    assert_int_equal(rename(path, old), 0);
    /* Until the reopen, output still goes to the renamed file. */
    feed_str(CTR_LOG_STDOUT, "way\n");
    assert_int_equal(ctr_log_reopen(log_), 0);
    feed_str(CTR_LOG_STDOUT, "after\n");
    assert_file(old, TS " stdout F before\n" TS " stdout F half way\n");
    assert_file(path, TS " stdout F after\n");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
}

static void test_reopen_keeps_partial_line(void **state)
{
    char old[160];
    snprintf(old, sizeof(old), "%s.1", path);
    feed_str(CTR_LOG_STDOUT, "started ");
    assert_int_equal(rename(path, old), 0);
    assert_int_equal(ctr_log_reopen(log_), 0);
    feed_str(CTR_LOG_STDOUT, "then rotated\n");
    assert_file(old, "");
    assert_file(path, TS " stdout F started then rotated\n");
}

static void test_reopen_failure_keeps_old_file(void **state)
{
    char old[160];
    snprintf(old, sizeof(old), "%s.1", path);
    assert_int_equal(rename(path, old), 0);
    /* A directory in the way: open fails, the old fd stays. */
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(ctr_log_reopen(log_), -1);
    assert_int_equal(errno, EISDIR);
    feed_str(CTR_LOG_STDOUT, "still here\n");
    assert_file(old, TS " stdout F still here\n");
    rmdir(path);
}

static void test_interleaved_streams(void **state)
{
    feed_str(CTR_LOG_STDOUT, "out-a");
    feed_str(CTR_LOG_STDERR, "err-a");
    feed_str(CTR_LOG_STDOUT, "-b\n");
    feed_str(CTR_LOG_STDERR, "-b\nerr2\n");
    feed_str(CTR_LOG_STDOUT, "out2\n");
    assert_file(path, TS " stdout F out-a-b\n" TS " stderr F err-a-b\n" TS " stderr F err2\n" TS
                         " stdout F out2\n");
}

static void test_open_creates_0640(void **state)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    int flags = fcntl(log_->fd, F_GETFL);
    assert_true(flags & O_APPEND);
    assert_true(fcntl(log_->fd, F_GETFD) & FD_CLOEXEC);
}

static void test_open_errors(void **state)
{
    struct ctr_log *l = calloc(1, sizeof(*l));
    assert_non_null(l);
    char missing[160];
    snprintf(missing, sizeof(missing), "%s/no/such/dir.log", dir);
    assert_int_equal(ctr_log_open(l, missing, false, NULL), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(l->fd, -1);
    char *longp = pattern(CTR_LOG_PATH_MAX + 10);
    assert_int_equal(ctr_log_open(l, longp, false, NULL), -1);
    assert_int_equal(errno, ENAMETOOLONG);
    free(longp);
    ctr_log_close(l);
    free(l);
}

static void test_write_error_is_kept(void **state)
{
    /* Writing to a read-only fd fails; the data is still consumed. */
    close(log_->fd);
    log_->fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(log_->fd >= 0);
    assert_int_equal(ctr_log_feed(log_, CTR_LOG_STDOUT, "lost\npart", 9), -1);
    assert_int_equal(log_->write_errno, EBADF);
    assert_int_equal(log_->bufs[CTR_LOG_STDOUT].len, 4);
    assert_int_equal(ctr_log_reopen(log_), 0);
    feed_str(CTR_LOG_STDOUT, "ial\n");
    assert_file(path, TS " stdout F partial\n");
}

int main(void)
{
    umask(022);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_time),
        cmocka_unit_test_setup_teardown(test_simple_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_several_lines_one_chunk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_across_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_line_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_line_in_small_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exact_16k_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exact_32k_line_one_chunk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_16k_plus_one_without_newline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stderr_tag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tty_crlf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_crlf_strip_without_tty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tty_exact_16k_crlf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tty_16k_and_cr_at_end_of_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_flush_at_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_after_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_partial_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_failure_keeps_old_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interleaved_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_creates_0640, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_error_is_kept, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
