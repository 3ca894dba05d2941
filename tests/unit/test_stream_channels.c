/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for the streaming channel layer: the WebSocket handshake key
 * (RFC 6455's example and one more), WebSocket frames in both directions
 * through libwslay (a masked client frame, fragments, a ping, the cap),
 * the resize stream parser, and the v4 status objects the error stream
 * carries.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <jansson.h>

#include "core/error.h"
#include "core/util.h"
#include "stream/remotecommand.h"
#include "stream/ws.h"

static void test_accept_key(void **state)
{
    struct error *err = NULL;
    /* RFC 6455 section 1.3's example. */
    char *k = ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", &err);
    assert_null(err);
    assert_string_equal(k, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    free(k);
    /* What Python's websocket-client computes for this key (hashlib.sha1 + b64encode). */
    k = ws_accept_key("AQIDBAUGBwgJCgsMDQ4PEA==", &err);
    assert_null(err);
    assert_string_equal(k, "C/0nmHhBztSRGR1CwL6Tf4ZjwpY=");
    free(k);
}

struct msgs {
    int n;
    int opcode[8];
    char data[8][256];
    size_t len[8];
};

static void on_msg(void *arg, int opcode, const uint8_t *data, size_t n)
{
    struct msgs *m = arg;
    assert_true(m->n < 8 && n < 256);
    m->opcode[m->n] = opcode;
    memcpy(m->data[m->n], data, n);
    m->len[m->n++] = n;
}

/* A client frame: FIN/opcode, masked payload. */
static size_t client_frame(uint8_t *out, int fin, int opcode, const char *payload, size_t n)
{
    static const uint8_t mask[4] = {0x11, 0x22, 0x33, 0x44};
    size_t o = 0;
    out[o++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    out[o++] = (uint8_t)(0x80 | n); /* n < 126 here */
    memcpy(out + o, mask, 4);
    o += 4;
    for (size_t i = 0; i < n; i++)
        out[o++] = (uint8_t)payload[i] ^ mask[i % 4];
    return o;
}

static void test_websocket_frames(void **state)
{
    struct evbuffer *out = evbuffer_new();
    struct msgs m = {0};
    struct ws *w = ws_new(out, on_msg, &m);
    uint8_t buf[512];
    size_t n = client_frame(buf, 1, 2, "\x00hi", 3);
    /* Fed one byte at a time, as a slow socket would. */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ws_feed(w, buf + i, 1), 0);
    assert_int_equal(m.n, 1);
    assert_int_equal(m.opcode[0], WS_OPCODE_BINARY);
    assert_int_equal(m.len[0], 3);
    assert_memory_equal(m.data[0], "\x00hi", 3);
    /* A text message in two fragments with a ping between: one message, one pong. */
    n = client_frame(buf, 0, 1, "0aGVs", 5);
    n += client_frame(buf + n, 1, 9, "p", 1);
    n += client_frame(buf + n, 1, 0, "bG8=", 4);
    assert_int_equal(ws_feed(w, buf, n), 0);
    assert_int_equal(m.n, 2);
    assert_int_equal(m.opcode[1], WS_OPCODE_TEXT);
    assert_memory_equal(m.data[1], "0aGVsbG8=", 9);
    uint8_t pong[3];
    assert_int_equal(evbuffer_remove(out, pong, 3), 3);
    assert_memory_equal(pong, "\x8a\x01p", 3);
    /* Our frames are unmasked, whole. */
    ws_send(w, WS_OPCODE_BINARY, "\x01out", 4);
    uint8_t f[6];
    assert_int_equal(evbuffer_remove(out, f, 6), 6);
    assert_memory_equal(f, "\x82\x04\x01out", 6);
    /* A close from the client: answered, and the session is over. */
    n = client_frame(buf, 1, 8, "\x03\xe8", 2);
    assert_int_equal(ws_feed(w, buf, n), -1);
    assert_int_equal(evbuffer_remove(out, f, 4), 4);
    assert_memory_equal(f, "\x88\x02\x03\xe8", 4);
    ws_free(w);
    evbuffer_free(out);
}

static void test_websocket_cap(void **state)
{
    struct evbuffer *out = evbuffer_new();
    struct msgs m = {0};
    struct ws *w = ws_new(out, on_msg, &m);
    /* A frame announcing more than WS_MSG_MAX: refused at its first payload bytes, with
     * close status 1009, nothing buffered. */
    uint8_t frame[14 + 64] = {0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0x20, 0, 0, 1, 2, 3, 4};
    assert_int_equal(ws_feed(w, frame, sizeof(frame)), -1);
    assert_int_equal(m.n, 0);
    uint8_t close[4];
    assert_int_equal(evbuffer_remove(out, close, 4), 4);
    assert_memory_equal(close, "\x88\x02\x03\xf1", 4);
    ws_free(w);
    evbuffer_free(out);
}

struct sizes {
    unsigned w[8], h[8];
    int n;
};

static void on_size(void *arg, unsigned w, unsigned h)
{
    struct sizes *s = arg;
    s->w[s->n] = w;
    s->h[s->n++] = h;
}

static void test_resize_parser(void **state)
{
    struct resize_parser p = {0};
    struct sizes s = {0};
    const char *in = "{\"Width\":80,\"Height\":24}\n{\"Height\":50,\"Width\":132}\n";
    /* Split anywhere: byte by byte. */
    for (size_t i = 0; i < strlen(in); i++)
        resize_parser_feed(&p, in + i, 1, on_size, &s);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.w[0], 80);
    assert_int_equal(s.h[0], 24);
    assert_int_equal(s.w[1], 132);
    assert_int_equal(s.h[1], 50);
    /* Junk, a too-long object and out-of-range values are skipped; parsing goes on. */
    char big[600];
    memset(big, ' ', sizeof(big));
    big[0] = '{';
    big[sizeof(big) - 2] = '}';
    big[sizeof(big) - 1] = '\n';
    resize_parser_feed(&p, big, sizeof(big), on_size, &s);
    const char *bad = "garbage {\"Width\":-1,\"Height\":5} {\"Width\":70000,\"Height\":5} {nope}"
                      "{\"Width\":10,\"Height\":{\"x\":1}}{\"Width\":7,\"Height\":8}";
    resize_parser_feed(&p, bad, strlen(bad), on_size, &s);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.w[2], 7);
    assert_int_equal(s.h[2], 8);
}

static void test_status_json(void **state)
{
    char *s = remotecommand_status_json(0, NULL);
    assert_string_equal(s, "{\"metadata\":{},\"status\":\"Success\"}");
    free(s);
    s = remotecommand_status_json(3, "error executing command [sh -c exit 3], exit code 3");
    json_error_t e;
    json_t *o = json_loads(s, 0, &e);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "status")), "Failure");
    assert_string_equal(json_string_value(json_object_get(o, "reason")), "NonZeroExitCode");
    json_t *cause = json_array_get(json_object_get(json_object_get(o, "details"), "causes"), 0);
    assert_string_equal(json_string_value(json_object_get(cause, "reason")), "ExitCode");
    assert_string_equal(json_string_value(json_object_get(cause, "message")), "3");
    assert_string_equal(json_string_value(json_object_get(o, "message")),
                        "command terminated with non-zero exit code: error executing command "
                        "[sh -c exit 3], exit code 3");
    json_decref(o);
    free(s);
    s = remotecommand_status_json(-1, "no such container");
    o = json_loads(s, 0, &e);
    assert_string_equal(json_string_value(json_object_get(o, "reason")), "InternalError");
    assert_int_equal(json_integer_value(json_object_get(o, "code")), 500);
    json_decref(o);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key),    cmocka_unit_test(test_websocket_frames),
        cmocka_unit_test(test_websocket_cap), cmocka_unit_test(test_resize_parser),
        cmocka_unit_test(test_status_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
