/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What CNI plugins print (pod/cni): a result, parsed for the pod's addresses,
 * and (first byte odd) a bandwidth quantity from a pod annotation. The first
 * byte also picks the interface name asked for. A result gives at most
 * CNI_MAX_IPS addresses, each a valid IPv4 or IPv6 address, IPv4 first; a
 * quantity is refused or lies in 1k..1P bit/s.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <string.h>

#include "core/error.h"
#include "core/util.h"
#include "fuzz.h"
#include "pod/cni.h"

static void fuzz_bandwidth(const uint8_t *data, size_t size)
{
    _cleanup_free_ char *q = fuzz_strndup(data, size);
    uint64_t bits = 0;
    struct error *err = NULL;
    if (cni_bandwidth_parse(q, &bits, &err) == 0) {
        FUZZ_CHECK(bits >= 1000 && bits <= 1000ULL * 1000 * 1000 * 1000 * 1000);
    } else {
        FUZZ_CHECK(err->grpc_code == GRPC_INVALID_ARGUMENT);
        error_free(err);
    }
}

static void fuzz_result(const char *ifname, const uint8_t *data, size_t size)
{
    struct cni_result r;
    struct error *err = NULL;
    if (cni_result_parse((const char *)data, size, ifname, &r, &err) < 0) {
        FUZZ_CHECK(err->grpc_code == GRPC_INTERNAL);
        error_free(err);
        return;
    }
    FUZZ_CHECK(r.n_ips <= CNI_MAX_IPS);
    bool seen_v6 = false;
    for (size_t i = 0; i < r.n_ips; i++) {
        unsigned char bin[sizeof(struct in6_addr)];
        bool v4 = inet_pton(AF_INET, r.ips[i], bin) == 1;
        FUZZ_CHECK(v4 || inet_pton(AF_INET6, r.ips[i], bin) == 1);
        FUZZ_CHECK(!(v4 && seen_v6));
        seen_v6 = seen_v6 || !v4;
    }
    FUZZ_CHECK(r.json);
    json_error_t jerr;
    json_t *doc = json_loads(r.json, 0, &jerr);
    FUZZ_CHECK(json_is_object(doc));
    json_decref(doc);
    cni_result_clear(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const ifnames[] = {NULL, "eth0", "net1", ""};
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    if (mode & 1)
        fuzz_bandwidth(data + 1, size - 1);
    else
        fuzz_result(ifnames[(mode >> 1) % ARRAY_SIZE(ifnames)], data + 1, size - 1);
    return 0;
}
