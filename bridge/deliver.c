/*
 * bridge/deliver.c: the delivery loop of bridge/deliver.h. Owns the chunk queue from the
 * gateway (shared with another thread, under `lock`), the libcurl multi handle, routing events
 * into every webhook's open batches, starting and finishing requests, when a batch may start,
 * and the thread's set-up and stop; its state is struct br_delivery (bridge/deliver_int.h).
 * Beside it: the status for the control API and the pauses kept across restarts are
 * webhook_state.c's, flow control, when_full shedding and the gauges flow.c's, events for one
 * webhook and the actions of answers action_events.c's, cluster mode's shards that come and go
 * holds.c's. What was acknowledged and what may be checkpointed is the ledger's
 * (bridge/ledger.h), where checkpoints are kept the store's (bridge/ckstore.h), how an attempt
 * is built the request's (bridge/request.h). It never touches gateway state: flow control goes
 * through the callback main() wires to gw_gateway_pause_reading().
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/actions.h"
#include "bridge/batch.h"
#include "bridge/ckstore.h"
#include "bridge/deadletter.h"
#include "bridge/deliver.h"
#include "bridge/deliver_int.h"
#include "bridge/hook.h"
#include "bridge/hookauth.h"
#include "bridge/ledger.h"
#include "bridge/redeliver.h"
#include "bridge/request.h"
#include "bridge/retry.h"
#include "bridge/route.h"
#include "bridge/spool.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/fileio.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/queue.h"
#include "lib/rand.h"

#define GAUGE_MS 250 /* queue and spool gauges are refreshed this often */
#define POLL_MAX_MS 1000
#define SPOOL_SEGMENT_MIN ((size_t)64 << 10)
#define SPOOL_SEGMENT_MAX ((size_t)16 << 20)
/* a failed dead-letter write is tried again after DEAD_RETRY_BASE_MS, doubling */
#define DEAD_RETRY_BASE_MS 100
#define DEAD_RETRY_MAX_MS 30000

/* ---- metrics ------------------------------------------------------------------------------ */

static void register_metrics(struct br_delivery *d)
{
    br__hook_register_metrics(d->hooks, d->n_hooks);
    d->m_paused = sh_metric_series(
        sh_metric_gauge("shardhook_delivery_paused",
                        "1 while delivery asks the gateway to stop reading (flow control)", ""));
    d->m_ckpt_writes = sh_metric_series(
        sh_metric_counter("shardhook_checkpoint_writes_total",
                          "Checkpoints written (journal lines and snapshots)", ""));
    d->m_ckpt_errors = sh_metric_series(sh_metric_counter(
        "shardhook_checkpoint_errors_total", "Checkpoint files that could not be written", ""));
    d->m_inq = sh_metric_series(sh_metric_gauge(
        "shardhook_delivery_inbound_bytes", "Event chunks from the gateway not yet routed", ""));
}

/* ---- the sink: the gateway thread -------------------------------------------------------- */

static void push(void *ud, struct gw_chunk *c)
{
    struct br_delivery *d = ud;
    pthread_mutex_lock(&d->lock);
    /* the delivery thread takes the whole queue at once: only the push that finds it empty
       needs to wake it, later ones ride on that wake-up (one syscall saved per hand-off) */
    int wake = sh_queue_push(&d->inq, &c->node);
    d->inq_bytes += c->data.len;
    d->inq_events += c->n;
    if (d->lazy) { /* asleep until a batch is due: wake it only when one could fill */
        wake = d->inq_events >= d->wake_events || d->inq_bytes >= d->wake_bytes;
        if (wake)
            d->lazy = 0;
    }
    pthread_mutex_unlock(&d->lock);
    if (wake)
        curl_multi_wakeup(d->multi);
}

struct gw_sink br_delivery_sink(struct br_delivery *d)
{
    struct gw_sink s = {push, d};
    return s;
}

/* ---- set-up ------------------------------------------------------------------------------- */

int br_delivery_new(const struct cfg_config *cfg, struct br_delivery **out)
{
    struct br_delivery *d = calloc(1, sizeof(*d));
    if (!d)
        return SH_ENOMEM;
    d->cfg = cfg;
    pthread_mutex_init(&d->lock, NULL);
    pthread_mutex_init(&d->status_lock, NULL);
    sh_queue_init(&d->inq);
    sh_queue_init(&d->evq);
    sh_queue_init(&d->cmdq);
    d->cluster = cfg->cluster;
    d->n_hooks = cfg->n_webhooks;
    d->hooks = calloc(d->n_hooks ? d->n_hooks : 1, sizeof(*d->hooks));
    d->pub = calloc(d->n_hooks ? d->n_hooks : 1, sizeof(*d->pub));
    int least = cfg_least_batch_delay_ms(cfg);
    d->min_delay_ms = least < 0 ? UINT64_MAX : (uint64_t)least;
    d->multi = curl_multi_init();
    if (!d->hooks || !d->pub || !d->multi || br_hookauth_new(cfg, &d->auth)) {
        br_delivery_free(d);
        return SH_ENOMEM;
    }
    const char *sd = cfg->state_dir;
    if (snprintf(d->dir_spool, sizeof(d->dir_spool), "%s/spool", sd) >= (int)sizeof(d->dir_spool) ||
        snprintf(d->dir_dead, sizeof(d->dir_dead), "%s/dead-letter", sd) >=
            (int)sizeof(d->dir_dead)) {
        log_error("msg=\"state_dir path too long\" state_dir=\"%s\"", sd);
        br_delivery_free(d);
        return SH_ETOOBIG;
    }
    const char *dirs[] = {d->dir_spool, d->dir_dead};
    for (size_t i = 0; i < 2; i++)
        if (sh_mkdir_p(dirs[i])) {
            log_error("msg=\"cannot create a state folder\" dir=\"%s\" error=\"%s\"", dirs[i],
                      strerror(errno));
            br_delivery_free(d);
            return SH_EIO;
        }
    size_t conns = 0;
    for (size_t i = 0; i < d->n_hooks; i++) {
        br__hook_init(&d->hooks[i], cfg, i, d->n_hooks);
        conns += (size_t)d->hooks[i].cfg->max_in_flight;
    }
    curl_multi_setopt(d->multi, CURLMOPT_MAXCONNECTS, (long)(conns + 4));
    if (br__new_actions(d)) {
        br_delivery_free(d);
        return SH_ENOMEM;
    }
    register_metrics(d);
    struct br__redeliver_env env = {d->multi, &d->reqs, d->auth, d->hooks, d->n_hooks, d->dir_dead};
    if (br__redeliver_new(&env, &d->rd)) {
        br_delivery_free(d);
        return SH_ENOMEM;
    }
    for (size_t i = 0; i < d->n_hooks; i++) /* dead letters an earlier run left */
        br__hook_trim_dead_letters(&d->hooks[i], d->dir_dead);
    br__load_paused(d);
    *out = d;
    return SH_OK;
}

void br_delivery_set_flow(struct br_delivery *d, void (*fn)(void *ud, int paused), void *ud)
{
    d->flow = fn;
    d->flow_ud = ud;
}

void br_delivery_set_chunk_consumer(struct br_delivery *d,
                                    void (*fn)(void *ud, struct gw_chunk *chunk), void *ud)
{
    d->consume = fn;
    d->consume_ud = ud;
}

void br_delivery_use_ckstore(struct br_delivery *d, struct br_ckstore *store)
{
    br_ckstore_free(d->store);
    d->store = store;
}

static size_t spool_segment_bytes(const struct cfg_config *cfg)
{
    size_t s = cfg->spool_max_bytes / 16;
    return s < SPOOL_SEGMENT_MIN   ? SPOOL_SEGMENT_MIN
           : s > SPOOL_SEGMENT_MAX ? SPOOL_SEGMENT_MAX
                                   : s;
}

/*
 * adopt[i] = 1 for each webhook whose spool the last stop saved (its marker fits this run):
 * those are sent first, and what they hold does not come again from the replay.
 */
static void read_marker(struct br_delivery *d, int *adopt)
{
    char(*keys)[BR_CKPT_KEY_MAX] = calloc(BR_CKPT_MAX_HOOKS, sizeof(*keys));
    size_t n = 0;
    if (!keys || !d->cfg->spool_max_bytes ||
        !br_spool_marker_read(d->dir_spool, d->total, &keys[0][0], BR_CKPT_KEY_MAX,
                              BR_CKPT_MAX_HOOKS, &n))
        n = 0;
    for (size_t i = 0; i < d->n_hooks; i++)
        for (size_t k = 0; k < n && !adopt[i]; k++)
            adopt[i] = !strcmp(keys[k], d->hooks[i].key);
    free(keys);
}

struct adopt_ctx {
    struct br_delivery *d;
    struct br__hook *h;
};

/* A batch saved by the last stop: of the session being resumed, it is still pending. */
static void on_adopted(void *ud, const char *meta, size_t len)
{
    struct adopt_ctx *a = ud;
    struct br_batch b;
    memset(&b, 0, sizeof(b));
    if (br_batch_decode_meta(meta, len, &b))
        return;
    br_ledger_adopt(a->d->ledger, a->h->idx, &b);
    free(b.shards);
}

static int open_spool(struct br_delivery *d, struct br__hook *h, int adopt)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/%s", d->dir_spool, h->key);
    size_t max_body = h->cfg->max_batch_bytes > d->cfg->max_payload_bytes + 4096
                          ? h->cfg->max_batch_bytes
                          : d->cfg->max_payload_bytes + 4096;
    size_t seg = spool_segment_bytes(d->cfg);
    if (!adopt)
        br_spool_set_aside(d->dir_spool, dir, h->key, h->idx);
    struct adopt_ctx ctx = {d, h};
    int rc = br_spool_open(dir, adopt, seg, max_body, adopt ? on_adopted : NULL, &ctx, &h->spool);
    if (rc) {
        log_error("msg=\"cannot open the spool\" webhook=%zu dir=\"%s\" error=\"%s\"", h->idx, dir,
                  sh_strerror(rc));
        return rc;
    }
    struct br_spool_stats st;
    br_spool_stats(h->spool, &st);
    if (adopt && st.batches)
        log_info("msg=\"sending the batches the last stop saved first\" webhook=%zu "
                 "batches=%" PRIu64 " events=%" PRIu64,
                 h->idx, st.batches, st.events);
    return SH_OK;
}

/* The ledger over the shards run here and the webhooks, on the store main() gave. */
static int new_ledger(struct br_delivery *d, const int *shard_ids, int n)
{
    int rc = d->store ? SH_OK : br_ckstore_files_new(d->cfg->state_dir, &d->store);
    const char **keys = calloc(d->n_hooks ? d->n_hooks : 1, sizeof(*keys));
    if (!rc && !keys)
        rc = SH_ENOMEM;
    for (size_t i = 0; !rc && i < d->n_hooks; i++)
        keys[i] = d->hooks[i].key;
    if (!rc)
        rc = br_ledger_new(d->total, shard_ids, n, keys, d->n_hooks, d->store, &d->ledger);
    free(keys);
    if (!rc)
        br_ledger_set_metrics(d->ledger, d->m_ckpt_writes, d->m_ckpt_errors);
    return rc;
}

static int alloc_lanes(struct br_delivery *d, int n)
{
    for (size_t i = 0; i < d->n_hooks; i++) {
        struct br__hook *h = &d->hooks[i];
        int lanes = h->cfg->max_in_flight < n ? h->cfg->max_in_flight : n;
        h->n_lanes = lanes < 1 ? 1 : lanes;
        h->n_open = n > 1 ? 2 * h->n_lanes : h->n_lanes;
        h->open = calloc((size_t)h->n_open, sizeof(*h->open));
        h->mark = calloc((size_t)n + 1, sizeof(*h->mark));
        h->slot_of = calloc((size_t)n + 1, sizeof(*h->slot_of));
        h->in = calloc((size_t)n + 1, sizeof(*h->in));
        h->alone_seq = calloc((size_t)n + 1, sizeof(*h->alone_seq));
        if (!h->open || !h->mark || !h->slot_of || !h->in || !h->alone_seq)
            return SH_ENOMEM;
    }
    return SH_OK;
}

int br_delivery_prepare(struct br_delivery *d, int total, const int *shard_ids, int n)
{
    if (d->prepared || total < 1 || n < 0 || n > total)
        return SH_EINVAL;
    d->total = total;
    d->n_local = n;
    int rc = new_ledger(d, shard_ids, n);
    rc = rc ? rc : alloc_lanes(d, n);
    int *adopt = rc ? NULL : calloc(d->n_hooks ? d->n_hooks : 1, sizeof(*adopt));
    if (!rc && !adopt)
        rc = SH_ENOMEM;
    if (rc)
        return rc;
    /* checkpoints first: a saved batch is pending only for the session that resumes */
    read_marker(d, adopt);
    if (d->cluster) /* nothing is held until the cluster gives it: hold() brings the checkpoint */
        for (int li = 0; li < n; li++)
            br_ledger_release(d->ledger, li);
    else
        br_ledger_load(d->ledger, adopt);
    for (size_t i = 0; !rc && d->cfg->spool_max_bytes && i < d->n_hooks; i++)
        rc = open_spool(d, &d->hooks[i], adopt[i]);
    free(adopt);
    if (rc)
        return rc;
    br_spool_marker_remove(d->dir_spool); /* adopted now: a crash from here on must not */
    d->prepared = 1;
    return SH_OK;
}

int br_delivery_resume_info(const struct br_delivery *d, int shard_id, char *session_id,
                            size_t sid_cap, char *resume_url, size_t url_cap, uint64_t *seq)
{
    if (!d->prepared)
        return SH_ENOTFOUND;
    return br_ledger_resume_info(d->ledger, shard_id, session_id, sid_cap, resume_url, url_cap,
                                 seq);
}

/* ---- routing ------------------------------------------------------------------------------ */

/*
 * The open slot for the next event of shard li. While the shard's last event sits in a batch
 * still open, the next one follows it there (a shard's events close in the order they came).
 * Otherwise every earlier event of the shard is in a closed batch, ordered before any batch open
 * now, and the slot is free to choose: its lane's, or while a batch of it that travelled alone
 * (a large event) is not yet acknowledged, the lane's second slot, so that the events which must
 * wait for it do not share a batch with the lane's other shards and hold them too.
 */
static int pick_slot(const struct br__hook *h, int li)
{
    if (h->in[li] && h->open[h->slot_of[li]] == h->in[li])
        return h->slot_of[li];
    int slot = li % h->n_lanes;
    uint64_t alone = h->alone_seq[li];
    /* the queue is oldest first: a head past that batch means it is gone */
    if (alone && h->n_open > h->n_lanes && h->head && h->head->seq < alone)
        slot += h->n_lanes;
    return slot;
}

/* Add event e of shard li to h's open batch; 0, or a negative code (not delivered). */
int br__add_to_hook(struct br_delivery *d, struct br__hook *h, int li, const struct gw_chunk *c,
                    const struct gw_event *e, uint64_t now)
{
    int lane = pick_slot(h, li);
    struct br_batch *b = br__hook_open_batch(h, lane, e);
    if (!b)
        return SH_ENOMEM;
    int fresh = 0;
    int rc =
        br_batch_add(b, c->data.data + e->off, e->len, (uint32_t)e->shard,
                     br_ledger_gen(d->ledger, li), e->s, e->recv_ms ? e->recv_ms : now, &fresh);
    if (rc) {
        static struct sh_log_limit lim;
        log_error_limited(&lim,
                          "msg=\"cannot add an event to a batch; event not delivered\" "
                          "webhook=%zu shard=%u s=%" PRIu64 " bytes=%u error=\"%s\"",
                          h->idx, e->shard, e->s, e->len, sh_strerror(rc));
        return rc;
    }
    br_ledger_routed(d->ledger, h->idx, li, e->s, fresh);
    h->slot_of[li] = lane;
    h->in[li] = b;
    if (BR_BATCH_BODY_FOR(e->len) > h->cfg->max_batch_bytes) { /* it travels alone: now */
        h->alone_seq[li] = h->next_seq + 1; /* the seq closing gives it (b may go to the spool) */
        br__hook_close_lane(h, lane);
    } else if ((int)b->n_events >= h->cfg->max_batch_events) {
        br__hook_close_lane(h, lane);
    }
    return SH_OK;
}

/* Event i of chunk c: its session (a READY), then every webhook that routes it. */
static void route_event(struct br_delivery *d, const struct gw_chunk *c, size_t i, uint64_t now)
{
    const struct gw_event *e = &c->ev[i];
    const char *t = c->data.data + e->t_off;
    int li = br_ledger_local(d->ledger, e->shard);
    if (li < 0) {
        static struct sh_log_limit lim;
        log_error_limited(&lim,
                          "msg=\"event of a shard not run here; dropped\" shard=%u s=%" PRIu64,
                          e->shard, e->s);
        d->undelivered++;
        return;
    }
    if (!br_ledger_held(d->ledger, li)) { /* cluster mode: released, the new owner replays it */
        static struct sh_log_limit lim;
        log_warn_limited(&lim,
                         "msg=\"event of a shard no longer held here; dropped\" shard=%u "
                         "s=%" PRIu64,
                         e->shard, e->s);
        return;
    }
    const struct gw_session *sess = gw_chunk_session(c, i);
    if (sess)
        br_ledger_session(d->ledger, li, sess->session_id, sess->resume_url);
    br_ledger_seen(d->ledger, li, e->s);
    const struct cfg_config *cfg = d->cfg;
    int always = br_route_always(t, e->t_len);
    if (!always && br_route_match_any(cfg->disable_events, cfg->n_disable_events, t, e->t_len))
        return;
    for (size_t k = 0; k < d->n_hooks; k++) {
        struct br__hook *h = &d->hooks[k];
        if (!always && !br_route_match_any(h->cfg->events, h->cfg->n_events, t, e->t_len))
            continue;
        if (!br_ledger_wanted(d->ledger, k, li, e->s)) {
            sh_series_add(h->m.dups, 1);
            continue;
        }
        if (br__add_to_hook(d, h, li, c, e, now))
            d->undelivered++;
    }
}

/* Close open batches whose delay passed (all of them when flushing); returns the next due time. */
static uint64_t close_due(struct br_delivery *d, uint64_t now, int flush)
{
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < d->n_hooks; i++) {
        struct br__hook *h = &d->hooks[i];
        for (int l = 0; l < h->n_open; l++) {
            struct br_batch *b = h->open[l];
            if (!b)
                continue;
            uint64_t due = b->first_ms + (uint64_t)h->cfg->max_batch_delay_ms;
            if (flush || due <= now)
                br__hook_close_lane(h, l);
            else if (due < next)
                next = due;
        }
    }
    return next;
}

/* ---- requests ----------------------------------------------------------------------------- */

/* Start one attempt of b. Returns 0, or a negative code (b stays queued). */
static int start_request(struct br_delivery *d, struct br__hook *h, struct br_batch *b,
                         uint64_t now)
{
    const struct br_hookauth *a = br_hookauth_current(d->auth, h->idx); /* reloads land here */
    struct br_request *r;
    int rc = br_request_new(&d->reqs, h->cfg, a, h->idx, b, &r);
    if (rc)
        return rc;
    r->owner = h;
    CURLMcode mc = curl_multi_add_handle(d->multi, r->easy);
    if (mc != CURLM_OK) {
        static struct sh_log_limit lim;
        log_error_limited(&lim, "msg=\"cannot start a webhook request\" webhook=%zu error=\"%s\"",
                          h->idx, curl_multi_strerror(mc));
        br_request_release(&d->reqs, r);
        return SH_ENOMEM;
    }
    b->state = B_INFLIGHT;
    b->req = r;
    b->started_ms = now;
    h->in_flight++;
    if (!b->attempts) {
        sh_series_observe(h->m.batch_events, (double)b->n_events);
        sh_series_observe(h->m.batch_bytes, (double)b->body.len);
    }
    return SH_OK;
}

/* An acknowledged or dead-lettered batch leaves the webhook's order. */
void br__resolve(struct br_delivery *d, struct br__hook *h, struct br_batch *b)
{
    br_ledger_settle(d->ledger, h->idx, b);
    br__hook_drop(h, b);
}

/* Its dead letter could not be written: keep b (it holds its shards' order) and try again. */
static void keep_for_dead_letter(struct br_batch *b, const struct br_request *r, long status,
                                 uint64_t now)
{
    b->dead_status = status;
    b->dead_tries = 1;
    b->dead_resp = r->resp_len ? malloc(r->resp_len) : NULL;
    if (b->dead_resp) {
        memcpy(b->dead_resp, r->resp, r->resp_len);
        b->dead_resp_len = r->resp_len;
        b->dead_resp_truncated = r->resp_truncated;
    } else {
        b->dead_resp_truncated = r->resp_len > 0 || r->resp_truncated;
    }
    b->state = B_DEAD_WAIT;
    b->next_try_ms = now + DEAD_RETRY_BASE_MS;
}

/* A refused batch whose dead letter is due again: 1 when it is on disk now (b is gone). */
static int retry_dead_letter(struct br_delivery *d, struct br__hook *h, struct br_batch *b,
                             uint64_t now)
{
    if (!br__hook_dead_letter(h, d->dir_dead, b, "refused", b->dead_status, b->dead_resp,
                              b->dead_resp_len, b->dead_resp_truncated)) {
        log_info("msg=\"dead letter written after failed attempts\" webhook=%zu webhook_id=%s "
                 "events=%u tries=%u",
                 h->idx, b->msg_id, b->n_events, b->dead_tries + 1);
        br__resolve(d, h, b);
        return 1;
    }
    b->next_try_ms =
        now + sh_backoff_ceiling_ms(b->dead_tries, DEAD_RETRY_BASE_MS, DEAD_RETRY_MAX_MS);
    b->dead_tries++;
    return 0;
}

/* The failure text the control API shows: "HTTP 503: <start of the answer>" or libcurl's. */
static void failure_text(struct br__hook *h, long status, const struct br_request *r,
                         CURLcode result)
{
    char *out = h->fail_error;
    size_t cap = sizeof(h->fail_error);
    if (!status) {
        const char *e = r->err[0] ? r->err : curl_easy_strerror(result);
        size_t n = strnlen(e, cap - 1);
        memcpy(out, e, n);
        out[n] = '\0';
        return;
    }
    int n = snprintf(out, cap, "HTTP %ld", status);
    if (r->resp_len && n > 0 && (size_t)n + 2 < cap) {
        out[n++] = ':';
        out[n++] = ' ';
        for (size_t i = 0; i < r->resp_len && (size_t)n + 1 < cap; i++) {
            unsigned char ch = (unsigned char)r->resp[i];
            out[n++] = ch >= 0x20 && ch < 0x7f ? (char)ch : ' ';
        }
        out[n] = '\0';
    }
}

/* What the control API shows about the webhook's last attempts. */
static void note_outcome(struct br__hook *h, enum br_outcome o, long status,
                         const struct br_request *r, CURLcode result)
{
    h->last_retry = o == BR_RETRY;
    if (o == BR_ACK) {
        h->delivered += r->b->n_events;
        h->ok_wall_ms = sh_wall_ms();
        h->ok_status = status;
        return;
    }
    h->retried += o == BR_RETRY;
    h->fail_wall_ms = sh_wall_ms();
    h->fail_status = status;
    failure_text(h, status, r, result);
}

/*
 * A 429 or 503 with Retry-After holds the whole endpoint: no request of any lane starts
 * before it passed (RFC 9110: wait before any follow-up request), then it goes on by itself.
 */
static void hold_endpoint(struct br__hook *h, uint64_t now, uint64_t wait)
{
    if (now + wait <= h->hold_until_ms)
        return;
    h->hold_until_ms = now + wait;
    h->hold_until_wall_ms = sh_wall_ms() + wait;
    log_warn_limited(&h->lim_hold,
                     "msg=\"webhook asked to wait (Retry-After); no request starts before then\" "
                     "webhook=%s wait_ms=%" PRIu64,
                     h->label, wait);
}

static void finish_request(struct br_delivery *d, CURL *easy, CURLcode result, uint64_t now)
{
    struct br_request *r = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
    curl_multi_remove_handle(d->multi, easy);
    if (!r || !r->b || br__redeliver_finish(d->rd, r, result, now))
        return;
    struct br__hook *h = r->owner;
    struct br_batch *b = r->b;
    long status = 0;
    if (result == CURLE_OK)
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    h->in_flight--;
    b->req = NULL;
    b->attempts++;
    sh_series_observe(h->m.req_seconds, (double)(now - b->started_ms) / 1000.0);
    enum br_outcome o = br_classify(status);
    note_outcome(h, o, status, r, result);
    if (o == BR_ACK) {
        sh_series_add(h->m.req_ok, 1);
        sh_series_add(h->m.events, b->n_events);
        sh_series_add(h->m.batches_acked, 1);
        if (b->first_ms && now >= b->first_ms)
            sh_series_observe(h->m.lag, (double)(now - b->first_ms) / 1000.0);
        log_debug("msg=\"batch delivered\" webhook=%zu webhook_id=%s events=%u bytes=%zu "
                  "status=%ld attempts=%u",
                  h->idx, b->msg_id, b->n_events, b->body.len, status, b->attempts);
        if (d->actions[h->idx])
            br__answer_actions(d, h, b, r, easy);
        br__resolve(d, h, b);
    } else if (o == BR_RETRY) {
        uint64_t base = (uint64_t)h->cfg->retry_base_ms, cap = (uint64_t)h->cfg->retry_max_ms;
        if (cap < base)
            cap = base;
        uint64_t wait =
            br_retry_delay_ms(b->attempts - 1, base, cap, status ? r->retry_after_ms : -1,
                              (uint64_t)h->cfg->retry_after_max_ms);
        b->state = B_WAIT;
        b->next_try_ms = now + wait;
        if ((status == 429 || status == 503) && r->retry_after_ms >= 0)
            hold_endpoint(h, now, wait);
        sh_series_add(h->m.retries, 1);
        if (status) {
            sh_series_add(h->m.req_retry_status, 1);
            log_warn_limited(&h->lim_retry,
                             "msg=\"webhook answered; retrying\" webhook=%zu webhook_id=%s "
                             "status=%ld attempts=%u wait_ms=%" PRIu64 "%s",
                             h->idx, b->msg_id, status, b->attempts, wait,
                             r->retry_after_ms >= 0 ? " retry_after=1" : "");
        } else {
            sh_series_add(result == CURLE_OPERATION_TIMEDOUT ? h->m.req_timeout : h->m.req_network,
                          1);
            log_warn_limited(&h->lim_fail,
                             "msg=\"webhook attempt failed; retrying\" webhook=%zu webhook_id=%s "
                             "error=\"%s\" attempts=%u wait_ms=%" PRIu64,
                             h->idx, b->msg_id, r->err[0] ? r->err : curl_easy_strerror(result),
                             b->attempts, wait);
        }
    } else {
        sh_series_add(h->m.req_dead, 1);
        if (!br__hook_dead_letter(h, d->dir_dead, b, "refused", status, r->resp, r->resp_len,
                                  r->resp_truncated))
            br__resolve(d, h, b);
        else
            keep_for_dead_letter(b, r, status, now);
    }
    br_request_release(&d->reqs, r);
}

/* Start every batch that may go now; returns the earliest retry time still ahead. */
static uint64_t schedule(struct br_delivery *d, uint64_t now)
{
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < d->n_hooks; i++) {
        struct br__hook *h = &d->hooks[i];
        if (!h->head || h->in_flight >= h->cfg->max_in_flight || atomic_load(&h->user_paused))
            continue; /* a paused webhook keeps its batches; resuming wakes the loop */
        if (h->hold_until_ms > now) { /* a Retry-After holds every lane */
            if (h->hold_until_ms < next)
                next = h->hold_until_ms;
            continue;
        }
        if (++h->epoch == 0) { /* wrapped: clear the marks once */
            memset(h->mark, 0, ((size_t)d->n_local + 1) * sizeof(*h->mark));
            h->epoch = 1;
        }
        int blocked_count = 0;
        for (struct br_batch *b = h->head, *nx; b; b = nx) {
            nx = b->next;
            int blocked = 0;
            for (uint32_t k = 0; k < b->n_shards && !blocked; k++) {
                blocked = h->mark[br__mark_index(d, b->shards[k].shard)] == h->epoch;
            }
            if (!blocked) {
                if (b->state == B_DEAD_WAIT && b->next_try_ms <= now) {
                    if (retry_dead_letter(d, h, b, now))
                        continue; /* on disk and resolved: b is gone */
                    if (b->next_try_ms < next)
                        next = b->next_try_ms;
                } else if (b->state == B_QUEUED || (b->state == B_WAIT && b->next_try_ms <= now)) {
                    if (br__purge_before_start(d, h, b))
                        continue; /* only events of shards released: b is gone */
                    if (start_request(d, h, b, now))
                        return now + 100; /* out of memory or handles: try again soon */
                } else if ((b->state == B_WAIT || b->state == B_DEAD_WAIT) &&
                           b->next_try_ms < next) {
                    next = b->next_try_ms;
                }
            }
            for (uint32_t k = 0; k < b->n_shards; k++) {
                uint32_t *m = &h->mark[br__mark_index(d, b->shards[k].shard)];
                if (*m != h->epoch) {
                    *m = h->epoch;
                    blocked_count++;
                }
            }
            if (h->in_flight >= h->cfg->max_in_flight || blocked_count >= d->n_local)
                break; /* no later batch can start in this pass */
        }
    }
    return next;
}

/* ---- the thread --------------------------------------------------------------------------- */

/* Nothing left to send before a stop (a paused webhook sends nothing: its batches are saved). */
static int idle(struct br_delivery *d)
{
    for (size_t i = 0; i < d->n_hooks; i++)
        if (!atomic_load(&d->hooks[i].user_paused) && !br__hook_idle(&d->hooks[i]))
            return 0;
    return 1;
}

/*
 * Before sleeping until `wake`: when that comes no later than any batch a new event would open
 * (now + the least max_batch_delay_ms), new events can wait for it, unless they could fill an
 * open batch first. The thresholds are the least room, in events and in bytes, of any lane of
 * any webhook, as if every queued event went to it: conservative, so a full batch never waits.
 * At steady rates this turns one wake-up per gateway pass into about one per batch.
 */
static void sleep_lazily(struct br_delivery *d, uint64_t now, uint64_t wake)
{
    if (wake == UINT64_MAX || d->min_delay_ms == UINT64_MAX || wake > now + d->min_delay_ms)
        return;
    size_t events = SIZE_MAX, bytes = SIZE_MAX;
    for (size_t i = 0; i < d->n_hooks; i++) {
        const struct br__hook *h = &d->hooks[i];
        for (int l = 0; l < h->n_open; l++) {
            const struct br_batch *b = h->open[l];
            size_t ev = (size_t)h->cfg->max_batch_events, by = h->cfg->max_batch_bytes;
            if (b) {
                ev = b->n_events < ev ? ev - b->n_events : 0;
                by = b->body.len < b->body.max ? b->body.max - b->body.len : 0;
            }
            events = ev < events ? ev : events;
            bytes = by < bytes ? by : bytes;
        }
    }
    pthread_mutex_lock(&d->lock);
    if (sh_queue_empty(&d->inq) && !d->stopping && events && bytes) {
        d->lazy = 1;
        d->wake_events = events;
        d->wake_bytes = bytes;
    }
    pthread_mutex_unlock(&d->lock);
}

/* Route every event of the chunks taken (push order), then free them. */
static void route_chunks(struct br_delivery *d, struct sh_qnode *chunks, uint64_t now)
{
    for (struct sh_qnode *n = chunks, *nx; n; n = nx) {
        nx = n->next;
        struct gw_chunk *c = SH_QUEUE_ITEM(n, struct gw_chunk, node);
        for (size_t i = 0; d->prepared && i < c->n; i++)
            route_event(d, c, i, now);
        if (d->consume)
            d->consume(d->consume_ud, c);
        else
            gw_chunk_free(c);
    }
}

static void *run(void *arg)
{
    struct br_delivery *d = arg;
    for (;;) {
        pthread_mutex_lock(&d->lock);
        struct sh_qnode *chunks = sh_queue_take(&d->inq);
        struct sh_qnode *action_events = sh_queue_take(&d->evq);
        struct sh_qnode *cmds = sh_queue_take(&d->cmdq);
        d->act_now = d->act_ops;
        size_t inq = d->inq_bytes;
        d->inq_bytes = d->inq_events = 0;
        d->lazy = 0;
        int stopping = d->stopping;
        uint64_t deadline = d->deadline_ms;
        pthread_mutex_unlock(&d->lock);

        uint64_t now = sh_now_ms();
        br__apply_commands(d, cmds, now); /* a hold is in place before its shard's first event */
        route_chunks(d, chunks, now);
        br__route_action_events(d, action_events, now);
        uint64_t wake = close_due(d, now, stopping);

        int running = 0;
        curl_multi_perform(d->multi, &running);
        CURLMsg *msg;
        int left;
        now = sh_now_ms();
        while ((msg = curl_multi_info_read(d->multi, &left)))
            if (msg->msg == CURLMSG_DONE)
                finish_request(d, msg->easy_handle, msg->data.result, now);
        for (size_t i = 0; i < d->n_hooks; i++)
            br__hook_refill(&d->hooks[i]);
        uint64_t drain_at = br__drains_pass(d, now, 0);
        if (drain_at < wake)
            wake = drain_at;

        /* acknowledgements reach the checkpoint before the next request of the same shards */
        br_ledger_flush(d->ledger, now, 0);
        uint64_t retry_at = schedule(d, now);
        if (retry_at < wake)
            wake = retry_at;
        retry_at = br__redeliver_pass(d->rd, now, stopping);
        if (retry_at < wake)
            wake = retry_at;
        if (br_ledger_next_ms(d->ledger) < wake)
            wake = br_ledger_next_ms(d->ledger);
        for (size_t i = 0; i < d->n_hooks; i++)
            br__shed_full_share(d, &d->hooks[i], now);
        br__update_flow(d, inq);
        if (now - d->last_gauge_ms >= GAUGE_MS) {
            br__update_gauges(d, inq);
            d->last_gauge_ms = now;
        }
        uint64_t publish_at = br__publish_status(d, now);
        if (publish_at < wake)
            wake = publish_at;

        if (stopping && ((idle(d) && !running) || now >= deadline)) {
            pthread_mutex_lock(&d->lock);
            /* a last chunk pushed while this pass ran */
            int more =
                !sh_queue_empty(&d->inq) || !sh_queue_empty(&d->evq) || !sh_queue_empty(&d->cmdq);
            pthread_mutex_unlock(&d->lock);
            if (!more || now >= deadline) {
                br__drains_pass(d, now, 1); /* stopping: every drain ends with what it has */
                break;
            }
        }
        long timeout = POLL_MAX_MS;
        if (wake != UINT64_MAX)
            timeout = wake <= now ? 0 : (long)(wake - now < POLL_MAX_MS ? wake - now : POLL_MAX_MS);
        if (stopping && deadline > now && (long)(deadline - now) < timeout)
            timeout = (long)(deadline - now);
        if (!stopping && timeout > 0)
            sleep_lazily(d, now, wake);
        curl_multi_poll(d->multi, NULL, 0, (int)timeout, NULL);
    }
    return NULL;
}

int br_delivery_start(struct br_delivery *d)
{
    if (d->started)
        return SH_EINVAL;
    if (!d->prepared) {
        int zero = 0;
        int rc = br_delivery_prepare(d, 1, &zero, 0);
        if (rc)
            return rc;
    }
    if (pthread_create(&d->thread, NULL, run, d))
        return SH_ENOMEM;
    d->started = 1;
    return SH_OK;
}

/* After the thread ended: abort what is in flight and count what is left. */
static void wind_down(struct br_delivery *d)
{
    for (size_t i = 0; i < d->n_hooks; i++) {
        struct br__hook *h = &d->hooks[i];
        for (struct br_batch *b = h->head; b; b = b->next) {
            if (b->state != B_INFLIGHT || !b->req)
                continue;
            struct br_request *r = b->req;
            curl_multi_remove_handle(d->multi, r->easy);
            h->in_flight--;
            b->req = NULL;
            b->state = B_QUEUED;
            br_request_release(&d->reqs, r);
        }
    }
    uint64_t now = sh_now_ms();
    pthread_mutex_lock(&d->lock);
    struct sh_qnode *cmds = sh_queue_take(&d->cmdq);
    pthread_mutex_unlock(&d->lock);
    if (d->prepared) {
        br__apply_commands(d, cmds, now);
        br__drains_pass(d, now, 1);
        br__purge_unheld(d); /* what was in flight: not saved for the next start */
    } else {
        br__free_commands(cmds);
    }
    route_chunks(d, sh_queue_take(&d->inq), now); /* arrived after the last pass */
    struct sh_qnode *action_events = sh_queue_take(&d->evq);
    if (d->prepared)
        br__route_action_events(d, action_events, now);
    else
        br__free_action_events(action_events);
    close_due(d, now, 1);
}

/* A graceful stop with batches left: 1 when some webhook's were saved in its spool. */
static int save_unsent(struct br_delivery *d)
{
    int any = 0;
    for (size_t i = 0; i < d->n_hooks; i++)
        if (br__hook_save(&d->hooks[i])) {
            /* cluster mode: no `queued` in checkpoints (another node resumes from acked) */
            if (!d->cluster)
                br_ledger_saved(d->ledger, i);
            any = 1;
        }
    return any;
}

/* Written last, after the spools and the checkpoints: the saved spools are consistent. */
static void write_marker(struct br_delivery *d)
{
    const char *keys[BR_CKPT_MAX_HOOKS];
    size_t n = 0;
    for (size_t i = 0; i < d->n_hooks && n < BR_CKPT_MAX_HOOKS; i++)
        if (d->hooks[i].saved)
            keys[n++] = d->hooks[i].key;
    br_spool_marker_write(d->dir_spool, d->total, keys, n);
}

uint64_t br_delivery_stop(struct br_delivery *d, int timeout_ms)
{
    if (d->stopped)
        return d->undelivered;
    pthread_mutex_lock(&d->lock);
    d->stopping = 1;
    d->deadline_ms = sh_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    pthread_mutex_unlock(&d->lock);
    curl_multi_wakeup(d->multi);
    if (d->started) {
        pthread_join(d->thread, NULL);
        d->started = 0;
    }
    d->stopped = 1;
    wind_down(d);
    int saved = d->prepared && save_unsent(d);
    if (d->prepared)
        br_ledger_flush(d->ledger, sh_now_ms(), 1);
    if (saved)
        write_marker(d);
    uint64_t left = 0;
    for (size_t i = 0; i < d->n_hooks; i++)
        if (!d->hooks[i].saved) /* a saved webhook's spool holds all it had */
            left += br__hook_unsent_events(&d->hooks[i]);
    d->undelivered += left;
    if (d->undelivered)
        log_warn("msg=\"events not delivered before the stop deadline; the next start resumes "
                 "from the checkpoint and Discord replays them\" events=%" PRIu64,
                 d->undelivered);
    return d->undelivered;
}

void br_delivery_free(struct br_delivery *d)
{
    if (!d)
        return;
    if (d->started)
        br_delivery_stop(d, 0);
    for (size_t i = 0; d->hooks && i < d->n_hooks; i++) {
        struct br__hook *h = &d->hooks[i];
        for (struct br_batch *b = h->head; b; b = b->next)
            if (b->req) {
                struct br_request *r = b->req;
                curl_multi_remove_handle(d->multi, r->easy);
                br_request_release(&d->reqs, r);
            }
        br__hook_release(h);
    }
    br__redeliver_free(d->rd);
    br_request_pool_free(&d->reqs);
    for (struct sh_qnode *n = sh_queue_take(&d->inq), *nx; n; n = nx) {
        nx = n->next;
        gw_chunk_free(SH_QUEUE_ITEM(n, struct gw_chunk, node));
    }
    sh_queue_destroy(&d->inq);
    br__free_action_events(sh_queue_take(&d->evq));
    sh_queue_destroy(&d->evq);
    br__free_commands(sh_queue_take(&d->cmdq));
    sh_queue_destroy(&d->cmdq);
    for (size_t i = 0; d->actions && i < d->n_hooks; i++)
        br_actions_free(d->actions[i]);
    free(d->actions);
    if (d->multi)
        curl_multi_cleanup(d->multi);
    free(d->hooks);
    br_ledger_free(d->ledger);
    br_ckstore_free(d->store);
    br_hookauth_free(d->auth);
    free(d->pub);
    pthread_mutex_destroy(&d->status_lock);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

int br_delivery_update_auth(struct br_delivery *d, size_t webhook, const struct cfg_webhook *w)
{
    return br_hookauth_update(d->auth, webhook, w);
}

int br_delivery_redeliver(struct br_delivery *d, size_t webhook, const char (*ids)[BR_DEAD_ID_MAX],
                          size_t n)
{
    int rc = br__redeliver_post(d->rd, webhook, ids, n);
    if (!rc)
        curl_multi_wakeup(d->multi);
    return rc;
}

const char *br_delivery_dead_letter_dir(const struct br_delivery *d)
{
    return d->dir_dead;
}
