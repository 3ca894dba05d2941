/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for the gRPC method router and the CRI method table: every
 * method of both services routes somewhere, unbuilt methods and unknown
 * paths answer UNIMPLEMENTED, unparsable requests INVALID_ARGUMENT. The h2
 * layer is replaced by recording fakes of h2_call_send/finish.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "api.pb-c.h"
#include "core/config.h"
#include "core/error.h"
#include "core/util.h"
#include "cri/methods.h"
#include "cri/runtime_service.h"
#include "grpc/h2.h"
#include "grpc/router.h"

/* What the fake h2 layer saw for the last call. */
static struct {
    int finished;
    int code;
    char msg[512];
    uint8_t sent[4096];
    size_t sent_len;
} last;

uint64_t h2_call_id(const struct h2_call *call)
{
    return 1;
}

struct h2_call *h2_call_lookup(uint64_t id)
{
    return NULL;
}

void h2_call_on_cancel(struct h2_call *call, void (*cb)(uint64_t call_id, void *arg), void *arg)
{
}

int h2_call_send(struct h2_call *call, const uint8_t *msg, size_t len, struct error **err)
{
    assert_true(len <= sizeof(last.sent));
    memcpy(last.sent, msg, len);
    last.sent_len = len;
    return 0;
}

void h2_call_finish(struct h2_call *call, int grpc_code, const char *message)
{
    last.finished++;
    last.code = grpc_code;
    snprintf(last.msg, sizeof(last.msg), "%s", message ? message : "");
}

/* Long streams' calls (events, streamed lists): not reached by these tests. */
int h2_call_send_headers(struct h2_call *call, struct error **err)
{
    return 0;
}

size_t h2_call_out_pending(const struct h2_call *call)
{
    return 0;
}

void h2_call_set_out_cap(struct h2_call *call, size_t cap)
{
}

void h2_call_cut_off(struct h2_call *call)
{
}

static struct config cfg;
static struct runtime_service rs;
static struct router *router;

static int setup(void **state)
{
    memset(&last, 0, sizeof(last));
    config_init_defaults(&cfg);
    runtime_service_init(&rs, &cfg);
    router = cri_methods_router_new(&rs, NULL);
    return 0;
}

static int teardown(void **state)
{
    router_free(router);
    runtime_service_clear(&rs);
    config_free(&cfg);
    return 0;
}

static void call(const char *path, const uint8_t *msg, size_t len)
{
    memset(&last, 0, sizeof(last));
    router_dispatch((struct h2_call *)0x1, path, msg, len, router);
    assert_int_equal(last.finished, 1);
}

static void test_every_method_is_routed(void **state)
{
    const ProtobufCServiceDescriptor *svcs[] = {&runtime__v1__runtime_service__descriptor,
                                                &runtime__v1__image_service__descriptor};
    size_t total = 0;
    for (size_t s = 0; s < ARRAY_SIZE(svcs); s++) {
        for (unsigned i = 0; i < svcs[s]->n_methods; i++) {
            char path[256];
            snprintf(path, sizeof(path), "/%s/%s", svcs[s]->name, svcs[s]->methods[i].name);
            assert_string_equal(router_method_name(router, path), svcs[s]->methods[i].name);
            total++;
        }
    }
    assert_true(total >= 40);
}

static void test_unbuilt_method_is_unimplemented(void **state)
{
    call("/runtime.v1.RuntimeService/CheckpointContainer", NULL, 0);
    assert_int_equal(last.code, GRPC_UNIMPLEMENTED);
    assert_string_equal(last.msg, "not implemented yet: CheckpointContainer");
}

static void test_unknown_path_is_unimplemented(void **state)
{
    call("/runtime.v1.RuntimeService/NoSuchMethod", NULL, 0);
    assert_int_equal(last.code, GRPC_UNIMPLEMENTED);
    call("/other.Service/Version", NULL, 0);
    assert_int_equal(last.code, GRPC_UNIMPLEMENTED);
    call("", NULL, 0);
    assert_int_equal(last.code, GRPC_UNIMPLEMENTED);
}

static void test_garbage_is_invalid_argument(void **state)
{
    const uint8_t garbage[] = {0xff, 0xff, 0xff};
    call("/runtime.v1.RuntimeService/Version", garbage, sizeof(garbage));
    assert_int_equal(last.code, GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(last.msg, "Version"));
}

static void test_field_number_zero_is_invalid_argument(void **state)
{
    /*
     * Field number 0 does not exist; protobuf-c takes it when the key is an
     * overlong varint ("80 00") and keeps it as an unknown field (found by
     * tests/fuzz/fuzz_request). Also inside a nested message, and past 2^29-1.
     */
    const uint8_t overlong_zero[] = {0x80, 0x00, 0x00};
    call("/runtime.v1.RuntimeService/Version", overlong_zero, sizeof(overlong_zero));
    assert_int_equal(last.code, GRPC_INVALID_ARGUMENT);
    assert_string_equal(last.msg, "cannot parse the Version request (3 bytes)");
    const uint8_t nested_zero[] = {0x0a, 0x03, 0x80, 0x00, 0x00}; /* runtime_config { 0: 0 } */
    call("/runtime.v1.RuntimeService/UpdateRuntimeConfig", nested_zero, sizeof(nested_zero));
    assert_int_equal(last.code, GRPC_INVALID_ARGUMENT);
    const uint8_t too_big[] = {0x80, 0x80, 0x80, 0x80, 0x10, 0x00}; /* field 2^29 */
    call("/runtime.v1.RuntimeService/Version", too_big, sizeof(too_big));
    assert_int_equal(last.code, GRPC_INVALID_ARGUMENT);
    const uint8_t largest[] = {0xf8, 0xff, 0xff, 0xff, 0x0f, 0x00}; /* field 2^29-1: unknown */
    call("/runtime.v1.RuntimeService/Version", largest, sizeof(largest));
    assert_int_equal(last.code, GRPC_OK);
}

static void test_bad_strings_are_invalid_argument(void **state)
{
    /* One check at the request boundary, for every string field of every method. */
    const uint8_t nul[] = {0x0a, 0x04, 'v', '1', 0x00, 'x'}; /* version = "v1\0x" */
    call("/runtime.v1.RuntimeService/Version", nul, sizeof(nul));
    assert_int_equal(last.code, GRPC_INVALID_ARGUMENT);
    assert_string_equal(last.msg, "the Version request has a NUL byte in version");

    /* Nested: PullImage { image { image: "busybox\0" } }; the handler is never reached. */
    const uint8_t pull[] = {0x0a, 0x0a, 0x0a, 0x08, 'b', 'u', 's', 'y', 'b', 'o', 'x', 0x00};
    call("/runtime.v1.ImageService/PullImage", pull, sizeof(pull));
    assert_int_equal(last.code, GRPC_INVALID_ARGUMENT);
    assert_string_equal(last.msg, "the PullImage request has a NUL byte in image.image");

    /* In a map key: RunPodSandbox { config { labels { key: "a\0" value: "b" } } }. */
    const uint8_t labels[] = {0x0a, 0x09, 0x32, 0x07, 0x0a, 0x02, 'a', 0x00, 0x12, 0x01, 'b'};
    call("/runtime.v1.RuntimeService/RunPodSandbox", labels, sizeof(labels));
    assert_int_equal(last.code, GRPC_INVALID_ARGUMENT);
    assert_string_equal(last.msg, "the RunPodSandbox request has a NUL byte in config.labels.key");

    /* proto3 strings are UTF-8: an overlong '/' and a lone continuation byte are not. */
    const uint8_t overlong[] = {0x0a, 0x03, 'v', 0xc0, 0xaf};
    call("/runtime.v1.RuntimeService/Version", overlong, sizeof(overlong));
    assert_int_equal(last.code, GRPC_INVALID_ARGUMENT);
    assert_string_equal(last.msg, "the Version request has invalid UTF-8 in version");
    const uint8_t lone[] = {0x0a, 0x01, 0x80};
    call("/runtime.v1.RuntimeService/Version", lone, sizeof(lone));
    assert_int_equal(last.code, GRPC_INVALID_ARGUMENT);

    /* Valid UTF-8 is fine, and bytes fields (KeyValue.value of envs) are not strings. */
    const uint8_t utf8[] = {0x0a, 0x04, 'v', 0xc3, 0xa9, '1'};
    call("/runtime.v1.RuntimeService/Version", utf8, sizeof(utf8));
    assert_int_equal(last.code, GRPC_OK);
}

static void test_version_reply(void **state)
{
    const uint8_t req[] = {0x0a, 0x02, 'v', '1'};
    call("/runtime.v1.RuntimeService/Version", req, sizeof(req));
    assert_int_equal(last.code, GRPC_OK);
    Runtime__V1__VersionResponse *resp =
        runtime__v1__version_response__unpack(NULL, last.sent_len, last.sent);
    assert_non_null(resp);
    assert_string_equal(resp->version, "0.1.0");
    assert_string_equal(resp->runtime_name, "tinycri");
    assert_string_equal(resp->runtime_version, PACKAGE_VERSION);
    assert_string_equal(resp->runtime_api_version, "v1");
    runtime__v1__version_response__free_unpacked(resp, NULL);
}

static void test_runtime_config_follows_driver(void **state)
{
    call("/runtime.v1.RuntimeService/RuntimeConfig", NULL, 0);
    assert_int_equal(last.code, GRPC_OK);
    Runtime__V1__RuntimeConfigResponse *resp =
        runtime__v1__runtime_config_response__unpack(NULL, last.sent_len, last.sent);
    assert_non_null(resp);
    assert_non_null(resp->linux);
    assert_int_equal(resp->linux->cgroup_driver, RUNTIME__V1__CGROUP_DRIVER__CGROUPFS);
    runtime__v1__runtime_config_response__free_unpacked(resp, NULL);

    cfg.cgroup_driver = CGROUP_DRIVER_SYSTEMD;
    call("/runtime.v1.RuntimeService/RuntimeConfig", NULL, 0);
    resp = runtime__v1__runtime_config_response__unpack(NULL, last.sent_len, last.sent);
    assert_non_null(resp);
    /* SYSTEMD is enum value 0, which proto3 leaves off the wire. */
    assert_true(resp->linux == NULL ||
                resp->linux->cgroup_driver == RUNTIME__V1__CGROUP_DRIVER__SYSTEMD);
    runtime__v1__runtime_config_response__free_unpacked(resp, NULL);
}

static void update_cidr(const char *cidr)
{
    Runtime__V1__NetworkConfig nc = RUNTIME__V1__NETWORK_CONFIG__INIT;
    nc.pod_cidr = (char *)cidr;
    Runtime__V1__RuntimeConfig rc = RUNTIME__V1__RUNTIME_CONFIG__INIT;
    rc.network_config = &nc;
    Runtime__V1__UpdateRuntimeConfigRequest req = RUNTIME__V1__UPDATE_RUNTIME_CONFIG_REQUEST__INIT;
    req.runtime_config = &rc;
    uint8_t buf[256];
    size_t len = runtime__v1__update_runtime_config_request__pack(&req, buf);
    call("/runtime.v1.RuntimeService/UpdateRuntimeConfig", buf, len);
}

static void test_update_runtime_config_keeps_cidr(void **state)
{
    update_cidr("10.88.0.0/16");
    assert_int_equal(last.code, GRPC_OK);
    assert_string_equal(rs.pod_cidr, "10.88.0.0/16");
    update_cidr("10.88.0.0/16,fd00::/64");
    assert_int_equal(last.code, GRPC_OK);
    assert_string_equal(rs.pod_cidr, "10.88.0.0/16,fd00::/64");
    update_cidr("10.88.0.0");
    assert_int_equal(last.code, GRPC_INVALID_ARGUMENT);
    update_cidr("10.88.0.0/33");
    assert_int_equal(last.code, GRPC_INVALID_ARGUMENT);
    update_cidr("banana/8");
    assert_int_equal(last.code, GRPC_INVALID_ARGUMENT);
    assert_string_equal(rs.pod_cidr, "10.88.0.0/16,fd00::/64");
}

/* n copies of the 2-byte field `tag, 0` (an empty string or message), after a prefix. */
static uint8_t *repeat_field(uint8_t tag, size_t n, const uint8_t *prefix, size_t prefix_len,
                             size_t *len)
{
    *len = prefix_len + 2 * n;
    uint8_t *buf = xmalloc(*len);
    if (prefix_len)
        memcpy(buf, prefix, prefix_len);
    for (size_t i = 0; i < n; i++) {
        buf[prefix_len + 2 * i] = tag;
        buf[prefix_len + 2 * i + 1] = 0;
    }
    return buf;
}

static void test_field_bombs_are_refused(void **state)
{
    /*
     * protobuf-c allocates per field on the wire, so a request made of tiny
     * fields unpacks to many times its size: the router counts them first.
     */
    const char *refusal = "the Version request has more than 131072 fields or is nested more "
                          "than 32 deep";
    size_t len;
    /* The same singular field over and over (version = ""). */
    _cleanup_free_ uint8_t *at_cap = repeat_field(0x0a, 131072, NULL, 0, &len);
    call("/runtime.v1.RuntimeService/Version", at_cap, len);
    assert_int_equal(last.code, GRPC_OK);
    _cleanup_free_ uint8_t *over = repeat_field(0x0a, 131073, NULL, 0, &len);
    call("/runtime.v1.RuntimeService/Version", over, len);
    assert_int_equal(last.code, GRPC_RESOURCE_EXHAUSTED);
    assert_string_equal(last.msg, refusal);
    /* Unknown fields count too. */
    _cleanup_free_ uint8_t *unknown = repeat_field(0x78, 200000, NULL, 0, &len);
    call("/runtime.v1.RuntimeService/Version", unknown, len);
    assert_int_equal(last.code, GRPC_RESOURCE_EXHAUSTED);

    /* Inside a nested message: runtime_config { network_config {} x 140000 }. */
    const uint8_t outer[] = {0x0a, 0xc0, 0x8b, 0x11}; /* field 1, 280000 bytes */
    _cleanup_free_ uint8_t *nested = repeat_field(0x0a, 140000, outer, sizeof(outer), &len);
    call("/runtime.v1.RuntimeService/UpdateRuntimeConfig", nested, len);
    assert_int_equal(last.code, GRPC_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(last.msg, "UpdateRuntimeConfig request has more than"));
    assert_null(rs.pod_cidr);

    /* A packed array: one field, but 200000 elements of 8 bytes each once unpacked. */
    Runtime__V1__LinuxSandboxSecurityContext sc = RUNTIME__V1__LINUX_SANDBOX_SECURITY_CONTEXT__INIT;
    sc.n_supplemental_groups = 200000;
    _cleanup_free_ int64_t *groups = xcalloc(sc.n_supplemental_groups, sizeof(int64_t));
    sc.supplemental_groups = groups;
    Runtime__V1__LinuxPodSandboxConfig lc = RUNTIME__V1__LINUX_POD_SANDBOX_CONFIG__INIT;
    lc.security_context = &sc;
    Runtime__V1__PodSandboxConfig pc = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
    pc.linux = &lc;
    Runtime__V1__PullImageRequest pull = RUNTIME__V1__PULL_IMAGE_REQUEST__INIT;
    pull.sandbox_config = &pc;
    len = runtime__v1__pull_image_request__get_packed_size(&pull);
    _cleanup_free_ uint8_t *packed = xmalloc(len);
    runtime__v1__pull_image_request__pack(&pull, packed);
    /* The image service is not set up here: only a refusal can end this call safely. */
    call("/runtime.v1.ImageService/PullImage", packed, len);
    assert_int_equal(last.code, GRPC_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(last.msg, "PullImage request has more than"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_method_is_routed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unbuilt_method_is_unimplemented, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_path_is_unimplemented, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_is_invalid_argument, setup, teardown),
        cmocka_unit_test_setup_teardown(test_field_number_zero_is_invalid_argument, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_strings_are_invalid_argument, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runtime_config_follows_driver, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_runtime_config_keeps_cidr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_field_bombs_are_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
