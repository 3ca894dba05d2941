/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Exec, Attach and PortForward behind stream_service.h, and the streaming
 * server's backend: exec through pod/container (the OCI runtime with the
 * session's pipes or pty), attach through the container's keeper, and
 * port connections through pod/netdial in the sandbox's network namespace.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include "api.pb-c.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "cri/stream_service.h"
#include "grpc/h2.h"
#include "pod/container.h"
#include "pod/netdial.h"
#include "pod/sandbox.h"
#include "stream/server.h"
#include "stream/token.h"

#define DIAL_TIMEOUT_MS 10000

static struct stream_server *server;

/* ---- the backend ---- */

struct exec_link {
    stream_exec_done_cb cb;
    void *arg;
};

static void on_container_exec_done(const struct container_exec_result *res, const struct error *err,
                                   void *arg)
{
    struct exec_link *l = arg;
    stream_exec_done_cb cb = l->cb;
    void *cb_arg = l->arg;
    free(l);
    cb(res ? res->exit_code : -1, err, cb_arg);
}

static void *be_exec_start(const struct stream_request *req, const int stdio[3],
                           stream_exec_done_cb cb, void *arg, struct error **err)
{
    struct exec_link *l = xcalloc(1, sizeof(*l));
    l->cb = cb;
    l->arg = arg;
    if (container_exec_stream(req->container_id, req->cmd, req->n_cmd, req->tty, stdio,
                              on_container_exec_done, l, err) < 0) {
        free(l);
        return NULL;
    }
    return l;
}

static void be_exec_cancel(void *handle)
{
    container_exec_cancel(handle);
    free(handle);
}

static int be_attach_connect(const struct stream_request *req, bool *tty, struct error **err)
{
    return container_attach_connect(req->container_id, req->in, req->out, req->err, tty, err);
}

static int be_attach_resize(const char *id, uint16_t cols, uint16_t rows, struct error **err)
{
    return container_resize(id, cols, rows, err);
}

static void *be_port_connect(const char *sandbox_id, uint16_t port, stream_fd_cb cb, void *arg,
                             struct error **err)
{
    const struct sandbox *sb = sandbox_find(sandbox_id);
    if (!sb)
        return error_set(err, GRPC_NOT_FOUND, 0, "pod sandbox %s not found", sandbox_id), NULL;
    if (sb->state != SANDBOX_READY)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "pod sandbox %s is not ready",
                         sandbox_id),
               NULL;
    /* netns_path is NULL for a host-network pod: the host's localhost. */
    return netdial_start(sb->netns_path, port, DIAL_TIMEOUT_MS, cb, arg, err);
}

static void be_port_connect_cancel(void *handle)
{
    netdial_cancel(handle);
}

static const struct stream_backend backend = {
    .exec_start = be_exec_start,
    .exec_cancel = be_exec_cancel,
    .attach_connect = be_attach_connect,
    .attach_resize = be_attach_resize,
    .port_connect = be_port_connect,
    .port_connect_cancel = be_port_connect_cancel,
};

/* ---- lifecycle ---- */

int stream_service_init(const struct config *cfg, struct error **err)
{
    struct stream_server_opts o = {
        .address = cfg->stream_address,
        .port = (uint16_t)cfg->stream_port,
        .idle_timeout_s = cfg->stream_idle_timeout_s,
        .creation_timeout_s = cfg->stream_creation_timeout_s,
        .token_timeout_s = cfg->stream_token_timeout_s,
        .max_sessions = cfg->stream_max_sessions,
        .tls_cert = cfg->stream_tls_cert,
        .tls_key = cfg->stream_tls_key,
    };
    server = stream_server_new(&o, &backend, err);
    return server ? 0 : -1;
}

void stream_service_shutdown(void)
{
    stream_server_free(server);
    server = NULL;
}

void stream_service_reload(const struct config *cfg)
{
    if (server)
        stream_server_set_timeouts(server, cfg->stream_idle_timeout_s,
                                   cfg->stream_creation_timeout_s, cfg->stream_token_timeout_s);
}

const char *stream_service_url(void)
{
    return server ? stream_server_base_url(server) : NULL;
}

/* ---- RPCs ---- */

static bool has_text(const char *s)
{
    return s && *s;
}

static void reply_url(struct h2_call *call, struct stream_request *req,
                      const ProtobufCMessageDescriptor *desc)
{
    if (!server) {
        stream_request_free(req);
        rpc_fail_code(call, GRPC_UNAVAILABLE, "the streaming server is not running");
        return;
    }
    _cleanup_error_ struct error *err = NULL;
    _cleanup_free_ char *url = stream_server_url(server, req, &err);
    if (!url) {
        rpc_fail(call, err);
        return;
    }
    /* ExecResponse, AttachResponse and PortForwardResponse: one string field, url (1). */
    _cleanup_free_ ProtobufCMessage *msg = xcalloc(1, desc->sizeof_message);
    protobuf_c_message_init(desc, msg);
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(desc, "url");
    assert_state(f && f->type == PROTOBUF_C_TYPE_STRING);
    *(char **)((char *)msg + f->offset) = url;
    rpc_reply(call, msg);
}

/* The container must exist and run: checked now, and again when the client connects. */
static int check_running(const char *method, const char *id, struct error **err)
{
    const struct container *c = container_find(id);
    if (!c)
        return error_set(err, GRPC_NOT_FOUND, 0, "%s: container %s not found", method, id);
    if (c->state != CONTAINER_RUNNING)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "%s: container %s is not running (%s)",
                         method, c->id, container_state_name(c->state));
    return 0;
}

static int check_streams(const char *method, bool tty, bool in, bool out, bool errs,
                         struct error **err)
{
    if (tty && errs)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s: tty and stderr cannot both be true",
                         method);
    if (!in && !out && !errs)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "%s: one of stdin, stdout or stderr must be true", method);
    return 0;
}

void stream_service_exec(struct h2_call *call, const ProtobufCMessage *msg, void *ctx)
{
    const Runtime__V1__ExecRequest *r = (const Runtime__V1__ExecRequest *)msg;
    _cleanup_error_ struct error *err = NULL;
    if (!has_text(r->container_id)) {
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT, "Exec: container_id is required");
        return;
    }
    if (r->n_cmd == 0 || !has_text(r->cmd[0])) {
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT, "Exec: cmd is required");
        return;
    }
    if (check_streams("Exec", r->tty, r->stdin, r->stdout, r->stderr, &err) < 0 ||
        check_running("Exec", r->container_id, &err) < 0) {
        rpc_fail(call, err);
        return;
    }
    struct stream_request *req = xcalloc(1, sizeof(*req));
    req->kind = STREAM_EXEC;
    /* The full id: a prefix could name another container by the time the client comes. */
    req->container_id = xstrdup(container_find(r->container_id)->id);
    req->cmd = xcalloc(r->n_cmd, sizeof(char *));
    for (size_t i = 0; i < r->n_cmd; i++)
        req->cmd[i] = xstrdup(r->cmd[i]);
    req->n_cmd = r->n_cmd;
    req->tty = r->tty;
    req->in = r->stdin;
    req->out = r->stdout;
    req->err = r->stderr;
    reply_url(call, req, &runtime__v1__exec_response__descriptor);
}

void stream_service_attach(struct h2_call *call, const ProtobufCMessage *msg, void *ctx)
{
    const Runtime__V1__AttachRequest *r = (const Runtime__V1__AttachRequest *)msg;
    _cleanup_error_ struct error *err = NULL;
    if (!has_text(r->container_id)) {
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT, "Attach: container_id is required");
        return;
    }
    if (check_streams("Attach", r->tty, r->stdin, r->stdout, r->stderr, &err) < 0 ||
        check_running("Attach", r->container_id, &err) < 0) {
        rpc_fail(call, err);
        return;
    }
    struct stream_request *req = xcalloc(1, sizeof(*req));
    req->kind = STREAM_ATTACH;
    req->container_id = xstrdup(container_find(r->container_id)->id);
    req->tty = r->tty;
    req->in = r->stdin;
    req->out = r->stdout;
    req->err = r->stderr;
    reply_url(call, req, &runtime__v1__attach_response__descriptor);
}

void stream_service_port_forward(struct h2_call *call, const ProtobufCMessage *msg, void *ctx)
{
    const Runtime__V1__PortForwardRequest *r = (const Runtime__V1__PortForwardRequest *)msg;
    if (!has_text(r->pod_sandbox_id)) {
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT, "PortForward: pod_sandbox_id is required");
        return;
    }
    for (size_t i = 0; i < r->n_port; i++) {
        if (r->port[i] < 1 || r->port[i] > 65535) {
            rpc_fail_code(call, GRPC_INVALID_ARGUMENT, "PortForward: port %d is out of range",
                          r->port[i]);
            return;
        }
    }
    const struct sandbox *sb = sandbox_find(r->pod_sandbox_id);
    if (!sb) {
        rpc_fail_code(call, GRPC_NOT_FOUND, "PortForward: pod sandbox %s not found",
                      r->pod_sandbox_id);
        return;
    }
    if (sb->state != SANDBOX_READY) {
        rpc_fail_code(call, GRPC_FAILED_PRECONDITION, "PortForward: pod sandbox %s is not ready",
                      sb->id);
        return;
    }
    struct stream_request *req = xcalloc(1, sizeof(*req));
    req->kind = STREAM_PORTFORWARD;
    req->sandbox_id = xstrdup(sb->id);
    req->ports = xcalloc(r->n_port ? r->n_port : 1, sizeof(int32_t));
    if (r->n_port) /* crictl sends none: SPDY clients name the port per stream */
        memcpy(req->ports, r->port, r->n_port * sizeof(int32_t));
    req->n_ports = r->n_port;
    reply_url(call, req, &runtime__v1__port_forward_response__descriptor);
}
