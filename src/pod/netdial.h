/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connecting to a TCP port inside a pod's network namespace, for
 * port-forward. The daemon never changes its own namespaces: a forked child
 * enters the namespace (setns on the pod's pinned netns file; none for a
 * host-network pod), connects to 127.0.0.1:PORT, then [::1]:PORT, and passes
 * the connected socket back over SCM_RIGHTS; it never execs. The socket
 * stays in the pod's namespace whoever holds it.
 */
#ifndef TINYCRI_POD_NETDIAL_H
#define TINYCRI_POD_NETDIAL_H

#include <stdint.h>

struct error;
struct netdial;

/* fd: connected, non-blocking, close-on-exec (owned); or -1 with err. */
typedef void (*netdial_cb)(int fd, const struct error *err, void *arg);

/*
 * Start connecting (netns_path NULL: the host's namespace). cb runs once on
 * the loop unless cancelled: with the socket, or an error (UNAVAILABLE when
 * nothing listens on the port, INTERNAL for the rest, DEADLINE_EXCEEDED when
 * the child takes longer than timeout_ms).
 */
struct netdial *netdial_start(const char *netns_path, uint16_t port, int64_t timeout_ms,
                              netdial_cb cb, void *arg, struct error **err);

/* Forget a dial in flight: its child is killed, cb does not run. */
void netdial_cancel(struct netdial *d);

#endif
