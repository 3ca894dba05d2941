/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The container RPCs of RuntimeService: CreateContainer, StartContainer,
 * StopContainer, RemoveContainer, ContainerStatus, ListContainers, ExecSync
 * and ReopenContainerLog. They validate, start a pod/container operation and
 * reply when it ends (if the caller is still there).
 *
 * ExecSync output: each of stdout and stderr keeps at most
 * min(8 MiB, max_send_message_size / 2) - 4 KiB; the rest is dropped
 * silently (as containerd does), so a reply always fits the message cap
 * and one exec never holds more than ~16 MiB in the daemon.
 */
#ifndef TINYCRI_CRI_CONTAINER_SERVICE_H
#define TINYCRI_CRI_CONTAINER_SERVICE_H

#include <stddef.h>

#include "api.pb-c.h"
#include "grpc/router.h"

struct config;
struct container;
struct store;

/*
 * A ContainerStatus message for c, as ContainerStatus answers it (without
 * the verbose info), borrowing c's strings: use it within the loop turn,
 * then container_status_msg_clear(). Container events carry these too.
 */
struct container_status_msg {
    Runtime__V1__ContainerStatus st;
    Runtime__V1__ImageSpec spec;
    Runtime__V1__ContainerResources res;
    void *label_ptrs, *annotation_ptrs; /* reply_map_dup() blocks */
};
void container_status_msg_fill(struct container_status_msg *m, const struct container *c);
void container_status_msg_clear(struct container_status_msg *m);

/*
 * Remember the config and the image store (both borrowed for the daemon's
 * life). ContainerStatus reads the store, as containerd and CRI-O do: its
 * image_ref is the image's digested repository reference ("repo@sha256:…",
 * what kubelet shows as a pod's imageID) and, when the container was created
 * by image id (as kubelet does), its image is the image's first repository
 * tag. Both fall back to the id once the image is gone.
 */
void container_service_init(const struct config *cfg, const struct store *store);

/* The per-stream ExecSync output cap for a reply cap of max_send bytes. */
size_t container_service_exec_cap(size_t max_send);

void container_service_create(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void container_service_start(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void container_service_stop(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void container_service_remove(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void container_service_status(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void container_service_list(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void container_service_stream(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void container_service_exec_sync(struct h2_call *call, const ProtobufCMessage *req, void *ctx);
void container_service_reopen_log(struct h2_call *call, const ProtobufCMessage *req, void *ctx);

#endif
