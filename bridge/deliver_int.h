/*
 * bridge/deliver_int.h: internal to bridge/: the delivery state (struct br_delivery) and what
 * the files of the delivery thread share. deliver.c runs the loop; webhook_state.c publishes
 * the status for the control API and keeps the pauses across restarts; flow.c does flow control,
 * shedding and the gauges; action_events.c carries events for one webhook and runs the actions
 * of answers; holds.c applies cluster mode's hold/release/drain commands. Nothing outside bridge/
 * includes this: the public face is bridge/deliver.h.
 */
#ifndef SHARDHOOK_BR_DELIVER_INT_H
#define SHARDHOOK_BR_DELIVER_INT_H

#include <curl/curl.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/actions.h"
#include "bridge/ckstore.h"
#include "bridge/deliver.h"
#include "bridge/hook.h"
#include "bridge/hookauth.h"
#include "bridge/ledger.h"
#include "bridge/redeliver.h"
#include "bridge/request.h"
#include "lib/metrics.h"
#include "lib/queue.h"

/* What the delivery thread publishes of one webhook for other threads (under status_lock). */
struct br__hook_pub {
    struct br_webhook_status st; /* state without the pauses, age not yet computed */
    uint64_t oldest_ms;          /* monotonic arrival of the oldest unacknowledged event, 0 none */
    uint64_t hold_until_ms;      /* a Retry-After hold, monotonic */
};

struct br_delivery {
    const struct cfg_config *cfg;
    struct br_hookauth_set *auth; /* secrets and headers, replaceable by a reload */
    pthread_t thread;
    int started, stopped;
    pthread_mutex_t lock; /* guards the fields up to `multi` */
    struct sh_queue inq;  /* gw_chunk hand-offs; the totals below move with it, under lock */
    size_t inq_bytes, inq_events;
    /* lazy: the thread sleeps until its own deadline, which comes before any new event's;
       a push wakes it only once the queue could fill a batch (see sleep_lazily) */
    int lazy;
    size_t wake_events, wake_bytes;
    int stopping;
    uint64_t deadline_ms;
    struct sh_queue evq;          /* struct action_event: events for one webhook (members) */
    struct sh_queue cmdq;         /* cluster mode: hold/release/drain, pushed under lock */
    struct br_action_ops act_ops; /* how actions run; run NULL until main() sets it */
    CURLM *multi;
    /* status for the control API: published by the delivery thread each pass; the pause
       file is written under it too (br_delivery_webhook_pause, any thread) */
    pthread_mutex_t status_lock;
    struct br__hook_pub *pub;
    /* delivery thread only, from here on */
    struct br__hook *hooks;
    size_t n_hooks;
    int total;
    int n_local;
    struct br_ledger *ledger; /* what was acknowledged, what may be checkpointed */
    int cluster;              /* cluster mode: shards are held and released (holds.c) */
    struct br__cmd *drains;   /* drains under way (holds.c) */
    struct br__redeliver *rd; /* dead letters sent again (its post is thread-safe) */
    struct br_ckstore *store; /* where checkpoints are kept */
    int prepared;
    char dir_spool[PATH_MAX - 64], dir_dead[PATH_MAX - 64];
    struct br_request_pool reqs;
    struct br_actions **actions;  /* per webhook, NULL unless its config says "actions": true */
    struct br_action_ops act_now; /* act_ops as of this pass */
    void (*flow)(void *ud, int paused);
    void *flow_ud;
    void (*consume)(void *ud, struct gw_chunk *chunk); /* NULL: chunks are freed */
    void *consume_ud;
    int paused;
    uint64_t last_gauge_ms;
    uint64_t last_pub_ms;  /* the status for the control API was published then */
    uint64_t min_delay_ms; /* the least max_batch_delay_ms of the webhooks */
    uint64_t undelivered;
    struct sh_metric_series *m_paused, *m_ckpt_writes, *m_ckpt_errors, *m_inq;
};

/* A shard's place in a webhook's marks: its local index, n_local for a shard not run here. */
static inline int br__mark_index(const struct br_delivery *d, uint32_t shard)
{
    int li = br_ledger_local(d->ledger, shard);
    return li < 0 ? d->n_local : li;
}

/* ---- deliver.c ---------------------------------------------------------------------------- */

/* An acknowledged or dead-lettered batch leaves the webhook's order (b is freed). */
void br__resolve(struct br_delivery *d, struct br__hook *h, struct br_batch *b);
/* Add event e of local shard li of c to h's open batch; 0, or a negative code (logged, not
   delivered). */
int br__add_to_hook(struct br_delivery *d, struct br__hook *h, int li, const struct gw_chunk *c,
                    const struct gw_event *e, uint64_t now);

/* ---- action_events.c ---------------------------------------------------------------------- */

/* At set-up: every webhook whose config says "actions": true gets its record. */
int br__new_actions(struct br_delivery *d);
/* Route the events for one webhook taken from evq (prepared only), then free them. */
void br__route_action_events(struct br_delivery *d, struct sh_qnode *n, uint64_t now);
/* Free events taken from evq without routing them. */
void br__free_action_events(struct sh_qnode *n);
/* A 2xx answer to b for a webhook with "actions": true: run what it asks (never un-acks b). */
void br__answer_actions(struct br_delivery *d, struct br__hook *h, struct br_batch *b,
                        struct br_request *r, CURL *easy);

/* ---- flow.c ------------------------------------------------------------------------------- */

/*
 * when_full "dead_letter", each pass: while h's share is full, its oldest batches that may be
 * settled go to the dead-letter folder and count as settled.
 */
void br__shed_full_share(struct br_delivery *d, struct br__hook *h, uint64_t now);
/* Each pass: ask the gateway to stop reading, or to read again (inq: the bytes this pass took). */
void br__update_flow(struct br_delivery *d, size_t inq);
/* The queue, spool and inbound gauges (every GAUGE_MS). */
void br__update_gauges(struct br_delivery *d, size_t inq);

/* ---- holds.c ------------------------------------------------------------------------------ */

struct br__cmd;
/* Apply the commands taken from cmdq (before the chunks taken with them), then free them. */
void br__apply_commands(struct br_delivery *d, struct sh_qnode *n, uint64_t now);
/* Free commands taken from cmdq without applying them. */
void br__free_commands(struct sh_qnode *n);
/*
 * Each pass, after the answers: drains whose shard has nothing pending (or whose time is up, or
 * every one when ending) call done and release the shard; the others' open batches are closed.
 * Returns when the next drain gives up (UINT64_MAX: none).
 */
uint64_t br__drains_pass(struct br_delivery *d, uint64_t now, int ending);
/* At stop, once requests in flight are back in the queue: released shards' events go. */
void br__purge_unheld(struct br_delivery *d);
/* Before b (of h's memory queue) starts: events of shards no longer held go; 1 when b went. */
int br__purge_before_start(struct br_delivery *d, struct br__hook *h, struct br_batch *b);

/* ---- webhook_state.c ---------------------------------------------------------------------- */

/* At set-up: the webhooks an earlier run paused through the API stay paused (a bad file is
   logged, and none is). */
void br__load_paused(struct br_delivery *d);
/*
 * Each pass: every webhook's status for br_delivery_webhook_status, at most every PUBLISH_MS.
 * Returns when a skipped publish is due (the loop wakes by then), else UINT64_MAX.
 */
uint64_t br__publish_status(struct br_delivery *d, uint64_t now);

#endif
