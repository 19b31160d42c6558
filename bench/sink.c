/*
 * bench/sink.c: the webhook receiver of the benchmarks (bench/run.py, bench/delivery.py). It
 * accepts shardhook's batches on 127.0.0.1, checks every Standard Webhooks signature, counts
 * events and bytes, checks per-shard `s` order, records the receipt time (CLOCK_REALTIME ns, once
 * the whole body is in) of every event by (shard, s) for a join with the fake Discord's
 * --replay-times, and measures latency on probe events (a `d` holding "bench_t_us": the
 * wall-clock microseconds the benchmark sent it at). Benchmark code only: it uses bridge/sign.h
 * to recompute signatures and touches nothing else of the daemon.
 *
 *   build/bench/sink --secret whsec_... [--port N]     prints "sink listening port=N"
 *   GET /stats    {"events":...,"batches":...,"bad_signatures":...,"p50_ms":...,...}
 *   GET /receipts one line "shard s recv_ns" per event received since the last reset
 *   POST /reset   zero every counter and forget the receipts
 *   POST (any other path)   a batch: 200 when the signature holds, 401 otherwise
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bridge/sign.h"
#include "lib/buf.h"

#define MAX_BODY ((size_t)64 << 20)
#define MAX_PROBES 200000
#define MAX_SHARDS 65536
#define MAX_RECEIPTS ((size_t)32 << 20) /* (shard, s) receipt times kept; past it, counted only */

struct receipt {
    uint32_t shard;
    uint64_t s;
    uint64_t ns;
};

static char *secrets[1];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    uint64_t events, batches, bytes, event_bytes, bad_sig, order_errors;
    uint64_t first_ms, last_ms, first_ns, last_ns;
    size_t n_probes;
    struct receipt *receipts; /* grows by doubling up to MAX_RECEIPTS */
    size_t n_receipts, cap_receipts;
    uint64_t receipts_lost;
    double probes[MAX_PROBES];
    uint64_t last_s[MAX_SHARDS];
} st;
static volatile sig_atomic_t stop;

static uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Keep one receipt (lock held); past the cap or without memory it is only counted. */
static void keep_receipt(unsigned long shard, uint64_t s, uint64_t now_ns)
{
    if (st.n_receipts == st.cap_receipts) {
        size_t cap = st.cap_receipts ? st.cap_receipts * 2 : 65536;
        cap = cap > MAX_RECEIPTS ? MAX_RECEIPTS : cap;
        struct receipt *r = cap > st.cap_receipts ? realloc(st.receipts, cap * sizeof(*r)) : NULL;
        if (!r) {
            st.receipts_lost++;
            return;
        }
        st.receipts = r;
        st.cap_receipts = cap;
    }
    st.receipts[st.n_receipts++] = (struct receipt){(uint32_t)shard, s, now_ns};
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Count the events of one body, check order, keep receipt times, collect probe latencies (lock
 * held). */
static void scan(const char *body, size_t len, uint64_t now_ns)
{
    uint64_t now_us = now_ns / 1000u;
    static const char head[] = "{\"shard\":[";
    const char *end = body + len;
    const char *p = memmem(body, len, head, sizeof(head) - 1);
    while (p) {
        const char *next = memmem(p + 1, (size_t)(end - p - 1), head, sizeof(head) - 1);
        const char *stop_at = next ? next : end;
        unsigned long shard = strtoul(p + sizeof(head) - 1, NULL, 10);
        const char *sp = memmem(p, (size_t)(stop_at - p), "\",\"s\":", 6);
        uint64_t s = sp ? strtoull(sp + 6, NULL, 10) : 0;
        if (shard < MAX_SHARDS) {
            if (s <= st.last_s[shard])
                st.order_errors++;
            st.last_s[shard] = s;
        }
        keep_receipt(shard, s, now_ns);
        const char *pr = memmem(p, (size_t)(stop_at - p), "\"bench_t_us\":", 13);
        if (pr && st.n_probes < MAX_PROBES) {
            const char *v = pr + 13;
            while (v < stop_at && (*v == ' ' || *v == '"'))
                v++;
            uint64_t t = strtoull(v, NULL, 10);
            if (t && t <= now_us)
                st.probes[st.n_probes++] = (double)(now_us - t) / 1000.0;
        }
        st.events++;
        st.event_bytes += (uint64_t)(stop_at - p) - (next ? 1 : 2); /* minus "," or "]}" */
        p = next;
    }
}

struct req {
    struct sh_buf body;
    int too_big;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Every receipt as text, "shard s recv_ns" per line. */
static enum MHD_Result receipts(struct MHD_Connection *c)
{
    struct sh_buf out;
    sh_buf_init(&out, MAX_RECEIPTS * 48);
    int rc = 0;
    pthread_mutex_lock(&lock);
    rc = sh_buf_reserve(&out, st.n_receipts * 32 + 1);
    for (size_t i = 0; i < st.n_receipts && !rc; i++)
        rc = sh_buf_printf(&out, "%" PRIu32 " %" PRIu64 " %" PRIu64 "\n", st.receipts[i].shard,
                           st.receipts[i].s, st.receipts[i].ns);
    pthread_mutex_unlock(&lock);
    if (rc) {
        sh_buf_free(&out);
        return reply(c, 500, "{\"error\":\"out of memory\"}");
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(out.len, out.data, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        sh_buf_free(&out);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/plain");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result stats(struct MHD_Connection *c)
{
    char out[1024];
    pthread_mutex_lock(&lock);
    qsort(st.probes, st.n_probes, sizeof(double), cmp_double);
    double p50 = st.n_probes ? st.probes[st.n_probes / 2] : -1;
    double p99 = st.n_probes ? st.probes[(size_t)((double)(st.n_probes - 1) * 0.99)] : -1;
    snprintf(out, sizeof(out),
             "{\"events\":%" PRIu64 ",\"batches\":%" PRIu64 ",\"bytes\":%" PRIu64
             ",\"event_bytes\":%" PRIu64 ",\"bad_signatures\":%" PRIu64 ",\"order_errors\":%" PRIu64
             ",\"first_ms\":%" PRIu64 ",\"last_ms\":%" PRIu64 ",\"first_ns\":%" PRIu64
             ",\"last_ns\":%" PRIu64 ",\"receipts\":%zu,\"receipts_lost\":%" PRIu64
             ",\"probes\":%zu,\"p50_ms\":%.3f,\"p99_ms\":%.3f}",
             st.events, st.batches, st.bytes, st.event_bytes, st.bad_sig, st.order_errors,
             st.first_ms, st.last_ms, st.first_ns, st.last_ns, st.n_receipts, st.receipts_lost,
             st.n_probes, p50, p99);
    pthread_mutex_unlock(&lock);
    return reply(c, 200, out);
}

static int signature_ok(struct MHD_Connection *c, const struct sh_buf *b)
{
    const char *id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-id");
    const char *ts = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-timestamp");
    const char *sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-signature");
    if (!id || !ts || !sig)
        return 0;
    char want[256];
    if (br_sign(secrets, 1, id, strtoll(ts, NULL, 10), b->data ? b->data : "", b->len, want,
                sizeof(want)))
        return 0;
    size_t wl = strlen(want);
    for (const char *p = sig; (p = strstr(p, want)); p += wl)
        if ((p == sig || p[-1] == ' ') && (p[wl] == '\0' || p[wl] == ' '))
            return 1;
    return 0;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *size, void **ctx)
{
    (void)cls;
    (void)version;
    if (!strcmp(method, "GET"))
        return !strcmp(url, "/stats")      ? stats(c)
               : !strcmp(url, "/receipts") ? receipts(c)
                                           : reply(c, 404, "{}");
    struct req *r = *ctx;
    if (!r) {
        r = calloc(1, sizeof(*r));
        if (!r)
            return MHD_NO;
        sh_buf_init(&r->body, MAX_BODY);
        *ctx = r;
        return MHD_YES;
    }
    if (*size) {
        if (sh_buf_append(&r->body, data, *size))
            r->too_big = 1;
        *size = 0;
        return MHD_YES;
    }
    if (!strcmp(url, "/reset")) {
        pthread_mutex_lock(&lock);
        struct receipt *keep = st.receipts;
        size_t cap = st.cap_receipts;
        memset(&st, 0, sizeof(st));
        st.receipts = keep; /* the allocation stays for the next run */
        st.cap_receipts = cap;
        pthread_mutex_unlock(&lock);
        return reply(c, 200, "{}");
    }
    if (r->too_big)
        return reply(c, 413, "{}");
    int ok = signature_ok(c, &r->body);
    uint64_t now = wall_ns();
    pthread_mutex_lock(&lock);
    if (ok) {
        st.batches++;
        st.bytes += r->body.len;
        if (!st.first_ns)
            st.first_ns = now;
        st.last_ns = now;
        st.first_ms = st.first_ns / 1000000u;
        st.last_ms = now / 1000000u;
        scan(r->body.data ? r->body.data : "", r->body.len, now);
    } else {
        st.bad_sig++;
    }
    pthread_mutex_unlock(&lock);
    return reply(c, ok ? 200 : 401, ok ? "{\"ok\":true}" : "{\"error\":\"bad signature\"}");
}

static void done(void *cls, struct MHD_Connection *c, void **ctx, enum MHD_RequestTerminationCode t)
{
    (void)cls;
    (void)c;
    (void)t;
    struct req *r = *ctx;
    if (r) {
        sh_buf_free(&r->body);
        free(r);
        *ctx = NULL;
    }
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    int port = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--secret"))
            secrets[0] = argv[i + 1];
    }
    if (!secrets[0]) {
        fprintf(stderr, "usage: sink --secret whsec_... [--port N]\n");
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* loopback only */
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, (uint16_t)port, NULL, NULL,
        handle, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED,
        done, NULL, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "sink: cannot listen on port %d\n", port);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("sink listening port=%u\n", info ? info->port : (unsigned)port);
    fflush(stdout);
    while (!stop)
        usleep(100000);
    MHD_stop_daemon(d);
    free(st.receipts);
    return 0;
}
