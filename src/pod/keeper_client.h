/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's side of the keeper protocol (keeper/protocol.h): starting a
 * container's tinycri-keeper, reading what it reports (the status line) and
 * records (exit.json, keeper.log), recognising a keeper after a restart,
 * sending it commands on its control socket and joining its attach socket. pod/container drives
 * these; the keeper itself is src/keeper/keeper.c.
 */
#ifndef TINYCRI_POD_KEEPER_CLIENT_H
#define TINYCRI_POD_KEEPER_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct error;

/* What a keeper is started with (all borrowed for the call). */
struct keeper_args {
    const char *keeper_path;  /* the binary */
    const char *id;           /* the container's id */
    const char *state_dir;    /* the bundle (config.json) and the keeper's state */
    const char *runtime_path; /* the OCI runtime */
    const char *runtime_root;
    const char *log_path;    /* the CRI log; NULL or "" for none */
    const char *cgroup_path; /* linux.cgroupsPath for OOM detection; NULL for none */
    bool tty;
    bool stdin_open;
    bool stdin_once;
};

/*
 * Fork and exec a keeper, which detaches itself and outlives the daemon:
 * stdin/stdout /dev/null, stderr appended to <state_dir>/keeper.log, fd 3
 * the write end of the status pipe, signals as a fresh process has them, one
 * step less oom_score_adj protection than the daemon. On success *pid, and
 * *pidfd and *status_fd (the pipe's read end, non-blocking), both owned, are
 * set. Errors: INTERNAL.
 */
int keeper_spawn(const struct keeper_args *a, pid_t *pid, int *pidfd, int *status_fd,
                 struct error **err);

/*
 * The status line the keeper wrote (NUL-terminated, may be cut or empty):
 * 0 with *pid set on "created pid=N\n"; else -1 with INTERNAL: the keeper's
 * error, or that it exited without reporting (with the tail of its log).
 */
int keeper_status_parse(const char *line, const char *state_dir, int *pid, struct error **err);

/* The tail of <state_dir>/keeper.log on one line, for messages (owned; "" when empty). */
char *keeper_log_tail(const char *state_dir);

/* What exit.json records. */
struct keeper_exit {
    int exit_code; /* 128 + signal when killed */
    int64_t finished_ns;
    bool oom_killed;
};

/* Read <state_dir>/exit.json: 0 with *out, -1 when it is missing or unreadable. */
int keeper_exit_read(const char *state_dir, struct keeper_exit *out);

/* Is pid a keeper of container id? (its /proc cmdline names the binary and --id id) */
bool keeper_is_for(int pid, const char *id);

/*
 * Send one command line (keeper/protocol.h) on <state_dir>/ctl.sock and wait
 * for the reply on the loop. cb runs once, never inside keeper_ctl_send(): err
 * NULL for "ok", else INTERNAL (the keeper's error, or it closed the
 * connection) or DEADLINE_EXCEEDED after timeout_ms. id names the container
 * in messages. Errors at once: FAILED_PRECONDITION (no keeper listening),
 * UNAVAILABLE, INTERNAL.
 */
struct keeper_ctl;
typedef void (*keeper_ctl_cb)(const struct error *err, void *arg);
struct keeper_ctl *keeper_ctl_send(const char *id, const char *state_dir, const char *cmd,
                                   int64_t timeout_ms, keeper_ctl_cb cb, void *arg,
                                   struct error **err);

/* End every command still waiting: each cb gets err (the daemon is stopping). */
void keeper_ctl_abort_all(const struct error *err);

/*
 * Attach: a connected, non-blocking socket (owned) to <state_dir>/attach.sock
 * with the request line sent for the streams wanted (in: the container's
 * stdin; out, errs: its stdout, stderr). What follows on it is the keeper's
 * attach framing (keeper/protocol.h). Errors: FAILED_PRECONDITION (no keeper
 * listening), UNAVAILABLE, INTERNAL.
 */
int keeper_attach_connect(const char *id, const char *state_dir, bool in, bool out, bool errs,
                          struct error **err);

#endif
