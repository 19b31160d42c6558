/*
 * tests/unit/test_http_cluster.c: the cluster views of the control API (http/h_cluster.c)
 * against a fake gateway holding shards 0 and 1 and a canned cluster view: GET /v1/shards lists
 * this node's shards from its snapshot and the others from the view, each once, with "node" and
 * "stale", and never a view entry naming this node that its snapshot lacks; degraded, only its
 * own; /v1/shards/{id} answers for another node's shard; /v1/cluster counts per node and says
 * whether the whole cluster is ready; /readyz says why it is not; without a view (single node)
 * every answer is as before and /v1/cluster is 404 not_clustered.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "gateway/gateway.h"
#include "http/handlers.h"
#include "http/internal.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "test.h"

#define HERE 2 /* shards 0 and 1 run here */

static int f_runs(void *g, int id)
{
    (void)g;
    return id >= 0 && id < HERE;
}

static int f_shard_info(void *g, int id, struct gw_shard_info *out)
{
    if (!f_runs(g, id))
        return SH_ENOTFOUND;
    memset(out, 0, sizeof(*out));
    out->id = id;
    out->status = gw_status_names[id == 0 ? GW_READY : GW_LOADING];
    out->latency_ms = 40;
    snprintf(out->session_id, sizeof(out->session_id), "s%d", id);
    return 0;
}

static int f_snapshot(void *g, struct gw_overview *ov, struct gw_shard_info *s, int cap)
{
    memset(ov, 0, sizeof(*ov));
    for (int id = 0; id < HERE && id < cap; id++)
        f_shard_info(g, id, &s[id]);
    return HERE;
}

static int f_total(void *g)
{
    (void)g;
    return 5;
}

static const struct http_gateway_ops ops = {
    .snapshot = f_snapshot, .shard_info = f_shard_info, .total = f_total, .runs = f_runs};

/* The view cl_cluster_view would give: node-a (here) holds 0 and 1; node-b 2 (fresh) and 3
   (stale); the view still lists 1 under node-b and 4 under node-a (released here). */
static const char *view_text;
static const char VIEW[] =
    "{\"node\":\"node-a\",\"total\":5,\"degraded\":%s,\"reachable\":%s,\"read_at\":1700000000000,"
    "\"redis_rtt_ms\":1,\"lease_ms\":2000,\"unclaimed\":%d,\"shards_held\":2,"
    "\"nodes\":[{\"name\":\"node-a\",\"api\":\"http://a\",\"alive\":true,\"epoch\":1,"
    "\"lease_age_ms\":100,\"held\":2,\"max_shards\":10,\"version\":\"1.0\",\"started\":"
    "1700000000000},"
    "{\"name\":\"node-b\",\"api\":\"\",\"alive\":true,\"epoch\":2,\"lease_age_ms\":300,\"held\":2,"
    "\"max_shards\":10,\"version\":\"1.0\",\"started\":1700000000000}],"
    "\"statuses\":[{\"id\":1,\"node\":\"node-b\",\"status\":\"ready\",\"at\":1,\"stale\":true},"
    "{\"id\":2,\"node\":\"node-b\",\"status\":\"ready\",\"latency_ms\":12,\"session_id\":\"x2\","
    "\"seq\":9,\"last_event_at\":1700000000000,\"at\":1700000000000,\"stale\":false},"
    "{\"id\":3,\"node\":\"node-b\",\"status\":\"ready\",\"latency_ms\":-1,\"session_id\":\"\","
    "\"at\":1,\"stale\":true},"
    "{\"id\":4,\"node\":\"node-a\",\"status\":\"ready\",\"at\":1,\"stale\":false}],"
    "\"gaps\":[{\"id\":\"1-0\",\"shard\":3,\"session_id\":\"old\",\"seq\":4,"
    "\"reason\":\"invalid_session\",\"node\":\"node-b\"}],"
    "\"budget\":{\"total\":1000,\"remaining\":990,\"reserve\":50,\"identify_stopped\":false,"
    "\"reset_at\":0}}";

static cJSON *f_view(void *ud)
{
    (void)ud;
    return cJSON_Parse(view_text);
}

static const struct http_cluster_ops cluster_ops = {.view = f_view};

static struct cfg_config cfg;
static struct http_ctx ctx = {.cfg = &cfg, .ops = &ops, .request_timeout_ms = 1000};
static struct http_reply r;
static cJSON *answer;
static char buf[8192];

static void use_view(int degraded, int unclaimed)
{
    snprintf(buf, sizeof(buf), VIEW, degraded ? "true" : "false", degraded ? "false" : "true",
             unclaimed);
    view_text = buf;
    atomic_store(&ctx.cluster, &cluster_ops);
}

static void nop(void *token)
{
    (void)token;
}

static int call(enum http_route route, const char *param)
{
    struct http_call c = {.token = NULL, .suspend = nop, .resume = nop};
    http_reply_free(&r);
    http_reply_init(&r);
    http_handle(&ctx, &c, route, param, "", 0, &r);
    cJSON_Delete(answer);
    answer = r.body.len ? cJSON_ParseWithLength(r.body.data, r.body.len) : NULL;
    return r.status;
}

static const cJSON *at(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* "id:node:stale" of each listed shard, joined by spaces. */
static const char *listing(void)
{
    static char out[512];
    out[0] = '\0';
    const cJSON *e;
    cJSON_ArrayForEach(e, at(answer, "shards"))
    {
        size_t n = strlen(out);
        snprintf(out + n, sizeof(out) - n, "%s%d:%s:%d", n ? " " : "", at(e, "id")->valueint,
                 at(e, "node")->valuestring, cJSON_IsTrue(at(e, "stale")));
    }
    return out;
}

TEST(single_node_answers_as_before)
{
    atomic_store(&ctx.cluster, NULL);
    ASSERT_EQ(call(HTTP_ROUTE_SHARDS, ""), 200);
    ASSERT(!at(answer, "cluster"));
    ASSERT(!at(at(answer, "shards")->child, "node"));
    ASSERT_EQ(call(HTTP_ROUTE_CLUSTER, ""), 404);
    ASSERT_CONTAINS(r.body.data, "\"not_clustered\"");
    ASSERT_EQ(call(HTTP_ROUTE_SHARD, "3"), 404);
}

TEST(shards_list_every_shard_once_with_its_node)
{
    use_view(0, 0);
    ASSERT_EQ(call(HTTP_ROUTE_SHARDS, ""), 200);
    ASSERT_STR_EQ(listing(), "0:node-a:0 1:node-a:0 2:node-b:0 3:node-b:1");
    ASSERT_STR_EQ(at(answer, "cluster")->valuestring, "ok");
    ASSERT_EQ(at(answer, "shard_count")->valueint, 5);
    const cJSON *two = cJSON_GetArrayItem(at(answer, "shards"), 2);
    ASSERT_STR_EQ(at(two, "session_id")->valuestring, "x2");
    ASSERT_EQ(at(two, "latency_ms")->valueint, 12);
    ASSERT_STR_EQ(at(two, "last_event_at")->valuestring, "2023-11-14T22:13:20.000Z");
    const cJSON *three = cJSON_GetArrayItem(at(answer, "shards"), 3);
    ASSERT(cJSON_IsNull(at(three, "latency_ms")) && cJSON_IsNull(at(three, "session_id")));
    ASSERT_EQ(call(HTTP_ROUTE_SHARD, "2"), 200);
    ASSERT_STR_EQ(at(answer, "node")->valuestring, "node-b");
    ASSERT_EQ(call(HTTP_ROUTE_SHARD, "1"), 200); /* here, from the snapshot */
    ASSERT_STR_EQ(at(answer, "status")->valuestring, "loading");
    ASSERT_EQ(call(HTTP_ROUTE_SHARD, "4"), 404); /* the view names this node; it does not hold it */
    ASSERT_EQ(call(HTTP_ROUTE_SHARD, "x"), 400);
}

TEST(degraded_lists_only_its_own)
{
    use_view(1, 0);
    ASSERT_EQ(call(HTTP_ROUTE_SHARDS, ""), 200);
    ASSERT_STR_EQ(listing(), "0:node-a:0 1:node-a:0");
    ASSERT_STR_EQ(at(answer, "cluster")->valuestring, "degraded");
    ASSERT_EQ(call(HTTP_ROUTE_SHARD, "2"), 404);
    ASSERT_CONTAINS(r.body.data, "degraded");
    ASSERT_EQ(call(HTTP_ROUTE_READYZ, ""), 503);
    ASSERT_STR_EQ(at(answer, "cluster")->valuestring, "degraded");
    ASSERT_EQ(call(HTTP_ROUTE_CLUSTER, ""), 200);
    ASSERT_STR_EQ(at(answer, "cluster")->valuestring, "degraded");
    ASSERT(cJSON_IsFalse(at(answer, "ready")));
}

TEST(cluster_counts_per_node_and_says_whether_all_is_ready)
{
    use_view(0, 0);
    ASSERT_EQ(call(HTTP_ROUTE_CLUSTER, ""), 200);
    ASSERT(cJSON_IsFalse(at(answer, "ready"))); /* 1 loading, 3 stale, 4 unheld */
    const cJSON *sh = at(answer, "shards");
    ASSERT_EQ(at(sh, "held")->valueint, 3);
    ASSERT_EQ(at(sh, "ready")->valueint, 2);
    ASSERT_EQ(at(sh, "stale")->valueint, 1);
    ASSERT_EQ(at(sh, "unheld")->valueint, 1);
    const cJSON *a = cJSON_GetArrayItem(at(answer, "nodes"), 0);
    const cJSON *b = cJSON_GetArrayItem(at(answer, "nodes"), 1);
    ASSERT_EQ(at(a, "shards_held")->valueint, 2);
    ASSERT_EQ(at(a, "shards_ready")->valueint, 1);
    ASSERT_EQ(at(b, "shards_held")->valueint, 1);
    ASSERT(cJSON_IsNull(at(b, "api")));
    ASSERT_STR_EQ(at(a, "up_since")->valuestring, "2023-11-14T22:13:20.000Z");
    ASSERT_EQ(at(at(answer, "budget"), "remaining")->valueint, 990);
    ASSERT(cJSON_IsNull(at(at(answer, "budget"), "reset_at")));
    ASSERT_EQ(cJSON_GetArraySize(at(answer, "gaps")), 1);
    ASSERT(cJSON_IsTrue(at(at(answer, "redis"), "reachable")));
}

TEST(readyz_says_why_not)
{
    use_view(0, 0);
    ASSERT_EQ(call(HTTP_ROUTE_READYZ, ""), 503); /* shard 1 is loading */
    ASSERT_CONTAINS(r.body.data, "1 of the 2 shards this node holds are not ready");
    use_view(0, 3);
    ASSERT_EQ(call(HTTP_ROUTE_READYZ, ""), 503);
    atomic_store(&ctx.cluster, NULL);
}

static void setup(void)
{
    sh_log_level = SH_LOG_OFF;
    http_reply_init(&r);
}

TEST_MAIN(setup(); RUN(single_node_answers_as_before);
          RUN(shards_list_every_shard_once_with_its_node); RUN(degraded_lists_only_its_own);
          RUN(cluster_counts_per_node_and_says_whether_all_is_ready); RUN(readyz_says_why_not);
          http_reply_free(&r); cJSON_Delete(answer);)
