/*
 * http/h_webhooks.c: the webhook endpoints: GET /v1/webhooks, GET /v1/webhooks/{name}, and
 * POST /v1/webhooks/{name}/pause and /resume. A webhook is named by its config `name` or its
 * index. What is fixed comes from the config (name, URL without its secrets, events); what
 * moves comes from delivery through ctx->webhooks (struct http_webhook_ops). Owns no state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "http/internal.h"
#include "lib/errors.h"
#include "lib/log.h"

static const char *const state_names[] = {"ok", "retrying", "paused", "spooling"};

void http_url_redact(const char *url, char *out, size_t cap)
{
    if (!cap)
        return;
    out[0] = '\0';
    if (!url)
        return;
    const char *sep = strstr(url, "://");
    size_t scheme = sep ? (size_t)(sep - url) + 3 : 0;
    const char *auth = url + scheme;
    size_t auth_len = strcspn(auth, "/?#");
    const char *host = auth;
    for (size_t i = 0; i < auth_len; i++) /* user:password@ goes, up to the last @ */
        if (auth[i] == '@')
            host = auth + i + 1;
    size_t host_len = auth_len - (size_t)(host - auth);
    const char *path = auth + auth_len;
    size_t path_len = strcspn(path, "?#");
    snprintf(out, cap, "%.*s%.*s%.*s", (int)scheme, url, (int)host_len, host, (int)path_len, path);
}

int http__find_webhook(struct http_ctx *ctx, const char *param, size_t *out, struct http_reply *r)
{
    const struct cfg_config *cfg = ctx->cfg;
    for (size_t i = 0; i < cfg->n_webhooks; i++)
        if (cfg->webhooks[i].name && !strcmp(cfg->webhooks[i].name, param)) {
            *out = i;
            return 0;
        }
    size_t n = strlen(param), v = 0;
    int digits = n > 0 && n <= 3 && strspn(param, "0123456789") == n && !(n > 1 && param[0] == '0');
    for (size_t i = 0; digits && i < n; i++)
        v = v * 10 + (size_t)(param[i] - '0');
    if (digits && v < cfg->n_webhooks) {
        *out = v;
        return 0;
    }
    return http__refuse(r, 404, "webhook_not_found",
                        "no webhook is named \"%.64s\" (a webhook's name, or its index from 0)",
                        param);
}

/* The ops delivery gave, or NULL with a 503 in *r (not wired yet). */
static const struct http_webhook_ops *webhook_ops(struct http_ctx *ctx, struct http_reply *r)
{
    const struct http_webhook_ops *ops = atomic_load(&ctx->webhooks);
    if (!ops)
        http_reply_error(r, 503, "unavailable", "webhook status is not available yet");
    return ops;
}

/* {"at": ISO time, "status": n|null[, "error": text]} or null when at is 0. */
static cJSON *attempt_json(uint64_t at, long status, const char *error)
{
    if (!at)
        return cJSON_CreateNull();
    cJSON *j = cJSON_CreateObject();
    char iso[40];
    http__iso_time(iso, sizeof(iso), at);
    cJSON_AddStringToObject(j, "at", iso);
    if (status)
        cJSON_AddNumberToObject(j, "status", (double)status);
    else
        cJSON_AddNullToObject(j, "status");
    if (error)
        cJSON_AddStringToObject(j, "error", error);
    return j;
}

/* The moving part of WEBHOOK (docs/api.md) from delivery's status. */
static void add_status(cJSON *j, const struct http_webhook_status *st)
{
    unsigned state = (unsigned)st->state < 4 ? (unsigned)st->state : 0;
    cJSON_AddStringToObject(j, "state", state_names[state]);
    if (st->paused_until_wall_ms) {
        char iso[40];
        http__iso_time(iso, sizeof(iso), st->paused_until_wall_ms);
        cJSON_AddStringToObject(j, "paused_until", iso);
    } else {
        cJSON_AddNullToObject(j, "paused_until");
    }
    cJSON_AddNumberToObject(j, "in_flight", st->in_flight);
    cJSON_AddNumberToObject(j, "queued_events", (double)st->queued_events);
    cJSON_AddNumberToObject(j, "queued_bytes", (double)st->queued_bytes);
    cJSON_AddNumberToObject(j, "spool_bytes", (double)st->spool_bytes);
    if (st->has_oldest)
        cJSON_AddNumberToObject(j, "oldest_unacked_age_ms", (double)st->oldest_unacked_age_ms);
    else
        cJSON_AddNullToObject(j, "oldest_unacked_age_ms");
    cJSON_AddNumberToObject(j, "delivered_events", (double)st->delivered_events);
    cJSON_AddItemToObject(j, "last_success",
                          attempt_json(st->last_ok_wall_ms, st->last_ok_status, NULL));
    cJSON_AddItemToObject(
        j, "last_failure",
        attempt_json(st->last_fail_wall_ms, st->last_fail_status, st->last_fail_error));
    cJSON_AddNumberToObject(j, "retries", (double)st->retries);
    cJSON_AddNumberToObject(j, "dead_letters", (double)st->dead_letters);
}

/* WEBHOOK i, or NULL (out of memory, or delivery does not know it). */
static cJSON *webhook_json(struct http_ctx *ctx, const struct http_webhook_ops *ops, size_t i)
{
    const struct cfg_webhook *w = &ctx->cfg->webhooks[i];
    struct http_webhook_status st;
    if (ops->status(ops->ud, i, &st))
        return NULL;
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON_AddNumberToObject(j, "index", (double)i);
    if (w->name)
        cJSON_AddStringToObject(j, "name", w->name);
    else
        cJSON_AddNullToObject(j, "name");
    char url[1024];
    http_url_redact(w->url, url, sizeof(url));
    cJSON_AddStringToObject(j, "url", url);
    cJSON *ev = cJSON_AddArrayToObject(j, "events");
    for (size_t k = 0; ev && k < w->n_events; k++)
        cJSON_AddItemToArray(ev, cJSON_CreateString(w->events[k]));
    add_status(j, &st);
    return j;
}

int http__get_webhooks(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    (void)rq;
    const struct http_webhook_ops *ops = webhook_ops(ctx, r);
    if (!ops)
        return 0;
    cJSON *j = cJSON_CreateObject();
    cJSON *list = j ? cJSON_AddArrayToObject(j, "webhooks") : NULL;
    if (!list) {
        cJSON_Delete(j);
        return http__oom(r);
    }
    for (size_t i = 0; i < ctx->cfg->n_webhooks; i++) {
        cJSON *one = webhook_json(ctx, ops, i);
        if (!one) {
            cJSON_Delete(j);
            return http__oom(r);
        }
        cJSON_AddItemToArray(list, one);
    }
    return http_reply_json(r, 200, j);
}

int http__get_webhook(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    size_t i;
    if (http__find_webhook(ctx, rq->param, &i, r))
        return 0;
    const struct http_webhook_ops *ops = webhook_ops(ctx, r);
    if (!ops)
        return 0;
    cJSON *j = webhook_json(ctx, ops, i);
    return j ? http_reply_json(r, 200, j) : http__oom(r);
}

/* POST .../pause and .../resume: the change (kept on disk by delivery), then WEBHOOK. */
static int set_paused(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r,
                      int paused)
{
    static const char *const allowed[] = {NULL};
    size_t i;
    if (http__find_webhook(ctx, rq->param, &i, r) || http__unknown_fields(rq->body, allowed, r))
        return 0;
    const struct http_webhook_ops *ops = webhook_ops(ctx, r);
    if (!ops)
        return 0;
    int rc = ops->pause(ops->ud, i, paused);
    if (rc == SH_ENOTFOUND)
        return http_reply_error(r, 404, "webhook_not_found", "no such webhook");
    if (rc)
        return http_reply_error(r, 500, "internal",
                                "cannot keep the pause in state_dir (%s); nothing changed",
                                sh_strerror(rc));
    cJSON *j = webhook_json(ctx, ops, i);
    return j ? http_reply_json(r, 200, j) : http__oom(r);
}

int http__post_webhook_pause(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    return set_paused(ctx, rq, r, 1);
}

int http__post_webhook_resume(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    return set_paused(ctx, rq, r, 0);
}
