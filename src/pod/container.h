/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Containers: the objects, their lifecycle, and the operations that move
 * them (create, start, stop, remove, exec, log reopen).
 *
 * Lifecycle (one enum, container_set_state() checks every transition and
 * persists the record):
 *   CREATED -> RUNNING -> EXITED, CREATED -> EXITED, CREATED/RUNNING -> UNKNOWN
 *   (keeper gone without an exit record), UNKNOWN -> EXITED (stopped).
 * A container being created is not in the table yet: it appears, CREATED,
 * once its keeper reported "created".
 *
 * Layout:
 *   <root_dir>/containers/<id>.json           the record (persist_write on every change)
 *   <root_dir>/containers/<id>/rootfs         overlay: image layers + upper/work
 *   <root_dir>/containers/<id>/{upper,work}   the writable layer
 *   <root_dir>/containers/<id>/volumes/       image-declared volumes
 *   <state_dir>/ctr/<id>/                     bundle (config.json) and the keeper's
 *                                             state: pid, keeper.json, exit.json, ctl.sock
 * The per-container state directory is "ctr/<id>" rather than "containers/<id>"
 * so the keeper's control socket path fits in a sockaddr_un with the usual
 * state dirs (the keeper needs <state-dir>/console.sock to fit 107 bytes).
 *
 * Each container has a tinycri-keeper (src/keeper/keeper.c), started
 * detached so it outlives tinycrid: it runs `<runtime> create`, holds the
 * container's stdio, writes the CRI log and exit.json. The daemon watches
 * the keeper through a pidfd; its exit means the container has exited.
 * After a restart, container_init() re-watches live keepers (checked by
 * their /proc cmdline) and records exits that happened meanwhile.
 *
 * Every operation takes a callback that runs exactly once, on the loop and
 * never inside the call that started it, unless the function fails at once
 * (returns -1 with *err set; then the callback never runs).
 */
#ifndef TINYCRI_POD_CONTAINER_H
#define TINYCRI_POD_CONTAINER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.pb-c.h"
#include "pod/sandbox.h"

struct config;
struct error;
struct store;

enum container_state {
    CONTAINER_CREATED,
    CONTAINER_RUNNING,
    CONTAINER_EXITED,
    CONTAINER_UNKNOWN,
};

struct container {
    char *id; /* 64 lowercase hex */
    char *sandbox_id;
    Runtime__V1__ContainerConfig *config; /* owned (unpacked copy) */
    char *image_ref;                      /* the image as the request named it */
    char *image_id;                       /* "sha256:<config digest>" */
    char **chain_ids;                     /* its layers (claimed against image GC) */
    size_t n_layers;
    char *runtime; /* runtime handler name (resolved) */
    enum container_state state;
    int64_t created_ns;
    int64_t started_ns;
    int64_t finished_ns;
    int exit_code;
    char *reason; /* "Completed", "Error", "OOMKilled", "StartError", ... */
    char *message;
    char *log_path;  /* full path; "" when the pod has no log directory */
    int stop_signal; /* from the config, the image, or SIGTERM */
    int pid;         /* the container's init (host pid namespace) */
    int keeper_pid;
    char *root_dir;  /* <root_dir>/containers/<id> */
    char *state_dir; /* <state_dir>/ctr/<id> */
};

typedef void (*container_done_cb)(const struct error *err, void *arg);
typedef void (*container_created_cb)(const char *id, const struct error *err, void *arg);

struct container_exec_result {
    int exit_code;
    const char *out;
    size_t out_len;
    const char *err;
    size_t err_len;
    bool out_truncated; /* the stream went past the cap; out holds its first bytes */
    bool err_truncated;
};
typedef void (*container_exec_cb)(const struct container_exec_result *res, const struct error *err,
                                  void *arg);

/*
 * Load the records and reconcile them with live keepers; clean what an
 * interrupted create or remove left behind. Call once after runtime_init()
 * and before sandbox_init(). store is borrowed for the daemon's life.
 */
int container_init(const struct config *cfg, struct store *store, struct error **err);
/* Free the objects; keepers and containers keep running. */
void container_shutdown(void);

/* Lookup by full id or unique prefix (borrowed; valid until the loop turn ends). */
struct container *container_find(const char *id_or_prefix);
/* Iterate: the i-th container or NULL past the end. */
struct container *container_at(size_t i);

const char *container_state_name(enum container_state s);

/* The lifecycle's transition table: may a container go from `from` to `to`? */
bool container_transition_ok(enum container_state from, enum container_state to);

/*
 * Move c to state s (with the fields already updated by the caller) and
 * persist the record. An illegal transition is refused with
 * FAILED_PRECONDITION and changes nothing.
 */
int container_set_state(struct container *c, enum container_state s, struct error **err);

/*
 * CreateContainer. Validates (sandbox: NOT_FOUND / FAILED_PRECONDITION when
 * not ready; handler unusable: FAILED_PRECONDITION; image not in the store:
 * NOT_FOUND; same name and attempt in the pod: ALREADY_EXISTS; bad config:
 * INVALID_ARGUMENT), then mounts the rootfs, writes the bundle and starts the
 * keeper. cb gets the new id once the container is CREATED. On any failure
 * everything done is undone (no mount, directory or record is left) before
 * cb runs.
 */
int container_create(const char *sandbox_id, const Runtime__V1__ContainerConfig *config,
                     container_created_cb cb, void *arg, struct error **err);

/* StartContainer: CREATED -> RUNNING. NOT_FOUND, FAILED_PRECONDITION in another state. */
int container_start(const char *id, container_done_cb cb, void *arg, struct error **err);

/*
 * StopContainer: the stop signal, then SIGKILL after timeout_s (0: SIGKILL at
 * once); cb when EXITED. Done (cb on the next loop turn) for an EXITED
 * container, and for a CREATED one not being started (it stays CREATED).
 * NOT_FOUND.
 */
int container_stop(const char *id, int64_t timeout_s, container_done_cb cb, void *arg,
                   struct error **err);

/*
 * RemoveContainer: force-stop, runtime delete, unmount, remove the
 * directories and the record. An unknown id is not an error (cb on the next
 * loop turn).
 */
int container_remove(const char *id, container_done_cb cb, void *arg, struct error **err);

/*
 * ExecSync: run cmd in the running container. timeout_s 0: none; past it the
 * process is killed and cb gets DEADLINE_EXCEEDED. Each of stdout and stderr
 * keeps at most out_cap bytes; the rest is dropped (silently, as containerd
 * does), so the daemon never holds more than 2 * out_cap for one exec.
 */
int container_exec_sync(const char *id, char *const *cmd, size_t n_cmd, int64_t timeout_s,
                        size_t out_cap, container_exec_cb cb, void *arg, struct error **err);

/*
 * Exec for the streaming server: cmd in the running container with the
 * caller's stdio (borrowed; the caller closes its copies once this returns).
 * Without tty, stdio holds the process's stdin (-1: /dev/null), stdout and
 * stderr. With tty, all three are the slave of a pty whose master the caller
 * keeps: the OCI runtime relays it to the container's own terminal, and a
 * size set on it (TIOCSWINSZ) reaches the container. cb gets the exit code
 * (128 + signal for a killed process) and no output, or an error; it does
 * not run after container_exec_cancel(arg). Errors as for ExecSync.
 */
int container_exec_stream(const char *id, char *const *cmd, size_t n_cmd, bool tty,
                          const int stdio[3], container_exec_cb cb, void *arg, struct error **err);

/*
 * The caller of an ExecSync or a streaming exec went away: kill the exec (found by the arg given
 * to container_exec_sync()); its callback will not run. No-op when done.
 */
void container_exec_cancel(void *arg);

/* ReopenContainerLog: FAILED_PRECONDITION unless RUNNING; asks the keeper to reopen. */
int container_reopen_log(const char *id, container_done_cb cb, void *arg, struct error **err);

/*
 * Attach: a connected, non-blocking socket (owned) to the container's keeper
 * attach socket, the request for its stdin (in), stdout (out) and stderr
 * (errs; never with a terminal) sent: what follows is the keeper's attach
 * framing (keeper/protocol.h). *tty tells whether the container has a
 * terminal. NOT_FOUND, FAILED_PRECONDITION unless RUNNING.
 */
int container_attach_connect(const char *id, bool in, bool out, bool errs, bool *tty,
                             struct error **err);

/*
 * Resize the container's terminal: the keeper is asked and nobody waits for
 * its answer (a failure shows in the debug log). NOT_FOUND,
 * FAILED_PRECONDITION without a terminal or unless RUNNING.
 */
int container_resize(const char *id, uint16_t cols, uint16_t rows, struct error **err);

/*
 * Verbose ContainerStatus info (owned JSON text): ids, pids, runtime, paths, and
 * "sandboxID", "pid" and "runtimeSpec" (the bundle's config.json, when readable)
 * as containerd and CRI-O name them.
 */
char *container_info_json(const struct container *c);

/* Does a container use this image id or layer chain id? (image GC claims) */
bool container_uses(const char *key);

/*
 * Lifecycle events, told to listeners on the loop as they happen: CREATED
 * once the container is in the table, STARTED when it becomes RUNNING,
 * STOPPED when it becomes EXITED, DELETED once it has left the table (c is
 * still readable during the call). Listeners must not change containers.
 * Up to CONTAINER_EVENT_LISTENERS; for the daemon's life.
 */
enum container_event {
    CONTAINER_EVENT_CREATED,
    CONTAINER_EVENT_STARTED,
    CONTAINER_EVENT_STOPPED,
    CONTAINER_EVENT_DELETED,
};
#define CONTAINER_EVENT_LISTENERS 4
typedef void (*container_event_cb)(const struct container *c, enum container_event ev, void *arg);
void container_add_event_listener(container_event_cb cb, void *arg);

/*
 * Replace a container's resources (UpdateContainerResources, after the
 * runtime applied them) and persist the record; r is copied. NOT_FOUND.
 */
int container_set_resources(const char *id, const Runtime__V1__LinuxContainerResources *r,
                            struct error **err);

/* What the sandbox module calls (src/pod/sandbox.h). */
extern const struct sandbox_container_hooks container_sandbox_hooks;

#endif
