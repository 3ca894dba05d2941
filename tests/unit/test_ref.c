/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for image reference parsing and normalisation.
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
#include "core/util.h"
#include "image/ref.h"

#define D64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

struct good_case {
    const char *in;
    const char *domain;
    const char *path;
    const char *tag;
    const char *digest;
    const char *tagged;
};

static void test_normalise(void **state)
{
    static const struct good_case cases[] = {
        {"busybox", "docker.io", "library/busybox", "latest", NULL,
         "docker.io/library/busybox:latest"},
        {"busybox:1.36", "docker.io", "library/busybox", "1.36", NULL,
         "docker.io/library/busybox:1.36"},
        {"me/app", "docker.io", "me/app", "latest", NULL, "docker.io/me/app:latest"},
        {"docker.io/busybox", "docker.io", "library/busybox", "latest", NULL,
         "docker.io/library/busybox:latest"},
        {"index.docker.io/library/busybox:x", "docker.io", "library/busybox", "x", NULL,
         "docker.io/library/busybox:x"},
        {"localhost/app", "localhost", "app", "latest", NULL, "localhost/app:latest"},
        {"localhost:5000/a/b/c:v1", "localhost:5000", "a/b/c", "v1", NULL,
         "localhost:5000/a/b/c:v1"},
        {"127.0.0.1:5000/busybox@sha256:" D64, "127.0.0.1:5000", "busybox", NULL, "sha256:" D64,
         "127.0.0.1:5000/busybox@sha256:" D64},
        {"quay.io/org/app:1.0@sha256:" D64, "quay.io", "org/app", "1.0", "sha256:" D64,
         "quay.io/org/app:1.0"},
        {"[::1]:5000/app:tag", "[::1]:5000", "app", "tag", NULL, "[::1]:5000/app:tag"},
        {"Registry.Example/app", "Registry.Example", "app", "latest", NULL,
         "Registry.Example/app:latest"},
        {"a/b__c.d-e--f:T_1.x-y", "docker.io", "a/b__c.d-e--f", "T_1.x-y", NULL,
         "docker.io/a/b__c.d-e--f:T_1.x-y"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        const struct good_case *c = &cases[i];
        struct image_ref r;
        struct error *err = NULL;
        int rc = image_ref_parse(c->in, &r, &err);
        if (rc != 0)
            fail_msg("%s: %s", c->in, err->msg);
        assert_string_equal(r.domain, c->domain);
        assert_string_equal(r.path, c->path);
        if (c->tag)
            assert_string_equal(r.tag, c->tag);
        else
            assert_null(r.tag);
        if (c->digest)
            assert_string_equal(r.digest, c->digest);
        else
            assert_null(r.digest);
        char *tagged = image_ref_tagged(&r);
        assert_string_equal(tagged, c->tagged);
        free(tagged);
        image_ref_clear(&r);
    }
}

static void test_invalid(void **state)
{
    static const struct {
        const char *in;
        const char *needle;
    } cases[] = {
        {"", "empty"},
        {"UPPER/Case", "component"},
        {"busybox:", "tag"},
        {"busybox:-bad", "tag"},
        {"busybox@sha256:abc", "64"},
        {"busybox@md5:" D64, "algorithm"},
        {"busybox@", "digest"},
        {"a//b", "component"},
        {"a/b/", "component"},
        {"-a/b", "component"},
        {"app_/x", "component"},
        {"bad host.io/app", "space"},
        {"exa_mple.com/app", "host"},
        {"host:99999999/app", "host"},
        {":tag", "name"},
        {"busybox\xc3\xa9", "ASCII"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct image_ref r;
        struct error *err = NULL;
        if (image_ref_parse(cases[i].in, &r, &err) == 0)
            fail_msg("accepted bad reference \"%s\"", cases[i].in);
        assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
        if (!strstr(err->msg, cases[i].needle))
            fail_msg("\"%s\": message \"%s\" lacks \"%s\"", cases[i].in, err->msg, cases[i].needle);
        error_free(err);
    }
}

static void test_long_name_refused(void **state)
{
    char name[400];
    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    struct image_ref r;
    struct error *err = NULL;
    assert_int_equal(image_ref_parse(name, &r, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    error_free(err);
}

static void test_helpers(void **state)
{
    struct image_ref r;
    struct error *err = NULL;
    assert_int_equal(image_ref_parse("busybox", &r, &err), 0);
    char *name = image_ref_name(&r);
    assert_string_equal(name, "docker.io/library/busybox");
    char *dg = image_ref_with_digest(&r, "sha256:" D64);
    assert_string_equal(dg, "docker.io/library/busybox@sha256:" D64);
    free(name);
    free(dg);
    image_ref_clear(&r);
    assert_true(image_ref_is_digest("sha256:" D64));
    assert_false(image_ref_is_digest("sha256:" D64 "0"));
    assert_false(image_ref_is_digest(
        "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"));
    assert_false(image_ref_is_digest(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalise),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_long_name_refused),
        cmocka_unit_test(test_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
