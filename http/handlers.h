/*
 * http/handlers.h: answering the control API's endpoints. http_handle runs the handler in the
 * route's row of the table (http/route.h); each handler validates its input, builds the exact
 * gateway payload, and either answers at once or (members, channel info, soundboard) suspends
 * the request and hands it to the pending table. Handlers never block on Discord and never put
 * a secret (bot token, API token, webhook secrets) into an answer.
 */
#ifndef SHARDHOOK_HTTP_HANDLERS_H
#define SHARDHOOK_HTTP_HANDLERS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "http/pending.h"
#include "http/reply.h"
#include "http/route.h"
#include "http/server.h"

struct ca_cache;

#define HTTP_MAX_TIMEOUT_MS 120000 /* the most a request may ask to wait for Discord */

struct http_ctx {
    const struct cfg_config *cfg;
    const struct http_gateway_ops *ops;
    void *gw;
    struct http_pending *pending;
    int request_timeout_ms; /* default wait for gateway replies */
    /* reconnect calls: one accepted per shard per interval (0: no limit) */
    int reconnect_interval_ms;
    pthread_mutex_t reconnect_lock;
    uint64_t *reconnect_at; /* by shard id: monotonic ms of the last accepted call, 0 none */
    int reconnect_slots;    /* entries in reconnect_at (the bot's shard count) */
    const struct http_webhook_ops *_Atomic webhooks;  /* NULL until main() sets them */
    _Atomic(const struct http_deadletter_ops *) dead; /* NULL until bridge/main.c sets it */
    _Atomic(const struct http_cluster_ops *) cluster; /* NULL without cluster mode */
    _Atomic(struct ca_cache *) cache; /* the entity cache's reads; NULL until main() sets it */
    pthread_mutex_t fwd_lock;         /* guards the forwarded requests waiting (http/forward.c) */
    struct http__fwd *fwds;
    int fwd_stopped;
};

/* The connection a handler may suspend; server.c fills it. */
struct http_call {
    void *token;                  /* the MHD connection */
    void (*suspend)(void *token); /* called right before a waiter is created */
    void (*resume)(void *token);  /* called when suspending turned out unnecessary */
    struct http_waiter *waiter;   /* set when the answer will come from the pending table */
    int suspended;                /* set by the handler when it suspended the connection */
    /* the query string's value of key, NULL when absent (may be NULL: no query at all) */
    const char *(*query)(void *token, const char *key);
    int local; /* cluster mode: a command forwarded here, never forwarded again */
};

/*
 * A webhook URL as the API shows it: scheme://host[:port]/path, without user:password, query
 * or fragment (where secrets travel). Always NUL-terminates out (cut at cap).
 */
void http_url_redact(const char *url, char *out, size_t cap);

/*
 * Answer route (already matched and authorised) with its path parameter and body (len 0:
 * none). Returns 0 when *r holds the answer, 1 when the request was suspended: its answer
 * comes from call->waiter after the wake-up, or (call->waiter NULL) is already in *r and the
 * connection was resumed.
 */
int http_handle(struct http_ctx *ctx, struct http_call *call, enum http_route route,
                const char *param, const char *body, size_t len, struct http_reply *r);

#endif
