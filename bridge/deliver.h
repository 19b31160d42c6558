/*
 * bridge/deliver.h: the delivery thread: everything that happens to an event after the gateway.
 *
 * The gateway hands chunks of encoded events to the sink below (one hand-off per service
 * pass). The delivery thread routes each event (disable_events, then every webhook whose
 * `events` patterns match), appends it to an open batch of that webhook, and POSTs closed
 * batches with libcurl multi, signed with Standard Webhooks headers. Per webhook:
 *
 * - Lanes: a webhook has min(max_in_flight, shards run here) open batches; the i-th shard run
 *   here goes to lane i % lanes, so concurrent requests never share a shard. A batch closes at
 *   max_batch_events, max_batch_bytes or max_batch_delay_ms after its first event.
 * - Order: closed batches queue in order; a batch starts only when no earlier unacknowledged
 *   batch of the webhook holds one of its shards, so each shard's events arrive in `s` order.
 * - Retries: connection errors, timeouts, 408, 429 and 5xx are retried with full-jitter
 *   backoff (retry_base_ms, retry_max_ms) or after Retry-After (never under half the backoff
 *   ceiling, at most retry_after_max_ms); other statuses dead-letter the batch into
 *   state_dir/dead-letter/ and delivery carries on. A batch is settled only once its dead
 *   letter is on disk; until then it stays, and the write is retried.
 * - Memory: closed batches past max_memory_bytes spill to state_dir/spool/<key>/ and come back
 *   in order; past a webhook's share of the spool, when_full "pause" asks the gateway to stop
 *   reading, "dead_letter" dead-letters its oldest batches; past spool_max_bytes (all
 *   webhooks together) the gateway stops reading too.
 * - Checkpoints: per shard, the checkpoint store (state_dir/checkpoints/shard-<id>.json by
 *   default) holds the session and the highest s every webhook acknowledged (bridge/ledger.h
 *   keeps that account); the next start RESUMEs from it, and replayed events a webhook
 *   already acknowledged are not sent to it again. A graceful stop saves unsent
 *   batches in the spool and marks it clean (state_dir/spool/CLEAN); only a clean spool is
 *   adopted at the next start, a crash's is set aside for Discord's replay to cover.
 *
 * docs/delivery.md describes the behaviour for users. Everything here runs on the delivery
 * thread except the functions marked otherwise.
 */
#ifndef SHARDHOOK_BR_DELIVER_H
#define SHARDHOOK_BR_DELIVER_H

#include <stdint.h>

#include "bridge/actions.h"
#include "bridge/ckstore.h"
#include "bridge/deadletter.h"
#include "config/config.h"
#include "gateway/sink.h"

struct br_delivery;

/* Check and create state_dir and its folders. Fails with SH_EIO (naming the folder in the log). */
int br_delivery_new(const struct cfg_config *cfg, struct br_delivery **out);

/* The sink to hand to the gateway; its push is thread-safe and never blocks for long. */
struct gw_sink br_delivery_sink(struct br_delivery *d);

/*
 * Before prepare: where checkpoints are kept (bridge/ckstore.h; main() fills it: the files
 * under state_dir, or Redis in cluster mode). d owns store from here on. Without one, prepare
 * uses the files under state_dir.
 */
void br_delivery_use_ckstore(struct br_delivery *d, struct br_ckstore *store);

/*
 * Before start: the bot's shard count and the shards this process runs. Loads their
 * checkpoints (a checkpoint written for another shard count is ignored with a warning) and
 * sets the spool up. Fails with SH_ENOMEM/SH_EIO/SH_EINVAL.
 */
int br_delivery_prepare(struct br_delivery *d, int total, const int *shard_ids, int n);

/*
 * After prepare: the session shard_id should RESUME (from its checkpoint). Returns 0 and fills
 * the buffers, or SH_ENOTFOUND when the shard has to identify.
 */
int br_delivery_resume_info(const struct br_delivery *d, int shard_id, char *session_id,
                            size_t sid_cap, char *resume_url, size_t url_cap, uint64_t *seq);

/*
 * Flow control: fn(ud, 1) asks the gateway to stop reading (the spool is full, or batches
 * pile up), fn(ud, 0) to read again. Called on the delivery thread, only on changes.
 */
void br_delivery_set_flow(struct br_delivery *d, void (*fn)(void *ud, int paused), void *ud);

/*
 * After routing, hand each chunk to fn (which takes ownership: the entity cache's
 * ca_cache_push) instead of freeing it. Set before br_delivery_start; called on the delivery
 * thread; fn must never block.
 */
void br_delivery_set_chunk_consumer(struct br_delivery *d,
                                    void (*fn)(void *ud, struct gw_chunk *chunk), void *ud);

int br_delivery_start(struct br_delivery *d);

/*
 * Any thread, once: close open batches, deliver what is queued for at most timeout_ms more,
 * save what is left in the spool (sent first by the next start), write checkpoints (fsync'ed)
 * and end the thread. Returns the number of events neither delivered nor saved (0 when every
 * one was acknowledged, dead-lettered or saved); those come back through Discord's replay.
 */
uint64_t br_delivery_stop(struct br_delivery *d, int timeout_ms);

/*
 * Any thread: how the actions of webhooks with "actions": true run (bridge/actions.h; main()
 * fills it on top of the control API). Until it is set, such actions count as refused.
 */
void br_delivery_set_actions(struct br_delivery *d, const struct br_action_ops *ops);

/*
 * Any thread: an event named t with d (JSON text, len bytes) and "s": null, for shard, to
 * webhook `webhook` only (a members action's answer, SHARDHOOK_MEMBERS). 0, SH_EINVAL (no such
 * webhook or shard), SH_ENOMEM or SH_ETOOBIG.
 */
int br_delivery_action_event(struct br_delivery *d, size_t webhook, int shard, const char *t,
                             const char *dj, size_t len);

void br_delivery_free(struct br_delivery *d);

/* ---- cluster mode: shards that come and go (any thread; applied on the delivery thread) -- */

/*
 * In cluster mode (cfg->cluster) prepare() is given every shard this process may hold, and none
 * is held until hold(): until then the ledger writes no checkpoint for it and its events are
 * dropped (logged). Commands go through delivery's own queue and are applied before the event
 * chunks taken with them, so a hold() made before gw_gateway_hold() is in place before the
 * shard's first event. Each call returns once queued: SH_EINVAL when shard is not one of
 * prepare()'s (or before prepare), SH_ENOMEM, SH_ECLOSED once br_delivery_stop began.
 *
 * What a released shard leaves: its events in batches not in a request are taken out (a batch
 * of several shards is rebuilt without them, same webhook-id, the other shards' events in their
 * order; a batch left empty goes), and batches read back from the spool lose them before they
 * are sent. Batches the last stop saved are sent as they are (their events come as duplicates
 * when the shard is held elsewhere: the event key tells them apart); checkpoints in cluster mode
 * never count a spool's events as `queued`, so whoever resumes a shard replays from what was
 * acknowledged.
 */

/*
 * Shard starts being held here, from cp (the newest checkpoint, e.g. from Redis; NULL or no
 * session: the shard identifies): the ledger's state for it is reset from cp (RESUME floor,
 * per-webhook acknowledgements; `queued` ignored). Holding a held shard releases it first.
 */
int br_delivery_hold(struct br_delivery *d, int shard, const struct br_checkpoint *cp);
/*
 * Shard is no longer held (fenced out, or handed off): its events not yet in a request are
 * discarded, its checkpoints stop, a drain of it ends (rc SH_ECLOSED); requests in flight
 * finish (their events may reach the receiver a second time from the new owner: the event key
 * tells them apart).
 */
int br_delivery_release(struct br_delivery *d, int shard);
/*
 * Handoff: the shard's open batches are closed and sent at once; wait until every webhook
 * acknowledged (or dead-lettered) every event of shard that delivery holds, or timeout_ms
 * passed; then done(arg, rc, cp) runs once, on the delivery thread (at a stop: on the thread in
 * br_delivery_stop), with the final checkpoint: what every webhook acknowledged, `queued` 0.
 * rc 0: all acknowledged; SH_ETIMEDOUT: cp is what was (a stop ends every drain so); SH_ECLOSED:
 * released or held again meanwhile; SH_ENOTFOUND: the shard was not held (cp has no session).
 * Afterwards the shard is not held, as after release(). The caller closes the shard's socket
 * first so nothing new arrives. SH_EINVAL (also for a NULL done), SH_ENOMEM, SH_ECLOSED.
 */
int br_delivery_drain(struct br_delivery *d, int shard, int timeout_ms,
                      void (*done)(void *arg, int rc, const struct br_checkpoint *cp), void *arg);

/* ---- status and pause, for the control API: any thread ---------------------------------- */

enum br_webhook_state { BR_HOOK_OK = 0, BR_HOOK_RETRYING, BR_HOOK_PAUSED, BR_HOOK_SPOOLING };

/* One webhook as the delivery thread last published it (each pass), ages as of the call. */
struct br_webhook_status {
    enum br_webhook_state state;   /* paused > retrying > spooling > ok */
    int paused_by_api;             /* POST .../pause holds it (kept in state_dir/webhooks.json) */
    uint64_t paused_until_wall_ms; /* a Retry-After holds every lane until then; 0 none */
    int in_flight;
    uint64_t queued_events, queued_bytes; /* closed batches in memory, not in flight */
    uint64_t spool_bytes;
    int has_oldest; /* something is unacknowledged, and when it arrived is known */
    uint64_t oldest_unacked_age_ms;
    uint64_t delivered_events, retries, dead_letters; /* since start */
    uint64_t last_ok_wall_ms, last_fail_wall_ms;      /* 0 none */
    long last_ok_status, last_fail_status;            /* last_fail_status 0: no HTTP answer */
    char last_fail_error[160];
};

/* Webhook i's status. 0, or SH_ENOTFOUND. */
int br_delivery_webhook_status(struct br_delivery *d, size_t i, struct br_webhook_status *out);
/*
 * Pause (1) or resume (0) webhook i: while paused it keeps its events (memory, spool, then flow
 * control) and starts no request. Written to state_dir/webhooks.json before it returns, so a
 * restart keeps it. 0, SH_ENOTFOUND, or SH_EIO (the file could not be written: nothing changed).
 */
int br_delivery_webhook_pause(struct br_delivery *d, size_t i, int paused);
/* A reload: webhook's secrets and extra headers from w (copied) sign and go with every request
 * started after this returns, retries included. Any thread. 0, SH_EINVAL or SH_ENOMEM. */
int br_delivery_update_auth(struct br_delivery *d, size_t webhook, const struct cfg_webhook *w);

/*
 * Any thread: send webhook's dead letters ids (oldest first) again, after those already asked
 * for (bridge/redeliver.h: one at a time beside live traffic, same webhook-id, acknowledged ones
 * leave the folder). Returns once queued: 0, SH_EINVAL (no such webhook) or SH_ENOMEM.
 */
int br_delivery_redeliver(struct br_delivery *d, size_t webhook, const char (*ids)[BR_DEAD_ID_MAX],
                          size_t n);
/* The dead-letter folder (state_dir/dead-letter); any thread may read it. */
const char *br_delivery_dead_letter_dir(const struct br_delivery *d);

#endif
