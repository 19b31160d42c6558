/*
 * cluster/scan.c: what the coordination thread learns from Redis and the claims it makes of it:
 * the view of the nodes (`nodes` and their node keys), every shard's owner (one pipeline), the
 * claims of shards without a live owner in rank order (rule 3: the node ranked r waits r x
 * 300 ms; shard 0 first; a node restarted under its name takes its own back at once), and the
 * balance moves (rule 6). Who ranks where is rank.c's; the handoff itself is move.c's.
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

#define CLAIMS_PER_PASS 64

int cl__find_node(const struct cl_cluster *c, const char *name)
{
    for (int i = 0; i < c->n_nodes; i++)
        if (!strcmp(c->nodes[i].name, name))
            return i;
    return -1;
}

/* One node from its `nodes` entry (JSON) and its node key's value (NULL: gone). */
static void parse_node(struct cl__node *nd, const char *name, const char *json,
                       const redisReply *key)
{
    memset(nd, 0, sizeof(*nd));
    snprintf(nd->name, sizeof(nd->name), "%s", name);
    if (key && key->type == REDIS_REPLY_STRING)
        nd->epoch = strtoull(key->str, NULL, 10);
    cJSON *o = cJSON_Parse(json);
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "held")) && cJSON_IsNumber(v))
        nd->held = v->valueint;
    nd->max_shards = 2000;
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "max_shards")) && cJSON_IsNumber(v))
        nd->max_shards = v->valueint;
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "may")) && cJSON_IsString(v))
        nd->n_ranges = cl__ranges_parse(v->valuestring, nd->ranges, CL__MAX_RANGES);
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "api")) && cJSON_IsString(v))
        snprintf(nd->api, sizeof(nd->api), "%s", v->valuestring);
    cJSON_Delete(o);
}

/* MGET of the node keys of names[0..n). NULL on a lost connection. */
static redisReply *node_keys(struct cl_cluster *c, const redisReply *all, int n)
{
    const char **argv = calloc((size_t)n + 1, sizeof(*argv));
    char **keys = calloc((size_t)n + 1, sizeof(*keys));
    redisReply *r = NULL;
    int ok = argv && keys;
    if (ok)
        argv[0] = "MGET";
    for (int i = 0; ok && i < n; i++) {
        size_t len = strlen(c->prefix) + 5 + all->element[2 * i]->len + 1;
        if (!(keys[i] = malloc(len)))
            ok = 0;
        else
            snprintf(keys[i], len, "%snode:%s", c->prefix, all->element[2 * i]->str);
        argv[i + 1] = keys[i];
    }
    if (ok)
        r = cl__redis_argv(c->redis, n + 1, argv, NULL);
    for (int i = 0; keys && i < n; i++)
        free(keys[i]);
    free(keys);
    free(argv);
    return r;
}

/* Publish the view for other threads (cl_cluster_handoff, status). */
static void publish(struct cl_cluster *c)
{
    int live = 0;
    for (int i = 0; i < c->n_nodes; i++)
        live += c->nodes[i].epoch != 0;
    pthread_mutex_lock(&c->mu);
    memcpy(c->pub_nodes, c->nodes, sizeof(c->nodes[0]) * (size_t)c->n_nodes);
    c->pub_n = c->n_nodes;
    c->live = live;
    pthread_mutex_unlock(&c->mu);
    cl__fwd_publish(c);
}

/* Fill c->nodes from HGETALL's pairs and MGET's epochs; note a change of the live set. */
static void build_view(struct cl_cluster *c, const redisReply *all, const redisReply *keys, int n)
{
    struct cl__node *old = malloc(sizeof(c->nodes));
    int n_old = c->n_nodes, changed = 0;
    if (old)
        memcpy(old, c->nodes, sizeof(c->nodes));
    c->n_nodes = 0;
    c->me = -1;
    for (int i = 0; i < n && c->n_nodes < CL__MAX_NODES; i++) {
        struct cl__node *nd = &c->nodes[c->n_nodes++];
        const redisReply *k =
            keys->type == REDIS_REPLY_ARRAY && (size_t)i < keys->elements ? keys->element[i] : NULL;
        parse_node(nd, all->element[2 * i]->str, all->element[2 * i + 1]->str, k);
        if (!strcmp(nd->name, c->name)) {
            c->me = c->n_nodes - 1;
            nd->held = c->held; /* our own count is known here */
            nd->max_shards = c->max_shards;
            nd->n_ranges = cl__ranges_parse(c->may_ranges, nd->ranges, CL__MAX_RANGES);
        }
        int j = -1;
        for (int k2 = 0; old && k2 < n_old; k2++)
            if (!strcmp(old[k2].name, nd->name))
                j = k2;
        changed |= j < 0 ? nd->epoch != 0 : old[j].epoch != nd->epoch;
    }
    for (int k2 = 0; old && k2 < n_old; k2++)
        changed |= old[k2].epoch && cl__find_node(c, old[k2].name) < 0;
    free(old);
    if (changed)
        c->nodes_changed = 1;
    publish(c);
}

int cl__scan_nodes(struct cl_cluster *c)
{
    redisReply *all = cl__redis_cmd(c->redis, "HGETALL %snodes", c->prefix);
    if (!all) {
        cl__redis_lost(c, "scan");
        return SH_ENET;
    }
    int n = all->type == REDIS_REPLY_ARRAY ? (int)all->elements / 2 : 0;
    for (int i = 0; i < 2 * n; i++)
        if (all->element[i]->type != REDIS_REPLY_STRING)
            n = 0;
    if (n > CL__MAX_NODES)
        n = CL__MAX_NODES;
    redisReply *keys = n ? node_keys(c, all, n) : NULL;
    if (n && !keys) {
        freeReplyObject(all);
        cl__redis_lost(c, "scan");
        return SH_ENET;
    }
    build_view(c, all, keys, n);
    freeReplyObject(all);
    if (keys)
        freeReplyObject(keys);
    return 0;
}

/* The scan's verdict on shard i's owner: what it records for the claims. */
static void judge(struct cl_cluster *c, int i, const redisReply *owner, const redisReply *epoch,
                  uint64_t now, int *held)
{
    struct cl__shard *s = &c->shards[i];
    const char *o = owner && owner->type == REDIS_REPLY_STRING ? owner->str : "";
    uint64_t e = epoch && epoch->type == REDIS_REPLY_STRING ? strtoull(epoch->str, NULL, 10) : 0;
    int n = o[0] ? cl__find_node(c, o) : -1;
    int live = n >= 0 && c->nodes[n].epoch && c->nodes[n].epoch == e;
    if (live)
        held[n]++;
    if (live && strcmp(o, c->name)) {
        s->orphan_ms = 0; /* a live node holds it */
    } else if (strcmp(s->owner, o) || s->owner_epoch != e || !s->orphan_ms) {
        s->orphan_ms = now; /* newly without a live owner (or ours, not held: see claims) */
    }
    snprintf(s->owner, sizeof(s->owner), "%s", o);
    s->owner_epoch = e;
}

/*
 * Claim due times of shards without a live owner: the rank this node has for each. Returns how
 * many some live node may take (shards nobody may hold do not hold balance back).
 */
static int plan_claims(struct cl_cluster *c, int *orph, int no)
{
    int *assigned = malloc(sizeof(int) * (size_t)(no ? no : 1)), order[CL__MAX_NODES], n_open = 0;
    if (!assigned)
        return no;
    cl__rank_assign(orph, no, c->nodes, c->n_nodes, assigned);
    for (int k = 0; k < no; k++) {
        struct cl__shard *s = &c->shards[orph[k]];
        s->claim_due_ms = 0;
        n_open += assigned[k] >= 0;
        if (!s->may || s->state != CL__FREE || c->me < 0)
            continue;
        int m = cl__rank_order(orph[k], c->nodes, c->n_nodes, order), r = -1;
        for (int j = 0, pos = 1; j < m && r < 0; j++) {
            if (order[j] == c->me)
                r = order[j] == assigned[k] ? 0 : pos;
            else if (order[j] != assigned[k])
                pos++;
        }
        if (r < 0)
            continue;
        uint64_t from = s->orphan_ms;
        if (!s->owner[0] && from < c->registered_ms + 1000)
            from = c->registered_ms + 1000; /* nodes started together share: one scan first */
        int n = s->owner[0] ? cl__find_node(c, s->owner) : -1;
        if (n >= 0 && c->nodes[n].epoch) /* restarted under its name: it takes it back first */
            from += (uint64_t)c->lease_ms;
        /* nodes see the owner gone up to one scan apart: a lower rank gets that long first */
        s->claim_due_ms = from + (uint64_t)r * CL__CLAIM_STEP_MS + (r ? CL__SCAN_MS : 0);
        s->claim_rank = r;
    }
    free(assigned);
    return n_open;
}

/*
 * Held here, but Redis names another owner (fenced out without a checkpoint write to say so):
 * let it go. No owner at all (Redis lost the hash), or this node under another epoch: claim it
 * again.
 */
static int check_held(struct cl_cluster *c)
{
    for (int i = 0; i < c->total && !c->degraded; i++) {
        struct cl__shard *s = &c->shards[i];
        if (s->state != CL__HELD || (!strcmp(s->owner, c->name) && s->owner_epoch == c->epoch))
            continue;
        if (!s->owner[0] || !strcmp(s->owner, c->name)) {
            if (cl__claim(c, i, "reasserted", "-", 0) == SH_ENET)
                return SH_ENET;
        } else {
            cl__release(c, i, "owned_elsewhere");
        }
    }
    return c->degraded ? SH_ENET : 0;
}

int cl__scan_shards(struct cl_cluster *c)
{
    uint64_t now = sh_now_ms();
    for (int i = 0; i < c->total; i++)
        if (cl__redis_append(c->redis, "HMGET %sshard:%d owner owner_epoch", c->prefix, i)) {
            cl__redis_lost(c, "scan");
            return SH_ENET;
        }
    int held[CL__MAX_NODES] = {0}, *orph = malloc(sizeof(int) * (size_t)c->total), no = 0;
    for (int i = 0; i < c->total; i++) {
        redisReply *r = cl__redis_read(c->redis);
        if (!r) {
            free(orph);
            cl__redis_lost(c, "scan");
            return SH_ENET;
        }
        int ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2;
        judge(c, i, ok ? r->element[0] : NULL, ok ? r->element[1] : NULL, now, held);
        if (orph && c->shards[i].orphan_ms && strcmp(c->shards[i].owner, c->name))
            orph[no++] = i;
        freeReplyObject(r);
    }
    c->nodes_changed = 0;
    c->next_shard_scan_ms = now + CL__SWEEP_LEASES * (uint64_t)c->lease_ms;
    for (int n = 0; n < c->n_nodes; n++) /* the plan counts what each node holds now */
        c->nodes[n].held = n == c->me ? c->held : held[n];
    c->orphans = orph ? plan_claims(c, orph, no) : 0;
    free(orph);
    if (check_held(c) != 0)
        return SH_ENET;
    if (c->me >= 0)
        c->nodes[c->me].held = c->held;
    publish(c);
    return 0;
}

/* The claim script's answer as a checkpoint (element 1..4); fence in element 0. */
static void claimed_ck(const redisReply *r, struct cl__ck *ck)
{
    cl__ck_clear(ck);
    const redisReply *e[4];
    for (int i = 0; i < 4; i++)
        e[i] = r->element[i + 1]->type == REDIS_REPLY_STRING ? r->element[i + 1] : NULL;
    ck->valid = 1;
    if (e[0])
        snprintf(ck->session_id, sizeof(ck->session_id), "%s", e[0]->str);
    if (e[1])
        snprintf(ck->resume_url, sizeof(ck->resume_url), "%s", e[1]->str);
    if (e[2])
        ck->seq = strtoull(e[2]->str, NULL, 10);
    if (e[3] && e[3]->len && (ck->blob = malloc(e[3]->len + 1))) {
        memcpy(ck->blob, e[3]->str, e[3]->len + 1);
        ck->blob_len = e[3]->len;
    }
}

/* Start holding shard from what the claim returned. */
static void hold(struct cl_cluster *c, int shard, uint64_t fence, const char *kind,
                 const char *from, uint64_t took_ms)
{
    static struct sh_log_limit lim;
    struct cl__shard *s = &c->shards[shard];
    struct cl_checkpoint cp;
    cl__ck_view(&s->cur, shard, &cp);
    s->fence = fence;
    s->since_ms = sh_now_ms();
    s->last_write_ms = 0;
    s->unwritten = 0;
    cl__set_state(c, shard, CL__HELD); /* first: its first checkpoints may come at once */
    int rc = c->ops.hold(c->ops.ud, &cp);
    if (rc && rc != SH_EEXIST) {
        cl__set_state(c, shard, CL__FREE);
        log_error_limited(&lim, "msg=\"claimed shard could not be held\" shard=%d error=\"%s\"",
                          shard, sh_strerror(rc));
        return;
    }
    sh_metric_add(c->m_claims, 1, kind);
    if (!strcmp(kind, "takeover"))
        sh_metric_add(c->m_takeovers, 1);
    const char *verb = !strcmp(kind, "takeover")   ? "shard taken over"
                       : !strcmp(kind, "restart")  ? "shard taken back"
                       : !strcmp(kind, "received") ? "shard received"
                                                   : "shard claimed";
    log_info("msg=\"%s\" shard=%d from=%s fence=%llu resume=%d seq=%llu took_ms=%llu", verb, shard,
             from && from[0] ? from : "-", (unsigned long long)fence, s->cur.session_id[0] != 0,
             (unsigned long long)s->cur.seq, (unsigned long long)took_ms);
}

int cl__claim(struct cl_cluster *c, int shard, const char *kind, const char *from, uint64_t took_ms)
{
    struct cl__shard *s = &c->shards[shard];
    char skey[160], nkey[256], epoch[24], npre[128];
    snprintf(skey, sizeof(skey), "%sshard:%d", c->prefix, shard);
    snprintf(nkey, sizeof(nkey), "%snode:%s", c->prefix, c->name);
    snprintf(epoch, sizeof(epoch), "%llu", (unsigned long long)c->epoch);
    snprintf(npre, sizeof(npre), "%snode:", c->prefix);
    const char *argv[] = {skey, nkey, c->name, epoch, npre, "0"};
    redisReply *r = cl__redis_script(c->redis, CL_SCRIPT_CLAIM, 2, 6, argv, NULL);
    if (!r) {
        cl__redis_lost(c, "claim");
        return SH_ENET;
    }
    int ok = r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
             r->element[0]->type == REDIS_REPLY_INTEGER;
    long long fence = ok ? r->element[0]->integer : 0;
    if (ok && fence > 0 && r->elements == 5 && s->state != CL__FREE) {
        s->fence = (uint64_t)fence; /* reasserted: ours is newer than what Redis had */
        cl__publish_fence(c, shard);
        s->unwritten = 1;
        log_info("msg=\"shard claimed again\" shard=%d fence=%lld", shard, fence);
    } else if (ok && fence > 0 && r->elements == 5) {
        claimed_ck(r, &s->cur);
        hold(c, shard, (uint64_t)fence, kind, from, took_ms);
    }
    freeReplyObject(r);
    if (ok && fence == -2) { /* our own lease is gone: the pass registers again first */
        c->lease_gone = 1;
        return 1;
    }
    if (ok && fence == -1 && s->state != CL__FREE)
        cl__release(c, shard, "owned_elsewhere");
    s->claim_due_ms = 0;
    return ok && fence > 0 ? 0 : 1;
}

/* Shards the scan found ours but not held here: our older epoch (restart) or a handoff to us. */
static int claim_own(struct cl_cluster *c, int i, uint64_t now)
{
    struct cl__shard *s = &c->shards[i];
    if (!s->may || s->state != CL__FREE || strcmp(s->owner, c->name) || !s->owner[0])
        return 0;
    const char *kind = s->owner_epoch == c->epoch ? "received" : "restart";
    cl__claim(c, i, kind, s->owner_epoch == c->epoch ? "-" : c->name, cl__since(now, s->orphan_ms));
    s->owner[0] = '\0'; /* until the next scan */
    return 1;
}

void cl__claims(struct cl_cluster *c, uint64_t now)
{
    int quiet = now < c->quiet_until_ms, done = 0;
    for (int i = 0; i < c->total && done < CLAIMS_PER_PASS && !c->degraded; i++) {
        struct cl__shard *s = &c->shards[i];
        if (c->held >= c->max_shards)
            return;
        if (claim_own(c, i, now)) {
            done++;
            continue;
        }
        if (quiet || !s->claim_due_ms || now < s->claim_due_ms || s->state != CL__FREE)
            continue;
        const char *kind = s->owner[0] ? "takeover" : "unowned";
        cl__claim(c, i, kind, s->owner, cl__since(now, s->orphan_ms));
        done++;
    }
}

int cl__pick_target(struct cl_cluster *c, int shard)
{
    int order[CL__MAX_NODES];
    int m = cl__rank_order(shard, c->nodes, c->n_nodes, order);
    for (int j = 0; j < m; j++)
        if (order[j] != c->me)
            return order[j];
    return -1;
}

/* My held shards that may move: here for at least 2 x lease (no ping-pong). */
static int movable(struct cl_cluster *c, uint64_t now, int *out)
{
    int n = 0;
    for (int i = 0; i < c->total; i++)
        if (c->shards[i].state == CL__HELD &&
            cl__since(now, c->shards[i].since_ms) >= 2 * (uint64_t)c->lease_ms)
            out[n++] = i;
    return n;
}

/* The shard a move to the view's balance target would take, or -1 (*t: the target). */
static int balance_move(struct cl_cluster *c, uint64_t now, int *t)
{
    c->nodes[c->me].held = c->held;
    *t = cl__balance_target(c->nodes, c->n_nodes, c->me);
    int *mv = *t >= 0 ? malloc(sizeof(int) * (size_t)c->total) : NULL;
    int shard = mv ? cl__balance_shard(mv, movable(c, now, mv), &c->nodes[*t]) : -1;
    free(mv);
    return shard;
}

void cl__balance(struct cl_cluster *c, uint64_t now)
{
    if (now < c->next_balance_ms || now < c->quiet_until_ms || c->orphans || c->me < 0)
        return;
    c->next_balance_ms = now + CL__BALANCE_MS;
    for (int i = 0; i < c->total; i++)
        if (c->shards[i].state == CL__DRAINING)
            return; /* one move at a time */
    int t;
    /* the view's counts (each node's own, as of its last renewal) say whether a move could be
       made at all; only then are the owners read, to decide on fresh counts */
    if (balance_move(c, now, &t) < 0)
        return;
    if (cl__scan_shards(c) != 0 || c->orphans)
        return;
    int shard = balance_move(c, now, &t);
    if (shard < 0)
        return;
    log_info("msg=\"rebalancing\" shard=%d to=\"%s\" held=%d target_held=%d", shard,
             c->nodes[t].name, c->held, c->nodes[t].held);
    cl__start_handoff(c, shard, c->nodes[t].name, now);
}
