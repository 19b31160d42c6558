/*
 * gateway/inflate.h: transport decompression for one gateway connection. Internal to the
 * gateway room (gw__ prefix); other rooms use gateway/gateway.h.
 *
 * zlib-stream: one inflate context for the whole connection. Its 2-byte zlib header is checked,
 * the rest inflated as raw deflate: the stream never ends, so its Adler-32 never arrives and is
 * not computed. A payload ends where a message ends with 00 00 FF FF (one or several messages).
 * zstd-stream: one decompression context for the whole connection; every message
 * is one whole payload (the server flushes but never ends the frame).
 * none: messages pass through unchanged.
 *
 * Input may come in parts (websocket fragments, or reads of one big frame) and is decompressed
 * as it arrives, never stored. The output buffer is owned by the context and reused; a payload
 * larger than max_out, or whose compressed input exceeds max_in, is SH_ETOOBIG; corrupt input
 * is SH_ECORRUPT. After either error (or SH_ENOMEM) the stream is unusable and every later feed
 * returns the same code: the caller drops the connection and calls gw__inflate_reset before the
 * next one.
 * Skip mode (gw__inflate_skip_oversized): a payload over max_out is not an error. Its input is
 * still decompressed, so the stream stays in sync (the zlib window, the zstd frame), but its
 * output past a short prefix is thrown away; when it ends, the feed reports it done with only
 * that prefix, and gw__inflate_skipped() says it was cut and how big it was. max_in is not
 * enforced then: input is never stored, and the output cap bounds the memory.
 * Idle cost: nothing is allocated before the first payload, and buffers grown for
 * one big payload are released when the next one starts or by gw__inflate_reset.
 */
#ifndef SHARDHOOK_GW_INFLATE_H
#define SHARDHOOK_GW_INFLATE_H

#include <stddef.h>

enum gw_compress { GW_COMPRESS_NONE = 0, GW_COMPRESS_ZLIB, GW_COMPRESS_ZSTD };

struct gw_inflate; /* opaque */

/*
 * max_out: cap on one decompressed payload (> 0). max_in: cap on the compressed input of one
 * payload, whether it came in one message or several (> 0 for zlib; 0 means no cap for the
 * others). Returns 0, SH_EINVAL or SH_ENOMEM.
 */
int gw__inflate_new(enum gw_compress kind, size_t max_out, size_t max_in, struct gw_inflate **out);
void gw__inflate_free(struct gw_inflate *z);
/* Forget the stream (new connection); keeps the contexts and small buffers. */
int gw__inflate_reset(struct gw_inflate *z);

/*
 * Feed the next part of a WebSocket message; last = 1 for the part that ends the message.
 * When a payload is complete (only ever on a last part), *out and *out_len point to it (valid
 * until the next call) and *done is 1; otherwise *done is 0. For none, a message in one part
 * is passed through as *out. Returns 0, SH_ETOOBIG, SH_ECORRUPT, SH_ENOMEM, or SH_EINVAL for
 * NULL arguments.
 */
int gw__inflate_feed_part(struct gw_inflate *z, const void *part, size_t len, int last,
                          const char **out, size_t *out_len, int *done);

/*
 * Skip mode: payloads over max_out are skipped instead of failing the stream; the first
 * min(prefix, its size) bytes of a skipped payload are kept (prefix > 0, at most max_out).
 * Returns 0 or SH_EINVAL.
 */
int gw__inflate_skip_oversized(struct gw_inflate *z, size_t prefix);

/*
 * After a feed that completed a payload (*done = 1): 1 when that payload was over max_out and
 * skipped (*out then held only its prefix), with its full decompressed size in *size (may be
 * NULL); 0 otherwise.
 */
int gw__inflate_skipped(const struct gw_inflate *z, size_t *size);

/* gw__inflate_feed_part of one complete WebSocket message. */
int gw__inflate_feed(struct gw_inflate *z, const void *msg, size_t len, const char **out,
                     size_t *out_len, int *done);

/* Query-string value for a kind: "zlib-stream", "zstd-stream" or NULL for none. */
const char *gw__inflate_query_name(enum gw_compress kind);

#endif
