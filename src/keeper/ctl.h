/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The keeper's control protocol, the keeper's side: clients of ctl.sock send
 * line commands of at most KEEPER_CTL_LINE_MAX - 1 bytes plus '\n' (a '\r'
 * before it is ignored), and get one reply line per command (keeper.c says
 * which commands exist and what they do). This module only assembles lines
 * from what arrives and parses them: libc only, no allocation, so the keeper
 * links it and a fuzz target drives it with any bytes.
 */
#ifndef TINYCRI_KEEPER_CTL_H
#define TINYCRI_KEEPER_CTL_H

#include <stdbool.h>
#include <stddef.h>

#define KEEPER_CTL_LINE_MAX 128

enum keeper_ctl_cmd {
    KEEPER_CTL_REOPEN,      /* "reopen" */
    KEEPER_CTL_RESIZE,      /* "resize <cols> <rows>", each 1..65535 in decimal */
    KEEPER_CTL_STDIN_CLOSE, /* "stdin-close" */
    KEEPER_CTL_USAGE,       /* "resize" with arguments that are not two sizes */
    KEEPER_CTL_UNKNOWN,     /* anything else, NUL bytes included */
};

struct keeper_ctl_request {
    enum keeper_ctl_cmd cmd;
    unsigned short cols, rows; /* KEEPER_CTL_RESIZE */
};

/* Parse one line of len bytes (without its '\n'). */
void keeper_ctl_parse(const char *line, size_t len, struct keeper_ctl_request *out);

/* One client's bytes not yet made into lines. Zero-initialised it is empty. */
struct keeper_ctl_buf {
    size_t len;  /* bytes held in data */
    size_t used; /* of which the line last returned, with its '\n' */
    char data[KEEPER_CTL_LINE_MAX];
};

/* Where the next bytes go and how many fit (0: full without a newline, the line is too long). */
char *keeper_ctl_room(struct keeper_ctl_buf *b, size_t *room);

/* n bytes were written at keeper_ctl_room(). */
void keeper_ctl_received(struct keeper_ctl_buf *b, size_t n);

/*
 * The next complete line, NUL-terminated at its '\n' (which is not
 * counted in *len), or NULL when no complete line is held. The line stays
 * valid until the next call on b.
 */
const char *keeper_ctl_next_line(struct keeper_ctl_buf *b, size_t *len);

/* No room left and no complete line: the client sent a line too long. */
bool keeper_ctl_overflow(struct keeper_ctl_buf *b);

#endif
