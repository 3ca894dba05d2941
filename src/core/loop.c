/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The reactor behind loop.h: one libevent event_base for the whole daemon,
 * one signalfd carrying every watched signal, one-shot timers, a FIFO of
 * deferred frees that runs in the same dispatch pass as the callback that
 * queued it (so before the next poll), and child processes that are forked,
 * fed, drained and reaped entirely through non-blocking fds and a pidfd.
 *
 * Nothing here blocks the loop. The only blocking wait is in loop_shutdown(),
 * after SIGKILL, when the loop is over anyway, and in the undo path of a
 * failed child_spawn(), also after SIGKILL.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/param.h>
#include <sys/pidfd.h>
#include <sys/queue.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"

extern char **environ;

#define CHILD_OUT_CAP_DEFAULT ((size_t)64 * 1024)
#define READ_CHUNK ((size_t)64 * 1024)
/*
 * Reads per wake-up (256 KiB), so one chatty child cannot starve the rest of
 * the loop. Less than a pipe can hold (up to pipe-max-size, 1 MiB by default),
 * which is why child_finish() drains once more.
 */
#define READS_PER_WAKEUP 4
/*
 * Reads after the exit. Grandchildren may hold the pipes and keep writing, so
 * the final drain is bounded instead of running until EOF.
 */
#define DRAIN_MAX_READS 64

struct defer_item {
    STAILQ_ENTRY(defer_item) link;
    void (*fn)(void *);
    void *obj;
};

struct signal_watch {
    loop_signal_cb cb;
    void *arg;
};

enum timer_phase {
    TIMER_IDLE,         /* armed or not; not inside its callback */
    TIMER_IN_CALLBACK,  /* its callback is on the stack */
    TIMER_FREE_PENDING, /* freed from inside its callback; destroyed when it returns */
};

struct loop_timer {
    struct event *ev;
    loop_timer_cb cb;
    void *arg;
    enum timer_phase phase;
};

enum child_state {
    CHILD_RUNNING,   /* waiting for the pidfd; the callback will run */
    CHILD_CANCELLED, /* SIGKILLed by child_cancel(); waiting for the pidfd, no callback */
    CHILD_FINISHED,  /* reaped, fds closed; on the deferred-free queue */
};

struct child_stream {
    int fd; /* parent's read end, -1 once closed */
    struct event *ev;
    struct buf buf;
    bool truncated;
};

struct child {
    TAILQ_ENTRY(child) link; /* in loop.children from spawn until destroyed */
    bool linked;
    enum child_state state;
    pid_t pid;
    int pidfd;
    struct event *exit_ev;
    struct event *deadline_ev; /* NULL without a deadline */
    int in_fd;                 /* parent's write end of stdin, -1 once closed */
    struct event *in_ev;
    char *in_data; /* our copy of opts->stdin_data */
    size_t in_len, in_off;
    struct child_stream out, err;
    bool timed_out;
    siginfo_t status; /* from waitid() */
    child_done_cb cb;
    void *arg;
};

static struct reactor {
    struct event_base *base;
    sigset_t saved_mask; /* the mask before loop_init(), restored by loop_shutdown() */
    sigset_t watched;
    int sig_fd;
    struct event *sig_ev;
    struct signal_watch sigs[_NSIG];
    struct event *defer_ev;
    STAILQ_HEAD(, defer_item) defers;
    TAILQ_HEAD(, child) children; /* every child object not yet destroyed */
    size_t running;
} loop = {.sig_fd = -1};

struct event *loop_event_new(evutil_socket_t fd, short what, event_callback_fn cb, void *arg)
{
    struct event *ev = event_new(loop.base, fd, what, cb, arg);
    if (!ev) {
        static const char msg[] = "level=fatal msg=\"out of memory creating an event\"\n";
        (void)!write(2, msg, sizeof(msg) - 1);
        abort();
    }
    return ev;
}

static void event_freep(struct event **ev)
{
    if (*ev)
        event_free(*ev);
    *ev = NULL;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* ---- deferred free ---- */

static void run_deferred(void)
{
    struct defer_item *d;
    while ((d = STAILQ_FIRST(&loop.defers))) {
        STAILQ_REMOVE_HEAD(&loop.defers, link);
        void (*fn)(void *) = d->fn;
        void *obj = d->obj;
        free(d);
        fn(obj);
    }
}

static void on_defer(evutil_socket_t fd, short what, void *arg)
{
    run_deferred();
}

void loop_defer_free(void (*fn)(void *), void *obj)
{
    loop_defer(fn, obj);
}

void loop_defer(void (*fn)(void *), void *obj)
{
    if (!fn)
        return;
    if (!loop.base) {
        /* No loop, so no callback can be using obj, nor be on the stack. */
        fn(obj);
        return;
    }
    struct defer_item *d = xmalloc(sizeof(*d));
    *d = (struct defer_item){.fn = fn, .obj = obj};
    STAILQ_INSERT_TAIL(&loop.defers, d, link);
    /*
     * All our events share one priority, and libevent drains the active queue
     * before it polls again: the activated event runs after the current
     * callback and before the next poll.
     */
    event_active(loop.defer_ev, EV_TIMEOUT, 0);
}

/* ---- signals ---- */

/* Read every queued signal; dispatch only when dispatch is true. */
static void read_signals(bool dispatch)
{
    struct signalfd_siginfo si[8];
    for (;;) {
        ssize_t n = read(loop.sig_fd, si, sizeof(si));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            log_warn("signalfd read failed errno=%d", errno);
        if (n <= 0)
            return;
        for (size_t i = 0; i < (size_t)n / sizeof(si[0]); i++) {
            int signo = (int)si[i].ssi_signo;
            if (!dispatch || signo <= 0 || signo >= _NSIG || !loop.sigs[signo].cb)
                continue;
            loop.sigs[signo].cb(signo, loop.sigs[signo].arg);
        }
    }
}

static void on_signalfd(evutil_socket_t fd, short what, void *arg)
{
    read_signals(true);
}

int loop_watch_signal(int signo, loop_signal_cb cb, void *arg, struct error **err)
{
    if (!loop.base)
        return error_set(err, GRPC_INTERNAL, 0, "watch signal %d: loop not initialised", signo);
    sigset_t one, mask = loop.watched, old;
    sigemptyset(&one);
    if (signo == SIGKILL || signo == SIGSTOP || signo <= 0 || signo >= _NSIG ||
        sigaddset(&one, signo) < 0 || sigaddset(&mask, signo) < 0)
        return error_set(err, GRPC_INTERNAL, 0, "cannot watch signal %d", signo);
    if (sigprocmask(SIG_BLOCK, &one, &old) < 0)
        return error_set(err, GRPC_INTERNAL, errno, "block signal %d", signo);
    if (signalfd(loop.sig_fd, &mask, 0) < 0) {
        int e = errno;
        sigprocmask(SIG_SETMASK, &old, NULL);
        return error_set(err, GRPC_INTERNAL, e, "signalfd add signal %d", signo);
    }
    loop.watched = mask;
    loop.sigs[signo] = (struct signal_watch){.cb = cb, .arg = arg};
    return 0;
}

/* ---- the loop ---- */

/* libevent's own warnings, in our log format instead of its "[warn] ..." lines. */
static void on_libevent_log(int severity, const char *msg)
{
    switch (severity) {
    case EVENT_LOG_DEBUG:
        log_debug("libevent: %s", msg);
        break;
    case EVENT_LOG_MSG:
        log_info("libevent: %s", msg);
        break;
    case EVENT_LOG_WARN:
        log_warn("libevent: %s", msg);
        break;
    default:
        log_error("libevent: %s", msg);
        break;
    }
}

int loop_init(struct error **err)
{
    if (loop.base)
        return error_set(err, GRPC_INTERNAL, 0, "loop already initialised");
    STAILQ_INIT(&loop.defers);
    TAILQ_INIT(&loop.children);
    sigemptyset(&loop.watched);
    if (sigprocmask(SIG_SETMASK, NULL, &loop.saved_mask) < 0)
        return error_set(err, GRPC_INTERNAL, errno, "read signal mask");
    event_set_log_callback(on_libevent_log);
    loop.base = event_base_new();
    if (!loop.base)
        return error_set(err, GRPC_INTERNAL, 0, "event_base_new failed");
    loop.sig_fd = signalfd(-1, &loop.watched, SFD_NONBLOCK | SFD_CLOEXEC);
    if (loop.sig_fd < 0) {
        error_set(err, GRPC_INTERNAL, errno, "signalfd");
        loop_shutdown();
        return -1;
    }
    loop.sig_ev = loop_event_new(loop.sig_fd, EV_READ | EV_PERSIST, on_signalfd, NULL);
    loop.defer_ev = loop_event_new(-1, 0, on_defer, NULL);
    if (event_add(loop.sig_ev, NULL) < 0) {
        error_set(err, GRPC_INTERNAL, 0, "watch signalfd: event_add failed");
        loop_shutdown();
        return -1;
    }
    /*
     * A write to a pipe or socket whose reader is gone must fail with EPIPE,
     * not end the daemon. Children get the default back before execve.
     */
    signal(SIGPIPE, SIG_IGN);
    /*
     * Children must stay zombies until waitid() on their pidfd: an ignored
     * SIGCHLD (or SA_NOCLDWAIT) would let the kernel reap them behind our back.
     */
    signal(SIGCHLD, SIG_DFL);
    return 0;
}

struct event_base *loop_base(void)
{
    return loop.base;
}

int loop_run(void)
{
    assert_state(loop.base);
    return event_base_dispatch(loop.base) < 0 ? -1 : 0;
}

void loop_exit(void)
{
    if (loop.base)
        event_base_loopexit(loop.base, NULL);
}

/* ---- pidfd watchers ---- */

struct loop_pidfd {
    int fd;
    struct event *ev;
    bool exited;
    loop_pidfd_cb cb;
    void *arg;
};

static void on_pidfd(evutil_socket_t fd, short what, void *arg)
{
    struct loop_pidfd *w = arg;
    /* Our child: reap it. Not ours (adopted after a restart): ECHILD, its parent reaps. */
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    (void)waitid(P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG);
    w->exited = true;
    w->cb(w->arg);
}

struct loop_pidfd *loop_watch_pidfd(int pidfd, loop_pidfd_cb cb, void *arg, struct error **err)
{
    struct loop_pidfd *w = xcalloc(1, sizeof(*w));
    w->fd = pidfd;
    w->cb = cb;
    w->arg = arg;
    w->ev = loop_event_new(pidfd, EV_READ, on_pidfd, w);
    if (event_add(w->ev, NULL) < 0) {
        loop_pidfd_free(w);
        return error_set(err, GRPC_INTERNAL, 0, "watch pidfd: event_add failed"), NULL;
    }
    return w;
}

bool loop_pidfd_exited(const struct loop_pidfd *w)
{
    return w->exited;
}

void loop_pidfd_signal(struct loop_pidfd *w, int signo)
{
    if (!w->exited && pidfd_send_signal(w->fd, signo, NULL, 0) < 0 && errno != ESRCH)
        log_debug("pidfd signal failed signo=%d errno=%d", signo, errno);
}

int loop_pidfd_dup(const struct loop_pidfd *w)
{
    return fcntl(w->fd, F_DUPFD_CLOEXEC, 3);
}

static void pidfd_destroy(void *obj)
{
    struct loop_pidfd *w = obj;
    event_free(w->ev);
    free(w);
}

void loop_pidfd_free(struct loop_pidfd *w)
{
    if (!w)
        return;
    event_del(w->ev);
    close_fd(&w->fd);
    /* Its callback may be on the stack: the memory goes before the next poll. */
    loop_defer_free(pidfd_destroy, w);
}

/* ---- timers ---- */

static void timer_destroy(void *obj)
{
    struct loop_timer *t = obj;
    event_free(t->ev);
    free(t);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct loop_timer *t = arg;
    t->phase = TIMER_IN_CALLBACK;
    t->cb(t->arg);
    if (t->phase == TIMER_FREE_PENDING)
        loop_defer_free(timer_destroy, t);
    else
        t->phase = TIMER_IDLE;
}

struct loop_timer *loop_timer_new(loop_timer_cb cb, void *arg)
{
    assert_state(loop.base);
    struct loop_timer *t = xcalloc(1, sizeof(*t));
    t->cb = cb;
    t->arg = arg;
    t->phase = TIMER_IDLE;
    t->ev = loop_event_new(-1, 0, on_timer, t);
    return t;
}

static struct timeval ms_to_timeval(int64_t ms)
{
    if (ms < 0)
        ms = 0;
    return (struct timeval){.tv_sec = (time_t)(ms / 1000),
                            .tv_usec = (suseconds_t)(ms % 1000) * 1000};
}

void loop_timer_arm(struct loop_timer *t, int64_t ms)
{
    struct timeval tv = ms_to_timeval(ms);
    /* A timer event_add only fails on a bad timeval, which ms_to_timeval cannot make. */
    if (event_add(t->ev, &tv) < 0)
        log_warn("timer arm failed ms=%lld", (long long)ms);
}

void loop_timer_disarm(struct loop_timer *t)
{
    event_del(t->ev);
}

bool loop_timer_is_armed(const struct loop_timer *t)
{
    return event_pending(t->ev, EV_TIMEOUT, NULL) != 0;
}

void loop_timer_free(struct loop_timer *t)
{
    if (!t)
        return;
    event_del(t->ev);
    if (t->phase == TIMER_IDLE)
        timer_destroy(t);
    else
        t->phase = TIMER_FREE_PENDING;
}

/* ---- children ---- */

static void child_destroy(struct child *c)
{
    if (!c)
        return;
    event_freep(&c->exit_ev);
    event_freep(&c->deadline_ev);
    event_freep(&c->in_ev);
    event_freep(&c->out.ev);
    event_freep(&c->err.ev);
    close_fd(&c->pidfd);
    close_fd(&c->in_fd);
    close_fd(&c->out.fd);
    close_fd(&c->err.fd);
    buf_free(&c->out.buf);
    buf_free(&c->err.buf);
    free(c->in_data);
    if (c->linked)
        TAILQ_REMOVE(&loop.children, c, link);
    free(c);
}

static void child_destroy_cb(void *obj)
{
    child_destroy(obj);
}

static void child_destroyp(struct child **c)
{
    child_destroy(*c);
}
#define _cleanup_child_ __attribute__((cleanup(child_destroyp)))

static void stream_close(struct child_stream *s)
{
    if (s->ev)
        event_del(s->ev);
    close_fd(&s->fd);
}

/* Read at most max_reads chunks; keep up to the cap, count the rest as truncated. */
static void stream_read(struct child_stream *s, int max_reads)
{
    static char chunk[READ_CHUNK];
    for (int i = 0; i < max_reads && s->fd >= 0; i++) {
        ssize_t n = read(s->fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            stream_close(s);
            return;
        }
        size_t room = s->buf.cap - s->buf.len;
        size_t keep = (size_t)n < room ? (size_t)n : room;
        if (keep > 0 && buf_append(&s->buf, chunk, keep) < 0)
            keep = 0;
        if (keep < (size_t)n)
            s->truncated = true;
    }
}

static void on_stream_readable(evutil_socket_t fd, short what, void *arg)
{
    stream_read(arg, READS_PER_WAKEUP);
}

static void stdin_close(struct child *c)
{
    if (c->in_ev)
        event_del(c->in_ev);
    close_fd(&c->in_fd);
    free(c->in_data);
    c->in_data = NULL;
    c->in_len = c->in_off = 0;
}

static void on_stdin_writable(evutil_socket_t fd, short what, void *arg)
{
    struct child *c = arg;
    while (c->in_off < c->in_len) {
        ssize_t n = write(c->in_fd, c->in_data + c->in_off, c->in_len - c->in_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0) {
            /* EPIPE: the child closed stdin or exited; it simply gets less input. */
            log_debug("child stdin write failed pid=%d errno=%d", (int)c->pid, errno);
            break;
        }
        c->in_off += (size_t)n;
    }
    stdin_close(c);
}

static void child_kill(struct child *c)
{
    if (c->pidfd >= 0 && pidfd_send_signal(c->pidfd, SIGKILL, NULL, 0) < 0)
        log_debug("child kill failed pid=%d errno=%d", (int)c->pid, errno);
}

/* Collect the exit status if the child has exited; never blocks. */
static bool child_try_reap(struct child *c)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    if (waitid(P_PIDFD, (id_t)c->pidfd, &si, WEXITED | WNOHANG) < 0) {
        if (errno == EINTR)
            return false;
        /* ECHILD: reaped by someone else; the status is lost. */
        log_warn("child reap failed pid=%d errno=%d", (int)c->pid, errno);
        memset(&si, 0, sizeof(si));
        si.si_pid = c->pid;
    }
    if (si.si_pid == 0)
        return false;
    c->status = si;
    return true;
}

/* The child is reaped: drain, close, report once, and queue the free. */
static void child_finish(struct child *c)
{
    assert_state(c->state != CHILD_FINISHED);
    loop.running--;
    if (c->exit_ev)
        event_del(c->exit_ev);
    if (c->deadline_ev)
        event_del(c->deadline_ev);
    close_fd(&c->pidfd);
    stdin_close(c);
    stream_read(&c->out, DRAIN_MAX_READS);
    stream_read(&c->err, DRAIN_MAX_READS);
    stream_close(&c->out);
    stream_close(&c->err);

    bool notify = c->state == CHILD_RUNNING && c->cb;
    c->state = CHILD_FINISHED;
    if (notify) {
        struct child_result res = {
            .pid = c->pid,
            .timed_out = c->timed_out,
            .out_truncated = c->out.truncated,
            .err_truncated = c->err.truncated,
            .out = c->out.buf.data ? c->out.buf.data : "",
            .out_len = c->out.buf.len,
            .err = c->err.buf.data ? c->err.buf.data : "",
            .err_len = c->err.buf.len,
        };
        if (c->status.si_code == CLD_EXITED) {
            res.exited = true;
            res.exit_code = c->status.si_status;
        } else {
            res.term_signal = c->status.si_status;
        }
        c->cb(&res, c->arg);
    }
    loop_defer_free(child_destroy_cb, c);
}

static void on_child_exit(evutil_socket_t fd, short what, void *arg)
{
    struct child *c = arg;
    if (child_try_reap(c))
        child_finish(c);
}

static void on_child_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct child *c = arg;
    /* Exited but not reaped yet (its pidfd event may be in this same pass): not a timeout. */
    if (child_try_reap(c)) {
        child_finish(c);
        return;
    }
    c->timed_out = true;
    child_kill(c);
}

/* In the forked child: report a setup failure on (the captured) stderr and exit 127. */
static __attribute__((noreturn)) void child_fail(const char *what, const char *arg, int e)
{
    const char *parts[] = {"tinycri: ", what, " ", arg, ": ", e ? strerrordesc_np(e) : "failed",
                           "\n"};
    for (size_t i = 0; i < ARRAY_SIZE(parts); i++) {
        if (parts[i])
            (void)!write(2, parts[i], strlen(parts[i]));
    }
    _exit(127);
}

/* In the forked child: async-signal-safe calls only from here to execve. */
static __attribute__((noreturn)) void child_exec(const struct child_opts *opts, int (*fn)(void *),
                                                 void *fn_arg, int in_fd, int out_fd, int err_fd)
{
    /* The daemon ignores SIGPIPE and blocks what the signalfd carries; programs expect neither. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < _NSIG; sig++)
        sigaction(sig, &sa, NULL); /* SIGKILL, SIGSTOP and libc's own signals refuse; fine */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    /* Move sources off 0..2 first so that no dup2() below overwrites a source. */
    int fds[3] = {in_fd, out_fd, err_fd};
    for (int i = 0; i < 3; i++) {
        if (fds[i] < 3) {
            fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
            if (fds[i] < 0)
                child_fail("dup", "stdio", errno);
        }
    }
    for (int i = 0; i < 3; i++) {
        if (dup2(fds[i], i) < 0)
            child_fail("dup2", "stdio", errno);
    }
    if (opts->cwd && chdir(opts->cwd) < 0)
        child_fail("chdir", opts->cwd, errno);
    if (fn)
        _exit(fn(fn_arg) & 0xff);
    if (opts->in_child && opts->in_child(opts->in_child_arg) != 0)
        child_fail("setup", opts->argv[0], 0);
    execve(opts->argv[0], opts->argv, opts->envp ? opts->envp : environ);
    child_fail("exec", opts->argv[0], errno);
}

int child_pipe(int *parent_end, int *child_end, bool parent_reads, struct error **err)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return error_set(err, GRPC_INTERNAL, errno, "pipe");
    *parent_end = parent_reads ? p[0] : p[1];
    *child_end = parent_reads ? p[1] : p[0];
    if (fd_set_nonblock(*parent_end, true) < 0)
        return error_set(err, GRPC_INTERNAL, errno, "set pipe non-blocking");
    return 0;
}

static __attribute__((noreturn)) void exit_with_line(char *line, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    }
    line[n++] = '\n';
    (void)fd_write_all(2, line, n);
    _exit(1);
}

void child_exit_error(const struct error *e)
{
    char line[2048];
    int n = snprintf(line, sizeof(line) - 1, "code=%d msg=%s", e ? e->grpc_code : GRPC_INTERNAL,
                     e ? e->msg : "unknown error");
    exit_with_line(line, n < 0 ? 0 : MIN((size_t)n, sizeof(line) - 2));
}

void child_exit_errorf(int code, int sys_errno, const char *fmt, ...)
{
    char line[2048];
    size_t cap = sizeof(line) - 1; /* room for the '\n' */
    int n = snprintf(line, cap, "code=%d msg=", code);
    size_t len = n < 0 ? 0 : MIN((size_t)n, cap - 1);
    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(line + len, cap - len, fmt, ap);
    va_end(ap);
    len = n < 0 ? len : MIN(len + (size_t)n, cap - 1);
    if (sys_errno) {
        n = snprintf(line + len, cap - len, ": %s", strerrordesc_np(sys_errno));
        len = n < 0 ? len : MIN(len + (size_t)n, cap - 1);
    }
    exit_with_line(line, len);
}

/* The last line of stderr starting with "code=", or the first other line; *len its length. */
static const char *stderr_line(const char *s, bool result, int *len)
{
    const char *found = NULL;
    for (const char *line = s; *line;) {
        int n = (int)strcspn(line, "\n");
        bool is_result = str_has_prefix(line, "code=");
        bool is_log = str_has_prefix(line, "time=");
        if (n > 0 && !is_log && is_result == result && (result || !found)) {
            found = line;
            *len = n;
        }
        line += n;
        if (*line == '\n')
            line++;
    }
    return found;
}

int child_result_error(const struct child_result *res, const char *what, int64_t timeout_ms,
                       struct error **err)
{
    if (res->timed_out && timeout_ms > 0)
        return error_set(err, GRPC_DEADLINE_EXCEEDED, 0, "%s: timed out after %" PRId64 " ms", what,
                         timeout_ms);
    if (res->timed_out)
        return error_set(err, GRPC_DEADLINE_EXCEEDED, 0, "%s: timed out", what);
    if (res->exited && res->exit_code == 0)
        return 0;
    const char *err_text = res->err ? res->err : "";
    int len = 0;
    const char *line = stderr_line(err_text, true, &len);
    if (res->exited && line) {
        char *end = NULL;
        long code = strtol(line + strlen("code="), &end, 10);
        if (code > GRPC_OK && code <= GRPC_UNAUTHENTICATED && str_has_prefix(end, " msg=")) {
            const char *msg = end + strlen(" msg=");
            return error_set(err, (int)code, 0, "%s: %.*s", what, len - (int)(msg - line), msg);
        }
    }
    len = 0;
    line = stderr_line(err_text, false, &len);
    if (!line)
        line = "";
    if (!res->exited)
        return error_set(err, GRPC_INTERNAL, 0, "%s: child killed by signal %d%s%.*s", what,
                         res->term_signal, len ? ": " : "", len, line);
    return error_set(err, GRPC_INTERNAL, 0, "%s: child exited with status %d%s%.*s", what,
                     res->exit_code, len ? ": " : "", len, line);
}

/* child_spawn() and child_fork(): fn NULL execs opts->argv, else the child runs fn. */
static struct child *spawn(const char *what, const struct child_opts *opts, int (*fn)(void *),
                           void *fn_arg, child_done_cb cb, void *arg, struct error **err)
{
    if (!loop.base)
        return error_set(err, GRPC_INTERNAL, 0, "spawn: loop not initialised"), NULL;

    size_t cap = opts->out_cap ? opts->out_cap : CHILD_OUT_CAP_DEFAULT;
    _cleanup_child_ struct child *c = xcalloc(1, sizeof(*c));
    c->state = CHILD_RUNNING;
    c->pid = -1;
    c->pidfd = c->in_fd = c->out.fd = c->err.fd = -1;
    c->cb = cb;
    c->arg = arg;
    buf_init(&c->out.buf, cap);
    buf_init(&c->err.buf, cap);

    _cleanup_close_ int in_child = -1, out_child = -1, err_child = -1;
    const int *given = opts->stdio;
    if (given && given[0] >= 0) {
        /* the caller's fd, used as it is */
    } else if (opts->stdin_data) {
        if (child_pipe(&c->in_fd, &in_child, false, err) < 0)
            return error_prefix(err, "spawn %s: stdin", what), NULL;
        c->in_data = xmalloc(opts->stdin_len);
        memcpy(c->in_data, opts->stdin_data, opts->stdin_len);
        c->in_len = opts->stdin_len;
    } else {
        in_child = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (in_child < 0)
            return error_set(err, GRPC_INTERNAL, errno, "spawn %s: open /dev/null", what), NULL;
    }
    if ((!(given && given[1] >= 0) && child_pipe(&c->out.fd, &out_child, true, err) < 0) ||
        (!(given && given[2] >= 0) && child_pipe(&c->err.fd, &err_child, true, err) < 0))
        return error_prefix(err, "spawn %s: output", what), NULL;
    int child_fds[3] = {given && given[0] >= 0 ? given[0] : in_child,
                        given && given[1] >= 0 ? given[1] : out_child,
                        given && given[2] >= 0 ? given[2] : err_child};

    pid_t pid = fork();
    if (pid < 0)
        return error_set(err, GRPC_INTERNAL, errno, "spawn %s: fork", what), NULL;
    if (pid == 0)
        child_exec(opts, fn, fn_arg, child_fds[0], child_fds[1], child_fds[2]);
    c->pid = pid;

    /*
     * The pid cannot be reused before we reap it (SIGCHLD is not ignored), so
     * opening the pidfd after fork() is race-free.
     */
    c->pidfd = pidfd_open(pid, 0);
    if (c->pidfd < 0) {
        error_set(err, GRPC_INTERNAL, errno, "spawn %s: pidfd_open", what);
        goto undo;
    }
    c->exit_ev = loop_event_new(c->pidfd, EV_READ | EV_PERSIST, on_child_exit, c);
    if (c->out.fd >= 0)
        c->out.ev = loop_event_new(c->out.fd, EV_READ | EV_PERSIST, on_stream_readable, &c->out);
    if (c->err.fd >= 0)
        c->err.ev = loop_event_new(c->err.fd, EV_READ | EV_PERSIST, on_stream_readable, &c->err);
    if (event_add(c->exit_ev, NULL) < 0 || (c->out.ev && event_add(c->out.ev, NULL) < 0) ||
        (c->err.ev && event_add(c->err.ev, NULL) < 0)) {
        error_set(err, GRPC_INTERNAL, 0, "spawn %s: event_add failed", what);
        goto undo;
    }
    if (c->in_fd >= 0) {
        c->in_ev = loop_event_new(c->in_fd, EV_WRITE | EV_PERSIST, on_stdin_writable, c);
        if (event_add(c->in_ev, NULL) < 0) {
            error_set(err, GRPC_INTERNAL, 0, "spawn %s: event_add failed", what);
            goto undo;
        }
    }
    if (opts->timeout_ms > 0) {
        struct timeval tv = ms_to_timeval(opts->timeout_ms);
        c->deadline_ev = loop_event_new(-1, 0, on_child_deadline, c);
        if (event_add(c->deadline_ev, &tv) < 0) {
            error_set(err, GRPC_INTERNAL, 0, "spawn %s: event_add failed", what);
            goto undo;
        }
    }

    TAILQ_INSERT_HEAD(&loop.children, c, link);
    c->linked = true;
    loop.running++;
    return steal_ptr(&c);

undo:
    /* Just forked and SIGKILLed: the blocking reap returns at once. */
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    return NULL;
}

struct child *child_spawn(const struct child_opts *opts, child_done_cb cb, void *arg,
                          struct error **err)
{
    if (!opts || !opts->argv || !opts->argv[0])
        return error_set(err, GRPC_INTERNAL, 0, "spawn: no argv[0]"), NULL;
    return spawn(opts->argv[0], opts, NULL, NULL, cb, arg, err);
}

struct child *child_fork(const struct child_opts *opts, int (*fn)(void *arg), void *fn_arg,
                         child_done_cb cb, void *arg, struct error **err)
{
    assert_state(fn && !opts->argv && !opts->in_child);
    return spawn("child", opts, fn, fn_arg, cb, arg, err);
}

struct child *child_rm_rf(const char *const *paths, size_t n, int64_t timeout_ms, child_done_cb cb,
                          void *arg, struct error **err)
{
    _cleanup_free_ char **argv = xcalloc(n + 5, sizeof(char *));
    size_t k = 0;
    argv[k++] = (char *)"/bin/rm";
    argv[k++] = (char *)"-rf";
    argv[k++] = (char *)"--one-file-system";
    argv[k++] = (char *)"--";
    for (size_t i = 0; i < n; i++)
        argv[k++] = (char *)paths[i];
    struct child_opts o = {.argv = argv, .timeout_ms = timeout_ms, .out_cap = 4096};
    return child_spawn(&o, cb, arg, err);
}

pid_t child_pid(const struct child *c)
{
    return c->pid;
}

void child_signal(struct child *c, int signo)
{
    if (c->state == CHILD_FINISHED || c->pidfd < 0)
        return;
    if (pidfd_send_signal(c->pidfd, signo, NULL, 0) < 0)
        log_debug("child signal failed pid=%d signo=%d errno=%d", (int)c->pid, signo, errno);
}

void child_cancel(struct child *c)
{
    if (!c || c->state != CHILD_RUNNING)
        return;
    c->state = CHILD_CANCELLED;
    if (c->deadline_ev)
        event_del(c->deadline_ev);
    child_kill(c);
}

size_t child_count(void)
{
    return loop.running;
}

/* ---- shutdown ---- */

void loop_shutdown(void)
{
    if (!loop.base)
        return;
    /* The loop is over: kill what is left and reap it with a blocking wait. */
    struct child *c;
    TAILQ_FOREACH (c, &loop.children, link) {
        if (c->state == CHILD_FINISHED)
            continue;
        child_kill(c);
        siginfo_t si;
        memset(&si, 0, sizeof(si));
        while (waitid(P_PIDFD, (id_t)c->pidfd, &si, WEXITED) < 0 && errno == EINTR)
            ;
        c->status = si;
        c->state = CHILD_CANCELLED;
        child_finish(c);
    }
    run_deferred();
    assert_state(TAILQ_EMPTY(&loop.children));

    event_freep(&loop.sig_ev);
    event_freep(&loop.defer_ev);
    if (loop.sig_fd >= 0) {
        /* Swallow what is pending so that unblocking cannot deliver it with the default action. */
        read_signals(false);
        close_fd(&loop.sig_fd);
    }
    sigprocmask(SIG_SETMASK, &loop.saved_mask, NULL);
    event_base_free(loop.base);
    loop.base = NULL;
    sigemptyset(&loop.watched);
    memset(loop.sigs, 0, sizeof(loop.sigs));
    loop.running = 0;
}
