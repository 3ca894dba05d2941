/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CRI container log writer (format and rules in ctr_log.h). A pure module
 * over libc: no allocation, no global state, so the keeper can link it alone
 * and the unit test can drive it with a fake clock.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "keeper/ctr_log.h"

/* "<timestamp> stdout F " */
#define HEADER_LEN (CTR_LOG_TIMESTAMP_LEN + 10)

static const char *const stream_names[CTR_LOG_NSTREAMS] = {"stdout", "stderr"};

static int64_t clock_realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void put_digits(char *out, unsigned value, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[i] = (char)('0' + value % 10);
        value /= 10;
    }
}

void ctr_log_format_time(int64_t ns, char *out)
{
    if (ns < 0)
        ns = 0;
    int64_t secs = ns / 1000000000;
    unsigned frac = (unsigned)(ns % 1000000000);
    int64_t days = secs / 86400;
    unsigned sod = (unsigned)(secs % 86400);

    /* Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
     * civil_from_days); gmtime_r() would load time zone files on first use. */
    int64_t z = days + 719468;
    int64_t era = z / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t year = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned day = doy - (153 * mp + 2) / 5 + 1;
    unsigned month = mp < 10 ? mp + 3 : mp - 9;
    if (month <= 2)
        year++;
    if (year > 9999)
        year = 9999;

    put_digits(out, (unsigned)year, 4);
    out[4] = '-';
    put_digits(out + 5, month, 2);
    out[7] = '-';
    put_digits(out + 8, day, 2);
    out[10] = 'T';
    put_digits(out + 11, sod / 3600, 2);
    out[13] = ':';
    put_digits(out + 14, sod / 60 % 60, 2);
    out[16] = ':';
    put_digits(out + 17, sod % 60, 2);
    out[19] = '.';
    put_digits(out + 20, frac, 9);
    out[29] = 'Z';
}

static int writev_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        size_t done = (size_t)w;
        while (n > 0 && done >= iov->iov_len) {
            done -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= done;
        }
    }
    return 0;
}

/* One record whose content is a[0..alen) followed by b[0..blen). */
static int write_record(struct ctr_log *log, enum ctr_log_stream s, char tag, const char *a,
                        size_t alen, const char *b, size_t blen)
{
    char header[HEADER_LEN];
    ctr_log_format_time(log->clock(), header);
    header[CTR_LOG_TIMESTAMP_LEN] = ' ';
    memcpy(header + CTR_LOG_TIMESTAMP_LEN + 1, stream_names[s], 6);
    header[CTR_LOG_TIMESTAMP_LEN + 7] = ' ';
    header[CTR_LOG_TIMESTAMP_LEN + 8] = tag;
    header[CTR_LOG_TIMESTAMP_LEN + 9] = ' ';

    struct iovec iov[4] = {
        {header, sizeof(header)},
        {(void *)a, alen},
        {(void *)b, blen},
        {(void *)"\n", 1},
    };
    if (log->fd < 0) {
        errno = EBADF;
    } else if (writev_all(log->fd, iov, 4) == 0) {
        return 0;
    }
    if (log->write_errno == 0)
        log->write_errno = errno;
    return -1;
}

/*
 * Write P records of CTR_LOG_MAX_LINE bytes taken from the buffered bytes
 * (*bp, *blen) then the new data (*dp, *dlen) while more than keep bytes
 * remain, advancing the four in place. Returns 0 or -1 (a write failed).
 */
static int emit_pieces(struct ctr_log *log, enum ctr_log_stream s, const char **bp, size_t *blen,
                       const char **dp, size_t *dlen, size_t keep)
{
    int rc = 0;
    while (*blen + *dlen > keep) {
        size_t from_buf = *blen < CTR_LOG_MAX_LINE ? *blen : CTR_LOG_MAX_LINE;
        size_t from_data = CTR_LOG_MAX_LINE - from_buf;
        if (write_record(log, s, 'P', *bp, from_buf, *dp, from_data) < 0)
            rc = -1;
        *bp += from_buf;
        *blen -= from_buf;
        *dp += from_data;
        *dlen -= from_data;
    }
    return rc;
}

/* A newline ended the line made of the buffered bytes and data[0..len). */
static int end_line(struct ctr_log *log, enum ctr_log_stream s, const char *data, size_t len)
{
    struct ctr_log_buf *buf = &log->bufs[s];
    const char *bp = buf->data;
    size_t blen = buf->len;
    if (log->tty) {
        if (len > 0 && data[len - 1] == '\r')
            len--;
        else if (len == 0 && blen > 0 && bp[blen - 1] == '\r')
            blen--;
    }
    buf->len = 0;
    int rc = emit_pieces(log, s, &bp, &blen, &data, &len, CTR_LOG_MAX_LINE);
    if (write_record(log, s, 'F', bp, blen, data, len) < 0)
        rc = -1;
    return rc;
}

/* data[0..len) has no newline: write whole 16 KiB pieces, buffer the rest. */
static int hold(struct ctr_log *log, enum ctr_log_stream s, const char *data, size_t len)
{
    struct ctr_log_buf *buf = &log->bufs[s];
    const char *bp = buf->data;
    size_t blen = buf->len;
    /* A full line followed by '\r' may still end in "\r\n": keep the '\r'
     * back so the line is not split into P + F with an empty last piece. */
    size_t keep = CTR_LOG_MAX_LINE;
    char last = len > 0 ? data[len - 1] : (blen > 0 ? bp[blen - 1] : 0);
    if (log->tty && last == '\r')
        keep++;
    int rc = emit_pieces(log, s, &bp, &blen, &data, &len, keep);
    if (bp != buf->data)
        memmove(buf->data, bp, blen);
    memcpy(buf->data + blen, data, len);
    buf->len = blen + len;
    return rc;
}

int ctr_log_feed(struct ctr_log *log, enum ctr_log_stream s, const void *data, size_t len)
{
    const char *p = data;
    int rc = 0;
    while (len > 0) {
        const char *nl = memchr(p, '\n', len);
        if (!nl)
            return hold(log, s, p, len) < 0 ? -1 : rc;
        size_t n = (size_t)(nl - p);
        if (end_line(log, s, p, n) < 0)
            rc = -1;
        p += n + 1;
        len -= n + 1;
    }
    return rc;
}

int ctr_log_flush(struct ctr_log *log, enum ctr_log_stream s)
{
    struct ctr_log_buf *buf = &log->bufs[s];
    int rc = 0;
    /* A full tty line with its held '\r' is one byte over a record's size. */
    for (size_t off = 0; off < buf->len; off += CTR_LOG_MAX_LINE) {
        size_t n = buf->len - off < CTR_LOG_MAX_LINE ? buf->len - off : CTR_LOG_MAX_LINE;
        if (write_record(log, s, 'P', buf->data + off, n, NULL, 0) < 0)
            rc = -1;
    }
    buf->len = 0;
    return rc;
}

static int open_path(const char *path)
{
    int fd;
    do
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    while (fd < 0 && errno == EINTR);
    return fd;
}

int ctr_log_open(struct ctr_log *log, const char *path, bool tty, ctr_log_clock_cb clock)
{
    log->fd = -1;
    log->tty = tty;
    log->clock = clock ? clock : clock_realtime_ns;
    log->write_errno = 0;
    for (int s = 0; s < CTR_LOG_NSTREAMS; s++)
        log->bufs[s].len = 0;
    size_t n = strlen(path);
    if (n >= sizeof(log->path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(log->path, path, n + 1);
    log->fd = open_path(path);
    return log->fd < 0 ? -1 : 0;
}

int ctr_log_reopen(struct ctr_log *log)
{
    int fd = open_path(log->path);
    if (fd < 0)
        return -1;
    if (log->fd >= 0)
        close(log->fd);
    log->fd = fd;
    return 0;
}

void ctr_log_close(struct ctr_log *log)
{
    if (log->fd < 0)
        return;
    for (int s = 0; s < CTR_LOG_NSTREAMS; s++)
        ctr_log_flush(log, (enum ctr_log_stream)s);
    close(log->fd);
    log->fd = -1;
}
