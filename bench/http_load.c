/*
 * bench/http_load.c: a closed-loop HTTP/1.1 load client for the control API's read routes
 * (bench/cache.py). Each of --conns threads keeps one keep-alive connection to 127.0.0.1:--port
 * and sends GETs back to back for --seconds, walking the paths of --paths (one per line) from
 * its own offset, and times each request from the first byte written to the last body byte
 * read. Benchmark code only: it uses nothing of the daemon.
 *
 *   build/bench/http_load --port N --paths FILE [--conns 4] [--seconds 5] [--token T]
 *
 * Prints one JSON object: {"requests","seconds","per_s","p50_us","p90_us","p99_us","max_us",
 * "non_200","errors","body_bytes"}; a request answered with any status other than 200 is
 * counted in non_200 (and timed); a broken connection in errors (and reopened).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PATHS 1000000
#define MAX_SAMPLES ((size_t)20000000)
#define RESP_MAX ((size_t)16 << 20)

static int port, conns = 4;
static double seconds = 5;
static const char *token;
static char **paths;
static size_t n_paths;

struct worker {
    pthread_t th;
    size_t first;
    uint64_t *lat; /* ns */
    size_t n, cap;
    uint64_t non_200, errors, body_bytes;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One request on fd; 0 with *status (1: the server closes the connection after it), or -1
   when the connection broke. */
static int one_request(int fd, const char *path, char *buf, int *status, uint64_t *body)
{
    char req[2048];
    int n = snprintf(
        req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s%s%sAccept: */*\r\n\r\n",
        path, port, token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
    if (n <= 0 || (size_t)n >= sizeof(req) || write(fd, req, (size_t)n) != n)
        return -1;
    size_t len = 0;
    char *end = NULL;
    while (!end) {
        ssize_t r = read(fd, buf + len, RESP_MAX - 1 - len);
        if (r <= 0)
            return -1;
        len += (size_t)r;
        buf[len] = 0;
        end = strstr(buf, "\r\n\r\n");
        if (!end && len >= RESP_MAX - 1)
            return -1;
    }
    *status = atoi(buf + 9);
    long clen = 0;
    int closing = 0;
    for (char *p = buf; p < end; p++) {
        if (*p != '\n')
            continue;
        if (!strncasecmp(p + 1, "content-length:", 15))
            clen = strtol(p + 16, NULL, 10);
        else if (!strncasecmp(p + 1, "connection: close", 17))
            closing = 1;
    }
    size_t have = len - (size_t)(end + 4 - buf), want = (size_t)clen;
    while (have < want) {
        ssize_t r = read(fd, buf, RESP_MAX - 1);
        if (r <= 0)
            return -1;
        have += (size_t)r;
    }
    *body += want;
    return closing;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    char *buf = malloc(RESP_MAX);
    int fd = -1;
    uint64_t stop = now_ns() + (uint64_t)(seconds * 1e9);
    size_t i = w->first;
    while (buf && now_ns() < stop) {
        if (fd < 0 && (fd = dial()) < 0) {
            w->errors++;
            usleep(1000);
            continue;
        }
        int status = 0;
        uint64_t t0 = now_ns();
        int rc = one_request(fd, paths[i % n_paths], buf, &status, &w->body_bytes);
        uint64_t dt = now_ns() - t0;
        if (rc) {
            close(fd);
            fd = -1;
        }
        if (rc < 0) {
            w->errors++;
            continue;
        }
        if (status != 200)
            w->non_200++;
        if (w->n == w->cap) {
            size_t cap = w->cap ? w->cap * 2 : 65536;
            uint64_t *p = cap <= MAX_SAMPLES ? realloc(w->lat, cap * sizeof(*p)) : NULL;
            if (!p)
                break;
            w->lat = p;
            w->cap = cap;
        }
        w->lat[w->n++] = dt;
        i++;
    }
    if (fd >= 0)
        close(fd);
    free(buf);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int load_paths(const char *file)
{
    FILE *f = fopen(file, "r");
    char line[2048];
    if (!f)
        return -1;
    paths = calloc(MAX_PATHS, sizeof(*paths));
    while (paths && n_paths < MAX_PATHS && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (*line)
            paths[n_paths++] = strdup(line);
    }
    fclose(f);
    return n_paths ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--paths"))
            file = argv[i + 1];
        else if (!strcmp(argv[i], "--conns"))
            conns = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--token"))
            token = argv[i + 1];
    }
    if (!port || !file || conns < 1 || conns > 1024 || seconds <= 0 || load_paths(file)) {
        fprintf(stderr, "usage: http_load --port N --paths FILE [--conns 4] [--seconds 5] "
                        "[--token T]\n");
        return 2;
    }
    struct worker *w = calloc((size_t)conns, sizeof(*w));
    uint64_t t0 = now_ns();
    for (int k = 0; k < conns; k++) {
        w[k].first = n_paths * (size_t)k / (size_t)conns;
        pthread_create(&w[k].th, NULL, run, &w[k]);
    }
    size_t total = 0;
    uint64_t non_200 = 0, errors = 0, body = 0;
    for (int k = 0; k < conns; k++) {
        pthread_join(w[k].th, NULL);
        total += w[k].n;
        non_200 += w[k].non_200;
        errors += w[k].errors;
        body += w[k].body_bytes;
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    uint64_t *all = malloc((total ? total : 1) * sizeof(*all));
    size_t at = 0;
    for (int k = 0; k < conns; k++) {
        memcpy(all + at, w[k].lat, w[k].n * sizeof(*all));
        at += w[k].n;
        free(w[k].lat);
    }
    qsort(all, total, sizeof(*all), cmp_u64);
#define PCT(q) (total ? (double)all[(size_t)((double)(total - 1) * (q) + 0.5)] / 1e3 : 0.0)
    printf("{\"requests\":%zu,\"seconds\":%.3f,\"per_s\":%.1f,\"p50_us\":%.1f,\"p90_us\":%.1f,"
           "\"p99_us\":%.1f,\"max_us\":%.1f,\"non_200\":%llu,\"errors\":%llu,"
           "\"body_bytes\":%llu}\n",
           total, secs, (double)total / secs, PCT(0.5), PCT(0.9), PCT(0.99), PCT(1.0),
           (unsigned long long)non_200, (unsigned long long)errors, (unsigned long long)body);
    free(all);
    free(w);
    for (size_t i = 0; i < n_paths; i++)
        free(paths[i]);
    free(paths);
    return 0;
}
