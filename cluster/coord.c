/*
 * cluster/coord.c: the coordination thread: its loop of short passes paced by XREAD BLOCK on
 * this node's command stream, the node lease (register, renew every lease/5, the deadline handed
 * to the gateway), the `meta` check, fail static (rule 7: Redis down marks the node degraded,
 * nothing is released, claimed or moved; back up: register again, reassert held shards, a quiet
 * period of 2 x lease), and the graceful stop. What each pass does to shards lives in scan.c
 * (claims, balance) and move.c (checkpoints, handoffs).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/internal.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/metrics.h"

#define PASS_BLOCK_MS 50

void cl__redis_lost(struct cl_cluster *c, const char *what)
{
    uint64_t now = sh_now_ms();
    pthread_mutex_lock(&c->mu);
    int was = c->degraded;
    c->degraded = 1;
    c->reachable = 0;
    pthread_mutex_unlock(&c->mu);
    if (was)
        return;
    c->degraded_since_ms = now;
    c->next_reconnect_ms = now + CL__RECONNECT_MS;
    sh_metric_set(c->m_degraded, 1);
    log_warn("msg=\"redis unreachable; held shards run on, nothing moves\" node=\"%s\" during=%s "
             "error=\"%s\" held=%d",
             c->name, what, cl__redis_error(c->redis), c->held);
}

void cl__release(struct cl_cluster *c, int shard, const char *reason)
{
    struct cl__shard *s = &c->shards[shard];
    c->ops.release(c->ops.ud, shard);
    cl__set_state(c, shard, CL__FREE);
    log_info("msg=\"shard released\" shard=%d reason=%s fence=%llu", shard, reason,
             (unsigned long long)s->fence);
    sh_metric_add(c->m_releases, 1, reason);
    cl__ck_clear(&s->cur);
    s->unwritten = 0;
    s->fence = 0;
}

/* The lease was renewed (or registered) by a call sent at sent_ms. */
static void lease_ok(struct cl_cluster *c, uint64_t sent_ms)
{
    c->last_ok_ms = sent_ms;
    if (c->ops.lease_deadline)
        c->ops.lease_deadline(c->ops.ud, sent_ms + (uint64_t)c->lease_ms);
}

/* register or renew: KEYS node:<me>, nodes; ARGV epoch, lease_ms, name, info. */
static redisReply *lease_script(struct cl_cluster *c, enum cl__script s)
{
    char node_key[256], nodes_key[128], epoch[24], lease[16], info[2048];
    snprintf(node_key, sizeof(node_key), "%snode:%s", c->prefix, c->name);
    snprintf(nodes_key, sizeof(nodes_key), "%snodes", c->prefix);
    snprintf(epoch, sizeof(epoch), "%llu", (unsigned long long)c->epoch);
    snprintf(lease, sizeof(lease), "%d", c->lease_ms);
    cl__node_info(c, info, sizeof(info));
    const char *argv[] = {node_key, nodes_key, epoch, lease, c->name, info};
    return cl__redis_script(c->redis, s, 2, 6, argv, NULL);
}

int cl__register(struct cl_cluster *c)
{
    uint64_t sent = sh_now_ms();
    redisReply *r = lease_script(c, CL_SCRIPT_REGISTER);
    if (!r) {
        cl__redis_lost(c, "register");
        return SH_ENET;
    }
    int ok = r->type == REDIS_REPLY_INTEGER;
    if (!ok)
        log_warn("msg=\"cluster register refused\" error=\"%s\"",
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    freeReplyObject(r);
    if (!ok)
        return SH_ENET;
    c->registered_ms = sent;
    c->last_renew_ms = sent;
    c->last_ok_ms = sent; /* the deadline moves only once held shards are reasserted */
    return 0;
}

/* Register again after the lease or Redis was lost: held shards are checked before any of them
   may connect again (a shard fenced out meanwhile must not RESUME over its new owner). */
static int rejoin(struct cl_cluster *c)
{
    if (cl__register(c) != 0 || cl__reassert(c) != 0)
        return SH_ENET;
    lease_ok(c, c->last_ok_ms);
    return 0;
}

/* Renewal answered 0: the lease ran out (or a start under this name replaced it). */
static void lease_lost(struct cl_cluster *c)
{
    sh_metric_add(c->m_lease_failures, 1, "lost");
    log_warn("msg=\"lease lost; registering again\" node=\"%s\" epoch=%llu held=%d", c->name,
             (unsigned long long)c->epoch, c->held);
    rejoin(c);
    c->nodes_changed = 1;
}

static void renew(struct cl_cluster *c, uint64_t now)
{
    static struct sh_log_limit lim;
    c->last_renew_ms = now;
    redisReply *r = lease_script(c, CL_SCRIPT_RENEW);
    if (!r) {
        sh_metric_add(c->m_lease_failures, 1, "unreachable");
        cl__redis_lost(c, "renew");
        return;
    }
    int rtt = cl__redis_rtt_ms(c->redis);
    if (rtt >= 0)
        sh_metric_observe(c->m_rtt, rtt / 1000.0);
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
        sh_metric_add(c->m_renewals, 1);
        lease_ok(c, now);
    } else if (r->type == REDIS_REPLY_INTEGER) {
        freeReplyObject(r);
        lease_lost(c);
        return;
    } else {
        sh_metric_add(c->m_lease_failures, 1, "error");
        log_warn_limited(&lim, "msg=\"lease renewal failed\" error=\"%s\"",
                         r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    }
    freeReplyObject(r);
}

/* Compare meta's field with this node's value: 0 same, else one line in err. */
static int meta_differs(struct cl_cluster *c, const redisReply *got, const char *field,
                        const char *mine, char *err, size_t errlen)
{
    if (got->type != REDIS_REPLY_STRING || !strcmp(got->str, mine))
        return 0;
    if (strcmp(field, "fingerprint"))
        snprintf(err, errlen, "cluster: this node's %s %s differs from the cluster's %s (%smeta)",
                 !strcmp(field, "total") ? "shard total" : field, mine, got->str, c->prefix);
    else if (strncmp(got->str, c->app, strlen(c->app)) || got->str[strlen(c->app)] != '/')
        snprintf(err, errlen,
                 "cluster: this node's application differs from the cluster's (%smeta)", c->prefix);
    else
        snprintf(err, errlen,
                 "cluster: this node's webhook set (fingerprint %s) differs from the cluster's "
                 "(%s) (%smeta)",
                 mine + strlen(c->app) + 1, got->str + strlen(c->app) + 1, c->prefix);
    return 1;
}

/* Live nodes other than this one in the view. */
static int others_live(const struct cl_cluster *c)
{
    int n = 0;
    for (int i = 0; i < c->n_nodes; i++)
        n += c->nodes[i].epoch && strcmp(c->nodes[i].name, c->name);
    return n;
}

int cl__meta_check(struct cl_cluster *c, char *err, size_t errlen)
{
    char total[16], mc[16];
    snprintf(total, sizeof(total), "%d", c->total);
    snprintf(mc, sizeof(mc), "%d", c->max_concurrency);
    const char *fields[3] = {"total", "max_concurrency", "fingerprint"};
    const char *mine[3] = {total, mc, c->fingerprint};
    for (int i = 0; i < 3; i++)
        cl__redis_append(c->redis, "HSETNX %smeta %s %s", c->prefix, fields[i], mine[i]);
    cl__redis_append(c->redis, "HMGET %smeta total max_concurrency fingerprint", c->prefix);
    redisReply *r = NULL;
    for (int i = 0; i < 4; i++) {
        if (r)
            freeReplyObject(r);
        if (!(r = cl__redis_read(c->redis)))
            return SH_ENET;
    }
    int rc = r->type == REDIS_REPLY_ARRAY && r->elements == 3 ? 0 : SH_ENET;
    for (int i = 0; rc == 0 && i < 3; i++)
        if (meta_differs(c, r->element[i], fields[i], mine[i], err, errlen))
            rc = SH_ECONFIG;
    freeReplyObject(r);
    if (rc == SH_ECONFIG && !others_live(c)) { /* nobody left who agreed to the old one */
        log_warn("msg=\"cluster meta replaced: no live node holds the old one\" was=\"%s\"", err);
        r = cl__redis_cmd(c->redis, "HSET %smeta total %s max_concurrency %s fingerprint %s",
                          c->prefix, total, mc, c->fingerprint);
        rc = r ? 0 : SH_ENET;
        if (r)
            freeReplyObject(r);
    }
    return rc;
}

/* Degraded: try Redis again every CL__RECONNECT_MS; back up, rejoin as rule 7 says. */
static void reconnect(struct cl_cluster *c, uint64_t now)
{
    if (now < c->next_reconnect_ms)
        return;
    c->next_reconnect_ms = now + CL__RECONNECT_MS;
    if (cl__redis_connect(c->redis) != 0)
        return;
    char err[256];
    pthread_mutex_lock(&c->mu);
    c->degraded = 0;
    c->reachable = 1;
    pthread_mutex_unlock(&c->mu);
    sh_metric_set(c->m_degraded, 0);
    log_info("msg=\"redis reachable again; rejoining\" node=\"%s\" down_ms=%llu quiet_ms=%d",
             c->name, (unsigned long long)cl__since(now, c->degraded_since_ms), 2 * c->lease_ms);
    if (cl__meta_check(c, err, sizeof(err)) == SH_ECONFIG)
        log_warn("msg=\"cluster meta differs after Redis came back\" error=\"%s\"", err);
    if (rejoin(c) != 0)
        return;
    c->quiet_until_ms = sh_now_ms() + 2 * (uint64_t)c->lease_ms;
    c->nodes_changed = 1;
    c->next_scan_ms = 0;
}

static int has_draining(struct cl_cluster *c)
{
    for (int i = 0; i < c->total; i++)
        if (c->shards[i].state == CL__DRAINING)
            return 1;
    return 0;
}

/* Stop asked: hand every held shard off to the best live node, in parallel. */
static void begin_stop(struct cl_cluster *c, uint64_t now)
{
    int moved = 0, kept = 0;
    for (int i = 0; i < c->total; i++) {
        if (c->shards[i].state != CL__HELD)
            continue;
        int t = c->degraded ? -1 : cl__pick_target(c, i);
        if (t >= 0 && cl__start_handoff(c, i, c->nodes[t].name, now) == 0)
            moved++;
        else
            kept++;
    }
    log_info("msg=\"cluster stopping\" node=\"%s\" handing_off=%d keeping=%d", c->name, moved,
             kept);
}

/* Stop's end: what is still here keeps its owner; its newest checkpoint goes to Redis. */
static void finish_stop(struct cl_cluster *c)
{
    int kept = 0;
    for (int i = 0; i < c->total; i++) {
        kept += c->shards[i].state != CL__FREE;
        if (c->shards[i].state == CL__DRAINING)
            cl__take_final(c, i);
    }
    if (!c->degraded)
        cl__write_checkpoints(c, sh_now_ms(), 1);
    log_info("msg=\"cluster stopped\" node=\"%s\" kept=%d degraded=%d", c->name, kept, c->degraded);
}

/* One pass while Redis answers; each step returns early once it is lost. */
static void pass(struct cl_cluster *c, uint64_t now, int stopping)
{
    if (c->lease_gone) {
        c->lease_gone = 0;
        lease_lost(c);
    } else if (cl__since(now, c->last_renew_ms) >= (uint64_t)c->lease_ms / 5) {
        renew(c, now);
    }
    int busy = stopping || cl__identify_pending(c->ident);
    if (!c->degraded)
        cl__read_commands(c, busy ? 0 : PASS_BLOCK_MS);
    if (!c->degraded && cl__identify_serve(c->ident, c->redis) == SH_ENET)
        cl__redis_lost(c, "identify");
    now = sh_now_ms();
    if (!c->degraded)
        cl__handoffs(c, now);
    if (!c->degraded)
        cl__write_checkpoints(c, now, 0);
    if (!c->degraded && now >= c->next_scan_ms) {
        c->next_scan_ms = now + CL__SCAN_MS;
        if (cl__scan_nodes(c) == 0 &&
            (c->nodes_changed || c->orphans || now >= c->next_shard_scan_ms))
            cl__scan_shards(c);
    }
    if (!c->degraded && !stopping)
        cl__claims(c, now);
    if (!c->degraded)
        cl__status_pass(c, sh_now_ms());
    if (!c->degraded && !stopping)
        cl__balance(c, now);
}

static void nap(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void *cl__coord_main(void *arg)
{
    struct cl_cluster *c = arg;
    int stop_begun = 0;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        int quit = c->quit, stopping = c->stopping;
        uint64_t deadline = c->stop_deadline_ms;
        pthread_mutex_unlock(&c->mu);
        if (quit)
            break;
        uint64_t now = sh_now_ms();
        if (stopping && !stop_begun) {
            stop_begun = 1;
            begin_stop(c, now);
        }
        if (stopping && (!has_draining(c) || now + 100 >= deadline || c->degraded)) {
            finish_stop(c);
            break;
        }
        if (c->degraded) {
            reconnect(c, now);
            if (c->degraded) {
                nap(PASS_BLOCK_MS);
                continue;
            }
        }
        pass(c, now, stopping);
        if (c->degraded)
            nap(PASS_BLOCK_MS); /* a lost connection returns at once: do not spin */
    }
    return NULL;
}
