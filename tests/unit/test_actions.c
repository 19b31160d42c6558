/*
 * tests/unit/test_actions.c: the actions of a webhook's answer (bridge/actions.c): which answers
 * are read, the result each API status stands for, and the once-only record: an answer to the
 * same webhook-id runs none of the actions it ran before, only the ones past them.
 */
#include <string.h>

#include "bridge/actions.h"
#include "lib/metrics.h"
#include "tests/unit/test.h"

/* A stand-in for the control API: counts what it ran (the first 16 types kept), answers status. */
struct fake_api {
    char ran[16][32];
    int n;
    int status;
};

static int run(void *ud, const cJSON *action, size_t webhook, const char **type, char *msg,
               size_t cap)
{
    struct fake_api *f = ud;
    (void)webhook;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(action, "type");
    *type = cJSON_IsString(t) ? "presence" : "unknown";
    if (f->n < 16)
        strncpy(f->ran[f->n], cJSON_IsString(t) ? t->valuestring : "?", 31);
    f->n++;
    snprintf(msg, cap, "code: message");
    return cJSON_IsString(t) ? f->status : 400;
}

static const char *ANSWER =
    "{\"actions\":[{\"type\":\"a\"},{\"type\":\"b\"},{\"nope\":1}],\"other\":true}";

TEST(classify_statuses)
{
    ASSERT_EQ(br_action_classify(200), BR_ACTION_OK);
    ASSERT_EQ(br_action_classify(202), BR_ACTION_OK);
    ASSERT_EQ(br_action_classify(400), BR_ACTION_INVALID);
    ASSERT_EQ(br_action_classify(404), BR_ACTION_INVALID);
    ASSERT_EQ(br_action_classify(413), BR_ACTION_INVALID);
    ASSERT_EQ(br_action_classify(429), BR_ACTION_REFUSED);
    ASSERT_EQ(br_action_classify(503), BR_ACTION_REFUSED);
    ASSERT_EQ(br_action_classify(500), BR_ACTION_ERROR);
    ASSERT_EQ(br_action_classify(0), BR_ACTION_ERROR);
}

TEST(json_content_types)
{
    ASSERT(br_actions_json_type("application/json"));
    ASSERT(br_actions_json_type("Application/JSON; charset=utf-8"));
    ASSERT(br_actions_json_type("application/vnd.example+json"));
    ASSERT(!br_actions_json_type("text/plain"));
    ASSERT(!br_actions_json_type("application/jsonx"));
    ASSERT(!br_actions_json_type("application/+json"));
    ASSERT(!br_actions_json_type(""));
    ASSERT(!br_actions_json_type(NULL));
}

TEST(runs_each_action_in_order_and_counts_results)
{
    struct fake_api f = {.status = 202};
    struct br_action_ops ops = {run, &f};
    struct br_actions *a = br_actions_new(0, "0");
    unsigned n[BR_ACTION_RESULTS];
    br_actions_answer(a, &ops, "msg_1", "application/json", ANSWER, strlen(ANSWER), 0, n);
    ASSERT_EQ(f.n, 3);
    ASSERT_STR_EQ(f.ran[0], "a");
    ASSERT_STR_EQ(f.ran[1], "b");
    ASSERT_EQ(n[BR_ACTION_OK], 2);
    ASSERT_EQ(n[BR_ACTION_INVALID], 1);
    ASSERT_EQ(sh_metric_value(
                  sh_metric_counter("shardhook_webhook_actions_total", "", "webhook,type,result"),
                  "0", "presence", "ok"),
              2);
    br_actions_free(a);
}

TEST(same_webhook_id_runs_nothing_twice)
{
    struct fake_api f = {.status = 202};
    struct br_action_ops ops = {run, &f};
    struct br_actions *a = br_actions_new(0, "0");
    unsigned n[BR_ACTION_RESULTS];
    br_actions_answer(a, &ops, "msg_1", "application/json", ANSWER, strlen(ANSWER), 0, n);
    ASSERT_EQ(f.n, 3);
    /* the same batch answered again (a redelivery): nothing runs again */
    br_actions_answer(a, &ops, "msg_1", "application/json", ANSWER, strlen(ANSWER), 0, n);
    ASSERT_EQ(f.n, 3);
    ASSERT_EQ(n[BR_ACTION_DUPLICATE], 3);
    ASSERT_EQ(n[BR_ACTION_OK], 0);
    /* ... an answer with one more action runs only that one */
    const char *more = "{\"actions\":[{\"type\":\"a\"},{\"type\":\"b\"},{\"nope\":1},"
                       "{\"type\":\"c\"}]}";
    br_actions_answer(a, &ops, "msg_1", "application/json", more, strlen(more), 0, n);
    ASSERT_EQ(f.n, 4);
    ASSERT_STR_EQ(f.ran[3], "c");
    ASSERT_EQ(n[BR_ACTION_DUPLICATE], 3);
    /* another batch runs its own */
    br_actions_answer(a, &ops, "msg_2", "application/json", ANSWER, strlen(ANSWER), 0, n);
    ASSERT_EQ(f.n, 7);
    br_actions_free(a);
}

TEST(the_record_keeps_the_last_4096_webhook_ids)
{
    struct fake_api f = {.status = 202};
    struct br_action_ops ops = {run, &f};
    struct br_actions *a = br_actions_new(0, "0");
    const char *one = "{\"actions\":[{\"type\":\"a\"}]}";
    char id[32];
    for (int i = 0; i <= BR_ACTIONS_SEEN; i++) { /* 4097 batches */
        snprintf(id, sizeof(id), "msg_%d", i);
        f.n = 0;
        br_actions_answer(a, &ops, id, "application/json", one, strlen(one), 0, NULL);
        ASSERT_EQ(f.n, 1);
    }
    f.n = 0;
    br_actions_answer(a, &ops, "msg_1", "application/json", one, strlen(one), 0, NULL);
    ASSERT_EQ(f.n, 0); /* among the last 4096 */
    br_actions_answer(a, &ops, "msg_0", "application/json", one, strlen(one), 0, NULL);
    ASSERT_EQ(f.n, 1); /* the oldest was forgotten */
    br_actions_free(a);
}

TEST(answers_not_read)
{
    struct fake_api f = {.status = 202};
    struct br_action_ops ops = {run, &f};
    struct br_actions *a = br_actions_new(0, "0");
    unsigned n[BR_ACTION_RESULTS];
    br_actions_answer(a, &ops, "m1", "text/plain", ANSWER, strlen(ANSWER), 0, n);
    br_actions_answer(a, &ops, "m2", "application/json", ANSWER, strlen(ANSWER), 1, n);
    br_actions_answer(a, &ops, "m3", "application/json", "{\"actions\":", 11, 0, n);
    br_actions_answer(a, &ops, "m4", "application/json", "{\"actions\":{}}", 14, 0, n);
    br_actions_answer(a, &ops, "m5", "application/json", "{\"ok\":1}", 8, 0, n);
    br_actions_answer(a, &ops, "m6", "application/json", "", 0, 0, n);
    ASSERT_EQ(f.n, 0);
    ASSERT_EQ(sh_metric_value(
                  sh_metric_counter("shardhook_webhook_actions_total", "", "webhook,type,result"),
                  "0", "answer", "invalid"),
              3); /* truncated, not JSON, "actions" not an array */
    br_actions_free(a);
}

TEST(refused_until_the_api_is_wired)
{
    struct br_actions *a = br_actions_new(0, "0");
    unsigned n[BR_ACTION_RESULTS];
    br_actions_answer(a, NULL, "m1", "application/json", ANSWER, strlen(ANSWER), 0, n);
    ASSERT_EQ(n[BR_ACTION_REFUSED], 3);
    br_actions_free(a);
}

TEST(at_most_100_actions_per_answer)
{
    struct fake_api f = {.status = 202};
    struct br_action_ops ops = {run, &f};
    struct br_actions *a = br_actions_new(0, "0");
    char body[4096] = "{\"actions\":[";
    for (int i = 0; i < 102; i++)
        strcat(body, i ? ",{\"type\":\"a\"}" : "{\"type\":\"a\"}");
    strcat(body, "]}");
    unsigned n[BR_ACTION_RESULTS];
    br_actions_answer(a, &ops, "m1", "application/json", body, strlen(body), 0, n);
    ASSERT_EQ(f.n, BR_ACTIONS_MAX);
    ASSERT_EQ(n[BR_ACTION_OK], 100);
    ASSERT_EQ(n[BR_ACTION_INVALID], 2);
    br_actions_free(a);
}

TEST_MAIN(sh_metrics_reset(); RUN(classify_statuses); RUN(json_content_types);
          RUN(runs_each_action_in_order_and_counts_results); sh_metrics_reset();
          RUN(same_webhook_id_runs_nothing_twice); RUN(the_record_keeps_the_last_4096_webhook_ids);
          sh_metrics_reset(); RUN(answers_not_read); RUN(refused_until_the_api_is_wired);
          RUN(at_most_100_actions_per_answer);)
