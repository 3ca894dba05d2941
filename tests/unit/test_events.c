/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for the container events fan-out (cri/events_service) over a
 * real h2 server and nghttp2 clients on a unix socket: every subscriber gets
 * every event in order; one whose client lets no data through is cut off
 * (RST_STREAM ENHANCE_YOUR_CALM) exactly when its backlog would pass
 * EVENTS_BACKLOG_MAX, its bytes released, while a reading subscriber goes
 * on; one event larger than the backlog still reaches a reader; at shutdown
 * the remaining subscribers end with UNAVAILABLE.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include "core/error.h"
#include "core/loop.h"
#include "core/util.h"
#include "cri/events_service.h"
#include "grpc/h2.h"

#define WAIT_MS 5000
#define PATH "/runtime.v1.RuntimeService/GetContainerEvents"

/* One subscriber: a client connection with one GetContainerEvents stream. */
struct sub {
    struct bufferevent *bev;
    nghttp2_session *session;
    int32_t stream;
    size_t data;  /* DATA bytes received */
    int status;   /* grpc-status from the trailers; -1 until then */
    int reset;    /* RST_STREAM error code; -1 until then */
    bool headers; /* response headers seen */
    bool closed;
};

static struct {
    char dir[64];
    char path[108];
    struct h2_server *srv;
} fx;

static bool timed_out;

static void on_safety(evutil_socket_t fd, short what, void *arg)
{
    timed_out = true;
}

static bool run_until(bool (*pred)(void *), void *arg)
{
    struct event *t = evtimer_new(loop_base(), on_safety, NULL);
    struct timeval tv = {WAIT_MS / 1000, 0};
    timed_out = false;
    evtimer_add(t, &tv);
    while (!pred(arg) && !timed_out)
        event_base_loop(loop_base(), EVLOOP_ONCE);
    event_free(t);
    return pred(arg);
}

/* Let everything that can move move (a few loop turns with no timer pending). */
static void settle(void)
{
    for (int i = 0; i < 50; i++)
        event_base_loop(loop_base(), EVLOOP_NONBLOCK);
}

static void on_dispatch(struct h2_call *call, const char *path, const uint8_t *msg, size_t len,
                        void *arg)
{
    assert_string_equal(path, PATH);
    events_service_get(call, NULL, NULL);
}

static void sub_flush(struct sub *s)
{
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(s->session, &data);
        assert_true(n >= 0);
        if (n == 0)
            return;
        bufferevent_write(s->bev, data, (size_t)n);
    }
}

static void sub_on_read(struct bufferevent *bev, void *arg)
{
    struct sub *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    ssize_t n = nghttp2_session_mem_recv(s->session, evbuffer_pullup(in, (ssize_t)len), len);
    assert_true(n >= 0);
    evbuffer_drain(in, len);
    sub_flush(s);
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    struct sub *s = user_data;
    s->headers = true;
    if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
        s->status = atoi((const char *)value);
    return 0;
}

static int on_data(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
                   size_t len, void *user_data)
{
    ((struct sub *)user_data)->data += len;
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    if (frame->hd.type == NGHTTP2_RST_STREAM)
        ((struct sub *)user_data)->reset = (int)frame->rst_stream.error_code;
    return 0;
}

static int on_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                    void *user_data)
{
    ((struct sub *)user_data)->closed = true;
    return 0;
}

static const uint8_t empty_request[5] = {0};

static ssize_t read_request(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                            size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                            void *user_data)
{
    memcpy(buf, empty_request, sizeof(empty_request));
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return sizeof(empty_request);
}

static nghttp2_nv nv(const char *name, const char *value)
{
    return (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                        NGHTTP2_NV_FLAG_NONE};
}

/* A subscriber whose stream window is window bytes; a reader widens it as data comes. */
static struct sub *subscribe(uint32_t window, bool reads)
{
    struct sub *s = xcalloc(1, sizeof(*s));
    s->status = s->reset = -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fx.path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    s->bev = bufferevent_socket_new(loop_base(), fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(s->bev, sub_on_read, NULL, NULL, s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    /* A client that does not read sends no WINDOW_UPDATE. */
    if (!reads)
        nghttp2_option_set_no_auto_window_update(opt, 1);
    assert_int_equal(nghttp2_session_client_new2(&s->session, cbs, s, opt), 0);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, window}};
    nghttp2_submit_settings(s->session, NGHTTP2_FLAG_NONE, iv, ARRAY_SIZE(iv));
    if (reads)
        nghttp2_session_set_local_window_size(s->session, NGHTTP2_FLAG_NONE, 0, 64 << 20);
    nghttp2_nv nva[] = {nv(":method", "POST"), nv(":scheme", "http"),
                        nv(":authority", "x"), nv(":path", PATH),
                        nv("te", "trailers"),  nv("content-type", "application/grpc")};
    nghttp2_data_provider prd = {.read_callback = read_request};
    s->stream = nghttp2_submit_request(s->session, NULL, nva, ARRAY_SIZE(nva), &prd, NULL);
    assert_true(s->stream > 0);
    sub_flush(s);
    return s;
}

static void sub_free(struct sub *s)
{
    bufferevent_free(s->bev);
    nghttp2_session_del(s->session);
    free(s);
}

static size_t want_subs;

static bool enough_subscribers(void *arg)
{
    return events_service_subscribers() == want_subs;
}

static bool got_headers(void *arg)
{
    return ((struct sub *)arg)->headers;
}

static size_t want_bytes;

static bool got_bytes(void *arg)
{
    return ((struct sub *)arg)->data >= want_bytes;
}

static bool is_reset(void *arg)
{
    return ((struct sub *)arg)->reset >= 0;
}

static bool is_closed(void *arg)
{
    return ((struct sub *)arg)->closed;
}

static int setup(void **state)
{
    _cleanup_error_ struct error *err = NULL;
    assert_int_equal(loop_init(&err), 0);
    snprintf(fx.dir, sizeof(fx.dir), "/tmp/tc-events-XXXXXX");
    assert_non_null(mkdtemp(fx.dir));
    snprintf(fx.path, sizeof(fx.path), "%s/s", fx.dir);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fx.path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    struct h2_server_opts o = {0};
    fx.srv = h2_server_new(fd, &o, on_dispatch, NULL, &err);
    assert_non_null(fx.srv);
    return 0;
}

static int teardown(void **state)
{
    events_service_close_all();
    h2_server_free(fx.srv);
    loop_shutdown();
    unlink(fx.path);
    rmdir(fx.dir);
    return 0;
}

static void test_fan_out_and_cut_off(void **state)
{
    struct sub *fast = subscribe(1u << 20, true);
    struct sub *stuck = subscribe(0, false); /* not one byte of data may reach it */
    want_subs = 2;
    assert_true(run_until(enough_subscribers, NULL));
    /* Headers first: the clients see their subscriptions are in place. */
    assert_true(run_until(got_headers, fast));
    assert_true(run_until(got_headers, stuck));

    enum { EVENT = 100 * 1000 };
    uint8_t *msg = xcalloc(1, EVENT);
    /* EVENTS_BACKLOG_MAX is 1 MiB: 10 framed events fit, the 11th would pass it. */
    size_t fit = EVENTS_BACKLOG_MAX / (EVENT + 5);
    assert_int_equal(fit, 10);
    for (size_t i = 1; i <= 30; i++) {
        msg[0] = (uint8_t)i;
        events_service_deliver(msg, EVENT);
        settle();
        if (i <= fit) {
            assert_int_equal(stuck->reset, -1);
            assert_int_equal(events_service_subscribers(), 2);
        } else if (i == fit + 1) {
            /* Cut off now, its backlog dropped: only the reader is left. */
            assert_true(run_until(is_reset, stuck));
            assert_int_equal(stuck->reset, NGHTTP2_ENHANCE_YOUR_CALM);
            assert_int_equal(stuck->data, 0);
            assert_int_equal(events_service_subscribers(), 1);
        }
    }
    /* The reader got every event, in full. */
    want_bytes = 30 * (EVENT + 5);
    assert_true(run_until(got_bytes, fast));
    assert_int_equal(fast->data, want_bytes);

    /* An event larger than the backlog alone still reaches a reader. */
    size_t huge = EVENTS_BACKLOG_MAX + 4096;
    uint8_t *big = xcalloc(1, huge);
    events_service_deliver(big, huge);
    want_bytes += huge + 5;
    assert_true(run_until(got_bytes, fast));
    assert_int_equal(fast->data, want_bytes);
    assert_int_equal(events_service_subscribers(), 1);
    free(big);
    free(msg);

    /* Shutdown: the reader's stream ends with UNAVAILABLE trailers. */
    events_service_close_all();
    assert_int_equal(events_service_subscribers(), 0);
    assert_true(run_until(is_closed, fast));
    assert_int_equal(fast->status, GRPC_UNAVAILABLE);
    sub_free(fast);
    sub_free(stuck);
}

static void test_subscriber_that_leaves(void **state)
{
    struct sub *a = subscribe(1u << 20, true);
    struct sub *b = subscribe(1u << 20, true);
    want_subs = 2;
    assert_true(run_until(enough_subscribers, NULL));
    /* b cancels: its call is dropped from the fan-out, a keeps getting events. */
    nghttp2_submit_rst_stream(b->session, NGHTTP2_FLAG_NONE, b->stream, NGHTTP2_CANCEL);
    sub_flush(b);
    want_subs = 1;
    assert_true(run_until(enough_subscribers, NULL));
    uint8_t msg[10] = {1};
    events_service_deliver(msg, sizeof(msg));
    want_bytes = sizeof(msg) + 5;
    assert_true(run_until(got_bytes, a));
    /* With nobody left, an event costs nothing and reaches nobody. */
    sub_free(a);
    want_subs = 0;
    events_service_deliver(msg, sizeof(msg)); /* the call is gone: dropped on the way */
    assert_true(run_until(enough_subscribers, NULL));
    sub_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fan_out_and_cut_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscriber_that_leaves, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
