/*
 * tests/unit/test_cluster_redis.c: cluster/redis.c and the scripts of cluster/scripts/ against a
 * real redis-server that the test starts (tests/unit/redis_server.h): the URL forms, AUTH, SELECT
 * and the unix socket, the bound on a dead Redis, NOSCRIPT after a flush or a restart, and each
 * script's guarantee (stale fence refused, live owner kept, own older epoch taken at once, fence
 * past Redis TIME, busy identify slot answering its PTTL, the reserve refusing, the budget only
 * going down within a period).
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "cluster/redis.h"
#include "config/redis_url.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "tests/unit/redis_server.h"
#include "tests/unit/test.h"

#define P "shardhook:{t}:"

static struct t_redis srv;
static int srv_state; /* 0 not tried, 1 up, -1 not installed, -2 failed */

/* The shared server, started once; SKIP when redis-server is missing. */
#define NEED_REDIS()                                                                               \
    do {                                                                                           \
        if (!srv_state)                                                                            \
            srv_state = t_redis_start(&srv, "s3cret-pw") == 0 ? 1 : t_redis_installed() ? -2 : -1; \
        if (srv_state == -1)                                                                       \
            SKIP("redis-server is not installed");                                                 \
        ASSERT_EQ(srv_state, 1);                                                                   \
    } while (0)

static struct cl__redis *connect_srv(void)
{
    struct cl__redis *r = NULL;
    char err[256];
    if (cl__redis_new(srv.url, 1000, &r, err, sizeof(err)))
        return NULL;
    if (cl__redis_connect(r)) {
        cl__redis_free(r);
        return NULL;
    }
    return r;
}

/* Run script s: nkeys keys then the arguments, a NULL-terminated list of strings. */
static redisReply *run(struct cl__redis *r, enum cl__script s, int nkeys, ...)
{
    const char *argv[32];
    int argc = 0;
    va_list ap;
    va_start(ap, nkeys);
    for (const char *a; argc < 32 && (a = va_arg(ap, const char *));)
        argv[argc++] = a;
    va_end(ap);
    return cl__redis_script(r, s, nkeys, argc, argv, NULL);
}

static long long integer_of(redisReply *rep)
{
    long long v = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -999;
    if (rep)
        freeReplyObject(rep);
    return v;
}

static long long cmd_int(struct cl__redis *r, const char *fmt, const char *arg)
{
    return integer_of(cl__redis_cmd(r, fmt, arg));
}

/* A command given as one line of space-separated words; its string answer into out ("" else). */
static const char *cmd_str(struct cl__redis *r, char *out, size_t cap, const char *line)
{
    char copy[512], *save = NULL;
    const char *argv[16];
    int argc = 0;
    snprintf(copy, sizeof(copy), "%s", line);
    for (char *w = strtok_r(copy, " ", &save); w && argc < 16; w = strtok_r(NULL, " ", &save))
        argv[argc++] = w;
    redisReply *rep = cl__redis_argv(r, argc, argv, NULL);
    out[0] = '\0';
    if (rep && rep->type == REDIS_REPLY_STRING)
        snprintf(out, cap, "%s", rep->str);
    if (rep)
        freeReplyObject(rep);
    return out;
}

static uint64_t redis_time_us(struct cl__redis *r)
{
    redisReply *rep = cl__redis_cmd(r, "TIME");
    uint64_t us = 0;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2)
        us = strtoull(rep->element[0]->str, NULL, 10) * 1000000u +
             strtoull(rep->element[1]->str, NULL, 10);
    if (rep)
        freeReplyObject(rep);
    return us;
}

/* ---- URL, application id ---- */

TEST(url_forms)
{
    struct cfg_redis_url u;
    char why[256];
    ASSERT_EQ(cfg_redis_url_parse("redis://:pw@10.0.0.5:6379/3", &u, why, sizeof(why)), 0);
    ASSERT_STR_EQ(u.host, "10.0.0.5");
    ASSERT_EQ(u.port, 6379);
    ASSERT_EQ(u.db, 3);
    ASSERT_STR_EQ(u.password, "pw");
    ASSERT_EQ(cfg_redis_url_parse("redis://:p@ss@redis.internal:6380", &u, why, sizeof(why)), 0);
    ASSERT_STR_EQ(u.password, "p@ss");
    ASSERT_STR_EQ(u.host, "redis.internal");
    ASSERT_EQ(u.db, 0);
    ASSERT_EQ(cfg_redis_url_parse("redis://[::1]:7000/1", &u, why, sizeof(why)), 0);
    ASSERT_STR_EQ(u.host, "::1");
    ASSERT_EQ(cfg_redis_url_parse("unix:/run/redis/redis.sock", &u, why, sizeof(why)), 0);
    ASSERT_EQ(u.is_unix, 1);
    ASSERT_STR_EQ(u.path, "/run/redis/redis.sock");
    static const char *const bad[] = {"",
                                      "localhost:6379",
                                      "redis://host",
                                      "redis://host:0",
                                      "redis://:6379",
                                      "redis://host:70000",
                                      "redis://host:1/x",
                                      "rediss://h:1",
                                      "redis://user:pw@h:1",
                                      "redis://:@h:1",
                                      "unix:relative.sock",
                                      "unix:/a.sock?db=1",
                                      "redis://h o:1",
                                      "redis://[::1:1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        if (cfg_redis_url_parse(bad[i], &u, why, sizeof(why)) != SH_ECONFIG)
            T_FAIL_("accepted \"%s\"", bad[i]);
        ASSERT_CONTAINS(why, "must be");
    }
    /* a refusal never quotes the password */
    ASSERT_EQ(cfg_redis_url_parse("redis://:hunter2@h", &u, why, sizeof(why)), SH_ECONFIG);
    ASSERT(!strstr(why, "hunter2"));
    struct cl__redis *r = NULL;
    char err[256];
    ASSERT_EQ(cl__redis_new("redis://:hunter2@h:99999", 1000, &r, err, sizeof(err)), SH_ECONFIG);
    ASSERT(r == NULL);
    ASSERT_CONTAINS(err, "cluster.redis: ");
    ASSERT(!strstr(err, "hunter2"));
    ASSERT_EQ(cl__redis_new("redis://:hunter2@h:1/2", 1000, &r, err, sizeof(err)), 0);
    ASSERT_STR_EQ(cl__redis_where(r), "h:1/2");
    cl__redis_free(r);
}

TEST(app_id)
{
    char id[32], prefix[64];
    cl__app_id("MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.abcdefghijklmnopqrstuvwxyz0", id, sizeof(id));
    ASSERT_STR_EQ(id, "123456789012345678");
    cl__app_id("test-token", id, sizeof(id)); /* not base64 digits: SHA-256 */
    ASSERT_STR_EQ(id, "4c5dc9b7708905f7");
    cl__app_id("bm90IGRpZ2l0cw.x.y", id, sizeof(id)); /* "not digits" */
    ASSERT_EQ(strlen(id), 16);
    cl__key_prefix("test-token", prefix, sizeof(prefix));
    ASSERT_STR_EQ(prefix, "shardhook:{4c5dc9b7708905f7}:");
}

/* ---- the connection ---- */

TEST(connect_auth_select_unix)
{
    NEED_REDIS();
    struct cl__redis *r = NULL;
    char err[256], url[300], buf[64];
    /* db 2 through the URL: a key written there is not in db 0 */
    snprintf(url, sizeof(url), "%s/2", srv.url);
    ASSERT_EQ(cl__redis_new(url, 1000, &r, err, sizeof(err)), 0);
    ASSERT_EQ(cl__redis_connected(r), 0);
    ASSERT_EQ(cl__redis_connect(r), 0);
    ASSERT_EQ(cl__redis_connected(r), 1);
    ASSERT(cl__redis_rtt_ms(r) >= 0);
    redisReply *rep = cl__redis_cmd(r, "SET %s %s", P "dbcheck", "two");
    ASSERT(rep && rep->type == REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    cl__redis_free(r);
    r = connect_srv();
    ASSERT(r != NULL);
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "GET " P "dbcheck"), "");
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "ECHO fine"), "fine");
    cl__redis_free(r);

    /* a wrong password: SH_EAUTH, and the error says so without the password */
    snprintf(url, sizeof(url), "redis://:wrong-pw@127.0.0.1:%d", srv.port);
    ASSERT_EQ(cl__redis_new(url, 1000, &r, err, sizeof(err)), 0);
    ASSERT_EQ(cl__redis_connect(r), SH_EAUTH);
    ASSERT_EQ(cl__redis_connected(r), 0);
    ASSERT_CONTAINS(cl__redis_error(r), "auth");
    ASSERT(!strstr(cl__redis_error(r), "wrong-pw"));
    cl__redis_free(r);

    /* no password at all: the first script load is refused (NOAUTH) */
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", srv.port);
    ASSERT_EQ(cl__redis_new(url, 1000, &r, err, sizeof(err)), 0);
    ASSERT_EQ(cl__redis_connect(r), SH_ENET);
    ASSERT_CONTAINS(cl__redis_error(r), "NOAUTH");
    cl__redis_free(r);

    /* the unix socket (the password then comes from nowhere: NOAUTH proves we got there) */
    snprintf(url, sizeof(url), "unix:%s", srv.sock);
    ASSERT_EQ(cl__redis_new(url, 1000, &r, err, sizeof(err)), 0);
    ASSERT_EQ(cl__redis_connect(r), SH_ENET);
    ASSERT_CONTAINS(cl__redis_error(r), "NOAUTH");
    cl__redis_free(r);
}

TEST(unix_socket_with_scripts)
{
    struct t_redis u;
    int rc = t_redis_start(&u, NULL);
    if (rc == -1)
        SKIP("redis-server is not installed");
    ASSERT_EQ(rc, 0);
    struct cl__redis *r = NULL;
    char err[256], url[300];
    snprintf(url, sizeof(url), "unix:%s", u.sock);
    int ok = cl__redis_new(url, 1000, &r, err, sizeof(err)) == 0 && cl__redis_connect(r) == 0;
    long long v = ok ? integer_of(run(r, CL_SCRIPT_REGISTER, 2, P "node:u", P "nodes", "7", "5000",
                                      "u", "{}", NULL))
                     : -1;
    cl__redis_free(r);
    t_redis_stop(&u);
    ASSERT(ok);
    ASSERT_EQ(v, 1);
}

TEST(dead_redis_bounded)
{
    NEED_REDIS();
    /* nothing listens: refused at once */
    struct cl__redis *r = NULL;
    char err[256], url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", t_redis_free_port());
    ASSERT_EQ(cl__redis_new(url, 1000, &r, err, sizeof(err)), 0);
    ASSERT_EQ(cl__redis_connect(r), SH_ENET);
    ASSERT_CONTAINS(cl__redis_error(r), "connect");
    ASSERT(cl__redis_cmd(r, "PING") == NULL);
    ASSERT(cl__redis_read(r) == NULL);
    ASSERT_EQ(cl__redis_append(r, "PING"), SH_ENET);
    cl__redis_free(r);

    /* a Redis that stopped answering: the command gives up after about the timeout */
    r = connect_srv();
    ASSERT(r != NULL);
    kill(srv.pid, SIGSTOP);
    uint64_t t0 = sh_now_ms();
    redisReply *rep = cl__redis_cmd(r, "PING");
    uint64_t took = sh_now_ms() - t0;
    int connected = cl__redis_connected(r);
    t0 = sh_now_ms();
    int crc = cl__redis_connect(r); /* the listen backlog accepts; the script load times out */
    uint64_t took_connect = sh_now_ms() - t0;
    kill(srv.pid, SIGCONT);
    ASSERT(rep == NULL);
    ASSERT_EQ(connected, 0);
    ASSERT(took >= 900 && took < 3000);
    ASSERT_EQ(crc, SH_ENET);
    ASSERT(took_connect < 3000);
    ASSERT_EQ(cl__redis_connect(r), 0);
    ASSERT(integer_of(cl__redis_cmd(r, "EXISTS nothing")) == 0);
    cl__redis_free(r);
}

TEST(pipeline)
{
    NEED_REDIS();
    struct cl__redis *r = connect_srv();
    ASSERT(r != NULL);
    ASSERT_EQ(cl__redis_append(r, "SET %s %s", P "p1", "a"), 0);
    const char *argv[] = {"SET", P "p2", "b\0c"};
    size_t lens[] = {3, strlen(P "p2"), 3};
    ASSERT_EQ(cl__redis_append_argv(r, 3, argv, lens), 0);
    ASSERT_EQ(cl__redis_append(r, "STRLEN %s", P "p2"), 0);
    redisReply *a = cl__redis_read(r), *b = cl__redis_read(r), *c = cl__redis_read(r);
    ASSERT(a && b && c);
    ASSERT_EQ(a->type, REDIS_REPLY_STATUS);
    ASSERT_EQ(b->type, REDIS_REPLY_STATUS);
    ASSERT_EQ(c->integer, 3);
    freeReplyObject(a);
    freeReplyObject(b);
    freeReplyObject(c);
    cl__redis_free(r);
}

TEST(noscript_reload)
{
    NEED_REDIS();
    struct cl__redis *r = connect_srv();
    ASSERT(r != NULL);
    ASSERT_EQ(integer_of(run(r, CL_SCRIPT_REGISTER, 2, P "node:n1", P "nodes", "1", "5000", "n1",
                             "{}", NULL)),
              1);
    redisReply *rep = cl__redis_cmd(r, "SCRIPT FLUSH");
    ASSERT(rep != NULL);
    freeReplyObject(rep);
    /* NOSCRIPT: loaded again, run once more, transparently */
    ASSERT_EQ(integer_of(run(r, CL_SCRIPT_RENEW, 2, P "node:n1", P "nodes", "1", "5000", "n1", "{}",
                             NULL)),
              1);
    ASSERT_EQ(cmd_int(r, "SCRIPT EXISTS %s", "x"), -999); /* an array: sanity of the helper */
    cl__redis_free(r);
}

TEST(redis_restart)
{
    NEED_REDIS();
    struct cl__redis *r = connect_srv();
    ASSERT(r != NULL);
    ASSERT_EQ(integer_of(run(r, CL_SCRIPT_REGISTER, 2, P "node:rs", P "nodes", "5", "60000", "rs",
                             "{}", NULL)),
              1);
    t_redis_sleep_ms(1100); /* AOF everysec: let it reach the disk */
    ASSERT_EQ(t_redis_restart(&srv), 0);
    /* the old connection is dead: NULL, dropped; a reconnect loads the scripts again */
    ASSERT(run(r, CL_SCRIPT_RENEW, 2, P "node:rs", P "nodes", "5", "60000", "rs", "{}", NULL) ==
           NULL);
    ASSERT_EQ(cl__redis_connected(r), 0);
    ASSERT_EQ(cl__redis_connect(r), 0);
    ASSERT_EQ(integer_of(run(r, CL_SCRIPT_RENEW, 2, P "node:rs", P "nodes", "5", "60000", "rs",
                             "{}", NULL)),
              1);
    cl__redis_free(r);
}

/* ---- the scripts ---- */

TEST(register_renew)
{
    NEED_REDIS();
    struct cl__redis *r = connect_srv();
    ASSERT(r != NULL);
    char buf[256];
    ASSERT_EQ(integer_of(run(r, CL_SCRIPT_REGISTER, 2, P "node:a", P "nodes", "10", "5000", "a",
                             "{\"epoch\":10}", NULL)),
              1);
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "GET " P "node:a"), "10");
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "nodes a"), "{\"epoch\":10}");
    long long pttl = cmd_int(r, "PTTL %s", P "node:a");
    ASSERT(pttl > 4000 && pttl <= 5000);
    /* renewed while the epoch is ours */
    ASSERT_EQ(integer_of(run(r, CL_SCRIPT_RENEW, 2, P "node:a", P "nodes", "10", "9000", "a",
                             "{\"epoch\":10,\"n\":1}", NULL)),
              1);
    ASSERT(cmd_int(r, "PTTL %s", P "node:a") > 8000);
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "nodes a"), "{\"epoch\":10,\"n\":1}");
    /* a restart under the same name registers over it: the old epoch's renew is refused */
    ASSERT_EQ(integer_of(run(r, CL_SCRIPT_REGISTER, 2, P "node:a", P "nodes", "11", "5000", "a",
                             "{\"epoch\":11}", NULL)),
              1);
    ASSERT_EQ(integer_of(run(r, CL_SCRIPT_RENEW, 2, P "node:a", P "nodes", "10", "5000", "a",
                             "{\"epoch\":10}", NULL)),
              0);
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "GET " P "node:a"), "11");
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "nodes a"), "{\"epoch\":11}");
    /* an expired lease is not brought back */
    ASSERT_EQ(cmd_int(r, "DEL %s", P "node:a"), 1);
    ASSERT_EQ(integer_of(
                  run(r, CL_SCRIPT_RENEW, 2, P "node:a", P "nodes", "11", "5000", "a", "{}", NULL)),
              0);
    ASSERT_EQ(cmd_int(r, "EXISTS %s", P "node:a"), 0);
    cl__redis_free(r);
}

/* claim's reply: its fence (or -1/-2) and, for a grant, the four strings. */
struct claim_answer {
    long long fence;
    char owner[64]; /* -1: who holds it */
    char session[64], url[64], seq[32], ckpt[64];
};

static int claim(struct cl__redis *r, const char *shard, const char *me, const char *epoch,
                 const char *force, struct claim_answer *out)
{
    char node[96];
    snprintf(node, sizeof(node), P "node:%s", me);
    memset(out, 0, sizeof(*out));
    redisReply *rep = run(r, CL_SCRIPT_CLAIM, 2, shard, node, me, epoch, P "node:", force, NULL);
    int ok = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
             rep->element[0]->type == REDIS_REPLY_INTEGER;
    if (ok) {
        out->fence = rep->element[0]->integer;
        if (out->fence == -1 && rep->elements == 2)
            snprintf(out->owner, sizeof(out->owner), "%s", rep->element[1]->str);
        if (out->fence > 0 && rep->elements == 5) {
            snprintf(out->session, sizeof(out->session), "%s", rep->element[1]->str);
            snprintf(out->url, sizeof(out->url), "%s", rep->element[2]->str);
            snprintf(out->seq, sizeof(out->seq), "%s", rep->element[3]->str);
            snprintf(out->ckpt, sizeof(out->ckpt), "%s", rep->element[4]->str);
        }
    }
    if (rep)
        freeReplyObject(rep);
    return ok ? 0 : -1;
}

static void reg(struct cl__redis *r, const char *name, const char *epoch, const char *lease)
{
    char node[96];
    snprintf(node, sizeof(node), P "node:%s", name);
    freeReplyObject(run(r, CL_SCRIPT_REGISTER, 2, node, P "nodes", epoch, lease, name, "{}", NULL));
}

static long long checkpoint(struct cl__redis *r, const char *shard, long long fence,
                            const char *session, const char *seq)
{
    char f[32];
    snprintf(f, sizeof(f), "%lld", fence);
    return integer_of(
        run(r, CL_SCRIPT_CHECKPOINT, 1, shard, f, session, "wss://resume", seq, "ckpt-line", NULL));
}

TEST(claim_rules)
{
    NEED_REDIS();
    struct cl__redis *r = connect_srv();
    ASSERT(r != NULL);
    struct claim_answer a;
    char buf[64];
    reg(r, "c1", "100", "60000");
    reg(r, "c2", "200", "60000");
    /* without my own lease I claim nothing */
    ASSERT_EQ(claim(r, P "shard:1", "c1", "99", "0", &a), 0);
    ASSERT_EQ(a.fence, -2);
    ASSERT_EQ(cmd_int(r, "EXISTS %s", P "shard:1"), 0);
    /* a free shard: the fence starts at Redis TIME in microseconds */
    uint64_t before = redis_time_us(r);
    ASSERT_EQ(claim(r, P "shard:1", "c1", "100", "0", &a), 0);
    uint64_t after = redis_time_us(r);
    ASSERT((uint64_t)a.fence >= before && (uint64_t)a.fence <= after);
    ASSERT_STR_EQ(a.session, "");
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "shard:1 owner"), "c1");
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "shard:1 owner_epoch"), "100");
    long long f1 = a.fence;
    ASSERT_EQ(checkpoint(r, P "shard:1", f1, "sess-1", "42"), 0);
    /* claiming again in the same epoch changes nothing and gives the checkpoint back */
    ASSERT_EQ(claim(r, P "shard:1", "c1", "100", "0", &a), 0);
    ASSERT_EQ(a.fence, f1);
    ASSERT_STR_EQ(a.session, "sess-1");
    ASSERT_STR_EQ(a.url, "wss://resume");
    ASSERT_STR_EQ(a.seq, "42");
    ASSERT_STR_EQ(a.ckpt, "ckpt-line");
    /* a live owner is not taken without force */
    ASSERT_EQ(claim(r, P "shard:1", "c2", "200", "0", &a), 0);
    ASSERT_EQ(a.fence, -1);
    ASSERT_STR_EQ(a.owner, "c1");
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "shard:1 owner"), "c1");
    /* c1 restarts under its name (new epoch): takes its shard back at once, fence grows */
    reg(r, "c1", "101", "60000");
    ASSERT_EQ(claim(r, P "shard:1", "c1", "101", "0", &a), 0);
    ASSERT(a.fence > f1);
    ASSERT_STR_EQ(a.session, "sess-1");
    ASSERT_STR_EQ(a.seq, "42");
    long long f2 = a.fence;
    /* the older epoch's fence is refused now */
    ASSERT_EQ(checkpoint(r, P "shard:1", f1, "sess-old", "50"), -1);
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "shard:1 seq"), "42");
    /* the owner's lease lapsed: c2 takes it, fence grows */
    ASSERT_EQ(cmd_int(r, "DEL %s", P "node:c1"), 1);
    ASSERT_EQ(claim(r, P "shard:1", "c2", "200", "0", &a), 0);
    ASSERT(a.fence > f2);
    ASSERT_STR_EQ(a.session, "sess-1");
    long long f3 = a.fence;
    /* force takes a live owner's shard */
    reg(r, "c1", "102", "60000");
    ASSERT_EQ(claim(r, P "shard:1", "c1", "102", "1", &a), 0);
    ASSERT(a.fence > f3);
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "shard:1 owner"), "c1");
    /* a fence far ahead of TIME (a clock that went back) still only grows: fence + 1 */
    redisReply *rep = cl__redis_cmd(r, "HSET %s fence %s", P "shard:2", "9000000000000000");
    freeReplyObject(rep);
    ASSERT_EQ(claim(r, P "shard:2", "c2", "200", "0", &a), 0);
    ASSERT_EQ(a.fence, 9000000000000001LL);
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "shard:2 fence"), "9000000000000001");
    cl__redis_free(r);
}

TEST(checkpoint_fence)
{
    NEED_REDIS();
    struct cl__redis *r = connect_srv();
    ASSERT(r != NULL);
    char buf[64];
    struct claim_answer a;
    /* no owner (Redis lost the hash): -2, nothing written */
    ASSERT_EQ(checkpoint(r, P "shard:10", 5, "s", "1"), -2);
    ASSERT_EQ(cmd_int(r, "EXISTS %s", P "shard:10"), 0);
    reg(r, "k1", "1", "60000");
    ASSERT_EQ(claim(r, P "shard:10", "k1", "1", "0", &a), 0);
    ASSERT_EQ(checkpoint(r, P "shard:10", a.fence, "s10", "7"), 0);
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "shard:10 session_id"), "s10");
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "shard:10 seq"), "7");
    ASSERT(strlen(cmd_str(r, buf, sizeof(buf), "HGET " P "shard:10 at")) >= 13);
    /* stale (and future) fences are refused and change nothing */
    ASSERT_EQ(checkpoint(r, P "shard:10", a.fence - 1, "bad", "8"), -1);
    ASSERT_EQ(checkpoint(r, P "shard:10", a.fence + 1, "bad", "8"), -1);
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "shard:10 seq"), "7");
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "shard:10 session_id"), "s10");
    cl__redis_free(r);
}

TEST(cache_fence)
{
    NEED_REDIS();
    struct cl__redis *r = connect_srv();
    ASSERT(r != NULL);
    char buf[64], f[32];
    struct claim_answer a;
    /* no owner: -2, nothing written */
    ASSERT_EQ(integer_of(run(r, CL_SCRIPT_CACHE, 2, P "shard:11", P "cache:11", "5", "x", NULL)),
              -2);
    ASSERT_EQ(cmd_int(r, "EXISTS %s", P "cache:11"), 0);
    reg(r, "k2", "1", "60000");
    ASSERT_EQ(claim(r, P "shard:11", "k2", "1", "0", &a), 0);
    snprintf(f, sizeof(f), "%lld", a.fence);
    ASSERT_EQ(integer_of(run(r, CL_SCRIPT_CACHE, 2, P "shard:11", P "cache:11", f, "snap1", NULL)),
              0);
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "GET " P "cache:11"), "snap1");
    /* a stale fence changes nothing */
    snprintf(f, sizeof(f), "%lld", a.fence - 1);
    ASSERT_EQ(integer_of(run(r, CL_SCRIPT_CACHE, 2, P "shard:11", P "cache:11", f, "old", NULL)),
              -1);
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "GET " P "cache:11"), "snap1");
    cl__redis_free(r);
}

TEST(handoff_rules)
{
    NEED_REDIS();
    struct cl__redis *r = connect_srv();
    ASSERT(r != NULL);
    char buf[64], f[32];
    struct claim_answer a;
    reg(r, "h1", "1", "60000");
    reg(r, "h2", "2", "60000");
    ASSERT_EQ(claim(r, P "shard:20", "h1", "1", "0", &a), 0);
    long long f1 = a.fence;
    /* a stale fence hands off nothing */
    snprintf(f, sizeof(f), "%lld", f1 - 1);
    ASSERT_EQ(integer_of(run(r, CL_SCRIPT_HANDOFF, 3, P "shard:20", P "node:h2", P "cmd:h2", f,
                             "h2", "s", "u", "1", "c", NULL)),
              -1);
    /* a target without a lease: -2 */
    snprintf(f, sizeof(f), "%lld", f1);
    ASSERT_EQ(integer_of(run(r, CL_SCRIPT_HANDOFF, 3, P "shard:20", P "node:h3", P "cmd:h3", f,
                             "h3", "s", "u", "1", "c", NULL)),
              -2);
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "shard:20 owner"), "h1");
    /* handed off: new owner and epoch, fence grows, final checkpoint in, command queued */
    long long f2 = integer_of(run(r, CL_SCRIPT_HANDOFF, 3, P "shard:20", P "node:h2", P "cmd:h2", f,
                                  "h2", "sess-20", "wss://r20", "99", "final", NULL));
    ASSERT(f2 > f1);
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "shard:20 owner"), "h2");
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "shard:20 owner_epoch"), "2");
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "shard:20 seq"), "99");
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "shard:20 session_id"), "sess-20");
    redisReply *rep = cl__redis_cmd(r, "XRANGE %s - +", P "cmd:h2");
    ASSERT(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1);
    redisReply *fields = rep->element[0]->element[1];
    ASSERT_EQ(fields->elements, 6);
    ASSERT_STR_EQ(fields->element[1]->str, "hold");
    ASSERT_STR_EQ(fields->element[3]->str, "20");
    snprintf(f, sizeof(f), "%lld", f2);
    ASSERT_STR_EQ(fields->element[5]->str, f);
    freeReplyObject(rep);
    /* the old owner's checkpoint is fenced out; the target's claim in its epoch keeps f2 */
    ASSERT_EQ(checkpoint(r, P "shard:20", f1, "late", "100"), -1);
    ASSERT_EQ(claim(r, P "shard:20", "h2", "2", "0", &a), 0);
    ASSERT_EQ(a.fence, f2);
    ASSERT_STR_EQ(a.ckpt, "final");
    ASSERT_EQ(checkpoint(r, P "shard:20", f2, "sess-20", "101"), 0);
    cl__redis_free(r);
}

/* identify's reply into code and up to two numbers. */
static int identify(struct cl__redis *r, const char *bucket, const char *reserve,
                    const char *holder, long long *code, long long *a, long long *b)
{
    char slot[96];
    snprintf(slot, sizeof(slot), P "idslot:%s", bucket);
    redisReply *rep =
        run(r, CL_SCRIPT_IDENTIFY, 2, P "budget", slot, reserve, "5500", holder, NULL);
    int ok = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 2;
    if (ok) {
        *code = rep->element[0]->integer;
        *a = rep->element[1]->integer;
        *b = rep->elements > 2 ? rep->element[2]->integer : 0;
    }
    if (rep)
        freeReplyObject(rep);
    return ok ? 0 : -1;
}

TEST(identify_slots_and_reserve)
{
    NEED_REDIS();
    struct cl__redis *r = connect_srv();
    ASSERT(r != NULL);
    long long code, a, b;
    char buf[64];
    redisReply *rep = cl__redis_cmd(r, "DEL %s", P "budget");
    freeReplyObject(rep);
    /* unknown budget: granted, -1 remaining */
    ASSERT_EQ(identify(r, "0", "5", "n1:0", &code, &a, &b), 0);
    ASSERT_EQ(code, 0);
    ASSERT_EQ(a, -1);
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "GET " P "idslot:0"), "n1:0");
    /* the bucket is busy: its PTTL, for anyone */
    ASSERT_EQ(identify(r, "0", "5", "n2:16", &code, &a, &b), 0);
    ASSERT_EQ(code, -1);
    ASSERT(a > 4000 && a <= 5500);
    /* another bucket is free */
    ASSERT_EQ(identify(r, "1", "5", "n2:1", &code, &a, &b), 0);
    ASSERT_EQ(code, 0);
    /* a known budget is spent one per grant, and stops at the reserve */
    ASSERT_EQ(integer_of(
                  run(r, CL_SCRIPT_BUDGET, 1, P "budget", "1000", "8", "9999999999999", "1", NULL)),
              1);
    int granted = 0, refused = 0;
    for (int i = 0; i < 6; i++) {
        char bucket[8];
        snprintf(bucket, sizeof(bucket), "%d", 10 + i);
        ASSERT_EQ(identify(r, bucket, "5", "n1:x", &code, &a, &b), 0);
        if (code == 0) {
            granted++;
            ASSERT_EQ(a, 8 - granted);
        } else {
            ASSERT_EQ(code, -2);
            ASSERT_EQ(a, 5);
            ASSERT_EQ(b, 9999999999999LL);
            refused++;
        }
    }
    ASSERT_EQ(granted, 3);
    ASSERT_EQ(refused, 3);
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "budget remaining"), "5");
    /* a refusal takes no slot */
    ASSERT_EQ(cmd_int(r, "EXISTS %s", P "idslot:15"), 0);
    /* a busy slot spends nothing */
    ASSERT_EQ(integer_of(run(r, CL_SCRIPT_BUDGET, 1, P "budget", "1000", "100", "19999999999999",
                             "9999999999999", NULL)),
              1);
    ASSERT_EQ(identify(r, "0", "5", "n3:0", &code, &a, &b), 0);
    ASSERT_EQ(code, -1);
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "budget remaining"), "100");
    cl__redis_free(r);
}

TEST(budget_merge)
{
    NEED_REDIS();
    struct cl__redis *r = connect_srv();
    ASSERT(r != NULL);
    char buf[64];
    redisReply *rep = cl__redis_cmd(r, "DEL %s", P "budget");
    freeReplyObject(rep);
    /* first reading: written whole */
    ASSERT_EQ(
        integer_of(run(r, CL_SCRIPT_BUDGET, 1, P "budget", "1000", "900", "5000", "1000", NULL)),
        1);
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "budget total"), "1000");
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "budget remaining"), "900");
    /* an older, higher reading within the period gives nothing back */
    ASSERT_EQ(
        integer_of(run(r, CL_SCRIPT_BUDGET, 1, P "budget", "1000", "950", "5100", "2000", NULL)),
        0);
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "budget remaining"), "900");
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "budget reset_at"), "5000");
    /* a lower one is taken */
    ASSERT_EQ(
        integer_of(run(r, CL_SCRIPT_BUDGET, 1, P "budget", "1000", "850", "5100", "2000", NULL)),
        0);
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "budget remaining"), "850");
    /* past reset_at: a new period, written whole */
    ASSERT_EQ(
        integer_of(run(r, CL_SCRIPT_BUDGET, 1, P "budget", "1000", "1000", "90000", "6000", NULL)),
        1);
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "budget remaining"), "1000");
    ASSERT_STR_EQ(cmd_str(r, buf, sizeof(buf), "HGET " P "budget reset_at"), "90000");
    cl__redis_free(r);
}

TEST(gap_stream)
{
    NEED_REDIS();
    struct cl__redis *r = connect_srv();
    ASSERT(r != NULL);
    redisReply *rep =
        run(r, CL_SCRIPT_GAP, 1, P "gaps", "3", "sess-3", "41", "invalid_session", "n1", NULL);
    ASSERT(rep && rep->type == REDIS_REPLY_STRING);
    freeReplyObject(rep);
    rep = cl__redis_cmd(r, "XRANGE %s - +", P "gaps");
    ASSERT(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1);
    redisReply *f = rep->element[0]->element[1];
    ASSERT_EQ(f->elements, 12);
    ASSERT_STR_EQ(f->element[0]->str, "shard");
    ASSERT_STR_EQ(f->element[1]->str, "3");
    ASSERT_STR_EQ(f->element[3]->str, "sess-3");
    ASSERT_STR_EQ(f->element[5]->str, "41");
    ASSERT_STR_EQ(f->element[7]->str, "invalid_session");
    ASSERT_STR_EQ(f->element[9]->str, "n1");
    freeReplyObject(rep);
    ASSERT_STR_EQ(cl__script_name(CL_SCRIPT_GAP), "gap");
    ASSERT_STR_EQ(cl__script_name(CL_SCRIPT_COUNT), "?");
    cl__redis_free(r);
}

TEST(stop_server)
{
    if (srv_state == 1)
        t_redis_stop(&srv);
    srv_state = 0;
}

TEST_MAIN(RUN(url_forms); RUN(app_id); RUN(connect_auth_select_unix); RUN(unix_socket_with_scripts);
          RUN(dead_redis_bounded); RUN(pipeline); RUN(noscript_reload); RUN(redis_restart);
          RUN(register_renew); RUN(claim_rules); RUN(checkpoint_fence); RUN(cache_fence);
          RUN(handoff_rules); RUN(identify_slots_and_reserve); RUN(budget_merge); RUN(gap_stream);
          RUN(stop_server);)
