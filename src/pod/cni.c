/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CNI behind cni.h. Reading the network configuration: only the configured
 * directory is read and files are capped at CNI_CONF_MAX, so a Status call
 * stays cheap.
 *
 * Running plugins: one cni_op per ADD or DEL, a state machine over the
 * plugin list with at most one plugin child at a time. The child's exit is
 * recorded by on_plugin_exit() and every transition is made in cni_step().
 * The conflist is parsed again per operation (it is small), so the op never
 * refers to the caller's cni_network after cni_add()/cni_del() return.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <net/if.h>
#include <signal.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/persist.h"
#include "core/util.h"
#include "pod/cni.h"

#define CNI_MAX_FILES 256

static bool is_conf_name(const char *name)
{
    return name[0] != '.' && (str_has_suffix(name, ".conflist") || str_has_suffix(name, ".conf") ||
                              str_has_suffix(name, ".json"));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool plugin_installed(const struct config *cfg, const char *type)
{
    for (size_t i = 0; i < cfg->n_cni_bin_dirs; i++) {
        _cleanup_free_ char *p = xasprintf("%s/%s", cfg->cni_bin_dirs[i], type);
        if (access(p, X_OK) == 0)
            return true;
    }
    return false;
}

static const char *bin_dirs_text(const struct config *cfg, char *buf, size_t len)
{
    buf[0] = '\0';
    for (size_t i = 0; i < cfg->n_cni_bin_dirs; i++) {
        size_t used = strlen(buf);
        snprintf(buf + used, len - used, "%s%s", i ? ":" : "", cfg->cni_bin_dirs[i]);
    }
    return buf;
}

/* Parse one file into a conflist object, checking its shape. */
static int parse_one(const char *path, json_t **out, struct error **err)
{
    size_t len = 0;
    _cleanup_free_ char *text = read_file_capped(path, CNI_CONF_MAX, &len, err);
    if (!text)
        return -1;
    json_error_t jerr;
    _cleanup_json_ json_t *doc = json_loadb(text, len, 0, &jerr);
    if (!doc)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "%s: invalid JSON at line %d: %s", path,
                         jerr.line, jerr.text);
    if (!json_is_object(doc))
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "%s: not a JSON object", path);
    const char *name = json_string_value(json_object_get(doc, "name"));
    if (!name || !*name)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "%s: no network \"name\"", path);
    json_t *plugins = json_object_get(doc, "plugins");
    if (str_has_suffix(path, ".conflist") || plugins) {
        if (!json_is_array(plugins) || json_array_size(plugins) == 0)
            return error_set(err, GRPC_FAILED_PRECONDITION, 0, "%s: no \"plugins\" list", path);
    } else {
        /* A single-plugin .conf: wrap it in a list as libcni does. */
        json_t *list = json_object();
        json_object_set(list, "cniVersion", json_object_get(doc, "cniVersion"));
        json_object_set_new(list, "name", json_string(name));
        json_object_set_new(list, "plugins", json_pack("[O]", doc));
        json_decref(doc);
        doc = list;
        plugins = json_object_get(doc, "plugins");
    }
    size_t i;
    json_t *p;
    json_array_foreach(plugins, i, p)
    {
        const char *type = json_string_value(json_object_get(p, "type"));
        if (!type || !*type || strchr(type, '/') || strcmp(type, "..") == 0)
            return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                             "%s: plugin %zu has no valid \"type\"", path, i);
    }
    *out = steal_ptr(&doc);
    return 0;
}

struct name_list {
    char *v[CNI_MAX_FILES];
    size_t n;
};

static void name_list_free(struct name_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
}

static int list_conf_files(const char *dir, struct name_list *l, struct error **err)
{
    DIR *d = opendir(dir);
    if (!d)
        return error_set(err, GRPC_FAILED_PRECONDITION, errno, "cannot read CNI config dir %s",
                         dir);
    struct dirent *de;
    while ((de = readdir(d)) && l->n < CNI_MAX_FILES) {
        if (is_conf_name(de->d_name))
            l->v[l->n++] = xstrdup(de->d_name);
    }
    closedir(d);
    qsort(l->v, l->n, sizeof(l->v[0]), cmp_str);
    return 0;
}

int cni_network_load(const struct config *cfg, struct cni_network *net, struct error **err)
{
    memset(net, 0, sizeof(*net));
    __attribute__((cleanup(name_list_free))) struct name_list files = {.n = 0};
    if (list_conf_files(cfg->cni_conf_dir, &files, err) < 0)
        return -1;

    _cleanup_error_ struct error *first = NULL;
    _cleanup_json_ json_t *doc = NULL;
    _cleanup_free_ char *path = NULL;
    for (size_t i = 0; i < files.n && !doc; i++) {
        free(path);
        path = xasprintf("%s/%s", cfg->cni_conf_dir, files.v[i]);
        struct error *e = NULL;
        if (parse_one(path, &doc, &e) < 0 && !first)
            first = e;
        else
            error_free(e);
    }
    if (!doc && first)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "no valid CNI network config in %s: %s",
                         cfg->cni_conf_dir, first->msg);
    if (!doc)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                         "no CNI network config (.conflist, .conf or .json) in %s",
                         cfg->cni_conf_dir);

    const char *name = json_string_value(json_object_get(doc, "name"));
    struct buf types;
    buf_init(&types, CNI_CONF_MAX);
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(doc, "plugins"), i, p)
    {
        const char *type = json_string_value(json_object_get(p, "type"));
        if (!plugin_installed(cfg, type)) {
            char dirs[1024];
            buf_free(&types);
            return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                             "CNI plugin %s of network %s (%s) is not installed in %s", type, name,
                             path, bin_dirs_text(cfg, dirs, sizeof(dirs)));
        }
        if (i)
            buf_append(&types, ",", 1);
        buf_append(&types, type, strlen(type));
    }
    net->plugins = buf_take_str(&types, NULL);
    net->name = xstrdup(name);
    net->path = steal_ptr(&path);
    net->conflist = json_dumps(doc, JSON_COMPACT);
    return 0;
}

void cni_network_clear(struct cni_network *net)
{
    free(net->name);
    free(net->path);
    free(net->conflist);
    free(net->plugins);
    memset(net, 0, sizeof(*net));
}

/* ---- results ---- */

/* Cap on messages taken from a plugin into an error. */
#define CNI_MSG_MAX 1024
/* The cache file holds a result plus a little framing. */
#define CNI_CACHE_MAX (CNI_OUTPUT_MAX + 64 * 1024)
#define CNI_CACHE_KIND "tinycri-cni-cache-v1"
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

void cni_result_clear(struct cni_result *r)
{
    for (size_t i = 0; i < r->n_ips; i++)
        free(r->ips[i]);
    free(r->ips);
    free(r->json);
    memset(r, 0, sizeof(*r));
}

/* Is this "ips" entry on the pod's interface? */
static bool ip_on_pod_iface(json_t *ip, json_t *ifaces, const char *ifname)
{
    json_t *index = json_object_get(ip, "interface");
    if (!index)
        return true;
    if (!json_is_integer(index) || json_integer_value(index) < 0 ||
        (size_t)json_integer_value(index) >= json_array_size(ifaces))
        return false;
    json_t *iface = json_array_get(ifaces, (size_t)json_integer_value(index));
    const char *sandbox = json_string_value(json_object_get(iface, "sandbox"));
    const char *name = json_string_value(json_object_get(iface, "name"));
    if (!sandbox || !*sandbox)
        return false;
    return !ifname || !name || strcmp(name, ifname) == 0;
}

static int result_parse_doc(json_t *doc, const char *ifname, struct cni_result *out)
{
    memset(out, 0, sizeof(*out));
    json_t *ifaces = json_object_get(doc, "interfaces");
    char *v4[CNI_MAX_IPS], *v6[CNI_MAX_IPS];
    size_t n4 = 0, n6 = 0;
    size_t i;
    json_t *ip;
    json_array_foreach(json_object_get(doc, "ips"), i, ip)
    {
        const char *address = json_string_value(json_object_get(ip, "address"));
        if (!address || !ip_on_pod_iface(ip, ifaces, ifname) || n4 + n6 >= CNI_MAX_IPS)
            continue;
        char text[INET6_ADDRSTRLEN];
        size_t len = strcspn(address, "/");
        if (len >= sizeof(text))
            continue;
        memcpy(text, address, len);
        text[len] = '\0';
        unsigned char bin[sizeof(struct in6_addr)];
        if (inet_pton(AF_INET, text, bin) == 1)
            v4[n4++] = xstrdup(text);
        else if (inet_pton(AF_INET6, text, bin) == 1)
            v6[n6++] = xstrdup(text);
    }
    out->ips = xcalloc(n4 + n6 + 1, sizeof(char *));
    memcpy(out->ips, v4, n4 * sizeof(char *));
    memcpy(out->ips + n4, v6, n6 * sizeof(char *));
    out->n_ips = n4 + n6;
    out->json = json_dumps(doc, JSON_COMPACT);
    return 0;
}

int cni_result_parse(const char *json, size_t len, const char *ifname, struct cni_result *out,
                     struct error **err)
{
    memset(out, 0, sizeof(*out));
    json_error_t jerr;
    _cleanup_json_ json_t *doc = json_loadb(json, len, 0, &jerr);
    if (!json_is_object(doc))
        return error_set(err, GRPC_INTERNAL, 0, "CNI result is not a JSON object");
    return result_parse_doc(doc, ifname, out);
}

/* ---- bandwidth quantities ---- */

int cni_bandwidth_parse(const char *quantity, uint64_t *bits_per_s, struct error **err)
{
    static const struct {
        const char *suffix;
        unsigned __int128 mult;
        unsigned div; /* extra divisor: 1000 for milli */
    } units[] = {
        {"", 1, 1},
        {"m", 1, 1000},
        {"k", 1000ULL, 1},
        {"M", 1000ULL * 1000, 1},
        {"G", 1000ULL * 1000 * 1000, 1},
        {"T", 1000ULL * 1000 * 1000 * 1000, 1},
        {"P", 1000ULL * 1000 * 1000 * 1000 * 1000, 1},
        {"E", 1000ULL * 1000 * 1000 * 1000 * 1000 * 1000, 1},
        {"Ki", 1ULL << 10, 1},
        {"Mi", 1ULL << 20, 1},
        {"Gi", 1ULL << 30, 1},
        {"Ti", 1ULL << 40, 1},
        {"Pi", 1ULL << 50, 1},
        {"Ei", 1ULL << 60, 1},
    };
    const uint64_t min = 1000, max = 1000ULL * 1000 * 1000 * 1000 * 1000;
    const char *p = quantity ? quantity : "";
    uint64_t mantissa = 0, scale = 1;
    int digits = 0;
    bool frac = false;
    for (; (*p >= '0' && *p <= '9') || (*p == '.' && !frac); p++) {
        if (*p == '.') {
            frac = true;
            continue;
        }
        if (++digits > 18)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "bandwidth %s: too many digits",
                             quantity);
        mantissa = mantissa * 10 + (uint64_t)(*p - '0');
        if (frac)
            scale *= 10;
    }
    if (digits == 0)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "invalid bandwidth quantity \"%.64s\"",
                         quantity ? quantity : "");
    for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
        if (strcmp(p, units[i].suffix) != 0)
            continue;
        unsigned __int128 num = (unsigned __int128)mantissa * units[i].mult;
        unsigned __int128 den = (unsigned __int128)scale * units[i].div;
        unsigned __int128 v = (num + den - 1) / den;
        if (v < min || v > max)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "bandwidth %s is outside 1k..1P bit/s",
                             quantity);
        *bits_per_s = (uint64_t)v;
        return 0;
    }
    return error_set(err, GRPC_INVALID_ARGUMENT, 0, "invalid bandwidth quantity \"%.64s\"",
                     quantity);
}

/* ---- the operation ---- */

enum cni_state {
    CNI_ADDING,   /* ADD of plugins[idx] running; waiting for its exit */
    CNI_ROLLBACK, /* ADD failed or cancelled; DEL of plugins[idx] running, idx counting down */
    CNI_DELETING, /* DEL of plugins[idx] running, idx counting down to 0 */
    CNI_DONE,     /* reported (unless cancelled); queued for free */
};

/*
 * Owned by this module from cni_add()/cni_del() until it is freed in
 * CNI_DONE, also after a cancel. Only when loop_shutdown() kills a child (and
 * drops its callback) is an op never freed; the daemon is exiting then.
 */
struct cni_op {
    enum cni_state state;
    char *id;        /* sandbox id */
    char *net_name;  /* the list's "name" */
    char *version;   /* the list's "cniVersion" */
    bool del_prev;   /* cniVersion >= 0.4.0: DEL gets prevResult */
    json_t *list;    /* the parsed conflist */
    json_t *plugins; /* borrowed from list */
    size_t idx;      /* plugin the running child is for */
    size_t del_left; /* DEL: plugins [0, del_left) still to run */
    json_t *result;  /* ADD: the latest result; DEL: the cached one; NULL: none */
    json_t *caps;    /* capability arguments offered: name -> value */
    char **env;      /* CNI_* but CNI_COMMAND, and PATH; NULL-terminated */
    size_t n_env;
    char **bin_dirs;
    size_t n_bin_dirs;
    char *ifname;
    char *cache_path; /* NULL: no cache */
    int64_t timeout_ms;
    struct child *child; /* the plugin running now, NULL between plugins */
    struct error *err;   /* why it failed; CANCELLED once cancelled */
    struct cni_result res;
    cni_done_cb done;
    void *arg;
};

static void op_free(void *obj)
{
    struct cni_op *op = obj;
    if (!op)
        return;
    free(op->id);
    free(op->net_name);
    free(op->version);
    json_decref(op->list);
    json_decref(op->result);
    json_decref(op->caps);
    for (size_t i = 0; i < op->n_env; i++)
        free(op->env[i]);
    free(op->env);
    for (size_t i = 0; i < op->n_bin_dirs; i++)
        free(op->bin_dirs[i]);
    free(op->bin_dirs);
    free(op->ifname);
    free(op->cache_path);
    error_free(op->err);
    cni_result_clear(&op->res);
    free(op);
}

static void op_freep(struct cni_op **op)
{
    op_free(*op);
}
#define _cleanup_op_ __attribute__((cleanup(op_freep)))

static const char *op_cmd(const struct cni_op *op)
{
    return op->state == CNI_ADDING ? "ADD" : "DEL";
}

static const char *plugin_type(const struct cni_op *op, size_t idx)
{
    return json_string_value(json_object_get(json_array_get(op->plugins, idx), "type"));
}

/* ---- building a plugin call ---- */

/* "1.0.0" >= "0.4.0"? Anything that does not parse counts as old. */
static bool version_at_least_0_4(const char *v)
{
    unsigned major = 0, minor = 0;
    if (sscanf(v, "%u.%u", &major, &minor) != 2)
        return false;
    return major > 0 || minor >= 4;
}

/* The plugin's config as it goes to its stdin (owned text). */
static char *plugin_stdin(const struct cni_op *op, bool with_prev, size_t *len)
{
    json_t *plugin = json_array_get(op->plugins, op->idx);
    _cleanup_json_ json_t *conf = json_deep_copy(plugin);
    json_object_set_new(conf, "name", json_string(op->net_name));
    json_object_set_new(conf, "cniVersion", json_string(op->version));
    if (with_prev && op->result)
        json_object_set(conf, "prevResult", op->result);
    else
        json_object_del(conf, "prevResult");
    json_t *rc = json_object();
    const char *key;
    json_t *on;
    json_object_foreach(json_object_get(plugin, "capabilities"), key, on)
    {
        json_t *arg = json_object_get(op->caps, key);
        if (json_is_true(on) && arg)
            json_object_set(rc, key, arg);
    }
    if (json_object_size(rc) > 0)
        json_object_set_new(conf, "runtimeConfig", rc);
    else
        json_decref(rc);
    char *text = json_dumps(conf, JSON_COMPACT);
    assert_state(text);
    *len = strlen(text);
    return text;
}

static char *find_plugin(const struct cni_op *op, const char *type, struct error **err)
{
    for (size_t i = 0; i < op->n_bin_dirs; i++) {
        _cleanup_free_ char *p = xasprintf("%s/%s", op->bin_dirs[i], type);
        if (access(p, X_OK) == 0)
            return steal_ptr(&p);
    }
    return error_set(err, GRPC_FAILED_PRECONDITION, 0, "CNI plugin %s is not installed", type),
           NULL;
}

static void on_plugin_exit(const struct child_result *res, void *arg);

/* Start the plugin op->idx with the command of the current state. */
static int spawn_plugin(struct cni_op *op, struct error **err)
{
    const char *type = plugin_type(op, op->idx);
    const char *cmd = op_cmd(op);
    _cleanup_free_ char *path = find_plugin(op, type, err);
    if (!path)
        return -1;
    bool with_prev = op->state == CNI_ADDING || op->del_prev;
    size_t len = 0;
    _cleanup_free_ char *in = plugin_stdin(op, with_prev, &len);
    _cleanup_free_ char *command = xasprintf("CNI_COMMAND=%s", cmd);
    _cleanup_free_ char **envp = xcalloc(op->n_env + 2, sizeof(char *));
    memcpy(envp, op->env, op->n_env * sizeof(char *));
    envp[op->n_env] = command;
    char *argv[] = {path, NULL};
    struct child_opts opts = {
        .argv = argv,
        .envp = envp,
        .stdin_data = in,
        .stdin_len = len,
        .out_cap = CNI_OUTPUT_MAX,
        .timeout_ms = op->timeout_ms,
    };
    log_debug("cni plugin start sandbox=%s plugin=%s command=%s", op->id, type, cmd);
    op->child = child_spawn(&opts, on_plugin_exit, op, err);
    if (!op->child)
        return error_prefix(err, "CNI plugin %s (%s)", type, cmd);
    return 0;
}

/* ---- a plugin's exit ---- */

/* CNI error codes that mean the configuration (or our call) is wrong. */
static int grpc_code_of_cni(json_int_t code)
{
    switch (code) {
    case 1: /* incompatible CNI version */
    case 2: /* unsupported field in the network configuration */
    case 4: /* invalid necessary environment variables */
    case 6: /* failed to decode content */
    case 7: /* invalid network config */
        return GRPC_FAILED_PRECONDITION;
    default:
        return GRPC_INTERNAL;
    }
}

/* The last non-empty line of s, as (pointer, length), capped. */
static const char *last_line(const char *s, int *len)
{
    const char *best = "";
    size_t best_len = 0;
    for (const char *line = s; *line;) {
        size_t n = strcspn(line, "\n");
        if (n > 0) {
            best = line;
            best_len = n;
        }
        line += n;
        if (*line == '\n')
            line++;
    }
    *len = (int)(best_len > CNI_MSG_MAX ? CNI_MSG_MAX : best_len);
    return best;
}

/* A non-zero exit: the error object on stdout, or what stderr says. */
static int plugin_failure(const char *type, const char *cmd, const struct child_result *res,
                          struct error **err)
{
    json_error_t jerr;
    _cleanup_json_ json_t *doc = json_loadb(res->out, res->out_len, 0, &jerr);
    const char *msg = json_string_value(json_object_get(doc, "msg"));
    const char *details = json_string_value(json_object_get(doc, "details"));
    json_t *code = json_object_get(doc, "code");
    if (json_is_integer(code) && (msg || details)) {
        msg = msg && *msg ? msg : "(no message)";
        return error_set(err, grpc_code_of_cni(json_integer_value(code)), 0,
                         "CNI plugin %s failed (%s): %.*s%s%.*s", type, cmd, CNI_MSG_MAX, msg,
                         details && *details ? ": " : "", CNI_MSG_MAX,
                         details && *details ? details : "");
    }
    int len = 0;
    const char *line = last_line(res->err, &len);
    if (len == 0)
        line = last_line(res->out, &len);
    return error_set(err, GRPC_INTERNAL, 0, "CNI plugin %s failed (%s): exit status %d%s%.*s", type,
                     cmd, res->exit_code, len ? ": " : "", len, line);
}

/* Turn the exit into 0 (and the result, for ADD) or an error. */
static int plugin_outcome(const struct cni_op *op, const struct child_result *res, json_t **result,
                          struct error **err)
{
    const char *type = plugin_type(op, op->idx);
    const char *cmd = op_cmd(op);
    if (res->err_len > 0) {
        int len = 0;
        const char *line = last_line(res->err, &len);
        log_debug("cni plugin stderr sandbox=%s plugin=%s command=%s last_line=%.*s", op->id, type,
                  cmd, len, line);
    }
    if (res->timed_out)
        return error_set(err, GRPC_DEADLINE_EXCEEDED, 0,
                         "CNI plugin %s failed (%s): timed out after %" PRId64 " ms", type, cmd,
                         op->timeout_ms);
    if (!res->exited)
        return error_set(err, GRPC_INTERNAL, 0, "CNI plugin %s failed (%s): killed by signal %d",
                         type, cmd, res->term_signal);
    if (res->out_truncated)
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0,
                         "CNI plugin %s failed (%s): output larger than %d bytes", type, cmd,
                         CNI_OUTPUT_MAX);
    if (res->exit_code != 0)
        return plugin_failure(type, cmd, res, err);
    if (op->state != CNI_ADDING)
        return 0;
    json_error_t jerr;
    json_t *doc = json_loadb(res->out, res->out_len, 0, &jerr);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return error_set(err, GRPC_INTERNAL, 0,
                         "CNI plugin %s failed (ADD): its result is not a JSON object", type);
    }
    *result = doc;
    return 0;
}

static void cni_step(struct cni_op *op);

static void on_plugin_exit(const struct child_result *res, void *arg)
{
    struct cni_op *op = arg;
    op->child = NULL;
    json_t *result = NULL;
    struct error *tmp = NULL;
    /* A rollback only tries: its failures are logged, the ADD's error stays the one reported. */
    struct error **err = op->state == CNI_ROLLBACK ? &tmp : &op->err;
    if (plugin_outcome(op, res, &result, err) == 0 && result) {
        json_decref(op->result);
        op->result = result;
    }
    if (tmp)
        log_debug("cni rollback failed sandbox=%s: %s", op->id, tmp->msg);
    error_free(tmp);
    cni_step(op);
}

/* ---- the result cache ---- */

static int cache_write(const struct cni_op *op, struct error **err)
{
    if (!op->cache_path)
        return 0;
    _cleanup_free_ char *dir =
        xstrndup(op->cache_path, strrchr(op->cache_path, '/') - op->cache_path);
    if (mkdir_p(dir, 0700, err) < 0)
        return -1;
    _cleanup_json_ json_t *doc = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:O}", "kind", CNI_CACHE_KIND, "containerId", op->id, "ifName",
        op->ifname, "networkName", op->net_name, "cniVersion", op->version, "result", op->result);
    assert_state(doc);
    _cleanup_free_ char *text = json_dumps(doc, JSON_COMPACT);
    return persist_write(op->cache_path, text, strlen(text), 0600, err);
}

/* The cached result if it was written for this network and interface; NULL otherwise. */
static json_t *cache_read(const struct cni_op *op)
{
    if (!op->cache_path)
        return NULL;
    _cleanup_error_ struct error *tmp = NULL;
    size_t len = 0;
    _cleanup_free_ char *text = read_file_capped(op->cache_path, CNI_CACHE_MAX, &len, &tmp);
    if (!text) {
        if (tmp->grpc_code != GRPC_NOT_FOUND)
            log_debug("cni cache unreadable sandbox=%s: %s", op->id, tmp->msg);
        return NULL;
    }
    json_error_t jerr;
    _cleanup_json_ json_t *doc = json_loadb(text, len, 0, &jerr);
    const char *kind = json_string_value(json_object_get(doc, "kind"));
    const char *net = json_string_value(json_object_get(doc, "networkName"));
    const char *ifname = json_string_value(json_object_get(doc, "ifName"));
    json_t *result = json_object_get(doc, "result");
    if (!kind || strcmp(kind, CNI_CACHE_KIND) != 0 || !json_is_object(result)) {
        log_debug("cni cache invalid sandbox=%s path=%s", op->id, op->cache_path);
        return NULL;
    }
    if (!net || strcmp(net, op->net_name) != 0 || !ifname || strcmp(ifname, op->ifname) != 0) {
        log_debug("cni cache is for another network sandbox=%s network=%s", op->id, net ? net : "");
        return NULL;
    }
    return json_incref(result);
}

/* ---- the state machine ---- */

static int finish_add(struct cni_op *op, struct error **err)
{
    result_parse_doc(op->result, op->ifname, &op->res);
    if (cache_write(op, err) < 0)
        return error_prefix(err, "cache the CNI result of %s", op->id);
    return 0;
}

static void finish_del(struct cni_op *op)
{
    _cleanup_error_ struct error *tmp = NULL;
    if (op->cache_path && persist_remove(op->cache_path, &tmp) < 0)
        log_debug("cni cache removal failed sandbox=%s: %s", op->id, tmp->msg);
}

/* CNI_DONE: report once (not a cancelled op), then free. */
static void cni_finish(struct cni_op *op)
{
    op->state = CNI_DONE;
    if (!op->err || op->err->grpc_code != GRPC_CANCELLED)
        op->done(op->err, &op->res, op->arg);
    loop_defer_free(op_free, op);
}

/*
 * Fails the one way (image/pull.c says how): a state waits for the running
 * plugin, then breaks on op->err; below the switch a failed (or cancelled)
 * ADD turns into its rollback, and a failed DEL ends.
 */
static void cni_step(struct cni_op *op)
{
    struct error *tmp = NULL;
    switch (op->state) {
    case CNI_ADDING: /* waiting for the ADD of plugins[idx] */
        if (op->child)
            return;
        if (op->err)
            break;
        if (op->idx + 1 < json_array_size(op->plugins)) {
            op->idx++;
            if (spawn_plugin(op, &op->err) < 0)
                break;
            return;
        }
        if (finish_add(op, &op->err) < 0)
            break;
        cni_finish(op);
        return;
    case CNI_ROLLBACK: /* waiting for the DEL of plugins[idx]; each is tried, failures are logged */
        if (op->child)
            return;
        while (op->del_left > 0) {
            op->idx = --op->del_left;
            if (spawn_plugin(op, &tmp) == 0)
                return;
            log_debug("cni rollback failed sandbox=%s: %s", op->id, tmp->msg);
            error_clear(&tmp);
        }
        cni_finish(op);
        return;
    case CNI_DELETING: /* waiting for the DEL of plugins[idx]; it stops at the first failure */
        if (op->child)
            return;
        if (op->err)
            break;
        if (op->del_left > 0) {
            op->idx = --op->del_left;
            if (spawn_plugin(op, &op->err) < 0)
                break;
            return;
        }
        finish_del(op);
        cni_finish(op);
        return;
    case CNI_DONE:
        return;
    }
    if (op->state == CNI_DELETING) {
        /* As libcni does: the plugins left are not called. */
        cni_finish(op);
        return;
    }
    /* ADD failed or was cancelled: take back what may be set up, the failing plugin's half-done
     * work too. */
    log_debug("cni add rolling back sandbox=%s plugins=%zu", op->id, op->idx + 1);
    cni_result_clear(&op->res);
    op->state = CNI_ROLLBACK;
    op->del_left = op->idx + 1;
    cni_step(op);
}

/* ---- starting an operation ---- */

static bool is_plain_name(const char *s, size_t max)
{
    size_t len = s ? strlen(s) : 0;
    if (len == 0 || len > max || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    for (const char *p = s; *p; p++) {
        if (*p == '/' || (unsigned char)*p <= 0x20 || *p == 0x7f)
            return false;
    }
    return true;
}

/* A CNI_ARGS value: no separators of that format. */
static bool is_cni_arg(const char *s)
{
    return s && !strpbrk(s, ";=\n");
}

static json_t *string_array(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        if (v[i])
            json_array_append_new(a, json_string(v[i]));
    }
    return a;
}

static json_t *json_uint(uint64_t v)
{
    return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

static int port_mappings_json(const struct cni_pod *pod, json_t **out, struct error **err)
{
    _cleanup_json_ json_t *a = json_array();
    for (size_t i = 0; i < pod->n_port_mappings; i++) {
        const struct cni_port_mapping *m = &pod->port_mappings[i];
        if (m->host_port <= 0)
            continue; /* not exposed on the host: nothing for portmap */
        if (m->host_port > 65535 || m->container_port <= 0 || m->container_port > 65535)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "invalid port mapping %d:%d",
                             m->host_port, m->container_port);
        const char *proto = m->protocol ? m->protocol : "tcp";
        const char *lower = strcasecmp(proto, "tcp") == 0    ? "tcp"
                            : strcasecmp(proto, "udp") == 0  ? "udp"
                            : strcasecmp(proto, "sctp") == 0 ? "sctp"
                                                             : NULL;
        if (!lower)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "invalid port mapping protocol %.16s",
                             proto);
        json_t *o = json_pack("{s:i, s:i, s:s}", "hostPort", m->host_port, "containerPort",
                              m->container_port, "protocol", lower);
        if (m->host_ip && *m->host_ip)
            json_object_set_new(o, "hostIP", json_string(m->host_ip));
        json_array_append_new(a, o);
    }
    *out = json_array_size(a) > 0 ? steal_ptr(&a) : NULL;
    return 0;
}

/* The capability arguments this pod offers. */
static int capability_args(const struct cni_pod *pod, json_t **out, struct error **err)
{
    _cleanup_json_ json_t *caps = json_object();
    json_t *ports = NULL;
    if (port_mappings_json(pod, &ports, err) < 0)
        return -1;
    if (ports)
        json_object_set_new(caps, "portMappings", ports);
    const struct cni_bandwidth *bw = pod->bandwidth;
    if (bw && (bw->ingress_rate || bw->egress_rate)) {
        json_t *o = json_object();
        if (bw->ingress_rate) {
            json_object_set_new(o, "ingressRate", json_uint(bw->ingress_rate));
            json_object_set_new(o, "ingressBurst", json_uint(bw->ingress_burst));
        }
        if (bw->egress_rate) {
            json_object_set_new(o, "egressRate", json_uint(bw->egress_rate));
            json_object_set_new(o, "egressBurst", json_uint(bw->egress_burst));
        }
        json_object_set_new(caps, "bandwidth", o);
    }
    if (pod->dns) {
        const struct cni_dns *d = pod->dns;
        json_object_set_new(caps, "dns",
                            json_pack("{s:o, s:o, s:o}", "servers",
                                      string_array(d->servers, d->n_servers), "searches",
                                      string_array(d->searches, d->n_searches), "options",
                                      string_array(d->options, d->n_options)));
    }
    if (pod->n_ips > 0)
        json_object_set_new(caps, "ips", string_array(pod->ips, pod->n_ips));
    if (pod->mac && *pod->mac)
        json_object_set_new(caps, "mac", json_string(pod->mac));
    *out = steal_ptr(&caps);
    return 0;
}

static void env_add(struct cni_op *op, char *entry)
{
    op->env = xrealloc(op->env, (op->n_env + 2) * sizeof(char *));
    op->env[op->n_env++] = entry;
    op->env[op->n_env] = NULL;
}

static struct cni_op *op_new(const struct config *cfg, const struct cni_network *net,
                             const struct cni_pod *pod, bool add, struct error **err)
{
    const char *ifname = pod->ifname ? pod->ifname : "eth0";
    if (!is_plain_name(pod->container_id, 256))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "CNI: invalid sandbox id"), NULL;
    if (!is_plain_name(ifname, IFNAMSIZ - 1))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "CNI: invalid interface name"), NULL;
    if (add && (!pod->netns_path || pod->netns_path[0] != '/'))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "CNI: no network namespace path"), NULL;
    if (!is_cni_arg(pod->pod_name) || !is_cni_arg(pod->pod_namespace) || !is_cni_arg(pod->pod_uid))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "CNI: pod name, namespace and uid are required, without ';' or '='"),
               NULL;

    _cleanup_op_ struct cni_op *op = xcalloc(1, sizeof(*op));
    op->state = add ? CNI_ADDING : CNI_DELETING;
    json_error_t jerr;
    op->list = json_loads(net->conflist ? net->conflist : "", 0, &jerr);
    op->plugins = json_object_get(op->list, "plugins");
    const char *name = json_string_value(json_object_get(op->list, "name"));
    const char *version = json_string_value(json_object_get(op->list, "cniVersion"));
    if (!name || !json_is_array(op->plugins) || json_array_size(op->plugins) == 0)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "CNI network %s: invalid plugin list",
                         net->name ? net->name : "?"),
               NULL;
    if (!version || !*version)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "CNI network %s has no cniVersion",
                         name),
               NULL;
    size_t i;
    json_t *p;
    json_array_foreach(op->plugins, i, p)
    {
        const char *type = json_string_value(json_object_get(p, "type"));
        if (!json_is_object(p) || !type || !is_plain_name(type, 255))
            return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                             "CNI network %s: plugin %zu has no valid \"type\"", name, i),
                   NULL;
    }
    if (capability_args(pod, &op->caps, err) < 0)
        return NULL;
    op->id = xstrdup(pod->container_id);
    op->net_name = xstrdup(name);
    op->version = xstrdup(version);
    op->del_prev = version_at_least_0_4(version);
    op->ifname = xstrdup(ifname);
    op->cache_path =
        pod->cache_dir ? xasprintf("%s/%s.json", pod->cache_dir, pod->container_id) : NULL;
    op->timeout_ms = (int64_t)cfg->cni_timeout_s * 1000;
    op->bin_dirs = xcalloc(cfg->n_cni_bin_dirs + 1, sizeof(char *));
    struct buf path;
    buf_init(&path, 64 * 1024);
    for (size_t d = 0; d < cfg->n_cni_bin_dirs; d++) {
        op->bin_dirs[op->n_bin_dirs++] = xstrdup(cfg->cni_bin_dirs[d]);
        if (d)
            buf_append(&path, ":", 1);
        buf_append(&path, cfg->cni_bin_dirs[d], strlen(cfg->cni_bin_dirs[d]));
    }
    _cleanup_free_ char *cni_path = buf_take_str(&path, NULL);
    buf_free(&path);
    env_add(op, xasprintf("CNI_CONTAINERID=%s", op->id));
    env_add(op, xasprintf("CNI_NETNS=%s", pod->netns_path ? pod->netns_path : ""));
    env_add(op, xasprintf("CNI_IFNAME=%s", op->ifname));
    env_add(op, xasprintf("CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;"
                          "K8S_POD_INFRA_CONTAINER_ID=%s;K8S_POD_UID=%s",
                          pod->pod_namespace, pod->pod_name, op->id, pod->pod_uid));
    env_add(op, xasprintf("CNI_PATH=%s", cni_path));
    const char *env_path = getenv("PATH");
    env_add(op, xasprintf("PATH=%s", env_path && *env_path ? env_path : DEFAULT_PATH));
    return steal_ptr(&op);
}

struct cni_op *cni_add(const struct config *cfg, const struct cni_network *net,
                       const struct cni_pod *pod, cni_done_cb done, void *arg, struct error **err)
{
    assert_state(done);
    _cleanup_op_ struct cni_op *op = op_new(cfg, net, pod, true, err);
    if (!op)
        return NULL;
    op->idx = 0;
    if (spawn_plugin(op, err) < 0)
        return NULL;
    op->done = done;
    op->arg = arg;
    return steal_ptr(&op);
}

struct cni_op *cni_del(const struct config *cfg, const struct cni_network *net,
                       const struct cni_pod *pod, cni_done_cb done, void *arg, struct error **err)
{
    assert_state(done);
    _cleanup_op_ struct cni_op *op = op_new(cfg, net, pod, false, err);
    if (!op)
        return NULL;
    op->result = cache_read(op);
    op->del_left = json_array_size(op->plugins) - 1;
    op->idx = op->del_left;
    if (spawn_plugin(op, err) < 0)
        return NULL;
    op->done = done;
    op->arg = arg;
    return steal_ptr(&op);
}

void cni_cancel(struct cni_op *op)
{
    if (!op)
        return;
    /* The op lives on until its children are gone; an ADD still rolls back. */
    error_clear(&op->err);
    error_set(&op->err, GRPC_CANCELLED, 0, "CNI %s for %s cancelled", op_cmd(op), op->id);
    if (op->state != CNI_ROLLBACK && op->child)
        child_signal(op->child, SIGKILL);
}
