/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The built-in RuntimeDefault seccomp profile, as an OCI `linux.seccomp`
 * object. It has the semantics of the default profile of Docker (moby) and
 * containerd: every system call fails with EPERM unless allowed; a fixed list
 * is always allowed; some calls are allowed only with a capability in the
 * container's bounding set (CAP_SYS_ADMIN: mount, unshare, setns, clone
 * without restriction...; CAP_SYS_PTRACE: ptrace, kcmp...); some only on one
 * architecture (arch_prctl on x86_64...); personality() is allowed only for a
 * few argument values; socket() refuses AF_ALG and AF_VSOCK; without
 * CAP_SYS_ADMIN, clone() may not create
 * namespaces and clone3() fails with ENOSYS so that libc falls back to clone().
 *
 * The profile lives in a table in seccomp_default.c, not in a JSON blob.
 * The kernel is assumed to be at least 4.8 (moby only allows ptrace() to
 * everyone from that version on, where seccomp can no longer be bypassed
 * with it).
 */
#ifndef TINYCRI_POD_SECCOMP_DEFAULT_H
#define TINYCRI_POD_SECCOMP_DEFAULT_H

#include <stdint.h>

#include <jansson.h>

/* Host architecture the profile is generated for. */
enum seccomp_arch {
    SECCOMP_ARCH_NATIVE = 0, /* the one this daemon was compiled for */
    SECCOMP_ARCH_X86_64,     /* filters x86_64, x86 and x32 */
    SECCOMP_ARCH_X86,        /* 32-bit x86 host */
    SECCOMP_ARCH_AARCH64,    /* filters aarch64 and arm */
    SECCOMP_ARCH_ARM,        /* 32-bit arm host */
    SECCOMP_ARCH_RISCV64,
    SECCOMP_ARCH_PPC64LE,
    SECCOMP_ARCH_S390X, /* filters s390x and s390; clone() flags are its 2nd argument */
    SECCOMP_ARCH_OTHER, /* no "architectures": the runtime filters its native one */
};

/* The architecture this daemon was compiled for (never SECCOMP_ARCH_NATIVE). */
enum seccomp_arch seccomp_native_arch(void);

/*
 * Build the RuntimeDefault profile. bounding_caps has bit n set when
 * capability number n (CAP_SYS_ADMIN = 21, ...) is in the container's
 * bounding set. Returns a new object (defaultAction, defaultErrnoRet,
 * architectures, syscalls); never fails short of running out of memory.
 */
json_t *seccomp_default_profile(uint64_t bounding_caps, enum seccomp_arch arch);

#endif
