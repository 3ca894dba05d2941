/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Network config files (pod/cni): the input is written as the only file of
 * a CNI config directory, named by its first byte (.conflist, .conf or
 * .json), and loaded as the daemon does at Status and RunPodSandbox. A
 * plugin directory holds "bridge", "host-local", "portmap", "loopback" and
 * "bandwidth". A load either fails with FAILED_PRECONDITION or gives a named
 * network whose normalised conflist is a JSON object with a non-empty
 * "plugins" list of installed plugin types.
 */
#include "autoconf.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/error.h"
#include "core/util.h"
#include "fuzz.h"
#include "pod/cni.h"

static struct config cfg;
static char *conf_dir;

static void setup(void)
{
    fuzz_quiet_logs();
    config_init_defaults(&cfg);
    conf_dir = xasprintf("%s/net.d", fuzz_tmpdir());
    _cleanup_free_ char *bin = xasprintf("%s/bin", fuzz_tmpdir());
    FUZZ_CHECK(mkdir(conf_dir, 0700) == 0 && mkdir(bin, 0700) == 0);
    static const char *const plugins[] = {"bridge", "host-local", "portmap", "loopback",
                                          "bandwidth"};
    for (size_t i = 0; i < ARRAY_SIZE(plugins); i++) {
        _cleanup_free_ char *p = xasprintf("%s/%s", bin, plugins[i]);
        fuzz_write_file(p, "#!/bin/sh\n", 10);
        FUZZ_CHECK(chmod(p, 0700) == 0);
    }
    struct error *err = NULL;
    FUZZ_CHECK(config_set(&cfg, "cni", "conf_dir", conf_dir, &err) == 0);
    FUZZ_CHECK(config_set(&cfg, "cni", "bin_dirs", bin, &err) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"10-net.conflist", "10-net.conf", "10-net.json"};
    if (!conf_dir)
        setup();
    if (size < 1)
        return 0;
    _cleanup_free_ char *path = xasprintf("%s/%s", conf_dir, names[data[0] % ARRAY_SIZE(names)]);
    fuzz_write_file(path, data + 1, size - 1);

    struct cni_network net;
    struct error *err = NULL;
    int rc = cni_network_load(&cfg, &net, &err);
    FUZZ_CHECK(unlink(path) == 0);
    if (rc < 0) {
        FUZZ_CHECK(err->grpc_code == GRPC_FAILED_PRECONDITION);
        error_free(err);
        return 0;
    }
    FUZZ_CHECK(net.name && *net.name && net.path && strcmp(net.path, path) == 0);
    json_error_t jerr;
    json_t *doc = json_loads(net.conflist, 0, &jerr);
    FUZZ_CHECK(json_is_object(doc));
    json_t *plugins = json_object_get(doc, "plugins");
    FUZZ_CHECK(json_is_array(plugins) && json_array_size(plugins) > 0);
    size_t i;
    json_t *p;
    json_array_foreach(plugins, i, p)
    {
        const char *type = json_string_value(json_object_get(p, "type"));
        FUZZ_CHECK(type && *type && !strchr(type, '/'));
    }
    json_decref(doc);
    cni_network_clear(&net);
    return 0;
}
