/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Building a container's OCI config.json from the CRI request, the sandbox
 * and the image. Everything from outside is validated on the way: strings
 * must be UTF-8, paths absolute, numbers in range, names known. The image's
 * /etc/passwd and /etc/group are read through openat2(RESOLVE_IN_ROOT) so an
 * image cannot point them at the host's files.
 */
#include "autoconf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <linux/capability.h>
#include <linux/openat2.h>

#include "core/error.h"
#include "core/log.h"
#include "core/path.h"
#include "core/util.h"
#include "pod/cgroup.h"
#include "pod/oci_internal.h"
#include "pod/oci_spec.h"
#include "pod/sandbox.h"
#include "pod/seccomp_default.h"

#define DEFAULT_PATH_ENV "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define MAX_CAP 40 /* CAP_CHECKPOINT_RESTORE, the last one we have a name for */

bool oci_is_set(const char *s)
{
    return s && *s;
}

/* ------------------------------------------------------------------------ */
/* Small JSON helpers that turn invalid UTF-8 into INVALID_ARGUMENT.        */

static json_t *str_new(const char *s, const char *what, struct error **err)
{
    json_t *v = json_string(s ? s : "");
    if (!v)
        error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s is not valid UTF-8", what);
    return v;
}

int oci_set_str(json_t *o, const char *key, const char *s, const char *what, struct error **err)
{
    json_t *v = str_new(s, what, err);
    if (!v)
        return -1;
    json_object_set_new(o, key, v);
    return 0;
}

static int append_str(json_t *a, const char *s, const char *what, struct error **err)
{
    json_t *v = str_new(s, what, err);
    if (!v)
        return -1;
    json_array_append_new(a, v);
    return 0;
}

json_t *oci_str_array(const char *const *v)
{
    json_t *a = json_array();
    for (size_t i = 0; v[i]; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

void oci_strv_push(struct strv *s, char *p)
{
    if (s->n == s->alloc) {
        s->alloc = s->alloc ? s->alloc * 2 : 16;
        s->v = xrealloc(s->v, s->alloc * sizeof(*s->v));
    }
    s->v[s->n++] = p;
}

void oci_strv_clear(struct strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

/* ------------------------------------------------------------------------ */
/* Paths                                                                    */

/* Lexically clean an absolute path like Go's filepath.Clean ("/a//b/../c" → "/a/c"). */
char *oci_path_clean(const char *p)
{
    size_t len = strlen(p);
    char *out = xmalloc(len + 2);
    size_t o = 0;
    out[o++] = '/';
    const char *s = p;
    while (*s) {
        while (*s == '/')
            s++;
        if (!*s)
            break;
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 1 && s[0] == '.') {
            /* skip */
        } else if (n == 2 && s[0] == '.' && s[1] == '.') {
            while (o > 1 && out[o - 1] != '/')
                o--;
            if (o > 1)
                o--;
        } else {
            if (o > 1)
                out[o++] = '/';
            memcpy(out + o, s, n);
            o += n;
        }
        s += n;
    }
    out[o] = '\0';
    return out;
}

size_t oci_path_depth(const char *clean)
{
    size_t n = 1;
    for (const char *s = clean + 1; *s; s++)
        if (*s == '/')
            n++;
    return n;
}

char *oci_spec_volume_name(const char *container_path, struct error **err)
{
    if (!container_path || container_path[0] != '/')
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "volume path %s is not absolute",
                         container_path ? container_path : "(null)"),
               NULL;
    if (path_has_dotdot(container_path))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "volume path %s has a \"..\"",
                         container_path),
               NULL;
    _cleanup_free_ char *clean = oci_path_clean(container_path);
    if (strcmp(clean, "/") == 0)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "volume path %s is the root",
                         container_path),
               NULL;
    static const char hex[] = "0123456789abcdef";
    char *out = xmalloc(strlen(clean) * 3 + 1);
    size_t o = 0;
    for (const unsigned char *s = (const unsigned char *)clean + 1; *s; s++) {
        if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
            *s == '.' || *s == '-') {
            out[o++] = (char)*s;
        } else if (*s == '/') {
            out[o++] = '_';
        } else {
            out[o++] = '%';
            out[o++] = hex[*s >> 4];
            out[o++] = hex[*s & 15];
        }
    }
    out[o] = '\0';
    if (o > NAME_MAX) {
        free(out);
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "volume path %s is too long",
                         container_path),
               NULL;
    }
    return out;
}

char *oci_spec_cgroups_path(const char *parent, const char *id, bool systemd, struct error **err)
{
    if (!oci_is_set(id) || strchr(id, '/') || strchr(id, ':'))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "invalid container id for a cgroup"), NULL;
    if (oci_is_set(parent) && path_has_dotdot(parent))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "cgroup parent %s has a \"..\"", parent),
               NULL;
    if (systemd) {
        if (!oci_is_set(parent))
            return xasprintf("system.slice:tinycri:%s", id);
        _cleanup_free_ char *clean = oci_path_clean(parent);
        const char *base = strrchr(clean, '/') + 1;
        if (!str_has_suffix(base, ".slice"))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "cgroup parent %s is not a systemd slice", parent),
                   NULL;
        return xasprintf("%s:tinycri:%s", base, id);
    }
    if (!oci_is_set(parent))
        return xasprintf("/tinycri/%s", id);
    _cleanup_free_ char *clean = oci_path_clean(parent);
    return xasprintf("%s/%s", strcmp(clean, "/") == 0 ? "" : clean, id);
}

/* ------------------------------------------------------------------------ */
/* Image config                                                             */

/* The object holding Entrypoint, Cmd, Env...: the "config" member or the document itself. */
const json_t *oci_image_cfg(const json_t *doc)
{
    if (!json_is_object(doc))
        return NULL;
    const json_t *c = json_object_get(doc, "config");
    return json_is_object(c) ? c : doc;
}

/* A list of strings from the image config: NULL when absent or null. */
static int image_str_list(const json_t *cfg, const char *key, const json_t **out,
                          struct error **err)
{
    *out = NULL;
    const json_t *v = cfg ? json_object_get(cfg, key) : NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "image config %s is not a list", key);
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "image config %s has a non-string entry", key);
    }
    *out = v;
    return 0;
}

static const char *image_str(const json_t *cfg, const char *key)
{
    const char *s = cfg ? json_string_value(json_object_get(cfg, key)) : NULL;
    return s ? s : "";
}

json_t *oci_spec_process_args(const Runtime__V1__ContainerConfig *ctr, const json_t *image_config,
                              struct error **err)
{
    const json_t *cfg = oci_image_cfg(image_config);
    const json_t *entrypoint, *cmd;
    if (image_str_list(cfg, "Entrypoint", &entrypoint, err) < 0 ||
        image_str_list(cfg, "Cmd", &cmd, err) < 0)
        return NULL;
    _cleanup_json_ json_t *args = json_array();
    if (ctr->n_command > 0) {
        for (size_t i = 0; i < ctr->n_command; i++)
            if (append_str(args, ctr->command[i], "command", err) < 0)
                return NULL;
    } else {
        bool empty_entrypoint =
            json_array_size(entrypoint) == 1 && !*json_string_value(json_array_get(entrypoint, 0));
        if (entrypoint && !empty_entrypoint)
            json_array_extend(args, (json_t *)entrypoint);
        if (ctr->n_args == 0 && cmd)
            json_array_extend(args, (json_t *)cmd);
    }
    for (size_t i = 0; i < ctr->n_args; i++)
        if (append_str(args, ctr->args[i], "args", err) < 0)
            return NULL;
    if (json_array_size(args) == 0 || !*json_string_value(json_array_get(args, 0)))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "no command specified"), NULL;
    return steal_ptr(&args);
}

/* ------------------------------------------------------------------------ */
/* The builder                                                              */

static void build_clear(struct build *b)
{
    for (size_t i = 0; i < b->n_mounts; i++) {
        free(b->mounts[i].dst);
        json_decref(b->mounts[i].obj);
    }
    free(b->mounts);
    json_decref(b->spec);
}

/* The mode a NamespaceOption gives one namespace; absent options mean POD (the CRI default). */
static Runtime__V1__NamespaceMode mode_of(const Runtime__V1__NamespaceOption *o, int which)
{
    if (!o)
        return RUNTIME__V1__NAMESPACE_MODE__POD;
    switch (which) {
    case NS_NET:
        return o->network;
    case NS_IPC:
        return o->ipc;
    default:
        return o->pid;
    }
}

static const Runtime__V1__NamespaceOption *pod_ns_options(const Runtime__V1__PodSandboxConfig *pod)
{
    const Runtime__V1__LinuxPodSandboxConfig *pl = pod->linux;
    return pl && pl->security_context ? pl->security_context->namespace_options : NULL;
}

static bool detect_cgroup_v2(enum oci_spec_tristate t)
{
    if (t != OCI_SPEC_DETECT)
        return t == OCI_SPEC_YES;
    return access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
}

/* As runc's apparmor.IsEnabled(): the module says Y. */
static bool detect_apparmor(enum oci_spec_tristate t)
{
    if (t != OCI_SPEC_DETECT)
        return t == OCI_SPEC_YES;
    char c = 0;
    _cleanup_close_ int fd = open("/sys/module/apparmor/parameters/enabled", O_RDONLY | O_CLOEXEC);
    return fd >= 0 && read(fd, &c, 1) == 1 && c == 'Y';
}

/* As libselinux's is_selinux_enabled(): selinuxfs is mounted. */
static bool detect_selinux(enum oci_spec_tristate t)
{
    if (t != OCI_SPEC_DETECT)
        return t == OCI_SPEC_YES;
    return access("/sys/fs/selinux/enforce", F_OK) == 0;
}

/*
 * The capabilities "ALL" and privileged mean: those the daemon holds itself
 * (CapEff of /proc/self/status), as containerd does. A runtime cannot grant
 * more, and asking for more makes it fail.
 */
static uint64_t detect_caps(uint64_t pinned)
{
    uint64_t known = ((uint64_t)1 << (MAX_CAP + 1)) - 1;
    if (pinned)
        return pinned & known;
    struct error *tmp = NULL;
    _cleanup_free_ char *text = read_file_capped("/proc/self/status", 64 * 1024, NULL, &tmp);
    const char *line = text ? strstr(text, "\nCapEff:") : NULL;
    if (!line) {
        log_debug("no CapEff in /proc/self/status, assuming every capability: %s",
                  tmp ? tmp->msg : "not found");
        error_free(tmp);
        return known;
    }
    return strtoull(line + strlen("\nCapEff:"), NULL, 16) & known;
}

/* --- process --- */

#define CAP_NAME(n) [CAP_##n] = #n
static const char *const cap_names[MAX_CAP + 1] = {
    CAP_NAME(CHOWN),
    CAP_NAME(DAC_OVERRIDE),
    CAP_NAME(DAC_READ_SEARCH),
    CAP_NAME(FOWNER),
    CAP_NAME(FSETID),
    CAP_NAME(KILL),
    CAP_NAME(SETGID),
    CAP_NAME(SETUID),
    CAP_NAME(SETPCAP),
    CAP_NAME(LINUX_IMMUTABLE),
    CAP_NAME(NET_BIND_SERVICE),
    CAP_NAME(NET_BROADCAST),
    CAP_NAME(NET_ADMIN),
    CAP_NAME(NET_RAW),
    CAP_NAME(IPC_LOCK),
    CAP_NAME(IPC_OWNER),
    CAP_NAME(SYS_MODULE),
    CAP_NAME(SYS_RAWIO),
    CAP_NAME(SYS_CHROOT),
    CAP_NAME(SYS_PTRACE),
    CAP_NAME(SYS_PACCT),
    CAP_NAME(SYS_ADMIN),
    CAP_NAME(SYS_BOOT),
    CAP_NAME(SYS_NICE),
    CAP_NAME(SYS_RESOURCE),
    CAP_NAME(SYS_TIME),
    CAP_NAME(SYS_TTY_CONFIG),
    CAP_NAME(MKNOD),
    CAP_NAME(LEASE),
    CAP_NAME(AUDIT_WRITE),
    CAP_NAME(AUDIT_CONTROL),
    CAP_NAME(SETFCAP),
    CAP_NAME(MAC_OVERRIDE),
    CAP_NAME(MAC_ADMIN),
    CAP_NAME(SYSLOG),
    CAP_NAME(WAKE_ALARM),
    CAP_NAME(BLOCK_SUSPEND),
    CAP_NAME(AUDIT_READ),
    CAP_NAME(PERFMON),
    CAP_NAME(BPF),
    CAP_NAME(CHECKPOINT_RESTORE),
};
_Static_assert(CAP_CHECKPOINT_RESTORE == MAX_CAP, "cap_names must cover every capability");

/* containerd's default set. */
static const int default_caps[] = {
    CAP_CHOWN,   CAP_DAC_OVERRIDE, CAP_FSETID,           CAP_FOWNER,
    CAP_MKNOD,   CAP_NET_RAW,      CAP_SETGID,           CAP_SETUID,
    CAP_SETFCAP, CAP_SETPCAP,      CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT,
    CAP_KILL,    CAP_AUDIT_WRITE,
};

int oci_spec_capability(const char *name)
{
    if (!name)
        return -1;
    if (strncasecmp(name, "CAP_", 4) == 0)
        name += 4;
    for (int i = 0; i <= MAX_CAP; i++)
        if (strcasecmp(name, cap_names[i]) == 0)
            return i;
    return -1;
}

static bool is_all(const char *s)
{
    return strcasecmp(s, "ALL") == 0;
}

static int cap_list(char *const *names, size_t n, bool allow_all, uint64_t *mask,
                    struct error **err)
{
    *mask = 0;
    for (size_t i = 0; i < n; i++) {
        if (allow_all && is_all(names[i]))
            continue;
        int c = oci_spec_capability(names[i]);
        if (c < 0)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "unknown capability \"%s\"", names[i]);
        *mask |= (uint64_t)1 << c;
    }
    return 0;
}

static bool list_has_all(char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (is_all(names[i]))
            return true;
    return false;
}

static int compute_caps(struct build *b, struct error **err)
{
    uint64_t all = b->host_caps;
    const Runtime__V1__Capability *cap = b->sc ? b->sc->capabilities : NULL;
    uint64_t add = 0, drop = 0, ambient = 0;
    if (cap) {
        /* Validate every name, even when privileged ignores add/drop. */
        if (cap_list(cap->add_capabilities, cap->n_add_capabilities, true, &add, err) < 0 ||
            cap_list(cap->drop_capabilities, cap->n_drop_capabilities, true, &drop, err) < 0 ||
            cap_list(cap->add_ambient_capabilities, cap->n_add_ambient_capabilities, false,
                     &ambient, err) < 0)
            return -1;
    }
    if (b->privileged) {
        b->caps = all;
        return 0;
    }
    uint64_t caps = 0;
    for (size_t i = 0; i < ARRAY_SIZE(default_caps); i++)
        caps |= (uint64_t)1 << default_caps[i];
    if (cap) {
        /* "ALL" first, so that individual entries still refine it (containerd's order). */
        if (list_has_all(cap->add_capabilities, cap->n_add_capabilities))
            caps = all;
        if (list_has_all(cap->drop_capabilities, cap->n_drop_capabilities))
            caps = 0;
        caps |= add | ambient;
        caps &= ~drop;
        ambient &= ~drop;
    }
    b->caps = caps;
    b->ambient = ambient;
    return 0;
}

static json_t *caps_json(uint64_t mask)
{
    json_t *a = json_array();
    for (int i = 0; i <= MAX_CAP; i++) {
        if (mask & ((uint64_t)1 << i)) {
            _cleanup_free_ char *n = xasprintf("CAP_%s", cap_names[i]);
            json_array_append_new(a, json_string(n));
        }
    }
    return a;
}

/* Set or replace "KEY=VALUE" by key; a bare "KEY" removes it (Docker's rules). */
static void env_set(struct strv *env, const char *kv)
{
    const char *eq = strchr(kv, '=');
    size_t klen = eq ? (size_t)(eq - kv) : strlen(kv);
    for (size_t i = 0; i < env->n; i++) {
        if (env->v[i] && strncmp(env->v[i], kv, klen) == 0 &&
            (env->v[i][klen] == '=' || env->v[i][klen] == '\0')) {
            free(env->v[i]);
            env->v[i] = eq ? xstrdup(kv) : NULL;
            return;
        }
    }
    if (eq)
        oci_strv_push(env, xstrdup(kv));
}

static int build_env(struct build *b, struct error **err)
{
    _cleanup_strv_ struct strv env = {0};
    oci_strv_push(&env, xstrdup(DEFAULT_PATH_ENV));

    const Runtime__V1__PodSandboxConfig *pod = b->in->pod;
    char host[HOST_NAME_MAX + 1] = "";
    const char *hostname = pod->hostname;
    if (!oci_is_set(hostname))
        hostname = b->in->host.hostname;
    if (!oci_is_set(hostname)) {
        if (gethostname(host, sizeof(host)) < 0)
            return error_set(err, GRPC_INTERNAL, errno, "gethostname");
        host[sizeof(host) - 1] = '\0';
        hostname = host;
    }
    _cleanup_free_ char *hn = xasprintf("HOSTNAME=%s", hostname);
    env_set(&env, hn);

    const json_t *image_env;
    if (image_str_list(b->img, "Env", &image_env, err) < 0)
        return -1;
    size_t i;
    const json_t *e;
    json_array_foreach(image_env, i, e)
    {
        if (*json_string_value(e))
            env_set(&env, json_string_value(e));
    }

    for (i = 0; i < b->ctr->n_envs; i++) {
        const Runtime__V1__KeyValue *kv = b->ctr->envs[i];
        if (!oci_is_set(kv->key) || strchr(kv->key, '='))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "invalid environment variable name \"%s\"", kv->key ? kv->key : "");
        if (kv->value.len && memchr(kv->value.data, '\0', kv->value.len))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "environment variable %s has a NUL byte", kv->key);
        /* An empty bytes field may come with a NULL data pointer. */
        _cleanup_free_ char *val =
            kv->value.len ? xstrndup((const char *)kv->value.data, kv->value.len) : xstrdup("");
        _cleanup_free_ char *s = xasprintf("%s=%s", kv->key, val);
        env_set(&env, s);
    }

    json_t *arr = json_array();
    json_object_set_new(b->process, "env", arr);
    for (i = 0; i < env.n; i++)
        if (env.v[i] && append_str(arr, env.v[i], "environment variable", err) < 0)
            return -1;
    return 0;
}

static int check_id(const Runtime__V1__Int64Value *v, const char *what, struct error **err)
{
    if (v && (v->value < 0 || v->value >= (int64_t)UINT32_MAX))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s %lld is out of range", what,
                         (long long)v->value);
    return 0;
}

static int build_user(struct build *b, struct error **err)
{
    const Runtime__V1__LinuxContainerSecurityContext *sc = b->sc;
    _cleanup_free_ char *userstr = NULL;
    bool merge = true;
    if (sc) {
        if (check_id(sc->run_as_user, "run_as_user", err) < 0 ||
            check_id(sc->run_as_group, "run_as_group", err) < 0)
            return -1;
        if (oci_is_set(sc->run_as_username))
            userstr = xstrdup(sc->run_as_username);
        else if (sc->run_as_user)
            userstr = xasprintf("%lld", (long long)sc->run_as_user->value);
        if (sc->run_as_group) {
            if (!userstr)
                return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                                 "run_as_group needs run_as_user or run_as_username");
            char *both = xasprintf("%s:%lld", userstr, (long long)sc->run_as_group->value);
            free(userstr);
            userstr = both;
        }
        merge = sc->supplemental_groups_policy != RUNTIME__V1__SUPPLEMENTAL_GROUPS_POLICY__Strict;
    }
    if (!userstr && *image_str(b->img, "User"))
        userstr = xstrdup(image_str(b->img, "User"));

    struct oci_spec_user u __attribute__((cleanup(oci_spec_user_clear)));
    if (oci_spec_resolve_user(b->in->rootfs, userstr ? userstr : "0", merge, &u, err) < 0)
        return -1;
    if (sc) {
        for (size_t i = 0; i < sc->n_supplemental_groups; i++) {
            int64_t g = sc->supplemental_groups[i];
            if (g < 0 || g >= (int64_t)UINT32_MAX)
                return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                                 "supplemental group %lld is out of range", (long long)g);
            oci_user_add_gid(&u, (uint32_t)g);
        }
    }
    json_t *user = json_object();
    json_object_set_new(b->process, "user", user);
    json_object_set_new(user, "uid", json_integer(u.uid));
    json_object_set_new(user, "gid", json_integer(u.gid));
    json_t *gids = json_array();
    for (size_t i = 0; i < u.n_additional_gids; i++)
        json_array_append_new(gids, json_integer(u.additional_gids[i]));
    json_object_set_new(user, "additionalGids", gids);
    return 0;
}

static int build_process(struct build *b, struct error **err)
{
    b->process = json_object();
    json_object_set_new(b->spec, "process", b->process);
    if (b->ctr->tty)
        json_object_set_new(b->process, "terminal", json_true());

    if (build_user(b, err) < 0)
        return -1;
    json_t *args = oci_spec_process_args(b->ctr, b->in->image_config, err);
    if (!args)
        return -1;
    json_object_set_new(b->process, "args", args);
    if (build_env(b, err) < 0)
        return -1;

    const char *cwd = b->ctr->working_dir;
    if (!oci_is_set(cwd))
        cwd = image_str(b->img, "WorkingDir");
    if (!*cwd)
        cwd = "/";
    if (cwd[0] != '/')
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "working directory %s is not absolute",
                         cwd);
    if (oci_set_str(b->process, "cwd", cwd, "working directory", err) < 0)
        return -1;

    json_t *caps = json_object();
    json_object_set_new(b->process, "capabilities", caps);
    json_object_set_new(caps, "bounding", caps_json(b->caps));
    json_object_set_new(caps, "effective", caps_json(b->caps));
    json_object_set_new(caps, "permitted", caps_json(b->caps));
    if (b->ambient) {
        json_object_set_new(caps, "inheritable", caps_json(b->ambient));
        json_object_set_new(caps, "ambient", caps_json(b->ambient));
    }

    if (b->sc && b->sc->no_new_privs)
        json_object_set_new(b->process, "noNewPrivileges", json_true());

    if (b->res) {
        int64_t adj = b->res->oom_score_adj;
        if (adj < -1000 || adj > 1000)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "oom_score_adj %lld is out of range",
                             (long long)adj);
        if (adj >= 0)
            json_object_set_new(b->process, "oomScoreAdj", json_integer(adj));
    }
    return 0;
}

/* --- resources --- */

/*
 * What the kernel accepts (CFS bandwidth: period 1 ms to 1 s, quota at least
 * 1 ms or -1 for none) and the smallest memory limit a runtime can start a
 * container in (Docker's minimum, 6 MiB): beyond these the runtime fails
 * half-way through its create, after making the container's cgroups.
 */
#define MEMORY_LIMIT_MIN (6 * 1024 * 1024)
#define CPUS_ONLINE_MAX 4096 /* bytes of /sys/devices/system/cpu/online read */

static bool valid_cpuset(const char *s)
{
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || *s == ',' || *s == '-'))
            return false;
    return true;
}

/* The highest CPU number in a cpuset list ("0-3,8"), or -1 when it is not one. */
static long cpuset_max(const char *s)
{
    long max = -1;
    while (*s) {
        char *end = NULL;
        errno = 0;
        long lo = strtol(s, &end, 10), hi = lo;
        if (end == s || errno != 0 || lo < 0)
            return -1;
        s = end;
        if (*s == '-') {
            hi = strtol(s + 1, &end, 10);
            if (end == s + 1 || errno != 0 || hi < lo)
                return -1;
            s = end;
        }
        if (*s == ',')
            s++;
        else if (*s != '\0' && *s != '\n')
            return -1;
        else if (*s == '\n')
            s++;
        if (hi > max)
            max = hi;
    }
    return max;
}

/* CPUs 0..n-1 exist (online) on this host; 0 when that cannot be read. */
static unsigned detect_n_cpus(unsigned given)
{
    if (given)
        return given;
    _cleanup_error_ struct error *tmp = NULL;
    _cleanup_free_ char *online =
        read_file_capped("/sys/devices/system/cpu/online", CPUS_ONLINE_MAX, NULL, &tmp);
    long max = online ? cpuset_max(online) : -1;
    return max < 0 ? 0 : (unsigned)max + 1;
}

/*
 * Values the kernel or the runtime would refuse after the cgroups exist,
 * refused here. n_cpus: the host's (0: read it); unified_ok: whether the
 * host's cgroups can take unified resources (cgroup v2).
 */
static int check_resources(const Runtime__V1__LinuxContainerResources *r, unsigned n_cpus,
                           bool unified_ok, struct error **err)
{
    /* What UpdateContainerResources refuses too (ranges, lists, unified names)... */
    if (cgroup_resources_check(r, err) < 0)
        return -1;
    /* ... and what only a new container's cgroups would refuse. */
    if (r->memory_limit_in_bytes > 0 && r->memory_limit_in_bytes < MEMORY_LIMIT_MIN)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "memory_limit_in_bytes %" PRId64 " is below the minimum of %d (6 MiB)",
                         r->memory_limit_in_bytes, MEMORY_LIMIT_MIN);
    if (oci_is_set(r->cpuset_cpus) && valid_cpuset(r->cpuset_cpus)) {
        long max = cpuset_max(r->cpuset_cpus);
        unsigned n = detect_n_cpus(n_cpus);
        if (max < 0)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "invalid cpuset_cpus \"%s\"",
                             r->cpuset_cpus);
        if (n > 0 && (unsigned long)max >= n)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "cpuset_cpus \"%s\" names CPU %ld; this host has CPUs 0-%u",
                             r->cpuset_cpus, max, n - 1);
    }
    if (r->n_unified && !unified_ok)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "unified resources need cgroup v2; this host uses cgroup v1");
    return 0;
}

/* Set the OCI linux.resources keys for r (cpu, memory, hugepageLimits, unified) in res. */
static int resources_into(json_t *res, const Runtime__V1__LinuxContainerResources *r,
                          struct error **err)
{
    if (r->cpu_shares < 0 || r->cpu_period < 0 || r->memory_limit_in_bytes < 0 ||
        r->memory_swap_limit_in_bytes < -1)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "negative resource limit");
    json_t *cpu = json_object();
    if (r->cpu_shares)
        json_object_set_new(cpu, "shares", json_integer(r->cpu_shares));
    if (r->cpu_quota)
        json_object_set_new(cpu, "quota", json_integer(r->cpu_quota));
    if (r->cpu_period)
        json_object_set_new(cpu, "period", json_integer(r->cpu_period));
    const char *sets[][2] = {{"cpus", r->cpuset_cpus}, {"mems", r->cpuset_mems}};
    for (size_t i = 0; i < ARRAY_SIZE(sets); i++) {
        if (!oci_is_set(sets[i][1]))
            continue;
        if (!valid_cpuset(sets[i][1])) {
            json_decref(cpu);
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "invalid cpuset \"%s\"", sets[i][1]);
        }
        json_object_set_new(cpu, sets[i][0], json_string(sets[i][1]));
    }
    if (json_object_size(cpu))
        json_object_set_new(res, "cpu", cpu);
    else
        json_decref(cpu);

    json_t *mem = json_object();
    if (r->memory_limit_in_bytes) {
        json_object_set_new(mem, "limit", json_integer(r->memory_limit_in_bytes));
        /* No swap unless asked for: memory+swap equals the memory limit. */
        json_object_set_new(mem, "swap", json_integer(r->memory_limit_in_bytes));
    }
    if (r->memory_swap_limit_in_bytes)
        json_object_set_new(mem, "swap", json_integer(r->memory_swap_limit_in_bytes));
    if (json_object_size(mem))
        json_object_set_new(res, "memory", mem);
    else
        json_decref(mem);

    if (r->n_hugepage_limits) {
        json_t *hp = json_array();
        json_object_set_new(res, "hugepageLimits", hp);
        for (size_t i = 0; i < r->n_hugepage_limits; i++) {
            const Runtime__V1__HugepageLimit *h = r->hugepage_limits[i];
            if (!oci_is_set(h->page_size) ||
                strspn(h->page_size, "0123456789KMGBkmgb") != strlen(h->page_size) ||
                h->limit > INT64_MAX)
                return error_set(err, GRPC_INVALID_ARGUMENT, 0, "invalid hugepage limit");
            json_t *o = json_object();
            json_object_set_new(o, "pageSize", json_string(h->page_size));
            json_object_set_new(o, "limit", json_integer((json_int_t)h->limit));
            json_array_append_new(hp, o);
        }
    }
    if (r->n_unified) {
        json_t *u = json_object();
        json_object_set_new(res, "unified", u);
        for (size_t i = 0; i < r->n_unified; i++) {
            const char *k = r->unified[i]->key, *v = r->unified[i]->value;
            if (!oci_is_set(k) || strchr(k, '/') || k[0] == '.')
                return error_set(err, GRPC_INVALID_ARGUMENT, 0, "invalid unified key \"%s\"",
                                 k ? k : "");
            json_t *jv = str_new(v, "unified value", err);
            if (!jv)
                return -1;
            if (json_object_set_new(u, k, jv) < 0)
                return error_set(err, GRPC_INVALID_ARGUMENT, 0, "unified key is not valid UTF-8");
        }
    }
    return 0;
}

static int build_resources(struct build *b, struct error **err)
{
    if (!b->res)
        return 0;
    if (check_resources(b->res, b->in->host.n_cpus, b->cgroup_v2, err) < 0)
        return -1;
    return resources_into(b->resources, b->res, err);
}

json_t *oci_spec_resources(const Runtime__V1__LinuxContainerResources *r, struct error **err)
{
    json_t *res = json_object();
    if (r && resources_into(res, r, err) < 0) {
        json_decref(res);
        return NULL;
    }
    return res;
}

/* --- namespaces --- */

static int add_ns(json_t *arr, const char *type, const char *path, struct error **err)
{
    json_t *ns = json_object();
    json_array_append_new(arr, ns);
    json_object_set_new(ns, "type", json_string(type));
    if (path && oci_set_str(ns, "path", path, "namespace path", err) < 0)
        return -1;
    return 0;
}

static const char *const ns_field[] = {
    [NS_NET] = "network",
    [NS_IPC] = "ipc",
    [NS_PID] = "pid",
};

/*
 * Resolve the container's namespaces against its pod's, as containerd's CRI
 * plugin does (WithPodNamespaces): for network (with UTS), IPC and PID, both
 * POD and NODE mean what the pod has, since the pod's modes are what was
 * admitted for the pod and bound its containers: a host-network pod gives
 * the host's network and UTS namespaces, a host-IPC pod the host's IPC
 * namespace and /dev/shm, a pod with pid POD its shared PID namespace, pid
 * NODE the host's, pid CONTAINER a new one. A container's pid CONTAINER is a
 * new PID namespace whatever the pod has, TARGET the target container's.
 */
static int resolve_namespaces(struct build *b, struct error **err)
{
    const Runtime__V1__NamespaceMode POD = RUNTIME__V1__NAMESPACE_MODE__POD,
                                     NODE = RUNTIME__V1__NAMESPACE_MODE__NODE,
                                     CONTAINER = RUNTIME__V1__NAMESPACE_MODE__CONTAINER,
                                     TARGET = RUNTIME__V1__NAMESPACE_MODE__TARGET;
    const Runtime__V1__NamespaceOption *pod_nso = pod_ns_options(b->in->pod);
    const char *const pod_paths[] = {
        [NS_NET] = b->in->netns_path,
        [NS_IPC] = b->in->ipc_ns_path,
        [NS_PID] = b->in->pid_ns_path,
    };
    for (int i = NS_NET; i <= NS_PID; i++) {
        Runtime__V1__NamespaceMode mine = mode_of(b->nso, i), pods = mode_of(pod_nso, i);
        struct ns_choice *ch = &b->ns[i];
        if (i == NS_PID && mine == CONTAINER) {
            ch->source = NS_NEW;
            continue;
        }
        if (i == NS_PID && mine == TARGET) {
            if (!oci_is_set(b->in->target_pid_ns_path))
                return error_set(err, GRPC_NOT_FOUND, 0, "target container %s has no pid namespace",
                                 b->nso->target_id ? b->nso->target_id : "");
            *ch = (struct ns_choice){NS_JOIN, b->in->target_pid_ns_path};
            continue;
        }
        if (mine != POD && mine != NODE)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "linux.security_context.namespace_options.%s: mode %s is not "
                             "supported for a container (%s)",
                             ns_field[i], sandbox_namespace_mode_name(mine),
                             i == NS_PID ? "POD, CONTAINER, NODE or TARGET" : "POD or NODE");
        if (pods == NODE) {
            ch->source = NS_HOST;
        } else if (pods == CONTAINER && i == NS_PID) {
            ch->source = NS_NEW;
        } else if (pods == POD) {
            if (!oci_is_set(pod_paths[i]))
                return error_set(err, GRPC_INTERNAL, 0, "no %s namespace path for the pod",
                                 ns_field[i]);
            *ch = (struct ns_choice){NS_JOIN, pod_paths[i]};
        } else {
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "the pod's %s namespace mode %s is not valid for a sandbox",
                             ns_field[i], sandbox_namespace_mode_name(pods));
        }
    }
    const Runtime__V1__UserNamespace *userns = b->nso ? b->nso->userns_options : NULL;
    if (userns && userns->mode != NODE && (userns->mode != POD || userns->n_uids || userns->n_gids))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "linux.security_context.namespace_options.userns_options: user namespaces "
                         "are not supported");
    return 0;
}

static int add_ns_choice(json_t *arr, const char *type, const struct ns_choice *ch,
                         struct error **err)
{
    switch (ch->source) {
    case NS_HOST:
        return 0;
    case NS_NEW:
        return add_ns(arr, type, NULL, err);
    case NS_JOIN:
        break;
    }
    return add_ns(arr, type, ch->path, err);
}

static int build_namespaces(struct build *b, struct error **err)
{
    json_t *arr = json_array();
    json_object_set_new(b->linux, "namespaces", arr);
    /* The UTS namespace goes with the network one: a host-network pod has the host's name. */
    struct ns_choice uts = b->ns[NS_NET];
    if (uts.source == NS_JOIN) {
        if (!oci_is_set(b->in->uts_ns_path))
            return error_set(err, GRPC_INTERNAL, 0, "no UTS namespace path for the pod");
        uts.path = b->in->uts_ns_path;
    }
    if (add_ns_choice(arr, "pid", &b->ns[NS_PID], err) < 0 ||
        add_ns_choice(arr, "ipc", &b->ns[NS_IPC], err) < 0 ||
        add_ns_choice(arr, "uts", &uts, err) < 0 || add_ns(arr, "mount", NULL, err) < 0 ||
        add_ns_choice(arr, "network", &b->ns[NS_NET], err) < 0)
        return -1;
    /* A cgroup namespace hides the host's hierarchy; only meaningful on v2. */
    if (b->cgroup_v2 && !b->privileged)
        add_ns(arr, "cgroup", NULL, err);
    return 0;
}

/* --- seccomp --- */

static int seccomp_copy_rule(const json_t *src, json_t *rules, size_t idx, const char *path,
                             struct error **err)
{
    if (!json_is_object(src))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "seccomp profile %s: syscalls[%zu] is not an object", path, idx);
    json_t *names = json_object_get(src, "names");
    const json_t *name = json_object_get(src, "name");
    const json_t *action = json_object_get(src, "action");
    if (!json_is_string(action))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "seccomp profile %s: syscalls[%zu] has no action", path, idx);
    json_t *r = json_object();
    json_array_append_new(rules, r);
    if (json_is_array(names) && json_array_size(names)) {
        json_object_set(r, "names", names);
    } else if (json_is_string(name)) {
        /* Docker's older one-name form. */
        json_t *a = json_array();
        json_array_append(a, (json_t *)name);
        json_object_set_new(r, "names", a);
    } else {
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "seccomp profile %s: syscalls[%zu] names no system call", path, idx);
    }
    static const char *const keep[] = {"action", "errnoRet", "args"};
    for (size_t i = 0; i < ARRAY_SIZE(keep); i++) {
        json_t *v = json_object_get(src, keep[i]);
        if (v && !json_is_null(v))
            json_object_set(r, keep[i], v);
    }
    return 0;
}

static json_t *load_localhost_profile(const char *ref, const char *root, struct error **err)
{
    if (!oci_is_set(ref) || ref[0] != '/')
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "seccomp localhost profile \"%s\" is not an absolute path",
                         ref ? ref : ""),
               NULL;
    _cleanup_free_ char *real = realpath(ref, NULL);
    if (!real)
        return error_set(err, GRPC_INVALID_ARGUMENT, errno, "seccomp profile %s", ref), NULL;
    if (oci_is_set(root)) {
        _cleanup_free_ char *rroot = realpath(root, NULL);
        const char *base = rroot ? rroot : root;
        size_t bl = strlen(base);
        while (bl > 1 && base[bl - 1] == '/')
            bl--;
        if (strncmp(real, base, bl) != 0 || (real[bl] != '/' && bl != 1))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "seccomp profile %s is outside %s", ref,
                             root),
                   NULL;
    }
    _cleanup_close_ int fd = open(real, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return error_set(err, GRPC_INVALID_ARGUMENT, errno, "seccomp profile %s", ref), NULL;
    size_t len = 0;
    _cleanup_free_ char *what = xasprintf("seccomp profile %s", ref);
    _cleanup_free_ char *text = oci_read_fd(fd, what, &len, err);
    if (!text)
        return NULL;
    json_error_t jerr;
    _cleanup_json_ json_t *doc = json_loadb(text, len, 0, &jerr);
    if (!doc)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "seccomp profile %s: invalid JSON at line %d: %s", ref, jerr.line,
                         jerr.text),
               NULL;
    if (!json_is_object(doc) || !json_is_string(json_object_get(doc, "defaultAction")))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "seccomp profile %s has no \"defaultAction\"", ref),
               NULL;
    _cleanup_json_ json_t *out = json_object();
    static const char *const keep[] = {"defaultAction", "defaultErrnoRet", "architectures",
                                       "flags",         "listenerPath",    "listenerMetadata"};
    for (size_t i = 0; i < ARRAY_SIZE(keep); i++) {
        json_t *v = json_object_get(doc, keep[i]);
        if (v && !json_is_null(v))
            json_object_set(out, keep[i], v);
    }
    const json_t *syscalls = json_object_get(doc, "syscalls");
    if (syscalls && !json_is_null(syscalls)) {
        if (!json_is_array(syscalls))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "seccomp profile %s: syscalls is not a list", ref),
                   NULL;
        json_t *rules = json_array();
        json_object_set_new(out, "syscalls", rules);
        size_t i;
        const json_t *s;
        json_array_foreach(syscalls, i, s)
        {
            if (seccomp_copy_rule(s, rules, i, ref, err) < 0)
                return NULL;
        }
    }
    return steal_ptr(&out);
}

/* What a CRI SecurityProfile (seccomp or AppArmor) or its legacy string asks for. */
enum profile_kind { PROFILE_NONE, PROFILE_DEFAULT, PROFILE_UNCONFINED, PROFILE_LOCALHOST };

/* The kind of sp, a profile for what ("seccomp", "apparmor"); *ref: its Localhost ref. */
static int profile_choice(const Runtime__V1__SecurityProfile *sp, const char *what,
                          enum profile_kind *kind, const char **ref, struct error **err)
{
    if (sp->profile_type != RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Localhost &&
        oci_is_set(sp->localhost_ref))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "%s localhost_ref is only valid with a Localhost profile", what);
    switch (sp->profile_type) {
    case RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__RuntimeDefault:
        *kind = PROFILE_DEFAULT;
        return 0;
    case RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Unconfined:
        *kind = PROFILE_UNCONFINED;
        return 0;
    case RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Localhost:
        *kind = PROFILE_LOCALHOST;
        *ref = sp->localhost_ref;
        return 0;
    default:
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "unknown %s profile type %d", what,
                         (int)sp->profile_type);
    }
}

/* Seccomp: none asked for is unconfined. */
static int seccomp_choice(const struct build *b, enum profile_kind *kind, const char **ref,
                          struct error **err)
{
    *kind = PROFILE_UNCONFINED;
    *ref = NULL;
    const Runtime__V1__SecurityProfile *sp = b->sc ? b->sc->seccomp : NULL;
    if (sp)
        return profile_choice(sp, "seccomp", kind, ref, err);
    const char *path = b->sc ? b->sc->seccomp_profile_path : NULL;
    if (!oci_is_set(path) || strcmp(path, "unconfined") == 0)
        return 0;
    if (strcmp(path, "runtime/default") == 0 || strcmp(path, "docker/default") == 0) {
        *kind = PROFILE_DEFAULT;
        return 0;
    }
    if (str_has_prefix(path, "localhost/")) {
        *kind = PROFILE_LOCALHOST;
        *ref = path + strlen("localhost/");
        return 0;
    }
    return error_set(err, GRPC_INVALID_ARGUMENT, 0, "invalid seccomp profile \"%s\"", path);
}

/* --- AppArmor and SELinux --- */

/*
 * A profile name goes into /proc/self/attr/apparmor/exec through the runtime:
 * printable ASCII without blanks, and no "." or ".." component (the probe's
 * localhost_ref "../x").
 */
static int check_apparmor_name(const char *name, struct error **err)
{
    size_t len = strlen(name);
    if (len == 0 || len > 255)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "AppArmor profile name must be 1 to 255 bytes");
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "AppArmor profile name has a blank, control or non-ASCII character");
    if (path_has_dot_component(name))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "AppArmor profile name %s has a \".\" or \"..\" component", name);
    return 0;
}

/* What the request asks for: the profile field, else the legacy apparmor_profile string. */
static int apparmor_choice(const struct build *b, enum profile_kind *kind, const char **ref,
                           struct error **err)
{
    *kind = PROFILE_NONE;
    *ref = NULL;
    const Runtime__V1__SecurityProfile *sp = b->sc ? b->sc->apparmor : NULL;
    if (sp) {
        if (profile_choice(sp, "apparmor", kind, ref, err) < 0)
            return -1;
        if (*kind != PROFILE_LOCALHOST)
            return 0;
        *ref = *ref ? *ref : "";
        /* containerd trims the old prefix too, should a client send it here. */
        if (str_has_prefix(*ref, "localhost/"))
            *ref += strlen("localhost/");
        return check_apparmor_name(*ref, err);
    }
    const char *legacy = b->sc ? b->sc->apparmor_profile : NULL;
    if (!oci_is_set(legacy))
        return 0;
    if (strcmp(legacy, "unconfined") == 0) {
        *kind = PROFILE_UNCONFINED;
        return 0;
    }
    if (strcmp(legacy, "runtime/default") == 0) {
        *kind = PROFILE_DEFAULT;
        return 0;
    }
    if (str_has_prefix(legacy, "localhost/")) {
        *kind = PROFILE_LOCALHOST;
        *ref = legacy + strlen("localhost/");
        return check_apparmor_name(*ref, err);
    }
    return error_set(err, GRPC_INVALID_ARGUMENT, 0, "invalid apparmor_profile \"%s\"", legacy);
}

/*
 * AppArmor as containerd has it on a host without AppArmor: asking for any
 * profile but Unconfined fails the create instead of running the container
 * unconfined without a word. With AppArmor, a Localhost profile is set on
 * the process (the runtime fails when it is not loaded); there is no default
 * profile of ours to load, so RuntimeDefault is refused rather than dropped.
 * A privileged container runs unconfined, as with containerd.
 */
static int build_apparmor(struct build *b, struct error **err)
{
    enum profile_kind kind;
    const char *ref;
    if (apparmor_choice(b, &kind, &ref, err) < 0)
        return -1;
    if (kind == PROFILE_NONE || kind == PROFILE_UNCONFINED)
        return 0;
    if (!detect_apparmor(b->in->host.apparmor))
        return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                         "apparmor is not supported: this host has no AppArmor, and the "
                         "container asks for the %s profile",
                         kind == PROFILE_DEFAULT ? "RuntimeDefault" : ref);
    if (b->privileged)
        return 0;
    if (kind == PROFILE_DEFAULT)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                         "the RuntimeDefault AppArmor profile is not supported; use a Localhost "
                         "profile or Unconfined");
    return oci_set_str(b->process, "apparmorProfile", ref, "apparmor profile", err);
}

/*
 * SELinux options name a label; tinycri applies none. Rather than run the
 * container with another label than asked, the create fails: SELinux off
 * on this host, or labels not supported. The values are checked first.
 */
static int build_selinux(struct build *b, struct error **err)
{
    const Runtime__V1__SELinuxOption *o = b->sc ? b->sc->selinux_options : NULL;
    if (!o || (!oci_is_set(o->user) && !oci_is_set(o->role) && !oci_is_set(o->type) &&
               !oci_is_set(o->level)))
        return 0;
    const struct {
        const char *name, *value;
    } parts[] = {{"user", o->user}, {"role", o->role}, {"type", o->type}, {"level", o->level}};
    for (size_t i = 0; i < ARRAY_SIZE(parts); i++) {
        const char *v = parts[i].value ? parts[i].value : "";
        bool bad = strlen(v) > 255;
        for (const char *p = v; *p && !bad; p++)
            bad = (unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f || (*p == ':' && i < 3);
        if (bad)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "selinux_options.%s is malformed",
                             parts[i].name);
    }
    if (!detect_selinux(b->in->host.selinux))
        return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                         "selinux is not supported: SELinux is not enabled on this host, and the "
                         "container asks for selinux_options");
    return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                     "SELinux labels (selinux_options) are not supported by tinycri");
}

static int build_seccomp(struct build *b, struct error **err)
{
    enum profile_kind kind;
    const char *ref;
    if (seccomp_choice(b, &kind, &ref, err) < 0)
        return -1;
    if (b->privileged || kind == PROFILE_UNCONFINED)
        return 0;
    json_t *profile = kind == PROFILE_DEFAULT
                          ? seccomp_default_profile(b->caps, b->in->host.arch)
                          : load_localhost_profile(ref, b->in->seccomp_localhost_root, err);
    if (!profile)
        return -1;
    json_object_set_new(b->linux, "seccomp", profile);
    return 0;
}

/* --- linux, annotations --- */

static const char *const default_masked[] = {
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    NULL,
};

static const char *const default_readonly[] = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", NULL,
};

/*
 * linux.maskedPaths or readonlyPaths from a CRI list, used as sent (as
 * containerd and CRI-O do): kubelet sends the runtime's default lists for
 * procMount Default and empty ones for Unmasked, and proto3 cannot tell an
 * empty list from an absent one, so an empty list means none.
 */
static int path_list(json_t *linux, const char *key, const char *field, char *const *cri, size_t n,
                     struct error **err)
{
    json_t *a = json_array();
    json_object_set_new(linux, key, a);
    for (size_t i = 0; i < n; i++) {
        if (!oci_is_set(cri[i]) || cri[i][0] != '/' || path_has_dotdot(cri[i]))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "linux.security_context.%s[%zu]: \"%s\" is not an absolute path "
                             "without \"..\"",
                             field, i, cri[i] ? cri[i] : "");
        if (append_str(a, cri[i], field, err) < 0)
            return -1;
    }
    return 0;
}

/*
 * Masked and read-only paths: none for privileged containers; the CRI lists
 * when a security context is given (kubelet always gives one); the runtime
 * defaults when the container has no security context at all (linux absent
 * or linux: {}), which only a hand-written request has: it asked for no
 * unmasked /proc, so it keeps the defaults.
 */
static int build_path_lists(struct build *b, struct error **err)
{
    if (b->privileged)
        return 0;
    if (!b->sc) {
        json_object_set_new(b->linux, "maskedPaths", oci_str_array(default_masked));
        json_object_set_new(b->linux, "readonlyPaths", oci_str_array(default_readonly));
        return 0;
    }
    const Runtime__V1__LinuxContainerSecurityContext *sc = b->sc;
    if (path_list(b->linux, "maskedPaths", "masked_paths", sc->masked_paths, sc->n_masked_paths,
                  err) < 0)
        return -1;
    return path_list(b->linux, "readonlyPaths", "readonly_paths", sc->readonly_paths,
                     sc->n_readonly_paths, err);
}

static int build_linux(struct build *b, struct error **err)
{
    const struct oci_spec_input *in = b->in;
    const Runtime__V1__LinuxPodSandboxConfig *pl = in->pod->linux;

    const char *parent = in->cgroup_parent ? in->cgroup_parent : pl ? pl->cgroup_parent : NULL;
    _cleanup_free_ char *cg =
        oci_spec_cgroups_path(parent, in->container_id, in->systemd_cgroup, err);
    if (!cg || oci_set_str(b->linux, "cgroupsPath", cg, "cgroup parent", err) < 0)
        return -1;
    if (build_namespaces(b, err) < 0 || oci_build_devices(b, err) < 0 ||
        build_resources(b, err) < 0 || build_seccomp(b, err) < 0 || build_apparmor(b, err) < 0 ||
        build_selinux(b, err) < 0)
        return -1;

    if (pl && pl->n_sysctls) {
        json_t *sysctl = json_object();
        json_object_set_new(b->linux, "sysctl", sysctl);
        for (size_t i = 0; i < pl->n_sysctls; i++) {
            const char *k = pl->sysctls[i]->key;
            if (!oci_is_set(k) || strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                            "0123456789._/-") != strlen(k))
                return error_set(err, GRPC_INVALID_ARGUMENT, 0, "invalid sysctl name \"%s\"",
                                 k ? k : "");
            if (oci_set_str(sysctl, k, pl->sysctls[i]->value, "sysctl value", err) < 0)
                return -1;
        }
    }
    if (build_path_lists(b, err) < 0)
        return -1;
    if (b->rootfs_propagation)
        json_object_set_new(b->linux, "rootfsPropagation", json_string(b->rootfs_propagation));
    return 0;
}

static int build_annotations(struct build *b, struct error **err)
{
    const Runtime__V1__PodSandboxConfig *pod = b->in->pod;
    const Runtime__V1__PodSandboxMetadata *pm = pod->metadata;
    const Runtime__V1__ImageSpec *img = b->ctr->image;
    const char *image =
        img ? (oci_is_set(img->user_specified_image) ? img->user_specified_image : img->image) : "";
    json_t *a = json_object();
    json_object_set_new(b->spec, "annotations", a);
    const char *kv[][2] = {
        {"io.kubernetes.cri.container-type", "container"},
        {"io.kubernetes.cri.sandbox-id", b->in->sandbox_id},
        {"io.kubernetes.cri.sandbox-name", pm ? pm->name : ""},
        {"io.kubernetes.cri.sandbox-namespace", pm ? pm->namespace_ : ""},
        {"io.kubernetes.cri.sandbox-uid", pm ? pm->uid : ""},
        {"io.kubernetes.cri.container-name", b->ctr->metadata->name},
        {"io.kubernetes.cri.image-name", image},
    };
    for (size_t i = 0; i < ARRAY_SIZE(kv); i++)
        if (oci_set_str(a, kv[i][0], kv[i][1], kv[i][0], err) < 0)
            return -1;
    return 0;
}

json_t *oci_spec_build(const struct oci_spec_input *in, struct error **err)
{
    if (!in || !in->ctr || !in->pod || !oci_is_set(in->container_id) ||
        !oci_is_set(in->sandbox_id) || !oci_is_set(in->rootfs) || in->rootfs[0] != '/')
        return error_set(err, GRPC_INTERNAL, 0, "incomplete OCI spec input"), NULL;
    if (!in->ctr->metadata || !oci_is_set(in->ctr->metadata->name))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "container metadata has no name"), NULL;

    struct build b __attribute__((cleanup(build_clear))) = {
        .in = in,
        .ctr = in->ctr,
        .img = oci_image_cfg(in->image_config),
    };
    const Runtime__V1__LinuxContainerConfig *lc = in->ctr->linux;
    b.sc = lc ? lc->security_context : NULL;
    b.res = lc ? lc->resources : NULL;
    b.nso = b.sc ? b.sc->namespace_options : NULL;
    b.privileged = b.sc && b.sc->privileged;
    b.cgroup_v2 = detect_cgroup_v2(in->host.cgroup_v2);
    b.host_caps = detect_caps(in->host.caps);
    if (b.privileged) {
        const Runtime__V1__LinuxPodSandboxConfig *pl = in->pod->linux;
        if (!pl || !pl->security_context || !pl->security_context->privileged)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "privileged container in a sandbox that is not privileged"),
                   NULL;
    }
    if (compute_caps(&b, err) < 0 || resolve_namespaces(&b, err) < 0)
        return NULL;

    b.spec = json_object();
    json_object_set_new(b.spec, "ociVersion", json_string(OCI_SPEC_VERSION));
    json_t *root = json_object();
    json_object_set_new(b.spec, "root", root);
    if (oci_set_str(root, "path", in->rootfs, "rootfs", err) < 0)
        return NULL;
    if (b.sc && b.sc->readonly_rootfs)
        json_object_set_new(root, "readonly", json_true());
    b.linux = json_object();
    json_object_set_new(b.spec, "linux", b.linux);
    b.resources = json_object();
    json_object_set_new(b.linux, "resources", b.resources);

    if (build_process(&b, err) < 0 || oci_build_mounts(&b, err) < 0 || build_linux(&b, err) < 0 ||
        build_annotations(&b, err) < 0)
        return NULL;
    return steal_ptr(&b.spec);
}
