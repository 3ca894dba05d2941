/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pod sandboxes: the table of sandboxes, their records, validation, the
 * pod-init watch and start-up (sandbox.h has the layout and lifecycle). The
 * operations that make, stop and remove them are in sandbox_ops.c, a pod's
 * files in sandbox_files.c (sandbox_internal.h holds what they share).
 *
 * RunPodSandbox is an operation object (struct run_op) stepping through
 * PREPARE (record, directory), PIN_WAIT (a child makes and pins the pod's
 * namespaces), FILES (hostname, hosts, resolv.conf, /dev/shm; synchronous),
 * POD_INIT (the keeper in --pod-init mode, for pid mode POD), NETWORK (CNI
 * ADD), SYSCTLS and COMMIT. Any failure walks the undo states instead: CNI
 * DEL when the network is up, then everything else, then the record. A
 * sandbox being made is not in the table (nothing can see or stop it) but its
 * record is on disk from the start, NOTREADY and with network_ready set from
 * the moment CNI ADD begins, so a daemon killed half-way finds a NOTREADY
 * sandbox at the next start which the normal Stop/Remove path cleans up (CNI
 * DEL included).
 * A caller that goes away does not stop the operation: the sandbox is
 * completed (or unwound) as if it were still waiting, like containerd does.
 *
 * Stop and Remove are operation objects too (struct sb_op), serialised per
 * sandbox: the first op for an id runs, the others wait in line. Remove is
 * Stop followed by the removal steps.
 *
 * Restart: sandbox_init() loads every record and checks what survived. The
 * state dir is a tmpfs: after a reboot the pinned namespace files are gone
 * and the sandbox is NOTREADY. network_ready is kept even then: host-local
 * IPAM leases live on disk, so the Stop that kubelet sends still runs CNI DEL
 * (without a netns, which plugins accept for DEL). A sandbox whose pod-init
 * died (or whose pid now names another process: the start time is recorded)
 * is NOTREADY, as containerd marks a pod whose pause container died.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/queue.h>
#include <sys/pidfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <jansson.h>

#include "core/base64.h"
#include "core/config.h"
#include "core/error.h"
#include "core/id.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/path.h"
#include "core/persist.h"
#include "core/table.h"
#include "core/util.h"
#include "keeper/protocol.h"
#include "pod/cni.h"
#include "pod/nsfs.h"
#include "pod/sandbox.h"
#include "pod/sandbox_internal.h"

#define RECORD_MAX (4 * 1024 * 1024)
/* Caps on what a pod config may put into resolv.conf and CNI arguments. */
#define DNS_MAX_ENTRIES 64
#define DNS_MAX_LEN 1024
#define HOSTNAME_MAX 64

struct sb_module sbs;

/* ---- config helpers ---- */

static const Runtime__V1__NamespaceOption *ns_options(const Runtime__V1__PodSandboxConfig *c)
{
    if (c->linux && c->linux->security_context)
        return c->linux->security_context->namespace_options;
    return NULL;
}

bool sb_host_network(const Runtime__V1__PodSandboxConfig *c)
{
    const Runtime__V1__NamespaceOption *o = ns_options(c);
    return o && o->network == RUNTIME__V1__NAMESPACE_MODE__NODE;
}

bool sb_host_ipc(const Runtime__V1__PodSandboxConfig *c)
{
    const Runtime__V1__NamespaceOption *o = ns_options(c);
    return o && o->ipc == RUNTIME__V1__NAMESPACE_MODE__NODE;
}

/* An absent namespace_options means POD for every namespace (the protobuf default). */
bool sb_needs_pod_init(const Runtime__V1__PodSandboxConfig *c)
{
    const Runtime__V1__NamespaceOption *o = ns_options(c);
    return !o || o->pid == RUNTIME__V1__NAMESPACE_MODE__POD;
}

const char *sb_annotation(const Runtime__V1__PodSandboxConfig *c, const char *key)
{
    for (size_t i = 0; i < c->n_annotations; i++) {
        if (strcmp(c->annotations[i]->key, key) == 0)
            return c->annotations[i]->value;
    }
    return NULL;
}

/* The UTS hostname: the config's, else the pod name cut to 63 bytes as kubelet does. */
char *sb_pod_hostname(const Runtime__V1__PodSandboxConfig *c)
{
    if (c->hostname && *c->hostname)
        return xstrdup(c->hostname);
    char *h = xstrndup(c->metadata->name, HOSTNAME_MAX - 1);
    size_t n = strlen(h);
    while (n > 1 && (h[n - 1] == '-' || h[n - 1] == '.'))
        h[--n] = '\0';
    return h;
}

bool sb_has_dns_config(const Runtime__V1__PodSandboxConfig *c)
{
    const Runtime__V1__DNSConfig *d = c->dns_config;
    return d && (d->n_servers || d->n_searches || d->n_options);
}

bool sb_same_metadata(const Runtime__V1__PodSandboxMetadata *a,
                      const Runtime__V1__PodSandboxMetadata *b)
{
    return strcmp(a->name, b->name) == 0 && strcmp(a->namespace_, b->namespace_) == 0 &&
           strcmp(a->uid, b->uid) == 0 && a->attempt == b->attempt;
}

/* ---- validation ---- */

const char *sandbox_namespace_mode_name(Runtime__V1__NamespaceMode m)
{
    switch (m) {
    case RUNTIME__V1__NAMESPACE_MODE__POD:
        return "POD";
    case RUNTIME__V1__NAMESPACE_MODE__CONTAINER:
        return "CONTAINER";
    case RUNTIME__V1__NAMESPACE_MODE__NODE:
        return "NODE";
    case RUNTIME__V1__NAMESPACE_MODE__TARGET:
        return "TARGET";
    default:
        return "unknown";
    }
}

static int check_text(const char *what, const char *s, size_t max, struct error **err)
{
    size_t len = strlen(s);
    if (len == 0 || len > max)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s must be 1 to %zu bytes", what, max);
    for (const char *p = s; *p; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "%s %s contains whitespace or a control character", what, s);
    }
    return 0;
}

static int check_hostname(const char *h, struct error **err)
{
    if (check_text("hostname", h, HOSTNAME_MAX, err) < 0)
        return -1;
    for (const char *p = h; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_'))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "hostname %s: invalid character '%c'",
                             h, c);
    }
    return 0;
}

static int check_dns(const Runtime__V1__DNSConfig *d, struct error **err)
{
    if (!d)
        return 0;
    struct {
        const char *what;
        char **v;
        size_t n;
    } lists[] = {{"dns server", d->servers, d->n_servers},
                 {"dns search", d->searches, d->n_searches},
                 {"dns option", d->options, d->n_options}};
    for (size_t l = 0; l < ARRAY_SIZE(lists); l++) {
        if (lists[l].n > DNS_MAX_ENTRIES)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "more than %d %s entries",
                             DNS_MAX_ENTRIES, lists[l].what);
        for (size_t i = 0; i < lists[l].n; i++) {
            if (check_text(lists[l].what, lists[l].v[i], DNS_MAX_LEN, err) < 0)
                return -1;
        }
    }
    return 0;
}

static int check_ports(const Runtime__V1__PodSandboxConfig *c, struct error **err)
{
    for (size_t i = 0; i < c->n_port_mappings; i++) {
        const Runtime__V1__PortMapping *p = c->port_mappings[i];
        if (p->host_port == 0)
            continue;
        if (p->host_port < 0 || p->host_port > 65535 || p->container_port < 1 ||
            p->container_port > 65535)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "port mapping %d -> %d: out of range",
                             p->host_port, p->container_port);
        if (p->protocol != RUNTIME__V1__PROTOCOL__TCP &&
            p->protocol != RUNTIME__V1__PROTOCOL__UDP && p->protocol != RUNTIME__V1__PROTOCOL__SCTP)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "port mapping %d: unknown protocol %d",
                             p->host_port, (int)p->protocol);
        unsigned char addr[16];
        if (p->host_ip && *p->host_ip && inet_pton(AF_INET, p->host_ip, addr) != 1 &&
            inet_pton(AF_INET6, p->host_ip, addr) != 1)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "port mapping %d: host_ip %s is not an IP address", p->host_port,
                             p->host_ip);
    }
    return 0;
}

static int check_cgroup_parent(const char *parent, struct error **err)
{
    if (!parent || !*parent)
        return 0;
    if (sbs.cfg->cgroup_driver == CGROUP_DRIVER_SYSTEMD) {
        if (strchr(parent, '/') || !str_has_suffix(parent, ".slice") ||
            strlen(parent) == strlen(".slice"))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "cgroup parent %s: the systemd cgroup driver needs a slice name "
                             "(\"name.slice\")",
                             parent);
        return 0;
    }
    _cleanup_free_ char *copy = xstrdup(parent);
    char *save = NULL;
    for (char *tok = strtok_r(copy, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
        if (strcmp(tok, "..") == 0 || strcmp(tok, ".") == 0)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "cgroup parent %s: bad component %s",
                             parent, tok);
    }
    return 0;
}

/*
 * The pod's log directory (empty: no container logs) is where container log
 * files are created: an absolute clean path, and a directory when it exists
 * already (kubelet makes it before RunPodSandbox). A FIFO or a file there
 * would take the logs, or hang whoever opens it.
 */
static int check_log_directory(const char *dir, struct error **err)
{
    if (!dir || !*dir)
        return 0;
    if (path_has_control(dir))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "config.log_directory has a control character");
    if (dir[0] != '/')
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "config.log_directory %s is not absolute",
                         dir);
    if (path_has_dotdot(dir))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "config.log_directory %s has a \"..\" component", dir);
    if (strlen(dir) >= PATH_MAX - NAME_MAX - 1)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "config.log_directory is longer than %d bytes", PATH_MAX - NAME_MAX - 2);
    struct stat st;
    if (lstat(dir, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        return error_set(err, GRPC_INVALID_ARGUMENT, errno, "config.log_directory %s", dir);
    }
    if (!S_ISDIR(st.st_mode))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "config.log_directory %s exists and is not a directory", dir);
    return 0;
}

int sb_validate(const Runtime__V1__PodSandboxConfig *c, const char *handler, struct error **err)
{
    if (!c)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "config is required");
    const Runtime__V1__PodSandboxMetadata *m = c->metadata;
    /*
     * containerd takes a pod without namespace or uid, but then kubelet's and
     * crictl's CRI client refuse its PodSandboxStatus ("metadata.Name,
     * metadata.Namespace or metadata.Uid is not in metadata"): refuse it here.
     */
    if (!m || !*m->name)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "metadata.name is required");
    if (!*m->namespace_)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "metadata.namespace is required");
    if (!*m->uid)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "metadata.uid is required");
    if (!config_find_runtime(sbs.cfg, handler))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "unknown runtime handler \"%s\"", handler);
    const Runtime__V1__NamespaceOption *o = ns_options(c);
    if (o) {
        if (o->network != RUNTIME__V1__NAMESPACE_MODE__POD &&
            o->network != RUNTIME__V1__NAMESPACE_MODE__NODE)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "network namespace mode %s is not valid for a sandbox",
                             sandbox_namespace_mode_name(o->network));
        if (o->ipc != RUNTIME__V1__NAMESPACE_MODE__POD &&
            o->ipc != RUNTIME__V1__NAMESPACE_MODE__NODE)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "ipc namespace mode %s is not valid for a sandbox",
                             sandbox_namespace_mode_name(o->ipc));
        if (o->pid == RUNTIME__V1__NAMESPACE_MODE__TARGET || (int)o->pid < 0 || o->pid > 3)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "pid namespace mode %s is not valid for a sandbox",
                             sandbox_namespace_mode_name(o->pid));
        const Runtime__V1__UserNamespace *u = o->userns_options;
        if (u && u->mode == RUNTIME__V1__NAMESPACE_MODE__POD && (u->n_uids || u->n_gids))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "user namespaces are not supported");
    }
    bool host_net = sb_host_network(c);
    if (c->hostname && *c->hostname && check_hostname(c->hostname, err) < 0)
        return -1;
    if (!host_net) {
        _cleanup_free_ char *h = sb_pod_hostname(c);
        if (check_hostname(h, err) < 0)
            return -1;
    }
    if (check_dns(c->dns_config, err) < 0 || check_ports(c, err) < 0)
        return -1;
    if (c->linux) {
        for (size_t i = 0; i < c->linux->n_sysctls; i++) {
            const char *name = c->linux->sysctls[i]->key, *value = c->linux->sysctls[i]->value;
            int flag = 0;
            if (nsfs_sysctl_check(name, value, &flag, err) < 0)
                return -1;
            if ((flag == CLONE_NEWNET && host_net) || (flag == CLONE_NEWIPC && sb_host_ipc(c)))
                return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                                 "sysctl %s is not allowed: the pod uses the host's %s namespace",
                                 name, flag == CLONE_NEWNET ? "network" : "IPC");
        }
        if (check_cgroup_parent(c->linux->cgroup_parent, err) < 0)
            return -1;
    }
    if (check_log_directory(c->log_directory, err) < 0)
        return -1;
    const char *keys[] = {"kubernetes.io/ingress-bandwidth", "kubernetes.io/egress-bandwidth"};
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        const char *q = sb_annotation(c, keys[i]);
        uint64_t rate;
        if (q && cni_bandwidth_parse(q, &rate, err) < 0)
            return error_prefix(err, "annotation %s", keys[i]);
    }
    return 0;
}

/* ---- the sandbox object and its record ---- */

const char *sandbox_state_name(enum sandbox_state state)
{
    return state == SANDBOX_READY ? "SANDBOX_READY" : "SANDBOX_NOTREADY";
}

struct sb *sb_new(const char *id)
{
    struct sb *s = xcalloc(1, sizeof(*s));
    s->pub.id = xstrdup(id);
    s->pub.state = SANDBOX_NOTREADY;
    s->pub.ips = NULL;
    s->record_path = xasprintf("%s/%s.json", sbs.records_dir, id);
    s->dir = xasprintf("%s/%s", sbs.files_dir, id);
    return s;
}

static void pod_init_forget(struct sb *s)
{
    loop_pidfd_free(steal_ptr(&s->pod_init));
    s->pub.pod_init_pid = 0;
    s->pod_init_start = 0;
    free(s->pub.pid_ns_path);
    s->pub.pid_ns_path = NULL;
}

void sb_ips_clear(struct sandbox *p)
{
    for (size_t i = 0; i < p->n_ips; i++)
        free(p->ips[i]);
    free(p->ips);
    p->ips = NULL;
    p->n_ips = 0;
}

void sb_free(struct sb *s)
{
    if (!s)
        return;
    pod_init_forget(s);
    struct sandbox *p = &s->pub;
    free(p->id);
    if (p->config)
        runtime__v1__pod_sandbox_config__free_unpacked(p->config, NULL);
    free(p->runtime_handler);
    free(p->netns_path);
    free(p->ipc_path);
    free(p->uts_path);
    free(p->hostname_path);
    free(p->hosts_path);
    free(p->resolv_path);
    free(p->shm_path);
    free(p->cgroup_parent);
    sb_ips_clear(p);
    free(s->record_path);
    free(s->dir);
    free(s);
}

void sb_free_cb(void *s)
{
    sb_free(s);
}

static void json_set_path(json_t *o, const char *key, const char *value)
{
    if (value)
        json_object_set_new(o, key, json_string(value));
}

int sb_persist(const struct sb *s, struct error **err)
{
    const struct sandbox *p = &s->pub;
    size_t len = runtime__v1__pod_sandbox_config__get_packed_size(p->config);
    _cleanup_free_ uint8_t *packed = xmalloc(len ? len : 1);
    runtime__v1__pod_sandbox_config__pack(p->config, packed);
    _cleanup_json_ json_t *o = json_object();
    json_object_set_new(o, "version", json_integer(1));
    json_object_set_new(o, "id", json_string(p->id));
    json_object_set_new(o, "state", json_string(p->state == SANDBOX_READY ? "READY" : "NOTREADY"));
    json_object_set_new(o, "created", json_integer(p->created_ns));
    json_object_set_new(o, "handler", json_string(p->runtime_handler));
    _cleanup_free_ char *config_b64 = base64_encode(packed, len);
    json_object_set_new(o, "config", json_string(config_b64));
    json_t *paths = json_object();
    json_set_path(paths, "net", p->netns_path);
    json_set_path(paths, "ipc", p->ipc_path);
    json_set_path(paths, "uts", p->uts_path);
    json_set_path(paths, "pid", p->pid_ns_path);
    json_set_path(paths, "hostname", p->hostname_path);
    json_set_path(paths, "hosts", p->hosts_path);
    json_set_path(paths, "resolv", p->resolv_path);
    json_set_path(paths, "shm", p->shm_path);
    json_object_set_new(o, "paths", paths);
    json_object_set_new(o, "cgroup_parent", json_string(p->cgroup_parent ? p->cgroup_parent : ""));
    json_t *ips = json_array();
    for (size_t i = 0; i < p->n_ips; i++)
        json_array_append_new(ips, json_string(p->ips[i]));
    json_object_set_new(o, "ips", ips);
    json_object_set_new(o, "network_ready", json_boolean(p->network_ready));
    json_object_set_new(o, "pod_init_pid", json_integer(p->pod_init_pid));
    json_object_set_new(o, "pod_init_start", json_integer((json_int_t)s->pod_init_start));
    _cleanup_free_ char *text = json_dumps(o, JSON_COMPACT);
    assert_state(text);
    if (persist_write(s->record_path, text, strlen(text), 0600, err) < 0)
        return error_prefix(err, "save sandbox %s", p->id);
    return 0;
}

static char *json_str_dup(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? xstrdup(v) : NULL;
}

static struct sb *sb_from_record(const char *id, const char *text, size_t len, struct error **err)
{
    json_error_t jerr;
    _cleanup_json_ json_t *o = json_loadb(text, len, 0, &jerr);
    if (!o || !json_is_object(o))
        return error_set(err, GRPC_DATA_LOSS, 0, "not a JSON object: %s", jerr.text), NULL;
    const char *rid = json_string_value(json_object_get(o, "id"));
    const char *state = json_string_value(json_object_get(o, "state"));
    const char *config = json_string_value(json_object_get(o, "config"));
    const char *handler = json_string_value(json_object_get(o, "handler"));
    if (!rid || strcmp(rid, id) != 0 || !state || !config || !handler)
        return error_set(err, GRPC_DATA_LOSS, 0, "id, state, config or handler missing"), NULL;
    size_t plen = 0;
    _cleanup_free_ uint8_t *packed = base64_decode(config, &plen);
    if (!packed)
        return error_set(err, GRPC_DATA_LOSS, 0, "config is not base64"), NULL;
    Runtime__V1__PodSandboxConfig *cfg =
        runtime__v1__pod_sandbox_config__unpack(NULL, plen, packed);
    if (!cfg || !cfg->metadata) {
        if (cfg)
            runtime__v1__pod_sandbox_config__free_unpacked(cfg, NULL);
        return error_set(err, GRPC_DATA_LOSS, 0, "config does not unpack"), NULL;
    }
    struct sb *s = sb_new(id);
    struct sandbox *p = &s->pub;
    p->config = cfg;
    p->runtime_handler = xstrdup(handler);
    p->state = strcmp(state, "READY") == 0 ? SANDBOX_READY : SANDBOX_NOTREADY;
    p->created_ns = json_integer_value(json_object_get(o, "created"));
    const json_t *paths = json_object_get(o, "paths");
    p->netns_path = json_str_dup(paths, "net");
    p->ipc_path = json_str_dup(paths, "ipc");
    p->uts_path = json_str_dup(paths, "uts");
    p->pid_ns_path = json_str_dup(paths, "pid");
    p->hostname_path = json_str_dup(paths, "hostname");
    p->hosts_path = json_str_dup(paths, "hosts");
    p->resolv_path = json_str_dup(paths, "resolv");
    p->shm_path = json_str_dup(paths, "shm");
    p->cgroup_parent = json_str_dup(o, "cgroup_parent");
    if (!p->cgroup_parent)
        p->cgroup_parent = xstrdup("");
    const json_t *ips = json_object_get(o, "ips");
    size_t n = json_array_size(ips);
    p->ips = xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        const char *ip = json_string_value(json_array_get(ips, i));
        if (ip)
            p->ips[p->n_ips++] = xstrdup(ip);
    }
    p->network_ready = json_is_true(json_object_get(o, "network_ready"));
    p->pod_init_pid = (int)json_integer_value(json_object_get(o, "pod_init_pid"));
    s->pod_init_start = (uint64_t)json_integer_value(json_object_get(o, "pod_init_start"));
    return s;
}

/* ---- the table ---- */

static const char *sb_id(const void *item)
{
    return ((const struct sb *)item)->pub.id;
}

struct sandbox *sandbox_find(const char *id_or_prefix)
{
    struct sb *s = table_find_prefix(&sbs.table, id_or_prefix);
    return s ? &s->pub : NULL;
}

struct sandbox *sandbox_at(size_t i)
{
    struct sb *s = table_at(&sbs.table, i);
    return s ? &s->pub : NULL;
}

size_t sandbox_count(void)
{
    return sbs.table.n;
}

/* ---- pod-init ---- */

/* Field 22 of /proc/<pid>/stat: the start time, which tells a reused pid apart. */
static int proc_start_time(int pid, uint64_t *out)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    _cleanup_error_ struct error *tmp = NULL;
    size_t len = 0;
    _cleanup_free_ char *text = read_file_capped(path, 4096, &len, &tmp);
    if (!text)
        return -1;
    const char *p = strrchr(text, ')');
    if (!p)
        return -1;
    p++;
    /* After ") " come fields 3, 4, ...: skip 19 of them to reach field 22. */
    for (int field = 3; field < 22; field++) {
        p = strchr(p + 1, ' ');
        if (!p)
            return -1;
    }
    char *end = NULL;
    unsigned long long v = strtoull(p + 1, &end, 10);
    if (end == p + 1)
        return -1;
    *out = v;
    return 0;
}

static void on_pod_init_exit(void *arg)
{
    struct sb *s = arg;
    log_info("pod-init exited sandbox=%s pid=%d", s->pub.id, s->pub.pod_init_pid);
    pod_init_forget(s);
    /* A made sandbox loses its readiness; one being made fails at COMMIT. */
    bool in_table = table_find(&sbs.table, s->pub.id) == s;
    if (in_table && s->pub.state == SANDBOX_READY)
        s->pub.state = SANDBOX_NOTREADY;
    struct error *tmp = NULL;
    if (sb_persist(s, &tmp) < 0) {
        log_error("sandbox=%s: %s", s->pub.id, tmp->msg);
        error_free(tmp);
    }
}

/*
 * Watch the pod-init process pid through a pidfd. start is its expected
 * start time (0: take the current one). Fails when the process is gone or
 * the pid now names another process.
 */
int sb_pod_init_adopt(struct sb *s, int pid, uint64_t start, struct error **err)
{
    int fd = pidfd_open(pid, 0);
    if (fd < 0)
        return error_set(err, GRPC_INTERNAL, errno, "pod-init pid %d", pid);
    uint64_t now = 0;
    if (proc_start_time(pid, &now) < 0 || (start && now != start)) {
        close(fd);
        return error_set(err, GRPC_INTERNAL, 0, "pod-init pid %d is gone", pid);
    }
    s->pod_init = loop_watch_pidfd(fd, on_pod_init_exit, s, err);
    if (!s->pod_init)
        return error_prefix(err, "watch pod-init pid %d", pid);
    s->pub.pod_init_pid = pid;
    s->pod_init_start = now;
    free(s->pub.pid_ns_path);
    s->pub.pid_ns_path = xasprintf("/proc/%d/ns/pid", pid);
    return 0;
}

void sb_pod_init_kill(struct sb *s)
{
    if (s->pod_init)
        loop_pidfd_signal(s->pod_init, SIGKILL);
    pod_init_forget(s);
}

/* Is path a pinned namespace (an nsfs bind mount)? */
bool sb_is_pinned(const char *path)
{
    struct statfs st;
    return path && statfs(path, &st) == 0 && (unsigned long)st.f_type == NSFS_MAGIC;
}

/* ====================================================================== */
/* start-up and shutdown                                                   */
/* ====================================================================== */

/* Check a loaded sandbox against what survived; persist when that changed it. */
static void reconcile(struct sb *s)
{
    struct sandbox *p = &s->pub;
    const Runtime__V1__PodSandboxConfig *c = p->config;
    enum sandbox_state before = p->state;
    const char *lost = NULL;
    if (!sb_host_network(c) && (!sb_is_pinned(p->netns_path) || !sb_is_pinned(p->uts_path)))
        lost = "network/UTS namespace gone";
    else if (!sb_host_ipc(c) && !sb_is_pinned(p->ipc_path))
        lost = "IPC namespace gone";
    bool changed = false;
    if (p->pod_init_pid > 0) {
        struct error *tmp = NULL;
        int pid = p->pod_init_pid;
        if (sb_pod_init_adopt(s, pid, s->pod_init_start, &tmp) < 0) {
            log_debug("sandbox=%s: %s", p->id, tmp->msg);
            error_free(tmp);
            pod_init_forget(s);
            changed = true;
            if (!lost)
                lost = "pod-init died";
        }
    } else if (sb_needs_pod_init(c) && !lost) {
        lost = "no pod-init";
    }
    if (lost && p->state == SANDBOX_READY) {
        p->state = SANDBOX_NOTREADY;
        log_warn("sandbox not ready after restart sandbox=%s: %s", p->id, lost);
    }
    if (changed || p->state != before) {
        struct error *tmp = NULL;
        if (sb_persist(s, &tmp) < 0) {
            log_error("sandbox=%s: %s", p->id, tmp->msg);
            error_free(tmp);
        }
    }
}

static int load_records(struct error **err)
{
    DIR *d = opendir(sbs.records_dir);
    if (!d)
        return error_set(err, GRPC_INTERNAL, errno, "open %s", sbs.records_dir);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *name = e->d_name;
        if (persist_is_temp_name(name) || !str_has_suffix(name, ".json"))
            continue;
        _cleanup_free_ char *id = xstrndup(name, strlen(name) - strlen(".json"));
        _cleanup_free_ char *path = xasprintf("%s/%s", sbs.records_dir, name);
        struct error *tmp = NULL;
        if (!id_is_valid(id)) {
            log_warn("skipping sandbox record with a bad name path=%s", path);
            continue;
        }
        size_t len = 0;
        _cleanup_free_ char *text = read_file_capped(path, RECORD_MAX, &len, &tmp);
        struct sb *s = text ? sb_from_record(id, text, len, &tmp) : NULL;
        if (!s) {
            persist_set_aside(sbs.records_dir, name, "sandbox", tmp);
            error_free(tmp);
            continue;
        }
        reconcile(s);
        table_add(&sbs.table, s);
        log_info("sandbox loaded sandbox=%s state=%s", id, sandbox_state_name(s->pub.state));
    }
    closedir(d);
    return 0;
}

int sandbox_init(const struct config *cfg, const struct sandbox_container_hooks *hooks,
                 struct error **err)
{
    sbs.cfg = cfg;
    sbs.table = (struct table)TABLE_INIT(sb_id);
    TAILQ_INIT(&sbs.runs);
    TAILQ_INIT(&sbs.ops);
    if (hooks)
        sbs.hooks = *hooks;
    sbs.records_dir = xasprintf("%s/sandboxes", cfg->root_dir);
    sbs.files_dir = xasprintf("%s/sandboxes", cfg->state_dir);
    sbs.netns_dir = xasprintf("%s/netns", cfg->state_dir);
    sbs.cni_cache_dir = xasprintf("%s/cni-cache", cfg->state_dir);
    sbs.keeper = libexec_path(KEEPER_BINARY, KEEPER_BINARY_ENV);
    if (mkdir_p(sbs.records_dir, 0700, err) < 0 || mkdir_p(sbs.files_dir, 0700, err) < 0 ||
        mkdir_p(sbs.cni_cache_dir, 0700, err) < 0)
        return error_prefix(err, "sandbox directories");
    /* Pods pinned before a restart: keep their dir shared (idempotent). */
    struct stat st;
    if (stat(sbs.netns_dir, &st) == 0) {
        if (nsfs_prepare_dir(sbs.netns_dir, err) < 0)
            return -1;
        sbs.netns_ready = true;
    }
    persist_clean_dir(sbs.records_dir);
    return load_records(err);
}

/* No record left: nothing is pinned, and the netns dir mount can go too. */
static bool has_records(void)
{
    DIR *d = opendir(sbs.records_dir);
    if (!d)
        return true;
    bool any = false;
    struct dirent *e;
    while (!any && (e = readdir(d)))
        any = str_has_suffix(e->d_name, ".json") && !persist_is_temp_name(e->d_name);
    closedir(d);
    return any;
}

void sandbox_shutdown(void)
{
    sb_ops_shutdown();
    for (size_t i = 0; i < sbs.table.n; i++)
        sb_free(sbs.table.items[i]);
    table_clear(&sbs.table);
    if (sbs.netns_ready && !has_records()) {
        if (umount2(sbs.netns_dir, MNT_DETACH) == 0)
            rmdir(sbs.netns_dir);
    }
    free(sbs.records_dir);
    free(sbs.files_dir);
    free(sbs.netns_dir);
    free(sbs.cni_cache_dir);
    free(sbs.keeper);
    memset(&sbs, 0, sizeof(sbs));
}
