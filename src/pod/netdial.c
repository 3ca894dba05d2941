/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The port-forward dialer behind netdial.h: a child per connection
 * (child_fork, no exec) that does setns, socket, connect and sendmsg, and
 * reports a failure the loop's way (child_exit_errorf, child_result_error).
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "pod/netdial.h"

struct netdial {
    char *netns_path; /* NULL: the host's */
    uint16_t port;
    int64_t timeout_ms;
    int sock[2]; /* [0] ours, [1] the child's end */
    struct child *child;
    netdial_cb cb;
    void *arg;
};

static void netdial_free(void *obj)
{
    struct netdial *d = obj;
    for (int i = 0; i < 2; i++) {
        if (d->sock[i] >= 0)
            close(d->sock[i]);
    }
    free(d->netns_path);
    free(d);
}

static int try_connect(int family, uint16_t port)
{
    int s = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    int rc;
    if (family == AF_INET) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        rc = connect(s, (struct sockaddr *)&a, sizeof(a));
    } else {
        struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
        a.sin6_addr = in6addr_loopback;
        rc = connect(s, (struct sockaddr *)&a, sizeof(a));
    }
    if (rc < 0) {
        int e = errno;
        close(s);
        return -e;
    }
    return s;
}

static int dial_child_main(void *arg)
{
    const struct netdial *d = arg;
    if (d->netns_path) {
        int ns = open(d->netns_path, O_RDONLY | O_CLOEXEC);
        if (ns < 0)
            child_exit_errorf(GRPC_INTERNAL, errno, "open the pod's network namespace");
        if (setns(ns, CLONE_NEWNET) < 0)
            child_exit_errorf(GRPC_INTERNAL, errno, "enter the pod's network namespace");
        close(ns);
    }
    int s = try_connect(AF_INET, d->port);
    if (s < 0) {
        int s6 = try_connect(AF_INET6, d->port);
        /* Refused: nothing listens on the port (UNAVAILABLE); other errors are ours. */
        if (s6 < 0)
            child_exit_errorf(-s == ECONNREFUSED ? GRPC_UNAVAILABLE : GRPC_INTERNAL, 0,
                              "IPv4: %s, IPv6: %s", strerrordesc_np(-s), strerrordesc_np(-s6));
        s = s6;
    }
    union {
        struct cmsghdr hdr;
        char buf[CMSG_SPACE(sizeof(int))];
    } cm;
    memset(&cm, 0, sizeof(cm));
    char byte = 'x';
    struct iovec iov = {&byte, 1};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &s, sizeof(int));
    if (sendmsg(d->sock[1], &msg, MSG_NOSIGNAL) < 0)
        child_exit_errorf(GRPC_INTERNAL, errno, "pass the socket back");
    _exit(0);
}

/* The child sent the socket before it exited: it waits in our end. */
static int receive_fd(int sock)
{
    char byte;
    union {
        struct cmsghdr hdr;
        char buf[CMSG_SPACE(sizeof(int))];
    } cm;
    struct iovec iov = {&byte, 1};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf)};
    if (recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) < 1)
        return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
        c->cmsg_len != CMSG_LEN(sizeof(int)))
        return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd;
}

static void on_child_done(const struct child_result *res, void *arg)
{
    struct netdial *d = arg;
    d->child = NULL;
    _cleanup_error_ struct error *err = NULL;
    int fd = -1;
    char what[48];
    snprintf(what, sizeof(what), "connect to localhost:%u", d->port);
    if (child_result_error(res, what, d->timeout_ms, &err) == 0) {
        fd = receive_fd(d->sock[0]);
        if (fd < 0)
            error_set(&err, GRPC_INTERNAL, 0, "the dialer passed no socket back");
        else if (fd_set_nonblock(fd, true) < 0) {
            error_set(&err, GRPC_INTERNAL, errno, "socket non-blocking");
            close(fd);
            fd = -1;
        }
    }
    d->cb(fd, err, d->arg);
    loop_defer_free(netdial_free, d);
}

struct netdial *netdial_start(const char *netns_path, uint16_t port, int64_t timeout_ms,
                              netdial_cb cb, void *arg, struct error **err)
{
    struct netdial *d = xcalloc(1, sizeof(*d));
    d->netns_path = netns_path ? xstrdup(netns_path) : NULL;
    d->port = port;
    d->timeout_ms = timeout_ms;
    d->cb = cb;
    d->arg = arg;
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, d->sock) < 0) {
        error_set(err, GRPC_INTERNAL, errno, "socketpair");
        d->sock[0] = d->sock[1] = -1;
        netdial_free(d);
        return NULL;
    }
    struct child_opts o = {.timeout_ms = timeout_ms, .out_cap = 1024};
    d->child = child_fork(&o, dial_child_main, d, on_child_done, d, err);
    if (!d->child) {
        netdial_free(d);
        return NULL;
    }
    close(d->sock[1]);
    d->sock[1] = -1;
    return d;
}

void netdial_cancel(struct netdial *d)
{
    if (!d)
        return;
    child_cancel(d->child);
    loop_defer_free(netdial_free, d);
}
