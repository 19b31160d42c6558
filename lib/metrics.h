/*
 * lib/metrics.h: the process-wide metrics registry (counters, gauges, histograms with labels)
 * and its Prometheus text exposition (format 0.0.4). Any room may register and update
 * metrics from any thread; http/ renders them on GET /metrics. Owns only its own tables.
 *
 * Usage:
 *
 *     static struct sh_metric *m_sent;
 *     m_sent = sh_metric_counter("shardhook_webhook_requests_total",
 *                                "Webhook requests by webhook and outcome", "webhook,outcome");
 *     sh_metric_add(m_sent, 1, "0", "2xx");            // one value per label name, in order
 *
 *     struct sh_metric *lat = sh_metric_histogram("shardhook_webhook_seconds", "Request time",
 *                                                  "webhook", SH_METRIC_BUCKETS_SECONDS);
 *     sh_metric_observe(lat, 0.042, "0");
 *
 *     struct sh_metric *q = sh_metric_gauge("shardhook_webhook_queue_events", "Queued", "webhook");
 *     sh_metric_set(q, 12, "0");
 *
 * - Registering is idempotent: the same name and kind returns the same handle, so two files
 *   may both "register" a metric. A different kind or label list under the same name returns
 *   NULL (and logs). Handles stay valid until sh_metrics_reset() (tests only).
 * - Names follow Prometheus rules ([a-zA-Z_:][a-zA-Z0-9_:]*); label names are given as one
 *   comma-separated string ("" or NULL for none; at most SH_METRIC_MAX_LABELS).
 * - Updating functions take exactly as many label values (const char *) as the metric has
 *   label names. Values are copied (capped at SH_METRIC_MAX_VALUE bytes) and escaped when
 *   rendered. Each call takes one short mutex; a NULL handle is ignored, so a failed
 *   registration never crashes a hot path.
 * - Hot paths may resolve a label set once: sh_metric_series() returns a stable series handle,
 *   then sh_series_add/set/observe skip the label lookup.
 * - A metric holds at most SH_METRIC_MAX_SERIES label sets; updates for more are dropped
 *   (counted in shardhook_metrics_dropped_series_total).
 * - sh_metrics_on_collect() registers a callback that runs at the start of every render
 *   (outside the registry lock), so a room can refresh gauges from its snapshots on demand.
 */
#ifndef SHARDHOOK_LIB_METRICS_H
#define SHARDHOOK_LIB_METRICS_H

#include <stddef.h>

#include "lib/buf.h"

#define SH_METRIC_MAX_FAMILIES 256
#define SH_METRIC_MAX_LABELS 4
#define SH_METRIC_MAX_SERIES 65536 /* per metric: 1,000 shards x 9 statuses fit */
#define SH_METRIC_MAX_BUCKETS 24
#define SH_METRIC_MAX_VALUE 128 /* bytes of one label value */
#define SH_METRIC_MAX_COLLECTORS 16

enum sh_metric_kind { SH_METRIC_COUNTER = 0, SH_METRIC_GAUGE, SH_METRIC_HISTOGRAM };

struct sh_metric;
struct sh_metric_series;

/* Default histogram bounds in seconds (1 ms .. 30 s); pass as `bounds` with its count. */
#define SH_METRIC_BUCKETS_SECONDS sh_metric_buckets_seconds, 14
extern const double sh_metric_buckets_seconds[14];

struct sh_metric *sh_metric_counter(const char *name, const char *help, const char *labels);
struct sh_metric *sh_metric_gauge(const char *name, const char *help, const char *labels);
/* bounds: strictly increasing upper bounds, without +Inf (added), at most SH_METRIC_MAX_BUCKETS. */
struct sh_metric *sh_metric_histogram(const char *name, const char *help, const char *labels,
                                      const double *bounds, int n_bounds);

/* Counter or gauge += v (counters ignore negative v). Label values follow. */
void sh_metric_add(struct sh_metric *m, double v, ...);
/* Gauge = v (also allowed on counters, for values mirrored from a snapshot). */
void sh_metric_set(struct sh_metric *m, double v, ...);
/* Histogram: count one observation of v. */
void sh_metric_observe(struct sh_metric *m, double v, ...);

/* The series for a label set (created on first use), or NULL when the metric is full. */
struct sh_metric_series *sh_metric_series(struct sh_metric *m, ...);
/* Same with the values in an array of the metric's label count. */
struct sh_metric_series *sh_metric_series_v(struct sh_metric *m, const char *const *values);
void sh_series_add(struct sh_metric_series *s, double v);
void sh_series_set(struct sh_metric_series *s, double v);
void sh_series_observe(struct sh_metric_series *s, double v);

/* Current value of a counter/gauge series, or a histogram's count (tests, status). 0 if absent. */
double sh_metric_value(struct sh_metric *m, ...);

/* Call fn(ud) at the start of every render; SH_ETOOBIG past SH_METRIC_MAX_COLLECTORS. */
int sh_metrics_on_collect(void (*fn)(void *ud), void *ud);
/* Forget a collector registered with the same fn and ud (before ud is freed). */
void sh_metrics_off_collect(void (*fn)(void *ud), void *ud);

/*
 * Append the text exposition of every metric (families in registration order, series in
 * creation order) to out. Returns 0, or SH_ETOOBIG/SH_ENOMEM from the buffer (out then holds
 * a truncated prefix).
 */
int sh_metrics_render(struct sh_buf *out);

/* Forget every metric and collector; handles become invalid. Tests only. */
void sh_metrics_reset(void);

#endif
