/*
 * http/action.c: a webhook's action (docs/delivery.md, "Acting from the response") run through
 * the very handler of the control API's route for it, without an HTTP request: the action's
 * `type` names the route, its `guild_id` or `shard` is the path parameter, its `body` the
 * request body. So an action is checked, built and sent exactly as the API would, and its
 * result is the status the API would answer. A members action suspends like the route does;
 * its answer (merged by the pending table as the API merges it) goes to the caller's callback
 * as the `d` of a SHARDHOOK_MEMBERS event. Owns only the members actions that wait.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "http/internal.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/snowflake.h"

#define NONCE_MAX 32 /* bytes of a members action's nonce, echoed in its event */

/* The action types: the route each one runs and the member that is its path parameter. */
static const struct kind {
    const char *type;
    enum http_route route;
    const char *param; /* NULL: the route has none */
} kinds[] = {
    {"presence", HTTP_ROUTE_PRESENCE, NULL},
    {"voice_state", HTTP_ROUTE_VOICE_STATE, "guild_id"},
    {"members", HTTP_ROUTE_MEMBERS, "guild_id"},
    {"send", HTTP_ROUTE_SEND, "shard"},
};

/* A members action from the handler's call until its answer is handed over. */
struct waiting {
    struct http__wakeable wk; /* first: the pending table's token */
    struct http_call call;
    atomic_int refs; /* the runner, and the wake-up (or resume) once suspended */
    struct http_action_to to;
    uint64_t guild_id;
    int shard;
    char nonce[NONCE_MAX + 1];
};

static void release(struct waiting *w)
{
    if (atomic_fetch_sub(&w->refs, 1) == 1)
        free(w);
}

/* The handler suspends before it creates the waiter: one more reference for its end. */
static void on_suspend(void *token)
{
    struct waiting *w = token;
    atomic_fetch_add(&w->refs, 1);
}

/* No waiter was created after all (the error is in the runner's reply). */
static void on_resume(void *token)
{
    release(token);
}

/* {"guild_id":..,"nonce":..,"status":S, ...} from the API's answer body (200: the member list). */
static int members_d(const struct waiting *w, int status, const char *body, size_t len,
                     struct sh_buf *out)
{
    cJSON *nonce = w->nonce[0] ? cJSON_CreateString(w->nonce) : NULL;
    char *nj = nonce ? cJSON_PrintUnformatted(nonce) : NULL;
    cJSON_Delete(nonce);
    int rc = sh_buf_printf(out, "{\"guild_id\":\"%" PRIu64 "\"%s%s,\"status\":%d", w->guild_id,
                           nj ? ",\"nonce\":" : "", nj ? nj : "", status);
    cJSON_free(nj);
    /* the answer's own members after its '{', without the guild_id said above */
    cJSON *j = rc ? NULL : cJSON_ParseWithLength(body, len);
    cJSON_DeleteItemFromObjectCaseSensitive(j, "guild_id");
    for (const cJSON *it = j ? j->child : NULL; it && !rc; it = it->next) {
        char *v = cJSON_PrintUnformatted(it);
        cJSON *k = cJSON_CreateString(it->string);
        char *kj = k ? cJSON_PrintUnformatted(k) : NULL;
        rc = v && kj ? sh_buf_printf(out, ",%s:%s", kj, v) : SH_ENOMEM;
        cJSON_free(v);
        cJSON_free(kj);
        cJSON_Delete(k);
    }
    cJSON_Delete(j);
    return rc ? rc : sh_buf_append(out, "}", 1);
}

/* The pending table finished the members request: hand its answer over, once. */
static void on_wake(struct http__wakeable *wk)
{
    struct waiting *w = (struct waiting *)wk;
    struct http_reply r;
    http_reply_init(&r);
    http_waiter_reply(w->call.waiter, &r);
    http_waiter_free(w->call.waiter);
    struct sh_buf d;
    sh_buf_init(&d, HTTP_MAX_ANSWER + 256);
    int rc = members_d(w, r.status, r.body.data ? r.body.data : "{}", r.body.len, &d);
    if (rc) {
        static struct sh_log_limit lim;
        log_error_limited(&lim,
                          "msg=\"a members action's answer could not be built; not delivered\" "
                          "guild=%" PRIu64 " error=\"%s\"",
                          w->guild_id, sh_strerror(rc));
    } else {
        w->to.members(w->to.ud, w->to.tag, w->shard, d.data, d.len);
    }
    sh_buf_free(&d);
    http_reply_free(&r);
    release(w);
}

static const struct kind *kind_of(const cJSON *type)
{
    for (size_t i = 0; cJSON_IsString(type) && i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (!strcmp(type->valuestring, kinds[i].type))
            return &kinds[i];
    return NULL;
}

/* The path parameter as the route would see it in the URL; 1 with the 400 in *r. */
static int action_param(const struct kind *k, const cJSON *a, char *param, size_t cap,
                        struct http_reply *r)
{
    param[0] = '\0';
    if (!k->param)
        return 0;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(a, k->param);
    if (!p)
        return http__refuse(r, 400, "missing_field", "%s: required for a \"%s\" action", k->param,
                            k->type);
    if (cJSON_IsString(p))
        snprintf(param, cap, "%s", p->valuestring);
    else if (cJSON_IsNumber(p) && k->route == HTTP_ROUTE_SEND)
        snprintf(param, cap, "%.17g", p->valuedouble);
    else
        snprintf(param, cap, "?"); /* the route's own check names it */
    return 0;
}

/* The action's members beside body; 1 with the 400 in *r. */
static int action_fields(const struct kind *k, const cJSON *a, const cJSON **body, char *nonce,
                         struct http_reply *r)
{
    const char *allowed[5];
    size_t n_allowed = 0;
    allowed[n_allowed++] = "type";
    allowed[n_allowed++] = "body";
    if (k->param)
        allowed[n_allowed++] = k->param;
    if (k->route == HTTP_ROUTE_MEMBERS)
        allowed[n_allowed++] = "nonce";
    allowed[n_allowed] = NULL;
    if (http__unknown_fields(a, allowed, r))
        return 1;
    *body = cJSON_GetObjectItemCaseSensitive(a, "body");
    if (*body && !cJSON_IsObject(*body))
        return http__refuse(r, 400, "invalid_body", "body: must be a JSON object");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(a, "nonce");
    if (n && (!cJSON_IsString(n) || strlen(n->valuestring) > NONCE_MAX))
        return http__bad_field(r, "nonce", "a string of at most 32 bytes");
    snprintf(nonce, NONCE_MAX + 1, "%s", n ? n->valuestring : "");
    return 0;
}

/* "code: message" of an error answer into msg. */
static void error_text(const struct http_reply *r, char *msg, size_t cap)
{
    cJSON *j = r->body.data ? cJSON_ParseWithLength(r->body.data, r->body.len) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
    snprintf(msg, cap, "%s: %s", cJSON_IsString(c) ? c->valuestring : "error",
             cJSON_IsString(m) ? m->valuestring : "no message");
    cJSON_Delete(j);
}

/* Check the action's own members, then run the route's handler; its answer is in *r. */
static void run_handler(struct http_ctx *ctx, const struct kind *k, const cJSON *a,
                        struct waiting *w, struct http_reply *r)
{
    char param[64];
    const cJSON *body = NULL;
    if (action_fields(k, a, &body, w->nonce, r) || action_param(k, a, param, sizeof(param), r))
        return;
    if (k->route == HTTP_ROUTE_MEMBERS && !sh_parse_snowflake(param, strlen(param), &w->guild_id))
        w->shard = http__guild_shard(ctx, w->guild_id);
    struct http_req rq = {.param = param, .body = body, .call = &w->call};
    http__route_row(k->route)->handle(ctx, &rq, r);
}

int http__action_run(struct http_ctx *ctx, const cJSON *action, const struct http_action_to *to,
                     const char **type, char *msg, size_t cap)
{
    struct http_reply r;
    http_reply_init(&r);
    msg[0] = '\0';
    const struct kind *k = kind_of(cJSON_GetObjectItemCaseSensitive(action, "type"));
    *type = k ? k->type : "unknown";
    struct waiting *w = k ? calloc(1, sizeof(*w)) : NULL;
    if (!cJSON_IsObject(action)) {
        http_reply_error(&r, 400, "invalid_action", "an action must be a JSON object");
    } else if (!k) {
        http_reply_error(&r, 400, "invalid_type",
                         "type: one of \"presence\", \"voice_state\", \"members\", \"send\"");
    } else if (!w) {
        http__oom(&r);
    } else {
        w->wk.wake = on_wake;
        atomic_init(&w->refs, 1);
        w->to = *to;
        /* local: an action runs here or answers as single-node mode does, never forwarded */
        w->call =
            (struct http_call){.token = w, .suspend = on_suspend, .resume = on_resume, .local = 1};
        run_handler(ctx, k, action, w, &r);
    }
    /* suspended with no answer: the waiter exists and answers through on_wake */
    int status = !r.status && w && w->call.suspended ? 202 : r.status;
    if (status < 200 || status > 299)
        error_text(&r, msg, cap);
    if (w)
        release(w);
    http_reply_free(&r);
    return status;
}

void http__wake(void *token)
{
    struct http__wakeable *wk = token;
    wk->wake(wk);
}
