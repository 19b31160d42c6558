/*
 * http/server.h: the control API server (libmicrohttpd) on `http.listen`.
 *
 * Answers every route of docs/api.md on libmicrohttpd's threads. It reaches the
 * gateway only through the calls in struct http_gateway_ops (by default the gateway's
 * command queue and status snapshots) and never blocks a thread waiting on Discord: requests
 * that wait for gateway replies (members, channel info, soundboard sounds) are suspended and
 * resumed by the pending table (http/pending.h) when the reply or the timeout comes.
 *
 * Lifecycle, from bridge/main.c:
 *     http_server_new(cfg, gw, &srv, err, sizeof(err));   binds the socket, serves at once
 *     struct gw_observer obs = http_server_observer(srv);
 *     gw_gateway_set_observer(gw, &obs);                  before gw_gateway_run
 *     ...
 *     http_server_stop(srv);     answers what is suspended (503), stops serving
 *     (join the gateway thread)
 *     http_server_free(srv);     after the gateway thread stopped calling the observer
 */
#ifndef SHARDHOOK_HTTP_SERVER_H
#define SHARDHOOK_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "config/config.h"
#include "gateway/gateway.h"

#define HTTP_MAX_BODY ((size_t)64 << 10) /* a control request body; larger gets 413 */

/* What the server needs from the gateway; tests substitute their own. All thread-safe. */
struct http_gateway_ops {
    int (*send)(void *gw, int shard_id, const char *payload, size_t len);
    int (*reconnect)(void *gw, int shard_id, int resume);
    int (*snapshot)(void *gw, struct gw_overview *ov, struct gw_shard_info *shards, int cap);
    int (*shard_info)(void *gw, int shard_id, struct gw_shard_info *out);
    int (*total)(void *gw);
    int (*runs)(void *gw, int shard_id);
    /* take a payload given to send back out of the shard's queue, if not sent yet (may be NULL) */
    int (*withdraw)(void *gw, int shard_id, const char *payload, size_t len);
};

struct http_server;

/*
 * What the dead-letter routes need (docs/api.md); bridge/main.c fills it, http/ never reads
 * the folder's format itself. All thread-safe; negative SH_E* codes on failure.
 */
#define HTTP_DEAD_ID_MAX 96 /* a dead-letter id and its NUL */
struct http_deadletter_ops {
    void *ud;
    /* 0 when id is well-formed (its webhook index in *webhook), SH_EINVAL otherwise */
    int (*parse_id)(void *ud, const char *id, size_t *webhook);
    /* {"dead_letters":[...],"next_after":...}, newest first; webhook SIZE_MAX for all, after
       NULL from the newest */
    int (*list)(void *ud, size_t webhook, const char *after, size_t limit, cJSON **out);
    /* 0 when id is in the folder, SH_ENOTFOUND */
    int (*exists)(void *ud, const char *id);
    /* webhook's ids dead-lettered from from_ms to to_ms (inclusive), oldest first; free *ids */
    int (*ids)(void *ud, size_t webhook, uint64_t from_ms, uint64_t to_ms,
               char (**ids)[HTTP_DEAD_ID_MAX], size_t *n);
    /* hand ids (oldest first) to the delivery thread; returns once queued */
    int (*redeliver)(void *ud, size_t webhook, const char (*ids)[HTTP_DEAD_ID_MAX], size_t n);
    /* 0, SH_ENOTFOUND */
    int (*discard)(void *ud, const char *id);
};

/* The dead-letter routes answer 503 until this is called (bridge/main.c, right after new). */
void http_server_set_deadletters(struct http_server *srv, const struct http_deadletter_ops *ops);

/* The ops that call gateway/gateway.h. */
extern const struct http_gateway_ops http_gateway_default_ops;

/*
 * Bind cfg->http_listen and start serving. On failure returns a negative code and writes
 * one line into err (the address and why), leaving *out NULL.
 */
int http_server_new(const struct cfg_config *cfg, struct gw_gateway *gw, struct http_server **out,
                    char *err, size_t errlen);
/* Same with other gateway ops (tests); gw is passed to them as is. */
int http_server_new_ops(const struct cfg_config *cfg, const struct http_gateway_ops *ops, void *gw,
                        struct http_server **out, char *err, size_t errlen);

/* The port actually bound (useful with port 0). */
int http_server_port(const struct http_server *srv);

/* The observer to register with gw_gateway_set_observer (collects replies to waiting requests). */
struct gw_observer http_server_observer(struct http_server *srv);

/* A reload: requests checked after this returns need "Bearer <token>"; NULL or "" turns
 * authentication off. 0 or SH_ENOMEM (the old token stays). Any thread. */
int http_server_set_token(struct http_server *srv, const char *token);

/* Answer every suspended request with 503 and stop serving. Idempotent; NULL is ignored. */
void http_server_stop(struct http_server *srv);
/* Stop (if needed) and free; the observer must no longer be called. NULL is ignored. */
void http_server_free(struct http_server *srv);

#endif
