/*
 * tests/unit/test_cluster_coord.c: the coordination thread (cluster/coord.c, scan.c, move.c)
 * against a real redis-server (tests/unit/redis_server.h), two nodes in one process with a
 * 1000 ms lease and stub node ops that record hold/release/drain: a cold start splits 8 shards
 * 4/4; a node that dies (freed without stop: no handoff, no last words) has its shards taken over
 * after its lease, resumed from the checkpoint it wrote; a handoff moves a shard with a higher
 * fence and the target holds it from the final checkpoint without bumping it again; a checkpoint
 * refused for a stale fence releases the shard; a graceful stop hands every shard over; Redis
 * down then back releases nothing and moves nothing; idle nodes read no shard owner between
 * sweeps; a busy shard's checkpoint is written at most once a second; the entity cache's
 * snapshots (cluster/cache.c) are written only under the holder's fence and read back whole.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "cluster/redis.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/metrics.h"
#include "tests/unit/redis_server.h"
#include "tests/unit/test.h"

#define TOTAL 8

static struct t_redis srv;
static int srv_state; /* 0 not tried, 1 up, -1 not installed, -2 failed */
static char prefix[96];
static int lease_ms = 1000; /* the next started node's */

#define NEED_REDIS()                                                                               \
    do {                                                                                           \
        T_NEED_REDIS(srv, srv_state);                                                              \
        flush();                                                                                   \
    } while (0)

/* What the stub node ops saw. */
struct node {
    pthread_mutex_t mu;
    struct cfg_config cfg;
    struct cl_cluster *c;
    int held[TOTAL];
    int holds, releases, drains;
    char session[TOTAL][128];
    uint64_t seq[TOTAL];
    char blob[TOTAL][64];
    uint64_t final_seq; /* what the drain hands back as the final checkpoint */
    uint64_t deadline;
    uint64_t watch_after; /* deadlines past this before shard 3 is released count as early */
    int early_deadlines, released3;
};

static int op_hold(void *ud, const struct cl_checkpoint *cp)
{
    struct node *n = ud;
    pthread_mutex_lock(&n->mu);
    n->held[cp->shard] = 1;
    n->holds++;
    snprintf(n->session[cp->shard], sizeof(n->session[0]), "%s", cp->session_id);
    n->seq[cp->shard] = cp->seq;
    snprintf(n->blob[cp->shard], sizeof(n->blob[0]), "%.*s", (int)cp->blob_len,
             cp->blob ? cp->blob : "");
    pthread_mutex_unlock(&n->mu);
    return 0;
}

static void op_release(void *ud, int shard)
{
    struct node *n = ud;
    pthread_mutex_lock(&n->mu);
    n->held[shard] = 0;
    n->releases++;
    n->released3 |= shard == 3;
    pthread_mutex_unlock(&n->mu);
}

/* Closes at once and hands back the final checkpoint, as delivery would after its drain. */
static int op_drain(void *ud, int shard, int timeout_ms)
{
    struct node *n = ud;
    (void)timeout_ms;
    pthread_mutex_lock(&n->mu);
    n->drains++;
    uint64_t seq = n->final_seq;
    pthread_mutex_unlock(&n->mu);
    struct cl_checkpoint cp = {.shard = shard, .seq = seq, .blob = "final", .blob_len = 5};
    snprintf(cp.session_id, sizeof(cp.session_id), "sess-%d", shard);
    snprintf(cp.resume_url, sizeof(cp.resume_url), "wss://resume.example");
    cl_cluster_drained(n->c, shard, &cp);
    return 0;
}

static void op_deadline(void *ud, uint64_t until)
{
    struct node *n = ud;
    pthread_mutex_lock(&n->mu);
    n->deadline = until;
    if (n->watch_after && until > n->watch_after && !n->released3)
        n->early_deadlines++;
    pthread_mutex_unlock(&n->mu);
}

static int count_held(struct node *n)
{
    int k = 0;
    pthread_mutex_lock(&n->mu);
    for (int i = 0; i < TOTAL; i++)
        k += n->held[i];
    pthread_mutex_unlock(&n->mu);
    return k;
}

static int is_held(struct node *n, int shard)
{
    pthread_mutex_lock(&n->mu);
    int h = n->held[shard];
    pthread_mutex_unlock(&n->mu);
    return h;
}

static redisReply *cmd(const char *fmt, ...)
{
    redisContext *rc = t_redis_client(&srv);
    if (!rc)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    redisFree(rc);
    return r;
}

static void flush(void)
{
    redisReply *r = cmd("FLUSHALL");
    if (r)
        freeReplyObject(r);
}

/* Redis' count of calls of command (lower case) since the last CONFIG RESETSTAT (scripts'
   commands included); -1 unknown. */
static long calls(const char *command)
{
    redisReply *r = cmd("INFO commandstats");
    char want[64];
    snprintf(want, sizeof(want), "cmdstat_%s:calls=", command);
    const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, want) : NULL;
    long n = p ? atol(p + strlen(want)) : r ? 0 : -1;
    if (r)
        freeReplyObject(r);
    return n;
}

static void reset_stats(void)
{
    redisReply *r = cmd("CONFIG RESETSTAT");
    if (r)
        freeReplyObject(r);
}

/* A shard hash field as a string (into out). */
static const char *field(int shard, const char *name, char *out, size_t cap)
{
    redisReply *r = cmd("HGET %sshard:%d %s", prefix, shard, name);
    snprintf(out, cap, "%s", r && r->type == REDIS_REPLY_STRING ? r->str : "");
    if (r)
        freeReplyObject(r);
    return out;
}

static int start_node_total(struct node *n, const char *name, int total, char *err, size_t cap);

static int start_node(struct node *n, const char *name)
{
    char err[256];
    return start_node_total(n, name, TOTAL, err, sizeof(err));
}

static int start_node_total(struct node *n, const char *name, int total, char *err, size_t cap)
{
    static const struct cl_node_ops ops0 = {
        .hold = op_hold, .release = op_release, .drain = op_drain, .lease_deadline = op_deadline};
    memset(n, 0, sizeof(*n));
    pthread_mutex_init(&n->mu, NULL);
    n->cfg.token = "test-token";
    n->cfg.api_base = "http://127.0.0.1:9";
    n->cfg.cluster = 1;
    n->cfg.cluster_redis = srv.url;
    n->cfg.cluster_node = (char *)name;
    n->cfg.cluster_lease_ms = lease_ms;
    n->cfg.cluster_max_shards = 2000;
    n->cfg.testing_identify_interval_ms = 500;
    n->final_seq = 77;
    struct cl_node_ops ops = ops0;
    ops.ud = n;
    int ids[64];
    for (int i = 0; i < total && i < 64; i++)
        ids[i] = i;
    cl__key_prefix("test-token", prefix, sizeof(prefix));
    if (cl_cluster_new(&n->cfg, &ops, &n->c, err, cap))
        return -1;
    return cl_cluster_start(n->c, total, ids, total < 64 ? total : 64, 1, "hooks", err, cap);
}

static void end_node(struct node *n)
{
    cl_cluster_free(n->c);
    n->c = NULL;
    pthread_mutex_destroy(&n->mu);
}

/* Wait up to ms for cond; 1 when it held. */
#define WAIT_FOR(cond, ms)                                                                         \
    ({                                                                                             \
        uint64_t until_ = sh_now_ms() + (ms);                                                      \
        while (!(cond) && sh_now_ms() < until_)                                                    \
            t_redis_sleep_ms(20);                                                                  \
        (cond) ? 1 : 0;                                                                            \
    })

static struct node a, b;

/* Nodes a and b started and holding 4 shards each (else the test fails here). */
#define START_TWO()                                                                                \
    do {                                                                                           \
        ASSERT_EQ(start_node(&a, "node-a"), 0);                                                    \
        ASSERT_EQ(start_node(&b, "node-b"), 0);                                                    \
        ASSERT(WAIT_FOR(count_held(&a) == 4 && count_held(&b) == 4, 8000));                        \
    } while (0)

TEST(start_refuses_an_unreachable_redis_and_a_different_shard_total)
{
    NEED_REDIS();
    char err[256] = "";
    struct node z;
    memset(&z, 0, sizeof(z));
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", t_redis_free_port());
    struct cl_node_ops ops = {.hold = op_hold,
                              .release = op_release,
                              .drain = op_drain,
                              .lease_deadline = op_deadline,
                              .ud = &z};
    z.cfg.token = "test-token";
    z.cfg.cluster = 1;
    z.cfg.cluster_redis = url;
    z.cfg.cluster_node = "node-z";
    z.cfg.cluster_lease_ms = 1000;
    z.cfg.testing_identify_interval_ms = 500;
    int ids[1] = {0};
    ASSERT_EQ(cl_cluster_new(&z.cfg, &ops, &z.c, err, sizeof(err)), 0);
    int rc = cl_cluster_start(z.c, 1, ids, 1, 1, "hooks", err, sizeof(err));
    cl_cluster_free(z.c);
    ASSERT_EQ(rc, SH_ENET);
    ASSERT_CONTAINS(err, "cluster: cannot reach Redis at 127.0.0.1:");

    ASSERT_EQ(start_node(&a, "node-a"), 0);
    rc = start_node_total(&b, "node-b", 16, err, sizeof(err));
    int held_b = count_held(&b);
    end_node(&b);
    end_node(&a);
    ASSERT_EQ(rc, SH_ECONFIG);
    ASSERT_EQ(held_b, 0);
    char want[256];
    snprintf(want, sizeof(want),
             "cluster: this node's shard total 16 differs from the cluster's 8 (%smeta)", prefix);
    ASSERT_STR_EQ(err, want);
}

TEST(cold_start_splits_eight_shards_four_and_four)
{
    NEED_REDIS();
    ASSERT_EQ(start_node(&a, "node-a"), 0);
    ASSERT_EQ(start_node(&b, "node-b"), 0);
    int ok = WAIT_FOR(count_held(&a) + count_held(&b) == TOTAL, 8000);
    t_redis_sleep_ms(700); /* nothing more arrives */
    int ha = count_held(&a), hb = count_held(&b);
    char owner[64];
    int owned_a = 0;
    for (int i = 0; i < TOTAL; i++) {
        field(i, "owner", owner, sizeof(owner));
        owned_a += !strcmp(owner, "node-a");
        if (ok && strcmp(owner, is_held(&a, i) ? "node-a" : "node-b"))
            ok = 0;
    }
    struct cl_status st;
    cl_cluster_status(a.c, &st);
    end_node(&a);
    end_node(&b);
    ASSERT(ok);
    ASSERT_EQ(ha, 4);
    ASSERT_EQ(hb, 4);
    ASSERT_EQ(owned_a, 4);
    ASSERT_EQ(st.shards_held, 4);
    ASSERT_EQ(st.nodes_live, 2);
    ASSERT(!st.degraded);
}

TEST(a_dead_nodes_shards_are_taken_over_after_its_lease_from_its_checkpoint)
{
    NEED_REDIS();
    START_TWO();
    int s = 0;
    while (!is_held(&a, s))
        s++;
    struct cl_checkpoint cp = {.shard = s, .seq = 42, .blob = "blob-a", .blob_len = 6};
    snprintf(cp.session_id, sizeof(cp.session_id), "sess-a");
    snprintf(cp.resume_url, sizeof(cp.resume_url), "wss://r.example");
    cl_cluster_checkpoint(a.c, &cp);
    char v[64], fence0[32], fence1[32];
    ASSERT(WAIT_FOR(!strcmp(field(s, "seq", v, sizeof(v)), "42"), 3000));
    field(s, "fence", fence0, sizeof(fence0));
    int releases = a.releases;
    uint64_t died = sh_now_ms();
    struct sh_metric *takeovers = sh_metric_counter("shardhook_cluster_takeovers_total",
                                                    "Shards taken over from a node whose lease "
                                                    "ended",
                                                    NULL);
    double takeovers0 = sh_metric_value(takeovers);
    cl_cluster_free(a.c); /* dies: no handoff, the lease simply runs out */
    a.c = NULL;
    int ok = WAIT_FOR(count_held(&b) == TOTAL, 6000);
    uint64_t took = sh_now_ms() - died;
    field(s, "fence", fence1, sizeof(fence1));
    field(s, "owner", v, sizeof(v));
    end_node(&b);
    pthread_mutex_destroy(&a.mu);
    ASSERT(ok);
    ASSERT(took >= 700); /* not before the lease ran out */
    ASSERT_STR_EQ(v, "node-b");
    ASSERT_STR_EQ(b.session[s], "sess-a");
    ASSERT_EQ(b.seq[s], 42);
    ASSERT_STR_EQ(b.blob[s], "blob-a");
    ASSERT(strtoull(fence1, NULL, 10) > strtoull(fence0, NULL, 10));
    ASSERT_EQ(a.releases, releases); /* a dead node says nothing */
    ASSERT_EQ(sh_metric_value(takeovers) - takeovers0, 4);
}

TEST(a_node_restarted_under_its_name_takes_its_shards_back_at_once)
{
    NEED_REDIS();
    START_TWO();
    int mine[TOTAL];
    for (int i = 0; i < TOTAL; i++)
        mine[i] = is_held(&a, i);
    cl_cluster_free(a.c); /* crash ... */
    pthread_mutex_destroy(&a.mu);
    uint64_t t0 = sh_now_ms();
    ASSERT_EQ(start_node(&a, "node-a"), 0); /* ... and start again at once, a new epoch */
    int ok = WAIT_FOR(count_held(&a) == 4, 3000);
    uint64_t took = sh_now_ms() - t0;
    t_redis_sleep_ms(1500); /* past the old lease: nothing moves to node-b */
    int same = 1;
    for (int i = 0; i < TOTAL; i++)
        same &= is_held(&a, i) == mine[i];
    int hb = count_held(&b), holds_b = b.holds;
    end_node(&a);
    end_node(&b);
    ASSERT(ok);
    ASSERT(took < 900); /* before the old lease could run out */
    ASSERT(same);
    ASSERT_EQ(hb, 4);
    ASSERT_EQ(holds_b, 4);
}

TEST(handoff_moves_a_shard_with_a_higher_fence)
{
    NEED_REDIS();
    START_TWO();
    int s = 0;
    while (!is_held(&a, s))
        s++;
    char fence0[32], fence1[32], fence2[32], owner[64];
    field(s, "fence", fence0, sizeof(fence0));
    ASSERT_EQ(cl_cluster_handoff(a.c, s, "node-c"), SH_EINVAL);
    ASSERT_EQ(cl_cluster_handoff(b.c, s, "node-a"), SH_ENOTFOUND);
    ASSERT_EQ(cl_cluster_handoff(a.c, s, "node-b"), 0);
    int ok = WAIT_FOR(is_held(&b, s) && !is_held(&a, s), 4000);
    field(s, "fence", fence1, sizeof(fence1));
    field(s, "owner", owner, sizeof(owner));
    t_redis_sleep_ms(300);
    field(s, "fence", fence2, sizeof(fence2));
    int drains = a.drains;
    end_node(&a);
    end_node(&b);
    ASSERT(ok);
    ASSERT_EQ(drains, 1);
    ASSERT_STR_EQ(owner, "node-b");
    ASSERT(strtoull(fence1, NULL, 10) > strtoull(fence0, NULL, 10));
    ASSERT_STR_EQ(fence2, fence1); /* the target's claim changed nothing */
    char want[32];
    snprintf(want, sizeof(want), "sess-%d", s);
    ASSERT_STR_EQ(b.session[s], want);
    ASSERT_EQ(b.seq[s], 77); /* the drain's final checkpoint */
    ASSERT_STR_EQ(b.blob[s], "final");
}

TEST(a_checkpoint_refused_for_a_stale_fence_releases_the_shard)
{
    NEED_REDIS();
    ASSERT_EQ(start_node(&a, "node-a"), 0);
    ASSERT(WAIT_FOR(count_held(&a) == TOTAL, 8000));
    redisReply *r = cmd("SET %snode:node-z 5 PX 60000", prefix); /* a live node took it */
    if (r)
        freeReplyObject(r);
    r = cmd("HSET %sshard:3 owner node-z owner_epoch 5 fence 99999999999999999", prefix);
    if (r)
        freeReplyObject(r);
    struct cl_checkpoint cp = {.shard = 3, .seq = 5};
    cl_cluster_checkpoint(a.c, &cp);
    int ok = WAIT_FOR(!is_held(&a, 3), 3000);
    t_redis_sleep_ms(300);
    int held = count_held(&a);
    end_node(&a);
    ASSERT(ok);
    ASSERT_EQ(held, TOTAL - 1); /* the others stay */
}

TEST(after_a_lost_lease_a_shard_taken_meanwhile_is_let_go_before_the_deadline_moves)
{
    NEED_REDIS();
    ASSERT_EQ(start_node(&a, "node-a"), 0);
    ASSERT(WAIT_FOR(count_held(&a) == TOTAL, 8000));
    t_redis_sleep_ms(700); /* past the scan after the claims: the next is seconds away */
    /* the lease ran out and live node-z took shard 3 meanwhile; one transaction */
    redisContext *rc = t_redis_client(&srv);
    ASSERT(rc != NULL);
    redisAppendCommand(rc, "MULTI");
    redisAppendCommand(rc, "SET %snode:node-z 5 PX 60000", prefix);
    redisAppendCommand(rc, "HSET %snodes node-z {\"may\":\"\",\"max_shards\":0}", prefix);
    redisAppendCommand(rc, "HSET %sshard:3 owner node-z owner_epoch 5 fence 99999999999999999",
                       prefix);
    redisAppendCommand(rc, "DEL %snode:node-a", prefix);
    redisAppendCommand(rc, "EXEC");
    for (int i = 0; i < 6; i++) {
        redisReply *r = NULL;
        redisGetReply(rc, (void **)&r);
        if (r)
            freeReplyObject(r);
    }
    redisFree(rc);
    uint64_t t0 = sh_now_ms(); /* every renewal that still succeeded was sent before this */
    pthread_mutex_lock(&a.mu);
    a.watch_after = t0 + 1000;
    pthread_mutex_unlock(&a.mu);
    int ok = WAIT_FOR(!is_held(&a, 3), 3000);
    int moved = WAIT_FOR(a.deadline > t0 + 1000, 3000);
    t_redis_sleep_ms(300);
    int held = count_held(&a), early = a.early_deadlines;
    end_node(&a);
    ASSERT(ok);
    ASSERT(moved); /* registered again: the deadline moves on */
    ASSERT_EQ(early, 0);
    ASSERT_EQ(held, TOTAL - 1);
}

TEST(graceful_stop_hands_every_shard_over)
{
    NEED_REDIS();
    START_TWO();
    uint64_t t0 = sh_now_ms();
    cl_cluster_stop(a.c, 5000);
    uint64_t took = sh_now_ms() - t0;
    int ok = WAIT_FOR(count_held(&b) == TOTAL, 3000);
    int ha = count_held(&a);
    end_node(&a);
    end_node(&b);
    ASSERT(ok);
    ASSERT_EQ(ha, 0);
    ASSERT(took < 4000);
}

TEST(stop_with_no_other_node_keeps_ownership_and_writes_the_newest_checkpoint)
{
    NEED_REDIS();
    ASSERT_EQ(start_node(&a, "node-a"), 0);
    ASSERT(WAIT_FOR(count_held(&a) == TOTAL, 8000));
    struct cl_checkpoint cp = {.shard = 2, .seq = 9, .blob = "last", .blob_len = 4};
    snprintf(cp.session_id, sizeof(cp.session_id), "sess-2");
    cl_cluster_checkpoint(a.c, &cp);
    cl_cluster_stop(a.c, 2000); /* at once: the write is left to the stop */
    char seq[32], owner[64];
    field(2, "seq", seq, sizeof(seq));
    field(2, "owner", owner, sizeof(owner));
    redisReply *r = cmd("EXISTS %snode:node-a", prefix);
    long long exists = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r)
        freeReplyObject(r);
    int releases = a.releases, drains = a.drains;
    end_node(&a);
    ASSERT_STR_EQ(seq, "9");
    ASSERT_STR_EQ(owner, "node-a");
    ASSERT_EQ(exists, 1); /* the lease simply runs out: a restart takes the shards back */
    ASSERT_EQ(releases, 0);
    ASSERT_EQ(drains, 0);
}

TEST(redis_down_then_back_releases_and_moves_nothing)
{
    NEED_REDIS();
    START_TWO();
    t_redis_sleep_ms(300);
    pthread_mutex_lock(&a.mu);
    uint64_t deadline0 = a.deadline;
    int rel0 = a.releases + b.releases;
    pthread_mutex_unlock(&a.mu);
    t_redis_kill(&srv);
    struct cl_status st;
    int down = WAIT_FOR((cl_cluster_status(a.c, &st), st.degraded), 3000);
    t_redis_sleep_ms(1500); /* past the lease */
    pthread_mutex_lock(&a.mu);
    uint64_t deadline1 = a.deadline;
    pthread_mutex_unlock(&a.mu);
    int restarted = t_redis_restart(&srv) == 0;
    int up = WAIT_FOR((cl_cluster_status(a.c, &st), !st.degraded), 4000);
    t_redis_sleep_ms(1500);
    int ha = count_held(&a), hb = count_held(&b), rel = a.releases + b.releases;
    end_node(&a);
    end_node(&b);
    ASSERT(down);
    ASSERT(restarted);
    ASSERT(up);
    ASSERT(deadline1 == deadline0 || deadline1 < deadline0 + 400); /* not moved while down */
    ASSERT_EQ(ha, 4);
    ASSERT_EQ(hb, 4);
    ASSERT_EQ(rel, rel0);
}

/* Nothing changed (no lease ended, no node joined, nothing to claim or balance): no node reads
   the shards' owners until its sweep (every 3 leases). */
TEST(idle_nodes_read_the_owners_only_when_something_changed)
{
    NEED_REDIS();
    lease_ms = 4000; /* the sweep: every 12 s */
    int ok = start_node(&a, "node-a") == 0 && start_node(&b, "node-b") == 0;
    ok = ok && WAIT_FOR(count_held(&a) == 4 && count_held(&b) == 4, 10000);
    t_redis_sleep_ms(1500); /* the scans after the last claims */
    reset_stats();
    t_redis_sleep_ms(6000);
    long owner_reads = calls("hmget"), renewals = calls("evalsha");
    end_node(&a);
    end_node(&b);
    lease_ms = 1000;
    ASSERT(ok);
    ASSERT(renewals > 0); /* the nodes were alive and talking to Redis */
    ASSERT_EQ(owner_reads, 0);
}

/* A shard whose checkpoint moves 20 times a second is written at most once a second (each write
   runs the script's TIME once), and its newest checkpoint still arrives. */
TEST(a_busy_shards_checkpoints_are_written_at_most_once_a_second)
{
    NEED_REDIS();
    ASSERT_EQ(start_node(&a, "node-a"), 0);
    int ok = WAIT_FOR(count_held(&a) == TOTAL, 8000);
    t_redis_sleep_ms(700);
    reset_stats();
    uint64_t t0 = sh_now_ms();
    for (int k = 1; ok && k <= 40; k++) {
        struct cl_checkpoint cp = {.shard = 2, .seq = (uint64_t)k};
        snprintf(cp.session_id, sizeof(cp.session_id), "sess-busy");
        cl_cluster_checkpoint(a.c, &cp);
        t_redis_sleep_ms(50);
    }
    double secs = (double)(sh_now_ms() - t0) / 1000.0;
    char v[32];
    ok = ok && WAIT_FOR(!strcmp(field(2, "seq", v, sizeof(v)), "40"), 3000);
    long writes = calls("time");
    end_node(&a);
    ASSERT(ok);
    ASSERT(writes >= 2);
    ASSERT(writes <= (long)secs + 2); /* one a second, the first at once, the newest last */
}

TEST(cache_snapshots_are_written_under_the_holders_fence_and_read_back_whole)
{
    NEED_REDIS();
    ASSERT_EQ(start_node(&a, "node-a"), 0);
    ASSERT(WAIT_FOR(count_held(&a) == TOTAL, 8000));
    ASSERT_EQ(start_node(&b, "node-b"), 0);
    size_t big = (size_t)3 << 20; /* megabytes, NUL bytes inside */
    unsigned char *blob = malloc(big);
    ASSERT(blob);
    for (size_t i = 0; i < big; i++)
        blob[i] = (unsigned char)(i * 2654435761u >> 13);
    int put = cl_cluster_cache_put(a.c, 2, blob, big);
    struct sh_buf got;
    sh_buf_init(&got, (size_t)16 << 20);
    int get = cl_cluster_cache_get(b.c, 2, &got); /* any node reads it */
    int same = get == 0 && got.len == big && !memcmp(got.data, blob, big);
    sh_buf_reset(&got);
    int none = cl_cluster_cache_get(a.c, 5, &got);
    int not_mine = cl_cluster_cache_put(b.c, 0, "x", 1); /* b holds nothing */
    int too_big = cl_cluster_cache_put(a.c, 1, "x", CL_CACHE_MAX_BYTES + 1);
    redisReply *r = cmd("HSET %sshard:3 fence 99999999999999999", prefix); /* moved on */
    if (r)
        freeReplyObject(r);
    int fenced = cl_cluster_cache_put(a.c, 3, "stale", 5);
    r = cmd("EXISTS %scache:3", prefix);
    long long exists3 = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r)
        freeReplyObject(r);
    sh_buf_init(&got, 16); /* a reader's cap holds */
    int capped = cl_cluster_cache_get(a.c, 2, &got);
    sh_buf_free(&got);
    free(blob);
    end_node(&b);
    end_node(&a);
    ASSERT_EQ(put, 0);
    ASSERT(same);
    ASSERT_EQ(none, SH_ENOTFOUND);
    ASSERT_EQ(not_mine, SH_EFENCED);
    ASSERT_EQ(too_big, SH_ETOOBIG);
    ASSERT_EQ(fenced, SH_EFENCED);
    ASSERT_EQ(exists3, 0);
    ASSERT_EQ(capped, SH_ETOOBIG);
}

int main(void)
{
    RUN(start_refuses_an_unreachable_redis_and_a_different_shard_total);
    RUN(cold_start_splits_eight_shards_four_and_four);
    RUN(a_dead_nodes_shards_are_taken_over_after_its_lease_from_its_checkpoint);
    RUN(a_node_restarted_under_its_name_takes_its_shards_back_at_once);
    RUN(handoff_moves_a_shard_with_a_higher_fence);
    RUN(a_checkpoint_refused_for_a_stale_fence_releases_the_shard);
    RUN(after_a_lost_lease_a_shard_taken_meanwhile_is_let_go_before_the_deadline_moves);
    RUN(graceful_stop_hands_every_shard_over);
    RUN(stop_with_no_other_node_keeps_ownership_and_writes_the_newest_checkpoint);
    RUN(redis_down_then_back_releases_and_moves_nothing);
    RUN(idle_nodes_read_the_owners_only_when_something_changed);
    RUN(a_busy_shards_checkpoints_are_written_at_most_once_a_second);
    RUN(cache_snapshots_are_written_under_the_holders_fence_and_read_back_whole);
    t_redis_stop(&srv);
    printf("%d passed, %d failed", t_passed, t_failed);
    if (t_skipped)
        printf(", %d skipped", t_skipped);
    printf("\n");
    return t_failed ? 1 : 0;
}
