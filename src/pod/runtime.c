/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The OCI runtime driver behind runtime.h: one child process per call, a
 * deadline on each, the runtime's stderr turned into an error message, and
 * the start-up probes that decide whether a handler can be used here.
 */
#include "autoconf.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/pidfd.h>
#include <sys/queue.h>
#include <unistd.h>

#include <jansson.h>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/proc.h"
#include "core/util.h"
#include "pod/runtime.h"

#define PROBE_TIMEOUT_MS 10000
#define START_TIMEOUT_MS 60000
#define KILL_TIMEOUT_MS 15000
#define DELETE_TIMEOUT_MS 30000
#define STATE_TIMEOUT_MS 15000
#define UPDATE_TIMEOUT_MS 30000
/*
 * After an exec's deadline or cancel: how long the runtime gets to reap the
 * killed process and exit before it is SIGKILLed itself, and how often the
 * process tree is killed again meanwhile (the pid file may come late).
 */
#define EXEC_KILL_GRACE_MS 2000
#define EXEC_KILL_POLL_MS 20
/* Kill a tree that has not finished freezing by then (a process stuck in the kernel). */
#define EXEC_FREEZE_MAX_MS 500
/* At shutdown there is no time for steps: how long the one synchronous freeze may wait. */
#define EXEC_ABORT_FREEZE_MS 50
#define PID_FILE_MAX 64
#define MOUNTINFO_MAX (1024 * 1024)
#define MESSAGE_MAX 1024

struct handler {
    const struct config_runtime *rt; /* borrowed from the config */
    char *root;                      /* --root in effect */
    char *version;                   /* first line of --version; "" until known */
    char *problem;                   /* why it cannot be used (binary, probe); NULL: fine */
    bool is_crun;
    struct child *probe;
    char reason[MESSAGE_MAX];
};

enum verb {
    VERB_START,
    VERB_KILL,
    VERB_DELETE,
    VERB_STATE,
    VERB_EXEC,
    VERB_UPDATE,
};

static const char *const verb_names[] = {"start", "kill", "delete", "state", "exec", "update"};

/*
 * An exec is ended by killing its process tree, never the runtime first: the
 * runtime is the exec'd process's parent and must live to reap it, or the
 * process would be orphaned to the host's init as a zombie visible in the pod.
 */
enum exec_phase {
    EXEC_RUNNING, /* the runtime runs the process; waits for its exit or the deadline */
    EXEC_KILLING, /* the tree is frozen, then killed, step by step; waits for the runtime to exit */
    EXEC_FORCING, /* the grace ran out: the runtime was SIGKILLed; waits for its exit */
};

struct runtime_op {
    TAILQ_ENTRY(runtime_op) link; /* drv.ops */
    enum verb verb;
    char *what; /* "runc start <id>", for messages */
    struct child *child;
    runtime_done_cb cb; /* NULL once cancelled: the op finishes on its own, silently */
    void *arg;
    /* exec only */
    enum exec_phase phase;
    char *pid_file;           /* owned: removed with the op */
    pid_t exec_pid;           /* the exec'd process, once its pid file was read; 0 before */
    int exec_pidfd;           /* ...and its pidfd; -1 before */
    struct proc_tree *tree;   /* the exec'd tree being frozen; NULL when none is */
    struct loop_timer *timer; /* the caller's deadline, then the kill polls */
    int64_t kill_start_ns;    /* when EXEC_KILLING began */
};

static struct {
    const struct config *cfg;
    struct handler handlers[CONFIG_MAX_RUNTIMES];
    size_t n;
    TAILQ_HEAD(, runtime_op) ops;
    bool stopping; /* runtime_shutdown() has begun: no new calls */
} drv;

/* ---- handlers ---- */

static struct handler *find_handler(const char *name)
{
    const struct config_runtime *rt =
        drv.cfg ? config_find_runtime(drv.cfg, name ? name : "") : NULL;
    if (!rt)
        return NULL;
    for (size_t i = 0; i < drv.n; i++) {
        if (drv.handlers[i].rt == rt)
            return &drv.handlers[i];
    }
    return NULL;
}

const char *runtime_handler_name(const char *name)
{
    struct handler *h = find_handler(name);
    return h ? h->rt->name : NULL;
}

const char *runtime_handler_path(const char *name)
{
    struct handler *h = find_handler(name);
    return h ? h->rt->path : NULL;
}

const char *runtime_handler_root(const char *name)
{
    struct handler *h = find_handler(name);
    return h ? h->root : NULL;
}

const char *runtime_handler_version(const char *name)
{
    struct handler *h = find_handler(name);
    return h && h->version ? h->version : "";
}

static bool has_option(const char *opts, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = opts; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return true;
        p = comma ? comma + 1 : NULL;
    }
    return false;
}

char *runtime_hybrid_missing_controller(const char *mountinfo, const char *controllers)
{
    if (!mountinfo || !controllers)
        return NULL;
    bool hybrid = false;
    _cleanup_free_ char *v1 = xstrdup(","); /* ",memory,cpu,...," of v1 mounts' options */
    _cleanup_free_ char *copy = xstrdup(mountinfo);
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *mnt, *fstype, *opts;
        if (!mountinfo_split(line, &mnt, &fstype, &opts))
            continue;
        if (strcmp(fstype, "cgroup2") == 0 && strcmp(mnt, "/sys/fs/cgroup/unified") == 0)
            hybrid = true;
        if (strcmp(fstype, "cgroup2") == 0 && strcmp(mnt, "/sys/fs/cgroup") == 0)
            return NULL; /* pure v2 */
        if (strcmp(fstype, "cgroup") == 0) {
            char *grown = xasprintf("%s%s,", v1, opts);
            free(v1);
            v1 = grown;
        }
    }
    if (!hybrid)
        return NULL;
    _cleanup_free_ char *ctl = xstrdup(controllers);
    save = NULL;
    for (char *c = strtok_r(ctl, " \t\n", &save); c; c = strtok_r(NULL, " \t\n", &save)) {
        if (!has_option(v1, c))
            return xstrdup(c);
    }
    return NULL;
}

/* The crun hybrid-cgroup check on this host: the controller only on cgroup2, or NULL. */
static char *host_hybrid_problem(void)
{
    _cleanup_error_ struct error *tmp = NULL;
    _cleanup_free_ char *controllers =
        read_file_capped("/sys/fs/cgroup/unified/cgroup.controllers", 4096, NULL, &tmp);
    if (!controllers)
        return NULL;
    _cleanup_free_ char *mountinfo =
        read_file_capped("/proc/self/mountinfo", MOUNTINFO_MAX, NULL, &tmp);
    return runtime_hybrid_missing_controller(mountinfo, controllers);
}

bool runtime_handler_usable(const char *name, const char **reason)
{
    struct handler *h = find_handler(name);
    if (!h) {
        if (reason)
            *reason = "no such runtime handler";
        return false;
    }
    if (h->problem) {
        if (reason)
            *reason = h->problem;
        return false;
    }
    if (!h->is_crun)
        return true;
    _cleanup_free_ char *missing = host_hybrid_problem();
    if (!missing)
        return true;
    /* "crun version 1.8.1" -> "crun 1.8.1" */
    const char *ver = h->version && str_has_prefix(h->version, "crun version ")
                          ? h->version + strlen("crun version ")
                          : NULL;
    snprintf(h->reason, sizeof(h->reason),
             "crun%s%s cannot run with cgroups in hybrid mode: the %s controller is only on "
             "cgroup2; mount it on v1 or use runc",
             ver ? " " : "", ver ? ver : "", missing);
    if (reason)
        *reason = h->reason;
    return false;
}

char *runtime_handlers_json(void)
{
    json_t *o = json_object();
    for (size_t i = 0; i < drv.n; i++) {
        struct handler *h = &drv.handlers[i];
        const char *reason = NULL;
        bool ok = runtime_handler_usable(h->rt->name, &reason);
        json_t *e = json_object();
        json_object_set_new(e, "path", json_string(h->rt->path));
        json_object_set_new(e, "root", json_string(h->root));
        json_object_set_new(e, "version", json_string(h->version ? h->version : ""));
        json_object_set_new(e, "usable", json_boolean(ok));
        if (!ok)
            json_object_set_new(e, "reason", json_string(reason));
        json_object_set_new(o, h->rt->name, e);
    }
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return text;
}

static void on_probe_done(const struct child_result *res, void *arg)
{
    struct handler *h = arg;
    h->probe = NULL;
    if (!res->exited || res->exit_code != 0) {
        free(h->problem);
        h->problem = xasprintf("%s --version failed (%s %d)%s%.*s", h->rt->path,
                               res->exited ? "status" : "signal",
                               res->exited ? res->exit_code : res->term_signal,
                               res->err_len ? ": " : "", (int)strcspn(res->err, "\n"), res->err);
        log_error("runtime handler unusable runtime=%s reason=\"%s\"", h->rt->name, h->problem);
        return;
    }
    free(h->version);
    h->version = xstrndup(res->out, strcspn(res->out, "\n"));
    if (str_has_prefix(h->version, "crun"))
        h->is_crun = true;
    const char *reason = NULL;
    if (runtime_handler_usable(h->rt->name, &reason))
        log_info("runtime handler ready runtime=%s path=%s version=\"%s\"", h->rt->name,
                 h->rt->path, h->version);
    else
        log_error("runtime handler unusable runtime=%s reason=\"%s\"", h->rt->name, reason);
}

int runtime_init(const struct config *cfg, struct error **err)
{
    drv.cfg = cfg;
    drv.n = 0;
    TAILQ_INIT(&drv.ops);
    for (size_t i = 0; i < cfg->n_runtimes; i++) {
        struct handler *h = &drv.handlers[drv.n++];
        memset(h, 0, sizeof(*h));
        h->rt = &cfg->runtimes[i];
        h->root = h->rt->root ? xstrdup(h->rt->root)
                              : xasprintf("%s/runtime/%s", cfg->state_dir, h->rt->name);
        h->version = xstrdup("");
        const char *base = strrchr(h->rt->path, '/');
        h->is_crun = str_has_prefix(base ? base + 1 : h->rt->path, "crun");
        if (mkdir_p(h->root, 0700, err) < 0)
            return error_prefix(err, "runtime %s root", h->rt->name);
        if (access(h->rt->path, X_OK) < 0) {
            h->problem = xasprintf("%s: %s", h->rt->path, strerror(errno));
            log_warn("runtime handler unusable runtime=%s reason=\"%s\"", h->rt->name, h->problem);
            continue;
        }
        char *argv[] = {h->rt->path, (char *)"--version", NULL};
        struct child_opts o = {.argv = argv, .timeout_ms = PROBE_TIMEOUT_MS, .out_cap = 4096};
        _cleanup_error_ struct error *tmp = NULL;
        h->probe = child_spawn(&o, on_probe_done, h, &tmp);
        if (!h->probe) {
            h->problem = xasprintf("%s --version: %s", h->rt->path, tmp->msg);
            log_warn("runtime handler unusable runtime=%s reason=\"%s\"", h->rt->name, h->problem);
        }
    }
    return 0;
}

/* Is pid the runtime process or one of its descendants (a few levels up at most)? */
static bool is_under(pid_t pid, pid_t runtime_pid)
{
    for (int depth = 0; depth < 4 && pid > 1; depth++) {
        pid = proc_parent(pid);
        if (pid == runtime_pid)
            return true;
    }
    return false;
}

/*
 * Open the exec'd process once the runtime has written its pid file. The
 * pidfd pins it, so later kills can never hit a recycled pid; the process
 * must sit under the runtime process when it is opened.
 */
static void exec_open_process(struct runtime_op *op)
{
    if (op->exec_pidfd >= 0 || !op->child)
        return;
    _cleanup_error_ struct error *tmp = NULL;
    _cleanup_free_ char *text = read_file_capped(op->pid_file, PID_FILE_MAX, NULL, &tmp);
    char *end = NULL;
    long pid = text ? strtol(text, &end, 10) : 0;
    if (pid <= 1 || end == text || (*end && *end != '\n'))
        return;
    int fd = pidfd_open((pid_t)pid, 0);
    if (fd < 0)
        return;
    if (!is_under((pid_t)pid, child_pid(op->child))) {
        close(fd);
        return;
    }
    op->exec_pid = (pid_t)pid;
    op->exec_pidfd = fd;
}

static int64_t ms_since(int64_t start_ns)
{
    return (now_monotonic_ns() - start_ns) / 1000000;
}

/*
 * One step of killing the exec'd process and everything it started: freeze
 * the tree (SIGSTOP, level by level as /proc shows each process stopped), and
 * once it is complete, SIGKILL all of it at once. Steps go on every poll, so a
 * late pid file or anything left is caught again.
 */
static void exec_kill_step(struct runtime_op *op)
{
    if (!op->tree) {
        exec_open_process(op);
        if (op->exec_pidfd < 0)
            return;
        op->tree = proc_tree_freeze(op->exec_pid, op->exec_pidfd);
        if (!op->tree)
            return;
    }
    if (!proc_tree_settle(op->tree) && ms_since(op->kill_start_ns) < EXEC_FREEZE_MAX_MS)
        return;
    size_t n = proc_tree_kill(op->tree);
    proc_tree_free(steal_ptr(&op->tree));
    if (n)
        log_debug("exec process tree killed call=\"%s\" processes=%zu", op->what, n);
}

/* Deadline or cancel: kill the tree and give the runtime the grace to reap it and exit. */
static void exec_begin_kill(struct runtime_op *op)
{
    if (op->phase != EXEC_RUNNING || !op->child)
        return;
    op->phase = EXEC_KILLING;
    op->kill_start_ns = now_monotonic_ns();
    exec_kill_step(op);
    loop_timer_arm(op->timer, EXEC_KILL_POLL_MS);
}

static void on_exec_timer(void *arg)
{
    struct runtime_op *op = arg;
    if (!op->child)
        return;
    switch (op->phase) {
    case EXEC_RUNNING: /* the caller's deadline */
        exec_begin_kill(op);
        break;
    case EXEC_KILLING:
        exec_kill_step(op);
        if (ms_since(op->kill_start_ns) < EXEC_KILL_GRACE_MS) {
            loop_timer_arm(op->timer, EXEC_KILL_POLL_MS);
            break;
        }
        log_warn("runtime did not exit after its exec process was killed; killing it call=\"%s\"",
                 op->what);
        op->phase = EXEC_FORCING;
        child_signal(op->child, SIGKILL);
        break;
    case EXEC_FORCING:
        break;
    }
}

static void op_free(struct runtime_op *op)
{
    TAILQ_REMOVE(&drv.ops, op, link);
    loop_timer_free(op->timer);
    proc_tree_free(op->tree);
    if (op->exec_pidfd >= 0)
        close(op->exec_pidfd);
    if (op->pid_file)
        unlink(op->pid_file);
    free(op->what);
    free(op->pid_file);
    free(op);
}

/* Kill the op's processes now and free it; cb does not run. */
static void op_abort(struct runtime_op *op)
{
    if (op->verb == VERB_EXEC) {
        exec_open_process(op);
        if (op->exec_pidfd >= 0)
            proc_kill_tree(op->exec_pid, op->exec_pidfd, EXEC_ABORT_FREEZE_MS);
    }
    if (op->child)
        child_cancel(op->child);
    op_free(op);
}

void runtime_op_cancel(struct runtime_op *op)
{
    if (!op)
        return;
    if (op->verb != VERB_EXEC || !op->child) {
        op_abort(op);
        return;
    }
    /* The exec ends as a timed-out one does, but nobody hears of it. */
    op->cb = NULL;
    op->arg = NULL;
    exec_begin_kill(op);
}

void runtime_shutdown(void)
{
    /* Every caller still waiting hears UNAVAILABLE, so nothing it holds leaks. */
    drv.stopping = true;
    struct runtime_op *op;
    while ((op = TAILQ_FIRST(&drv.ops))) {
        runtime_done_cb cb = op->cb;
        void *arg = op->arg;
        struct error *err = NULL;
        error_set(&err, GRPC_UNAVAILABLE, 0, "%s: tinycrid is shutting down", op->what);
        op_abort(op);
        struct runtime_result res = {.err = err};
        if (cb)
            cb(&res, arg);
        error_free(err);
    }
    for (size_t i = 0; i < drv.n; i++) {
        struct handler *h = &drv.handlers[i];
        if (h->probe)
            child_cancel(h->probe);
        free(h->root);
        free(h->version);
        free(h->problem);
    }
    memset(&drv, 0, sizeof(drv));
}

/* ---- calls ---- */

/*
 * The runtime's message from its stderr: runc logs `time=... level=error
 * msg="..."`, crun `crun: ...`; keep the last non-empty line, msg= unquoted.
 */
static char *runtime_message(const char *text, size_t len)
{
    while (len > 0 && isspace((unsigned char)text[len - 1]))
        len--;
    size_t start = len;
    while (start > 0 && text[start - 1] != '\n')
        start--;
    const char *line = text + start;
    size_t n = len - start;
    const char *msg = memmem(line, n, "msg=\"", 5);
    struct buf b;
    buf_init(&b, MESSAGE_MAX);
    if (msg) {
        for (const char *p = msg + 5; p < line + n && *p != '"'; p++) {
            if (*p == '\\' && p + 1 < line + n)
                p++;
            if (buf_append(&b, p, 1) < 0)
                break;
        }
    } else {
        if (n > MESSAGE_MAX)
            line += n - MESSAGE_MAX, n = MESSAGE_MAX;
        buf_append(&b, line, n);
    }
    char *s = buf_take_str(&b, NULL);
    buf_free(&b);
    /* One printable ASCII line: it ends up in records (JSON) and gRPC messages. */
    for (char *p = s; *p; p++) {
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = (unsigned char)*p >= 0x80 ? '?' : ' ';
    }
    return s;
}

static bool says_gone(const char *text)
{
    static const char *const marks[] = {"not running",
                                        "does not exist",
                                        "no such process",
                                        "no such file or directory",
                                        "not found",
                                        "container is stopped",
                                        "process already finished"};
    _cleanup_free_ char *lower = xstrdup(text);
    for (char *p = lower; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    for (size_t i = 0; i < ARRAY_SIZE(marks); i++) {
        if (strstr(lower, marks[i]))
            return true;
    }
    return false;
}

static void on_op_done(const struct child_result *res, void *arg)
{
    struct runtime_op *op = arg;
    op->child = NULL;
    struct runtime_result r = {0};
    _cleanup_error_ struct error *err = NULL;
    bool ok = res->exited && res->exit_code == 0;

    if (!op->cb) {
        /* Cancelled: the runtime has reaped what it ran; nobody waits for the result. */
        op_free(op);
        return;
    }
    switch (op->verb) {
    case VERB_EXEC:
        if (op->phase != EXEC_RUNNING) {
            r.timed_out = true;
            error_set(&err, GRPC_DEADLINE_EXCEEDED, 0, "%s: timed out", op->what);
        } else if (res->timed_out) {
            error_set(&err, GRPC_DEADLINE_EXCEEDED, 0, "%s: the runtime hung", op->what);
        } else if (!res->exited) {
            error_set(&err, GRPC_INTERNAL, 0, "%s: the runtime was killed by signal %d", op->what,
                      res->term_signal);
        }
        r.exit_code = res->exited ? res->exit_code : 128 + res->term_signal;
        r.out = res->out;
        r.out_len = res->out_len;
        r.out_truncated = res->out_truncated;
        r.err_out = res->err;
        r.err_len = res->err_len;
        r.err_truncated = res->err_truncated;
        break;
    case VERB_KILL:
    case VERB_DELETE:
        if (!ok && res->exited && says_gone(res->err))
            ok = true;
        /* fall through */
    default:
        if (res->timed_out) {
            error_set(&err, GRPC_DEADLINE_EXCEEDED, 0, "%s: the runtime did not answer in time",
                      op->what);
        } else if (!ok) {
            _cleanup_free_ char *m = runtime_message(res->err, res->err_len);
            error_set(&err, GRPC_INTERNAL, 0, "%s failed (%s %d): %s", op->what,
                      res->exited ? "status" : "signal",
                      res->exited ? res->exit_code : res->term_signal, *m ? m : "no message");
        }
        break;
    }

    json_t *state = NULL;
    if (op->verb == VERB_STATE && !err) {
        json_error_t jerr;
        state = json_loadb(res->out, res->out_len, 0, &jerr);
        const char *status = state ? json_string_value(json_object_get(state, "status")) : NULL;
        if (!status)
            error_set(&err, GRPC_INTERNAL, 0, "%s: unreadable state JSON", op->what);
        r.status = status;
        r.pid = state ? (int)json_integer_value(json_object_get(state, "pid")) : 0;
    }
    r.err = err;
    runtime_done_cb cb = op->cb;
    void *cb_arg = op->arg;
    op_free(op);
    cb(&r, cb_arg);
    json_decref(state);
}

/* Run `<rt> --root R <verb> <tail...>`; tail includes the id where the verb wants it. */
static struct runtime_op *op_run(enum verb verb, const char *handler, const char *id,
                                 char *const *tail, size_t n_tail, const struct child_opts *base,
                                 runtime_done_cb cb, void *arg, struct error **err)
{
    struct handler *h = find_handler(handler);
    if (!h)
        return error_set(err, GRPC_NOT_FOUND, 0, "no runtime handler \"%s\"", handler), NULL;
    if (drv.stopping)
        return error_set(err, GRPC_UNAVAILABLE, 0, "tinycrid is shutting down"), NULL;
    char *argv[16];
    size_t n = 0;
    argv[n++] = h->rt->path;
    argv[n++] = (char *)"--root";
    argv[n++] = h->root;
    argv[n++] = (char *)verb_names[verb];
    assert_state(n + n_tail < ARRAY_SIZE(argv));
    for (size_t i = 0; i < n_tail; i++)
        argv[n++] = tail[i];
    argv[n] = NULL;

    struct runtime_op *op = xcalloc(1, sizeof(*op));
    op->verb = verb;
    op->exec_pidfd = -1;
    op->what = xasprintf("%s %s %s", h->rt->name, verb_names[verb], id);
    op->cb = cb;
    op->arg = arg;
    struct child_opts o = *base;
    o.argv = argv;
    op->child = child_spawn(&o, on_op_done, op, err);
    if (!op->child) {
        free(op->what);
        free(op);
        return NULL;
    }
    TAILQ_INSERT_HEAD(&drv.ops, op, link);
    log_debug("runtime call started call=\"%s\"", op->what);
    return op;
}

struct runtime_op *runtime_start(const char *handler, const char *id, runtime_done_cb cb, void *arg,
                                 struct error **err)
{
    char *tail[] = {(char *)id};
    struct child_opts o = {.timeout_ms = START_TIMEOUT_MS};
    return op_run(VERB_START, handler, id, tail, ARRAY_SIZE(tail), &o, cb, arg, err);
}

struct runtime_op *runtime_kill(const char *handler, const char *id, int signo, runtime_done_cb cb,
                                void *arg, struct error **err)
{
    char sig[16];
    snprintf(sig, sizeof(sig), "%d", signo);
    char *tail[] = {(char *)id, sig};
    struct child_opts o = {.timeout_ms = KILL_TIMEOUT_MS};
    return op_run(VERB_KILL, handler, id, tail, ARRAY_SIZE(tail), &o, cb, arg, err);
}

struct runtime_op *runtime_delete(const char *handler, const char *id, runtime_done_cb cb,
                                  void *arg, struct error **err)
{
    char *tail[] = {(char *)"--force", (char *)id};
    struct child_opts o = {.timeout_ms = DELETE_TIMEOUT_MS};
    return op_run(VERB_DELETE, handler, id, tail, ARRAY_SIZE(tail), &o, cb, arg, err);
}

struct runtime_op *runtime_state(const char *handler, const char *id, runtime_done_cb cb, void *arg,
                                 struct error **err)
{
    char *tail[] = {(char *)id};
    struct child_opts o = {.timeout_ms = STATE_TIMEOUT_MS, .out_cap = 64 * 1024};
    return op_run(VERB_STATE, handler, id, tail, ARRAY_SIZE(tail), &o, cb, arg, err);
}

struct runtime_op *runtime_update(const char *handler, const char *id, const char *resources_path,
                                  runtime_done_cb cb, void *arg, struct error **err)
{
    char *tail[] = {(char *)"--resources", (char *)resources_path, (char *)id};
    struct child_opts o = {.timeout_ms = UPDATE_TIMEOUT_MS};
    return op_run(VERB_UPDATE, handler, id, tail, ARRAY_SIZE(tail), &o, cb, arg, err);
}

/* In the forked runtime: its own session, with the pty slave on stdin as controlling terminal. */
static int take_ctty(void *arg)
{
    /* Without it the exec still runs; only SIGWINCH (resize) would not reach the runtime. */
    if (setsid() >= 0)
        (void)ioctl(0, TIOCSCTTY, 0);
    return 0;
}

struct runtime_op *runtime_exec(const char *handler, const char *id,
                                const struct runtime_exec_opts *opts, runtime_done_cb cb, void *arg,
                                struct error **err)
{
    char *tail[] = {(char *)"--process", (char *)opts->process_path, (char *)"--pid-file",
                    (char *)opts->pid_file, (char *)id};
    struct child_opts o = {
        .out_cap = opts->out_cap, .stdio = opts->stdio, .in_child = opts->ctty ? take_ctty : NULL};
    struct runtime_op *op =
        op_run(VERB_EXEC, handler, id, tail, ARRAY_SIZE(tail), &o, cb, arg, err);
    if (!op)
        return NULL;
    op->pid_file = xstrdup(opts->pid_file);
    op->timer = loop_timer_new(on_exec_timer, op);
    if (opts->timeout_ms > 0)
        loop_timer_arm(op->timer, opts->timeout_ms);
    return op;
}

/* ---- signals ---- */

static const struct {
    const char *name;
    int signo;
} signal_names[] = {
    {"ABRT", SIGABRT}, {"ALRM", SIGALRM}, {"BUS", SIGBUS},       {"CHLD", SIGCHLD},
    {"CLD", SIGCHLD},  {"CONT", SIGCONT}, {"FPE", SIGFPE},       {"HUP", SIGHUP},
    {"ILL", SIGILL},   {"INT", SIGINT},   {"IO", SIGIO},         {"IOT", SIGIOT},
    {"KILL", SIGKILL}, {"PIPE", SIGPIPE}, {"POLL", SIGPOLL},     {"PROF", SIGPROF},
    {"PWR", SIGPWR},   {"QUIT", SIGQUIT}, {"SEGV", SIGSEGV},     {"STKFLT", SIGSTKFLT},
    {"STOP", SIGSTOP}, {"SYS", SIGSYS},   {"TERM", SIGTERM},     {"TRAP", SIGTRAP},
    {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},     {"URG", SIGURG},
    {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"VTALRM", SIGVTALRM}, {"WINCH", SIGWINCH},
    {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ},
};

int runtime_signal_parse(const char *name)
{
    if (!name || !*name)
        return -1;
    char *end = NULL;
    long v = strtol(name, &end, 10);
    if (*end == '\0')
        return v > 0 && v < _NSIG ? (int)v : -1;
    const char *s = name;
    if (strncasecmp(s, "SIG", 3) == 0)
        s += 3;
    for (size_t i = 0; i < ARRAY_SIZE(signal_names); i++) {
        if (strcasecmp(s, signal_names[i].name) == 0)
            return signal_names[i].signo;
    }
    if (strncasecmp(s, "RTMIN", 5) == 0 || strncasecmp(s, "RTMAX", 5) == 0) {
        bool min = strncasecmp(s, "RTMIN", 5) == 0;
        int base = min ? SIGRTMIN : SIGRTMAX;
        if (s[5] == '\0')
            return base;
        v = strtol(s + 5, &end, 10);
        if (*end || (min && v < 0) || (!min && v > 0))
            return -1;
        int sig = base + (int)v;
        return sig >= SIGRTMIN && sig <= SIGRTMAX ? sig : -1;
    }
    return -1;
}
