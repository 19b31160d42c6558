/*
 * gateway/gateway.c: the gateway room's loop. Owns the libwebsockets context that
 * serves every shard of the process, discovery through /gateway/bot, asking the
 * gw_identify interface for identify slots and the session budget (and holding shards
 * while the budget is spent or at its reserve), the per-pass event chunk handed to the sink,
 * the command queue (sends, reconnects, and in cluster mode which shards are held and the lease
 * deadline), status snapshots of the held shards, graceful stop and fatal exit.
 *
 * Everything runs on the gateway thread except the functions gateway.h marks "any
 * thread": gw_gateway_stop, the commands (send, withdraw, reconnect, pause) that post to
 * the queue and wake the loop, and the snapshot readers that copy under snap_lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/gateway.h"
#include "gateway/shard.h"
#include "lib/clock.h"
#include "lib/discord.h"
#include "lib/errors.h"
#include "lib/log.h"

#define STOP_DEADLINE_MS 3000 /* close handshakes that take longer are cut */
#define CHUNK_SLACK 4096      /* room for the envelope around the largest payload */
#define TICK_MS 250           /* snapshot publish period */
/*
 * A service pass that produced events pauses before the next one, so that messages arriving
 * close together share one poll, one read per socket and one hand-off to delivery. At the
 * rate the last pass saw, the pause lasts until about PASS_FILL_BYTES should be waiting in all
 * sockets (enough to spread a pass's fixed cost thin), at most PASS_COALESCE_US and at most
 * half the least max_batch_delay_ms. After a pass in which one socket gave PASS_SOCKET_BYTES or
 * more there is none: that socket is behind (a big payload, a burst), and each socket gives one
 * read of at most 64 KiB per pass. Events read right after a pause count as received when it
 * began (gw__rx_ms), so the time they spent in the socket comes out of their batch's
 * max_batch_delay_ms instead of adding to it. Never sleeps when idle: the poll blocks.
 */
#define PASS_COALESCE_US 8000
#define PASS_FILL_BYTES 65536
#define PASS_SOCKET_BYTES 32768
#define PASS_PAUSE_MIN_US 200
#define PROGRESS_EVERY_MS 5000

enum {
    GW_CMD_SEND = 1,
    GW_CMD_RECONNECT,
    GW_CMD_BUDGET_READ,
    GW_CMD_WITHDRAW,
    GW_CMD_HOLD, /* data: a struct gw_resume_point, or nothing (IDENTIFY) */
    GW_CMD_RELEASE,
    GW_CMD_LEASE, /* the lease deadline moved */
};

static int protocol_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    /* a cross-thread wake-up (lws_cancel_service): the loop checks its flags after the pass */
    if (reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED)
        return 0;
    return gw__shard_callback(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
    {"shardhook-gateway", protocol_cb, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void lws_log_emit(int level, const char *line)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", line);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    for (char *p = buf; *p; p++)
        if (*p == '"')
            *p = '\'';
    if (level & LLL_ERR)
        log_warn("msg=\"libwebsockets\" detail=\"%s\"", buf);
    else
        log_debug("msg=\"libwebsockets\" detail=\"%s\"", buf);
}

static enum gw_compress pick_compress(enum cfg_compress c)
{
    switch (c) {
    case CFG_COMPRESS_AUTO:
    case CFG_COMPRESS_ZSTD:
        return GW_COMPRESS_ZSTD; /* this build always has libzstd */
    case CFG_COMPRESS_ZLIB:
        return GW_COMPRESS_ZLIB;
    case CFG_COMPRESS_NONE:
        break;
    }
    return GW_COMPRESS_NONE;
}

/* The shard ids this process runs, in ascending order. */
static int pick_shards(const struct cfg_config *cfg, int total, int **ids, int *n, char *err,
                       size_t errlen)
{
    int first = 0, last = total - 1, count;
    switch (cfg->shards.mode) {
    case CFG_SHARDS_RANGE:
        first = cfg->shards.first;
        last = cfg->shards.last;
        /* fallthrough */
    case CFG_SHARDS_AUTO:
    case CFG_SHARDS_TOTAL:
        count = last - first + 1;
        if (count < 1 || last >= total) {
            snprintf(err, errlen, "shards: range %d..%d does not fit total %d", first, last, total);
            return SH_ECONFIG;
        }
        *ids = calloc((size_t)count, sizeof(int));
        if (!*ids)
            return SH_ENOMEM;
        for (int i = 0; i < count; i++)
            (*ids)[i] = first + i;
        *n = count;
        return SH_OK;
    case CFG_SHARDS_IDS:
        *ids = calloc(cfg->shards.n_ids, sizeof(int));
        if (!*ids)
            return SH_ENOMEM;
        memcpy(*ids, cfg->shards.ids, cfg->shards.n_ids * sizeof(int));
        *n = (int)cfg->shards.n_ids;
        for (int i = 1; i < *n; i++) /* insertion sort: start buckets in id order */
            for (int j = i; j > 0 && (*ids)[j - 1] > (*ids)[j]; j--) {
                int t = (*ids)[j];
                (*ids)[j] = (*ids)[j - 1];
                (*ids)[j - 1] = t;
            }
        return SH_OK;
    }
    return SH_EINVAL;
}

/* The gateway before discovery: locks, metrics, the transport compression. */
static struct gw_gateway *gateway_alloc(const struct cfg_config *cfg, const struct gw_sink *sink,
                                        const struct gw_identify *ident)
{
    struct gw_gateway *gw = calloc(1, sizeof(*gw));
    if (!gw)
        return NULL;
    gw->cfg = cfg;
    gw->sink = *sink;
    gw->ident = *ident;
    sh_queue_init(&gw->cmds);
    pthread_mutex_init(&gw->snap_lock, NULL);
    gw->started_wall_ms = sh_wall_ms();
    gw->compress = pick_compress(cfg->compress);
    gw->m_skipped = sh_metric_counter("shardhook_gateway_payloads_skipped_total",
                                      "Gateway payloads over max_payload_bytes, skipped", "");
    gw->m_closes = sh_metric_counter("shardhook_gateway_closes_total",
                                     "Connections the gateway closed, by close code "
                                     "(none: dropped without a close frame)",
                                     "code");
    return gw;
}

/* /gateway/bot: the URL, the shard total, the bucket count; the identify source starts. */
static int discover(struct gw_gateway *gw, volatile int *stop, char *err, size_t errlen)
{
    const struct cfg_config *cfg = gw->cfg;
    int rc = gw__rest_gateway_bot(cfg->api_base, cfg->token, 8, stop, &gw->bot, err, errlen);
    if (rc)
        return rc;
    gw->total = cfg->shards.mode == CFG_SHARDS_AUTO ? gw->bot.shards : cfg->shards.total;
    gw->max_concurrency =
        cfg->identify_concurrency > 0 ? cfg->identify_concurrency : gw->bot.max_concurrency;
    if (gw->max_concurrency < 1)
        gw->max_concurrency = 1;
    log_info("msg=\"gateway discovered\" url=\"%s\" recommended_shards=%d total=%d "
             "max_concurrency=%d sessions_remaining=%d sessions_total=%d compress=%s",
             gw->bot.url, gw->bot.shards, gw->total, gw->max_concurrency, gw->bot.session_remaining,
             gw->bot.session_total,
             gw__inflate_query_name(gw->compress) ? gw__inflate_query_name(gw->compress) : "none");
    if (cfg->testing_identify_interval_ms != 5000)
        log_warn("msg=\"testing.identify_interval_ms shortens Discord's 5 s identify window; "
                 "use it only against a fake gateway\" identify_interval_ms=%d",
                 cfg->testing_identify_interval_ms);
    rc = gw->ident.ops->start(gw->ident.ud, gw->max_concurrency, &gw->bot);
    if (rc)
        snprintf(err, errlen, "identify slots: %s", sh_strerror(rc));
    return rc;
}

/*
 * Every shard this process may hold, prepared (not connected). Single mode holds them all from
 * the start; cluster mode holds none until gw_gateway_hold (an unheld shard allocates nothing).
 */
static int make_shards(struct gw_gateway *gw, char *err, size_t errlen)
{
    const struct cfg_config *cfg = gw->cfg;
    int *ids = NULL;
    int rc = pick_shards(cfg, gw->total, &ids, &gw->n_shards, err, errlen);
    if (rc)
        return rc;
    gw->shards = calloc((size_t)gw->n_shards, sizeof(*gw->shards));
    gw->snap_shards = calloc((size_t)gw->n_shards, sizeof(*gw->snap_shards));
    gw->txbuf = malloc(LWS_PRE + SH_GW_MAX_SEND_BYTES);
    if (!gw->shards || !gw->snap_shards || !gw->txbuf)
        rc = SH_ENOMEM;
    gw->cluster = cfg->cluster;
    for (int i = 0; !rc && i < gw->n_shards; i++) {
        struct gw_shard *s = &gw->shards[i];
        gw__shard_init(s, gw, ids[i]);
        if (gw->cluster)
            continue;
        rc = gw__shard_prepare(s);
        if (rc)
            snprintf(err, errlen, "shard %d: %s", ids[i], sh_strerror(rc));
        s->held = 1;
        atomic_store(&s->runs, 1);
    }
    free(ids);
    if (rc)
        return rc;
    if (cfg->testing_send_window_ms != GW_SEND_WINDOW_MS)
        log_warn("msg=\"testing.send_window_ms shortens Discord's 60 s send window; use it only "
                 "against a fake gateway\" send_window_ms=%d",
                 cfg->testing_send_window_ms);
    return SH_OK;
}

/* The configured presence must leave room in IDENTIFY under Discord's payload cap. */
static int check_identify_fits(const struct gw_gateway *gw, char *err, size_t errlen)
{
    char probe[SH_GW_MAX_SEND_BYTES + 1];
    size_t plen;
    if (!gw__shard_build_identify(gw, gw->total - 1, probe, sizeof(probe), &plen))
        return SH_OK;
    snprintf(err, errlen,
             "presence: IDENTIFY would exceed Discord's %d-byte payload limit; "
             "shorten the presence activities",
             SH_GW_MAX_SEND_BYTES);
    return SH_ECONFIG;
}

static int create_context(struct gw_gateway *gw, char *err, size_t errlen)
{
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.gid = -1;
    info.uid = -1;
    info.user = gw;
    info.client_ssl_ca_filepath = "/etc/ssl/certs/ca-certificates.crt";
    /* one read buffer for the whole service thread (not per shard): 64 KiB per recv instead
       of the default 4 KiB, so a burst of messages costs a few syscalls, not one each */
    info.pt_serv_buf_size = 64 * 1024;
    gw->ctx = lws_create_context(&info);
    if (gw->ctx)
        return SH_OK;
    snprintf(err, errlen, "could not create the websocket context");
    return SH_ENOMEM;
}

int gw_gateway_new(const struct cfg_config *cfg, const struct gw_sink *sink,
                   const struct gw_identify *ident, volatile int *stop, struct gw_gateway **out,
                   char *err, size_t errlen)
{
    *out = NULL;
    struct gw_gateway *gw = gateway_alloc(cfg, sink, ident);
    if (!gw)
        return SH_ENOMEM;
    int rc = discover(gw, stop, err, errlen);
    if (!rc)
        rc = make_shards(gw, err, errlen);
    if (!rc)
        rc = check_identify_fits(gw, err, errlen);
    if (!rc)
        rc = create_context(gw, err, errlen);
    if (rc) {
        gw_gateway_free(gw);
        return rc;
    }
    *out = gw;
    return SH_OK;
}

/* ---- identify slots and the session budget, through gw->ident ------------------------------ */

uint64_t gw__identify_slot(struct gw_gateway *gw, int shard_id, uint64_t not_before_ms)
{
    return gw->ident.ops->plan(gw->ident.ud, shard_id, not_before_ms);
}

uint64_t gw__identify_wait(struct gw_gateway *gw, int shard_id, uint64_t now_ms)
{
    return gw->ident.ops->wait(gw->ident.ud, shard_id, now_ms);
}

void gw__identify_stamp(struct gw_gateway *gw, int shard_id, uint64_t now_ms)
{
    gw->ident.ops->stamp(gw->ident.ud, shard_id, now_ms);
}

static void read_budget(const struct gw_gateway *gw, struct gw_budget *b)
{
    gw->ident.ops->budget(gw->ident.ud, b);
}

/* Shards that still need an IDENTIFY and hold no budget token. */
static int still_to_identify(const struct gw_gateway *gw)
{
    int n = 0;
    for (int i = 0; i < gw->n_shards; i++) {
        const struct gw_shard *s = &gw->shards[i];
        n += s->held && !s->session_id[0] && !s->budget_token && s->status != GW_FAILED &&
             s->status != GW_LOADING && s->status != GW_READY;
    }
    return n;
}

void gw__identify_sent(struct gw_gateway *gw, struct gw_shard *s, uint64_t now_ms)
{
    gw__identify_stamp(gw, s->id, now_ms);
    if (s->budget_token)
        s->budget_token = 0; /* reserved when the connection was planned */
    else
        gw->ident.ops->spend(gw->ident.ud);
    struct gw_budget b;
    read_budget(gw, &b);
    int to_start = still_to_identify(gw);
    if ((b.total > 0 && b.remaining * 10 < b.total) || b.remaining < to_start)
        log_warn("msg=\"daily identify budget running low\" remaining=%d total=%d "
                 "shards_still_to_identify=%d",
                 b.remaining, b.total, to_start);
}

void gw__budget_return(struct gw_gateway *gw, struct gw_shard *s)
{
    if (!s->budget_token)
        return;
    s->budget_token = 0;
    gw->ident.ops->give_back(gw->ident.ud);
}

/* ---- the daily identify budget ----------------------------------------------------------- */

static int post_cmd(struct gw_gateway *gw, int kind, int shard, int arg, const void *data,
                    size_t len);

/* Any thread: the re-read budget_cb asked for ended; the loop takes it from here. */
static void on_budget_read(void *arg, int rc)
{
    post_cmd(arg, GW_CMD_BUDGET_READ, -1, rc, NULL, 0);
}

static void budget_cb(lws_sorted_usec_list_t *sul)
{
    struct gw_gateway *gw = lws_container_of(sul, struct gw_gateway, sul_budget);
    if (gw->budget_refreshing || gw->stopping)
        return;
    gw->budget_refreshing = 1;
    if (gw->ident.ops->refresh(gw->ident.ud, on_budget_read, gw)) {
        gw->budget_refreshing = 0;
        lws_sul_schedule(gw->ctx, 0, &gw->sul_budget, budget_cb, 5000 * LWS_US_PER_MS);
    }
}

/* The budget is spent: say when identifying resumes and re-read the budget then. */
static void wait_for_budget(struct gw_gateway *gw)
{
    struct gw_budget b;
    read_budget(gw, &b);
    uint64_t now = sh_now_ms();
    uint64_t wait = b.reset_at_ms > now ? b.reset_at_ms - now : 0;
    if (wait < 1000)
        wait = 1000;
    char when[32];
    time_t at = (time_t)((sh_wall_ms() + wait) / 1000);
    struct tm tm;
    gmtime_r(&at, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    log_error("msg=\"daily identify budget spent: shards wait instead of burning the token\" "
              "identifying_resumes_at=%s wait_s=%llu",
              when, (unsigned long long)(wait / 1000));
    lws_sul_schedule(gw->ctx, 0, &gw->sul_budget, budget_cb, (lws_usec_t)wait * LWS_US_PER_MS);
}

int gw__budget_hold(struct gw_gateway *gw, struct gw_shard *s)
{
    if (s->budget_token)
        return 0;
    if (!gw->budget_refreshing && gw->ident.ops->take(gw->ident.ud) == SH_OK) {
        s->budget_token = 1; /* reserved: shards connecting together cannot overspend */
        s->budget_hold = 0;
        return 0;
    }
    if (!s->budget_hold) {
        s->budget_hold = 1;
        s->identify_at_ms = 0;
        s->status = GW_QUEUED;
        gw->snap_dirty = 1;
    }
    if (lws_dll2_is_detached(&gw->sul_budget.list))
        wait_for_budget(gw);
    return 1;
}

void gw__budget_refused(struct gw_gateway *gw, struct gw_shard *s)
{
    static struct sh_log_limit lim;
    log_warn_limited(
        &lim, "msg=\"IDENTIFY refused: the session budget is at its reserve\" shard=%d", s->id);
    gw__budget_return(gw, s);
    s->budget_hold = 1;
    s->identify_at_ms = 0;
    gw->snap_dirty = 1;
    if (lws_dll2_is_detached(&gw->sul_budget.list))
        wait_for_budget(gw);
}

/* On the loop: the re-read ended with rc (0: the implementation holds the new budget). */
static void budget_refreshed(struct gw_gateway *gw, int rc)
{
    gw->budget_refreshing = 0;
    if (rc) {
        lws_sul_schedule(gw->ctx, 0, &gw->sul_budget, budget_cb, 30000 * LWS_US_PER_MS);
        return;
    }
    struct gw_budget b;
    read_budget(gw, &b);
    gw->snap_dirty = 1;
    log_info("msg=\"identify budget refreshed\" remaining=%d total=%d", b.remaining, b.total);
    if (b.remaining <= 0 || b.remaining <= b.reserve) {
        uint64_t now = sh_now_ms();
        uint64_t wait = b.reset_at_ms > now + 1000 ? b.reset_at_ms - now : 1000;
        lws_sul_schedule(gw->ctx, 0, &gw->sul_budget, budget_cb, (lws_usec_t)wait * LWS_US_PER_MS);
        return;
    }
    for (int i = 0; i < gw->n_shards; i++) {
        struct gw_shard *s = &gw->shards[i];
        if (s->budget_hold && s->held && !s->wsi) {
            s->budget_hold = 0;
            gw__shard_start(s);
        }
    }
}

/* ---- facts, seeds, observer ------------------------------------------------------------ */

static int cmp_shard_id(const void *key, const void *elem)
{
    int id = *(const int *)key, other = ((const struct gw_shard *)elem)->id;
    return id < other ? -1 : id > other;
}

static struct gw_shard *find_shard(const struct gw_gateway *gw, int id)
{
    return bsearch(&id, gw->shards, (size_t)gw->n_shards, sizeof(*gw->shards), cmp_shard_id);
}

int gw_gateway_total(const struct gw_gateway *gw)
{
    return gw->total;
}

int gw_gateway_max_concurrency(const struct gw_gateway *gw)
{
    return gw->max_concurrency;
}

/* The shard with this id when this process holds it now, else NULL: any thread. */
static struct gw_shard *held_shard(const struct gw_gateway *gw, int id)
{
    struct gw_shard *s = find_shard(gw, id);
    return s && atomic_load(&s->runs) ? s : NULL;
}

int gw_gateway_runs(const struct gw_gateway *gw, int shard_id)
{
    return held_shard(gw, shard_id) != NULL;
}

int gw_gateway_may_hold(const struct gw_gateway *gw, int shard_id)
{
    return find_shard(gw, shard_id) != NULL;
}

int gw_gateway_shard_for_guild(const struct gw_gateway *gw, uint64_t guild_id)
{
    return (int)((guild_id >> 22) % (uint64_t)gw->total);
}

int gw_gateway_seed(struct gw_gateway *gw, int shard_id, const char *session_id,
                    const char *resume_url, uint64_t seq)
{
    struct gw_shard *s = find_shard(gw, shard_id);
    if (!s)
        return SH_ENOTFOUND;
    if (!session_id || !*session_id || strlen(session_id) >= sizeof(s->session_id) ||
        (resume_url && strlen(resume_url) >= sizeof(s->resume_url)))
        return SH_EINVAL;
    snprintf(s->session_id, sizeof(s->session_id), "%s", session_id);
    snprintf(s->resume_url, sizeof(s->resume_url), "%s", resume_url ? resume_url : "");
    s->seq = seq;
    s->has_seq = 1;
    return SH_OK;
}

void gw_gateway_set_observer(struct gw_gateway *gw, const struct gw_observer *obs)
{
    gw->observer = *obs;
}

/* ---- commands from other threads ------------------------------------------------------ */

static int post_cmd(struct gw_gateway *gw, int kind, int shard, int arg, const void *data,
                    size_t len)
{
    struct gw_cmd *c = malloc(sizeof(*c) + len + 1);
    if (!c)
        return SH_ENOMEM;
    c->kind = kind;
    c->shard = shard;
    c->arg = arg;
    c->len = len;
    if (len)
        memcpy(c->data, data, len);
    c->data[len] = '\0';
    /* the loop takes every command of a pass at once: only the first since then wakes it */
    if (sh_queue_push(&gw->cmds, &c->node) && gw->ctx)
        lws_cancel_service(gw->ctx);
    return SH_OK;
}

int gw_gateway_send(struct gw_gateway *gw, int shard_id, const char *payload, size_t len)
{
    struct gw_shard *s = held_shard(gw, shard_id);
    if (!s)
        return SH_ENOTFOUND;
    if (len > SH_GW_MAX_SEND_BYTES)
        return SH_ETOOBIG;
    if (atomic_load(&gw->stop_requested))
        return SH_ECLOSED;
    if (atomic_fetch_add(&s->queued_sends, 1) >= GW_SENDQ_MAX) {
        atomic_fetch_sub(&s->queued_sends, 1);
        return SH_EAGAIN;
    }
    int rc = post_cmd(gw, GW_CMD_SEND, shard_id, 0, payload, len);
    if (rc)
        atomic_fetch_sub(&s->queued_sends, 1);
    return rc;
}

int gw_gateway_withdraw(struct gw_gateway *gw, int shard_id, const char *payload, size_t len)
{
    if (!held_shard(gw, shard_id))
        return SH_ENOTFOUND;
    if (len > SH_GW_MAX_SEND_BYTES)
        return SH_OK; /* never queued */
    return post_cmd(gw, GW_CMD_WITHDRAW, shard_id, 0, payload, len);
}

int gw_gateway_reconnect(struct gw_gateway *gw, int shard_id, int resume)
{
    if (!held_shard(gw, shard_id))
        return SH_ENOTFOUND;
    if (atomic_load(&gw->stop_requested))
        return SH_ECLOSED;
    return post_cmd(gw, GW_CMD_RECONNECT, shard_id, resume, NULL, 0);
}

int gw_gateway_hold(struct gw_gateway *gw, int shard_id, const struct gw_resume_point *from)
{
    struct gw_shard *s = find_shard(gw, shard_id);
    if (!s)
        return SH_ENOTFOUND;
    int seeded = from && from->session_id[0];
    if (seeded && (!memchr(from->session_id, 0, sizeof(from->session_id)) ||
                   !memchr(from->resume_url, 0, sizeof(from->resume_url))))
        return SH_EINVAL;
    if (atomic_load(&gw->stop_requested))
        return SH_ECLOSED;
    int was = 0;
    if (!atomic_compare_exchange_strong(&s->runs, &was, 1))
        return SH_EEXIST;
    int rc =
        post_cmd(gw, GW_CMD_HOLD, shard_id, 0, seeded ? from : NULL, seeded ? sizeof(*from) : 0);
    if (rc)
        atomic_store(&s->runs, 0);
    return rc;
}

int gw_gateway_release_then(struct gw_gateway *gw, int shard_id, const struct gw_released *then)
{
    struct gw_shard *s = find_shard(gw, shard_id);
    if (!s)
        return SH_ENOTFOUND;
    int was = atomic_exchange(&s->runs, 0);
    if (!was && !then)
        return SH_OK; /* not held, or its release is queued already */
    /* a release that waits for the close goes through the loop even when it is queued already:
       the loop answers it after the first one, in order */
    int rc = post_cmd(gw, GW_CMD_RELEASE, shard_id, 0, then, then ? sizeof(*then) : 0);
    if (rc && was)
        atomic_store(&s->runs, 1);
    return rc;
}

int gw_gateway_release(struct gw_gateway *gw, int shard_id)
{
    return gw_gateway_release_then(gw, shard_id, NULL);
}

void gw_gateway_set_lease_deadline(struct gw_gateway *gw, uint64_t until_mono_ms)
{
    atomic_store(&gw->lease_until, until_mono_ms);
    static struct sh_log_limit lim;
    if (post_cmd(gw, GW_CMD_LEASE, -1, 0, NULL, 0))
        log_warn_limited(&lim, "msg=\"lease deadline change not queued; shards look again within "
                               "a second\"");
}

void gw_gateway_pause_reading(struct gw_gateway *gw, int paused)
{
    atomic_store(&gw->pause_requested, paused ? 1 : 0);
    if (gw->ctx)
        lws_cancel_service(gw->ctx);
}

static void apply_pause(struct gw_gateway *gw)
{
    int want = atomic_load(&gw->pause_requested);
    if (want == gw->paused)
        return;
    gw->paused = want;
    log_info("msg=\"%s reading the gateway\"", want ? "pausing" : "resuming");
    for (int i = 0; i < gw->n_shards; i++)
        if (gw->shards[i].wsi && gw->shards[i].established)
            lws_rx_flow_control(gw->shards[i].wsi, !want);
}

static void run_commands(struct gw_gateway *gw)
{
    struct gw_resume_point from;
    struct sh_qnode *n = sh_queue_take(&gw->cmds);
    while (n) {
        struct gw_cmd *c = SH_QUEUE_ITEM(n, struct gw_cmd, node);
        n = n->next;
        struct gw_shard *s = c->shard >= 0 ? find_shard(gw, c->shard) : NULL;
        switch (c->kind) {
        case GW_CMD_SEND:
            if (s && s->held && s->status != GW_FAILED && !gw->stopping) {
                gw__shard_queue_user(s, c->data, c->len);
            } else if (s) {
                atomic_fetch_sub(&s->queued_sends, 1);
                log_warn("msg=\"payload dropped: shard not running\" shard=%d", s->id);
            }
            break;
        case GW_CMD_RECONNECT:
            if (s && s->held)
                gw__shard_reconnect(s, c->arg);
            break;
        case GW_CMD_HOLD:
            if (s && c->len == sizeof(from)) {
                memcpy(&from, c->data, sizeof(from));
                gw__shard_hold(s, &from);
            } else if (s) {
                gw__shard_hold(s, NULL);
            }
            break;
        case GW_CMD_RELEASE:
            if (s && c->len == sizeof(struct gw_released))
                gw__shard_release(s, (const struct gw_released *)(const void *)c->data);
            else if (s)
                gw__shard_release(s, NULL);
            break;
        case GW_CMD_LEASE:
            for (int i = 0; i < gw->n_shards; i++)
                gw__shard_lease_moved(&gw->shards[i]);
            break;
        case GW_CMD_BUDGET_READ:
            budget_refreshed(gw, c->arg);
            break;
        case GW_CMD_WITHDRAW: /* after the GW_CMD_SEND it follows: commands run in order */
            if (s && s->held && gw__sendq_withdraw(s->sendq, c->data, c->len) == SH_OK) {
                atomic_fetch_sub(&s->queued_sends, 1);
                gw->snap_dirty = 1;
                log_info("msg=\"queued payload withdrawn: its request gave up\" shard=%d", s->id);
            }
            break;
        }
        free(c);
    }
}

/* ---- snapshots ------------------------------------------------------------------------ */

static void publish(struct gw_gateway *gw)
{
    uint64_t now = sh_now_ms();
    struct gw_overview ov;
    memset(&ov, 0, sizeof(ov));
    snprintf(ov.url, sizeof(ov.url), "%s", gw->bot.url);
    ov.total = gw->total;
    ov.recommended_shards = gw->bot.shards;
    ov.max_concurrency = gw->max_concurrency;
    ov.next_identify_in_ms = -1;
    ov.eta_ms = 0;
    uint64_t last_slot = 0;
    int held = 0;
    for (int i = 0; i < gw->n_shards; i++) {
        const struct gw_shard *s = &gw->shards[i];
        if (!s->held)
            continue;
        ov.n_shards++;
        ov.ready += s->status == GW_READY;
        ov.loading += s->status == GW_LOADING;
        ov.queued += s->status == GW_QUEUED;
        ov.failed += s->status == GW_FAILED;
        held += s->budget_hold;
        if (s->status == GW_QUEUED && s->identify_at_ms) {
            int64_t in = s->identify_at_ms > now ? (int64_t)(s->identify_at_ms - now) : 0;
            if (ov.next_identify_in_ms < 0 || in < ov.next_identify_in_ms)
                ov.next_identify_in_ms = in;
            if (s->identify_at_ms > last_slot)
                last_slot = s->identify_at_ms;
        }
    }
    if (held)
        ov.eta_ms = -1;
    else if (last_slot > now)
        ov.eta_ms = (int64_t)(last_slot - now);
    struct gw_budget b;
    read_budget(gw, &b);
    ov.session_total = b.total;
    ov.session_remaining = b.remaining;
    ov.session_reserve = b.reserve;
    ov.identify_stopped = held > 0;
    ov.session_reset_at_ms = b.reset_at_ms > now ? sh_wall_ms() + (b.reset_at_ms - now) : 0;
    ov.started_at_ms = gw->started_wall_ms;
    ov.published_at_ms = sh_wall_ms();
    pthread_mutex_lock(&gw->snap_lock);
    gw->snap_ov = ov;
    gw->snap_n = 0;
    for (int i = 0; i < gw->n_shards; i++)
        if (gw->shards[i].held)
            gw__shard_fill_info(&gw->shards[i], &gw->snap_shards[gw->snap_n++]);
    pthread_mutex_unlock(&gw->snap_lock);
    gw->snap_dirty = 0;
}

int gw_gateway_snapshot(struct gw_gateway *gw, struct gw_overview *ov, struct gw_shard_info *shards,
                        int cap)
{
    pthread_mutex_lock(&gw->snap_lock);
    if (ov)
        *ov = gw->snap_ov;
    int held = gw->snap_n;
    int n = held < cap ? held : cap;
    if (n > 0)
        memcpy(shards, gw->snap_shards, (size_t)n * sizeof(*shards));
    pthread_mutex_unlock(&gw->snap_lock);
    return held;
}

static int cmp_info_id(const void *key, const void *elem)
{
    int id = *(const int *)key, other = ((const struct gw_shard_info *)elem)->id;
    return id < other ? -1 : id > other;
}

int gw_gateway_shard_info(struct gw_gateway *gw, int shard_id, struct gw_shard_info *out)
{
    pthread_mutex_lock(&gw->snap_lock);
    const struct gw_shard_info *hit =
        bsearch(&shard_id, gw->snap_shards, (size_t)gw->snap_n, sizeof(*hit), cmp_info_id);
    if (hit)
        *out = *hit;
    pthread_mutex_unlock(&gw->snap_lock);
    return hit ? SH_OK : SH_ENOTFOUND;
}

static void fmt_duration(char *out, size_t cap, int64_t ms)
{
    if (ms < 0)
        snprintf(out, cap, "unknown");
    else if (ms < 60000)
        snprintf(out, cap, "%.1fs", (double)ms / 1000.0);
    else if (ms < 3600000)
        snprintf(out, cap, "%dm%02ds", (int)(ms / 60000), (int)(ms / 1000 % 60));
    else
        snprintf(out, cap, "%dh%02dm", (int)(ms / 3600000), (int)(ms / 60000 % 60));
}

/* Every TICK_MS: publish the snapshot; every PROGRESS_EVERY_MS until all are ready: a summary. */
static void tick_cb(lws_sorted_usec_list_t *sul)
{
    struct gw_gateway *gw = lws_container_of(sul, struct gw_gateway, sul_tick);
    publish(gw);
    uint64_t now = sh_now_ms();
    const struct gw_overview *ov = &gw->snap_ov; /* written by this thread only */
    if (!ov->n_shards) {
        gw->all_ready_logged = 0; /* cluster mode, nothing held: nothing to report */
    } else if (ov->ready == ov->n_shards) {
        if (!gw->all_ready_logged) {
            gw->all_ready_logged = 1;
            log_info("msg=\"all shards ready\" shards=%d elapsed_ms=%llu", ov->n_shards,
                     (unsigned long long)(sh_wall_ms() - gw->started_wall_ms));
        }
    } else if (now - gw->last_progress_ms >= PROGRESS_EVERY_MS && !gw->stopping) {
        gw->last_progress_ms = now;
        gw->all_ready_logged = 0;
        char next[24], eta[24];
        fmt_duration(next, sizeof(next), ov->next_identify_in_ms);
        fmt_duration(eta, sizeof(eta), ov->eta_ms);
        log_info("msg=\"progress\" ready=%d/%d loading=%d queued=%d failed=%d "
                 "next_identify_in=%s eta=%s sessions_remaining=%d",
                 ov->ready, ov->n_shards, ov->loading, ov->queued, ov->failed,
                 ov->next_identify_in_ms < 0 ? "none" : next, eta, ov->session_remaining);
    }
    if (!gw->done)
        lws_sul_schedule(gw->ctx, 0, &gw->sul_tick, tick_cb, TICK_MS * LWS_US_PER_MS);
}

static int live_sockets(const struct gw_gateway *gw)
{
    int n = 0;
    for (int i = 0; i < gw->n_shards; i++)
        n += gw->shards[i].wsi != NULL;
    return n;
}

static void stop_deadline_cb(lws_sorted_usec_list_t *sul)
{
    struct gw_gateway *gw = lws_container_of(sul, struct gw_gateway, sul_stop_deadline);
    log_warn("msg=\"sockets still open at the stop deadline\" open=%d", live_sockets(gw));
    gw->done = 1;
}

static void begin_stop(struct gw_gateway *gw)
{
    if (gw->stopping)
        return;
    gw->stopping = 1;
    log_info("msg=\"closing gateway connections\" code=%d open=%d", SH_CLOSE_RESUMABLE,
             live_sockets(gw));
    for (int i = 0; i < gw->n_shards; i++)
        gw__shard_shutdown(&gw->shards[i]);
    lws_sul_schedule(gw->ctx, 0, &gw->sul_stop_deadline, stop_deadline_cb,
                     (lws_usec_t)STOP_DEADLINE_MS * LWS_US_PER_MS);
}

static const char *fatal_hint(int code, const struct gw_gateway *gw, char *buf, size_t cap)
{
    switch (code) {
    case SH_CLOSE_AUTHENTICATION_FAILED:
        return "the bot token is wrong or was reset; set \"token\" (or DISCORD_TOKEN) to the "
               "token from the developer portal";
    case SH_CLOSE_INVALID_SHARD:
        snprintf(buf, cap, "shard ids do not fit the total of %d; check \"shards\"", gw->total);
        return buf;
    case SH_CLOSE_SHARDING_REQUIRED:
        return "the bot needs more shards; set \"shards\" to \"auto\" or a larger total";
    case SH_CLOSE_INVALID_API_VERSION:
        return "the gateway rejected API version 10";
    case SH_CLOSE_INVALID_INTENTS:
        return "\"intents\" holds a value Discord does not accept";
    case SH_CLOSE_DISALLOWED_INTENTS: {
        size_t o = (size_t)snprintf(buf, cap, "enable the privileged intents");
        for (int bit = 0; bit < 64 && o < cap; bit++)
            if ((gw->cfg->intents >> bit) & 1 && cfg_intent_privileged(bit))
                o += (size_t)snprintf(buf + o, cap - o, " %s", cfg_intent_name(bit));
        if (o < cap)
            snprintf(buf + o, cap - o,
                     " in the developer portal (Bot > Privileged Gateway Intents) or remove them "
                     "from \"intents\"");
        return buf;
    }
    }
    return "see the close code in Discord's documentation";
}

void gw__shard_failed(struct gw_gateway *gw, struct gw_shard *s, int code, const char *why)
{
    char hint[400];
    const char *h = fatal_hint(code, gw, hint, sizeof(hint));
    log_error("msg=\"shard stopped by a fatal close\" shard=%d close_code=%d reason=\"%s\" "
              "fix=\"%s\"",
              s->id, code, why, h);
    int runnable = 0; /* of the held shards: an unheld one says nothing about the config */
    for (int i = 0; i < gw->n_shards; i++)
        runnable += gw->shards[i].held && gw->shards[i].status != GW_FAILED;
    if (runnable)
        return;
    snprintf(gw->fatal, sizeof(gw->fatal), "gateway closed with %d: %s", code, h);
    gw->fatal_rc = code == SH_CLOSE_AUTHENTICATION_FAILED ? SH_EAUTH : SH_ECONFIG;
    begin_stop(gw);
}

static void flush_pending(struct gw_gateway *gw)
{
    if (gw->pending && gw->pending->n) {
        struct gw_chunk *c = gw->pending;
        gw->pending = NULL;
        gw->sink.push(gw->sink.ud, c);
    }
}

uint64_t gw__rx_ms(const struct gw_gateway *gw, uint64_t now)
{
    /* within a millisecond of the pause's end, the poll did not wait: it was all there */
    return gw->paused_from_ms && now <= gw->resumed_ms + 1 ? gw->paused_from_ms : now;
}

void gw__emit(struct gw_gateway *gw, struct gw_shard *s, const char *t, size_t t_len, uint64_t seq,
              const char *d, size_t d_len, uint64_t now_ms, const struct gw_session *session)
{
    /* the idempotency key: an event with s names it; one without counts from the last s */
    struct gw_key key = {s->session_id, s->seq, 0};
    if (seq)
        s->sless_n = 0;
    else
        key.n = ++s->sless_n;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!gw->pending)
            gw->pending = gw_chunk_new(gw->cfg->max_payload_bytes + CHUNK_SLACK);
        if (!gw->pending)
            break;
        int rc =
            gw_chunk_append(gw->pending, s->id, gw->total, t, t_len, seq, &key, d, d_len, now_ms);
        if (!rc && session && gw_chunk_set_session(gw->pending, session))
            log_error("msg=\"the session of a READY could not be handed to delivery\" shard=%d",
                      s->id);
        if (!rc)
            return;
        if (rc != SH_ETOOBIG || !gw->pending->n)
            break;
        flush_pending(gw); /* the chunk is full: hand it over and start another */
    }
    log_error("msg=\"event could not be queued\" shard=%d s=%" PRIu64 " bytes=%zu", s->id, seq,
              d_len);
}

int gw_gateway_run(struct gw_gateway *gw)
{
    gw->last_progress_ms = 0; /* the first tick logs a summary */
    for (int i = 0; i < gw->n_shards; i++)
        if (gw->shards[i].held)
            gw__shard_start(&gw->shards[i]);
    publish(gw);
    lws_sul_schedule(gw->ctx, 0, &gw->sul_tick, tick_cb, TICK_MS * LWS_US_PER_MS);
    int rc = 0;
    struct timespec pass_start = {0, 0}, prev_start = {0, 0};
    long coalesce_us = PASS_COALESCE_US;
    int least_delay_ms = cfg_least_batch_delay_ms(gw->cfg);
    if (least_delay_ms >= 0 && least_delay_ms * 500L < coalesce_us)
        coalesce_us = least_delay_ms * 500L; /* half of it, in µs */
    while (!gw->done) {
        if (atomic_load(&gw->stop_requested) && !gw->stopping)
            begin_stop(gw);
        run_commands(gw);
        apply_pause(gw);
        struct timespec started;
        clock_gettime(CLOCK_MONOTONIC, &started);
        gw->pass_no++;
        gw->pass_rx_bytes = gw->pass_rx_max = 0;
        int n = lws_service(gw->ctx, 0);
        int produced = gw->pending && gw->pending->n;
        flush_pending(gw);
        gw->paused_from_ms = 0;
        /* the bytes of this pass arrived since the previous pass began */
        long since_us = (started.tv_sec - prev_start.tv_sec) * 1000000L +
                        (started.tv_nsec - prev_start.tv_nsec) / 1000L;
        prev_start = started;
        long pause_us = gw->pass_rx_max >= PASS_SOCKET_BYTES ? 0 : coalesce_us;
        if (gw->pass_rx_bytes && since_us > 0) {
            double fill = (double)PASS_FILL_BYTES * (double)since_us / (double)gw->pass_rx_bytes;
            if (fill < (double)pause_us)
                pause_us = (long)fill;
        }
        if (produced && pause_us >= PASS_PAUSE_MIN_US && !gw->stopping) {
            gw->paused_from_ms = sh_now_ms();
            /* the next pass starts pause_us after this one started */
            pass_start = started;
            pass_start.tv_nsec += pause_us * 1000L;
            if (pass_start.tv_nsec >= 1000000000L) {
                pass_start.tv_sec++;
                pass_start.tv_nsec -= 1000000000L;
            }
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &pass_start, NULL) == EINTR)
                ;
            gw->resumed_ms = sh_now_ms();
        }
        if (gw->snap_dirty)
            publish(gw);
        if (n < 0) {
            log_error("msg=\"websocket service failed\"");
            rc = SH_ENET;
            break;
        }
        if (gw->stopping && !live_sockets(gw))
            gw->done = 1;
    }
    flush_pending(gw);
    publish(gw);
    lws_sul_cancel(&gw->sul_stop_deadline);
    lws_sul_cancel(&gw->sul_tick);
    lws_sul_cancel(&gw->sul_budget);
    lws_sul_cancel(&gw->sul_orphans);
    gw->ident.ops->stop(gw->ident.ud); /* a budget re-read under way ends here */
    return rc ? rc : gw->fatal_rc;
}

void gw_gateway_stop(struct gw_gateway *gw)
{
    atomic_store(&gw->stop_requested, 1);
    if (gw->ctx)
        lws_cancel_service(gw->ctx);
}

const char *gw_gateway_fatal(const struct gw_gateway *gw)
{
    return gw->fatal[0] ? gw->fatal : NULL;
}

void gw_gateway_free(struct gw_gateway *gw)
{
    if (!gw)
        return;
    gw->stopping = 1;  /* connections the destroy ends are not reconnected */
    if (gw->ident.ops) /* a budget re-read calls back into gw: joined first */
        gw->ident.ops->stop(gw->ident.ud);
    if (gw->ctx)
        lws_context_destroy(gw->ctx); /* sockets still closing report their end here */
    gw__orphans_flush(gw);
    free(gw->orphans);
    for (int i = 0; gw->shards && i < gw->n_shards; i++)
        gw__shard_destroy(&gw->shards[i]);
    free(gw->shards);
    free(gw->snap_shards);
    free(gw->txbuf);
    gw_chunk_free(gw->pending);
    for (struct sh_qnode *n = sh_queue_take(&gw->cmds), *next; n; n = next) {
        next = n->next;
        struct gw_cmd *c = SH_QUEUE_ITEM(n, struct gw_cmd, node);
        if (c->kind == GW_CMD_RELEASE && c->len == sizeof(struct gw_released)) {
            struct gw_released then; /* never run: its waiter hears of it all the same */
            memcpy(&then, c->data, sizeof(then));
            then.closed(then.arg, c->shard);
        }
        free(c);
    }
    sh_queue_destroy(&gw->cmds);
    pthread_mutex_destroy(&gw->snap_lock);
    free(gw);
}
