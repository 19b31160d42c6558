/*
 * config/redis_url.c: parses `cluster.redis` addresses (see redis_url.h). Pure function of its
 * input: no name resolution, no sockets; no message quotes the input (it may hold a password).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "config/redis_url.h"
#include "lib/errors.h"

#define FORM "must be \"redis://[:password@]host:port[/db]\" or \"unix:/path\""

static int fail(struct cfg_redis_url *out, char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct cfg_redis_url *out, char *why, size_t whylen, const char *fmt, ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    memset(out, 0, sizeof(*out));
    return SH_ECONFIG;
}

/* Digits only, n of them (1..5), at most max. */
static int parse_num(const char *p, size_t n, int max, int *v)
{
    long x = 0;
    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        x = x * 10 + (p[i] - '0');
    }
    if (x > max)
        return -1;
    *v = (int)x;
    return 0;
}

static int host_char_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '-' || ch == '_';
}

static int parse_unix(const char *p, struct cfg_redis_url *out, char *why, size_t whylen)
{
    size_t n = strlen(p);
    if (p[0] != '/')
        return fail(out, why, whylen, "%s: a unix socket path must be absolute", FORM);
    if (n >= sizeof(out->path))
        return fail(out, why, whylen, "%s: the unix socket path is longer than %zu bytes", FORM,
                    sizeof(out->path) - 1);
    if (strpbrk(p, "?#"))
        return fail(out, why, whylen, "%s: no query after a unix socket path", FORM);
    out->is_unix = 1;
    memcpy(out->path, p, n + 1);
    return SH_OK;
}

/* "host:port[/db]" after the credentials. */
static int parse_hostport(const char *p, struct cfg_redis_url *out, char *why, size_t whylen)
{
    const char *host = p, *colon;
    size_t hlen;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (!close || close[1] != ':')
            return fail(out, why, whylen, "%s: an IPv6 host is \"[addr]:port\"", FORM);
        host = p + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
        for (size_t i = 0; i < hlen; i++)
            if (!(host[i] == ':' || host[i] == '.' || (host[i] >= '0' && host[i] <= '9') ||
                  (host[i] >= 'a' && host[i] <= 'f') || (host[i] >= 'A' && host[i] <= 'F')))
                return fail(out, why, whylen, "%s: not an IPv6 address in brackets", FORM);
    } else {
        colon = strchr(p, ':');
        if (!colon)
            return fail(out, why, whylen, "%s: the port is missing", FORM);
        hlen = (size_t)(colon - host);
        for (size_t i = 0; i < hlen; i++)
            if (!host_char_ok(host[i]))
                return fail(out, why, whylen, "%s: the host may hold letters, digits, '.', '-'",
                            FORM);
    }
    if (hlen == 0)
        return fail(out, why, whylen, "%s: the host is missing", FORM);
    if (hlen >= sizeof(out->host))
        return fail(out, why, whylen, "%s: the host is too long", FORM);
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    const char *port = colon + 1, *slash = strchr(port, '/');
    size_t plen = slash ? (size_t)(slash - port) : strlen(port);
    if (parse_num(port, plen, 65535, &out->port) || out->port == 0)
        return fail(out, why, whylen, "%s: the port must be a number from 1 to 65535", FORM);
    if (slash && parse_num(slash + 1, strlen(slash + 1), 65535, &out->db))
        return fail(out, why, whylen, "%s: the db after '/' must be a number from 0 to 65535",
                    FORM);
    return SH_OK;
}

int cfg_redis_url_parse(const char *s, struct cfg_redis_url *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    if (!s)
        return fail(out, why, whylen, "%s", FORM);
    for (const char *q = s; *q; q++)
        if ((unsigned char)*q <= ' ' || *q == 0x7f)
            return fail(out, why, whylen, "%s, without spaces or control characters", FORM);
    if (!strncasecmp(s, "unix:", 5))
        return parse_unix(s + 5, out, why, whylen);
    if (strncasecmp(s, "redis://", 8))
        return fail(out, why, whylen, "%s (rediss:// and other schemes are not supported)", FORM);
    const char *p = s + 8, *at = strrchr(p, '@');
    if (at) {
        if (*p != ':')
            return fail(out, why, whylen, "%s: credentials are \":password@\" (no user name)",
                        FORM);
        size_t n = (size_t)(at - p - 1);
        if (n == 0)
            return fail(out, why, whylen, "%s: the password after ':' is empty", FORM);
        if (n >= sizeof(out->password))
            return fail(out, why, whylen, "%s: the password is longer than %zu bytes", FORM,
                        sizeof(out->password) - 1);
        memcpy(out->password, p + 1, n);
        out->password[n] = '\0';
        p = at + 1;
    }
    return parse_hostport(p, out, why, whylen);
}
