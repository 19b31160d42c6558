/*
 * cache/cache.c: the entity cache's life cycle and thread (cache/cache.h): the bounded queue
 * of chunks the delivery thread pushes, the cache thread that applies them (apply.c) and
 * writes snapshots when asked or due (snapshot.c), the read-write lock readers share, CA_STATS
 * and the metrics.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache_int.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/metrics.h"

struct ca__snapreq {
    struct ca__snapreq *next;
    int shard;
    uint64_t target; /* c->pushed when asked */
    int busy, done, rc;
};

static struct sh_metric *m_lag, *m_queued, *m_dropped, *m_entities, *m_bytes;

static void collect(void *ud)
{
    struct ca_cache *c = ud;
    pthread_mutex_lock(&c->lock);
    size_t queued = c->q_events;
    pthread_mutex_unlock(&c->lock);
    sh_metric_set(m_queued, (double)queued);
    sh_metric_set(m_lag, (double)atomic_load(&c->lag_ms) / 1000.0);
    pthread_rwlock_rdlock(&c->rw);
    for (int k = 0; k < CA__K_COUNT; k++) {
        sh_metric_set(m_entities, (double)c->st.count[k], ca__kind_names[k]);
        sh_metric_set(m_bytes, (double)c->st.kbytes[k], ca__kind_names[k]);
    }
    pthread_rwlock_unlock(&c->rw);
}

static void register_metrics(void)
{
    m_lag = sh_metric_gauge("shardhook_cache_lag_seconds",
                            "How far the entity cache is behind the gateway", "");
    m_queued = sh_metric_gauge("shardhook_cache_queued_events",
                               "Events waiting for the entity cache's thread", "");
    m_dropped = sh_metric_counter("shardhook_cache_dropped_events_total",
                                  "Events the entity cache dropped because it fell behind", "");
    m_entities = sh_metric_gauge("shardhook_cache_entities", "Entities the cache holds", "kind");
    m_bytes = sh_metric_gauge("shardhook_cache_bytes", "Bytes the cache holds, by kind", "kind");
}

static int init_sync(struct ca_cache *c)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&c->wake, &ca) || pthread_cond_init(&c->done, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&c->lock, NULL);
    pthread_rwlockattr_t ra; /* readers never starve the cache thread (glibc prefers readers) */
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&c->rw, &ra);
    pthread_rwlockattr_destroy(&ra);
    sh_queue_init(&c->q);
    return rc ? SH_ENOMEM : 0;
}

int ca_cache_new(const struct cfg_config *cfg, int total, const struct ca_snapshot_io *io,
                 struct ca_cache **out, char *err, size_t errlen)
{
    *out = NULL;
    if (total < 1 || total > 65535) {
        snprintf(err, errlen, "cache: invalid shard total %d", total);
        return SH_EINVAL;
    }
    struct ca_cache *c = calloc(1, sizeof *c);
    if (c) {
        c->st.shards = calloc((size_t)total, sizeof *c->st.shards);
        c->dedup = calloc(CA__DEDUP_SLOTS, sizeof *c->dedup);
        c->lossy_at = calloc((size_t)total, sizeof *c->lossy_at);
        c->forgot_at = calloc((size_t)total, sizeof *c->forgot_at);
        c->snap_pending = calloc((size_t)total, sizeof *c->snap_pending);
    }
    if (!c || !c->st.shards || !c->dedup || !c->lossy_at || !c->forgot_at || !c->snap_pending ||
        init_sync(c) < 0) {
        if (c) {
            free(c->st.shards);
            free(c->dedup);
            free(c->lossy_at);
            free((void *)c->forgot_at);
            free((void *)c->snap_pending);
        }
        free(c);
        snprintf(err, errlen, "cache: out of memory");
        return SH_ENOMEM;
    }
    c->cfg = cfg;
    c->loads_tail = &c->loads;
    c->applying = -1;
    c->total = c->st.total = total;
    c->st.kinds = cfg->cache_kinds;
    c->st.max_bytes = cfg->cache_max_bytes ? cfg->cache_max_bytes : (size_t)1 << 30;
    if (io && (io->put || io->get)) {
        c->io = *io;
        c->has_io = 1;
    }
    register_metrics();
    sh_metrics_on_collect(collect, c);
    *out = c;
    return 0;
}

void ca_cache_push(struct ca_cache *c, struct gw_chunk *chunk)
{
    static struct sh_log_limit lim;
    size_t size = chunk->data.len + chunk->n * sizeof *chunk->ev;
    pthread_mutex_lock(&c->lock);
    int drop = c->stopping || c->q_bytes + size > CA__QUEUE_MAX_BYTES;
    int first = 0;
    size_t queued = c->q_bytes;
    if (!drop) {
        c->q_bytes += size;
        c->q_events += chunk->n;
        c->pushed++;
        if (sh_queue_push(&c->q, &chunk->node))
            pthread_cond_signal(&c->wake);
    } else {
        first = !c->dropping;
        c->dropping = 1;
        for (size_t i = 0; i < chunk->n; i++)
            if (chunk->ev[i].shard < c->total)
                c->lossy_at[chunk->ev[i].shard] = c->pushed + 1;
    }
    pthread_mutex_unlock(&c->lock);
    if (!drop)
        return;
    atomic_fetch_add(&c->dropped, chunk->n);
    sh_metric_add(m_dropped, (double)chunk->n);
    if (first)
        log_warn_limited(&lim,
                         "msg=\"entity cache fell behind: dropping events for the cache "
                         "(delivery goes on)\" queued_bytes=%zu",
                         queued);
    gw_chunk_free(chunk);
}

/* Apply the chunks taken (push order) and free them. */
static void apply_all(struct ca_cache *c, struct sh_qnode *n)
{
    uint64_t k = 0;
    pthread_mutex_lock(&c->lock);
    uint64_t base = c->applied;
    pthread_mutex_unlock(&c->lock);
    for (struct sh_qnode *nx; n; n = nx) {
        nx = n->next;
        struct gw_chunk *ch = SH_QUEUE_ITEM(n, struct gw_chunk, node);
        c->cur_seq = base + k + 1;
        if (atomic_load(&c->n_loads))
            ca__apply_loads(c, c->cur_seq); /* snapshots read before this chunk came */
        ca__apply_chunk(c, ch);
        gw_chunk_free(ch);
        k++;
    }
    pthread_mutex_lock(&c->lock);
    c->applied += k;
    uint64_t applied = c->applied;
    pthread_mutex_unlock(&c->lock);
    if (atomic_load(&c->n_loads))
        ca__apply_loads(c, applied + 1); /* every chunk pushed before them is applied */
}

/* Answer the snapshot requests whose chunks are all applied (c->lock held on entry/exit). */
static void serve_requests(struct ca_cache *c)
{
    for (;;) {
        struct ca__snapreq *r = c->reqs;
        while (r && (r->busy || r->target > c->applied))
            r = r->next;
        if (!r)
            return;
        r->busy = 1;
        int shard = r->shard;
        pthread_mutex_unlock(&c->lock);
        int rc = ca__snapshot_shards(c, shard);
        pthread_mutex_lock(&c->lock);
        for (struct ca__snapreq **p = &c->reqs; *p; p = &(*p)->next)
            if (*p == r) { /* still waiting (not timed out) */
                *p = r->next;
                r->rc = rc;
                r->done = 1;
                break;
            }
        pthread_cond_broadcast(&c->done);
    }
}

/* Periodic snapshots of the shards that changed. */
static void periodic(struct ca_cache *c, uint64_t now)
{
    int every = c->cfg->cache_snapshot_interval_ms;
    if (!c->has_io || every <= 0 || now < c->next_snap_ms)
        return;
    for (int i = 0; c->next_snap_ms && i < c->total; i++) {
        pthread_rwlock_rdlock(&c->rw);
        int due = c->st.shards[i].changed && c->st.shards[i].guilds > 0;
        pthread_rwlock_unlock(&c->rw);
        if (due)
            ca__snapshot_write(c, i);
    }
    c->next_snap_ms = now + (uint64_t)every;
}

static void wait_work(struct ca_cache *c)
{
    uint64_t now = sh_now_ms();
    int every = c->cfg->cache_snapshot_interval_ms;
    if (c->has_io && every > 0 && c->next_snap_ms > now) {
        uint64_t until = c->next_snap_ms;
        struct timespec ts = {(time_t)(until / 1000), (long)(until % 1000) * 1000000L};
        pthread_cond_timedwait(&c->wake, &c->lock, &ts);
    } else if (!(c->has_io && every > 0)) {
        pthread_cond_wait(&c->wake, &c->lock);
    }
}

static void *run(void *arg)
{
    struct ca_cache *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        /* snapshots waiting to apply go first (apply_all): a request served before them would
           write the shard without what they bring */
        if (sh_queue_empty(&c->q) && !c->stopping && !atomic_load(&c->n_loads)) {
            atomic_store(&c->lag_ms, 0);
            serve_requests(c);
            if (sh_queue_empty(&c->q) && !c->stopping && !atomic_load(&c->n_loads))
                wait_work(c);
        }
        struct sh_qnode *n = sh_queue_take(&c->q);
        c->q_bytes = 0;
        c->q_events = 0;
        c->dropping = 0;
        int stopping = c->stopping;
        pthread_mutex_unlock(&c->lock);
        apply_all(c, n);
        pthread_mutex_lock(&c->lock);
        serve_requests(c);
        pthread_mutex_unlock(&c->lock);
        periodic(c, sh_now_ms());
        if (stopping && !n)
            break;
    }
    return NULL;
}

int ca_cache_start(struct ca_cache *c)
{
    pthread_mutex_lock(&c->lock); /* ca_cache_load reads started under it */
    c->stopping = 0;              /* a stopped cache may start again */
    c->started = 1;
    pthread_mutex_unlock(&c->lock);
    if (pthread_create(&c->th, NULL, run, c) != 0) {
        pthread_mutex_lock(&c->lock);
        c->started = 0;
        pthread_mutex_unlock(&c->lock);
        return SH_ENOMEM;
    }
    return 0;
}

int ca_cache_snapshot(struct ca_cache *c, int shard, int timeout_ms)
{
    if (!c->has_io)
        return 0;
    if (!c->started)
        return ca__snapshot_shards(c, shard);
    struct ca__snapreq r = {.shard = shard};
    uint64_t until = sh_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    struct timespec ts = {(time_t)(until / 1000), (long)(until % 1000) * 1000000L};
    pthread_mutex_lock(&c->lock);
    r.target = c->pushed;
    r.next = c->reqs;
    c->reqs = &r;
    pthread_cond_signal(&c->wake);
    while (!r.done && pthread_cond_timedwait(&c->done, &c->lock, &ts) != ETIMEDOUT)
        ;
    if (!r.done) {
        for (struct ca__snapreq **p = &c->reqs; *p; p = &(*p)->next)
            if (*p == &r) {
                *p = r.next;
                break;
            }
        r.rc = SH_ETIMEDOUT;
    }
    pthread_mutex_unlock(&c->lock);
    return r.rc;
}

void ca_cache_forget_shard(struct ca_cache *c, int shard)
{
    if (shard >= 0 && shard < c->total) {
        /* ordered with the queue: the chunks pushed so far (some perhaps being applied now)
           carry the shard's events from before the forget, and the cache thread drops them;
           set before the store is cleared, so an apply that resumes after it sees it */
        pthread_mutex_lock(&c->lock);
        uint64_t at = c->pushed;
        ca__drop_loads(c, shard); /* a snapshot still waiting would bring the guilds back */
        pthread_mutex_unlock(&c->lock);
        atomic_store(&c->forgot_at[shard], at);
        if (at > atomic_load(&c->forgot_max))
            atomic_store(&c->forgot_max, at);
    }
    pthread_rwlock_wrlock(&c->rw);
    ca__store_forget_shard(&c->st, shard);
    if (shard >= 0 && shard < c->total)
        memset(&c->st.shards[shard], 0, sizeof c->st.shards[shard]);
    ca__store_check_full(&c->st);
    pthread_rwlock_unlock(&c->rw);
    ca__clear_lossy(c, shard, UINT64_MAX);
    atomic_fetch_add(&c->dedup_gen, 1);
}

void ca__clear_lossy(struct ca_cache *c, int shard, uint64_t seq)
{
    if (shard < 0 || shard >= c->total)
        return;
    pthread_mutex_lock(&c->lock);
    if (c->lossy_at[shard] && seq >= c->lossy_at[shard])
        c->lossy_at[shard] = 0;
    pthread_mutex_unlock(&c->lock);
}

int ca__forgotten(struct ca_cache *c, int shard)
{
    if (shard < 0 || shard >= c->total)
        return 0;
    uint64_t at = atomic_load(&c->forgot_at[shard]);
    return at && c->cur_seq <= at;
}

int ca__lossy(struct ca_cache *c, int shard)
{
    pthread_mutex_lock(&c->lock);
    int lossy = c->lossy_at[shard] != 0;
    pthread_mutex_unlock(&c->lock);
    return lossy;
}

void ca_cache_stop(struct ca_cache *c)
{
    if (!c || !c->started)
        return;
    pthread_mutex_lock(&c->lock);
    c->stopping = 1;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->th, NULL);
    c->started = 0;
}

void ca_cache_free(struct ca_cache *c)
{
    if (!c)
        return;
    ca_cache_stop(c);
    sh_metrics_off_collect(collect, c);
    for (struct sh_qnode *n = sh_queue_take(&c->q), *nx; n; n = nx) {
        nx = n->next;
        gw_chunk_free(SH_QUEUE_ITEM(n, struct gw_chunk, node));
    }
    sh_queue_destroy(&c->q);
    ca__free_loads(c);
    free((void *)c->snap_pending);
    ca__store_free(&c->st);
    free(c->dedup);
    free(c->lossy_at);
    free((void *)c->forgot_at);
    free(c->items);
    pthread_rwlock_destroy(&c->rw);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wake);
    pthread_cond_destroy(&c->done);
    free(c);
}

/* The loading guilds of each shard (one pass, not one per shard) and in all. */
static long long count_loading(const struct ca_cache *c, long long *loading)
{
    long long all = 0;
    for (size_t j = 0; j < c->st.guilds.cap; j++) {
        const struct ca__guild *g = c->st.guilds.keys[j] ? c->st.guilds.vals[j] : NULL;
        if (!g || g->state != CA__G_LOADING)
            continue;
        all++;
        if (g->shard >= 0 && g->shard < c->total)
            loading[g->shard]++;
    }
    return all;
}

static int write_shards(struct ca_cache *c, const long long *loading, struct sh_buf *out)
{
    int rc = sh_buf_append_str(out, "\"shards\":[");
    for (int i = 0, k = 0; rc == 0 && i < c->total; i++) {
        const struct ca__shard *sh = &c->st.shards[i];
        if (!sh->guilds && !sh->s)
            continue;
        rc = sh_buf_printf(out, "%s{\"id\":%d,\"s\":%llu,\"guilds\":%lld,\"loading\":%lld}",
                           k++ ? "," : "", i, (unsigned long long)sh->s, sh->guilds, loading[i]);
    }
    return rc ?: sh_buf_append(out, "]", 1);
}

int ca__read_stats(struct ca_cache *c, struct sh_buf *out)
{
    static const int kind_cfg[CA__K_COUNT] = {
        CFG_CACHE_GUILDS,    CFG_CACHE_CHANNELS,
        CFG_CACHE_CHANNELS,  CFG_CACHE_ROLES,
        CFG_CACHE_EMOJIS,    CFG_CACHE_EMOJIS,
        CFG_CACHE_MEMBERS,   CFG_CACHE_VOICE_STATES,
        CFG_CACHE_PRESENCES, -1,
    };
    size_t len0 = out->len;
    pthread_mutex_lock(&c->lock);
    size_t queued = c->q_events;
    pthread_mutex_unlock(&c->lock);
    long long *loading = calloc((size_t)c->total, sizeof *loading);
    if (!loading)
        return SH_ENOMEM;
    pthread_rwlock_rdlock(&c->rw);
    long long all_loading = count_loading(c, loading);
    int rc = sh_buf_append_str(out, "{\"kinds\":{");
    for (int k = 0; rc == 0 && k < CA__K_COUNT; k++) {
        rc = sh_buf_printf(
            out, "%s\"%s\":{\"enabled\":%s,\"count\":%lld,", k ? "," : "", ca__kind_names[k],
            kind_cfg[k] < 0 || ca__on(c, kind_cfg[k]) ? "true" : "false", c->st.count[k]);
        if (rc == 0 && k == CA__K_GUILDS) /* count: every guild held; /cache/guilds lists the
                                            available ones, count - loading */
            rc = sh_buf_printf(out, "\"loading\":%lld,", all_loading);
        rc = rc ?: sh_buf_printf(out, "\"bytes\":%lld}", c->st.kbytes[k]);
    }
    rc = rc
             ?: sh_buf_printf(out,
                              "},\"bytes\":%zu,\"max_bytes\":%zu,\"full\":%s,\"queued_events\":%zu,"
                              "\"lag_ms\":%llu,\"dropped_events\":%llu,",
                              c->st.bytes, c->st.max_bytes, c->st.full ? "true" : "false", queued,
                              (unsigned long long)atomic_load(&c->lag_ms),
                              (unsigned long long)atomic_load(&c->dropped));
    rc = rc ?: write_shards(c, loading, out);
    pthread_rwlock_unlock(&c->rw);
    free(loading);
    rc = rc ?: sh_buf_append(out, "}", 1);
    if (rc)
        out->len = len0;
    return rc;
}
