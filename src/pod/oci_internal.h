/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the files behind oci_spec.h share: oci_spec.c (building config.json),
 * oci_mounts.c (its mounts and devices) and oci_user.c (opening files inside
 * a rootfs without leaving it, and the passwd/group lookup done that way).
 */
#ifndef TINYCRI_POD_OCI_INTERNAL_H
#define TINYCRI_POD_OCI_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "api.pb-c.h"
#include "pod/oci_spec.h"

struct error;

/* ---- the builder (oci_spec.c) ---- */

struct mount_entry {
    char *dst; /* cleaned */
    json_t *obj;
    size_t order;
};

#define NS_NET 0
#define NS_IPC 1
#define NS_PID 2

/* Where one of the container's namespaces comes from. */
enum ns_source {
    NS_HOST, /* the host's: no linux.namespaces entry */
    NS_JOIN, /* join path */
    NS_NEW,  /* a new one of its own */
};

struct ns_choice {
    enum ns_source source;
    const char *path; /* NS_JOIN: borrowed from the input */
};

struct build {
    const struct oci_spec_input *in;
    const Runtime__V1__ContainerConfig *ctr;
    const Runtime__V1__LinuxContainerSecurityContext *sc; /* NULL: none given */
    const Runtime__V1__LinuxContainerResources *res;      /* NULL: none given */
    const Runtime__V1__NamespaceOption *nso;              /* NULL: all POD */
    struct ns_choice ns[3]; /* [NS_NET] (and UTS), [NS_IPC], [NS_PID] */
    const json_t *img;      /* NULL: empty image config */
    bool privileged;
    bool cgroup_v2;
    uint64_t host_caps; /* what "ALL" means */
    uint64_t caps;      /* bounding = permitted = effective */
    uint64_t ambient;   /* ambient = inheritable */
    json_t *spec;
    json_t *process;
    json_t *linux;
    json_t *resources;
    struct mount_entry *mounts; /* sandbox files, image volumes, CRI mounts */
    size_t n_mounts;
    const char *rootfs_propagation;
};

bool oci_is_set(const char *s);
/* A string member from outside text: INVALID_ARGUMENT (naming what) unless it is UTF-8. */
int oci_set_str(json_t *o, const char *key, const char *s, const char *what, struct error **err);
/* A JSON array of a NULL-terminated list of strings. */
json_t *oci_str_array(const char *const *v);
/* Lexically clean an absolute path like Go's filepath.Clean ("/a//b/../c" → "/a/c"). Owned. */
char *oci_path_clean(const char *p);
/* 1 + the number of '/' after the first in a clean absolute path. */
size_t oci_path_depth(const char *clean);
/* The object holding Entrypoint, Cmd, Env...: the "config" member or the document itself. */
const json_t *oci_image_cfg(const json_t *doc);

/* ---- oci_mounts.c ---- */

int oci_build_mounts(struct build *b, struct error **err);
int oci_build_devices(struct build *b, struct error **err);

/* ---- shared helpers ---- */

/* A growable list of owned strings. */
struct strv {
    char **v;
    size_t n, alloc;
};

void oci_strv_push(struct strv *s, char *p);
void oci_strv_clear(struct strv *s);
#define _cleanup_strv_ __attribute__((cleanup(oci_strv_clear)))

struct oci_spec_user;

/* Add gid to the user's additional gids unless it is there already. */
void oci_user_add_gid(struct oci_spec_user *u, uint32_t gid);

/*
 * The next line of a text being cut in place at *cursor (its '\n' and a
 * '\r' removed), skipping empty, '#' and NIS ('+', '-') lines; NULL at the end.
 */
char *oci_next_line(char **cursor);

/* Read a regular file from an open fd, at most OCI_SPEC_FILE_MAX bytes; what names it. */
char *oci_read_fd(int fd, const char *what, size_t *len, struct error **err);

#endif
