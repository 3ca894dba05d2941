/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Layer unpacking (image/unpack): the input is a layer blob (tar, maybe
 * gzip or zstd), extracted with unpack_extract_fd() as the unpack child does,
 * but without its chroot, so the layer code's own defences are what is
 * tested. The base is <tmp>/box/layer, beside a sentinel file
 * <tmp>/box/sentinel. Whatever the layer holds, after the extraction (done or
 * refused) the box holds only the layer directory and the unchanged
 * sentinel, the temp dir only the box, and the working directory is the one
 * before. Writes outside the temp dir fail with EROFS (fuzz_confine_writes())
 * and count as escapes too. A refusal has a code and a message.
 */
#include "autoconf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/util.h"
#include "fuzz.h"
#include "image/unpack.h"

#define SENTINEL "the layer must not touch this file\n"

static char *box, *layer, *sentinel;
static char cwd[4096];

static void setup(void)
{
    fuzz_quiet_logs();
    fuzz_confine_writes();
    box = xasprintf("%s/box", fuzz_tmpdir());
    layer = xasprintf("%s/layer", box);
    sentinel = xasprintf("%s/sentinel", box);
    FUZZ_CHECK(mkdir(box, 0700) == 0);
    fuzz_write_file(sentinel, SENTINEL, strlen(SENTINEL));
    FUZZ_CHECK(getcwd(cwd, sizeof(cwd)));
}

/* The names in dir must be exactly those given. */
static void check_only(const char *dir, const char *a, const char *b)
{
    DIR *d = opendir(dir);
    FUZZ_CHECK(d);
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if ((a && !strcmp(e->d_name, a)) || (b && !strcmp(e->d_name, b)))
            continue;
        fprintf(stderr, "the layer wrote %s/%s outside its directory\n", dir, e->d_name);
        abort();
    }
    closedir(d);
}

static void check_box(void)
{
    check_only(fuzz_tmpdir(), "box", NULL);
    check_only(box, "layer", "sentinel");
    struct stat st;
    FUZZ_CHECK(lstat(layer, &st) == 0 && S_ISDIR(st.st_mode));
    FUZZ_CHECK(lstat(sentinel, &st) == 0 && S_ISREG(st.st_mode));
    FUZZ_CHECK((st.st_mode & 07777) == 0600 && st.st_nlink == 1 && st.st_uid == geteuid());
    FUZZ_CHECK(st.st_size == (off_t)strlen(SENTINEL));
    char text[sizeof(SENTINEL)];
    int fd = open(sentinel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(read(fd, text, sizeof(text)) == (ssize_t)strlen(SENTINEL));
    close(fd);
    FUZZ_CHECK(memcmp(text, SENTINEL, strlen(SENTINEL)) == 0);
    char now[4096];
    FUZZ_CHECK(getcwd(now, sizeof(now)) && strcmp(now, cwd) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!box)
        setup();
    fuzz_rm_tree(layer);
    FUZZ_CHECK(mkdir(layer, 0755) == 0);
    int fd = memfd_create("layer", MFD_CLOEXEC);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(size == 0 || fd_write_all(fd, data, size) == 0);
    FUZZ_CHECK(lseek(fd, 0, SEEK_SET) == 0);

    uint64_t content = 0;
    struct error *err = NULL;
    int rc = unpack_extract_fd(fd, layer, NULL, &content, &err);
    close(fd);
    if (rc < 0) {
        FUZZ_CHECK(err && err->msg && *err->msg);
        FUZZ_CHECK(err->grpc_code != GRPC_OK);
        if (err->sys_errno == EROFS) {
            fprintf(stderr, "the layer tried to write outside its directory: %s\n", err->msg);
            abort();
        }
        error_free(err);
    }
    check_box();
    return 0;
}
