/* tests/unit/test_metrics.c: the metrics registry (lib/metrics.c) and its text exposition. */
#include <pthread.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/metrics.h"
#include "test.h"

static char *render(struct sh_buf *b)
{
    sh_buf_init(b, (size_t)16 << 20); /* as /metrics allows: a full metric is several MiB */
    if (sh_metrics_render(b))
        return NULL;
    return b->data;
}

TEST(counter_with_labels)
{
    sh_metrics_reset();
    struct sh_metric *c = sh_metric_counter("t_requests_total", "Requests", "code, route");
    ASSERT(c != NULL);
    sh_metric_add(c, 1, "200", "/v1/shards");
    sh_metric_add(c, 2, "200", "/v1/shards");
    sh_metric_add(c, 1, "404", "/x\"y\\z\n");
    sh_metric_add(c, -5, "200", "/v1/shards"); /* counters never go down */
    ASSERT_EQ(sh_metric_value(c, "200", "/v1/shards"), 3);
    struct sh_buf b;
    char *t = render(&b);
    ASSERT_CONTAINS(t, "# HELP t_requests_total Requests\n# TYPE t_requests_total counter\n");
    ASSERT_CONTAINS(t, "t_requests_total{code=\"200\",route=\"/v1/shards\"} 3\n");
    ASSERT_CONTAINS(t, "t_requests_total{code=\"404\",route=\"/x\\\"y\\\\z\\n\"} 1\n");
    sh_buf_free(&b);
}

TEST(register_is_idempotent_and_checks_shape)
{
    sh_metrics_reset();
    struct sh_metric *a = sh_metric_gauge("t_g", "G", "shard");
    ASSERT(a != NULL);
    ASSERT(sh_metric_gauge("t_g", "G again", "shard") == a);
    ASSERT(sh_metric_counter("t_g", "G", "shard") == NULL);
    ASSERT(sh_metric_gauge("t_g", "G", "other") == NULL);
    ASSERT(sh_metric_gauge("bad name", "", NULL) == NULL);
    ASSERT(sh_metric_gauge("t_h", "", "le") == NULL);
    ASSERT(sh_metric_gauge("t_h", "", "a,b,c,d,e") == NULL);
    sh_metric_set(a, 5, "0");
    sh_metric_set(a, -2.5, "0");
    sh_metric_add(NULL, 1); /* ignored */
    ASSERT(sh_metric_value(a, "0") == -2.5);
    struct sh_buf b;
    char *t = render(&b);
    ASSERT_CONTAINS(t, "t_g{shard=\"0\"} -2.5\n");
    sh_buf_free(&b);
}

TEST(histogram_buckets_are_cumulative)
{
    sh_metrics_reset();
    static const double bounds[] = {0.1, 1, 10};
    struct sh_metric *h = sh_metric_histogram("t_seconds", "Time", NULL, bounds, 3);
    ASSERT(h != NULL);
    sh_metric_observe(h, 0.05);
    sh_metric_observe(h, 0.5);
    sh_metric_observe(h, 0.5);
    sh_metric_observe(h, 100);
    struct sh_buf b;
    char *t = render(&b);
    ASSERT_CONTAINS(t, "# TYPE t_seconds histogram\n");
    ASSERT_CONTAINS(t, "t_seconds_bucket{le=\"0.1\"} 1\n");
    ASSERT_CONTAINS(t, "t_seconds_bucket{le=\"1\"} 3\n");
    ASSERT_CONTAINS(t, "t_seconds_bucket{le=\"10\"} 3\n");
    ASSERT_CONTAINS(t, "t_seconds_bucket{le=\"+Inf\"} 4\n");
    ASSERT_CONTAINS(t, "t_seconds_sum 101.05\n");
    ASSERT_CONTAINS(t, "t_seconds_count 4\n");
    sh_buf_free(&b);
}

TEST(series_handles_and_cap)
{
    sh_metrics_reset();
    struct sh_metric *c = sh_metric_counter("t_many_total", "", "i");
    struct sh_metric_series *s = sh_metric_series(c, "x");
    ASSERT(s != NULL);
    ASSERT(sh_metric_series(c, "x") == s);
    sh_series_add(s, 4);
    ASSERT_EQ(sh_metric_value(c, "x"), 4);
    char v[16];
    for (int i = 0; i < SH_METRIC_MAX_SERIES + 10; i++) {
        snprintf(v, sizeof(v), "%d", i);
        sh_metric_add(c, 1, v);
    }
    struct sh_buf b;
    char *t = render(&b);
    ASSERT_CONTAINS(t, "shardhook_metrics_dropped_series_total 11\n");
    sh_buf_free(&b);
}

static int collected;
static void collect(void *ud)
{
    collected++;
    sh_metric_set(ud, collected, "a");
}

TEST(collectors_run_before_render)
{
    sh_metrics_reset();
    struct sh_metric *g = sh_metric_gauge("t_live", "", "k");
    ASSERT_EQ(sh_metrics_on_collect(collect, g), 0);
    struct sh_buf b;
    char *t = render(&b);
    ASSERT_CONTAINS(t, "t_live{k=\"a\"} 1\n");
    sh_buf_free(&b);
}

TEST(render_respects_the_cap)
{
    sh_metrics_reset();
    struct sh_metric *c = sh_metric_counter("t_cap_total", "", "i");
    sh_metric_add(c, 1, "a-long-enough-label-value");
    struct sh_buf b;
    sh_buf_init(&b, 16);
    ASSERT(sh_metrics_render(&b) < 0);
    sh_buf_free(&b);
}

static struct sh_metric *shared;
static void *hammer(void *arg)
{
    (void)arg;
    for (int i = 0; i < 10000; i++)
        sh_metric_add(shared, 1, i % 2 ? "odd" : "even");
    return NULL;
}

TEST(threads_do_not_lose_updates)
{
    sh_metrics_reset();
    shared = sh_metric_counter("t_threads_total", "", "k");
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, hammer, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    ASSERT_EQ(sh_metric_value(shared, "odd"), 20000);
    ASSERT_EQ(sh_metric_value(shared, "even"), 20000);
    sh_metrics_reset();
}

TEST_MAIN(RUN(counter_with_labels); RUN(register_is_idempotent_and_checks_shape);
          RUN(histogram_buckets_are_cumulative); RUN(series_handles_and_cap);
          RUN(collectors_run_before_render); RUN(render_respects_the_cap);
          RUN(threads_do_not_lose_updates);)
