/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Air-gapped import behind import.h: the parent's side, on the loop.
 *
 * The risky part runs in a child forked through child_fork():
 * import_child_main() (import_child.c) extracts, verifies and describes the
 * tarball in the staging directory and prints the description.
 *
 * The parent (on the loop, cheap work only) walks each tarball through
 * IMPORT_EXTRACT → IMPORT_UNPACK → IMPORT_DONE (or IMPORT_FAILED): it
 * renames the verified blobs into the store, unpacks missing layers through
 * unpack_layer() (at most MAX_PARALLEL_UNPACKS at once), then writes the
 * image records last, as pull_commit() does. The staging directory is always
 * removed by a child `rm -rf`, never on the loop.
 */
#include "autoconf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "core/error.h"
#include "core/id.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/path.h"
#include "core/text.h"
#include "core/persist.h"
#include "core/util.h"
#include "image/import.h"
#include "image/import_child.h"
#include "image/ref.h"
#include "image/store.h"
#include "image/unpack.h"

/* Caps on what the import directory and a tarball may hold; beyond them it is refused. */
#define MAX_FILES_PER_SCAN 1024
#define IMPORT_PATH_MAX 1024
#define IMPORT_DESCRIPTION_MAX (1024 * 1024)
#define RECORDS_MAX (4 * 1024 * 1024)

#define IMPORT_TIMEOUT_MS (60LL * 60 * 1000)
#define UNPACK_TIMEOUT_MS (30LL * 60 * 1000)
#define RM_TIMEOUT_MS (10LL * 60 * 1000)
#define MAX_PARALLEL_UNPACKS 2

#define STAGING_PREFIX "import-"
#define RECORDS_FILE "imports.json"

enum import_state {
    IMPORT_EXTRACT, /* extract child running; waiting for its exit */
    IMPORT_UNPACK,  /* blobs are in the store; waiting for layer unpacks */
    IMPORT_DONE,
    IMPORT_FAILED,
};

/* A staged file that becomes a store blob. */
struct import_blob {
    char *digest;
    char *path; /* relative to the staging directory */
};

/* A layer directory to create. */
struct import_layer {
    struct import_job *job;
    char *digest; /* the blob */
    char *diff_id;
    char *chain_id;
    struct unpack_op *op;
};

/* One tarball. */
struct import_job {
    struct importer *im;
    enum import_state state;
    char *name; /* file name in the import directory */
    int64_t size, mtime_ns;
    char *staging;
    int fd; /* the tarball, handed to the child; -1 otherwise */
    struct child *child;
    struct store_image **imgs; /* records to write, from the child's description */
    size_t n_imgs;
    char **ids; /* ids of the images written, for imports.json */
    size_t n_ids;
    struct import_blob *blobs;
    size_t n_blobs;
    struct import_layer *layers;
    size_t n_layers, next_layer, running;
    struct error *err;
    TAILQ_ENTRY(import_job) link; /* im->queue while waiting */
};

/* A staging directory being removed (the importer cancels it when it goes first). */
struct rm_op {
    struct importer *im;
    char *path;
    struct child *child;
    TAILQ_ENTRY(rm_op) link; /* im->rms */
};

struct importer {
    struct store *st;
    char *dir;
    char *records_path;
    json_t *records;                /* imports.json "files": name -> {size, mtime_ns, images} */
    TAILQ_HEAD(, import_job) queue; /* waiting tarballs, in order */
    struct import_job *active;      /* one tarball at a time */
    TAILQ_HEAD(, rm_op) rms;
    struct loop_timer *kick;
    bool cleaned;      /* staging leftovers of an earlier run removed */
    bool scan_pending; /* a scan's done callback is owed */
    void (*done_cb)(void *arg);
    void *done_arg;
};

static bool is_tarball_name(const char *name)
{
    return name[0] != '.' && (str_has_suffix(name, ".tar") || str_has_suffix(name, ".tar.gz") ||
                              str_has_suffix(name, ".tgz"));
}

/* ======================================================================
 * The parent, on the loop.
 * ====================================================================== */

static void job_step(struct import_job *job);

static void job_free(void *arg)
{
    struct import_job *job = arg;
    if (!job)
        return;
    free(job->name);
    free(job->staging);
    if (job->fd >= 0)
        close(job->fd);
    for (size_t i = 0; i < job->n_imgs; i++)
        store_image_free(job->imgs[i]);
    free(job->imgs);
    for (size_t i = 0; i < job->n_ids; i++)
        free(job->ids[i]);
    free(job->ids);
    for (size_t i = 0; i < job->n_blobs; i++) {
        free(job->blobs[i].digest);
        free(job->blobs[i].path);
    }
    free(job->blobs);
    for (size_t i = 0; i < job->n_layers; i++) {
        free(job->layers[i].digest);
        free(job->layers[i].diff_id);
        free(job->layers[i].chain_id);
    }
    free(job->layers);
    error_free(job->err);
    free(job);
}

static void on_rm_done(const struct child_result *r, void *arg)
{
    struct rm_op *rm = arg;
    if (!r->exited || r->exit_code != 0)
        log_warn("could not remove staging directory path=%s: %.*s", rm->path, (int)r->err_len,
                 r->err);
    struct importer *im = rm->im;
    TAILQ_REMOVE(&im->rms, rm, link);
    loop_timer_arm(im->kick, 0);
    free(rm->path);
    free(rm);
}

/* rm -rf in a child: a staging tree may be large. */
static void remove_staging(struct importer *im, const char *path)
{
    struct rm_op *rm = xcalloc(1, sizeof(*rm));
    rm->im = im;
    rm->path = xstrdup(path);
    _cleanup_error_ struct error *err = NULL;
    rm->child = child_rm_rf(&path, 1, RM_TIMEOUT_MS, on_rm_done, rm, &err);
    if (!rm->child) {
        log_warn("could not remove staging directory path=%s: %s", path, err->msg);
        free(rm->path);
        free(rm);
        return;
    }
    TAILQ_INSERT_HEAD(&im->rms, rm, link);
}

static char *staging_parent(const struct importer *im)
{
    return xasprintf("%s/content/ingest", store_root(im->st));
}

/* Staging directories of an import a crash or restart interrupted. */
static void clean_leftovers(struct importer *im)
{
    _cleanup_free_ char *parent = staging_parent(im);
    DIR *d = opendir(parent);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!str_has_prefix(de->d_name, STAGING_PREFIX))
            continue;
        _cleanup_free_ char *p = xasprintf("%s/%s", parent, de->d_name);
        log_debug("removing import leftover path=%s", p);
        remove_staging(im, p);
    }
    closedir(d);
}

/* ---- imports.json ---- */

static void records_load(struct importer *im)
{
    im->records = json_object();
    _cleanup_error_ struct error *err = NULL;
    size_t len = 0;
    _cleanup_free_ char *text = read_file_capped(im->records_path, RECORDS_MAX, &len, &err);
    if (!text) {
        if (err->grpc_code != GRPC_NOT_FOUND)
            log_warn("ignoring import records path=%s: %s", im->records_path, err->msg);
        return;
    }
    json_error_t jerr;
    _cleanup_json_ json_t *doc = json_loadb(text, len, 0, &jerr);
    json_t *files = json_object_get(doc, "files");
    if (!json_is_object(files)) {
        log_warn("ignoring malformed import records path=%s", im->records_path);
        return;
    }
    json_object_update(im->records, files);
}

static void records_save(struct importer *im)
{
    _cleanup_json_ json_t *doc = json_pack("{s:O}", "files", im->records);
    _cleanup_free_ char *text = json_dumps(doc, JSON_INDENT(1) | JSON_SORT_KEYS);
    _cleanup_error_ struct error *err = NULL;
    assert_state(text);
    if (persist_write(im->records_path, text, strlen(text), 0600, &err) < 0)
        log_warn("could not save import records path=%s: %s", im->records_path, err->msg);
}

static bool is_unchanged(const struct importer *im, const char *name, int64_t size,
                         int64_t mtime_ns)
{
    json_t *r = json_object_get(im->records, name);
    return r && json_integer_value(json_object_get(r, "size")) == size &&
           json_integer_value(json_object_get(r, "mtime_ns")) == mtime_ns;
}

static void record_import(struct importer *im, const struct import_job *job)
{
    json_t *ids = json_array();
    for (size_t i = 0; i < job->n_ids; i++)
        import_json_add_unique(ids, job->ids[i]);
    json_object_set_new(im->records, job->name,
                        json_pack("{s:I, s:I, s:o}", "size", (json_int_t)job->size, "mtime_ns",
                                  (json_int_t)job->mtime_ns, "images", ids));
    records_save(im);
}

/* ---- the child's description ---- */

static const char *digest_at(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return image_ref_is_digest(s) ? s : NULL;
}

static int str_array(json_t *a, char ***out, size_t *n)
{
    if (!json_is_array(a))
        return -1;
    size_t len = json_array_size(a);
    *out = xcalloc(len ? len : 1, sizeof(char *));
    for (size_t i = 0; i < len; i++) {
        const char *s = json_string_value(json_array_get(a, i));
        if (!s)
            return -1;
        (*out)[(*n)++] = xstrdup(s);
    }
    return 0;
}

static int bad_description(struct error **err)
{
    return error_set(err, GRPC_INTERNAL, 0, "malformed description from the import child");
}

static int read_image(struct import_job *job, json_t *o, struct error **err)
{
    const char *id = digest_at(o, "id"), *md = digest_at(o, "manifest");
    const char *user = json_string_value(json_object_get(o, "user"));
    json_t *layers = json_object_get(o, "layers"), *blobs = json_object_get(o, "blobs");
    json_t *csize = json_object_get(o, "config_size");
    if (!id || !md || !user || !json_is_array(layers) || !json_is_array(blobs) ||
        !json_is_integer(csize) || json_integer_value(csize) < 0)
        return bad_description(err);

    struct store_image *img = xcalloc(1, sizeof(*img));
    job->imgs = xrealloc(job->imgs, (job->n_imgs + 1) * sizeof(*job->imgs));
    job->imgs[job->n_imgs++] = img;
    img->id = xstrdup(id);
    img->manifest_digest = xstrdup(md);
    img->user = xstrdup(user);
    img->size = (uint64_t)json_integer_value(csize);
    size_t n = json_array_size(layers);
    img->layer_digests = xcalloc(n ? n : 1, sizeof(char *));
    img->diff_ids = xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        json_t *l = json_array_get(layers, i);
        const char *digest = digest_at(l, "digest"), *diff_id = digest_at(l, "diff_id");
        json_t *size = json_object_get(l, "size");
        if (!digest || !diff_id || !json_is_integer(size) || json_integer_value(size) < 0)
            return bad_description(err);
        img->layer_digests[i] = xstrdup(digest);
        img->diff_ids[i] = xstrdup(diff_id);
        img->size += (uint64_t)json_integer_value(size);
        img->n_layers++;
    }
    img->chain_ids = store_chain_ids(img->diff_ids, img->n_layers, err);
    if (!img->chain_ids)
        return -1;
    if (str_array(json_object_get(o, "tags"), &img->repo_tags, &img->n_repo_tags) < 0 ||
        str_array(json_object_get(o, "repo_digests"), &img->repo_digests, &img->n_repo_digests) < 0)
        return bad_description(err);

    size_t i;
    json_t *b;
    json_array_foreach(blobs, i, b)
    {
        const char *digest = digest_at(b, "digest");
        const char *path = json_string_value(json_object_get(b, "path"));
        if (!digest || !path || strlen(path) > IMPORT_PATH_MAX || !path_is_clean_relpath(path))
            return bad_description(err);
        job->blobs = xrealloc(job->blobs, (job->n_blobs + 1) * sizeof(*job->blobs));
        job->blobs[job->n_blobs++] = (struct import_blob){xstrdup(digest), xstrdup(path)};
    }
    return 0;
}

static int read_description(struct import_job *job, const struct child_result *res,
                            struct error **err)
{
    if (res->err_len)
        log_debug("import child stderr file=%s: %.*s", job->name, (int)res->err_len, res->err);
    if (res->timed_out)
        return error_set(err, GRPC_DEADLINE_EXCEEDED, 0, "import did not finish within %lld min",
                         IMPORT_TIMEOUT_MS / 60000);
    if (!res->exited)
        return error_set(err, GRPC_INTERNAL, 0, "import child killed by signal %d",
                         res->term_signal);
    if (res->out_truncated)
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0, "import description exceeds %d bytes",
                         IMPORT_DESCRIPTION_MAX);
    json_error_t jerr;
    _cleanup_json_ json_t *doc = json_loadb(res->out, res->out_len, 0, &jerr);
    json_t *e = json_object_get(doc, "error");
    if (e) {
        const char *msg = json_string_value(json_object_get(e, "msg"));
        int code = (int)json_integer_value(json_object_get(e, "code"));
        return error_set(err, code > 0 && code <= GRPC_UNAUTHENTICATED ? code : GRPC_INTERNAL, 0,
                         "%s", msg ? msg : "unknown error");
    }
    json_t *images = json_object_get(doc, "images");
    if (res->exit_code != 0 || !json_is_array(images)) {
        _cleanup_free_ char *tail = text_safe_tail(res->err, 200);
        return error_set(err, GRPC_INTERNAL, 0, "import child exited with status %d: %s",
                         res->exit_code, tail);
    }
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(doc, "warnings"), i, v)
    {
        const char *w = json_string_value(v);
        if (w)
            log_warn("import file=%s: %s", job->name, w);
    }
    json_array_foreach(images, i, v)
    {
        if (read_image(job, v, err) < 0)
            return -1;
    }
    return job->n_imgs ? 0 : bad_description(err);
}

static void on_extracted(const struct child_result *res, void *arg)
{
    struct import_job *job = arg;
    job->child = NULL;
    read_description(job, res, &job->err);
    job_step(job);
}

/* ---- steps ---- */

/* rename(2) the verified staged files into the store; blobs it has already stay staged. */
static int move_blobs(struct import_job *job, struct error **err)
{
    struct store *st = job->im->st;
    for (size_t i = 0; i < job->n_blobs; i++) {
        const struct import_blob *b = &job->blobs[i];
        if (store_has_blob(st, b->digest))
            continue;
        _cleanup_free_ char *src = xasprintf("%s/%s", job->staging, b->path);
        _cleanup_free_ char *dest = store_blob_path(st, b->digest);
        if (rename(src, dest) < 0)
            return error_set(err, GRPC_INTERNAL, errno, "move blob %s into the store", b->digest);
    }
    return 0;
}

/* Every layer directory that does not exist yet, once. */
static int plan_layers(struct import_job *job, struct error **err)
{
    struct store *st = job->im->st;
    for (size_t i = 0; i < job->n_imgs; i++) {
        const struct store_image *img = job->imgs[i];
        for (size_t l = 0; l < img->n_layers; l++) {
            const char *chain = img->chain_ids[l];
            bool planned = false;
            for (size_t k = 0; k < job->n_layers && !planned; k++)
                planned = !strcmp(job->layers[k].chain_id, chain);
            if (planned || store_has_layer(st, chain))
                continue;
            if (!store_has_blob(st, img->layer_digests[l]))
                return error_set(err, GRPC_INTERNAL, 0, "layer blob %s is not in the store",
                                 img->layer_digests[l]);
            job->layers = xrealloc(job->layers, (job->n_layers + 1) * sizeof(*job->layers));
            job->layers[job->n_layers++] = (struct import_layer){
                .job = job,
                .digest = xstrdup(img->layer_digests[l]),
                .diff_id = xstrdup(img->diff_ids[l]),
                .chain_id = xstrdup(chain),
            };
        }
    }
    return 0;
}

static void job_fail(struct import_job *job, struct error *err);

static void on_unpacked(const struct error *err, uint64_t size, void *arg)
{
    struct import_layer *l = arg;
    struct import_job *job = l->job;
    l->op = NULL;
    job->running--;
    /* A pull may have made the same layer meanwhile: what counts is that it exists. */
    if (err && !store_has_layer(job->im->st, l->chain_id)) {
        struct error *e = error_dup(err);
        error_prefix(&e, "layer %s", l->digest);
        job_fail(job, e);
        job_step(job);
        return;
    }
    if (!err)
        log_info("layer unpacked chain=%s bytes=%llu file=%s", l->chain_id,
                 (unsigned long long)size, job->name);
    job_step(job);
}

static int start_unpacks(struct import_job *job, struct error **err)
{
    struct store *st = job->im->st;
    while (job->running < MAX_PARALLEL_UNPACKS && job->next_layer < job->n_layers) {
        struct import_layer *l = &job->layers[job->next_layer++];
        if (store_has_layer(st, l->chain_id))
            continue;
        _cleanup_free_ char *blob = store_blob_path(st, l->digest);
        _cleanup_free_ char *dest = store_layer_path(st, l->chain_id);
        l->op = unpack_layer(blob, dest, l->diff_id, UNPACK_TIMEOUT_MS, on_unpacked, l, err);
        if (!l->op)
            return error_prefix(err, "layer %s", l->digest);
        job->running++;
    }
    return 0;
}

/* Write the image records, last, as pull_commit() does. */
static int commit(struct import_job *job, struct error **err)
{
    job->ids = xcalloc(job->n_imgs, sizeof(char *));
    for (size_t i = 0; i < job->n_imgs; i++) {
        struct store_image *img = steal_ptr(&job->imgs[i]);
        img->created_ns = now_realtime_ns();
        char *id = xstrdup(img->id);
        job->ids[job->n_ids++] = id;
        struct buf tags;
        buf_init(&tags, 4096);
        for (size_t t = 0; t < img->n_repo_tags; t++) {
            if (buf_append(&tags, t ? "," : "", t ? 1 : 0) < 0 ||
                buf_append(&tags, img->repo_tags[t], strlen(img->repo_tags[t])) < 0)
                break;
        }
        _cleanup_free_ char *tag_list = buf_take_str(&tags, NULL);
        buf_free(&tags);
        if (store_image_put(job->im->st, img, err) < 0)
            return error_prefix(err, "image %s", id);
        log_info("image imported file=%s id=%s tags=%s", job->name, id,
                 *tag_list ? tag_list : "(none)");
    }
    return 0;
}

/* Take the job off the importer, log, remove its staging directory, move on. */
static void job_end(struct import_job *job)
{
    struct importer *im = job->im;
    if (job->state == IMPORT_DONE)
        record_import(im, job);
    else
        log_warn("import skipped file=%s: %s", job->name,
                 job->err ? job->err->msg : "unknown error");
    if (job->staging)
        remove_staging(im, job->staging);
    im->active = NULL;
    loop_defer_free(job_free, job);
    loop_timer_arm(im->kick, 0);
}

/* Fails the one way (image/pull.c says how); below the switch the unpacks still running stop. */
static void job_step(struct import_job *job)
{
    struct error *err = NULL;
    switch (job->state) {
    case IMPORT_EXTRACT: /* waiting for the extract child */
        if (job->child)
            return;
        if (job->err)
            break;
        if (move_blobs(job, &err) < 0 || plan_layers(job, &err) < 0) {
            job_fail(job, err);
            break;
        }
        job->state = IMPORT_UNPACK;
        /* fall through */
    case IMPORT_UNPACK: /* waiting for the layer unpacks */
        if (job->err)
            break;
        if (start_unpacks(job, &err) < 0) {
            job_fail(job, err);
            break;
        }
        if (job->running > 0)
            return;
        if (commit(job, &err) < 0) {
            job_fail(job, err);
            break;
        }
        job->state = IMPORT_DONE;
        job_end(job);
        return;
    case IMPORT_DONE:
    case IMPORT_FAILED: /* ended; freed soon */
        return;
    }
    /* Failed: the unpacks still running stop (each removes what it left), then the job ends. */
    for (size_t i = 0; i < job->n_layers; i++) {
        if (job->layers[i].op)
            unpack_cancel(steal_ptr(&job->layers[i].op));
    }
    job->running = 0;
    job->state = IMPORT_FAILED;
    job_end(job);
}

/* Record the first failure; later ones are its consequences. Does not step. */
static void job_fail(struct import_job *job, struct error *err)
{
    if (job->err)
        error_free(err);
    else
        job->err = err;
}

/* Open the tarball (never blocking: O_NONBLOCK, regular files only) and fork the child. */
static int job_start(struct import_job *job, struct error **err)
{
    struct importer *im = job->im;
    _cleanup_free_ char *path = xasprintf("%s/%s", im->dir, job->name);
    job->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    struct stat st;
    if (job->fd < 0 || fstat(job->fd, &st) < 0)
        return error_set(err, GRPC_INTERNAL, errno, "open %s", path);
    if (!S_ISREG(st.st_mode))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "%s is not a regular file", path);
    /* What was actually imported, for imports.json. */
    job->size = st.st_size;
    job->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;

    _cleanup_free_ char *parent = staging_parent(im);
    _cleanup_free_ char *staging = xasprintf("%s/" STAGING_PREFIX "XXXXXX", parent);
    if (!mkdtemp(staging))
        return error_set(err, GRPC_INTERNAL, errno, "create staging directory in %s", parent);
    job->staging = steal_ptr(&staging);
    struct child_opts o = {
        .cwd = job->staging,
        .out_cap = IMPORT_DESCRIPTION_MAX,
        .timeout_ms = IMPORT_TIMEOUT_MS,
    };
    job->child = child_fork(&o, import_child_main, &job->fd, on_extracted, job, err);
    close(job->fd);
    job->fd = -1;
    if (!job->child)
        return -1;
    log_info("import started file=%s bytes=%lld", job->name, (long long)job->size);
    return 0;
}

/* Start the next tarball when none runs; report a finished scan. */
static void pump(struct importer *im)
{
    struct import_job *job;
    while (!im->active && (job = TAILQ_FIRST(&im->queue))) {
        TAILQ_REMOVE(&im->queue, job, link);
        im->active = job;
        struct error *err = NULL;
        if (job_start(job, &err) < 0) {
            job_fail(job, err);
            job_step(job);
        }
    }
    if (im->scan_pending && !im->active && TAILQ_EMPTY(&im->queue) && TAILQ_EMPTY(&im->rms)) {
        im->scan_pending = false;
        if (im->done_cb)
            im->done_cb(im->done_arg);
    }
}

static void on_kick(void *arg)
{
    pump(arg);
}

/* ---- the API ---- */

struct importer *importer_new(struct store *st, const char *import_dir)
{
    struct importer *im = xcalloc(1, sizeof(*im));
    TAILQ_INIT(&im->queue);
    TAILQ_INIT(&im->rms);
    im->st = st;
    im->dir = xstrdup(import_dir);
    im->records_path = xasprintf("%s/" RECORDS_FILE, store_root(st));
    records_load(im);
    return im;
}

void importer_set_done_cb(struct importer *im, void (*cb)(void *arg), void *arg)
{
    im->done_cb = cb;
    im->done_arg = arg;
}

static bool is_queued(const struct importer *im, const char *name)
{
    if (im->active && !strcmp(im->active->name, name))
        return true;
    const struct import_job *j;
    TAILQ_FOREACH (j, &im->queue, link) {
        if (!strcmp(j->name, name))
            return true;
    }
    return false;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Regular files with a tarball name, sorted; at most MAX_FILES_PER_SCAN.
 * *complete says whether that is all of them (a missing directory has none).
 */
static char **list_tarballs(const struct importer *im, size_t *n, bool *complete)
{
    *n = 0;
    *complete = false;
    DIR *d = opendir(im->dir);
    if (!d) {
        *complete = errno == ENOENT;
        if (errno == ENOENT)
            log_debug("no import directory path=%s", im->dir);
        else
            log_warn("cannot read import directory path=%s: %s", im->dir, strerror(errno));
        return NULL;
    }
    *complete = true;
    char **names = NULL;
    struct dirent *de;
    while ((de = readdir(d))) {
        struct stat st;
        if (!is_tarball_name(de->d_name) || fstatat(dirfd(d), de->d_name, &st, 0) < 0 ||
            !S_ISREG(st.st_mode))
            continue;
        if (*n == MAX_FILES_PER_SCAN) {
            log_warn("import directory has more than %d tarballs; the rest wait path=%s",
                     MAX_FILES_PER_SCAN, im->dir);
            *complete = false;
            break;
        }
        names = xrealloc(names, (*n + 1) * sizeof(char *));
        names[(*n)++] = xstrdup(de->d_name);
    }
    closedir(d);
    if (*n)
        qsort(names, *n, sizeof(char *), cmp_str);
    return names;
}

void importer_scan(struct importer *im)
{
    if (!im->kick)
        im->kick = loop_timer_new(on_kick, im);
    if (!im->cleaned) {
        im->cleaned = true;
        clean_leftovers(im);
    }
    im->scan_pending = true;
    loop_timer_arm(im->kick, 0);

    size_t n = 0;
    bool complete = false;
    char **names = list_tarballs(im, &n, &complete);
    /* Forget tarballs that are gone, so one put back is imported again. */
    bool pruned = false;
    const char *key;
    json_t *v, *tmp;
    json_object_foreach_safe(im->records, tmp, key, v)
    {
        if (complete && (n == 0 || !bsearch(&key, names, n, sizeof(char *), cmp_str))) {
            json_object_del(im->records, key);
            pruned = true;
        }
    }
    if (pruned)
        records_save(im);

    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *name = steal_ptr(&names[i]);
        struct stat st;
        _cleanup_free_ char *path = xasprintf("%s/%s", im->dir, name);
        if (is_queued(im, name) || stat(path, &st) < 0)
            continue;
        int64_t mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
        if (is_unchanged(im, name, st.st_size, mtime_ns)) {
            log_debug("import unchanged, skipping file=%s", name);
            continue;
        }
        struct import_job *job = xcalloc(1, sizeof(*job));
        job->im = im;
        job->state = IMPORT_EXTRACT;
        job->name = steal_ptr(&name);
        job->fd = -1;
        TAILQ_INSERT_TAIL(&im->queue, job, link);
    }
    free(names);
}

bool importer_uses(const char *key, void *importer)
{
    const struct importer *im = importer;
    const struct import_job *job = im->active;
    if (!job)
        return false;
    for (size_t i = 0; i < job->n_blobs; i++) {
        if (!strcmp(job->blobs[i].digest, key))
            return true;
    }
    for (size_t i = 0; i < job->n_imgs; i++) {
        const struct store_image *img = job->imgs[i];
        if (!img)
            continue; /* written: the store claims it now */
        if (!strcmp(img->id, key) || !strcmp(img->manifest_digest, key))
            return true;
        for (size_t l = 0; l < img->n_layers; l++) {
            if (!strcmp(img->layer_digests[l], key) || !strcmp(img->chain_ids[l], key))
                return true;
        }
    }
    return false;
}

void importer_free(struct importer *im)
{
    if (!im)
        return;
    struct import_job *job = steal_ptr(&im->active);
    if (job) {
        log_info("import stopped file=%s", job->name);
        if (job->child)
            child_cancel(steal_ptr(&job->child));
        for (size_t i = 0; i < job->n_layers; i++) {
            if (job->layers[i].op)
                unpack_cancel(steal_ptr(&job->layers[i].op));
        }
        /* Its staging directory is removed by the next start (clean_leftovers). */
        job_free(job);
    }
    while ((job = TAILQ_FIRST(&im->queue))) {
        TAILQ_REMOVE(&im->queue, job, link);
        job_free(job);
    }
    /* The daemon is stopping: unfinished removals are left to the next start too. */
    struct rm_op *rm;
    while ((rm = TAILQ_FIRST(&im->rms))) {
        TAILQ_REMOVE(&im->rms, rm, link);
        child_cancel(rm->child);
        free(rm->path);
        free(rm);
    }
    loop_timer_free(im->kick);
    json_decref(im->records);
    free(im->dir);
    free(im->records_path);
    free(im);
}
