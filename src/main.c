/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tinycrid: start-up, the serving loop and shutdown.
 *
 * Start-up reads the configuration (built-in defaults, an optional file,
 * command-line overrides), creates the root and state directories (0700),
 * takes an exclusive lock on the root directory so a second daemon refuses
 * to start, replaces a stale socket, and serves CRI on the unix socket
 * (0660). SIGTERM/SIGINT drain the gRPC server and exit 0; SIGHUP re-reads
 * the config file and applies what can change at run time.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/notify.h"
#include "core/util.h"
#include "cri/image_service.h"
#include "cri/methods.h"
#include "cri/runtime_service.h"
#include "grpc/h2.h"
#include "grpc/router.h"
#include "image/xferlib.h"
#include "pod/sandbox.h"
/* containers (pod/container, pod/runtime, cri/container_service) */
#include "cri/container_service.h"
#include "cri/stream_service.h"
#include "pod/container.h"
#include "pod/runtime.h"
/* stats, events, resource updates, streamed lists */
#include "cri/events_service.h"
#include "cri/list_reply.h"
#include "cri/stats_service.h"
#include "pod/resources.h"

struct daemon {
    struct config cfg;
    struct runtime_service rs;
    struct image_service is;
    struct router *router;
    struct h2_server *server;
    int lock_fd;
    bool stopping;
    int exit_code;
    struct loop_timer *status_timer; /* only under systemd: refreshes STATUS= */
    char *status;                    /* the STATUS= text last sent */
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: tinycrid [OPTION]...\n"
                 "A small Kubernetes container runtime: serves CRI v1 on a unix socket.\n"
                 "\n"
                 "  -c, --config FILE      read settings from FILE (INI; see tinycri.conf)\n"
                 "  -s, --socket PATH      CRI socket (default /run/tinycri/tinycri.sock)\n"
                 "  -r, --root DIR         persistent state (default /var/lib/tinycri)\n"
                 "  -S, --state-dir DIR    run-time state (default /run/tinycri)\n"
                 "  -l, --log-level LEVEL  error, warn, info or debug (default info)\n"
                 "      --check-config     check the configuration and this host, print one\n"
                 "                         line per problem, exit 1 if there is any, else 0\n"
                 "  -h, --help             show this help and exit\n"
                 "  -V, --version          show the version and exit\n"
                 "\n"
                 "Options given on the command line win over the config file.\n");
}

struct override {
    const char *key;
    const char *value;
};

#define OPT_CHECK_CONFIG 256

static int parse_args(int argc, char **argv, struct config *cfg, bool *check, struct error **err)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"socket", required_argument, NULL, 's'},
        {"root", required_argument, NULL, 'r'},
        {"state-dir", required_argument, NULL, 'S'},
        {"log-level", required_argument, NULL, 'l'},
        {"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    struct override overrides[8];
    size_t n_overrides = 0;
    const char *file = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "c:s:r:S:l:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            file = optarg;
            break;
        case 's':
        case 'r':
        case 'S':
        case 'l': {
            const char *key = c == 's'   ? "socket"
                              : c == 'r' ? "root_dir"
                              : c == 'S' ? "state_dir"
                                         : "log_level";
            if (n_overrides < ARRAY_SIZE(overrides))
                overrides[n_overrides++] = (struct override){key, optarg};
            break;
        }
        case OPT_CHECK_CONFIG:
            *check = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case 'V':
            printf("tinycrid %s (CRI %s)\n", PACKAGE_VERSION, "v1");
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind < argc)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "unexpected argument %s", argv[optind]);
    if (file && config_load_file(cfg, file, err) < 0)
        return -1;
    for (size_t i = 0; i < n_overrides; i++) {
        if (config_set(cfg, "server", overrides[i].key, overrides[i].value, err) < 0)
            return error_prefix(err, "command line");
    }
    return 0;
}

/* Exclusive lock on <root>/tinycri.lock, held for the daemon's life. */
static int lock_root(const char *root, struct error **err)
{
    _cleanup_free_ char *path = xasprintf("%s/tinycri.lock", root);
    _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return error_set(err, GRPC_INTERNAL, errno, "open %s", path);
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                             "another tinycrid is already running with root dir %s (lock %s)", root,
                             path);
        return error_set(err, GRPC_INTERNAL, errno, "lock %s", path);
    }
    return steal_fd(&fd);
}

static int fill_sockaddr(const char *path, struct sockaddr_un *sa, struct error **err)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "socket path %s is longer than %zu bytes",
                         path, sizeof(sa->sun_path) - 1);
    memcpy(sa->sun_path, path, strlen(path));
    return 0;
}

/*
 * Remove a socket left by a dead daemon. A socket that still accepts
 * connections belongs to a live process (perhaps with another root dir):
 * refuse rather than steal it.
 */
static int clear_stale_socket(const char *path, const struct sockaddr_un *sa, struct error **err)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : error_set(err, GRPC_INTERNAL, errno, "stat %s", path);
    if (!S_ISSOCK(st.st_mode))
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "%s exists and is not a socket", path);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return error_set(err, GRPC_INTERNAL, errno, "socket");
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                         "socket %s is in use by another running process", path);
    if (unlink(path) < 0 && errno != ENOENT)
        return error_set(err, GRPC_INTERNAL, errno, "remove stale socket %s", path);
    log_info("removed stale socket path=%s", path);
    return 0;
}

/*
 * A directory only tinycrid's user may change (root, state, the socket's):
 * created 0700 when missing; refused when it is a symlink, not a directory,
 * or owned by another user (who could swap what tinycrid keeps there, the
 * socket kubelet connects to included); set to 0700 when it is not.
 */
static int secure_dir(const char *what, const char *path, struct error **err)
{
    if (mkdir_p(path, 0700, err) < 0)
        return error_prefix(err, "%s", what);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    /* O_DIRECTORY | O_NOFOLLOW on a symlink fails with ENOTDIR (ELOOP without O_DIRECTORY). */
    if (fd < 0 && (errno == ENOTDIR || errno == ELOOP) && lstat(path, &st) == 0 &&
        S_ISLNK(st.st_mode))
        return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                         "%s %s is a symlink; it must be a directory of its own", what, path);
    if (fd < 0 || fstat(fd, &st) < 0)
        return error_set(err, GRPC_INTERNAL, errno, "%s %s", what, path);
    if (st.st_uid != geteuid())
        return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                         "%s %s is owned by uid %u, not by tinycrid's uid %u", what, path,
                         (unsigned)st.st_uid, (unsigned)geteuid());
    if ((st.st_mode & 07777) != 0700) {
        if (fchmod(fd, 0700) < 0)
            return error_set(err, GRPC_INTERNAL, errno, "chmod 0700 %s", path);
        log_info("%s had mode %04o, set to 0700 path=%s", what, (unsigned)(st.st_mode & 07777),
                 path);
    }
    return 0;
}

/* Directories other programs use: the socket's must be one of its own. */
static bool is_shared_dir(const char *dir)
{
    static const char *const shared[] = {"/", "/run", "/var/run", "/tmp", "/var/tmp", "/dev/shm"};
    for (size_t i = 0; i < ARRAY_SIZE(shared); i++)
        if (strcmp(dir, shared[i]) == 0)
            return true;
    return false;
}

static int listen_unix(const char *path, struct error **err)
{
    _cleanup_free_ char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "socket path %s is not absolute", path);
    slash[slash == dir ? 1 : 0] = '\0';
    while (strlen(dir) > 1 && dir[strlen(dir) - 1] == '/')
        dir[strlen(dir) - 1] = '\0';
    if (is_shared_dir(dir))
        return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                         "socket %s: the socket needs a directory of its own (tinycrid makes "
                         "it 0700), not %s",
                         path, dir);
    if (secure_dir("socket directory", dir, err) < 0)
        return -1;
    struct sockaddr_un sa;
    if (fill_sockaddr(path, &sa, err) < 0 || clear_stale_socket(path, &sa, err) < 0)
        return -1;
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return error_set(err, GRPC_INTERNAL, errno, "socket");
    mode_t old = umask(0117);
    int rc = bind(fd, (const struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc < 0)
        return error_set(err, GRPC_INTERNAL, errno, "bind %s", path);
    if (chmod(path, 0660) < 0 || listen(fd, 256) < 0)
        return error_set(err, GRPC_INTERNAL, errno, "listen on %s", path);
    return steal_fd(&fd);
}

/* The daemon should outlive its containers under memory pressure; not fatal when denied. */
static void protect_from_oom(void)
{
    _cleanup_close_ int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "-999", 4) < 0)
        log_info("could not lower oom_score_adj (%s); continuing", strerror(errno));
}

static void on_drained(void *arg)
{
    loop_exit();
}

static void on_stop_signal(int signo, void *arg)
{
    struct daemon *d = arg;
    if (d->stopping) {
        log_warn("second %s: stopping now", strsignal(signo));
        loop_exit();
        return;
    }
    d->stopping = true;
    log_info("shutting down signal=%s timeout=%us", strsignal(signo), d->cfg.shutdown_timeout_s);
    loop_timer_free(steal_ptr(&d->status_timer));
    notify_send("STOPPING=1\nSTATUS=Stopping (%s): finishing calls in flight, at most %us",
                strsignal(signo), d->cfg.shutdown_timeout_s);
    /* Event streams never end on their own: end them so the drain does not wait for them. */
    events_service_close_all();
    h2_server_drain(d->server, (int64_t)d->cfg.shutdown_timeout_s * 1000, on_drained, d);
}

/*
 * systemd's STATUS= line (systemctl status): the pods and containers there
 * are. Sent when it changed, or always with force.
 */
static void send_status(struct daemon *d, bool force)
{
    size_t pods = sandbox_count(), ready = 0, ctrs = 0, running = 0;
    for (size_t i = 0; i < pods; i++) {
        const struct sandbox *sb = sandbox_at(i);
        if (sb && sb->state == SANDBOX_READY)
            ready++;
    }
    for (const struct container *c; (c = container_at(ctrs)); ctrs++) {
        if (c->state == CONTAINER_RUNNING)
            running++;
    }
    _cleanup_free_ char *text =
        xasprintf("Serving CRI on %s: %zu pods (%zu ready), %zu containers (%zu running)",
                  d->cfg.socket_path, pods, ready, ctrs, running);
    if (!force && d->status && strcmp(text, d->status) == 0)
        return;
    notify_send("STATUS=%s", text);
    free(d->status);
    d->status = steal_ptr(&text);
}

/* Pods and containers change in many places; a cheap poll keeps STATUS= current. */
#define STATUS_INTERVAL_MS 2000

static void on_status_timer(void *arg)
{
    struct daemon *d = arg;
    send_status(d, false);
    loop_timer_arm(d->status_timer, STATUS_INTERVAL_MS);
}

/* Apply a reloaded config: only what is safe to change while serving. */
static void reload(struct daemon *d)
{
    image_service_import(&d->is);
    if (!d->cfg.file) {
        log_info("SIGHUP: no config file to reload");
        return;
    }
    struct config fresh;
    config_init_defaults(&fresh);
    _cleanup_error_ struct error *err = NULL;
    if (config_load_file(&fresh, d->cfg.file, &err) < 0) {
        log_error("reload failed, keeping the running config: %s", err->msg);
        config_free(&fresh);
        return;
    }
    if (strcmp(fresh.socket_path, d->cfg.socket_path) || strcmp(fresh.root_dir, d->cfg.root_dir) ||
        strcmp(fresh.state_dir, d->cfg.state_dir))
        log_warn("reload: socket, root_dir and state_dir changes need a restart");
    if (strcmp(fresh.stream_address, d->cfg.stream_address) ||
        fresh.stream_port != d->cfg.stream_port)
        log_warn("reload: [stream] address and port changes need a restart");
    log_set_level(fresh.log_level);
    d->cfg.log_level = fresh.log_level;
    d->cfg.cgroup_driver = fresh.cgroup_driver;
    d->cfg.cni_timeout_s = fresh.cni_timeout_s;
    d->cfg.shutdown_timeout_s = fresh.shutdown_timeout_s;
    d->cfg.stream_idle_timeout_s = fresh.stream_idle_timeout_s;
    d->cfg.stream_creation_timeout_s = fresh.stream_creation_timeout_s;
    d->cfg.stream_token_timeout_s = fresh.stream_token_timeout_s;
    stream_service_reload(&d->cfg);
    char *tmp = d->cfg.cni_conf_dir;
    d->cfg.cni_conf_dir = fresh.cni_conf_dir;
    fresh.cni_conf_dir = tmp;
    for (size_t i = 0; i < CONFIG_MAX_DIRS; i++) {
        char *t = d->cfg.cni_bin_dirs[i];
        d->cfg.cni_bin_dirs[i] = fresh.cni_bin_dirs[i];
        fresh.cni_bin_dirs[i] = t;
    }
    size_t n = d->cfg.n_cni_bin_dirs;
    d->cfg.n_cni_bin_dirs = fresh.n_cni_bin_dirs;
    fresh.n_cni_bin_dirs = n;
    config_free(&fresh);
    log_info("configuration reloaded file=%s log_level=%s", d->cfg.file,
             log_level_name(d->cfg.log_level));
}

/* SIGHUP: tell systemd a reload is under way until it is done (systemctl reload waits). */
static void on_reload_signal(int signo, void *arg)
{
    struct daemon *d = arg;
    notify_send("RELOADING=1\nMONOTONIC_USEC=%lld", (long long)(now_monotonic_ns() / 1000));
    reload(d);
    notify_send("READY=1");
    send_status(d, true);
}

static int start(struct daemon *d, struct error **err)
{
    const struct config *c = &d->cfg;
    if (secure_dir("root directory", c->root_dir, err) < 0 ||
        secure_dir("state directory", c->state_dir, err) < 0)
        return -1;
    d->lock_fd = lock_root(c->root_dir, err);
    if (d->lock_fd < 0)
        return -1;
    if (loop_init(err) < 0)
        return -1;
    if (loop_watch_signal(SIGTERM, on_stop_signal, d, err) < 0 ||
        loop_watch_signal(SIGINT, on_stop_signal, d, err) < 0 ||
        loop_watch_signal(SIGHUP, on_reload_signal, d, err) < 0)
        return -1;
    protect_from_oom();
    /* containers: probe the OCI runtimes before anything asks about them */
    if (runtime_init(&d->cfg, err) < 0)
        return -1;
    if (sandbox_init(&d->cfg, &container_sandbox_hooks, err) < 0)
        return -1;

    runtime_service_init(&d->rs, &d->cfg);
    if (image_service_init(&d->is, &d->cfg, err) < 0)
        return -1;
    /* containers: records and live keepers (needs the image store) */
    container_service_init(&d->cfg, d->is.store);
    if (container_init(&d->cfg, d->is.store, err) < 0)
        return -1;
    if (stream_service_init(&d->cfg, err) < 0)
        return -1;
    /* stats, events and resource updates listen to the containers */
    stats_service_init(&d->cfg);
    events_service_init();
    resources_init(&d->cfg);
    list_reply_init(c->max_send_msg_size);
    d->router = cri_methods_router_new(&d->rs, &d->is);
    image_service_import(&d->is);
    int fd = listen_unix(c->socket_path, err);
    if (fd < 0)
        return -1;
    struct h2_server_opts opts = {
        .max_recv_msg = c->max_recv_msg_size,
        .max_send_msg = c->max_send_msg_size,
        .max_streams = c->max_streams,
        .max_connections = c->max_connections,
        .max_header_list = 16 * 1024,
        .handshake_ms = (int64_t)c->handshake_timeout_s * 1000,
        .keepalive_ms = (int64_t)c->keepalive_time_s * 1000,
        .keepalive_timeout_ms = (int64_t)c->keepalive_timeout_s * 1000,
    };
    d->server = h2_server_new(fd, &opts, router_dispatch, d->router, err);
    if (!d->server) {
        close(fd);
        unlink(c->socket_path);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct daemon d = {.lock_fd = -1};
    config_init_defaults(&d.cfg);
    _cleanup_error_ struct error *err = NULL;
    bool check = false;
    if (parse_args(argc, argv, &d.cfg, &check, &err) < 0) {
        /* --check-config: a bad file is a problem line like the others */
        fprintf(check ? stdout : stderr, "%s%s\n", check ? "config: " : "tinycrid: ", err->msg);
        config_free(&d.cfg);
        return 1;
    }
    log_set_level(d.cfg.log_level);
    if (check) {
        int rc = check_run(&d.cfg, stdout);
        config_free(&d.cfg);
        return rc;
    }
    notify_init(); /* before start() spawns children: they must not see $NOTIFY_SOCKET */
    if (start(&d, &err) < 0) {
        log_error("start-up failed: %s", err->msg);
        fprintf(stderr, "tinycrid: %s\n", err->msg);
        notify_send("STATUS=Start-up failed: %s", err->msg);
        d.exit_code = 1;
    } else {
        log_info("tinycrid %s serving CRI v1 socket=%s root=%s state=%s", PACKAGE_VERSION,
                 d.cfg.socket_path, d.cfg.root_dir, d.cfg.state_dir);
        /* The socket is listening: calls queue in its backlog until the loop runs. */
        notify_send("READY=1");
        send_status(&d, true);
        if (notify_enabled()) {
            d.status_timer = loop_timer_new(on_status_timer, &d);
            loop_timer_arm(d.status_timer, STATUS_INTERVAL_MS);
        }
        if (loop_run() < 0)
            d.exit_code = 1;
        if (unlink(d.cfg.socket_path) < 0 && errno != ENOENT)
            log_warn("could not remove socket path=%s: %s", d.cfg.socket_path, strerror(errno));
        log_info("tinycrid stopped");
    }
    loop_timer_free(d.status_timer);
    free(d.status);
    notify_shutdown();
    h2_server_free(d.server);
    router_free(d.router);
    image_service_clear(&d.is);
    runtime_service_clear(&d.rs);
    resources_shutdown();
    stats_service_shutdown();
    container_shutdown(); /* containers: keepers keep running */
    runtime_shutdown();
    sandbox_shutdown();
    xferlib_shutdown();
    loop_shutdown();
    if (d.lock_fd >= 0)
        close(d.lock_fd);
    config_free(&d.cfg);
    return d.exit_code;
}
