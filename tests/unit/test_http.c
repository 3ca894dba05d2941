/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for the upgrade-request parser: a request fed byte by byte and
 * whole, the bytes after the head left to the caller, header lookups and
 * token lists (repeated and comma-separated), and the failures: malformed
 * heads (400), other HTTP versions (505), and heads over the caps (431).
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stream/http.h"

static const char REQ[] = "POST /exec/AbCd-_12 HTTP/1.1\r\n"
                          "Host: 127.0.0.1:1234\r\n"
                          "Connection: Upgrade\r\n"
                          "Upgrade: SPDY/3.1\r\n"
                          "X-Stream-Protocol-Version: v5.channel.k8s.io\r\n"
                          "X-Stream-Protocol-Version: v4.channel.k8s.io, v3.channel.k8s.io\r\n"
                          "x-stream-protocol-version:  v2.channel.k8s.io ,channel.k8s.io\t\r\n"
                          "\r\n"
                          "\x80\x03\x00\x01";

static void check_parsed(const struct http_request *r)
{
    assert_true(r->done);
    assert_string_equal(r->method, "POST");
    assert_string_equal(r->target, "/exec/AbCd-_12");
    assert_int_equal(r->minor_version, 1);
    assert_string_equal(http_request_field(r, "connection"), "Upgrade");
    assert_string_equal(http_request_field(r, "UPGRADE"), "SPDY/3.1");
    assert_null(http_request_field(r, "content-length"));
    assert_true(http_request_has_token(r, "Connection", "upgrade"));
    const char *want[] = {"v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io",
                          "v2.channel.k8s.io", "channel.k8s.io"};
    char item[64];
    for (size_t i = 0; i < 5; i++) {
        assert_true(http_request_token_at(r, "X-Stream-Protocol-Version", i, item, sizeof(item)));
        assert_string_equal(item, want[i]);
    }
    assert_false(http_request_token_at(r, "X-Stream-Protocol-Version", 5, item, sizeof(item)));
}

static void test_whole(void **state)
{
    struct http_request r;
    http_request_init(&r);
    int status = 0;
    ssize_t used = http_request_feed(&r, REQ, sizeof(REQ) - 1, &status);
    /* The 4 bytes after the head are the next protocol's. */
    assert_int_equal(used, (ssize_t)sizeof(REQ) - 1 - 4);
    check_parsed(&r);
    http_request_clear(&r);
}

static void test_byte_by_byte(void **state)
{
    struct http_request r;
    http_request_init(&r);
    int status = 0;
    size_t i = 0;
    while (!r.done) {
        assert_true(i < sizeof(REQ) - 1);
        assert_int_equal(http_request_feed(&r, REQ + i, 1, &status), 1);
        i++;
    }
    assert_int_equal(i, sizeof(REQ) - 1 - 4);
    check_parsed(&r);
    http_request_clear(&r);
}

static int parse_status(const char *text)
{
    struct http_request r;
    http_request_init(&r);
    int status = 0;
    ssize_t n = http_request_feed(&r, text, strlen(text), &status);
    bool done = r.done;
    http_request_clear(&r);
    if (n < 0)
        return status;
    return done ? 200 : 0;
}

static void test_bare_lf_and_errors(void **state)
{
    assert_int_equal(parse_status("GET / HTTP/1.1\nHost: x\n\n"), 200);
    assert_int_equal(parse_status("GET / HTTP/1.0\r\n\r\n"), 200);
    assert_int_equal(parse_status("GET / HTTP/1.1\r\nHost: x\r\n"), 0); /* incomplete */
    assert_int_equal(parse_status("GET / HTTP/2.0\r\n\r\n"), 505);
    assert_int_equal(parse_status("GET /\r\n\r\n"), 400);
    assert_int_equal(parse_status("GET  / HTTP/1.1\r\n\r\n"), 400);
    assert_int_equal(parse_status("G(T / HTTP/1.1\r\n\r\n"), 400);
    assert_int_equal(parse_status("GET / HTTP/1.1\r\nNo colon\r\n\r\n"), 400);
    assert_int_equal(parse_status("GET / HTTP/1.1\r\nBad name: x\r\n\r\n"), 400);
    assert_int_equal(parse_status("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n"), 400);
    assert_int_equal(parse_status("GET / HTTP/1.1\r\nA: b\x01\r\n\r\n"), 400);
    assert_int_equal(parse_status("GET /a\x7f HTTP/1.1\r\n\r\n"), 400);
}

static void test_caps(void **state)
{
    /* More header fields than allowed. */
    char *text = xmalloc(HTTP_HEAD_MAX);
    size_t n = (size_t)snprintf(text, HTTP_HEAD_MAX, "GET / HTTP/1.1\r\n");
    for (int i = 0; i <= HTTP_HEADERS_MAX; i++)
        n += (size_t)snprintf(text + n, HTTP_HEAD_MAX - n, "H%d: v\r\n", i);
    snprintf(text + n, HTTP_HEAD_MAX - n, "\r\n");
    assert_int_equal(parse_status(text), 431);
    free(text);

    /* A head that never ends: fed in pieces, refused once past the cap, never grown beyond. */
    struct http_request r;
    http_request_init(&r);
    char chunk[1000];
    memset(chunk, 'a', sizeof(chunk));
    int status = 0;
    ssize_t rc = http_request_feed(&r, "GET / HTTP/1.1\r\nX: ", 19, &status);
    assert_int_equal(rc, 19);
    size_t total = 19;
    for (;;) {
        rc = http_request_feed(&r, chunk, sizeof(chunk), &status);
        if (rc < 0)
            break;
        total += (size_t)rc;
        assert_true(total <= HTTP_HEAD_MAX + 4);
    }
    assert_int_equal(status, 431);
    assert_true(r.raw.len <= HTTP_HEAD_MAX + 4);
    http_request_clear(&r);
}

static void test_reasons(void **state)
{
    assert_string_equal(http_reason(404), "Not Found");
    assert_string_equal(http_reason(429), "Too Many Requests");
    assert_string_equal(http_reason(101), "Switching Protocols");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_bare_lf_and_errors),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
