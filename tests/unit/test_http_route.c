/* tests/unit/test_http_route.c: the control API's route table and path parameters (http/route.c).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "http/route.h"
#include "test.h"

TEST(every_route_matches)
{
    static const struct {
        enum http_method m;
        const char *path;
        enum http_route want;
        const char *param;
        int auth;
    } cases[] = {
        {HTTP_GET, "/", HTTP_ROUTE_STATUS_PAGE, "", 0},
        {HTTP_HEAD, "/", HTTP_ROUTE_STATUS_PAGE, "", 0},
        {HTTP_GET, "/healthz", HTTP_ROUTE_HEALTHZ, "", 0},
        {HTTP_GET, "/readyz", HTTP_ROUTE_READYZ, "", 0},
        {HTTP_GET, "/metrics", HTTP_ROUTE_METRICS, "", 1},
        {HTTP_GET, "/v1/gateway", HTTP_ROUTE_GATEWAY, "", 1},
        {HTTP_GET, "/v1/shards", HTTP_ROUTE_SHARDS, "", 1},
        {HTTP_GET, "/v1/shards/12", HTTP_ROUTE_SHARD, "12", 1},
        {HTTP_POST, "/v1/shards/3/reconnect", HTTP_ROUTE_RECONNECT, "3", 1},
        {HTTP_POST, "/v1/shards/3/send", HTTP_ROUTE_SEND, "3", 1},
        {HTTP_POST, "/v1/shards/3/handoff", HTTP_ROUTE_HANDOFF, "3", 1},
        {HTTP_POST, "/v1/presence", HTTP_ROUTE_PRESENCE, "", 1},
        {HTTP_POST, "/v1/guilds/81384788765712384/members", HTTP_ROUTE_MEMBERS, "81384788765712384",
         1},
        {HTTP_POST, "/v1/guilds/5/channel-info", HTTP_ROUTE_CHANNEL_INFO, "5", 1},
        {HTTP_POST, "/v1/guilds/5/voice-state", HTTP_ROUTE_VOICE_STATE, "5", 1},
        {HTTP_POST, "/v1/soundboard-sounds", HTTP_ROUTE_SOUNDBOARD, "", 1},
        {HTTP_GET, "/v1/dead-letters", HTTP_ROUTE_DEAD_LETTERS, "", 1},
        {HTTP_POST,
         "/v1/dead-letters/20261123T134500.123-w0-msg_abcdefghijklmnopqrstuvwx/redeliver",
         HTTP_ROUTE_DEAD_LETTER_REDELIVER, "20261123T134500.123-w0-msg_abcdefghijklmnopqrstuvwx",
         1},
        {HTTP_DELETE, "/v1/dead-letters/x", HTTP_ROUTE_DEAD_LETTER_DELETE, "x", 1},
        {HTTP_POST, "/v1/webhooks/audit/redeliver", HTTP_ROUTE_WEBHOOK_REDELIVER, "audit", 1},
        /* the entity cache: a GET of members is the cache, a POST the gateway's request */
        {HTTP_GET, "/v1/guilds/81384788765712384", HTTP_ROUTE_CACHE_GUILD, "81384788765712384", 1},
        {HTTP_HEAD, "/v1/guilds/5/channels", HTTP_ROUTE_CACHE_CHANNELS, "5", 1},
        {HTTP_GET, "/v1/guilds/5/threads", HTTP_ROUTE_CACHE_THREADS, "5", 1},
        {HTTP_GET, "/v1/guilds/5/roles", HTTP_ROUTE_CACHE_ROLES, "5", 1},
        {HTTP_GET, "/v1/guilds/5/emojis", HTTP_ROUTE_CACHE_EMOJIS, "5", 1},
        {HTTP_GET, "/v1/guilds/5/members", HTTP_ROUTE_CACHE_MEMBERS, "5", 1},
        {HTTP_GET, "/v1/guilds/5/members/80351110224678912", HTTP_ROUTE_CACHE_MEMBER,
         "5/80351110224678912", 1},
        {HTTP_GET, "/v1/guilds/5/members/7/permissions", HTTP_ROUTE_CACHE_PERMISSIONS, "5/7", 1},
        {HTTP_GET, "/v1/guilds/5/voice-states", HTTP_ROUTE_CACHE_VOICE_STATES, "5", 1},
        {HTTP_GET, "/v1/guilds/5/voice-states/9", HTTP_ROUTE_CACHE_VOICE_STATE, "5/9", 1},
        {HTTP_GET, "/v1/channels/41771983423143937", HTTP_ROUTE_CACHE_CHANNEL, "41771983423143937",
         1},
        {HTTP_GET, "/v1/users/8", HTTP_ROUTE_CACHE_USER, "8", 1},
        {HTTP_GET, "/v1/cache/guilds", HTTP_ROUTE_CACHE_GUILD_LIST, "", 1},
        {HTTP_GET, "/v1/cache", HTTP_ROUTE_CACHE_STATS, "", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct http_match m;
        http_route_match(cases[i].m, cases[i].path, &m);
        ASSERT_EQ(m.status, 0);
        ASSERT_EQ(m.route, cases[i].want);
        ASSERT_STR_EQ(m.param, cases[i].param);
        ASSERT_EQ(m.auth, cases[i].auth);
    }
}

TEST(unknown_paths_are_404_and_wrong_methods_405)
{
    struct http_match m;
    /* a path parameter longer than HTTP_PARAM_MAX - 1 matches no route */
    char too_long[HTTP_PARAM_MAX + 32] = "/v1/shards/";
    memset(too_long + 11, '1', HTTP_PARAM_MAX);
    strcpy(too_long + 11 + HTTP_PARAM_MAX, "/send");
    const char *missing[] = {"/v1",
                             "/v1/",
                             "/v1/shards/",
                             "/v1/shards//send",
                             "/v1/shards/1/x",
                             "/v1/guilds/1/",
                             "/v1/guilds/1/members/",
                             "/v1/guilds/1/members//permissions",
                             "/v1/guilds/1/members/2/permissions/3",
                             "/v1/users",
                             "/v1/cache/",
                             "/healthz/",
                             "",
                             "/v1/shards/1/send/more",
                             too_long};
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        http_route_match(HTTP_GET, missing[i], &m);
        ASSERT_EQ(m.status, 404);
        ASSERT_EQ(m.route, HTTP_ROUTE_NONE);
    }
    http_route_match(HTTP_POST, "/v1/shards", &m);
    ASSERT_EQ(m.status, 405);
    ASSERT_STR_EQ(m.allow, "GET, HEAD");
    http_route_match(HTTP_GET, "/v1/presence", &m);
    ASSERT_EQ(m.status, 405);
    ASSERT_STR_EQ(m.allow, "POST");
    ASSERT_EQ(m.auth, 1);
    http_route_match(HTTP_GET, "/v1/shards/2/reconnect", &m);
    ASSERT_EQ(m.status, 405);
    http_route_match(HTTP_GET, "/v1/dead-letters/x", &m);
    ASSERT_EQ(m.status, 405);
    ASSERT_STR_EQ(m.allow, "DELETE");
    http_route_match(HTTP_GET, NULL, &m);
    ASSERT_EQ(m.status, 404);
    /* a path with a GET and a POST lists both */
    http_route_match(HTTP_DELETE, "/v1/guilds/5/members", &m);
    ASSERT_EQ(m.status, 405);
    ASSERT_STR_EQ(m.allow, "GET, HEAD, POST");
    http_route_match(HTTP_POST, "/v1/guilds/5", &m);
    ASSERT_EQ(m.status, 405);
    ASSERT_STR_EQ(m.allow, "GET, HEAD");
    http_route_match(HTTP_POST, "/v1/guilds/5/members/6", &m);
    ASSERT_EQ(m.status, 405);
    ASSERT_STR_EQ(m.allow, "GET, HEAD");
    http_route_match(HTTP_OTHER, "/v1/guilds/5/members", &m);
    ASSERT_EQ(m.status, 405);
    ASSERT_STR_EQ(m.allow, "GET, HEAD, POST");
}

/* Two captures: each segment is capped on its own and both come out joined by '/'. */
TEST(two_captures)
{
    struct http_match m;
    char path[256];
    /* two 20-digit snowflakes (the longest) fit */
    http_route_match(HTTP_GET, "/v1/guilds/18446744073709551615/members/18446744073709551614", &m);
    ASSERT_EQ(m.status, 0);
    ASSERT_EQ(m.route, HTTP_ROUTE_CACHE_MEMBER);
    ASSERT_STR_EQ(m.param, "18446744073709551615/18446744073709551614");
    /* a segment over 31 bytes matches nothing */
    snprintf(path, sizeof(path), "/v1/guilds/5/members/%040d", 1);
    http_route_match(HTTP_GET, path, &m);
    ASSERT_EQ(m.status, 404);
    snprintf(path, sizeof(path), "/v1/guilds/%040d/members/5", 1);
    http_route_match(HTTP_GET, path, &m);
    ASSERT_EQ(m.status, 404);
    ASSERT_STR_EQ(http_route_name(HTTP_ROUTE_CACHE_PERMISSIONS),
                  "/v1/guilds/{guild_id}/members/{user_id}/permissions");
}

TEST(methods_parse)
{
    ASSERT_EQ(http_method_parse("GET"), HTTP_GET);
    ASSERT_EQ(http_method_parse("HEAD"), HTTP_HEAD);
    ASSERT_EQ(http_method_parse("POST"), HTTP_POST);
    ASSERT_EQ(http_method_parse("get"), HTTP_OTHER);
    ASSERT_EQ(http_method_parse("DELETE"), HTTP_DELETE);
    ASSERT_EQ(http_method_parse("PUT"), HTTP_OTHER);
    ASSERT_EQ(http_method_parse(NULL), HTTP_OTHER);
}

TEST(route_names_are_stable_labels)
{
    ASSERT_STR_EQ(http_route_name(HTTP_ROUTE_SHARD), "/v1/shards/{id}");
    ASSERT_STR_EQ(http_route_name(HTTP_ROUTE_MEMBERS), "/v1/guilds/{guild_id}/members");
    ASSERT_STR_EQ(http_route_name(HTTP_ROUTE_NONE), "unmatched");
}

TEST(shard_ids)
{
    int id = -1;
    ASSERT_EQ(http_parse_shard_id("0", &id), 0);
    ASSERT_EQ(id, 0);
    ASSERT_EQ(http_parse_shard_id("65535", &id), 0);
    ASSERT_EQ(id, 65535);
    const char *bad[] = {"", "-1", "65536", "01", "1a", " 1", "+1", "999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ASSERT(http_parse_shard_id(bad[i], &id) < 0);
}

TEST_MAIN(RUN(every_route_matches); RUN(unknown_paths_are_404_and_wrong_methods_405);
          RUN(methods_parse); RUN(two_captures); RUN(route_names_are_stable_labels);
          RUN(shard_ids);)
