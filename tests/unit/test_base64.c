/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for base64: RFC 4648 test vectors in both alphabets, padding
 * rules, and rejection of bad input.
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

static void test_vectors(void **state)
{
    static const struct {
        const char *plain, *std, *url;
    } v[] = {
        {"", "", ""},
        {"f", "Zg==", "Zg"},
        {"fo", "Zm8=", "Zm8"},
        {"foo", "Zm9v", "Zm9v"},
        {"foob", "Zm9vYg==", "Zm9vYg"},
        {"fooba", "Zm9vYmE=", "Zm9vYmE"},
        {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t n = strlen(v[i].plain);
        char *s = base64_encode(v[i].plain, n, false);
        assert_string_equal(s, v[i].std);
        assert_int_equal(strlen(s), base64_encoded_len(n, false));
        free(s);
        s = base64_encode(v[i].plain, n, true);
        assert_string_equal(s, v[i].url);
        assert_int_equal(strlen(s), base64_encoded_len(n, true));
        free(s);
        uint8_t out[16];
        assert_int_equal(base64_decode(v[i].std, strlen(v[i].std), false, out), (long)n);
        assert_memory_equal(out, v[i].plain, n);
        assert_int_equal(base64_decode(v[i].url, strlen(v[i].url), true, out), (long)n);
        assert_memory_equal(out, v[i].plain, n);
    }
}

static void test_alphabets(void **state)
{
    const uint8_t bytes[] = {0xfb, 0xff, 0xbf};
    char *s = base64_encode(bytes, sizeof(bytes), false);
    assert_string_equal(s, "+/+/");
    free(s);
    s = base64_encode(bytes, sizeof(bytes), true);
    assert_string_equal(s, "-_-_");
    free(s);
    uint8_t out[8];
    assert_int_equal(base64_decode("-_-_", 4, true, out), 3);
    assert_memory_equal(out, bytes, 3);
    assert_int_equal(base64_decode("-_-_", 4, false, out), -1);
    assert_int_equal(base64_decode("+/+/", 4, true, out), -1);
}

static void test_bad_input(void **state)
{
    uint8_t out[16];
    assert_int_equal(base64_decode("Zg=", 3, false, out), -1);    /* not a multiple of 4 */
    assert_int_equal(base64_decode("Z===", 4, false, out), -1);   /* too much padding */
    assert_int_equal(base64_decode("Zg=a", 4, false, out), -1);   /* padding inside */
    assert_int_equal(base64_decode("Zh==", 4, false, out), -1);   /* non-zero spare bits */
    assert_int_equal(base64_decode("Z", 1, true, out), -1);       /* a lone character */
    assert_int_equal(base64_decode("Zm9v\n", 5, false, out), -1); /* a newline */
    assert_int_equal(base64_decode("Zg==", 4, true, out), -1);    /* no padding in URL form */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_alphabets),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
