/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ImageService handlers: validate, start an operation, reply. PullImage
 * replies when its pull finishes (or not at all when the client went away,
 * in which case the pull is cancelled). ImageFsInfo asks the store for its
 * usage (a walk in a child process) and answers every call waiting for it.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "api.pb-c.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "cri/image_service.h"
#include "cri/list_reply.h"
#include "cri/reply.h"
#include "cri/stats_service.h"
#include "grpc/h2.h"
#include "image/import.h"
#include "image/pull.h"
#include "image/ref.h"
#include "image/registry.h"
#include "image/registry_auth.h"
#include "image/store.h"
#include "pod/container.h"

#define FS_CACHE_NS (2LL * 1000 * 1000 * 1000)
#define FS_WALK_TIMEOUT_MS (5 * 60 * 1000)
#define MAX_FS_WAITERS 1024

int image_service_init(struct image_service *svc, const struct config *cfg, struct error **err)
{
    memset(svc, 0, sizeof(*svc));
    svc->cfg = cfg;
    svc->store = store_open(cfg->root_dir, err);
    if (!svc->store)
        return error_prefix(err, "image store");
    svc->registry = registry_new(cfg, err);
    if (!svc->registry)
        return error_prefix(err, "registry client");
    svc->puller = puller_new(svc->store, svc->registry, cfg);
    _cleanup_free_ char *import_dir = config_import_dir(cfg);
    svc->importer = importer_new(svc->store, import_dir);
    return 0;
}

void image_service_import(struct image_service *svc)
{
    importer_scan(svc->importer);
}

/* Blobs and layers that a pull or an import in flight, or a container, still needs. */
static bool in_flight_uses(const char *key, void *arg)
{
    struct image_service *svc = arg;
    return puller_uses(key, svc->puller) || importer_uses(key, svc->importer) ||
           container_uses(key);
}

void image_service_clear(struct image_service *svc)
{
    importer_free(svc->importer);
    puller_free(svc->puller);
    registry_free(svc->registry);
    store_free(svc->store);
    store_usage_cancel(svc->fs_walk);
    for (size_t i = 0; i < svc->n_fs_waiters; i++)
        reply_free(svc->fs_waiters[i]);
    free(svc->fs_waiters);
    memset(svc, 0, sizeof(*svc));
}

/* ---- PullImage ---- */

/* What a PullImage call waits for; freed when the pull ends or the caller leaves. */
struct pull_req {
    struct image_service *svc;
    struct reply *reply;
    uint64_t pull_id;
};

static void on_pulled(uint64_t pull_id, const char *image_id, const struct error *err, void *arg)
{
    struct pull_req *pr = arg;
    Runtime__V1__PullImageResponse resp = RUNTIME__V1__PULL_IMAGE_RESPONSE__INIT;
    resp.image_ref = (char *)image_id;
    reply_finish(pr->reply, err, &resp.base);
    free(pr);
}

/* The client went away: its pull stops (shared downloads go on for the others). */
static void on_pull_call_cancelled(void *arg)
{
    struct pull_req *pr = arg;
    pull_cancel(pr->svc->puller, pr->pull_id);
    free(pr);
}

void image_service_pull(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    const Runtime__V1__PullImageRequest *r = (const Runtime__V1__PullImageRequest *)req;
    struct image_service *svc = ctx;
    if (!r->image || !r->image->image || !*r->image->image) {
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT, "PullImage: image is required");
        return;
    }
    struct registry_auth auth = {0};
    if (r->auth) {
        auth = (struct registry_auth){r->auth->username, r->auth->password, r->auth->auth,
                                      r->auth->identity_token, r->auth->registry_token};
    }
    _cleanup_error_ struct error *err = NULL;
    if (registry_auth_check(&auth, &err) < 0) {
        rpc_fail(call, err);
        return;
    }
    struct pull_req *pr = xcalloc(1, sizeof(*pr));
    pr->svc = svc;
    pr->reply = reply_new(call, "PullImage", r->image->image);
    pr->pull_id = pull_start(svc->puller, r->image->image, &auth, on_pulled, pr, &err);
    if (!pr->pull_id) {
        reply_free(pr->reply);
        free(pr);
        rpc_fail(call, err);
        return;
    }
    reply_cancel_with(pr->reply, on_pull_call_cancelled, pr);
}

/* ---- ImageStatus / ListImages ---- */

/* Fill an Image message borrowing strings from img; free with image_msg_clear(). */
static void image_msg_fill(Runtime__V1__Image *m, const struct store_image *img)
{
    runtime__v1__image__init(m);
    m->id = img->id;
    m->n_repo_tags = img->n_repo_tags;
    m->repo_tags = img->repo_tags;
    m->n_repo_digests = img->n_repo_digests;
    m->repo_digests = img->repo_digests;
    m->size = img->size;
    m->pinned = img->pinned;
    m->spec = xmalloc(sizeof(*m->spec));
    runtime__v1__image_spec__init(m->spec);
    m->spec->image = img->id;
    /* "uid" when the image's user is numeric (possibly "uid:gid"), else "username". */
    const char *user = img->user ? img->user : "";
    size_t name_len = strcspn(user, ":");
    if (name_len > 0) {
        char *end = NULL;
        _cleanup_free_ char *name = xstrndup(user, name_len);
        long long uid = strtoll(name, &end, 10);
        if (*end == '\0' && uid >= 0) {
            m->uid = xmalloc(sizeof(*m->uid));
            runtime__v1__int64_value__init(m->uid);
            m->uid->value = uid;
        } else {
            m->username = xstrndup(user, name_len);
        }
    }
}

static void image_msg_clear(Runtime__V1__Image *m)
{
    free(m->spec);
    free(m->uid);
    if (m->username != protobuf_c_empty_string)
        free(m->username);
}

static json_t *blob_json(const struct image_service *svc, const char *digest)
{
    _cleanup_free_ char *path = store_blob_path(svc->store, digest);
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    return j ? j : json_null();
}

static json_t *str_list(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static char *verbose_info(const struct image_service *svc, const struct store_image *img)
{
    json_t *o = json_object();
    json_object_set_new(o, "imageId", json_string(img->id));
    json_object_set_new(o, "manifestDigest", json_string(img->manifest_digest));
    json_object_set_new(o, "manifest", blob_json(svc, img->manifest_digest));
    json_object_set_new(o, "config", blob_json(svc, img->id));
    json_object_set_new(o, "layers", str_list(img->layer_digests, img->n_layers));
    json_object_set_new(o, "diffIds", str_list(img->diff_ids, img->n_layers));
    json_object_set_new(o, "chainIds", str_list(img->chain_ids, img->n_layers));
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

void image_service_status(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    const Runtime__V1__ImageStatusRequest *r = (const Runtime__V1__ImageStatusRequest *)req;
    struct image_service *svc = ctx;
    if (!r->image || !r->image->image || !*r->image->image) {
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT, "ImageStatus: image is required");
        return;
    }
    Runtime__V1__ImageStatusResponse resp = RUNTIME__V1__IMAGE_STATUS_RESPONSE__INIT;
    const struct store_image *img = store_image_find(svc->store, r->image->image);
    if (!img) {
        rpc_reply(call, &resp.base);
        return;
    }
    Runtime__V1__Image msg;
    image_msg_fill(&msg, img);
    resp.image = &msg;
    _cleanup_free_ char *info = NULL;
    Runtime__V1__ImageStatusResponse__InfoEntry entry =
        RUNTIME__V1__IMAGE_STATUS_RESPONSE__INFO_ENTRY__INIT;
    Runtime__V1__ImageStatusResponse__InfoEntry *entries[] = {&entry};
    if (r->verbose) {
        info = verbose_info(svc, img);
        entry.key = (char *)"info";
        entry.value = info;
        resp.n_info = 1;
        resp.info = entries;
    }
    rpc_reply(call, &resp.base);
    image_msg_clear(&msg);
}

static void list_images(struct h2_call *call, const Runtime__V1__ImageFilter *filter,
                        const struct image_service *svc, const struct list_mode *mode)
{
    const char *want = filter && filter->image && filter->image->image && *filter->image->image
                           ? filter->image->image
                           : NULL;
    const struct store_image *only = want ? store_image_find(svc->store, want) : NULL;
    size_t n = want ? (only ? 1 : 0) : store_image_count(svc->store);
    _cleanup_free_ Runtime__V1__Image *msgs = xcalloc(n ? n : 1, sizeof(*msgs));
    _cleanup_free_ Runtime__V1__Image **ptrs = xcalloc(n ? n : 1, sizeof(*ptrs));
    for (size_t i = 0; i < n; i++) {
        image_msg_fill(&msgs[i], only ? only : store_image_at(svc->store, i));
        ptrs[i] = &msgs[i];
    }
    Runtime__V1__ListImagesResponse resp = RUNTIME__V1__LIST_IMAGES_RESPONSE__INIT;
    resp.n_images = n;
    resp.images = ptrs;
    list_finish(call, &resp.base, mode);
    for (size_t i = 0; i < n; i++)
        image_msg_clear(&msgs[i]);
}

void image_service_list(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    static const struct list_mode mode = {false, "ListImages", "StreamImages", NULL};
    list_images(call, ((const Runtime__V1__ListImagesRequest *)req)->filter, ctx, &mode);
}

void image_service_stream(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    static const struct list_mode mode = {true, "ListImages", "StreamImages",
                                          &runtime__v1__stream_images_response__descriptor};
    list_images(call, ((const Runtime__V1__StreamImagesRequest *)req)->filter, ctx, &mode);
}

/* ---- RemoveImage ---- */

void image_service_remove(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    const Runtime__V1__RemoveImageRequest *r = (const Runtime__V1__RemoveImageRequest *)req;
    struct image_service *svc = ctx;
    if (!r->image || !r->image->image || !*r->image->image) {
        rpc_fail_code(call, GRPC_INVALID_ARGUMENT, "RemoveImage: image is required");
        return;
    }
    Runtime__V1__RemoveImageResponse resp = RUNTIME__V1__REMOVE_IMAGE_RESPONSE__INIT;
    const struct store_image *img = store_image_find(svc->store, r->image->image);
    if (!img) {
        rpc_reply(call, &resp.base);
        return;
    }
    _cleanup_free_ char *id = xstrdup(img->id);
    _cleanup_error_ struct error *err = NULL;
    if (store_image_remove(svc->store, id, &err) < 0) {
        rpc_fail(call, err);
        return;
    }
    size_t removed = store_gc(svc->store, in_flight_uses, svc);
    log_info("image removed id=%s gc_objects=%zu", id, removed);
    rpc_reply(call, &resp.base);
}

/* ---- ImageFsInfo ---- */

static void reply_fs_info(struct reply *rep, const struct image_service *svc)
{
    Runtime__V1__FilesystemIdentifier fsid = RUNTIME__V1__FILESYSTEM_IDENTIFIER__INIT;
    fsid.mountpoint = svc->cfg->root_dir;
    Runtime__V1__UInt64Value bytes = RUNTIME__V1__UINT64_VALUE__INIT;
    bytes.value = svc->fs_usage.bytes;
    Runtime__V1__UInt64Value inodes = RUNTIME__V1__UINT64_VALUE__INIT;
    inodes.value = svc->fs_usage.inodes;
    Runtime__V1__FilesystemUsage usage = RUNTIME__V1__FILESYSTEM_USAGE__INIT;
    usage.timestamp = now_realtime_ns();
    usage.fs_id = &fsid;
    usage.used_bytes = &bytes;
    usage.inodes_used = &inodes;
    Runtime__V1__FilesystemUsage *list[] = {&usage};
    Runtime__V1__ImageFsInfoResponse resp = RUNTIME__V1__IMAGE_FS_INFO_RESPONSE__INIT;
    resp.n_image_filesystems = 1;
    resp.image_filesystems = list;
    /* The containers' writable layers, as their walks last measured them (off the loop). */
    Runtime__V1__FilesystemIdentifier cfsid = RUNTIME__V1__FILESYSTEM_IDENTIFIER__INIT;
    Runtime__V1__UInt64Value cbytes = RUNTIME__V1__UINT64_VALUE__INIT;
    Runtime__V1__UInt64Value cinodes = RUNTIME__V1__UINT64_VALUE__INIT;
    Runtime__V1__FilesystemUsage cusage = RUNTIME__V1__FILESYSTEM_USAGE__INIT;
    Runtime__V1__FilesystemUsage *clist[] = {&cusage};
    const char *cmount = NULL;
    if (stats_service_writable_total(&cmount, &cbytes.value, &cinodes.value, &cusage.timestamp)) {
        cfsid.mountpoint = (char *)cmount;
        cusage.fs_id = &cfsid;
        cusage.used_bytes = &cbytes;
        cusage.inodes_used = &cinodes;
        resp.n_container_filesystems = 1;
        resp.container_filesystems = clist;
    }
    reply_finish(rep, NULL, &resp.base);
}

/* One walk answers every call that came while it ran. */
static void on_usage(const struct store_usage *u, const struct error *err, void *arg)
{
    struct image_service *svc = arg;
    svc->fs_walk = NULL;
    if (u) {
        svc->fs_usage = *u;
        svc->fs_at_ns = now_monotonic_ns();
    }
    _cleanup_free_ struct reply **waiters = steal_ptr(&svc->fs_waiters);
    size_t n = svc->n_fs_waiters;
    svc->n_fs_waiters = 0;
    for (size_t i = 0; i < n; i++) {
        if (u)
            reply_fs_info(waiters[i], svc);
        else
            reply_finish(waiters[i], err, NULL);
    }
}

void image_service_fs_info(struct h2_call *call, const ProtobufCMessage *req, void *ctx)
{
    struct image_service *svc = ctx;
    if (svc->fs_at_ns && now_monotonic_ns() - svc->fs_at_ns < FS_CACHE_NS && !svc->fs_walk) {
        reply_fs_info(reply_new(call, "ImageFsInfo", NULL), svc);
        return;
    }
    if (svc->n_fs_waiters >= MAX_FS_WAITERS) {
        rpc_fail_code(call, GRPC_RESOURCE_EXHAUSTED, "too many ImageFsInfo calls waiting");
        return;
    }
    if (!svc->fs_walk) {
        _cleanup_error_ struct error *err = NULL;
        svc->fs_walk = store_usage_start(svc->store, FS_WALK_TIMEOUT_MS, on_usage, svc, &err);
        if (!svc->fs_walk) {
            rpc_fail(call, err);
            return;
        }
    }
    svc->fs_waiters = xrealloc(svc->fs_waiters, (svc->n_fs_waiters + 1) * sizeof(struct reply *));
    svc->fs_waiters[svc->n_fs_waiters++] = reply_new(call, "ImageFsInfo", NULL);
}
