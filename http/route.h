/*
 * http/route.h: the control API's route table and path matching. Pure functions over
 * strings: no sockets, no gateway. server.c asks which route a method and path name,
 * and gets the captured path parameter, or the 404/405 answer (with the Allow list).
 */
#ifndef SHARDHOOK_HTTP_ROUTE_H
#define SHARDHOOK_HTTP_ROUTE_H

#include <stddef.h>
#include <stdint.h>

enum http_route {
    HTTP_ROUTE_NONE = 0,
    HTTP_ROUTE_STATUS_PAGE,  /* GET / */
    HTTP_ROUTE_HEALTHZ,      /* GET /healthz */
    HTTP_ROUTE_READYZ,       /* GET /readyz */
    HTTP_ROUTE_METRICS,      /* GET /metrics */
    HTTP_ROUTE_GATEWAY,      /* GET /v1/gateway */
    HTTP_ROUTE_SHARDS,       /* GET /v1/shards */
    HTTP_ROUTE_SHARD,        /* GET /v1/shards/{id} */
    HTTP_ROUTE_RECONNECT,    /* POST /v1/shards/{id}/reconnect */
    HTTP_ROUTE_SEND,         /* POST /v1/shards/{id}/send */
    HTTP_ROUTE_PRESENCE,     /* POST /v1/presence */
    HTTP_ROUTE_MEMBERS,      /* POST /v1/guilds/{guild_id}/members */
    HTTP_ROUTE_CHANNEL_INFO, /* POST /v1/guilds/{guild_id}/channel-info */
    HTTP_ROUTE_VOICE_STATE,  /* POST /v1/guilds/{guild_id}/voice-state */
    HTTP_ROUTE_SOUNDBOARD,   /* POST /v1/soundboard-sounds */
    HTTP_ROUTE_COUNT_
};

enum http_method { HTTP_GET = 1, HTTP_HEAD, HTTP_POST, HTTP_OTHER };

#define HTTP_PARAM_MAX 32 /* a path parameter: a shard id or a snowflake, with room to spare */

struct http_match {
    enum http_route route; /* HTTP_ROUTE_NONE when status is 404 or 405 */
    int status;            /* 0 matched, 404 no such path, 405 path known but not this method */
    char allow[32];        /* with 405: the Allow header value */
    char param[HTTP_PARAM_MAX]; /* the {id} segment, "" when the route has none */
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
