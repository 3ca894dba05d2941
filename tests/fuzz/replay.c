/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The corpus replayer: a main() for a fuzz target in builds without
 * libFuzzer, run by make check as tests/fuzz/replay_<name>. With no
 * arguments it feeds the target every file of tests/fuzz/corpus/<name>/ and
 * tests/fuzz/regress/<name>/ (the inputs that once found a bug); with
 * arguments, those files or directories. A target that breaks a promise
 * aborts, and the last "replay:" line on stderr names the input.
 */
#include "autoconf.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/util.h"
#include "fuzz.h"

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t replay_file(const char *path)
{
    struct error *err = NULL;
    size_t len = 0;
    char *data = read_file_capped(path, 64u << 20, &len, &err);
    if (!data) {
        fprintf(stderr, "replay: %s\n", err->msg);
        exit(1);
    }
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
    /* A copy of the exact size, so ASan sees any read past the input's end. */
    uint8_t *copy = xmalloc(len ? len : 1);
    memcpy(copy, data, len);
    free(data);
    LLVMFuzzerTestOneInput(copy, len);
    free(copy);
    return 1;
}

/* Every regular file of dir in name order; a missing dir counts as empty unless required. */
static size_t replay_dir(const char *dir, bool required)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT && !required)
            return 0;
        fprintf(stderr, "replay: cannot open %s: %s\n", dir, strerror(errno));
        exit(1);
    }
    char **names = NULL;
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        names = xrealloc(names, (n + 1) * sizeof(*names));
        names[n++] = xasprintf("%s/%s", dir, e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(*names), cmp_names);
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode))
            count += replay_file(names[i]);
        free(names[i]);
    }
    free(names);
    return count;
}

int main(int argc, char **argv)
{
    size_t count = 0;
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            struct stat st;
            if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode))
                count += replay_dir(argv[i], true);
            else
                count += replay_file(argv[i]);
        }
    } else {
        count += replay_dir(FUZZ_DATA_DIR "/corpus/" FUZZ_NAME, true);
        count += replay_dir(FUZZ_DATA_DIR "/regress/" FUZZ_NAME, false);
        if (count == 0) {
            fprintf(stderr, "replay: the corpus of %s is empty\n", FUZZ_NAME);
            return 1;
        }
    }
    printf("%s: %zu inputs replayed\n", FUZZ_NAME, count);
    return 0;
}
