/*
 * http/handlers.c: every control API endpoint of http/handlers.h: input validation (unknown
 * fields, wrong types, Discord's limits), the gateway payloads (ops 3, 4, 8, 31, 43 and raw
 * sends), and the JSON answers. Owns no state: it reads snapshots through ctx->ops, queues
 * payloads through ctx->ops->send, and parks waiting requests in ctx->pending.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "http/handlers.h"
#include "http/stats.h"
#include "http/status_page.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/snowflake.h"

#define MAX_PAYLOAD 4096
#define INTENT_GUILD_MEMBERS 1
#define INTENT_GUILD_PRESENCES 8
#define MAX_ACTIVITIES 16
#define MAX_QUERY_BYTES 100
#define MAX_SHARDS_LISTED 65536
#define METRICS_CAP ((size_t)16 << 20)

/* ---- small JSON helpers ----------------------------------------------------------------- */

/* 400 naming the first member of obj not in allowed (NULL-terminated). 0 when all are known. */
static int unknown_fields(const cJSON *obj, const char *const *allowed, struct http_reply *r)
{
    for (const cJSON *it = obj ? obj->child : NULL; it; it = it->next) {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = !strcmp(it->string, *a);
        if (ok)
            continue;
        char list[256] = "";
        size_t off = 0;
        for (const char *const *a = allowed; *a; a++) {
            int n = snprintf(list + off, sizeof(list) - off, "%s%s", a == allowed ? "" : ", ", *a);
            if (n < 0 || (size_t)n >= sizeof(list) - off)
                break;
            off += (size_t)n;
        }
        http_reply_error(r, 400, "unknown_field", "unknown field \"%.64s\" (known: %s)", it->string,
                         allowed[0] ? list : "none");
        return 1;
    }
    return 0;
}

static int bad_field(struct http_reply *r, const char *field, const char *what)
{
    http_reply_error(r, 400, "invalid_field", "%s: %s", field, what);
    return 1;
}

/* An integer in [lo, hi] (a JSON number with no fraction). */
static int get_int(const cJSON *j, long lo, long hi, long *out)
{
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || j->valuedouble < lo ||
        j->valuedouble > hi)
        return -1;
    *out = (long)j->valuedouble;
    return 0;
}

/* A snowflake given as a JSON string. */
static int get_snowflake(const cJSON *j, uint64_t *out)
{
    return cJSON_IsString(j) ? sh_parse_snowflake(j->valuestring, strlen(j->valuestring), out) : -1;
}

static void add_u64_str(cJSON *obj, const char *key, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    cJSON_AddStringToObject(obj, key, buf);
}

/* Parse body into *out (NULL for an empty body). 1 with *r filled when it is not an object. */
static int parse_body(const char *body, size_t len, cJSON **out, struct http_reply *r)
{
    *out = NULL;
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (i == len)
        return 0;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!j) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= body && at <= body + len ? (long)(at - body) : -1;
        http_reply_error(r, 400, "invalid_json", "the body is not valid JSON (near byte %ld)", off);
        return 1;
    }
    for (; end && end < body + len; end++) {
        if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n') {
            cJSON_Delete(j);
            http_reply_error(r, 400, "invalid_json", "unexpected data after the JSON value");
            return 1;
        }
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        http_reply_error(r, 400, "invalid_body", "the body must be a JSON object");
        return 1;
    }
    *out = j;
    return 0;
}

/* The optional timeout_ms field. */
static int get_timeout(struct http_ctx *ctx, const cJSON *body, int *out, struct http_reply *r)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(body, "timeout_ms");
    long v = ctx->request_timeout_ms;
    if (t && get_int(t, 1, HTTP_MAX_TIMEOUT_MS, &v))
        return bad_field(r, "timeout_ms", "an integer from 1 to 120000 (milliseconds)");
    *out = (int)v;
    return 0;
}

/* What a gw_gateway_send/reconnect failure means for the caller. */
struct gw_failure {
    int status;
    const char *code;
    char msg[200];
    double retry_after; /* 0: none */
};

static void explain(struct http_ctx *ctx, int rc, int shard, struct gw_failure *f)
{
    f->retry_after = 0;
    switch (rc) {
    case SH_ENOTFOUND:
        f->status = 404, f->code = "shard_not_found";
        snprintf(f->msg, sizeof(f->msg), "shard %d does not run in this process", shard);
        break;
    case SH_ETOOBIG:
        f->status = 413, f->code = "payload_too_large";
        snprintf(f->msg, sizeof(f->msg), "the gateway payload would exceed Discord's 4096 bytes");
        break;
    case SH_EAGAIN: {
        struct gw_shard_info si;
        int up =
            !ctx->ops->shard_info(ctx->gw, shard, &si) && si.status && !strcmp(si.status, "ready");
        if (up) {
            f->status = 429, f->code = "send_queue_full", f->retry_after = 1;
            snprintf(f->msg, sizeof(f->msg),
                     "shard %d's send queue is full (Discord allows 120 payloads per 60 s); "
                     "try again later",
                     shard);
        } else {
            f->status = 503, f->code = "shard_unavailable", f->retry_after = 5;
            snprintf(f->msg, sizeof(f->msg),
                     "shard %d is not ready and its send queue is full; try again later", shard);
        }
        break;
    }
    case SH_ECLOSED:
        f->status = 503, f->code = "shutting_down";
        snprintf(f->msg, sizeof(f->msg), "shardhook is stopping");
        break;
    default:
        f->status = 500, f->code = "internal";
        snprintf(f->msg, sizeof(f->msg), "%s", sh_strerror(rc));
        break;
    }
}

/* Answer a gw_gateway_send/reconnect failure; extra (may be NULL) goes beside "error". */
static void gateway_error_with(struct http_ctx *ctx, int rc, int shard, cJSON *extra,
                               struct http_reply *r)
{
    struct gw_failure f;
    explain(ctx, rc, shard, &f);
    http_reply_error_with(r, f.status, f.code, f.msg, extra);
    if (f.retry_after > 0)
        http_reply_retry_after(r, f.retry_after);
}

static void gateway_error(struct http_ctx *ctx, int rc, int shard, struct http_reply *r)
{
    gateway_error_with(ctx, rc, shard, NULL, r);
}

static int runs_here(struct http_ctx *ctx, int shard)
{
    return ctx->ops->runs(ctx->gw, shard);
}

static int guild_shard(struct http_ctx *ctx, uint64_t guild_id)
{
    int total = ctx->ops->total(ctx->gw);
    return total > 0 ? (int)((guild_id >> 22) % (uint64_t)total) : 0;
}

/* Parse the {guild_id} segment and find its shard; 1 with *r filled on failure. */
static int route_guild(struct http_ctx *ctx, const char *param, uint64_t *gid, int *shard,
                       struct http_reply *r)
{
    if (sh_parse_snowflake(param, strlen(param), gid)) {
        http_reply_error(r, 400, "invalid_guild_id", "\"%.32s\" is not a guild id (a snowflake)",
                         param);
        return 1;
    }
    *shard = guild_shard(ctx, *gid);
    if (!runs_here(ctx, *shard)) {
        http_reply_error(r, 404, "shard_not_found",
                         "guild %" PRIu64 " belongs to shard %d, which does not run in this "
                         "process",
                         *gid, *shard);
        return 1;
    }
    return 0;
}

static int route_shard(struct http_ctx *ctx, const char *param, int *shard, struct http_reply *r)
{
    if (http_parse_shard_id(param, shard)) {
        http_reply_error(r, 400, "invalid_shard_id", "\"%.32s\" is not a shard id", param);
        return 1;
    }
    if (!runs_here(ctx, *shard)) {
        http_reply_error(r, 404, "shard_not_found", "shard %d does not run in this process",
                         *shard);
        return 1;
    }
    return 0;
}

/* ---- status ------------------------------------------------------------------------------ */

static void iso_time(char *out, size_t cap, uint64_t wall_ms)
{
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%03dZ", (int)(wall_ms % 1000));
}

static cJSON *shard_json(const struct gw_shard_info *s)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON_AddNumberToObject(j, "id", s->id);
    cJSON_AddStringToObject(j, "status", s->status ? s->status : "queued");
    if (s->latency_ms >= 0)
        cJSON_AddNumberToObject(j, "latency_ms", s->latency_ms);
    else
        cJSON_AddNullToObject(j, "latency_ms");
    if (s->session_id[0])
        cJSON_AddStringToObject(j, "session_id", s->session_id);
    else
        cJSON_AddNullToObject(j, "session_id");
    cJSON_AddNumberToObject(j, "seq", (double)s->seq);
    cJSON_AddNumberToObject(j, "guilds", s->guilds);
    cJSON_AddNumberToObject(j, "guilds_pending", s->guilds_pending);
    cJSON_AddNumberToObject(j, "identifies", s->identifies);
    cJSON_AddNumberToObject(j, "resumes", s->resumes);
    if (s->last_event_at_ms) {
        char ts[40];
        iso_time(ts, sizeof(ts), s->last_event_at_ms);
        cJSON_AddStringToObject(j, "last_event_at", ts);
    } else {
        cJSON_AddNullToObject(j, "last_event_at");
    }
    cJSON_AddNumberToObject(j, "events", (double)s->events);
    cJSON_AddNumberToObject(j, "queued_sends", s->queued_sends);
    return j;
}

/* Every shard's snapshot (malloc'd, *n entries) and the overview. */
static struct gw_shard_info *snapshot(struct http_ctx *ctx, struct gw_overview *ov, int *n)
{
    int want = ctx->ops->snapshot(ctx->gw, ov, NULL, 0);
    if (want < 0)
        want = 0;
    if (want > MAX_SHARDS_LISTED)
        want = MAX_SHARDS_LISTED;
    struct gw_shard_info *s = calloc((size_t)(want ? want : 1), sizeof(*s));
    if (!s)
        return NULL;
    int got = ctx->ops->snapshot(ctx->gw, ov, s, want);
    *n = got < want ? got : want;
    return s;
}

static int get_shards(struct http_ctx *ctx, struct http_reply *r)
{
    struct gw_overview ov;
    int n = 0;
    struct gw_shard_info *s = snapshot(ctx, &ov, &n);
    cJSON *j = cJSON_CreateObject();
    if (j)
        cJSON_AddNumberToObject(j, "shard_count", ctx->ops->total(ctx->gw));
    cJSON *arr = j ? cJSON_AddArrayToObject(j, "shards") : NULL;
    if (!s || !arr) {
        free(s);
        cJSON_Delete(j);
        return http_reply_error(r, 500, "internal", "out of memory");
    }
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, shard_json(&s[i]));
    free(s);
    return http_reply_json(r, 200, j);
}

static int get_shard(struct http_ctx *ctx, const char *param, struct http_reply *r)
{
    int id;
    if (route_shard(ctx, param, &id, r))
        return 0;
    struct gw_shard_info si;
    if (ctx->ops->shard_info(ctx->gw, id, &si))
        return http_reply_error(r, 404, "shard_not_found", "shard %d does not run in this process",
                                id);
    return http_reply_json(r, 200, shard_json(&si));
}

static int get_gateway(struct http_ctx *ctx, struct http_reply *r)
{
    struct gw_overview ov;
    memset(&ov, 0, sizeof(ov));
    int n = ctx->ops->snapshot(ctx->gw, &ov, NULL, 0);
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return http_reply_error(r, 500, "internal", "out of memory");
    cJSON_AddStringToObject(j, "url", ov.url);
    cJSON_AddNumberToObject(j, "shard_count", ctx->ops->total(ctx->gw));
    cJSON_AddNumberToObject(j, "shards_here", n);
    cJSON_AddNumberToObject(j, "recommended_shards", ov.recommended_shards);
    cJSON *ssl = cJSON_AddObjectToObject(j, "session_start_limit");
    if (ssl) {
        cJSON_AddNumberToObject(ssl, "total", ov.session_total);
        cJSON_AddNumberToObject(ssl, "remaining", ov.session_remaining);
        double reset = ov.session_reset_at_ms && ov.session_reset_at_ms > ov.published_at_ms
                           ? (double)(ov.session_reset_at_ms - ov.published_at_ms)
                           : 0;
        cJSON_AddNumberToObject(ssl, "reset_after", reset);
        cJSON_AddNumberToObject(ssl, "max_concurrency", ov.max_concurrency);
    }
    cJSON *st = cJSON_AddObjectToObject(j, "startup");
    if (st) {
        int connecting = n - ov.ready - ov.loading - ov.queued - ov.failed;
        cJSON_AddNumberToObject(st, "ready", ov.ready);
        cJSON_AddNumberToObject(st, "loading", ov.loading);
        cJSON_AddNumberToObject(st, "connecting", connecting > 0 ? connecting : 0);
        cJSON_AddNumberToObject(st, "queued", ov.queued);
        cJSON_AddNumberToObject(st, "failed", ov.failed);
        if (ov.eta_ms >= 0)
            cJSON_AddNumberToObject(st, "eta_ms", (double)ov.eta_ms);
        else
            cJSON_AddNullToObject(st, "eta_ms");
        if (ov.next_identify_in_ms >= 0)
            cJSON_AddNumberToObject(st, "next_identify_in_ms", (double)ov.next_identify_in_ms);
        else
            cJSON_AddNullToObject(st, "next_identify_in_ms");
        if (ov.started_at_ms) {
            char ts[40];
            iso_time(ts, sizeof(ts), ov.started_at_ms);
            cJSON_AddStringToObject(st, "started_at", ts);
        }
    }
    return http_reply_json(r, 200, j);
}

static int get_readyz(struct http_ctx *ctx, struct http_reply *r)
{
    struct gw_overview ov;
    int n = 0;
    struct gw_shard_info *s = snapshot(ctx, &ov, &n);
    cJSON *not_ready = cJSON_CreateArray();
    if (!s || !not_ready) {
        free(s);
        cJSON_Delete(not_ready);
        return http_reply_error(r, 500, "internal", "out of memory");
    }
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (s[i].status && !strcmp(s[i].status, "ready"))
            continue;
        bad++;
        cJSON *e = cJSON_CreateObject();
        if (!e)
            continue;
        cJSON_AddNumberToObject(e, "id", s[i].id);
        cJSON_AddStringToObject(e, "status", s[i].status ? s[i].status : "queued");
        cJSON_AddItemToArray(not_ready, e);
    }
    free(s);
    if (n > 0 && bad == 0) {
        cJSON_Delete(not_ready);
        cJSON *j = cJSON_CreateObject();
        if (j) {
            cJSON_AddTrueToObject(j, "ready");
            cJSON_AddNumberToObject(j, "shards", n);
        }
        return http_reply_json(r, 200, j);
    }
    cJSON *extra = cJSON_CreateObject();
    if (extra) {
        cJSON_AddFalseToObject(extra, "ready");
        cJSON_AddItemToObject(extra, "not_ready", not_ready);
    } else {
        cJSON_Delete(not_ready);
    }
    char msg[128];
    if (n == 0)
        snprintf(msg, sizeof(msg), "no shard runs in this process yet");
    else
        snprintf(msg, sizeof(msg), "%d of %d shards are not ready", bad, n);
    return http_reply_error_with(r, 503, "not_ready", msg, extra);
}

static int get_metrics(struct http_ctx *ctx, struct http_reply *r)
{
    (void)ctx;
    sh_buf_reset(&r->body);
    r->body.max = METRICS_CAP;
    int rc = http_stats_render(&r->body);
    r->body.max = HTTP_MAX_ANSWER;
    if (rc)
        return http_reply_error(r, 500, "internal", "metrics: %s", sh_strerror(rc));
    r->status = 200;
    r->content_type = "text/plain; version=0.0.4; charset=utf-8";
    return 0;
}

/* ---- commands ---------------------------------------------------------------------------- */

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

static int post_reconnect(struct http_ctx *ctx, const char *param, const cJSON *body,
                          struct http_reply *r)
{
    static const char *const allowed[] = {"resume", NULL};
    int id;
    if (route_shard(ctx, param, &id, r) || unknown_fields(body, allowed, r))
        return 0;
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(body, "resume");
    if (res && !cJSON_IsBool(res))
        return bad_field(r, "resume", "true (keep the session) or false (identify anew)");
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
        gateway_error(ctx, rc, id, r);
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

/* Print {"op":N,"d":d}; 1 with *r filled when it would exceed 4,096 bytes. */
static int build_payload(int op, const cJSON *d, char *out, size_t *len, struct http_reply *r)
{
    char *dt = d ? cJSON_PrintUnformatted(d) : NULL;
    if (d && !dt) {
        http_reply_error(r, 500, "internal", "out of memory");
        return 1;
    }
    int n = snprintf(out, MAX_PAYLOAD + 1, "{\"op\":%d,\"d\":%s}", op, dt ? dt : "null");
    cJSON_free(dt);
    if (n < 0 || n > MAX_PAYLOAD) {
        http_reply_error(r, 413, "payload_too_large",
                         "the gateway payload would be %d bytes; Discord allows 4096", n);
        return 1;
    }
    *len = (size_t)n;
    return 0;
}

static int post_send(struct http_ctx *ctx, const char *param, const cJSON *body,
                     struct http_reply *r)
{
    static const char *const allowed[] = {"op", "d", NULL};
    int id;
    if (route_shard(ctx, param, &id, r))
        return 0;
    if (!body)
        return http_reply_error(r, 400, "missing_body",
                                "a body {\"op\": N, \"d\": ...} is required");
    if (unknown_fields(body, allowed, r))
        return 0;
    const cJSON *opj = cJSON_GetObjectItemCaseSensitive(body, "op");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(body, "d");
    long op;
    if (!opj)
        return http_reply_error(r, 400, "missing_field", "op: required (an integer opcode)");
    if (get_int(opj, 0, 255, &op))
        return bad_field(r, "op", "an integer opcode from 0 to 255");
    if (!d)
        return http_reply_error(r, 400, "missing_field",
                                "d: required (null when the op has no data)");
    if (op == 2 || op == 6)
        return http_reply_error(r, 400, "forbidden_op",
                                "op %ld (%s) is sent by shardhook itself and cannot be sent raw",
                                op, op == 2 ? "IDENTIFY" : "RESUME");
    if (op == 0 || op == 7 || op == 9 || op == 10 || op == 11)
        return http_reply_error(r, 400, "forbidden_op",
                                "op %ld is sent by Discord, never by a client", op);
    char payload[MAX_PAYLOAD + 1];
    size_t len;
    if (build_payload((int)op, d, payload, &len, r))
        return 0;
    int rc = ctx->ops->send(ctx->gw, id, payload, len);
    if (rc) {
        gateway_error(ctx, rc, id, r);
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

static int check_activity(const cJSON *a, int i, struct http_reply *r)
{
    static const char *const allowed[] = {"name", "type", "state", "url", NULL};
    char field[48];
    snprintf(field, sizeof(field), "activities[%d]", i);
    if (!cJSON_IsObject(a))
        return bad_field(r, field, "an object {name, type, state?, url?}");
    if (unknown_fields(a, allowed, r))
        return 1;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(a, "name");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(a, "type");
    long t;
    if (!cJSON_IsString(name) || !name->valuestring[0] || strlen(name->valuestring) > 128) {
        snprintf(field, sizeof(field), "activities[%d].name", i);
        return bad_field(r, field, "a non-empty string of at most 128 bytes");
    }
    if (!type || get_int(type, 0, 5, &t)) {
        snprintf(field, sizeof(field), "activities[%d].type", i);
        return bad_field(r, field, "an integer from 0 to 5");
    }
    const char *keys[] = {"state", "url"};
    for (int k = 0; k < 2; k++) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(a, keys[k]);
        if (s && !cJSON_IsNull(s) && !cJSON_IsString(s)) {
            snprintf(field, sizeof(field), "activities[%d].%s", i, keys[k]);
            return bad_field(r, field, "a string or null");
        }
    }
    return 0;
}

static int post_presence(struct http_ctx *ctx, const cJSON *body, struct http_reply *r)
{
    static const char *const allowed[] = {"since", "activities", "status", "afk", "shards", NULL};
    static const char *const statuses[] = {"online", "dnd", "idle", "invisible", "offline"};
    if (!body)
        return http_reply_error(r, 400, "missing_body",
                                "a presence object {status, activities, since, afk} is required");
    if (unknown_fields(body, allowed, r))
        return 0;
    const cJSON *since = cJSON_GetObjectItemCaseSensitive(body, "since");
    const cJSON *acts = cJSON_GetObjectItemCaseSensitive(body, "activities");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(body, "status");
    const cJSON *afk = cJSON_GetObjectItemCaseSensitive(body, "afk");
    const cJSON *shards = cJSON_GetObjectItemCaseSensitive(body, "shards");
    long v;
    if (!status)
        return http_reply_error(r, 400, "missing_field",
                                "status: required (online, dnd, idle, invisible or offline)");
    int ok = 0;
    for (size_t i = 0; cJSON_IsString(status) && i < sizeof(statuses) / sizeof(*statuses); i++)
        ok |= !strcmp(status->valuestring, statuses[i]);
    if (!ok)
        return bad_field(r, "status", "one of online, dnd, idle, invisible, offline");
    if (since && !cJSON_IsNull(since) && get_int(since, 0, 9007199254740991L, &v))
        return bad_field(r, "since", "null or unix time in milliseconds");
    if (afk && !cJSON_IsBool(afk))
        return bad_field(r, "afk", "true or false");
    if (acts && !cJSON_IsArray(acts))
        return bad_field(r, "activities", "an array of activity objects");
    if (cJSON_GetArraySize(acts) > MAX_ACTIVITIES)
        return bad_field(r, "activities", "at most 16 activities");
    int i = 0;
    for (const cJSON *a = acts ? acts->child : NULL; a; a = a->next, i++)
        if (check_activity(a, i, r))
            return 0;

    /* target shards: every shard here, or the listed ones (each must run here) */
    struct gw_overview ov;
    int n_all = 0;
    struct gw_shard_info *all = snapshot(ctx, &ov, &n_all);
    if (!all)
        return http_reply_error(r, 500, "internal", "out of memory");
    int *targets = malloc(sizeof(int) * (size_t)(n_all > 0 ? n_all : 1));
    int n = 0;
    if (!targets) {
        free(all);
        return http_reply_error(r, 500, "internal", "out of memory");
    }
    if (shards) {
        if (!cJSON_IsArray(shards) || cJSON_GetArraySize(shards) < 1) {
            free(all);
            free(targets);
            return bad_field(r, "shards", "a non-empty array of shard ids");
        }
        for (const cJSON *s = shards->child; s; s = s->next) {
            long id;
            if (get_int(s, 0, 65535, &id)) {
                free(all);
                free(targets);
                return bad_field(r, "shards", "shard ids are integers from 0 to 65535");
            }
            if (!runs_here(ctx, (int)id)) {
                free(all);
                free(targets);
                return http_reply_error(r, 404, "shard_not_found",
                                        "shard %ld does not run in this process", id);
            }
            int dup = 0;
            for (int k = 0; k < n; k++)
                dup |= targets[k] == (int)id;
            if (!dup && n < n_all)
                targets[n++] = (int)id;
        }
    } else {
        for (int k = 0; k < n_all; k++)
            targets[n++] = all[k].id;
    }
    free(all);

    /* d: the presence object in Discord's field order, defaults filled in */
    cJSON *d = cJSON_CreateObject();
    if (d) {
        if (since && !cJSON_IsNull(since))
            cJSON_AddNumberToObject(d, "since", since->valuedouble);
        else
            cJSON_AddNullToObject(d, "since");
        cJSON_AddItemToObject(d, "activities",
                              acts ? cJSON_Duplicate(acts, 1) : cJSON_CreateArray());
        cJSON_AddStringToObject(d, "status", status->valuestring);
        cJSON_AddBoolToObject(d, "afk", afk ? cJSON_IsTrue(afk) : 0);
    }
    char payload[MAX_PAYLOAD + 1];
    size_t len;
    int bad = !d || build_payload(3, d, payload, &len, r);
    cJSON_Delete(d);
    if (bad) {
        free(targets);
        return r->status ? 0 : http_reply_error(r, 500, "internal", "out of memory");
    }
    cJSON *queued = cJSON_CreateArray();
    int failed_rc = 0, failed_shard = -1;
    for (int k = 0; k < n; k++) {
        int rc = ctx->ops->send(ctx->gw, targets[k], payload, len);
        if (rc && !failed_rc) {
            failed_rc = rc;
            failed_shard = targets[k];
        }
        if (!rc && queued)
            cJSON_AddItemToArray(queued, cJSON_CreateNumber(targets[k]));
    }
    free(targets);
    if (failed_rc) {
        /* some shards may have it already: say which */
        cJSON *extra = cJSON_CreateObject();
        if (extra)
            cJSON_AddItemToObject(extra, "queued", queued);
        else
            cJSON_Delete(queued);
        gateway_error_with(ctx, failed_rc, failed_shard, extra, r);
        return 0;
    }
    cJSON *j = cJSON_CreateObject();
    if (j)
        cJSON_AddItemToObject(j, "shards", queued);
    else
        cJSON_Delete(queued);
    return http_reply_json(r, 202, j);
}

static int post_voice_state(struct http_ctx *ctx, const char *param, const cJSON *body,
                            struct http_reply *r)
{
    static const char *const allowed[] = {"channel_id", "self_mute", "self_deaf", NULL};
    uint64_t gid, cid = 0;
    int shard;
    if (route_guild(ctx, param, &gid, &shard, r))
        return 0;
    if (!body)
        return http_reply_error(r, 400, "missing_body",
                                "a body {\"channel_id\": \"...\" or null, \"self_mute\", "
                                "\"self_deaf\"} is required");
    if (unknown_fields(body, allowed, r))
        return 0;
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(body, "channel_id");
    const cJSON *mute = cJSON_GetObjectItemCaseSensitive(body, "self_mute");
    const cJSON *deaf = cJSON_GetObjectItemCaseSensitive(body, "self_deaf");
    if (!ch)
        return http_reply_error(r, 400, "missing_field",
                                "channel_id: required (a channel id string, or null to leave)");
    if (!cJSON_IsNull(ch) && get_snowflake(ch, &cid))
        return bad_field(r, "channel_id", "a channel id as a string (snowflake), or null");
    if (mute && !cJSON_IsBool(mute))
        return bad_field(r, "self_mute", "true or false");
    if (deaf && !cJSON_IsBool(deaf))
        return bad_field(r, "self_deaf", "true or false");
    char payload[MAX_PAYLOAD + 1], chs[32];
    if (cid)
        snprintf(chs, sizeof(chs), "\"%" PRIu64 "\"", cid);
    else
        snprintf(chs, sizeof(chs), "null");
    int n = snprintf(payload, sizeof(payload),
                     "{\"op\":4,\"d\":{\"guild_id\":\"%" PRIu64 "\",\"channel_id\":%s,"
                     "\"self_mute\":%s,\"self_deaf\":%s}}",
                     gid, chs, cJSON_IsTrue(mute) ? "true" : "false",
                     cJSON_IsTrue(deaf) ? "true" : "false");
    int rc = ctx->ops->send(ctx->gw, shard, payload, (size_t)n);
    if (rc) {
        gateway_error(ctx, rc, shard, r);
        return 0;
    }
    cJSON *j = cJSON_CreateObject();
    if (j) {
        add_u64_str(j, "guild_id", gid);
        cJSON_AddNumberToObject(j, "shard", shard);
    }
    return http_reply_json(r, 202, j);
}

/* ---- waiting requests -------------------------------------------------------------------- */

static void suspend(struct http_call *call)
{
    call->suspended = 1;
    call->suspend(call->token);
}

/* After suspend() and creating the waiter: on failure, resume and put the error in *r. */
static int start_waiting(struct http_call *call, int rc_of_start, struct http_reply *r)
{
    if (!rc_of_start)
        return 1;
    switch (rc_of_start) {
    case SH_EAGAIN:
        http_reply_error(r, 503, "too_many_waiting",
                         "%d requests already wait for Discord; try again shortly",
                         HTTP_MAX_WAITERS);
        http_reply_retry_after(r, 1);
        break;
    case SH_ECLOSED:
        http_reply_error(r, 503, "shutting_down", "shardhook is stopping");
        break;
    case SH_ETOOBIG:
        http_reply_error(r, 413, "payload_too_large",
                         "the gateway payload would exceed Discord's 4096 bytes");
        break;
    default:
        http_reply_error(r, 500, "internal", "%s", sh_strerror(rc_of_start));
        break;
    }
    call->waiter = NULL;
    call->resume(call->token);
    return 1;
}

static int post_members(struct http_ctx *ctx, struct http_call *call, const char *param,
                        const cJSON *body, struct http_reply *r)
{
    static const char *const allowed[] = {"query",     "limit",      "user_ids",
                                          "presences", "timeout_ms", NULL};
    uint64_t gid;
    int shard, timeout_ms;
    if (route_guild(ctx, param, &gid, &shard, r) || unknown_fields(body, allowed, r) ||
        get_timeout(ctx, body, &timeout_ms, r))
        return 0;
    const cJSON *query = cJSON_GetObjectItemCaseSensitive(body, "query");
    const cJSON *limit = cJSON_GetObjectItemCaseSensitive(body, "limit");
    const cJSON *uids = cJSON_GetObjectItemCaseSensitive(body, "user_ids");
    const cJSON *pres = cJSON_GetObjectItemCaseSensitive(body, "presences");
    struct http_members_req rq = {.guild_id = gid, .shard = shard, .timeout_ms = timeout_ms};
    uint64_t ids[100];
    long lim = 0;
    if (query && uids)
        return http_reply_error(r, 400, "invalid_request",
                                "query and user_ids exclude each other: give one");
    if (pres && !cJSON_IsBool(pres))
        return bad_field(r, "presences", "true or false");
    rq.presences = cJSON_IsTrue(pres);
    if (uids) {
        if (limit)
            return http_reply_error(r, 400, "invalid_request",
                                    "limit goes with query, not with user_ids");
        if (!cJSON_IsArray(uids) || cJSON_GetArraySize(uids) < 1)
            return bad_field(r, "user_ids", "a non-empty array of user id strings");
        if (cJSON_GetArraySize(uids) > 100)
            return http_reply_error(r, 400, "too_many_user_ids",
                                    "user_ids: at most 100 per request (got %d)",
                                    cJSON_GetArraySize(uids));
        int n = 0;
        for (const cJSON *u = uids->child; u; u = u->next)
            if (get_snowflake(u, &ids[n++]))
                return bad_field(r, "user_ids", "every entry must be a user id string (snowflake)");
        rq.user_ids = ids;
        rq.n_user_ids = n;
    } else if (query) {
        if (!cJSON_IsString(query) || strlen(query->valuestring) > MAX_QUERY_BYTES)
            return bad_field(r, "query", "a string of at most 100 bytes (\"\" matches everyone)");
        if (!limit)
            return http_reply_error(r, 400, "missing_field",
                                    "limit: required with query (0 with an empty query asks for "
                                    "every member)");
        if (get_int(limit, 0, 100, &lim))
            return bad_field(r, "limit", "an integer from 0 to 100");
        rq.query = query->valuestring;
        rq.limit = (int)lim;
    } else if (limit) {
        return http_reply_error(r, 400, "missing_field",
                                "query: required with limit (\"\" matches everyone)");
    } else {
        rq.query = ""; /* an empty body: every member */
        rq.limit = 0;
    }
    if (rq.query && !rq.query[0] && !(ctx->cfg->intents & (1ull << INTENT_GUILD_MEMBERS)))
        return http_reply_error(r, 400, "missing_intent",
                                "requesting the whole member list (empty query) needs the "
                                "GUILD_MEMBERS intent; add it to \"intents\" (and enable it in "
                                "the Developer Portal)");
    if (rq.presences && !(ctx->cfg->intents & (1ull << INTENT_GUILD_PRESENCES)))
        return http_reply_error(r, 400, "missing_intent",
                                "presences: true needs the GUILD_PRESENCES intent; add it to "
                                "\"intents\" (and enable it in the Developer Portal)");
    suspend(call);
    return start_waiting(call, http_pending_members(ctx->pending, &rq, call->token, &call->waiter),
                         r);
}

static int post_channel_info(struct http_ctx *ctx, struct http_call *call, const char *param,
                             const cJSON *body, struct http_reply *r)
{
    static const char *const allowed[] = {"fields", "timeout_ms", NULL};
    static const char *const known[] = {"status", "voice_start_time"};
    uint64_t gid;
    int shard, timeout_ms;
    if (route_guild(ctx, param, &gid, &shard, r) || unknown_fields(body, allowed, r) ||
        get_timeout(ctx, body, &timeout_ms, r))
        return 0;
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(body, "fields");
    char fj[128] = "[\"status\",\"voice_start_time\"]";
    if (fields) {
        if (!cJSON_IsArray(fields) || cJSON_GetArraySize(fields) < 1 ||
            cJSON_GetArraySize(fields) > 2)
            return bad_field(r, "fields",
                             "a non-empty array of \"status\" and/or \"voice_start_time\"");
        size_t off = 0;
        int have[2] = {0, 0};
        fj[off++] = '[';
        for (const cJSON *f = fields->child; f; f = f->next) {
            int k = -1;
            for (int i = 0; i < 2 && cJSON_IsString(f); i++)
                if (!strcmp(f->valuestring, known[i]))
                    k = i;
            if (k < 0 || have[k])
                return bad_field(r, "fields",
                                 "each entry is \"status\" or \"voice_start_time\", at most once");
            have[k] = 1;
            off += (size_t)snprintf(fj + off, sizeof(fj) - off, "%s\"%s\"", off > 1 ? "," : "",
                                    known[k]);
        }
        snprintf(fj + off, sizeof(fj) - off, "]");
    }
    suspend(call);
    return start_waiting(call,
                         http_pending_channel_info(ctx->pending, gid, shard, fj, timeout_ms,
                                                   call->token, &call->waiter),
                         r);
}

static int post_soundboard(struct http_ctx *ctx, struct http_call *call, const cJSON *body,
                           struct http_reply *r)
{
    static const char *const allowed[] = {"guild_ids", "timeout_ms", NULL};
    int timeout_ms;
    if (!body)
        return http_reply_error(r, 400, "missing_body",
                                "a body {\"guild_ids\": [...]} is required");
    if (unknown_fields(body, allowed, r) || get_timeout(ctx, body, &timeout_ms, r))
        return 0;
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(body, "guild_ids");
    if (!g)
        return http_reply_error(r, 400, "missing_field", "guild_ids: required");
    int n = cJSON_GetArraySize(g);
    if (!cJSON_IsArray(g) || n < 1 || n > HTTP_MAX_SOUNDBOARD_GUILDS)
        return bad_field(r, "guild_ids", "an array of 1 to 100 guild id strings");
    uint64_t ids[HTTP_MAX_SOUNDBOARD_GUILDS];
    int shards[HTTP_MAX_SOUNDBOARD_GUILDS], k = 0;
    for (const cJSON *e = g->child; e; e = e->next, k++) {
        if (get_snowflake(e, &ids[k]))
            return bad_field(r, "guild_ids", "every entry must be a guild id string (snowflake)");
        for (int j = 0; j < k; j++)
            if (ids[j] == ids[k])
                return bad_field(r, "guild_ids", "a guild id appears twice");
        shards[k] = guild_shard(ctx, ids[k]);
        if (!runs_here(ctx, shards[k]))
            return http_reply_error(r, 404, "shard_not_found",
                                    "guild %" PRIu64 " belongs to shard %d, which does not run "
                                    "in this process",
                                    ids[k], shards[k]);
    }
    suspend(call);
    return start_waiting(call,
                         http_pending_soundboard(ctx->pending, ids, shards, n, timeout_ms,
                                                 call->token, &call->waiter),
                         r);
}

/* ---- dispatch ---------------------------------------------------------------------------- */

int http_handle(struct http_ctx *ctx, struct http_call *call, enum http_route route,
                const char *param, const char *body, size_t len, struct http_reply *r)
{
    call->waiter = NULL;
    call->suspended = 0;
    switch (route) {
    case HTTP_ROUTE_STATUS_PAGE:
        r->status = 200;
        r->content_type = "text/html; charset=utf-8";
        http_status_page(&r->static_body, &r->static_len);
        return 0;
    case HTTP_ROUTE_HEALTHZ: {
        cJSON *j = cJSON_CreateObject();
        if (j)
            cJSON_AddStringToObject(j, "status", "ok");
        http_reply_json(r, 200, j);
        return 0;
    }
    case HTTP_ROUTE_READYZ:
        get_readyz(ctx, r);
        return 0;
    case HTTP_ROUTE_METRICS:
        get_metrics(ctx, r);
        return 0;
    case HTTP_ROUTE_GATEWAY:
        get_gateway(ctx, r);
        return 0;
    case HTTP_ROUTE_SHARDS:
        get_shards(ctx, r);
        return 0;
    case HTTP_ROUTE_SHARD:
        get_shard(ctx, param, r);
        return 0;
    default:
        break;
    }

    cJSON *j;
    if (parse_body(body, len, &j, r))
        return 0;
    switch (route) {
    case HTTP_ROUTE_RECONNECT:
        post_reconnect(ctx, param, j, r);
        break;
    case HTTP_ROUTE_SEND:
        post_send(ctx, param, j, r);
        break;
    case HTTP_ROUTE_PRESENCE:
        post_presence(ctx, j, r);
        break;
    case HTTP_ROUTE_VOICE_STATE:
        post_voice_state(ctx, param, j, r);
        break;
    case HTTP_ROUTE_MEMBERS:
        post_members(ctx, call, param, j, r);
        break;
    case HTTP_ROUTE_CHANNEL_INFO:
        post_channel_info(ctx, call, param, j, r);
        break;
    case HTTP_ROUTE_SOUNDBOARD:
        post_soundboard(ctx, call, j, r);
        break;
    default:
        http_reply_error(r, 404, "not_found", "no such route");
        break;
    }
    cJSON_Delete(j);
    return call->suspended;
}
