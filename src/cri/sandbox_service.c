/* SPDX-License-Identifier: Apache-2.0 */
/*
 * RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus and
 * ListPodSandbox. Run, Stop and Remove start a pod/sandbox operation and
 * reply when it ends (cri/reply: a caller that left meanwhile gets nothing,
 * and the outcome is logged instead). Status and List answer from the
 * sandbox table at once, borrowing its strings.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api.pb-c.h"
#include "core/error.h"
#include "core/log.h"
#include "core/pb_json.h"
#include "core/util.h"
#include "cri/container_service.h"
#include "cri/list_reply.h"
#include "cri/reply.h"
#include "cri/sandbox_service.h"
#include "grpc/h2.h"
#include "pod/container.h"
#include "pod/sandbox.h"

/* ---- Run / Stop / Remove ---- */

static void on_run_done(const struct error *err, const char *id, void *arg)
{
    Runtime__V1__RunPodSandboxResponse resp = RUNTIME__V1__RUN_POD_SANDBOX_RESPONSE__INIT;
    resp.pod_sandbox_id = (char *)id;
    reply_finish(arg, err, &resp.base);
}

void sandbox_service_run(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    const Runtime__V1__RunPodSandboxRequest *r = (const Runtime__V1__RunPodSandboxRequest *)req;
    _cleanup_error_ struct error *err = NULL;
    struct reply *rep = reply_new(call, "RunPodSandbox", NULL);
    if (sandbox_run(r->config, r->runtime_handler, on_run_done, rep, &err) < 0) {
        reply_free(rep);
        rpc_fail(call, err);
    }
}

static void on_stop_done(const struct error *err, const char *id, void *arg)
{
    reply_finish_empty(arg, err, &runtime__v1__stop_pod_sandbox_response__descriptor);
}

void sandbox_service_stop(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    const Runtime__V1__StopPodSandboxRequest *r = (const Runtime__V1__StopPodSandboxRequest *)req;
    _cleanup_error_ struct error *err = NULL;
    struct reply *rep = reply_new(call, "StopPodSandbox", r->pod_sandbox_id);
    if (sandbox_stop(r->pod_sandbox_id, on_stop_done, rep, &err) < 0) {
        reply_free(rep);
        rpc_fail(call, err);
    }
}

static void on_remove_done(const struct error *err, const char *id, void *arg)
{
    reply_finish_empty(arg, err, &runtime__v1__remove_pod_sandbox_response__descriptor);
}

void sandbox_service_remove(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    const Runtime__V1__RemovePodSandboxRequest *r =
        (const Runtime__V1__RemovePodSandboxRequest *)req;
    _cleanup_error_ struct error *err = NULL;
    struct reply *rep = reply_new(call, "RemovePodSandbox", r->pod_sandbox_id);
    if (sandbox_remove(r->pod_sandbox_id, on_remove_done, rep, &err) < 0) {
        reply_free(rep);
        rpc_fail(call, err);
    }
}

/* ---- queries ---- */

static bool labels_match(const Runtime__V1__PodSandboxConfig *c,
                         const Runtime__V1__PodSandboxFilter *f)
{
    for (size_t i = 0; i < f->n_label_selector; i++) {
        const char *key = f->label_selector[i]->key, *value = f->label_selector[i]->value;
        bool found = false;
        for (size_t j = 0; j < c->n_labels && !found; j++)
            found = strcmp(c->labels[j]->key, key) == 0 && strcmp(c->labels[j]->value, value) == 0;
        if (!found)
            return false;
    }
    return true;
}

static Runtime__V1__PodSandboxState pb_state(enum sandbox_state s)
{
    return s == SANDBOX_READY ? RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY
                              : RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY;
}

/* ---- PodSandboxStatus ---- */

static void json_set_opt(json_t *o, const char *key, const char *value)
{
    json_object_set_new(o, key, value ? json_string(value) : json_null());
}

static char *verbose_info(const struct sandbox *sb)
{
    const Runtime__V1__PodSandboxConfig *c = sb->config;
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(sb->id));
    json_object_set_new(o, "state", json_string(sandbox_state_name(sb->state)));
    json_object_set_new(o, "runtimeHandler", json_string(sb->runtime_handler));
    json_object_set_new(o, "pid", json_integer(sb->pod_init_pid));
    json_set_opt(o, "pidNamespace", sb->pid_ns_path);
    json_set_opt(o, "netNamespace", sb->netns_path);
    json_set_opt(o, "ipcNamespace", sb->ipc_path);
    json_set_opt(o, "utsNamespace", sb->uts_path);
    json_set_opt(o, "hostnamePath", sb->hostname_path);
    json_set_opt(o, "hostsPath", sb->hosts_path);
    json_set_opt(o, "resolvPath", sb->resolv_path);
    json_set_opt(o, "shmPath", sb->shm_path);
    json_object_set_new(o, "cgroupParent", json_string(sb->cgroup_parent ? sb->cgroup_parent : ""));
    json_t *ips = json_array();
    for (size_t i = 0; i < sb->n_ips; i++)
        json_array_append_new(ips, json_string(sb->ips[i]));
    json_object_set_new(o, "ips", ips);
    json_object_set_new(o, "networkReady", json_boolean(sb->network_ready));
    /* The whole config as containerd gives it (Go's JSON of the CRI struct). */
    json_object_set_new(o, "config", pb_json(&c->base));
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    assert_state(text);
    return text;
}

void sandbox_status_msg_fill(struct sandbox_status_msg *m, const struct sandbox *sb)
{
    memset(m, 0, sizeof(*m));
    const Runtime__V1__PodSandboxConfig *c = sb->config;

    Runtime__V1__PodSandboxNetworkStatus *net = &m->net;
    runtime__v1__pod_sandbox_network_status__init(net);
    size_t n_extra = sb->n_ips > 1 ? sb->n_ips - 1 : 0;
    m->extra = xcalloc(n_extra + 1, sizeof(Runtime__V1__PodIP));
    m->extra_ptrs = xcalloc(n_extra + 1, sizeof(Runtime__V1__PodIP *));
    Runtime__V1__PodIP *extra = m->extra;
    Runtime__V1__PodIP **extra_ptrs = m->extra_ptrs;
    if (sb->n_ips) {
        net->ip = sb->ips[0];
        for (size_t i = 0; i < n_extra; i++) {
            runtime__v1__pod_ip__init(&extra[i]);
            extra[i].ip = sb->ips[i + 1];
            extra_ptrs[i] = &extra[i];
        }
        net->n_additional_ips = n_extra;
        net->additional_ips = extra_ptrs;
    }

    Runtime__V1__NamespaceOption *nsopt = &m->nsopt;
    runtime__v1__namespace_option__init(nsopt);
    const Runtime__V1__NamespaceOption *asked = c->linux && c->linux->security_context
                                                    ? c->linux->security_context->namespace_options
                                                    : NULL;
    if (asked) {
        nsopt->network = asked->network;
        nsopt->pid = asked->pid;
        nsopt->ipc = asked->ipc;
    }
    runtime__v1__namespace__init(&m->ns);
    m->ns.options = nsopt;
    runtime__v1__linux_pod_sandbox_status__init(&m->linux_status);
    m->linux_status.namespaces = &m->ns;

    Runtime__V1__PodSandboxStatus *st = &m->st;
    runtime__v1__pod_sandbox_status__init(st);
    st->id = sb->id;
    st->metadata = c->metadata;
    st->state = pb_state(sb->state);
    st->created_at = sb->created_ns;
    st->network = net;
    st->linux = &m->linux_status;
    m->labels = reply_map_dup(&runtime__v1__pod_sandbox_status__labels_entry__descriptor,
                              (void *const *)c->labels, c->n_labels);
    m->annotations = reply_map_dup(&runtime__v1__pod_sandbox_status__annotations_entry__descriptor,
                                   (void *const *)c->annotations, c->n_annotations);
    st->n_labels = c->n_labels;
    st->labels = m->labels;
    st->n_annotations = c->n_annotations;
    st->annotations = m->annotations;
    st->runtime_handler = sb->runtime_handler;
}

void sandbox_status_msg_clear(struct sandbox_status_msg *m)
{
    free(m->extra);
    free(m->extra_ptrs);
    free(m->labels);
    free(m->annotations);
    memset(m, 0, sizeof(*m));
}

void sandbox_service_status(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    const Runtime__V1__PodSandboxStatusRequest *r =
        (const Runtime__V1__PodSandboxStatusRequest *)req;
    if (!*r->pod_sandbox_id) {
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT, "pod_sandbox_id is required");
        return;
    }
    const struct sandbox *sb = sandbox_find(r->pod_sandbox_id);
    if (!sb) {
        rpc_fail_code(call, GRPC_NOT_FOUND, "sandbox %s not found", r->pod_sandbox_id);
        return;
    }
    struct sandbox_status_msg m;
    sandbox_status_msg_fill(&m, sb);
    Runtime__V1__PodSandboxStatusResponse resp = RUNTIME__V1__POD_SANDBOX_STATUS_RESPONSE__INIT;
    resp.status = &m.st;
    resp.timestamp = now_realtime_ns();
    /* The pod's containers too, as kubelet's evented PLEG reads them from here. */
    struct sandbox_containers_msg cm;
    sandbox_containers_msg_fill(&cm, sb->id);
    resp.n_containers_statuses = cm.n;
    resp.containers_statuses = cm.ptrs;
    _cleanup_free_ char *info = NULL;
    Runtime__V1__PodSandboxStatusResponse__InfoEntry entry =
        RUNTIME__V1__POD_SANDBOX_STATUS_RESPONSE__INFO_ENTRY__INIT;
    Runtime__V1__PodSandboxStatusResponse__InfoEntry *entries[1] = {&entry};
    if (r->verbose) {
        info = verbose_info(sb);
        entry.key = (char *)"info";
        entry.value = info;
        resp.n_info = 1;
        resp.info = entries;
    }
    rpc_reply(call, &resp.base);
    sandbox_containers_msg_clear(&cm);
    sandbox_status_msg_clear(&m);
}

void sandbox_containers_msg_fill(struct sandbox_containers_msg *m, const char *sandbox_id)
{
    memset(m, 0, sizeof(*m));
    size_t total = 0;
    for (size_t i = 0; container_at(i); i++)
        total += strcmp(container_at(i)->sandbox_id, sandbox_id) == 0;
    m->msgs = xcalloc(total + 1, sizeof(struct container_status_msg));
    m->ptrs = xcalloc(total + 1, sizeof(Runtime__V1__ContainerStatus *));
    for (size_t i = 0; container_at(i) && m->n < total; i++) {
        const struct container *c = container_at(i);
        if (strcmp(c->sandbox_id, sandbox_id) != 0)
            continue;
        container_status_msg_fill(&m->msgs[m->n], c);
        m->ptrs[m->n] = &m->msgs[m->n].st;
        m->n++;
    }
}

void sandbox_containers_msg_clear(struct sandbox_containers_msg *m)
{
    for (size_t i = 0; i < m->n; i++)
        container_status_msg_clear(&m->msgs[i]);
    free(m->msgs);
    free(m->ptrs);
    memset(m, 0, sizeof(*m));
}

/* ---- ListPodSandbox ---- */

static bool matches(const struct sandbox *sb, const Runtime__V1__PodSandboxFilter *f)
{
    if (!f)
        return true;
    if (f->id && *f->id && !str_has_prefix(sb->id, f->id))
        return false;
    if (f->state && pb_state(sb->state) != f->state->state)
        return false;
    return labels_match(sb->config, f);
}

static void list_sandboxes(struct h2_call *call, const Runtime__V1__PodSandboxFilter *filter,
                           const struct list_mode *mode)
{
    size_t n = sandbox_count();
    _cleanup_free_ Runtime__V1__PodSandbox *items = xcalloc(n + 1, sizeof(*items));
    _cleanup_free_ Runtime__V1__PodSandbox **ptrs = xcalloc(n + 1, sizeof(*ptrs));
    _cleanup_free_ void **maps = xcalloc(2 * n + 1, sizeof(*maps));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const struct sandbox *sb = sandbox_at(i);
        if (!matches(sb, filter))
            continue;
        const Runtime__V1__PodSandboxConfig *c = sb->config;
        Runtime__V1__PodSandbox *it = &items[k];
        runtime__v1__pod_sandbox__init(it);
        it->id = sb->id;
        it->metadata = c->metadata;
        it->state = pb_state(sb->state);
        it->created_at = sb->created_ns;
        it->n_labels = c->n_labels;
        it->labels = maps[2 * k] =
            reply_map_dup(&runtime__v1__pod_sandbox__labels_entry__descriptor,
                          (void *const *)c->labels, c->n_labels);
        it->n_annotations = c->n_annotations;
        it->annotations = maps[2 * k + 1] =
            reply_map_dup(&runtime__v1__pod_sandbox__annotations_entry__descriptor,
                          (void *const *)c->annotations, c->n_annotations);
        it->runtime_handler = sb->runtime_handler;
        ptrs[k] = it;
        k++;
    }
    Runtime__V1__ListPodSandboxResponse resp = RUNTIME__V1__LIST_POD_SANDBOX_RESPONSE__INIT;
    resp.n_items = k;
    resp.items = ptrs;
    list_finish(call, &resp.base, mode);
    for (size_t i = 0; i < 2 * k; i++)
        free(maps[i]);
}

void sandbox_service_list(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    static const struct list_mode mode = {false, "ListPodSandbox", "StreamPodSandboxes", NULL};
    list_sandboxes(call, ((const Runtime__V1__ListPodSandboxRequest *)req)->filter, &mode);
}

void sandbox_service_stream(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    static const struct list_mode mode = {true, "ListPodSandbox", "StreamPodSandboxes",
                                          &runtime__v1__stream_pod_sandboxes_response__descriptor};
    list_sandboxes(call, ((const Runtime__V1__StreamPodSandboxesRequest *)req)->filter, &mode);
}
