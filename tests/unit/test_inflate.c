/*
 * tests/unit/test_inflate.c: gateway/inflate.c against streams built here the way Discord
 * builds them: one deflate context with Z_SYNC_FLUSH per payload, one zstd context with
 * ZSTD_e_flush per payload, both for the whole connection.
 */
#include <malloc.h>
#include <stdint.h>
#include <zlib.h>
#include <zstd.h>

#include "gateway/inflate.h"
#include "lib/errors.h"
#include "tests/unit/test.h"

/* ---- helpers: payloads, byte strings, compressors ---- */

struct bytes {
    unsigned char *p;
    size_t len, cap;
};

static void bytes_put(struct bytes *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static uint64_t rng = 88172645463325252ull;

static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* A JSON-looking dispatch of exactly n bytes (n >= 64), compressible but not trivially. */
static char *make_payload(size_t n, unsigned seq)
{
    static const char *words[] = {"hello", "shard",   "guild", "member",         "webhook",
                                  "zstd",  "discord", "event", "\\\"quoted\\\"", "0123456789"};
    char *s = malloc(n + 1);
    if (!s)
        abort();
    int head = snprintf(s, n, "{\"t\":\"MESSAGE_CREATE\",\"s\":%u,\"op\":0,\"d\":{\"c\":\"", seq);
    size_t i = (size_t)head;
    while (i < n - 3) {
        const char *w = words[next_rand() % 10];
        size_t wl = strlen(w);
        if (i + wl + 1 <= n - 3) {
            memcpy(s + i, w, wl);
            i += wl;
            s[i++] = ' ';
        } else {
            s[i++] = 'x';
        }
    }
    memcpy(s + n - 3, "\"}}", 3);
    s[n] = '\0';
    return s;
}

struct zc {
    z_stream zs;
};

static void zc_init(struct zc *c)
{
    memset(c, 0, sizeof(*c));
    if (deflateInit(&c->zs, 6) != Z_OK)
        abort();
}

static void zc_end(struct zc *c)
{
    deflateEnd(&c->zs);
}

/* One payload with flush (Z_SYNC_FLUSH or Z_FINISH), appended to out. */
static void zc_payload_flush(struct zc *c, const void *p, size_t n, struct bytes *out, int flush)
{
    c->zs.next_in = (Bytef *)(uintptr_t)p;
    c->zs.avail_in = (uInt)n;
    for (;;) {
        unsigned char tmp[16384];
        c->zs.next_out = tmp;
        c->zs.avail_out = sizeof(tmp);
        int rc = deflate(&c->zs, flush);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
            abort();
        bytes_put(out, tmp, sizeof(tmp) - c->zs.avail_out);
        if (c->zs.avail_out != 0 && c->zs.avail_in == 0)
            break;
    }
}

static void zc_payload(struct zc *c, const void *p, size_t n, struct bytes *out)
{
    zc_payload_flush(c, p, n, out, Z_SYNC_FLUSH);
}

struct zsc {
    ZSTD_CCtx *cc;
};

static void zsc_init(struct zsc *c)
{
    c->cc = ZSTD_createCCtx();
    if (!c->cc)
        abort();
    ZSTD_CCtx_setParameter(c->cc, ZSTD_c_compressionLevel, 3);
}

static void zsc_end(struct zsc *c)
{
    ZSTD_freeCCtx(c->cc);
}

static void zsc_payload(struct zsc *c, const void *p, size_t n, struct bytes *out)
{
    ZSTD_inBuffer in = {p, n, 0};
    for (;;) {
        unsigned char tmp[16384];
        ZSTD_outBuffer ob = {tmp, sizeof(tmp), 0};
        size_t left = ZSTD_compressStream2(c->cc, &ob, &in, ZSTD_e_flush);
        if (ZSTD_isError(left))
            abort();
        bytes_put(out, tmp, ob.pos);
        if (left == 0)
            break;
    }
}

static int ends_with_suffix(const unsigned char *p, size_t n)
{
    return n >= 4 && p[n - 4] == 0 && p[n - 3] == 0 && p[n - 2] == 0xff && p[n - 1] == 0xff;
}

/* ---- zlib-stream ---- */

TEST(zlib_several_payloads_in_a_row)
{
    struct gw_inflate *z;
    struct zc c;
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZLIB, 1 << 20, 1 << 20, &z), 0);
    zc_init(&c);
    for (unsigned i = 0; i < 20; i++) {
        size_t n = 64 + (size_t)i * 397;
        char *pl = make_payload(n, i);
        struct bytes m = {0};
        zc_payload(&c, pl, n, &m);
        ASSERT(ends_with_suffix(m.p, m.len));
        const char *out = NULL;
        size_t out_len = 0;
        int done = -1;
        ASSERT_EQ(gw__inflate_feed(z, m.p, m.len, &out, &out_len, &done), 0);
        ASSERT_EQ(done, 1);
        ASSERT_EQ(out_len, n);
        ASSERT(memcmp(out, pl, n) == 0);
        free(m.p);
        free(pl);
    }
    zc_end(&c);
    gw__inflate_free(z);
}

/* Feed m split at the given cut points; only the last piece may complete the payload. */
static int feed_split(struct gw_inflate *z, const struct bytes *m, const size_t *cuts, int ncuts,
                      const char *want, size_t want_len)
{
    size_t at = 0;
    for (int i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : m->len;
        const char *out = NULL;
        size_t out_len = 0;
        int done = -1;
        if (gw__inflate_feed(z, m->p + at, to - at, &out, &out_len, &done) != 0)
            return 1;
        if (done != (i == ncuts))
            return 2;
        if (done && (out_len != want_len || memcmp(out, want, want_len) != 0))
            return 3;
        at = to;
    }
    return 0;
}

TEST(zlib_payload_split_across_messages)
{
    struct gw_inflate *z;
    struct zc c;
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZLIB, 1 << 20, 1 << 20, &z), 0);
    zc_init(&c);
    for (unsigned round = 0; round < 3; round++) {
        size_t n = 30000;
        char *pl = make_payload(n, round);
        struct bytes m = {0};
        zc_payload(&c, pl, n, &m);
        ASSERT(m.len > 100);
        size_t two[] = {m.len / 2};
        size_t three[] = {m.len / 3, 2 * m.len / 3};
        size_t many[40];
        for (int i = 0; i < 40; i++)
            many[i] = (m.len * (size_t)(i + 1)) / 41;
        if (round == 0)
            ASSERT_EQ(feed_split(z, &m, two, 1, pl, n), 0);
        else if (round == 1)
            ASSERT_EQ(feed_split(z, &m, three, 2, pl, n), 0);
        else
            ASSERT_EQ(feed_split(z, &m, many, 40, pl, n), 0);
        free(m.p);
        free(pl);
    }
    zc_end(&c);
    gw__inflate_free(z);
}

TEST(zlib_suffix_split_across_messages)
{
    struct gw_inflate *z;
    struct zc c;
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZLIB, 1 << 20, 1 << 20, &z), 0);
    zc_init(&c);
    /* cut 1, 2 and 3 bytes before the end (inside 00 00 FF FF), and 4 (just before it) */
    for (size_t back = 1; back <= 4; back++) {
        char *pl = make_payload(500, (unsigned)back);
        struct bytes m = {0};
        zc_payload(&c, pl, 500, &m);
        size_t cut[] = {m.len - back};
        ASSERT_EQ(feed_split(z, &m, cut, 1, pl, 500), 0);
        /* and the suffix split three ways: ..00 | 00 FF | FF */
        free(m.p);
        m = (struct bytes){0};
        zc_payload(&c, pl, 500, &m);
        size_t cuts3[] = {m.len - 3, m.len - 1};
        ASSERT_EQ(feed_split(z, &m, cuts3, 2, pl, 500), 0);
        free(m.p);
        free(pl);
    }
    zc_end(&c);
    gw__inflate_free(z);
}

TEST(zlib_one_byte_at_a_time)
{
    struct gw_inflate *z;
    struct zc c;
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZLIB, 1 << 20, 1 << 20, &z), 0);
    zc_init(&c);
    for (unsigned round = 0; round < 3; round++) {
        size_t n = 3000 + round * 1000;
        char *pl = make_payload(n, round);
        struct bytes m = {0};
        zc_payload(&c, pl, n, &m);
        int completions = 0;
        for (size_t i = 0; i < m.len; i++) {
            const char *out = NULL;
            size_t out_len = 0;
            int done = -1;
            ASSERT_EQ(gw__inflate_feed(z, m.p + i, 1, &out, &out_len, &done), 0);
            if (done) {
                completions++;
                ASSERT_EQ(i, m.len - 1);
                ASSERT_EQ(out_len, n);
                ASSERT(memcmp(out, pl, n) == 0);
            }
        }
        ASSERT_EQ(completions, 1);
        free(m.p);
        free(pl);
    }
    zc_end(&c);
    gw__inflate_free(z);
}

TEST(zlib_empty_message_and_empty_payload)
{
    struct gw_inflate *z;
    struct zc c;
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZLIB, 1024, 1024, &z), 0);
    zc_init(&c);
    const char *out = NULL;
    size_t out_len = 7;
    int done = -1;
    ASSERT_EQ(gw__inflate_feed(z, NULL, 0, &out, &out_len, &done), 0);
    ASSERT_EQ(done, 0);
    struct bytes m = {0};
    zc_payload(&c, "", 0, &m); /* a bare sync flush: header + empty stored block */
    ASSERT_EQ(gw__inflate_feed(z, m.p, m.len, &out, &out_len, &done), 0);
    ASSERT_EQ(done, 1);
    ASSERT_EQ(out_len, 0);
    free(m.p);
    m = (struct bytes){0};
    zc_payload(&c, "{\"op\":11}", 9, &m);
    ASSERT_EQ(gw__inflate_feed(z, m.p, m.len, &out, &out_len, &done), 0);
    ASSERT_EQ(done, 1);
    ASSERT_SPAN_EQ(out, out_len, "{\"op\":11}");
    free(m.p);
    zc_end(&c);
    gw__inflate_free(z);
}

TEST(zlib_corrupt_header_is_corrupt_and_sticky)
{
    struct gw_inflate *z;
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZLIB, 1024, 1024, &z), 0);
    static const unsigned char bad[] = {0xff, 0x13, 0x37, 0x00, 0x00, 0xff, 0xff};
    const char *out = NULL;
    size_t out_len = 0;
    int done = -1;
    ASSERT_EQ(gw__inflate_feed(z, bad, sizeof(bad), &out, &out_len, &done), SH_ECORRUPT);
    ASSERT_EQ(done, 0);
    /* the stream stays unusable until reset, even for good input */
    struct zc c;
    zc_init(&c);
    struct bytes m = {0};
    zc_payload(&c, "{\"op\":11}", 9, &m);
    ASSERT_EQ(gw__inflate_feed(z, m.p, m.len, &out, &out_len, &done), SH_ECORRUPT);
    ASSERT_EQ(gw__inflate_reset(z), 0);
    ASSERT_EQ(gw__inflate_feed(z, m.p, m.len, &out, &out_len, &done), 0);
    ASSERT_EQ(done, 1);
    ASSERT_SPAN_EQ(out, out_len, "{\"op\":11}");
    free(m.p);
    zc_end(&c);
    gw__inflate_free(z);
}

TEST(zlib_need_dict_is_corrupt)
{
    struct gw_inflate *z;
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZLIB, 1024, 1024, &z), 0);
    /* 78 BB: valid zlib header with FDICT set, then a dictionary id */
    static const unsigned char dict[] = {0x78, 0xbb, 0, 0, 0, 1, 0x00, 0x00, 0x00, 0xff, 0xff};
    const char *out;
    size_t out_len;
    int done;
    ASSERT_EQ(gw__inflate_feed(z, dict, sizeof(dict), &out, &out_len, &done), SH_ECORRUPT);
    gw__inflate_free(z);
}

TEST(zlib_stream_end_mid_connection_is_corrupt)
{
    struct gw_inflate *z;
    struct zc c;
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZLIB, 4096, 4096, &z), 0);
    zc_init(&c);
    struct bytes m = {0};
    zc_payload_flush(&c, "{\"op\":11}", 9, &m, Z_FINISH);
    /* bytes after the end of the stream, shaped like a sync flush */
    static const unsigned char tail[] = {0x00, 0x00, 0x00, 0xff, 0xff};
    bytes_put(&m, tail, sizeof(tail));
    const char *out;
    size_t out_len;
    int done;
    ASSERT_EQ(gw__inflate_feed(z, m.p, m.len, &out, &out_len, &done), SH_ECORRUPT);
    free(m.p);
    zc_end(&c);
    gw__inflate_free(z);
}

/*
 * Flip 1-4 random bits of the two-payload stream m (the first payload ends at first) 2,000
 * times and feed each copy to a new context: only 0, SH_ECORRUPT or SH_ETOOBIG may come back.
 * *corrupt counts the copies found corrupt.
 */
static void feed_mutations(enum gw_compress kind, size_t max_in, const struct bytes *m,
                           size_t first, int *corrupt)
{
    for (int round = 0; round < 2000; round++) {
        struct gw_inflate *z;
        ASSERT_EQ(gw__inflate_new(kind, 16384, max_in, &z), 0);
        unsigned char *mut = malloc(m->len);
        memcpy(mut, m->p, m->len);
        int flips = 1 + (int)(next_rand() % 4);
        for (int f = 0; f < flips; f++)
            mut[next_rand() % m->len] ^= (unsigned char)(1u << (next_rand() % 8));
        const char *out;
        size_t out_len;
        int done;
        int rc = gw__inflate_feed(z, mut, first, &out, &out_len, &done);
        if (rc == 0)
            rc = gw__inflate_feed(z, mut + first, m->len - first, &out, &out_len, &done);
        free(mut);
        gw__inflate_free(z);
        ASSERT(rc == 0 || rc == SH_ECORRUPT || rc == SH_ETOOBIG);
        *corrupt += rc == SH_ECORRUPT;
    }
}

TEST(zlib_mutated_streams_never_crash)
{
    struct zc c;
    zc_init(&c);
    struct bytes m = {0};
    char *pl1 = make_payload(4000, 1), *pl2 = make_payload(9000, 2);
    zc_payload(&c, pl1, 4000, &m);
    size_t first = m.len;
    zc_payload(&c, pl2, 9000, &m);
    zc_end(&c);
    int corrupt = 0;
    feed_mutations(GW_COMPRESS_ZLIB, 65536, &m, first, &corrupt);
    ASSERT(corrupt > 100); /* most bit flips are caught */
    free(m.p);
    free(pl1);
    free(pl2);
}

TEST(zlib_output_cap)
{
    struct gw_inflate *z;
    struct zc c;
    char *pl = make_payload(1001, 0);
    /* exactly at the cap: fine */
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZLIB, 1001, 1 << 16, &z), 0);
    zc_init(&c);
    struct bytes m = {0};
    zc_payload(&c, pl, 1001, &m);
    const char *out;
    size_t out_len;
    int done;
    ASSERT_EQ(gw__inflate_feed(z, m.p, m.len, &out, &out_len, &done), 0);
    ASSERT_EQ(out_len, 1001);
    gw__inflate_free(z);
    /* one byte over: SH_ETOOBIG */
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZLIB, 1000, 1 << 16, &z), 0);
    ASSERT_EQ(gw__inflate_feed(z, m.p, m.len, &out, &out_len, &done), SH_ETOOBIG);
    ASSERT_EQ(done, 0);
    /* the stream stopped mid-payload: later payloads are refused until reset */
    struct bytes m2 = {0};
    zc_payload(&c, "{}", 2, &m2);
    ASSERT_EQ(gw__inflate_feed(z, m2.p, m2.len, &out, &out_len, &done), SH_ETOOBIG);
    ASSERT_EQ(gw__inflate_reset(z), 0);
    ASSERT_EQ(gw__inflate_feed(z, m.p, m.len, &out, &out_len, &done), SH_ETOOBIG); /* still big */
    free(m2.p);
    gw__inflate_free(z);
    free(m.p);
    zc_end(&c);
    free(pl);
}

TEST(zlib_pending_input_cap)
{
    struct gw_inflate *z;
    struct zc c;
    char *pl = make_payload(20000, 0);
    zc_init(&c);
    struct bytes m = {0};
    zc_payload(&c, pl, 20000, &m);
    ASSERT(m.len > 200);
    const char *out;
    size_t out_len;
    int done;
    /* split input: the pending buffer refuses to grow past max_in */
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZLIB, 1 << 20, m.len - 1, &z), 0);
    ASSERT_EQ(gw__inflate_feed(z, m.p, m.len / 2, &out, &out_len, &done), 0);
    ASSERT_EQ(done, 0);
    ASSERT_EQ(gw__inflate_feed(z, m.p + m.len / 2, m.len - m.len / 2, &out, &out_len, &done),
              SH_ETOOBIG);
    gw__inflate_free(z);
    /* one whole message over max_in is refused too, though it needs no copy */
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZLIB, 1 << 20, m.len - 1, &z), 0);
    ASSERT_EQ(gw__inflate_feed(z, m.p, m.len, &out, &out_len, &done), SH_ETOOBIG);
    gw__inflate_free(z);
    /* at max_in exactly, both ways work */
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZLIB, 1 << 20, m.len, &z), 0);
    size_t cut[] = {m.len / 2};
    ASSERT_EQ(feed_split(z, &m, cut, 1, pl, 20000), 0);
    gw__inflate_free(z);
    free(m.p);
    zc_end(&c);
    free(pl);
}

TEST(zlib_reset_then_new_stream)
{
    struct gw_inflate *z;
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZLIB, 1 << 20, 1 << 20, &z), 0);
    const char *out;
    size_t out_len;
    int done;
    for (int conn = 0; conn < 3; conn++) {
        struct zc c;
        zc_init(&c);
        char *pl = make_payload(5000, (unsigned)conn);
        struct bytes m = {0};
        zc_payload(&c, pl, 5000, &m);
        ASSERT_EQ(gw__inflate_feed(z, m.p, m.len, &out, &out_len, &done), 0);
        ASSERT_EQ(done, 1);
        ASSERT_EQ(out_len, 5000);
        ASSERT(memcmp(out, pl, 5000) == 0);
        /* leave half a payload pending: reset must forget it */
        struct bytes m2 = {0};
        zc_payload(&c, pl, 5000, &m2);
        ASSERT_EQ(gw__inflate_feed(z, m2.p, m2.len / 2, &out, &out_len, &done), 0);
        ASSERT_EQ(done, 0);
        ASSERT_EQ(gw__inflate_reset(z), 0);
        free(m.p);
        free(m2.p);
        free(pl);
        zc_end(&c);
    }
    gw__inflate_free(z);
}

TEST(zlib_large_payloads_then_small)
{
    struct gw_inflate *z;
    struct zc c;
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZLIB, 8 << 20, 8 << 20, &z), 0);
    zc_init(&c);
    size_t sizes[] = {5 << 20, 100, 300000, 50, 6 << 20, 20};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i] < 64 ? 64 : sizes[i];
        char *pl = make_payload(n, (unsigned)i);
        struct bytes m = {0};
        zc_payload(&c, pl, n, &m);
        /* big ones arrive in several messages, as a WebSocket peer would send them */
        size_t cuts[3] = {m.len / 4, m.len / 2, 3 * m.len / 4};
        ASSERT_EQ(feed_split(z, &m, cuts, m.len > 4096 ? 3 : 0, pl, n), 0);
        free(m.p);
        free(pl);
    }
    zc_end(&c);
    gw__inflate_free(z);
}

/* ---- zstd-stream ---- */

TEST(zstd_several_payloads_in_a_row)
{
    struct gw_inflate *z;
    struct zsc c;
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZSTD, 1 << 20, 0, &z), 0);
    zsc_init(&c);
    for (unsigned i = 0; i < 20; i++) {
        size_t n = 64 + (size_t)i * 511;
        char *pl = make_payload(n, i);
        struct bytes m = {0};
        zsc_payload(&c, pl, n, &m);
        const char *out = NULL;
        size_t out_len = 0;
        int done = -1;
        ASSERT_EQ(gw__inflate_feed(z, m.p, m.len, &out, &out_len, &done), 0);
        ASSERT_EQ(done, 1);
        ASSERT_EQ(out_len, n);
        ASSERT(memcmp(out, pl, n) == 0);
        free(m.p);
        free(pl);
    }
    zsc_end(&c);
    gw__inflate_free(z);
}

TEST(zstd_output_larger_than_internal_buffers)
{
    struct gw_inflate *z;
    struct zsc c;
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZSTD, 8 << 20, 0, &z), 0);
    zsc_init(&c);
    /* past ZSTD_DStreamOutSize() (one block, 128 KiB) and our own starting buffer */
    size_t sizes[] = {ZSTD_DStreamOutSize() + 1, 64, 3 * ZSTD_DStreamOutSize() + 17, 6 << 20, 80};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        char *pl = make_payload(n, (unsigned)i);
        struct bytes m = {0};
        zsc_payload(&c, pl, n, &m);
        const char *out = NULL;
        size_t out_len = 0;
        int done = -1;
        ASSERT_EQ(gw__inflate_feed(z, m.p, m.len, &out, &out_len, &done), 0);
        ASSERT_EQ(done, 1);
        ASSERT_EQ(out_len, n);
        ASSERT(memcmp(out, pl, n) == 0);
        free(m.p);
        free(pl);
    }
    zsc_end(&c);
    gw__inflate_free(z);
}

TEST(zstd_corrupt_and_output_cap)
{
    struct gw_inflate *z;
    const char *out;
    size_t out_len;
    int done;
    static const unsigned char junk[] = "this is not a zstd frame at all";
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZSTD, 1 << 16, 0, &z), 0);
    ASSERT_EQ(gw__inflate_feed(z, junk, sizeof(junk), &out, &out_len, &done), SH_ECORRUPT);
    ASSERT_EQ(done, 0);
    ASSERT_EQ(gw__inflate_feed(z, junk, 1, &out, &out_len, &done), SH_ECORRUPT); /* sticky */
    gw__inflate_free(z);

    struct zsc c;
    zsc_init(&c);
    char *pl = make_payload(5000, 0);
    struct bytes m = {0};
    zsc_payload(&c, pl, 5000, &m);
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZSTD, 4999, 0, &z), 0);
    ASSERT_EQ(gw__inflate_feed(z, m.p, m.len, &out, &out_len, &done), SH_ETOOBIG);
    gw__inflate_free(z);
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZSTD, 5000, 0, &z), 0);
    ASSERT_EQ(gw__inflate_feed(z, m.p, m.len, &out, &out_len, &done), 0);
    ASSERT_EQ(out_len, 5000);
    gw__inflate_free(z);
    free(m.p);
    free(pl);
    zsc_end(&c);
}

TEST(zstd_mutated_streams_never_crash)
{
    struct zsc c;
    zsc_init(&c);
    struct bytes m = {0};
    char *pl1 = make_payload(4000, 1), *pl2 = make_payload(9000, 2);
    zsc_payload(&c, pl1, 4000, &m);
    size_t first = m.len;
    zsc_payload(&c, pl2, 9000, &m);
    zsc_end(&c);
    int corrupt = 0;
    feed_mutations(GW_COMPRESS_ZSTD, 0, &m, first, &corrupt);
    ASSERT(corrupt > 100);
    free(m.p);
    free(pl1);
    free(pl2);
}

TEST(zstd_empty_messages_do_not_stall_the_stream)
{
    struct gw_inflate *z;
    struct zsc c;
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZSTD, 1 << 16, 0, &z), 0);
    zsc_init(&c);
    const char *out = NULL;
    size_t out_len = 7;
    int done = 0;
    for (int round = 0; round < 3; round++) {
        /* zstd refuses a 17th call in a row without progress; empty messages must not count */
        for (int i = 0; i < 40; i++) {
            ASSERT_EQ(gw__inflate_feed(z, "", 0, &out, &out_len, &done), 0);
            ASSERT_EQ(done, 1);
            ASSERT_EQ(out_len, 0);
            ASSERT(out != NULL);
        }
        struct bytes m = {0};
        zsc_payload(&c, "{\"op\":11}", 9, &m);
        ASSERT_EQ(gw__inflate_feed(z, m.p, m.len, &out, &out_len, &done), 0);
        ASSERT_SPAN_EQ(out, out_len, "{\"op\":11}");
        free(m.p);
    }
    zsc_end(&c);
    gw__inflate_free(z);
}

/* A frame with no content size, window 2^wlog, and one raw block "x" that does not end it. */
static void handmade_frame(unsigned wlog, unsigned char f[10])
{
    static const unsigned char magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
    memcpy(f, magic, 4);
    f[4] = 0x00;                              /* descriptor: no single segment, no checksum */
    f[5] = (unsigned char)((wlog - 10) << 3); /* window descriptor: exponent, no mantissa */
    f[6] = 1 << 3;                            /* block header: not last, raw, size 1 */
    f[7] = 0;
    f[8] = 0;
    f[9] = 'x';
}

TEST(zstd_window_is_bounded)
{
    struct gw_inflate *z;
    const char *out;
    size_t out_len;
    int done;
    unsigned char f[10];
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZSTD, 1024, 0, &z), 0);
    handmade_frame(27, f);
    ASSERT_EQ(gw__inflate_feed(z, f, sizeof(f), &out, &out_len, &done), 0);
    ASSERT_EQ(done, 1);
    ASSERT_SPAN_EQ(out, out_len, "x");
    ASSERT_EQ(gw__inflate_reset(z), 0);
    handmade_frame(28, f);
    ASSERT_EQ(gw__inflate_feed(z, f, sizeof(f), &out, &out_len, &done), SH_ECORRUPT);
    gw__inflate_free(z);
}

TEST(zstd_reset_then_new_stream)
{
    struct gw_inflate *z;
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZSTD, 1 << 20, 0, &z), 0);
    const char *out;
    size_t out_len;
    int done;
    for (int conn = 0; conn < 3; conn++) {
        struct zsc c;
        zsc_init(&c);
        for (unsigned i = 0; i < 3; i++) {
            char *pl = make_payload(3000 + i, i);
            struct bytes m = {0};
            zsc_payload(&c, pl, 3000 + i, &m);
            ASSERT_EQ(gw__inflate_feed(z, m.p, m.len, &out, &out_len, &done), 0);
            ASSERT_EQ(done, 1);
            ASSERT_EQ(out_len, 3000 + i);
            ASSERT(memcmp(out, pl, out_len) == 0);
            free(m.p);
            free(pl);
        }
        zsc_end(&c);
        ASSERT_EQ(gw__inflate_reset(z), 0);
    }
    gw__inflate_free(z);
}

/* ---- idle footprint ---- */

/* Bytes in use on the heap, or 0 where mallinfo2 does not see the real allocator. */
static size_t heap_in_use(void)
{
#ifdef __SANITIZE_ADDRESS__
    return 0; /* ASan replaces malloc; mallinfo2 would report glibc's idle arena */
#else
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#endif
}

/*
 * After a payload of several MB, the next small payload releases the big buffers: what the
 * context holds drops back near its idle size (the zlib window, zstd's window for its frame).
 */
static void check_shrinks(enum gw_compress kind)
{
    struct gw_inflate *z;
    struct zc c;
    struct zsc sc;
    ASSERT_EQ(gw__inflate_new(kind, 8 << 20, 8 << 20, &z), 0);
    if (kind == GW_COMPRESS_ZLIB)
        zc_init(&c);
    else
        zsc_init(&sc);
    size_t sizes[] = {100, 3 << 20, 100};
    struct bytes m[3] = {{0}};
    char *pl[3];
    for (int i = 0; i < 3; i++) {
        pl[i] = make_payload(sizes[i], (unsigned)i);
        if (kind == GW_COMPRESS_ZLIB)
            zc_payload(&c, pl[i], sizes[i], &m[i]);
        else
            zsc_payload(&sc, pl[i], sizes[i], &m[i]);
    }
    const char *out;
    size_t out_len;
    int done;
    size_t used[3];
    for (int i = 0; i < 3; i++) {
        /* the zlib payloads come split, so the pending input grows too */
        size_t half = kind == GW_COMPRESS_ZLIB ? m[i].len / 2 : 0;
        if (half) {
            ASSERT_EQ(gw__inflate_feed(z, m[i].p, half, &out, &out_len, &done), 0);
            ASSERT_EQ(done, 0);
        }
        ASSERT_EQ(gw__inflate_feed(z, m[i].p + half, m[i].len - half, &out, &out_len, &done), 0);
        ASSERT_EQ(done, 1);
        ASSERT_EQ(out_len, sizes[i]);
        ASSERT(memcmp(out, pl[i], sizes[i]) == 0);
        used[i] = heap_in_use();
    }
    if (used[0] && used[1] && used[2]) {
        ASSERT(used[1] > used[0] + (3u << 20));  /* the big payload is held while it is valid */
        ASSERT(used[2] < used[0] + (64u << 10)); /* and released by the next call */
    }
    for (int i = 0; i < 3; i++) {
        free(m[i].p);
        free(pl[i]);
    }
    if (kind == GW_COMPRESS_ZLIB)
        zc_end(&c);
    else
        zsc_end(&sc);
    gw__inflate_free(z);
}

#define HEAP_UNSEEN "ASan replaces malloc: mallinfo2 cannot see the heap"

TEST(zlib_big_buffers_are_released)
{
    if (!heap_in_use())
        SKIP(HEAP_UNSEEN);
    check_shrinks(GW_COMPRESS_ZLIB);
}

TEST(zstd_big_buffers_are_released)
{
    if (!heap_in_use())
        SKIP(HEAP_UNSEEN);
    check_shrinks(GW_COMPRESS_ZSTD);
}

/* ---- one message in parts (websocket fragments, reads of a big frame) ---- */

/* Feed message m in parts of `step` bytes (the last part ends it); 0 when it gives want. */
static int feed_parts(struct gw_inflate *z, const struct bytes *m, size_t step, const char *want,
                      size_t want_len)
{
    size_t at = 0;
    do {
        size_t n = m->len - at < step ? m->len - at : step;
        int last = at + n == m->len;
        const char *out = NULL;
        size_t out_len = 0;
        int done = -1;
        if (gw__inflate_feed_part(z, m->p + at, n, last, &out, &out_len, &done) != 0)
            return 1;
        if (done != last)
            return 2;
        if (done && (out_len != want_len || memcmp(out, want, want_len) != 0))
            return 3;
        at += n;
    } while (at < m->len);
    return 0;
}

TEST(every_kind_takes_a_message_in_parts)
{
    static const size_t steps[] = {1, 2, 3, 5, 4096, 65536};
    for (int kind = GW_COMPRESS_NONE; kind <= GW_COMPRESS_ZSTD; kind++) {
        for (size_t si = 0; si < sizeof(steps) / sizeof(steps[0]); si++) {
            struct gw_inflate *z;
            ASSERT_EQ(gw__inflate_new((enum gw_compress)kind, 1 << 20, 1 << 20, &z), 0);
            struct zc c;
            struct zsc zsc;
            zc_init(&c);
            zsc_init(&zsc);
            for (unsigned i = 0; i < 6; i++) { /* small, then 200 KB, in one stream */
                size_t n = i == 3 ? 200000 : 100 + (size_t)i * 777;
                char *pl = make_payload(n, i);
                struct bytes m = {0};
                if (kind == GW_COMPRESS_ZLIB)
                    zc_payload(&c, pl, n, &m);
                else if (kind == GW_COMPRESS_ZSTD)
                    zsc_payload(&zsc, pl, n, &m);
                else
                    bytes_put(&m, pl, n);
                int rc = feed_parts(z, &m, steps[si], pl, n);
                if (rc)
                    T_FAIL_("kind %d step %zu payload %u: %d", kind, steps[si], i, rc);
                free(m.p);
                free(pl);
            }
            zc_end(&c);
            zsc_end(&zsc);
            gw__inflate_free(z);
        }
    }
}

TEST(parts_count_against_the_input_cap)
{
    struct gw_inflate *z;
    struct zsc zsc;
    zsc_init(&zsc);
    char *pl = make_payload(50000, 1);
    struct bytes m = {0};
    zsc_payload(&zsc, pl, 50000, &m);
    ASSERT(m.len > 200);
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZSTD, 1 << 20, m.len - 1, &z), 0);
    const char *out;
    size_t out_len;
    int done;
    ASSERT_EQ(gw__inflate_feed_part(z, m.p, 100, 0, &out, &out_len, &done), 0);
    ASSERT_EQ(gw__inflate_feed_part(z, m.p + 100, m.len - 100, 1, &out, &out_len, &done),
              SH_ETOOBIG);
    ASSERT_EQ(done, 0);
    gw__inflate_free(z);
    /* no compression: a message in parts is gathered up to max_out */
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_NONE, 8, 0, &z), 0);
    ASSERT_EQ(gw__inflate_feed_part(z, "{\"op\":", 6, 0, &out, &out_len, &done), 0);
    ASSERT_EQ(gw__inflate_feed_part(z, "11}", 3, 1, &out, &out_len, &done), SH_ETOOBIG);
    gw__inflate_free(z);
    free(m.p);
    free(pl);
    zsc_end(&zsc);
}

/* ---- skip mode: an oversized payload costs only itself ---- */

/*
 * Feed msg in parts of at most step bytes (the last part ends the message); returns the rc of
 * the first failing feed, and the payload's output when it completed.
 */
static int feed_in_steps(struct gw_inflate *z, const struct bytes *m, size_t step, const char **out,
                         size_t *out_len, int *done)
{
    size_t at = 0;
    *done = 0;
    do {
        size_t n = m->len - at < step ? m->len - at : step;
        int rc = gw__inflate_feed_part(z, m->p + at, n, at + n == m->len, out, out_len, done);
        if (rc)
            return rc;
        at += n;
    } while (at < m->len);
    return 0;
}

/* small, big (over the cap), exact (at the cap), over1 (cap + 1), small again: one stream */
static void check_skip_keeps_sync(enum gw_compress kind, size_t step)
{
    enum { CAP = 4000, PREFIX = 64 };
    struct gw_inflate *z;
    ASSERT_EQ(gw__inflate_new(kind, CAP, CAP, &z), 0);
    ASSERT_EQ(gw__inflate_skip_oversized(z, PREFIX), 0);
    size_t sizes[] = {500, 50000, CAP, CAP + 1, 700, 200000, 300};
    struct zc zc;
    struct zsc zs;
    if (kind == GW_COMPRESS_ZLIB)
        zc_init(&zc);
    if (kind == GW_COMPRESS_ZSTD)
        zsc_init(&zs);
    for (unsigned i = 0; i < sizeof(sizes) / sizeof(*sizes); i++) {
        char *pl = make_payload(sizes[i], i);
        struct bytes m = {0};
        if (kind == GW_COMPRESS_ZLIB)
            zc_payload(&zc, pl, sizes[i], &m);
        else if (kind == GW_COMPRESS_ZSTD)
            zsc_payload(&zs, pl, sizes[i], &m);
        else
            bytes_put(&m, pl, sizes[i]);
        const char *out = NULL;
        size_t out_len = 0, size = 0;
        int done = 0;
        ASSERT_EQ(feed_in_steps(z, &m, step, &out, &out_len, &done), 0);
        ASSERT_EQ(done, 1);
        if (sizes[i] > CAP) {
            ASSERT_EQ(gw__inflate_skipped(z, &size), 1);
            ASSERT_EQ(size, sizes[i]);
            ASSERT_EQ(out_len, PREFIX);
            ASSERT(memcmp(out, pl, PREFIX) == 0); /* the envelope's front, for t and s */
        } else {
            ASSERT_EQ(gw__inflate_skipped(z, &size), 0);
            ASSERT_EQ(out_len, sizes[i]);
            ASSERT(memcmp(out, pl, sizes[i]) == 0); /* in sync after the skipped ones */
        }
        free(m.p);
        free(pl);
    }
    if (kind == GW_COMPRESS_ZLIB)
        zc_end(&zc);
    if (kind == GW_COMPRESS_ZSTD)
        zsc_end(&zs);
    gw__inflate_free(z);
}

TEST(skip_mode_drops_an_oversized_payload_and_stays_in_sync)
{
    enum gw_compress kinds[] = {GW_COMPRESS_ZLIB, GW_COMPRESS_ZSTD, GW_COMPRESS_NONE};
    size_t steps[] = {1 << 30, 4096, 7};
    for (int k = 0; k < 3; k++)
        for (int st = 0; st < 3; st++)
            check_skip_keeps_sync(kinds[k], steps[st]);
}

TEST(skip_mode_arguments)
{
    struct gw_inflate *z;
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZLIB, 100, 100, &z), 0);
    ASSERT_EQ(gw__inflate_skip_oversized(z, 0), SH_EINVAL);
    ASSERT_EQ(gw__inflate_skip_oversized(z, 101), SH_EINVAL);
    ASSERT_EQ(gw__inflate_skip_oversized(NULL, 10), SH_EINVAL);
    ASSERT_EQ(gw__inflate_skipped(z, NULL), 0);
    ASSERT_EQ(gw__inflate_skipped(NULL, NULL), 0);
    gw__inflate_free(z);
}

/* ---- none, arguments, names ---- */

TEST(none_passes_through)
{
    struct gw_inflate *z;
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_NONE, 16, 0, &z), 0);
    static const char msg[] = "{\"op\":11}";
    const char *out = NULL;
    size_t out_len = 0;
    int done = 0;
    ASSERT_EQ(gw__inflate_feed(z, msg, 9, &out, &out_len, &done), 0);
    ASSERT_EQ(done, 1);
    ASSERT(out == msg);
    ASSERT_EQ(out_len, 9);
    static const char big[] = "{\"op\":11,\"d\":null}";
    ASSERT_EQ(gw__inflate_feed(z, big, sizeof(big) - 1, &out, &out_len, &done), SH_ETOOBIG);
    gw__inflate_free(z);
}

TEST(bad_arguments_and_names)
{
    struct gw_inflate *z = NULL;
    ASSERT_EQ(gw__inflate_new((enum gw_compress)7, 1024, 1024, &z), SH_EINVAL);
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZLIB, 0, 1024, &z), SH_EINVAL);
    ASSERT_EQ(gw__inflate_new(GW_COMPRESS_ZLIB, 1024, 0, &z), SH_EINVAL);
    ASSERT(z == NULL);
    gw__inflate_free(NULL);
    ASSERT_STR_EQ(gw__inflate_query_name(GW_COMPRESS_ZLIB), "zlib-stream");
    ASSERT_STR_EQ(gw__inflate_query_name(GW_COMPRESS_ZSTD), "zstd-stream");
    ASSERT(gw__inflate_query_name(GW_COMPRESS_NONE) == NULL);
}

TEST_MAIN(RUN(every_kind_takes_a_message_in_parts); RUN(parts_count_against_the_input_cap);
          RUN(zlib_several_payloads_in_a_row); RUN(zlib_payload_split_across_messages);
          RUN(zlib_suffix_split_across_messages); RUN(zlib_one_byte_at_a_time);
          RUN(zlib_empty_message_and_empty_payload); RUN(zlib_corrupt_header_is_corrupt_and_sticky);
          RUN(zlib_need_dict_is_corrupt); RUN(zlib_stream_end_mid_connection_is_corrupt);
          RUN(zlib_mutated_streams_never_crash); RUN(zlib_output_cap); RUN(zlib_pending_input_cap);
          RUN(zlib_reset_then_new_stream); RUN(zlib_large_payloads_then_small);
          RUN(zstd_several_payloads_in_a_row); RUN(zstd_output_larger_than_internal_buffers);
          RUN(zstd_corrupt_and_output_cap); RUN(zstd_mutated_streams_never_crash);
          RUN(zstd_empty_messages_do_not_stall_the_stream); RUN(zstd_window_is_bounded);
          RUN(zstd_reset_then_new_stream); RUN(zlib_big_buffers_are_released);
          RUN(zstd_big_buffers_are_released); RUN(none_passes_through);
          RUN(bad_arguments_and_names); RUN(skip_mode_drops_an_oversized_payload_and_stays_in_sync);
          RUN(skip_mode_arguments);)
