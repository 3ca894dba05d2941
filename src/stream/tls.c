/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS behind tls.h: OpenSSL 3 through dlopen()/dlsym(), typed from its own
 * headers. Loaded once when HTTPS is configured and kept for the daemon's
 * life (the server needs it as long as it listens).
 */
#include "autoconf.h"

#include <dlfcn.h>
#include <errno.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "stream/tls.h"

#define LIBSSL "libssl.so.3"

/* The functions used, typed as the headers declare them. */
#define TLS_FUNCS(X)                                                                               \
    X(TLS_server_method)                                                                           \
    X(SSL_CTX_new)                                                                                 \
    X(SSL_CTX_free)                                                                                \
    X(SSL_CTX_ctrl)                                                                                \
    X(SSL_CTX_use_certificate_chain_file)                                                          \
    X(SSL_CTX_use_PrivateKey_file)                                                                 \
    X(SSL_CTX_check_private_key)                                                                   \
    X(SSL_new)                                                                                     \
    X(SSL_free)                                                                                    \
    X(SSL_set_fd)                                                                                  \
    X(SSL_set_accept_state)                                                                        \
    X(SSL_read)                                                                                    \
    X(SSL_write)                                                                                   \
    X(SSL_get_error)                                                                               \
    X(SSL_pending)                                                                                 \
    X(ERR_get_error)                                                                               \
    X(ERR_error_string_n)                                                                          \
    X(ERR_clear_error)

static struct {
    void *so;
#define SLOT(name) __typeof__(name) *name;
    TLS_FUNCS(SLOT)
#undef SLOT
} ssl;

struct tls_context {
    SSL_CTX *ctx;
};

struct tls_conn {
    SSL *s;
};

static int load_libssl(struct error **err)
{
    if (ssl.so)
        return 0;
    void *so = dlopen(LIBSSL, RTLD_NOW | RTLD_LOCAL);
    if (!so)
        return error_set(err, GRPC_UNAVAILABLE, 0, "cannot load %s: %s", LIBSSL, dlerror());
#define RESOLVE(name)                                                                              \
    if (!(ssl.name = (__typeof__(name) *)dlsym(so, #name))) {                                      \
        dlclose(so);                                                                               \
        memset(&ssl, 0, sizeof(ssl));                                                              \
        return error_set(err, GRPC_INTERNAL, 0, "%s lacks %s", LIBSSL, #name);                     \
    }
    TLS_FUNCS(RESOLVE)
#undef RESOLVE
    ssl.so = so;
    log_debug("loaded lib=%s (streaming TLS)", LIBSSL);
    return 0;
}

/* The last OpenSSL error as text, into buf. */
static const char *ssl_error(char *buf, size_t size)
{
    unsigned long e = ssl.ERR_get_error();
    if (!e)
        return "unknown error";
    ssl.ERR_error_string_n(e, buf, size);
    ssl.ERR_clear_error();
    return buf;
}

struct tls_context *tls_context_new(const char *cert, const char *key, struct error **err)
{
    if (load_libssl(err) < 0)
        return NULL;
    char why[256];
    SSL_CTX *ctx = ssl.SSL_CTX_new(ssl.TLS_server_method());
    if (!ctx)
        return error_set(err, GRPC_INTERNAL, 0, "SSL_CTX_new: %s", ssl_error(why, sizeof(why))),
               NULL;
    /* TLS 1.2 at least; writes from a moving buffer (our output is an evbuffer), partial writes. */
    ssl.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_2_VERSION, NULL);
    ssl.SSL_CTX_ctrl(ctx, SSL_CTRL_MODE,
                     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                         SSL_MODE_RELEASE_BUFFERS,
                     NULL);
    if (ssl.SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        error_set(err, GRPC_INVALID_ARGUMENT, 0, "tls_cert %s: %s", cert,
                  ssl_error(why, sizeof(why)));
        goto fail;
    }
    if (ssl.SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        error_set(err, GRPC_INVALID_ARGUMENT, 0, "tls_key %s: %s", key,
                  ssl_error(why, sizeof(why)));
        goto fail;
    }
    if (ssl.SSL_CTX_check_private_key(ctx) != 1) {
        error_set(err, GRPC_INVALID_ARGUMENT, 0, "tls_key %s does not match tls_cert %s", key,
                  cert);
        goto fail;
    }
    struct tls_context *t = xcalloc(1, sizeof(*t));
    t->ctx = ctx;
    return t;
fail:
    ssl.SSL_CTX_free(ctx);
    return NULL;
}

void tls_context_free(struct tls_context *t)
{
    if (!t)
        return;
    ssl.SSL_CTX_free(t->ctx);
    free(t);
}

struct tls_conn *tls_conn_new(struct tls_context *t, int fd)
{
    SSL *s = ssl.SSL_new(t->ctx);
    if (!s || ssl.SSL_set_fd(s, fd) != 1)
        util_die_invariant(__FILE__, __LINE__, "SSL_new/SSL_set_fd (out of memory)");
    ssl.SSL_set_accept_state(s);
    struct tls_conn *c = xcalloc(1, sizeof(*c));
    c->s = s;
    return c;
}

void tls_conn_free(struct tls_conn *c)
{
    if (!c)
        return;
    ssl.SSL_free(c->s);
    free(c);
}

/* Map an SSL_read/SSL_write failure to errno; the direction waited for into *other. */
static ssize_t failed(struct tls_conn *c, int rc, int other_dir, bool *other)
{
    int e = ssl.SSL_get_error(c->s, rc);
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        *other = e == other_dir;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (errno == 0)
            errno = ECONNRESET;
        ssl.ERR_clear_error();
        return -1;
    default: {
        char why[256];
        log_debug("streaming TLS error: %s", ssl_error(why, sizeof(why)));
        errno = EPROTO;
        return -1;
    }
    }
}

ssize_t tls_read(struct tls_conn *c, void *buf, size_t n, bool *want_write)
{
    *want_write = false;
    errno = 0;
    int rc = ssl.SSL_read(c->s, buf, n > INT32_MAX ? INT32_MAX : (int)n);
    if (rc > 0)
        return rc;
    ssize_t r = failed(c, rc, SSL_ERROR_WANT_WRITE, want_write);
    return r == 0 ? 0 : r;
}

ssize_t tls_write(struct tls_conn *c, const void *buf, size_t n, bool *want_read)
{
    *want_read = false;
    errno = 0;
    int rc = ssl.SSL_write(c->s, buf, n > INT32_MAX ? INT32_MAX : (int)n);
    if (rc > 0)
        return rc;
    ssize_t r = failed(c, rc, SSL_ERROR_WANT_READ, want_read);
    if (r == 0) {
        errno = EPIPE;
        return -1;
    }
    return r;
}

bool tls_pending(struct tls_conn *c)
{
    return ssl.SSL_pending(c->s) > 0;
}
