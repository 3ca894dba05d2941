/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tinycri-rpcload: a closed-loop gRPC load generator for scripts/bench-rpc.
 *
 * One thread, one libevent loop, raw non-blocking unix sockets and nghttp2
 * driven through its memory API, so the client costs a few microseconds per
 * call and is not the bottleneck. It keeps exactly N unary calls in flight
 * over C HTTP/2 connections: when a stream closes, its slot immediately starts
 * the next call. Each call sends one pre-encoded protobuf request and checks
 * that the reply is HTTP 200, application/grpc, a single well-framed message,
 * and ends with grpc-status 0. Latencies (monotonic clock, nanoseconds) go into
 * a preallocated log-linear histogram with 0.4% resolution.
 *
 * With --interval, each call slot is paced instead: it starts a call every
 * interval (a ticker, as kubelet polls), never two at once, so the latencies
 * are those of an idle server answering a poll (scripts/bench-poll).
 *
 * Only calls that complete inside the measured window (after --warmup, for
 * --duration) are counted. At the end it prints a summary to stderr and one
 * machine-readable key=value line to stdout. A call that got any grpc-status
 * is "completed" and its latency is recorded; a non-zero status also counts as
 * an error (UNIMPLEMENTED is additionally counted on its own). Streams reset
 * or cut by a dropped connection are transport errors and have no latency.
 *
 * Exit status: 0 if at least one call returned grpc-status 0, 2 if calls were
 * made but none succeeded, 1 on usage errors or when the server could not be
 * reached.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include "core/error.h"

#define GRPC_CODE_MAX GRPC_UNAUTHENTICATED

/* Read chunk size and the point at which pending output is written first. */
#define READ_CHUNK 65536
#define OUT_HIGH_WATER 65536
/* A unary reply bigger than this is a protocol error, not a benchmark. */
#define MAX_REPLY_BYTES (4u << 20)
#define MSG_KEEP 160

/* Histogram: values below 2^HIST_SUB_BITS ns are exact, above that each
 * power of two is split into 2^(HIST_SUB_BITS-1) buckets. */
#define HIST_SUB_BITS 8
#define HIST_HALF (1u << (HIST_SUB_BITS - 1))
#define HIST_BUCKETS ((64 - HIST_SUB_BITS + 1) * HIST_HALF + HIST_HALF)

enum run_phase {
    PHASE_WARMUP,  /* calls run but are not counted; waits for the warmup timer */
    PHASE_MEASURE, /* calls are counted; waits for the duration timer */
    PHASE_DRAIN,   /* no new calls; waits for in-flight calls or the drain timer */
    PHASE_DONE,
};

enum call_result {
    CALL_COMPLETED, /* got a grpc-status */
    CALL_TRANSPORT, /* stream reset, connection lost, or no grpc-status */
    CALL_PROTOCOL,  /* HTTP status, content-type or message framing wrong */
};

struct rpc_call {
    struct rpc_conn *conn;
    int32_t stream_id; /* 0 while the slot is idle */
    uint64_t start_ns;
    struct event *ev_next; /* --interval: starts the slot's next call */
    size_t request_sent;
    int http_status;
    int grpc_status; /* -1 until a grpc-status header arrives */
    bool bad_reply;
    /* gRPC length-prefixed message framing of the reply body. */
    uint8_t prefix[5];
    size_t prefix_len;
    uint64_t body_left;
    uint32_t msg_count;
    char grpc_message[MSG_KEEP];
};

struct rpc_conn {
    struct rpc_load *load;
    int index;
    int fd;
    nghttp2_session *session;
    struct event *ev_read;
    struct event *ev_write;
    bool write_armed;
    bool got_settings;
    bool dead;
    uint8_t *out;
    size_t out_len;
    size_t out_alloc;
    size_t out_off;
    int n_calls;
    struct rpc_call *calls;
};

struct hist {
    uint64_t count;
    uint64_t max;
    double sum;
    uint64_t buckets[HIST_BUCKETS];
};

struct rpc_stats {
    uint64_t completed; /* replies with a grpc-status, latency recorded */
    uint64_t ok;
    uint64_t transport_errors;
    uint64_t protocol_errors;
    uint64_t by_code[GRPC_CODE_MAX + 2]; /* last slot: codes out of range */
    char first_message[GRPC_CODE_MAX + 2][MSG_KEEP];
};

struct rpc_options {
    const char *socket_path;
    char *method_path;
    const char *method_name;
    uint8_t *payload;
    size_t payload_len;
    int concurrency;
    int connections;
    double duration_s;
    double warmup_s;
    double drain_s;
    double interval_s; /* 0: closed loop; else one call per slot every interval */
    bool quiet;
};

struct rpc_load {
    struct rpc_options opt;
    struct event_base *base;
    struct event *ev_phase;
    enum run_phase phase;
    struct rpc_conn *conns;
    int conns_alive;
    int inflight;
    uint64_t window_start_ns;
    uint64_t window_end_ns;
    struct rusage ru_start;
    struct rusage ru_end;
    uint32_t server_max_streams;
    int conns_with_settings; /* proof the peer speaks HTTP/2 */
    struct rpc_stats stats;
    struct hist hist;
    nghttp2_nv nva[7];
    size_t nva_len;
    uint8_t *request; /* 5-byte gRPC prefix + payload */
    size_t request_len;
};

/* Pre-encoded requests for the methods the benchmark knows. */
static const uint8_t version_request[] = {0x0a, 0x02, 0x76, 0x31}; /* version: "v1" */

static __attribute__((noreturn)) void die_oom(void)
{
    fputs("rpcload: out of memory\n", stderr);
    exit(1);
}

static void *xcalloc(size_t nmemb, size_t n)
{
    void *p = calloc(nmemb, n);
    if (!p)
        die_oom();
    return p;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct timeval seconds_to_tv(double s)
{
    struct timeval tv;
    if (s < 0)
        s = 0;
    tv.tv_sec = (time_t)s;
    tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
    return tv;
}

static double tv_seconds(const struct timeval *tv)
{
    return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

/* --- latency histogram --- */

static size_t hist_index(uint64_t v)
{
    if (v < (1u << HIST_SUB_BITS))
        return (size_t)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - HIST_SUB_BITS + 1;
    return (size_t)shift * HIST_HALF + (size_t)(v >> shift);
}

/* Midpoint of the bucket, the value reported for a percentile in it. */
static double hist_value(size_t idx)
{
    if (idx < (1u << HIST_SUB_BITS))
        return (double)idx;
    size_t shift = idx / HIST_HALF - 1;
    size_t top = idx - shift * HIST_HALF;
    return ((double)top + 0.5) * (double)(1ull << shift);
}

static void hist_record(struct hist *h, uint64_t v)
{
    h->buckets[hist_index(v)]++;
    h->count++;
    h->sum += (double)v;
    if (v > h->max)
        h->max = v;
}

/* Nearest-rank percentile, q in (0, 1]. */
static double hist_quantile(const struct hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->count);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            double v = hist_value(i);
            return v > (double)h->max ? (double)h->max : v;
        }
    }
    return (double)h->max;
}

/* --- calls --- */

static bool is_counting(const struct rpc_load *load)
{
    return load->phase == PHASE_MEASURE;
}

static void call_record(struct rpc_call *call, enum call_result res, uint64_t end_ns)
{
    struct rpc_load *load = call->conn->load;
    struct rpc_stats *st = &load->stats;

    if (!is_counting(load))
        return;
    if (res == CALL_TRANSPORT) {
        st->transport_errors++;
        return;
    }
    if (res == CALL_PROTOCOL) {
        st->protocol_errors++;
        return;
    }
    st->completed++;
    hist_record(&load->hist, end_ns - call->start_ns);
    int slot = call->grpc_status <= GRPC_CODE_MAX ? call->grpc_status : GRPC_CODE_MAX + 1;
    if (st->by_code[slot]++ == 0)
        snprintf(st->first_message[slot], MSG_KEEP, "%s", call->grpc_message);
    if (call->grpc_status == GRPC_OK)
        st->ok++;
}

static ssize_t on_request_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                               size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                               void *user_data)
{
    struct rpc_call *call = source->ptr;
    struct rpc_load *load = call->conn->load;
    size_t n = load->request_len - call->request_sent;

    if (n > length)
        n = length;
    memcpy(buf, load->request + call->request_sent, n);
    call->request_sent += n;
    if (call->request_sent == load->request_len)
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static void conn_close(struct rpc_conn *conn, const char *why);
static void conn_flush(struct rpc_conn *conn);

static int call_start(struct rpc_call *call)
{
    struct rpc_conn *conn = call->conn;
    struct rpc_load *load = conn->load;
    nghttp2_data_provider prd = {.source.ptr = call, .read_callback = on_request_read};

    call->request_sent = 0;
    call->http_status = 0;
    call->grpc_status = -1;
    call->bad_reply = false;
    call->prefix_len = 0;
    call->body_left = 0;
    call->msg_count = 0;
    call->grpc_message[0] = '\0';
    call->start_ns = now_ns();
    int32_t id = nghttp2_submit_request(conn->session, NULL, load->nva, load->nva_len, &prd, call);
    if (id < 0) {
        fprintf(stderr, "rpcload: conn %d: submit request: %s\n", conn->index,
                nghttp2_strerror(id));
        return -1;
    }
    call->stream_id = id;
    load->inflight++;
    return 0;
}

/* Check the reply body as it arrives: 5-byte prefix (uncompressed) + message. */
static bool call_consume_body(struct rpc_call *call, const uint8_t *data, size_t len)
{
    while (len > 0) {
        if (call->prefix_len < 5) {
            size_t n = 5 - call->prefix_len;
            if (n > len)
                n = len;
            memcpy(call->prefix + call->prefix_len, data, n);
            call->prefix_len += n;
            data += n;
            len -= n;
            if (call->prefix_len < 5)
                return true;
            if (call->prefix[0] != 0)
                return false;
            call->msg_count++;
            call->body_left = ((uint64_t)call->prefix[1] << 24) |
                              ((uint64_t)call->prefix[2] << 16) | ((uint64_t)call->prefix[3] << 8) |
                              call->prefix[4];
            if (call->body_left > MAX_REPLY_BYTES)
                return false;
            if (call->body_left == 0)
                call->prefix_len = 0;
            continue;
        }
        size_t n = len < call->body_left ? len : (size_t)call->body_left;
        call->body_left -= n;
        data += n;
        len -= n;
        if (call->body_left == 0)
            call->prefix_len = 0;
    }
    return true;
}

static enum call_result call_classify(const struct rpc_call *call, uint32_t error_code)
{
    if (call->bad_reply)
        return CALL_PROTOCOL;
    if (error_code != NGHTTP2_NO_ERROR)
        return CALL_TRANSPORT;
    if (call->grpc_status < 0)
        return call->http_status != 0 && call->http_status != 200 ? CALL_PROTOCOL : CALL_TRANSPORT;
    if (call->http_status != 200)
        return CALL_PROTOCOL;
    /* A unary OK reply carries exactly one complete message. */
    if (call->prefix_len != 0)
        return CALL_PROTOCOL;
    if (call->grpc_status == GRPC_OK && call->msg_count != 1)
        return CALL_PROTOCOL;
    return CALL_COMPLETED;
}

/* --- nghttp2 callbacks --- */

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct rpc_call *call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!call)
        return 0;

    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        call->http_status = 0;
        for (size_t i = 0; i < valuelen && i < 4; i++)
            call->http_status = call->http_status * 10 + (value[i] - '0');
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        int code = 0;
        for (size_t i = 0; i < valuelen && i < 6; i++) {
            if (value[i] < '0' || value[i] > '9') {
                code = INT_MAX;
                break;
            }
            code = code * 10 + (value[i] - '0');
        }
        call->grpc_status = valuelen == 0 ? INT_MAX : code;
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        size_t n = valuelen < MSG_KEEP - 1 ? valuelen : MSG_KEEP - 1;
        memcpy(call->grpc_message, value, n);
        call->grpc_message[n] = '\0';
    } else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
        if (valuelen < 16 || memcmp(value, "application/grpc", 16) != 0)
            call->bad_reply = true;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user_data)
{
    struct rpc_call *call = nghttp2_session_get_stream_user_data(session, stream_id);
    if (call && !call_consume_body(call, data, len)) {
        /* Bad framing: on_stream_close counts it once the reset closes the stream. */
        call->bad_reply = true;
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_PROTOCOL_ERROR);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    struct rpc_call *call = nghttp2_session_get_stream_user_data(session, stream_id);
    if (!call || call->stream_id != stream_id)
        return 0;
    struct rpc_load *load = call->conn->load;
    uint64_t end = now_ns();
    enum call_result res = call_classify(call, error_code);

    call_record(call, res, end);
    call->stream_id = 0;
    load->inflight--;
    if (load->opt.interval_s > 0 && (load->phase == PHASE_WARMUP || load->phase == PHASE_MEASURE)) {
        /* Paced: the next call when this one's tick comes (at once if it is late). */
        uint64_t next = call->start_ns + (uint64_t)(load->opt.interval_s * 1e9);
        uint64_t wait = next > end ? next - end : 0;
        struct timeval tv = {(time_t)(wait / 1000000000ULL),
                             (suseconds_t)(wait % 1000000000ULL / 1000)};
        evtimer_add(call->ev_next, &tv);
    } else if ((load->phase == PHASE_WARMUP || load->phase == PHASE_MEASURE) && !call->conn->dead &&
               call_start(call) < 0) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (load->phase == PHASE_DRAIN && load->inflight == 0)
        event_base_loopbreak(load->base);
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct rpc_conn *conn = user_data;
    if (frame->hd.type == NGHTTP2_SETTINGS && !(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
        if (!conn->got_settings)
            conn->load->conns_with_settings++;
        conn->got_settings = true;
        uint32_t max =
            nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        if (conn->load->server_max_streams == 0 || max < conn->load->server_max_streams)
            conn->load->server_max_streams = max;
    }
    return 0;
}

/* --interval: a paced slot's tick. */
static void on_next_call(evutil_socket_t fd, short what, void *arg)
{
    struct rpc_call *call = arg;
    struct rpc_conn *conn = call->conn;
    enum run_phase phase = conn->load->phase;
    if (conn->dead || (phase != PHASE_WARMUP && phase != PHASE_MEASURE))
        return;
    if (call_start(call) < 0) {
        conn_close(conn, "submit request failed");
        return;
    }
    conn_flush(conn);
}

/* --- connections --- */

static void conn_close(struct rpc_conn *conn, const char *why)
{
    struct rpc_load *load = conn->load;
    if (conn->dead)
        return;
    conn->dead = true;
    uint64_t end = now_ns();
    for (int i = 0; i < conn->n_calls; i++) {
        struct rpc_call *call = &conn->calls[i];
        if (call->stream_id == 0)
            continue;
        call_record(call, CALL_TRANSPORT, end);
        call->stream_id = 0;
        load->inflight--;
    }
    if (load->phase != PHASE_DRAIN && load->phase != PHASE_DONE)
        fprintf(stderr, "rpcload: conn %d lost: %s\n", conn->index, why);
    event_del(conn->ev_read);
    event_del(conn->ev_write);
    close(conn->fd);
    conn->fd = -1;
    load->conns_alive--;
    if (load->conns_alive == 0 || (load->phase == PHASE_DRAIN && load->inflight == 0))
        event_base_loopbreak(load->base);
}

/* Move nghttp2's pending frames to the socket until it would block. */
static void conn_flush(struct rpc_conn *conn)
{
    for (;;) {
        while (conn->out_len - conn->out_off < OUT_HIGH_WATER) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(conn->session, &data);
            if (n < 0) {
                conn_close(conn, nghttp2_strerror((int)n));
                return;
            }
            if (n == 0)
                break;
            if (conn->out_len + (size_t)n > conn->out_alloc) {
                size_t want = conn->out_alloc ? conn->out_alloc : 2 * OUT_HIGH_WATER;
                while (want < conn->out_len + (size_t)n)
                    want *= 2;
                uint8_t *p = realloc(conn->out, want);
                if (!p)
                    die_oom();
                conn->out = p;
                conn->out_alloc = want;
            }
            memcpy(conn->out + conn->out_len, data, (size_t)n);
            conn->out_len += (size_t)n;
        }
        if (conn->out_off == conn->out_len)
            break;
        ssize_t w = write(conn->fd, conn->out + conn->out_off, conn->out_len - conn->out_off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!conn->write_armed) {
                    event_add(conn->ev_write, NULL);
                    conn->write_armed = true;
                }
                return;
            }
            conn_close(conn, strerror(errno));
            return;
        }
        conn->out_off += (size_t)w;
        if (conn->out_off == conn->out_len)
            conn->out_off = conn->out_len = 0;
    }
    if (conn->write_armed) {
        event_del(conn->ev_write);
        conn->write_armed = false;
    }
    if (!nghttp2_session_want_read(conn->session) && !nghttp2_session_want_write(conn->session))
        conn_close(conn, "session finished (GOAWAY)");
}

static void on_conn_readable(evutil_socket_t fd, short what, void *arg)
{
    struct rpc_conn *conn = arg;
    uint8_t buf[READ_CHUNK];

    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        conn_close(conn, strerror(errno));
        return;
    }
    if (n == 0) {
        conn_close(conn, "server closed the connection");
        return;
    }
    ssize_t r = nghttp2_session_mem_recv(conn->session, buf, (size_t)n);
    if (r < 0) {
        conn_close(conn, nghttp2_strerror((int)r));
        return;
    }
    if (!conn->dead)
        conn_flush(conn);
}

static void on_conn_writable(evutil_socket_t fd, short what, void *arg)
{
    struct rpc_conn *conn = arg;
    conn_flush(conn);
}

static int conn_open(struct rpc_conn *conn, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "rpcload: socket path too long: %s\n", path);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "rpcload: socket: %s\n", strerror(errno));
        return -1;
    }
    /* Connect blocking (a local connect does not wait), then switch to non-blocking. */
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "rpcload: connect %s: %s\n", path, strerror(errno));
        close(fd);
        return -1;
    }
    int sndbuf = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
        fprintf(stderr, "rpcload: fcntl: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    conn->fd = fd;
    return 0;
}

static int conn_init(struct rpc_load *load, struct rpc_conn *conn, int index, int n_calls)
{
    nghttp2_session_callbacks *cbs;
    conn->load = load;
    conn->index = index;
    conn->fd = -1;
    if (conn_open(conn, load->opt.socket_path) < 0)
        return -1;

    if (nghttp2_session_callbacks_new(&cbs) != 0)
        die_oom();
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    int rv = nghttp2_session_client_new(&conn->session, cbs, conn);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0)
        die_oom();

    /* A large receive window so flow control never paces the benchmark. */
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
    };
    nghttp2_submit_settings(conn->session, NGHTTP2_FLAG_NONE, iv, 2);
    nghttp2_session_set_local_window_size(conn->session, NGHTTP2_FLAG_NONE, 0, 16 << 20);

    conn->ev_read = event_new(load->base, conn->fd, EV_READ | EV_PERSIST, on_conn_readable, conn);
    conn->ev_write = event_new(load->base, conn->fd, EV_WRITE | EV_PERSIST, on_conn_writable, conn);
    if (!conn->ev_read || !conn->ev_write)
        die_oom();
    event_add(conn->ev_read, NULL);

    conn->n_calls = n_calls;
    conn->calls = xcalloc((size_t)n_calls, sizeof(*conn->calls));
    for (int i = 0; i < n_calls; i++) {
        conn->calls[i].conn = conn;
        conn->calls[i].ev_next = evtimer_new(load->base, on_next_call, &conn->calls[i]);
        if (!conn->calls[i].ev_next)
            die_oom();
    }
    load->conns_alive++;
    return 0;
}

static void conn_fini(struct rpc_conn *conn)
{
    if (conn->session)
        nghttp2_session_del(conn->session);
    if (conn->ev_read)
        event_free(conn->ev_read);
    if (conn->ev_write)
        event_free(conn->ev_write);
    if (conn->fd >= 0)
        close(conn->fd);
    free(conn->out);
    for (int i = 0; conn->calls && i < conn->n_calls; i++)
        if (conn->calls[i].ev_next)
            event_free(conn->calls[i].ev_next);
    free(conn->calls);
}

/* --- run phases --- */

static void on_phase_timer(evutil_socket_t fd, short what, void *arg)
{
    struct rpc_load *load = arg;
    struct timeval tv;

    switch (load->phase) {
    case PHASE_WARMUP:
        load->phase = PHASE_MEASURE;
        load->window_start_ns = now_ns();
        getrusage(RUSAGE_SELF, &load->ru_start);
        tv = seconds_to_tv(load->opt.duration_s);
        evtimer_add(load->ev_phase, &tv);
        break;
    case PHASE_MEASURE:
        load->phase = PHASE_DRAIN;
        load->window_end_ns = now_ns();
        getrusage(RUSAGE_SELF, &load->ru_end);
        if (load->inflight == 0) {
            event_base_loopbreak(load->base);
            break;
        }
        tv = seconds_to_tv(load->opt.drain_s);
        evtimer_add(load->ev_phase, &tv);
        break;
    case PHASE_DRAIN:
        fprintf(stderr, "rpcload: %d call(s) still in flight after %.1f s drain; not counted\n",
                load->inflight, load->opt.drain_s);
        /* fall through */
    case PHASE_DONE:
        event_base_loopbreak(load->base);
        break;
    }
}

/* --- setup and report --- */

static void add_header(struct rpc_load *load, const char *name, const char *value)
{
    nghttp2_nv *nv = &load->nva[load->nva_len++];
    nv->name = (uint8_t *)name;
    nv->namelen = strlen(name);
    nv->value = (uint8_t *)value;
    nv->valuelen = strlen(value);
    nv->flags = NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE;
}

static void load_prepare_request(struct rpc_load *load)
{
    add_header(load, ":method", "POST");
    add_header(load, ":scheme", "http");
    add_header(load, ":path", load->opt.method_path);
    add_header(load, ":authority", "localhost");
    add_header(load, "content-type", "application/grpc");
    add_header(load, "te", "trailers");
    add_header(load, "user-agent", "tinycri-rpcload/" PACKAGE_VERSION);

    size_t n = load->opt.payload_len;
    load->request_len = 5 + n;
    load->request = xcalloc(1, load->request_len);
    load->request[1] = (uint8_t)(n >> 24);
    load->request[2] = (uint8_t)(n >> 16);
    load->request[3] = (uint8_t)(n >> 8);
    load->request[4] = (uint8_t)n;
    if (n)
        memcpy(load->request + 5, load->opt.payload, n);
}

static int parse_hex(const char *hex, uint8_t **out, size_t *out_len)
{
    size_t len = strlen(hex);
    if (len % 2 != 0)
        return -1;
    uint8_t *p = xcalloc(1, len / 2 + 1);
    for (size_t i = 0; i < len / 2; i++) {
        unsigned int byte;
        if (sscanf(hex + 2 * i, "%2x", &byte) != 1) {
            free(p);
            return -1;
        }
        p[i] = (uint8_t)byte;
    }
    *out = p;
    *out_len = len / 2;
    return 0;
}

static void usage(FILE *f)
{
    fputs("usage: tinycri-rpcload --socket PATH --method METHOD [options]\n"
          "\n"
          "  -s, --socket PATH        unix socket of the CRI server\n"
          "  -m, --method METHOD      full gRPC path (/runtime.v1.RuntimeService/Version)\n"
          "                           or a RuntimeService method name (Version)\n"
          "  -c, --concurrency N      calls kept in flight (default 1)\n"
          "  -n, --connections C      HTTP/2 connections to spread them over (default 1)\n"
          "  -d, --duration SECONDS   measured time (default 5)\n"
          "  -w, --warmup SECONDS     unmeasured time before that (default 0)\n"
          "      --drain SECONDS      wait for in-flight calls at the end (default 2)\n"
          "      --interval SECONDS   pace each call slot: one call every SECONDS (a ticker)\n"
          "                           instead of the next one at once\n"
          "      --payload-hex HEX    request message; the default is known for Version\n"
          "                           (version \"v1\") and empty for other methods\n"
          "  -q, --quiet              only the result line on stdout\n"
          "\n"
          "Prints one line: method= conc= conns= duration_s= calls= ok= errors= unimplemented=\n"
          "transport_errors= protocol_errors= rps= p50_us= p90_us= p99_us= p999_us= max_us=\n"
          "mean_us= client_cpu= server_max_streams=\n"
          "calls counts every reply with a grpc-status (so rps and latency include error\n"
          "replies); errors counts every call that did not end with grpc-status 0.\n"
          "Exit status: 0 if some call succeeded, 2 if none did, 1 if the server was\n"
          "unreachable or the arguments were wrong.\n",
          f);
}

static bool parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0) || v > 1e6)
        return false;
    *out = v;
    return true;
}

static bool parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = (int)v;
    return true;
}

static int parse_args(int argc, char **argv, struct rpc_options *opt)
{
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, 's'},
        {"method", required_argument, NULL, 'm'},
        {"concurrency", required_argument, NULL, 'c'},
        {"connections", required_argument, NULL, 'n'},
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},
        {"drain", required_argument, NULL, 'D'},
        {"interval", required_argument, NULL, 'I'},
        {"payload-hex", required_argument, NULL, 'P'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *method = NULL;
    const char *payload_hex = NULL;

    opt->concurrency = 1;
    opt->connections = 1;
    opt->duration_s = 5;
    opt->warmup_s = 0;
    opt->drain_s = 2;
    for (;;) {
        int c = getopt_long(argc, argv, "s:m:c:n:d:w:qh", longopts, NULL);
        if (c == -1)
            break;
        bool ok = true;
        switch (c) {
        case 's':
            opt->socket_path = optarg;
            break;
        case 'm':
            method = optarg;
            break;
        case 'c':
            ok = parse_int(optarg, 1, 100000, &opt->concurrency);
            break;
        case 'n':
            ok = parse_int(optarg, 1, 1024, &opt->connections);
            break;
        case 'd':
            ok = parse_double(optarg, &opt->duration_s) && opt->duration_s > 0;
            break;
        case 'w':
            ok = parse_double(optarg, &opt->warmup_s);
            break;
        case 'D':
            ok = parse_double(optarg, &opt->drain_s);
            break;
        case 'I':
            ok = parse_double(optarg, &opt->interval_s) && opt->interval_s > 0;
            break;
        case 'P':
            payload_hex = optarg;
            break;
        case 'q':
            opt->quiet = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
        if (!ok) {
            fprintf(stderr, "rpcload: bad value for -%c: %s\n", c, optarg);
            return -1;
        }
    }
    if (optind != argc || !opt->socket_path || !method) {
        usage(stderr);
        return -1;
    }
    if (opt->connections > opt->concurrency) {
        fprintf(stderr, "rpcload: --connections must not exceed --concurrency\n");
        return -1;
    }

    if (method[0] == '/') {
        opt->method_path = strdup(method);
    } else {
        size_t n = strlen("/runtime.v1.RuntimeService/") + strlen(method) + 1;
        opt->method_path = xcalloc(1, n);
        snprintf(opt->method_path, n, "/runtime.v1.RuntimeService/%s", method);
    }
    if (!opt->method_path)
        die_oom();
    opt->method_name = strrchr(opt->method_path, '/') + 1;

    if (payload_hex) {
        if (parse_hex(payload_hex, &opt->payload, &opt->payload_len) < 0) {
            fprintf(stderr, "rpcload: --payload-hex is not an even-length hex string\n");
            return -1;
        }
    } else if (strcmp(opt->method_name, "Version") == 0) {
        opt->payload = xcalloc(1, sizeof(version_request));
        memcpy(opt->payload, version_request, sizeof(version_request));
        opt->payload_len = sizeof(version_request);
    }
    return 0;
}

static void report_errors(const struct rpc_load *load)
{
    const struct rpc_stats *st = &load->stats;
    bool loud = strcmp(load->opt.method_name, "Version") == 0;
    uint64_t failed = st->completed - st->ok + st->transport_errors + st->protocol_errors;

    if (failed == 0)
        return;
    if (loud)
        fprintf(stderr, "rpcload: *** %s FAILED: %" PRIu64 " call(s) did not return OK ***\n",
                load->opt.method_name, failed);
    for (int i = 1; i <= GRPC_CODE_MAX + 1; i++) {
        if (st->by_code[i] == 0)
            continue;
        fprintf(stderr, "rpcload: %s: %" PRIu64 " x grpc-status %s%s: \"%s\"\n",
                load->opt.method_name, st->by_code[i], grpc_code_name(i),
                i == GRPC_UNIMPLEMENTED ? " (counted as completed calls for rate and latency)" : "",
                st->first_message[i]);
    }
    if (st->transport_errors)
        fprintf(stderr,
                "rpcload: %s: %" PRIu64 " x transport error (stream reset or "
                "connection lost)\n",
                load->opt.method_name, st->transport_errors);
    if (st->protocol_errors)
        fprintf(stderr,
                "rpcload: %s: %" PRIu64 " x protocol error (HTTP status, "
                "content-type or gRPC framing)\n",
                load->opt.method_name, st->protocol_errors);
}

static double rusage_seconds(const struct rusage *ru)
{
    return tv_seconds(&ru->ru_utime) + tv_seconds(&ru->ru_stime);
}

static void report(const struct rpc_load *load)
{
    const struct rpc_stats *st = &load->stats;
    const struct hist *h = &load->hist;
    double secs = (double)(load->window_end_ns - load->window_start_ns) / 1e9;
    double rps = secs > 0 ? (double)st->completed / secs : 0;
    double cpu =
        secs > 0 ? (rusage_seconds(&load->ru_end) - rusage_seconds(&load->ru_start)) / secs : 0;
    uint64_t errors = st->completed - st->ok + st->transport_errors + st->protocol_errors;
    double mean = h->count ? h->sum / (double)h->count : 0;

    report_errors(load);
    if (!load->opt.quiet) {
        fprintf(stderr,
                "rpcload: %s conc=%d conns=%d: %" PRIu64 " calls in %.2f s = %.1f calls/s, "
                "p50 %.1f us, p99 %.1f us, max %.1f us, client cpu %.0f%%\n",
                load->opt.method_name, load->opt.concurrency, load->opt.connections, st->completed,
                secs, rps, hist_quantile(h, 0.50) / 1e3, hist_quantile(h, 0.99) / 1e3,
                (double)h->max / 1e3, cpu * 100);
        int per_conn = (load->opt.concurrency + load->opt.connections - 1) / load->opt.connections;
        if (load->conns_with_settings > 0 && load->server_max_streams < (uint32_t)per_conn)
            fprintf(stderr,
                    "rpcload: note: server allows only %" PRIu32
                    " concurrent streams per connection; nghttp2 queues the rest\n",
                    load->server_max_streams);
    }
    printf("method=%s conc=%d conns=%d duration_s=%.3f calls=%" PRIu64 " ok=%" PRIu64
           " errors=%" PRIu64 " unimplemented=%" PRIu64 " transport_errors=%" PRIu64
           " protocol_errors=%" PRIu64 " rps=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f"
           " p999_us=%.1f max_us=%.1f mean_us=%.1f client_cpu=%.2f server_max_streams=%" PRIu32
           "\n",
           load->opt.method_name, load->opt.concurrency, load->opt.connections, secs, st->completed,
           st->ok, errors, st->by_code[GRPC_UNIMPLEMENTED], st->transport_errors,
           st->protocol_errors, rps, hist_quantile(h, 0.50) / 1e3, hist_quantile(h, 0.90) / 1e3,
           hist_quantile(h, 0.99) / 1e3, hist_quantile(h, 0.999) / 1e3, (double)h->max / 1e3,
           mean / 1e3, cpu, load->server_max_streams);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    static struct rpc_load load; /* large (histogram): keep it off the stack */
    int rc = 1;

    if (parse_args(argc, argv, &load.opt) < 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    load_prepare_request(&load);

    struct event_config *cfg = event_config_new();
    if (!cfg)
        die_oom();
    /* One thread: libevent needs no locks. */
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
    load.base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!load.base)
        die_oom();
    load.ev_phase = evtimer_new(load.base, on_phase_timer, &load);
    if (!load.ev_phase)
        die_oom();

    int nconns = load.opt.connections;
    load.conns = xcalloc((size_t)nconns, sizeof(*load.conns));
    for (int i = 0; i < nconns; i++) {
        int share = load.opt.concurrency / nconns + (i < load.opt.concurrency % nconns);
        if (conn_init(&load, &load.conns[i], i, share) < 0)
            goto out;
    }

    load.phase = load.opt.warmup_s > 0 ? PHASE_WARMUP : PHASE_MEASURE;
    load.window_start_ns = now_ns();
    getrusage(RUSAGE_SELF, &load.ru_start);
    struct timeval tv =
        seconds_to_tv(load.phase == PHASE_WARMUP ? load.opt.warmup_s : load.opt.duration_s);
    evtimer_add(load.ev_phase, &tv);

    for (int i = 0; i < nconns; i++) {
        struct rpc_conn *conn = &load.conns[i];
        for (int j = 0; j < conn->n_calls; j++) {
            if (call_start(&conn->calls[j]) < 0)
                goto out;
        }
        conn_flush(conn);
    }

    event_base_dispatch(load.base);

    if (load.phase == PHASE_WARMUP || load.phase == PHASE_MEASURE) {
        /* Every connection died before the end: the window ends now. */
        if (load.phase == PHASE_WARMUP)
            load.window_start_ns = now_ns();
        load.window_end_ns = now_ns();
        getrusage(RUSAGE_SELF, &load.ru_end);
        fprintf(stderr, "rpcload: all connections lost; run ended early\n");
    }
    load.phase = PHASE_DONE;
    report(&load);
    rc = load.stats.ok > 0 ? 0 : 2;
    if (load.conns_with_settings == 0) {
        fprintf(stderr, "rpcload: %s sent no HTTP/2 SETTINGS: not a gRPC server?\n",
                load.opt.socket_path);
        rc = 1;
    }

out:
    for (int i = 0; i < nconns; i++)
        conn_fini(&load.conns[i]);
    free(load.conns);
    event_free(load.ev_phase);
    event_base_free(load.base);
    free(load.request);
    free(load.opt.payload);
    free(load.opt.method_path);
    return rc;
}
