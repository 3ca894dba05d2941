/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for core/notify: datagrams reach a path socket and an abstract
 * one, $NOTIFY_SOCKET is gone from the environment afterwards (children must
 * not see it), nothing is sent without it or with an unusable value, a long
 * message is cut at a whole line, and a vanished listener does not hurt.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/notify.h"
#include "core/util.h"

/* A datagram listener at a path (abstract when it starts with '@'). */
static int listen_at(const char *name)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(name);
    assert_true(n < sizeof(sa.sun_path));
    memcpy(sa.sun_path, name, n);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    if (name[0] == '@') {
        sa.sun_path[0] = '\0';
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    }
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
    return fd;
}

/* The next datagram (NUL-terminated, owned), or NULL when none is queued. */
static char *next_msg(int fd)
{
    char buf[NOTIFY_MSG_MAX + 16];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    if (n < 0)
        return NULL;
    return xstrndup(buf, (size_t)n);
}

static void test_path_socket(void **state)
{
    char dir[] = "/tmp/tc-notify-XXXXXX";
    assert_non_null(mkdtemp(dir));
    _cleanup_free_ char *path = xasprintf("%s/notify", dir);
    int fd = listen_at(path);
    setenv("NOTIFY_SOCKET", path, 1);
    assert_true(notify_init());
    assert_null(getenv("NOTIFY_SOCKET"));
    assert_true(notify_enabled());
    notify_send("READY=1");
    notify_send("STATUS=%d pods\nX=%s", 3, "y");
    _cleanup_free_ char *a = next_msg(fd);
    _cleanup_free_ char *b = next_msg(fd);
    assert_string_equal(a, "READY=1");
    assert_string_equal(b, "STATUS=3 pods\nX=y");
    /* The listener is gone: sending is harmless and does not block. */
    close(fd);
    unlink(path);
    notify_send("STOPPING=1");
    notify_shutdown();
    assert_false(notify_enabled());
    rmdir(dir);
}

static void test_abstract_socket(void **state)
{
    _cleanup_free_ char *name = xasprintf("@tc-notify-test-%d", (int)getpid());
    int fd = listen_at(name);
    setenv("NOTIFY_SOCKET", name, 1);
    assert_true(notify_init());
    notify_send("READY=1");
    _cleanup_free_ char *a = next_msg(fd);
    assert_string_equal(a, "READY=1");
    notify_shutdown();
    close(fd);
}

static void test_without_socket(void **state)
{
    unsetenv("NOTIFY_SOCKET");
    assert_false(notify_init());
    assert_false(notify_enabled());
    notify_send("READY=1"); /* a no-op */
}

static void test_unusable_values(void **state)
{
    char longpath[200];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    const char *bad[] = {"", "relative/path", "@", "vsock:2:1234", longpath};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        setenv("NOTIFY_SOCKET", bad[i], 1);
        assert_false(notify_init());
        assert_null(getenv("NOTIFY_SOCKET"));
        assert_false(notify_enabled());
    }
}

static void test_long_message_cut_at_line(void **state)
{
    _cleanup_free_ char *name = xasprintf("@tc-notify-long-%d", (int)getpid());
    int fd = listen_at(name);
    setenv("NOTIFY_SOCKET", name, 1);
    assert_true(notify_init());
    char big[NOTIFY_MSG_MAX];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    notify_send("READY=1\nSTATUS=%s", big);
    _cleanup_free_ char *a = next_msg(fd);
    assert_string_equal(a, "READY=1");
    /* A single over-long line is not sent at all. */
    notify_send("STATUS=%s", big);
    assert_null(next_msg(fd));
    notify_shutdown();
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_abstract_socket),
        cmocka_unit_test(test_without_socket),
        cmocka_unit_test(test_unusable_values),
        cmocka_unit_test(test_long_message_cut_at_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
