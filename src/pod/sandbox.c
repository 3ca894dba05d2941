/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pod sandboxes: the table of sandboxes, their records, and the operations
 * that make, stop and remove them (sandbox.h has the layout and lifecycle).
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
#include <sys/pidfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/persist.h"
#include "core/util.h"
#include "pod/cni.h"
#include "pod/nsfs.h"
#include "pod/sandbox.h"

#define RECORD_MAX (4 * 1024 * 1024)
#define HOST_FILE_MAX (64 * 1024)
/* Generated resolv.conf and hosts: more than validation lets the config reach. */
#define TEXT_MAX (1024 * 1024)
#define SHM_OPTIONS "mode=1777,size=65536k"
#define POD_INIT_TIMEOUT_MS 10000
#define SYSCTL_TIMEOUT_MS 10000
/* Creating a network namespace can wait long on the kernel's namespace cleanup. */
#define PIN_TIMEOUT_MS 30000
#define RM_TIMEOUT_MS 120000
/* Caps on what a pod config may put into resolv.conf and CNI arguments. */
#define DNS_MAX_ENTRIES 64
#define DNS_MAX_LEN 1024
#define HOSTNAME_MAX 64

struct sb {
    struct sandbox pub;      /* first: callers get &sb->pub */
    char *record_path;       /* <root_dir>/sandboxes/<id>.json */
    char *dir;               /* <state_dir>/sandboxes/<id> */
    uint64_t pod_init_start; /* start time of pod_init_pid (clock ticks after boot) */
    int pod_init_pidfd;      /* -1: no pod-init watched */
    struct event *pod_init_ev;
};

/* ---- RunPodSandbox ---- */

enum run_state {
    RUN_START,             /* waiting for the kick timer (done never runs inside sandbox_run) */
    RUN_PREPARE,           /* record, directory; start pinning the namespaces (synchronous) */
    RUN_PIN_WAIT,          /* pinning child running (op->pin); waiting for its done */
    RUN_FILES,             /* hostname, resolv.conf, hosts, /dev/shm (synchronous) */
    RUN_POD_INIT,          /* start the keeper in --pod-init mode when pid mode is POD */
    RUN_POD_INIT_WAIT,     /* keeper running (op->child); waiting for its report */
    RUN_NETWORK,           /* start CNI ADD unless host network */
    RUN_NETWORK_WAIT,      /* CNI ADD running (op->cni); waiting for its done */
    RUN_SYSCTLS,           /* start the sysctl child when the config has sysctls */
    RUN_SYSCTLS_WAIT,      /* sysctl child running (op->sysctl); waiting for its done */
    RUN_COMMIT,            /* hosts file, READY, persist, into the table (synchronous) */
    RUN_UNDO_NETWORK,      /* a failure with the network up: start CNI DEL */
    RUN_UNDO_NETWORK_WAIT, /* CNI DEL running (op->cni); waiting for its done */
    RUN_UNDO,              /* pod-init, /dev/shm, namespaces, files, record (synchronous) */
    RUN_DONE,
    RUN_FAILED,
};

struct run_op {
    struct run_op *next;
    enum run_state state;
    struct sb *sb; /* owned until COMMIT hands it to the table */
    char id[65];
    struct loop_timer *kick;
    struct child *child;
    int pod_init_pid; /* reported by the keeper; adopted in RUN_POD_INIT_WAIT */
    struct cni_op *cni;
    struct cni_network net;
    bool have_net;
    struct cni_result added; /* the ADD's addresses, taken in RUN_NETWORK_WAIT */
    struct nsfs_pin_op *pin;
    struct nsfs_sysctl_op *sysctl;
    struct error *err; /* the first failure */
    struct error *undo_err;
    sandbox_done_cb done;
    void *arg;
};

/* ---- StopPodSandbox / RemovePodSandbox ---- */

enum sbop_kind {
    SBOP_STOP,
    SBOP_REMOVE,
};

enum sbop_state {
    SBOP_QUEUED,            /* waiting for the kick timer and for earlier ops on the sandbox */
    SBOP_CONTAINERS,        /* ask pod/container to stop every container */
    SBOP_CONTAINERS_WAIT,   /* waiting for stop_all's done (op->hook_pending) */
    SBOP_POD_INIT,          /* SIGKILL the pod-init, NOTREADY, persist (synchronous) */
    SBOP_NETWORK,           /* start CNI DEL when network_ready */
    SBOP_NETWORK_WAIT,      /* CNI DEL running (op->cni); waiting for its done */
    SBOP_SHM,               /* unmount /dev/shm; a Stop ends here (synchronous) */
    SBOP_REMOVE_CONTAINERS, /* remove_all (synchronous) */
    SBOP_REMOVE_FILES,      /* unpin namespaces, remove files; rm child if the dir is not empty */
    SBOP_REMOVE_FILES_WAIT, /* rm child running (op->rm); waiting for its exit */
    SBOP_FORGET,            /* delete the record, drop from the table (synchronous) */
    SBOP_DONE,
    SBOP_FAILED,
};

struct sb_op {
    struct sb_op *next; /* g.ops, in arrival order */
    uint64_t seq;
    enum sbop_kind kind;
    enum sbop_state state;
    char *id; /* the full id, or what the caller gave when no sandbox matched */
    bool stepping;
    bool hook_pending;
    struct loop_timer *kick;
    struct cni_op *cni;
    struct cni_network net;
    bool have_net;
    struct child *rm;
    struct error *err;
    sandbox_done_cb done;
    void *arg;
};

static struct {
    const struct config *cfg;
    struct sandbox_container_hooks hooks;
    char *records_dir;   /* <root_dir>/sandboxes */
    char *files_dir;     /* <state_dir>/sandboxes */
    char *netns_dir;     /* <state_dir>/netns */
    char *cni_cache_dir; /* <state_dir>/cni-cache */
    char *keeper;        /* the pod-init binary */
    struct sb **items;
    size_t n_items, alloc_items;
    struct run_op *runs;
    struct sb_op *ops;
    uint64_t next_seq;
    bool netns_ready; /* netns_dir is a shared mount (made on first need: a daemon without
                       * pods leaves no mount behind, even when killed) */
} g;

static void copy_error(struct error **dst, const struct error *src)
{
    if (!*dst && src)
        error_set(dst, src->grpc_code, 0, "%s", src->msg);
}

/* ---- config helpers ---- */

static const Runtime__V1__NamespaceOption *ns_options(const Runtime__V1__PodSandboxConfig *c)
{
    if (c->linux && c->linux->security_context)
        return c->linux->security_context->namespace_options;
    return NULL;
}

static bool is_host_network(const Runtime__V1__PodSandboxConfig *c)
{
    const Runtime__V1__NamespaceOption *o = ns_options(c);
    return o && o->network == RUNTIME__V1__NAMESPACE_MODE__NODE;
}

static bool is_host_ipc(const Runtime__V1__PodSandboxConfig *c)
{
    const Runtime__V1__NamespaceOption *o = ns_options(c);
    return o && o->ipc == RUNTIME__V1__NAMESPACE_MODE__NODE;
}

/* An absent namespace_options means POD for every namespace (the protobuf default). */
static bool needs_pod_init(const Runtime__V1__PodSandboxConfig *c)
{
    const Runtime__V1__NamespaceOption *o = ns_options(c);
    return !o || o->pid == RUNTIME__V1__NAMESPACE_MODE__POD;
}

static const char *annotation(const Runtime__V1__PodSandboxConfig *c, const char *key)
{
    for (size_t i = 0; i < c->n_annotations; i++) {
        if (strcmp(c->annotations[i]->key, key) == 0)
            return c->annotations[i]->value;
    }
    return NULL;
}

/* The UTS hostname: the config's, else the pod name cut to 63 bytes as kubelet does. */
static char *pod_hostname(const Runtime__V1__PodSandboxConfig *c)
{
    if (c->hostname && *c->hostname)
        return xstrdup(c->hostname);
    char *h = xstrndup(c->metadata->name, HOSTNAME_MAX - 1);
    size_t n = strlen(h);
    while (n > 1 && (h[n - 1] == '-' || h[n - 1] == '.'))
        h[--n] = '\0';
    return h;
}

static bool has_dns_config(const Runtime__V1__PodSandboxConfig *c)
{
    const Runtime__V1__DNSConfig *d = c->dns_config;
    return d && (d->n_servers || d->n_searches || d->n_options);
}

static bool same_metadata(const Runtime__V1__PodSandboxMetadata *a,
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
    if (g.cfg->cgroup_driver == CGROUP_DRIVER_SYSTEMD) {
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
    for (const char *p = dir; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "config.log_directory has a control character");
    if (dir[0] != '/')
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "config.log_directory %s is not absolute",
                         dir);
    for (const char *c = dir; (c = strstr(c, "..")); c += 2)
        if (c[-1] == '/' && (c[2] == '\0' || c[2] == '/'))
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

static int validate(const Runtime__V1__PodSandboxConfig *c, const char *handler, struct error **err)
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
    if (!config_find_runtime(g.cfg, handler))
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
    bool host_net = is_host_network(c);
    if (c->hostname && *c->hostname && check_hostname(c->hostname, err) < 0)
        return -1;
    if (!host_net) {
        _cleanup_free_ char *h = pod_hostname(c);
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
            if ((flag == CLONE_NEWNET && host_net) || (flag == CLONE_NEWIPC && is_host_ipc(c)))
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
        const char *q = annotation(c, keys[i]);
        uint64_t rate;
        if (q && cni_bandwidth_parse(q, &rate, err) < 0)
            return error_prefix(err, "annotation %s", keys[i]);
    }
    return 0;
}

/* ---- base64 (the record keeps the config as packed protobuf) ---- */

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64_encode(const uint8_t *in, size_t len)
{
    char *out = xmalloc((len + 2) / 3 * 4 + 1);
    char *o = out;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        *o++ = b64_chars[(v >> 18) & 63];
        *o++ = b64_chars[(v >> 12) & 63];
        *o++ = i + 1 < len ? b64_chars[(v >> 6) & 63] : '=';
        *o++ = i + 2 < len ? b64_chars[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

static uint8_t *base64_decode(const char *in, size_t *out_len)
{
    size_t len = strlen(in);
    if (len % 4)
        return NULL;
    uint8_t *out = xmalloc(len / 4 * 3 + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (size_t j = 0; j < 4; j++) {
            const char *p = in[i + j] ? strchr(b64_chars, in[i + j]) : NULL;
            if (in[i + j] == '=' && i + 4 == len && j >= 2) {
                pad++;
                v <<= 6;
                continue;
            }
            if (!p || pad) {
                free(out);
                return NULL;
            }
            v = v << 6 | (uint32_t)(p - b64_chars);
        }
        out[n++] = (uint8_t)(v >> 16);
        if (pad < 2)
            out[n++] = (uint8_t)(v >> 8);
        if (pad < 1)
            out[n++] = (uint8_t)v;
    }
    *out_len = n;
    return out;
}

/* ---- the sandbox object and its record ---- */

const char *sandbox_state_name(enum sandbox_state state)
{
    return state == SANDBOX_READY ? "SANDBOX_READY" : "SANDBOX_NOTREADY";
}

static struct sb *sb_new(const char *id)
{
    struct sb *s = xcalloc(1, sizeof(*s));
    s->pub.id = xstrdup(id);
    s->pub.state = SANDBOX_NOTREADY;
    s->pub.ips = NULL;
    s->pod_init_pidfd = -1;
    s->record_path = xasprintf("%s/%s.json", g.records_dir, id);
    s->dir = xasprintf("%s/%s", g.files_dir, id);
    return s;
}

static void pod_init_forget(struct sb *s)
{
    if (s->pod_init_ev) {
        event_del(s->pod_init_ev);
        loop_defer_free((void (*)(void *))event_free, s->pod_init_ev);
        s->pod_init_ev = NULL;
    }
    if (s->pod_init_pidfd >= 0)
        close(s->pod_init_pidfd);
    s->pod_init_pidfd = -1;
    s->pub.pod_init_pid = 0;
    s->pod_init_start = 0;
    free(s->pub.pid_ns_path);
    s->pub.pid_ns_path = NULL;
}

static void ips_clear(struct sandbox *p)
{
    for (size_t i = 0; i < p->n_ips; i++)
        free(p->ips[i]);
    free(p->ips);
    p->ips = NULL;
    p->n_ips = 0;
}

static void sb_free(struct sb *s)
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
    ips_clear(p);
    free(s->record_path);
    free(s->dir);
    free(s);
}

static void sb_free_cb(void *s)
{
    sb_free(s);
}

static void json_set_path(json_t *o, const char *key, const char *value)
{
    if (value)
        json_object_set_new(o, key, json_string(value));
}

static int sb_persist(const struct sb *s, struct error **err)
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

static bool is_valid_id(const char *id)
{
    if (!id || strlen(id) != 64)
        return false;
    for (const char *p = id; *p; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    }
    return true;
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

static void table_add(struct sb *s)
{
    if (g.n_items == g.alloc_items) {
        g.alloc_items = g.alloc_items ? 2 * g.alloc_items : 16;
        g.items = xrealloc(g.items, g.alloc_items * sizeof(*g.items));
    }
    g.items[g.n_items++] = s;
}

static void table_remove(struct sb *s)
{
    for (size_t i = 0; i < g.n_items; i++) {
        if (g.items[i] == s) {
            memmove(&g.items[i], &g.items[i + 1], (g.n_items - i - 1) * sizeof(*g.items));
            g.n_items--;
            return;
        }
    }
}

static struct sb *table_find_exact(const char *id)
{
    for (size_t i = 0; i < g.n_items; i++) {
        if (strcmp(g.items[i]->pub.id, id) == 0)
            return g.items[i];
    }
    return NULL;
}

struct sandbox *sandbox_find(const char *id_or_prefix)
{
    if (!id_or_prefix || !*id_or_prefix)
        return NULL;
    struct sb *exact = table_find_exact(id_or_prefix);
    if (exact)
        return &exact->pub;
    struct sb *found = NULL;
    for (size_t i = 0; i < g.n_items; i++) {
        if (str_has_prefix(g.items[i]->pub.id, id_or_prefix)) {
            if (found)
                return NULL; /* ambiguous */
            found = g.items[i];
        }
    }
    return found ? &found->pub : NULL;
}

struct sandbox *sandbox_at(size_t i)
{
    return i < g.n_items ? &g.items[i]->pub : NULL;
}

size_t sandbox_count(void)
{
    return g.n_items;
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

static void on_pod_init_exit(evutil_socket_t fd, short what, void *arg)
{
    struct sb *s = arg;
    log_info("pod-init exited sandbox=%s pid=%d", s->pub.id, s->pub.pod_init_pid);
    pod_init_forget(s);
    /* A made sandbox loses its readiness; one being made fails at COMMIT. */
    bool in_table = table_find_exact(s->pub.id) == s;
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
static int pod_init_adopt(struct sb *s, int pid, uint64_t start, struct error **err)
{
    int fd = pidfd_open(pid, 0);
    if (fd < 0)
        return error_set(err, GRPC_INTERNAL, errno, "pod-init pid %d", pid);
    uint64_t now = 0;
    if (proc_start_time(pid, &now) < 0 || (start && now != start)) {
        close(fd);
        return error_set(err, GRPC_INTERNAL, 0, "pod-init pid %d is gone", pid);
    }
    s->pod_init_pidfd = fd;
    s->pod_init_ev = event_new(loop_base(), fd, EV_READ, on_pod_init_exit, s);
    if (!s->pod_init_ev || event_add(s->pod_init_ev, NULL) < 0) {
        pod_init_forget(s);
        return error_set(err, GRPC_INTERNAL, 0, "watch pod-init pid %d", pid);
    }
    s->pub.pod_init_pid = pid;
    s->pod_init_start = now;
    free(s->pub.pid_ns_path);
    s->pub.pid_ns_path = xasprintf("/proc/%d/ns/pid", pid);
    return 0;
}

static void pod_init_kill(struct sb *s)
{
    if (s->pod_init_pidfd >= 0 && pidfd_send_signal(s->pod_init_pidfd, SIGKILL, NULL, 0) < 0 &&
        errno != ESRCH)
        log_warn("kill pod-init sandbox=%s pid=%d: %s", s->pub.id, s->pub.pod_init_pid,
                 strerror(errno));
    pod_init_forget(s);
}

/* In the keeper's child: the report goes to fd 3, which here is the stdout pipe. */
static int status_fd_from_stdout(void *arg)
{
    return dup2(STDOUT_FILENO, 3) < 0 ? -1 : 0;
}

/* ---- local files and mounts ---- */

static int write_file(const char *path, const char *text, struct error **err)
{
    return persist_write(path, text, strlen(text), 0644, err);
}

static int copy_host_file(const char *src, const char *dst, struct error **err)
{
    struct error *tmp = NULL;
    size_t len = 0;
    _cleanup_free_ char *text = read_file_capped(src, HOST_FILE_MAX, &len, &tmp);
    if (!text) {
        log_debug("host file unreadable path=%s: %s", src, tmp->msg);
        error_free(tmp);
        return write_file(dst, "", err);
    }
    return persist_write(dst, text, len, 0644, err);
}

static char *resolv_conf_text(const Runtime__V1__DNSConfig *d)
{
    struct buf b;
    buf_init(&b, TEXT_MAX);
    for (size_t i = 0; i < d->n_servers; i++) {
        _cleanup_free_ char *line = xasprintf("nameserver %s\n", d->servers[i]);
        buf_append(&b, line, strlen(line));
    }
    const char *const heads[] = {"search", "options"};
    char **lists[] = {d->searches, d->options};
    size_t counts[] = {d->n_searches, d->n_options};
    for (size_t l = 0; l < 2; l++) {
        if (!counts[l])
            continue;
        buf_append(&b, heads[l], strlen(heads[l]));
        for (size_t i = 0; i < counts[l]; i++) {
            buf_append(&b, " ", 1);
            buf_append(&b, lists[l][i], strlen(lists[l][i]));
        }
        buf_append(&b, "\n", 1);
    }
    return buf_take_str(&b, NULL);
}

static int write_hosts(const struct sb *s, struct error **err)
{
    const struct sandbox *p = &s->pub;
    if (is_host_network(p->config))
        return copy_host_file("/etc/hosts", p->hosts_path, err);
    _cleanup_free_ char *hostname = pod_hostname(p->config);
    struct buf b;
    buf_init(&b, TEXT_MAX);
    const char *head = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n";
    buf_append(&b, head, strlen(head));
    for (size_t i = 0; i < p->n_ips; i++) {
        _cleanup_free_ char *line = xasprintf("%s %s\n", p->ips[i], hostname);
        buf_append(&b, line, strlen(line));
    }
    _cleanup_free_ char *text = buf_take_str(&b, NULL);
    return write_file(p->hosts_path, text, err);
}

static bool owns_shm(const struct sb *s)
{
    return !is_host_ipc(s->pub.config);
}

static int shm_umount(const struct sb *s, struct error **err)
{
    if (!owns_shm(s))
        return 0;
    _cleanup_free_ char *path = xasprintf("%s/shm", s->dir);
    if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
        return error_set(err, GRPC_INTERNAL, errno, "unmount %s", path);
    return 0;
}

/*
 * Remove what the sandbox has on this node but its record: namespaces,
 * /dev/shm, files, directory, CNI cache. Idempotent. When the directory holds
 * more than what we put there, fails with sys_errno ENOTEMPTY.
 */
static int remove_local(const struct sb *s, struct error **err)
{
    const char *id = s->pub.id;
    if (shm_umount(s, err) < 0)
        return -1;
    if (nsfs_unpin(g.netns_dir, id, err) < 0)
        return -1;
    const char *names[] = {"hostname", "hosts", "resolv.conf"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        _cleanup_free_ char *path = xasprintf("%s/%s", s->dir, names[i]);
        if (unlink(path) < 0 && errno != ENOENT)
            return error_set(err, GRPC_INTERNAL, errno, "remove %s", path);
    }
    persist_clean_dir(s->dir);
    _cleanup_free_ char *shm = xasprintf("%s/shm", s->dir);
    if (rmdir(shm) < 0 && errno != ENOENT)
        return error_set(err, GRPC_INTERNAL, errno, "remove %s", shm);
    if (rmdir(s->dir) < 0 && errno != ENOENT)
        return error_set(err, GRPC_INTERNAL, errno, "remove %s", s->dir);
    _cleanup_free_ char *cache = xasprintf("%s/%s.json", g.cni_cache_dir, id);
    if (unlink(cache) < 0 && errno != ENOENT)
        return error_set(err, GRPC_INTERNAL, errno, "remove %s", cache);
    return 0;
}

/* ---- CNI arguments ---- */

struct cni_args {
    struct cni_pod pod;
    struct cni_port_mapping *ports;
    struct cni_bandwidth bw;
    struct cni_dns dns;
};

static const char *protocol_name(Runtime__V1__Protocol p)
{
    return p == RUNTIME__V1__PROTOCOL__UDP    ? "udp"
           : p == RUNTIME__V1__PROTOCOL__SCTP ? "sctp"
                                              : "tcp";
}

/* What the plugins are told about s (borrows from s; free with cni_args_clear()). */
static void cni_args_fill(struct cni_args *a, const struct sb *s, bool with_netns)
{
    const Runtime__V1__PodSandboxConfig *c = s->pub.config;
    memset(a, 0, sizeof(*a));
    a->pod.container_id = s->pub.id;
    a->pod.netns_path = with_netns ? s->pub.netns_path : NULL;
    a->pod.pod_name = c->metadata->name;
    a->pod.pod_namespace = c->metadata->namespace_;
    a->pod.pod_uid = c->metadata->uid;
    a->pod.cache_dir = g.cni_cache_dir;
    a->ports = xcalloc(c->n_port_mappings + 1, sizeof(*a->ports));
    for (size_t i = 0; i < c->n_port_mappings; i++) {
        const Runtime__V1__PortMapping *p = c->port_mappings[i];
        if (p->host_port <= 0)
            continue;
        struct cni_port_mapping *m = &a->ports[a->pod.n_port_mappings++];
        m->host_port = p->host_port;
        m->container_port = p->container_port;
        m->protocol = protocol_name(p->protocol);
        m->host_ip = p->host_ip;
    }
    a->pod.port_mappings = a->ports;
    const char *in = annotation(c, "kubernetes.io/ingress-bandwidth");
    const char *out = annotation(c, "kubernetes.io/egress-bandwidth");
    struct error *tmp = NULL;
    /* Validated at RunPodSandbox; bursts as kubelet's CNI code sets them (effectively unlimited).
     */
    if (in && cni_bandwidth_parse(in, &a->bw.ingress_rate, &tmp) == 0)
        a->bw.ingress_burst = (uint64_t)INT32_MAX;
    error_clear(&tmp);
    if (out && cni_bandwidth_parse(out, &a->bw.egress_rate, &tmp) == 0)
        a->bw.egress_burst = (uint64_t)INT32_MAX;
    error_clear(&tmp);
    if (a->bw.ingress_rate || a->bw.egress_rate)
        a->pod.bandwidth = &a->bw;
    if (has_dns_config(c)) {
        const Runtime__V1__DNSConfig *d = c->dns_config;
        a->dns.servers = (const char *const *)d->servers;
        a->dns.n_servers = d->n_servers;
        a->dns.searches = (const char *const *)d->searches;
        a->dns.n_searches = d->n_searches;
        a->dns.options = (const char *const *)d->options;
        a->dns.n_options = d->n_options;
        a->pod.dns = &a->dns;
    }
}

static void cni_args_clear(struct cni_args *a)
{
    free(a->ports);
    a->ports = NULL;
}

/* Is path a pinned namespace (an nsfs bind mount)? */
static bool is_pinned(const char *path)
{
    struct statfs st;
    return path && statfs(path, &st) == 0 && (unsigned long)st.f_type == NSFS_MAGIC;
}

/* ====================================================================== */
/* RunPodSandbox                                                           */
/* ====================================================================== */

static void run_step(struct run_op *op);

static void run_op_free(void *arg)
{
    struct run_op *op = arg;
    loop_timer_free(op->kick);
    if (op->child)
        child_cancel(op->child);
    if (op->cni)
        cni_cancel(op->cni);
    nsfs_pin_cancel(op->pin);
    if (op->sysctl)
        nsfs_sysctl_cancel(op->sysctl);
    if (op->have_net)
        cni_network_clear(&op->net);
    cni_result_clear(&op->added);
    sb_free(op->sb);
    error_free(op->err);
    error_free(op->undo_err);
    free(op);
}

static void on_run_kick(void *arg)
{
    run_step(arg);
}

static void on_pod_init_reported(const struct child_result *res, void *arg)
{
    struct run_op *op = arg;
    op->child = NULL;
    int pid = 0;
    if (sscanf(res->out, "created pid=%d", &pid) == 1 && pid > 0) {
        /* Adopted in RUN_POD_INIT_WAIT; or killed there when the keeper then failed. */
        op->pod_init_pid = pid;
        if (!res->exited || res->exit_code != 0)
            error_set(&op->err, GRPC_INTERNAL, 0, "pod-init: keeper %s after its report",
                      res->timed_out ? "timed out" : "failed");
    } else if (str_has_prefix(res->out, "error ")) {
        size_t n = strcspn(res->out + 6, "\n");
        error_set(&op->err, GRPC_INTERNAL, 0, "pod-init: %.*s", (int)n, res->out + 6);
    } else {
        error_set(&op->err, GRPC_INTERNAL, 0, "pod-init: keeper %s (status %d, signal %d): %.*s",
                  res->timed_out ? "timed out" : "failed", res->exit_code, res->term_signal,
                  (int)(res->err_len > 512 ? 512 : res->err_len), res->err);
    }
    run_step(op);
}

static void on_cni_added(const struct error *err, const struct cni_result *res, void *arg)
{
    struct run_op *op = arg;
    op->cni = NULL;
    if (err) {
        copy_error(&op->err, err);
        /* cni_add rolled back what it had set up. */
        op->sb->pub.network_ready = false;
        run_step(op);
        return;
    }
    op->added.ips = xcalloc(res->n_ips ? res->n_ips : 1, sizeof(char *));
    for (size_t i = 0; i < res->n_ips; i++)
        op->added.ips[op->added.n_ips++] = xstrdup(res->ips[i]);
    run_step(op);
}

static void on_cni_undone(const struct error *err, const struct cni_result *res, void *arg)
{
    struct run_op *op = arg;
    op->cni = NULL;
    if (err)
        copy_error(&op->undo_err, err);
    else
        op->sb->pub.network_ready = false;
    run_step(op);
}

static void on_pinned(const struct error *err, const struct nsfs_paths *paths, void *arg)
{
    struct run_op *op = arg;
    op->pin = NULL;
    if (err) {
        copy_error(&op->err, err);
    } else {
        struct sandbox *p = &op->sb->pub;
        p->netns_path = paths->net ? xstrdup(paths->net) : NULL;
        p->ipc_path = paths->ipc ? xstrdup(paths->ipc) : NULL;
        p->uts_path = paths->uts ? xstrdup(paths->uts) : NULL;
    }
    run_step(op);
}

static void on_sysctls_done(const struct error *err, void *arg)
{
    struct run_op *op = arg;
    op->sysctl = NULL;
    copy_error(&op->err, err);
    run_step(op);
}

static int run_prepare(struct run_op *op, struct error **err)
{
    struct sb *s = op->sb;
    struct sandbox *p = &s->pub;
    const Runtime__V1__PodSandboxConfig *c = p->config;
    bool host_net = is_host_network(c), host_ipc = is_host_ipc(c);
    /* The record first: from here on, a crash leaves something to clean up from. */
    if (sb_persist(s, err) < 0)
        return -1;
    if (mkdir(s->dir, 0700) < 0 && errno != EEXIST)
        return error_set(err, GRPC_INTERNAL, errno, "mkdir %s", s->dir);
    int flags = (host_net ? 0 : CLONE_NEWNET | CLONE_NEWUTS) | (host_ipc ? 0 : CLONE_NEWIPC);
    if (flags && !g.netns_ready) {
        if (nsfs_prepare_dir(g.netns_dir, err) < 0)
            return -1;
        g.netns_ready = true;
    }
    if (flags) {
        _cleanup_free_ char *hostname = host_net ? NULL : pod_hostname(c);
        op->pin =
            nsfs_pin_start(g.netns_dir, p->id, flags, hostname, PIN_TIMEOUT_MS, on_pinned, op, err);
        if (!op->pin)
            return -1;
    }
    return 0;
}

static int run_files(struct run_op *op, struct error **err)
{
    struct sb *s = op->sb;
    struct sandbox *p = &s->pub;
    const Runtime__V1__PodSandboxConfig *c = p->config;
    bool host_net = is_host_network(c);
    _cleanup_free_ char *hostname = NULL;
    if (!host_net || (c->hostname && *c->hostname)) {
        hostname = pod_hostname(c);
    } else {
        char buf[HOST_NAME_MAX + 1] = "";
        gethostname(buf, sizeof(buf) - 1);
        hostname = xstrdup(buf);
    }
    _cleanup_free_ char *hostname_line = xasprintf("%s\n", hostname);
    if (write_file(p->hostname_path, hostname_line, err) < 0)
        return -1;
    if (has_dns_config(c)) {
        _cleanup_free_ char *text = resolv_conf_text(c->dns_config);
        if (write_file(p->resolv_path, text, err) < 0)
            return -1;
    } else if (copy_host_file("/etc/resolv.conf", p->resolv_path, err) < 0) {
        return -1;
    }
    if (write_hosts(s, err) < 0)
        return -1;
    if (owns_shm(s)) {
        if (mkdir(p->shm_path, 0700) < 0 && errno != EEXIST)
            return error_set(err, GRPC_INTERNAL, errno, "mkdir %s", p->shm_path);
        if (mount("shm", p->shm_path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, SHM_OPTIONS) < 0)
            return error_set(err, GRPC_INTERNAL, errno, "mount tmpfs on %s", p->shm_path);
    }
    return sb_persist(s, err);
}

static int run_pod_init_start(struct run_op *op, struct error **err)
{
    char *argv[] = {g.keeper, (char *)"--pod-init", (char *)"--id", op->sb->pub.id, NULL};
    struct child_opts o = {
        .argv = argv,
        .out_cap = 4096,
        .timeout_ms = POD_INIT_TIMEOUT_MS,
        .in_child = status_fd_from_stdout,
    };
    op->child = child_spawn(&o, on_pod_init_reported, op, err);
    return op->child ? 0 : error_prefix(err, "start pod-init");
}

static int run_network_start(struct run_op *op, struct error **err)
{
    struct sb *s = op->sb;
    if (cni_network_load(g.cfg, &op->net, err) < 0)
        return error_prefix(err, "network plugin not ready");
    op->have_net = true;
    /* Set before ADD starts, so a crash during it still leads to a DEL. */
    s->pub.network_ready = true;
    if (sb_persist(s, err) < 0) {
        s->pub.network_ready = false;
        return -1;
    }
    struct cni_args a;
    cni_args_fill(&a, s, true);
    op->cni = cni_add(g.cfg, &op->net, &a.pod, on_cni_added, op, err);
    cni_args_clear(&a);
    if (!op->cni) {
        s->pub.network_ready = false;
        return -1;
    }
    return 0;
}

static int run_sysctls_start(struct run_op *op, struct error **err)
{
    const struct sandbox *p = &op->sb->pub;
    const Runtime__V1__LinuxPodSandboxConfig *l = p->config->linux;
    _cleanup_free_ struct nsfs_sysctl *v = xcalloc(l->n_sysctls, sizeof(*v));
    for (size_t i = 0; i < l->n_sysctls; i++) {
        v[i].name = l->sysctls[i]->key;
        v[i].value = l->sysctls[i]->value;
    }
    op->sysctl = nsfs_sysctl_apply(p->netns_path, p->ipc_path, v, l->n_sysctls, SYSCTL_TIMEOUT_MS,
                                   on_sysctls_done, op, err);
    return op->sysctl ? 0 : -1;
}

static int run_commit(struct run_op *op, struct error **err)
{
    struct sb *s = op->sb;
    if (needs_pod_init(s->pub.config) && s->pub.pod_init_pid == 0)
        return error_set(err, GRPC_INTERNAL, 0, "pod-init exited while the sandbox was being made");
    if (write_hosts(s, err) < 0)
        return -1;
    s->pub.state = SANDBOX_READY;
    if (sb_persist(s, err) < 0) {
        s->pub.state = SANDBOX_NOTREADY;
        return -1;
    }
    table_add(steal_ptr(&op->sb));
    return 0;
}

static int run_undo_network_start(struct run_op *op, struct error **err)
{
    struct cni_args a;
    cni_args_fill(&a, op->sb, true);
    op->cni = cni_del(g.cfg, &op->net, &a.pod, on_cni_undone, op, err);
    cni_args_clear(&a);
    return op->cni ? 0 : -1;
}

/*
 * Part of the undo failed (the CNI DEL, or removing a mount or file): keep
 * the sandbox, NOTREADY with what is left, so that kubelet sees it and
 * removes it, which retries what failed.
 */
static void run_keep_notready(struct run_op *op)
{
    struct sb *s = op->sb;
    log_warn("sandbox kept NOTREADY after a failed start sandbox=%s: %s", s->pub.id,
             op->undo_err->msg);
    pod_init_kill(s);
    struct error *tmp = NULL;
    if (shm_umount(s, &tmp) < 0 || sb_persist(s, &tmp) < 0) {
        log_warn("sandbox=%s: %s", s->pub.id, tmp->msg);
        error_free(tmp);
    }
    table_add(steal_ptr(&op->sb));
}

/* Everything but the network. */
static void run_undo(struct run_op *op)
{
    struct sb *s = op->sb;
    pod_init_kill(s);
    if (remove_local(s, &op->undo_err) < 0 || persist_remove(s->record_path, &op->undo_err) < 0)
        run_keep_notready(op);
}

static void run_advance(struct run_op *op)
{
    struct sb *s = op->sb;
    const Runtime__V1__PodSandboxConfig *c = s ? s->pub.config : NULL;
    switch (op->state) {
    case RUN_START:
        if (loop_timer_is_armed(op->kick))
            return;
        op->state = RUN_PREPARE;
        /* fall through */
    case RUN_PREPARE:
        op->state = RUN_PIN_WAIT;
        if (run_prepare(op, &op->err) < 0)
            goto fail;
        /* fall through */
    case RUN_PIN_WAIT:
        if (op->pin)
            return;
        if (op->err)
            goto fail;
        op->state = RUN_FILES;
        /* fall through */
    case RUN_FILES:
        if (run_files(op, &op->err) < 0)
            goto fail;
        op->state = RUN_POD_INIT;
        /* fall through */
    case RUN_POD_INIT:
        op->state = RUN_POD_INIT_WAIT;
        if (needs_pod_init(c) && run_pod_init_start(op, &op->err) < 0)
            goto fail;
        /* fall through */
    case RUN_POD_INIT_WAIT:
        if (op->child)
            return;
        if (op->err) {
            if (op->pod_init_pid)
                kill(op->pod_init_pid, SIGKILL); /* just reported: still that process */
            goto fail;
        }
        if (op->pod_init_pid) {
            if (pod_init_adopt(s, op->pod_init_pid, 0, &op->err) < 0) {
                /* Just reported, so the pid is still that process if it lives at all. */
                kill(op->pod_init_pid, SIGKILL);
                goto fail;
            }
            if (sb_persist(s, &op->err) < 0)
                goto fail;
            log_debug("pod-init started sandbox=%s pid=%d", s->pub.id, s->pub.pod_init_pid);
        }
        op->state = RUN_NETWORK;
        /* fall through */
    case RUN_NETWORK:
        op->state = RUN_NETWORK_WAIT;
        if (!is_host_network(c) && run_network_start(op, &op->err) < 0)
            goto fail;
        /* fall through */
    case RUN_NETWORK_WAIT:
        if (op->cni)
            return;
        if (op->err)
            goto fail;
        if (op->added.n_ips) {
            ips_clear(&s->pub);
            s->pub.ips = steal_ptr(&op->added.ips);
            s->pub.n_ips = op->added.n_ips;
            op->added.n_ips = 0;
        }
        if (sb_persist(s, &op->err) < 0)
            goto fail;
        op->state = RUN_SYSCTLS;
        /* fall through */
    case RUN_SYSCTLS:
        op->state = RUN_SYSCTLS_WAIT;
        if (c->linux && c->linux->n_sysctls && run_sysctls_start(op, &op->err) < 0)
            goto fail;
        /* fall through */
    case RUN_SYSCTLS_WAIT:
        if (op->sysctl)
            return;
        if (op->err)
            goto fail;
        op->state = RUN_COMMIT;
        /* fall through */
    case RUN_COMMIT:
        if (run_commit(op, &op->err) < 0)
            goto fail;
        op->state = RUN_DONE;
        return;
    case RUN_UNDO_NETWORK:
        op->state = RUN_UNDO_NETWORK_WAIT;
        if (run_undo_network_start(op, &op->undo_err) < 0) {
            op->state = RUN_FAILED;
            run_keep_notready(op);
            return;
        }
        /* fall through */
    case RUN_UNDO_NETWORK_WAIT:
        if (op->cni)
            return;
        if (op->undo_err) {
            op->state = RUN_FAILED;
            run_keep_notready(op);
            return;
        }
        op->state = RUN_UNDO;
        /* fall through */
    case RUN_UNDO:
        run_undo(op);
        op->state = RUN_FAILED;
        return;
    case RUN_DONE:
    case RUN_FAILED:
        return;
    }
    return;
fail:
    op->state = s->pub.network_ready ? RUN_UNDO_NETWORK : RUN_UNDO;
    run_advance(op);
}

static void run_step(struct run_op *op)
{
    run_advance(op);
    if (op->state != RUN_DONE && op->state != RUN_FAILED)
        return;
    for (struct run_op **pp = &g.runs; *pp; pp = &(*pp)->next) {
        if (*pp == op) {
            *pp = op->next;
            break;
        }
    }
    if (op->state == RUN_DONE)
        log_info("sandbox ready sandbox=%s", op->id);
    op->done(op->state == RUN_DONE ? NULL : op->err, op->state == RUN_DONE ? op->id : NULL,
             op->arg);
    loop_defer_free(run_op_free, op);
}

static int new_id(char out[65], struct error **err)
{
    uint8_t raw[32];
    size_t got = 0;
    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return error_set(err, GRPC_INTERNAL, errno, "getrandom");
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

static bool name_in_use(const Runtime__V1__PodSandboxMetadata *m)
{
    for (size_t i = 0; i < g.n_items; i++) {
        if (same_metadata(g.items[i]->pub.config->metadata, m))
            return true;
    }
    for (struct run_op *op = g.runs; op; op = op->next) {
        if (op->sb && same_metadata(op->sb->pub.config->metadata, m))
            return true;
    }
    return false;
}

int sandbox_run(const Runtime__V1__PodSandboxConfig *config, const char *runtime_handler,
                sandbox_done_cb done, void *arg, struct error **err)
{
    const char *handler = runtime_handler ? runtime_handler : "";
    if (validate(config, handler, err) < 0)
        return -1;
    const Runtime__V1__PodSandboxMetadata *m = config->metadata;
    if (name_in_use(m))
        return error_set(err, GRPC_ALREADY_EXISTS, 0,
                         "a sandbox named %s_%s_%s_%u already exists (name reserved)", m->name,
                         m->namespace_, m->uid, m->attempt);
    char id[65];
    if (new_id(id, err) < 0)
        return -1;
    struct sb *s = sb_new(id);
    struct sandbox *p = &s->pub;
    size_t len = runtime__v1__pod_sandbox_config__get_packed_size(config);
    _cleanup_free_ uint8_t *packed = xmalloc(len ? len : 1);
    runtime__v1__pod_sandbox_config__pack(config, packed);
    p->config = runtime__v1__pod_sandbox_config__unpack(NULL, len, packed);
    assert_state(p->config);
    p->runtime_handler = xstrdup(handler);
    p->created_ns = now_realtime_ns();
    p->hostname_path = xasprintf("%s/hostname", s->dir);
    p->hosts_path = xasprintf("%s/hosts", s->dir);
    p->resolv_path = xasprintf("%s/resolv.conf", s->dir);
    p->shm_path = owns_shm(s) ? xasprintf("%s/shm", s->dir) : xstrdup("/dev/shm");
    p->cgroup_parent = xstrdup(config->linux ? config->linux->cgroup_parent : "");
    p->ips = xcalloc(1, sizeof(char *));

    struct run_op *op = xcalloc(1, sizeof(*op));
    op->state = RUN_START;
    op->sb = s;
    memcpy(op->id, id, sizeof(op->id));
    op->done = done;
    op->arg = arg;
    op->kick = loop_timer_new(on_run_kick, op);
    loop_timer_arm(op->kick, 0);
    op->next = g.runs;
    g.runs = op;
    log_info("creating sandbox sandbox=%s pod=%s/%s attempt=%u handler=%s", id, m->namespace_,
             m->name, m->attempt, handler);
    return 0;
}

/* ====================================================================== */
/* StopPodSandbox / RemovePodSandbox                                       */
/* ====================================================================== */

static void sbop_step(struct sb_op *op);

static struct sb_op *sbop_by_seq(uint64_t seq)
{
    for (struct sb_op *op = g.ops; op; op = op->next) {
        if (op->seq == seq)
            return op;
    }
    return NULL;
}

static bool is_first_for_id(const struct sb_op *op)
{
    for (struct sb_op *o = g.ops; o; o = o->next) {
        if (strcmp(o->id, op->id) == 0)
            return o == op;
    }
    return false;
}

static void sbop_free(void *arg)
{
    struct sb_op *op = arg;
    loop_timer_free(op->kick);
    if (op->cni)
        cni_cancel(op->cni);
    if (op->rm)
        child_cancel(op->rm);
    if (op->have_net)
        cni_network_clear(&op->net);
    error_free(op->err);
    free(op->id);
    free(op);
}

static void on_sbop_kick(void *arg)
{
    sbop_step(arg);
}

/* pod/container may call this at once or later; the op is found again by its number. */
static void on_containers_stopped(const struct error *err, void *arg)
{
    struct sb_op *op = sbop_by_seq((uint64_t)(uintptr_t)arg);
    if (!op || !op->hook_pending)
        return;
    op->hook_pending = false;
    if (err) {
        copy_error(&op->err, err);
        error_prefix(&op->err, "stop containers");
    }
    sbop_step(op);
}

static void on_cni_deleted(const struct error *err, const struct cni_result *res, void *arg)
{
    struct sb_op *op = arg;
    op->cni = NULL;
    copy_error(&op->err, err);
    sbop_step(op);
}

static void on_rm_exit(const struct child_result *res, void *arg)
{
    struct sb_op *op = arg;
    op->rm = NULL;
    if (!res->exited || res->exit_code != 0)
        error_set(&op->err, GRPC_INTERNAL, 0, "remove sandbox files: rm %s: %.*s",
                  res->timed_out ? "timed out" : "failed",
                  (int)(res->err_len > 512 ? 512 : res->err_len), res->err);
    sbop_step(op);
}

static int sbop_network_start(struct sb_op *op, struct sb *s, struct error **err)
{
    if (cni_network_load(g.cfg, &op->net, err) < 0)
        return error_prefix(err, "tear down the network of sandbox %s: network plugin not ready",
                            s->pub.id);
    op->have_net = true;
    struct cni_args a;
    cni_args_fill(&a, s, is_pinned(s->pub.netns_path));
    op->cni = cni_del(g.cfg, &op->net, &a.pod, on_cni_deleted, op, err);
    cni_args_clear(&a);
    return op->cni ? 0 : error_prefix(err, "tear down the network of sandbox %s", s->pub.id);
}

static int sbop_rm_start(struct sb_op *op, const struct sb *s, struct error **err)
{
    char *argv[] = {(char *)"/bin/rm", (char *)"-rf", (char *)"--one-file-system", s->dir, NULL};
    struct child_opts o = {.argv = argv, .timeout_ms = RM_TIMEOUT_MS, .out_cap = 4096};
    op->rm = child_spawn(&o, on_rm_exit, op, err);
    return op->rm ? 0 : -1;
}

static void sbop_advance(struct sb_op *op)
{
    struct sb *s = table_find_exact(op->id);
    switch (op->state) {
    case SBOP_QUEUED:
        if (loop_timer_is_armed(op->kick) || !is_first_for_id(op))
            return;
        if (!s) {
            /* Gone (or never there): Remove is idempotent, Stop says NOT_FOUND as containerd. */
            if (op->kind == SBOP_STOP) {
                error_set(&op->err, GRPC_NOT_FOUND, 0, "sandbox %s not found", op->id);
                op->state = SBOP_FAILED;
            } else {
                op->state = SBOP_DONE;
            }
            return;
        }
        op->state = SBOP_CONTAINERS;
        /* fall through */
    case SBOP_CONTAINERS:
        op->state = SBOP_CONTAINERS_WAIT;
        if (g.hooks.stop_all) {
            op->hook_pending = true;
            g.hooks.stop_all(op->id, on_containers_stopped, (void *)(uintptr_t)op->seq);
        }
        /* fall through */
    case SBOP_CONTAINERS_WAIT:
        if (op->hook_pending)
            return;
        if (op->err)
            goto fail;
        op->state = SBOP_POD_INIT;
        /* fall through */
    case SBOP_POD_INIT:
        assert_state(s);
        pod_init_kill(s);
        if (s->pub.state == SANDBOX_READY) {
            s->pub.state = SANDBOX_NOTREADY;
            log_info("sandbox stopped sandbox=%s", s->pub.id);
        }
        if (sb_persist(s, &op->err) < 0)
            goto fail;
        op->state = SBOP_NETWORK;
        /* fall through */
    case SBOP_NETWORK:
        op->state = SBOP_NETWORK_WAIT;
        if (s->pub.network_ready && sbop_network_start(op, s, &op->err) < 0)
            goto fail;
        /* fall through */
    case SBOP_NETWORK_WAIT:
        if (op->cni)
            return;
        if (op->err)
            goto fail; /* network_ready stays set: the next Stop retries the DEL */
        if (s->pub.network_ready) {
            s->pub.network_ready = false;
            ips_clear(&s->pub);
            s->pub.ips = xcalloc(1, sizeof(char *));
            if (sb_persist(s, &op->err) < 0)
                goto fail;
            log_debug("sandbox network torn down sandbox=%s", s->pub.id);
        }
        op->state = SBOP_SHM;
        /* fall through */
    case SBOP_SHM:
        if (shm_umount(s, &op->err) < 0)
            goto fail;
        if (op->kind == SBOP_STOP) {
            op->state = SBOP_DONE;
            return;
        }
        op->state = SBOP_REMOVE_CONTAINERS;
        /* fall through */
    case SBOP_REMOVE_CONTAINERS:
        if (g.hooks.remove_all && g.hooks.remove_all(op->id, &op->err) < 0) {
            error_prefix(&op->err, "remove containers");
            goto fail;
        }
        op->state = SBOP_REMOVE_FILES;
        /* fall through */
    case SBOP_REMOVE_FILES:
        op->state = SBOP_REMOVE_FILES_WAIT;
        if (remove_local(s, &op->err) < 0) {
            if (op->err->sys_errno != ENOTEMPTY && op->err->sys_errno != EEXIST)
                goto fail;
            error_clear(&op->err);
            if (sbop_rm_start(op, s, &op->err) < 0)
                goto fail;
        }
        /* fall through */
    case SBOP_REMOVE_FILES_WAIT:
        if (op->rm)
            return;
        if (op->err)
            goto fail;
        op->state = SBOP_FORGET;
        /* fall through */
    case SBOP_FORGET:
        if (persist_remove(s->record_path, &op->err) < 0)
            goto fail;
        log_info("sandbox removed sandbox=%s", s->pub.id);
        table_remove(s);
        loop_defer_free(sb_free_cb, s);
        op->state = SBOP_DONE;
        return;
    case SBOP_DONE:
    case SBOP_FAILED:
        return;
    }
    return;
fail:
    op->state = SBOP_FAILED;
}

static void sbop_step(struct sb_op *op)
{
    if (op->stepping)
        return; /* a synchronous callback: the running step goes on */
    op->stepping = true;
    sbop_advance(op);
    op->stepping = false;
    if (op->state != SBOP_DONE && op->state != SBOP_FAILED)
        return;
    for (struct sb_op **pp = &g.ops; *pp; pp = &(*pp)->next) {
        if (*pp == op) {
            *pp = op->next;
            break;
        }
    }
    for (struct sb_op *o = g.ops; o; o = o->next) {
        if (strcmp(o->id, op->id) == 0) {
            loop_timer_arm(o->kick, 0);
            break;
        }
    }
    op->done(op->state == SBOP_DONE ? NULL : op->err, op->id, op->arg);
    loop_defer_free(sbop_free, op);
}

static int sbop_start(enum sbop_kind kind, const char *id_or_prefix, sandbox_done_cb done,
                      void *arg, struct error **err)
{
    if (!id_or_prefix || !*id_or_prefix)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "pod_sandbox_id is required");
    struct sandbox *sb = sandbox_find(id_or_prefix);
    if (!sb && kind == SBOP_STOP)
        return error_set(err, GRPC_NOT_FOUND, 0, "sandbox %s not found", id_or_prefix);
    struct sb_op *op = xcalloc(1, sizeof(*op));
    op->seq = ++g.next_seq;
    op->kind = kind;
    op->state = SBOP_QUEUED;
    op->id = xstrdup(sb ? sb->id : id_or_prefix);
    op->done = done;
    op->arg = arg;
    op->kick = loop_timer_new(on_sbop_kick, op);
    struct sb_op **tail = &g.ops;
    while (*tail)
        tail = &(*tail)->next;
    *tail = op;
    if (is_first_for_id(op))
        loop_timer_arm(op->kick, 0);
    return 0;
}

int sandbox_stop(const char *id_or_prefix, sandbox_done_cb done, void *arg, struct error **err)
{
    return sbop_start(SBOP_STOP, id_or_prefix, done, arg, err);
}

int sandbox_remove(const char *id_or_prefix, sandbox_done_cb done, void *arg, struct error **err)
{
    return sbop_start(SBOP_REMOVE, id_or_prefix, done, arg, err);
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
    if (!is_host_network(c) && (!is_pinned(p->netns_path) || !is_pinned(p->uts_path)))
        lost = "network/UTS namespace gone";
    else if (!is_host_ipc(c) && !is_pinned(p->ipc_path))
        lost = "IPC namespace gone";
    bool changed = false;
    if (p->pod_init_pid > 0) {
        struct error *tmp = NULL;
        int pid = p->pod_init_pid;
        if (pod_init_adopt(s, pid, s->pod_init_start, &tmp) < 0) {
            log_debug("sandbox=%s: %s", p->id, tmp->msg);
            error_free(tmp);
            pod_init_forget(s);
            changed = true;
            if (!lost)
                lost = "pod-init died";
        }
    } else if (needs_pod_init(c) && !lost) {
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
    DIR *d = opendir(g.records_dir);
    if (!d)
        return error_set(err, GRPC_INTERNAL, errno, "open %s", g.records_dir);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *name = e->d_name;
        if (persist_is_temp_name(name) || !str_has_suffix(name, ".json"))
            continue;
        _cleanup_free_ char *id = xstrndup(name, strlen(name) - strlen(".json"));
        _cleanup_free_ char *path = xasprintf("%s/%s", g.records_dir, name);
        struct error *tmp = NULL;
        if (!is_valid_id(id)) {
            log_warn("skipping sandbox record with a bad name path=%s", path);
            continue;
        }
        size_t len = 0;
        _cleanup_free_ char *text = read_file_capped(path, RECORD_MAX, &len, &tmp);
        struct sb *s = text ? sb_from_record(id, text, len, &tmp) : NULL;
        if (!s) {
            log_warn("skipping corrupt sandbox record path=%s: %s", path, tmp->msg);
            error_free(tmp);
            continue;
        }
        reconcile(s);
        table_add(s);
        log_info("sandbox loaded sandbox=%s state=%s", id, sandbox_state_name(s->pub.state));
    }
    closedir(d);
    return 0;
}

int sandbox_init(const struct config *cfg, const struct sandbox_container_hooks *hooks,
                 struct error **err)
{
    g.cfg = cfg;
    if (hooks)
        g.hooks = *hooks;
    g.records_dir = xasprintf("%s/sandboxes", cfg->root_dir);
    g.files_dir = xasprintf("%s/sandboxes", cfg->state_dir);
    g.netns_dir = xasprintf("%s/netns", cfg->state_dir);
    g.cni_cache_dir = xasprintf("%s/cni-cache", cfg->state_dir);
    g.keeper = libexec_path("tinycri-keeper", "TINYCRI_KEEPER");
    if (mkdir_p(g.records_dir, 0700, err) < 0 || mkdir_p(g.files_dir, 0700, err) < 0 ||
        mkdir_p(g.cni_cache_dir, 0700, err) < 0)
        return error_prefix(err, "sandbox directories");
    /* Pods pinned before a restart: keep their dir shared (idempotent). */
    struct stat st;
    if (stat(g.netns_dir, &st) == 0) {
        if (nsfs_prepare_dir(g.netns_dir, err) < 0)
            return -1;
        g.netns_ready = true;
    }
    persist_clean_dir(g.records_dir);
    return load_records(err);
}

/* No record left: nothing is pinned, and the netns dir mount can go too. */
static bool has_records(void)
{
    DIR *d = opendir(g.records_dir);
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
    while (g.runs) {
        struct run_op *op = g.runs;
        g.runs = op->next;
        run_op_free(op);
    }
    while (g.ops) {
        struct sb_op *op = g.ops;
        g.ops = op->next;
        sbop_free(op);
    }
    for (size_t i = 0; i < g.n_items; i++)
        sb_free(g.items[i]);
    free(g.items);
    if (g.netns_ready && !has_records()) {
        if (umount2(g.netns_dir, MNT_DETACH) == 0)
            rmdir(g.netns_dir);
    }
    free(g.records_dir);
    free(g.files_dir);
    free(g.netns_dir);
    free(g.cni_cache_dir);
    free(g.keeper);
    memset(&g, 0, sizeof(g));
}
