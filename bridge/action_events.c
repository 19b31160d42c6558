/*
 * bridge/action_events.c: the delivery side of actions. Owns the queue of events for one
 * webhook only (a members action's answer, queued from any thread and routed by the delivery
 * thread into that webhook's batches like any event), how actions run (struct br_action_ops,
 * set from main()), each webhook's once-only record (bridge/actions.h) and running the actions
 * a 2xx answer carries. What an action does is the control API's; the record is actions.c's.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/deliver_int.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/queue.h"

/* An event for one webhook only (a members action's answer), from any thread. */
struct action_event {
    struct sh_qnode node;
    size_t hook;
    struct gw_chunk *c; /* one event */
};

static char action_key_session[32];

/* "action-<wall ms>": the session part of action answers' keys, once per process. */
static void name_process_start(void)
{
    snprintf(action_key_session, sizeof(action_key_session), "action-%llu",
             (unsigned long long)sh_wall_ms());
}

int br_delivery_action_event(struct br_delivery *d, size_t webhook, int shard, const char *t,
                             const char *dj, size_t len)
{
    if (webhook >= d->n_hooks || shard < 0 || shard >= d->total)
        return SH_EINVAL;
    if (len > d->cfg->max_payload_bytes)
        return SH_ETOOBIG; /* as a gateway payload past the cap: no spool segment holds it */
    struct action_event *ev = calloc(1, sizeof(*ev));
    struct gw_chunk *c = ev ? gw_chunk_new(len + strlen(t) + 512) : NULL;
    /* not a gateway event: its key names this process's start and counts its answers, so no
       two answers share one and none repeats a gateway event's */
    static atomic_uint_fast64_t answers;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, name_process_start);
    struct gw_key key = {action_key_session, 0, atomic_fetch_add(&answers, 1) + 1};
    int rc = c ? gw_chunk_append(c, shard, d->total, t, strlen(t), 0, &key, dj, len, sh_now_ms())
               : SH_ENOMEM;
    if (rc) {
        gw_chunk_free(c);
        free(ev);
        return rc;
    }
    ev->hook = webhook;
    ev->c = c;
    pthread_mutex_lock(&d->lock);
    int wake = sh_queue_push(&d->evq, &ev->node);
    d->lazy = 0;
    pthread_mutex_unlock(&d->lock);
    if (wake)
        curl_multi_wakeup(d->multi);
    return SH_OK;
}

void br_delivery_set_actions(struct br_delivery *d, const struct br_action_ops *ops)
{
    pthread_mutex_lock(&d->lock);
    d->act_ops = *ops;
    pthread_mutex_unlock(&d->lock);
    curl_multi_wakeup(d->multi);
}

void br__free_action_events(struct sh_qnode *n)
{
    for (struct sh_qnode *nx; n; n = nx) {
        nx = n->next;
        struct action_event *ev = SH_QUEUE_ITEM(n, struct action_event, node);
        gw_chunk_free(ev->c);
        free(ev);
    }
}

/* Every webhook whose config says "actions": true gets its record. */
int br__new_actions(struct br_delivery *d)
{
    d->actions = calloc(d->n_hooks ? d->n_hooks : 1, sizeof(*d->actions));
    if (!d->actions)
        return SH_ENOMEM;
    for (size_t i = 0; i < d->n_hooks; i++)
        if (d->hooks[i].cfg->actions && !(d->actions[i] = br_actions_new(i, d->hooks[i].label)))
            return SH_ENOMEM;
    return SH_OK;
}

/* An event for one webhook (a members action's answer): into its batches like any event. */
static void route_action_event(struct br_delivery *d, struct action_event *ev, uint64_t now)
{
    const struct gw_event *e = &ev->c->ev[0];
    int li = br_ledger_local(d->ledger, e->shard);
    if (li < 0 || br__add_to_hook(d, &d->hooks[ev->hook], li, ev->c, e, now)) {
        static struct sh_log_limit lim;
        log_error_limited(&lim,
                          "msg=\"an action's answer could not be delivered\" webhook=%zu "
                          "shard=%u",
                          ev->hook, e->shard);
    }
}

void br__route_action_events(struct br_delivery *d, struct sh_qnode *n, uint64_t now)
{
    for (struct sh_qnode *q = n; q; q = q->next)
        route_action_event(d, SH_QUEUE_ITEM(q, struct action_event, node), now);
    br__free_action_events(n);
}

/* A 2xx answer to b for a webhook with "actions": true: run what it asks (never un-acks b). */
void br__answer_actions(struct br_delivery *d, struct br__hook *h, struct br_batch *b,
                        struct br_request *r, CURL *easy)
{
    char *ctype = NULL;
    curl_easy_getinfo(easy, CURLINFO_CONTENT_TYPE, &ctype);
    br_actions_answer(d->actions[h->idx], &d->act_now, b->msg_id, ctype, r->act.data, r->act.len,
                      r->act_truncated, NULL);
}
