/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A pod's files on this node: /etc/hostname, /etc/hosts and
 * /etc/resolv.conf (written atomically under <state_dir>/sandboxes/<id>/ and
 * bind-mounted into every container), its /dev/shm tmpfs, and their removal
 * together with the pinned namespaces and the CNI cache entry.
 */
#include "autoconf.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/persist.h"
#include "core/util.h"
#include "pod/nsfs.h"
#include "pod/sandbox.h"
#include "pod/sandbox_internal.h"

#define HOST_FILE_MAX (64 * 1024)
/* Generated resolv.conf and hosts: more than validation lets the config reach. */
#define TEXT_MAX (1024 * 1024)
#define SHM_OPTIONS "mode=1777,size=65536k"

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

int sb_files_hosts(const struct sb *s, struct error **err)
{
    const struct sandbox *p = &s->pub;
    if (sb_host_network(p->config))
        return copy_host_file("/etc/hosts", p->hosts_path, err);
    _cleanup_free_ char *hostname = sb_pod_hostname(p->config);
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

bool sb_owns_shm(const struct sb *s)
{
    return !sb_host_ipc(s->pub.config);
}

int sb_shm_umount(const struct sb *s, struct error **err)
{
    if (!sb_owns_shm(s))
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
int sb_remove_local(const struct sb *s, struct error **err)
{
    const char *id = s->pub.id;
    if (sb_shm_umount(s, err) < 0)
        return -1;
    if (nsfs_unpin(sbs.netns_dir, id, err) < 0)
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
    _cleanup_free_ char *cache = xasprintf("%s/%s.json", sbs.cni_cache_dir, id);
    if (unlink(cache) < 0 && errno != ENOENT)
        return error_set(err, GRPC_INTERNAL, errno, "remove %s", cache);
    return 0;
}

int sb_files_write(struct sb *s, struct error **err)
{
    struct sandbox *p = &s->pub;
    const Runtime__V1__PodSandboxConfig *c = p->config;
    bool host_net = sb_host_network(c);
    _cleanup_free_ char *hostname = NULL;
    if (!host_net || (c->hostname && *c->hostname)) {
        hostname = sb_pod_hostname(c);
    } else {
        char buf[HOST_NAME_MAX + 1] = "";
        gethostname(buf, sizeof(buf) - 1);
        hostname = xstrdup(buf);
    }
    _cleanup_free_ char *hostname_line = xasprintf("%s\n", hostname);
    if (write_file(p->hostname_path, hostname_line, err) < 0)
        return -1;
    if (sb_has_dns_config(c)) {
        _cleanup_free_ char *text = resolv_conf_text(c->dns_config);
        if (write_file(p->resolv_path, text, err) < 0)
            return -1;
    } else if (copy_host_file("/etc/resolv.conf", p->resolv_path, err) < 0) {
        return -1;
    }
    if (sb_files_hosts(s, err) < 0)
        return -1;
    if (sb_owns_shm(s)) {
        if (mkdir(p->shm_path, 0700) < 0 && errno != EEXIST)
            return error_set(err, GRPC_INTERNAL, errno, "mkdir %s", p->shm_path);
        if (mount("shm", p->shm_path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, SHM_OPTIONS) < 0)
            return error_set(err, GRPC_INTERNAL, errno, "mount tmpfs on %s", p->shm_path);
    }
    return sb_persist(s, err);
}
