/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The RuntimeDefault seccomp profile as a table of rules. Each rule allows
 * (or fails with an errno) a group of system calls, optionally with one
 * argument filter, and may be limited to some architectures or to containers
 * holding (or not holding) a capability. seccomp_default_profile() walks the
 * table in order and emits the rules that apply, so the output has the same
 * shape as the profile moby generates for the same capabilities.
 */
#include "autoconf.h"

#include <errno.h>
#include <sched.h>
#include <stddef.h>

#include <linux/capability.h>

#include "core/util.h"
#include "pod/seccomp_default.h"

/* Which host architectures a rule is limited to (0: all of them). */
enum {
    ON_AMD64 = 1 << 0,
    ON_X86 = 1 << 1,
    ON_X32 = 1 << 2, /* never the host here: x32 hosts report as x86_64 */
    ON_ARM = 1 << 3,
    ON_ARM64 = 1 << 4,
    ON_RISCV64 = 1 << 5,
    ON_PPC64LE = 1 << 6,
    ON_S390X = 1 << 7,
};

#define NO_CAP (-1)

/* clone() flags that create namespaces; denied without CAP_SYS_ADMIN. */
#define CLONE_NS_FLAGS                                                                             \
    ((uint64_t)(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |         \
                CLONE_NEWNET | CLONE_NEWCGROUP))

struct rule {
    const char *const *names; /* NULL-terminated */
    int errno_ret;            /* 0: SCMP_ACT_ALLOW, else SCMP_ACT_ERRNO with this errno */
    const char *arg_op;       /* NULL: no argument filter */
    unsigned arg_index;
    uint64_t arg_value;
    unsigned only_on;  /* ON_* mask; 0 = every architecture */
    unsigned never_on; /* ON_* mask of architectures that skip the rule */
    int need_cap;      /* rule applies only with this capability */
    int unless_cap;    /* rule is skipped when this capability is held */
};

#define NAMES(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Always allowed: the bulk of the profile. */
static const char *const allowed[] = {
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
    NULL,
};

#define ALLOW_ALWAYS .need_cap = NO_CAP, .unless_cap = NO_CAP
#define WITH_CAP(c) .need_cap = (c), .unless_cap = NO_CAP
#define PERSONALITY(v)                                                                             \
    {                                                                                              \
        .names = NAMES("personality"), .arg_op = "SCMP_CMP_EQ", .arg_index = 0, .arg_value = (v),  \
        ALLOW_ALWAYS                                                                               \
    }

#define SOCKET_FAMILIES(op, v)                                                                     \
    {                                                                                              \
        .names = NAMES("socket"), .arg_op = (op), .arg_index = 0, .arg_value = (v), ALLOW_ALWAYS   \
    }

static const struct rule rules[] = {
    {.names = allowed, ALLOW_ALWAYS},
    /* Safe for everyone since kernel 4.8, where ptrace can no longer bypass seccomp. */
    {.names = NAMES("process_vm_readv", "process_vm_writev", "ptrace"), ALLOW_ALWAYS},
    /*
     * Any socket family but AF_ALG (38: the kernel crypto API, CVE-2026-31431)
     * and AF_VSOCK (40: reaches the hypervisor's host). Arguments of one rule
     * are ANDed, so "neither" takes three rules. socketcall() cannot be
     * filtered by family; moby leaves that to AppArmor/SELinux.
     */
    SOCKET_FAMILIES("SCMP_CMP_LT", 38),
    SOCKET_FAMILIES("SCMP_CMP_EQ", 39),
    SOCKET_FAMILIES("SCMP_CMP_GT", 40),
    /* PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32 and the query value. */
    PERSONALITY(0x0),
    PERSONALITY(0x8),
    PERSONALITY(0x20000),
    PERSONALITY(0x20008),
    PERSONALITY(0xffffffff),
    {.names = NAMES("sync_file_range2", "swapcontext"), .only_on = ON_PPC64LE, ALLOW_ALWAYS},
    {.names = NAMES("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
                    "cacheflush", "set_tls"),
     .only_on = ON_ARM | ON_ARM64,
     ALLOW_ALWAYS},
    {.names = NAMES("arch_prctl"), .only_on = ON_AMD64 | ON_X32, ALLOW_ALWAYS},
    {.names = NAMES("modify_ldt"), .only_on = ON_AMD64 | ON_X32 | ON_X86, ALLOW_ALWAYS},
    {.names = NAMES("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"),
     .only_on = ON_S390X,
     ALLOW_ALWAYS},
    {.names = NAMES("riscv_flush_icache"), .only_on = ON_RISCV64, ALLOW_ALWAYS},
    {.names = NAMES("open_by_handle_at"), WITH_CAP(CAP_DAC_READ_SEARCH)},
    {.names = NAMES("bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen",
                    "fspick", "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree",
                    "perf_event_open", "quotactl", "quotactl_fd", "setdomainname", "sethostname",
                    "setns", "syslog", "umount", "umount2", "unshare"),
     WITH_CAP(CAP_SYS_ADMIN)},
    /* Without CAP_SYS_ADMIN, clone() is allowed only when it creates no namespace. */
    {.names = NAMES("clone"),
     .arg_op = "SCMP_CMP_MASKED_EQ",
     .arg_index = 0,
     .arg_value = CLONE_NS_FLAGS,
     .never_on = ON_S390X,
     .need_cap = NO_CAP,
     .unless_cap = CAP_SYS_ADMIN},
    {.names = NAMES("clone"),
     .arg_op = "SCMP_CMP_MASKED_EQ",
     .arg_index = 1,
     .arg_value = CLONE_NS_FLAGS,
     .only_on = ON_S390X,
     .need_cap = NO_CAP,
     .unless_cap = CAP_SYS_ADMIN},
    /* clone3() flags live in memory seccomp cannot read: make libc fall back to clone(). */
    {.names = NAMES("clone3"),
     .errno_ret = ENOSYS,
     .need_cap = NO_CAP,
     .unless_cap = CAP_SYS_ADMIN},
    {.names = NAMES("reboot"), WITH_CAP(CAP_SYS_BOOT)},
    {.names = NAMES("chroot"), WITH_CAP(CAP_SYS_CHROOT)},
    {.names = NAMES("delete_module", "init_module", "finit_module"), WITH_CAP(CAP_SYS_MODULE)},
    {.names = NAMES("acct"), WITH_CAP(CAP_SYS_PACCT)},
    {.names = NAMES("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
                    "process_vm_writev", "ptrace"),
     WITH_CAP(CAP_SYS_PTRACE)},
    {.names = NAMES("iopl", "ioperm"), WITH_CAP(CAP_SYS_RAWIO)},
    {.names = NAMES("settimeofday", "stime", "clock_settime", "clock_settime64"),
     WITH_CAP(CAP_SYS_TIME)},
    {.names = NAMES("vhangup"), WITH_CAP(CAP_SYS_TTY_CONFIG)},
    {.names = NAMES("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"),
     WITH_CAP(CAP_SYS_NICE)},
    {.names = NAMES("syslog"), WITH_CAP(CAP_SYSLOG)},
    {.names = NAMES("bpf"), WITH_CAP(CAP_BPF)},
    {.names = NAMES("perf_event_open"), WITH_CAP(CAP_PERFMON)},
};

struct arch_info {
    unsigned on;                 /* ON_* bit of the host */
    const char *const *filtered; /* the "architectures" list; NULL: none */
};

static const struct arch_info arch_infos[] = {
    [SECCOMP_ARCH_X86_64] = {ON_AMD64, NAMES("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")},
    [SECCOMP_ARCH_X86] = {ON_X86, NULL},
    [SECCOMP_ARCH_AARCH64] = {ON_ARM64, NAMES("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM")},
    [SECCOMP_ARCH_ARM] = {ON_ARM, NULL},
    [SECCOMP_ARCH_RISCV64] = {ON_RISCV64, NAMES("SCMP_ARCH_RISCV64")},
    [SECCOMP_ARCH_PPC64LE] = {ON_PPC64LE, NULL},
    [SECCOMP_ARCH_S390X] = {ON_S390X, NAMES("SCMP_ARCH_S390X", "SCMP_ARCH_S390")},
    [SECCOMP_ARCH_OTHER] = {0, NULL},
};

enum seccomp_arch seccomp_native_arch(void)
{
#if defined(__x86_64__)
    return SECCOMP_ARCH_X86_64;
#elif defined(__i386__)
    return SECCOMP_ARCH_X86;
#elif defined(__aarch64__)
    return SECCOMP_ARCH_AARCH64;
#elif defined(__arm__)
    return SECCOMP_ARCH_ARM;
#elif defined(__riscv) && __riscv_xlen == 64
    return SECCOMP_ARCH_RISCV64;
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return SECCOMP_ARCH_PPC64LE;
#elif defined(__s390x__)
    return SECCOMP_ARCH_S390X;
#else
    return SECCOMP_ARCH_OTHER;
#endif
}

static bool has_cap(uint64_t caps, int cap)
{
    return cap >= 0 && cap < 64 && (caps & ((uint64_t)1 << cap));
}

static bool rule_applies(const struct rule *r, uint64_t caps, unsigned on)
{
    if (r->only_on && !(r->only_on & on))
        return false;
    if (r->never_on & on)
        return false;
    if (r->need_cap != NO_CAP && !has_cap(caps, r->need_cap))
        return false;
    if (r->unless_cap != NO_CAP && has_cap(caps, r->unless_cap))
        return false;
    return true;
}

static json_t *names_json(const char *const *names)
{
    json_t *a = json_array();
    for (size_t i = 0; names[i]; i++)
        json_array_append_new(a, json_string(names[i]));
    return a;
}

static json_t *rule_json(const struct rule *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "names", names_json(r->names));
    if (r->errno_ret) {
        json_object_set_new(o, "action", json_string("SCMP_ACT_ERRNO"));
        json_object_set_new(o, "errnoRet", json_integer(r->errno_ret));
    } else {
        json_object_set_new(o, "action", json_string("SCMP_ACT_ALLOW"));
    }
    if (r->arg_op) {
        json_t *arg = json_object();
        json_object_set_new(arg, "index", json_integer(r->arg_index));
        json_object_set_new(arg, "value", json_integer((json_int_t)r->arg_value));
        json_object_set_new(arg, "valueTwo", json_integer(0));
        json_object_set_new(arg, "op", json_string(r->arg_op));
        json_t *args = json_array();
        json_array_append_new(args, arg);
        json_object_set_new(o, "args", args);
    }
    return o;
}

json_t *seccomp_default_profile(uint64_t bounding_caps, enum seccomp_arch arch)
{
    if (arch == SECCOMP_ARCH_NATIVE || (unsigned)arch >= ARRAY_SIZE(arch_infos))
        arch = seccomp_native_arch();
    const struct arch_info *ai = &arch_infos[arch];

    json_t *p = json_object();
    json_object_set_new(p, "defaultAction", json_string("SCMP_ACT_ERRNO"));
    json_object_set_new(p, "defaultErrnoRet", json_integer(EPERM));
    if (ai->filtered)
        json_object_set_new(p, "architectures", names_json(ai->filtered));
    json_t *syscalls = json_array();
    for (size_t i = 0; i < ARRAY_SIZE(rules); i++)
        if (rule_applies(&rules[i], bounding_caps, ai->on))
            json_array_append_new(syscalls, rule_json(&rules[i]));
    json_object_set_new(p, "syscalls", syscalls);
    return p;
}
