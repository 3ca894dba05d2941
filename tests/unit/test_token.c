/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for the streaming request cache: tokens are 8 base64url
 * characters, used once, expire after the ttl, and at most `max` wait.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/util.h"
#include "stream/token.h"

static struct stream_request *req_new(const char *id)
{
    struct stream_request *r = xcalloc(1, sizeof(*r));
    r->kind = STREAM_EXEC;
    r->container_id = xstrdup(id);
    r->n_cmd = 1;
    r->cmd = xcalloc(1, sizeof(char *));
    r->cmd[0] = xstrdup("true");
    return r;
}

static void test_one_shot(void **state)
{
    struct token_cache *c = token_cache_new(10, 60000);
    char tok[TOKEN_LEN + 1];
    struct error *err = NULL;
    assert_int_equal(token_cache_insert(c, req_new("abc"), tok, &err), 0);
    assert_int_equal(strlen(tok), TOKEN_LEN);
    for (size_t i = 0; i < TOKEN_LEN; i++)
        assert_non_null(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", tok[i]));
    assert_int_equal(token_cache_count(c), 1);
    assert_null(token_cache_take(c, "nothere1"));
    assert_null(token_cache_take(c, ""));
    assert_null(token_cache_take(c, NULL));
    struct stream_request *r = token_cache_take(c, tok);
    assert_non_null(r);
    assert_string_equal(r->container_id, "abc");
    stream_request_free(r);
    assert_null(token_cache_take(c, tok)); /* used */
    assert_int_equal(token_cache_count(c), 0);
    token_cache_free(c);
}

static void test_distinct_tokens(void **state)
{
    struct token_cache *c = token_cache_new(200, 60000);
    char toks[200][TOKEN_LEN + 1];
    for (int i = 0; i < 200; i++)
        assert_int_equal(token_cache_insert(c, req_new("x"), toks[i], NULL), 0);
    for (int i = 0; i < 200; i++)
        for (int j = i + 1; j < 200; j++)
            assert_string_not_equal(toks[i], toks[j]);
    /* Taken in any order. */
    for (int i = 199; i >= 0; i -= 2)
        stream_request_free(token_cache_take(c, toks[i]));
    assert_int_equal(token_cache_count(c), 100);
    token_cache_free(c); /* frees what is left */
}

static void test_full(void **state)
{
    struct token_cache *c = token_cache_new(3, 60000);
    char tok[TOKEN_LEN + 1];
    for (int i = 0; i < 3; i++)
        assert_int_equal(token_cache_insert(c, req_new("x"), tok, NULL), 0);
    struct error *err = NULL;
    assert_int_equal(token_cache_insert(c, req_new("y"), tok, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_RESOURCE_EXHAUSTED);
    error_free(err);
    /* One taken: room again. */
    stream_request_free(token_cache_take(c, tok));
    assert_int_equal(token_cache_insert(c, req_new("z"), tok, NULL), 0);
    token_cache_free(c);
}

static void test_expiry(void **state)
{
    struct token_cache *c = token_cache_new(2, 50);
    char a[TOKEN_LEN + 1], b[TOKEN_LEN + 1];
    assert_int_equal(token_cache_insert(c, req_new("a"), a, NULL), 0);
    assert_int_equal(token_cache_insert(c, req_new("b"), b, NULL), 0);
    usleep(80 * 1000);
    /* Expired entries make room and are gone. */
    assert_int_equal(token_cache_count(c), 0);
    assert_null(token_cache_take(c, a));
    assert_int_equal(token_cache_insert(c, req_new("c"), a, NULL), 0);
    /* A lower ttl applies to what is inserted from then on. */
    token_cache_set_ttl(c, 10);
    assert_int_equal(token_cache_insert(c, req_new("d"), b, NULL), 0);
    usleep(30 * 1000);
    assert_null(token_cache_take(c, b));
    struct stream_request *r = token_cache_take(c, a);
    assert_non_null(r);
    stream_request_free(r);
    token_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_shot),
        cmocka_unit_test(test_distinct_tokens),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_expiry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
