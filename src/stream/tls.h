/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS for the streaming server (the optional [stream] tls_cert/tls_key).
 * libssl is not linked: tls_context_new() dlopen()s libssl.so.3 (and with
 * it libcrypto) when the server is configured for HTTPS, so a daemon serving
 * plain HTTP never maps them. Connections are non-blocking: reads and writes
 * report "would block" and which direction the TLS engine waits for.
 */
#ifndef TINYCRI_STREAM_TLS_H
#define TINYCRI_STREAM_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct error;
struct tls_context;
struct tls_conn;

/*
 * Load libssl and the certificate chain and key (PEM). INVALID_ARGUMENT for
 * unreadable or mismatched files, UNAVAILABLE when libssl cannot be loaded.
 */
struct tls_context *tls_context_new(const char *cert, const char *key, struct error **err);
void tls_context_free(struct tls_context *t);

/* A server-side TLS session over a connected non-blocking socket (borrowed). */
struct tls_conn *tls_conn_new(struct tls_context *t, int fd);
void tls_conn_free(struct tls_conn *c);

/*
 * Read up to n plaintext bytes. Returns > 0, 0 at the peer's end (close_notify
 * or EOF), or -1 with errno EAGAIN (*want_write set when the engine first
 * needs to write) or another errno on failure.
 */
ssize_t tls_read(struct tls_conn *c, void *buf, size_t n, bool *want_write);
/* Write up to n bytes; > 0 written, or -1 with errno EAGAIN (*want_read when waiting to read). */
ssize_t tls_write(struct tls_conn *c, const void *buf, size_t n, bool *want_read);
/* Plaintext already decrypted and buffered (read it before waiting for the socket). */
bool tls_pending(struct tls_conn *c);

#endif
