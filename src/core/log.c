/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The stderr logger: a timestamp, the level, and the caller's text, written
 * with one write(2) so lines from the daemon never interleave. The text is
 * formatted here, conversion by conversion, so that string arguments (names,
 * paths, messages that quote a client) are logfmt-quoted when they need it
 * and can never add a key of their own to the line.
 */
#include "autoconf.h"

#include <stdarg.h>
#include <stdbool.h>
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

/* The line being built, never past its end. */
struct line {
    char buf[2048];
    size_t len;
    bool cut; /* something did not fit */
};

/* Room kept for the "..." and the newline. */
#define LINE_RESERVE 5

static void put(struct line *l, const char *s, size_t n)
{
    size_t room = sizeof(l->buf) - LINE_RESERVE - l->len;
    if (n > room) {
        n = room;
        l->cut = true;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

/*
 * One byte of text, control characters escaped so that an event stays on one
 * line. Inside quotes, as logfmt readers (go-logfmt) unquote: \" \\ \n \r \t and
 * \u00XX, the JSON escapes.
 */
static void put_char(struct line *l, unsigned char c, bool in_quotes)
{
    char esc[8];
    if (c == '\n') {
        put(l, "\\n", 2);
    } else if (in_quotes && (c == '\t' || c == '\r')) {
        esc[0] = '\\';
        esc[1] = c == '\t' ? 't' : 'r';
        put(l, esc, 2);
    } else if (c < 0x20 || c == 0x7f) {
        snprintf(esc, sizeof(esc), in_quotes ? "\\u%04x" : "\\x%02x", c);
        put(l, esc, strlen(esc));
    } else if (in_quotes && (c == '"' || c == '\\')) {
        esc[0] = '\\';
        esc[1] = (char)c;
        put(l, esc, 2);
    } else {
        put(l, (const char *)&c, 1);
    }
}

/* Does a value need quotes to stay one logfmt value? */
static bool needs_quotes(const char *s, size_t n)
{
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == '=' || c == '"' || c == '\\' || c == 0x7f)
            return true;
    }
    return false;
}

/*
 * A string argument. Inside quotes the format already opened (key="%s") it
 * is escaped; anywhere else it is written as is when it is a plain token and
 * quoted otherwise, so that no argument can end its value and start a key of
 * its own ("name=x level=error" stays the one value of name).
 */
static void put_arg(struct line *l, const char *s, size_t n, bool in_quotes)
{
    bool quote = !in_quotes && needs_quotes(s, n);
    if (quote)
        put(l, "\"", 1);
    for (size_t i = 0; i < n; i++)
        put_char(l, (unsigned char)s[i], in_quotes || quote);
    if (quote)
        put(l, "\"", 1);
}

/*
 * printf for one conversion of fmt (at *pos, after its '%'), with its argument
 * taken from ap: returns the conversion's text in piece. The conversions are
 * those -Wformat accepts; '*' widths are read and written into the spec.
 * Returns true for a string conversion (%s).
 */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static bool format_one(const char **pos, va_list *ap, char *piece, size_t size, size_t *len,
                       bool *cut)
{
    char spec[64] = "%";
    size_t n = 1;
    const char *p = *pos;
    char length[3] = "";
    for (; *p && strchr("-+ #0123456789.*hlzjtL", *p); p++) {
        if (*p == '*') {
            n += (size_t)snprintf(spec + n, sizeof(spec) - n, "%d", va_arg(*ap, int));
        } else if (strchr("hlzjtL", *p)) {
            size_t k = strlen(length);
            if (k < 2)
                length[k] = *p;
            if (n < sizeof(spec) - 2)
                spec[n++] = *p;
        } else if (n < sizeof(spec) - 2) {
            spec[n++] = *p;
        }
        if (n >= sizeof(spec) - 2)
            n = sizeof(spec) - 2;
    }
    char conv = *p ? *p++ : '%';
    spec[n++] = conv;
    spec[n] = '\0';
    *pos = p;
    int w = 0;
    bool is_long = length[0] == 'l' && length[1] != 'l', is_ll = length[0] == 'l' && length[1];
    switch (conv) {
    case 'd':
    case 'i':
        if (is_ll || length[0] == 'j')
            w = snprintf(piece, size, spec, va_arg(*ap, long long));
        else if (is_long || length[0] == 'z' || length[0] == 't')
            w = snprintf(piece, size, spec, va_arg(*ap, long));
        else
            w = snprintf(piece, size, spec, va_arg(*ap, int));
        break;
    case 'u':
    case 'x':
    case 'X':
    case 'o':
        if (is_ll || length[0] == 'j')
            w = snprintf(piece, size, spec, va_arg(*ap, unsigned long long));
        else if (is_long || length[0] == 'z' || length[0] == 't')
            w = snprintf(piece, size, spec, va_arg(*ap, unsigned long));
        else
            w = snprintf(piece, size, spec, va_arg(*ap, unsigned));
        break;
    case 'c':
        w = snprintf(piece, size, spec, va_arg(*ap, int));
        break;
    case 'e':
    case 'E':
    case 'f':
    case 'F':
    case 'g':
    case 'G':
    case 'a':
    case 'A':
        if (length[0] == 'L')
            w = snprintf(piece, size, spec, va_arg(*ap, long double));
        else
            w = snprintf(piece, size, spec, va_arg(*ap, double));
        break;
    case 'p':
        w = snprintf(piece, size, spec, va_arg(*ap, void *));
        break;
    case 's': {
        const char *s = va_arg(*ap, const char *);
        w = snprintf(piece, size, spec, s ? s : "(null)");
        break;
    }
    default: /* "%%", or something the format checks would have refused */
        w = snprintf(piece, size, "%c", conv);
        break;
    }
    *len = w < 0 ? 0 : (size_t)w < size ? (size_t)w : size - 1;
    *cut = w >= 0 && (size_t)w >= size;
    return conv == 's';
}
#pragma GCC diagnostic pop

void log_write(enum log_level level, const char *fmt, ...)
{
    struct line l = {.len = 0};
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(l.buf, sizeof(l.buf),
                     "time=%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ level=%s msg=", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000,
                     log_level_name(level));
    if (n < 0 || (size_t)n >= sizeof(l.buf))
        return;
    l.len = (size_t)n;
    va_list ap;
    va_start(ap, fmt);
    bool in_quotes = false; /* inside a "..." the format opened */
    for (const char *p = fmt; *p && !l.cut;) {
        if (*p != '%') {
            if (*p == '"')
                in_quotes = !in_quotes;
            put_char(&l, (unsigned char)*p++, false);
            continue;
        }
        p++;
        char piece[1800];
        size_t len = 0;
        bool cut = false;
        if (format_one(&p, &ap, piece, sizeof(piece), &len, &cut))
            put_arg(&l, piece, len, in_quotes);
        else
            put(&l, piece, len);
        l.cut = l.cut || cut;
    }
    va_end(ap);
    if (l.cut) {
        memcpy(l.buf + l.len, "...", 3);
        l.len += 3;
    }
    l.buf[l.len++] = '\n';
    (void)!write(STDERR_FILENO, l.buf, l.len);
}
