/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Container RPC handlers: each checks its request, starts the operation in
 * pod/container and replies from the operation's callback, looking the call
 * up again by id (the client may have gone meanwhile).
 */
#include "autoconf.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.pb-c.h"
#include "core/config.h"
#include "core/error.h"
#include "core/id.h"
#include "core/log.h"
#include "core/util.h"
#include "cri/container_service.h"
#include "cri/list_reply.h"
#include "cri/reply.h"
#include "grpc/h2.h"
#include "image/ref.h"
#include "image/store.h"
#include "pod/container.h"

/* Client timeouts (seconds) are clamped to this, so ms/ns arithmetic cannot overflow. */
#define CRI_MAX_TIMEOUT_S (24LL * 3600)

#define MiB (1024 * 1024)

static const struct config *svc_cfg;
static const struct store *svc_store;

void container_service_init(const struct config *cfg, const struct store *store)
{
    svc_cfg = cfg;
    svc_store = store;
}

size_t container_service_exec_cap(size_t max_send)
{
    size_t cap = max_send / 2 < 8 * MiB ? max_send / 2 : 8 * MiB;
    return cap > 8192 ? cap - 4096 : cap / 2;
}

static void on_started(const struct error *err, void *arg)
{
    reply_finish_empty(arg, err, &runtime__v1__start_container_response__descriptor);
}

static void on_stopped(const struct error *err, void *arg)
{
    reply_finish_empty(arg, err, &runtime__v1__stop_container_response__descriptor);
}

static void on_removed(const struct error *err, void *arg)
{
    reply_finish_empty(arg, err, &runtime__v1__remove_container_response__descriptor);
}

static void on_reopened(const struct error *err, void *arg)
{
    reply_finish_empty(arg, err, &runtime__v1__reopen_container_log_response__descriptor);
}

/* Run op(id, done, reply, &err) for an empty-reply RPC. */
static void run_simple(struct h2_call *call, const char *method, const char *id,
                       int (*op)(const char *, container_done_cb, void *, struct error **),
                       container_done_cb done)
{
    if (!id || !*id) {
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT, "%s: container_id is required", method);
        return;
    }
    struct reply *rep = reply_new(call, method, id);
    _cleanup_error_ struct error *err = NULL;
    if (op(id, done, rep, &err) < 0) {
        reply_free(rep);
        rpc_fail(call, err);
    }
}

/* ---- CreateContainer ---- */

static void on_created(const char *id, const struct error *err, void *arg)
{
    Runtime__V1__CreateContainerResponse resp = RUNTIME__V1__CREATE_CONTAINER_RESPONSE__INIT;
    resp.container_id = (char *)id;
    reply_finish(arg, err, &resp.base);
}

void container_service_create(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    const Runtime__V1__CreateContainerRequest *r = (const Runtime__V1__CreateContainerRequest *)req;
    if (!r->pod_sandbox_id || !*r->pod_sandbox_id) {
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT, "CreateContainer: pod_sandbox_id is required");
        return;
    }
    struct reply *rep = reply_new(call, "CreateContainer", NULL);
    _cleanup_error_ struct error *err = NULL;
    if (container_create(r->pod_sandbox_id, r->config, on_created, rep, &err) < 0) {
        reply_free(rep);
        rpc_fail(call, err);
    }
}

/* ---- Start / Stop / Remove / ReopenContainerLog ---- */

void container_service_start(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    const Runtime__V1__StartContainerRequest *r = (const Runtime__V1__StartContainerRequest *)req;
    run_simple(call, "StartContainer", r->container_id, container_start, on_started);
}

void container_service_stop(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    const Runtime__V1__StopContainerRequest *r = (const Runtime__V1__StopContainerRequest *)req;
    if (!r->container_id || !*r->container_id) {
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT, "StopContainer: container_id is required");
        return;
    }
    struct reply *rep = reply_new(call, "StopContainer", r->container_id);
    _cleanup_error_ struct error *err = NULL;
    /* A day is plenty; larger values would overflow the timer arithmetic below. */
    int64_t timeout = r->timeout > CRI_MAX_TIMEOUT_S ? CRI_MAX_TIMEOUT_S : r->timeout;
    if (timeout < 0)
        timeout = 0;
    if (container_stop(r->container_id, timeout, on_stopped, rep, &err) < 0) {
        reply_free(rep);
        rpc_fail(call, err);
    }
}

void container_service_remove(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    const Runtime__V1__RemoveContainerRequest *r = (const Runtime__V1__RemoveContainerRequest *)req;
    run_simple(call, "RemoveContainer", r->container_id, container_remove, on_removed);
}

void container_service_reopen_log(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    const Runtime__V1__ReopenContainerLogRequest *r =
        (const Runtime__V1__ReopenContainerLogRequest *)req;
    run_simple(call, "ReopenContainerLog", r->container_id, container_reopen_log, on_reopened);
}

/* ---- ContainerStatus / ListContainers ---- */

static Runtime__V1__ContainerState cri_state(enum container_state s)
{
    switch (s) {
    case CONTAINER_CREATED:
        return RUNTIME__V1__CONTAINER_STATE__CONTAINER_CREATED;
    case CONTAINER_RUNNING:
        return RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING;
    case CONTAINER_EXITED:
        return RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED;
    case CONTAINER_UNKNOWN:
        break;
    }
    return RUNTIME__V1__CONTAINER_STATE__CONTAINER_UNKNOWN;
}

static void image_spec_fill(Runtime__V1__ImageSpec *spec, const struct container *c)
{
    runtime__v1__image_spec__init(spec);
    spec->image = c->image_ref;
    const Runtime__V1__ImageSpec *req = c->config->image;
    if (req && req->user_specified_image)
        spec->user_specified_image = req->user_specified_image;
    if (req && req->runtime_handler)
        spec->runtime_handler = req->runtime_handler;
}

/*
 * Was the container created by image id, as kubelet does: "sha256:<hex>", or
 * 12 to 64 hex digits of it (the prefixes the image store resolves)?
 */
static bool is_named_by_id(const struct container *c)
{
    const char *named = c->image_ref;
    if (str_has_prefix(named, "sha256:"))
        named += strlen("sha256:");
    size_t len = strlen(named);
    if (len < 12 || !id_is_hex(named, len))
        return false;
    return str_has_prefix(c->image_id + strlen("sha256:"), named);
}

/*
 * The image's digested reference in the repository the container named, or
 * its first one (a digest from another repository, e.g. a second tag's);
 * the id when the image has none (an imported tarball without digests).
 */
static const char *repo_digest_for(const struct store_image *img, const char *named)
{
    if (!img->n_repo_digests)
        return img->id;
    struct image_ref ref;
    _cleanup_error_ struct error *err = NULL;
    if (image_ref_parse(named, &ref, &err) == 0) {
        _cleanup_free_ char *name = image_ref_name(&ref);
        image_ref_clear(&ref);
        size_t len = strlen(name);
        for (size_t i = 0; i < img->n_repo_digests; i++)
            if (strncmp(img->repo_digests[i], name, len) == 0 && img->repo_digests[i][len] == '@')
                return img->repo_digests[i];
    }
    return img->repo_digests[0];
}

void container_status_msg_fill(struct container_status_msg *m, const struct container *c)
{
    memset(m, 0, sizeof(*m));
    const Runtime__V1__ContainerConfig *cfg = c->config;
    Runtime__V1__ContainerStatus *st = &m->st;
    runtime__v1__container_status__init(st);
    st->id = c->id;
    st->metadata = cfg->metadata;
    st->state = cri_state(c->state);
    st->created_at = c->created_ns;
    st->started_at = c->started_ns;
    st->finished_at = c->finished_ns;
    st->exit_code = c->exit_code;
    image_spec_fill(&m->spec, c);
    st->image = &m->spec;
    st->image_ref = c->image_id;
    st->image_id = c->image_id;
    const struct store_image *img = svc_store ? store_image_find(svc_store, c->image_id) : NULL;
    if (img) {
        st->image_ref = (char *)repo_digest_for(img, c->image_ref);
        if (img->n_repo_tags && is_named_by_id(c))
            m->spec.image = img->repo_tags[0];
    }
    st->reason = c->reason;
    st->message = c->message;
    m->label_ptrs = reply_map_dup(&runtime__v1__container_status__labels_entry__descriptor,
                                  (void *const *)cfg->labels, cfg->n_labels);
    m->annotation_ptrs =
        reply_map_dup(&runtime__v1__container_status__annotations_entry__descriptor,
                      (void *const *)cfg->annotations, cfg->n_annotations);
    st->n_labels = cfg->n_labels;
    st->labels = m->label_ptrs;
    st->n_annotations = cfg->n_annotations;
    st->annotations = m->annotation_ptrs;
    st->n_mounts = cfg->n_mounts;
    st->mounts = cfg->mounts;
    st->log_path = c->log_path;
    runtime__v1__container_resources__init(&m->res);
    if (cfg->linux && cfg->linux->resources) {
        m->res.linux = cfg->linux->resources;
        st->resources = &m->res;
    }
    st->stop_signal = cfg->stop_signal;
}

void container_status_msg_clear(struct container_status_msg *m)
{
    free(m->label_ptrs);
    free(m->annotation_ptrs);
    memset(m, 0, sizeof(*m));
}

void container_service_status(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    const Runtime__V1__ContainerStatusRequest *r = (const Runtime__V1__ContainerStatusRequest *)req;
    if (!r->container_id || !*r->container_id) {
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT, "ContainerStatus: container_id is required");
        return;
    }
    const struct container *c = container_find(r->container_id);
    if (!c) {
        rpc_fail_code(call, GRPC_NOT_FOUND, "container %s not found", r->container_id);
        return;
    }
    struct container_status_msg m;
    container_status_msg_fill(&m, c);
    Runtime__V1__ContainerStatusResponse resp = RUNTIME__V1__CONTAINER_STATUS_RESPONSE__INIT;
    resp.status = &m.st;
    _cleanup_free_ char *info = NULL;
    Runtime__V1__ContainerStatusResponse__InfoEntry entry =
        RUNTIME__V1__CONTAINER_STATUS_RESPONSE__INFO_ENTRY__INIT;
    Runtime__V1__ContainerStatusResponse__InfoEntry *entries[] = {&entry};
    if (r->verbose) {
        info = container_info_json(c);
        entry.key = (char *)"info";
        entry.value = info;
        resp.n_info = 1;
        resp.info = entries;
    }
    rpc_reply(call, &resp.base);
    container_status_msg_clear(&m);
}

static bool labels_match(const Runtime__V1__ContainerConfig *cfg,
                         Runtime__V1__ContainerFilter__LabelSelectorEntry *const *sel, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t j = 0; j < cfg->n_labels && !found; j++)
            found = strcmp(cfg->labels[j]->key, sel[i]->key) == 0 &&
                    strcmp(cfg->labels[j]->value, sel[i]->value) == 0;
        if (!found)
            return false;
    }
    return true;
}

static bool filter_match(const struct container *c, const Runtime__V1__ContainerFilter *f)
{
    if (!f)
        return true;
    if (f->id && *f->id && !str_has_prefix(c->id, f->id))
        return false;
    if (f->state && cri_state(c->state) != f->state->state)
        return false;
    if (f->pod_sandbox_id && *f->pod_sandbox_id &&
        !str_has_prefix(c->sandbox_id, f->pod_sandbox_id))
        return false;
    return labels_match(c->config, f->label_selector, f->n_label_selector);
}

struct list_item {
    Runtime__V1__Container msg;
    Runtime__V1__ImageSpec spec;
};

static void list_containers(struct h2_call *call, const Runtime__V1__ContainerFilter *filter,
                            const struct list_mode *mode)
{
    size_t total = 0;
    while (container_at(total))
        total++;
    _cleanup_free_ struct list_item *items = xcalloc(total ? total : 1, sizeof(*items));
    _cleanup_free_ Runtime__V1__Container **ptrs = xcalloc(total ? total : 1, sizeof(*ptrs));
    size_t n = 0;
    for (size_t i = 0; i < total; i++) {
        const struct container *c = container_at(i);
        if (!filter_match(c, filter))
            continue;
        struct list_item *it = &items[n];
        Runtime__V1__Container *m = &it->msg;
        runtime__v1__container__init(m);
        m->id = c->id;
        m->pod_sandbox_id = c->sandbox_id;
        m->metadata = c->config->metadata;
        image_spec_fill(&it->spec, c);
        m->image = &it->spec;
        m->image_ref = c->image_id;
        m->image_id = c->image_id;
        m->state = cri_state(c->state);
        m->created_at = c->created_ns;
        m->n_labels = c->config->n_labels;
        m->labels = reply_map_dup(&runtime__v1__container__labels_entry__descriptor,
                                  (void *const *)c->config->labels, c->config->n_labels);
        m->n_annotations = c->config->n_annotations;
        m->annotations =
            reply_map_dup(&runtime__v1__container__annotations_entry__descriptor,
                          (void *const *)c->config->annotations, c->config->n_annotations);
        ptrs[n++] = m;
    }
    Runtime__V1__ListContainersResponse resp = RUNTIME__V1__LIST_CONTAINERS_RESPONSE__INIT;
    resp.n_containers = n;
    resp.containers = ptrs;
    list_finish(call, &resp.base, mode);
    for (size_t i = 0; i < n; i++) {
        free(items[i].msg.labels);
        free(items[i].msg.annotations);
    }
}

void container_service_list(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    static const struct list_mode mode = {false, "ListContainers", "StreamContainers", NULL};
    list_containers(call, ((const Runtime__V1__ListContainersRequest *)req)->filter, &mode);
}

void container_service_stream(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    static const struct list_mode mode = {true, "ListContainers", "StreamContainers",
                                          &runtime__v1__stream_containers_response__descriptor};
    list_containers(call, ((const Runtime__V1__StreamContainersRequest *)req)->filter, &mode);
}

/* ---- ExecSync ---- */

/*
 * Output past the cap is dropped, and the stream says so at its end (the exit
 * code stays what the command returned: probes look at nothing else).
 */
#define EXEC_TRUNCATED_MARK "\n[tinycri: exec output truncated after %zu bytes]\n"

/* The stream as the reply carries it: with the mark when it was cut (*owned then set). */
static ProtobufCBinaryData exec_stream(const char *data, size_t len, bool truncated,
                                       uint8_t **owned)
{
    *owned = NULL;
    if (!truncated)
        return (ProtobufCBinaryData){len, (uint8_t *)data};
    char mark[96];
    int n = snprintf(mark, sizeof(mark), EXEC_TRUNCATED_MARK, len);
    size_t mlen = n > 0 && (size_t)n < sizeof(mark) ? (size_t)n : 0;
    *owned = xmalloc(len + mlen + 1);
    if (len)
        memcpy(*owned, data, len);
    memcpy(*owned + len, mark, mlen);
    return (ProtobufCBinaryData){len + mlen, *owned};
}

static void on_exec_done(const struct container_exec_result *res, const struct error *err,
                         void *arg)
{
    Runtime__V1__ExecSyncResponse resp = RUNTIME__V1__EXEC_SYNC_RESPONSE__INIT;
    _cleanup_free_ uint8_t *out = NULL;
    _cleanup_free_ uint8_t *errout = NULL;
    if (res) {
        resp.stdout = exec_stream(res->out, res->out_len, res->out_truncated, &out);
        resp.stderr = exec_stream(res->err, res->err_len, res->err_truncated, &errout);
        resp.exit_code = res->exit_code;
    }
    reply_finish(arg, err, &resp.base);
}

/* The client went away (or its deadline passed): no process is left running for nobody. */
static void on_exec_call_cancelled(void *arg)
{
    container_exec_cancel(arg);
}

void container_service_exec_sync(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    const Runtime__V1__ExecSyncRequest *r = (const Runtime__V1__ExecSyncRequest *)req;
    if (!r->container_id || !*r->container_id) {
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT, "ExecSync: container_id is required");
        return;
    }
    if (r->timeout < 0) {
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT, "ExecSync: negative timeout");
        return;
    }
    size_t max_send = svc_cfg && svc_cfg->max_send_msg_size ? svc_cfg->max_send_msg_size : 16 * MiB;
    struct reply *rep = reply_new(call, "ExecSync", r->container_id);
    _cleanup_error_ struct error *err = NULL;
    int64_t exec_timeout = r->timeout > CRI_MAX_TIMEOUT_S ? CRI_MAX_TIMEOUT_S : r->timeout;
    if (container_exec_sync(r->container_id, r->cmd, r->n_cmd, exec_timeout,
                            container_service_exec_cap(max_send), on_exec_done, rep, &err) < 0) {
        reply_free(rep);
        rpc_fail(call, err);
        return;
    }
    reply_cancel_with(rep, on_exec_call_cancelled, rep);
}
