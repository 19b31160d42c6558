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

/*
 * How the parts' answers become one: merged as presence and soundboard answers are, the first
 * 200 of the parts (else part 0's answer: this node's own), or the guild lists merged.
 */
enum { FWD_MERGE = 0, FWD_FIRST_OK, FWD_GUILD_LIST };

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
    int mode;     /* FWD_MERGE, FWD_FIRST_OK, FWD_GUILD_LIST: how finish() makes one answer */
    int limit;    /* FWD_GUILD_LIST: the request's page size */
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

/* Snowflake text order: shorter is smaller, then byte order. */
static int id_before(const cJSON *x, const cJSON *y, const cJSON *ctx)
{
    (void)ctx;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(x, "id");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(y, "id");
    const char *sa = cJSON_IsString(a) ? a->valuestring : "",
               *sb = cJSON_IsString(b) ? b->valuestring : "";
    size_t na = strlen(sa), nb = strlen(sb);
    return na != nb ? na < nb : strcmp(sa, sb) < 0;
}

/*
 * GET /v1/cache/guilds in cluster mode: every node's page ({"guilds":[...]}, each asked with the
 * same limit and after) merged by id, each guild once, cut to limit. A part that failed makes
 * the answer its failure: a page without a node's guilds would look complete.
 */
static void merge_guild_lists(const struct http__part *parts, int n, int limit,
                              struct http_reply *out)
{
    for (int i = 0; i < n; i++)
        if (parts[i].status != 200) {
            fill_reply(out, parts[i].status, parts[i].retry_after, parts[i].body, parts[i].len);
            return;
        }
    cJSON *all = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(all, "guilds");
    for (int i = 0; i < n && list; i++) {
        cJSON *p = cJSON_ParseWithLength(parts[i].body, parts[i].len);
        concat(all, "guilds", p, "guilds");
        cJSON_Delete(p);
    }
    sort_items(all, "guilds", id_before, NULL);
    int kept = 0;
    for (cJSON *it = list ? list->child : NULL, *next; it; it = next) {
        next = it->next;
        if (kept >= limit || (it != list->child && !id_before(it->prev, it, NULL)))
            cJSON_Delete(cJSON_DetachItemViaPointer(list, it)); /* past the page, or a repeat */
        else
            kept++;
    }
    if (!list || http_reply_json(out, 200, all))
        http_reply_error(out, 500, "internal", "out of memory while merging the guild lists");
    if (!list)
        cJSON_Delete(all);
}

/* All parts answered: the merged answer into the reply, and the connection resumed. */
static void finish(struct http__fwd *f)
{
    struct http_reply tmp;
    http_reply_init(&tmp);
    if (f->n == 1 || f->mode == FWD_FIRST_OK) {
        int k = 0;
        for (int i = 1; i < f->n && f->mode == FWD_FIRST_OK && !k; i++)
            k = f->parts[i].status == 200 ? i : 0;
        fill_reply(&tmp, f->parts[k].status, f->parts[k].retry_after, f->parts[k].body,
                   f->parts[k].len);
    } else if (f->mode == FWD_GUILD_LIST) {
        merge_guild_lists(f->parts, f->n, f->limit, &tmp);
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
    case HTTP_ROUTE_CACHE_GUILD:
    case HTTP_ROUTE_CACHE_CHANNELS:
    case HTTP_ROUTE_CACHE_THREADS:
    case HTTP_ROUTE_CACHE_ROLES:
    case HTTP_ROUTE_CACHE_EMOJIS:
    case HTTP_ROUTE_CACHE_MEMBERS:
    case HTTP_ROUTE_CACHE_MEMBER:
    case HTTP_ROUTE_CACHE_PERMISSIONS:
    case HTTP_ROUTE_CACHE_VOICE_STATES:
    case HTTP_ROUTE_CACHE_VOICE_STATE: /* the guild id comes first: "guild" or "guild/user" */
        if (sh_parse_snowflake(param, strcspn(param, "/"), &gid))
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

/* ---- the entity cache's reads ---------------------------------------------------------------- */

/*
 * A cache read travels as "GET <label>" with its query's values in the body, an object of
 * strings ({"limit":"5","after":"..."}), which http__execute hands back to the handler as its
 * query. NULL out of memory.
 */
static char *query_body(const struct http_call *call)
{
    static const char *const keys[] = {"limit", "after", "channel_id"};
    cJSON *q = cJSON_CreateObject();
    for (size_t i = 0; q && call->query && i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *v = call->query(call->token, keys[i]);
        if (v && !cJSON_AddStringToObject(q, keys[i], v)) {
            cJSON_Delete(q);
            return NULL;
        }
    }
    char *text = q ? cJSON_PrintUnformatted(q) : NULL;
    cJSON_Delete(q);
    return text;
}

/*
 * One shard of each other node that holds shards (its owner answers for the node), as the
 * cluster's latest view names the owners; at most cap. Returns the count.
 */
static int other_nodes(struct http_ctx *ctx, const struct http_cluster_ops *ops, int *shards,
                       int cap)
{
    char names[MAX_PARTS][128];
    int n = 0, total = ctx->ops->total(ctx->gw);
    const char *me = ctx->cfg->cluster_node ? ctx->cfg->cluster_node : "";
    for (int s = 0; s < total && n < cap && ops->owner; s++) {
        char owner[128] = "";
        if (ctx->ops->runs(ctx->gw, s) || ops->owner(ops->ud, s, owner, sizeof(owner)) ||
            !owner[0] || !strcmp(owner, me))
            continue;
        int seen = 0;
        for (int k = 0; k < n && !seen; k++)
            seen = !strcmp(names[k], owner);
        if (seen)
            continue;
        snprintf(names[n], sizeof(names[n]), "%s", owner);
        shards[n++] = s;
    }
    return n;
}

/*
 * /v1/channels/{id}, /v1/users/{id} and /v1/cache/guilds: this node answers first; a channel or
 * user it does not hold is asked of every other node (the first 200 wins, else this node's 404),
 * and the guild list is every node's page merged. 1 with the answer in *r or to come by resume,
 * 0 when the route is not one of these.
 */
static int fan_out(struct http_ctx *ctx, const struct http_cluster_ops *ops, struct http_call *call,
                   enum http_route route, const char *param, struct http_reply *r)
{
    if (route != HTTP_ROUTE_CACHE_CHANNEL && route != HTTP_ROUTE_CACHE_USER &&
        route != HTTP_ROUTE_CACHE_GUILD_LIST)
        return 0;
    struct http_req rq = {.route = route, .param = param, .call = call};
    http__get_cache(ctx, &rq, r);
    int list = route == HTTP_ROUTE_CACHE_GUILD_LIST;
    int again =
        list ? r->status == 200
             : r->status == 404 && r->body.data && strstr(r->body.data, "\"code\":\"unknown_");
    int shards[MAX_PARTS - 1];
    int n = again ? other_nodes(ctx, ops, shards, MAX_PARTS - 1) : 0;
    char *q = n ? query_body(call) : NULL;
    struct http__fwd *f = q ? fwd_new(ctx, call, r, n + 1) : NULL;
    if (!f) {
        cJSON_free(q);
        return n ? no_fwd(ctx, r) : 1; /* nobody else to ask: this node's answer */
    }
    f->mode = list ? FWD_GUILD_LIST : FWD_FIRST_OK;
    const char *l = call->query ? call->query(call->token, "limit") : NULL;
    f->limit = l ? atoi(l) : 100; /* checked by the handler's own answer above */
    struct http__part *p0 = &f->parts[0];
    p0->status = r->status;
    snprintf(p0->retry_after, sizeof(p0->retry_after), "%s", r->retry_after);
    p0->len = r->body.len;
    p0->body = malloc(p0->len + 1);
    if (p0->body) {
        memcpy((char *)p0->body, r->body.data ? r->body.data : "", p0->len);
        ((char *)p0->body)[p0->len] = '\0';
    } else {
        p0->status = 500;
        p0->body = strdup("{\"error\":{\"code\":\"internal\",\"message\":\"oom\"}}");
        p0->len = p0->body ? strlen(p0->body) : 0;
    }
    pthread_mutex_lock(&f->mu);
    f->left = n;
    pthread_mutex_unlock(&f->mu);
    char label[80];
    snprintf(label, sizeof(label), "GET %s", http_route_name(route));
    for (int i = 0; i < n; i++)
        start_part(ctx, ops, f, i + 1, shards[i], label, param, q, strlen(q),
                   route_timeout(ctx, route, NULL), 0);
    cJSON_free(q);
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
    if (fan_out(ctx, ops, call, route, param, r))
        return 1;
    int shard = target_shard(ctx, route, param);
    if (shard < 0 || ctx->ops->runs(ctx->gw, shard))
        return 0;
    char label[80], *q = NULL;
    int get = http__cache_route(route);
    snprintf(label, sizeof(label), "%s%s", get ? "GET " : "", http_route_name(route));
    if (get && !(q = query_body(call)))
        return http__oom(r), 1;
    struct http__fwd *f = fwd_new(ctx, call, r, 1);
    if (!f) {
        cJSON_free(q);
        return no_fwd(ctx, r);
    }
    start_part(ctx, ops, f, 0, shard, label, param, get ? q : body, get ? strlen(q) : len,
               route_timeout(ctx, route, j), 0);
    cJSON_free(q);
    return 1;
}

/* ---- running a forwarded command here -------------------------------------------------------- */

/* A command run for another node, from its handler's call until its answer is handed over. */
struct exec {
    struct http__wakeable wk; /* first: the pending table's token */
    struct http_call call;
    struct http_reply r;
    cJSON *query; /* a cache read: its query's values, as the forwarding node sent them */
    atomic_int refs;
    http_answer_fn *done;
    void *ud;
};

static void exec_release(struct exec *e)
{
    if (atomic_fetch_sub(&e->refs, 1) == 1) {
        http_reply_free(&e->r);
        cJSON_Delete(e->query);
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

static const char *exec_query(void *token, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(((struct exec *)token)->query, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/*
 * The route a forwarded label names: a command's (POST) label, or "GET <label>" for a cache
 * read (a GET and a POST may share a path). HTTP_ROUTE_NONE for any other.
 */
static enum http_route route_of(const char *label)
{
    int get = !strncmp(label, "GET ", 4);
    for (int i = HTTP_ROUTE_NONE + 1; i < HTTP_ROUTE_COUNT_; i++) {
        enum http_route rt = (enum http_route)i;
        if (!strcmp(http_route_name(rt), get ? label + 4 : label) &&
            (get ? http__cache_route(rt) : http__route_row(rt)->method == HTTP_POST))
            return rt;
    }
    return HTTP_ROUTE_NONE;
}

int http__execute(struct http_ctx *ctx, const char *route, const char *param, const char *body,
                  size_t len, http_answer_fn *done, void *ud)
{
    enum http_route rt = route ? route_of(route) : HTTP_ROUTE_NONE;
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
    if (rt != HTTP_ROUTE_NONE && http__cache_route(rt)) {
        e->query = cJSON_ParseWithLength(body ? body : "", len);
        e->call.query = exec_query;
    }
    if (rt == HTTP_ROUTE_NONE)
        http_reply_error(&e->r, 404, "not_found", "no such command route");
    else
        http_handle(ctx, &e->call, rt, param ? param : "", body ? body : "", len, &e->r);
    /* suspended with a waiter: the answer comes through exec_wake */
    if (!(e->call.suspended && e->call.waiter))
        exec_answer(e);
    exec_release(e);
    return 0;
}
