/*
 * http/route.c: the route table of http/route.h. Owns no state: the table is constant and
 * matching copies what it captures into the caller's struct.
 */
#include <stdio.h>
#include <string.h>

#include "http/route.h"
#include "lib/errors.h"

/* A pattern segment "{}" captures one path segment. */
static const struct {
    enum http_route route;
    enum http_method method;
    const char *pattern;
    const char *name;
    int auth;
} table[] = {
    {HTTP_ROUTE_STATUS_PAGE, HTTP_GET, "/", "/", 0},
    {HTTP_ROUTE_HEALTHZ, HTTP_GET, "/healthz", "/healthz", 0},
    {HTTP_ROUTE_READYZ, HTTP_GET, "/readyz", "/readyz", 0},
    {HTTP_ROUTE_METRICS, HTTP_GET, "/metrics", "/metrics", 1},
    {HTTP_ROUTE_GATEWAY, HTTP_GET, "/v1/gateway", "/v1/gateway", 1},
    {HTTP_ROUTE_SHARDS, HTTP_GET, "/v1/shards", "/v1/shards", 1},
    {HTTP_ROUTE_SHARD, HTTP_GET, "/v1/shards/{}", "/v1/shards/{id}", 1},
    {HTTP_ROUTE_RECONNECT, HTTP_POST, "/v1/shards/{}/reconnect", "/v1/shards/{id}/reconnect", 1},
    {HTTP_ROUTE_SEND, HTTP_POST, "/v1/shards/{}/send", "/v1/shards/{id}/send", 1},
    {HTTP_ROUTE_PRESENCE, HTTP_POST, "/v1/presence", "/v1/presence", 1},
    {HTTP_ROUTE_MEMBERS, HTTP_POST, "/v1/guilds/{}/members", "/v1/guilds/{guild_id}/members", 1},
    {HTTP_ROUTE_CHANNEL_INFO, HTTP_POST, "/v1/guilds/{}/channel-info",
     "/v1/guilds/{guild_id}/channel-info", 1},
    {HTTP_ROUTE_VOICE_STATE, HTTP_POST, "/v1/guilds/{}/voice-state",
     "/v1/guilds/{guild_id}/voice-state", 1},
    {HTTP_ROUTE_SOUNDBOARD, HTTP_POST, "/v1/soundboard-sounds", "/v1/soundboard-sounds", 1},
};
#define N_ROUTES (sizeof(table) / sizeof(table[0]))

enum http_method http_method_parse(const char *method)
{
    if (!method)
        return HTTP_OTHER;
    if (!strcmp(method, "GET"))
        return HTTP_GET;
    if (!strcmp(method, "HEAD"))
        return HTTP_HEAD;
    if (!strcmp(method, "POST"))
        return HTTP_POST;
    return HTTP_OTHER;
}

/* 1 when path fits pattern; the "{}" segment (at most one) is copied into param. */
static int fits(const char *pattern, const char *path, char *param, size_t cap)
{
    const char *p = pattern, *s = path;
    param[0] = '\0';
    while (*p) {
        if (p[0] == '{' && p[1] == '}') {
            size_t n = strcspn(s, "/");
            if (n == 0 || n >= cap)
                return 0;
            memcpy(param, s, n);
            param[n] = '\0';
            s += n;
            p += 2;
            continue;
        }
        if (*p != *s)
            return 0;
        p++;
        s++;
    }
    return *s == '\0';
}

void http_route_match(enum http_method method, const char *path, struct http_match *out)
{
    memset(out, 0, sizeof(*out));
    out->status = 404;
    if (!path)
        return;
    enum http_method want = method == HTTP_HEAD ? HTTP_GET : method;
    char param[HTTP_PARAM_MAX];
    for (size_t i = 0; i < N_ROUTES; i++) {
        if (!fits(table[i].pattern, path, param, sizeof(param)))
            continue;
        if (table[i].method == want) {
            out->route = table[i].route;
            out->status = 0;
            out->auth = table[i].auth;
            memcpy(out->param, param, sizeof(param));
            out->allow[0] = '\0';
            return;
        }
        /* the path exists under another method: remember it for a 405 */
        out->status = 405;
        out->auth = table[i].auth;
        snprintf(out->allow, sizeof(out->allow), "%s",
                 table[i].method == HTTP_GET ? "GET, HEAD" : "POST");
    }
}

const char *http_route_name(enum http_route r)
{
    for (size_t i = 0; i < N_ROUTES; i++)
        if (table[i].route == r)
            return table[i].name;
    return "unmatched";
}

int http_parse_shard_id(const char *s, int *out)
{
    long v = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return SH_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return SH_EINVAL;
        v = v * 10 + (s[i] - '0');
    }
    if (v > 65535)
        return SH_EINVAL;
    *out = (int)v;
    return 0;
}
