/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CRI method table: builds a router covering every RuntimeService and
 * ImageService method, wiring those that are built to their handlers.
 */
#ifndef TINYCRI_CRI_METHODS_H
#define TINYCRI_CRI_METHODS_H

#include "grpc/router.h"

struct router;
struct runtime_service;
struct image_service;

struct router *cri_methods_router_new(struct runtime_service *rs, struct image_service *is);

/*
 * The same method table with fn(ctx) serving every method that has a
 * handler (the others still answer UNIMPLEMENTED): for fuzzing the transport
 * and the request decoding without the services behind them.
 */
struct router *cri_methods_router_new_with(rpc_handler_fn fn, void *ctx);

#endif
