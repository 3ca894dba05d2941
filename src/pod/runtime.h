/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The OCI runtime driver (crun, runc, or any runtime with their CLI): every
 * call is a child process run through child_spawn() with a deadline, so a
 * hung runtime never stalls the loop.
 *
 *   start   <rt> --root R start <id>
 *   kill    <rt> --root R kill <id> <SIG>     "not running" / "does not exist" count as done
 *   delete  <rt> --root R delete --force <id> "does not exist" counts as done
 *   state   <rt> --root R state <id>          the JSON's "status" and "pid"
 *   update  <rt> --root R update --resources F <id>   F: OCI linux.resources JSON
 *   exec    <rt> --root R exec --process F --pid-file P <id>
 *           stdout and stderr captured up to out_cap bytes each (the rest is
 *           read and dropped), or the caller's own fds (streaming exec); at
 *           the timeout the exec'd process (pid file) and the runtime are
 *           killed and the result says timed_out. For a terminal (process
 *           "terminal": true) the caller gives a pty slave as the runtime's
 *           stdio and controlling terminal: the runtime relays it to the
 *           container's own pty and applies its size on SIGWINCH.
 *
 * `create` is not here: tinycri-keeper runs it (src/keeper/keeper.c).
 *
 * Handlers are the config's [runtime.<name>] sections; "" names the default.
 * runtime_init() probes each one: `<rt> --version` (in a child) and, for
 * crun, the cgroup layout: crun 1.8 refuses a v1/v2 hybrid layout in which a
 * controller is only on cgroup2 (/sys/fs/cgroup/unified). An unusable handler
 * is logged at start-up and reported by runtime_handler_usable(); the cgroup
 * check is repeated on every query, so mounting the controller on v1 makes
 * the handler usable without a restart.
 */
#ifndef TINYCRI_POD_RUNTIME_H
#define TINYCRI_POD_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct error;

/* Start the probes. Call once after loop_init(). Never fails for a bad handler. */
int runtime_init(const struct config *cfg, struct error **err);
void runtime_shutdown(void);

/*
 * Is the handler ("" = default) usable? When it is not (unknown name,
 * missing binary, failed --version, unsupported cgroup layout), *reason
 * (when reason is not NULL) gets a message borrowed until the next call.
 */
bool runtime_handler_usable(const char *name, const char **reason);

/* The handler's canonical name ("" becomes the default's), or NULL when unknown. Borrowed. */
const char *runtime_handler_name(const char *name);
/* Binary path and --root directory of a handler (borrowed), NULL when unknown. */
const char *runtime_handler_path(const char *name);
const char *runtime_handler_root(const char *name);
/* First line of `<rt> --version`, "" until the probe has answered. */
const char *runtime_handler_version(const char *name);

/* Per-handler facts as a JSON object text (owned), for verbose Status. */
char *runtime_handlers_json(void);

/* The outcome of one runtime call; everything is borrowed for the callback. */
struct runtime_result {
    const struct error *err; /* NULL on success (exec: the runtime ran the process) */
    /* exec */
    int exit_code;
    bool timed_out;
    const char *out;
    size_t out_len;
    bool out_truncated;
    const char *err_out;
    size_t err_len;
    bool err_truncated;
    /* state */
    const char *status; /* "created", "running", "stopped", ... */
    int pid;
};

typedef void (*runtime_done_cb)(const struct runtime_result *res, void *arg);

struct runtime_op;

/*
 * Each call starts the runtime and returns an operation owned by the
 * driver; cb runs exactly once on the loop unless the operation is
 * cancelled. Errors (also through res->err): NOT_FOUND for an unknown handler,
 * INTERNAL when the child cannot be started or the runtime fails,
 * DEADLINE_EXCEEDED when it hangs past its deadline.
 */
struct runtime_op *runtime_start(const char *handler, const char *id, runtime_done_cb cb, void *arg,
                                 struct error **err);
struct runtime_op *runtime_kill(const char *handler, const char *id, int signo, runtime_done_cb cb,
                                void *arg, struct error **err);
struct runtime_op *runtime_delete(const char *handler, const char *id, runtime_done_cb cb,
                                  void *arg, struct error **err);
struct runtime_op *runtime_state(const char *handler, const char *id, runtime_done_cb cb, void *arg,
                                 struct error **err);

struct runtime_op *runtime_update(const char *handler, const char *id, const char *resources_path,
                                  runtime_done_cb cb, void *arg, struct error **err);

struct runtime_exec_opts {
    const char *process_path; /* the process.json */
    const char *pid_file;     /* where the runtime writes the exec'd process's pid */
    int64_t timeout_ms;       /* 0: none */
    size_t out_cap;           /* per stream */
    /*
     * NULL, or the runtime's stdin, stdout, stderr (borrowed; -1: default, as
     * child_opts.stdio says). The exec'd process inherits them: a stream the
     * caller hands over is neither captured nor in the result.
     */
    const int *stdio;
    /* Make the runtime a session leader with its stdin (a pty slave) as controlling terminal. */
    bool ctty;
};
struct runtime_op *runtime_exec(const char *handler, const char *id,
                                const struct runtime_exec_opts *opts, runtime_done_cb cb, void *arg,
                                struct error **err);

/*
 * Forget an operation; cb never runs. Its runtime process is killed, except
 * for exec: there the exec'd process and everything it started are killed and
 * the runtime lives on (briefly, off the books) to reap them, as after a
 * deadline, so nothing is left as a zombie.
 */
void runtime_op_cancel(struct runtime_op *op);

/*
 * Tests only: the cgroup check on given texts. mountinfo is
 * /proc/self/mountinfo, controllers /sys/fs/cgroup/unified/cgroup.controllers
 * (NULL when unreadable). Returns the first controller that is only on
 * cgroup2 in a hybrid layout (owned), or NULL when the layout is fine.
 */
char *runtime_hybrid_missing_controller(const char *mountinfo, const char *controllers);

/* Signal number for a name ("SIGTERM", "TERM", "15", "SIGRTMIN+3"); -1 when unknown. */
int runtime_signal_parse(const char *name);

#endif
