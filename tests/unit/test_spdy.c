/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for the SPDY/3.1 codec: the dictionary; frames written by the
 * Go spdystream framer (tests/unit/data/spdy/go-client.bin, see gen.go
 * there) parsed whole and byte by byte; our writers read back by our parser
 * with a separate compression context (the two ends of a connection); and
 * the limits: oversized control frames and header blocks, too many headers,
 * upper-case and duplicate names, garbage instead of zlib data.
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
#include <zlib.h>

#include "core/error.h"
#include "core/util.h"
#include "stream/spdy.h"

/* What the parser saw, as text lines ("syn 1 fin=0 streamtype=error", "data 3 5 end fin=0"). */
struct seen {
    struct spdy_zlib z;
    char log[64][160];
    size_t n;
    struct buf data; /* data payload bytes, concatenated */
};

static void add(struct seen *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct seen *s, const char *fmt, ...)
{
    assert_true(s->n < 64);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->log[s->n++], sizeof(s->log[0]), fmt, ap);
    va_end(ap);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int on_control(void *arg, uint16_t version, uint16_t type, uint8_t flags,
                      const uint8_t *payload, size_t len, struct error **err)
{
    struct seen *s = arg;
    assert_int_equal(version, 3);
    if (type == SPDY_SYN_STREAM || type == SPDY_SYN_REPLY) {
        size_t fixed = type == SPDY_SYN_STREAM ? 10 : 4;
        assert_true(len >= fixed);
        struct spdy_headers h = {0};
        if (spdy_headers_decode(&s->z, payload + fixed, len - fixed, &h, err) < 0)
            return -1;
        char line[160];
        size_t o = (size_t)snprintf(line, sizeof(line), "%s %u fin=%d",
                                    type == SPDY_SYN_STREAM ? "syn" : "reply",
                                    be32(payload) & 0x7fffffff, flags & SPDY_FLAG_FIN);
        for (size_t i = 0; i < h.n; i++)
            o += (size_t)snprintf(line + o, sizeof(line) - o, " %s=%s", h.items[i].name,
                                  h.items[i].value);
        add(s, "%s", line);
        spdy_headers_clear(&h);
    } else if (type == SPDY_PING) {
        add(s, "ping %u", be32(payload));
    } else if (type == SPDY_RST_STREAM) {
        add(s, "rst %u %u", be32(payload), be32(payload + 4));
    } else if (type == SPDY_GOAWAY) {
        add(s, "goaway %u %u", be32(payload), be32(payload + 4));
    } else {
        add(s, "control %u len=%zu", type, len);
    }
    return 0;
}

static int on_data(void *arg, uint32_t id, uint8_t flags, const uint8_t *piece, size_t n, bool end,
                   struct error **err)
{
    struct seen *s = arg;
    if (n)
        assert_int_equal(buf_append(&s->data, piece, n), 0);
    if (end)
        add(s, "data %u fin=%d", id, flags & SPDY_FLAG_FIN);
    return 0;
}

static const struct spdy_parser_ops ops = {on_control, on_data};

static void seen_init(struct seen *s)
{
    memset(s, 0, sizeof(*s));
    spdy_zlib_init(&s->z);
    buf_init(&s->data, 1 << 24);
}

static void seen_clear(struct seen *s)
{
    spdy_zlib_clear(&s->z);
    buf_free(&s->data);
}

static uint8_t *read_golden(size_t *len)
{
    struct error *err = NULL;
    char *data = read_file_capped(TEST_DATA_DIR "/spdy/go-client.bin", 65536, len, &err);
    assert_non_null(data);
    return (uint8_t *)data;
}

static void check_golden(const struct seen *s)
{
    static const char *const want[] = {
        "syn 1 fin=0 streamtype=error",
        "syn 3 fin=0 streamtype=stdin",
        "syn 5 fin=0 streamtype=stdout",
        "syn 7 fin=0 streamtype=stderr",
        "data 3 fin=0",
        "data 3 fin=1",
        "ping 1",
    };
    assert_int_equal(s->n, 8);
    for (size_t i = 0; i < 7; i++)
        assert_string_equal(s->log[i], want[i]);
    /* Go writes a map: header order varies. */
    assert_true(strncmp(s->log[7], "syn 9 fin=1 ", 12) == 0);
    assert_non_null(strstr(s->log[7], " streamtype=data"));
    assert_non_null(strstr(s->log[7], " port=8080"));
    assert_non_null(strstr(s->log[7], " requestid=0"));
    assert_int_equal(s->data.len, 5);
    assert_memory_equal(s->data.data, "hello", 5);
}

static void test_dictionary(void **state)
{
    assert_int_equal(spdy_dictionary_len, 1423);
    assert_int_equal(adler32(1, spdy_dictionary, (uInt)spdy_dictionary_len), 0xe3c6a7c2);
}

static void test_go_frames_whole(void **state)
{
    size_t len = 0;
    uint8_t *g = read_golden(&len);
    struct seen s;
    seen_init(&s);
    struct spdy_parser p;
    spdy_parser_init(&p);
    struct error *err = NULL;
    assert_int_equal(spdy_parser_feed(&p, g, len, &ops, &s, &err), 0);
    check_golden(&s);
    spdy_parser_clear(&p);
    seen_clear(&s);
    free(g);
}

static void test_go_frames_byte_by_byte(void **state)
{
    size_t len = 0;
    uint8_t *g = read_golden(&len);
    struct seen s;
    seen_init(&s);
    struct spdy_parser p;
    spdy_parser_init(&p);
    struct error *err = NULL;
    for (size_t i = 0; i < len; i++)
        assert_int_equal(spdy_parser_feed(&p, g + i, 1, &ops, &s, &err), 0);
    check_golden(&s);
    spdy_parser_clear(&p);
    seen_clear(&s);
    free(g);
}

/* Our writers, one connection end (client zlib) to the other (the parser's). */
static void test_writers_round_trip(void **state)
{
    struct spdy_zlib client;
    spdy_zlib_init(&client);
    struct evbuffer *out = evbuffer_new();
    struct error *err = NULL;
    struct spdy_pair h1[] = {{"streamtype", "error"}};
    struct spdy_pair h2[] = {{"streamtype", "data"}, {"Port", "80"}, {"requestid", "7"}};
    assert_int_equal(spdy_write_syn_stream(&client, out, 1, 0, h1, 1, &err), 0);
    assert_int_equal(spdy_write_syn_reply(&client, out, 3, SPDY_FLAG_FIN, h2, 3, &err), 0);
    assert_int_equal(spdy_write_syn_reply(&client, out, 5, 0, NULL, 0, &err), 0);
    spdy_write_data(out, 5, 0, "abc", 3);
    spdy_write_data(out, 5, SPDY_FLAG_FIN, NULL, 0);
    spdy_write_rst_stream(out, 3, SPDY_RST_CANCEL);
    spdy_write_ping(out, 42);
    spdy_write_goaway(out, 9, 0);
    /* A big data frame goes through in pieces, never buffered whole by the parser. */
    size_t big = 300000;
    char *blob = xmalloc(big);
    for (size_t i = 0; i < big; i++)
        blob[i] = (char)(i * 7);
    spdy_write_data(out, 7, 0, blob, big);

    size_t len = evbuffer_get_length(out);
    uint8_t *bytes = xmalloc(len);
    evbuffer_remove(out, bytes, len);
    struct seen s;
    seen_init(&s);
    struct spdy_parser p;
    spdy_parser_init(&p);
    for (size_t off = 0; off < len; off += 4093) {
        size_t n = len - off < 4093 ? len - off : 4093;
        assert_int_equal(spdy_parser_feed(&p, bytes + off, n, &ops, &s, &err), 0);
        /* Only a control frame is ever held by the parser. */
        assert_true(p.ctrl.len < 1024);
    }
    static const char *const want[] = {
        "syn 1 fin=0 streamtype=error",
        "reply 3 fin=1 streamtype=data port=80 requestid=7",
        "reply 5 fin=0",
        "data 5 fin=0",
        "data 5 fin=1",
        "rst 3 5",
        "ping 42",
        "goaway 9 0",
        "data 7 fin=0",
    };
    assert_int_equal(s.n, ARRAY_SIZE(want));
    for (size_t i = 0; i < ARRAY_SIZE(want); i++)
        assert_string_equal(s.log[i], want[i]);
    assert_int_equal(s.data.len, 3 + big);
    assert_memory_equal(s.data.data, "abc", 3);
    assert_memory_equal(s.data.data + 3, blob, big);

    /* Once released, the compressor refuses (and says so). */
    spdy_zlib_release_out(&client);
    assert_int_equal(spdy_write_syn_reply(&client, out, 9, 0, NULL, 0, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INTERNAL);
    error_clear(&err);
    spdy_parser_clear(&p);
    seen_clear(&s);
    spdy_zlib_clear(&client);
    evbuffer_free(out);
    free(bytes);
    free(blob);
}

/* Compress a raw (already laid out) header block as a peer would. */
static uint8_t *deflate_raw(z_stream *zs, const uint8_t *plain, size_t n, size_t *out_len)
{
    size_t cap = n + 1024;
    uint8_t *out = xmalloc(cap);
    zs->next_in = (Bytef *)plain;
    zs->avail_in = (uInt)n;
    zs->next_out = out;
    zs->avail_out = (uInt)cap;
    assert_int_equal(deflate(zs, Z_SYNC_FLUSH), Z_OK);
    *out_len = cap - zs->avail_out;
    return out;
}

static int decode_raw(const uint8_t *plain, size_t n)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(deflateInit(&zs, Z_DEFAULT_COMPRESSION), Z_OK);
    assert_int_equal(deflateSetDictionary(&zs, spdy_dictionary, (uInt)spdy_dictionary_len), Z_OK);
    size_t len = 0;
    uint8_t *packed = deflate_raw(&zs, plain, n, &len);
    deflateEnd(&zs);
    struct spdy_zlib z;
    spdy_zlib_init(&z);
    struct spdy_headers h = {0};
    struct error *err = NULL;
    int rc = spdy_headers_decode(&z, packed, len, &h, &err);
    int code = rc == 0 ? 0 : err->grpc_code;
    error_free(err);
    spdy_headers_clear(&h);
    spdy_zlib_clear(&z);
    free(packed);
    return code;
}

static size_t put_pair(uint8_t *p, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    uint8_t *q = p;
    q[0] = q[1] = 0;
    q[2] = (uint8_t)(nl >> 8);
    q[3] = (uint8_t)nl;
    memcpy(q + 4, name, nl);
    q += 4 + nl;
    q[0] = q[1] = 0;
    q[2] = (uint8_t)(vl >> 8);
    q[3] = (uint8_t)vl;
    memcpy(q + 4, value, vl);
    return 8 + nl + vl;
}

static void test_header_block_limits(void **state)
{
    uint8_t *b = xcalloc(1, 64 * 1024);
    /* Good. */
    b[3] = 1;
    size_t n = 4 + put_pair(b + 4, "streamtype", "stdout");
    assert_int_equal(decode_raw(b, n), 0);
    /* Upper case, empty name, duplicate, truncated, trailing bytes. */
    n = 4 + put_pair(b + 4, "StreamType", "stdout");
    assert_int_equal(decode_raw(b, n), GRPC_INVALID_ARGUMENT);
    n = 4 + put_pair(b + 4, "", "x");
    assert_int_equal(decode_raw(b, n), GRPC_INVALID_ARGUMENT);
    b[3] = 2;
    n = 4 + put_pair(b + 4, "a", "1");
    n += put_pair(b + n, "a", "2");
    assert_int_equal(decode_raw(b, n), GRPC_INVALID_ARGUMENT);
    assert_int_equal(decode_raw(b, n - 2), GRPC_INVALID_ARGUMENT);
    b[3] = 1;
    n = 4 + put_pair(b + 4, "a", "1") + 1;
    assert_int_equal(decode_raw(b, n), GRPC_INVALID_ARGUMENT);
    /* Too many pairs. */
    b[3] = SPDY_HEADER_COUNT_MAX + 1;
    n = 4;
    for (int i = 0; i <= SPDY_HEADER_COUNT_MAX; i++) {
        char name[16];
        snprintf(name, sizeof(name), "h%d", i);
        n += put_pair(b + n, name, "v");
    }
    assert_int_equal(decode_raw(b, n), GRPC_RESOURCE_EXHAUSTED);
    /* A block that inflates past the cap (it compresses to almost nothing). */
    b[3] = 1;
    char *big = xmalloc(SPDY_HEADERS_MAX + 1);
    memset(big, 'x', SPDY_HEADERS_MAX);
    big[SPDY_HEADERS_MAX] = '\0';
    n = 4 + put_pair(b + 4, "a", big);
    assert_int_equal(decode_raw(b, n), GRPC_RESOURCE_EXHAUSTED);
    free(big);
    free(b);

    /* Not zlib at all. */
    struct spdy_zlib z;
    spdy_zlib_init(&z);
    struct spdy_headers h = {0};
    struct error *err = NULL;
    assert_int_equal(spdy_headers_decode(&z, (const uint8_t *)"garbage!", 8, &h, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    error_clear(&err);
    /* Released: a later block is refused. */
    spdy_zlib_release_in(&z);
    assert_int_equal(spdy_headers_decode(&z, (const uint8_t *)"x", 1, &h, &err), -1);
    error_clear(&err);
    spdy_zlib_clear(&z);
}

static void test_control_frame_cap(void **state)
{
    uint8_t head[8] = {0x80, 3, 0, SPDY_SETTINGS, 0, 0x01, 0x00, 0x01}; /* 64 KiB + 1 */
    struct seen s;
    seen_init(&s);
    struct spdy_parser p;
    spdy_parser_init(&p);
    struct error *err = NULL;
    assert_int_equal(spdy_parser_feed(&p, head, sizeof(head), &ops, &s, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_RESOURCE_EXHAUSTED);
    error_free(err);
    spdy_parser_clear(&p);
    /* Exactly the cap is fine; unknown control types reach the caller. */
    spdy_parser_init(&p);
    uint8_t *frame = xcalloc(1, 8 + SPDY_CONTROL_MAX);
    frame[0] = 0x80;
    frame[1] = 3;
    frame[3] = 0x42;
    frame[5] = 0x01;
    err = NULL;
    assert_int_equal(spdy_parser_feed(&p, frame, 8 + SPDY_CONTROL_MAX, &ops, &s, &err), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.log[0], "control 66 len=65536");
    free(frame);
    spdy_parser_clear(&p);
    seen_clear(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dictionary),
        cmocka_unit_test(test_go_frames_whole),
        cmocka_unit_test(test_go_frames_byte_by_byte),
        cmocka_unit_test(test_writers_round_trip),
        cmocka_unit_test(test_header_block_limits),
        cmocka_unit_test(test_control_frame_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
