/*
 * tests/unit/test_gateway_hold.c: the gateway (gateway/gateway.h) holding shards at run time, as
 * cluster mode drives it: nothing held at start, gw_gateway_hold with and without a resume point,
 * gw_gateway_release (a close with 4000, out of the snapshots), the lease deadline that keeps a
 * dropped shard from connecting, an identify source whose wait() refuses (GW_IDENTIFY_REFUSED),
 * and what an unheld shard costs. The gateway runs on a thread of its own against the fake
 * Discord (build/fake-discord next to this binary's folder), whose /_fake/log says what went over
 * the wire; the sink and the identify source are stubs that count.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "gateway/gateway.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "tests/unit/test.h"

/* ---- the fake Discord, a child process ---- */

static pid_t fake_pid;
static int fake_port;
static char fake_log[64];

static void fake_stop(void)
{
    if (fake_pid > 0) {
        kill(fake_pid, SIGTERM);
        waitpid(fake_pid, NULL, 0);
        fake_pid = 0;
    }
    fake_port = 0;
    unlink(fake_log);
}

/* Start fake-discord with shards N; 0 or -1. */
static int fake_start(int shards)
{
    char exe[PATH_MAX], bin[PATH_MAX + 32], arg[16];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return -1;
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0'; /* build/tests */
    *strrchr(exe, '/') = '\0'; /* build */
    snprintf(bin, sizeof(bin), "%s/fake-discord", exe);
    snprintf(fake_log, sizeof(fake_log), "/tmp/test-gateway-hold-%d.log", (int)getpid());
    snprintf(arg, sizeof(arg), "%d", shards);
    fake_pid = fork();
    if (fake_pid == 0) {
        FILE *f = freopen(fake_log, "w", stdout);
        if (!f || dup2(fileno(stdout), 2) < 0)
            _exit(127);
        execl(bin, bin, "--port", "0", "--shards", arg, "--identify-interval-ms", "100",
              "--heartbeat-ms", "1000", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && !fake_port; i++) { /* "fake-discord listening port=N" */
        usleep(10000);
        FILE *f = fopen(fake_log, "r");
        char line[256];
        while (f && fgets(line, sizeof(line), f))
            if (sscanf(line, "fake-discord listening port=%d", &fake_port) == 1)
                break;
        if (f)
            fclose(f);
    }
    return fake_port ? 0 : -1;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct {
        char *data;
        size_t len;
    } *b = ud;
    char *grown = realloc(b->data, b->len + size * n + 1);
    if (!grown)
        return 0;
    memcpy(grown + b->len, p, size * n);
    b->data = grown;
    b->len += size * n;
    b->data[b->len] = '\0';
    return size * n;
}

/* A call of the fake's control API; its answer parsed (NULL on failure). */
static cJSON *fake_call(const char *path, const char *post)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", fake_port, path);
    struct {
        char *data;
        size_t len;
    } b = {NULL, 0};
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    struct curl_slist *h = NULL;
    if (post) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    cJSON *j = rc == CURLE_OK && b.data ? cJSON_Parse(b.data) : NULL;
    free(b.data);
    return j;
}

/* Connections of shard (any: -1) in the fake's log, and payloads with op received on them. */
struct wire {
    int conns, open, closed_4000_by_client, ops;
    char last_resume_session[128];
    long long last_resume_seq;
};

static struct wire wire_of(int shard, int op)
{
    struct wire w;
    memset(&w, 0, sizeof(w));
    w.last_resume_seq = -1;
    cJSON *log = fake_call("/_fake/log", NULL);
    if (getenv("TEST_VERBOSE")) {
        char *t = cJSON_PrintUnformatted(cJSON_GetObjectItem(log, "connections"));
        fprintf(stderr, "fake connections: %s\n", t ? t : "?");
        free(t);
    }
    const cJSON *c, *r;
    int ids[256], n_ids = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(log, "connections"))
    {
        const cJSON *sh = cJSON_GetObjectItem(c, "shard");
        if (shard >= 0 && (!cJSON_IsNumber(sh) || sh->valueint != shard))
            continue;
        w.conns++;
        w.open += cJSON_IsNull(cJSON_GetObjectItem(c, "closed_ms"));
        const cJSON *by = cJSON_GetObjectItem(c, "closed_by");
        w.closed_4000_by_client += cJSON_GetObjectItem(c, "close_code")->valueint == 4000 &&
                                   cJSON_IsString(by) && !strcmp(by->valuestring, "client");
        if (n_ids < 256)
            ids[n_ids++] = cJSON_GetObjectItem(c, "id")->valueint;
    }
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(log, "received"))
    {
        int conn = cJSON_GetObjectItem(r, "conn")->valueint, mine = 0;
        for (int i = 0; i < n_ids; i++)
            mine |= ids[i] == conn;
        if (!mine || cJSON_GetObjectItem(r, "op")->valueint != op)
            continue;
        w.ops++;
        const cJSON *d = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "payload"), "d");
        const cJSON *sid = cJSON_GetObjectItem(d, "session_id");
        if (cJSON_IsString(sid)) {
            snprintf(w.last_resume_session, sizeof(w.last_resume_session), "%s", sid->valuestring);
            w.last_resume_seq = (long long)cJSON_GetObjectItem(d, "seq")->valuedouble;
        }
    }
    cJSON_Delete(log);
    return w;
}

/* ---- stubs: the sink and the identify source ---- */

static atomic_int events_in, lost_events;
static char lost_event[512];

static void sink_push(void *ud, struct gw_chunk *c)
{
    (void)ud;
    atomic_fetch_add(&events_in, (int)c->n);
    for (size_t i = 0; i < c->n; i++) {
        const struct gw_event *e = &c->ev[i];
        if (e->t_len == 22 && !memcmp(c->data.data + e->t_off, "SHARDHOOK_SESSION_LOST", 22)) {
            snprintf(lost_event, sizeof(lost_event), "%.*s", (int)e->len, c->data.data + e->off);
            atomic_fetch_add(&lost_events, 1);
        }
    }
    gw_chunk_free(c);
}

static struct {
    atomic_int refuse; /* wait() answers GW_IDENTIFY_REFUSED */
    atomic_int takes, give_backs, spends, refreshes, lost;
    atomic_int remaining;
} id;

static int st_start(void *ud, int mc, const struct gw_bot_info *bot)
{
    (void)ud, (void)mc, (void)bot;
    return 0;
}
static uint64_t st_plan(void *ud, int shard, uint64_t not_before)
{
    (void)ud, (void)shard;
    return not_before;
}
static uint64_t st_wait(void *ud, int shard, uint64_t now)
{
    (void)ud, (void)shard, (void)now;
    return atomic_load(&id.refuse) ? GW_IDENTIFY_REFUSED : 0;
}
static void st_stamp(void *ud, int shard, uint64_t now)
{
    (void)ud, (void)shard, (void)now;
}
static int st_take(void *ud)
{
    (void)ud;
    atomic_fetch_add(&id.takes, 1);
    atomic_fetch_sub(&id.remaining, 1);
    return 0;
}
static void st_give_back(void *ud)
{
    (void)ud;
    atomic_fetch_add(&id.give_backs, 1);
    atomic_fetch_add(&id.remaining, 1);
}
static void st_spend(void *ud)
{
    (void)ud;
    atomic_fetch_add(&id.spends, 1);
}
static void st_budget(void *ud, struct gw_budget *out)
{
    (void)ud;
    out->total = 1000;
    out->remaining = atomic_load(&id.remaining);
    out->reset_at_ms = 0;
    out->reserve = atomic_load(&id.refuse) ? out->remaining : 7;
}
static int st_refresh(void *ud, void (*done)(void *, int), void *arg)
{
    (void)ud;
    atomic_fetch_add(&id.refreshes, 1);
    done(arg, 0);
    return 0;
}
static void st_stop(void *ud)
{
    (void)ud;
}
static void st_lost(void *ud, int shard, const char *sid, uint64_t seq, const char *why)
{
    (void)ud, (void)shard, (void)sid, (void)seq, (void)why;
    atomic_fetch_add(&id.lost, 1);
}
static const struct gw_identify_ops stub_ops = {st_start,   st_plan,      st_wait,  st_stamp,
                                                st_take,    st_give_back, st_spend, st_budget,
                                                st_refresh, st_stop,      st_lost};

/* ---- a gateway on its own thread ---- */

static struct cfg_config cfg;
static int cfg_loaded;
static struct gw_gateway *gw;
static pthread_t loop;
static atomic_int loop_done;

static void *loop_main(void *arg)
{
    (void)arg;
    gw_gateway_run(gw);
    atomic_store(&loop_done, 1);
    return NULL;
}

static int gateway_up(int total, int cluster, int refuse)
{
    char json[512], err[256];
    if (fake_start(total)) {
        fprintf(stderr, "fake-discord did not start\n");
        return -1;
    }
    snprintf(json, sizeof(json),
             "{\"token\":\"test-token\",\"api_base\":\"http://127.0.0.1:%d/api/v10\","
             "\"shards\":{\"total\":%d},\"compress\":\"zlib\",\"reconnect_base_ms\":50,"
             "\"reconnect_max_ms\":200,\"testing\":{\"identify_interval_ms\":100},"
             "\"webhooks\":[{\"url\":\"http://127.0.0.1:9/\",\"events\":[\"*\"],\"secret\":null}]}",
             fake_port, total);
    if (cfg_load_string(json, strlen(json), &cfg, err, sizeof(err))) {
        fprintf(stderr, "config: %s\n", err);
        return -1;
    }
    cfg_loaded = 1;
    cfg.cluster = cluster;
    memset(&id, 0, sizeof(id));
    atomic_store(&id.remaining, 1000);
    atomic_store(&id.refuse, refuse);
    struct gw_sink sink = {sink_push, NULL};
    struct gw_identify ident = {&stub_ops, NULL};
    if (gw_gateway_new(&cfg, &sink, &ident, NULL, &gw, err, sizeof(err))) {
        fprintf(stderr, "gateway: %s\n", err);
        return -1;
    }
    atomic_store(&loop_done, 0);
    return pthread_create(&loop, NULL, loop_main, NULL) ? -1 : 0;
}

static void gateway_down(void)
{
    if (gw) {
        gw_gateway_stop(gw);
        pthread_join(loop, NULL);
        gw_gateway_free(gw);
        gw = NULL;
    }
    if (cfg_loaded)
        cfg_free(&cfg);
    cfg_loaded = 0;
    fake_stop();
}

/* Until cond holds (checked every 20 ms) or 10 s passed. */
#define WAIT_FOR(cond)                                                                             \
    do {                                                                                           \
        for (int w_ = 0; w_ < 500 && !(cond); w_++)                                                \
            usleep(20000);                                                                         \
        ASSERT(cond);                                                                              \
    } while (0)

static int shard_status_is(int shard, const char *status)
{
    struct gw_shard_info info;
    return gw_gateway_shard_info(gw, shard, &info) == 0 && !strcmp(info.status, status);
}

static int held_count(void)
{
    struct gw_overview ov;
    return gw_gateway_snapshot(gw, &ov, NULL, 0);
}

/* ---- tests ---- */

TEST(cluster_mode_holds_nothing_until_asked_then_identifies_and_resumes)
{
    ASSERT_EQ(gateway_up(4, 1, 0), 0);
    for (int i = 0; i < 4; i++) {
        ASSERT(gw_gateway_may_hold(gw, i));
        ASSERT(!gw_gateway_runs(gw, i));
    }
    ASSERT(!gw_gateway_may_hold(gw, 4));
    ASSERT_EQ(gw_gateway_hold(gw, 4, NULL), SH_ENOTFOUND);
    ASSERT_EQ(gw_gateway_send(gw, 1, "{\"op\":3,\"d\":{}}", 15), SH_ENOTFOUND);
    usleep(400000);
    ASSERT_EQ(wire_of(-1, 2).conns, 0); /* nothing connects */
    ASSERT_EQ(held_count(), 0);
    ASSERT(!atomic_load(&loop_done)); /* and the loop goes on with nothing held */

    ASSERT_EQ(gw_gateway_hold(gw, 2, NULL), SH_OK);
    ASSERT_EQ(gw_gateway_hold(gw, 2, NULL), SH_EEXIST);
    ASSERT(gw_gateway_runs(gw, 2));
    WAIT_FOR(shard_status_is(2, "ready"));
    ASSERT_EQ(held_count(), 1);
    struct gw_shard_info info;
    ASSERT_EQ(gw_gateway_shard_info(gw, 2, &info), SH_OK);
    ASSERT_EQ(gw_gateway_shard_info(gw, 1, &info), SH_ENOTFOUND); /* unheld: not listed */
    ASSERT_EQ(wire_of(2, 2).ops, 1);                              /* one IDENTIFY */
    ASSERT_EQ(wire_of(-1, 2).conns, 1);
    ASSERT_EQ(gw_gateway_shard_info(gw, 2, &info), SH_OK);
    struct gw_resume_point from;
    memset(&from, 0, sizeof(from));
    snprintf(from.session_id, sizeof(from.session_id), "%s", info.session_id);
    snprintf(from.resume_url, sizeof(from.resume_url), "ws://127.0.0.1:%d", fake_port);
    from.seq = info.seq;

    /* release: closed with 4000 by this side, gone from the snapshot, loop still running */
    ASSERT_EQ(gw_gateway_release(gw, 2), SH_OK);
    ASSERT_EQ(gw_gateway_release(gw, 2), SH_OK); /* idempotent */
    ASSERT(!gw_gateway_runs(gw, 2));
    WAIT_FOR(wire_of(2, 2).closed_4000_by_client == 1 && wire_of(2, 2).open == 0);
    WAIT_FOR(held_count() == 0);
    usleep(300000);
    ASSERT_EQ(wire_of(2, 2).conns, 1); /* and it does not come back */
    ASSERT(!atomic_load(&loop_done));

    /* held again from where it was: RESUME on the same session, no IDENTIFY */
    ASSERT_EQ(gw_gateway_hold(gw, 2, &from), SH_OK);
    WAIT_FOR(shard_status_is(2, "ready"));
    struct wire w = wire_of(2, 6);
    ASSERT_EQ(w.ops, 1);
    ASSERT_STR_EQ(w.last_resume_session, from.session_id);
    ASSERT_EQ(w.last_resume_seq, (long long)from.seq);
    ASSERT_EQ(wire_of(2, 2).ops, 1);
    ASSERT_EQ(atomic_load(&id.lost), 0);
    gateway_down();
}

TEST(a_hold_whose_session_is_gone_reports_it_lost_once)
{
    ASSERT_EQ(gateway_up(4, 1, 0), 0);
    atomic_store(&lost_events, 0);
    struct gw_resume_point from;
    memset(&from, 0, sizeof(from));
    snprintf(from.session_id, sizeof(from.session_id), "gone-session");
    snprintf(from.resume_url, sizeof(from.resume_url), "ws://127.0.0.1:%d", fake_port);
    from.seq = 17;
    ASSERT_EQ(gw_gateway_hold(gw, 0, &from), SH_OK);
    WAIT_FOR(shard_status_is(0, "ready")); /* op 9, then a new session */
    ASSERT_EQ(atomic_load(&lost_events), 1);
    ASSERT_EQ(atomic_load(&id.lost), 1);
    ASSERT_STR_EQ(lost_event,
                  "{\"shard\":[0,4],\"op\":0,\"t\":\"SHARDHOOK_SESSION_LOST\",\"s\":null,"
                  "\"key\":\"0:gone-session:17.1\",\"d\":{\"session_id\":\"gone-session\","
                  "\"seq\":17,\"reason\":\"invalid_session\"}}");
    ASSERT_EQ(wire_of(0, 2).ops, 1);
    gateway_down();
}

TEST(release_while_connecting_gives_back_the_budget_token)
{
    ASSERT_EQ(gateway_up(4, 1, 0), 0);
    for (int round = 0; round < 5; round++) {
        ASSERT_EQ(gw_gateway_hold(gw, 1, NULL), SH_OK);
        usleep((useconds_t)(round * 3000));
        ASSERT_EQ(gw_gateway_release(gw, 1), SH_OK);
    }
    WAIT_FOR(held_count() == 0 && wire_of(1, 2).open == 0);
    usleep(300000);
    /* every reservation was either spent by an IDENTIFY that went out or given back */
    ASSERT_EQ(atomic_load(&id.takes), atomic_load(&id.give_backs) + wire_of(1, 2).ops);
    ASSERT_EQ(wire_of(1, 2).open, 0);
    ASSERT_EQ(gw_gateway_hold(gw, 1, NULL), SH_OK); /* and it can be held again */
    WAIT_FOR(shard_status_is(1, "ready"));
    gateway_down();
}

TEST(lease_deadline_keeps_a_dropped_shard_away_until_it_moves)
{
    ASSERT_EQ(gateway_up(4, 1, 0), 0);
    ASSERT_EQ(gw_gateway_hold(gw, 3, NULL), SH_OK);
    WAIT_FOR(shard_status_is(3, "ready"));
    gw_gateway_set_lease_deadline(gw, sh_now_ms()); /* ran out now */
    int log_level = sh_log_level, saved_err = dup(2);
    FILE *log = tmpfile();
    sh_log_level = SH_LOG_WARN;
    dup2(fileno(log), 2);
    cJSON_Delete(fake_call("/_fake/close", "{\"shard\":3,\"code\":4000}"));
    usleep(300000);
    gw_gateway_set_lease_deadline(gw, sh_now_ms() - 1); /* moved, still past: looks again */
    usleep(1500000);                                    /* past a reconnect and a re-check */
    dup2(saved_err, 2);
    close(saved_err);
    sh_log_level = log_level;
    char text[8192] = "";
    rewind(log);
    size_t got = fread(text, 1, sizeof(text) - 1, log);
    text[got] = '\0';
    fclose(log);
    const char *line = "msg=\"lease ran out; not reconnecting\" shard=3";
    const char *first = strstr(text, line);
    ASSERT(first);
    ASSERT(!strstr(first + 1, line)); /* once per hold-up */
    ASSERT_EQ(wire_of(3, 6).conns, 1);
    ASSERT(shard_status_is(3, "disconnected"));
    gw_gateway_set_lease_deadline(gw, sh_now_ms() + 60000);
    WAIT_FOR(shard_status_is(3, "ready"));
    ASSERT_EQ(wire_of(3, 6).ops, 1); /* resumed, not identified again */
    ASSERT_EQ(wire_of(3, 2).ops, 1);
    gateway_down();
}

/* Sends queued for a held shard that never connected (its lease ran out) go with the release. */
/* A handoff's release: told once the socket is gone, and the peer saw it closed by then. */
static atomic_int closed_calls, closed_open_then = -1, closed_shard = -1;

static void on_closed(void *arg, int shard)
{
    (void)arg;
    atomic_store(&closed_open_then, wire_of(shard, 2).open); /* what the fake saw by now */
    atomic_store(&closed_shard, shard);
    atomic_fetch_add(&closed_calls, 1);
}

TEST(release_then_tells_once_the_socket_is_gone)
{
    ASSERT_EQ(gateway_up(4, 1, 0), 0);
    ASSERT_EQ(gw_gateway_hold(gw, 1, NULL), SH_OK);
    WAIT_FOR(shard_status_is(1, "ready"));
    ASSERT_EQ(wire_of(1, 2).open, 1);
    struct gw_released then = {.closed = on_closed, .arg = NULL};
    atomic_store(&closed_calls, 0);
    ASSERT_EQ(gw_gateway_release_then(gw, 1, &then), SH_OK);
    WAIT_FOR(atomic_load(&closed_calls) == 1);
    ASSERT_EQ(atomic_load(&closed_shard), 1);
    ASSERT_EQ(atomic_load(&closed_open_then), 0); /* the connection had ended at the fake */
    ASSERT_EQ(wire_of(1, 2).closed_4000_by_client, 1);
    /* a shard not held (any more): told at once, still exactly once per call */
    ASSERT_EQ(gw_gateway_release_then(gw, 1, &then), SH_OK);
    WAIT_FOR(atomic_load(&closed_calls) == 2);
    ASSERT_EQ(gw_gateway_release_then(gw, 9, &then), SH_ENOTFOUND);
    usleep(200000);
    ASSERT_EQ(atomic_load(&closed_calls), 2);
    gateway_down();
}

TEST(release_drops_queued_sends_and_says_how_many)
{
    ASSERT_EQ(gateway_up(4, 1, 0), 0);
    gw_gateway_set_lease_deadline(gw, sh_now_ms());
    ASSERT_EQ(gw_gateway_hold(gw, 1, NULL), SH_OK);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(gw_gateway_send(gw, 1, "{\"op\":3,\"d\":{}}", 15), SH_OK);
    struct gw_shard_info info;
    WAIT_FOR(gw_gateway_shard_info(gw, 1, &info) == 0 && info.queued_sends == 3 &&
             !strcmp(info.status, "disconnected"));
    int log_level = sh_log_level, saved_err = dup(2);
    FILE *log = tmpfile();
    sh_log_level = SH_LOG_INFO;
    dup2(fileno(log), 2);
    ASSERT_EQ(gw_gateway_release(gw, 1), SH_OK);
    ASSERT_EQ(gw_gateway_send(gw, 1, "{\"op\":3,\"d\":{}}", 15), SH_ENOTFOUND);
    for (int i = 0; i < 100 && held_count(); i++)
        usleep(20000);
    dup2(saved_err, 2);
    close(saved_err);
    sh_log_level = log_level;
    char text[8192] = "";
    rewind(log);
    text[fread(text, 1, sizeof(text) - 1, log)] = '\0';
    fclose(log);
    ASSERT_EQ(held_count(), 0);
    ASSERT(
        strstr(text, "msg=\"shard released\" shard=1 status=disconnected seq=0 dropped_sends=3"));
    ASSERT_EQ(wire_of(-1, 2).conns, 0);
}

TEST(identify_refused_closes_with_4000_and_waits_for_the_budget)
{
    /* single mode: held from the start; its one connection never says which shard (no IDENTIFY) */
    ASSERT_EQ(gateway_up(1, 0, 1), 0);
    WAIT_FOR(wire_of(-1, 2).closed_4000_by_client >= 1);
    struct gw_overview ov;
    WAIT_FOR((gw_gateway_snapshot(gw, &ov, NULL, 0), ov.identify_stopped == 1));
    ASSERT_EQ(ov.session_reserve, ov.session_remaining);
    ASSERT_EQ(wire_of(-1, 2).ops, 0); /* no IDENTIFY went out */
    WAIT_FOR(atomic_load(&id.takes) == atomic_load(&id.give_backs));
    ASSERT(shard_status_is(0, "queued"));
    atomic_store(&id.refuse, 0); /* the budget refills: its re-read lets the shard go on */
    WAIT_FOR(shard_status_is(0, "ready"));
    ASSERT(atomic_load(&id.refreshes) >= 1);
    ASSERT_EQ(wire_of(-1, 2).ops, 1);
    WAIT_FOR((gw_gateway_snapshot(gw, &ov, NULL, 0), ov.identify_stopped == 0));
    ASSERT_EQ(ov.session_reserve, 7);
    gateway_down();
}

TEST(an_unheld_shard_costs_little)
{
#if defined(__SANITIZE_ADDRESS__)
    SKIP("heap figures under AddressSanitizer");
#else
    struct mallinfo2 before = mallinfo2();
    ASSERT_EQ(gateway_up(1000, 1, 0), 0);
    struct mallinfo2 after = mallinfo2();
    double per = (double)(after.uordblks + after.hblkhd - before.uordblks - before.hblkhd) / 1000;
    printf("  heap per prepared, unheld shard: %.0f bytes\n", per);
    ASSERT(per < 4096); /* no inflate context, no send queue */
    gateway_down();
#endif
}

/* A case, then its gateway and fake stopped even when it failed half-way. */
#define CASE(name)                                                                                 \
    do {                                                                                           \
        RUN(name);                                                                                 \
        gateway_down();                                                                            \
    } while (0)

static void all(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    sh_log_level = getenv("TEST_VERBOSE") ? SH_LOG_DEBUG : SH_LOG_OFF;
    CASE(cluster_mode_holds_nothing_until_asked_then_identifies_and_resumes);
    CASE(a_hold_whose_session_is_gone_reports_it_lost_once);
    CASE(release_while_connecting_gives_back_the_budget_token);
    CASE(lease_deadline_keeps_a_dropped_shard_away_until_it_moves);
    CASE(release_then_tells_once_the_socket_is_gone);
    CASE(release_drops_queued_sends_and_says_how_many);
    CASE(identify_refused_closes_with_4000_and_waits_for_the_budget);
    CASE(an_unheld_shard_costs_little);
    curl_global_cleanup();
}

TEST_MAIN(all())
