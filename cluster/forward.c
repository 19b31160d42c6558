/*
 * cluster/forward.c: control commands for shards another node holds (docs/cluster.md, "Control
 * plane"). The requesting side: cl_cluster_forward queues a command; the forwarding worker (its
 * own thread and its own Redis connection, so the coordination thread's lease renewals never
 * wait behind forwarded traffic and a forward never waits behind a claim) reads the shard's
 * owner and fence, XADDs `type api` to cmd:<owner>, reads the answers from reply:<this node>
 * and calls the command's done callback; a `moved` answer is retried once from a fresh read, and
 * a command unanswered within its timeout answers 503 owner_unreachable. The owning side:
 * cl__api_command (the coordination thread's cmd reader) checks the fence, runs the command
 * through ops->execute and hands the answer to the worker, which posts it to the requester's
 * reply stream. Owns the worker, its connection, the queues and the published owner view.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/forward.h"
#include "cluster/internal.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/metrics.h"

#define REPLY_TTL_MS 60000  /* a reply stream nobody reads goes after this */
#define TEXT_RMAXLEN "1000" /* reply stream entries kept */
#define TEXT_MAXLEN "1000"  /* cmd stream entries kept */
#define READ_BLOCK_MS 20
#define MOVE_RECHECK_MS 50 /* a moving shard's owner is read again this often */

/* One command forwarded from here, from cl_cluster_forward until its done call. */
struct fwd_req {
    struct fwd_req *next;
    char id[64];
    int shard;
    char route[64];
    char param[128];
    char *body;
    size_t len;
    uint64_t sent_ms, deadline_ms;
    int tries;
    char owner[CL__NAME_MAX];
    uint64_t fence;                /* the owner's fence it was sent with */
    char moved_from[CL__NAME_MAX]; /* who answered `moved`, and with which fence: ... */
    uint64_t moved_fence;          /* ... the retry waits until Redis names another */
    uint64_t recheck_ms;           /* when to read the owner again (while moving) */
    cl_answer_fn *done;
    void *ud;
};

/* One answer this node owes a requester. */
struct fwd_answer {
    struct fwd_answer *next;
    char to[CL__NAME_MAX];
    char id[64];
    int status;
    char retry_after[16];
    char *body;
    size_t len;
};

struct cl__fwd {
    struct cl_cluster *c;
    struct cl__redis *redis;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int started, quit;
    struct fwd_req *queue;    /* new, under mu */
    struct fwd_req *inflight; /* worker only */
    struct fwd_req *moving;   /* worker only: answered `moved`, waiting for the new owner */
    struct fwd_answer *answers, **answers_tail;
    uint64_t counter;
    char last_id[64];             /* reply:<me>, worker only */
    char (*owners)[CL__NAME_MAX]; /* the coordination thread's view, under mu */
    int total;
    struct sh_metric *m_forwarded, *m_answered, *m_rtt, *m_executed;
};

/* ---- encoding ------------------------------------------------------------------------------ */

int cl__api_encode(const struct cl__api_cmd *cmd, const char **argv, size_t *lens, char *bufs,
                   size_t cap)
{
    /* XADD key MAXLEN ~ N * then the pairs; the caller put argv[0..6) in place */
    snprintf(bufs, cap / 3, "%d", cmd->shard);
    snprintf(bufs + cap / 3, cap / 3, "%" PRIu64, cmd->fence);
    snprintf(bufs + 2 * (cap / 3), cap / 3, "%d", cmd->timeout_ms);
    const char *pairs[] = {"type",       "api",
                           "id",         cmd->id,
                           "from",       cmd->from,
                           "fence",      bufs + cap / 3,
                           "shard",      bufs,
                           "route",      cmd->route,
                           "param",      cmd->param,
                           "timeout_ms", bufs + 2 * (cap / 3),
                           "body",       cmd->body ? cmd->body : ""};
    int n = (int)(sizeof(pairs) / sizeof(pairs[0]));
    for (int i = 0; i < n; i++) {
        argv[i] = pairs[i];
        lens[i] = i == n - 1 ? cmd->len : strlen(pairs[i]);
    }
    return n;
}

int cl__api_decode(const redisReply *fields, struct cl__api_cmd *out)
{
    memset(out, 0, sizeof(*out));
    out->shard = -1;
    int have = 0;
    for (size_t k = 0; k + 1 < fields->elements; k += 2) {
        const redisReply *f = fields->element[k], *v = fields->element[k + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (!strcmp(f->str, "id") && v->len < sizeof(out->id))
            snprintf(out->id, sizeof(out->id), "%s", v->str), have |= 1;
        else if (!strcmp(f->str, "from") && v->len < sizeof(out->from))
            snprintf(out->from, sizeof(out->from), "%s", v->str), have |= 2;
        else if (!strcmp(f->str, "fence"))
            out->fence = strtoull(v->str, NULL, 10);
        else if (!strcmp(f->str, "shard"))
            out->shard = atoi(v->str);
        else if (!strcmp(f->str, "route") && v->len < sizeof(out->route))
            snprintf(out->route, sizeof(out->route), "%s", v->str), have |= 4;
        else if (!strcmp(f->str, "param") && v->len < sizeof(out->param))
            snprintf(out->param, sizeof(out->param), "%s", v->str);
        else if (!strcmp(f->str, "timeout_ms"))
            out->timeout_ms = atoi(v->str);
        else if (!strcmp(f->str, "body"))
            out->body = v->str, out->len = v->len;
    }
    return have == 7 && out->shard >= 0 ? 0 : SH_EINVAL;
}

int cl__answer_decode(const redisReply *fields, char *id, size_t idcap, struct cl_answer *a,
                      int *moved)
{
    memset(a, 0, sizeof(*a));
    a->retry_after = "";
    a->body = "";
    *moved = 0;
    id[0] = '\0';
    for (size_t k = 0; k + 1 < fields->elements; k += 2) {
        const redisReply *f = fields->element[k], *v = fields->element[k + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (!strcmp(f->str, "id"))
            snprintf(id, idcap, "%s", v->str);
        else if (!strcmp(f->str, "status"))
            a->status = atoi(v->str);
        else if (!strcmp(f->str, "retry_after"))
            a->retry_after = v->str;
        else if (!strcmp(f->str, "body"))
            a->body = v->str, a->len = v->len;
        else if (!strcmp(f->str, "moved"))
            *moved = !strcmp(v->str, "1");
    }
    return id[0] && (*moved || (a->status >= 100 && a->status <= 599)) ? 0 : SH_EINVAL;
}

/* ---- answers made here ----------------------------------------------------------------------- */

static void answer_error(struct fwd_req *q, int status, const char *code, const char *msg)
{
    cJSON *j = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(j, "error");
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", msg);
    if (q->owner[0])
        cJSON_AddStringToObject(j, "owner", q->owner);
    char *txt = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    q->done(q->ud, status, "", txt ? txt : "{}", txt ? strlen(txt) : 2);
    cJSON_free(txt);
}

static void req_free(struct fwd_req *q)
{
    free(q->body);
    free(q);
}

/* ---- the worker ----------------------------------------------------------------------------- */

/* Owner and fence of q's shard as Redis holds them now; 0, 1 no owner, SH_ENET. */
static int read_owner(struct cl__fwd *f, struct fwd_req *q, uint64_t *fence)
{
    redisReply *r = cl__redis_cmd(f->redis, "HMGET %sshard:%d owner fence", f->c->prefix, q->shard);
    if (!r)
        return SH_ENET;
    int rc = 1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[0]->len &&
        r->element[0]->len < CL__NAME_MAX && r->element[1]->type == REDIS_REPLY_STRING) {
        snprintf(q->owner, sizeof(q->owner), "%s", r->element[0]->str);
        *fence = strtoull(r->element[1]->str, NULL, 10);
        rc = 0;
    }
    freeReplyObject(r);
    return rc;
}

/* Send q to its owner's stream; on failure q is answered and freed. 0 sent, else not. */
static int send_req(struct cl__fwd *f, struct fwd_req *q)
{
    uint64_t fence = 0;
    int rc = read_owner(f, q, &fence);
    if (rc == 1) {
        answer_error(q, 503, "owner_unknown", "no node holds this shard now; try again shortly");
        sh_metric_add(f->m_answered, 1, "owner_unknown");
        req_free(q);
        return -1;
    }
    if (rc == 0) {
        struct cl__api_cmd cmd = {.shard = q->shard,
                                  .fence = fence,
                                  .body = q->body,
                                  .len = q->len,
                                  .timeout_ms = (int)cl__since(q->deadline_ms, sh_now_ms())};
        snprintf(cmd.id, sizeof(cmd.id), "%s", q->id);
        snprintf(cmd.from, sizeof(cmd.from), "%s", f->c->name);
        snprintf(cmd.route, sizeof(cmd.route), "%s", q->route);
        snprintf(cmd.param, sizeof(cmd.param), "%s", q->param);
        const char *argv[32];
        size_t lens[32];
        char key[256], bufs[96];
        snprintf(key, sizeof(key), "%scmd:%s", f->c->prefix, q->owner);
        const char *head[] = {"XADD", key, "MAXLEN", "~", TEXT_MAXLEN, "*"};
        for (int i = 0; i < 6; i++)
            argv[i] = head[i], lens[i] = strlen(head[i]);
        int n = 6 + cl__api_encode(&cmd, argv + 6, lens + 6, bufs, sizeof(bufs));
        redisReply *r = cl__redis_argv(f->redis, n, argv, lens);
        rc = r && r->type == REDIS_REPLY_STRING ? 0 : SH_ENET;
        if (r)
            freeReplyObject(r);
    }
    if (rc) {
        answer_error(q, 503, "cluster_degraded",
                     "Redis is unreachable: this node answers for its own shards only");
        sh_metric_add(f->m_answered, 1, "degraded");
        req_free(q);
        return -1;
    }
    q->tries++;
    q->fence = fence;
    q->sent_ms = sh_now_ms();
    sh_metric_add(f->m_forwarded, 1, q->route);
    q->next = f->inflight;
    f->inflight = q;
    return 0;
}

/* Post one answer to its requester's reply stream (which expires when nobody reads it). */
static int post_answer(struct cl__fwd *f, struct fwd_answer *an)
{
    char key[256], st[16];
    snprintf(key, sizeof(key), "%sreply:%s", f->c->prefix, an->to);
    snprintf(st, sizeof(st), "%d", an->status);
    int moved = an->status == 0;
    const char *argv[] = {"XADD",
                          key,
                          "MAXLEN",
                          "~",
                          TEXT_RMAXLEN,
                          "*",
                          "id",
                          an->id,
                          moved ? "moved" : "status",
                          moved ? "1" : st,
                          "retry_after",
                          an->retry_after,
                          "body",
                          an->body ? an->body : ""};
    size_t lens[14];
    for (int i = 0; i < 14; i++)
        lens[i] = i == 13 ? an->len : strlen(argv[i]);
    if (cl__redis_append_argv(f->redis, 14, argv, lens) ||
        cl__redis_append(f->redis, "PEXPIRE %s %d", key, REPLY_TTL_MS))
        return SH_ENET;
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        redisReply *r = cl__redis_read(f->redis);
        if (!r)
            return SH_ENET;
        freeReplyObject(r);
    }
    return rc;
}

static struct fwd_req *take_inflight(struct cl__fwd *f, const char *id)
{
    for (struct fwd_req **p = &f->inflight; *p; p = &(*p)->next)
        if (!strcmp((*p)->id, id)) {
            struct fwd_req *q = *p;
            *p = q->next;
            return q;
        }
    return NULL;
}

/* One entry of reply:<me>. */
static void got_answer(struct cl__fwd *f, const redisReply *fields)
{
    char id[64];
    struct cl_answer a;
    int moved;
    if (cl__answer_decode(fields, id, sizeof(id), &a, &moved))
        return;
    struct fwd_req *q = take_inflight(f, id);
    if (!q)
        return; /* answered already (timed out) */
    sh_metric_observe(f->m_rtt, (double)cl__since(sh_now_ms(), q->sent_ms) / 1000.0);
    if (moved && q->tries < 2) {
        log_info("msg=\"forwarded command: the shard moved; asking its new owner\" shard=%d "
                 "was=\"%s\"",
                 q->shard, q->owner);
        /* a handoff answers `moved` before Redis names the new owner: wait for that */
        snprintf(q->moved_from, sizeof(q->moved_from), "%s", q->owner);
        q->moved_fence = q->fence;
        q->recheck_ms = sh_now_ms();
        q->next = f->moving;
        f->moving = q;
        return;
    }
    if (moved) {
        answer_error(q, 503, "owner_unreachable", "the shard moved twice while the command waited");
        sh_metric_add(f->m_answered, 1, "moved");
    } else {
        q->done(q->ud, a.status, a.retry_after, a.body, a.len);
        sh_metric_add(f->m_answered, 1, a.status < 500 ? "answered" : "answered_5xx");
    }
    req_free(q);
}

/*
 * Where reading reply:<me> starts: its newest entry now, before any command is sent (a reply
 * arriving between a send and this would be skipped). Older entries are a former life's.
 */
static int reply_start(struct cl__fwd *f)
{
    if (f->last_id[0])
        return 0;
    redisReply *r =
        cl__redis_cmd(f->redis, "XREVRANGE %sreply:%s + - COUNT 1", f->c->prefix, f->c->name);
    if (!r)
        return SH_ENET;
    snprintf(f->last_id, sizeof(f->last_id), "%s",
             r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->elements == 2
                 ? r->element[0]->element[0]->str
                 : "0-0");
    freeReplyObject(r);
    return 0;
}

/* Read reply:<me> (blocking a little when nothing else is to do). SH_ENET, 0. */
static int read_answers(struct cl__fwd *f, int block_ms)
{
    redisReply *r;
    r = cl__redis_cmd(f->redis, "XREAD COUNT 64 BLOCK %d STREAMS %sreply:%s %s", block_ms,
                      f->c->prefix, f->c->name, f->last_id);
    if (!r)
        return SH_ENET;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->elements == 2) {
        const redisReply *entries = r->element[0]->element[1];
        for (size_t i = 0; i < entries->elements; i++) {
            const redisReply *e = entries->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
                continue;
            snprintf(f->last_id, sizeof(f->last_id), "%s", e->element[0]->str);
            got_answer(f, e->element[1]);
        }
    }
    freeReplyObject(r);
    return 0;
}

/*
 * Commands whose owner answered `moved`: sent again once Redis names another owner or fence
 * (a handoff passes ownership a few milliseconds to a few seconds after the old owner stopped
 * taking commands), or answered 503 at their deadline. 0, or SH_ENET (Redis unreachable).
 */
static int recheck_moving(struct cl__fwd *f, uint64_t now)
{
    for (struct fwd_req **p = &f->moving; *p;) {
        struct fwd_req *q = *p;
        uint64_t fence = 0;
        int rc = now >= q->recheck_ms ? read_owner(f, q, &fence) : 1;
        if (rc == SH_ENET)
            return SH_ENET;
        int named = rc == 0 && (strcmp(q->owner, q->moved_from) || fence != q->moved_fence);
        if (!named && now < q->deadline_ms) {
            if (now >= q->recheck_ms)
                q->recheck_ms = now + MOVE_RECHECK_MS;
            p = &q->next;
            continue;
        }
        *p = q->next;
        if (named) {
            send_req(f, q); /* reads the owner once more: the newest wins */
        } else {
            answer_error(q, 503, "owner_unreachable",
                         "the shard is moving and no new owner was named in time");
            sh_metric_add(f->m_answered, 1, "moved");
            req_free(q);
        }
    }
    return 0;
}

/* Commands past their deadline answer 503 naming the owner. */
static void expire(struct cl__fwd *f, uint64_t now, int all)
{
    for (struct fwd_req **p = &f->inflight; *p;) {
        struct fwd_req *q = *p;
        if (!all && now < q->deadline_ms) {
            p = &q->next;
            continue;
        }
        *p = q->next;
        char msg[CL__NAME_MAX + 96];
        snprintf(msg, sizeof(msg), "node \"%s\" holds this shard but did not answer in time",
                 q->owner);
        answer_error(q, 503, "owner_unreachable", msg);
        sh_metric_add(f->m_answered, 1, "unreachable");
        req_free(q);
    }
}

/* Answer every command of list: Redis unreachable, or (stopping) shardhook is stopping. */
static void fail_all(struct cl__fwd *f, struct fwd_req *list, int stopping)
{
    while (list) {
        struct fwd_req *q = list;
        list = q->next;
        if (stopping)
            answer_error(q, 503, "shutting_down", "shardhook is stopping");
        else
            answer_error(q, 503, "cluster_degraded",
                         "Redis is unreachable: this node answers for its own shards only");
        sh_metric_add(f->m_answered, 1, stopping ? "stopping" : "degraded");
        req_free(q);
    }
}

static void answers_free(struct fwd_answer *a)
{
    while (a) {
        struct fwd_answer *n = a->next;
        free(a->body);
        free(a);
        a = n;
    }
}

static void *worker(void *arg)
{
    struct cl__fwd *f = arg;
    for (;;) {
        pthread_mutex_lock(&f->mu);
        if (!f->quit && !f->queue && !f->answers && !f->inflight && !f->moving) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200 * 1000000L;
            if (ts.tv_nsec >= 1000000000L)
                ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&f->cv, &f->mu, &ts);
        }
        int quit = f->quit;
        struct fwd_req *news = f->queue;
        struct fwd_answer *ans = f->answers;
        f->queue = NULL;
        f->answers = NULL;
        f->answers_tail = &f->answers;
        pthread_mutex_unlock(&f->mu);
        if (quit) {
            fail_all(f, news, 1);
            fail_all(f, f->inflight, 1);
            fail_all(f, f->moving, 1);
            f->inflight = f->moving = NULL;
            answers_free(ans);
            break;
        }
        if ((!cl__redis_connected(f->redis) && cl__redis_connect(f->redis) != 0) ||
            reply_start(f) != 0) {
            fail_all(f, news, 0);
            fail_all(f, f->inflight, 0); /* their answers cannot come back now */
            fail_all(f, f->moving, 0);
            f->inflight = f->moving = NULL;
            answers_free(ans);
            f->last_id[0] = '\0';
            expire(f, sh_now_ms(), 0);
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        for (struct fwd_answer *a = ans; a; a = a->next)
            if (post_answer(f, a))
                break;
        answers_free(ans);
        while (news) {
            struct fwd_req *q = news;
            news = q->next;
            send_req(f, q);
        }
        if (f->inflight && read_answers(f, READ_BLOCK_MS))
            f->last_id[0] = '\0';
        else if (!f->inflight && f->moving) /* nothing to block on: pace the re-reads */
            nanosleep(&(struct timespec){0, READ_BLOCK_MS * 1000000L}, NULL);
        if (f->moving && recheck_moving(f, sh_now_ms()))
            f->last_id[0] = '\0'; /* Redis went away: the next pass reconnects and fails them */
        expire(f, sh_now_ms(), 0);
    }
    return NULL;
}

/* ---- the public calls ------------------------------------------------------------------------ */

int cl__fwd_start(struct cl_cluster *c)
{
    struct cl__fwd *f = calloc(1, sizeof(*f));
    char err[256];
    if (!f)
        return SH_ENOMEM;
    f->c = c;
    f->total = c->total;
    f->owners = calloc((size_t)c->total, sizeof(*f->owners));
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->answers_tail = &f->answers;
    f->m_forwarded =
        sh_metric_counter("shardhook_cluster_commands_forwarded_total",
                          "Control commands sent to the node holding their shard", "route");
    f->m_answered = sh_metric_counter("shardhook_cluster_commands_answered_total",
                                      "Forwarded control commands answered, by outcome", "outcome");
    f->m_executed =
        sh_metric_counter("shardhook_cluster_commands_executed_total",
                          "Control commands other nodes sent here, by outcome", "outcome");
    f->m_rtt = sh_metric_histogram("shardhook_cluster_forward_seconds",
                                   "Round trip of a forwarded control command", NULL,
                                   SH_METRIC_BUCKETS_SECONDS);
    c->fwd = f;
    if (!f->owners || cl__redis_new(c->cfg->cluster_redis, 1000, &f->redis, err, sizeof(err)) ||
        pthread_create(&f->thread, NULL, worker, f)) {
        cl__fwd_free(c);
        return SH_ENOMEM;
    }
    f->started = 1;
    return 0;
}

void cl__fwd_stop(struct cl_cluster *c)
{
    struct cl__fwd *f = c->fwd;
    if (!f || !f->started)
        return;
    pthread_mutex_lock(&f->mu);
    f->quit = 1;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL);
    f->started = 0;
}

void cl__fwd_free(struct cl_cluster *c)
{
    struct cl__fwd *f = c->fwd;
    if (!f)
        return;
    cl__fwd_stop(c);
    fail_all(f, f->queue, 1);
    answers_free(f->answers);
    cl__redis_free(f->redis);
    free(f->owners);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
    c->fwd = NULL;
}

void cl__fwd_publish(struct cl_cluster *c)
{
    struct cl__fwd *f = c->fwd;
    if (!f || !f->owners)
        return;
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < f->total; i++)
        memcpy(f->owners[i], c->shards[i].owner, CL__NAME_MAX);
    pthread_mutex_unlock(&f->mu);
}

int cl_cluster_owner(struct cl_cluster *c, int shard, char *name, size_t cap)
{
    struct cl__fwd *f = c ? c->fwd : NULL;
    if (!f || shard < 0 || shard >= f->total || !f->owners)
        return SH_ENOTFOUND;
    pthread_mutex_lock(&f->mu);
    snprintf(name, cap, "%s", f->owners[shard]);
    pthread_mutex_unlock(&f->mu);
    return name[0] ? 0 : SH_ENOTFOUND;
}

int cl_cluster_forward(struct cl_cluster *c, const struct cl_forward *fw, cl_answer_fn *done,
                       void *ud)
{
    struct cl__fwd *f = c ? c->fwd : NULL;
    if (!f || fw->shard < 0 || fw->shard >= f->total)
        return SH_EINVAL;
    pthread_mutex_lock(&c->mu);
    int degraded = c->degraded, closed = c->stopping || c->quit;
    pthread_mutex_unlock(&c->mu);
    if (closed)
        return SH_ECLOSED;
    if (degraded)
        return SH_EAGAIN;
    struct fwd_req *q = calloc(1, sizeof(*q));
    if (!q || (fw->len && !(q->body = malloc(fw->len + 1)))) {
        free(q);
        return SH_ENOMEM;
    }
    if (fw->len) {
        memcpy(q->body, fw->body, fw->len);
        q->body[fw->len] = '\0';
    }
    q->len = fw->len;
    q->shard = fw->shard;
    snprintf(q->route, sizeof(q->route), "%s", fw->route);
    snprintf(q->param, sizeof(q->param), "%s", fw->param ? fw->param : "");
    q->deadline_ms = sh_now_ms() + (uint64_t)(fw->timeout_ms > 0 ? fw->timeout_ms : 1000);
    q->done = done;
    q->ud = ud;
    pthread_mutex_lock(&f->mu);
    if (f->quit) {
        pthread_mutex_unlock(&f->mu);
        req_free(q);
        return SH_ECLOSED;
    }
    snprintf(q->id, sizeof(q->id), "%" PRIu64 ":%" PRIu64, c->epoch, ++f->counter);
    q->next = f->queue;
    f->queue = q;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    return 0;
}

/* ---- the owning side ------------------------------------------------------------------------- */

/* An answer on its way from ops->execute (any thread) to the worker. */
struct exec_ctx {
    struct cl__fwd *f;
    char to[CL__NAME_MAX];
    char id[64];
};

static void queue_answer(struct cl__fwd *f, const char *to, const char *id, int status,
                         const char *retry_after, const char *body, size_t len)
{
    struct fwd_answer *an = calloc(1, sizeof(*an));
    if (!an || (len && !(an->body = malloc(len)))) {
        free(an);
        return; /* the requester's timeout answers */
    }
    if (len)
        memcpy(an->body, body, len);
    an->len = len;
    an->status = status;
    snprintf(an->to, sizeof(an->to), "%s", to);
    snprintf(an->id, sizeof(an->id), "%s", id);
    snprintf(an->retry_after, sizeof(an->retry_after), "%s", retry_after ? retry_after : "");
    pthread_mutex_lock(&f->mu);
    *f->answers_tail = an;
    f->answers_tail = &an->next;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static void executed(void *ud, int status, const char *retry_after, const char *body, size_t len)
{
    struct exec_ctx *x = ud;
    sh_metric_add(x->f->m_executed, 1, "executed");
    queue_answer(x->f, x->to, x->id, status, retry_after, body, len);
    free(x);
}

void cl__api_command(struct cl_cluster *c, const redisReply *fields)
{
    struct cl__api_cmd cmd;
    struct cl__fwd *f = c->fwd;
    if (!f || cl__api_decode(fields, &cmd))
        return;
    int held = cmd.shard < c->total && c->shards[cmd.shard].state == CL__HELD &&
               c->shards[cmd.shard].fence == cmd.fence;
    if (!held) {
        sh_metric_add(f->m_executed, 1, "moved");
        queue_answer(f, cmd.from, cmd.id, 0, "", "", 0);
        return;
    }
    struct exec_ctx *x = calloc(1, sizeof(*x));
    int rc = x && c->ops.execute ? 0 : SH_ENOMEM;
    if (x) {
        x->f = f;
        snprintf(x->to, sizeof(x->to), "%s", cmd.from);
        snprintf(x->id, sizeof(x->id), "%s", cmd.id);
    }
    if (!rc)
        rc = c->ops.execute(c->ops.ud, cmd.route, cmd.param, cmd.body, cmd.len, executed, x);
    if (rc) {
        free(x);
        static const char err[] = "{\"error\":{\"code\":\"internal\",\"message\":\"the node "
                                  "holding this shard could not run the command\"}}";
        sh_metric_add(f->m_executed, 1, "failed");
        queue_answer(f, cmd.from, cmd.id, 500, "", err, sizeof(err) - 1);
    }
}
