/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The logger (core/log), which formats each message itself so that outside
 * text in string arguments cannot forge keys. The input is split into the
 * strings of one log call whose format has a plain value (k1=%s), a value
 * the format quotes itself (k2="%s"), a cut value (k3=%.*s), a number and
 * free text. The line written must be one line, and a logfmt reader must
 * see exactly the keys time, level, msg, k1, k2, k3 and n, with k1 and k2
 * giving back exactly the strings passed.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "fuzz.h"

struct kv {
    char key[16];
    char *value; /* owned, unescaped; NULL for a bare key */
    size_t len;
};

/* Unescape a quoted value as go-logfmt does: \" \\ \n \r \t \uXXXX (ASCII only here). */
static char *unquote(const char **p, const char *end, size_t *len)
{
    char *out = xmalloc((size_t)(end - *p) + 1);
    size_t n = 0;
    const char *s = *p + 1;
    while (s < end && *s != '"') {
        if (*s == '\\') {
            FUZZ_CHECK(s + 1 < end);
            char e = s[1];
            if (e == 'u') {
                FUZZ_CHECK(end - s >= 6);
                char hex[5] = {s[2], s[3], s[4], s[5], 0};
                out[n++] = (char)strtol(hex, NULL, 16);
                s += 6;
                continue;
            }
            FUZZ_CHECK(strchr("\"\\nrt", e));
            out[n++] = e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : e;
            s += 2;
            continue;
        }
        out[n++] = *s++;
    }
    FUZZ_CHECK(s < end); /* the closing quote */
    *p = s + 1;
    out[n] = '\0';
    *len = n;
    return out;
}

static size_t logfmt(const char *line, const char *end, struct kv *kvs, size_t max)
{
    size_t n = 0;
    const char *p = line;
    while (p < end) {
        while (p < end && *p == ' ')
            p++;
        if (p >= end)
            break;
        const char *k = p;
        while (p < end && *p != ' ' && *p != '=' && *p != '"')
            p++;
        if (*p == '"') { /* a quoted word of free text */
            size_t len;
            free(unquote(&p, end, &len));
            continue;
        }
        FUZZ_CHECK(n < max);
        struct kv *kv = &kvs[n++];
        memset(kv, 0, sizeof(*kv));
        snprintf(kv->key, sizeof(kv->key), "%.*s", (int)(p - k), k);
        if (p >= end || *p != '=')
            continue;
        p++;
        if (p < end && *p == '"') {
            kv->value = unquote(&p, end, &kv->len);
        } else {
            const char *v = p;
            while (p < end && *p != ' ')
                p++;
            kv->len = (size_t)(p - v);
            kv->value = fuzz_strndup((const uint8_t *)v, kv->len);
        }
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    if (fd < 0) {
        log_set_level(LOG_LEVEL_INFO);
        fd = memfd_create("log", MFD_CLOEXEC);
        FUZZ_CHECK(fd >= 0);
    }
    const uint8_t *parts[4];
    size_t lens[4] = {0};
    size_t np = fuzz_split(data, size, parts, lens, 4);
    char *s[4];
    for (size_t i = 0; i < 4; i++)
        s[i] = i < np ? fuzz_strndup(parts[i], lens[i]) : xstrdup("");
    /* Values with a NUL are cut there, as for any C string. */
    size_t want1 = strlen(s[0]), want2 = strlen(s[1]);

    FUZZ_CHECK(ftruncate(fd, 0) == 0 && lseek(fd, 0, SEEK_SET) == 0);
    int saved = dup(STDERR_FILENO);
    FUZZ_CHECK(saved >= 0 && dup2(fd, STDERR_FILENO) >= 0);
    log_info("fuzz k1=%s k2=\"%s\" k3=%.*s n=%d free %s", s[0], s[1], 3, s[2], 42, s[3]);
    FUZZ_CHECK(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);

    char out[4096];
    ssize_t n = pread(fd, out, sizeof(out), 0);
    FUZZ_CHECK(n > 0 && (size_t)n <= 2048 && out[n - 1] == '\n');
    FUZZ_CHECK(memchr(out, '\n', (size_t)n - 1) == NULL);
    bool cut = n >= 4 && memcmp(out + n - 4, "...\n", 4) == 0;
    if (!cut) {
        struct kv kvs[64];
        size_t nk = logfmt(out, out + n - 1, kvs, 64);
        static const char *const want[] = {"time", "level", "msg", "k1", "k2", "k3", "n"};
        size_t w = 0;
        for (size_t i = 0; i < nk; i++) {
            if (kvs[i].value) {
                FUZZ_CHECK(w < ARRAY_SIZE(want) && strcmp(kvs[i].key, want[w]) == 0);
                if (w == 3)
                    FUZZ_CHECK(kvs[i].len == want1 && memcmp(kvs[i].value, s[0], want1) == 0);
                if (w == 4)
                    FUZZ_CHECK(kvs[i].len == want2 && memcmp(kvs[i].value, s[1], want2) == 0);
                w++;
            }
            free(kvs[i].value);
        }
        FUZZ_CHECK(w == ARRAY_SIZE(want));
    }
    for (size_t i = 0; i < 4; i++)
        free(s[i]);
    return 0;
}
