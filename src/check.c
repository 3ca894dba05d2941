/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tinycrid --check-config (see check.h for the lines it writes).
 *
 * It runs instead of the daemon, before any loop serves anything, so it may
 * wait: the runtimes' `--version` probes still go through child_spawn() for
 * their deadline and capped output. Directories are checked without being
 * created: a probe directory is made and removed in the nearest existing
 * one, which is what tinycrid's mkdir -p would need.
 */
#include "autoconf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "check.h"
#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "keeper/protocol.h"
#include "pod/cni.h"
#include "pod/runtime.h"

#define PROBE_TIMEOUT_MS 10000
#define PROBE_OUT_CAP 4096
#define MOUNTINFO_MAX (1024 * 1024)
#define MODULES_MAX (8 * 1024 * 1024)
#define LINE_MAX_CHARS 1024

struct report {
    FILE *out;
    size_t problems;
    size_t warnings;
};

/* One line, whatever the message holds: control characters become blanks. */
static void emit(FILE *out, const char *prefix, const char *area, const char *fmt, va_list ap)
{
    char text[LINE_MAX_CHARS];
    vsnprintf(text, sizeof(text), fmt, ap);
    for (char *p = text; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    }
    fprintf(out, "%s%s: %s\n", prefix, area, text);
}

__attribute__((format(printf, 3, 4))) static void problem(struct report *r, const char *area,
                                                          const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(r->out, "", area, fmt, ap);
    va_end(ap);
    r->problems++;
}

__attribute__((format(printf, 3, 4))) static void warning(struct report *r, const char *area,
                                                          const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(r->out, "warning: ", area, fmt, ap);
    va_end(ap);
    r->warnings++;
}

static char *read_text(const char *path, size_t cap)
{
    _cleanup_error_ struct error *tmp = NULL;
    return read_file_capped(path, cap, NULL, &tmp);
}

/* Is word one of the items of list, split at any of seps? */
static bool has_item(const char *list, const char *word, const char *seps)
{
    size_t n = strlen(word);
    for (const char *p = list; p && *p;) {
        size_t len = strcspn(p, seps);
        if (len == n && strncmp(p, word, n) == 0)
            return true;
        p += len;
        p += strspn(p, seps);
    }
    return false;
}

/* ---- cgroups ---- */

/* What kubelet and the OCI runtimes need to place and limit containers. */
static const char *const v1_needed[] = {"cpu",     "cpuacct", "cpuset", "memory",
                                        "devices", "freezer", "pids"};
static const char *const v2_needed[] = {"cpu", "cpuset", "memory", "pids"};

size_t check_cgroups(const char *mountinfo, const char *v2_controllers, enum cgroup_driver driver,
                     bool systemd_booted, const char **layout, FILE *out)
{
    struct report r = {.out = out};
    bool v2_root = false, unified = false, any_v1 = false;
    _cleanup_free_ char *v1 = xstrdup(""); /* super options of the v1 mounts, ','-joined */
    _cleanup_free_ char *copy = xstrdup(mountinfo ? mountinfo : "");
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *mnt, *fstype, *opts;
        if (!mountinfo_split(line, &mnt, &fstype, &opts))
            continue;
        if (strcmp(fstype, "cgroup2") == 0 && strcmp(mnt, "/sys/fs/cgroup") == 0)
            v2_root = true;
        else if (strcmp(fstype, "cgroup2") == 0 && strcmp(mnt, "/sys/fs/cgroup/unified") == 0)
            unified = true;
        else if (strcmp(fstype, "cgroup") == 0 && str_has_prefix(mnt, "/sys/fs/cgroup/")) {
            char *grown = xasprintf("%s,%s", v1, opts);
            free(v1);
            v1 = grown;
            any_v1 = true;
        }
    }
    const char *kind = NULL;
    if (v2_root) {
        kind = "v2";
        for (size_t i = 0; i < ARRAY_SIZE(v2_needed); i++) {
            if (!v2_controllers || !has_item(v2_controllers, v2_needed[i], " \t\n"))
                problem(&r, "cgroups",
                        "the cgroup v2 controller %s is not enabled in /sys/fs/cgroup (%s)",
                        v2_needed[i],
                        v2_controllers ? "not in cgroup.controllers"
                                       : "cgroup.controllers is unreadable");
        }
    } else if (any_v1) {
        kind = unified ? "hybrid" : "v1";
        for (size_t i = 0; i < ARRAY_SIZE(v1_needed); i++) {
            if (!has_item(v1, v1_needed[i], ","))
                problem(&r, "cgroups",
                        "the cgroup v1 controller %s is not mounted under /sys/fs/cgroup",
                        v1_needed[i]);
        }
    } else {
        problem(&r, "cgroups",
                "no cgroup filesystem is mounted at /sys/fs/cgroup (neither cgroup2 nor v1 "
                "controllers under it)");
    }
    if (driver == CGROUP_DRIVER_SYSTEMD && !systemd_booted)
        problem(&r, "cgroups",
                "cgroup_driver = systemd, but systemd is not the init system here (no "
                "/run/systemd/system); use cgroup_driver = cgroupfs, and the same in kubelet");
    if (layout)
        *layout = kind ? kind : "none";
    return r.problems;
}

/* ---- kernel ---- */

bool check_has_overlay(const char *filesystems, const char *modules)
{
    if (filesystems) {
        _cleanup_free_ char *copy = xstrdup(filesystems);
        char *save = NULL;
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            const char *name = strrchr(line, '\t');
            if (strcmp(name ? name + 1 : line, "overlay") == 0)
                return true;
        }
    }
    /* Not loaded yet: the kernel loads a module on the first mount. */
    return modules && (strstr(modules, "/overlay.ko") || strstr(modules, "\noverlay.ko"));
}

static void check_kernel(struct report *r)
{
    _cleanup_free_ char *fs = read_text("/proc/filesystems", 64 * 1024);
    if (check_has_overlay(fs, NULL))
        return;
    struct utsname u;
    memset(&u, 0, sizeof(u));
    _cleanup_free_ char *modules = NULL;
    if (uname(&u) == 0) {
        _cleanup_free_ char *builtin = xasprintf("/lib/modules/%s/modules.builtin", u.release);
        _cleanup_free_ char *dep = xasprintf("/lib/modules/%s/modules.dep", u.release);
        _cleanup_free_ char *a = read_text(builtin, MODULES_MAX);
        _cleanup_free_ char *b = read_text(dep, MODULES_MAX);
        modules = xasprintf("\n%s\n%s", a ? a : "", b ? b : "");
    }
    if (!check_has_overlay(NULL, modules))
        problem(r, "kernel",
                "no overlay filesystem: not in /proc/filesystems and no overlay module for "
                "kernel %s (container root filesystems are overlay mounts)",
                u.release);
}

/* ---- runtimes ---- */

struct probe {
    const struct config_runtime *rt;
    struct report *r;
    bool is_default;
    char *version; /* first line of --version; NULL: failed */
    size_t *running;
};

static void probe_report(struct probe *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void probe_report(struct probe *p, const char *fmt, ...)
{
    char text[LINE_MAX_CHARS];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    _cleanup_free_ char *area =
        xasprintf("runtime %s%s", p->rt->name, p->is_default ? " (default)" : "");
    if (p->is_default)
        problem(p->r, area, "%s", text);
    else
        warning(p->r, area, "%s", text);
}

static void on_probe_done(const struct child_result *res, void *arg)
{
    struct probe *p = arg;
    if (res->timed_out)
        probe_report(p, "%s --version did not answer within %d s", p->rt->path,
                     PROBE_TIMEOUT_MS / 1000);
    else if (!res->exited || res->exit_code != 0)
        probe_report(p, "%s --version failed (%s %d)%s%.*s", p->rt->path,
                     res->exited ? "status" : "signal",
                     res->exited ? res->exit_code : res->term_signal, res->err_len ? ": " : "",
                     (int)strcspn(res->err, "\n"), res->err);
    else
        p->version = xstrndup(res->out, strcspn(res->out, "\n"));
    if (--*p->running == 0)
        loop_exit();
}

/* The crun cgroup check runtime.c makes at start-up, with its wording. */
static void check_crun_layout(struct probe *p, const char *mountinfo)
{
    const char *base = strrchr(p->rt->path, '/');
    bool is_crun =
        str_has_prefix(p->version, "crun") || str_has_prefix(base ? base + 1 : p->rt->path, "crun");
    if (!is_crun)
        return;
    _cleanup_free_ char *controllers = read_text("/sys/fs/cgroup/unified/cgroup.controllers", 4096);
    _cleanup_free_ char *missing = runtime_hybrid_missing_controller(mountinfo, controllers);
    if (!missing)
        return;
    const char *ver =
        str_has_prefix(p->version, "crun version ") ? p->version + strlen("crun version ") : NULL;
    probe_report(p,
                 "crun%s%s cannot run with cgroups in hybrid mode: the %s controller is only on "
                 "cgroup2; mount it on v1 or use runc",
                 ver ? " " : "", ver ? ver : "", missing);
}

static void check_runtimes(struct report *r, const struct config *cfg, const char *mountinfo,
                           char *summary, size_t summary_len)
{
    struct probe probes[CONFIG_MAX_RUNTIMES];
    size_t running = 0;
    const struct config_runtime *def = config_find_runtime(cfg, "");
    for (size_t i = 0; i < cfg->n_runtimes; i++) {
        struct probe *p = &probes[i];
        *p = (struct probe){.rt = &cfg->runtimes[i], .r = r, .running = &running};
        p->is_default = p->rt == def;
        if (access(p->rt->path, X_OK) < 0) {
            probe_report(p, "%s: %s", p->rt->path, strerror(errno));
            continue;
        }
        char *argv[] = {p->rt->path, (char *)"--version", NULL};
        struct child_opts o = {
            .argv = argv, .timeout_ms = PROBE_TIMEOUT_MS, .out_cap = PROBE_OUT_CAP};
        _cleanup_error_ struct error *e = NULL;
        if (child_spawn(&o, on_probe_done, p, &e))
            running++;
        else
            probe_report(p, "%s --version: %s", p->rt->path, e->msg);
    }
    if (running > 0)
        loop_run();
    size_t used = 0;
    for (size_t i = 0; i < cfg->n_runtimes; i++) {
        struct probe *p = &probes[i];
        if (!p->version)
            continue;
        check_crun_layout(p, mountinfo);
        int n = snprintf(summary + used, summary_len - used, "%s%s (%s)", used ? ", " : "",
                         p->rt->name, p->version);
        if (n > 0 && (size_t)n < summary_len - used)
            used += (size_t)n;
        free(p->version);
    }
}

/* ---- directories ---- */

/* Can a directory be made (and removed) in dir? 0, or an errno. */
static int probe_writable(const char *dir)
{
    _cleanup_free_ char *tmpl = xasprintf("%s/.tinycri-check-XXXXXX", dir);
    if (!mkdtemp(tmpl))
        return errno;
    rmdir(tmpl);
    return 0;
}

/*
 * A directory tinycrid makes (mkdir -p) and writes to. tinycrid sets root_dir,
 * state_dir and the socket's directory to 0700 at start-up, and refuses to
 * start when one is a symlink or belongs to another user.
 */
static void check_dir(struct report *r, const char *area, const char *path)
{
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
        problem(r, area, "%s is a symlink: tinycrid wants a directory of its own there", path);
        return;
    }
    if (stat(path, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            problem(r, area, "%s exists and is not a directory", path);
            return;
        }
        if (st.st_uid != geteuid())
            problem(r, area,
                    "%s is owned by uid %u, not by tinycrid's uid %u: that user could change "
                    "what tinycrid keeps there",
                    path, (unsigned)st.st_uid, (unsigned)geteuid());
        int e = probe_writable(path);
        if (e)
            problem(r, area, "%s is not writable: %s", path, strerror(e));
        return;
    }
    if (errno != ENOENT && errno != ENOTDIR) {
        problem(r, area, "%s: %s", path, strerror(errno));
        return;
    }
    /* Missing: tinycrid would create it under the nearest directory that exists. */
    _cleanup_free_ char *up = xstrdup(path);
    for (;;) {
        char *slash = strrchr(up, '/');
        if (!slash)
            return;
        if (slash == up)
            slash[1] = '\0';
        else
            *slash = '\0';
        if (stat(up, &st) == 0)
            break;
        if (errno != ENOENT && errno != ENOTDIR) {
            problem(r, area, "%s cannot be created: %s: %s", path, up, strerror(errno));
            return;
        }
        if (strcmp(up, "/") == 0)
            return;
    }
    if (!S_ISDIR(st.st_mode)) {
        problem(r, area, "%s cannot be created: %s is not a directory", path, up);
        return;
    }
    int e = probe_writable(up);
    if (e)
        problem(r, area, "%s cannot be created in %s: %s", path, up, strerror(e));
}

static void check_socket(struct report *r, const char *path)
{
    static const char *const shared[] = {"/", "/run", "/var/run", "/tmp", "/var/tmp", "/dev/shm"};
    _cleanup_free_ char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        slash[slash == dir ? 1 : 0] = '\0';
        bool is_shared = false;
        for (size_t i = 0; i < ARRAY_SIZE(shared); i++)
            is_shared = is_shared || strcmp(dir, shared[i]) == 0;
        if (is_shared)
            problem(r, "socket",
                    "%s: the socket needs a directory of its own (tinycrid makes it 0700), not %s",
                    path, dir);
        else
            check_dir(r, "socket", dir);
    }
    struct stat st;
    if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
        problem(r, "socket", "%s exists and is not a socket", path);
}

/* ---- all of it ---- */

int check_run(const struct config *cfg, FILE *out)
{
    struct report r = {.out = out};
    _cleanup_error_ struct error *err = NULL;
    if (loop_init(&err) < 0) {
        problem(&r, "tinycrid", "%s", err->msg);
        return 1;
    }
    _cleanup_free_ char *mountinfo = read_text("/proc/self/mountinfo", MOUNTINFO_MAX);

    char runtimes[512] = "";
    check_runtimes(&r, cfg, mountinfo, runtimes, sizeof(runtimes));

    _cleanup_free_ char *keeper = libexec_path(KEEPER_BINARY, KEEPER_BINARY_ENV);
    if (access(keeper, X_OK) < 0)
        problem(&r, "keeper", "%s: %s (containers cannot be created without it)", keeper,
                strerror(errno));

    struct cni_network net;
    char network[256] = "";
    if (cni_network_load(cfg, &net, &err) < 0) {
        problem(&r, "cni", "%s", err->msg);
        error_clear(&err);
    } else {
        snprintf(network, sizeof(network), "%s (%s)", net.name, net.path);
        cni_network_clear(&net);
    }

    const char *layout = "none";
    _cleanup_free_ char *v2 = read_text("/sys/fs/cgroup/cgroup.controllers", 4096);
    bool systemd_booted = access("/run/systemd/system", F_OK) == 0;
    r.problems += check_cgroups(mountinfo, v2, cfg->cgroup_driver, systemd_booted, &layout, out);

    check_kernel(&r);

    check_dir(&r, "root_dir", cfg->root_dir);
    check_dir(&r, "state_dir", cfg->state_dir);
    check_socket(&r, cfg->socket_path);

    loop_shutdown();
    if (r.problems > 0)
        return 1;
    fprintf(out,
            "ok: config %s; runtimes %s; keeper %s; CNI network %s; cgroup %s, driver %s; "
            "root_dir %s; state_dir %s; socket %s\n",
            cfg->file ? cfg->file : "(built-in defaults)", runtimes, keeper, network, layout,
            cfg->cgroup_driver == CGROUP_DRIVER_SYSTEMD ? "systemd" : "cgroupfs", cfg->root_dir,
            cfg->state_dir, cfg->socket_path);
    return 0;
}
