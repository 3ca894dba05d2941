/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CNI network configuration: find the network kubelet's pods join, as
 * libcni does — the first valid .conflist/.conf/.json file in the configured
 * directory, in lexical order — and check that its plugins are installed.
 */
#ifndef TINYCRI_POD_CNI_H
#define TINYCRI_POD_CNI_H

#include <stddef.h>

struct config;
struct error;

/* Largest network config file read. */
#define CNI_CONF_MAX (1024 * 1024)

struct cni_network {
    char *name;      /* the network's "name" */
    char *path;      /* the file it came from */
    char *conflist;  /* normalised conflist JSON text (a single .conf wrapped in a list) */
    char *plugins;   /* plugin types, comma separated, for messages */
};

/*
 * Load the network in effect. Fails with FAILED_PRECONDITION and a message
 * saying what is missing: no config dir, no config file, no valid one (with
 * the first file's problem), or a plugin binary absent from every bin dir.
 */
int cni_network_load(const struct config *cfg, struct cni_network *net, struct error **err);

void cni_network_clear(struct cni_network *net);

#endif
