/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Implementation of registry_hosts.h.
 */
#include "autoconf.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/error.h"
#include "core/util.h"
#include "image/registry_auth.h"
#include "image/registry_hosts.h"

static void host_clear(struct registry_host *h)
{
    free(h->host);
    for (size_t i = 0; i < h->n_mirrors; i++) {
        free(h->mirrors[i].base);
        free(h->mirrors[i].authority);
    }
    free(h->ca_file);
    registry_auth_secret_free(h->username);
    registry_auth_secret_free(h->password);
    memset(h, 0, sizeof(*h));
}

static bool is_host_char(char c)
{
    return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_' || c == '~';
}

/* "host[:port]" or "[v6][:port]", port 1-65535 written back without leading zeros; NULL if bad. */
static char *authority_parse(const char *s, size_t len)
{
    const char *end = s + len;
    const char *host_end;
    if (len > 0 && s[0] == '[') {
        host_end = memchr(s, ']', len);
        if (!host_end || host_end == s + 1)
            return NULL;
        for (const char *p = s + 1; p < host_end; p++)
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
                return NULL;
        host_end++;
    } else {
        host_end = memchr(s, ':', len);
        if (!host_end)
            host_end = end;
        if (host_end == s)
            return NULL;
        for (const char *p = s; p < host_end; p++)
            if (!is_host_char(*p))
                return NULL;
    }
    size_t host_len = (size_t)(host_end - s);
    if (host_end == end || host_end + 1 == end) /* no port, or an empty one */
        return host_end == end || *host_end == ':' ? xstrndup(s, host_len) : NULL;
    if (*host_end != ':' || end - (host_end + 1) > 5)
        return NULL;
    unsigned long port = 0;
    for (const char *p = host_end + 1; p < end; p++) {
        if (!isdigit((unsigned char)*p))
            return NULL;
        port = port * 10 + (unsigned long)(*p - '0');
    }
    if (port == 0 || port > 65535)
        return NULL;
    return xasprintf("%.*s:%lu", (int)host_len, s, port);
}

/* A base path: printable, no backslash, no "." or ".." segment. */
static bool is_base_path(const char *p)
{
    for (const char *c = p; *c; c++)
        if (*c <= 0x20 || *c >= 0x7f || *c == '\\')
            return false;
    for (const char *seg = p; *seg;) {
        seg += strspn(seg, "/");
        size_t n = strcspn(seg, "/");
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return false;
        seg += n;
    }
    return true;
}

/*
 * A mirror URL split without libcurl, which registry_new() does not load:
 * [http[s]://]host[:port][/path], https when the scheme is left out. No
 * credentials (the config refuses them too), query or fragment.
 */
static int mirror_parse(struct registry_mirror *m, const char *host, const char *url,
                        struct error **err)
{
    bool https = true;
    const char *rest = url;
    const char *sep = strstr(url, "://");
    if (sep) {
        size_t n = (size_t)(sep - url);
        if (n == 4 && strncasecmp(url, "http", 4) == 0)
            https = false;
        else if (n != 5 || strncasecmp(url, "https", 5) != 0)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "registry.%s: mirror %s is not an http(s) base URL", host, url);
        rest = sep + 3;
    }
    size_t alen = strcspn(rest, "/?#");
    if (memchr(rest, '@', alen))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "registry.%s: a mirror has credentials in its URL", host);
    const char *path = rest + alen;
    _cleanup_free_ char *authority = authority_parse(rest, alen);
    if (!authority || strpbrk(path, "?#") || !is_base_path(path))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "registry.%s: mirror %s is not an http(s) base URL", host, url);
    size_t len = strlen(path);
    while (len > 0 && path[len - 1] == '/')
        len--;
    m->base = xasprintf("%s://%s%.*s", https ? "https" : "http", authority, (int)len, path);
    m->authority = steal_ptr(&authority);
    return 0;
}

int registry_hosts_load(struct registry_hosts *hosts, const struct config *cfg, struct error **err)
{
    memset(hosts, 0, sizeof(*hosts));
    if (!cfg || cfg->n_registries == 0)
        return 0;
    size_t n =
        cfg->n_registries < CONFIG_MAX_REGISTRIES ? cfg->n_registries : CONFIG_MAX_REGISTRIES;
    hosts->items = xcalloc(n, sizeof(*hosts->items));
    for (size_t i = 0; i < n; i++) {
        const struct config_registry *c = &cfg->registries[i];
        struct registry_host *h = &hosts->items[hosts->n];
        if (!c->host || !*c->host)
            continue;
        hosts->n++;
        h->host = xstrdup(c->host);
        h->insecure = c->insecure;
        h->ca_file = xstrdup_nonempty(c->ca_file);
        h->username = xstrdup_nonempty(c->username);
        h->password = c->password ? xstrdup(c->password) : NULL;
        size_t nm = c->n_mirrors < CONFIG_MAX_MIRRORS ? c->n_mirrors : CONFIG_MAX_MIRRORS;
        for (size_t j = 0; j < nm; j++) {
            if (!c->mirrors[j] || !*c->mirrors[j])
                continue;
            if (mirror_parse(&h->mirrors[h->n_mirrors], c->host, c->mirrors[j], err) < 0)
                return -1;
            h->n_mirrors++;
        }
    }
    return 0;
}

void registry_hosts_clear(struct registry_hosts *hosts)
{
    for (size_t i = 0; i < hosts->n; i++)
        host_clear(&hosts->items[i]);
    free(hosts->items);
    memset(hosts, 0, sizeof(*hosts));
}

const struct registry_host *registry_hosts_find(const struct registry_hosts *hosts,
                                                const char *authority)
{
    for (size_t i = 0; i < hosts->n; i++)
        if (strcasecmp(hosts->items[i].host, authority) == 0)
            return &hosts->items[i];
    return NULL;
}
