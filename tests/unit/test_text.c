/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for core/text: what outside text looks like in a message.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/text.h"
#include "core/util.h"

static void expect_safe(const char *in, size_t max, const char *want)
{
    _cleanup_free_ char *got = text_safe(in, max);
    assert_string_equal(got, want);
}

static void test_escapes(void **state)
{
    expect_safe("plain text, 1-2_3.", 100, "plain text, 1-2_3.");
    expect_safe("../evil\nline", 100, "../evil\\x0aline");
    expect_safe("tab\there\r", 100, "tab\\x09here\\x0d");
    expect_safe("quote\" and \\back", 100, "quote\\x22 and \\x5cback");
    expect_safe("\x7f\x01", 100, "\\x7f\\x01");
    /* Bytes above ASCII, UTF-8 or not, are escaped too: one line of ASCII. */
    expect_safe("caf\xc3\xa9 \xff", 100, "caf\\xc3\\xa9 \\xff");
    expect_safe("", 100, "");
}

static void test_cut(void **state)
{
    expect_safe("abcdef", 6, "abcdef");
    expect_safe("abcdefg", 6, "abcdef...");
    expect_safe("abc", 0, "...");
    /* The cap counts input bytes; escapes make the output longer, never more input. */
    expect_safe("\n\n\n\n", 2, "\\x0a\\x0a...");
    char big[5000];
    memset(big, '\n', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    _cleanup_free_ char *s = text_safe(big, TEXT_SAFE_MAX);
    assert_int_equal(strlen(s), 4 * TEXT_SAFE_MAX + 3);
}

static void test_tail(void **state)
{
    _cleanup_free_ char *a = text_safe_tail("error: the end\n", 100);
    assert_string_equal(a, "error: the end\\x0a");
    _cleanup_free_ char *b = text_safe_tail("0123456789", 4);
    assert_string_equal(b, "...6789");
    _cleanup_free_ char *c = text_safe_tail("6789", 4);
    assert_string_equal(c, "6789");
    _cleanup_free_ char *d = text_safe_tail("", 4);
    assert_string_equal(d, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_cut),
        cmocka_unit_test(test_tail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
