/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading CNI network configuration. Only the configured directory is read
 * and files are capped at CNI_CONF_MAX, so a Status call stays cheap.
 */
#include "autoconf.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "core/config.h"
#include "core/error.h"
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

static void json_decref_p(json_t **j)
{
    json_decref(*j);
}
#define _cleanup_json_local_ __attribute__((cleanup(json_decref_p)))

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
    _cleanup_json_local_ json_t *doc = json_loadb(text, len, 0, &jerr);
    if (!doc)
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "%s: invalid JSON at line %d: %s",
                         path, jerr.line, jerr.text);
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
    json_array_foreach(plugins, i, p) {
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
    _cleanup_json_local_ json_t *doc = NULL;
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
    json_array_foreach(json_object_get(doc, "plugins"), i, p) {
        const char *type = json_string_value(json_object_get(p, "type"));
        if (!plugin_installed(cfg, type)) {
            char dirs[1024];
            buf_free(&types);
            return error_set(err, GRPC_FAILED_PRECONDITION, 0,
                             "CNI plugin %s of network %s (%s) is not installed in %s", type,
                             name, path, bin_dirs_text(cfg, dirs, sizeof(dirs)));
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
