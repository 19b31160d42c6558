/*
 * http/handlers.c: http_handle, which answers a matched route through the handler in its row of
 * the route table (http/route.h), and the helpers every endpoint shares (http/internal.h):
 * field checks, routing a path parameter to its shard, answering a gateway failure, snapshots,
 * gateway payloads. The endpoints themselves live by resource in h_shards.c, h_presence.c,
 * h_members.c and h_gateway.c. Owns no state.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "http/forward.h"
#include "http/handlers.h"
#include "http/internal.h"
#include "lib/errors.h"
#include "lib/snowflake.h"

#define MAX_SHARDS_LISTED 65536

/* ---- field checks -------------------------------------------------------------------------- */

int http__unknown_fields(const cJSON *obj, const char *const *allowed, struct http_reply *r)
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

int http__bad_field(struct http_reply *r, const char *field, const char *what)
{
    http_reply_error(r, 400, "invalid_field", "%s: %s", field, what);
    return 1;
}

int http__get_int(const cJSON *j, long lo, long hi, long *out)
{
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || j->valuedouble < lo ||
        j->valuedouble > hi)
        return -1;
    *out = (long)j->valuedouble;
    return 0;
}

int http__get_snowflake(const cJSON *j, uint64_t *out)
{
    return cJSON_IsString(j) ? sh_parse_snowflake(j->valuestring, strlen(j->valuestring), out) : -1;
}

int http__get_timeout(struct http_ctx *ctx, const cJSON *body, int *out, struct http_reply *r)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(body, "timeout_ms");
    long v = ctx->request_timeout_ms;
    if (t && http__get_int(t, 1, HTTP_MAX_TIMEOUT_MS, &v))
        return http__bad_field(r, "timeout_ms", "an integer from 1 to 120000 (milliseconds)");
    *out = (int)v;
    return 0;
}

/* ---- routing a path parameter -------------------------------------------------------------- */

int http__guild_shard(struct http_ctx *ctx, uint64_t guild_id)
{
    int total = ctx->ops->total(ctx->gw);
    return total > 0 ? (int)((guild_id >> 22) % (uint64_t)total) : 0;
}

int http__route_guild(struct http_ctx *ctx, const char *param, uint64_t *gid, int *shard,
                      struct http_reply *r)
{
    if (sh_parse_snowflake(param, strlen(param), gid)) {
        http_reply_error(r, 400, "invalid_guild_id", "\"%.32s\" is not a guild id (a snowflake)",
                         param);
        return 1;
    }
    *shard = http__guild_shard(ctx, *gid);
    if (!ctx->ops->runs(ctx->gw, *shard)) {
        http_reply_error(r, 404, "shard_not_found",
                         "guild %" PRIu64 " belongs to shard %d, which does not run in this "
                         "process",
                         *gid, *shard);
        return 1;
    }
    return 0;
}

int http__route_shard(struct http_ctx *ctx, const char *param, int *shard, struct http_reply *r)
{
    if (http_parse_shard_id(param, shard)) {
        http_reply_error(r, 400, "invalid_shard_id", "\"%.32s\" is not a shard id", param);
        return 1;
    }
    if (!ctx->ops->runs(ctx->gw, *shard)) {
        http_reply_error(r, 404, "shard_not_found", "shard %d does not run in this process",
                         *shard);
        return 1;
    }
    return 0;
}

/* ---- answers ------------------------------------------------------------------------------- */

/* What a gateway send/reconnect failure means for the caller. */
struct gw_failure {
    int status;
    const char *code;
    char msg[200];
    double retry_after; /* 0: none */
};

/* SH_EAGAIN: the shard's send queue is full; whether it is ready says which answer fits. */
static void explain_full_queue(struct http_ctx *ctx, int shard, struct gw_failure *f)
{
    struct gw_shard_info si;
    if (!ctx->ops->shard_info(ctx->gw, shard, &si) && http__shard_ready(&si)) {
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
}

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
        snprintf(f->msg, sizeof(f->msg), "the gateway payload would exceed Discord's %d bytes",
                 SH_GW_MAX_SEND_BYTES);
        break;
    case SH_EAGAIN:
        explain_full_queue(ctx, shard, f);
        break;
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

void http__gateway_error(struct http_ctx *ctx, int rc, int shard, cJSON *extra,
                         struct http_reply *r)
{
    struct gw_failure f;
    explain(ctx, rc, shard, &f);
    http_reply_error_with(r, f.status, f.code, f.msg, extra);
    if (f.retry_after > 0)
        http_reply_retry_after(r, f.retry_after);
}

int http__refuse(struct http_reply *r, int status, const char *code, const char *fmt, ...)
{
    char msg[512]; /* as http_reply_error */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    http_reply_error_with(r, status, code, msg, NULL);
    return 1;
}

int http__oom(struct http_reply *r)
{
    return http_reply_error(r, 500, "internal", "out of memory");
}

void http__add_u64_str(cJSON *obj, const char *key, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    cJSON_AddStringToObject(obj, key, buf);
}

void http__iso_time(char *out, size_t cap, uint64_t wall_ms)
{
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%03dZ", (int)(wall_ms % 1000));
}

/* ---- the gateway's snapshots --------------------------------------------------------------- */

struct gw_shard_info *http__snapshot(struct http_ctx *ctx, struct gw_overview *ov, int *n)
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

const char *http__status_name(const struct gw_shard_info *s)
{
    return s->status ? s->status : gw_status_names[0];
}

int http__shard_ready(const struct gw_shard_info *s)
{
    return s->status && !strcmp(s->status, gw_status_names[GW_READY]);
}

/* ---- gateway payloads ---------------------------------------------------------------------- */

int http__build_payload(int op, const cJSON *d, char *out, size_t *len, struct http_reply *r)
{
    char *dt = d ? cJSON_PrintUnformatted(d) : NULL;
    if (d && !dt)
        return http__refuse(r, 500, "internal", "out of memory");
    int n = snprintf(out, SH_GW_MAX_SEND_BYTES + 1, "{\"op\":%d,\"d\":%s}", op, dt ? dt : "null");
    cJSON_free(dt);
    if (n < 0 || n > SH_GW_MAX_SEND_BYTES) {
        http_reply_error(r, 413, "payload_too_large",
                         "the gateway payload would be %d bytes; Discord allows %d", n,
                         SH_GW_MAX_SEND_BYTES);
        return 1;
    }
    *len = (size_t)n;
    return 0;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Parse body into *out (NULL for an empty body). 1 with *r filled when it is not an object. */
static int parse_body(const char *body, size_t len, cJSON **out, struct http_reply *r)
{
    *out = NULL;
    size_t i = 0;
    while (i < len && is_space(body[i]))
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
    while (end && end < body + len && is_space(*end))
        end++;
    int bad = 1;
    if (end && end < body + len)
        http_reply_error(r, 400, "invalid_json", "unexpected data after the JSON value");
    else if (!cJSON_IsObject(j))
        http_reply_error(r, 400, "invalid_body", "the body must be a JSON object");
    else
        bad = 0;
    if (bad)
        cJSON_Delete(j);
    else
        *out = j;
    return bad;
}

int http_handle(struct http_ctx *ctx, struct http_call *call, enum http_route route,
                const char *param, const char *body, size_t len, struct http_reply *r)
{
    call->waiter = NULL;
    call->suspended = 0;
    const struct http__route *row = http__route_row(route);
    if (!row) {
        http_reply_error(r, 404, "not_found", "no such route");
        return 0;
    }
    cJSON *j = NULL;
    if (row->method == HTTP_POST && parse_body(body, len, &j, r))
        return 0;
    if (http__forward(ctx, call, route, param, body, len, j, r)) { /* another node's shard */
        cJSON_Delete(j);
        return call->suspended;
    }
    struct http_req rq = {.route = route, .param = param, .body = j, .call = call};
    row->handle(ctx, &rq, r);
    cJSON_Delete(j);
    return call->suspended;
}
