/*
 * bridge/hook.c: one webhook inside the delivery thread (bridge/hook.h): its lanes, its order of
 * closed batches across memory, spool and overflow, its dead letters and its metrics.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bridge/deadletter.h"
#include "bridge/hook.h"
#include "lib/errors.h"

static const double batch_event_bounds[] = {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000};
static const double batch_byte_bounds[] = {1024,    4096,    16384,    65536,   262144,
                                           1048576, 4194304, 16777216, 67108864};

static void register_delivery_metrics(struct br__hook *hooks, size_t n)
{
    struct sh_metric *req = sh_metric_counter(
        "shardhook_webhook_requests_total",
        "Webhook requests by webhook and result (ok, retry_status, network_error, timeout, "
        "dead_status)",
        "webhook,result");
    struct sh_metric *retries =
        sh_metric_counter("shardhook_webhook_retries_total",
                          "Failed webhook attempts that will be retried", "webhook");
    struct sh_metric *dead = sh_metric_counter(
        "shardhook_webhook_dead_letters_total",
        "Batches moved to state_dir/dead-letter (refused, or a full spool share)", "webhook");
    struct sh_metric *events = sh_metric_counter("shardhook_webhook_events_delivered_total",
                                                 "Events acknowledged by webhooks", "webhook");
    struct sh_metric *batches = sh_metric_counter("shardhook_webhook_batches_acked_total",
                                                  "Batches acknowledged by webhooks", "webhook");
    struct sh_metric *bev =
        sh_metric_histogram("shardhook_webhook_batch_events", "Events per batch sent", "webhook",
                            batch_event_bounds, 12);
    struct sh_metric *bby =
        sh_metric_histogram("shardhook_webhook_batch_bytes", "Body bytes per batch sent", "webhook",
                            batch_byte_bounds, 9);
    struct sh_metric *lag = sh_metric_histogram(
        "shardhook_webhook_lag_seconds",
        "From the gateway receiving a batch's oldest event to the webhook acknowledging it",
        "webhook", SH_METRIC_BUCKETS_SECONDS);
    struct sh_metric *rs =
        sh_metric_histogram("shardhook_webhook_request_seconds", "Duration of one webhook attempt",
                            "webhook", SH_METRIC_BUCKETS_SECONDS);
    struct sh_metric *qb = sh_metric_gauge("shardhook_webhook_queue_bytes",
                                           "Bytes of closed batches waiting in memory", "webhook");
    struct sh_metric *qn = sh_metric_gauge("shardhook_webhook_queue_batches",
                                           "Closed batches waiting in memory", "webhook");
    struct sh_metric *sb = sh_metric_gauge("shardhook_webhook_spool_bytes",
                                           "Bytes of batches waiting in the disk spool", "webhook");
    struct sh_metric *sn = sh_metric_gauge("shardhook_webhook_spool_batches",
                                           "Batches waiting in the disk spool", "webhook");
    struct sh_metric *dups = sh_metric_counter(
        "shardhook_webhook_replayed_skipped_total",
        "Replayed events not sent again because the webhook had acknowledged them", "webhook");
    for (size_t i = 0; i < n; i++) {
        struct br__hook *h = &hooks[i];
        const char *w = h->label;
        h->m.req_ok = sh_metric_series(req, w, "ok");
        h->m.req_retry_status = sh_metric_series(req, w, "retry_status");
        h->m.req_network = sh_metric_series(req, w, "network_error");
        h->m.req_timeout = sh_metric_series(req, w, "timeout");
        h->m.req_dead = sh_metric_series(req, w, "dead_status");
        h->m.retries = sh_metric_series(retries, w);
        h->m.dead = sh_metric_series(dead, w);
        h->m.events = sh_metric_series(events, w);
        h->m.batches_acked = sh_metric_series(batches, w);
        h->m.batch_events = sh_metric_series(bev, w);
        h->m.batch_bytes = sh_metric_series(bby, w);
        h->m.lag = sh_metric_series(lag, w);
        h->m.req_seconds = sh_metric_series(rs, w);
        h->m.queue_bytes = sh_metric_series(qb, w);
        h->m.queue_batches = sh_metric_series(qn, w);
        h->m.spool_bytes = sh_metric_series(sb, w);
        h->m.spool_batches = sh_metric_series(sn, w);
        h->m.dups = sh_metric_series(dups, w);
    }
}

static void register_dead_letter_metrics(struct br__hook *hooks, size_t n)
{
    struct sh_metric *dl_err = sh_metric_counter(
        "shardhook_webhook_dead_letter_errors_total",
        "Dead-letter writes that failed; the batch is kept and the write tried again", "webhook");
    struct sh_metric *dl_rm = sh_metric_counter(
        "shardhook_webhook_dead_letters_removed_total",
        "Dead-letter files removed past dead_letter_max_bytes, oldest first", "webhook");
    struct sh_metric *dl_full = sh_metric_counter(
        "shardhook_webhook_spool_full_dead_letters_total",
        "Batches dead-lettered because the webhook's spool share was full (when_full "
        "dead_letter)",
        "webhook");
    for (size_t i = 0; i < n; i++) {
        struct br__hook *h = &hooks[i];
        h->m.dead_errors = sh_metric_series(dl_err, h->label);
        h->m.dead_removed = sh_metric_series(dl_rm, h->label);
        h->m.dead_full = sh_metric_series(dl_full, h->label);
    }
}

void br__hook_register_metrics(struct br__hook *hooks, size_t n)
{
    register_delivery_metrics(hooks, n);
    register_dead_letter_metrics(hooks, n);
}

static uint64_t queued_events(const struct br_batch *b)
{
    uint64_t n = 0;
    for (; b; b = b->next)
        n += b->n_events;
    return n;
}

static void free_list(struct br_batch *b)
{
    for (struct br_batch *nx; b; b = nx) {
        nx = b->next;
        br_batch_free(b);
    }
}

static void list_append(struct br_batch **head, struct br_batch **tail, struct br_batch *b)
{
    b->next = NULL;
    b->prev = *tail;
    if (*tail)
        (*tail)->next = b;
    else
        *head = b;
    *tail = b;
}

static void list_remove(struct br_batch **head, struct br_batch **tail, struct br_batch *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        *head = b->next;
    if (b->next)
        b->next->prev = b->prev;
    else
        *tail = b->prev;
    b->prev = b->next = NULL;
}

/* "w" + 16 hex digits of SHA-256(url), and "-N" for the N-th webhook with the same URL. */
static void hook_key(const struct cfg_config *cfg, size_t i, char *out, size_t cap)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    const char *url = cfg->webhooks[i].url;
    SHA256((const unsigned char *)url, strlen(url), md);
    int same = 0;
    for (size_t j = 0; j < i; j++)
        same += !strcmp(cfg->webhooks[j].url, url);
    int n = snprintf(out, cap, "w");
    for (int k = 0; k < 8 && n > 0 && (size_t)n < cap; k++)
        n += snprintf(out + n, cap - (size_t)n, "%02x", md[k]);
    if (same && n > 0 && (size_t)n < cap)
        snprintf(out + n, cap - (size_t)n, "-%d", same + 1);
}

/* dead_letter_max_bytes: the webhook's oldest dead letters go until the rest fit. */
void br__hook_trim_dead_letters(struct br__hook *h, const char *dir)
{
    uint64_t max = h->cfg->dead_letter_max_bytes, removed = 0, removed_bytes = 0, kept = 0;
    int rc =
        br_deadletter_trim(dir, h->idx, max ? max : UINT64_MAX, &removed, &removed_bytes, &kept);
    if (rc) {
        log_error_limited(&h->lim_trim,
                          "msg=\"cannot apply dead_letter_max_bytes to the dead-letter folder\" "
                          "webhook=%zu dir=\"%s\" error=\"%s\"",
                          h->idx, dir, sh_strerror(rc));
        return;
    }
    h->dead_bytes = kept;
    if (!removed)
        return;
    sh_series_add(h->m.dead_removed, (double)removed);
    log_warn_limited(&h->lim_trim,
                     "msg=\"dead letters past dead_letter_max_bytes; the oldest were removed\" "
                     "webhook=%zu removed=%" PRIu64 " removed_bytes=%" PRIu64 " kept_bytes=%" PRIu64
                     " dead_letter_max_bytes=%" PRIu64,
                     h->idx, removed, removed_bytes, kept, max);
}

/*
 * Write b's dead letter. Returns 0 once it is on disk (counted, logged, retention applied);
 * otherwise the batch must stay: a batch is resolved only when its dead letter is safe.
 */
int br__hook_dead_letter(struct br__hook *h, const char *dir, struct br_batch *b,
                         const char *reason, long status, const char *resp, size_t resp_len,
                         int resp_truncated)
{
    struct br_dead_letter dl = {
        .webhook = h->idx,
        .webhook_key = h->key,
        .msg_id = b->msg_id,
        .reason = reason,
        .status = status,
        .attempts = b->attempts,
        .events = b->n_events,
        .response = resp,
        .response_len = resp_len,
        .response_truncated = resp_truncated,
        .body = b->body.data,
        .body_len = b->body.len,
    };
    char path[PATH_MAX];
    int rc = br_deadletter_write(dir, &dl, path, sizeof(path));
    if (rc) {
        sh_series_add(h->m.dead_errors, 1);
        log_error_limited(&h->lim_dead_err,
                          "msg=\"cannot write a dead letter; the batch is kept, the write is "
                          "tried again and the checkpoint waits\" webhook=%zu reason=%s "
                          "webhook_id=%s events=%u dir=\"%s\" error=\"%s\"",
                          h->idx, reason, b->msg_id, b->n_events, dir, sh_strerror(rc));
        return rc;
    }
    if (!strcmp(reason, "refused"))
        log_error_limited(&h->lim_dead,
                          "msg=\"webhook refused a batch; dead-lettered\" webhook=%zu status=%ld "
                          "webhook_id=%s events=%u file=\"%s\"",
                          h->idx, status, b->msg_id, b->n_events, path);
    struct stat st;
    if (!stat(path, &st))
        h->dead_bytes += (uint64_t)st.st_size;
    if (h->cfg->dead_letter_max_bytes && h->dead_bytes > h->cfg->dead_letter_max_bytes)
        br__hook_trim_dead_letters(h, dir);
    h->dead_count++;
    sh_series_add(h->m.dead, 1); /* after retention: a reader sees the folder as counted */
    return SH_OK;
}

int br__hook_spool_has(const struct br__hook *h)
{
    if (!h->spool)
        return 0;
    struct br_spool_stats st;
    br_spool_stats(h->spool, &st);
    return st.batches > 0;
}

/* Move overflow batches into the spool while it takes them (keeps their order). */
static void flush_overflow(struct br__hook *h)
{
    while (h->over_head && h->spool) {
        struct br_batch *b = h->over_head;
        if (br_spool_append(h->spool, b))
            return;
        list_remove(&h->over_head, &h->over_tail, b);
        h->n_over--;
        h->mem_bytes -= b->body.len;
        br_batch_free(b);
        h->spool_error_logged = 0;
    }
}

/* A closed batch joins the webhook's order: memory while there is room, else the spool. */
static void enqueue(struct br__hook *h, struct br_batch *b)
{
    b->state = B_QUEUED;
    flush_overflow(h);
    if (h->over_head) {
        list_append(&h->over_head, &h->over_tail, b);
        h->n_over++;
        h->mem_bytes += b->body.len;
        return;
    }
    int spill = h->spool && (br__hook_spool_has(h) ||
                             (h->head && h->mem_bytes + b->body.len > h->cfg->max_memory_bytes));
    if (spill) {
        int rc = br_spool_append(h->spool, b);
        if (!rc) {
            br_batch_free(b);
            h->spool_error_logged = 0;
            return;
        }
        if (!h->spool_error_logged)
            log_error_limited(&h->lim_spool,
                              "msg=\"cannot spool a batch; keeping it in memory and pausing the "
                              "gateway until the spool takes it\" webhook=%zu error=\"%s\"",
                              h->idx, sh_strerror(rc));
        h->spool_error_logged = 1;
        if (br__hook_spool_has(h)) {
            list_append(&h->over_head, &h->over_tail, b);
            h->n_over++;
            h->mem_bytes += b->body.len;
            return;
        }
    }
    list_append(&h->head, &h->tail, b);
    h->n_mem++;
    h->mem_bytes += b->body.len;
}

/* Bring spooled batches back into memory, oldest first, while the memory limit allows. */
void br__hook_refill(struct br__hook *h)
{
    flush_overflow(h);
    while (h->spool) {
        size_t rec;
        int rc = br_spool_peek(h->spool, &rec);
        if (rc == SH_ENOTFOUND)
            break;
        if (!rc && h->head && h->mem_bytes + rec > h->cfg->max_memory_bytes)
            return;
        struct br_batch *b = NULL;
        uint64_t skipped = 0;
        int adopted = 0;
        rc = br_spool_pop(h->spool, &b, &skipped, &adopted);
        if (rc == SH_ECORRUPT)
            continue; /* logged with the batches lost; go on with the next segment */
        if (rc) {
            log_error_limited(&h->lim_spool_read,
                              "msg=\"cannot read the spool\" webhook=%zu error=\"%s\"", h->idx,
                              sh_strerror(rc));
            return;
        }
        if (adopted)
            b->first_ms = 0; /* another run's clock: no lag figure */
        b->adopted = adopted;
        b->state = B_QUEUED;
        list_append(&h->head, &h->tail, b);
        h->n_mem++;
        h->mem_bytes += b->body.len;
    }
    /* the spool is empty: overflow batches come next */
    while (h->over_head) {
        struct br_batch *b = h->over_head;
        list_remove(&h->over_head, &h->over_tail, b);
        h->n_over--;
        list_append(&h->head, &h->tail, b);
        h->n_mem++;
    }
}

void br__hook_close_lane(struct br__hook *h, int lane)
{
    struct br_batch *b = h->open[lane];
    if (!b)
        return;
    h->open[lane] = NULL;
    br_batch_close(b);
    b->seq = h->next_seq++;
    enqueue(h, b);
}

/* The open batch of h's lane for an event of len bytes (a new one when it would not fit). */
struct br_batch *br__hook_open_batch(struct br__hook *h, int lane, const struct gw_event *e)
{
    size_t len = e->len;
    struct br_batch *b = h->open[lane];
    if (b && !br_batch_fits(b, len)) {
        br__hook_close_lane(h, lane);
        b = NULL;
    }
    if (b)
        return b;
    size_t cap = h->cfg->max_batch_bytes;
    if (BR_BATCH_BODY_FOR(len) > cap) /* a single larger event travels alone */
        cap = BR_BATCH_BODY_FOR(len);
    int rc = br_batch_new(cap, &b);
    if (rc) {
        static struct sh_log_limit lim;
        log_error_limited(&lim,
                          "msg=\"cannot open a batch; event not delivered\" webhook=%zu "
                          "shard=%u s=%" PRIu64 " error=\"%s\"",
                          h->idx, e->shard, e->s, sh_strerror(rc));
        return NULL;
    }
    h->open[lane] = b;
    return b;
}

/* What fills a webhook's share: its spool, or its memory queue when there is no spool. */
int br__hook_share_over(struct br__hook *h)
{
    uint64_t used = h->mem_bytes, limit = h->cfg->max_memory_bytes;
    if (h->spool) {
        struct br_spool_stats st;
        br_spool_stats(h->spool, &st);
        used = st.bytes;
        limit = h->spool_share;
    }
    int over = h->spool ? used >= limit : used > limit;
    if (!over && h->shedding && used > limit - limit / 8)
        over = 1; /* once shedding, down to 7/8 of the share */
    h->shedding = over;
    return over;
}

/* The spool's head batch into memory (past the memory limit: it is shed at once). */
struct br_batch *br__hook_pull_spooled(struct br__hook *h)
{
    struct br_batch *b = NULL;
    uint64_t skipped = 0;
    int adopted = 0, rc;
    while ((rc = br_spool_pop(h->spool, &b, &skipped, &adopted)) == SH_ECORRUPT)
        ;
    if (rc)
        return NULL;
    b->adopted = adopted;
    b->state = B_QUEUED;
    list_append(&h->head, &h->tail, b);
    h->n_mem++;
    h->mem_bytes += b->body.len;
    return b;
}

static uint64_t spooled_events(const struct br__hook *h)
{
    struct br_spool_stats st = {0};
    if (h->spool)
        br_spool_stats(h->spool, &st);
    return st.events;
}

void br__hook_init(struct br__hook *h, const struct cfg_config *cfg, size_t i, size_t n_hooks)
{
    h->idx = i;
    h->cfg = &cfg->webhooks[i];
    if (h->cfg->name)
        snprintf(h->label, sizeof(h->label), "%s", h->cfg->name);
    else
        snprintf(h->label, sizeof(h->label), "%zu", i);
    atomic_init(&h->user_paused, 0);
    hook_key(cfg, i, h->key, sizeof(h->key));
    h->spool_share =
        h->cfg->spool_max_bytes ? h->cfg->spool_max_bytes : cfg->spool_max_bytes / n_hooks;
    h->full_dead_letter = !strcmp(h->cfg->when_full, "dead_letter");
}

void br__hook_release(struct br__hook *h)
{
    free_list(h->head);
    free_list(h->over_head);
    h->head = h->tail = h->over_head = h->over_tail = NULL;
    for (int l = 0; h->open && l < h->n_open; l++)
        br_batch_free(h->open[l]);
    free(h->open);
    free(h->mark);
    free(h->slot_of);
    free(h->in);
    free(h->alone_seq);
    h->open = NULL;
    h->mark = NULL;
    h->slot_of = NULL;
    h->in = NULL;
    h->alone_seq = NULL;
    br_spool_close(h->spool);
    h->spool = NULL;
}

void br__hook_drop(struct br__hook *h, struct br_batch *b)
{
    list_remove(&h->head, &h->tail, b);
    h->n_mem--;
    h->mem_bytes -= b->body.len;
    br_batch_free(b);
}

int br__hook_idle(const struct br__hook *h)
{
    if (h->head || h->over_head || br__hook_spool_has(h))
        return 0;
    for (int l = 0; l < h->n_open; l++)
        if (h->open[l])
            return 0;
    return 1;
}

void br__hook_gauges(struct br__hook *h)
{
    sh_series_set(h->m.queue_bytes, (double)h->mem_bytes);
    sh_series_set(h->m.queue_batches, (double)(h->n_mem + h->n_over));
    struct br_spool_stats st = {0};
    if (h->spool)
        br_spool_stats(h->spool, &st);
    sh_series_set(h->m.spool_bytes, (double)st.bytes);
    sh_series_set(h->m.spool_batches, (double)st.batches);
}

int br__hook_save(struct br__hook *h)
{
    if (!h->spool || (!h->head && !h->over_head && !br__hook_spool_has(h)))
        return 0;
    struct br_batch **mem = malloc((h->n_mem ? h->n_mem : 1) * sizeof(*mem));
    int rc = mem ? SH_OK : SH_ENOMEM;
    size_t n = 0;
    for (struct br_batch *b = h->head; !rc && b; b = b->next)
        mem[n++] = b;
    if (!rc)
        rc = br_spool_prepend(h->spool, mem, n);
    free(mem);
    for (struct br_batch *b = h->over_head; !rc && b; b = b->next)
        rc = br_spool_append(h->spool, b);
    if (!rc)
        rc = br_spool_sync(h->spool);
    if (rc) {
        log_error("msg=\"cannot save unsent batches to the spool; the next start relies on "
                  "Discord's replay\" webhook=%zu error=\"%s\"",
                  h->idx, sh_strerror(rc));
        return 0;
    }
    free_list(h->head);
    free_list(h->over_head);
    h->head = h->tail = h->over_head = h->over_tail = NULL;
    h->n_mem = h->n_over = 0;
    h->mem_bytes = 0;
    h->saved = 1;
    struct br_spool_stats st;
    br_spool_stats(h->spool, &st);
    log_info("msg=\"unsent batches saved in the spool; the next start sends them first\" "
             "webhook=%zu batches=%" PRIu64 " events=%" PRIu64,
             h->idx, st.batches, st.events);
    return 1;
}

uint64_t br__hook_unsent_events(const struct br__hook *h)
{
    return queued_events(h->head) + queued_events(h->over_head) + spooled_events(h);
}

/* ---- cluster mode: events of shards no longer held ---------------------------------------- */

/* Take the dropped shards' events out of b, in list head..tail; 1 when b went (freed). */
static int purge_listed(struct br__hook *h, struct br_batch **head, struct br_batch **tail,
                        size_t *count, struct br_batch *b, int (*drop)(void *ud, uint32_t shard),
                        void *ud, uint64_t *removed)
{
    size_t before = b->body.len;
    uint32_t n = 0;
    int rc = br_batch_drop_shards(b, drop, ud, &n);
    if (rc) {
        log_warn_limited(&h->lim_purge,
                         "msg=\"cannot take a released shard's events out of a batch; it goes "
                         "as it is\" webhook=%zu webhook_id=%s error=\"%s\"",
                         h->idx, b->msg_id, sh_strerror(rc));
        return 0;
    }
    *removed += n;
    h->mem_bytes -= before - b->body.len;
    if (b->n_events)
        return 0;
    list_remove(head, tail, b);
    (*count)--;
    h->mem_bytes -= b->body.len;
    br_batch_free(b);
    return 1;
}

/* Batches of this run not in a request and not waiting for their dead letter. */
static int purgeable(const struct br_batch *b)
{
    return !b->adopted && (b->state == B_QUEUED || b->state == B_WAIT);
}

int br__hook_purge_batch(struct br__hook *h, struct br_batch *b,
                         int (*drop)(void *ud, uint32_t shard), void *ud, uint64_t *removed)
{
    if (!purgeable(b))
        return 0;
    return purge_listed(h, &h->head, &h->tail, &h->n_mem, b, drop, ud, removed);
}

uint64_t br__hook_purge(struct br__hook *h, int (*drop)(void *ud, uint32_t shard), void *ud)
{
    uint64_t removed = 0;
    for (int l = 0; l < h->n_open; l++) {
        struct br_batch *b = h->open[l];
        uint32_t n = 0;
        if (b && !br_batch_drop_shards(b, drop, ud, &n)) {
            removed += n;
            if (!b->n_events) {
                br_batch_free(b);
                h->open[l] = NULL;
            }
        }
    }
    for (struct br_batch *b = h->head, *nx; b; b = nx) {
        nx = b->next;
        br__hook_purge_batch(h, b, drop, ud, &removed);
    }
    for (struct br_batch *b = h->over_head, *nx; b; b = nx) {
        nx = b->next;
        if (purgeable(b))
            purge_listed(h, &h->over_head, &h->over_tail, &h->n_over, b, drop, ud, &removed);
    }
    return removed;
}
