/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for core/table: order kept across removals, lookups by full id
 * and by unique prefix, ambiguity.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/table.h"
#include "core/util.h"

struct obj {
    const char *id;
};

static const char *obj_id(const void *item)
{
    return ((const struct obj *)item)->id;
}

static void test_order_and_remove(void **state)
{
    struct table t = TABLE_INIT(obj_id);
    struct obj objs[40];
    char ids[40][8];
    for (int i = 0; i < 40; i++) {
        snprintf(ids[i], sizeof(ids[i]), "id%02d", i);
        objs[i].id = ids[i];
        table_add(&t, &objs[i]); /* grows past the first allocation */
    }
    assert_int_equal(t.n, 40);
    assert_true(table_remove(&t, &objs[0]));
    assert_true(table_remove(&t, &objs[20]));
    assert_true(table_remove(&t, &objs[39]));
    assert_false(table_remove(&t, &objs[20]));
    assert_int_equal(t.n, 37);
    /* The rest keep their order. */
    size_t k = 0;
    for (int i = 0; i < 40; i++) {
        if (i == 0 || i == 20 || i == 39)
            continue;
        assert_ptr_equal(table_at(&t, k), &objs[i]);
        k++;
    }
    assert_null(table_at(&t, 37));
    table_clear(&t);
    assert_int_equal(t.n, 0);
    assert_null(table_at(&t, 0));
    assert_non_null(t.id_of);
}

static void test_find(void **state)
{
    struct table t = TABLE_INIT(obj_id);
    struct obj a = {"abc123"}, b = {"abd456"}, c = {"abc1"};
    table_add(&t, &a);
    table_add(&t, &b);
    assert_ptr_equal(table_find(&t, "abc123"), &a);
    assert_null(table_find(&t, "abc"));
    assert_null(table_find(&t, NULL));
    assert_ptr_equal(table_find_prefix(&t, "abc"), &a);
    assert_ptr_equal(table_find_prefix(&t, "abd"), &b);
    assert_null(table_find_prefix(&t, "ab")); /* ambiguous */
    assert_null(table_find_prefix(&t, "x"));
    assert_null(table_find_prefix(&t, ""));
    assert_null(table_find_prefix(&t, NULL));
    /* A full id wins over its being the prefix of another. */
    table_add(&t, &c);
    assert_ptr_equal(table_find_prefix(&t, "abc1"), &c);
    assert_null(table_find_prefix(&t, "abc")); /* now ambiguous */
    table_clear(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_remove),
        cmocka_unit_test(test_find),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
