/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for core/error: setting once, prefixing, and copies that keep
 * the code, the errno and the message as they are.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>

#include "core/error.h"
#include "core/util.h"

static void test_set_once_and_prefix(void **state)
{
    struct error *err = NULL;
    assert_int_equal(error_set(&err, GRPC_NOT_FOUND, ENOENT, "open %s", "x"), -1);
    assert_int_equal(err->grpc_code, GRPC_NOT_FOUND);
    assert_int_equal(err->sys_errno, ENOENT);
    assert_string_equal(err->msg, "open x: No such file or directory");
    /* A second set is a bug and keeps the first. */
    error_set(&err, GRPC_INTERNAL, 0, "later");
    assert_int_equal(err->grpc_code, GRPC_NOT_FOUND);
    assert_int_equal(error_prefix(&err, "load %d", 1), -1);
    assert_string_equal(err->msg, "load 1: open x: No such file or directory");
    error_clear(&err);
    assert_null(err);
    /* NULL targets are fine. */
    assert_int_equal(error_set(NULL, GRPC_INTERNAL, 0, "nobody"), -1);
    assert_int_equal(error_prefix(&err, "nothing"), -1);
    assert_null(err);
}

static void test_dup_keeps_everything(void **state)
{
    _cleanup_error_ struct error *e = NULL;
    error_set(&e, GRPC_FAILED_PRECONDITION, ENOTEMPTY, "rmdir d");
    _cleanup_error_ struct error *c = error_dup(e);
    assert_non_null(c);
    assert_ptr_not_equal(c, e);
    assert_ptr_not_equal(c->msg, e->msg);
    assert_int_equal(c->grpc_code, GRPC_FAILED_PRECONDITION);
    assert_int_equal(c->sys_errno, ENOTEMPTY); /* callers branch on it */
    /* The strerror text is not appended a second time. */
    assert_string_equal(c->msg, e->msg);
    assert_null(error_dup(NULL));
}

static void test_copy_sets_once(void **state)
{
    _cleanup_error_ struct error *src = NULL, *dst = NULL, *other = NULL;
    error_set(&src, GRPC_UNAVAILABLE, EPIPE, "write");
    error_set(&other, GRPC_INTERNAL, 0, "second");
    assert_int_equal(error_copy(&dst, src), -1);
    assert_int_equal(dst->grpc_code, GRPC_UNAVAILABLE);
    assert_int_equal(dst->sys_errno, EPIPE);
    assert_string_equal(dst->msg, src->msg);
    /* Like error_set: an error already set is kept. */
    error_copy(&dst, other);
    assert_int_equal(dst->grpc_code, GRPC_UNAVAILABLE);
    /* No source, or no target: nothing happens. */
    _cleanup_error_ struct error *none = NULL;
    assert_int_equal(error_copy(&none, NULL), -1);
    assert_null(none);
    assert_int_equal(error_copy(NULL, src), -1);
}

static void test_code_names(void **state)
{
    assert_string_equal(grpc_code_name(GRPC_OK), "OK");
    assert_string_equal(grpc_code_name(GRPC_UNAUTHENTICATED), "UNAUTHENTICATED");
    assert_string_equal(grpc_code_name(-1), "UNKNOWN");
    assert_string_equal(grpc_code_name(99), "UNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_once_and_prefix),
        cmocka_unit_test(test_dup_keeps_everything),
        cmocka_unit_test(test_copy_sets_once),
        cmocka_unit_test(test_code_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
