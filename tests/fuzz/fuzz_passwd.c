/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The user lookup in an image (pod/oci_spec): a CRI or image "User" string
 * resolved against the image's /etc/passwd and /etc/group. The input is
 * "<flags byte><user>\n--\n<passwd>\n--\n<group>\n--\n<link target>": the
 * files go into a fresh rootfs; flag 4 (8) makes etc/passwd (etc/group) a
 * symlink to the link target instead, flag 2 uses the portable path walk in
 * place of openat2(), flag 1 asks for the image's supplementary groups.
 * Beside the rootfs lies another etc/passwd and etc/group naming "outsider"
 * (uid 4242, gid 4343): the lookup must never read them, whatever the links
 * say. A resolved user has its primary gid first among additional_gids.
 */
#include "autoconf.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/util.h"
#include "fuzz.h"
#include "pod/oci_spec.h"

static char *root, *etc;

static void setup_outside(void)
{
    _cleanup_free_ char *dir = xasprintf("%s/outside", fuzz_tmpdir());
    _cleanup_free_ char *dir_etc = xasprintf("%s/etc", dir);
    FUZZ_CHECK(mkdir(dir, 0700) == 0 && mkdir(dir_etc, 0700) == 0);
    _cleanup_free_ char *pw = xasprintf("%s/passwd", dir_etc);
    _cleanup_free_ char *gr = xasprintf("%s/group", dir_etc);
    static const char pw_text[] = "outsider:x:4242:4343::/:/bin/sh\n";
    static const char gr_text[] = "outsiders:x:4343:outsider\n";
    fuzz_write_file(pw, pw_text, strlen(pw_text));
    fuzz_write_file(gr, gr_text, strlen(gr_text));
    root = xasprintf("%s/root", fuzz_tmpdir());
    etc = xasprintf("%s/etc", root);
}

static bool mentions_outsider(const uint8_t *const *parts, const size_t *lens, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (memmem(parts[i], lens[i], "outsider", 8) || memmem(parts[i], lens[i], "4242", 4) ||
            memmem(parts[i], lens[i], "4343", 4))
            return true;
    }
    return false;
}

/* etc/<name>: a file with the text, or with link set a symlink to target. */
static void place(const char *name, const uint8_t *text, size_t len, bool link, const char *target)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", etc, name);
    if (link)
        FUZZ_CHECK(symlink(target, p) == 0);
    else
        fuzz_write_file(p, text, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!root) {
        fuzz_quiet_logs();
        setup_outside();
    }
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    const uint8_t *parts[4];
    size_t lens[4] = {0};
    size_t n = fuzz_split(data + 1, size - 1, parts, lens, 4);
    for (size_t i = n; i < 4; i++) {
        parts[i] = (const uint8_t *)"";
        lens[i] = 0;
    }
    _cleanup_free_ char *user = fuzz_strndup(parts[0], lens[0]);
    _cleanup_free_ char *target = fuzz_strndup(parts[3], lens[3]);
    bool link_ok = *target && strlen(target) == lens[3];

    fuzz_rm_tree(root);
    FUZZ_CHECK(mkdir(root, 0700) == 0 && mkdir(etc, 0700) == 0);
    place("passwd", parts[1], lens[1], link_ok && (flags & 4), target);
    place("group", parts[2], lens[2], link_ok && (flags & 8), target);
    oci_spec_no_openat2 = flags & 2;

    struct oci_spec_user u;
    struct error *err = NULL;
    if (oci_spec_resolve_user(root, user, flags & 1, &u, &err) < 0) {
        FUZZ_CHECK(err->grpc_code == GRPC_INVALID_ARGUMENT ||
                   err->grpc_code == GRPC_RESOURCE_EXHAUSTED || err->grpc_code == GRPC_INTERNAL);
        error_free(err);
        return 0;
    }
    FUZZ_CHECK(u.n_additional_gids >= 1 && u.additional_gids[0] == u.gid);
    if (!mentions_outsider(parts, lens, n)) {
        FUZZ_CHECK(u.uid != 4242 && u.gid != 4343);
        FUZZ_CHECK(!u.name || strcmp(u.name, "outsider") != 0);
        for (size_t i = 0; i < u.n_additional_gids; i++)
            FUZZ_CHECK(u.additional_gids[i] != 4343);
    }
    oci_spec_user_clear(&u);
    return 0;
}
