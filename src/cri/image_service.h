/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CRI ImageService: PullImage, ImageStatus, ListImages, RemoveImage and
 * ImageFsInfo, on top of the image store, the registry client and the pull
 * state machine.
 */
#ifndef TINYCRI_CRI_IMAGE_SERVICE_H
#define TINYCRI_CRI_IMAGE_SERVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "grpc/router.h"
#include "image/store.h"

struct config;
struct error;
struct reply;
struct registry;
struct puller;
struct importer;

struct image_service {
    const struct config *cfg;
    struct store *store;
    struct registry *registry;
    struct puller *puller;
    struct importer *importer;
    /* ImageFsInfo: one store_usage walk at a time, its result cached briefly. */
    struct store_usage_walk *fs_walk;
    struct reply **fs_waiters;
    size_t n_fs_waiters;
    int64_t fs_at_ns;
    struct store_usage fs_usage;
};

/* Open the store under cfg->root_dir and create the registry client. */
int image_service_init(struct image_service *svc, const struct config *cfg, struct error **err);
void image_service_clear(struct image_service *svc);

/* Import new tarballs from the import directory (start-up, SIGHUP). */
void image_service_import(struct image_service *svc);

void image_service_pull(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void image_service_status(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void image_service_list(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void image_service_stream(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void image_service_remove(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void image_service_fs_info(struct h2_call *call, const ProtobufCMessage *req, void *ctx);

#endif
