/*
 * bridge/ledger.h: the acknowledgement ledger: which webhook acknowledged what of which shard,
 * what may be checkpointed, and when it is written (through a checkpoint store,
 * bridge/ckstore.h).
 *
 * Per webhook W and shard X run here (of the current session of X):
 *   pending    batches of W holding events of X, not yet acknowledged or dead-lettered
 *   last_acked highest s of X in W's settled batches (and everything of X before W's first
 *              pending batch: events W does not route count as acknowledged by it)
 *   floor      from the checkpoint: replayed events up to it are not sent to W again
 * W has acknowledged X up to `pending ? last_acked : max(seen, floor)`; the shard's checkpoint
 * `seq` (the floor RESUME starts from) is the least of those over every webhook. A new
 * session (READY) starts a new generation: s restarts at 1, and batches of the earlier
 * session are still delivered but no longer count.
 *
 * Shards are named by their local index (br_ledger_local), webhooks by their index in the
 * config. Pure bookkeeping plus the store calls; the delivery thread owns it.
 */
#ifndef SHARDHOOK_BR_LEDGER_H
#define SHARDHOOK_BR_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "bridge/batch.h"
#include "bridge/ckstore.h"
#include "lib/metrics.h"

#define BR_LEDGER_LAZY_MS 200   /* a change that follows no acknowledgement waits this long */
#define BR_LEDGER_FSYNC_MS 1000 /* checkpoints are made durable at most this often */

struct br_ledger;

/*
 * A ledger for the shards shard_ids[0..n) of total, and n_hooks webhooks with their keys
 * (the names checkpoints give them). store is borrowed. SH_EINVAL/SH_ENOMEM.
 */
int br_ledger_new(int total, const int *shard_ids, int n, const char *const *hook_keys,
                  size_t n_hooks, struct br_ckstore *store, struct br_ledger **out);
void br_ledger_free(struct br_ledger *l);
/* Counters for writes and failed writes (may be NULL). */
void br_ledger_set_metrics(struct br_ledger *l, struct sh_metric_series *writes,
                           struct sh_metric_series *errors);

/* The local index of shard, -1 when it is not run here. */
int br_ledger_local(const struct br_ledger *l, uint32_t shard);
/* The shard id of local index li. */
int br_ledger_shard_id(const struct br_ledger *l, int li);
/* The generation of shard li's current session: batch entries name it. */
uint32_t br_ledger_gen(const struct br_ledger *l, int li);

/*
 * At start: each shard's checkpoint from the store (one written for another shard count is
 * ignored with a warning). adopted[h] (may be NULL) is 1 when webhook h's spool, saved by the
 * last stop, is sent first: what it holds is not to come again from the replay either.
 */
void br_ledger_load(struct br_ledger *l, const int *adopted);
/* A batch adopted from a saved spool: pending for the session that resumes. */
void br_ledger_adopt(struct br_ledger *l, size_t hook, const struct br_batch *b);
/* The session shard_id RESUMEs, from its checkpoint: 0, or SH_ENOTFOUND (it identifies). */
int br_ledger_resume_info(const struct br_ledger *l, int shard_id, char *session_id, size_t sid_cap,
                          char *resume_url, size_t url_cap, uint64_t *seq);

/*
 * A READY: session_id ("" when unusable) starts a new session of shard li, s restarts at 1.
 * Returns 0 when it is the current session going on (a replayed READY), 1 otherwise.
 */
int br_ledger_session(struct br_ledger *l, int li, const char *session_id, const char *resume_url);
/* An event of shard li with sequence s (0: "s":null) reached delivery. */
void br_ledger_seen(struct br_ledger *l, int li, uint64_t s);
/* 1 when webhook hook is to get event s of shard li; 0: a replay of what it acknowledged. */
int br_ledger_wanted(const struct br_ledger *l, size_t hook, int li, uint64_t s);
/* Event s was added to a batch of hook; first: the batch's first event of the shard's session. */
void br_ledger_routed(struct br_ledger *l, size_t hook, int li, uint64_t s, int first);
/* b was acknowledged or its dead letter is on disk: it leaves hook's order. */
void br_ledger_settle(struct br_ledger *l, size_t hook, const struct br_batch *b);
/* A graceful stop saved hook's unsent batches in the spool (the checkpoint says up to where). */
void br_ledger_saved(struct br_ledger *l, size_t hook);

/* What hook has acknowledged of shard li, and the floor every webhook has (the checkpoint's seq).
 */
uint64_t br_ledger_acked(const struct br_ledger *l, size_t hook, int li);
uint64_t br_ledger_floor(const struct br_ledger *l, int li);

/* ---- cluster mode: shards that come and go ------------------------------------------------ */

/*
 * Every shard is held from br_ledger_new on (single-node mode). Cluster mode releases them all
 * after new and holds each when the cluster gives it to this process. A shard not held writes
 * no checkpoint and its batches no longer count (settle ignores them).
 */

/*
 * Hold shard li from cp (NULL, or a checkpoint without a session: the shard identifies): its
 * state is reset from cp: session, RESUME floor, each webhook's acknowledgement (by key; a
 * webhook cp does not name starts at cp's seq). `queued` is ignored (this process's spool does
 * not hold what cp's writer saved: those events come again from the replay). A new generation
 * starts: batches from before the hold (even of the same session) no longer count.
 */
void br_ledger_hold(struct br_ledger *l, int li, const struct br_checkpoint *cp);
/* Forget shard li: no more checkpoints, its pending batches no longer count. */
void br_ledger_release(struct br_ledger *l, int li);
int br_ledger_held(const struct br_ledger *l, int li);
/* Batches of shard li's current generation not yet settled, over every webhook. */
uint64_t br_ledger_pending(const struct br_ledger *l, int li);
/* Shard li's checkpoint as it stands (what flush would write), `queued` 0 for every webhook. */
void br_ledger_checkpoint(const struct br_ledger *l, int li, struct br_checkpoint *cp);

/*
 * Write what changed: at once after an acknowledgement or a new session, otherwise once
 * BR_LEDGER_LAZY_MS passed; durable every BR_LEDGER_FSYNC_MS. final (a graceful stop) writes
 * every shard's snapshot, durable, marked clean. A failed write is tried again later.
 */
void br_ledger_flush(struct br_ledger *l, uint64_t now, int final);
/* When the next flush is due (UINT64_MAX: nothing waits). */
uint64_t br_ledger_next_ms(const struct br_ledger *l);

#endif
