/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for image/registry_auth: credentials from the CRI's AuthConfig,
 * the Bearer token cache (keys that never hold a secret, expiry, the oldest
 * going first when full), WWW-Authenticate challenges, token answers.
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

#include <unistd.h>

#include "core/error.h"
#include "core/loop.h"
#include "core/util.h"
#include "image/registry.h"
#include "image/registry_auth.h"
#include "image/xferlib.h"

static void test_creds_from_auth_config(void **state)
{
    struct registry_creds c = {0};
    struct error *err = NULL;
    struct registry_auth up = {.username = "me", .password = "pw", .registry_token = ""};
    assert_int_equal(registry_auth_creds_from(&c, &up, &err), 0);
    assert_string_equal(c.username, "me");
    assert_string_equal(c.password, "pw");
    assert_null(c.registry_token); /* "" is absent */
    assert_true(registry_auth_creds_basic(&c));
    registry_auth_creds_clear(&c);

    struct registry_auth b64 = {.auth = "dXNlcjpwYTpzcw==", .identity_token = "rt"};
    assert_int_equal(registry_auth_creds_from(&c, &b64, &err), 0);
    assert_string_equal(c.username, "user");
    assert_string_equal(c.password, "pa:ss"); /* only the first ':' splits */
    assert_string_equal(c.identity_token, "rt");
    assert_true(registry_auth_creds_any(&c));
    registry_auth_creds_clear(&c);

    static const char *const bad[] = {"dXNlcg==" /* no ':' */, "dXNlcjpwAHc=" /* a NUL */,
                                      "dXNlcjpwdw" /* no padding */, "not base64!"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct registry_auth a = {.auth = bad[i]};
        assert_int_equal(registry_auth_creds_from(&c, &a, &err), -1);
        assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
        error_clear(&err);
        registry_auth_creds_clear(&c);
    }
    assert_false(registry_auth_is_set(NULL));
    struct registry_auth empty = {.username = "", .auth = ""};
    assert_false(registry_auth_is_set(&empty));
    assert_true(registry_auth_is_set(&up));
}

static void test_token_cache(void **state)
{
    struct error *err = NULL;
    assert_int_equal(xferlib_acquire(&err), 0); /* token keys hash credentials */
    struct registry_tokens t;
    registry_auth_tokens_init(&t);
    struct registry_creds anon = {0};
    struct registry_creds basic = {.username = (char *)"u", .password = (char *)"secret"};
    char *k1 = registry_auth_token_key("reg:5000", "repository:a:pull", &anon);
    char *k2 = registry_auth_token_key("reg:5000", "repository:a:pull", &basic);
    assert_string_equal(k1, "reg:5000\nrepository:a:pull\nanonymous");
    assert_null(strstr(k2, "secret")); /* the password is hashed, never kept */
    assert_string_not_equal(k1, k2);
    registry_auth_tokens_store(&t, k1, "tok1", 60);
    registry_auth_tokens_store(&t, k2, "tok2", 60);
    assert_string_equal(registry_auth_tokens_lookup(&t, k1), "tok1");
    assert_string_equal(registry_auth_tokens_lookup(&t, k2), "tok2");
    registry_auth_tokens_store(&t, k1, "tok1b", 60); /* replaced */
    assert_int_equal(t.n, 2);
    assert_string_equal(registry_auth_tokens_lookup(&t, k1), "tok1b");
    registry_auth_tokens_drop(&t, k1);
    assert_null(registry_auth_tokens_lookup(&t, k1));
    /* A token expires a little before its lifetime: 1s * 9/10. */
    registry_auth_tokens_store(&t, k1, "short", 1);
    usleep(950 * 1000);
    assert_null(registry_auth_tokens_lookup(&t, k1));
    /* Full: the oldest goes. */
    for (int i = 0; i < 70; i++) {
        char key[32];
        snprintf(key, sizeof(key), "k%d", i);
        registry_auth_tokens_store(&t, key, "v", 60);
    }
    assert_int_equal(t.n, 64);
    assert_null(registry_auth_tokens_lookup(&t, k2));
    assert_null(registry_auth_tokens_lookup(&t, "k0"));
    assert_non_null(registry_auth_tokens_lookup(&t, "k69"));
    registry_auth_tokens_clear(&t);
    assert_int_equal(t.n, 0);
    free(k1);
    free(k2);
    xferlib_release();
}

static void test_challenges(void **state)
{
    struct registry_challenge c = {0};
    registry_auth_challenge_parse(
        "Basic realm=\"x\", Bearer realm=\"https://auth/token\",service=\"reg\",scope=\"a\"", &c);
    assert_true(c.basic);
    assert_true(c.bearer);
    assert_string_equal(c.realm, "https://auth/token");
    assert_string_equal(c.service, "reg");
    /* A second Bearer challenge does not change the first one's parameters. */
    registry_auth_challenge_parse("Bearer realm=other,service=\"x\\\"y\"", &c);
    assert_string_equal(c.realm, "https://auth/token");
    registry_auth_challenge_clear(&c);
    registry_auth_challenge_parse("bearer REALM = \"r\\\\1\" , = ,Service=s", &c);
    assert_true(c.bearer);
    assert_false(c.basic);
    assert_string_equal(c.realm, "r\\1");
    assert_string_equal(c.service, "s");
    registry_auth_challenge_clear(&c);
    registry_auth_challenge_parse("Negotiate abc, , =", &c);
    assert_false(c.basic || c.bearer);
    assert_null(c.realm);
    registry_auth_challenge_clear(&c);
}

static void test_token_answers(void **state)
{
    char *tok = NULL;
    int64_t life = 0;
    const char *a = "{\"token\":\"abc\",\"expires_in\":300}";
    assert_int_equal(registry_auth_token_parse(a, strlen(a), 100, 60, &tok, &life), 0);
    assert_string_equal(tok, "abc");
    assert_int_equal(life, 300);
    free(tok);
    const char *b = "{\"access_token\":\"xyz\",\"expires_in\":-5}";
    assert_int_equal(registry_auth_token_parse(b, strlen(b), 100, 60, &tok, &life), 0);
    assert_string_equal(tok, "xyz");
    assert_int_equal(life, 60);
    free(tok);
    /* A lifetime past what the cache's nanosecond clock holds is capped (fuzz_auth found it). */
    const char *c = "{\"token\":\"t\",\"expires_in\":92233720477580700}";
    assert_int_equal(registry_auth_token_parse(c, strlen(c), 100, 60, &tok, &life), 0);
    assert_int_equal(life, REGISTRY_TOKEN_MAX_LIFETIME_S);
    free(tok);
    static const char *const bad[] = {"{}",
                                      "{\"token\":\"\"}",
                                      "{\"token\":\"a b\"}",
                                      "{\"token\":\"0123456789abc\"}",
                                      "not json",
                                      ""};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        tok = NULL;
        if (registry_auth_token_parse(bad[i], strlen(bad[i]), 12, 60, &tok, &life) == 0)
            fail_msg("accepted %s", bad[i]);
        assert_null(tok);
    }
    assert_int_equal(registry_auth_token_parse(NULL, 0, 12, 60, &tok, &life), -1);
}

static void expect_auth_refused(const struct registry_auth *a, const char *field)
{
    struct error *err = NULL;
    assert_int_equal(registry_auth_check(a, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    char want[128];
    snprintf(want, sizeof(want), "%s has a control character (such as CR or LF)", field);
    assert_string_equal(err->msg, want);
    error_free(err);
}

static void test_auth_control_bytes_refused(void **state)
{
    /* Every credential ends in a header or a form: no CR, LF or other control byte. */
    expect_auth_refused(&(struct registry_auth){.registry_token = "tok\r\nX-Injected: 1"},
                        "auth.registry_token");
    expect_auth_refused(&(struct registry_auth){.username = "u\n", .password = "p"},
                        "auth.username");
    expect_auth_refused(&(struct registry_auth){.username = "u", .password = "p\x7f"},
                        "auth.password");
    expect_auth_refused(&(struct registry_auth){.identity_token = "id\t"}, "auth.identity_token");
    /* base64("u:p\r\nX: 1") */
    expect_auth_refused(&(struct registry_auth){.auth = "dTpwDQpYOiAx"}, "auth.auth");
    struct error *err = NULL;
    assert_int_equal(registry_auth_check(&(struct registry_auth){.auth = "!!"}, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    error_clear(&err);
    /* Printable credentials, UTF-8 ones included, are fine. */
    assert_int_equal(registry_auth_check(&(struct registry_auth){.username = "u",
                                                                 .password = "p \xc3\xa9 !",
                                                                 .auth = "dTpw",
                                                                 .registry_token = "a.b-c"},
                                         NULL),
                     0);
    assert_int_equal(registry_auth_check(NULL, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth_control_bytes_refused),
        cmocka_unit_test(test_creds_from_auth_config),
        cmocka_unit_test(test_token_cache),
        cmocka_unit_test(test_challenges),
        cmocka_unit_test(test_token_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
