/*
 * tests/unit/test_http_webhooks.c: the webhook endpoints of http/h_webhooks.c against fake
 * delivery ops: URLs shown without user:password, query or fragment (http_url_redact); a
 * webhook found by name or index, 404 otherwise; 503 before delivery is wired; pause and resume
 * answer with the webhook after the change, and a pause that could not be kept is a 500.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "http/handlers.h"
#include "lib/errors.h"
#include "test.h"

static void redact(const char *url, const char *want)
{
    char out[256];
    http_url_redact(url, out, sizeof(out));
    if (strcmp(out, want))
        fprintf(stderr, "  redact(%s) = %s, want %s\n", url, out, want);
    t_case_failed |= strcmp(out, want) != 0;
}

TEST(urls_lose_credentials_query_and_fragment)
{
    redact("https://host.example/path", "https://host.example/path");
    redact("https://user:pw@host.example/path", "https://host.example/path");
    redact("https://user:p%40w@x@host.example:8443/a/b?token=s3cret&x=1#frag",
           "https://host.example:8443/a/b");
    redact("http://127.0.0.1:9000?key=abc", "http://127.0.0.1:9000");
    redact("http://[::1]:8080/h#x", "http://[::1]:8080/h");
    redact("http://h/p@q?r", "http://h/p@q"); /* an @ in the path is no credential */
    redact("http://u@h", "http://h");
    char small[12];
    http_url_redact("https://user:pw@host.example/path", small, sizeof(small));
    ASSERT_STR_EQ(small, "https://hos");
    http_url_redact(NULL, small, sizeof(small));
    ASSERT_STR_EQ(small, "");
}

TEST(a_name_of_64_characters_routes)
{
    char path[160], name[70];
    struct http_match m;
    memset(name, 'n', 64);
    name[64] = '\0';
    snprintf(path, sizeof(path), "/v1/webhooks/%s/pause", name);
    http_route_match(HTTP_POST, path, &m);
    ASSERT_EQ(m.route, HTTP_ROUTE_WEBHOOK_PAUSE);
    ASSERT_STR_EQ(m.param, name);
    ASSERT_EQ(m.auth, 1);
    snprintf(path, sizeof(path), "/v1/webhooks/%sn", name); /* 65: no such path */
    http_route_match(HTTP_GET, path, &m);
    ASSERT_EQ(m.status, 404);
    http_route_match(HTTP_GET, "/v1/webhooks/audit/resume", &m);
    ASSERT_EQ(m.status, 405);
    ASSERT_STR_EQ(m.allow, "POST");
}

/* ---- the endpoints against fake ops ---- */

static int paused[2], pause_fails;

static int f_status(void *ud, size_t i, struct http_webhook_status *out)
{
    (void)ud;
    if (i >= 2)
        return SH_ENOTFOUND;
    memset(out, 0, sizeof(*out));
    out->state = paused[i] ? HTTP_WEBHOOK_PAUSED : HTTP_WEBHOOK_RETRYING;
    out->last_fail_wall_ms = 1700000000123ULL;
    out->last_fail_status = 0;
    snprintf(out->last_fail_error, sizeof(out->last_fail_error), "Connection refused");
    out->queued_events = 7;
    return 0;
}

static int f_pause(void *ud, size_t i, int p)
{
    (void)ud;
    if (pause_fails)
        return SH_EIO;
    paused[i] = p;
    return 0;
}

static const struct http_webhook_ops hook_ops = {f_status, f_pause, NULL};
static char *events[] = {"*"};
static struct cfg_webhook hooks[2] = {
    {.url = "https://u:p@a.example/in?sig=zz", .name = "audit", .events = events, .n_events = 1},
    {.url = "https://b.example/", .events = events, .n_events = 1},
};
static struct cfg_config cfg = {.webhooks = hooks, .n_webhooks = 2};
static struct http_ctx ctx = {.cfg = &cfg};
static struct http_reply r;

static void nop(void *token)
{
    (void)token;
}

/* Answer route; the parsed body (caller deletes). */
static cJSON *call(enum http_route route, const char *param, const char *body)
{
    struct http_call c = {.suspend = nop, .resume = nop};
    http_reply_free(&r);
    http_reply_init(&r);
    http_handle(&ctx, &c, route, param, body, strlen(body), &r);
    return r.body.len ? cJSON_ParseWithLength(r.body.data, r.body.len) : NULL;
}

static const char *str(const cJSON *j, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, a);
    if (b)
        x = cJSON_GetObjectItemCaseSensitive(x, b);
    return cJSON_IsString(x) ? x->valuestring : "";
}

TEST(unwired_answers_503)
{
    atomic_store(&ctx.webhooks, NULL);
    cJSON *j = call(HTTP_ROUTE_WEBHOOKS, "", "");
    ASSERT_EQ(r.status, 503);
    cJSON_Delete(j);
    j = call(HTTP_ROUTE_WEBHOOK, "nope", ""); /* an unknown name is 404 all the same */
    ASSERT_EQ(r.status, 404);
    cJSON_Delete(j);
}

TEST(found_by_name_or_index)
{
    atomic_store(&ctx.webhooks, &hook_ops);
    cJSON *j = call(HTTP_ROUTE_WEBHOOKS, "", "");
    ASSERT_EQ(r.status, 200);
    ASSERT(strstr(r.body.data, "u:p") == NULL && strstr(r.body.data, "sig=") == NULL);
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "webhooks")), 2);
    cJSON_Delete(j);
    const char *good[][2] = {{"audit", "audit"}, {"0", "audit"}, {"1", ""}};
    for (size_t k = 0; k < 3; k++) {
        j = call(HTTP_ROUTE_WEBHOOK, good[k][0], "");
        ASSERT_EQ(r.status, 200);
        ASSERT_STR_EQ(str(j, "name", NULL), good[k][1]);
        ASSERT_STR_EQ(str(j, "state", NULL), "retrying");
        ASSERT_STR_EQ(str(j, "last_failure", "error"), "Connection refused");
        ASSERT_STR_EQ(str(j, "last_failure", "at"), "2023-11-14T22:13:20.123Z");
        ASSERT(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(j, "last_failure"), "status")));
        cJSON_Delete(j);
    }
    j = call(HTTP_ROUTE_WEBHOOK, "0", "");
    ASSERT_STR_EQ(str(j, "url", NULL), "https://a.example/in");
    cJSON_Delete(j);
    const char *bad[] = {"2", "01", "Audit", "audit ", "-0", "", "999999999999"};
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        j = call(HTTP_ROUTE_WEBHOOK, bad[k], "");
        ASSERT_EQ(r.status, 404);
        ASSERT_STR_EQ(str(j, "error", "code"), "webhook_not_found");
        cJSON_Delete(j);
    }
}

TEST(pause_and_resume_answer_the_webhook_after_the_change)
{
    atomic_store(&ctx.webhooks, &hook_ops);
    cJSON *j = call(HTTP_ROUTE_WEBHOOK_PAUSE, "audit", "");
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(paused[0], 1);
    ASSERT_STR_EQ(str(j, "state", NULL), "paused");
    cJSON_Delete(j);
    j = call(HTTP_ROUTE_WEBHOOK_RESUME, "0", "{}");
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(paused[0], 0);
    ASSERT_STR_EQ(str(j, "state", NULL), "retrying");
    cJSON_Delete(j);
    j = call(HTTP_ROUTE_WEBHOOK_PAUSE, "1", "{\"x\":1}");
    ASSERT_EQ(r.status, 400);
    ASSERT_EQ(paused[1], 0);
    cJSON_Delete(j);
    pause_fails = 1;
    j = call(HTTP_ROUTE_WEBHOOK_PAUSE, "1", "");
    pause_fails = 0;
    ASSERT_EQ(r.status, 500);
    ASSERT_EQ(paused[1], 0);
    cJSON_Delete(j);
}

TEST_MAIN(RUN(urls_lose_credentials_query_and_fragment); RUN(a_name_of_64_characters_routes);
          RUN(unwired_answers_503); RUN(found_by_name_or_index);
          RUN(pause_and_resume_answer_the_webhook_after_the_change); http_reply_free(&r);)
