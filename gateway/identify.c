/*
 * gateway/identify.c: the single-process gw_identify implementation (gateway/gateway.h). Owns
 * the identify buckets of this process (their arithmetic is gateway/bucket.c), the count of the
 * daily session budget, and the thread that re-reads the budget from /gateway/bot so the gateway
 * loop never blocks on REST. That thread is joined by stop(), so nothing of it outlives the
 * gateway that asked for it. Cluster mode replaces this file's table with one backed by Redis.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/bucket.h"
#include "gateway/gateway.h"
#include "gateway/rest.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/log.h"

#define REFRESH_ATTEMPTS 4

struct identify_local {
    const struct cfg_config *cfg;
    uint64_t interval_ms;       /* one IDENTIFY per bucket per interval */
    struct gw__bucket *buckets; /* gateway thread only */
    int n_buckets;
    pthread_mutex_t lock; /* guards the budget: the refresh thread writes it */
    struct gw_budget budget;
    int refreshing; /* a re-read is under way: take() refuses meanwhile */
    pthread_t thread;
    int thread_started; /* thread must be joined */
    volatile int stop;  /* polled by the REST call, also while it waits for an answer */
    void (*done)(void *arg, int rc);
    void *done_arg;
};

static int local_start(void *ud, int max_concurrency, const struct gw_bot_info *bot)
{
    struct identify_local *l = ud;
    free(l->buckets);
    l->n_buckets = max_concurrency > 0 ? max_concurrency : 1;
    l->buckets = calloc((size_t)l->n_buckets, sizeof(*l->buckets));
    if (!l->buckets)
        return SH_ENOMEM;
    pthread_mutex_lock(&l->lock);
    l->budget.total = bot->session_total;
    l->budget.remaining = bot->session_remaining;
    l->budget.reset_at_ms = sh_now_ms() + bot->reset_after_ms;
    pthread_mutex_unlock(&l->lock);
    return SH_OK;
}

static struct gw__bucket *bucket_of(struct identify_local *l, int shard_id)
{
    return &l->buckets[gw__bucket_index(shard_id, l->n_buckets)];
}

static uint64_t local_plan(void *ud, int shard_id, uint64_t not_before_ms)
{
    struct identify_local *l = ud;
    return gw__bucket_slot(bucket_of(l, shard_id), not_before_ms, l->interval_ms);
}

static uint64_t local_wait(void *ud, int shard_id, uint64_t now_ms)
{
    struct identify_local *l = ud;
    return gw__bucket_wait(bucket_of(l, shard_id), now_ms, l->interval_ms);
}

static void local_stamp(void *ud, int shard_id, uint64_t now_ms)
{
    struct identify_local *l = ud;
    gw__bucket_stamp(bucket_of(l, shard_id), now_ms, l->interval_ms);
}

static int local_take(void *ud)
{
    struct identify_local *l = ud;
    int rc = SH_EAGAIN;
    pthread_mutex_lock(&l->lock);
    if (l->budget.remaining > 0 && !l->refreshing) {
        l->budget.remaining--;
        rc = SH_OK;
    }
    pthread_mutex_unlock(&l->lock);
    return rc;
}

static void local_give_back(void *ud)
{
    struct identify_local *l = ud;
    pthread_mutex_lock(&l->lock);
    l->budget.remaining++;
    pthread_mutex_unlock(&l->lock);
}

static void local_spend(void *ud)
{
    struct identify_local *l = ud;
    pthread_mutex_lock(&l->lock);
    if (l->budget.remaining > 0)
        l->budget.remaining--;
    pthread_mutex_unlock(&l->lock);
}

static void local_budget(void *ud, struct gw_budget *out)
{
    struct identify_local *l = ud;
    pthread_mutex_lock(&l->lock);
    *out = l->budget;
    pthread_mutex_unlock(&l->lock);
}

/* The re-read: /gateway/bot must not block the gateway loop, so it runs here. */
static void *refresh_main(void *arg)
{
    struct identify_local *l = arg;
    struct gw_bot_info info;
    char err[512];
    int rc = gw__rest_gateway_bot(l->cfg->api_base, l->cfg->token, REFRESH_ATTEMPTS, &l->stop,
                                  &info, err, sizeof(err));
    if (!rc && info.session_remaining < 0) {
        rc = SH_EPARSE;
        snprintf(err, sizeof(err), "session_start_limit.remaining is negative");
    }
    if (rc && rc != SH_ECLOSED)
        log_warn("msg=\"identify budget refresh failed\" error=\"%s\"", err);
    pthread_mutex_lock(&l->lock);
    if (!rc) {
        l->budget.total = info.session_total;
        l->budget.remaining = info.session_remaining;
        l->budget.reset_at_ms = sh_now_ms() + info.reset_after_ms;
    }
    l->refreshing = 0;
    pthread_mutex_unlock(&l->lock);
    l->done(l->done_arg, rc);
    return NULL;
}

static void join_refresh(struct identify_local *l)
{
    if (l->thread_started) {
        pthread_join(l->thread, NULL);
        l->thread_started = 0;
    }
}

static int local_refresh(void *ud, void (*done)(void *arg, int rc), void *arg)
{
    struct identify_local *l = ud;
    if (l->stop)
        return SH_ECLOSED;
    pthread_mutex_lock(&l->lock);
    int busy = l->refreshing;
    pthread_mutex_unlock(&l->lock);
    if (busy)
        return SH_EAGAIN;
    join_refresh(l); /* the previous re-read ended (done ran): collect its thread */
    l->done = done;
    l->done_arg = arg;
    l->refreshing = 1; /* no other thread runs yet: no lock needed */
    if (pthread_create(&l->thread, NULL, refresh_main, l)) {
        l->refreshing = 0;
        return SH_ENOMEM;
    }
    l->thread_started = 1;
    return SH_OK;
}

static void local_stop(void *ud)
{
    struct identify_local *l = ud;
    l->stop = 1;
    join_refresh(l);
}

static const struct gw_identify_ops local_ops = {
    .start = local_start,
    .plan = local_plan,
    .wait = local_wait,
    .stamp = local_stamp,
    .take = local_take,
    .give_back = local_give_back,
    .spend = local_spend,
    .budget = local_budget,
    .refresh = local_refresh,
    .stop = local_stop,
};

int gw_identify_local_new(const struct cfg_config *cfg, struct gw_identify *out)
{
    out->ops = NULL;
    out->ud = NULL;
    struct identify_local *l = calloc(1, sizeof(*l));
    if (!l)
        return SH_ENOMEM;
    l->cfg = cfg;
    l->interval_ms = (uint64_t)cfg->testing_identify_interval_ms;
    pthread_mutex_init(&l->lock, NULL);
    out->ops = &local_ops;
    out->ud = l;
    return SH_OK;
}

void gw_identify_local_free(struct gw_identify *ident)
{
    struct identify_local *l = ident ? ident->ud : NULL;
    if (!l)
        return;
    local_stop(l);
    pthread_mutex_destroy(&l->lock);
    free(l->buckets);
    free(l);
    ident->ud = NULL;
    ident->ops = NULL;
}
