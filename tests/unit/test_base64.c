/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for core/base64: RFC 4648 vectors, round trips of every length
 * and byte, and the strict decoder refusing what is not canonical base64.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/base64.h"
#include "core/util.h"

static void test_rfc4648_vectors(void **state)
{
    static const char *const cases[][2] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        _cleanup_free_ char *enc = base64_encode(cases[i][0], strlen(cases[i][0]));
        assert_string_equal(enc, cases[i][1]);
        size_t len = 99;
        _cleanup_free_ uint8_t *dec = base64_decode(cases[i][1], &len);
        assert_non_null(dec);
        assert_int_equal(len, strlen(cases[i][0]));
        assert_memory_equal(dec, cases[i][0], len);
        assert_int_equal(dec[len], 0); /* NUL after the bytes */
    }
}

static void test_round_trip_binary(void **state)
{
    uint8_t data[300];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(255 - i);
    for (size_t n = 0; n <= sizeof(data); n++) {
        _cleanup_free_ char *enc = base64_encode(data, n);
        assert_int_equal(strlen(enc), (n + 2) / 3 * 4);
        size_t len = 0;
        _cleanup_free_ uint8_t *dec = base64_decode(enc, &len);
        assert_non_null(dec);
        assert_int_equal(len, n);
        assert_memory_equal(dec, data, n);
    }
    /* Every alphabet character decodes ("+/" included). */
    size_t len = 0;
    _cleanup_free_ uint8_t *dec = base64_decode("+/+/", &len);
    assert_non_null(dec);
    assert_int_equal(len, 3);
    assert_int_equal(dec[0], 0xfb);
    assert_int_equal(dec[1], 0xff);
    assert_int_equal(dec[2], 0xbf);
}

static void test_strict_refusals(void **state)
{
    static const char *const bad[] = {
        "Zg",                 /* no padding */
        "Zm8",                /* no padding */
        "Zg=",                /* short padding */
        "Zg===",              /* too much */
        "====",               /* padding only */
        "Z===",               /* three '=' */
        "Zg==Zg==",           /* padding in the middle */
        "Zm=v",               /* '=' inside a group */
        "Zm9v YmFy",          /* space */
        "Zm9v\nYmFy", "Zm9-", /* base64url */
        "Zm9_",       "Zh==", /* unused bits set: not canonical */
        "Zm9=",       "%%%not-base64", "not base64!",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        size_t len = 12345;
        uint8_t *dec = base64_decode(bad[i], &len);
        if (dec)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(len, 12345); /* untouched */
    }
}

static void test_embedded_nul(void **state)
{
    /* Bytes may hold NULs; the length says where they end. */
    size_t len = 0;
    _cleanup_free_ uint8_t *dec = base64_decode("YQBi", &len);
    assert_non_null(dec);
    assert_int_equal(len, 3);
    assert_memory_equal(dec, "a\0b", 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_round_trip_binary),
        cmocka_unit_test(test_strict_refusals),
        cmocka_unit_test(test_embedded_nul),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
