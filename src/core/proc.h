/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Process trees seen through /proc: finding every descendant of a process
 * (through /proc/<pid>/task/<tid>/children) so that a whole tree can be
 * frozen and killed, e.g. an exec'd command and everything it started.
 *
 * A process's children list is complete only once the process is stopped:
 * a fork in progress when SIGSTOP is sent still creates its child. So a tree
 * is frozen in steps: every process found gets SIGSTOP, and its children are
 * read only when /proc shows it stopped. proc_tree_settle() does one such
 * step and never waits, so the loop can call it from a timer.
 */
#ifndef TINYCRI_CORE_PROC_H
#define TINYCRI_CORE_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Most processes one tree holds; beyond it, descendants are not tracked. */
#define PROC_TREE_MAX 4096

struct proc_tree;

/*
 * Start freezing the tree rooted at pid: the root gets SIGSTOP. pidfd
 * (borrowed; -1 for none) is the caller's pidfd of the root; descendants are
 * held through pidfds opened while their parent was known, so a recycled pid
 * is never signalled. Returns NULL when the root is already gone.
 */
struct proc_tree *proc_tree_freeze(pid_t pid, int pidfd);

/*
 * One step: each process that has stopped since the last step has its
 * children read, and they get SIGSTOP in turn. Returns true once every
 * process of the tree is stopped (or gone) and its children are known, i.e.
 * the tree is complete and nothing in it can fork any more.
 */
bool proc_tree_settle(struct proc_tree *t);

/* SIGKILL every process held (frozen or not); returns how many were signalled. */
size_t proc_tree_kill(struct proc_tree *t);

/* Close the pidfds and free; processes still stopped stay stopped. NULL is a no-op. */
void proc_tree_free(struct proc_tree *t);

/*
 * Freeze, settle and kill in one call, waiting for stops at most max_wait_ms
 * (then killing what was found). For tests and shutdown; the loop uses the
 * steps above.
 */
size_t proc_kill_tree(pid_t pid, int pidfd, int max_wait_ms);

/* The parent pid from /proc/<pid>/stat, or -1 when the process is gone. */
pid_t proc_parent(pid_t pid);

#endif
