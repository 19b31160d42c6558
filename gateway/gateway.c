/*
 * gateway/gateway.c: the gateway room's loop. Owns the libwebsockets context that
 * serves every shard of the process, discovery through /gateway/bot, the identify
 * buckets (one IDENTIFY per bucket per interval), the session budget count, the
 * per-pass event chunk handed to the sink, graceful stop and fatal exit.
 *
 * Only gw_gateway_stop() may be called from another thread.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/gateway.h"
#include "gateway/shard.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/log.h"

#define STOP_DEADLINE_MS 3000 /* close handshakes that take longer are cut */
#define CHUNK_SLACK 4096      /* room for the envelope around the largest payload */

static int protocol_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    /* a cross-thread wake-up (lws_cancel_service): the loop checks its flags after the pass */
    if (reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED)
        return 0;
    return gw_shard_callback(wsi, reason, user, in, len);
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
static int pick_shards(const struct cfg_config *cfg, int total, int **ids, int *n,
                       char *err, size_t errlen)
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

int gw_gateway_new(const struct cfg_config *cfg, const struct gw_sink *sink, volatile int *stop,
                   struct gw_gateway **out, char *err, size_t errlen)
{
    *out = NULL;
    struct gw_gateway *gw = calloc(1, sizeof(*gw));
    if (!gw)
        return SH_ENOMEM;
    gw->cfg = cfg;
    gw->sink = *sink;
    gw->compress = pick_compress(cfg->compress);
    int rc = gw_rest_gateway_bot(cfg->api_base, cfg->token, 8, stop, &gw->bot, err, errlen);
    if (rc)
        goto fail;
    gw->total = cfg->shards.mode == CFG_SHARDS_AUTO ? gw->bot.shards : cfg->shards.total;
    gw->max_concurrency =
        cfg->identify_concurrency > 0 ? cfg->identify_concurrency : gw->bot.max_concurrency;
    if (gw->max_concurrency < 1)
        gw->max_concurrency = 1;
    gw->identify_interval_ms = (uint64_t)cfg->testing_identify_interval_ms;
    gw->session_remaining = gw->bot.session_remaining;
    log_info("msg=\"gateway discovered\" url=\"%s\" recommended_shards=%d total=%d "
             "max_concurrency=%d sessions_remaining=%d sessions_total=%d compress=%s",
             gw->bot.url, gw->bot.shards, gw->total, gw->max_concurrency,
             gw->bot.session_remaining, gw->bot.session_total,
             gw_inflate_query_name(gw->compress) ? gw_inflate_query_name(gw->compress) : "none");
    if (gw->identify_interval_ms != 5000)
        log_warn("msg=\"testing.identify_interval_ms shortens Discord's 5 s identify window; "
                 "use it only against a fake gateway\" identify_interval_ms=%" PRIu64,
                 gw->identify_interval_ms);

    int *ids = NULL;
    rc = pick_shards(cfg, gw->total, &ids, &gw->n_shards, err, errlen);
    if (rc)
        goto fail;
    gw->shards = calloc((size_t)gw->n_shards, sizeof(*gw->shards));
    gw->buckets = calloc((size_t)gw->max_concurrency, sizeof(*gw->buckets));
    gw->txbuf = malloc(LWS_PRE + GW_SEND_MAX_PAYLOAD);
    if (!gw->shards || !gw->buckets || !gw->txbuf) {
        free(ids);
        rc = SH_ENOMEM;
        goto fail;
    }
    for (int i = 0; i < gw->n_shards; i++) {
        rc = gw_shard_init(&gw->shards[i], gw, ids[i]);
        if (rc) {
            free(ids);
            snprintf(err, errlen, "shard %d: %s", ids[i], sh_strerror(rc));
            goto fail;
        }
    }
    free(ids);

    char probe[GW_SEND_MAX_PAYLOAD + 1];
    size_t plen;
    if (gw_shard_build_identify(gw, gw->total - 1, probe, sizeof(probe), &plen)) {
        snprintf(err, errlen,
                 "presence: IDENTIFY would exceed Discord's 4096-byte payload limit; "
                 "shorten the presence activities");
        rc = SH_ECONFIG;
        goto fail;
    }

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
    gw->ctx = lws_create_context(&info);
    if (!gw->ctx) {
        snprintf(err, errlen, "could not create the websocket context");
        rc = SH_ENOMEM;
        goto fail;
    }
    *out = gw;
    return SH_OK;
fail:
    gw_gateway_free(gw);
    return rc;
}

uint64_t gw_gateway_identify_slot(struct gw_gateway *gw, int shard_id, uint64_t not_before_ms)
{
    struct gw_bucket *b = &gw->buckets[shard_id % gw->max_concurrency];
    uint64_t slot = not_before_ms > b->next_slot_ms ? not_before_ms : b->next_slot_ms;
    b->next_slot_ms = slot + gw->identify_interval_ms;
    return slot;
}

uint64_t gw_gateway_identify_wait(struct gw_gateway *gw, int shard_id, uint64_t now_ms)
{
    struct gw_bucket *b = &gw->buckets[shard_id % gw->max_concurrency];
    if (!b->last_identify_ms)
        return 0;
    /* one millisecond of margin: the window is "at least interval apart" */
    uint64_t due = b->last_identify_ms + gw->identify_interval_ms + 1;
    return due > now_ms ? due - now_ms : 0;
}

void gw_gateway_identify_sent(struct gw_gateway *gw, int shard_id, uint64_t now_ms)
{
    struct gw_bucket *b = &gw->buckets[shard_id % gw->max_concurrency];
    b->last_identify_ms = now_ms;
    if (b->next_slot_ms < now_ms + gw->identify_interval_ms)
        b->next_slot_ms = now_ms + gw->identify_interval_ms;
    if (gw->session_remaining > 0)
        gw->session_remaining--;
    int total = gw->bot.session_total;
    if (total > 0 && gw->session_remaining * 10 < total)
        log_warn("msg=\"daily identify budget running low\" remaining=%d total=%d",
                 gw->session_remaining, total);
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
    log_info("msg=\"closing gateway connections\" code=4000 open=%d", live_sockets(gw));
    for (int i = 0; i < gw->n_shards; i++)
        gw_shard_shutdown(&gw->shards[i]);
    lws_sul_schedule(gw->ctx, 0, &gw->sul_stop_deadline, stop_deadline_cb,
                     (lws_usec_t)STOP_DEADLINE_MS * LWS_US_PER_MS);
}

static const char *fatal_hint(int code, const struct gw_gateway *gw, char *buf, size_t cap)
{
    switch (code) {
    case 4004:
        return "the bot token is wrong or was reset; set \"token\" (or DISCORD_TOKEN) to the "
               "token from the developer portal";
    case 4010:
        snprintf(buf, cap, "shard ids do not fit the total of %d; check \"shards\"", gw->total);
        return buf;
    case 4011:
        return "the bot needs more shards; set \"shards\" to \"auto\" or a larger total";
    case 4012:
        return "the gateway rejected API version 10";
    case 4013:
        return "\"intents\" holds a value Discord does not accept";
    case 4014: {
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

void gw_gateway_shard_failed(struct gw_gateway *gw, struct gw_shard *s, int code, const char *why)
{
    char hint[400];
    const char *h = fatal_hint(code, gw, hint, sizeof(hint));
    log_error("msg=\"shard stopped by a fatal close\" shard=%d close_code=%d reason=\"%s\" "
              "fix=\"%s\"",
              s->id, code, why, h);
    int runnable = 0;
    for (int i = 0; i < gw->n_shards; i++)
        runnable += gw->shards[i].status != GW_FAILED;
    if (runnable)
        return;
    snprintf(gw->fatal, sizeof(gw->fatal), "gateway closed with %d: %s", code, h);
    gw->fatal_rc = code == 4004 ? SH_EAUTH : SH_ECONFIG;
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

void gw_gateway_emit(struct gw_gateway *gw, struct gw_shard *s, const char *t, size_t t_len,
                     uint64_t seq, const char *d, size_t d_len, uint64_t now_ms)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!gw->pending)
            gw->pending = gw_chunk_new(gw->cfg->max_payload_bytes + CHUNK_SLACK);
        if (!gw->pending)
            break;
        int rc = gw_chunk_append(gw->pending, s->id, gw->total, t, t_len, seq, d, d_len, now_ms);
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
    for (int i = 0; i < gw->n_shards; i++)
        gw_shard_start(&gw->shards[i]);
    int rc = 0;
    while (!gw->done) {
        if (gw->stop_requested && !gw->stopping)
            begin_stop(gw);
        int n = lws_service(gw->ctx, 0);
        flush_pending(gw);
        if (n < 0) {
            log_error("msg=\"websocket service failed\"");
            rc = SH_ENET;
            break;
        }
        if (gw->stopping && !live_sockets(gw))
            gw->done = 1;
    }
    flush_pending(gw);
    lws_sul_cancel(&gw->sul_stop_deadline);
    return rc ? rc : gw->fatal_rc;
}

void gw_gateway_stop(struct gw_gateway *gw)
{
    gw->stop_requested = 1;
    atomic_thread_fence(memory_order_seq_cst);
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
    if (gw->ctx)
        lws_context_destroy(gw->ctx);
    for (int i = 0; gw->shards && i < gw->n_shards; i++)
        gw_shard_destroy(&gw->shards[i]);
    free(gw->shards);
    free(gw->buckets);
    free(gw->txbuf);
    gw_chunk_free(gw->pending);
    free(gw);
}
