/*
 * http/stats.c: the control server's metrics (http/stats.h). Owns the registry handles it
 * registers; reads the gateway only through ctx->ops->snapshot.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/handlers.h"
#include "http/stats.h"
#include "lib/metrics.h"

static const char *const statuses[] = {"queued",      "connecting",   "handshaking",
                                       "identifying", "resuming",     "loading",
                                       "ready",       "disconnected", "failed"};
#define N_STATUSES (sizeof(statuses) / sizeof(statuses[0]))

static struct sh_metric *m_requests, *m_duration, *m_shards, *m_status, *m_up, *m_latency, *m_seq,
    *m_guilds, *m_events, *m_identifies, *m_resumes, *m_queued, *m_total, *m_here, *m_sess_total,
    *m_sess_remaining, *m_sess_reset, *m_eta;

static void register_all(void)
{
    static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                     0.25,   0.5,   1,      2.5,   5,    10,    30};
    m_requests = sh_metric_counter("shardhook_api_requests_total",
                                   "Control API requests by route and status", "route,code");
    m_duration = sh_metric_histogram("shardhook_api_request_duration_seconds",
                                     "Control API time from request to answer (waits included)",
                                     "route", buckets, sizeof(buckets) / sizeof(buckets[0]));
    m_total = sh_metric_gauge("shardhook_gateway_shard_count",
                              "The bot's shard count (every process)", NULL);
    m_here = sh_metric_gauge("shardhook_gateway_shards", "Shards run by this process", NULL);
    m_shards = sh_metric_gauge("shardhook_shards_by_status", "Shards of this process per status",
                               "status");
    m_status =
        sh_metric_gauge("shardhook_shard_status",
                        "1 for the shard's current status, 0 for the others", "shard,status");
    m_up = sh_metric_gauge("shardhook_shard_ready", "1 when the shard is ready", "shard");
    m_latency = sh_metric_gauge("shardhook_shard_latency_seconds",
                                "Heartbeat to ACK time of the shard's last heartbeat", "shard");
    m_seq = sh_metric_gauge("shardhook_shard_sequence", "Last sequence number seen", "shard");
    m_guilds = sh_metric_gauge("shardhook_shard_guilds", "Guilds on the shard", "shard");
    m_events = sh_metric_counter("shardhook_shard_events_total", "Dispatches received", "shard");
    m_identifies = sh_metric_counter("shardhook_shard_identifies_total", "IDENTIFYs sent", "shard");
    m_resumes = sh_metric_counter("shardhook_shard_resumes_total", "RESUMEs sent", "shard");
    m_queued = sh_metric_gauge("shardhook_shard_queued_sends",
                               "Payloads waiting in the shard's send queue", "shard");
    m_sess_total = sh_metric_gauge("shardhook_session_start_limit_total",
                                   "Identifies allowed per reset period", NULL);
    m_sess_remaining = sh_metric_gauge("shardhook_session_start_limit_remaining",
                                       "Identifies left before the reset", NULL);
    m_sess_reset = sh_metric_gauge("shardhook_session_start_limit_reset_seconds",
                                   "Seconds until the identify budget refills", NULL);
    m_eta = sh_metric_gauge("shardhook_startup_eta_seconds",
                            "Seconds until every shard should have identified (-1 unknown)", NULL);
}

static void collect(void *ud)
{
    struct http_ctx *ctx = ud;
    struct gw_overview ov;
    memset(&ov, 0, sizeof(ov));
    int n = ctx->ops->snapshot(ctx->gw, &ov, NULL, 0);
    if (n < 0)
        n = 0;
    struct gw_shard_info *s = calloc((size_t)(n ? n : 1), sizeof(*s));
    if (!s)
        return;
    int got = ctx->ops->snapshot(ctx->gw, &ov, s, n);
    if (got < n)
        n = got;
    sh_metric_set(m_total, ctx->ops->total(ctx->gw));
    sh_metric_set(m_here, n);
    int per[N_STATUSES] = {0};
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof(id), "%d", s[i].id);
        const char *st = s[i].status ? s[i].status : "queued";
        for (size_t k = 0; k < N_STATUSES; k++) {
            int is = !strcmp(st, statuses[k]);
            per[k] += is;
            sh_metric_set(m_status, is, id, statuses[k]);
        }
        sh_metric_set(m_up, !strcmp(st, "ready"), id);
        if (s[i].latency_ms >= 0)
            sh_metric_set(m_latency, s[i].latency_ms / 1000.0, id);
        sh_metric_set(m_seq, (double)s[i].seq, id);
        sh_metric_set(m_guilds, s[i].guilds, id);
        sh_metric_set(m_events, (double)s[i].events, id);
        sh_metric_set(m_identifies, s[i].identifies, id);
        sh_metric_set(m_resumes, s[i].resumes, id);
        sh_metric_set(m_queued, s[i].queued_sends, id);
    }
    for (size_t k = 0; k < N_STATUSES; k++)
        sh_metric_set(m_shards, per[k], statuses[k]);
    free(s);
    sh_metric_set(m_sess_total, ov.session_total);
    sh_metric_set(m_sess_remaining, ov.session_remaining);
    sh_metric_set(m_sess_reset, ov.session_reset_at_ms > ov.published_at_ms
                                    ? (double)(ov.session_reset_at_ms - ov.published_at_ms) / 1000.0
                                    : 0);
    sh_metric_set(m_eta, ov.eta_ms >= 0 ? (double)ov.eta_ms / 1000.0 : -1);
}

void http_stats_attach(struct http_ctx *ctx)
{
    register_all();
    sh_metrics_on_collect(collect, ctx);
}

void http_stats_detach(struct http_ctx *ctx)
{
    sh_metrics_off_collect(collect, ctx);
}

void http_stats_request(enum http_route route, int status, double seconds)
{
    char code[8];
    snprintf(code, sizeof(code), "%d", status);
    const char *name = http_route_name(route);
    sh_metric_add(m_requests, 1, name, code);
    sh_metric_observe(m_duration, seconds, name);
}

int http_stats_render(struct sh_buf *out)
{
    return sh_metrics_render(out);
}
