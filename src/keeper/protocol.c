/* SPDX-License-Identifier: Apache-2.0 */
/* The keeper's control lines: assembly and parsing (protocol.h). */
#include "autoconf.h"

#include <string.h>

#include "keeper/protocol.h"

/* A decimal 1..65535 at s[0..len), digits only. */
static bool parse_dim(const char *s, size_t len, unsigned short *out)
{
    if (len == 0 || len > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *out = (unsigned short)v;
    return true;
}

static bool is(const char *line, size_t len, const char *word)
{
    return len == strlen(word) && memcmp(line, word, len) == 0;
}

void keeper_ctl_parse(const char *line, size_t len, struct keeper_ctl_request *out)
{
    memset(out, 0, sizeof(*out));
    out->cmd = KEEPER_CTL_UNKNOWN;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (memchr(line, '\0', len))
        return;
    static const char resize[] = KEEPER_CMD_RESIZE " ";
    if (is(line, len, KEEPER_CMD_REOPEN)) {
        out->cmd = KEEPER_CTL_REOPEN;
    } else if (is(line, len, KEEPER_CMD_STDIN_CLOSE)) {
        out->cmd = KEEPER_CTL_STDIN_CLOSE;
    } else if (len >= strlen(resize) && memcmp(line, resize, strlen(resize)) == 0) {
        const char *args = line + strlen(resize);
        size_t n = len - strlen(resize);
        const char *space = memchr(args, ' ', n);
        out->cmd = KEEPER_CTL_USAGE;
        if (space && parse_dim(args, (size_t)(space - args), &out->cols) &&
            parse_dim(space + 1, n - (size_t)(space + 1 - args), &out->rows))
            out->cmd = KEEPER_CTL_RESIZE;
        else
            out->cols = out->rows = 0;
    }
}

/* Drop the line returned last. */
static void compact(struct keeper_ctl_buf *b)
{
    if (b->used == 0)
        return;
    memmove(b->data, b->data + b->used, b->len - b->used);
    b->len -= b->used;
    b->used = 0;
}

char *keeper_ctl_room(struct keeper_ctl_buf *b, size_t *room)
{
    compact(b);
    *room = sizeof(b->data) - b->len;
    return b->data + b->len;
}

void keeper_ctl_received(struct keeper_ctl_buf *b, size_t n)
{
    b->len += n;
}

const char *keeper_ctl_next_line(struct keeper_ctl_buf *b, size_t *len)
{
    compact(b);
    char *nl = memchr(b->data, '\n', b->len);
    if (!nl)
        return NULL;
    *nl = '\0';
    *len = (size_t)(nl - b->data);
    b->used = *len + 1;
    return b->data;
}

bool keeper_ctl_overflow(struct keeper_ctl_buf *b)
{
    compact(b);
    return b->len == sizeof(b->data) && !memchr(b->data, '\n', b->len);
}
