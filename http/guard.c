/*
 * http/guard.c: Host, Origin and Content-Type checks of http/guard.h. Owns no state; the
 * allowed names are the config's.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/guard.h"

#define MAX_AUTHORITY 300

/*
 * Split "name", "name:port", "[v6]" or "[v6]:port" into the name (no brackets) and the port
 * (def when absent). 0, or -1 when malformed.
 */
static int split(const char *a, char *name, size_t cap, int def, int *port)
{
    size_t n = strlen(a);
    const char *colon = NULL, *start = a, *end;
    if (n == 0 || n >= MAX_AUTHORITY)
        return -1;
    if (a[0] == '[') {
        const char *rb = strchr(a, ']');
        if (!rb)
            return -1;
        start = a + 1;
        end = rb;
        if (rb[1] == ':')
            colon = rb + 1;
        else if (rb[1])
            return -1;
    } else {
        colon = strchr(a, ':');
        end = colon ? colon : a + n;
        if (colon && strchr(colon + 1, ':'))
            return -1;
    }
    if (end == start || (size_t)(end - start) >= cap)
        return -1;
    memcpy(name, start, (size_t)(end - start));
    name[end - start] = '\0';
    *port = def;
    if (colon) {
        long v = 0;
        const char *p = colon + 1;
        if (!*p || strlen(p) > 5)
            return -1;
        for (; *p; p++) {
            if (!isdigit((unsigned char)*p))
                return -1;
            v = v * 10 + (*p - '0');
        }
        if (v > 65535)
            return -1;
        *port = (int)v;
    }
    return 0;
}

/* 1 when authority names this API whether or not Host checks are on; def: the scheme's port. */
static int listed(const struct http_guard *g, const char *authority, int def)
{
    char name[MAX_AUTHORITY];
    int port;
    if (split(authority, name, sizeof(name), def, &port))
        return 0;
    if (port == g->port && !strcasecmp(name, g->listen_host))
        return 1;
    if (port == g->port && g->loopback &&
        (!strcasecmp(name, "localhost") || !strcmp(name, "127.0.0.1") || !strcmp(name, "::1")))
        return 1;
    for (size_t i = 0; i < g->n_allowed; i++) {
        char an[MAX_AUTHORITY];
        int ap;
        if (split(g->allowed[i], an, sizeof(an), -1, &ap))
            continue;
        if (!strcasecmp(name, an) && (ap < 0 || ap == port))
            return 1;
    }
    return 0;
}

int http_guard_host_ok(const struct http_guard *g, const char *host)
{
    if (!g->check_host)
        return 1;
    return host && listed(g, host, 80);
}

int http_guard_origin_ok(const struct http_guard *g, const char *origin, const char *host)
{
    if (!origin)
        return 1;
    int def;
    const char *auth;
    if (!strncasecmp(origin, "http://", 7))
        auth = origin + 7, def = 80;
    else if (!strncasecmp(origin, "https://", 8))
        auth = origin + 8, def = 443;
    else
        return 0; /* "null", file:, chrome-extension:, garbage */
    if (!*auth || strpbrk(auth, "/?#@ "))
        return 0;
    if (host && !strcasecmp(auth, host))
        return 1; /* same origin as the request (whose Host was checked already) */
    return listed(g, auth, def);
}

int http_guard_json_type(const char *ct)
{
    static const char want[] = "application/json";
    if (!ct)
        return 0;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, want, sizeof(want) - 1))
        return 0;
    ct += sizeof(want) - 1;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}
