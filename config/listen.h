/*
 * config/listen.h: the `http.listen` address form, "host:port".
 *
 * Owns parsing only; binding is the http room's job. Accepted hosts: a dotted
 * IPv4 address, a bracketed IPv6 address ("[::1]:7878") or "localhost".
 */
#ifndef SHARDHOOK_CONFIG_LISTEN_H
#define SHARDHOOK_CONFIG_LISTEN_H

#include <stddef.h>

struct cfg_listen {
    char host[64]; /* without brackets: "127.0.0.1", "::1", "localhost" */
    int family;    /* AF_INET, AF_INET6, or AF_UNSPEC for "localhost" */
    int port;      /* 0..65535; 0 lets the kernel choose */
    int loopback;  /* 1 for 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104 and localhost */
};

/*
 * Parse s into *out. Returns 0, or SH_ECONFIG with a reason in why (which may quote s:
 * a listen address is not a secret). *out is zeroed on failure.
 */
int cfg_listen_parse(const char *s, struct cfg_listen *out, char *why, size_t whylen);

#endif
