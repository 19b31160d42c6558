/*
 * http/pending.h: control requests that wait for gateway replies: guild members (op 8 ->
 * GUILD_MEMBERS_CHUNK / RATE_LIMITED), channel info (op 43 -> CHANNEL_INFO) and soundboard
 * sounds (op 31 -> SOUNDBOARD_SOUNDS).
 *
 * Threads: an MHD thread suspends its connection, then creates a waiter here. The gateway
 * thread's observer (http_pending_observe) only copies matching dispatches into an inbox
 * under a short lock. One worker thread owned by this file parses the inbox, merges replies
 * into waiters, sends delayed requests (the per-guild 30 s all-members window, RATE_LIMITED
 * retries) and enforces deadlines. A finished waiter leaves the table and its wake callback
 * runs exactly once (server.c resumes the connection); from then on only the request owns
 * it: http_waiter_reply() builds the answer and http_waiter_free() frees it.
 */
#ifndef SHARDHOOK_HTTP_PENDING_H
#define SHARDHOOK_HTTP_PENDING_H

#include <stddef.h>
#include <stdint.h>

#include "http/reply.h"

#define HTTP_MAX_WAITERS 1024          /* waiting requests at once; more get 503 */
#define HTTP_MAX_SOUNDBOARD_GUILDS 100 /* guild_ids in one soundboard request */
#define HTTP_MAX_RATE_LIMIT_RETRIES 3  /* RATE_LIMITED replies retried before 429 */
#define HTTP_MAX_RETRY_AFTER_MS 60000  /* a longer retry_after is not waited for: 429 at once */
#define HTTP_MAX_REPLY_BYTES ((size_t)32 << 20)  /* reply payloads merged into one answer */
#define HTTP_MAX_INBOX_BYTES ((size_t)128 << 20) /* replies copied but not yet processed */

struct http_pending;
struct http_waiter;

struct http_pending_cfg {
    /* queue a gateway payload for a shard (gw_gateway_send's contract) */
    int (*send)(void *gw, int shard_id, const char *payload, size_t len);
    /* take a payload given to send back out of the shard's queue if still there (may be NULL) */
    int (*withdraw)(void *gw, int shard_id, const char *payload, size_t len);
    void *gw;
    /* resume the suspended request that token names (any thread; called once per waiter) */
    void (*wake)(void *token);
    int member_window_ms; /* one all-members request per guild per this; Discord: 30000 */
};

struct http_members_req {
    uint64_t guild_id;
    int shard;
    const char *query; /* NULL when user_ids are given */
    int limit;
    const uint64_t *user_ids;
    int n_user_ids; /* 1..100 when query is NULL */
    int presences;
    int timeout_ms;
};

int http_pending_new(const struct http_pending_cfg *cfg, struct http_pending **out);
/* Complete every waiter with 503, stop and join the worker. Idempotent. */
void http_pending_shutdown(struct http_pending *p);
void http_pending_free(struct http_pending *p);

/* The gw_observer callback; ud is the struct http_pending. Gateway thread; never blocks long. */
void http_pending_observe(void *ud, int shard, const char *t, size_t t_len, uint64_t seq,
                          const char *d, size_t d_len);

/*
 * Start a waiting request for the connection token (already suspended). Returns 0 and sets
 * *out; the wake callback follows when it finishes, possibly before this returns. On a
 * negative return (SH_ENOMEM, SH_ECLOSED, SH_EAGAIN: too many waiting) no waiter exists and
 * wake is not called.
 */
int http_pending_members(struct http_pending *p, const struct http_members_req *rq, void *token,
                         struct http_waiter **out);
/* fields_json: a JSON array text such as ["status","voice_start_time"]. */
int http_pending_channel_info(struct http_pending *p, uint64_t guild_id, int shard,
                              const char *fields_json, int timeout_ms, void *token,
                              struct http_waiter **out);
/* guilds and their shards, n at most HTTP_MAX_SOUNDBOARD_GUILDS, no duplicates. */
int http_pending_soundboard(struct http_pending *p, const uint64_t *guilds, const int *shards,
                            int n, int timeout_ms, void *token, struct http_waiter **out);

/* After wake: the answer (200 with the merged reply, or the error that ended the wait). */
void http_waiter_reply(struct http_waiter *w, struct http_reply *r);
void http_waiter_free(struct http_waiter *w);

/* Waiters in the table now (tests, metrics). */
int http_pending_count(struct http_pending *p);

#endif
