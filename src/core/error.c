/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Error values: creation, prefixing and the gRPC code names used in logs.
 */
#include "autoconf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/util.h"

int error_setv(struct error **err, int grpc_code, int sys_errno, const char *fmt, va_list ap)
{
    if (!err || *err)
        return -1;
    _cleanup_free_ char *text = xvasprintf(fmt, ap);
    struct error *e = xcalloc(1, sizeof(*e));
    e->grpc_code = grpc_code;
    e->sys_errno = sys_errno;
    e->msg = sys_errno ? xasprintf("%s: %s", text, strerror(sys_errno)) : steal_ptr(&text);
    *err = e;
    return -1;
}

int error_set(struct error **err, int grpc_code, int sys_errno, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_setv(err, grpc_code, sys_errno, fmt, ap);
    va_end(ap);
    return -1;
}

int error_prefix(struct error **err, const char *fmt, ...)
{
    if (!err || !*err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *ctx = xvasprintf(fmt, ap);
    va_end(ap);
    char *msg = xasprintf("%s: %s", ctx, (*err)->msg);
    free((*err)->msg);
    (*err)->msg = msg;
    return -1;
}

struct error *error_dup(const struct error *e)
{
    if (!e)
        return NULL;
    struct error *c = xcalloc(1, sizeof(*c));
    c->grpc_code = e->grpc_code;
    c->sys_errno = e->sys_errno;
    c->msg = xstrdup(e->msg);
    return c;
}

int error_copy(struct error **err, const struct error *src)
{
    if (err && !*err && src)
        *err = error_dup(src);
    return -1;
}

void error_free(struct error *e)
{
    if (!e)
        return;
    free(e->msg);
    free(e);
}

void error_clear(struct error **err)
{
    error_free(*err);
    *err = NULL;
}

const char *grpc_code_name(int code)
{
    static const char *const names[] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    if (code < 0 || (size_t)code >= sizeof(names) / sizeof(names[0]))
        return "UNKNOWN";
    return names[code];
}
