/* SPDX-License-Identifier: Apache-2.0 */
/*
 * systemd's readiness protocol (sd_notify), without libsystemd: one datagram
 * per message to the AF_UNIX socket named by $NOTIFY_SOCKET, a path ("/run/
 * systemd/notify") or an abstract name ("@..."). Without $NOTIFY_SOCKET
 * (no systemd, or a unit that is not Type=notify) nothing is ever sent.
 *
 * Linking libsystemd would bring a shared library of about 1 MiB and its
 * dependency tree (liblzma, libzstd, liblz4, libgcrypt, libcap) onto edge
 * images for what is a sendto() of a few bytes, so the protocol is here.
 */
#ifndef TINYCRI_CORE_NOTIFY_H
#define TINYCRI_CORE_NOTIFY_H

#include <stdbool.h>

/* Longest message sent; longer ones are cut at the last whole line that fits. */
#define NOTIFY_MSG_MAX 4096

/*
 * Read $NOTIFY_SOCKET and open a datagram socket for it, then remove the
 * variable from the environment: OCI runtimes read it too (runc start would
 * wait for the container to report READY=1), and no child of the daemon
 * must talk to systemd on its behalf. Call before any child is started.
 * Returns true when messages will be sent. An unusable value (not a path,
 * not "@name", too long) is logged and disables notification.
 */
bool notify_init(void);

/* Whether notify_init() found a socket. */
bool notify_enabled(void);

/*
 * Send "KEY=value" lines (printf format; several lines are joined by '\n').
 * Never blocks: a message that cannot be sent at once is dropped and logged
 * at debug level (the first failure at warn). A no-op when not enabled.
 */
void notify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Close the socket; later notify_send() calls do nothing. */
void notify_shutdown(void);

#endif
