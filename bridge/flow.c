/*
 * bridge/flow.c: flow control and the gauges of the delivery thread. Owns when delivery asks
 * the gateway to stop reading and to read again (through the callback of
 * br_delivery_set_flow), the shedding of when_full "dead_letter" (a full share's oldest
 * batches go to the dead-letter folder), and the queue, spool and inbound gauges. Where the
 * batches are is the webhook's (bridge/hook.h); the loop that calls these is deliver.c's.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "bridge/deliver_int.h"
#include "bridge/spool.h"
#include "lib/log.h"
#include "lib/metrics.h"

#define INQ_PAUSE_BYTES ((size_t)64 << 20) /* chunks waiting for this thread: pause past it */
#define SHED_RETRY_MS 1000 /* a full share whose dead letter failed tries again after this */

/* 1 when an earlier batch of this pass holds one of b's shards; with mark, b's shards are held. */
static int batch_blocked(struct br_delivery *d, struct br__hook *h, const struct br_batch *b,
                         int mark)
{
    int blocked = 0;
    for (uint32_t k = 0; k < b->n_shards; k++) {
        uint32_t *m = &h->mark[br__mark_index(d, b->shards[k].shard)];
        blocked |= *m == h->epoch;
        if (mark)
            *m = h->epoch;
    }
    return blocked;
}

/*
 * when_full "dead_letter": while the webhook's share is full, its oldest batches that may be
 * settled (not in flight, no earlier unsettled batch of the same shard) go to the dead-letter
 * folder and count as settled, so the gateway keeps reading and other webhooks go on. A dead
 * letter that cannot be written stops this: the webhook then pauses the gateway like `pause`.
 */
void br__shed_full_share(struct br_delivery *d, struct br__hook *h, uint64_t now)
{
    if (h->shed_failed && now < h->shed_next_ms)
        return;
    h->shed_failed = 0;
    if (!h->full_dead_letter || !br__hook_share_over(h))
        return;
    if (++h->epoch == 0) {
        memset(h->mark, 0, ((size_t)d->n_local + 1) * sizeof(*h->mark));
        h->epoch = 1;
    }
    uint64_t batches = 0, events = 0;
    struct br_batch *b = h->head;
    for (;;) {
        if (!b && (!h->spool || h->mem_bytes > h->cfg->max_memory_bytes ||
                   !(b = br__hook_pull_spooled(h))))
            break;
        struct br_batch *nx = b->next;
        int blocked = batch_blocked(d, h, b, 0);
        if (!blocked && (b->state == B_QUEUED || b->state == B_WAIT)) {
            if (br__hook_dead_letter(h, d->dir_dead, b, "spool_full", 0, NULL, 0, 0)) {
                h->shed_failed = 1;
                h->shed_next_ms = now + SHED_RETRY_MS;
                break;
            }
            batches++;
            events += b->n_events;
            br__resolve(d, h, b);
            if (!br__hook_share_over(h))
                break;
        } else {
            batch_blocked(d, h, b, 1);
        }
        b = nx;
    }
    if (batches) {
        sh_series_add(h->m.dead_full, (double)batches);
        log_warn_limited(&h->lim_shed,
                         "msg=\"spool share full (when_full dead_letter); oldest batches "
                         "dead-lettered\" webhook=%zu batches=%" PRIu64 " events=%" PRIu64
                         " spool_max_bytes=%" PRIu64,
                         h->idx, batches, events, h->spool_share);
    }
}

void br__update_flow(struct br_delivery *d, size_t inq)
{
    uint64_t spooled = 0;
    int over = 0;
    for (size_t i = 0; i < d->n_hooks; i++) {
        struct br__hook *h = &d->hooks[i];
        if (h->spool) {
            struct br_spool_stats st;
            br_spool_stats(h->spool, &st);
            spooled += st.bytes;
        }
        if (h->mem_bytes <= h->cfg->max_memory_bytes && !h->over_head)
            h->spool_error_logged = 0; /* back under the limit: the next spill tries again */
        /* memory past its limit: the spool cannot take more, or there is none (when_full
           "dead_letter" without a spool sheds memory instead) */
        if (h->over_head || (h->mem_bytes > h->cfg->max_memory_bytes &&
                             (h->spool ? h->spool_error_logged : !h->full_dead_letter)))
            over = 1;
        if (h->full_dead_letter) {
            if (h->shedding || h->shed_failed)
                over = 1; /* nothing could be shed yet (in flight), or a dead letter failed */
        } else if (h->spool && h->spool_share) { /* its share of the spool (7/8 to read again) */
            struct br_spool_stats st;
            br_spool_stats(h->spool, &st);
            if (st.bytes >= (d->paused ? h->spool_share - h->spool_share / 8 : h->spool_share))
                over = 1;
        }
    }
    uint64_t max = d->cfg->spool_max_bytes;
    int want;
    if (d->paused) /* hysteresis: read again once the spool is below 7/8 of its limit */
        want = over || inq > INQ_PAUSE_BYTES / 2 || (max && spooled >= max - max / 8);
    else
        want = over || inq > INQ_PAUSE_BYTES || (max && spooled >= max);
    if (want == d->paused)
        return;
    d->paused = want;
    sh_series_set(d->m_paused, want);
    log_info("msg=\"%s\" spool_bytes=%" PRIu64 " spool_max_bytes=%" PRIu64 " inbound_bytes=%zu",
             want ? "delivery is behind; asking the gateway to stop reading"
                  : "delivery caught up; the gateway reads again",
             spooled, max, inq);
    if (d->flow)
        d->flow(d->flow_ud, want);
}

void br__update_gauges(struct br_delivery *d, size_t inq)
{
    for (size_t i = 0; i < d->n_hooks; i++)
        br__hook_gauges(&d->hooks[i]);
    sh_series_set(d->m_inq, (double)inq);
}
