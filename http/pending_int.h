/*
 * http/pending_int.h: what the two files of the waiting-request table share (pending.c: the
 * table, its requests and worker; pending_replies.c: matching the gateway's replies and writing
 * the answers). Internal to http/: other rooms use http/pending.h.
 */
#ifndef SHARDHOOK_HTTP_PENDING_INT_H
#define SHARDHOOK_HTTP_PENDING_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "http/pending.h"
#include "lib/discord.h"
#include "lib/metrics.h"
#include "lib/queue.h"

#define TEXT_(x) #x
#define TEXT(x) TEXT_(x)
#define CAP_TEXT TEXT(SH_GW_MAX_SEND_BYTES) /* "4096", for constant messages */
#define MAX_CHUNKS 100000                   /* chunk_count believed from one GUILD_MEMBERS_CHUNK */
#define MAX_SLOTS 4096                      /* guilds remembered for the all-members window */

enum wkind { W_MEMBERS = 0, W_CHANNEL_INFO, W_SOUNDBOARD };
enum wstate { W_SCHEDULED = 0, W_SENT, W_DONE };
enum reply_kind { R_MEMBERS_CHUNK = 0, R_RATE_LIMITED, R_CHANNEL_INFO, R_SOUNDBOARD };

struct http_waiter {
    struct http_waiter *prev, *next; /* in p->waiters while not done */
    uint64_t id;
    enum wkind kind;
    enum wstate state;
    void *token;
    uint64_t guild_id;
    int shard;
    char nonce[33];
    int all_members; /* query "" with limit 0: one per guild per window */
    int want_presences;
    char payload[SH_GW_MAX_SEND_BYTES + 1]; /* members/channel info: the op sent (and re-sent) */
    size_t payload_len;
    uint64_t send_at;  /* monotonic ms, while W_SCHEDULED */
    uint64_t deadline; /* monotonic ms */
    uint64_t expires;  /* monotonic ms: arrival + timeout_ms; no wait goes past it */
    int timeout_ms;
    int retries;
    size_t reply_bytes;
    /* members */
    cJSON *members, *presences, *not_found;
    int chunk_count, chunks_received;
    unsigned char *seen; /* chunk_count bytes */
    /* channel info */
    cJSON *channels;
    /* soundboard */
    int n_guilds, n_answered;
    uint64_t *guilds;
    int *shards;
    cJSON **sounds;
    /* how it ended */
    int status;
    char code[40];
    char message[256];
    double retry_after_s; /* > 0: Retry-After */
};

struct inbox {
    struct sh_qnode node;
    enum reply_kind kind;
    int shard;
    size_t len;
    char d[];
};

struct slot {
    uint64_t guild_id;
    uint64_t at; /* monotonic ms of the latest all-members send, scheduled or done */
};

struct http_pending {
    struct http_pending_cfg cfg;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    int started, stopping;
    atomic_int n_waiters; /* read without the lock by the observer's fast path */
    struct http_waiter *waiters;
    uint64_t next_id, nonce_counter;
    struct sh_queue inbox; /* struct inbox, from the gateway thread; pushed under lock */
    size_t in_bytes;       /* the bytes of the replies in the inbox or being handled */
    struct slot slots[MAX_SLOTS];
    int n_slots;
    struct sh_metric *m_requests, *m_replies, *m_suspended;
};

/* A list of finished waiters to wake once p->lock is released. */
struct done_list {
    void *tokens[64];
    int n;
};

/*
 * End w with status (0: success) and move it out of the table. Caller holds p->lock. When
 * the done list is full the lock is dropped to wake the ones collected so far: callers must
 * not hold pointers into the table across this call other than w's successors they re-read.
 */
void http__pending_finish(struct http_pending *p, struct http_waiter *w, int status,
                          const char *code, const char *msg, struct done_list *dl);
/* The all-members window slot of guild_id (a free one when it has none); NULL when full. */
struct slot *http__pending_find_slot(struct http_pending *p, uint64_t guild_id, uint64_t now);
/* One reply taken from the inbox, parsed (d), matched to its waiters. Caller holds p->lock. */
void http__pending_handle_reply(struct http_pending *p, struct inbox *in, cJSON *d,
                                struct done_list *dl);

#endif
