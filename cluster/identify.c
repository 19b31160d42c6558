/*
 * cluster/identify.c: rule 2 through Redis (see identify.h). Owns the table of IDENTIFY
 * requests between the gateway thread (the gw_identify ops, which never wait on Redis) and the
 * coordination thread (cl__identify_serve, which runs the `identify`, `budget` and `gap`
 * scripts), the cluster budget as Redis last said it, whether the reserve stopped IDENTIFYs, and
 * a wrapped gw_identify_local: its buckets plan connections so the gateway's ETA stays
 * meaningful, and its thread re-reads /gateway/bot when the budget's reset time passed. One
 * mutex guards everything the two threads share; no Redis call is made under it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/identify.h"
#include "cluster/redis.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/rand.h"

#define ASK_AGAIN_MS 50 /* wait()'s answer while the coordination thread has not answered */
#define JITTER_MS 250   /* added to a busy slot's PTTL */
#define MAX_GAPS 256    /* lost sessions waiting for the `gaps` stream */
#define MAX_SERVED_PER_PASS 64

enum req_state { REQ_PENDING, REQ_GRANTED, REQ_BUSY, REQ_REFUSED };

struct req {
    int shard;
    enum req_state state;
    uint64_t wait_ms; /* REQ_BUSY: how long to wait */
    uint64_t at_ms;   /* when asked (PENDING) or answered */
};

struct gap {
    uint64_t no; /* to find it again after the lock was let go */
    int shard;
    char session_id[128];
    uint64_t seq;
    char why[32];
};

struct cl__identify {
    const struct cfg_config *cfg;
    struct gw_identify local; /* buckets (plan, stamp) and the /gateway/bot re-read */
    char prefix[64];
    int slot_px;
    void (*wake)(void *arg);
    void *wake_arg;

    pthread_mutex_t lock; /* everything below */
    int n_buckets;
    int total_shards;
    struct req *reqs;
    size_t n_reqs, cap_reqs;
    int total, remaining; /* the budget as Redis holds it; remaining -1 unknown */
    uint64_t reset_at_wall;
    int stopped; /* the reserve holds IDENTIFYs back until a refresh */
    int push;    /* a /gateway/bot reading waits to go to Redis */
    int push_total, push_remaining;
    uint64_t push_reset_wall;
    int refreshing; /* refresh() under way: done not called yet */
    int reread;     /* ... and only the re-read of `budget` is left */
    void (*done)(void *arg, int rc);
    void *done_arg;
    int stopping;
    int taken; /* reserved by take(), not yet given back */
    unsigned long long spent;
    struct gap gaps[MAX_GAPS];
    size_t n_gaps;
    uint64_t gap_no;
};

/* ---- helpers (lock held where they touch the shared fields) ---- */

static int reserve_of(const struct cl__identify *id)
{
    int five = id->total > 0 ? id->total * 5 / 100 : 0;
    return id->total_shards > five ? id->total_shards : five;
}

static void wake(struct cl__identify *id)
{
    if (id->wake)
        id->wake(id->wake_arg);
}

static struct req *find_req(struct cl__identify *id, int shard)
{
    for (size_t i = 0; i < id->n_reqs; i++)
        if (id->reqs[i].shard == shard)
            return &id->reqs[i];
    return NULL;
}

static void drop_req(struct cl__identify *id, struct req *q)
{
    *q = id->reqs[--id->n_reqs];
}

/* A new PENDING request for shard; NULL when memory ran out. */
static struct req *add_req(struct cl__identify *id, int shard, uint64_t now)
{
    if (id->n_reqs == id->cap_reqs) {
        size_t cap = id->cap_reqs ? 2 * id->cap_reqs : 16;
        struct req *n = realloc(id->reqs, cap * sizeof(*n));
        if (!n)
            return NULL;
        id->reqs = n;
        id->cap_reqs = cap;
    }
    struct req *q = &id->reqs[id->n_reqs++];
    *q = (struct req){.shard = shard, .state = REQ_PENDING, .at_ms = now};
    return q;
}

static uint64_t wall_to_mono(uint64_t wall)
{
    uint64_t now_wall = sh_wall_ms(), now = sh_now_ms();
    return wall > now_wall ? now + (wall - now_wall) : now;
}

/* ---- the gateway's side: the ops ---- */

static int ci_start(void *ud, int max_concurrency, const struct gw_bot_info *bot)
{
    struct cl__identify *id = ud;
    int rc = id->local.ops->start(id->local.ud, max_concurrency, bot);
    if (rc)
        return rc;
    pthread_mutex_lock(&id->lock);
    id->n_buckets = max_concurrency > 0 ? max_concurrency : 1;
    if (!id->total_shards)
        id->total_shards =
            id->cfg->shards.mode == CFG_SHARDS_AUTO ? bot->shards : id->cfg->shards.total;
    if (bot->session_total > 0) {
        id->push = 1;
        id->push_total = bot->session_total;
        id->push_remaining = bot->session_remaining;
        id->push_reset_wall = sh_wall_ms() + bot->reset_after_ms;
        if (id->remaining < 0) { /* until Redis answers */
            id->total = bot->session_total;
            id->remaining = bot->session_remaining;
            id->reset_at_wall = id->push_reset_wall;
        }
    }
    pthread_mutex_unlock(&id->lock);
    wake(id);
    return SH_OK;
}

static uint64_t ci_plan(void *ud, int shard_id, uint64_t not_before_ms)
{
    struct cl__identify *id = ud;
    return id->local.ops->plan(id->local.ud, shard_id, not_before_ms);
}

/* An answer older than half a slot is stale: the slot it stood for may be gone. */
static uint64_t answer(struct cl__identify *id, struct req *q, uint64_t now, int *ask)
{
    if (q->state != REQ_PENDING && now - q->at_ms > (uint64_t)id->slot_px / 2) {
        *q = (struct req){.shard = q->shard, .state = REQ_PENDING, .at_ms = now};
        *ask = 1;
    }
    uint64_t rc = ASK_AGAIN_MS;
    if (q->state == REQ_GRANTED)
        rc = 0;
    else if (q->state == REQ_BUSY)
        rc = q->wait_ms ? q->wait_ms : 1;
    else if (q->state == REQ_REFUSED)
        rc = GW_IDENTIFY_REFUSED;
    if (q->state != REQ_PENDING)
        drop_req(id, q); /* answered once; the next wait() asks again */
    return rc;
}

static uint64_t ci_wait(void *ud, int shard_id, uint64_t now_ms)
{
    struct cl__identify *id = ud;
    uint64_t now = sh_now_ms(), rc;
    (void)now_ms;
    int ask = 0;
    pthread_mutex_lock(&id->lock);
    struct req *q = find_req(id, shard_id);
    if (q) {
        rc = answer(id, q, now, &ask);
    } else if (id->stopped) {
        rc = GW_IDENTIFY_REFUSED;
    } else {
        ask = add_req(id, shard_id, now) != NULL;
        rc = ASK_AGAIN_MS;
    }
    pthread_mutex_unlock(&id->lock);
    if (ask)
        wake(id);
    return rc;
}

static void ci_stamp(void *ud, int shard_id, uint64_t now_ms)
{
    struct cl__identify *id = ud;
    id->local.ops->stamp(id->local.ud, shard_id, now_ms);
}

/* The `identify` script spends the session; these only keep count here. */
static int ci_take(void *ud)
{
    struct cl__identify *id = ud;
    pthread_mutex_lock(&id->lock);
    int ok = !id->stopped && !id->refreshing && !id->stopping;
    id->taken += ok;
    pthread_mutex_unlock(&id->lock);
    return ok ? SH_OK : SH_EAGAIN;
}

static void ci_give_back(void *ud)
{
    struct cl__identify *id = ud;
    pthread_mutex_lock(&id->lock);
    if (id->taken > 0)
        id->taken--;
    pthread_mutex_unlock(&id->lock);
}

static void ci_spend(void *ud)
{
    struct cl__identify *id = ud;
    pthread_mutex_lock(&id->lock);
    id->spent++;
    pthread_mutex_unlock(&id->lock);
}

static void fill_budget(struct cl__identify *id, struct gw_budget *out)
{
    out->total = id->total;
    out->remaining = id->remaining > 0 ? id->remaining : 0;
    out->reset_at_ms = id->reset_at_wall ? wall_to_mono(id->reset_at_wall) : 0;
    out->reserve = reserve_of(id);
}

static void ci_budget(void *ud, struct gw_budget *out)
{
    struct cl__identify *id = ud;
    pthread_mutex_lock(&id->lock);
    fill_budget(id, out);
    pthread_mutex_unlock(&id->lock);
}

/* The wrapped re-read of /gateway/bot ended (its thread): push it, then re-read `budget`. */
static void local_done(void *arg, int rc)
{
    struct cl__identify *id = arg;
    struct gw_budget b;
    if (!rc)
        id->local.ops->budget(id->local.ud, &b);
    pthread_mutex_lock(&id->lock);
    void (*done)(void *, int) = NULL;
    void *done_arg = id->done_arg;
    if (id->refreshing && (rc || id->stopping)) {
        done = id->done;
        id->refreshing = 0;
    } else if (id->refreshing) {
        id->push = 1;
        id->push_total = b.total;
        id->push_remaining = b.remaining;
        id->push_reset_wall =
            sh_wall_ms() + (b.reset_at_ms > sh_now_ms() ? b.reset_at_ms - sh_now_ms() : 0);
        id->reread = 1;
    }
    pthread_mutex_unlock(&id->lock);
    if (done)
        done(done_arg, rc ? rc : SH_ECLOSED);
    else
        wake(id);
}

static int ci_refresh(void *ud, void (*done)(void *arg, int rc), void *arg)
{
    struct cl__identify *id = ud;
    pthread_mutex_lock(&id->lock);
    if (id->stopping || id->refreshing) {
        int rc = id->stopping ? SH_ECLOSED : SH_EAGAIN;
        pthread_mutex_unlock(&id->lock);
        return rc;
    }
    id->refreshing = 1;
    id->done = done;
    id->done_arg = arg;
    /* the period ended (or was never known): Discord has the new budget */
    int via_discord = !id->reset_at_wall || id->reset_at_wall <= sh_wall_ms();
    id->reread = !via_discord;
    pthread_mutex_unlock(&id->lock);
    if (via_discord) {
        int rc = id->local.ops->refresh(id->local.ud, local_done, id);
        if (rc) {
            pthread_mutex_lock(&id->lock);
            id->refreshing = 0;
            pthread_mutex_unlock(&id->lock);
            return rc;
        }
    }
    wake(id);
    return SH_OK;
}

static void ci_stop(void *ud)
{
    struct cl__identify *id = ud;
    pthread_mutex_lock(&id->lock);
    id->stopping = 1;
    pthread_mutex_unlock(&id->lock);
    id->local.ops->stop(id->local.ud); /* joins a re-read of /gateway/bot under way */
    pthread_mutex_lock(&id->lock);
    void (*done)(void *, int) = id->refreshing ? id->done : NULL;
    id->refreshing = 0;
    pthread_mutex_unlock(&id->lock);
    if (done)
        done(id->done_arg, SH_ECLOSED);
}

static void ci_lost(void *ud, int shard_id, const char *session_id, uint64_t seq, const char *why)
{
    struct cl__identify *id = ud;
    static struct sh_log_limit lim;
    pthread_mutex_lock(&id->lock);
    int full = id->n_gaps == MAX_GAPS;
    if (full) /* Redis has been away long: the oldest goes */
        memmove(id->gaps, id->gaps + 1, (MAX_GAPS - 1) * sizeof(id->gaps[0]));
    struct gap *g = &id->gaps[full ? MAX_GAPS - 1 : id->n_gaps++];
    g->no = ++id->gap_no;
    g->shard = shard_id;
    snprintf(g->session_id, sizeof(g->session_id), "%s", session_id ? session_id : "");
    g->seq = seq;
    snprintf(g->why, sizeof(g->why), "%s", why ? why : "");
    pthread_mutex_unlock(&id->lock);
    if (full)
        log_warn_limited(&lim,
                         "msg=\"lost sessions wait for Redis: the oldest is not recorded "
                         "in the gaps stream\" shard=%d",
                         shard_id);
    wake(id);
}

static const struct gw_identify_ops cluster_ops = {
    .start = ci_start,
    .plan = ci_plan,
    .wait = ci_wait,
    .stamp = ci_stamp,
    .take = ci_take,
    .give_back = ci_give_back,
    .spend = ci_spend,
    .budget = ci_budget,
    .refresh = ci_refresh,
    .stop = ci_stop,
    .lost = ci_lost,
};

/* ---- the coordination thread's side ---- */

static void key(const struct cl__identify *id, char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s%s", id->prefix, name);
}

static long long int_at(const redisReply *rep, size_t i)
{
    if (!rep || rep->type != REDIS_REPLY_ARRAY || i >= rep->elements)
        return 0;
    const redisReply *e = rep->element[i];
    if (e->type == REDIS_REPLY_INTEGER)
        return e->integer;
    return e->type == REDIS_REPLY_STRING ? strtoll(e->str, NULL, 10) : 0;
}

/* HMGET budget into the cache (a missing hash changes nothing). 0 or SH_ENET. */
static int read_budget(struct cl__identify *id, struct cl__redis *r)
{
    char k[128];
    key(id, k, sizeof(k), "budget");
    redisReply *rep = cl__redis_cmd(r, "HMGET %s total remaining reset_at", k);
    if (!rep)
        return SH_ENET;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
        rep->element[0]->type == REDIS_REPLY_STRING &&
        rep->element[1]->type == REDIS_REPLY_STRING) {
        pthread_mutex_lock(&id->lock);
        id->total = (int)int_at(rep, 0);
        id->remaining = (int)int_at(rep, 1);
        id->reset_at_wall = (uint64_t)int_at(rep, 2);
        pthread_mutex_unlock(&id->lock);
    }
    freeReplyObject(rep);
    return SH_OK;
}

/* A reading of /gateway/bot into `budget` (whole for a new period, else only downwards). */
static int serve_push(struct cl__identify *id, struct cl__redis *r)
{
    pthread_mutex_lock(&id->lock);
    int go = id->push, total = id->push_total, remaining = id->push_remaining;
    uint64_t reset = id->push_reset_wall;
    id->push = 0;
    pthread_mutex_unlock(&id->lock);
    if (!go)
        return SH_OK;
    char k[128], t[16], rem[16], at[24], now[24];
    key(id, k, sizeof(k), "budget");
    snprintf(t, sizeof(t), "%d", total);
    snprintf(rem, sizeof(rem), "%d", remaining);
    snprintf(at, sizeof(at), "%llu", (unsigned long long)reset);
    snprintf(now, sizeof(now), "%llu", (unsigned long long)sh_wall_ms());
    const char *argv[] = {k, t, rem, at, now};
    redisReply *rep = cl__redis_script(r, CL_SCRIPT_BUDGET, 1, 5, argv, NULL);
    if (!rep) {
        pthread_mutex_lock(&id->lock);
        if (!id->push) { /* not replaced meanwhile: try again next pass */
            id->push = 1;
            id->push_total = total;
            id->push_remaining = remaining;
            id->push_reset_wall = reset;
        }
        pthread_mutex_unlock(&id->lock);
        return SH_ENET;
    }
    freeReplyObject(rep);
    return read_budget(id, r);
}

static void log_stop(int remaining, int reserve, uint64_t reset_at_wall)
{
    char when[32] = "unknown";
    if (reset_at_wall) {
        time_t at = (time_t)(reset_at_wall / 1000);
        struct tm tm;
        gmtime_r(&at, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    log_error("msg=\"identify budget at its reserve: IDENTIFYs stop cluster-wide until it "
              "resets\" remaining=%d reserve=%d resets_at=%s",
              remaining, reserve, when);
}

/* Store the `identify` script's answer for shard (lock held). 1 when the reserve stopped it. */
static int store_answer(struct cl__identify *id, int shard, const redisReply *rep)
{
    static struct sh_log_limit lim;
    struct req *q = find_req(id, shard);
    long long code = int_at(rep, 0), a = int_at(rep, 1), b = int_at(rep, 2);
    int ok = rep->type == REDIS_REPLY_ARRAY && rep->elements >= 2;
    int stopped_now = 0;
    if (!q || q->state != REQ_PENDING)
        return 0;
    q->at_ms = sh_now_ms();
    if (ok && code == 0) {
        q->state = REQ_GRANTED;
        if (a >= 0)
            id->remaining = (int)a;
    } else if (ok && code == -1) {
        q->state = REQ_BUSY;
        q->wait_ms = (uint64_t)(a > 0 ? a : 1) + sh_rand_u64() % (JITTER_MS + 1);
    } else if (ok && code == -2) {
        q->state = REQ_REFUSED;
        id->remaining = (int)a;
        if (b > 0)
            id->reset_at_wall = (uint64_t)b;
        stopped_now = !id->stopped;
        id->stopped = 1;
    } else { /* an error answer (Redis out of memory, say): ask again in a second */
        q->state = REQ_BUSY;
        q->wait_ms = 1000;
        log_warn_limited(&lim, "msg=\"identify script failed\" shard=%d error=\"%s\"", shard,
                         rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected answer");
    }
    return stopped_now;
}

static int run_identify(struct cl__identify *id, struct cl__redis *r, int shard, int reserve,
                        int n_buckets)
{
    char budget[128], slot[160], res[16], px[16], holder[160];
    key(id, budget, sizeof(budget), "budget");
    snprintf(slot, sizeof(slot), "%sidslot:%d", id->prefix, shard % n_buckets);
    snprintf(res, sizeof(res), "%d", reserve);
    snprintf(px, sizeof(px), "%d", id->slot_px);
    snprintf(holder, sizeof(holder), "%s:%d", id->cfg->cluster_node ? id->cfg->cluster_node : "",
             shard);
    const char *argv[] = {budget, slot, res, px, holder};
    redisReply *rep = cl__redis_script(r, CL_SCRIPT_IDENTIFY, 2, 5, argv, NULL);
    if (!rep)
        return SH_ENET;
    pthread_mutex_lock(&id->lock);
    int stopped_now = store_answer(id, shard, rep);
    int remaining = id->remaining;
    uint64_t reset = id->reset_at_wall;
    pthread_mutex_unlock(&id->lock);
    freeReplyObject(rep);
    if (stopped_now)
        log_stop(remaining, reserve, reset);
    return SH_OK;
}

static int serve_requests(struct cl__identify *id, struct cl__redis *r)
{
    int shards[MAX_SERVED_PER_PASS], n = 0;
    pthread_mutex_lock(&id->lock);
    for (size_t i = 0; i < id->n_reqs && n < MAX_SERVED_PER_PASS; i++)
        if (id->reqs[i].state == REQ_PENDING)
            shards[n++] = id->reqs[i].shard;
    int reserve = reserve_of(id), n_buckets = id->n_buckets > 0 ? id->n_buckets : 1;
    pthread_mutex_unlock(&id->lock);
    for (int i = 0; i < n; i++) {
        int rc = run_identify(id, r, shards[i], reserve, n_buckets);
        if (rc)
            return rc;
    }
    return SH_OK;
}

/* A refresh under way whose last step is re-reading `budget`: read it and call done. */
static int serve_reread(struct cl__identify *id, struct cl__redis *r)
{
    pthread_mutex_lock(&id->lock);
    int go = id->refreshing && id->reread && !id->push;
    pthread_mutex_unlock(&id->lock);
    if (!go)
        return SH_OK;
    int rc = read_budget(id, r);
    if (rc)
        return rc;
    pthread_mutex_lock(&id->lock);
    void (*done)(void *, int) = NULL;
    if (id->refreshing && id->reread) {
        done = id->done;
        id->refreshing = 0;
        id->reread = 0;
        id->stopped = id->total > 0 && id->remaining <= reserve_of(id);
    }
    void *arg = id->done_arg;
    pthread_mutex_unlock(&id->lock);
    if (done)
        done(arg, SH_OK);
    return SH_OK;
}

static int serve_gaps(struct cl__identify *id, struct cl__redis *r)
{
    char k[128], shard[16], seq[24];
    key(id, k, sizeof(k), "gaps");
    for (;;) {
        pthread_mutex_lock(&id->lock);
        struct gap g = id->n_gaps ? id->gaps[0] : (struct gap){0};
        int any = id->n_gaps > 0;
        pthread_mutex_unlock(&id->lock);
        if (!any)
            return SH_OK;
        snprintf(shard, sizeof(shard), "%d", g.shard);
        snprintf(seq, sizeof(seq), "%llu", (unsigned long long)g.seq);
        const char *argv[] = {k,   shard, g.session_id,
                              seq, g.why, id->cfg->cluster_node ? id->cfg->cluster_node : ""};
        redisReply *rep = cl__redis_script(r, CL_SCRIPT_GAP, 1, 6, argv, NULL);
        if (!rep)
            return SH_ENET;
        freeReplyObject(rep);
        pthread_mutex_lock(&id->lock);
        for (size_t i = 0; i < id->n_gaps; i++) {
            if (id->gaps[i].no == g.no) {
                memmove(&id->gaps[i], &id->gaps[i + 1], (id->n_gaps - i - 1) * sizeof(g));
                id->n_gaps--;
                break;
            }
        }
        pthread_mutex_unlock(&id->lock);
    }
}

int cl__identify_serve(struct cl__identify *id, struct cl__redis *r)
{
    int rc = serve_push(id, r);
    if (!rc)
        rc = serve_requests(id, r);
    if (!rc)
        rc = serve_reread(id, r);
    if (!rc)
        rc = serve_gaps(id, r);
    return rc;
}

int cl__identify_pending(struct cl__identify *id)
{
    pthread_mutex_lock(&id->lock);
    int pending = id->push || (id->refreshing && id->reread) || id->n_gaps > 0;
    for (size_t i = 0; !pending && i < id->n_reqs; i++)
        pending = id->reqs[i].state == REQ_PENDING;
    pthread_mutex_unlock(&id->lock);
    return pending;
}

/* ---- life ---- */

int cl__identify_new(const struct cfg_config *cfg, struct cl__identify **out)
{
    *out = NULL;
    struct cl__identify *id = calloc(1, sizeof(*id));
    if (!id)
        return SH_ENOMEM;
    if (gw_identify_local_new(cfg, &id->local)) {
        free(id);
        return SH_ENOMEM;
    }
    id->cfg = cfg;
    id->slot_px = cfg->testing_identify_interval_ms + 500;
    id->remaining = -1;
    cl__key_prefix(cfg->token, id->prefix, sizeof(id->prefix));
    pthread_mutex_init(&id->lock, NULL);
    *out = id;
    return SH_OK;
}

void cl__identify_ops(struct cl__identify *id, struct gw_identify *out)
{
    out->ops = &cluster_ops;
    out->ud = id;
}

void cl__identify_set_total(struct cl__identify *id, int total)
{
    pthread_mutex_lock(&id->lock);
    id->total_shards = total;
    pthread_mutex_unlock(&id->lock);
}

void cl__identify_set_wake(struct cl__identify *id, void (*fn)(void *arg), void *arg)
{
    id->wake = fn;
    id->wake_arg = arg;
}

void cl__identify_status(struct cl__identify *id, struct gw_budget *out, int *stopped,
                         uint64_t *reset_at_wall_ms)
{
    pthread_mutex_lock(&id->lock);
    fill_budget(id, out);
    if (stopped)
        *stopped = id->stopped;
    if (reset_at_wall_ms)
        *reset_at_wall_ms = id->reset_at_wall;
    pthread_mutex_unlock(&id->lock);
}

void cl__identify_free(struct cl__identify *id)
{
    if (!id)
        return;
    ci_stop(id);
    gw_identify_local_free(&id->local);
    pthread_mutex_destroy(&id->lock);
    free(id->reqs);
    free(id);
}
