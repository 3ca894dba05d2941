/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pull state machine and the shared download/unpack jobs behind it.
 *
 * A pull walks PULL_START → PULL_MANIFEST → PULL_CONFIG → PULL_LAYERS →
 * PULL_DONE (or PULL_FAILED from anywhere). Event handlers only record what
 * happened and call pull_step(), where every transition lives.
 *
 * How a state machine fails: the one way, used by every machine in the tree
 * (pull, import, unpack, cni, sandbox run and stop, container create):
 * - The operation keeps its first error in op->err (owned). <op>_fail(op, e)
 *   records e, or frees it when an error is already there (later failures
 *   are consequences of the first); it does not step.
 * - Handlers record what happened, a failure through <op>_fail(), then call
 *   <op>_step(). A step that fails in the switch calls <op>_fail() and
 *   breaks out of it.
 * - Each state that waits for something it started first waits for it, also
 *   after a failure, when it cannot be stopped half-way (a child that may
 *   still mount, a plugin call to roll back); then `if (op->err) break;`.
 * - Below the switch is the one failure path: it stops what can be stopped,
 *   moves to the undo state (or to FAILED when there is nothing to undo),
 *   and steps on. Reporting happens once, in the final state.
 * - Cancelling is failing: <op>_cancel() replaces op->err with CANCELLED
 *   (nobody listens for the first error any more), the machine unwinds as
 *   for any failure, and the final state reports nothing for CANCELLED.
 *   A callback pointer is never cleared to mean "cancelled".
 *
 * Jobs are keyed by blob digest (configs) or layer chain id, hold the ids of
 * the pulls waiting on them, and look those pulls up again when they finish:
 * a pull that was cancelled meanwhile is simply not found. A job nobody waits
 * for any more is cancelled, so a client that gives up stops its transfers.
 */
#include "autoconf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "image/manifest.h"
#include "image/pull.h"
#include "image/ref.h"
#include "image/registry.h"
#include "image/store.h"
#include "image/unpack.h"
#include "image/xferlib.h"

#define MAX_INDEX_HOPS 2
#define UNPACK_TIMEOUT_MS (30LL * 60 * 1000)

enum pull_state {
    PULL_START,    /* nothing started yet; the kick timer runs the first step */
    PULL_MANIFEST, /* waiting for a manifest or index fetch */
    PULL_CONFIG,   /* waiting for the config blob job */
    PULL_LAYERS,   /* waiting for layer jobs (download + unpack) */
    PULL_DONE,
    PULL_FAILED,
};

enum job_kind {
    JOB_BLOB,  /* put a blob into the content store */
    JOB_LAYER, /* make a layer directory exist: blob if needed, then unpack */
};

struct auth_copy {
    char *username, *password, *auth, *identity_token, *registry_token;
    struct registry_auth view;
};

struct job {
    struct puller *p;
    enum job_kind kind;
    char *key;     /* blob digest or chain id */
    char *digest;  /* the blob */
    char *diff_id; /* JOB_LAYER */
    int64_t size;
    struct image_ref ref; /* repository to fetch from (of the first pull) */
    struct auth_copy auth;
    struct registry_fetch *fetch;
    struct store_ingest *ingest;
    struct unpack_op *unpack;
    uint64_t *waiters;
    size_t n_waiters;
    bool dead; /* out of p->jobs: finished or killed */
    TAILQ_ENTRY(job) link;
};

struct pull_op {
    uint64_t id;
    struct puller *p;
    enum pull_state state;
    char *input;
    struct image_ref ref;
    struct auth_copy auth;
    struct registry_fetch *fetch;
    int hops;
    char *expect_digest; /* digest the next manifest body must have, or NULL */
    char *top_digest;    /* digest of what the reference names: repo digest */
    char *manifest_digest;
    bool have_manifest;
    struct manifest m;
    struct image_config cfg;
    char **chain_ids;
    size_t layers_pending;
    int64_t total_bytes;
    int64_t started_ns;
    struct loop_timer *kick;
    struct loop_timer *progress;
    struct loop_timer *deadline;
    struct error *err;
    pull_done_cb done;
    void *arg;
    bool detached; /* out of p->pulls and every job */
    TAILQ_ENTRY(pull_op) link;
};

struct puller {
    struct store *st;
    struct registry *reg;
    const struct config *cfg;
    TAILQ_HEAD(, pull_op) pulls;
    TAILQ_HEAD(, job) jobs;
    uint64_t next_id;
};

static void pull_step(struct pull_op *op);

static void auth_copy_set(struct auth_copy *a, const struct registry_auth *src)
{
    memset(a, 0, sizeof(*a));
    if (src) {
        a->username = xstrdup_nonempty(src->username);
        a->password = xstrdup_nonempty(src->password);
        a->auth = xstrdup_nonempty(src->auth);
        a->identity_token = xstrdup_nonempty(src->identity_token);
        a->registry_token = xstrdup_nonempty(src->registry_token);
    }
    a->view = (struct registry_auth){a->username, a->password, a->auth, a->identity_token,
                                     a->registry_token};
}

static void auth_copy_clear(struct auth_copy *a)
{
    char *secrets[] = {a->username, a->password, a->auth, a->identity_token, a->registry_token};
    for (size_t i = 0; i < ARRAY_SIZE(secrets); i++) {
        if (secrets[i]) {
            explicit_bzero(secrets[i], strlen(secrets[i]));
            free(secrets[i]);
        }
    }
    memset(a, 0, sizeof(*a));
}

static void ref_copy(struct image_ref *dst, const struct image_ref *src)
{
    dst->domain = xstrdup(src->domain);
    dst->path = xstrdup(src->path);
    dst->tag = src->tag ? xstrdup(src->tag) : NULL;
    dst->digest = src->digest ? xstrdup(src->digest) : NULL;
}

static int sha256_digest(const void *data, size_t len, char out[72], struct error **err)
{
    char hex[XFERLIB_SHA256_HEX_LEN + 1];
    if (xferlib_sha256_hex(data, len, hex, err) < 0)
        return error_prefix(err, "manifest digest");
    snprintf(out, 72, "sha256:%s", hex);
    return 0;
}

static struct pull_op *find_pull(struct puller *p, uint64_t id)
{
    struct pull_op *op;
    TAILQ_FOREACH (op, &p->pulls, link) {
        if (op->id == id)
            return op;
    }
    return NULL;
}

/* ---- jobs ---- */

static void job_free(void *arg)
{
    struct job *j = arg;
    free(j->key);
    free(j->digest);
    free(j->diff_id);
    image_ref_clear(&j->ref);
    auth_copy_clear(&j->auth);
    free(j->waiters);
    free(j);
}

/* Out of the puller's list, once: the job is dead from now on. */
static void job_unlink(struct job *j)
{
    if (j->dead)
        return;
    j->dead = true;
    TAILQ_REMOVE(&j->p->jobs, j, link);
}

/* Stop whatever the job runs and free it later. */
static void job_kill(struct job *j)
{
    if (j->fetch)
        registry_fetch_cancel(j->fetch);
    if (j->unpack)
        unpack_cancel(j->unpack);
    store_ingest_abort(j->ingest);
    j->fetch = NULL;
    j->unpack = NULL;
    j->ingest = NULL;
    job_unlink(j);
    loop_defer_free(job_free, j);
}

static void job_add_waiter(struct job *j, uint64_t id)
{
    for (size_t i = 0; i < j->n_waiters; i++) {
        if (j->waiters[i] == id)
            return;
    }
    j->waiters = xrealloc(j->waiters, (j->n_waiters + 1) * sizeof(*j->waiters));
    j->waiters[j->n_waiters++] = id;
}

static bool job_has_waiter(const struct job *j, uint64_t id)
{
    for (size_t i = 0; i < j->n_waiters; i++) {
        if (j->waiters[i] == id)
            return true;
    }
    return false;
}

static void job_drop_waiter(struct job *j, uint64_t id)
{
    for (size_t i = 0; i < j->n_waiters; i++) {
        if (j->waiters[i] == id) {
            j->waiters[i] = j->waiters[--j->n_waiters];
            break;
        }
    }
    if (j->n_waiters == 0 && !j->dead) {
        log_debug("pull job no longer wanted, stopping key=%s", j->key);
        job_kill(j);
    }
}

static void pull_on_job(struct pull_op *op, const struct job *j, const struct error *err);

/* The job ended: tell every pull still waiting, then free it. */
static void job_finish(struct job *j, const struct error *err)
{
    j->fetch = NULL;
    j->unpack = NULL;
    job_unlink(j);
    size_t n = j->n_waiters;
    _cleanup_free_ uint64_t *ids = xmalloc((n ? n : 1) * sizeof(*ids));
    memcpy(ids, j->waiters, n * sizeof(*ids));
    j->n_waiters = 0;
    for (size_t i = 0; i < n; i++) {
        struct pull_op *op = find_pull(j->p, ids[i]);
        if (op)
            pull_on_job(op, j, err);
    }
    loop_defer_free(job_free, j);
}

static void on_job_unpacked(const struct error *err, uint64_t size, void *arg)
{
    struct job *j = arg;
    j->unpack = NULL;
    if (!err) {
        log_info("layer unpacked chain=%s bytes=%llu", j->key, (unsigned long long)size);
        if (j->p->cfg->drop_layer_blobs) {
            _cleanup_free_ char *blob = store_blob_path(j->p->st, j->digest);
            unlink(blob);
        }
    }
    job_finish(j, err);
}

static int job_start_unpack(struct job *j, struct error **err)
{
    _cleanup_free_ char *blob = store_blob_path(j->p->st, j->digest);
    _cleanup_free_ char *dest = store_layer_path(j->p->st, j->key);
    j->unpack = unpack_layer(blob, dest, j->diff_id, UNPACK_TIMEOUT_MS, on_job_unpacked, j, err);
    return j->unpack ? 0 : -1;
}

static int on_job_data(const uint8_t *data, size_t len, void *arg, struct error **err)
{
    struct job *j = arg;
    return store_ingest_write(j->ingest, data, len, err);
}

static void on_job_fetched(const struct error *err, void *arg)
{
    struct job *j = arg;
    j->fetch = NULL;
    struct store_ingest *in = steal_ptr(&j->ingest);
    _cleanup_error_ struct error *e = NULL;
    if (err) {
        store_ingest_abort(in);
        job_finish(j, err);
        return;
    }
    if (store_ingest_commit(in, &e) < 0) {
        job_finish(j, e);
        return;
    }
    if (j->kind == JOB_BLOB || job_start_unpack(j, &e) < 0)
        job_finish(j, e);
}

static int job_start_fetch(struct job *j, struct error **err)
{
    j->ingest = store_ingest_new(j->p->st, j->digest, j->size, err);
    if (!j->ingest)
        return -1;
    j->fetch = registry_fetch_blob(j->p->reg, &j->ref, j->digest, j->size, 0, &j->auth.view,
                                   on_job_data, on_job_fetched, j, err);
    if (!j->fetch) {
        store_ingest_abort(steal_ptr(&j->ingest));
        return -1;
    }
    return 0;
}

/*
 * Join the job for key, or start one. Returns -1 with *err when a new job
 * cannot start (the pull fails).
 */
static int job_want(struct pull_op *op, enum job_kind kind, const char *key,
                    const struct descriptor *d, const char *diff_id, struct error **err)
{
    struct job *j;
    TAILQ_FOREACH (j, &op->p->jobs, link) {
        if (j->kind == kind && !strcmp(j->key, key)) {
            job_add_waiter(j, op->id);
            return 0;
        }
    }
    j = xcalloc(1, sizeof(*j));
    j->p = op->p;
    j->kind = kind;
    j->key = xstrdup(key);
    j->digest = xstrdup(d->digest);
    j->diff_id = diff_id ? xstrdup(diff_id) : NULL;
    j->size = d->size;
    ref_copy(&j->ref, &op->ref);
    auth_copy_set(&j->auth, &op->auth.view);
    int rc = kind == JOB_LAYER && store_has_blob(op->p->st, d->digest) ? job_start_unpack(j, err)
                                                                       : job_start_fetch(j, err);
    if (rc < 0) {
        job_free(j);
        return -1;
    }
    job_add_waiter(j, op->id);
    TAILQ_INSERT_HEAD(&op->p->jobs, j, link);
    return 0;
}

/* ---- pulls ---- */

static void pull_free(void *arg)
{
    struct pull_op *op = arg;
    free(op->input);
    image_ref_clear(&op->ref);
    auth_copy_clear(&op->auth);
    free(op->expect_digest);
    free(op->top_digest);
    free(op->manifest_digest);
    manifest_clear(&op->m);
    for (size_t i = 0; op->chain_ids && i < op->cfg.n_diff_ids; i++)
        free(op->chain_ids[i]);
    free(op->chain_ids);
    image_config_clear(&op->cfg);
    loop_timer_free(op->kick);
    loop_timer_free(op->progress);
    loop_timer_free(op->deadline);
    error_free(op->err);
    free(op);
}

/* Leave every job and the puller's list; cancel what is ours alone. */
static void pull_detach(struct pull_op *op)
{
    if (op->fetch)
        registry_fetch_cancel(steal_ptr(&op->fetch));
    if (op->detached)
        return;
    op->detached = true;
    for (struct job *j = TAILQ_FIRST(&op->p->jobs), *next; j; j = next) {
        next = TAILQ_NEXT(j, link);
        if (job_has_waiter(j, op->id))
            job_drop_waiter(j, op->id);
    }
    TAILQ_REMOVE(&op->p->pulls, op, link);
    loop_timer_disarm(op->kick);
    loop_timer_disarm(op->progress);
    loop_timer_disarm(op->deadline);
}

/* Record the first failure; later ones are its consequences. Does not step. */
static void pull_fail(struct pull_op *op, struct error *err)
{
    if (op->err)
        error_free(err);
    else
        op->err = err;
}

static void pull_on_job(struct pull_op *op, const struct job *j, const struct error *err)
{
    if (err) {
        struct error *e = error_dup(err);
        error_prefix(&e, "%s %s", j->kind == JOB_BLOB ? "config" : "layer", j->digest);
        pull_fail(op, e);
        pull_step(op);
        return;
    }
    if (j->kind == JOB_LAYER && op->layers_pending > 0)
        op->layers_pending--;
    pull_step(op);
}

static void on_manifest(const struct registry_manifest *rm, const struct error *err, void *arg)
{
    struct pull_op *op = arg;
    op->fetch = NULL;
    struct error *e = NULL;
    if (err) {
        pull_fail(op, error_dup(err));
        pull_step(op);
        return;
    }
    char digest[72];
    if (sha256_digest(rm->body, rm->len, digest, &e) < 0) {
        pull_fail(op, e);
        pull_step(op);
        return;
    }
    if (op->expect_digest && strcmp(op->expect_digest, digest)) {
        error_set(&e, GRPC_DATA_LOSS, 0, "manifest digest mismatch: expected %s, got %s",
                  op->expect_digest, digest);
    } else if (rm->digest && image_ref_is_digest(rm->digest) && strcmp(rm->digest, digest)) {
        error_set(&e, GRPC_DATA_LOSS, 0,
                  "manifest digest mismatch: registry says %s, content is %s", rm->digest, digest);
    } else if (manifest_parse(rm->media_type, rm->body, rm->len, &op->m, &e) == 0 &&
               store_put_blob(op->p->st, digest, rm->body, rm->len, &e) == 0) {
        free(op->manifest_digest);
        op->manifest_digest = xstrdup(digest);
        if (!op->top_digest)
            op->top_digest = xstrdup(digest);
        op->have_manifest = true;
    }
    if (e)
        pull_fail(op, e);
    pull_step(op);
}

static int fetch_manifest(struct pull_op *op, const char *reference, struct error **err)
{
    op->have_manifest = false;
    manifest_clear(&op->m);
    op->fetch = registry_fetch_manifest(op->p->reg, &op->ref, reference, &op->auth.view,
                                        on_manifest, op, err);
    return op->fetch ? 0 : -1;
}

static void on_kick(void *arg)
{
    pull_step(arg);
}

static void on_progress(void *arg)
{
    struct pull_op *op = arg;
    int64_t done = 0;
    struct job *j;
    TAILQ_FOREACH (j, &op->p->jobs, link) {
        if (job_has_waiter(j, op->id) && j->ingest)
            done += store_ingest_offset(j->ingest);
    }
    double secs = (double)(now_monotonic_ns() - op->started_ns) / 1e9;
    log_info("pull progress image=%s state=%d layers_left=%zu bytes=%lld/%lld rate=%.1fMiB/s",
             op->input, (int)op->state, op->layers_pending, (long long)done,
             (long long)op->total_bytes, secs > 0 ? (double)done / secs / 1048576.0 : 0.0);
    loop_timer_arm(op->progress, (int64_t)op->p->cfg->progress_interval_s * 1000);
}

static void on_deadline(void *arg)
{
    struct pull_op *op = arg;
    struct error *e = NULL;
    error_set(&e, GRPC_DEADLINE_EXCEEDED, 0, "pull of %s did not finish within %us", op->input,
              op->p->cfg->pull_timeout_s);
    pull_fail(op, e);
    pull_step(op);
}

static bool is_pinned(const struct config *cfg, const char *tagged)
{
    for (size_t i = 0; i < cfg->n_pinned_images; i++) {
        struct image_ref r;
        struct error *e = NULL;
        if (image_ref_parse(cfg->pinned_images[i], &r, &e) < 0) {
            error_free(e);
            continue;
        }
        _cleanup_free_ char *t = image_ref_tagged(&r);
        image_ref_clear(&r);
        if (!strcmp(t, tagged))
            return true;
    }
    return false;
}

static int pull_commit(struct pull_op *op, struct error **err)
{
    struct store_image *img = xcalloc(1, sizeof(*img));
    size_t n = op->m.n_descs;
    img->id = xstrdup(op->m.config.digest);
    img->manifest_digest = xstrdup(op->manifest_digest);
    img->user = xstrdup(op->cfg.user ? op->cfg.user : "");
    img->size = (uint64_t)op->m.config.size;
    img->n_layers = n;
    img->layer_digests = xcalloc(n ? n : 1, sizeof(char *));
    img->diff_ids = xcalloc(n ? n : 1, sizeof(char *));
    img->chain_ids = xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        img->layer_digests[i] = xstrdup(op->m.descs[i].digest);
        img->diff_ids[i] = xstrdup(op->cfg.diff_ids[i]);
        img->chain_ids[i] = xstrdup(op->chain_ids[i]);
        img->size += (uint64_t)op->m.descs[i].size;
    }
    if (op->ref.tag) {
        img->repo_tags = xcalloc(1, sizeof(char *));
        img->repo_tags[img->n_repo_tags++] = image_ref_tagged(&op->ref);
        img->pinned = is_pinned(op->p->cfg, img->repo_tags[0]);
    }
    img->repo_digests = xcalloc(1, sizeof(char *));
    img->repo_digests[img->n_repo_digests++] = image_ref_with_digest(&op->ref, op->top_digest);
    img->created_ns = now_realtime_ns();
    return store_image_put(op->p->st, img, err);
}

static int start_layers(struct pull_op *op, struct error **err)
{
    _cleanup_free_ char *cfg_path = store_blob_path(op->p->st, op->m.config.digest);
    size_t len = 0;
    _cleanup_free_ char *text = read_file_capped(cfg_path, REGISTRY_MANIFEST_MAX, &len, err);
    if (!text || image_config_parse((const uint8_t *)text, len, &op->cfg, err) < 0)
        return error_prefix(err, "image config %s", op->m.config.digest);
    if (op->cfg.n_diff_ids != op->m.n_descs)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0,
                         "image config lists %zu layers but the manifest has %zu",
                         op->cfg.n_diff_ids, op->m.n_descs);
    if (op->cfg.os && strcmp(op->cfg.os, "linux"))
        return error_set(err, GRPC_FAILED_PRECONDITION, 0, "image is for %s, not linux",
                         op->cfg.os);
    op->chain_ids = store_chain_ids(op->cfg.diff_ids, op->cfg.n_diff_ids, err);
    if (!op->chain_ids)
        return -1;
    for (size_t i = 0; i < op->m.n_descs; i++) {
        op->total_bytes += op->m.descs[i].size;
        if (store_has_layer(op->p->st, op->chain_ids[i]))
            continue;
        if (job_want(op, JOB_LAYER, op->chain_ids[i], &op->m.descs[i], op->cfg.diff_ids[i], err) <
            0)
            return -1;
        op->layers_pending++;
    }
    return 0;
}

/* The pull is over: leave the jobs, log, report (not a cancelled one), free later. */
static void pull_finish(struct pull_op *op)
{
    pull_detach(op);
    double secs = (double)(now_monotonic_ns() - op->started_ns) / 1e9;
    if (op->state == PULL_DONE)
        log_info("pulled image=%s id=%s seconds=%.2f", op->input, op->m.config.digest, secs);
    else if (op->err->grpc_code != GRPC_CANCELLED)
        log_info("pull failed image=%s seconds=%.2f: %s", op->input, secs, op->err->msg);
    if (op->done && (op->state == PULL_DONE || op->err->grpc_code != GRPC_CANCELLED))
        op->done(op->id, op->state == PULL_DONE ? op->m.config.digest : NULL, op->err, op->arg);
    loop_defer_free(pull_free, op);
}

static void pull_step(struct pull_op *op)
{
    struct error *err = NULL;
    switch (op->state) {
    case PULL_START: /* waiting for the kick timer: done never runs inside pull_start() */
        if (op->err)
            break;
        op->state = PULL_MANIFEST;
        if (op->ref.digest)
            op->expect_digest = xstrdup(op->ref.digest);
        if (fetch_manifest(op, op->ref.digest ? op->ref.digest : op->ref.tag, &err) < 0) {
            pull_fail(op, err);
            break;
        }
        return;
    case PULL_MANIFEST: /* waiting for a manifest or index fetch (op->fetch) */
        if (op->err)
            break;
        if (!op->have_manifest)
            return;
        if (op->m.is_index) {
            const struct descriptor *d = manifest_select_platform(&op->m, manifest_host_arch(),
                                                                  manifest_host_variant(), &err);
            if (d && ++op->hops > MAX_INDEX_HOPS)
                error_set(&err, GRPC_INVALID_ARGUMENT, 0, "image index nests too deeply");
            if (err) {
                pull_fail(op, err);
                break;
            }
            _cleanup_free_ char *next = xstrdup(d->digest);
            free(op->expect_digest);
            op->expect_digest = xstrdup(next);
            if (fetch_manifest(op, next, &err) < 0) {
                pull_fail(op, err);
                break;
            }
            return;
        }
        if (op->m.config.size > REGISTRY_MANIFEST_MAX) {
            error_set(&err, GRPC_RESOURCE_EXHAUSTED, 0, "image config is %lld bytes (max %d)",
                      (long long)op->m.config.size, REGISTRY_MANIFEST_MAX);
            pull_fail(op, err);
            break;
        }
        op->state = PULL_CONFIG;
        if (!store_has_blob(op->p->st, op->m.config.digest) &&
            job_want(op, JOB_BLOB, op->m.config.digest, &op->m.config, NULL, &err) < 0) {
            pull_fail(op, err);
            break;
        }
        /* fall through */
    case PULL_CONFIG: /* waiting for the config blob's job */
        if (op->err)
            break;
        if (!store_has_blob(op->p->st, op->m.config.digest))
            return;
        op->state = PULL_LAYERS;
        if (start_layers(op, &err) < 0) {
            pull_fail(op, err);
            break;
        }
        /* fall through */
    case PULL_LAYERS: /* waiting for the layer jobs (download, then unpack) */
        if (op->err)
            break;
        if (op->layers_pending > 0)
            return;
        if (pull_commit(op, &err) < 0) {
            pull_fail(op, err);
            break;
        }
        op->state = PULL_DONE;
        pull_finish(op);
        return;
    case PULL_DONE:
    case PULL_FAILED: /* reported; freed soon */
        return;
    }
    /* Failed (or cancelled): nothing to undo; shared jobs go on for other pulls. */
    op->state = PULL_FAILED;
    pull_finish(op);
}

uint64_t pull_start(struct puller *p, const char *ref, const struct registry_auth *auth,
                    pull_done_cb done, void *arg, struct error **err)
{
    struct image_ref parsed;
    if (image_ref_parse(ref, &parsed, err) < 0)
        return 0;
    struct pull_op *op = xcalloc(1, sizeof(*op));
    op->id = ++p->next_id;
    op->p = p;
    op->state = PULL_START;
    op->input = xstrdup(ref);
    op->ref = parsed;
    auth_copy_set(&op->auth, auth);
    op->done = done;
    op->arg = arg;
    op->started_ns = now_monotonic_ns();
    op->kick = loop_timer_new(on_kick, op);
    op->progress = loop_timer_new(on_progress, op);
    op->deadline = loop_timer_new(on_deadline, op);
    loop_timer_arm(op->kick, 0);
    loop_timer_arm(op->progress, (int64_t)p->cfg->progress_interval_s * 1000);
    if (p->cfg->pull_timeout_s)
        loop_timer_arm(op->deadline, (int64_t)p->cfg->pull_timeout_s * 1000);
    TAILQ_INSERT_HEAD(&p->pulls, op, link);
    log_info("pull started image=%s pull=%llu", ref, (unsigned long long)op->id);
    return op->id;
}

void pull_cancel(struct puller *p, uint64_t pull_id)
{
    struct pull_op *op = find_pull(p, pull_id);
    if (!op)
        return;
    log_info("pull cancelled image=%s pull=%llu", op->input, (unsigned long long)pull_id);
    error_clear(&op->err);
    error_set(&op->err, GRPC_CANCELLED, 0, "pull of %s cancelled", op->input);
    pull_step(op);
}

bool puller_uses(const char *key, void *arg)
{
    struct puller *p = arg;
    struct job *j;
    TAILQ_FOREACH (j, &p->jobs, link) {
        if (!strcmp(j->key, key) || !strcmp(j->digest, key))
            return true;
    }
    struct pull_op *op;
    TAILQ_FOREACH (op, &p->pulls, link) {
        if (op->manifest_digest && !strcmp(op->manifest_digest, key))
            return true;
        if (op->top_digest && !strcmp(op->top_digest, key))
            return true;
        if (op->m.config.digest && !strcmp(op->m.config.digest, key))
            return true;
        for (size_t i = 0; op->chain_ids && i < op->cfg.n_diff_ids; i++) {
            if (!strcmp(op->chain_ids[i], key))
                return true;
        }
        for (size_t i = 0; !op->m.is_index && i < op->m.n_descs; i++) {
            if (!strcmp(op->m.descs[i].digest, key))
                return true;
        }
    }
    return false;
}

struct puller *puller_new(struct store *st, struct registry *reg, const struct config *cfg)
{
    struct puller *p = xcalloc(1, sizeof(*p));
    TAILQ_INIT(&p->pulls);
    TAILQ_INIT(&p->jobs);
    p->st = st;
    p->reg = reg;
    p->cfg = cfg;
    return p;
}

void puller_free(struct puller *p)
{
    if (!p)
        return;
    while (!TAILQ_EMPTY(&p->pulls))
        pull_cancel(p, TAILQ_FIRST(&p->pulls)->id);
    while (!TAILQ_EMPTY(&p->jobs))
        job_kill(TAILQ_FIRST(&p->jobs));
    free(p);
}
