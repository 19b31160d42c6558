/*
 * tests/unit/test_http_guard.c: which Host, Origin and Content-Type values the control API
 * accepts (http/guard.h): its own names only, so that web pages elsewhere cannot drive it.
 */
#include <string.h>

#include "http/guard.h"
#include "tests/unit/test.h"

static char *allowed[] = {"shardhook.test", "api.example:8443", "[fd00::5]"};

static struct http_guard loopback(void)
{
    struct http_guard g;
    memset(&g, 0, sizeof(g));
    g.check_host = 1;
    g.loopback = 1;
    g.port = 7878;
    strcpy(g.listen_host, "127.0.0.1");
    g.allowed = allowed;
    g.n_allowed = 3;
    return g;
}

TEST(host_names_this_api_only)
{
    struct http_guard g = loopback();
    const char *ok[] = {"127.0.0.1:7878",      "localhost:7878",   "LocalHost:7878",
                        "[::1]:7878",          "shardhook.test",   "shardhook.test:1",
                        "SHARDHOOK.test:7878", "api.example:8443", "[fd00::5]",
                        "[fd00::5]:99"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        ASSERT(http_guard_host_ok(&g, ok[i]));
    const char *bad[] = {NULL,
                         "",
                         "evil.example",
                         "evil.example:7878",
                         "127.0.0.1",
                         "127.0.0.1:7879",
                         "127.0.0.2:7878",
                         "localhost",
                         "api.example",
                         "api.example:443",
                         "[::1]",
                         "::1:7878",
                         "[::1]:7878x",
                         "127.0.0.1:7878:1",
                         "127.0.0.1:99999",
                         "[fd00::5",
                         ":7878",
                         "shardhook.test.evil.example",
                         "localhost:7878 "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ASSERT(!http_guard_host_ok(&g, bad[i]));
    /* a listen address that is not loopback: only itself and the allowed names */
    g.loopback = 0;
    strcpy(g.listen_host, "10.0.0.7");
    ASSERT(http_guard_host_ok(&g, "10.0.0.7:7878"));
    ASSERT(!http_guard_host_ok(&g, "localhost:7878"));
    ASSERT(http_guard_host_ok(&g, "shardhook.test"));
    /* checks off (non-loopback listen without allowed_hosts): anything */
    g.check_host = 0;
    ASSERT(http_guard_host_ok(&g, "whatever.example"));
    ASSERT(http_guard_host_ok(&g, NULL));
}

TEST(origin_is_this_api_or_absent)
{
    struct http_guard g = loopback();
    ASSERT(http_guard_origin_ok(&g, NULL, "127.0.0.1:7878"));
    ASSERT(http_guard_origin_ok(&g, "http://127.0.0.1:7878", "127.0.0.1:7878"));
    ASSERT(http_guard_origin_ok(&g, "http://localhost:7878", "127.0.0.1:7878"));
    ASSERT(http_guard_origin_ok(&g, "https://shardhook.test", "shardhook.test"));
    ASSERT(http_guard_origin_ok(&g, "http://shardhook.test:8080", "shardhook.test:8080"));
    ASSERT(http_guard_origin_ok(&g, "HTTP://LOCALHOST:7878", NULL));
    const char *bad[] = {"null",
                         "",
                         "http://evil.example",
                         "http://evil.example:7878",
                         "http://127.0.0.1:7878.evil.example",
                         "http://127.0.0.1:7878/",
                         "http://user@127.0.0.1:7878",
                         "file://",
                         "ws://127.0.0.1:7878",
                         "http://127.0.0.1",
                         "https://127.0.0.1:7878x",
                         "http://"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ASSERT(!http_guard_origin_ok(&g, bad[i], "127.0.0.1:7878"));
    /* with Host checks off the request's own Host is still the one origin that is not foreign */
    g.check_host = 0;
    g.n_allowed = 0;
    g.loopback = 0;
    strcpy(g.listen_host, "0.0.0.0");
    ASSERT(http_guard_origin_ok(&g, "http://bot.example:7878", "bot.example:7878"));
    ASSERT(!http_guard_origin_ok(&g, "http://evil.example", "bot.example:7878"));
}

TEST(json_content_type)
{
    const char *ok[] = {"application/json", "Application/JSON", "application/json; charset=utf-8",
                        "application/json;charset=UTF-8", " application/json "};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        ASSERT(http_guard_json_type(ok[i]));
    const char *bad[] = {NULL,
                         "",
                         "text/plain",
                         "application/x-www-form-urlencoded",
                         "multipart/form-data; boundary=x",
                         "application/jsonp",
                         "application/json-patch+json",
                         "text/json",
                         "application/json, text/plain"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ASSERT(!http_guard_json_type(bad[i]));
}

TEST_MAIN(RUN(host_names_this_api_only); RUN(origin_is_this_api_or_absent); RUN(json_content_type))
