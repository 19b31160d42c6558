/*
 * gateway/inflate.c: transport decompression of one gateway connection (gateway/inflate.h).
 *
 * Owns the zlib or zstd context of one connection and its output buffer. Input is decompressed
 * as it arrives, part by part, and never stored: a multi-megabyte payload costs the gateway
 * thread a slice of work per read instead of one long stall when its last byte is in. Knows
 * nothing of sockets, JSON or shards.
 *
 * Memory: 1,000 idle shards per process must stay cheap, so nothing is allocated before the
 * first payload, the output buffer starts small and doubles up to max_out + 1 (the extra byte
 * tells "exactly max_out" from "more"), and a buffer that grew past SHRINK_ABOVE for one big
 * payload (a large GUILD_CREATE) is released when the next payload starts; it cannot be
 * released earlier, since the last payload stays valid until then. What an idle connection
 * still holds is the library's own
 * history window: 32 KiB for zlib, the frame's window (at most 2^ZSTD_WINDOW_LOG_MAX) for zstd.
 *
 * Errors: the first SH_ETOOBIG, SH_ECORRUPT or SH_ENOMEM leaves the stream unusable; every later
 * feed returns that same code until gw__inflate_reset.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "gateway/inflate.h"
#include "lib/buf.h"
#include "lib/errors.h"

enum {
    OUT_INITIAL = 16 * 1024, /* most payloads (ACKs, messages) fit without growing */
    /*
     * Release a bigger output buffer between payloads: at most this much stays with
     * an idle shard (64 MiB over 1,000 shards), while the buffer freed goes back to a heap that
     * the one gateway thread reuses for the next big payload of any shard.
     */
    SHRINK_ABOVE = 64 * 1024,
    /*
     * zstd window cap: the decoder allocates the window the frame header asks for, so this
     * bounds per-shard memory. 27 (128 MiB) is zstd's own default limit; a server asking for
     * more is refused (SH_ECORRUPT) rather than trusted.
     */
    ZSTD_WINDOW_LOG_MAX = 27,
};

static const unsigned char zlib_suffix[4] = {0x00, 0x00, 0xff, 0xff};

struct gw_inflate {
    enum gw_compress kind;
    size_t max_out, max_in;
    int failed;       /* first error; sticky until gw__inflate_reset */
    char *out;        /* output buffer, reused across payloads */
    size_t out_cap;   /* allocated size of out, at most out_limit */
    size_t out_limit; /* max_out + 1: filling it means the payload is over the cap */
    /* the payload in progress */
    int mid;         /* some of its input arrived */
    size_t produced; /* its output so far, in out */
    size_t in_count; /* its input so far, capped by max_in */
    /* skip mode: payloads over max_out are skipped, keeping skip_prefix bytes (0: off) */
    size_t skip_prefix;
    int skipping;     /* the payload in progress is over max_out */
    size_t skipped;   /* its output thrown away so far */
    int last_skipped; /* the last finished payload was skipped ... */
    size_t last_size; /* ... and had this many bytes */
    /* zlib-stream */
    z_stream zs;
    int zs_ready;
    unsigned char head[2]; /* the 2-byte zlib header, raw deflate after it */
    size_t head_len;
    unsigned char tail[4]; /* the last input bytes: 00 00 FF FF ends a payload */
    /* zstd-stream */
    ZSTD_DStream *zd;
};

int gw__inflate_new(enum gw_compress kind, size_t max_out, size_t max_in, struct gw_inflate **out)
{
    if (!out || max_out == 0)
        return SH_EINVAL;
    if (kind != GW_COMPRESS_NONE && kind != GW_COMPRESS_ZLIB && kind != GW_COMPRESS_ZSTD)
        return SH_EINVAL;
    if (kind == GW_COMPRESS_ZLIB && max_in == 0)
        return SH_EINVAL;
    struct gw_inflate *z = calloc(1, sizeof(*z));
    if (!z)
        return SH_ENOMEM;
    z->kind = kind;
    z->max_out = max_out;
    z->out_limit = max_out < SIZE_MAX ? max_out + 1 : SIZE_MAX;
    z->max_in = max_in ? max_in : SIZE_MAX;
    *out = z;
    return SH_OK;
}

void gw__inflate_free(struct gw_inflate *z)
{
    if (!z)
        return;
    if (z->zs_ready)
        inflateEnd(&z->zs);
    ZSTD_freeDStream(z->zd); /* accepts NULL */
    SH_FREE(z->out);
    free(z);
}

/* Drop buffers that grew for one big payload; small ones are kept for reuse. */
static void shrink_out(struct gw_inflate *z)
{
    if (z->out_cap > SHRINK_ABOVE) {
        SH_FREE(z->out);
        z->out_cap = 0;
    }
}

/* The next part starts a new payload. */
static void end_payload(struct gw_inflate *z)
{
    z->mid = 0;
    z->produced = 0;
    z->in_count = 0;
    z->skipping = 0;
    z->skipped = 0;
    memset(z->tail, 0xaa, sizeof(z->tail)); /* no suffix seen yet */
}

int gw__inflate_reset(struct gw_inflate *z)
{
    if (!z)
        return SH_EINVAL;
    z->failed = 0;
    z->last_skipped = 0;
    shrink_out(z);
    end_payload(z);
    z->head_len = 0;
    if (z->zs_ready && inflateReset(&z->zs) != Z_OK) {
        inflateEnd(&z->zs);
        z->zs_ready = 0; /* re-created lazily by the next payload */
    }
    if (z->zd && ZSTD_isError(ZSTD_DCtx_reset(z->zd, ZSTD_reset_session_only))) {
        ZSTD_freeDStream(z->zd);
        z->zd = NULL;
    }
    return SH_OK;
}

/* The output buffer is full: double it, up to out_limit. Leaves it as it was on failure. */
static int grow_out(struct gw_inflate *z)
{
    if (z->out_cap >= z->out_limit)
        return SH_ETOOBIG;
    size_t ncap = !z->out_cap ? OUT_INITIAL : z->out_cap > SIZE_MAX / 2 ? SIZE_MAX : z->out_cap * 2;
    if (ncap > z->out_limit)
        ncap = z->out_limit;
    char *p = realloc(z->out, ncap);
    if (!p)
        return SH_ENOMEM;
    z->out = p;
    z->out_cap = ncap;
    return SH_OK;
}

/*
 * The output buffer is full: grow it, or in skip mode, once it is at its limit, throw away what
 * follows the prefix and reuse that room (the payload is being skipped from now on).
 */
static int make_room(struct gw_inflate *z)
{
    if (!z->skip_prefix || z->out_cap < z->out_limit)
        return grow_out(z);
    size_t keep = z->skip_prefix < z->produced ? z->skip_prefix : z->produced;
    z->skipped += z->produced - keep;
    z->produced = keep;
    z->skipping = 1;
    return SH_OK;
}

/*
 * Inflate in[0..len) into z->out after what the payload produced so far, until the input is
 * used up and inflate has flushed all it can. zlib counts in uInt, so both sides go in slices
 * of at most UINT_MAX bytes.
 */
static int inflate_part(struct gw_inflate *z, const unsigned char *in, size_t len)
{
    for (;;) {
        if (z->produced == z->out_cap) {
            int rc = make_room(z);
            if (rc)
                return rc;
        }
        uInt in_n = len > UINT_MAX ? UINT_MAX : (uInt)len;
        size_t room = z->out_cap - z->produced;
        uInt out_n = room > UINT_MAX ? UINT_MAX : (uInt)room;
        z->zs.next_in = (Bytef *)(uintptr_t)in; /* zlib does not write through next_in */
        z->zs.avail_in = in_n;
        z->zs.next_out = (Bytef *)z->out + z->produced;
        z->zs.avail_out = out_n;
        int zr = inflate(&z->zs, Z_SYNC_FLUSH);
        in += in_n - z->zs.avail_in;
        len -= in_n - z->zs.avail_in;
        z->produced += out_n - z->zs.avail_out;
        switch (zr) {
        case Z_OK:
            break;
        case Z_BUF_ERROR:
            /*
             * No progress was possible. With output room and input left that cannot happen
             * on a sane stream; with no input left it means everything was already flushed;
             * with no output room the buffer grows on the next turn.
             */
            if (len != 0 && z->zs.avail_out != 0)
                return SH_ECORRUPT;
            break;
        case Z_MEM_ERROR:
            return SH_ENOMEM;
        default:
            /*
             * Z_DATA_ERROR, Z_NEED_DICT, Z_STREAM_ERROR, and Z_STREAM_END: the server never
             * ends the stream, so its end is as corrupt as anything else.
             */
            return SH_ECORRUPT;
        }
        /* Input used up with room to spare: inflate has flushed all it can. */
        if (len == 0 && z->zs.avail_out != 0)
            return SH_OK;
    }
}

/*
 * A payload ends where a message ends with 00 00 FF FF (it may span several messages).
 * The stream starts with a 2-byte zlib header and would end with an Adler-32 of everything
 * inflated, but Discord never ends it: the checksum never arrives, so computing it is pure
 * cost. The header is checked and the rest inflated as raw deflate, which skips it.
 */
static int feed_zlib(struct gw_inflate *z, const unsigned char *in, size_t len, int last, int *done)
{
    while (z->head_len < 2 && len) {
        z->head[z->head_len++] = *in++;
        len--;
        if (z->head_len == 2) {
            const unsigned char *h = z->head;
            if ((h[0] & 0x0f) != 8 || (h[0] >> 4) > 7 || (h[1] & 0x20) ||
                ((unsigned)h[0] << 8 | h[1]) % 31 != 0)
                return SH_ECORRUPT;
        }
    }
    if (!z->zs_ready) {
        memset(&z->zs, 0, sizeof(z->zs));
        int zr = inflateInit2(&z->zs, -15); /* raw deflate, 32 KiB window */
        if (zr != Z_OK)
            return zr == Z_MEM_ERROR ? SH_ENOMEM : SH_EINVAL;
        z->zs_ready = 1;
    }
    if (len) {
        int rc = inflate_part(z, in, len);
        if (rc)
            return rc;
        /* the last four bytes of input, across parts */
        size_t keep = len < sizeof(z->tail) ? sizeof(z->tail) - len : 0;
        memmove(z->tail, z->tail + sizeof(z->tail) - keep, keep);
        memcpy(z->tail + keep, in + len - (sizeof(z->tail) - keep), sizeof(z->tail) - keep);
    }
    *done = last && z->head_len == 2 && !memcmp(z->tail, zlib_suffix, sizeof(zlib_suffix));
    if (*done && z->produced == z->out_cap) {
        int rc = make_room(z); /* out is never NULL for a finished payload */
        if (rc)
            return rc;
    }
    return SH_OK;
}

static int zstd_err(size_t r)
{
    return ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation ? SH_ENOMEM : SH_ECORRUPT;
}

/* Every message is one payload made of flushed blocks of a frame that never ends. */
static int feed_zstd(struct gw_inflate *z, const void *part, size_t len, int last, int *done)
{
    if (!z->zd) {
        z->zd = ZSTD_createDStream();
        if (!z->zd)
            return SH_ENOMEM;
        size_t r = ZSTD_DCtx_setParameter(z->zd, ZSTD_d_windowLogMax, ZSTD_WINDOW_LOG_MAX);
        if (ZSTD_isError(r)) {
            ZSTD_freeDStream(z->zd);
            z->zd = NULL;
            return SH_EINVAL;
        }
    }
    /*
     * An empty part adds nothing and must not reach the decoder: zstd fails a stream after 16
     * calls in a row that make no progress. An empty message is an empty payload.
     */
    ZSTD_inBuffer in = {part, len, 0};
    int stalls = 0;
    while (len) {
        if (z->produced == z->out_cap) {
            int rc = make_room(z);
            if (rc)
                return rc;
        }
        ZSTD_outBuffer ob = {z->out, z->out_cap, z->produced};
        size_t in_before = in.pos;
        size_t r = ZSTD_decompressStream(z->zd, &ob, &in);
        if (ZSTD_isError(r))
            return zstd_err(r);
        int progress = ob.pos != z->produced || in.pos != in_before;
        z->produced = ob.pos;
        /* Input used up and output not full: the decoder has flushed all it can. */
        if (in.pos == in.size && ob.pos < ob.size)
            break;
        /* zstd always moves while it has input and room; guard against a loop anyway */
        if (!progress && ob.pos < ob.size && ++stalls > 4)
            return SH_ECORRUPT;
    }
    *done = last;
    if (last && z->produced == z->out_cap) {
        int rc = make_room(z); /* out is never NULL for a finished payload */
        if (rc)
            return rc;
    }
    return SH_OK;
}

/* No compression: a message in one part passes through; parts are gathered in out. */
static int feed_none(struct gw_inflate *z, const void *part, size_t len, int first, int last,
                     int *done, const char **whole)
{
    if (z->skip_prefix && (z->skipping || len > z->max_out - z->produced)) {
        /* over the cap: keep up to the prefix, count the rest */
        z->skipping = 1;
        size_t keep = z->produced < z->skip_prefix ? z->skip_prefix - z->produced : 0;
        if (keep > len)
            keep = len;
        while (z->out_cap - z->produced < keep + 1) {
            int rc = grow_out(z);
            if (rc)
                return rc;
        }
        if (keep)
            memcpy(z->out + z->produced, part, keep);
        z->produced += keep;
        z->skipped += len - keep;
        *done = last;
        return SH_OK;
    }
    if (first && last) {
        if (len > z->max_out)
            return SH_ETOOBIG;
        *whole = part ? part : ""; /* never NULL when done */
        *done = 1;
        return SH_OK;
    }
    while (z->out_cap - z->produced < len + 1) {
        int rc = grow_out(z);
        if (rc)
            return rc;
    }
    if (len)
        memcpy(z->out + z->produced, part, len);
    z->produced += len;
    *done = last;
    return SH_OK;
}

int gw__inflate_feed_part(struct gw_inflate *z, const void *part, size_t len, int last,
                          const char **out, size_t *out_len, int *done)
{
    if (!z || !out || !out_len || !done || (!part && len))
        return SH_EINVAL;
    *done = 0;
    if (z->failed)
        return z->failed;
    int first = !z->mid;
    if (first)
        shrink_out(z); /* the previous payload is no longer in use */
    z->mid = 1;
    const char *whole = NULL;
    int rc = !z->skip_prefix && len > z->max_in - z->in_count ? SH_ETOOBIG : SH_OK;
    z->in_count += len;
    if (!rc) {
        switch (z->kind) {
        case GW_COMPRESS_ZLIB:
            rc = feed_zlib(z, part, len, last, done);
            break;
        case GW_COMPRESS_ZSTD:
            rc = feed_zstd(z, part, len, last, done);
            break;
        default:
            rc = feed_none(z, part, len, first, last, done, &whole);
            break;
        }
    }
    if (!rc && !z->skip_prefix && z->produced > z->max_out)
        rc = SH_ETOOBIG;
    if (rc) {
        *done = 0;
        z->failed = rc;
        end_payload(z);
        return rc;
    }
    if (*done) {
        *out = whole ? whole : z->out;
        *out_len = whole ? len : z->produced;
        z->last_skipped = z->skipping;
        z->last_size = z->skipped + z->produced;
        if (z->skipping && *out_len > z->skip_prefix)
            *out_len = z->skip_prefix;
        end_payload(z);
    }
    return SH_OK;
}

int gw__inflate_skip_oversized(struct gw_inflate *z, size_t prefix)
{
    if (!z || prefix == 0 || prefix > z->max_out)
        return SH_EINVAL;
    z->skip_prefix = prefix;
    return SH_OK;
}

int gw__inflate_skipped(const struct gw_inflate *z, size_t *size)
{
    if (!z || !z->last_skipped)
        return 0;
    if (size)
        *size = z->last_size;
    return 1;
}

int gw__inflate_feed(struct gw_inflate *z, const void *msg, size_t len, const char **out,
                     size_t *out_len, int *done)
{
    return gw__inflate_feed_part(z, msg, len, 1, out, out_len, done);
}

const char *gw__inflate_query_name(enum gw_compress kind)
{
    switch (kind) {
    case GW_COMPRESS_ZLIB:
        return "zlib-stream";
    case GW_COMPRESS_ZSTD:
        return "zstd-stream";
    default:
        return NULL;
    }
}
