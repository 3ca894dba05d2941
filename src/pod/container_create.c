/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CreateContainer and the teardown behind a failed create and a removal:
 * the two multi-step state machines of the container module
 * (container_internal.h). Create mounts the overlay rootfs and seeds the
 * image's volumes in children, writes the bundle, starts the keeper (which
 * runs `runtime create`) and waits for its status line; the container enters
 * the table only once it is CREATED. Teardown deletes the container in the
 * runtime, waits for its keeper, unmounts and removes the directories in a
 * child.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "core/config.h"
#include "core/error.h"
#include "core/id.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/path.h"
#include "core/persist.h"
#include "core/util.h"
#include "image/store.h"
#include "pod/container_internal.h"
#include "pod/keeper_client.h"
#include "pod/oci_spec.h"
#include "pod/runtime.h"
#include "pod/sandbox.h"
#include "pod/volume.h"

#define IMAGE_CONFIG_MAX (4 * 1024 * 1024)
#define STATUS_LINE_MAX 4096
#define CREATE_TIMEOUT_MS (120 * 1000)
#define MOUNT_TIMEOUT_MS (60 * 1000)
#define SEED_TIMEOUT_MS (110 * 1000) /* the create deadline comes first */
#define RM_TIMEOUT_MS (10 * 60 * 1000)
#define KEEPER_EXIT_GRACE_MS 5000
#define MOUNT_DATA_MAX 4000 /* one page, less a margin */

/* ---------------------------------------------------------------------- */
/* teardown: delete in the runtime, wait for the keeper, unmount, remove   */
/* ---------------------------------------------------------------------- */

enum teardown_state {
    TD_DELETE, /* `runtime delete --force` in flight (kills a running container) */
    TD_KEEPER, /* waiting for the keeper to exit; SIGKILL after a grace period */
    TD_REMOVE, /* rootfs unmounted; `rm -rf` of the directories running */
    TD_DONE,
};

struct teardown {
    TAILQ_ENTRY(teardown) link; /* ctrs.teardowns until retired */
    enum teardown_state state;
    char *id;
    char *runtime; /* NULL: nothing to delete in the runtime */
    char *root_dir;
    char *state_dir;
    int keeper_pidfd;          /* until TD_KEEPER watches it; -1: none */
    struct loop_pidfd *keeper; /* TD_KEEPER: the keeper, until it has exited */
    struct loop_timer *timer;
    bool keeper_killed;
    struct runtime_op *op;
    struct child *rm;
    void (*cb)(void *arg);
    void *arg;
};

static void teardown_step(struct teardown *td);

static void teardown_free(void *obj)
{
    struct teardown *td = obj;
    if (!td)
        return;
    free(td->id);
    free(td->runtime);
    free(td->root_dir);
    free(td->state_dir);
    free(td);
}

/* Out of the list, watchers and children gone; the memory goes once the callers return. */
static void teardown_retire(struct teardown *td)
{
    TAILQ_REMOVE(&ctrs.teardowns, td, link);
    loop_pidfd_free(steal_ptr(&td->keeper));
    if (td->keeper_pidfd >= 0)
        close(steal_fd(&td->keeper_pidfd));
    loop_timer_free(td->timer);
    td->timer = NULL;
    runtime_op_cancel(td->op);
    td->op = NULL;
    if (td->rm)
        child_cancel(td->rm);
    td->rm = NULL;
    loop_defer_free(teardown_free, td);
}

static void on_td_deleted(const struct runtime_result *res, void *arg)
{
    struct teardown *td = arg;
    td->op = NULL;
    if (res->err)
        log_warn("runtime delete failed container=%s: %s", td->id, res->err->msg);
    td->state = TD_KEEPER;
    teardown_step(td);
}

static void on_td_keeper_exit(void *arg)
{
    struct teardown *td = arg;
    loop_pidfd_free(steal_ptr(&td->keeper));
    teardown_step(td);
}

static void on_td_timer(void *arg)
{
    struct teardown *td = arg;
    if (td->keeper && !td->keeper_killed) {
        log_warn("keeper still running, killing it container=%s", td->id);
        loop_pidfd_signal(td->keeper, SIGKILL);
        td->keeper_killed = true;
    }
}

static void on_td_removed(const struct child_result *res, void *arg)
{
    struct teardown *td = arg;
    td->rm = NULL;
    if (!res->exited || res->exit_code != 0)
        log_warn("could not remove the directories of container=%s: %.*s", td->id,
                 (int)strcspn(res->err, "\n"), res->err);
    td->state = TD_DONE;
    teardown_step(td);
}

static void teardown_step(struct teardown *td)
{
    _cleanup_error_ struct error *tmp = NULL;
    switch (td->state) {
    case TD_DELETE: /* waiting for `runtime delete` */
        if (td->op)
            return;
        if (td->runtime) {
            td->op = runtime_delete(td->runtime, td->id, on_td_deleted, td, &tmp);
            if (td->op)
                return;
            log_warn("runtime delete not started container=%s: %s", td->id, tmp->msg);
        }
        td->state = TD_KEEPER;
        /* fall through */
    case TD_KEEPER: /* waiting for the keeper's pidfd */
        if (td->keeper)
            return;
        if (td->keeper_pidfd >= 0) {
            int pidfd = steal_fd(&td->keeper_pidfd);
            _cleanup_close_ int spare = fcntl(pidfd, F_DUPFD_CLOEXEC, 3);
            td->keeper = loop_watch_pidfd(pidfd, on_td_keeper_exit, td, &tmp);
            if (td->keeper) {
                td->timer = loop_timer_new(on_td_timer, td);
                loop_timer_arm(td->timer, KEEPER_EXIT_GRACE_MS);
                return;
            }
            log_warn("cannot watch the keeper, killing it container=%s: %s", td->id, tmp->msg);
            error_clear(&tmp);
            if (spare >= 0)
                pidfd_send_signal(spare, SIGKILL, NULL, 0);
        }
        td->state = TD_REMOVE;
        {
            _cleanup_free_ char *rootfs = ctr_path(td->root_dir, "rootfs");
            if (umount2(rootfs, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
                log_warn("umount %s: %s", rootfs, strerror(errno));
            const char *dirs[] = {td->root_dir, td->state_dir};
            td->rm = child_rm_rf(dirs, ARRAY_SIZE(dirs), RM_TIMEOUT_MS, on_td_removed, td, &tmp);
            if (td->rm)
                return;
            log_warn("rm not started container=%s: %s", td->id, tmp->msg);
        }
        td->state = TD_DONE;
        /* fall through */
    case TD_REMOVE: /* waiting for rm */
        if (td->rm)
            return;
        /* fall through */
    case TD_DONE:
        log_debug("container torn down container=%s", td->id);
        teardown_retire(td);
        if (td->cb)
            td->cb(td->arg);
        return;
    }
}

void ctr_teardown_start(const char *id, const char *runtime, int keeper_pidfd,
                        void (*cb)(void *arg), void *arg)
{
    struct teardown *td = xcalloc(1, sizeof(*td));
    td->id = xstrdup(id);
    td->runtime = runtime ? xstrdup(runtime) : NULL;
    td->root_dir = ctr_path(ctrs.records_dir, id);
    td->state_dir = ctr_path(ctrs.states_dir, id);
    td->keeper_pidfd = keeper_pidfd;
    td->cb = cb;
    td->arg = arg;
    td->state = TD_DELETE;
    TAILQ_INSERT_HEAD(&ctrs.teardowns, td, link);
    teardown_step(td);
}

/* ---------------------------------------------------------------------- */
/* create                                                                  */
/* ---------------------------------------------------------------------- */

enum create_state {
    CREATE_MOUNT,   /* the mount child is mounting the overlay rootfs; waiting for it */
    CREATE_VOLUMES, /* the seed child copies the image's content into image volumes; waiting */
    CREATE_KEEPER,  /* the keeper runs `runtime create`; waiting for its status line or exit */
    CREATE_UNDO,    /* failed; the teardown is running, waiting for it */
};

struct create_op {
    TAILQ_ENTRY(create_op) link; /* ctrs.creates until retired */
    enum create_state state;
    struct ctr *c; /* owned until it enters the table */
    json_t *image_config;
    struct child *mount;
    struct child *seed;
    struct error *err; /* why it failed, once it has */
    int status_fd;     /* read end of the keeper's fd 3; -1 once the line is in */
    struct event *status_ev;
    struct buf status;
    struct loop_pidfd *keeper; /* NULL before the keeper runs and once it has exited */
    struct loop_timer *deadline;
    struct container_exit_waiters undo_waiters; /* told when the undo has finished */
    container_created_cb cb;
    void *arg;
};

struct mount_args {
    const char *layers_dir;
    const char *target;
    const char *data;
};

static void create_step(struct create_op *op);

static void create_op_free(void *obj)
{
    struct create_op *op = obj;
    if (!op)
        return;
    buf_free(&op->status);
    json_decref(op->image_config);
    error_free(op->err);
    ctr_free(op->c);
    free(op);
}

/* Out of the list, watchers and children gone; the memory goes once the callers return. */
static void create_op_retire(struct create_op *op)
{
    TAILQ_REMOVE(&ctrs.creates, op, link);
    if (op->status_ev)
        event_free(op->status_ev);
    op->status_ev = NULL;
    if (op->status_fd >= 0)
        close(op->status_fd);
    op->status_fd = -1;
    loop_pidfd_free(steal_ptr(&op->keeper));
    if (op->mount)
        child_cancel(op->mount);
    op->mount = NULL;
    if (op->seed)
        child_cancel(op->seed);
    op->seed = NULL;
    loop_timer_free(op->deadline);
    op->deadline = NULL;
    loop_defer_free(create_op_free, op);
}

/* Tell those waiting for the undo (err NULL: it ran; else why it was cut short). */
static void notify_undo_waiters(struct create_op *op, const struct error *err)
{
    ctr_waiters_notify(&op->undo_waiters, err);
}

/* Record the first failure; later ones are consequences. */
static void create_fail(struct create_op *op, struct error *e)
{
    if (!op->err)
        op->err = e;
    else
        error_free(e);
}

/* In the mount child: overlay with lowerdirs relative to the layers directory. */
static int mount_in_child(void *arg)
{
    const struct mount_args *m = arg;
    if (chdir(m->layers_dir) < 0) {
        dprintf(2, "chdir %s: %s\n", m->layers_dir, strerror(errno));
        _exit(1);
    }
    if (mount("overlay", m->target, "overlay", 0, m->data) < 0) {
        dprintf(2, "mount overlay on %s: %s\n", m->target, strerror(errno));
        _exit(1);
    }
    _exit(0);
}

static void on_mounted(const struct child_result *res, void *arg)
{
    struct create_op *op = arg;
    op->mount = NULL;
    if (!res->exited || res->exit_code != 0) {
        struct error *e = NULL;
        error_set(&e, GRPC_INTERNAL, 0, "mount the rootfs: %.*s", (int)strcspn(res->err, "\n"),
                  res->err_len ? res->err : "the mount child failed");
        create_fail(op, e);
    }
    create_step(op);
}

static int start_mount(struct create_op *op, struct error **err)
{
    struct ctr *c = op->c;
    struct buf data;
    buf_init(&data, MOUNT_DATA_MAX);
    int rc = buf_append(&data, "lowerdir=", 9);
    /* Top layer first. */
    for (size_t i = c->pub.n_layers; i-- > 0 && rc == 0;) {
        const char *colon = strchr(c->pub.chain_ids[i], ':');
        const char *hex = colon ? colon + 1 : c->pub.chain_ids[i];
        if (i != c->pub.n_layers - 1)
            rc = buf_append(&data, ":", 1);
        if (rc == 0)
            rc = buf_append(&data, hex, strlen(hex));
    }
    _cleanup_free_ char *rest =
        xasprintf(",upperdir=%s/upper,workdir=%s/work", c->pub.root_dir, c->pub.root_dir);
    if (rc == 0)
        rc = buf_append(&data, rest, strlen(rest));
    if (rc < 0) {
        buf_free(&data);
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0,
                         "the image has too many layers (%zu) for one overlay mount",
                         c->pub.n_layers);
    }
    _cleanup_free_ char *text = buf_take_str(&data, NULL);
    buf_free(&data);
    _cleanup_free_ char *layers_dir = ctr_path(store_root(ctrs.store), "layers");
    _cleanup_free_ char *target = ctr_rootfs_path(c);
    struct mount_args m = {layers_dir, target, text};
    struct child_opts o = {
        .timeout_ms = MOUNT_TIMEOUT_MS,
    };
    op->mount = child_fork(&o, mount_in_child, &m, on_mounted, op, err);
    return op->mount ? 0 : -1;
}

static void on_seeded(const struct child_result *res, void *arg)
{
    struct create_op *op = arg;
    op->seed = NULL;
    struct error *e = NULL;
    if (child_result_error(res, "seed image volumes", 0, &e) < 0)
        create_fail(op, e);
    create_step(op);
}

/*
 * Seed the image's volumes from the mounted rootfs in a child (pod/volume).
 * Returns 1 when the child runs, 0 when the image declares no volume.
 */
static int start_seed(struct create_op *op, struct error **err)
{
    struct ctr *c = op->c;
    struct oci_spec_volumes vols __attribute__((cleanup(oci_spec_volumes_clear))) = {0};
    if (oci_spec_image_volumes(c->pub.config, op->image_config, &vols, err) < 0)
        return -1;
    if (vols.n == 0)
        return 0;
    _cleanup_free_ char *rootfs = ctr_rootfs_path(c);
    _cleanup_free_ char *volumes = ctr_path(c->pub.root_dir, "volumes");
    struct volume_job job = {rootfs, volumes, vols.paths, vols.names, vols.n};
    struct child_opts o = {
        .timeout_ms = SEED_TIMEOUT_MS,
    };
    op->seed = child_fork(&o, volume_seed_child, &job, on_seeded, op, err);
    return op->seed ? 1 : -1;
}

/*
 * The target container's pid namespace for namespace_options.pid == TARGET:
 * a running container of the same pod (as the CRI asks and containerd checks).
 */
static char *target_pid_ns(const Runtime__V1__ContainerConfig *config, const char *sandbox_id,
                           struct error **err)
{
    const Runtime__V1__LinuxContainerConfig *lc = config->linux;
    const Runtime__V1__NamespaceOption *nso =
        lc && lc->security_context ? lc->security_context->namespace_options : NULL;
    if (!nso || nso->pid != RUNTIME__V1__NAMESPACE_MODE__TARGET)
        return NULL;
    struct ctr *t = ctr_find(nso->target_id);
    if (t && strcmp(t->pub.sandbox_id, sandbox_id) != 0)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "linux.security_context.namespace_options.target_id: container %s "
                         "belongs to another pod",
                         nso->target_id),
               NULL;
    if (!t || t->pub.state != CONTAINER_RUNNING || t->pub.pid <= 0)
        return error_set(err, GRPC_NOT_FOUND, 0, "target container %s is not running",
                         nso->target_id),
               NULL;
    return xasprintf("/proc/%d/ns/pid", t->pub.pid);
}

/* Build config.json into the bundle; *cgroup_path gets linux.cgroupsPath (owned). */
static int write_bundle(struct create_op *op, char **cgroup_path, struct error **err)
{
    struct ctr *c = op->c;
    struct sandbox *sb = sandbox_find(c->pub.sandbox_id);
    if (!sb || strcmp(sb->id, c->pub.sandbox_id) != 0)
        return error_set(err, GRPC_NOT_FOUND, 0, "sandbox %s is gone", c->pub.sandbox_id);
    _cleanup_error_ struct error *terr = NULL;
    _cleanup_free_ char *target = target_pid_ns(c->pub.config, sb->id, &terr);
    if (terr)
        return error_copy(err, terr);
    _cleanup_free_ char *rootfs = ctr_rootfs_path(c);
    _cleanup_free_ char *volumes = ctr_path(c->pub.root_dir, "volumes");
    struct oci_spec_input in = {
        .ctr = c->pub.config,
        .pod = sb->config,
        .image_config = op->image_config,
        .container_id = c->pub.id,
        .sandbox_id = sb->id,
        .rootfs = rootfs,
        .netns_path = sb->netns_path,
        .ipc_ns_path = sb->ipc_path,
        .uts_ns_path = sb->uts_path,
        .pid_ns_path = sb->pid_ns_path,
        .target_pid_ns_path = target,
        .hostname_file = sb->hostname_path,
        .hosts_file = sb->hosts_path,
        .resolv_file = sb->resolv_path,
        .shm_dir = sb->shm_path,
        .cgroup_parent = sb->cgroup_parent && *sb->cgroup_parent ? sb->cgroup_parent : NULL,
        .systemd_cgroup = ctrs.cfg->cgroup_driver == CGROUP_DRIVER_SYSTEMD,
        .volumes_dir = volumes,
    };
    _cleanup_json_ json_t *spec = oci_spec_build(&in, err);
    if (!spec)
        return -1;
    const char *cg =
        json_string_value(json_object_get(json_object_get(spec, "linux"), "cgroupsPath"));
    *cgroup_path = cg && ctrs.cfg->cgroup_driver == CGROUP_DRIVER_CGROUPFS ? xstrdup(cg) : NULL;
    _cleanup_free_ char *text = json_dumps(spec, JSON_COMPACT);
    if (!text)
        return error_set(err, GRPC_INTERNAL, 0, "encode config.json");
    _cleanup_free_ char *path = ctr_path(c->pub.state_dir, "config.json");
    return persist_write(path, text, strlen(text), 0600, err);
}

static void on_status_readable(evutil_socket_t fd, short what, void *arg);
static void on_create_keeper_exit(void *arg);

static int spawn_keeper(struct create_op *op, const char *cgroup_path, struct error **err)
{
    struct ctr *c = op->c;
    const char *rt_path = runtime_handler_path(c->pub.runtime);
    const char *rt_root = runtime_handler_root(c->pub.runtime);
    if (!rt_path)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "runtime handler %s is gone",
                         c->pub.runtime);
    struct keeper_args a = {
        .keeper_path = ctrs.keeper_path,
        .id = c->pub.id,
        .state_dir = c->pub.state_dir,
        .runtime_path = rt_path,
        .runtime_root = rt_root,
        .log_path = c->pub.log_path,
        .cgroup_path = cgroup_path,
        .tty = c->pub.config->tty,
        .stdin_open = c->pub.config->stdin,
        .stdin_once = c->pub.config->stdin_once,
    };
    pid_t pid = 0;
    int pidfd = -1;
    if (keeper_spawn(&a, &pid, &pidfd, &op->status_fd, err) < 0)
        return -1;
    op->keeper = loop_watch_pidfd(pidfd, on_create_keeper_exit, op, err);
    if (!op->keeper) {
        /* Just forked: killed, it is reaped at once. */
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        return error_prefix(err, "watch the keeper");
    }
    c->pub.keeper_pid = pid;
    op->status_ev = loop_event_new(op->status_fd, EV_READ | EV_PERSIST, on_status_readable, op);
    if (event_add(op->status_ev, NULL) < 0)
        return error_set(err, GRPC_INTERNAL, 0, "watch the keeper's status pipe");
    return 0;
}

/* Read the status pipe; the line is in at a newline, EOF, or the cap. */
static void read_status(struct create_op *op)
{
    char chunk[512];
    while (op->status_fd >= 0) {
        ssize_t n = read(op->status_fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        bool done = n <= 0;
        if (n > 0) {
            size_t room = op->status.cap - op->status.len;
            buf_append(&op->status, chunk, (size_t)n < room ? (size_t)n : room);
            done =
                memchr(op->status.data, '\n', op->status.len) || op->status.len == op->status.cap;
        }
        if (done) {
            event_free(op->status_ev);
            op->status_ev = NULL;
            close(op->status_fd);
            op->status_fd = -1;
        }
    }
}

static void on_status_readable(evutil_socket_t fd, short what, void *arg)
{
    struct create_op *op = arg;
    read_status(op);
    create_step(op);
}

static void on_create_keeper_exit(void *arg)
{
    struct create_op *op = arg;
    loop_pidfd_free(steal_ptr(&op->keeper));
    /* Whatever it wrote before exiting is in the pipe now; EOF follows. */
    read_status(op);
    if (op->status_fd >= 0) {
        event_free(op->status_ev);
        op->status_ev = NULL;
        close(op->status_fd);
        op->status_fd = -1;
    }
    create_step(op);
}

static void on_create_deadline(void *arg)
{
    struct create_op *op = arg;
    struct error *e = NULL;
    error_set(&e, GRPC_DEADLINE_EXCEEDED, 0, "creating the container took longer than %ds",
              CREATE_TIMEOUT_MS / 1000);
    create_fail(op, e);
    if (op->keeper)
        loop_pidfd_signal(op->keeper, SIGKILL);
    create_step(op);
}

/* Parse the status line; 0 with the container's pid set on "created pid=N". */
static int parse_status(struct create_op *op, struct error **err)
{
    return keeper_status_parse(op->status.data ? op->status.data : "", op->c->pub.state_dir,
                               &op->c->pub.pid, err);
}

static void on_undone(void *arg)
{
    struct create_op *op = arg;
    log_info("container create failed container=%s: %s", op->c->pub.id, op->err->msg);
    create_op_retire(op);
    op->cb(NULL, op->err, op->arg);
    notify_undo_waiters(op, NULL);
}

/* The container is CREATED: into the table, record written, keeper watched. */
static int create_finish(struct create_op *op, struct error **err)
{
    struct ctr *c = op->c;
    struct sandbox *sb = sandbox_find(c->pub.sandbox_id);
    if (!sb || strcmp(sb->id, c->pub.sandbox_id) != 0)
        return error_set(err, GRPC_NOT_FOUND, 0, "sandbox %s was removed", c->pub.sandbox_id);
    c->pub.state = CONTAINER_CREATED;
    c->pub.created_ns = now_realtime_ns();
    if (ctr_save(c, err) < 0)
        return -1;
    op->c = NULL;
    table_add(&ctrs.table, c);
    /* The container's own watcher takes over the keeper (not when it has exited already). */
    _cleanup_error_ struct error *werr = NULL;
    int pidfd = op->keeper ? loop_pidfd_dup(op->keeper) : -1;
    loop_pidfd_free(steal_ptr(&op->keeper));
    if (pidfd >= 0 && ctr_watch_keeper(c, pidfd, &werr) < 0)
        log_error("container=%s: %s", c->pub.id, werr->msg);
    log_info("container created container=%s sandbox=%s name=%s image=%s runtime=%s pid=%d "
             "keeper=%d",
             c->pub.id, c->pub.sandbox_id, c->pub.config->metadata->name, c->pub.image_ref,
             c->pub.runtime, c->pub.pid, c->pub.keeper_pid);
    ctr_emit(c, CONTAINER_EVENT_CREATED);
    if (!c->keeper)
        ctr_keeper_gone(c);
    return 0;
}

/*
 * Fails the one way (image/pull.c says how): create_fail() keeps the first
 * error; every waiting state waits for its child or keeper first, also after
 * a failure (a killed mount child may still mount, `runtime delete` must not
 * overtake `runtime create`), then breaks on op->err; below the switch the
 * undo (the teardown) takes over, and the caller hears of it once it is done.
 */
static void create_step(struct create_op *op)
{
    _cleanup_free_ char *cgroup_path = NULL;
    struct error *e = NULL;
    switch (op->state) {
    case CREATE_MOUNT: /* waiting for the mount child, also after a failure: killed, it may still
                          mount */
        if (op->mount)
            return;
        if (op->err)
            break;
        op->state = CREATE_VOLUMES;
        {
            int seeding = start_seed(op, &e);
            if (seeding < 0) {
                create_fail(op, e);
                break;
            }
            if (seeding)
                return;
        }
        /* fall through */
    case CREATE_VOLUMES: /* waiting for the seed child; after a failure, for it to be killed
                            (nothing may write into the volumes once the undo removes them) */
        if (op->seed) {
            if (op->err)
                child_signal(op->seed, SIGKILL);
            return;
        }
        if (op->err)
            break;
        if (write_bundle(op, &cgroup_path, &e) < 0 || spawn_keeper(op, cgroup_path, &e) < 0) {
            create_fail(op, e);
            break;
        }
        op->state = CREATE_KEEPER;
        /* fall through */
    case CREATE_KEEPER: /* waiting for the status line (or the keeper's exit), also after a failure:
                           `runtime delete` must not overtake `runtime create` */
        if (op->status_fd >= 0)
            return;
        if (op->err)
            break;
        {
            _cleanup_free_ char *id = xstrdup(op->c->pub.id);
            if (parse_status(op, &e) < 0 || create_finish(op, &e) < 0) {
                create_fail(op, e);
                break;
            }
            create_op_retire(op);
            op->cb(id, NULL, op->arg);
        }
        return;
    case CREATE_UNDO: /* waiting for the teardown */
        return;
    }
    /* Failed: undo. A keeper still running is killed by the runtime delete or the grace timer. */
    op->state = CREATE_UNDO;
    loop_timer_disarm(op->deadline);
    if (op->mount) {
        child_cancel(op->mount);
        op->mount = NULL;
    }
    if (op->status_ev) {
        event_free(op->status_ev);
        op->status_ev = NULL;
    }
    int pidfd = op->keeper ? loop_pidfd_dup(op->keeper) : -1;
    loop_pidfd_free(steal_ptr(&op->keeper));
    ctr_teardown_start(op->c->pub.id,
                       pidfd >= 0 || op->c->pub.keeper_pid > 0 ? op->c->pub.runtime : NULL, pidfd,
                       on_undone, op);
}

static bool name_taken(const char *sandbox_id, const Runtime__V1__ContainerMetadata *m)
{
    for (size_t i = 0; i < ctrs.table.n; i++) {
        const struct ctr *c = ctr_at(i);
        if (strcmp(c->pub.sandbox_id, sandbox_id) == 0 &&
            strcmp(c->pub.config->metadata->name, m->name) == 0 &&
            c->pub.config->metadata->attempt == m->attempt)
            return true;
    }
    const struct create_op *op;
    TAILQ_FOREACH (op, &ctrs.creates, link) {
        const struct ctr *c = op->c;
        if (c && strcmp(c->pub.sandbox_id, sandbox_id) == 0 &&
            strcmp(c->pub.config->metadata->name, m->name) == 0 &&
            c->pub.config->metadata->attempt == m->attempt)
            return true;
    }
    return false;
}

static Runtime__V1__ContainerConfig *config_dup(const Runtime__V1__ContainerConfig *config)
{
    size_t len = protobuf_c_message_get_packed_size(&config->base);
    _cleanup_free_ uint8_t *buf = xmalloc(len ? len : 1);
    protobuf_c_message_pack(&config->base, buf);
    Runtime__V1__ContainerConfig *copy = runtime__v1__container_config__unpack(NULL, len, buf);
    assert_state(copy != NULL);
    return copy;
}

static json_t *image_config_json(const struct store_image *img, struct error **err)
{
    _cleanup_free_ char *path = store_blob_path(ctrs.store, img->id);
    size_t len = 0;
    _cleanup_free_ char *text = read_file_capped(path, IMAGE_CONFIG_MAX, &len, err);
    if (!text)
        return error_prefix(err, "image config of %s", img->id), NULL;
    json_error_t jerr;
    json_t *j = json_loadb(text, len, 0, &jerr);
    if (!json_is_object(j)) {
        json_decref(j);
        return error_set(err, GRPC_INTERNAL, 0, "image config of %s: %s", img->id, jerr.text), NULL;
    }
    return j;
}

/*
 * The log file <log_dir>/<log_path> must be a path the keeper can open: no
 * control characters (a newline in a file name), at most PATH_MAX - 1 bytes
 * in all and NAME_MAX per component (ENAMETOOLONG was an INTERNAL error).
 */
static int check_log_path(const char *log_dir, const char *log_path, struct error **err)
{
    if (!log_path || !*log_path || !log_dir || !*log_dir)
        return 0;
    if (path_has_control(log_path))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "config.log_path has a control character");
    size_t total = strlen(log_dir) + 1 + strlen(log_path);
    if (total >= PATH_MAX)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "config.log_path: the log file path would be %zu bytes long (max %d)",
                         total, PATH_MAX - 1);
    if (path_longest_component(log_path) > NAME_MAX)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "config.log_path has a name longer than %d bytes", NAME_MAX);
    return 0;
}

int container_create(const char *sandbox_id, const Runtime__V1__ContainerConfig *config,
                     container_created_cb cb, void *arg, struct error **err)
{
    if (!config || !config->metadata || !config->metadata->name || !*config->metadata->name)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "container config with metadata.name is "
                         "required");
    if (!config->image || !config->image->image || !*config->image->image)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "container config has no image");
    struct sandbox *sb = sandbox_find(sandbox_id);
    if (!sb)
        return error_set(err, GRPC_NOT_FOUND, 0, "sandbox %s not found",
                         sandbox_id ? sandbox_id : "");
    if (sb->state != SANDBOX_READY)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "sandbox %s is not ready", sb->id);
    if (ctr_sandbox_is_stopping(sb->id))
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "pod sandbox %s is being stopped",
                         sb->id);
    const char *reason = NULL;
    const char *handler = runtime_handler_name(sb->runtime_handler);
    if (!runtime_handler_usable(sb->runtime_handler, &reason))
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "runtime handler %s: %s",
                         handler ? handler : sb->runtime_handler, reason);
    if (name_taken(sb->id, config->metadata))
        return error_set(err, GRPC_ALREADY_EXISTS, 0,
                         "a container named %s (attempt %u) already exists in sandbox %s",
                         config->metadata->name, config->metadata->attempt, sb->id);
    const struct store_image *img = store_image_find(ctrs.store, config->image->image);
    if (!img)
        return error_set(err, GRPC_NOT_FOUND, 0, "image %s not found", config->image->image);
    for (size_t i = 0; i < img->n_layers; i++) {
        if (!store_has_layer(ctrs.store, img->chain_ids[i]))
            return error_set(err, GRPC_FAILED_PRECONDITION, 0, "layer %s of image %s is missing",
                             img->chain_ids[i], img->id);
    }
    const char *log_dir = sb->config ? sb->config->log_directory : NULL;
    if (log_dir && *log_dir && log_dir[0] != '/')
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "log directory %s is not absolute",
                         log_dir);
    if (config->log_path && path_has_dotdot(config->log_path))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "log path %s has a \"..\" component",
                         config->log_path);
    if (check_log_path(log_dir, config->log_path, err) < 0)
        return -1;
    int sig = ctr_cri_signal(config->stop_signal);
    if (config->stop_signal != RUNTIME__V1__SIGNAL__RUNTIME_DEFAULT && sig <= 0)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "config.stop_signal %d is not a signal",
                         (int)config->stop_signal);
    _cleanup_json_ json_t *image_config = image_config_json(img, err);
    if (!image_config)
        return -1;

    char id[ID_LEN + 1];
    if (id_new(id, err) < 0)
        return -1;
    struct ctr *c = ctr_new(id);
    c->pub.sandbox_id = xstrdup(sb->id);
    c->pub.config = config_dup(config);
    c->pub.image_ref = xstrdup(config->image->image);
    c->pub.image_id = xstrdup(img->id);
    c->pub.n_layers = img->n_layers;
    c->pub.chain_ids = xcalloc(img->n_layers ? img->n_layers : 1, sizeof(char *));
    for (size_t i = 0; i < img->n_layers; i++)
        c->pub.chain_ids[i] = xstrdup(img->chain_ids[i]);
    c->pub.runtime = xstrdup(handler);
    if (sig <= 0) {
        const json_t *ic = json_object_get(image_config, "config");
        sig = runtime_signal_parse(json_string_value(json_object_get(ic, "StopSignal")));
    }
    c->pub.stop_signal = sig > 0 ? sig : SIGTERM;
    if (log_dir && *log_dir && config->log_path && *config->log_path) {
        free(c->pub.log_path);
        c->pub.log_path = xasprintf("%s/%s", log_dir, config->log_path);
    }

    struct create_op *op = xcalloc(1, sizeof(*op));
    op->c = c;
    op->state = CREATE_MOUNT;
    op->status_fd = -1;
    buf_init(&op->status, STATUS_LINE_MAX);
    op->image_config = json_incref(image_config);
    op->cb = cb;
    op->arg = arg;
    TAILQ_INIT(&op->undo_waiters);
    TAILQ_INSERT_HEAD(&ctrs.creates, op, link);

    const char *sub[] = {"upper", "work", "rootfs"};
    int rc = mkdir(c->pub.root_dir, 0700) < 0
                 ? error_set(err, GRPC_INTERNAL, errno, "mkdir %s", c->pub.root_dir)
                 : 0;
    for (size_t i = 0; i < ARRAY_SIZE(sub) && rc == 0; i++) {
        _cleanup_free_ char *p = ctr_path(c->pub.root_dir, sub[i]);
        if (mkdir(p, i == 1 ? 0700 : 0755) < 0)
            rc = error_set(err, GRPC_INTERNAL, errno, "mkdir %s", p);
    }
    if (rc == 0 && mkdir(c->pub.state_dir, 0700) < 0)
        rc = error_set(err, GRPC_INTERNAL, errno, "mkdir %s", c->pub.state_dir);
    if (rc == 0 && *c->pub.log_path) {
        _cleanup_free_ char *dir = xstrdup(c->pub.log_path);
        *strrchr(dir, '/') = '\0';
        if (*dir)
            rc = mkdir_p(dir, 0755, err);
    }
    if (rc == 0)
        rc = start_mount(op, err);
    if (rc < 0) {
        /* Nothing runs yet: remove what was made, in the background. */
        ctr_teardown_start(c->pub.id, NULL, -1, NULL, NULL);
        create_op_retire(op);
        return -1;
    }
    op->deadline = loop_timer_new(on_create_deadline, op);
    loop_timer_arm(op->deadline, CREATE_TIMEOUT_MS);
    log_debug("container create started container=%s sandbox=%s name=%s", c->pub.id,
              c->pub.sandbox_id, c->pub.config->metadata->name);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* what container.c asks of creates and teardowns                          */
/* ---------------------------------------------------------------------- */

bool ctr_teardown_running(const char *id)
{
    const struct teardown *td;
    TAILQ_FOREACH (td, &ctrs.teardowns, link) {
        if (strcmp(td->id, id) == 0)
            return true;
    }
    return false;
}

void ctr_creates_fail(const char *sandbox_id, const char *doing, container_done_cb undone,
                      void *arg, size_t *held)
{
    /* Collect ids first: a failure may finish synchronously and run callbacks. */
    size_t n = 0, alloc = 0;
    _cleanup_free_ char **ids = NULL;
    const struct create_op *cop;
    TAILQ_FOREACH (cop, &ctrs.creates, link) {
        if (strcmp(cop->c->pub.sandbox_id, sandbox_id) != 0)
            continue;
        if (n == alloc) {
            alloc = alloc ? 2 * alloc : 8;
            ids = xrealloc(ids, alloc * sizeof(char *));
        }
        ids[n++] = xstrdup(cop->c->pub.id);
    }
    for (size_t i = 0; i < n; i++) {
        struct create_op *op;
        TAILQ_FOREACH (op, &ctrs.creates, link) {
            if (strcmp(op->c->pub.id, ids[i]) == 0)
                break;
        }
        free(ids[i]);
        if (!op)
            continue;
        if (undone) {
            struct container_exit_waiter *w = xcalloc(1, sizeof(*w));
            w->cb = undone;
            w->arg = arg;
            TAILQ_INSERT_HEAD(&op->undo_waiters, w, link);
            (*held)++;
        }
        if (op->err)
            continue; /* already undoing, or about to */
        struct error *e = NULL;
        error_set(&e, GRPC_FAILED_PRECONDITION, 0, "pod sandbox %s is being %s", sandbox_id, doing);
        create_fail(op, e);
        create_step(op);
    }
}

bool ctr_creates_use(const char *key)
{
    const struct create_op *op;
    TAILQ_FOREACH (op, &ctrs.creates, link) {
        if (op->c && ctr_uses(op->c, key))
            return true;
    }
    return false;
}

void ctr_creates_shutdown(const struct error *err)
{
    struct teardown *td;
    while ((td = TAILQ_FIRST(&ctrs.teardowns))) {
        /* A failed create's undo: the create op below answers for it. */
        void (*cb)(void *) = td->cb == on_undone ? NULL : td->cb;
        void *arg = td->arg;
        teardown_retire(td);
        if (cb)
            cb(arg);
    }
    struct create_op *op;
    while ((op = TAILQ_FIRST(&ctrs.creates))) {
        /* Its keeper keeps running; the next start removes the leftovers. */
        create_op_retire(op);
        op->cb(NULL, err, op->arg);
        notify_undo_waiters(op, err);
    }
}
