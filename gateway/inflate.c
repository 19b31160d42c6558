/*
 * gateway/inflate.c: transport decompression of one gateway connection (gateway/inflate.h).
 *
 * Owns the zlib or zstd context of one connection, its pending compressed input (zlib only)
 * and its output buffer. Knows nothing of sockets, JSON or shards.
 *
 * Memory: 1,000 idle shards per process must stay cheap, so nothing is allocated before the
 * first payload, the output buffer starts small and doubles up to max_out + 1 (the extra byte
 * tells "exactly max_out" from "more"), and a buffer that grew past SHRINK_ABOVE for one big
 * payload (a large GUILD_CREATE) is released at the start of the next call; it cannot be
 * released earlier, since the last payload stays valid until then. Pending input is released
 * as soon as it has been inflated. What an idle connection still holds is the library's own
 * history window: 32 KiB for zlib, the frame's window (at most 2^ZSTD_WINDOW_LOG_MAX) for zstd.
 *
 * Errors: the first SH_ETOOBIG, SH_ECORRUPT or SH_ENOMEM leaves the stream unusable; every later
 * feed returns that same code until gw_inflate_reset.
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
     * Release a bigger output or pending buffer between payloads: at most this much stays with
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
    size_t max_out;
    int failed;       /* first error; sticky until gw_inflate_reset */
    char *out;        /* output buffer, reused across payloads */
    size_t out_cap;   /* allocated size of out, at most out_limit */
    size_t out_limit; /* max_out + 1: filling it means the payload is over the cap */
    /* zlib-stream */
    z_stream zs;
    int zs_ready;
    int zs_header_done; /* the 2-byte zlib header was read; raw deflate follows */
    struct sh_buf pending; /* compressed input of the payload in progress, capped by max_in */
    /* zstd-stream */
    ZSTD_DStream *zd;
};

int gw_inflate_new(enum gw_compress kind, size_t max_out, size_t max_in, struct gw_inflate **out)
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
    sh_buf_init(&z->pending, max_in);
    *out = z;
    return SH_OK;
}

void gw_inflate_free(struct gw_inflate *z)
{
    if (!z)
        return;
    if (z->zs_ready)
        inflateEnd(&z->zs);
    ZSTD_freeDStream(z->zd); /* accepts NULL */
    sh_buf_free(&z->pending);
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

static void drop_pending(struct gw_inflate *z)
{
    if (z->pending.cap > SHRINK_ABOVE)
        sh_buf_free(&z->pending);
    else
        sh_buf_reset(&z->pending);
}

int gw_inflate_reset(struct gw_inflate *z)
{
    if (!z)
        return SH_EINVAL;
    z->failed = 0;
    shrink_out(z);
    drop_pending(z);
    z->zs_header_done = 0;
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

static int ends_with_suffix(const void *p, size_t len)
{
    return len >= sizeof(zlib_suffix) && memcmp((const char *)p + len - sizeof(zlib_suffix),
                                                zlib_suffix, sizeof(zlib_suffix)) == 0;
}

/*
 * Inflate in[0..len), which ends at a sync-flush point, into z->out. zlib counts in uInt, so
 * both sides go in slices of at most UINT_MAX bytes.
 */
static int inflate_all(struct gw_inflate *z, const unsigned char *in, size_t len, size_t *out_len)
{
    size_t produced = 0;
    for (;;) {
        if (produced == z->out_cap) {
            int rc = grow_out(z);
            if (rc)
                return rc;
        }
        uInt in_n = len > UINT_MAX ? UINT_MAX : (uInt)len;
        size_t room = z->out_cap - produced;
        uInt out_n = room > UINT_MAX ? UINT_MAX : (uInt)room;
        z->zs.next_in = (Bytef *)(uintptr_t)in; /* zlib does not write through next_in */
        z->zs.avail_in = in_n;
        z->zs.next_out = (Bytef *)z->out + produced;
        z->zs.avail_out = out_n;
        int zr = inflate(&z->zs, Z_SYNC_FLUSH);
        in += in_n - z->zs.avail_in;
        len -= in_n - z->zs.avail_in;
        produced += out_n - z->zs.avail_out;
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
             * ends the stream, and input ending in 00 00 FF FF cannot be a stream's end.
             */
            return SH_ECORRUPT;
        }
        /* Input used up with room to spare: inflate has flushed all it can. */
        if (len == 0 && z->zs.avail_out != 0)
            break;
    }
    *out_len = produced;
    return SH_OK;
}

static int feed_zlib(struct gw_inflate *z, const void *msg, size_t len, size_t *out_len, int *done)
{
    const unsigned char *in;
    size_t in_len;
    if (z->pending.len == 0 && ends_with_suffix(msg, len)) {
        /* fast path: one message is one whole payload, inflate it in place */
        if (len > z->pending.max)
            return SH_ETOOBIG;
        in = msg;
        in_len = len;
    } else {
        int rc = sh_buf_append(&z->pending, msg, len);
        if (rc)
            return rc;
        if (!ends_with_suffix(z->pending.data, z->pending.len)) {
            *done = 0;
            return SH_OK;
        }
        in = (const unsigned char *)z->pending.data;
        in_len = z->pending.len;
    }
    /*
     * The stream starts with a 2-byte zlib header and would end with an Adler-32 of everything
     * inflated, but Discord never ends it: the checksum never arrives, so computing it is pure
     * cost. The header is checked here and the rest inflated as raw deflate, which skips it.
     */
    if (!z->zs_header_done) {
        if (in_len < 2 || (in[0] & 0x0f) != 8 || (in[0] >> 4) > 7 || (in[1] & 0x20) ||
            ((unsigned)in[0] << 8 | in[1]) % 31 != 0) {
            drop_pending(z);
            return SH_ECORRUPT;
        }
        in += 2;
        in_len -= 2;
        z->zs_header_done = 1;
    }
    if (!z->zs_ready) {
        memset(&z->zs, 0, sizeof(z->zs));
        int zr = inflateInit2(&z->zs, -15); /* raw deflate, 32 KiB window */
        if (zr != Z_OK)
            return zr == Z_MEM_ERROR ? SH_ENOMEM : SH_EINVAL;
        z->zs_ready = 1;
    }
    int rc = inflate_all(z, in, in_len, out_len);
    drop_pending(z);
    if (rc)
        return rc;
    *done = 1;
    return SH_OK;
}

static int zstd_err(size_t r)
{
    return ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation ? SH_ENOMEM : SH_ECORRUPT;
}

/* Every message is one payload made of flushed blocks of a frame that never ends. */
static int feed_zstd(struct gw_inflate *z, const void *msg, size_t len, size_t *out_len, int *done)
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
    if (len == 0) {
        /*
         * An empty message is an empty payload. It must not reach the decoder: zstd fails
         * a stream after 16 calls in a row that make no progress.
         */
        if (z->out_cap == 0 && grow_out(z) != SH_OK)
            return SH_ENOMEM;
        *out_len = 0;
        *done = 1;
        return SH_OK;
    }
    ZSTD_inBuffer in = {msg, len, 0};
    size_t produced = 0;
    int stalls = 0;
    for (;;) {
        if (produced == z->out_cap) {
            int rc = grow_out(z);
            if (rc)
                return rc;
        }
        ZSTD_outBuffer ob = {z->out, z->out_cap, produced};
        size_t in_before = in.pos;
        size_t r = ZSTD_decompressStream(z->zd, &ob, &in);
        if (ZSTD_isError(r))
            return zstd_err(r);
        int progress = ob.pos != produced || in.pos != in_before;
        produced = ob.pos;
        /* Input used up and output not full: the decoder has flushed all it can. */
        if (in.pos == in.size && ob.pos < ob.size)
            break;
        /* zstd always moves while it has input and room; guard against a loop anyway */
        if (!progress && ob.pos < ob.size && ++stalls > 4)
            return SH_ECORRUPT;
    }
    *out_len = produced;
    *done = 1;
    return SH_OK;
}

int gw_inflate_feed(struct gw_inflate *z, const void *msg, size_t len, const char **out,
                    size_t *out_len, int *done)
{
    if (!z || !out || !out_len || !done || (!msg && len))
        return SH_EINVAL;
    *done = 0;
    if (z->failed)
        return z->failed;
    shrink_out(z); /* the previous payload is no longer in use */
    size_t n = 0;
    int rc;
    switch (z->kind) {
    case GW_COMPRESS_ZLIB:
        rc = feed_zlib(z, msg, len, &n, done);
        break;
    case GW_COMPRESS_ZSTD:
        rc = feed_zstd(z, msg, len, &n, done);
        break;
    default:
        if (len > z->max_out) {
            rc = SH_ETOOBIG;
            break;
        }
        *out = msg ? msg : ""; /* never NULL when done */
        *out_len = len;
        *done = 1;
        return SH_OK;
    }
    if (rc) {
        *done = 0;
        z->failed = rc;
        drop_pending(z);
        return rc;
    }
    if (*done) {
        *out = z->out;
        *out_len = n;
    }
    return SH_OK;
}

const char *gw_inflate_query_name(enum gw_compress kind)
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
