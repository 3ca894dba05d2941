/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The content store, layer directories and image records. See store.h for
 * the layout and the crash-safety argument. Directory trees are never
 * removed on the loop: they are renamed aside (atomic, cheap) and a child
 * `rm -rf` deletes them.
 */
#include "autoconf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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
#include "core/persist.h"
#include "core/util.h"
#include "image/ref.h"
#include "image/store.h"
#include "image/xferlib.h"

#define RECORD_MAX (1024 * 1024)
#define TRASH_PREFIX ".trash-"
#define RM_TIMEOUT_MS (10LL * 60 * 1000)

struct store {
    char *root;
    char *blobs;
    char *ingest;
    char *layers;
    char *images;
    struct store_image **imgs;
    size_t n_imgs;
    uint64_t trash_seq;
    TAILQ_HEAD(, store_rm) rms; /* tree removals running in children */
};

/* One `rm -rf` child; the store owns it until it ends or the store is freed. */
struct store_rm {
    struct store *s;
    char *path;
    struct child *child;
    TAILQ_ENTRY(store_rm) link;
};

struct store_ingest {
    struct store *s;
    char *digest;
    char *path;
    int fd;
    int64_t size;
    int64_t offset;
    struct xferlib_hash md; /* holds libcrypto for the ingest's life */
};

static const char *hex_of(const char *digest)
{
    return str_has_prefix(digest, "sha256:") ? digest + 7 : digest;
}

static void str_array_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

void store_image_free(struct store_image *img)
{
    if (!img)
        return;
    free(img->id);
    str_array_free(img->repo_tags, img->n_repo_tags);
    str_array_free(img->repo_digests, img->n_repo_digests);
    free(img->manifest_digest);
    free(img->user);
    str_array_free(img->layer_digests, img->n_layers);
    str_array_free(img->diff_ids, img->n_layers);
    str_array_free(img->chain_ids, img->n_layers);
    free(img);
}

char **store_chain_ids(char *const *diff_ids, size_t n, struct error **err)
{
    char **out = xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        if (i == 0) {
            out[i] = xstrdup(diff_ids[0]);
            continue;
        }
        _cleanup_free_ char *text = xasprintf("%s %s", out[i - 1], diff_ids[i]);
        char hex[XFERLIB_SHA256_HEX_LEN + 1];
        if (xferlib_sha256_hex(text, strlen(text), hex, err) < 0) {
            str_array_free(out, i);
            error_prefix(err, "chain ids");
            return NULL;
        }
        out[i] = xasprintf("sha256:%s", hex);
    }
    return out;
}

/* ---- directory removal off the loop ---- */

static void store_rm_free(struct store_rm *rm)
{
    TAILQ_REMOVE(&rm->s->rms, rm, link);
    free(rm->path);
    free(rm);
}

static void on_rm_done(const struct child_result *r, void *arg)
{
    struct store_rm *rm = arg;
    if (!r->exited || r->exit_code != 0)
        log_warn("could not remove %s: %.*s", rm->path, (int)r->err_len, r->err);
    store_rm_free(rm);
}

static void remove_tree_async(struct store *s, const char *path)
{
    _cleanup_error_ struct error *err = NULL;
    struct store_rm *rm = xcalloc(1, sizeof(*rm));
    rm->s = s;
    rm->path = xstrdup(path);
    TAILQ_INSERT_HEAD(&s->rms, rm, link);
    rm->child = child_rm_rf(&path, 1, RM_TIMEOUT_MS, on_rm_done, rm, &err);
    if (!rm->child) {
        log_warn("could not remove %s: %s", path, err->msg);
        store_rm_free(rm);
    }
}

/* Rename a directory aside (atomic) and delete it in the background. */
static void trash_dir(struct store *s, const char *path)
{
    _cleanup_free_ char *aside = xasprintf("%s/" TRASH_PREFIX "%d-%llu", s->layers, (int)getpid(),
                                           (unsigned long long)++s->trash_seq);
    if (rename(path, aside) < 0) {
        if (errno != ENOENT)
            log_warn("could not move %s aside: %s", path, strerror(errno));
        return;
    }
    remove_tree_async(s, aside);
}

/* ---- image records ---- */

static json_t *str_array_json(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static char *record_json(const struct store_image *img)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(img->id));
    json_object_set_new(o, "repoTags", str_array_json(img->repo_tags, img->n_repo_tags));
    json_object_set_new(o, "repoDigests", str_array_json(img->repo_digests, img->n_repo_digests));
    json_object_set_new(o, "manifestDigest", json_string(img->manifest_digest));
    json_object_set_new(o, "user", json_string(img->user ? img->user : ""));
    json_object_set_new(o, "size", json_integer((json_int_t)img->size));
    json_object_set_new(o, "layers", str_array_json(img->layer_digests, img->n_layers));
    json_object_set_new(o, "diffIds", str_array_json(img->diff_ids, img->n_layers));
    json_object_set_new(o, "chainIds", str_array_json(img->chain_ids, img->n_layers));
    json_object_set_new(o, "pinned", json_boolean(img->pinned));
    json_object_set_new(o, "created", json_integer(img->created_ns));
    char *text = json_dumps(o, JSON_INDENT(1) | JSON_SORT_KEYS);
    json_decref(o);
    return text;
}

static int str_array_from_json(json_t *a, char ***out, size_t *n, bool digests)
{
    *out = NULL;
    *n = 0;
    if (!json_is_array(a))
        return -1;
    size_t len = json_array_size(a);
    *out = xcalloc(len ? len : 1, sizeof(char *));
    for (size_t i = 0; i < len; i++) {
        const char *v = json_string_value(json_array_get(a, i));
        if (!v || (digests && !image_ref_is_digest(v)))
            return -1;
        (*out)[(*n)++] = xstrdup(v);
    }
    return 0;
}

/*
 * The stored chain ids, when the record has them and they fit its diff ids
 * (the first chain id is the first diff id); NULL for a record written
 * before they were stored.
 */
static char **chain_ids_from_json(json_t *a, const struct store_image *img)
{
    char **ids = NULL;
    size_t n = 0;
    if (str_array_from_json(a, &ids, &n, true) < 0 || n != img->n_layers ||
        (n > 0 && strcmp(ids[0], img->diff_ids[0]) != 0)) {
        str_array_free(ids, n);
        return NULL;
    }
    return ids;
}

/* *migrated: the chain ids were computed (an older record), so it should be saved again. */
static struct store_image *record_parse(const char *text, size_t len, bool *migrated,
                                        struct error **err)
{
    json_error_t jerr;
    _cleanup_json_ json_t *o = json_loadb(text, len, 0, &jerr);
    if (!json_is_object(o))
        return error_set(err, GRPC_DATA_LOSS, 0, "not a JSON object"), NULL;
    struct store_image *img = xcalloc(1, sizeof(*img));
    const char *id = json_string_value(json_object_get(o, "id"));
    const char *md = json_string_value(json_object_get(o, "manifestDigest"));
    const char *user = json_string_value(json_object_get(o, "user"));
    size_t n_diff = 0;
    int bad = !image_ref_is_digest(id) || !image_ref_is_digest(md);
    if (!bad) {
        img->id = xstrdup(id);
        img->manifest_digest = xstrdup(md);
        img->user = xstrdup(user ? user : "");
        img->size = (uint64_t)json_integer_value(json_object_get(o, "size"));
        img->pinned = json_is_true(json_object_get(o, "pinned"));
        img->created_ns = json_integer_value(json_object_get(o, "created"));
        bad =
            str_array_from_json(json_object_get(o, "repoTags"), &img->repo_tags, &img->n_repo_tags,
                                false) < 0 ||
            str_array_from_json(json_object_get(o, "repoDigests"), &img->repo_digests,
                                &img->n_repo_digests, false) < 0 ||
            str_array_from_json(json_object_get(o, "layers"), &img->layer_digests, &img->n_layers,
                                true) < 0 ||
            str_array_from_json(json_object_get(o, "diffIds"), &img->diff_ids, &n_diff, true) < 0 ||
            n_diff != img->n_layers;
    }
    if (bad) {
        /* n_layers may not describe diff_ids yet: free by hand. */
        str_array_free(img->diff_ids, n_diff);
        img->diff_ids = NULL;
        store_image_free(img);
        return error_set(err, GRPC_DATA_LOSS, 0, "malformed image record"), NULL;
    }
    /* Stored, so that start-up needs no hashing (and no libcrypto). */
    img->chain_ids = chain_ids_from_json(json_object_get(o, "chainIds"), img);
    *migrated = img->chain_ids == NULL;
    if (!img->chain_ids)
        img->chain_ids = store_chain_ids(img->diff_ids, img->n_layers, err);
    if (!img->chain_ids) {
        store_image_free(img);
        return NULL;
    }
    return img;
}

static char *record_path(const struct store *s, const char *id)
{
    return xasprintf("%s/%s.json", s->images, hex_of(id));
}

static int record_save(const struct store *s, const struct store_image *img, struct error **err)
{
    _cleanup_free_ char *path = record_path(s, img->id);
    _cleanup_free_ char *text = record_json(img);
    return persist_write(path, text, strlen(text), 0600, err);
}

static void load_records(struct store *s)
{
    persist_clean_dir(s->images);
    DIR *d = opendir(s->images);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!str_has_suffix(de->d_name, ".json") || de->d_name[0] == '.')
            continue;
        _cleanup_free_ char *path = xasprintf("%s/%s", s->images, de->d_name);
        _cleanup_error_ struct error *err = NULL;
        size_t len = 0;
        _cleanup_free_ char *text = read_file_capped(path, RECORD_MAX, &len, &err);
        bool migrated = false;
        struct store_image *img = text ? record_parse(text, len, &migrated, &err) : NULL;
        if (!img) {
            persist_set_aside(s->images, de->d_name, "image", err);
            continue;
        }
        if (migrated && record_save(s, img, &err) < 0) {
            log_debug("could not add chain ids to image record path=%s: %s", path, err->msg);
            error_clear(&err);
        }
        s->imgs = xrealloc(s->imgs, (s->n_imgs + 1) * sizeof(*s->imgs));
        s->imgs[s->n_imgs++] = img;
    }
    closedir(d);
}

/* Remove ingest leftovers and half-unpacked or trashed layer dirs from a previous run. */
static void clean_leftovers(struct store *s)
{
    DIR *d = opendir(s->ingest);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] != '.')
                unlinkat(dirfd(d), de->d_name, 0);
        }
        closedir(d);
    }
    d = opendir(s->layers);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (str_has_prefix(de->d_name, TRASH_PREFIX) || str_has_suffix(de->d_name, ".tmp")) {
            _cleanup_free_ char *p = xasprintf("%s/%s", s->layers, de->d_name);
            remove_tree_async(s, p);
        }
    }
    closedir(d);
}

struct store *store_open(const char *root_dir, struct error **err)
{
    struct store *s = xcalloc(1, sizeof(*s));
    TAILQ_INIT(&s->rms);
    s->root = xstrdup(root_dir);
    s->blobs = xasprintf("%s/content/blobs/sha256", root_dir);
    s->ingest = xasprintf("%s/content/ingest", root_dir);
    s->layers = xasprintf("%s/layers", root_dir);
    s->images = xasprintf("%s/images", root_dir);
    const char *dirs[] = {s->blobs, s->ingest, s->layers, s->images};
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
        if (mkdir_p(dirs[i], 0700, err) < 0) {
            store_free(s);
            return NULL;
        }
    }
    clean_leftovers(s);
    load_records(s);
    log_info("image store opened root=%s images=%zu", root_dir, s->n_imgs);
    return s;
}

void store_free(struct store *s)
{
    if (!s)
        return;
    /* Unfinished removals (the daemon is stopping) are redone by the next start. */
    struct store_rm *rm;
    while ((rm = TAILQ_FIRST(&s->rms))) {
        child_cancel(rm->child);
        store_rm_free(rm);
    }
    for (size_t i = 0; i < s->n_imgs; i++)
        store_image_free(s->imgs[i]);
    free(s->imgs);
    free(s->root);
    free(s->blobs);
    free(s->ingest);
    free(s->layers);
    free(s->images);
    free(s);
}

const char *store_root(const struct store *s)
{
    return s->root;
}

char *store_blob_path(const struct store *s, const char *digest)
{
    return xasprintf("%s/%s", s->blobs, hex_of(digest));
}

char *store_layer_path(const struct store *s, const char *chain_id)
{
    return xasprintf("%s/%s", s->layers, hex_of(chain_id));
}

bool store_has_blob(const struct store *s, const char *digest)
{
    _cleanup_free_ char *p = store_blob_path(s, digest);
    return access(p, F_OK) == 0;
}

bool store_has_layer(const struct store *s, const char *chain_id)
{
    _cleanup_free_ char *p = store_layer_path(s, chain_id);
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- ingest ---- */

struct store_ingest *store_ingest_new(struct store *s, const char *digest, int64_t size,
                                      struct error **err)
{
    if (!image_ref_is_digest(digest))
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "bad digest %s", digest), NULL;
    _cleanup_free_ char *path = xasprintf("%s/%s.XXXXXX", s->ingest, hex_of(digest));
    _cleanup_close_ int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return error_set(err, GRPC_INTERNAL, errno, "create ingest file for %s", digest), NULL;
    struct store_ingest *in = xcalloc(1, sizeof(*in));
    if (xferlib_hash_init(&in->md, XFERLIB_SHA256, err) < 0) {
        unlink(path);
        free(in);
        return error_prefix(err, "ingest %s", digest), NULL;
    }
    in->s = s;
    in->digest = xstrdup(digest);
    in->path = steal_ptr(&path);
    in->fd = steal_fd(&fd);
    in->size = size;
    return in;
}

int store_ingest_write(struct store_ingest *in, const void *data, size_t len, struct error **err)
{
    if (in->size >= 0 && in->offset + (int64_t)len > in->size)
        return error_set(err, GRPC_DATA_LOSS, 0, "blob %s is larger than its declared %lld bytes",
                         in->digest, (long long)in->size);
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(in->fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return error_set(err, errno == ENOSPC ? GRPC_RESOURCE_EXHAUSTED : GRPC_INTERNAL, errno,
                             "write blob %s", in->digest);
        p += n;
        left -= (size_t)n;
    }
    xferlib_hash_update(&in->md, data, len);
    in->offset += (int64_t)len;
    return 0;
}

int64_t store_ingest_offset(const struct store_ingest *in)
{
    return in->offset;
}

void store_ingest_abort(struct store_ingest *in)
{
    if (!in)
        return;
    if (in->fd >= 0)
        close(in->fd);
    unlink(in->path);
    xferlib_hash_clear(&in->md);
    free(in->digest);
    free(in->path);
    free(in);
}

int store_ingest_commit(struct store_ingest *in, struct error **err)
{
    char hex[XFERLIB_SHA256_HEX_LEN + 1];
    xferlib_hash_final_hex(&in->md, hex);
    char got[sizeof("sha256:") + XFERLIB_SHA256_HEX_LEN];
    snprintf(got, sizeof(got), "sha256:%s", hex);
    int rc = 0;
    if (in->size >= 0 && in->offset != in->size) {
        rc = error_set(err, GRPC_DATA_LOSS, 0, "blob %s: got %lld bytes, expected %lld", in->digest,
                       (long long)in->offset, (long long)in->size);
    } else if (strcmp(got, in->digest) != 0) {
        rc = error_set(err, GRPC_DATA_LOSS, 0, "blob digest mismatch: expected %s, got %s",
                       in->digest, got);
    } else {
        _cleanup_free_ char *dest = store_blob_path(in->s, in->digest);
        if (fchmod(in->fd, 0600) < 0 || rename(in->path, dest) < 0)
            rc = error_set(err, GRPC_INTERNAL, errno, "commit blob %s", in->digest);
    }
    store_ingest_abort(in);
    return rc;
}

int store_put_blob(struct store *s, const char *digest, const void *data, size_t len,
                   struct error **err)
{
    if (store_has_blob(s, digest))
        return 0;
    struct store_ingest *in = store_ingest_new(s, digest, (int64_t)len, err);
    if (!in)
        return -1;
    if (store_ingest_write(in, data, len, err) < 0) {
        store_ingest_abort(in);
        return -1;
    }
    return store_ingest_commit(in, err);
}

/* ---- images ---- */

static bool has_str(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i], s) == 0)
            return true;
    }
    return false;
}

const struct store_image *store_image_find(const struct store *s, const char *key)
{
    if (!key || !*key)
        return NULL;
    const char *hex = hex_of(key);
    size_t hlen = strlen(hex);
    bool id_like = hlen >= 12 && hlen <= 64 && id_is_hex(hex, hlen);
    const struct store_image *prefix_hit = NULL;
    size_t prefix_hits = 0;
    for (size_t i = 0; i < s->n_imgs; i++) {
        const struct store_image *img = s->imgs[i];
        if (strcmp(img->id, key) == 0 || (id_like && hlen == 64 && !strcmp(hex_of(img->id), hex)))
            return img;
        if (id_like && strncmp(hex_of(img->id), hex, hlen) == 0) {
            prefix_hit = img;
            prefix_hits++;
        }
    }
    /* A reference (tag or digest), normalised as kubelet would. */
    struct image_ref ref;
    struct error *err = NULL;
    if (image_ref_parse(key, &ref, &err) == 0) {
        _cleanup_free_ char *tagged = ref.tag ? image_ref_tagged(&ref) : NULL;
        _cleanup_free_ char *digested = ref.digest ? image_ref_with_digest(&ref, ref.digest) : NULL;
        image_ref_clear(&ref);
        for (size_t i = 0; i < s->n_imgs; i++) {
            const struct store_image *img = s->imgs[i];
            if (digested && has_str(img->repo_digests, img->n_repo_digests, digested))
                return img;
            if (!digested && tagged && has_str(img->repo_tags, img->n_repo_tags, tagged))
                return img;
        }
    }
    error_free(err);
    return prefix_hits == 1 ? prefix_hit : NULL;
}

size_t store_image_count(const struct store *s)
{
    return s->n_imgs;
}

const struct store_image *store_image_at(const struct store *s, size_t i)
{
    return i < s->n_imgs ? s->imgs[i] : NULL;
}

static bool drop_str(char **v, size_t *n, const char *s)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(v[i], s) == 0) {
            free(v[i]);
            memmove(&v[i], &v[i + 1], (*n - i - 1) * sizeof(char *));
            (*n)--;
            return true;
        }
    }
    return false;
}

static void add_str(char ***v, size_t *n, const char *s)
{
    if (has_str(*v, *n, s))
        return;
    *v = xrealloc(*v, (*n + 1) * sizeof(char *));
    (*v)[(*n)++] = xstrdup(s);
}

static struct store_image *find_by_id(struct store *s, const char *id, size_t *index)
{
    for (size_t i = 0; i < s->n_imgs; i++) {
        if (strcmp(s->imgs[i]->id, id) == 0) {
            if (index)
                *index = i;
            return s->imgs[i];
        }
    }
    return NULL;
}

int store_image_put(struct store *s, struct store_image *img, struct error **err)
{
    /* Tags move: take them from any other image first. */
    for (size_t i = 0; i < s->n_imgs; i++) {
        struct store_image *other = s->imgs[i];
        if (strcmp(other->id, img->id) == 0)
            continue;
        bool changed = false;
        for (size_t t = 0; t < img->n_repo_tags; t++)
            changed |= drop_str(other->repo_tags, &other->n_repo_tags, img->repo_tags[t]);
        if (changed && record_save(s, other, err) < 0) {
            store_image_free(img);
            return -1;
        }
    }
    struct store_image *cur = find_by_id(s, img->id, NULL);
    if (cur) {
        for (size_t t = 0; t < img->n_repo_tags; t++)
            add_str(&cur->repo_tags, &cur->n_repo_tags, img->repo_tags[t]);
        for (size_t t = 0; t < img->n_repo_digests; t++)
            add_str(&cur->repo_digests, &cur->n_repo_digests, img->repo_digests[t]);
        cur->pinned = cur->pinned || img->pinned;
        store_image_free(img);
        return record_save(s, cur, err);
    }
    if (record_save(s, img, err) < 0) {
        store_image_free(img);
        return -1;
    }
    s->imgs = xrealloc(s->imgs, (s->n_imgs + 1) * sizeof(*s->imgs));
    s->imgs[s->n_imgs++] = img;
    return 0;
}

int store_image_remove(struct store *s, const char *id, struct error **err)
{
    size_t idx = 0;
    struct store_image *img = find_by_id(s, id, &idx);
    if (!img)
        return error_set(err, GRPC_NOT_FOUND, 0, "image %s not found", id);
    _cleanup_free_ char *path = record_path(s, id);
    if (persist_remove(path, err) < 0)
        return -1;
    memmove(&s->imgs[idx], &s->imgs[idx + 1], (s->n_imgs - idx - 1) * sizeof(*s->imgs));
    s->n_imgs--;
    store_image_free(img);
    return 0;
}

static bool blob_used(const struct store *s, const char *hex)
{
    for (size_t i = 0; i < s->n_imgs; i++) {
        const struct store_image *img = s->imgs[i];
        if (!strcmp(hex_of(img->id), hex) || !strcmp(hex_of(img->manifest_digest), hex))
            return true;
        for (size_t l = 0; l < img->n_layers; l++) {
            if (!strcmp(hex_of(img->layer_digests[l]), hex))
                return true;
        }
    }
    return false;
}

static bool layer_used(const struct store *s, const char *hex)
{
    for (size_t i = 0; i < s->n_imgs; i++) {
        const struct store_image *img = s->imgs[i];
        for (size_t l = 0; l < img->n_layers; l++) {
            if (!strcmp(hex_of(img->chain_ids[l]), hex))
                return true;
        }
    }
    return false;
}

size_t store_gc(struct store *s, bool (*in_use)(const char *key, void *arg), void *arg)
{
    size_t removed = 0;
    DIR *d = opendir(s->blobs);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.' || blob_used(s, de->d_name))
                continue;
            _cleanup_free_ char *digest = xasprintf("sha256:%s", de->d_name);
            if (in_use && in_use(digest, arg))
                continue;
            if (unlinkat(dirfd(d), de->d_name, 0) == 0)
                removed++;
        }
        closedir(d);
    }
    d = opendir(s->layers);
    if (!d)
        return removed;
    /* Collect first: trash_dir renames entries of the directory being read. */
    char **victims = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || strlen(de->d_name) != 64 || layer_used(s, de->d_name))
            continue;
        _cleanup_free_ char *chain = xasprintf("sha256:%s", de->d_name);
        if (in_use && in_use(chain, arg))
            continue;
        victims = xrealloc(victims, (n + 1) * sizeof(char *));
        victims[n++] = xasprintf("%s/%s", s->layers, de->d_name);
    }
    closedir(d);
    for (size_t i = 0; i < n; i++)
        trash_dir(s, victims[i]);
    removed += n;
    str_array_free(victims, n);
    return removed;
}

/* ---- usage ---- */

struct store_usage_walk {
    struct child *child;
    store_usage_cb cb;
    void *arg;
};

struct walk_totals {
    double bytes;
    double inodes;
};
static struct walk_totals walk_totals; /* in the walking child only */

static int on_walk_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    /* A file with n hard links inside the store is met n times: count 1/n each time. */
    double share = !S_ISDIR(st->st_mode) && st->st_nlink > 1 ? 1.0 / (double)st->st_nlink : 1.0;
    walk_totals.bytes += (double)st->st_blocks * 512.0 * share;
    walk_totals.inodes += share;
    return 0;
}

/* In the forked child: walk the store and print "<bytes> <inodes>". */
static int walk_in_child(void *arg)
{
    const struct store *s = arg;
    _cleanup_free_ char *content = xasprintf("%s/content", s->root);
    nftw(content, on_walk_entry, 64, FTW_PHYS | FTW_MOUNT);
    nftw(s->layers, on_walk_entry, 64, FTW_PHYS | FTW_MOUNT);
    printf("%.0f %.0f\n", walk_totals.bytes, walk_totals.inodes);
    return fflush(stdout) == 0 ? 0 : 1;
}

static void on_walked(const struct child_result *res, void *arg)
{
    struct store_usage_walk *w = arg;
    unsigned long long bytes = 0, inodes = 0;
    _cleanup_error_ struct error *err = NULL;
    if (!res->exited || res->exit_code != 0 || sscanf(res->out, "%llu %llu", &bytes, &inodes) != 2)
        error_set(&err, GRPC_INTERNAL, 0, "could not measure the image store%s",
                  res->timed_out ? " (timed out)" : "");
    struct store_usage u = {.bytes = bytes, .inodes = inodes};
    w->cb(err ? NULL : &u, err, w->arg);
    free(w);
}

struct store_usage_walk *store_usage_start(const struct store *s, int64_t timeout_ms,
                                           store_usage_cb cb, void *arg, struct error **err)
{
    struct store_usage_walk *w = xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    struct child_opts o = {.timeout_ms = timeout_ms};
    w->child = child_fork(&o, walk_in_child, (void *)s, on_walked, w, err);
    if (!w->child) {
        free(w);
        return NULL;
    }
    return w;
}

void store_usage_cancel(struct store_usage_walk *w)
{
    if (!w)
        return;
    child_cancel(w->child);
    free(w);
}
