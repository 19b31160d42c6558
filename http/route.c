/*
 * http/route.c: the route table of http/route.h, each row with its handler, and path matching.
 * Owns no state: the table is constant and matching copies what it captures into the caller's
 * struct.
 */
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "http/internal.h"
#include "http/route.h"
#include "lib/errors.h"

#define ROUTE_ROW_(id, method_, pattern_, label, auth_, handler)                                   \
    {HTTP_ROUTE_##id, method_, pattern_, label, auth_, handler},
static const struct http__route table[] = {HTTP_ROUTES(ROUTE_ROW_)};
#undef ROUTE_ROW_
#define N_ROUTES (sizeof(table) / sizeof(table[0]))
_Static_assert(N_ROUTES == HTTP_ROUTE_COUNT_ - 1, "one row per route");

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
    if (!strcmp(method, "DELETE"))
        return HTTP_DELETE;
    return HTTP_OTHER;
}

/*
 * The longest segment a row's "{}" captures, plus one, by what its label says the segment is:
 * a webhook name up to CFG_WEBHOOK_NAME_MAX, a dead-letter id (a file name, about 51
 * characters) up to HTTP_PARAM_MAX - 1, anything else (a shard id, a snowflake) up to 31.
 */
static size_t param_cap(const struct http__route *row)
{
    _Static_assert(CFG_WEBHOOK_NAME_MAX < HTTP_PARAM_MAX, "a webhook name fits a parameter");
    if (strstr(row->name, "{name}"))
        return CFG_WEBHOOK_NAME_MAX + 1;
    return strstr(row->name, "{dead_letter_id}") ? HTTP_PARAM_MAX : 32;
}

/*
 * 1 when path fits pattern; the "{}" segments (at most two, each under cap bytes) are copied
 * into param, joined by '/'.
 */
static int fits(const char *pattern, const char *path, char *param, size_t cap)
{
    const char *p = pattern, *s = path;
    size_t used = 0;
    param[0] = '\0';
    while (*p) {
        if (p[0] == '{' && p[1] == '}') {
            size_t n = strcspn(s, "/");
            if (n == 0 || n >= cap || used + n + 2 > HTTP_PARAM_MAX)
                return 0;
            if (used)
                param[used++] = '/';
            memcpy(param + used, s, n);
            used += n;
            param[used] = '\0';
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

/* Add method m to a 405's Allow list (in GET, HEAD, POST, DELETE order), once. */
static void allow_add(unsigned *methods, enum http_method m, char *allow, size_t cap)
{
    *methods |= 1u << m;
    snprintf(allow, cap, "%s%s%s%s%s", *methods & 1u << HTTP_GET ? "GET, HEAD" : "",
             *methods & 1u << HTTP_GET && *methods & ~(1u << HTTP_GET) ? ", " : "",
             *methods & 1u << HTTP_POST ? "POST" : "",
             *methods & 1u << HTTP_POST && *methods & 1u << HTTP_DELETE ? ", " : "",
             *methods & 1u << HTTP_DELETE ? "DELETE" : "");
}

void http_route_match(enum http_method method, const char *path, struct http_match *out)
{
    memset(out, 0, sizeof(*out));
    out->status = 404;
    if (!path)
        return;
    enum http_method want = method == HTTP_HEAD ? HTTP_GET : method;
    char param[HTTP_PARAM_MAX];
    unsigned methods = 0;
    for (size_t i = 0; i < N_ROUTES; i++) {
        if (!fits(table[i].pattern, path, param, param_cap(&table[i])))
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
        allow_add(&methods, table[i].method, out->allow, sizeof(out->allow));
    }
}

const struct http__route *http__route_row(enum http_route r)
{
    /* the rows are in enum order: HTTP_ROUTE_<ID> is row HTTP_ROUTE_<ID> - 1 */
    return r > HTTP_ROUTE_NONE && r < HTTP_ROUTE_COUNT_ ? &table[r - 1] : NULL;
}

const char *http_route_name(enum http_route r)
{
    const struct http__route *row = http__route_row(r);
    return row ? row->name : "unmatched";
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
