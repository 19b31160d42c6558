/*
 * http/h_cache.c: the entity cache's read endpoints (docs/api.md, "Entity cache"): GET
 * /v1/guilds/{guild_id}[/channels|/threads|/roles|/emojis|/members[/{user_id}[/permissions]]|
 * /voice-states[/{user_id}]], /v1/channels/{channel_id}, /v1/users/{user_id}, /v1/cache/guilds
 * and /v1/cache. One handler serves them all: it checks the path's ids and the query
 * (limit, after, channel_id), asks ca_cache_read (cache/cache.h) and turns its answer into
 * 200, 404 (not_cached naming the config key, unknown_<kind>, cache_disabled) or 503
 * guild_loading. Also the ETag of their 200s, which server.c adds where every answer becomes
 * an HTTP response. Cluster mode's forwarding of these reads lives in forward.c. Owns no state.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "http/internal.h"
#include "lib/errors.h"
#include "lib/snowflake.h"

#define MEMBERS_MAX 1000
#define GUILD_LIST_MAX 1000
#define GUILD_LIST_DEFAULT 100

/* What a route reads, the kind its 404 names, the kinds it needs (bits of CFG_CACHE_<KIND>). */
struct cache_row {
    enum http_route route;
    enum ca_what what;
    const char *unknown; /* unknown_<this> when the entity is not held */
    unsigned needs;
};

#define K(kind) (1u << CFG_CACHE_##kind)
static const struct cache_row rows[] = {
    {HTTP_ROUTE_CACHE_GUILD, CA_GUILD, "guild", K(GUILDS)},
    {HTTP_ROUTE_CACHE_CHANNELS, CA_CHANNELS, "guild", K(CHANNELS)},
    {HTTP_ROUTE_CACHE_THREADS, CA_THREADS, "guild", K(CHANNELS)},
    {HTTP_ROUTE_CACHE_ROLES, CA_ROLES, "guild", K(ROLES)},
    {HTTP_ROUTE_CACHE_EMOJIS, CA_EMOJIS, "guild", K(EMOJIS)},
    {HTTP_ROUTE_CACHE_MEMBERS, CA_MEMBERS, "guild", K(MEMBERS)},
    {HTTP_ROUTE_CACHE_MEMBER, CA_MEMBER, "member", K(MEMBERS)},
    {HTTP_ROUTE_CACHE_PERMISSIONS, CA_PERMISSIONS, "member", K(MEMBERS) | K(ROLES)},
    {HTTP_ROUTE_CACHE_VOICE_STATES, CA_VOICE_STATES, "guild", K(VOICE_STATES)},
    {HTTP_ROUTE_CACHE_VOICE_STATE, CA_VOICE_STATE, "voice_state", K(VOICE_STATES)},
    {HTTP_ROUTE_CACHE_CHANNEL, CA_CHANNEL, "channel", K(CHANNELS)},
    {HTTP_ROUTE_CACHE_USER, CA_USER, "user", 0},
    {HTTP_ROUTE_CACHE_GUILD_LIST, CA_GUILD_LIST, NULL, K(GUILDS)},
    {HTTP_ROUTE_CACHE_STATS, CA_STATS, NULL, 0},
};
#undef K
_Static_assert(sizeof(rows) / sizeof(rows[0]) ==
                   HTTP_ROUTE_CACHE_STATS - HTTP_ROUTE_CACHE_GUILD + 1,
               "one row per cache route");

int http__cache_route(enum http_route route)
{
    return route >= HTTP_ROUTE_CACHE_GUILD && route <= HTTP_ROUTE_CACHE_STATS;
}

static const struct cache_row *row_of(enum http_route route)
{
    return http__cache_route(route) ? &rows[route - HTTP_ROUTE_CACHE_GUILD] : NULL;
}

/* ---- ETag ------------------------------------------------------------------------------------ */

void http__etag(const void *body, size_t len, char out[19])
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, 64 bits */
    const unsigned char *p = body;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    snprintf(out, 19, "\"%016" PRIx64 "\"", h);
}

int http__etag_matches(const char *inm, const char *etag)
{
    size_t want = strlen(etag);
    for (const char *p = inm; p && *p;) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m && (p[m - 1] == ' ' || p[m - 1] == '\t'))
            m--;
        const char *t = p;
        if (m >= 2 && t[0] == 'W' && t[1] == '/') { /* If-None-Match compares weakly */
            t += 2;
            m -= 2;
        }
        if ((m == 1 && t[0] == '*') || (m == want && !memcmp(t, etag, want)))
            return 1;
        p += n;
    }
    return 0;
}

/* ---- the request ------------------------------------------------------------------------------
 */

static const char *query(const struct http_req *rq, const char *key)
{
    return rq->call && rq->call->query ? rq->call->query(rq->call->token, key) : NULL;
}

/* A snowflake path segment (n bytes at s): 0, or 1 with a 400 invalid_id naming what. */
static int path_id(const char *s, size_t n, const char *what, uint64_t *out, struct http_reply *r)
{
    if (!sh_parse_snowflake(s, n, out))
        return 0;
    return http__refuse(r, 400, "invalid_id", "%s: \"%.*s\" is not a snowflake", what,
                        (int)(n > 32 ? 32 : n), s);
}

/* The query's limit (lo..hi, def when absent): 0, or 1 with a 400 invalid_query. */
static int query_limit(const struct http_req *rq, int hi, int def, int *out, struct http_reply *r)
{
    const char *l = query(rq, "limit");
    *out = def;
    if (!l)
        return 0;
    size_t n = strlen(l);
    if (n == 0 || n > 4 || strspn(l, "0123456789") != n || l[0] == '0' || atoi(l) > hi)
        return http__refuse(r, 400, "invalid_query", "limit: an integer from 1 to %d", hi);
    *out = atoi(l);
    return 0;
}

/* An optional snowflake in the query ("0" too when zero_ok): 0, or 1 with a 400 invalid_query. */
static int query_id(const struct http_req *rq, const char *key, int zero_ok, uint64_t *out,
                    struct http_reply *r)
{
    const char *v = query(rq, key);
    *out = 0;
    if (!v || (zero_ok && !strcmp(v, "0")) || !sh_parse_snowflake(v, strlen(v), out))
        return 0;
    return http__refuse(r, 400, "invalid_query", "%s: a snowflake (got \"%.32s\")", key, v);
}

/* The path's ids and the query into q; 1 with a 400 in *r. */
static int parse_query(const struct cache_row *row, const struct http_req *rq, struct ca_query *q,
                       struct http_reply *r)
{
    const char *p = rq->param ? rq->param : "";
    size_t first = strcspn(p, "/");
    memset(q, 0, sizeof(*q));
    q->what = row->what;
    switch (row->what) {
    case CA_CHANNEL:
        return path_id(p, strlen(p), "channel id", &q->id, r);
    case CA_USER:
        return path_id(p, strlen(p), "user id", &q->id, r);
    case CA_GUILD_LIST:
        return query_limit(rq, GUILD_LIST_MAX, GUILD_LIST_DEFAULT, &q->limit, r) ||
               query_id(rq, "after", 1, &q->after, r);
    case CA_STATS:
        return 0;
    default:
        break;
    }
    if (path_id(p, first, "guild id", &q->guild_id, r))
        return 1;
    if (row->what == CA_MEMBER || row->what == CA_VOICE_STATE || row->what == CA_PERMISSIONS) {
        const char *u = p[first] ? p + first + 1 : "";
        if (path_id(u, strlen(u), "user id", &q->id, r))
            return 1;
    }
    if (row->what == CA_MEMBERS)
        return query_limit(rq, MEMBERS_MAX, 1, &q->limit, r) ||
               query_id(rq, "after", 1, &q->after, r);
    if (row->what == CA_PERMISSIONS)
        return query_id(rq, "channel_id", 0, &q->channel_id, r);
    return 0;
}

/* ---- the answers ------------------------------------------------------------------------------
 */

/* The config key of the first kind q needs that the config leaves out. */
static const char *missing_key(const struct cfg_config *cfg, const struct cache_row *row,
                               const struct ca_query *q)
{
#define KEY_(id, key, intent) "cache." key,
    static const char *const keys[] = {CFG_CACHE_KINDS(KEY_)};
#undef KEY_
    unsigned needs = row->needs | (q->channel_id ? 1u << CFG_CACHE_CHANNELS : 0);
    for (int k = 0; k < CFG_CACHE_KIND_COUNT_; k++)
        if ((needs >> k & 1) && !(cfg->cache_kinds >> k & 1))
            return keys[k];
    for (int k = 0; k < CFG_CACHE_KIND_COUNT_; k++)
        if (needs >> k & 1)
            return keys[k];
    return "cache";
}

/* 1 when the guild's shard runs here and is not ready yet: its guilds are still loading. */
static int shard_loading(struct http_ctx *ctx, uint64_t guild_id)
{
    int shard = http__guild_shard(ctx, guild_id);
    struct gw_shard_info info;
    if (!ctx->ops->runs(ctx->gw, shard) || !ctx->ops->shard_info)
        return 0;
    memset(&info, 0, sizeof(info));
    if (ctx->ops->shard_info(ctx->gw, shard, &info))
        return 0;
    return !http__shard_ready(&info);
}

static int loading(struct http_reply *r, uint64_t guild_id)
{
    sh_buf_reset(&r->body);
    http_reply_error(r, 503, "guild_loading",
                     "guild %" PRIu64 " is still loading on its shard; ask again shortly",
                     guild_id);
    http_reply_retry_after(r, 1);
    return 0;
}

/* CA_UNKNOWN: which entity is missing (the guild, or what the route asks of a known guild). */
static int unknown(struct http_ctx *ctx, struct ca_cache *c, const struct cache_row *row,
                   const struct ca_query *q, struct http_reply *r)
{
    sh_buf_reset(&r->body);
    const char *kind = row->unknown ? row->unknown : "guild";
    if (q->guild_id && ca_cache_guild_shard(c, q->guild_id) < 0) {
        if (shard_loading(ctx, q->guild_id))
            return loading(r, q->guild_id);
        return http_reply_error(r, 404, "unknown_guild", "the cache holds no guild %" PRIu64,
                                q->guild_id);
    }
    if (row->what == CA_PERMISSIONS && q->channel_id) {
        struct ca_query cq = {.what = CA_CHANNEL, .id = q->channel_id};
        struct sh_buf tmp;
        sh_buf_init(&tmp, HTTP_MAX_ANSWER);
        int rc = ca_cache_read(c, &cq, &tmp);
        sh_buf_free(&tmp);
        if (rc == CA_UNKNOWN)
            return http_reply_error(r, 404, "unknown_channel",
                                    "the cache holds no channel %" PRIu64, q->channel_id);
    }
    char code[32];
    snprintf(code, sizeof(code), "unknown_%s", kind);
    return http_reply_error(r, 404, code, "the cache holds no such %s", kind);
}

/* {"node":"<name>", ...} in cluster mode: /v1/cache is this node's own. */
static int add_node(struct http_ctx *ctx, struct http_reply *r)
{
    const char *node = ctx->cfg->cluster ? ctx->cfg->cluster_node : NULL;
    if (!node || r->body.len < 2 || r->body.data[0] != '{')
        return 0;
    cJSON *j = cJSON_ParseWithLength(r->body.data, r->body.len);
    if (!j)
        return 0;
    cJSON *n = cJSON_CreateString(node);
    if (!n || !cJSON_AddItemToObject(j, "node", n)) {
        cJSON_Delete(n);
        cJSON_Delete(j);
        return http__oom(r);
    }
    return http_reply_json(r, 200, j);
}

int http__get_cache(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r)
{
    const struct cache_row *row = row_of(rq->route);
    if (!row)
        return http_reply_error(r, 404, "not_found", "no such route");
    if (!ctx->cfg->cache)
        return http_reply_error(r, 404, "cache_disabled",
                                "the entity cache is off: the config has no \"cache\" block");
    struct ca_cache *c = atomic_load(&ctx->cache);
    if (!c)
        return http_reply_error(r, 503, "unavailable", "the entity cache is not started yet");
    struct ca_query q;
    if (parse_query(row, rq, &q, r))
        return 0;
    sh_buf_reset(&r->body);
    int rc = ca_cache_read(c, &q, &r->body);
    switch (rc) {
    case 0:
        r->status = 200;
        r->content_type = "application/json";
        return row->what == CA_STATS ? add_node(ctx, r) : 0;
    case CA_NOT_CACHED: {
        const char *key = missing_key(ctx->cfg, row, &q);
        sh_buf_reset(&r->body);
        return http_reply_error(r, 404, "not_cached",
                                "the cache does not keep this: \"%s\" is false in the config, or "
                                "its intent is not in \"intents\"",
                                key);
    }
    case CA_UNKNOWN:
        return unknown(ctx, c, row, &q, r);
    case CA_LOADING:
        return loading(r, q.guild_id);
    case SH_ENOMEM:
        sh_buf_reset(&r->body);
        return http__oom(r);
    default:
        sh_buf_reset(&r->body);
        return http_reply_error(r, 500, "internal", "the cache cannot answer: %s", sh_strerror(rc));
    }
}
