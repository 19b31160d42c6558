/*
 * bench/cache_mem.c: what the entity cache holds for a population, measured in the cache's own
 * accounting and in the process's resident memory (bench/cache.py). Benchmark code only: it
 * drives cache/cache.h's public face as the delivery thread does and touches nothing else.
 *
 *   bench/cachegen.py ... | build/bench/cache_mem --config FILE
 *
 * Reads events from stdin, one per line as "<event name>\t<d as JSON>\n" (bench/cache.py writes
 * them), wraps each in the webhook envelope of shard 0 with s counting from 1 (READY's session
 * attached), packs them into chunks of about 1 MiB and pushes each to a ca_cache built from the
 * config, waiting for the cache's queue to empty before the next push so that nothing is
 * dropped. Then it stops the cache thread (which applies what is left), trims the heap, and
 * prints one JSON object: {"events","bytes_in","apply_wall_s","apply_cpu_s" (the cache thread's
 * CPU: the process's less this thread's),"feed_cpu_s" (this thread's: reading, wrapping,
 * polling),"rss_base_kib","rss_kib","hwm_kib","stats":<GET /v1/cache's body>}.
 */
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache.h"
#include "config/config.h"
#include "gateway/sink.h"
#include "lib/buf.h"
#include "lib/errors.h"

#define MAX_CONFIG ((size_t)1 << 20)
#define CHUNK_FLUSH ((size_t)1 << 20) /* push once a chunk holds this much */
#define CHUNK_MAX ((size_t)256 << 20) /* one event's envelope at most */
#define STATS_MAX ((size_t)4 << 20)

static double now_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, field, n) && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

/* A number after "key": in the stats body, -1 when absent. */
static long long stat_num(const struct sh_buf *b, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = b->len ? memmem(b->data, b->len, pat, strlen(pat)) : NULL;
    return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

static int read_stats(struct ca_cache *c, struct sh_buf *out)
{
    struct ca_query q = {.what = CA_STATS};
    sh_buf_reset(out);
    int rc = ca_cache_read(c, &q, out);
    if (rc == 0)
        rc = sh_buf_append(out, "", 1) ? SH_ENOMEM : 0;
    if (rc == 0)
        out->len--;
    return rc;
}

/* Wait until the cache's queue is empty (the chunk pushed last taken up). */
static int drain(struct ca_cache *c, struct sh_buf *st)
{
    for (;;) {
        int rc = read_stats(c, st);
        if (rc)
            return rc;
        long long q = stat_num(st, "queued_events");
        if (q <= 0)
            return 0;
        usleep(1000);
    }
}

static int read_config(const char *path, struct cfg_config *cfg)
{
    char err[512];
    if (cfg_load(path, cfg, err, sizeof(err))) {
        fprintf(stderr, "cache_mem: %s\n", err);
        return -1;
    }
    if (!cfg->cache) {
        fprintf(stderr, "cache_mem: the config has no cache block\n");
        return -1;
    }
    return 0;
}

static int add_event(struct gw_chunk *ch, char *line, size_t n, uint64_t s)
{
    char *tab = memchr(line, '\t', n);
    if (!tab)
        return SH_EPARSE;
    size_t t_len = (size_t)(tab - line);
    const char *d = tab + 1;
    size_t d_len = n - t_len - 1;
    struct gw_key key = {.session_id = "bench0000000000000000000000000000", .last_s = s};
    int rc = gw_chunk_append(ch, 0, 1, line, t_len, s, &key, d, d_len,
                             (uint64_t)(now_s(CLOCK_MONOTONIC) * 1000));
    if (rc == 0 && t_len == 5 && !memcmp(line, "READY", 5)) {
        struct gw_session ses = {0};
        snprintf(ses.session_id, sizeof(ses.session_id), "%s", key.session_id);
        snprintf(ses.resume_url, sizeof(ses.resume_url), "wss://gateway-us-east1-b.discord.gg");
        ses.event = (uint32_t)(ch->n - 1);
        rc = gw_chunk_set_session(ch, &ses);
    }
    return rc;
}

static int feed(struct ca_cache *c, struct sh_buf *st, uint64_t *events, uint64_t *bytes)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    struct gw_chunk *ch = NULL;
    int rc = 0;
    while (rc == 0 && (n = getline(&line, &cap, stdin)) > 0) {
        if (line[n - 1] == '\n')
            n--;
        if (!ch && !(ch = gw_chunk_new(CHUNK_MAX))) {
            rc = SH_ENOMEM;
            break;
        }
        rc = add_event(ch, line, (size_t)n, ++*events);
        *bytes += (uint64_t)n;
        if (rc == 0 && ch->data.len >= CHUNK_FLUSH) {
            ca_cache_push(c, ch);
            ch = NULL;
            rc = drain(c, st);
        }
    }
    if (ch && rc == 0 && ch->n)
        ca_cache_push(c, ch);
    else if (ch)
        gw_chunk_free(ch);
    free(line);
    return rc;
}

int main(int argc, char **argv)
{
    const char *config = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            config = argv[++i];
        else {
            fprintf(stderr, "usage: cache_mem --config FILE < events\n");
            return 2;
        }
    }
    if (!config) {
        fprintf(stderr, "usage: cache_mem --config FILE < events\n");
        return 2;
    }
    struct cfg_config cfg;
    if (read_config(config, &cfg))
        return 1;
    struct ca_cache *c = NULL;
    char err[512];
    if (ca_cache_new(&cfg, 1, NULL, &c, err, sizeof(err)) || ca_cache_start(c)) {
        fprintf(stderr, "cache_mem: %s\n", err);
        return 1;
    }
    struct sh_buf st;
    sh_buf_init(&st, STATS_MAX);
    malloc_trim(0);
    long rss0 = status_kib("VmRSS");
    double w0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    double m0 = now_s(CLOCK_THREAD_CPUTIME_ID);
    uint64_t events = 0, bytes = 0;
    int rc = feed(c, &st, &events, &bytes);
    ca_cache_stop(c); /* applies what is still queued */
    double w1 = now_s(CLOCK_MONOTONIC), c1 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    double m1 = now_s(CLOCK_THREAD_CPUTIME_ID);
    if (rc == 0)
        rc = read_stats(c, &st);
    if (rc) {
        fprintf(stderr, "cache_mem: %s\n", sh_strerror(rc));
        return 1;
    }
    malloc_trim(0);
    printf("{\"events\":%" PRIu64 ",\"bytes_in\":%" PRIu64
           ",\"apply_wall_s\":%.3f,\"apply_cpu_s\":%.3f,\"feed_cpu_s\":%.3f,\"rss_base_kib\":%ld,"
           "\"rss_kib\":%ld,"
           "\"hwm_kib\":%ld,\"stats\":%.*s}\n",
           events, bytes, w1 - w0, (c1 - c0) - (m1 - m0), m1 - m0, rss0, status_kib("VmRSS"),
           status_kib("VmHWM"), (int)st.len, st.data);
    ca_cache_free(c);
    cfg_free(&cfg);
    sh_buf_free(&st);
    return 0;
}
