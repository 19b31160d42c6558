/*
 * tests/fake/fake_discord.c: main() of build/fake-discord, the test double for Discord:
 * command line, the one libwebsockets context (one thread), REST bootstrap
 * (/api/v10/gateway[/bot]) and the /_fake/ control API the tests drive it with.
 * The Gateway rules live in gateway.c; this file only routes HTTP and lws callbacks.
 * Test code: it includes nothing from the daemon's rooms, only lib/.
 */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/errors.h"
#include "tests/fake/fake.h"
#include "tests/fake/replay.h"

#define HTTP_CHUNK 16384

struct fk_state fk;

static volatile sig_atomic_t stop;
static struct timespec t0;
static lws_sorted_usec_list_t sul_tick, sul_trickle, sul_stream;

/* One HTTP request on a connection (reset at each new transaction). */
struct http_req {
    char path[256];
    int post;
    int too_big;
    struct sh_buf body;
    char *resp; /* response body */
    size_t resp_len, resp_off;
};

struct pss {
    struct fk_conn *conn;
    struct http_req *h;
};

double fk_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)(ts.tv_sec - t0.tv_sec) * 1000.0 + (double)(ts.tv_nsec - t0.tv_nsec) / 1e6;
}

/* ---- HTTP responses ---- */

struct hdr {
    const char *name; /* with the trailing colon, e.g. "retry-after:" */
    const char *value;
};

static int respond(struct lws *wsi, struct http_req *h, int status, const char *body, size_t len,
                   const struct hdr *extra, int n_extra)
{
    unsigned char hb[LWS_PRE + 2048];
    unsigned char *start = hb + LWS_PRE, *p = start, *end = hb + sizeof(hb) - 1;
    free(h->resp);
    h->resp = malloc(len ? len : 1);
    if (!h->resp)
        return -1;
    memcpy(h->resp, body, len);
    h->resp_len = len;
    h->resp_off = 0;
    if (lws_add_http_common_headers(wsi, (unsigned)status, "application/json", len, &p, end))
        return -1;
    for (int i = 0; i < n_extra; i++)
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)extra[i].name,
                                        (const unsigned char *)extra[i].value,
                                        (int)strlen(extra[i].value), &p, end))
            return -1;
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    lws_callback_on_writable(wsi);
    return 0;
}

static int respondf(struct lws *wsi, struct http_req *h, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int respondf(struct lws *wsi, struct http_req *h, int status, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return -1;
    return respond(wsi, h, status, buf, (size_t)n, NULL, 0);
}

static int respond_buf(struct lws *wsi, struct http_req *h, int status, struct sh_buf *b)
{
    int rc = respond(wsi, h, status, b->data ? b->data : "", b->len, NULL, 0);
    sh_buf_free(b);
    return rc;
}

static int http_writeable(struct lws *wsi, struct http_req *h)
{
    unsigned char buf[LWS_PRE + HTTP_CHUNK];
    if (!h || !h->resp)
        return 0;
    size_t n = h->resp_len - h->resp_off;
    if (n > HTTP_CHUNK)
        n = HTTP_CHUNK;
    memcpy(buf + LWS_PRE, h->resp + h->resp_off, n);
    h->resp_off += n;
    int final = h->resp_off == h->resp_len;
    if (lws_write(wsi, buf + LWS_PRE, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
        return -1;
    if (!final) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    SH_FREE(h->resp);
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* ---- REST ---- */

static int rest_fail(struct lws *wsi, struct http_req *h)
{
    int status = fk.rest_fail_status;
    fk.rest_fail_count--;
    fk_rec_rest(h->path, status);
    if (status == 429) {
        double ra = fk.rest_fail_retry_after >= 0 ? fk.rest_fail_retry_after : 1.0;
        char secs[32], after[32], body[256];
        snprintf(secs, sizeof(secs), "%.0f", ceil(ra));
        snprintf(after, sizeof(after), "%.3f", ra);
        int n = snprintf(body, sizeof(body),
                         "{\"message\":\"You are being rate limited.\",\"retry_after\":%.3f,"
                         "\"global\":false}",
                         ra);
        struct hdr hdrs[] = {{"retry-after:", secs},
                             {"x-ratelimit-limit:", "1"},
                             {"x-ratelimit-remaining:", "0"},
                             {"x-ratelimit-reset-after:", after},
                             {"x-ratelimit-bucket:", "fake-gateway-bot"}};
        return respond(wsi, h, 429, body, (size_t)n, hdrs, 5);
    }
    return respondf(wsi, h, status, "{\"message\":\"%d: fake failure\",\"code\":0}", status);
}

static int rest_gateway_bot(struct lws *wsi, struct http_req *h)
{
    char auth[512], want[512];
    if (fk.rest_fail_count > 0)
        return rest_fail(wsi, h);
    if (fk.rest_hold_count > 0) { /* a Discord that takes the request and never answers */
        fk.rest_hold_count--;
        fk_rec_rest(h->path, 0);
        return 0;
    }
    snprintf(want, sizeof(want), "Bot %s", fk.o.token);
    if (lws_hdr_copy(wsi, auth, sizeof(auth), WSI_TOKEN_HTTP_AUTHORIZATION) < 0 ||
        strcmp(auth, want)) {
        fk_rec_rest(h->path, 401);
        return respondf(wsi, h, 401, "{\"message\":\"401: Unauthorized\",\"code\":0}");
    }
    fk_budget_refresh();
    double reset_after = fk.reset_at_ms - fk_now_ms();
    fk_rec_rest(h->path, 200);
    char url[600];
    if (fk.o.gateway_url)
        snprintf(url, sizeof(url), "%s", fk.o.gateway_url);
    else
        snprintf(url, sizeof(url), "ws://%s:%d", fk.o.host, fk.port);
    return respondf(wsi, h, 200,
                    "{\"url\":\"%s\",\"shards\":%d,\"session_start_limit\":{\"total\":%ld,"
                    "\"remaining\":%ld,\"reset_after\":%.0f,\"max_concurrency\":%d}}",
                    url, fk.o.shards, fk.o.session_total, fk.remaining > 0 ? fk.remaining : 0,
                    reset_after > 0 ? reset_after : 0, fk.o.max_concurrency);
}

/* ---- control API ---- */

static int get_int(const cJSON *obj, const char *key, long *out, long def, long lo, long hi)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!j || cJSON_IsNull(j)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || j->valuedouble < lo ||
        j->valuedouble > hi)
        return -1;
    *out = (long)j->valuedouble;
    return 0;
}

static int valid_event_name(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 64)
        return 0;
    for (const char *p = t; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return 0;
    return 1;
}

static int bad_request(struct lws *wsi, struct http_req *h, const char *what)
{
    return respondf(wsi, h, 400, "{\"message\":\"%s\",\"code\":0}", what);
}

/* The shard a control body names (-1: omitted); -2 when invalid. */
static long body_shard(const cJSON *body)
{
    long shard;
    if (get_int(body, "shard", &shard, -1, 0, fk.o.shards - 1))
        return -2;
    return shard;
}

/* The live connection a control body targets: "conn" id, else "shard". NULL if none. */
static struct fk_conn *body_conn(const cJSON *body, long shard)
{
    long id;
    if (!get_int(body, "conn", &id, -1, 1, 1L << 53) && id > 0)
        return fk_conn_by_id((uint64_t)id);
    return shard >= 0 ? fk_shard_conn((int)shard) : NULL;
}

static int ctl_dispatch(struct lws *wsi, struct http_req *h, const cJSON *body)
{
    long shard = body_shard(body);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(body, "t");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(body, "d");
    if (shard == -2)
        return bad_request(wsi, h, "shard: not a shard of this fake");
    if (!cJSON_IsString(t) || !valid_event_name(t->valuestring))
        return bad_request(wsi, h, "t: an event name is required");
    char *dtext = d ? cJSON_PrintUnformatted(d) : NULL;
    const char *dj = dtext ? dtext : "{}";
    struct sh_buf out;
    sh_buf_init(&out, 1 << 20);
    int rc = sh_buf_append_str(&out, "{\"s\":[");
    int n = 0;
    for (long i = 0; i < fk.o.shards; i++) {
        if ((shard >= 0 && i != shard) || !fk.shards[i].cur)
            continue;
        uint64_t s = fk_emit(fk.shards[i].cur, t->valuestring, dj, strlen(dj));
        rc = rc ? rc : sh_buf_printf(&out, "%s%" PRIu64, n++ ? "," : "", s);
    }
    cJSON_free(dtext);
    if (shard >= 0 && n == 0) {
        sh_buf_free(&out);
        return respondf(wsi, h, 409, "{\"message\":\"shard %ld has no session\",\"code\":0}",
                        shard);
    }
    rc = rc ? rc : sh_buf_append_str(&out, "]}");
    if (rc) {
        sh_buf_free(&out);
        return respondf(wsi, h, 500, "{\"message\":\"%s\",\"code\":0}", sh_strerror(rc));
    }
    return respond_buf(wsi, h, 200, &out);
}

static int ctl_burst(struct lws *wsi, struct http_req *h, const cJSON *body)
{
    long shard = body_shard(body), count;
    const cJSON *tj = cJSON_GetObjectItemCaseSensitive(body, "t");
    const char *t = "MESSAGE_CREATE";
    if (shard == -2)
        return bad_request(wsi, h, "shard: not a shard of this fake");
    if (get_int(body, "count", &count, -1, 1, FK_MAX_BURST) || count < 1)
        return bad_request(wsi, h, "count: an integer from 1 to 2000000 is required");
    if (tj && !cJSON_IsNull(tj)) {
        if (!cJSON_IsString(tj) || !valid_event_name(tj->valuestring))
            return bad_request(wsi, h, "t: not an event name");
        t = tj->valuestring;
    }
    struct sh_buf out;
    sh_buf_init(&out, 1 << 20);
    int rc = sh_buf_append_str(&out, shard >= 0 ? "" : "{\"shards\":[");
    char ev[4096];
    int n = 0;
    for (long i = 0; i < fk.o.shards; i++) {
        struct fk_session *s = fk.shards[i].cur;
        if ((shard >= 0 && i != shard) || !s)
            continue;
        uint64_t salt = ++fk.burst_id, first = 0, last = 0;
        for (long k = 1; k <= count; k++) {
            int len = fk_ev_message(ev, sizeof(ev), s->shard, s->total, (uint64_t)k, salt);
            if (len < 0)
                break;
            last = fk_emit(s, t, ev, (size_t)len);
            if (k == 1)
                first = last;
        }
        if (shard >= 0)
            rc = rc ? rc
                    : sh_buf_printf(&out, "{\"first_s\":%" PRIu64 ",\"last_s\":%" PRIu64 "}", first,
                                    last);
        else
            rc = rc ? rc
                    : sh_buf_printf(
                          &out, "%s{\"shard\":%ld,\"first_s\":%" PRIu64 ",\"last_s\":%" PRIu64 "}",
                          n ? "," : "", i, first, last);
        n++;
    }
    if (shard >= 0 && n == 0) {
        sh_buf_free(&out);
        return respondf(wsi, h, 409, "{\"message\":\"shard %ld has no session\",\"code\":0}",
                        shard);
    }
    if (shard < 0)
        rc = rc ? rc : sh_buf_append_str(&out, "]}");
    if (rc) {
        sh_buf_free(&out);
        return respondf(wsi, h, 500, "{\"message\":\"%s\",\"code\":0}", sh_strerror(rc));
    }
    return respond_buf(wsi, h, 200, &out);
}

static int ctl_op(struct lws *wsi, struct http_req *h, const cJSON *body)
{
    long shard = body_shard(body), op;
    if (shard == -2)
        return bad_request(wsi, h, "shard: not a shard of this fake");
    if (get_int(body, "op", &op, -1, 0, 1000000) || op < 0)
        return bad_request(wsi, h, "op: an integer is required");
    struct fk_conn *c = body_conn(body, shard);
    if (!c)
        return respondf(wsi, h, 409, "{\"message\":\"no live connection\",\"code\":0}");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(body, "d");
    char *dtext = d ? cJSON_PrintUnformatted(d) : NULL;
    struct sh_buf msg;
    sh_buf_init(&msg, FK_MAX_BODY + 256);
    int rc = sh_buf_printf(&msg, "{\"t\":null,\"s\":null,\"op\":%ld,\"d\":%s}", op,
                           dtext ? dtext : "null");
    cJSON_free(dtext);
    if (!rc)
        rc = fk_conn_send(c, msg.data, msg.len);
    sh_buf_free(&msg);
    if (rc)
        return respondf(wsi, h, 500, "{\"message\":\"%s\",\"code\":0}", sh_strerror(rc));
    return respondf(wsi, h, 200, "{\"conn\":%" PRIu64 "}", c->rec->id);
}

/*
 * {"shard":0,"text":"..."}: send text as one payload through the connection's compression
 * (a well-compressed but malformed payload); {"shard":0,"garbage":"..."}: send those bytes as
 * one binary message with no compression at all (a corrupt stream for zlib or zstd).
 */
static int ctl_raw(struct lws *wsi, struct http_req *h, const cJSON *body)
{
    long shard = body_shard(body);
    if (shard == -2)
        return bad_request(wsi, h, "shard: not a shard of this fake");
    struct fk_conn *c = body_conn(body, shard);
    if (!c)
        return respondf(wsi, h, 409, "{\"message\":\"no live connection\",\"code\":0}");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(body, "text");
    const cJSON *garbage = cJSON_GetObjectItemCaseSensitive(body, "garbage");
    int rc;
    if (cJSON_IsString(text))
        rc = fk_conn_send(c, text->valuestring, strlen(text->valuestring));
    else if (cJSON_IsString(garbage))
        rc = fk_conn_send_raw(c, garbage->valuestring, strlen(garbage->valuestring), 1);
    else
        return bad_request(wsi, h, "text or garbage: a string is required");
    if (rc)
        return respondf(wsi, h, 500, "{\"message\":\"%s\",\"code\":0}", sh_strerror(rc));
    return respondf(wsi, h, 200, "{\"conn\":%" PRIu64 "}", c->rec->id);
}

/* {"count":N}: the next N RESUMEs of a valid session are closed with 4000 instead of resumed. */
static int ctl_resume_fail(struct lws *wsi, struct http_req *h, const cJSON *body)
{
    long count;
    if (get_int(body, "count", &count, -1, 0, 1000000) || count < 0)
        return bad_request(wsi, h, "count: an integer is required");
    fk.resume_fail_count = (int)count;
    return respondf(wsi, h, 200, "{\"count\":%ld}", count);
}

static int ctl_close(struct lws *wsi, struct http_req *h, const cJSON *body)
{
    long shard = body_shard(body), code;
    if (shard == -2)
        return bad_request(wsi, h, "shard: not a shard of this fake");
    if (get_int(body, "code", &code, 4000, 1000, 4999))
        return bad_request(wsi, h, "code: a close code from 1000 to 4999");
    struct fk_conn *c = body_conn(body, shard);
    if (!c)
        return respondf(wsi, h, 409, "{\"message\":\"no live connection\",\"code\":0}");
    if (!c->close_code && !c->drop)
        c->rec->reason = "control";
    fk_conn_request_close(c, (int)code,
                          cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "drop")));
    return respondf(wsi, h, 200, "{\"conn\":%" PRIu64 "}", c->rec->id);
}

static int ctl_ack(struct lws *wsi, struct http_req *h, const cJSON *body)
{
    long shard = body_shard(body), id;
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(body, "withhold");
    if (shard == -2)
        return bad_request(wsi, h, "shard: not a shard of this fake");
    if (!cJSON_IsBool(w))
        return bad_request(wsi, h, "withhold: true or false is required");
    int on = cJSON_IsTrue(w);
    if (!get_int(body, "conn", &id, -1, 1, 1L << 53) && id > 0) {
        struct fk_conn *c = fk_conn_by_id((uint64_t)id);
        if (!c)
            return respondf(wsi, h, 409, "{\"message\":\"no live connection\",\"code\":0}");
        c->withhold_ack = on;
    } else if (shard >= 0) {
        fk.shards[shard].withhold_ack = on;
    } else {
        fk.withhold_all = on;
        for (int i = 0; i < fk.o.shards; i++)
            fk.shards[i].withhold_ack = on;
    }
    return respondf(wsi, h, 200, "{\"withhold\":%s}", on ? "true" : "false");
}

static int ctl_rest_fail(struct lws *wsi, struct http_req *h, const cJSON *body)
{
    long count, status;
    const cJSON *ra = cJSON_GetObjectItemCaseSensitive(body, "retry_after");
    if (get_int(body, "count", &count, 1, 0, 1000000))
        return bad_request(wsi, h, "count: a non-negative integer");
    if (get_int(body, "status", &status, 500, 100, 599))
        return bad_request(wsi, h, "status: an HTTP status");
    if (ra && !cJSON_IsNull(ra) && (!cJSON_IsNumber(ra) || ra->valuedouble < 0))
        return bad_request(wsi, h, "retry_after: seconds, a non-negative number");
    fk.rest_fail_count = (int)count;
    fk.rest_fail_status = (int)status;
    fk.rest_fail_retry_after = cJSON_IsNumber(ra) ? ra->valuedouble : -1;
    return respondf(wsi, h, 200, "{\"count\":%ld,\"status\":%ld}", count, status);
}

static int ctl_rest_hold(struct lws *wsi, struct http_req *h, const cJSON *body)
{
    long count;
    if (get_int(body, "count", &count, 1, 0, 1000000))
        return bad_request(wsi, h, "count: a non-negative integer");
    fk.rest_hold_count = (int)count;
    return respondf(wsi, h, 200, "{\"count\":%ld}", count);
}

static int ctl_members(struct lws *wsi, struct http_req *h, const cJSON *body)
{
    char out[512];
    if (fk_ctl_members(body, out, sizeof(out)))
        return bad_request(wsi, h, out);
    return respondf(wsi, h, 200, "%s", out);
}

static int ctl_quiet(struct lws *wsi, struct http_req *h, const cJSON *body)
{
    char out[256];
    if (fk_ctl_quiet(body, out, sizeof(out)))
        return bad_request(wsi, h, out);
    return respondf(wsi, h, 200, "%s", out);
}

static void stream(lws_sorted_usec_list_t *sul)
{
    if (fk.stream_ms <= 0)
        return;
    fk_stream_tick();
    lws_sul_schedule(fk.ctx, 0, sul, stream, (lws_usec_t)fk.stream_ms * LWS_US_PER_MS);
}

/*
 * POST /_fake/stream {"period_ms": N, "shard": S}: one MESSAGE_CREATE every N ms to the current
 * session of shard S (omitted: every shard), whether a connection is live or not, as Discord
 * keeps a session's events for a RESUME. period_ms 0 stops the stream (of S, or of all).
 */
static int ctl_stream(struct lws *wsi, struct http_req *h, const cJSON *body)
{
    long shard = body_shard(body), period;
    if (shard == -2)
        return bad_request(wsi, h, "shard: not a shard of this fake");
    if (get_int(body, "period_ms", &period, -1, 0, 3600000) || period < 0)
        return bad_request(wsi, h, "period_ms: an integer from 0 to 3600000 is required");
    for (long i = 0; i < fk.o.shards; i++)
        if (shard < 0 || i == shard)
            fk.streaming[i] = period > 0;
    if (period > 0) {
        fk.stream_ms = period;
        lws_sul_schedule(fk.ctx, 0, &sul_stream, stream, (lws_usec_t)period * LWS_US_PER_MS);
    } else if (shard < 0) {
        fk.stream_ms = 0;
        lws_sul_cancel(&sul_stream);
    }
    return respondf(wsi, h, 200, "{\"period_ms\":%ld,\"emitted\":%" PRIu64 "}", fk.stream_ms,
                    fk.stream_n);
}

/* POST /_fake/expire {"shard": S} (omitted: every shard): the sessions' next RESUME gets op 9. */
static int ctl_expire(struct lws *wsi, struct http_req *h, const cJSON *body)
{
    long shard = body_shard(body);
    if (shard == -2)
        return bad_request(wsi, h, "shard: not a shard of this fake");
    struct sh_buf out;
    sh_buf_init(&out, 1 << 20);
    int rc = sh_buf_append_str(&out, "{\"expired\":");
    rc = rc ? rc : fk_expire(shard, &out);
    rc = rc ? rc : sh_buf_append_str(&out, "}");
    if (rc) {
        sh_buf_free(&out);
        return respondf(wsi, h, 500, "{\"message\":\"%s\",\"code\":0}", sh_strerror(rc));
    }
    return respond_buf(wsi, h, 200, &out);
}

/*
 * POST /_fake/guilds {"shard": S, "guilds": [GUILD_CREATE d, ...]}: every later IDENTIFY of S
 * gets a READY listing exactly these guilds, then their GUILD_CREATEs (an entry that is
 * {"id", "unavailable": true} is listed and never sent). "guilds": null: back to --guilds.
 */
static int ctl_guilds(struct lws *wsi, struct http_req *h, const cJSON *body)
{
    long shard = body_shard(body);
    const cJSON *guilds = cJSON_GetObjectItemCaseSensitive(body, "guilds");
    if (shard < 0)
        return bad_request(wsi, h, "shard: one shard of this fake is required");
    if (!cJSON_IsArray(guilds) && !cJSON_IsNull(guilds))
        return bad_request(wsi, h, "guilds: an array of guild objects or null is required");
    const cJSON *g;
    cJSON_ArrayForEach(g, guilds)
    {
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(g, "id")))
            return bad_request(wsi, h, "guilds: every guild needs a string id");
    }
    fk_set_guilds((int)shard, cJSON_IsArray(guilds) ? cJSON_Duplicate(guilds, 1) : NULL);
    return respondf(wsi, h, 200, "{\"guilds\":%d}",
                    cJSON_IsArray(guilds) ? cJSON_GetArraySize(guilds) : -1);
}

/* GET /_fake/replay: the replay's progress and send times (replay.c) */
static int ctl_replay(struct lws *wsi, struct http_req *h)
{
    struct sh_buf out;
    sh_buf_init(&out, FK_MAX_LOG_JSON);
    int rc = fk_replay_json(&out);
    if (rc) {
        sh_buf_free(&out);
        return respondf(wsi, h, 500, "{\"message\":\"replay: %s\",\"code\":0}", sh_strerror(rc));
    }
    return respond_buf(wsi, h, 200, &out);
}

/* POST /_fake/replay/start {"shard":N} (no shard: all): the waiting shards' events begin. */
static int ctl_replay_start(struct lws *wsi, struct http_req *h, const cJSON *body)
{
    long shard = body_shard(body), started;
    if (shard == -2)
        return bad_request(wsi, h, "shard: not a shard of this fake");
    if (fk_replay_start(shard, &started))
        return respondf(wsi, h, 409, "{\"message\":\"not in replay mode\",\"code\":0}");
    return respondf(wsi, h, 200, "{\"started\":%ld}", started);
}

static int ctl_log(struct lws *wsi, struct http_req *h)
{
    struct sh_buf out;
    sh_buf_init(&out, FK_MAX_LOG_JSON);
    int rc = fk_rec_json(&out);
    if (rc) {
        sh_buf_free(&out);
        return respondf(wsi, h, 500, "{\"message\":\"log: %s\",\"code\":0}", sh_strerror(rc));
    }
    return respond_buf(wsi, h, 200, &out);
}

static const struct route {
    const char *path;
    int (*fn)(struct lws *wsi, struct http_req *h, const cJSON *body);
} post_routes[] = {
    {"/_fake/dispatch", ctl_dispatch},
    {"/_fake/burst", ctl_burst},
    {"/_fake/op", ctl_op},
    {"/_fake/raw", ctl_raw},
    {"/_fake/resume-fail", ctl_resume_fail},
    {"/_fake/close", ctl_close},
    {"/_fake/ack", ctl_ack},
    {"/_fake/rest-fail", ctl_rest_fail},
    {"/_fake/rest-hold", ctl_rest_hold},
    {"/_fake/members", ctl_members},
    {"/_fake/quiet", ctl_quiet},
    {"/_fake/replay/start", ctl_replay_start},
    {"/_fake/stream", ctl_stream},
    {"/_fake/expire", ctl_expire},
    {"/_fake/guilds", ctl_guilds},
};

static int is_gateway_path(const char *p)
{
    return !strcmp(p, "/") || !strcmp(p, "/resume") || !strcmp(p, "/resume/");
}

static int not_found(struct lws *wsi, struct http_req *h)
{
    return respondf(wsi, h, 404, "{\"message\":\"404: Not Found\",\"code\":0}");
}

/* Route a complete request (GET at once, POST once its body is in). */
static int http_handle(struct lws *wsi, struct http_req *h)
{
    if (!strcmp(h->path, "/api/v10/gateway/bot") || !strcmp(h->path, "/api/v10/gateway")) {
        if (h->post)
            return respondf(wsi, h, 405, "{\"message\":\"405: Method Not Allowed\",\"code\":0}");
        if (!strcmp(h->path, "/api/v10/gateway/bot"))
            return rest_gateway_bot(wsi, h);
        fk_rec_rest(h->path, 200);
        return respondf(wsi, h, 200, "{\"url\":\"ws://%s:%d\"}", fk.o.host, fk.port);
    }
    if (!strcmp(h->path, "/_fake/log"))
        return h->post ? not_found(wsi, h) : ctl_log(wsi, h);
    if (!strcmp(h->path, "/_fake/replay"))
        return h->post ? not_found(wsi, h) : ctl_replay(wsi, h);
    if (!strcmp(h->path, "/_fake/reset-log") && h->post) {
        fk_rec_reset();
        return respondf(wsi, h, 200, "{\"ok\":true}");
    }
    if (is_gateway_path(h->path))
        return respondf(wsi, h, 400,
                        "{\"message\":\"a websocket upgrade is expected here\","
                        "\"code\":0}");
    for (size_t i = 0; h->post && i < sizeof(post_routes) / sizeof(post_routes[0]); i++) {
        if (strcmp(h->path, post_routes[i].path))
            continue;
        if (h->too_big)
            return respondf(wsi, h, 413, "{\"message\":\"body too large\",\"code\":0}");
        cJSON *body = cJSON_ParseWithLength(h->body.data ? h->body.data : "", h->body.len);
        if (!cJSON_IsObject(body)) {
            cJSON_Delete(body);
            return bad_request(wsi, h, "body: a JSON object is expected");
        }
        int rc = post_routes[i].fn(wsi, h, body);
        cJSON_Delete(body);
        return rc;
    }
    return not_found(wsi, h);
}

static void http_free(struct pss *pss)
{
    if (!pss->h)
        return;
    sh_buf_free(&pss->h->body);
    free(pss->h->resp);
    SH_FREE(pss->h);
}

static int http_start(struct lws *wsi, struct pss *pss, const char *uri)
{
    char cl[32];
    if (!pss->h) {
        pss->h = calloc(1, sizeof(*pss->h));
        if (!pss->h)
            return -1;
    }
    struct http_req *h = pss->h;
    sh_buf_free(&h->body);
    sh_buf_init(&h->body, FK_MAX_BODY);
    SH_FREE(h->resp);
    h->too_big = 0;
    snprintf(h->path, sizeof(h->path), "%s", uri ? uri : "");
    h->post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
    if (!h->post && lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
        return respondf(wsi, h, 405, "{\"message\":\"405: Method Not Allowed\",\"code\":0}");
    if (h->post && lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
        strtol(cl, NULL, 10) > 0)
        return 0; /* wait for HTTP_BODY_COMPLETION */
    return http_handle(wsi, h);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct pss *pss = user;
    if (reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED)
        fk_replay_wake(); /* the replay's pacing thread woke the loop */
    if (!pss)
        return 0; /* context- and vhost-level callbacks: nothing of ours to do */
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        http_free(pss);
        pss->conn = fk_conn_open(wsi);
        return pss->conn ? 0 : -1;
    case LWS_CALLBACK_RECEIVE:
        if (pss->conn)
            fk_conn_receive(pss->conn, in, len,
                            lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi));
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return pss->conn ? fk_conn_writeable(pss->conn) : 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (pss->conn)
            fk_conn_peer_close(pss->conn, in, len);
        return 0;
    case LWS_CALLBACK_CLOSED:
        if (pss->conn)
            fk_conn_closed(pss->conn);
        pss->conn = NULL;
        return 0;
    case LWS_CALLBACK_HTTP:
        return http_start(wsi, pss, in);
    case LWS_CALLBACK_HTTP_BODY:
        if (pss->h && !pss->h->too_big && sh_buf_append(&pss->h->body, in, len))
            pss->h->too_big = 1;
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return pss->h ? http_handle(wsi, pss->h) : -1;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return http_writeable(wsi, pss->h);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        http_free(pss);
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols protocols[] = {
    {"fake-discord", callback, sizeof(struct pss), 8192, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- timers, signals, options ---- */

static void tick(lws_sorted_usec_list_t *sul)
{
    lws_sul_schedule(fk.ctx, 0, sul, tick, 100 * LWS_US_PER_MS);
}

static void trickle(lws_sorted_usec_list_t *sul)
{
    fk_trickle_tick();
    lws_sul_schedule(fk.ctx, 0, sul, trickle, (lws_usec_t)fk.o.trickle_ms * LWS_US_PER_MS);
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void usage(FILE *f)
{
    fputs("usage: fake-discord --port N [--host 127.0.0.1] [--token TOKEN] [--shards N]\n"
          "  [--max-concurrency N] [--session-total N] [--session-remaining N]\n"
          "  [--reset-after-ms N] [--heartbeat-ms N] [--identify-interval-ms N] [--guilds N]\n"
          "  [--unavailable-forever N] [--trickle-ms N] [--zlib-split N] [--send-limit N]\n"
          "  [--send-window-ms N] [--history N] [--members-window-ms N]\n"
          "  [--gateway-url URL] [--resume-url URL]  (what /gateway/bot and READY hand out)\n",
          f);
    fk_replay_usage(f);
}

static int parse_long(const char *name, const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) {
        fprintf(stderr, "fake-discord: --%s: expected an integer from %ld to %ld, got \"%s\"\n",
                name, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv)
{
    static const struct option opts[] = {
        {"port", 1, 0, 'p'},
        {"host", 1, 0, 'H'},
        {"token", 1, 0, 't'},
        {"shards", 1, 0, 's'},
        {"max-concurrency", 1, 0, 'c'},
        {"session-total", 1, 0, 'T'},
        {"session-remaining", 1, 0, 'R'},
        {"reset-after-ms", 1, 0, 'r'},
        {"heartbeat-ms", 1, 0, 'b'},
        {"identify-interval-ms", 1, 0, 'i'},
        {"guilds", 1, 0, 'g'},
        {"unavailable-forever", 1, 0, 'u'},
        {"trickle-ms", 1, 0, 'k'},
        {"zlib-split", 1, 0, 'z'},
        {"send-limit", 1, 0, 'l'},
        {"send-window-ms", 1, 0, 'w'},
        {"history", 1, 0, 'y'},
        {"members-window-ms", 1, 0, 'm'},
        {"gateway-url", 1, 0, 'G'},
        {"resume-url", 1, 0, 'U'},
        FK_REPLAY_LONG_OPTIONS,
        {"help", 0, 0, 'h'},
        {0, 0, 0, 0},
    };
    struct fk_opts *o = &fk.o;
    long v, remaining = -1;
    *o = (struct fk_opts){.port = -1,
                          .host = "127.0.0.1",
                          .token = "test-token",
                          .shards = 1,
                          .max_concurrency = 1,
                          .session_total = 1000,
                          .session_remaining = 1000,
                          .reset_after_ms = 14400000,
                          .heartbeat_ms = 41250,
                          .identify_interval_ms = 5000,
                          .guilds = 2,
                          .unavailable_forever = 0,
                          .trickle_ms = 0,
                          .zlib_split = 2,
                          .send_limit = 120,
                          .send_window_ms = 60000,
                          .history = 100000,
                          .members_window_ms = 30000};
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        const char *name = "";
        for (const struct option *p = opts; p->name; p++)
            if (p->val == ch)
                name = p->name;
        if (ch >= FK_REPLAY_OPT_BASE && ch < FK_REPLAY_OPT_END) {
            if (fk_replay_option(ch, optarg))
                return -1;
            continue;
        }
        int rc = 0;
        switch (ch) {
        case 'p':
            rc = parse_long(name, optarg, 0, 65535, &v);
            o->port = (int)v;
            break;
        case 'H':
            o->host = optarg;
            break;
        case 't':
            o->token = optarg;
            break;
        case 's':
            rc = parse_long(name, optarg, 1, FK_MAX_SHARDS, &v);
            o->shards = (int)v;
            break;
        case 'c':
            rc = parse_long(name, optarg, 1, 16384, &v);
            o->max_concurrency = (int)v;
            break;
        case 'T':
            rc = parse_long(name, optarg, 0, 1L << 40, &o->session_total);
            break;
        case 'R':
            rc = parse_long(name, optarg, 0, 1L << 40, &remaining);
            break;
        case 'r':
            rc = parse_long(name, optarg, 0, 1L << 40, &o->reset_after_ms);
            break;
        case 'b':
            rc = parse_long(name, optarg, 1, 1L << 31, &o->heartbeat_ms);
            break;
        case 'i':
            rc = parse_long(name, optarg, 0, 1L << 31, &o->identify_interval_ms);
            break;
        case 'g':
            rc = parse_long(name, optarg, 0, 2500, &v);
            o->guilds = (int)v;
            break;
        case 'u':
            rc = parse_long(name, optarg, 0, 2500, &v);
            o->unavailable_forever = (int)v;
            break;
        case 'k':
            rc = parse_long(name, optarg, 0, 1L << 31, &o->trickle_ms);
            break;
        case 'z':
            rc = parse_long(name, optarg, 1, 64, &v);
            o->zlib_split = (int)v;
            break;
        case 'l':
            rc = parse_long(name, optarg, 1, 1L << 40, &o->send_limit);
            break;
        case 'w':
            rc = parse_long(name, optarg, 1, 1L << 40, &o->send_window_ms);
            break;
        case 'y':
            rc = parse_long(name, optarg, 0, 100000000, &o->history);
            break;
        case 'm':
            rc = parse_long(name, optarg, 0, 3600000, &o->members_window_ms);
            break;
        case 'G':
            o->gateway_url = optarg;
            break;
        case 'U':
            o->resume_url = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
        if (rc)
            return -1;
    }
    if (optind < argc || o->port < 0) {
        usage(stderr);
        return -1;
    }
    if (o->unavailable_forever > o->guilds) {
        fprintf(stderr, "fake-discord: --unavailable-forever exceeds --guilds\n");
        return -1;
    }
    o->session_remaining = remaining >= 0 ? remaining : o->session_total;
    return 0;
}

int main(int argc, char **argv)
{
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (parse_args(argc, argv))
        return 2;
    fk.shards = calloc((size_t)fk.o.shards, sizeof(*fk.shards));
    fk.bucket_last = malloc((size_t)fk.o.max_concurrency * sizeof(*fk.bucket_last));
    fk.streaming = calloc((size_t)fk.o.shards, 1);
    if (!fk.shards || !fk.bucket_last || !fk.streaming) {
        fprintf(stderr, "fake-discord: out of memory\n");
        return 1;
    }
    for (int i = 0; i < fk.o.max_concurrency; i++)
        fk.bucket_last[i] = -1;
    fk.remaining = fk.o.session_remaining;
    fk.reset_at_ms = (double)fk.o.reset_after_ms;
    fk.rest_fail_retry_after = -1;

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    /* lws binds the IPv6 wildcard unless told otherwise: keep an IPv4 host to that address */
    if (!strchr(fk.o.host, ':'))
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    info.port = fk.o.port;
    info.iface = fk.o.host;
    info.protocols = protocols;
    info.max_http_header_data = 4096;
    info.vhost_name = "fake-discord";
    fk.ctx = lws_create_context(&info);
    if (!fk.ctx) {
        fprintf(stderr, "fake-discord: cannot create the lws context\n");
        return 1;
    }
    struct lws_vhost *vh = lws_create_vhost(fk.ctx, &info);
    if (!vh) {
        fprintf(stderr, "fake-discord: cannot listen on %s:%d\n", fk.o.host, fk.o.port);
        lws_context_destroy(fk.ctx);
        return 1;
    }
    fk.port = lws_get_vhost_listen_port(vh);
    int replay = fk_replay_init(); /* the streams carry the port in READY */
    if (replay) {
        fk_replay_shutdown();
        lws_context_destroy(fk.ctx);
        return replay > 0 ? 0 : 1;
    }
    lws_sul_schedule(fk.ctx, 0, &sul_tick, tick, 100 * LWS_US_PER_MS);
    if (fk.o.trickle_ms > 0)
        lws_sul_schedule(fk.ctx, 0, &sul_trickle, trickle,
                         (lws_usec_t)fk.o.trickle_ms * LWS_US_PER_MS);
    printf("fake-discord listening port=%d\n", fk.port);
    fflush(stdout);

    while (!stop)
        if (lws_service(fk.ctx, 0) < 0)
            break;
    fprintf(stderr, "fake-discord: stopping\n");
    fk_replay_shutdown();
    lws_context_destroy(fk.ctx);
    return 0;
}
