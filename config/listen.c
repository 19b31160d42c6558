/*
 * config/listen.c: parses "host:port" listen addresses (see listen.h).
 *
 * Pure function of its input: no name resolution, no sockets.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "config/listen.h"
#include "lib/errors.h"

static int fail(struct cfg_listen *out, char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct cfg_listen *out, char *why, size_t whylen, const char *fmt, ...)
{
    if (why && whylen) { /* before zeroing: the arguments may point into out */
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    memset(out, 0, sizeof(*out));
    return SH_ECONFIG;
}

static int parse_port(const char *p, int *port)
{
    long v = 0;
    size_t n = strlen(p);
    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    if (v > 65535)
        return -1;
    *port = (int)v;
    return 0;
}

int cfg_listen_parse(const char *s, struct cfg_listen *out, char *why, size_t whylen)
{
    const char *hint = "must be \"host:port\" with an IPv4 address, [IPv6] or localhost";
    const char *host, *colon;
    size_t hlen;

    memset(out, 0, sizeof(*out));
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return fail(out, why, whylen, "%s (e.g. \"[::1]:7878\")", hint);
        host = s + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return fail(out, why, whylen, "%s: the port is missing", hint);
        host = s;
        hlen = (size_t)(colon - s);
        if (memchr(host, ':', hlen))
            return fail(out, why, whylen, "%s: put IPv6 addresses in brackets (\"[::1]:7878\")",
                        hint);
    }
    if (hlen == 0)
        return fail(out, why, whylen, "%s: the host is missing (0.0.0.0 listens everywhere)", hint);
    if (hlen >= sizeof(out->host))
        return fail(out, why, whylen, "%s: the host is too long", hint);
    if (parse_port(colon + 1, &out->port))
        return fail(out, why, whylen, "%s: the port must be a number from 0 to 65535", hint);
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';

    unsigned char addr[16];
    if (s[0] == '[') {
        if (inet_pton(AF_INET6, out->host, addr) != 1)
            return fail(out, why, whylen, "%s: \"%s\" is not an IPv6 address", hint, out->host);
        static const unsigned char v6_loop[16] = {[15] = 1};
        static const unsigned char v4_mapped[12] = {[10] = 0xff, [11] = 0xff};
        out->family = AF_INET6;
        out->loopback =
            !memcmp(addr, v6_loop, 16) || (!memcmp(addr, v4_mapped, 12) && addr[12] == 127);
    } else if (!strcasecmp(out->host, "localhost")) {
        out->family = AF_UNSPEC;
        out->loopback = 1;
    } else {
        if (inet_pton(AF_INET, out->host, addr) != 1)
            return fail(out, why, whylen, "%s: \"%s\" is not an IPv4 address", hint, out->host);
        out->family = AF_INET;
        out->loopback = addr[0] == 127;
    }
    return SH_OK;
}
