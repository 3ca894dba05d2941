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
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/persist.h"
#include "core/util.h"
#include "image/store.h"
#include "pod/container.h"
#include "pod/oci_spec.h"
#include "pod/runtime.h"
#include "pod/sandbox.h"
#include "pod/volume.h"

extern char **environ;

#define RECORD_MAX (4 * 1024 * 1024)
#define IMAGE_CONFIG_MAX (4 * 1024 * 1024)
#define BUNDLE_CONFIG_MAX (4 * 1024 * 1024)
#define STATUS_LINE_MAX 4096
#define CREATE_TIMEOUT_MS (120 * 1000)
#define MOUNT_TIMEOUT_MS (60 * 1000)
#define SEED_TIMEOUT_MS (110 * 1000) /* the create deadline comes first */
#define RM_TIMEOUT_MS (10 * 60 * 1000)
#define KEEPER_EXIT_GRACE_MS 5000
#define REOPEN_TIMEOUT_MS 5000
#define EXIT_CODE_UNKNOWN 255
/* A sane cap; container sockets do not depend on it (see container_reopen_log). */
#define STATE_DIR_MAX 512
#define EXIT_CODE_START_ERROR 128
#define MOUNT_DATA_MAX 4000 /* one page, less a margin */

struct container_exit_waiter {
    struct container_exit_waiter *next;
    container_done_cb cb;
    void *arg;
};

static struct {
    const struct config *cfg;
    struct store *store;
    char *records_dir; /* <root_dir>/containers */
    char *states_dir;  /* <state_dir>/ctr */
    char *keeper_path;
    struct container **items;
    size_t n, alloc;
    struct create_op *creates;
    struct teardown *teardowns;
    struct exec_op *execs;
    struct reopen_op *reopens;
    struct stop_group *stops; /* sandboxes whose stop_all is running */
    uint64_t exec_seq;
} ctrs;

/* ---------------------------------------------------------------------- */
/* small helpers                                                           */
/* ---------------------------------------------------------------------- */

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64_encode(const uint8_t *data, size_t len)
{
    char *out = xmalloc((len + 2) / 3 * 4 + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < len)
            v |= data[i + 2];
        out[o++] = b64_chars[(v >> 18) & 63];
        out[o++] = b64_chars[(v >> 12) & 63];
        out[o++] = i + 1 < len ? b64_chars[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? b64_chars[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

static uint8_t *base64_decode(const char *s, size_t *len)
{
    size_t n = strlen(s);
    uint8_t *out = xmalloc(n / 4 * 3 + 3);
    size_t o = 0;
    uint32_t v = 0;
    int bits = 0;
    for (size_t i = 0; i < n && s[i] != '='; i++) {
        const char *p = strchr(b64_chars, s[i]);
        if (!p || !s[i]) {
            free(out);
            return NULL;
        }
        v = (v << 6) | (uint32_t)(p - b64_chars);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(v >> bits);
        }
    }
    *len = o;
    return out;
}

static char *new_id(void)
{
    uint8_t raw[32];
    size_t got = 0;
    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        assert_state(n > 0);
        got += (size_t)n;
    }
    char *id = xmalloc(65);
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(id + 2 * i, 3, "%02x", raw[i]);
    return id;
}

static bool is_id(const char *s)
{
    return strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

static void set_str(char **field, const char *value)
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
static int cri_signal(int value)
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

static char *path_in(const char *dir, const char *name)
{
    return xasprintf("%s/%s", dir, name);
}

static char *record_path(const char *id)
{
    return xasprintf("%s/%s.json", ctrs.records_dir, id);
}

static char *rootfs_path(const struct container *c)
{
    return path_in(c->root_dir, "rootfs");
}

/* ---------------------------------------------------------------------- */
/* objects and the table                                                   */
/* ---------------------------------------------------------------------- */

static struct container *container_new(const char *id)
{
    struct container *c = xcalloc(1, sizeof(*c));
    c->id = xstrdup(id);
    c->keeper_pidfd = -1;
    c->root_dir = path_in(ctrs.records_dir, id);
    c->state_dir = path_in(ctrs.states_dir, id);
    c->reason = xstrdup("");
    c->message = xstrdup("");
    c->log_path = xstrdup("");
    c->stop_signal = SIGTERM;
    return c;
}

static void unwatch_keeper(struct container *c)
{
    if (c->keeper_ev) {
        event_free(c->keeper_ev);
        c->keeper_ev = NULL;
    }
    if (c->keeper_pidfd >= 0)
        close(c->keeper_pidfd);
    c->keeper_pidfd = -1;
}

static void container_free(void *obj)
{
    struct container *c = obj;
    if (!c)
        return;
    unwatch_keeper(c);
    loop_timer_free(c->kill_timer);
    while (c->waiters) {
        struct container_exit_waiter *w = c->waiters;
        c->waiters = w->next;
        free(w);
    }
    free(c->id);
    free(c->sandbox_id);
    if (c->config)
        protobuf_c_message_free_unpacked(&c->config->base, NULL);
    free(c->image_ref);
    free(c->image_id);
    for (size_t i = 0; i < c->n_layers; i++)
        free(c->chain_ids[i]);
    free(c->chain_ids);
    free(c->runtime);
    free(c->reason);
    free(c->message);
    free(c->log_path);
    free(c->root_dir);
    free(c->state_dir);
    free(c);
}

static void table_add(struct container *c)
{
    if (ctrs.n == ctrs.alloc) {
        ctrs.alloc = ctrs.alloc ? ctrs.alloc * 2 : 16;
        ctrs.items = xrealloc(ctrs.items, ctrs.alloc * sizeof(*ctrs.items));
    }
    ctrs.items[ctrs.n++] = c;
}

static void table_del(struct container *c)
{
    for (size_t i = 0; i < ctrs.n; i++) {
        if (ctrs.items[i] == c) {
            memmove(&ctrs.items[i], &ctrs.items[i + 1], (ctrs.n - i - 1) * sizeof(*ctrs.items));
            ctrs.n--;
            return;
        }
    }
}

struct container *container_at(size_t i)
{
    return i < ctrs.n ? ctrs.items[i] : NULL;
}

struct container *container_find(const char *id)
{
    if (!id || !*id)
        return NULL;
    struct container *found = NULL;
    size_t len = strlen(id);
    for (size_t i = 0; i < ctrs.n; i++) {
        struct container *c = ctrs.items[i];
        if (strcmp(c->id, id) == 0)
            return c;
        if (strncmp(c->id, id, len) == 0) {
            if (found)
                return NULL; /* ambiguous */
            found = c;
        }
    }
    return found;
}

/* ---------------------------------------------------------------------- */
/* records                                                                 */
/* ---------------------------------------------------------------------- */

static json_t *record_json(const struct container *c)
{
    json_t *o = json_object();
    size_t len = protobuf_c_message_get_packed_size(&c->config->base);
    _cleanup_free_ uint8_t *packed = xmalloc(len ? len : 1);
    protobuf_c_message_pack(&c->config->base, packed);
    _cleanup_free_ char *b64 = base64_encode(packed, len);
    json_t *layers = json_array();
    for (size_t i = 0; i < c->n_layers; i++)
        json_array_append_new(layers, json_string(c->chain_ids[i]));
    json_object_set_new(o, "id", json_string(c->id));
    json_object_set_new(o, "sandboxId", json_string(c->sandbox_id));
    json_object_set_new(o, "name", json_string(c->config->metadata->name));
    json_object_set_new(o, "attempt", json_integer(c->config->metadata->attempt));
    json_object_set_new(o, "config", json_string(b64));
    json_object_set_new(o, "imageRef", json_string(c->image_ref));
    json_object_set_new(o, "imageId", json_string(c->image_id));
    json_object_set_new(o, "chainIds", layers);
    json_object_set_new(o, "runtime", json_string(c->runtime));
    json_object_set_new(o, "state", json_string(container_state_name(c->state)));
    json_object_set_new(o, "createdAt", json_integer(c->created_ns));
    json_object_set_new(o, "startedAt", json_integer(c->started_ns));
    json_object_set_new(o, "finishedAt", json_integer(c->finished_ns));
    json_object_set_new(o, "exitCode", json_integer(c->exit_code));
    json_object_set_new(o, "reason", json_string(c->reason));
    json_object_set_new(o, "message", json_string(c->message));
    json_object_set_new(o, "logPath", json_string(c->log_path));
    json_object_set_new(o, "stopSignal", json_integer(c->stop_signal));
    json_object_set_new(o, "pid", json_integer(c->pid));
    json_object_set_new(o, "keeperPid", json_integer(c->keeper_pid));
    json_object_set_new(o, "rootDir", json_string(c->root_dir));
    json_object_set_new(o, "stateDir", json_string(c->state_dir));
    return o;
}

/* Write the record (every change goes through here). */
static int container_save(const struct container *c, struct error **err)
{
    _cleanup_json_ json_t *o = record_json(c);
    _cleanup_free_ char *text = json_dumps(o, JSON_COMPACT);
    if (!text)
        return error_set(err, GRPC_INTERNAL, 0, "encode the record of container %s", c->id);
    _cleanup_free_ char *path = record_path(c->id);
    return persist_write(path, text, strlen(text), 0600, err);
}

/* A save whose failure is only logged (the state in memory stays right). */
static void save_or_log(const struct container *c)
{
    _cleanup_error_ struct error *err = NULL;
    if (container_save(c, &err) < 0)
        log_error("could not save the container record container=%s: %s", c->id, err->msg);
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static struct container *record_load(const char *path, struct error **err)
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
    if (!is_id(id))
        return error_set(err, GRPC_DATA_LOSS, 0, "%s: bad id", path), NULL;
    size_t plen = 0;
    _cleanup_free_ uint8_t *packed = base64_decode(jstr(o, "config"), &plen);
    Runtime__V1__ContainerConfig *config =
        packed ? runtime__v1__container_config__unpack(NULL, plen, packed) : NULL;
    if (!config || !config->metadata)
        return error_set(err, GRPC_DATA_LOSS, 0, "%s: unreadable config", path), NULL;
    struct container *c = container_new(id);
    c->config = config;
    c->sandbox_id = xstrdup(jstr(o, "sandboxId"));
    c->image_ref = xstrdup(jstr(o, "imageRef"));
    c->image_id = xstrdup(jstr(o, "imageId"));
    c->runtime = xstrdup(jstr(o, "runtime"));
    const json_t *layers = json_object_get(o, "chainIds");
    c->n_layers = json_array_size(layers);
    c->chain_ids = xcalloc(c->n_layers ? c->n_layers : 1, sizeof(char *));
    for (size_t i = 0; i < c->n_layers; i++) {
        const char *s = json_string_value(json_array_get(layers, i));
        c->chain_ids[i] = xstrdup(s ? s : "");
    }
    if (state_parse(jstr(o, "state"), &c->state) < 0) {
        container_free(c);
        return error_set(err, GRPC_DATA_LOSS, 0, "%s: bad state", path), NULL;
    }
    c->created_ns = json_integer_value(json_object_get(o, "createdAt"));
    c->started_ns = json_integer_value(json_object_get(o, "startedAt"));
    c->finished_ns = json_integer_value(json_object_get(o, "finishedAt"));
    c->exit_code = (int)json_integer_value(json_object_get(o, "exitCode"));
    set_str(&c->reason, jstr(o, "reason"));
    set_str(&c->message, jstr(o, "message"));
    set_str(&c->log_path, jstr(o, "logPath"));
    c->stop_signal = (int)json_integer_value(json_object_get(o, "stopSignal"));
    if (c->stop_signal <= 0)
        c->stop_signal = SIGTERM;
    c->pid = (int)json_integer_value(json_object_get(o, "pid"));
    c->keeper_pid = (int)json_integer_value(json_object_get(o, "keeperPid"));
    return c;
}

/* ---------------------------------------------------------------------- */
/* the lifecycle                                                           */
/* ---------------------------------------------------------------------- */

static bool transition_ok(enum container_state from, enum container_state to)
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

static void after_exit(struct container *c);

int container_set_state(struct container *c, enum container_state s, struct error **err)
{
    if (!transition_ok(c->state, s))
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "container %s is %s, cannot become %s",
                         c->id, container_state_name(c->state), container_state_name(s));
    enum container_state old = c->state;
    c->state = s;
    log_info("container state container=%s from=%s to=%s", c->id, container_state_name(old),
             container_state_name(s));
    save_or_log(c);
    if (s == CONTAINER_EXITED)
        after_exit(c);
    return 0;
}

static void add_waiter(struct container *c, container_done_cb cb, void *arg)
{
    struct container_exit_waiter *w = xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    w->next = c->waiters;
    c->waiters = w;
}

/* Tell everyone waiting for the exit (err: the stop failed). c may go away in a callback. */
static void notify_waiters(struct container *c, const struct error *err)
{
    struct container_exit_waiter *w = steal_ptr(&c->waiters);
    while (w) {
        struct container_exit_waiter *next = w->next;
        w->cb(err, w->arg);
        free(w);
        w = next;
    }
}

static void on_deleted_after_exit(const struct runtime_result *res, void *arg)
{
    char *id = arg;
    if (res->err)
        log_debug("runtime delete after exit failed container=%s: %s", id, res->err->msg);
    free(id);
}

/* EXITED: no SIGKILL pending, the runtime's state and cgroup released, waiters told. */
static void after_exit(struct container *c)
{
    c->kill_at_ns = 0;
    if (c->kill_timer)
        loop_timer_disarm(c->kill_timer);
    _cleanup_error_ struct error *tmp = NULL;
    char *id = xstrdup(c->id);
    if (!runtime_delete(c->runtime, c->id, on_deleted_after_exit, id, &tmp)) {
        log_debug("runtime delete after exit not started container=%s: %s", c->id, tmp->msg);
        free(id);
    }
    notify_waiters(c, NULL);
}

/* exit.json written by the keeper: fill the exit fields; -1 when missing or unreadable. */
static int read_exit_record(struct container *c)
{
    _cleanup_free_ char *path = path_in(c->state_dir, "exit.json");
    _cleanup_error_ struct error *tmp = NULL;
    size_t len = 0;
    _cleanup_free_ char *text = read_file_capped(path, 4096, &len, &tmp);
    if (!text)
        return -1;
    json_error_t jerr;
    _cleanup_json_ json_t *o = json_loadb(text, len, 0, &jerr);
    if (!json_is_object(o) || !json_is_integer(json_object_get(o, "exitCode")))
        return -1;
    c->exit_code = (int)json_integer_value(json_object_get(o, "exitCode"));
    c->finished_ns = json_integer_value(json_object_get(o, "finishedAt"));
    if (c->finished_ns <= 0)
        c->finished_ns = now_realtime_ns();
    bool oom = json_is_true(json_object_get(o, "oomKilled"));
    /* A start that failed already said why. */
    if (strcmp(c->reason, "StartError") != 0)
        set_str(&c->reason, oom ? "OOMKilled" : c->exit_code == 0 ? "Completed" : "Error");
    return 0;
}

static void on_unknown_deleted(const struct runtime_result *res, void *arg)
{
    char *id = arg;
    struct container *c = container_find(id);
    if (c && c->state == CONTAINER_UNKNOWN) {
        if (res->err) {
            notify_waiters(c, res->err);
        } else {
            c->finished_ns = now_realtime_ns();
            _cleanup_error_ struct error *tmp = NULL;
            container_set_state(c, CONTAINER_EXITED, &tmp);
        }
    }
    free(id);
}

/* UNKNOWN: nobody will report the exit. Make sure it is dead, then call it exited. */
static void stop_unknown(struct container *c)
{
    char *id = xstrdup(c->id);
    _cleanup_error_ struct error *err = NULL;
    if (!runtime_delete(c->runtime, c->id, on_unknown_deleted, id, &err)) {
        free(id);
        notify_waiters(c, err);
    }
}

/* The keeper is gone: record the exit (or that we do not know it). */
static void keeper_gone(struct container *c)
{
    unwatch_keeper(c);
    /* A start in flight finishes first (its callback comes back here). */
    if (c->start_op || c->state == CONTAINER_EXITED || c->state == CONTAINER_UNKNOWN)
        return;
    _cleanup_error_ struct error *err = NULL;
    if (read_exit_record(c) == 0) {
        /* A very short command can end before `runtime start` has returned. */
        if (c->state == CONTAINER_RUNNING && (c->started_ns == 0 || c->started_ns > c->finished_ns))
            c->started_ns = c->finished_ns;
        container_set_state(c, CONTAINER_EXITED, &err);
        return;
    }
    c->exit_code = EXIT_CODE_UNKNOWN;
    set_str(&c->reason, "Unknown");
    set_str(&c->message, "the container's keeper exited without recording the exit");
    log_warn("keeper gone without an exit record container=%s", c->id);
    container_set_state(c, CONTAINER_UNKNOWN, &err);
    /* A stop in progress would otherwise wait for an exit nobody will report. */
    if (c->waiters)
        stop_unknown(c);
}

/* The event belongs to c (freed with it), so c is alive whenever it fires. */
static void on_keeper_exit(evutil_socket_t fd, short what, void *arg)
{
    struct container *c = arg;
    /* Our child when we started it; after a restart it is not, and init reaps it. */
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    waitid(P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG);
    log_debug("keeper exited container=%s keeper=%d", c->id, c->keeper_pid);
    keeper_gone(c);
}

/* Watch the keeper through pidfd (taken, also on failure). */
static int watch_keeper(struct container *c, int pidfd, struct error **err)
{
    c->keeper_pidfd = pidfd;
    c->keeper_ev = event_new(loop_base(), pidfd, EV_READ, on_keeper_exit, c);
    if (!c->keeper_ev || event_add(c->keeper_ev, NULL) < 0) {
        unwatch_keeper(c);
        return error_set(err, GRPC_INTERNAL, 0, "watch the keeper of %s", c->id);
    }
    return 0;
}

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
    struct teardown *prev, *next;
    enum teardown_state state;
    char *id;
    char *runtime; /* NULL: nothing to delete in the runtime */
    char *root_dir;
    char *state_dir;
    int keeper_pidfd;
    struct event *keeper_ev;
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
    if (td->prev)
        td->prev->next = td->next;
    else
        ctrs.teardowns = td->next;
    if (td->next)
        td->next->prev = td->prev;
    if (td->keeper_ev)
        event_free(td->keeper_ev);
    td->keeper_ev = NULL;
    if (td->keeper_pidfd >= 0)
        close(td->keeper_pidfd);
    td->keeper_pidfd = -1;
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

static void on_td_keeper_exit(evutil_socket_t fd, short what, void *arg)
{
    struct teardown *td = arg;
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    waitid(P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG);
    event_free(td->keeper_ev);
    td->keeper_ev = NULL;
    close(td->keeper_pidfd);
    td->keeper_pidfd = -1;
    teardown_step(td);
}

static void on_td_timer(void *arg)
{
    struct teardown *td = arg;
    if (td->keeper_pidfd >= 0 && !td->keeper_killed) {
        log_warn("keeper still running, killing it container=%s", td->id);
        pidfd_send_signal(td->keeper_pidfd, SIGKILL, NULL, 0);
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
        if (td->keeper_pidfd >= 0) {
            if (!td->keeper_ev) {
                td->keeper_ev =
                    event_new(loop_base(), td->keeper_pidfd, EV_READ, on_td_keeper_exit, td);
                if (td->keeper_ev && event_add(td->keeper_ev, NULL) == 0) {
                    td->timer = loop_timer_new(on_td_timer, td);
                    loop_timer_arm(td->timer, KEEPER_EXIT_GRACE_MS);
                    return;
                }
                log_warn("cannot watch the keeper container=%s", td->id);
                pidfd_send_signal(td->keeper_pidfd, SIGKILL, NULL, 0);
            } else {
                return;
            }
        }
        td->state = TD_REMOVE;
        {
            _cleanup_free_ char *rootfs = path_in(td->root_dir, "rootfs");
            if (umount2(rootfs, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
                log_warn("umount %s: %s", rootfs, strerror(errno));
            char *argv[] = {(char *)"/bin/rm", (char *)"-rf", (char *)"--one-file-system",
                            td->root_dir,      td->state_dir, NULL};
            struct child_opts o = {.argv = argv, .timeout_ms = RM_TIMEOUT_MS};
            td->rm = child_spawn(&o, on_td_removed, td, &tmp);
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

/*
 * Undo everything a container may have: runtime state (runtime may be NULL),
 * the keeper (pidfd taken, -1: none), the rootfs mount, both directories.
 * cb (may be NULL) runs when done.
 */
static void teardown_start(const char *id, const char *runtime, int keeper_pidfd,
                           void (*cb)(void *arg), void *arg)
{
    struct teardown *td = xcalloc(1, sizeof(*td));
    td->id = xstrdup(id);
    td->runtime = runtime ? xstrdup(runtime) : NULL;
    td->root_dir = path_in(ctrs.records_dir, id);
    td->state_dir = path_in(ctrs.states_dir, id);
    td->keeper_pidfd = keeper_pidfd;
    td->cb = cb;
    td->arg = arg;
    td->state = TD_DELETE;
    td->next = ctrs.teardowns;
    if (ctrs.teardowns)
        ctrs.teardowns->prev = td;
    ctrs.teardowns = td;
    teardown_step(td);
}

/* Take c out of the table and tear it down; its record goes first. */
static void container_detach_and_teardown(struct container *c, void (*cb)(void *arg), void *arg)
{
    _cleanup_free_ char *rec = record_path(c->id);
    _cleanup_error_ struct error *tmp = NULL;
    if (persist_remove(rec, &tmp) < 0)
        log_warn("could not remove the record container=%s: %s", c->id, tmp->msg);
    table_del(c);
    notify_waiters(c, NULL);
    int pidfd = c->keeper_pidfd >= 0 ? dup(c->keeper_pidfd) : -1;
    if (pidfd >= 0)
        fd_set_cloexec(pidfd, true);
    unwatch_keeper(c);
    log_info("container removed container=%s", c->id);
    teardown_start(c->id, c->runtime, pidfd, cb, arg);
    loop_defer_free(container_free, c);
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
    struct create_op *prev, *next;
    enum create_state state;
    struct container *c; /* owned until it enters the table */
    json_t *image_config;
    struct child *mount;
    struct child *seed;
    struct error *fail; /* why it failed, once it has */
    int status_fd;      /* read end of the keeper's fd 3; -1 once the line is in */
    struct event *status_ev;
    struct buf status;
    int keeper_pidfd; /* -1 before the keeper runs and once it has exited */
    struct event *keeper_ev;
    struct loop_timer *deadline;
    struct container_exit_waiter *undo_waiters; /* told when the undo has finished */
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
    error_free(op->fail);
    container_free(op->c);
    free(op);
}

/* Out of the list, watchers and children gone; the memory goes once the callers return. */
static void create_op_retire(struct create_op *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        ctrs.creates = op->next;
    if (op->next)
        op->next->prev = op->prev;
    if (op->status_ev)
        event_free(op->status_ev);
    op->status_ev = NULL;
    if (op->status_fd >= 0)
        close(op->status_fd);
    op->status_fd = -1;
    if (op->keeper_ev)
        event_free(op->keeper_ev);
    op->keeper_ev = NULL;
    if (op->keeper_pidfd >= 0)
        close(op->keeper_pidfd);
    op->keeper_pidfd = -1;
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
    while (op->undo_waiters) {
        struct container_exit_waiter *w = op->undo_waiters;
        op->undo_waiters = w->next;
        w->cb(err, w->arg);
        free(w);
    }
}

/* Record the first failure; later ones are consequences. */
static void create_failed(struct create_op *op, struct error *e)
{
    if (!op->fail)
        op->fail = e;
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
        create_failed(op, e);
    }
    create_step(op);
}

static int start_mount(struct create_op *op, struct error **err)
{
    struct container *c = op->c;
    struct buf data;
    buf_init(&data, MOUNT_DATA_MAX);
    int rc = buf_append(&data, "lowerdir=", 9);
    /* Top layer first. */
    for (size_t i = c->n_layers; i-- > 0 && rc == 0;) {
        const char *colon = strchr(c->chain_ids[i], ':');
        const char *hex = colon ? colon + 1 : c->chain_ids[i];
        if (i != c->n_layers - 1)
            rc = buf_append(&data, ":", 1);
        if (rc == 0)
            rc = buf_append(&data, hex, strlen(hex));
    }
    _cleanup_free_ char *rest =
        xasprintf(",upperdir=%s/upper,workdir=%s/work", c->root_dir, c->root_dir);
    if (rc == 0)
        rc = buf_append(&data, rest, strlen(rest));
    if (rc < 0) {
        buf_free(&data);
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0,
                         "the image has too many layers (%zu) for one overlay mount", c->n_layers);
    }
    _cleanup_free_ char *text = buf_take_str(&data, NULL);
    buf_free(&data);
    _cleanup_free_ char *layers_dir = path_in(store_root(ctrs.store), "layers");
    _cleanup_free_ char *target = rootfs_path(c);
    struct mount_args m = {layers_dir, target, text};
    char *argv[] = {(char *)"/bin/true", NULL};
    struct child_opts o = {
        .argv = argv,
        .timeout_ms = MOUNT_TIMEOUT_MS,
        .in_child = mount_in_child,
        .in_child_arg = &m,
    };
    op->mount = child_spawn(&o, on_mounted, op, err);
    return op->mount ? 0 : -1;
}

static void on_seeded(const struct child_result *res, void *arg)
{
    struct create_op *op = arg;
    op->seed = NULL;
    struct error *e = NULL;
    if (volume_seed_result(res, &e) < 0)
        create_failed(op, e);
    create_step(op);
}

/*
 * Seed the image's volumes from the mounted rootfs in a child (pod/volume).
 * Returns 1 when the child runs, 0 when the image declares no volume.
 */
static int start_seed(struct create_op *op, struct error **err)
{
    struct container *c = op->c;
    struct oci_spec_volumes vols __attribute__((cleanup(oci_spec_volumes_clear))) = {0};
    if (oci_spec_image_volumes(c->config, op->image_config, &vols, err) < 0)
        return -1;
    if (vols.n == 0)
        return 0;
    _cleanup_free_ char *rootfs = rootfs_path(c);
    _cleanup_free_ char *volumes = path_in(c->root_dir, "volumes");
    struct volume_job job = {rootfs, volumes, vols.paths, vols.names, vols.n};
    char *argv[] = {(char *)"/bin/true", NULL};
    struct child_opts o = {
        .argv = argv,
        .timeout_ms = SEED_TIMEOUT_MS,
        .in_child = volume_seed_child,
        .in_child_arg = &job,
    };
    op->seed = child_spawn(&o, on_seeded, op, err);
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
    struct container *t = container_find(nso->target_id);
    if (t && strcmp(t->sandbox_id, sandbox_id) != 0)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "linux.security_context.namespace_options.target_id: container %s "
                         "belongs to another pod",
                         nso->target_id),
               NULL;
    if (!t || t->state != CONTAINER_RUNNING || t->pid <= 0)
        return error_set(err, GRPC_NOT_FOUND, 0, "target container %s is not running",
                         nso->target_id),
               NULL;
    return xasprintf("/proc/%d/ns/pid", t->pid);
}

/* Build config.json into the bundle; *cgroup_path gets linux.cgroupsPath (owned). */
static int write_bundle(struct create_op *op, char **cgroup_path, struct error **err)
{
    struct container *c = op->c;
    struct sandbox *sb = sandbox_find(c->sandbox_id);
    if (!sb || strcmp(sb->id, c->sandbox_id) != 0)
        return error_set(err, GRPC_NOT_FOUND, 0, "sandbox %s is gone", c->sandbox_id);
    _cleanup_error_ struct error *terr = NULL;
    _cleanup_free_ char *target = target_pid_ns(c->config, sb->id, &terr);
    if (terr)
        return error_set(err, terr->grpc_code, 0, "%s", terr->msg);
    _cleanup_free_ char *rootfs = rootfs_path(c);
    _cleanup_free_ char *volumes = path_in(c->root_dir, "volumes");
    struct oci_spec_input in = {
        .ctr = c->config,
        .pod = sb->config,
        .image_config = op->image_config,
        .container_id = c->id,
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
    _cleanup_free_ char *path = path_in(c->state_dir, "config.json");
    return persist_write(path, text, strlen(text), 0600, err);
}

/* In the keeper's child: its fds 0-3 in place, signals as a fresh process has them. */
__attribute__((noreturn)) static void exec_keeper(char **argv, int null_fd, int log_fd,
                                                  int status_fd)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < _NSIG; sig++)
        sigaction(sig, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /*
     * The daemon may run with a very low oom_score_adj (-999 under systemd); the keeper
     * keeps one step less of that protection, as containerd's shims do. Containers get
     * the kubelet's score from the spec (or inherit the keeper's when it is negative).
     */
    int oom_fd = open("/proc/self/oom_score_adj", O_RDWR | O_CLOEXEC);
    if (oom_fd >= 0) {
        char buf[16] = {0};
        ssize_t n = read(oom_fd, buf, sizeof(buf) - 1);
        int score = n > 0 ? atoi(buf) : 0;
        if (score < 0) {
            n = snprintf(buf, sizeof(buf), "%d", score + 1);
            (void)!pwrite(oom_fd, buf, (size_t)n, 0);
        }
        close(oom_fd);
    }
    int fds[4] = {null_fd, null_fd, log_fd, status_fd};
    for (int i = 0; i < 4; i++) {
        if (fds[i] <= 3)
            fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 4);
        if (fds[i] < 0)
            _exit(127);
    }
    for (int i = 0; i < 4; i++) {
        if (dup2(fds[i], i) < 0)
            _exit(127);
    }
    execve(argv[0], argv, environ);
    dprintf(2, "tinycrid: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static void on_status_readable(evutil_socket_t fd, short what, void *arg);
static void on_create_keeper_exit(evutil_socket_t fd, short what, void *arg);

static int spawn_keeper(struct create_op *op, const char *cgroup_path, struct error **err)
{
    struct container *c = op->c;
    const char *rt_path = runtime_handler_path(c->runtime);
    const char *rt_root = runtime_handler_root(c->runtime);
    if (!rt_path)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "runtime handler %s is gone",
                         c->runtime);
    const char *log = *c->log_path ? c->log_path : "/dev/null";
    char *argv[24];
    size_t n = 0;
    argv[n++] = ctrs.keeper_path;
    argv[n++] = (char *)"--id";
    argv[n++] = c->id;
    argv[n++] = (char *)"--bundle";
    argv[n++] = c->state_dir;
    argv[n++] = (char *)"--runtime";
    argv[n++] = (char *)rt_path;
    argv[n++] = (char *)"--runtime-root";
    argv[n++] = (char *)rt_root;
    argv[n++] = (char *)"--state-dir";
    argv[n++] = c->state_dir;
    argv[n++] = (char *)"--log-path";
    argv[n++] = (char *)log;
    if (c->config->tty)
        argv[n++] = (char *)"--tty";
    if (c->config->stdin)
        argv[n++] = (char *)"--stdin";
    if (c->config->stdin_once)
        argv[n++] = (char *)"--stdin-once";
    if (cgroup_path) {
        argv[n++] = (char *)"--cgroup-path";
        argv[n++] = (char *)cgroup_path;
    }
    argv[n] = NULL;

    _cleanup_free_ char *log_file = path_in(c->state_dir, "keeper.log");
    _cleanup_close_ int log_fd =
        open(log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    _cleanup_close_ int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (log_fd < 0 || null_fd < 0)
        return error_set(err, GRPC_INTERNAL, errno, "open the keeper's stdio");
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return error_set(err, GRPC_INTERNAL, errno, "pipe");
    _cleanup_close_ int status_r = p[0], status_w = p[1];
    pid_t pid = fork();
    if (pid < 0)
        return error_set(err, GRPC_INTERNAL, errno, "fork the keeper");
    if (pid == 0)
        exec_keeper(argv, null_fd, log_fd, status_w);
    /* Not reaped before its pidfd says so: opening it now cannot race a reused pid. */
    int pidfd = pidfd_open(pid, 0);
    if (pidfd < 0) {
        error_set(err, GRPC_INTERNAL, errno, "pidfd_open the keeper");
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        return -1;
    }
    c->keeper_pid = pid;
    op->keeper_pidfd = pidfd;
    op->status_fd = steal_fd(&status_r);
    fd_set_nonblock(op->status_fd, true);
    op->status_ev =
        event_new(loop_base(), op->status_fd, EV_READ | EV_PERSIST, on_status_readable, op);
    op->keeper_ev = event_new(loop_base(), op->keeper_pidfd, EV_READ, on_create_keeper_exit, op);
    if (!op->status_ev || !op->keeper_ev || event_add(op->status_ev, NULL) < 0 ||
        event_add(op->keeper_ev, NULL) < 0)
        return error_set(err, GRPC_INTERNAL, 0, "watch the keeper");
    log_debug("keeper started container=%s keeper=%d", c->id, (int)pid);
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

static void on_create_keeper_exit(evutil_socket_t fd, short what, void *arg)
{
    struct create_op *op = arg;
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    waitid(P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG);
    event_free(op->keeper_ev);
    op->keeper_ev = NULL;
    close(op->keeper_pidfd);
    op->keeper_pidfd = -1;
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
    create_failed(op, e);
    if (op->keeper_pidfd >= 0)
        pidfd_send_signal(op->keeper_pidfd, SIGKILL, NULL, 0);
    create_step(op);
}

/* The tail of keeper.log, for an error message (owned; "" when empty). */
static char *keeper_log_tail(const struct container *c)
{
    _cleanup_free_ char *path = path_in(c->state_dir, "keeper.log");
    _cleanup_error_ struct error *tmp = NULL;
    size_t len = 0;
    _cleanup_free_ char *text = read_file_capped(path, 64 * 1024, &len, &tmp);
    if (!text)
        return xstrdup("");
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
        text[--len] = '\0';
    const char *start = len > 512 ? text + len - 512 : text;
    char *out = xstrdup(start);
    for (char *p = out; *p; p++) {
        if (*p == '\n')
            *p = ' ';
    }
    return out;
}

/* Parse the status line; 0 with c->pid set on "created pid=N". */
static int parse_status(struct create_op *op, struct error **err)
{
    const char *line = op->status.data ? op->status.data : "";
    size_t len = strcspn(line, "\n");
    int pid = 0;
    char tail;
    if (sscanf(line, "created pid=%d%c", &pid, &tail) == 2 && tail == '\n' && pid > 1) {
        op->c->pid = pid;
        return 0;
    }
    if (str_has_prefix(line, "error "))
        return error_set(err, GRPC_INTERNAL, 0, "create the container: %.*s", (int)len - 6,
                         line + 6);
    _cleanup_free_ char *tail_text = keeper_log_tail(op->c);
    return error_set(err, GRPC_INTERNAL, 0, "the keeper exited without reporting%s%s",
                     *tail_text ? ": " : "", tail_text);
}

static void on_undone(void *arg)
{
    struct create_op *op = arg;
    log_info("container create failed container=%s: %s", op->c->id, op->fail->msg);
    create_op_retire(op);
    op->cb(NULL, op->fail, op->arg);
    notify_undo_waiters(op, NULL);
}

/* The container is CREATED: into the table, record written, keeper watched. */
static int create_finish(struct create_op *op, struct error **err)
{
    struct container *c = op->c;
    struct sandbox *sb = sandbox_find(c->sandbox_id);
    if (!sb || strcmp(sb->id, c->sandbox_id) != 0)
        return error_set(err, GRPC_NOT_FOUND, 0, "sandbox %s was removed", c->sandbox_id);
    c->state = CONTAINER_CREATED;
    c->created_ns = now_realtime_ns();
    if (container_save(c, err) < 0)
        return -1;
    op->c = NULL;
    table_add(c);
    if (op->keeper_ev) {
        event_free(op->keeper_ev);
        op->keeper_ev = NULL;
    }
    _cleanup_error_ struct error *werr = NULL;
    int pidfd = steal_fd(&op->keeper_pidfd);
    if (pidfd >= 0 && watch_keeper(c, pidfd, &werr) < 0)
        log_error("container=%s: %s", c->id, werr->msg);
    log_info("container created container=%s sandbox=%s name=%s image=%s runtime=%s pid=%d "
             "keeper=%d",
             c->id, c->sandbox_id, c->config->metadata->name, c->image_ref, c->runtime, c->pid,
             c->keeper_pid);
    if (c->keeper_pidfd < 0)
        keeper_gone(c);
    return 0;
}

static void create_step(struct create_op *op)
{
    _cleanup_free_ char *cgroup_path = NULL;
    struct error *e = NULL;
    switch (op->state) {
    case CREATE_MOUNT: /* waiting for the mount child, also after a failure: killed, it may still
                          mount */
        if (op->mount)
            return;
        if (op->fail)
            break;
        op->state = CREATE_VOLUMES;
        {
            int seeding = start_seed(op, &e);
            if (seeding < 0) {
                create_failed(op, e);
                break;
            }
            if (seeding)
                return;
        }
        /* fall through */
    case CREATE_VOLUMES: /* waiting for the seed child; after a failure, for it to be killed
                            (nothing may write into the volumes once the undo removes them) */
        if (op->seed) {
            if (op->fail)
                child_signal(op->seed, SIGKILL);
            return;
        }
        if (op->fail)
            break;
        if (write_bundle(op, &cgroup_path, &e) < 0 || spawn_keeper(op, cgroup_path, &e) < 0) {
            create_failed(op, e);
            break;
        }
        op->state = CREATE_KEEPER;
        /* fall through */
    case CREATE_KEEPER: /* waiting for the status line (or the keeper's exit), also after a failure:
                           `runtime delete` must not overtake `runtime create` */
        if (op->status_fd >= 0)
            return;
        if (op->fail)
            break;
        {
            _cleanup_free_ char *id = xstrdup(op->c->id);
            if (parse_status(op, &e) < 0 || create_finish(op, &e) < 0) {
                create_failed(op, e);
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
    if (op->keeper_ev) {
        event_free(op->keeper_ev);
        op->keeper_ev = NULL;
    }
    int pidfd = steal_fd(&op->keeper_pidfd);
    teardown_start(op->c->id, pidfd >= 0 || op->c->keeper_pid > 0 ? op->c->runtime : NULL, pidfd,
                   on_undone, op);
}

static bool name_taken(const char *sandbox_id, const Runtime__V1__ContainerMetadata *m)
{
    for (size_t i = 0; i < ctrs.n; i++) {
        const struct container *c = ctrs.items[i];
        if (strcmp(c->sandbox_id, sandbox_id) == 0 &&
            strcmp(c->config->metadata->name, m->name) == 0 &&
            c->config->metadata->attempt == m->attempt)
            return true;
    }
    for (const struct create_op *op = ctrs.creates; op; op = op->next) {
        const struct container *c = op->c;
        if (c && strcmp(c->sandbox_id, sandbox_id) == 0 &&
            strcmp(c->config->metadata->name, m->name) == 0 &&
            c->config->metadata->attempt == m->attempt)
            return true;
    }
    return false;
}

static bool has_dotdot(const char *p)
{
    for (const char *s = p; (s = strstr(s, "..")) != NULL; s += 2) {
        if ((s == p || s[-1] == '/') && (s[2] == '\0' || s[2] == '/'))
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

static bool is_being_stopped(const char *sandbox_id);

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
    if (is_being_stopped(sb->id))
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
    if (config->log_path && has_dotdot(config->log_path))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "log path %s has a \"..\" component",
                         config->log_path);
    _cleanup_json_ json_t *image_config = image_config_json(img, err);
    if (!image_config)
        return -1;

    _cleanup_free_ char *id = new_id();
    struct container *c = container_new(id);
    c->sandbox_id = xstrdup(sb->id);
    c->config = config_dup(config);
    c->image_ref = xstrdup(config->image->image);
    c->image_id = xstrdup(img->id);
    c->n_layers = img->n_layers;
    c->chain_ids = xcalloc(img->n_layers ? img->n_layers : 1, sizeof(char *));
    for (size_t i = 0; i < img->n_layers; i++)
        c->chain_ids[i] = xstrdup(img->chain_ids[i]);
    c->runtime = xstrdup(handler);
    int sig = cri_signal(config->stop_signal);
    if (sig <= 0) {
        const json_t *ic = json_object_get(image_config, "config");
        sig = runtime_signal_parse(json_string_value(json_object_get(ic, "StopSignal")));
    }
    c->stop_signal = sig > 0 ? sig : SIGTERM;
    if (log_dir && *log_dir && config->log_path && *config->log_path) {
        free(c->log_path);
        c->log_path = xasprintf("%s/%s", log_dir, config->log_path);
    }

    struct create_op *op = xcalloc(1, sizeof(*op));
    op->c = c;
    op->state = CREATE_MOUNT;
    op->status_fd = op->keeper_pidfd = -1;
    buf_init(&op->status, STATUS_LINE_MAX);
    op->image_config = json_incref(image_config);
    op->cb = cb;
    op->arg = arg;
    op->next = ctrs.creates;
    if (ctrs.creates)
        ctrs.creates->prev = op;
    ctrs.creates = op;

    const char *sub[] = {"upper", "work", "rootfs"};
    int rc = mkdir(c->root_dir, 0700) < 0
                 ? error_set(err, GRPC_INTERNAL, errno, "mkdir %s", c->root_dir)
                 : 0;
    for (size_t i = 0; i < ARRAY_SIZE(sub) && rc == 0; i++) {
        _cleanup_free_ char *p = path_in(c->root_dir, sub[i]);
        if (mkdir(p, i == 1 ? 0700 : 0755) < 0)
            rc = error_set(err, GRPC_INTERNAL, errno, "mkdir %s", p);
    }
    if (rc == 0 && mkdir(c->state_dir, 0700) < 0)
        rc = error_set(err, GRPC_INTERNAL, errno, "mkdir %s", c->state_dir);
    if (rc == 0 && *c->log_path) {
        _cleanup_free_ char *dir = xstrdup(c->log_path);
        *strrchr(dir, '/') = '\0';
        if (*dir)
            rc = mkdir_p(dir, 0755, err);
    }
    if (rc == 0)
        rc = start_mount(op, err);
    if (rc < 0) {
        /* Nothing runs yet: remove what was made, in the background. */
        teardown_start(c->id, NULL, -1, NULL, NULL);
        create_op_retire(op);
        return -1;
    }
    op->deadline = loop_timer_new(on_create_deadline, op);
    loop_timer_arm(op->deadline, CREATE_TIMEOUT_MS);
    log_debug("container create started container=%s sandbox=%s name=%s", c->id, c->sandbox_id,
              c->config->metadata->name);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* start                                                                   */
/* ---------------------------------------------------------------------- */

struct call_arg {
    char *id;
    container_done_cb cb;
    void *arg;
    int signo;
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
    struct container *c = container_find(ca->id);
    _cleanup_error_ struct error *err = NULL;
    if (!c) {
        error_set(&err, GRPC_NOT_FOUND, 0, "container %s was removed while starting", ca->id);
    } else if (res->err) {
        c->start_op = NULL;
        error_set(&err, res->err->grpc_code, 0, "%s", res->err->msg);
        set_str(&c->reason, "StartError");
        set_str(&c->message, res->err->msg);
        if (c->state == CONTAINER_CREATED) {
            c->exit_code = EXIT_CODE_START_ERROR;
            c->finished_ns = now_realtime_ns();
            _cleanup_error_ struct error *tmp = NULL;
            container_set_state(c, CONTAINER_EXITED, &tmp);
        } else {
            save_or_log(c);
        }
        log_warn("container start failed container=%s: %s", c->id, res->err->msg);
    } else {
        c->start_op = NULL;
        c->started_ns = now_realtime_ns();
        if (c->state == CONTAINER_CREATED) {
            _cleanup_error_ struct error *tmp = NULL;
            container_set_state(c, CONTAINER_RUNNING, &tmp);
        } else {
            save_or_log(c);
        }
        /* The keeper may have gone while start was in flight (a very short command). */
        if (c->keeper_pidfd < 0)
            keeper_gone(c);
    }
    ca->cb(err, ca->arg);
    call_arg_free(ca);
}

int container_start(const char *id, container_done_cb cb, void *arg, struct error **err)
{
    struct container *c = container_find(id);
    if (!c)
        return error_set(err, GRPC_NOT_FOUND, 0, "container %s not found", id);
    if (c->state != CONTAINER_CREATED || c->start_op)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "container %s is %s%s, not CREATED",
                         c->id, c->start_op ? "starting" : "",
                         c->start_op ? "" : container_state_name(c->state));
    struct call_arg *ca = call_arg_new(c->id, cb, arg);
    c->start_op = runtime_start(c->runtime, c->id, on_started, ca, err);
    if (!c->start_op) {
        call_arg_free(ca);
        return error_prefix(err, "start container %s", c->id);
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* stop                                                                    */
/* ---------------------------------------------------------------------- */

static void send_kill(struct container *c, int signo);

static void on_killed(const struct runtime_result *res, void *arg)
{
    struct call_arg *ka = arg;
    struct container *c = container_find(ka->id);
    if (c && res->err && c->state != CONTAINER_EXITED) {
        if (ka->signo != SIGKILL) {
            log_warn("stop signal failed, sending SIGKILL container=%s: %s", c->id, res->err->msg);
            send_kill(c, SIGKILL);
        } else {
            log_warn("SIGKILL failed container=%s: %s", c->id, res->err->msg);
            notify_waiters(c, res->err);
        }
    }
    call_arg_free(ka);
}

static void send_kill(struct container *c, int signo)
{
    struct call_arg *ka = call_arg_new(c->id, NULL, NULL);
    ka->signo = signo;
    log_info("signalling container container=%s signal=%d", c->id, signo);
    _cleanup_error_ struct error *err = NULL;
    if (!runtime_kill(c->runtime, c->id, signo, on_killed, ka, &err)) {
        struct runtime_result res = {.err = err};
        on_killed(&res, ka);
    }
}

static void on_kill_timer(void *arg)
{
    struct container *c = arg;
    c->kill_at_ns = 0;
    if (c->state == CONTAINER_RUNNING || c->state == CONTAINER_CREATED)
        send_kill(c, SIGKILL);
}

int container_stop(const char *id, int64_t timeout_s, container_done_cb cb, void *arg,
                   struct error **err)
{
    struct container *c = container_find(id);
    if (!c)
        return error_set(err, GRPC_NOT_FOUND, 0, "container %s not found", id);
    if (c->state == CONTAINER_EXITED) {
        cb(NULL, arg);
        return 0;
    }
    if (c->state == CONTAINER_UNKNOWN) {
        add_waiter(c, cb, arg);
        stop_unknown(c);
        return 0;
    }
    add_waiter(c, cb, arg);
    int sig = timeout_s <= 0 || c->state == CONTAINER_CREATED ? SIGKILL : c->stop_signal;
    if (sig != SIGKILL) {
        int64_t at = now_monotonic_ns() + timeout_s * 1000000000LL;
        if (!c->kill_at_ns || at < c->kill_at_ns) {
            if (!c->kill_timer)
                c->kill_timer = loop_timer_new(on_kill_timer, c);
            c->kill_at_ns = at;
            loop_timer_arm(c->kill_timer, timeout_s * 1000);
        }
    }
    send_kill(c, sig);
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
    struct container *c = container_find(ca->id);
    if (err && c) {
        ca->cb(err, ca->arg);
        call_arg_free(ca);
        return;
    }
    if (!c || strcmp(c->id, ca->id) != 0) {
        on_removed(ca);
        return;
    }
    container_detach_and_teardown(c, on_removed, ca);
}

int container_remove(const char *id, container_done_cb cb, void *arg, struct error **err)
{
    struct container *c = container_find(id);
    if (!c) {
        cb(NULL, arg);
        return 0;
    }
    struct call_arg *ca = call_arg_new(c->id, cb, arg);
    if (container_stop(c->id, 0, on_stopped_for_remove, ca, err) < 0) {
        call_arg_free(ca);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* exec                                                                    */
/* ---------------------------------------------------------------------- */

struct exec_op {
    struct exec_op *prev, *next;
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
    if (eo->prev)
        eo->prev->next = eo->next;
    else if (ctrs.execs == eo)
        ctrs.execs = eo->next;
    if (eo->next)
        eo->next->prev = eo->prev;
    eo->prev = eo->next = NULL;
    /* The pid file belongs to the runtime call, which may outlive us (see runtime_op_cancel). */
    unlink(eo->process_path);
    loop_defer_free(exec_op_free, eo);
}

void container_exec_cancel(void *arg)
{
    for (struct exec_op *eo = ctrs.execs; eo; eo = eo->next) {
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
    struct container *c = container_find(id);
    if (!c)
        return error_set(err, GRPC_NOT_FOUND, 0, "container %s not found", id);
    if (c->state != CONTAINER_RUNNING)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "container %s is not running (%s)",
                         c->id, container_state_name(c->state));
    _cleanup_free_ char *bundle_config = path_in(c->state_dir, "config.json");
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
    eo->id = xstrdup(c->id);
    eo->process_path = xasprintf("%s/exec-%llu.json", c->state_dir, (unsigned long long)seq);
    eo->pid_path = xasprintf("%s/exec-%llu.pid", c->state_dir, (unsigned long long)seq);
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
        !(eo->op = runtime_exec(c->runtime, c->id, &o, on_exec_done, eo, err))) {
        exec_op_retire(eo);
        return -1;
    }
    eo->next = ctrs.execs;
    if (ctrs.execs)
        ctrs.execs->prev = eo;
    ctrs.execs = eo;
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
/* log reopen                                                              */
/* ---------------------------------------------------------------------- */

struct reopen_op {
    struct reopen_op *prev, *next;
    char *id;
    int fd;
    struct event *ev;
    struct loop_timer *timer;
    char line[128];
    size_t len;
    container_done_cb cb;
    void *arg;
};

static void reopen_free(void *obj)
{
    struct reopen_op *ro = obj;
    if (ro->ev)
        event_free(ro->ev);
    if (ro->fd >= 0)
        close(ro->fd);
    loop_timer_free(ro->timer);
    free(ro->id);
    free(ro);
}

static void reopen_finish(struct reopen_op *ro, const struct error *err)
{
    if (!ro->cb)
        return;
    if (ro->prev)
        ro->prev->next = ro->next;
    else
        ctrs.reopens = ro->next;
    if (ro->next)
        ro->next->prev = ro->prev;
    ro->prev = ro->next = NULL;
    if (ro->ev)
        event_del(ro->ev);
    loop_timer_disarm(ro->timer);
    container_done_cb cb = steal_ptr(&ro->cb);
    if (cb)
        cb(err, ro->arg);
    loop_defer_free(reopen_free, ro);
}

static void on_reopen_readable(evutil_socket_t fd, short what, void *arg)
{
    struct reopen_op *ro = arg;
    if (!ro->cb)
        return;
    ssize_t n = recv(fd, ro->line + ro->len, sizeof(ro->line) - 1 - ro->len, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    _cleanup_error_ struct error *err = NULL;
    if (n <= 0) {
        error_set(&err, GRPC_INTERNAL, n < 0 ? errno : 0,
                  "container %s: the keeper closed the control connection", ro->id);
        reopen_finish(ro, err);
        return;
    }
    ro->len += (size_t)n;
    ro->line[ro->len] = '\0';
    char *nl = strchr(ro->line, '\n');
    if (!nl && ro->len < sizeof(ro->line) - 1)
        return;
    if (nl)
        *nl = '\0';
    if (strcmp(ro->line, "ok") != 0)
        error_set(&err, GRPC_INTERNAL, 0, "container %s: keeper: %s", ro->id,
                  str_has_prefix(ro->line, "error ") ? ro->line + 6 : ro->line);
    reopen_finish(ro, err);
}

static void on_reopen_timeout(void *arg)
{
    struct reopen_op *ro = arg;
    _cleanup_error_ struct error *err = NULL;
    error_set(&err, GRPC_DEADLINE_EXCEEDED, 0, "container %s: the keeper did not answer", ro->id);
    reopen_finish(ro, err);
}

/*
 * A connected, non-blocking socket to the keeper's <name> socket. A long
 * state dir does not fit sun_path: connect through an O_PATH fd on it (the
 * path is resolved at connect time; the fd can go right after).
 */
static int keeper_connect(const struct container *c, const char *name, struct error **err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    _cleanup_close_ int dir_fd = -1;
    if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", c->state_dir, name) >=
        sizeof(sa.sun_path)) {
        dir_fd = open(c->state_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0)
            return error_set(err, errno == ENOENT ? GRPC_FAILED_PRECONDITION : GRPC_INTERNAL, errno,
                             "container %s: open %s", c->id, c->state_dir);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dir_fd, name);
    }
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return error_set(err, GRPC_INTERNAL, errno, "socket");
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return error_set(err,
                         errno == ENOENT || errno == ECONNREFUSED ? GRPC_FAILED_PRECONDITION
                                                                  : GRPC_UNAVAILABLE,
                         errno, "container %s: connect to the keeper", c->id);
    return steal_fd(&fd);
}

int container_reopen_log(const char *id, container_done_cb cb, void *arg, struct error **err)
{
    struct container *c = container_find(id);
    if (!c)
        return error_set(err, GRPC_NOT_FOUND, 0, "container %s not found", id);
    if (c->state != CONTAINER_RUNNING || c->keeper_pidfd < 0)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "container %s is not running (%s)",
                         c->id, container_state_name(c->state));
    _cleanup_close_ int fd = keeper_connect(c, "ctl.sock", err);
    if (fd < 0)
        return -1;
    static const char cmd[] = "reopen\n";
    if (send(fd, cmd, sizeof(cmd) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)sizeof(cmd) - 1)
        return error_set(err, GRPC_UNAVAILABLE, errno, "container %s: write to the keeper", c->id);
    struct reopen_op *ro = xcalloc(1, sizeof(*ro));
    ro->id = xstrdup(c->id);
    ro->fd = steal_fd(&fd);
    ro->cb = cb;
    ro->arg = arg;
    ro->ev = event_new(loop_base(), ro->fd, EV_READ | EV_PERSIST, on_reopen_readable, ro);
    ro->timer = loop_timer_new(on_reopen_timeout, ro);
    if (!ro->ev || event_add(ro->ev, NULL) < 0) {
        ro->cb = NULL;
        reopen_free(ro);
        return error_set(err, GRPC_INTERNAL, 0, "watch the keeper connection");
    }
    loop_timer_arm(ro->timer, REOPEN_TIMEOUT_MS);
    ro->next = ctrs.reopens;
    if (ctrs.reopens)
        ctrs.reopens->prev = ro;
    ctrs.reopens = ro;
    return 0;
}

/* ---------------------------------------------------------------------- */
/* attach and resize                                                       */
/* ---------------------------------------------------------------------- */

int container_attach_connect(const char *id, bool *tty, struct error **err)
{
    struct container *c = container_find(id);
    if (!c)
        return error_set(err, GRPC_NOT_FOUND, 0, "container %s not found", id);
    if (c->state != CONTAINER_RUNNING || c->keeper_pidfd < 0)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "container %s is not running (%s)",
                         c->id, container_state_name(c->state));
    *tty = c->config->tty;
    return keeper_connect(c, "attach.sock", err);
}

int container_resize(const char *id, uint16_t cols, uint16_t rows, struct error **err)
{
    struct container *c = container_find(id);
    if (!c)
        return error_set(err, GRPC_NOT_FOUND, 0, "container %s not found", id);
    if (!c->config->tty)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "container %s has no terminal", c->id);
    _cleanup_close_ int fd = keeper_connect(c, "ctl.sock", err);
    if (fd < 0)
        return -1;
    /* The keeper reads the line even once we are gone; its reply is not needed. */
    char line[64];
    int n = snprintf(line, sizeof(line), "resize %u %u\n", cols, rows);
    if (send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n)
        return error_set(err, GRPC_UNAVAILABLE, errno, "container %s: write to the keeper", c->id);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* queries                                                                 */
/* ---------------------------------------------------------------------- */

char *container_info_json(const struct container *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(c->id));
    /* sandboxID, pid and runtimeSpec: the keys containerd and CRI-O both give (and scripts
     * read through crictl inspect). */
    json_object_set_new(o, "sandboxID", json_string(c->sandbox_id));
    json_object_set_new(o, "pid", json_integer(c->pid));
    json_object_set_new(o, "keeperPid", json_integer(c->keeper_pid));
    json_object_set_new(o, "keeperAlive", json_boolean(c->keeper_pidfd >= 0));
    json_object_set_new(o, "runtime", json_string(c->runtime));
    const char *path = runtime_handler_path(c->runtime);
    const char *root = runtime_handler_root(c->runtime);
    json_object_set_new(o, "runtimePath", json_string(path ? path : ""));
    json_object_set_new(o, "runtimeRoot", json_string(root ? root : ""));
    _cleanup_free_ char *rootfs = rootfs_path(c);
    json_object_set_new(o, "rootfs", json_string(rootfs));
    json_object_set_new(o, "rootDir", json_string(c->root_dir));
    json_object_set_new(o, "bundle", json_string(c->state_dir));
    json_object_set_new(o, "logPath", json_string(c->log_path));
    json_object_set_new(o, "imageId", json_string(c->image_id));
    json_object_set_new(o, "stopSignal", json_integer(c->stop_signal));
    _cleanup_free_ char *bundle_config = path_in(c->state_dir, "config.json");
    size_t len = 0;
    _cleanup_error_ struct error *tmp = NULL;
    _cleanup_free_ char *spec_text = read_file_capped(bundle_config, BUNDLE_CONFIG_MAX, &len, &tmp);
    json_t *spec = spec_text ? json_loadb(spec_text, len, 0, NULL) : NULL;
    if (json_is_object(spec))
        json_object_set_new(o, "runtimeSpec", spec);
    else
        json_decref(spec);
    if (tmp)
        log_debug("verbose info without runtimeSpec container=%s: %s", c->id, tmp->msg);
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return text;
}

static bool uses(const struct container *c, const char *key)
{
    if (c->image_id && strcmp(c->image_id, key) == 0)
        return true;
    for (size_t i = 0; i < c->n_layers; i++) {
        if (strcmp(c->chain_ids[i], key) == 0)
            return true;
    }
    return false;
}

bool container_uses(const char *key)
{
    for (size_t i = 0; i < ctrs.n; i++) {
        if (uses(ctrs.items[i], key))
            return true;
    }
    for (const struct create_op *op = ctrs.creates; op; op = op->next) {
        if (op->c && uses(op->c, key))
            return true;
    }
    return false;
}

/* ---------------------------------------------------------------------- */
/* what the sandbox module calls                                           */
/* ---------------------------------------------------------------------- */

struct stop_group {
    struct stop_group *next; /* in ctrs.stops until done runs */
    char *sandbox_id;
    size_t pending;
    struct error *err;
    struct loop_timer *timer;
    void (*done)(const struct error *err, void *arg);
    void *arg;
};

static bool is_being_stopped(const char *sandbox_id)
{
    for (const struct stop_group *g = ctrs.stops; g; g = g->next) {
        if (strcmp(g->sandbox_id, sandbox_id) == 0)
            return true;
    }
    return false;
}

static void on_group_done(void *arg)
{
    struct stop_group *g = arg;
    /* New creates are refused until done has run: it marks the sandbox NOTREADY. */
    for (struct stop_group **pp = &ctrs.stops; *pp; pp = &(*pp)->next) {
        if (*pp == g) {
            *pp = g->next;
            break;
        }
    }
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
    if (err && !g->err) {
        g->err = xcalloc(1, sizeof(*g->err));
        g->err->grpc_code = err->grpc_code;
        g->err->msg = xstrdup(err->msg);
    }
    group_release(g);
}

/*
 * Fail the creates of the sandbox still in flight with FAILED_PRECONDITION; each
 * finishes through its undo (keeper killed, runtime delete, unmount, directories
 * removed, no record). With g, each create, also one already undoing, holds g
 * until its undo has finished.
 */
static void fail_creates_of(const char *sandbox_id, const char *doing, struct stop_group *g)
{
    /* Collect ids first: a failure may finish synchronously and run callbacks. */
    size_t n = 0, alloc = 0;
    _cleanup_free_ char **ids = NULL;
    for (const struct create_op *op = ctrs.creates; op; op = op->next) {
        if (strcmp(op->c->sandbox_id, sandbox_id) != 0)
            continue;
        if (n == alloc) {
            alloc = alloc ? 2 * alloc : 8;
            ids = xrealloc(ids, alloc * sizeof(char *));
        }
        ids[n++] = xstrdup(op->c->id);
    }
    for (size_t i = 0; i < n; i++) {
        struct create_op *op = ctrs.creates;
        while (op && strcmp(op->c->id, ids[i]) != 0)
            op = op->next;
        free(ids[i]);
        if (!op)
            continue;
        if (g) {
            struct container_exit_waiter *w = xcalloc(1, sizeof(*w));
            w->cb = on_group_member_stopped;
            w->arg = g;
            w->next = op->undo_waiters;
            op->undo_waiters = w;
            g->pending++;
        }
        if (op->fail)
            continue; /* already undoing, or about to */
        struct error *e = NULL;
        error_set(&e, GRPC_FAILED_PRECONDITION, 0, "pod sandbox %s is being %s", sandbox_id, doing);
        create_failed(op, e);
        create_step(op);
    }
}

static void hook_stop_all(const char *sandbox_id, void (*done)(const struct error *err, void *arg),
                          void *arg)
{
    struct stop_group *g = xcalloc(1, sizeof(*g));
    g->sandbox_id = xstrdup(sandbox_id);
    g->done = done;
    g->arg = arg;
    g->pending = 1;
    g->next = ctrs.stops;
    ctrs.stops = g;
    fail_creates_of(sandbox_id, "stopped", g);
    /* Collect ids first: a stop may change the table. */
    size_t n = 0;
    _cleanup_free_ char **ids = xcalloc(ctrs.n + 1, sizeof(char *));
    for (size_t i = 0; i < ctrs.n; i++) {
        if (strcmp(ctrs.items[i]->sandbox_id, sandbox_id) == 0 &&
            ctrs.items[i]->state != CONTAINER_EXITED)
            ids[n++] = xstrdup(ctrs.items[i]->id);
    }
    for (size_t i = 0; i < n; i++) {
        g->pending++;
        struct error *err = NULL;
        if (container_stop(ids[i], 0, on_group_member_stopped, g, &err) < 0) {
            on_group_member_stopped(err, g);
            error_free(err);
        }
        free(ids[i]);
    }
    group_release(g);
}

static int hook_remove_all(const char *sandbox_id, struct error **err)
{
    /* Normally none are left after stop_all; their undo goes on in the background. */
    fail_creates_of(sandbox_id, "removed", NULL);
    for (size_t i = 0; i < ctrs.n;) {
        struct container *c = ctrs.items[i];
        if (strcmp(c->sandbox_id, sandbox_id) != 0) {
            i++;
            continue;
        }
        container_detach_and_teardown(c, NULL, NULL); /* removes it from the table */
    }
    return 0;
}

const struct sandbox_container_hooks container_sandbox_hooks = {
    .stop_all = hook_stop_all,
    .remove_all = hook_remove_all,
};

/* ---------------------------------------------------------------------- */
/* start-up and shutdown                                                   */
/* ---------------------------------------------------------------------- */

/* Is pid a keeper for this container? (/proc/<pid>/cmdline has the binary and --id <id>) */
static bool is_keeper_of(int pid, const char *id)
{
    _cleanup_free_ char *path = xasprintf("/proc/%d/cmdline", pid);
    _cleanup_error_ struct error *tmp = NULL;
    size_t len = 0;
    _cleanup_free_ char *text = read_file_capped(path, 64 * 1024, &len, &tmp);
    if (!text || len == 0)
        return false;
    if (!strstr(text, "tinycri-keeper"))
        return false;
    for (size_t off = 0; off < len;) {
        const char *arg = text + off;
        size_t alen = strlen(arg);
        if (strcmp(arg, "--id") == 0 && off + alen + 1 < len)
            return strcmp(arg + alen + 1, id) == 0;
        off += alen + 1;
    }
    return false;
}

/* A CREATED record whose container runs: the daemon died between `start` and the save. */
static void on_state_reconciled(const struct runtime_result *res, void *arg)
{
    char *id = arg;
    struct container *c = container_find(id);
    if (c && c->state == CONTAINER_CREATED && !c->start_op && !res->err && res->status &&
        strcmp(res->status, "running") == 0) {
        c->started_ns = now_realtime_ns();
        _cleanup_error_ struct error *tmp = NULL;
        container_set_state(c, CONTAINER_RUNNING, &tmp);
    }
    free(id);
}

static void reconcile(struct container *c)
{
    if (c->state == CONTAINER_EXITED || c->state == CONTAINER_UNKNOWN)
        return;
    int pidfd = c->keeper_pid > 0 ? pidfd_open(c->keeper_pid, 0) : -1;
    if (pidfd >= 0 && is_keeper_of(c->keeper_pid, c->id)) {
        _cleanup_error_ struct error *err = NULL;
        if (watch_keeper(c, pidfd, &err) < 0)
            log_error("container=%s: %s", c->id, err->msg);
        else
            log_info("container recovered container=%s state=%s keeper=%d", c->id,
                     container_state_name(c->state), c->keeper_pid);
        if (c->state == CONTAINER_CREATED) {
            _cleanup_error_ struct error *serr = NULL;
            char *id = xstrdup(c->id);
            if (!runtime_state(c->runtime, c->id, on_state_reconciled, id, &serr))
                free(id);
        }
        return;
    }
    if (pidfd >= 0)
        close(pidfd);
    keeper_gone(c);
}

static bool has_record(const char *id)
{
    for (size_t i = 0; i < ctrs.n; i++) {
        if (strcmp(ctrs.items[i]->id, id) == 0)
            return true;
    }
    return false;
}

/* Directories an interrupted create or remove left behind (no record): remove them. */
static void clean_orphans(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_id(e->d_name) || has_record(e->d_name))
            continue;
        /* Both directories of one id go in one teardown: skip the second sighting. */
        bool seen = false;
        for (struct teardown *td = ctrs.teardowns; td && !seen; td = td->next)
            seen = strcmp(td->id, e->d_name) == 0;
        if (seen)
            continue;
        log_info("removing leftovers of an unfinished container container=%s", e->d_name);
        teardown_start(e->d_name, runtime_handler_name(""), -1, NULL, NULL);
    }
    closedir(d);
}

int container_init(const struct config *cfg, struct store *store, struct error **err)
{
    ctrs.cfg = cfg;
    ctrs.store = store;
    ctrs.records_dir = path_in(cfg->root_dir, "containers");
    ctrs.states_dir = path_in(cfg->state_dir, "ctr");
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
    ctrs.keeper_path = libexec_path("tinycri-keeper", "TINYCRI_KEEPER");
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
        _cleanup_free_ char *path = path_in(ctrs.records_dir, e->d_name);
        _cleanup_error_ struct error *lerr = NULL;
        struct container *c = record_load(path, &lerr);
        if (!c) {
            log_error("skipping unreadable container record path=%s: %s", path, lerr->msg);
            continue;
        }
        table_add(c);
    }
    closedir(d);
    for (size_t i = 0; i < ctrs.n; i++)
        reconcile(ctrs.items[i]);
    clean_orphans(ctrs.records_dir);
    clean_orphans(ctrs.states_dir);
    log_info("containers loaded count=%zu", ctrs.n);
    return 0;
}

void container_shutdown(void)
{
    /* Everyone still waiting hears UNAVAILABLE (the RPC layer is gone by now). */
    struct error *err = NULL;
    error_set(&err, GRPC_UNAVAILABLE, 0, "tinycrid is shutting down");
    while (ctrs.teardowns) {
        struct teardown *td = ctrs.teardowns;
        /* A failed create's undo: the create op below answers for it. */
        void (*cb)(void *) = td->cb == on_undone ? NULL : td->cb;
        void *arg = td->arg;
        teardown_retire(td);
        if (cb)
            cb(arg);
    }
    while (ctrs.creates) {
        /* Its keeper keeps running; the next start removes the leftovers. */
        struct create_op *op = ctrs.creates;
        create_op_retire(op);
        op->cb(NULL, err, op->arg);
        notify_undo_waiters(op, err);
    }
    while (ctrs.execs) {
        struct exec_op *eo = ctrs.execs;
        container_exec_cb cb = eo->cb;
        void *arg = eo->arg;
        runtime_op_cancel(eo->op);
        exec_op_retire(eo);
        cb(NULL, err, arg);
    }
    while (ctrs.reopens)
        reopen_finish(ctrs.reopens, err);
    for (size_t i = 0; i < ctrs.n; i++) {
        notify_waiters(ctrs.items[i], err);
        container_free(ctrs.items[i]);
    }
    error_free(err);
    free(ctrs.items);
    free(ctrs.records_dir);
    free(ctrs.states_dir);
    free(ctrs.keeper_path);
    memset(&ctrs, 0, sizeof(ctrs));
}
