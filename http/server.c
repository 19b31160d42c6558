/*
 * http/server.c: the libmicrohttpd daemon behind http/server.h: binding, per-request state,
 * body collection with a hard cap (413), bearer authentication (constant time, 401 with
 * WWW-Authenticate), 404/405, suspend/resume for waiting requests, and turning a struct
 * http_reply into an MHD response. Endpoint logic lives in handlers.c; waiting in pending.c.
 *
 * Threads: MHD's internal thread pool calls on_request/on_completed; the pending worker and
 * the gateway thread only ever call wake() (MHD_resume_connection, which is thread-safe).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "config/listen.h"
#include "http/forward.h"
#include "http/guard.h"
#include "http/handlers.h"
#include "http/internal.h"
#include "http/pending.h"
#include "http/reply.h"
#include "http/route.h"
#include "http/server.h"
#include "http/stats.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/log.h"

#define POOL_THREADS 4
#define STOP_DRAIN_MS 2000 /* how long stop waits for resumed requests to be answered */
#define MAX_PATH 256
/*
 * A body over HTTP_MAX_BODY whose size was not announced (chunked) is read and dropped up to
 * this much so that the client gets its 413; past it the connection is closed.
 */
#define MAX_DISCARD ((size_t)1 << 20)

struct http_server {
    struct http_ctx ctx;
    struct MHD_Daemon *daemon;
    struct http_pending *pending;
    int port;
    pthread_mutex_t token_lock; /* guards has_token and token_hash: a reload replaces them */
    int has_token;
    struct http_guard guard;
    unsigned char token_hash[SHA256_DIGEST_LENGTH]; /* of "Bearer <token>" */
    atomic_int suspended; /* requests ever suspended whose answer is not yet sent (on_completed) */
    atomic_int stopping;
};

struct request {
    struct http__wakeable wk; /* first: the pending table's token (http__wake) */
    struct http_server *srv;
    struct MHD_Connection *conn;
    enum http_method method;
    struct http_match match;
    struct sh_buf body;
    int too_big;
    size_t discarded; /* body bytes dropped after too_big */
    int early;        /* answered before the body was read (404/405/401/413) */
    int suspended;    /* waiting for a wake-up */
    int counted;      /* counted in srv->suspended until on_completed */
    int answered;
    struct http_waiter *waiter;
    struct http_reply reply;
    uint64_t started_ms;
};

/* ---- gateway ops --------------------------------------------------------------------------- */

static int op_send(void *gw, int shard, const char *p, size_t n)
{
    return gw_gateway_send(gw, shard, p, n);
}
static int op_reconnect(void *gw, int shard, int resume)
{
    return gw_gateway_reconnect(gw, shard, resume);
}
static int op_snapshot(void *gw, struct gw_overview *ov, struct gw_shard_info *s, int cap)
{
    return gw_gateway_snapshot(gw, ov, s, cap);
}
static int op_shard_info(void *gw, int shard, struct gw_shard_info *out)
{
    return gw_gateway_shard_info(gw, shard, out);
}
static int op_total(void *gw)
{
    return gw_gateway_total(gw);
}
static int op_runs(void *gw, int shard)
{
    return gw_gateway_runs(gw, shard);
}
static int op_withdraw(void *gw, int shard, const char *p, size_t n)
{
    return gw_gateway_withdraw(gw, shard, p, n);
}

const struct http_gateway_ops http_gateway_default_ops = {
    .send = op_send,
    .reconnect = op_reconnect,
    .snapshot = op_snapshot,
    .shard_info = op_shard_info,
    .total = op_total,
    .runs = op_runs,
    .withdraw = op_withdraw,
};

static const char *header(struct request *rq, const char *name);

/* ---- responses ----------------------------------------------------------------------------- */

static void log_answer(int status, const struct request *rq)
{
    unsigned long long ms = (unsigned long long)(sh_now_ms() - rq->started_ms);
    /* a probe's 503 ("not ready yet") is its answer, not a failure: polls would flood */
    int probe = rq->match.route == HTTP_ROUTE_READYZ && status == 503;
    if (status >= 500 && !probe)
        log_warn("msg=\"control request failed\" route=\"%s\" status=%d ms=%llu",
                 http_route_name(rq->match.route), status, ms);
    else
        log_debug("msg=\"control request\" route=\"%s\" status=%d ms=%llu",
                  http_route_name(rq->match.route), status, ms);
}

/*
 * The cache routes' 200s (forwarded ones too) carry an ETag, a hash of the body; a request whose
 * If-None-Match names it gets 304 with no body.
 */
static void add_etag(struct request *rq, char etag[19])
{
    struct http_reply *r = &rq->reply;
    etag[0] = '\0';
    if (r->status != 200 || r->static_body || !http__cache_route(rq->match.route))
        return;
    http__etag(r->body.data ? r->body.data : "", r->body.len, etag);
    if (http__etag_matches(header(rq, MHD_HTTP_HEADER_IF_NONE_MATCH), etag)) {
        r->status = 304;
        sh_buf_reset(&r->body);
    }
}

static enum MHD_Result queue_reply(struct request *rq)
{
    struct http_reply *r = &rq->reply;
    char etag[19];
    if (!r->status)
        http_reply_error(r, 500, "internal", "no answer was produced");
    add_etag(rq, etag);
    struct MHD_Response *resp;
    if (r->static_body)
        resp = MHD_create_response_from_buffer(r->static_len, (void *)r->static_body,
                                               MHD_RESPMEM_PERSISTENT);
    else
        resp = MHD_create_response_from_buffer(
            r->body.len, r->body.data ? r->body.data : (void *)"", MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (r->retry_after[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, r->retry_after);
    if (r->allow[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    if (etag[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    if (r->www_authenticate)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"shardhook\"");
    enum MHD_Result ret = MHD_queue_response(rq->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    rq->answered = 1;
    http_stats_request(rq->match.route, r->status, (double)(sh_now_ms() - rq->started_ms) / 1000.0);
    log_answer(r->status, rq);
    return ret;
}

/* ---- authentication ------------------------------------------------------------------------ */

/*
 * Compare "Authorization" with "Bearer <token>" in constant time: both sides are hashed
 * (SHA-256) first, so neither the token's length nor its content leaks through timing.
 */
static int authorised(struct http_server *srv, struct MHD_Connection *c)
{
    unsigned char want[SHA256_DIGEST_LENGTH];
    pthread_mutex_lock(&srv->token_lock);
    int has = srv->has_token;
    memcpy(want, srv->token_hash, sizeof(want));
    pthread_mutex_unlock(&srv->token_lock);
    if (!has)
        return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    unsigned char got[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)(h ? h : ""), h ? strlen(h) : 0, got);
    return CRYPTO_memcmp(got, want, sizeof(got)) == 0 && h;
}

int http_server_set_token(struct http_server *srv, const char *token)
{
    unsigned char hash[SHA256_DIGEST_LENGTH];
    int has = token && token[0];
    if (has) {
        char *bearer = NULL;
        if (asprintf(&bearer, "Bearer %s", token) < 0)
            return SH_ENOMEM;
        SHA256((const unsigned char *)bearer, strlen(bearer), hash);
        OPENSSL_cleanse(bearer, strlen(bearer));
        free(bearer);
    }
    pthread_mutex_lock(&srv->token_lock);
    srv->has_token = has;
    if (has)
        memcpy(srv->token_hash, hash, sizeof(hash));
    pthread_mutex_unlock(&srv->token_lock);
    OPENSSL_cleanse(hash, sizeof(hash));
    return SH_OK;
}

/* ---- suspend / resume ---------------------------------------------------------------------- */

static void do_suspend(void *token)
{
    struct request *rq = token;
    rq->suspended = 1;
    if (!rq->counted) {
        rq->counted = 1;
        atomic_fetch_add(&rq->srv->suspended, 1);
    }
    MHD_suspend_connection(rq->conn);
}

static void do_resume(void *token)
{
    struct request *rq = token;
    MHD_resume_connection(rq->conn);
}

static void request_woken(struct http__wakeable *wk)
{
    do_resume(wk);
}

static const char *query_arg(void *token, const char *key)
{
    struct request *rq = token;
    return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, key);
}

void http_server_set_deadletters(struct http_server *srv, const struct http_deadletter_ops *ops)
{
    atomic_store(&srv->ctx.dead, ops);
}

void http_server_set_cache(struct http_server *srv, struct ca_cache *c)
{
    atomic_store(&srv->ctx.cache, c);
}

/* ---- the access handler -------------------------------------------------------------------- */

static const char *header(struct request *rq, const char *name)
{
    return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

/*
 * Refuse what a web page could make a browser send: a foreign Host (DNS rebinding: 421) or a
 * foreign Origin (403). 1 when *r holds the refusal.
 */
static int foreign_request(struct http_server *srv, struct request *rq)
{
    struct http_reply *r = &rq->reply;
    const char *host = header(rq, MHD_HTTP_HEADER_HOST);
    /* health checks tell nothing worth rebinding for, and probes send the address they dial */
    int health = rq->match.route == HTTP_ROUTE_HEALTHZ || rq->match.route == HTTP_ROUTE_READYZ;
    if (!health && !http_guard_host_ok(&srv->guard, host)) {
        http_reply_error(r, 421, "host_not_allowed",
                         "this API does not answer to the Host \"%.100s\"; add it to "
                         "http.allowed_hosts if it is yours",
                         host ? host : "");
        return 1;
    }
    const char *origin = header(rq, "Origin");
    if (!http_guard_origin_ok(&srv->guard, origin, host)) {
        http_reply_error(r, 403, "origin_not_allowed",
                         "requests from the web page at \"%.100s\" are refused", origin);
        return 1;
    }
    return 0;
}

/*
 * A POST body (or any Content-Type) must be application/json: a form or a no-cors fetch()
 * sends text/plain or a form type without a CORS preflight, JSON only after one (never
 * granted). A POST with no body and no type (a bare reconnect) passes. 1 with *r filled.
 */
static int not_json(struct request *rq)
{
    if (rq->method != HTTP_POST)
        return 0;
    const char *cl = header(rq, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *ct = header(rq, MHD_HTTP_HEADER_CONTENT_TYPE);
    int has_body =
        (cl && strtoull(cl, NULL, 10) > 0) || header(rq, MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
    if ((has_body || ct) && !http_guard_json_type(ct)) {
        http_reply_error(&rq->reply, 415, "unsupported_media_type",
                         "a request body must be sent with \"Content-Type: application/json\"");
        return 1;
    }
    return 0;
}

/* The first call for a request: route, authenticate, check the announced length. */
static int early_answer(struct http_server *srv, struct request *rq, const char *url)
{
    struct http_reply *r = &rq->reply;
    if (foreign_request(srv, rq)) {
        rq->match.route = HTTP_ROUTE_NONE;
        return 1;
    }
    if (rq->method == HTTP_OTHER) {
        /* no row has this method: the match says 404, or 405 with the path's Allow */
        http_route_match(HTTP_OTHER, url, &rq->match);
        if (rq->match.status == 404)
            return http_reply_error(r, 404, "not_found", "no route %.100s", url), 1;
        rq->match.route = HTTP_ROUTE_NONE;
        snprintf(r->allow, sizeof(r->allow), "%s", rq->match.allow);
        http_reply_error(r, 405, "method_not_allowed", "this route answers %s", rq->match.allow);
        return 1;
    }
    if (rq->match.status == 404) {
        http_reply_error(r, 404, "not_found", "no route %.100s", url);
        return 1;
    }
    if (rq->match.status == 405) {
        snprintf(r->allow, sizeof(r->allow), "%s", rq->match.allow);
        http_reply_error(r, 405, "method_not_allowed", "this route answers %s", rq->match.allow);
        return 1;
    }
    if (rq->match.auth && !authorised(srv, rq->conn)) {
        r->www_authenticate = 1;
        http_reply_error(r, 401, "unauthorized",
                         "this route needs the header \"Authorization: Bearer <http.token>\"");
        return 1;
    }
    const char *cl =
        MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > HTTP_MAX_BODY) {
        http_reply_error(r, 413, "body_too_large", "request bodies are capped at %zu bytes",
                         (size_t)HTTP_MAX_BODY);
        return 1;
    }
    return not_json(rq);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct http_server *srv = cls;
    struct request *rq = *con_cls;
    (void)version;
    if (!rq) {
        rq = calloc(1, sizeof(*rq));
        if (!rq)
            return MHD_NO;
        rq->wk.wake = request_woken;
        rq->srv = srv;
        rq->conn = conn;
        rq->started_ms = sh_now_ms();
        rq->method = http_method_parse(method);
        sh_buf_init(&rq->body, HTTP_MAX_BODY);
        http_reply_init(&rq->reply);
        if (strlen(url) >= MAX_PATH)
            rq->match.status = 404;
        else
            http_route_match(rq->method, url, &rq->match);
        *con_cls = rq;
        rq->early = early_answer(srv, rq, url);
        if (rq->early)
            return queue_reply(rq); /* any body is discarded; MHD closes if it must */
        return MHD_YES;
    }
    if (rq->answered || rq->early) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (rq->suspended) {
        /* resumed: the waiter (if any) finished, or suspending turned out unnecessary */
        rq->suspended = 0; /* srv->suspended counts it until its answer is sent */
        if (rq->waiter) {
            http_waiter_reply(rq->waiter, &rq->reply);
            http_waiter_free(rq->waiter);
            rq->waiter = NULL;
        }
        return queue_reply(rq);
    }
    if (*upload_data_size) {
        /*
         * An oversize body whose length was not announced (chunked): drop the rest and answer
         * 413 at its end (MHD can queue an answer only then); a client that keeps sending past
         * MAX_DISCARD is cut off.
         */
        if (!rq->too_big && sh_buf_append(&rq->body, upload_data, *upload_data_size)) {
            rq->too_big = 1;
            sh_buf_free(&rq->body);
        }
        if (rq->too_big) {
            rq->discarded += *upload_data_size;
            if (rq->discarded > MAX_DISCARD)
                return MHD_NO;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (rq->too_big) {
        http_reply_error(&rq->reply, 413, "body_too_large",
                         "request bodies are capped at %zu bytes", (size_t)HTTP_MAX_BODY);
        return queue_reply(rq);
    }
    if (atomic_load(&srv->stopping)) {
        http_reply_error(&rq->reply, 503, "shutting_down", "shardhook is stopping");
        return queue_reply(rq);
    }
    struct http_call call = {
        .token = rq, .suspend = do_suspend, .resume = do_resume, .query = query_arg};
    int suspended = http_handle(&srv->ctx, &call, rq->match.route, rq->match.param,
                                rq->body.data ? rq->body.data : "", rq->body.len, &rq->reply);
    if (suspended) {
        rq->waiter = call.waiter;
        return MHD_YES;
    }
    return queue_reply(rq);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_server *srv = cls;
    (void)conn;
    (void)toe;
    struct request *rq = *con_cls;
    if (!rq)
        return;
    /* the answer of a request that waited is out (or its connection gone): stop may go on */
    if (rq->counted)
        atomic_fetch_sub(&srv->suspended, 1);
    /* a waiter still here was never answered (its wake-up never came): free it with us */
    http_waiter_free(rq->waiter);
    sh_buf_free(&rq->body);
    http_reply_free(&rq->reply);
    free(rq);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    for (char *p = line; *p; p++)
        if (*p == '"')
            *p = '\'';
    /* a flood of clients past a connection limit makes one line per refused connection */
    static struct sh_log_limit lim_limit, lim_other;
    log_warn_limited(strstr(line, "limit") ? &lim_limit : &lim_other,
                     "msg=\"control server\" detail=\"%s\"", line);
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

static int bind_addr(const struct cfg_listen *l, struct sockaddr_storage *ss, unsigned *flags,
                     char *err, size_t errlen)
{
    memset(ss, 0, sizeof(*ss));
    int v6 = l->family == AF_INET6;
    const char *host = l->family == AF_UNSPEC ? "127.0.0.1" : l->host; /* "localhost" */
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)l->port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            goto bad;
        *flags |= MHD_USE_IPv6;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)l->port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            goto bad;
    }
    return 0;
bad:
    snprintf(err, errlen, "http.listen: cannot use address \"%s\"", l->host);
    return SH_ECONFIG;
}

/* The handlers' context: cfg, the gateway ops, the pending table and the reconnect slots. */
static void init_ctx(struct http_server *srv, const struct cfg_config *cfg,
                     const struct http_gateway_ops *ops, void *gw)
{
    srv->ctx.cfg = cfg;
    srv->ctx.ops = ops;
    srv->ctx.gw = gw;
    srv->ctx.pending = srv->pending;
    srv->ctx.request_timeout_ms = cfg->http_request_timeout_ms;
    pthread_mutex_init(&srv->ctx.reconnect_lock, NULL);
    pthread_mutex_init(&srv->ctx.fwd_lock, NULL);
    srv->ctx.reconnect_interval_ms = cfg->http_reconnect_interval_ms;
    int total = ops->total(gw);
    if (total > 0 && total <= 65536) {
        srv->ctx.reconnect_at = calloc((size_t)total, sizeof(*srv->ctx.reconnect_at));
        srv->ctx.reconnect_slots = srv->ctx.reconnect_at ? total : 0;
    }
}

/* Which Host and Origin headers the API answers (http/guard.h). */
static void init_guard(struct http_server *srv, const struct cfg_config *cfg,
                       const struct cfg_listen *l)
{
    srv->guard.loopback = l->loopback;
    snprintf(srv->guard.listen_host, sizeof(srv->guard.listen_host), "%s", l->host);
    srv->guard.allowed = cfg->http_allowed_hosts;
    srv->guard.n_allowed = cfg->n_http_allowed_hosts;
    /* elsewhere http.token guards the API, and the names a proxy forwards are unknown */
    srv->guard.check_host = l->loopback || cfg->n_http_allowed_hosts > 0;
    srv->guard.port = l->port; /* port 0: the one bound, once known */
}

/* A server with its token, pending table (worker started), guard and context; not serving. */
static int server_alloc(const struct cfg_config *cfg, const struct http_gateway_ops *ops, void *gw,
                        const struct cfg_listen *l, struct http_server **out, char *err,
                        size_t errlen)
{
    struct http_server *srv = calloc(1, sizeof(*srv));
    if (!srv) {
        snprintf(err, errlen, "out of memory");
        return SH_ENOMEM;
    }
    atomic_init(&srv->suspended, 0);
    atomic_init(&srv->stopping, 0);
    pthread_mutex_init(&srv->token_lock, NULL);
    if (http_server_set_token(srv, cfg->http_token)) {
        pthread_mutex_destroy(&srv->token_lock);
        free(srv);
        snprintf(err, errlen, "out of memory");
        return SH_ENOMEM;
    }
    struct http_pending_cfg pc = {
        .send = ops->send,
        .withdraw = ops->withdraw,
        .gw = gw,
        .wake = http__wake,
        .member_window_ms = cfg->testing_member_window_ms,
    };
    int rc = http_pending_new(&pc, &srv->pending);
    if (rc) {
        pthread_mutex_destroy(&srv->token_lock);
        free(srv);
        snprintf(err, errlen, "cannot start the control API worker: %s", sh_strerror(rc));
        return rc;
    }
    init_guard(srv, cfg, l);
    init_ctx(srv, cfg, ops, gw);
    *out = srv;
    return 0;
}

/*
 * Start libmicrohttpd on ss. Slow or idle clients: a connection silent for
 * connection_timeout_ms is closed; one client address holds at most max_connections_per_ip
 * (more are closed at once), so one slow client cannot take every one of max_connections and
 * health checks from elsewhere still get in. Suspended requests (waiting for Discord) are not
 * subject to the timeout.
 */
static struct MHD_Daemon *start_daemon(struct http_server *srv, const struct cfg_config *cfg,
                                       const struct sockaddr_storage *ss, unsigned flags)
{
    unsigned max_conn = (unsigned)cfg->http_max_connections;
    unsigned per_ip = (unsigned)cfg->http_max_connections_per_ip;
    int timeout_ms = cfg->http_connection_timeout_ms;
    unsigned timeout_s = (unsigned)((timeout_ms + 999) / 1000);
    if (max_conn < POOL_THREADS)
        max_conn = POOL_THREADS;
    /* the logger goes first, or libmicrohttpd complains through its own logger at start */
    return MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
        MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)ss, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)POOL_THREADS, MHD_OPTION_CONNECTION_LIMIT, max_conn,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip, MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_END); /* no LISTENING_ADDRESS_REUSE: a second daemon on the port must fail */
}

/* Undo server_alloc (nothing is serving). */
static void server_release(struct http_server *srv)
{
    http_pending_free(srv->pending);
    free(srv->ctx.reconnect_at);
    pthread_mutex_destroy(&srv->ctx.reconnect_lock);
    pthread_mutex_destroy(&srv->ctx.fwd_lock);
    pthread_mutex_destroy(&srv->token_lock);
    free(srv);
}

int http_server_new_ops(const struct cfg_config *cfg, const struct http_gateway_ops *ops, void *gw,
                        struct http_server **out, char *err, size_t errlen)
{
    *out = NULL;
    struct cfg_listen l;
    char why[256];
    const char *listen = cfg->http_listen;
    if (cfg_listen_parse(listen, &l, why, sizeof(why))) {
        snprintf(err, errlen, "http.listen: %s", why);
        return SH_ECONFIG;
    }
    struct sockaddr_storage ss;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    struct http_server *srv;
    int rc = bind_addr(&l, &ss, &flags, err, errlen);
    if (!rc)
        rc = server_alloc(cfg, ops, gw, &l, &srv, err, errlen);
    if (rc)
        return rc;
    http_stats_attach(&srv->ctx);
    srv->daemon = start_daemon(srv, cfg, &ss, flags);
    if (!srv->daemon) {
        snprintf(err, errlen, "http.listen: cannot listen on %s (in use, or not allowed)", listen);
        http_stats_detach(&srv->ctx);
        server_release(srv);
        return SH_EIO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : l.port;
    if (!l.port)
        srv->guard.port = srv->port;
    log_info("msg=\"control API listening\" listen=%s%s%s:%d auth=%s",
             l.family == AF_INET6 ? "[" : "", l.family == AF_UNSPEC ? "127.0.0.1" : l.host,
             l.family == AF_INET6 ? "]" : "", srv->port, srv->has_token ? "bearer" : "none");
    *out = srv;
    return 0;
}

int http_server_new(const struct cfg_config *cfg, struct gw_gateway *gw, struct http_server **out,
                    char *err, size_t errlen)
{
    return http_server_new_ops(cfg, &http_gateway_default_ops, gw, out, err, errlen);
}

int http_server_port(const struct http_server *srv)
{
    return srv->port;
}

int http_server_action(struct http_server *srv, const cJSON *action,
                       const struct http_action_to *to, const char **type, char *msg, size_t cap)
{
    return http__action_run(&srv->ctx, action, to, type, msg, cap);
}

int http_server_execute(struct http_server *srv, const char *route, const char *param,
                        const char *body, size_t len, http_answer_fn *done, void *ud)
{
    return http__execute(&srv->ctx, route, param, body, len, done, ud);
}

void http_server_set_webhook_ops(struct http_server *srv, const struct http_webhook_ops *ops)
{
    atomic_store(&srv->ctx.webhooks, ops);
}

void http_server_set_cluster_ops(struct http_server *srv, const struct http_cluster_ops *ops)
{
    atomic_store(&srv->ctx.cluster, ops);
}

struct gw_observer http_server_observer(struct http_server *srv)
{
    struct gw_observer o = {.on_dispatch = http_pending_observe, .ud = srv->pending};
    return o;
}

void http_server_stop(struct http_server *srv)
{
    if (!srv || atomic_exchange(&srv->stopping, 1))
        return;
    /* answer what waits (503) and let MHD's threads send those answers before closing */
    http_pending_shutdown(srv->pending);
    http__forward_stop(&srv->ctx);
    uint64_t until = sh_now_ms() + STOP_DRAIN_MS;
    while (atomic_load(&srv->suspended) > 0 && sh_now_ms() < until) {
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (atomic_load(&srv->suspended) > 0)
        log_warn("msg=\"control API stopped with requests still suspended\" count=%d",
                 atomic_load(&srv->suspended));
    MHD_stop_daemon(srv->daemon);
    srv->daemon = NULL;
    http_stats_detach(&srv->ctx);
    log_info("msg=\"control API stopped\"");
}

void http_server_free(struct http_server *srv)
{
    if (!srv)
        return;
    http_server_stop(srv);
    server_release(srv);
}
