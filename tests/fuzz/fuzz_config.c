/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The configuration file (core/config): any file either loads or fails with
 * INVALID_ARGUMENT and one line "<file>:<line>: <key>: <reason>" (or
 * "<file>: <reason>"), leaving the configuration as it was. A loaded
 * configuration reports itself as a JSON object without the passwords.
 */
#include "autoconf.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/error.h"
#include "core/util.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char *path;
    static char *before;
    if (!path) {
        fuzz_quiet_logs();
        path = xasprintf("%s/tinycri.conf", fuzz_tmpdir());
        struct config defaults;
        config_init_defaults(&defaults);
        before = config_to_json(&defaults);
        config_free(&defaults);
    }
    fuzz_write_file(path, data, size);

    struct config cfg;
    config_init_defaults(&cfg);
    struct error *err = NULL;
    if (config_load_file(&cfg, path, &err) < 0) {
        FUZZ_CHECK(err->grpc_code == GRPC_INVALID_ARGUMENT);
        FUZZ_CHECK(str_has_prefix(err->msg, path) && err->msg[strlen(path)] == ':');
        FUZZ_CHECK(!strchr(err->msg, '\n'));
        error_free(err);
        /* A failed load changes nothing. */
        _cleanup_free_ char *after = config_to_json(&cfg);
        FUZZ_CHECK(strcmp(before, after) == 0);
        config_free(&cfg);
        return 0;
    }
    FUZZ_CHECK(cfg.file && strcmp(cfg.file, path) == 0);
    FUZZ_CHECK(cfg.socket_path && cfg.root_dir && cfg.state_dir && cfg.default_runtime);
    FUZZ_CHECK(config_find_runtime(&cfg, "") != NULL);
    _cleanup_free_ char *text = config_to_json(&cfg);
    json_error_t jerr;
    json_t *doc = json_loads(text, 0, &jerr);
    FUZZ_CHECK(json_is_object(doc));
    json_decref(doc);
    FUZZ_CHECK(!strstr(text, "\"password\""));
    config_free(&cfg);
    return 0;
}
