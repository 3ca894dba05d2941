/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Stats and metrics RPCs (stats_service.h): samples from pod/stats turned
 * into CRI messages. Every message borrows the containers' and pods'
 * strings and is sent within the loop turn that built it.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "api.pb-c.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "cri/list_reply.h"
#include "cri/metrics.h"
#include "cri/reply.h"
#include "cri/sandbox_service.h"
#include "cri/stats_service.h"
#include "grpc/h2.h"
#include "pod/container.h"
#include "pod/sandbox.h"
#include "pod/stats.h"

/* A worker answers one kind of call; may_wait: it may defer once for first figures. */
typedef void (*worker_fn)(struct h2_call *call, const ProtobufCMessage *req, bool may_wait);

struct deferred {
    TAILQ_ENTRY(deferred) link;
    struct reply *rep; /* the call, looked up again when the figures are in */
    worker_fn fn;
    ProtobufCMessage *req; /* an unpacked copy */
    struct stats_waiter *w;
};

static struct {
    const struct config *cfg;
    char *layers_mount; /* where writable layers live: <root_dir>/containers */
    TAILQ_HEAD(, deferred) deferreds;
} svc = {.deferreds = TAILQ_HEAD_INITIALIZER(svc.deferreds)};

/* ---- inputs ---- */

static bool is_systemd(void)
{
    return svc.cfg && svc.cfg->cgroup_driver == CGROUP_DRIVER_SYSTEMD;
}

static bool is_live(const struct container *c)
{
    return c->state == CONTAINER_CREATED || c->state == CONTAINER_RUNNING;
}

/* in borrows c, and upper (a buffer of the caller's). */
static void ctr_input(const struct container *c, struct stats_ctr_input *in, char *upper,
                      size_t upper_len)
{
    memset(in, 0, sizeof(*in));
    in->id = c->id;
    in->pid = c->pid;
    in->live = is_live(c);
    in->systemd = is_systemd();
    if (in->live) {
        const struct sandbox *sb = sandbox_find(c->sandbox_id);
        in->cgroup_parent = sb && strcmp(sb->id, c->sandbox_id) == 0 ? sb->cgroup_parent : NULL;
    }
    snprintf(upper, upper_len, "%s/upper", c->root_dir);
    in->upper_dir = upper;
}

static void pod_input(const struct sandbox *sb, struct stats_pod_input *in)
{
    memset(in, 0, sizeof(*in));
    in->id = sb->id;
    in->ready = sb->state == SANDBOX_READY;
    in->netns_path = sb->netns_path;
    in->cgroup_parent = sb->cgroup_parent;
    in->systemd = is_systemd();
}

static bool ctr_pending(const struct container *c)
{
    char upper[4096];
    struct stats_ctr_input in;
    ctr_input(c, &in, upper, sizeof(upper));
    return stats_container_pending(&in);
}

static bool pod_pending(const struct sandbox *sb)
{
    struct stats_pod_input in;
    pod_input(sb, &in);
    return stats_pod_pending(&in);
}

/* ---- waiting for first figures ---- */

static void deferred_free(struct deferred *d)
{
    TAILQ_REMOVE(&svc.deferreds, d, link);
    stats_waiter_cancel(d->w);
    protobuf_c_message_free_unpacked(d->req, NULL);
    free(d);
}

static void on_deferred_ready(void *arg)
{
    struct deferred *d = arg;
    d->w = NULL; /* freed by pod/stats after this callback */
    struct h2_call *call = reply_take_call(steal_ptr(&d->rep));
    if (call)
        d->fn(call, d->req, false);
    deferred_free(d);
}

/* The caller left: cri/reply frees the reply. */
static void on_deferred_cancelled(void *arg)
{
    deferred_free(arg);
}

/* Answer later, once first figures are in (or STATS_FIRST_WAIT_MS passed). */
static void defer(struct h2_call *call, const char *method, const ProtobufCMessage *req,
                  worker_fn fn)
{
    size_t len = protobuf_c_message_get_packed_size(req);
    _cleanup_free_ uint8_t *packed = xmalloc(len ? len : 1);
    protobuf_c_message_pack(req, packed);
    ProtobufCMessage *copy = protobuf_c_message_unpack(req->descriptor, NULL, len, packed);
    if (!copy) {
        fn(call, req, false);
        return;
    }
    struct deferred *d = xcalloc(1, sizeof(*d));
    d->rep = reply_new(call, method, NULL);
    d->fn = fn;
    d->req = copy;
    TAILQ_INSERT_TAIL(&svc.deferreds, d, link);
    d->w = stats_wait(STATS_FIRST_WAIT_MS, on_deferred_ready, d);
    reply_cancel_with(d->rep, on_deferred_cancelled, d);
}

/* ---- messages ---- */

static void u64(Runtime__V1__UInt64Value *v, uint64_t value)
{
    runtime__v1__uint64_value__init(v);
    v->value = value;
}

/* CPU and memory figures of a cgroup sample. */
struct usage_msg {
    Runtime__V1__CpuUsage cpu;
    Runtime__V1__UInt64Value cpu_total, cpu_nano;
    Runtime__V1__MemoryUsage mem;
    Runtime__V1__UInt64Value ws, avail, usage, rss, pf, mpf;
    Runtime__V1__SwapUsage swap;
    Runtime__V1__UInt64Value swap_avail, swap_usage;
};

/* Fill u; returns which parts are there (CGROUP_HAVE_CPU / _MEMORY / _SWAP bits). */
static unsigned usage_fill(struct usage_msg *u, int64_t ts, const struct cgroup_stats *cg,
                           bool has_rate, uint64_t nano_cores)
{
    unsigned have = 0;
    if (cg->have & CGROUP_HAVE_CPU) {
        runtime__v1__cpu_usage__init(&u->cpu);
        u->cpu.timestamp = ts;
        u64(&u->cpu_total, cg->cpu_usage_ns);
        u->cpu.usage_core_nano_seconds = &u->cpu_total;
        if (has_rate) {
            u64(&u->cpu_nano, nano_cores);
            u->cpu.usage_nano_cores = &u->cpu_nano;
        }
        have |= CGROUP_HAVE_CPU;
    }
    if (cg->have & CGROUP_HAVE_MEMORY) {
        runtime__v1__memory_usage__init(&u->mem);
        u->mem.timestamp = ts;
        u64(&u->ws, cg->mem_working_set);
        u64(&u->usage, cg->mem_usage);
        u64(&u->rss, cg->mem_rss);
        u64(&u->pf, cg->pgfault);
        u64(&u->mpf, cg->pgmajfault);
        u->mem.working_set_bytes = &u->ws;
        u->mem.usage_bytes = &u->usage;
        u->mem.rss_bytes = &u->rss;
        u->mem.page_faults = &u->pf;
        u->mem.major_page_faults = &u->mpf;
        if (cg->mem_limit != CGROUP_UNLIMITED) {
            u64(&u->avail,
                cg->mem_limit > cg->mem_working_set ? cg->mem_limit - cg->mem_working_set : 0);
            u->mem.available_bytes = &u->avail;
        }
        have |= CGROUP_HAVE_MEMORY;
    }
    if (cg->have & CGROUP_HAVE_SWAP) {
        runtime__v1__swap_usage__init(&u->swap);
        u->swap.timestamp = ts;
        u64(&u->swap_usage, cg->swap_usage);
        u->swap.swap_usage_bytes = &u->swap_usage;
        if (cg->swap_limit != CGROUP_UNLIMITED) {
            u64(&u->swap_avail,
                cg->swap_limit > cg->swap_usage ? cg->swap_limit - cg->swap_usage : 0);
            u->swap.swap_available_bytes = &u->swap_avail;
        }
        have |= CGROUP_HAVE_SWAP;
    }
    return have;
}

struct ctr_msg {
    Runtime__V1__ContainerStats st;
    Runtime__V1__ContainerAttributes attr;
    void *labels, *annotations;
    struct usage_msg u;
    Runtime__V1__FilesystemUsage fs;
    Runtime__V1__FilesystemIdentifier fsid;
    Runtime__V1__UInt64Value fs_bytes, fs_inodes;
    struct stats_ctr_sample sample;
};

/* detail: the metrics' figures too. */
static void ctr_sample(const struct container *c, struct stats_ctr_sample *s, bool detail)
{
    char upper[4096];
    struct stats_ctr_input in;
    ctr_input(c, &in, upper, sizeof(upper));
    in.detail = detail;
    stats_container_sample(&in, s);
}

/* m->sample must be filled. */
static void ctr_msg_fill(struct ctr_msg *m, const struct container *c)
{
    const Runtime__V1__ContainerConfig *cfg = c->config;
    runtime__v1__container_stats__init(&m->st);
    runtime__v1__container_attributes__init(&m->attr);
    m->attr.id = c->id;
    m->attr.metadata = cfg->metadata;
    m->labels = reply_map_dup(&runtime__v1__container_attributes__labels_entry__descriptor,
                              (void *const *)cfg->labels, cfg->n_labels);
    m->annotations =
        reply_map_dup(&runtime__v1__container_attributes__annotations_entry__descriptor,
                      (void *const *)cfg->annotations, cfg->n_annotations);
    m->attr.n_labels = cfg->n_labels;
    m->attr.labels = m->labels;
    m->attr.n_annotations = cfg->n_annotations;
    m->attr.annotations = m->annotations;
    m->st.attributes = &m->attr;
    const struct stats_ctr_sample *s = &m->sample;
    if (s->has_cgroup) {
        unsigned have = usage_fill(&m->u, s->ts_ns, &s->cg, s->has_rate, s->nano_cores);
        if (have & CGROUP_HAVE_CPU)
            m->st.cpu = &m->u.cpu;
        if (have & CGROUP_HAVE_MEMORY)
            m->st.memory = &m->u.mem;
        if (have & CGROUP_HAVE_SWAP)
            m->st.swap = &m->u.swap;
    }
    if (s->has_fs) {
        runtime__v1__filesystem_usage__init(&m->fs);
        runtime__v1__filesystem_identifier__init(&m->fsid);
        m->fsid.mountpoint = svc.layers_mount;
        m->fs.fs_id = &m->fsid;
        m->fs.timestamp = s->fs_ts_ns;
        u64(&m->fs_bytes, s->fs_bytes);
        u64(&m->fs_inodes, s->fs_inodes);
        m->fs.used_bytes = &m->fs_bytes;
        m->fs.inodes_used = &m->fs_inodes;
        m->st.writable_layer = &m->fs;
    }
}

static void ctr_msg_clear(struct ctr_msg *m)
{
    free(m->labels);
    free(m->annotations);
}

struct kv {
    ProtobufCMessage base;
    char *key;
    char *value;
};

/* Every (key, value) of sel is in have (map entries of any map<string,string>). */
static bool map_has_all(void *const *have, size_t n_have, void *const *sel, size_t n_sel)
{
    for (size_t i = 0; i < n_sel; i++) {
        const struct kv *s = sel[i];
        bool found = false;
        for (size_t j = 0; j < n_have && !found; j++) {
            const struct kv *h = have[j];
            found = strcmp(h->key, s->key) == 0 && strcmp(h->value, s->value) == 0;
        }
        if (!found)
            return false;
    }
    return true;
}

static bool ctr_filter_match(const struct container *c, const Runtime__V1__ContainerStatsFilter *f)
{
    if (!f)
        return true;
    if (f->id && *f->id && !str_has_prefix(c->id, f->id))
        return false;
    if (f->pod_sandbox_id && *f->pod_sandbox_id &&
        !str_has_prefix(c->sandbox_id, f->pod_sandbox_id))
        return false;
    return map_has_all((void *const *)c->config->labels, c->config->n_labels,
                       (void *const *)f->label_selector, f->n_label_selector);
}

/* ---- ContainerStats ---- */

static void container_worker(struct h2_call *call, const ProtobufCMessage *req, bool may_wait)
{
    const Runtime__V1__ContainerStatsRequest *r = (const Runtime__V1__ContainerStatsRequest *)req;
    if (!r->container_id || !*r->container_id) {
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT, "ContainerStats: container_id is required");
        return;
    }
    const struct container *c = container_find(r->container_id);
    if (!c) {
        rpc_fail_code(call, GRPC_NOT_FOUND, "container %s not found", r->container_id);
        return;
    }
    if (may_wait && ctr_pending(c)) {
        defer(call, "ContainerStats", req, container_worker);
        return;
    }
    struct ctr_msg m;
    memset(&m, 0, sizeof(m));
    ctr_sample(c, &m.sample, false);
    ctr_msg_fill(&m, c);
    Runtime__V1__ContainerStatsResponse resp = RUNTIME__V1__CONTAINER_STATS_RESPONSE__INIT;
    resp.stats = &m.st;
    rpc_reply(call, &resp.base);
    ctr_msg_clear(&m);
}

void stats_service_container(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    container_worker(call, req, true);
}

/* ---- ListContainerStats / StreamContainerStats ---- */

static const struct list_mode list_ctr_mode = {false, "ListContainerStats", "StreamContainerStats",
                                               NULL};
static const struct list_mode stream_ctr_mode = {
    true, "ListContainerStats", "StreamContainerStats",
    &runtime__v1__stream_container_stats_response__descriptor};

static void list_containers_worker(struct h2_call *call, const ProtobufCMessage *req, bool may_wait)
{
    bool stream = req->descriptor == &runtime__v1__stream_container_stats_request__descriptor;
    const Runtime__V1__ContainerStatsFilter *f =
        stream ? ((const Runtime__V1__StreamContainerStatsRequest *)req)->filter
               : ((const Runtime__V1__ListContainerStatsRequest *)req)->filter;
    size_t total = 0;
    while (container_at(total))
        total++;
    _cleanup_free_ const struct container **match = xcalloc(total + 1, sizeof(*match));
    size_t n = 0;
    bool pending = false;
    for (size_t i = 0; i < total; i++) {
        const struct container *c = container_at(i);
        if (!ctr_filter_match(c, f))
            continue;
        match[n++] = c;
        if (may_wait)
            pending = ctr_pending(c) || pending;
    }
    if (pending) {
        defer(call, "ListContainerStats", req, list_containers_worker);
        return;
    }
    _cleanup_free_ struct ctr_msg *msgs = xcalloc(n + 1, sizeof(*msgs));
    _cleanup_free_ Runtime__V1__ContainerStats **ptrs = xcalloc(n + 1, sizeof(*ptrs));
    for (size_t i = 0; i < n; i++) {
        ctr_sample(match[i], &msgs[i].sample, false);
        ctr_msg_fill(&msgs[i], match[i]);
        ptrs[i] = &msgs[i].st;
    }
    Runtime__V1__ListContainerStatsResponse resp = RUNTIME__V1__LIST_CONTAINER_STATS_RESPONSE__INIT;
    resp.n_stats = n;
    resp.stats = ptrs;
    list_finish(call, &resp.base, stream ? &stream_ctr_mode : &list_ctr_mode);
    for (size_t i = 0; i < n; i++)
        ctr_msg_clear(&msgs[i]);
}

void stats_service_list_containers(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    list_containers_worker(call, req, true);
}

void stats_service_stream_containers(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    list_containers_worker(call, req, true);
}

/* ---- pods ---- */

/* A pod's containers: every container, sorted by pod, looked up by range. */
struct by_pod {
    const struct container **items;
    size_t n;
};

static int by_pod_cmp(const void *a, const void *b)
{
    const struct container *x = *(const struct container *const *)a;
    const struct container *y = *(const struct container *const *)b;
    return strcmp(x->sandbox_id, y->sandbox_id);
}

static void by_pod_make(struct by_pod *bp)
{
    bp->n = 0;
    while (container_at(bp->n))
        bp->n++;
    bp->items = xcalloc(bp->n + 1, sizeof(*bp->items));
    for (size_t i = 0; i < bp->n; i++)
        bp->items[i] = container_at(i);
    qsort(bp->items, bp->n, sizeof(*bp->items), by_pod_cmp);
}

/* The range [*first, *first + count) of sandbox_id's containers. */
static size_t by_pod_range(const struct by_pod *bp, const char *sandbox_id, size_t *first)
{
    size_t lo = 0, hi = bp->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(bp->items[mid]->sandbox_id, sandbox_id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t end = lo;
    while (end < bp->n && strcmp(bp->items[end]->sandbox_id, sandbox_id) == 0)
        end++;
    *first = lo;
    return end - lo;
}

struct pod_msg {
    Runtime__V1__PodSandboxStats st;
    Runtime__V1__PodSandboxAttributes attr;
    void *labels, *annotations;
    Runtime__V1__LinuxPodSandboxStats lx;
    struct usage_msg u;
    Runtime__V1__NetworkUsage net;
    Runtime__V1__NetworkInterfaceUsage *ifs;
    Runtime__V1__NetworkInterfaceUsage **if_ptrs;
    Runtime__V1__UInt64Value *vals;
    Runtime__V1__ProcessUsage proc;
    Runtime__V1__UInt64Value proc_count;
    struct ctr_msg *ctrs;
    Runtime__V1__ContainerStats **ctr_ptrs;
    size_t n_ctrs;
    struct stats_pod_sample sample;
};

static void pod_sample(const struct sandbox *sb, struct stats_pod_sample *s, bool detail)
{
    struct stats_pod_input in;
    pod_input(sb, &in);
    in.detail = detail;
    stats_pod_sample(&in, s);
}

static void net_fill(struct pod_msg *m)
{
    const struct stats_pod_sample *s = &m->sample;
    size_t n = s->n_ifaces;
    m->ifs = xcalloc(n + 1, sizeof(*m->ifs));
    m->if_ptrs = xcalloc(n + 1, sizeof(*m->if_ptrs));
    m->vals = xcalloc(4 * n + 1, sizeof(*m->vals));
    runtime__v1__network_usage__init(&m->net);
    m->net.timestamp = s->ts_ns;
    for (size_t i = 0; i < n; i++) {
        const struct stats_iface *it = &s->ifaces[i];
        Runtime__V1__NetworkInterfaceUsage *u = &m->ifs[i];
        runtime__v1__network_interface_usage__init(u);
        u->name = (char *)it->name;
        u64(&m->vals[4 * i], it->rx_bytes);
        u64(&m->vals[4 * i + 1], it->rx_errors);
        u64(&m->vals[4 * i + 2], it->tx_bytes);
        u64(&m->vals[4 * i + 3], it->tx_errors);
        u->rx_bytes = &m->vals[4 * i];
        u->rx_errors = &m->vals[4 * i + 1];
        u->tx_bytes = &m->vals[4 * i + 2];
        u->tx_errors = &m->vals[4 * i + 3];
        m->if_ptrs[i] = u;
        /* The interface CNI made is eth0; kubelet reports the default one. */
        if (strcmp(it->name, "eth0") == 0 || !m->net.default_interface)
            m->net.default_interface = u;
    }
    m->net.n_interfaces = n;
    m->net.interfaces = m->if_ptrs;
    m->lx.network = &m->net;
}

/* m->sample filled by the caller; the pod's containers are cs[0..n). */
static void pod_msg_fill(struct pod_msg *m, const struct sandbox *sb,
                         const struct container *const *cs, size_t n)
{
    const Runtime__V1__PodSandboxConfig *cfg = sb->config;
    runtime__v1__pod_sandbox_stats__init(&m->st);
    runtime__v1__pod_sandbox_attributes__init(&m->attr);
    runtime__v1__linux_pod_sandbox_stats__init(&m->lx);
    m->attr.id = sb->id;
    m->attr.metadata = cfg->metadata;
    m->labels = reply_map_dup(&runtime__v1__pod_sandbox_attributes__labels_entry__descriptor,
                              (void *const *)cfg->labels, cfg->n_labels);
    m->annotations =
        reply_map_dup(&runtime__v1__pod_sandbox_attributes__annotations_entry__descriptor,
                      (void *const *)cfg->annotations, cfg->n_annotations);
    m->attr.n_labels = cfg->n_labels;
    m->attr.labels = m->labels;
    m->attr.n_annotations = cfg->n_annotations;
    m->attr.annotations = m->annotations;
    m->st.attributes = &m->attr;
    m->st.linux = &m->lx;

    m->ctrs = xcalloc(n + 1, sizeof(*m->ctrs));
    m->ctr_ptrs = xcalloc(n + 1, sizeof(*m->ctr_ptrs));
    m->n_ctrs = n;
    struct cgroup_stats sum;
    memset(&sum, 0, sizeof(sum));
    bool all_rates = true;
    uint64_t cores = 0;
    for (size_t i = 0; i < n; i++) {
        ctr_sample(cs[i], &m->ctrs[i].sample, false);
        ctr_msg_fill(&m->ctrs[i], cs[i]);
        m->ctr_ptrs[i] = &m->ctrs[i].st;
        const struct stats_ctr_sample *s = &m->ctrs[i].sample;
        if (s->has_cgroup) {
            cgroup_stats_add(&sum, &s->cg);
            all_rates = all_rates && s->has_rate;
            cores += s->nano_cores;
        }
    }
    m->lx.n_containers = n;
    m->lx.containers = m->ctr_ptrs;

    /* The pod's own cgroup when it has one; else what its containers add up to. */
    const struct stats_pod_sample *ps = &m->sample;
    const struct cgroup_stats *cg = ps->has_cgroup ? &ps->cg : &sum;
    bool has_rate = ps->has_cgroup ? ps->has_rate : all_rates && sum.have;
    uint64_t nano = ps->has_cgroup ? ps->nano_cores : cores;
    unsigned have = usage_fill(&m->u, ps->ts_ns, cg, has_rate, nano);
    if (have & CGROUP_HAVE_CPU)
        m->lx.cpu = &m->u.cpu;
    if (have & CGROUP_HAVE_MEMORY)
        m->lx.memory = &m->u.mem;
    if (cg->have & CGROUP_HAVE_PIDS) {
        runtime__v1__process_usage__init(&m->proc);
        m->proc.timestamp = ps->ts_ns;
        u64(&m->proc_count, cg->pids_current);
        m->proc.process_count = &m->proc_count;
        m->lx.process = &m->proc;
    }
    if (ps->has_net)
        net_fill(m);
}

static void pod_msg_clear(struct pod_msg *m)
{
    for (size_t i = 0; i < m->n_ctrs; i++)
        ctr_msg_clear(&m->ctrs[i]);
    free(m->ctrs);
    free(m->ctr_ptrs);
    free(m->ifs);
    free(m->if_ptrs);
    free(m->vals);
    free(m->labels);
    free(m->annotations);
    stats_pod_sample_clear(&m->sample);
}

/* Anything of this pod or its containers still being measured for the first time? */
static bool pod_any_pending(const struct sandbox *sb, const struct by_pod *bp)
{
    bool pending = pod_pending(sb);
    size_t first, n = by_pod_range(bp, sb->id, &first);
    for (size_t i = 0; i < n; i++)
        pending = ctr_pending(bp->items[first + i]) || pending;
    return pending;
}

static void pod_worker(struct h2_call *call, const ProtobufCMessage *req, bool may_wait)
{
    const Runtime__V1__PodSandboxStatsRequest *r = (const Runtime__V1__PodSandboxStatsRequest *)req;
    if (!r->pod_sandbox_id || !*r->pod_sandbox_id) {
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT, "PodSandboxStats: pod_sandbox_id is required");
        return;
    }
    const struct sandbox *sb = sandbox_find(r->pod_sandbox_id);
    if (!sb) {
        rpc_fail_code(call, GRPC_NOT_FOUND, "sandbox %s not found", r->pod_sandbox_id);
        return;
    }
    struct by_pod bp;
    by_pod_make(&bp);
    if (may_wait && pod_any_pending(sb, &bp)) {
        free(bp.items);
        defer(call, "PodSandboxStats", req, pod_worker);
        return;
    }
    size_t first, n = by_pod_range(&bp, sb->id, &first);
    struct pod_msg m;
    memset(&m, 0, sizeof(m));
    pod_sample(sb, &m.sample, false);
    pod_msg_fill(&m, sb, bp.items + first, n);
    Runtime__V1__PodSandboxStatsResponse resp = RUNTIME__V1__POD_SANDBOX_STATS_RESPONSE__INIT;
    resp.stats = &m.st;
    rpc_reply(call, &resp.base);
    pod_msg_clear(&m);
    free(bp.items);
}

void stats_service_pod(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    pod_worker(call, req, true);
}

static bool pod_filter_match(const struct sandbox *sb, const Runtime__V1__PodSandboxStatsFilter *f)
{
    if (sb->state != SANDBOX_READY)
        return false;
    if (!f)
        return true;
    if (f->id && *f->id && !str_has_prefix(sb->id, f->id))
        return false;
    return map_has_all((void *const *)sb->config->labels, sb->config->n_labels,
                       (void *const *)f->label_selector, f->n_label_selector);
}

/*
 * The sandboxes f selects (NULL: every ready one) into match (*n of them);
 * true when may_wait and one of them, or one of its containers, still waits
 * for its first figures.
 */
static bool select_pods(const Runtime__V1__PodSandboxStatsFilter *f, const struct by_pod *bp,
                        bool may_wait, const struct sandbox **match, size_t *n)
{
    size_t total = sandbox_count();
    bool pending = false;
    *n = 0;
    for (size_t i = 0; i < total; i++) {
        const struct sandbox *sb = sandbox_at(i);
        if (!sb || !pod_filter_match(sb, f))
            continue;
        match[(*n)++] = sb;
        if (may_wait)
            pending = pod_any_pending(sb, bp) || pending;
    }
    return pending;
}

static const struct list_mode list_pod_mode = {false, "ListPodSandboxStats",
                                               "StreamPodSandboxStats", NULL};
static const struct list_mode stream_pod_mode = {
    true, "ListPodSandboxStats", "StreamPodSandboxStats",
    &runtime__v1__stream_pod_sandbox_stats_response__descriptor};

static void list_pods_worker(struct h2_call *call, const ProtobufCMessage *req, bool may_wait)
{
    bool stream = req->descriptor == &runtime__v1__stream_pod_sandbox_stats_request__descriptor;
    const Runtime__V1__PodSandboxStatsFilter *f =
        stream ? ((const Runtime__V1__StreamPodSandboxStatsRequest *)req)->filter
               : ((const Runtime__V1__ListPodSandboxStatsRequest *)req)->filter;
    struct by_pod bp;
    by_pod_make(&bp);
    _cleanup_free_ const struct sandbox **match = xcalloc(sandbox_count() + 1, sizeof(*match));
    size_t n;
    if (select_pods(f, &bp, may_wait, match, &n)) {
        free(bp.items);
        defer(call, "ListPodSandboxStats", req, list_pods_worker);
        return;
    }
    _cleanup_free_ struct pod_msg *msgs = xcalloc(n + 1, sizeof(*msgs));
    _cleanup_free_ Runtime__V1__PodSandboxStats **ptrs = xcalloc(n + 1, sizeof(*ptrs));
    for (size_t i = 0; i < n; i++) {
        size_t first, k = by_pod_range(&bp, match[i]->id, &first);
        pod_sample(match[i], &msgs[i].sample, false);
        pod_msg_fill(&msgs[i], match[i], bp.items + first, k);
        ptrs[i] = &msgs[i].st;
    }
    Runtime__V1__ListPodSandboxStatsResponse resp =
        RUNTIME__V1__LIST_POD_SANDBOX_STATS_RESPONSE__INIT;
    resp.n_stats = n;
    resp.stats = ptrs;
    list_finish(call, &resp.base, stream ? &stream_pod_mode : &list_pod_mode);
    for (size_t i = 0; i < n; i++)
        pod_msg_clear(&msgs[i]);
    free(bp.items);
}

void stats_service_list_pods(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    list_pods_worker(call, req, true);
}

void stats_service_stream_pods(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    list_pods_worker(call, req, true);
}

/* ---- metrics ---- */

void stats_service_metric_descriptors(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    rpc_reply(call, &metrics_descriptors()->base);
}

struct pod_metrics_msg {
    Runtime__V1__PodSandboxMetrics pm;
    struct metric_set pod_set;
    struct stats_pod_sample pod_sample;
    Runtime__V1__ContainerMetrics *cms;
    Runtime__V1__ContainerMetrics **cm_ptrs;
    struct metric_set *sets;
    size_t n;
};

static void pod_metrics_fill(struct pod_metrics_msg *m, const struct sandbox *sb,
                             const struct container *const *cs, size_t n)
{
    runtime__v1__pod_sandbox_metrics__init(&m->pm);
    m->pm.pod_sandbox_id = sb->id;
    const Runtime__V1__PodSandboxMetadata *md = sb->config->metadata;
    struct metric_subject pod = {.container = "",
                                 .id = sb->id,
                                 .image = "",
                                 .name = sb->id,
                                 .namespace_ = md->namespace_,
                                 .pod = md->name,
                                 .device = svc.layers_mount};
    pod_sample(sb, &m->pod_sample, true);
    metrics_add_pod(&m->pod_set, &pod, &m->pod_sample);
    m->pm.n_metrics = m->pod_set.n;
    m->pm.metrics = m->pod_set.ptrs;
    m->cms = xcalloc(n + 1, sizeof(*m->cms));
    m->cm_ptrs = xcalloc(n + 1, sizeof(*m->cm_ptrs));
    m->sets = xcalloc(n + 1, sizeof(*m->sets));
    m->n = n;
    for (size_t i = 0; i < n; i++) {
        const struct container *c = cs[i];
        struct stats_ctr_sample s;
        ctr_sample(c, &s, true);
        struct metric_subject who = pod;
        who.container = c->config->metadata->name;
        who.id = c->id;
        who.name = c->id;
        who.image = c->image_ref;
        metrics_add_container(&m->sets[i], &who, &s, c->started_ns);
        runtime__v1__container_metrics__init(&m->cms[i]);
        m->cms[i].container_id = c->id;
        m->cms[i].n_metrics = m->sets[i].n;
        m->cms[i].metrics = m->sets[i].ptrs;
        m->cm_ptrs[i] = &m->cms[i];
    }
    m->pm.n_container_metrics = n;
    m->pm.container_metrics = m->cm_ptrs;
}

static void pod_metrics_clear(struct pod_metrics_msg *m)
{
    for (size_t i = 0; i < m->n; i++)
        metric_set_clear(&m->sets[i]);
    free(m->sets);
    free(m->cms);
    free(m->cm_ptrs);
    metric_set_clear(&m->pod_set);
    stats_pod_sample_clear(&m->pod_sample);
}

static const struct list_mode list_metrics_mode = {false, "ListPodSandboxMetrics",
                                                   "StreamPodSandboxMetrics", NULL};
static const struct list_mode stream_metrics_mode = {
    true, "ListPodSandboxMetrics", "StreamPodSandboxMetrics",
    &runtime__v1__stream_pod_sandbox_metrics_response__descriptor};

static void list_metrics_worker(struct h2_call *call, const ProtobufCMessage *req, bool may_wait)
{
    bool stream = req->descriptor == &runtime__v1__stream_pod_sandbox_metrics_request__descriptor;
    struct by_pod bp;
    by_pod_make(&bp);
    _cleanup_free_ const struct sandbox **match = xcalloc(sandbox_count() + 1, sizeof(*match));
    size_t n;
    if (select_pods(NULL, &bp, may_wait, match, &n)) {
        free(bp.items);
        defer(call, "ListPodSandboxMetrics", req, list_metrics_worker);
        return;
    }
    _cleanup_free_ struct pod_metrics_msg *msgs = xcalloc(n + 1, sizeof(*msgs));
    _cleanup_free_ Runtime__V1__PodSandboxMetrics **ptrs = xcalloc(n + 1, sizeof(*ptrs));
    for (size_t i = 0; i < n; i++) {
        size_t first, k = by_pod_range(&bp, match[i]->id, &first);
        pod_metrics_fill(&msgs[i], match[i], bp.items + first, k);
        ptrs[i] = &msgs[i].pm;
    }
    Runtime__V1__ListPodSandboxMetricsResponse resp =
        RUNTIME__V1__LIST_POD_SANDBOX_METRICS_RESPONSE__INIT;
    resp.n_pod_metrics = n;
    resp.pod_metrics = ptrs;
    list_finish(call, &resp.base, stream ? &stream_metrics_mode : &list_metrics_mode);
    for (size_t i = 0; i < n; i++)
        pod_metrics_clear(&msgs[i]);
    free(bp.items);
}

void stats_service_list_metrics(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    list_metrics_worker(call, req, true);
}

void stats_service_stream_metrics(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    list_metrics_worker(call, req, true);
}

/* ---- ImageFsInfo ---- */

bool stats_service_writable_total(const char **mountpoint, uint64_t *bytes, uint64_t *inodes,
                                  int64_t *ts_ns)
{
    *mountpoint = svc.layers_mount;
    *bytes = *inodes = 0;
    *ts_ns = 0;
    bool any = false;
    for (size_t i = 0; container_at(i); i++) {
        struct stats_ctr_sample s;
        char upper[4096];
        struct stats_ctr_input in;
        ctr_input(container_at(i), &in, upper, sizeof(upper));
        /* The writable layer only: no cgroup reads for this. */
        in.live = false;
        stats_container_sample(&in, &s);
        if (!s.has_fs)
            continue;
        any = true;
        *bytes += s.fs_bytes;
        *inodes += s.fs_inodes;
        /* The total is as old as its oldest part. */
        if (!*ts_ns || s.fs_ts_ns < *ts_ns)
            *ts_ns = s.fs_ts_ns;
    }
    return any;
}

/* ---- set-up ---- */

static void on_container_event(const struct container *c, enum container_event ev, void *arg)
{
    if (ev == CONTAINER_EVENT_DELETED) {
        stats_container_forget(c->id);
    } else if (ev == CONTAINER_EVENT_CREATED) {
        /* A first figure of the writable layer while the container is new and small. */
        char upper[4096];
        struct stats_ctr_input in;
        ctr_input(c, &in, upper, sizeof(upper));
        stats_container_prepare(&in);
    }
}

void stats_service_init(const struct config *cfg)
{
    svc.cfg = cfg;
    svc.layers_mount = xasprintf("%s/containers", cfg->root_dir);
    stats_init();
    container_add_event_listener(on_container_event, NULL);
}

void stats_service_shutdown(void)
{
    struct deferred *d;
    while ((d = TAILQ_FIRST(&svc.deferreds))) {
        struct h2_call *call = reply_take_call(steal_ptr(&d->rep));
        if (call)
            rpc_fail_code(call, GRPC_UNAVAILABLE, "tinycrid is shutting down");
        deferred_free(d);
    }
    stats_shutdown();
    free(svc.layers_mount);
    svc.layers_mount = NULL;
}
