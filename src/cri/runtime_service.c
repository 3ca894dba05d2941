/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Version, Status, RuntimeConfig and UpdateRuntimeConfig. Status reads the
 * CNI config dir on every call (it is small and local), so a network
 * config dropped in by an installer makes the node ready without a reload.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api.pb-c.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "cri/runtime_service.h"
#include "pod/cgroup.h"
#include "cri/stream_service.h"
#include "pod/cni.h"
#include "pod/runtime.h"

#define CRI_API_VERSION "v1"
#define KUBE_API_VERSION "0.1.0"

void runtime_service_init(struct runtime_service *rs, const struct config *cfg)
{
    rs->cfg = cfg;
    rs->pod_cidr = NULL;
}

void runtime_service_clear(struct runtime_service *rs)
{
    free(rs->pod_cidr);
    rs->pod_cidr = NULL;
}

void runtime_service_version(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    Runtime__V1__VersionResponse resp = RUNTIME__V1__VERSION_RESPONSE__INIT;
    resp.version = (char *)KUBE_API_VERSION;
    resp.runtime_name = (char *)PACKAGE_NAME;
    resp.runtime_version = (char *)PACKAGE_VERSION;
    resp.runtime_api_version = (char *)CRI_API_VERSION;
    rpc_reply(call, &resp.base);
}

static char *verbose_info_json(const struct runtime_service *rs, const struct cni_network *net,
                               const struct error *net_err)
{
    json_t *cni = json_object();
    json_object_set_new(cni, "confDir", json_string(rs->cfg->cni_conf_dir));
    if (net_err) {
        json_object_set_new(cni, "error", json_string(net_err->msg));
    } else {
        json_object_set_new(cni, "network", json_string(net->name));
        json_object_set_new(cni, "configFile", json_string(net->path));
        json_object_set_new(cni, "plugins", json_string(net->plugins));
    }
    json_object_set_new(cni, "podCIDR", json_string(rs->pod_cidr ? rs->pod_cidr : ""));
    char *text = json_dumps(cni, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(cni);
    return text;
}

/* Where the stats read each controller (JSON text, owned). */
static char *cgroups_info_json(void)
{
    const struct cgroup_layout *l = cgroup_host_layout();
    json_t *o = json_object();
    if (l) {
        json_object_set_new(o, "layout", json_string(cgroup_layout_kind(l)));
        json_t *v1 = json_object();
        for (int c = 0; c < CGROUP_N; c++) {
            if (l->v1[c])
                json_object_set_new(v1, cgroup_controller_name(c), json_string(l->v1[c]));
        }
        json_object_set_new(o, "v1", v1);
        json_object_set_new(o, "unified", l->v2 ? json_string(l->v2) : json_null());
    } else {
        json_object_set_new(o, "layout", json_string("none found"));
    }
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return text;
}

void runtime_service_status(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    const Runtime__V1__StatusRequest *r = (const Runtime__V1__StatusRequest *)req;
    struct runtime_service *rs = ctx;

    struct cni_network net;
    _cleanup_error_ struct error *net_err = NULL;
    bool net_ready = cni_network_load(rs->cfg, &net, &net_err) == 0;

    Runtime__V1__RuntimeCondition runtime_ready = RUNTIME__V1__RUNTIME_CONDITION__INIT;
    runtime_ready.type = (char *)"RuntimeReady";
    runtime_ready.status = 1;
    /* The default handler must be usable here (crun refuses some cgroup layouts). */
    const char *rt_reason = NULL;
    _cleanup_free_ char *rt_message = NULL;
    if (!runtime_handler_usable("", &rt_reason)) {
        runtime_ready.status = 0;
        runtime_ready.reason = (char *)"RuntimeNotReady";
        rt_message =
            xasprintf("default runtime handler %s: %s", rs->cfg->default_runtime, rt_reason);
        runtime_ready.message = rt_message;
    }
    Runtime__V1__RuntimeCondition network_ready = RUNTIME__V1__RUNTIME_CONDITION__INIT;
    network_ready.type = (char *)"NetworkReady";
    network_ready.status = net_ready;
    if (!net_ready) {
        network_ready.reason = (char *)"NetworkPluginNotReady";
        network_ready.message = net_err->msg;
    }
    Runtime__V1__RuntimeCondition *conds[] = {&runtime_ready, &network_ready};
    Runtime__V1__RuntimeStatus status = RUNTIME__V1__RUNTIME_STATUS__INIT;
    status.n_conditions = ARRAY_SIZE(conds);
    status.conditions = conds;

    /* One entry per configured handler, plus "" for the default, as containerd lists them. */
    size_t n_handlers = rs->cfg->n_runtimes + 1;
    _cleanup_free_ Runtime__V1__RuntimeHandler *handlers = xcalloc(n_handlers, sizeof(*handlers));
    _cleanup_free_ Runtime__V1__RuntimeHandler **handler_ptrs =
        xcalloc(n_handlers, sizeof(*handler_ptrs));
    Runtime__V1__RuntimeHandlerFeatures features = RUNTIME__V1__RUNTIME_HANDLER_FEATURES__INIT;
    for (size_t i = 0; i < n_handlers; i++) {
        runtime__v1__runtime_handler__init(&handlers[i]);
        handlers[i].name = i == 0 ? (char *)"" : rs->cfg->runtimes[i - 1].name;
        handlers[i].features = &features;
        handler_ptrs[i] = &handlers[i];
    }
    Runtime__V1__RuntimeFeatures runtime_features = RUNTIME__V1__RUNTIME_FEATURES__INIT;

    Runtime__V1__StatusResponse resp = RUNTIME__V1__STATUS_RESPONSE__INIT;
    resp.status = &status;
    resp.n_runtime_handlers = n_handlers;
    resp.runtime_handlers = handler_ptrs;
    resp.features = &runtime_features;

    _cleanup_free_ char *config_json = NULL;
    _cleanup_free_ char *cni_json = NULL;
    _cleanup_free_ char *runtimes_json = NULL;
    _cleanup_free_ char *cgroups_json = NULL;
    _cleanup_free_ char *stream_json = NULL;
    Runtime__V1__StatusResponse__InfoEntry entries[6];
    Runtime__V1__StatusResponse__InfoEntry *entry_ptrs[6];
    if (r->verbose) {
        config_json = config_to_json(rs->cfg);
        cni_json = verbose_info_json(rs, &net, net_err);
        runtimes_json = runtime_handlers_json();
        cgroups_json = cgroups_info_json();
        json_t *stream = json_object();
        const char *url = stream_service_url();
        json_object_set_new(stream, "url", url ? json_string(url) : json_null());
        stream_json = json_dumps(stream, JSON_COMPACT);
        json_decref(stream);
        /* lastCNILoadStatus: containerd's key, a plain text ("OK" or why not). */
        const char *keys[6] = {"config",  "cni",       "runtimes",
                               "cgroups", "streaming", "lastCNILoadStatus"};
        const char *values[6] = {config_json,  cni_json,    runtimes_json,
                                 cgroups_json, stream_json, net_err ? net_err->msg : "OK"};
        for (size_t i = 0; i < 6; i++) {
            runtime__v1__status_response__info_entry__init(&entries[i]);
            entries[i].key = (char *)keys[i];
            entries[i].value = (char *)values[i];
            entry_ptrs[i] = &entries[i];
        }
        resp.n_info = 6;
        resp.info = entry_ptrs;
    }
    rpc_reply(call, &resp.base);
    if (net_ready)
        cni_network_clear(&net);
}

void runtime_service_runtime_config(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    struct runtime_service *rs = ctx;
    Runtime__V1__LinuxRuntimeConfiguration lrc = RUNTIME__V1__LINUX_RUNTIME_CONFIGURATION__INIT;
    lrc.cgroup_driver = rs->cfg->cgroup_driver == CGROUP_DRIVER_SYSTEMD
                            ? RUNTIME__V1__CGROUP_DRIVER__SYSTEMD
                            : RUNTIME__V1__CGROUP_DRIVER__CGROUPFS;
    Runtime__V1__RuntimeConfigResponse resp = RUNTIME__V1__RUNTIME_CONFIG_RESPONSE__INIT;
    resp.linux = &lrc;
    rpc_reply(call, &resp.base);
}

/* Accept "a.b.c.d/n" or an IPv6 CIDR, possibly two of them comma separated (dual stack). */
static int check_cidr(const char *cidrs, struct error **err)
{
    _cleanup_free_ char *copy = xstrdup(cidrs);
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *slash = strchr(tok, '/');
        if (!slash)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "pod CIDR %s has no prefix length",
                             tok);
        *slash = '\0';
        unsigned char addr[16];
        int max;
        if (inet_pton(AF_INET, tok, addr) == 1)
            max = 32;
        else if (inet_pton(AF_INET6, tok, addr) == 1)
            max = 128;
        else
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "pod CIDR: %s is not an IP address",
                             tok);
        char *end = NULL;
        long len = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || len < 0 || len > max)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "pod CIDR: bad prefix length /%s",
                             slash + 1);
    }
    return 0;
}

void runtime_service_update_runtime_config(struct h2_call *call, const ProtobufCMessage *req,
                                           void *ctx)
{
    const Runtime__V1__UpdateRuntimeConfigRequest *r =
        (const Runtime__V1__UpdateRuntimeConfigRequest *)req;
    struct runtime_service *rs = ctx;
    const char *cidr = r->runtime_config && r->runtime_config->network_config
                           ? r->runtime_config->network_config->pod_cidr
                           : "";
    if (cidr && *cidr) {
        _cleanup_error_ struct error *err = NULL;
        if (check_cidr(cidr, &err) < 0) {
            rpc_fail(call, err);
            return;
        }
        if (!rs->pod_cidr || strcmp(rs->pod_cidr, cidr) != 0) {
            log_info("pod CIDR updated cidr=%s", cidr);
            free(rs->pod_cidr);
            rs->pod_cidr = xstrdup(cidr);
        }
    }
    Runtime__V1__UpdateRuntimeConfigResponse resp =
        RUNTIME__V1__UPDATE_RUNTIME_CONFIG_RESPONSE__INIT;
    rpc_reply(call, &resp.base);
}
