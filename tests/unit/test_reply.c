/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for cri/reply: a call still there gets the reply or the error;
 * a caller that left gets nothing; a cancel function runs instead of the
 * reply when the caller leaves first; map entries are copied for replies.
 * The h2 layer is replaced by recording fakes.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api.pb-c.h"
#include "core/error.h"
#include "core/util.h"
#include "cri/reply.h"
#include "grpc/h2.h"

/* One fake call: live until gone is set. */
static struct {
    bool gone;
    int finished;
    int code;
    char msg[256];
    uint8_t sent[1024];
    size_t sent_len;
    void (*cancel_cb)(uint64_t call_id, void *arg);
    void *cancel_arg;
} fake;

static struct h2_call *const the_call = (struct h2_call *)&fake;

uint64_t h2_call_id(const struct h2_call *call)
{
    return 7;
}

struct h2_call *h2_call_lookup(uint64_t id)
{
    assert_int_equal(id, 7);
    return fake.gone ? NULL : the_call;
}

void h2_call_on_cancel(struct h2_call *call, void (*cb)(uint64_t call_id, void *arg), void *arg)
{
    fake.cancel_cb = cb;
    fake.cancel_arg = arg;
}

int h2_call_send(struct h2_call *call, const uint8_t *msg, size_t len, struct error **err)
{
    assert_true(len <= sizeof(fake.sent));
    memcpy(fake.sent, msg, len);
    fake.sent_len = len;
    return 0;
}

void h2_call_finish(struct h2_call *call, int grpc_code, const char *message)
{
    fake.finished++;
    fake.code = grpc_code;
    snprintf(fake.msg, sizeof(fake.msg), "%s", message ? message : "");
}

static int setup(void **state)
{
    memset(&fake, 0, sizeof(fake));
    return 0;
}

static void test_reply_sent(void **state)
{
    struct reply *r = reply_new(the_call, "RunPodSandbox", NULL);
    Runtime__V1__RunPodSandboxResponse resp = RUNTIME__V1__RUN_POD_SANDBOX_RESPONSE__INIT;
    resp.pod_sandbox_id = (char *)"abc";
    reply_finish(r, NULL, &resp.base);
    assert_int_equal(fake.finished, 1);
    assert_int_equal(fake.code, GRPC_OK);
    Runtime__V1__RunPodSandboxResponse *got =
        runtime__v1__run_pod_sandbox_response__unpack(NULL, fake.sent_len, fake.sent);
    assert_non_null(got);
    assert_string_equal(got->pod_sandbox_id, "abc");
    runtime__v1__run_pod_sandbox_response__free_unpacked(got, NULL);
}

static void test_error_sent(void **state)
{
    struct reply *r = reply_new(the_call, "StopContainer", "c1");
    _cleanup_error_ struct error *err = NULL;
    error_set(&err, GRPC_NOT_FOUND, 0, "container c1 not found");
    reply_finish_empty(r, err, &runtime__v1__stop_container_response__descriptor);
    assert_int_equal(fake.finished, 1);
    assert_int_equal(fake.code, GRPC_NOT_FOUND);
    assert_string_equal(fake.msg, "container c1 not found");
    assert_int_equal(fake.sent_len, 0);
}

static void test_empty_reply(void **state)
{
    struct reply *r = reply_new(the_call, "StartContainer", "c1");
    reply_finish_empty(r, NULL, &runtime__v1__start_container_response__descriptor);
    assert_int_equal(fake.finished, 1);
    assert_int_equal(fake.code, GRPC_OK);
    assert_int_equal(fake.sent_len, 0); /* an empty message packs to nothing */
}

static void test_caller_left(void **state)
{
    struct reply *r = reply_new(the_call, "RemovePodSandbox", "p1");
    fake.gone = true;
    _cleanup_error_ struct error *err = NULL;
    error_set(&err, GRPC_INTERNAL, 0, "late");
    reply_finish_empty(r, err, &runtime__v1__remove_pod_sandbox_response__descriptor);
    assert_int_equal(fake.finished, 0); /* nobody to answer; logged, r freed */
    reply_free(reply_new(the_call, "X", "not started"));
    reply_free(NULL);
}

static int cancelled;

static void on_cancel(void *arg)
{
    assert_ptr_equal(arg, &cancelled);
    cancelled++;
}

static void test_cancel_with(void **state)
{
    cancelled = 0;
    struct reply *r = reply_new(the_call, "PullImage", "busybox");
    reply_cancel_with(r, on_cancel, &cancelled);
    assert_non_null(fake.cancel_cb);
    /* The caller leaves: the cancel function runs and r is gone (no leak, no reply). */
    fake.gone = true;
    fake.cancel_cb(7, fake.cancel_arg);
    assert_int_equal(cancelled, 1);
    assert_int_equal(fake.finished, 0);

    /* The operation ends first: the reply goes out, the cancel function never runs. */
    setup(NULL);
    r = reply_new(the_call, "PullImage", "busybox");
    reply_cancel_with(r, on_cancel, &cancelled);
    reply_finish_empty(r, NULL, &runtime__v1__pull_image_response__descriptor);
    assert_int_equal(fake.finished, 1);
    assert_int_equal(cancelled, 1);
}

static void test_map_dup(void **state)
{
    Runtime__V1__PodSandboxConfig__LabelsEntry a =
        RUNTIME__V1__POD_SANDBOX_CONFIG__LABELS_ENTRY__INIT;
    Runtime__V1__PodSandboxConfig__LabelsEntry b =
        RUNTIME__V1__POD_SANDBOX_CONFIG__LABELS_ENTRY__INIT;
    a.key = (char *)"app";
    a.value = (char *)"web";
    b.key = (char *)"tier";
    b.value = (char *)"front";
    void *src[] = {&a, &b};
    _cleanup_free_ void *dup =
        reply_map_dup(&runtime__v1__pod_sandbox_status__labels_entry__descriptor, src, 2);
    Runtime__V1__PodSandboxStatus__LabelsEntry **e = dup;
    assert_ptr_equal(e[0]->base.descriptor,
                     &runtime__v1__pod_sandbox_status__labels_entry__descriptor);
    assert_string_equal(e[0]->key, "app");
    assert_string_equal(e[1]->value, "front");
    assert_ptr_equal(e[1]->key, b.key); /* borrowed */
    assert_null(e[2]);
    _cleanup_free_ void *none =
        reply_map_dup(&runtime__v1__pod_sandbox_status__labels_entry__descriptor, NULL, 0);
    assert_null(((void **)none)[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_reply_sent, setup),
        cmocka_unit_test_setup(test_error_sent, setup),
        cmocka_unit_test_setup(test_empty_reply, setup),
        cmocka_unit_test_setup(test_caller_left, setup),
        cmocka_unit_test_setup(test_cancel_with, setup),
        cmocka_unit_test_setup(test_map_dup, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
