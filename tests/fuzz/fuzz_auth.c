/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What registries and token servers say back (image/registry_auth for the
 * challenges and token answers, image/registry for error bodies): the first
 * byte picks the parser, the rest is its input.
 *   0  WWW-Authenticate values, one per part ("\n--\n" between them)
 *   1  a token endpoint's JSON answer
 *   2  a registry error body
 * A Bearer realm is only taken from a Bearer challenge; a token is 1 to
 * 16384 visible ASCII characters (it goes into a header) with a lifetime
 * that the token cache can turn into nanoseconds; an error detail is
 * printable ASCII of bounded length (core/text escapes each other byte as
 * four).
 */
#include "autoconf.h"

#include <stdint.h>
#include <string.h>

#include "core/util.h"
#include "fuzz.h"
#include "image/registry.h"
#include "image/registry_auth.h"

static void fuzz_challenges(const uint8_t *data, size_t size)
{
    const uint8_t *parts[4];
    size_t lens[4];
    size_t n = fuzz_split(data, size, parts, lens, 4);
    struct registry_challenge c = {0};
    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *value = fuzz_strndup(parts[i], lens[i]);
        registry_auth_challenge_parse(value, &c);
        FUZZ_CHECK(!c.realm || c.bearer);
        FUZZ_CHECK(!c.service || c.bearer);
    }
    registry_auth_challenge_clear(&c);
}

static void fuzz_token(const uint8_t *data, size_t size)
{
    int64_t lifetime = -1;
    _cleanup_free_ char *token = NULL;
    if (registry_auth_token_parse((const char *)data, size, 16384, 60, &token, &lifetime) < 0) {
        FUZZ_CHECK(token == NULL);
        return;
    }
    size_t len = strlen(token);
    FUZZ_CHECK(len >= 1 && len <= 16384);
    for (size_t i = 0; i < len; i++)
        FUZZ_CHECK(token[i] >= 0x21 && token[i] <= 0x7e);
    FUZZ_CHECK(lifetime > 0 && lifetime <= INT64_MAX / 1000000000LL);
}

static void fuzz_error_body(const uint8_t *data, size_t size)
{
    bool denied = false;
    _cleanup_free_ char *detail = registry_error_detail((const char *)data, size, &denied);
    /* text_safe() of at most 64 (code) and 200 (message) bytes, " (", ": " and ")". */
    FUZZ_CHECK(detail && strlen(detail) <= (4 * 64 + 3) + (4 * 200 + 3) + 5);
    for (const char *p = detail; *p; p++)
        FUZZ_CHECK(*p >= 0x20 && *p <= 0x7e);
    _cleanup_free_ char *again = registry_error_detail((const char *)data, size, NULL);
    FUZZ_CHECK(strcmp(detail, again) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] % 3) {
    case 0:
        fuzz_challenges(data + 1, size - 1);
        break;
    case 1:
        fuzz_token(data + 1, size - 1);
        break;
    default:
        fuzz_error_body(data + 1, size - 1);
        break;
    }
    return 0;
}
