/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Implementation of id.h.
 */
#include "autoconf.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>

#include "core/error.h"
#include "core/id.h"

int id_random(void *buf, size_t len, struct error **err)
{
    uint8_t *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom(p + got, len - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return error_set(err, GRPC_INTERNAL, errno, "getrandom");
        got += (size_t)n;
    }
    return 0;
}

int id_new(char out[ID_LEN + 1], struct error **err)
{
    static const char digits[] = "0123456789abcdef";
    uint8_t raw[ID_LEN / 2];
    if (id_random(raw, sizeof(raw), err) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(raw); i++) {
        out[2 * i] = digits[raw[i] >> 4];
        out[2 * i + 1] = digits[raw[i] & 15];
    }
    out[ID_LEN] = '\0';
    return 0;
}

bool id_is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

bool id_is_valid(const char *s)
{
    return s && strlen(s) == ID_LEN && id_is_hex(s, ID_LEN);
}
