/*
 * http/h_cluster.c: what a node answers about the whole cluster in cluster mode
 * (docs/cluster.md): GET /v1/shards and /v1/shards/{id} for every shard of the cluster (this
 * node's shards from its own snapshot, the others from the cluster view the coordination thread
 * read, each with "node" and "stale"), GET /v1/cluster (nodes, budget, recent gaps, Redis, whether
 * the whole cluster is ready) and /readyz (this node holds what it should). During a Redis outage
 * a node answers for its own shards only and says "cluster":"degraded". Reads the view through
 * ctx->cluster's view op only (never Redis); owns no state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "http/internal.h"
#include "lib/errors.h"

/* The cluster view, NULL (and *r untouched) when not clustered; 500 in *r when out of memory. */
static cJSON *get_view(struct http_ctx *ctx, struct http_reply *r, int *failed)
{
    const struct http_cluster_ops *ops = atomic_load(&ctx->cluster);
    *failed = 0;
    if (!ops || !ops->view)
        return NULL;
    cJSON *v = ops->view(ops->ud);
    if (!v) {
        *failed = 1;
        http__oom(r);
    }
    return v;
}

static const cJSON *item(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = item(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = item(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static int degraded(const cJSON *v)
{
    return cJSON_IsTrue(item(v, "degraded"));
}

/* An ISO time of wall ms v (a number), or null when 0. */
static void add_time(cJSON *o, const char *k, double v)
{
    if (v > 0) {
        char ts[40];
        http__iso_time(ts, sizeof(ts), (uint64_t)v);
        cJSON_AddStringToObject(o, k, ts);
    } else {
        cJSON_AddNullToObject(o, k);
    }
}

/* A status entry of another node as GET /v1/shards shows a shard. */
static cJSON *remote_json(const cJSON *e)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON_AddNumberToObject(j, "id", num(e, "id"));
    cJSON_AddStringToObject(j, "status", str(e, "status"));
    if (num(e, "latency_ms") >= 0 && item(e, "latency_ms"))
        cJSON_AddNumberToObject(j, "latency_ms", num(e, "latency_ms"));
    else
        cJSON_AddNullToObject(j, "latency_ms");
    if (str(e, "session_id")[0])
        cJSON_AddStringToObject(j, "session_id", str(e, "session_id"));
    else
        cJSON_AddNullToObject(j, "session_id");
    static const char *const counts[] = {"seq",        "guilds",  "guilds_pending",
                                         "identifies", "resumes", NULL};
    for (int i = 0; counts[i]; i++)
        cJSON_AddNumberToObject(j, counts[i], num(e, counts[i]));
    add_time(j, "last_event_at", num(e, "last_event_at"));
    cJSON_AddNumberToObject(j, "events", num(e, "events"));
    cJSON_AddNumberToObject(j, "queued_sends", num(e, "queued_sends"));
    cJSON_AddStringToObject(j, "node", str(e, "node"));
    cJSON_AddBoolToObject(j, "stale", cJSON_IsTrue(item(e, "stale")));
    add_time(j, "status_at", num(e, "at"));
    return j;
}

/* This node's shard from its own snapshot: fresh. */
static cJSON *local_json(const struct gw_shard_info *s, const char *me)
{
    cJSON *j = http__shard_json(s);
    if (j) {
        cJSON_AddStringToObject(j, "node", me);
        cJSON_AddFalseToObject(j, "stale");
    }
    return j;
}

/*
 * Every shard of the cluster by id (by_id[total], NULL where nobody holds it and no status
 * exists): this node's own from its snapshot, the rest from the view (none when degraded, and
 * never an entry naming this node that its snapshot lacks: released here). 0, or SH_ENOMEM.
 */
static int merge(struct http_ctx *ctx, const cJSON *v, cJSON **by_id, int total)
{
    struct gw_overview ov;
    int n = 0;
    struct gw_shard_info *s = http__snapshot(ctx, &ov, &n);
    if (!s)
        return SH_ENOMEM;
    const char *me = str(v, "node");
    for (int i = 0; i < n; i++)
        if (s[i].id >= 0 && s[i].id < total && !by_id[s[i].id])
            by_id[s[i].id] = local_json(&s[i], me);
    free(s);
    const cJSON *e, *statuses = degraded(v) ? NULL : item(v, "statuses");
    cJSON_ArrayForEach(e, statuses)
    {
        int id = (int)num(e, "id");
        if (id < 0 || id >= total || by_id[id] || !strcmp(str(e, "node"), me))
            continue;
        by_id[id] = remote_json(e);
    }
    return 0;
}

static int view_total(struct http_ctx *ctx, const cJSON *v)
{
    int t = (int)num(v, "total");
    return t > 0 ? t : ctx->ops->total(ctx->gw);
}

static void free_merged(cJSON **by_id, int total)
{
    for (int i = 0; by_id && i < total; i++)
        cJSON_Delete(by_id[i]);
    free(by_id);
}

/*
 * The cluster's shards merged with this node's, by id: *by_id (total entries, NULL where none) and
 * the view they came from. 1: not clustered (the caller answers as one node); 0 with *v NULL: the
 * error is answered; 0 otherwise: the caller frees both (free_merged, cJSON_Delete).
 */
static int merged_view(struct http_ctx *ctx, struct http_reply *r, cJSON **v, cJSON ***by_id,
                       int *total)
{
    int failed;
    *by_id = NULL;
    *v = get_view(ctx, r, &failed);
    if (!*v)
        return failed ? 0 : 1;
    *total = view_total(ctx, *v);
    *by_id = calloc((size_t)(*total > 0 ? *total : 1), sizeof(**by_id));
    if (*by_id && !merge(ctx, *v, *by_id, *total))
        return 0;
    http__oom(r);
    free_merged(*by_id, *total);
    *by_id = NULL;
    cJSON_Delete(*v);
    *v = NULL;
    return 0;
}

int http__cluster_shards(struct http_ctx *ctx, struct http_reply *r)
{
    cJSON *v, **by_id;
    int total;
    if (merged_view(ctx, r, &v, &by_id, &total))
        return 1;
    if (!v)
        return 0;
    cJSON *j = cJSON_CreateObject(), *arr = j ? cJSON_AddArrayToObject(j, "shards") : NULL;
    if (!arr) {
        http__oom(r);
        goto out;
    }
    cJSON_AddNumberToObject(j, "shard_count", total);
    cJSON_AddStringToObject(j, "cluster", degraded(v) ? "degraded" : "ok");
    cJSON_AddStringToObject(j, "node", str(v, "node"));
    for (int i = 0; i < total; i++)
        if (by_id[i]) {
            cJSON_AddItemToArray(arr, by_id[i]);
            by_id[i] = NULL;
        }
    http_reply_json(r, 200, j);
    j = NULL;
out:
    free_merged(by_id, total);
    cJSON_Delete(j);
    cJSON_Delete(v);
    return 0;
}

int http__cluster_shard(struct http_ctx *ctx, int id, struct http_reply *r)
{
    cJSON *v, **by_id;
    int total;
    if (merged_view(ctx, r, &v, &by_id, &total))
        return 1;
    if (!v)
        return 0;
    if (id < total && by_id[id]) {
        cJSON_AddStringToObject(by_id[id], "cluster", degraded(v) ? "degraded" : "ok");
        http_reply_json(r, 200, by_id[id]);
        by_id[id] = NULL;
    } else if (degraded(v))
        http_reply_error(r, 404, "shard_not_found",
                         "shard %d is not held by this node, and Redis is unreachable: this node "
                         "answers for its own shards only (cluster degraded)",
                         id);
    else
        http_reply_error(r, 404, "shard_not_found", "shard %d is held by no node of this cluster",
                         id);
    free_merged(by_id, total);
    cJSON_Delete(v);
    return 0;
}

/* ---- /v1/cluster --------------------------------------------------------------------------- */

/* Shards per node name (held: listed and not stale; ready: and status ready). */
struct per_node {
    int held, ready;
};

static int node_index(const cJSON *nodes, const char *name)
{
    int i = 0;
    const cJSON *nd;
    cJSON_ArrayForEach(nd, nodes)
    {
        if (!strcmp(str(nd, "name"), name))
            return i;
        i++;
    }
    return -1;
}

/* Count per node; 1 when every shard is held by a live node, fresh and ready. */
static int count_shards(cJSON **by_id, int total, const cJSON *nodes, struct per_node *pn,
                        cJSON *summary)
{
    int held = 0, ready = 0, stale = 0;
    for (int i = 0; i < total; i++) {
        if (!by_id[i])
            continue;
        if (cJSON_IsTrue(item(by_id[i], "stale"))) {
            stale++;
            continue;
        }
        int rd = !strcmp(str(by_id[i], "status"), "ready"),
            k = node_index(nodes, str(by_id[i], "node"));
        held++, ready += rd;
        if (k >= 0)
            pn[k].held++, pn[k].ready += rd;
    }
    cJSON_AddNumberToObject(summary, "total", total);
    cJSON_AddNumberToObject(summary, "held", held);
    cJSON_AddNumberToObject(summary, "ready", ready);
    cJSON_AddNumberToObject(summary, "stale", stale);
    cJSON_AddNumberToObject(summary, "unheld", total - held - stale);
    return total > 0 && ready == total;
}

static void add_nodes(cJSON *j, const cJSON *nodes, const struct per_node *pn)
{
    cJSON *arr = cJSON_AddArrayToObject(j, "nodes");
    int k = 0;
    const cJSON *nd;
    cJSON_ArrayForEach(nd, nodes)
    {
        cJSON *o = cJSON_CreateObject();
        if (!o || !arr) {
            cJSON_Delete(o);
            return;
        }
        cJSON_AddStringToObject(o, "name", str(nd, "name"));
        if (str(nd, "api")[0])
            cJSON_AddStringToObject(o, "api", str(nd, "api"));
        else
            cJSON_AddNullToObject(o, "api");
        cJSON_AddBoolToObject(o, "alive", cJSON_IsTrue(item(nd, "alive")));
        const cJSON *age = item(nd, "lease_age_ms");
        cJSON_AddItemToObject(o, "lease_age_ms",
                              cJSON_IsNumber(age) ? cJSON_CreateNumber(age->valuedouble)
                                                  : cJSON_CreateNull());
        cJSON_AddNumberToObject(o, "shards_held", pn[k].held);
        cJSON_AddNumberToObject(o, "shards_ready", pn[k].ready);
        cJSON_AddNumberToObject(o, "max_shards", num(nd, "max_shards"));
        cJSON_AddStringToObject(o, "version", str(nd, "version"));
        add_time(o, "up_since", num(nd, "started"));
        cJSON_AddNumberToObject(o, "epoch", num(nd, "epoch"));
        cJSON_AddItemToArray(arr, o);
        k++;
    }
}

static void add_budget_redis(cJSON *j, cJSON *v)
{
    cJSON *b = cJSON_DetachItemFromObjectCaseSensitive(v, "budget");
    if (b) {
        double reset = num(b, "reset_at");
        cJSON_DeleteItemFromObjectCaseSensitive(b, "reset_at");
        add_time(b, "reset_at", reset);
        cJSON_AddItemToObject(j, "budget", b);
    }
    cJSON *rd = cJSON_AddObjectToObject(j, "redis");
    if (rd) {
        cJSON_AddBoolToObject(rd, "reachable", cJSON_IsTrue(item(v, "reachable")));
        cJSON_AddNumberToObject(rd, "rtt_ms", num(v, "redis_rtt_ms"));
        add_time(rd, "read_at", num(v, "read_at"));
    }
    cJSON *gaps = cJSON_DetachItemFromObjectCaseSensitive(v, "gaps");
    cJSON_AddItemToObject(j, "gaps", gaps ? gaps : cJSON_CreateArray());
}

int http__get_cluster(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    (void)rq;
    int failed;
    cJSON *v = get_view(ctx, r, &failed);
    if (!v)
        return failed
                   ? 0
                   : http_reply_error(r, 404, "not_clustered",
                                      "this node runs alone (no \"cluster\" block in its config)");
    int total = view_total(ctx, v);
    const cJSON *nodes = item(v, "nodes");
    int n_nodes = cJSON_GetArraySize(nodes);
    cJSON **by_id = calloc((size_t)(total > 0 ? total : 1), sizeof(*by_id));
    struct per_node *pn = calloc((size_t)n_nodes + 1, sizeof(*pn));
    cJSON *j = cJSON_CreateObject(), *summary = cJSON_CreateObject();
    if (!by_id || !pn || !j || !summary || merge(ctx, v, by_id, total)) {
        http__oom(r);
        cJSON_Delete(j);
        cJSON_Delete(summary);
        goto out;
    }
    int ready = count_shards(by_id, total, nodes, pn, summary) && !degraded(v);
    cJSON_AddStringToObject(j, "cluster", degraded(v) ? "degraded" : "ok");
    cJSON_AddStringToObject(j, "node", str(v, "node"));
    cJSON_AddBoolToObject(j, "ready", ready);
    cJSON_AddNumberToObject(j, "shard_count", total);
    cJSON_AddItemToObject(j, "shards", summary);
    cJSON_AddNumberToObject(j, "lease_ms", num(v, "lease_ms"));
    add_nodes(j, nodes, pn);
    add_budget_redis(j, v);
    http_reply_json(r, 200, j);
out:
    free(pn);
    free_merged(by_id, total);
    cJSON_Delete(v);
    return 0;
}

/* ---- /readyz ------------------------------------------------------------------------------- */

int http__cluster_readyz(struct http_ctx *ctx, struct http_reply *r)
{
    int failed;
    cJSON *v = get_view(ctx, r, &failed);
    if (!v)
        return failed ? 0 : 1;
    struct gw_overview ov;
    int n = 0, bad = 0;
    struct gw_shard_info *s = http__snapshot(ctx, &ov, &n);
    cJSON *j = cJSON_CreateObject(), *not_ready = cJSON_CreateArray();
    if (!s || !j || !not_ready) {
        http__oom(r);
        cJSON_Delete(j);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if (http__shard_ready(&s[i]))
            continue;
        bad++;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "id", s[i].id);
        cJSON_AddStringToObject(e, "status", http__status_name(&s[i]));
        cJSON_AddItemToArray(not_ready, e);
    }
    int unclaimed = (int)num(v, "unclaimed"), joined = num(v, "read_at") > 0;
    char msg[200] = "";
    if (degraded(v))
        snprintf(msg, sizeof(msg),
                 "Redis is unreachable: this node answers for its own %d "
                 "shards only (cluster degraded)",
                 n);
    else if (!joined)
        snprintf(msg, sizeof(msg), "this node has not read the cluster yet");
    else if (bad)
        snprintf(msg, sizeof(msg), "%d of the %d shards this node holds are not ready", bad, n);
    else if (unclaimed)
        snprintf(msg, sizeof(msg), "%d shards this node should hold are not held yet", unclaimed);
    cJSON_AddBoolToObject(j, "ready", !msg[0]);
    cJSON_AddStringToObject(j, "cluster", degraded(v) ? "degraded" : "ok");
    cJSON_AddStringToObject(j, "node", str(v, "node"));
    cJSON_AddNumberToObject(j, "shards", n);
    cJSON_AddNumberToObject(j, "unclaimed", unclaimed);
    if (!msg[0]) {
        http_reply_json(r, 200, j);
        goto out;
    }
    cJSON_AddItemToObject(j, "not_ready", not_ready);
    not_ready = NULL;
    http_reply_error_with(r, 503, "not_ready", msg, j);
out:
    free(s);
    cJSON_Delete(not_ready);
    cJSON_Delete(v);
    return 0;
}
