/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Image references (image/ref): any string either parses or fails with
 * INVALID_ARGUMENT, and a parsed reference is a fixed point: its normalised
 * forms parse back to the same domain, path, tag and digest.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/util.h"
#include "fuzz.h"
#include "image/ref.h"

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_reparse(const char *text, const struct image_ref *want, bool with_tag)
{
    struct image_ref again;
    struct error *err = NULL;
    if (image_ref_parse(text, &again, &err) < 0) {
        fprintf(stderr, "normalised form %s does not parse: %s\n", text, err->msg);
        abort();
    }
    FUZZ_CHECK(same(again.domain, want->domain));
    FUZZ_CHECK(same(again.path, want->path));
    if (with_tag) {
        FUZZ_CHECK(same(again.tag, want->tag));
        FUZZ_CHECK(again.digest == NULL);
    } else {
        FUZZ_CHECK(same(again.digest, want->digest));
    }
    image_ref_clear(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    if (!init) {
        fuzz_quiet_logs();
        init = true;
    }
    _cleanup_free_ char *s = fuzz_strndup(data, size);
    struct image_ref r;
    struct error *err = NULL;
    if (image_ref_parse(s, &r, &err) < 0) {
        FUZZ_CHECK(err && err->grpc_code == GRPC_INVALID_ARGUMENT && err->msg);
        FUZZ_CHECK(r.domain == NULL && r.path == NULL && r.tag == NULL && r.digest == NULL);
        error_free(err);
        return 0;
    }
    FUZZ_CHECK(r.domain && *r.domain && r.path && *r.path);
    FUZZ_CHECK(r.tag || r.digest);
    FUZZ_CHECK(!r.digest || image_ref_is_digest(r.digest));
    _cleanup_free_ char *tagged = image_ref_tagged(&r);
    check_reparse(tagged, &r, r.tag != NULL);
    if (r.digest) {
        _cleanup_free_ char *digested = image_ref_with_digest(&r, r.digest);
        check_reparse(digested, &r, false);
    }
    _cleanup_free_ char *name = image_ref_name(&r);
    struct image_ref bare;
    FUZZ_CHECK(image_ref_parse(name, &bare, NULL) == 0);
    FUZZ_CHECK(same(bare.domain, r.domain) && same(bare.path, r.path));
    FUZZ_CHECK(same(bare.tag, "latest") && !bare.digest);
    image_ref_clear(&bare);
    image_ref_clear(&r);
    return 0;
}
