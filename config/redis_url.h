/*
 * config/redis_url.h: the `cluster.redis` address form: "redis://[:password@]host:port[/db]" or
 * "unix:/path". One parser for the config check, the Redis connection (cluster/redis.c) and the
 * secret registration of the password (bridge/main.c). Owns parsing only; connecting is cluster/'s
 * job.
 */
#ifndef SHARDHOOK_CONFIG_REDIS_URL_H
#define SHARDHOOK_CONFIG_REDIS_URL_H

#include <stddef.h>

struct cfg_redis_url {
    int is_unix;        /* 1: "unix:/path" (path set, host empty, port 0, db 0) */
    char host[256];     /* without brackets: "10.0.0.5", "redis.internal", "::1" */
    int port;           /* 1..65535 */
    int db;             /* 0..65535; 0 when the URL names none */
    char path[108];     /* unix socket path (fits sun_path) */
    char password[512]; /* "" when the URL has none; a secret */
};

/*
 * Parse s into *out. Returns 0, or SH_ECONFIG with a reason in why that never quotes s (it may
 * hold the password). *out is zeroed on failure.
 */
int cfg_redis_url_parse(const char *s, struct cfg_redis_url *out, char *why, size_t whylen);

#endif
