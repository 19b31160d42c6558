/*
 * http/h_shards.c: the endpoints of one shard or all of them: GET /v1/shards, GET
 * /v1/shards/{id}, POST /v1/shards/{id}/reconnect (one accepted per shard per
 * http.reconnect_interval_ms), POST /v1/shards/{id}/send (a raw gateway payload) and, in
 * cluster mode, POST /v1/shards/{id}/handoff (through ctx->cluster). Owns no state but the
 * reconnect slots in ctx, under ctx->reconnect_lock.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "http/internal.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/log.h"

/* ---- status -------------------------------------------------------------------------------- */

static void add_string_or_null(cJSON *obj, const char *key, const char *s)
{
    if (s && s[0])
        cJSON_AddStringToObject(obj, key, s);
    else
        cJSON_AddNullToObject(obj, key);
}

cJSON *http__shard_json(const struct gw_shard_info *s)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON_AddNumberToObject(j, "id", s->id);
    cJSON_AddStringToObject(j, "status", http__status_name(s));
    if (s->latency_ms >= 0)
        cJSON_AddNumberToObject(j, "latency_ms", s->latency_ms);
    else
        cJSON_AddNullToObject(j, "latency_ms");
    add_string_or_null(j, "session_id", s->session_id);
    cJSON_AddNumberToObject(j, "seq", (double)s->seq);
    cJSON_AddNumberToObject(j, "guilds", s->guilds);
    cJSON_AddNumberToObject(j, "guilds_pending", s->guilds_pending);
    cJSON_AddNumberToObject(j, "identifies", s->identifies);
    cJSON_AddNumberToObject(j, "resumes", s->resumes);
    char ts[40] = "";
    if (s->last_event_at_ms)
        http__iso_time(ts, sizeof(ts), s->last_event_at_ms);
    add_string_or_null(j, "last_event_at", ts);
    cJSON_AddNumberToObject(j, "events", (double)s->events);
    cJSON_AddNumberToObject(j, "queued_sends", s->queued_sends);
    return j;
}

int http__get_shards(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    (void)rq;
    if (http__cluster_shards(ctx, r) == 0)
        return 0;
    struct gw_overview ov;
    int n = 0, rc;
    struct gw_shard_info *s = http__snapshot(ctx, &ov, &n);
    cJSON *j = cJSON_CreateObject();
    if (j)
        cJSON_AddNumberToObject(j, "shard_count", ctx->ops->total(ctx->gw));
    cJSON *arr = j ? cJSON_AddArrayToObject(j, "shards") : NULL;
    if (!s || !arr) {
        rc = http__oom(r);
        goto out;
    }
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, http__shard_json(&s[i]));
    rc = http_reply_json(r, 200, j);
    j = NULL;
out:
    free(s);
    cJSON_Delete(j);
    return rc;
}

int http__get_shard(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    int id;
    if (!http_parse_shard_id(rq->param, &id) && http__cluster_shard(ctx, id, r) == 0)
        return 0;
    if (http__route_shard(ctx, rq->param, &id, r))
        return 0;
    struct gw_shard_info si;
    if (ctx->ops->shard_info(ctx->gw, id, &si))
        return http_reply_error(r, 404, "shard_not_found", "shard %d does not run in this process",
                                id);
    return http_reply_json(r, 200, http__shard_json(&si));
}

/* ---- reconnect ----------------------------------------------------------------------------- */

/*
 * Every reconnect without resume costs an IDENTIFY from the daily budget: accept one call per
 * shard per reconnect_interval_ms. 0 and the slot taken, or the ms until the next one may go.
 */
static uint64_t reconnect_slot(struct http_ctx *ctx, int shard)
{
    if (ctx->reconnect_interval_ms <= 0 || !ctx->reconnect_at || shard < 0 ||
        shard >= ctx->reconnect_slots)
        return 0;
    uint64_t now = sh_now_ms(), wait = 0;
    pthread_mutex_lock(&ctx->reconnect_lock);
    uint64_t last = ctx->reconnect_at[shard];
    if (last && now < last + (uint64_t)ctx->reconnect_interval_ms)
        wait = last + (uint64_t)ctx->reconnect_interval_ms - now;
    else
        ctx->reconnect_at[shard] = now;
    pthread_mutex_unlock(&ctx->reconnect_lock);
    return wait;
}

/* Give the slot back when the reconnect did not happen after all. */
static void reconnect_unslot(struct http_ctx *ctx, int shard)
{
    if (ctx->reconnect_interval_ms <= 0 || !ctx->reconnect_at || shard < 0 ||
        shard >= ctx->reconnect_slots)
        return;
    pthread_mutex_lock(&ctx->reconnect_lock);
    ctx->reconnect_at[shard] = 0;
    pthread_mutex_unlock(&ctx->reconnect_lock);
}

int http__post_reconnect(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    static const char *const allowed[] = {"resume", NULL};
    int id;
    if (http__route_shard(ctx, rq->param, &id, r) || http__unknown_fields(rq->body, allowed, r))
        return 0;
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(rq->body, "resume");
    if (res && !cJSON_IsBool(res))
        return http__bad_field(r, "resume", "true (keep the session) or false (identify anew)");
    int resume = res ? cJSON_IsTrue(res) : 1;
    uint64_t wait = reconnect_slot(ctx, id);
    if (wait) {
        static struct sh_log_limit lim;
        log_warn_limited(&lim, "msg=\"reconnect refused: too soon after the last one\" shard=%d",
                         id);
        http_reply_error(r, 429, "rate_limited",
                         "shard %d was reconnected less than %d ms ago; try again in %.1f s", id,
                         ctx->reconnect_interval_ms, (double)wait / 1000.0);
        http_reply_retry_after(r, (double)wait / 1000.0);
        return 0;
    }
    int rc = ctx->ops->reconnect(ctx->gw, id, resume);
    if (rc) {
        reconnect_unslot(ctx, id);
        http__gateway_error(ctx, rc, id, NULL, r);
        return 0;
    }
    log_info("msg=\"reconnect requested\" shard=%d resume=%d", id, resume);
    cJSON *j = cJSON_CreateObject();
    if (j) {
        cJSON_AddNumberToObject(j, "shard", id);
        cJSON_AddBoolToObject(j, "resume", resume);
    }
    return http_reply_json(r, 202, j);
}

/* ---- raw send ------------------------------------------------------------------------------ */

/* 1 with a 400 in *r when op may not be sent raw: shardhook's own, or one only Discord sends. */
static int forbidden_op(long op, struct http_reply *r)
{
    if (op == SH_OP_IDENTIFY || op == SH_OP_RESUME)
        return http__refuse(r, 400, "forbidden_op",
                            "op %ld (%s) is sent by shardhook itself and cannot be sent raw", op,
                            op == SH_OP_IDENTIFY ? "IDENTIFY" : "RESUME");
    if (op == SH_OP_DISPATCH || op == SH_OP_RECONNECT || op == SH_OP_INVALID_SESSION ||
        op == SH_OP_HELLO || op == SH_OP_HEARTBEAT_ACK)
        return http__refuse(r, 400, "forbidden_op", "op %ld is sent by Discord, never by a client",
                            op);
    return 0;
}

/* The body's op and d; 1 with a 400 in *r when either is missing or wrong. */
static int send_fields(const cJSON *body, long *op, const cJSON **d, struct http_reply *r)
{
    static const char *const allowed[] = {"op", "d", NULL};
    if (!body)
        return http__refuse(r, 400, "missing_body", "a body {\"op\": N, \"d\": ...} is required");
    if (http__unknown_fields(body, allowed, r))
        return 1;
    const cJSON *opj = cJSON_GetObjectItemCaseSensitive(body, "op");
    *d = cJSON_GetObjectItemCaseSensitive(body, "d");
    if (!opj)
        return http__refuse(r, 400, "missing_field", "op: required (an integer opcode)");
    if (http__get_int(opj, 0, 255, op))
        return http__bad_field(r, "op", "an integer opcode from 0 to 255");
    if (!*d)
        return http__refuse(r, 400, "missing_field", "d: required (null when the op has no data)");
    return forbidden_op(*op, r);
}

int http__post_send(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    int id;
    long op = 0;
    const cJSON *d = NULL;
    if (http__route_shard(ctx, rq->param, &id, r) || send_fields(rq->body, &op, &d, r))
        return 0;
    char payload[SH_GW_MAX_SEND_BYTES + 1];
    size_t len;
    if (http__build_payload((int)op, d, payload, &len, r))
        return 0;
    int rc = ctx->ops->send(ctx->gw, id, payload, len);
    if (rc) {
        http__gateway_error(ctx, rc, id, NULL, r);
        return 0;
    }
    cJSON *j = cJSON_CreateObject();
    if (j) {
        cJSON_AddNumberToObject(j, "shard", id);
        cJSON_AddNumberToObject(j, "op", (double)op);
        cJSON_AddNumberToObject(j, "bytes", (double)len);
    }
    return http_reply_json(r, 202, j);
}

/* ---- handoff (cluster mode) ---------------------------------------------------------------- */

#define NODE_NAME_MAX 128 /* a node name in a handoff's "to" */

/* The body's optional "to" into *to (NULL when absent); 1 with a 400 in *r when it is wrong. */
static int handoff_target(const cJSON *body, const char **to, struct http_reply *r)
{
    static const char *const allowed[] = {"to", NULL};
    *to = NULL;
    if (http__unknown_fields(body, allowed, r))
        return 1;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(body, "to");
    if (!t || cJSON_IsNull(t))
        return 0;
    if (!cJSON_IsString(t) || !t->valuestring[0] || strlen(t->valuestring) > NODE_NAME_MAX)
        return http__bad_field(r, "to", "a node name (1 to 128 bytes), or null for the best node");
    for (const unsigned char *p = (const unsigned char *)t->valuestring; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return http__bad_field(r, "to", "a node name without control characters");
    *to = t->valuestring;
    return 0;
}

int http__post_handoff(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    int id;
    if (http_parse_shard_id(rq->param, &id))
        return http_reply_error(r, 400, "invalid_shard_id", "\"%.32s\" is not a shard id",
                                rq->param);
    const struct http_cluster_ops *ops = atomic_load(&ctx->cluster);
    if (!ops || !ops->handoff)
        return http_reply_error(r, 409, "not_clustered",
                                "handoff needs cluster mode (a \"cluster\" block in the config)");
    const char *to;
    if (handoff_target(rq->body, &to, r))
        return 0;
    int rc = ops->handoff(ops->ud, id, to);
    switch (rc) {
    case SH_OK:
        break;
    case SH_ENOTFOUND:
        return http_reply_error(r, 404, "shard_not_found", "shard %d is not held by this node", id);
    case SH_EAGAIN:
        return http_reply_error(r, 409, "no_target",
                                "no other live node has room for shard %d; it stays here", id);
    case SH_EINVAL:
        return http_reply_error(r, 400, "unknown_target",
                                "\"%.128s\" is not a live node of this cluster (nor this one)",
                                to ? to : "");
    case SH_ECLOSED:
        return http_reply_error(r, 503, "shutting_down", "shardhook is stopping");
    default:
        return http_reply_error(r, 500, "internal", "%s", sh_strerror(rc));
    }
    log_info("msg=\"handoff requested\" shard=%d to=\"%.128s\"", id, to ? to : "(best node)");
    cJSON *j = cJSON_CreateObject();
    if (j) {
        cJSON_AddNumberToObject(j, "shard", id);
        cJSON_AddStringToObject(j, "handoff", "started");
        if (to)
            cJSON_AddStringToObject(j, "to", to);
        else
            cJSON_AddNullToObject(j, "to");
    }
    return http_reply_json(r, 202, j);
}
