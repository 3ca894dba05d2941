/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Parsing and normalising image references, following the grammar of the
 * distribution project's reference package that kubelet and containerd use:
 *   reference := name [ ":" tag ] [ "@" digest ]
 *   name      := [ domain "/" ] component ( "/" component )*
 * A first part is a domain when it has a '.' or ':', is "localhost", or has
 * upper case letters; otherwise the domain is docker.io, where one-part
 * names live under library/.
 */
#include "autoconf.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/util.h"
#include "image/ref.h"

#define NAME_MAX_LEN 255
#define TAG_MAX_LEN 128
#define DEFAULT_DOMAIN "docker.io"

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )* */
static bool is_path_component(const char *s, size_t len)
{
    if (len == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[len - 1]))
        return false;
    for (size_t i = 0; i < len;) {
        if (is_lower_alnum(s[i])) {
            i++;
            continue;
        }
        size_t sep = i;
        if (s[i] == '.') {
            i++;
        } else if (s[i] == '_') {
            i += (i + 1 < len && s[i + 1] == '_') ? 2 : 1;
        } else if (s[i] == '-') {
            while (i < len && s[i] == '-')
                i++;
        } else {
            return false;
        }
        if (i >= len || !is_lower_alnum(s[i]) || i == sep)
            return false;
    }
    return true;
}

/* host[:port], host being DNS labels or a bracketed IPv6 address. */
static bool is_domain(const char *s, size_t len)
{
    size_t host_end = len;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close)
            return false;
        for (const char *p = s + 1; p < close; p++) {
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
                return false;
        }
        host_end = (size_t)(close - s) + 1;
        if (host_end == 2)
            return false;
    } else {
        const char *colon = memchr(s, ':', len);
        if (colon)
            host_end = (size_t)(colon - s);
        size_t label = 0;
        for (size_t i = 0; i < host_end; i++) {
            char c = s[i];
            if (c == '.') {
                if (label == 0 || s[i - 1] == '-')
                    return false;
                label = 0;
            } else if (isalnum((unsigned char)c) || (c == '-' && label > 0)) {
                label++;
            } else {
                return false;
            }
        }
        if (label == 0 || s[host_end - 1] == '-')
            return false;
    }
    if (host_end == len)
        return true;
    if (s[host_end] != ':' || host_end + 1 == len || len - host_end - 1 > 5)
        return false;
    for (size_t i = host_end + 1; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
    }
    return true;
}

static bool is_tag(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > TAG_MAX_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool word = isalnum((unsigned char)c) || c == '_';
        if (!(word || (i > 0 && (c == '.' || c == '-'))))
            return false;
    }
    return true;
}

int image_ref_is_digest(const char *s)
{
    if (!s || strncmp(s, "sha256:", 7) != 0 || strlen(s) != 7 + 64)
        return 0;
    for (const char *p = s + 7; *p; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    }
    return 1;
}

static int check_digest(const char *d, const char *input, struct error **err)
{
    const char *colon = strchr(d, ':');
    if (!colon)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "image reference %s: bad digest %s", input,
                         d);
    if (strncmp(d, "sha256:", 7) != 0)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "image reference %s: unsupported digest algorithm %.*s", input,
                         (int)(colon - d), d);
    if (!image_ref_is_digest(d))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "image reference %s: digest must be sha256 followed by 64 lowercase "
                         "hex digits",
                         input);
    return 0;
}

int image_ref_parse(const char *input, struct image_ref *out, struct error **err)
{
    memset(out, 0, sizeof(*out));
    if (!input || !*input)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "image reference is empty");
    if (strlen(input) > 4096)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "image reference is too long");
    for (const char *p = input; *p; p++) {
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "image reference %s has a space or non-ASCII character", input);
    }
    _cleanup_free_ char *s = xstrdup(input);
    _cleanup_free_ char *digest = NULL;
    _cleanup_free_ char *tag = NULL;

    char *at = strchr(s, '@');
    if (at) {
        *at = '\0';
        if (check_digest(at + 1, input, err) < 0)
            return -1;
        digest = xstrdup(at + 1);
    }
    /* A tag is after the last ':' that follows the last '/'. */
    char *slash = strrchr(s, '/');
    char *colon = strrchr(slash ? slash : s, ':');
    if (colon) {
        *colon = '\0';
        if (!is_tag(colon + 1))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "image reference %s: bad tag \"%s\"",
                             input, colon + 1);
        tag = xstrdup(colon + 1);
    }
    if (!*s)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "image reference %s has no name", input);

    _cleanup_free_ char *domain = NULL;
    const char *path = s;
    char *first = strchr(s, '/');
    if (first) {
        size_t dlen = (size_t)(first - s);
        bool upper = false;
        for (size_t i = 0; i < dlen; i++)
            upper = upper || isupper((unsigned char)s[i]);
        if (memchr(s, '.', dlen) || memchr(s, ':', dlen) ||
            (dlen == 9 && !strncmp(s, "localhost", 9)) || upper) {
            if (!is_domain(s, dlen))
                return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                                 "image reference %s: bad registry host \"%.*s\"", input, (int)dlen,
                                 s);
            domain = xstrndup(s, dlen);
            path = first + 1;
        }
    }
    if (!domain || strcmp(domain, "index.docker.io") == 0) {
        free(domain);
        domain = xstrdup(DEFAULT_DOMAIN);
    }
    _cleanup_free_ char *full_path = NULL;
    if (strcmp(domain, DEFAULT_DOMAIN) == 0 && !strchr(path, '/'))
        full_path = xasprintf("library/%s", path);
    else
        full_path = xstrdup(path);

    for (const char *c = full_path;;) {
        const char *end = strchr(c, '/');
        size_t len = end ? (size_t)(end - c) : strlen(c);
        if (!is_path_component(c, len))
            return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                             "image reference %s: bad repository name component \"%.*s\" "
                             "(lower case letters, digits and separators only)",
                             input, (int)len, c);
        if (!end)
            break;
        c = end + 1;
    }
    if (strlen(domain) + 1 + strlen(full_path) > NAME_MAX_LEN)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "image reference %s: repository name longer than %d characters", input,
                         NAME_MAX_LEN);
    if (!tag && !digest)
        tag = xstrdup("latest");
    out->domain = steal_ptr(&domain);
    out->path = steal_ptr(&full_path);
    out->tag = steal_ptr(&tag);
    out->digest = steal_ptr(&digest);
    return 0;
}

char *image_ref_name(const struct image_ref *r)
{
    return xasprintf("%s/%s", r->domain, r->path);
}

char *image_ref_tagged(const struct image_ref *r)
{
    if (r->tag)
        return xasprintf("%s/%s:%s", r->domain, r->path, r->tag);
    return xasprintf("%s/%s@%s", r->domain, r->path, r->digest);
}

char *image_ref_with_digest(const struct image_ref *r, const char *digest)
{
    return xasprintf("%s/%s@%s", r->domain, r->path, digest);
}

void image_ref_clear(struct image_ref *r)
{
    free(r->domain);
    free(r->path);
    free(r->tag);
    free(r->digest);
    memset(r, 0, sizeof(*r));
}
