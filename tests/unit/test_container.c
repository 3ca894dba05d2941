/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for pod/container without a real runtime: the lifecycle's
 * transition table; records reloaded at start-up and reconciled with their
 * keepers (a live keeper keeps its container, a dead one without an exit
 * record makes it UNKNOWN, one with exit.json makes it EXITED with the
 * reason); container_set_state() refusing what the table refuses and
 * persisting what it allows; StopContainer's and RemoveContainer's callbacks
 * never running inside the call that started them; an UNKNOWN container
 * stopped through `runtime delete` (a fake runtime script), also when that
 * fails; removal tearing down the record and both directories. Keepers are
 * stand-ins: sh processes whose argv[0] and "--id <id>" look like a keeper's.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "api.pb-c.h"
#include "core/base64.h"
#include "core/config.h"
#include "core/error.h"
#include "core/loop.h"
#include "core/util.h"
#include "helpers.h"
#include "image/store.h"
#include "pod/container.h"
#include "pod/keeper_client.h"
#include "pod/runtime.h"

#define SAFETY_MS 10000

#define ID_E "e000000000000000000000000000000000000000000000000000000000000000"
#define ID_R "a000000000000000000000000000000000000000000000000000000000000000"
#define ID_D "d000000000000000000000000000000000000000000000000000000000000000"
#define ID_X "c000000000000000000000000000000000000000000000000000000000000000"
#define ID_U "b000000000000000000000000000000000000000000000000000000000000000"

static char tmp[64];
static struct config cfg;
static struct store *store;
static pid_t keepers[8];
static size_t n_keepers;

/* ---- fixtures ---- */

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* A runtime that logs its arguments and exits with what <tmp>/rt.exit says (0 by default). */
static void write_fake_runtime(void)
{
    _cleanup_free_ char *path = xasprintf("%s/%s", tmp, "rt");
    _cleanup_free_ char *script =
        xasprintf("#!/bin/sh\n"
                  "echo \"$*\" >>%s/rt.log\n"
                  "case \"$1\" in --version) echo 'fake 1.0'; exit 0;; esac\n"
                  "code=$(cat %s/rt.exit 2>/dev/null || echo 0)\n"
                  "[ \"$code\" = 0 ] || echo \"fake runtime says no\" >&2\n"
                  "exit $code\n",
                  tmp, tmp);
    write_text(path, script);
    assert_int_equal(chmod(path, 0755), 0);
}

static void set_runtime_exit(int code)
{
    _cleanup_free_ char *path = xasprintf("%s/%s", tmp, "rt.exit");
    char text[16];
    snprintf(text, sizeof(text), "%d\n", code);
    write_text(path, text);
}

static bool runtime_was_asked(const char *words)
{
    _cleanup_free_ char *path = xasprintf("%s/%s", tmp, "rt.log");
    _cleanup_error_ struct error *err = NULL;
    _cleanup_free_ char *log = read_file_capped(path, 1 << 20, NULL, &err);
    return log && strstr(log, words);
}

/* A process that passes for the keeper of id (argv[0] and "--id <id>"). */
static pid_t start_fake_keeper(const char *id)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char *argv[] = {(char *)"tinycri-keeper",
                        (char *)"-c",
                        (char *)"sleep 60; :",
                        (char *)"tinycri-keeper",
                        (char *)"--id",
                        (char *)id,
                        NULL};
        execv("/bin/sh", argv);
        _exit(127);
    }
    keepers[n_keepers++] = pid;
    /* It passes only once it has exec'd. */
    for (int i = 0; i < 2000 && !keeper_is_for(pid, id); i++)
        usleep(1000);
    assert_true(keeper_is_for(pid, id));
    return pid;
}

static void kill_fake_keeper(pid_t pid)
{
    kill(pid, SIGKILL);
}

/* A container record as the daemon writes it. */
static void write_record(const char *id, const char *state, int keeper_pid)
{
    Runtime__V1__ContainerMetadata md = RUNTIME__V1__CONTAINER_METADATA__INIT;
    md.name = (char *)"app";
    md.attempt = 1;
    Runtime__V1__ContainerConfig config = RUNTIME__V1__CONTAINER_CONFIG__INIT;
    config.metadata = &md;
    size_t len = runtime__v1__container_config__get_packed_size(&config);
    _cleanup_free_ uint8_t *packed = xmalloc(len ? len : 1);
    runtime__v1__container_config__pack(&config, packed);
    _cleanup_free_ char *b64 = base64_encode(packed, len);
    _cleanup_free_ char *root_dir = xasprintf("%s/root/containers/%s", tmp, id);
    _cleanup_free_ char *state_dir = xasprintf("%s/state/ctr/%s", tmp, id);
    assert_int_equal(mkdir(root_dir, 0700), 0);
    assert_int_equal(mkdir(state_dir, 0700), 0);
    json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:[], s:s, s:s, s:I, s:I, s:I, s:i,"
                          " s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:s}",
                          "id", id, "sandboxId", "p1", "name", "app", "attempt", 1, "config", b64,
                          "imageRef", "busybox", "imageId", "sha256:00", "chainIds", "runtime",
                          "crun", "state", state, "createdAt", (json_int_t)1, "startedAt",
                          (json_int_t)2, "finishedAt", (json_int_t)0, "exitCode", 0, "reason", "",
                          "message", "", "logPath", "", "stopSignal", SIGTERM, "pid", 0,
                          "keeperPid", keeper_pid, "rootDir", root_dir, "stateDir", state_dir);
    assert_non_null(o);
    _cleanup_free_ char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    _cleanup_free_ char *path = xasprintf("%s/root/containers/%s.json", tmp, id);
    write_text(path, text);
}

static json_t *read_record(const char *id)
{
    _cleanup_free_ char *path = xasprintf("%s/root/containers/%s.json", tmp, id);
    json_error_t jerr;
    return json_load_file(path, 0, &jerr);
}

static void init_module(void)
{
    struct error *err = NULL;
    if (runtime_init(&cfg, &err) < 0 || container_init(&cfg, store, &err) < 0)
        fail_msg("init: %s", err->msg);
    run_loop_for(100); /* the runtime probe, the reconcile calls */
}

static int setup(void **state)
{
    snprintf(tmp, sizeof(tmp), "/tmp/tinycri-ctr-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    struct error *err = NULL;
    assert_int_equal(loop_init(&err), 0);
    config_init_defaults(&cfg);
    free(cfg.root_dir);
    free(cfg.state_dir);
    cfg.root_dir = xasprintf("%s/root", tmp);
    cfg.state_dir = xasprintf("%s/state", tmp);
    write_fake_runtime();
    for (size_t i = 0; i < cfg.n_runtimes; i++) {
        free(cfg.runtimes[i].path);
        cfg.runtimes[i].path = xasprintf("%s/rt", tmp);
    }
    store = store_open(cfg.root_dir, &err);
    assert_non_null(store);
    _cleanup_free_ char *records = xasprintf("%s/root/containers", tmp);
    _cleanup_free_ char *states = xasprintf("%s/state/ctr", tmp);
    assert_int_equal(mkdir_p(records, 0700, &err), 0);
    assert_int_equal(mkdir_p(states, 0700, &err), 0);
    n_keepers = 0;
    return 0;
}

static int teardown(void **state)
{
    container_shutdown();
    runtime_shutdown();
    for (size_t i = 0; i < n_keepers; i++) {
        kill(keepers[i], SIGKILL);
        waitpid(keepers[i], NULL, 0);
    }
    run_until_no_children(SAFETY_MS);
    store_free(store);
    loop_shutdown();
    config_free(&cfg);
    _cleanup_free_ char *cmd = xasprintf("rm -rf %s", tmp);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* ---- the transition table ---- */

static void test_transition_table(void **state)
{
    enum container_state C = CONTAINER_CREATED, R = CONTAINER_RUNNING, E = CONTAINER_EXITED,
                         U = CONTAINER_UNKNOWN;
    /* want[from][to], in enum order CREATED, RUNNING, EXITED, UNKNOWN. */
    static const bool want[4][4] = {
        /* CREATED */ {false, true, true, true},
        /* RUNNING */ {false, false, true, true},
        /* EXITED  */ {false, false, false, false},
        /* UNKNOWN */ {false, false, true, false},
    };
    enum container_state all[] = {C, R, E, U};
    for (size_t f = 0; f < 4; f++) {
        for (size_t t = 0; t < 4; t++) {
            if (container_transition_ok(all[f], all[t]) != want[f][t])
                fail_msg("%s -> %s: %s", container_state_name(all[f]), container_state_name(all[t]),
                         want[f][t] ? "refused" : "allowed");
        }
    }
}

/* ---- start-up ---- */

static void test_reload_and_reconcile(void **state)
{
    write_record(ID_E, "EXITED", 0);
    write_record(ID_R, "RUNNING", start_fake_keeper(ID_R));
    write_record(ID_U, "RUNNING", 0); /* no keeper, no exit record */
    write_record(ID_D, "RUNNING", 0); /* no keeper, but an exit record */
    _cleanup_free_ char *exit_json = xasprintf("%s/state/ctr/%s/exit.json", tmp, ID_D);
    write_text(exit_json, "{\"exitCode\":137,\"signal\":9,\"finishedAt\":5,\"oomKilled\":true}\n");
    init_module();

    assert_int_equal(container_find(ID_E)->state, CONTAINER_EXITED);
    assert_int_equal(container_find(ID_R)->state, CONTAINER_RUNNING);
    const struct container *u = container_find(ID_U);
    assert_int_equal(u->state, CONTAINER_UNKNOWN);
    assert_string_equal(u->reason, "Unknown");
    assert_int_equal(u->exit_code, 255);
    const struct container *d = container_find(ID_D);
    assert_int_equal(d->state, CONTAINER_EXITED);
    assert_int_equal(d->exit_code, 137);
    assert_string_equal(d->reason, "OOMKilled");
    assert_int_equal(d->finished_ns, 5);
    /* The changes are on disk too. */
    json_t *o = read_record(ID_U);
    assert_string_equal(json_string_value(json_object_get(o, "state")), "UNKNOWN");
    json_decref(o);
    /* Lookups by unique prefix; "" and ambiguity find nothing. */
    assert_ptr_equal(container_find("e0"), container_find(ID_E));
    assert_null(container_find(""));
    /* Creation order is kept for listing. */
    assert_int_equal(strcmp(container_at(0)->id, ID_E) && strcmp(container_at(1)->id, ID_E), 0);
    assert_null(container_at(4));
}

static void test_set_state_follows_the_table(void **state)
{
    write_record(ID_E, "EXITED", 0);
    write_record(ID_R, "RUNNING", start_fake_keeper(ID_R));
    init_module();
    struct error *err = NULL;
    struct container *e = container_find(ID_E);
    assert_int_equal(container_set_state(e, CONTAINER_RUNNING, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_FAILED_PRECONDITION);
    assert_non_null(strstr(err->msg, "is EXITED, cannot become RUNNING"));
    error_clear(&err);
    struct container *r = container_find(ID_R);
    assert_int_equal(container_set_state(r, CONTAINER_CREATED, &err), -1);
    error_clear(&err);
    assert_int_equal(r->state, CONTAINER_RUNNING);
    assert_int_equal(container_set_state(r, CONTAINER_UNKNOWN, &err), 0);
    json_t *o = read_record(ID_R);
    assert_string_equal(json_string_value(json_object_get(o, "state")), "UNKNOWN");
    json_decref(o);
}

/* A keeper that goes away is noticed through its pidfd: EXITED with what exit.json says. */
static void test_keeper_exit_noticed(void **state)
{
    pid_t k = start_fake_keeper(ID_R);
    write_record(ID_R, "RUNNING", k);
    init_module();
    _cleanup_free_ char *exit_json = xasprintf("%s/state/ctr/%s/exit.json", tmp, ID_R);
    write_text(exit_json, "{\"exitCode\":3,\"signal\":0,\"finishedAt\":7,\"oomKilled\":false}\n");
    kill_fake_keeper(k);
    waitpid(k, NULL, 0); /* not ours to the daemon: it was adopted, not started */
    run_loop_for(200);
    const struct container *r = container_find(ID_R);
    assert_int_equal(r->state, CONTAINER_EXITED);
    assert_int_equal(r->exit_code, 3);
    assert_string_equal(r->reason, "Error");
    assert_true(runtime_was_asked("delete")); /* the runtime's state is released */
}

static int runtime_calls(const char *words)
{
    _cleanup_free_ char *path = xasprintf("%s/%s", tmp, "rt.log");
    _cleanup_error_ struct error *err = NULL;
    _cleanup_free_ char *log = read_file_capped(path, 1 << 20, NULL, &err);
    int n = 0;
    for (const char *p = log; p && (p = strstr(p, words)); p += strlen(words))
        n++;
    return n;
}

/* ---- the completion contract ---- */

struct outcome {
    int calls;
    bool in_call; /* set while the starting call runs */
    bool called_inside;
    int code;
    char msg[256];
};

static void on_done(const struct error *err, void *arg)
{
    struct outcome *o = arg;
    o->calls++;
    o->called_inside = o->called_inside || o->in_call;
    o->code = err ? err->grpc_code : GRPC_OK;
    snprintf(o->msg, sizeof(o->msg), "%s", err ? err->msg : "");
    loop_exit();
}

static void test_stop_exited_is_done_later(void **state)
{
    write_record(ID_E, "EXITED", 0);
    init_module();
    struct outcome o = {.in_call = true};
    struct error *err = NULL;
    assert_int_equal(container_stop(ID_E, 10, on_done, &o, &err), 0);
    o.in_call = false;
    assert_int_equal(o.calls, 0); /* never inside the call */
    run_loop(SAFETY_MS);
    assert_int_equal(o.calls, 1);
    assert_false(o.called_inside);
    assert_int_equal(o.code, GRPC_OK);
    /* Unknown ids: Stop says NOT_FOUND at once, Remove is done later. */
    assert_int_equal(container_stop("f00", 0, on_done, &o, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_NOT_FOUND);
    error_clear(&err);
    struct outcome r = {.in_call = true};
    assert_int_equal(container_remove("f00", on_done, &r, &err), 0);
    r.in_call = false;
    assert_int_equal(r.calls, 0);
    run_loop(SAFETY_MS);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.code, GRPC_OK);
}

/* UNKNOWN: `runtime delete` makes sure it is dead, then it is EXITED; a stop joining waits too. */
static void test_stop_unknown(void **state)
{
    write_record(ID_U, "UNKNOWN", 0);
    init_module();
    struct outcome a = {.in_call = true}, b = {.in_call = true};
    struct error *err = NULL;
    assert_int_equal(container_stop(ID_U, 30, on_done, &a, &err), 0);
    a.in_call = false;
    assert_int_equal(container_stop(ID_U, 0, on_done, &b, &err), 0);
    b.in_call = false;
    while (a.calls + b.calls < 2)
        run_loop(SAFETY_MS);
    assert_int_equal(a.code, GRPC_OK);
    assert_int_equal(b.code, GRPC_OK);
    assert_false(a.called_inside || b.called_inside);
    assert_int_equal(container_find(ID_U)->state, CONTAINER_EXITED);
    assert_true(runtime_was_asked("delete"));
}

static void test_stop_unknown_delete_fails(void **state)
{
    write_record(ID_U, "UNKNOWN", 0);
    init_module();
    set_runtime_exit(1);
    struct outcome a = {.in_call = true};
    struct error *err = NULL;
    assert_int_equal(container_stop(ID_U, 0, on_done, &a, &err), 0);
    a.in_call = false;
    run_loop(SAFETY_MS);
    assert_int_equal(a.calls, 1);
    assert_false(a.called_inside);
    assert_int_not_equal(a.code, GRPC_OK);
    assert_non_null(strstr(a.msg, "fake runtime says no"));
    assert_int_equal(container_find(ID_U)->state, CONTAINER_UNKNOWN);
    /* The stop is over: a later one tries again, and succeeds. */
    set_runtime_exit(0);
    struct outcome b = {0};
    assert_int_equal(container_stop(ID_U, 0, on_done, &b, &err), 0);
    run_loop(SAFETY_MS);
    assert_int_equal(b.code, GRPC_OK);
    assert_int_equal(container_find(ID_U)->state, CONTAINER_EXITED);
}

/* Remove: the record first, then the runtime's state and both directories. */
static void test_remove(void **state)
{
    write_record(ID_E, "EXITED", 0);
    init_module();
    _cleanup_free_ char *root_dir = xasprintf("%s/root/containers/%s", tmp, ID_E);
    _cleanup_free_ char *state_dir = xasprintf("%s/state/ctr/%s", tmp, ID_E);
    _cleanup_free_ char *record = xasprintf("%s/root/containers/%s.json", tmp, ID_E);
    struct outcome o = {.in_call = true};
    struct error *err = NULL;
    assert_int_equal(container_remove(ID_E, on_done, &o, &err), 0);
    o.in_call = false;
    run_loop(SAFETY_MS);
    assert_int_equal(o.calls, 1);
    assert_false(o.called_inside);
    assert_int_equal(o.code, GRPC_OK);
    assert_null(container_find(ID_E));
    assert_false(exists(record));
    assert_false(exists(root_dir));
    assert_false(exists(state_dir));
    assert_true(runtime_was_asked("delete --force " ID_E));
}

/* The runtime's state, released once after the exit, is not deleted again by the removal. */
static void test_remove_after_exit_deletes_once(void **state)
{
    pid_t k = start_fake_keeper(ID_R);
    write_record(ID_R, "RUNNING", k);
    init_module();
    _cleanup_free_ char *exit_json = xasprintf("%s/state/ctr/%s/exit.json", tmp, ID_R);
    write_text(exit_json, "{\"exitCode\":0,\"signal\":0,\"finishedAt\":7,\"oomKilled\":false}\n");
    kill_fake_keeper(k);
    waitpid(k, NULL, 0);
    run_loop_for(200);
    assert_int_equal(container_find(ID_R)->state, CONTAINER_EXITED);
    assert_int_equal(runtime_calls("delete --force " ID_R), 1);
    struct outcome o = {0};
    struct error *err = NULL;
    assert_int_equal(container_remove(ID_R, on_done, &o, &err), 0);
    run_loop(SAFETY_MS);
    assert_int_equal(o.code, GRPC_OK);
    assert_null(container_find(ID_R));
    assert_int_equal(runtime_calls("delete --force " ID_R), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transition_table),
        cmocka_unit_test_setup_teardown(test_reload_and_reconcile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_state_follows_the_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keeper_exit_noticed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_exited_is_done_later, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_unknown_delete_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_after_exit_deletes_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
