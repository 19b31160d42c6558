/*
 * bridge/main.c: shardhook's entry point. Parses the command line, loads the
 * config, wires the gateway (its own thread) to the delivery thread, turns
 * SIGTERM/SIGINT into a graceful stop and SIGHUP into a config reload (what can
 * change live is applied, what needs a restart is named), and picks the exit code:
 *   0 after a stop, 1 when the gateway cannot run (one line says what to fix),
 *   78 for an invalid config (EX_CONFIG), 64 for a bad command line (EX_USAGE).
 * Signal handlers only set a flag; this thread polls it.
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bridge/ckstore.h"
#include "bridge/deliver.h"
#include "config/config.h"
#include "gateway/gateway.h"
#include "http/server.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/version.h"

#define EX_USAGE 64
#define EX_CONFIG 78

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

/* Load checkpoints for the shards run here, seed those that can RESUME, start delivery. */
static int start_delivery(struct br_delivery *delivery, struct gw_gateway *gw)
{
    int total = gw_gateway_total(gw), n = 0;
    int *ids = malloc((size_t)total * sizeof(*ids));
    if (!ids)
        return SH_ENOMEM;
    for (int i = 0; i < total; i++)
        if (gw_gateway_runs(gw, i))
            ids[n++] = i;
    int rc = br_delivery_prepare(delivery, total, ids, n);
    for (int i = 0; !rc && i < n; i++) {
        char sid[128], url[512];
        uint64_t seq;
        if (br_delivery_resume_info(delivery, ids[i], sid, sizeof(sid), url, sizeof(url), &seq))
            continue;
        int src = gw_gateway_seed(gw, ids[i], sid, url, seq);
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
}

static void apply_log_settings(const struct cfg_config *cfg)
{
    int lvl = sh_log_level_parse(cfg->log_level ? cfg->log_level : "info");
    int fmt = sh_log_format_parse(cfg->log_format ? cfg->log_format : "logfmt");
    atomic_store(&sh_log_level, lvl < 0 ? SH_LOG_INFO : lvl);
    atomic_store(&sh_log_format, fmt < 0 ? SH_LOG_LOGFMT : fmt);
}

#define SWAP(a, b)                  \
    do {                            \
        __typeof__(a) swap_ = (a);  \
        (a) = (b);                  \
        (b) = swap_;                \
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
    log_info("msg=\"config reloaded\" config=\"%s\" applied=\"%s\" restart_needed=%d", path,
             live, n_restart);
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

int main(int argc, char **argv)
{
    const char *path = NULL;
    int check = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
            if (++i == argc) {
                usage(stderr);
                return EX_USAGE;
            }
            path = argv[i];
        } else if (!strcmp(argv[i], "--check")) {
            check = 1;
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
    if (!path) {
        usage(stderr);
        return EX_USAGE;
    }

    struct cfg_config cfg;
    char err[1024];
    if (cfg_load(path, &cfg, err, sizeof(err))) {
        /* errors found while reading name the file already; those about a key do not */
        size_t pl = strlen(path);
        if (!strncmp(err, path, pl) && err[pl] == ':')
            fprintf(stderr, "shardhook: %s\n", err);
        else
            fprintf(stderr, "shardhook: %s: %s\n", path, err);
        return EX_CONFIG;
    }
    register_secrets(&cfg);
    if (check) {
        printf("shardhook: %s: ok\n", path);
        cfg_free(&cfg);
        return 0;
    }
    apply_log_settings(&cfg);
    for (size_t i = 0; i < cfg.n_webhooks; i++)
        if (cfg.webhooks[i].unsigned_ok)
            log_warn("msg=\"webhook requests are unsigned (secret: null); receivers cannot "
                     "verify them\" webhook=%zu",
                     i);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    log_info("msg=\"starting\" version=%s config=\"%s\" webhooks=%zu", SHARDHOOK_VERSION, path,
             cfg.n_webhooks);

    int exit_code = 0;
    char final_line[1024] = ""; /* what to fix, printed last so it is the line users see */
    struct br_delivery *delivery = NULL;
    struct gw_gateway *gw = NULL;
    struct http_server *api = NULL;
    struct br_ckstore *ckstore = NULL; /* where checkpoints are kept: today the files */
    int rc = br_delivery_new(&cfg, &delivery);
    rc = rc ? rc : br_ckstore_files_new(cfg.state_dir, &ckstore);
    if (!rc)
        br_delivery_use_ckstore(delivery, ckstore);
    if (rc) {
        fprintf(stderr, "shardhook: cannot start delivery: %s\n", sh_strerror(rc));
        exit_code = 1;
        goto out;
    }
    struct gw_sink sink = br_delivery_sink(delivery);
    rc = gw_gateway_new(&cfg, &sink, &stop_flag, &gw, err, sizeof(err));
    if (rc) {
        if (rc == SH_ECLOSED) {
            log_info("msg=\"stopped before the gateway was reached\"");
        } else {
            log_error("msg=\"gateway unavailable\" error=\"%s\"", err);
            snprintf(final_line, sizeof(final_line), "%s", err);
            exit_code = rc == SH_ECONFIG ? EX_CONFIG : 1;
        }
        goto out;
    }
    /* checkpoints: shards that have one RESUME; then delivery starts before any event flows */
    rc = start_delivery(delivery, gw);
    if (rc) {
        fprintf(stderr, "shardhook: cannot start delivery: %s\n", sh_strerror(rc));
        exit_code = 1;
        goto out;
    }

    /* the control API serves as soon as the gateway exists; its observer must be set first */
    rc = http_server_new(&cfg, gw, &api, err, sizeof(err));
    if (rc) {
        log_error("msg=\"control API unavailable\" error=\"%s\"", err);
        snprintf(final_line, sizeof(final_line), "%s", err);
        exit_code = rc == SH_ECONFIG ? EX_CONFIG : 1;
        goto out;
    }
    struct gw_observer obs = http_server_observer(api);
    gw_gateway_set_observer(gw, &obs);

    struct gw_thread gt = {.gw = gw};
    pthread_t th;
    if (pthread_create(&th, NULL, gateway_main, &gt)) {
        fprintf(stderr, "shardhook: cannot start the gateway thread\n");
        exit_code = 1;
        goto out;
    }
    while (!got_signal && !atomic_load(&gt.done)) {
        if (got_hup) {
            got_hup = 0;
            reload(path, &cfg, delivery, api);
        }
        sleep_ms(50);
    }
    if (got_signal) {
        log_info("msg=\"stopping\" signal=%d", (int)got_signal);
        gw_gateway_stop(gw);
    }
    http_server_stop(api); /* answers what still waits for Discord, then stops serving */
    pthread_join(th, NULL);
    if (gt.rc) {
        const char *why = gw_gateway_fatal(gw);
        log_error("msg=\"no shard can run\" error=\"%s\"", why ? why : sh_strerror(gt.rc));
        snprintf(final_line, sizeof(final_line), "%s", why ? why : sh_strerror(gt.rc));
        exit_code = 1;
    }

out:
    if (delivery) {
        uint64_t left = br_delivery_stop(delivery, cfg.shutdown_timeout_ms);
        if (left)
            log_error("msg=\"events not delivered at exit\" events=%llu",
                      (unsigned long long)left);
    }
    http_server_free(api); /* after the gateway thread: it calls the observer until it ends */
    gw_gateway_free(gw);
    br_delivery_free(delivery);
    log_info("msg=\"stopped\" exit_code=%d", exit_code);
    cfg_free(&cfg);
    if (final_line[0])
        fprintf(stderr, "shardhook: %s\n", final_line);
    sh_log_clear_secrets();
    curl_global_cleanup();
    return exit_code;
}
