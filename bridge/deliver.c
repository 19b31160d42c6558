/*
 * bridge/deliver.c: the delivery thread of bridge/deliver.h (libcurl easy, one
 * handle per webhook so connections are reused). Owns the chunk queue between
 * the gateway thread and itself; nothing else touches it.
 */
#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge/deliver.h"
#include "bridge/route.h"
#include "bridge/sign.h"
#include "lib/buf.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/rand.h"

#define RETRY_BASE_MS 250
#define RETRY_MAX_MS 30000

struct br_delivery {
    const struct cfg_config *cfg;
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct gw_chunk *head, *tail;
    int stopping;
    uint64_t deadline_ms;
    CURL **easy;
    struct sh_buf body;
    uint64_t undelivered;
};

static void push(void *ud, struct gw_chunk *c)
{
    struct br_delivery *d = ud;
    c->next = NULL;
    pthread_mutex_lock(&d->lock);
    if (d->tail)
        d->tail->next = c;
    else
        d->head = c;
    d->tail = c;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

struct gw_sink br_delivery_sink(struct br_delivery *d)
{
    struct gw_sink s = {push, d};
    return s;
}

int br_delivery_new(const struct cfg_config *cfg, struct br_delivery **out)
{
    struct br_delivery *d = calloc(1, sizeof(*d));
    if (!d)
        return SH_ENOMEM;
    d->cfg = cfg;
    pthread_mutex_init(&d->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cond, &ca);
    pthread_condattr_destroy(&ca);
    d->easy = calloc(cfg->n_webhooks ? cfg->n_webhooks : 1, sizeof(CURL *));
    sh_buf_init(&d->body, cfg->max_payload_bytes + 64);
    if (!d->easy) {
        br_delivery_free(d);
        return SH_ENOMEM;
    }
    for (size_t i = 0; i < cfg->n_webhooks; i++)
        if (!(d->easy[i] = curl_easy_init())) {
            br_delivery_free(d);
            return SH_ENOMEM;
        }
    *out = d;
    return SH_OK;
}

/* Sleep up to ms, waking early when a stop's deadline passes. Returns 1 to give up. */
static int backoff_wait(struct br_delivery *d, uint64_t ms)
{
    pthread_mutex_lock(&d->lock);
    uint64_t until = sh_now_ms() + ms;
    int give_up = 0;
    for (;;) {
        uint64_t now = sh_now_ms();
        if (d->stopping && now >= d->deadline_ms) {
            give_up = 1;
            break;
        }
        uint64_t wake = until;
        if (d->stopping && d->deadline_ms < wake)
            wake = d->deadline_ms;
        if (now >= wake)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (wake - now) * 1000000ull;
        ts.tv_sec += (time_t)(ns / 1000000000ull);
        ts.tv_nsec = (long)(ns % 1000000000ull);
        pthread_cond_timedwait(&d->cond, &d->lock, &ts);
    }
    pthread_mutex_unlock(&d->lock);
    return give_up;
}

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

/* POST the body once. Returns the HTTP status, or 0 for a connection error/timeout. */
static long post_once(struct br_delivery *d, size_t wi, const char *msg_id, long *retry_after_s)
{
    const struct cfg_webhook *w = &d->cfg->webhooks[wi];
    CURL *c = d->easy[wi];
    char line[1200];
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "User-Agent: shardhook/0.1");
    snprintf(line, sizeof(line), "webhook-id: %s", msg_id);
    h = curl_slist_append(h, line);
    int64_t ts = (int64_t)(sh_wall_ms() / 1000);
    snprintf(line, sizeof(line), "webhook-timestamp: %" PRId64, ts);
    h = curl_slist_append(h, line);
    if (w->n_secrets) {
        char sig[1024];
        if (br_sign(w->secrets, w->n_secrets, msg_id, ts, d->body.data, d->body.len, sig,
                    sizeof(sig)) == SH_OK) {
            snprintf(line, sizeof(line), "webhook-signature: %s", sig);
            h = curl_slist_append(h, line);
        }
    }
    for (size_t i = 0; i < w->n_headers; i++) {
        snprintf(line, sizeof(line), "%s: %s", w->headers[i].name, w->headers[i].value);
        h = curl_slist_append(h, line);
    }
    curl_easy_setopt(c, CURLOPT_URL, w->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, d->body.data);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)d->body.len);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)w->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    *retry_after_s = -1;
    if (cc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_off_t ra = -1;
        if (curl_easy_getinfo(c, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
            *retry_after_s = (long)ra;
    } else {
        log_warn("msg=\"webhook attempt failed\" webhook=%zu error=\"%s\"", wi,
                 curl_easy_strerror(cc));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(h);
    return status;
}

/* Deliver the built body until acknowledged or given up. Returns 1 when delivered. */
static int deliver_body(struct br_delivery *d, size_t wi, size_t n_events)
{
    char msg_id[64];
    br_new_msg_id(msg_id, sizeof(msg_id));
    for (unsigned attempt = 0;; attempt++) {
        long ra = -1;
        long status = post_once(d, wi, msg_id, &ra);
        if (status >= 200 && status < 300) {
            log_debug("msg=\"batch delivered\" webhook=%zu events=%zu bytes=%zu status=%ld "
                      "attempts=%u",
                      wi, n_events, d->body.len, status, attempt + 1);
            return 1;
        }
        uint64_t wait = sh_backoff_ms(attempt, RETRY_BASE_MS, RETRY_MAX_MS);
        if (ra >= 0 && (uint64_t)ra * 1000 > wait)
            wait = (uint64_t)ra * 1000;
        if (status)
            log_warn("msg=\"webhook answered, retrying\" webhook=%zu status=%ld wait_ms=%" PRIu64,
                     wi, status, wait);
        if (backoff_wait(d, wait))
            return 0;
    }
}

static void deliver_chunk(struct br_delivery *d, struct gw_chunk *c)
{
    const struct cfg_config *cfg = d->cfg;
    for (size_t wi = 0; wi < cfg->n_webhooks; wi++) {
        const struct cfg_webhook *w = &cfg->webhooks[wi];
        size_t n = 0;
        sh_buf_reset(&d->body);
        for (size_t i = 0; i <= c->n; i++) {
            const struct gw_event *e = i < c->n ? &c->ev[i] : NULL;
            if (e && (!br_route_match_any(w->events, w->n_events, c->data.data + e->t_off,
                                          e->t_len) ||
                      br_route_match_any(cfg->disable_events, cfg->n_disable_events,
                                         c->data.data + e->t_off, e->t_len)))
                continue;
            int full = n && (!e || (int)n >= w->max_batch_events ||
                             d->body.len + e->len + 3 > w->max_batch_bytes);
            if (full) {
                sh_buf_append(&d->body, "]}", 2);
                if (!deliver_body(d, wi, n)) {
                    d->undelivered += n;
                    log_error("msg=\"batch not delivered before the stop deadline\" webhook=%zu "
                              "events=%zu",
                              wi, n);
                }
                sh_buf_reset(&d->body);
                n = 0;
            }
            if (!e)
                break;
            int rc = sh_buf_append(&d->body, n ? "," : "{\"events\":[", n ? 1 : 11);
            if (!rc)
                rc = sh_buf_append(&d->body, c->data.data + e->off, e->len);
            if (rc) {
                log_error("msg=\"event too large for a webhook body\" webhook=%zu bytes=%u",
                          wi, e->len);
                d->undelivered++;
                continue;
            }
            n++;
        }
    }
}

static void *run(void *arg)
{
    struct br_delivery *d = arg;
    for (;;) {
        pthread_mutex_lock(&d->lock);
        while (!d->head && !d->stopping)
            pthread_cond_wait(&d->cond, &d->lock);
        struct gw_chunk *c = d->head;
        if (c) {
            d->head = c->next;
            if (!d->head)
                d->tail = NULL;
        }
        pthread_mutex_unlock(&d->lock);
        if (!c)
            break;
        deliver_chunk(d, c);
        gw_chunk_free(c);
    }
    return NULL;
}

int br_delivery_start(struct br_delivery *d)
{
    if (pthread_create(&d->thread, NULL, run, d))
        return SH_ENOMEM;
    d->started = 1;
    return SH_OK;
}

uint64_t br_delivery_stop(struct br_delivery *d, int timeout_ms)
{
    pthread_mutex_lock(&d->lock);
    d->stopping = 1;
    d->deadline_ms = sh_now_ms() + (uint64_t)timeout_ms;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    if (d->started) {
        pthread_join(d->thread, NULL);
        d->started = 0;
    }
    for (struct gw_chunk *c = d->head, *next; c; c = next) { /* left when the thread gave up */
        next = c->next;
        d->undelivered += c->n;
        gw_chunk_free(c);
    }
    d->head = d->tail = NULL;
    return d->undelivered;
}

void br_delivery_free(struct br_delivery *d)
{
    if (!d)
        return;
    if (d->started)
        br_delivery_stop(d, 0);
    for (size_t i = 0; d->easy && i < d->cfg->n_webhooks; i++)
        if (d->easy[i])
            curl_easy_cleanup(d->easy[i]);
    free(d->easy);
    sh_buf_free(&d->body);
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->lock);
    free(d);
}
