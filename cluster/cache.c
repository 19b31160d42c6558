/*
 * cluster/cache.c: the entity cache's snapshots in Redis (cluster.h's cl_cluster_cache_put and
 * cl_cluster_cache_get): key `cache:<id>`, a string, written by the fenced `cache` script only
 * while this node holds the shard under the fence Redis has for it, read with GET. Runs on the
 * caller's thread (the cache thread puts; a hold's load gets) over a connection of its own,
 * under its own mutex, so the coordination thread's lease renewals never wait behind a snapshot
 * of megabytes. Owns that connection (made in cl_cluster_new, freed in cl_cluster_free).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cluster/internal.h"
#include "lib/errors.h"
#include "lib/log.h"

/* Under cache_mu: connected, or SH_ENET (logged, rate-limited). */
static int cache_connect(struct cl_cluster *c)
{
    if (cl__redis_connected(c->cache_redis))
        return 0;
    if (cl__redis_connect(c->cache_redis) == 0)
        return 0;
    static struct sh_log_limit lim;
    log_warn_limited(&lim, "msg=\"cache snapshots: redis unreachable\" redis=\"%s\" error=\"%s\"",
                     cl__redis_where(c->cache_redis), cl__redis_error(c->cache_redis));
    return SH_ENET;
}

/* The fence shard is held under here, 0 when it is not held here. */
static uint64_t held_fence(struct cl_cluster *c, int shard)
{
    pthread_mutex_lock(&c->mu);
    uint64_t f = c->shards[shard].state != CL__FREE ? c->shards[shard].pub_fence : 0;
    pthread_mutex_unlock(&c->mu);
    return f;
}

int cl_cluster_cache_put(struct cl_cluster *c, int shard, const void *data, size_t len)
{
    if (!c->shards || shard < 0 || shard >= c->total)
        return SH_EFENCED;
    if (len > CL_CACHE_MAX_BYTES)
        return SH_ETOOBIG;
    uint64_t fence = held_fence(c, shard);
    if (!fence)
        return SH_EFENCED;
    char skey[160], ckey[160], f[24];
    snprintf(skey, sizeof(skey), "%sshard:%d", c->prefix, shard);
    snprintf(ckey, sizeof(ckey), "%scache:%d", c->prefix, shard);
    snprintf(f, sizeof(f), "%" PRIu64, fence);
    const char *argv[] = {skey, ckey, f, len ? (const char *)data : ""};
    size_t lens[] = {strlen(skey), strlen(ckey), strlen(f), len};
    pthread_mutex_lock(&c->cache_mu);
    int rc = cache_connect(c);
    redisReply *r = rc ? NULL : cl__redis_script(c->cache_redis, CL_SCRIPT_CACHE, 2, 4, argv, lens);
    if (!rc && !r) {
        static struct sh_log_limit lim;
        log_warn_limited(&lim, "msg=\"cache snapshot not written\" shard=%d error=\"%s\"", shard,
                         cl__redis_error(c->cache_redis));
        rc = SH_ENET;
    }
    pthread_mutex_unlock(&c->cache_mu);
    if (rc)
        return rc;
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -3;
    freeReplyObject(r);
    return v == 0 ? 0 : v == -1 || v == -2 ? SH_EFENCED : SH_EIO;
}

/* Under cache_mu: the STRLEN of key, or a negative code. */
static long long stored_len(struct cl_cluster *c, const char *key)
{
    redisReply *r = cl__redis_cmd(c->cache_redis, "STRLEN %s", key);
    if (!r)
        return SH_ENET;
    long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : SH_EIO;
    freeReplyObject(r);
    return n;
}

int cl_cluster_cache_get(struct cl_cluster *c, int shard, struct sh_buf *out)
{
    if (shard < 0 || (c->shards && shard >= c->total))
        return SH_EINVAL;
    char key[160];
    snprintf(key, sizeof(key), "%scache:%d", c->prefix, shard);
    pthread_mutex_lock(&c->cache_mu);
    int rc = cache_connect(c);
    /* the length first: a snapshot past the cap is never read into memory */
    long long n = rc ? rc : stored_len(c, key);
    redisReply *r = NULL;
    if (n == 0)
        rc = SH_ENOTFOUND; /* STRLEN of a missing key; an empty snapshot is none either */
    else if (n < 0)
        rc = (int)n;
    else if (n > (long long)CL_CACHE_MAX_BYTES)
        rc = SH_ETOOBIG;
    else if (!(r = cl__redis_cmd(c->cache_redis, "GET %s", key)))
        rc = SH_ENET;
    if (rc == SH_ENET) {
        static struct sh_log_limit lim;
        log_warn_limited(&lim, "msg=\"cache snapshot not read\" shard=%d error=\"%s\"", shard,
                         cl__redis_error(c->cache_redis));
    }
    pthread_mutex_unlock(&c->cache_mu);
    if (rc)
        return rc;
    if (r->type == REDIS_REPLY_NIL)
        rc = SH_ENOTFOUND; /* deleted between the two calls */
    else if (r->type != REDIS_REPLY_STRING)
        rc = SH_EIO;
    else
        rc = sh_buf_append(out, r->str, r->len);
    freeReplyObject(r);
    return rc;
}
