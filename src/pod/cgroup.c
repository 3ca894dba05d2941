/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cgroup discovery, reads and planned writes (cgroup.h). Every file is read
 * with one bounded read into a stack buffer: polling the stats of a hundred
 * containers costs a few hundred small reads of kernel-made text and no
 * allocation beyond the paths.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/path.h"
#include "core/util.h"
#include "pod/cgroup.h"

/* Past this a v1 limit means "none" (the kernel shows 2^63 rounded down to a page). */
#define V1_NO_LIMIT (1ULL << 62)
#define MOUNTINFO_MAX (1024 * 1024)

static const char *const controller_names[CGROUP_N] = {
    [CGROUP_CPU] = "cpu",       [CGROUP_CPUACCT] = "cpuacct", [CGROUP_CPUSET] = "cpuset",
    [CGROUP_MEMORY] = "memory", [CGROUP_PIDS] = "pids",       [CGROUP_HUGETLB] = "hugetlb",
};

const char *cgroup_controller_name(enum cgroup_controller c)
{
    return c < CGROUP_N ? controller_names[c] : "unified";
}

static int controller_by_name(const char *name, size_t len)
{
    for (int i = 0; i < CGROUP_N; i++) {
        if (strlen(controller_names[i]) == len && strncmp(controller_names[i], name, len) == 0)
            return i;
    }
    return -1;
}

/* ---- layout ---- */

/* Undo mountinfo's octal escapes ("\040" is a space) into an owned string. */
static char *unescape(const char *s)
{
    char *out = xmalloc(strlen(s) + 1);
    char *o = out;
    while (*s) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 4;
        } else {
            *o++ = *s++;
        }
    }
    *o = '\0';
    return out;
}

/* A mount that shows the whole hierarchy wins over one that shows a part of it. */
static void set_mount(char **mnt, char **root, const char *new_mnt, const char *new_root)
{
    if (*mnt && (strcmp(*root, "/") == 0 || strcmp(new_root, "/") != 0))
        return;
    free(*mnt);
    free(*root);
    *mnt = unescape(new_mnt);
    *root = unescape(new_root);
}

int cgroup_layout_parse(const char *mountinfo, const char *v2_controllers, struct cgroup_layout *l,
                        struct error **err)
{
    memset(l, 0, sizeof(*l));
    _cleanup_free_ char *copy = xstrdup(mountinfo ? mountinfo : "");
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        /* id parent maj:min root mountpoint options [optional...] - fstype source superopts */
        char *f[6];
        char *lsave = NULL;
        char *tok = strtok_r(line, " ", &lsave);
        int n = 0;
        for (; n < 6 && tok; n++, tok = strtok_r(NULL, " ", &lsave))
            f[n] = tok;
        if (n < 6)
            continue;
        while (tok && strcmp(tok, "-") != 0)
            tok = strtok_r(NULL, " ", &lsave);
        char *fstype = tok ? strtok_r(NULL, " ", &lsave) : NULL;
        char *source = fstype ? strtok_r(NULL, " ", &lsave) : NULL;
        char *superopts = source ? strtok_r(NULL, " ", &lsave) : NULL;
        if (!superopts)
            continue;
        const char *root = f[3], *mnt = f[4];
        if (strcmp(fstype, "cgroup2") == 0) {
            set_mount(&l->v2, &l->v2_root, mnt, root);
            continue;
        }
        if (strcmp(fstype, "cgroup") != 0)
            continue;
        for (char *o = superopts; o && *o;) {
            char *comma = strchr(o, ',');
            size_t len = comma ? (size_t)(comma - o) : strlen(o);
            int c = controller_by_name(o, len);
            if (c >= 0)
                set_mount(&l->v1[c], &l->v1_root[c], mnt, root);
            o = comma ? comma + 1 : NULL;
        }
    }
    bool any = l->v2 != NULL;
    for (int c = 0; c < CGROUP_N; c++)
        any = any || l->v1[c];
    if (!any)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "no cgroup hierarchy is mounted");
    if (l->v2 && v2_controllers) {
        _cleanup_free_ char *ctl = xstrdup(v2_controllers);
        char *csave = NULL;
        for (char *c = strtok_r(ctl, " \t\n", &csave); c; c = strtok_r(NULL, " \t\n", &csave)) {
            int i = controller_by_name(c, strlen(c));
            if (i >= 0)
                l->v2_controllers |= 1u << i;
            /* cgroup2's "cpu" controller also does cpuacct's job. */
            if (i == CGROUP_CPU)
                l->v2_controllers |= 1u << CGROUP_CPUACCT;
        }
    }
    return 0;
}

void cgroup_layout_clear(struct cgroup_layout *l)
{
    for (int c = 0; c < CGROUP_N; c++) {
        free(l->v1[c]);
        free(l->v1_root[c]);
    }
    free(l->v2);
    free(l->v2_root);
    memset(l, 0, sizeof(*l));
}

const char *cgroup_layout_kind(const struct cgroup_layout *l)
{
    bool v1 = false;
    for (int c = 0; c < CGROUP_N; c++)
        v1 = v1 || l->v1[c];
    if (!l->v2)
        return "v1";
    return v1 ? "hybrid" : "v2";
}

static struct {
    bool ready;
    struct cgroup_layout layout;
} host;

void cgroup_init(void)
{
    if (host.ready)
        return;
    _cleanup_error_ struct error *err = NULL;
    size_t len = 0;
    _cleanup_free_ char *mi = read_file_capped("/proc/self/mountinfo", MOUNTINFO_MAX, &len, &err);
    if (!mi) {
        log_warn("cgroups: cannot read the mount table: %s", err->msg);
        return;
    }
    if (cgroup_layout_parse(mi, NULL, &host.layout, &err) < 0) {
        log_warn("cgroups: %s; stats will have no CPU or memory figures", err->msg);
        return;
    }
    if (host.layout.v2) {
        _cleanup_free_ char *path = xasprintf("%s/cgroup.controllers", host.layout.v2);
        _cleanup_error_ struct error *cerr = NULL;
        _cleanup_free_ char *ctl = read_file_capped(path, 4096, &len, &cerr);
        struct cgroup_layout full;
        _cleanup_error_ struct error *perr = NULL;
        if (ctl && cgroup_layout_parse(mi, ctl, &full, &perr) == 0) {
            cgroup_layout_clear(&host.layout);
            host.layout = full;
        }
    }
    host.ready = true;
    log_debug("cgroups: %s layout", cgroup_layout_kind(&host.layout));
}

void cgroup_shutdown(void)
{
    cgroup_layout_clear(&host.layout);
    host.ready = false;
}

const struct cgroup_layout *cgroup_host_layout(void)
{
    return host.ready ? &host.layout : NULL;
}

/* ---- paths ---- */

int cgroup_paths_parse(const char *text, struct cgroup_paths *p, struct error **err)
{
    memset(p, 0, sizeof(*p));
    _cleanup_free_ char *copy = xstrdup(text ? text : "");
    bool any = false;
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2 || c2[1] != '/')
            continue;
        const char *path = c2 + 1;
        if (c2 == c1 + 1) {
            if (strncmp(line, "0:", 2) == 0 && !p->v2) {
                p->v2 = xstrdup(path);
                any = true;
            }
            continue;
        }
        for (char *o = c1 + 1; o < c2;) {
            char *comma = memchr(o, ',', (size_t)(c2 - o));
            size_t len = comma ? (size_t)(comma - o) : (size_t)(c2 - o);
            int c = controller_by_name(o, len);
            if (c >= 0 && !p->v1[c]) {
                p->v1[c] = xstrdup(path);
                any = true;
            }
            o = comma ? comma + 1 : c2;
        }
    }
    if (!any)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "no cgroup line");
    return 0;
}

void cgroup_paths_same(const char *path, struct cgroup_paths *p)
{
    for (int c = 0; c < CGROUP_N; c++)
        p->v1[c] = xstrdup(path);
    p->v2 = xstrdup(path);
}

void cgroup_paths_clear(struct cgroup_paths *p)
{
    for (int c = 0; c < CGROUP_N; c++)
        free(p->v1[c]);
    free(p->v2);
    memset(p, 0, sizeof(*p));
}

/* Is name a valid systemd slice unit name ("a-b.slice", "-.slice")? */
static bool is_slice_name(const char *name, size_t *stem_len)
{
    if (!str_has_suffix(name, ".slice") || strchr(name, '/'))
        return false;
    size_t stem = strlen(name) - strlen(".slice");
    *stem_len = stem;
    if (stem == 1 && name[0] == '-')
        return true;
    if (stem == 0 || name[0] == '-' || name[stem - 1] == '-')
        return false;
    for (size_t i = 0; i + 1 < stem; i++) {
        if (name[i] == '-' && name[i + 1] == '-')
            return false;
    }
    return true;
}

char *cgroup_systemd_slice_path(const char *slice)
{
    size_t stem;
    if (!slice || !is_slice_name(slice, &stem))
        return NULL;
    if (stem == 1 && slice[0] == '-')
        return xstrdup("/");
    struct buf b;
    buf_init(&b, 4096);
    for (size_t i = 0; i <= stem; i++) {
        if (i < stem && slice[i] != '-')
            continue;
        /* "/" + the name's first i characters + ".slice" */
        if (buf_append(&b, "/", 1) < 0 || buf_append(&b, slice, i) < 0 ||
            buf_append(&b, ".slice", 6) < 0) {
            buf_free(&b);
            return NULL;
        }
    }
    return buf_take_str(&b, NULL);
}

char *cgroup_path_from_oci(const char *cgroups_path, bool systemd)
{
    if (!cgroups_path || !*cgroups_path)
        return NULL;
    if (!systemd)
        return cgroups_path[0] == '/' ? xstrdup(cgroups_path) : xasprintf("/%s", cgroups_path);
    const char *c1 = strchr(cgroups_path, ':');
    const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2 || strchr(c2 + 1, ':') || !c2[1])
        return NULL;
    _cleanup_free_ char *slice = xstrndup(cgroups_path, (size_t)(c1 - cgroups_path));
    _cleanup_free_ char *prefix = xstrndup(c1 + 1, (size_t)(c2 - c1 - 1));
    _cleanup_free_ char *dir = cgroup_systemd_slice_path(*slice ? slice : "system.slice");
    if (!dir)
        return NULL;
    const char *sep = strcmp(dir, "/") == 0 ? "" : "/";
    if (!*prefix)
        return xasprintf("%s%s%s.scope", dir, sep, c2 + 1);
    return xasprintf("%s%s%s-%s.scope", dir, sep, prefix, c2 + 1);
}

/* path relative to a mount whose root is root: NULL when outside it. */
static const char *under_root(const char *path, const char *root)
{
    if (!path)
        return NULL;
    if (!root || strcmp(root, "/") == 0)
        return path;
    size_t n = strlen(root);
    if (strncmp(path, root, n) != 0 || (path[n] != '/' && path[n] != '\0'))
        return NULL;
    return path + n;
}

char *cgroup_dir(const struct cgroup_layout *l, const struct cgroup_paths *p,
                 enum cgroup_controller c)
{
    const char *mnt = NULL, *rel = NULL;
    if (c < CGROUP_N && l->v1[c]) {
        mnt = l->v1[c];
        rel = under_root(p->v1[c], l->v1_root[c]);
    } else if (l->v2 && (c == CGROUP_N || (l->v2_controllers & (1u << c)))) {
        mnt = l->v2;
        rel = under_root(p->v2, l->v2_root);
    }
    if (!mnt || !rel || path_has_dotdot(rel))
        return NULL;
    return xasprintf("%s%s", mnt, strcmp(rel, "/") == 0 ? "" : rel);
}

/* ---- reading ---- */

/*
 * Read dir/name into buf (NUL-terminated). Returns the length, or -1 with
 * errno set: ENOENT and friends when missing, EFBIG when longer than cap.
 */
static ssize_t read_small(const char *dir, const char *name, char *buf, size_t cap)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return read_file_into(path, O_NOFOLLOW, buf, cap, false);
}

bool cgroup_parse_number(const char *text, uint64_t *value)
{
    while (*text == ' ' || *text == '\t')
        text++;
    if (strncmp(text, "max", 3) == 0 && (text[3] == '\0' || text[3] == '\n' || text[3] == ' ')) {
        *value = CGROUP_UNLIMITED;
        return true;
    }
    if (*text == '-') {
        /* v1 shows -1 for "no limit" in a few files. */
        if (strncmp(text, "-1", 2) == 0) {
            *value = CGROUP_UNLIMITED;
            return true;
        }
        return false;
    }
    if (*text < '0' || *text > '9')
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || (*end && *end != '\n' && *end != ' '))
        return false;
    *value = v >= V1_NO_LIMIT ? CGROUP_UNLIMITED : (uint64_t)v;
    return true;
}

bool cgroup_parse_keyed(const char *text, const char *key, uint64_t *value)
{
    size_t n = strlen(key);
    for (const char *line = text; line && *line;) {
        if (strncmp(line, key, n) == 0 && line[n] == ' ') {
            char *end = NULL;
            errno = 0;
            unsigned long long v = strtoull(line + n + 1, &end, 10);
            if (errno || end == line + n + 1 || (*end && *end != '\n'))
                return false;
            *value = (uint64_t)v;
            return true;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return false;
}

static bool read_number(const char *dir, const char *name, uint64_t *value)
{
    char buf[256];
    return dir && read_small(dir, name, buf, sizeof(buf)) >= 0 && cgroup_parse_number(buf, value);
}

static int read_cpu(const struct cgroup_layout *l, const struct cgroup_paths *p,
                    struct cgroup_stats *s, bool detail)
{
    char buf[CGROUP_FILE_MAX];
    if (l->v1[CGROUP_CPUACCT]) {
        _cleanup_free_ char *dir = cgroup_dir(l, p, CGROUP_CPUACCT);
        if (!read_number(dir, "cpuacct.usage", &s->cpu_usage_ns))
            return 0;
        s->have |= CGROUP_HAVE_CPU;
        if (!detail)
            return 0;
        if (!read_number(dir, "cpuacct.usage_user", &s->cpu_user_ns) ||
            !read_number(dir, "cpuacct.usage_sys", &s->cpu_system_ns)) {
            /* Older kernels: cpuacct.stat in USER_HZ ticks. */
            uint64_t user = 0, sys = 0;
            long hz = sysconf(_SC_CLK_TCK);
            if (hz > 0 && read_small(dir, "cpuacct.stat", buf, sizeof(buf)) >= 0 &&
                cgroup_parse_keyed(buf, "user", &user) && cgroup_parse_keyed(buf, "system", &sys)) {
                s->cpu_user_ns = user * (1000000000ULL / (uint64_t)hz);
                s->cpu_system_ns = sys * (1000000000ULL / (uint64_t)hz);
            }
        }
        _cleanup_free_ char *cpu = l->v1[CGROUP_CPU] ? cgroup_dir(l, p, CGROUP_CPU) : NULL;
        if (cpu && read_small(cpu, "cpu.stat", buf, sizeof(buf)) >= 0 &&
            cgroup_parse_keyed(buf, "nr_periods", &s->cpu_periods) &&
            cgroup_parse_keyed(buf, "nr_throttled", &s->cpu_throttled_periods) &&
            cgroup_parse_keyed(buf, "throttled_time", &s->cpu_throttled_ns))
            s->have |= CGROUP_HAVE_THROTTLE;
        return 0;
    }
    _cleanup_free_ char *dir = cgroup_dir(l, p, CGROUP_N);
    if (!dir || read_small(dir, "cpu.stat", buf, sizeof(buf)) < 0)
        return 0;
    uint64_t usage, user = 0, sys = 0;
    if (!cgroup_parse_keyed(buf, "usage_usec", &usage))
        return 0;
    cgroup_parse_keyed(buf, "user_usec", &user);
    cgroup_parse_keyed(buf, "system_usec", &sys);
    s->cpu_usage_ns = usage * 1000;
    s->cpu_user_ns = user * 1000;
    s->cpu_system_ns = sys * 1000;
    s->have |= CGROUP_HAVE_CPU;
    uint64_t throttled_us;
    if (cgroup_parse_keyed(buf, "nr_periods", &s->cpu_periods) &&
        cgroup_parse_keyed(buf, "nr_throttled", &s->cpu_throttled_periods) &&
        cgroup_parse_keyed(buf, "throttled_usec", &throttled_us)) {
        s->cpu_throttled_ns = throttled_us * 1000;
        s->have |= CGROUP_HAVE_THROTTLE;
    }
    return 0;
}

static uint64_t sub0(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

static void read_memory_v1(const char *dir, struct cgroup_stats *s, bool detail)
{
    char buf[CGROUP_FILE_MAX];
    if (!read_number(dir, "memory.usage_in_bytes", &s->mem_usage) ||
        read_small(dir, "memory.stat", buf, sizeof(buf)) < 0)
        return;
    /* total_*: the figures of the group and its descendants. */
    cgroup_parse_keyed(buf, "total_inactive_file", &s->mem_inactive_file);
    cgroup_parse_keyed(buf, "total_active_file", &s->mem_active_file);
    cgroup_parse_keyed(buf, "total_rss", &s->mem_rss);
    cgroup_parse_keyed(buf, "total_cache", &s->mem_cache);
    cgroup_parse_keyed(buf, "total_mapped_file", &s->mem_mapped_file);
    cgroup_parse_keyed(buf, "total_pgfault", &s->pgfault);
    cgroup_parse_keyed(buf, "total_pgmajfault", &s->pgmajfault);
    s->mem_working_set = sub0(s->mem_usage, s->mem_inactive_file);
    if (!read_number(dir, "memory.limit_in_bytes", &s->mem_limit))
        s->mem_limit = CGROUP_UNLIMITED;
    if (detail) {
        read_number(dir, "memory.max_usage_in_bytes", &s->mem_max_usage);
        read_number(dir, "memory.failcnt", &s->mem_failcnt);
        read_number(dir, "memory.kmem.usage_in_bytes", &s->mem_kernel);
    }
    s->have |= CGROUP_HAVE_MEMORY;
    uint64_t memsw, memsw_limit;
    if (read_number(dir, "memory.memsw.usage_in_bytes", &memsw) &&
        read_number(dir, "memory.memsw.limit_in_bytes", &memsw_limit)) {
        s->swap_usage = sub0(memsw, s->mem_usage);
        s->swap_limit = memsw_limit == CGROUP_UNLIMITED || s->mem_limit == CGROUP_UNLIMITED
                            ? CGROUP_UNLIMITED
                            : sub0(memsw_limit, s->mem_limit);
        s->have |= CGROUP_HAVE_SWAP;
    }
}

static void read_memory_v2(const char *dir, struct cgroup_stats *s, bool detail)
{
    char buf[CGROUP_FILE_MAX];
    if (!read_number(dir, "memory.current", &s->mem_usage) ||
        read_small(dir, "memory.stat", buf, sizeof(buf)) < 0)
        return;
    cgroup_parse_keyed(buf, "inactive_file", &s->mem_inactive_file);
    cgroup_parse_keyed(buf, "active_file", &s->mem_active_file);
    cgroup_parse_keyed(buf, "anon", &s->mem_rss);
    cgroup_parse_keyed(buf, "file", &s->mem_cache);
    cgroup_parse_keyed(buf, "file_mapped", &s->mem_mapped_file);
    cgroup_parse_keyed(buf, "pgfault", &s->pgfault);
    cgroup_parse_keyed(buf, "pgmajfault", &s->pgmajfault);
    if (!cgroup_parse_keyed(buf, "kernel", &s->mem_kernel)) {
        uint64_t stack = 0, slab = 0, sock = 0;
        cgroup_parse_keyed(buf, "kernel_stack", &stack);
        cgroup_parse_keyed(buf, "slab", &slab);
        cgroup_parse_keyed(buf, "sock", &sock);
        s->mem_kernel = stack + slab + sock;
    }
    s->mem_working_set = sub0(s->mem_usage, s->mem_inactive_file);
    if (!read_number(dir, "memory.max", &s->mem_limit))
        s->mem_limit = CGROUP_UNLIMITED;
    if (detail) {
        read_number(dir, "memory.peak", &s->mem_max_usage);
        if (read_small(dir, "memory.events", buf, sizeof(buf)) >= 0)
            cgroup_parse_keyed(buf, "max", &s->mem_failcnt);
    }
    s->have |= CGROUP_HAVE_MEMORY;
    if (read_number(dir, "memory.swap.current", &s->swap_usage)) {
        if (!read_number(dir, "memory.swap.max", &s->swap_limit))
            s->swap_limit = CGROUP_UNLIMITED;
        s->have |= CGROUP_HAVE_SWAP;
    }
}

int cgroup_stats_read(const struct cgroup_layout *l, const struct cgroup_paths *p, bool detail,
                      struct cgroup_stats *s, struct error **err)
{
    memset(s, 0, sizeof(*s));
    s->mem_limit = s->swap_limit = s->pids_max = CGROUP_UNLIMITED;
    read_cpu(l, p, s, detail);
    _cleanup_free_ char *mem = cgroup_dir(l, p, CGROUP_MEMORY);
    if (mem && l->v1[CGROUP_MEMORY])
        read_memory_v1(mem, s, detail);
    else if (mem)
        read_memory_v2(mem, s, detail);
    _cleanup_free_ char *pids = cgroup_dir(l, p, CGROUP_PIDS);
    if (read_number(pids, "pids.current", &s->pids_current)) {
        if (detail && !read_number(pids, "pids.max", &s->pids_max))
            s->pids_max = CGROUP_UNLIMITED;
        s->have |= CGROUP_HAVE_PIDS;
    }
    if (detail)
        s->have |= CGROUP_HAVE_DETAIL;
    if (!(s->have & (CGROUP_HAVE_CPU | CGROUP_HAVE_MEMORY)))
        return error_set(err, GRPC_NOT_FOUND, 0, "no readable cgroup");
    return 0;
}

static uint64_t add_limit(uint64_t a, uint64_t b)
{
    return a == CGROUP_UNLIMITED || b == CGROUP_UNLIMITED ? CGROUP_UNLIMITED : a + b;
}

void cgroup_stats_add(struct cgroup_stats *a, const struct cgroup_stats *b)
{
    if (b->have & CGROUP_HAVE_CPU) {
        a->cpu_usage_ns += b->cpu_usage_ns;
        a->cpu_user_ns += b->cpu_user_ns;
        a->cpu_system_ns += b->cpu_system_ns;
    }
    if (b->have & CGROUP_HAVE_THROTTLE) {
        a->cpu_periods += b->cpu_periods;
        a->cpu_throttled_periods += b->cpu_throttled_periods;
        a->cpu_throttled_ns += b->cpu_throttled_ns;
    }
    if (b->have & CGROUP_HAVE_MEMORY) {
        bool first = !(a->have & CGROUP_HAVE_MEMORY);
        a->mem_usage += b->mem_usage;
        a->mem_working_set += b->mem_working_set;
        a->mem_rss += b->mem_rss;
        a->mem_cache += b->mem_cache;
        a->mem_mapped_file += b->mem_mapped_file;
        a->mem_active_file += b->mem_active_file;
        a->mem_inactive_file += b->mem_inactive_file;
        a->mem_kernel += b->mem_kernel;
        a->mem_max_usage += b->mem_max_usage;
        a->mem_failcnt += b->mem_failcnt;
        a->mem_limit = first ? b->mem_limit : add_limit(a->mem_limit, b->mem_limit);
        a->pgfault += b->pgfault;
        a->pgmajfault += b->pgmajfault;
    }
    if (b->have & CGROUP_HAVE_SWAP) {
        bool first = !(a->have & CGROUP_HAVE_SWAP);
        a->swap_usage += b->swap_usage;
        a->swap_limit = first ? b->swap_limit : add_limit(a->swap_limit, b->swap_limit);
    }
    if (b->have & CGROUP_HAVE_PIDS) {
        bool first = !(a->have & CGROUP_HAVE_PIDS);
        a->pids_current += b->pids_current;
        a->pids_max = first ? b->pids_max : add_limit(a->pids_max, b->pids_max);
    }
    a->have |= b->have;
}

/* ---- checking and planning limits ---- */

static bool valid_cpuset(const char *s)
{
    /* "0-3,5,7-8": ranges of decimal numbers, low <= high. */
    const char *p = s;
    if (!*p)
        return false;
    for (;;) {
        char *end = NULL;
        if (*p < '0' || *p > '9')
            return false;
        unsigned long lo = strtoul(p, &end, 10), hi = lo;
        p = end;
        if (*p == '-') {
            p++;
            if (*p < '0' || *p > '9')
                return false;
            hi = strtoul(p, &end, 10);
            p = end;
        }
        if (hi < lo || hi > 65535)
            return false;
        if (*p == '\0')
            return true;
        if (*p != ',')
            return false;
        p++;
    }
}

uint64_t cgroup_hugepage_size(const char *name)
{
    if (!name || *name < '1' || *name > '9')
        return 0;
    char *end = NULL;
    unsigned long long n = strtoull(name, &end, 10);
    static const struct {
        const char *unit;
        unsigned shift;
    } units[] = {{"KB", 10}, {"MB", 20}, {"GB", 30}, {"TB", 40}};
    for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
        if (strcmp(end, units[i].unit) == 0)
            return n > (UINT64_MAX >> units[i].shift) ? 0 : (uint64_t)n << units[i].shift;
    }
    return 0;
}

/* A unified key: "<controller>.<file>" of letters, digits and '_' (no path, no dot-file). */
static bool valid_unified_key(const char *k)
{
    const char *dot = k ? strchr(k, '.') : NULL;
    if (!dot || dot == k || !dot[1])
        return false;
    return strspn(k, "abcdefghijklmnopqrstuvwxyz0123456789_.") == strlen(k);
}

int cgroup_resources_check(const Runtime__V1__LinuxContainerResources *r, struct error **err)
{
    if (!r)
        return 0;
    if (r->cpu_shares && (r->cpu_shares < 2 || r->cpu_shares > 262144))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "cpu_shares %" PRId64 " is outside 2..262144", r->cpu_shares);
    if (r->cpu_period && (r->cpu_period < 1000 || r->cpu_period > 1000000))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "cpu_period %" PRId64 " is outside 1000..1000000 (microseconds)",
                         r->cpu_period);
    if (r->cpu_quota != 0 && r->cpu_quota != -1 && r->cpu_quota < 1000)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "cpu_quota %" PRId64 " must be -1, 0 or at least 1000 (microseconds)",
                         r->cpu_quota);
    if (r->memory_limit_in_bytes < 0)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "memory_limit_in_bytes is negative");
    if (r->memory_swap_limit_in_bytes < -1)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "memory_swap_limit_in_bytes must be -1, 0 or a byte count");
    if (r->memory_swap_limit_in_bytes > 0 &&
        r->memory_swap_limit_in_bytes < r->memory_limit_in_bytes)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "memory_swap_limit_in_bytes (%" PRId64
                         ") is below memory_limit_in_bytes (%" PRId64 "): it counts memory too",
                         r->memory_swap_limit_in_bytes, r->memory_limit_in_bytes);
    if (r->memory_swap_limit_in_bytes > 0 && !r->memory_limit_in_bytes)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "memory_swap_limit_in_bytes needs memory_limit_in_bytes");
    if (r->cpuset_cpus && *r->cpuset_cpus && !valid_cpuset(r->cpuset_cpus))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "cpuset_cpus \"%.64s\" is not a CPU list",
                         r->cpuset_cpus);
    if (r->cpuset_mems && *r->cpuset_mems && !valid_cpuset(r->cpuset_mems))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "cpuset_mems \"%.64s\" is not a memory node list", r->cpuset_mems);
    for (size_t i = 0; i < r->n_hugepage_limits; i++) {
        const Runtime__V1__HugepageLimit *h = r->hugepage_limits[i];
        if (!cgroup_hugepage_size(h->page_size))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "hugepage_limits: page size \"%.32s\" is not like 2MB or 1GB",
                             h->page_size ? h->page_size : "");
        if (h->limit > (uint64_t)INT64_MAX)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "hugepage_limits: %s limit too large",
                             h->page_size);
    }
    for (size_t i = 0; i < r->n_unified; i++) {
        const char *k = r->unified[i]->key, *v = r->unified[i]->value;
        if (!valid_unified_key(k))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "unified: \"%.64s\" is not a cgroup file name", k ? k : "");
        if (!v || strchr(v, '\n'))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "unified: %s: bad value", k);
    }
    return 0;
}

static void plan_add(struct cgroup_plan *plan, char *path, char *value, bool retry)
{
    plan->writes = xrealloc(plan->writes, (plan->n + 1) * sizeof(*plan->writes));
    plan->writes[plan->n++] = (struct cgroup_write){path, value, retry};
}

/* Plan dir/file = value (takes value); dir is the controller's directory. */
static void plan_file(struct cgroup_plan *plan, const char *dir, const char *file, char *value,
                      bool retry)
{
    plan_add(plan, xasprintf("%s/%s", dir, file), value, retry);
}

static int need_dir(const struct cgroup_layout *l, const struct cgroup_paths *p,
                    enum cgroup_controller c, char **dir, struct error **err)
{
    free(*dir);
    *dir = cgroup_dir(l, p, c);
    if (!*dir)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                         "the %s cgroup controller is not available here",
                         cgroup_controller_name(c));
    return 0;
}

int cgroup_plan_resources(const struct cgroup_layout *l, const struct cgroup_paths *p,
                          const Runtime__V1__LinuxContainerResources *r, struct cgroup_plan *plan,
                          struct error **err)
{
    memset(plan, 0, sizeof(*plan));
    if (cgroup_resources_check(r, err) < 0)
        return -1;
    if (!r)
        return 0;
    _cleanup_free_ char *dir = NULL;
    if (r->cpu_shares || r->cpu_quota || r->cpu_period) {
        if (need_dir(l, p, CGROUP_CPU, &dir, err) < 0)
            goto fail;
        bool v1 = l->v1[CGROUP_CPU] != NULL;
        if (r->cpu_shares && v1)
            plan_file(plan, dir, "cpu.shares", xasprintf("%" PRId64, r->cpu_shares), false);
        else if (r->cpu_shares)
            plan_file(plan, dir, "cpu.weight",
                      xasprintf("%" PRId64, 1 + ((r->cpu_shares - 2) * 9999) / 262142), false);
        if (v1) {
            /* The kernel checks quota against period: each order may fail alone. */
            if (r->cpu_period)
                plan_file(plan, dir, "cpu.cfs_period_us", xasprintf("%" PRId64, r->cpu_period),
                          true);
            if (r->cpu_quota)
                plan_file(plan, dir, "cpu.cfs_quota_us",
                          xasprintf("%" PRId64, r->cpu_quota > 0 ? r->cpu_quota : -1), true);
        } else if (r->cpu_quota || r->cpu_period) {
            int64_t period = r->cpu_period ? r->cpu_period : 100000;
            plan_file(plan, dir, "cpu.max",
                      r->cpu_quota > 0 ? xasprintf("%" PRId64 " %" PRId64, r->cpu_quota, period)
                                       : xasprintf("max %" PRId64, period),
                      false);
        }
    }
    const char *sets[][2] = {{"cpuset.cpus", r->cpuset_cpus}, {"cpuset.mems", r->cpuset_mems}};
    for (size_t i = 0; i < ARRAY_SIZE(sets); i++) {
        if (!sets[i][1] || !*sets[i][1])
            continue;
        if (need_dir(l, p, CGROUP_CPUSET, &dir, err) < 0)
            goto fail;
        plan_file(plan, dir, sets[i][0], xstrdup(sets[i][1]), false);
    }
    if (r->memory_limit_in_bytes || r->memory_swap_limit_in_bytes) {
        if (need_dir(l, p, CGROUP_MEMORY, &dir, err) < 0)
            goto fail;
        int64_t mem = r->memory_limit_in_bytes;
        /* As at create: no swap unless asked for. */
        int64_t memsw = r->memory_swap_limit_in_bytes ? r->memory_swap_limit_in_bytes : mem;
        if (l->v1[CGROUP_MEMORY]) {
            /* memory <= memory+swap at every moment: one of the two orders works. */
            if (mem)
                plan_file(plan, dir, "memory.limit_in_bytes", xasprintf("%" PRId64, mem), true);
            _cleanup_free_ char *sw = xasprintf("%s/memory.memsw.limit_in_bytes", dir);
            if (memsw && access(sw, F_OK) == 0)
                plan_add(plan, steal_ptr(&sw), xasprintf("%" PRId64, memsw), true);
        } else {
            if (mem)
                plan_file(plan, dir, "memory.max", xasprintf("%" PRId64, mem), false);
            _cleanup_free_ char *sw = xasprintf("%s/memory.swap.max", dir);
            if (mem && access(sw, F_OK) == 0)
                plan_add(plan, steal_ptr(&sw),
                         memsw < 0 ? xstrdup("max") : xasprintf("%" PRId64, memsw - mem), false);
        }
    }
    for (size_t i = 0; i < r->n_hugepage_limits; i++) {
        if (need_dir(l, p, CGROUP_HUGETLB, &dir, err) < 0)
            goto fail;
        const Runtime__V1__HugepageLimit *h = r->hugepage_limits[i];
        _cleanup_free_ char *file = xasprintf("hugetlb.%s.%s", h->page_size,
                                              l->v1[CGROUP_HUGETLB] ? "limit_in_bytes" : "max");
        plan_file(plan, dir, file, xasprintf("%" PRIu64, h->limit), false);
    }
    if (r->n_unified) {
        if (need_dir(l, p, CGROUP_N, &dir, err) < 0)
            goto fail;
        for (size_t i = 0; i < r->n_unified; i++)
            plan_file(plan, dir, r->unified[i]->key, xstrdup(r->unified[i]->value), false);
    }
    return 0;
fail:
    cgroup_plan_clear(plan);
    return -1;
}

void cgroup_plan_clear(struct cgroup_plan *plan)
{
    for (size_t i = 0; i < plan->n; i++) {
        free(plan->writes[i].path);
        free(plan->writes[i].value);
    }
    free(plan->writes);
    memset(plan, 0, sizeof(*plan));
}

/* One write; errno when it failed. */
static int write_one(const struct cgroup_write *w)
{
    int fd = open(w->path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno;
    size_t len = strlen(w->value);
    ssize_t n = write(fd, w->value, len);
    int e = n == (ssize_t)len ? 0 : n < 0 ? errno : EIO;
    close(fd);
    return e;
}

int cgroup_write_plan(const struct cgroup_plan *plan, char *msg, size_t msg_len)
{
    int failed_errno = 0;
    const struct cgroup_write *failed = NULL;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < plan->n; i++) {
            const struct cgroup_write *w = &plan->writes[i];
            /* The second pass retries what may have failed for ordering. */
            if (pass == 1 && !w->retry)
                continue;
            int e = write_one(w);
            if (e && (!w->retry || pass == 1) && !failed) {
                failed = w;
                failed_errno = e;
            }
        }
        if (failed)
            break;
    }
    if (!failed)
        return 0;
    snprintf(msg, msg_len, "%s = %s: %s", failed->path, failed->value, strerror(failed_errno));
    return -1;
}
