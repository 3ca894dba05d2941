/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's configuration: built-in defaults, the INI file, command-line
 * overrides, and the JSON view that Status verbose reports.
 *
 * Every key is described once, in key_defs[], so the file and config_set()
 * validate alike. Loading a file or setting a key works on a copy of the
 * configuration and replaces the caller's only when all of it is valid, so a
 * bad file or override leaves the configuration as it was.
 *
 * The file is read whole (with a cap) and handed to libinih one line at a time
 * by our own reader. Debian's inih is built without INI_HANDLER_LINENO, so the
 * reader counts lines for error messages. It also refuses lines that do not
 * fit inih's line buffer (inih would split them into two lines), strips
 * leading blanks so that inih never takes an indented key for the
 * continuation of the value above it, and reads [section] headers itself:
 * inih does not pass them to the handler, cuts a section name at its first
 * ']' (which [registry.[::1]:5000] has inside) and at 49 bytes (a registry
 * host may have 255), so the handler uses the reader's section, not inih's.
 *
 * Registry passwords are secrets: no error message quotes a value or a line
 * that may hold one, and the JSON view only says whether a password is set.
 */
#include "autoconf.h"

#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/un.h>

#include "core/config.h"
#include "core/error.h"
#include "core/text.h"
#include "core/util.h"

#define DEFAULT_SOCKET "/run/tinycri/tinycri.sock"
#define DEFAULT_ROOT_DIR "/var/lib/tinycri"
#define DEFAULT_STATE_DIR "/run/tinycri"
#define DEFAULT_LOG_LEVEL LOG_LEVEL_INFO
#define DEFAULT_SHUTDOWN_TIMEOUT_S 10
#define DEFAULT_HANDSHAKE_TIMEOUT_S 10
#define DEFAULT_KEEPALIVE_TIME_S 120
#define DEFAULT_KEEPALIVE_TIMEOUT_S 20
#define DEFAULT_MAX_MSG_SIZE (16u * 1024 * 1024)
#define DEFAULT_MAX_STREAMS 1000
#define DEFAULT_MAX_CONNECTIONS 256
#define DEFAULT_RUNTIME "crun"
#define DEFAULT_CGROUP_DRIVER CGROUP_DRIVER_CGROUPFS
#define DEFAULT_CNI_CONF_DIR "/etc/cni/net.d"
#define DEFAULT_CNI_TIMEOUT_S 30
#define DEFAULT_MAX_DOWNLOADS 3
#define DEFAULT_PULL_TIMEOUT_S 0
#define DEFAULT_PROGRESS_INTERVAL_S 5
#define DEFAULT_STREAM_ADDRESS "127.0.0.1"
#define DEFAULT_STREAM_IDLE_TIMEOUT_S (4 * 3600)
#define DEFAULT_STREAM_CREATION_TIMEOUT_S 30
#define DEFAULT_STREAM_TOKEN_TIMEOUT_S 60
#define DEFAULT_STREAM_MAX_SESSIONS 1000

static const char *const default_cni_bin_dirs[] = {"/opt/cni/bin", "/usr/lib/cni"};
static const struct {
    const char *name;
    const char *path;
} builtin_runtimes[] = {{"crun", "/usr/bin/crun"}, {"runc", "/usr/bin/runc"}};

/* A configuration file is a page or two; anything near this is a mistake. */
#define CONFIG_FILE_CAP (1024 * 1024)
/* Longest value, so that no path outgrows what the kernel accepts. */
#define VALUE_MAX (PATH_MAX - 1)
/* Longest socket path that fits sockaddr_un with its NUL. */
#define SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1)
#define HANDLER_NAME_MAX 32
#define HANDLER_SECTION_PREFIX "runtime."
/* The section of the handler keys in key_defs[]: any [runtime.<name>]. */
#define HANDLER_SECTION "runtime.<name>"
#define REGISTRY_SECTION_PREFIX "registry."
/* The section of the registry keys in key_defs[]: any [registry.<host>]. */
#define REGISTRY_SECTION "registry.<host>"
#define REGISTRY_HOST_MAX 255
/* The most items any list key holds (see the static assertion below). */
#define LIST_MAX 16
/* How much of a bad line an error message quotes. */
#define EXCERPT_MAX 40

enum key_kind {
    KEY_PATH,          /* absolute path */
    KEY_SOCKET,        /* absolute path short enough for sockaddr_un */
    KEY_NUMBER,        /* whole number in [min, max] */
    KEY_SIZE,          /* byte count in [min, max]; K, M, Ki, Mi suffixes allowed */
    KEY_LOG_LEVEL,     /* enum log_level */
    KEY_CGROUP_DRIVER, /* enum cgroup_driver */
    KEY_HANDLER_NAME,  /* the name of a runtime handler; checked to exist at the end */
    KEY_BOOL,          /* true/false, yes/no, on/off, 1/0 */
    KEY_TEXT,          /* any text without control characters */
    KEY_SECRET,        /* like KEY_TEXT, but wiped when freed (a registry password) */
    KEY_DIR_LIST,      /* colon-separated absolute directories (the CNI bin_dirs) */
    KEY_IMAGE_LIST,    /* comma-separated image references */
    KEY_URL_LIST,      /* comma-separated http:// or https:// URLs */
    KEY_ADDRESS,       /* an IPv4 or IPv6 address literal */
};

struct key_def {
    const char *section;
    const char *name;
    enum key_kind kind;
    /* Into struct config, struct config_runtime (HANDLER_SECTION) or struct config_registry
     * (REGISTRY_SECTION). */
    size_t offset;
    uint32_t min, max; /* numbers: the range; lists: max is the most items */
    const char *unit;  /* for range messages; NULL for plain counts */
    size_t count;      /* lists: offset of the size_t item count, in the same struct */
};

#define CFG(field) offsetof(struct config, field)
#define RT(field) offsetof(struct config_runtime, field)
#define REG(field) offsetof(struct config_registry, field)
#define MAX_MSG_SIZE (256u * 1024 * 1024)

_Static_assert(CONFIG_MAX_DIRS <= LIST_MAX && CONFIG_MAX_PINNED <= LIST_MAX &&
                   CONFIG_MAX_MIRRORS <= LIST_MAX,
               "LIST_MAX must hold every list key");

static const struct key_def key_defs[] = {
    {"server", "socket", KEY_SOCKET, CFG(socket_path), 0, 0, NULL, 0},
    {"server", "root_dir", KEY_PATH, CFG(root_dir), 0, 0, NULL, 0},
    {"server", "state_dir", KEY_PATH, CFG(state_dir), 0, 0, NULL, 0},
    {"server", "log_level", KEY_LOG_LEVEL, CFG(log_level), 0, 0, NULL, 0},
    {"server", "shutdown_timeout", KEY_NUMBER, CFG(shutdown_timeout_s), 1, 3600, "seconds", 0},
    {"server", "max_recv_message_size", KEY_SIZE, CFG(max_recv_msg_size), 1024, MAX_MSG_SIZE,
     "bytes", 0},
    {"server", "max_send_message_size", KEY_SIZE, CFG(max_send_msg_size), 1024, MAX_MSG_SIZE,
     "bytes", 0},
    {"server", "max_concurrent_streams", KEY_NUMBER, CFG(max_streams), 1, 100000, NULL, 0},
    {"server", "max_connections", KEY_NUMBER, CFG(max_connections), 1, 65536, NULL, 0},
    {"server", "handshake_timeout", KEY_NUMBER, CFG(handshake_timeout_s), 1, 3600, "seconds", 0},
    {"server", "keepalive_time", KEY_NUMBER, CFG(keepalive_time_s), 1, 86400, "seconds", 0},
    {"server", "keepalive_timeout", KEY_NUMBER, CFG(keepalive_timeout_s), 1, 3600, "seconds", 0},
    {"runtime", "default_runtime", KEY_HANDLER_NAME, CFG(default_runtime), 0, 0, NULL, 0},
    {"runtime", "cgroup_driver", KEY_CGROUP_DRIVER, CFG(cgroup_driver), 0, 0, NULL, 0},
    {HANDLER_SECTION, "path", KEY_PATH, RT(path), 0, 0, NULL, 0},
    {HANDLER_SECTION, "root", KEY_PATH, RT(root), 0, 0, NULL, 0},
    {"cni", "conf_dir", KEY_PATH, CFG(cni_conf_dir), 0, 0, NULL, 0},
    {"cni", "bin_dirs", KEY_DIR_LIST, CFG(cni_bin_dirs), 0, CONFIG_MAX_DIRS, NULL,
     CFG(n_cni_bin_dirs)},
    {"cni", "plugin_timeout", KEY_NUMBER, CFG(cni_timeout_s), 1, 600, "seconds", 0},
    {"image", "import_dir", KEY_PATH, CFG(import_dir), 0, 0, NULL, 0},
    {"image", "max_concurrent_downloads", KEY_NUMBER, CFG(max_downloads), 1, 64, NULL, 0},
    {"image", "drop_compressed_layers", KEY_BOOL, CFG(drop_layer_blobs), 0, 0, NULL, 0},
    {"image", "pull_timeout", KEY_NUMBER, CFG(pull_timeout_s), 0, 86400, "seconds", 0},
    {"image", "progress_interval", KEY_NUMBER, CFG(progress_interval_s), 1, 3600, "seconds", 0},
    {"image", "pinned_images", KEY_IMAGE_LIST, CFG(pinned_images), 0, CONFIG_MAX_PINNED, NULL,
     CFG(n_pinned_images)},
    {"stream", "address", KEY_ADDRESS, CFG(stream_address), 0, 0, NULL, 0},
    {"stream", "port", KEY_NUMBER, CFG(stream_port), 0, 65535, NULL, 0},
    {"stream", "idle_timeout", KEY_NUMBER, CFG(stream_idle_timeout_s), 1, 7 * 86400, "seconds", 0},
    {"stream", "creation_timeout", KEY_NUMBER, CFG(stream_creation_timeout_s), 1, 600, "seconds",
     0},
    {"stream", "token_timeout", KEY_NUMBER, CFG(stream_token_timeout_s), 1, 3600, "seconds", 0},
    {"stream", "max_sessions", KEY_NUMBER, CFG(stream_max_sessions), 1, 65536, NULL, 0},
    {"stream", "tls_cert", KEY_PATH, CFG(stream_tls_cert), 0, 0, NULL, 0},
    {"stream", "tls_key", KEY_PATH, CFG(stream_tls_key), 0, 0, NULL, 0},
    {REGISTRY_SECTION, "mirrors", KEY_URL_LIST, REG(mirrors), 0, CONFIG_MAX_MIRRORS, NULL,
     REG(n_mirrors)},
    {REGISTRY_SECTION, "insecure", KEY_BOOL, REG(insecure), 0, 0, NULL, 0},
    {REGISTRY_SECTION, "ca_file", KEY_PATH, REG(ca_file), 0, 0, NULL, 0},
    {REGISTRY_SECTION, "username", KEY_TEXT, REG(username), 0, 0, NULL, 0},
    {REGISTRY_SECTION, "password", KEY_SECRET, REG(password), 0, 0, NULL, 0},
};

#define _cleanup_config_ __attribute__((cleanup(config_free)))

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

/* Valid UTF-8 without control characters: safe to print, log and put in JSON. */
static bool is_clean_text(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        if (p[i] < 0x20 || p[i] == 0x7f)
            return false;
        size_t len = text_utf8_char_len(p + i, n - i);
        if (len == 0)
            return false;
        i += len;
    }
    return true;
}

static bool is_handler_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > HANDLER_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* A host as a [registry.<host>] section names it: "docker.io", "localhost:5000", "[::1]:5000". */
static bool is_registry_host(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > REGISTRY_HOST_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr(".-:[]", c)))
            return false;
    }
    return true;
}

static struct config_runtime *find_runtime(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_runtimes; i++) {
        if (strcmp(cfg->runtimes[i].name, name) == 0)
            return (struct config_runtime *)&cfg->runtimes[i];
    }
    return NULL;
}

static struct config_registry *find_registry(const struct config *cfg, const char *host)
{
    for (size_t i = 0; i < cfg->n_registries; i++) {
        if (strcmp(cfg->registries[i].host, host) == 0)
            return (struct config_registry *)&cfg->registries[i];
    }
    return NULL;
}

/* Free a string that held a secret; its bytes do not stay behind in freed memory. */
static void free_secret(char *s)
{
    if (!s)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}

static int parse_number(const char *value, const struct key_def *def, uint32_t *out,
                        struct error **err)
{
    static const struct {
        const char *suffix;
        uint64_t factor;
    } suffixes[] = {{"K", 1000}, {"M", 1000000}, {"Ki", 1024}, {"Mi", 1024 * 1024}};
    bool is_size = def->kind == KEY_SIZE;

    /* strtoull alone would take blanks, a sign, and "-1" as a huge number. */
    if (value[0] < '0' || value[0] > '9')
        goto bad;
    errno = 0;
    char *end = NULL;
    unsigned long long n = strtoull(value, &end, 10);
    uint64_t factor = 1;
    if (*end) {
        if (!is_size)
            goto bad;
        size_t i = 0;
        while (i < ARRAY_SIZE(suffixes) && strcmp(end, suffixes[i].suffix) != 0)
            i++;
        if (i == ARRAY_SIZE(suffixes))
            goto bad;
        factor = suffixes[i].factor;
    }
    if (errno == ERANGE || n > UINT64_MAX / factor || n * factor < def->min ||
        n * factor > def->max) {
        const char *sep = def->unit ? " " : "", *unit = def->unit ? def->unit : "";
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "%s is out of range (%" PRIu32 "..%" PRIu32 "%s%s)", value, def->min,
                         def->max, sep, unit);
    }
    *out = (uint32_t)(n * factor);
    return 0;

bad:
    if (is_size)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "\"%s\" is not a size (a whole number of bytes, or with K, M, Ki or Mi)",
                         value);
    return error_set(err, GRPC_INVALID_ARGUMENT, 0, "\"%s\" is not a whole number", value);
}

static int check_path(const char *value, size_t max, struct error **err)
{
    if (value[0] != '/')
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "\"%s\" is not an absolute path", value);
    if (strlen(value) > max)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "path is longer than %zu bytes", max);
    return 0;
}

/* A mirror: http:// or https://, a host, no blanks, and no credentials (they would show). */
static int check_mirror(const char *url, size_t index, struct error **err)
{
    /* Checked first, so that the message below never quotes a password. */
    const char *auth = strstr(url, "://");
    auth = auth ? auth + 3 : url;
    if (memchr(auth, '@', strcspn(auth, "/?#")))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "mirror %zu has credentials in its URL; use username and password", index);
    bool has_scheme = str_has_prefix(url, "http://") || str_has_prefix(url, "https://");
    if (!has_scheme || strcspn(auth, "/?#") == 0 || strchr(url, ' '))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "\"%s\" is not a mirror URL (http://<host>[/<path>] or https://...)", url);
    return 0;
}

/* One item of a list key; index counts from 1. */
static int check_list_item(enum key_kind kind, const char *item, size_t index, struct error **err)
{
    switch (kind) {
    case KEY_DIR_LIST:
        return check_path(item, VALUE_MAX, err);
    case KEY_IMAGE_LIST:
        if (strchr(item, ' '))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "\"%s\" is not an image reference (it has a blank)", item);
        return 0;
    case KEY_URL_LIST:
        return check_mirror(item, index, err);
    default:
        assert_state(!"not a list key");
        return -1;
    }
}

/*
 * Parse a list into the array at base + def->offset and its count at base +
 * def->count. Directories are split at ':' as in $PATH; the other lists at
 * ',', with blanks around each item ignored. The list replaces the old one
 * only when all of it is valid.
 */
static int set_list(void *base, const struct key_def *def, const char *value, struct error **err)
{
    const char *noun = def->kind == KEY_DIR_LIST     ? "directories"
                       : def->kind == KEY_IMAGE_LIST ? "images"
                                                     : "mirrors";
    char sep = def->kind == KEY_DIR_LIST ? ':' : ',';
    char **field = (char **)((char *)base + def->offset);
    size_t *count = (size_t *)((char *)base + def->count);
    char *items[LIST_MAX] = {NULL};
    size_t n = 0;
    int r = 0;
    assert_state(def->max <= LIST_MAX);
    for (const char *p = value;; p++) {
        const char *end = strchr(p, sep);
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *item_start = p;
        if (sep == ',') {
            while (len > 0 && *item_start == ' ') {
                item_start++;
                len--;
            }
            while (len > 0 && item_start[len - 1] == ' ')
                len--;
        }
        _cleanup_free_ char *item = xstrndup(item_start, len);
        if (len == 0 && def->kind == KEY_DIR_LIST)
            r = error_set(err, GRPC_INVALID_ARGUMENT, 0, "empty directory in \"%s\"", value);
        else if (len == 0) /* value is not quoted: a mirror list may hold a password */
            r = error_set(err, GRPC_INVALID_ARGUMENT, 0, "item %zu is empty", n + 1);
        else if (n == def->max)
            r = error_set(err, GRPC_INVALID_ARGUMENT, 0, "more than %" PRIu32 " %s", def->max,
                          noun);
        else
            r = check_list_item(def->kind, item, n + 1, err);
        if (r < 0)
            break;
        items[n++] = steal_ptr(&item);
        if (!end)
            break;
        p = end;
    }
    if (r < 0) {
        for (size_t i = 0; i < n; i++)
            free(items[i]);
        return -1;
    }
    for (size_t i = 0; i < *count; i++)
        free(field[i]);
    memcpy(field, items, def->max * sizeof(*field));
    *count = n;
    return 0;
}

static int parse_bool(const char *value, bool *out, struct error **err)
{
    static const struct {
        const char *word;
        bool value;
    } words[] = {{"true", true}, {"false", false}, {"yes", true}, {"no", false},
                 {"on", true},   {"off", false},   {"1", true},   {"0", false}};
    for (size_t i = 0; i < ARRAY_SIZE(words); i++) {
        if (strcmp(value, words[i].word) == 0) {
            *out = words[i].value;
            return 0;
        }
    }
    return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                     "\"%s\" is not a boolean (true, false, yes, no, on, off, 1 or 0)", value);
}

/* Parse value for def into the field at base + def->offset. Errors carry the reason only. */
static int set_key(void *base, const struct key_def *def, const char *value, struct error **err)
{
    void *field = (char *)base + def->offset;
    switch (def->kind) {
    case KEY_PATH:
    case KEY_SOCKET:
        if (check_path(value, def->kind == KEY_SOCKET ? SOCKET_PATH_MAX : VALUE_MAX, err) < 0)
            return -1;
        free(*(char **)field);
        *(char **)field = xstrdup(value);
        return 0;
    case KEY_NUMBER:
    case KEY_SIZE:
        return parse_number(value, def, field, err);
    case KEY_LOG_LEVEL:
        if (log_level_parse(value, field) < 0)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "\"%s\" is not a log level (error, warn, info or debug)", value);
        return 0;
    case KEY_CGROUP_DRIVER:
        if (strcmp(value, "cgroupfs") == 0)
            *(enum cgroup_driver *)field = CGROUP_DRIVER_CGROUPFS;
        else if (strcmp(value, "systemd") == 0)
            *(enum cgroup_driver *)field = CGROUP_DRIVER_SYSTEMD;
        else
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "\"%s\" is not a cgroup driver (cgroupfs or systemd)", value);
        return 0;
    case KEY_HANDLER_NAME:
        if (!is_handler_name(value))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "\"%s\" is not a runtime handler name (1 to %d of a-z, 0-9, _, -)",
                             value, HANDLER_NAME_MAX);
        free(*(char **)field);
        *(char **)field = xstrdup(value);
        return 0;
    case KEY_BOOL:
        return parse_bool(value, field, err);
    case KEY_TEXT:
        free(*(char **)field);
        *(char **)field = xstrdup(value);
        return 0;
    case KEY_ADDRESS: {
        unsigned char addr[sizeof(struct in6_addr)];
        if (inet_pton(AF_INET, value, addr) != 1 && inet_pton(AF_INET6, value, addr) != 1)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "\"%s\" is not an IPv4 or IPv6 address",
                             value);
        free(*(char **)field);
        *(char **)field = xstrdup(value);
        return 0;
    }
    case KEY_SECRET:
        free_secret(*(char **)field);
        *(char **)field = xstrdup(value);
        return 0;
    case KEY_DIR_LIST:
    case KEY_IMAGE_LIST:
    case KEY_URL_LIST:
        return set_list(base, def, value, err);
    }
    assert_state(!"unknown key kind");
    return -1;
}

/*
 * The section of key_defs[] that a file's [section] maps to, or NULL with the
 * reason in *err: an unknown section, a bad handler name in [runtime.<name>]
 * or a bad host in [registry.<host>].
 */
static const char *find_section(const char *section, struct error **err)
{
    if (str_has_prefix(section, HANDLER_SECTION_PREFIX)) {
        const char *handler = section + strlen(HANDLER_SECTION_PREFIX);
        if (!is_handler_name(handler))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "\"%s\" is not a runtime handler name (1 to %d of a-z, 0-9, _, -)",
                             handler, HANDLER_NAME_MAX),
                   NULL;
        return HANDLER_SECTION;
    }
    if (str_has_prefix(section, REGISTRY_SECTION_PREFIX)) {
        const char *host = section + strlen(REGISTRY_SECTION_PREFIX);
        if (!is_registry_host(host))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "\"%s\" is not a registry host (1 to %d of a-z, A-Z, 0-9, ., -, :, "
                             "[, ])",
                             host, REGISTRY_HOST_MAX),
                   NULL;
        return REGISTRY_SECTION;
    }
    for (size_t i = 0; i < ARRAY_SIZE(key_defs); i++) {
        if (strcmp(key_defs[i].section, section) == 0)
            return key_defs[i].section;
    }
    return error_set(err, GRPC_INVALID_ARGUMENT, 0, "unknown section"), NULL;
}

/*
 * Set one key in cfg. A [runtime.<name>] section that names a new handler adds
 * it (without a path: check_config() wants one by the end); a
 * [registry.<host>] section that names a new host adds it. Fails with
 * "<key>: <reason>"; cfg may then be half-changed, so callers work on a copy.
 */
static int apply(struct config *cfg, const char *section, const char *key, const char *value,
                 struct error **err)
{
    if (!section || !key)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "missing section or key");
    if (!*key)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "missing key before '='");
    if (!*section)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s: key outside of any [section]", key);

    const char *table_section = find_section(section, err);
    if (!table_section)
        return error_prefix(err, "%s: [%s]", key, section);
    const struct key_def *def = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(key_defs) && !def; i++) {
        if (strcmp(key_defs[i].section, table_section) == 0 && strcmp(key_defs[i].name, key) == 0)
            def = &key_defs[i];
    }
    if (!def)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s: unknown key in [%s]", key, section);
    if (!value || !*value)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s: missing value", key);
    if (strlen(value) > VALUE_MAX)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s: value is longer than %d bytes", key,
                         VALUE_MAX);
    if (!is_clean_text(value))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "%s: value has control characters or is not UTF-8", key);

    void *base = cfg;
    if (strcmp(table_section, HANDLER_SECTION) == 0) {
        const char *handler = section + strlen(HANDLER_SECTION_PREFIX);
        struct config_runtime *rt = find_runtime(cfg, handler);
        if (!rt) {
            if (cfg->n_runtimes == CONFIG_MAX_RUNTIMES)
                return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                                 "%s: [%s]: more than %d runtime handlers", key, section,
                                 CONFIG_MAX_RUNTIMES);
            rt = &cfg->runtimes[cfg->n_runtimes++];
            *rt = (struct config_runtime){.name = xstrdup(handler)};
        }
        base = rt;
    } else if (strcmp(table_section, REGISTRY_SECTION) == 0) {
        const char *host = section + strlen(REGISTRY_SECTION_PREFIX);
        struct config_registry *reg = find_registry(cfg, host);
        if (!reg) {
            if (cfg->n_registries == CONFIG_MAX_REGISTRIES)
                return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s: [%s]: more than %d registries",
                                 key, section, CONFIG_MAX_REGISTRIES);
            reg = &cfg->registries[cfg->n_registries++];
            *reg = (struct config_registry){.host = xstrdup(host)};
        }
        base = reg;
    }
    if (set_key(base, def, value, err) < 0)
        return error_prefix(err, "%s", key);
    return 0;
}

/* Where the keys that check_config() looks at were set in a file (0: not in it). */
struct key_lines {
    int default_runtime;
    int handler[CONFIG_MAX_RUNTIMES]; /* first key of a handler the file added */
};

/* Checks across keys, once all are set. On failure *line is the key's line, if known. */
static int check_config(const struct config *cfg, const struct key_lines *lines, int *line,
                        struct error **err)
{
    for (size_t i = 0; i < cfg->n_runtimes; i++) {
        if (cfg->runtimes[i].path)
            continue;
        *line = lines ? lines->handler[i] : 0;
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "path: runtime handler %s has no path",
                         cfg->runtimes[i].name);
    }
    if ((cfg->stream_tls_cert != NULL) != (cfg->stream_tls_key != NULL)) {
        *line = 0;
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "%s: [stream] tls_cert and tls_key go together",
                         cfg->stream_tls_cert ? "tls_key" : "tls_cert");
    }
    *line = lines ? lines->default_runtime : 0;
    if (!cfg->default_runtime)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "default_runtime: not set");
    if (find_runtime(cfg, cfg->default_runtime))
        return 0;
    /* Names are at most HANDLER_NAME_MAX bytes, so the list always fits. */
    char list[CONFIG_MAX_RUNTIMES * (HANDLER_NAME_MAX + 2) + 1] = "";
    size_t off = 0;
    for (size_t i = 0; i < cfg->n_runtimes && off < sizeof(list); i++)
        off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s", i > 0 ? ", " : "",
                                cfg->runtimes[i].name);
    return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                     "default_runtime: no runtime handler \"%s\" is configured (have: %s)",
                     cfg->default_runtime, list);
}

static void copy_config(struct config *dst, const struct config *src)
{
    *dst = *src;
    dst->socket_path = dup_or_null(src->socket_path);
    dst->root_dir = dup_or_null(src->root_dir);
    dst->state_dir = dup_or_null(src->state_dir);
    dst->default_runtime = dup_or_null(src->default_runtime);
    for (size_t i = 0; i < src->n_runtimes; i++) {
        dst->runtimes[i].name = dup_or_null(src->runtimes[i].name);
        dst->runtimes[i].path = dup_or_null(src->runtimes[i].path);
        dst->runtimes[i].root = dup_or_null(src->runtimes[i].root);
    }
    dst->cni_conf_dir = dup_or_null(src->cni_conf_dir);
    for (size_t i = 0; i < src->n_cni_bin_dirs; i++)
        dst->cni_bin_dirs[i] = dup_or_null(src->cni_bin_dirs[i]);
    dst->import_dir = dup_or_null(src->import_dir);
    for (size_t i = 0; i < src->n_pinned_images; i++)
        dst->pinned_images[i] = dup_or_null(src->pinned_images[i]);
    dst->stream_address = dup_or_null(src->stream_address);
    dst->stream_tls_cert = dup_or_null(src->stream_tls_cert);
    dst->stream_tls_key = dup_or_null(src->stream_tls_key);
    for (size_t i = 0; i < src->n_registries; i++) {
        const struct config_registry *s = &src->registries[i];
        struct config_registry *d = &dst->registries[i];
        d->host = dup_or_null(s->host);
        for (size_t j = 0; j < s->n_mirrors; j++)
            d->mirrors[j] = dup_or_null(s->mirrors[j]);
        d->ca_file = dup_or_null(s->ca_file);
        d->username = dup_or_null(s->username);
        d->password = dup_or_null(s->password);
    }
    dst->file = dup_or_null(src->file);
}

/* Replace *cfg with *next and empty *next. */
static void commit_config(struct config *cfg, struct config *next)
{
    config_free(cfg);
    *cfg = *next;
    memset(next, 0, sizeof(*next));
}

void config_init_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->socket_path = xstrdup(DEFAULT_SOCKET);
    cfg->root_dir = xstrdup(DEFAULT_ROOT_DIR);
    cfg->state_dir = xstrdup(DEFAULT_STATE_DIR);
    cfg->log_level = DEFAULT_LOG_LEVEL;
    cfg->shutdown_timeout_s = DEFAULT_SHUTDOWN_TIMEOUT_S;
    cfg->max_recv_msg_size = DEFAULT_MAX_MSG_SIZE;
    cfg->max_send_msg_size = DEFAULT_MAX_MSG_SIZE;
    cfg->max_streams = DEFAULT_MAX_STREAMS;
    cfg->max_connections = DEFAULT_MAX_CONNECTIONS;
    cfg->handshake_timeout_s = DEFAULT_HANDSHAKE_TIMEOUT_S;
    cfg->keepalive_time_s = DEFAULT_KEEPALIVE_TIME_S;
    cfg->keepalive_timeout_s = DEFAULT_KEEPALIVE_TIMEOUT_S;
    cfg->default_runtime = xstrdup(DEFAULT_RUNTIME);
    cfg->cgroup_driver = DEFAULT_CGROUP_DRIVER;
    for (size_t i = 0; i < ARRAY_SIZE(builtin_runtimes); i++) {
        cfg->runtimes[i].name = xstrdup(builtin_runtimes[i].name);
        cfg->runtimes[i].path = xstrdup(builtin_runtimes[i].path);
    }
    cfg->n_runtimes = ARRAY_SIZE(builtin_runtimes);
    cfg->cni_conf_dir = xstrdup(DEFAULT_CNI_CONF_DIR);
    for (size_t i = 0; i < ARRAY_SIZE(default_cni_bin_dirs); i++)
        cfg->cni_bin_dirs[i] = xstrdup(default_cni_bin_dirs[i]);
    cfg->n_cni_bin_dirs = ARRAY_SIZE(default_cni_bin_dirs);
    cfg->cni_timeout_s = DEFAULT_CNI_TIMEOUT_S;
    cfg->max_downloads = DEFAULT_MAX_DOWNLOADS;
    cfg->pull_timeout_s = DEFAULT_PULL_TIMEOUT_S;
    cfg->progress_interval_s = DEFAULT_PROGRESS_INTERVAL_S;
    cfg->stream_address = xstrdup(DEFAULT_STREAM_ADDRESS);
    cfg->stream_idle_timeout_s = DEFAULT_STREAM_IDLE_TIMEOUT_S;
    cfg->stream_creation_timeout_s = DEFAULT_STREAM_CREATION_TIMEOUT_S;
    cfg->stream_token_timeout_s = DEFAULT_STREAM_TOKEN_TIMEOUT_S;
    cfg->stream_max_sessions = DEFAULT_STREAM_MAX_SESSIONS;
}

/* The state of one ini_parse_stream() over a file read into memory. */
struct load_ctx {
    const char *text;
    size_t len;
    size_t pos;
    int lineno; /* of the line last handed to inih */
    struct config *cfg;
    struct key_lines lines;
    char *section;     /* of the last [section] header read (owned); NULL before any */
    struct error *err; /* the first error found by our reader or handler */
    int err_line;
};

/* Where a line's text starts for inih: after a UTF-8 byte order mark on line 1 and blanks. */
static const char *line_start(const char *line, size_t n, int lineno, size_t *left)
{
    static const char bom[] = "\xef\xbb\xbf";
    if (lineno == 1 && n >= 3 && memcmp(line, bom, 3) == 0) {
        line += 3;
        n -= 3;
    }
    while (n > 0 && (*line == ' ' || *line == '\t')) {
        line++;
        n--;
    }
    *left = n;
    return line;
}

/*
 * The section a header line names (owned), or NULL if the line is none. The
 * name ends at the first ']' followed by nothing, blanks or a comment, so that
 * [registry.[::1]:5000] keeps its brackets; failing that, at the first ']'.
 */
static char *header_section(const char *line)
{
    const char *close = strchr(line, ']');
    if (line[0] != '[' || !close)
        return NULL;
    for (const char *c = close; c; c = strchr(c + 1, ']')) {
        const char *rest = c + 1 + strspn(c + 1, " \t\r");
        if (!*rest || *rest == ';' || *rest == '#') {
            close = c;
            break;
        }
    }
    return xstrndup(line + 1, (size_t)(close - line - 1));
}

/* The section in effect at line lineno of text, as read_line() tracks it (owned; "" if none). */
static char *section_at(const char *text, size_t len, int lineno)
{
    char *section = xstrdup("");
    const char *p = text, *end = text + len;
    for (int i = 1; i < lineno && p < end; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p), left = 0;
        const char *start = line_start(p, n, i, &left);
        _cleanup_free_ char *str = xstrndup(start, left);
        char *found = header_section(str);
        if (found) {
            free(section);
            section = found;
        }
        p = nl ? nl + 1 : end;
    }
    return section;
}

/* The text of line lineno (1-based) in text, without its newline. */
static const char *line_at(const char *text, size_t len, int lineno, size_t *n)
{
    const char *p = text, *end = text + len;
    for (int i = 1; i < lineno && p < end; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    *n = nl ? (size_t)(nl - p) : (size_t)(end - p);
    return p;
}

/* A short, printable quote of a line for error messages. */
static char *excerpt(const char *s, size_t n)
{
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        n--;
    bool cut = n > EXCERPT_MAX;
    if (cut)
        n = EXCERPT_MAX;
    char *out = xmalloc(n + 4);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    strcpy(out + n, cut ? "..." : "");
    return out;
}

/*
 * The quote of a bad line in section for an error message. In a
 * [registry.<host>] section, which may hold a password, that is only the key
 * the line starts with if it is a known one (a header is shown whole): a
 * line there that is not "key = value" may be a piece of a password.
 */
static char *quote_line(const char *section, const char *line, size_t n)
{
    if (!str_has_prefix(section, REGISTRY_SECTION_PREFIX))
        return excerpt(line, n);
    size_t left = 0;
    const char *start = line_start(line, n, 0, &left);
    if (left > 0 && start[0] == '[')
        return excerpt(start, left);
    size_t word = 0;
    while (word < left && !strchr(" \t=:;", start[word]))
        word++;
    for (size_t i = 0; i < ARRAY_SIZE(key_defs); i++) {
        const char *name = key_defs[i].name;
        if (strcmp(key_defs[i].section, REGISTRY_SECTION) == 0 && strlen(name) == word &&
            memcmp(name, start, word) == 0)
            return xstrdup(name);
    }
    return xstrdup("(line not shown)");
}

static void fail_line(struct load_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fail_line(struct load_ctx *ctx, const char *fmt, ...)
{
    if (ctx->err)
        return;
    va_list ap;
    va_start(ap, fmt);
    error_setv(&ctx->err, GRPC_INVALID_ARGUMENT, 0, fmt, ap);
    va_end(ap);
    ctx->err_line = ctx->lineno;
}

/*
 * Read and check a [section] header as soon as it is read. inih does not tell
 * the handler about sections, so an unknown one without keys would go
 * unnoticed. A header without its ']' is left to inih, which reports it.
 */
static void check_header(struct load_ctx *ctx, const char *line)
{
    char *section = header_section(line);
    if (!section)
        return;
    free(ctx->section);
    ctx->section = section;
    _cleanup_error_ struct error *e = NULL;
    if (!find_section(section, &e))
        fail_line(ctx, "[%s]: %s", section, e->msg);
}

/* An fgets() for inih over the text in memory; see the top of the file for why. */
static char *read_line(char *str, int num, void *stream)
{
    struct load_ctx *ctx = stream;
    if (ctx->pos >= ctx->len || num < 2)
        return NULL;
    const char *line = ctx->text + ctx->pos;
    const char *nl = memchr(line, '\n', ctx->len - ctx->pos);
    size_t n = nl ? (size_t)(nl - line) : ctx->len - ctx->pos;
    ctx->pos += nl ? n + 1 : n;
    ctx->lineno++;

    size_t left = 0;
    const char *start = line_start(line, n, ctx->lineno, &left);
    str[0] = '\0';
    if (memchr(start, '\0', left)) {
        _cleanup_free_ char *quote = quote_line(ctx->section ? ctx->section : "", line, n);
        fail_line(ctx, "%s: line has a NUL byte", quote);
    } else if (left > (size_t)num - 1) {
        _cleanup_free_ char *quote = quote_line(ctx->section ? ctx->section : "", line, n);
        fail_line(ctx, "%s: line is longer than %d bytes", quote, num - 1);
    } else {
        memcpy(str, start, left);
        str[left] = '\0';
        check_header(ctx, str);
    }
    return str;
}

/* inih's section is ignored: see the top of the file. */
static int on_key(void *user, const char *inih_section UNUSED, const char *name, const char *value)
{
    struct load_ctx *ctx = user;
    if (ctx->err)
        return 1; /* only the first error is reported; skip the rest */
    const char *section = ctx->section ? ctx->section : "";
    size_t n_before = ctx->cfg->n_runtimes;
    if (apply(ctx->cfg, section, name, value, &ctx->err) < 0) {
        ctx->err_line = ctx->lineno;
        return 0;
    }
    if (ctx->cfg->n_runtimes > n_before)
        ctx->lines.handler[n_before] = ctx->lineno;
    if (strcmp(section, "runtime") == 0 && strcmp(name, "default_runtime") == 0)
        ctx->lines.default_runtime = ctx->lineno;
    return 1;
}

int config_load_file(struct config *cfg, const char *path, struct error **err)
{
    _cleanup_error_ struct error *read_err = NULL;
    size_t len = 0;
    _cleanup_free_ char *text = read_file_capped(path, CONFIG_FILE_CAP, &len, &read_err);
    if (!text)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s", read_err->msg);

    _cleanup_config_ struct config next;
    copy_config(&next, cfg);
    struct load_ctx ctx = {.text = text, .len = len, .cfg = &next};
    int r = ini_parse_stream(read_line, &ctx, on_key, &ctx);
    _cleanup_error_ struct error *found = steal_ptr(&ctx.err);
    _cleanup_free_ char *last_section = steal_ptr(&ctx.section);
    if (r < 0)
        return error_set(err, GRPC_INTERNAL, 0, "%s: libinih failed (%d)", path, r);
    /* inih reports the first line it found bad, which may come before ours. */
    if (r > 0 && (!found || r < ctx.err_line)) {
        size_t n = 0, left = 0;
        const char *line = line_at(text, len, r, &n);
        _cleanup_free_ char *section = section_at(text, len, r);
        _cleanup_free_ char *quote = quote_line(section, line, n);
        const char *start = line_start(line, n, r, &left);
        const char *reason = left > 0 && start[0] == '['
                                 ? "section header without a closing ]"
                                 : "expected \"key = value\", \"[section]\" or a comment";
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s:%d: %s: %s", path, r, quote, reason);
    }
    if (found) {
        error_copy(err, found);
        return error_prefix(err, "%s:%d", path, ctx.err_line);
    }

    int line = 0;
    if (check_config(&next, &ctx.lines, &line, &found) < 0) {
        error_copy(err, found);
        if (line > 0)
            return error_prefix(err, "%s:%d", path, line);
        return error_prefix(err, "%s", path);
    }
    free(next.file);
    next.file = xstrdup(path);
    commit_config(cfg, &next);
    return 0;
}

int config_set(struct config *cfg, const char *section, const char *key, const char *value,
               struct error **err)
{
    _cleanup_config_ struct config next;
    copy_config(&next, cfg);
    int line = 0;
    if (apply(&next, section, key, value, err) < 0 || check_config(&next, NULL, &line, err) < 0)
        return -1;
    commit_config(cfg, &next);
    return 0;
}

const struct config_runtime *config_find_runtime(const struct config *cfg, const char *name)
{
    if (!name || !*name)
        name = cfg->default_runtime;
    return name ? find_runtime(cfg, name) : NULL;
}

const struct config_registry *config_find_registry(const struct config *cfg, const char *host)
{
    return host ? find_registry(cfg, host) : NULL;
}

char *config_import_dir(const struct config *cfg)
{
    if (cfg->import_dir)
        return xstrdup(cfg->import_dir);
    assert_state(cfg->root_dir != NULL);
    return xasprintf("%s/import", cfg->root_dir);
}

static json_t *json_text(const char *s)
{
    return s ? json_string(s) : json_null();
}

char *config_to_json(const struct config *cfg)
{
    json_t *server = json_object();
    json_object_set_new(server, "socket", json_text(cfg->socket_path));
    json_object_set_new(server, "root_dir", json_text(cfg->root_dir));
    json_object_set_new(server, "state_dir", json_text(cfg->state_dir));
    json_object_set_new(server, "log_level", json_string(log_level_name(cfg->log_level)));
    json_object_set_new(server, "shutdown_timeout", json_integer(cfg->shutdown_timeout_s));
    json_object_set_new(server, "max_recv_message_size", json_integer(cfg->max_recv_msg_size));
    json_object_set_new(server, "max_send_message_size", json_integer(cfg->max_send_msg_size));
    json_object_set_new(server, "max_concurrent_streams", json_integer(cfg->max_streams));
    json_object_set_new(server, "max_connections", json_integer(cfg->max_connections));
    json_object_set_new(server, "handshake_timeout", json_integer(cfg->handshake_timeout_s));
    json_object_set_new(server, "keepalive_time", json_integer(cfg->keepalive_time_s));
    json_object_set_new(server, "keepalive_timeout", json_integer(cfg->keepalive_timeout_s));

    json_t *handlers = json_object();
    for (size_t i = 0; i < cfg->n_runtimes; i++) {
        const struct config_runtime *rt = &cfg->runtimes[i];
        /* Report the root in effect, as the runtime driver will use it. */
        _cleanup_free_ char *root =
            rt->root ? xstrdup(rt->root) : xasprintf("%s/runtime/%s", cfg->state_dir, rt->name);
        json_t *h = json_object();
        json_object_set_new(h, "path", json_text(rt->path));
        json_object_set_new(h, "root", json_text(root));
        json_object_set_new(handlers, rt->name, h);
    }
    json_t *runtime = json_object();
    json_object_set_new(runtime, "default_runtime", json_text(cfg->default_runtime));
    const char *driver = cfg->cgroup_driver == CGROUP_DRIVER_SYSTEMD ? "systemd" : "cgroupfs";
    json_object_set_new(runtime, "cgroup_driver", json_string(driver));
    json_object_set_new(runtime, "handlers", handlers);

    json_t *bin_dirs = json_array();
    for (size_t i = 0; i < cfg->n_cni_bin_dirs; i++)
        json_array_append_new(bin_dirs, json_text(cfg->cni_bin_dirs[i]));
    json_t *cni = json_object();
    json_object_set_new(cni, "conf_dir", json_text(cfg->cni_conf_dir));
    json_object_set_new(cni, "bin_dirs", bin_dirs);
    json_object_set_new(cni, "plugin_timeout", json_integer(cfg->cni_timeout_s));

    json_t *pinned = json_array();
    for (size_t i = 0; i < cfg->n_pinned_images; i++)
        json_array_append_new(pinned, json_text(cfg->pinned_images[i]));
    _cleanup_free_ char *import_dir = config_import_dir(cfg);
    json_t *image = json_object();
    json_object_set_new(image, "import_dir", json_text(import_dir));
    json_object_set_new(image, "max_concurrent_downloads", json_integer(cfg->max_downloads));
    json_object_set_new(image, "drop_compressed_layers", json_boolean(cfg->drop_layer_blobs));
    json_object_set_new(image, "pull_timeout", json_integer(cfg->pull_timeout_s));
    json_object_set_new(image, "progress_interval", json_integer(cfg->progress_interval_s));
    json_object_set_new(image, "pinned_images", pinned);

    json_t *stream = json_object();
    json_object_set_new(stream, "address", json_text(cfg->stream_address));
    json_object_set_new(stream, "port", json_integer(cfg->stream_port));
    json_object_set_new(stream, "idle_timeout", json_integer(cfg->stream_idle_timeout_s));
    json_object_set_new(stream, "creation_timeout", json_integer(cfg->stream_creation_timeout_s));
    json_object_set_new(stream, "token_timeout", json_integer(cfg->stream_token_timeout_s));
    json_object_set_new(stream, "max_sessions", json_integer(cfg->stream_max_sessions));
    json_object_set_new(stream, "tls_cert", json_text(cfg->stream_tls_cert));
    json_object_set_new(stream, "tls_key", json_text(cfg->stream_tls_key));

    json_t *registries = json_object();
    for (size_t i = 0; i < cfg->n_registries; i++) {
        const struct config_registry *reg = &cfg->registries[i];
        json_t *mirrors = json_array();
        for (size_t j = 0; j < reg->n_mirrors; j++)
            json_array_append_new(mirrors, json_text(reg->mirrors[j]));
        json_t *r = json_object();
        json_object_set_new(r, "mirrors", mirrors);
        json_object_set_new(r, "insecure", json_boolean(reg->insecure));
        json_object_set_new(r, "ca_file", json_text(reg->ca_file));
        json_object_set_new(r, "username", json_text(reg->username));
        /* Never the password itself: Status verbose output ends up in bug reports. */
        json_object_set_new(r, "has_password", json_boolean(reg->password != NULL));
        json_object_set_new(registries, reg->host, r);
    }

    _cleanup_json_ json_t *root = json_object();
    json_object_set_new(root, "server", server);
    json_object_set_new(root, "runtime", runtime);
    json_object_set_new(root, "cni", cni);
    json_object_set_new(root, "image", image);
    json_object_set_new(root, "stream", stream);
    json_object_set_new(root, "registries", registries);
    json_object_set_new(root, "config_file", json_text(cfg->file));
    char *text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    /* Every string was checked to be UTF-8 when set, so only out-of-memory fails here. */
    assert_state(text != NULL);
    return text;
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    free(cfg->socket_path);
    free(cfg->root_dir);
    free(cfg->state_dir);
    free(cfg->default_runtime);
    for (size_t i = 0; i < cfg->n_runtimes; i++) {
        free(cfg->runtimes[i].name);
        free(cfg->runtimes[i].path);
        free(cfg->runtimes[i].root);
    }
    free(cfg->cni_conf_dir);
    for (size_t i = 0; i < cfg->n_cni_bin_dirs; i++)
        free(cfg->cni_bin_dirs[i]);
    free(cfg->import_dir);
    for (size_t i = 0; i < cfg->n_pinned_images; i++)
        free(cfg->pinned_images[i]);
    free(cfg->stream_address);
    free(cfg->stream_tls_cert);
    free(cfg->stream_tls_key);
    for (size_t i = 0; i < cfg->n_registries; i++) {
        struct config_registry *reg = &cfg->registries[i];
        free(reg->host);
        for (size_t j = 0; j < reg->n_mirrors; j++)
            free(reg->mirrors[j]);
        free(reg->ca_file);
        free(reg->username);
        free_secret(reg->password);
    }
    free(cfg->file);
    memset(cfg, 0, sizeof(*cfg));
}
