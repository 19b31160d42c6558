/*
 * http/pending_replies.c: the waiting-request table's other half: the gateway's dispatch
 * observer (it copies the replies a waiter may want into the inbox, on the gateway thread, and
 * never parses), the matching of each parsed reply to its waiters on the worker (member
 * chunks, RATE_LIMITED, channel info, soundboard sounds), and the answers written from a
 * finished waiter. Locking as in pending.c.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "http/pending_int.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/snowflake.h"

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
            http__pending_finish(p, w, 500, "internal", "out of memory", dl);
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
        http__pending_finish(
            p, w, 502, "answer_too_large",
            "the member list exceeds the server's cap; narrow it with query and limit", dl);
        return;
    }
    move_items(w->members, cJSON_GetObjectItemCaseSensitive(d, "members"));
    move_items(w->presences, cJSON_GetObjectItemCaseSensitive(d, "presences"));
    move_items(w->not_found, cJSON_GetObjectItemCaseSensitive(d, "not_found"));
    sh_metric_add(p->m_replies, 1, "GUILD_MEMBERS_CHUNK");
    if (w->chunks_received == w->chunk_count)
        http__pending_finish(p, w, 200, NULL, NULL, dl);
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
        http__pending_finish(p, w, 429, "rate_limited", msg, dl);
        return;
    }
    w->retries++;
    w->state = W_SCHEDULED;
    w->send_at = now + wait_ms;
    w->deadline = w->expires;
    if (w->all_members) {
        struct slot *s = http__pending_find_slot(p, w->guild_id, now);
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
            http__pending_finish(p, w, 500, "internal", "out of memory", dl);
        else
            http__pending_finish(p, w, 200, NULL, NULL, dl);
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
            http__pending_finish(p, w, 200, NULL, NULL, dl);
            next = p->waiters;
        }
    }
    if (matched)
        sh_metric_add(p->m_replies, 1, "SOUNDBOARD_SOUNDS");
}

void http__pending_handle_reply(struct http_pending *p, struct inbox *in, cJSON *d,
                                struct done_list *dl)
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
