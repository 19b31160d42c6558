/*
 * tests/unit/test_http_server.c: the control server (http/) on loopback with the gateway
 * replaced by a stub (struct http_gateway_ops): auth, caps, errors, and the suspended requests
 * (members, channel info, soundboard) fed by calling the observer the way the gateway thread
 * would. A libcurl client plays the caller.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "config/config.h"
#include "http/server.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "http_client.h"
#include "test.h"

/* ---- the stub gateway: two shards of a bot with total 2 ---- */

#define MAX_SENT 64
static struct {
    pthread_mutex_t lock;
    char sent[MAX_SENT][4200];
    int sent_shard[MAX_SENT];
    int n_sent;
    int send_rc;
    int last_reconnect_shard, last_reconnect_resume;
    char withdrawn[4200];
    int n_withdrawn;
    const char *status;
    int reserve, identify_stopped; /* the overview's budget reserve */
} gw = {.lock = PTHREAD_MUTEX_INITIALIZER, .status = "ready"};

static int st_send(void *g, int shard, const char *p, size_t n)
{
    (void)g;
    if (shard < 0 || shard > 1)
        return SH_ENOTFOUND;
    if (n > 4096)
        return SH_ETOOBIG;
    pthread_mutex_lock(&gw.lock);
    int rc = gw.send_rc;
    if (!rc && gw.n_sent < MAX_SENT) {
        memcpy(gw.sent[gw.n_sent], p, n);
        gw.sent[gw.n_sent][n] = '\0';
        gw.sent_shard[gw.n_sent++] = shard;
    }
    pthread_mutex_unlock(&gw.lock);
    return rc;
}
static int st_reconnect(void *g, int shard, int resume)
{
    (void)g;
    gw.last_reconnect_shard = shard;
    gw.last_reconnect_resume = resume;
    return 0;
}
static void fill(struct gw_shard_info *s, int id)
{
    memset(s, 0, sizeof(*s));
    s->id = id;
    s->status = gw.status;
    s->latency_ms = 40 + id;
    snprintf(s->session_id, sizeof(s->session_id), "sess-%d", id);
    s->seq = 100 + (uint64_t)id;
    s->guilds = 3;
    s->identifies = 1;
}
static int st_snapshot(void *g, struct gw_overview *ov, struct gw_shard_info *s, int cap)
{
    (void)g;
    if (ov) {
        memset(ov, 0, sizeof(*ov));
        snprintf(ov->url, sizeof(ov->url), "wss://gateway.example");
        ov->total = 2;
        ov->n_shards = 2;
        ov->session_total = 1000;
        ov->session_remaining = 990;
        ov->session_reserve = gw.reserve;
        ov->identify_stopped = gw.identify_stopped;
        ov->eta_ms = -1;
        ov->next_identify_in_ms = -1;
    }
    for (int i = 0; i < cap && i < 2; i++)
        fill(&s[i], i);
    return 2;
}
static int st_shard_info(void *g, int shard, struct gw_shard_info *out)
{
    (void)g;
    if (shard < 0 || shard > 1)
        return SH_ENOTFOUND;
    fill(out, shard);
    return 0;
}
static int st_total(void *g)
{
    (void)g;
    return 2;
}
static int st_runs(void *g, int shard)
{
    (void)g;
    return shard == 0 || shard == 1;
}
static int st_withdraw(void *g, int shard, const char *p, size_t n)
{
    (void)g;
    (void)shard;
    pthread_mutex_lock(&gw.lock);
    if (n < sizeof(gw.withdrawn)) {
        memcpy(gw.withdrawn, p, n);
        gw.withdrawn[n] = '\0';
    }
    gw.n_withdrawn++;
    pthread_mutex_unlock(&gw.lock);
    return 0;
}
static const struct http_gateway_ops stub_ops = {st_send,  st_reconnect, st_snapshot, st_shard_info,
                                                 st_total, st_runs,      st_withdraw};

static int n_sent(void)
{
    pthread_mutex_lock(&gw.lock);
    int n = gw.n_sent;
    pthread_mutex_unlock(&gw.lock);
    return n;
}

/* Wait (up to 5 s) for at least n sends; 1 when they came. */
static int wait_sent(int n)
{
    for (int i = 0; i < 500; i++) {
        if (n_sent() >= n)
            return 1;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* The nonce of send i (an op 8 payload). */
static void nonce_of(int i, char *out, size_t cap)
{
    cJSON *j = cJSON_Parse(gw.sent[i]);
    const cJSON *n =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "d"), "nonce");
    snprintf(out, cap, "%s", cJSON_IsString(n) ? n->valuestring : "");
    cJSON_Delete(j);
}

/* ---- the server and a client ---- */

static struct cfg_config cfg;
static struct http_server *srv;
static struct gw_observer obs;
static char base[64];

/* The server reads the config as cfg_load() leaves it: every key not given has its default. */
static void start(const char *token)
{
    char json[512], err[256];
    snprintf(json, sizeof(json),
             "{\"token\":\"bot\",\"intents\":[\"GUILDS\",\"GUILD_MEMBERS\",\"GUILD_PRESENCES\"],"
             "\"http\":{\"listen\":\"127.0.0.1:0\",\"token\":%s%s%s,\"request_timeout_ms\":2000},"
             "\"testing\":{\"member_window_ms\":300}}",
             token ? "\"" : "", token ? token : "null", token ? "\"" : "");
    cfg_free(&cfg);
    if (cfg_load_string(json, strlen(json), &cfg, err, sizeof(err)))
        fprintf(stderr, "config: %s\n", err);
    pthread_mutex_lock(&gw.lock);
    gw.n_sent = 0;
    gw.n_withdrawn = 0;
    gw.send_rc = 0;
    gw.status = "ready";
    pthread_mutex_unlock(&gw.lock);
    srv = NULL;
    if (http_server_new_ops(&cfg, &stub_ops, &gw, &srv, err, sizeof(err)))
        fprintf(stderr, "server: %s\n", err);
    if (srv) {
        obs = http_server_observer(srv);
        snprintf(base, sizeof(base), "http://127.0.0.1:%d", http_server_port(srv));
    }
}

static void stop(void)
{
    http_server_free(srv);
    srv = NULL;
    sh_metrics_reset();
}

/* One request; body NULL for none, auth the Authorization header's value or NULL. */
static void req(const char *method, const char *path, const char *body, const char *auth,
                struct resp *r)
{
    char url[512], hdr[256];
    snprintf(url, sizeof(url), "%s%s", base, path);
    snprintf(hdr, sizeof(hdr), "Authorization: %s", auth ? auth : "");
    const char *headers[] = {"Content-Type: application/json", "Expect:", auth ? hdr : NULL, NULL};
    t_http(url, method, body, headers, r);
}

/* A request on its own thread, for the ones that wait. */
struct bg {
    pthread_t th;
    const char *method, *path, *body;
    struct resp r;
};
static void *bg_main(void *arg)
{
    struct bg *b = arg;
    req(b->method, b->path, b->body, NULL, &b->r);
    return NULL;
}
static void bg_start(struct bg *b, const char *path, const char *body)
{
    b->method = "POST";
    b->path = path;
    b->body = body;
    pthread_create(&b->th, NULL, bg_main, b);
}

static void dispatch(int shard, const char *t, const char *d)
{
    obs.on_dispatch(obs.ud, shard, t, strlen(t), 1, d, strlen(d));
}

/* The error code of an answer body, "" when none. */
static const char *code_of(const struct resp *r)
{
    static char code[64];
    cJSON *j = cJSON_Parse(r->body);
    const cJSON *c =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "error"), "code");
    snprintf(code, sizeof(code), "%s", cJSON_IsString(c) ? c->valuestring : "");
    cJSON_Delete(j);
    return code;
}

/* guild ids: (id >> 22) % 2 picks the shard */
#define G0 "4194304" /* 1 << 22: shard 1 */
#define G1 "8388608" /* 2 << 22: shard 0 */

/* ---- tests ---- */

TEST(auth_and_open_routes)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    sh_log_level = SH_LOG_ERROR;
    start("s3cret-token");
    ASSERT(srv != NULL);
    struct resp r;
    req("GET", "/v1/shards", NULL, NULL, &r);
    ASSERT_EQ(r.status, 401);
    ASSERT(r.www_auth);
    ASSERT_STR_EQ(code_of(&r), "unauthorized");
    req("GET", "/v1/shards", NULL, "Bearer s3cret-toke", &r);
    ASSERT_EQ(r.status, 401);
    req("GET", "/v1/shards", NULL, "Bearer s3cret-token2", &r);
    ASSERT_EQ(r.status, 401);
    req("GET", "/v1/shards", NULL, "bearer s3cret-token", &r);
    ASSERT_EQ(r.status, 401);
    req("GET", "/metrics", NULL, NULL, &r);
    ASSERT_EQ(r.status, 401);
    req("GET", "/v1/shards", NULL, "Bearer s3cret-token", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(r.body, "\"shard_count\":2");
    ASSERT_CONTAINS(r.body, "\"session_id\":\"sess-1\"");
    ASSERT(!strstr(r.body, "s3cret"));
    req("GET", "/healthz", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    req("GET", "/readyz", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    req("GET", "/", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(r.body, "<title>shardhook</title>");
    ASSERT(!strstr(r.body, "s3cret"));
    /* a bad token on a POST never reaches the gateway */
    req("POST", "/v1/shards/0/send", "{\"op\":3,\"d\":null}", "Bearer nope", &r);
    ASSERT_EQ(r.status, 401);
    ASSERT_EQ(n_sent(), 0);
    stop();
}

TEST(errors_caps_and_methods)
{
    start(NULL);
    struct resp r;
    req("GET", "/nope", NULL, NULL, &r);
    ASSERT_EQ(r.status, 404);
    ASSERT_STR_EQ(code_of(&r), "not_found");
    req("DELETE", "/v1/shards", NULL, NULL, &r);
    ASSERT_EQ(r.status, 405);
    ASSERT_STR_EQ(r.allow, "GET, HEAD");
    req("GET", "/v1/presence", NULL, NULL, &r);
    ASSERT_EQ(r.status, 405);
    ASSERT_STR_EQ(r.allow, "POST");
    char *big = malloc(HTTP_MAX_BODY + 100);
    memset(big, ' ', HTTP_MAX_BODY + 99);
    big[0] = '{';
    big[HTTP_MAX_BODY + 98] = '}';
    big[HTTP_MAX_BODY + 99] = '\0';
    req("POST", "/v1/presence", big, NULL, &r);
    free(big);
    ASSERT_EQ(r.status, 413);
    ASSERT_STR_EQ(code_of(&r), "body_too_large");
    req("POST", "/v1/presence", "{\"status\":", NULL, &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_EQ(code_of(&r), "invalid_json");
    req("POST", "/v1/shards/9/send", "{\"op\":3,\"d\":null}", NULL, &r);
    ASSERT_EQ(r.status, 404);
    ASSERT_STR_EQ(code_of(&r), "shard_not_found");
    /* 4,096 bytes pass, 4,097 are refused before queueing */
    char payload[8192];
    int fill_n = 4096 - (int)strlen("{\"op\":3,\"d\":\"\"}");
    int n = snprintf(payload, sizeof(payload), "{\"op\":3,\"d\":\"%0*d\"}", fill_n, 0);
    ASSERT_EQ(n, 4096);
    req("POST", "/v1/shards/1/send", payload, NULL, &r);
    ASSERT_EQ(r.status, 202);
    ASSERT_EQ(n_sent(), 1);
    ASSERT_EQ(strlen(gw.sent[0]), 4096);
    ASSERT_EQ(gw.sent_shard[0], 1);
    snprintf(payload, sizeof(payload), "{\"op\":3,\"d\":\"%0*d\"}", fill_n + 1, 0);
    req("POST", "/v1/shards/1/send", payload, NULL, &r);
    ASSERT_EQ(r.status, 413);
    ASSERT_STR_EQ(code_of(&r), "payload_too_large");
    ASSERT_EQ(n_sent(), 1);
    stop();
}

TEST(full_send_queue_is_429_or_503)
{
    start(NULL);
    struct resp r;
    gw.send_rc = SH_EAGAIN;
    req("POST", "/v1/guilds/" G0 "/voice-state", "{\"channel_id\":null}", NULL, &r);
    ASSERT_EQ(r.status, 429);
    ASSERT_STR_EQ(code_of(&r), "send_queue_full");
    ASSERT_STR_EQ(r.retry_after, "1");
    gw.status = "resuming";
    req("POST", "/v1/presence", "{\"status\":\"online\"}", NULL, &r);
    ASSERT_EQ(r.status, 503);
    ASSERT_STR_EQ(code_of(&r), "shard_unavailable");
    ASSERT_STR_EQ(r.retry_after, "5");
    ASSERT_CONTAINS(r.body, "\"queued\":[]");
    gw.send_rc = SH_ECLOSED;
    req("POST", "/v1/shards/0/reconnect", "", NULL, &r);
    ASSERT_EQ(r.status, 202); /* the stub's reconnect always works */
    ASSERT_EQ(gw.last_reconnect_resume, 1);
    req("POST", "/v1/shards/0/send", "{\"op\":4,\"d\":{}}", NULL, &r);
    ASSERT_EQ(r.status, 503);
    ASSERT_STR_EQ(code_of(&r), "shutting_down");
    stop();
}

TEST(members_merge_chunks_in_any_order)
{
    start(NULL);
    struct bg b;
    bg_start(&b, "/v1/guilds/" G0 "/members",
             "{\"user_ids\":[\"11\",\"12\",\"13\"],\"presences\":true}");
    ASSERT(wait_sent(1));
    ASSERT_EQ(gw.sent_shard[0], 1);
    char nonce[64], d[1024];
    nonce_of(0, nonce, sizeof(nonce));
    ASSERT(strlen(nonce) > 0 && strlen(nonce) <= 32);
    snprintf(d, sizeof(d),
             "{\"op\":8,\"d\":{\"guild_id\":\"" G0 "\",\"user_ids\":[\"11\",\"12\",\"13\"],"
             "\"presences\":true,\"nonce\":\"%s\"}}",
             nonce);
    ASSERT_STR_EQ(gw.sent[0], d);
    /* someone else's chunk (other nonce) and a chunk without one are ignored */
    dispatch(1, "GUILD_MEMBERS_CHUNK",
             "{\"guild_id\":\"" G0 "\",\"members\":[{\"user\":{\"id\":\"99\"}}],"
             "\"chunk_index\":0,\"chunk_count\":1,\"nonce\":\"other\"}");
    dispatch(1, "GUILD_MEMBERS_CHUNK",
             "{\"guild_id\":\"" G0 "\",\"members\":[],\"chunk_index\":0,\"chunk_count\":1}");
    snprintf(d, sizeof(d),
             "{\"guild_id\":\"" G0 "\",\"members\":[{\"user\":{\"id\":\"13\"}}],"
             "\"presences\":[{\"user\":{\"id\":\"13\"}}],\"chunk_index\":1,\"chunk_count\":2,"
             "\"nonce\":\"%s\"}",
             nonce);
    dispatch(1, "GUILD_MEMBERS_CHUNK", d);
    dispatch(1, "GUILD_MEMBERS_CHUNK", d); /* a duplicate chunk counts once */
    dispatch(1, "MESSAGE_CREATE", "{}");
    snprintf(d, sizeof(d),
             "{\"guild_id\":\"" G0 "\",\"members\":[{\"user\":{\"id\":\"11\"}}],"
             "\"not_found\":[\"12\"],\"chunk_index\":0,\"chunk_count\":2,\"nonce\":\"%s\"}",
             nonce);
    dispatch(1, "GUILD_MEMBERS_CHUNK", d);
    pthread_join(b.th, NULL);
    ASSERT_EQ(b.r.status, 200);
    ASSERT_STR_EQ(b.r.body,
                  "{\"guild_id\":\"" G0 "\",\"members\":[{\"user\":{\"id\":\"13\"}},"
                  "{\"user\":{\"id\":\"11\"}}],\"presences\":[{\"user\":{\"id\":\"13\"}}],"
                  "\"not_found\":[\"12\"],\"chunk_count\":2}");
    stop();
}

TEST(members_rate_limited_is_retried_then_429)
{
    start(NULL);
    struct bg b;
    uint64_t t0 = sh_now_ms();
    bg_start(&b, "/v1/guilds/" G1 "/members", "{\"query\":\"ab\",\"limit\":2}");
    char nonce[64], d[512];
    for (int i = 1; i <= 4; i++) {
        ASSERT(wait_sent(i));
        nonce_of(i - 1, nonce, sizeof(nonce));
        snprintf(d, sizeof(d),
                 "{\"opcode\":8,\"retry_after\":0.05,\"meta\":{\"guild_id\":\"" G1
                 "\",\"nonce\":\"%s\"}}",
                 nonce);
        dispatch(0, "RATE_LIMITED", d);
    }
    pthread_join(b.th, NULL);
    ASSERT_EQ(b.r.status, 429);
    ASSERT_STR_EQ(code_of(&b.r), "rate_limited");
    ASSERT_STR_EQ(b.r.retry_after, "1");
    ASSERT_EQ(n_sent(), 4);
    ASSERT(sh_now_ms() - t0 >= 150); /* three waits of retry_after */
    ASSERT_STR_EQ(gw.sent[3], gw.sent[0]);
    stop();
}

TEST(all_members_window_and_timeout)
{
    start(NULL);
    struct resp r;
    /* first all-members request: sent at once, no answer -> 504 after timeout_ms */
    uint64_t t0 = sh_now_ms();
    req("POST", "/v1/guilds/" G1 "/members", "{\"timeout_ms\":150}", NULL, &r);
    ASSERT_EQ(r.status, 504);
    ASSERT_STR_EQ(code_of(&r), "timeout");
    ASSERT_CONTAINS(r.body, "\"members\":[]");
    ASSERT_CONTAINS(r.body, "\"chunks_received\":0");
    ASSERT(sh_now_ms() - t0 >= 150);
    ASSERT_EQ(n_sent(), 1);
    ASSERT_CONTAINS(gw.sent[0], "\"query\":\"\",\"limit\":0");
    /* the request gave up: its payload is taken back from the shard's queue if still there */
    ASSERT_EQ(gw.n_withdrawn, 1);
    ASSERT_STR_EQ(gw.withdrawn, gw.sent[0]);
    /* a repeat inside the 300 ms window waits for it, suspended, then goes out */
    struct bg b;
    bg_start(&b, "/v1/guilds/" G1 "/members", "{\"query\":\"\",\"limit\":0}");
    struct timespec ts = {0, 30 * 1000000L};
    nanosleep(&ts, NULL);
    req("POST", "/v1/guilds/" G1 "/members", "{}", NULL, &r); /* a third: 429 at once */
    ASSERT_EQ(r.status, 429);
    ASSERT(r.retry_after[0]);
    ASSERT(wait_sent(2));
    ASSERT(sh_now_ms() - t0 >= 300);
    char nonce[64], d[512];
    nonce_of(1, nonce, sizeof(nonce));
    snprintf(d, sizeof(d),
             "{\"guild_id\":\"" G1 "\",\"members\":[],\"chunk_index\":0,\"chunk_count\":1,"
             "\"nonce\":\"%s\"}",
             nonce);
    dispatch(0, "GUILD_MEMBERS_CHUNK", d);
    pthread_join(b.th, NULL);
    ASSERT_EQ(b.r.status, 200);
    ASSERT_EQ(gw.n_withdrawn, 1); /* an answered request takes nothing back */
    /* a repeat whose timeout_ms ends before the window does: 429 at once, not a late 504 */
    uint64_t t1 = sh_now_ms();
    req("POST", "/v1/guilds/" G1 "/members", "{\"timeout_ms\":100}", NULL, &r);
    ASSERT_EQ(r.status, 429);
    ASSERT_STR_EQ(code_of(&r), "rate_limited");
    ASSERT(r.retry_after[0]);
    ASSERT(sh_now_ms() - t1 < 250); /* the window has 415 ms to go */
    ASSERT_EQ(n_sent(), 2);
    /* intents are checked before anything is sent */
    cfg.intents = 1;
    req("POST", "/v1/guilds/" G0 "/members", "{}", NULL, &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_EQ(code_of(&r), "missing_intent");
    ASSERT_CONTAINS(r.body, "GUILD_MEMBERS");
    ASSERT_EQ(n_sent(), 2);
    stop();
}

TEST(channel_info_and_soundboard)
{
    start(NULL);
    struct bg b;
    bg_start(&b, "/v1/guilds/" G0 "/channel-info", "{\"fields\":[\"voice_start_time\"]}");
    ASSERT(wait_sent(1));
    ASSERT_STR_EQ(gw.sent[0],
                  "{\"op\":43,\"d\":{\"guild_id\":\"" G0 "\",\"fields\":[\"voice_start_time\"]}}");
    dispatch(1, "CHANNEL_INFO", "{\"guild_id\":\"1\",\"channels\":[]}"); /* another guild */
    dispatch(1, "CHANNEL_INFO", "{\"guild_id\":\"" G0 "\",\"channels\":[{\"id\":\"5\"}]}");
    pthread_join(b.th, NULL);
    ASSERT_EQ(b.r.status, 200);
    ASSERT_STR_EQ(b.r.body, "{\"guild_id\":\"" G0 "\",\"channels\":[{\"id\":\"5\"}]}");

    bg_start(&b, "/v1/soundboard-sounds", "{\"guild_ids\":[\"" G0 "\",\"" G1 "\"]}");
    ASSERT(wait_sent(3));
    int s0 = gw.sent_shard[1] == 0 ? 1 : 2, s1 = 3 - s0;
    ASSERT_STR_EQ(gw.sent[s0], "{\"op\":31,\"d\":{\"guild_ids\":[\"" G1 "\"]}}");
    ASSERT_STR_EQ(gw.sent[s1], "{\"op\":31,\"d\":{\"guild_ids\":[\"" G0 "\"]}}");
    dispatch(0, "SOUNDBOARD_SOUNDS", "{\"guild_id\":\"" G1 "\",\"soundboard_sounds\":[1]}");
    dispatch(1, "SOUNDBOARD_SOUNDS", "{\"guild_id\":\"" G0 "\",\"soundboard_sounds\":[2]}");
    pthread_join(b.th, NULL);
    ASSERT_EQ(b.r.status, 200);
    ASSERT_STR_EQ(b.r.body, "{\"guilds\":[{\"guild_id\":\"" G0 "\",\"soundboard_sounds\":[2]},"
                            "{\"guild_id\":\"" G1 "\",\"soundboard_sounds\":[1]}]}");
    stop();
}

TEST(stop_answers_suspended_requests)
{
    start(NULL);
    struct bg b;
    bg_start(&b, "/v1/guilds/" G0 "/channel-info", NULL);
    ASSERT(wait_sent(1));
    uint64_t t0 = sh_now_ms();
    http_server_stop(srv);
    pthread_join(b.th, NULL);
    ASSERT_EQ(b.r.status, 503);
    ASSERT_STR_EQ(code_of(&b.r), "shutting_down");
    ASSERT(sh_now_ms() - t0 < 1500);
    dispatch(1, "CHANNEL_INFO", "{\"guild_id\":\"" G0 "\",\"channels\":[]}"); /* ignored */
    stop();
}

TEST(a_port_in_use_is_an_error_naming_it)
{
    start(NULL);
    ASSERT(srv != NULL);
    char listen[32], err[256] = "";
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", http_server_port(srv));
    struct cfg_config c2 = cfg;
    c2.http_listen = listen;
    struct http_server *second = NULL;
    ASSERT(http_server_new_ops(&c2, &stub_ops, &gw, &second, err, sizeof(err)) < 0);
    ASSERT(second == NULL);
    ASSERT_CONTAINS(err, listen);
    static char bad[] = "example.com:80";
    c2.http_listen = bad;
    ASSERT_EQ(http_server_new_ops(&c2, &stub_ops, &gw, &second, err, sizeof(err)), SH_ECONFIG);
    ASSERT_CONTAINS(err, "http.listen");
    stop();
}

/* /v1/gateway shows the cluster's budget reserve and whether IDENTIFYs stopped at it. */
TEST(gateway_shows_the_budget_reserve)
{
    start(NULL);
    struct resp r;
    req("GET", "/v1/gateway", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(r.body, "\"reserve\":0,\"identify_stopped\":false}");
    gw.reserve = 50;
    gw.identify_stopped = 1;
    req("GET", "/v1/gateway", NULL, NULL, &r);
    ASSERT_CONTAINS(r.body, "\"remaining\":990,");
    ASSERT_CONTAINS(r.body, "\"reserve\":50,\"identify_stopped\":true}");
    gw.reserve = 0;
    gw.identify_stopped = 0;
    stop();
}

TEST(metrics_text)
{
    start(NULL);
    struct resp r;
    req("GET", "/v1/shards/7", NULL, NULL, &r);
    req("GET", "/metrics", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(r.body, "shardhook_shard_ready{shard=\"1\"} 1\n");
    ASSERT_CONTAINS(r.body, "shardhook_shard_latency_seconds{shard=\"0\"} 0.04\n");
    ASSERT_CONTAINS(r.body, "shardhook_shard_status{shard=\"0\",status=\"ready\"} 1\n");
    ASSERT_CONTAINS(r.body, "shardhook_shard_status{shard=\"0\",status=\"queued\"} 0\n");
    ASSERT_CONTAINS(r.body,
                    "shardhook_api_requests_total{route=\"/v1/shards/{id}\",code=\"404\"} 1\n");
    ASSERT_CONTAINS(r.body, "shardhook_session_start_limit_remaining 990\n");
    stop();
    curl_global_cleanup();
}

TEST_MAIN(RUN(auth_and_open_routes); RUN(errors_caps_and_methods);
          RUN(full_send_queue_is_429_or_503); RUN(members_merge_chunks_in_any_order);
          RUN(members_rate_limited_is_retried_then_429); RUN(all_members_window_and_timeout);
          RUN(channel_info_and_soundboard); RUN(stop_answers_suspended_requests);
          RUN(a_port_in_use_is_an_error_naming_it); RUN(gateway_shows_the_budget_reserve);
          RUN(metrics_text);)
