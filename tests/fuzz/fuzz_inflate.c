/*
 * tests/fuzz/fuzz_inflate.c: libFuzzer harness for gateway/inflate.c.
 *
 * The first input byte picks a mode:
 *   0 zlib, 1 zstd, 2 none: the rest is raw messages, each prefixed by a length byte, fed as
 *     they are. Only 0, SH_ETOOBIG and SH_ECORRUPT may come back; after an error the context
 *     is reset once, as the gateway does on a new connection.
 *   3 zlib, 4 zstd round trip: the rest is plain text cut into payloads at '\n'; each payload
 *     is compressed the way Discord does (one stream, Z_SYNC_FLUSH or ZSTD_e_flush), the
 *     compressed bytes are cut into messages at sizes taken from the text, and every payload
 *     must come back byte for byte.
 * Owns nothing else; any broken promise aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "gateway/inflate.h"
#include "lib/errors.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

enum { MAX_OUT = 1 << 20, MAX_IN = 1 << 16 };

static volatile unsigned sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void raw_messages(enum gw_compress kind, const uint8_t *p, size_t n)
{
    struct gw_inflate *z;
    CHECK(gw__inflate_new(kind, MAX_OUT, MAX_IN, &z) == 0);
    int resets = 0;
    while (n > 0) {
        size_t len = p[0];
        p++, n--;
        if (len > n)
            len = n;
        /* a private copy of exactly len bytes: reads past it show under ASan */
        uint8_t *msg = malloc(len ? len : 1);
        CHECK(msg != NULL);
        memcpy(msg, p, len);
        const char *out = NULL;
        size_t out_len = 0;
        int done = -1;
        int rc = gw__inflate_feed(z, msg, len, &out, &out_len, &done);
        CHECK(rc == 0 || rc == SH_ETOOBIG || rc == SH_ECORRUPT);
        if (rc == 0 && done) {
            CHECK(done == 1 && out != NULL && out_len <= MAX_OUT);
            if (out_len) /* both ends readable (ASan checks the reads) */
                sink = (unsigned char)out[0] ^ (unsigned char)out[out_len - 1];
            if (kind == GW_COMPRESS_NONE)
                CHECK(out == (const char *)msg && out_len == len);
        } else if (rc == 0) {
            CHECK(done == 0 && kind == GW_COMPRESS_ZLIB);
        } else {
            CHECK(done == 0);
            CHECK(gw__inflate_feed(z, msg, len, &out, &out_len, &done) == rc); /* sticky */
            if (resets++ < 1)
                CHECK(gw__inflate_reset(z) == 0);
        }
        free(msg);
        p += len, n -= len;
    }
    gw__inflate_free(z);
}

struct bytes {
    uint8_t *p;
    size_t len, cap;
};

static void put(struct bytes *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        CHECK(b->p != NULL);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void compress_payload(int zstd, z_stream *zs, ZSTD_CCtx *cc, const uint8_t *p, size_t n,
                             struct bytes *out)
{
    uint8_t tmp[4096];
    if (!zstd) {
        zs->next_in = (Bytef *)(uintptr_t)p;
        zs->avail_in = (uInt)n;
        do {
            zs->next_out = tmp;
            zs->avail_out = sizeof(tmp);
            int rc = deflate(zs, Z_SYNC_FLUSH);
            CHECK(rc == Z_OK || rc == Z_BUF_ERROR);
            put(out, tmp, sizeof(tmp) - zs->avail_out);
        } while (zs->avail_out == 0 || zs->avail_in != 0);
        return;
    }
    ZSTD_inBuffer in = {p, n, 0};
    size_t left;
    do {
        ZSTD_outBuffer ob = {tmp, sizeof(tmp), 0};
        left = ZSTD_compressStream2(cc, &ob, &in, ZSTD_e_flush);
        CHECK(!ZSTD_isError(left));
        put(out, tmp, ob.pos);
    } while (left != 0);
}

static int ends_with_suffix(const uint8_t *p, size_t n)
{
    return n >= 4 && p[n - 4] == 0 && p[n - 3] == 0 && p[n - 2] == 0xff && p[n - 1] == 0xff;
}

static void round_trip(int zstd, const uint8_t *p, size_t n)
{
    struct gw_inflate *z;
    CHECK(gw__inflate_new(zstd ? GW_COMPRESS_ZSTD : GW_COMPRESS_ZLIB, MAX_OUT, MAX_IN, &z) == 0);
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    static ZSTD_CCtx *cc; /* one encoder for the whole run: creating one costs megabytes */
    if (zstd) {
        if (!cc)
            CHECK((cc = ZSTD_createCCtx()) != NULL);
        CHECK(!ZSTD_isError(ZSTD_CCtx_reset(cc, ZSTD_reset_session_only)));
        /* small windows (1-128 KiB) keep the decoder's allocation, and each run, cheap */
        ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, 10 + (int)(n % 8));
    } else
        CHECK(deflateInit(&zs, (int)(n % 10)) == Z_OK);
    const uint8_t *text = p;
    size_t at = 0;
    while (at < n) {
        const uint8_t *nl = memchr(p + at, '\n', n - at);
        size_t plen = nl ? (size_t)(nl - (p + at)) : n - at;
        const uint8_t *pl = p + at;
        at += plen + (nl != NULL);
        struct bytes c = {0};
        compress_payload(zstd, &zs, cc, pl, plen, &c);
        if (!zstd && c.len == 0)
            continue; /* deflate writes nothing for an empty payload right after a flush */
        /*
         * Cut into messages; no zlib cut may leave the input so far ending in 00 00 FF FF
         * before the payload's real end (deflate level 0 writes such bytes mid-payload). A zstd
         * payload is one message, empty when the encoder had nothing to flush.
         */
        size_t off = 0, cut_i = 0;
        int completions = 0;
        do {
            size_t len = 1 + text[cut_i++ % n] % 64;
            if (zstd || len > c.len - off)
                len = c.len - off;
            while (!zstd && off + len < c.len && ends_with_suffix(c.p, off + len))
                len++;
            uint8_t *msg = malloc(len ? len : 1);
            CHECK(msg != NULL);
            if (len)
                memcpy(msg, c.p + off, len);
            const char *out;
            size_t out_len;
            int done;
            CHECK(gw__inflate_feed(z, msg, len, &out, &out_len, &done) == 0);
            off += len;
            CHECK(done == (off == c.len));
            if (done) {
                completions++;
                CHECK(out_len == plen && (plen == 0 || memcmp(out, pl, plen) == 0));
            }
            free(msg);
        } while (off < c.len);
        CHECK(completions == 1);
        free(c.p);
    }
    if (!zstd)
        deflateEnd(&zs);
    gw__inflate_free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (data[0] % 5) {
    case 0:
        raw_messages(GW_COMPRESS_ZLIB, p, n);
        break;
    case 1:
        raw_messages(GW_COMPRESS_ZSTD, p, n);
        break;
    case 2:
        raw_messages(GW_COMPRESS_NONE, p, n);
        break;
    case 3:
        round_trip(0, p, n);
        break;
    default:
        round_trip(1, p, n);
        break;
    }
    return 0;
}
