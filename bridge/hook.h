/*
 * bridge/hook.h: one webhook as the delivery thread holds it (bridge/ only: deliver.c drives
 * it, nothing outside bridge/ includes this). Owns the webhook's lanes of open batches, its
 * order of closed batches (memory first, then the spool, then overflow batches the spool could
 * not take), its dead letters and its metrics. What was acknowledged is the ledger's; when a
 * batch may start is deliver.c's.
 */
#ifndef SHARDHOOK_BR_HOOK_H
#define SHARDHOOK_BR_HOOK_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/batch.h"
#include "bridge/checkpoint.h"
#include "bridge/spool.h"
#include "config/config.h"
#include "gateway/sink.h"
#include "lib/log.h"
#include "lib/metrics.h"

/* B_DEAD_WAIT: refused for good, but its dead letter is not on disk yet: the write is retried */
enum br__batch_state { B_QUEUED = 0, B_INFLIGHT, B_WAIT, B_DEAD_WAIT };

struct br__hook_metrics {
    struct sh_metric_series *req_ok, *req_retry_status, *req_network, *req_timeout, *req_dead;
    struct sh_metric_series *retries, *dead, *events, *batches_acked;
    struct sh_metric_series *batch_events, *batch_bytes, *lag, *req_seconds;
    struct sh_metric_series *queue_bytes, *queue_batches, *spool_bytes, *spool_batches;
    struct sh_metric_series *dups;
    struct sh_metric_series *dead_errors, *dead_removed, *dead_full;
};

struct br__hook {
    size_t idx;
    const struct cfg_webhook *cfg;
    /* the metrics label and the name in logs: its config name, else its index */
    char label[CFG_WEBHOOK_NAME_MAX + 1];
    char key[BR_CKPT_KEY_MAX]; /* names it in checkpoints, spool folders, dead letters */
    int n_lanes;
    /* open batches: n_lanes slots by shard id, then (with more than one shard) n_lanes more for
       shards whose last event travelled alone and is not yet acknowledged, so that their next
       events, which must wait for it, do not hold the other shards of their lane */
    int n_open;
    struct br_batch **open;       /* per slot, NULL when none is open */
    int *slot_of;                 /* per local shard: the slot its last event went to ... */
    const struct br_batch **in;   /* ... and the batch: while still open there, the next follows */
    uint64_t *alone_seq;          /* per local shard: seq + 1 of its last batch alone, 0 none */
    struct br_batch *head, *tail; /* closed batches in memory, oldest first */
    size_t n_mem;
    uint64_t mem_bytes;
    struct br_batch *over_head, *over_tail; /* after the spool when it cannot take them */
    size_t n_over;
    struct br_spool *spool;
    int spool_error_logged;
    int saved; /* a graceful stop saved its unsent batches in the spool */
    int in_flight;
    uint32_t *mark, epoch; /* per local shard (+1 for unknown shards) */
    uint64_t next_seq;
    uint64_t spool_share;  /* bytes of the spool this webhook may fill */
    int full_dead_letter;  /* when_full "dead_letter": a full share sheds its oldest batches */
    int shedding;          /* shedding until the share is below 7/8 */
    int shed_failed;       /* a dead letter could not be written: pause instead */
    uint64_t shed_next_ms; /* ... and try again from then on */
    uint64_t dead_bytes;   /* its dead letters on disk, for dead_letter_max_bytes */
    /* pause and status, for the control API (webhook_state.c publishes them under status_lock) */
    atomic_int user_paused;      /* POST .../pause: any thread sets it, nothing starts */
    uint64_t hold_until_ms;      /* a Retry-After (429/503) holds every lane until then */
    uint64_t hold_until_wall_ms; /* ... the same moment on the wall clock */
    int last_retry;              /* the last finished attempt failed and will be retried */
    uint64_t delivered, retried, dead_count; /* events acknowledged, retries, dead letters */
    uint64_t ok_wall_ms, fail_wall_ms;       /* last success and last failure, 0 none */
    long ok_status, fail_status;             /* fail_status 0: no HTTP answer */
    char fail_error[160];
    struct br__hook_metrics m;
    struct sh_log_limit lim_retry, lim_fail, lim_dead, lim_dead_err, lim_shed, lim_trim;
    struct sh_log_limit lim_spool, lim_spool_read, lim_hold, lim_purge;
};

/* Webhook i of cfg: its key ("w" + 16 hex digits of SHA-256(url), "-N" for the N-th alike). */
void br__hook_init(struct br__hook *h, const struct cfg_config *cfg, size_t i, size_t n_hooks);
/* The metric series of every webhook. */
void br__hook_register_metrics(struct br__hook *hooks, size_t n);
/* Frees its batches, lanes and marks and closes its spool (in-flight requests removed first). */
void br__hook_release(struct br__hook *h);

/* The open batch of lane for event e (a new one when e does not fit); NULL: logged. */
struct br_batch *br__hook_open_batch(struct br__hook *h, int lane, const struct gw_event *e);
/* Close the lane's open batch; it joins the webhook's order. */
void br__hook_close_lane(struct br__hook *h, int lane);
/* Bring spooled batches back into memory, oldest first, while the memory limit allows. */
void br__hook_refill(struct br__hook *h);
/* The spool's head batch into memory (past the memory limit too); NULL when none. */
struct br_batch *br__hook_pull_spooled(struct br__hook *h);
/* b (in memory) leaves the order and is freed. */
void br__hook_drop(struct br__hook *h, struct br_batch *b);
int br__hook_spool_has(const struct br__hook *h);
/* Nothing open, queued or spooled. */
int br__hook_idle(const struct br__hook *h);
/* Its share (spool, or memory without one) is full; shedding goes on down to 7/8 of it. */
int br__hook_share_over(struct br__hook *h);
void br__hook_gauges(struct br__hook *h);

/*
 * Write b's dead letter into dir. Returns 0 once it is on disk (counted, logged, retention
 * applied); otherwise the batch must stay: a batch is resolved only when its dead letter is safe.
 */
int br__hook_dead_letter(struct br__hook *h, const char *dir, struct br_batch *b,
                         const char *reason, long status, const char *resp, size_t resp_len,
                         int resp_truncated);
/* dead_letter_max_bytes: the webhook's oldest dead letters go until the rest fit. */
void br__hook_trim_dead_letters(struct br__hook *h, const char *dir);

/*
 * A graceful stop: the memory queue goes into a spool segment before what the spool holds,
 * overflow batches after it, everything fsync'ed. 1 when saved (h->saved), 0 otherwise.
 */
int br__hook_save(struct br__hook *h);
/* Events neither acknowledged nor saved: in memory, overflow and the spool. */
uint64_t br__hook_unsent_events(const struct br__hook *h);

/*
 * Cluster mode: take the events of shards drop(ud, shard) names out of h's batches that are not
 * in a request (open lanes, the memory queue and overflow; not batches waiting for their dead
 * letter, nor batches the last stop saved). A batch left empty goes. Returns the events taken
 * out. Spooled batches are checked when they come back, with br__hook_purge_batch.
 */
uint64_t br__hook_purge(struct br__hook *h, int (*drop)(void *ud, uint32_t shard), void *ud);
/* The same for b, of h's memory queue: 1 when nothing was left of it (b freed). */
int br__hook_purge_batch(struct br__hook *h, struct br_batch *b,
                         int (*drop)(void *ud, uint32_t shard), void *ud, uint64_t *removed);

#endif
