/*
 * http/h_presence.c: the endpoints that change how the bot appears: POST /v1/presence (op 3 to
 * every shard here or the listed ones; the presence is checked by config's cfg_presence_parse,
 * the same rules as the config's `presence`) and POST /v1/guilds/{guild_id}/voice-state (op 4).
 * Owns no state.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "config/config.h"
#include "http/internal.h"
#include "lib/errors.h"

/* ---- presence ------------------------------------------------------------------------------ */

/* The body's presence (every member but "shards") as op 3's d; 1 with the error in *r. */
static int presence_d(const cJSON *body, char **d, struct http_reply *r)
{
    if (!body)
        return http__refuse(r, 400, "missing_body",
                            "a presence object {status, activities, since, afk} is required");
    if (!cJSON_GetObjectItemCaseSensitive(body, "status"))
        return http__refuse(r, 400, "missing_field",
                            "status: required (online, dnd, idle, invisible or offline)");
    cJSON *p = cJSON_Duplicate(body, 1);
    if (!p) {
        http__oom(r);
        return 1;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(p, "shards");
    char err[256];
    int rc = cfg_presence_parse(p, CFG_PRESENCE_LITERAL, d, err, sizeof(err));
    cJSON_Delete(p);
    if (rc == SH_ENOTFOUND)
        http_reply_error(r, 400, "unknown_field", "%s", err);
    else if (rc == SH_ETOOBIG)
        http_reply_error(r, 413, "payload_too_large", "%s", err);
    else if (rc == SH_ENOMEM)
        http__oom(r);
    else if (rc)
        http_reply_error(r, 400, "invalid_field", "%s", err);
    return rc != 0;
}

/* Add shard id to targets (n of them) unless it is there already. */
static void add_target(int *targets, int *n, int id)
{
    for (int k = 0; k < *n; k++)
        if (targets[k] == id)
            return;
    targets[(*n)++] = id;
}

/* The listed shards (each must run here), at most cap of them; 1 with the error in *r. */
static int listed_targets(struct http_ctx *ctx, const cJSON *shards, int *targets, int cap, int *n,
                          struct http_reply *r)
{
    if (!cJSON_IsArray(shards) || cJSON_GetArraySize(shards) < 1)
        return http__bad_field(r, "shards", "a non-empty array of shard ids");
    for (const cJSON *s = shards->child; s; s = s->next) {
        long id;
        if (http__get_int(s, 0, 65535, &id))
            return http__bad_field(r, "shards", "shard ids are integers from 0 to 65535");
        if (!ctx->ops->runs(ctx->gw, (int)id))
            return http__refuse(r, 404, "shard_not_found", "shard %ld does not run in this process",
                                id);
        if (*n < cap)
            add_target(targets, n, (int)id);
    }
    return 0;
}

/* The shards op 3 goes to: every shard here, or the listed ones. 1 with the error in *r. */
static int presence_targets(struct http_ctx *ctx, const cJSON *shards, int **targets, int *n,
                            struct http_reply *r)
{
    struct gw_overview ov;
    int n_all = 0, bad = 0;
    struct gw_shard_info *all = http__snapshot(ctx, &ov, &n_all);
    *n = 0;
    *targets = all ? malloc(sizeof(int) * (size_t)(n_all > 0 ? n_all : 1)) : NULL;
    if (!*targets)
        bad = http__refuse(r, 500, "internal", "out of memory");
    else if (shards)
        bad = listed_targets(ctx, shards, *targets, n_all, n, r);
    else
        for (int k = 0; k < n_all; k++)
            (*targets)[(*n)++] = all[k].id;
    free(all);
    return bad;
}

/* Send payload to every target; 202 with the shards, or the first failure and which got it. */
static int send_to_all(struct http_ctx *ctx, const int *targets, int n, const char *payload,
                       size_t len, struct http_reply *r)
{
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
    cJSON *j = cJSON_CreateObject();
    if (j)
        cJSON_AddItemToObject(j, failed_rc ? "queued" : "shards", queued);
    else
        cJSON_Delete(queued);
    if (!failed_rc)
        return http_reply_json(r, 202, j);
    /* some shards may have it already: say which */
    http__gateway_error(ctx, failed_rc, failed_shard, j, r);
    return 0;
}

int http__post_presence(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    char *d = NULL, payload[SH_GW_MAX_SEND_BYTES + 1];
    int *targets = NULL, n = 0, rc = 0;
    if (presence_d(rq->body, &d, r) ||
        presence_targets(ctx, cJSON_GetObjectItemCaseSensitive(rq->body, "shards"), &targets, &n,
                         r))
        goto out;
    int len = snprintf(payload, sizeof(payload), "{\"op\":%d,\"d\":%s}", SH_OP_PRESENCE_UPDATE, d);
    if (len < 0 || len > SH_GW_MAX_SEND_BYTES) {
        rc = http_reply_error(r, 413, "payload_too_large",
                              "the gateway payload would be %d bytes; Discord allows %d", len,
                              SH_GW_MAX_SEND_BYTES);
        goto out;
    }
    rc = send_to_all(ctx, targets, n, payload, (size_t)len, r);
out:
    free(d);
    free(targets);
    return rc;
}

/* ---- voice state --------------------------------------------------------------------------- */

/* The body's channel_id (0 for null: leave), self_mute and self_deaf; 1 with the 400 in *r. */
static int voice_fields(const cJSON *body, uint64_t *cid, int *mute, int *deaf,
                        struct http_reply *r)
{
    static const char *const allowed[] = {"channel_id", "self_mute", "self_deaf", NULL};
    if (!body)
        return http__refuse(r, 400, "missing_body",
                            "a body {\"channel_id\": \"...\" or null, \"self_mute\", "
                            "\"self_deaf\"} is required");
    if (http__unknown_fields(body, allowed, r))
        return 1;
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(body, "channel_id");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(body, "self_mute");
    const cJSON *dj = cJSON_GetObjectItemCaseSensitive(body, "self_deaf");
    *cid = 0;
    if (!ch)
        return http__refuse(r, 400, "missing_field",
                            "channel_id: required (a channel id string, or null to leave)");
    if (!cJSON_IsNull(ch) && http__get_snowflake(ch, cid))
        return http__bad_field(r, "channel_id", "a channel id as a string (snowflake), or null");
    if (m && !cJSON_IsBool(m))
        return http__bad_field(r, "self_mute", "true or false");
    if (dj && !cJSON_IsBool(dj))
        return http__bad_field(r, "self_deaf", "true or false");
    *mute = cJSON_IsTrue(m);
    *deaf = cJSON_IsTrue(dj);
    return 0;
}

int http__post_voice_state(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    uint64_t gid, cid;
    int shard, mute = 0, deaf = 0;
    if (http__route_guild(ctx, rq->param, &gid, &shard, r) ||
        voice_fields(rq->body, &cid, &mute, &deaf, r))
        return 0;
    char payload[SH_GW_MAX_SEND_BYTES + 1], chs[32];
    if (cid)
        snprintf(chs, sizeof(chs), "\"%" PRIu64 "\"", cid);
    else
        snprintf(chs, sizeof(chs), "null");
    int n = snprintf(payload, sizeof(payload),
                     "{\"op\":%d,\"d\":{\"guild_id\":\"%" PRIu64 "\",\"channel_id\":%s,"
                     "\"self_mute\":%s,\"self_deaf\":%s}}",
                     SH_OP_VOICE_STATE_UPDATE, gid, chs, mute ? "true" : "false",
                     deaf ? "true" : "false");
    int rc = ctx->ops->send(ctx->gw, shard, payload, (size_t)n);
    if (rc) {
        http__gateway_error(ctx, rc, shard, NULL, r);
        return 0;
    }
    cJSON *j = cJSON_CreateObject();
    if (j) {
        http__add_u64_str(j, "guild_id", gid);
        cJSON_AddNumberToObject(j, "shard", shard);
    }
    return http_reply_json(r, 202, j);
}
