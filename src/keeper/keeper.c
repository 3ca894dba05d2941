/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tinycri-keeper: the per-container helper. tinycrid starts one keeper per
 * container; the keeper creates the container through the OCI runtime, holds
 * its stdio, writes its CRI log and records its exit. It runs independently
 * of tinycrid, so containers keep running, logging and having their exits
 * recorded while the daemon is stopped or restarting. libc only, one thread,
 * one poll(2) loop, no heap.
 *
 * Usage:
 *   tinycri-keeper --id ID --bundle DIR --runtime PATH --runtime-root DIR
 *                  --state-dir DIR --log-path FILE [--tty] [--stdin]
 *                  [--stdin-once] [--cgroup-path PATH]
 *
 * bundle, runtime-root, state-dir and log-path must be absolute (the keeper
 * chdirs to /). runtime is a path or a name looked up in PATH. state-dir must
 * exist (the daemon creates it, 0700); its length is limited only by PATH_MAX
 * (its file names must fit). The keeper holds an O_PATH fd on state-dir for its
 * whole life: a socket path under a long state-dir does not fit a socket
 * address (107 bytes), so such sockets are bound as
 * /proc/self/fd/<dirfd>/<name>, and the runtime is given
 * /proc/<keeper pid>/fd/<dirfd>/console.sock (the runtime runs as root and
 * can resolve the keeper's fd link); paths that fit are used as they are.
 * A client of ctl.sock must do the same for a long state-dir (tinycrid
 * connects through /proc/self/fd/<its own O_PATH fd on state-dir>).
 * cgroup-path is the container's cgroupfs path (linux.cgroupsPath), used
 * only for OOM detection; systemd "slice:prefix:name" paths are not supported.
 *
 * Start-up:
 * - Closes every inherited fd except 0-2 and 3; fd 3, if open, is the status
 *   pipe to the daemon (marked close-on-exec, closed after the report).
 * - Becomes a child subreaper (PR_SET_CHILD_SUBREAPER) and its own session
 *   (setsid), ignores SIGPIPE, and ignores SIGTERM, SIGINT and SIGHUP so that a
 *   daemon restart or a signal to its process group never kills it. The
 *   daemon stops containers through the runtime (`kill`), never through the
 *   keeper. SIGKILL to the keeper loses the log and exit record (the daemon
 *   then reports the container as UNKNOWN); the container keeps running.
 * - Opens log-path for appending (created 0640 if missing) and creates the
 *   control socket <state-dir>/ctl.sock (0600).
 *
 * Create:
 * - Without --tty, makes pipes for the container's stdout and stderr, and for
 *   stdin with --stdin (otherwise stdin is /dev/null), and runs
 *     <runtime> --root <runtime-root> create --bundle <bundle>
 *               --pid-file <state-dir>/pid <id>
 *   with those pipes as the runtime's stdio; the container init inherits them.
 *   Whatever arrives on them before `create` exits is the runtime's own output
 *   (the init cannot run user code before `start`): it is captured for the
 *   error report, not logged.
 * - With --tty, also passes --console-socket <state-dir>/console.sock (or its
 *   /proc/<keeper pid>/fd/<dirfd> form, see above) and receives the pty master over SCM_RIGHTS; the
 * runtime's stdout/stderr go to a capture pipe. The pty master is read as the container's stdout
 * (tty output has no stderr) and is the container's stdin.
 * - Reports on fd 3 one line: "created pid=<init pid>\n" on success, or
 *   "error <message>\n" (one line, the runtime's output capped to its last
 *   2 KiB) on failure, and then exits 1 without touching the container: the
 *   daemon cleans up with `<runtime> delete -f`. On success it also writes
 *   <state-dir>/keeper.json atomically (temp file, fsync, rename, dir fsync):
 *     {"keeperPid":<pid>,"initPid":<pid>,"created":<unix ns>}
 * - There is no create timeout here: the daemon bounds create by killing the
 *   keeper (SIGKILL) and deleting the container.
 *
 * Running: the daemon runs `<runtime> start <id>` itself. The keeper holds the
 * stdio and writes the log until the init process exits. Because the keeper
 * is a subreaper, the init (forked by the runtime) is reparented to it when
 * `create` exits; the keeper checks this at create time and reports an error
 * otherwise. Other orphans reparented to the keeper are reaped too.
 *
 * Exit: when the init exits the keeper reads the pipes until every writer
 * has gone (EOF, or EIO on the pty) or for at most 2 s (processes outside
 * the container's pid namespace may hold them), flushes unfinished lines as
 * P records, and writes <state-dir>/exit.json atomically:
 *   {"exitCode":<n, 128+sig if signalled>,"signal":<sig or 0>,
 *    "finishedAt":<unix ns of the reap>,"oomKilled":<bool>}
 * then removes its sockets and exits 0. oomKilled: the cgroup's "oom_kill"
 * counter grew between create and exit (cgroup v1:
 * /sys/fs/cgroup/memory/<cgroup-path>/memory.oom_control; v2:
 * /sys/fs/cgroup/<cgroup-path>/memory.events); without that counter, signal 9
 * together with memory.failcnt > 0 (v1). Without --cgroup-path it is false.
 *
 * Control socket <state-dir>/ctl.sock, AF_UNIX stream, 0600, at most 4
 * clients, line commands of at most 127 bytes (assembled and parsed by
 * protocol.c); every command gets one reply line, "ok\n" or "error <message>\n":
 *   reopen               reopen log-path (the kubelet rotates by renaming the
 *                        file, then asks for a reopen); unfinished lines go
 *                        to the new file
 *   resize <cols> <rows> TIOCSWINSZ on the pty master (--tty only); sizes
 *                        in decimal, 1..65535
 *   stdin-close          close the write end of the stdin pipe (--stdin only);
 *                        with --tty, send the terminal's EOF character instead
 *
 * Attach socket <state-dir>/attach.sock, AF_UNIX stream, 0600 (reached like
 * ctl.sock), at most 4 clients at once. A client sends one line first,
 * "attach" followed by any of the words "stdin", "stdout", "stderr" (what it
 * wants), at most 63 bytes. Then:
 *   keeper -> client: frames <stream u8><length u16 big-endian><bytes>, stream
 *                     1 stdout, 2 stderr (a tty has only 1), 3 an error text
 *                     after which the keeper closes the connection. Every
 *                     piece of container output goes to every client that
 *                     wants its stream, and still to the log.
 *   client -> keeper: raw bytes for the container's stdin (with "stdin", when
 *                     the container has one: --stdin; else read and dropped).
 *                     The client's end of input (shutdown(SHUT_WR) or
 *                     closing) ends its attach session; with --stdin-once the
 *                     container's stdin is then closed (tty: the terminal's
 *                     EOF character is sent), as after "stdin-close".
 * A client that does not read is never waited for: what the socket does not
 * take goes to a 20 KiB buffer of its own; when that is full, the client is
 * cut off (closed), and the container and the log go on. When the container
 * has exited, clients get what is buffered for at most 1 s, then the
 * connection closes: EOF means the container's output is over.
 *
 * Exit status: 0 after exit.json is written, 1 on a failure reported on fd 3
 * (and stderr), 2 on a usage error. Diagnostics go to stderr, one line each.
 *
 * Memory: a 16 KiB read buffer, the log writer's 2 x 16 KiB line buffers and
 * each attach client's 20 KiB output and 4 KiB input buffers are static;
 * container output never grows memory. Statically linked, the
 * keeper's RssAnon is about 70 KiB while a container logs short lines and
 * about 110 KiB with every buffer in use (dynamically linked: +45 KiB).
 *
 * Pod-init mode:
 *   tinycri-keeper --pod-init [--id SANDBOX_ID]
 * gives a pod a PID namespace shared by its containers (pid mode POD), the
 * job of the "pause" process elsewhere. The keeper unshares CLONE_NEWPID and
 * forks: the child is PID 1 of the new namespace. It makes itself a session
 * leader, chdirs to /, puts /dev/null on 0-2 and closes every other fd (so it
 * holds no pipe of the daemon's), ignores every signal it can (SIGKILL from
 * outside still ends it, and with it every process of the namespace), and
 * reaps zombies forever, sleeping in sigwaitinfo(SIGCHLD) in between; it
 * never allocates. The keeper reports "created pid=<child's host pid>\n" on
 * fd 3 (or "error <message>\n") and exits 0 (1 on failure), so the pod-init
 * is reparented to the nearest subreaper or init. The daemon watches it
 * through a pidfd and joins /proc/<pid>/ns/pid; --id only labels diagnostics.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "keeper/ctr_log.h"
#include "keeper/protocol.h"

#define STATUS_FD KEEPER_STATUS_FD
/* One CRI line's worth: reads are cheap, resident pages are not (budget 128 KiB). */
#define READ_BUF_SIZE (16 * 1024)
#define RUNTIME_OUTPUT_CAP 2048
#define MAX_CLIENTS 4
#define MAX_ATTACH 4
#define ATTACH_LINE_MAX KEEPER_ATTACH_LINE_MAX
#define ATTACH_HEADER KEEPER_ATTACH_HEADER
/* A whole read (READ_BUF_SIZE) framed, plus what a partly written frame left. */
#define ATTACH_OUT_SIZE (20 * 1024)
#define ATTACH_IN_SIZE 4096
#define ATTACH_FLUSH_MS 1000
#define DRAIN_TIMEOUT_MS 2000
/* Every state file path fits; checked against --state-dir at start-up. Socket
 * addresses are shorter: see sock_addr(). */
#define STATE_PATH_MAX PATH_MAX
#define MSG_MAX 3072

enum keeper_state {
    KEEPER_CREATING, /* `runtime create` running; waiting for its exit */
    KEEPER_RUNNING,  /* init created (and later started); waiting for its exit */
    KEEPER_DRAINING, /* init reaped; reading stdio until EOF or the drain deadline */
    KEEPER_DONE,     /* exit.json written */
};

struct opts {
    const char *id;
    const char *bundle;
    const char *runtime;
    const char *runtime_root;
    const char *state_dir;
    const char *log_path;
    const char *cgroup_path;
    bool tty;
    bool stdin_open;
    bool stdin_once;
};

struct client {
    int fd;
    struct keeper_ctl_buf buf;
};

enum attach_stream {
    ATTACH_STDOUT = KEEPER_ATTACH_FRAME_STDOUT,
    ATTACH_STDERR = KEEPER_ATTACH_FRAME_STDERR,
    ATTACH_ERROR = KEEPER_ATTACH_FRAME_ERROR,
};

struct attach {
    int fd;     /* -1: free slot */
    bool ready; /* the request line was read */
    bool want_in, want_out, want_err;
    bool in_done; /* the client's input ended */
    size_t line_len;
    char line[ATTACH_LINE_MAX];
    size_t out_len;        /* framed output the socket has not taken yet (in out) */
    size_t in_off, in_len; /* stdin bytes read, not yet written to the container (in in) */
    uint8_t *out;          /* attach_out[slot]: ATTACH_OUT_SIZE bytes */
    uint8_t *in;           /* attach_in[slot]: ATTACH_IN_SIZE bytes */
};

struct keeper {
    enum keeper_state state;
    struct opts o;
    int status_fd;    /* pipe to the daemon, -1 once reported */
    int sig_fd;       /* signalfd for SIGCHLD */
    int dir_fd;       /* O_PATH fd on state-dir: short socket addresses */
    int ctl_fd;       /* listening control socket */
    int console_fd;   /* listening console socket (tty), -1 once the master arrived */
    int console_conn; /* accepted runtime connection on it */
    int out_fd;       /* container stdout pipe, or the pty master */
    int err_fd;       /* container stderr pipe (non-tty) */
    int in_fd;        /* write end of the container stdin pipe (non-tty --stdin) */
    int rt_fd;        /* the runtime's own output (tty mode) */
    pid_t create_pid;
    bool create_exited;
    int create_status;
    pid_t init_pid;
    bool init_exited;
    int init_status;
    int64_t created_ns;
    int64_t finished_ns;
    int64_t drain_deadline_ns;
    int64_t oom_before; /* -1 when the counter is unavailable */
    size_t rt_len;
    char rt_out[RUNTIME_OUTPUT_CAP];
    struct client clients[MAX_CLIENTS];
    int attach_fd; /* listening attach socket */
};

static struct keeper k;
static struct attach attached[MAX_ATTACH];
/* Apart from the slots, so that only a buffer in use is ever resident. */
static uint8_t attach_out[MAX_ATTACH][ATTACH_OUT_SIZE];
static uint8_t attach_in[MAX_ATTACH][ATTACH_IN_SIZE];
static void attach_fanout(enum ctr_log_stream s, const char *data, size_t n);
static struct ctr_log log_writer;
static char read_buf[READ_BUF_SIZE];
static mode_t saved_umask;

/* ---------------------------------------------------------------------- */
/* small helpers                                                           */
/* ---------------------------------------------------------------------- */

static void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void diag(const char *fmt, ...)
{
    char msg[MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    dprintf(STDERR_FILENO, "tinycri-keeper[%s]: %s\n", k.o.id ? k.o.id : "?", msg);
}

static int64_t now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* <state-dir>/<name> into out (STATE_PATH_MAX bytes; lengths checked at start-up). */
static char *state_path(char *out, const char *name)
{
    snprintf(out, STATE_PATH_MAX, "%s/%s", k.o.state_dir, name);
    return out;
}

/*
 * The address of the socket <state-dir>/<name> as seen by process pid ("self"
 * for the keeper): the path itself when it fits sun_path, else
 * /proc/<pid>/fd/<dirfd>/<name>, resolved like any path. -1 if even that is too long.
 */
static int sock_addr(char out[sizeof(((struct sockaddr_un *)0)->sun_path)], const char *pid,
                     const char *name)
{
    size_t size = sizeof(((struct sockaddr_un *)0)->sun_path);
    if ((size_t)snprintf(out, size, "%s/%s", k.o.state_dir, name) < size)
        return 0;
    if ((size_t)snprintf(out, size, "/proc/%s/fd/%d/%s", pid, k.dir_fd, name) < size)
        return 0;
    errno = ENAMETOOLONG;
    return -1;
}

/*
 * Write <state-dir>/<name> so that a reader sees the old file or the whole new
 * one, even across a crash: temp file, fsync, rename, directory fsync.
 */
static int write_state_file(const char *name, const char *text)
{
    char tmp[STATE_PATH_MAX + 8], path[STATE_PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", k.o.state_dir, name);
    state_path(path, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -1;
    if (fd_write_all(fd, text, strlen(text)) < 0 || fsync(fd) < 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        errno = e;
        return -1;
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    int dfd = open(k.o.state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* Report to the daemon once, on fd 3 if it was open; then close it. */
static void report(const char *line)
{
    if (k.status_fd < 0)
        return;
    if (fd_write_all(k.status_fd, line, strlen(line)) < 0)
        diag("write status fd: %s", strerror(errno));
    close_fd(&k.status_fd);
}

/* Remove the sockets this keeper created; they mean "a keeper is here". */
static void remove_sockets(void)
{
    char path[STATE_PATH_MAX];
    if (k.ctl_fd >= 0)
        unlink(state_path(path, KEEPER_SOCKET_CTL));
    if (k.console_fd >= 0)
        unlink(state_path(path, KEEPER_SOCKET_CONSOLE));
    if (k.attach_fd >= 0)
        unlink(state_path(path, KEEPER_SOCKET_ATTACH));
}

/*
 * A create-time failure: report "error <msg>" on fd 3 and stderr and exit 1.
 * The message is made one line; control characters become spaces.
 */
static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
    const size_t head = sizeof(KEEPER_STATUS_ERROR) - 1;
    char line[MSG_MAX + 8] = KEEPER_STATUS_ERROR;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + head, MSG_MAX, fmt, ap);
    va_end(ap);
    size_t n = strlen(line);
    while (n > head && (line[n - 1] == ' ' || (unsigned char)line[n - 1] < 0x20))
        n--;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = ' ';
    }
    line[n] = '\0';
    diag("%s", line);
    line[n] = '\n';
    line[n + 1] = '\0';
    report(line);
    remove_sockets();
    exit(1);
}

/* ---------------------------------------------------------------------- */
/* start-up                                                                */
/* ---------------------------------------------------------------------- */

static void usage(void)
{
    fputs("usage: tinycri-keeper --id ID --bundle DIR --runtime PATH --runtime-root DIR\n"
          "                      --state-dir DIR --log-path FILE [--tty] [--stdin]\n"
          "                      [--stdin-once] [--cgroup-path PATH]\n"
          "       tinycri-keeper --pod-init [--id ID]\n",
          stderr);
    exit(2);
}

static void parse_args(int argc, char **argv, struct opts *o)
{
    enum { O_ID = 256, O_BUNDLE, O_RUNTIME, O_ROOT, O_STATE, O_LOG, O_TTY, O_STDIN, O_ONCE, O_CG };
    static const struct option longopts[] = {
        {KEEPER_OPT_ID, required_argument, NULL, O_ID},
        {KEEPER_OPT_BUNDLE, required_argument, NULL, O_BUNDLE},
        {KEEPER_OPT_RUNTIME, required_argument, NULL, O_RUNTIME},
        {KEEPER_OPT_RUNTIME_ROOT, required_argument, NULL, O_ROOT},
        {KEEPER_OPT_STATE_DIR, required_argument, NULL, O_STATE},
        {KEEPER_OPT_LOG_PATH, required_argument, NULL, O_LOG},
        {KEEPER_OPT_TTY, no_argument, NULL, O_TTY},
        {KEEPER_OPT_STDIN, no_argument, NULL, O_STDIN},
        {KEEPER_OPT_STDIN_ONCE, no_argument, NULL, O_ONCE},
        {KEEPER_OPT_CGROUP_PATH, required_argument, NULL, O_CG},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case O_ID:
            o->id = optarg;
            break;
        case O_BUNDLE:
            o->bundle = optarg;
            break;
        case O_RUNTIME:
            o->runtime = optarg;
            break;
        case O_ROOT:
            o->runtime_root = optarg;
            break;
        case O_STATE:
            o->state_dir = optarg;
            break;
        case O_LOG:
            o->log_path = optarg;
            break;
        case O_TTY:
            o->tty = true;
            break;
        case O_STDIN:
            o->stdin_open = true;
            break;
        case O_ONCE:
            o->stdin_once = true;
            break;
        case O_CG:
            o->cgroup_path = optarg;
            break;
        default:
            usage();
        }
    }
    if (optind != argc || !o->id || !o->bundle || !o->runtime || !o->runtime_root ||
        !o->state_dir || !o->log_path)
        usage();
    const char *abs[] = {o->bundle, o->runtime_root, o->state_dir, o->log_path};
    for (size_t i = 0; i < sizeof(abs) / sizeof(abs[0]); i++) {
        if (abs[i][0] != '/') {
            fprintf(stderr, "tinycri-keeper: %s: not an absolute path\n", abs[i]);
            usage();
        }
    }
    if (o->id[0] == '\0' || o->id[0] == '-') {
        fprintf(stderr, "tinycri-keeper: invalid container id\n");
        usage();
    }
    /* The longest state file name is ".keeper.json.tmp" (".exit.json.tmp" and
     * KEEPER_SOCKET_CONSOLE are shorter); sockets are bound through dir_fd if need be. */
    if (strlen(o->state_dir) + sizeof("/.keeper.json.tmp") > STATE_PATH_MAX) {
        fprintf(stderr, "tinycri-keeper: --state-dir is too long\n");
        usage();
    }
}

/* Close every fd but 0-2 and the status fd, whatever the daemon leaked. */
static void close_inherited_fds(void)
{
    if (fcntl(STATUS_FD, F_GETFD) >= 0) {
        k.status_fd = STATUS_FD;
        fcntl(STATUS_FD, F_SETFD, FD_CLOEXEC);
    }
    /* A closed 0-2 would be reused by our pipes and then clobbered by the
     * dup2()s that set up the runtime's stdio. */
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
            exit(2);
    }
    if (close_range(STATUS_FD + 1, ~0U, 0) == 0)
        return;
    /* Kernel before 5.9: close what is open. */
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = STATUS_FD + 1; fd < (max > 0 ? max : 65536); fd++)
        close((int)fd);
}

static void setup_process(void)
{
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        fail("prctl(PR_SET_CHILD_SUBREAPER): %s", strerror(errno));
    /* EPERM means we already lead a process group; a session is a bonus then. */
    setsid();
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    k.sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (k.sig_fd < 0)
        fail("signalfd: %s", strerror(errno));
    if (chdir("/") < 0)
        fail("chdir /: %s", strerror(errno));
    saved_umask = umask(027);
}

/* Listen on <state-dir>/<name>; its path goes to path (STATE_PATH_MAX bytes). */
static int listen_unix(char *path, const char *name)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    state_path(path, name);
    if (sock_addr(addr.sun_path, "self", name) < 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    unlink(path);
    /* Created 0600 from the start: the umask applies to the socket inode. */
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    umask(old);
    if (rc < 0 || listen(fd, MAX_CLIENTS) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* ---------------------------------------------------------------------- */
/* create                                                                  */
/* ---------------------------------------------------------------------- */

/* In the forked child: stdio in place, signal state reset, then exec. */
__attribute__((noreturn)) static void exec_runtime(int in, int out, int err, char **argv)
{
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
        _exit(127);
    /* Ignored signals and the blocked mask survive exec: the container's
     * processes must start with default dispositions. */
    /* Every signal: the keeper may itself have inherited ignored ones. */
    for (int sig = 1; sig < NSIG; sig++)
        signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    umask(saved_umask);
    execvp(argv[0], argv);
    dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static void start_create(void)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    char pid_path[STATE_PATH_MAX], console_path[STATE_PATH_MAX];
    char console_arg[sizeof(((struct sockaddr_un *)0)->sun_path)];
    state_path(pid_path, KEEPER_FILE_PID);
    unlink(pid_path);

    if (k.o.stdin_open && !k.o.tty) {
        if (pipe2(in, O_CLOEXEC) < 0)
            fail("pipe: %s", strerror(errno));
    } else {
        in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (in[0] < 0)
            fail("open /dev/null: %s", strerror(errno));
    }
    if (pipe2(out, O_CLOEXEC) < 0)
        fail("pipe: %s", strerror(errno));
    if (k.o.tty) {
        /* The runtime's stdout and stderr share one capture pipe. */
        err[0] = -1;
        err[1] = out[1];
        k.console_fd = listen_unix(console_path, KEEPER_SOCKET_CONSOLE);
        if (k.console_fd < 0)
            fail("listen on %s: %s", console_path, strerror(errno));
        /* The runtime is another process: "self" would be itself. */
        char pid[24];
        snprintf(pid, sizeof(pid), "%d", (int)getpid());
        if (sock_addr(console_arg, pid, KEEPER_SOCKET_CONSOLE) < 0)
            fail("console socket %s: %s", console_path, strerror(errno));
    } else if (pipe2(err, O_CLOEXEC) < 0) {
        fail("pipe: %s", strerror(errno));
    }

    char *argv[16];
    int n = 0;
    argv[n++] = (char *)k.o.runtime;
    argv[n++] = (char *)"--root";
    argv[n++] = (char *)k.o.runtime_root;
    argv[n++] = (char *)"create";
    argv[n++] = (char *)"--bundle";
    argv[n++] = (char *)k.o.bundle;
    argv[n++] = (char *)"--pid-file";
    argv[n++] = pid_path;
    if (k.o.tty) {
        argv[n++] = (char *)"--console-socket";
        argv[n++] = console_arg;
    }
    argv[n++] = (char *)k.o.id;
    argv[n] = NULL;

    k.create_pid = fork();
    if (k.create_pid < 0)
        fail("fork: %s", strerror(errno));
    if (k.create_pid == 0)
        exec_runtime(in[0], out[1], err[1], argv);

    /* Only the container may hold the write ends, or EOF never comes. */
    close(in[0]);
    close(out[1]);
    if (!k.o.tty)
        close(err[1]);
    k.in_fd = in[1];
    if (k.o.tty) {
        k.rt_fd = out[0];
    } else {
        k.out_fd = out[0];
        k.err_fd = err[0];
    }
    if ((k.out_fd >= 0 && fd_set_nonblock(k.out_fd, true) < 0) ||
        (k.err_fd >= 0 && fd_set_nonblock(k.err_fd, true) < 0) ||
        (k.rt_fd >= 0 && fd_set_nonblock(k.rt_fd, true) < 0) ||
        (k.in_fd >= 0 && fd_set_nonblock(k.in_fd, true) < 0))
        fail("fcntl O_NONBLOCK: %s", strerror(errno));
}

/* Keep the last RUNTIME_OUTPUT_CAP bytes: runtimes print the fatal error last. */
static void capture_runtime_output(const char *data, size_t n)
{
    if (n >= sizeof(k.rt_out)) {
        memcpy(k.rt_out, data + n - sizeof(k.rt_out), sizeof(k.rt_out));
        k.rt_len = sizeof(k.rt_out);
        return;
    }
    if (k.rt_len + n > sizeof(k.rt_out)) {
        size_t drop = k.rt_len + n - sizeof(k.rt_out);
        memmove(k.rt_out, k.rt_out + drop, k.rt_len - drop);
        k.rt_len -= drop;
    }
    memcpy(k.rt_out + k.rt_len, data, n);
    k.rt_len += n;
}

/* Read what the runtime has written so far without blocking. */
static void drain_runtime_output(int fd)
{
    for (;;) {
        ssize_t n = read(fd, read_buf, sizeof(read_buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        capture_runtime_output(read_buf, (size_t)n);
    }
}

/* Receive the pty master on an accepted console connection; 1 once done. */
static int receive_console(void)
{
    char data[256];
    union {
        struct cmsghdr hdr;
        char buf[CMSG_SPACE(sizeof(int))];
    } cmsg;
    struct iovec iov = {data, sizeof(data)};
    struct msghdr msg = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = cmsg.buf,
        .msg_controllen = sizeof(cmsg.buf),
    };
    ssize_t n = recvmsg(k.console_conn, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n < 0)
        fail("receive the console: %s", strerror(errno));
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
        c->cmsg_len != CMSG_LEN(sizeof(int)))
        fail("the runtime sent no pty master on the console socket");
    int master;
    memcpy(&master, CMSG_DATA(c), sizeof(int));
    if (fd_set_nonblock(master, true) < 0)
        fail("fcntl O_NONBLOCK: %s", strerror(errno));
    k.out_fd = master;
    char path[STATE_PATH_MAX];
    unlink(state_path(path, KEEPER_SOCKET_CONSOLE));
    close_fd(&k.console_conn);
    close_fd(&k.console_fd);
    return 1;
}

static void on_console_listen(void)
{
    if (k.console_conn >= 0)
        return;
    k.console_conn = accept4(k.console_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (k.console_conn < 0 && errno != EAGAIN && errno != EINTR)
        fail("accept on the console socket: %s", strerror(errno));
}

static pid_t read_pid_file(void)
{
    char path[STATE_PATH_MAX], text[32];
    int fd = open(state_path(path, KEEPER_FILE_PID), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fail("runtime create left no pid file %s: %s", path, strerror(errno));
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        fail("empty pid file %s", path);
    text[n] = '\0';
    char *end;
    errno = 0;
    long pid = strtol(text, &end, 10);
    while (*end == '\n' || *end == ' ')
        end++;
    if (errno || end == text || *end || pid <= 1 || pid > INT_MAX)
        fail("invalid pid file %s", path);
    return (pid_t)pid;
}

/* ---------------------------------------------------------------------- */
/* OOM detection                                                           */
/* ---------------------------------------------------------------------- */

/* The value of the line "<key> <n>" in a small cgroup file (the number the
 * file holds when key is NULL), or -1. */
static int64_t cgroup_value(const char *root, const char *file, const char *key)
{
    if (!k.o.cgroup_path)
        return -1;
    char path[512], text[512];
    const char *sep = k.o.cgroup_path[0] == '/' ? "" : "/";
    if ((size_t)snprintf(path, sizeof(path), "%s%s%s/%s", root, sep, k.o.cgroup_path, file) >=
        sizeof(path))
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    text[n] = '\0';
    if (!key)
        return strtoll(text, NULL, 10);
    size_t klen = strlen(key);
    char *line = text;
    while (line) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ')
            return strtoll(line + klen + 1, NULL, 10);
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return -1;
}

static int64_t oom_kill_count(void)
{
    int64_t v = cgroup_value("/sys/fs/cgroup/memory", "memory.oom_control", "oom_kill");
    if (v < 0)
        v = cgroup_value("/sys/fs/cgroup", "memory.events", "oom_kill");
    return v;
}

static bool was_oom_killed(void)
{
    int64_t after = oom_kill_count();
    if (k.oom_before >= 0 && after >= 0)
        return after > k.oom_before;
    if (WIFSIGNALED(k.init_status) && WTERMSIG(k.init_status) == SIGKILL)
        return cgroup_value("/sys/fs/cgroup/memory", "memory.failcnt", NULL) > 0;
    return false;
}

/* ---------------------------------------------------------------------- */
/* state transitions                                                       */
/* ---------------------------------------------------------------------- */

/* `runtime create` has exited: check it, find the init, tell the daemon. */
static void create_done(void)
{
    int st = k.create_status;
    if (k.o.tty)
        drain_runtime_output(k.rt_fd);
    else {
        drain_runtime_output(k.out_fd);
        drain_runtime_output(k.err_fd);
    }
    k.rt_out[k.rt_len < sizeof(k.rt_out) ? k.rt_len : sizeof(k.rt_out) - 1] = '\0';
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        if (WIFSIGNALED(st))
            fail("runtime create killed by signal %d: %s", WTERMSIG(st), k.rt_out);
        fail("runtime create exited with status %d: %s", WEXITSTATUS(st), k.rt_out);
    }
    if (k.rt_len > 0)
        diag("runtime create: %s", k.rt_out);
    k.rt_len = 0;

    if (k.o.tty && k.out_fd < 0) {
        /* The runtime has exited, so its connection and message are queued. */
        on_console_listen();
        if (k.console_conn < 0 || !receive_console())
            fail("runtime create exited without sending the pty master");
    }

    k.init_pid = read_pid_file();
    siginfo_t si = {0};
    if (waitid(P_PID, (id_t)k.init_pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
        fail("container init %d is not a child of the keeper: %s", (int)k.init_pid,
             strerror(errno));
    k.oom_before = oom_kill_count();
    k.created_ns = now_ns(CLOCK_REALTIME);

    char json[160];
    snprintf(json, sizeof(json),
             "{\"" KEEPER_KEEPER_PID "\":%d,\"" KEEPER_INIT_PID "\":%d,\"" KEEPER_CREATED
             "\":%lld}\n",
             (int)getpid(), (int)k.init_pid, (long long)k.created_ns);
    if (write_state_file(KEEPER_FILE_KEEPER, json) < 0)
        fail("write %s/" KEEPER_FILE_KEEPER ": %s", k.o.state_dir, strerror(errno));
    char line[64];
    snprintf(line, sizeof(line), KEEPER_STATUS_CREATED "%d\n", (int)k.init_pid);
    report(line);
}

static bool outputs_open(void)
{
    return k.out_fd >= 0 || k.err_fd >= 0;
}

/* The init has exited and its output is drained: record the exit. */
static void write_exit(void)
{
    ctr_log_close(&log_writer);
    if (log_writer.write_errno)
        diag("writing %s failed: %s", k.o.log_path, strerror(log_writer.write_errno));
    int st = k.init_status;
    int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    int code = sig ? 128 + sig : WEXITSTATUS(st);
    char json[192];
    snprintf(json, sizeof(json),
             "{\"" KEEPER_EXIT_CODE "\":%d,\"" KEEPER_EXIT_SIGNAL "\":%d,\"" KEEPER_EXIT_FINISHED_AT
             "\":%lld,\"" KEEPER_EXIT_OOM_KILLED "\":%s}\n",
             code, sig, (long long)k.finished_ns, was_oom_killed() ? "true" : "false");
    if (write_state_file(KEEPER_FILE_EXIT, json) < 0) {
        diag("write %s/" KEEPER_FILE_EXIT ": %s", k.o.state_dir, strerror(errno));
        remove_sockets();
        exit(1);
    }
    remove_sockets();
}

/* Every state transition; handlers only record what happened, then call this. */
static void keeper_step(void)
{
    switch (k.state) {
    case KEEPER_CREATING: /* waiting for `runtime create` to exit */
        if (!k.create_exited)
            return;
        create_done();
        k.state = KEEPER_RUNNING;
        /* fall through */
    case KEEPER_RUNNING: /* waiting for the init to exit (reaped in on_sigchld) */
        if (!k.init_exited)
            return;
        k.drain_deadline_ns = now_ns(CLOCK_MONOTONIC) + (int64_t)DRAIN_TIMEOUT_MS * 1000000;
        close_fd(&k.in_fd);
        k.state = KEEPER_DRAINING;
        /* fall through */
    case KEEPER_DRAINING: /* waiting for EOF on every output, or the drain deadline */
        if (outputs_open() && now_ns(CLOCK_MONOTONIC) < k.drain_deadline_ns)
            return;
        write_exit();
        k.state = KEEPER_DONE;
        /* fall through */
    case KEEPER_DONE: /* the loop ends */
        return;
    }
}

static void on_sigchld(void)
{
    struct signalfd_siginfo si;
    while (read(k.sig_fd, &si, sizeof(si)) == sizeof(si)) {
    }
    int status;
    pid_t pid;
    if (k.state == KEEPER_CREATING) {
        /* Only the runtime: the init must not be reaped before we know its pid. */
        if (waitpid(k.create_pid, &status, WNOHANG) != k.create_pid)
            return;
        k.create_status = status;
        k.create_exited = true;
        keeper_step();
        /* This SIGCHLD may also have been the init's (or an orphan's): reap now,
         * another signal will not come for it. */
    }
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == k.init_pid && !k.init_exited) {
            k.init_status = status;
            k.finished_ns = now_ns(CLOCK_REALTIME);
            k.init_exited = true;
        }
    }
    keeper_step();
}

/* ---------------------------------------------------------------------- */
/* container output                                                        */
/* ---------------------------------------------------------------------- */

static void on_output(int *fd, enum ctr_log_stream s)
{
    ssize_t n = read(*fd, read_buf, sizeof(read_buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n > 0) {
        if (k.state == KEEPER_CREATING) {
            capture_runtime_output(read_buf, (size_t)n);
        } else {
            ctr_log_feed(&log_writer, s, read_buf, (size_t)n);
            attach_fanout(s, read_buf, (size_t)n);
        }
        return;
    }
    /* EOF, or EIO on a pty master whose slave side is closed everywhere. */
    ctr_log_flush(&log_writer, s);
    close_fd(fd);
    keeper_step();
}

static void on_runtime_output(void)
{
    ssize_t n = read(k.rt_fd, read_buf, sizeof(read_buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        close_fd(&k.rt_fd);
        return;
    }
    if (k.state == KEEPER_CREATING) {
        capture_runtime_output(read_buf, (size_t)n);
        return;
    }
    /* The runtime's init process talking after create: diagnostics only. */
    diag("runtime: %.*s", (int)(n > 512 ? 512 : n), read_buf);
}

/* ---------------------------------------------------------------------- */
/* control socket                                                          */
/* ---------------------------------------------------------------------- */

static void reply(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(struct client *c, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line))
        n = sizeof(line) - 1;
    /* Replies are tiny; a client that does not read loses them. */
    if (send(c->fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN)
        close_fd(&c->fd);
}

/* Close the container's stdin (tty: send the terminal's EOF); NULL, or why not. */
static const char *close_container_stdin(void)
{
    static char why[128];
    if (!k.o.stdin_open)
        return "the container has no stdin";
    if (!k.o.tty) {
        close_fd(&k.in_fd);
        return NULL;
    }
    struct termios t;
    char eof = 4;
    if (k.out_fd < 0)
        return "the terminal is closed";
    if (tcgetattr(k.out_fd, &t) == 0 && t.c_cc[VEOF] != _POSIX_VDISABLE)
        eof = (char)t.c_cc[VEOF];
    if (write(k.out_fd, &eof, 1) != 1) {
        snprintf(why, sizeof(why), "write EOF to the terminal: %s", strerror(errno));
        return why;
    }
    return NULL;
}

static void run_command(struct client *c, const char *line, size_t len)
{
    struct keeper_ctl_request req;
    keeper_ctl_parse(line, len, &req);
    switch (req.cmd) {
    case KEEPER_CTL_REOPEN:
        if (ctr_log_reopen(&log_writer) < 0)
            reply(c, KEEPER_REPLY_ERROR "reopen %s: %s\n", k.o.log_path, strerror(errno));
        else
            reply(c, KEEPER_REPLY_OK "\n");
        break;
    case KEEPER_CTL_RESIZE: {
        struct winsize ws = {.ws_col = req.cols, .ws_row = req.rows};
        if (!k.o.tty || k.out_fd < 0)
            reply(c, KEEPER_REPLY_ERROR "the container has no terminal\n");
        else if (ioctl(k.out_fd, TIOCSWINSZ, &ws) < 0)
            reply(c, KEEPER_REPLY_ERROR "resize: %s\n", strerror(errno));
        else
            reply(c, KEEPER_REPLY_OK "\n");
        break;
    }
    case KEEPER_CTL_USAGE:
        reply(c, KEEPER_REPLY_ERROR "usage: resize <cols> <rows>\n");
        break;
    case KEEPER_CTL_STDIN_CLOSE: {
        const char *why = close_container_stdin();
        if (why)
            reply(c, KEEPER_REPLY_ERROR "%s\n", why);
        else
            reply(c, KEEPER_REPLY_OK "\n");
        break;
    }
    case KEEPER_CTL_UNKNOWN:
        reply(c, KEEPER_REPLY_ERROR "unknown command\n");
        break;
    }
}

static void on_client(struct client *c)
{
    size_t room = 0;
    char *tail = keeper_ctl_room(&c->buf, &room);
    ssize_t n = recv(c->fd, tail, room, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        close_fd(&c->fd);
        return;
    }
    keeper_ctl_received(&c->buf, (size_t)n);
    const char *line;
    size_t len = 0;
    while (c->fd >= 0 && (line = keeper_ctl_next_line(&c->buf, &len)) != NULL)
        run_command(c, line, len);
    if (c->fd >= 0 && keeper_ctl_overflow(&c->buf)) {
        reply(c, KEEPER_REPLY_ERROR "line too long\n");
        close_fd(&c->fd);
    }
}

static void on_ctl_listen(void)
{
    int fd = accept4(k.ctl_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    for (int i = 0; i < MAX_CLIENTS; i++) {
        if (k.clients[i].fd < 0) {
            k.clients[i].fd = fd;
            memset(&k.clients[i].buf, 0, sizeof(k.clients[i].buf));
            return;
        }
    }
    struct client busy = {.fd = fd};
    reply(&busy, KEEPER_REPLY_ERROR "too many clients\n");
    close(fd);
}

/* ---------------------------------------------------------------------- */
/* attach socket                                                           */
/* ---------------------------------------------------------------------- */

/* Where the container's stdin is written: the pipe, or the pty master. */
static int stdin_target(void)
{
    if (!k.o.stdin_open)
        return -1;
    return k.o.tty ? k.out_fd : k.in_fd;
}

static void attach_close(struct attach *a)
{
    bool had_stdin = a->ready && a->want_in && !a->in_done;
    close_fd(&a->fd);
    a->ready = false;
    a->out_len = a->in_len = a->in_off = a->line_len = 0;
    /* The first attach session with stdin is over: stdin_once closes the container's. */
    if (had_stdin && k.o.stdin_once && k.state != KEEPER_DONE)
        close_container_stdin();
}

/* Send what is buffered; false when the client had to be closed. */
static bool attach_flush(struct attach *a)
{
    while (a->out_len > 0) {
        ssize_t n = send(a->fd, a->out, a->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return true;
        if (n <= 0) {
            attach_close(a);
            return false;
        }
        memmove(a->out, a->out + n, a->out_len - (size_t)n);
        a->out_len -= (size_t)n;
    }
    return true;
}

/* Queue one frame for a client; a client too slow to take it is cut off. */
static void attach_send(struct attach *a, enum attach_stream s, const char *data, size_t n)
{
    while (n > 0 && a->fd >= 0) {
        size_t piece = n > 0xffff ? 0xffff : n;
        if (a->out_len + ATTACH_HEADER + piece > ATTACH_OUT_SIZE && attach_flush(a) &&
            a->out_len + ATTACH_HEADER + piece > ATTACH_OUT_SIZE) {
            diag("attach client too slow, cut off (%zu bytes waiting)", a->out_len);
            attach_close(a);
            return;
        }
        if (a->fd < 0)
            return;
        uint8_t *p = a->out + a->out_len;
        p[0] = (uint8_t)s;
        p[1] = (uint8_t)(piece >> 8);
        p[2] = (uint8_t)piece;
        memcpy(p + ATTACH_HEADER, data, piece);
        a->out_len += ATTACH_HEADER + piece;
        data += piece;
        n -= piece;
        attach_flush(a);
    }
}

/* Container output: to every attached client that wants this stream. */
static void attach_fanout(enum ctr_log_stream s, const char *data, size_t n)
{
    for (int i = 0; i < MAX_ATTACH; i++) {
        struct attach *a = &attached[i];
        if (a->fd < 0 || !a->ready)
            continue;
        bool out = s == CTR_LOG_STDOUT;
        if ((out && a->want_out) || (!out && a->want_err))
            attach_send(a, out ? ATTACH_STDOUT : ATTACH_STDERR, data, n);
    }
}

static void attach_error(struct attach *a, const char *msg)
{
    attach_send(a, ATTACH_ERROR, msg, strlen(msg));
    attach_close(a);
}

/* The request line: "attach" and the streams wanted. */
static void attach_request(struct attach *a, char *line)
{
    size_t n = strlen(line);
    if (n > 0 && line[n - 1] == '\r')
        line[--n] = '\0';
    char *save = NULL;
    char *w = strtok_r(line, " ", &save);
    if (!w || strcmp(w, KEEPER_ATTACH_REQUEST) != 0) {
        attach_error(a, "expected: attach [stdin] [stdout] [stderr]");
        return;
    }
    while ((w = strtok_r(NULL, " ", &save))) {
        if (strcmp(w, KEEPER_ATTACH_STDIN) == 0)
            a->want_in = true;
        else if (strcmp(w, KEEPER_ATTACH_STDOUT) == 0)
            a->want_out = true;
        else if (strcmp(w, KEEPER_ATTACH_STDERR) == 0)
            a->want_err = true;
        else {
            attach_error(a, "unknown stream in attach request");
            return;
        }
    }
    a->ready = true;
}

/* Write a client's pending input to the container's stdin, as far as it takes it. */
static void attach_write_stdin(struct attach *a)
{
    int fd = stdin_target();
    if (fd < 0 || !a->want_in) {
        a->in_len = a->in_off = 0; /* no stdin: dropped */
        return;
    }
    while (a->in_off < a->in_len) {
        ssize_t n = write(fd, a->in + a->in_off, a->in_len - a->in_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0) {
            a->in_len = a->in_off = 0; /* stdin gone (EPIPE): the rest is dropped */
            return;
        }
        a->in_off += (size_t)n;
    }
    a->in_len = a->in_off = 0;
}

static void on_attach_readable(struct attach *a)
{
    if (!a->ready) {
        ssize_t n =
            recv(a->fd, a->line + a->line_len, sizeof(a->line) - 1 - a->line_len, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            attach_close(a);
            return;
        }
        a->line_len += (size_t)n;
        a->line[a->line_len] = '\0';
        char *nl = memchr(a->line, '\n', a->line_len);
        if (!nl) {
            if (a->line_len == sizeof(a->line) - 1)
                attach_error(a, "attach request line too long");
            return;
        }
        *nl = '\0';
        size_t rest = a->line_len - (size_t)(nl + 1 - a->line);
        char extra[ATTACH_LINE_MAX];
        memcpy(extra, nl + 1, rest);
        attach_request(a, a->line);
        if (a->fd < 0)
            return;
        /* Input sent right after the line. */
        memcpy(a->in, extra, rest);
        a->in_len = rest;
        attach_write_stdin(a);
        return;
    }
    if (a->in_len > 0)
        return; /* not polled for input until the last piece is written */
    ssize_t n = recv(a->fd, a->in, ATTACH_IN_SIZE, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 0) {
        attach_close(a);
        return;
    }
    if (n == 0) {
        /* The client's input is over; its output goes on until it closes. */
        if (!a->in_done) {
            bool had_stdin = a->want_in;
            a->in_done = true;
            if (had_stdin && k.o.stdin_once)
                close_container_stdin();
        }
        if (!a->want_out && !a->want_err)
            attach_close(a);
        return;
    }
    a->in_len = (size_t)n;
    a->in_off = 0;
    attach_write_stdin(a);
}

static void on_attach_listen(void)
{
    int fd = accept4(k.attach_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    for (int i = 0; i < MAX_ATTACH; i++) {
        struct attach *a = &attached[i];
        if (a->fd < 0) {
            memset(a, 0, sizeof(*a));
            a->fd = fd;
            a->out = attach_out[i];
            a->in = attach_in[i];
            return;
        }
    }
    static const char msg[] = "\x03\x00\x19too many attached clients";
    (void)!send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
}

/* The container is gone: give clients their buffered output for a moment, then close. */
static void attach_finish(void)
{
    int64_t deadline = now_ns(CLOCK_MONOTONIC) + (int64_t)ATTACH_FLUSH_MS * 1000000;
    for (;;) {
        struct pollfd pfd[MAX_ATTACH];
        int n = 0;
        for (int i = 0; i < MAX_ATTACH; i++) {
            if (attached[i].fd >= 0 && attached[i].out_len > 0)
                pfd[n++] = (struct pollfd){.fd = attached[i].fd, .events = POLLOUT};
        }
        int64_t left = deadline - now_ns(CLOCK_MONOTONIC);
        if (n == 0 || left <= 0)
            break;
        if (poll(pfd, (nfds_t)n, (int)(left / 1000000) + 1) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < MAX_ATTACH; i++) {
            if (attached[i].fd >= 0 && attached[i].out_len > 0)
                attach_flush(&attached[i]);
        }
    }
    for (int i = 0; i < MAX_ATTACH; i++)
        close_fd(&attached[i].fd);
}

/* ---------------------------------------------------------------------- */
/* the loop                                                                */
/* ---------------------------------------------------------------------- */

enum watch {
    W_SIGNAL,
    W_CTL,
    W_CONSOLE,
    W_CONSOLE_CONN,
    W_STDOUT,
    W_STDERR,
    W_RUNTIME,
    W_ATTACH_LISTEN,
    W_STDIN,  /* the container's stdin became writable (attach input waiting) */
    W_CLIENT, /* + client index */
    W_ATTACH = W_CLIENT + MAX_CLIENTS, /* + attach index */
};

static bool attach_input_waiting(void)
{
    for (int i = 0; i < MAX_ATTACH; i++) {
        if (attached[i].fd >= 0 && attached[i].in_len > 0)
            return true;
    }
    return false;
}

static void loop(void)
{
    struct pollfd pfd[W_ATTACH + MAX_ATTACH];
    int what[W_ATTACH + MAX_ATTACH];
    while (k.state != KEEPER_DONE) {
        int n = 0;
#define WATCH(fd_, w_)                                                                             \
    do {                                                                                           \
        if ((fd_) >= 0) {                                                                          \
            pfd[n] = (struct pollfd){.fd = (fd_), .events = POLLIN};                               \
            what[n++] = (w_);                                                                      \
        }                                                                                          \
    } while (0)
        WATCH(k.sig_fd, W_SIGNAL);
        WATCH(k.ctl_fd, W_CTL);
        WATCH(k.console_conn < 0 ? k.console_fd : -1, W_CONSOLE);
        WATCH(k.console_conn, W_CONSOLE_CONN);
        WATCH(k.out_fd, W_STDOUT);
        WATCH(k.err_fd, W_STDERR);
        WATCH(k.rt_fd, W_RUNTIME);
        for (int i = 0; i < MAX_CLIENTS; i++)
            WATCH(k.clients[i].fd, W_CLIENT + i);
        WATCH(k.state == KEEPER_CREATING ? -1 : k.attach_fd, W_ATTACH_LISTEN);
        for (int i = 0; i < MAX_ATTACH; i++) {
            struct attach *a = &attached[i];
            if (a->fd < 0)
                continue;
            short ev = (short)((a->in_len == 0 ? POLLIN : 0) | (a->out_len > 0 ? POLLOUT : 0));
            pfd[n] = (struct pollfd){.fd = a->fd, .events = ev};
            what[n++] = W_ATTACH + i;
        }
        if (attach_input_waiting() && stdin_target() >= 0) {
            pfd[n] = (struct pollfd){.fd = stdin_target(), .events = POLLOUT};
            what[n++] = W_STDIN;
        }
#undef WATCH

        int timeout = -1;
        if (k.state == KEEPER_DRAINING) {
            int64_t left = k.drain_deadline_ns - now_ns(CLOCK_MONOTONIC);
            if (left <= 0) {
                keeper_step();
                continue;
            }
            timeout = (int)(left / 1000000) + 1;
        }
        int ready = poll(pfd, (nfds_t)n, timeout);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0) {
            diag("poll: %s", strerror(errno));
            exit(1);
        }
        for (int i = 0; i < n && k.state != KEEPER_DONE; i++) {
            if (!pfd[i].revents)
                continue;
            switch (what[i]) {
            case W_SIGNAL:
                on_sigchld();
                break;
            case W_CTL:
                on_ctl_listen();
                break;
            case W_CONSOLE:
                on_console_listen();
                break;
            case W_CONSOLE_CONN:
                receive_console();
                break;
            case W_STDOUT:
                on_output(&k.out_fd, CTR_LOG_STDOUT);
                break;
            case W_STDERR:
                on_output(&k.err_fd, CTR_LOG_STDERR);
                break;
            case W_RUNTIME:
                on_runtime_output();
                break;
            case W_ATTACH_LISTEN:
                on_attach_listen();
                break;
            case W_STDIN:
                for (int j = 0; j < MAX_ATTACH; j++) {
                    if (attached[j].fd >= 0 && attached[j].in_len > 0)
                        attach_write_stdin(&attached[j]);
                }
                break;
            default:
                if (what[i] >= W_ATTACH) {
                    struct attach *a = &attached[what[i] - W_ATTACH];
                    if (a->fd < 0)
                        break;
                    if ((pfd[i].revents & POLLOUT) && !attach_flush(a))
                        break;
                    if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
                        on_attach_readable(a);
                } else {
                    on_client(&k.clients[what[i] - W_CLIENT]);
                }
                break;
            }
        }
    }
}

/* ---------------------------------------------------------------------- */
/* pod-init mode (see the header comment)                                  */
/* ---------------------------------------------------------------------- */

/* PID 1 of the pod's PID namespace: hold it open and reap orphans. Never returns. */
static void pod_init_run(void)
{
    setsid();
    if (chdir("/") < 0)
        _exit(1);
    int null = open("/dev/null", O_RDWR);
    for (int fd = 0; fd <= 2; fd++) {
        if (null >= 0 && null != fd)
            dup2(null, fd);
    }
    if (close_range(3, ~0U, 0) < 0) {
        long max = sysconf(_SC_OPEN_MAX);
        for (long fd = 3; fd < (max > 0 ? max : 65536); fd++)
            close((int)fd);
    }
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP && sig != SIGCHLD)
            signal(sig, SIG_IGN);
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        sigwaitinfo(&set, NULL);
    }
}

static int pod_init_main(int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--" KEEPER_OPT_ID) == 0 && i + 1 < argc)
            k.o.id = argv[++i];
        else
            usage();
    }
    signal(SIGPIPE, SIG_IGN);
    if (unshare(CLONE_NEWPID) < 0)
        fail("unshare(CLONE_NEWPID): %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        fail("fork pod-init: %s", strerror(errno));
    if (pid == 0)
        pod_init_run();
    char line[64];
    snprintf(line, sizeof(line), KEEPER_STATUS_CREATED "%d\n", (int)pid);
    report(line);
    /* Nothing to flush; and exit handlers (a sanitizer's leak check, which clones a
     * tracer) must not run in a process whose children now go to another PID namespace. */
    _exit(0);
}

int main(int argc, char **argv)
{
    k.status_fd = k.sig_fd = k.dir_fd = k.ctl_fd = k.console_fd = k.console_conn = -1;
    k.out_fd = k.err_fd = k.in_fd = k.rt_fd = -1;
    k.oom_before = -1;
    for (int i = 0; i < MAX_CLIENTS; i++)
        k.clients[i].fd = -1;
    for (int i = 0; i < MAX_ATTACH; i++)
        attached[i].fd = -1;
    k.attach_fd = -1;

    close_inherited_fds();
    if (argc > 1 && strcmp(argv[1], "--" KEEPER_OPT_POD_INIT) == 0)
        return pod_init_main(argc, argv);
    parse_args(argc, argv, &k.o);
    setup_process();

    if (ctr_log_open(&log_writer, k.o.log_path, k.o.tty, NULL) < 0)
        fail("open log %s: %s", k.o.log_path, strerror(errno));
    k.dir_fd = open(k.o.state_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (k.dir_fd < 0)
        fail("open %s: %s", k.o.state_dir, strerror(errno));
    char path[STATE_PATH_MAX];
    k.ctl_fd = listen_unix(path, KEEPER_SOCKET_CTL);
    if (k.ctl_fd < 0)
        fail("listen on %s: %s", path, strerror(errno));
    k.attach_fd = listen_unix(path, KEEPER_SOCKET_ATTACH);
    if (k.attach_fd < 0)
        fail("listen on %s: %s", path, strerror(errno));

    k.state = KEEPER_CREATING;
    start_create();
    loop();
    attach_finish();
    return 0;
}
