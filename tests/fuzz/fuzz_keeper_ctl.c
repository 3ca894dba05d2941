/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The keeper's control protocol (keeper/protocol): what a ctl.sock client sends,
 * received in chunks whose sizes come from the first byte, made into lines
 * and parsed as the keeper does. The lines given back are exactly the bytes
 * received up to each '\n'; a buffer that fills without one is reported as
 * an overflow (the keeper then closes the client); every line parses to one
 * command, and a resize carries sizes 1..65535 that its text spells.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "keeper/protocol.h"

static void check_parse(const char *line, size_t len)
{
    struct keeper_ctl_request req;
    keeper_ctl_parse(line, len, &req);
    size_t n = len > 0 && line[len - 1] == '\r' ? len - 1 : len;
    bool has_nul = memchr(line, '\0', n) != NULL;
    switch (req.cmd) {
    case KEEPER_CTL_REOPEN:
        FUZZ_CHECK(n == 6 && memcmp(line, "reopen", 6) == 0);
        break;
    case KEEPER_CTL_STDIN_CLOSE:
        FUZZ_CHECK(n == 11 && memcmp(line, "stdin-close", 11) == 0);
        break;
    case KEEPER_CTL_RESIZE: {
        FUZZ_CHECK(!has_nul && req.cols >= 1 && req.rows >= 1);
        char want[32];
        snprintf(want, sizeof(want), "resize %u %u", req.cols, req.rows);
        /* Leading zeros spell the same size. */
        FUZZ_CHECK(n >= strlen(want) && memcmp(line, "resize ", 7) == 0);
        break;
    }
    case KEEPER_CTL_USAGE:
        FUZZ_CHECK(!has_nul && n >= 7 && memcmp(line, "resize ", 7) == 0);
        break;
    case KEEPER_CTL_UNKNOWN:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)data[0] % KEEPER_CTL_LINE_MAX + 1;
    data++;
    size--;
    struct keeper_ctl_buf b = {0};
    size_t in = 0, out = 0; /* bytes received, bytes given back as lines */
    while (in < size) {
        size_t room = 0;
        char *tail = keeper_ctl_room(&b, &room);
        FUZZ_CHECK(room > 0 && room <= KEEPER_CTL_LINE_MAX);
        size_t n = size - in < chunk ? size - in : chunk;
        if (n > room)
            n = room;
        memcpy(tail, data + in, n);
        keeper_ctl_received(&b, n);
        in += n;
        const char *line;
        size_t len = 0;
        while ((line = keeper_ctl_next_line(&b, &len)) != NULL) {
            FUZZ_CHECK(len < KEEPER_CTL_LINE_MAX && line[len] == '\0');
            FUZZ_CHECK(out + len < in && memcmp(line, data + out, len) == 0);
            FUZZ_CHECK(data[out + len] == '\n' && !memchr(data + out, '\n', len));
            check_parse(line, len);
            out += len + 1;
        }
        if (keeper_ctl_overflow(&b)) {
            FUZZ_CHECK(in - out == KEEPER_CTL_LINE_MAX && !memchr(data + out, '\n', in - out));
            return 0;
        }
    }
    /* What is left is an unfinished line. */
    FUZZ_CHECK(!memchr(data + out, '\n', in - out));
    return 0;
}
