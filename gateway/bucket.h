/*
 * gateway/bucket.h: the arithmetic of identify buckets, without clocks, sockets or locks.
 * Internal to the gateway room (gw__ prefix): the local identify implementation
 * (gateway/identify.c) keeps one gw__bucket per bucket and calls these with its own times.
 *
 * Discord lets one shard of each bucket (shard_id % max_concurrency) IDENTIFY per interval
 * (5 s). A bucket remembers the earliest time the next queued IDENTIFY may be planned and when it
 * last sent one; a planned slot moves the next one a whole interval later, and an IDENTIFY is
 * sent no sooner than an interval plus a small margin after the previous one.
 */
#ifndef SHARDHOOK_GW_BUCKET_H
#define SHARDHOOK_GW_BUCKET_H

#include <stdint.h>

struct gw__bucket {
    uint64_t next_slot_ms;     /* the earliest time the next queued identify may be planned */
    uint64_t last_identify_ms; /* when this bucket last sent IDENTIFY (0: never) */
};

/* The bucket of shard_id: shard_id % max_concurrency (max_concurrency >= 1). */
int gw__bucket_index(int shard_id, int max_concurrency);

/*
 * Plan an IDENTIFY no earlier than not_before_ms: returns the slot (the later of not_before_ms and
 * the bucket's next free slot) and moves the next free slot interval_ms past it.
 */
uint64_t gw__bucket_slot(struct gw__bucket *b, uint64_t not_before_ms, uint64_t interval_ms);

/*
 * Margin on top of the interval: the other end stamps an IDENTIFY when it reads it, and both
 * ends' queues jitter. 2 % of the interval, at least 25 ms (100 ms on Discord's 5 s).
 */
uint64_t gw__bucket_margin(uint64_t interval_ms);

/* How long an IDENTIFY at now_ms must still wait: 0 when the bucket never sent one or is due. */
uint64_t gw__bucket_wait(const struct gw__bucket *b, uint64_t now_ms, uint64_t interval_ms);

/*
 * An IDENTIFY was queued (the bucket is reserved) or written at now_ms: it becomes the bucket's
 * last, and no slot is planned sooner than an interval after it.
 */
void gw__bucket_stamp(struct gw__bucket *b, uint64_t now_ms, uint64_t interval_ms);

#endif
