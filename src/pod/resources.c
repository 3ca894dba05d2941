/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Resource updates (resources.h): one operation object per request, kept in
 * arrival order; an operation starts when no earlier one for the same
 * container or pod is in flight.
 */
#include "autoconf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <jansson.h>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/persist.h"
#include "core/util.h"
#include "pod/cgroup.h"
#include "pod/container.h"
#include "pod/oci_spec.h"
#include "pod/resources.h"
#include "pod/runtime.h"
#include "pod/sandbox.h"

#define POD_WRITE_TIMEOUT_MS 30000
#define BUNDLE_CONFIG_MAX (4 * 1024 * 1024)

enum update_state {
    UPDATE_QUEUED,  /* waits for an earlier update of the same object */
    UPDATE_RUNNING, /* the runtime (or the cgroup writer) runs; waits for its exit */
};

struct update_op {
    TAILQ_ENTRY(update_op) link;
    enum update_state state;
    bool pod;
    char *id;
    Runtime__V1__LinuxContainerResources *req; /* containers: the request; pods: the total */
    Runtime__V1__LinuxContainerResources *merged;
    char *resources_path;
    struct runtime_op *rt;
    struct child *child;
    struct cgroup_plan plan;
    resources_done_cb cb;
    void *arg;
    struct loop_timer *kick; /* starts the operation on a later turn */
};

static struct {
    const struct config *cfg;
    TAILQ_HEAD(, update_op) ops; /* oldest first */
} up = {.ops = TAILQ_HEAD_INITIALIZER(up.ops)};

/* ---- merging ---- */

static Runtime__V1__LinuxContainerResources *unpack_packed(const uint8_t *buf, size_t len)
{
    return runtime__v1__linux_container_resources__unpack(NULL, len, buf);
}

static uint8_t *pack(const Runtime__V1__LinuxContainerResources *r, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(&r->base);
    uint8_t *buf = xmalloc(*len ? *len : 1);
    protobuf_c_message_pack(&r->base, buf);
    return buf;
}

Runtime__V1__LinuxContainerResources *
resources_merge(const Runtime__V1__LinuxContainerResources *old,
                const Runtime__V1__LinuxContainerResources *req)
{
    /*
     * Protobuf's own merge is what we want: two encodings one after the other
     * decode as one message in which every field the second sets (proto3
     * leaves zeros out) wins and map entries merge. Repeated hugepage limits
     * would add up instead: the old ones are left out when new ones come.
     */
    Runtime__V1__LinuxContainerResources base = RUNTIME__V1__LINUX_CONTAINER_RESOURCES__INIT;
    if (old)
        base = *old;
    if (req && req->n_hugepage_limits) {
        base.n_hugepage_limits = 0;
        base.hugepage_limits = NULL;
    }
    size_t la = 0, lb = 0;
    _cleanup_free_ uint8_t *a = pack(&base, &la);
    Runtime__V1__LinuxContainerResources empty = RUNTIME__V1__LINUX_CONTAINER_RESOURCES__INIT;
    _cleanup_free_ uint8_t *b = pack(req ? req : &empty, &lb);
    _cleanup_free_ uint8_t *both = xmalloc(la + lb + 1);
    memcpy(both, a, la);
    memcpy(both + la, b, lb);
    Runtime__V1__LinuxContainerResources *m = unpack_packed(both, la + lb);
    assert_state(m);
    return m;
}

static int64_t add_i64(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

Runtime__V1__LinuxContainerResources *
resources_pod_total(const Runtime__V1__LinuxContainerResources *overhead,
                    const Runtime__V1__LinuxContainerResources *resources)
{
    Runtime__V1__LinuxContainerResources *t = resources_merge(resources, NULL);
    if (!overhead)
        return t;
    if (overhead->cpu_shares && t->cpu_shares)
        t->cpu_shares = add_i64(t->cpu_shares, overhead->cpu_shares);
    /* Quotas add up when both have one over the same period (what kubelet does). */
    if (overhead->cpu_quota > 0 && t->cpu_quota > 0 &&
        (overhead->cpu_period == t->cpu_period || !overhead->cpu_period))
        t->cpu_quota = add_i64(t->cpu_quota, overhead->cpu_quota);
    if (overhead->memory_limit_in_bytes && t->memory_limit_in_bytes)
        t->memory_limit_in_bytes =
            add_i64(t->memory_limit_in_bytes, overhead->memory_limit_in_bytes);
    if (overhead->memory_swap_limit_in_bytes > 0 && t->memory_swap_limit_in_bytes > 0)
        t->memory_swap_limit_in_bytes =
            add_i64(t->memory_swap_limit_in_bytes, overhead->memory_swap_limit_in_bytes);
    for (size_t i = 0; i < t->n_hugepage_limits; i++) {
        for (size_t j = 0; j < overhead->n_hugepage_limits; j++) {
            const Runtime__V1__HugepageLimit *o = overhead->hugepage_limits[j];
            if (o->page_size && t->hugepage_limits[i]->page_size &&
                strcmp(o->page_size, t->hugepage_limits[i]->page_size) == 0)
                t->hugepage_limits[i]->limit += o->limit;
        }
    }
    return t;
}

/* ---- the queue ---- */

static void op_free(struct update_op *op)
{
    if (op->req)
        protobuf_c_message_free_unpacked(&op->req->base, NULL);
    if (op->merged)
        protobuf_c_message_free_unpacked(&op->merged->base, NULL);
    if (op->resources_path) {
        unlink(op->resources_path);
        free(op->resources_path);
    }
    cgroup_plan_clear(&op->plan);
    loop_timer_free(op->kick);
    free(op->id);
    free(op);
}

static void op_unlink(struct update_op *op)
{
    TAILQ_REMOVE(&up.ops, op, link);
}

static bool is_first_for(const struct update_op *op)
{
    const struct update_op *o;
    TAILQ_FOREACH (o, &up.ops, link) {
        if (o == op)
            break;
        if (o->pod == op->pod && strcmp(o->id, op->id) == 0)
            return false;
    }
    return true;
}

static void op_start(struct update_op *op);

/* The next queued operation of the same object may go now. */
static void kick_next(const char *id, bool pod)
{
    struct update_op *o;
    TAILQ_FOREACH (o, &up.ops, link) {
        if (o->pod == pod && strcmp(o->id, id) == 0) {
            if (o->state == UPDATE_QUEUED)
                loop_timer_arm(o->kick, 0);
            return;
        }
    }
}

static void op_finish(struct update_op *op, const struct error *err)
{
    op_unlink(op);
    if (err)
        log_info("resource update failed %s=%s: %s", op->pod ? "sandbox" : "container", op->id,
                 err->msg);
    else
        log_info("resources updated %s=%s", op->pod ? "sandbox" : "container", op->id);
    kick_next(op->id, op->pod);
    resources_done_cb cb = op->cb;
    void *arg = op->arg;
    op_free(op);
    cb(err, arg);
}

static void on_kick(void *arg)
{
    struct update_op *op = arg;
    if (op->state == UPDATE_QUEUED && is_first_for(op))
        op_start(op);
}

static struct update_op *op_new(const char *id, bool pod, resources_done_cb cb, void *arg)
{
    struct update_op *op = xcalloc(1, sizeof(*op));
    op->id = xstrdup(id);
    op->pod = pod;
    op->cb = cb;
    op->arg = arg;
    op->kick = loop_timer_new(on_kick, op);
    TAILQ_INSERT_TAIL(&up.ops, op, link);
    /* Never inside the caller's call: the callback may run as soon as next turn. */
    loop_timer_arm(op->kick, 0);
    return op;
}

/* ---- containers ---- */

/* Put the new resources into the bundle's config.json (the spec crictl inspect shows). */
static void patch_bundle(const struct container *c, const json_t *oci)
{
    _cleanup_free_ char *path = xasprintf("%s/config.json", c->state_dir);
    _cleanup_error_ struct error *err = NULL;
    size_t len = 0;
    _cleanup_free_ char *text = read_file_capped(path, BUNDLE_CONFIG_MAX, &len, &err);
    _cleanup_json_ json_t *spec = text ? json_loadb(text, len, 0, NULL) : NULL;
    json_t *linux = json_object_get(spec, "linux");
    if (!json_is_object(linux)) {
        log_debug("bundle config not updated container=%s: %s", c->id,
                  err ? err->msg : "no linux object");
        return;
    }
    json_t *res = json_object_get(linux, "resources");
    if (!json_is_object(res)) {
        res = json_object();
        json_object_set_new(linux, "resources", res);
    }
    /* The keys an update sets; devices and the rest stay. */
    static const char *const keys[] = {"cpu", "memory", "hugepageLimits", "unified"};
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        json_t *v = json_object_get(oci, keys[i]);
        if (v)
            json_object_set(res, keys[i], v);
        else
            json_object_del(res, keys[i]);
    }
    _cleanup_free_ char *out = json_dumps(spec, JSON_COMPACT);
    if (!out || persist_write(path, out, strlen(out), 0600, &err) < 0)
        log_warn("bundle config not updated container=%s: %s", c->id,
                 err ? err->msg : "encode failed");
}

static void on_runtime_updated(const struct runtime_result *res, void *arg)
{
    struct update_op *op = arg;
    op->rt = NULL;
    if (res->err) {
        op_finish(op, res->err);
        return;
    }
    _cleanup_error_ struct error *err = NULL;
    struct container *c = container_find(op->id);
    if (!c || strcmp(c->id, op->id) != 0) {
        error_set(&err, GRPC_NOT_FOUND, 0, "container %s was removed during the update", op->id);
        op_finish(op, err);
        return;
    }
    _cleanup_json_ json_t *oci = oci_spec_resources(op->merged, &err);
    if (oci)
        patch_bundle(c, oci);
    error_clear(&err);
    container_set_resources(op->id, op->merged, &err);
    op_finish(op, err);
}

static int start_container_update(struct update_op *op, struct error **err)
{
    struct container *c = container_find(op->id);
    if (!c || strcmp(c->id, op->id) != 0)
        return error_set(err, GRPC_NOT_FOUND, 0, "container %s not found", op->id);
    if (c->state != CONTAINER_CREATED && c->state != CONTAINER_RUNNING)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                         "container %s is %s: only created or running containers can be updated",
                         c->id, container_state_name(c->state));
    const Runtime__V1__LinuxContainerResources *old =
        c->config->linux ? c->config->linux->resources : NULL;
    op->merged = resources_merge(old, op->req);
    if (cgroup_resources_check(op->merged, err) < 0)
        return -1;
    _cleanup_json_ json_t *oci = oci_spec_resources(op->merged, err);
    if (!oci)
        return -1;
    _cleanup_free_ char *text = json_dumps(oci, JSON_COMPACT);
    op->resources_path = xasprintf("%s/update-resources.json", c->state_dir);
    if (!text || persist_write(op->resources_path, text, strlen(text), 0600, err) < 0)
        return error_prefix(err, "write the resources for %s", c->id);
    op->rt = runtime_update(c->runtime, c->id, op->resources_path, on_runtime_updated, op, err);
    return op->rt ? 0 : -1;
}

int resources_update_container(const char *id, const Runtime__V1__LinuxContainerResources *r,
                               resources_done_cb cb, void *arg, struct error **err)
{
    if (cgroup_resources_check(r, err) < 0)
        return -1;
    struct container *c = container_find(id);
    if (!c)
        return error_set(err, GRPC_NOT_FOUND, 0, "container %s not found", id);
    if (c->state != CONTAINER_CREATED && c->state != CONTAINER_RUNNING)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                         "container %s is %s: only created or running containers can be updated",
                         c->id, container_state_name(c->state));
    struct update_op *op = op_new(c->id, false, cb, arg);
    op->req = resources_merge(NULL, r);
    return 0;
}

/* ---- pods ---- */

/* In the forked child: the writes, then exit 0, or a message on stderr and exit 1. */
static int write_in_child(void *arg)
{
    const struct cgroup_plan *plan = arg;
    char msg[1024];
    if (cgroup_write_plan(plan, msg, sizeof(msg)) < 0)
        child_exit_errorf(GRPC_INTERNAL, 0, "%s", msg);
    _exit(0);
}

static void on_pod_written(const struct child_result *res, void *arg)
{
    struct update_op *op = arg;
    op->child = NULL;
    _cleanup_error_ struct error *err = NULL;
    _cleanup_free_ char *what = xasprintf("the cgroup of sandbox %s", op->id);
    child_result_error(res, what, POD_WRITE_TIMEOUT_MS, &err);
    op_finish(op, err);
}

/* The pod's cgroup in each hierarchy; false when it has none. */
static bool pod_paths(const struct sandbox *sb, struct cgroup_paths *p)
{
    const char *parent = sb->cgroup_parent;
    if (!parent || !*parent)
        return false;
    bool systemd = up.cfg && up.cfg->cgroup_driver == CGROUP_DRIVER_SYSTEMD;
    const char *base = strrchr(parent, '/') ? strrchr(parent, '/') + 1 : parent;
    _cleanup_free_ char *path =
        systemd ? cgroup_systemd_slice_path(base) : cgroup_path_from_oci(parent, false);
    if (!path)
        return false;
    cgroup_paths_same(path, p);
    return true;
}

static int plan_pod(const struct sandbox *sb, const Runtime__V1__LinuxContainerResources *total,
                    struct cgroup_plan *plan, struct error **err)
{
    const struct cgroup_layout *l = cgroup_host_layout();
    if (!l)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "no cgroup hierarchy found");
    struct cgroup_paths p;
    if (!pod_paths(sb, &p))
        return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                         "sandbox %s has no cgroup of its own (its config has no "
                         "linux.cgroup_parent): set its containers' limits with "
                         "UpdateContainerResources",
                         sb->id);
    int rc = cgroup_plan_resources(l, &p, total, plan, err);
    cgroup_paths_clear(&p);
    return rc;
}

static int start_pod_update(struct update_op *op, struct error **err)
{
    const struct sandbox *sb = sandbox_find(op->id);
    if (!sb || strcmp(sb->id, op->id) != 0)
        return error_set(err, GRPC_NOT_FOUND, 0, "sandbox %s not found", op->id);
    if (plan_pod(sb, op->req, &op->plan, err) < 0)
        return -1;
    struct child_opts o = {.timeout_ms = POD_WRITE_TIMEOUT_MS};
    op->child = child_fork(&o, write_in_child, &op->plan, on_pod_written, op, err);
    return op->child ? 0 : -1;
}

int resources_update_pod(const char *id, const Runtime__V1__LinuxContainerResources *overhead,
                         const Runtime__V1__LinuxContainerResources *resources,
                         resources_done_cb cb, void *arg, struct error **err)
{
    if (cgroup_resources_check(overhead, err) < 0)
        return error_prefix(err, "overhead");
    if (cgroup_resources_check(resources, err) < 0)
        return error_prefix(err, "resources");
    const struct sandbox *sb = sandbox_find(id);
    if (!sb)
        return error_set(err, GRPC_NOT_FOUND, 0, "sandbox %s not found", id);
    Runtime__V1__LinuxContainerResources *total = resources_pod_total(overhead, resources);
    if (cgroup_resources_check(total, err) < 0) {
        protobuf_c_message_free_unpacked(&total->base, NULL);
        return error_prefix(err, "resources + overhead");
    }
    /* Checked now, so a pod without a cgroup hears it at once. */
    struct cgroup_plan plan;
    if (plan_pod(sb, total, &plan, err) < 0) {
        protobuf_c_message_free_unpacked(&total->base, NULL);
        return -1;
    }
    cgroup_plan_clear(&plan);
    struct update_op *op = op_new(sb->id, true, cb, arg);
    op->req = total;
    return 0;
}

/* ---- running ---- */

static void op_start(struct update_op *op)
{
    op->state = UPDATE_RUNNING;
    _cleanup_error_ struct error *err = NULL;
    int rc = op->pod ? start_pod_update(op, &err) : start_container_update(op, &err);
    if (rc < 0)
        op_finish(op, err);
}

void resources_init(const struct config *cfg)
{
    up.cfg = cfg;
    cgroup_init();
}

void resources_shutdown(void)
{
    /* Everyone still waiting hears UNAVAILABLE, as container_shutdown() does. */
    struct error *err = NULL;
    error_set(&err, GRPC_UNAVAILABLE, 0, "tinycrid is shutting down");
    while (!TAILQ_EMPTY(&up.ops)) {
        struct update_op *op = TAILQ_FIRST(&up.ops);
        op_unlink(op);
        if (op->rt)
            runtime_op_cancel(op->rt);
        if (op->child)
            child_cancel(op->child);
        resources_done_cb cb = op->cb;
        void *arg = op->arg;
        op_free(op);
        cb(err, arg);
    }
    error_free(err);
}
