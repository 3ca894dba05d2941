/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for the logger: one line per event, and string arguments that
 * cannot add keys of their own (logfmt values are quoted when they need it),
 * checked with a small logfmt parser as a log collector would read the line.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

/* Run fn with stderr going to a temp file; returns what it wrote (owned). */
static char *capture(void (*fn)(void))
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
    fn();
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    long n = ftell(tmp);
    assert_true(n >= 0);
    rewind(tmp);
    char *out = calloc(1, (size_t)n + 1);
    assert_non_null(out);
    assert_int_equal(fread(out, 1, (size_t)n, tmp), (size_t)n);
    fclose(tmp);
    return out;
}

struct kv {
    char key[64];
    char value[512];
};

/* Parse one logfmt line (key=value, key="quoted \" value", bare keys) into kvs. */
static size_t logfmt(const char *line, struct kv *kvs, size_t max)
{
    size_t n = 0;
    const char *p = line;
    while (*p && *p != '\n' && n < max) {
        while (*p == ' ')
            p++;
        if (!*p || *p == '\n')
            break;
        struct kv *kv = &kvs[n++];
        memset(kv, 0, sizeof(*kv));
        size_t k = 0;
        while (*p && *p != ' ' && *p != '=' && *p != '\n' && k + 1 < sizeof(kv->key))
            kv->key[k++] = *p++;
        if (*p != '=')
            continue;
        p++;
        size_t v = 0;
        if (*p == '"') {
            p++;
            while (*p && *p != '"' && v + 1 < sizeof(kv->value)) {
                if (*p == '\\' && p[1]) {
                    p++;
                    kv->value[v++] = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
                    p++;
                    continue;
                }
                kv->value[v++] = *p++;
            }
            if (*p == '"')
                p++;
        } else {
            while (*p && *p != ' ' && *p != '\n' && v + 1 < sizeof(kv->value))
                kv->value[v++] = *p++;
        }
    }
    return n;
}

static size_t count_key(const struct kv *kvs, size_t n, const char *key)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += strcmp(kvs[i].key, key) == 0;
    return c;
}

static const char *value_of(const struct kv *kvs, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(kvs[i].key, key) == 0)
            return kvs[i].value;
    return NULL;
}

static void log_forged(void)
{
    log_info("container created container=%s name=%s", "abc", "x\nlevel=error msg=FORGED");
}

static void test_forged_name_is_one_value(void **state)
{
    char *out = capture(log_forged);
    /* One line, and the name is quoted with its newline escaped. */
    assert_non_null(strchr(out, '\n'));
    assert_null(strchr(strchr(out, '\n') + 1, '\n'));
    assert_non_null(strstr(out, " name=\"x\\nlevel=error msg=FORGED\"\n"));
    struct kv kvs[32];
    size_t n = logfmt(out, kvs, 32);
    assert_int_equal(count_key(kvs, n, "level"), 1);
    assert_int_equal(count_key(kvs, n, "msg"), 1);
    assert_string_equal(value_of(kvs, n, "level"), "info");
    assert_string_equal(value_of(kvs, n, "container"), "abc");
    assert_string_equal(value_of(kvs, n, "name"), "x\nlevel=error msg=FORGED");
    free(out);
}

static void log_values(void)
{
    log_warn("values plain=%s space=%s eq=%s quote=%s empty=%s tab=%s", "web-1", "a b", "a=b",
             "say \"hi\"", "", "a\tb");
    log_warn("quoted by the format reason=\"%s\" n=%d", "it said \"x=1\" \\ end", 7);
    log_warn("numbers %d %u %zu %lld %llu %" PRIu64 " %" PRId32 " %.2f %x %c %%", -1, 2u, (size_t)3,
             -4LL, 5ULL, (uint64_t)6, (int32_t)-7, 8.5, 255u, 'z');
    log_warn("precision name=%.*s tail=%s", 3, "abcdef", "end");
}

static void test_values(void **state)
{
    char *out = capture(log_values);
    char *line2 = strchr(out, '\n') + 1;
    char *line3 = strchr(line2, '\n') + 1;
    char *line4 = strchr(line3, '\n') + 1;
    /* Plain tokens as they are; anything else quoted, with " and \ escaped. */
    assert_non_null(strstr(out, " plain=web-1 space=\"a b\" eq=\"a=b\" quote=\"say \\\"hi\\\"\" "
                                "empty=\"\" tab=\"a\\tb\"\n"));
    struct kv kvs[32];
    size_t n = logfmt(out, kvs, 32);
    assert_string_equal(value_of(kvs, n, "eq"), "a=b");
    assert_string_equal(value_of(kvs, n, "quote"), "say \"hi\"");
    assert_int_equal(count_key(kvs, n, "b"), 0);
    /* Inside quotes the format opened, the value is escaped, not quoted again. */
    assert_non_null(strstr(line2, " reason=\"it said \\\"x=1\\\" \\\\ end\" n=7\n"));
    n = logfmt(line2, kvs, 32);
    assert_string_equal(value_of(kvs, n, "reason"), "it said \"x=1\" \\ end");
    assert_string_equal(value_of(kvs, n, "n"), "7");
    assert_int_equal(count_key(kvs, n, "x"), 0);
    /* Every other conversion as printf writes it. */
    assert_non_null(strstr(line3, "msg=numbers -1 2 3 -4 5 6 -7 8.50 ff z %\n"));
    assert_non_null(strstr(line4, "msg=precision name=abc tail=end\n"));
    free(out);
}

static void log_long(void)
{
    char big[4000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    log_error("long value=%s", big);
}

static void test_long_line_is_cut(void **state)
{
    char *out = capture(log_long);
    size_t len = strlen(out);
    assert_true(len <= 2048);
    assert_string_equal(out + len - 4, "...\n");
    free(out);
}

int main(void)
{
    log_set_level(LOG_LEVEL_DEBUG);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forged_name_is_one_value),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_long_line_is_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
