/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcurl and libcrypto on demand, behind xferlib.h. Two counts say who
 * needs what: curl users (the registry's multi, which also needs libcrypto
 * for its token cache keys) and running hashes (libcrypto only). When both
 * reach zero the idle timer is armed; it unloads everything. Unloading waits
 * while the process has other threads: libcurl's resolver threads are
 * detached when a transfer ends before its lookup, and may still be running
 * libcurl code.
 */
#include "autoconf.h"

#include <dirent.h>
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "image/xferlib.h"

#define DEFAULT_CURL_SONAME "libcurl.so.4"
#define DEFAULT_CRYPTO_SONAME "libcrypto.so.3"
#define ARCHIVE_SONAME "libarchive.so.13"
/* Waiting for a resolver thread to end: look again after this long. */
#define THREADS_RECHECK_MS 1000

#if XFERLIB_UNMAPS
#define DLOPEN_FLAGS (RTLD_NOW | RTLD_LOCAL)
#else
#define DLOPEN_FLAGS (RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE)
#endif

struct xferlib_curl xcurl;
struct xferlib_archive xarchive;

/* The EVP functions hashing uses. */
#define CRYPTO_FUNCS(X)                                                                            \
    X(EVP_MD_CTX_new)                                                                              \
    X(EVP_MD_CTX_free)                                                                             \
    X(EVP_DigestInit_ex)                                                                           \
    X(EVP_DigestUpdate)                                                                            \
    X(EVP_DigestFinal_ex)                                                                          \
    X(EVP_sha1)                                                                                    \
    X(EVP_sha256)                                                                                  \
    X(EVP_sha512)

#define CRYPTO_MEMBER(name) __typeof__(name) *name;
static struct {
    CRYPTO_FUNCS(CRYPTO_MEMBER)
} xcrypto;
#undef CRYPTO_MEMBER

struct symbol {
    const char *name;
    void **slot;
};

#define CURL_SYMBOL(name) {"curl_" #name, (void **)&xcurl.name},
static const struct symbol curl_symbols[] = {XFERLIB_CURL_FUNCS(CURL_SYMBOL)};
#undef CURL_SYMBOL

#define ARCHIVE_SYMBOL(name) {"archive_" #name, (void **)&xarchive.name},
static const struct symbol archive_symbols[] = {
    XFERLIB_ARCHIVE_FUNCS(ARCHIVE_SYMBOL){"archive_errno", (void **)&xarchive.errno_of},
};
#undef ARCHIVE_SYMBOL

#define CRYPTO_SYMBOL(name) {#name, (void **)&xcrypto.name},
static const struct symbol crypto_symbols[] = {CRYPTO_FUNCS(CRYPTO_SYMBOL)};
#undef CRYPTO_SYMBOL

static struct {
    const char *curl_soname;
    const char *crypto_soname;
    void *curl; /* dlopen handles, NULL when not loaded */
    void *crypto;
    unsigned curl_users;
    unsigned hash_users;
    struct loop_timer *idle;
    int64_t idle_ms;
    pid_t pid; /* the daemon's: a forked child never unloads */
} lib = {
    .curl_soname = DEFAULT_CURL_SONAME,
    .crypto_soname = DEFAULT_CRYPTO_SONAME,
    .idle_ms = XFERLIB_IDLE_MS,
};

/* Before main(), so every child forked later knows it is one. */
__attribute__((constructor)) static void note_pid(void)
{
    lib.pid = getpid();
}

static bool in_child(void)
{
    return getpid() != lib.pid;
}

/* ---- loading ---- */

static void forget(const struct symbol *syms, size_t n)
{
    for (size_t i = 0; i < n; i++)
        *syms[i].slot = NULL;
}

static void *load(const char *soname, const struct symbol *syms, size_t n, struct error **err)
{
    void *so = dlopen(soname, DLOPEN_FLAGS);
    if (!so)
        return error_set(err, GRPC_UNAVAILABLE, 0, "cannot load %s: %s", soname, dlerror()), NULL;
    for (size_t i = 0; i < n; i++) {
        dlerror();
        void *p = dlsym(so, syms[i].name);
        if (!p) {
            const char *why = dlerror();
            error_set(err, GRPC_INTERNAL, 0, "%s lacks %s: %s", soname, syms[i].name,
                      why ? why : "NULL symbol");
            forget(syms, n);
            dlclose(so);
            return NULL;
        }
        *syms[i].slot = p;
    }
    return so;
}

static int crypto_load(struct error **err)
{
    if (lib.crypto)
        return 0;
    lib.crypto = load(lib.crypto_soname, crypto_symbols, ARRAY_SIZE(crypto_symbols), err);
    if (!lib.crypto)
        return -1;
    if (!in_child()) /* a child's stderr lines are relayed as warnings */
        log_debug("loaded lib=%s", lib.crypto_soname);
    return 0;
}

static int curl_load(struct error **err)
{
    if (lib.curl)
        return 0;
    void *so = load(lib.curl_soname, curl_symbols, ARRAY_SIZE(curl_symbols), err);
    if (!so)
        return -1;
    if (xcurl.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        forget(curl_symbols, ARRAY_SIZE(curl_symbols));
        dlclose(so);
        return error_set(err, GRPC_INTERNAL, 0, "%s: curl_global_init failed", lib.curl_soname);
    }
    lib.curl = so;
    if (!in_child()) { /* a child's stderr lines are relayed as warnings */
        log_debug("loaded lib=%s", lib.curl_soname);
        /* Without an asynchronous resolver, curl resolves names inside the loop. */
        const curl_version_info_data *v = xcurl.version_info(CURLVERSION_NOW);
        if (!v || !(v->features & CURL_VERSION_ASYNCHDNS))
            log_warn("lib=%s has no asynchronous DNS resolver: registry name lookups will "
                     "block the daemon while they run",
                     lib.curl_soname);
    }
    return 0;
}

static void unload(void)
{
    if (lib.curl) {
        xcurl.global_cleanup();
        forget(curl_symbols, ARRAY_SIZE(curl_symbols));
        dlclose(steal_ptr(&lib.curl));
        log_debug("unloaded lib=%s", lib.curl_soname);
    }
    if (lib.crypto) {
        forget(crypto_symbols, ARRAY_SIZE(crypto_symbols));
        dlclose(steal_ptr(&lib.crypto));
        log_debug("unloaded lib=%s", lib.crypto_soname);
    }
#ifdef HAVE_MALLOC_TRIM
    /* What the libraries freed is mostly below the top of the heap: give it back. */
    malloc_trim(0);
#endif
}

static size_t thread_count(void)
{
    size_t n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return 1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void on_idle(void *arg)
{
    if (lib.curl_users || lib.hash_users)
        return;
    if (thread_count() > 1) {
        log_debug("unload of lib=%s waits for other threads to end", lib.curl_soname);
        loop_timer_arm(lib.idle, THREADS_RECHECK_MS);
        return;
    }
    unload();
}

/* A user is gone: unload later when it was the last. */
static void maybe_idle(void)
{
    if (lib.curl_users || lib.hash_users || in_child())
        return;
    if (!loop_base()) {
        if (thread_count() == 1)
            unload();
        return;
    }
    if (!lib.idle)
        lib.idle = loop_timer_new(on_idle, NULL);
    loop_timer_arm(lib.idle, lib.idle_ms);
}

static void cancel_idle(void)
{
    if (lib.idle && !in_child())
        loop_timer_disarm(lib.idle);
}

int xferlib_archive_load(struct error **err)
{
    static void *so;
    if (so)
        return 0;
    /* Never unloaded: the child that loads it exits with it loaded. */
    so = load(ARCHIVE_SONAME, archive_symbols, ARRAY_SIZE(archive_symbols), err);
    return so ? 0 : -1;
}

int xferlib_acquire(struct error **err)
{
    cancel_idle();
    if (crypto_load(err) < 0 || curl_load(err) < 0) {
        maybe_idle();
        return -1;
    }
    lib.curl_users++;
    return 0;
}

void xferlib_release(void)
{
    assert_state(lib.curl_users > 0);
    lib.curl_users--;
    maybe_idle();
}

bool xferlib_is_loaded(void)
{
    return lib.curl != NULL;
}

void xferlib_shutdown(void)
{
    loop_timer_free(steal_ptr(&lib.idle));
    /* With a resolver thread still running, leave libcurl to the exit. */
    if (!lib.curl_users && !lib.hash_users && !in_child() && thread_count() == 1)
        unload();
}

void xferlib_set_idle_ms(int64_t ms)
{
    lib.idle_ms = ms;
}

void xferlib_set_sonames(const char *curl_soname, const char *crypto_soname)
{
    assert_state(!lib.curl && !lib.crypto);
    lib.curl_soname = curl_soname ? curl_soname : DEFAULT_CURL_SONAME;
    lib.crypto_soname = crypto_soname ? crypto_soname : DEFAULT_CRYPTO_SONAME;
}

/* ---- hashing ---- */

static const char *algo_name(enum xferlib_hash_algo algo)
{
    switch (algo) {
    case XFERLIB_SHA1:
        return "SHA-1";
    case XFERLIB_SHA512:
        return "SHA-512";
    case XFERLIB_SHA256:
        break;
    }
    return "SHA-256";
}

int xferlib_hash_init(struct xferlib_hash *h, enum xferlib_hash_algo algo, struct error **err)
{
    memset(h, 0, sizeof(*h));
    cancel_idle();
    if (crypto_load(err) < 0) {
        maybe_idle();
        return -1;
    }
    lib.hash_users++;
    const EVP_MD *md = algo == XFERLIB_SHA1     ? xcrypto.EVP_sha1()
                       : algo == XFERLIB_SHA512 ? xcrypto.EVP_sha512()
                                                : xcrypto.EVP_sha256();
    EVP_MD_CTX *ctx = xcrypto.EVP_MD_CTX_new();
    if (!md || !ctx || xcrypto.EVP_DigestInit_ex(ctx, md, NULL) != 1) {
        xcrypto.EVP_MD_CTX_free(ctx);
        lib.hash_users--;
        maybe_idle();
        return error_set(err, GRPC_INTERNAL, 0, "%s: %s digest init failed", lib.crypto_soname,
                         algo_name(algo));
    }
    h->ctx = ctx;
    h->md_len = algo == XFERLIB_SHA1 ? 20 : algo == XFERLIB_SHA512 ? 64 : 32;
    return 0;
}

void xferlib_hash_update(struct xferlib_hash *h, const void *data, size_t len)
{
    assert_state(h->ctx);
    /* Fails only without memory or with a broken provider. */
    if (len > 0 && xcrypto.EVP_DigestUpdate(h->ctx, data, len) != 1)
        assert_state(!"EVP_DigestUpdate failed");
}

size_t xferlib_hash_final(struct xferlib_hash *h, uint8_t out[XFERLIB_HASH_MAX])
{
    assert_state(h->ctx);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (xcrypto.EVP_DigestFinal_ex(h->ctx, md, &len) != 1 || len != h->md_len ||
        len > XFERLIB_HASH_MAX)
        assert_state(!"EVP_DigestFinal_ex failed");
    memcpy(out, md, len);
    xferlib_hash_clear(h);
    return len;
}

void xferlib_hash_final_hex(struct xferlib_hash *h, char *out)
{
    uint8_t md[XFERLIB_HASH_MAX];
    size_t len = xferlib_hash_final(h, md);
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 0xf];
    }
    out[2 * len] = '\0';
}

void xferlib_hash_clear(struct xferlib_hash *h)
{
    if (!h->ctx)
        return;
    xcrypto.EVP_MD_CTX_free(steal_ptr(&h->ctx));
    h->md_len = 0;
    assert_state(lib.hash_users > 0);
    lib.hash_users--;
    maybe_idle();
}

int xferlib_sha256_hex(const void *data, size_t len, char out[XFERLIB_SHA256_HEX_LEN + 1],
                       struct error **err)
{
    struct xferlib_hash h;
    if (xferlib_hash_init(&h, XFERLIB_SHA256, err) < 0)
        return -1;
    xferlib_hash_update(&h, data, len);
    xferlib_hash_final_hex(&h, out);
    return 0;
}
