/*
 * gateway/shard.c: one shard's life on the gateway thread: connect, HELLO,
 * heartbeats and zombie detection, IDENTIFY through the bucket or RESUME on
 * resume_gateway_url, READY and guild loading, dispatch hand-off, close codes and
 * reconnects with capped full-jitter backoff (held back past the lease deadline), a lost
 * session announced as SHARDHOOK_SESSION_LOST, and a shard's hold and release.
 *
 * Everything here runs on the gateway thread inside libwebsockets callbacks and
 * scheduled callbacks (lws_sul). It must not block and must not touch other rooms.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/envelope.h"
#include "gateway/shard.h"
#include "lib/clock.h"
#include "lib/discord.h"
#include "lib/errors.h"
#include "lib/json.h"
#include "lib/log.h"
#include "lib/rand.h"
#include "lib/snowflake.h"

#define HELLO_TIMEOUT_MS 20000 /* a socket that never says HELLO is broken */
#define CLOSE_GRACE_MS 2000    /* a close frame that cannot be written in time: drop */
#define SKIP_PREFIX 4096       /* of a payload over max_payload_bytes: kept to find op, t, s */
#define SKIPPED_T "SHARDHOOK_EVENT_SKIPPED"
#define LOST_T "SHARDHOOK_SESSION_LOST"
#define LEASE_RECHECK_MS 1000 /* a shard held back by the lease deadline looks again this often */

const char *const gw_status_names[GW_STATUS_COUNT] = {
#define GW_STATUS_NAME_(n, s) s,
    GW_STATUS_MAP(GW_STATUS_NAME_)
#undef GW_STATUS_NAME_
};

static void set_status(struct gw_shard *s, enum gw_status st)
{
    if (s->status == st)
        return;
    log_info("msg=\"shard status\" shard=%d from=%s to=%s", s->id, gw_status_names[s->status],
             gw_status_names[st]);
    s->status = st;
    s->gw->snap_dirty = 1;
}

static void schedule(struct gw_shard *s, lws_sorted_usec_list_t *sul, sul_cb_t cb, uint64_t ms)
{
    lws_sul_schedule(s->gw->ctx, 0, sul, cb, (lws_usec_t)ms * LWS_US_PER_MS);
}

static void cancel_timers(struct gw_shard *s)
{
    lws_sul_cancel(&s->sul_heartbeat);
    lws_sul_cancel(&s->sul_connect);
    lws_sul_cancel(&s->sul_identify);
    lws_sul_cancel(&s->sul_guilds);
    lws_sul_cancel(&s->sul_write);
    lws_sul_cancel(&s->sul_kill);
    lws_sul_cancel(&s->sul_open);
}

static void drop_session(struct gw_shard *s)
{
    s->session_id[0] = '\0';
    s->resume_url[0] = '\0';
    s->seq = 0;
    s->has_seq = 0;
    s->resume_attempts = 0;
    SH_FREE(s->pending_guilds);
    s->n_pending = 0;
    s->sless_n = 0;
}

static int json_escape(char *out, size_t cap, const char *in);

/*
 * The session cannot be resumed (why: one of the reasons gateway.h's lost() lists): every webhook
 * gets SHARDHOOK_SESSION_LOST with the session and its last s, the identify source hears of it,
 * then the session is dropped. Nothing is said when there was no session: once per session.
 */
static void lose_session(struct gw_shard *s, const char *why)
{
    struct gw_gateway *gw = s->gw;
    if (s->session_id[0]) {
        char sid[sizeof(s->session_id) * 6 + 1], d[sizeof(sid) + 128];
        int n = json_escape(sid, sizeof(sid), s->session_id)
                    ? -1
                    : snprintf(d, sizeof(d),
                               "{\"session_id\":\"%s\",\"seq\":%" PRIu64 ",\"reason\":\"%s\"}", sid,
                               s->seq, why);
        log_warn("msg=\"session lost: events after seq may be missing; starting a new session\" "
                 "shard=%d session_id=\"%s\" seq=%" PRIu64 " reason=%s",
                 s->id, n > 0 ? sid : "?", s->seq, why);
        if (n > 0 && (size_t)n < sizeof(d))
            gw__emit(gw, s, LOST_T, sizeof(LOST_T) - 1, 0, d, (size_t)n, gw__rx_ms(gw, sh_now_ms()),
                     NULL);
        if (gw->ident.ops->lost)
            gw->ident.ops->lost(gw->ident.ud, s->id, s->session_id, s->seq, why);
    }
    drop_session(s);
}

void gw__shard_init(struct gw_shard *s, struct gw_gateway *gw, int id)
{
    memset(s, 0, sizeof(*s));
    s->gw = gw;
    s->id = id;
    s->status = GW_QUEUED;
    s->latency_ms = -1;
    s->next_delay_ms = -1;
    atomic_init(&s->runs, 0);
    atomic_init(&s->queued_sends, 0);
}

int gw__shard_prepare(struct gw_shard *s)
{
    struct gw_gateway *gw = s->gw;
    if (!s->sendq) {
        s->sendq = malloc(sizeof(*s->sendq));
        if (!s->sendq)
            return SH_ENOMEM;
        gw__sendq_init(s->sendq);
        if (gw->cfg->testing_send_window_ms != GW_SEND_WINDOW_MS)
            s->sendq->window_ms = gw->cfg->testing_send_window_ms;
    }
    if (s->z)
        return SH_OK;
    int rc = gw__inflate_new(gw->compress, gw->cfg->max_payload_bytes, gw->cfg->max_payload_bytes,
                             &s->z);
    /* an oversized payload costs only itself: skipped, the stream kept in sync */
    return rc ? rc : gw__inflate_skip_oversized(s->z, SKIP_PREFIX);
}

/* Free what gw__shard_prepare allocated (the shard is not connected). */
static void unprepare(struct gw_shard *s)
{
    gw__inflate_free(s->z);
    s->z = NULL;
    if (s->sendq)
        gw__sendq_reset(s->sendq);
    SH_FREE(s->sendq);
}

void gw__shard_destroy(struct gw_shard *s)
{
    unprepare(s);
    SH_FREE(s->handshake);
    SH_FREE(s->pending_guilds);
    SH_FREE(s->presence);
}

/* ---- URLs ------------------------------------------------------------------------------ */

struct ws_url {
    int tls;
    char host[256];
    int port;
    char path[512]; /* without query, starts with '/' */
};

/* Parse ws://host[:port][/path] or wss://...; IPv6 hosts in brackets. */
static int parse_ws_url(const char *url, struct ws_url *u)
{
    memset(u, 0, sizeof(*u));
    const char *p;
    if (!strncmp(url, "wss://", 6)) {
        u->tls = 1;
        p = url + 6;
    } else if (!strncmp(url, "ws://", 5)) {
        p = url + 5;
    } else {
        return SH_EINVAL;
    }
    u->port = u->tls ? 443 : 80;
    const char *host_end;
    const char *h = p;
    if (*p == '[') {
        host_end = strchr(p, ']');
        if (!host_end)
            return SH_EINVAL;
        h = p + 1;
        p = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/?");
        p = host_end;
    }
    size_t hl = (size_t)(host_end - h);
    if (hl == 0 || hl >= sizeof(u->host))
        return SH_EINVAL;
    memcpy(u->host, h, hl);
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535)
            return SH_EINVAL;
        u->port = (int)port;
        p = end;
    }
    size_t pl = strcspn(p, "?#");
    if (pl == 0) {
        strcpy(u->path, "/");
    } else {
        if (*p != '/' || pl >= sizeof(u->path))
            return SH_EINVAL;
        memcpy(u->path, p, pl);
    }
    return SH_OK;
}

/* ---- sending --------------------------------------------------------------------------- */

static void want_write(struct gw_shard *s)
{
    if (s->wsi && s->established)
        lws_callback_on_writable(s->wsi);
}

static void write_timer_cb(lws_sorted_usec_list_t *sul)
{
    struct gw_shard *s = lws_container_of(sul, struct gw_shard, sul_write);
    want_write(s);
}

static void on_connection_lost(struct gw_shard *s, const char *why);

/*
 * End the connection in progress now, without a close handshake: the wsi is detached from the
 * shard (no later callback of it reaches the shard) and left to libwebsockets to free, and the
 * shard handles the loss at once (reconnect, or nothing while stopping).
 */
static void drop_connection(struct gw_shard *s, const char *why)
{
    if (s->wsi) {
        lws_set_opaque_user_data(s->wsi, NULL);
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
    }
    on_connection_lost(s, why);
}

static void kill_cb(lws_sorted_usec_list_t *sul)
{
    struct gw_shard *s = lws_container_of(sul, struct gw_shard, sul_kill);
    if (s->wsi) {
        log_warn("msg=\"close did not complete, dropping the socket\" shard=%d", s->id);
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
    }
}

/*
 * Close this connection ourselves with 4000 (never 1000/1001: the session stays resumable), then
 * reconnect: resume=1 keeps the session; delay_ms >= 0 replaces the backoff. A close frame that
 * cannot be written within CLOSE_GRACE_MS ends in a dropped socket. The helpers below name the
 * reasons.
 */
static void close_and_reconnect(struct gw_shard *s, int resume, int64_t delay_ms)
{
    if (!s->wsi || s->close_code)
        return;
    s->close_code = SH_CLOSE_RESUMABLE;
    s->self_close = 1;
    s->reconnect_resume = resume;
    s->next_delay_ms = delay_ms;
    lws_sul_cancel(&s->sul_heartbeat);
    lws_sul_cancel(&s->sul_identify);
    if (s->established) {
        lws_callback_on_writable(s->wsi);
        schedule(s, &s->sul_kill, kill_cb, CLOSE_GRACE_MS);
    } else {
        drop_connection(s, "closed by shardhook before the websocket upgrade");
    }
}

/* Something is wrong with this connection (not the session): RESUME after the usual backoff. */
static void close_and_resume(struct gw_shard *s)
{
    close_and_reconnect(s, 1, -1);
}

/* Discord asked for it (op 7) or the connection is a zombie: RESUME at once. */
static void close_and_resume_now(struct gw_shard *s)
{
    close_and_reconnect(s, 1, 0);
}

/* The process stops: close resumable and do not come back (the loop is stopping). */
static void close_for_stop(struct gw_shard *s)
{
    close_and_reconnect(s, 1, -1);
}

static int write_text(struct gw_shard *s, const char *p, size_t len)
{
    unsigned char *buf = s->gw->txbuf;
    if (len > SH_GW_MAX_SEND_BYTES)
        return SH_ETOOBIG;
    memcpy(buf + LWS_PRE, p, len);
    int n = lws_write(s->wsi, buf + LWS_PRE, len, LWS_WRITE_TEXT);
    if (n < (int)len)
        return SH_ENET;
    gw__sendq_record(s->sendq, sh_now_ms());
    return SH_OK;
}

static int session_up(const struct gw_shard *s)
{
    return s->status == GW_LOADING || s->status == GW_READY;
}

/* 1 when the send window has room now; otherwise a retry is scheduled for when it reopens. */
static int window_open(struct gw_shard *s, uint64_t now, int heartbeat)
{
    uint64_t wait = 0;
    if (gw__sendq_allowed(s->sendq, now, heartbeat, &wait))
        return 1;
    schedule(s, &s->sul_write, write_timer_cb, wait);
    return 0;
}

/*
 * One write per writeable callback, inside the send window: the IDENTIFY or RESUME first,
 * then a due heartbeat, then user payloads once the session is up.
 */
static int on_writeable(struct gw_shard *s)
{
    if (s->close_code) {
        lws_close_reason(s->wsi, (enum lws_close_status)s->close_code, (unsigned char *)"shardhook",
                         9);
        return -1;
    }
    uint64_t now = sh_now_ms();
    if (s->handshake) {
        if (!window_open(s, now, 0))
            return 0;
        if (write_text(s, s->handshake, s->handshake_len))
            return -1;
        if (s->handshake_identify) {
            gw__identify_sent(s->gw, s, now);
            s->identifies++;
            log_info("msg=\"identify\" shard=%d total=%d", s->id, s->gw->total);
        }
        s->handshake_identify = 0;
        SH_FREE(s->handshake);
        s->handshake_len = 0;
    } else if (s->heartbeat_due) {
        if (!window_open(s, now, 1))
            return 0;
        char hb[64];
        int n = s->has_seq ? snprintf(hb, sizeof(hb), "{\"op\":%d,\"d\":%" PRIu64 "}",
                                      SH_OP_HEARTBEAT, s->seq)
                           : snprintf(hb, sizeof(hb), "{\"op\":%d,\"d\":null}", SH_OP_HEARTBEAT);
        if (write_text(s, hb, (size_t)n))
            return -1;
        s->heartbeat_due = 0;
        s->ack_pending = 1;
        s->hb_sent_ms = now;
        log_debug("msg=\"heartbeat\" shard=%d seq=%" PRIu64, s->id, s->seq);
    } else if (session_up(s)) {
        size_t len;
        const char *p = gw__sendq_peek(s->sendq, &len);
        if (!p || !window_open(s, now, 0))
            return 0;
        if (write_text(s, p, len))
            return -1;
        gw__sendq_pop(s->sendq);
        atomic_fetch_sub(&s->queued_sends, 1);
        s->gw->snap_dirty = 1;
    }
    if (s->handshake || s->heartbeat_due || (session_up(s) && gw__sendq_pending(s->sendq)))
        lws_callback_on_writable(s->wsi);
    return 0;
}

/* An op 3 (presence update) queued: its d replaces the config's presence in later IDENTIFYs. */
static void keep_presence(struct gw_shard *s, const char *p, size_t len)
{
    struct gw_envelope env;
    if (gw__envelope_scan(p, len, &env) || env.op != SH_OP_PRESENCE_UPDATE || !env.d ||
        *env.d != '{')
        return;
    char *copy = malloc(env.d_len + 1);
    if (!copy)
        return;
    memcpy(copy, env.d, env.d_len);
    copy[env.d_len] = '\0';
    free(s->presence);
    s->presence = copy;
}

void gw__shard_queue_user(struct gw_shard *s, const char *p, size_t len)
{
    int rc = gw__sendq_push(s->sendq, p, len);
    if (rc) { /* callers counted the payload in queued_sends, bounded by GW_SENDQ_MAX */
        atomic_fetch_sub(&s->queued_sends, 1);
        log_error("msg=\"payload not queued\" shard=%d bytes=%zu error=\"%s\"", s->id, len,
                  sh_strerror(rc));
        return;
    }
    keep_presence(s, p, len);
    s->gw->snap_dirty = 1;
    if (session_up(s))
        want_write(s);
}

/* Set the IDENTIFY or RESUME to go out before anything else on this connection. */
static int set_handshake(struct gw_shard *s, const char *p, size_t len)
{
    if (len > SH_GW_MAX_SEND_BYTES)
        return SH_ETOOBIG;
    char *copy = malloc(len + 1);
    if (!copy)
        return SH_ENOMEM;
    memcpy(copy, p, len);
    copy[len] = '\0';
    free(s->handshake);
    s->handshake = copy;
    s->handshake_len = len;
    want_write(s);
    return SH_OK;
}

/* ---- identify and resume --------------------------------------------------------------- */

/* in as the inside of a JSON string, bytes kept (sent back as Discord gave them), into out */
static int json_escape(char *out, size_t cap, const char *in)
{
    struct sh_buf b;
    sh_buf_init(&b, cap - 1);
    int rc = sh_json_escape(&b, in, strlen(in), SH_JSON_KEEP_BYTES);
    if (!rc) {
        if (b.len)
            memcpy(out, b.data, b.len);
        out[b.len] = '\0';
    }
    sh_buf_free(&b);
    return rc;
}

/* The IDENTIFY with presence (JSON object, NULL: none) into out. SH_ETOOBIG when too long. */
static int build_identify(const struct gw_gateway *gw, int shard_id, const char *presence,
                          char *out, size_t cap, size_t *len)
{
    const struct cfg_config *cfg = gw->cfg;
    char tok[1024];
    if (json_escape(tok, sizeof(tok), cfg->token))
        return SH_ETOOBIG;
    int n = snprintf(out, cap,
                     "{\"op\":%d,\"d\":{\"token\":\"%s\",\"intents\":%" PRIu64
                     ",\"properties\":{\"os\":\"linux\",\"browser\":\"shardhook\","
                     "\"device\":\"shardhook\"},\"shard\":[%d,%d],\"large_threshold\":%d,"
                     "\"compress\":false%s%s}}",
                     SH_OP_IDENTIFY, tok, cfg->intents, shard_id, gw->total, cfg->large_threshold,
                     presence ? ",\"presence\":" : "", presence ? presence : "");
    if (n < 0 || (size_t)n >= cap)
        return SH_ETOOBIG;
    *len = (size_t)n;
    return SH_OK;
}

int gw__shard_build_identify(const struct gw_gateway *gw, int shard_id, char *out, size_t cap,
                             size_t *len)
{
    return build_identify(gw, shard_id, gw->cfg->presence_json, out, cap, len);
}

static void send_identify(struct gw_shard *s)
{
    char buf[SH_GW_MAX_SEND_BYTES + 1];
    size_t len;
    /* a new session keeps the presence last set through the API, not the config's */
    if (s->presence && build_identify(s->gw, s->id, s->presence, buf, sizeof(buf), &len)) {
        log_warn("msg=\"presence set through the API does not fit in IDENTIFY, using the "
                 "configured one\" shard=%d",
                 s->id);
        SH_FREE(s->presence);
    }
    if (!s->presence && gw__shard_build_identify(s->gw, s->id, buf, sizeof(buf), &len)) {
        log_error("msg=\"IDENTIFY over %d bytes, shorten presence\" shard=%d", SH_GW_MAX_SEND_BYTES,
                  s->id);
        return;
    }
    if (set_handshake(s, buf, len))
        return;
    s->handshake_identify = 1;
    gw__identify_stamp(s->gw, s->id, sh_now_ms()); /* reserve the bucket now */
}

static void identify_cb(lws_sorted_usec_list_t *sul);

/*
 * IDENTIFY now if the shard's bucket allows it, else ask again when it says. Refused (the budget
 * is at its reserve): close with 4000 and wait for the budget, as when take() fails.
 */
static void identify_when_allowed(struct gw_shard *s)
{
    uint64_t wait = gw__identify_wait(s->gw, s->id, sh_now_ms());
    if (wait == GW_IDENTIFY_REFUSED) {
        gw__budget_refused(s->gw, s);
        close_and_reconnect(s, 0, -1);
    } else if (wait) {
        schedule(s, &s->sul_identify, identify_cb, wait);
    } else {
        send_identify(s);
    }
}

static void identify_cb(lws_sorted_usec_list_t *sul)
{
    struct gw_shard *s = lws_container_of(sul, struct gw_shard, sul_identify);
    if (!s->wsi || s->status != GW_IDENTIFYING)
        return;
    identify_when_allowed(s);
}

static void send_resume(struct gw_shard *s)
{
    char tok[1024], sid[256], buf[SH_GW_MAX_SEND_BYTES + 1];
    if (json_escape(tok, sizeof(tok), s->gw->cfg->token) ||
        json_escape(sid, sizeof(sid), s->session_id))
        return;
    int n =
        snprintf(buf, sizeof(buf),
                 "{\"op\":%d,\"d\":{\"token\":\"%s\",\"session_id\":\"%s\",\"seq\":%" PRIu64 "}}",
                 SH_OP_RESUME, tok, sid, s->seq);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return;
    if (set_handshake(s, buf, (size_t)n))
        return;
    s->resumes++;
    log_info("msg=\"resume\" shard=%d seq=%" PRIu64 " attempt=%d", s->id, s->seq,
             s->resume_attempts);
}

/* ---- heartbeats ------------------------------------------------------------------------ */

static void heartbeat_cb(lws_sorted_usec_list_t *sul)
{
    struct gw_shard *s = lws_container_of(sul, struct gw_shard, sul_heartbeat);
    if (!s->wsi)
        return;
    if (!s->saw_hello) {
        log_warn("msg=\"no HELLO, reconnecting\" shard=%d", s->id);
        close_and_resume(s);
        return;
    }
    if (s->ack_pending && s->gw->paused) {
        s->ack_pending = 0; /* not reading: the ACK may be waiting unread in the socket */
    } else if (s->ack_pending) {
        log_warn("msg=\"no heartbeat ACK since the last beat: zombie connection, resuming\" "
                 "shard=%d",
                 s->id);
        close_and_resume_now(s);
        return;
    }
    s->heartbeat_due = 1;
    want_write(s);
    schedule(s, &s->sul_heartbeat, heartbeat_cb, s->hb_interval_ms);
}

/* ---- connecting ------------------------------------------------------------------------ */

static void connect_now(struct gw_shard *s);

static void connect_cb(lws_sorted_usec_list_t *sul)
{
    struct gw_shard *s = lws_container_of(sul, struct gw_shard, sul_connect);
    connect_now(s);
}

/* connect_timeout_ms passed and the websocket is not up: TCP, TLS or the upgrade hangs. */
static void open_timeout_cb(lws_sorted_usec_list_t *sul)
{
    static struct sh_log_limit lim;
    struct gw_shard *s = lws_container_of(sul, struct gw_shard, sul_open);
    if (!s->wsi || s->established)
        return;
    log_warn_limited(&lim,
                     "msg=\"gateway did not finish the handshake in time, reconnecting\" "
                     "shard=%d connect_timeout_ms=%d",
                     s->id, s->gw->cfg->connect_timeout_ms);
    drop_connection(s, "connect timeout");
}

/*
 * Fail static: past the lease deadline the shard may not connect; it waits, disconnected, and
 * looks again every LEASE_RECHECK_MS and whenever the deadline moves. 1 when held back.
 */
static int lease_holds_back(struct gw_shard *s)
{
    uint64_t until = atomic_load(&s->gw->lease_until);
    if (!until || sh_now_ms() < until) {
        s->lease_wait = 0;
        return 0;
    }
    if (!s->lease_wait) {
        s->lease_wait = 1;
        log_warn("msg=\"lease ran out; not reconnecting\" shard=%d", s->id);
    }
    s->identify_at_ms = 0;
    set_status(s, GW_DISCONNECTED);
    schedule(s, &s->sul_connect, connect_cb, LEASE_RECHECK_MS);
    return 1;
}

static void connect_now(struct gw_shard *s)
{
    struct gw_gateway *gw = s->gw;
    if (gw->stopping || s->status == GW_FAILED || !s->held)
        return;
    if (lease_holds_back(s))
        return;
    int resume = s->reconnect_resume && s->session_id[0];
    if (!resume && gw__budget_hold(gw, s))
        return;
    s->identify_at_ms = 0;
    const char *base = resume && s->resume_url[0] ? s->resume_url : gw->bot.url;
    struct ws_url u;
    if (parse_ws_url(base, &u) && (base = gw->bot.url, parse_ws_url(base, &u))) {
        log_error("msg=\"gateway URL not understood\" shard=%d url=\"%s\"", s->id, base);
        s->conn_gen++;
        on_connection_lost(s, "bad url");
        return;
    }
    char path[700];
    size_t pl = strlen(u.path);
    while (pl > 0 && u.path[pl - 1] == '/')
        u.path[--pl] = '\0';
    const char *cname = gw__inflate_query_name(gw->compress);
    snprintf(path, sizeof(path), "%s/?v=10&encoding=json%s%s", u.path, cname ? "&compress=" : "",
             cname ? cname : "");

    s->conn_gen++;
    /* every connection made to resume counts, so an unreachable resume_gateway_url (a stale
       checkpoint, a host that is down) ends in a new session after max_resume_attempts */
    if (resume)
        s->resume_attempts++;
    s->established = 0;
    s->close_code = 0;
    s->self_close = 0;
    s->peer_close_code = 0;
    s->saw_hello = 0;
    s->ack_pending = 0;
    s->heartbeat_due = 0;
    gw__sendq_new_window(s->sendq);
    SH_FREE(s->handshake);
    s->handshake_identify = 0;
    if (gw__inflate_reset(s->z)) {
        on_connection_lost(s, "inflate reset failed");
        return;
    }
    set_status(s, GW_CONNECTING);
    log_info("msg=\"connecting\" shard=%d host=%s port=%d path=\"%s\" resume=%d", s->id, u.host,
             u.port, path, resume);

    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof(ci));
    ci.context = gw->ctx;
    ci.address = u.host;
    ci.port = u.port;
    ci.path = path;
    ci.host = u.host;
    ci.origin = u.host;
    ci.ssl_connection = u.tls ? LCCSCF_USE_SSL : 0;
    ci.local_protocol_name = "shardhook-gateway";
    ci.pwsi = &s->wsi;
    ci.opaque_user_data = s;
    unsigned gen = s->conn_gen;
    schedule(s, &s->sul_open, open_timeout_cb, (uint64_t)gw->cfg->connect_timeout_ms);
    struct lws *w = lws_client_connect_via_info(&ci);
    if (!w && s->lost_gen != gen) {
        s->wsi = NULL;
        on_connection_lost(s, "connect failed");
    }
}

/* Closes after which the shard must not reconnect: the config or the token needs a fix. */
static int is_fatal(int code)
{
    return code == SH_CLOSE_AUTHENTICATION_FAILED ||
           (code >= SH_CLOSE_INVALID_SHARD && code <= SH_CLOSE_DISALLOWED_INTENTS);
}

/* Closes after which the session cannot be resumed. */
static int ends_session(int code)
{
    return code == SH_CLOSE_NOT_AUTHENTICATED || code == SH_CLOSE_INVALID_SEQ ||
           code == SH_CLOSE_SESSION_TIMED_OUT;
}

/* Why a close that ends the session ended it, as SHARDHOOK_SESSION_LOST says. */
static const char *session_end_reason(int code)
{
    switch (code) {
    case SH_CLOSE_NOT_AUTHENTICATED:
        return "not_authenticated";
    case SH_CLOSE_INVALID_SEQ:
        return "invalid_seq";
    default:
        return "session_timed_out";
    }
}

/*
 * After a connection ended with code (the server's close, 0 when none): 1 when the next one
 * RESUMEs, 0 when it IDENTIFYs; the session is dropped then, and announced as lost when the
 * close ended it or every RESUME failed.
 */
static int resume_next(struct gw_shard *s, int code)
{
    int resume;
    if (s->self_close)
        resume = s->reconnect_resume;
    else
        resume = !ends_session(code);
    if (resume && !s->session_id[0])
        resume = 0;
    const char *lost = !s->self_close && ends_session(code) ? session_end_reason(code) : NULL;
    if (resume && s->resume_attempts >= s->gw->cfg->max_resume_attempts) {
        log_warn("msg=\"resume keeps failing, starting a new session\" shard=%d attempts=%d", s->id,
                 s->resume_attempts);
        resume = 0;
        lost = "resume_failed";
    }
    if (!resume && lost)
        lose_session(s, lost);
    else if (!resume)
        drop_session(s);
    return resume;
}

static void on_connection_lost(struct gw_shard *s, const char *why)
{
    struct gw_gateway *gw = s->gw;
    if (s->lost_gen == s->conn_gen)
        return;
    s->lost_gen = s->conn_gen;
    s->wsi = NULL;
    if (s->established && !s->self_close) {
        char code[16] = "none";
        if (s->peer_close_code)
            snprintf(code, sizeof(code), "%d", s->peer_close_code);
        sh_metric_add(gw->m_closes, 1, code);
    }
    s->established = 0;
    cancel_timers(s);
    SH_FREE(s->handshake);
    s->handshake_len = 0;
    s->handshake_identify = 0;
    gw__budget_return(gw, s);
    int code = s->peer_close_code;
    if (gw->stopping) {
        set_status(s, GW_DISCONNECTED);
        return;
    }
    if (s->budget_hold) { /* identifying was refused: the budget's refill restarts the shard */
        set_status(s, GW_QUEUED);
        return;
    }
    if (code && !s->self_close && is_fatal(code)) {
        unsigned dropped = gw__sendq_pending(s->sendq);
        gw__sendq_clear(s->sendq);
        atomic_fetch_sub(&s->queued_sends, (int)dropped);
        if (dropped)
            log_warn("msg=\"queued payloads dropped with the failed shard\" shard=%d count=%u",
                     s->id, dropped);
        set_status(s, GW_FAILED);
        gw__shard_failed(gw, s, code, why);
        return;
    }
    int resume = resume_next(s, code);
    s->reconnect_resume = resume;

    uint64_t delay;
    if (s->next_delay_ms >= 0)
        delay = (uint64_t)s->next_delay_ms;
    else
        delay = sh_backoff_ms(s->reconnect_attempt++, (uint64_t)gw->cfg->reconnect_base_ms,
                              (uint64_t)gw->cfg->reconnect_max_ms);
    s->next_delay_ms = -1;
    log_info("msg=\"disconnected\" shard=%d reason=\"%s\" close_code=%d self=%d "
             "next=%s delay_ms=%" PRIu64,
             s->id, why, code, s->self_close, resume ? "resume" : "identify", delay);
    set_status(s, GW_DISCONNECTED);
    uint64_t now = sh_now_ms();
    if (!resume) {
        uint64_t slot = gw__identify_slot(gw, s->id, now + delay);
        delay = slot - now;
        s->identify_at_ms = slot;
        set_status(s, GW_QUEUED);
    }
    schedule(s, &s->sul_connect, connect_cb, delay);
}

void gw__shard_start(struct gw_shard *s)
{
    uint64_t now = sh_now_ms();
    if (s->session_id[0]) {
        s->reconnect_resume = 1;
        connect_now(s);
        return;
    }
    s->reconnect_resume = 0;
    uint64_t slot = gw__identify_slot(s->gw, s->id, now);
    s->identify_at_ms = slot;
    set_status(s, GW_QUEUED);
    if (slot <= now)
        connect_now(s);
    else
        schedule(s, &s->sul_connect, connect_cb, slot - now);
}

void gw__shard_reconnect(struct gw_shard *s, int resume)
{
    if (s->status == GW_FAILED || s->gw->stopping)
        return;
    log_info("msg=\"reconnect requested\" shard=%d resume=%d", s->id, resume);
    if (!resume)
        drop_session(s);
    if (s->wsi) {
        close_and_reconnect(s, resume, 0);
        return;
    }
    /* not connected: connect now instead of waiting for a planned reconnect */
    lws_sul_cancel(&s->sul_connect);
    s->reconnect_resume = resume && s->session_id[0];
    if (s->reconnect_resume) {
        connect_now(s);
    } else {
        uint64_t now = sh_now_ms(), slot = gw__identify_slot(s->gw, s->id, now);
        s->identify_at_ms = slot;
        set_status(s, GW_QUEUED);
        schedule(s, &s->sul_connect, connect_cb, slot - now);
    }
}

void gw__shard_hold(struct gw_shard *s, const struct gw_resume_point *from)
{
    if (s->held || s->gw->stopping)
        return;
    int rc = gw__shard_prepare(s);
    if (rc) {
        log_error("msg=\"shard not held\" shard=%d error=\"%s\"", s->id, sh_strerror(rc));
        atomic_store(&s->runs, 0);
        return;
    }
    s->held = 1;
    drop_session(s);
    if (from && from->session_id[0]) {
        snprintf(s->session_id, sizeof(s->session_id), "%s", from->session_id);
        snprintf(s->resume_url, sizeof(s->resume_url), "%s", from->resume_url);
        s->seq = from->seq;
        s->has_seq = 1;
    }
    log_info("msg=\"shard held\" shard=%d next=%s seq=%" PRIu64, s->id,
             s->session_id[0] ? "resume" : "identify", s->seq);
    s->gw->snap_dirty = 1;
    gw__shard_start(s);
}

/*
 * End the connection in progress for good: a close frame with 4000 when the websocket is up.
 * Returns the socket let go of (it ends on its own, shardless), or NULL when there was none.
 */
static struct lws *let_go_of_socket(struct gw_shard *s)
{
    struct lws *wsi = s->wsi;
    s->wsi = NULL;
    s->lost_gen = ++s->conn_gen; /* nothing of that connection reaches the shard again */
    if (!wsi)
        return NULL;
    lws_set_opaque_user_data(wsi, NULL);
    if (s->established && !s->close_code) {
        /* written by the next writeable callback, which closes a shardless wsi (never 1000) */
        lws_close_reason(wsi, (enum lws_close_status)SH_CLOSE_RESUMABLE,
                         (unsigned char *)"shardhook", 9);
        lws_callback_on_writable(wsi);
        lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND, (CLOSE_GRACE_MS + 999) / 1000);
    } else {
        lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
    }
    return wsi;
}

/* ---- releases that wait for their socket to be gone ---------------------------------------- */

static void orphans_cb(lws_sorted_usec_list_t *sul);

static void schedule_orphans(struct gw_gateway *gw)
{
    uint64_t first = UINT64_MAX, now = sh_now_ms();
    for (size_t i = 0; i < gw->n_orphans; i++)
        if (gw->orphans[i].deadline_ms < first)
            first = gw->orphans[i].deadline_ms;
    if (first == UINT64_MAX)
        lws_sul_cancel(&gw->sul_orphans);
    else
        lws_sul_schedule(gw->ctx, 0, &gw->sul_orphans, orphans_cb,
                         (lws_usec_t)(first > now ? first - now : 0) * LWS_US_PER_MS);
}

/* Tell orphan i's waiter and forget it (the list's last entry takes its place). */
static void orphan_done(struct gw_gateway *gw, size_t i)
{
    struct gw_orphan o = gw->orphans[i];
    gw->orphans[i] = gw->orphans[--gw->n_orphans];
    o.then.closed(o.then.arg, o.shard);
}

static void orphans_cb(lws_sorted_usec_list_t *sul)
{
    struct gw_gateway *gw = lws_container_of(sul, struct gw_gateway, sul_orphans);
    uint64_t now = sh_now_ms();
    for (size_t i = gw->n_orphans; i-- > 0;) {
        if (gw->orphans[i].deadline_ms > now)
            continue;
        log_warn("msg=\"a released shard's socket did not report its end in time; going on\" "
                 "shard=%d",
                 gw->orphans[i].shard);
        orphan_done(gw, i);
    }
    schedule_orphans(gw);
}

/* then waits for wsi to be gone; told at once when it cannot be kept. */
static void add_orphan(struct gw_gateway *gw, struct lws *wsi, int shard,
                       const struct gw_released *then)
{
    if (gw->n_orphans == gw->cap_orphans) {
        size_t cap = gw->cap_orphans ? gw->cap_orphans * 2 : 8;
        struct gw_orphan *o = realloc(gw->orphans, cap * sizeof(*o));
        if (!o) {
            then->closed(then->arg, shard); /* the close frame is on its way all the same */
            return;
        }
        gw->orphans = o;
        gw->cap_orphans = cap;
    }
    gw->orphans[gw->n_orphans++] = (struct gw_orphan){
        .wsi = wsi,
        .shard = shard,
        .then = *then,
        .deadline_ms = sh_now_ms() + CLOSE_GRACE_MS + 1000,
    };
    schedule_orphans(gw);
}

void gw__orphan_gone(struct gw_gateway *gw, struct lws *wsi)
{
    for (size_t i = 0; gw && i < gw->n_orphans; i++) {
        if (gw->orphans[i].wsi == wsi) {
            orphan_done(gw, i);
            schedule_orphans(gw);
            return;
        }
    }
}

void gw__orphans_flush(struct gw_gateway *gw)
{
    while (gw->n_orphans)
        orphan_done(gw, gw->n_orphans - 1);
}

void gw__shard_release(struct gw_shard *s, const struct gw_released *then)
{
    struct gw_gateway *gw = s->gw;
    if (!s->held) {
        if (then) /* released before: its socket went with that release */
            then->closed(then->arg, s->id);
        return;
    }
    struct lws *wsi = let_go_of_socket(s);
    if (then && wsi)
        add_orphan(gw, wsi, s->id, then);
    else if (then)
        then->closed(then->arg, s->id);
    cancel_timers(s);
    gw__budget_return(gw, s);
    unsigned dropped = s->sendq ? gw__sendq_pending(s->sendq) : 0;
    if (s->sendq)
        gw__sendq_clear(s->sendq);
    atomic_fetch_sub(&s->queued_sends, (int)dropped);
    log_info("msg=\"shard released\" shard=%d status=%s seq=%" PRIu64 " dropped_sends=%u", s->id,
             gw_status_names[s->status], s->seq, dropped);
    drop_session(s);
    SH_FREE(s->handshake);
    s->handshake_len = 0;
    s->handshake_identify = 0;
    s->budget_hold = 0;
    s->identify_at_ms = 0;
    s->established = 0;
    s->close_code = 0;
    s->peer_close_code = 0;
    s->self_close = 0;
    s->saw_hello = 0;
    s->ack_pending = 0;
    s->heartbeat_due = 0;
    s->reconnect_resume = 0;
    s->reconnect_attempt = 0;
    s->next_delay_ms = -1;
    s->lease_wait = 0;
    s->latency_ms = -1;
    s->guilds = 0;
    s->held = 0;
    s->status = GW_QUEUED;
    unprepare(s);
    gw->snap_dirty = 1;
}

void gw__shard_lease_moved(struct gw_shard *s)
{
    if (!s->held || !s->lease_wait || s->wsi)
        return;
    lws_sul_cancel(&s->sul_connect);
    connect_now(s);
}

void gw__shard_fill_info(const struct gw_shard *s, struct gw_shard_info *out)
{
    out->id = s->id;
    out->status = gw_status_names[s->status];
    out->latency_ms = s->latency_ms;
    snprintf(out->session_id, sizeof(out->session_id), "%s", s->session_id);
    out->seq = s->seq;
    out->guilds = s->guilds;
    out->guilds_pending = (int)s->n_pending;
    out->identifies = s->identifies;
    out->resumes = s->resumes;
    out->last_event_at_ms = s->last_event_at_ms;
    out->events = s->events;
    out->queued_sends = atomic_load(&s->queued_sends);
}

void gw__shard_shutdown(struct gw_shard *s)
{
    cancel_timers(s);
    if (!s->held)
        return;
    if (s->wsi) {
        close_for_stop(s);
    } else if (s->status != GW_FAILED) {
        set_status(s, GW_DISCONNECTED);
    }
}

/* ---- payloads -------------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A snowflake given as a JSON string, or 0 when v is none. */
static uint64_t snowflake(const cJSON *v)
{
    uint64_t id = 0;
    if (cJSON_IsString(v))
        sh_parse_snowflake(v->valuestring, strlen(v->valuestring), &id);
    return id;
}

static void guilds_timeout_cb(lws_sorted_usec_list_t *sul)
{
    struct gw_shard *s = lws_container_of(sul, struct gw_shard, sul_guilds);
    if (s->status != GW_LOADING)
        return;
    log_warn("msg=\"guilds still unavailable after guild_create_timeout_ms, shard ready\" "
             "shard=%d missing=%zu",
             s->id, s->n_pending);
    SH_FREE(s->pending_guilds);
    s->n_pending = 0;
    set_status(s, GW_READY);
}

static void loading_progress(struct gw_shard *s)
{
    if (s->status != GW_LOADING)
        return;
    if (!s->n_pending) {
        lws_sul_cancel(&s->sul_guilds);
        set_status(s, GW_READY);
    } else {
        schedule(s, &s->sul_guilds, guilds_timeout_cb,
                 (uint64_t)s->gw->cfg->guild_create_timeout_ms);
    }
}

/* READY, read once here: the session goes to the shard and, in *out, to the sink with the event */
static void on_ready(struct gw_shard *s, const char *d, size_t d_len, struct gw_session *out)
{
    cJSON *root = cJSON_ParseWithLength(d, d_len);
    cJSON *sid = cJSON_GetObjectItemCaseSensitive(root, "session_id");
    cJSON *rurl = cJSON_GetObjectItemCaseSensitive(root, "resume_gateway_url");
    cJSON *guilds = cJSON_GetObjectItemCaseSensitive(root, "guilds");
    memset(out, 0, sizeof(*out));
    if (!cJSON_IsString(sid) || strlen(sid->valuestring) >= sizeof(s->session_id)) {
        log_warn("msg=\"READY without a usable session_id\" shard=%d", s->id);
        cJSON_Delete(root);
        return;
    }
    snprintf(s->session_id, sizeof(s->session_id), "%s", sid->valuestring);
    if (cJSON_IsString(rurl) && strlen(rurl->valuestring) < sizeof(s->resume_url))
        snprintf(s->resume_url, sizeof(s->resume_url), "%s", rurl->valuestring);
    else
        s->resume_url[0] = '\0';
    snprintf(out->session_id, sizeof(out->session_id), "%s", s->session_id);
    snprintf(out->resume_url, sizeof(out->resume_url), "%s", s->resume_url);
    SH_FREE(s->pending_guilds);
    s->n_pending = 0;
    int n = cJSON_GetArraySize(guilds);
    s->guilds = n;
    if (n > 0) {
        s->pending_guilds = calloc((size_t)n, sizeof(uint64_t));
        const cJSON *g;
        cJSON_ArrayForEach(g, guilds)
        {
            uint64_t id = snowflake(cJSON_GetObjectItemCaseSensitive(g, "id"));
            if (id && s->pending_guilds &&
                cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(g, "unavailable")))
                s->pending_guilds[s->n_pending++] = id;
        }
        if (s->pending_guilds)
            qsort(s->pending_guilds, s->n_pending, sizeof(uint64_t), cmp_u64);
    }
    cJSON_Delete(root);
    s->resume_attempts = 0;
    s->reconnect_attempt = 0;
    log_info("msg=\"ready\" shard=%d guilds=%d unavailable=%zu", s->id, s->guilds, s->n_pending);
    set_status(s, GW_LOADING);
    loading_progress(s);
    want_write(s); /* payloads queued before the session was up */
}

/* d.id and d.unavailable come from the envelope scan: a GUILD_CREATE can be megabytes */
static void on_guild(struct gw_shard *s, int create, const struct gw_envelope *env)
{
    uint64_t id = gw_json_snowflake(env->d_id, env->d_id_len);
    int unavailable = env->d_unavailable;
    if (!id)
        return;
    uint64_t *hit = s->n_pending
                        ? bsearch(&id, s->pending_guilds, s->n_pending, sizeof(uint64_t), cmp_u64)
                        : NULL;
    if (create) {
        if (hit) {
            size_t i = (size_t)(hit - s->pending_guilds);
            memmove(hit, hit + 1, (s->n_pending - i - 1) * sizeof(uint64_t));
            s->n_pending--;
            loading_progress(s);
        } else if (!unavailable) {
            s->guilds++; /* joined, or back from an outage we did not count out */
        }
    } else if (!unavailable && !hit && s->guilds > 0) {
        s->guilds--; /* left or removed; an unavailable guild still counts */
    }
}

static void on_hello(struct gw_shard *s, const char *d, size_t d_len)
{
    cJSON *root = cJSON_ParseWithLength(d, d_len);
    cJSON *iv = cJSON_GetObjectItemCaseSensitive(root, "heartbeat_interval");
    double interval = cJSON_IsNumber(iv) ? iv->valuedouble : 0;
    cJSON_Delete(root);
    if (interval < 1 || interval > 3600000) {
        log_warn("msg=\"HELLO without a usable heartbeat_interval\" shard=%d", s->id);
        close_and_resume(s);
        return;
    }
    s->saw_hello = 1;
    s->hb_interval_ms = (uint64_t)interval;
    uint64_t first = (uint64_t)(interval * sh_rand_unit());
    schedule(s, &s->sul_heartbeat, heartbeat_cb, first);
    log_debug("msg=\"hello\" shard=%d heartbeat_interval_ms=%" PRIu64 " first_beat_ms=%" PRIu64,
              s->id, s->hb_interval_ms, first);
    if (s->reconnect_resume && s->session_id[0]) {
        set_status(s, GW_RESUMING);
        send_resume(s);
    } else {
        set_status(s, GW_IDENTIFYING);
        identify_when_allowed(s);
    }
}

#define T_IS(env, lit) ((env)->t_len == sizeof(lit) - 1 && !memcmp((env)->t, lit, sizeof(lit) - 1))

static void on_dispatch(struct gw_shard *s, const struct gw_envelope *env, uint64_t now)
{
    s->last_event_at_ms = sh_wall_ms();
    s->events++;
    if (!env->t || !env->d)
        return;
    const struct gw_observer *obs = &s->gw->observer;
    if (obs->on_dispatch)
        obs->on_dispatch(obs->ud, s->id, env->t, env->t_len, env->has_s ? env->s : 0, env->d,
                         env->d_len);
    struct gw_session session;
    int ready = T_IS(env, "READY");
    if (ready) {
        on_ready(s, env->d, env->d_len, &session);
    } else if (T_IS(env, "RESUMED")) {
        s->resume_attempts = 0;
        s->reconnect_attempt = 0;
        log_info("msg=\"resumed\" shard=%d seq=%" PRIu64, s->id, s->seq);
        set_status(s, s->n_pending ? GW_LOADING : GW_READY);
        loading_progress(s);
        want_write(s); /* payloads queued while away */
    } else if (T_IS(env, "GUILD_CREATE")) {
        on_guild(s, 1, env);
    } else if (T_IS(env, "GUILD_DELETE")) {
        on_guild(s, 0, env);
    }
    /* without s (or with "s":null) it goes out with "s":null: never another event's s */
    gw__emit(s->gw, s, env->t, env->t_len, env->has_s ? env->s : 0, env->d, env->d_len, now,
             ready ? &session : NULL);
}

static void on_payload(struct gw_shard *s, const char *p, size_t n)
{
    struct gw_envelope env;
    if (gw__envelope_scan(p, n, &env)) {
        log_warn("msg=\"malformed gateway payload skipped\" shard=%d bytes=%zu", s->id, n);
        return;
    }
    uint64_t now = sh_now_ms();
    if (env.has_s) {
        s->seq = env.s;
        s->has_seq = 1;
    }
    switch (env.op) {
    case SH_OP_DISPATCH:
        on_dispatch(s, &env, gw__rx_ms(s->gw, now));
        break;
    case SH_OP_HEARTBEAT:
        log_debug("msg=\"heartbeat requested by the server\" shard=%d", s->id);
        s->heartbeat_due = 1;
        want_write(s);
        break;
    case SH_OP_RECONNECT:
        log_info("msg=\"reconnect requested (op 7)\" shard=%d", s->id);
        close_and_resume_now(s);
        break;
    case SH_OP_INVALID_SESSION: {
        int resumable = env.d && env.d_len == 4 && !memcmp(env.d, "true", 4);
        /* Discord asks for a pause of 1 to 5 s; scaled with reconnect_base_ms (1 s default) */
        int64_t base = s->gw->cfg->reconnect_base_ms;
        int64_t delay = base + (int64_t)(sh_rand_unit() * (double)(4 * base));
        log_info("msg=\"invalid session (op 9)\" shard=%d resumable=%d delay_ms=%" PRId64, s->id,
                 resumable, delay);
        if (!resumable)
            lose_session(s, "invalid_session");
        close_and_reconnect(s, resumable, delay);
        break;
    }
    case SH_OP_HELLO:
        on_hello(s, env.d, env.d ? env.d_len : 0);
        break;
    case SH_OP_HEARTBEAT_ACK:
        s->ack_pending = 0;
        s->latency_ms = (int)(now - s->hb_sent_ms);
        break;
    default:
        log_debug("msg=\"unknown op ignored\" shard=%d op=%d", s->id, env.op);
    }
}

/*
 * A payload over max_payload_bytes was skipped (p[0..n) is its front): say so in the log and to
 * every webhook (SHARDHOOK_EVENT_SKIPPED with its shard, s, t and size), and go on with the
 * session. Its s counts as seen, so heartbeats and a RESUME do not ask for it again.
 */
static void on_oversized(struct gw_shard *s, const char *p, size_t n, size_t size)
{
    struct gw_envelope env;
    if (gw__envelope_peek(p, n, &env))
        env = (struct gw_envelope){.op = -1};
    if (env.has_s) {
        s->seq = env.s;
        s->has_seq = 1;
    }
    char sv[24] = "null", tv[SKIP_PREFIX + 8] = "null", d[SKIP_PREFIX + 128];
    if (env.has_s && env.s)
        snprintf(sv, sizeof(sv), "%" PRIu64, env.s);
    if (env.t) /* scanned: a JSON string without escapes */
        snprintf(tv, sizeof(tv), "\"%.*s\"", (int)env.t_len, env.t);
    log_warn("msg=\"gateway payload over max_payload_bytes skipped; the session goes on\" "
             "shard=%d bytes=%zu max_payload_bytes=%zu op=%d t=%s s=%s",
             s->id, size, s->gw->cfg->max_payload_bytes, env.op, tv, sv);
    sh_metric_add(s->gw->m_skipped, 1);
    int dn = snprintf(d, sizeof(d), "{\"shard\":%d,\"s\":%s,\"t\":%s,\"size\":%zu}", s->id, sv, tv,
                      size);
    if (dn < 0 || (size_t)dn >= sizeof(d))
        return;
    s->last_event_at_ms = sh_wall_ms();
    s->events++;
    gw__emit(s->gw, s, SKIPPED_T, sizeof(SKIPPED_T) - 1, env.has_s ? env.s : 0, d, (size_t)dn,
             gw__rx_ms(s->gw, sh_now_ms()), NULL);
}

/*
 * The next part of a websocket message, straight from lws's read buffer: decompressed at once,
 * so a multi-megabyte payload is inflated a read at a time between the other shards' reads.
 */
static void on_message_part(struct gw_shard *s, const char *part, size_t len, int last)
{
    const char *p;
    size_t n;
    int done;
    int rc = gw__inflate_feed_part(s->z, part, len, last, &p, &n, &done);
    if (rc) {
        log_warn("msg=\"gateway stream unreadable, reconnecting\" shard=%d error=\"%s\"", s->id,
                 sh_strerror(rc));
        close_and_resume(s);
        return;
    }
    size_t size;
    if (done && gw__inflate_skipped(s->z, &size))
        on_oversized(s, p, n, size);
    else if (done)
        on_payload(s, p, n);
}

/* ---- libwebsockets callback ------------------------------------------------------------ */

/*
 * wsi ended. The first callback that says so detaches it from the shard (its later callbacks
 * carry no shard) and, when it is the shard's current connection, hands the loss to
 * on_connection_lost exactly once; the shard never keeps a pointer libwebsockets may free.
 */
static void wsi_gone(struct lws *wsi, struct gw_shard *s, const char *why)
{
    if (!s)
        return;
    lws_set_opaque_user_data(wsi, NULL);
    if (s->wsi && s->wsi != wsi)
        return; /* an earlier connection of the shard, already handled */
    on_connection_lost(s, why);
}

int gw__shard_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    (void)user;
    struct gw_shard *s = lws_get_opaque_user_data(wsi);
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (!s)
            return -1;
        lws_sul_cancel(&s->sul_open);
        s->established = 1;
        if (s->gw->paused)
            lws_rx_flow_control(wsi, 0);
        set_status(s, GW_HANDSHAKING);
        schedule(s, &s->sul_heartbeat, heartbeat_cb, HELLO_TIMEOUT_MS);
        if (s->close_code || s->gw->stopping)
            lws_callback_on_writable(wsi);
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!s || s->close_code)
            break;
        if (s->rx_pass != s->gw->pass_no) {
            s->rx_pass = s->gw->pass_no;
            s->rx_pass_bytes = 0;
        }
        s->rx_pass_bytes += len;
        s->gw->pass_rx_bytes += len;
        if (s->rx_pass_bytes > s->gw->pass_rx_max)
            s->gw->pass_rx_max = s->rx_pass_bytes;
        on_message_part(s, in, len,
                        lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi));
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (!s)
            return -1;
        return on_writeable(s);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (s && len >= 2) {
            const unsigned char *b = in;
            s->peer_close_code = (b[0] << 8) | b[1];
            log_info("msg=\"server closed the connection\" shard=%d close_code=%d", s->id,
                     s->peer_close_code);
        }
        break;
    /*
     * Every way a client connection can end, whichever of them comes first (libwebsockets may
     * skip CLIENT_CLOSED and CONNECTION_ERROR, e.g. when its own timeout ends an upgrade that
     * was never answered; WSI_DESTROY always comes last).
     */
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        char why[160];
        snprintf(why, sizeof(why), "connection error: %.120s", in ? (const char *)in : "?");
        wsi_gone(wsi, s, why);
        break;
    }
    case LWS_CALLBACK_CLIENT_CLOSED:
        wsi_gone(wsi, s, s && s->self_close ? "closed by shardhook" : "connection closed");
        break;
    case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
        wsi_gone(wsi, s, "connection closed before the websocket upgrade");
        break;
    case LWS_CALLBACK_WSI_DESTROY:
        if (!s) /* perhaps a released shard's socket that a handoff waits for */
            gw__orphan_gone(lws_context_user(lws_get_context(wsi)), wsi);
        wsi_gone(wsi, s, "connection destroyed");
        break;
    default:
        break;
    }
    return 0;
}
