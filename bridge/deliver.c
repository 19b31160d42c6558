/*
 * bridge/deliver.c: the delivery thread of bridge/deliver.h. Owns the chunk queue from the
 * gateway (the only state shared with another thread, under `lock`), the libcurl multi handle,
 * every webhook's open batches, queue, spool and per-shard acknowledgement state, the
 * checkpoint files and the delivery metrics. It never touches gateway state: flow control
 * goes through the callback main() wires to gw_gateway_pause_reading().
 *
 * Acknowledgement bookkeeping, per webhook W and shard X (of the current session of X):
 *   pending    batches of W holding events of X, not yet acknowledged or dead-lettered
 *   last_acked highest s of X in W's acknowledged batches
 *   floor      from the checkpoint: replayed events up to it are not sent to W again
 * W has acknowledged X up to `pending ? last_acked : max(seen, floor)` (an event W does not
 * route counts as acknowledged by it); a shard's checkpoint `seq` is the least of those.
 * Batches of a shard's earlier session (before a new READY) are still delivered, but no
 * longer count for its checkpoints.
 */
#include <curl/curl.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bridge/batch.h"
#include "bridge/checkpoint.h"
#include "bridge/deadletter.h"
#include "bridge/deliver.h"
#include "bridge/hookauth.h"
#include "bridge/retry.h"
#include "bridge/route.h"
#include "bridge/sign.h"
#include "bridge/spool.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/fileio.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/queue.h"
#include "lib/rand.h"

#define INQ_PAUSE_BYTES ((size_t)64 << 20) /* chunks waiting for this thread: pause past it */
#define CKPT_LAZY_MS 200   /* checkpoints that only follow unrouted events wait this long */
#define CKPT_FSYNC_MS 1000 /* checkpoint files are fsync'ed at most this often while running */
#define GAUGE_MS 250       /* queue and spool gauges are refreshed this often */
#define POLL_MAX_MS 1000
#define CONNECT_TIMEOUT_MS 10000
#define SPOOL_SEGMENT_MIN ((size_t)64 << 10)
#define SPOOL_SEGMENT_MAX ((size_t)16 << 20)
#define HEADER_LINE_MAX 8448 /* a header name and an 8192-byte value */
#define SIG_MAX 1024         /* 16 keys x "v1,<44 base64>" */

/* B_DEAD_WAIT: refused for good, but its dead letter is not on disk yet: the write is retried */
enum { B_QUEUED = 0, B_INFLIGHT, B_WAIT, B_DEAD_WAIT };
#define DEAD_RETRY_BASE_MS 100 /* a failed dead-letter write is tried again after this, doubling */
#define DEAD_RETRY_MAX_MS 30000
#define SHED_RETRY_MS 1000 /* a full share whose dead letter failed tries again after this */

#define NO_GEN UINT32_MAX /* a session generation no shard has */
#define MARKER_MAX ((size_t)8 << 20)
#define MARKER_NAME "CLEAN" /* state_dir/spool/CLEAN: written last by a graceful stop */

struct req {
    struct req *next; /* free list */
    CURL *easy;
    struct curl_slist *headers;
    struct hook *h;
    struct br_batch *b;
    char resp[BR_DEAD_RESPONSE_MAX];
    size_t resp_len;
    int resp_truncated;
    int64_t retry_after_ms;
    char err[CURL_ERROR_SIZE];
};

struct wsh { /* one webhook x one shard run here */
    uint32_t pending;
    uint64_t last_acked;
    uint64_t floor;
    uint64_t routed_max; /* highest s routed to the webhook in the current session */
};

struct shard {
    int id;
    uint32_t gen;     /* session_gen() of the current session: batches name it */
    int have_session; /* READY seen, or a checkpoint loaded */
    int from_checkpoint;
    char session_id[128];
    char resume_url[512];
    uint64_t seen;     /* highest s routed in the current session */
    uint64_t ckpt_seq; /* seq of the checkpoint loaded at start */
    int dirty;         /* its checkpoint may have changed */
    int dirty_ack;     /* ... because of an acknowledgement: write before the next request */
    uint64_t written_seq, written_sum;
    uint32_t written_gen;
    int written;
    int snapshotted; /* this process wrote its snapshot: later writes may go to the journal */
    struct br_ckpt_files files;
    struct sh_log_limit lim_ckpt;
};

struct hook_metrics {
    struct sh_metric_series *req_ok, *req_retry_status, *req_network, *req_timeout, *req_dead;
    struct sh_metric_series *retries, *dead, *events, *batches_acked;
    struct sh_metric_series *batch_events, *batch_bytes, *lag, *req_seconds;
    struct sh_metric_series *queue_bytes, *queue_batches, *spool_bytes, *spool_batches;
    struct sh_metric_series *dups;
    struct sh_metric_series *dead_errors, *dead_removed, *dead_full;
};

struct hook {
    size_t idx;
    const struct cfg_webhook *cfg;
    char label[24];
    char key[BR_CKPT_KEY_MAX];
    int n_lanes;
    struct br_batch **open;       /* per lane, NULL when none is open */
    struct br_batch *head, *tail; /* closed batches in memory, oldest first */
    size_t n_mem;
    uint64_t mem_bytes;
    struct br_batch *over_head, *over_tail; /* after the spool when it cannot take them */
    size_t n_over;
    struct br_spool *spool;
    int spool_error_logged;
    int saved; /* a graceful stop saved its unsent batches in the spool */
    int in_flight;
    uint32_t *mark, epoch; /* per local shard (+1 for unknown shards) */
    struct wsh *ws;        /* per local shard */
    uint64_t next_seq;
    uint64_t spool_share;  /* bytes of the spool this webhook may fill */
    int full_dead_letter;  /* when_full "dead_letter": a full share sheds its oldest batches */
    int shedding;          /* shedding until the share is below 7/8 */
    int shed_failed;       /* a dead letter could not be written: pause instead */
    uint64_t shed_next_ms; /* ... and try again from then on */
    uint64_t dead_bytes;   /* its dead letters on disk, for dead_letter_max_bytes */
    struct hook_metrics m;
    struct sh_log_limit lim_retry, lim_fail, lim_dead, lim_dead_err, lim_shed, lim_trim;
    struct sh_log_limit lim_spool, lim_spool_read;
};

struct br_delivery {
    const struct cfg_config *cfg;
    struct br_hookauth_set *auth; /* secrets and headers, replaceable by a reload */
    pthread_t thread;
    int started, stopped;
    pthread_mutex_t lock; /* guards the fields up to `multi` */
    struct sh_queue inq;  /* gw_chunk hand-offs; the totals below move with it, under lock */
    size_t inq_bytes, inq_events;
    /* lazy: the thread sleeps until its own deadline, which comes before any new event's;
       a push wakes it only once the queue could fill a batch (see sleep_lazily) */
    int lazy;
    size_t wake_events, wake_bytes;
    int stopping;
    uint64_t deadline_ms;
    CURLM *multi;
    /* delivery thread only, from here on */
    struct hook *hooks;
    size_t n_hooks;
    int total;
    struct shard *shards;
    int n_local;
    int32_t *local_of; /* shard id -> index in shards, -1 when not run here */
    int prepared;
    int clean_start; /* the last stop saved the spool: adopt it */
    char clean_hooks[BR_CKPT_MAX_HOOKS][BR_CKPT_KEY_MAX]; /* webhooks whose spool was saved */
    size_t n_clean_hooks;
    char dir_ckpt[PATH_MAX - 64], dir_spool[PATH_MAX - 64], dir_dead[PATH_MAX - 64];
    struct req *free_reqs;
    void (*flow)(void *ud, int paused);
    void *flow_ud;
    int paused;
    uint64_t last_ckpt_ms, last_fsync_ms, last_gauge_ms;
    int acked_in_pass; /* or a new session: checkpoints are written in this pass */
    int any_dirty;     /* some shard's checkpoint may have changed */
    int any_journal;   /* some shard's journal waits for the snapshot of the next fsync tick */
    uint64_t min_delay_ms; /* the least max_batch_delay_ms of the webhooks */
    uint64_t undelivered;
    struct sh_metric_series *m_paused, *m_ckpt_writes, *m_ckpt_errors, *m_inq;
};

/* ---- small helpers ----------------------------------------------------------------------- */

static void fsync_dir(const char *dir)
{
    static struct sh_log_limit lim;
    if (sh_fsync_dir(dir))
        log_warn_limited(&lim, "msg=\"cannot fsync a folder\" dir=\"%s\" error=\"%s\"", dir,
                         strerror(errno));
}

/*
 * A session's generation, named in every batch entry: FNV-1a of its session_id, so batches a
 * stop saved still name the session after a restart. Never NO_GEN, never `differ_from`.
 */
static uint32_t session_gen(const char *session_id, uint32_t differ_from)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)session_id; *p; p++)
        h = (h ^ *p) * 16777619u;
    if (h == NO_GEN)
        h--;
    if (h == differ_from)
        h = h == 0 ? 1 : h - 1;
    return h;
}

static int is_name(const char *t, size_t len, const char *name)
{
    return len == strlen(name) && !memcmp(t, name, len);
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

/* ---- metrics ------------------------------------------------------------------------------ */

static const double batch_event_bounds[] = {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000};
static const double batch_byte_bounds[] = {1024,    4096,    16384,    65536,   262144,
                                           1048576, 4194304, 16777216, 67108864};

static void register_metrics(struct br_delivery *d)
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
    for (size_t i = 0; i < d->n_hooks; i++) {
        struct hook *h = &d->hooks[i];
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
    for (size_t i = 0; i < d->n_hooks; i++) {
        struct hook *h = &d->hooks[i];
        h->m.dead_errors = sh_metric_series(dl_err, h->label);
        h->m.dead_removed = sh_metric_series(dl_rm, h->label);
        h->m.dead_full = sh_metric_series(dl_full, h->label);
    }
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

/* ---- dead letters ------------------------------------------------------------------------ */

/* dead_letter_max_bytes: the webhook's oldest dead letters go until the rest fit. */
static void trim_dead_letters(struct br_delivery *d, struct hook *h)
{
    uint64_t max = h->cfg->dead_letter_max_bytes, removed = 0, removed_bytes = 0, kept = 0;
    int rc = br_deadletter_trim(d->dir_dead, h->idx, max ? max : UINT64_MAX, &removed,
                                &removed_bytes, &kept);
    if (rc) {
        log_error_limited(&h->lim_trim,
                          "msg=\"cannot apply dead_letter_max_bytes to the dead-letter folder\" "
                          "webhook=%zu dir=\"%s\" error=\"%s\"",
                          h->idx, d->dir_dead, sh_strerror(rc));
        return;
    }
    h->dead_bytes = kept;
    if (!removed)
        return;
    sh_series_add(h->m.dead_removed, (double)removed);
    log_warn_limited(&h->lim_trim,
                     "msg=\"dead letters past dead_letter_max_bytes; the oldest were removed\" "
                     "webhook=%zu removed=%" PRIu64 " removed_bytes=%" PRIu64
                     " kept_bytes=%" PRIu64 " dead_letter_max_bytes=%" PRIu64,
                     h->idx, removed, removed_bytes, kept, max);
}

/*
 * Write b's dead letter. Returns 0 once it is on disk (counted, logged, retention applied);
 * otherwise the batch must stay: a batch is resolved only when its dead letter is safe.
 */
static int write_dead_letter(struct br_delivery *d, struct hook *h, struct br_batch *b,
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
    int rc = br_deadletter_write(d->dir_dead, &dl, path, sizeof(path));
    if (rc) {
        sh_series_add(h->m.dead_errors, 1);
        log_error_limited(&h->lim_dead_err,
                          "msg=\"cannot write a dead letter; the batch is kept, the write is "
                          "tried again and the checkpoint waits\" webhook=%zu reason=%s "
                          "webhook_id=%s events=%u dir=\"%s\" error=\"%s\"",
                          h->idx, reason, b->msg_id, b->n_events, d->dir_dead, sh_strerror(rc));
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
        trim_dead_letters(d, h);
    sh_series_add(h->m.dead, 1); /* after retention: a reader sees the folder as counted */
    return SH_OK;
}

int br_delivery_new(const struct cfg_config *cfg, struct br_delivery **out)
{
    struct br_delivery *d = calloc(1, sizeof(*d));
    if (!d)
        return SH_ENOMEM;
    d->cfg = cfg;
    pthread_mutex_init(&d->lock, NULL);
    sh_queue_init(&d->inq);
    d->n_hooks = cfg->n_webhooks;
    d->hooks = calloc(d->n_hooks ? d->n_hooks : 1, sizeof(*d->hooks));
    int least = cfg_least_batch_delay_ms(cfg);
    d->min_delay_ms = least < 0 ? UINT64_MAX : (uint64_t)least;
    d->multi = curl_multi_init();
    if (!d->hooks || !d->multi || br_hookauth_new(cfg, &d->auth)) {
        br_delivery_free(d);
        return SH_ENOMEM;
    }
    const char *sd = cfg->state_dir ? cfg->state_dir : "./state";
    if (snprintf(d->dir_ckpt, sizeof(d->dir_ckpt), "%s/checkpoints", sd) >=
            (int)sizeof(d->dir_ckpt) ||
        snprintf(d->dir_spool, sizeof(d->dir_spool), "%s/spool", sd) >= (int)sizeof(d->dir_spool) ||
        snprintf(d->dir_dead, sizeof(d->dir_dead), "%s/dead-letter", sd) >=
            (int)sizeof(d->dir_dead)) {
        log_error("msg=\"state_dir path too long\" state_dir=\"%s\"", sd);
        br_delivery_free(d);
        return SH_ETOOBIG;
    }
    const char *dirs[] = {d->dir_ckpt, d->dir_spool, d->dir_dead};
    for (size_t i = 0; i < 3; i++)
        if (sh_mkdir_p(dirs[i])) {
            log_error("msg=\"cannot create a state folder\" dir=\"%s\" error=\"%s\"", dirs[i],
                      strerror(errno));
            br_delivery_free(d);
            return SH_EIO;
        }
    size_t conns = 0;
    for (size_t i = 0; i < d->n_hooks; i++) {
        struct hook *h = &d->hooks[i];
        h->idx = i;
        h->cfg = &cfg->webhooks[i];
        snprintf(h->label, sizeof(h->label), "%zu", i);
        hook_key(cfg, i, h->key, sizeof(h->key));
        conns += (size_t)h->cfg->max_in_flight;
        h->spool_share = h->cfg->spool_max_bytes ? h->cfg->spool_max_bytes
                                                 : cfg->spool_max_bytes / d->n_hooks;
        h->full_dead_letter = h->cfg->when_full && !strcmp(h->cfg->when_full, "dead_letter");
    }
    curl_multi_setopt(d->multi, CURLMOPT_MAXCONNECTS, (long)(conns + 4));
    register_metrics(d);
    for (size_t i = 0; i < d->n_hooks; i++) /* dead letters an earlier run left */
        trim_dead_letters(d, &d->hooks[i]);
    *out = d;
    return SH_OK;
}

void br_delivery_set_flow(struct br_delivery *d, void (*fn)(void *ud, int paused), void *ud)
{
    d->flow = fn;
    d->flow_ud = ud;
}

/* Spool segments left by an earlier run: kept aside for the operator, never replayed. */
static void set_aside_stale_spool(struct br_delivery *d, struct hook *h, const char *dir)
{
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode))
        return;
    struct br_spool *sp;
    if (br_spool_open(dir, 1, SPOOL_SEGMENT_MAX, UINT32_MAX, NULL, NULL, &sp))
        return;
    struct br_spool_stats ss;
    br_spool_stats(sp, &ss);
    br_spool_close(sp);
    if (!ss.segments)
        return;
    char stale[PATH_MAX];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
    snprintf(stale, sizeof(stale), "%s/stale-%s-%s", d->dir_spool, stamp, h->key);
    if (rename(dir, stale)) {
        log_error("msg=\"cannot set an earlier run's spool aside\" webhook=%zu dir=\"%s\" "
                  "error=\"%s\"",
                  h->idx, dir, strerror(errno));
        return;
    }
    log_warn("msg=\"an earlier run stopped without saving its spool; its batches are kept "
             "aside, not sent: the RESUME from the checkpoint replays what was not "
             "acknowledged\" webhook=%zu batches=%" PRIu64 " events=%" PRIu64 " moved_to=\"%s\"",
             h->idx, ss.batches, ss.events, stale);
}

static size_t spool_segment_bytes(const struct cfg_config *cfg)
{
    size_t s = cfg->spool_max_bytes / 16;
    return s < SPOOL_SEGMENT_MIN   ? SPOOL_SEGMENT_MIN
           : s > SPOOL_SEGMENT_MAX ? SPOOL_SEGMENT_MAX
                                   : s;
}

static void marker_path(const struct br_delivery *d, char *out, size_t cap)
{
    snprintf(out, cap, "%s/" MARKER_NAME, d->dir_spool);
}

/*
 * The marker a graceful stop writes after saving unsent batches:
 * {"version":1,"shard_count":N,"webhooks":["key",...]}: the webhooks whose spool holds every
 * batch they had not settled. Returns 1 when it is there and fits this run.
 */
static int read_marker(struct br_delivery *d)
{
    char path[PATH_MAX];
    marker_path(d, path, sizeof(path));
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    char *buf = malloc(MARKER_MAX + 1);
    size_t len = buf ? fread(buf, 1, MARKER_MAX + 1, f) : 0;
    fclose(f);
    cJSON *root = buf && len <= MARKER_MAX ? cJSON_ParseWithLength(buf, len) : NULL;
    free(buf);
    const cJSON *count = cJSON_GetObjectItemCaseSensitive(root, "shard_count");
    const cJSON *hooks = cJSON_GetObjectItemCaseSensitive(root, "webhooks");
    int ok = cJSON_IsNumber(count) && count->valueint == d->total && cJSON_IsArray(hooks);
    const cJSON *it, *list = ok ? hooks : NULL;
    cJSON_ArrayForEach(it, list)
    {
        if (cJSON_IsString(it) && d->n_clean_hooks < BR_CKPT_MAX_HOOKS &&
            strlen(it->valuestring) < BR_CKPT_KEY_MAX)
            snprintf(d->clean_hooks[d->n_clean_hooks++], BR_CKPT_KEY_MAX, "%s", it->valuestring);
    }
    if (!ok)
        log_warn("msg=\"spool marker of the last stop does not fit this run; not adopting the "
                 "spool\" file=\"%s\"",
                 path);
    cJSON_Delete(root);
    return ok;
}

static int hook_was_saved(const struct br_delivery *d, const struct hook *h)
{
    for (size_t i = 0; i < d->n_clean_hooks; i++)
        if (!strcmp(d->clean_hooks[i], h->key))
            return 1;
    return 0;
}

struct adopt_ctx {
    struct br_delivery *d;
    struct hook *h;
};

/* A batch saved by the last stop: of the session being resumed, it is still pending. */
static void on_adopted(void *ud, const char *meta, size_t len)
{
    struct adopt_ctx *a = ud;
    struct br_batch b;
    memset(&b, 0, sizeof(b));
    if (br_batch_decode_meta(meta, len, &b))
        return;
    for (uint32_t i = 0; i < b.n_shards; i++) {
        uint32_t sh = b.shards[i].shard;
        int li = sh < (uint32_t)a->d->total ? a->d->local_of[sh] : -1;
        if (li < 0 || !a->d->shards[li].from_checkpoint || b.shards[i].gen != a->d->shards[li].gen)
            continue;
        struct wsh *ws = &a->h->ws[li];
        ws->pending++;
        if (b.shards[i].max_s > ws->routed_max)
            ws->routed_max = b.shards[i].max_s;
    }
    free(b.shards);
}

static void load_checkpoint(struct br_delivery *d, struct shard *s)
{
    struct br_checkpoint *cp = calloc(1, sizeof(*cp));
    if (!cp)
        return;
    int rc = br_checkpoint_read(d->dir_ckpt, &s->files, cp);
    int li = (int)(s - d->shards);
    if (rc == SH_ENOTFOUND) {
        free(cp);
        return;
    }
    if (rc) {
        log_warn("msg=\"unreadable checkpoint ignored; the shard identifies\" shard=%d "
                 "dir=\"%s\" error=\"%s\"",
                 s->id, d->dir_ckpt, sh_strerror(rc));
    } else if (cp->total != d->total || cp->shard != s->id) {
        log_warn("msg=\"checkpoint for another shard count ignored; the shard identifies\" "
                 "shard=%d checkpoint_shard_count=%d shard_count=%d",
                 s->id, cp->total, d->total);
    } else {
        s->have_session = s->from_checkpoint = 1;
        snprintf(s->session_id, sizeof(s->session_id), "%s", cp->session_id);
        snprintf(s->resume_url, sizeof(s->resume_url), "%s", cp->resume_url);
        s->seen = s->ckpt_seq = cp->seq;
        s->gen = session_gen(cp->session_id, NO_GEN);
        for (size_t i = 0; i < d->n_hooks; i++) {
            struct hook *h = &d->hooks[i];
            const struct br_ckpt_hook *e = br_checkpoint_hook(cp, h->key);
            uint64_t acked = e && e->acked > cp->seq ? e->acked : cp->seq, floor = acked;
            /* what the saved spool holds is not to come again from the replay either */
            if (e && e->queued > floor && d->clean_start && hook_was_saved(d, h))
                floor = e->queued;
            h->ws[li].last_acked = acked;
            h->ws[li].floor = floor;
        }
        s->written = 1;
        s->written_seq = cp->seq;
        log_info("msg=\"checkpoint loaded\" shard=%d seq=%" PRIu64, s->id, cp->seq);
    }
    free(cp);
}

static int open_spool(struct br_delivery *d, struct hook *h)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/%s", d->dir_spool, h->key);
    size_t max_body = h->cfg->max_batch_bytes > d->cfg->max_payload_bytes + 4096
                          ? h->cfg->max_batch_bytes
                          : d->cfg->max_payload_bytes + 4096;
    size_t seg = spool_segment_bytes(d->cfg);
    int adopt = d->clean_start && hook_was_saved(d, h);
    if (!adopt)
        set_aside_stale_spool(d, h, dir);
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

int br_delivery_prepare(struct br_delivery *d, int total, const int *shard_ids, int n)
{
    if (d->prepared || total < 1 || n < 0 || n > total)
        return SH_EINVAL;
    d->total = total;
    d->n_local = n;
    d->shards = calloc(n ? (size_t)n : 1, sizeof(*d->shards));
    for (int i = 0; d->shards && i < n; i++) /* before any return: br_delivery_free closes them */
        br_ckpt_files_init(&d->shards[i].files, shard_ids[i]);
    d->local_of = malloc((size_t)total * sizeof(*d->local_of));
    if (!d->shards || !d->local_of)
        return SH_ENOMEM;
    for (int i = 0; i < total; i++)
        d->local_of[i] = -1;
    for (int i = 0; i < n; i++) {
        if (shard_ids[i] < 0 || shard_ids[i] >= total || d->local_of[shard_ids[i]] >= 0)
            return SH_EINVAL;
        d->shards[i].id = shard_ids[i];
        d->local_of[shard_ids[i]] = i;
    }
    for (size_t i = 0; i < d->n_hooks; i++) {
        struct hook *h = &d->hooks[i];
        int lanes = h->cfg->max_in_flight < n ? h->cfg->max_in_flight : n;
        h->n_lanes = lanes < 1 ? 1 : lanes;
        h->open = calloc((size_t)h->n_lanes, sizeof(*h->open));
        h->mark = calloc((size_t)n + 1, sizeof(*h->mark));
        h->ws = calloc(n ? (size_t)n : 1, sizeof(*h->ws));
        if (!h->open || !h->mark || !h->ws)
            return SH_ENOMEM;
    }
    /* checkpoints first: a saved batch is pending only for the session that resumes */
    d->clean_start = d->cfg->spool_max_bytes && read_marker(d);
    for (int i = 0; i < n; i++)
        load_checkpoint(d, &d->shards[i]);
    for (size_t i = 0; d->cfg->spool_max_bytes && i < d->n_hooks; i++) {
        int rc = open_spool(d, &d->hooks[i]);
        if (rc)
            return rc;
    }
    {
        /* adopted now: a crash from here on must not adopt it again */
        char path[PATH_MAX];
        marker_path(d, path, sizeof(path));
        if (unlink(path) && errno != ENOENT)
            log_error("msg=\"cannot remove the spool marker\" file=\"%s\" error=\"%s\"", path,
                      strerror(errno));
        fsync_dir(d->dir_spool);
    }
    d->prepared = 1;
    return SH_OK;
}

int br_delivery_resume_info(const struct br_delivery *d, int shard_id, char *session_id,
                            size_t sid_cap, char *resume_url, size_t url_cap, uint64_t *seq)
{
    if (!d->prepared || shard_id < 0 || shard_id >= d->total || d->local_of[shard_id] < 0)
        return SH_ENOTFOUND;
    const struct shard *s = &d->shards[d->local_of[shard_id]];
    if (!s->from_checkpoint)
        return SH_ENOTFOUND;
    snprintf(session_id, sid_cap, "%s", s->session_id);
    snprintf(resume_url, url_cap, "%s", s->resume_url);
    *seq = s->ckpt_seq;
    return SH_OK;
}

/* ---- queues: memory, spool, overflow ----------------------------------------------------- */

static int spool_has(const struct hook *h)
{
    if (!h->spool)
        return 0;
    struct br_spool_stats st;
    br_spool_stats(h->spool, &st);
    return st.batches > 0;
}

/* Move overflow batches into the spool while it takes them (keeps their order). */
static void flush_overflow(struct hook *h)
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
static void enqueue(struct hook *h, struct br_batch *b)
{
    b->state = B_QUEUED;
    flush_overflow(h);
    if (h->over_head) {
        list_append(&h->over_head, &h->over_tail, b);
        h->n_over++;
        h->mem_bytes += b->body.len;
        return;
    }
    int spill = h->spool && (spool_has(h) ||
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
        if (spool_has(h)) {
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
static void refill(struct hook *h)
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

static void close_lane(struct hook *h, int lane)
{
    struct br_batch *b = h->open[lane];
    if (!b)
        return;
    h->open[lane] = NULL;
    br_batch_close(b);
    b->seq = h->next_seq++;
    enqueue(h, b);
}

/* ---- routing ------------------------------------------------------------------------------ */

/* READY: a new session for the shard; its events start a new generation. */
static void on_ready(struct br_delivery *d, struct shard *s, const char *ev, size_t len)
{
    cJSON *root = cJSON_ParseWithLength(ev, len);
    const cJSON *dd = cJSON_GetObjectItemCaseSensitive(root, "d");
    const cJSON *sid = cJSON_GetObjectItemCaseSensitive(dd, "session_id");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(dd, "resume_gateway_url");
    int li = (int)(s - d->shards);
    if (s->have_session && cJSON_IsString(sid) && !strcmp(sid->valuestring, s->session_id)) {
        cJSON_Delete(root); /* replayed by a RESUME from 0: the same session goes on */
        return;
    }
    uint32_t old = s->gen;
    s->gen = session_gen(cJSON_IsString(sid) ? sid->valuestring : "", old);
    s->seen = 0;
    s->from_checkpoint = 0;
    for (size_t i = 0; i < d->n_hooks; i++)
        d->hooks[i].ws[li] = (struct wsh){0, 0, 0, 0};
    if (cJSON_IsString(sid) && *sid->valuestring &&
        strlen(sid->valuestring) < sizeof(s->session_id)) {
        snprintf(s->session_id, sizeof(s->session_id), "%s", sid->valuestring);
        snprintf(s->resume_url, sizeof(s->resume_url), "%s",
                 cJSON_IsString(url) && strlen(url->valuestring) < sizeof(s->resume_url)
                     ? url->valuestring
                     : "");
        s->have_session = 1;
        d->acked_in_pass = 1; /* a crash from now on resumes this session */
    } else {
        s->have_session = 0;
        log_warn("msg=\"READY without a usable session_id; no checkpoint for this session\" "
                 "shard=%d",
                 s->id);
    }
    s->dirty = d->any_dirty = 1;
    cJSON_Delete(root);
}

static void route_event(struct br_delivery *d, const struct gw_chunk *c, const struct gw_event *e,
                        uint64_t now)
{
    const char *ev = c->data.data + e->off;
    const char *t = c->data.data + e->t_off;
    int li = e->shard < d->total ? d->local_of[e->shard] : -1;
    if (li < 0) {
        static struct sh_log_limit lim;
        log_error_limited(&lim, "msg=\"event of a shard not run here; dropped\" shard=%u s=%" PRIu64,
                          e->shard, e->s);
        d->undelivered++;
        return;
    }
    struct shard *s = &d->shards[li];
    if (is_name(t, e->t_len, "READY"))
        on_ready(d, s, ev, e->len);
    if (e->s > s->seen)
        s->seen = e->s;
    s->dirty = d->any_dirty = 1;
    const struct cfg_config *cfg = d->cfg;
    int always = br_route_always(t, e->t_len);
    if (!always && br_route_match_any(cfg->disable_events, cfg->n_disable_events, t, e->t_len))
        return;
    for (size_t i = 0; i < d->n_hooks; i++) {
        struct hook *h = &d->hooks[i];
        const struct cfg_webhook *w = h->cfg;
        if (!always && !br_route_match_any(w->events, w->n_events, t, e->t_len))
            continue;
        struct wsh *ws = &h->ws[li];
        if (e->s && e->s <= ws->floor) { /* s 0: "s":null, nothing to compare */
            sh_series_add(h->m.dups, 1);
            continue;
        }
        int lane = li % h->n_lanes;
        struct br_batch *b = h->open[lane];
        if (b && !br_batch_fits(b, e->len)) {
            close_lane(h, lane);
            b = NULL;
        }
        if (!b) {
            size_t cap = w->max_batch_bytes;
            if (BR_BATCH_BODY_FOR(e->len) > cap) /* a single larger event travels alone */
                cap = BR_BATCH_BODY_FOR(e->len);
            int rc = br_batch_new(cap, &b);
            if (rc) {
                static struct sh_log_limit lim;
                log_error_limited(&lim,
                                  "msg=\"cannot open a batch; event not delivered\" webhook=%zu "
                                  "shard=%u s=%" PRIu64 " error=\"%s\"",
                                  i, e->shard, e->s, sh_strerror(rc));
                d->undelivered++;
                continue;
            }
            h->open[lane] = b;
        }
        int fresh = 0;
        int rc = br_batch_add(b, ev, e->len, (uint32_t)e->shard, s->gen, e->s,
                              e->recv_ms ? e->recv_ms : now, &fresh);
        if (rc) {
            static struct sh_log_limit lim;
            log_error_limited(&lim,
                              "msg=\"cannot add an event to a batch; event not delivered\" "
                              "webhook=%zu shard=%u s=%" PRIu64 " bytes=%u error=\"%s\"",
                              i, e->shard, e->s, e->len, sh_strerror(rc));
            d->undelivered++;
            continue;
        }
        if (e->s > ws->routed_max)
            ws->routed_max = e->s;
        if (fresh) {
            /* W's first unacknowledged batch of X: everything of X before it is settled */
            if (!ws->pending && e->s && e->s - 1 > ws->last_acked)
                ws->last_acked = e->s - 1;
            ws->pending++;
        }
        if ((int)b->n_events >= w->max_batch_events)
            close_lane(h, lane);
    }
}

/* Close open batches whose delay passed (all of them when flushing); returns the next due time. */
static uint64_t close_due(struct br_delivery *d, uint64_t now, int flush)
{
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < d->n_hooks; i++) {
        struct hook *h = &d->hooks[i];
        for (int l = 0; l < h->n_lanes; l++) {
            struct br_batch *b = h->open[l];
            if (!b)
                continue;
            uint64_t due = b->first_ms + (uint64_t)h->cfg->max_batch_delay_ms;
            if (flush || due <= now)
                close_lane(h, l);
            else if (due < next)
                next = due;
        }
    }
    return next;
}

/* ---- requests ----------------------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct req *r = ud;
    size_t len = size * n, room = sizeof(r->resp) - r->resp_len;
    size_t take = len < room ? len : room;
    memcpy(r->resp + r->resp_len, p, take);
    r->resp_len += take;
    if (take < len)
        r->resp_truncated = 1;
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct req *r = ud;
    size_t len = size * n;
    static const char name[] = "retry-after:";
    if (len > sizeof(name) - 1 && len < 256 && !strncasecmp(p, name, sizeof(name) - 1)) {
        char v[256];
        memcpy(v, p + sizeof(name) - 1, len - (sizeof(name) - 1));
        v[len - (sizeof(name) - 1)] = '\0';
        uint64_t ms;
        if (!br_retry_after_parse(v, sh_wall_ms(), &ms))
            r->retry_after_ms = (int64_t)ms;
    }
    return len;
}

static struct req *req_get(struct br_delivery *d)
{
    struct req *r = d->free_reqs;
    if (r) {
        d->free_reqs = r->next;
    } else {
        r = calloc(1, sizeof(*r));
        if (!r)
            return NULL;
        r->easy = curl_easy_init();
        if (!r->easy) {
            free(r);
            return NULL;
        }
    }
    r->next = NULL;
    r->resp_len = 0;
    r->resp_truncated = 0;
    r->retry_after_ms = -1;
    r->err[0] = '\0';
    return r;
}

static void req_put(struct br_delivery *d, struct req *r)
{
    curl_slist_free_all(r->headers);
    r->headers = NULL;
    r->b = NULL;
    r->h = NULL;
    r->next = d->free_reqs;
    d->free_reqs = r;
}

static struct curl_slist *add_header(struct curl_slist *list, int *ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static struct curl_slist *add_header(struct curl_slist *list, int *ok, const char *fmt, ...)
{
    char line[HEADER_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line)) {
        *ok = 0;
        return list;
    }
    struct curl_slist *l = curl_slist_append(list, line);
    if (!l) {
        *ok = 0;
        return list;
    }
    return l;
}

/* Start one attempt of b. Returns 0, or a negative code (b stays queued). */
static int start_request(struct br_delivery *d, struct hook *h, struct br_batch *b, uint64_t now)
{
    const struct cfg_webhook *w = h->cfg;
    const struct br_hookauth *a = br_hookauth_current(d->auth, h->idx); /* reloads land here */
    struct req *r = req_get(d);
    if (!r)
        return SH_ENOMEM;
    int64_t ts = (int64_t)(sh_wall_ms() / 1000);
    int ok = 1;
    struct curl_slist *hl = NULL;
    hl = add_header(hl, &ok, "Content-Type: application/json");
    hl = add_header(hl, &ok, "User-Agent: shardhook/0.1");
    hl = add_header(hl, &ok, "Expect:");
    hl = add_header(hl, &ok, "webhook-id: %s", b->msg_id);
    hl = add_header(hl, &ok, "webhook-timestamp: %" PRId64, ts);
    if (a->n_secrets) {
        char sig[SIG_MAX];
        int rc = br_sign(a->secrets, a->n_secrets, b->msg_id, ts, b->body.data, b->body.len, sig,
                         sizeof(sig));
        if (rc) {
            static struct sh_log_limit lim;
            log_error_limited(&lim, "msg=\"cannot sign a batch\" webhook=%zu error=\"%s\"", h->idx,
                              sh_strerror(rc));
            ok = 0;
        } else {
            hl = add_header(hl, &ok, "webhook-signature: %s", sig);
        }
    }
    for (size_t i = 0; i < a->n_headers; i++)
        hl = add_header(hl, &ok, "%s: %s", a->headers[i].name, a->headers[i].value);
    r->headers = hl;
    if (!ok) {
        req_put(d, r);
        return SH_ENOMEM;
    }
    CURL *c = r->easy;
    curl_easy_setopt(c, CURLOPT_URL, w->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, b->body.data);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)b->body.len);
    /*
     * libcurl copies a body through its upload buffer, one buffer per turn of the multi loop:
     * with the default 64 KiB a 4 MiB GUILD_CREATE took some 60 turns and twice the time on
     * loopback, while the shard's later batches waited for it. 2 MiB is libcurl's maximum; it
     * is allocated once per handle and only touched as far as the bodies it carried.
     */
    curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 2L << 20);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)w->timeout_ms);
    curl_easy_setopt(
        c, CURLOPT_CONNECTTIMEOUT_MS,
        (long)(w->timeout_ms < CONNECT_TIMEOUT_MS ? w->timeout_ms : CONNECT_TIMEOUT_MS));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->err);
    curl_easy_setopt(c, CURLOPT_PRIVATE, r);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    r->h = h;
    r->b = b;
    CURLMcode mc = curl_multi_add_handle(d->multi, c);
    if (mc != CURLM_OK) {
        static struct sh_log_limit lim;
        log_error_limited(&lim, "msg=\"cannot start a webhook request\" webhook=%zu error=\"%s\"",
                          h->idx, curl_multi_strerror(mc));
        req_put(d, r);
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
static void resolve(struct br_delivery *d, struct hook *h, struct br_batch *b)
{
    for (uint32_t i = 0; i < b->n_shards; i++) {
        const struct br_batch_shard *e = &b->shards[i];
        int li = e->shard < (uint32_t)d->total ? d->local_of[e->shard] : -1;
        if (li < 0 || e->gen != d->shards[li].gen)
            continue;
        struct wsh *ws = &h->ws[li];
        if (ws->pending)
            ws->pending--;
        if (e->max_s > ws->last_acked)
            ws->last_acked = e->max_s;
        d->shards[li].dirty = d->shards[li].dirty_ack = d->any_dirty = 1;
    }
    list_remove(&h->head, &h->tail, b);
    h->n_mem--;
    h->mem_bytes -= b->body.len;
    d->acked_in_pass = 1;
    br_batch_free(b);
}

/* Its dead letter could not be written: keep b (it holds its shards' order) and try again. */
static void keep_for_dead_letter(struct br_batch *b, const struct req *r, long status,
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
static int retry_dead_letter(struct br_delivery *d, struct hook *h, struct br_batch *b,
                             uint64_t now)
{
    if (!write_dead_letter(d, h, b, "refused", b->dead_status, b->dead_resp, b->dead_resp_len,
                           b->dead_resp_truncated)) {
        log_info("msg=\"dead letter written after failed attempts\" webhook=%zu webhook_id=%s "
                 "events=%u tries=%u",
                 h->idx, b->msg_id, b->n_events, b->dead_tries + 1);
        resolve(d, h, b);
        return 1;
    }
    b->next_try_ms = now + sh_backoff_ceiling_ms(b->dead_tries, DEAD_RETRY_BASE_MS,
                                                 DEAD_RETRY_MAX_MS);
    b->dead_tries++;
    return 0;
}

static void finish_request(struct br_delivery *d, CURL *easy, CURLcode result, uint64_t now)
{
    struct req *r = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
    curl_multi_remove_handle(d->multi, easy);
    if (!r || !r->b)
        return;
    struct hook *h = r->h;
    struct br_batch *b = r->b;
    long status = 0;
    if (result == CURLE_OK)
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    h->in_flight--;
    b->req = NULL;
    b->attempts++;
    sh_series_observe(h->m.req_seconds, (double)(now - b->started_ms) / 1000.0);
    enum br_outcome o = br_classify(status);
    if (o == BR_ACK) {
        sh_series_add(h->m.req_ok, 1);
        sh_series_add(h->m.events, b->n_events);
        sh_series_add(h->m.batches_acked, 1);
        if (b->first_ms && now >= b->first_ms)
            sh_series_observe(h->m.lag, (double)(now - b->first_ms) / 1000.0);
        log_debug("msg=\"batch delivered\" webhook=%zu webhook_id=%s events=%u bytes=%zu "
                  "status=%ld attempts=%u",
                  h->idx, b->msg_id, b->n_events, b->body.len, status, b->attempts);
        resolve(d, h, b);
    } else if (o == BR_RETRY) {
        uint64_t base = (uint64_t)h->cfg->retry_base_ms, cap = (uint64_t)h->cfg->retry_max_ms;
        if (cap < base)
            cap = base;
        uint64_t wait = br_retry_delay_ms(b->attempts - 1, base, cap,
                                          status ? r->retry_after_ms : -1,
                                          (uint64_t)h->cfg->retry_after_max_ms);
        b->state = B_WAIT;
        b->next_try_ms = now + wait;
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
        if (!write_dead_letter(d, h, b, "refused", status, r->resp, r->resp_len,
                               r->resp_truncated))
            resolve(d, h, b);
        else
            keep_for_dead_letter(b, r, status, now);
    }
    req_put(d, r);
}

/* Start every batch that may go now; returns the earliest retry time still ahead. */
static uint64_t schedule(struct br_delivery *d, uint64_t now)
{
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < d->n_hooks; i++) {
        struct hook *h = &d->hooks[i];
        if (!h->head || h->in_flight >= h->cfg->max_in_flight)
            continue;
        if (++h->epoch == 0) { /* wrapped: clear the marks once */
            memset(h->mark, 0, ((size_t)d->n_local + 1) * sizeof(*h->mark));
            h->epoch = 1;
        }
        int blocked_count = 0;
        for (struct br_batch *b = h->head, *nx; b; b = nx) {
            nx = b->next;
            int blocked = 0;
            for (uint32_t k = 0; k < b->n_shards && !blocked; k++) {
                uint32_t sh = b->shards[k].shard;
                int li = sh < (uint32_t)d->total ? d->local_of[sh] : -1;
                blocked = h->mark[li < 0 ? d->n_local : li] == h->epoch;
            }
            if (!blocked) {
                if (b->state == B_DEAD_WAIT && b->next_try_ms <= now) {
                    if (retry_dead_letter(d, h, b, now))
                        continue; /* on disk and resolved: b is gone */
                    if (b->next_try_ms < next)
                        next = b->next_try_ms;
                } else if (b->state == B_QUEUED || (b->state == B_WAIT && b->next_try_ms <= now)) {
                    if (start_request(d, h, b, now))
                        return now + 100; /* out of memory or handles: try again soon */
                } else if ((b->state == B_WAIT || b->state == B_DEAD_WAIT) &&
                           b->next_try_ms < next) {
                    next = b->next_try_ms;
                }
            }
            for (uint32_t k = 0; k < b->n_shards; k++) {
                uint32_t sh = b->shards[k].shard;
                int li = sh < (uint32_t)d->total ? d->local_of[sh] : -1;
                uint32_t *m = &h->mark[li < 0 ? d->n_local : li];
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

/* ---- checkpoints -------------------------------------------------------------------------- */

static int write_checkpoint(struct br_delivery *d, struct shard *s, int sync, int force)
{
    if (!s->have_session)
        return SH_OK;
    struct br_checkpoint *cp = calloc(1, sizeof(*cp));
    if (!cp)
        return SH_ENOMEM;
    int li = (int)(s - d->shards);
    cp->shard = s->id;
    cp->total = d->total;
    snprintf(cp->session_id, sizeof(cp->session_id), "%s", s->session_id);
    snprintf(cp->resume_url, sizeof(cp->resume_url), "%s", s->resume_url);
    uint64_t seq = s->seen, sum = 0;
    for (size_t i = 0; i < d->n_hooks && i < BR_CKPT_MAX_HOOKS; i++) {
        const struct wsh *ws = &d->hooks[i].ws[li];
        uint64_t a = ws->pending ? ws->last_acked : (s->seen > ws->floor ? s->seen : ws->floor);
        if (i == 0 || a < seq)
            seq = a;
        snprintf(cp->hooks[i].key, sizeof(cp->hooks[i].key), "%s", d->hooks[i].key);
        cp->hooks[i].acked = a;
        /* saved by this stop: the next start sends these from the spool, not from the replay */
        cp->hooks[i].queued = d->hooks[i].saved && ws->pending ? ws->routed_max : 0;
        cp->n_hooks++;
        sum = sum * 1000003u + a;
    }
    cp->seq = seq;
    cp->clean = d->stopped;
    int rc = SH_OK;
    /* seq 0 too: nothing acknowledged yet, a RESUME from 0 still replays the whole session */
    int changed = !s->written || s->written_seq != seq || s->written_sum != sum ||
                  s->written_gen != s->gen;
    /*
     * Between the fsync ticks, a change is one line appended to the journal; the tick, the
     * first write of this process and a graceful stop write the snapshot, which empties it.
     */
    int snapshot = force || !s->snapshotted || (sync && (changed || s->files.journal_bytes));
    if (snapshot || changed) {
        rc = snapshot ? SH_EAGAIN : br_checkpoint_append(d->dir_ckpt, &s->files, cp);
        if (rc)
            rc = br_checkpoint_write(d->dir_ckpt, &s->files, cp, sync);
        if (!rc && snapshot)
            s->snapshotted = 1;
        if (rc) {
            sh_series_add(d->m_ckpt_errors, 1);
            log_error_limited(&s->lim_ckpt,
                              "msg=\"cannot write a checkpoint\" shard=%d dir=\"%s\" error=\"%s\"",
                              s->id, d->dir_ckpt, sh_strerror(rc));
        } else {
            sh_series_add(d->m_ckpt_writes, 1);
            s->written = 1;
            s->written_seq = seq;
            s->written_sum = sum;
            s->written_gen = s->gen;
        }
    }
    free(cp);
    return rc;
}

static void write_checkpoints(struct br_delivery *d, uint64_t now, int final)
{
    int sync = final || now - d->last_fsync_ms >= CKPT_FSYNC_MS;
    int wrote = 0;
    for (int i = 0; i < d->n_local; i++) {
        struct shard *s = &d->shards[i];
        if (!final && !s->dirty && !(sync && s->files.journal_bytes))
            continue;
        if (!write_checkpoint(d, s, sync, final))
            s->dirty = s->dirty_ack = 0;
        wrote = 1;
    }
    d->last_ckpt_ms = now;
    d->any_dirty = d->any_journal = 0;
    for (int i = 0; i < d->n_local; i++) {
        d->any_dirty |= d->shards[i].dirty; /* a write failed: try again later */
        d->any_journal |= d->shards[i].files.journal_bytes > 0;
    }
    if (sync && wrote)
        d->last_fsync_ms = now;
}

/* ---- flow control and gauges -------------------------------------------------------------- */

/* What fills a webhook's share: its spool, or its memory queue when there is no spool. */
static int share_over(struct hook *h)
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

static int batch_blocked(struct br_delivery *d, struct hook *h, const struct br_batch *b, int mark)
{
    int blocked = 0;
    for (uint32_t k = 0; k < b->n_shards; k++) {
        uint32_t sh = b->shards[k].shard;
        int li = sh < (uint32_t)d->total ? d->local_of[sh] : -1;
        uint32_t *m = &h->mark[li < 0 ? d->n_local : li];
        blocked |= *m == h->epoch;
        if (mark)
            *m = h->epoch;
    }
    return blocked;
}

/* The spool's head batch into memory (past the memory limit: it is shed at once). */
static struct br_batch *pull_spooled(struct hook *h)
{
    struct br_batch *b = NULL;
    uint64_t skipped = 0;
    int adopted = 0, rc;
    while ((rc = br_spool_pop(h->spool, &b, &skipped, &adopted)) == SH_ECORRUPT)
        ;
    if (rc)
        return NULL;
    b->state = B_QUEUED;
    list_append(&h->head, &h->tail, b);
    h->n_mem++;
    h->mem_bytes += b->body.len;
    return b;
}

/*
 * when_full "dead_letter": while the webhook's share is full, its oldest batches that may be
 * settled (not in flight, no earlier unsettled batch of the same shard) go to the dead-letter
 * folder and count as settled, so the gateway keeps reading and other webhooks go on. A dead
 * letter that cannot be written stops this: the webhook then pauses the gateway like `pause`.
 */
static void shed_full_share(struct br_delivery *d, struct hook *h, uint64_t now)
{
    if (h->shed_failed && now < h->shed_next_ms)
        return;
    h->shed_failed = 0;
    if (!h->full_dead_letter || !share_over(h))
        return;
    if (++h->epoch == 0) {
        memset(h->mark, 0, ((size_t)d->n_local + 1) * sizeof(*h->mark));
        h->epoch = 1;
    }
    uint64_t batches = 0, events = 0;
    struct br_batch *b = h->head;
    for (;;) {
        if (!b && (!h->spool || h->mem_bytes > h->cfg->max_memory_bytes ||
                   !(b = pull_spooled(h))))
            break;
        struct br_batch *nx = b->next;
        int blocked = batch_blocked(d, h, b, 0);
        if (!blocked && (b->state == B_QUEUED || b->state == B_WAIT)) {
            if (write_dead_letter(d, h, b, "spool_full", 0, NULL, 0, 0)) {
                h->shed_failed = 1;
                h->shed_next_ms = now + SHED_RETRY_MS;
                break;
            }
            batches++;
            events += b->n_events;
            resolve(d, h, b);
            if (!share_over(h))
                break;
        } else {
            batch_blocked(d, h, b, 1);
        }
        b = nx;
    }
    if (batches) {
        sh_series_add(h->m.dead_full, (double)batches);
        log_warn_limited(&h->lim_shed,
                         "msg=\"spool share full (when_full dead_letter); oldest batches "
                         "dead-lettered\" webhook=%zu batches=%" PRIu64 " events=%" PRIu64
                         " spool_max_bytes=%" PRIu64,
                         h->idx, batches, events, h->spool_share);
    }
}

static void update_flow(struct br_delivery *d, size_t inq)
{
    uint64_t spooled = 0;
    int over = 0;
    for (size_t i = 0; i < d->n_hooks; i++) {
        struct hook *h = &d->hooks[i];
        if (h->spool) {
            struct br_spool_stats st;
            br_spool_stats(h->spool, &st);
            spooled += st.bytes;
        }
        if (h->mem_bytes <= h->cfg->max_memory_bytes && !h->over_head)
            h->spool_error_logged = 0; /* back under the limit: the next spill tries again */
        /* memory past its limit: the spool cannot take more, or there is none (when_full
           "dead_letter" without a spool sheds memory instead) */
        if (h->over_head ||
            (h->mem_bytes > h->cfg->max_memory_bytes &&
             (h->spool ? h->spool_error_logged : !h->full_dead_letter)))
            over = 1;
        if (h->full_dead_letter) {
            if (h->shedding || h->shed_failed)
                over = 1; /* nothing could be shed yet (in flight), or a dead letter failed */
        } else if (h->spool && h->spool_share) { /* its share of the spool (7/8 to read again) */
            struct br_spool_stats st;
            br_spool_stats(h->spool, &st);
            if (st.bytes >= (d->paused ? h->spool_share - h->spool_share / 8 : h->spool_share))
                over = 1;
        }
    }
    uint64_t max = d->cfg->spool_max_bytes;
    int want;
    if (d->paused) /* hysteresis: read again once the spool is below 7/8 of its limit */
        want = over || inq > INQ_PAUSE_BYTES / 2 || (max && spooled >= max - max / 8);
    else
        want = over || inq > INQ_PAUSE_BYTES || (max && spooled >= max);
    if (want == d->paused)
        return;
    d->paused = want;
    sh_series_set(d->m_paused, want);
    log_info("msg=\"%s\" spool_bytes=%" PRIu64 " spool_max_bytes=%" PRIu64 " inbound_bytes=%zu",
             want ? "delivery is behind; asking the gateway to stop reading"
                  : "delivery caught up; the gateway reads again",
             spooled, max, inq);
    if (d->flow)
        d->flow(d->flow_ud, want);
}

static void update_gauges(struct br_delivery *d, size_t inq)
{
    for (size_t i = 0; i < d->n_hooks; i++) {
        struct hook *h = &d->hooks[i];
        sh_series_set(h->m.queue_bytes, (double)h->mem_bytes);
        sh_series_set(h->m.queue_batches, (double)(h->n_mem + h->n_over));
        struct br_spool_stats st = {0};
        if (h->spool)
            br_spool_stats(h->spool, &st);
        sh_series_set(h->m.spool_bytes, (double)st.bytes);
        sh_series_set(h->m.spool_batches, (double)st.batches);
    }
    sh_series_set(d->m_inq, (double)inq);
}

/* ---- the thread --------------------------------------------------------------------------- */

static int idle(const struct br_delivery *d)
{
    for (size_t i = 0; i < d->n_hooks; i++) {
        const struct hook *h = &d->hooks[i];
        if (h->head || h->over_head || spool_has(h))
            return 0;
        for (int l = 0; l < h->n_lanes; l++)
            if (h->open[l])
                return 0;
    }
    return 1;
}

static uint64_t spooled_events(const struct hook *h)
{
    struct br_spool_stats st = {0};
    if (h->spool)
        br_spool_stats(h->spool, &st);
    return st.events;
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
        const struct hook *h = &d->hooks[i];
        for (int l = 0; l < h->n_lanes; l++) {
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

static void *run(void *arg)
{
    struct br_delivery *d = arg;
    for (;;) {
        pthread_mutex_lock(&d->lock);
        struct sh_qnode *chunks = sh_queue_take(&d->inq);
        size_t inq = d->inq_bytes;
        d->inq_bytes = d->inq_events = 0;
        d->lazy = 0;
        int stopping = d->stopping;
        uint64_t deadline = d->deadline_ms;
        pthread_mutex_unlock(&d->lock);

        uint64_t now = sh_now_ms();
        d->acked_in_pass = 0;
        for (struct sh_qnode *n = chunks, *nx; n; n = nx) {
            nx = n->next;
            struct gw_chunk *c = SH_QUEUE_ITEM(n, struct gw_chunk, node);
            for (size_t i = 0; i < c->n; i++)
                route_event(d, c, &c->ev[i], now);
            gw_chunk_free(c);
        }
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
            refill(&d->hooks[i]);

        /* acknowledgements reach the checkpoint before the next request of the same shards */
        if (d->acked_in_pass || now - d->last_ckpt_ms >= CKPT_LAZY_MS)
            write_checkpoints(d, now, 0);
        uint64_t retry_at = schedule(d, now);
        if (retry_at < wake)
            wake = retry_at;
        if (d->any_dirty && d->last_ckpt_ms + CKPT_LAZY_MS < wake)
            wake = d->last_ckpt_ms + CKPT_LAZY_MS;
        if (d->any_journal && d->last_fsync_ms + CKPT_FSYNC_MS < wake)
            wake = d->last_fsync_ms + CKPT_FSYNC_MS;
        for (size_t i = 0; i < d->n_hooks; i++)
            shed_full_share(d, &d->hooks[i], now);
        update_flow(d, inq);
        if (now - d->last_gauge_ms >= GAUGE_MS) {
            update_gauges(d, inq);
            d->last_gauge_ms = now;
        }

        if (stopping && ((idle(d) && !running) || now >= deadline)) {
            pthread_mutex_lock(&d->lock);
            int more = !sh_queue_empty(&d->inq); /* a last chunk pushed while this pass ran */
            pthread_mutex_unlock(&d->lock);
            if (!more || now >= deadline)
                break;
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
        struct hook *h = &d->hooks[i];
        for (struct br_batch *b = h->head; b; b = b->next) {
            if (b->state != B_INFLIGHT || !b->req)
                continue;
            struct req *r = b->req;
            curl_multi_remove_handle(d->multi, r->easy);
            h->in_flight--;
            b->req = NULL;
            b->state = B_QUEUED;
            req_put(d, r);
        }
    }
    uint64_t now = sh_now_ms();
    /* arrived after the last pass */
    for (struct sh_qnode *n = sh_queue_take(&d->inq), *nx; n; n = nx) {
        nx = n->next;
        struct gw_chunk *c = SH_QUEUE_ITEM(n, struct gw_chunk, node);
        for (size_t i = 0; d->prepared && i < c->n; i++)
            route_event(d, c, &c->ev[i], now);
        gw_chunk_free(c);
    }
    close_due(d, now, 1);
}

/*
 * A graceful stop with batches left: each webhook's memory queue goes into a spool segment
 * before what its spool holds, overflow batches after it, everything fsync'ed. Returns 1 when
 * some webhook was saved; h->saved says which.
 */
static int save_unsent(struct br_delivery *d)
{
    int any = 0;
    for (size_t i = 0; i < d->n_hooks; i++) {
        struct hook *h = &d->hooks[i];
        if (!h->spool || (!h->head && !h->over_head && !spool_has(h)))
            continue;
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
            continue;
        }
        free_list(h->head);
        free_list(h->over_head);
        h->head = h->tail = h->over_head = h->over_tail = NULL;
        h->n_mem = h->n_over = 0;
        h->mem_bytes = 0;
        h->saved = any = 1;
        struct br_spool_stats st;
        br_spool_stats(h->spool, &st);
        log_info("msg=\"unsent batches saved in the spool; the next start sends them first\" "
                 "webhook=%zu batches=%" PRIu64 " events=%" PRIu64,
                 h->idx, st.batches, st.events);
    }
    return any;
}

/* Written last, after the spools and the checkpoints: the saved spools are consistent. */
static void write_marker(struct br_delivery *d)
{
    char path[PATH_MAX - 8];
    marker_path(d, path, sizeof(path));
    struct sh_buf b;
    sh_buf_init(&b, MARKER_MAX);
    int rc = sh_buf_printf(&b, "{\"version\":1,\"shard_count\":%d,\"webhooks\":[", d->total);
    int first = 1;
    for (size_t i = 0; !rc && i < d->n_hooks; i++)
        if (d->hooks[i].saved) {
            rc = sh_buf_printf(&b, "%s\"%s\"", first ? "" : ",", d->hooks[i].key);
            first = 0;
        }
    rc = rc ? rc : sh_buf_append_str(&b, "]}\n");
    rc = rc ? rc : sh_write_file_durable(path, b.data, b.len);
    sh_buf_free(&b);
    if (rc == SH_EUNSYNCED) {
        log_warn("msg=\"cannot fsync a folder\" dir=\"%s\" error=\"%s\"", d->dir_spool,
                 strerror(errno));
    } else if (rc) {
        log_error("msg=\"cannot write the spool marker; the next start sets the spool aside and "
                  "relies on Discord's replay\" file=\"%s\"",
                  path);
    }
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
        write_checkpoints(d, sh_now_ms(), 1);
    if (saved)
        write_marker(d);
    uint64_t left = 0;
    for (size_t i = 0; i < d->n_hooks; i++)
        if (!d->hooks[i].saved) /* a saved webhook's spool holds all it had */
            left += queued_events(d->hooks[i].head) + queued_events(d->hooks[i].over_head) +
                    spooled_events(&d->hooks[i]);
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
        struct hook *h = &d->hooks[i];
        for (struct br_batch *b = h->head; b; b = b->next)
            if (b->req) {
                struct req *r = b->req;
                curl_multi_remove_handle(d->multi, r->easy);
                req_put(d, r);
            }
        free_list(h->head);
        free_list(h->over_head);
        for (int l = 0; h->open && l < h->n_lanes; l++)
            br_batch_free(h->open[l]);
        free(h->open);
        free(h->mark);
        free(h->ws);
        br_spool_close(h->spool);
    }
    for (struct req *r = d->free_reqs, *nx; r; r = nx) {
        nx = r->next;
        curl_easy_cleanup(r->easy);
        free(r);
    }
    for (struct sh_qnode *n = sh_queue_take(&d->inq), *nx; n; n = nx) {
        nx = n->next;
        gw_chunk_free(SH_QUEUE_ITEM(n, struct gw_chunk, node));
    }
    sh_queue_destroy(&d->inq);
    if (d->multi)
        curl_multi_cleanup(d->multi);
    free(d->hooks);
    for (int i = 0; d->shards && i < d->n_local; i++)
        br_ckpt_files_close(d->dir_ckpt, &d->shards[i].files);
    free(d->shards);
    free(d->local_of);
    br_hookauth_free(d->auth);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

int br_delivery_update_auth(struct br_delivery *d, size_t webhook, const struct cfg_webhook *w)
{
    return br_hookauth_update(d->auth, webhook, w);
}
