/*
 * tests/fuzz/fuzz_control.c: libFuzzer harness for the control API's request bodies: http_handle
 * (http/handlers.c) on the POST routes (reconnect, send, presence, voice state, members,
 * channel info, soundboard), with a fake gateway behind struct http_gateway_ops.
 *
 * Input: one byte picks the route; one byte of flags (bit 0: GUILD_MEMBERS intent, bit 1:
 * GUILD_PRESENCES, bit 2: only even shards run here, bits 3-4: the gateway's send answers 0,
 * SH_EAGAIN, SH_ECLOSED or SH_ETOOBIG, bit 5: shard 0 is ready); then the path parameter up to
 * a newline (at most 31 bytes); the rest is the body. What must hold whatever the bytes: every
 * answer is JSON (an error is {"error":{"code","message"}} with a 4xx or 5xx status, success
 * a 2xx object); a payload queued for the gateway is one JSON object {"op":N,"d":...} of at
 * most 4,096 bytes, never IDENTIFY (2) or RESUME (6), and goes to a shard that runs here; a
 * request that waits gets its answer from the pending table. A pending table (its worker
 * thread) lives for one input only, so inputs do not see each other. Owns nothing else.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "http/handlers.h"
#include "lib/errors.h"
#include "lib/log.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

#define TOTAL 4

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const enum http_route routes[] = {
    HTTP_ROUTE_RECONNECT, HTTP_ROUTE_SEND,         HTTP_ROUTE_PRESENCE,   HTTP_ROUTE_VOICE_STATE,
    HTTP_ROUTE_MEMBERS,   HTTP_ROUTE_CHANNEL_INFO, HTTP_ROUTE_SOUNDBOARD,
};

struct fake {
    unsigned flags;
    int sends, suspends, resumes;
};

static int runs(void *gw, int id)
{
    const struct fake *f = gw;
    return id >= 0 && id < TOTAL && (!(f->flags & 4) || id % 2 == 0);
}

static int fake_send(void *gw, int id, const char *payload, size_t len)
{
    struct fake *f = gw;
    CHECK(runs(gw, id));
    CHECK(len > 0 && len <= 4096 && strlen(payload) >= len);
    cJSON *j = cJSON_ParseWithLength(payload, len);
    CHECK(cJSON_IsObject(j));
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(j, "op");
    CHECK(cJSON_IsNumber(op) && op->valuedouble >= 0 && op->valuedouble <= 255);
    CHECK(op->valuedouble != 2 && op->valuedouble != 6);
    CHECK(cJSON_GetObjectItemCaseSensitive(j, "d") != NULL);
    cJSON_Delete(j);
    __atomic_add_fetch(&f->sends, 1, __ATOMIC_RELAXED);
    static const int answers[] = {SH_OK, SH_EAGAIN, SH_ECLOSED, SH_ETOOBIG};
    return answers[(f->flags >> 3) & 3];
}

static int fake_reconnect(void *gw, int id, int resume)
{
    CHECK(runs(gw, id) && (resume == 0 || resume == 1));
    return 0;
}

static int fake_shard_info(void *gw, int id, struct gw_shard_info *out)
{
    const struct fake *f = gw;
    if (!runs(gw, id))
        return SH_ENOTFOUND;
    memset(out, 0, sizeof(*out));
    out->id = id;
    out->status = id == 0 && (f->flags & 32) ? "ready" : "connecting";
    out->latency_ms = -1;
    return 0;
}

static int fake_snapshot(void *gw, struct gw_overview *ov, struct gw_shard_info *shards, int cap)
{
    memset(ov, 0, sizeof(*ov));
    ov->total = TOTAL;
    ov->next_identify_in_ms = ov->eta_ms = -1;
    int n = 0;
    for (int id = 0; id < TOTAL; id++) {
        if (!runs(gw, id))
            continue;
        if (n < cap)
            fake_shard_info(gw, id, &shards[n]);
        n++;
    }
    ov->n_shards = n;
    return n;
}

static int fake_total(void *gw)
{
    (void)gw;
    return TOTAL;
}

static const struct http_gateway_ops ops = {
    .send = fake_send,
    .reconnect = fake_reconnect,
    .snapshot = fake_snapshot,
    .shard_info = fake_shard_info,
    .total = fake_total,
    .runs = runs,
};

static void on_suspend(void *token)
{
    ((struct fake *)token)->suspends++;
}

static void on_resume(void *token)
{
    ((struct fake *)token)->resumes++;
}

static void on_wake(void *token)
{
    (void)token; /* the answer is collected after the table shuts down */
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    sh_log_level = SH_LOG_OFF;
    return 0;
}

static void check_answer(const struct http_reply *r)
{
    CHECK(r->status >= 200 && r->status <= 599);
    CHECK(r->body.len > 0 && !r->static_body);
    cJSON *j = cJSON_ParseWithLength(r->body.data, r->body.len);
    CHECK(cJSON_IsObject(j));
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (r->status >= 400) {
        CHECK(cJSON_IsObject(e));
        CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "code")));
        CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "message")));
    } else {
        CHECK(r->status < 300 && !e);
    }
    cJSON_Delete(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    enum http_route route = routes[data[0] % (sizeof(routes) / sizeof(routes[0]))];
    struct fake f = {.flags = data[1]};
    data += 2, size -= 2;
    char param[HTTP_PARAM_MAX];
    size_t pl = 0;
    while (pl < size && pl < sizeof(param) - 1 && data[pl] != '\n' && data[pl] != '\0')
        pl++;
    memcpy(param, data, pl);
    param[pl] = '\0';
    if (pl < size && (data[pl] == '\n' || data[pl] == '\0'))
        pl++;
    data += pl, size -= pl;
    /* a private copy of exactly the body: reads past it show under ASan */
    char *body = malloc(size ? size : 1);
    CHECK(body != NULL);
    memcpy(body, data, size);

    struct cfg_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.intents = 1 | (f.flags & 1 ? 1u << 1 : 0) | (f.flags & 2 ? 1u << 8 : 0);
    struct http_pending *pending = NULL;
    if (route == HTTP_ROUTE_MEMBERS || route == HTTP_ROUTE_CHANNEL_INFO ||
        route == HTTP_ROUTE_SOUNDBOARD) {
        struct http_pending_cfg pc = {
            .send = fake_send, .gw = &f, .wake = on_wake, .member_window_ms = 30000};
        CHECK(http_pending_new(&pc, &pending) == 0);
    }
    struct http_ctx ctx = {
        .cfg = &cfg, .ops = &ops, .gw = &f, .pending = pending, .request_timeout_ms = 5000};
    struct http_call call = {.token = &f, .suspend = on_suspend, .resume = on_resume};
    struct http_reply r;
    http_reply_init(&r);
    int suspended = http_handle(&ctx, &call, route, param, body, size, &r);
    CHECK(suspended == 0 || suspended == 1);
    CHECK(f.suspends == suspended && call.suspended == suspended);
    if (suspended && call.waiter) {
        /* waiting for Discord: shutting the table down answers it */
        CHECK(r.status == 0 && f.resumes == 0);
        http_pending_free(pending);
        pending = NULL;
        http_waiter_reply(call.waiter, &r);
        http_waiter_free(call.waiter);
    } else if (suspended) {
        CHECK(f.resumes == 1); /* it could not wait after all: the answer is in r */
    } else {
        CHECK(f.resumes == 0 && !call.waiter);
    }
    check_answer(&r);
    if (r.status == 202 && !suspended)
        CHECK(f.sends >= 1 || route == HTTP_ROUTE_RECONNECT || route == HTTP_ROUTE_PRESENCE);
    http_reply_free(&r);
    http_pending_free(pending);
    free(body);
    return 0;
}
