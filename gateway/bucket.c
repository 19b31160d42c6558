/*
 * gateway/bucket.c: the identify bucket arithmetic of gateway/bucket.h (slot, wait, stamp,
 * margin). Pure functions of their arguments: no clock, no state of its own.
 */
#include "gateway/bucket.h"

int gw__bucket_index(int shard_id, int max_concurrency)
{
    return shard_id % max_concurrency;
}

uint64_t gw__bucket_slot(struct gw__bucket *b, uint64_t not_before_ms, uint64_t interval_ms)
{
    uint64_t slot = not_before_ms > b->next_slot_ms ? not_before_ms : b->next_slot_ms;
    b->next_slot_ms = slot + interval_ms;
    return slot;
}

uint64_t gw__bucket_margin(uint64_t interval_ms)
{
    uint64_t m = interval_ms / 50;
    return m < 25 ? 25 : m;
}

uint64_t gw__bucket_wait(const struct gw__bucket *b, uint64_t now_ms, uint64_t interval_ms)
{
    if (!b->last_identify_ms)
        return 0;
    uint64_t due = b->last_identify_ms + interval_ms + gw__bucket_margin(interval_ms);
    return due > now_ms ? due - now_ms : 0;
}

void gw__bucket_stamp(struct gw__bucket *b, uint64_t now_ms, uint64_t interval_ms)
{
    b->last_identify_ms = now_ms;
    if (b->next_slot_ms < now_ms + interval_ms)
        b->next_slot_ms = now_ms + interval_ms;
}
