/*
 * http/pending.c: the waiting-request table of http/pending.h (its requests, timeouts and worker
 * thread); matching the gateway's replies and writing answers is pending_replies.c.
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

#include "http/pending_int.h"

static const char *kind_names[] = {"members", "channel_info", "soundboard"};

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

static void wake_all(struct http_pending *p, struct done_list *dl)
{
    for (int i = 0; i < dl->n; i++)
        p->cfg.wake(dl->tokens[i]);
    dl->n = 0;
}

/* See pending_int.h. */
void http__pending_finish(struct http_pending *p, struct http_waiter *w, int status,
                          const char *code, const char *msg, struct done_list *dl)
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
        http__pending_finish(p, w, status, code, msg, dl);
    }
}

struct slot *http__pending_find_slot(struct http_pending *p, uint64_t guild_id, uint64_t now)
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
    struct slot *s = http__pending_find_slot(p, w->guild_id, now);
    uint64_t window = (uint64_t)p->cfg.member_window_ms;
    if (!s) {
        w->retry_after_s = window / 1000.0;
        http__pending_finish(p, w, 429, "rate_limited",
                             "too many guilds inside the all-members window; try again later", dl);
    } else if (s->at > now) {
        /* another all-members request for this guild already waits for its turn */
        w->retry_after_s = (double)(s->at - now) / 1000.0;
        http__pending_finish(
            p, w, 429, "rate_limited",
            "an all-members request for this guild is already waiting for Discord's "
            "30 s window",
            dl);
    } else if (s->at && now < s->at + window &&
               s->at + window + window_margin(window) >= w->expires) {
        /* the window outlasts the caller's timeout: say when to come back instead */
        w->retry_after_s = (double)(s->at + window + window_margin(window) - now) / 1000.0;
        http__pending_finish(
            p, w, 429, "rate_limited",
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
            http__pending_finish(p, w, status, code, msg, dl);
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
                http__pending_handle_reply(p, in, d, dl);
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
                http__pending_finish(p, w, 504, "timeout", msg, &dl);
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
        http__pending_finish(p, p->waiters, 503, "shutting_down", "shardhook is stopping", &dl);
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
