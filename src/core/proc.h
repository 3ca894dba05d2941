/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Process trees seen through /proc: finding every descendant of a process
 * (through /proc/<pid>/task/<tid>/children) so that a whole tree can be
 * stopped and killed, e.g. an exec'd command and everything it started.
 */
#ifndef TINYCRI_CORE_PROC_H
#define TINYCRI_CORE_PROC_H

#include <stddef.h>
#include <sys/types.h>

/* Most processes one tree walk handles; a larger tree is killed in part, then again. */
#define PROC_TREE_MAX 4096

/*
 * SIGKILL pid and all its descendants. The tree is first frozen top-down with
 * SIGSTOP, scanning again until a pass finds no new process, so nothing can
 * fork out of reach while it is walked; then every process gets SIGKILL at
 * once. pidfd (borrowed; -1 for none) is the caller's pidfd of pid itself;
 * descendants are addressed through pidfds opened while their parent was
 * known, so a recycled pid is never signalled. Returns how many processes were
 * killed (0 when pid is already gone). Reads /proc only; never waits for the
 * processes themselves.
 */
size_t proc_kill_tree(pid_t pid, int pidfd);

/* The parent pid from /proc/<pid>/stat, or -1 when the process is gone. */
pid_t proc_parent(pid_t pid);

#endif
