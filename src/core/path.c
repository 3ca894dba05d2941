/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Implementation of path.h.
 */
#include "autoconf.h"

#include <string.h>

#include "core/path.h"

/* Calls fn(component, length) for each component of p ("" ones included); stops when it says so. */
static bool any_component(const char *p, bool (*fn)(const char *c, size_t n))
{
    for (const char *c = p;;) {
        size_t n = strcspn(c, "/");
        if (fn(c, n))
            return true;
        if (c[n] == '\0')
            return false;
        c += n + 1;
    }
}

static bool is_dotdot(const char *c, size_t n)
{
    return n == 2 && c[0] == '.' && c[1] == '.';
}

static bool is_not_clean(const char *c, size_t n)
{
    return n == 0 || (n == 1 && c[0] == '.') || is_dotdot(c, n);
}

bool path_has_dotdot(const char *p)
{
    return any_component(p, is_dotdot);
}

static bool is_dot_or_dotdot(const char *c, size_t n)
{
    return (n == 1 && c[0] == '.') || is_dotdot(c, n);
}

bool path_has_dot_component(const char *p)
{
    return any_component(p, is_dot_or_dotdot);
}

bool path_has_control(const char *p)
{
    for (; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return true;
    }
    return false;
}

size_t path_longest_component(const char *p)
{
    size_t longest = 0;
    for (const char *c = p;;) {
        size_t n = strcspn(c, "/");
        if (n > longest)
            longest = n;
        if (c[n] == '\0')
            return longest;
        c += n + 1;
    }
}

bool path_is_safe_relpath(const char *p)
{
    return p[0] != '\0' && p[0] != '/' && !path_has_dotdot(p);
}

bool path_is_clean_relpath(const char *p)
{
    return path_is_safe_relpath(p) && !any_component(p, is_not_clean);
}

bool path_is_name(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len == 0 || len > max || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    return !strchr(s, '/') && !path_has_control(s);
}
