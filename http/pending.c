/*
 * http/pending.c: the waiting-request table of http/pending.h and its worker thread.
 *
 * One mutex (p->lock) guards the table, the inbox's byte count and the per-guild all-members
 * slots (the inbox, a lib/queue.h queue, is pushed and taken under it). Lock
 * order: p->lock may be held while calling cfg.send (gw_gateway_send takes the gateway's
 * command lock briefly); the gateway never holds its own locks while calling the observer, so
 * no cycle exists. cfg.wake is always called without p->lock held. Dispatch bodies are parsed
 * (cJSON) on the worker, never on the gateway thread.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "http/pending.h"
#include "lib/clock.h"
#include "lib/discord.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/queue.h"
#include "lib/rand.h"
#include "lib/snowflake.h"

#define TEXT_(x) #x
#define TEXT(x) TEXT_(x)
#define CAP_TEXT TEXT(SH_GW_MAX_SEND_BYTES) /* "4096", for constant messages */
#define MAX_CHUNKS 100000                   /* chunk_count believed from one GUILD_MEMBERS_CHUNK */
#define MAX_SLOTS 4096                      /* guilds remembered for the all-members window */

enum wkind { W_MEMBERS = 0, W_CHANNEL_INFO, W_SOUNDBOARD };
enum wstate { W_SCHEDULED = 0, W_SENT, W_DONE };
enum reply_kind { R_MEMBERS_CHUNK = 0, R_RATE_LIMITED, R_CHANNEL_INFO, R_SOUNDBOARD };

static const char *kind_names[] = {"members", "channel_info", "soundboard"};

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

/* ---- waiters --------------------------------------------------------------------------- */

void http_waiter_free(struct http_waiter *w)
{
    if (!w)
        return;
    cJSON_Delete(w->members);
    cJSON_Delete(w->presences);
    cJSON_Delete(w->not_found);
    cJSON_Delete(w->channels);
    for (int i = 0; w->sounds && i < w->n_guilds; i++)
        cJSON_Delete(w->sounds[i]);
    free(w->sounds);
    free(w->guilds);
    free(w->shards);
    free(w->seen);
    free(w);
}

static void unlink_waiter(struct http_pending *p, struct http_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        p->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    atomic_fetch_sub(&p->n_waiters, 1);
}

/* A list of finished waiters to wake once p->lock is released. */
struct done_list {
    void *tokens[64];
    int n;
};

static void wake_all(struct http_pending *p, struct done_list *dl)
{
    for (int i = 0; i < dl->n; i++)
        p->cfg.wake(dl->tokens[i]);
    dl->n = 0;
}

/*
 * End w with status (0: success) and move it out of the table. Caller holds p->lock. When
 * the done list is full the lock is dropped to wake the ones collected so far: callers must
 * not hold pointers into the table across this call other than w's successors they re-read.
 */
static void finish(struct http_pending *p, struct http_waiter *w, int status, const char *code,
                   const char *msg, struct done_list *dl)
{
    if (w->state == W_DONE)
        return;
    w->state = W_DONE;
    w->status = status;
    snprintf(w->code, sizeof(w->code), "%s", code ? code : "");
    snprintf(w->message, sizeof(w->message), "%s", msg ? msg : "");
    unlink_waiter(p, w);
    sh_metric_add(p->m_requests, 1, kind_names[w->kind], code ? code : "ok");
    sh_metric_set(p->m_suspended, atomic_load(&p->n_waiters));
    if (dl->n == (int)(sizeof(dl->tokens) / sizeof(dl->tokens[0]))) {
        pthread_mutex_unlock(&p->lock);
        wake_all(p, dl);
        pthread_mutex_lock(&p->lock);
    }
    dl->tokens[dl->n++] = w->token;
}

static void send_error(int rc, int *status, const char **code, const char **msg, double *ra)
{
    *ra = 0;
    switch (rc) {
    case SH_ENOTFOUND:
        *status = 404, *code = "shard_not_found", *msg = "the shard does not run in this process";
        break;
    case SH_ETOOBIG:
        *status = 413, *code = "payload_too_large",
        *msg = "the gateway payload would exceed Discord's " CAP_TEXT " bytes";
        break;
    case SH_EAGAIN:
        *status = 429, *code = "send_queue_full",
        *msg = "the shard's send queue is full (120 payloads per 60 s); try again later";
        *ra = 1;
        break;
    case SH_ECLOSED:
        *status = 503, *code = "shutting_down", *msg = "shardhook is stopping";
        break;
    default:
        *status = 500, *code = "internal", *msg = sh_strerror(rc);
        break;
    }
}

/* Send w's payload now (caller holds the lock); on failure w is finished. */
static void send_now(struct http_pending *p, struct http_waiter *w, uint64_t now,
                     struct done_list *dl)
{
    (void)now;
    w->state = W_SENT;
    w->deadline = w->expires;
    int rc = p->cfg.send(p->cfg.gw, w->shard, w->payload, w->payload_len);
    if (rc) {
        int status;
        const char *code, *msg;
        double ra;
        send_error(rc, &status, &code, &msg, &ra);
        w->retry_after_s = ra;
        finish(p, w, status, code, msg, dl);
    }
}

static struct slot *find_slot(struct http_pending *p, uint64_t guild_id, uint64_t now)
{
    struct slot *free_slot = NULL;
    for (int i = 0; i < p->n_slots; i++) {
        if (p->slots[i].guild_id == guild_id)
            return &p->slots[i];
        if (!free_slot && p->slots[i].at + (uint64_t)p->cfg.member_window_ms <= now)
            free_slot = &p->slots[i];
    }
    if (!free_slot && p->n_slots < MAX_SLOTS)
        free_slot = &p->slots[p->n_slots++];
    if (free_slot) {
        free_slot->guild_id = guild_id;
        free_slot->at = 0;
    }
    return free_slot; /* NULL: 4096 guilds inside their window at once */
}

/* How long after the window a repeat goes: 1 s for Discord's 30 s, less for test windows. */
static uint64_t window_margin(uint64_t window)
{
    return window / 20 + 100 < 1000 ? window / 20 + 100 : 1000;
}

static int make_waiter(enum wkind kind, void *token, int timeout_ms, struct http_waiter **out)
{
    struct http_waiter *w = calloc(1, sizeof(*w));
    if (!w)
        return SH_ENOMEM;
    w->kind = kind;
    w->token = token;
    w->timeout_ms = timeout_ms;
    w->expires = sh_now_ms() + (uint64_t)timeout_ms;
    w->deadline = w->expires;
    w->status = 0;
    *out = w;
    return 0;
}

/* Insert (caller holds the lock); SH_ECLOSED / SH_EAGAIN when it cannot wait. */
static int insert(struct http_pending *p, struct http_waiter *w)
{
    if (p->stopping)
        return SH_ECLOSED;
    if (atomic_load(&p->n_waiters) >= HTTP_MAX_WAITERS)
        return SH_EAGAIN;
    w->id = ++p->next_id;
    w->next = p->waiters;
    if (p->waiters)
        p->waiters->prev = w;
    p->waiters = w;
    atomic_fetch_add(&p->n_waiters, 1);
    sh_metric_set(p->m_suspended, atomic_load(&p->n_waiters));
    pthread_cond_signal(&p->cond); /* the worker recomputes its next deadline */
    return 0;
}

static int json_snowflake_list(char *dst, size_t cap, const uint64_t *ids, int n)
{
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        int k = snprintf(dst + off, cap - off, "%s\"%" PRIu64 "\"", i ? "," : "", ids[i]);
        if (k < 0 || (size_t)k >= cap - off)
            return SH_ETOOBIG;
        off += (size_t)k;
    }
    return 0;
}

/* The op 8 selector, "query":...,"limit":N or "user_ids":[...], into what (cap bytes). */
static int members_selector(const struct http_members_req *rq, char *what, size_t cap)
{
    if (!rq->query) {
        char ids[SH_GW_MAX_SEND_BYTES];
        int rc = json_snowflake_list(ids, sizeof(ids), rq->user_ids, rq->n_user_ids);
        if (!rc && snprintf(what, cap, "\"user_ids\":[%s]", ids) >= (int)cap)
            rc = SH_ETOOBIG;
        return rc;
    }
    cJSON *q = cJSON_CreateString(rq->query);
    char *qs = q ? cJSON_PrintUnformatted(q) : NULL;
    cJSON_Delete(q);
    if (!qs)
        return SH_ENOMEM;
    int rc = snprintf(what, cap, "\"query\":%s,\"limit\":%d", qs, rq->limit) >= (int)cap
                 ? SH_ETOOBIG
                 : 0;
    cJSON_free(qs);
    return rc;
}

/* w's op 8 payload, with a nonce unique to this request (<= 32 bytes). */
static int members_payload(struct http_pending *p, struct http_waiter *w,
                           const struct http_members_req *rq)
{
    char what[SH_GW_MAX_SEND_BYTES];
    int rc = members_selector(rq, what, sizeof(what));
    if (rc)
        return rc;
    pthread_mutex_lock(&p->lock);
    uint64_t n = ++p->nonce_counter;
    pthread_mutex_unlock(&p->lock);
    snprintf(w->nonce, sizeof(w->nonce), "shm%" PRIx64 "-%08" PRIx32, n, (uint32_t)sh_rand_u64());
    int len = snprintf(w->payload, sizeof(w->payload),
                       "{\"op\":8,\"d\":{\"guild_id\":\"%" PRIu64 "\",%s,\"presences\":%s,"
                       "\"nonce\":\"%s\"}}",
                       rq->guild_id, what, rq->presences ? "true" : "false", w->nonce);
    if (len < 0 || len > SH_GW_MAX_SEND_BYTES)
        return SH_ETOOBIG;
    w->payload_len = (size_t)len;
    return 0;
}

/*
 * An all-members request (caller holds the lock): sent now when the guild's window allows it,
 * scheduled for when it has passed, or finished with 429 when it cannot go in time.
 */
static void schedule_all_members(struct http_pending *p, struct http_waiter *w, uint64_t now,
                                 struct done_list *dl)
{
    struct slot *s = find_slot(p, w->guild_id, now);
    uint64_t window = (uint64_t)p->cfg.member_window_ms;
    if (!s) {
        w->retry_after_s = window / 1000.0;
        finish(p, w, 429, "rate_limited",
               "too many guilds inside the all-members window; try again later", dl);
    } else if (s->at > now) {
        /* another all-members request for this guild already waits for its turn */
        w->retry_after_s = (double)(s->at - now) / 1000.0;
        finish(p, w, 429, "rate_limited",
               "an all-members request for this guild is already waiting for Discord's "
               "30 s window",
               dl);
    } else if (s->at && now < s->at + window &&
               s->at + window + window_margin(window) >= w->expires) {
        /* the window outlasts the caller's timeout: say when to come back instead */
        w->retry_after_s = (double)(s->at + window + window_margin(window) - now) / 1000.0;
        finish(p, w, 429, "rate_limited",
               "an all-members request for this guild went out less than 30 s ago (Discord's "
               "window), and the next one cannot go within this request's timeout_ms",
               dl);
    } else if (s->at && now < s->at + window) {
        /*
         * Repeat inside the window: wait client-side (suspended) until it has passed, plus a
         * margin (1 s for Discord's 30 s) so that latency on the way cannot make it early.
         * The wait counts against the request's timeout_ms.
         */
        w->state = W_SCHEDULED;
        w->send_at = s->at + window + window_margin(window);
        w->deadline = w->expires;
        s->at = w->send_at;
        log_info("msg=\"all-members request waits for the guild's window\" guild=%" PRIu64
                 " wait_ms=%" PRIu64,
                 w->guild_id, w->send_at - now);
        pthread_cond_signal(&p->cond);
    } else {
        s->at = now;
        send_now(p, w, now, dl);
    }
}

int http_pending_members(struct http_pending *p, const struct http_members_req *rq, void *token,
                         struct http_waiter **out)
{
    struct http_waiter *w;
    int rc = make_waiter(W_MEMBERS, token, rq->timeout_ms, &w);
    if (rc)
        return rc;
    w->guild_id = rq->guild_id;
    w->shard = rq->shard;
    w->want_presences = rq->presences;
    w->all_members = rq->query && !rq->query[0] && rq->limit == 0;
    w->members = cJSON_CreateArray();
    w->presences = cJSON_CreateArray();
    w->not_found = cJSON_CreateArray();
    rc = members_payload(p, w, rq);
    if (!rc && (!w->members || !w->presences || !w->not_found))
        rc = SH_ENOMEM;
    if (rc) {
        http_waiter_free(w);
        return rc;
    }
    struct done_list dl = {.n = 0};
    uint64_t now = sh_now_ms();
    pthread_mutex_lock(&p->lock);
    rc = insert(p, w);
    if (!rc) {
        *out = w;
        if (w->all_members)
            schedule_all_members(p, w, now, &dl);
        else
            send_now(p, w, now, &dl);
    }
    pthread_mutex_unlock(&p->lock);
    if (rc)
        http_waiter_free(w);
    wake_all(p, &dl);
    return rc;
}

int http_pending_channel_info(struct http_pending *p, uint64_t guild_id, int shard,
                              const char *fields_json, int timeout_ms, void *token,
                              struct http_waiter **out)
{
    struct http_waiter *w;
    int rc = make_waiter(W_CHANNEL_INFO, token, timeout_ms, &w);
    if (rc)
        return rc;
    w->guild_id = guild_id;
    w->shard = shard;
    int len = snprintf(w->payload, sizeof(w->payload),
                       "{\"op\":43,\"d\":{\"guild_id\":\"%" PRIu64 "\",\"fields\":%s}}", guild_id,
                       fields_json);
    if (len < 0 || len > SH_GW_MAX_SEND_BYTES) {
        http_waiter_free(w);
        return SH_ETOOBIG;
    }
    w->payload_len = (size_t)len;
    struct done_list dl = {.n = 0};
    pthread_mutex_lock(&p->lock);
    rc = insert(p, w);
    if (rc) {
        pthread_mutex_unlock(&p->lock);
        http_waiter_free(w);
        return rc;
    }
    *out = w;
    send_now(p, w, sh_now_ms(), &dl);
    pthread_mutex_unlock(&p->lock);
    wake_all(p, &dl);
    return 0;
}

/* One op 31 payload: the guilds of one shard. */
struct sb_payload {
    int shard;
    size_t len;
    char text[SH_GW_MAX_SEND_BYTES + 1];
};

/*
 * One op 31 per shard, listing that shard's guilds, into pl (n entries of room), their count in
 * *np. Every payload is built (and checked against the cap) before any goes.
 */
static int soundboard_payloads(const uint64_t *guilds, const int *shards, int n,
                               struct sb_payload *pl, int *np)
{
    uint64_t *ids = malloc((size_t)n * sizeof(*ids));
    char *list = malloc(SH_GW_MAX_SEND_BYTES);
    int rc = ids && list ? 0 : SH_ENOMEM;
    *np = 0;
    for (int i = 0; !rc && i < n; i++) {
        int seen = 0;
        for (int k = 0; k < *np; k++)
            seen |= pl[k].shard == shards[i];
        if (seen)
            continue;
        int m = 0;
        for (int j = i; j < n; j++)
            if (shards[j] == shards[i])
                ids[m++] = guilds[j];
        int len = -1;
        if (!json_snowflake_list(list, SH_GW_MAX_SEND_BYTES, ids, m))
            len = snprintf(pl[*np].text, sizeof(pl[*np].text),
                           "{\"op\":31,\"d\":{\"guild_ids\":[%s]}}", list);
        if (len < 0 || len > SH_GW_MAX_SEND_BYTES)
            rc = SH_ETOOBIG;
        else {
            pl[*np].len = (size_t)len;
            pl[(*np)++].shard = shards[i];
        }
    }
    free(ids);
    free(list);
    return rc;
}

/* Send w's payloads (caller holds the lock); the first failure finishes w. */
static void send_soundboard(struct http_pending *p, struct http_waiter *w,
                            const struct sb_payload *pl, int np, struct done_list *dl)
{
    w->state = W_SENT;
    w->deadline = sh_now_ms() + (uint64_t)w->timeout_ms;
    for (int k = 0; k < np && w->state != W_DONE; k++) {
        int rc = p->cfg.send(p->cfg.gw, pl[k].shard, pl[k].text, pl[k].len);
        if (rc) {
            int status;
            const char *code, *msg;
            double ra;
            send_error(rc, &status, &code, &msg, &ra);
            w->retry_after_s = ra;
            finish(p, w, status, code, msg, dl);
        }
    }
}

int http_pending_soundboard(struct http_pending *p, const uint64_t *guilds, const int *shards,
                            int n, int timeout_ms, void *token, struct http_waiter **out)
{
    if (n < 1 || n > HTTP_MAX_SOUNDBOARD_GUILDS)
        return SH_EINVAL;
    struct http_waiter *w;
    int rc = make_waiter(W_SOUNDBOARD, token, timeout_ms, &w), np = 0;
    if (rc)
        return rc;
    w->n_guilds = n;
    w->guilds = malloc((size_t)n * sizeof(*w->guilds));
    w->shards = malloc((size_t)n * sizeof(*w->shards));
    w->sounds = calloc((size_t)n, sizeof(*w->sounds));
    struct sb_payload *pl = malloc((size_t)n * sizeof(*pl));
    if (!w->guilds || !w->shards || !w->sounds || !pl)
        rc = SH_ENOMEM;
    if (!rc) {
        memcpy(w->guilds, guilds, (size_t)n * sizeof(*guilds));
        memcpy(w->shards, shards, (size_t)n * sizeof(*shards));
        rc = soundboard_payloads(guilds, shards, n, pl, &np);
    }
    struct done_list dl = {.n = 0};
    pthread_mutex_lock(&p->lock);
    if (!rc)
        rc = insert(p, w);
    if (!rc) {
        *out = w;
        send_soundboard(p, w, pl, np, &dl);
    }
    pthread_mutex_unlock(&p->lock);
    free(pl);
    if (rc)
        http_waiter_free(w);
    wake_all(p, &dl);
    return rc;
}

/* ---- replies from the gateway ---------------------------------------------------------- */

void http_pending_observe(void *ud, int shard, const char *t, size_t t_len, uint64_t seq,
                          const char *d, size_t d_len)
{
    struct http_pending *p = ud;
    (void)seq;
    if (atomic_load(&p->n_waiters) == 0)
        return;
    enum reply_kind kind;
#define T_IS(lit) (t_len == sizeof(lit) - 1 && !memcmp(t, lit, sizeof(lit) - 1))
    if (T_IS("GUILD_MEMBERS_CHUNK"))
        kind = R_MEMBERS_CHUNK;
    else if (T_IS("RATE_LIMITED"))
        kind = R_RATE_LIMITED;
    else if (T_IS("CHANNEL_INFO"))
        kind = R_CHANNEL_INFO;
    else if (T_IS("SOUNDBOARD_SOUNDS"))
        kind = R_SOUNDBOARD;
    else
        return;
#undef T_IS
    struct inbox *in = malloc(sizeof(*in) + d_len + 1);
    if (!in)
        return;
    in->kind = kind;
    in->shard = shard;
    in->len = d_len;
    memcpy(in->d, d, d_len);
    in->d[d_len] = '\0';
    pthread_mutex_lock(&p->lock);
    if (p->stopping || p->in_bytes + d_len > HTTP_MAX_INBOX_BYTES) {
        int stopping = p->stopping;
        pthread_mutex_unlock(&p->lock);
        free(in);
        if (!stopping)
            log_warn("msg=\"control API reply inbox full; reply dropped\" shard=%d bytes=%zu",
                     shard, d_len);
        return;
    }
    p->in_bytes += d_len;
    if (sh_queue_push(&p->inbox, &in->node)) /* later ones ride on this wake-up */
        pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

/* A snowflake given as a JSON string (as Discord writes every id). */
static int snowflake_of(const cJSON *j, uint64_t *out)
{
    return cJSON_IsString(j) ? sh_parse_snowflake(j->valuestring, strlen(j->valuestring), out) : -1;
}

/* Move every item of src (an array, may be NULL) to the end of dst. */
static void move_items(cJSON *dst, cJSON *src)
{
    if (!cJSON_IsArray(src))
        return;
    while (src->child) {
        cJSON *item = cJSON_DetachItemViaPointer(src, src->child);
        cJSON_AddItemToArray(dst, item);
    }
}

static void on_chunk(struct http_pending *p, cJSON *d, size_t len, struct done_list *dl)
{
    const cJSON *nonce = cJSON_GetObjectItemCaseSensitive(d, "nonce");
    if (!cJSON_IsString(nonce))
        return;
    struct http_waiter *w = p->waiters;
    while (w && !(w->kind == W_MEMBERS && !strcmp(w->nonce, nonce->valuestring)))
        w = w->next;
    if (!w || w->state != W_SENT)
        return;
    const cJSON *ci = cJSON_GetObjectItemCaseSensitive(d, "chunk_index");
    const cJSON *cc = cJSON_GetObjectItemCaseSensitive(d, "chunk_count");
    if (!cJSON_IsNumber(ci) || !cJSON_IsNumber(cc) || cc->valuedouble < 1 ||
        cc->valuedouble > MAX_CHUNKS || ci->valuedouble < 0 || ci->valuedouble >= cc->valuedouble) {
        log_warn("msg=\"GUILD_MEMBERS_CHUNK without a usable chunk_index/chunk_count\" nonce=%s",
                 w->nonce);
        return;
    }
    int idx = (int)ci->valuedouble, count = (int)cc->valuedouble;
    if (!w->seen) {
        w->seen = calloc((size_t)count, 1);
        if (!w->seen) {
            finish(p, w, 500, "internal", "out of memory", dl);
            return;
        }
        w->chunk_count = count;
    }
    if (count != w->chunk_count || w->seen[idx])
        return; /* a duplicate or an inconsistent chunk: keep what is merged */
    w->seen[idx] = 1;
    w->chunks_received++;
    w->reply_bytes += len;
    if (w->reply_bytes > HTTP_MAX_REPLY_BYTES) {
        finish(p, w, 502, "answer_too_large",
               "the member list exceeds the server's cap; narrow it with query and limit", dl);
        return;
    }
    move_items(w->members, cJSON_GetObjectItemCaseSensitive(d, "members"));
    move_items(w->presences, cJSON_GetObjectItemCaseSensitive(d, "presences"));
    move_items(w->not_found, cJSON_GetObjectItemCaseSensitive(d, "not_found"));
    sh_metric_add(p->m_replies, 1, "GUILD_MEMBERS_CHUNK");
    if (w->chunks_received == w->chunk_count)
        finish(p, w, 200, NULL, NULL, dl);
}

static void on_rate_limited(struct http_pending *p, cJSON *d, struct done_list *dl)
{
    const cJSON *opcode = cJSON_GetObjectItemCaseSensitive(d, "opcode");
    const cJSON *ra = cJSON_GetObjectItemCaseSensitive(d, "retry_after");
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(d, "meta");
    const cJSON *nonce = cJSON_GetObjectItemCaseSensitive(meta, "nonce");
    uint64_t gid = 0;
    if (!cJSON_IsNumber(opcode) || opcode->valuedouble != 8)
        return;
    int have_gid = !snowflake_of(cJSON_GetObjectItemCaseSensitive(meta, "guild_id"), &gid);
    struct http_waiter *w = p->waiters;
    for (; w; w = w->next) {
        if (w->kind != W_MEMBERS || w->state != W_SENT)
            continue;
        if (cJSON_IsString(nonce) ? !strcmp(w->nonce, nonce->valuestring)
                                  : (have_gid && w->guild_id == gid && w->all_members))
            break;
    }
    if (!w)
        return;
    sh_metric_add(p->m_replies, 1, "RATE_LIMITED");
    double secs = cJSON_IsNumber(ra) && ra->valuedouble > 0 ? ra->valuedouble : 1.0;
    uint64_t now = sh_now_ms(), wait_ms = (uint64_t)ceil(secs * 1000.0);
    if (w->retries >= HTTP_MAX_RATE_LIMIT_RETRIES || wait_ms > HTTP_MAX_RETRY_AFTER_MS ||
        now + wait_ms >= w->expires) {
        char msg[200];
        if (now + wait_ms >= w->expires && w->retries < HTTP_MAX_RATE_LIMIT_RETRIES)
            snprintf(msg, sizeof(msg),
                     "Discord rate limited this member request; its retry_after (%.3f s) does "
                     "not fit in timeout_ms",
                     secs);
        else
            snprintf(msg, sizeof(msg),
                     "Discord rate limited this member request %d times; retry after %.3f s",
                     w->retries + 1, secs);
        w->retry_after_s = secs;
        finish(p, w, 429, "rate_limited", msg, dl);
        return;
    }
    w->retries++;
    w->state = W_SCHEDULED;
    w->send_at = now + wait_ms;
    w->deadline = w->expires;
    if (w->all_members) {
        struct slot *s = find_slot(p, w->guild_id, now);
        if (s && s->at < w->send_at)
            s->at = w->send_at;
    }
    log_info("msg=\"member request rate limited; retrying\" guild=%" PRIu64
             " retry=%d retry_after_ms=%" PRIu64,
             w->guild_id, w->retries, wait_ms);
}

static void on_channel_info(struct http_pending *p, cJSON *d, size_t len, struct done_list *dl)
{
    uint64_t gid;
    if (snowflake_of(cJSON_GetObjectItemCaseSensitive(d, "guild_id"), &gid))
        return;
    cJSON *channels = cJSON_GetObjectItemCaseSensitive(d, "channels");
    struct http_waiter *w = p->waiters, *next;
    int matched = 0;
    for (; w; w = next) {
        next = w->next;
        if (w->kind != W_CHANNEL_INFO || w->state != W_SENT || w->guild_id != gid)
            continue;
        w->reply_bytes = len;
        w->channels = channels ? cJSON_Duplicate(channels, 1) : cJSON_CreateArray();
        if (!w->channels)
            finish(p, w, 500, "internal", "out of memory", dl);
        else
            finish(p, w, 200, NULL, NULL, dl);
        matched = 1;
        next = p->waiters; /* finish may have dropped the lock: restart from the head */
    }
    if (matched)
        sh_metric_add(p->m_replies, 1, "CHANNEL_INFO");
}

static void on_soundboard(struct http_pending *p, cJSON *d, struct done_list *dl)
{
    uint64_t gid;
    if (snowflake_of(cJSON_GetObjectItemCaseSensitive(d, "guild_id"), &gid))
        return;
    cJSON *sounds = cJSON_GetObjectItemCaseSensitive(d, "soundboard_sounds");
    struct http_waiter *w = p->waiters, *next;
    int matched = 0;
    for (; w; w = next) {
        next = w->next;
        if (w->kind != W_SOUNDBOARD || w->state != W_SENT)
            continue;
        for (int i = 0; i < w->n_guilds; i++) {
            if (w->guilds[i] != gid || w->sounds[i])
                continue;
            w->sounds[i] = sounds ? cJSON_Duplicate(sounds, 1) : cJSON_CreateArray();
            if (w->sounds[i])
                w->n_answered++;
            matched = 1;
        }
        if (w->n_answered == w->n_guilds) {
            finish(p, w, 200, NULL, NULL, dl);
            next = p->waiters;
        }
    }
    if (matched)
        sh_metric_add(p->m_replies, 1, "SOUNDBOARD_SOUNDS");
}

static void handle_reply(struct http_pending *p, struct inbox *in, cJSON *d, struct done_list *dl)
{
    if (!cJSON_IsObject(d))
        return;
    switch (in->kind) {
    case R_MEMBERS_CHUNK:
        on_chunk(p, d, in->len, dl);
        break;
    case R_RATE_LIMITED:
        on_rate_limited(p, d, dl);
        break;
    case R_CHANNEL_INFO:
        on_channel_info(p, d, in->len, dl);
        break;
    case R_SOUNDBOARD:
        on_soundboard(p, d, dl);
        break;
    }
}

/* ---- the worker ------------------------------------------------------------------------ */

/*
 * A request that gave up waiting must not spend the shard's send budget later: when its
 * payload may still sit in the shard's queue (sent to the gateway, no reply yet), take it out.
 * Caller holds p->lock (the gateway's command lock is taken briefly, as with send).
 */
static void withdraw(struct http_pending *p, struct http_waiter *w)
{
    if (!p->cfg.withdraw || w->state != W_SENT || !w->payload_len || w->chunks_received ||
        w->reply_bytes)
        return;
    p->cfg.withdraw(p->cfg.gw, w->shard, w->payload, w->payload_len);
}

static void timeout_msg(struct http_waiter *w, char *msg, size_t cap)
{
    switch (w->kind) {
    case W_MEMBERS:
        if (w->chunk_count)
            snprintf(msg, cap, "got %d of %d member chunks within %d ms", w->chunks_received,
                     w->chunk_count, w->timeout_ms);
        else
            snprintf(msg, cap, "no GUILD_MEMBERS_CHUNK arrived within %d ms", w->timeout_ms);
        break;
    case W_CHANNEL_INFO:
        snprintf(msg, cap, "no CHANNEL_INFO arrived within %d ms", w->timeout_ms);
        break;
    case W_SOUNDBOARD:
        snprintf(msg, cap, "got SOUNDBOARD_SOUNDS for %d of %d guilds within %d ms", w->n_answered,
                 w->n_guilds, w->timeout_ms);
        break;
    }
}

/* Handle every reply in the inbox, in arrival order. Caller holds p->lock. */
static void handle_inbox(struct http_pending *p, struct done_list *dl)
{
    for (struct sh_qnode *n = sh_queue_take(&p->inbox), *nx; n; n = nx) {
        nx = n->next;
        struct inbox *in = SH_QUEUE_ITEM(n, struct inbox, node);
        p->in_bytes -= in->len;
        if (!p->stopping) {
            pthread_mutex_unlock(&p->lock);
            cJSON *d = cJSON_ParseWithLength(in->d, in->len);
            pthread_mutex_lock(&p->lock);
            if (!p->stopping)
                handle_reply(p, in, d, dl);
            cJSON_Delete(d);
        }
        free(in);
    }
}

static void *worker(void *arg)
{
    struct http_pending *p = arg;
    struct done_list dl = {.n = 0};
    pthread_mutex_lock(&p->lock);
    while (!p->stopping) {
        while (!sh_queue_empty(&p->inbox) && !p->stopping)
            handle_inbox(p, &dl);
        if (p->stopping)
            break;
        uint64_t now = sh_now_ms(), next = now + 60000;
        for (struct http_waiter *w = p->waiters, *nx; w; w = nx) {
            nx = w->next;
            if (w->state == W_SCHEDULED && w->send_at <= now) {
                send_now(p, w, now, &dl);
                nx = p->waiters; /* the list may have changed: rescan (sent ones are skipped) */
                continue;
            }
            if (w->state != W_DONE && w->deadline <= now) {
                char msg[200];
                timeout_msg(w, msg, sizeof(msg));
                withdraw(p, w);
                finish(p, w, 504, "timeout", msg, &dl);
                nx = p->waiters;
                continue;
            }
            if (w->state == W_SCHEDULED && w->send_at < next)
                next = w->send_at;
            if (w->deadline < next)
                next = w->deadline;
        }
        if (dl.n) {
            pthread_mutex_unlock(&p->lock);
            wake_all(p, &dl);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        if (!sh_queue_empty(&p->inbox))
            continue;
        now = sh_now_ms();
        if (next > now) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t ns = (uint64_t)ts.tv_nsec + (next - now) * 1000000u;
            ts.tv_sec += (time_t)(ns / 1000000000u);
            ts.tv_nsec = (long)(ns % 1000000000u);
            pthread_cond_timedwait(&p->cond, &p->lock, &ts);
        }
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int http_pending_new(const struct http_pending_cfg *cfg, struct http_pending **out)
{
    *out = NULL;
    struct http_pending *p = calloc(1, sizeof(*p));
    if (!p)
        return SH_ENOMEM;
    p->cfg = *cfg;
    if (p->cfg.member_window_ms < 0)
        p->cfg.member_window_ms = 30000;
    pthread_mutex_init(&p->lock, NULL);
    sh_queue_init(&p->inbox);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&p->n_waiters, 0);
    p->m_requests = sh_metric_counter("shardhook_api_waiting_requests_total",
                                      "Control requests that waited for gateway replies, by "
                                      "kind and outcome",
                                      "kind,outcome");
    p->m_replies =
        sh_metric_counter("shardhook_api_gateway_replies_total",
                          "Gateway replies matched to waiting control requests", "event");
    p->m_suspended = sh_metric_gauge("shardhook_api_suspended_requests",
                                     "Control requests suspended while waiting for Discord", NULL);
    sh_metric_set(p->m_suspended, 0);
    if (pthread_create(&p->thread, NULL, worker, p)) {
        pthread_cond_destroy(&p->cond);
        sh_queue_destroy(&p->inbox);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return SH_ENOMEM;
    }
    p->started = 1;
    *out = p;
    return 0;
}

void http_pending_shutdown(struct http_pending *p)
{
    if (!p)
        return;
    struct done_list dl = {.n = 0};
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    while (p->waiters)
        finish(p, p->waiters, 503, "shutting_down", "shardhook is stopping", &dl);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    wake_all(p, &dl);
    if (p->started) {
        pthread_join(p->thread, NULL);
        p->started = 0;
    }
}

void http_pending_free(struct http_pending *p)
{
    if (!p)
        return;
    http_pending_shutdown(p);
    for (struct sh_qnode *n = sh_queue_take(&p->inbox), *nx; n; n = nx) {
        nx = n->next;
        free(SH_QUEUE_ITEM(n, struct inbox, node));
    }
    sh_queue_destroy(&p->inbox);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

int http_pending_count(struct http_pending *p)
{
    return atomic_load(&p->n_waiters);
}

/* ---- answers --------------------------------------------------------------------------- */

static void add_snowflake(cJSON *obj, const char *key, uint64_t id)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, id);
    cJSON_AddStringToObject(obj, key, buf);
}

/* Move an array out of the waiter into obj under key (an empty one when absent). */
static void give_array(cJSON *obj, const char *key, cJSON **arr)
{
    cJSON *a = *arr ? *arr : cJSON_CreateArray();
    *arr = NULL;
    if (a)
        cJSON_AddItemToObject(obj, key, a);
}

void http_waiter_reply(struct http_waiter *w, struct http_reply *r)
{
    int ok = w->status == 200;
    int partial = w->status == 504; /* a timeout answers with what arrived */
    if (!ok && w->retry_after_s > 0)
        http_reply_retry_after(r, w->retry_after_s);
    if (!ok && !partial) {
        http_reply_error_with(r, w->status, w->code, w->message, NULL);
        return;
    }
    cJSON *j = cJSON_CreateObject();
    if (!j) {
        http_reply_error(r, 500, "internal", "out of memory");
        return;
    }
    switch (w->kind) {
    case W_MEMBERS:
        add_snowflake(j, "guild_id", w->guild_id);
        give_array(j, "members", &w->members);
        if (w->want_presences)
            give_array(j, "presences", &w->presences);
        give_array(j, "not_found", &w->not_found);
        cJSON_AddNumberToObject(j, "chunk_count", w->chunk_count);
        if (partial)
            cJSON_AddNumberToObject(j, "chunks_received", w->chunks_received);
        if (w->retries)
            cJSON_AddNumberToObject(j, "rate_limited_retries", w->retries);
        break;
    case W_CHANNEL_INFO:
        add_snowflake(j, "guild_id", w->guild_id);
        if (!partial)
            give_array(j, "channels", &w->channels);
        break;
    case W_SOUNDBOARD: {
        cJSON *guilds = cJSON_AddArrayToObject(j, "guilds");
        cJSON *missing = partial ? cJSON_AddArrayToObject(j, "missing") : NULL;
        for (int i = 0; guilds && i < w->n_guilds; i++) {
            char id[24];
            snprintf(id, sizeof(id), "%" PRIu64, w->guilds[i]);
            if (!w->sounds[i]) {
                if (missing)
                    cJSON_AddItemToArray(missing, cJSON_CreateString(id));
                continue;
            }
            cJSON *g = cJSON_CreateObject();
            if (!g)
                break;
            cJSON_AddStringToObject(g, "guild_id", id);
            cJSON_AddItemToObject(g, "soundboard_sounds", w->sounds[i]);
            w->sounds[i] = NULL;
            cJSON_AddItemToArray(guilds, g);
        }
        break;
    }
    }
    if (partial)
        http_reply_error_with(r, 504, w->code, w->message, j);
    else
        http_reply_json(r, 200, j);
}
