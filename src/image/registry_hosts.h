/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The registry client's copy of the [registry.<host>] sections of the
 * configuration: per host, its mirrors (checked and split into base URL and
 * authority here, without libcurl), insecure, ca_file and credentials.
 */
#ifndef TINYCRI_IMAGE_REGISTRY_HOSTS_H
#define TINYCRI_IMAGE_REGISTRY_HOSTS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/config.h"

struct error;

struct registry_mirror {
    char *base;      /* scheme://authority[/prefix], no trailing slash */
    char *authority; /* host[:port] */
};

struct registry_host {
    char *host;
    struct registry_mirror mirrors[CONFIG_MAX_MIRRORS];
    size_t n_mirrors;
    bool insecure;
    char *ca_file;
    char *username;
    char *password;
};

struct registry_hosts {
    struct registry_host *items;
    size_t n;
};

/*
 * Copy the sections of cfg (may be NULL: none). A mirror that is not an
 * http(s) base URL, or carries credentials, is INVALID_ARGUMENT.
 */
int registry_hosts_load(struct registry_hosts *h, const struct config *cfg, struct error **err);
void registry_hosts_clear(struct registry_hosts *h);

/* The section of authority ("host[:port]", case-insensitive), or NULL. */
const struct registry_host *registry_hosts_find(const struct registry_hosts *h,
                                                const char *authority);

#endif
