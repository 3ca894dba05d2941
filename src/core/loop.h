/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The reactor: the daemon's single libevent event_base, signals delivered
 * through a signalfd, one-shot timers, a deferred-free queue, and child
 * processes watched through pidfds.
 *
 * Everything here runs on the one loop thread. Modules may use libevent
 * directly for fd watchers, creating their events with loop_event_new().
 */
#ifndef TINYCRI_CORE_LOOP_H
#define TINYCRI_CORE_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <event2/event.h>

struct error;

/*
 * Create the event_base, ignore SIGPIPE and reset SIGCHLD to its default (children are
 * reaped through pidfds). Signals are blocked one by one as loop_watch_signal() asks
 * for them. Call once at start-up.
 */
int loop_init(struct error **err);

/* The loop's event_base (borrowed). */
struct event_base *loop_base(void);

/*
 * event_new() on the loop's base. libevent fails to make an event only when
 * malloc fails, so this ends the process then, as xmalloc() does: the one
 * answer to "event_new failed" (event_add() can still fail, and callers
 * handle that).
 */
struct event *loop_event_new(evutil_socket_t fd, short what, event_callback_fn cb, void *arg);

/* Run until loop_exit(); returns 0, or -1 when libevent fails. */
int loop_run(void);

/* Make loop_run() return after the current callbacks. */
void loop_exit(void);

/*
 * Free the event_base, the signal watchers and whatever is still queued for
 * deferred free. Children still running are killed with SIGKILL and reaped.
 * Free every loop_timer before calling this.
 */
void loop_shutdown(void);

/*
 * Queue fn(arg) to run on the loop once the current callback has returned,
 * before the next poll (in the order queued). Safe from any callback. It is
 * how an operation keeps the promise that its callback never runs inside
 * the call that started it. Without a loop, fn runs at once.
 */
void loop_defer(void (*fn)(void *), void *arg);

/*
 * loop_defer() for freeing: fn(obj) runs outside any callback that may
 * still be using obj.
 */
void loop_defer_free(void (*fn)(void *), void *obj);

/*
 * Deliver signo through the loop's signalfd: the signal is blocked for the
 * process and cb(signo, arg) runs on the loop when it arrives. One callback
 * per signal; a second call replaces the first.
 */
typedef void (*loop_signal_cb)(int signo, void *arg);
int loop_watch_signal(int signo, loop_signal_cb cb, void *arg, struct error **err);

/*
 * Watch a process through its pidfd (taken: closed by loop_pidfd_free(), and
 * on failure) and call cb(arg) once, on the loop, when it has exited. A child
 * of ours is reaped then (waitid WNOHANG); another process (a keeper adopted
 * after a restart) is left to its parent. The watcher stays until
 * loop_pidfd_free(), which is safe inside cb. Errors: INTERNAL (event_add).
 */
struct loop_pidfd;
typedef void (*loop_pidfd_cb)(void *arg);
struct loop_pidfd *loop_watch_pidfd(int pidfd, loop_pidfd_cb cb, void *arg, struct error **err);
/* Has the process exited (cb has run or is running)? */
bool loop_pidfd_exited(const struct loop_pidfd *w);
/* Send signo through the pidfd; a no-op once the process has exited. */
void loop_pidfd_signal(struct loop_pidfd *w, int signo);
/* A new pidfd (owned, O_CLOEXEC) for the same process, to hand it on; -1 on failure. */
int loop_pidfd_dup(const struct loop_pidfd *w);
/* Stop watching and close the pidfd; loop_pidfd_free(NULL) is a no-op. */
void loop_pidfd_free(struct loop_pidfd *w);

/* One-shot timers. */
struct loop_timer;
typedef void (*loop_timer_cb)(void *arg);
struct loop_timer *loop_timer_new(loop_timer_cb cb, void *arg);
/* (Re)arm to fire once after ms milliseconds. */
void loop_timer_arm(struct loop_timer *t, int64_t ms);
void loop_timer_disarm(struct loop_timer *t);
bool loop_timer_is_armed(const struct loop_timer *t);
/* Disarm and free; loop_timer_free(NULL) is a no-op. Safe inside its own callback. */
void loop_timer_free(struct loop_timer *t);

/*
 * Child processes.
 *
 * child_spawn() forks and execs opts->argv[0] (a path; no PATH search) with
 * stdin fed from opts->stdin_data (then closed; /dev/null when NULL) and
 * stdout/stderr captured through non-blocking pipes. Each of the two streams
 * keeps at most opts->out_cap bytes (default 64 KiB when 0); beyond that the
 * rest is read and dropped and the *_truncated flag is set, so a chatty child
 * never blocks and never grows the daemon. The exit is learned through a
 * pidfd watched by the loop, and the child is reaped there (never with a
 * blocking wait). When opts->timeout_ms > 0 and the child is still running at
 * the deadline, it gets SIGKILL and the result says timed_out.
 *
 * opts->stdio may hand the child fds of the caller's own instead (a pty, a
 * pipe whose other end the caller reads itself).
 *
 * In the child, signal mask and dispositions are reset, the working
 * directory is opts->cwd when set, then opts->in_child(opts->in_child_arg)
 * runs (async-signal-safe work only; return non-zero to make the child exit
 * with status 127), then execve.
 *
 * cb runs exactly once, on the loop, after the exit and after the pipes were
 * drained of what the child wrote. The result and its buffers are borrowed
 * for the duration of the callback. The child object is freed by the loop
 * after cb returns; the caller must not use it afterwards.
 */
struct child_opts {
    char *const *argv; /* argv[0] is the executable's path */
    char *const *envp; /* NULL: inherit the daemon's environment */
    const char *cwd;   /* NULL: inherit */
    const void *stdin_data;
    size_t stdin_len;
    size_t out_cap;     /* per stream; 0 means 64 KiB */
    int64_t timeout_ms; /* 0: no deadline */
    int (*in_child)(void *arg);
    void *in_child_arg;
    /*
     * NULL, or the child's stdin, stdout and stderr given by the caller
     * (borrowed; -1 for the default: stdin_data or /dev/null, captured
     * pipes). A given stream is neither fed nor captured, and its fd stays
     * the caller's.
     */
    const int *stdio;
};

struct child_result {
    pid_t pid;
    bool exited; /* true: exit_code is valid; false: killed by term_signal */
    int exit_code;
    int term_signal;
    bool timed_out; /* killed because the deadline passed */
    bool out_truncated;
    bool err_truncated;
    const char *out; /* NUL-terminated, out_len bytes */
    size_t out_len;
    const char *err;
    size_t err_len;
};

struct child;
typedef void (*child_done_cb)(const struct child_result *res, void *arg);

/* Returns the child (owned by the loop) or NULL with *err set (INTERNAL). */
struct child *child_spawn(const struct child_opts *opts, child_done_cb cb, void *arg,
                          struct error **err);

/*
 * child_spawn() without exec, for work off the loop that needs no program (a
 * mount, a disk walk, an extraction): the forked child runs fn(fn_arg) after
 * the same set-up (stdio, signals, cwd) and exits with what fn returns (fn
 * may also _exit() itself; what it prints to stdout it must fflush()).
 * opts->argv and opts->in_child must be NULL. The child has a copy of the
 * daemon's memory; the daemon has one thread, so malloc, libarchive and
 * jansson are safe in it.
 */
struct child *child_fork(const struct child_opts *opts, int (*fn)(void *arg), void *fn_arg,
                         child_done_cb cb, void *arg, struct error **err);

/*
 * How a child_fork() child says why it failed: one line "code=<grpc code>
 * msg=<text>" on its stderr (line breaks in the text become spaces), then
 * _exit(1). child_exit_errorf() builds the text without malloc: fmt, then
 * ": <strerror(sys_errno)>" when sys_errno is not 0.
 */
__attribute__((noreturn)) void child_exit_error(const struct error *e);
__attribute__((noreturn, format(printf, 3, 4))) void child_exit_errorf(int code, int sys_errno,
                                                                       const char *fmt, ...);

/*
 * The parent's side: 0 when the child exited with status 0, else -1 with
 * *err saying "<what>: " and then the child's last "code=" line (its code and
 * text), or that it timed out (after timeout_ms, when > 0), was killed by a
 * signal or exited with a status, with the first other line of its stderr.
 * Log lines ("time=...") never count as that line.
 */
int child_result_error(const struct child_result *res, const char *what, int64_t timeout_ms,
                       struct error **err);

/*
 * Remove the trees at paths[0..n-1] in a child: `rm -rf --one-file-system`,
 * which never descends into a mount met inside a tree (a bind mount left in
 * a container's or a pod's directory keeps what it shows; rm then fails and
 * says so on stderr). Otherwise as child_spawn(), with a deadline of
 * timeout_ms: a result with exit_code != 0 means something was left.
 */
struct child *child_rm_rf(const char *const *paths, size_t n, int64_t timeout_ms, child_done_cb cb,
                          void *arg, struct error **err);

pid_t child_pid(const struct child *c);

/*
 * A pipe for a child's stdio (child_opts.stdio): O_CLOEXEC on both ends,
 * O_NONBLOCK on the parent's. parent_reads: the child writes into it.
 * Errors: INTERNAL (both ends may be set then: the caller closes them).
 */
int child_pipe(int *parent_end, int *child_end, bool parent_reads, struct error **err);

/* Send a signal through the pidfd (no-op once the child has been reaped). */
void child_signal(struct child *c, int signo);

/*
 * Forget the child: SIGKILL it and reap it later on the loop without calling
 * its callback. Use when the operation that started it is going away.
 */
void child_cancel(struct child *c);

/* How many children are running (for tests and shutdown). */
size_t child_count(void);

#endif
