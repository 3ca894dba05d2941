/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SPDY/3.1 framing behind spdy.h. Header blocks are inflated into a
 * bounded scratch area and split into pairs; blocks we send are deflated
 * with a small window (the peer inflates with any window size), which keeps
 * the compressor at a few KiB.
 */
#include "autoconf.h"

#include <string.h>

#include <event2/buffer.h>

#include "core/error.h"
#include "stream/spdy.h"

/* Our deflate side: a 2 KiB window (the whole dictionary fits) and the smallest hash. */
#define DEFLATE_WINDOW_BITS 11
#define DEFLATE_MEM_LEVEL 1

const unsigned char spdy_dictionary[] =
    "\x00\x00\x00\x07"
    "options"
    "\x00\x00\x00\x04"
    "head"
    "\x00\x00\x00\x04"
    "post"
    "\x00\x00\x00\x03"
    "put"
    "\x00\x00\x00\x06"
    "delete"
    "\x00\x00\x00\x05"
    "trace"
    "\x00\x00\x00\x06"
    "accept"
    "\x00\x00\x00\x0e"
    "accept-charset"
    "\x00\x00\x00\x0f"
    "accept-encoding"
    "\x00\x00\x00\x0f"
    "accept-language"
    "\x00\x00\x00\x0d"
    "accept-ranges"
    "\x00\x00\x00\x03"
    "age"
    "\x00\x00\x00\x05"
    "allow"
    "\x00\x00\x00\x0d"
    "authorization"
    "\x00\x00\x00\x0d"
    "cache-control"
    "\x00\x00\x00\x0a"
    "connection"
    "\x00\x00\x00\x0c"
    "content-base"
    "\x00\x00\x00\x10"
    "content-encoding"
    "\x00\x00\x00\x10"
    "content-language"
    "\x00\x00\x00\x0e"
    "content-length"
    "\x00\x00\x00\x10"
    "content-location"
    "\x00\x00\x00\x0b"
    "content-md5"
    "\x00\x00\x00\x0d"
    "content-range"
    "\x00\x00\x00\x0c"
    "content-type"
    "\x00\x00\x00\x04"
    "date"
    "\x00\x00\x00\x04"
    "etag"
    "\x00\x00\x00\x06"
    "expect"
    "\x00\x00\x00\x07"
    "expires"
    "\x00\x00\x00\x04"
    "from"
    "\x00\x00\x00\x04"
    "host"
    "\x00\x00\x00\x08"
    "if-match"
    "\x00\x00\x00\x11"
    "if-modified-since"
    "\x00\x00\x00\x0d"
    "if-none-match"
    "\x00\x00\x00\x08"
    "if-range"
    "\x00\x00\x00\x13"
    "if-unmodified-since"
    "\x00\x00\x00\x0d"
    "last-modified"
    "\x00\x00\x00\x08"
    "location"
    "\x00\x00\x00\x0c"
    "max-forwards"
    "\x00\x00\x00\x06"
    "pragma"
    "\x00\x00\x00\x12"
    "proxy-authenticate"
    "\x00\x00\x00\x13"
    "proxy-authorization"
    "\x00\x00\x00\x05"
    "range"
    "\x00\x00\x00\x07"
    "referer"
    "\x00\x00\x00\x0b"
    "retry-after"
    "\x00\x00\x00\x06"
    "server"
    "\x00\x00\x00\x02"
    "te"
    "\x00\x00\x00\x07"
    "trailer"
    "\x00\x00\x00\x11"
    "transfer-encoding"
    "\x00\x00\x00\x07"
    "upgrade"
    "\x00\x00\x00\x0a"
    "user-agent"
    "\x00\x00\x00\x04"
    "vary"
    "\x00\x00\x00\x03"
    "via"
    "\x00\x00\x00\x07"
    "warning"
    "\x00\x00\x00\x10"
    "www-authenticate"
    "\x00\x00\x00\x06"
    "method"
    "\x00\x00\x00\x03"
    "get"
    "\x00\x00\x00\x06"
    "status"
    "\x00\x00\x00\x06"
    "200 OK"
    "\x00\x00\x00\x07"
    "version"
    "\x00\x00\x00\x08"
    "HTTP/1.1"
    "\x00\x00\x00\x03"
    "url"
    "\x00\x00\x00\x06"
    "public"
    "\x00\x00\x00\x0a"
    "set-cookie"
    "\x00\x00\x00\x0a"
    "keep-alive"
    "\x00\x00\x00\x06"
    "origin1001012012022052063003023033043053063074024054064074084094104114124"
    "13414415416417502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
    "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not I"
    "mplemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,appli"
    "cation/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,defla"
    "te,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";
const size_t spdy_dictionary_len = sizeof(spdy_dictionary) - 1;

/* ---- header blocks ---- */

void spdy_headers_clear(struct spdy_headers *h)
{
    for (size_t i = 0; i < h->n; i++) {
        free(h->items[i].name);
        free(h->items[i].value);
    }
    h->n = 0;
}

const char *spdy_headers_get(const struct spdy_headers *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++) {
        if (strcmp(h->items[i].name, name) == 0)
            return h->items[i].value;
    }
    return NULL;
}

void spdy_zlib_init(struct spdy_zlib *z)
{
    memset(z, 0, sizeof(*z));
}

void spdy_zlib_release_in(struct spdy_zlib *z)
{
    if (z->in_ready)
        inflateEnd(&z->in);
    z->in_ready = false;
    z->in_released = true;
}

void spdy_zlib_release_out(struct spdy_zlib *z)
{
    if (z->out_ready)
        deflateEnd(&z->out);
    z->out_ready = false;
    z->out_released = true;
}

void spdy_zlib_clear(struct spdy_zlib *z)
{
    spdy_zlib_release_in(z);
    spdy_zlib_release_out(z);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Inflate a whole block into out (at most SPDY_HEADERS_MAX bytes). */
static int inflate_block(struct spdy_zlib *z, const uint8_t *in, size_t n, uint8_t *out,
                         size_t *out_len, struct error **err)
{
    if (z->in_released)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "unexpected header block");
    if (!z->in_ready) {
        memset(&z->in, 0, sizeof(z->in));
        if (inflateInit(&z->in) != Z_OK)
            return error_set(err, GRPC_INTERNAL, 0, "inflateInit failed");
        z->in_ready = true;
    }
    z_stream *s = &z->in;
    s->next_in = (Bytef *)in;
    s->avail_in = (uInt)n;
    s->next_out = out;
    s->avail_out = SPDY_HEADERS_MAX;
    while (s->avail_in > 0) {
        int rc = inflate(s, Z_SYNC_FLUSH);
        if (rc == Z_NEED_DICT) {
            if (inflateSetDictionary(s, spdy_dictionary, (uInt)spdy_dictionary_len) != Z_OK)
                return error_set(err, GRPC_INVALID_ARGUMENT, 0, "header block: wrong dictionary");
            continue;
        }
        if (rc == Z_BUF_ERROR && s->avail_out == 0)
            return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0,
                             "header block inflates to more than %d bytes", SPDY_HEADERS_MAX);
        if (rc != Z_OK)
            return error_set(err, GRPC_INVALID_ARGUMENT, 0, "header block: bad zlib data (%d)", rc);
        if (s->avail_out == 0 && s->avail_in > 0)
            return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0,
                             "header block inflates to more than %d bytes", SPDY_HEADERS_MAX);
    }
    *out_len = SPDY_HEADERS_MAX - s->avail_out;
    return 0;
}

static int read_string(const uint8_t *p, size_t len, size_t *off, const uint8_t **s, size_t *n,
                       struct error **err)
{
    if (len - *off < 4)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "header block truncated");
    uint32_t l = get32(p + *off);
    *off += 4;
    if (l > len - *off)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "header block truncated");
    *s = p + *off;
    *n = l;
    *off += l;
    return 0;
}

int spdy_headers_decode(struct spdy_zlib *z, const uint8_t *in, size_t n, struct spdy_headers *out,
                        struct error **err)
{
    spdy_headers_clear(out);
    _cleanup_free_ uint8_t *plain = xmalloc(SPDY_HEADERS_MAX);
    size_t len = 0;
    if (inflate_block(z, in, n, plain, &len, err) < 0)
        return -1;
    if (len < 4)
        return error_set(err, GRPC_INVALID_ARGUMENT, 0, "header block truncated");
    uint32_t count = get32(plain);
    if (count > SPDY_HEADER_COUNT_MAX)
        return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0, "more than %d headers",
                         SPDY_HEADER_COUNT_MAX);
    size_t off = 4;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *name, *value;
        size_t nlen, vlen;
        if (read_string(plain, len, &off, &name, &nlen, err) < 0 ||
            read_string(plain, len, &off, &value, &vlen, err) < 0)
            goto fail;
        if (nlen == 0 || memchr(name, '\0', nlen)) {
            error_set(err, GRPC_INVALID_ARGUMENT, 0, "header block: empty or bad header name");
            goto fail;
        }
        for (size_t j = 0; j < nlen; j++) {
            if (name[j] >= 'A' && name[j] <= 'Z') {
                error_set(err, GRPC_INVALID_ARGUMENT, 0, "header block: upper-case header name");
                goto fail;
            }
        }
        char *nm = xstrndup((const char *)name, nlen);
        if (spdy_headers_get(out, nm)) {
            free(nm);
            error_set(err, GRPC_INVALID_ARGUMENT, 0, "header block: duplicate header");
            goto fail;
        }
        char *val = xmalloc(vlen + 1);
        memcpy(val, value, vlen);
        val[vlen] = '\0';
        out->items[out->n++] = (struct spdy_header){.name = nm, .value = val, .value_len = vlen};
    }
    if (off != len) {
        error_set(err, GRPC_INVALID_ARGUMENT, 0, "header block: trailing bytes");
        goto fail;
    }
    return 0;
fail:
    spdy_headers_clear(out);
    return -1;
}

/* Compress a header block into out (appended), with a sync flush. */
static int deflate_block(struct spdy_zlib *z, const struct spdy_pair *h, size_t n,
                         struct evbuffer *out, size_t *len, struct error **err)
{
    if (z->out_released)
        return error_set(err, GRPC_INTERNAL, 0, "header compression already released");
    if (!z->out_ready) {
        memset(&z->out, 0, sizeof(z->out));
        if (deflateInit2(&z->out, Z_DEFAULT_COMPRESSION, Z_DEFLATED, DEFLATE_WINDOW_BITS,
                         DEFLATE_MEM_LEVEL, Z_DEFAULT_STRATEGY) != Z_OK)
            return error_set(err, GRPC_INTERNAL, 0, "deflateInit failed");
        if (deflateSetDictionary(&z->out, spdy_dictionary, (uInt)spdy_dictionary_len) != Z_OK) {
            deflateEnd(&z->out);
            return error_set(err, GRPC_INTERNAL, 0, "deflateSetDictionary failed");
        }
        z->out_ready = true;
    }
    size_t plain_len = 4;
    for (size_t i = 0; i < n; i++)
        plain_len += 8 + strlen(h[i].name) + strlen(h[i].value);
    if (plain_len > SPDY_HEADERS_MAX)
        return error_set(err, GRPC_INTERNAL, 0, "header block too large");
    _cleanup_free_ uint8_t *plain = xmalloc(plain_len);
    size_t off = 0;
    put32(plain, (uint32_t)n);
    off = 4;
    for (size_t i = 0; i < n; i++) {
        size_t nl = strlen(h[i].name), vl = strlen(h[i].value);
        put32(plain + off, (uint32_t)nl);
        off += 4;
        for (size_t j = 0; j < nl; j++) {
            char c = h[i].name[j];
            plain[off + j] = (uint8_t)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        }
        off += nl;
        put32(plain + off, (uint32_t)vl);
        off += 4;
        memcpy(plain + off, h[i].value, vl);
        off += vl;
    }
    /* Compressed output of a sync-flushed block is bounded by deflateBound() + a few bytes. */
    size_t cap = deflateBound(&z->out, (uLong)plain_len) + 16;
    _cleanup_free_ uint8_t *packed = xmalloc(cap);
    z->out.next_in = plain;
    z->out.avail_in = (uInt)plain_len;
    z->out.next_out = packed;
    z->out.avail_out = (uInt)cap;
    int rc = deflate(&z->out, Z_SYNC_FLUSH);
    if (rc != Z_OK || z->out.avail_in != 0 || z->out.avail_out == 0)
        return error_set(err, GRPC_INTERNAL, 0, "deflate failed (%d)", rc);
    *len = cap - z->out.avail_out;
    evbuffer_add(out, packed, *len);
    return 0;
}

/* ---- frame writers ---- */

static void control_head(uint8_t *p, uint16_t type, uint8_t flags, uint32_t len)
{
    p[0] = 0x80;
    p[1] = SPDY_VERSION;
    p[2] = (uint8_t)(type >> 8);
    p[3] = (uint8_t)type;
    put32(p + 4, len & 0xffffff);
    p[4] = flags;
}

/* A control frame whose payload is fixed bytes followed by a header block. */
static int write_with_block(struct spdy_zlib *z, struct evbuffer *out, uint16_t type, uint8_t flags,
                            const uint8_t *fixed, size_t fixed_len, const struct spdy_pair *h,
                            size_t n, struct error **err)
{
    struct evbuffer *block = evbuffer_new();
    if (!block)
        return error_set(err, GRPC_INTERNAL, 0, "evbuffer_new failed");
    size_t len = 0;
    if (deflate_block(z, h, n, block, &len, err) < 0) {
        evbuffer_free(block);
        return -1;
    }
    uint8_t head[8];
    control_head(head, type, flags, (uint32_t)(fixed_len + len));
    evbuffer_add(out, head, sizeof(head));
    evbuffer_add(out, fixed, fixed_len);
    evbuffer_add_buffer(out, block);
    evbuffer_free(block);
    return 0;
}

int spdy_write_syn_stream(struct spdy_zlib *z, struct evbuffer *out, uint32_t id, uint8_t flags,
                          const struct spdy_pair *h, size_t n, struct error **err)
{
    uint8_t fixed[10] = {0};
    put32(fixed, id & 0x7fffffff);
    return write_with_block(z, out, SPDY_SYN_STREAM, flags, fixed, sizeof(fixed), h, n, err);
}

int spdy_write_syn_reply(struct spdy_zlib *z, struct evbuffer *out, uint32_t id, uint8_t flags,
                         const struct spdy_pair *h, size_t n, struct error **err)
{
    uint8_t fixed[4];
    put32(fixed, id & 0x7fffffff);
    return write_with_block(z, out, SPDY_SYN_REPLY, flags, fixed, sizeof(fixed), h, n, err);
}

void spdy_write_rst_stream(struct evbuffer *out, uint32_t id, uint32_t status)
{
    uint8_t f[16];
    control_head(f, SPDY_RST_STREAM, 0, 8);
    put32(f + 8, id & 0x7fffffff);
    put32(f + 12, status);
    evbuffer_add(out, f, sizeof(f));
}

void spdy_write_ping(struct evbuffer *out, uint32_t id)
{
    uint8_t f[12];
    control_head(f, SPDY_PING, 0, 4);
    put32(f + 8, id);
    evbuffer_add(out, f, sizeof(f));
}

void spdy_write_goaway(struct evbuffer *out, uint32_t last_good_id, uint32_t status)
{
    uint8_t f[16];
    control_head(f, SPDY_GOAWAY, 0, 8);
    put32(f + 8, last_good_id & 0x7fffffff);
    put32(f + 12, status);
    evbuffer_add(out, f, sizeof(f));
}

void spdy_write_data(struct evbuffer *out, uint32_t id, uint8_t flags, const void *data, size_t n)
{
    assert_state(n <= SPDY_DATA_MAX);
    uint8_t f[8];
    put32(f, id & 0x7fffffff);
    put32(f + 4, (uint32_t)n);
    f[4] = flags;
    evbuffer_add(out, f, sizeof(f));
    if (n)
        evbuffer_add(out, data, n);
}

/* ---- parser ---- */

void spdy_parser_init(struct spdy_parser *p)
{
    memset(p, 0, sizeof(*p));
    buf_init(&p->ctrl, SPDY_CONTROL_MAX);
}

void spdy_parser_clear(struct spdy_parser *p)
{
    buf_free(&p->ctrl);
    memset(p, 0, sizeof(*p));
}

static int frame_done(struct spdy_parser *p, const struct spdy_parser_ops *ops, void *arg,
                      struct error **err)
{
    p->in_payload = false;
    p->head_len = 0;
    if (!p->control)
        return 0;
    int rc = ops->control(arg, p->version, p->type, p->flags, (const uint8_t *)p->ctrl.data,
                          p->ctrl.len, err);
    buf_free(&p->ctrl);
    buf_init(&p->ctrl, SPDY_CONTROL_MAX);
    return rc;
}

int spdy_parser_feed(struct spdy_parser *p, const uint8_t *data, size_t n,
                     const struct spdy_parser_ops *ops, void *arg, struct error **err)
{
    size_t off = 0;
    while (off < n) {
        if (!p->in_payload) {
            size_t take = sizeof(p->head) - p->head_len;
            if (take > n - off)
                take = n - off;
            memcpy(p->head + p->head_len, data + off, take);
            p->head_len += take;
            off += take;
            if (p->head_len < sizeof(p->head))
                return 0;
            uint32_t w0 = get32(p->head), w1 = get32(p->head + 4);
            p->control = (w0 & 0x80000000u) != 0;
            p->flags = (uint8_t)(w1 >> 24);
            p->left = w1 & 0xffffff;
            p->in_payload = true;
            if (p->control) {
                p->version = (uint16_t)((w0 >> 16) & 0x7fff);
                p->type = (uint16_t)(w0 & 0xffff);
                if (p->left > SPDY_CONTROL_MAX)
                    return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0,
                                     "SPDY control frame of %u bytes (at most %d)", p->left,
                                     SPDY_CONTROL_MAX);
            } else {
                p->id = w0 & 0x7fffffff;
            }
            if (p->left == 0) {
                if (!p->control && ops->data(arg, p->id, p->flags, NULL, 0, true, err) < 0)
                    return -1;
                if (frame_done(p, ops, arg, err) < 0)
                    return -1;
            }
            continue;
        }
        size_t take = p->left < n - off ? p->left : n - off;
        p->left -= (uint32_t)take;
        if (p->control) {
            if (buf_append(&p->ctrl, data + off, take) < 0)
                return error_set(err, GRPC_RESOURCE_EXHAUSTED, 0, "SPDY control frame too large");
        } else if (take > 0 || p->left == 0) {
            if (ops->data(arg, p->id, p->flags, data + off, take, p->left == 0, err) < 0)
                return -1;
        }
        off += take;
        if (p->left == 0 && frame_done(p, ops, arg, err) < 0)
            return -1;
    }
    return 0;
}
