/*
 * tests/unit/test_ledger.c: the acknowledgement ledger driven directly: events routed and
 * filtered, batches settled out of order across lanes, retries, dead letters, a new session
 * restarting s at 1, "s":null events, checkpoints loaded and the floor that is written,
 * through an in-memory checkpoint store that records every call; a RESUME from below the
 * checkpoint (the entity cache's older snapshot) sends no webhook what it acknowledged.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/batch.h"
#include "bridge/ckstore.h"
#include "bridge/ledger.h"
#include "lib/errors.h"
#include "tests/unit/test.h"

/* ---- an in-memory store ------------------------------------------------------------------ */

struct mem_store {
    struct br_ckstore base;
    struct br_checkpoint saved[4]; /* by shard id: the newest written */
    int have[4];
    struct br_checkpoint loadable[4]; /* what load answers */
    int can_load[4];
    int appends, snapshots, syncs, unsynced;
    int fail; /* answer SH_EIO to every write */
};

static int mem_load(struct br_ckstore *st, int shard, struct br_checkpoint *out)
{
    struct mem_store *m = (struct mem_store *)st;
    if (!m->can_load[shard])
        return SH_ENOTFOUND;
    *out = m->loadable[shard];
    return SH_OK;
}

static int mem_append(struct br_ckstore *st, struct br_checkpoint *cp)
{
    struct mem_store *m = (struct mem_store *)st;
    if (m->fail)
        return SH_EIO;
    m->appends++;
    m->unsynced = 1;
    m->saved[cp->shard] = *cp;
    m->have[cp->shard] = 1;
    return SH_OK;
}

static int mem_snapshot(struct br_ckstore *st, struct br_checkpoint *cp, int sync)
{
    struct mem_store *m = (struct mem_store *)st;
    if (m->fail)
        return SH_EIO;
    m->snapshots++;
    m->syncs += sync;
    m->unsynced = 0;
    m->saved[cp->shard] = *cp;
    m->have[cp->shard] = 1;
    return SH_OK;
}

static int mem_unsynced(const struct br_ckstore *st, int shard)
{
    (void)shard;
    return ((const struct mem_store *)st)->unsynced;
}

static void mem_free(struct br_ckstore *st)
{
    (void)st;
}

static const struct br_ckstore_ops mem_ops = {mem_load, mem_append, mem_snapshot, mem_unsynced,
                                              mem_free};

static struct mem_store *mem_new(void)
{
    struct mem_store *m = calloc(1, sizeof(*m));
    m->base.ops = &mem_ops;
    m->base.where = "memory";
    return m;
}

/* ---- helpers ------------------------------------------------------------------------------ */

static const char *const keys[] = {"wA", "wB", "wC"};

/* A ledger over shards 0 and 1 of 2 and n webhooks, on store m. */
static struct br_ledger *ledger(struct mem_store *m, size_t n)
{
    static const int ids[] = {0, 1};
    struct br_ledger *l = NULL;
    if (br_ledger_new(2, ids, 2, keys, n, &m->base, &l))
        return NULL;
    return l;
}

/*
 * A batch of hook with events from..to of local shard li (every one routed: seen, wanted,
 * added). Returns the batch; the ledger learns of it as delivery would tell it.
 */
static struct br_batch *batch(struct br_ledger *l, size_t hook, int li, uint64_t from, uint64_t to)
{
    struct br_batch *b = NULL;
    if (br_batch_new(1 << 16, &b))
        return NULL;
    for (uint64_t s = from; s <= to; s++) {
        br_ledger_seen(l, li, s);
        int fresh = 0;
        if (br_batch_add(b, "{}", 2, (uint32_t)li, br_ledger_gen(l, li), s, 1, &fresh)) {
            br_batch_free(b);
            return NULL;
        }
        br_ledger_routed(l, hook, li, s, fresh);
    }
    br_batch_close(b);
    return b;
}

static void settle(struct br_ledger *l, size_t hook, struct br_batch *b)
{
    br_ledger_settle(l, hook, b);
    br_batch_free(b);
}

/* ---- routing and filters ------------------------------------------------------------------ */

TEST(unrouted_events_count_as_acknowledged)
{
    struct mem_store *m = mem_new();
    struct br_ledger *l = ledger(m, 2);
    ASSERT(l);
    br_ledger_session(l, 0, "sess", "wss://r");
    /* webhook 0 routes s 1..5, webhook 1 routes none of them (its `events` filter) */
    struct br_batch *b = batch(l, 0, 0, 1, 5);
    ASSERT(b);
    ASSERT_EQ(br_ledger_acked(l, 1, 0), 5); /* nothing pending: all it saw is settled */
    ASSERT_EQ(br_ledger_acked(l, 0, 0), 0);
    ASSERT_EQ(br_ledger_floor(l, 0), 0);
    settle(l, 0, b);
    ASSERT_EQ(br_ledger_acked(l, 0, 0), 5);
    ASSERT_EQ(br_ledger_floor(l, 0), 5);
    /* events 6..9 routed by neither webhook: both have them */
    for (uint64_t s = 6; s <= 9; s++)
        br_ledger_seen(l, 0, s);
    ASSERT_EQ(br_ledger_floor(l, 0), 9);
    br_ledger_free(l);
    free(m);
}

TEST(first_pending_batch_settles_what_came_before)
{
    struct mem_store *m = mem_new();
    struct br_ledger *l = ledger(m, 1);
    ASSERT(l);
    br_ledger_session(l, 0, "sess", "");
    for (uint64_t s = 1; s <= 4; s++) /* filtered out for the webhook */
        br_ledger_seen(l, 0, s);
    struct br_batch *b = batch(l, 0, 0, 5, 7);
    ASSERT(b);
    ASSERT_EQ(br_ledger_floor(l, 0), 4); /* 1..4 were never its to acknowledge */
    settle(l, 0, b);
    ASSERT_EQ(br_ledger_floor(l, 0), 7);
    br_ledger_free(l);
    free(m);
}

TEST(null_s_events_never_move_the_floor)
{
    struct mem_store *m = mem_new();
    struct br_ledger *l = ledger(m, 1);
    ASSERT(l);
    br_ledger_session(l, 0, "sess", "");
    struct br_batch *a = batch(l, 0, 0, 1, 3);
    settle(l, 0, a);
    ASSERT_EQ(br_ledger_floor(l, 0), 3);
    ASSERT_EQ(br_ledger_wanted(l, 0, 0, 0), 1); /* "s":null: nothing to compare, sent */
    struct br_batch *b = batch(l, 0, 0, 0, 0);  /* one event with s 0 */
    ASSERT(b);
    ASSERT_EQ(br_ledger_floor(l, 0), 3);
    settle(l, 0, b);
    ASSERT_EQ(br_ledger_floor(l, 0), 3);
    br_ledger_free(l);
    free(m);
}

/* ---- acknowledgements --------------------------------------------------------------------- */

TEST(out_of_order_acks_across_lanes)
{
    struct mem_store *m = mem_new();
    struct br_ledger *l = ledger(m, 1);
    ASSERT(l);
    br_ledger_session(l, 0, "s0", "");
    br_ledger_session(l, 1, "s1", "");
    struct br_batch *lane0 = batch(l, 0, 0, 1, 10); /* shard 0 */
    struct br_batch *lane1 = batch(l, 0, 1, 1, 20); /* shard 1 */
    ASSERT(lane0 && lane1);
    settle(l, 0, lane1); /* the later lane answers first */
    ASSERT_EQ(br_ledger_floor(l, 1), 20);
    ASSERT_EQ(br_ledger_floor(l, 0), 0);
    settle(l, 0, lane0);
    ASSERT_EQ(br_ledger_floor(l, 0), 10);
    ASSERT_EQ(br_ledger_floor(l, 1), 20);
    br_ledger_free(l);
    free(m);
}

TEST(a_late_answer_never_lowers_what_was_acknowledged)
{
    struct mem_store *m = mem_new();
    struct br_ledger *l = ledger(m, 1);
    ASSERT(l);
    br_ledger_session(l, 0, "sess", "");
    struct br_batch *a = batch(l, 0, 0, 1, 4);
    struct br_batch *b = batch(l, 0, 0, 5, 9);
    struct br_batch *c = batch(l, 0, 0, 10, 12);
    ASSERT(a && b && c);
    settle(l, 0, b); /* answers arrive in the other order */
    settle(l, 0, a);
    ASSERT_EQ(br_ledger_acked(l, 0, 0), 9); /* c is pending: 1..9 are settled */
    ASSERT_EQ(br_ledger_floor(l, 0), 9);
    settle(l, 0, c);
    ASSERT_EQ(br_ledger_floor(l, 0), 12);
    br_ledger_free(l);
    free(m);
}

TEST(floor_is_the_least_webhook)
{
    struct mem_store *m = mem_new();
    struct br_ledger *l = ledger(m, 3);
    ASSERT(l);
    br_ledger_session(l, 0, "sess", "");
    struct br_batch *a = batch(l, 0, 0, 1, 6);
    struct br_batch *b = batch(l, 1, 0, 7, 9);
    /* webhook 1 got 7..9 only; webhook 2 routes nothing */
    ASSERT(a && b);
    settle(l, 1, b);
    ASSERT_EQ(br_ledger_acked(l, 1, 0), 9);
    ASSERT_EQ(br_ledger_acked(l, 2, 0), 9);
    ASSERT_EQ(br_ledger_floor(l, 0), 0); /* webhook 0 still owes 1..6 */
    settle(l, 0, a);
    ASSERT_EQ(br_ledger_acked(l, 0, 0), 9); /* nothing pending: it has all it saw */
    ASSERT_EQ(br_ledger_floor(l, 0), 9);
    br_ledger_free(l);
    free(m);
}

TEST(retried_batches_hold_the_floor)
{
    struct mem_store *m = mem_new();
    struct br_ledger *l = ledger(m, 1);
    ASSERT(l);
    br_ledger_session(l, 0, "sess", "");
    struct br_batch *a = batch(l, 0, 0, 1, 3); /* in flight, answered 503: retried */
    struct br_batch *b = batch(l, 0, 0, 4, 6); /* queued behind it */
    ASSERT(a && b);
    ASSERT_EQ(br_ledger_floor(l, 0), 0);
    settle(l, 0, a); /* the retry was acknowledged */
    ASSERT_EQ(br_ledger_floor(l, 0), 3);
    struct br_batch *c = batch(l, 0, 0, 7, 8);
    ASSERT(c);
    ASSERT_EQ(br_ledger_floor(l, 0), 3); /* b is still pending: 7 and 8 do not count */
    settle(l, 0, b);
    ASSERT_EQ(br_ledger_floor(l, 0), 6);
    settle(l, 0, c);
    ASSERT_EQ(br_ledger_floor(l, 0), 8);
    br_ledger_free(l);
    free(m);
}

TEST(dead_letters_settle_like_acknowledgements)
{
    struct mem_store *m = mem_new();
    struct br_ledger *l = ledger(m, 2);
    ASSERT(l);
    br_ledger_session(l, 0, "sess", "");
    struct br_batch *ok = batch(l, 0, 0, 1, 4);
    struct br_batch *refused = batch(l, 1, 0, 1, 4);
    ASSERT(ok && refused);
    settle(l, 0, ok);
    /* webhook 1 answered 400: until its dead letter is on disk the batch is not settled */
    ASSERT_EQ(br_ledger_floor(l, 0), 0);
    settle(l, 1, refused); /* the dead letter is written */
    ASSERT_EQ(br_ledger_floor(l, 0), 4);
    br_ledger_free(l);
    free(m);
}

/* ---- sessions ----------------------------------------------------------------------------- */

TEST(new_session_restarts_s_at_one)
{
    struct mem_store *m = mem_new();
    struct br_ledger *l = ledger(m, 1);
    ASSERT(l);
    ASSERT_EQ(br_ledger_session(l, 0, "old", "wss://a"), 1);
    struct br_batch *done = batch(l, 0, 0, 1, 500);
    settle(l, 0, done);
    struct br_batch *old = batch(l, 0, 0, 501, 900); /* still pending at the new READY */
    ASSERT(old);
    uint32_t gen = br_ledger_gen(l, 0);
    ASSERT_EQ(br_ledger_session(l, 0, "old", "wss://a"), 0); /* a replayed READY: same session */
    ASSERT_EQ(br_ledger_gen(l, 0), gen);
    ASSERT_EQ(br_ledger_floor(l, 0), 500);
    ASSERT_EQ(br_ledger_session(l, 0, "new", "wss://b"), 1);
    ASSERT(br_ledger_gen(l, 0) != gen);
    ASSERT_EQ(br_ledger_floor(l, 0), 0);
    ASSERT_EQ(br_ledger_wanted(l, 0, 0, 1), 1); /* s 1 of the new session is not a replay */
    struct br_batch *b = batch(l, 0, 0, 1, 2);
    ASSERT(b);
    settle(l, 0, old); /* the old session's batch: delivered, but it no longer counts */
    ASSERT_EQ(br_ledger_floor(l, 0), 0);
    settle(l, 0, b);
    ASSERT_EQ(br_ledger_floor(l, 0), 2);
    char sid[128], url[512];
    uint64_t seq;
    ASSERT_EQ(br_ledger_resume_info(l, 0, sid, sizeof(sid), url, sizeof(url), &seq),
              SH_ENOTFOUND); /* not from a checkpoint */
    br_ledger_flush(l, 10000, 0);
    ASSERT(m->have[0]);
    ASSERT_STR_EQ(m->saved[0].session_id, "new");
    ASSERT_STR_EQ(m->saved[0].resume_url, "wss://b");
    ASSERT_EQ(m->saved[0].seq, 2);
    br_ledger_free(l);
    free(m);
}

TEST(unusable_session_writes_no_checkpoint)
{
    struct mem_store *m = mem_new();
    struct br_ledger *l = ledger(m, 1);
    ASSERT(l);
    ASSERT_EQ(br_ledger_session(l, 0, "", ""), 1);
    struct br_batch *b = batch(l, 0, 0, 1, 3);
    settle(l, 0, b);
    br_ledger_flush(l, 10000, 1);
    ASSERT_EQ(m->have[0], 0);
    ASSERT_EQ(m->appends + m->snapshots, 0);
    br_ledger_free(l);
    free(m);
}

/* ---- checkpoints -------------------------------------------------------------------------- */

static void loadable(struct mem_store *m, int shard, int total, uint64_t seq, uint64_t acked_b,
                     uint64_t queued_b)
{
    struct br_checkpoint *cp = &m->loadable[shard];
    memset(cp, 0, sizeof(*cp));
    cp->shard = shard;
    cp->total = total;
    snprintf(cp->session_id, sizeof(cp->session_id), "kept");
    snprintf(cp->resume_url, sizeof(cp->resume_url), "wss://resume");
    cp->seq = seq;
    cp->n_hooks = 2;
    snprintf(cp->hooks[0].key, sizeof(cp->hooks[0].key), "wA");
    cp->hooks[0].acked = seq;
    snprintf(cp->hooks[1].key, sizeof(cp->hooks[1].key), "wB");
    cp->hooks[1].acked = acked_b;
    cp->hooks[1].queued = queued_b;
    m->can_load[shard] = 1;
}

TEST(loaded_checkpoint_skips_acknowledged_replay)
{
    struct mem_store *m = mem_new();
    loadable(m, 0, 2, 10, 15, 0);
    loadable(m, 1, 4, 99, 99, 0); /* written for another shard count: ignored */
    struct br_ledger *l = ledger(m, 2);
    ASSERT(l);
    br_ledger_load(l, NULL);
    char sid[128], url[512];
    uint64_t seq = 0;
    ASSERT_EQ(br_ledger_resume_info(l, 0, sid, sizeof(sid), url, sizeof(url), &seq), 0);
    ASSERT_STR_EQ(sid, "kept");
    ASSERT_STR_EQ(url, "wss://resume");
    ASSERT_EQ(seq, 10);
    ASSERT_EQ(br_ledger_resume_info(l, 1, sid, sizeof(sid), url, sizeof(url), &seq), SH_ENOTFOUND);
    /* the replay from 10: webhook A has up to 10, webhook B up to 15 */
    ASSERT_EQ(br_ledger_wanted(l, 0, 0, 10), 0);
    ASSERT_EQ(br_ledger_wanted(l, 0, 0, 11), 1);
    ASSERT_EQ(br_ledger_wanted(l, 1, 0, 15), 0);
    ASSERT_EQ(br_ledger_wanted(l, 1, 0, 16), 1);
    ASSERT_EQ(br_ledger_floor(l, 0), 10);
    br_ledger_free(l);
    free(m);
}

TEST(saved_spool_is_not_replayed_and_stays_pending)
{
    struct mem_store *m = mem_new();
    loadable(m, 0, 2, 10, 10, 30); /* webhook B's spool holds up to 30 */
    struct br_ledger *l = ledger(m, 2);
    ASSERT(l);
    int adopted[] = {0, 1};
    br_ledger_load(l, adopted);
    ASSERT_EQ(br_ledger_wanted(l, 1, 0, 30), 0); /* comes from the spool, not the replay */
    ASSERT_EQ(br_ledger_wanted(l, 1, 0, 31), 1);
    ASSERT_EQ(br_ledger_wanted(l, 0, 0, 11), 1);
    /* the spool's batch of the resumed session is pending; one of another session is not */
    struct br_batch *saved = NULL, *other = NULL;
    ASSERT_EQ(br_batch_new(4096, &saved), 0);
    ASSERT_EQ(br_batch_add(saved, "{}", 2, 0, br_ledger_gen(l, 0), 30, 1, NULL), 0);
    ASSERT_EQ(br_batch_new(4096, &other), 0);
    ASSERT_EQ(br_batch_add(other, "{}", 2, 0, br_ledger_gen(l, 0) + 1, 40, 1, NULL), 0);
    br_ledger_adopt(l, 1, saved);
    br_ledger_adopt(l, 1, other);
    for (uint64_t s = 11; s <= 35; s++) /* the replay, routed by neither webhook */
        br_ledger_seen(l, 0, s);
    ASSERT_EQ(br_ledger_acked(l, 1, 0), 10);
    ASSERT_EQ(br_ledger_floor(l, 0), 10);
    settle(l, 1, saved);
    ASSERT_EQ(br_ledger_acked(l, 1, 0), 35);
    ASSERT_EQ(br_ledger_floor(l, 0), 35);
    br_batch_free(other);
    /* without the marker (a crash), the spool's range comes from the replay again */
    struct br_ledger *l2 = ledger(m, 2);
    ASSERT(l2);
    br_ledger_load(l2, NULL);
    ASSERT_EQ(br_ledger_wanted(l2, 1, 0, 11), 1);
    br_ledger_free(l2);
    br_ledger_free(l);
    free(m);
}

TEST(flush_writes_the_floor_append_then_snapshot)
{
    struct mem_store *m = mem_new();
    struct br_ledger *l = ledger(m, 2);
    ASSERT(l);
    br_ledger_session(l, 0, "sess", "wss://r");
    br_ledger_flush(l, 5000, 0); /* a new session is written at once, as a snapshot */
    ASSERT_EQ(m->snapshots, 1);
    ASSERT_EQ(m->saved[0].seq, 0);
    struct br_batch *a = batch(l, 0, 0, 1, 5);
    struct br_batch *b = batch(l, 1, 0, 3, 7);
    settle(l, 1, b);
    br_ledger_flush(l, 5001, 0);
    ASSERT_EQ(m->saved[0].seq, 0); /* webhook 0 owes 1..5 */
    ASSERT_EQ(m->saved[0].hooks[1].acked, 7);
    settle(l, 0, a);
    br_ledger_flush(l, 5002, 0); /* an acknowledgement: written at once, appended */
    ASSERT_EQ(m->saved[0].seq, 7);
    ASSERT_EQ(m->saved[0].hooks[0].acked, 7);
    ASSERT_EQ(m->saved[0].n_hooks, 2);
    ASSERT_STR_EQ(m->saved[0].hooks[1].key, "wB");
    ASSERT(m->appends >= 1);
    ASSERT_EQ(m->snapshots, 1);
    ASSERT_EQ(m->saved[0].clean, 0);
    ASSERT(br_ledger_next_ms(l) <= 5000 + BR_LEDGER_FSYNC_MS); /* the appends wait for a sync */
    br_ledger_flush(l, 5000 + BR_LEDGER_FSYNC_MS, 0);
    ASSERT_EQ(m->snapshots, 2); /* the sync tick folds them into a snapshot */
    ASSERT_EQ(m->syncs, 2);
    br_ledger_flush(l, 7000, 1);
    ASSERT_EQ(m->snapshots, 3);
    ASSERT_EQ(m->saved[0].clean, 1);
    ASSERT_EQ(m->saved[0].seq, 7);
    br_ledger_free(l);
    free(m);
}

TEST(unrouted_changes_wait_lazily_and_failures_retry)
{
    struct mem_store *m = mem_new();
    struct br_ledger *l = ledger(m, 1);
    ASSERT(l);
    br_ledger_session(l, 0, "sess", "");
    br_ledger_flush(l, 1000, 0);
    int writes = m->appends + m->snapshots;
    br_ledger_seen(l, 0, 1); /* no webhook routes it */
    br_ledger_flush(l, 1001, 0);
    ASSERT_EQ(m->appends + m->snapshots, writes); /* not urgent: waits */
    ASSERT_EQ(br_ledger_next_ms(l), 1000 + BR_LEDGER_LAZY_MS);
    br_ledger_flush(l, 1000 + BR_LEDGER_LAZY_MS, 0);
    ASSERT_EQ(m->appends + m->snapshots, writes + 1);
    ASSERT_EQ(m->saved[0].seq, 1);
    m->fail = 1;
    br_ledger_seen(l, 0, 2);
    br_ledger_flush(l, 2000, 0);
    ASSERT_EQ(m->saved[0].seq, 1);
    ASSERT(br_ledger_next_ms(l) != UINT64_MAX); /* still dirty: tried again */
    m->fail = 0;
    br_ledger_flush(l, 2000 + BR_LEDGER_LAZY_MS, 0);
    ASSERT_EQ(m->saved[0].seq, 2);
    br_ledger_free(l);
    free(m);
}

TEST(saved_webhook_records_what_its_spool_holds)
{
    struct mem_store *m = mem_new();
    struct br_ledger *l = ledger(m, 2);
    ASSERT(l);
    br_ledger_session(l, 0, "sess", "");
    struct br_batch *a = batch(l, 0, 0, 1, 8); /* unsent at the stop */
    struct br_batch *b = batch(l, 1, 0, 1, 8); /* unsent too, but its spool could not take it */
    ASSERT(a && b);
    br_ledger_saved(l, 0); /* the stop put webhook 0's batches in the spool */
    br_ledger_flush(l, 100, 1);
    ASSERT_EQ(m->saved[0].hooks[0].acked, 0);
    ASSERT_EQ(m->saved[0].hooks[0].queued, 8);
    ASSERT_EQ(m->saved[0].hooks[1].queued, 0); /* the replay has to bring them back */
    ASSERT_EQ(m->saved[0].seq, 0);
    br_batch_free(a);
    br_batch_free(b);
    br_ledger_free(l);
    free(m);
}

TEST(shards_not_run_here_are_not_counted)
{
    struct mem_store *m = mem_new();
    static const int ids[] = {3};
    struct br_ledger *l = NULL;
    ASSERT_EQ(br_ledger_new(8, ids, 1, keys, 1, &m->base, &l), 0);
    ASSERT_EQ(br_ledger_local(l, 3), 0);
    ASSERT_EQ(br_ledger_local(l, 2), -1);
    ASSERT_EQ(br_ledger_local(l, 8), -1);
    br_ledger_free(l);
    static const int dup[] = {1, 1};
    ASSERT_EQ(br_ledger_new(8, dup, 2, keys, 1, &m->base, &l), SH_EINVAL);
    free(m);
}

/* An s-less event (SHARDHOOK_SESSION_LOST, SHARDHOOK_MEMBERS) opening a webhook's first pending
   batch: what the webhook had (all it saw, none of it routed to it) stays acknowledged. */
TEST(a_null_s_first_batch_keeps_what_was_acknowledged)
{
    struct mem_store *m = mem_new();
    struct br_ledger *l = ledger(m, 2);
    ASSERT(l);
    br_ledger_session(l, 0, "sess", "");
    struct br_batch *a = batch(l, 1, 0, 1, 5); /* webhook 1 routes 1..5, webhook 0 none */
    settle(l, 1, a);
    ASSERT_EQ(br_ledger_floor(l, 0), 5);
    struct br_batch *b = batch(l, 0, 0, 0, 0); /* one "s":null event for webhook 0 */
    ASSERT(b);
    ASSERT_EQ(br_ledger_acked(l, 0, 0), 5);
    ASSERT_EQ(br_ledger_floor(l, 0), 5);
    struct br_batch *c = batch(l, 1, 0, 6, 7); /* webhook 0 still owes the s-less batch */
    settle(l, 1, c);
    ASSERT_EQ(br_ledger_floor(l, 0), 5);
    settle(l, 0, b);
    ASSERT_EQ(br_ledger_floor(l, 0), 7);
    br_ledger_free(l);
    free(m);
}

/* ---- cluster mode: holds and releases ----------------------------------------------------- */

static struct br_checkpoint held_cp(int shard, uint64_t seq, uint64_t acked_a, uint64_t queued_b)
{
    struct br_checkpoint cp;
    memset(&cp, 0, sizeof(cp));
    cp.shard = shard;
    cp.total = 2;
    snprintf(cp.session_id, sizeof(cp.session_id), "moved");
    snprintf(cp.resume_url, sizeof(cp.resume_url), "wss://other");
    cp.seq = seq;
    cp.n_hooks = 2;
    snprintf(cp.hooks[0].key, sizeof(cp.hooks[0].key), "wA");
    cp.hooks[0].acked = acked_a;
    snprintf(cp.hooks[1].key, sizeof(cp.hooks[1].key), "wB");
    cp.hooks[1].acked = seq;
    cp.hooks[1].queued = queued_b; /* another process's spool: not ours to trust */
    return cp;
}

/* A ledger over shards 0 and 1 with none held (cluster mode before the first hold). */
static struct br_ledger *cluster_ledger(struct mem_store *m)
{
    struct br_ledger *l = ledger(m, 2);
    if (l) {
        br_ledger_release(l, 0);
        br_ledger_release(l, 1);
    }
    return l;
}

TEST(a_shard_not_held_writes_nothing)
{
    struct mem_store *m = mem_new();
    struct br_ledger *l = cluster_ledger(m);
    ASSERT(l);
    ASSERT_EQ(br_ledger_held(l, 0), 0);
    br_ledger_session(l, 0, "sess", "wss://r"); /* what delivery never does; still nothing */
    br_ledger_seen(l, 0, 3);
    br_ledger_flush(l, 1000, 0);
    br_ledger_flush(l, 2000, 1);
    ASSERT_EQ(m->appends + m->snapshots, 0);
    br_ledger_free(l);
    free(m);
}

TEST(hold_resets_the_shard_from_the_checkpoint)
{
    struct mem_store *m = mem_new();
    struct br_ledger *l = cluster_ledger(m);
    ASSERT(l);
    struct br_checkpoint cp = held_cp(0, 10, 12, 30);
    br_ledger_hold(l, 0, &cp);
    ASSERT_EQ(br_ledger_held(l, 0), 1);
    ASSERT_EQ(br_ledger_held(l, 1), 0);
    ASSERT_EQ(br_ledger_wanted(l, 0, 0, 12), 0); /* webhook A had up to 12 */
    ASSERT_EQ(br_ledger_wanted(l, 0, 0, 13), 1);
    ASSERT_EQ(br_ledger_wanted(l, 1, 0, 11), 1); /* B's queued 30 was another spool's */
    ASSERT_EQ(br_ledger_floor(l, 0), 10);
    char sid[128], url[512];
    uint64_t seq = 0;
    ASSERT_EQ(br_ledger_resume_info(l, 0, sid, sizeof(sid), url, sizeof(url), &seq), 0);
    ASSERT_STR_EQ(sid, "moved");
    ASSERT_EQ(seq, 10);
    br_ledger_flush(l, 1000, 0); /* the hold's first write: the checkpoint it came with */
    ASSERT_EQ(m->snapshots, 1);
    ASSERT_STR_EQ(m->saved[0].session_id, "moved");
    ASSERT_EQ(m->saved[0].seq, 10);
    ASSERT_EQ(m->saved[0].hooks[0].acked, 12);
    ASSERT_EQ(m->saved[0].hooks[1].queued, 0);
    ASSERT_EQ(m->have[1], 0);
    /* the replay: 11..12 is A's already; B gets 11..14 */
    struct br_batch *b = batch(l, 1, 0, 11, 14);
    ASSERT(b);
    for (uint64_t s = 13; s <= 14; s++)
        br_ledger_routed(l, 0, 0, s, s == 13);
    ASSERT_EQ(br_ledger_pending(l, 0), 2);
    settle(l, 1, b);
    ASSERT_EQ(br_ledger_floor(l, 0), 12); /* A owes 13..14 */
    /* no session to resume, or a checkpoint for another shard count: identify */
    br_ledger_hold(l, 1, NULL);
    ASSERT_EQ(br_ledger_resume_info(l, 1, sid, sizeof(sid), url, sizeof(url), &seq), SH_ENOTFOUND);
    struct br_checkpoint other = held_cp(1, 5, 5, 0);
    other.total = 4;
    br_ledger_hold(l, 1, &other);
    ASSERT_EQ(br_ledger_resume_info(l, 1, sid, sizeof(sid), url, sizeof(url), &seq), SH_ENOTFOUND);
    ASSERT_EQ(br_ledger_wanted(l, 0, 1, 1), 1);
    br_ledger_flush(l, 5000, 1);
    ASSERT_EQ(m->have[1], 0); /* no session yet: nothing to write */
    br_ledger_free(l);
    free(m);
}

TEST(release_forgets_and_a_new_hold_ignores_earlier_batches)
{
    struct mem_store *m = mem_new();
    struct br_ledger *l = cluster_ledger(m);
    ASSERT(l);
    struct br_checkpoint cp = held_cp(0, 10, 10, 0);
    br_ledger_hold(l, 0, &cp);
    struct br_batch *early = batch(l, 0, 0, 11, 20); /* in flight when released */
    ASSERT(early);
    ASSERT_EQ(br_ledger_pending(l, 0), 1);
    br_ledger_flush(l, 1000, 0);
    int writes = m->appends + m->snapshots;
    br_ledger_release(l, 0);
    ASSERT_EQ(br_ledger_held(l, 0), 0);
    ASSERT_EQ(br_ledger_pending(l, 0), 0);
    settle(l, 0, early); /* its answer comes after the release: no checkpoint moves */
    br_ledger_flush(l, 2000, 1);
    ASSERT_EQ(m->appends + m->snapshots, writes);
    /* held again, same session, from the new owner's checkpoint: a batch from the first hold
       must not settle one of this hold */
    br_ledger_hold(l, 0, &cp);
    struct br_batch *again = batch(l, 0, 0, 11, 12);
    struct br_batch *stale = NULL;
    ASSERT_EQ(br_batch_new(4096, &stale), 0);
    uint32_t gen = br_ledger_gen(l, 0);
    br_ledger_release(l, 0);
    br_ledger_hold(l, 0, &cp);
    ASSERT(br_ledger_gen(l, 0) != gen);
    struct br_batch *now = batch(l, 0, 0, 11, 15);
    ASSERT(now);
    ASSERT_EQ(br_batch_add(stale, "{}", 2, 0, gen, 15, 1, NULL), 0);
    settle(l, 0, stale); /* of the hold before: ignored */
    settle(l, 0, again);
    ASSERT_EQ(br_ledger_pending(l, 0), 1);
    ASSERT_EQ(br_ledger_floor(l, 0), 10);
    settle(l, 0, now);
    ASSERT_EQ(br_ledger_floor(l, 0), 15);
    br_ledger_free(l);
    free(m);
}

TEST(the_checkpoint_handed_over_never_says_queued)
{
    struct mem_store *m = mem_new();
    struct br_ledger *l = ledger(m, 2);
    ASSERT(l);
    br_ledger_session(l, 0, "sess", "wss://r");
    struct br_batch *a = batch(l, 0, 0, 1, 8);
    struct br_batch *b = batch(l, 1, 0, 1, 4);
    ASSERT(a && b);
    settle(l, 1, b);
    br_ledger_saved(l, 0); /* as a graceful stop would */
    struct br_checkpoint cp;
    br_ledger_checkpoint(l, 0, &cp);
    ASSERT_EQ(cp.shard, 0);
    ASSERT_EQ(cp.total, 2);
    ASSERT_STR_EQ(cp.session_id, "sess");
    ASSERT_EQ(cp.seq, 0);
    ASSERT_EQ(cp.n_hooks, 2);
    ASSERT_EQ(cp.hooks[0].acked, 0);
    ASSERT_EQ(cp.hooks[0].queued, 0);
    ASSERT_EQ(cp.hooks[1].acked, 8); /* nothing pending: all it saw */
    ASSERT_EQ(cp.clean, 0);
    br_ledger_flush(l, 100, 1); /* the stop's own file still records the spool */
    ASSERT_EQ(m->saved[0].hooks[0].queued, 8);
    br_batch_free(a);
    br_ledger_free(l);
    free(m);
}

/*
 * The replay of from..to of local shard li as delivery routes it: each webhook gets the events
 * the ledger wants it to (one batch each, settled at the end); first[h] and n[h] say which.
 * Returns the lowest floor seen meanwhile.
 */
static uint64_t replay(struct br_ledger *l, int li, uint64_t from, uint64_t to, uint64_t first[2],
                       int n[2])
{
    struct br_batch *b[2] = {NULL, NULL};
    uint64_t low = UINT64_MAX;
    for (uint64_t s = from; s <= to; s++) {
        br_ledger_seen(l, li, s);
        for (size_t h = 0; h < 2; h++) {
            if (!br_ledger_wanted(l, h, li, s))
                continue;
            if (!n[h]++)
                first[h] = s;
            int fresh = 0;
            if (!b[h] && br_batch_new(1 << 16, &b[h]))
                return 0;
            if (br_batch_add(b[h], "{}", 2, (uint32_t)li, br_ledger_gen(l, li), s, 1, &fresh))
                return 0;
            br_ledger_routed(l, h, li, s, fresh);
        }
        uint64_t f = br_ledger_floor(l, li);
        low = f < low ? f : low;
    }
    for (size_t h = 0; h < 2; h++)
        if (b[h]) {
            br_batch_close(b[h]);
            settle(l, h, b[h]);
        }
    return low;
}

TEST(a_resume_from_below_the_checkpoint_sends_nothing_acknowledged_again)
{
    /* the cache's snapshot reflects s 4: the shard RESUMEs from 4, not from the checkpoint's 10 */
    struct mem_store *m = mem_new();
    loadable(m, 0, 2, 10, 15, 0); /* webhook A acknowledged up to 10, B up to 15 */
    struct br_ledger *l = ledger(m, 2);
    ASSERT(l);
    br_ledger_load(l, NULL);
    uint64_t first[2] = {0, 0};
    int n[2] = {0, 0};
    uint64_t low = replay(l, 0, 5, 20, first, n);
    ASSERT_EQ(first[0], 11);
    ASSERT_EQ(n[0], 10); /* 11..20 */
    ASSERT_EQ(first[1], 16);
    ASSERT_EQ(n[1], 5); /* 16..20 */
    ASSERT_EQ(low, 10); /* the replay below it never pulled the checkpoint back */
    ASSERT_EQ(br_ledger_floor(l, 0), 20);
    br_ledger_free(l);
    free(m);
    /* the same after a cluster hold: a takeover RESUMEs from the new owner's loaded snapshot */
    m = mem_new();
    l = cluster_ledger(m);
    ASSERT(l);
    struct br_checkpoint cp = held_cp(0, 10, 12, 0);
    br_ledger_hold(l, 0, &cp);
    memset(first, 0, sizeof(first));
    memset(n, 0, sizeof(n));
    low = replay(l, 0, 3, 14, first, n);
    ASSERT_EQ(first[0], 13); /* A had up to 12 */
    ASSERT_EQ(n[0], 2);
    ASSERT_EQ(first[1], 11); /* B up to the checkpoint's 10 */
    ASSERT_EQ(n[1], 4);
    ASSERT_EQ(low, 10);
    br_ledger_free(l);
    free(m);
}

TEST_MAIN(RUN(unrouted_events_count_as_acknowledged);
          RUN(first_pending_batch_settles_what_came_before);
          RUN(null_s_events_never_move_the_floor); RUN(out_of_order_acks_across_lanes);
          RUN(a_late_answer_never_lowers_what_was_acknowledged); RUN(floor_is_the_least_webhook);
          RUN(retried_batches_hold_the_floor); RUN(dead_letters_settle_like_acknowledgements);
          RUN(new_session_restarts_s_at_one); RUN(unusable_session_writes_no_checkpoint);
          RUN(loaded_checkpoint_skips_acknowledged_replay);
          RUN(saved_spool_is_not_replayed_and_stays_pending);
          RUN(flush_writes_the_floor_append_then_snapshot);
          RUN(unrouted_changes_wait_lazily_and_failures_retry);
          RUN(saved_webhook_records_what_its_spool_holds); RUN(shards_not_run_here_are_not_counted);
          RUN(a_null_s_first_batch_keeps_what_was_acknowledged);
          RUN(a_shard_not_held_writes_nothing); RUN(hold_resets_the_shard_from_the_checkpoint);
          RUN(release_forgets_and_a_new_hold_ignores_earlier_batches);
          RUN(the_checkpoint_handed_over_never_says_queued);
          RUN(a_resume_from_below_the_checkpoint_sends_nothing_acknowledged_again))
