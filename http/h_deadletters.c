/*
 * http/h_deadletters.c: the dead-letter endpoints: GET /v1/dead-letters (newest first, paged
 * with limit and an id cursor), POST /v1/dead-letters/{dead_letter_id}/redeliver, DELETE
 * /v1/dead-letters/{dead_letter_id} and POST /v1/webhooks/{name}/redeliver (all, or a time range).
 * It reaches the folder and the delivery thread only through ctx->dead (struct http_deadletter_ops,
 * filled by bridge/main.c). Owns no state.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "http/internal.h"
#include "lib/errors.h"
#include "lib/log.h"

#define LIST_DEFAULT 50
#define LIST_MAX 500

static const struct http_deadletter_ops *dead_ops(struct http_ctx *ctx, struct http_reply *r)
{
    const struct http_deadletter_ops *ops = atomic_load(&ctx->dead);
    if (!ops)
        http_reply_error(r, 503, "unavailable", "dead letters are not available yet");
    return ops;
}

static const char *query(const struct http_req *rq, const char *key)
{
    return rq->call && rq->call->query ? rq->call->query(rq->call->token, key) : NULL;
}

/* The list's filters; 1 with a 400/404 in *r. */
static int list_params(struct http_ctx *ctx, const struct http_deadletter_ops *ops,
                       const struct http_req *rq, size_t *webhook, const char **after,
                       size_t *limit, struct http_reply *r)
{
    const char *w = query(rq, "webhook"), *l = query(rq, "limit");
    *after = query(rq, "after");
    *webhook = SIZE_MAX;
    *limit = LIST_DEFAULT;
    if (w && http__find_webhook(ctx, w, webhook, r))
        return 1;
    if (l) {
        char *end;
        unsigned long long v = strtoull(l, &end, 10);
        if (!l[0] || *end || l[0] < '0' || l[0] > '9' || v < 1 || v > LIST_MAX)
            return http__refuse(r, 400, "invalid_query", "limit: an integer from 1 to %d",
                                LIST_MAX);
        *limit = (size_t)v;
    }
    if (*after && ops->parse_id(ops->ud, *after, NULL))
        return http__refuse(
            r, 400, "invalid_query",
            "after: a dead-letter id as given in the list (\"id\", \"next_after\")");
    return 0;
}

int http__get_dead_letters(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    const struct http_deadletter_ops *ops = dead_ops(ctx, r);
    size_t webhook, limit;
    const char *after;
    if (!ops || list_params(ctx, ops, rq, &webhook, &after, &limit, r))
        return 0;
    cJSON *j = NULL;
    int rc = ops->list(ops->ud, webhook, after, limit, &j);
    if (rc == SH_ENOMEM)
        return http__oom(r);
    if (rc)
        return http_reply_error(r, 500, "internal", "the dead-letter folder cannot be read: %s",
                                sh_strerror(rc));
    return http_reply_json(r, 200, j);
}

/* 202 {"redelivering":N,"ids":[...]} after handing ids to the delivery thread. */
static int redeliver(const struct http_deadletter_ops *ops, size_t webhook,
                     const char (*ids)[HTTP_DEAD_ID_MAX], size_t n, struct http_reply *r)
{
    int rc = n ? ops->redeliver(ops->ud, webhook, ids, n) : 0;
    if (rc)
        return http_reply_error(r, rc == SH_ENOMEM ? 500 : 409,
                                rc == SH_ENOMEM ? "internal" : "webhook_not_configured",
                                "cannot redeliver to webhook %zu: %s", webhook, sh_strerror(rc));
    log_info("msg=\"dead letters queued for redelivery\" webhook=%zu count=%zu", webhook, n);
    cJSON *j = cJSON_CreateObject();
    cJSON *arr = cJSON_CreateArray();
    cJSON_AddNumberToObject(j, "webhook", (double)webhook);
    cJSON_AddNumberToObject(j, "redelivering", (double)n);
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(ids[i]));
    cJSON_AddItemToObject(j, "ids", arr);
    return http_reply_json(r, 202, j);
}

/* The {id} segment: 1 with 400 (malformed) or 404 (not in the folder) in *r. */
static int known_id(const struct http_deadletter_ops *ops, const char *id, size_t *webhook,
                    struct http_reply *r)
{
    if (ops->parse_id(ops->ud, id, webhook))
        return http__refuse(r, 400, "invalid_id",
                            "\"%.100s\" is not a dead-letter id (see GET /v1/dead-letters)", id);
    if (ops->exists(ops->ud, id))
        return http__refuse(r, 404, "dead_letter_not_found", "no dead letter \"%.100s\"", id);
    return 0;
}

int http__post_dead_letter_redeliver(struct http_ctx *ctx, const struct http_req *rq,
                                     struct http_reply *r)
{
    static const char *const allowed[] = {NULL};
    const struct http_deadletter_ops *ops = dead_ops(ctx, r);
    size_t webhook;
    if (!ops || http__unknown_fields(rq->body, allowed, r) || known_id(ops, rq->param, &webhook, r))
        return 0;
    if (webhook >= ctx->cfg->n_webhooks)
        return http_reply_error(r, 409, "webhook_not_configured",
                                "dead letter %s belongs to webhook %zu, which the config no "
                                "longer has",
                                rq->param, webhook);
    char id[1][HTTP_DEAD_ID_MAX];
    snprintf(id[0], sizeof(id[0]), "%s", rq->param);
    return redeliver(ops, webhook, (const char(*)[HTTP_DEAD_ID_MAX])id, 1, r);
}

int http__delete_dead_letter(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    const struct http_deadletter_ops *ops = dead_ops(ctx, r);
    size_t webhook;
    if (!ops || known_id(ops, rq->param, &webhook, r))
        return 0;
    int rc = ops->discard(ops->ud, rq->param);
    if (rc == SH_ENOTFOUND)
        return http_reply_error(r, 404, "dead_letter_not_found", "no dead letter \"%s\"",
                                rq->param);
    if (rc)
        return http_reply_error(r, 500, "internal", "cannot remove the dead letter: %s",
                                sh_strerror(rc));
    log_info("msg=\"dead letter discarded\" webhook=%zu id=%s", webhook, rq->param);
    r->status = 204;
    return 0;
}

/* "2026-11-29T16:00:00Z" or with milliseconds ("...:00.250Z") to wall-clock ms: 0, or -1. */
static int parse_iso_ms(const char *s, uint64_t *out)
{
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    unsigned ms = 0;
    if (!p)
        return -1;
    if (*p == '.') {
        int k = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, k++)
            if (k < 3)
                ms = ms * 10 + (unsigned)(*p - '0');
        if (k == 0)
            return -1;
        for (; k < 3; k++)
            ms *= 10;
    }
    if (strcmp(p, "Z"))
        return -1;
    time_t t = timegm(&tm);
    if (t < 0)
        return -1;
    *out = (uint64_t)t * 1000 + ms;
    return 0;
}

/* The body's range: {"all": true} or {"from": ISO, "to": ISO} (either may go). 1 with a 400. */
static int redeliver_range(const cJSON *body, uint64_t *from, uint64_t *to, struct http_reply *r)
{
    static const char *const allowed[] = {"all", "from", "to", NULL};
    static const char how[] = "a body {\"all\": true} or {\"from\": \"2026-01-02T03:04:05Z\", "
                              "\"to\": \"...\"} (dead-letter times, UTC, inclusive) is required";
    if (!body)
        return http__refuse(r, 400, "missing_body", "%s", how);
    if (http__unknown_fields(body, allowed, r))
        return 1;
    const cJSON *all = cJSON_GetObjectItemCaseSensitive(body, "all");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(body, "from");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(body, "to");
    *from = 0;
    *to = UINT64_MAX;
    if (all && !cJSON_IsTrue(all))
        return http__bad_field(r, "all",
                               "true (every dead letter of the webhook), or leave it out");
    if (all && (f || t))
        return http__refuse(r, 400, "invalid_field", "all: not together with from or to");
    if (!all && !f && !t)
        return http__refuse(r, 400, "missing_field", "%s", how);
    if (f && (!cJSON_IsString(f) || parse_iso_ms(f->valuestring, from)))
        return http__bad_field(r, "from", "a UTC time like \"2026-01-02T03:04:05Z\"");
    if (t && (!cJSON_IsString(t) || parse_iso_ms(t->valuestring, to)))
        return http__bad_field(r, "to", "a UTC time like \"2026-01-02T03:04:05.999Z\"");
    if (*from > *to)
        return http__refuse(r, 400, "invalid_field", "from: after to");
    return 0;
}

int http__post_webhook_redeliver(struct http_ctx *ctx, const struct http_req *rq,
                                 struct http_reply *r)
{
    const struct http_deadletter_ops *ops = dead_ops(ctx, r);
    size_t webhook;
    uint64_t from, to;
    if (!ops || http__find_webhook(ctx, rq->param, &webhook, r) ||
        redeliver_range(rq->body, &from, &to, r))
        return 0;
    char(*ids)[HTTP_DEAD_ID_MAX] = NULL;
    size_t n = 0;
    int rc = ops->ids(ops->ud, webhook, from, to, &ids, &n);
    if (rc) {
        if (rc == SH_ENOMEM)
            return http__oom(r);
        return http_reply_error(r, 500, "internal", "the dead-letter folder cannot be read: %s",
                                sh_strerror(rc));
    }
    rc = redeliver(ops, webhook, (const char(*)[HTTP_DEAD_ID_MAX])ids, n, r);
    free(ids);
    return rc;
}
