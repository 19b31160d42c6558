/*
 * bridge/batch.h: one webhook batch: the request body `{"events":[...]}` built by appending
 * each event's already encoded bytes once, the shards and sequence ranges it holds (for
 * ordering and checkpoints), its webhook-id (stable across retries and restarts), and its
 * compact binary form for the disk spool.
 *
 * A batch's body never exceeds the cap given at creation (a webhook's max_batch_bytes, or
 * one oversize event's own size); appending past it fails and leaves the batch as it was.
 * The delivery fields at the end belong to bridge/deliver.c.
 */
#ifndef SHARDHOOK_BR_BATCH_H
#define SHARDHOOK_BR_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define BR_BATCH_HEAD "{\"events\":["
#define BR_BATCH_HEAD_LEN 11
#define BR_BATCH_TAIL_LEN 2 /* "]}" */
/* The body of a batch holding one event of len bytes. */
#define BR_BATCH_BODY_FOR(len) ((size_t)(len) + BR_BATCH_HEAD_LEN + BR_BATCH_TAIL_LEN)
#define BR_MSG_ID_MAX 40
/* A batch holds at most this many distinct (shard, session) entries. */
#define BR_BATCH_MAX_SHARDS 65536

/* The events of one shard (and one session of it: gen) in a batch, by sequence number. */
struct br_batch_shard {
    uint32_t shard;
    uint32_t gen;
    uint64_t min_s, max_s;
};

struct br_batch {
    struct br_batch *prev, *next; /* the owner's queue */
    char msg_id[BR_MSG_ID_MAX];   /* "msg_..." */
    struct sh_buf body;           /* {"events":[e1,e2,...  then "]}" once closed */
    uint32_t n_events;
    uint32_t n_shards, cap_shards;
    struct br_batch_shard *shards;
    uint64_t first_ms; /* monotonic ms the oldest event reached the gateway */
    int closed;
    /* delivery state (bridge/deliver.c) */
    uint64_t seq; /* position in its webhook's order */
    int state;
    unsigned attempts;
    uint64_t next_try_ms;
    uint64_t started_ms;
    void *req;
    int adopted; /* read back from a spool the last stop saved */
    /* refused, and its dead letter not yet on disk: the answer to write again */
    long dead_status;
    unsigned dead_tries;
    char *dead_resp; /* malloc'ed, freed with the batch */
    size_t dead_resp_len;
    int dead_resp_truncated;
};

/* A new, empty, open batch with a fresh webhook-id whose body may reach cap bytes. */
int br_batch_new(size_t cap, struct br_batch **out);
void br_batch_free(struct br_batch *b);

/* 1 when an event of len bytes still fits (room kept for the closing "]}"). */
int br_batch_fits(const struct br_batch *b, size_t len);

/*
 * Append one encoded event of `shard` (session generation gen) with sequence s. *new_entry
 * (may be NULL) is set to 1 when this is the batch's first event of (shard, gen). Fails with
 * SH_ETOOBIG (does not fit), SH_ENOMEM or SH_EINVAL (closed), leaving the batch as it was.
 */
int br_batch_add(struct br_batch *b, const char *ev, size_t len, uint32_t shard, uint32_t gen,
                 uint64_t s, uint64_t recv_ms, int *new_entry);

/* Finish the body with "]}" (always fits: br_batch_add keeps room). Idempotent. */
void br_batch_close(struct br_batch *b);

/*
 * Take the events of every shard drop(ud, shard) names out of b (open or closed), keeping the
 * others in their order, their entries and b's webhook-id. *removed: how many went; a batch
 * left with no event has n_events 0 (the caller frees it). Relies on each event starting with
 * {"shard":[<id>, (gateway/sink.h's encoding). SH_EPARSE (a body it cannot read) or SH_ENOMEM
 * leave b as it was.
 */
int br_batch_drop_shards(struct br_batch *b, int (*drop)(void *ud, uint32_t shard), void *ud,
                         uint32_t *removed);

/*
 * The spool's record metadata: msg_id, counts and shard entries, appended to out.
 * br_batch_decode() rebuilds a closed batch from that metadata and the body.
 * Decode fails with SH_ECORRUPT on anything malformed.
 */
int br_batch_encode_meta(const struct br_batch *b, struct sh_buf *out);
/* Only the metadata into *b (msg_id, n_events, first_ms, shards; no body); free with
 * br_batch_free() or free(b->shards). */
int br_batch_decode_meta(const char *meta, size_t meta_len, struct br_batch *b);
int br_batch_decode(const char *meta, size_t meta_len, const char *body, size_t body_len,
                    struct br_batch **out);

#endif
