/*
 * bridge/redeliver.c: the redelivery streams of bridge/redeliver.h. Owns the per-webhook
 * queues of dead-letter ids, the batch each stream has on its way, and the list of requests
 * other threads posted (the only state shared, under `lock`). It touches no live batch, lane
 * or ledger entry of a webhook: only its dead_bytes, for retention, when a file leaves.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/batch.h"
#include "bridge/redeliver.h"
#include "bridge/retry.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/metrics.h"

#define LOAD_RETRY_MS 1000 /* a dead letter that could not be read is tried again after this */

struct rd_stream {
    size_t idx;
    char (*ids)[BR_DEAD_ID_MAX]; /* queued: ids[pos..n) */
    size_t n, pos, cap;
    char cur[BR_DEAD_ID_MAX]; /* the one on its way, "" when none */
    struct br_batch *b;
    struct br_request *req;
    unsigned attempts;
    uint64_t next_try_ms;
    struct sh_metric_series *m_acked, *m_refused, *m_retried;
    struct sh_log_limit lim_retry, lim_read;
};

struct posted {
    struct posted *next;
    size_t webhook, n;
    char (*ids)[BR_DEAD_ID_MAX];
};

struct br__redeliver {
    struct br__redeliver_env env;
    pthread_mutex_t lock;
    struct posted *head, *tail; /* under lock */
    struct rd_stream *s;
};

int br__redeliver_new(const struct br__redeliver_env *env, struct br__redeliver **out)
{
    struct br__redeliver *rd = calloc(1, sizeof(*rd));
    if (!rd)
        return SH_ENOMEM;
    rd->env = *env;
    rd->s = calloc(env->n_hooks ? env->n_hooks : 1, sizeof(*rd->s));
    if (!rd->s) {
        free(rd);
        return SH_ENOMEM;
    }
    pthread_mutex_init(&rd->lock, NULL);
    struct sh_metric *m =
        sh_metric_counter("shardhook_webhook_redeliveries_total",
                          "Dead letters sent again on request, by result (acked, refused, retried)",
                          "webhook,result");
    for (size_t i = 0; i < env->n_hooks; i++) {
        struct rd_stream *s = &rd->s[i];
        s->idx = i;
        s->m_acked = sh_metric_series(m, env->hooks[i].label, "acked");
        s->m_refused = sh_metric_series(m, env->hooks[i].label, "refused");
        s->m_retried = sh_metric_series(m, env->hooks[i].label, "retried");
    }
    *out = rd;
    return SH_OK;
}

static void drop_current(struct br__redeliver *rd, struct rd_stream *s)
{
    if (s->req) {
        curl_multi_remove_handle(rd->env.multi, s->req->easy);
        br_request_release(rd->env.reqs, s->req);
        s->req = NULL;
    }
    br_batch_free(s->b);
    s->b = NULL;
    s->cur[0] = '\0';
    s->attempts = 0;
    s->next_try_ms = 0;
}

void br__redeliver_free(struct br__redeliver *rd)
{
    if (!rd)
        return;
    for (size_t i = 0; i < rd->env.n_hooks; i++) {
        drop_current(rd, &rd->s[i]);
        free(rd->s[i].ids);
    }
    for (struct posted *p = rd->head, *nx; p; p = nx) {
        nx = p->next;
        free(p->ids);
        free(p);
    }
    pthread_mutex_destroy(&rd->lock);
    free(rd->s);
    free(rd);
}

int br__redeliver_post(struct br__redeliver *rd, size_t webhook, const char (*ids)[BR_DEAD_ID_MAX],
                       size_t n)
{
    if (webhook >= rd->env.n_hooks)
        return SH_EINVAL;
    struct posted *p = calloc(1, sizeof(*p));
    if (!p || !(p->ids = malloc((n ? n : 1) * sizeof(*p->ids)))) {
        free(p);
        return SH_ENOMEM;
    }
    memcpy(p->ids, ids, n * sizeof(*ids));
    p->webhook = webhook;
    p->n = n;
    pthread_mutex_lock(&rd->lock);
    if (rd->tail)
        rd->tail->next = p;
    else
        rd->head = p;
    rd->tail = p;
    pthread_mutex_unlock(&rd->lock);
    return SH_OK;
}

static int queued(const struct rd_stream *s, const char *id)
{
    if (!strcmp(s->cur, id))
        return 1;
    for (size_t i = s->pos; i < s->n; i++)
        if (!strcmp(s->ids[i], id))
            return 1;
    return 0;
}

/* The posted ids join their stream's queue (those already there are left out). */
static void take_posted(struct br__redeliver *rd)
{
    pthread_mutex_lock(&rd->lock);
    struct posted *p = rd->head;
    rd->head = rd->tail = NULL;
    pthread_mutex_unlock(&rd->lock);
    for (struct posted *nx; p; p = nx) {
        nx = p->next;
        struct rd_stream *s = &rd->s[p->webhook];
        if (s->pos == s->n)
            s->pos = s->n = 0;
        for (size_t i = 0; i < p->n; i++) {
            if (queued(s, p->ids[i]))
                continue;
            if (s->n == s->cap) {
                size_t nc = s->cap ? s->cap * 2 : 16;
                char(*g)[BR_DEAD_ID_MAX] = realloc(s->ids, nc * sizeof(*g));
                if (!g) {
                    log_error("msg=\"out of memory queueing dead letters for redelivery\" "
                              "webhook=%zu left_out=%zu",
                              p->webhook, p->n - i);
                    break;
                }
                s->ids = g;
                s->cap = nc;
            }
            memcpy(s->ids[s->n++], p->ids[i], BR_DEAD_ID_MAX);
        }
        free(p->ids);
        free(p);
    }
}

/* s->cur read back as a batch with its original webhook-id: 0, 1 to skip it, -1 to try later. */
static int load(struct br__redeliver *rd, struct rd_stream *s)
{
    struct br_dead_read r;
    int rc = br_deadletter_read(rd->env.dir, s->cur, &r);
    if (rc == SH_ENOTFOUND)
        return 1; /* discarded, or retention took it, since it was asked for */
    if (rc == SH_EPARSE) {
        log_warn_limited(&s->lim_read,
                         "msg=\"not a dead letter; not redelivered\" webhook=%zu id=%s", s->idx,
                         s->cur);
        return 1;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(rc ? NULL : r.json, "webhook_id");
    struct br_batch *b = NULL;
    if (!rc && (!cJSON_IsString(id) || strlen(id->valuestring) >= BR_MSG_ID_MAX))
        rc = SH_EPARSE;
    if (!rc)
        rc = br_batch_new(r.body_len > 64 ? r.body_len : 64, &b);
    if (!rc) {
        sh_buf_reset(&b->body);
        rc = sh_buf_append(&b->body, r.body, r.body_len);
        snprintf(b->msg_id, sizeof(b->msg_id), "%s", id->valuestring);
        const cJSON *ev = cJSON_GetObjectItemCaseSensitive(r.json, "events");
        b->n_events = cJSON_IsNumber(ev) ? (uint32_t)ev->valuedouble : 0;
        b->closed = 1;
    }
    br_deadletter_read_free(&r);
    if (rc) {
        br_batch_free(b);
        log_warn_limited(&s->lim_read,
                         "msg=\"cannot read a dead letter for redelivery\" webhook=%zu id=%s "
                         "error=\"%s\"",
                         s->idx, s->cur, sh_strerror(rc));
        return rc == SH_EPARSE ? 1 : -1;
    }
    s->b = b;
    return 0;
}

static int start(struct br__redeliver *rd, struct rd_stream *s)
{
    struct br__hook *h = &rd->env.hooks[s->idx];
    const struct br_hookauth *a = br_hookauth_current(rd->env.auth, s->idx);
    struct br_request *r;
    int rc = br_request_new(rd->env.reqs, h->cfg, a, s->idx, s->b, &r);
    if (rc)
        return rc;
    r->owner = s;
    if (curl_multi_add_handle(rd->env.multi, r->easy) != CURLM_OK) {
        br_request_release(rd->env.reqs, r);
        return SH_ENOMEM;
    }
    s->req = r;
    return SH_OK;
}

/* Move s on as far as it can go now; the time it waits for, UINT64_MAX when none. */
static uint64_t advance(struct br__redeliver *rd, struct rd_stream *s, uint64_t now, int stopping)
{
    const struct br__hook *h = &rd->env.hooks[s - rd->s];
    for (;;) {
        if (s->req)
            return UINT64_MAX;
        /* as for live batches: a pause holds it (resuming wakes the loop), a Retry-After too */
        if (atomic_load(&h->user_paused))
            return UINT64_MAX;
        if (h->hold_until_ms > now)
            return h->hold_until_ms;
        if (!s->cur[0]) {
            if (stopping || s->pos == s->n)
                return UINT64_MAX;
            memcpy(s->cur, s->ids[s->pos++], BR_DEAD_ID_MAX);
        }
        if (s->next_try_ms > now)
            return s->next_try_ms;
        if (!s->b) {
            int rc = load(rd, s);
            if (rc > 0) {
                drop_current(rd, s);
                continue;
            }
            if (rc < 0) {
                s->next_try_ms = now + LOAD_RETRY_MS;
                return s->next_try_ms;
            }
        }
        if (start(rd, s)) {
            s->next_try_ms = now + 100; /* out of memory or handles: soon again */
            return s->next_try_ms;
        }
        return UINT64_MAX;
    }
}

uint64_t br__redeliver_pass(struct br__redeliver *rd, uint64_t now, int stopping)
{
    take_posted(rd);
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < rd->env.n_hooks; i++) {
        uint64_t t = advance(rd, &rd->s[i], now, stopping);
        if (t < next)
            next = t;
    }
    return next;
}

/* Acknowledged: the dead letter leaves the folder. */
static void acked(struct br__redeliver *rd, struct rd_stream *s, long status)
{
    struct br__hook *h = &rd->env.hooks[s->idx];
    uint64_t bytes = 0;
    int rc = br_deadletter_remove(rd->env.dir, s->cur, &bytes);
    if (!rc)
        h->dead_bytes -= bytes < h->dead_bytes ? bytes : h->dead_bytes;
    sh_series_add(s->m_acked, 1);
    log_info("msg=\"dead letter redelivered and acknowledged; removed\" webhook=%zu id=%s "
             "webhook_id=%s events=%u status=%ld%s",
             s->idx, s->cur, s->b->msg_id, s->b->n_events, status,
             rc && rc != SH_ENOTFOUND ? " remove_failed=1" : "");
}

/* Refused again: it stays, with its new answer. */
static void refused(struct br__redeliver *rd, struct rd_stream *s, const struct br_request *r,
                    long status)
{
    int rc = br_deadletter_refused_again(rd->env.dir, s->cur, status, r->resp, r->resp_len,
                                         r->resp_truncated);
    sh_series_add(s->m_refused, 1);
    log_warn("msg=\"dead letter refused again; it stays in the dead-letter folder\" webhook=%zu "
             "id=%s webhook_id=%s status=%ld%s%s%s",
             s->idx, s->cur, s->b->msg_id, status, rc ? " update_error=\"" : "",
             rc ? sh_strerror(rc) : "", rc ? "\"" : "");
}

static void retry_later(struct rd_stream *s, const struct br__hook *h, const struct br_request *r,
                        CURLcode result, long status, uint64_t now)
{
    uint64_t base = (uint64_t)h->cfg->retry_base_ms, cap = (uint64_t)h->cfg->retry_max_ms;
    uint64_t wait =
        br_retry_delay_ms(s->attempts - 1, base, cap < base ? base : cap,
                          status ? r->retry_after_ms : -1, (uint64_t)h->cfg->retry_after_max_ms);
    s->next_try_ms = now + wait;
    sh_series_add(s->m_retried, 1);
    log_warn_limited(&s->lim_retry,
                     "msg=\"redelivery attempt failed; retrying\" webhook=%zu id=%s status=%ld "
                     "error=\"%s\" attempts=%u wait_ms=%" PRIu64,
                     s->idx, s->cur, status, status ? "" : curl_easy_strerror(result), s->attempts,
                     wait);
}

int br__redeliver_finish(struct br__redeliver *rd, struct br_request *r, CURLcode result,
                         uint64_t now)
{
    struct rd_stream *s = NULL;
    for (size_t i = 0; rd && i < rd->env.n_hooks && !s; i++)
        if (rd->s[i].req == r)
            s = &rd->s[i];
    if (!s)
        return 0;
    long status = 0;
    if (result == CURLE_OK)
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    s->req = NULL;
    s->attempts++;
    enum br_outcome o = br_classify(status);
    if (o == BR_ACK)
        acked(rd, s, status);
    else if (o == BR_DEAD)
        refused(rd, s, r, status);
    else
        retry_later(s, &rd->env.hooks[s->idx], r, result, status, now);
    br_request_release(rd->env.reqs, r);
    if (o != BR_RETRY)
        drop_current(rd, s);
    return 1;
}
