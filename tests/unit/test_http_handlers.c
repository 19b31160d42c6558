/*
 * tests/unit/test_http_handlers.c: http_handle (http/handlers.h) against a fake gateway behind
 * struct http_gateway_ops: every row of the route table answers through its own handler, the
 * presence endpoint applies the config's presence rules (cfg_presence_parse) and takes request
 * strings literally, /metrics labels shard statuses with the gateway's own names, and a
 * webhook's action runs through its route's handler (http/action.c).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "gateway/gateway.h"
#include "http/forward.h"
#include "http/handlers.h"
#include "http/internal.h"
#include "http/stats.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "test.h"

#define TOTAL 2

static struct {
    int sends;
    int shard;
    char payload[8192];
} gw;

static int runs_only_0; /* cluster mode: shard 1 is another node's */

static int f_runs(void *g, int id)
{
    (void)g;
    return id >= 0 && id < TOTAL && !(runs_only_0 && id != 0);
}

static int f_send(void *g, int id, const char *payload, size_t len)
{
    (void)g;
    gw.sends++;
    gw.shard = id;
    snprintf(gw.payload, sizeof(gw.payload), "%.*s", (int)len, payload);
    return 0;
}

static int f_reconnect(void *g, int id, int resume)
{
    (void)g, (void)id, (void)resume;
    return 0;
}

static int f_shard_info(void *g, int id, struct gw_shard_info *out)
{
    if (!f_runs(g, id))
        return SH_ENOTFOUND;
    memset(out, 0, sizeof(*out));
    out->id = id;
    out->status = gw_status_names[GW_STATUS_COUNT - 1 - id]; /* "failed", "disconnected" */
    out->latency_ms = -1;
    return 0;
}

static int f_snapshot(void *g, struct gw_overview *ov, struct gw_shard_info *s, int cap)
{
    memset(ov, 0, sizeof(*ov));
    ov->total = ov->n_shards = TOTAL;
    ov->eta_ms = ov->next_identify_in_ms = -1;
    for (int id = 0; id < TOTAL && id < cap; id++)
        f_shard_info(g, id, &s[id]);
    return TOTAL;
}

static int f_total(void *g)
{
    (void)g;
    return TOTAL;
}

static const struct http_gateway_ops ops = {
    .send = f_send,
    .reconnect = f_reconnect,
    .snapshot = f_snapshot,
    .shard_info = f_shard_info,
    .total = f_total,
    .runs = f_runs,
};

static void nop(void *token)
{
    (void)token;
}

static struct cfg_config cfg;
static struct http_ctx ctx = {.cfg = &cfg, .ops = &ops, .request_timeout_ms = 1000};
static struct http_reply r;
static char code[64], message[512];

/* Answer route with param and body into r; code and message of an error answer. */
static int call(enum http_route route, const char *param, const char *body)
{
    struct http_call c = {.token = NULL, .suspend = nop, .resume = nop};
    http_reply_free(&r);
    http_reply_init(&r);
    gw.sends = 0;
    gw.payload[0] = code[0] = message[0] = '\0';
    struct http_pending_cfg pc = {.send = f_send, .wake = nop, .member_window_ms = 30000};
    if (http_pending_new(&pc, &ctx.pending))
        return -1;
    int suspended = http_handle(&ctx, &c, route, param, body, strlen(body), &r);
    http_pending_free(ctx.pending); /* a request still waiting is answered 503 */
    ctx.pending = NULL;
    if (c.waiter) {
        http_waiter_reply(c.waiter, &r);
        http_waiter_free(c.waiter);
    }
    cJSON *j = r.body.len ? cJSON_ParseWithLength(r.body.data, r.body.len) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *cj = cJSON_GetObjectItemCaseSensitive(e, "code");
    const cJSON *mj = cJSON_GetObjectItemCaseSensitive(e, "message");
    snprintf(code, sizeof(code), "%s", cJSON_IsString(cj) ? cj->valuestring : "");
    snprintf(message, sizeof(message), "%s", cJSON_IsString(mj) ? mj->valuestring : "");
    cJSON_Delete(j);
    return suspended;
}

TEST(every_row_answers_through_its_handler)
{
    /* the GET rows answer on their own; the POST rows without a body say what they miss */
    for (int rt = HTTP_ROUTE_NONE + 1; rt < HTTP_ROUTE_COUNT_; rt++) {
        ASSERT_EQ(call((enum http_route)rt, "1", ""), rt == HTTP_ROUTE_CHANNEL_INFO);
        ASSERT(r.status >= 200 && r.status < 600);
        ASSERT(strcmp(code, "not_found") != 0);
    }
    call(HTTP_ROUTE_HEALTHZ, "", "");
    ASSERT_EQ(r.status, 200);
    call(HTTP_ROUTE_SHARD, "1", "");
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(r.body.data, "\"status\":\"disconnected\"");
    call(HTTP_ROUTE_SEND, "1", "");
    ASSERT_STR_EQ(code, "missing_body");
    call(HTTP_ROUTE_NONE, "", "");
    ASSERT_EQ(r.status, 404);
    ASSERT_STR_EQ(code, "not_found");
}

TEST(presence_follows_the_config_rules)
{
    char big[8192];
    size_t n = (size_t)snprintf(big, sizeof(big), "{\"status\":\"online\",\"activities\":[");
    for (int i = 0; i < 12; i++) /* about 3,200 bytes: fits in a payload, not in IDENTIFY */
        n += (size_t)snprintf(big + n, sizeof(big) - n,
                              "%s{\"name\":\"%0128d\",\"type\":0,\"state\":\"%0100d\"}",
                              i ? "," : "", i, i);
    snprintf(big + n, sizeof(big) - n, "]}");
    call(HTTP_ROUTE_PRESENCE, "", big);
    ASSERT_EQ(r.status, 413);
    ASSERT_STR_EQ(code, "payload_too_large");
    ASSERT_CONTAINS(message, "presence: too large: ");
    ASSERT_EQ(gw.sends, 0);

    char state[300];
    snprintf(
        state, sizeof(state),
        "{\"status\":\"online\",\"activities\":[{\"name\":\"x\",\"type\":0,\"state\":\"%0129d\"}]}",
        7);
    call(HTTP_ROUTE_PRESENCE, "", state);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_EQ(code, "invalid_field");
    ASSERT_STR_EQ(message, "presence.activities[0].state: must be at most 128 bytes long");

    call(HTTP_ROUTE_PRESENCE, "",
         "{\"status\":\"online\",\"activities\":[{\"name\":\"x\",\"type\":1,\"url\":\"twitch\"}]}");
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_EQ(code, "invalid_field");
    ASSERT_CONTAINS(message, "presence.activities[0].url: must be an http:// or https:// URL");

    call(HTTP_ROUTE_PRESENCE, "", "{\"status\":\"online\",\"game\":{}}");
    ASSERT_STR_EQ(code, "unknown_field");
    ASSERT_STR_EQ(message, "presence.game: unknown key");
    call(HTTP_ROUTE_PRESENCE, "", "{\"afk\":false}");
    ASSERT_STR_EQ(code, "missing_field");
    ASSERT_EQ(gw.sends, 0);
}

TEST(presence_goes_out_in_the_config_shape_and_literally)
{
    setenv("SH_TEST_HANDLERS_VAR", "from-the-environment", 1);
    call(HTTP_ROUTE_PRESENCE, "",
         "{\"shards\":[1],\"afk\":true,\"status\":\"idle\",\"activities\":[{\"type\":0,"
         "\"name\":\"${SH_TEST_HANDLERS_VAR}\",\"state\":null}]}");
    unsetenv("SH_TEST_HANDLERS_VAR");
    ASSERT_EQ(r.status, 202);
    ASSERT_STR_EQ(r.body.data, "{\"shards\":[1]}");
    ASSERT_EQ(gw.sends, 1);
    ASSERT_EQ(gw.shard, 1);
    ASSERT_STR_EQ(gw.payload, "{\"op\":3,\"d\":{\"since\":null,\"activities\":[{\"name\":"
                              "\"${SH_TEST_HANDLERS_VAR}\",\"type\":0}],\"status\":\"idle\","
                              "\"afk\":true}}");
}

TEST(metrics_label_every_gateway_status)
{
    http_stats_attach(&ctx);
    call(HTTP_ROUTE_METRICS, "", "");
    http_stats_detach(&ctx);
    ASSERT_EQ(r.status, 200);
    for (int k = 0; k < GW_STATUS_COUNT; k++) {
        char want[96];
        snprintf(want, sizeof(want), "shardhook_shards_by_status{status=\"%s\"} %d",
                 gw_status_names[k], k >= GW_STATUS_COUNT - TOTAL ? 1 : 0);
        ASSERT_CONTAINS(r.body.data, want);
    }
    ASSERT_CONTAINS(r.body.data, "shardhook_shard_ready{shard=\"0\"} 0");
}

/* ---- webhook actions (http/action.c) -------------------------------------------------------- */

static struct {
    int calls;
    size_t tag;
    int shard;
    char d[1024];
} answered;

static void on_members(void *ud, size_t tag, int shard, const char *d, size_t len)
{
    (void)ud;
    answered.calls++;
    answered.tag = tag;
    answered.shard = shard;
    snprintf(answered.d, sizeof(answered.d), "%.*s", (int)len, d);
}

/* Run action (JSON text) as a webhook's; its status, with "code: message" in message. */
static int act(const char *action, const char **type)
{
    struct http_action_to to = {.members = on_members, .tag = 7};
    struct http_pending_cfg pc = {.send = f_send, .wake = http__wake, .member_window_ms = 30000};
    gw.sends = 0;
    gw.payload[0] = '\0';
    if (http_pending_new(&pc, &ctx.pending))
        return -1;
    cJSON *j = cJSON_Parse(action);
    int status = http__action_run(&ctx, j, &to, type, message, sizeof(message));
    http_pending_free(ctx.pending); /* a members action still waiting is answered 503 */
    ctx.pending = NULL;
    cJSON_Delete(j);
    return status;
}

TEST(an_action_sends_what_its_route_sends)
{
    const char *presence = "{\"status\":\"idle\",\"activities\":[{\"name\":\"x\",\"type\":3}]}";
    call(HTTP_ROUTE_PRESENCE, "", presence);
    ASSERT_EQ(r.status, 202);
    char want[sizeof(gw.payload)];
    memcpy(want, gw.payload, sizeof(want));
    char a[1024];
    snprintf(a, sizeof(a), "{\"type\":\"presence\",\"body\":%s}", presence);
    const char *type = NULL;
    ASSERT_EQ(act(a, &type), 202);
    ASSERT_STR_EQ(type, "presence");
    ASSERT_EQ(gw.sends, TOTAL);
    ASSERT_STR_EQ(gw.payload, want);

    ASSERT_EQ(act("{\"type\":\"send\",\"shard\":1,\"body\":{\"op\":31,\"d\":{}}}", &type), 202);
    ASSERT_STR_EQ(gw.payload, "{\"op\":31,\"d\":{}}");
    ASSERT_EQ(gw.shard, 1);
    ASSERT_EQ(act("{\"type\":\"send\",\"shard\":\"1\",\"body\":{\"op\":6,\"d\":{}}}", &type), 400);
    ASSERT_CONTAINS(message, "forbidden_op: op 6 (RESUME)");
    ASSERT_EQ(act("{\"type\":\"send\",\"shard\":1.5,\"body\":{\"op\":3,\"d\":{}}}", &type), 400);
    ASSERT_CONTAINS(message, "invalid_shard_id");
    ASSERT_EQ(act("{\"type\":\"send\",\"shard\":5,\"body\":{\"op\":3,\"d\":{}}}", &type), 404);
    ASSERT_CONTAINS(message, "shard_not_found");
    ASSERT_EQ(gw.sends, 0);
}

TEST(an_action_is_refused_as_its_route_refuses)
{
    const char *type = NULL;
    ASSERT_EQ(act("{\"type\":\"voice_state\",\"body\":{\"channel_id\":null}}", &type), 400);
    ASSERT_STR_EQ(type, "voice_state");
    ASSERT_STR_EQ(message, "missing_field: guild_id: required for a \"voice_state\" action");
    ASSERT_EQ(
        act("{\"type\":\"voice_state\",\"guild_id\":\"4194304\",\"body\":{\"mute\":1}}", &type),
        400);
    ASSERT_CONTAINS(message, "unknown_field");
    ASSERT_EQ(act("{\"type\":\"presence\",\"guild_id\":\"1\",\"body\":{}}", &type), 400);
    ASSERT_CONTAINS(message, "unknown_field");
    ASSERT_EQ(act("{\"type\":\"presence\",\"body\":[1]}", &type), 400);
    ASSERT_CONTAINS(message, "invalid_body");
    ASSERT_EQ(act("{\"type\":\"presence\"}", &type), 400);
    ASSERT_CONTAINS(message, "missing_body");
    ASSERT_EQ(act("{\"type\":\"reboot\"}", &type), 400);
    ASSERT_STR_EQ(type, "unknown");
    ASSERT_CONTAINS(message, "invalid_type");
    ASSERT_EQ(act("[1]", &type), 400);
    ASSERT_EQ(act("{\"type\":\"members\",\"guild_id\":\"4194304\",\"nonce\":7}", &type), 400);
    ASSERT_CONTAINS(message, "invalid_field: nonce");
    ASSERT_EQ(gw.sends, 0);
}

TEST(a_members_action_answers_through_the_callback_once)
{
    const char *type = NULL;
    memset(&answered, 0, sizeof(answered));
    /* guild 4194304 (1 << 22) is on shard 1 of 2; the fake never answers: the stop does */
    ASSERT_EQ(act("{\"type\":\"members\",\"guild_id\":\"4194304\",\"nonce\":\"n-1\","
                  "\"body\":{\"user_ids\":[\"5\"]}}",
                  &type),
              202);
    ASSERT_STR_EQ(type, "members");
    ASSERT_EQ(gw.sends, 1);
    ASSERT_EQ(gw.shard, 1);
    ASSERT_CONTAINS(gw.payload, "\"op\":8");
    ASSERT_EQ(answered.calls, 1);
    ASSERT_EQ(answered.tag, 7);
    ASSERT_EQ(answered.shard, 1);
    ASSERT_STR_EQ(answered.d, "{\"guild_id\":\"4194304\",\"nonce\":\"n-1\",\"status\":503,"
                              "\"error\":{\"code\":\"shutting_down\",\"message\":"
                              "\"shardhook is stopping\"}}");
}

/* ---- handoff (cluster mode) ---- */

static struct {
    int calls, shard, answer;
    char target[200];
    int target_null;
} ho;

static int f_handoff(void *ud, int shard, const char *target)
{
    if (ud != (void *)&ho)
        return SH_EINVAL;
    ho.calls++;
    ho.shard = shard;
    ho.target_null = target == NULL;
    snprintf(ho.target, sizeof(ho.target), "%s", target ? target : "");
    return ho.answer;
}

static const struct http_cluster_ops cluster_ops = {.handoff = f_handoff, .ud = &ho};

static int handoff(const char *param, const char *body, int answer)
{
    memset(&ho, 0, sizeof(ho));
    ho.answer = answer;
    call(HTTP_ROUTE_HANDOFF, param, body);
    return r.status;
}

TEST(handoff_needs_cluster_mode)
{
    atomic_store(&ctx.cluster, NULL);
    ASSERT_EQ(handoff("1", "", 0), 409);
    ASSERT_STR_EQ(code, "not_clustered");
    ASSERT_EQ(ho.calls, 0);
    ASSERT_EQ(handoff("x", "", 0), 400); /* a bad id says so first */
    ASSERT_STR_EQ(code, "invalid_shard_id");
}

TEST(handoff_calls_the_cluster_and_answers_what_it_said)
{
    atomic_store(&ctx.cluster, &cluster_ops);
    ASSERT_EQ(handoff("1", "", 0), 202); /* no body: the best node */
    ASSERT_EQ(ho.calls, 1);
    ASSERT_EQ(ho.shard, 1);
    ASSERT_EQ(ho.target_null, 1);
    ASSERT_STR_EQ(r.body.data, "{\"shard\":1,\"handoff\":\"started\",\"to\":null}");
    ASSERT_EQ(handoff("7", "{\"to\":\"node-b\"}", 0), 202);
    ASSERT_EQ(ho.shard, 7);
    ASSERT_STR_EQ(ho.target, "node-b");
    ASSERT_STR_EQ(r.body.data, "{\"shard\":7,\"handoff\":\"started\",\"to\":\"node-b\"}");
    ASSERT_EQ(handoff("1", "{\"to\":null}", 0), 202);
    ASSERT_EQ(ho.target_null, 1);
    /* what the cluster answers */
    ASSERT_EQ(handoff("3", "", SH_ENOTFOUND), 404);
    ASSERT_STR_EQ(code, "shard_not_found");
    ASSERT_EQ(handoff("1", "", SH_EAGAIN), 409);
    ASSERT_STR_EQ(code, "no_target");
    ASSERT_EQ(handoff("1", "{\"to\":\"nobody\"}", SH_EINVAL), 400);
    ASSERT_STR_EQ(code, "unknown_target");
    ASSERT_CONTAINS(message, "nobody");
    ASSERT_EQ(handoff("1", "", SH_ECLOSED), 503);
    ASSERT_STR_EQ(code, "shutting_down");
    ASSERT_EQ(handoff("1", "", SH_ENOMEM), 500);
    /* a bad body never reaches the cluster */
    const char *bad[] = {"{\"to\":5}", "{\"to\":\"\"}", "{\"to\":\"a\\nb\"}", "{\"node\":\"b\"}",
                         "{\"to\":\"node-b\",\"x\":1}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ASSERT_EQ(handoff("1", bad[i], 0), 400);
        ASSERT_EQ(ho.calls, 0);
    }
    char longname[300] = "{\"to\":\"";
    memset(longname + 7, 'n', 129);
    strcpy(longname + 7 + 129, "\"}");
    ASSERT_EQ(handoff("1", longname, 0), 400);
    ASSERT_STR_EQ(code, "invalid_field");
    atomic_store(&ctx.cluster, NULL);
}

static void setup(void)
{
    sh_log_level = SH_LOG_OFF;
    cfg.intents = 1;
    http_reply_init(&r);
}

/* ---- forwarding (cluster mode) ---- */

static struct {
    int calls, shard, timeout_ms, rc, status;
    char route[64], param[64], body[512];
} fw;

static int f_forward(void *ud, int shard, const char *route, const char *param, const char *body,
                     size_t len, int timeout_ms, http_answer_fn *done, void *dud)
{
    (void)ud;
    fw.calls++;
    fw.shard = shard;
    fw.timeout_ms = timeout_ms;
    snprintf(fw.route, sizeof(fw.route), "%s", route);
    snprintf(fw.param, sizeof(fw.param), "%s", param);
    snprintf(fw.body, sizeof(fw.body), "%.*s", (int)len, body);
    if (fw.rc)
        return fw.rc;
    static const char ok[] = "{\"shards\":[1]}";
    static const char limited[] = "{\"error\":{\"code\":\"rate_limited\",\"message\":\"m\"}}";
    if (fw.status == 202)
        done(dud, 202, "", ok, sizeof(ok) - 1);
    else
        done(dud, 429, "3", limited, sizeof(limited) - 1);
    return 0;
}

static http_answer_fn *held_done; /* f_forward_later keeps the answer for later */
static void *held_dud;

static int f_forward_later(void *ud, int shard, const char *route, const char *param,
                           const char *body, size_t len, int timeout_ms, http_answer_fn *done,
                           void *dud)
{
    (void)ud, (void)shard, (void)route, (void)param, (void)body, (void)len, (void)timeout_ms;
    held_done = done;
    held_dud = dud;
    return 0;
}

static int f_owner(void *ud, int shard, char *name, size_t cap)
{
    (void)ud;
    snprintf(name, cap, "%s", shard == 1 ? "node-b" : "node-a");
    return 0;
}

static const struct http_cluster_ops fwd_ops = {
    .handoff = f_handoff, .forward = f_forward, .owner = f_owner, .ud = &ho};

TEST(another_nodes_shard_is_answered_by_its_owner)
{
    atomic_store(&ctx.cluster, &fwd_ops);
    runs_only_0 = 1;
    memset(&fw, 0, sizeof(fw));
    const char *send = "{\"op\":3,\"d\":{\"since\":null,\"activities\":[],\"status\":\"idle\","
                       "\"afk\":false}}";
    ASSERT_EQ(call(HTTP_ROUTE_SEND, "1", send), 1); /* suspended until the owner answers */
    ASSERT_EQ(fw.calls, 1);
    ASSERT_EQ(fw.shard, 1);
    ASSERT_STR_EQ(fw.route, "/v1/shards/{id}/send");
    ASSERT_STR_EQ(fw.param, "1");
    ASSERT_STR_EQ(fw.body, send);
    ASSERT_EQ(fw.timeout_ms, 1000);
    ASSERT_EQ(gw.sends, 0);
    ASSERT_EQ(r.status, 429); /* the owner's answer, Retry-After included */
    ASSERT_STR_EQ(r.retry_after, "3");
    ASSERT_STR_EQ(code, "rate_limited");
    /* a guild's shard; a wait for Discord gets the request's own timeout and a margin */
    char path[32];
    snprintf(path, sizeof(path), "%llu", (unsigned long long)((uint64_t)1 << 22));
    call(HTTP_ROUTE_CHANNEL_INFO, path, "{\"timeout_ms\":3000}");
    ASSERT_EQ(fw.shard, 1);
    ASSERT_EQ(fw.timeout_ms, 5000);
    /* shard 0 is here: answered here */
    fw.calls = 0;
    call(HTTP_ROUTE_SEND, "0", send);
    ASSERT_EQ(fw.calls, 0);
    ASSERT_EQ(r.status, 202);
    /* Redis unreachable: only this node's shards */
    fw.rc = SH_EAGAIN;
    call(HTTP_ROUTE_SEND, "1", send);
    ASSERT_EQ(r.status, 503);
    ASSERT_STR_EQ(code, "cluster_degraded");
    ASSERT_CONTAINS(r.body.data, "\"cluster\":\"degraded\"");
    runs_only_0 = 0;
    atomic_store(&ctx.cluster, NULL);
}

TEST(a_stop_answers_what_waits_for_another_node)
{
    static const struct http_cluster_ops later = {.forward = f_forward_later, .ud = &ho};
    atomic_store(&ctx.cluster, &later);
    runs_only_0 = 1;
    ASSERT_EQ(call(HTTP_ROUTE_SEND, "1", "{\"op\":3,\"d\":{}}"), 1);
    ASSERT_EQ(r.status, 0); /* waiting */
    http__forward_stop(&ctx);
    ASSERT_EQ(r.status, 503);
    ASSERT_CONTAINS(r.body.data, "shutting_down");
    held_done(held_dud, 202, "", "{}", 2); /* the late answer is dropped */
    ASSERT_EQ(r.status, 503);
    ASSERT_EQ(call(HTTP_ROUTE_SEND, "1", "{\"op\":3,\"d\":{}}"), 0);
    ASSERT_EQ(r.status, 503);
    ASSERT_STR_EQ(code, "shutting_down");
    ctx.fwd_stopped = 0;
    runs_only_0 = 0;
    atomic_store(&ctx.cluster, NULL);
}

TEST(presence_is_split_by_owner_and_merged)
{
    atomic_store(&ctx.cluster, &fwd_ops);
    runs_only_0 = 1;
    memset(&fw, 0, sizeof(fw));
    fw.status = 202;
    ASSERT_EQ(call(HTTP_ROUTE_PRESENCE, "", "{\"status\":\"idle\"}"), 1);
    ASSERT_EQ(fw.calls, 1);
    ASSERT_STR_EQ(fw.route, "/v1/presence");
    ASSERT_STR_EQ(fw.body, "{\"status\":\"idle\",\"shards\":[1]}");
    ASSERT_EQ(gw.shard, 0); /* this node's part went out here */
    ASSERT_EQ(r.status, 202);
    ASSERT_STR_EQ(r.body.data, "{\"shards\":[0,1]}");
    runs_only_0 = 0;
    atomic_store(&ctx.cluster, NULL);
}

TEST_MAIN(setup(); RUN(every_row_answers_through_its_handler);
          RUN(presence_follows_the_config_rules);
          RUN(presence_goes_out_in_the_config_shape_and_literally);
          RUN(metrics_label_every_gateway_status); RUN(an_action_sends_what_its_route_sends);
          RUN(an_action_is_refused_as_its_route_refuses);
          RUN(a_members_action_answers_through_the_callback_once); RUN(handoff_needs_cluster_mode);
          RUN(handoff_calls_the_cluster_and_answers_what_it_said);
          RUN(another_nodes_shard_is_answered_by_its_owner);
          RUN(presence_is_split_by_owner_and_merged);
          RUN(a_stop_answers_what_waits_for_another_node); http_reply_free(&r);)
