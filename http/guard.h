/*
 * http/guard.h: which browsers' requests the control API accepts. Pure functions over header
 * values, no sockets: server.c asks them before routing a request further.
 *
 * - Host: with a loopback listen address (or when http.allowed_hosts is set) only the listen
 *   address, the loopback names with the listen port, and http.allowed_hosts are answered, so
 *   a DNS-rebound name cannot read the API from a web page (421 otherwise).
 * - Origin: a request that carries one must come from a page served by this API (403).
 * - Content-Type: a POST with a body must say application/json (415), which a cross-site form
 *   or a no-cors fetch() cannot send without a CORS preflight that the API never grants.
 */
#ifndef SHARDHOOK_HTTP_GUARD_H
#define SHARDHOOK_HTTP_GUARD_H

#include <stddef.h>

struct http_guard {
    int check_host;       /* 0: any Host (a wildcard or public listen without allowed_hosts) */
    int loopback;         /* the listen address is loopback: localhost, 127.0.0.1, [::1] too */
    int port;             /* the port bound */
    char listen_host[64]; /* without brackets: "127.0.0.1", "::1", "localhost" */
    char *const *allowed; /* http.allowed_hosts, lower case; borrowed from the config */
    size_t n_allowed;
};

/* 1 when host (a Host header value, may be NULL) may be answered. */
int http_guard_host_ok(const struct http_guard *g, const char *host);
/*
 * 1 when origin (an Origin header value; NULL when absent) is this API's own: absent, or
 * http(s)://AUTHORITY where AUTHORITY is the request's Host or a name host_ok would list.
 * "null" and anything malformed are foreign.
 */
int http_guard_origin_ok(const struct http_guard *g, const char *origin, const char *host);
/* 1 when ct is application/json, any case, optionally followed by ";" and parameters. */
int http_guard_json_type(const char *ct);

#endif
