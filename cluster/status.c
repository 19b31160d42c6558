/*
 * cluster/status.c: what every node shows of the whole cluster. About once a second the
 * coordination thread writes the statuses of the shards this node holds into the `status` hash
 * (one entry per shard: the gateway snapshot's fields, the owner and the wall ms it was written;
 * entries of shards it let go are removed while they still name it), then reads the cluster view
 * (`status`, `nodes`, each node key's epoch and lease, the last `gaps`) and keeps it as JSON text
 * under the mutex; cl_cluster_view hands other threads a parsed copy with the budget and the
 * degraded flag as they are now. The HTTP threads never talk to Redis.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/metrics.h"

#define GAPS_SHOWN 20

/* Removes field ARGV[1] of KEYS[1] only while its entry still starts with ARGV[2]. */
static const char DEL_MINE[] = "local v = redis.call('HGET', KEYS[1], ARGV[1]) "
                               "if v and string.sub(v, 1, string.len(ARGV[2])) == ARGV[2] then "
                               "return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0";

int cl__status_stale(uint64_t at_wall_ms, uint64_t now_wall_ms, int owner_alive)
{
    return !owner_alive || !at_wall_ms ||
           (now_wall_ms > at_wall_ms && now_wall_ms - at_wall_ms > CL__STATUS_STALE_MS);
}

char *cl__status_encode(const char *node, const struct gw_shard_info *s, uint64_t at_wall_ms)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "node", node);
    cJSON_AddStringToObject(o, "status", s->status ? s->status : gw_status_names[0]);
    cJSON_AddNumberToObject(o, "latency_ms", s->latency_ms);
    cJSON_AddStringToObject(o, "session_id", s->session_id);
    cJSON_AddNumberToObject(o, "seq", (double)s->seq);
    cJSON_AddNumberToObject(o, "guilds", s->guilds);
    cJSON_AddNumberToObject(o, "guilds_pending", s->guilds_pending);
    cJSON_AddNumberToObject(o, "identifies", s->identifies);
    cJSON_AddNumberToObject(o, "resumes", s->resumes);
    cJSON_AddNumberToObject(o, "last_event_at", (double)s->last_event_at_ms);
    cJSON_AddNumberToObject(o, "events", (double)s->events);
    cJSON_AddNumberToObject(o, "queued_sends", s->queued_sends);
    cJSON_AddNumberToObject(o, "at", (double)at_wall_ms);
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return txt;
}

/* `{"node":"<me>",` as the entries this node writes start. */
static void mine_prefix(struct cl_cluster *c, char *out, size_t cap)
{
    cJSON *s = cJSON_CreateString(c->name);
    char *txt = s ? cJSON_PrintUnformatted(s) : NULL;
    snprintf(out, cap, "{\"node\":%s,", txt ? txt : "\"\"");
    cJSON_free(txt);
    cJSON_Delete(s);
}

/* HDEL the entries of shards this node wrote and no longer holds (while they still name it). */
static int drop_released(struct cl_cluster *c, const char *key)
{
    char prefix[CL__NAME_MAX * 2 + 16], field[16];
    mine_prefix(c, prefix, sizeof(prefix));
    for (int i = 0; i < c->total; i++) {
        if (!c->status_mine[i] || c->shards[i].state != CL__FREE)
            continue;
        snprintf(field, sizeof(field), "%d", i);
        redisReply *r = cl__redis_cmd(c->redis, "EVAL %s 1 %s %s %s", DEL_MINE, key, field, prefix);
        if (!r)
            return SH_ENET;
        freeReplyObject(r);
        c->status_mine[i] = 0;
    }
    return 0;
}

/* One HSET of every held shard's entry from the snapshot. */
static int write_statuses(struct cl_cluster *c, const char *key)
{
    struct gw_overview ov;
    struct gw_shard_info *s = malloc(sizeof(*s) * (size_t)c->total);
    const char **argv = malloc(sizeof(*argv) * (2 + 2 * (size_t)c->total));
    char(*ids)[16] = malloc(sizeof(*ids) * (size_t)c->total);
    int n = s && argv && ids ? c->status_src(c->status_ud, &ov, s, c->total) : 0, argc = 2, rc = 0;
    if (n > c->total)
        n = c->total;
    uint64_t at = sh_wall_ms();
    if (argv)
        argv[0] = "HSET", argv[1] = key;
    for (int i = 0, k = 0; i < n; i++) {
        int id = s[i].id;
        if (id < 0 || id >= c->total || c->shards[id].state == CL__FREE)
            continue;
        char *txt = cl__status_encode(c->name, &s[i], at);
        if (!txt)
            continue;
        snprintf(ids[k], sizeof(ids[0]), "%d", id);
        argv[argc++] = ids[k++];
        argv[argc++] = txt;
        c->status_mine[id] = 1;
    }
    if (argc > 2) {
        redisReply *r = cl__redis_argv(c->redis, argc, argv, NULL);
        rc = r ? 0 : SH_ENET;
        if (r)
            freeReplyObject(r);
    }
    for (int i = 3; i < argc; i += 2)
        cJSON_free((void *)argv[i]);
    free(ids);
    free(argv);
    free(s);
    return rc;
}

static const char *str_of(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_STRING ? r->str : "";
}

/* `nodes` (HGETALL pairs) with their epochs and PTTLs (2 replies per node) into an array. */
static cJSON *nodes_json(const redisReply *all, redisReply **keys, int n, int lease_ms)
{
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr && i < n; i++) {
        cJSON *info = cJSON_Parse(str_of(all->element[2 * i + 1]));
        cJSON *o = cJSON_CreateObject();
        if (!o) {
            cJSON_Delete(info);
            continue;
        }
        const char *epoch = str_of(keys[2 * i]);
        long long ttl = keys[2 * i + 1] && keys[2 * i + 1]->type == REDIS_REPLY_INTEGER
                            ? keys[2 * i + 1]->integer
                            : -2;
        const char *fields[] = {"api", "held", "max_shards", "version", "started", NULL};
        cJSON_AddStringToObject(o, "name", str_of(all->element[2 * i]));
        cJSON_AddBoolToObject(o, "alive", epoch[0] && ttl > 0);
        cJSON_AddNumberToObject(o, "epoch", epoch[0] ? strtod(epoch, NULL) : 0);
        if (epoch[0] && ttl > 0)
            cJSON_AddNumberToObject(o, "lease_age_ms", ttl < lease_ms ? lease_ms - ttl : 0);
        else
            cJSON_AddNullToObject(o, "lease_age_ms");
        for (int f = 0; fields[f]; f++) {
            cJSON *v = cJSON_GetObjectItemCaseSensitive(info, fields[f]);
            cJSON_AddItemToObject(o, fields[f], v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
        }
        cJSON_Delete(info);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

/* The `status` hash's entries, each with its id. */
static cJSON *statuses_json(const redisReply *st)
{
    cJSON *arr = cJSON_CreateArray();
    size_t n = st && st->type == REDIS_REPLY_ARRAY ? st->elements / 2 : 0;
    for (size_t i = 0; arr && i < n; i++) {
        cJSON *o = cJSON_Parse(str_of(st->element[2 * i + 1]));
        char *end;
        long id = strtol(str_of(st->element[2 * i]), &end, 10);
        if (!cJSON_IsObject(o) || *end || id < 0) {
            cJSON_Delete(o);
            continue;
        }
        cJSON_AddNumberToObject(o, "id", (double)id);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

/* XREVRANGE's entries: {"id", field: value...}, newest first. */
static cJSON *gaps_json(const redisReply *g)
{
    cJSON *arr = cJSON_CreateArray();
    size_t n = g && g->type == REDIS_REPLY_ARRAY ? g->elements : 0;
    for (size_t i = 0; arr && i < n; i++) {
        const redisReply *e = g->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        cJSON *o = cJSON_CreateObject();
        if (!o)
            continue;
        cJSON_AddStringToObject(o, "id", str_of(e->element[0]));
        const redisReply *kv = e->element[1];
        for (size_t k = 0; k + 1 < kv->elements; k += 2) {
            const char *name = str_of(kv->element[k]), *val = str_of(kv->element[k + 1]);
            char *end;
            double d = strtod(val, &end);
            if ((!strcmp(name, "shard") || !strcmp(name, "seq")) && val[0] && !*end)
                cJSON_AddNumberToObject(o, name, d);
            else
                cJSON_AddStringToObject(o, name, val);
        }
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

/* Pipeline the node keys' GET and PTTL of every `nodes` name; NULL when the connection broke. */
static redisReply **node_keys(struct cl_cluster *c, const redisReply *all, int n)
{
    redisReply **k = calloc(2 * (size_t)n + 1, sizeof(*k));
    if (!k)
        return NULL;
    for (int i = 0; i < n; i++) {
        const char *name = str_of(all->element[2 * i]);
        cl__redis_append(c->redis, "GET %snode:%s", c->prefix, name);
        cl__redis_append(c->redis, "PTTL %snode:%s", c->prefix, name);
    }
    for (int i = 0; i < 2 * n; i++)
        if (!(k[i] = cl__redis_read(c->redis))) {
            for (int j = 0; j < i; j++)
                freeReplyObject(k[j]);
            free(k);
            return NULL;
        }
    return k;
}

/* This node's shards it should hold and does not: first in line for an ownerless one, or named
   its owner while not held (a restart or a handoff to it, not claimed yet). */
static int count_unclaimed(struct cl_cluster *c)
{
    int n = 0;
    for (int i = 0; i < c->total; i++) {
        const struct cl__shard *s = &c->shards[i];
        if (!s->may || s->state != CL__FREE)
            continue;
        n += (s->orphan_ms && s->claim_due_ms && s->claim_rank == 0) ||
             (s->owner[0] && !strcmp(s->owner, c->name));
    }
    return n;
}

/* Build the view's JSON text from the replies; NULL when out of memory. */
static char *view_text(struct cl_cluster *c, redisReply *rep[3], redisReply **keys, int n,
                       int rtt_ms)
{
    cJSON *v = cJSON_CreateObject();
    if (!v)
        return NULL;
    cJSON_AddNumberToObject(v, "read_at", (double)sh_wall_ms());
    cJSON_AddNumberToObject(v, "redis_rtt_ms", rtt_ms);
    cJSON_AddItemToObject(v, "nodes", nodes_json(rep[1], keys, n, c->lease_ms));
    cJSON_AddItemToObject(v, "statuses", statuses_json(rep[0]));
    cJSON_AddItemToObject(v, "gaps", gaps_json(rep[2]));
    char *txt = cJSON_PrintUnformatted(v);
    cJSON_Delete(v);
    return txt;
}

/* Read `status`, `nodes`, the node keys and the last gaps; keep the view. */
static int read_view(struct cl_cluster *c)
{
    cl__redis_append(c->redis, "HGETALL %sstatus", c->prefix);
    cl__redis_append(c->redis, "HGETALL %snodes", c->prefix);
    cl__redis_append(c->redis, "XREVRANGE %sgaps + - COUNT %d", c->prefix, GAPS_SHOWN);
    redisReply *rep[3] = {NULL, NULL, NULL};
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++)
        rc = (rep[i] = cl__redis_read(c->redis)) ? 0 : SH_ENET;
    int rtt = cl__redis_rtt_ms(c->redis), n = 0;
    if (rc == 0 && rep[1]->type == REDIS_REPLY_ARRAY)
        n = (int)rep[1]->elements / 2;
    for (int i = 0; rc == 0 && i < 2 * n; i++)
        if (rep[1]->element[i]->type != REDIS_REPLY_STRING)
            n = 0;
    n = n > CL__MAX_NODES ? CL__MAX_NODES : n;
    redisReply **keys = rc == 0 ? node_keys(c, rep[1], n) : NULL;
    if (rc == 0 && !keys)
        rc = SH_ENET;
    char *txt = rc == 0 ? view_text(c, rep, keys, n, rtt) : NULL;
    int unclaimed = count_unclaimed(c);
    pthread_mutex_lock(&c->mu);
    if (txt) {
        free(c->view);
        c->view = txt;
    }
    c->unclaimed = unclaimed;
    pthread_mutex_unlock(&c->mu);
    for (int i = 0; keys && i < 2 * n; i++)
        freeReplyObject(keys[i]);
    free(keys);
    for (int i = 0; i < 3; i++)
        if (rep[i])
            freeReplyObject(rep[i]);
    return rc;
}

int cl__status_pass(struct cl_cluster *c, uint64_t now)
{
    if (now < c->next_status_ms)
        return 0;
    c->next_status_ms = now + CL__STATUS_MS;
    if (!c->status_mine && !(c->status_mine = calloc((size_t)c->total, 1)))
        return SH_ENOMEM;
    char key[128];
    snprintf(key, sizeof(key), "%sstatus", c->prefix);
    int rc = drop_released(c, key);
    if (rc == 0 && c->status_src)
        rc = write_statuses(c, key);
    rc = rc ? rc : read_view(c);
    if (rc == SH_ENET) {
        cl__redis_lost(c, "status");
        return rc;
    }
    struct cl_status st;
    cl_cluster_status(c, &st);
    sh_metric_set(c->m_degraded, 0); /* a pass runs only while Redis answers */
    sh_metric_set(c->m_budget, st.budget_remaining);
    sh_metric_set(c->m_nodes_live, st.nodes_live);
    return 0;
}

void cl__status_free(struct cl_cluster *c)
{
    free(c->status_mine);
    c->status_mine = NULL;
    free(c->view);
    c->view = NULL;
}

void cl_cluster_set_status_source(struct cl_cluster *c,
                                  int (*snapshot)(void *ud, struct gw_overview *ov,
                                                  struct gw_shard_info *shards, int cap),
                                  void *ud)
{
    c->status_src = snapshot;
    c->status_ud = ud;
}

/* Mark each status stale or not, by its age and whether its owner's lease is alive. */
static void judge_statuses(cJSON *v, uint64_t now)
{
    cJSON *nodes = cJSON_GetObjectItemCaseSensitive(v, "nodes"), *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(v, "statuses"))
    {
        const cJSON *owner = cJSON_GetObjectItemCaseSensitive(e, "node"), *nd, *at;
        int alive = 0;
        cJSON_ArrayForEach(nd, nodes)
        {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(nd, "name");
            if (cJSON_IsString(owner) && cJSON_IsString(name) &&
                !strcmp(name->valuestring, owner->valuestring))
                alive = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(nd, "alive"));
        }
        at = cJSON_GetObjectItemCaseSensitive(e, "at");
        uint64_t atv = cJSON_IsNumber(at) && at->valuedouble > 0 ? (uint64_t)at->valuedouble : 0;
        cJSON_AddBoolToObject(e, "stale", cl__status_stale(atv, now, alive));
    }
}

static void add_budget(cJSON *v, const struct cl_status *st)
{
    cJSON *b = cJSON_AddObjectToObject(v, "budget");
    if (!b)
        return;
    cJSON_AddNumberToObject(b, "total", st->budget_total);
    cJSON_AddNumberToObject(b, "remaining", st->budget_remaining);
    cJSON_AddNumberToObject(b, "reserve", st->budget_reserve);
    cJSON_AddBoolToObject(b, "identify_stopped", st->identify_stopped);
    cJSON_AddNumberToObject(b, "reset_at", (double)st->reset_at_wall);
}

struct cJSON *cl_cluster_view(struct cl_cluster *c)
{
    struct cl_status st;
    cl_cluster_status(c, &st);
    pthread_mutex_lock(&c->mu);
    char *txt = c->view ? strdup(c->view) : NULL;
    int unclaimed = c->unclaimed;
    pthread_mutex_unlock(&c->mu);
    cJSON *v = txt ? cJSON_Parse(txt) : cJSON_CreateObject();
    free(txt);
    if (!v)
        return NULL;
    if (!cJSON_GetObjectItemCaseSensitive(v, "read_at")) {
        cJSON_AddNumberToObject(v, "read_at", 0);
        cJSON_AddItemToObject(v, "nodes", cJSON_CreateArray());
        cJSON_AddItemToObject(v, "statuses", cJSON_CreateArray());
        cJSON_AddItemToObject(v, "gaps", cJSON_CreateArray());
    }
    judge_statuses(v, sh_wall_ms());
    cJSON_AddStringToObject(v, "node", c->name);
    cJSON_AddNumberToObject(v, "total", c->total);
    cJSON_AddBoolToObject(v, "degraded", st.degraded);
    cJSON_AddBoolToObject(v, "reachable", st.reachable);
    cJSON_AddNumberToObject(v, "lease_ms", c->lease_ms);
    cJSON_AddNumberToObject(v, "unclaimed", unclaimed);
    cJSON_AddNumberToObject(v, "shards_held", st.shards_held);
    add_budget(v, &st);
    return v;
}
