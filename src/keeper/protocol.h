/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The keeper's wire protocol, shared by the keeper (src/keeper/keeper.c,
 * which documents the behaviour behind each word) and the daemon (the
 * keeper client in pod/, and the pod-init start in pod/sandbox): its command
 * line, the status line on fd 3, the files in its state directory, the
 * control socket's commands and replies, and the attach socket's framing.
 * libc only, no allocation: the keeper links nothing of the daemon's;
 * protocol.c holds the control socket's line assembly and parsing, which the
 * keeper links and a fuzz target drives with any bytes.
 */
#ifndef TINYCRI_KEEPER_PROTOCOL_H
#define TINYCRI_KEEPER_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>

/* The binary, looked up by libexec_path() (TINYCRI_KEEPER overrides). */
#define KEEPER_BINARY "tinycri-keeper"
#define KEEPER_BINARY_ENV "TINYCRI_KEEPER"

/* Command line: option names without the leading "--". */
#define KEEPER_OPT_ID "id"
#define KEEPER_OPT_BUNDLE "bundle"
#define KEEPER_OPT_RUNTIME "runtime"
#define KEEPER_OPT_RUNTIME_ROOT "runtime-root"
#define KEEPER_OPT_STATE_DIR "state-dir"
#define KEEPER_OPT_LOG_PATH "log-path"
#define KEEPER_OPT_TTY "tty"
#define KEEPER_OPT_STDIN "stdin"
#define KEEPER_OPT_STDIN_ONCE "stdin-once"
#define KEEPER_OPT_CGROUP_PATH "cgroup-path"
/* The pod-init mode: must be the first argument. */
#define KEEPER_OPT_POD_INIT "pod-init"

/*
 * The status line on fd 3, written once: KEEPER_STATUS_CREATED "<pid>\n" when
 * the container (or the pod-init) exists, KEEPER_STATUS_ERROR "<message>\n"
 * when it could not be made.
 */
#define KEEPER_STATUS_FD 3
#define KEEPER_STATUS_CREATED "created pid="
#define KEEPER_STATUS_ERROR "error "

/* Files in the keeper's state directory. */
#define KEEPER_FILE_PID "pid"                /* the runtime's --pid-file */
#define KEEPER_FILE_KEEPER "keeper.json"     /* {"keeperPid","initPid","created"} */
#define KEEPER_FILE_EXIT "exit.json"         /* written once the init has exited */
#define KEEPER_FILE_LOG "keeper.log"         /* the keeper's stderr (the daemon opens it) */
#define KEEPER_SOCKET_CTL "ctl.sock"         /* the control socket */
#define KEEPER_SOCKET_CONSOLE "console.sock" /* the runtime's --console-socket (tty) */
#define KEEPER_SOCKET_ATTACH "attach.sock"   /* attach clients */

/* exit.json: {"exitCode":<n, 128+signal>,"signal":<n>,"finishedAt":<unix ns>,"oomKilled":<bool>} */
#define KEEPER_EXIT_CODE "exitCode"
#define KEEPER_EXIT_SIGNAL "signal"
#define KEEPER_EXIT_FINISHED_AT "finishedAt"
#define KEEPER_EXIT_OOM_KILLED "oomKilled"

/* keeper.json */
#define KEEPER_KEEPER_PID "keeperPid"
#define KEEPER_INIT_PID "initPid"
#define KEEPER_CREATED "created"

/*
 * The control socket: one command per line (at most KEEPER_CTL_LINE_MAX - 1
 * bytes plus '\n'; a '\r' before it is ignored), one reply line each:
 * KEEPER_REPLY_OK "\n" or KEEPER_REPLY_ERROR "<message>\n".
 */
#define KEEPER_CTL_LINE_MAX 128
#define KEEPER_CMD_REOPEN "reopen"
#define KEEPER_CMD_RESIZE "resize" /* "resize <cols> <rows>", each 1..65535 in decimal */
#define KEEPER_CMD_STDIN_CLOSE "stdin-close"
#define KEEPER_REPLY_OK "ok"
#define KEEPER_REPLY_ERROR "error "

enum keeper_ctl_cmd {
    KEEPER_CTL_REOPEN,      /* KEEPER_CMD_REOPEN */
    KEEPER_CTL_RESIZE,      /* KEEPER_CMD_RESIZE with two sizes */
    KEEPER_CTL_STDIN_CLOSE, /* KEEPER_CMD_STDIN_CLOSE */
    KEEPER_CTL_USAGE,       /* KEEPER_CMD_RESIZE with arguments that are not two sizes */
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

/*
 * The attach socket: the client first sends one line (at most
 * KEEPER_ATTACH_LINE_MAX bytes with the newline), KEEPER_ATTACH_REQUEST and
 * then any of the stream words, space-separated. Then the keeper sends
 * frames <stream u8><length u16 big-endian><bytes> (KEEPER_ATTACH_HEADER
 * bytes of header; an error frame is the last: the keeper closes after it),
 * and the client sends raw bytes for the container's stdin.
 */
#define KEEPER_ATTACH_LINE_MAX 64
#define KEEPER_ATTACH_REQUEST "attach"
#define KEEPER_ATTACH_STDIN "stdin"
#define KEEPER_ATTACH_STDOUT "stdout"
#define KEEPER_ATTACH_STDERR "stderr"
#define KEEPER_ATTACH_HEADER 3
#define KEEPER_ATTACH_FRAME_STDOUT 1
#define KEEPER_ATTACH_FRAME_STDERR 2
#define KEEPER_ATTACH_FRAME_ERROR 3

#endif
