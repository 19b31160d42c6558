/*
 * tests/unit/test_identify.c: the single-process identify source (gw_identify_local_new,
 * gateway/identify.c) through the gw_identify_ops table the gateway calls: buckets per shard,
 * the session budget reserved, given back and spent, and the re-read from /gateway/bot on its
 * own thread. A small loopback HTTP server plays /gateway/bot: it answers, or takes the request
 * and never answers, so the test can check that stop() ends a re-read in flight and joins its
 * thread: after stop() returns, the request is gone from the wire and done() never runs again.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "config/config.h"
#include "gateway/gateway.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "tests/unit/test.h"

/* ---- a one-request /gateway/bot on loopback ---- */

struct srv {
    int fd, port;
    int stall;        /* 1: read the request, never answer */
    const char *body; /* the answer otherwise */
    pthread_t th;
    atomic_int got_request;   /* the request's headers are in */
    atomic_int client_closed; /* the client hung up (recv returned 0 or an error) */
    atomic_int quit;
};

static void *srv_main(void *arg)
{
    struct srv *v = arg;
    int c = accept(v->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    char buf[4096];
    size_t have = 0;
    while (have < sizeof(buf) - 1) {
        ssize_t n = recv(c, buf + have, sizeof(buf) - 1 - have, 0);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            break;
    }
    atomic_store(&v->got_request, 1);
    if (!v->stall) {
        char resp[1024];
        int n = snprintf(resp, sizeof(resp),
                         "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                         strlen(v->body), v->body);
        if (send(c, resp, (size_t)n, MSG_NOSIGNAL) < 0)
            perror("send");
    }
    /* wait for the client to hang up (or the test to end) */
    while (!atomic_load(&v->quit)) {
        struct pollfd p = {c, POLLIN, 0};
        if (poll(&p, 1, 50) > 0) {
            ssize_t n = recv(c, buf, sizeof(buf), 0);
            if (n <= 0) {
                atomic_store(&v->client_closed, 1);
                break;
            }
        }
    }
    close(c);
    return NULL;
}

static int srv_start(struct srv *v)
{
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    v->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (v->fd < 0 || bind(v->fd, (struct sockaddr *)&a, sizeof(a)) || listen(v->fd, 4) ||
        getsockname(v->fd, (struct sockaddr *)&a, &al))
        return -1;
    v->port = ntohs(a.sin_port);
    return pthread_create(&v->th, NULL, srv_main, v);
}

static void srv_end(struct srv *v)
{
    atomic_store(&v->quit, 1);
    shutdown(v->fd, SHUT_RDWR); /* ends an accept that never got a client */
    pthread_join(v->th, NULL);
    close(v->fd);
}

/* ---- helpers ---- */

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

static int wait_flag(atomic_int *flag, int ms)
{
    for (int i = 0; i < ms / 10 && !atomic_load(flag); i++)
        usleep(10000);
    return atomic_load(flag);
}

static char api_base[128];

static void make_cfg(struct cfg_config *cfg, int port)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(api_base, sizeof(api_base), "http://127.0.0.1:%d/api/v10", port);
    cfg->api_base = api_base;
    cfg->token = "test-token";
    cfg->testing_identify_interval_ms = 5000;
}

static const struct gw_bot_info spent_bot = {.url = "ws://127.0.0.1:1",
                                             .shards = 1,
                                             .session_total = 1000,
                                             .session_remaining = 0,
                                             .reset_after_ms = 0,
                                             .max_concurrency = 1};

/* ---- tests ---- */

TEST(buckets_are_per_shard_modulo_max_concurrency)
{
    struct cfg_config cfg;
    make_cfg(&cfg, 1);
    struct gw_identify id;
    ASSERT_EQ(gw_identify_local_new(&cfg, &id), 0);
    const struct gw_identify_ops *o = id.ops;
    struct gw_bot_info bot = spent_bot;
    ASSERT_EQ(o->start(id.ud, 2, &bot), 0);
    ASSERT_EQ(o->plan(id.ud, 0, 100), 100);
    ASSERT_EQ(o->plan(id.ud, 1, 100), 100);  /* another bucket */
    ASSERT_EQ(o->plan(id.ud, 2, 100), 5100); /* bucket 0 again: an interval later */
    ASSERT_EQ(o->wait(id.ud, 0, 1000), 0);
    o->stamp(id.ud, 0, 1000);
    ASSERT_EQ(o->wait(id.ud, 0, 1000), 5100);
    ASSERT_EQ(o->wait(id.ud, 4, 6000), 100); /* shard 4 shares bucket 0 */
    ASSERT_EQ(o->wait(id.ud, 1, 1000), 0);
    gw_identify_local_free(&id);
}

TEST(budget_is_reserved_given_back_and_spent)
{
    struct cfg_config cfg;
    make_cfg(&cfg, 1);
    struct gw_identify id;
    ASSERT_EQ(gw_identify_local_new(&cfg, &id), 0);
    const struct gw_identify_ops *o = id.ops;
    struct gw_bot_info bot = spent_bot;
    bot.session_remaining = 2;
    bot.reset_after_ms = 60000;
    uint64_t before = sh_now_ms();
    ASSERT_EQ(o->start(id.ud, 1, &bot), 0);
    struct gw_budget b;
    o->budget(id.ud, &b);
    ASSERT_EQ(b.total, 1000);
    ASSERT_EQ(b.remaining, 2);
    ASSERT(b.reset_at_ms >= before + 60000 && b.reset_at_ms <= sh_now_ms() + 60000);
    ASSERT_EQ(o->take(id.ud), 0);
    ASSERT_EQ(o->take(id.ud), 0);
    ASSERT_EQ(o->take(id.ud), SH_EAGAIN);
    o->give_back(id.ud);
    ASSERT_EQ(o->take(id.ud), 0);
    o->spend(id.ud); /* nothing left: stays at 0 */
    o->budget(id.ud, &b);
    ASSERT_EQ(b.remaining, 0);
    gw_identify_local_free(&id);
}

TEST(refresh_reads_the_budget_from_gateway_bot)
{
    struct srv v = {.body = "{\"url\":\"ws://127.0.0.1:1\",\"shards\":1,\"session_start_limit\":"
                            "{\"total\":1000,\"remaining\":7,\"reset_after\":60000,"
                            "\"max_concurrency\":1}}"};
    ASSERT_EQ(srv_start(&v), 0);
    struct cfg_config cfg;
    make_cfg(&cfg, v.port);
    struct gw_identify id;
    ASSERT_EQ(gw_identify_local_new(&cfg, &id), 0);
    const struct gw_identify_ops *o = id.ops;
    struct gw_bot_info bot = spent_bot;
    ASSERT_EQ(o->start(id.ud, 1, &bot), 0);
    ASSERT_EQ(o->take(id.ud), SH_EAGAIN);
    struct rec r = {0, 0};
    ASSERT_EQ(o->refresh(id.ud, on_done, &r), 0);
    ASSERT(wait_flag(&r.calls, 10000));
    ASSERT_EQ(atomic_load(&r.rc), 0);
    struct gw_budget b;
    o->budget(id.ud, &b);
    ASSERT_EQ(b.remaining, 7);
    ASSERT_EQ(b.total, 1000);
    ASSERT(b.reset_at_ms > sh_now_ms() + 50000);
    ASSERT_EQ(o->take(id.ud), 0);
    o->stop(id.ud);
    ASSERT_EQ(atomic_load(&r.calls), 1);
    gw_identify_local_free(&id);
    srv_end(&v);
}

/*
 * SIGTERM during a re-read: the gateway calls stop() before it frees itself. The re-read must be
 * over when stop() returns (its done() ran once, its request is gone), and stop() must not wait
 * for the request's 15 s timeout.
 */
TEST(stop_ends_a_refresh_in_flight_and_joins_it)
{
    struct srv v = {.stall = 1};
    ASSERT_EQ(srv_start(&v), 0);
    struct cfg_config cfg;
    make_cfg(&cfg, v.port);
    struct gw_identify id;
    ASSERT_EQ(gw_identify_local_new(&cfg, &id), 0);
    const struct gw_identify_ops *o = id.ops;
    struct gw_bot_info bot = spent_bot;
    ASSERT_EQ(o->start(id.ud, 1, &bot), 0);
    struct rec r = {0, 0};
    ASSERT_EQ(o->refresh(id.ud, on_done, &r), 0);
    ASSERT(wait_flag(&v.got_request, 10000));
    ASSERT_EQ(o->take(id.ud), SH_EAGAIN); /* nothing is taken while the budget is re-read */
    uint64_t t0 = sh_now_ms();
    o->stop(id.ud);
    uint64_t took = sh_now_ms() - t0;
    /* done() ran before stop() returned, with the stop as its result */
    ASSERT_EQ(atomic_load(&r.calls), 1);
    ASSERT_EQ(atomic_load(&r.rc), SH_ECLOSED);
    ASSERT(took < 5000);
    /* the request is gone from the wire, not left to a thread that outlives the gateway */
    ASSERT(wait_flag(&v.client_closed, 2000));
    usleep(200000);
    ASSERT_EQ(atomic_load(&r.calls), 1);
    struct gw_budget b;
    o->budget(id.ud, &b);
    ASSERT_EQ(b.remaining, 0);
    ASSERT_EQ(o->refresh(id.ud, on_done, &r), SH_ECLOSED); /* none starts after stop */
    o->stop(id.ud);                                        /* idempotent */
    gw_identify_local_free(&id);
    srv_end(&v);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    RUN(buckets_are_per_shard_modulo_max_concurrency);
    RUN(budget_is_reserved_given_back_and_spent);
    RUN(refresh_reads_the_budget_from_gateway_bot);
    RUN(stop_ends_a_refresh_in_flight_and_joins_it);
    curl_global_cleanup();
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}
