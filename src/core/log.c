/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The stderr logger: a timestamp, the level, and the caller's text, written
 * with one write(2) so lines from the daemon never interleave.
 */
#include "autoconf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

enum log_level log_current_level = LOG_LEVEL_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(enum log_level level)
{
    log_current_level = level;
}

int log_level_parse(const char *s, enum log_level *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *out = LOG_LEVEL_WARN;
        return 0;
    }
    return -1;
}

const char *log_level_name(enum log_level level)
{
    if ((unsigned)level >= sizeof(level_names) / sizeof(level_names[0]))
        return "unknown";
    return level_names[level];
}

void log_write(enum log_level level, const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "time=%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ level=%s msg=", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000,
                     log_level_name(level));
    if (n < 0)
        return;
    size_t off = (size_t)n;
    char text[1800];
    va_list ap;
    va_start(ap, fmt);
    int tn = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (tn < 0)
        return;
    /* Escape control characters so that one event stays on one line. */
    for (const char *p = text; *p && off + 5 < sizeof(line); p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '\n') {
            line[off++] = '\\';
            line[off++] = 'n';
        } else if (c < 0x20 || c == 0x7f) {
            off += (size_t)snprintf(line + off, sizeof(line) - off, "\\x%02x", c);
        } else {
            line[off++] = (char)c;
        }
    }
    if ((size_t)tn >= sizeof(text) && off + 4 < sizeof(line)) {
        memcpy(line + off, "...", 3);
        off += 3;
    }
    line[off++] = '\n';
    (void)!write(STDERR_FILENO, line, off);
}
