/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's configuration: built-in defaults, an INI file read with
 * libinih, and command-line overrides. Every key has a default, so tinycrid
 * runs with no file. etc/tinycri.conf documents each key.
 */
#ifndef TINYCRI_CORE_CONFIG_H
#define TINYCRI_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"

struct error;

enum cgroup_driver {
    CGROUP_DRIVER_CGROUPFS = 0,
    CGROUP_DRIVER_SYSTEMD = 1,
};

/* One OCI runtime handler ([runtime.<name>] section). */
struct config_runtime {
    char *name; /* handler name as kubelet's runtime_handler says it */
    char *path; /* the OCI runtime binary */
    char *root; /* --root for the runtime's own state; NULL: <state_dir>/runtime/<name> */
};

#define CONFIG_MAX_RUNTIMES 8
#define CONFIG_MAX_DIRS 8
#define CONFIG_MAX_REGISTRIES 16
#define CONFIG_MAX_MIRRORS 4
#define CONFIG_MAX_PINNED 16

/* Settings for one registry host ([registry.<host>] section, e.g. [registry.docker.io]). */
struct config_registry {
    char *host;                        /* "docker.io", "localhost:5000" */
    char *mirrors[CONFIG_MAX_MIRRORS]; /* mirrors: comma-separated base URLs, tried in order */
    size_t n_mirrors;
    bool insecure;  /* insecure: plain HTTP allowed (and TLS unverified) */
    char *ca_file;  /* ca_file: extra CA bundle (PEM) for this host */
    char *username; /* username / password: Basic or token credentials */
    char *password;
};

struct config {
    /* [server] */
    char *socket_path;            /* socket: /run/tinycri/tinycri.sock */
    char *root_dir;               /* root_dir: /var/lib/tinycri */
    char *state_dir;              /* state_dir: /run/tinycri */
    enum log_level log_level;     /* log_level: info */
    uint32_t shutdown_timeout_s;  /* shutdown_timeout: 10 */
    uint32_t max_recv_msg_size;   /* max_recv_message_size: 16 MiB */
    uint32_t max_send_msg_size;   /* max_send_message_size: 16 MiB */
    uint32_t max_streams;         /* max_concurrent_streams: 1000 per connection */
    uint32_t max_connections;     /* max_connections: 256 */
    uint32_t handshake_timeout_s; /* handshake_timeout: 10 */
    uint32_t keepalive_time_s;    /* keepalive_time: 120 */
    uint32_t keepalive_timeout_s; /* keepalive_timeout: 20 */

    /* [runtime] */
    char *default_runtime;                               /* default_runtime: crun */
    enum cgroup_driver cgroup_driver;                    /* cgroup_driver: cgroupfs */
    struct config_runtime runtimes[CONFIG_MAX_RUNTIMES]; /* crun and runc built in */
    size_t n_runtimes;

    /* [cni] */
    char *cni_conf_dir;                  /* conf_dir: /etc/cni/net.d */
    char *cni_bin_dirs[CONFIG_MAX_DIRS]; /* bin_dirs: /opt/cni/bin:/usr/lib/cni */
    size_t n_cni_bin_dirs;
    uint32_t cni_timeout_s; /* plugin_timeout: 30 */

    /* [image] */
    char *import_dir;        /* import_dir: NULL = <root_dir>/import; see config_import_dir() */
    uint32_t max_downloads;  /* max_concurrent_downloads: 3 */
    bool drop_layer_blobs;   /* drop_compressed_layers: false */
    uint32_t pull_timeout_s; /* pull_timeout: 0 (none; the client's deadline applies) */
    uint32_t progress_interval_s;           /* progress_interval: 5 */
    char *pinned_images[CONFIG_MAX_PINNED]; /* pinned_images: comma-separated references */
    size_t n_pinned_images;

    /* [stream] */
    char *stream_address;               /* address: 127.0.0.1 (an IPv4 or IPv6 literal) */
    uint32_t stream_port;               /* port: 0 (any free port) */
    uint32_t stream_idle_timeout_s;     /* idle_timeout: 14400 (4h) */
    uint32_t stream_creation_timeout_s; /* creation_timeout: 30 */
    uint32_t stream_token_timeout_s;    /* token_timeout: 60 */
    uint32_t stream_max_sessions;       /* max_sessions: 1000 */
    char *stream_tls_cert;              /* tls_cert: none */
    char *stream_tls_key;               /* tls_key: none */

    /* [registry.<host>] */
    struct config_registry registries[CONFIG_MAX_REGISTRIES];
    size_t n_registries;

    /* Set at run time, not from the file: the file path that was loaded (NULL if none). */
    char *file;
};

/* Fill cfg with the built-in defaults. Free with config_free(). */
void config_init_defaults(struct config *cfg);

/*
 * Read an INI file over the values already in cfg. A missing file, a syntax
 * error, an unknown section or key, or a bad value fails with
 * INVALID_ARGUMENT and a message "<file>:<line>: <key>: <reason>".
 */
int config_load_file(struct config *cfg, const char *path, struct error **err);

/* Set one key as the file would ("server", "socket", "/x.sock"); same errors without a line. */
int config_set(struct config *cfg, const char *section, const char *key, const char *value,
               struct error **err);

/* Find a runtime handler by name; "" means the default. NULL when unknown. */
const struct config_runtime *config_find_runtime(const struct config *cfg, const char *name);

/*
 * Settings for a registry host (borrowed), or NULL when the config has none.
 * The match is exact: mapping names such as "registry-1.docker.io" to
 * "docker.io" is the registry client's business.
 */
const struct config_registry *config_find_registry(const struct config *cfg, const char *host);

/* The directory images are imported from (owned): import_dir, or <root_dir>/import when unset. */
char *config_import_dir(const struct config *cfg);

/*
 * The configuration in effect as a JSON object text (owned; for Status
 * verbose). Registry passwords are never in it, only "has_password".
 */
char *config_to_json(const struct config *cfg);

void config_free(struct config *cfg);

#endif
