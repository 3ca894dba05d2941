/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for image/xferlib: libcurl loaded by the first reference and
 * unloaded by the idle timer after the last (an acquire in between cancels
 * it, other threads delay it), loading again afterwards, hashes holding
 * libcrypto, missing libraries, forked children, and SHA-256/SHA-512 known
 * answers. The test binary does not link libcurl, so dlopen(RTLD_NOLOAD)
 * tells whether it is really mapped.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dlfcn.h>
#include <pthread.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.h"
#include "core/loop.h"
#include "core/util.h"
#include "image/xferlib.h"
#include "helpers.h"

#define IDLE_MS 50

static bool curl_mapped(void)
{
    void *so = dlopen("libcurl.so.4", RTLD_NOW | RTLD_NOLOAD);
    if (so)
        dlclose(so);
    return so != NULL;
}

/* After an unload (under AddressSanitizer the library stays mapped: see xferlib.h). */
static void assert_unmapped(void)
{
    if (XFERLIB_UNMAPS)
        assert_false(curl_mapped());
}

static int setup(void **state)
{
    alarm(30);
    assert_int_equal(loop_init(NULL), 0);
    xferlib_set_idle_ms(IDLE_MS);
    return 0;
}

static int teardown(void **state)
{
    xferlib_shutdown();
    xferlib_set_idle_ms(XFERLIB_IDLE_MS);
    xferlib_set_sonames(NULL, NULL);
    loop_shutdown();
    alarm(0);
    return 0;
}

static void acquire_ok(void)
{
    struct error *err = NULL;
    assert_int_equal(xferlib_acquire(&err), 0);
    assert_null(err);
}

static void test_refcount_and_idle_unload(void **state)
{
    assert_false(xferlib_is_loaded());
    assert_unmapped();
    acquire_ok();
    acquire_ok();
    assert_true(xferlib_is_loaded());
    assert_true(curl_mapped());
    assert_non_null(xcurl.easy_init);
    xferlib_release();
    run_loop_for(3 * IDLE_MS);
    assert_true(xferlib_is_loaded()); /* one reference left */
    xferlib_release();
    assert_true(xferlib_is_loaded()); /* not at once: after the idle time */
    run_loop_for(3 * IDLE_MS);
    assert_false(xferlib_is_loaded());
    assert_unmapped();
    assert_null(xcurl.easy_init);
}

static void test_acquire_cancels_unload(void **state)
{
    acquire_ok();
    xferlib_release();
    run_loop_for(IDLE_MS / 2);
    acquire_ok();
    run_loop_for(3 * IDLE_MS);
    assert_true(xferlib_is_loaded());
    xferlib_release();
    run_loop_for(3 * IDLE_MS);
    assert_false(xferlib_is_loaded());
}

/* The table works, goes away with the library, and comes back with it. */
static void test_reacquire_after_unload(void **state)
{
    for (int round = 0; round < 3; round++) {
        acquire_ok();
        CURL *e = xcurl.easy_init();
        assert_non_null(e);
        assert_int_equal(xcurl.easy_setopt(e, CURLOPT_URL, "http://127.0.0.1:1/"), CURLE_OK);
        CURLM *m = xcurl.multi_init();
        assert_non_null(m);
        assert_int_equal(xcurl.multi_add_handle(m, e), CURLM_OK);
        assert_int_equal(xcurl.multi_remove_handle(m, e), CURLM_OK);
        xcurl.multi_cleanup(m);
        xcurl.easy_cleanup(e);
        xferlib_release();
        run_loop_for(3 * IDLE_MS);
        assert_false(xferlib_is_loaded());
        assert_unmapped();
    }
}

static void *sleeper(void *arg)
{
    usleep(300 * 1000);
    return NULL;
}

/* A resolver thread of libcurl may still run its code: unloading waits for threads to end. */
static void test_unload_waits_for_threads(void **state)
{
    acquire_ok();
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, sleeper, NULL), 0);
    xferlib_release();
    run_loop_for(3 * IDLE_MS);
    assert_true(xferlib_is_loaded());
    assert_int_equal(pthread_join(t, NULL), 0);
    run_loop_for(1500);
    assert_false(xferlib_is_loaded());
}

static void test_missing_library(void **state)
{
    struct error *err = NULL;
    xferlib_set_sonames("libtinycri-no-such-curl.so.4", NULL);
    assert_int_equal(xferlib_acquire(&err), -1);
    assert_int_equal(err->grpc_code, GRPC_UNAVAILABLE);
    assert_non_null(strstr(err->msg, "libtinycri-no-such-curl.so.4"));
    error_clear(&err);
    assert_false(xferlib_is_loaded());
    /* Hashing needs only libcrypto. */
    char hex[XFERLIB_SHA256_HEX_LEN + 1];
    assert_int_equal(xferlib_sha256_hex("", 0, hex, &err), 0);
    run_loop_for(3 * IDLE_MS);

    xferlib_set_sonames(NULL, "libtinycri-no-such-crypto.so.3");
    assert_int_equal(xferlib_sha256_hex("", 0, hex, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_UNAVAILABLE);
    assert_non_null(strstr(err->msg, "libtinycri-no-such-crypto.so.3"));
    error_clear(&err);
    struct xferlib_hash h = {0};
    assert_int_equal(xferlib_hash_init(&h, XFERLIB_SHA256, &err), -1);
    assert_null(h.ctx);
    error_clear(&err);
    xferlib_hash_clear(&h); /* a no-op */
    run_loop_for(3 * IDLE_MS);

    /* The libraries named on the default path again: it works. */
    xferlib_set_sonames(NULL, NULL);
    acquire_ok();
    xferlib_release();
}

static void sha256(const char *s, char *out)
{
    assert_int_equal(xferlib_sha256_hex(s, strlen(s), out, NULL), 0);
}

static void test_sha256_vectors(void **state)
{
    char hex[XFERLIB_HASH_HEX_MAX];
    sha256("", hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha256("abc", hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* FIPS 180-4's two-block message, fed in uneven pieces. */
    const char *msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    struct xferlib_hash h = {0};
    assert_int_equal(xferlib_hash_init(&h, XFERLIB_SHA256, NULL), 0);
    xferlib_hash_update(&h, msg, 1);
    xferlib_hash_update(&h, msg + 1, 0);
    xferlib_hash_update(&h, msg + 1, 40);
    xferlib_hash_update(&h, msg + 41, strlen(msg) - 41);
    xferlib_hash_final_hex(&h, hex);
    assert_null(h.ctx);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    assert_int_equal(xferlib_hash_init(&h, XFERLIB_SHA512, NULL), 0);
    xferlib_hash_update(&h, "abc", 3);
    xferlib_hash_final_hex(&h, hex);
    assert_string_equal(hex, "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                             "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
}

/* A running hash holds libcrypto, and with it the idle timer: nothing unloads under it. */
static void test_hash_holds(void **state)
{
    struct xferlib_hash h = {0};
    assert_int_equal(xferlib_hash_init(&h, XFERLIB_SHA256, NULL), 0);
    acquire_ok();
    xferlib_release();
    run_loop_for(3 * IDLE_MS);
    assert_true(xferlib_is_loaded());
    xferlib_hash_update(&h, "abc", 3);
    char hex[XFERLIB_HASH_HEX_MAX];
    xferlib_hash_final_hex(&h, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    run_loop_for(3 * IDLE_MS);
    assert_false(xferlib_is_loaded());
    /* An unfinished hash dropped by its cleanup attribute releases too. */
    {
        _cleanup_xferlib_hash_ struct xferlib_hash d = {0};
        assert_int_equal(xferlib_hash_init(&d, XFERLIB_SHA512, NULL), 0);
        acquire_ok();
        xferlib_release();
    }
    run_loop_for(3 * IDLE_MS);
    assert_false(xferlib_is_loaded());
}

/* A forked child loads what it needs, never unloads, and leaves the parent's state alone. */
static void test_forked_child(void **state)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct error *err = NULL;
        char hex[XFERLIB_SHA256_HEX_LEN + 1];
        if (xferlib_acquire(&err) < 0 || xferlib_sha256_hex("abc", 3, hex, &err) < 0)
            _exit(2);
        xferlib_release();
        /* No loop turn here: a child never arms the parent's timer, and keeps the libraries. */
        if (!xferlib_is_loaded() || !curl_mapped() ||
            strcmp(hex, "ba7816bf8f01cfea414140de5dae2223"
                        "b00361a396177a9cb410ff61f20015ad"))
            _exit(3);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_false(xferlib_is_loaded());
}

/* Without a loop (a tool, a test) the last release unloads at once. */
static void test_no_loop(void **state)
{
    acquire_ok();
    xferlib_release();
    assert_false(xferlib_is_loaded());
    assert_unmapped();
    acquire_ok();
    assert_true(xferlib_is_loaded());
    xferlib_release();
    assert_false(xferlib_is_loaded());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_refcount_and_idle_unload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acquire_cancels_unload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reacquire_after_unload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unload_waits_for_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_library, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sha256_vectors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_holds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forked_child, setup, teardown),
        cmocka_unit_test(test_no_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
