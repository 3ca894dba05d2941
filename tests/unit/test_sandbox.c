/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for pod sandboxes without CNI or a pod-init (needs root for the
 * namespace dir and /dev/shm mounts): validation errors come back at once and
 * leave nothing; a host-network pod goes READY -> NOTREADY -> removed with
 * its record and files; callbacks never run inside the starting call; names
 * are reserved until removal; prefixes find sandboxes; the container hooks
 * are called (also when they answer synchronously) and their failure fails
 * Stop; records survive a shutdown/init cycle and a corrupt one is skipped; a
 * pod network without a CNI config fails with FAILED_PRECONDITION and is
 * fully unwound (namespaces, /dev/shm, files, record).
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.pb-c.h"
#include "core/config.h"
#include "core/error.h"
#include "core/loop.h"
#include "core/util.h"
#include "pod/sandbox.h"
#include "helpers.h"

#define SAFETY_MS 10000

static char tmp[64];
static struct config cfg;

struct outcome {
    bool called;
    int code; /* GRPC_OK when no error */
    char msg[512];
    char id[65];
};

static void on_done(const struct error *err, const char *id, void *arg)
{
    struct outcome *o = arg;
    assert_false(o->called);
    o->called = true;
    o->code = err ? err->grpc_code : GRPC_OK;
    snprintf(o->msg, sizeof(o->msg), "%s", err ? err->msg : "");
    snprintf(o->id, sizeof(o->id), "%s", id ? id : "");
    loop_exit();
}

static size_t dir_entries(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    }
    closedir(d);
    return n;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static bool is_mounted_below(const char *prefix)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    assert_non_null(f);
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        char point[2048];
        if (sscanf(line, "%*s %*s %*s %*s %2047s", point) == 1 && str_has_prefix(point, prefix) &&
            point[strlen(prefix)] == '/')
            found = true;
    }
    fclose(f);
    return found;
}

static char *path_in(const char *dir, const char *name)
{
    return xasprintf("%s/%s/%s", tmp, dir, name);
}

/* A pod config; the caller frees it with pod_free(). */
struct pod {
    Runtime__V1__PodSandboxConfig c;
    Runtime__V1__PodSandboxMetadata m;
    Runtime__V1__LinuxPodSandboxConfig l;
    Runtime__V1__LinuxSandboxSecurityContext sc;
    Runtime__V1__NamespaceOption ns;
};

static void pod_init(struct pod *p, const char *name, bool host_network)
{
    runtime__v1__pod_sandbox_config__init(&p->c);
    runtime__v1__pod_sandbox_metadata__init(&p->m);
    runtime__v1__linux_pod_sandbox_config__init(&p->l);
    runtime__v1__linux_sandbox_security_context__init(&p->sc);
    runtime__v1__namespace_option__init(&p->ns);
    p->m.name = (char *)name;
    p->m.namespace_ = (char *)"default";
    p->m.uid = (char *)"uid-1";
    p->c.metadata = &p->m;
    p->c.hostname = (char *)name;
    p->c.linux = &p->l;
    p->l.security_context = &p->sc;
    p->sc.namespace_options = &p->ns;
    p->ns.pid = RUNTIME__V1__NAMESPACE_MODE__CONTAINER;
    if (host_network) {
        p->ns.network = RUNTIME__V1__NAMESPACE_MODE__NODE;
        p->ns.ipc = RUNTIME__V1__NAMESPACE_MODE__NODE;
    }
}

static struct outcome run_pod(const Runtime__V1__PodSandboxConfig *c, const char *handler)
{
    struct outcome o = {0};
    struct error *err = NULL;
    assert_int_equal(sandbox_run(c, handler, on_done, &o, &err), 0);
    assert_false(o.called); /* never inside the call */
    run_loop(SAFETY_MS);
    assert_true(o.called);
    return o;
}

static struct outcome stop_or_remove(bool remove, const char *id)
{
    struct outcome o = {0};
    struct error *err = NULL;
    int r = remove ? sandbox_remove(id, on_done, &o, &err) : sandbox_stop(id, on_done, &o, &err);
    if (r < 0) {
        o.called = true;
        o.code = err->grpc_code;
        snprintf(o.msg, sizeof(o.msg), "%s", err->msg);
        error_free(err);
        return o;
    }
    assert_false(o.called);
    run_loop(SAFETY_MS);
    assert_true(o.called);
    return o;
}

/* ---- hooks ---- */

static int stops, removes;
static bool fail_stop;

static void hook_stop_all(const char *sandbox_id, void (*done)(const struct error *err, void *arg),
                          void *arg)
{
    stops++;
    struct error *err = NULL;
    if (fail_stop)
        error_set(&err, GRPC_INTERNAL, 0, "cannot kill container");
    done(err, arg); /* synchronously, as pod/container may */
    error_free(err);
}

/* With defer_remove the containers' teardown "runs" until finish_remove() is called. */
static bool defer_remove;
static void (*remove_done)(const struct error *err, void *arg);
static void *remove_arg;

static void hook_remove_all(const char *sandbox_id,
                            void (*done)(const struct error *err, void *arg), void *arg)
{
    removes++;
    if (!defer_remove) {
        done(NULL, arg); /* synchronously, as pod/container may */
        return;
    }
    remove_done = done;
    remove_arg = arg;
}

static void on_finish_remove(void *arg)
{
    (void)arg;
    remove_done(NULL, remove_arg);
    remove_done = NULL;
}

static const struct sandbox_container_hooks hooks = {hook_stop_all, hook_remove_all};

/* ---- fixtures ---- */

static int setup(void **state)
{
    snprintf(tmp, sizeof(tmp), "/tmp/tc-sandbox-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    config_init_defaults(&cfg);
    struct error *err = NULL;
    _cleanup_free_ char *root = xasprintf("%s/root", tmp);
    _cleanup_free_ char *st = xasprintf("%s/state", tmp);
    _cleanup_free_ char *cni = xasprintf("%s/cni", tmp);
    assert_int_equal(mkdir(cni, 0700), 0);
    assert_int_equal(config_set(&cfg, "server", "root_dir", root, &err), 0);
    assert_int_equal(config_set(&cfg, "server", "state_dir", st, &err), 0);
    assert_int_equal(config_set(&cfg, "cni", "conf_dir", cni, &err), 0);
    assert_int_equal(loop_init(&err), 0);
    stops = removes = 0;
    fail_stop = false;
    defer_remove = false;
    remove_done = NULL;
    assert_int_equal(sandbox_init(&cfg, &hooks, &err), 0);
    return 0;
}

static int teardown(void **state)
{
    sandbox_shutdown();
    loop_shutdown();
    config_free(&cfg);
    _cleanup_free_ char *cmd =
        xasprintf("umount -R -l %s/state/netns 2>/dev/null; rm -rf %s", tmp, tmp);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* ---- tests ---- */

static void test_validation(void **state)
{
    struct pod p;
    struct error *err = NULL;
    struct outcome o = {0};

    assert_int_equal(sandbox_run(NULL, "", on_done, &o, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    error_clear(&err);

    pod_init(&p, "v", false);
    p.m.uid = (char *)"";
    assert_int_equal(sandbox_run(&p.c, "", on_done, &o, &err), -1);
    assert_non_null(strstr(err->msg, "uid"));
    error_clear(&err);

    pod_init(&p, "v", false);
    assert_int_equal(sandbox_run(&p.c, "nope", on_done, &o, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(err->msg, "unknown runtime handler"));
    error_clear(&err);

    pod_init(&p, "v", false);
    p.c.hostname = (char *)"a\nb";
    assert_int_equal(sandbox_run(&p.c, "", on_done, &o, &err), -1);
    assert_non_null(strstr(err->msg, "hostname"));
    error_clear(&err);

    pod_init(&p, "v", true);
    Runtime__V1__LinuxPodSandboxConfig__SysctlsEntry e =
        RUNTIME__V1__LINUX_POD_SANDBOX_CONFIG__SYSCTLS_ENTRY__INIT;
    e.key = (char *)"net.ipv4.ip_forward";
    e.value = (char *)"1";
    Runtime__V1__LinuxPodSandboxConfig__SysctlsEntry *ents[] = {&e};
    p.l.n_sysctls = 1;
    p.l.sysctls = ents;
    assert_int_equal(sandbox_run(&p.c, "", on_done, &o, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(err->msg, "host's network"));
    error_clear(&err);

    pod_init(&p, "v", false);
    p.ns.network = RUNTIME__V1__NAMESPACE_MODE__TARGET;
    assert_int_equal(sandbox_run(&p.c, "", on_done, &o, &err), -1);
    error_clear(&err);

    assert_false(o.called);
    assert_int_equal(sandbox_count(), 0);
    _cleanup_free_ char *records = path_in("root", "sandboxes");
    assert_int_equal(dir_entries(records), 0);
}

static void test_host_network_lifecycle(void **state)
{
    struct pod p;
    pod_init(&p, "hostpod", true);
    struct outcome o = run_pod(&p.c, "runc");
    assert_int_equal(o.code, GRPC_OK);
    assert_int_equal(strlen(o.id), 64);

    assert_int_equal(sandbox_count(), 1);
    struct sandbox *sb = sandbox_find(o.id);
    assert_non_null(sb);
    assert_ptr_equal(sandbox_find((char[]){o.id[0], o.id[1], o.id[2], o.id[3], 0}), sb);
    assert_ptr_equal(sandbox_at(0), sb);
    assert_null(sandbox_at(1));
    assert_int_equal(sb->state, SANDBOX_READY);
    assert_string_equal(sb->runtime_handler, "runc");
    assert_null(sb->netns_path);
    assert_null(sb->ipc_path);
    assert_null(sb->uts_path);
    assert_null(sb->pid_ns_path);
    assert_int_equal(sb->pod_init_pid, 0);
    assert_string_equal(sb->shm_path, "/dev/shm");
    assert_int_equal(sb->n_ips, 0);
    assert_false(sb->network_ready);
    assert_true(exists(sb->hostname_path) && exists(sb->hosts_path) && exists(sb->resolv_path));
    _cleanup_free_ char *rec_name = xasprintf("sandboxes/%s.json", o.id);
    _cleanup_free_ char *record = path_in("root", rec_name);
    assert_true(exists(record));

    /* The name is reserved. */
    struct error *err = NULL;
    struct outcome o2 = {0};
    assert_int_equal(sandbox_run(&p.c, "", on_done, &o2, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_ALREADY_EXISTS);
    error_clear(&err);

    /* Stop: hooks run (synchronously answering), NOTREADY, idempotent. */
    struct outcome s = stop_or_remove(false, o.id);
    assert_int_equal(s.code, GRPC_OK);
    assert_int_equal(stops, 1);
    sb = sandbox_find(o.id);
    assert_int_equal(sb->state, SANDBOX_NOTREADY);
    s = stop_or_remove(false, o.id);
    assert_int_equal(s.code, GRPC_OK);
    assert_int_equal(stops, 2);

    /* Remove by prefix; then it is gone, and removing again is fine. */
    _cleanup_free_ char *prefix = xstrndup(o.id, 10);
    _cleanup_free_ char *dir = xasprintf("%s/state/sandboxes/%s", tmp, o.id);
    s = stop_or_remove(true, prefix);
    assert_int_equal(s.code, GRPC_OK);
    assert_int_equal(removes, 1);
    assert_null(sandbox_find(o.id));
    assert_int_equal(sandbox_count(), 0);
    assert_false(exists(record));
    assert_false(exists(dir));
    s = stop_or_remove(true, o.id);
    assert_int_equal(s.code, GRPC_OK);
    s = stop_or_remove(false, o.id);
    assert_int_equal(s.code, GRPC_NOT_FOUND);
    s = stop_or_remove(false, "");
    assert_int_equal(s.code, GRPC_INVALID_ARGUMENT);

    /* The name is free again. */
    o = run_pod(&p.c, "");
    assert_int_equal(o.code, GRPC_OK);
}

static void test_failing_hook_fails_stop(void **state)
{
    struct pod p;
    pod_init(&p, "hookfail", true);
    struct outcome o = run_pod(&p.c, "");
    assert_int_equal(o.code, GRPC_OK);
    fail_stop = true;
    struct outcome s = stop_or_remove(false, o.id);
    assert_int_equal(s.code, GRPC_INTERNAL);
    assert_non_null(strstr(s.msg, "cannot kill container"));
    assert_int_equal(sandbox_find(o.id)->state, SANDBOX_READY);
    s = stop_or_remove(true, o.id);
    assert_int_equal(s.code, GRPC_INTERNAL);
    assert_non_null(sandbox_find(o.id));
    fail_stop = false;
    s = stop_or_remove(true, o.id);
    assert_int_equal(s.code, GRPC_OK);
    assert_null(sandbox_find(o.id));
}

/* RemovePodSandbox answers only once its containers' teardown has finished. */
static void test_remove_waits_for_containers(void **state)
{
    struct pod p;
    pod_init(&p, "waits", true);
    struct outcome o = run_pod(&p.c, "");
    assert_int_equal(o.code, GRPC_OK);
    defer_remove = true;
    struct outcome r = {0};
    struct error *err = NULL;
    assert_int_equal(sandbox_remove(o.id, on_done, &r, &err), 0);
    run_loop_for(200);
    assert_int_equal(removes, 1);
    assert_non_null(remove_done);
    assert_false(r.called);
    assert_non_null(sandbox_find(o.id));

    struct loop_timer *t = loop_timer_new(on_finish_remove, NULL);
    loop_timer_arm(t, 0);
    run_loop(SAFETY_MS);
    loop_timer_free(t);
    assert_true(r.called);
    assert_int_equal(r.code, GRPC_OK);
    assert_null(sandbox_find(o.id));
}

static void test_records_survive_restart(void **state)
{
    struct pod p;
    pod_init(&p, "survivor", true);
    struct outcome a = run_pod(&p.c, "crun");
    assert_int_equal(a.code, GRPC_OK);
    pod_init(&p, "stopped", true);
    struct outcome b = run_pod(&p.c, "");
    assert_int_equal(stop_or_remove(false, b.id).code, GRPC_OK);
    int64_t created = sandbox_find(a.id)->created_ns;

    _cleanup_free_ char *bad = xasprintf("%s/root/sandboxes/%064d.json", tmp, 0);
    FILE *f = fopen(bad, "w");
    assert_non_null(f);
    fputs("{\"id\": 1}", f);
    fclose(f);

    sandbox_shutdown();
    struct error *err = NULL;
    assert_int_equal(sandbox_init(&cfg, &hooks, &err), 0);
    assert_int_equal(sandbox_count(), 2);
    struct sandbox *sa = sandbox_find(a.id), *sb = sandbox_find(b.id);
    assert_non_null(sa);
    assert_non_null(sb);
    assert_int_equal(sa->state, SANDBOX_READY);
    assert_int_equal(sb->state, SANDBOX_NOTREADY);
    assert_int_equal(sa->created_ns, created);
    assert_string_equal(sa->runtime_handler, "crun");
    assert_string_equal(sa->config->metadata->name, "survivor");
    assert_string_equal(sa->config->hostname, "survivor");
    assert_int_equal(sa->config->linux->security_context->namespace_options->network,
                     RUNTIME__V1__NAMESPACE_MODE__NODE);
    unlink(bad);
}

static void test_network_without_cni_is_unwound(void **state)
{
    struct pod p;
    pod_init(&p, "netpod", false);
    struct outcome o = run_pod(&p.c, "");
    assert_int_equal(o.code, GRPC_FAILED_PRECONDITION);
    assert_true(str_has_prefix(o.msg, "network plugin not ready: "));
    assert_int_equal(o.id[0], '\0');
    assert_int_equal(sandbox_count(), 0);
    _cleanup_free_ char *records = path_in("root", "sandboxes");
    _cleanup_free_ char *files = path_in("state", "sandboxes");
    _cleanup_free_ char *netns = path_in("state", "netns");
    assert_int_equal(dir_entries(records), 0);
    assert_int_equal(dir_entries(files), 0);
    assert_int_equal(dir_entries(netns), 0);
    assert_false(is_mounted_below(netns));
    assert_false(is_mounted_below(files));
    /* The name was released with it. */
    o = run_pod(&p.c, "");
    assert_int_equal(o.code, GRPC_FAILED_PRECONDITION);
}

int main(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "test_sandbox needs root; skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_network_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_hook_fails_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_waits_for_containers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_survive_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_network_without_cni_is_unwound, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
