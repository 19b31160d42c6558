/*
 * tests/unit/test_cluster_identify.c: cluster/identify.c, the identify ops backed by Redis,
 * against a real redis-server (tests/unit/redis_server.h), with the coordination thread's pass
 * (cl__identify_serve) called by the test: the gateway's wait() never waits on Redis, a granted
 * slot answers 0 once, a slot another node holds answers its PTTL plus jitter, the reserve
 * refuses and stops take() until a refresh, a refresh after the reset re-reads /gateway/bot (a
 * loopback stand-in) and writes the new period to Redis, lost sessions reach the gaps stream,
 * requests survive a Redis outage, and stop() ends a refresh with done() exactly once.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster/identify.h"
#include "cluster/redis.h"
#include "config/config.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "tests/unit/redis_server.h"
#include "tests/unit/test.h"

static struct t_redis srv;
static int srv_state;

#define NEED_REDIS() T_NEED_REDIS(srv, srv_state)

/* ---- a one-request /gateway/bot on loopback ---- */

struct bot_srv {
    int fd, port;
    const char *body;
    pthread_t th;
};

static void *bot_main(void *arg)
{
    struct bot_srv *v = arg;
    int c = accept(v->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    char buf[4096];
    size_t have = 0;
    while (have < sizeof(buf) - 1 && !strstr(buf, "\r\n\r\n")) {
        ssize_t n = recv(c, buf + have, sizeof(buf) - 1 - have, 0);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = '\0';
    }
    char resp[1024];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                     "%zu\r\nConnection: close\r\n\r\n%s",
                     strlen(v->body), v->body);
    if (send(c, resp, (size_t)n, MSG_NOSIGNAL) < 0)
        perror("send");
    close(c);
    return NULL;
}

static int bot_start(struct bot_srv *v)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    v->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (v->fd < 0 || bind(v->fd, (struct sockaddr *)&a, sizeof(a)) || listen(v->fd, 4) ||
        getsockname(v->fd, (struct sockaddr *)&a, &al))
        return -1;
    v->port = ntohs(a.sin_port);
    return pthread_create(&v->th, NULL, bot_main, v);
}

static void bot_end(struct bot_srv *v)
{
    shutdown(v->fd, SHUT_RDWR);
    pthread_join(v->th, NULL);
    close(v->fd);
}

/* ---- helpers ---- */

struct node {
    struct cfg_config cfg;
    char api_base[128];
    struct cl__identify *id;
    struct gw_identify ops;
    struct cl__redis *r;
    atomic_int wakes;
};

static void on_wake(void *arg)
{
    atomic_fetch_add(&((struct node *)arg)->wakes, 1);
}

/* A node named name of the bot whose token is token; its Redis connected when connect. */
static int node_new(struct node *n, const char *token, const char *name, int bot_port, int connect)
{
    memset(n, 0, sizeof(*n));
    snprintf(n->api_base, sizeof(n->api_base), "http://127.0.0.1:%d/api/v10", bot_port);
    n->cfg.api_base = n->api_base;
    n->cfg.token = (char *)token;
    n->cfg.testing_identify_interval_ms = 500; /* the slot's PX: 1000 */
    n->cfg.cluster = 1;
    n->cfg.cluster_node = (char *)name;
    n->cfg.shards.mode = CFG_SHARDS_TOTAL;
    n->cfg.shards.total = 8;
    char err[256];
    if (cl__identify_new(&n->cfg, &n->id) || cl__redis_new(srv.url, 1000, &n->r, err, sizeof(err)))
        return -1;
    cl__identify_ops(n->id, &n->ops);
    cl__identify_set_wake(n->id, on_wake, n);
    return connect ? cl__redis_connect(n->r) : 0;
}

static void node_free(struct node *n)
{
    if (n->ops.ops)
        n->ops.ops->stop(n->ops.ud);
    cl__identify_free(n->id);
    cl__redis_free(n->r);
}

static int start(struct node *n, int max_concurrency, int remaining, uint64_t reset_after_ms)
{
    struct gw_bot_info bot = {.shards = 8,
                              .session_total = 1000,
                              .session_remaining = remaining,
                              .reset_after_ms = reset_after_ms,
                              .max_concurrency = max_concurrency};
    return n->ops.ops->start(n->ops.ud, max_concurrency, &bot);
}

static uint64_t wait_for(struct node *n, int shard)
{
    return n->ops.ops->wait(n->ops.ud, shard, sh_now_ms());
}

/* wait(), a coordination pass, wait() again: the answer. */
static uint64_t ask(struct node *n, int shard)
{
    uint64_t first = wait_for(n, shard);
    if (first != 50)
        return first;
    if (cl__identify_serve(n->id, n->r))
        return 99999;
    return wait_for(n, shard);
}

static char *redis_get(char *out, size_t cap, const char *cmd, const char *key, const char *field)
{
    redisContext *c = t_redis_client(&srv);
    out[0] = '\0';
    redisReply *rep = c ? (field ? redisCommand(c, "%s %s %s", cmd, key, field)
                                 : redisCommand(c, "%s %s", cmd, key))
                        : NULL;
    if (rep && rep->type == REDIS_REPLY_STRING)
        snprintf(out, cap, "%s", rep->str);
    if (rep)
        freeReplyObject(rep);
    if (c)
        redisFree(c);
    return out;
}

static void redis_do(const char *cmd)
{
    redisContext *c = t_redis_client(&srv);
    redisReply *rep = c ? redisCommand(c, cmd) : NULL;
    if (rep)
        freeReplyObject(rep);
    if (c)
        redisFree(c);
}

struct rec {
    atomic_int calls;
    atomic_int rc;
};

static void on_done(void *arg, int rc)
{
    struct rec *r = arg;
    atomic_store(&r->rc, rc);
    atomic_fetch_add(&r->calls, 1);
}

/* ---- tests ---- */

TEST(grant_once_busy_answers_pttl)
{
    NEED_REDIS();
    struct node a, b;
    char buf[64], prefix[64], k[128];
    ASSERT_EQ(node_new(&a, "tok-grant", "n1", 1, 1), 0);
    ASSERT_EQ(node_new(&b, "tok-grant", "n2", 1, 1), 0);
    cl__key_prefix("tok-grant", prefix, sizeof(prefix));
    ASSERT_EQ(start(&a, 2, 900, 3600000), 0);
    ASSERT_EQ(start(&b, 2, 900, 3600000), 0);
    /* the first wait() only posts the request: the gateway never waits on Redis */
    int wakes = atomic_load(&a.wakes);
    ASSERT_EQ(wait_for(&a, 0), 50);
    ASSERT_EQ(cl__identify_pending(a.id), 1);
    ASSERT(atomic_load(&a.wakes) > wakes);
    ASSERT_EQ(wait_for(&a, 0), 50);
    ASSERT_EQ(cl__identify_serve(a.id, a.r), 0);
    ASSERT_EQ(cl__identify_pending(a.id), 0);
    ASSERT_EQ(wait_for(&a, 0), 0); /* granted, once */
    snprintf(k, sizeof(k), "%sidslot:0", prefix);
    ASSERT_STR_EQ(redis_get(buf, sizeof(buf), "GET", k, NULL), "n1:0");
    /* node b's shard 2 is in bucket 0: busy, its PTTL (<= 1000) plus jitter (<= 250) */
    uint64_t w = ask(&b, 2);
    ASSERT(w >= 1 && w <= 1250);
    ASSERT(w >= 250); /* most of the 1000 ms slot is left */
    /* bucket 1 is free for b */
    ASSERT_EQ(ask(&b, 1), 0);
    snprintf(k, sizeof(k), "%sidslot:1", prefix);
    ASSERT_STR_EQ(redis_get(buf, sizeof(buf), "GET", k, NULL), "n2:1");
    /* each grant spent one session of the shared budget */
    snprintf(k, sizeof(k), "%sbudget", prefix);
    ASSERT_STR_EQ(redis_get(buf, sizeof(buf), "HGET", k, "remaining"), "898");
    struct gw_budget bud;
    b.ops.ops->budget(b.ops.ud, &bud);
    ASSERT_EQ(bud.total, 1000);
    ASSERT_EQ(bud.remaining, 898);
    ASSERT_EQ(bud.reserve, 50); /* max(8 shards, 5 % of 1000) */
    ASSERT(bud.reset_at_ms > sh_now_ms() + 3500000);
    /* a slot that expired is free again */
    t_redis_sleep_ms(1100);
    ASSERT_EQ(ask(&b, 2), 0);
    node_free(&a);
    node_free(&b);
}

TEST(reserve_refuses_then_refresh_clears)
{
    NEED_REDIS();
    struct node a;
    char buf[64], prefix[64], k[160];
    ASSERT_EQ(node_new(&a, "tok-reserve", "n1", 1, 1), 0);
    cl__key_prefix("tok-reserve", prefix, sizeof(prefix));
    ASSERT_EQ(start(&a, 4, 52, 3600000), 0); /* reserve 50: two IDENTIFYs left */
    ASSERT_EQ(a.ops.ops->take(a.ops.ud), 0);
    ASSERT_EQ(ask(&a, 0), 0);
    ASSERT_EQ(ask(&a, 1), 0);
    ASSERT_EQ(ask(&a, 2), GW_IDENTIFY_REFUSED);
    snprintf(k, sizeof(k), "%sidslot:2", prefix);
    ASSERT_STR_EQ(redis_get(buf, sizeof(buf), "GET", k, NULL), ""); /* no slot taken */
    snprintf(k, sizeof(k), "%sbudget", prefix);
    ASSERT_STR_EQ(redis_get(buf, sizeof(buf), "HGET", k, "remaining"), "50");
    /* stopped: take() refuses, and wait() refuses at once without asking Redis */
    ASSERT_EQ(a.ops.ops->take(a.ops.ud), SH_EAGAIN);
    ASSERT_EQ(wait_for(&a, 3), GW_IDENTIFY_REFUSED);
    ASSERT_EQ(cl__identify_pending(a.id), 0);
    struct gw_budget bud;
    int stopped = 0;
    uint64_t reset_wall = 0;
    cl__identify_status(a.id, &bud, &stopped, &reset_wall);
    ASSERT_EQ(stopped, 1);
    ASSERT_EQ(bud.remaining, 50);
    ASSERT_EQ(bud.reserve, 50);
    ASSERT(reset_wall > sh_wall_ms() + 3500000);
    /* a refresh that finds the budget still at its reserve keeps the stop */
    struct rec r = {0, 0};
    ASSERT_EQ(a.ops.ops->refresh(a.ops.ud, on_done, &r), 0);
    ASSERT_EQ(a.ops.ops->refresh(a.ops.ud, on_done, &r), SH_EAGAIN);
    ASSERT_EQ(atomic_load(&r.calls), 0); /* nothing until the coordination pass */
    ASSERT_EQ(cl__identify_serve(a.id, a.r), 0);
    ASSERT_EQ(atomic_load(&r.calls), 1);
    ASSERT_EQ(atomic_load(&r.rc), 0);
    ASSERT_EQ(a.ops.ops->take(a.ops.ud), SH_EAGAIN);
    /* another node wrote a fuller budget: the next refresh lifts the stop */
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "HSET %sbudget remaining 400", prefix);
    redis_do(cmd);
    ASSERT_EQ(a.ops.ops->refresh(a.ops.ud, on_done, &r), 0);
    ASSERT_EQ(cl__identify_serve(a.id, a.r), 0);
    ASSERT_EQ(atomic_load(&r.calls), 2);
    ASSERT_EQ(a.ops.ops->take(a.ops.ud), 0);
    cl__identify_status(a.id, &bud, &stopped, NULL);
    ASSERT_EQ(stopped, 0);
    ASSERT_EQ(bud.remaining, 400);
    ASSERT_EQ(ask(&a, 2), 0);
    node_free(&a);
}

TEST(refresh_after_reset_reads_gateway_bot)
{
    NEED_REDIS();
    struct bot_srv v = {.body =
                            "{\"url\":\"ws://127.0.0.1:1\",\"shards\":8,\"session_start_limit\":"
                            "{\"total\":1000,\"remaining\":700,\"reset_after\":60000,"
                            "\"max_concurrency\":1}}"};
    ASSERT_EQ(bot_start(&v), 0);
    struct node a;
    char buf[64], prefix[64], k[160];
    ASSERT_EQ(node_new(&a, "tok-reset", "n1", v.port, 1), 0);
    cl__key_prefix("tok-reset", prefix, sizeof(prefix));
    ASSERT_EQ(start(&a, 1, 10, 0), 0); /* the period already ended */
    ASSERT_EQ(cl__identify_serve(a.id, a.r), 0);
    struct rec r = {0, 0};
    ASSERT_EQ(a.ops.ops->refresh(a.ops.ud, on_done, &r), 0);
    for (int i = 0; i < 1000 && !atomic_load(&r.calls); i++) {
        ASSERT_EQ(cl__identify_serve(a.id, a.r), 0);
        t_redis_sleep_ms(10);
    }
    ASSERT_EQ(atomic_load(&r.calls), 1);
    ASSERT_EQ(atomic_load(&r.rc), 0);
    snprintf(k, sizeof(k), "%sbudget", prefix);
    ASSERT_STR_EQ(redis_get(buf, sizeof(buf), "HGET", k, "remaining"), "700");
    struct gw_budget bud;
    a.ops.ops->budget(a.ops.ud, &bud);
    ASSERT_EQ(bud.remaining, 700);
    ASSERT(bud.reset_at_ms > sh_now_ms() + 50000);
    node_free(&a);
    bot_end(&v);
}

TEST(lost_sessions_reach_gaps)
{
    NEED_REDIS();
    struct node a;
    char prefix[64], k[160];
    ASSERT_EQ(node_new(&a, "tok-gaps", "n7", 1, 1), 0);
    cl__key_prefix("tok-gaps", prefix, sizeof(prefix));
    ASSERT(a.ops.ops->lost != NULL);
    a.ops.ops->lost(a.ops.ud, 5, "sess-5", 77, "session_timed_out");
    ASSERT_EQ(cl__identify_pending(a.id), 1);
    ASSERT_EQ(cl__identify_serve(a.id, a.r), 0);
    ASSERT_EQ(cl__identify_pending(a.id), 0);
    snprintf(k, sizeof(k), "%sgaps", prefix);
    redisContext *c = t_redis_client(&srv);
    ASSERT(c != NULL);
    redisReply *rep = redisCommand(c, "XRANGE %s - +", k);
    ASSERT(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1);
    redisReply *f = rep->element[0]->element[1];
    ASSERT_STR_EQ(f->element[1]->str, "5");
    ASSERT_STR_EQ(f->element[3]->str, "sess-5");
    ASSERT_STR_EQ(f->element[5]->str, "77");
    ASSERT_STR_EQ(f->element[7]->str, "session_timed_out");
    ASSERT_STR_EQ(f->element[9]->str, "n7");
    freeReplyObject(rep);
    redisFree(c);
    node_free(&a);
}

TEST(requests_survive_redis_outage)
{
    NEED_REDIS();
    struct node a;
    ASSERT_EQ(node_new(&a, "tok-outage", "n1", 1, 0), 0); /* not connected: Redis is "down" */
    ASSERT_EQ(start(&a, 1, 900, 3600000), 0);
    a.ops.ops->lost(a.ops.ud, 1, "s", 1, "invalid_session");
    uint64_t t0 = sh_now_ms();
    for (int i = 0; i < 20; i++)
        ASSERT_EQ(wait_for(&a, 0), 50);
    ASSERT(sh_now_ms() - t0 < 500); /* never blocks */
    ASSERT_EQ(cl__identify_serve(a.id, a.r), SH_ENET);
    ASSERT_EQ(cl__identify_pending(a.id), 1);
    ASSERT_EQ(wait_for(&a, 0), 50);
    /* Redis back: the queued request, budget and gap go through */
    ASSERT_EQ(cl__redis_connect(a.r), 0);
    ASSERT_EQ(cl__identify_serve(a.id, a.r), 0);
    ASSERT_EQ(wait_for(&a, 0), 0);
    ASSERT_EQ(cl__identify_pending(a.id), 0);
    char buf[64], prefix[64], k[160];
    cl__key_prefix("tok-outage", prefix, sizeof(prefix));
    snprintf(k, sizeof(k), "%sbudget", prefix);
    ASSERT_STR_EQ(redis_get(buf, sizeof(buf), "HGET", k, "remaining"), "899");
    node_free(&a);
}

TEST(stop_ends_refresh_with_done_once)
{
    NEED_REDIS();
    struct node a;
    ASSERT_EQ(node_new(&a, "tok-stop", "n1", 1, 1), 0);
    ASSERT_EQ(start(&a, 1, 900, 3600000), 0);
    struct rec r = {0, 0};
    ASSERT_EQ(a.ops.ops->refresh(a.ops.ud, on_done, &r), 0);
    a.ops.ops->stop(a.ops.ud);
    ASSERT_EQ(atomic_load(&r.calls), 1);
    ASSERT_EQ(atomic_load(&r.rc), SH_ECLOSED);
    ASSERT_EQ(cl__identify_serve(a.id, a.r), 0);
    ASSERT_EQ(atomic_load(&r.calls), 1);
    ASSERT_EQ(a.ops.ops->refresh(a.ops.ud, on_done, &r), SH_ECLOSED);
    ASSERT_EQ(a.ops.ops->take(a.ops.ud), SH_EAGAIN);
    a.ops.ops->stop(a.ops.ud); /* idempotent */
    node_free(&a);
}

TEST(stop_server)
{
    if (srv_state == 1)
        t_redis_stop(&srv);
    srv_state = 0;
}

TEST_MAIN(RUN(grant_once_busy_answers_pttl); RUN(reserve_refuses_then_refresh_clears);
          RUN(refresh_after_reset_reads_gateway_bot); RUN(lost_sessions_reach_gaps);
          RUN(requests_survive_redis_outage); RUN(stop_ends_refresh_with_done_once);
          RUN(stop_server);)
