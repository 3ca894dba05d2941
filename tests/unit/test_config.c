/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for core/config: the defaults, the shipped etc/tinycri.conf, a
 * file that changes every key, command-line overrides, the
 * "<file>:<line>: <key>: <reason>" message of each kind of bad line, runtime
 * handlers, [image] keys, [registry.<host>] sections (and that no password
 * ever shows in an error or the JSON), and the JSON view. Test files go to a
 * fresh mkdtemp directory.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/error.h"
#include "core/util.h"

/*
 * The shipped file is TEST_DATA_DIR "/../../../etc/tinycri.conf"; the path is
 * cut as text because git keeps no empty directory, so tests/unit/data may
 * not exist in a fresh checkout.
 */
static char *shipped_conf_path(void)
{
    static const char data[] = TEST_DATA_DIR, suffix[] = "/tests/unit/data";
    assert_true(str_has_suffix(data, suffix));
    return xasprintf("%.*s/etc/tinycri.conf", (int)(strlen(data) - strlen(suffix)), data);
}

static char tmp_dir[] = "/tmp/test_config.XXXXXX";
static int n_files;

static int group_setup(void **state)
{
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    DIR *d = opendir(tmp_dir);
    if (!d)
        return -1;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        _cleanup_free_ char *p = xasprintf("%s/%s", tmp_dir, de->d_name);
        unlink(p);
    }
    closedir(d);
    return rmdir(tmp_dir);
}

/* Write len bytes of text to a new file in tmp_dir; returns its path (owned). */
static char *write_conf_n(const char *text, size_t len)
{
    char *path = xasprintf("%s/test%d.conf", tmp_dir, n_files++);
    FILE *f = fopen(path, "we");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

static char *write_conf(const char *text)
{
    return write_conf_n(text, strlen(text));
}

static void assert_str_or_null_equal(const char *a, const char *b)
{
    if (!a || !b)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

/* Every field but file. */
static void assert_config_equal(const struct config *a, const struct config *b)
{
    assert_string_equal(a->socket_path, b->socket_path);
    assert_string_equal(a->root_dir, b->root_dir);
    assert_string_equal(a->state_dir, b->state_dir);
    assert_int_equal(a->log_level, b->log_level);
    assert_int_equal(a->shutdown_timeout_s, b->shutdown_timeout_s);
    assert_int_equal(a->max_recv_msg_size, b->max_recv_msg_size);
    assert_int_equal(a->max_send_msg_size, b->max_send_msg_size);
    assert_int_equal(a->max_streams, b->max_streams);
    assert_int_equal(a->max_connections, b->max_connections);
    assert_string_equal(a->default_runtime, b->default_runtime);
    assert_int_equal(a->cgroup_driver, b->cgroup_driver);
    assert_int_equal(a->n_runtimes, b->n_runtimes);
    for (size_t i = 0; i < a->n_runtimes; i++) {
        assert_string_equal(a->runtimes[i].name, b->runtimes[i].name);
        assert_str_or_null_equal(a->runtimes[i].path, b->runtimes[i].path);
        assert_str_or_null_equal(a->runtimes[i].root, b->runtimes[i].root);
    }
    assert_string_equal(a->cni_conf_dir, b->cni_conf_dir);
    assert_int_equal(a->n_cni_bin_dirs, b->n_cni_bin_dirs);
    for (size_t i = 0; i < a->n_cni_bin_dirs; i++)
        assert_string_equal(a->cni_bin_dirs[i], b->cni_bin_dirs[i]);
    assert_int_equal(a->cni_timeout_s, b->cni_timeout_s);
    assert_str_or_null_equal(a->import_dir, b->import_dir);
    assert_int_equal(a->max_downloads, b->max_downloads);
    assert_int_equal(a->drop_layer_blobs, b->drop_layer_blobs);
    assert_int_equal(a->pull_timeout_s, b->pull_timeout_s);
    assert_int_equal(a->progress_interval_s, b->progress_interval_s);
    assert_int_equal(a->n_pinned_images, b->n_pinned_images);
    for (size_t i = 0; i < a->n_pinned_images; i++)
        assert_string_equal(a->pinned_images[i], b->pinned_images[i]);
    assert_string_equal(a->stream_address, b->stream_address);
    assert_int_equal(a->stream_port, b->stream_port);
    assert_int_equal(a->stream_idle_timeout_s, b->stream_idle_timeout_s);
    assert_int_equal(a->stream_creation_timeout_s, b->stream_creation_timeout_s);
    assert_int_equal(a->stream_token_timeout_s, b->stream_token_timeout_s);
    assert_int_equal(a->stream_max_sessions, b->stream_max_sessions);
    assert_str_or_null_equal(a->stream_tls_cert, b->stream_tls_cert);
    assert_str_or_null_equal(a->stream_tls_key, b->stream_tls_key);
    assert_int_equal(a->n_registries, b->n_registries);
    for (size_t i = 0; i < a->n_registries; i++) {
        const struct config_registry *ra = &a->registries[i], *rb = &b->registries[i];
        assert_string_equal(ra->host, rb->host);
        assert_int_equal(ra->n_mirrors, rb->n_mirrors);
        for (size_t j = 0; j < ra->n_mirrors; j++)
            assert_string_equal(ra->mirrors[j], rb->mirrors[j]);
        assert_int_equal(ra->insecure, rb->insecure);
        assert_str_or_null_equal(ra->ca_file, rb->ca_file);
        assert_str_or_null_equal(ra->username, rb->username);
        assert_str_or_null_equal(ra->password, rb->password);
    }
}

static void assert_defaults(const struct config *cfg)
{
    struct config def;
    config_init_defaults(&def);
    assert_config_equal(cfg, &def);
    config_free(&def);
}

/*
 * Load text (len bytes) over the defaults and expect it to fail with
 * "<path>:<want>", leaving the defaults untouched.
 */
static void expect_load_error_n(const char *text, size_t len, const char *want)
{
    _cleanup_free_ char *path = write_conf_n(text, len);
    _cleanup_free_ char *msg = xasprintf("%s:%s", path, want);
    struct config cfg;
    config_init_defaults(&cfg);
    _cleanup_error_ struct error *err = NULL;
    assert_int_equal(config_load_file(&cfg, path, &err), -1);
    assert_non_null(err);
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    assert_string_equal(err->msg, msg);
    assert_defaults(&cfg);
    assert_null(cfg.file);
    config_free(&cfg);
}

static void expect_load_error(const char *text, const char *want)
{
    expect_load_error_n(text, strlen(text), want);
}

static void load_ok(struct config *cfg, const char *path)
{
    _cleanup_error_ struct error *err = NULL;
    if (config_load_file(cfg, path, &err) < 0)
        fail_msg("%s", err->msg);
    assert_null(err);
}

static void set_ok(struct config *cfg, const char *section, const char *key, const char *value);

static void test_defaults(void **state)
{
    struct config cfg;
    config_init_defaults(&cfg);
    assert_string_equal(cfg.socket_path, "/run/tinycri/tinycri.sock");
    assert_string_equal(cfg.root_dir, "/var/lib/tinycri");
    assert_string_equal(cfg.state_dir, "/run/tinycri");
    assert_int_equal(cfg.log_level, LOG_LEVEL_INFO);
    assert_int_equal(cfg.shutdown_timeout_s, 10);
    assert_int_equal(cfg.max_recv_msg_size, 16 * 1024 * 1024);
    assert_int_equal(cfg.max_send_msg_size, 16 * 1024 * 1024);
    assert_int_equal(cfg.max_streams, 1000);
    assert_int_equal(cfg.max_connections, 256);
    assert_string_equal(cfg.default_runtime, "crun");
    assert_int_equal(cfg.cgroup_driver, CGROUP_DRIVER_CGROUPFS);
    assert_int_equal(cfg.n_runtimes, 2);
    assert_string_equal(cfg.runtimes[0].name, "crun");
    assert_string_equal(cfg.runtimes[0].path, "/usr/bin/crun");
    assert_null(cfg.runtimes[0].root);
    assert_string_equal(cfg.runtimes[1].name, "runc");
    assert_string_equal(cfg.runtimes[1].path, "/usr/bin/runc");
    assert_null(cfg.runtimes[1].root);
    assert_string_equal(cfg.cni_conf_dir, "/etc/cni/net.d");
    assert_int_equal(cfg.n_cni_bin_dirs, 2);
    assert_string_equal(cfg.cni_bin_dirs[0], "/opt/cni/bin");
    assert_string_equal(cfg.cni_bin_dirs[1], "/usr/lib/cni");
    assert_int_equal(cfg.cni_timeout_s, 30);
    assert_null(cfg.import_dir);
    assert_int_equal(cfg.max_downloads, 3);
    assert_false(cfg.drop_layer_blobs);
    assert_int_equal(cfg.pull_timeout_s, 0);
    assert_int_equal(cfg.progress_interval_s, 5);
    assert_int_equal(cfg.n_pinned_images, 0);
    assert_string_equal(cfg.stream_address, "127.0.0.1");
    assert_int_equal(cfg.stream_port, 0);
    assert_int_equal(cfg.stream_idle_timeout_s, 14400);
    assert_int_equal(cfg.stream_creation_timeout_s, 30);
    assert_int_equal(cfg.stream_token_timeout_s, 60);
    assert_int_equal(cfg.stream_max_sessions, 1000);
    assert_null(cfg.stream_tls_cert);
    assert_null(cfg.stream_tls_key);
    assert_int_equal(cfg.n_registries, 0);
    assert_null(config_find_registry(&cfg, "docker.io"));
    assert_null(cfg.file);
    config_free(&cfg);
}

static void test_free_twice(void **state)
{
    config_free(NULL);
    struct config cfg;
    config_init_defaults(&cfg);
    config_free(&cfg);
    config_free(&cfg); /* emptied by the first call */
    assert_null(cfg.socket_path);
    assert_int_equal(cfg.n_runtimes, 0);

    /* The same with every kind of string set. */
    config_init_defaults(&cfg);
    set_ok(&cfg, "image", "import_dir", "/i");
    set_ok(&cfg, "image", "pinned_images", "a,b");
    set_ok(&cfg, "registry.r", "mirrors", "http://m");
    set_ok(&cfg, "registry.r", "password", "pw");
    config_free(&cfg);
    config_free(&cfg);
    assert_null(cfg.import_dir);
    assert_int_equal(cfg.n_registries, 0);
}

static void test_find_runtime(void **state)
{
    struct config cfg;
    config_init_defaults(&cfg);
    assert_string_equal(config_find_runtime(&cfg, NULL)->name, "crun");
    assert_string_equal(config_find_runtime(&cfg, "")->name, "crun");
    assert_string_equal(config_find_runtime(&cfg, "crun")->path, "/usr/bin/crun");
    assert_string_equal(config_find_runtime(&cfg, "runc")->path, "/usr/bin/runc");
    assert_null(config_find_runtime(&cfg, "kata"));
    assert_null(config_find_runtime(&cfg, "CRUN"));
    config_free(&cfg);
}

static void test_shipped_conf_equals_defaults(void **state)
{
    _cleanup_free_ char *path = shipped_conf_path();
    struct config cfg;
    config_init_defaults(&cfg);
    load_ok(&cfg, path);
    assert_defaults(&cfg);
    assert_string_equal(cfg.file, path);
    config_free(&cfg);
}

static const char full_conf[] = "# every key changed\n"
                                "[server]\n"
                                "socket = /tmp/tc/tinycri.sock\n"
                                "root_dir = /srv/tinycri\n"
                                "state_dir = /run/tc\n"
                                "log_level = debug\n"
                                "shutdown_timeout = 3600\n"
                                "max_recv_message_size = 4Mi\n"
                                "max_send_message_size = 2000K\n"
                                "max_concurrent_streams = 100000\n"
                                "max_connections = 1\n"
                                "\n"
                                "[runtime]\n"
                                "default_runtime = runc\n"
                                "cgroup_driver = systemd\n"
                                "\n"
                                "[runtime.crun]\n"
                                "path = /opt/crun/bin/crun\n"
                                "root = /run/tc/crun-root\n"
                                "[runtime.runc]\n"
                                "path = /usr/local/sbin/runc\n"
                                "[runtime.kata]\n"
                                "root = /run/kata\n"
                                "path = /usr/bin/kata-runtime\n"
                                "\n"
                                "[cni]\n"
                                "conf_dir = /etc/tinycri/net.d\n"
                                "bin_dirs = /usr/libexec/cni\n"
                                "plugin_timeout = 600\n"
                                "\n"
                                "[image]\n"
                                "import_dir = /srv/import\n"
                                "max_concurrent_downloads = 64\n"
                                "drop_compressed_layers = yes\n"
                                "pull_timeout = 86400\n"
                                "progress_interval = 3600\n"
                                "pinned_images = registry.k8s.io/pause:3.9, quay.io/a/b@sha256:00 "
                                ",busybox\n"
                                "\n"
                                "[stream]\n"
                                "address = ::1\n"
                                "port = 10010\n"
                                "idle_timeout = 604800\n"
                                "creation_timeout = 600\n"
                                "token_timeout = 1\n"
                                "max_sessions = 65536\n"
                                "tls_cert = /etc/tinycri/stream.crt\n"
                                "tls_key = /etc/tinycri/stream.key\n"
                                "\n"
                                "[registry.docker.io]\n"
                                "mirrors = https://mirror.example.com/v2,http://10.0.0.5:5000\n"
                                "insecure = on\n"
                                "ca_file = /etc/tinycri/certs/docker.pem\n"
                                "username = robot$ci\n"
                                "password = Pa55 w:o=rd#SECRET\n"
                                "[registry.localhost:5000]\n"
                                "insecure = true\n"
                                "[registry.[::1]:5000] ; IPv6\n"
                                "mirrors = http://[::1]:5001\n"
                                "username = \xc3\xa9l\xc3\xa8ve\n";

/* The password in full_conf; it must never show in errors or JSON. */
#define FULL_CONF_PASSWORD "Pa55 w:o=rd#SECRET"

static void assert_full_conf(const struct config *cfg)
{
    assert_string_equal(cfg->socket_path, "/tmp/tc/tinycri.sock");
    assert_string_equal(cfg->root_dir, "/srv/tinycri");
    assert_string_equal(cfg->state_dir, "/run/tc");
    assert_int_equal(cfg->log_level, LOG_LEVEL_DEBUG);
    assert_int_equal(cfg->shutdown_timeout_s, 3600);
    assert_int_equal(cfg->max_recv_msg_size, 4 * 1024 * 1024);
    assert_int_equal(cfg->max_send_msg_size, 2000000);
    assert_int_equal(cfg->max_streams, 100000);
    assert_int_equal(cfg->max_connections, 1);
    assert_string_equal(cfg->default_runtime, "runc");
    assert_int_equal(cfg->cgroup_driver, CGROUP_DRIVER_SYSTEMD);
    assert_int_equal(cfg->n_runtimes, 3);
    assert_string_equal(cfg->runtimes[0].name, "crun");
    assert_string_equal(cfg->runtimes[0].path, "/opt/crun/bin/crun");
    assert_string_equal(cfg->runtimes[0].root, "/run/tc/crun-root");
    assert_string_equal(cfg->runtimes[1].name, "runc");
    assert_string_equal(cfg->runtimes[1].path, "/usr/local/sbin/runc");
    assert_null(cfg->runtimes[1].root);
    assert_string_equal(cfg->runtimes[2].name, "kata");
    assert_string_equal(cfg->runtimes[2].path, "/usr/bin/kata-runtime");
    assert_string_equal(cfg->runtimes[2].root, "/run/kata");
    assert_string_equal(cfg->cni_conf_dir, "/etc/tinycri/net.d");
    assert_int_equal(cfg->n_cni_bin_dirs, 1);
    assert_string_equal(cfg->cni_bin_dirs[0], "/usr/libexec/cni");
    assert_int_equal(cfg->cni_timeout_s, 600);
    assert_string_equal(cfg->import_dir, "/srv/import");
    assert_int_equal(cfg->max_downloads, 64);
    assert_true(cfg->drop_layer_blobs);
    assert_int_equal(cfg->pull_timeout_s, 86400);
    assert_int_equal(cfg->progress_interval_s, 3600);
    assert_int_equal(cfg->n_pinned_images, 3);
    assert_string_equal(cfg->pinned_images[0], "registry.k8s.io/pause:3.9");
    assert_string_equal(cfg->pinned_images[1], "quay.io/a/b@sha256:00");
    assert_string_equal(cfg->pinned_images[2], "busybox");
    assert_string_equal(cfg->stream_address, "::1");
    assert_int_equal(cfg->stream_port, 10010);
    assert_int_equal(cfg->stream_idle_timeout_s, 604800);
    assert_int_equal(cfg->stream_creation_timeout_s, 600);
    assert_int_equal(cfg->stream_token_timeout_s, 1);
    assert_int_equal(cfg->stream_max_sessions, 65536);
    assert_string_equal(cfg->stream_tls_cert, "/etc/tinycri/stream.crt");
    assert_string_equal(cfg->stream_tls_key, "/etc/tinycri/stream.key");
    assert_int_equal(cfg->n_registries, 3);
    const struct config_registry *r = &cfg->registries[0];
    assert_string_equal(r->host, "docker.io");
    assert_int_equal(r->n_mirrors, 2);
    assert_string_equal(r->mirrors[0], "https://mirror.example.com/v2");
    assert_string_equal(r->mirrors[1], "http://10.0.0.5:5000");
    assert_true(r->insecure);
    assert_string_equal(r->ca_file, "/etc/tinycri/certs/docker.pem");
    assert_string_equal(r->username, "robot$ci");
    assert_string_equal(r->password, FULL_CONF_PASSWORD);
    r = &cfg->registries[1];
    assert_string_equal(r->host, "localhost:5000");
    assert_int_equal(r->n_mirrors, 0);
    assert_true(r->insecure);
    assert_null(r->ca_file);
    assert_null(r->username);
    assert_null(r->password);
    r = &cfg->registries[2];
    assert_string_equal(r->host, "[::1]:5000");
    assert_int_equal(r->n_mirrors, 1);
    assert_string_equal(r->mirrors[0], "http://[::1]:5001");
    assert_false(r->insecure);
    assert_string_equal(r->username, "\xc3\xa9l\xc3\xa8ve");
    assert_null(r->password);
}

static void test_full_file(void **state)
{
    _cleanup_free_ char *path = write_conf(full_conf);
    struct config cfg;
    config_init_defaults(&cfg);
    load_ok(&cfg, path);
    assert_full_conf(&cfg);
    assert_string_equal(cfg.file, path);
    assert_string_equal(config_find_runtime(&cfg, "")->name, "runc");
    assert_string_equal(config_find_runtime(&cfg, "kata")->root, "/run/kata");
    config_free(&cfg);
}

/* Indented keys, comments, CRLF line ends, ':' as separator, and a second file over the first. */
static void test_layout_and_layering(void **state)
{
    _cleanup_free_ char *first = write_conf("; top comment\r\n"
                                            "[server]\r\n"
                                            "    socket = /a.sock   ; trailing comment\r\n"
                                            "\tlog_level: warn\r\n"
                                            "\r\n"
                                            "  # indented comment\r\n"
                                            "    max_recv_message_size = 1024\r\n"
                                            "[cni]\r\n"
                                            "  bin_dirs = /a:/b:/c:/d:/e:/f:/g:/h\r\n"
                                            "  plugin_timeout = 1");
    _cleanup_free_ char *second = write_conf("[server]\n"
                                             "max_send_message_size = 1Ki\n"
                                             "max_recv_message_size = 256Mi\n"
                                             "[runtime.crun]\n"
                                             "root = /r\n");
    struct config cfg;
    config_init_defaults(&cfg);
    load_ok(&cfg, first);
    assert_string_equal(cfg.socket_path, "/a.sock");
    assert_int_equal(cfg.log_level, LOG_LEVEL_WARN);
    assert_int_equal(cfg.max_recv_msg_size, 1024);
    assert_int_equal(cfg.n_cni_bin_dirs, 8);
    assert_string_equal(cfg.cni_bin_dirs[7], "/h");
    assert_int_equal(cfg.cni_timeout_s, 1);
    assert_string_equal(cfg.file, first);

    load_ok(&cfg, second);
    assert_string_equal(cfg.socket_path, "/a.sock");
    assert_int_equal(cfg.max_send_msg_size, 1024);
    assert_int_equal(cfg.max_recv_msg_size, 256 * 1024 * 1024);
    assert_string_equal(cfg.runtimes[0].root, "/r");
    assert_string_equal(cfg.runtimes[0].path, "/usr/bin/crun");
    assert_string_equal(cfg.file, second);
    config_free(&cfg);
}

static void test_empty_file(void **state)
{
    _cleanup_free_ char *path = write_conf("");
    struct config cfg;
    config_init_defaults(&cfg);
    load_ok(&cfg, path);
    assert_defaults(&cfg);
    config_free(&cfg);
}

static void set_ok(struct config *cfg, const char *section, const char *key, const char *value)
{
    _cleanup_error_ struct error *err = NULL;
    if (config_set(cfg, section, key, value, &err) < 0)
        fail_msg("%s", err->msg);
}

static void expect_set_error(struct config *cfg, const char *section, const char *key,
                             const char *value, const char *want)
{
    _cleanup_free_ char *before = config_to_json(cfg);
    _cleanup_error_ struct error *err = NULL;
    assert_int_equal(config_set(cfg, section, key, value, &err), -1);
    assert_non_null(err);
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    assert_string_equal(err->msg, want);
    _cleanup_free_ char *after = config_to_json(cfg);
    assert_string_equal(before, after);
}

static void test_overrides_after_file(void **state)
{
    _cleanup_free_ char *path = write_conf(full_conf);
    struct config cfg;
    config_init_defaults(&cfg);
    load_ok(&cfg, path);

    set_ok(&cfg, "server", "socket", "/run/other.sock");
    set_ok(&cfg, "server", "log_level", "error");
    set_ok(&cfg, "server", "max_recv_message_size", "268435456");
    set_ok(&cfg, "server", "shutdown_timeout", "1");
    set_ok(&cfg, "runtime", "default_runtime", "kata");
    set_ok(&cfg, "runtime", "cgroup_driver", "cgroupfs");
    set_ok(&cfg, "runtime.youki", "path", "/usr/bin/youki");
    set_ok(&cfg, "runtime.crun", "path", "/usr/bin/crun");
    set_ok(&cfg, "cni", "bin_dirs", "/x:/y");
    set_ok(&cfg, "cni", "conf_dir", "/etc/cni/other.d");
    set_ok(&cfg, "image", "max_concurrent_downloads", "1");
    set_ok(&cfg, "image", "drop_compressed_layers", "off");
    set_ok(&cfg, "image", "pinned_images", "pause");
    set_ok(&cfg, "registry.docker.io", "mirrors", "https://m2.example.com");
    set_ok(&cfg, "registry.docker.io", "password", "other");
    set_ok(&cfg, "registry.ghcr.io", "username", "bot");

    assert_string_equal(cfg.socket_path, "/run/other.sock");
    assert_int_equal(cfg.log_level, LOG_LEVEL_ERROR);
    assert_int_equal(cfg.max_recv_msg_size, 268435456);
    assert_int_equal(cfg.shutdown_timeout_s, 1);
    assert_string_equal(config_find_runtime(&cfg, "")->name, "kata");
    assert_int_equal(cfg.cgroup_driver, CGROUP_DRIVER_CGROUPFS);
    assert_int_equal(cfg.n_runtimes, 4);
    assert_string_equal(config_find_runtime(&cfg, "youki")->path, "/usr/bin/youki");
    assert_null(config_find_runtime(&cfg, "youki")->root);
    assert_string_equal(cfg.runtimes[0].path, "/usr/bin/crun");
    assert_string_equal(cfg.runtimes[0].root, "/run/tc/crun-root");
    assert_int_equal(cfg.n_cni_bin_dirs, 2);
    assert_string_equal(cfg.cni_bin_dirs[0], "/x");
    assert_string_equal(cfg.cni_bin_dirs[1], "/y");
    assert_string_equal(cfg.cni_conf_dir, "/etc/cni/other.d");
    assert_int_equal(cfg.max_downloads, 1);
    assert_false(cfg.drop_layer_blobs);
    assert_int_equal(cfg.n_pinned_images, 1);
    assert_string_equal(cfg.pinned_images[0], "pause");
    const struct config_registry *r = config_find_registry(&cfg, "docker.io");
    assert_int_equal(r->n_mirrors, 1);
    assert_string_equal(r->mirrors[0], "https://m2.example.com");
    assert_string_equal(r->password, "other");
    assert_string_equal(r->username, "robot$ci");
    assert_int_equal(cfg.n_registries, 4);
    assert_string_equal(config_find_registry(&cfg, "ghcr.io")->username, "bot");
    assert_null(config_find_registry(&cfg, "ghcr.io")->password);
    /* Untouched keys keep the file's values, and the file is still recorded. */
    assert_string_equal(cfg.root_dir, "/srv/tinycri");
    assert_int_equal(cfg.max_connections, 1);
    assert_int_equal(cfg.pull_timeout_s, 86400);
    assert_true(config_find_registry(&cfg, "localhost:5000")->insecure);
    assert_string_equal(cfg.file, path);
    config_free(&cfg);
}

static void test_set_errors(void **state)
{
    struct config cfg;
    config_init_defaults(&cfg);
    expect_set_error(&cfg, "server", "socket", "run/x.sock",
                     "socket: \"run/x.sock\" is not an absolute path");
    expect_set_error(&cfg, "server", "sockets", "/x", "sockets: unknown key in [server]");
    expect_set_error(&cfg, "serve", "socket", "/x", "socket: [serve]: unknown section");
    expect_set_error(&cfg, "server", "max_connections", "0",
                     "max_connections: 0 is out of range (1..65536)");
    expect_set_error(&cfg, "server", "max_connections", " 5",
                     "max_connections: \" 5\" is not a whole number");
    expect_set_error(&cfg, "server", "max_connections", "0x10",
                     "max_connections: \"0x10\" is not a whole number");
    expect_set_error(&cfg, "server", "log_level", "INFO",
                     "log_level: \"INFO\" is not a log level (error, warn, info or debug)");
    expect_set_error(&cfg, "cni", "plugin_timeout", NULL, "plugin_timeout: missing value");
    expect_set_error(&cfg, "cni", "plugin_timeout", "", "plugin_timeout: missing value");
    expect_set_error(&cfg, "cni", "plugin_timeout", "601",
                     "plugin_timeout: 601 is out of range (1..600 seconds)");
    expect_set_error(&cfg, "runtime", "default_runtime", "gvisor",
                     "default_runtime: no runtime handler \"gvisor\" is configured "
                     "(have: crun, runc)");
    expect_set_error(&cfg, "runtime.gvisor", "root", "/run/gvisor",
                     "path: runtime handler gvisor has no path");
    expect_set_error(&cfg, "runtime.", "path", "/x",
                     "path: [runtime.]: \"\" is not a runtime handler name (1 to 32 of a-z, "
                     "0-9, _, -)");
    expect_set_error(&cfg, "server", "root_dir", "/var/\xff",
                     "root_dir: value has control characters or is not UTF-8");
    expect_set_error(&cfg, "server", "root_dir", "/var/\xc0\xaf",
                     "root_dir: value has control characters or is not UTF-8");
    expect_set_error(&cfg, "server", "root_dir", "/var/a\tb",
                     "root_dir: value has control characters or is not UTF-8");
    _cleanup_free_ char *huge = xmalloc(5000);
    memset(huge, 'a', 4999);
    huge[0] = '/';
    huge[4999] = '\0';
    expect_set_error(&cfg, "server", "root_dir", huge, "root_dir: value is longer than 4095 bytes");
    assert_int_equal(cfg.n_runtimes, 2);
    assert_defaults(&cfg);

    /* UTF-8 paths are fine. */
    set_ok(&cfg, "server", "root_dir", "/var/lib/tinycri-\xc3\xa9t\xc3\xa9");
    assert_string_equal(cfg.root_dir, "/var/lib/tinycri-\xc3\xa9t\xc3\xa9");
    config_free(&cfg);
}

struct bad_case {
    const char *text;
    const char *want; /* the message after "<file>:" */
};

static void test_bad_lines(void **state)
{
    static const struct bad_case cases[] = {
        {"[server]\nsocket = /a.sock\nsockett = /b\n", "3: sockett: unknown key in [server]"},
        {"# comment\n[sever]\nsocket = /a.sock\n", "2: [sever]: unknown section"},
        {"[server]\nsocket = /a.sock\n\n[sever]\n", "4: [sever]: unknown section"},
        {"[server] ; comment\n[cni] # text\n[runtime.kata ]\n",
         "3: [runtime.kata ]: \"kata \" is not a runtime handler name (1 to 32 of a-z, 0-9, _, -)"},
        {"[]\n", "1: []: unknown section"},
        {"socket = /a.sock\n", "1: socket: key outside of any [section]"},
        {"[server]\n= /a.sock\n", "2: missing key before '='"},
        {"[server]\nshutdown_timeout = 10s\n",
         "2: shutdown_timeout: \"10s\" is not a whole number"},
        {"[cni]\nplugin_timeout = -5\n", "2: plugin_timeout: \"-5\" is not a whole number"},
        {"[cni]\nplugin_timeout = +5\n", "2: plugin_timeout: \"+5\" is not a whole number"},
        {"[server]\nshutdown_timeout = 0\n",
         "2: shutdown_timeout: 0 is out of range (1..3600 seconds)"},
        {"[server]\nshutdown_timeout = 3601\n",
         "2: shutdown_timeout: 3601 is out of range (1..3600 seconds)"},
        {"[server]\nmax_connections = 99999999999999999999999\n",
         "2: max_connections: 99999999999999999999999 is out of range (1..65536)"},
        {"[server]\nmax_concurrent_streams = 100001\n",
         "2: max_concurrent_streams: 100001 is out of range (1..100000)"},
        {"[stream]\naddress = localhost\n",
         "2: address: \"localhost\" is not an IPv4 or IPv6 address"},
        {"[stream]\nport = 65536\n", "2: port: 65536 is out of range (0..65535)"},
        {"[stream]\ntoken_timeout = 0\n", "2: token_timeout: 0 is out of range (1..3600 seconds)"},
        {"[stream]\ntls_cert = relative.crt\n",
         "2: tls_cert: \"relative.crt\" is not an absolute path"},
        {"[stream]\ntls_cert = /a.crt\n", " tls_key: [stream] tls_cert and tls_key go together"},
        {"[server]\nmax_recv_message_size = 1023\n",
         "2: max_recv_message_size: 1023 is out of range (1024..268435456 bytes)"},
        {"[server]\n\nmax_send_message_size = 257Mi\n",
         "3: max_send_message_size: 257Mi is out of range (1024..268435456 bytes)"},
        {"[server]\nmax_send_message_size = 18446744073709551615Mi\n",
         "2: max_send_message_size: 18446744073709551615Mi is out of range (1024..268435456 "
         "bytes)"},
        {"[server]\nmax_recv_message_size = 16MB\n",
         "2: max_recv_message_size: \"16MB\" is not a size (a whole number of bytes, or with K, "
         "M, Ki or Mi)"},
        {"[server]\nmax_recv_message_size = 16 Mi\n",
         "2: max_recv_message_size: \"16 Mi\" is not a size (a whole number of bytes, or with "
         "K, M, Ki or Mi)"},
        {"[server]\nroot_dir = var/lib/tinycri\n",
         "2: root_dir: \"var/lib/tinycri\" is not an absolute path"},
        {"[server]\nstate_dir = ~/run\n", "2: state_dir: \"~/run\" is not an absolute path"},
        {"[server]\nsocket =\n", "2: socket: missing value"},
        {"[server]\nsocket = /a\x01z\n", "2: socket: value has control characters or is not UTF-8"},
        {"[server]\nsocket = /run/tinycri/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\n",
         "2: socket: path is longer than 107 bytes"},
        {"[server]\nlog_level = verbose\n",
         "2: log_level: \"verbose\" is not a log level (error, warn, info or debug)"},
        {"[runtime]\ncgroup_driver = systemdd\n",
         "2: cgroup_driver: \"systemdd\" is not a cgroup driver (cgroupfs or systemd)"},
        {"[server]\n\nsocket /x.sock\n",
         "3: socket /x.sock: expected \"key = value\", \"[section]\" or a comment"},
        {"[server\nsocket = /a.sock\n", "1: [server: section header without a closing ]"},
        {"[runtime]\ndefault_runtime = kata\ncgroup_driver = systemd\n",
         "2: default_runtime: no runtime handler \"kata\" is configured (have: crun, runc)"},
        {"[runtime]\ndefault_runtime = Kata\n",
         "2: default_runtime: \"Kata\" is not a runtime handler name (1 to 32 of a-z, 0-9, _, "
         "-)"},
        {"[runtime.Kata]\npath = /usr/bin/kata\n",
         "1: [runtime.Kata]: \"Kata\" is not a runtime handler name (1 to 32 of a-z, 0-9, _, -)"},
        {"[runtime.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\npath = /usr/bin/kata\n",
         "1: [runtime.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" "
         "is not a runtime handler name (1 to 32 of a-z, 0-9, _, -)"},
        {"[runtime]\n[runtime.]\n", "2: [runtime.]: \"\" is not a runtime handler name (1 to 32 "
                                    "of a-z, 0-9, _, -)"},
        {"[runtime.crun]\npath = crun\n", "2: path: \"crun\" is not an absolute path"},
        {"[runtime.crun]\nbinary = /usr/bin/crun\n", "2: binary: unknown key in [runtime.crun]"},
        {"[cni]\nplugin_timeout = 5\n\n[runtime.kata]\nroot = /run/kata\n",
         "5: path: runtime handler kata has no path"},
        {"[cni]\nconf_dir = net.d\n", "2: conf_dir: \"net.d\" is not an absolute path"},
        {"[cni]\nbin_dirs = /opt/cni/bin:cni\n", "2: bin_dirs: \"cni\" is not an absolute path"},
        {"[cni]\nbin_dirs = /a::/b\n", "2: bin_dirs: empty directory in \"/a::/b\""},
        {"[cni]\nbin_dirs = /a:\n", "2: bin_dirs: empty directory in \"/a:\""},
        {"[cni]\nbin_dirs = /a:/b:/c:/d:/e:/f:/g:/h:/i\n", "2: bin_dirs: more than 8 directories"},
        {"[image]\nimport_dir = import\n", "2: import_dir: \"import\" is not an absolute path"},
        {"[image]\nmax_concurrent_downloads = 0\n",
         "2: max_concurrent_downloads: 0 is out of range (1..64)"},
        {"[image]\nmax_concurrent_downloads = 65\n",
         "2: max_concurrent_downloads: 65 is out of range (1..64)"},
        {"[image]\ndrop_compressed_layers = TRUE\n",
         "2: drop_compressed_layers: \"TRUE\" is not a boolean (true, false, yes, no, on, off, 1 "
         "or 0)"},
        {"[image]\ndrop_compressed_layers = 2\n",
         "2: drop_compressed_layers: \"2\" is not a boolean (true, false, yes, no, on, off, 1 or "
         "0)"},
        {"[image]\ndrop_compressed_layers =\n", "2: drop_compressed_layers: missing value"},
        {"[image]\npull_timeout = 86401\n",
         "2: pull_timeout: 86401 is out of range (0..86400 seconds)"},
        {"[image]\npull_timeout = -1\n", "2: pull_timeout: \"-1\" is not a whole number"},
        {"[image]\nprogress_interval = 0\n",
         "2: progress_interval: 0 is out of range (1..3600 seconds)"},
        {"[image]\nprogress_interval = 3601\n",
         "2: progress_interval: 3601 is out of range (1..3600 seconds)"},
        {"[image]\npinned_images = a,,b\n", "2: pinned_images: item 2 is empty"},
        {"[image]\npinned_images = a, \n", "2: pinned_images: item 2 is empty"},
        {"[image]\npinned_images = ,a\n", "2: pinned_images: item 1 is empty"},
        {"[image]\npinned_images =\n", "2: pinned_images: missing value"},
        {"[image]\npinned_images = pause, busybox latest\n",
         "2: pinned_images: \"busybox latest\" is not an image reference (it has a blank)"},
        {"[image]\npinned = pause\n", "2: pinned: unknown key in [image]"},
        {"[images]\n", "1: [images]: unknown section"},
        {"[registry]\n", "1: [registry]: unknown section"},
        {"[registry.]\n",
         "1: [registry.]: \"\" is not a registry host (1 to 255 of a-z, A-Z, 0-9, ., -, :, [, ])"},
        {"[registry.docker.io/library]\n",
         "1: [registry.docker.io/library]: \"docker.io/library\" is not a registry host (1 to 255 "
         "of a-z, A-Z, 0-9, ., -, :, [, ])"},
        {"[registry.my_registry]\n",
         "1: [registry.my_registry]: \"my_registry\" is not a registry host (1 to 255 of a-z, "
         "A-Z, 0-9, ., -, :, [, ])"},
        {"[registry.docker.io]\ntoken = x\n", "2: token: unknown key in [registry.docker.io]"},
        {"[registry.docker.io]\nmirrors = mirror.example.com\n",
         "2: mirrors: \"mirror.example.com\" is not a mirror URL (http://<host>[/<path>] or "
         "https://...)"},
        {"[registry.docker.io]\nmirrors = https://a, ftp://b\n",
         "2: mirrors: \"ftp://b\" is not a mirror URL (http://<host>[/<path>] or https://...)"},
        {"[registry.docker.io]\nmirrors = https://\n",
         "2: mirrors: \"https://\" is not a mirror URL (http://<host>[/<path>] or https://...)"},
        {"[registry.docker.io]\nmirrors = http:///v2\n",
         "2: mirrors: \"http:///v2\" is not a mirror URL (http://<host>[/<path>] or https://...)"},
        {"[registry.docker.io]\nmirrors = http://a b\n",
         "2: mirrors: \"http://a b\" is not a mirror URL (http://<host>[/<path>] or https://...)"},
        {"[registry.docker.io]\nmirrors = http://a,http://b,http://c,http://d,http://e\n",
         "2: mirrors: more than 4 mirrors"},
        {"[registry.docker.io]\nmirrors = http://a,\n", "2: mirrors: item 2 is empty"},
        {"[registry.docker.io]\ninsecure = maybe\n",
         "2: insecure: \"maybe\" is not a boolean (true, false, yes, no, on, off, 1 or 0)"},
        {"[registry.docker.io]\nca_file = certs/ca.pem\n",
         "2: ca_file: \"certs/ca.pem\" is not an absolute path"},
        {"[registry.docker.io]\nusername =\n", "2: username: missing value"},
        {"[registry.docker.io]\npassword =\n", "2: password: missing value"},
        /* The first bad line is reported, whichever kind it is. */
        {"[server]\nsocket = rel\nbogus line\n", "2: socket: \"rel\" is not an absolute path"},
        {"[server]\nbogus line\nsocket = rel\n",
         "2: bogus line: expected \"key = value\", \"[section]\" or a comment"},
        {"[server]\nlog_level = loud\n[runtime]\ndefault_runtime = kata\n",
         "2: log_level: \"loud\" is not a log level (error, warn, info or debug)"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        expect_load_error(cases[i].text, cases[i].want);
}

static void test_bad_bytes(void **state)
{
    static const char nul[] = "[server]\nsocket = /a\0b\nlog_level = debug\n";
    expect_load_error_n(nul, sizeof(nul) - 1, "2: socket = /a?b: line has a NUL byte");

    /* A line too long for inih's buffer is refused, not split into two lines. */
    _cleanup_free_ char *text = xmalloc(600);
    strcpy(text, "[server]\nsocket = /");
    memset(text + strlen(text), 'x', 400);
    strcpy(text + 19 + 400, "\nbogus\n");
    _cleanup_free_ char *path = write_conf(text);
    struct config cfg;
    config_init_defaults(&cfg);
    _cleanup_error_ struct error *err = NULL;
    assert_int_equal(config_load_file(&cfg, path, &err), -1);
    _cleanup_free_ char *want =
        xasprintf("%s:2: socket = /xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...: line is longer than ", path);
    assert_non_null(err);
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    assert_true(str_has_prefix(err->msg, want));
    assert_true(str_has_suffix(err->msg, " bytes"));
    assert_defaults(&cfg);
    config_free(&cfg);

    /* A syntax error before the long line is reported first. */
    memcpy(text, "bogus   ", 8);
    _cleanup_free_ char *path2 = write_conf(text);
    config_init_defaults(&cfg);
    error_clear(&err);
    assert_int_equal(config_load_file(&cfg, path2, &err), -1);
    _cleanup_free_ char *want2 =
        xasprintf("%s:1: bogus: expected \"key = value\", \"[section]\" or a comment", path2);
    assert_string_equal(err->msg, want2);
    config_free(&cfg);
}

static void test_extra_handler(void **state)
{
    _cleanup_free_ char *path = write_conf("[runtime]\n"
                                           "default_runtime = kata\n"
                                           "[runtime.kata]\n"
                                           "path = /usr/bin/kata-runtime\n"
                                           "[runtime.kata]\n"
                                           "root = /run/kata\n"
                                           "[runtime.my_runtime-2]\n"
                                           "path = /opt/bin/rt2\n");
    struct config cfg;
    config_init_defaults(&cfg);
    load_ok(&cfg, path);
    assert_int_equal(cfg.n_runtimes, 4);
    const struct config_runtime *rt = config_find_runtime(&cfg, "");
    assert_non_null(rt);
    assert_string_equal(rt->name, "kata");
    assert_string_equal(rt->path, "/usr/bin/kata-runtime");
    assert_string_equal(rt->root, "/run/kata");
    assert_string_equal(config_find_runtime(&cfg, "my_runtime-2")->path, "/opt/bin/rt2");
    assert_string_equal(config_find_runtime(&cfg, "crun")->path, "/usr/bin/crun");
    config_free(&cfg);
}

static void test_too_many_handlers(void **state)
{
    /* crun and runc are built in, so six more fit. */
    struct buf b;
    buf_init(&b, 4096);
    for (int i = 1; i <= CONFIG_MAX_RUNTIMES - 2; i++) {
        char sec[64];
        int n = snprintf(sec, sizeof(sec), "[runtime.h%d]\npath = /usr/bin/h%d\n", i, i);
        assert_int_equal(buf_append(&b, sec, (size_t)n), 0);
    }
    _cleanup_free_ char *ok_text = buf_take_str(&b, NULL);
    _cleanup_free_ char *ok_path = write_conf(ok_text);
    struct config cfg;
    config_init_defaults(&cfg);
    load_ok(&cfg, ok_path);
    assert_int_equal(cfg.n_runtimes, CONFIG_MAX_RUNTIMES);
    assert_string_equal(cfg.runtimes[CONFIG_MAX_RUNTIMES - 1].name, "h6");
    /* A full table still takes keys for the handlers it has. */
    set_ok(&cfg, "runtime.h6", "root", "/run/h6");
    _cleanup_error_ struct error *err = NULL;
    assert_int_equal(config_set(&cfg, "runtime.h7", "path", "/usr/bin/h7", &err), -1);
    assert_string_equal(err->msg, "path: [runtime.h7]: more than 8 runtime handlers");
    config_free(&cfg);

    /* Each handler takes two lines, so the seventh extra one has its path on line 14. */
    _cleanup_free_ char *bad_text = xasprintf("%s[runtime.h7]\npath = /usr/bin/h7\n", ok_text);
    expect_load_error(bad_text, "14: path: [runtime.h7]: more than 8 runtime handlers");
}

static void test_missing_file(void **state)
{
    _cleanup_free_ char *path = xasprintf("%s/no-such.conf", tmp_dir);
    struct config cfg;
    config_init_defaults(&cfg);
    _cleanup_error_ struct error *err = NULL;
    assert_int_equal(config_load_file(&cfg, path, &err), -1);
    assert_non_null(err);
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(err->msg, path));
    assert_non_null(strstr(err->msg, "No such file or directory"));
    assert_defaults(&cfg);
    assert_null(cfg.file);

    /* A directory is not a configuration file either. */
    error_clear(&err);
    assert_int_equal(config_load_file(&cfg, tmp_dir, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(err->msg, "not a regular file"));
    config_free(&cfg);
}

/* The most list items and registries, and one more. */
static void test_list_and_registry_caps(void **state)
{
    struct buf b;
    buf_init(&b, 4096);
    for (int i = 0; i < CONFIG_MAX_PINNED; i++) {
        char item[16];
        int n = snprintf(item, sizeof(item), "%si%d", i > 0 ? "," : "", i);
        assert_int_equal(buf_append(&b, item, (size_t)n), 0);
    }
    _cleanup_free_ char *pinned = buf_take_str(&b, NULL);
    struct config cfg;
    config_init_defaults(&cfg);
    set_ok(&cfg, "image", "pinned_images", pinned);
    assert_int_equal(cfg.n_pinned_images, CONFIG_MAX_PINNED);
    assert_string_equal(cfg.pinned_images[CONFIG_MAX_PINNED - 1], "i15");
    _cleanup_free_ char *too_many = xasprintf("%s,i16", pinned);
    expect_set_error(&cfg, "image", "pinned_images", too_many,
                     "pinned_images: more than 16 images");
    _cleanup_free_ char *text = xasprintf("[image]\npinned_images = %s,x\n", pinned);
    expect_load_error(text, "2: pinned_images: more than 16 images");

    set_ok(&cfg, "registry.r", "mirrors", "http://a, http://b ,http://c,https://d");
    assert_int_equal(config_find_registry(&cfg, "r")->n_mirrors, CONFIG_MAX_MIRRORS);
    assert_string_equal(config_find_registry(&cfg, "r")->mirrors[1], "http://b");
    expect_set_error(&cfg, "registry.r", "mirrors", "http://a,http://b,http://c,http://d,http://e",
                     "mirrors: more than 4 mirrors");
    config_free(&cfg);

    /* Sixteen registries fit; a key for a seventeenth fails on its line. */
    buf_init(&b, 4096);
    for (int i = 1; i <= CONFIG_MAX_REGISTRIES; i++) {
        char sec[64];
        int n = snprintf(sec, sizeof(sec), "[registry.r%d.example.com]\ninsecure = yes\n", i);
        assert_int_equal(buf_append(&b, sec, (size_t)n), 0);
    }
    _cleanup_free_ char *ok_text = buf_take_str(&b, NULL);
    _cleanup_free_ char *ok_path = write_conf(ok_text);
    config_init_defaults(&cfg);
    load_ok(&cfg, ok_path);
    assert_int_equal(cfg.n_registries, CONFIG_MAX_REGISTRIES);
    assert_true(config_find_registry(&cfg, "r16.example.com")->insecure);
    /* A full table still takes keys for the hosts it has. */
    set_ok(&cfg, "registry.r16.example.com", "password", "x");
    expect_set_error(&cfg, "registry.r17.example.com", "password", "hunter2",
                     "password: [registry.r17.example.com]: more than 16 registries");
    config_free(&cfg);
    /* A section without keys adds nothing, so it does not count. */
    _cleanup_free_ char *bad_text =
        xasprintf("%s[registry.empty]\n[registry.r17]\nusername = u\n", ok_text);
    expect_load_error(bad_text, "35: username: [registry.r17]: more than 16 registries");
}

static void test_booleans(void **state)
{
    static const struct {
        const char *word;
        bool value;
    } words[] = {{"true", true}, {"false", false}, {"yes", true}, {"no", false},
                 {"on", true},   {"off", false},   {"1", true},   {"0", false}};
    struct config cfg;
    config_init_defaults(&cfg);
    for (size_t i = 0; i < ARRAY_SIZE(words); i++) {
        set_ok(&cfg, "image", "drop_compressed_layers", words[i].word);
        assert_int_equal(cfg.drop_layer_blobs, words[i].value);
        set_ok(&cfg, "registry.docker.io", "insecure", words[i].word);
        assert_int_equal(config_find_registry(&cfg, "docker.io")->insecure, words[i].value);
    }
    /* From a file, with the blanks inih strips. */
    _cleanup_free_ char *path = write_conf("[image]\ndrop_compressed_layers =   on   \n");
    load_ok(&cfg, path);
    assert_true(cfg.drop_layer_blobs);
    expect_set_error(&cfg, "image", "drop_compressed_layers", "enabled",
                     "drop_compressed_layers: \"enabled\" is not a boolean (true, false, yes, "
                     "no, on, off, 1 or 0)");
    config_free(&cfg);
}

static void test_import_dir(void **state)
{
    struct config cfg;
    config_init_defaults(&cfg);
    _cleanup_free_ char *def = config_import_dir(&cfg);
    assert_string_equal(def, "/var/lib/tinycri/import");
    /* Unset, it follows root_dir, whichever is set first. */
    set_ok(&cfg, "server", "root_dir", "/srv/tc");
    _cleanup_free_ char *moved = config_import_dir(&cfg);
    assert_string_equal(moved, "/srv/tc/import");
    assert_null(cfg.import_dir);
    set_ok(&cfg, "image", "import_dir", "/mnt/images");
    set_ok(&cfg, "server", "root_dir", "/srv/other");
    _cleanup_free_ char *set = config_import_dir(&cfg);
    assert_string_equal(set, "/mnt/images");
    expect_set_error(&cfg, "image", "import_dir", "images",
                     "import_dir: \"images\" is not an absolute path");
    config_free(&cfg);
}

static void test_registry_sections(void **state)
{
    /* A host longer than inih's 49-byte section name, and brackets inside the header. */
    static const char long_host[] = "registry-with-a-long-name.build.example.internal:5000";
    _cleanup_free_ char *text = xasprintf("[registry.%s]\n"
                                          "mirrors = https://m.example.com\n"
                                          "[registry.[::1]:5000]\n"
                                          "insecure = 1\n"
                                          "[registry.127.0.0.1:5001] # comment\n"
                                          "username = u\n"
                                          "[registry.%s]\n"
                                          "ca_file = /ca.pem\n"
                                          "[registry.Docker.io]\n"
                                          "insecure = yes\n"
                                          "[registry.docker.io]\n"
                                          "username = d\n",
                                          long_host, long_host);
    _cleanup_free_ char *path = write_conf(text);
    struct config cfg;
    config_init_defaults(&cfg);
    load_ok(&cfg, path);
    assert_int_equal(cfg.n_registries, 5);
    const struct config_registry *r = config_find_registry(&cfg, long_host);
    assert_non_null(r);
    assert_string_equal(r->host, long_host);
    assert_string_equal(r->mirrors[0], "https://m.example.com");
    assert_string_equal(r->ca_file, "/ca.pem"); /* a second section for a host adds to it */
    assert_true(config_find_registry(&cfg, "[::1]:5000")->insecure);
    assert_string_equal(config_find_registry(&cfg, "127.0.0.1:5001")->username, "u");

    /* Exact matches only. */
    assert_string_equal(config_find_registry(&cfg, "docker.io")->username, "d");
    assert_true(config_find_registry(&cfg, "Docker.io")->insecure);
    assert_null(config_find_registry(&cfg, "Docker.io")->username);
    assert_null(config_find_registry(&cfg, "registry-1.docker.io"));
    assert_null(config_find_registry(&cfg, "docker.io:443"));
    assert_null(config_find_registry(&cfg, "[::1]"));
    assert_null(config_find_registry(&cfg, "127.0.0.1"));
    assert_null(config_find_registry(&cfg, ""));
    assert_null(config_find_registry(&cfg, NULL));

    /* A second file adds to a host's settings; a list replaces the old one. */
    _cleanup_free_ char *second = write_conf("[registry.docker.io]\n"
                                             "mirrors = http://a\n"
                                             "[registry.docker.io]\n"
                                             "mirrors = http://b, http://c\n"
                                             "password = p\n");
    load_ok(&cfg, second);
    assert_int_equal(cfg.n_registries, 5);
    r = config_find_registry(&cfg, "docker.io");
    assert_string_equal(r->username, "d");
    assert_string_equal(r->password, "p");
    assert_int_equal(r->n_mirrors, 2);
    assert_string_equal(r->mirrors[0], "http://b");
    assert_string_equal(r->mirrors[1], "http://c");

    /* A bad file leaves every registry as it was. */
    struct config before;
    config_init_defaults(&before);
    load_ok(&before, path);
    load_ok(&before, second);
    _cleanup_free_ char *bad = write_conf("[registry.docker.io]\n"
                                          "password = q\n"
                                          "mirrors = http://x\n"
                                          "[registry.new.example.com]\n"
                                          "username = n\n"
                                          "insecure = sometimes\n");
    _cleanup_error_ struct error *err = NULL;
    assert_int_equal(config_load_file(&cfg, bad, &err), -1);
    assert_config_equal(&cfg, &before);
    assert_string_equal(cfg.file, second);
    config_free(&before);

    /* The longest host; one more byte is refused. */
    char host[257];
    memset(host, 'h', 256);
    host[256] = '\0';
    _cleanup_free_ char *too_long = xasprintf("registry.%s", host);
    _cleanup_free_ char *want = xasprintf("insecure: [%s]: \"%s\" is not a registry host (1 to "
                                          "255 of a-z, A-Z, 0-9, ., -, :, [, ])",
                                          too_long, host);
    expect_set_error(&cfg, too_long, "insecure", "yes", want);
    host[255] = '\0';
    _cleanup_free_ char *longest = xasprintf("registry.%s", host);
    set_ok(&cfg, longest, "insecure", "yes");
    assert_true(config_find_registry(&cfg, host)->insecure);
    config_free(&cfg);
}

/* Assert that loading text fails with "<file>:<want>" and that the message does not hold secret. */
static void expect_secret_hidden(const char *text, size_t len, const char *want, const char *secret)
{
    _cleanup_free_ char *path = write_conf_n(text, len);
    struct config cfg;
    config_init_defaults(&cfg);
    _cleanup_error_ struct error *err = NULL;
    assert_int_equal(config_load_file(&cfg, path, &err), -1);
    _cleanup_free_ char *msg = xasprintf("%s:%s", path, want);
    assert_string_equal(err->msg, msg);
    assert_null(strstr(err->msg, secret));
    config_free(&cfg);
}

static void test_password_never_shown(void **state)
{
    static const struct bad_case cases[] = {
        {"[registry.r]\npassword = hunter2\x01\n",
         "2: password: value has control characters or is not UTF-8"},
        {"[registry.r]\npassword = hunter2\xff\n",
         "2: password: value has control characters or is not UTF-8"},
        {"[registry.r]\npassword hunter2\n",
         "2: password: expected \"key = value\", \"[section]\" or a comment"},
        /* A line that is no "key = value" may be a piece of a password. */
        {"[registry.r]\nusername = u\nhunter2\n[server]\nlog_level = debug\n",
         "3: (line not shown): expected \"key = value\", \"[section]\" or a comment"},
        {"[registry.r]\n[server\nhunter2\n", "2: [server: section header without a closing ]"},
        {"[registry.r]\npasswd = hunter2\n", "2: passwd: unknown key in [registry.r]"},
        {"[registry.r]\nmirrors = https://robot:hunter2@mirror.example.com/v2\n",
         "2: mirrors: mirror 1 has credentials in its URL; use username and password"},
        {"[registry.r]\nmirrors = http://a, robot:hunter2@b\n",
         "2: mirrors: mirror 2 has credentials in its URL; use username and password"},
        {"[registry.r]\nmirrors = http://a,,https://robot:hunter2@b\n",
         "2: mirrors: item 2 is empty"},
        {"[registry.r]\npassword = hunter2\n[registry.s]\npassword = hunter2\nca_file = ca\n",
         "5: ca_file: \"ca\" is not an absolute path"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        expect_secret_hidden(cases[i].text, strlen(cases[i].text), cases[i].want, "hunter2");

    static const char nul[] = "[registry.r]\npassword = hunter2\0x\n";
    expect_secret_hidden(nul, sizeof(nul) - 1, "2: password: line has a NUL byte", "hunter2");
    static const char nul2[] = "[registry.r]\nhunter2\0x\n";
    expect_secret_hidden(nul2, sizeof(nul2) - 1, "2: (line not shown): line has a NUL byte",
                         "hunter2");
    _cleanup_free_ char *long_line = xmalloc(400);
    strcpy(long_line, "[registry.r]\n  password = hunter2");
    size_t head = strlen(long_line);
    memset(long_line + head, 'x', 300);
    strcpy(long_line + head + 300, "\n");
    expect_secret_hidden(long_line, strlen(long_line), "2: password: line is longer than 199 bytes",
                         "hunter2");
    /* Elsewhere, bad lines are quoted as before. */
    expect_load_error("[server]\nhunter2\n",
                      "2: hunter2: expected \"key = value\", \"[section]\" or a comment");

    /* Through config_set. */
    struct config cfg;
    config_init_defaults(&cfg);
    expect_set_error(&cfg, "registry.r", "password", "hunter2\t",
                     "password: value has control characters or is not UTF-8");
    _cleanup_free_ char *huge = xmalloc(5000);
    memset(huge, 'p', 4999);
    huge[4999] = '\0';
    expect_set_error(&cfg, "registry.r", "password", huge,
                     "password: value is longer than 4095 bytes");
    assert_int_equal(cfg.n_registries, 0);
    config_free(&cfg);

    /* Nor in the JSON, which only says whether there is one. */
    _cleanup_free_ char *path = write_conf(full_conf);
    config_init_defaults(&cfg);
    load_ok(&cfg, path);
    _cleanup_free_ char *json = config_to_json(&cfg);
    assert_null(strstr(json, FULL_CONF_PASSWORD));
    assert_null(strstr(json, "SECRET"));
    assert_null(strstr(json, "\"password\""));
    config_free(&cfg);
}

/* A UTF-8 byte order mark before the first line does not hide the first section. */
static void test_bom(void **state)
{
    _cleanup_free_ char *path = write_conf("\xef\xbb\xbf[image]\nmax_concurrent_downloads = 7\n");
    struct config cfg;
    config_init_defaults(&cfg);
    load_ok(&cfg, path);
    assert_int_equal(cfg.max_downloads, 7);
    config_free(&cfg);
    expect_load_error("\xef\xbb\xbf[imag]\n", "1: [imag]: unknown section");
}

static json_t *get_path(json_t *root, const char *a, const char *b)
{
    json_t *v = json_object_get(json_object_get(root, a), b);
    assert_non_null(v);
    return v;
}

static void test_to_json(void **state)
{
    _cleanup_free_ char *path = write_conf(full_conf);
    struct config cfg;
    config_init_defaults(&cfg);
    load_ok(&cfg, path);
    _cleanup_free_ char *text = config_to_json(&cfg);
    assert_non_null(text);
    /* Compact, with sorted keys. */
    assert_true(str_has_prefix(text, "{\"cni\":{\"bin_dirs\":[\"/usr/libexec/cni\"],"));

    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "config_file")), path);
    assert_string_equal(json_string_value(get_path(root, "server", "socket")),
                        "/tmp/tc/tinycri.sock");
    assert_string_equal(json_string_value(get_path(root, "server", "root_dir")), "/srv/tinycri");
    assert_string_equal(json_string_value(get_path(root, "server", "state_dir")), "/run/tc");
    assert_string_equal(json_string_value(get_path(root, "server", "log_level")), "debug");
    assert_int_equal(json_integer_value(get_path(root, "server", "shutdown_timeout")), 3600);
    assert_int_equal(json_integer_value(get_path(root, "server", "max_recv_message_size")),
                     4 * 1024 * 1024);
    assert_int_equal(json_integer_value(get_path(root, "server", "max_send_message_size")),
                     2000000);
    assert_int_equal(json_integer_value(get_path(root, "server", "max_concurrent_streams")),
                     100000);
    assert_int_equal(json_integer_value(get_path(root, "server", "max_connections")), 1);
    assert_string_equal(json_string_value(get_path(root, "runtime", "default_runtime")), "runc");
    assert_string_equal(json_string_value(get_path(root, "runtime", "cgroup_driver")), "systemd");
    json_t *handlers = get_path(root, "runtime", "handlers");
    assert_int_equal(json_object_size(handlers), 3);
    json_t *crun = json_object_get(handlers, "crun");
    assert_string_equal(json_string_value(json_object_get(crun, "path")), "/opt/crun/bin/crun");
    assert_string_equal(json_string_value(json_object_get(crun, "root")), "/run/tc/crun-root");
    /* An unset root shows the one in effect. */
    json_t *runc = json_object_get(handlers, "runc");
    assert_string_equal(json_string_value(json_object_get(runc, "root")), "/run/tc/runtime/runc");
    json_t *kata = json_object_get(handlers, "kata");
    assert_string_equal(json_string_value(json_object_get(kata, "path")), "/usr/bin/kata-runtime");
    assert_string_equal(json_string_value(get_path(root, "cni", "conf_dir")), "/etc/tinycri/net.d");
    json_t *bin_dirs = get_path(root, "cni", "bin_dirs");
    assert_int_equal(json_array_size(bin_dirs), 1);
    assert_string_equal(json_string_value(json_array_get(bin_dirs, 0)), "/usr/libexec/cni");
    assert_int_equal(json_integer_value(get_path(root, "cni", "plugin_timeout")), 600);

    json_t *image = json_object_get(root, "image");
    assert_int_equal(json_object_size(image), 6);
    assert_string_equal(json_string_value(get_path(root, "image", "import_dir")), "/srv/import");
    assert_int_equal(json_integer_value(get_path(root, "image", "max_concurrent_downloads")), 64);
    assert_true(json_is_true(get_path(root, "image", "drop_compressed_layers")));
    assert_int_equal(json_integer_value(get_path(root, "image", "pull_timeout")), 86400);
    assert_int_equal(json_integer_value(get_path(root, "image", "progress_interval")), 3600);
    json_t *pinned = get_path(root, "image", "pinned_images");
    assert_int_equal(json_array_size(pinned), 3);
    assert_string_equal(json_string_value(json_array_get(pinned, 1)), "quay.io/a/b@sha256:00");

    json_t *registries = json_object_get(root, "registries");
    assert_int_equal(json_object_size(registries), 3);
    json_t *docker = json_object_get(registries, "docker.io");
    assert_int_equal(json_object_size(docker), 5);
    json_t *mirrors = json_object_get(docker, "mirrors");
    assert_int_equal(json_array_size(mirrors), 2);
    assert_string_equal(json_string_value(json_array_get(mirrors, 0)),
                        "https://mirror.example.com/v2");
    assert_true(json_is_true(json_object_get(docker, "insecure")));
    assert_string_equal(json_string_value(json_object_get(docker, "ca_file")),
                        "/etc/tinycri/certs/docker.pem");
    assert_string_equal(json_string_value(json_object_get(docker, "username")), "robot$ci");
    assert_true(json_is_true(json_object_get(docker, "has_password")));
    json_t *local = json_object_get(registries, "localhost:5000");
    assert_int_equal(json_array_size(json_object_get(local, "mirrors")), 0);
    assert_true(json_is_null(json_object_get(local, "ca_file")));
    assert_true(json_is_null(json_object_get(local, "username")));
    assert_true(json_is_false(json_object_get(local, "has_password")));
    json_t *v6 = json_object_get(registries, "[::1]:5000");
    assert_non_null(v6);
    assert_string_equal(json_string_value(json_object_get(v6, "username")), "\xc3\xa9l\xc3\xa8ve");
    json_decref(root);
    config_free(&cfg);

    /* The defaults: no file. */
    config_init_defaults(&cfg);
    _cleanup_free_ char *def_text = config_to_json(&cfg);
    root = json_loads(def_text, 0, &jerr);
    assert_non_null(root);
    assert_true(json_is_null(json_object_get(root, "config_file")));
    assert_int_equal(json_array_size(get_path(root, "cni", "bin_dirs")), 2);
    assert_string_equal(json_string_value(get_path(root, "server", "log_level")), "info");
    handlers = get_path(root, "runtime", "handlers");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(handlers, "crun"), "root")),
        "/run/tinycri/runtime/crun");
    /* The import directory in effect, and empty lists and objects rather than nulls. */
    assert_string_equal(json_string_value(get_path(root, "image", "import_dir")),
                        "/var/lib/tinycri/import");
    assert_int_equal(json_integer_value(get_path(root, "image", "max_concurrent_downloads")), 3);
    assert_true(json_is_false(get_path(root, "image", "drop_compressed_layers")));
    assert_int_equal(json_integer_value(get_path(root, "image", "pull_timeout")), 0);
    assert_int_equal(json_integer_value(get_path(root, "image", "progress_interval")), 5);
    assert_true(json_is_array(get_path(root, "image", "pinned_images")));
    assert_int_equal(json_array_size(get_path(root, "image", "pinned_images")), 0);
    assert_true(json_is_object(json_object_get(root, "registries")));
    assert_int_equal(json_object_size(json_object_get(root, "registries")), 0);
    json_decref(root);
    config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_free_twice),
        cmocka_unit_test(test_find_runtime),
        cmocka_unit_test(test_shipped_conf_equals_defaults),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_layout_and_layering),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_overrides_after_file),
        cmocka_unit_test(test_set_errors),
        cmocka_unit_test(test_bad_lines),
        cmocka_unit_test(test_bad_bytes),
        cmocka_unit_test(test_extra_handler),
        cmocka_unit_test(test_too_many_handlers),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_list_and_registry_caps),
        cmocka_unit_test(test_booleans),
        cmocka_unit_test(test_import_dir),
        cmocka_unit_test(test_registry_sections),
        cmocka_unit_test(test_password_never_shown),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_to_json),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
