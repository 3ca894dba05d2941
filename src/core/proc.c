/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Process trees behind proc.h. Each member is in one of three states: just
 * signalled (SIGSTOP sent, not yet seen stopped), scanned (seen stopped, its
 * children added) or gone. The tree is settled when no member is still in
 * the first state.
 */
#include "autoconf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <time.h>
#include <unistd.h>

#include "core/proc.h"
#include "core/util.h"

#define STAT_MAX 1024
#define CHILDREN_MAX (64 * 1024)

enum member_state {
    MEMBER_STOPPING, /* SIGSTOP sent; waits for /proc to show it stopped */
    MEMBER_SCANNED,  /* stopped and its children added: it can fork no more */
    MEMBER_GONE,     /* exited (or a zombie): its children went elsewhere */
};

struct member {
    pid_t pid;
    int pidfd;
    enum member_state state;
};

struct proc_tree {
    struct member m[PROC_TREE_MAX];
    size_t n;
};

/* State letter and parent from /proc/<pid>/stat; false when the process is gone. */
static bool read_stat(pid_t pid, char *state, pid_t *ppid)
{
    char path[64], text[STAT_MAX];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (read_file_into(path, 0, text, sizeof(text), true) < 0)
        return false;
    /* "pid (comm) state ppid ...": comm may hold spaces and parentheses. */
    const char *p = strrchr(text, ')');
    int parent;
    if (!p || sscanf(p + 1, " %c %d", state, &parent) != 2)
        return false;
    *ppid = (pid_t)parent;
    return true;
}

pid_t proc_parent(pid_t pid)
{
    char state;
    pid_t ppid;
    return read_stat(pid, &state, &ppid) ? ppid : -1;
}

static bool tree_has(const struct proc_tree *t, pid_t pid)
{
    for (size_t i = 0; i < t->n; i++) {
        if (t->m[i].pid == pid)
            return true;
    }
    return false;
}

/*
 * Add pid and send it SIGSTOP, when it is still parent's child (any parent
 * when parent is 0; through a copy of pidfd when >= 0).
 */
static void tree_add(struct proc_tree *t, pid_t pid, pid_t parent, int pidfd)
{
    if (t->n == PROC_TREE_MAX)
        return;
    int fd = pidfd >= 0 ? fcntl(pidfd, F_DUPFD_CLOEXEC, 3) : pidfd_open(pid, 0);
    if (fd < 0)
        return;
    /* The pidfd pins the process: if its parent is right now, it is the one we saw. */
    if (parent > 0 && proc_parent(pid) != parent) {
        close(fd);
        return;
    }
    if (pidfd_send_signal(fd, SIGSTOP, NULL, 0) < 0) {
        close(fd);
        return;
    }
    t->m[t->n++] = (struct member){.pid = pid, .pidfd = fd, .state = MEMBER_STOPPING};
}

/* Add the children of every thread of member i. */
static void add_children(struct proc_tree *t, size_t i)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)t->m[i].pid);
    DIR *dir = opendir(path);
    if (!dir)
        return;
    _cleanup_free_ char *text = xmalloc(CHILDREN_MAX);
    struct dirent *de;
    while ((de = readdir(dir))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char cpath[sizeof(path) + sizeof(de->d_name) + 16];
        snprintf(cpath, sizeof(cpath), "%s/%s/children", path, de->d_name);
        if (read_file_into(cpath, 0, text, CHILDREN_MAX, true) < 0)
            continue;
        for (char *p = text, *end; *p; p = end) {
            long child = strtol(p, &end, 10);
            if (end == p)
                break;
            if (child > 0 && !tree_has(t, (pid_t)child))
                tree_add(t, (pid_t)child, t->m[i].pid, -1);
        }
    }
    closedir(dir);
}

struct proc_tree *proc_tree_freeze(pid_t pid, int pidfd)
{
    if (pid <= 1)
        return NULL;
    struct proc_tree *t = xmalloc(sizeof(*t));
    t->n = 0;
    tree_add(t, pid, 0, pidfd);
    if (t->n == 0) {
        free(t);
        return NULL;
    }
    return t;
}

bool proc_tree_settle(struct proc_tree *t)
{
    bool settled = true;
    /* Members added during the pass are looked at in the same pass. */
    for (size_t i = 0; i < t->n; i++) {
        struct member *m = &t->m[i];
        if (m->state != MEMBER_STOPPING)
            continue;
        char state;
        pid_t ppid;
        /* Signal 0 through the pidfd: it has not been reaped, so the pid is still its own. */
        if (pidfd_send_signal(m->pidfd, 0, NULL, 0) < 0 || !read_stat(m->pid, &state, &ppid) ||
            state == 'Z' || state == 'X') {
            m->state = MEMBER_GONE;
            continue;
        }
        if (state != 'T' && state != 't') {
            settled = false;
            continue;
        }
        m->state = MEMBER_SCANNED;
        add_children(t, i);
    }
    return settled;
}

size_t proc_tree_kill(struct proc_tree *t)
{
    size_t killed = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (t->m[i].state != MEMBER_GONE && pidfd_send_signal(t->m[i].pidfd, SIGKILL, NULL, 0) == 0)
            killed++;
    }
    return killed;
}

void proc_tree_free(struct proc_tree *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        close(t->m[i].pidfd);
    free(t);
}

size_t proc_kill_tree(pid_t pid, int pidfd, int max_wait_ms)
{
    struct proc_tree *t = proc_tree_freeze(pid, pidfd);
    if (!t)
        return 0;
    int64_t until = now_monotonic_ns() + (int64_t)max_wait_ms * 1000000;
    while (!proc_tree_settle(t) && now_monotonic_ns() < until) {
        struct timespec ts = {.tv_nsec = 200 * 1000};
        nanosleep(&ts, NULL);
    }
    size_t n = proc_tree_kill(t);
    proc_tree_free(t);
    return n;
}
