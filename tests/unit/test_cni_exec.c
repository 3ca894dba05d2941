/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for running CNI plugins (needs root for the real part), on a
 * real loop. Fake plugins, shell scripts written here, record their
 * environment and stdin and print canned results or errors, so the tests see
 * exactly what a plugin gets: ADD order, prevResult chaining, runtimeConfig
 * limited to declared capabilities, CNI_ARGS, error parsing, rollback,
 * reverse DEL with the cached result, deadlines, output caps and cancel.
 * The last test runs Debian's bridge, host-local and portmap plugins on a
 * pinned network namespace and pings the pod; everything it creates (the
 * tc-test0 bridge, portmap's iptables chains) is removed by name.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "core/config.h"
#include "core/error.h"
#include "core/loop.h"
#include "core/util.h"
#include "pod/cni.h"
#include "pod/nsfs.h"
#include "helpers.h"

#define SAFETY_MS 20000
#define SANDBOX_ID "0123456789abcdef"
#define NETNS_PATH "/run/fake/netns"

static char tmp[64];
static char bin[128], bin2[128], rec[128], cache[128];
static struct config cfg;

/* ---- helpers ---- */

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static void rec_write(const char *name, const char *text)
{
    char *path = xasprintf("%s/%s", rec, name);
    write_file(path, text, 0644);
    free(path);
}

/* A recorded file's text (owned), or NULL when absent. */
static char *rec_read(const char *name)
{
    char *path = xasprintf("%s/%s", rec, name);
    struct error *err = NULL;
    char *s = read_file_capped(path, 4 << 20, NULL, &err);
    error_free(err);
    free(path);
    return s;
}

static json_t *rec_json(const char *name)
{
    char *text = rec_read(name);
    if (!text)
        fail_msg("%s was not recorded", name);
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    if (!j)
        fail_msg("%s: %s: %s", name, jerr.text, text);
    free(text);
    return j;
}

static void assert_json_eq(json_t *got, const char *want_text)
{
    json_error_t jerr;
    json_t *want = json_loads(want_text, 0, &jerr);
    assert_non_null(want);
    if (!json_equal(got, want)) {
        char *g = got ? json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS) : xstrdup("(null)");
        char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("JSON differs:\n got  %s\n want %s", g, w);
    }
    json_decref(want);
}

static void rec_write(const char *name, const char *text);
static const char *result_a, *result_b, *result_c;

/* Forget every recorded call and failure injection; the plugins' results are back. */
static void reset_rec(void)
{
    char *cmd = xasprintf("rm -rf %s && mkdir -p %s", rec, rec);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    rec_write("fake-a.result", result_a);
    rec_write("fake-b.result", result_b);
    rec_write("fake-c.result", result_c);
}

static void on_pinned(const struct error *err, const struct nsfs_paths *paths, void *arg)
{
    struct nsfs_paths *out = arg;
    if (err)
        fail_msg("pin failed: %s", err->msg);
    out->net = xstrdup(paths->net);
    loop_exit();
}

/* Pin a network namespace for id and wait for the pinning child. */
static void pin_net(const char *dir, const char *id, struct nsfs_paths *out)
{
    struct error *err = NULL;
    memset(out, 0, sizeof(*out));
    assert_non_null(nsfs_pin_start(dir, id, CLONE_NEWNET, NULL, SAFETY_MS, on_pinned, out, &err));
    run_loop(SAFETY_MS);
    assert_non_null(out->net);
}

/* Run until the recorded calls contain want. */
static void run_until_called(const char *want)
{
    for (int i = 0; i < SAFETY_MS / 20; i++) {
        char *calls = rec_read("calls");
        bool found = calls && strstr(calls, want);
        free(calls);
        if (found)
            return;
        run_loop_for(20);
    }
    fail_msg("no call %s", want);
}

struct outcome {
    bool called;
    int code; /* GRPC_OK when it succeeded */
    char *msg;
    char *ips; /* comma-separated */
    char *json;
};

static void outcome_clear(struct outcome *o)
{
    free(o->msg);
    free(o->ips);
    free(o->json);
    memset(o, 0, sizeof(*o));
}

static void on_done(const struct error *err, const struct cni_result *res, void *arg)
{
    struct outcome *o = arg;
    assert_false(o->called);
    assert_non_null(res);
    o->called = true;
    o->code = err ? err->grpc_code : GRPC_OK;
    o->msg = err ? xstrdup(err->msg) : NULL;
    struct buf b;
    buf_init(&b, 4096);
    for (size_t i = 0; i < res->n_ips; i++) {
        if (i)
            buf_append(&b, ",", 1);
        buf_append(&b, res->ips[i], strlen(res->ips[i]));
    }
    o->ips = buf_take_str(&b, NULL);
    buf_free(&b);
    o->json = res->json ? xstrdup(res->json) : NULL;
    loop_exit();
}

/* ---- the fake plugins ---- */

#define FAKE_SCRIPT                                                                                \
    "#!/bin/sh\n"                                                                                  \
    "name=${0##*/}\n"                                                                              \
    "d=%s\n"                                                                                       \
    "echo \"$name $CNI_COMMAND\" >> \"$d/calls\"\n"                                                \
    "env | grep -E '^(CNI_|PATH=)' | LC_ALL=C sort > \"$d/$name.$CNI_COMMAND.env\"\n"              \
    "cat > \"$d/$name.$CNI_COMMAND.stdin\"\n"                                                      \
    "f=\"$d/$name.$CNI_COMMAND\"\n"                                                                \
    "if [ -f \"$f.sleep\" ]; then exec sleep \"$(cat \"$f.sleep\")\"; fi\n"                        \
    "if [ -f \"$f.big\" ]; then head -c 1100000 /dev/zero | tr '\\0' x; exit 0; fi\n"              \
    "if [ -f \"$f.fail\" ]; then cat \"$f.fail\"; echo 'plugin log line' >&2; exit 1; fi\n"        \
    "if [ \"$CNI_COMMAND\" = ADD ]; then cat \"$d/$name.result\"; fi\n"                            \
    "exit 0\n"

static const char *result_a =
    "{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"eth0\",\"sandbox\":\"" NETNS_PATH
    "\"}],\"ips\":[{\"address\":\"10.1.0.5/24\",\"interface\":0}]}";
static const char *result_b =
    "{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"br0\"},{\"name\":\"eth0\",\"sandbox\":"
    "\"" NETNS_PATH "\"}],\"ips\":[{\"address\":\"fd00::5/64\",\"interface\":1},"
    "{\"address\":\"10.1.0.5/24\",\"interface\":1},{\"address\":\"10.2.0.1/24\",\"interface\":0}"
    "]}";
static const char *result_c =
    "{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"br0\"},{\"name\":\"eth0\",\"sandbox\":"
    "\"" NETNS_PATH "\"}],\"ips\":[{\"address\":\"fd00::5/64\",\"interface\":1},"
    "{\"address\":\"10.1.0.5/24\",\"interface\":1},{\"address\":\"10.2.0.1/24\",\"interface\":0}"
    "],\"dns\":{\"nameservers\":[\"10.0.0.10\"]}}";

static const char *conflist_abc =
    "{\"cniVersion\":\"1.0.0\",\"name\":\"tcnet\",\"plugins\":["
    "{\"type\":\"fake-a\",\"foo\":1,\"name\":\"overridden\"},"
    "{\"type\":\"fake-b\",\"capabilities\":{\"portMappings\":true,\"bandwidth\":false,"
    "\"dns\":true}},"
    "{\"type\":\"fake-c\",\"capabilities\":{\"bandwidth\":true,\"ips\":true,\"mac\":true}}]}";

static struct cni_network make_net(const char *conflist)
{
    struct cni_network net = {
        .name = xstrdup("tcnet"),
        .path = xstrdup("/test"),
        .conflist = xstrdup(conflist),
        .plugins = xstrdup(""),
    };
    return net;
}

static const struct cni_port_mapping ports[] = {
    {8080, 80, "tcp", "127.0.0.1"},
    {0, 53, "udp", NULL}, /* no host port: skipped */
    {9090, 90, "UDP", ""},
};
static const struct cni_bandwidth bandwidth = {1000000, 2000000, 0, 0};
static const char *const dns_servers[] = {"10.0.0.10"};
static const char *const dns_searches[] = {"svc.local", "local"};
static const char *const dns_options[] = {"ndots:5"};
static const struct cni_dns dns = {dns_servers, 1, dns_searches, 2, dns_options, 1};

static struct cni_pod make_pod(void)
{
    struct cni_pod pod = {
        .container_id = SANDBOX_ID,
        .netns_path = NETNS_PATH,
        .ifname = NULL,
        .pod_name = "web-0",
        .pod_namespace = "default",
        .pod_uid = "5c1a-uid",
        .port_mappings = ports,
        .n_port_mappings = ARRAY_SIZE(ports),
        .bandwidth = &bandwidth,
        .dns = &dns,
        .cache_dir = cache,
    };
    return pod;
}

static char *cache_file(void)
{
    return xasprintf("%s/%s.json", cache, SANDBOX_ID);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- fixtures ---- */

static int setup(void **state)
{
    snprintf(tmp, sizeof(tmp), "/tmp/tc-cniexec-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    snprintf(bin, sizeof(bin), "%s/bin", tmp);
    snprintf(bin2, sizeof(bin2), "%s/bin2", tmp);
    snprintf(rec, sizeof(rec), "%s/rec", tmp);
    snprintf(cache, sizeof(cache), "%s/cache", tmp);
    assert_int_equal(mkdir(bin, 0700), 0);
    assert_int_equal(mkdir(bin2, 0700), 0);
    char *script = xasprintf(FAKE_SCRIPT, rec);
    const char *names[] = {"fake-a", "fake-b", "fake-c"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        char *p = xasprintf("%s/%s", bin, names[i]);
        write_file(p, script, 0755);
        free(p);
    }
    free(script);
    /* Later in the search path: never run, the first match wins. */
    char *shadow = xasprintf("%s/fake-a", bin2);
    write_file(shadow, "#!/bin/sh\necho shadowed >&2\nexit 99\n", 0755);
    free(shadow);
    struct error *err = NULL;
    assert_int_equal(loop_init(&err), 0);
    return 0;
}

static int teardown(void **state)
{
    char *cmd = xasprintf("rm -rf %s", tmp);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    loop_shutdown();
    return 0;
}

static int test_setup(void **state)
{
    config_init_defaults(&cfg);
    for (size_t i = 0; i < cfg.n_cni_bin_dirs; i++)
        free(cfg.cni_bin_dirs[i]);
    cfg.cni_bin_dirs[0] = xstrdup(bin);
    cfg.cni_bin_dirs[1] = xstrdup(bin2);
    cfg.n_cni_bin_dirs = 2;
    cfg.cni_timeout_s = 5;
    reset_rec();
    char *cmd = xasprintf("rm -rf %s", cache);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    return 0;
}

static int test_teardown(void **state)
{
    run_until_no_children(SAFETY_MS);
    config_free(&cfg);
    return 0;
}

static void assert_calls(const char *want)
{
    char *calls = rec_read("calls");
    assert_non_null(calls);
    assert_string_equal(calls, want);
    free(calls);
}

/* ---- fake plugins ---- */

static void test_add_chain_and_del(void **state)
{
    struct cni_network net = make_net(conflist_abc);
    struct cni_pod pod = make_pod();
    struct outcome o = {0};
    struct error *err = NULL;
    assert_non_null(cni_add(&cfg, &net, &pod, on_done, &o, &err));
    assert_null(err);
    run_loop(SAFETY_MS);
    assert_true(o.called);
    if (o.code != GRPC_OK)
        fail_msg("ADD failed: %s", o.msg);
    assert_calls("fake-a ADD\nfake-b ADD\nfake-c ADD\n");
    /* Primary first: IPv4 before IPv6; the host-side address is not the pod's. */
    assert_string_equal(o.ips, "10.1.0.5,fd00::5");
    json_t *final = json_loads(o.json, 0, NULL);
    assert_json_eq(final, result_c);
    json_decref(final);

    /* The first plugin: its own config, name and version from the list, nothing else. */
    json_t *in = rec_json("fake-a.ADD.stdin");
    assert_json_eq(in,
                   "{\"type\":\"fake-a\",\"foo\":1,\"name\":\"tcnet\",\"cniVersion\":\"1.0.0\"}");
    json_decref(in);
    /* The second: prevResult is the first's result; runtimeConfig holds the enabled capabilities.
     */
    in = rec_json("fake-b.ADD.stdin");
    assert_json_eq(json_object_get(in, "prevResult"), result_a);
    assert_json_eq(
        json_object_get(in, "runtimeConfig"),
        "{\"portMappings\":[{\"hostPort\":8080,\"containerPort\":80,\"protocol\":\"tcp\","
        "\"hostIP\":\"127.0.0.1\"},{\"hostPort\":9090,\"containerPort\":90,"
        "\"protocol\":\"udp\"}],\"dns\":{\"servers\":[\"10.0.0.10\"],"
        "\"searches\":[\"svc.local\",\"local\"],\"options\":[\"ndots:5\"]}}");
    assert_string_equal(json_string_value(json_object_get(in, "name")), "tcnet");
    json_decref(in);
    /* The third: bandwidth only (ips and mac were not offered). */
    in = rec_json("fake-c.ADD.stdin");
    assert_json_eq(json_object_get(in, "prevResult"), result_b);
    assert_json_eq(json_object_get(in, "runtimeConfig"),
                   "{\"bandwidth\":{\"ingressRate\":1000000,\"ingressBurst\":2000000}}");
    json_decref(in);

    char *env = rec_read("fake-b.ADD.env");
    char *want = xasprintf("CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;"
                           "K8S_POD_INFRA_CONTAINER_ID=" SANDBOX_ID ";K8S_POD_UID=5c1a-uid\n"
                           "CNI_COMMAND=ADD\n"
                           "CNI_CONTAINERID=" SANDBOX_ID "\n"
                           "CNI_IFNAME=eth0\n"
                           "CNI_NETNS=" NETNS_PATH "\n"
                           "CNI_PATH=%s:%s\n"
                           "PATH=%s\n",
                           bin, bin2, getenv("PATH"));
    assert_string_equal(env, want);
    free(env);
    free(want);

    /* The final result is cached for DEL. */
    char *cpath = cache_file();
    assert_true(exists(cpath));
    outcome_clear(&o);

    /* DEL: a new operation (as after a restart) finds the cached result; reverse order. */
    reset_rec();
    assert_non_null(cni_del(&cfg, &net, &pod, on_done, &o, &err));
    run_loop(SAFETY_MS);
    assert_int_equal(o.code, GRPC_OK);
    assert_string_equal(o.ips, "");
    assert_null(o.json);
    assert_calls("fake-c DEL\nfake-b DEL\nfake-a DEL\n");
    const char *names[] = {"fake-a.DEL", "fake-b.DEL", "fake-c.DEL"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        char *n = xasprintf("%s.stdin", names[i]);
        in = rec_json(n);
        assert_json_eq(json_object_get(in, "prevResult"), result_c);
        free(n);
        json_decref(in);
        n = xasprintf("%s.env", names[i]);
        env = rec_read(n);
        assert_non_null(strstr(env, "CNI_COMMAND=DEL\n"));
        free(env);
        free(n);
    }
    in = rec_json("fake-b.DEL.stdin");
    assert_non_null(json_object_get(json_object_get(in, "runtimeConfig"), "portMappings"));
    json_decref(in);
    assert_false(exists(cpath));
    outcome_clear(&o);

    /* DEL again: fine, without prevResult now. */
    reset_rec();
    assert_non_null(cni_del(&cfg, &net, &pod, on_done, &o, &err));
    run_loop(SAFETY_MS);
    assert_int_equal(o.code, GRPC_OK);
    assert_calls("fake-c DEL\nfake-b DEL\nfake-a DEL\n");
    in = rec_json("fake-a.DEL.stdin");
    assert_null(json_object_get(in, "prevResult"));
    json_decref(in);
    outcome_clear(&o);
    free(cpath);
    cni_network_clear(&net);
}

static void test_old_version_del_has_no_prev_result(void **state)
{
    struct cni_network net = make_net("{\"cniVersion\":\"0.3.1\",\"name\":\"old\",\"plugins\":"
                                      "[{\"type\":\"fake-a\"},{\"type\":\"fake-b\"}]}");
    struct cni_pod pod = make_pod();
    pod.ifname = "net1";
    struct outcome o = {0};
    struct error *err = NULL;
    assert_non_null(cni_add(&cfg, &net, &pod, on_done, &o, &err));
    run_loop(SAFETY_MS);
    assert_int_equal(o.code, GRPC_OK);
    /* The interface is named eth0 in the result, not net1: none of its addresses count. */
    assert_string_equal(o.ips, "");
    json_t *in = rec_json("fake-b.ADD.stdin");
    assert_string_equal(json_string_value(json_object_get(in, "cniVersion")), "0.3.1");
    assert_json_eq(json_object_get(in, "prevResult"), result_a);
    assert_null(json_object_get(in, "runtimeConfig"));
    json_decref(in);
    outcome_clear(&o);
    reset_rec();
    assert_non_null(cni_del(&cfg, &net, &pod, on_done, &o, &err));
    run_loop(SAFETY_MS);
    assert_int_equal(o.code, GRPC_OK);
    in = rec_json("fake-b.DEL.stdin");
    assert_null(json_object_get(in, "prevResult"));
    json_decref(in);
    char *env = rec_read("fake-b.DEL.env");
    assert_non_null(strstr(env, "CNI_IFNAME=net1\n"));
    free(env);
    outcome_clear(&o);
    cni_network_clear(&net);
}

static void test_add_failure_rolls_back(void **state)
{
    struct cni_network net = make_net(conflist_abc);
    struct cni_pod pod = make_pod();
    struct outcome o = {0};
    struct error *err = NULL;
    rec_write("fake-b.ADD.fail", "{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"bad config\","
                                 "\"details\":\"field x is wrong\"}");
    assert_non_null(cni_add(&cfg, &net, &pod, on_done, &o, &err));
    run_loop(SAFETY_MS);
    assert_int_equal(o.code, GRPC_FAILED_PRECONDITION);
    assert_string_equal(o.msg, "CNI plugin fake-b failed (ADD): bad config: field x is wrong");
    assert_string_equal(o.ips, "");
    assert_calls("fake-a ADD\nfake-b ADD\nfake-b DEL\nfake-a DEL\n");
    /* The rollback DEL gets what was set up so far. */
    json_t *in = rec_json("fake-a.DEL.stdin");
    assert_json_eq(json_object_get(in, "prevResult"), result_a);
    json_decref(in);
    char *cpath = cache_file();
    assert_false(exists(cpath));
    free(cpath);
    outcome_clear(&o);

    /* A plugin-specific code is INTERNAL; details are optional. */
    reset_rec();
    rec_write("fake-c.ADD.fail", "{\"code\":999,\"msg\":\"no luck\"}");
    assert_non_null(cni_add(&cfg, &net, &pod, on_done, &o, &err));
    run_loop(SAFETY_MS);
    assert_int_equal(o.code, GRPC_INTERNAL);
    assert_string_equal(o.msg, "CNI plugin fake-c failed (ADD): no luck");
    assert_calls("fake-a ADD\nfake-b ADD\nfake-c ADD\nfake-c DEL\nfake-b DEL\nfake-a DEL\n");
    in = rec_json("fake-a.DEL.stdin");
    assert_json_eq(json_object_get(in, "prevResult"), result_b);
    json_decref(in);
    outcome_clear(&o);

    /* No error object: the last stderr line says it. */
    reset_rec();
    rec_write("fake-a.ADD.fail", "not json");
    assert_non_null(cni_add(&cfg, &net, &pod, on_done, &o, &err));
    run_loop(SAFETY_MS);
    assert_int_equal(o.code, GRPC_INTERNAL);
    assert_string_equal(o.msg, "CNI plugin fake-a failed (ADD): exit status 1: plugin log line");
    assert_calls("fake-a ADD\nfake-a DEL\n");
    outcome_clear(&o);

    /* A result that is not JSON. */
    reset_rec();
    rec_write("fake-a.result", "garbage");
    assert_non_null(cni_add(&cfg, &net, &pod, on_done, &o, &err));
    run_loop(SAFETY_MS);
    assert_int_equal(o.code, GRPC_INTERNAL);
    assert_non_null(strstr(o.msg, "fake-a failed (ADD): its result is not a JSON object"));
    outcome_clear(&o);

    /* Too much output. */
    reset_rec();
    rec_write("fake-b.ADD.big", "");
    assert_non_null(cni_add(&cfg, &net, &pod, on_done, &o, &err));
    run_loop(SAFETY_MS);
    assert_int_equal(o.code, GRPC_RESOURCE_EXHAUSTED);
    assert_calls("fake-a ADD\nfake-b ADD\nfake-b DEL\nfake-a DEL\n");
    outcome_clear(&o);
    cni_network_clear(&net);
}

static void test_del_failure_stops_and_keeps_cache(void **state)
{
    struct cni_network net = make_net(conflist_abc);
    struct cni_pod pod = make_pod();
    struct outcome o = {0};
    struct error *err = NULL;
    assert_non_null(cni_add(&cfg, &net, &pod, on_done, &o, &err));
    run_loop(SAFETY_MS);
    assert_int_equal(o.code, GRPC_OK);
    outcome_clear(&o);
    reset_rec();
    rec_write("fake-b.DEL.fail", "{\"code\":5,\"msg\":\"iptables busy\"}");
    assert_non_null(cni_del(&cfg, &net, &pod, on_done, &o, &err));
    run_loop(SAFETY_MS);
    assert_int_equal(o.code, GRPC_INTERNAL);
    assert_string_equal(o.msg, "CNI plugin fake-b failed (DEL): iptables busy");
    assert_calls("fake-c DEL\nfake-b DEL\n");
    char *cpath = cache_file();
    assert_true(exists(cpath)); /* the retry still has prevResult */
    outcome_clear(&o);
    reset_rec();
    assert_non_null(cni_del(&cfg, &net, &pod, on_done, &o, &err));
    run_loop(SAFETY_MS);
    assert_int_equal(o.code, GRPC_OK);
    json_t *in = rec_json("fake-a.DEL.stdin");
    assert_json_eq(json_object_get(in, "prevResult"), result_c);
    json_decref(in);
    assert_false(exists(cpath));
    free(cpath);
    outcome_clear(&o);
    cni_network_clear(&net);
}

static void test_timeout_kills_and_rolls_back(void **state)
{
    cfg.cni_timeout_s = 1;
    struct cni_network net = make_net(conflist_abc);
    struct cni_pod pod = make_pod();
    struct outcome o = {0};
    struct error *err = NULL;
    rec_write("fake-b.ADD.sleep", "30");
    int64_t start = now_monotonic_ns();
    assert_non_null(cni_add(&cfg, &net, &pod, on_done, &o, &err));
    run_loop(SAFETY_MS);
    int64_t ms = (now_monotonic_ns() - start) / 1000000;
    assert_true(ms >= 900 && ms < 5000);
    assert_int_equal(o.code, GRPC_DEADLINE_EXCEEDED);
    assert_string_equal(o.msg, "CNI plugin fake-b failed (ADD): timed out after 1000 ms");
    assert_calls("fake-a ADD\nfake-b ADD\nfake-b DEL\nfake-a DEL\n");
    assert_int_equal(child_count(), 0);
    outcome_clear(&o);
    cni_network_clear(&net);
}

static void test_cancel(void **state)
{
    struct cni_network net = make_net(conflist_abc);
    struct cni_pod pod = make_pod();
    struct outcome o = {0};
    struct error *err = NULL;

    /* Cancelling an ADD: done never runs, what may be set up is rolled back in the background. */
    rec_write("fake-b.ADD.sleep", "30");
    struct cni_op *op = cni_add(&cfg, &net, &pod, on_done, &o, &err);
    assert_non_null(op);
    run_until_called("fake-b ADD");
    cni_cancel(op);
    run_until_no_children(SAFETY_MS);
    assert_false(o.called);
    assert_calls("fake-a ADD\nfake-b ADD\nfake-b DEL\nfake-a DEL\n");
    char *cpath = cache_file();
    assert_false(exists(cpath));

    /* Cancelling a DEL: the running plugin is killed and the rest is not run. */
    reset_rec();
    assert_non_null(cni_add(&cfg, &net, &pod, on_done, &o, &err));
    run_loop(SAFETY_MS);
    assert_int_equal(o.code, GRPC_OK);
    outcome_clear(&o);
    reset_rec();
    rec_write("fake-b.DEL.sleep", "30");
    op = cni_del(&cfg, &net, &pod, on_done, &o, &err);
    assert_non_null(op);
    run_until_called("fake-b DEL");
    cni_cancel(op);
    run_until_no_children(SAFETY_MS);
    assert_false(o.called);
    assert_calls("fake-c DEL\nfake-b DEL\n");
    assert_true(exists(cpath));

    /* Cancelling right away, before the first plugin ran. */
    reset_rec();
    op = cni_del(&cfg, &net, &pod, on_done, &o, &err);
    cni_cancel(op);
    run_until_no_children(SAFETY_MS);
    assert_false(o.called);
    free(cpath);
    cni_network_clear(&net);
}

static void test_refused_before_running(void **state)
{
    struct cni_network net = make_net(conflist_abc);
    struct cni_pod pod = make_pod();
    struct outcome o = {0};
    struct error *err = NULL;
    const struct {
        const char *field;
        const char *value;
    } bad[] = {
        {"id", ""},      {"id", "../x"},        {"name", "a;b"},
        {"ns", "a=b"},   {"uid", NULL},         {"ifname", "this-name-is-too-long"},
        {"netns", NULL}, {"netns", "relative"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct cni_pod p = pod;
        if (strcmp(bad[i].field, "id") == 0)
            p.container_id = bad[i].value;
        else if (strcmp(bad[i].field, "name") == 0)
            p.pod_name = bad[i].value;
        else if (strcmp(bad[i].field, "ns") == 0)
            p.pod_namespace = bad[i].value;
        else if (strcmp(bad[i].field, "uid") == 0)
            p.pod_uid = bad[i].value;
        else if (strcmp(bad[i].field, "ifname") == 0)
            p.ifname = bad[i].value;
        else
            p.netns_path = bad[i].value;
        assert_null(cni_add(&cfg, &net, &p, on_done, &o, &err));
        assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
        error_clear(&err);
    }
    struct cni_pod p = pod;
    struct cni_port_mapping bad_port[] = {{80, 70000, "tcp", NULL}};
    p.port_mappings = bad_port;
    p.n_port_mappings = 1;
    assert_null(cni_add(&cfg, &net, &p, on_done, &o, &err));
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    error_clear(&err);
    struct cni_port_mapping bad_proto[] = {{80, 80, "icmp", NULL}};
    p.port_mappings = bad_proto;
    assert_null(cni_add(&cfg, &net, &p, on_done, &o, &err));
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    error_clear(&err);
    /* DEL may go without a netns. */
    p = pod;
    p.netns_path = NULL;
    assert_non_null(cni_del(&cfg, &net, &p, on_done, &o, &err));
    run_loop(SAFETY_MS);
    assert_int_equal(o.code, GRPC_OK);
    char *env = rec_read("fake-a.DEL.env");
    assert_non_null(strstr(env, "CNI_NETNS=\n"));
    free(env);
    outcome_clear(&o);
    cni_network_clear(&net);

    /* A plugin not installed, first or later; a list without cniVersion. */
    net = make_net("{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"plugins\":[{\"type\":\"nope\"}]}");
    assert_null(cni_add(&cfg, &net, &pod, on_done, &o, &err));
    assert_int_equal(err->grpc_code, GRPC_FAILED_PRECONDITION);
    assert_non_null(strstr(err->msg, "nope"));
    error_clear(&err);
    cni_network_clear(&net);
    reset_rec();
    net = make_net("{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"plugins\":"
                   "[{\"type\":\"fake-a\"},{\"type\":\"nope\"}]}");
    assert_non_null(cni_add(&cfg, &net, &pod, on_done, &o, &err));
    run_loop(SAFETY_MS);
    assert_int_equal(o.code, GRPC_FAILED_PRECONDITION);
    assert_calls("fake-a ADD\nfake-a DEL\n");
    outcome_clear(&o);
    cni_network_clear(&net);
    net = make_net("{\"name\":\"n\",\"plugins\":[{\"type\":\"fake-a\"}]}");
    assert_null(cni_add(&cfg, &net, &pod, on_done, &o, &err));
    assert_int_equal(err->grpc_code, GRPC_FAILED_PRECONDITION);
    error_clear(&err);
    cni_network_clear(&net);
    net = make_net("{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"plugins\":[{\"type\":\"../x\"}]}");
    assert_null(cni_add(&cfg, &net, &pod, on_done, &o, &err));
    assert_int_equal(err->grpc_code, GRPC_FAILED_PRECONDITION);
    error_clear(&err);
    cni_network_clear(&net);
    assert_int_equal(child_count(), 0);
}

/* ---- result parsing and quantities ---- */

static void test_result_parse(void **state)
{
    struct cni_result r;
    struct error *err = NULL;
    /* 0.4.0 style with "version"; no interface index counts; garbage is skipped. */
    const char *v040 =
        "{\"cniVersion\":\"0.4.0\",\"interfaces\":[{\"name\":\"eth0\",\"sandbox\":\"/x\"}],"
        "\"ips\":[{\"version\":\"6\",\"address\":\"2001:db8::7/64\",\"interface\":0},"
        "{\"version\":\"4\",\"address\":\"192.168.9.9/24\"},"
        "{\"version\":\"4\",\"address\":\"not-an-ip/24\",\"interface\":0},"
        "{\"version\":\"4\",\"address\":\"10.0.0.1/8\",\"interface\":7},"
        "{\"address\":42}]}";
    assert_int_equal(cni_result_parse(v040, strlen(v040), "eth0", &r, &err), 0);
    assert_int_equal(r.n_ips, 2);
    assert_string_equal(r.ips[0], "192.168.9.9");
    assert_string_equal(r.ips[1], "2001:db8::7");
    assert_non_null(r.json);
    cni_result_clear(&r);
    assert_int_equal(cni_result_parse("{}", 2, "eth0", &r, &err), 0);
    assert_int_equal(r.n_ips, 0);
    cni_result_clear(&r);
    assert_int_equal(cni_result_parse("[1]", 3, "eth0", &r, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INTERNAL);
    error_clear(&err);
}

static void test_bandwidth_parse(void **state)
{
    static const struct {
        const char *q;
        uint64_t want; /* 0: refused */
    } cases[] = {
        {"10M", 10000000},
        {"1.5Gi", 1610612736},
        {"500k", 500000},
        {"1k", 1000},
        {"1000", 1000},
        {"2.5M", 2500000},
        {"1P", 1000000000000000ULL},
        {"1000000000m", 1000000},
        {"1001m", 0},
        {"999", 0},
        {"2P", 0},
        {"1Ei", 0},
        {"", 0},
        {"abc", 0},
        {"10X", 0},
        {"1..2M", 0},
        {"-5M", 0},
        {"10 M", 0},
        {"1234567890123456789012", 0},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        uint64_t v = 0;
        struct error *err = NULL;
        int r = cni_bandwidth_parse(cases[i].q, &v, &err);
        if (cases[i].want) {
            if (r != 0)
                fail_msg("%s refused: %s", cases[i].q, err->msg);
            assert_int_equal(v, cases[i].want);
        } else {
            if (r == 0)
                fail_msg("%s accepted as %" PRIu64, cases[i].q, v);
            assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
        }
        error_free(err);
    }
    uint64_t v = 0;
    struct error *err = NULL;
    assert_int_equal(cni_bandwidth_parse(NULL, &v, &err), -1);
    error_free(err);
}

/* ---- the real plugins ---- */

#define REAL_BRIDGE "tc-test0"
#define REAL_SUBNET "10.99.0."

/* What the real test found on the host, for its teardown. */
static struct {
    bool started;
    bool had_chains4, had_chains6; /* CNI-HOSTPORT-* chains existed before */
    char ip_forward;               /* '0' or '1' */
} real;

static int sh(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd = xvasprintf(fmt, ap);
    va_end(ap);
    int r = system(cmd);
    free(cmd);
    return r;
}

static char *sh_out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd = xvasprintf(fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    struct buf b;
    buf_init(&b, 1 << 20);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0)
        buf_append(&b, chunk, n);
    pclose(p);
    free(cmd);
    return buf_take_str(&b, NULL);
}

/* Jumps into and chains named CNI-HOSTPORT-* that portmap leaves in the nat table. */
static void remove_hostport_chains(const char *ipt)
{
    /* Delete the jumps from the built-in chains, then flush and delete the chains. */
    sh("%s -w -t nat -S 2>/dev/null | grep -E '^-A (PREROUTING|OUTPUT|POSTROUTING) .*-j "
       "CNI-HOSTPORT-' | sed 's/^-A/-D/' | while read -r rule; do eval %s -w -t nat $rule; done",
       ipt, ipt);
    sh("for c in $(%s -w -t nat -S 2>/dev/null | sed -n 's/^-N \\(CNI-HOSTPORT-[A-Z]*\\)$/\\1/p'); "
       "do %s -w -t nat -F $c; done",
       ipt, ipt);
    sh("for c in $(%s -w -t nat -S 2>/dev/null | sed -n 's/^-N \\(CNI-HOSTPORT-[A-Z]*\\)$/\\1/p'); "
       "do %s -w -t nat -X $c; done",
       ipt, ipt);
}

static bool has_hostport_chains(const char *ipt)
{
    return sh("%s -w -t nat -S 2>/dev/null | grep -q CNI-HOSTPORT-", ipt) == 0;
}

static void test_real_plugins(void **state)
{
    if (geteuid() != 0 || access("/usr/lib/cni/bridge", X_OK) != 0 ||
        access("/usr/lib/cni/host-local", X_OK) != 0 || access("/usr/lib/cni/portmap", X_OK) != 0)
        skip();
    /* Refuse to run over a bridge of that name we did not make. */
    assert_int_not_equal(sh("ip link show " REAL_BRIDGE " >/dev/null 2>&1"), 0);
    real.had_chains4 = has_hostport_chains("iptables");
    real.had_chains6 = has_hostport_chains("ip6tables");
    /* The bridge plugin turns on forwarding for a gateway; the teardown gives the host its own. */
    char *ip_forward = sh_out("cat /proc/sys/net/ipv4/ip_forward");
    ip_forward[strcspn(ip_forward, "\n")] = '\0';
    assert_true(strcmp(ip_forward, "0") == 0 || strcmp(ip_forward, "1") == 0);
    real.ip_forward = ip_forward[0];
    free(ip_forward);
    real.started = true;

    for (size_t i = 0; i < cfg.n_cni_bin_dirs; i++)
        free(cfg.cni_bin_dirs[i]);
    cfg.cni_bin_dirs[0] = xstrdup("/usr/lib/cni");
    cfg.n_cni_bin_dirs = 1;
    cfg.cni_timeout_s = 30;
    char *nsdir = xasprintf("%s/netns", tmp);
    char *conflist = xasprintf(
        "{\"cniVersion\":\"1.0.0\",\"name\":\"tctest\",\"plugins\":[{\"type\":\"bridge\","
        "\"bridge\":\"" REAL_BRIDGE "\",\"isGateway\":true,\"ipMasq\":false,\"ipam\":{\"type\":"
        "\"host-local\",\"ranges\":[[{\"subnet\":\"10.99.0.0/24\"}]],\"dataDir\":\"%s/ipam\"}},"
        "{\"type\":\"portmap\",\"capabilities\":{\"portMappings\":true}}]}",
        tmp);
    struct cni_network net = make_net(conflist);
    struct nsfs_paths ns;
    struct error *err = NULL;
    pin_net(nsdir, SANDBOX_ID, &ns);
    /* Loopback only: no host address ever receives traffic for the pod. */
    struct cni_port_mapping hostport[] = {{18080, 80, "TCP", "127.0.0.1"}};
    struct cni_pod pod = {
        .container_id = SANDBOX_ID,
        .netns_path = ns.net,
        .ifname = "eth0",
        .pod_name = "real",
        .pod_namespace = "tinycri-test",
        .pod_uid = "uid-real",
        .port_mappings = hostport,
        .n_port_mappings = 1,
        .cache_dir = cache,
    };

    struct outcome o = {0};
    assert_non_null(cni_add(&cfg, &net, &pod, on_done, &o, &err));
    run_loop(SAFETY_MS);
    if (o.code != GRPC_OK)
        fail_msg("real ADD failed: %s", o.msg);
    assert_true(str_has_prefix(o.ips, REAL_SUBNET));
    assert_null(strchr(o.ips, ','));
    char *addr = sh_out("nsenter --net=%s ip -4 -o addr show eth0", ns.net);
    char *want = xasprintf(" %s/24 ", o.ips);
    if (!strstr(addr, want))
        fail_msg("pod address %s not in: %s", o.ips, addr);
    free(addr);
    free(want);
    assert_int_equal(sh("ping -c1 -W1 %s >/dev/null", o.ips), 0);
    /* portmap made its per-pod DNAT rules, tagged with the sandbox id... */
    assert_int_equal(sh("iptables -w -t nat -S | grep -q '" SANDBOX_ID "'"), 0);
    /* ...and 127.0.0.1:18080 reaches port 80 in the pod (a listener that serves once, 10 s at
     * most). */
    assert_int_equal(sh("nsenter --net=%s timeout 10 /usr/bin/python3 -c \"import socket\n"
                        "s = socket.socket()\ns.bind(('0.0.0.0', 80))\ns.listen(1)\n"
                        "c, _ = s.accept()\nc.sendall(b'hello from the pod')\nc.close()\" &",
                        ns.net),
                     0);
    char *reply = NULL;
    for (int i = 0; i < 50; i++) {
        free(reply);
        reply = sh_out("/usr/bin/python3 -c \"import socket\n"
                       "try:\n s = socket.create_connection(('127.0.0.1', 18080), timeout=2)\n"
                       " print(s.recv(100).decode())\nexcept OSError:\n pass\" 2>/dev/null");
        if (*reply)
            break;
        run_loop_for(100);
    }
    assert_string_equal(reply, "hello from the pod\n");
    free(reply);
    char *ip = xstrdup(o.ips);
    outcome_clear(&o);

    assert_non_null(cni_del(&cfg, &net, &pod, on_done, &o, &err));
    run_loop(SAFETY_MS);
    if (o.code != GRPC_OK)
        fail_msg("real DEL failed: %s", o.msg);
    outcome_clear(&o);
    assert_int_not_equal(sh("nsenter --net=%s ip link show eth0 >/dev/null 2>&1", ns.net), 0);
    assert_int_not_equal(sh("iptables -w -t nat -S | grep -q '" SANDBOX_ID "'"), 0);
    char *lease = xasprintf("%s/ipam/tctest/%s", tmp, ip);
    assert_false(exists(lease));
    free(lease);
    /* Again: still fine. */
    assert_non_null(cni_del(&cfg, &net, &pod, on_done, &o, &err));
    run_loop(SAFETY_MS);
    if (o.code != GRPC_OK)
        fail_msg("second real DEL failed: %s", o.msg);
    outcome_clear(&o);

    assert_int_equal(nsfs_unpin(nsdir, SANDBOX_ID, &err), 0);
    assert_int_equal(sh("ip link del " REAL_BRIDGE), 0);
    free(ip);
    free(conflist);
    free(nsdir);
    nsfs_paths_clear(&ns);
    cni_network_clear(&net);
}

/* Whatever the real test left (all of it when it failed), by name; the host's forwarding. */
static int real_teardown(void **state)
{
    if (!real.started)
        return test_teardown(state);
    sh("ip link del " REAL_BRIDGE " >/dev/null 2>&1");
    if (!real.had_chains4)
        remove_hostport_chains("iptables");
    if (!real.had_chains6)
        remove_hostport_chains("ip6tables");
    assert_int_equal(sh("echo %c > /proc/sys/net/ipv4/ip_forward", real.ip_forward), 0);
    char *nsdir = xasprintf("%s/netns", tmp);
    struct error *err = NULL;
    nsfs_unpin(nsdir, SANDBOX_ID, &err);
    error_free(err);
    free(nsdir);
    return test_teardown(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_add_chain_and_del, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_old_version_del_has_no_prev_result, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_add_failure_rolls_back, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_del_failure_stops_and_keeps_cache, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_timeout_kills_and_rolls_back, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_cancel, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_refused_before_running, test_setup, test_teardown),
        cmocka_unit_test(test_result_parse),
        cmocka_unit_test(test_bandwidth_parse),
        cmocka_unit_test_setup_teardown(test_real_plugins, test_setup, real_teardown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
