/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The request-head parser behind http.h. Bytes are collected (capped) until
 * the blank line, then the head is split in place into NUL-terminated
 * pieces. Bare LF line ends are accepted, as most servers do.
 */
#include "autoconf.h"

#include <string.h>
#include <strings.h>

#include "stream/http.h"

void http_request_init(struct http_request *r)
{
    memset(r, 0, sizeof(*r));
    buf_init(&r->raw, HTTP_HEAD_MAX + 4);
}

void http_request_clear(struct http_request *r)
{
    buf_free(&r->raw);
    memset(r, 0, sizeof(*r));
}

static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

/* Split a complete head (NUL-terminated, blank line removed) into its parts. */
static int parse_head(struct http_request *r, char *head, int *status)
{
    *status = 400;
    char *save = NULL;
    char *line = strtok_r(head, "\n", &save);
    if (!line)
        return -1;
    size_t len = strlen(line);
    if (len && line[len - 1] == '\r')
        line[--len] = '\0';
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || strchr(sp2 + 1, ' ') || sp1 == line || sp2 == sp1 + 1)
        return -1;
    *sp1 = *sp2 = '\0';
    for (const char *p = line; *p; p++) {
        if (!is_tchar(*p))
            return -1;
    }
    for (const char *p = sp1 + 1; *p; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return -1;
    }
    const char *version = sp2 + 1;
    if (strncmp(version, "HTTP/", 5) != 0 || !version[5] || version[6] != '.' || !version[7] ||
        version[8] || version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9')
        return -1;
    if (version[5] != '1') {
        *status = 505;
        return -1;
    }
    r->method = line;
    r->target = sp1 + 1;
    r->minor_version = version[7] - '0';
    while ((line = strtok_r(NULL, "\n", &save))) {
        len = strlen(line);
        if (len && line[len - 1] == '\r')
            line[--len] = '\0';
        if (line[0] == ' ' || line[0] == '\t')
            return -1; /* obsolete line folding */
        char *colon = strchr(line, ':');
        if (!colon || colon == line)
            return -1;
        *colon = '\0';
        for (const char *p = line; *p; p++) {
            if (!is_tchar(*p))
                return -1;
        }
        char *value = trim(colon + 1);
        for (const char *p = value; *p; p++) {
            if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
                return -1;
        }
        if (r->n_fields == HTTP_HEADERS_MAX) {
            *status = 431;
            return -1;
        }
        r->fields[r->n_fields++] = (struct http_field){.name = line, .value = value};
    }
    return 0;
}

ssize_t http_request_feed(struct http_request *r, const char *data, size_t n, int *status)
{
    if (r->done)
        return 0;
    size_t old = r->raw.len;
    /* Room for the head and its blank line; the rest stays with the caller. */
    size_t take = n < r->raw.cap - old ? n : r->raw.cap - old;
    if (take > 0 && buf_append(&r->raw, data, take) < 0) {
        *status = 431;
        return -1;
    }
    char *s = r->raw.data;
    size_t end = 0, body = 0;
    for (size_t i = old >= 3 ? old - 3 : 0; i < r->raw.len; i++) {
        if (s[i] != '\n')
            continue;
        if (i >= 1 && s[i - 1] == '\n') {
            end = i - 1;
            body = i + 1;
            break;
        }
        if (i >= 2 && s[i - 1] == '\r' && s[i - 2] == '\n') {
            end = i - 2;
            body = i + 1;
            break;
        }
    }
    if (!body) {
        if (r->raw.len == r->raw.cap) {
            *status = 431;
            return -1;
        }
        return (ssize_t)take;
    }
    if (end > HTTP_HEAD_MAX) {
        *status = 431;
        return -1;
    }
    size_t used = body - old;
    if (memchr(s, '\0', end)) {
        *status = 400;
        return -1;
    }
    s[end] = '\0';
    r->raw.len = end;
    /* Leading empty lines before the request line are allowed (RFC 9112 2.2). */
    char *head = s;
    while (*head == '\r' || *head == '\n')
        head++;
    if (parse_head(r, head, status) < 0)
        return -1;
    r->done = true;
    return (ssize_t)used;
}

const char *http_request_field(const struct http_request *r, const char *name)
{
    for (size_t i = 0; i < r->n_fields; i++) {
        if (strcasecmp(r->fields[i].name, name) == 0)
            return r->fields[i].value;
    }
    return NULL;
}

bool http_request_token_at(const struct http_request *r, const char *name, size_t index, char *out,
                           size_t size)
{
    size_t seen = 0;
    for (size_t i = 0; i < r->n_fields; i++) {
        if (strcasecmp(r->fields[i].name, name) != 0)
            continue;
        const char *p = r->fields[i].value;
        while (*p) {
            size_t len = strcspn(p, ",");
            const char *item = p;
            size_t n = len;
            while (n && (*item == ' ' || *item == '\t'))
                item++, n--;
            while (n && (item[n - 1] == ' ' || item[n - 1] == '\t'))
                n--;
            if (n) {
                if (seen++ == index) {
                    if (size) {
                        size_t c = n < size - 1 ? n : size - 1;
                        memcpy(out, item, c);
                        out[c] = '\0';
                    }
                    return true;
                }
            }
            p += len;
            if (*p == ',')
                p++;
        }
    }
    return false;
}

bool http_request_has_token(const struct http_request *r, const char *name, const char *tok)
{
    char item[128];
    for (size_t i = 0; http_request_token_at(r, name, i, item, sizeof(item)); i++) {
        if (strcasecmp(item, tok) == 0)
            return true;
    }
    return false;
}

const char *http_reason(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}
