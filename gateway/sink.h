/*
 * gateway/sink.h: how events leave the gateway room.
 *
 * The gateway encodes each dispatch once, in the webhook envelope of docs/delivery.md
 * (`{"shard":[id,total],"op":0,"t":"...","s":N,"key":"...","d":<d as received>}`; `"s":null`
 * for a dispatch that came without a sequence number; "key" is the idempotency key of struct
 * gw_key below), appends it
 * to a chunk, and hands the whole chunk to the sink once per service pass: one
 * hand-off per pass, not per event. The sink takes ownership of the chunk and may
 * keep it on another thread; it frees it with gw_chunk_free(). The gateway knows
 * nothing of what the sink does (routing, batching, delivery live in bridge/).
 *
 * A READY starts a session: the gateway reads it once (session_id, resume_gateway_url) and
 * hands what the sink needs with the event (struct gw_session), so the sink never parses
 * Discord's READY; the event's s is the session's first sequence number.
 */
#ifndef SHARDHOOK_GW_SINK_H
#define SHARDHOOK_GW_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/queue.h"

struct gw_event {
    uint32_t off, len; /* the encoded event, in chunk->data */
    uint32_t t_off;    /* the event name (no quotes), in chunk->data */
    uint16_t t_len;
    uint16_t shard;
    uint64_t s;       /* 0: the dispatch had no s (Discord numbers from 1) */
    uint64_t recv_ms; /* monotonic ms when the payload was complete */
};

/* The session a READY opened, as the gateway read it. */
struct gw_session {
    uint32_t event;       /* index in chunk->ev of the READY it came with */
    char session_id[128]; /* "" when the READY had no usable session_id */
    char resume_url[512]; /* resume_gateway_url, "" when absent */
};

struct gw_chunk {
    struct sh_qnode node; /* free for the sink's own queue */
    struct sh_buf data;
    struct gw_event *ev;
    size_t n, cap;
    struct gw_session *sessions; /* a few, by event index; NULL when none */
    size_t n_sessions;
};

struct gw_sink {
    /* Called on the gateway thread; takes ownership of chunk (never NULL, n >= 1). */
    void (*push)(void *ud, struct gw_chunk *chunk);
    void *ud;
};

/*
 * What an event's idempotency key is made of: "<shard>:<session_id>:<s>" for an event with s,
 * "<shard>:<session_id>:<last_s>.<n>" for one without (n counts the s-less events since last_s,
 * from 1); session_id NULL or "" is written "-". Unique per (shard, session, s) and the same
 * bytes whenever the same event is delivered again (a retry, a replay after RESUME).
 */
/* Session id bytes a key carries at most (the gateway's session ids are shorter). */
#define GW_KEY_SESSION_MAX 127

struct gw_key {
    const char *session_id;
    uint64_t last_s;
    uint64_t n;
};

/* A new empty chunk whose data may grow to max_bytes. NULL when out of memory. */
struct gw_chunk *gw_chunk_new(size_t max_bytes);
void gw_chunk_free(struct gw_chunk *c);

/*
 * Append one dispatch. t/t_len is the event name, d/d_len the raw JSON of d, s its sequence
 * number or 0 when it had none (encoded as "s":null), key what its "key" is made of (NULL: no
 * session, last_s 0, n 0). Fails with SH_ETOOBIG or SH_ENOMEM, leaving the chunk as it was.
 */
int gw_chunk_append(struct gw_chunk *c, int shard, int total, const char *t, size_t t_len,
                    uint64_t s, const struct gw_key *key, const char *d, size_t d_len,
                    uint64_t recv_ms);

/*
 * Attach the session a READY opened to the event appended last (copied). Fails with SH_EINVAL
 * (no event) or SH_ENOMEM, leaving the chunk as it was.
 */
int gw_chunk_set_session(struct gw_chunk *c, const struct gw_session *session);
/* The session that came with event i, or NULL (most events). */
const struct gw_session *gw_chunk_session(const struct gw_chunk *c, size_t i);

#endif
