/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-container and per-pod samples (stats.h). Entries live in two binary
 * trees (tsearch) keyed by id. Two kinds of child work, each with one child
 * at a time and a queue: the writable-layer walk, and opening pods' network
 * counters inside their namespaces (the fds come back over a socketpair).
 */
#include "autoconf.h"

#define _GNU_SOURCE 1
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "pod/cgroup.h"
#include "pod/oci_spec.h"
#include "pod/stats.h"

#define NS_PER_MS 1000000LL
#define WALK_TIMEOUT_MS 60000
#define WALK_MAX_DEPTH 256
/* A line of the walker's output: "<64 hex> <bytes> <inodes>\n". */
#define WALK_LINE_MAX 128
/* A pod whose namespace could not be opened is tried again after this. */
#define NET_RETRY_MS 10000
#define NET_OPEN_TIMEOUT_MS 10000
/* fds per SCM_RIGHTS message (the kernel's SCM_MAX_FD is 253). */
#define NET_BATCH 200
#define PROC_CGROUP_MAX (64 * 1024)

/* The last cgroup reading of an entry, served again while fresh. */
struct sample {
    bool valid;
    int64_t mono; /* when it was read */
    int64_t real;
    struct cgroup_stats cg;
};

struct ctr_entry {
    char *id;
    bool have_paths;
    bool paths_from_proc;
    struct cgroup_paths paths;
    bool has_base;
    int64_t base_mono;
    uint64_t base_cpu;
    bool has_rate;
    uint64_t nano_cores;
    struct sample cached;
    char *upper;
    bool fs_known;
    int64_t fs_real;
    uint64_t fs_bytes;
    uint64_t fs_inodes;
    int64_t fs_tried_mono; /* end of the last walk that covered it, done or not; 0: never */
    bool fs_queued;
    bool fs_walking;
};

struct pod_entry {
    char *id;
    int net_fd;
    bool net_queued;
    bool net_opening;
    int64_t net_tried_mono; /* last failed open; 0: none */
    char *netns_path;
    bool have_paths;
    char *paths_parent; /* what paths were made from */
    struct cgroup_paths paths;
    bool has_base;
    int64_t base_mono;
    uint64_t base_cpu;
    bool has_rate;
    uint64_t nano_cores;
    struct sample cached;
};

struct stats_waiter {
    TAILQ_ENTRY(stats_waiter) link;
    struct loop_timer *timer;
    void (*cb)(void *arg);
    void *arg;
};

/* One batch of work handed to a child: ids (owned) and their paths. */
struct batch {
    char **ids;
    char **paths;
    size_t n;
    int sock; /* the net child's end of its socketpair, while it is being started */
};

static struct {
    bool ready;
    void *ctrs; /* tsearch tree of struct ctr_entry */
    void *pods; /* ... of struct pod_entry */
    char **walk_queue;
    size_t n_walk_queue;
    struct child *walk;
    struct batch walking;
    char **net_queue;
    size_t n_net_queue;
    struct child *net;
    struct batch opening;
    int net_sock; /* our end of the socketpair the net child sends fds on */
    struct loop_timer *kick;
    TAILQ_HEAD(, stats_waiter) waiters;
} st = {.net_sock = -1, .waiters = TAILQ_HEAD_INITIALIZER(st.waiters)};

static void kick(void);

/* ---- entries ---- */

static int entry_cmp(const void *a, const void *b)
{
    /* Both kinds start with the id pointer. */
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void *tree_find(void *const *root, const char *id)
{
    const char *key = id;
    void *node = tfind(&key, root, entry_cmp);
    return node ? *(void **)node : NULL;
}

static void batch_clear(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->ids[i]);
        free(b->paths[i]);
    }
    free(b->ids);
    free(b->paths);
    memset(b, 0, sizeof(*b));
}

/*
 * Move up to max ids from the front of queue into b, each with the path
 * claim() gives it (claim marks its entry busy; NULL: the entry is gone and
 * the id is dropped).
 */
static void batch_take(struct batch *b, char **queue, size_t *n_queue, size_t max,
                       const char *(*claim)(const char *id))
{
    size_t n = *n_queue < max ? *n_queue : max;
    b->ids = xcalloc(n + 1, sizeof(char *));
    b->paths = xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        const char *path = claim(queue[i]);
        if (!path) {
            free(queue[i]);
            continue;
        }
        b->ids[b->n] = queue[i];
        b->paths[b->n++] = xstrdup(path);
    }
    memmove(queue, queue + n, (*n_queue - n) * sizeof(char *));
    *n_queue -= n;
}

/* The batch's child is done (or never started): release(id, now) each entry, then clear b. */
static void batch_release(struct batch *b, void (*release)(const char *id, int64_t now))
{
    int64_t now = now_monotonic_ns();
    for (size_t i = 0; i < b->n; i++)
        release(b->ids[i], now);
    batch_clear(b);
}

static void ctr_entry_free(void *p)
{
    struct ctr_entry *e = p;
    cgroup_paths_clear(&e->paths);
    free(e->upper);
    free(e->id);
    free(e);
}

static void pod_entry_free(void *p)
{
    struct pod_entry *e = p;
    if (e->net_fd >= 0)
        close(e->net_fd);
    cgroup_paths_clear(&e->paths);
    free(e->paths_parent);
    free(e->netns_path);
    free(e->id);
    free(e);
}

static struct ctr_entry *ctr_get(const char *id)
{
    struct ctr_entry *e = tree_find(&st.ctrs, id);
    if (e)
        return e;
    e = xcalloc(1, sizeof(*e));
    e->id = xstrdup(id);
    void *node = tsearch(e, &st.ctrs, entry_cmp);
    assert_state(node && *(void **)node == e);
    return e;
}

static struct pod_entry *pod_get(const char *id)
{
    struct pod_entry *e = tree_find(&st.pods, id);
    if (e)
        return e;
    e = xcalloc(1, sizeof(*e));
    e->id = xstrdup(id);
    e->net_fd = -1;
    void *node = tsearch(e, &st.pods, entry_cmp);
    assert_state(node && *(void **)node == e);
    return e;
}

static void queue_push(char ***q, size_t *n, const char *id)
{
    *q = xrealloc(*q, (*n + 1) * sizeof(**q));
    (*q)[(*n)++] = xstrdup(id);
}

static void queue_drop(char **q, size_t *n, const char *id)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(q[i], id) == 0) {
            free(q[i]);
            memmove(&q[i], &q[i + 1], (*n - i - 1) * sizeof(*q));
            (*n)--;
            return;
        }
    }
}

void stats_container_forget(const char *id)
{
    struct ctr_entry *e = st.ready ? tree_find(&st.ctrs, id) : NULL;
    if (!e)
        return;
    if (e->fs_queued)
        queue_drop(st.walk_queue, &st.n_walk_queue, id);
    tdelete(e, &st.ctrs, entry_cmp);
    ctr_entry_free(e);
}

void stats_pod_forget(const char *id)
{
    struct pod_entry *e = st.ready ? tree_find(&st.pods, id) : NULL;
    if (!e)
        return;
    if (e->net_queued)
        queue_drop(st.net_queue, &st.n_net_queue, id);
    tdelete(e, &st.pods, entry_cmp);
    pod_entry_free(e);
}

/* ---- waiters ---- */

static bool is_busy(void)
{
    return st.walk || st.net || st.n_walk_queue || st.n_net_queue;
}

static void waiter_free(struct stats_waiter *w)
{
    TAILQ_REMOVE(&st.waiters, w, link);
    loop_timer_free(w->timer);
    free(w);
}

static void on_waiter_timer(void *arg)
{
    struct stats_waiter *w = arg;
    void (*cb)(void *) = w->cb;
    void *cb_arg = w->arg;
    waiter_free(w);
    cb(cb_arg);
}

/* Wake every waiter (from a zero timer each: never inside the caller's stack). */
static void wake_waiters(void)
{
    if (is_busy())
        return;
    struct stats_waiter *w;
    TAILQ_FOREACH (w, &st.waiters, link)
        loop_timer_arm(w->timer, 0);
}

struct stats_waiter *stats_wait(int64_t timeout_ms, void (*cb)(void *arg), void *arg)
{
    struct stats_waiter *w = xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    w->timer = loop_timer_new(on_waiter_timer, w);
    loop_timer_arm(w->timer, is_busy() ? timeout_ms : 0);
    TAILQ_INSERT_HEAD(&st.waiters, w, link);
    return w;
}

void stats_waiter_cancel(struct stats_waiter *w)
{
    if (w)
        waiter_free(w);
}

/* ---- containers ---- */

static void find_ctr_paths(struct ctr_entry *e, const struct stats_ctr_input *in)
{
    if (e->have_paths && (e->paths_from_proc || in->pid <= 0))
        return;
    if (in->pid > 0) {
        /* The init's own view: right whatever the runtime and the driver made of cgroupsPath. */
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/cgroup", in->pid);
        _cleanup_error_ struct error *err = NULL;
        size_t len = 0;
        _cleanup_free_ char *text = read_file_capped(path, PROC_CGROUP_MAX, &len, &err);
        struct cgroup_paths p;
        if (text && cgroup_paths_parse(text, &p, &err) == 0) {
            cgroup_paths_clear(&e->paths);
            e->paths = p;
            e->have_paths = e->paths_from_proc = true;
            return;
        }
    }
    if (e->have_paths)
        return;
    _cleanup_error_ struct error *err = NULL;
    _cleanup_free_ char *oci = oci_spec_cgroups_path(in->cgroup_parent, in->id, in->systemd, &err);
    _cleanup_free_ char *path = oci ? cgroup_path_from_oci(oci, in->systemd) : NULL;
    if (!path)
        return;
    cgroup_paths_same(path, &e->paths);
    e->have_paths = true;
}

/* Update the rate from a CPU reading (monotonic now_mono). */
static void rate_update(bool *has_base, int64_t *base_mono, uint64_t *base_cpu, bool *has_rate,
                        uint64_t *nano_cores, uint64_t cpu, int64_t now_mono)
{
    if (!*has_base || cpu < *base_cpu) {
        *has_base = true;
        *base_mono = now_mono;
        *base_cpu = cpu;
        return;
    }
    int64_t dt = now_mono - *base_mono;
    if (dt < STATS_RATE_MIN_MS * NS_PER_MS)
        return;
    *nano_cores = (uint64_t)((double)(cpu - *base_cpu) * 1e9 / (double)dt);
    *has_rate = true;
    *base_mono = now_mono;
    *base_cpu = cpu;
}

/* Queue a walk when the figure is missing or old and none is planned. */
static void maybe_queue_walk(struct ctr_entry *e, const char *upper)
{
    if (!upper || !*upper || e->fs_queued || e->fs_walking)
        return;
    if (!e->upper || strcmp(e->upper, upper) != 0) {
        free(e->upper);
        e->upper = xstrdup(upper);
    }
    if (e->fs_tried_mono && now_monotonic_ns() - e->fs_tried_mono < STATS_FS_MAX_AGE_MS * NS_PER_MS)
        return;
    e->fs_queued = true;
    queue_push(&st.walk_queue, &st.n_walk_queue, e->id);
    kick();
}

void stats_container_prepare(const struct stats_ctr_input *in)
{
    if (st.ready)
        maybe_queue_walk(ctr_get(in->id), in->upper_dir);
}

bool stats_container_pending(const struct stats_ctr_input *in)
{
    if (!st.ready || !in->upper_dir)
        return false;
    struct ctr_entry *e = ctr_get(in->id);
    maybe_queue_walk(e, in->upper_dir);
    return !e->fs_known && (e->fs_queued || e->fs_walking);
}

/* Is the last reading young enough, and detailed enough, to serve again? */
static bool is_fresh(const struct sample *c, bool detail)
{
    return c->valid && now_monotonic_ns() - c->mono < STATS_FRESH_MS * NS_PER_MS &&
           (!detail || (c->cg.have & CGROUP_HAVE_DETAIL));
}

/* Read paths' cgroup into c (valid when it could), updating the rate. */
static void read_sample(struct sample *c, const struct cgroup_layout *l,
                        const struct cgroup_paths *paths, bool detail, bool *has_base,
                        int64_t *base_mono, uint64_t *base_cpu, bool *has_rate,
                        uint64_t *nano_cores)
{
    _cleanup_error_ struct error *err = NULL;
    c->valid = cgroup_stats_read(l, paths, detail, &c->cg, &err) == 0;
    c->mono = now_monotonic_ns();
    c->real = now_realtime_ns();
    if (c->valid && (c->cg.have & CGROUP_HAVE_CPU))
        rate_update(has_base, base_mono, base_cpu, has_rate, nano_cores, c->cg.cpu_usage_ns,
                    c->mono);
}

void stats_container_sample(const struct stats_ctr_input *in, struct stats_ctr_sample *out)
{
    memset(out, 0, sizeof(*out));
    out->ts_ns = now_realtime_ns();
    if (!st.ready)
        return;
    struct ctr_entry *e = ctr_get(in->id);
    const struct cgroup_layout *l = cgroup_host_layout();
    if (!in->live)
        e->cached.valid = false;
    if (in->live && l) {
        if (!is_fresh(&e->cached, in->detail)) {
            find_ctr_paths(e, in);
            e->cached.valid = false;
            if (e->have_paths)
                read_sample(&e->cached, l, &e->paths, in->detail, &e->has_base, &e->base_mono,
                            &e->base_cpu, &e->has_rate, &e->nano_cores);
        }
        if (e->cached.valid) {
            out->has_cgroup = true;
            out->cg = e->cached.cg;
            out->ts_ns = e->cached.real;
            out->has_rate = e->has_rate;
            out->nano_cores = e->nano_cores;
        }
    }
    maybe_queue_walk(e, in->upper_dir);
    if (e->fs_known) {
        out->has_fs = true;
        out->fs_ts_ns = e->fs_real;
        out->fs_bytes = e->fs_bytes;
        out->fs_inodes = e->fs_inodes;
    }
}

/* ---- the writable-layer walk (child side) ---- */

struct walk_acc {
    dev_t dev;
    double bytes;
    double inodes;
};

static void count(struct walk_acc *a, const struct stat *sb)
{
    /* A file with n links inside the layer is met n times: count 1/n each time. */
    double share = !S_ISDIR(sb->st_mode) && sb->st_nlink > 1 ? 1.0 / (double)sb->st_nlink : 1.0;
    a->bytes += (double)sb->st_blocks * 512.0 * share;
    a->inodes += share;
}

/*
 * Count what is under the directory fd (taken). Every step is relative to an
 * fd and never follows a symlink, so a container renaming its files during
 * the walk cannot lead it outside its layer; other file systems are skipped.
 */
static void walk_dir(int fd, struct walk_acc *a, int depth)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct stat sb;
        if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || sb.st_dev != a->dev)
            continue;
        count(a, &sb);
        if (!S_ISDIR(sb.st_mode) || depth >= WALK_MAX_DEPTH)
            continue;
        int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub >= 0)
            walk_dir(sub, a, depth + 1);
    }
    closedir(d);
}

/* In the forked child: one "<id> <bytes> <inodes>" line per layer walked, as each ends. */
static int walk_in_child(void *arg)
{
    const struct batch *b = arg;
    for (size_t i = 0; i < b->n; i++) {
        int fd = open(b->paths[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat sb;
        if (fd < 0 || fstat(fd, &sb) < 0) {
            if (fd >= 0)
                close(fd);
            dprintf(1, "%s -\n", b->ids[i]);
            continue;
        }
        struct walk_acc a = {.dev = sb.st_dev};
        count(&a, &sb);
        walk_dir(fd, &a, 0);
        dprintf(1, "%s %.0f %.0f\n", b->ids[i], a.bytes, a.inodes);
    }
    _exit(0);
}

/* A walk of id ended, measured or not. */
static void walk_release(const char *id, int64_t now)
{
    struct ctr_entry *e = tree_find(&st.ctrs, id);
    if (e) {
        e->fs_walking = false;
        e->fs_tried_mono = now;
    }
}

static void on_walk_done(const struct child_result *res, void *arg)
{
    st.walk = NULL;
    int64_t real = now_realtime_ns();
    size_t done = 0;
    for (const char *line = res->out; line && *line;) {
        char id[65];
        unsigned long long bytes, inodes;
        if (sscanf(line, "%64s %llu %llu", id, &bytes, &inodes) == 3) {
            struct ctr_entry *e = tree_find(&st.ctrs, id);
            if (e && e->fs_walking) {
                e->fs_known = true;
                e->fs_real = real;
                e->fs_bytes = bytes;
                e->fs_inodes = inodes;
                done++;
            }
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    if (res->timed_out || !res->exited || res->exit_code != 0)
        log_warn("writable layer walk ended early (%s): %zu of %zu layers measured",
                 res->timed_out ? "timed out" : "failed", done, st.walking.n);
    batch_release(&st.walking, walk_release);
    kick();
}

static const char *walk_claim(const char *id)
{
    struct ctr_entry *e = tree_find(&st.ctrs, id);
    if (!e)
        return NULL;
    e->fs_queued = false;
    e->fs_walking = true;
    return e->upper;
}

static void start_walk(void)
{
    struct batch *b = &st.walking;
    batch_take(b, st.walk_queue, &st.n_walk_queue, STATS_WALK_BATCH, walk_claim);
    if (!b->n) {
        batch_clear(b);
        return;
    }
    struct child_opts o = {.timeout_ms = WALK_TIMEOUT_MS, .out_cap = b->n * WALK_LINE_MAX};
    _cleanup_error_ struct error *err = NULL;
    st.walk = child_fork(&o, walk_in_child, b, on_walk_done, NULL, &err);
    if (!st.walk) {
        log_warn("cannot start the writable layer walk: %s", err->msg);
        batch_release(b, walk_release);
    }
}

/* ---- pods: cgroup and network ---- */

ssize_t stats_parse_net_dev(const char *text, struct stats_iface **out)
{
    *out = NULL;
    size_t n = 0;
    struct stats_iface *v = NULL;
    int line_no = 0;
    for (const char *line = text; line && *line; line_no++) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (line_no >= 2 && len) {
            char buf[512];
            if (len >= sizeof(buf)) {
                free(v);
                return -1;
            }
            memcpy(buf, line, len);
            buf[len] = '\0';
            char *colon = strchr(buf, ':');
            if (!colon) {
                free(v);
                return -1;
            }
            *colon = '\0';
            char *name = buf + strspn(buf, " ");
            unsigned long long f[16];
            if (!*name || strlen(name) > IF_NAMESIZE ||
                sscanf(colon + 1,
                       "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu "
                       "%llu %llu",
                       &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7], &f[8], &f[9], &f[10],
                       &f[11], &f[12], &f[13], &f[14], &f[15]) != 16) {
                free(v);
                return -1;
            }
            if (strcmp(name, "lo") != 0) {
                v = xrealloc(v, (n + 1) * sizeof(*v));
                struct stats_iface *it = &v[n++];
                memset(it, 0, sizeof(*it));
                snprintf(it->name, sizeof(it->name), "%s", name);
                it->rx_bytes = f[0];
                it->rx_packets = f[1];
                it->rx_errors = f[2];
                it->rx_dropped = f[3];
                it->tx_bytes = f[8];
                it->tx_packets = f[9];
                it->tx_errors = f[10];
                it->tx_dropped = f[11];
            }
        }
        line = eol ? eol + 1 : NULL;
    }
    *out = v;
    return (ssize_t)n;
}

/* Is a pod's counter fd wanted and not there yet? Queue the open then. */
static bool net_wanted(struct pod_entry *e, const struct stats_pod_input *in)
{
    if (!in->ready || !in->netns_path || !*in->netns_path)
        return false;
    if (e->net_fd >= 0)
        return false;
    if (e->net_queued || e->net_opening)
        return true;
    if (e->net_tried_mono && now_monotonic_ns() - e->net_tried_mono < NET_RETRY_MS * NS_PER_MS)
        return false;
    free(e->netns_path);
    e->netns_path = xstrdup(in->netns_path);
    e->net_queued = true;
    queue_push(&st.net_queue, &st.n_net_queue, e->id);
    kick();
    return true;
}

bool stats_pod_pending(const struct stats_pod_input *in)
{
    return st.ready && net_wanted(pod_get(in->id), in);
}

static void read_net(struct pod_entry *e, struct stats_pod_sample *out)
{
    char buf[STATS_NET_DEV_MAX];
    ssize_t n;
    do {
        n = pread(e->net_fd, buf, sizeof(buf) - 1, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        log_debug("pod network counters unreadable sandbox=%s: %s", e->id, strerror(errno));
        return;
    }
    buf[n] = '\0';
    if (n == (ssize_t)sizeof(buf) - 1) {
        /* Cut at the last whole line: a pod with a thousand interfaces still has its first. */
        char *nl = strrchr(buf, '\n');
        if (nl)
            nl[1] = '\0';
    }
    ssize_t count = stats_parse_net_dev(buf, &out->ifaces);
    if (count < 0) {
        log_debug("pod network counters malformed sandbox=%s", e->id);
        return;
    }
    out->n_ifaces = (size_t)count;
    out->has_net = true;
}

void stats_pod_sample(const struct stats_pod_input *in, struct stats_pod_sample *out)
{
    memset(out, 0, sizeof(*out));
    out->ts_ns = now_realtime_ns();
    if (!st.ready)
        return;
    struct pod_entry *e = pod_get(in->id);
    const struct cgroup_layout *l = cgroup_host_layout();
    const char *parent = in->cgroup_parent && *in->cgroup_parent ? in->cgroup_parent : NULL;
    if (parent && l) {
        if (!e->have_paths || strcmp(e->paths_parent, parent) != 0) {
            cgroup_paths_clear(&e->paths);
            free(e->paths_parent);
            e->paths_parent = xstrdup(parent);
            const char *base = strrchr(parent, '/') ? strrchr(parent, '/') + 1 : parent;
            _cleanup_free_ char *path =
                in->systemd ? cgroup_systemd_slice_path(base) : cgroup_path_from_oci(parent, false);
            e->have_paths = path != NULL;
            e->cached.valid = false;
            if (path)
                cgroup_paths_same(path, &e->paths);
        }
        if (!is_fresh(&e->cached, in->detail)) {
            e->cached.valid = false;
            if (e->have_paths)
                read_sample(&e->cached, l, &e->paths, in->detail, &e->has_base, &e->base_mono,
                            &e->base_cpu, &e->has_rate, &e->nano_cores);
        }
        if (e->cached.valid) {
            out->has_cgroup = true;
            out->cg = e->cached.cg;
            out->ts_ns = e->cached.real;
            out->has_rate = e->has_rate;
            out->nano_cores = e->nano_cores;
        }
    }
    if (!in->ready && e->net_fd >= 0) {
        close(e->net_fd);
        e->net_fd = -1;
    }
    net_wanted(e, in);
    if (e->net_fd >= 0)
        read_net(e, out);
}

void stats_pod_sample_clear(struct stats_pod_sample *s)
{
    free(s->ifaces);
    s->ifaces = NULL;
    s->n_ifaces = 0;
}

/* In the forked child: open each namespace's /proc/net/dev from inside it; send the fds. */
static int net_in_child(void *arg)
{
    const struct batch *b = arg;
    int sock = b->sock;
    int fds[NET_BATCH];
    uint32_t idx[NET_BATCH];
    size_t n = 0;
    for (size_t i = 0; i < b->n && n < NET_BATCH; i++) {
        int ns = open(b->paths[i], O_RDONLY | O_CLOEXEC);
        if (ns < 0 || setns(ns, CLONE_NEWNET) < 0) {
            dprintf(2, "%s: %s\n", b->ids[i], strerror(errno));
            if (ns >= 0)
                close(ns);
            continue;
        }
        close(ns);
        int fd = open("/proc/thread-self/net/dev", O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            dprintf(2, "%s: /proc/net/dev: %s\n", b->ids[i], strerror(errno));
            continue;
        }
        fds[n] = fd;
        idx[n++] = (uint32_t)i;
    }
    if (n == 0)
        _exit(0);
    union {
        char buf[CMSG_SPACE(sizeof(int) * NET_BATCH)];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct iovec iov = {.iov_base = idx, .iov_len = n * sizeof(uint32_t)};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = ctl.buf,
                         .msg_controllen = CMSG_SPACE(sizeof(int) * n)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
    if (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0)
        _exit(1);
    _exit(0);
}

/* Take the fds the child sent (if any) and give them to their pods. */
static void net_receive(void)
{
    uint32_t idx[NET_BATCH];
    union {
        char buf[CMSG_SPACE(sizeof(int) * NET_BATCH)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = idx, .iov_len = sizeof(idx)};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl)};
    ssize_t n = recvmsg(st.net_sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n <= 0)
        return;
    int fds[NET_BATCH];
    size_t n_fds = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k && n_fds < NET_BATCH; i++)
            memcpy(&fds[n_fds++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
    }
    size_t n_idx = (size_t)n / sizeof(uint32_t);
    for (size_t i = 0; i < n_fds; i++) {
        struct pod_entry *e = NULL;
        if (i < n_idx && idx[i] < st.opening.n)
            e = tree_find(&st.pods, st.opening.ids[idx[i]]);
        if (e && e->net_opening && e->net_fd < 0) {
            e->net_fd = fds[i];
            fds[i] = -1;
        }
        if (fds[i] >= 0)
            close(fds[i]);
    }
}

/* An open of id's counters ended, done or not (a pod without its fd tries again later). */
static void net_release(const char *id, int64_t now)
{
    struct pod_entry *e = tree_find(&st.pods, id);
    if (!e)
        return;
    e->net_opening = false;
    if (e->net_fd < 0)
        e->net_tried_mono = now;
}

static void on_net_done(const struct child_result *res, void *arg)
{
    st.net = NULL;
    net_receive();
    close(st.net_sock);
    st.net_sock = -1;
    if (res->err_len)
        log_warn("pod network counters: %.*s", (int)res->err_len, res->err);
    batch_release(&st.opening, net_release);
    kick();
}

static const char *net_claim(const char *id)
{
    struct pod_entry *e = tree_find(&st.pods, id);
    if (!e)
        return NULL;
    e->net_queued = false;
    e->net_opening = true;
    return e->netns_path;
}

static void start_net(void)
{
    struct batch *b = &st.opening;
    batch_take(b, st.net_queue, &st.n_net_queue, NET_BATCH, net_claim);
    if (!b->n) {
        batch_clear(b);
        return;
    }
    /* A socketpair per child: the child sends the fds on its end, ours reads them at its exit. */
    int sv[2];
    _cleanup_error_ struct error *err = NULL;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        error_set(&err, GRPC_INTERNAL, errno, "socketpair");
    } else {
        b->sock = sv[1];
        struct child_opts o = {.timeout_ms = NET_OPEN_TIMEOUT_MS};
        st.net = child_fork(&o, net_in_child, b, on_net_done, NULL, &err);
        close(sv[1]);
        b->sock = -1;
        if (st.net)
            st.net_sock = sv[0];
        else
            close(sv[0]);
    }
    if (!st.net) {
        log_warn("cannot open pod network counters: %s", err->msg);
        batch_release(b, net_release);
    }
}

/* ---- scheduling ---- */

static void on_kick(void *arg)
{
    if (!st.walk && st.n_walk_queue)
        start_walk();
    if (!st.net && st.n_net_queue)
        start_net();
    wake_waiters();
}

/* Start queued work on the next turn: many requests in one turn make one batch. */
static void kick(void)
{
    if (st.kick && !loop_timer_is_armed(st.kick))
        loop_timer_arm(st.kick, 0);
}

void stats_init(void)
{
    if (st.ready)
        return;
    cgroup_init();
    st.kick = loop_timer_new(on_kick, NULL);
    st.ready = true;
}

void stats_shutdown(void)
{
    if (!st.ready)
        return;
    if (st.walk)
        child_cancel(st.walk);
    if (st.net)
        child_cancel(st.net);
    batch_clear(&st.walking);
    batch_clear(&st.opening);
    while (!TAILQ_EMPTY(&st.waiters))
        waiter_free(TAILQ_FIRST(&st.waiters));
    for (size_t i = 0; i < st.n_walk_queue; i++)
        free(st.walk_queue[i]);
    free(st.walk_queue);
    for (size_t i = 0; i < st.n_net_queue; i++)
        free(st.net_queue[i]);
    free(st.net_queue);
    tdestroy(st.ctrs, ctr_entry_free);
    tdestroy(st.pods, pod_entry_free);
    if (st.net_sock >= 0)
        close(st.net_sock);
    loop_timer_free(st.kick);
    cgroup_shutdown();
    memset(&st, 0, sizeof(st));
    st.net_sock = -1;
}
