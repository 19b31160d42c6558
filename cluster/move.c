/*
 * cluster/move.c: what the coordination thread writes for held shards and how they leave: the
 * newest checkpoint per shard written by the fenced `checkpoint` script (at most one write per
 * shard per second, the due ones pipelined; a stale fence releases the shard, a lost hash claims
 * it again), the
 * reassertion of every held shard after the lease or Redis came back, handoffs (rule 5: drain,
 * then `handoff` with the final checkpoint, then forget), and this node's command stream
 * (`hold` entries a handoff to this node leaves).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/forward.h"
#include "cluster/internal.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/metrics.h"

#define WRITE_PASS_MS 30 /* checkpoint writes per pass stop after this long (renewals first) */
#define WRITE_BATCH 64   /* checkpoint writes per pipeline */

/* Under mu: the newest checkpoint from delivery becomes cur. */
static void take_pending(struct cl_cluster *c, struct cl__shard *s)
{
    pthread_mutex_lock(&c->mu);
    if (s->dirty) {
        cl__ck_move(&s->cur, &s->pending);
        s->dirty = 0;
        s->unwritten = 1;
    }
    pthread_mutex_unlock(&c->mu);
}

/* The checkpoint script's arguments for shard's newest checkpoint (pointing into bufs). */
struct write_args {
    char key[160], fence[24], seq[24];
    const char *argv[6];
    size_t lens[6];
};

static void write_args(struct cl_cluster *c, int shard, struct write_args *w)
{
    struct cl__shard *s = &c->shards[shard];
    snprintf(w->key, sizeof(w->key), "%sshard:%d", c->prefix, shard);
    snprintf(w->fence, sizeof(w->fence), "%llu", (unsigned long long)s->fence);
    snprintf(w->seq, sizeof(w->seq), "%llu", (unsigned long long)s->cur.seq);
    const char *argv[] = {w->key,
                          w->fence,
                          s->cur.session_id,
                          s->cur.resume_url,
                          w->seq,
                          s->cur.blob ? s->cur.blob : ""};
    for (int i = 0; i < 6; i++) {
        w->argv[i] = argv[i];
        w->lens[i] = i == 5 ? s->cur.blob_len : strlen(argv[i]);
    }
}

/* What the checkpoint script answered for shard (r freed here): 0, 1 released or reclaimed,
   SH_ENET. */
static int written(struct cl_cluster *c, int shard, redisReply *r)
{
    struct cl__shard *s = &c->shards[shard];
    if (!r) {
        cl__redis_lost(c, "checkpoint");
        return SH_ENET;
    }
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -3;
    if (v == -3) {
        static struct sh_log_limit lim;
        log_warn_limited(&lim, "msg=\"checkpoint write failed\" shard=%d error=\"%s\"", shard,
                         r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    }
    freeReplyObject(r);
    s->last_write_ms = sh_now_ms();
    if (v == 0) {
        s->unwritten = 0;
        return 0;
    }
    if (v == -1) {
        cl__release(c, shard, "fenced");
        return 1;
    }
    if (v == -2) { /* the hash is gone (Redis lost it): ours again, then written next pass */
        log_warn("msg=\"shard unknown to Redis; claiming it again\" shard=%d", shard);
        return cl__claim(c, shard, "reasserted", "-", 0) == SH_ENET ? SH_ENET : 1;
    }
    return 1;
}

int cl__write_one(struct cl_cluster *c, int shard)
{
    struct write_args w;
    write_args(c, shard, &w);
    return written(c, shard,
                   cl__redis_script(c->redis, CL_SCRIPT_CHECKPOINT, 1, 6, w.argv, w.lens));
}

/* EVALSHA of `checkpoint` for shard appended to the pipeline: 0, or SH_ENET / SH_ENOMEM. */
static int append_write(struct cl_cluster *c, int shard)
{
    struct write_args w;
    write_args(c, shard, &w);
    const char *av[9] = {"EVALSHA", cl__redis_script_sha(c->redis, CL_SCRIPT_CHECKPOINT), "1"};
    size_t al[9];
    for (int i = 0; i < 9; i++) {
        if (i >= 3)
            av[i] = w.argv[i - 3];
        al[i] = i >= 3 ? w.lens[i - 3] : strlen(av[i]);
    }
    return cl__redis_append_argv(c->redis, 9, av, al);
}

/*
 * One pipeline of the writes of shards[0..n): every reply read before any is acted on (acting
 * may call Redis). A script Redis no longer knows (NOSCRIPT: it restarted) is written again one
 * by one, which loads the scripts. 0 or SH_ENET.
 */
static int write_batch(struct cl_cluster *c, const int *shards, int n)
{
    redisReply *rep[WRITE_BATCH] = {0};
    int rc = 0, got = 0;
    for (int k = 0; k < n && rc == 0; k++)
        rc = append_write(c, shards[k]);
    for (; rc == 0 && got < n; got++)
        if (!(rep[got] = cl__redis_read(c->redis)))
            rc = SH_ENET;
    for (int k = 0; k < n; k++) {
        if (rc != 0 || c->degraded || c->shards[shards[k]].state == CL__FREE) {
            if (rep[k])
                freeReplyObject(rep[k]);
            continue;
        }
        if (rep[k]->type == REDIS_REPLY_ERROR && !strncmp(rep[k]->str, "NOSCRIPT", 8)) {
            freeReplyObject(rep[k]);
            if (cl__write_one(c, shards[k]) == SH_ENET)
                rc = SH_ENET;
        } else if (written(c, shards[k], rep[k]) == SH_ENET) {
            rc = SH_ENET;
        }
    }
    if (rc == SH_ENET || c->degraded) {
        cl__redis_lost(c, "checkpoint");
        return SH_ENET;
    }
    return 0;
}

/*
 * Every held shard whose newest checkpoint is not in Redis yet and whose last write is at least
 * CL__WRITE_EVERY_MS old (all: every one), in pipelines of WRITE_BATCH, until WRITE_PASS_MS is
 * spent (renewals come first; the rest wait for the next pass).
 */
int cl__write_checkpoints(struct cl_cluster *c, uint64_t now, int all)
{
    uint64_t until = sh_now_ms() + WRITE_PASS_MS;
    int batch[WRITE_BATCH], n = 0;
    for (int i = 0; i < c->total; i++) {
        struct cl__shard *s = &c->shards[i];
        if (s->state == CL__FREE || (!all && cl__since(now, s->last_write_ms) < CL__WRITE_EVERY_MS))
            continue;
        take_pending(c, s);
        if (!s->unwritten)
            continue;
        batch[n++] = i;
        if (n < WRITE_BATCH)
            continue;
        if (write_batch(c, batch, n) == SH_ENET)
            return SH_ENET;
        n = 0;
        if (!all && sh_now_ms() >= until)
            return 0;
    }
    return n ? write_batch(c, batch, n) : 0;
}

int cl__reassert(struct cl_cluster *c)
{
    int n = 0;
    for (int i = 0; i < c->total; i++) {
        struct cl__shard *s = &c->shards[i];
        if (s->state == CL__FREE)
            continue;
        take_pending(c, s);
        n++;
        if (cl__write_one(c, i) == SH_ENET)
            return SH_ENET;
    }
    log_info("msg=\"held shards reasserted\" node=\"%s\" checked=%d held=%d", c->name, n, c->held);
    return 0;
}

int cl__start_handoff(struct cl_cluster *c, int shard, const char *target, uint64_t now)
{
    struct cl__shard *s = &c->shards[shard];
    if (s->state != CL__HELD)
        return SH_ENOTFOUND;
    int drain_ms = CL__DRAIN_MS;
    pthread_mutex_lock(&c->mu);
    if (c->stopping) { /* half of what is left of the stop: the other half hands off */
        uint64_t left = cl__since(c->stop_deadline_ms, now) / 2;
        drain_ms = left < (uint64_t)drain_ms ? (int)left : drain_ms;
    }
    cl__ck_clear(&s->final);
    s->drained = 0;
    pthread_mutex_unlock(&c->mu);
    snprintf(s->target, sizeof(s->target), "%s", target);
    s->move_started_ms = now;
    /* the socket's close (up to ~3 s when the peer is slow) comes before the drain */
    s->drain_deadline_ms = now + (uint64_t)drain_ms + 4000;
    cl__set_state(c, shard, CL__DRAINING);
    log_info("msg=\"shard handing off\" shard=%d to=\"%s\" drain_ms=%d", shard, target, drain_ms);
    if (c->ops.drain(c->ops.ud, shard, drain_ms) < 0) {
        pthread_mutex_lock(&c->mu);
        s->drained = 1; /* go on with the newest checkpoint we have */
        pthread_mutex_unlock(&c->mu);
    }
    return 0;
}

/* The handoff did not happen: hold the shard again here (or, stopping, keep it as it is). */
static void abandon(struct cl_cluster *c, int shard, const char *why)
{
    struct cl__shard *s = &c->shards[shard];
    sh_metric_add(c->m_handoffs, 1, "abandoned");
    log_warn("msg=\"handoff abandoned; the shard stays here\" shard=%d to=\"%s\" why=%s", shard,
             s->target, why);
    cl__set_state(c, shard, CL__HELD);
    pthread_mutex_lock(&c->mu);
    int stopping = c->stopping;
    pthread_mutex_unlock(&c->mu);
    if (stopping)
        return;
    struct cl_checkpoint cp;
    cl__ck_view(&s->cur, shard, &cp);
    c->ops.release(c->ops.ud, shard);
    if (c->ops.hold(c->ops.ud, &cp) < 0)
        cl__release(c, shard, "hold_failed");
}

/* KEYS shard, node:<target>, cmd:<target>; ARGV fence, target, session, url, seq, ckpt. */
static redisReply *handoff_script(struct cl_cluster *c, int shard)
{
    struct cl__shard *s = &c->shards[shard];
    char skey[160], nkey[256], ckey[256], fence[24], seq[24];
    snprintf(skey, sizeof(skey), "%sshard:%d", c->prefix, shard);
    snprintf(nkey, sizeof(nkey), "%snode:%s", c->prefix, s->target);
    snprintf(ckey, sizeof(ckey), "%scmd:%s", c->prefix, s->target);
    snprintf(fence, sizeof(fence), "%llu", (unsigned long long)s->fence);
    snprintf(seq, sizeof(seq), "%llu", (unsigned long long)s->cur.seq);
    const char *argv[] = {skey,
                          nkey,
                          ckey,
                          fence,
                          s->target,
                          s->cur.session_id,
                          s->cur.resume_url,
                          seq,
                          s->cur.blob ? s->cur.blob : ""};
    size_t lens[9];
    for (int i = 0; i < 8; i++)
        lens[i] = strlen(argv[i]);
    lens[8] = s->cur.blob_len;
    return cl__redis_script(c->redis, CL_SCRIPT_HANDOFF, 3, 9, argv, lens);
}

/* The drain ended (or timed out): pass ownership with the final checkpoint. */
static int finish_handoff(struct cl_cluster *c, int shard, uint64_t now)
{
    struct cl__shard *s = &c->shards[shard];
    redisReply *r = handoff_script(c, shard);
    if (!r) {
        cl__redis_lost(c, "handoff");
        abandon(c, shard, "redis_unreachable");
        return SH_ENET;
    }
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -3;
    freeReplyObject(r);
    if (v > 0) {
        log_info("msg=\"shard handed off\" shard=%d to=\"%s\" fence=%lld resume=%d seq=%llu "
                 "took_ms=%llu",
                 shard, s->target, v, s->cur.session_id[0] != 0, (unsigned long long)s->cur.seq,
                 (unsigned long long)cl__since(now, s->move_started_ms));
        sh_metric_add(c->m_handoffs, 1, "done");
        c->ops.release(c->ops.ud, shard);
        cl__set_state(c, shard, CL__FREE);
        cl__ck_clear(&s->cur);
        s->unwritten = 0;
        return 0;
    }
    if (v == -1) {
        cl__set_state(c, shard, CL__HELD);
        cl__release(c, shard, "fenced");
        return 0;
    }
    int t = v == -2 ? cl__pick_target(c, shard) : -1;
    if (t >= 0 && strcmp(c->nodes[t].name, s->target)) {
        snprintf(s->target, sizeof(s->target), "%s", c->nodes[t].name);
        return 0; /* tried again next pass */
    }
    abandon(c, shard, v == -2 ? "target_gone" : "error");
    return 0;
}

/* Requests from cl_cluster_handoff. */
static void take_requests(struct cl_cluster *c, uint64_t now)
{
    for (int i = 0; i < c->total; i++) {
        struct cl__shard *s = &c->shards[i];
        char target[CL__NAME_MAX] = "";
        pthread_mutex_lock(&c->mu);
        int req = s->req;
        s->req = 0;
        if (req)
            memcpy(target, s->req_target, sizeof(target));
        pthread_mutex_unlock(&c->mu);
        if (!req)
            continue;
        int t = target[0] ? cl__find_node(c, target) : cl__pick_target(c, i);
        if (t < 0 || t == c->me || !c->nodes[t].epoch) {
            log_warn("msg=\"handoff not started: no such live node\" shard=%d to=\"%s\"", i,
                     target);
            continue;
        }
        cl__start_handoff(c, i, c->nodes[t].name, now);
    }
}

void cl__take_final(struct cl_cluster *c, int shard)
{
    struct cl__shard *s = &c->shards[shard];
    pthread_mutex_lock(&c->mu);
    if (s->drained && s->final.valid) {
        cl__ck_move(&s->cur, &s->final);
        s->dirty = 0;
        s->unwritten = 1;
    }
    pthread_mutex_unlock(&c->mu);
}

int cl__handoffs(struct cl_cluster *c, uint64_t now)
{
    take_requests(c, now);
    for (int i = 0; i < c->total && !c->degraded; i++) {
        struct cl__shard *s = &c->shards[i];
        if (s->state != CL__DRAINING)
            continue;
        pthread_mutex_lock(&c->mu);
        int drained = s->drained;
        pthread_mutex_unlock(&c->mu);
        cl__take_final(c, i);
        if (!drained && now < s->drain_deadline_ms)
            continue;
        if (!drained)
            take_pending(c, s);
        if (finish_handoff(c, i, now) == SH_ENET)
            return SH_ENET;
    }
    return 0;
}

/* One entry of cmd:<me>: field/value pairs. */
static void command(struct cl_cluster *c, const redisReply *fields)
{
    const char *type = NULL;
    int shard = -1;
    for (size_t k = 0; k + 1 < fields->elements; k += 2) {
        const redisReply *f = fields->element[k], *v = fields->element[k + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (!strcmp(f->str, "type"))
            type = v->str;
        else if (!strcmp(f->str, "shard"))
            shard = atoi(v->str);
    }
    if (type && !strcmp(type, "api"))
        cl__api_command(c, fields);
    if (!type || strcmp(type, "hold") || shard < 0 || shard >= c->total)
        return;
    if (c->shards[shard].may && c->shards[shard].state == CL__FREE)
        cl__claim(c, shard, "received", "-", 0);
}

int cl__read_commands(struct cl_cluster *c, int block_ms)
{
    redisReply *r;
    if (!c->last_cmd_id[0]) { /* from now on: older entries are a former life's */
        r = cl__redis_cmd(c->redis, "XREVRANGE %scmd:%s + - COUNT 1", c->prefix, c->name);
        if (!r) {
            cl__redis_lost(c, "commands");
            return SH_ENET;
        }
        int ok = r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
                 r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2 &&
                 r->element[0]->element[0]->type == REDIS_REPLY_STRING;
        snprintf(c->last_cmd_id, sizeof(c->last_cmd_id), "%s",
                 ok ? r->element[0]->element[0]->str : "0-0");
        freeReplyObject(r);
    }
    if (block_ms > 0)
        r = cl__redis_cmd(c->redis, "XREAD COUNT 32 BLOCK %d STREAMS %scmd:%s %s", block_ms,
                          c->prefix, c->name, c->last_cmd_id);
    else
        r = cl__redis_cmd(c->redis, "XREAD COUNT 32 STREAMS %scmd:%s %s", c->prefix, c->name,
                          c->last_cmd_id);
    if (!r) {
        cl__redis_lost(c, "commands");
        return SH_ENET;
    }
    /* [[stream, [[id, [f, v, ...]], ...]]] */
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2) {
        const redisReply *entries = r->element[0]->element[1];
        for (size_t i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++) {
            const redisReply *e = entries->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
                e->element[0]->type != REDIS_REPLY_STRING)
                continue;
            snprintf(c->last_cmd_id, sizeof(c->last_cmd_id), "%s", e->element[0]->str);
            if (e->element[1]->type == REDIS_REPLY_ARRAY)
                command(c, e->element[1]);
        }
    }
    freeReplyObject(r);
    return 0;
}
