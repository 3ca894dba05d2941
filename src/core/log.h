/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging: one stderr line per event,
 *   time=2026-11-25T18:00:00.123456Z level=info msg="..." key=value ...
 * The level is checked before anything is formatted. Messages are written
 * with key=value ids by the caller (sandbox=, container=, rpc=). Never log
 * credentials or auth headers.
 */
#ifndef TINYCRI_CORE_LOG_H
#define TINYCRI_CORE_LOG_H

#include <stdbool.h>

enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN = 1,
    LOG_LEVEL_INFO = 2,
    LOG_LEVEL_DEBUG = 3,
};

extern enum log_level log_current_level;

void log_set_level(enum log_level level);
/* Parse "error", "warn", "info", "debug"; returns -1 for anything else. */
int log_level_parse(const char *s, enum log_level *out);
const char *log_level_name(enum log_level level);

/*
 * Write one line. fmt is the message; the convention is a short quoted-free
 * text followed by key=value pairs, e.g. log_info("pod ready sandbox=%s", id).
 * Newlines in the formatted text are escaped so one event stays one line.
 */
void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_at(lvl, ...)                                                                           \
    do {                                                                                           \
        if ((lvl) <= log_current_level)                                                            \
            log_write((lvl), __VA_ARGS__);                                                         \
    } while (0)
#define log_error(...) log_at(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_at(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_at(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_at(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
