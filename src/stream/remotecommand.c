/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Exec and attach sessions behind remotecommand.h.
 *
 * One state machine per session:
 *   RC_STREAMS  waiting for the client's streams (SPDY), creation deadline armed
 *   RC_RUNNING  the process (exec) or the keeper connection (attach) is live;
 *               waiting for its exit and the end of its output
 *   RC_ENDED    the status is written; the connection lingers until the client goes
 *   RC_ORPHANED the client went away while the process ran: stdin was closed and a
 *               terminal hung up; waiting for the exit, killing the tree after the grace
 * Handlers record what happened and call rc_step().
 *
 * Process output is read only while the connection's output is under its
 * high-water mark: a client that does not read stops the reads, the pipes
 * fill, and the process blocks on its own writes; the daemon's memory stays
 * bounded. Client input beyond IN_HIGH pauses the connection's reads.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/text.h"
#include "core/util.h"
#include "keeper/protocol.h"
#include "stream/conn.h"
#include "stream/remotecommand.h"
#include "stream/server.h"
#include "stream/spdy.h"
#include "stream/token.h"

#define READ_CHUNK (32 * 1024)
#define READS_PER_WAKEUP 4
/* Client input waiting for the process beyond this pauses the connection. */
#define IN_HIGH (64 * 1024)
#define IN_CAP (IN_HIGH + 1024 * 1024)
/* After the exit: how long output may still come (grandchildren may hold the pipes). */
#define DRAIN_MS 2000
#define MESSAGE_MAX 1024

enum rc_chan { CH_STDIN, CH_STDOUT, CH_STDERR, CH_ERROR, CH_RESIZE, CH_N };
static const char *const chan_names[CH_N] = {"stdin", "stdout", "stderr", "error", "resize"};

enum rc_state {
    RC_STREAMS,
    RC_RUNNING,
    RC_ENDED,
    RC_ORPHANED,
};

/* Attach output from the keeper: <stream u8><length u16 BE><bytes>. */
struct frame_reader {
    uint8_t head[KEEPER_ATTACH_HEADER];
    size_t head_len;
    size_t left;
};

struct rc {
    struct sconn *c; /* NULL once the connection is gone */
    const struct stream_backend *be;
    struct stream_request *req;
    enum rc_state state;
    int version; /* 1..4 of the channel protocol */
    bool ws;
    bool want[CH_N], have[CH_N];
    uint32_t id[CH_N];
    struct loop_timer *timer;
    bool attach;
    bool tty;
    /* the process side */
    void *exec;         /* the backend's handle while the process runs */
    int in_fd;          /* stdin pipe, pty master, or the keeper socket */
    int out_fd, err_fd; /* stdout/stderr pipes, or in_fd again (pty, keeper) */
    struct event *in_ev, *out_ev, *err_ev;
    struct buf in_pending;
    bool in_paused; /* we paused the connection's input */
    bool stdin_fin; /* the client's stdin ended */
    bool stdin_closed;
    bool out_done, err_done;
    bool exited;
    int exit_code;
    char *fail_msg; /* the session failed (internal error), owned */
    int64_t drain_deadline_ns;
    struct frame_reader fr;
    struct resize_parser resize;
};

static uint8_t chunk[READ_CHUNK];

static void rc_step(struct rc *rc);

/* ---------------------------------------------------------------------- */
/* status                                                                  */
/* ---------------------------------------------------------------------- */

char *remotecommand_status_json(int exit_code, const char *msg)
{
    json_t *o = json_object();
    json_object_set_new(o, "metadata", json_object());
    if (exit_code == 0 && !msg) {
        json_object_set_new(o, "status", json_string("Success"));
    } else if (exit_code > 0) {
        char code[16];
        snprintf(code, sizeof(code), "%d", exit_code);
        json_t *cause = json_object();
        json_object_set_new(cause, "reason", json_string("ExitCode"));
        json_object_set_new(cause, "message", json_string(code));
        json_t *causes = json_array();
        json_array_append_new(causes, cause);
        json_t *details = json_object();
        json_object_set_new(details, "causes", causes);
        json_object_set_new(o, "status", json_string("Failure"));
        _cleanup_free_ char *m =
            xasprintf("command terminated with non-zero exit code: %s", msg ? msg : code);
        json_object_set_new(o, "message", json_string(m));
        json_object_set_new(o, "reason", json_string("NonZeroExitCode"));
        json_object_set_new(o, "details", details);
    } else {
        json_t *cause = json_object();
        json_object_set_new(cause, "message", json_string(msg ? msg : "unknown error"));
        json_t *causes = json_array();
        json_array_append_new(causes, cause);
        json_t *details = json_object();
        json_object_set_new(details, "causes", causes);
        _cleanup_free_ char *m = xasprintf("Internal error occurred: %s", msg ? msg : "unknown");
        json_object_set_new(o, "status", json_string("Failure"));
        json_object_set_new(o, "message", json_string(m));
        json_object_set_new(o, "reason", json_string("InternalError"));
        json_object_set_new(o, "details", details);
        json_object_set_new(o, "code", json_integer(500));
    }
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    assert_state(text != NULL);
    return text;
}

/* "error executing command [sh -c exit 3], exit code 3", as containerd words it. */
static char *exit_message(const struct stream_request *req, int code)
{
    struct buf b;
    buf_init(&b, MESSAGE_MAX);
    buf_append(&b, "error executing command [", 25);
    for (size_t i = 0; i < req->n_cmd; i++) {
        if (i && buf_append(&b, " ", 1) < 0)
            break;
        if (buf_append(&b, req->cmd[i], strlen(req->cmd[i])) < 0)
            break;
    }
    char tail[64];
    snprintf(tail, sizeof(tail), "], exit code %d", code);
    buf_append(&b, tail, strlen(tail));
    char *s = buf_take_str(&b, NULL);
    buf_free(&b);
    return s;
}

/* ---------------------------------------------------------------------- */
/* resize                                                                  */
/* ---------------------------------------------------------------------- */

static void resize_object(const char *text, size_t n, void (*cb)(void *, unsigned, unsigned),
                          void *arg)
{
    json_error_t jerr;
    json_t *o = json_loadb(text, n, 0, &jerr);
    json_t *w = o ? json_object_get(o, "Width") : NULL;
    json_t *h = o ? json_object_get(o, "Height") : NULL;
    if (json_is_integer(w) && json_is_integer(h) && json_integer_value(w) >= 0 &&
        json_integer_value(w) <= 65535 && json_integer_value(h) >= 0 &&
        json_integer_value(h) <= 65535)
        cb(arg, (unsigned)json_integer_value(w), (unsigned)json_integer_value(h));
    json_decref(o);
}

void resize_parser_feed(struct resize_parser *p, const char *data, size_t n,
                        void (*cb)(void *arg, unsigned w, unsigned h), void *arg)
{
    for (size_t i = 0; i < n; i++) {
        char ch = data[i];
        if (p->depth == 0 && ch != '{')
            continue; /* blanks and newlines between objects */
        if (ch == '{')
            p->depth++;
        else if (ch == '}')
            p->depth--;
        if (!p->skipping) {
            if (p->len == sizeof(p->buf))
                p->skipping = true; /* too long: dropped, the next object is read again */
            else
                p->buf[p->len++] = ch;
        }
        if (p->depth == 0) {
            if (!p->skipping)
                resize_object(p->buf, p->len, cb, arg);
            p->len = 0;
            p->skipping = false;
        }
    }
}

static void on_resize(void *arg, unsigned w, unsigned h)
{
    struct rc *rc = arg;
    if (w == 0 || h == 0)
        return;
    if (rc->attach) {
        _cleanup_error_ struct error *err = NULL;
        if (rc->be->attach_resize(rc->req->container_id, (uint16_t)w, (uint16_t)h, &err) < 0)
            log_debug("attach resize failed container=%s: %s", rc->req->container_id, err->msg);
        return;
    }
    if (!rc->tty || rc->in_fd < 0)
        return;
    struct winsize ws = {.ws_row = (unsigned short)h, .ws_col = (unsigned short)w};
    if (ioctl(rc->in_fd, TIOCSWINSZ, &ws) < 0)
        log_debug("exec resize failed errno=%d", errno);
}

/* ---------------------------------------------------------------------- */
/* teardown                                                                */
/* ---------------------------------------------------------------------- */

static void event_freep(struct event **ev)
{
    if (*ev)
        event_free(*ev);
    *ev = NULL;
}

/* Close the process side: stdin, the output fds (a pty master: the terminal hangs up). */
static void close_process_fds(struct rc *rc)
{
    event_freep(&rc->in_ev);
    event_freep(&rc->out_ev);
    event_freep(&rc->err_ev);
    if (rc->err_fd >= 0 && rc->err_fd != rc->out_fd && rc->err_fd != rc->in_fd)
        close(rc->err_fd);
    if (rc->out_fd >= 0 && rc->out_fd != rc->in_fd)
        close(rc->out_fd);
    if (rc->in_fd >= 0)
        close(rc->in_fd);
    rc->in_fd = rc->out_fd = rc->err_fd = -1;
    buf_free(&rc->in_pending);
}

static void rc_free(void *obj)
{
    struct rc *rc = obj;
    close_process_fds(rc);
    if (rc->exec)
        rc->be->exec_cancel(rc->exec);
    loop_timer_free(rc->timer);
    stream_request_free(rc->req);
    free(rc->fail_msg);
    free(rc);
}

static void fail(struct rc *rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct rc *rc, const char *fmt, ...)
{
    if (rc->fail_msg)
        return;
    va_list ap;
    va_start(ap, fmt);
    rc->fail_msg = xvasprintf(fmt, ap);
    va_end(ap);
}

/* The process is over (or never started): status, FINs, and the client closes. */
static void rc_end(struct rc *rc)
{
    rc->state = RC_ENDED;
    loop_timer_disarm(rc->timer);
    close_process_fds(rc);
    struct sconn *c = rc->c;
    if (!c)
        return;
    if (!rc->ws) {
        if (rc->have[CH_STDIN])
            sconn_reset(c, rc->id[CH_STDIN], SPDY_RST_CANCEL);
        if (rc->have[CH_RESIZE])
            sconn_reset(c, rc->id[CH_RESIZE], SPDY_RST_CANCEL);
    }
    int code = rc->fail_msg ? -1 : rc->exit_code;
    _cleanup_free_ char *msg = NULL;
    if (rc->fail_msg)
        msg = xstrdup(rc->fail_msg);
    else if (code != 0)
        msg = rc->attach ? xasprintf("exit code %d", code) : exit_message(rc->req, code);
    if (rc->have[CH_ERROR]) {
        if (rc->version >= 4) {
            _cleanup_free_ char *json = remotecommand_status_json(code, msg);
            sconn_send(c, rc->id[CH_ERROR], json, strlen(json), false);
        } else if (code != 0) {
            _cleanup_free_ char *text = code > 0 ? xasprintf("command terminated with non-zero "
                                                             "exit code: %s",
                                                             msg)
                                                 : xasprintf("Internal error occurred: %s", msg);
            sconn_send(c, rc->id[CH_ERROR], text, strlen(text), false);
        }
    }
    if (!rc->ws) {
        for (int ch = CH_STDOUT; ch <= CH_ERROR; ch++) {
            if (rc->have[ch])
                sconn_send(c, rc->id[ch], NULL, 0, true);
        }
    }
    log_info("stream %s ended container=%s exit_code=%d%s%s", stream_kind_name(rc->req->kind),
             rc->req->container_id, rc->exit_code, rc->fail_msg ? " error=" : "",
             rc->fail_msg ? rc->fail_msg : "");
    sconn_finish(c);
}

/* ---------------------------------------------------------------------- */
/* the process side                                                        */
/* ---------------------------------------------------------------------- */

static void pause_outputs(struct rc *rc, bool pause)
{
    struct event *evs[] = {rc->out_ev, rc->err_ev};
    for (size_t i = 0; i < ARRAY_SIZE(evs); i++) {
        if (!evs[i])
            continue;
        if (pause)
            event_del(evs[i]);
        else
            event_add(evs[i], NULL);
    }
}

/* Close the process's stdin: the pipe, ^D on a terminal, or the keeper socket's write side. */
static void close_stdin(struct rc *rc)
{
    if (rc->stdin_closed)
        return;
    rc->stdin_closed = true;
    event_freep(&rc->in_ev);
    buf_free(&rc->in_pending);
    if (rc->in_fd < 0)
        return;
    if (rc->attach) {
        shutdown(rc->in_fd, SHUT_WR);
    } else if (rc->tty) {
        struct termios t;
        char eof = 4;
        if (tcgetattr(rc->in_fd, &t) == 0 && t.c_cc[VEOF] != _POSIX_VDISABLE)
            eof = (char)t.c_cc[VEOF];
        (void)!write(rc->in_fd, &eof, 1);
    } else {
        close(rc->in_fd);
        rc->in_fd = -1;
    }
}

static void stdin_flush(struct rc *rc)
{
    while (rc->in_pending.len > 0 && rc->in_fd >= 0 && !rc->stdin_closed) {
        ssize_t n = write(rc->in_fd, rc->in_pending.data, rc->in_pending.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n < 0) {
            /* The process closed its stdin: what the client sends is dropped from now on. */
            log_debug("exec stdin closed by the process errno=%d", errno);
            buf_reset(&rc->in_pending);
            rc->stdin_closed = true;
            break;
        }
        buf_consume(&rc->in_pending, (size_t)n);
    }
    if (rc->in_pending.len == 0) {
        buf_free(&rc->in_pending);
        buf_init(&rc->in_pending, IN_CAP);
        if (rc->in_ev)
            event_del(rc->in_ev);
        if (rc->stdin_fin)
            close_stdin(rc);
    } else if (rc->in_ev) {
        event_add(rc->in_ev, NULL);
    }
    bool pause = rc->in_pending.len >= IN_HIGH;
    if (rc->c && pause != rc->in_paused) {
        rc->in_paused = pause;
        sconn_pause_input(rc->c, pause);
    }
}

static void on_stdin_writable(evutil_socket_t fd, short what, void *arg)
{
    stdin_flush(arg);
}

static void send_output(struct rc *rc, enum rc_chan ch, const uint8_t *data, size_t n)
{
    if (rc->c && rc->have[ch])
        sconn_send(rc->c, rc->id[ch], data, n, false);
}

/* Attach: split the keeper's frames onto stdout and stderr. */
static void attach_demux(struct rc *rc, const uint8_t *p, size_t n)
{
    struct frame_reader *f = &rc->fr;
    while (n > 0) {
        if (f->head_len < KEEPER_ATTACH_HEADER) {
            size_t take =
                KEEPER_ATTACH_HEADER - f->head_len < n ? KEEPER_ATTACH_HEADER - f->head_len : n;
            memcpy(f->head + f->head_len, p, take);
            f->head_len += take;
            p += take;
            n -= take;
            if (f->head_len == KEEPER_ATTACH_HEADER)
                f->left = (size_t)f->head[1] << 8 | f->head[2];
            continue;
        }
        size_t take = f->left < n ? f->left : n;
        if (f->head[0] == KEEPER_ATTACH_FRAME_STDOUT)
            send_output(rc, CH_STDOUT, p, take);
        else if (f->head[0] == KEEPER_ATTACH_FRAME_STDERR)
            send_output(rc, CH_STDERR, p, take);
        else if (f->head[0] == KEEPER_ATTACH_FRAME_ERROR)
            fail(rc, "keeper: %.*s", (int)take, (const char *)p);
        p += take;
        n -= take;
        f->left -= take;
        if (f->left == 0)
            f->head_len = 0;
    }
}

static void output_over(struct rc *rc, bool is_err)
{
    if (is_err) {
        rc->err_done = true;
        event_freep(&rc->err_ev);
    } else {
        rc->out_done = true;
        event_freep(&rc->out_ev);
    }
    if (rc->attach) {
        /* The keeper closed: the container's output is over (it exited, or we were cut off). */
        rc->exited = true;
        rc->err_done = true;
    }
    rc_step(rc);
}

static void on_output(evutil_socket_t fd, short what, void *arg)
{
    struct rc *rc = arg;
    bool is_err = rc->err_fd >= 0 && fd == rc->err_fd && rc->err_fd != rc->out_fd;
    for (int i = 0; i < READS_PER_WAKEUP; i++) {
        if (!rc->c || sconn_is_full(rc->c)) {
            pause_outputs(rc, true);
            return;
        }
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            /* EOF, or EIO on a pty master once the terminal's other side is closed. */
            output_over(rc, is_err);
            return;
        }
        if (rc->attach)
            attach_demux(rc, chunk, (size_t)n);
        else
            send_output(rc, is_err ? CH_STDERR : CH_STDOUT, chunk, (size_t)n);
        if (rc->exited)
            rc->drain_deadline_ns = now_monotonic_ns() + (int64_t)DRAIN_MS * 1000000;
    }
}

static void on_exec_done(int exit_code, const struct error *err, void *arg)
{
    struct rc *rc = arg;
    rc->exec = NULL;
    rc->exited = true;
    rc->exit_code = exit_code;
    if (err)
        fail(rc, "%s", err->msg);
    rc->drain_deadline_ns = now_monotonic_ns() + (int64_t)DRAIN_MS * 1000000;
    log_debug("exec process exited container=%s exit_code=%d", rc->req->container_id, exit_code);
    if (rc->state == RC_ORPHANED) {
        loop_defer_free(rc_free, rc);
        return;
    }
    rc_step(rc);
}

static struct event *watch(struct rc *rc, int fd, short what, event_callback_fn cb)
{
    return loop_event_new(fd, what | EV_PERSIST, cb, rc);
}

/* A pty pair for a terminal exec: the master is ours, the slave the runtime's stdio. */
static int open_pty(int *master, int *slave, struct error **err)
{
    _cleanup_close_ int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0)
        return error_set(err, GRPC_INTERNAL, errno, "open a pty");
    char name[64];
    if (grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, name, sizeof(name)) != 0)
        return error_set(err, GRPC_INTERNAL, errno, "set up the pty");
    int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0)
        return error_set(err, GRPC_INTERNAL, errno, "open %s", name);
    /* Raw from the start: the runtime relays bytes as they are; no echo, no line editing here. */
    struct termios t;
    if (tcgetattr(s, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(s, TCSANOW, &t);
    }
    if (fd_set_nonblock(m, true) < 0) {
        close(s);
        return error_set(err, GRPC_INTERNAL, errno, "pty non-blocking");
    }
    *master = steal_fd(&m);
    *slave = s;
    return 0;
}

static int start_exec(struct rc *rc, struct error **err)
{
    int child[3] = {-1, -1, -1};
    int rc_ok = -1;
    if (rc->tty) {
        int slave = -1;
        if (open_pty(&rc->in_fd, &slave, err) < 0)
            return -1;
        rc->out_fd = rc->in_fd;
        child[0] = child[1] = child[2] = slave;
    } else {
        if ((rc->want[CH_STDIN] && child_pipe(&rc->in_fd, &child[0], false, err) < 0) ||
            (rc->want[CH_STDOUT] && child_pipe(&rc->out_fd, &child[1], true, err) < 0) ||
            (rc->want[CH_STDERR] && child_pipe(&rc->err_fd, &child[2], true, err) < 0))
            goto out;
    }
    rc->exec = rc->be->exec_start(rc->req, child, on_exec_done, rc, err);
    if (!rc->exec)
        goto out;
    rc_ok = 0;
out:
    if (rc->tty) {
        if (child[0] >= 0)
            close(child[0]);
    } else {
        for (int i = 0; i < 3; i++) {
            if (child[i] >= 0)
                close(child[i]);
        }
    }
    return rc_ok;
}

static int start_attach(struct rc *rc, struct error **err)
{
    bool tty = false;
    int fd = rc->be->attach_connect(rc->req, &tty, err);
    if (fd < 0)
        return -1;
    rc->tty = tty;
    rc->in_fd = rc->out_fd = fd;
    return 0;
}

/* All streams are there: start the process and watch its fds. */
static void start_process(struct rc *rc)
{
    _cleanup_error_ struct error *err = NULL;
    rc->state = RC_RUNNING;
    loop_timer_disarm(rc->timer);
    buf_init(&rc->in_pending, IN_CAP);
    int r = rc->attach ? start_attach(rc, &err) : start_exec(rc, &err);
    if (r < 0) {
        fail(rc, "%s", err->msg);
        rc->exited = true;
        rc_step(rc);
        return;
    }
    if (rc->in_fd >= 0 && rc->want[CH_STDIN])
        rc->in_ev = watch(rc, rc->in_fd, EV_WRITE, on_stdin_writable);
    if (rc->out_fd >= 0) {
        rc->out_ev = watch(rc, rc->out_fd, EV_READ, on_output);
        event_add(rc->out_ev, NULL);
    } else {
        rc->out_done = true;
    }
    if (rc->err_fd >= 0) {
        rc->err_ev = watch(rc, rc->err_fd, EV_READ, on_output);
        event_add(rc->err_ev, NULL);
    } else {
        rc->err_done = true;
    }
    if (!rc->want[CH_STDIN])
        rc->stdin_closed = true;
    log_info("stream %s started container=%s tty=%d stdin=%d", stream_kind_name(rc->req->kind),
             rc->req->container_id, rc->tty, rc->want[CH_STDIN]);
}

static void on_timer(void *arg)
{
    struct rc *rc = arg;
    switch (rc->state) {
    case RC_STREAMS:
        log_info("stream %s: the client did not open its streams in time peer=%s",
                 stream_kind_name(rc->req->kind), rc->c ? sconn_peer(rc->c) : "-");
        if (rc->c)
            sconn_abort(rc->c);
        return;
    case RC_RUNNING: /* the drain deadline */
        rc_step(rc);
        return;
    case RC_ORPHANED: /* the grace is over: kill the process tree */
        if (rc->exec) {
            log_info("exec client gone, killing the process container=%s", rc->req->container_id);
            rc->be->exec_cancel(rc->exec);
            rc->exec = NULL;
        }
        loop_defer_free(rc_free, rc);
        return;
    case RC_ENDED:
        return;
    }
}

static void rc_step(struct rc *rc)
{
    switch (rc->state) {
    case RC_STREAMS: /* waiting for the streams the request asked for */
        for (int ch = 0; ch < CH_N; ch++) {
            if (rc->want[ch] && !rc->have[ch])
                return;
        }
        if (rc->c)
            sconn_release_headers(rc->c);
        start_process(rc);
        return;
    case RC_RUNNING: /* waiting for the exit and the end of the output (or the drain deadline) */
        if (!rc->exited)
            return;
        if (!(rc->out_done && rc->err_done)) {
            int64_t left = (rc->drain_deadline_ns - now_monotonic_ns()) / 1000000;
            /* A client that does not read keeps the output waiting: not our deadline's fault. */
            if (left > 0 || (rc->c && sconn_is_full(rc->c))) {
                loop_timer_arm(rc->timer, left > 0 ? left : DRAIN_MS);
                return;
            }
            log_debug("exec output still open %dms after the exit; ending container=%s", DRAIN_MS,
                      rc->req->container_id);
        }
        rc_end(rc);
        return;
    case RC_ENDED:
    case RC_ORPHANED:
        return;
    }
}

/* ---------------------------------------------------------------------- */
/* the connection side                                                     */
/* ---------------------------------------------------------------------- */

static int chan_of(struct rc *rc, uint32_t id)
{
    for (int ch = 0; ch < CH_N; ch++) {
        if (rc->have[ch] && rc->id[ch] == id)
            return ch;
    }
    return -1;
}

static int on_stream_open(void *h, uint32_t id, uint8_t flags, const struct spdy_headers *hd)
{
    struct rc *rc = h;
    const char *type = spdy_headers_get(hd, "streamtype");
    int ch = -1;
    for (int i = 0; type && i < CH_N; i++) {
        if (strcmp(type, chan_names[i]) == 0)
            ch = i;
    }
    if (rc->state != RC_STREAMS || ch < 0 || !rc->want[ch] || rc->have[ch]) {
        _cleanup_free_ char *shown = text_safe(type ? type : "(none)", 64);
        log_debug("stream %s: refused stream type=\"%s\"", stream_kind_name(rc->req->kind), shown);
        return -1;
    }
    rc->have[ch] = true;
    rc->id[ch] = id;
    rc_step(rc);
    return 0;
}

static void on_data(void *h, uint32_t id, const uint8_t *data, size_t n)
{
    struct rc *rc = h;
    int ch = rc->ws ? (int)id : chan_of(rc, id);
    if (ch == CH_RESIZE) {
        resize_parser_feed(&rc->resize, (const char *)data, n, on_resize, rc);
        return;
    }
    if (ch != CH_STDIN || rc->state != RC_RUNNING || rc->stdin_closed || rc->stdin_fin)
        return;
    if (buf_append(&rc->in_pending, data, n) < 0) {
        log_warn("exec stdin overflow (the connection should have paused); dropped %zu bytes", n);
        return;
    }
    stdin_flush(rc);
}

static void on_fin(void *h, uint32_t id)
{
    struct rc *rc = h;
    if (chan_of(rc, id) != CH_STDIN)
        return;
    rc->stdin_fin = true;
    if (rc->state == RC_RUNNING)
        stdin_flush(rc);
}

static void on_reset(void *h, uint32_t id)
{
    on_fin(h, id);
}

static void on_writable(void *h)
{
    struct rc *rc = h;
    if (rc->state == RC_RUNNING)
        pause_outputs(rc, false);
}

static void on_closed(void *h)
{
    struct rc *rc = h;
    rc->c = NULL;
    if (rc->state == RC_RUNNING && rc->exec) {
        /* stdin ends, a terminal hangs up; what is left is killed after the grace. */
        log_info("exec client gone container=%s; closing its stdin and output",
                 rc->req->container_id);
        rc->state = RC_ORPHANED;
        close_process_fds(rc);
        loop_timer_arm(rc->timer, EXEC_KILL_GRACE_MS);
        return;
    }
    loop_defer_free(rc_free, rc);
}

static const struct sconn_ops rc_ops = {
    .stream_open = on_stream_open,
    .data = on_data,
    .fin = on_fin,
    .reset = on_reset,
    .writable = on_writable,
    .closed = on_closed,
};

static int protocol_version(const char *proto)
{
    if (str_has_prefix(proto, "v4."))
        return 4;
    if (str_has_prefix(proto, "v3."))
        return 3;
    if (str_has_prefix(proto, "v2."))
        return 2;
    return 1;
}

void remotecommand_start(struct sconn *c, struct stream_request *req,
                         const struct stream_backend *be)
{
    struct rc *rc = xcalloc(1, sizeof(*rc));
    rc->c = c;
    rc->be = be;
    rc->req = req;
    rc->attach = req->kind == STREAM_ATTACH;
    rc->tty = req->tty;
    rc->in_fd = rc->out_fd = rc->err_fd = -1;
    rc->ws = sconn_framing(c) != SCONN_SPDY;
    rc->version = protocol_version(sconn_protocol(c));
    rc->timer = loop_timer_new(on_timer, rc);
    rc->want[CH_ERROR] = true;
    rc->want[CH_STDIN] = req->in;
    rc->want[CH_STDOUT] = req->out;
    rc->want[CH_STDERR] = req->err && !req->tty;
    rc->want[CH_RESIZE] = req->tty && (rc->ws || rc->version >= 3);
    sconn_set_handler(c, &rc_ops, rc);
    if (rc->ws) {
        /* WebSocket channels exist from the start; an empty message says we are up. */
        for (int ch = 0; ch < CH_N; ch++) {
            rc->have[ch] = rc->want[ch];
            rc->id[ch] = (uint32_t)ch;
        }
        int first = rc->want[CH_STDOUT] ? CH_STDOUT : rc->want[CH_STDERR] ? CH_STDERR : CH_ERROR;
        sconn_send(c, (uint32_t)first, NULL, 0, false);
        start_process(rc);
        return;
    }
    rc->state = RC_STREAMS;
    loop_timer_arm(rc->timer, sconn_creation_timeout_ms(c));
}
