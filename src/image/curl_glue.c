/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Implementation of curl_glue.h.
 */
#include "autoconf.h"

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "image/curl_glue.h"
#include "image/xferlib.h"

/* A socket curl asked us to watch. */
struct curl_sock {
    TAILQ_ENTRY(curl_sock) link;
    struct curl_glue *g;
    curl_socket_t fd;
    struct event *ev;
};

static void sock_free(struct curl_glue *g, struct curl_sock *w)
{
    TAILQ_REMOVE(&g->socks, w, link);
    if (w->ev)
        event_free(w->ev);
    free(w);
}

static void socket_action(struct curl_glue *g, curl_socket_t fd, int flags)
{
    int running = 0;
    g->depth++;
    xcurl.multi_socket_action(g->multi, fd, flags, &running);
    g->depth--;
    g->after(g->arg);
}

static void on_sock_event(evutil_socket_t fd, short what, void *arg)
{
    struct curl_sock *w = arg;
    /* w may be freed by curl's socket callback during the action: keep only g and fd. */
    struct curl_glue *g = w->g;
    int flags =
        ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    socket_action(g, (curl_socket_t)fd, flags);
}

static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct curl_glue *g = userp;
    struct curl_sock *w = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (w) {
            xcurl.multi_assign(g->multi, s, NULL);
            sock_free(g, w);
        }
        return 0;
    }
    if (!w) {
        w = xcalloc(1, sizeof(*w));
        w->g = g;
        w->fd = s;
        TAILQ_INSERT_HEAD(&g->socks, w, link);
        xcurl.multi_assign(g->multi, s, w);
    }
    if (w->ev) {
        event_free(w->ev);
        w->ev = NULL;
    }
    short flags = EV_PERSIST;
    if (what & CURL_POLL_IN)
        flags |= EV_READ;
    if (what & CURL_POLL_OUT)
        flags |= EV_WRITE;
    w->ev = loop_event_new(s, flags, on_sock_event, w);
    if (event_add(w->ev, NULL) < 0) {
        static const char msg[] = "level=fatal msg=\"cannot watch a curl socket\"\n";
        (void)!write(2, msg, sizeof(msg) - 1);
        abort();
    }
    return 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct curl_glue *g = userp;
    if (timeout_ms < 0)
        loop_timer_disarm(g->timer);
    else
        loop_timer_arm(g->timer, timeout_ms);
    return 0;
}

static void on_timeout(void *arg)
{
    socket_action(arg, CURL_SOCKET_TIMEOUT, 0);
}

void curl_glue_init(struct curl_glue *g, void (*after)(void *arg), void *arg)
{
    g->multi = NULL;
    g->timer = loop_timer_new(on_timeout, g);
    TAILQ_INIT(&g->socks);
    g->depth = 0;
    g->after = after;
    g->arg = arg;
}

struct fd_list {
    int *fds;
    size_t n;
};

static void fd_list_read(struct fd_list *l)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
            continue;
        l->fds = xrealloc(l->fds, (l->n + 1) * sizeof(l->fds[0]));
        l->fds[l->n++] = atoi(e->d_name);
    }
    closedir(d);
}

/*
 * curl_multi_init() makes a socketpair (to wake curl_multi_poll) without
 * SOCK_CLOEXEC, and libcurl gives no way to reach it; loading libcurl may
 * open files too. Mark every fd that appeared since before was read
 * close-on-exec, so that the runtimes and unpackers the daemon spawns do
 * not inherit them.
 */
static void cloexec_new_fds(const struct fd_list *before)
{
    struct fd_list after = {0};
    fd_list_read(&after);
    for (size_t i = 0; i < after.n; i++) {
        bool old = false;
        for (size_t j = 0; j < before->n && !old; j++)
            old = before->fds[j] == after.fds[i];
        if (!old)
            fd_set_cloexec(after.fds[i], true);
    }
    free(after.fds);
}

int curl_glue_open(struct curl_glue *g, struct error **err)
{
    if (g->multi)
        return 0;
    struct fd_list before = {0};
    fd_list_read(&before);
    if (xferlib_acquire(err) < 0) {
        free(before.fds);
        return -1;
    }
    g->multi = xcurl.multi_init();
    cloexec_new_fds(&before);
    free(before.fds);
    if (!g->multi) {
        xferlib_release();
        return error_set(err, GRPC_INTERNAL, 0, "curl_multi_init failed");
    }
    xcurl.multi_setopt(g->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    xcurl.multi_setopt(g->multi, CURLMOPT_SOCKETDATA, g);
    xcurl.multi_setopt(g->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    xcurl.multi_setopt(g->multi, CURLMOPT_TIMERDATA, g);
    log_debug("curl multi handle created");
    return 0;
}

void curl_glue_close(struct curl_glue *g)
{
    if (!g->multi)
        return;
    /* Its socket callback may run during the cleanup, and still needs g->multi. */
    xcurl.multi_cleanup(g->multi);
    g->multi = NULL;
    while (!TAILQ_EMPTY(&g->socks))
        sock_free(g, TAILQ_FIRST(&g->socks));
    loop_timer_disarm(g->timer);
    xferlib_release();
    log_debug("curl multi handle cleaned up");
}

void curl_glue_clear(struct curl_glue *g)
{
    curl_glue_close(g);
    loop_timer_free(g->timer);
    g->timer = NULL;
}
