/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The mounts and devices of a container's config.json (oci_spec.h): the
 * pod's files, the image's volumes and the CRI mounts, with their
 * propagation checked against the host's mounts, the default mounts, and the
 * devices (the CRI's, and every host device for a privileged container).
 */
#include "autoconf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/path.h"
#include "core/util.h"
#include "pod/oci_internal.h"
#include "pod/oci_spec.h"
#include "pod/sandbox.h"

#define MAX_DEV_DEPTH 8
#define MAX_DEVICES 16384

/* --- mounts --- */

static json_t *mount_json(const char *dst, const char *type, const char *src,
                          const char *const *opts, struct error **err)
{
    _cleanup_json_ json_t *m = json_object();
    if (oci_set_str(m, "destination", dst, "mount container path", err) < 0 ||
        oci_set_str(m, "source", src, "mount host path", err) < 0)
        return NULL;
    json_object_set_new(m, "type", json_string(type));
    json_object_set_new(m, "options", oci_str_array(opts));
    return steal_ptr(&m);
}

static bool has_mount(const struct build *b, const char *clean_dst)
{
    for (size_t i = 0; i < b->n_mounts; i++)
        if (strcmp(b->mounts[i].dst, clean_dst) == 0)
            return true;
    return false;
}

static bool ctr_mounts_path(const Runtime__V1__ContainerConfig *ctr, const char *path)
{
    for (size_t i = 0; i < ctr->n_mounts; i++) {
        const char *cp = ctr->mounts[i]->container_path;
        if (!oci_is_set(cp))
            continue;
        _cleanup_free_ char *clean = oci_path_clean(cp);
        if (strcmp(clean, path) == 0)
            return true;
    }
    return false;
}

static bool cri_mounts_path(const struct build *b, const char *path)
{
    return ctr_mounts_path(b->ctr, path);
}

static void push_mount(struct build *b, char *clean_dst, json_t *obj)
{
    b->mounts = xrealloc(b->mounts, (b->n_mounts + 1) * sizeof(*b->mounts));
    b->mounts[b->n_mounts] = (struct mount_entry){clean_dst, obj, b->n_mounts};
    b->n_mounts++;
}

static int add_bind_opts(struct build *b, const char *dst, const char *src, const char *const *opts,
                         struct error **err)
{
    char *clean = oci_path_clean(dst);
    json_t *m = mount_json(clean, "bind", src, opts, err);
    if (!m) {
        free(clean);
        return -1;
    }
    push_mount(b, clean, m);
    return 0;
}

static int add_bind(struct build *b, const char *dst, const char *src, const char *propagation,
                    const char *ro, struct error **err)
{
    const char *opts[] = {"rbind", propagation, ro, NULL};
    return add_bind_opts(b, dst, src, opts, err);
}

static int add_sandbox_files(struct build *b, struct error **err)
{
    const char *ro = b->sc && b->sc->readonly_rootfs ? "ro" : "rw";
    const struct {
        const char *dst, *src;
    } files[] = {
        {"/etc/hostname", b->in->hostname_file},
        {"/etc/hosts", b->in->hosts_file},
        {"/etc/resolv.conf", b->in->resolv_file},
    };
    for (size_t i = 0; i < ARRAY_SIZE(files); i++)
        if (oci_is_set(files[i].src) && !cri_mounts_path(b, files[i].dst) &&
            add_bind(b, files[i].dst, files[i].src, "rprivate", ro, err) < 0)
            return -1;
    /* The host's IPC namespace goes with the host's /dev/shm. */
    const char *shm = b->ns[NS_IPC].source == NS_HOST ? "/dev/shm" : b->in->shm_dir;
    /* What a tmpfs /dev/shm has, also when it is the pod's or the host's. */
    static const char *const shm_opts[] = {"rbind", "rprivate", "rw", "nosuid",
                                           "nodev", "noexec",   NULL};
    if (oci_is_set(shm) && !cri_mounts_path(b, "/dev/shm") &&
        add_bind_opts(b, "/dev/shm", shm, shm_opts, err) < 0)
        return -1;
    return 0;
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* Where the pod's files go; they win over an image volume at the same path. */
static bool is_sandbox_file(const char *clean)
{
    static const char *const files[] = {"/etc/hostname", "/etc/hosts", "/etc/resolv.conf",
                                        "/dev/shm"};
    for (size_t i = 0; i < ARRAY_SIZE(files); i++)
        if (strcmp(clean, files[i]) == 0)
            return true;
    return false;
}

void oci_spec_volumes_clear(struct oci_spec_volumes *v)
{
    for (size_t i = 0; i < v->n; i++) {
        free(v->paths[i]);
        free(v->names[i]);
    }
    free(v->paths);
    free(v->names);
    *v = (struct oci_spec_volumes){0};
}

int oci_spec_image_volumes(const Runtime__V1__ContainerConfig *ctr, const json_t *image_config,
                           struct oci_spec_volumes *out, struct error **err)
{
    *out = (struct oci_spec_volumes){0};
    const json_t *img = oci_image_cfg(image_config);
    const json_t *vols = img ? json_object_get(img, "Volumes") : NULL;
    if (!vols || json_is_null(vols))
        return 0;
    if (!json_is_object(vols))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "image config Volumes is not an object");
    /* Sorted, so the spec does not depend on hash order. */
    size_t n = json_object_size(vols), i = 0;
    _cleanup_free_ const char **keys = xcalloc(n ? n : 1, sizeof(*keys));
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)vols, key, val)
    {
        keys[i++] = key;
    }
    qsort(keys, n, sizeof(*keys), cmp_str);
    struct oci_spec_volumes v = {
        .paths = xcalloc(n ? n : 1, sizeof(char *)),
        .names = xcalloc(n ? n : 1, sizeof(char *)),
    };
    for (i = 0; i < n; i++) {
        char *name = oci_spec_volume_name(keys[i], err);
        if (!name) {
            oci_spec_volumes_clear(&v);
            return error_prefix(err, "image volume");
        }
        char *clean = oci_path_clean(keys[i]);
        if (ctr_mounts_path(ctr, clean) || is_sandbox_file(clean)) {
            free(name);
            free(clean);
            continue;
        }
        v.paths[v.n] = clean;
        v.names[v.n++] = name;
    }
    *out = v;
    return 0;
}

static void volumes_clearp(struct oci_spec_volumes *v)
{
    oci_spec_volumes_clear(v);
}

static int add_image_volumes(struct build *b, struct error **err)
{
    struct oci_spec_volumes vols __attribute__((cleanup(volumes_clearp))) = {0};
    if (oci_spec_image_volumes(b->ctr, b->in->image_config, &vols, err) < 0)
        return -1;
    if (!b->in->volumes_dir)
        return 0;
    for (size_t i = 0; i < vols.n; i++) {
        if (has_mount(b, vols.paths[i]))
            continue;
        _cleanup_free_ char *src = xasprintf("%s/%s", b->in->volumes_dir, vols.names[i]);
        /* Normally made and seeded by pod/volume already. */
        if (mkdir_p(src, 0755, err) < 0)
            return error_prefix(err, "image volume %s", vols.paths[i]);
        if (add_bind(b, vols.paths[i], src, "rprivate", "rw", err) < 0)
            return -1;
    }
    return 0;
}

/* Undo mountinfo's octal escapes ("\040" for a space) in place. */
static void unescape_octal(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 3;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

static bool path_under(const char *path, const char *mp)
{
    size_t n = strlen(mp);
    if (strcmp(mp, "/") == 0)
        return true;
    return strncmp(path, mp, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/*
 * Propagation only works when the host mount holding src propagates too
 * (containerd's ensureShared / ensureSharedOrSlave): check the optional
 * fields of that mount in mountinfo.
 */
static int check_host_propagation(const struct build *b, const char *src, bool need_shared,
                                  struct error **err)
{
    const char *info =
        oci_is_set(b->in->host.mountinfo) ? b->in->host.mountinfo : "/proc/self/mountinfo";
    _cleanup_free_ char *text = read_file_capped(info, 16 * 1024 * 1024, NULL, err);
    if (!text)
        return error_prefix(err, "propagation of %s", src);
    _cleanup_free_ char *best = NULL;
    bool shared = false, slave = false;
    char *cur = text, *line;
    while ((line = oci_next_line(&cur))) {
        /* id parent dev root mountpoint options [optional...] - type source super */
        char *f[64];
        size_t n = 0;
        char *save = NULL;
        for (char *t = strtok_r(line, " ", &save); t && n < ARRAY_SIZE(f);
             t = strtok_r(NULL, " ", &save))
            f[n++] = t;
        if (n < 7)
            continue;
        unescape_octal(f[4]);
        if (!path_under(src, f[4]) || (best && strlen(f[4]) < strlen(best)))
            continue;
        free(best);
        best = xstrdup(f[4]);
        shared = slave = false;
        for (size_t i = 6; i < n && strcmp(f[i], "-") != 0; i++) {
            shared |= str_has_prefix(f[i], "shared:");
            slave |= str_has_prefix(f[i], "master:");
        }
    }
    if (!best)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "no mount holds %s in %s", src, info);
    if (shared || (!need_shared && slave))
        return 0;
    return error_set(err, GRPC_FAILED_PRECONDITION, 0, "%s is on mount %s, which is not a %s mount",
                     src, best, need_shared ? "shared" : "shared or slave");
}

/*
 * Where a bind mount may not go, as runc has it: over /proc, or inside it
 * but for the files lxcfs emulates.
 */
static bool is_forbidden_proc_mount(const char *clean)
{
    static const char *const lxcfs[] = {
        "/proc/cpuinfo",
        "/proc/diskstats",
        "/proc/meminfo",
        "/proc/stat",
        "/proc/swaps",
        "/proc/uptime",
        "/proc/loadavg",
        "/proc/slabinfo",
        "/proc/net/dev",
        "/proc/sys/kernel/ns_last_pid",
        "/proc/sys/crypto/fips_enabled",
    };
    if (strcmp(clean, "/proc") != 0 && !str_has_prefix(clean, "/proc/"))
        return false;
    for (size_t i = 0; i < ARRAY_SIZE(lxcfs); i++)
        if (strcmp(clean, lxcfs[i]) == 0)
            return false;
    return true;
}

/* The container and host paths of CRI mount i. Errors name the field. */
static int check_mount_paths(const Runtime__V1__Mount *m, size_t i, struct error **err)
{
    const char *cp = m->container_path ? m->container_path : "";
    const char *hp = m->host_path ? m->host_path : "";
    if (path_has_control(cp))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "config.mounts[%zu].container_path has a control character", i);
    if (cp[0] != '/')
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "config.mounts[%zu].container_path \"%s\" is not absolute", i, cp);
    if (path_has_dotdot(cp))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "config.mounts[%zu].container_path %s has a \"..\" component", i, cp);
    _cleanup_free_ char *clean = oci_path_clean(cp);
    if (strcmp(clean, "/") == 0)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "config.mounts[%zu].container_path %s is the container's root", i, cp);
    if (is_forbidden_proc_mount(clean))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "config.mounts[%zu].container_path %s: nothing may be mounted over or "
                         "inside /proc",
                         i, cp);
    if (!*hp && !(m->image && oci_is_set(m->image->image)))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "config.mounts[%zu].host_path is empty", i);
    if (path_has_control(hp))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "config.mounts[%zu].host_path has a control character", i);
    /* Relative, it would be resolved against the daemon's working directory. */
    if (*hp && hp[0] != '/')
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "config.mounts[%zu].host_path \"%s\" is not absolute", i, hp);
    return 0;
}

static int add_cri_mount(struct build *b, const Runtime__V1__Mount *m, size_t i, struct error **err)
{
    if (check_mount_paths(m, i, err) < 0)
        return -1;
    if (m->image && oci_is_set(m->image->image))
        return error_set(err, GRPC_UNIMPLEMENTED, 0, "image mounts are not supported");
    if (m->n_uidmappings || m->n_gidmappings)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "mount %s: idmapped mounts are not supported", m->container_path);
    _cleanup_free_ char *src = realpath(m->host_path, NULL);
    if (!src)
        return error_set(err, GRPC_INVALID_ARGUMENT, errno, "mount host path %s", m->host_path);

    const char *prop;
    switch (m->propagation) {
    case RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_PRIVATE:
        prop = "rprivate";
        break;
    case RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_HOST_TO_CONTAINER:
        prop = "rslave";
        if (check_host_propagation(b, src, false, err) < 0)
            return -1;
        if (!b->rootfs_propagation)
            b->rootfs_propagation = "rslave";
        break;
    case RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL:
        prop = "rshared";
        if (check_host_propagation(b, src, true, err) < 0)
            return -1;
        b->rootfs_propagation = "rshared";
        break;
    default:
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "mount %s: unknown propagation %d",
                         m->container_path, (int)m->propagation);
    }
    const char *ro = m->readonly ? "ro" : "rw";
    if (m->recursive_read_only) {
        if (!m->readonly || m->propagation != RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_PRIVATE)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "mount %s: recursive read-only needs readonly and private propagation",
                             m->container_path);
        ro = "rro";
    }
    return add_bind(b, m->container_path, src, prop, ro, err);
}

static int cmp_mount(const void *x, const void *y)
{
    const struct mount_entry *a = x, *c = y;
    size_t da = oci_path_depth(a->dst), dc = oci_path_depth(c->dst);
    if (da != dc)
        return da < dc ? -1 : 1;
    return a->order < c->order ? -1 : a->order > c->order;
}

struct default_mount {
    const char *dst, *type, *src;
    const char *const *opts;
};

#define OPTS(...) ((const char *const[]){__VA_ARGS__, NULL})

int oci_build_mounts(struct build *b, struct error **err)
{
    if (add_sandbox_files(b, err) < 0 || add_image_volumes(b, err) < 0)
        return -1;
    for (size_t i = 0; i < b->ctr->n_mounts; i++)
        if (add_cri_mount(b, b->ctr->mounts[i], i, err) < 0)
            return -1;

    const char *rw = b->privileged ? "rw" : "ro";
    const struct default_mount defaults[] = {
        {"/proc", "proc", "proc", OPTS("nosuid", "noexec", "nodev")},
        {"/dev", "tmpfs", "tmpfs", OPTS("nosuid", "strictatime", "mode=755", "size=65536k")},
        {"/dev/pts", "devpts", "devpts",
         OPTS("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5")},
        {"/dev/shm", "tmpfs", "shm", OPTS("nosuid", "noexec", "nodev", "mode=1777", "size=65536k")},
        {"/dev/mqueue", "mqueue", "mqueue", OPTS("nosuid", "noexec", "nodev")},
        {"/sys", "sysfs", "sysfs", OPTS("nosuid", "noexec", "nodev", rw)},
        {"/sys/fs/cgroup", "cgroup", "cgroup", OPTS("nosuid", "noexec", "nodev", "relatime", rw)},
    };
    json_t *mounts = json_array();
    json_object_set_new(b->spec, "mounts", mounts);
    bool dev_replaced = has_mount(b, "/dev");
    for (size_t i = 0; i < ARRAY_SIZE(defaults); i++) {
        const struct default_mount *d = &defaults[i];
        if (has_mount(b, d->dst) || (dev_replaced && str_has_prefix(d->dst, "/dev/")))
            continue;
        json_array_append_new(mounts, mount_json(d->dst, d->type, d->src, d->opts, err));
    }
    /* Shallow destinations first, so that no mount hides one below it. */
    qsort(b->mounts, b->n_mounts, sizeof(*b->mounts), cmp_mount);
    for (size_t i = 0; i < b->n_mounts; i++)
        json_array_append(mounts, b->mounts[i].obj);
    return 0;
}

/* --- devices --- */

struct dev_ctx {
    json_t *devices; /* linux.devices */
    json_t *rules;   /* linux.resources.devices, NULL: none added */
    const char *access;
    size_t count;
};

static int add_device(struct dev_ctx *d, const char *cpath, const struct stat *st,
                      struct error **err)
{
    if (++d->count > MAX_DEVICES)
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0, "more than %d devices", MAX_DEVICES);
    const char *type = S_ISCHR(st->st_mode) ? "c" : "b";
    json_t *dev = json_object();
    json_array_append_new(d->devices, dev);
    if (oci_set_str(dev, "path", cpath, "device path", err) < 0)
        return -1;
    json_object_set_new(dev, "type", json_string(type));
    json_object_set_new(dev, "major", json_integer(major(st->st_rdev)));
    json_object_set_new(dev, "minor", json_integer(minor(st->st_rdev)));
    json_object_set_new(dev, "fileMode", json_integer(st->st_mode & 07777));
    json_object_set_new(dev, "uid", json_integer(st->st_uid));
    json_object_set_new(dev, "gid", json_integer(st->st_gid));
    if (d->rules) {
        json_t *r = json_object();
        json_object_set_new(r, "allow", json_true());
        json_object_set_new(r, "type", json_string(type));
        json_object_set_new(r, "major", json_integer(major(st->st_rdev)));
        json_object_set_new(r, "minor", json_integer(minor(st->st_rdev)));
        json_object_set_new(r, "access", json_string(d->access));
        json_array_append_new(d->rules, r);
    }
    return 0;
}

static bool skip_dev_dir(const char *name)
{
    static const char *const skip[] = {"pts",  "shm",         "fd",   "mqueue",
                                       ".lxc", ".lxd-mounts", ".udev"};
    for (size_t i = 0; i < ARRAY_SIZE(skip); i++)
        if (strcmp(name, skip[i]) == 0)
            return true;
    return false;
}

/* Every device node below host_dir (symlinks not followed), as cpath/<relative>. */
static int add_device_dir(struct dev_ctx *d, const char *host_dir, const char *cpath, int depth,
                          struct error **err)
{
    if (depth > MAX_DEV_DEPTH)
        return 0;
    _cleanup_closedir_ DIR *dir = opendir(host_dir);
    if (!dir)
        return error_set(err, GRPC_INTERNAL, errno, "open device directory %s", host_dir);
    _cleanup_strv_ struct strv names = {0};
    struct dirent *de;
    while ((de = readdir(dir))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (names.n >= MAX_DEVICES)
            return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0, "%s has too many entries", host_dir);
        oci_strv_push(&names, xstrdup(de->d_name));
    }
    qsort(names.v, names.n, sizeof(*names.v), cmp_str);
    for (size_t i = 0; i < names.n; i++) {
        const char *name = names.v[i];
        _cleanup_free_ char *hpath = xasprintf("%s/%s", host_dir, name);
        _cleanup_free_ char *cp = xasprintf("%s/%s", strcmp(cpath, "/") == 0 ? "" : cpath, name);
        struct stat st;
        if (fstatat(dirfd(dir), name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue; /* vanished meanwhile */
        if (S_ISDIR(st.st_mode)) {
            if (depth == 0 && skip_dev_dir(name))
                continue;
            if (add_device_dir(d, hpath, cp, depth + 1, err) < 0)
                return -1;
        } else if ((S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) &&
                   !(depth == 0 && strcmp(name, "console") == 0)) {
            if (add_device(d, cp, &st, err) < 0)
                return -1;
        }
    }
    return 0;
}

static json_t *dev_rule(bool allow, const char *type, int64_t maj, int64_t min, const char *access)
{
    json_t *r = json_object();
    json_object_set_new(r, "allow", json_boolean(allow));
    if (type)
        json_object_set_new(r, "type", json_string(type));
    if (maj >= 0)
        json_object_set_new(r, "major", json_integer(maj));
    if (min >= 0)
        json_object_set_new(r, "minor", json_integer(min));
    json_object_set_new(r, "access", json_string(access));
    return r;
}

static bool valid_access(const char *s)
{
    if (!*s || strlen(s) > 3)
        return false;
    for (; *s; s++)
        if (*s != 'r' && *s != 'w' && *s != 'm')
            return false;
    return true;
}

static int build_device_list(struct build *b, json_t *rules, json_t *devices, struct error **err)
{
    if (b->ctr->n_cdi_devices)
        return error_set(err, GRPC_UNIMPLEMENTED, 0, "CDI devices are not supported");

    if (b->privileged) {
        json_array_append_new(rules, dev_rule(true, NULL, -1, -1, "rwm"));
        const char *dir = oci_is_set(b->in->host.dev_dir) ? b->in->host.dev_dir : "/dev";
        struct dev_ctx d = {devices, NULL, "rwm", 0};
        return add_device_dir(&d, dir, "/dev", 0, err);
    }

    /* Deny everything, then what runc allows every container. */
    json_array_append_new(rules, dev_rule(false, NULL, -1, -1, "rwm"));
    json_array_append_new(rules, dev_rule(true, "c", -1, -1, "m"));
    json_array_append_new(rules, dev_rule(true, "b", -1, -1, "m"));
    static const struct {
        int maj, min;
    } std[] = {{1, 3}, {1, 5}, {1, 7}, {1, 8}, {1, 9}, {5, 0}, {5, 2}, {136, -1}};
    for (size_t i = 0; i < ARRAY_SIZE(std); i++)
        json_array_append_new(rules, dev_rule(true, "c", std[i].maj, std[i].min, "rwm"));

    for (size_t i = 0; i < b->ctr->n_devices; i++) {
        const Runtime__V1__Device *dev = b->ctr->devices[i];
        const char *access = oci_is_set(dev->permissions) ? dev->permissions : "rwm";
        if (!valid_access(access))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "device %s: bad permissions \"%s\"",
                             dev->host_path, access);
        if (!oci_is_set(dev->host_path))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "device without a host path");
        const char *cpath = oci_is_set(dev->container_path) ? dev->container_path : dev->host_path;
        if (cpath[0] != '/')
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "device container path %s is not absolute", cpath);
        _cleanup_free_ char *real = realpath(dev->host_path, NULL);
        struct stat st;
        if (!real || stat(real, &st) < 0)
            return error_set(err, GRPC_INVALID_ARGUMENT, errno, "device %s", dev->host_path);
        struct dev_ctx d = {devices, rules, access, 0};
        if (S_ISDIR(st.st_mode)) {
            _cleanup_free_ char *clean = oci_path_clean(cpath);
            if (add_device_dir(&d, real, clean, 1, err) < 0)
                return error_prefix(err, "device %s", dev->host_path);
        } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
            if (add_device(&d, cpath, &st, err) < 0)
                return -1;
        } else {
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s is not a device", dev->host_path);
        }
    }
    return 0;
}

int oci_build_devices(struct build *b, struct error **err)
{
    json_t *rules = json_array();
    json_object_set_new(b->resources, "devices", rules);
    json_t *devices = json_array();
    json_object_set_new(b->linux, "devices", devices);
    if (build_device_list(b, rules, devices, err) < 0)
        return -1;
    if (json_array_size(devices) == 0)
        json_object_del(b->linux, "devices");
    return 0;
}
