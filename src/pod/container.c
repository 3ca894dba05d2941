/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Containers behind container.h: the table, the records, the keeper
 * watchers, and one state machine per multi-step operation (create and the
 * teardown shared by failed creates and removals). Runtime calls, the
 * overlay mount and directory removal run in children; the daemon only
 * forks the keeper itself, because the keeper must outlive it.
 */
#include "autoconf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "core/base64.h"
#include "core/config.h"
#include "core/error.h"
#include "core/id.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/path.h"
#include "core/pb_json.h"
#include "core/persist.h"
#include "core/table.h"
#include "core/util.h"
#include "image/store.h"
#include "keeper/protocol.h"
#include "pod/container.h"
#include "pod/container_internal.h"
#include "pod/keeper_client.h"
#include "pod/oci_spec.h"
#include "pod/runtime.h"
#include "pod/sandbox.h"
#include "pod/volume.h"

extern char **environ;

#define RECORD_MAX (4 * 1024 * 1024)
#define BUNDLE_CONFIG_MAX (4 * 1024 * 1024)
#define REOPEN_TIMEOUT_MS 5000
#define RESIZE_TIMEOUT_MS 5000
#define EXIT_CODE_UNKNOWN 255
/* A sane cap; container sockets do not depend on it (see container_reopen_log). */
#define STATE_DIR_MAX 512
#define EXIT_CODE_START_ERROR 128

struct ctr_module ctrs;

/* ---------------------------------------------------------------------- */
void ctr_set_str(char **field, const char *value)
{
    char *v = xstrdup(value ? value : "");
    free(*field);
    *field = v;
}

const char *container_state_name(enum container_state s)
{
    switch (s) {
    case CONTAINER_CREATED:
        return "CREATED";
    case CONTAINER_RUNNING:
        return "RUNNING";
    case CONTAINER_EXITED:
        return "EXITED";
    case CONTAINER_UNKNOWN:
        return "UNKNOWN";
    }
    return "?";
}

static int state_parse(const char *s, enum container_state *out)
{
    for (int i = CONTAINER_CREATED; i <= CONTAINER_UNKNOWN; i++) {
        if (s && strcmp(s, container_state_name((enum container_state)i)) == 0) {
            *out = (enum container_state)i;
            return 0;
        }
    }
    return -1;
}

/* A Signal enum value of the CRI ("SIGRTMINPLUS3") as a signal number; -1 when none. */
int ctr_cri_signal(int value)
{
    if (value == RUNTIME__V1__SIGNAL__RUNTIME_DEFAULT)
        return -1;
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&runtime__v1__signal__descriptor, value);
    if (!v)
        return -1;
    if (str_has_prefix(v->name, "SIGRTMINPLUS"))
        return SIGRTMIN + atoi(v->name + strlen("SIGRTMINPLUS"));
    if (str_has_prefix(v->name, "SIGRTMAXMINUS"))
        return SIGRTMAX - atoi(v->name + strlen("SIGRTMAXMINUS"));
    return runtime_signal_parse(v->name);
}

char *ctr_path(const char *dir, const char *name)
{
    return xasprintf("%s/%s", dir, name);
}

static char *ctr_record_path(const char *id)
{
    return xasprintf("%s/%s.json", ctrs.records_dir, id);
}

char *ctr_rootfs_path(const struct ctr *c)
{
    return ctr_path(c->pub.root_dir, "rootfs");
}

/* ---------------------------------------------------------------------- */
/* objects and the table                                                   */
/* ---------------------------------------------------------------------- */

static void waiters_free(struct container_exit_waiters *list)
{
    struct container_exit_waiter *w;
    while ((w = TAILQ_FIRST(list))) {
        TAILQ_REMOVE(list, w, link);
        free(w);
    }
}

/* Move every waiter of from into to (from is empty afterwards). */
static void waiters_take(struct container_exit_waiters *to, struct container_exit_waiters *from)
{
    TAILQ_INIT(to);
    TAILQ_CONCAT(to, from, link);
}

/* Tell each waiter of list, newest first, and free it. */
void ctr_waiters_notify(struct container_exit_waiters *list, const struct error *err)
{
    struct container_exit_waiter *w;
    while ((w = TAILQ_FIRST(list))) {
        TAILQ_REMOVE(list, w, link);
        w->cb(err, w->arg);
        free(w);
    }
}

struct deferred_done {
    container_done_cb cb;
    void *arg;
    struct error *err;
};

static void run_deferred_done(void *obj)
{
    struct deferred_done *d = obj;
    d->cb(d->err, d->arg);
    error_free(d->err);
    free(d);
}

void ctr_defer_done(container_done_cb cb, const struct error *err, void *arg)
{
    struct deferred_done *d = xcalloc(1, sizeof(*d));
    d->cb = cb;
    d->arg = arg;
    d->err = error_dup(err);
    loop_defer(run_deferred_done, d);
}

struct ctr *ctr_new(const char *id)
{
    struct ctr *c = xcalloc(1, sizeof(*c));
    c->pub.id = xstrdup(id);
    TAILQ_INIT(&c->waiters);
    c->pub.root_dir = ctr_path(ctrs.records_dir, id);
    c->pub.state_dir = ctr_path(ctrs.states_dir, id);
    c->pub.reason = xstrdup("");
    c->pub.message = xstrdup("");
    c->pub.log_path = xstrdup("");
    c->pub.stop_signal = SIGTERM;
    return c;
}

static void ctr_unwatch_keeper(struct ctr *c)
{
    loop_pidfd_free(steal_ptr(&c->keeper));
}

void ctr_free(void *obj)
{
    struct ctr *c = obj;
    if (!c)
        return;
    ctr_unwatch_keeper(c);
    loop_timer_free(c->kill_timer);
    waiters_free(&c->waiters);
    free(c->pub.id);
    free(c->pub.sandbox_id);
    if (c->pub.config)
        protobuf_c_message_free_unpacked(&c->pub.config->base, NULL);
    free(c->pub.image_ref);
    free(c->pub.image_id);
    for (size_t i = 0; i < c->pub.n_layers; i++)
        free(c->pub.chain_ids[i]);
    free(c->pub.chain_ids);
    free(c->pub.runtime);
    free(c->pub.reason);
    free(c->pub.message);
    free(c->pub.log_path);
    free(c->pub.root_dir);
    free(c->pub.state_dir);
    free(c);
}

static const char *ctr_id(const void *item)
{
    return ((const struct ctr *)item)->pub.id;
}

/* The object behind a public pointer (pub is its first member). */
static struct ctr *ctr_of(struct container *pub)
{
    return (struct ctr *)pub;
}

struct ctr *ctr_at(size_t i)
{
    return table_at(&ctrs.table, i);
}

struct ctr *ctr_find(const char *id_or_prefix)
{
    return table_find_prefix(&ctrs.table, id_or_prefix);
}

struct container *container_at(size_t i)
{
    struct ctr *c = ctr_at(i);
    return c ? &c->pub : NULL;
}

struct container *container_find(const char *id_or_prefix)
{
    struct ctr *c = ctr_find(id_or_prefix);
    return c ? &c->pub : NULL;
}

/* ---------------------------------------------------------------------- */
/* events                                                                  */
/* ---------------------------------------------------------------------- */

static struct {
    container_event_cb cb;
    void *arg;
} listeners[CONTAINER_EVENT_LISTENERS];

void container_add_event_listener(container_event_cb cb, void *arg)
{
    for (size_t i = 0; i < ARRAY_SIZE(listeners); i++) {
        if (!listeners[i].cb) {
            listeners[i].cb = cb;
            listeners[i].arg = arg;
            return;
        }
    }
    assert_state(!"too many container event listeners");
}

void ctr_emit(const struct ctr *c, enum container_event ev)
{
    for (size_t i = 0; i < ARRAY_SIZE(listeners) && listeners[i].cb; i++)
        listeners[i].cb(&c->pub, ev, listeners[i].arg);
}

/* ---------------------------------------------------------------------- */
/* records                                                                 */
/* ---------------------------------------------------------------------- */

static json_t *record_json(const struct ctr *c)
{
    json_t *o = json_object();
    size_t len = protobuf_c_message_get_packed_size(&c->pub.config->base);
    _cleanup_free_ uint8_t *packed = xmalloc(len ? len : 1);
    protobuf_c_message_pack(&c->pub.config->base, packed);
    _cleanup_free_ char *b64 = base64_encode(packed, len);
    json_t *layers = json_array();
    for (size_t i = 0; i < c->pub.n_layers; i++)
        json_array_append_new(layers, json_string(c->pub.chain_ids[i]));
    json_object_set_new(o, "id", json_string(c->pub.id));
    json_object_set_new(o, "sandboxId", json_string(c->pub.sandbox_id));
    json_object_set_new(o, "name", json_string(c->pub.config->metadata->name));
    json_object_set_new(o, "attempt", json_integer(c->pub.config->metadata->attempt));
    json_object_set_new(o, "config", json_string(b64));
    json_object_set_new(o, "imageRef", json_string(c->pub.image_ref));
    json_object_set_new(o, "imageId", json_string(c->pub.image_id));
    json_object_set_new(o, "chainIds", layers);
    json_object_set_new(o, "runtime", json_string(c->pub.runtime));
    json_object_set_new(o, "state", json_string(container_state_name(c->pub.state)));
    json_object_set_new(o, "createdAt", json_integer(c->pub.created_ns));
    json_object_set_new(o, "startedAt", json_integer(c->pub.started_ns));
    json_object_set_new(o, "finishedAt", json_integer(c->pub.finished_ns));
    json_object_set_new(o, "exitCode", json_integer(c->pub.exit_code));
    json_object_set_new(o, "reason", json_string(c->pub.reason));
    json_object_set_new(o, "message", json_string(c->pub.message));
    json_object_set_new(o, "logPath", json_string(c->pub.log_path));
    json_object_set_new(o, "stopSignal", json_integer(c->pub.stop_signal));
    json_object_set_new(o, "pid", json_integer(c->pub.pid));
    json_object_set_new(o, "keeperPid", json_integer(c->pub.keeper_pid));
    json_object_set_new(o, "rootDir", json_string(c->pub.root_dir));
    json_object_set_new(o, "stateDir", json_string(c->pub.state_dir));
    return o;
}

/* Write the record (every change goes through here). */
int ctr_save(const struct ctr *c, struct error **err)
{
    _cleanup_json_ json_t *o = record_json(c);
    _cleanup_free_ char *text = json_dumps(o, JSON_COMPACT);
    if (!text)
        return error_set(err, GRPC_INTERNAL, 0, "encode the record of container %s", c->pub.id);
    _cleanup_free_ char *path = ctr_record_path(c->pub.id);
    return persist_write(path, text, strlen(text), 0600, err);
}

/* A save whose failure is only logged (the state in memory stays right). */
static void ctr_save_or_log(const struct ctr *c)
{
    _cleanup_error_ struct error *err = NULL;
    if (ctr_save(c, &err) < 0)
        log_error("could not save the container record container=%s: %s", c->pub.id, err->msg);
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static struct ctr *record_load(const char *path, struct error **err)
{
    size_t len = 0;
    _cleanup_free_ char *text = read_file_capped(path, RECORD_MAX, &len, err);
    if (!text)
        return NULL;
    json_error_t jerr;
    _cleanup_json_ json_t *o = json_loadb(text, len, 0, &jerr);
    if (!json_is_object(o))
        return error_set(err, GRPC_DATA_LOSS, 0, "%s: %s", path, jerr.text), NULL;
    const char *id = jstr(o, "id");
    if (!id_is_valid(id))
        return error_set(err, GRPC_DATA_LOSS, 0, "%s: bad id", path), NULL;
    size_t plen = 0;
    _cleanup_free_ uint8_t *packed = base64_decode(jstr(o, "config"), &plen);
    Runtime__V1__ContainerConfig *config =
        packed ? runtime__v1__container_config__unpack(NULL, plen, packed) : NULL;
    if (!config || !config->metadata)
        return error_set(err, GRPC_DATA_LOSS, 0, "%s: unreadable config", path), NULL;
    struct ctr *c = ctr_new(id);
    c->pub.config = config;
    c->pub.sandbox_id = xstrdup(jstr(o, "sandboxId"));
    c->pub.image_ref = xstrdup(jstr(o, "imageRef"));
    c->pub.image_id = xstrdup(jstr(o, "imageId"));
    c->pub.runtime = xstrdup(jstr(o, "runtime"));
    const json_t *layers = json_object_get(o, "chainIds");
    c->pub.n_layers = json_array_size(layers);
    c->pub.chain_ids = xcalloc(c->pub.n_layers ? c->pub.n_layers : 1, sizeof(char *));
    for (size_t i = 0; i < c->pub.n_layers; i++) {
        const char *s = json_string_value(json_array_get(layers, i));
        c->pub.chain_ids[i] = xstrdup(s ? s : "");
    }
    if (state_parse(jstr(o, "state"), &c->pub.state) < 0) {
        ctr_free(c);
        return error_set(err, GRPC_DATA_LOSS, 0, "%s: bad state", path), NULL;
    }
    c->pub.created_ns = json_integer_value(json_object_get(o, "createdAt"));
    c->pub.started_ns = json_integer_value(json_object_get(o, "startedAt"));
    c->pub.finished_ns = json_integer_value(json_object_get(o, "finishedAt"));
    c->pub.exit_code = (int)json_integer_value(json_object_get(o, "exitCode"));
    ctr_set_str(&c->pub.reason, jstr(o, "reason"));
    ctr_set_str(&c->pub.message, jstr(o, "message"));
    ctr_set_str(&c->pub.log_path, jstr(o, "logPath"));
    c->pub.stop_signal = (int)json_integer_value(json_object_get(o, "stopSignal"));
    if (c->pub.stop_signal <= 0)
        c->pub.stop_signal = SIGTERM;
    c->pub.pid = (int)json_integer_value(json_object_get(o, "pid"));
    c->pub.keeper_pid = (int)json_integer_value(json_object_get(o, "keeperPid"));
    return c;
}

/* ---------------------------------------------------------------------- */
/* the lifecycle                                                           */
/* ---------------------------------------------------------------------- */

bool container_transition_ok(enum container_state from, enum container_state to)
{
    switch (from) {
    case CONTAINER_CREATED:
        return to == CONTAINER_RUNNING || to == CONTAINER_EXITED || to == CONTAINER_UNKNOWN;
    case CONTAINER_RUNNING:
        return to == CONTAINER_EXITED || to == CONTAINER_UNKNOWN;
    case CONTAINER_UNKNOWN:
        return to == CONTAINER_EXITED;
    case CONTAINER_EXITED:
        return false;
    }
    return false;
}

static void after_exit(struct ctr *c);

int ctr_set_state(struct ctr *c, enum container_state s, struct error **err)
{
    if (!container_transition_ok(c->pub.state, s))
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "container %s is %s, cannot become %s",
                         c->pub.id, container_state_name(c->pub.state), container_state_name(s));
    enum container_state old = c->pub.state;
    c->pub.state = s;
    log_info("container state container=%s from=%s to=%s", c->pub.id, container_state_name(old),
             container_state_name(s));
    ctr_save_or_log(c);
    if (s == CONTAINER_RUNNING)
        ctr_emit(c, CONTAINER_EVENT_STARTED);
    if (s == CONTAINER_EXITED) {
        ctr_emit(c, CONTAINER_EVENT_STOPPED);
        after_exit(c);
    }
    return 0;
}

int container_set_state(struct container *pub, enum container_state s, struct error **err)
{
    return ctr_set_state(ctr_of(pub), s, err);
}

static void add_waiter(struct ctr *c, container_done_cb cb, void *arg)
{
    struct container_exit_waiter *w = xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    TAILQ_INSERT_HEAD(&c->waiters, w, link);
}

/* Tell everyone waiting for the exit (err: the stop failed). c may go away in a callback. */
static void notify_waiters(struct ctr *c, const struct error *err)
{
    struct container_exit_waiters list;
    waiters_take(&list, &c->waiters);
    ctr_waiters_notify(&list, err);
}

static void on_deleted_after_exit(const struct runtime_result *res, void *arg)
{
    char *id = arg;
    struct ctr *c = ctr_find(id);
    if (res->err)
        log_debug("runtime delete after exit failed container=%s: %s", id, res->err->msg);
    else if (c && strcmp(c->pub.id, id) == 0)
        c->runtime_released = true; /* RemoveContainer need not ask again */
    free(id);
}

static void stop_end(struct ctr *c, const struct error *err);
static void stop_delete(struct ctr *c);

/* EXITED: the runtime's state and cgroup released; a stop in progress has ended. */
static void after_exit(struct ctr *c)
{
    _cleanup_error_ struct error *tmp = NULL;
    char *id = xstrdup(c->pub.id);
    if (!runtime_delete(c->pub.runtime, c->pub.id, on_deleted_after_exit, id, &tmp)) {
        log_debug("runtime delete after exit not started container=%s: %s", c->pub.id, tmp->msg);
        free(id);
    }
    stop_end(c, NULL);
}

/* exit.json written by the keeper: fill the exit fields; -1 when missing or unreadable. */
static int read_exit_record(struct ctr *c)
{
    struct keeper_exit ex;
    if (keeper_exit_read(c->pub.state_dir, &ex) < 0)
        return -1;
    c->pub.exit_code = ex.exit_code;
    c->pub.finished_ns = ex.finished_ns > 0 ? ex.finished_ns : now_realtime_ns();
    /* A start that failed already said why. */
    if (strcmp(c->pub.reason, "StartError") != 0)
        ctr_set_str(&c->pub.reason, ex.oom_killed           ? "OOMKilled"
                                    : c->pub.exit_code == 0 ? "Completed"
                                                            : "Error");
    return 0;
}

/* The keeper is gone: record the exit (or that we do not know it). */
void ctr_keeper_gone(struct ctr *c)
{
    ctr_unwatch_keeper(c);
    /* A start in flight finishes first (its callback comes back here). */
    if (c->start_op || c->pub.state == CONTAINER_EXITED || c->pub.state == CONTAINER_UNKNOWN)
        return;
    _cleanup_error_ struct error *err = NULL;
    if (read_exit_record(c) == 0) {
        /* A very short command can end before `runtime start` has returned. */
        if (c->pub.state == CONTAINER_RUNNING &&
            (c->pub.started_ns == 0 || c->pub.started_ns > c->pub.finished_ns))
            c->pub.started_ns = c->pub.finished_ns;
        ctr_set_state(c, CONTAINER_EXITED, &err);
        return;
    }
    c->pub.exit_code = EXIT_CODE_UNKNOWN;
    ctr_set_str(&c->pub.reason, "Unknown");
    struct stat st;
    if (c->pub.state_dir && stat(c->pub.state_dir, &st) < 0 && errno == ENOENT) {
        /*
         * The state dir (a tmpfs such as /run) lost the container's directory
         * with the keeper: the host restarted. Nothing of the container runs
         * any more, so it has exited, with the exit code containerd reports
         * for an unknown exit; kubelet then recreates it without a Stop.
         */
        ctr_set_str(&c->pub.message, "the host restarted while the container existed; "
                                     "its exit status is unknown");
        if (c->pub.finished_ns == 0)
            c->pub.finished_ns = now_realtime_ns();
        log_warn("container lost to a host restart container=%s", c->pub.id);
        ctr_set_state(c, CONTAINER_EXITED, &err);
        return;
    }
    ctr_set_str(&c->pub.message, "the container's keeper exited without recording the exit");
    log_warn("keeper gone without an exit record container=%s", c->pub.id);
    ctr_set_state(c, CONTAINER_UNKNOWN, &err);
    /* A stop in progress would otherwise wait for an exit nobody will report. */
    if (c->stop != STOP_NONE)
        stop_delete(c);
}

/* The watcher belongs to c (freed with it), so c is alive whenever it fires. */
static void on_keeper_exit(void *arg)
{
    struct ctr *c = arg;
    log_debug("keeper exited container=%s keeper=%d", c->pub.id, c->pub.keeper_pid);
    ctr_keeper_gone(c);
}

/* Watch the keeper through pidfd (taken, also on failure). */
int ctr_watch_keeper(struct ctr *c, int pidfd, struct error **err)
{
    c->keeper = loop_watch_pidfd(pidfd, on_keeper_exit, c, err);
    return c->keeper ? 0 : error_prefix(err, "watch the keeper of %s", c->pub.id);
}

/* ---------------------------------------------------------------------- */
/* removal                                                                 */
/* ---------------------------------------------------------------------- */

/* Take c out of the table and tear it down; its record goes first. */
static void container_detach_and_teardown(struct ctr *c, void (*cb)(void *arg), void *arg)
{
    _cleanup_free_ char *rec = ctr_record_path(c->pub.id);
    _cleanup_error_ struct error *tmp = NULL;
    if (persist_remove(rec, &tmp) < 0)
        log_warn("could not remove the record container=%s: %s", c->pub.id, tmp->msg);
    table_remove(&ctrs.table, c);
    ctr_emit(c, CONTAINER_EVENT_DELETED);
    notify_waiters(c, NULL);
    int pidfd = c->keeper ? loop_pidfd_dup(c->keeper) : -1;
    ctr_unwatch_keeper(c);
    log_info("container removed container=%s", c->pub.id);
    ctr_teardown_start(c->pub.id, c->runtime_released ? NULL : c->pub.runtime, pidfd, cb, arg);
    loop_defer_free(ctr_free, c);
}

/* ---------------------------------------------------------------------- */
/* start                                                                   */
/* ---------------------------------------------------------------------- */

/* A caller's callback for an operation on a container, found again by id when it ends. */
struct call_arg {
    char *id;
    container_done_cb cb;
    void *arg;
};

static struct call_arg *call_arg_new(const char *id, container_done_cb cb, void *arg)
{
    struct call_arg *ca = xcalloc(1, sizeof(*ca));
    ca->id = xstrdup(id);
    ca->cb = cb;
    ca->arg = arg;
    return ca;
}

static void call_arg_free(struct call_arg *ca)
{
    free(ca->id);
    free(ca);
}

static void on_started(const struct runtime_result *res, void *arg)
{
    struct call_arg *ca = arg;
    struct ctr *c = ctr_find(ca->id);
    _cleanup_error_ struct error *err = NULL;
    if (!c) {
        error_set(&err, GRPC_NOT_FOUND, 0, "container %s was removed while starting", ca->id);
    } else if (res->err) {
        c->start_op = NULL;
        error_copy(&err, res->err);
        ctr_set_str(&c->pub.reason, "StartError");
        ctr_set_str(&c->pub.message, res->err->msg);
        if (c->pub.state == CONTAINER_CREATED) {
            c->pub.exit_code = EXIT_CODE_START_ERROR;
            c->pub.finished_ns = now_realtime_ns();
            _cleanup_error_ struct error *tmp = NULL;
            ctr_set_state(c, CONTAINER_EXITED, &tmp);
        } else {
            ctr_save_or_log(c);
        }
        log_warn("container start failed container=%s: %s", c->pub.id, res->err->msg);
    } else {
        c->start_op = NULL;
        c->pub.started_ns = now_realtime_ns();
        if (c->pub.state == CONTAINER_CREATED) {
            _cleanup_error_ struct error *tmp = NULL;
            ctr_set_state(c, CONTAINER_RUNNING, &tmp);
        } else {
            ctr_save_or_log(c);
        }
        /* The keeper may have gone while start was in flight (a very short command). */
        if (!c->keeper)
            ctr_keeper_gone(c);
    }
    ca->cb(err, ca->arg);
    call_arg_free(ca);
}

int container_start(const char *id, container_done_cb cb, void *arg, struct error **err)
{
    struct ctr *c = ctr_find(id);
    if (!c)
        return error_set(err, GRPC_NOT_FOUND, 0, "container %s not found", id);
    if (c->pub.state != CONTAINER_CREATED || c->start_op)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "container %s is %s%s, not CREATED",
                         c->pub.id, c->start_op ? "starting" : "",
                         c->start_op ? "" : container_state_name(c->pub.state));
    struct call_arg *ca = call_arg_new(c->pub.id, cb, arg);
    c->start_op = runtime_start(c->pub.runtime, c->pub.id, on_started, ca, err);
    if (!c->start_op) {
        call_arg_free(ca);
        return error_prefix(err, "start container %s", c->pub.id);
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* stop                                                                    */
/* ---------------------------------------------------------------------- */

/*
 * StopContainer is a small machine per container (enum ctr_stop in
 * container_internal.h): STOP_NONE --Stop--> STOP_SIGNALLED (the stop signal
 * sent, the grace timer armed) --timer, or the signal failed--> STOP_KILLING
 * (SIGKILL sent) --exit--> STOP_NONE. A Stop with no grace (timeout 0, or a
 * container never started) goes to STOP_KILLING at once; an UNKNOWN container
 * (its keeper gone without an exit record) to STOP_DELETING, where `runtime
 * delete` makes sure it is dead before it is called EXITED. Every Stop adds
 * a waiter; the exit (after_exit) or a failure (stop_end with an error) tells
 * them all, never inside the Stop call itself.
 */

/* The stop is over: every waiter hears err (NULL: the container has exited). */
static void stop_end(struct ctr *c, const struct error *err)
{
    c->stop = STOP_NONE;
    c->kill_at_ns = 0;
    if (c->kill_timer)
        loop_timer_disarm(c->kill_timer);
    notify_waiters(c, err);
}

/* What a `runtime kill` is about; the container is looked up again when it ends. */
struct kill_arg {
    char *id;
    int signo;
    struct error *err; /* a kill that did not start: reported on the next loop turn */
};

static void send_kill(struct ctr *c, int signo);

static void on_killed(const struct runtime_result *res, void *arg)
{
    struct kill_arg *ka = arg;
    struct ctr *c = ctr_find(ka->id);
    bool stopping = c && (c->stop == STOP_SIGNALLED || c->stop == STOP_KILLING);
    if (stopping && res->err && c->pub.state != CONTAINER_EXITED) {
        if (ka->signo != SIGKILL && c->stop == STOP_SIGNALLED) {
            log_warn("stop signal failed, sending SIGKILL container=%s: %s", c->pub.id,
                     res->err->msg);
            c->stop = STOP_KILLING;
            send_kill(c, SIGKILL);
        } else if (ka->signo == SIGKILL) {
            log_warn("SIGKILL failed container=%s: %s", c->pub.id, res->err->msg);
            stop_end(c, res->err);
        }
    }
    error_free(ka->err);
    free(ka->id);
    free(ka);
}

static void on_kill_not_started(void *arg)
{
    struct kill_arg *ka = arg;
    struct runtime_result res = {.err = ka->err};
    on_killed(&res, ka);
}

static void send_kill(struct ctr *c, int signo)
{
    struct kill_arg *ka = xcalloc(1, sizeof(*ka));
    ka->id = xstrdup(c->pub.id);
    ka->signo = signo;
    log_info("signalling container container=%s signal=%d", c->pub.id, signo);
    if (!runtime_kill(c->pub.runtime, c->pub.id, signo, on_killed, ka, &ka->err))
        loop_defer(on_kill_not_started, ka);
}

/* To STOP_KILLING: SIGKILL now, the grace period is over. */
static void stop_kill(struct ctr *c)
{
    c->stop = STOP_KILLING;
    c->kill_at_ns = 0;
    if (c->kill_timer)
        loop_timer_disarm(c->kill_timer);
    send_kill(c, SIGKILL);
}

static void on_kill_timer(void *arg)
{
    struct ctr *c = arg;
    if (c->stop == STOP_SIGNALLED &&
        (c->pub.state == CONTAINER_RUNNING || c->pub.state == CONTAINER_CREATED))
        stop_kill(c);
}

/* To STOP_SIGNALLED: the stop signal (again), SIGKILL at the earliest deadline asked for. */
static void stop_signal(struct ctr *c, int64_t timeout_s)
{
    int64_t at = now_monotonic_ns() + timeout_s * 1000000000LL;
    if (c->stop != STOP_SIGNALLED || at < c->kill_at_ns) {
        if (!c->kill_timer)
            c->kill_timer = loop_timer_new(on_kill_timer, c);
        c->kill_at_ns = at;
        loop_timer_arm(c->kill_timer, timeout_s * 1000);
    }
    c->stop = STOP_SIGNALLED;
    send_kill(c, c->pub.stop_signal);
}

struct delete_arg {
    char *id;
    struct error *err; /* a delete that did not start: reported on the next loop turn */
};

static void on_unknown_deleted(const struct runtime_result *res, void *arg)
{
    struct delete_arg *da = arg;
    struct ctr *c = ctr_find(da->id);
    if (c && c->pub.state == CONTAINER_UNKNOWN && c->stop == STOP_DELETING) {
        if (res->err) {
            stop_end(c, res->err);
        } else {
            c->pub.finished_ns = now_realtime_ns();
            _cleanup_error_ struct error *tmp = NULL;
            ctr_set_state(c, CONTAINER_EXITED, &tmp);
        }
    }
    error_free(da->err);
    free(da->id);
    free(da);
}

static void on_delete_not_started(void *arg)
{
    struct delete_arg *da = arg;
    struct runtime_result res = {.err = da->err};
    on_unknown_deleted(&res, da);
}

/* To STOP_DELETING: nobody will report the exit; make sure it is dead, then call it exited. */
static void stop_delete(struct ctr *c)
{
    c->stop = STOP_DELETING;
    c->kill_at_ns = 0;
    if (c->kill_timer)
        loop_timer_disarm(c->kill_timer);
    struct delete_arg *da = xcalloc(1, sizeof(*da));
    da->id = xstrdup(c->pub.id);
    if (!runtime_delete(c->pub.runtime, c->pub.id, on_unknown_deleted, da, &da->err))
        loop_defer(on_delete_not_started, da);
}

/* Stop c for cb; a CREATED container is killed (EXITED) too when kill_created. */
static void stop_container(struct ctr *c, int64_t timeout_s, bool kill_created,
                           container_done_cb cb, void *arg)
{
    if (c->pub.state == CONTAINER_EXITED ||
        (c->pub.state == CONTAINER_CREATED && !c->start_op && !kill_created)) {
        ctr_defer_done(cb, NULL, arg);
        return;
    }
    add_waiter(c, cb, arg);
    if (c->pub.state == CONTAINER_UNKNOWN) {
        if (c->stop != STOP_DELETING)
            stop_delete(c);
    } else if (timeout_s <= 0 || c->pub.state == CONTAINER_CREATED) {
        stop_kill(c);
    } else if (c->stop != STOP_KILLING) {
        stop_signal(c, timeout_s);
    }
}

int container_stop(const char *id, int64_t timeout_s, container_done_cb cb, void *arg,
                   struct error **err)
{
    struct ctr *c = ctr_find(id);
    if (!c)
        return error_set(err, GRPC_NOT_FOUND, 0, "container %s not found", id);
    /*
     * Nothing runs before a start, so there is nothing to stop: a created
     * container stays CREATED (and may still be started), as in containerd.
     * Removal deletes it through the runtime; a pod's stop kills it.
     */
    stop_container(c, timeout_s, false, cb, arg);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* remove                                                                  */
/* ---------------------------------------------------------------------- */

static void on_removed(void *arg)
{
    struct call_arg *ca = arg;
    ca->cb(NULL, ca->arg);
    call_arg_free(ca);
}

static void on_stopped_for_remove(const struct error *err, void *arg)
{
    struct call_arg *ca = arg;
    struct ctr *c = ctr_find(ca->id);
    if (err && c) {
        ca->cb(err, ca->arg);
        call_arg_free(ca);
        return;
    }
    if (!c || strcmp(c->pub.id, ca->id) != 0) {
        on_removed(ca);
        return;
    }
    container_detach_and_teardown(c, on_removed, ca);
}

int container_remove(const char *id, container_done_cb cb, void *arg, struct error **err)
{
    struct ctr *c = ctr_find(id);
    if (!c) {
        ctr_defer_done(cb, NULL, arg);
        return 0;
    }
    struct call_arg *ca = call_arg_new(c->pub.id, cb, arg);
    if (container_stop(c->pub.id, 0, on_stopped_for_remove, ca, err) < 0) {
        call_arg_free(ca);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* exec                                                                    */
/* ---------------------------------------------------------------------- */

struct exec_op {
    TAILQ_ENTRY(exec_op) link; /* ctrs.execs while linked */
    bool linked;
    struct runtime_op *op;
    char *id;
    char *process_path;
    char *pid_path;
    container_exec_cb cb;
    void *arg;
};

static void exec_op_free(void *obj)
{
    struct exec_op *eo = obj;
    if (!eo)
        return;
    free(eo->id);
    free(eo->process_path);
    free(eo->pid_path);
    free(eo);
}

/* Out of the list (if in it), files gone; the memory goes once the callers return. */
static void exec_op_retire(struct exec_op *eo)
{
    if (eo->linked)
        TAILQ_REMOVE(&ctrs.execs, eo, link);
    eo->linked = false;
    /* The pid file belongs to the runtime call, which may outlive us (see runtime_op_cancel). */
    unlink(eo->process_path);
    loop_defer_free(exec_op_free, eo);
}

void container_exec_cancel(void *arg)
{
    struct exec_op *eo;
    TAILQ_FOREACH (eo, &ctrs.execs, link) {
        if (eo->arg == arg) {
            log_debug("exec cancelled container=%s", eo->id);
            runtime_op_cancel(eo->op);
            eo->op = NULL;
            exec_op_retire(eo);
            return;
        }
    }
}

static void on_exec_done(const struct runtime_result *res, void *arg)
{
    struct exec_op *eo = arg;
    eo->op = NULL;
    exec_op_retire(eo); /* first: a cancel from inside cb must not find it */
    if (res->err) {
        eo->cb(NULL, res->err, eo->arg);
    } else {
        struct container_exec_result r = {
            .exit_code = res->exit_code,
            .out = res->out,
            .out_len = res->out_len,
            .err = res->err_out,
            .err_len = res->err_len,
            .out_truncated = res->out_truncated,
            .err_truncated = res->err_truncated,
        };
        if (res->out_truncated || res->err_truncated)
            log_info("exec output truncated container=%s stdout=%zu stderr=%zu", eo->id,
                     res->out_len, res->err_len);
        eo->cb(&r, NULL, eo->arg);
    }
#ifdef HAVE_MALLOC_TRIM
    /* Megabytes of output went through the heap: give them back. */
    if (res->out_len + res->err_len > 1024 * 1024)
        malloc_trim(0);
#endif
}

static int write_small_file(const char *path, const char *text, struct error **err)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return error_set(err, GRPC_INTERNAL, errno, "create %s", path);
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len)
        return error_set(err, GRPC_INTERNAL, errno, "write %s", path);
    return 0;
}

/* Both execs: process.json from the container's process with cmd and terminal, then the runtime. */
static int exec_begin(const char *method, const char *id, char *const *cmd, size_t n_cmd,
                      int64_t timeout_s, size_t out_cap, bool tty, const int *stdio,
                      container_exec_cb cb, void *arg, struct error **err)
{
    if (n_cmd == 0)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s: cmd is required", method);
    struct ctr *c = ctr_find(id);
    if (!c)
        return error_set(err, GRPC_NOT_FOUND, 0, "container %s not found", id);
    if (c->pub.state != CONTAINER_RUNNING)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "container %s is not running (%s)",
                         c->pub.id, container_state_name(c->pub.state));
    _cleanup_free_ char *bundle_config = ctr_path(c->pub.state_dir, "config.json");
    size_t len = 0;
    _cleanup_free_ char *text = read_file_capped(bundle_config, BUNDLE_CONFIG_MAX, &len, err);
    if (!text)
        return -1;
    json_error_t jerr;
    _cleanup_json_ json_t *spec = json_loadb(text, len, 0, &jerr);
    json_t *proc = spec ? json_object_get(spec, "process") : NULL;
    if (!json_is_object(proc))
        return error_set(err, GRPC_INTERNAL, 0, "%s has no process", bundle_config);
    _cleanup_json_ json_t *p = json_deep_copy(proc);
    json_t *args = json_array();
    for (size_t i = 0; i < n_cmd; i++) {
        json_t *s = json_string(cmd[i]);
        if (!s) {
            json_decref(args);
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s: cmd is not UTF-8", method);
        }
        json_array_append_new(args, s);
    }
    json_object_set_new(p, "args", args);
    json_object_set_new(p, "terminal", json_boolean(tty));
    json_object_del(p, "consoleSize");
    _cleanup_free_ char *ptext = json_dumps(p, JSON_COMPACT);
    uint64_t seq = ++ctrs.exec_seq;
    struct exec_op *eo = xcalloc(1, sizeof(*eo));
    eo->id = xstrdup(c->pub.id);
    eo->process_path = xasprintf("%s/exec-%llu.json", c->pub.state_dir, (unsigned long long)seq);
    eo->pid_path = xasprintf("%s/exec-%llu.pid", c->pub.state_dir, (unsigned long long)seq);
    eo->cb = cb;
    eo->arg = arg;
    struct runtime_exec_opts o = {
        .process_path = eo->process_path,
        .pid_file = eo->pid_path,
        .timeout_ms = timeout_s > 0 ? timeout_s * 1000 : 0,
        .out_cap = out_cap,
        .stdio = stdio,
        .ctty = tty,
    };
    if (!ptext)
        error_set(err, GRPC_INTERNAL, 0, "encode process.json");
    /* A throwaway file read once by the runtime: no fsync (probes run this often). */
    if (!ptext || write_small_file(eo->process_path, ptext, err) < 0 ||
        !(eo->op = runtime_exec(c->pub.runtime, c->pub.id, &o, on_exec_done, eo, err))) {
        exec_op_retire(eo);
        return -1;
    }
    TAILQ_INSERT_HEAD(&ctrs.execs, eo, link);
    eo->linked = true;
    return 0;
}

int container_exec_sync(const char *id, char *const *cmd, size_t n_cmd, int64_t timeout_s,
                        size_t out_cap, container_exec_cb cb, void *arg, struct error **err)
{
    return exec_begin("ExecSync", id, cmd, n_cmd, timeout_s, out_cap, false, NULL, cb, arg, err);
}

int container_exec_stream(const char *id, char *const *cmd, size_t n_cmd, bool tty,
                          const int stdio[3], container_exec_cb cb, void *arg, struct error **err)
{
    return exec_begin("Exec", id, cmd, n_cmd, 0, 4096, tty, stdio, cb, arg, err);
}

/* ---------------------------------------------------------------------- */
/* the running container's keeper: log reopen, attach, resize              */
/* ---------------------------------------------------------------------- */

/* The container, RUNNING with its keeper there; else NULL with NOT_FOUND or FAILED_PRECONDITION. */
static struct ctr *find_kept(const char *id, struct error **err)
{
    struct ctr *c = ctr_find(id);
    if (!c)
        return error_set(err, GRPC_NOT_FOUND, 0, "container %s not found", id), NULL;
    if (c->pub.state != CONTAINER_RUNNING || !c->keeper)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "container %s is not running (%s)",
                         c->pub.id, container_state_name(c->pub.state)),
               NULL;
    return c;
}

int container_reopen_log(const char *id, container_done_cb cb, void *arg, struct error **err)
{
    struct ctr *c = find_kept(id, err);
    if (!c)
        return -1;
    /* The keeper reopens the log file the kubelet has just renamed. */
    return keeper_ctl_send(c->pub.id, c->pub.state_dir, KEEPER_CMD_REOPEN, REOPEN_TIMEOUT_MS, cb,
                           arg, err)
               ? 0
               : -1;
}

int container_attach_connect(const char *id, bool in, bool out, bool errs, bool *tty,
                             struct error **err)
{
    struct ctr *c = find_kept(id, err);
    if (!c)
        return -1;
    *tty = c->pub.config->tty;
    return keeper_attach_connect(c->pub.id, c->pub.state_dir, in, out, errs && !*tty, err);
}

/* Nobody waits for a resize: a failure only shows in the debug log. */
static void on_resize_done(const struct error *err, void *arg)
{
    char *id = arg;
    if (err)
        log_debug("resize failed container=%s: %s", id, err->msg);
    free(id);
}

int container_resize(const char *id, uint16_t cols, uint16_t rows, struct error **err)
{
    struct ctr *c = find_kept(id, err);
    if (!c)
        return -1;
    if (!c->pub.config->tty)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "container %s has no terminal",
                         c->pub.id);
    char cmd[32];
    snprintf(cmd, sizeof(cmd), KEEPER_CMD_RESIZE " %u %u", cols, rows);
    char *arg = xstrdup(c->pub.id);
    if (!keeper_ctl_send(c->pub.id, c->pub.state_dir, cmd, RESIZE_TIMEOUT_MS, on_resize_done, arg,
                         err)) {
        free(arg);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* queries                                                                 */
/* ---------------------------------------------------------------------- */

char *container_info_json(const struct container *pub)
{
    const struct ctr *c = ctr_of((struct container *)pub);
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(c->pub.id));
    /* sandboxID, pid and runtimeSpec: the keys containerd and CRI-O both give (and scripts
     * read through crictl inspect). */
    json_object_set_new(o, "sandboxID", json_string(c->pub.sandbox_id));
    json_object_set_new(o, "pid", json_integer(c->pub.pid));
    json_object_set_new(o, "keeperPid", json_integer(c->pub.keeper_pid));
    json_object_set_new(o, "keeperAlive", json_boolean(c->keeper != NULL));
    json_object_set_new(o, "runtime", json_string(c->pub.runtime));
    const char *path = runtime_handler_path(c->pub.runtime);
    const char *root = runtime_handler_root(c->pub.runtime);
    json_object_set_new(o, "runtimePath", json_string(path ? path : ""));
    json_object_set_new(o, "runtimeRoot", json_string(root ? root : ""));
    _cleanup_free_ char *rootfs = ctr_rootfs_path(c);
    json_object_set_new(o, "rootfs", json_string(rootfs));
    json_object_set_new(o, "rootDir", json_string(c->pub.root_dir));
    json_object_set_new(o, "bundle", json_string(c->pub.state_dir));
    json_object_set_new(o, "logPath", json_string(c->pub.log_path));
    json_object_set_new(o, "imageId", json_string(c->pub.image_id));
    json_object_set_new(o, "stopSignal", json_integer(c->pub.stop_signal));
    /* The rest of containerd's keys: the CRI config as Go prints it, the runtime's options. */
    json_object_set_new(o, "config", pb_json(&c->pub.config->base));
    json_object_set_new(o, "removing", json_false());
    json_object_set_new(o, "snapshotKey", json_string(c->pub.id));
    json_object_set_new(o, "snapshotter", json_string("overlayfs"));
    json_object_set_new(o, "runtimeHandler", json_string(c->pub.runtime));
    json_object_set_new(o, "runtimeType", json_string(c->pub.runtime));
    json_object_set_new(o, "runtimeOptions",
                        json_pack("{s:s, s:s, s:b}", "binary_name", path ? path : "", "root",
                                  root ? root : "", "systemd_cgroup",
                                  ctrs.cfg && ctrs.cfg->cgroup_driver == CGROUP_DRIVER_SYSTEMD));
    _cleanup_free_ char *bundle_config = ctr_path(c->pub.state_dir, "config.json");
    size_t len = 0;
    _cleanup_error_ struct error *tmp = NULL;
    _cleanup_free_ char *spec_text = read_file_capped(bundle_config, BUNDLE_CONFIG_MAX, &len, &tmp);
    json_t *spec = spec_text ? json_loadb(spec_text, len, 0, NULL) : NULL;
    if (json_is_object(spec))
        json_object_set_new(o, "runtimeSpec", spec);
    else
        json_decref(spec);
    if (tmp)
        log_debug("verbose info without runtimeSpec container=%s: %s", c->pub.id, tmp->msg);
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return text;
}

int container_set_resources(const char *id, const Runtime__V1__LinuxContainerResources *r,
                            struct error **err)
{
    struct ctr *c = ctr_find(id);
    if (!c || strcmp(c->pub.id, id) != 0)
        return error_set(err, GRPC_NOT_FOUND, 0, "container %s not found", id);
    /* A deep copy made the way configs are held: unpacked, freed with the config. */
    size_t len = protobuf_c_message_get_packed_size(&r->base);
    _cleanup_free_ uint8_t *packed = xmalloc(len ? len : 1);
    protobuf_c_message_pack(&r->base, packed);
    Runtime__V1__LinuxContainerResources *copy =
        runtime__v1__linux_container_resources__unpack(NULL, len, packed);
    if (!copy)
        return error_set(err, GRPC_INTERNAL, 0, "copy the resources of %s", id);
    Runtime__V1__ContainerConfig *cfg = c->pub.config;
    if (!cfg->linux) {
        cfg->linux = xmalloc(sizeof(*cfg->linux));
        runtime__v1__linux_container_config__init(cfg->linux);
    }
    if (cfg->linux->resources)
        protobuf_c_message_free_unpacked(&cfg->linux->resources->base, NULL);
    cfg->linux->resources = copy;
    return ctr_save(c, err);
}

bool ctr_uses(const struct ctr *c, const char *key)
{
    if (c->pub.image_id && strcmp(c->pub.image_id, key) == 0)
        return true;
    for (size_t i = 0; i < c->pub.n_layers; i++) {
        if (strcmp(c->pub.chain_ids[i], key) == 0)
            return true;
    }
    return false;
}

bool container_uses(const char *key)
{
    for (size_t i = 0; i < ctrs.table.n; i++) {
        if (ctr_uses(ctr_at(i), key))
            return true;
    }
    return ctr_creates_use(key);
}

/* ---------------------------------------------------------------------- */
/* what the sandbox module calls                                           */
/* ---------------------------------------------------------------------- */

struct stop_group {
    TAILQ_ENTRY(stop_group) link; /* ctrs.stops until done runs */
    char *sandbox_id;
    size_t pending;
    struct error *err;
    struct loop_timer *timer;
    void (*done)(const struct error *err, void *arg);
    void *arg;
};

bool ctr_sandbox_is_stopping(const char *sandbox_id)
{
    const struct stop_group *g;
    TAILQ_FOREACH (g, &ctrs.stops, link) {
        if (strcmp(g->sandbox_id, sandbox_id) == 0)
            return true;
    }
    return false;
}

static void on_group_done(void *arg)
{
    struct stop_group *g = arg;
    /* New creates are refused until done has run: it marks the sandbox NOTREADY. */
    TAILQ_REMOVE(&ctrs.stops, g, link);
    g->done(g->err, g->arg);
    error_free(g->err);
    free(g->sandbox_id);
    loop_timer_free(g->timer); /* safe inside its own callback */
    free(g);
}

static void group_release(struct stop_group *g)
{
    if (--g->pending > 0)
        return;
    /* Never call back from inside the caller's stack: the loop runs it next. */
    g->timer = loop_timer_new(on_group_done, g);
    loop_timer_arm(g->timer, 0);
}

static void on_group_member_stopped(const struct error *err, void *arg)
{
    struct stop_group *g = arg;
    error_copy(&g->err, err);
    group_release(g);
}

static void hook_stop_all(const char *sandbox_id, void (*done)(const struct error *err, void *arg),
                          void *arg)
{
    struct stop_group *g = xcalloc(1, sizeof(*g));
    g->sandbox_id = xstrdup(sandbox_id);
    g->done = done;
    g->arg = arg;
    g->pending = 1;
    TAILQ_INSERT_HEAD(&ctrs.stops, g, link);
    ctr_creates_fail(sandbox_id, "stopped", on_group_member_stopped, g, &g->pending);
    /* Collect ids first: a stop may change the table. */
    size_t n = 0;
    _cleanup_free_ char **ids = xcalloc(ctrs.table.n + 1, sizeof(char *));
    for (size_t i = 0; i < ctrs.table.n; i++) {
        const struct ctr *c = ctr_at(i);
        if (strcmp(c->pub.sandbox_id, sandbox_id) == 0 && c->pub.state != CONTAINER_EXITED)
            ids[n++] = xstrdup(c->pub.id);
    }
    for (size_t i = 0; i < n; i++) {
        g->pending++;
        /* A stopped pod runs nothing: its created containers are killed as well. */
        struct ctr *c = ctr_find(ids[i]);
        if (c)
            stop_container(c, 0, true, on_group_member_stopped, g);
        else
            on_group_member_stopped(NULL, g); /* removed by an earlier stop's callback */
        free(ids[i]);
    }
    group_release(g);
}

/* The containers of a sandbox being removed; done runs once the last teardown has finished. */
struct remove_group {
    size_t pending;
    void (*done)(const struct error *err, void *arg);
    void *arg;
};

/* The sandbox side copes with a call from inside hook_remove_all() (its step goes on). */
static void remove_group_release(struct remove_group *g)
{
    if (--g->pending > 0)
        return;
    g->done(NULL, g->arg);
    free(g);
}

static void on_remove_member_gone(void *arg)
{
    remove_group_release(arg);
}

static void on_remove_create_undone(const struct error *err, void *arg)
{
    (void)err; /* the undo has finished either way */
    remove_group_release(arg);
}

/*
 * Removal means removed: the sandbox's removal waits for every teardown
 * (runtime delete, keeper gone, rootfs unmounted, directories removed) and
 * for the undo of creates in flight, so RemovePodSandbox answers only once
 * no mount of its containers is left.
 */
static void hook_remove_all(const char *sandbox_id,
                            void (*done)(const struct error *err, void *arg), void *arg)
{
    struct remove_group *g = xcalloc(1, sizeof(*g));
    g->done = done;
    g->arg = arg;
    g->pending = 1;
    /* Normally none are left after stop_all. */
    ctr_creates_fail(sandbox_id, "removed", on_remove_create_undone, g, &g->pending);
    for (size_t i = 0; i < ctrs.table.n;) {
        struct ctr *c = ctr_at(i);
        if (strcmp(c->pub.sandbox_id, sandbox_id) != 0) {
            i++;
            continue;
        }
        g->pending++;
        container_detach_and_teardown(c, on_remove_member_gone, g); /* out of the table */
    }
    remove_group_release(g);
}

const struct sandbox_container_hooks container_sandbox_hooks = {
    .stop_all = hook_stop_all,
    .remove_all = hook_remove_all,
};

/* ---------------------------------------------------------------------- */
/* start-up and shutdown                                                   */
/* ---------------------------------------------------------------------- */

/* A CREATED record whose container runs: the daemon died between `start` and the save. */
static void on_state_reconciled(const struct runtime_result *res, void *arg)
{
    char *id = arg;
    struct ctr *c = ctr_find(id);
    if (c && c->pub.state == CONTAINER_CREATED && !c->start_op && !res->err && res->status &&
        strcmp(res->status, "running") == 0) {
        c->pub.started_ns = now_realtime_ns();
        _cleanup_error_ struct error *tmp = NULL;
        ctr_set_state(c, CONTAINER_RUNNING, &tmp);
    }
    free(id);
}

static void reconcile(struct ctr *c)
{
    if (c->pub.state == CONTAINER_EXITED || c->pub.state == CONTAINER_UNKNOWN)
        return;
    int pidfd = c->pub.keeper_pid > 0 ? pidfd_open(c->pub.keeper_pid, 0) : -1;
    if (pidfd >= 0 && keeper_is_for(c->pub.keeper_pid, c->pub.id)) {
        _cleanup_error_ struct error *err = NULL;
        if (ctr_watch_keeper(c, pidfd, &err) < 0)
            log_error("container=%s: %s", c->pub.id, err->msg);
        else
            log_info("container recovered container=%s state=%s keeper=%d", c->pub.id,
                     container_state_name(c->pub.state), c->pub.keeper_pid);
        if (c->pub.state == CONTAINER_CREATED) {
            _cleanup_error_ struct error *serr = NULL;
            char *id = xstrdup(c->pub.id);
            if (!runtime_state(c->pub.runtime, c->pub.id, on_state_reconciled, id, &serr))
                free(id);
        }
        return;
    }
    if (pidfd >= 0)
        close(pidfd);
    ctr_keeper_gone(c);
}

static bool has_record(const char *id)
{
    return table_find(&ctrs.table, id) != NULL;
}

/* Directories an interrupted create or remove left behind (no record): remove them. */
static void clean_orphans(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!id_is_valid(e->d_name) || has_record(e->d_name))
            continue;
        /* Both directories of one id go in one teardown: skip the second sighting. */
        if (ctr_teardown_running(e->d_name))
            continue;
        log_info("removing leftovers of an unfinished container container=%s", e->d_name);
        ctr_teardown_start(e->d_name, runtime_handler_name(""), -1, NULL, NULL);
    }
    closedir(d);
}

int container_init(const struct config *cfg, struct store *store, struct error **err)
{
    ctrs.cfg = cfg;
    ctrs.store = store;
    ctrs.table = (struct table)TABLE_INIT(ctr_id);
    TAILQ_INIT(&ctrs.creates);
    TAILQ_INIT(&ctrs.teardowns);
    TAILQ_INIT(&ctrs.execs);
    TAILQ_INIT(&ctrs.stops);
    ctrs.records_dir = ctr_path(cfg->root_dir, "containers");
    ctrs.states_dir = ctr_path(cfg->state_dir, "ctr");
    /* The keeper's sockets under <state_dir>/ctr/<64-hex id> are reached through
     * /proc/self/fd when the path does not fit sun_path; only keep the state file
     * paths (and the runtime's) far from PATH_MAX. */
    if (strlen(cfg->state_dir) > STATE_DIR_MAX)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "state_dir %s is too long (at most %d characters)", cfg->state_dir,
                         STATE_DIR_MAX);
    if (strpbrk(cfg->root_dir, ",:") || strpbrk(store_root(store), ",:"))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "root_dir %s: overlay mounts cannot use a path with ',' or ':'",
                         cfg->root_dir);
    if (mkdir_p(ctrs.records_dir, 0700, err) < 0 || mkdir_p(ctrs.states_dir, 0700, err) < 0)
        return -1;
    ctrs.keeper_path = libexec_path(KEEPER_BINARY, KEEPER_BINARY_ENV);
    if (access(ctrs.keeper_path, X_OK) < 0)
        log_warn("tinycri-keeper not found at %s: containers cannot be created", ctrs.keeper_path);
    else
        log_debug("keeper path=%s", ctrs.keeper_path);
    persist_clean_dir(ctrs.records_dir);

    DIR *d = opendir(ctrs.records_dir);
    if (!d)
        return error_set(err, GRPC_INTERNAL, errno, "open %s", ctrs.records_dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!str_has_suffix(e->d_name, ".json") || persist_is_temp_name(e->d_name))
            continue;
        _cleanup_free_ char *path = ctr_path(ctrs.records_dir, e->d_name);
        _cleanup_error_ struct error *lerr = NULL;
        struct ctr *c = record_load(path, &lerr);
        if (!c) {
            persist_set_aside(ctrs.records_dir, e->d_name, "container", lerr);
            continue;
        }
        table_add(&ctrs.table, c);
    }
    closedir(d);
    for (size_t i = 0; i < ctrs.table.n; i++)
        reconcile(ctr_at(i));
    clean_orphans(ctrs.records_dir);
    clean_orphans(ctrs.states_dir);
    log_info("containers loaded count=%zu", ctrs.table.n);
    return 0;
}

void container_shutdown(void)
{
    /* Everyone still waiting hears UNAVAILABLE (the RPC layer is gone by now). */
    struct error *err = NULL;
    error_set(&err, GRPC_UNAVAILABLE, 0, "tinycrid is shutting down");
    ctr_creates_shutdown(err);
    struct exec_op *eo;
    while ((eo = TAILQ_FIRST(&ctrs.execs))) {
        container_exec_cb cb = eo->cb;
        void *arg = eo->arg;
        runtime_op_cancel(eo->op);
        exec_op_retire(eo);
        cb(NULL, err, arg);
    }
    keeper_ctl_abort_all(err);
    for (size_t i = 0; i < ctrs.table.n; i++) {
        notify_waiters(ctr_at(i), err);
        ctr_free(ctr_at(i));
    }
    error_free(err);
    table_clear(&ctrs.table);
    free(ctrs.records_dir);
    free(ctrs.states_dir);
    free(ctrs.keeper_path);
    memset(&ctrs, 0, sizeof(ctrs));
}
