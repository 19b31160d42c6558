/*
 * bridge/main.c: shardhook's entry point. Parses the command line, loads the
 * config, wires the gateway (its own thread) to the delivery thread and fills the
 * gateway's identify interface (local to this process: gw_identify_local_new; with a
 * `cluster` block, Redis through cluster/ and bridge/node.c, which also mirrors
 * checkpoints to Redis and lets the cluster hold and release shards), turns
 * SIGTERM/SIGINT into a graceful stop and SIGHUP into a config reload (what can
 * change live is applied, what needs a restart is named), and picks the exit code:
 *   0 after a stop, 1 when the gateway cannot run (one line says what to fix),
 *   78 for an invalid config (EX_CONFIG), 64 for a bad command line (EX_USAGE);
 *   `--probe URL` (bridge/probe.h) answers 0 or 1 and starts nothing.
 * Signal handlers only set a flag; this thread polls it.
 */
#include <curl/curl.h>
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bridge/cachestore.h"
#include "bridge/ckstore.h"
#include "bridge/deadletter.h"
#include "bridge/deliver.h"
#include "bridge/node.h"
#include "bridge/probe.h"
#include "cache/cache.h"
#include "cluster/cluster.h"
#include "config/config.h"
#include "config/redis_url.h"
#include "gateway/gateway.h"
#include "http/server.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/version.h"

#define EX_USAGE 64
#define EX_CONFIG 78
/* glibc's heap: what is free at the top of an arena goes back past this, and blocks this
   large are mapped on their own (see bound_heap) */
#define HEAP_TRIM_BYTES ((size_t)4 << 20)
#define HEAP_MMAP_BYTES ((size_t)32 << 20)
#define PROBE_TIMEOUT_MS 3000L

#define FD_WANT 65536 /* a socket per shard, a checkpoint journal per shard, webhooks, the API */

static volatile sig_atomic_t got_signal;
static volatile sig_atomic_t got_hup;
static volatile int stop_flag; /* read by discovery retries */

static void on_signal(int sig)
{
    got_signal = sig;
    stop_flag = 1;
}

static void on_hup(int sig)
{
    (void)sig;
    got_hup = 1;
}

struct gw_thread {
    struct gw_gateway *gw;
    int rc;
    atomic_int done;
};

static void *gateway_main(void *arg)
{
    struct gw_thread *t = arg;
    t->rc = gw_gateway_run(t->gw);
    atomic_store(&t->done, 1);
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: shardhook -c FILE        run with the config in FILE\n"
            "       shardhook --check -c FILE   validate FILE and exit (0 valid, 78 invalid)\n"
            "       shardhook --probe URL    GET URL; exit 0 on a 2xx answer, else 1 (health\n"
            "                                checks; $SHARDHOOK_API_TOKEN is sent as Bearer)\n"
            "       shardhook --version | --help\n"
            "\n"
            "Holds a Discord bot's Gateway shards and delivers dispatch events to webhooks.\n"
            "SIGTERM/SIGINT stop gracefully: sockets close with 4000 so sessions stay resumable.\n"
            "SIGHUP reloads FILE: log_level, log_format, http.token and webhook secrets and\n"
            "headers change at once; other changes are named in the log and need a restart.\n");
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR && !got_signal)
        ;
}

static void pause_reading(void *ud, int paused)
{
    gw_gateway_pause_reading(ud, paused);
}

/* ---- the control API's view of webhooks: delivery's status and pause, as http/ wants them */

_Static_assert(sizeof(((struct http_webhook_status *)0)->last_fail_error) ==
                   sizeof(((struct br_webhook_status *)0)->last_fail_error),
               "the failure text crosses whole");

static int webhook_status(void *ud, size_t i, struct http_webhook_status *out)
{
    struct br_webhook_status st;
    int rc = br_delivery_webhook_status(ud, i, &st);
    if (rc)
        return rc;
    static const enum http_webhook_state states[] = {
        [BR_HOOK_OK] = HTTP_WEBHOOK_OK,
        [BR_HOOK_RETRYING] = HTTP_WEBHOOK_RETRYING,
        [BR_HOOK_PAUSED] = HTTP_WEBHOOK_PAUSED,
        [BR_HOOK_SPOOLING] = HTTP_WEBHOOK_SPOOLING,
    };
    *out = (struct http_webhook_status){
        .state = states[st.state],
        .paused_until_wall_ms = st.paused_until_wall_ms,
        .in_flight = st.in_flight,
        .queued_events = st.queued_events,
        .queued_bytes = st.queued_bytes,
        .spool_bytes = st.spool_bytes,
        .has_oldest = st.has_oldest,
        .oldest_unacked_age_ms = st.oldest_unacked_age_ms,
        .delivered_events = st.delivered_events,
        .retries = st.retries,
        .dead_letters = st.dead_letters,
        .last_ok_wall_ms = st.last_ok_wall_ms,
        .last_fail_wall_ms = st.last_fail_wall_ms,
        .last_ok_status = st.last_ok_status,
        .last_fail_status = st.last_fail_status,
    };
    memcpy(out->last_fail_error, st.last_fail_error, sizeof(out->last_fail_error));
    return SH_OK;
}

static int webhook_pause(void *ud, size_t i, int paused)
{
    return br_delivery_webhook_pause(ud, i, paused);
}

/* The shards this process may hold (cluster mode) or runs: *ids (malloc'ed) and *n. */
static int shard_ids(struct gw_gateway *gw, int **ids, int *n)
{
    int total = gw_gateway_total(gw);
    *n = 0;
    *ids = malloc((size_t)total * sizeof(**ids));
    if (!*ids)
        return SH_ENOMEM;
    for (int i = 0; i < total; i++)
        if (gw_gateway_may_hold(gw, i))
            (*ids)[(*n)++] = i;
    return SH_OK;
}

/*
 * Load checkpoints for the shards run here, seed those that can RESUME (from the cache's
 * snapshot when it is older: bridge/cachestore.h), start delivery. In cluster mode delivery
 * knows every shard this node may hold, and the cluster holds them.
 */
static int start_delivery(struct br_delivery *delivery, struct gw_gateway *gw, int clustered,
                          struct ca_cache *cache)
{
    int total = gw_gateway_total(gw), n = 0, *ids;
    int rc = shard_ids(gw, &ids, &n);
    if (rc)
        return rc;
    rc = br_delivery_prepare(delivery, total, ids, n);
    for (int i = 0; !rc && !clustered && i < n; i++) {
        char sid[128], url[512];
        uint64_t seq;
        if (br_delivery_resume_info(delivery, ids[i], sid, sizeof(sid), url, sizeof(url), &seq))
            continue;
        seq = br_cache_warm(cache, ids[i], sid, seq); /* the snapshot's s when lower */
        int src = gw_gateway_seed(gw, ids[i], sid, url, seq);
        if (src && cache)
            ca_cache_forget_shard(cache, ids[i]); /* a new session rebuilds it */
        if (src)
            log_warn("msg=\"checkpoint not usable; the shard identifies\" shard=%d error=\"%s\"",
                     ids[i], sh_strerror(src));
        else
            log_info("msg=\"resuming from checkpoint\" shard=%d seq=%llu", ids[i],
                     (unsigned long long)seq);
    }
    free(ids);
    br_delivery_set_flow(delivery, pause_reading, gw);
    return rc ? rc : br_delivery_start(delivery);
}

static void register_secrets(const struct cfg_config *cfg)
{
    sh_log_add_secret(cfg->token);
    sh_log_add_secret(cfg->http_token);
    for (size_t i = 0; i < cfg->n_webhooks; i++)
        for (size_t j = 0; j < cfg->webhooks[i].n_secrets; j++)
            sh_log_add_secret(cfg->webhooks[i].secrets[j]);
    struct cfg_redis_url redis;
    if (cfg->cluster_redis && !cfg_redis_url_parse(cfg->cluster_redis, &redis, NULL, 0))
        sh_log_add_secret(redis.password); /* the Redis password, and the URL that holds it */
    sh_log_add_secret(cfg->cluster_redis);
}

static void apply_log_settings(const struct cfg_config *cfg)
{
    int lvl = sh_log_level_parse(cfg->log_level);
    int fmt = sh_log_format_parse(cfg->log_format);
    atomic_store(&sh_log_level, lvl < 0 ? SH_LOG_INFO : lvl);
    atomic_store(&sh_log_format, fmt < 0 ? SH_LOG_LOGFMT : fmt);
}

#define SWAP(a, b)                                                                                 \
    do {                                                                                           \
        __typeof__(a) swap_ = (a);                                                                 \
        (a) = (b);                                                                                 \
        (b) = swap_;                                                                               \
    } while (0)

/*
 * SIGHUP: load path again. An invalid file is logged (one line naming the key) and the running
 * config stays. Otherwise the keys that can change live are handed to their owners, and moved
 * into *cfg (nobody else reads those fields after start-up), so that the next reload compares
 * against what runs; every other change is named in one line and waits for a restart.
 */
static void reload(const char *path, struct cfg_config *cfg, struct br_delivery *delivery,
                   struct http_server *api)
{
    struct cfg_config next;
    char err[1024], live[1024], restart[1024];
    if (cfg_load(path, &next, err, sizeof(err))) {
        log_error("msg=\"config reload failed; the running config stays\" error=\"%s\"", err);
        return;
    }
    register_secrets(&next); /* before anything could log them */
    int n_restart = cfg_diff(cfg, &next, live, sizeof(live), restart, sizeof(restart));
    int failed = 0;
    for (size_t i = 0; i < cfg->n_webhooks; i++) {
        if (!cfg_webhook_same_target(cfg, &next, i))
            continue;
        struct cfg_webhook *w = &cfg->webhooks[i], *nw = &next.webhooks[i];
        if (br_delivery_update_auth(delivery, i, nw)) {
            failed = 1;
            continue;
        }
        SWAP(w->secrets, nw->secrets);
        SWAP(w->n_secrets, nw->n_secrets);
        SWAP(w->unsigned_ok, nw->unsigned_ok);
        SWAP(w->headers, nw->headers);
        SWAP(w->n_headers, nw->n_headers);
    }
    if (http_server_set_token(api, next.http_token))
        failed = 1;
    else
        SWAP(cfg->http_token, next.http_token);
    SWAP(cfg->log_level, next.log_level);
    SWAP(cfg->log_format, next.log_format);
    apply_log_settings(cfg);
    if (!failed && cfg_take_live(cfg, &next))
        failed = 1;
    cfg_free(&next);
    if (n_restart)
        log_warn("msg=\"config changes need a restart; the running values stay\" keys=\"%s\"",
                 restart);
    if (failed)
        log_error("msg=\"config reload incomplete\" error=\"%s\"", sh_strerror(SH_ENOMEM));
    log_info("msg=\"config reloaded\" config=\"%s\" applied=\"%s\" restart_needed=%d", path, live,
             n_restart);
}

/* The default soft limit (1,024) is below two descriptors per shard of a big bot: raise it. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= FD_WANT)
        return;
    rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > FD_WANT ? FD_WANT : rl.rlim_max;
    if (want > rl.rlim_cur) {
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl))
            log_warn("msg=\"cannot raise the open file limit\" error=\"%s\"", strerror(errno));
    }
}

/* The command line: *path and *check set, or an exit code (>= 0) when main should end at once. */
static int parse_args(int argc, char **argv, const char **path, int *check)
{
    *path = NULL;
    *check = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
            if (++i == argc) {
                usage(stderr);
                return EX_USAGE;
            }
            *path = argv[i];
        } else if (!strcmp(argv[i], "--check")) {
            *check = 1;
        } else if (!strcmp(argv[i], "--probe")) {
            if (++i == argc) {
                usage(stderr);
                return EX_USAGE;
            }
            return br_probe(argv[i], PROBE_TIMEOUT_MS);
        } else if (!strcmp(argv[i], "--version")) {
            printf("shardhook %s\n", SHARDHOOK_VERSION);
            return 0;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "shardhook: unknown argument \"%s\"\n", argv[i]);
            usage(stderr);
            return EX_USAGE;
        }
    }
    if (!*path) {
        usage(stderr);
        return EX_USAGE;
    }
    return -1;
}

/* Load path into cfg; on failure print one line and return EX_CONFIG. */
static int load_config(const char *path, struct cfg_config *cfg)
{
    char err[1024];
    if (!cfg_load(path, cfg, err, sizeof(err))) {
        register_secrets(cfg);
        return 0;
    }
    /* errors found while reading name the file already; those about a key do not */
    size_t pl = strlen(path);
    if (!strncmp(err, path, pl) && err[pl] == ':')
        fprintf(stderr, "shardhook: %s\n", err);
    else
        fprintf(stderr, "shardhook: %s: %s\n", path, err);
    return EX_CONFIG;
}

/* Signals only set flags; SIGPIPE is ignored (a webhook or API peer may go away). */
static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* ---- the dead-letter routes' ops (http/server.h): the folder and the delivery thread ---- */

_Static_assert(HTTP_DEAD_ID_MAX == BR_DEAD_ID_MAX, "one id size on both sides");

static int dl_parse_id(void *ud, const char *id, size_t *webhook)
{
    (void)ud;
    return br_deadletter_id_parse(id, webhook);
}
static int dl_list(void *ud, size_t webhook, const char *after, size_t limit, cJSON **out)
{
    return br_deadletter_list(br_delivery_dead_letter_dir(ud), webhook, after, limit, out);
}
static int dl_exists(void *ud, const char *id)
{
    struct br_dead_read r;
    int rc = br_deadletter_read(br_delivery_dead_letter_dir(ud), id, &r);
    if (!rc)
        br_deadletter_read_free(&r);
    return rc == SH_ENOTFOUND ? rc : 0; /* an unreadable file is still there (and listed) */
}
static int dl_ids(void *ud, size_t webhook, uint64_t from_ms, uint64_t to_ms,
                  char (**ids)[HTTP_DEAD_ID_MAX], size_t *n)
{
    return br_deadletter_ids(br_delivery_dead_letter_dir(ud), webhook, from_ms, to_ms, ids, n);
}
static int dl_redeliver(void *ud, size_t webhook, const char (*ids)[HTTP_DEAD_ID_MAX], size_t n)
{
    return br_delivery_redeliver(ud, webhook, ids, n);
}
static int dl_discard(void *ud, const char *id)
{
    return br_deadletter_remove(br_delivery_dead_letter_dir(ud), id, NULL);
}

/* What one run holds, freed by stop_all in the reverse order of start_all. */
struct daemon {
    struct http_deadletter_ops dead_ops; /* the API's view of the dead letters */
    const char *path;
    struct cfg_config cfg;
    struct br_delivery *delivery;
    struct gw_identify ident;   /* identify slots and the session budget: local, or the cluster's */
    struct cl_cluster *cluster; /* cluster mode only */
    int cluster_stopped;
    struct br_node node;                 /* what the cluster acts on */
    struct http_cluster_ops cluster_ops; /* the handoff route's way to the cluster */
    struct gw_gateway *gw;
    struct http_server *api;
    struct ca_cache *cache;              /* the entity cache, with a "cache" block only */
    struct br_cachestore *snaps;         /* where its snapshots go; the handoff worker */
    struct http_webhook_ops webhook_ops; /* the API reads and pauses webhooks through these */
    int exit_code;
    char final_line[1024]; /* what to fix, printed last so it is the line users see */
};

/* A members action's answer: a SHARDHOOK_MEMBERS event to the webhook that asked. Any thread. */
static void members_answer(void *ud, size_t webhook, int shard, const char *dj, size_t len)
{
    struct daemon *d = ud;
    int rc = br_delivery_action_event(d->delivery, webhook, shard, "SHARDHOOK_MEMBERS", dj, len);
    if (rc) {
        static struct sh_log_limit lim;
        log_error_limited(&lim,
                          "msg=\"a members action's answer could not be delivered\" webhook=%zu "
                          "shard=%d bytes=%zu error=\"%s\"",
                          webhook, shard, len, sh_strerror(rc));
    }
}

/* A webhook's action runs through the control API's handler for the same request. */
static int run_action(void *ud, const cJSON *action, size_t webhook, const char **type, char *msg,
                      size_t cap)
{
    struct daemon *d = ud;
    struct http_action_to to = {.members = members_answer, .ud = d, .tag = webhook};
    return http_server_action(d->api, action, &to, type, msg, cap);
}

/* Delivery and where it keeps checkpoints: the files, mirrored to Redis in cluster mode. */
static int start_store(struct daemon *d)
{
    struct br_ckstore *files = NULL, *store = NULL;
    int rc = br_delivery_new(&d->cfg, &d->delivery);
    rc = rc ? rc : br_ckstore_files_new(d->cfg.state_dir, &files);
    if (rc)
        return rc;
    d->node.delivery = d->delivery;
    if (d->cfg.cluster) {
        struct br_ckstore_mirror mirror = br_node_mirror(&d->node);
        rc = br_ckstore_mirrored_new(files, &mirror, &store); /* frees files on failure */
        if (rc)
            return rc;
    } else {
        store = files;
    }
    br_delivery_use_ckstore(d->delivery, store); /* delivery owns it from here on */
    return SH_OK;
}

/* A control command another node forwarded: the control API runs it as its own. */
static int node_execute(void *ud, const char *route, const char *param, const char *body,
                        size_t len, cl_answer_fn *done, void *dud)
{
    struct br_node *n = ud;
    return n->api ? http_server_execute(n->api, route, param, body, len, done, dud) : SH_EAGAIN;
}

/* Where shards get permission to IDENTIFY: this process, or the cluster (connects later). */
static int start_identify(struct daemon *d, char *err, size_t errlen)
{
    if (!d->cfg.cluster) {
        int rc = gw_identify_local_new(&d->cfg, &d->ident);
        if (rc)
            snprintf(err, errlen, "%s", sh_strerror(rc));
        return rc;
    }
    struct cl_node_ops ops = br_node_ops(&d->node);
    ops.execute = node_execute;
    int rc = cl_cluster_new(&d->cfg, &ops, &d->cluster, err, errlen);
    if (rc)
        return rc;
    d->node.cluster = d->cluster;
    cl_cluster_identify(d->cluster, &d->ident);
    return SH_OK;
}

/* A command for another node's shard: to its owner through the cluster. */
static int api_forward(void *ud, int shard, const char *route, const char *param, const char *body,
                       size_t len, int timeout_ms, http_answer_fn *done, void *dud)
{
    struct cl_forward f = {shard, route, param, body, len, timeout_ms};
    return cl_cluster_forward(ud, &f, done, dud);
}

static int api_owner(void *ud, int shard, char *name, size_t cap)
{
    return cl_cluster_owner(ud, shard, name, cap);
}

/* POST /v1/shards/{id}/handoff: the cluster picks or checks the target. */
static int api_handoff(void *ud, int shard, const char *target)
{
    return cl_cluster_handoff(ud, shard, target);
}

/* GET /v1/shards, /v1/cluster, /readyz: the cluster as the coordination thread last read it. */
static cJSON *api_view(void *ud)
{
    return cl_cluster_view(ud);
}

/* The cluster's `status` hash: this node's shards as the gateway's snapshot has them. */
static int status_source(void *ud, struct gw_overview *ov, struct gw_shard_info *s, int cap)
{
    return gw_gateway_snapshot(ud, ov, s, cap);
}

/* Cluster mode: join (the meta check), register, and let the coordination thread claim. */
static int start_cluster(struct daemon *d)
{
    char err[1024], fp[32];
    int n, *ids;
    int rc = shard_ids(d->gw, &ids, &n);
    if (rc) {
        fprintf(stderr, "shardhook: cannot join the cluster: %s\n", sh_strerror(rc));
        return d->exit_code = 1;
    }
    br_node_webhooks_fingerprint(&d->cfg, fp, sizeof(fp));
    cl_cluster_set_status_source(d->cluster, status_source, d->gw);
    rc = cl_cluster_start(d->cluster, gw_gateway_total(d->gw), ids, n,
                          gw_gateway_max_concurrency(d->gw), fp, err, sizeof(err));
    free(ids);
    if (rc) {
        log_error("msg=\"cannot join the cluster\" error=\"%s\"", err);
        snprintf(d->final_line, sizeof(d->final_line), "%s", err);
        return d->exit_code = rc == SH_ECONFIG ? EX_CONFIG : 1;
    }
    d->cluster_ops = (struct http_cluster_ops){.handoff = api_handoff,
                                               .view = api_view,
                                               .forward = api_forward,
                                               .owner = api_owner,
                                               .ud = d->cluster};
    http_server_set_cluster_ops(d->api, &d->cluster_ops);
    return 0;
}

/* Cluster mode, once: hand held shards off to the other nodes while every thread still runs. */
static void stop_cluster(struct daemon *d)
{
    if (!d->cluster || d->cluster_stopped)
        return;
    d->cluster_stopped = 1;
    cl_cluster_stop(d->cluster, d->cfg.shutdown_timeout_ms);
}

static void cache_push(void *ud, struct gw_chunk *chunk)
{
    ca_cache_push(ud, chunk);
}

/* With a "cache" block: the entity cache's thread, fed every chunk after routing. */
static int start_cache(struct daemon *d, char *err, size_t errlen)
{
    if (!d->cfg.cache)
        return 0;
    int rc = br_cachestore_new(d->cfg.state_dir, d->cfg.cluster ? &d->cluster : NULL, &d->snaps);
    struct ca_snapshot_io io = rc ? (struct ca_snapshot_io){0} : br_cachestore_io(d->snaps);
    rc = rc ? rc : ca_cache_new(&d->cfg, gw_gateway_total(d->gw), &io, &d->cache, err, errlen);
    if (rc == 0 && (rc = ca_cache_start(d->cache)) < 0)
        snprintf(err, errlen, "cache: cannot start its thread");
    if (rc == 0 && (rc = br_cachestore_start(d->snaps, d->cache)) < 0)
        snprintf(err, errlen, "cache: cannot start its snapshot worker");
    if (rc == 0) {
        br_delivery_set_chunk_consumer(d->delivery, cache_push, d->cache);
        d->node.cache = d->cache; /* cluster mode: holds load, handoffs snapshot */
        d->node.snaps = d->snaps;
    }
    return rc;
}

/* Delivery, the gateway (discovery, checkpoints), the control API. 0, or d->exit_code is set. */
static int start_all(struct daemon *d)
{
    char err[1024];
    int rc = start_store(d);
    if (rc) {
        fprintf(stderr, "shardhook: cannot start delivery: %s\n", sh_strerror(rc));
        return d->exit_code = 1;
    }
    rc = start_identify(d, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "shardhook: cannot start the gateway: %s\n", err);
        return d->exit_code = rc == SH_ECONFIG ? EX_CONFIG : 1;
    }
    struct gw_sink sink = br_delivery_sink(d->delivery);
    rc = gw_gateway_new(&d->cfg, &sink, &d->ident, &stop_flag, &d->gw, err, sizeof(err));
    if (rc == SH_ECLOSED) {
        log_info("msg=\"stopped before the gateway was reached\"");
        return 1;
    }
    if (rc) {
        log_error("msg=\"gateway unavailable\" error=\"%s\"", err);
        snprintf(d->final_line, sizeof(d->final_line), "%s", err);
        return d->exit_code = rc == SH_ECONFIG ? EX_CONFIG : 1;
    }
    d->node.gw = d->gw;
    rc = start_cache(d, err, sizeof(err));
    if (rc) {
        log_error("msg=\"entity cache unavailable\" error=\"%s\"", err);
        return d->exit_code = 1;
    }
    /* checkpoints: shards that have one RESUME; then delivery starts before any event flows */
    rc = start_delivery(d->delivery, d->gw, d->cluster != NULL, d->cache);
    if (rc) {
        fprintf(stderr, "shardhook: cannot start delivery: %s\n", sh_strerror(rc));
        return d->exit_code = 1;
    }
    /* the control API serves as soon as the gateway exists; its observer must be set first */
    rc = http_server_new(&d->cfg, d->gw, &d->api, err, sizeof(err));
    if (rc) {
        log_error("msg=\"control API unavailable\" error=\"%s\"", err);
        snprintf(d->final_line, sizeof(d->final_line), "%s", err);
        return d->exit_code = rc == SH_ECONFIG ? EX_CONFIG : 1;
    }
    d->node.api = d->api; /* forwarded commands run through it from now on */
    d->webhook_ops = (struct http_webhook_ops){webhook_status, webhook_pause, d->delivery};
    http_server_set_webhook_ops(d->api, &d->webhook_ops);
    d->dead_ops = (struct http_deadletter_ops){
        .ud = d->delivery,
        .parse_id = dl_parse_id,
        .list = dl_list,
        .exists = dl_exists,
        .ids = dl_ids,
        .redeliver = dl_redeliver,
        .discard = dl_discard,
    };
    http_server_set_deadletters(d->api, &d->dead_ops);
    http_server_set_cache(d->api, d->cache); /* NULL without a cache block: 404 cache_disabled */
    struct gw_observer obs = http_server_observer(d->api);
    gw_gateway_set_observer(d->gw, &obs);
    struct br_action_ops actions = {.run = run_action, .ud = d};
    br_delivery_set_actions(d->delivery, &actions); /* webhook answers may act from here on */
    return d->cluster ? start_cluster(d) : 0;
}

/* The gateway on its own thread until a signal or its end; SIGHUP reloads meanwhile. */
static void run_gateway(struct daemon *d)
{
    struct gw_thread gt = {.gw = d->gw};
    pthread_t th;
    if (pthread_create(&th, NULL, gateway_main, &gt)) {
        fprintf(stderr, "shardhook: cannot start the gateway thread\n");
        d->exit_code = 1;
        return;
    }
    while (!got_signal && !atomic_load(&gt.done)) {
        if (got_hup) {
            got_hup = 0;
            reload(d->path, &d->cfg, d->delivery, d->api);
        }
        sleep_ms(50);
    }
    if (got_signal) {
        log_info("msg=\"stopping\" signal=%d", (int)got_signal);
        stop_cluster(d); /* handoffs first: they need the gateway and delivery running */
        gw_gateway_stop(d->gw);
    }
    http_server_stop(d->api); /* answers what still waits for Discord, then stops serving */
    pthread_join(th, NULL);
    if (gt.rc) {
        const char *why = gw_gateway_fatal(d->gw);
        log_error("msg=\"no shard can run\" error=\"%s\"", why ? why : sh_strerror(gt.rc));
        snprintf(d->final_line, sizeof(d->final_line), "%s", why ? why : sh_strerror(gt.rc));
        d->exit_code = 1;
    }
}

/*
 * After delivery flushed (every chunk handed over): snapshot every shard's cache (cluster mode:
 * the shards this node kept) for a warm restart, then stop its threads. The cache thread is
 * joined before the cluster is freed (its periodic snapshots write through it); the cache itself
 * is freed after the API (its readers).
 */
static void stop_cache(struct daemon *d)
{
    if (!d->cache)
        return;
    int rc = ca_cache_snapshot(d->cache, -1, d->cfg.shutdown_timeout_ms);
    if (rc)
        log_warn("msg=\"cache snapshot not written at exit; the next start's cache is colder\" "
                 "error=\"%s\"",
                 sh_strerror(rc));
    br_cachestore_free(d->snaps); /* the handoff worker: the cluster's stop is over */
    d->snaps = d->node.snaps = NULL;
    ca_cache_stop(d->cache); /* it applied the last chunks delivery handed it */
}

/*
 * Flush delivery, then free in the order that keeps every thread's data alive until it was
 * joined: the API after the gateway thread (it calls the observer), the identify source after
 * the gateway (gw_gateway_free joins its budget re-read), delivery last.
 */
static void stop_all(struct daemon *d)
{
    stop_cluster(d);
    if (d->delivery) {
        uint64_t left = br_delivery_stop(d->delivery, d->cfg.shutdown_timeout_ms);
        if (left)
            log_error("msg=\"events not delivered at exit\" events=%llu", (unsigned long long)left);
    }
    stop_cache(d);
    http_server_free(d->api);
    ca_cache_free(d->cache);      /* after the API: its readers are gone */
    br_cachestore_free(d->snaps); /* when stop_cache did not run */
    gw_gateway_free(d->gw);
    if (d->cluster) {
        d->node.cluster = NULL;      /* no more checkpoints for it */
        cl_cluster_free(d->cluster); /* after the gateway: its identify ops are the cluster's */
    } else
        gw_identify_local_free(&d->ident);
    br_delivery_free(d->delivery);
}

/*
 * glibc raises its mmap threshold to the size of each large mapped block freed (a big payload's
 * inflate buffer, a batch body), up to 32 MiB, and its trim threshold to twice that. Event chunks
 * are allocated on the gateway thread and freed on the delivery thread; after a burst the free
 * top of the gateway thread's arena stays under that raised trim threshold, so RSS keeps the
 * burst's high-water for good (tens of MiB: most of a busy shard's figure in bench/shards.py).
 * Fixed values turn the raising off: large blocks stay in the heap, as with the raised threshold
 * at its ceiling (a 1 MiB threshold cost about 15 % more CPU per event unpaced), and an arena's
 * free top past 4 MiB goes back to the system.
 */
static void bound_heap(void)
{
#ifdef __GLIBC__
    mallopt(M_TRIM_THRESHOLD, (int)HEAP_TRIM_BYTES);
    mallopt(M_MMAP_THRESHOLD, (int)HEAP_MMAP_BYTES);
#endif
}

int main(int argc, char **argv)
{
    static struct daemon d;
    int check;
    int rc = parse_args(argc, argv, &d.path, &check);
    if (rc >= 0)
        return rc;
    if (load_config(d.path, &d.cfg))
        return EX_CONFIG;
    if (check) {
        printf("shardhook: %s: ok\n", d.path);
        cfg_free(&d.cfg);
        return 0;
    }
    apply_log_settings(&d.cfg);
    for (size_t i = 0; i < d.cfg.n_webhooks; i++)
        if (d.cfg.webhooks[i].unsigned_ok)
            log_warn("msg=\"webhook requests are unsigned (secret: null); receivers cannot "
                     "verify them\" webhook=%zu",
                     i);
    install_signals();
    raise_fd_limit();
    bound_heap();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    log_info("msg=\"starting\" version=%s config=\"%s\" webhooks=%zu", SHARDHOOK_VERSION, d.path,
             d.cfg.n_webhooks);
    if (!start_all(&d))
        run_gateway(&d);
    stop_all(&d);
    log_info("msg=\"stopped\" exit_code=%d", d.exit_code);
    cfg_free(&d.cfg);
    if (d.final_line[0])
        fprintf(stderr, "shardhook: %s\n", d.final_line);
    sh_log_clear_secrets();
    curl_global_cleanup();
    return d.exit_code;
}
