/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The operations that make, stop and remove pod sandboxes (sandbox.c has the
 * objects, sandbox.h the lifecycle): RunPodSandbox is a run_op stepping
 * through PREPARE, PIN_WAIT, FILES, POD_INIT, NETWORK, SYSCTLS and COMMIT, or
 * its undo states after a failure; Stop and Remove are sb_ops, serialised
 * per sandbox, Remove being Stop followed by the removal steps. Both kinds
 * run their first step from a kick timer, so done never runs inside the call
 * that started them.
 */
#include "autoconf.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/queue.h>
#include <unistd.h>

#include "core/config.h"
#include "core/error.h"
#include "core/id.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/persist.h"
#include "core/table.h"
#include "core/util.h"
#include "keeper/protocol.h"
#include "pod/cni.h"
#include "pod/nsfs.h"
#include "pod/sandbox.h"
#include "pod/sandbox_internal.h"
#include "pod/stats.h"

#define POD_INIT_TIMEOUT_MS 10000
#define SYSCTL_TIMEOUT_MS 10000
/* Creating a network namespace can wait long on the kernel's namespace cleanup. */
#define PIN_TIMEOUT_MS 30000
#define RM_TIMEOUT_MS 120000

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
    TAILQ_ENTRY(run_op) link; /* sbs.runs until done */
    enum run_state state;
    struct sb *sb; /* owned until COMMIT hands it to the table */
    char id[ID_LEN + 1];
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
    SBOP_REMOVE_CONTAINERS, /* ask pod/container to remove every container */
    SBOP_REMOVE_CTRS_WAIT,  /* waiting for remove_all's done (op->hook_pending) */
    SBOP_REMOVE_FILES,      /* unpin namespaces, remove files; rm child if the dir is not empty */
    SBOP_REMOVE_FILES_WAIT, /* rm child running (op->rm); waiting for its exit */
    SBOP_FORGET,            /* delete the record, drop from the table (synchronous) */
    SBOP_DONE,
    SBOP_FAILED,
};

struct sb_op {
    TAILQ_ENTRY(sb_op) link; /* sbs.ops, in arrival order, until done */
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
    a->pod.cache_dir = sbs.cni_cache_dir;
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
    const char *in = sb_annotation(c, "kubernetes.io/ingress-bandwidth");
    const char *out = sb_annotation(c, "kubernetes.io/egress-bandwidth");
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
    if (sb_has_dns_config(c)) {
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

/* ---- pod-init ---- */

/* In the keeper's child: the report goes to fd 3, which here is the stdout pipe. */
static int status_fd_from_stdout(void *arg)
{
    return dup2(STDOUT_FILENO, KEEPER_STATUS_FD) < 0 ? -1 : 0;
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
    if (sscanf(res->out, KEEPER_STATUS_CREATED "%d", &pid) == 1 && pid > 0) {
        /* Adopted in RUN_POD_INIT_WAIT; or killed there when the keeper then failed. */
        op->pod_init_pid = pid;
        if (!res->exited || res->exit_code != 0)
            error_set(&op->err, GRPC_INTERNAL, 0, "pod-init: keeper %s after its report",
                      res->timed_out ? "timed out" : "failed");
    } else if (str_has_prefix(res->out, KEEPER_STATUS_ERROR)) {
        const char *msg = res->out + strlen(KEEPER_STATUS_ERROR);
        error_set(&op->err, GRPC_INTERNAL, 0, "pod-init: %.*s", (int)strcspn(msg, "\n"), msg);
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
        error_copy(&op->err, err);
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
        error_copy(&op->undo_err, err);
    else
        op->sb->pub.network_ready = false;
    run_step(op);
}

static void on_pinned(const struct error *err, const struct nsfs_paths *paths, void *arg)
{
    struct run_op *op = arg;
    op->pin = NULL;
    if (err) {
        error_copy(&op->err, err);
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
    error_copy(&op->err, err);
    run_step(op);
}

static int run_prepare(struct run_op *op, struct error **err)
{
    struct sb *s = op->sb;
    struct sandbox *p = &s->pub;
    const Runtime__V1__PodSandboxConfig *c = p->config;
    bool host_net = sb_host_network(c), host_ipc = sb_host_ipc(c);
    /* The record first: from here on, a crash leaves something to clean up from. */
    if (sb_persist(s, err) < 0)
        return -1;
    if (mkdir(s->dir, 0700) < 0 && errno != EEXIST)
        return error_set(err, GRPC_INTERNAL, errno, "mkdir %s", s->dir);
    int flags = (host_net ? 0 : CLONE_NEWNET | CLONE_NEWUTS) | (host_ipc ? 0 : CLONE_NEWIPC);
    if (flags && !sbs.netns_ready) {
        if (nsfs_prepare_dir(sbs.netns_dir, err) < 0)
            return -1;
        sbs.netns_ready = true;
    }
    if (flags) {
        _cleanup_free_ char *hostname = host_net ? NULL : sb_pod_hostname(c);
        op->pin = nsfs_pin_start(sbs.netns_dir, p->id, flags, hostname, PIN_TIMEOUT_MS, on_pinned,
                                 op, err);
        if (!op->pin)
            return -1;
    }
    return 0;
}

static int run_files(struct run_op *op, struct error **err)
{
    return sb_files_write(op->sb, err);
}

static int run_pod_init_start(struct run_op *op, struct error **err)
{
    char *argv[] = {sbs.keeper, (char *)"--" KEEPER_OPT_POD_INIT, (char *)"--" KEEPER_OPT_ID,
                    op->sb->pub.id, NULL};
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
    if (cni_network_load(sbs.cfg, &op->net, err) < 0)
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
    op->cni = cni_add(sbs.cfg, &op->net, &a.pod, on_cni_added, op, err);
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
    if (sb_needs_pod_init(s->pub.config) && s->pub.pod_init_pid == 0)
        return error_set(err, GRPC_INTERNAL, 0, "pod-init exited while the sandbox was being made");
    if (sb_files_hosts(s, err) < 0)
        return -1;
    s->pub.state = SANDBOX_READY;
    if (sb_persist(s, err) < 0) {
        s->pub.state = SANDBOX_NOTREADY;
        return -1;
    }
    table_add(&sbs.table, steal_ptr(&op->sb));
    return 0;
}

static int run_undo_network_start(struct run_op *op, struct error **err)
{
    struct cni_args a;
    cni_args_fill(&a, op->sb, true);
    op->cni = cni_del(sbs.cfg, &op->net, &a.pod, on_cni_undone, op, err);
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
    sb_pod_init_kill(s);
    struct error *tmp = NULL;
    if (sb_shm_umount(s, &tmp) < 0 || sb_persist(s, &tmp) < 0) {
        log_warn("sandbox=%s: %s", s->pub.id, tmp->msg);
        error_free(tmp);
    }
    table_add(&sbs.table, steal_ptr(&op->sb));
}

/* Everything but the network. */
static void run_undo(struct run_op *op)
{
    struct sb *s = op->sb;
    sb_pod_init_kill(s);
    if (sb_remove_local(s, &op->undo_err) < 0 || persist_remove(s->record_path, &op->undo_err) < 0)
        run_keep_notready(op);
}

/*
 * Fails the one way (image/pull.c says how): a failure is recorded in
 * op->err (the first one wins), a waiting state waits for its child or
 * plugin call and then breaks on op->err, and below the switch the undo
 * states take over. The undo's own failures go to op->undo_err: what they
 * leave behind is kept NOTREADY (run_keep_notready) for kubelet to remove.
 */
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
            break;
        /* fall through */
    case RUN_PIN_WAIT:
        if (op->pin)
            return;
        if (op->err)
            break;
        op->state = RUN_FILES;
        /* fall through */
    case RUN_FILES:
        if (run_files(op, &op->err) < 0)
            break;
        op->state = RUN_POD_INIT;
        /* fall through */
    case RUN_POD_INIT:
        op->state = RUN_POD_INIT_WAIT;
        if (sb_needs_pod_init(c) && run_pod_init_start(op, &op->err) < 0)
            break;
        /* fall through */
    case RUN_POD_INIT_WAIT:
        if (op->child)
            return;
        if (op->err) {
            if (op->pod_init_pid)
                kill(op->pod_init_pid, SIGKILL); /* just reported: still that process */
            break;
        }
        if (op->pod_init_pid) {
            if (sb_pod_init_adopt(s, op->pod_init_pid, 0, &op->err) < 0) {
                /* Just reported, so the pid is still that process if it lives at all. */
                kill(op->pod_init_pid, SIGKILL);
                break;
            }
            if (sb_persist(s, &op->err) < 0)
                break;
            log_debug("pod-init started sandbox=%s pid=%d", s->pub.id, s->pub.pod_init_pid);
        }
        op->state = RUN_NETWORK;
        /* fall through */
    case RUN_NETWORK:
        op->state = RUN_NETWORK_WAIT;
        if (!sb_host_network(c) && run_network_start(op, &op->err) < 0)
            break;
        /* fall through */
    case RUN_NETWORK_WAIT:
        if (op->cni)
            return;
        if (op->err)
            break;
        if (op->added.n_ips) {
            sb_ips_clear(&s->pub);
            s->pub.ips = steal_ptr(&op->added.ips);
            s->pub.n_ips = op->added.n_ips;
            op->added.n_ips = 0;
        }
        if (sb_persist(s, &op->err) < 0)
            break;
        op->state = RUN_SYSCTLS;
        /* fall through */
    case RUN_SYSCTLS:
        op->state = RUN_SYSCTLS_WAIT;
        if (c->linux && c->linux->n_sysctls && run_sysctls_start(op, &op->err) < 0)
            break;
        /* fall through */
    case RUN_SYSCTLS_WAIT:
        if (op->sysctl)
            return;
        if (op->err)
            break;
        op->state = RUN_COMMIT;
        /* fall through */
    case RUN_COMMIT:
        if (run_commit(op, &op->err) < 0)
            break;
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
    /* Failed (op->err is set): undo, the network first when it is up. */
    op->state = s->pub.network_ready ? RUN_UNDO_NETWORK : RUN_UNDO;
    run_advance(op);
}

static void run_step(struct run_op *op)
{
    if (op->state == RUN_DONE || op->state == RUN_FAILED)
        return; /* reported already, freed soon */
    run_advance(op);
    if (op->state != RUN_DONE && op->state != RUN_FAILED)
        return;
    TAILQ_REMOVE(&sbs.runs, op, link);
    if (op->state == RUN_DONE)
        log_info("sandbox ready sandbox=%s", op->id);
    op->done(op->state == RUN_DONE ? NULL : op->err, op->state == RUN_DONE ? op->id : NULL,
             op->arg);
    loop_defer_free(run_op_free, op);
}

static bool name_in_use(const Runtime__V1__PodSandboxMetadata *m)
{
    for (size_t i = 0; i < sbs.table.n; i++) {
        const struct sb *s = sbs.table.items[i];
        if (sb_same_metadata(s->pub.config->metadata, m))
            return true;
    }
    struct run_op *op;
    TAILQ_FOREACH (op, &sbs.runs, link) {
        if (op->sb && sb_same_metadata(op->sb->pub.config->metadata, m))
            return true;
    }
    return false;
}

int sandbox_run(const Runtime__V1__PodSandboxConfig *config, const char *runtime_handler,
                sandbox_done_cb done, void *arg, struct error **err)
{
    const char *handler = runtime_handler ? runtime_handler : "";
    if (sb_validate(config, handler, err) < 0)
        return -1;
    const Runtime__V1__PodSandboxMetadata *m = config->metadata;
    if (name_in_use(m))
        return error_set(err, GRPC_ALREADY_EXISTS, 0,
                         "a sandbox named %s_%s_%s_%u already exists (name reserved)", m->name,
                         m->namespace_, m->uid, m->attempt);
    char id[ID_LEN + 1];
    if (id_new(id, err) < 0)
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
    p->shm_path = sb_owns_shm(s) ? xasprintf("%s/shm", s->dir) : xstrdup("/dev/shm");
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
    TAILQ_INSERT_HEAD(&sbs.runs, op, link);
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
    struct sb_op *op;
    TAILQ_FOREACH (op, &sbs.ops, link) {
        if (op->seq == seq)
            return op;
    }
    return NULL;
}

static bool is_first_for_id(const struct sb_op *op)
{
    struct sb_op *o;
    TAILQ_FOREACH (o, &sbs.ops, link) {
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
        error_copy(&op->err, err);
        error_prefix(&op->err, "stop containers");
    }
    sbop_step(op);
}

static void on_containers_removed(const struct error *err, void *arg)
{
    struct sb_op *op = sbop_by_seq((uint64_t)(uintptr_t)arg);
    if (!op || !op->hook_pending)
        return;
    op->hook_pending = false;
    if (err) {
        error_copy(&op->err, err);
        error_prefix(&op->err, "remove containers");
    }
    sbop_step(op);
}

static void on_cni_deleted(const struct error *err, const struct cni_result *res, void *arg)
{
    struct sb_op *op = arg;
    op->cni = NULL;
    error_copy(&op->err, err);
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
    if (cni_network_load(sbs.cfg, &op->net, err) < 0)
        return error_prefix(err, "tear down the network of sandbox %s: network plugin not ready",
                            s->pub.id);
    op->have_net = true;
    struct cni_args a;
    cni_args_fill(&a, s, sb_is_pinned(s->pub.netns_path));
    op->cni = cni_del(sbs.cfg, &op->net, &a.pod, on_cni_deleted, op, err);
    cni_args_clear(&a);
    return op->cni ? 0 : error_prefix(err, "tear down the network of sandbox %s", s->pub.id);
}

static int sbop_rm_start(struct sb_op *op, const struct sb *s, struct error **err)
{
    const char *dir = s->dir;
    op->rm = child_rm_rf(&dir, 1, RM_TIMEOUT_MS, on_rm_exit, op, err);
    return op->rm ? 0 : -1;
}

/* Fails the one way (image/pull.c says how); a failed stop or removal undoes nothing. */
static void sbop_advance(struct sb_op *op)
{
    struct sb *s = table_find(&sbs.table, op->id);
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
        if (sbs.hooks.stop_all) {
            op->hook_pending = true;
            sbs.hooks.stop_all(op->id, on_containers_stopped, (void *)(uintptr_t)op->seq);
        }
        /* fall through */
    case SBOP_CONTAINERS_WAIT:
        if (op->hook_pending)
            return;
        if (op->err)
            break;
        op->state = SBOP_POD_INIT;
        /* fall through */
    case SBOP_POD_INIT:
        assert_state(s);
        sb_pod_init_kill(s);
        /* Its network counters hold the namespace: let it go with the pod. */
        stats_pod_forget(s->pub.id);
        if (s->pub.state == SANDBOX_READY) {
            s->pub.state = SANDBOX_NOTREADY;
            log_info("sandbox stopped sandbox=%s", s->pub.id);
        }
        if (sb_persist(s, &op->err) < 0)
            break;
        op->state = SBOP_NETWORK;
        /* fall through */
    case SBOP_NETWORK:
        op->state = SBOP_NETWORK_WAIT;
        if (s->pub.network_ready && sbop_network_start(op, s, &op->err) < 0)
            break;
        /* fall through */
    case SBOP_NETWORK_WAIT:
        if (op->cni)
            return;
        if (op->err)
            break; /* network_ready stays set: the next Stop retries the DEL */
        if (s->pub.network_ready) {
            s->pub.network_ready = false;
            sb_ips_clear(&s->pub);
            s->pub.ips = xcalloc(1, sizeof(char *));
            if (sb_persist(s, &op->err) < 0)
                break;
            log_debug("sandbox network torn down sandbox=%s", s->pub.id);
        }
        op->state = SBOP_SHM;
        /* fall through */
    case SBOP_SHM:
        if (sb_shm_umount(s, &op->err) < 0)
            break;
        if (op->kind == SBOP_STOP) {
            op->state = SBOP_DONE;
            return;
        }
        op->state = SBOP_REMOVE_CONTAINERS;
        /* fall through */
    case SBOP_REMOVE_CONTAINERS:
        op->state = SBOP_REMOVE_CTRS_WAIT;
        if (sbs.hooks.remove_all) {
            op->hook_pending = true;
            sbs.hooks.remove_all(op->id, on_containers_removed, (void *)(uintptr_t)op->seq);
        }
        /* fall through */
    case SBOP_REMOVE_CTRS_WAIT:
        if (op->hook_pending)
            return;
        if (op->err)
            break;
        op->state = SBOP_REMOVE_FILES;
        /* fall through */
    case SBOP_REMOVE_FILES:
        op->state = SBOP_REMOVE_FILES_WAIT;
        if (sb_remove_local(s, &op->err) < 0) {
            if (op->err->sys_errno != ENOTEMPTY && op->err->sys_errno != EEXIST)
                break;
            error_clear(&op->err);
            if (sbop_rm_start(op, s, &op->err) < 0)
                break;
        }
        /* fall through */
    case SBOP_REMOVE_FILES_WAIT:
        if (op->rm)
            return;
        if (op->err)
            break;
        op->state = SBOP_FORGET;
        /* fall through */
    case SBOP_FORGET:
        if (persist_remove(s->record_path, &op->err) < 0)
            break;
        log_info("sandbox removed sandbox=%s", s->pub.id);
        table_remove(&sbs.table, s);
        loop_defer_free(sb_free_cb, s);
        op->state = SBOP_DONE;
        return;
    case SBOP_DONE:
    case SBOP_FAILED:
        return;
    }
    /* Failed (op->err is set): nothing is undone; the next Stop or Remove retries what is left. */
    op->state = SBOP_FAILED;
}

static void sbop_step(struct sb_op *op)
{
    if (op->stepping || op->state == SBOP_DONE || op->state == SBOP_FAILED)
        return; /* a synchronous callback: the running step goes on; or reported already */
    op->stepping = true;
    sbop_advance(op);
    op->stepping = false;
    if (op->state != SBOP_DONE && op->state != SBOP_FAILED)
        return;
    TAILQ_REMOVE(&sbs.ops, op, link);
    struct sb_op *o;
    TAILQ_FOREACH (o, &sbs.ops, link) {
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
    op->seq = ++sbs.next_seq;
    op->kind = kind;
    op->state = SBOP_QUEUED;
    op->id = xstrdup(sb ? sb->id : id_or_prefix);
    op->done = done;
    op->arg = arg;
    op->kick = loop_timer_new(on_sbop_kick, op);
    TAILQ_INSERT_TAIL(&sbs.ops, op, link);
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

void sb_ops_shutdown(void)
{
    struct run_op *run;
    while ((run = TAILQ_FIRST(&sbs.runs))) {
        TAILQ_REMOVE(&sbs.runs, run, link);
        run_op_free(run);
    }
    struct sb_op *op;
    while ((op = TAILQ_FIRST(&sbs.ops))) {
        TAILQ_REMOVE(&sbs.ops, op, link);
        sbop_free(op);
    }
}
