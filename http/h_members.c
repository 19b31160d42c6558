/*
 * http/h_members.c: the endpoints whose answer comes from Discord's replies: POST
 * /v1/guilds/{guild_id}/members (op 8), /v1/guilds/{guild_id}/channel-info (op 43) and
 * /v1/soundboard-sounds (op 31). Each checks its input, suspends the connection and hands the
 * request to the pending table (http/pending.h), which sends the payload and answers when the
 * replies or the timeout come. Owns no state.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "http/internal.h"
#include "lib/errors.h"

#define MAX_QUERY_BYTES 100
#define MAX_USER_IDS 100

/* ---- waiting ------------------------------------------------------------------------------- */

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
                         "the gateway payload would exceed Discord's %d bytes",
                         SH_GW_MAX_SEND_BYTES);
        break;
    default:
        http_reply_error(r, 500, "internal", "%s", sh_strerror(rc_of_start));
        break;
    }
    call->waiter = NULL;
    call->resume(call->token);
    return 1;
}

/* ---- members ------------------------------------------------------------------------------- */

/* user_ids (1..100 snowflake strings) into ids; 1 with the 400 in *r. */
static int members_by_ids(const cJSON *uids, const cJSON *limit, uint64_t *ids,
                          struct http_members_req *rq, struct http_reply *r)
{
    if (limit)
        return http__refuse(r, 400, "invalid_request", "limit goes with query, not with user_ids");
    if (!cJSON_IsArray(uids) || cJSON_GetArraySize(uids) < 1)
        return http__bad_field(r, "user_ids", "a non-empty array of user id strings");
    if (cJSON_GetArraySize(uids) > MAX_USER_IDS)
        return http__refuse(r, 400, "too_many_user_ids",
                            "user_ids: at most 100 per request (got %d)", cJSON_GetArraySize(uids));
    int n = 0;
    for (const cJSON *u = uids->child; u; u = u->next)
        if (http__get_snowflake(u, &ids[n++]))
            return http__bad_field(r, "user_ids",
                                   "every entry must be a user id string (snowflake)");
    rq->user_ids = ids;
    rq->n_user_ids = n;
    return 0;
}

/* query (with limit), or "" and 0 (every member) when neither is given; 1 with the 400 in *r. */
static int members_by_query(const cJSON *query, const cJSON *limit, struct http_members_req *rq,
                            struct http_reply *r)
{
    long lim = 0;
    if (!query && limit)
        return http__refuse(r, 400, "missing_field",
                            "query: required with limit (\"\" matches everyone)");
    if (!query) {
        rq->query = ""; /* an empty body: every member */
        rq->limit = 0;
        return 0;
    }
    if (!cJSON_IsString(query) || strlen(query->valuestring) > MAX_QUERY_BYTES)
        return http__bad_field(r, "query", "a string of at most 100 bytes (\"\" matches everyone)");
    if (!limit)
        return http__refuse(r, 400, "missing_field",
                            "limit: required with query (0 with an empty query asks for "
                            "every member)");
    if (http__get_int(limit, 0, 100, &lim))
        return http__bad_field(r, "limit", "an integer from 0 to 100");
    rq->query = query->valuestring;
    rq->limit = (int)lim;
    return 0;
}

/* 1 with the 400 in *r when the request needs an intent the config does not ask for. */
static int members_intents(struct http_ctx *ctx, const struct http_members_req *rq,
                           struct http_reply *r)
{
    if (rq->query && !rq->query[0] && !(ctx->cfg->intents & (1ull << SH_INTENT_GUILD_MEMBERS)))
        return http__refuse(r, 400, "missing_intent",
                            "requesting the whole member list (empty query) needs the "
                            "GUILD_MEMBERS intent; add it to \"intents\" (and enable it in "
                            "the Developer Portal)");
    if (rq->presences && !(ctx->cfg->intents & (1ull << SH_INTENT_GUILD_PRESENCES)))
        return http__refuse(r, 400, "missing_intent",
                            "presences: true needs the GUILD_PRESENCES intent; add it to "
                            "\"intents\" (and enable it in the Developer Portal)");
    return 0;
}

/* The body's fields into *rq (user ids into ids); 1 with the 400 in *r. */
static int members_fields(struct http_ctx *ctx, const cJSON *body, uint64_t *ids,
                          struct http_members_req *rq, struct http_reply *r)
{
    static const char *const allowed[] = {"query",     "limit",      "user_ids",
                                          "presences", "timeout_ms", NULL};
    if (http__unknown_fields(body, allowed, r) || http__get_timeout(ctx, body, &rq->timeout_ms, r))
        return 1;
    const cJSON *query = cJSON_GetObjectItemCaseSensitive(body, "query");
    const cJSON *limit = cJSON_GetObjectItemCaseSensitive(body, "limit");
    const cJSON *uids = cJSON_GetObjectItemCaseSensitive(body, "user_ids");
    const cJSON *pres = cJSON_GetObjectItemCaseSensitive(body, "presences");
    if (query && uids)
        return http__refuse(r, 400, "invalid_request",
                            "query and user_ids exclude each other: give one");
    if (pres && !cJSON_IsBool(pres))
        return http__bad_field(r, "presences", "true or false");
    rq->presences = cJSON_IsTrue(pres);
    if (uids ? members_by_ids(uids, limit, ids, rq, r) : members_by_query(query, limit, rq, r))
        return 1;
    return members_intents(ctx, rq, r);
}

int http__post_members(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    struct http_members_req mr;
    uint64_t ids[MAX_USER_IDS];
    memset(&mr, 0, sizeof(mr));
    if (http__route_guild(ctx, rq->param, &mr.guild_id, &mr.shard, r) ||
        members_fields(ctx, rq->body, ids, &mr, r))
        return 0;
    suspend(rq->call);
    return start_waiting(
        rq->call, http_pending_members(ctx->pending, &mr, rq->call->token, &rq->call->waiter), r);
}

/* ---- channel info -------------------------------------------------------------------------- */

/* The fields array as JSON text into fj (both known fields when absent); 1 with the 400 in *r. */
static int channel_fields(const cJSON *fields, char *fj, size_t cap, struct http_reply *r)
{
    static const char *const known[] = {"status", "voice_start_time"};
    snprintf(fj, cap, "[\"%s\",\"%s\"]", known[0], known[1]);
    if (!fields)
        return 0;
    if (!cJSON_IsArray(fields) || cJSON_GetArraySize(fields) < 1 || cJSON_GetArraySize(fields) > 2)
        return http__bad_field(r, "fields",
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
            return http__bad_field(
                r, "fields", "each entry is \"status\" or \"voice_start_time\", at most once");
        have[k] = 1;
        off += (size_t)snprintf(fj + off, cap - off, "%s\"%s\"", off > 1 ? "," : "", known[k]);
    }
    snprintf(fj + off, cap - off, "]");
    return 0;
}

int http__post_channel_info(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    static const char *const allowed[] = {"fields", "timeout_ms", NULL};
    uint64_t gid;
    int shard, timeout_ms;
    char fj[128];
    if (http__route_guild(ctx, rq->param, &gid, &shard, r) ||
        http__unknown_fields(rq->body, allowed, r) ||
        http__get_timeout(ctx, rq->body, &timeout_ms, r) ||
        channel_fields(cJSON_GetObjectItemCaseSensitive(rq->body, "fields"), fj, sizeof(fj), r))
        return 0;
    suspend(rq->call);
    return start_waiting(rq->call,
                         http_pending_channel_info(ctx->pending, gid, shard, fj, timeout_ms,
                                                   rq->call->token, &rq->call->waiter),
                         r);
}

/* ---- soundboard sounds --------------------------------------------------------------------- */

/* guild_ids (1..100 distinct snowflake strings, each on a shard here) into ids and shards, their
 * count in *n; 1 with the error in *r. */
static int soundboard_guilds(struct http_ctx *ctx, const cJSON *g, uint64_t *ids, int *shards,
                             int *n, struct http_reply *r)
{
    if (!g)
        return http__refuse(r, 400, "missing_field", "guild_ids: required");
    int k = 0;
    *n = cJSON_GetArraySize(g);
    if (!cJSON_IsArray(g) || *n < 1 || *n > HTTP_MAX_SOUNDBOARD_GUILDS)
        return http__bad_field(r, "guild_ids", "an array of 1 to 100 guild id strings");
    for (const cJSON *e = g->child; e; e = e->next, k++) {
        if (http__get_snowflake(e, &ids[k]))
            return http__bad_field(r, "guild_ids",
                                   "every entry must be a guild id string (snowflake)");
        for (int j = 0; j < k; j++)
            if (ids[j] == ids[k])
                return http__bad_field(r, "guild_ids", "a guild id appears twice");
        shards[k] = http__guild_shard(ctx, ids[k]);
        if (!ctx->ops->runs(ctx->gw, shards[k]))
            return http__refuse(r, 404, "shard_not_found",
                                "guild %" PRIu64 " belongs to shard %d, which does not run "
                                "in this process",
                                ids[k], shards[k]);
    }
    return 0;
}

int http__post_soundboard(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    static const char *const allowed[] = {"guild_ids", "timeout_ms", NULL};
    uint64_t ids[HTTP_MAX_SOUNDBOARD_GUILDS];
    int shards[HTTP_MAX_SOUNDBOARD_GUILDS], timeout_ms, n = 0;
    if (!rq->body)
        return http_reply_error(r, 400, "missing_body",
                                "a body {\"guild_ids\": [...]} is required");
    if (http__unknown_fields(rq->body, allowed, r) ||
        http__get_timeout(ctx, rq->body, &timeout_ms, r))
        return 0;
    if (soundboard_guilds(ctx, cJSON_GetObjectItemCaseSensitive(rq->body, "guild_ids"), ids, shards,
                          &n, r))
        return 0;
    suspend(rq->call);
    return start_waiting(rq->call,
                         http_pending_soundboard(ctx->pending, ids, shards, n, timeout_ms,
                                                 rq->call->token, &rq->call->waiter),
                         r);
}
