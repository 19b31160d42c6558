/*
 * http/h_gateway.c: the endpoints about the process as a whole: GET / (status page), /healthz,
 * /readyz, /metrics and /v1/gateway (bot gateway info, session budget, start-up progress).
 * Reads the gateway only through ctx->ops->snapshot; owns no state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "http/internal.h"
#include "http/stats.h"
#include "http/status_page.h"
#include "lib/errors.h"

int http__get_status_page(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    (void)ctx, (void)rq;
    r->status = 200;
    r->content_type = "text/html; charset=utf-8";
    http__status_page(&r->static_body, &r->static_len);
    return 0;
}

int http__get_healthz(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    (void)ctx, (void)rq;
    cJSON *j = cJSON_CreateObject();
    if (j)
        cJSON_AddStringToObject(j, "status", "ok");
    return http_reply_json(r, 200, j);
}

int http__get_metrics(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    (void)ctx, (void)rq;
    sh_buf_reset(&r->body);
    r->body.max = HTTP__METRICS_CAP;
    int rc = http_stats_render(&r->body);
    r->body.max = HTTP_MAX_ANSWER;
    if (rc)
        return http_reply_error(r, 500, "internal", "metrics: %s", sh_strerror(rc));
    r->status = 200;
    r->content_type = "text/plain; version=0.0.4; charset=utf-8";
    return 0;
}

/* ---- /readyz ------------------------------------------------------------------------------- */

/* {"id","status"} of every shard in s that is not ready, into not_ready; their count. */
static int list_not_ready(const struct gw_shard_info *s, int n, cJSON *not_ready)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (http__shard_ready(&s[i]))
            continue;
        bad++;
        cJSON *e = cJSON_CreateObject();
        if (!e)
            continue;
        cJSON_AddNumberToObject(e, "id", s[i].id);
        cJSON_AddStringToObject(e, "status", http__status_name(&s[i]));
        cJSON_AddItemToArray(not_ready, e);
    }
    return bad;
}

int http__get_readyz(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    (void)rq;
    if (http__cluster_readyz(ctx, r) == 0)
        return 0;
    struct gw_overview ov;
    int n = 0, rc;
    struct gw_shard_info *s = http__snapshot(ctx, &ov, &n);
    cJSON *not_ready = cJSON_CreateArray(), *j = NULL;
    if (!s || !not_ready) {
        rc = http__oom(r);
        goto out;
    }
    int bad = list_not_ready(s, n, not_ready);
    if (n > 0 && bad == 0) {
        if ((j = cJSON_CreateObject())) {
            cJSON_AddTrueToObject(j, "ready");
            cJSON_AddNumberToObject(j, "shards", n);
        }
        rc = http_reply_json(r, 200, j);
        goto out;
    }
    if ((j = cJSON_CreateObject())) {
        cJSON_AddFalseToObject(j, "ready");
        cJSON_AddItemToObject(j, "not_ready", not_ready);
        not_ready = NULL;
    }
    char msg[128];
    if (n == 0)
        snprintf(msg, sizeof(msg), "no shard runs in this process yet");
    else
        snprintf(msg, sizeof(msg), "%d of %d shards are not ready", bad, n);
    rc = http_reply_error_with(r, 503, "not_ready", msg, j);
out:
    free(s);
    cJSON_Delete(not_ready);
    return rc;
}

/* ---- /v1/gateway --------------------------------------------------------------------------- */

static void add_session_limit(cJSON *j, const struct gw_overview *ov)
{
    cJSON *ssl = cJSON_AddObjectToObject(j, "session_start_limit");
    if (!ssl)
        return;
    cJSON_AddNumberToObject(ssl, "total", ov->session_total);
    cJSON_AddNumberToObject(ssl, "remaining", ov->session_remaining);
    double reset = ov->session_reset_at_ms && ov->session_reset_at_ms > ov->published_at_ms
                       ? (double)(ov->session_reset_at_ms - ov->published_at_ms)
                       : 0;
    cJSON_AddNumberToObject(ssl, "reset_after", reset);
    cJSON_AddNumberToObject(ssl, "max_concurrency", ov->max_concurrency);
    cJSON_AddNumberToObject(ssl, "reserve", ov->session_reserve);
    cJSON_AddBoolToObject(ssl, "identify_stopped", ov->identify_stopped);
}

/* A number of milliseconds, null when negative (unknown). */
static void add_ms_or_null(cJSON *obj, const char *key, int64_t ms)
{
    if (ms >= 0)
        cJSON_AddNumberToObject(obj, key, (double)ms);
    else
        cJSON_AddNullToObject(obj, key);
}

static void add_startup(cJSON *j, const struct gw_overview *ov, int n)
{
    cJSON *st = cJSON_AddObjectToObject(j, "startup");
    if (!st)
        return;
    int connecting = n - ov->ready - ov->loading - ov->queued - ov->failed;
    cJSON_AddNumberToObject(st, "ready", ov->ready);
    cJSON_AddNumberToObject(st, "loading", ov->loading);
    cJSON_AddNumberToObject(st, "connecting", connecting > 0 ? connecting : 0);
    cJSON_AddNumberToObject(st, "queued", ov->queued);
    cJSON_AddNumberToObject(st, "failed", ov->failed);
    add_ms_or_null(st, "eta_ms", ov->eta_ms);
    add_ms_or_null(st, "next_identify_in_ms", ov->next_identify_in_ms);
    if (ov->started_at_ms) {
        char ts[40];
        http__iso_time(ts, sizeof(ts), ov->started_at_ms);
        cJSON_AddStringToObject(st, "started_at", ts);
    }
}

int http__get_gateway(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    (void)rq;
    struct gw_overview ov;
    memset(&ov, 0, sizeof(ov));
    int n = ctx->ops->snapshot(ctx->gw, &ov, NULL, 0);
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return http__oom(r);
    cJSON_AddStringToObject(j, "url", ov.url);
    cJSON_AddNumberToObject(j, "shard_count", ctx->ops->total(ctx->gw));
    cJSON_AddNumberToObject(j, "shards_here", n);
    cJSON_AddNumberToObject(j, "recommended_shards", ov.recommended_shards);
    add_session_limit(j, &ov);
    add_startup(j, &ov, n);
    return http_reply_json(r, 200, j);
}
