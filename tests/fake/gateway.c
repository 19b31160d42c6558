/*
 * tests/fake/gateway.c: the fake Discord's Gateway: connections (send queue, reassembly,
 * zlib-stream / zstd-stream compression), sessions (sequence numbers, history for RESUME)
 * and the rules a client payload is held to (identify, resume, buckets, limits, close codes).
 * Owns struct fk_conn and struct fk_session; lws callbacks in fake_discord.c call in here.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/errors.h"
#include "lib/rand.h"
#include "tests/fake/fake.h"
#include "tests/fake/replay.h"

#define VALID_INTENTS (0x1ffffL | (1L << 20) | (1L << 21) | (1L << 24) | (1L << 25))
#define MAX_COMPRESSED ((size_t)16 << 20) /* one compressed payload */
#define WRITES_PER_CALLBACK 1024

static unsigned char *zscratch; /* compression output, grown up to MAX_COMPRESSED */
static size_t zscratch_cap;

struct fk_msg *fk_msg_new(size_t len, int binary)
{
    struct fk_msg *m = malloc(sizeof(*m) + LWS_PRE + len);
    if (!m)
        return NULL;
    m->refs = 1;
    m->binary = (unsigned char)binary;
    m->len = len;
    return m;
}

void fk_msg_unref(struct fk_msg *m)
{
    if (m && --m->refs == 0)
        free(m);
}

static int scratch_reserve(size_t need)
{
    if (need <= zscratch_cap)
        return 0;
    if (need > MAX_COMPRESSED)
        return SH_ETOOBIG;
    size_t ncap = zscratch_cap ? zscratch_cap : 65536;
    while (ncap < need)
        ncap *= 2;
    if (ncap > MAX_COMPRESSED)
        ncap = MAX_COMPRESSED;
    unsigned char *p = realloc(zscratch, ncap);
    if (!p)
        return SH_ENOMEM;
    zscratch = p;
    zscratch_cap = ncap;
    return 0;
}

/* ---- send queue ---- */

/* Queue m (taking the caller's reference). Fails when the backlog cap is reached. */
static int q_push(struct fk_conn *c, struct fk_msg *m)
{
    if (c->q_bytes + m->len > FK_MAX_QUEUE_BYTES)
        return SH_ETOOBIG;
    if (c->q_len == c->q_cap) {
        size_t ncap = c->q_cap ? c->q_cap * 2 : 64;
        struct fk_msg **nq = malloc(ncap * sizeof(*nq));
        if (!nq)
            return SH_ENOMEM;
        for (size_t i = 0; i < c->q_len; i++)
            nq[i] = c->q[(c->q_head + i) % c->q_cap];
        free(c->q);
        c->q = nq;
        c->q_cap = ncap;
        c->q_head = 0;
    }
    c->q[(c->q_head + c->q_len) % c->q_cap] = m;
    c->q_len++;
    c->q_bytes += m->len;
    return 0;
}

static struct fk_msg *q_pop(struct fk_conn *c)
{
    struct fk_msg *m = c->q[c->q_head];
    c->q_head = (c->q_head + 1) % c->q_cap;
    c->q_len--;
    c->q_bytes -= m->len;
    return m;
}

static int push_bytes(struct fk_conn *c, const unsigned char *p, size_t n, int binary)
{
    struct fk_msg *m = fk_msg_new(n, binary);
    if (!m)
        return SH_ENOMEM;
    memcpy(FK_MSG_BODY(m), p, n);
    int rc = q_push(c, m);
    if (rc)
        fk_msg_unref(m);
    return rc;
}

static int ends_with_flush(const unsigned char *p, size_t n)
{
    return n >= 4 && p[n - 4] == 0 && p[n - 3] == 0 && p[n - 2] == 0xff && p[n - 1] == 0xff;
}

static int send_zlib(struct fk_conn *c, const unsigned char *in, size_t len)
{
    size_t out = 0;
    c->z.next_in = (unsigned char *)in;
    c->z.avail_in = (uInt)len;
    do {
        int rc = scratch_reserve(out + 4096 > zscratch_cap ? zscratch_cap * 2 + 4096 : 0);
        if (rc)
            return rc;
        c->z.next_out = zscratch + out;
        c->z.avail_out = (uInt)(zscratch_cap - out);
        if (deflate(&c->z, Z_SYNC_FLUSH) == Z_STREAM_ERROR)
            return SH_ECORRUPT;
        out = zscratch_cap - c->z.avail_out;
    } while (c->z.avail_out == 0 || c->z.avail_in > 0);
    /* Split into parts; only the last may end with the 00 00 ff ff flush marker. */
    size_t parts = (size_t)fk.o.zlib_split;
    if (parts > out)
        parts = out;
    size_t start = 0;
    for (size_t i = 1; i <= parts; i++) {
        size_t end = i == parts ? out : out * i / parts;
        if (i < parts && end > start + 1 && ends_with_flush(zscratch + start, end - start))
            end--;
        int rc = push_bytes(c, zscratch + start, end - start, 1);
        if (rc)
            return rc;
        start = end;
    }
    return 0;
}

static int send_zstd(struct fk_conn *c, const unsigned char *in, size_t len)
{
    ZSTD_inBuffer ib = {in, len, 0};
    size_t out = 0, left;
    do {
        int rc = scratch_reserve(out + 4096 > zscratch_cap ? zscratch_cap * 2 + 4096 : 0);
        if (rc)
            return rc;
        ZSTD_outBuffer ob = {zscratch, zscratch_cap, out};
        left = ZSTD_compressStream2(c->zc, &ob, &ib, (ZSTD_EndDirective)fk_replay_zstd_directive());
        if (ZSTD_isError(left))
            return SH_ECORRUPT;
        out = ob.pos;
    } while (left != 0 || ib.pos < ib.size);
    return push_bytes(c, zscratch, out, 1);
}

/* Send one plain-JSON message on c, sharing it when no compression is asked for. */
static int send_msg(struct fk_conn *c, struct fk_msg *plain)
{
    if (c->close_code || c->drop)
        return 0;
    if (fk_replay_hold(c, plain))
        return 0; /* sent once the replay streaming on c reaches a point that allows it */
    int rc;
    if (c->comp == FK_ZLIB)
        rc = send_zlib(c, FK_MSG_BODY(plain), plain->len);
    else if (c->comp == FK_ZSTD)
        rc = send_zstd(c, FK_MSG_BODY(plain), plain->len);
    else if ((rc = q_push(c, fk_msg_ref(plain))))
        fk_msg_unref(plain);
    if (rc) {
        fprintf(stderr, "fake-discord: conn=%" PRIu64 " send failed (%s), dropping\n", c->rec->id,
                sh_strerror(rc));
        fk_conn_request_close(c, 0, 1);
        return rc;
    }
    lws_callback_on_writable(c->wsi);
    return 0;
}

int fk_conn_send(struct fk_conn *c, const char *json, size_t len)
{
    struct fk_msg *m = fk_msg_new(len, 0);
    if (!m)
        return SH_ENOMEM;
    memcpy(FK_MSG_BODY(m), json, len);
    int rc = send_msg(c, m);
    fk_msg_unref(m);
    return rc;
}

int fk_conn_send_raw(struct fk_conn *c, const void *data, size_t len, int binary)
{
    if (c->close_code || c->drop)
        return 0;
    int rc = push_bytes(c, data, len, binary);
    if (!rc)
        lws_callback_on_writable(c->wsi);
    return rc;
}

static void send_str(struct fk_conn *c, const char *json)
{
    fk_conn_send(c, json, strlen(json));
}

void fk_conn_request_close(struct fk_conn *c, int code, int drop)
{
    if (c->close_code || c->drop)
        return;
    if (drop)
        c->drop = 1;
    else
        c->close_code = code;
    lws_callback_on_writable(c->wsi);
}

/* Ask for a server close with code; returns 0 so handlers can `return close_with(...)`. */
static int close_with(struct fk_conn *c, int code, const char *why)
{
    fprintf(stderr, "fake-discord: conn=%" PRIu64 " close %d: %s\n", c->rec->id, code, why);
    if (!c->close_code && !c->drop)
        c->rec->reason = why;
    fk_conn_request_close(c, code, 0);
    return 0;
}

/* ---- sessions ---- */

static void hist_push(struct fk_session *s, struct fk_msg *m)
{
    size_t max = (size_t)fk.o.history;
    if (max == 0) {
        fk_msg_unref(m);
        return;
    }
    if (s->h_len == max) {
        fk_msg_unref(s->hist[s->h_head]);
        s->hist[s->h_head] = m;
        s->h_head = (s->h_head + 1) % s->h_cap;
        return;
    }
    if (s->h_len == s->h_cap) {
        size_t ncap = s->h_cap ? s->h_cap * 2 : 256;
        if (ncap > max)
            ncap = max;
        struct fk_msg **nh = malloc(ncap * sizeof(*nh));
        if (!nh) { /* keep what we have: forget the oldest instead */
            fk_msg_unref(s->hist[s->h_head]);
            s->hist[s->h_head] = m;
            s->h_head = (s->h_head + 1) % s->h_cap;
            return;
        }
        for (size_t i = 0; i < s->h_len; i++)
            nh[i] = s->hist[(s->h_head + i) % s->h_cap];
        free(s->hist);
        s->hist = nh;
        s->h_cap = ncap;
        s->h_head = 0;
    }
    s->hist[(s->h_head + s->h_len) % s->h_cap] = m;
    s->h_len++;
}

static void session_free(struct fk_session *s)
{
    for (size_t i = 0; i < s->h_len; i++)
        fk_msg_unref(s->hist[(s->h_head + i) % s->h_cap]);
    free(s->hist);
    if (s->conn)
        s->conn->sess = NULL;
    free(s);
}

/* Keep at most FK_MAX_SESSIONS: forget the oldest that is neither current nor live. */
static void sessions_trim(void)
{
    while (fk.n_sessions > FK_MAX_SESSIONS) {
        struct fk_session **pp = &fk.sessions, **victim = NULL;
        for (; *pp; pp = &(*pp)->next)
            if (!(*pp)->conn && fk.shards[(*pp)->shard].cur != *pp)
                victim = pp;
        if (!victim)
            return;
        struct fk_session *s = *victim;
        *victim = s->next;
        session_free(s);
        fk.n_sessions--;
    }
}

static struct fk_session *session_new(int shard, int total)
{
    struct fk_session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    snprintf(s->id, sizeof(s->id), "%016" PRIx64 "%016" PRIx64, sh_rand_u64(), sh_rand_u64());
    s->shard = shard;
    s->total = total;
    s->next = fk.sessions;
    fk.sessions = s;
    fk.n_sessions++;
    sessions_trim();
    return s;
}

static struct fk_session *session_find(const char *id)
{
    for (struct fk_session *s = fk.sessions; s; s = s->next)
        if (!strcmp(s->id, id))
            return s;
    return NULL;
}

uint64_t fk_emit(struct fk_session *s, const char *t, const char *d, size_t dlen)
{
    char head[160];
    uint64_t seq = s->seq + 1;
    int hn =
        snprintf(head, sizeof(head), "{\"t\":\"%s\",\"s\":%" PRIu64 ",\"op\":0,\"d\":", t, seq);
    if (hn < 0 || (size_t)hn >= sizeof(head))
        return 0;
    struct fk_msg *m = fk_msg_new((size_t)hn + dlen + 1, 0);
    if (!m)
        return 0;
    unsigned char *b = FK_MSG_BODY(m);
    memcpy(b, head, (size_t)hn);
    memcpy(b + hn, d, dlen);
    b[hn + dlen] = '}';
    s->seq = seq;
    if (s->conn)
        send_msg(s->conn, m);
    hist_push(s, m);
    return seq;
}

void fk_budget_refresh(void)
{
    double now = fk_now_ms();
    if (now >= fk.reset_at_ms) {
        fk.remaining = fk.o.session_total;
        fk.reset_at_ms = now + 86400000.0;
    }
}

/* ---- connections ---- */

static void query_of(struct lws *wsi, char *q, size_t cap)
{
    size_t off = 0;
    q[0] = '\0';
    for (int i = 0; i < 64; i++) {
        char frag[512];
        int n = lws_hdr_copy_fragment(wsi, frag, sizeof(frag), WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n <= 0)
            break;
        if (off + (size_t)n + 2 >= cap)
            break;
        if (off)
            q[off++] = '&';
        memcpy(q + off, frag, (size_t)n);
        off += (size_t)n;
        q[off] = '\0';
    }
}

/* The value of key in an a=b&c=d query, copied into out; 0 when found. */
static int query_param(const char *q, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    for (const char *p = q; p && *p; p = strchr(p, '&'), p = p ? p + 1 : NULL) {
        if (!strncmp(p, key, kl) && p[kl] == '=') {
            const char *v = p + kl + 1;
            size_t n = strcspn(v, "&");
            if (n >= cap)
                n = cap - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return 0;
        }
    }
    return -1;
}

struct fk_conn *fk_conn_open(struct lws *wsi)
{
    char path[512], query[2048], comp[32];
    struct fk_conn *c = calloc(1, sizeof(*c));
    struct fk_conn_rec *r = calloc(1, sizeof(*r));
    if (!c || !r)
        goto fail;
    if (lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_GET_URI) < 0)
        path[0] = '\0';
    query_of(wsi, query, sizeof(query));
    r->id = ++fk.next_conn_id;
    r->path = strdup(path);
    r->query = strdup(query);
    r->shard = -1;
    r->opened_ms = fk_now_ms();
    r->closed_ms = -1;
    r->close_code = FK_NONE_INT;
    if (!r->path || !r->query)
        goto fail;
    c->wsi = wsi;
    c->rec = r;
    c->shard = -1;
    c->withhold_ack = -1;
    if (!query_param(query, "compress", comp, sizeof(comp))) {
        if (!strcmp(comp, "zlib-stream")) {
            if (deflateInit(&c->z, Z_BEST_SPEED) != Z_OK)
                goto fail;
            c->z_ready = 1;
            c->comp = FK_ZLIB;
        } else if (!strcmp(comp, "zstd-stream")) {
            c->zc = ZSTD_createCCtx();
            if (!c->zc)
                goto fail;
            ZSTD_CCtx_setParameter(c->zc, ZSTD_c_compressionLevel, 1);
            c->comp = FK_ZSTD;
        }
    }
    if (fk_rec_conn_add(r))
        goto fail;
    c->next = fk.conns;
    if (fk.conns)
        fk.conns->prev = c;
    fk.conns = c;
    fprintf(stderr, "fake-discord: conn=%" PRIu64 " open path=%s query=%s\n", r->id, path, query);
    char hello[160];
    snprintf(hello, sizeof(hello),
             "{\"t\":null,\"s\":null,\"op\":10,\"d\":{\"heartbeat_interval\":%ld,"
             "\"_trace\":[\"fake-discord\"]}}",
             fk.o.heartbeat_ms);
    send_str(c, hello);
    return c;
fail:
    if (c && c->z_ready)
        deflateEnd(&c->z);
    if (c)
        ZSTD_freeCCtx(c->zc);
    if (r) {
        free(r->path);
        free(r->query);
    }
    free(r);
    free(c);
    return NULL;
}

int fk_conn_withheld(const struct fk_conn *c)
{
    if (c->withhold_ack >= 0)
        return c->withhold_ack;
    if (c->shard >= 0)
        return fk.shards[c->shard].withhold_ack;
    return fk.withhold_all;
}

static int json_int(const cJSON *j, long *out)
{
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) ||
        fabs(j->valuedouble) > 9007199254740992.0)
        return -1;
    *out = (long)j->valuedouble;
    return 0;
}

static void set_shard(struct fk_conn *c, int shard)
{
    c->shard = shard;
    c->rec->shard = shard;
}

static int invalid_session(struct fk_conn *c)
{
    send_str(c, "{\"t\":null,\"s\":null,\"op\":9,\"d\":false}");
    return 0;
}

static int on_heartbeat(struct fk_conn *c, const cJSON *d)
{
    (void)d;
    if (!fk_conn_withheld(c))
        send_str(c, "{\"t\":null,\"s\":null,\"op\":11,\"d\":null}");
    return 0;
}

/*
 * c now receives s. An older connection still open on s stops receiving it and is closed with
 * 4000 (Discord's behaviour is undocumented; cluster mode's takeover assumes this one).
 */
static void attach(struct fk_conn *c, struct fk_session *s)
{
    if (s->conn && s->conn != c) {
        struct fk_conn *old = s->conn;
        old->sess = NULL;
        close_with(old, 4000, "superseded");
    }
    s->conn = c;
    c->sess = s;
    c->authed = 1;
    set_shard(c, s->shard);
    fk.shards[s->shard].cur = s;
}

/* READY listing each of guilds (GUILD_CREATE bodies) as unavailable, then one GUILD_CREATE per
   guild that is not itself {"unavailable": true}, as Discord starts a session. */
static int scripted_guilds(struct fk_conn *c, struct fk_session *s, const cJSON *guilds)
{
    cJSON *ready = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(ready, "guilds");
    const cJSON *g;
    cJSON_ArrayForEach(g, guilds)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(g, "id");
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "id", cJSON_IsString(id) ? id->valuestring : "0");
        cJSON_AddTrueToObject(item, "unavailable");
        cJSON_AddItemToArray(list, item);
    }
    char *tmpl = cJSON_PrintUnformatted(ready);
    cJSON_Delete(ready);
    /* the generated READY with no guilds, its "guilds":[] replaced by the list */
    char buf[2048];
    int saved = fk.o.guilds;
    fk.o.guilds = 0;
    int n = fk_ev_ready(buf, sizeof(buf), s);
    fk.o.guilds = saved;
    const char *at = n > 0 ? strstr(buf, "\"guilds\":[]") : NULL;
    const char *inner = tmpl ? strchr(tmpl, '[') : NULL;
    if (!at || !inner) {
        cJSON_free(tmpl);
        return close_with(c, 4000, "out of memory");
    }
    struct sh_buf out;
    sh_buf_init(&out, FK_MAX_BODY * 4);
    int rc = sh_buf_append(&out, buf, (size_t)(at - buf));
    rc = rc ? rc : sh_buf_append_str(&out, "\"guilds\":");
    rc = rc ? rc : sh_buf_append(&out, inner, strlen(inner) - 1); /* without tmpl's last } */
    rc = rc ? rc : sh_buf_append_str(&out, at + strlen("\"guilds\":[]"));
    cJSON_free(tmpl);
    if (!rc)
        fk_emit(s, "READY", (const char *)out.data, out.len);
    sh_buf_free(&out);
    cJSON_ArrayForEach(g, guilds)
    {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(g, "unavailable")))
            continue;
        char *text = cJSON_PrintUnformatted(g);
        if (text)
            fk_emit(s, "GUILD_CREATE", text, strlen(text));
        cJSON_free(text);
    }
    return 0;
}

void fk_set_guilds(int shard, cJSON *guilds)
{
    cJSON_Delete(fk.shards[shard].guilds);
    fk.shards[shard].guilds = guilds;
}

static int on_identify(struct fk_conn *c, const cJSON *d)
{
    long id, total, intents;
    if (c->authed)
        return close_with(c, 4005, "already authenticated");
    if (!cJSON_IsObject(d))
        return close_with(c, 4002, "identify d is not an object");
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(d, "token");
    if (!cJSON_IsString(token) || strcmp(token->valuestring, fk.o.token))
        return close_with(c, 4004, "authentication failed");
    const cJSON *shard = cJSON_GetObjectItemCaseSensitive(d, "shard");
    if (!cJSON_IsArray(shard) || cJSON_GetArraySize(shard) != 2 ||
        json_int(cJSON_GetArrayItem(shard, 0), &id) ||
        json_int(cJSON_GetArrayItem(shard, 1), &total) || id < 0 || total < 1 || id >= total ||
        total != fk.o.shards)
        return close_with(c, 4010, "invalid shard");
    set_shard(c, (int)id);
    if (json_int(cJSON_GetObjectItemCaseSensitive(d, "intents"), &intents) || intents < 0 ||
        (intents & ~VALID_INTENTS))
        return close_with(c, 4013, "invalid intents");
    double now = fk_now_ms();
    long bucket = id % fk.o.max_concurrency;
    if (fk.bucket_last[bucket] >= 0 && now - fk.bucket_last[bucket] < fk.o.identify_interval_ms) {
        fk_rec_violation((int)id, "identify bucket");
        fk_rec_identify(c->rec->id, (int)id, bucket, "identify bucket", NULL);
        return invalid_session(c);
    }
    fk_budget_refresh();
    if (fk.remaining <= 0) {
        fk_rec_violation((int)id, "session budget");
        fk_rec_identify(c->rec->id, (int)id, bucket, "session budget", NULL);
        return invalid_session(c);
    }
    struct fk_session *s = session_new((int)id, (int)total);
    if (!s)
        return close_with(c, 4000, "out of memory");
    fk.remaining--;
    fk.bucket_last[bucket] = now;
    fk_rec_identify(c->rec->id, (int)id, bucket, NULL, s->id);
    attach(c, s);
    fprintf(stderr, "fake-discord: conn=%" PRIu64 " identify shard=%ld session=%s\n", c->rec->id,
            id, s->id);
    if (fk_replay_identify(c, s))
        return 0; /* replay mode: READY and the events come pre-built (replay.c) */
    if (fk.shards[id].guilds)
        return scripted_guilds(c, s, fk.shards[id].guilds);

    size_t cap = 1024 + (size_t)fk.o.guilds * 64;
    char *buf = malloc(cap);
    if (!buf)
        return close_with(c, 4000, "out of memory");
    int n = fk_ev_ready(buf, cap, s);
    if (n > 0)
        fk_emit(s, "READY", buf, (size_t)n);
    for (int i = 0; i < fk.o.guilds - fk.o.unavailable_forever; i++) {
        n = fk_ev_guild_create(buf, cap, s->shard, s->total, i);
        if (n > 0)
            fk_emit(s, "GUILD_CREATE", buf, (size_t)n);
    }
    free(buf);
    return 0;
}

static int on_resume(struct fk_conn *c, const cJSON *d)
{
    long seq = -1;
    if (c->authed)
        return close_with(c, 4005, "already authenticated");
    if (!cJSON_IsObject(d))
        return close_with(c, 4002, "resume d is not an object");
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(d, "token");
    const cJSON *sid = cJSON_GetObjectItemCaseSensitive(d, "session_id");
    struct fk_session *s = cJSON_IsString(sid) ? session_find(sid->valuestring) : NULL;
    if (s)
        set_shard(c, s->shard);
    const char *why = NULL;
    if (!s)
        why = "unknown session";
    else if (s->ended)
        why = "session ended by a 1000/1001 close";
    else if (s->expired)
        why = "session expired";
    else if (!cJSON_IsString(token) || strcmp(token->valuestring, fk.o.token))
        why = "wrong token";
    else if (json_int(cJSON_GetObjectItemCaseSensitive(d, "seq"), &seq) || seq < 0)
        why = "seq missing";
    else if ((uint64_t)seq > s->seq)
        why = "seq beyond the session's last";
    else if ((uint64_t)seq + s->h_len < s->seq)
        why = "seq older than the kept history";
    const char *named = cJSON_IsString(sid) ? sid->valuestring : "";
    long named_seq = json_int(cJSON_GetObjectItemCaseSensitive(d, "seq"), &seq) ? -1 : seq;
    if (why) {
        fprintf(stderr, "fake-discord: conn=%" PRIu64 " resume rejected: %s\n", c->rec->id, why);
        fk_rec_resume(c->rec->id, s ? s->shard : -1, named, named_seq, why, 0);
        return invalid_session(c);
    }
    if (fk.resume_fail_count > 0) { /* scripted: the session stays valid, this attempt fails */
        fk.resume_fail_count--;
        fk_rec_resume(c->rec->id, s->shard, named, named_seq, "scripted resume failure", 0);
        return close_with(c, 4000, "scripted resume failure");
    }
    attach(c, s);
    uint64_t first = s->seq - s->h_len + 1;
    size_t replayed = 0;
    for (size_t i = 0; i < s->h_len; i++) {
        if (first + i > (uint64_t)seq) {
            send_msg(c, s->hist[(s->h_head + i) % s->h_cap]);
            replayed++;
        }
    }
    fprintf(stderr,
            "fake-discord: conn=%" PRIu64 " resume shard=%d session=%s from=%ld replayed=%zu\n",
            c->rec->id, s->shard, s->id, seq, replayed);
    fk_rec_resume(c->rec->id, s->shard, s->id, seq, NULL, replayed);
    static const char resumed[] = "{\"_trace\":[\"fake-discord\"]}";
    fk_emit(s, "RESUMED", resumed, sizeof(resumed) - 1);
    return 0;
}

/*
 * Client ops. needs_auth: only after IDENTIFY/RESUME. A NULL handler records the payload
 * (the log already has it) and answers nothing; ops 4, 8, 31 and 43 are answered in replies.c.
 */
static const struct op_rule {
    int op;
    int needs_auth;
    int (*fn)(struct fk_conn *c, const cJSON *d);
} op_rules[] = {
    {1, 0, on_heartbeat},      {2, 0, on_identify},
    {6, 0, on_resume},         {3, 1, NULL},
    {4, 1, fk_on_voice_state}, {8, 1, fk_on_request_members},
    {31, 1, fk_on_soundboard}, {43, 1, fk_on_channel_info},
};

static int only_space(const char *p, const char *end)
{
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            return 0;
    return 1;
}

static int handle_payload(struct fk_conn *c, const char *p, size_t len)
{
    double now = fk_now_ms();
    if (c->win_count == 0 || now - c->win_start >= (double)fk.o.send_window_ms) {
        c->win_start = now;
        c->win_count = 0;
    }
    if (++c->win_count > fk.o.send_limit) {
        fk_rec_violation(c->shard, "send rate");
        return close_with(c, 4008, "rate limited");
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(p, len, &end, 0);
    if (!j || !cJSON_IsObject(j) || !end || !only_space(end, p + len)) {
        cJSON_Delete(j);
        fk_rec_violation(c->shard, "decode error");
        return close_with(c, 4002, "payload is not a JSON object");
    }
    long op = FK_NONE_INT;
    if (json_int(cJSON_GetObjectItemCaseSensitive(j, "op"), &op) || op < -100000 || op > 100000)
        op = FK_NONE_INT;
    char *text = cJSON_PrintUnformatted(j);
    if (text) {
        fk_rec_received(c->rec->id, (int)op, text, strlen(text));
        cJSON_free(text);
    }
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "d");
    if (op == FK_NONE_INT) {
        close_with(c, 4002, "op missing");
    } else if (!c->authed && op != 1 && op != 2 && op != 6) {
        close_with(c, 4003, "not authenticated");
    } else {
        const struct op_rule *rule = NULL;
        for (size_t i = 0; i < sizeof(op_rules) / sizeof(op_rules[0]); i++)
            if (op_rules[i].op == op)
                rule = &op_rules[i];
        if (!rule)
            close_with(c, 4001, "unknown opcode");
        else if (rule->needs_auth && !c->authed)
            close_with(c, 4003, "not authenticated");
        else if (rule->fn)
            rule->fn(c, d);
    }
    cJSON_Delete(j);
    return 0;
}

void fk_conn_receive(struct fk_conn *c, const void *in, size_t len, int last)
{
    if (c->close_code || c->drop)
        return;
    if (len > FK_MAX_PAYLOAD - c->rx_len) {
        c->rx_len = 0;
        fk_rec_violation(c->shard, "payload too large");
        close_with(c, 4002, "payload over 4096 bytes");
        return;
    }
    memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += len;
    if (!last)
        return;
    size_t n = c->rx_len;
    c->rx_len = 0;
    handle_payload(c, (const char *)c->rx, n);
}

int fk_conn_writeable(struct fk_conn *c)
{
    if (c->drop) {
        c->rec->closed_by = "drop";
        return -1;
    }
    for (int i = 0; c->q_len && i < WRITES_PER_CALLBACK; i++) {
        struct fk_msg *m = q_pop(c);
        int n = lws_write(c->wsi, FK_MSG_BODY(m), m->len,
                          m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
        fk_msg_unref(m);
        if (n < 0)
            return -1;
        if (lws_send_pipe_choked(c->wsi))
            break;
    }
    if (c->q_len) {
        lws_callback_on_writable(c->wsi);
        return 0;
    }
    int rc = fk_replay_writeable(c); /* 1: no replay streams on c */
    if (rc <= 0)
        return rc;
    if (c->close_code) {
        c->rec->close_code = c->close_code;
        c->rec->closed_by = "server";
        lws_close_reason(c->wsi, (enum lws_close_status)c->close_code, NULL, 0);
        return -1;
    }
    return 0;
}

void fk_conn_peer_close(struct fk_conn *c, const unsigned char *in, size_t len)
{
    if (c->rec->closed_by)
        return;
    c->rec->closed_by = "client";
    c->rec->close_code = len >= 2 ? (in[0] << 8 | in[1]) : FK_NONE_INT;
    if ((c->rec->close_code == 1000 || c->rec->close_code == 1001) && c->sess)
        c->sess->ended = 1;
}

void fk_conn_closed(struct fk_conn *c)
{
    c->rec->closed_ms = fk_now_ms();
    if (!c->rec->closed_by)
        c->rec->closed_by = "drop";
    fprintf(stderr, "fake-discord: conn=%" PRIu64 " closed by=%s code=%d\n", c->rec->id,
            c->rec->closed_by, c->rec->close_code == FK_NONE_INT ? 0 : c->rec->close_code);
    if (c->sess && c->sess->conn == c)
        c->sess->conn = NULL;
    fk_replay_closed(c);
    while (c->q_len)
        fk_msg_unref(q_pop(c));
    free(c->q);
    if (c->z_ready)
        deflateEnd(&c->z);
    ZSTD_freeCCtx(c->zc);
    if (c->prev)
        c->prev->next = c->next;
    else
        fk.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

struct fk_conn *fk_shard_conn(int shard)
{
    for (struct fk_conn *c = fk.conns; c; c = c->next)
        if (c->shard == shard && !c->close_code && !c->drop)
            return c;
    return NULL;
}

struct fk_conn *fk_conn_by_id(uint64_t id)
{
    for (struct fk_conn *c = fk.conns; c; c = c->next)
        if (c->rec->id == id && !c->close_code && !c->drop)
            return c;
    return NULL;
}

void fk_trickle_tick(void)
{
    static uint64_t k;
    char buf[4096];
    for (struct fk_conn *c = fk.conns; c; c = c->next) {
        struct fk_session *s = c->sess;
        if (!s || s->conn != c || c->close_code || c->drop)
            continue;
        const char *t = "MESSAGE_CREATE";
        int n = fk_ev_trickle(buf, sizeof(buf), s->shard, s->total, ++k, &t);
        if (n > 0)
            fk_emit(s, t, buf, (size_t)n);
    }
}

void fk_stream_tick(void)
{
    char buf[4096];
    for (int i = 0; i < fk.o.shards; i++) {
        struct fk_session *s = fk.shards[i].cur;
        if (!fk.streaming[i] || !s || s->ended || s->expired)
            continue;
        uint64_t n = ++fk.stream_n;
        int len = fk_ev_message(buf, sizeof(buf), s->shard, s->total, n, 11);
        if (len > 0)
            fk_emit(s, "MESSAGE_CREATE", buf, (size_t)len);
    }
}

int fk_expire(long shard, struct sh_buf *out)
{
    int rc = sh_buf_append_str(out, "[");
    int n = 0;
    for (struct fk_session *s = fk.sessions; s && !rc; s = s->next) {
        if ((shard >= 0 && s->shard != shard) || s->expired)
            continue;
        s->expired = 1;
        fprintf(stderr, "fake-discord: session %s of shard %d expired\n", s->id, s->shard);
        rc = sh_buf_printf(out, "%s\"%s\"", n++ ? "," : "", s->id);
    }
    return rc ? rc : sh_buf_append_str(out, "]");
}
