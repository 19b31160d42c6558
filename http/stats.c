/*
 * http/stats.c: the control server's metrics (http/stats.h), shardhook_build_info and the
 * standard process_* metrics (read from /proc at each scrape). Owns the registry handles it
 * registers; reads the gateway only through ctx->ops->snapshot.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "http/handlers.h"
#include "http/internal.h"
#include "http/stats.h"
#include "lib/metrics.h"
#include "lib/version.h"

static struct sh_metric *m_requests, *m_duration, *m_shards, *m_status, *m_up, *m_latency, *m_seq,
    *m_guilds, *m_events, *m_identifies, *m_resumes, *m_queued, *m_total, *m_here, *m_sess_total,
    *m_sess_remaining, *m_sess_reset, *m_eta, *m_build, *m_cpu, *m_rss, *m_vsz, *m_fds, *m_max_fds,
    *m_start;

static void register_all(void)
{
    static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                     0.25,   0.5,   1,      2.5,   5,    10,    30};
    m_requests = sh_metric_counter("shardhook_api_requests_total",
                                   "Control API requests by route and status", "route,code");
    m_duration = sh_metric_histogram("shardhook_api_request_duration_seconds",
                                     "Control API time from request to answer (waits included)",
                                     "route", buckets, sizeof(buckets) / sizeof(buckets[0]));
    m_total = sh_metric_gauge("shardhook_gateway_bot_shards",
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
    m_sess_total = sh_metric_gauge("shardhook_session_start_limit_max",
                                   "Identifies allowed per reset period", NULL);
    m_sess_remaining = sh_metric_gauge("shardhook_session_start_limit_remaining",
                                       "Identifies left before the reset", NULL);
    m_sess_reset = sh_metric_gauge("shardhook_session_start_limit_reset_seconds",
                                   "Seconds until the identify budget refills", NULL);
    m_eta = sh_metric_gauge("shardhook_startup_eta_seconds",
                            "Seconds until every shard should have identified (-1 unknown)", NULL);
    m_build =
        sh_metric_gauge("shardhook_build_info", "Always 1; the version is a label", "version");
    sh_metric_set(m_build, 1, SHARDHOOK_VERSION);
    m_cpu = sh_metric_counter("process_cpu_seconds_total",
                              "Total user and system CPU time spent in seconds", NULL);
    m_rss = sh_metric_gauge("process_resident_memory_bytes", "Resident memory size in bytes", NULL);
    m_vsz = sh_metric_gauge("process_virtual_memory_bytes", "Virtual memory size in bytes", NULL);
    m_fds = sh_metric_gauge("process_open_fds", "Number of open file descriptors", NULL);
    m_max_fds = sh_metric_gauge("process_max_fds", "Maximum number of open file descriptors", NULL);
    m_start = sh_metric_gauge("process_start_time_seconds",
                              "Start time of the process since unix epoch in seconds", NULL);
}

/* Boot time in unix seconds (/proc/stat btime), 0 when unknown. */
static double boot_time(void)
{
    char line[256];
    double bt = 0;
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "btime %lf", &bt) == 1)
            break;
    fclose(f);
    return bt;
}

/* The process_* figures, as Prometheus' client libraries compute them on Linux. */
static void collect_process(void)
{
    static double start_s = -1;
    char buf[1024];
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/stat", "re");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    unsigned long long ut, st, starttime, vsize;
    long long rss;
    if (p && tick > 0 &&
        sscanf(p + 2,
               "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
               "%llu %llu %lld",
               &ut, &st, &starttime, &vsize, &rss) == 5) {
        sh_metric_set(m_cpu, (double)(ut + st) / (double)tick);
        sh_metric_set(m_vsz, (double)vsize);
        sh_metric_set(m_rss, (double)rss * (double)page);
        if (start_s < 0) {
            double bt = boot_time();
            start_s = bt > 0 ? bt + (double)starttime / (double)tick : 0;
        }
        if (start_s > 0)
            sh_metric_set(m_start, start_s);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        long fds = 0;
        for (struct dirent *e; (e = readdir(d));)
            fds += e->d_name[0] != '.';
        closedir(d);
        sh_metric_set(m_fds, (double)(fds - 1)); /* not the one opendir holds */
    }
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl))
        sh_metric_set(m_max_fds, rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur);
}

static void collect(void *ud)
{
    struct http_ctx *ctx = ud;
    collect_process();
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
    int per[GW_STATUS_COUNT] = {0};
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof(id), "%d", s[i].id);
        const char *st = http__status_name(&s[i]);
        for (size_t k = 0; k < GW_STATUS_COUNT; k++) {
            int is = !strcmp(st, gw_status_names[k]);
            per[k] += is;
            sh_metric_set(m_status, is, id, gw_status_names[k]);
        }
        sh_metric_set(m_up, http__shard_ready(&s[i]), id);
        if (s[i].latency_ms >= 0)
            sh_metric_set(m_latency, s[i].latency_ms / 1000.0, id);
        sh_metric_set(m_seq, (double)s[i].seq, id);
        sh_metric_set(m_guilds, s[i].guilds, id);
        sh_metric_set(m_events, (double)s[i].events, id);
        sh_metric_set(m_identifies, s[i].identifies, id);
        sh_metric_set(m_resumes, s[i].resumes, id);
        sh_metric_set(m_queued, s[i].queued_sends, id);
    }
    for (size_t k = 0; k < GW_STATUS_COUNT; k++)
        sh_metric_set(m_shards, per[k], gw_status_names[k]);
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
