/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the files of the container module share, and nobody else sees:
 * container.c (objects, records, the lifecycle, start/stop/remove, exec,
 * queries, the sandbox hooks, start-up) and container_create.c (the create
 * machine and the teardown machine). The keeper protocol's client side is
 * its own module (keeper_client.h).
 *
 * Module state follows the sandbox module's pattern: each object is a
 * private struct ctr whose first member is the public struct container
 * callers see, and the module's state is one struct (ctrs) owned by
 * container.c.
 */
#ifndef TINYCRI_POD_CONTAINER_INTERNAL_H
#define TINYCRI_POD_CONTAINER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "core/table.h"
#include "pod/container.h"

struct config;
struct error;
struct loop_pidfd;
struct loop_timer;
struct runtime_op;
struct store;

#define EXIT_CODE_UNKNOWN 255
#define EXIT_CODE_START_ERROR 128

/* Someone waiting for an event (an exit, an undo); told once. */
struct container_exit_waiter {
    TAILQ_ENTRY(container_exit_waiter) link;
    container_done_cb cb;
    void *arg;
};
TAILQ_HEAD(container_exit_waiters, container_exit_waiter);

/*
 * StopContainer, one state per container (never parallel booleans). A
 * container is not being stopped in STOP_NONE; the others end when it is
 * EXITED (or the stop failed), which tells every waiter.
 */
enum ctr_stop {
    STOP_NONE,      /* no stop in progress */
    STOP_SIGNALLED, /* the stop signal was sent; the grace timer runs, then STOP_KILLING */
    STOP_KILLING,   /* SIGKILL was sent; waiting for the keeper to report the exit */
    STOP_DELETING,  /* UNKNOWN: `runtime delete` runs; then EXITED */
};

struct ctr {
    struct container pub;        /* first: callers get &c->pub */
    struct loop_pidfd *keeper;   /* watches the keeper; NULL once it has exited */
    struct runtime_op *start_op; /* `runtime start` in flight */
    enum ctr_stop stop;
    struct loop_timer *kill_timer;         /* STOP_SIGNALLED's grace period */
    int64_t kill_at_ns;                    /* monotonic; when the grace period ends */
    struct container_exit_waiters waiters; /* told when the stop ends */
    bool runtime_released; /* `runtime delete` after the exit succeeded: removal skips it */
};

struct create_op;
struct teardown;
struct exec_op;
struct stop_group;

struct ctr_module {
    const struct config *cfg;
    struct store *store;
    char *records_dir; /* <root_dir>/containers */
    char *states_dir;  /* <state_dir>/ctr */
    char *keeper_path;
    struct table table; /* struct ctr, in creation order */
    TAILQ_HEAD(, create_op) creates;
    TAILQ_HEAD(, teardown) teardowns;
    TAILQ_HEAD(, exec_op) execs;
    TAILQ_HEAD(, stop_group) stops; /* sandboxes whose stop_all is running */
    uint64_t exec_seq;
};
extern struct ctr_module ctrs;

/* ---- container.c ---- */

struct ctr *ctr_new(const char *id);
/* Free now; only for objects no callback can be using (else through loop_defer_free). */
void ctr_free(void *obj);
struct ctr *ctr_find(const char *id_or_prefix);
struct ctr *ctr_at(size_t i);
/* container_set_state() on the object. */
int ctr_set_state(struct ctr *c, enum container_state s, struct error **err);
char *ctr_path(const char *dir, const char *name);
char *ctr_rootfs_path(const struct ctr *c);
void ctr_set_str(char **field, const char *value);
/* A Signal enum value of the CRI as a signal number; -1 when none. */
int ctr_cri_signal(int value);
int ctr_save(const struct ctr *c, struct error **err);
/* Watch the keeper through pidfd (taken, also on failure). */
int ctr_watch_keeper(struct ctr *c, int pidfd, struct error **err);
/* The keeper is gone: record the exit (or that we do not know it). */
void ctr_keeper_gone(struct ctr *c);
/* Is a StopPodSandbox running for this sandbox? (creates are refused then) */
bool ctr_sandbox_is_stopping(const char *sandbox_id);
/* Tell each waiter of list (emptied) and free it. */
void ctr_waiters_notify(struct container_exit_waiters *list, const struct error *err);
/* cb(err, arg) on the loop, after the current callback: never inside the call that asks. */
void ctr_defer_done(container_done_cb cb, const struct error *err, void *arg);
/* Tell the event listeners (container_add_event_listener()) about c. */
void ctr_emit(const struct ctr *c, enum container_event ev);

/* ---- container_create.c ---- */

/*
 * Undo everything a container may have: runtime state (runtime may be
 * NULL), the keeper (pidfd taken; -1: none), the rootfs mount, both
 * directories. cb (may be NULL) runs when done.
 */
void ctr_teardown_start(const char *id, const char *runtime, int keeper_pidfd,
                        void (*cb)(void *arg), void *arg);
/* Is a teardown of id running? */
bool ctr_teardown_running(const char *id);
/*
 * Fail the creates of the sandbox still in flight with FAILED_PRECONDITION
 * ("pod sandbox <id> is being <doing>"); each finishes through its undo. With
 * undone set, each of them, also one already undoing, calls undone(NULL, arg)
 * once its undo has finished; *held counts those calls to come.
 */
void ctr_creates_fail(const char *sandbox_id, const char *doing, container_done_cb undone,
                      void *arg, size_t *held);
/* Whether c's rootfs is built from key (an image id or a layer's chain id). */
bool ctr_uses(const struct ctr *c, const char *key);
/* Does a create in flight use this image id or layer chain id? */
bool ctr_creates_use(const char *key);
/* The daemon stops: teardowns are dropped, creates answer err; keepers keep running. */
void ctr_creates_shutdown(const struct error *err);

#endif
