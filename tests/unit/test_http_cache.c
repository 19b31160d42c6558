/*
 * tests/unit/test_http_cache.c: the entity cache's read routes (http/h_cache.c) through the real
 * control server on loopback: the path's ids and the query checked as a client would send them,
 * each answer of ca_cache_read turned into its status and error code, the ETag of every 200 and
 * the 304 of If-None-Match, and the 404 of a config without a cache. ca_cache_read and
 * ca_cache_guild_shard are replaced at link time by a script (the cache itself has its own
 * tests); the gateway is a stub whose shard status the test sets.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "cache/cache.h"
#include "config/config.h"
#include "http/server.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "http_client.h"
#include "test.h"

/* ---- the scripted cache ---- */

static struct {
    pthread_mutex_t lock;
    int rc;               /* what ca_cache_read answers */
    const char *body;     /* its body with 0 */
    int guild_shard;      /* what ca_cache_guild_shard answers */
    int channel_rc;       /* CA_CHANNEL reads answer this (the permissions route's check) */
    struct ca_query last; /* the last read other than a CA_CHANNEL check */
    int reads;
} cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

int ca_cache_read(struct ca_cache *c, const struct ca_query *q, struct sh_buf *out)
{
    (void)c;
    pthread_mutex_lock(&cache.lock);
    int check = q->what == CA_CHANNEL && cache.last.what == CA_PERMISSIONS && cache.reads;
    int rc = check ? cache.channel_rc : cache.rc;
    if (!check) {
        cache.last = *q;
        cache.reads++;
    }
    if (rc == 0 && cache.body)
        sh_buf_append_str(out, cache.body);
    pthread_mutex_unlock(&cache.lock);
    return rc;
}

int ca_cache_guild_shard(struct ca_cache *c, uint64_t guild_id)
{
    (void)c;
    (void)guild_id;
    return cache.guild_shard;
}

static void script(int rc, const char *body, int guild_shard)
{
    pthread_mutex_lock(&cache.lock);
    cache.rc = rc;
    cache.body = body;
    cache.guild_shard = guild_shard;
    cache.channel_rc = 0;
    memset(&cache.last, 0, sizeof(cache.last));
    cache.reads = 0;
    pthread_mutex_unlock(&cache.lock);
}

/* ---- the stub gateway: two shards, both here; status as set ---- */

static const char *shard_status = "ready";

static int st_send(void *g, int shard, const char *p, size_t n)
{
    (void)g, (void)shard, (void)p, (void)n;
    return 0;
}
static int st_reconnect(void *g, int shard, int resume)
{
    (void)g, (void)shard, (void)resume;
    return 0;
}
static int st_shard_info(void *g, int shard, struct gw_shard_info *out)
{
    (void)g;
    if (shard < 0 || shard > 1)
        return SH_ENOTFOUND;
    memset(out, 0, sizeof(*out));
    out->id = shard;
    out->status = shard_status;
    out->latency_ms = -1;
    return 0;
}
static int st_snapshot(void *g, struct gw_overview *ov, struct gw_shard_info *s, int cap)
{
    if (ov) {
        memset(ov, 0, sizeof(*ov));
        ov->total = ov->n_shards = 2;
        ov->eta_ms = ov->next_identify_in_ms = -1;
    }
    for (int i = 0; i < cap && i < 2; i++)
        st_shard_info(g, i, &s[i]);
    return 2;
}
static int st_total(void *g)
{
    (void)g;
    return 2;
}
static int only_shard_0; /* cluster mode: shard 1 is node-b's */
static int st_runs(void *g, int shard)
{
    (void)g;
    return shard == 0 || (shard == 1 && !only_shard_0);
}
static const struct http_gateway_ops stub_ops = {
    .send = st_send,
    .reconnect = st_reconnect,
    .snapshot = st_snapshot,
    .shard_info = st_shard_info,
    .total = st_total,
    .runs = st_runs,
};

/* ---- the server and a client ---- */

static struct cfg_config cfg;
static struct http_server *srv;
static char base[64];
static int fake_cache; /* its address is the cache the server is given */

static void start_with(const char *cache_block, int set_cache, const char *extra)
{
    char json[512], err[256];
    snprintf(json, sizeof(json),
             "{\"token\":\"bot\",\"intents\":[\"GUILDS\",\"GUILD_MEMBERS\"],"
             "\"http\":{\"listen\":\"127.0.0.1:0\",\"request_timeout_ms\":200}%s%s%s}",
             cache_block ? ",\"cache\":" : "", cache_block ? cache_block : "", extra);
    cfg_free(&cfg);
    if (cfg_load_string(json, strlen(json), &cfg, err, sizeof(err)))
        fprintf(stderr, "config: %s\n", err);
    shard_status = "ready";
    srv = NULL;
    if (http_server_new_ops(&cfg, &stub_ops, NULL, &srv, err, sizeof(err)))
        fprintf(stderr, "server: %s\n", err);
    if (srv && set_cache)
        http_server_set_cache(srv, (struct ca_cache *)(void *)&fake_cache);
    if (srv)
        snprintf(base, sizeof(base), "http://127.0.0.1:%d", http_server_port(srv));
}

static void start(const char *cache_block, int set_cache)
{
    start_with(cache_block, set_cache, "");
}

static void stop(void)
{
    http_server_free(srv);
    srv = NULL;
    cfg_free(&cfg);
    sh_metrics_reset();
}

/* One request; inm: the If-None-Match header, or NULL. */
static void req(const char *method, const char *path, const char *inm, struct resp *r)
{
    char url[512], hdr[256];
    snprintf(url, sizeof(url), "%s%s", base, path);
    snprintf(hdr, sizeof(hdr), "If-None-Match: %s", inm ? inm : "");
    const char *headers[] = {inm ? hdr : NULL, NULL};
    t_http(url, method, NULL, headers, r);
}

static void get(const char *path, struct resp *r)
{
    req("GET", path, NULL, r);
}

/* The error code (and message) of an answer body, "" when none. */
static char message[512];
static const char *code_of(const struct resp *r)
{
    static char code[64];
    cJSON *j = cJSON_Parse(r->body);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
    snprintf(code, sizeof(code), "%s", cJSON_IsString(c) ? c->valuestring : "");
    snprintf(message, sizeof(message), "%s", cJSON_IsString(m) ? m->valuestring : "");
    cJSON_Delete(j);
    return code;
}

/* guild 4194304 (1 << 22) is on shard 1 of 2 */
#define G "4194304"
#define U "80351110224678912"

/* ---- tests ---- */

/* Each route reads what its path says, with the path's ids and the query's values. */
TEST(routes_read_what_their_path_names)
{
    static const struct {
        const char *path;
        enum ca_what what;
        uint64_t guild_id, id, after, channel_id;
        int limit;
    } cases[] = {
        {"/v1/guilds/" G, CA_GUILD, 4194304, 0, 0, 0, 0},
        {"/v1/guilds/" G "/channels", CA_CHANNELS, 4194304, 0, 0, 0, 0},
        {"/v1/guilds/" G "/threads", CA_THREADS, 4194304, 0, 0, 0, 0},
        {"/v1/guilds/" G "/roles", CA_ROLES, 4194304, 0, 0, 0, 0},
        {"/v1/guilds/" G "/emojis", CA_EMOJIS, 4194304, 0, 0, 0, 0},
        {"/v1/guilds/" G "/members", CA_MEMBERS, 4194304, 0, 0, 0, 1},
        {"/v1/guilds/" G "/members?limit=1000&after=" U, CA_MEMBERS, 4194304, 0,
         80351110224678912ull, 0, 1000},
        {"/v1/guilds/" G "/members?after=0&limit=7", CA_MEMBERS, 4194304, 0, 0, 0, 7},
        {"/v1/guilds/" G "/members/" U, CA_MEMBER, 4194304, 80351110224678912ull, 0, 0, 0},
        {"/v1/guilds/" G "/members/" U "/permissions", CA_PERMISSIONS, 4194304,
         80351110224678912ull, 0, 0, 0},
        {"/v1/guilds/" G "/members/" U "/permissions?channel_id=41771983423143937", CA_PERMISSIONS,
         4194304, 80351110224678912ull, 0, 41771983423143937ull, 0},
        {"/v1/guilds/" G "/voice-states", CA_VOICE_STATES, 4194304, 0, 0, 0, 0},
        {"/v1/guilds/" G "/voice-states/" U, CA_VOICE_STATE, 4194304, 80351110224678912ull, 0, 0,
         0},
        {"/v1/channels/41771983423143937", CA_CHANNEL, 0, 41771983423143937ull, 0, 0, 0},
        {"/v1/users/" U, CA_USER, 0, 80351110224678912ull, 0, 0, 0},
        {"/v1/cache/guilds", CA_GUILD_LIST, 0, 0, 0, 0, 100},
        {"/v1/cache/guilds?limit=2&after=" G, CA_GUILD_LIST, 0, 0, 4194304, 0, 2},
        {"/v1/cache", CA_STATS, 0, 0, 0, 0, 0},
    };
    struct resp r;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    start("{}", 1);
    ASSERT(srv);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        script(0, "{\"id\":\"1\"}", 1);
        get(cases[i].path, &r);
        if (r.status != 200)
            T_FAIL_("%s: %ld %s", cases[i].path, r.status, r.body);
        ASSERT_STR_EQ(r.body, "{\"id\":\"1\"}");
        ASSERT_EQ(cache.reads, 1);
        ASSERT_EQ(cache.last.what, cases[i].what);
        ASSERT_EQ(cache.last.guild_id, cases[i].guild_id);
        ASSERT_EQ(cache.last.id, cases[i].id);
        ASSERT_EQ(cache.last.after, cases[i].after);
        ASSERT_EQ(cache.last.channel_id, cases[i].channel_id);
        ASSERT_EQ(cache.last.limit, cases[i].limit);
    }
    /* the POST of the same path is still the gateway's member request (no reply: 504) */
    script(0, "{}", 1);
    req("POST", "/v1/guilds/" G "/members", NULL, &r);
    ASSERT_EQ(r.status, 504);
    ASSERT_EQ(cache.reads, 0);
    req("DELETE", "/v1/guilds/" G "/members", NULL, &r);
    ASSERT_EQ(r.status, 405);
    ASSERT_STR_EQ(r.allow, "GET, HEAD, POST");
    stop();
}

/* Bad ids are 400 invalid_id; a bad limit, after or channel_id is 400 invalid_query naming it. */
TEST(bad_ids_and_queries_are_400)
{
    static const struct {
        const char *path, *code, *names;
    } cases[] = {
        {"/v1/guilds/abc", "invalid_id", "guild id"},
        {"/v1/guilds/0/roles", "invalid_id", "guild id"},
        {"/v1/guilds/018/roles", "invalid_id", "guild id"},
        {"/v1/guilds/99999999999999999999/roles", "invalid_id", "guild id"},
        {"/v1/guilds/" G "/members/x", "invalid_id", "user id"},
        {"/v1/guilds/" G "/voice-states/-1", "invalid_id", "user id"},
        {"/v1/guilds/x/members/" U "/permissions", "invalid_id", "guild id"},
        {"/v1/channels/1.5", "invalid_id", "channel id"},
        {"/v1/users/%20", "invalid_id", "user id"},
        {"/v1/guilds/" G "/members?limit=0", "invalid_query", "limit"},
        {"/v1/guilds/" G "/members?limit=1001", "invalid_query", "limit"},
        {"/v1/guilds/" G "/members?limit=", "invalid_query", "limit"},
        {"/v1/guilds/" G "/members?limit=5x", "invalid_query", "limit"},
        {"/v1/guilds/" G "/members?limit=-1", "invalid_query", "limit"},
        {"/v1/guilds/" G "/members?after=x", "invalid_query", "after"},
        {"/v1/guilds/" G "/members?after=", "invalid_query", "after"},
        {"/v1/guilds/" G "/members/" U "/permissions?channel_id=0", "invalid_query", "channel_id"},
        {"/v1/guilds/" G "/members/" U "/permissions?channel_id=z", "invalid_query", "channel_id"},
        {"/v1/cache/guilds?limit=99999", "invalid_query", "limit"},
        {"/v1/cache/guilds?after=-3", "invalid_query", "after"},
    };
    struct resp r;
    start("{}", 1);
    ASSERT(srv);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        script(0, "{}", 1);
        get(cases[i].path, &r);
        if (r.status != 400 || strcmp(code_of(&r), cases[i].code) ||
            strncmp(message, cases[i].names, strlen(cases[i].names)))
            T_FAIL_("%s: %ld %s", cases[i].path, r.status, r.body);
        ASSERT_EQ(cache.reads, 0);
    }
    stop();
}

/* What the cache answers becomes the route's status and error code. */
TEST(cache_answers_map_to_statuses)
{
    struct resp r;
    start("{\"members\":false}", 1);
    ASSERT(srv);
    /* a kind not kept names its config key */
    script(CA_NOT_CACHED, NULL, 1);
    get("/v1/guilds/" G "/members/" U, &r);
    ASSERT_EQ(r.status, 404);
    ASSERT_STR_EQ(code_of(&r), "not_cached");
    ASSERT_CONTAINS(message, "\"cache.members\"");
    get("/v1/guilds/" G "/voice-states", &r);
    ASSERT_STR_EQ(code_of(&r), "not_cached");
    ASSERT_CONTAINS(message, "\"cache.voice_states\"");
    ASSERT(r.etag[0] == '\0');

    /* an unknown guild whose shard is ready: 404; a known guild: the entity is unknown */
    script(CA_UNKNOWN, NULL, -1);
    get("/v1/guilds/" G, &r);
    ASSERT_EQ(r.status, 404);
    ASSERT_STR_EQ(code_of(&r), "unknown_guild");
    get("/v1/guilds/" G "/members/" U, &r);
    ASSERT_STR_EQ(code_of(&r), "unknown_guild");
    script(CA_UNKNOWN, NULL, 1);
    get("/v1/guilds/" G "/members/" U, &r);
    ASSERT_EQ(r.status, 404);
    ASSERT_STR_EQ(code_of(&r), "unknown_member");
    get("/v1/guilds/" G "/voice-states/" U, &r);
    ASSERT_STR_EQ(code_of(&r), "unknown_voice_state");
    get("/v1/channels/5", &r);
    ASSERT_STR_EQ(code_of(&r), "unknown_channel");
    get("/v1/users/5", &r);
    ASSERT_STR_EQ(code_of(&r), "unknown_user");
    script(CA_UNKNOWN, NULL, 1);
    cache.channel_rc = CA_UNKNOWN;
    get("/v1/guilds/" G "/members/" U "/permissions?channel_id=6", &r);
    ASSERT_STR_EQ(code_of(&r), "unknown_channel");
    script(CA_UNKNOWN, NULL, 1);
    get("/v1/guilds/" G "/members/" U "/permissions?channel_id=6", &r);
    ASSERT_STR_EQ(code_of(&r), "unknown_member");

    /* an unknown guild while its shard (here) is not ready yet: still loading */
    script(CA_UNKNOWN, NULL, -1);
    shard_status = "identifying";
    get("/v1/guilds/" G "/roles", &r);
    ASSERT_EQ(r.status, 503);
    ASSERT_STR_EQ(code_of(&r), "guild_loading");
    ASSERT_STR_EQ(r.retry_after, "1");
    get("/v1/users/5", &r); /* not a guild's read */
    ASSERT_EQ(r.status, 404);
    shard_status = "ready";

    /* a guild the cache knows is not loaded yet */
    script(CA_LOADING, NULL, 1);
    get("/v1/guilds/" G "/channels", &r);
    ASSERT_EQ(r.status, 503);
    ASSERT_STR_EQ(code_of(&r), "guild_loading");
    ASSERT_STR_EQ(r.retry_after, "1");

    script(SH_ENOMEM, NULL, 1);
    get("/v1/guilds/" G, &r);
    ASSERT_EQ(r.status, 500);
    stop();

    /* the cache block is there but main() has not handed the cache over yet */
    start("{}", 0);
    get("/v1/cache", &r);
    ASSERT_EQ(r.status, 503);
    ASSERT_STR_EQ(code_of(&r), "unavailable");
    stop();
}

/* No cache block: every cache route says so, and nothing else changes. */
TEST(no_cache_block_is_cache_disabled)
{
    static const char *const paths[] = {
        "/v1/guilds/" G,
        "/v1/guilds/" G "/channels",
        "/v1/guilds/" G "/threads",
        "/v1/guilds/" G "/roles",
        "/v1/guilds/" G "/emojis",
        "/v1/guilds/" G "/members",
        "/v1/guilds/" G "/members/" U,
        "/v1/guilds/" G "/members/" U "/permissions",
        "/v1/guilds/" G "/voice-states",
        "/v1/guilds/" G "/voice-states/" U,
        "/v1/channels/5",
        "/v1/users/5",
        "/v1/cache/guilds",
        "/v1/cache",
    };
    struct resp r;
    start(NULL, 1);
    ASSERT(srv);
    script(0, "{}", 1);
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        get(paths[i], &r);
        if (r.status != 404 || strcmp(code_of(&r), "cache_disabled"))
            T_FAIL_("%s: %ld %s", paths[i], r.status, r.body);
    }
    ASSERT_EQ(cache.reads, 0);
    stop();
}

/* Every 200 has an ETag, a hash of the body; If-None-Match with it (or *) is a 304, no body. */
TEST(etag_and_if_none_match)
{
    struct resp r, again;
    start("{}", 1);
    ASSERT(srv);
    script(0, "{\"id\":\"" G "\",\"name\":\"a\"}", 1);
    get("/v1/guilds/" G, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(strlen(r.etag), 18u);
    ASSERT(r.etag[0] == '"' && r.etag[17] == '"');
    ASSERT_EQ(strspn(r.etag + 1, "0123456789abcdef"), 16u);
    get("/v1/guilds/" G, &again); /* the same body: the same tag */
    ASSERT_STR_EQ(again.etag, r.etag);

    char list[128];
    const char *matching[] = {r.etag, "*", list, list + 40};
    snprintf(list, sizeof(list), "\"0000000000000000\", %s", r.etag);
    snprintf(list + 40, sizeof(list) - 40, "W/%s", r.etag);
    for (size_t i = 0; i < sizeof(matching) / sizeof(matching[0]); i++) {
        req("GET", "/v1/guilds/" G, matching[i], &again);
        ASSERT_EQ(again.status, 304);
        ASSERT_EQ(again.len, 0u);
        ASSERT_STR_EQ(again.etag, r.etag);
    }
    req("GET", "/v1/guilds/" G, "\"0000000000000000\"", &again);
    ASSERT_EQ(again.status, 200);
    ASSERT_STR_EQ(again.body, "{\"id\":\"" G "\",\"name\":\"a\"}");
    req("HEAD", "/v1/guilds/" G, NULL, &again);
    ASSERT_EQ(again.status, 200);
    ASSERT_STR_EQ(again.etag, r.etag);

    /* another body: another tag, and the old tag no longer matches */
    script(0, "{\"id\":\"" G "\",\"name\":\"b\"}", 1);
    req("GET", "/v1/guilds/" G, r.etag, &again);
    ASSERT_EQ(again.status, 200);
    ASSERT(strcmp(again.etag, r.etag) != 0);

    /* errors carry none, and other routes carry none */
    script(CA_UNKNOWN, NULL, -1);
    req("GET", "/v1/guilds/" G, "*", &again);
    ASSERT_EQ(again.status, 404);
    ASSERT(again.etag[0] == '\0');
    req("GET", "/healthz", "*", &again);
    ASSERT_EQ(again.status, 200);
    ASSERT(again.etag[0] == '\0');
    stop();
}

/* ---- cluster mode: node-a (this one) holds shard 0, node-b shard 1 ---- */

static struct {
    pthread_mutex_t lock;
    int calls, shard, status;
    char route[96], param[96], body[512];
    const char *answer;
} fw = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int f_forward(void *ud, int shard, const char *route, const char *param, const char *body,
                     size_t len, int timeout_ms, http_answer_fn *done, void *dud)
{
    (void)ud, (void)timeout_ms;
    pthread_mutex_lock(&fw.lock);
    fw.calls++;
    fw.shard = shard;
    snprintf(fw.route, sizeof(fw.route), "%s", route);
    snprintf(fw.param, sizeof(fw.param), "%s", param);
    snprintf(fw.body, sizeof(fw.body), "%.*s", (int)len, body);
    int status = fw.status;
    const char *answer = fw.answer;
    pthread_mutex_unlock(&fw.lock);
    done(dud, status, "", answer, strlen(answer));
    return 0;
}

static int f_owner(void *ud, int shard, char *name, size_t cap)
{
    (void)ud;
    snprintf(name, cap, "%s", shard == 1 ? "node-b" : "node-a");
    return 0;
}

static const struct http_cluster_ops cl_ops = {.forward = f_forward, .owner = f_owner};

static void owner_answers(int status, const char *answer)
{
    pthread_mutex_lock(&fw.lock);
    fw.calls = 0;
    fw.status = status;
    fw.answer = answer;
    fw.route[0] = fw.param[0] = fw.body[0] = '\0';
    pthread_mutex_unlock(&fw.lock);
}

static struct {
    int status;
    char body[512];
} executed;

static void on_executed(void *ud, int status, const char *retry_after, const char *body, size_t len)
{
    (void)ud, (void)retry_after;
    executed.status = status;
    snprintf(executed.body, sizeof(executed.body), "%.*s", (int)len, body);
}

#define G0 "8388608" /* 2 << 22: shard 0, here */

/* A guild's read goes to its shard's owner with its query; the answer gets its ETag here. */
TEST(cluster_guild_reads_go_to_the_owner)
{
    struct resp r, again;
    only_shard_0 = 1;
    start_with("{}", 1, ",\"cluster\":{\"redis\":\"unix:/nowhere\",\"node\":\"node-a\"}");
    ASSERT(srv);
    http_server_set_cluster_ops(srv, &cl_ops);
    script(0, "{\"here\":true}", 0);
    owner_answers(200, "[{\"user\":{\"id\":\"" U "\"}}]");
    get("/v1/guilds/" G "/members?limit=5&after=" U "&other=x", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "[{\"user\":{\"id\":\"" U "\"}}]");
    ASSERT_EQ(fw.calls, 1);
    ASSERT_EQ(fw.shard, 1);
    ASSERT_STR_EQ(fw.route, "GET /v1/guilds/{guild_id}/members");
    ASSERT_STR_EQ(fw.param, G);
    ASSERT_STR_EQ(fw.body, "{\"limit\":\"5\",\"after\":\"" U "\"}");
    ASSERT_EQ(cache.reads, 0);
    ASSERT_EQ(strlen(r.etag), 18u);
    req("GET", "/v1/guilds/" G "/members?limit=5&after=" U, r.etag, &again);
    ASSERT_EQ(again.status, 304);
    /* two captures travel as one parameter */
    owner_answers(200, "{\"permissions\":\"8\",\"names\":[\"ADMINISTRATOR\"]}");
    get("/v1/guilds/" G "/members/" U "/permissions?channel_id=5", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(fw.route, "GET /v1/guilds/{guild_id}/members/{user_id}/permissions");
    ASSERT_STR_EQ(fw.param, G "/" U);
    ASSERT_STR_EQ(fw.body, "{\"channel_id\":\"5\"}");
    /* the owner's errors come back as they are */
    owner_answers(503, "{\"error\":{\"code\":\"guild_loading\",\"message\":\"m\"}}");
    get("/v1/guilds/" G, &r);
    ASSERT_EQ(r.status, 503);
    ASSERT_STR_EQ(code_of(&r), "guild_loading");
    ASSERT(r.etag[0] == '\0');
    /* a guild of this node's shard is read here; a bad id is refused here */
    owner_answers(200, "{}");
    get("/v1/guilds/" G0 "/roles", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "{\"here\":true}");
    get("/v1/guilds/x/roles", &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_EQ(fw.calls, 0);

    /* the owner's side: a forwarded read runs here with the query it carries */
    script(0, "[]", 1);
    ASSERT_EQ(http_server_execute(srv, "GET /v1/guilds/{guild_id}/members", G,
                                  "{\"limit\":\"7\",\"after\":\"9\"}", 30, on_executed, NULL),
              0);
    ASSERT_EQ(executed.status, 200);
    ASSERT_STR_EQ(executed.body, "[]");
    ASSERT_EQ(cache.last.what, CA_MEMBERS);
    ASSERT_EQ(cache.last.limit, 7);
    ASSERT_EQ(cache.last.after, 9u);
    ASSERT_EQ(fw.calls, 0); /* never forwarded again */
    ASSERT_EQ(http_server_execute(srv, "GET /v1/guilds/{guild_id}/members", G, "{\"limit\":\"0\"}",
                                  14, on_executed, NULL),
              0);
    ASSERT_EQ(executed.status, 400);
    ASSERT_EQ(http_server_execute(srv, "GET /v1/shards/{id}", "1", "", 0, on_executed, NULL), 0);
    ASSERT_EQ(executed.status, 404);
    stop();
    only_shard_0 = 0;
}

/* Channels and users: this node first, then the others; the guild list merges every page. */
TEST(cluster_fan_out_for_channels_users_and_the_guild_list)
{
    struct resp r;
    only_shard_0 = 1;
    start_with("{}", 1, ",\"cluster\":{\"redis\":\"unix:/nowhere\",\"node\":\"node-a\"}");
    ASSERT(srv);
    http_server_set_cluster_ops(srv, &cl_ops);
    /* held here: no one else is asked */
    script(0, "{\"id\":\"5\"}", 0);
    owner_answers(200, "{\"id\":\"elsewhere\"}");
    get("/v1/channels/5", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "{\"id\":\"5\"}");
    ASSERT_EQ(fw.calls, 0);
    /* not held here: node-b is asked through its shard */
    script(CA_UNKNOWN, NULL, -1);
    get("/v1/users/" U, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "{\"id\":\"elsewhere\"}");
    ASSERT_EQ(fw.calls, 1);
    ASSERT_EQ(fw.shard, 1);
    ASSERT_STR_EQ(fw.route, "GET /v1/users/{user_id}");
    ASSERT_STR_EQ(fw.param, U);
    ASSERT_EQ(strlen(r.etag), 18u);
    /* nobody holds it: this node's 404 */
    owner_answers(404, "{\"error\":{\"code\":\"unknown_channel\",\"message\":\"b\"}}");
    get("/v1/channels/5", &r);
    ASSERT_EQ(r.status, 404);
    ASSERT_STR_EQ(code_of(&r), "unknown_channel");
    ASSERT(strcmp(message, "b") != 0);
    ASSERT_EQ(fw.calls, 1);

    /* the guild list: both pages, by id, limit applied after merging */
    script(0, "{\"guilds\":[{\"id\":\"10\",\"shard\":0},{\"id\":\"30\",\"shard\":0}]}", 0);
    owner_answers(200, "{\"guilds\":[{\"id\":\"9\",\"shard\":1},{\"id\":\"20\",\"shard\":1}]}");
    get("/v1/cache/guilds?limit=3&after=5", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "{\"guilds\":[{\"id\":\"9\",\"shard\":1},{\"id\":\"10\",\"shard\":0},"
                          "{\"id\":\"20\",\"shard\":1}]}");
    ASSERT_STR_EQ(fw.route, "GET /v1/cache/guilds");
    ASSERT_STR_EQ(fw.body, "{\"limit\":\"3\",\"after\":\"5\"}");
    ASSERT_EQ(cache.last.limit, 3);
    ASSERT_EQ(cache.last.after, 5u);
    /* a node that cannot answer makes the list fail rather than look complete */
    owner_answers(503, "{\"error\":{\"code\":\"owner_unreachable\",\"message\":\"m\"}}");
    get("/v1/cache/guilds", &r);
    ASSERT_EQ(r.status, 503);
    ASSERT_STR_EQ(code_of(&r), "owner_unreachable");

    /* /v1/cache is this node's own, named */
    script(0, "{\"bytes\":1}", 0);
    owner_answers(200, "{}");
    get("/v1/cache", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "{\"bytes\":1,\"node\":\"node-a\"}");
    ASSERT_EQ(fw.calls, 0);
    stop();
    only_shard_0 = 0;
}

TEST_MAIN(RUN(routes_read_what_their_path_names); RUN(bad_ids_and_queries_are_400);
          RUN(cache_answers_map_to_statuses); RUN(no_cache_block_is_cache_disabled);
          RUN(etag_and_if_none_match); RUN(cluster_guild_reads_go_to_the_owner);
          RUN(cluster_fan_out_for_channels_users_and_the_guild_list); curl_global_cleanup();)
