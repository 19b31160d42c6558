/*
 * cluster/cluster.c: cluster mode's public face (cluster.h): the node's life (new, start, stop,
 * free), the calls other threads make (checkpoints, drained, handoff requests, status), which
 * only copy under the mutex and leave the work to the coordination thread (coord.c), and the
 * small checkpoint helpers the other files share. Owns struct cl_cluster's memory.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/forward.h"
#include "cluster/internal.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/version.h"

int cl__ck_set(struct cl__ck *dst, const struct cl_checkpoint *src)
{
    char *blob = NULL;
    if (src->blob_len) {
        blob = malloc(src->blob_len + 1);
        if (!blob)
            return SH_ENOMEM;
        memcpy(blob, src->blob, src->blob_len);
        blob[src->blob_len] = '\0';
    }
    free(dst->blob);
    dst->blob = blob;
    dst->blob_len = src->blob_len;
    snprintf(dst->session_id, sizeof(dst->session_id), "%s", src->session_id);
    snprintf(dst->resume_url, sizeof(dst->resume_url), "%s", src->resume_url);
    dst->seq = src->seq;
    dst->valid = 1;
    return 0;
}

void cl__ck_move(struct cl__ck *dst, struct cl__ck *src)
{
    free(dst->blob);
    *dst = *src;
    memset(src, 0, sizeof(*src));
}

void cl__ck_clear(struct cl__ck *ck)
{
    free(ck->blob);
    memset(ck, 0, sizeof(*ck));
}

void cl__ck_view(const struct cl__ck *ck, int shard, struct cl_checkpoint *out)
{
    memset(out, 0, sizeof(*out));
    out->shard = shard;
    if (!ck->valid)
        return;
    snprintf(out->session_id, sizeof(out->session_id), "%s", ck->session_id);
    snprintf(out->resume_url, sizeof(out->resume_url), "%s", ck->resume_url);
    out->seq = ck->seq;
    out->blob = ck->blob;
    out->blob_len = ck->blob_len;
}

void cl__set_state(struct cl_cluster *c, int shard, enum cl__state st)
{
    pthread_mutex_lock(&c->mu);
    struct cl__shard *s = &c->shards[shard];
    enum cl__state was = s->state;
    s->state = st;
    if (st == CL__FREE) { /* what delivery still sends for it belongs to the holding that ended */
        cl__ck_clear(&s->pending);
        cl__ck_clear(&s->final);
        s->dirty = s->drained = 0;
    }
    s->pub_fence = st == CL__FREE ? 0 : s->fence;
    c->held += (st != CL__FREE) - (was != CL__FREE);
    pthread_mutex_unlock(&c->mu);
    sh_metric_set(c->m_held, c->held);
}

void cl__publish_fence(struct cl_cluster *c, int shard)
{
    pthread_mutex_lock(&c->mu);
    struct cl__shard *s = &c->shards[shard];
    if (s->state != CL__FREE)
        s->pub_fence = s->fence;
    pthread_mutex_unlock(&c->mu);
}

void cl__node_info(struct cl_cluster *c, char *out, size_t cap)
{
    cJSON *o = cJSON_CreateObject();
    char *txt = NULL;
    if (o && cJSON_AddStringToObject(o, "name", c->name) &&
        cJSON_AddNumberToObject(o, "epoch", (double)c->epoch) &&
        cJSON_AddStringToObject(o, "api",
                                c->cfg->cluster_advertise ? c->cfg->cluster_advertise : "") &&
        cJSON_AddNumberToObject(o, "held", c->held) &&
        cJSON_AddNumberToObject(o, "max_shards", c->max_shards) &&
        cJSON_AddStringToObject(o, "may", c->may_ranges) &&
        cJSON_AddStringToObject(o, "version", SHARDHOOK_VERSION) &&
        cJSON_AddNumberToObject(o, "started", (double)c->started_wall_ms))
        txt = cJSON_PrintUnformatted(o);
    snprintf(out, cap, "%s", txt ? txt : "{}");
    cJSON_free(txt);
    cJSON_Delete(o);
}

static void register_metrics(struct cl_cluster *c)
{
    c->m_renewals = sh_metric_counter("shardhook_cluster_lease_renewals_total",
                                      "Node lease renewals that Redis accepted", NULL);
    c->m_lease_failures = sh_metric_counter(
        "shardhook_cluster_lease_failures_total",
        "Lease renewals that failed (Redis unreachable, or the lease lost)", "reason");
    c->m_claims = sh_metric_counter("shardhook_cluster_claims_total",
                                    "Shards this node claimed, by how it came to them", "kind");
    c->m_takeovers = sh_metric_counter("shardhook_cluster_takeovers_total",
                                       "Shards taken over from a node whose lease ended", NULL);
    c->m_handoffs = sh_metric_counter("shardhook_cluster_handoffs_total",
                                      "Handoffs from this node, by outcome", "outcome");
    c->m_releases = sh_metric_counter("shardhook_cluster_releases_total",
                                      "Shards let go without a handoff, by reason", "reason");
    c->m_rtt = sh_metric_histogram("shardhook_cluster_redis_seconds",
                                   "Round trip of the lease renewal to Redis", NULL,
                                   SH_METRIC_BUCKETS_SECONDS);
    c->m_held = sh_metric_gauge("shardhook_cluster_shards_held", "Shards this node holds", NULL);
    c->m_degraded = sh_metric_gauge("shardhook_cluster_degraded",
                                    "1 while Redis is unreachable (fail static)", NULL);
    c->m_budget = sh_metric_gauge("shardhook_cluster_budget_remaining",
                                  "IDENTIFYs left in the cluster-wide daily budget", NULL);
    c->m_nodes_live = sh_metric_gauge("shardhook_cluster_nodes_live",
                                      "Nodes with a live lease, this one included", NULL);
}

int cl_cluster_new(const struct cfg_config *cfg, const struct cl_node_ops *ops,
                   struct cl_cluster **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg->cluster || !cfg->cluster_redis || !cfg->cluster_node || !cfg->token) {
        snprintf(err, errlen, "cluster: the config has no complete \"cluster\" block");
        return SH_ECONFIG;
    }
    if (!cfg->cluster_node[0] || strlen(cfg->cluster_node) >= CL__NAME_MAX) {
        snprintf(err, errlen, "cluster.node: must be 1 to %d bytes", CL__NAME_MAX - 1);
        return SH_ECONFIG;
    }
    struct cl_cluster *c = calloc(1, sizeof(*c));
    if (!c)
        return SH_ENOMEM;
    c->cfg = cfg;
    c->ops = *ops;
    c->lease_ms = cfg->cluster_lease_ms >= 1000 ? cfg->cluster_lease_ms : 1000;
    c->max_shards = cfg->cluster_max_shards > 0 ? cfg->cluster_max_shards : 2000;
    c->me = -1;
    snprintf(c->name, sizeof(c->name), "%s", cfg->cluster_node);
    cl__key_prefix(cfg->token, c->prefix, sizeof(c->prefix));
    cl__app_id(cfg->token, c->app, sizeof(c->app));
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->cache_mu, NULL);
    int rc = cl__redis_new(cfg->cluster_redis, 1000, &c->redis, err, errlen);
    if (rc == 0)
        rc = cl__redis_new(cfg->cluster_redis, CL__CACHE_TIMEOUT_MS, &c->cache_redis, err, errlen);
    if (rc == 0 && (rc = cl__identify_new(cfg, &c->ident)) != 0)
        snprintf(err, errlen, "cluster: %s", sh_strerror(rc));
    if (rc) {
        cl_cluster_free(c);
        return rc;
    }
    register_metrics(c);
    *out = c;
    return 0;
}

void cl_cluster_identify(struct cl_cluster *c, struct gw_identify *out)
{
    cl__identify_ops(c->ident, out);
}

/* The shard table and what this node announces. */
static int prepare(struct cl_cluster *c, int total, const int *ids, int n, int max_concurrency,
                   const char *webhooks_fingerprint)
{
    c->shards = calloc((size_t)total, sizeof(*c->shards));
    if (!c->shards)
        return SH_ENOMEM;
    c->total = total;
    c->max_concurrency = max_concurrency;
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < total)
            c->shards[ids[i]].may = 1;
    cl__ranges_format(ids, n, c->may_ranges, sizeof(c->may_ranges));
    snprintf(c->fingerprint, sizeof(c->fingerprint), "%s/%s", c->app,
             webhooks_fingerprint ? webhooks_fingerprint : "");
    c->started_wall_ms = sh_wall_ms();
    cl__identify_set_total(c->ident, total);
    return 0;
}

/* The epoch of this start: INCR epochs. */
static int new_epoch(struct cl_cluster *c)
{
    redisReply *r = cl__redis_cmd(c->redis, "INCR %sepochs", c->prefix);
    int rc = r && r->type == REDIS_REPLY_INTEGER && r->integer > 0 ? 0 : SH_ENET;
    if (rc == 0)
        c->epoch = (uint64_t)r->integer;
    if (r)
        freeReplyObject(r);
    return rc;
}

int cl_cluster_start(struct cl_cluster *c, int total, const int *ids, int n, int max_concurrency,
                     const char *webhooks_fingerprint, char *err, size_t errlen)
{
    if (total <= 0 || c->thread_started || c->shards) {
        snprintf(err, errlen, "cluster: bad start (total %d)", total);
        return SH_EINVAL;
    }
    int rc = prepare(c, total, ids, n, max_concurrency, webhooks_fingerprint);
    if (rc) {
        snprintf(err, errlen, "cluster: %s", sh_strerror(rc));
        return rc;
    }
    if (cl__redis_connect(c->redis) != 0) {
        snprintf(err, errlen, "cluster: cannot reach Redis at %s: %s", cl__redis_where(c->redis),
                 cl__redis_error(c->redis));
        return SH_ENET;
    }
    rc = cl__scan_nodes(c);
    rc = rc ? rc : cl__meta_check(c, err, errlen);
    if (rc == SH_ECONFIG)
        return rc;
    rc = rc ? rc : new_epoch(c);
    rc = rc ? rc : cl__register(c);
    if (rc) {
        snprintf(err, errlen, "cluster: Redis at %s failed during start: %s",
                 cl__redis_where(c->redis), cl__redis_error(c->redis));
        return SH_ENET;
    }
    c->reachable = 1;
    if (c->ops.lease_deadline)
        c->ops.lease_deadline(c->ops.ud, c->last_ok_ms + (uint64_t)c->lease_ms);
    log_info("msg=\"cluster joined\" node=\"%s\" epoch=%llu total=%d may=\"%s\" redis=\"%s\" "
             "lease_ms=%d",
             c->name, (unsigned long long)c->epoch, total, c->may_ranges, cl__redis_where(c->redis),
             c->lease_ms);
    if (cl__fwd_start(c) != 0) /* before the thread: it reads c->fwd */
        log_warn("msg=\"cannot start the forwarding worker; commands for other nodes' shards "
                 "answer 503\"");
    if (pthread_create(&c->thread, NULL, cl__coord_main, c) != 0) {
        snprintf(err, errlen, "cluster: cannot start the coordination thread");
        return SH_ENOMEM;
    }
    c->thread_started = 1;
    return 0;
}

void cl_cluster_checkpoint(struct cl_cluster *c, const struct cl_checkpoint *cp)
{
    if (!c->shards || cp->shard < 0 || cp->shard >= c->total)
        return;
    pthread_mutex_lock(&c->mu);
    struct cl__shard *s = &c->shards[cp->shard];
    if (s->state != CL__FREE && cl__ck_set(&s->pending, cp) == 0)
        s->dirty = 1;
    pthread_mutex_unlock(&c->mu);
}

void cl_cluster_drained(struct cl_cluster *c, int shard, const struct cl_checkpoint *cp)
{
    if (!c->shards || shard < 0 || shard >= c->total)
        return;
    pthread_mutex_lock(&c->mu);
    struct cl__shard *s = &c->shards[shard];
    if (!cp || cl__ck_set(&s->final, cp) != 0)
        cl__ck_clear(&s->final);
    s->drained = 1;
    pthread_mutex_unlock(&c->mu);
}

/* Under mu: 0 when target (or, NULL, some live node) may take shard now. */
static int check_target(struct cl_cluster *c, int shard, const char *target)
{
    int found = 0;
    for (int i = 0; i < c->pub_n; i++) {
        const struct cl__node *nd = &c->pub_nodes[i];
        if (target && strcmp(nd->name, target))
            continue;
        if (target && (!nd->epoch || !strcmp(nd->name, c->name)))
            return SH_EINVAL;
        found = 1;
        if (nd->epoch && strcmp(nd->name, c->name) && nd->held < nd->max_shards &&
            cl__node_may(nd, shard))
            return 0;
    }
    return target && !found ? SH_EINVAL : SH_EAGAIN;
}

int cl_cluster_handoff(struct cl_cluster *c, int shard, const char *target)
{
    if (!c->shards || shard < 0 || shard >= c->total)
        return SH_ENOTFOUND;
    if (target && (!target[0] || strlen(target) >= CL__NAME_MAX))
        return SH_EINVAL;
    pthread_mutex_lock(&c->mu);
    struct cl__shard *s = &c->shards[shard];
    int rc = c->stopping || c->quit ? SH_ECLOSED : s->state != CL__HELD ? SH_ENOTFOUND : 0;
    rc = rc ? rc : check_target(c, shard, target);
    if (rc == 0 && c->degraded)
        rc = SH_EAGAIN;
    if (rc == 0) {
        s->req = 1;
        snprintf(s->req_target, sizeof(s->req_target), "%s", target ? target : "");
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void cl_cluster_stop(struct cl_cluster *c, int timeout_ms)
{
    if (!c->thread_started)
        return;
    pthread_mutex_lock(&c->mu);
    c->stopping = 1;
    c->stop_deadline_ms = sh_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    c->thread_started = 0;
    cl__fwd_stop(c);
}

void cl_cluster_status(struct cl_cluster *c, struct cl_status *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&c->mu);
    out->reachable = c->reachable;
    out->degraded = c->degraded;
    out->shards_held = c->held;
    out->nodes_live = c->live;
    out->epoch = c->epoch;
    pthread_mutex_unlock(&c->mu);
    struct gw_budget b;
    uint64_t reset_wall = 0;
    int stopped = 0;
    cl__identify_status(c->ident, &b, &stopped, &reset_wall);
    out->budget_total = b.total;
    out->budget_remaining = b.remaining;
    out->budget_reserve = b.reserve;
    out->identify_stopped = stopped;
    out->reset_at_wall = reset_wall;
}

void cl_cluster_free(struct cl_cluster *c)
{
    if (!c)
        return;
    if (c->thread_started) { /* no stop: end at once, as a crash would (tests) */
        pthread_mutex_lock(&c->mu);
        c->quit = 1;
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
    }
    for (int i = 0; c->shards && i < c->total; i++) {
        cl__ck_clear(&c->shards[i].cur);
        cl__ck_clear(&c->shards[i].pending);
        cl__ck_clear(&c->shards[i].final);
    }
    cl__status_free(c);
    cl__fwd_free(c);
    free(c->shards);
    cl__identify_free(c->ident);
    cl__redis_free(c->redis);
    cl__redis_free(c->cache_redis);
    pthread_mutex_destroy(&c->cache_mu);
    pthread_mutex_destroy(&c->mu);
    free(c);
}
