/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pinned pod namespaces behind nsfs.h. Both pinning and sysctls run in a
 * child_fork() child that does its few syscalls and _exit()s without exec;
 * it reports a failure as
 * "code=<grpc code> msg=<text>" on stderr. The pinning child unshare()s, so
 * the daemon never waits on the kernel's namespace locks and never leaves its
 * own namespaces; the sysctl child joins the pinned files.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/path.h"
#include "core/util.h"
#include "pod/nsfs.h"

#define SYSCTL_NAME_MAX 256
#define SYSCTL_VALUE_MAX 4096
#define SYSCTL_MAX_COUNT 1024
/* Bind mounts stacked on one namespace file that nsfs_unpin() takes off. */
#define MAX_STACKED_MOUNTS 16

struct ns_type {
    int flag;
    const char *name; /* as in /proc/<pid>/ns/ */
    const char *self; /* what the pinning child bind-mounts */
};

static const struct ns_type ns_types[] = {
    {CLONE_NEWNET, "net", "/proc/self/ns/net"},
    {CLONE_NEWIPC, "ipc", "/proc/self/ns/ipc"},
    {CLONE_NEWUTS, "uts", "/proc/self/ns/uts"},
};

void nsfs_paths_clear(struct nsfs_paths *p)
{
    free(p->net);
    free(p->ipc);
    free(p->uts);
    memset(p, 0, sizeof(*p));
}

static char **paths_slot(struct nsfs_paths *p, int flag)
{
    switch (flag) {
    case CLONE_NEWNET:
        return &p->net;
    case CLONE_NEWIPC:
        return &p->ipc;
    default:
        assert_state(flag == CLONE_NEWUTS);
        return &p->uts;
    }
}

static const char *paths_peek(const struct nsfs_paths *p, int flag)
{
    return *paths_slot((struct nsfs_paths *)p, flag);
}

int nsfs_prepare_dir(const char *dir, struct error **err)
{
    if (mkdir_p(dir, 0700, err) < 0)
        return error_prefix(err, "namespace dir");
    /* EINVAL: not a mount point yet; make it one, as `ip netns` does. */
    if (mount(NULL, dir, NULL, MS_SHARED | MS_REC, NULL) == 0)
        return 0;
    if (errno != EINVAL)
        return error_set(err, GRPC_INTERNAL, errno, "make %s a shared mount", dir);
    if (mount(dir, dir, NULL, MS_BIND | MS_REC, NULL) < 0)
        return error_set(err, GRPC_INTERNAL, errno, "bind-mount %s onto itself", dir);
    if (mount(NULL, dir, NULL, MS_SHARED | MS_REC, NULL) < 0) {
        int e = errno;
        if (umount2(dir, MNT_DETACH) < 0)
            log_debug("undo bind mount failed dir=%s errno=%d", dir, errno);
        return error_set(err, GRPC_INTERNAL, e, "make %s a shared mount", dir);
    }
    return 0;
}

/* ---- children ---- */

/* ---- pinning ---- */

/*
 * Unmount every bind mount on path (lazily), then remove it; missing is fine.
 * Once the file is unlinked no mount can land on it, so one that a pinning
 * child makes between our unmount and unlink (EBUSY) goes in the next round.
 */
static int remove_ns_file(const char *path, struct error **err)
{
    for (int i = 0; i < MAX_STACKED_MOUNTS; i++) {
        if (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
            continue;
        if (errno != EINVAL && errno != ENOENT) /* else not (or no longer) a mount point */
            return error_set(err, GRPC_INTERNAL, errno, "unmount %s", path);
        if (unlink(path) == 0 || errno == ENOENT)
            return 0;
        if (errno != EBUSY)
            return error_set(err, GRPC_INTERNAL, errno, "remove %s", path);
    }
    return error_set(err, GRPC_INTERNAL, EBUSY, "remove %s: still mounted", path);
}

enum pin_state {
    PIN_RUNNING, /* the child is unsharing and mounting; waiting for its exit */
    PIN_DONE,    /* reported (or cancelled and undone); queued for free */
};

/* Owned by this module until freed in PIN_DONE or by nsfs_pin_cancel(). */
struct nsfs_pin_op {
    enum pin_state state;
    char *id;
    char *pod_dir;
    bool made_dir;           /* pod_dir is ours to remove on undo */
    int flags;               /* what the child unshares */
    char *hostname;          /* NULL: keep the copy of the daemon's */
    struct nsfs_paths paths; /* the files made here, which the child mounts on */
    int64_t timeout_ms;
    struct child *child;
    struct error *err;
    nsfs_pin_cb done;
    void *arg;
};

static void pin_op_free(void *obj)
{
    struct nsfs_pin_op *op = obj;
    free(op->id);
    free(op->pod_dir);
    free(op->hostname);
    nsfs_paths_clear(&op->paths);
    error_free(op->err);
    free(op);
}

static void pin_op_freep(struct nsfs_pin_op **op)
{
    if (*op)
        pin_op_free(*op);
}

/* Remove the mounts, files and directory the pin made (best effort). */
static void pin_undo(struct nsfs_pin_op *op)
{
    for (size_t i = 0; i < ARRAY_SIZE(ns_types); i++) {
        const char *path = paths_peek(&op->paths, ns_types[i].flag);
        struct error *tmp = NULL;
        if (path && remove_ns_file(path, &tmp) < 0)
            log_debug("undo pinned namespace failed: %s", tmp->msg);
        error_free(tmp);
    }
    if (op->made_dir && rmdir(op->pod_dir) < 0 && errno != ENOENT)
        log_debug("undo namespace dir failed path=%s errno=%d", op->pod_dir, errno);
}

/* In the child: bring lo up, as pods expect (what CNI's loopback plugin does). */
static void child_loopback_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        child_exit_errorf(GRPC_INTERNAL, errno, "socket in %s", "the new network namespace");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, "lo", sizeof("lo"));
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        child_exit_errorf(GRPC_INTERNAL, errno, "get flags of %s", "lo");
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        child_exit_errorf(GRPC_INTERNAL, errno, "bring up %s", "lo");
    close(s);
}

/*
 * The child: one unshare() for every type, the set-up, then the bind mounts.
 * It shares the daemon's mount namespace, so the mounts are the daemon's.
 */
static int pin_child_main(void *arg)
{
    const struct nsfs_pin_op *op = arg;
    if (unshare(op->flags) < 0)
        child_exit_errorf(GRPC_INTERNAL, errno, "unshare %s", "the new namespaces");
    if ((op->flags & CLONE_NEWUTS) && op->hostname &&
        sethostname(op->hostname, strlen(op->hostname)) < 0)
        child_exit_errorf(GRPC_INTERNAL, errno, "set hostname %s", op->hostname);
    if (op->flags & CLONE_NEWNET)
        child_loopback_up();
    for (size_t i = 0; i < ARRAY_SIZE(ns_types); i++) {
        const struct ns_type *t = &ns_types[i];
        const char *path = paths_peek(&op->paths, t->flag);
        if ((op->flags & t->flag) && mount(t->self, path, NULL, MS_BIND, NULL) < 0)
            child_exit_errorf(GRPC_INTERNAL, errno, "bind-mount the namespace on %s", path);
    }
    _exit(0);
}

static void pin_step(struct nsfs_pin_op *op)
{
    switch (op->state) {
    case PIN_RUNNING:
        if (op->child)
            return;
        op->state = PIN_DONE;
        break;
    case PIN_DONE:
        return;
    }
    if (op->err)
        pin_undo(op);
    op->done(op->err, op->err ? NULL : &op->paths, op->arg);
    loop_defer_free(pin_op_free, op);
}

static void on_pin_exit(const struct child_result *res, void *arg)
{
    struct nsfs_pin_op *op = arg;
    op->child = NULL;
    _cleanup_free_ char *what = xasprintf("pin namespaces of %s", op->id);
    child_result_error(res, what, op->timeout_ms, &op->err);
    pin_step(op);
}

/* Make the directory and the empty files the child mounts on. */
static int pin_prepare(struct nsfs_pin_op *op, const char *dir, struct error **err)
{
    if (mkdir_p(dir, 0700, err) < 0)
        return -1;
    op->made_dir = mkdir(op->pod_dir, 0700) == 0;
    if (!op->made_dir && errno != EEXIST)
        return error_set(err, GRPC_INTERNAL, errno, "mkdir %s", op->pod_dir);
    for (size_t i = 0; i < ARRAY_SIZE(ns_types); i++) {
        const struct ns_type *t = &ns_types[i];
        if (!(op->flags & t->flag))
            continue;
        _cleanup_free_ char *path = xasprintf("%s/%s", op->pod_dir, t->name);
        _cleanup_close_ int fd =
            open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno == EEXIST)
            return error_set(err, GRPC_ALREADY_EXISTS, 0, "%s already exists", path);
        if (fd < 0)
            return error_set(err, GRPC_INTERNAL, errno, "create %s", path);
        *paths_slot(&op->paths, t->flag) = steal_ptr(&path);
    }
    return 0;
}

struct nsfs_pin_op *nsfs_pin_start(const char *dir, const char *id, int ns_flags,
                                   const char *hostname, int64_t timeout_ms, nsfs_pin_cb done,
                                   void *arg, struct error **err)
{
    assert_state(done);
    if (!id || !path_is_name(id, NSFS_ID_MAX))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "invalid pod id for namespaces"), NULL;
    if (ns_flags & ~NSFS_SUPPORTED)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "namespace flags %#x cannot be pinned (only net, ipc and uts)",
                         (unsigned)(ns_flags & ~NSFS_SUPPORTED)),
               NULL;
    if (hostname && (hostname[0] == '\0' || strlen(hostname) > HOST_NAME_MAX))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "invalid hostname (1 to %d bytes)",
                         HOST_NAME_MAX),
               NULL;
    __attribute__((cleanup(pin_op_freep))) struct nsfs_pin_op *op = xcalloc(1, sizeof(*op));
    op->state = PIN_RUNNING;
    op->id = xstrdup(id);
    op->pod_dir = xasprintf("%s/%s", dir, id);
    op->flags = ns_flags;
    op->hostname = hostname ? xstrdup(hostname) : NULL;
    op->timeout_ms = timeout_ms;
    op->done = done;
    op->arg = arg;
    if (pin_prepare(op, dir, err) < 0)
        goto undo;

    struct child_opts opts = {
        .timeout_ms = timeout_ms,
    };
    op->child = child_fork(&opts, pin_child_main, op, on_pin_exit, op, err);
    if (!op->child)
        goto undo;
    return steal_ptr(&op);

undo:
    pin_undo(op);
    return error_prefix(err, "pin namespaces of %s", id), NULL;
}

void nsfs_pin_cancel(struct nsfs_pin_op *op)
{
    if (!op)
        return;
    assert_state(op->state == PIN_RUNNING && op->child);
    /*
     * The killed child may still be in mount(); remove_ns_file() copes, and
     * once a file is unlinked the child's mount on it fails.
     */
    child_cancel(op->child);
    op->child = NULL;
    pin_undo(op);
    pin_op_free(op);
}

int nsfs_unpin(const char *dir, const char *id, struct error **err)
{
    if (!id || !path_is_name(id, NSFS_ID_MAX))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "invalid pod id for namespaces");
    _cleanup_free_ char *pod_dir = xasprintf("%s/%s", dir, id);
    for (size_t i = 0; i < ARRAY_SIZE(ns_types); i++) {
        _cleanup_free_ char *path = xasprintf("%s/%s", pod_dir, ns_types[i].name);
        if (remove_ns_file(path, err) < 0)
            return error_prefix(err, "unpin namespaces of %s", id);
    }
    if (rmdir(pod_dir) < 0 && errno != ENOENT)
        return error_set(err, GRPC_INTERNAL, errno, "unpin namespaces of %s: remove %s", id,
                         pod_dir);
    return 0;
}

/* ---- sysctls ---- */

static bool is_sysctl_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' ||
           c == '/';
}

/*
 * The dotted form of name (owned; '/' is a literal dot inside a component) and
 * its path under /proc/sys in *path, or NULL when the name is malformed.
 */
static char *sysctl_normalise(const char *name, char **path)
{
    size_t len = strlen(name);
    if (len == 0 || len > SYSCTL_NAME_MAX)
        return NULL;
    for (const char *p = name; *p; p++) {
        if (!is_sysctl_char(*p))
            return NULL;
    }
    _cleanup_free_ char *dotted = xstrdup(name);
    bool slash_form = name[strcspn(name, "./")] == '/';
    _cleanup_free_ char *rel = xstrdup(name);
    for (size_t i = 0; i < len; i++) {
        char swapped = name[i] == '.' ? '/' : name[i] == '/' ? '.' : name[i];
        if (slash_form)
            dotted[i] = swapped;
        else
            rel[i] = swapped;
    }
    /* Each path component must be a plain name: nothing empty, "." or "..". */
    for (const char *c = rel; *c;) {
        size_t n = strcspn(c, "/");
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return NULL;
        c += n;
        if (*c == '/' && *++c == '\0')
            return NULL;
    }
    *path = steal_ptr(&rel);
    return steal_ptr(&dotted);
}

static int sysctl_ns(const char *dotted)
{
    if (str_has_prefix(dotted, "net."))
        return CLONE_NEWNET;
    if (str_has_prefix(dotted, "kernel.shm") || str_has_prefix(dotted, "kernel.msg") ||
        strcmp(dotted, "kernel.sem") == 0 || str_has_prefix(dotted, "fs.mqueue."))
        return CLONE_NEWIPC;
    return 0;
}

static int sysctl_check(const char *name, const char *value, int *ns_flag, char **path,
                        struct error **err)
{
    if (!name || !value)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "sysctl without a name or value");
    _cleanup_free_ char *rel = NULL;
    _cleanup_free_ char *dotted = sysctl_normalise(name, &rel);
    if (!dotted)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "invalid sysctl name \"%.*s\"",
                         SYSCTL_NAME_MAX, name);
    *ns_flag = sysctl_ns(dotted);
    if (*ns_flag == 0)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "sysctl %s is not namespaced (allowed: net.*, kernel.shm*, kernel.msg*, "
                         "kernel.sem, fs.mqueue.*)",
                         name);
    size_t vlen = strlen(value);
    if (vlen == 0 || vlen > SYSCTL_VALUE_MAX)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "sysctl %s: value must be 1 to %d bytes",
                         name, SYSCTL_VALUE_MAX);
    for (const char *p = value; *p; p++) {
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "sysctl %s: value has a control character", name);
    }
    if (path)
        *path = xasprintf("/proc/sys/%s", rel);
    return 0;
}

int nsfs_sysctl_check(const char *name, const char *value, int *ns_flag, struct error **err)
{
    return sysctl_check(name, value, ns_flag, NULL, err);
}

enum sysctl_state {
    SYSCTL_RUNNING, /* the child is writing; waiting for its exit */
    SYSCTL_DONE,    /* reported; queued for free */
};

/* Owned by this module until freed in SYSCTL_DONE, also after a cancel. */
struct nsfs_sysctl_op {
    enum sysctl_state state;
    char *net_path; /* joined by the child; NULL: no net.* sysctl */
    char *ipc_path;
    char **names; /* as given, for messages */
    char **paths; /* "/proc/sys/..." */
    char **values;
    size_t n;
    int64_t timeout_ms;
    struct child *child;
    struct error *err;
    nsfs_done_cb done; /* NULL once cancelled */
    void *arg;
};

static void sysctl_op_free(void *obj)
{
    struct nsfs_sysctl_op *op = obj;
    for (size_t i = 0; i < op->n; i++) {
        free(op->names[i]);
        free(op->paths[i]);
        free(op->values[i]);
    }
    free(op->names);
    free(op->paths);
    free(op->values);
    free(op->net_path);
    free(op->ipc_path);
    error_free(op->err);
    free(op);
}

static void child_join(const char *path, int flag)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        child_exit_errorf(GRPC_INTERNAL, errno, "open namespace file %s", path);
    if (setns(fd, flag) < 0)
        child_exit_errorf(GRPC_INTERNAL, errno, "join namespace %s", path);
    close(fd);
}

static int sysctl_child_main(void *arg)
{
    const struct nsfs_sysctl_op *op = arg;
    if (op->net_path)
        child_join(op->net_path, CLONE_NEWNET);
    if (op->ipc_path)
        child_join(op->ipc_path, CLONE_NEWIPC);
    for (size_t i = 0; i < op->n; i++) {
        int fd = open(op->paths[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT)
            child_exit_errorf(GRPC_INVALID_ARGUMENT, 0, "no such sysctl: %s", op->names[i]);
        if (fd < 0)
            child_exit_errorf(GRPC_INTERNAL, errno, "open sysctl %s", op->names[i]);
        size_t len = strlen(op->values[i]);
        ssize_t w = write(fd, op->values[i], len);
        if (w < 0 && (errno == EINVAL || errno == ERANGE || errno == EPERM || errno == EACCES))
            child_exit_errorf(GRPC_INVALID_ARGUMENT, errno, "set sysctl %s", op->names[i]);
        if (w < 0)
            child_exit_errorf(GRPC_INTERNAL, errno, "set sysctl %s", op->names[i]);
        if ((size_t)w != len)
            child_exit_errorf(GRPC_INTERNAL, 0, "short write to sysctl %s", op->names[i]);
        close(fd);
    }
    _exit(0);
}

static void sysctl_step(struct nsfs_sysctl_op *op)
{
    switch (op->state) {
    case SYSCTL_RUNNING:
        if (op->child)
            return;
        op->state = SYSCTL_DONE;
        break;
    case SYSCTL_DONE:
        return;
    }
    nsfs_done_cb done = op->done;
    op->done = NULL;
    if (done)
        done(op->err, op->arg);
    loop_defer_free(sysctl_op_free, op);
}

static void on_sysctl_exit(const struct child_result *res, void *arg)
{
    struct nsfs_sysctl_op *op = arg;
    op->child = NULL;
    child_result_error(res, "set sysctls", op->timeout_ms, &op->err);
    sysctl_step(op);
}

static void sysctl_op_freep(struct nsfs_sysctl_op **op)
{
    if (*op)
        sysctl_op_free(*op);
}

struct nsfs_sysctl_op *nsfs_sysctl_apply(const char *net_path, const char *ipc_path,
                                         const struct nsfs_sysctl *sysctls, size_t n,
                                         int64_t timeout_ms, nsfs_done_cb done, void *arg,
                                         struct error **err)
{
    assert_state(done);
    if (n > SYSCTL_MAX_COUNT)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "more than %d sysctls", SYSCTL_MAX_COUNT),
               NULL;
    __attribute__((cleanup(sysctl_op_freep))) struct nsfs_sysctl_op *op = xcalloc(1, sizeof(*op));
    op->names = xcalloc(n ? n : 1, sizeof(char *));
    op->paths = xcalloc(n ? n : 1, sizeof(char *));
    op->values = xcalloc(n ? n : 1, sizeof(char *));
    bool need_net = false, need_ipc = false;
    for (size_t i = 0; i < n; i++) {
        int flag = 0;
        char *path = NULL;
        if (sysctl_check(sysctls[i].name, sysctls[i].value, &flag, &path, err) < 0)
            return NULL;
        op->names[i] = xstrdup(sysctls[i].name);
        op->paths[i] = path;
        op->values[i] = xstrdup(sysctls[i].value);
        op->n = i + 1;
        if ((flag == CLONE_NEWNET && !net_path) || (flag == CLONE_NEWIPC && !ipc_path))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "sysctl %s needs the pod's own %s namespace", sysctls[i].name,
                             flag == CLONE_NEWNET ? "network" : "IPC"),
                   NULL;
        need_net |= flag == CLONE_NEWNET;
        need_ipc |= flag == CLONE_NEWIPC;
    }
    op->net_path = need_net ? xstrdup(net_path) : NULL;
    op->ipc_path = need_ipc ? xstrdup(ipc_path) : NULL;
    op->state = SYSCTL_RUNNING;
    op->timeout_ms = timeout_ms;
    op->done = done;
    op->arg = arg;

    struct child_opts opts = {
        .timeout_ms = timeout_ms,
    };
    op->child = child_fork(&opts, sysctl_child_main, op, on_sysctl_exit, op, err);
    if (!op->child)
        return error_prefix(err, "set sysctls"), NULL;
    return steal_ptr(&op);
}

void nsfs_sysctl_cancel(struct nsfs_sysctl_op *op)
{
    if (!op)
        return;
    /* The op lives on until the child has been reaped; done never runs. */
    op->done = NULL;
    if (op->state == SYSCTL_RUNNING && op->child)
        child_signal(op->child, SIGKILL);
}
