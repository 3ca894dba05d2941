/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcurl and libcrypto, loaded only while they are needed; libarchive,
 * loaded only in the children that need it.
 *
 * An idle daemon does not need them, and their dependency trees cost more
 * resident memory than the rest of the daemon (mostly relocated
 * .data.rel.ro pages), so tinycrid does not link them: this module
 * dlopen()s libcurl.so.4 and libcrypto.so.3 (RTLD_NOW | RTLD_LOCAL) on
 * first use, resolves the functions the code calls into tables, and when the
 * last user is gone arms an idle timer on the loop (XFERLIB_IDLE_MS); when it
 * fires, curl_global_cleanup() runs, both libraries are dlclose()d and the
 * malloc arenas are trimmed. A use before the timer fires cancels it.
 *
 * Callers include the real curl headers for types and constants and call
 * through the table: xcurl.easy_setopt(h, CURLOPT_URL, url) for
 * curl_easy_setopt(h, CURLOPT_URL, url). The table is valid only between
 * xferlib_acquire() and the matching xferlib_release(). libcrypto is used
 * for hashing only, through the xferlib_hash API below.
 *
 * libcrypto.so.3, libssl.so.3 and libp11-kit.so.0 are linked with
 * -z nodelete on Debian: dlclose() leaves them (and OpenSSL's heap state)
 * mapped once they were loaded. Unloading still drops libcurl and the rest
 * of its tree (krb5, ldap, ssh2, rtmp, gnutls...).
 *
 * In a forked child (unpack, import) the same calls work: the child loads
 * what it needs and never unloads nor touches the loop. A child that
 * chroots must hash once before (xferlib_hash_init) so libcrypto is loaded
 * while the filesystem is still there.
 */
#ifndef TINYCRI_IMAGE_XFERLIB_H
#define TINYCRI_IMAGE_XFERLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>

struct error;

/* How long libcurl and libcrypto stay loaded after their last user. */
#define XFERLIB_IDLE_MS (30 * 1000)

/*
 * Whether unloading unmaps the libraries. Not under AddressSanitizer:
 * LeakSanitizer remembers the dynamic TLS blocks it saw and reads them at
 * exit, after dlclose() freed them, and crashes. There they are opened with
 * RTLD_NODELETE; everything else (cleanup, dlclose, loading again) runs the same.
 */
#if defined(__SANITIZE_ADDRESS__)
#define XFERLIB_UNMAPS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define XFERLIB_UNMAPS 0
#endif
#endif
#ifndef XFERLIB_UNMAPS
#define XFERLIB_UNMAPS 1
#endif

/* The libcurl functions the daemon calls, each typed exactly as curl.h declares it. */
#define XFERLIB_CURL_FUNCS(X)                                                                      \
    X(global_init)                                                                                 \
    X(global_cleanup)                                                                              \
    X(version_info)                                                                                \
    X(easy_init)                                                                                   \
    X(easy_cleanup)                                                                                \
    X(easy_setopt)                                                                                 \
    X(easy_getinfo)                                                                                \
    X(easy_strerror)                                                                               \
    X(easy_escape)                                                                                 \
    X(free)                                                                                        \
    X(slist_append)                                                                                \
    X(slist_free_all)                                                                              \
    X(multi_init)                                                                                  \
    X(multi_cleanup)                                                                               \
    X(multi_setopt)                                                                                \
    X(multi_add_handle)                                                                            \
    X(multi_remove_handle)                                                                         \
    X(multi_assign)                                                                                \
    X(multi_socket_action)                                                                         \
    X(multi_info_read)                                                                             \
    X(url)                                                                                         \
    X(url_cleanup)                                                                                 \
    X(url_set)                                                                                     \
    X(url_get)

/*
 * Member easy_setopt is curl_easy_setopt, and so on. curl.h makes some of
 * those names function-like macros (typecheck-gcc.h), hence the short names.
 */
#define XFERLIB_CURL_MEMBER(name) __typeof__(curl_##name) *name;
struct xferlib_curl {
    XFERLIB_CURL_FUNCS(XFERLIB_CURL_MEMBER)
};
#undef XFERLIB_CURL_MEMBER

/* The libcurl table: filled while libcurl is loaded, all NULL otherwise. */
extern struct xferlib_curl xcurl;

/*
 * Take a reference on libcurl (and libcrypto): the first one loads both and
 * runs curl_global_init(CURL_GLOBAL_DEFAULT), or cancels a pending unload.
 * Fails with UNAVAILABLE when a library cannot be loaded, INTERNAL when it
 * lacks a function or curl_global_init fails; the message names the library
 * and carries dlerror(). Every success needs one xferlib_release().
 */
int xferlib_acquire(struct error **err);

/* Drop a reference; the last one arms the idle timer (or unloads at once without a loop). */
void xferlib_release(void);

/* Is libcurl loaded now (in use or waiting for the idle timer)? */
bool xferlib_is_loaded(void);

/*
 * Unload now if nothing holds a reference, and free the idle timer. Call
 * before loop_shutdown(); a later use arms a timer on the loop of that time.
 */
void xferlib_shutdown(void);

/* For tests: the idle delay in milliseconds (XFERLIB_IDLE_MS when never set). */
void xferlib_set_idle_ms(int64_t ms);
/* For tests: load other sonames (NULL: the default); only while nothing is loaded. */
void xferlib_set_sonames(const char *curl_soname, const char *crypto_soname);

/* ---- libarchive, for the children that unpack and import ---- */

/*
 * libarchive drags in libxml2, ICU, libstdc++, nettle and five compression
 * libraries: about 2.4 MiB of the daemon's PSS, for work that runs only in
 * forked children. So the daemon does not link it: a child calls
 * xferlib_archive_load() (before it chroots) and then calls through the
 * table, xarchive.read_new() for archive_read_new(). Loaded once, never
 * unloaded (the child exits); the daemon itself never loads it.
 */
#define XFERLIB_ARCHIVE_FUNCS(X)                                                                   \
    X(read_new)                                                                                    \
    X(read_free)                                                                                   \
    X(read_next_header)                                                                            \
    X(read_open)                                                                                   \
    X(read_open_fd)                                                                                \
    X(read_data)                                                                                   \
    X(read_data_block)                                                                             \
    X(read_support_filter_gzip)                                                                    \
    X(read_support_filter_zstd)                                                                    \
    X(read_support_format_raw)                                                                     \
    X(read_support_format_tar)                                                                     \
    X(write_disk_new)                                                                              \
    X(write_disk_set_options)                                                                      \
    X(write_header)                                                                                \
    X(write_data)                                                                                  \
    X(write_data_block)                                                                            \
    X(write_finish_entry)                                                                          \
    X(write_close)                                                                                 \
    X(free)                                                                                        \
    X(error_string)                                                                                \
    X(set_error)                                                                                   \
    X(entry_filetype)                                                                              \
    X(entry_hardlink)                                                                              \
    X(entry_pathname)                                                                              \
    X(entry_set_pathname)                                                                          \
    X(entry_set_perm)                                                                              \
    X(entry_size)                                                                                  \
    X(entry_symlink)                                                                               \
    X(entry_xattr_add_entry)                                                                       \
    X(entry_xattr_clear)                                                                           \
    X(entry_xattr_next)                                                                            \
    X(entry_xattr_reset)

#define XFERLIB_ARCHIVE_MEMBER(name) __typeof__(archive_##name) *name;
struct xferlib_archive {
    XFERLIB_ARCHIVE_FUNCS(XFERLIB_ARCHIVE_MEMBER)
    __typeof__(archive_errno) *errno_of; /* archive_errno: "errno" is a macro */
};
#undef XFERLIB_ARCHIVE_MEMBER

/* The libarchive table: filled by xferlib_archive_load(), all NULL before. */
extern struct xferlib_archive xarchive;

/*
 * Load libarchive.so.13 and fill xarchive; a no-op once loaded. UNAVAILABLE
 * when it cannot be loaded, INTERNAL when it lacks a function.
 */
int xferlib_archive_load(struct error **err);

/* ---- hashing over libcrypto's EVP ---- */

enum xferlib_hash_algo {
    XFERLIB_SHA256, /* 32 bytes, 64 hex digits */
    XFERLIB_SHA512, /* 64 bytes, 128 hex digits */
    XFERLIB_SHA1,   /* 20 bytes; only for protocols that name it (the WebSocket handshake) */
};

/* Room for any digest here, and for its hex with the NUL. */
#define XFERLIB_HASH_MAX 64
#define XFERLIB_HASH_HEX_MAX 129
#define XFERLIB_SHA256_HEX_LEN 64

/* A streaming hash; zero-initialise it. It holds a libcrypto reference from init to final/clear. */
struct xferlib_hash {
    void *ctx; /* EVP_MD_CTX, NULL when not started */
    size_t md_len;
};

/* Start (loading libcrypto if needed). UNAVAILABLE/INTERNAL as xferlib_acquire(). */
int xferlib_hash_init(struct xferlib_hash *h, enum xferlib_hash_algo algo, struct error **err);
void xferlib_hash_update(struct xferlib_hash *h, const void *data, size_t len);
/* Finish: write 2 * digest length lower-case hex digits and a NUL to out; h is cleared. */
void xferlib_hash_final_hex(struct xferlib_hash *h, char *out);
/* Finish: write the digest's bytes to out and return how many; h is cleared. */
size_t xferlib_hash_final(struct xferlib_hash *h, uint8_t out[XFERLIB_HASH_MAX]);
/* Drop an unfinished hash; a no-op on a cleared one. */
void xferlib_hash_clear(struct xferlib_hash *h);
#define _cleanup_xferlib_hash_ __attribute__((cleanup(xferlib_hash_clear)))

/* SHA-256 of a buffer as 64 hex digits and a NUL. */
int xferlib_sha256_hex(const void *data, size_t len, char out[XFERLIB_SHA256_HEX_LEN + 1],
                       struct error **err);

#endif
