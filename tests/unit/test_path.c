/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for core/path: the lexical checks of outside paths.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/path.h"
#include "core/util.h"

static void test_dotdot(void **state)
{
    static const char *const yes[] = {"..", "../a", "a/..", "a/../b", "/..", "a//../", "../../"};
    static const char *const no[] = {"", "a..b", "...", "a/...", "..a/b", "a/b..", "/a/.b", "."};
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        if (!path_has_dotdot(yes[i]))
            fail_msg("no \"..\" found in \"%s\"", yes[i]);
    }
    for (size_t i = 0; i < ARRAY_SIZE(no); i++) {
        if (path_has_dotdot(no[i]))
            fail_msg("\"..\" found in \"%s\"", no[i]);
    }
}

static void test_safe_relpath(void **state)
{
    static const char *const yes[] = {"a", "a/b", "./a", "a//b/", ".", "a/./b", "...", "a..b"};
    static const char *const no[] = {"", "/", "/a", "..", "../a", "a/../b", "a/.."};
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        if (!path_is_safe_relpath(yes[i]))
            fail_msg("\"%s\" refused", yes[i]);
    }
    for (size_t i = 0; i < ARRAY_SIZE(no); i++) {
        if (path_is_safe_relpath(no[i]))
            fail_msg("\"%s\" accepted", no[i]);
    }
}

static void test_clean_relpath(void **state)
{
    static const char *const yes[] = {"a", "a/b", "blobs/sha256/ab", "...", "a..b/.c"};
    static const char *const no[] = {"",    "/a", "./a",  "a//b", "a/",    "a/./b",
                                     "a/.", "..", "a/..", ".",    "a/../b"};
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        if (!path_is_clean_relpath(yes[i]))
            fail_msg("\"%s\" refused", yes[i]);
    }
    for (size_t i = 0; i < ARRAY_SIZE(no); i++) {
        if (path_is_clean_relpath(no[i]))
            fail_msg("\"%s\" accepted", no[i]);
    }
}

static void test_name(void **state)
{
    assert_true(path_is_name("pod-1", 16));
    assert_true(path_is_name("...", 16));
    assert_true(path_is_name("0123456789abcdef", 16));
    assert_false(path_is_name("0123456789abcdef0", 16));
    assert_false(path_is_name("", 16));
    assert_false(path_is_name(".", 16));
    assert_false(path_is_name("..", 16));
    assert_false(path_is_name("a/b", 16));
    assert_false(path_is_name("a\nb", 16));
    assert_false(path_is_name("a\x7f", 16));
}

static void test_dot_component(void **state)
{
    const char *yes[] = {".", "..", "./a", "a/.", "a/../b", "/a/./b", "a//./"};
    const char *no[] = {"", "/", "a", ".a", "a.", "a..b", "...", "/a/b/"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        assert_true(path_has_dot_component(yes[i]));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_false(path_has_dot_component(no[i]));
}

static void test_control(void **state)
{
    assert_false(path_has_control(""));
    assert_false(path_has_control("/var/log/pods/a b/\xc3\xa9"));
    assert_true(path_has_control("a\nb"));
    assert_true(path_has_control("a\rb"));
    assert_true(path_has_control("\x01"));
    assert_true(path_has_control("a\x7f"));
}

static void test_longest_component(void **state)
{
    assert_int_equal(path_longest_component(""), 0);
    assert_int_equal(path_longest_component("/"), 0);
    assert_int_equal(path_longest_component("abc"), 3);
    assert_int_equal(path_longest_component("/a/bcde//fg/"), 4);
    assert_int_equal(path_longest_component("ab/c/defgh"), 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dotdot),
        cmocka_unit_test(test_safe_relpath),
        cmocka_unit_test(test_clean_relpath),
        cmocka_unit_test(test_name),
        cmocka_unit_test(test_dot_component),
        cmocka_unit_test(test_control),
        cmocka_unit_test(test_longest_component),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
