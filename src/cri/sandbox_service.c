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
#include "core/util.h"
#include "cri/reply.h"
#include "cri/sandbox_service.h"
#include "grpc/h2.h"
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

static char *verbose_info(const struct sandbox *sb, const Runtime__V1__NamespaceOption *ns)
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
    json_t *cfg = json_object();
    json_object_set_new(cfg, "metadata",
                        json_pack("{s:s, s:s, s:s, s:I}", "name", c->metadata->name, "namespace",
                                  c->metadata->namespace_, "uid", c->metadata->uid, "attempt",
                                  (json_int_t)c->metadata->attempt));
    json_object_set_new(cfg, "hostname", json_string(c->hostname ? c->hostname : ""));
    json_object_set_new(cfg, "logDirectory", json_string(c->log_directory ? c->log_directory : ""));
    json_object_set_new(cfg, "namespaceOptions",
                        json_pack("{s:s, s:s, s:s}", "network",
                                  sandbox_namespace_mode_name(ns->network), "pid",
                                  sandbox_namespace_mode_name(ns->pid), "ipc",
                                  sandbox_namespace_mode_name(ns->ipc)));
    json_t *ports = json_array();
    for (size_t i = 0; i < c->n_port_mappings; i++) {
        const Runtime__V1__PortMapping *p = c->port_mappings[i];
        json_array_append_new(ports, json_pack("{s:i, s:i, s:i, s:s}", "protocol", (int)p->protocol,
                                               "containerPort", p->container_port, "hostPort",
                                               p->host_port, "hostIp", p->host_ip));
    }
    json_object_set_new(cfg, "portMappings", ports);
    json_t *sysctls = json_object();
    for (size_t i = 0; c->linux && i < c->linux->n_sysctls; i++)
        json_object_set_new(sysctls, c->linux->sysctls[i]->key,
                            json_string(c->linux->sysctls[i]->value));
    json_object_set_new(cfg, "sysctls", sysctls);
    json_object_set_new(o, "config", cfg);
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    assert_state(text);
    return text;
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
    const Runtime__V1__PodSandboxConfig *c = sb->config;

    Runtime__V1__PodSandboxNetworkStatus net = RUNTIME__V1__POD_SANDBOX_NETWORK_STATUS__INIT;
    size_t n_extra = sb->n_ips > 1 ? sb->n_ips - 1 : 0;
    _cleanup_free_ Runtime__V1__PodIP *extra = xcalloc(n_extra + 1, sizeof(*extra));
    _cleanup_free_ Runtime__V1__PodIP **extra_ptrs = xcalloc(n_extra + 1, sizeof(*extra_ptrs));
    if (sb->n_ips) {
        net.ip = sb->ips[0];
        for (size_t i = 0; i < n_extra; i++) {
            runtime__v1__pod_ip__init(&extra[i]);
            extra[i].ip = sb->ips[i + 1];
            extra_ptrs[i] = &extra[i];
        }
        net.n_additional_ips = n_extra;
        net.additional_ips = extra_ptrs;
    }

    Runtime__V1__NamespaceOption nsopt = RUNTIME__V1__NAMESPACE_OPTION__INIT;
    const Runtime__V1__NamespaceOption *asked = c->linux && c->linux->security_context
                                                    ? c->linux->security_context->namespace_options
                                                    : NULL;
    if (asked) {
        nsopt.network = asked->network;
        nsopt.pid = asked->pid;
        nsopt.ipc = asked->ipc;
    }
    Runtime__V1__Namespace ns = RUNTIME__V1__NAMESPACE__INIT;
    ns.options = &nsopt;
    Runtime__V1__LinuxPodSandboxStatus linux_status = RUNTIME__V1__LINUX_POD_SANDBOX_STATUS__INIT;
    linux_status.namespaces = &ns;

    Runtime__V1__PodSandboxStatus st = RUNTIME__V1__POD_SANDBOX_STATUS__INIT;
    st.id = sb->id;
    st.metadata = c->metadata;
    st.state = pb_state(sb->state);
    st.created_at = sb->created_ns;
    st.network = &net;
    st.linux = &linux_status;
    _cleanup_free_ void *labels =
        reply_map_dup(&runtime__v1__pod_sandbox_status__labels_entry__descriptor,
                      (void *const *)c->labels, c->n_labels);
    _cleanup_free_ void *annotations =
        reply_map_dup(&runtime__v1__pod_sandbox_status__annotations_entry__descriptor,
                      (void *const *)c->annotations, c->n_annotations);
    st.n_labels = c->n_labels;
    st.labels = labels;
    st.n_annotations = c->n_annotations;
    st.annotations = annotations;
    st.runtime_handler = sb->runtime_handler;

    Runtime__V1__PodSandboxStatusResponse resp = RUNTIME__V1__POD_SANDBOX_STATUS_RESPONSE__INIT;
    resp.status = &st;
    resp.timestamp = now_realtime_ns();
    _cleanup_free_ char *info = NULL;
    Runtime__V1__PodSandboxStatusResponse__InfoEntry entry =
        RUNTIME__V1__POD_SANDBOX_STATUS_RESPONSE__INFO_ENTRY__INIT;
    Runtime__V1__PodSandboxStatusResponse__InfoEntry *entries[1] = {&entry};
    if (r->verbose) {
        info = verbose_info(sb, &nsopt);
        entry.key = (char *)"info";
        entry.value = info;
        resp.n_info = 1;
        resp.info = entries;
    }
    rpc_reply(call, &resp.base);
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

void sandbox_service_list(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    const Runtime__V1__ListPodSandboxRequest *r = (const Runtime__V1__ListPodSandboxRequest *)req;
    size_t n = sandbox_count();
    _cleanup_free_ Runtime__V1__PodSandbox *items = xcalloc(n + 1, sizeof(*items));
    _cleanup_free_ Runtime__V1__PodSandbox **ptrs = xcalloc(n + 1, sizeof(*ptrs));
    _cleanup_free_ void **maps = xcalloc(2 * n + 1, sizeof(*maps));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const struct sandbox *sb = sandbox_at(i);
        if (!matches(sb, r->filter))
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
    rpc_reply(call, &resp.base);
    for (size_t i = 0; i < 2 * k; i++)
        free(maps[i]);
}
