/*
 * http/internal.h: what the files of http/ share and no other room may use (the http__ prefix):
 * the route table's row type, the handler of every row (declared from HTTP_ROUTES), and the
 * helpers the handlers have in common (field checks, routing a {id} or {guild_id} segment,
 * answering a gateway failure, snapshots, gateway payloads). The room's public face is
 * server.h, handlers.h, route.h, pending.h, reply.h and stats.h.
 */
#ifndef SHARDHOOK_HTTP_INTERNAL_H
#define SHARDHOOK_HTTP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "http/handlers.h"
#include "http/reply.h"
#include "http/route.h"
#include "lib/discord.h"

#define HTTP__METRICS_CAP ((size_t)16 << 20) /* the /metrics answer */

/* One request as a handler sees it. */
struct http_req {
    enum http_route route;  /* the row answered (one handler serves the cache's routes) */
    const char *param;      /* the {id} or {guild_id} segment, "" when the route has none */
    const cJSON *body;      /* POST routes: the body, an object, NULL when it was empty */
    struct http_call *call; /* the connection, for the handlers that suspend it */
};

/*
 * A route's handler: answers into *r (status set) and returns what the http_reply_* call that
 * filled it returned; a handler that suspends the connection sets rq->call->suspended.
 */
struct http__route {
    enum http_route route;
    enum http_method method;
    const char *pattern;
    const char *name;
    int auth;
    int (*handle)(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r);
};

/* The row of route r, NULL for HTTP_ROUTE_NONE. */
const struct http__route *http__route_row(enum http_route r);

#define HTTP__HANDLER_(id, method, pattern, label, auth, handler)                                  \
    int handler(struct http_ctx *ctx, const struct http_req *rq, struct http_reply *r);
HTTP_ROUTES(HTTP__HANDLER_)
#undef HTTP__HANDLER_

/* ---- waking a waiting request --------------------------------------------------------------- */

/*
 * What a pending waiter's token points to: server.c's requests and action.c's members actions
 * both start with it, so the pending table's one wake callback (http__wake) serves both.
 */
struct http__wakeable {
    void (*wake)(struct http__wakeable *self);
};
/* The pending table's wake callback: token's own wake. */
void http__wake(void *token);

/* ---- webhook actions (action.c) ------------------------------------------------------------ */

/* http_server_action on the server's context. */
int http__action_run(struct http_ctx *ctx, const cJSON *action, const struct http_action_to *to,
                     const char **type, char *msg, size_t cap);

/* ---- field checks: each returns 1 with a 400 in *r, 0 when the input is fine ---------------- */

/* 400 unknown_field naming the first member of obj not in allowed (NULL-terminated). */
int http__unknown_fields(const cJSON *obj, const char *const *allowed, struct http_reply *r);
/* 400 invalid_field "field: what". Always 1. */
int http__bad_field(struct http_reply *r, const char *field, const char *what);
/* An integer in [lo, hi] (a JSON number with no fraction): 0, or -1. */
int http__get_int(const cJSON *j, long lo, long hi, long *out);
/* A snowflake given as a JSON string: 0, or negative. */
int http__get_snowflake(const cJSON *j, uint64_t *out);
/* The optional timeout_ms field, ctx->request_timeout_ms when absent. */
int http__get_timeout(struct http_ctx *ctx, const cJSON *body, int *out, struct http_reply *r);

/* ---- routing a path parameter: 1 with the 400/404 in *r, 0 when the shard runs here --------- */

int http__route_shard(struct http_ctx *ctx, const char *param, int *shard, struct http_reply *r);
int http__route_guild(struct http_ctx *ctx, const char *param, uint64_t *gid, int *shard,
                      struct http_reply *r);
/* The shard a guild belongs to: (guild_id >> 22) % the bot's shard count. */
int http__guild_shard(struct http_ctx *ctx, uint64_t guild_id);

/* ---- answers ------------------------------------------------------------------------------ */

/* Answer a failed ctx->ops->send/reconnect (rc) for shard; extra (may be NULL, owned) goes beside
 * "error". */
void http__gateway_error(struct http_ctx *ctx, int rc, int shard, cJSON *extra,
                         struct http_reply *r);
/* An error answer (http_reply_error) that returns 1, for checks that say "1 with *r filled". */
int http__refuse(struct http_reply *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* 500 internal "out of memory". */
int http__oom(struct http_reply *r);
void http__add_u64_str(cJSON *obj, const char *key, uint64_t v);
/* wall_ms as 2024-01-02T03:04:05.678Z. */
void http__iso_time(char *out, size_t cap, uint64_t wall_ms);

/* ---- the gateway's snapshots --------------------------------------------------------------- */

/* Every shard's snapshot (malloc'd, *n entries) and the overview; NULL when out of memory. */
struct gw_shard_info *http__snapshot(struct http_ctx *ctx, struct gw_overview *ov, int *n);
/* The shard's status name (gw_status_names; the first one before the gateway set any). */
const char *http__status_name(const struct gw_shard_info *s);
/* 1 when the shard is ready (may take commands and counts for /readyz). */
int http__shard_ready(const struct gw_shard_info *s);

/* One shard's snapshot as the API shows it (GET /v1/shards); NULL when out of memory. */
cJSON *http__shard_json(const struct gw_shard_info *s);

/* ---- cluster mode (h_cluster.c): each returns 0 with *r filled, 1 when not clustered ------- */

int http__cluster_shards(struct http_ctx *ctx, struct http_reply *r);
int http__cluster_shard(struct http_ctx *ctx, int id, struct http_reply *r);
int http__cluster_readyz(struct http_ctx *ctx, struct http_reply *r);

/* ---- the entity cache's reads (h_cache.c) ------------------------------------------------ */

/* 1 when route is one of HTTP_CACHE_ROUTES: its 200s carry an ETag (server.c). */
int http__cache_route(enum http_route route);
/* ETag value ("\"<16 hex>\"", 19 bytes with the NUL) of a body: FNV-1a 64 of its bytes. */
void http__etag(const void *body, size_t len, char out[19]);
/* 1 when an If-None-Match header value (a tag, a list of tags, or *) matches etag. */
int http__etag_matches(const char *if_none_match, const char *etag);

/* ---- gateway payloads ---------------------------------------------------------------------- */

/* Print {"op":op,"d":d} into out (SH_GW_MAX_SEND_BYTES + 1 bytes); 1 with a 413 (or 500) in *r
 * when it would not fit. */
int http__build_payload(int op, const cJSON *d, char *out, size_t *len, struct http_reply *r);

/* The webhook param names: its config `name`, or its index ("0", "1", ...). 0, or 1 with a
 * 404 webhook_not_found in *r. */
int http__find_webhook(struct http_ctx *ctx, const char *param, size_t *out, struct http_reply *r);

#endif
