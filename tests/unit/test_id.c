/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for core/id: fresh ids are valid and differ; the checks refuse
 * upper case, short, long and non-hex text.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/id.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_new_ids(void **state)
{
    char a[ID_LEN + 1], b[ID_LEN + 1];
    struct error *err = NULL;
    assert_int_equal(id_new(a, &err), 0);
    assert_int_equal(id_new(b, &err), 0);
    assert_null(err);
    assert_int_equal(strlen(a), ID_LEN);
    assert_true(id_is_valid(a));
    assert_true(id_is_valid(b));
    assert_string_not_equal(a, b);
}

static void test_valid(void **state)
{
    assert_true(id_is_valid(HEX64));
    assert_false(id_is_valid(NULL));
    assert_false(id_is_valid(""));
    assert_false(id_is_valid(HEX64 "0")); /* long */
    assert_false(id_is_valid(HEX64 + 1)); /* short */
    assert_false(id_is_valid("0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"));
    assert_false(id_is_valid("g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
    assert_false(id_is_valid("../456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
}

static void test_hex(void **state)
{
    assert_true(id_is_hex("abc123zz", 6)); /* only the first n count */
    assert_false(id_is_hex("abc123zz", 7));
    assert_true(id_is_hex("", 0));
    assert_false(id_is_hex("ABC", 3));
    assert_false(id_is_hex("12 4", 4));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_ids),
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
