/*
 * http/stats.h: what the control server adds to the metrics registry (lib/metrics.h): its own
 * request counters and a collector that mirrors the gateway's status snapshot (shard status,
 * latency, sequence, guilds, identifies, resumes, session budget) at every /metrics render.
 */
#ifndef SHARDHOOK_HTTP_STATS_H
#define SHARDHOOK_HTTP_STATS_H

#include "http/route.h"
#include "lib/buf.h"

struct http_ctx;

/* Register the metrics and the gateway collector for ctx. */
void http_stats_attach(struct http_ctx *ctx);
/* Remove the collector (before ctx goes away; no render may run concurrently). */
void http_stats_detach(struct http_ctx *ctx);
/* Count one answered request. */
void http_stats_request(enum http_route route, int status, double seconds);
/* The whole registry in Prometheus text format. */
int http_stats_render(struct sh_buf *out);

#endif
