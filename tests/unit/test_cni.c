/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for finding the CNI network: lexical order, validation of the
 * config's shape, .conf wrapping, and the installed-plugin check.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/error.h"
#include "core/util.h"
#include "pod/cni.h"

static char tmp[64];
static struct config cfg;

static void write_file(const char *dir, const char *name, const char *text, mode_t mode)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

static int setup(void **state)
{
    snprintf(tmp, sizeof(tmp), "/tmp/tc-cni-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    config_init_defaults(&cfg);
    char *conf = xasprintf("%s/net.d", tmp);
    char *bin = xasprintf("%s/bin", tmp);
    mkdir(conf, 0700);
    mkdir(bin, 0700);
    free(cfg.cni_conf_dir);
    cfg.cni_conf_dir = conf;
    for (size_t i = 0; i < cfg.n_cni_bin_dirs; i++)
        free(cfg.cni_bin_dirs[i]);
    cfg.cni_bin_dirs[0] = bin;
    cfg.n_cni_bin_dirs = 1;
    write_file(bin, "bridge", "#!/bin/sh\n", 0755);
    write_file(bin, "portmap", "#!/bin/sh\n", 0755);
    return 0;
}

static int teardown(void **state)
{
    char *cmd = xasprintf("rm -rf %s", tmp);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    config_free(&cfg);
    return 0;
}

static struct error *load_fail(void)
{
    struct cni_network net;
    struct error *err = NULL;
    assert_int_equal(cni_network_load(&cfg, &net, &err), -1);
    assert_non_null(err);
    assert_int_equal(err->grpc_code, GRPC_FAILED_PRECONDITION);
    return err;
}

static void test_missing_dir(void **state)
{
    free(cfg.cni_conf_dir);
    cfg.cni_conf_dir = xasprintf("%s/absent", tmp);
    struct error *err = load_fail();
    assert_non_null(strstr(err->msg, "absent"));
    error_free(err);
}

static void test_empty_dir(void **state)
{
    write_file(cfg.cni_conf_dir, "README", "not a config", 0644);
    struct error *err = load_fail();
    assert_non_null(strstr(err->msg, "no CNI network config"));
    assert_non_null(strstr(err->msg, cfg.cni_conf_dir));
    error_free(err);
}

static const char *conflist =
    "{\"cniVersion\":\"1.0.0\",\"name\":\"edge\",\"plugins\":["
    "{\"type\":\"bridge\",\"bridge\":\"cni0\",\"ipMasq\":false},{\"type\":\"portmap\"}]}";

static void test_valid_conflist(void **state)
{
    write_file(cfg.cni_conf_dir, "10-edge.conflist", conflist, 0644);
    struct cni_network net;
    struct error *err = NULL;
    assert_int_equal(cni_network_load(&cfg, &net, &err), 0);
    assert_null(err);
    assert_string_equal(net.name, "edge");
    assert_string_equal(net.plugins, "bridge,portmap");
    assert_non_null(strstr(net.path, "10-edge.conflist"));
    cni_network_clear(&net);
}

static void test_lexical_order_and_invalid_skipped(void **state)
{
    write_file(cfg.cni_conf_dir, "05-broken.conflist", "{ not json", 0644);
    write_file(cfg.cni_conf_dir, "20-second.conflist",
               "{\"name\":\"second\",\"plugins\":[{\"type\":\"bridge\"}]}", 0644);
    write_file(cfg.cni_conf_dir, "10-first.conflist",
               "{\"name\":\"first\",\"plugins\":[{\"type\":\"bridge\"}]}", 0644);
    struct cni_network net;
    struct error *err = NULL;
    assert_int_equal(cni_network_load(&cfg, &net, &err), 0);
    assert_string_equal(net.name, "first");
    cni_network_clear(&net);
}

static void test_single_conf_is_wrapped(void **state)
{
    write_file(cfg.cni_conf_dir, "10-one.conf",
               "{\"cniVersion\":\"0.4.0\",\"name\":\"one\",\"type\":\"bridge\"}", 0644);
    struct cni_network net;
    struct error *err = NULL;
    assert_int_equal(cni_network_load(&cfg, &net, &err), 0);
    assert_string_equal(net.name, "one");
    assert_non_null(strstr(net.conflist, "\"plugins\""));
    cni_network_clear(&net);
}

static void test_bad_shapes(void **state)
{
    static const char *bad[] = {
        "[1,2]",
        "{\"plugins\":[{\"type\":\"bridge\"}]}",
        "{\"name\":\"x\",\"plugins\":[]}",
        "{\"name\":\"x\",\"plugins\":[{\"bridge\":\"cni0\"}]}",
        "{\"name\":\"x\",\"plugins\":[{\"type\":\"../../bin/sh\"}]}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        write_file(cfg.cni_conf_dir, "10-bad.conflist", bad[i], 0644);
        struct error *err = load_fail();
        assert_non_null(strstr(err->msg, "10-bad.conflist"));
        error_free(err);
    }
}

static void test_missing_plugin_binary(void **state)
{
    write_file(cfg.cni_conf_dir, "10-edge.conflist",
               "{\"name\":\"edge\",\"plugins\":[{\"type\":\"bridge\"},{\"type\":\"bandwidth\"}]}",
               0644);
    struct error *err = load_fail();
    assert_non_null(strstr(err->msg, "bandwidth"));
    assert_non_null(strstr(err->msg, "not installed"));
    error_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_missing_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_valid_conflist, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lexical_order_and_invalid_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_single_conf_is_wrapped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_shapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_plugin_binary, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
