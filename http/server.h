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

/* One webhook's live status as delivery published it (docs/api.md, GET /v1/webhooks). */
enum http_webhook_state {
    HTTP_WEBHOOK_OK = 0,
    HTTP_WEBHOOK_RETRYING,
    HTTP_WEBHOOK_PAUSED,
    HTTP_WEBHOOK_SPOOLING
};

struct http_webhook_status {
    enum http_webhook_state state;
    uint64_t paused_until_wall_ms; /* a Retry-After holds the endpoint until then; 0 none */
    int in_flight;
    uint64_t queued_events, queued_bytes, spool_bytes;
    int has_oldest; /* 0: nothing unacknowledged (or its arrival unknown) */
    uint64_t oldest_unacked_age_ms;
    uint64_t delivered_events, retries, dead_letters;
    uint64_t last_ok_wall_ms, last_fail_wall_ms; /* 0 none */
    long last_ok_status, last_fail_status;       /* last_fail_status 0: no HTTP answer */
    char last_fail_error[160];
};

/*
 * What the server needs from delivery about webhooks (the config's webhooks[i], by index);
 * bridge/main.c fills it. Thread-safe. 0, SH_ENOTFOUND, or (pause) SH_EIO when the pause could
 * not be kept on disk.
 */
struct http_webhook_ops {
    int (*status)(void *ud, size_t i, struct http_webhook_status *out);
    int (*pause)(void *ud, size_t i, int paused); /* 1 pause, 0 resume */
    void *ud;
};

/*
 * Cluster mode (docs/cluster.md): what POST /v1/shards/{id}/handoff calls; bridge/main.c fills it
 * from cluster/cluster.h. handoff(ud, shard, target) hands shard to the node named target (NULL:
 * the best live node with room): 0 once under way, SH_ENOTFOUND when this node does not hold
 * shard, SH_EAGAIN when no other live node has room, SH_EINVAL for an unknown target, SH_ECLOSED
 * when stopping. Thread-safe, never blocks on Redis.
 */
/* A command's whole answer: status, Retry-After seconds ("" none), the JSON body (len bytes). */
typedef void http_answer_fn(void *ud, int status, const char *retry_after, const char *body,
                            size_t len);

struct http_cluster_ops {
    int (*handoff)(void *ud, int shard, const char *target);
    /*
     * Send a command for shard, which this node does not hold, to its owner (route: its label;
     * timeout_ms: the most to wait). 0: done(dud, ...) runs once later, on any thread; SH_EAGAIN
     * while the cluster is degraded (Redis unreachable); SH_ECLOSED stopping; other negative
     * codes: done is not called. NULL: such commands answer as in single-node mode (404).
     */
    int (*forward)(void *ud, int shard, const char *route, const char *param, const char *body,
                   size_t len, int timeout_ms, http_answer_fn *done, void *dud);
    /* The owner of shard in the cluster's latest view into name: 0, or negative (unknown). */
    int (*owner)(void *ud, int shard, char *name, size_t cap);
    void *ud;
    /* The cluster view (cluster/cluster.h's cl_cluster_view): a cJSON object the caller frees,
     * NULL out of memory. Without it (NULL) /v1/shards, /v1/shards/{id} and /readyz answer as in
     * single-node mode and /v1/cluster answers 404 not_clustered. */
    cJSON *(*view)(void *ud);
};

/* Where the handoff route goes (ops must outlive the server). Until it is called (single-node
 * mode) the route answers 409 not_clustered. Any thread. */
void http_server_set_cluster_ops(struct http_server *srv, const struct http_cluster_ops *ops);

struct ca_cache;
/*
 * Where the cache routes read (cache/cache.h; c must outlive the server). With a `cache` block
 * they answer 503 until this is called; without one, 404 cache_disabled. Any thread.
 */
void http_server_set_cache(struct http_server *srv, struct ca_cache *c);

struct http_server;

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

/* Where /v1/webhooks reads and pauses webhooks (ops must outlive the server; until this is
 * called those routes answer 503). Any thread. */
void http_server_set_webhook_ops(struct http_server *srv, const struct http_webhook_ops *ops);

/* The observer to register with gw_gateway_set_observer (collects replies to waiting requests). */
struct gw_observer http_server_observer(struct http_server *srv);

/* A reload: requests checked after this returns need "Bearer <token>"; NULL or "" turns
 * authentication off. 0 or SH_ENOMEM (the old token stays). Any thread. */
int http_server_set_token(struct http_server *srv, const char *token);

/* Where a members action's answer goes (http_server_action). */
struct http_action_to {
    /* Any thread, once per members action that was accepted: d (JSON text, len bytes) is the
     * SHARDHOOK_MEMBERS event's d, shard the guild's shard; tag as given. */
    void (*members)(void *ud, size_t tag, int shard, const char *d, size_t len);
    void *ud;
    size_t tag;
};

/*
 * Run a webhook's action (a JSON object, docs/delivery.md) through the handler of the control
 * API's route for its type, exactly as the API runs that request. Returns the status the API
 * would answer (2xx: done or, for members, sent: the answer follows through to->members), with
 * "code: message" in msg otherwise; *type is the action's type ("unknown" when it has none we
 * know). Any thread but libmicrohttpd's; never blocks on Discord.
 */
int http_server_action(struct http_server *srv, const cJSON *action,
                       const struct http_action_to *to, const char **type, char *msg, size_t cap);

/*
 * Cluster mode: run a command another node forwarded (route: its label, e.g.
 * "/v1/shards/{id}/send"; param: the path parameter; body: len bytes) through the route's own
 * handler, exactly as the API would answer it here, waits for Discord included; done gets the
 * whole answer once, on any thread, possibly before this returns. 0, or SH_ENOMEM (done not
 * called). Any thread but libmicrohttpd's; never blocks.
 */
int http_server_execute(struct http_server *srv, const char *route, const char *param,
                        const char *body, size_t len, http_answer_fn *done, void *ud);

/* Answer every suspended request with 503 and stop serving. Idempotent; NULL is ignored. */
void http_server_stop(struct http_server *srv);
/* Stop (if needed) and free; the observer must no longer be called. NULL is ignored. */
void http_server_free(struct http_server *srv);

#endif
