/*
 * http/route.h: the control API's route table and path matching. The table (HTTP_ROUTES) names
 * each endpoint's method, path, metrics label, auth and handler; matching is pure functions over
 * strings: no sockets, no gateway. server.c asks which route a method and path name, and gets
 * the captured path parameter, or the 404/405 answer (with the Allow list).
 */
#ifndef SHARDHOOK_HTTP_ROUTE_H
#define SHARDHOOK_HTTP_ROUTE_H

#include <stddef.h>
#include <stdint.h>

enum http_method { HTTP_GET = 1, HTTP_HEAD, HTTP_POST, HTTP_DELETE, HTTP_OTHER };

/*
 * The route table, one row per endpoint: X(ID, method, pattern, label, auth, handler).
 * pattern: literal segments and at most two "{}", each capturing one path segment (two captures
 * come out as "first/second" in one parameter); label: the stable, low-cardinality name for
 * metrics and logs; auth: 1 when the route needs the bearer token (if one is set); handler: the
 * function that answers it (http/internal.h). Adding an endpoint is one row here and one handler.
 */
#define HTTP_ROUTES(X)                                                                             \
    X(STATUS_PAGE, HTTP_GET, "/", "/", 0, http__get_status_page)                                   \
    X(HEALTHZ, HTTP_GET, "/healthz", "/healthz", 0, http__get_healthz)                             \
    X(READYZ, HTTP_GET, "/readyz", "/readyz", 0, http__get_readyz)                                 \
    X(METRICS, HTTP_GET, "/metrics", "/metrics", 1, http__get_metrics)                             \
    X(GATEWAY, HTTP_GET, "/v1/gateway", "/v1/gateway", 1, http__get_gateway)                       \
    X(SHARDS, HTTP_GET, "/v1/shards", "/v1/shards", 1, http__get_shards)                           \
    X(SHARD, HTTP_GET, "/v1/shards/{}", "/v1/shards/{id}", 1, http__get_shard)                     \
    X(RECONNECT, HTTP_POST, "/v1/shards/{}/reconnect", "/v1/shards/{id}/reconnect", 1,             \
      http__post_reconnect)                                                                        \
    X(SEND, HTTP_POST, "/v1/shards/{}/send", "/v1/shards/{id}/send", 1, http__post_send)           \
    X(HANDOFF, HTTP_POST, "/v1/shards/{}/handoff", "/v1/shards/{id}/handoff", 1,                   \
      http__post_handoff)                                                                          \
    X(CLUSTER, HTTP_GET, "/v1/cluster", "/v1/cluster", 1, http__get_cluster)                       \
    X(PRESENCE, HTTP_POST, "/v1/presence", "/v1/presence", 1, http__post_presence)                 \
    X(MEMBERS, HTTP_POST, "/v1/guilds/{}/members", "/v1/guilds/{guild_id}/members", 1,             \
      http__post_members)                                                                          \
    X(CHANNEL_INFO, HTTP_POST, "/v1/guilds/{}/channel-info", "/v1/guilds/{guild_id}/channel-info", \
      1, http__post_channel_info)                                                                  \
    X(VOICE_STATE, HTTP_POST, "/v1/guilds/{}/voice-state", "/v1/guilds/{guild_id}/voice-state", 1, \
      http__post_voice_state)                                                                      \
    X(SOUNDBOARD, HTTP_POST, "/v1/soundboard-sounds", "/v1/soundboard-sounds", 1,                  \
      http__post_soundboard)                                                                       \
    X(WEBHOOKS, HTTP_GET, "/v1/webhooks", "/v1/webhooks", 1, http__get_webhooks)                   \
    X(WEBHOOK, HTTP_GET, "/v1/webhooks/{}", "/v1/webhooks/{name}", 1, http__get_webhook)           \
    X(WEBHOOK_PAUSE, HTTP_POST, "/v1/webhooks/{}/pause", "/v1/webhooks/{name}/pause", 1,           \
      http__post_webhook_pause)                                                                    \
    X(WEBHOOK_RESUME, HTTP_POST, "/v1/webhooks/{}/resume", "/v1/webhooks/{name}/resume", 1,        \
      http__post_webhook_resume)                                                                   \
    X(DEAD_LETTERS, HTTP_GET, "/v1/dead-letters", "/v1/dead-letters", 1, http__get_dead_letters)   \
    X(DEAD_LETTER_REDELIVER, HTTP_POST, "/v1/dead-letters/{}/redeliver",                           \
      "/v1/dead-letters/{dead_letter_id}/redeliver", 1, http__post_dead_letter_redeliver)          \
    X(DEAD_LETTER_DELETE, HTTP_DELETE, "/v1/dead-letters/{}", "/v1/dead-letters/{dead_letter_id}", \
      1, http__delete_dead_letter)                                                                 \
    X(WEBHOOK_REDELIVER, HTTP_POST, "/v1/webhooks/{}/redeliver", "/v1/webhooks/{name}/redeliver",  \
      1, http__post_webhook_redeliver)                                                             \
    HTTP_CACHE_ROUTES(X)

/*
 * The entity cache's reads (http/h_cache.c, docs/api.md): every one a GET answered with an ETag
 * (http__cache_route). A GET /v1/guilds/{guild_id}/members is the cache's member list, a POST
 * the gateway's member request (MEMBERS above).
 */
#define HTTP_CACHE_ROUTES(X)                                                                       \
    X(CACHE_GUILD, HTTP_GET, "/v1/guilds/{}", "/v1/guilds/{guild_id}", 1, http__get_cache)         \
    X(CACHE_CHANNELS, HTTP_GET, "/v1/guilds/{}/channels", "/v1/guilds/{guild_id}/channels", 1,     \
      http__get_cache)                                                                             \
    X(CACHE_THREADS, HTTP_GET, "/v1/guilds/{}/threads", "/v1/guilds/{guild_id}/threads", 1,        \
      http__get_cache)                                                                             \
    X(CACHE_ROLES, HTTP_GET, "/v1/guilds/{}/roles", "/v1/guilds/{guild_id}/roles", 1,              \
      http__get_cache)                                                                             \
    X(CACHE_EMOJIS, HTTP_GET, "/v1/guilds/{}/emojis", "/v1/guilds/{guild_id}/emojis", 1,           \
      http__get_cache)                                                                             \
    X(CACHE_MEMBERS, HTTP_GET, "/v1/guilds/{}/members", "/v1/guilds/{guild_id}/members", 1,        \
      http__get_cache)                                                                             \
    X(CACHE_MEMBER, HTTP_GET, "/v1/guilds/{}/members/{}",                                          \
      "/v1/guilds/{guild_id}/members/{user_id}", 1, http__get_cache)                               \
    X(CACHE_PERMISSIONS, HTTP_GET, "/v1/guilds/{}/members/{}/permissions",                         \
      "/v1/guilds/{guild_id}/members/{user_id}/permissions", 1, http__get_cache)                   \
    X(CACHE_VOICE_STATES, HTTP_GET, "/v1/guilds/{}/voice-states",                                  \
      "/v1/guilds/{guild_id}/voice-states", 1, http__get_cache)                                    \
    X(CACHE_VOICE_STATE, HTTP_GET, "/v1/guilds/{}/voice-states/{}",                                \
      "/v1/guilds/{guild_id}/voice-states/{user_id}", 1, http__get_cache)                          \
    X(CACHE_CHANNEL, HTTP_GET, "/v1/channels/{}", "/v1/channels/{channel_id}", 1, http__get_cache) \
    X(CACHE_USER, HTTP_GET, "/v1/users/{}", "/v1/users/{user_id}", 1, http__get_cache)             \
    X(CACHE_GUILD_LIST, HTTP_GET, "/v1/cache/guilds", "/v1/cache/guilds", 1, http__get_cache)      \
    X(CACHE_STATS, HTTP_GET, "/v1/cache", "/v1/cache", 1, http__get_cache)

/* HTTP_ROUTE_<ID> for every row, in table order: a stable name for a route (metrics, tests). */
enum http_route {
    HTTP_ROUTE_NONE = 0,
#define HTTP_ROUTE_ENUM_(id, method, pattern, label, auth, handler) HTTP_ROUTE_##id,
    HTTP_ROUTES(HTTP_ROUTE_ENUM_)
#undef HTTP_ROUTE_ENUM_
        HTTP_ROUTE_COUNT_
};

#define HTTP_PARAM_MAX                                                                             \
    128 /* a path parameter: a shard id, a snowflake, a webhook name                               \
        (64), a dead-letter id */

struct http_match {
    enum http_route route; /* HTTP_ROUTE_NONE when status is 404 or 405 */
    int status;            /* 0 matched, 404 no such path, 405 path known but not this method */
    char allow[32];        /* with 405: the Allow header value (every method the path has) */
    char param[HTTP_PARAM_MAX]; /* the {id} segment ("a/b" for two), "" when the route has none */
    int auth;                   /* 1 when the route needs the bearer token (if one is set) */
};

enum http_method http_method_parse(const char *method);
/* Match method and path (without query string). Always fills *out. */
void http_route_match(enum http_method method, const char *path, struct http_match *out);
/* Stable low-cardinality label for metrics: "/v1/shards/{id}", "unmatched". */
const char *http_route_name(enum http_route r);

/* Parse a decimal shard id (0..65535). 0, or SH_EINVAL. */
int http_parse_shard_id(const char *s, int *out);

#endif
