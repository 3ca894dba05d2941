/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CRI log writer (keeper/ctr_log), driven by a container's output. The
 * input is a flags byte (1: tty mode) and then operations, each an op byte:
 *   0, 1  feed stdout (stderr) the next <len byte> bytes
 *   2, 3  flush stdout (stderr)
 *   4, 5  feed stdout (stderr) (<count byte> + 1) * 128 copies of the next byte
 *   6     rotate: rename the file away, then reopen (as kubelet does)
 *   7     feed stdout the rest of the input
 * The log files, read back in order, must be well-formed records
 * ("<timestamp> <stream> <P|F> <content>\n", content at most 16 KiB without
 * a newline) that give back exactly the bytes each stream was fed (in tty
 * mode with each "\r\n" as "\n", except across a flush: a flush ends a stream).
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "keeper/ctr_log.h"

struct bytes {
    char *data;
    size_t len, alloc;
};

static void bytes_add(struct bytes *b, const void *data, size_t len)
{
    if (b->len + len > b->alloc) {
        b->alloc = (b->len + len) * 2 + 64;
        b->data = realloc(b->data, b->alloc);
        FUZZ_CHECK(b->data);
    }
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
}

static int64_t fake_ns;

static int64_t fake_clock(void)
{
    return fake_ns += 1000;
}

static char path[256], rotated[256];
static struct ctr_log log_writer; /* 32 KiB of buffers: not on the stack */

static void read_back(struct bytes *out, const char *file)
{
    FILE *f = fopen(file, "re");
    FUZZ_CHECK(f);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        bytes_add(out, chunk, n);
    fclose(f);
}

/* Check the records and rebuild each stream's bytes from them. */
static void parse_records(const struct bytes *log, struct bytes *streams)
{
    size_t i = 0;
    while (i < log->len) {
        const char *rec = log->data + i;
        const char *nl = memchr(rec, '\n', log->len - i);
        FUZZ_CHECK(nl);
        size_t len = (size_t)(nl - rec);
        FUZZ_CHECK(len >= CTR_LOG_TIMESTAMP_LEN + 10);
        FUZZ_CHECK(rec[CTR_LOG_TIMESTAMP_LEN - 1] == 'Z' && rec[CTR_LOG_TIMESTAMP_LEN] == ' ');
        const char *stream = rec + CTR_LOG_TIMESTAMP_LEN + 1;
        int s = memcmp(stream, "stdout ", 7) == 0 ? 0 : memcmp(stream, "stderr ", 7) == 0 ? 1 : -1;
        FUZZ_CHECK(s >= 0);
        char tag = stream[7];
        FUZZ_CHECK((tag == 'P' || tag == 'F') && stream[8] == ' ');
        const char *content = stream + 9;
        size_t clen = (size_t)(nl - content);
        FUZZ_CHECK(clen <= CTR_LOG_MAX_LINE);
        bytes_add(&streams[s], content, clen);
        if (tag == 'F')
            bytes_add(&streams[s], "\n", 1);
        i += len + 1;
    }
}

/*
 * What the log should say a stream wrote since its last flush, added to out:
 * in tty mode "\r\n" is a newline. The fed bytes are consumed.
 */
static void expect(struct bytes *fed, bool tty, struct bytes *out)
{
    for (size_t i = 0; i < fed->len; i++) {
        if (tty && fed->data[i] == '\r' && i + 1 < fed->len && fed->data[i + 1] == '\n')
            continue;
        bytes_add(out, fed->data + i, 1);
    }
    fed->len = 0;
}

static void feed(int s, const void *data, size_t len, struct bytes *fed)
{
    FUZZ_CHECK(ctr_log_feed(&log_writer, (enum ctr_log_stream)s, data, len) == 0);
    bytes_add(&fed[s], data, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof(path), "%s/0.log", fuzz_tmpdir());
        snprintf(rotated, sizeof(rotated), "%s/0.log.rotated", fuzz_tmpdir());
    }
    if (size < 1)
        return 0;
    bool tty = data[0] & 1;
    unlink(path);
    FUZZ_CHECK(ctr_log_open(&log_writer, path, tty, fake_clock) == 0);
    struct bytes fed[2] = {{0}}, want[2] = {{0}}, log = {0};
    size_t i = 1;
    while (i < size) {
        uint8_t op = data[i++];
        int s = op & 1;
        switch (op & 7) {
        case 0:
        case 1: {
            size_t len = i < size ? data[i++] : 0;
            if (len > size - i)
                len = size - i;
            feed(s, data + i, len, fed);
            i += len;
            break;
        }
        case 2:
        case 3:
            FUZZ_CHECK(ctr_log_flush(&log_writer, (enum ctr_log_stream)s) == 0);
            expect(&fed[s], tty, &want[s]);
            break;
        case 4:
        case 5: {
            if (size - i < 2) {
                i = size;
                break;
            }
            size_t count = ((size_t)data[i] + 1) * 128;
            char *run = malloc(count);
            FUZZ_CHECK(run);
            memset(run, data[i + 1], count);
            feed(s, run, count, fed);
            free(run);
            i += 2;
            break;
        }
        case 6:
            FUZZ_CHECK(rename(path, rotated) == 0);
            FUZZ_CHECK(ctr_log_reopen(&log_writer) == 0);
            read_back(&log, rotated);
            unlink(rotated);
            break;
        default:
            feed(0, data + i, size - i, fed);
            i = size;
            break;
        }
    }
    ctr_log_close(&log_writer);
    FUZZ_CHECK(log_writer.write_errno == 0);
    read_back(&log, path);
    unlink(path);

    struct bytes got[2] = {{0}};
    parse_records(&log, got);
    for (int s = 0; s < 2; s++) {
        expect(&fed[s], tty, &want[s]);
        if (got[s].len != want[s].len ||
            (want[s].len && memcmp(got[s].data, want[s].data, want[s].len))) {
            fprintf(stderr, "stream %d: the log gives back %zu bytes, %zu were written\n", s,
                    got[s].len, want[s].len);
            abort();
        }
        free(want[s].data);
        free(got[s].data);
        free(fed[s].data);
    }
    free(log.data);
    return 0;
}
