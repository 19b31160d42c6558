/* bridge/deadletter.c: the dead-letter files of bridge/deadletter.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bridge/deadletter.h"
#include "lib/buf.h"
#include "lib/errors.h"
#include "lib/fileio.h"
#include "lib/json.h"

int br_deadletter_write(const char *dir, const struct br_dead_letter *dl, char *path,
                        size_t path_cap)
{
    if (mkdir(dir, 0700) && errno != EEXIST)
        return SH_EIO;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[32], iso[32];
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
    strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (snprintf(path, path_cap, "%s/%s.%03ld-w%zu-%s.json", dir, stamp, ts.tv_nsec / 1000000,
                 dl->webhook, dl->msg_id) >= (int)path_cap)
        return SH_ETOOBIG;
    struct sh_buf b;
    sh_buf_init(&b, dl->body_len + 4 * BR_DEAD_RESPONSE_MAX + 4096);
    int rc =
        sh_buf_printf(&b,
                      "{\"webhook\":%zu,\"webhook_key\":\"%s\",\"webhook_id\":\"%s\","
                      "\"reason\":\"%s\",\"status\":%ld,\"attempts\":%u,\"failed_at\":\"%s\","
                      "\"events\":%" PRIu32 ",\"response\":",
                      dl->webhook, dl->webhook_key, dl->msg_id, dl->reason ? dl->reason : "refused",
                      dl->status, dl->attempts, iso, dl->events);
    size_t rl = dl->response_len > BR_DEAD_RESPONSE_MAX ? BR_DEAD_RESPONSE_MAX : dl->response_len;
    /* arbitrary bytes: what is not UTF-8 becomes \u00XX, so the file stays valid JSON */
    rc = rc ? rc : sh_json_quote(&b, dl->response ? dl->response : "", dl->response ? rl : 0, 0);
    rc = rc ? rc
            : sh_buf_printf(&b, ",\"response_truncated\":%s,\"body\":",
                            dl->response_truncated || rl < dl->response_len ? "true" : "false");
    rc = rc ? rc : sh_buf_append(&b, dl->body, dl->body_len);
    rc = rc ? rc : sh_buf_append(&b, "}\n", 2);
    if (!rc)
        rc = sh_write_file_durable(path, b.data, b.len);
    sh_buf_free(&b);
    return rc;
}

struct dl_file {
    char name[256];
    uint64_t bytes;
    struct timespec mtime;
};

/* Oldest first: the time in the name (milliseconds), then the file's own time within one. */
static int by_age(const void *pa, const void *pb)
{
    const struct dl_file *a = pa, *b = pb;
    int c = strncmp(a->name, b->name, 19);
    if (c)
        return c;
    if (a->mtime.tv_sec != b->mtime.tv_sec)
        return a->mtime.tv_sec < b->mtime.tv_sec ? -1 : 1;
    if (a->mtime.tv_nsec != b->mtime.tv_nsec)
        return a->mtime.tv_nsec < b->mtime.tv_nsec ? -1 : 1;
    return strcmp(a->name, b->name);
}

/* "20261123T134500.123-w<webhook>-msg_....json": the time stamp sorts oldest first */
static int is_webhooks(const char *name, size_t webhook)
{
    size_t n = strlen(name);
    if (n < 26 || n >= sizeof(((struct dl_file *)0)->name) || strcmp(name + n - 5, ".json") ||
        name[19] != '-' || name[20] != 'w')
        return 0;
    char *end;
    errno = 0;
    unsigned long long w = strtoull(name + 21, &end, 10);
    return !errno && end != name + 21 && *end == '-' && w == webhook;
}

int br_deadletter_trim(const char *dir, size_t webhook, uint64_t max_bytes, uint64_t *removed,
                       uint64_t *removed_bytes, uint64_t *kept_bytes)
{
    uint64_t gone = 0, gone_bytes = 0, total = 0;
    DIR *dh = opendir(dir);
    if (!dh)
        return errno == ENOENT ? SH_OK : SH_EIO;
    struct dl_file *files = NULL;
    size_t n = 0, cap = 0;
    int rc = SH_OK;
    for (struct dirent *de; (de = readdir(dh));) {
        if (!is_webhooks(de->d_name, webhook))
            continue;
        struct stat st;
        if (fstatat(dirfd(dh), de->d_name, &st, 0) || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            struct dl_file *nf = realloc(files, nc * sizeof(*nf));
            if (!nf) {
                rc = SH_ENOMEM;
                break;
            }
            files = nf;
            cap = nc;
        }
        snprintf(files[n].name, sizeof(files[n].name), "%s", de->d_name);
        files[n].bytes = (uint64_t)st.st_size;
        files[n].mtime = st.st_mtim;
        total += files[n].bytes;
        n++;
    }
    if (!rc && n > 1 && total > max_bytes) {
        qsort(files, n, sizeof(*files), by_age);
        for (size_t i = 0; i + 1 < n && total > max_bytes; i++) {
            if (unlinkat(dirfd(dh), files[i].name, 0) && errno != ENOENT) {
                rc = SH_EIO;
                break;
            }
            total -= files[i].bytes;
            gone++;
            gone_bytes += files[i].bytes;
        }
    }
    closedir(dh);
    free(files);
    if (removed)
        *removed = gone;
    if (removed_bytes)
        *removed_bytes = gone_bytes;
    if (kept_bytes)
        *kept_bytes = total;
    return rc;
}
