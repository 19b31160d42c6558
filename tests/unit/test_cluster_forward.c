/*
 * tests/unit/test_cluster_forward.c: forwarded control commands without a network: a command
 * encoded as cmd stream fields decodes to what was sent (body bytes included), a reply entry
 * decodes to its answer or `moved`, malformed entries are refused; the answers of a presence or
 * soundboard request split by owner merge as one node answers. Against a real redis-server
 * (tests/unit/redis_server.h), the forwarding worker of a started node that may hold no shard:
 * a command whose owner answers `moved` is asked once more of the owner the shard hash names
 * now, with its new fence, and the requester gets that owner's answer once; a second `moved`
 * answers 503 owner_unreachable naming the owner, without a third try. The owners are stub
 * threads reading cmd:<name> and answering on reply:<from> as cluster/forward.c's owning side
 * does.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cluster/forward.h"
#include "cluster/redis.h"
#include "config/config.h"
#include "http/forward.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "tests/unit/redis_server.h"
#include "test.h"

/* A hiredis array of n string replies (what XREAD gives for an entry's fields). */
struct fields {
    redisReply top;
    redisReply items[32];
    redisReply *ptrs[32];
};

static void make_fields(struct fields *f, const char **argv, const size_t *lens, int n)
{
    memset(f, 0, sizeof(*f));
    f->top.type = REDIS_REPLY_ARRAY;
    f->top.elements = (size_t)n;
    f->top.element = f->ptrs;
    for (int i = 0; i < n; i++) {
        f->items[i].type = REDIS_REPLY_STRING;
        f->items[i].str = (char *)argv[i];
        f->items[i].len = lens[i];
        f->ptrs[i] = &f->items[i];
    }
}

TEST(a_command_round_trips_through_stream_fields)
{
    static const char body[] = "{\"op\":3,\"d\":{\"status\":\"idle\"}}";
    struct cl__api_cmd in = {.fence = 1732900000123456ULL,
                             .shard = 7,
                             .timeout_ms = 12000,
                             .body = body,
                             .len = sizeof(body) - 1};
    strcpy(in.id, "42:1");
    strcpy(in.from, "node-b");
    strcpy(in.route, "/v1/shards/{id}/send");
    strcpy(in.param, "7");
    const char *argv[32];
    size_t lens[32];
    char bufs[96];
    int n = cl__api_encode(&in, argv, lens, bufs, sizeof(bufs));
    ASSERT_EQ(n, 18);
    ASSERT_STR_EQ(argv[0], "type");
    ASSERT_STR_EQ(argv[1], "api");
    struct fields f;
    make_fields(&f, argv, lens, n);
    struct cl__api_cmd out;
    ASSERT_EQ(cl__api_decode(&f.top, &out), 0);
    ASSERT_STR_EQ(out.id, "42:1");
    ASSERT_STR_EQ(out.from, "node-b");
    ASSERT_STR_EQ(out.route, "/v1/shards/{id}/send");
    ASSERT_STR_EQ(out.param, "7");
    ASSERT(out.fence == 1732900000123456ULL);
    ASSERT_EQ(out.shard, 7);
    ASSERT_EQ(out.timeout_ms, 12000);
    ASSERT_EQ((int)out.len, (int)(sizeof(body) - 1));
    ASSERT(!memcmp(out.body, body, out.len));
    /* without its requester there is nobody to answer: refused */
    make_fields(&f, argv, lens, 4);
    ASSERT_EQ(cl__api_decode(&f.top, &out), SH_EINVAL);
}

TEST(a_reply_decodes_to_its_answer_or_moved)
{
    const char *a[] = {"id", "42:1", "status", "429", "retry_after", "1", "body", "{\"x\":1}"};
    size_t la[8];
    for (int i = 0; i < 8; i++)
        la[i] = strlen(a[i]);
    struct fields f;
    make_fields(&f, a, la, 8);
    char id[64];
    struct cl_answer ans;
    int moved = -1;
    ASSERT_EQ(cl__answer_decode(&f.top, id, sizeof(id), &ans, &moved), 0);
    ASSERT_STR_EQ(id, "42:1");
    ASSERT_EQ(ans.status, 429);
    ASSERT_STR_EQ(ans.retry_after, "1");
    ASSERT_EQ((int)ans.len, 7);
    ASSERT_EQ(moved, 0);
    const char *m[] = {"id", "42:2", "moved", "1", "retry_after", "", "body", ""};
    size_t lm[8];
    for (int i = 0; i < 8; i++)
        lm[i] = strlen(m[i]);
    make_fields(&f, m, lm, 8);
    ASSERT_EQ(cl__answer_decode(&f.top, id, sizeof(id), &ans, &moved), 0);
    ASSERT_EQ(moved, 1);
    const char *bad[] = {"id", "42:3", "status", "abc"};
    size_t lb[4] = {2, 4, 6, 3};
    make_fields(&f, bad, lb, 4);
    ASSERT_EQ(cl__answer_decode(&f.top, id, sizeof(id), &ans, &moved), SH_EINVAL);
}

static struct http__part part(int status, const char *ra, const char *body)
{
    struct http__part p = {.status = status, .body = body, .len = strlen(body)};
    strcpy(p.retry_after, ra);
    return p;
}

TEST(presence_parts_merge_their_shards_or_say_what_was_queued)
{
    struct http__part ok[] = {part(202, "", "{\"shards\":[3,1]}"),
                              part(202, "", "{\"shards\":[0,2]}")};
    struct http__part out;
    char *body = NULL;
    ASSERT_EQ(http__merge_answers(ok, 2, NULL, &out, &body), 0);
    ASSERT_EQ(out.status, 202);
    ASSERT_STR_EQ(body, "{\"shards\":[0,1,2,3]}");
    cJSON_free(body);
    struct http__part mixed[] = {
        part(202, "", "{\"shards\":[0]}"),
        part(429, "1",
             "{\"error\":{\"code\":\"send_queue_full\",\"message\":\"m\"},\"queued\":[2]}"),
        part(202, "", "{\"shards\":[3]}")};
    ASSERT_EQ(http__merge_answers(mixed, 3, NULL, &out, &body), 0);
    ASSERT_EQ(out.status, 429);
    ASSERT_STR_EQ(out.retry_after, "1");
    ASSERT_STR_EQ(body, "{\"error\":{\"code\":\"send_queue_full\",\"message\":\"m\"},"
                        "\"queued\":[0,2,3]}");
    cJSON_free(body);
    struct http__part junk[] = {part(200, "", "not json")};
    ASSERT_EQ(http__merge_answers(junk, 1, NULL, &out, &body), SH_EINVAL);
}

TEST(soundboard_parts_merge_in_the_requests_order_with_partial_results)
{
    cJSON *order = cJSON_Parse("[\"30\",\"10\",\"20\"]");
    struct http__part ok[] = {
        part(200, "", "{\"guilds\":[{\"guild_id\":\"10\"},{\"guild_id\":\"20\"}]}"),
        part(200, "", "{\"guilds\":[{\"guild_id\":\"30\"}]}")};
    struct http__part out;
    char *body = NULL;
    ASSERT_EQ(http__merge_answers(ok, 2, order, &out, &body), 0);
    ASSERT_EQ(out.status, 200);
    ASSERT_STR_EQ(body, "{\"guilds\":[{\"guild_id\":\"30\"},{\"guild_id\":\"10\"},"
                        "{\"guild_id\":\"20\"}]}");
    cJSON_free(body);
    struct http__part part504[] = {
        part(200, "", "{\"guilds\":[{\"guild_id\":\"30\"}]}"),
        part(504, "",
             "{\"error\":{\"code\":\"timeout\",\"message\":\"m\"},\"guilds\":[{\"guild_id\":"
             "\"10\"}],\"missing\":[\"20\"]}")};
    ASSERT_EQ(http__merge_answers(part504, 2, order, &out, &body), 0);
    ASSERT_EQ(out.status, 504);
    ASSERT_STR_EQ(body, "{\"error\":{\"code\":\"timeout\",\"message\":\"m\"},\"guilds\":[{"
                        "\"guild_id\":\"30\"},{\"guild_id\":\"10\"}],\"missing\":[\"20\"]}");
    cJSON_free(body);
    cJSON_Delete(order);
}

/* ---- a `moved` answer, against a real Redis ----------------------------------------------------
 */

#define FWD_TOTAL 4
#define ANSWER "{\"shards\":[0]}"

static struct t_redis srv;
static int srv_state; /* 0 not tried, 1 up, -1 not installed, -2 failed */
static char prefix[96];

#define NEED_REDIS() T_NEED_REDIS(srv, srv_state)

/* One command on the test's own connection; the reply, or NULL. */
static redisReply *rcmd(redisContext *rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    return r;
}

static long long rint_of(redisContext *rc, const char *fmt, const char *arg)
{
    redisReply *r = rcmd(rc, fmt, prefix, arg);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r)
        freeReplyObject(r);
    return v;
}

enum stub_mode {
    STUB_MOVE_TO_REAL, /* the shard hash is rewritten to owner "real", fence 11, then `moved` */
    STUB_MOVE_LATER,   /* `moved` first, the rewrite 400 ms later (a handoff still passing) */
    STUB_MOVED,        /* `moved` */
    STUB_ANSWER,       /* 202 ANSWER */
};

/* A node that owns nothing here but reads cmd:<name> and answers as forward.c's owner does. */
struct stub {
    const char *name;
    enum stub_mode mode;
    pthread_t thread;
    pthread_mutex_t mu;
    int quit, got;
    uint64_t fence[4];
    char id[4][64], route[4][64], param[4][128], body[4][128];
};

static void move_to_real(redisContext *rc, int shard)
{
    redisReply *r = rcmd(rc, "HSET %sshard:%d owner real owner_epoch 2 fence 11", prefix, shard);
    if (r)
        freeReplyObject(r);
}

static void stub_reply(redisContext *rc, struct stub *s, const struct cl__api_cmd *cmd)
{
    if (s->mode == STUB_MOVE_TO_REAL)
        move_to_real(rc, cmd->shard);
    char key[256];
    snprintf(key, sizeof(key), "%sreply:%s", prefix, cmd->from);
    int moved = s->mode != STUB_ANSWER;
    const char *argv[] = {"XADD",
                          key,
                          "*",
                          "id",
                          cmd->id,
                          moved ? "moved" : "status",
                          moved ? "1" : "202",
                          "retry_after",
                          "",
                          "body",
                          moved ? "" : ANSWER};
    redisReply *r = redisCommandArgv(rc, 11, argv, NULL);
    if (r)
        freeReplyObject(r);
    if (s->mode == STUB_MOVE_LATER) {
        t_redis_sleep_ms(400);
        move_to_real(rc, cmd->shard);
    }
}

static void stub_entry(redisContext *rc, struct stub *s, const redisReply *fields)
{
    struct cl__api_cmd cmd;
    if (cl__api_decode(fields, &cmd))
        return;
    pthread_mutex_lock(&s->mu);
    int k = s->got++;
    if (k < 4) {
        s->fence[k] = cmd.fence;
        snprintf(s->id[k], sizeof(s->id[k]), "%s", cmd.id);
        snprintf(s->route[k], sizeof(s->route[k]), "%s", cmd.route);
        snprintf(s->param[k], sizeof(s->param[k]), "%s", cmd.param);
        snprintf(s->body[k], sizeof(s->body[k]), "%.*s", (int)cmd.len, cmd.body);
    }
    pthread_mutex_unlock(&s->mu);
    stub_reply(rc, s, &cmd);
}

static void *stub_main(void *arg)
{
    struct stub *s = arg;
    redisContext *rc = t_redis_client(&srv);
    char last[64] = "0-0";
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int quit = s->quit;
        pthread_mutex_unlock(&s->mu);
        if (quit || !rc)
            break;
        redisReply *r =
            rcmd(rc, "XREAD COUNT 16 BLOCK 50 STREAMS %scmd:%s %s", prefix, s->name, last);
        if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
            const redisReply *entries = r->element[0]->element[1];
            for (size_t i = 0; i < entries->elements; i++) {
                snprintf(last, sizeof(last), "%s", entries->element[i]->element[0]->str);
                stub_entry(rc, s, entries->element[i]->element[1]);
            }
        }
        if (r)
            freeReplyObject(r);
    }
    if (rc)
        redisFree(rc);
    return NULL;
}

/* What the requester's done() saw. */
struct rec {
    pthread_mutex_t mu;
    int calls, status;
    char body[512];
};

static void on_done(void *ud, int status, const char *retry_after, const char *body, size_t len)
{
    struct rec *r = ud;
    (void)retry_after;
    pthread_mutex_lock(&r->mu);
    r->calls++;
    r->status = status;
    snprintf(r->body, sizeof(r->body), "%.*s", (int)len, body);
    pthread_mutex_unlock(&r->mu);
}

static int calls_of(struct rec *r)
{
    pthread_mutex_lock(&r->mu);
    int n = r->calls;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static int op_hold(void *ud, const struct cl_checkpoint *cp)
{
    (void)ud, (void)cp;
    return 0;
}

static void op_release(void *ud, int shard)
{
    (void)ud, (void)shard;
}

static int op_drain(void *ud, int shard, int timeout_ms)
{
    (void)ud, (void)shard, (void)timeout_ms;
    return 0;
}

/* One forward of shard 0, first owned by "ghost" (which moves it to "real"), real in mode. */
struct outcome {
    int setup; /* 0 when everything started */
    struct rec rec;
    struct stub ghost, real;
    long long cmds_ghost, cmds_real;
};

static void run_moved(enum stub_mode ghost_mode, enum stub_mode real_mode, struct outcome *o)
{
    memset(o, 0, sizeof(*o));
    pthread_mutex_init(&o->rec.mu, NULL);
    struct stub *stubs[] = {&o->ghost, &o->real};
    o->ghost.name = "ghost", o->ghost.mode = ghost_mode;
    o->real.name = "real", o->real.mode = real_mode;
    cl__key_prefix("test-token", prefix, sizeof(prefix));
    redisContext *rc = t_redis_client(&srv);
    o->setup = rc ? 0 : -1;
    redisReply *r = rc ? rcmd(rc, "FLUSHALL") : NULL;
    if (r)
        freeReplyObject(r);
    r = rc ? rcmd(rc, "HSET %sshard:0 owner ghost owner_epoch 1 fence 10", prefix) : NULL;
    if (r)
        freeReplyObject(r);
    for (int i = 0; i < 2; i++) {
        pthread_mutex_init(&stubs[i]->mu, NULL);
        if (!o->setup && pthread_create(&stubs[i]->thread, NULL, stub_main, stubs[i]))
            o->setup = -1;
    }
    struct cfg_config cfg = {.token = "test-token",
                             .api_base = "http://127.0.0.1:9",
                             .cluster = 1,
                             .cluster_redis = srv.url,
                             .cluster_node = "asker",
                             .cluster_lease_ms = 2000,
                             .cluster_max_shards = 2000,
                             .testing_identify_interval_ms = 500};
    struct cl_node_ops ops = {.hold = op_hold, .release = op_release, .drain = op_drain};
    struct cl_cluster *c = NULL;
    char err[256];
    int none[1] = {0};
    static const char body[] = "{\"op\":3,\"d\":{\"status\":\"idle\"}}";
    struct cl_forward fw = {.shard = 0,
                            .route = "/v1/shards/{id}/send",
                            .param = "0",
                            .body = body,
                            .len = sizeof(body) - 1,
                            .timeout_ms = 5000};
    /* a node that may hold no shard: nothing of shard 0 is claimed or written by it */
    if (!o->setup && (cl_cluster_new(&cfg, &ops, &c, err, sizeof(err)) ||
                      cl_cluster_start(c, FWD_TOTAL, none, 0, 1, "hooks", err, sizeof(err)) ||
                      cl_cluster_forward(c, &fw, on_done, &o->rec)))
        o->setup = -1;
    uint64_t until = sh_now_ms() + 8000;
    while (!o->setup && !calls_of(&o->rec) && sh_now_ms() < until)
        t_redis_sleep_ms(10);
    if (!o->setup)
        t_redis_sleep_ms(300); /* a second done() or a third try would show by now */
    if (rc) {
        o->cmds_ghost = rint_of(rc, "XLEN %scmd:%s", "ghost");
        o->cmds_real = rint_of(rc, "XLEN %scmd:%s", "real");
        redisFree(rc);
    }
    if (c) {
        cl_cluster_stop(c, 1000);
        cl_cluster_free(c);
    }
    for (int i = 0; i < 2; i++) {
        pthread_mutex_lock(&stubs[i]->mu);
        stubs[i]->quit = 1;
        pthread_mutex_unlock(&stubs[i]->mu);
        if (stubs[i]->thread)
            pthread_join(stubs[i]->thread, NULL);
        pthread_mutex_destroy(&stubs[i]->mu);
    }
    pthread_mutex_destroy(&o->rec.mu);
}

TEST(a_moved_command_is_asked_once_more_of_the_new_owner)
{
    NEED_REDIS();
    static struct outcome o;
    run_moved(STUB_MOVE_TO_REAL, STUB_ANSWER, &o);
    ASSERT_EQ(o.setup, 0);
    /* the requester got the new owner's answer, once */
    ASSERT_EQ(o.rec.calls, 1);
    ASSERT_EQ(o.rec.status, 202);
    ASSERT_STR_EQ(o.rec.body, ANSWER);
    /* ghost was asked with the fence it held; real once, with its own fence, the same command */
    ASSERT_EQ(o.ghost.got, 1);
    ASSERT_EQ(o.real.got, 1);
    ASSERT(o.ghost.fence[0] == 10);
    ASSERT(o.real.fence[0] == 11);
    ASSERT_STR_EQ(o.real.id[0], o.ghost.id[0]);
    ASSERT_STR_EQ(o.real.route[0], "/v1/shards/{id}/send");
    ASSERT_STR_EQ(o.real.param[0], "0");
    ASSERT_STR_EQ(o.real.body[0], "{\"op\":3,\"d\":{\"status\":\"idle\"}}");
    ASSERT_EQ(o.cmds_ghost, 1);
    ASSERT_EQ(o.cmds_real, 1);
}

TEST(a_second_moved_answers_owner_unreachable_without_a_third_try)
{
    NEED_REDIS();
    static struct outcome o;
    run_moved(STUB_MOVE_TO_REAL, STUB_MOVED, &o);
    ASSERT_EQ(o.setup, 0);
    ASSERT_EQ(o.rec.calls, 1);
    ASSERT_EQ(o.rec.status, 503);
    cJSON *j = cJSON_Parse(o.rec.body);
    cJSON *code = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "code");
    cJSON *owner = cJSON_GetObjectItem(j, "owner");
    int ok = cJSON_IsString(code) && !strcmp(code->valuestring, "owner_unreachable") &&
             cJSON_IsString(owner) && !strcmp(owner->valuestring, "real");
    cJSON_Delete(j);
    if (!ok)
        T_FAIL_("not a 503 owner_unreachable naming \"real\": %s", o.rec.body);
    ASSERT_EQ(o.ghost.got, 1);
    ASSERT_EQ(o.real.got, 1);
    ASSERT_EQ(o.cmds_ghost, 1);
    ASSERT_EQ(o.cmds_real, 1);
}

/* A handoff: the old owner answers `moved` before Redis names the new one; the retry waits. */
TEST(a_moved_command_waits_until_the_new_owner_is_named)
{
    NEED_REDIS();
    static struct outcome o;
    run_moved(STUB_MOVE_LATER, STUB_ANSWER, &o);
    ASSERT_EQ(o.setup, 0);
    ASSERT_EQ(o.rec.calls, 1);
    ASSERT_EQ(o.rec.status, 202);
    ASSERT_STR_EQ(o.rec.body, ANSWER);
    ASSERT_EQ(o.ghost.got, 1); /* not asked again while it was still named */
    ASSERT_EQ(o.real.got, 1);
    ASSERT(o.real.fence[0] == 11);
    ASSERT_EQ(o.cmds_ghost, 1);
    ASSERT_EQ(o.cmds_real, 1);
}

TEST(stop_server)
{
    if (srv_state == 1)
        t_redis_stop(&srv);
    srv_state = 0;
}

TEST_MAIN(RUN(a_command_round_trips_through_stream_fields);
          RUN(a_reply_decodes_to_its_answer_or_moved);
          RUN(presence_parts_merge_their_shards_or_say_what_was_queued);
          RUN(soundboard_parts_merge_in_the_requests_order_with_partial_results);
          RUN(a_moved_command_is_asked_once_more_of_the_new_owner);
          RUN(a_second_moved_answers_owner_unreachable_without_a_third_try);
          RUN(a_moved_command_waits_until_the_new_owner_is_named); RUN(stop_server);)
