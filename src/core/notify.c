/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sd_notify(3) done by hand: see notify.h for why. systemd reads the sender's
 * credentials from the socket itself (SO_PASSCRED on its side), so a plain
 * datagram from the main process is all that NotifyAccess=main asks for.
 */
#include "autoconf.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "core/notify.h"
#include "core/util.h"

static struct {
    int fd;
    struct sockaddr_un sa;
    socklen_t sa_len;
    bool warned;
} nt = {.fd = -1};

/* Fill nt.sa from a $NOTIFY_SOCKET value; false when it is not usable. */
static bool parse_address(const char *value)
{
    size_t n = strlen(value);
    memset(&nt.sa, 0, sizeof(nt.sa));
    nt.sa.sun_family = AF_UNIX;
    if (value[0] == '/') {
        if (n >= sizeof(nt.sa.sun_path))
            return false;
        memcpy(nt.sa.sun_path, value, n);
        nt.sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        return true;
    }
    if (value[0] == '@' && n > 1) {
        /* Abstract: a leading NUL, then the name; the length says where it ends. */
        if (n > sizeof(nt.sa.sun_path))
            return false;
        memcpy(nt.sa.sun_path + 1, value + 1, n - 1);
        nt.sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
        return true;
    }
    return false;
}

bool notify_init(void)
{
    notify_shutdown();
    const char *env = getenv("NOTIFY_SOCKET");
    if (!env)
        return false;
    _cleanup_free_ char *value = xstrdup(env);
    unsetenv("NOTIFY_SOCKET");
    if (!parse_address(value)) {
        log_warn("NOTIFY_SOCKET is not a unix socket path or abstract name; systemd will not "
                 "be notified value=\"%.*s\"",
                 120, value);
        return false;
    }
    nt.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (nt.fd < 0) {
        log_warn("cannot notify systemd: socket: %s", strerror(errno));
        return false;
    }
    nt.warned = false;
    log_debug("systemd notification socket=%s", value);
    return true;
}

bool notify_enabled(void)
{
    return nt.fd >= 0;
}

void notify_send(const char *fmt, ...)
{
    if (nt.fd < 0)
        return;
    char msg[NOTIFY_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n;
    if (len >= sizeof(msg)) {
        /* Never send half a line: systemd would take it as a whole assignment. */
        char *nl = memrchr(msg, '\n', sizeof(msg) - 1);
        if (!nl)
            return;
        len = (size_t)(nl - msg);
    }
    if (sendto(nt.fd, msg, len, MSG_NOSIGNAL | MSG_DONTWAIT, (const struct sockaddr *)&nt.sa,
               nt.sa_len) < 0) {
        if (!nt.warned)
            log_warn("cannot notify systemd: %s", strerror(errno));
        else
            log_debug("cannot notify systemd: %s", strerror(errno));
        nt.warned = true;
    }
}

void notify_shutdown(void)
{
    if (nt.fd >= 0)
        close(nt.fd);
    nt.fd = -1;
}
