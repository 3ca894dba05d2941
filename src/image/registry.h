/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Registry client: the OCI distribution API (Docker Registry HTTP API v2)
 * over libcurl's multi-socket interface, driven by the daemon's libevent
 * loop. Many transfers run at once and nothing blocks.
 *
 * The client hides the protocol's chores from its callers: the Bearer token
 * challenge (tokens cached per registry and scope until they expire) and
 * Basic auth, redirects to blob storage, per-registry mirrors tried in order
 * before the origin, proxies from HTTP(S)_PROXY/NO_PROXY, retries with
 * backoff on 5xx, 429 and connection failures, and resuming an interrupted
 * blob with a Range request so the caller's data stream just continues.
 * Credentials are never logged.
 *
 * libcurl is loaded (image/xferlib.h) only while it is used: the first
 * fetch loads it and creates the multi handle, which is cleaned up when no
 * fetch has existed for REGISTRY_MULTI_IDLE_MS. Until then the multi keeps
 * its open connections, TLS sessions and CA store, so the blobs of a pull and
 * the pulls that follow it do not connect and load the CA bundle again (as a
 * Go client keeps its idle connections). The token cache and the host
 * settings outlive it.
 */
#ifndef TINYCRI_IMAGE_REGISTRY_H
#define TINYCRI_IMAGE_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct error;
struct image_ref;

/* How long the multi (and its connections) outlives the last fetch. */
#define REGISTRY_MULTI_IDLE_MS (20 * 1000)

/* For tests: that delay in milliseconds (0: clean up at once). */
void registry_set_multi_idle_ms(int64_t ms);

/* Largest manifest or index body accepted (RESOURCE_EXHAUSTED beyond). */
#define REGISTRY_MANIFEST_MAX (4 * 1024 * 1024)

/* Credentials for one pull, from PullImageRequest.auth or the config. */
struct registry_auth {
    const char *username;
    const char *password;
    const char *auth;           /* base64 "user:password" */
    const char *identity_token; /* OAuth2 refresh token for the token endpoint */
    const char *registry_token; /* bearer token sent as is */
};

struct registry;       /* the client: one per daemon */
struct registry_fetch; /* one manifest or blob transfer */

/*
 * Create the client on the loop; reads [registry.<host>] settings from cfg
 * (borrowed). Does not load libcurl. INVALID_ARGUMENT for a bad mirror URL.
 */
struct registry *registry_new(const struct config *cfg, struct error **err);
/*
 * Cancel every transfer (no callbacks) and free; registry_free(NULL) is a no-op.
 * Not from inside one of the client's callbacks.
 */
void registry_free(struct registry *r);

/*
 * Result of a manifest fetch: the body (capped at REGISTRY_MANIFEST_MAX),
 * its Content-Type, and the digest the registry gave
 * (Docker-Content-Digest), all borrowed for the callback's duration.
 * media_type has its parameters ("; charset=...") removed and is "" when the
 * registry sent no Content-Type.
 */
struct registry_manifest {
    const uint8_t *body;
    size_t len;
    const char *media_type;
    const char *digest; /* may be NULL */
};

/*
 * Called once when a fetch ends. err is NULL on success; otherwise the
 * error to report (NOT_FOUND for a missing manifest/blob,
 * UNAUTHENTICATED/PERMISSION_DENIED for auth failures, UNAVAILABLE for
 * network failures after retries, RESOURCE_EXHAUSTED for caps). The fetch is
 * freed by the client after the callback returns.
 */
typedef void (*registry_manifest_cb)(const struct registry_manifest *m, const struct error *err,
                                     void *arg);
typedef void (*registry_blob_done_cb)(const struct error *err, void *arg);
/*
 * Blob data in order, as it arrives (across retries and resumes, the stream
 * continues where it stopped: no byte is delivered twice). Return 0 to go
 * on, -1 to abort the transfer (then done is called with the error the
 * callback set in *err, or CANCELLED).
 */
typedef int (*registry_blob_data_cb)(const uint8_t *data, size_t len, void *arg,
                                     struct error **err);

/*
 * GET /v2/<name>/manifests/<reference>, where reference is a tag or digest;
 * NULL means the ref's digest if it has one, else its tag. Accepts OCI and
 * Docker manifest and index media types. This and registry_fetch_blob()
 * fail with UNAVAILABLE or INTERNAL when libcurl cannot be loaded.
 */
struct registry_fetch *registry_fetch_manifest(struct registry *r, const struct image_ref *ref,
                                               const char *reference,
                                               const struct registry_auth *auth,
                                               registry_manifest_cb done, void *arg,
                                               struct error **err);

/*
 * GET /v2/<name>/blobs/<digest>, starting at byte offset (a Range request
 * when > 0, for a caller that already holds the first offset bytes).
 * size is the expected length from the descriptor (-1 if unknown). Blob
 * fetches beyond the configured concurrency limit wait in a queue.
 */
struct registry_fetch *registry_fetch_blob(struct registry *r, const struct image_ref *ref,
                                           const char *digest, int64_t size, int64_t offset,
                                           const struct registry_auth *auth,
                                           registry_blob_data_cb data, registry_blob_done_cb done,
                                           void *arg, struct error **err);

/*
 * Stop a fetch; its callbacks will not run. Safe from any callback, its own
 * data callback included; a no-op from its own done callback (the fetch is
 * freed when that returns, so never use it afterwards).
 */
void registry_fetch_cancel(struct registry_fetch *f);

/* Bytes given to the data callback so far, not counting offset (for progress logs). */
int64_t registry_fetch_bytes(const struct registry_fetch *f);

/*
 * ---- Internal: exposed for tests/fuzz only (registry_auth.h has the auth parsers). ----
 */

/*
 * " (CODE: message)" from a registry error body {"errors":[{"code":…,
 * "message":…}]}, printable ASCII only and capped, or "" (owned). *denied
 * (when not NULL) tells whether any error has the code DENIED.
 */
char *registry_error_detail(const char *body, size_t len, bool *denied);

#endif
