/*
 * bench/inflate_roof.c: the roof -- what decompression alone costs on the replay stream.
 *
 * Reads the messages the fake Discord dumps (--replay-dump DIR: DIR/zlib-stream.bin and
 * DIR/zstd-stream.bin, records of a u32 little-endian length and the bytes of one websocket
 * message, HELLO first) into memory and times, on one thread in CPU time:
 *
 *   inflate only   zlib inflate(Z_SYNC_FLUSH) / ZSTD_decompressStream per message into one
 *                  preallocated buffer: the least any client can spend;
 *   signed roof    inflate only plus SHA-256 over every decompressed byte (one digest over the
 *                  whole stream, OpenSSL EVP): the least a bridge that signs what it delivers
 *                  must spend;
 *   hot path       gw__inflate_feed + gw__envelope_scan (gateway/inflate.c, gateway/envelope.c):
 *                  shardhook's own per-event work before routing, without the network.
 *
 * Each is run --runs times (interleaved, fresh contexts every run) and reported as the median
 * and the best: events/s, decompressed MB/s (10^6 bytes), ns per event, and the hot path as a
 * multiple of inflate only. Owns nothing but its buffers; touches no daemon state.
 *
 *   build/fake-discord --port 0 --zlib-split 1 --replay-events 200000 --replay-dump-only DIR
 *   build/bench/inflate_roof [--runs 7] [--json FILE] DIR
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#include <zstd.h>

#include <openssl/evp.h>

#include "gateway/envelope.h"
#include "gateway/inflate.h"
#include "lib/errors.h"

#define MAX_FILE ((size_t)4 << 30)     /* one dump file */
#define MAX_PAYLOAD ((size_t)64 << 20) /* one decompressed payload, as shardhook's default cap */
#define MAX_RUNS 101

struct msg {
    const unsigned char *p;
    size_t len;
};

struct dump {
    const char *name; /* zlib-stream or zstd-stream */
    enum gw_compress kind;
    unsigned char *data;
    struct msg *msgs;
    size_t n;
    size_t compressed; /* bytes of all messages */
};

/* What one pass found: the same for every run of a path, or the stream is not deterministic. */
struct pass {
    uint64_t events; /* dispatch payloads (op 0): every payload after HELLO */
    uint64_t payloads;
    uint64_t bytes; /* decompressed */
    uint64_t check; /* folds what the scan found (or the digest), so nothing is optimised away */
    double cpu_s;
};

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The signed roof's digest: md NULL for inflate only. */
static int digest_bytes(EVP_MD_CTX *md, const unsigned char *p, size_t n)
{
    return !md || EVP_DigestUpdate(md, p, n) ? SH_OK : SH_ENOMEM;
}

static int digest_end(EVP_MD_CTX *md, struct pass *r)
{
    unsigned char sum[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!md)
        return SH_OK;
    if (!EVP_DigestFinal_ex(md, sum, &len))
        return SH_ENOMEM;
    for (unsigned int i = 0; i < len; i++)
        r->check = r->check * 31 + sum[i];
    return SH_OK;
}

static int load(const char *path, const char *name, enum gw_compress kind, struct dump *d)
{
    memset(d, 0, sizeof(*d));
    d->name = name;
    d->kind = kind;
    FILE *f = fopen(path, "rb");
    if (!f)
        return SH_ENOTFOUND;
    int rc = SH_OK;
    long size = fseek(f, 0, SEEK_END) ? -1 : ftell(f);
    if (size < 0 || (size_t)size > MAX_FILE || fseek(f, 0, SEEK_SET))
        rc = size < 0 ? SH_EIO : SH_ETOOBIG;
    if (!rc && !(d->data = malloc((size_t)size + 1)))
        rc = SH_ENOMEM;
    if (!rc && fread(d->data, 1, (size_t)size, f) != (size_t)size)
        rc = SH_EIO;
    fclose(f);
    /* count, then index the records */
    for (int pass = 0; pass < 2 && !rc; pass++) {
        size_t off = 0, n = 0;
        while (off < (size_t)size) {
            if ((size_t)size - off < 4) {
                rc = SH_EPARSE;
                break;
            }
            const unsigned char *h = d->data + off;
            size_t len = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
            if (len > (size_t)size - off - 4) {
                rc = SH_EPARSE;
                break;
            }
            if (pass == 1) {
                d->msgs[n].p = h + 4;
                d->msgs[n].len = len;
                d->compressed += len;
            }
            n++;
            off += 4 + len;
        }
        if (!rc && pass == 0 && !(d->msgs = malloc((n ? n : 1) * sizeof(*d->msgs))))
            rc = SH_ENOMEM;
        d->n = n;
    }
    return rc;
}

static void dump_free(struct dump *d)
{
    free(d->data);
    free(d->msgs);
}

static int ends_with_flush(const struct msg *m)
{
    static const unsigned char suffix[4] = {0x00, 0x00, 0xff, 0xff};
    return m->len >= 4 && !memcmp(m->p + m->len - 4, suffix, 4);
}

/* zlib: one inflate context, every message straight into the payload's room in out; with md,
 * every payload's bytes also go through the digest. */
static int pass_zlib(const struct dump *d, unsigned char *out, size_t cap, EVP_MD_CTX *md,
                     struct pass *r)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    memset(r, 0, sizeof(*r));
    double t0 = cpu_now();
    if (md && !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
        return SH_ENOMEM;
    if (inflateInit(&zs) != Z_OK)
        return SH_ENOMEM;
    size_t produced = 0;
    for (size_t i = 0; i < d->n; i++) {
        zs.next_in = (Bytef *)(uintptr_t)d->msgs[i].p;
        zs.avail_in = (uInt)d->msgs[i].len;
        while (zs.avail_in > 0) {
            if (produced == cap) {
                inflateEnd(&zs);
                return SH_ETOOBIG;
            }
            zs.next_out = out + produced;
            zs.avail_out = (uInt)(cap - produced);
            int zr = inflate(&zs, Z_SYNC_FLUSH);
            produced = cap - zs.avail_out;
            if (zr != Z_OK && zr != Z_BUF_ERROR) {
                inflateEnd(&zs);
                return SH_ECORRUPT;
            }
        }
        if (ends_with_flush(&d->msgs[i])) {
            if (digest_bytes(md, out, produced)) {
                inflateEnd(&zs);
                return SH_ENOMEM;
            }
            r->payloads++;
            r->bytes += produced;
            r->check += out[produced / 2];
            produced = 0;
        }
    }
    inflateEnd(&zs);
    int rc = digest_end(md, r);
    r->cpu_s = cpu_now() - t0;
    r->events = r->payloads ? r->payloads - 1 : 0;
    return rc;
}

/* zstd: one decompression context, every message one payload; with md, digested as above. */
static int pass_zstd(const struct dump *d, unsigned char *out, size_t cap, EVP_MD_CTX *md,
                     struct pass *r)
{
    memset(r, 0, sizeof(*r));
    double t0 = cpu_now();
    if (md && !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
        return SH_ENOMEM;
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    if (!dc)
        return SH_ENOMEM;
    for (size_t i = 0; i < d->n; i++) {
        ZSTD_inBuffer in = {d->msgs[i].p, d->msgs[i].len, 0};
        ZSTD_outBuffer ob = {out, cap, 0};
        for (;;) {
            size_t zr = ZSTD_decompressStream(dc, &ob, &in);
            if (ZSTD_isError(zr)) {
                ZSTD_freeDCtx(dc);
                return SH_ECORRUPT;
            }
            if (in.pos == in.size && ob.pos < ob.size)
                break;
            if (ob.pos == ob.size) {
                ZSTD_freeDCtx(dc);
                return SH_ETOOBIG;
            }
        }
        if (digest_bytes(md, out, ob.pos)) {
            ZSTD_freeDCtx(dc);
            return SH_ENOMEM;
        }
        r->payloads++;
        r->bytes += ob.pos;
        r->check += ob.pos ? out[ob.pos / 2] : 0;
    }
    ZSTD_freeDCtx(dc);
    int rc = digest_end(md, r);
    r->cpu_s = cpu_now() - t0;
    r->events = r->payloads ? r->payloads - 1 : 0;
    return rc;
}

/* shardhook's hot path: gw__inflate_feed, then gw__envelope_scan on every payload. */
static int pass_hot(const struct dump *d, struct pass *r)
{
    struct gw_inflate *z;
    memset(r, 0, sizeof(*r));
    double t0 = cpu_now();
    int rc = gw__inflate_new(d->kind, MAX_PAYLOAD, MAX_PAYLOAD, &z);
    if (!rc)
        rc = gw__inflate_skip_oversized(z, 4096); /* as a shard runs it */
    if (rc) {
        gw__inflate_free(z);
        return rc;
    }
    for (size_t i = 0; i < d->n && !rc; i++) {
        const char *out;
        size_t n;
        int done;
        rc = gw__inflate_feed(z, d->msgs[i].p, d->msgs[i].len, &out, &n, &done);
        if (rc || !done)
            continue;
        struct gw_envelope env;
        if ((rc = gw__envelope_scan(out, n, &env)))
            break;
        r->payloads++;
        r->bytes += n;
        if (env.op == 0)
            r->events++;
        r->check += env.s + env.d_len + env.t_len;
    }
    gw__inflate_free(z);
    r->cpu_s = cpu_now() - t0;
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct figures {
    double median_s, best_s;
};

static void print_line(const char *what, const struct figures *f, const struct pass *p)
{
    double s = f->median_s;
    printf("  %-30s %10.0f events/s %8.1f MB/s %8.1f ns/event   (best %.0f events/s)\n", what,
           (double)p->events / s, (double)p->bytes / 1e6 / s, s * 1e9 / (double)p->events,
           (double)p->events / f->best_s);
}

static void json_line(FILE *j, const char *key, const struct figures *f, const struct pass *p)
{
    double s = f->median_s;
    fprintf(j,
            "\"%s\":{\"median_cpu_s\":%.6f,\"best_cpu_s\":%.6f,\"events_per_s\":%.0f,"
            "\"mb_per_s\":%.2f,\"ns_per_event\":%.1f}",
            key, s, f->best_s, (double)p->events / s, (double)p->bytes / 1e6 / s,
            s * 1e9 / (double)p->events);
}

/* One run of the three paths, inflate only, signed roof and hot path, into pr, ps, ph. */
static int run_paths(const struct dump *d, unsigned char *out, EVP_MD_CTX *md, struct pass *pr,
                     struct pass *ps, struct pass *ph)
{
    int zlib = d->kind == GW_COMPRESS_ZLIB;
    int rc =
        zlib ? pass_zlib(d, out, MAX_PAYLOAD, NULL, pr) : pass_zstd(d, out, MAX_PAYLOAD, NULL, pr);
    if (!rc)
        rc = zlib ? pass_zlib(d, out, MAX_PAYLOAD, md, ps) : pass_zstd(d, out, MAX_PAYLOAD, md, ps);
    return rc ? rc : pass_hot(d, ph);
}

/* Whether the paths of the first run saw the same payloads, bytes and events. */
static int paths_agree(const struct dump *d, const struct pass *pr, const struct pass *ps,
                       const struct pass *ph)
{
    if (pr->payloads == ph->payloads && pr->bytes == ph->bytes && pr->events == ph->events &&
        ps->payloads == pr->payloads && ps->bytes == pr->bytes)
        return 1;
    fprintf(stderr,
            "inflate_roof: %s: the paths disagree (payloads %llu/%llu, bytes "
            "%llu/%llu, events %llu/%llu)\n",
            d->name, (unsigned long long)pr->payloads, (unsigned long long)ph->payloads,
            (unsigned long long)pr->bytes, (unsigned long long)ph->bytes,
            (unsigned long long)pr->events, (unsigned long long)ph->events);
    return 0;
}

static struct figures figures_of(double *v, int runs)
{
    struct figures f = {0, v[0]};
    for (int i = 1; i < runs; i++)
        f.best_s = v[i] < f.best_s ? v[i] : f.best_s;
    f.median_s = median(v, runs);
    return f;
}

static void report(const struct dump *d, int runs, const struct pass *p, const struct figures *fr,
                   const struct figures *fs, const struct figures *fh, FILE *j, int first)
{
    printf("%s: %zu messages, %llu events, %.1f MB decompressed from %.1f MB (%.2fx), "
           "median of %d runs\n",
           d->name, d->n, (unsigned long long)p->events, (double)p->bytes / 1e6,
           (double)d->compressed / 1e6, (double)p->bytes / (double)d->compressed, runs);
    print_line(d->kind == GW_COMPRESS_ZLIB ? "inflate only (zlib)" : "inflate only (zstd)", fr, p);
    print_line("signed roof (+ SHA-256)", fs, p);
    print_line("gw_inflate + gw__envelope_scan", fh, p);
    printf("  hot path / inflate only: %.2fx, signed roof / inflate only: %.2fx\n",
           fh->median_s / fr->median_s, fs->median_s / fr->median_s);
    if (!j)
        return;
    fprintf(j,
            "%s\"%s\":{\"messages\":%zu,\"events\":%llu,\"raw_bytes\":%llu,"
            "\"compressed_bytes\":%zu,\"runs\":%d,",
            first ? "" : ",", d->name, d->n, (unsigned long long)p->events,
            (unsigned long long)p->bytes, d->compressed, runs);
    json_line(j, "inflate_only", fr, p);
    fputc(',', j);
    json_line(j, "signed_roof", fs, p);
    fputc(',', j);
    json_line(j, "hot_path", fh, p);
    fprintf(j, ",\"hot_over_inflate\":%.3f,\"signed_over_inflate\":%.3f}",
            fh->median_s / fr->median_s, fs->median_s / fr->median_s);
}

/* Runs the three paths on one dump; prints the figures and appends them to j when given. */
static int bench(const struct dump *d, int runs, FILE *j, int first)
{
    unsigned char *out = malloc(MAX_PAYLOAD);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    double roof[MAX_RUNS], sig[MAX_RUNS], hot[MAX_RUNS];
    struct pass pr, ps, ph, ref_r = {0}, ref_s = {0}, ref_h = {0};
    int rc = out && md ? SH_OK : SH_ENOMEM;
    for (int i = 0; i <= runs && !rc; i++) { /* run 0 warms the caches and is not counted */
        if ((rc = run_paths(d, out, md, &pr, &ps, &ph)))
            break;
        if (i == 0) {
            ref_r = pr;
            ref_s = ps;
            ref_h = ph;
            rc = paths_agree(d, &pr, &ps, &ph) ? SH_OK : SH_ECORRUPT;
            continue;
        }
        if (pr.check != ref_r.check || ps.check != ref_s.check || ph.check != ref_h.check) {
            rc = SH_ECORRUPT;
            break;
        }
        roof[i - 1] = pr.cpu_s;
        sig[i - 1] = ps.cpu_s;
        hot[i - 1] = ph.cpu_s;
    }
    free(out);
    EVP_MD_CTX_free(md);
    if (rc) {
        fprintf(stderr, "inflate_roof: %s: %s\n", d->name, sh_strerror(rc));
        return rc;
    }
    struct figures fr = figures_of(roof, runs), fs = figures_of(sig, runs),
                   fh = figures_of(hot, runs);
    report(d, runs, &ref_r, &fr, &fs, &fh, j, first);
    return SH_OK;
}

static void usage(FILE *f)
{
    fputs("usage: inflate_roof [--runs N] [--json FILE] DIR\n"
          "  DIR holds zlib-stream.bin and/or zstd-stream.bin from\n"
          "  fake-discord --replay-dump DIR (or --replay-dump-only DIR)\n",
          f);
}

int main(int argc, char **argv)
{
    int runs = 7;
    const char *dir = NULL, *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
            runs = atoi(argv[++i]);
            if (runs < 1 || runs >= MAX_RUNS) {
                fprintf(stderr, "inflate_roof: --runs: 1 to %d\n", MAX_RUNS - 1);
                return 2;
            }
        } else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
            json = argv[++i];
        } else if (!strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] != '-' && !dir) {
            dir = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!dir) {
        usage(stderr);
        return 2;
    }
    static const struct {
        const char *name;
        enum gw_compress kind;
    } kinds[] = {{"zlib-stream", GW_COMPRESS_ZLIB}, {"zstd-stream", GW_COMPRESS_ZSTD}};
    FILE *j = NULL;
    if (json && !(j = fopen(json, "w"))) {
        fprintf(stderr, "inflate_roof: cannot write %s\n", json);
        return 1;
    }
    if (j)
        fputc('{', j);
    int found = 0, failed = 0;
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        char path[4096];
        struct dump d;
        snprintf(path, sizeof(path), "%s/%s.bin", dir, kinds[k].name);
        int rc = load(path, kinds[k].name, kinds[k].kind, &d);
        if (rc == SH_ENOTFOUND) {
            dump_free(&d);
            continue;
        }
        if (rc) {
            fprintf(stderr, "inflate_roof: %s: %s\n", path, sh_strerror(rc));
            dump_free(&d);
            failed = 1;
            continue;
        }
        if (bench(&d, runs, j, !found))
            failed = 1;
        else
            found++;
        dump_free(&d);
    }
    if (j) {
        fputs("}\n", j);
        if (fclose(j))
            failed = 1;
    }
    if (!found && !failed)
        fprintf(stderr, "inflate_roof: no zlib-stream.bin or zstd-stream.bin in %s\n", dir);
    return failed || !found ? 1 : 0;
}
