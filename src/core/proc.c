/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Process trees behind proc.h. A tree is walked breadth-first from its root;
 * each process found is stopped before its own children are read, so the
 * walk races only with forks that were already under way, and a second pass
 * over the stopped tree catches those.
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
#include <unistd.h>

#include "core/proc.h"
#include "core/util.h"

#define STAT_MAX 1024
#define CHILDREN_MAX (64 * 1024)
#define MAX_PASSES 4

struct tree {
    pid_t pids[PROC_TREE_MAX];
    int pidfds[PROC_TREE_MAX];
    size_t n;
};

/* Read a small /proc file into buf (NUL-terminated); returns its length or -1. */
static ssize_t read_proc(const char *path, char *buf, size_t size)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len + 1 < size) {
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return (ssize_t)len;
}

pid_t proc_parent(pid_t pid)
{
    char path[64], text[STAT_MAX];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (read_proc(path, text, sizeof(text)) < 0)
        return -1;
    /* "pid (comm) state ppid ...": comm may hold spaces and parentheses. */
    const char *p = strrchr(text, ')');
    int ppid;
    char state;
    if (!p || sscanf(p + 1, " %c %d", &state, &ppid) != 2)
        return -1;
    return (pid_t)ppid;
}

static bool tree_has(const struct tree *t, pid_t pid)
{
    for (size_t i = 0; i < t->n; i++) {
        if (t->pids[i] == pid)
            return true;
    }
    return false;
}

/*
 * Add pid, stopped, when it is still parent's child (any parent when parent is
 * 0; through a copy of pidfd when >= 0); false when the tree is full.
 */
static bool tree_add(struct tree *t, pid_t pid, pid_t parent, int pidfd)
{
    if (t->n == PROC_TREE_MAX)
        return false;
    int fd = pidfd >= 0 ? fcntl(pidfd, F_DUPFD_CLOEXEC, 3) : pidfd_open(pid, 0);
    if (fd < 0)
        return true;
    /* The pidfd pins the process: if its parent is right now, it is the one we saw. */
    if (parent > 0 && proc_parent(pid) != parent) {
        close(fd);
        return true;
    }
    pidfd_send_signal(fd, SIGSTOP, NULL, 0);
    t->pids[t->n] = pid;
    t->pidfds[t->n] = fd;
    t->n++;
    return true;
}

/* Add the children of every thread of t->pids[i]; returns how many were new. */
static size_t add_children(struct tree *t, size_t i)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)t->pids[i]);
    DIR *dir = opendir(path);
    if (!dir)
        return 0;
    size_t added = 0;
    _cleanup_free_ char *text = xmalloc(CHILDREN_MAX);
    struct dirent *de;
    while ((de = readdir(dir))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char cpath[sizeof(path) + sizeof(de->d_name) + 16];
        snprintf(cpath, sizeof(cpath), "%s/%s/children", path, de->d_name);
        if (read_proc(cpath, text, CHILDREN_MAX) < 0)
            continue;
        for (char *p = text, *end; *p; p = end) {
            long child = strtol(p, &end, 10);
            if (end == p)
                break;
            if (child > 0 && !tree_has(t, (pid_t)child)) {
                size_t before = t->n;
                if (!tree_add(t, (pid_t)child, t->pids[i], -1))
                    break;
                added += t->n - before;
            }
        }
    }
    closedir(dir);
    return added;
}

size_t proc_kill_tree(pid_t pid, int pidfd)
{
    if (pid <= 1)
        return 0;
    struct tree *t = xmalloc(sizeof(*t));
    t->n = 0;
    tree_add(t, pid, 0, pidfd);
    for (int pass = 0; pass < MAX_PASSES && t->n > 0; pass++) {
        size_t added = 0;
        for (size_t i = 0; i < t->n; i++)
            added += add_children(t, i);
        if (!added && pass > 0)
            break;
    }
    size_t killed = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (pidfd_send_signal(t->pidfds[i], SIGKILL, NULL, 0) == 0)
            killed++;
        close(t->pidfds[i]);
    }
    free(t);
    return killed;
}
