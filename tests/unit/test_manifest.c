/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for manifest, index and config parsing and the platform choice.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/util.h"
#include "image/manifest.h"

#define DA "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DB "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define DC "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define DD "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"

static int parse(const char *ct, const char *text, struct manifest *m, struct error **err)
{
    return manifest_parse(ct, (const uint8_t *)text, strlen(text), m, err);
}

static void expect_error(const char *ct, const char *text, int code, const char *needle)
{
    struct manifest m;
    struct error *err = NULL;
    assert_int_equal(parse(ct, text, &m, &err), -1);
    assert_int_equal(err->grpc_code, code);
    if (!strstr(err->msg, needle))
        fail_msg("message \"%s\" lacks \"%s\"", err->msg, needle);
    error_free(err);
}

static const char *index_doc =
    "{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_OCI_INDEX "\",\"manifests\":["
    "{\"mediaType\":\"" MEDIA_OCI_MANIFEST "\",\"digest\":\"" DA "\",\"size\":100,"
    "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v7\"}},"
    "{\"mediaType\":\"" MEDIA_OCI_MANIFEST "\",\"digest\":\"" DB "\",\"size\":100,"
    "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}},"
    "{\"mediaType\":\"" MEDIA_OCI_MANIFEST "\",\"digest\":\"" DC "\",\"size\":100,"
    "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
    "{\"mediaType\":\"" MEDIA_OCI_MANIFEST "\",\"digest\":\"" DD "\",\"size\":100,"
    "\"platform\":{\"os\":\"unknown\",\"architecture\":\"unknown\"}}]}";

static void test_index_select(void **state)
{
    struct manifest m;
    struct error *err = NULL;
    assert_int_equal(parse(NULL, index_doc, &m, &err), 0);
    assert_true(m.is_index);
    assert_int_equal(m.n_descs, 4);
    const struct descriptor *d = manifest_select_platform(&m, "amd64", NULL, &err);
    assert_non_null(d);
    assert_string_equal(d->digest, DC);
    d = manifest_select_platform(&m, "arm64", "v8", &err);
    assert_string_equal(d->digest, DB);
    d = manifest_select_platform(&m, "arm", "v7", &err);
    assert_string_equal(d->digest, DA);
    d = manifest_select_platform(&m, "arm", "v6", &err);
    assert_null(d);
    assert_int_equal(err->grpc_code, GRPC_NOT_FOUND);
    assert_non_null(strstr(err->msg, "linux/arm64/v8"));
    error_free(err);
    err = NULL;
    assert_null(manifest_select_platform(&m, "s390x", NULL, &err));
    error_free(err);
    manifest_clear(&m);
}

static void test_docker_list_from_header(void **state)
{
    const char *doc = "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" MEDIA_DOCKER_MANIFEST
                      "\",\"digest\":\"" DA "\",\"size\":7,\"platform\":{\"os\":\"linux\","
                      "\"architecture\":\"amd64\"}}]}";
    struct manifest m;
    struct error *err = NULL;
    assert_int_equal(parse(MEDIA_DOCKER_LIST "; charset=utf-8", doc, &m, &err), 0);
    assert_true(m.is_index);
    assert_string_equal(m.media_type, MEDIA_DOCKER_LIST);
    manifest_clear(&m);
}

static void test_image_manifest(void **state)
{
    const char *doc =
        "{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_DOCKER_MANIFEST "\",\"config\":{"
        "\"mediaType\":\"" MEDIA_DOCKER_CONFIG "\",\"digest\":\"" DA "\",\"size\":1234},"
        "\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\","
        "\"digest\":\"" DB "\",\"size\":99},{\"mediaType\":"
        "\"application/vnd.oci.image.layer.v1.tar+zstd\",\"digest\":\"" DC "\",\"size\":5}]}";
    struct manifest m;
    struct error *err = NULL;
    assert_int_equal(parse(NULL, doc, &m, &err), 0);
    assert_false(m.is_index);
    assert_string_equal(m.config.digest, DA);
    assert_int_equal(m.config.size, 1234);
    assert_int_equal(m.n_descs, 2);
    assert_string_equal(m.descs[1].digest, DC);
    manifest_clear(&m);
}

static void test_refusals(void **state)
{
    expect_error(NULL, "{\"schemaVersion\":1,\"name\":\"x\",\"fsLayers\":[]}",
                 GRPC_FAILED_PRECONDITION, "schema1");
    expect_error("application/vnd.docker.distribution.manifest.v1+prettyjws",
                 "{\"schemaVersion\":2}", GRPC_FAILED_PRECONDITION, "schema1");
    expect_error(NULL, "{\"schemaVersion\":2,\"mediaType\":\"application/x-weird\"}",
                 GRPC_FAILED_PRECONDITION, "unsupported manifest media type");
    expect_error(NULL, "[1]", GRPC_INVALID_ARGUMENT, "JSON object");
    expect_error(NULL, "not json", GRPC_INVALID_ARGUMENT, "JSON");
    expect_error(NULL,
                 "{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_OCI_MANIFEST "\",\"config\":{"
                 "\"digest\":\"sha256:short\",\"size\":1},\"layers\":[]}",
                 GRPC_INVALID_ARGUMENT, "digest");
    expect_error(NULL,
                 "{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_OCI_MANIFEST "\",\"config\":{"
                 "\"digest\":\"" DA "\",\"size\":-1},\"layers\":[]}",
                 GRPC_INVALID_ARGUMENT, "size");
    expect_error(NULL,
                 "{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_OCI_MANIFEST "\",\"config\":{"
                 "\"digest\":\"" DA "\",\"size\":1},\"layers\":[{\"mediaType\":"
                 "\"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip\",\"digest\":\"" DB
                 "\",\"size\":1}]}",
                 GRPC_FAILED_PRECONDITION, "layer media type");
    expect_error(NULL,
                 "{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_OCI_MANIFEST "\",\"config\":{"
                 "\"mediaType\":\"application/vnd.cncf.helm.config.v1+json\",\"digest\":\"" DA
                 "\",\"size\":1},\"layers\":[]}",
                 GRPC_FAILED_PRECONDITION, "config media type");
}

static void test_config(void **state)
{
    const char *doc = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"User\":\"1000\","
                      "\"Env\":[\"PATH=/bin\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" DA
                      "\",\"" DB "\"]}}";
    struct image_config c;
    struct error *err = NULL;
    assert_int_equal(image_config_parse((const uint8_t *)doc, strlen(doc), &c, &err), 0);
    assert_string_equal(c.user, "1000");
    assert_string_equal(c.arch, "amd64");
    assert_int_equal(c.n_diff_ids, 2);
    assert_string_equal(c.diff_ids[1], DB);
    image_config_clear(&c);

    const char *bad = "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"nope\"]}}";
    assert_int_equal(image_config_parse((const uint8_t *)bad, strlen(bad), &c, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    error_free(err);
}

static void test_host_arch(void **state)
{
#if defined(__x86_64__)
    assert_string_equal(manifest_host_arch(), "amd64");
    assert_null(manifest_host_variant());
#else
    assert_string_not_equal(manifest_host_arch(), "unknown");
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_select),   cmocka_unit_test(test_docker_list_from_header),
        cmocka_unit_test(test_image_manifest), cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_config),         cmocka_unit_test(test_host_arch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
