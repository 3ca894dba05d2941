/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Errors that carry their context up to the RPC boundary.
 *
 * A fallible function takes `struct error **err` last and sets it exactly once
 * where the failure happened; callers add context with error_prefix(). The
 * RPC layer turns the final error into grpc-status and grpc-message.
 */
#ifndef TINYCRI_CORE_ERROR_H
#define TINYCRI_CORE_ERROR_H

#include <stdarg.h>

/* gRPC status codes, as numbered by the gRPC specification. */
enum grpc_code {
    GRPC_OK = 0,
    GRPC_CANCELLED = 1,
    GRPC_UNKNOWN = 2,
    GRPC_INVALID_ARGUMENT = 3,
    GRPC_DEADLINE_EXCEEDED = 4,
    GRPC_NOT_FOUND = 5,
    GRPC_ALREADY_EXISTS = 6,
    GRPC_PERMISSION_DENIED = 7,
    GRPC_RESOURCE_EXHAUSTED = 8,
    GRPC_FAILED_PRECONDITION = 9,
    GRPC_ABORTED = 10,
    GRPC_OUT_OF_RANGE = 11,
    GRPC_UNIMPLEMENTED = 12,
    GRPC_INTERNAL = 13,
    GRPC_UNAVAILABLE = 14,
    GRPC_DATA_LOSS = 15,
    GRPC_UNAUTHENTICATED = 16,
};

struct error {
    int grpc_code; /* enum grpc_code */
    int sys_errno; /* errno behind the failure, 0 if none */
    char *msg;     /* owned, never NULL */
};

/*
 * Record a failure in *err (when err is not NULL). When sys_errno is not 0,
 * ": <strerror>" is appended. Setting an already-set error is a bug and keeps
 * the first one. Always returns -1.
 */
int error_set(struct error **err, int grpc_code, int sys_errno, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int error_setv(struct error **err, int grpc_code, int sys_errno, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

/* Prepend "<context>: " to the message of *err (a no-op when unset). Returns -1. */
int error_prefix(struct error **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * A copy of e (owned; NULL when e is NULL): the same code, sys_errno and
 * message (the message already holds the strerror text; it is not added again).
 */
struct error *error_dup(const struct error *e);

/*
 * Set *err to a copy of src, like error_set() would: a no-op when err is NULL,
 * *err is already set or src is NULL. Returns -1.
 */
int error_copy(struct error **err, const struct error *src);

/* Free an error; error_free(NULL) is a no-op. */
void error_free(struct error *e);

/* Free *err and reset it to NULL. */
void error_clear(struct error **err);

/* The name of a gRPC code ("NOT_FOUND"), for logs. */
const char *grpc_code_name(int code);

static inline void error_freep(struct error **e)
{
    error_free(*e);
}
#define _cleanup_error_ __attribute__((cleanup(error_freep)))

#endif
