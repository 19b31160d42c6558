/*
 * bridge/holds.c: cluster mode's shards that come and go (bridge/deliver.h: br_delivery_hold,
 * br_delivery_release, br_delivery_drain). Owns delivery's command queue (any thread pushes,
 * the delivery thread applies each command before it routes the chunks it took with it), the
 * drains under way, and taking a released shard's events out of the batches not yet in a
 * request. What a held shard's checkpoint says is the ledger's (bridge/ledger.h).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/deliver.h"
#include "bridge/deliver_int.h"
#include "bridge/hook.h"
#include "bridge/ledger.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/queue.h"

enum cmd_kind { CMD_HOLD, CMD_RELEASE, CMD_DRAIN };

struct br__cmd {
    struct sh_qnode node;
    enum cmd_kind kind;
    int li;
    int has_cp;
    struct br_checkpoint cp; /* hold: from the caller; drain: the final one, handed to done */
    int timeout_ms;
    void (*done)(void *arg, int rc, const struct br_checkpoint *cp);
    void *arg;
    uint64_t deadline_ms; /* a drain under way: when it gives up */
    struct br__cmd *next; /* d->drains */
};

/* ---- any thread ---------------------------------------------------------------------------- */

static int push_cmd(struct br_delivery *d, struct br__cmd *c)
{
    pthread_mutex_lock(&d->lock);
    if (d->stopping) {
        pthread_mutex_unlock(&d->lock);
        free(c);
        return SH_ECLOSED;
    }
    sh_queue_push(&d->cmdq, &c->node);
    d->lazy = 0; /* a command never waits for a batch to fill */
    pthread_mutex_unlock(&d->lock);
    curl_multi_wakeup(d->multi);
    return SH_OK;
}

/* A command for shard, or NULL with *rc: SH_EINVAL (not one of prepare()'s), SH_ENOMEM. */
static struct br__cmd *new_cmd(struct br_delivery *d, int shard, enum cmd_kind kind, int *rc)
{
    int li = d->prepared && shard >= 0 ? br_ledger_local(d->ledger, (uint32_t)shard) : -1;
    *rc = li < 0 ? SH_EINVAL : SH_OK;
    struct br__cmd *c = li < 0 ? NULL : calloc(1, sizeof(*c));
    if (li >= 0 && !c)
        *rc = SH_ENOMEM;
    if (c) {
        c->kind = kind;
        c->li = li;
    }
    return c;
}

int br_delivery_hold(struct br_delivery *d, int shard, const struct br_checkpoint *cp)
{
    int rc;
    struct br__cmd *c = new_cmd(d, shard, CMD_HOLD, &rc);
    if (!c)
        return rc;
    if (cp) {
        c->cp = *cp;
        c->has_cp = 1;
    }
    return push_cmd(d, c);
}

int br_delivery_release(struct br_delivery *d, int shard)
{
    int rc;
    struct br__cmd *c = new_cmd(d, shard, CMD_RELEASE, &rc);
    return c ? push_cmd(d, c) : rc;
}

int br_delivery_drain(struct br_delivery *d, int shard, int timeout_ms,
                      void (*done)(void *arg, int rc, const struct br_checkpoint *cp), void *arg)
{
    if (!done)
        return SH_EINVAL;
    int rc;
    struct br__cmd *c = new_cmd(d, shard, CMD_DRAIN, &rc);
    if (!c)
        return rc;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
    c->done = done;
    c->arg = arg;
    return push_cmd(d, c);
}

/* ---- the delivery thread ------------------------------------------------------------------- */

/* drop() for the hooks' purge: events of shards not held here. */
static int unheld(void *ud, uint32_t shard)
{
    const struct br_ledger *l = ud;
    int li = br_ledger_local(l, shard);
    return li >= 0 && !br_ledger_held(l, li);
}

/* Shard li is no longer held: the ledger forgets it, its events not in a request go. */
static void release(struct br_delivery *d, int li, const char *why)
{
    br_ledger_release(d->ledger, li);
    uint64_t removed = 0;
    for (size_t i = 0; i < d->n_hooks; i++)
        removed += br__hook_purge(&d->hooks[i], unheld, d->ledger);
    log_info("msg=\"shard no longer delivered from here; its unsent events were discarded\" "
             "shard=%d why=%s events=%" PRIu64,
             br_ledger_shard_id(d->ledger, li), why, removed);
}

/* Close every open batch that holds events of shard li: a drain sends them at once. */
static void close_lanes_of(struct br_delivery *d, int li)
{
    uint32_t shard = (uint32_t)br_ledger_shard_id(d->ledger, li);
    for (size_t i = 0; i < d->n_hooks; i++) {
        struct br__hook *h = &d->hooks[i];
        for (int l = 0; l < h->n_open; l++) {
            const struct br_batch *b = h->open[l];
            for (uint32_t k = 0; b && k < b->n_shards; k++)
                if (b->shards[k].shard == shard) {
                    br__hook_close_lane(h, l);
                    break;
                }
        }
    }
}

/* Every drain of shard li ends with rc and the ledger's checkpoint; then it is released. */
static void end_drains(struct br_delivery *d, int li, int rc)
{
    struct br__cmd *ended = NULL;
    for (struct br__cmd **p = &d->drains; *p;) {
        struct br__cmd *c = *p;
        if (c->li != li) {
            p = &c->next;
            continue;
        }
        *p = c->next;
        c->next = ended;
        ended = c;
    }
    if (!ended)
        return;
    br_ledger_checkpoint(d->ledger, li, &ended->cp); /* before the ledger forgets it */
    release(d, li, !rc ? "drained" : rc == SH_ETIMEDOUT ? "drain_timeout" : "drain_cancelled");
    log_info("msg=\"drain ended\" shard=%d seq=%" PRIu64 " all_acknowledged=%d", ended->cp.shard,
             ended->cp.seq, !rc);
    for (struct br__cmd *c = ended, *nx; c; c = nx) {
        nx = c->next;
        c->done(c->arg, rc, &ended->cp);
        if (c != ended)
            free(c);
    }
    free(ended);
}

static void apply_drain(struct br_delivery *d, struct br__cmd *c, uint64_t now)
{
    if (!br_ledger_held(d->ledger, c->li)) {
        br_ledger_checkpoint(d->ledger, c->li, &c->cp); /* no session: nothing to hand over */
        c->done(c->arg, SH_ENOTFOUND, &c->cp);
        free(c);
        return;
    }
    c->deadline_ms = now + (uint64_t)c->timeout_ms;
    c->next = d->drains;
    d->drains = c;
    close_lanes_of(d, c->li);
}

void br__apply_commands(struct br_delivery *d, struct sh_qnode *n, uint64_t now)
{
    for (struct sh_qnode *nx; n; n = nx) {
        nx = n->next;
        struct br__cmd *c = SH_QUEUE_ITEM(n, struct br__cmd, node);
        switch (c->kind) {
        case CMD_HOLD:
            if (br_ledger_held(d->ledger, c->li)) { /* what it had goes first */
                end_drains(d, c->li, SH_ECLOSED);
                if (br_ledger_held(d->ledger, c->li))
                    release(d, c->li, "held_again");
            }
            br_ledger_hold(d->ledger, c->li, c->has_cp ? &c->cp : NULL);
            log_info("msg=\"shard held\" shard=%d resume=%d seq=%" PRIu64,
                     br_ledger_shard_id(d->ledger, c->li), c->has_cp && c->cp.session_id[0],
                     c->has_cp ? c->cp.seq : 0);
            free(c);
            break;
        case CMD_RELEASE:
            if (br_ledger_held(d->ledger, c->li)) {
                end_drains(d, c->li, SH_ECLOSED);
                if (br_ledger_held(d->ledger, c->li))
                    release(d, c->li, "released");
            }
            free(c);
            break;
        case CMD_DRAIN:
            apply_drain(d, c, now);
            break;
        }
    }
}

uint64_t br__drains_pass(struct br_delivery *d, uint64_t now, int ending)
{
    uint64_t next = UINT64_MAX;
    for (struct br__cmd *c = d->drains; c;) {
        int li = c->li;
        close_lanes_of(d, li);
        uint64_t pending = br_ledger_pending(d->ledger, li);
        if (!pending || ending || now >= c->deadline_ms) {
            end_drains(d, li, pending ? SH_ETIMEDOUT : SH_OK);
            c = d->drains; /* the list changed: from the start */
            continue;
        }
        if (c->deadline_ms < next)
            next = c->deadline_ms;
        c = c->next;
    }
    return next;
}

int br__purge_before_start(struct br_delivery *d, struct br__hook *h, struct br_batch *b)
{
    uint64_t removed = 0;
    return d->cluster && br__hook_purge_batch(h, b, unheld, d->ledger, &removed);
}

void br__purge_unheld(struct br_delivery *d)
{
    for (size_t i = 0; d->cluster && i < d->n_hooks; i++)
        br__hook_purge(&d->hooks[i], unheld, d->ledger);
}

void br__free_commands(struct sh_qnode *n)
{
    for (struct sh_qnode *nx; n; n = nx) {
        nx = n->next;
        free(SH_QUEUE_ITEM(n, struct br__cmd, node));
    }
}
