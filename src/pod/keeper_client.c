/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Implementation of keeper_client.h. The keeper is forked here directly,
 * not through child_spawn(): it must outlive the daemon, so the loop does
 * not own it; pod/container watches it through a pidfd instead.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "keeper/protocol.h"
#include "pod/keeper_client.h"

extern char **environ;

#define EXIT_RECORD_MAX 4096
#define LOG_READ_MAX (64 * 1024)
#define LOG_TAIL_MAX 512
#define CMDLINE_MAX (64 * 1024)

/* ---- starting a keeper ---- */

/* In the keeper's child: its fds 0-3 in place, signals as a fresh process has them. */
__attribute__((noreturn)) static void exec_keeper(char **argv, int null_fd, int log_fd,
                                                  int status_fd)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < _NSIG; sig++)
        sigaction(sig, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /*
     * The daemon may run with a very low oom_score_adj (-999 under systemd); the keeper
     * keeps one step less of that protection, as containerd's shims do. Containers get
     * the kubelet's score from the spec (or inherit the keeper's when it is negative).
     */
    int oom_fd = open("/proc/self/oom_score_adj", O_RDWR | O_CLOEXEC);
    if (oom_fd >= 0) {
        char buf[16] = {0};
        ssize_t n = read(oom_fd, buf, sizeof(buf) - 1);
        int score = n > 0 ? atoi(buf) : 0;
        if (score < 0) {
            n = snprintf(buf, sizeof(buf), "%d", score + 1);
            (void)!pwrite(oom_fd, buf, (size_t)n, 0);
        }
        close(oom_fd);
    }
    int fds[4] = {null_fd, null_fd, log_fd, status_fd};
    for (int i = 0; i < 4; i++) {
        if (fds[i] <= KEEPER_STATUS_FD)
            fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, KEEPER_STATUS_FD + 1);
        if (fds[i] < 0)
            _exit(127);
    }
    for (int i = 0; i < 4; i++) {
        if (dup2(fds[i], i) < 0)
            _exit(127);
    }
    execve(argv[0], argv, environ);
    dprintf(2, "tinycrid: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int keeper_spawn(const struct keeper_args *a, pid_t *pid_out, int *pidfd_out, int *status_fd,
                 struct error **err)
{
    const char *log = a->log_path && *a->log_path ? a->log_path : "/dev/null";
    char *argv[24];
    size_t n = 0;
    argv[n++] = (char *)a->keeper_path;
    argv[n++] = (char *)"--" KEEPER_OPT_ID;
    argv[n++] = (char *)a->id;
    argv[n++] = (char *)"--" KEEPER_OPT_BUNDLE;
    argv[n++] = (char *)a->state_dir;
    argv[n++] = (char *)"--" KEEPER_OPT_RUNTIME;
    argv[n++] = (char *)a->runtime_path;
    argv[n++] = (char *)"--" KEEPER_OPT_RUNTIME_ROOT;
    argv[n++] = (char *)a->runtime_root;
    argv[n++] = (char *)"--" KEEPER_OPT_STATE_DIR;
    argv[n++] = (char *)a->state_dir;
    argv[n++] = (char *)"--" KEEPER_OPT_LOG_PATH;
    argv[n++] = (char *)log;
    if (a->tty)
        argv[n++] = (char *)"--" KEEPER_OPT_TTY;
    if (a->stdin_open)
        argv[n++] = (char *)"--" KEEPER_OPT_STDIN;
    if (a->stdin_once)
        argv[n++] = (char *)"--" KEEPER_OPT_STDIN_ONCE;
    if (a->cgroup_path) {
        argv[n++] = (char *)"--" KEEPER_OPT_CGROUP_PATH;
        argv[n++] = (char *)a->cgroup_path;
    }
    argv[n] = NULL;

    _cleanup_free_ char *log_file = xasprintf("%s/" KEEPER_FILE_LOG, a->state_dir);
    _cleanup_close_ int log_fd =
        open(log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    _cleanup_close_ int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (log_fd < 0 || null_fd < 0)
        return error_set(err, GRPC_INTERNAL, errno, "open the keeper's stdio");
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return error_set(err, GRPC_INTERNAL, errno, "pipe");
    _cleanup_close_ int status_r = p[0], status_w = p[1];
    pid_t pid = fork();
    if (pid < 0)
        return error_set(err, GRPC_INTERNAL, errno, "fork the keeper");
    if (pid == 0)
        exec_keeper(argv, null_fd, log_fd, status_w);
    /* Not reaped before its pidfd says so: opening it now cannot race a reused pid. */
    int pidfd = pidfd_open(pid, 0);
    if (pidfd < 0 || fd_set_nonblock(status_r, true) < 0) {
        error_set(err, GRPC_INTERNAL, errno, "watch the keeper");
        if (pidfd >= 0)
            close(pidfd);
        /* Just forked: killed, it is reaped at once. */
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        return -1;
    }
    *pid_out = pid;
    *pidfd_out = pidfd;
    *status_fd = steal_fd(&status_r);
    log_debug("keeper started container=%s keeper=%d", a->id, (int)pid);
    return 0;
}

/* ---- what it reports and records ---- */

char *keeper_log_tail(const char *state_dir)
{
    _cleanup_free_ char *path = xasprintf("%s/" KEEPER_FILE_LOG, state_dir);
    _cleanup_error_ struct error *tmp = NULL;
    size_t len = 0;
    _cleanup_free_ char *text = read_file_capped(path, LOG_READ_MAX, &len, &tmp);
    if (!text)
        return xstrdup("");
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
        text[--len] = '\0';
    const char *start = len > LOG_TAIL_MAX ? text + len - LOG_TAIL_MAX : text;
    char *out = xstrdup(start);
    for (char *p = out; *p; p++) {
        if (*p == '\n')
            *p = ' ';
    }
    return out;
}

int keeper_status_parse(const char *line, const char *state_dir, int *pid_out, struct error **err)
{
    size_t len = strcspn(line, "\n");
    int pid = 0;
    char tail;
    if (sscanf(line, KEEPER_STATUS_CREATED "%d%c", &pid, &tail) == 2 && tail == '\n' && pid > 1) {
        *pid_out = pid;
        return 0;
    }
    size_t head = strlen(KEEPER_STATUS_ERROR);
    if (str_has_prefix(line, KEEPER_STATUS_ERROR))
        return error_set(err, GRPC_INTERNAL, 0, "create the container: %.*s", (int)(len - head),
                         line + head);
    _cleanup_free_ char *tail_text = keeper_log_tail(state_dir);
    return error_set(err, GRPC_INTERNAL, 0, "the keeper exited without reporting%s%s",
                     *tail_text ? ": " : "", tail_text);
}

int keeper_exit_read(const char *state_dir, struct keeper_exit *out)
{
    _cleanup_free_ char *path = xasprintf("%s/" KEEPER_FILE_EXIT, state_dir);
    _cleanup_error_ struct error *tmp = NULL;
    size_t len = 0;
    _cleanup_free_ char *text = read_file_capped(path, EXIT_RECORD_MAX, &len, &tmp);
    if (!text)
        return -1;
    json_error_t jerr;
    _cleanup_json_ json_t *o = json_loadb(text, len, 0, &jerr);
    if (!json_is_object(o) || !json_is_integer(json_object_get(o, KEEPER_EXIT_CODE)))
        return -1;
    out->exit_code = (int)json_integer_value(json_object_get(o, KEEPER_EXIT_CODE));
    out->finished_ns = json_integer_value(json_object_get(o, KEEPER_EXIT_FINISHED_AT));
    out->oom_killed = json_is_true(json_object_get(o, KEEPER_EXIT_OOM_KILLED));
    return 0;
}

bool keeper_is_for(int pid, const char *id)
{
    _cleanup_free_ char *path = xasprintf("/proc/%d/cmdline", pid);
    _cleanup_error_ struct error *tmp = NULL;
    size_t len = 0;
    _cleanup_free_ char *text = read_file_capped(path, CMDLINE_MAX, &len, &tmp);
    if (!text || len == 0)
        return false;
    if (!strstr(text, KEEPER_BINARY))
        return false;
    for (size_t off = 0; off < len;) {
        const char *arg = text + off;
        size_t alen = strlen(arg);
        if (strcmp(arg, "--" KEEPER_OPT_ID) == 0 && off + alen + 1 < len)
            return strcmp(arg + alen + 1, id) == 0;
        off += alen + 1;
    }
    return false;
}

/* ---- the control socket ---- */

struct keeper_ctl {
    TAILQ_ENTRY(keeper_ctl) link; /* ctls, until finished */
    char *id;
    int fd;
    struct event *ev;
    struct loop_timer *timer;
    char line[KEEPER_CTL_LINE_MAX];
    size_t len;
    keeper_ctl_cb cb; /* NULL once finished */
    void *arg;
};

static TAILQ_HEAD(, keeper_ctl) ctls = TAILQ_HEAD_INITIALIZER(ctls);

static void ctl_free(void *obj)
{
    struct keeper_ctl *k = obj;
    if (k->ev)
        event_free(k->ev);
    if (k->fd >= 0)
        close(k->fd);
    loop_timer_free(k->timer);
    free(k->id);
    free(k);
}

static void ctl_finish(struct keeper_ctl *k, const struct error *err)
{
    if (!k->cb)
        return;
    TAILQ_REMOVE(&ctls, k, link);
    event_del(k->ev);
    loop_timer_disarm(k->timer);
    keeper_ctl_cb cb = steal_ptr(&k->cb);
    cb(err, k->arg);
    loop_defer_free(ctl_free, k);
}

static void on_ctl_readable(evutil_socket_t fd, short what, void *arg)
{
    struct keeper_ctl *k = arg;
    if (!k->cb)
        return;
    ssize_t n = recv(fd, k->line + k->len, sizeof(k->line) - 1 - k->len, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    _cleanup_error_ struct error *err = NULL;
    if (n <= 0) {
        error_set(&err, GRPC_INTERNAL, n < 0 ? errno : 0,
                  "container %s: the keeper closed the control connection", k->id);
        ctl_finish(k, err);
        return;
    }
    k->len += (size_t)n;
    k->line[k->len] = '\0';
    char *nl = strchr(k->line, '\n');
    if (!nl && k->len < sizeof(k->line) - 1)
        return;
    if (nl)
        *nl = '\0';
    if (strcmp(k->line, KEEPER_REPLY_OK) != 0)
        error_set(&err, GRPC_INTERNAL, 0, "container %s: keeper: %s", k->id,
                  str_has_prefix(k->line, KEEPER_REPLY_ERROR) ? k->line + strlen(KEEPER_REPLY_ERROR)
                                                              : k->line);
    ctl_finish(k, err);
}

static void on_ctl_timeout(void *arg)
{
    struct keeper_ctl *k = arg;
    _cleanup_error_ struct error *err = NULL;
    error_set(&err, GRPC_DEADLINE_EXCEEDED, 0, "container %s: the keeper did not answer", k->id);
    ctl_finish(k, err);
}

/*
 * A connected, non-blocking socket to the keeper's socket <state_dir>/<name>.
 * A long state dir does not fit sun_path: connect through an O_PATH fd on it
 * (the path is resolved at connect time; the fd can go right after).
 */
static int keeper_connect(const char *id, const char *state_dir, const char *name,
                          struct error **err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    _cleanup_close_ int dir_fd = -1;
    if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", state_dir, name) >=
        sizeof(sa.sun_path)) {
        dir_fd = open(state_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0)
            return error_set(err, errno == ENOENT ? GRPC_FAILED_PRECONDITION : GRPC_INTERNAL, errno,
                             "container %s: open %s", id, state_dir);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dir_fd, name);
    }
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return error_set(err, GRPC_INTERNAL, errno, "socket");
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return error_set(err,
                         errno == ENOENT || errno == ECONNREFUSED ? GRPC_FAILED_PRECONDITION
                                                                  : GRPC_UNAVAILABLE,
                         errno, "container %s: connect to the keeper", id);
    return steal_fd(&fd);
}

struct keeper_ctl *keeper_ctl_send(const char *id, const char *state_dir, const char *cmd,
                                   int64_t timeout_ms, keeper_ctl_cb cb, void *arg,
                                   struct error **err)
{
    _cleanup_close_ int fd = keeper_connect(id, state_dir, KEEPER_SOCKET_CTL, err);
    if (fd < 0)
        return NULL;
    _cleanup_free_ char *line = xasprintf("%s\n", cmd);
    size_t len = strlen(line);
    if (len > KEEPER_CTL_LINE_MAX)
        return error_set(err, GRPC_INTERNAL, 0, "keeper command too long"), NULL;
    if (send(fd, line, len, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)len)
        return error_set(err, GRPC_UNAVAILABLE, errno, "container %s: write to the keeper", id),
               NULL;
    struct keeper_ctl *k = xcalloc(1, sizeof(*k));
    k->id = xstrdup(id);
    k->fd = steal_fd(&fd);
    k->ev = loop_event_new(k->fd, EV_READ | EV_PERSIST, on_ctl_readable, k);
    k->timer = loop_timer_new(on_ctl_timeout, k);
    if (event_add(k->ev, NULL) < 0) {
        ctl_free(k);
        return error_set(err, GRPC_INTERNAL, 0, "watch the keeper connection"), NULL;
    }
    k->cb = cb;
    k->arg = arg;
    loop_timer_arm(k->timer, timeout_ms);
    TAILQ_INSERT_HEAD(&ctls, k, link);
    return k;
}

void keeper_ctl_abort_all(const struct error *err)
{
    while (!TAILQ_EMPTY(&ctls))
        ctl_finish(TAILQ_FIRST(&ctls), err);
}

/* ---- the attach socket ---- */

int keeper_attach_connect(const char *id, const char *state_dir, bool in, bool out, bool errs,
                          struct error **err)
{
    _cleanup_close_ int fd = keeper_connect(id, state_dir, KEEPER_SOCKET_ATTACH, err);
    if (fd < 0)
        return -1;
    char line[KEEPER_ATTACH_LINE_MAX];
    int n = snprintf(line, sizeof(line), "%s%s%s%s\n", KEEPER_ATTACH_REQUEST,
                     in ? " " KEEPER_ATTACH_STDIN : "", out ? " " KEEPER_ATTACH_STDOUT : "",
                     errs ? " " KEEPER_ATTACH_STDERR : "");
    /* A fresh unix socket takes a few bytes at once. */
    if (send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n)
        return error_set(err, GRPC_UNAVAILABLE, errno, "container %s: attach to the keeper", id);
    return steal_fd(&fd);
}
