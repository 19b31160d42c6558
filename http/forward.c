/*
 * http/forward.c: cluster mode's control commands for shards this node does not hold
 * (docs/cluster.md, "Control plane"). http__forward takes a request whose shard (or guild's
 * shard) another node holds, suspends the connection and hands it to http_cluster_ops.forward;
 * the answer fills the reply and resumes the connection. Presence and soundboard requests are
 * split by owner (this node's part runs here) and the answers merged as one node merges them.
 * http_server_execute runs a command another node forwarded here through the route's own
 * handler, capturing its whole answer, waits for Discord included. Owns the split requests and
 * the executions under way.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "http/forward.h"
#include "http/internal.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/snowflake.h"

#define WAIT_MARGIN_MS 2000 /* a forwarded wait for Discord: the owner's 504 comes first */
#define MAX_PARTS 64        /* owners one split request reaches */

/* ---- merging split answers (pure) ----------------------------------------------------------- */

static int ok_status(int s)
{
    return s >= 200 && s <= 299;
}

static void concat(cJSON *dst, const char *key, const cJSON *src, const char *src_key)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(src, src_key);
    if (!cJSON_IsArray(a))
        return;
    cJSON *d = cJSON_GetObjectItemCaseSensitive(dst, key);
    if (!d)
        d = cJSON_AddArrayToObject(dst, key);
    for (const cJSON *it = a->child; it && d; it = it->next)
        cJSON_AddItemToArray(d, cJSON_Duplicate(it, 1));
}

/*
 * Detach obj[key]'s items, sort them with before (stable: insertion sort, so items that compare
 * equal keep the order the merge gave them; the arrays are a request's worth) and put them back.
 */
static void sort_items(cJSON *obj, const char *key,
                       int (*before)(const cJSON *x, const cJSON *y, const cJSON *ctx),
                       const cJSON *ctx)
{
    cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, key);
    int n = cJSON_GetArraySize(a);
    if (n < 2)
        return;
    cJSON **v = malloc(sizeof(*v) * (size_t)n);
    if (!v)
        return;
    int k = 0;
    while (a->child && k < n)
        v[k++] = cJSON_DetachItemViaPointer(a, a->child);
    for (int i = 1; i < k; i++)
        for (int j = i; j > 0 && before(v[j], v[j - 1], ctx); j--) {
            cJSON *t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    for (int i = 0; i < k; i++)
        cJSON_AddItemToArray(a, v[i]);
    free(v);
}

static int smaller(const cJSON *x, const cJSON *y, const cJSON *ctx)
{
    (void)ctx;
    return x->valuedouble < y->valuedouble;
}

/* Sort an array of numbers in place ("shards", "queued"). */
static void sort_numbers(cJSON *obj, const char *key)
{
    sort_items(obj, key, smaller, NULL);
}

/* The position of guild id text in order (a JSON array of strings); n when absent. */
static int rank_in(const cJSON *order, const cJSON *item)
{
    const cJSON *id =
        cJSON_IsString(item) ? item : cJSON_GetObjectItemCaseSensitive(item, "guild_id");
    int k = 0;
    for (const cJSON *it = order ? order->child : NULL; it; it = it->next, k++)
        if (cJSON_IsString(it) && cJSON_IsString(id) && !strcmp(it->valuestring, id->valuestring))
            return k;
    return k;
}

static int listed_first(const cJSON *x, const cJSON *y, const cJSON *order)
{
    return rank_in(order, x) < rank_in(order, y);
}

/* Put obj[key]'s items (guilds or guild ids) in the order the request listed them. */
static void reorder(cJSON *obj, const char *key, const cJSON *order)
{
    if (order)
        sort_items(obj, key, listed_first, order);
}

int http__merge_answers(const struct http__part *parts, int n, const cJSON *order,
                        struct http__part *out, char **body)
{
    int fail = -1;
    for (int i = 0; i < n && fail < 0; i++)
        if (!ok_status(parts[i].status))
            fail = i;
    int base = fail >= 0 ? fail : 0;
    cJSON *j = cJSON_ParseWithLength(parts[base].body, parts[base].len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return SH_EINVAL;
    }
    for (int i = 0; i < n; i++) {
        if (i == base)
            continue;
        cJSON *p = cJSON_ParseWithLength(parts[i].body, parts[i].len);
        /* presence: every part's shards (queued when one failed); soundboard: guilds, missing */
        concat(j, fail >= 0 ? "queued" : "shards", p, "shards");
        if (fail >= 0)
            concat(j, "queued", p, "queued");
        concat(j, "guilds", p, "guilds");
        concat(j, "missing", p, "missing");
        cJSON_Delete(p);
    }
    sort_numbers(j, "shards");
    sort_numbers(j, "queued");
    reorder(j, "guilds", order);
    reorder(j, "missing", order);
    *body = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!*body)
        return SH_ENOMEM;
    out->status = parts[base].status;
    snprintf(out->retry_after, sizeof(out->retry_after), "%s", parts[base].retry_after);
    out->body = *body;
    out->len = strlen(*body);
    return 0;
}

/* ---- a request answered from elsewhere ------------------------------------------------------ */

/* One suspended request waiting for its parts' answers. */
struct http__fwd {
    struct http__fwd *prev, *next; /* in ctx->fwds until answered */
    struct http_ctx *ctx;
    int detached; /* the server stopped and answered it: the connection is no longer ours */
    void *token;
    void (*resume)(void *token);
    struct http_reply *r;
    pthread_mutex_t mu;
    int n, left;
    cJSON *order; /* soundboard: the request's guild_ids, the answer's order */
    struct http__part parts[MAX_PARTS];
};

static void fill_reply(struct http_reply *r, int status, const char *retry_after, const char *body,
                       size_t len)
{
    r->status = status;
    sh_buf_reset(&r->body);
    if (sh_buf_append(&r->body, body, len))
        http_reply_error(r, 500, "internal", "the forwarded answer did not fit");
    snprintf(r->retry_after, sizeof(r->retry_after), "%s", retry_after ? retry_after : "");
}

static void fwd_free(struct http__fwd *f)
{
    for (int i = 0; i < f->n; i++)
        free((char *)f->parts[i].body);
    cJSON_Delete(f->order);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

/* All parts answered: the merged answer into the reply, and the connection resumed. */
static void unlink_fwd(struct http__fwd *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else
        f->ctx->fwds = f->next;
    if (f->next)
        f->next->prev = f->prev;
}

/* All parts answered: the merged answer into the reply, and the connection resumed. */
static void finish(struct http__fwd *f)
{
    struct http_reply tmp;
    http_reply_init(&tmp);
    if (f->n == 1) {
        fill_reply(&tmp, f->parts[0].status, f->parts[0].retry_after, f->parts[0].body,
                   f->parts[0].len);
    } else {
        struct http__part m;
        char *body = NULL;
        if (http__merge_answers(f->parts, f->n, f->order, &m, &body))
            http_reply_error(&tmp, 502, "bad_answer", "a node's answer could not be merged");
        else
            fill_reply(&tmp, m.status, m.retry_after, m.body, m.len);
        cJSON_free(body);
    }
    pthread_mutex_lock(&f->ctx->fwd_lock);
    if (!f->detached) {
        unlink_fwd(f);
        struct http_reply old = *f->r;
        *f->r = tmp;
        tmp = old;
        f->resume(f->token);
    }
    pthread_mutex_unlock(&f->ctx->fwd_lock);
    http_reply_free(&tmp);
    fwd_free(f);
}

void http__forward_stop(struct http_ctx *ctx)
{
    pthread_mutex_lock(&ctx->fwd_lock);
    ctx->fwd_stopped = 1;
    for (struct http__fwd *f = ctx->fwds; f; f = f->next) {
        f->detached = 1; /* its parts' answers, when they come, only free it */
        http_reply_error(f->r, 503, "shutting_down", "shardhook is stopping");
        f->resume(f->token);
    }
    ctx->fwds = NULL;
    pthread_mutex_unlock(&ctx->fwd_lock);
}

struct part_ud {
    struct http__fwd *f;
    int i;
};

static void part_done(void *ud, int status, const char *retry_after, const char *body, size_t len)
{
    struct part_ud *p = ud;
    struct http__fwd *f = p->f;
    struct http__part *pt = &f->parts[p->i];
    free(p);
    char *copy = malloc(len + 1);
    if (copy) {
        memcpy(copy, body, len);
        copy[len] = '\0';
    }
    pthread_mutex_lock(&f->mu);
    pt->status = copy ? status : 500;
    snprintf(pt->retry_after, sizeof(pt->retry_after), "%s", retry_after ? retry_after : "");
    pt->body = copy ? copy : strdup("{\"error\":{\"code\":\"internal\",\"message\":\"oom\"}}");
    pt->len = pt->body ? strlen(pt->body) : 0;
    if (copy)
        pt->len = len;
    int last = --f->left == 0;
    pthread_mutex_unlock(&f->mu);
    if (last)
        finish(f);
}

/* The degraded answer: this node answers for its own shards only. */
static void degraded(struct http_reply *r, int shard)
{
    cJSON *extra = cJSON_CreateObject();
    cJSON_AddStringToObject(extra, "cluster", "degraded");
    char msg[160];
    snprintf(msg, sizeof(msg),
             "Redis is unreachable: this node answers for its own shards only, and shard %d "
             "is not one of them",
             shard);
    http_reply_error_with(r, 503, "cluster_degraded", msg, extra);
}

/* Start part i (shard, body) of f; on failure its answer is made here. */
static void start_part(struct http_ctx *ctx, const struct http_cluster_ops *ops,
                       struct http__fwd *f, int i, int shard, const char *route, const char *param,
                       const char *body, size_t len, int timeout_ms, int local)
{
    struct part_ud *p = malloc(sizeof(*p));
    int rc = p ? 0 : SH_ENOMEM;
    if (p)
        *p = (struct part_ud){f, i};
    if (!rc && local)
        rc = http__execute(ctx, route, param, body, len, part_done, p);
    else if (!rc)
        rc = ops->forward(ops->ud, shard, route, param, body, len, timeout_ms, part_done, p);
    if (!rc)
        return;
    free(p);
    struct http_reply r;
    http_reply_init(&r);
    if (rc == SH_EAGAIN)
        degraded(&r, shard);
    else if (rc == SH_ECLOSED)
        http_reply_error(&r, 503, "shutting_down", "shardhook is stopping");
    else
        http_reply_error(&r, 500, "internal", "cannot forward: %s", sh_strerror(rc));
    struct part_ud *q = malloc(sizeof(*q));
    if (q) {
        *q = (struct part_ud){f, i};
        part_done(q, r.status, r.retry_after, r.body.data ? r.body.data : "{}",
                  r.body.data ? r.body.len : 2);
    }
    http_reply_free(&r);
}

/* The route's wait: the body's timeout_ms for the routes that wait for Discord. */
static int route_timeout(struct http_ctx *ctx, enum http_route route, const cJSON *body)
{
    int t = ctx->request_timeout_ms > 0 ? ctx->request_timeout_ms : 10000;
    if (route != HTTP_ROUTE_MEMBERS && route != HTTP_ROUTE_CHANNEL_INFO &&
        route != HTTP_ROUTE_SOUNDBOARD)
        return t;
    long v;
    const cJSON *tj = cJSON_GetObjectItemCaseSensitive(body, "timeout_ms");
    if (tj && !http__get_int(tj, 1, HTTP_MAX_TIMEOUT_MS, &v))
        t = (int)v;
    return t + WAIT_MARGIN_MS;
}

/* The shard a single-shard route names, -1 when the handler should judge the request. */
static int target_shard(struct http_ctx *ctx, enum http_route route, const char *param)
{
    int shard = -1;
    uint64_t gid;
    switch (route) {
    case HTTP_ROUTE_SEND:
    case HTTP_ROUTE_RECONNECT:
    case HTTP_ROUTE_HANDOFF:
        if (http_parse_shard_id(param, &shard))
            return -1;
        break;
    case HTTP_ROUTE_VOICE_STATE:
    case HTTP_ROUTE_MEMBERS:
    case HTTP_ROUTE_CHANNEL_INFO:
        if (sh_parse_snowflake(param, strlen(param), &gid))
            return -1;
        shard = http__guild_shard(ctx, gid);
        break;
    default:
        return -1;
    }
    return shard < ctx->ops->total(ctx->gw) ? shard : -1;
}

/* A suspended request waiting for n parts; NULL (not suspended) when stopping or out of memory. */
static struct http__fwd *fwd_new(struct http_ctx *ctx, struct http_call *call, struct http_reply *r,
                                 int n)
{
    struct http__fwd *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    pthread_mutex_lock(&ctx->fwd_lock);
    if (ctx->fwd_stopped) {
        pthread_mutex_unlock(&ctx->fwd_lock);
        free(f);
        return NULL;
    }
    f->ctx = ctx;
    f->next = ctx->fwds;
    if (ctx->fwds)
        ctx->fwds->prev = f;
    ctx->fwds = f;
    pthread_mutex_unlock(&ctx->fwd_lock);
    pthread_mutex_init(&f->mu, NULL);
    f->token = call->token;
    f->resume = call->resume;
    f->r = r;
    f->n = f->left = n;
    call->suspended = 1;
    call->waiter = NULL;
    call->suspend(call->token);
    return f;
}

/* fwd_new failed: 1 with the answer in *r. */
static int no_fwd(struct http_ctx *ctx, struct http_reply *r)
{
    pthread_mutex_lock(&ctx->fwd_lock);
    int stopped = ctx->fwd_stopped;
    pthread_mutex_unlock(&ctx->fwd_lock);
    if (stopped)
        http_reply_error(r, 503, "shutting_down", "shardhook is stopping");
    else
        http__oom(r);
    return 1;
}

/* ---- split requests: presence, soundboard ---------------------------------------------------- */

/* One owner's share of a split request. */
struct share {
    char owner[128]; /* "" here */
    int first;       /* a shard of it, to route by */
    cJSON *items;    /* shard ids or guild ids */
};

static int share_of(struct share *sh, int *n, const char *owner, int shard)
{
    for (int i = 0; i < *n; i++)
        if (!strcmp(sh[i].owner, owner))
            return i;
    if (*n >= MAX_PARTS)
        return -1;
    snprintf(sh[*n].owner, sizeof(sh[*n].owner), "%s", owner);
    sh[*n].first = shard;
    sh[*n].items = cJSON_CreateArray();
    return (*n)++;
}

/* Add item (for shard) to its owner's share; -1 when the owner is unknown or too many. */
static int add_item(struct http_ctx *ctx, const struct http_cluster_ops *ops, struct share *sh,
                    int *n, int shard, cJSON *item)
{
    char owner[128] = "";
    if (!ctx->ops->runs(ctx->gw, shard) &&
        (!ops->owner || ops->owner(ops->ud, shard, owner, sizeof(owner)) || !owner[0]))
        snprintf(owner, sizeof(owner), "?%d", shard); /* unknown: its own share, resolved there */
    int i = share_of(sh, n, owner, shard);
    if (i < 0) {
        cJSON_Delete(item);
        return -1;
    }
    cJSON_AddItemToArray(sh[i].items, item);
    return 0;
}

/* The shares of a presence or soundboard request; 0 none to split (the handler judges it). */
static int split(struct http_ctx *ctx, const struct http_cluster_ops *ops, enum http_route route,
                 const cJSON *body, struct share *sh)
{
    int n = 0, total = ctx->ops->total(ctx->gw);
    if (route == HTTP_ROUTE_PRESENCE) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(body, "shards");
        if (s && (!cJSON_IsArray(s) || !s->child))
            return 0;
        if (!s) {
            for (int k = 0; k < total; k++)
                if (add_item(ctx, ops, sh, &n, k, cJSON_CreateNumber(k)))
                    return n;
        }
        for (const cJSON *it = s ? s->child : NULL; it; it = it->next) {
            long id;
            if (http__get_int(it, 0, 65535, &id) || id >= total)
                return 0;
            if (add_item(ctx, ops, sh, &n, (int)id, cJSON_CreateNumber((double)id)))
                return n;
        }
        return n;
    }
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(body, "guild_ids");
    if (cJSON_GetArraySize(g) > HTTP_MAX_SOUNDBOARD_GUILDS)
        return 0; /* the handler says how many fit */
    for (const cJSON *it = cJSON_IsArray(g) ? g->child : NULL; it; it = it->next) {
        uint64_t gid;
        if (http__get_snowflake(it, &gid))
            return 0;
        if (add_item(ctx, ops, sh, &n, http__guild_shard(ctx, gid), cJSON_Duplicate(it, 1)))
            return n;
    }
    return n;
}

static void shares_free(struct share *sh, int n)
{
    for (int i = 0; i < n; i++)
        cJSON_Delete(sh[i].items);
}

/* Run the shares: each with the body's list replaced by its own items. */
static int run_shares(struct http_ctx *ctx, const struct http_cluster_ops *ops,
                      struct http_call *call, enum http_route route, const cJSON *body,
                      struct share *sh, int n, struct http_reply *r)
{
    const char *key = route == HTTP_ROUTE_PRESENCE ? "shards" : "guild_ids";
    char *texts[MAX_PARTS] = {0};
    int bad = 0;
    for (int i = 0; i < n && !bad; i++) {
        cJSON *b = cJSON_Duplicate(body, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(b, key);
        cJSON *items = sh[i].items;
        sh[i].items = NULL;
        bad = !b || !cJSON_AddItemToObject(b, key, items);
        if (!b)
            cJSON_Delete(items);
        texts[i] = bad ? NULL : cJSON_PrintUnformatted(b);
        bad = bad || !texts[i];
        cJSON_Delete(b);
    }
    struct http__fwd *f = bad ? NULL : fwd_new(ctx, call, r, n);
    if (!f) {
        for (int i = 0; i < n; i++)
            cJSON_free(texts[i]);
        return no_fwd(ctx, r);
    }
    if (route == HTTP_ROUTE_SOUNDBOARD)
        f->order = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(body, "guild_ids"), 1);
    int timeout = route_timeout(ctx, route, body);
    const char *label = http_route_name(route);
    for (int i = 0; i < n; i++) {
        start_part(ctx, ops, f, i, sh[i].first, label, "", texts[i], strlen(texts[i]), timeout,
                   sh[i].owner[0] == '\0');
        cJSON_free(texts[i]);
    }
    return 1;
}

int http__forward(struct http_ctx *ctx, struct http_call *call, enum http_route route,
                  const char *param, const char *body, size_t len, const cJSON *j,
                  struct http_reply *r)
{
    const struct http_cluster_ops *ops = atomic_load(&ctx->cluster);
    if (!ops || !ops->forward || call->local)
        return 0;
    if (route == HTTP_ROUTE_PRESENCE || route == HTTP_ROUTE_SOUNDBOARD) {
        struct share sh[MAX_PARTS];
        int n = split(ctx, ops, route, j, sh);
        if (n == 0 || (n == 1 && sh[0].owner[0] == '\0')) { /* nothing elsewhere */
            shares_free(sh, n);
            return 0;
        }
        int rc = run_shares(ctx, ops, call, route, j, sh, n, r);
        shares_free(sh, n);
        return rc;
    }
    int shard = target_shard(ctx, route, param);
    if (shard < 0 || ctx->ops->runs(ctx->gw, shard))
        return 0;
    struct http__fwd *f = fwd_new(ctx, call, r, 1);
    if (!f)
        return no_fwd(ctx, r);
    start_part(ctx, ops, f, 0, shard, http_route_name(route), param, body, len,
               route_timeout(ctx, route, j), 0);
    return 1;
}

/* ---- running a forwarded command here -------------------------------------------------------- */

/* A command run for another node, from its handler's call until its answer is handed over. */
struct exec {
    struct http__wakeable wk; /* first: the pending table's token */
    struct http_call call;
    struct http_reply r;
    atomic_int refs;
    http_answer_fn *done;
    void *ud;
};

static void exec_release(struct exec *e)
{
    if (atomic_fetch_sub(&e->refs, 1) == 1) {
        http_reply_free(&e->r);
        free(e);
    }
}

static void exec_answer(struct exec *e)
{
    struct http_reply *r = &e->r;
    if (!r->status)
        http_reply_error(r, 500, "internal", "no answer was produced");
    e->done(e->ud, r->status, r->retry_after, r->body.data ? r->body.data : "",
            r->body.data ? r->body.len : 0);
}

static void exec_suspend(void *token)
{
    struct exec *e = token;
    atomic_fetch_add(&e->refs, 1);
}

/* Suspending turned out unnecessary: the answer is in e->r (the runner hands it over). */
static void exec_resume(void *token)
{
    exec_release(token);
}

static void exec_wake(struct http__wakeable *wk)
{
    struct exec *e = (struct exec *)wk;
    http_waiter_reply(e->call.waiter, &e->r);
    http_waiter_free(e->call.waiter); /* call.waiter stays set: the runner's test reads it */
    exec_answer(e);
    exec_release(e);
}

int http__execute(struct http_ctx *ctx, const char *route, const char *param, const char *body,
                  size_t len, http_answer_fn *done, void *ud)
{
    enum http_route rt = HTTP_ROUTE_NONE;
    for (int i = HTTP_ROUTE_NONE + 1; i < HTTP_ROUTE_COUNT_; i++)
        if (!strcmp(http_route_name((enum http_route)i), route))
            rt = (enum http_route)i;
    struct exec *e = calloc(1, sizeof(*e));
    if (!e)
        return SH_ENOMEM;
    e->wk.wake = exec_wake;
    atomic_init(&e->refs, 1);
    e->done = done;
    e->ud = ud;
    http_reply_init(&e->r);
    e->call =
        (struct http_call){.token = e, .suspend = exec_suspend, .resume = exec_resume, .local = 1};
    if (rt == HTTP_ROUTE_NONE || http__route_row(rt)->method != HTTP_POST)
        http_reply_error(&e->r, 404, "not_found", "no such command route");
    else
        http_handle(ctx, &e->call, rt, param ? param : "", body ? body : "", len, &e->r);
    /* suspended with a waiter: the answer comes through exec_wake */
    if (!(e->call.suspended && e->call.waiter))
        exec_answer(e);
    exec_release(e);
    return 0;
}
