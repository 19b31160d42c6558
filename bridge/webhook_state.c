/*
 * bridge/webhook_state.c: what the control API sees of the webhooks and what it changes. Owns
 * the status the delivery thread publishes for other threads (at most every PUBLISH_MS, under
 * status_lock), br_delivery_webhook_status and br_delivery_webhook_pause, and the pauses kept
 * across restarts (state_dir/webhooks.json, read at start, written before a pause or resume
 * returns). The flag itself is the webhook's (struct br__hook.user_paused); what a paused
 * webhook does not start is deliver.c's.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/deliver_int.h"
#include "lib/buf.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/fileio.h"
#include "lib/log.h"

#define PAUSE_FILE "webhooks.json" /* in state_dir: the webhooks paused through the API */
#define PUBLISH_MS 20              /* the status for the control API, at most this often */

/* ---- pauses kept across restarts ---------------------------------------------------------- */

/* state_dir/webhooks.json: {"version":1,"paused":["<key>",...]}, keys as in checkpoints. */
static int pause_file_path(const struct br_delivery *d, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", d->cfg->state_dir, PAUSE_FILE);
    return n > 0 && (size_t)n < cap ? SH_OK : SH_ETOOBIG;
}

/* The file's JSON, NULL when it is absent; *bad set when it is there but unreadable. */
static cJSON *read_pause_file(const char *path, int *bad)
{
    char *text;
    size_t len, cap = (size_t)BR_CKPT_MAX_HOOKS * (BR_CKPT_KEY_MAX + 4) + 64;
    int rc = sh_read_file(path, cap, &text, &len);
    *bad = rc && rc != SH_ENOTFOUND;
    if (rc)
        return NULL;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    *bad = !j;
    return j;
}

/* The webhooks an earlier run paused through the API stay paused. A bad file is logged. */
void br__load_paused(struct br_delivery *d)
{
    char path[PATH_MAX];
    int bad = 0;
    if (pause_file_path(d, path, sizeof(path)))
        return;
    cJSON *j = read_pause_file(path, &bad);
    if (!j && !bad)
        return; /* none: nothing was paused */
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "paused");
    if (!cJSON_IsArray(list))
        log_warn("msg=\"cannot read the paused webhooks; none is paused\" file=\"%s\"", path);
    const cJSON *it, *items = cJSON_IsArray(list) ? list : NULL;
    cJSON_ArrayForEach(it, items)
    {
        for (size_t i = 0; cJSON_IsString(it) && i < d->n_hooks; i++) {
            if (strcmp(it->valuestring, d->hooks[i].key))
                continue;
            atomic_store(&d->hooks[i].user_paused, 1);
            log_info("msg=\"webhook paused through the control API; nothing is sent until it is "
                     "resumed\" webhook=%s",
                     d->hooks[i].label);
        }
    }
    cJSON_Delete(j);
}

/* Write which webhooks are paused (under status_lock). 0, or SH_EIO. */
static int save_paused(struct br_delivery *d)
{
    char path[PATH_MAX];
    struct sh_buf b;
    sh_buf_init(&b, (size_t)64 + d->n_hooks * (BR_CKPT_KEY_MAX + 4));
    int rc = pause_file_path(d, path, sizeof(path));
    rc = rc ? rc : sh_buf_printf(&b, "{\"version\":1,\"paused\":[");
    int first = 1;
    for (size_t i = 0; !rc && i < d->n_hooks; i++) {
        if (!atomic_load(&d->hooks[i].user_paused))
            continue;
        rc = sh_buf_printf(&b, "%s\"%s\"", first ? "" : ",", d->hooks[i].key);
        first = 0;
    }
    rc = rc ? rc : sh_buf_printf(&b, "]}\n");
    rc = rc ? rc : sh_write_file_durable(path, b.data, b.len);
    if (rc)
        log_error("msg=\"cannot write the paused webhooks\" file=\"%s\" error=\"%s\"", path,
                  sh_strerror(rc));
    sh_buf_free(&b);
    return rc ? SH_EIO : SH_OK;
}

/* ---- status for the control API ---------------------------------------------------------- */

/* h as other threads may see it: counted here, copied under status_lock by publish_status. */
static void fill_pub(const struct br__hook *h, struct br__hook_pub *p)
{
    struct br_webhook_status *st = &p->st;
    memset(p, 0, sizeof(*p));
    st->in_flight = h->in_flight;
    uint64_t oldest = UINT64_MAX;
    for (const struct br_batch *b = h->head; b; b = b->next) {
        if (b->state != B_INFLIGHT) {
            st->queued_events += b->n_events;
            st->queued_bytes += b->body.len;
        }
        if (b->first_ms && b->first_ms < oldest)
            oldest = b->first_ms;
    }
    for (const struct br_batch *b = h->over_head; b; b = b->next) {
        st->queued_events += b->n_events;
        st->queued_bytes += b->body.len;
    }
    for (int l = 0; h->open && l < h->n_open; l++)
        if (h->open[l] && h->open[l]->first_ms && h->open[l]->first_ms < oldest)
            oldest = h->open[l]->first_ms;
    p->oldest_ms = oldest == UINT64_MAX ? 0 : oldest;
    struct br_spool_stats sp = {0};
    if (h->spool)
        br_spool_stats(h->spool, &sp);
    st->spool_bytes = sp.bytes;
    st->state = h->last_retry ? BR_HOOK_RETRYING : sp.batches ? BR_HOOK_SPOOLING : BR_HOOK_OK;
    p->hold_until_ms = h->hold_until_ms;
    st->paused_until_wall_ms = h->hold_until_wall_ms;
    st->delivered_events = h->delivered;
    st->retries = h->retried;
    st->dead_letters = h->dead_count;
    st->last_ok_wall_ms = h->ok_wall_ms;
    st->last_ok_status = h->ok_status;
    st->last_fail_wall_ms = h->fail_wall_ms;
    st->last_fail_status = h->fail_status;
    memcpy(st->last_fail_error, h->fail_error, sizeof(st->last_fail_error));
}

/*
 * Every webhook's status for br_delivery_webhook_status, at most every PUBLISH_MS (a pass may
 * walk long queues). Returns when a skipped publish is due (the loop wakes by then), else
 * UINT64_MAX.
 */
uint64_t br__publish_status(struct br_delivery *d, uint64_t now)
{
    if (now - d->last_pub_ms < PUBLISH_MS)
        return d->last_pub_ms + PUBLISH_MS;
    d->last_pub_ms = now;
    pthread_mutex_lock(&d->status_lock);
    for (size_t i = 0; i < d->n_hooks; i++)
        fill_pub(&d->hooks[i], &d->pub[i]);
    pthread_mutex_unlock(&d->status_lock);
    return UINT64_MAX;
}

int br_delivery_webhook_status(struct br_delivery *d, size_t i, struct br_webhook_status *out)
{
    if (i >= d->n_hooks)
        return SH_ENOTFOUND;
    pthread_mutex_lock(&d->status_lock);
    struct br__hook_pub p = d->pub[i];
    pthread_mutex_unlock(&d->status_lock);
    uint64_t now = sh_now_ms();
    *out = p.st;
    out->paused_by_api = atomic_load(&d->hooks[i].user_paused);
    out->has_oldest = p.oldest_ms != 0;
    out->oldest_unacked_age_ms = p.oldest_ms && now > p.oldest_ms ? now - p.oldest_ms : 0;
    int held = p.hold_until_ms > now;
    if (!held)
        out->paused_until_wall_ms = 0;
    if (out->paused_by_api || held)
        out->state = BR_HOOK_PAUSED;
    return SH_OK;
}

int br_delivery_webhook_pause(struct br_delivery *d, size_t i, int paused)
{
    if (i >= d->n_hooks)
        return SH_ENOTFOUND;
    struct br__hook *h = &d->hooks[i];
    pthread_mutex_lock(&d->status_lock);
    int was = atomic_exchange(&h->user_paused, paused ? 1 : 0);
    int rc = was == (paused ? 1 : 0) ? SH_OK : save_paused(d);
    if (rc)
        atomic_store(&h->user_paused, was); /* not on disk: not done */
    pthread_mutex_unlock(&d->status_lock);
    if (rc)
        return rc;
    if (was != (paused ? 1 : 0))
        log_info("msg=\"%s\" webhook=%s",
                 paused ? "webhook paused through the control API"
                        : "webhook resumed through the control API",
                 h->label);
    if (!paused)
        curl_multi_wakeup(d->multi); /* its batches may start now */
    return SH_OK;
}
