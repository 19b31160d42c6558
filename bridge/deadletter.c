/* bridge/deadletter.c: the dead-letter files of bridge/deadletter.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
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

/* The wall-clock ms of the last name handed out: names of one process strictly increase. */
static _Atomic uint64_t last_name_ms;

static uint64_t next_name_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    uint64_t last = atomic_load(&last_name_ms), want;
    do
        want = now > last ? now : last + 1;
    while (!atomic_compare_exchange_weak(&last_name_ms, &last, want));
    return want;
}

static void iso_now(char *iso, size_t cap)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(iso, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Format dl (failed at iso) and write it as path, durably. */
static int write_at(const char *path, const struct br_dead_letter *dl, const char *iso)
{
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

int br_deadletter_write(const char *dir, const struct br_dead_letter *dl, char *path,
                        size_t path_cap)
{
    if (mkdir(dir, 0700) && errno != EEXIST)
        return SH_EIO;
    uint64_t ms = next_name_ms();
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char stamp[32], iso[32];
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
    strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (snprintf(path, path_cap, "%s/%s.%03u-w%zu-%s.json", dir, stamp, (unsigned)(ms % 1000),
                 dl->webhook, dl->msg_id) >= (int)path_cap)
        return SH_ETOOBIG;
    return write_at(path, dl, iso);
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

/* ---- reading back: ids, single files, lists ------------------------------------------------ */

#define READ_MAX ((size_t)512 << 20) /* a dead letter larger than this is not read back */

static int digits(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return 0;
    return 1;
}

int br_deadletter_id_parse(const char *id, size_t *webhook)
{
    size_t n = strlen(id);
    if (n < 24 || n >= BR_DEAD_ID_MAX || !digits(id, 8) || id[8] != 'T' || !digits(id + 9, 6) ||
        id[15] != '.' || !digits(id + 16, 3) || id[19] != '-' || id[20] != 'w')
        return SH_EINVAL;
    const char *p = id + 21, *w = p;
    while (*p >= '0' && *p <= '9')
        p++;
    if (p == w || p - w > 19 || *p != '-' || !p[1])
        return SH_EINVAL;
    for (const char *q = p + 1; *q; q++)
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
              *q == '_' || *q == '-'))
            return SH_EINVAL;
    if (webhook)
        *webhook = (size_t)strtoull(w, NULL, 10);
    return SH_OK;
}

uint64_t br_deadletter_id_ms(const char *id)
{
    if (br_deadletter_id_parse(id, NULL))
        return 0;
    struct tm tm = {0};
    int f[7];
    static const int at[7] = {0, 4, 6, 9, 11, 13, 16}, len[7] = {4, 2, 2, 2, 2, 2, 3};
    for (int i = 0; i < 7; i++) {
        f[i] = 0;
        for (int k = 0; k < len[i]; k++)
            f[i] = f[i] * 10 + (id[at[i] + k] - '0');
    }
    tm.tm_year = f[0] - 1900;
    tm.tm_mon = f[1] - 1;
    tm.tm_mday = f[2];
    tm.tm_hour = f[3];
    tm.tm_min = f[4];
    tm.tm_sec = f[5];
    time_t t = timegm(&tm);
    return t < 0 ? 0 : (uint64_t)t * 1000 + (uint64_t)f[6];
}

static int id_path(const char *dir, const char *id, char *path, size_t cap)
{
    if (br_deadletter_id_parse(id, NULL))
        return SH_EINVAL;
    return snprintf(path, cap, "%s/%s.json", dir, id) >= (int)cap ? SH_ETOOBIG : SH_OK;
}

/* The whole file into r->text (NUL-terminated). */
static int slurp(const char *path, struct br_dead_read *r)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? SH_ENOTFOUND : SH_EIO;
    struct stat st;
    int rc = SH_OK;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > READ_MAX)
        rc = SH_EIO;
    r->text = rc ? NULL : malloc((size_t)st.st_size + 1);
    if (!rc && !r->text)
        rc = SH_ENOMEM;
    size_t got = 0;
    while (!rc && got < (size_t)st.st_size) {
        ssize_t k = read(fd, r->text + got, (size_t)st.st_size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            rc = SH_EIO;
        else
            got += (size_t)k;
    }
    close(fd);
    if (rc) {
        free(r->text);
        r->text = NULL;
        return rc;
    }
    r->text[got] = '\0';
    r->len = got;
    return SH_OK;
}

int br_deadletter_read(const char *dir, const char *id, struct br_dead_read *out)
{
    memset(out, 0, sizeof(*out));
    char path[PATH_MAX];
    int rc = id_path(dir, id, path, sizeof(path));
    rc = rc ? rc : slurp(path, out);
    if (rc)
        return rc;
    out->json = cJSON_ParseWithLength(out->text, out->len);
    /* "body" is written last, after fields whose strings are escaped: the first `,"body":`
       outside a string is this one */
    static const char key[] = ",\"body\":";
    const char *at = strstr(out->text, key);
    if (!cJSON_IsObject(out->json) || !at || !cJSON_GetObjectItemCaseSensitive(out->json, "body")) {
        br_deadletter_read_free(out);
        return SH_EPARSE;
    }
    const char *b = at + sizeof(key) - 1, *e = out->text + out->len;
    while (e > b && (e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\r' || e[-1] == '\t'))
        e--;
    if (e <= b || e[-1] != '}') {
        br_deadletter_read_free(out);
        return SH_EPARSE;
    }
    out->body = b;
    out->body_len = (size_t)(e - 1 - b);
    return SH_OK;
}

void br_deadletter_read_free(struct br_dead_read *r)
{
    cJSON_Delete(r->json);
    free(r->text);
    memset(r, 0, sizeof(*r));
}

static const char *str_field(const cJSON *j, const char *key, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

static double num_field(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

int br_deadletter_refused_again(const char *dir, const char *id, long status, const char *resp,
                                size_t resp_len, int resp_truncated)
{
    struct br_dead_read r;
    int rc = br_deadletter_read(dir, id, &r);
    if (rc)
        return rc;
    const cJSON *wk = cJSON_GetObjectItemCaseSensitive(r.json, "webhook");
    char key[128], msg[BR_DEAD_ID_MAX];
    snprintf(key, sizeof(key), "%s", str_field(r.json, "webhook_key", ""));
    snprintf(msg, sizeof(msg), "%s", str_field(r.json, "webhook_id", ""));
    struct br_dead_letter dl = {
        .webhook = cJSON_IsNumber(wk) ? (size_t)wk->valuedouble : 0,
        .webhook_key = key,
        .msg_id = msg,
        .reason = "refused",
        .status = status,
        .attempts = (unsigned)num_field(r.json, "attempts") + 1,
        .events = (uint32_t)num_field(r.json, "events"),
        .response = resp,
        .response_len = resp_len,
        .response_truncated = resp_truncated,
        .body = r.body,
        .body_len = r.body_len,
    };
    char path[PATH_MAX], iso[32];
    iso_now(iso, sizeof(iso));
    rc = id_path(dir, id, path, sizeof(path));
    if (!rc && access(path, F_OK))
        rc = SH_ENOTFOUND; /* discarded while it was on its way */
    rc = rc ? rc : write_at(path, &dl, iso);
    br_deadletter_read_free(&r);
    return rc;
}

int br_deadletter_remove(const char *dir, const char *id, uint64_t *bytes)
{
    char path[PATH_MAX];
    int rc = id_path(dir, id, path, sizeof(path));
    if (rc)
        return rc == SH_EINVAL ? SH_ENOTFOUND : rc;
    struct stat st;
    if (stat(path, &st))
        return errno == ENOENT ? SH_ENOTFOUND : SH_EIO;
    if (unlink(path))
        return errno == ENOENT ? SH_ENOTFOUND : SH_EIO;
    sh_fsync_dir(dir); /* best effort: a removal lost in a crash only brings the file back */
    if (bytes)
        *bytes = (uint64_t)st.st_size;
    return SH_OK;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The ids in dir of webhook (SIZE_MAX: any), oldest first. */
static int collect(const char *dir, size_t webhook, char (**ids)[BR_DEAD_ID_MAX], size_t *n)
{
    *ids = NULL;
    *n = 0;
    DIR *dh = opendir(dir);
    if (!dh)
        return errno == ENOENT ? SH_OK : SH_EIO;
    size_t cap = 0;
    int rc = SH_OK;
    for (struct dirent *de; (de = readdir(dh));) {
        size_t len = strlen(de->d_name), w;
        char id[BR_DEAD_ID_MAX];
        if (len < 6 || len - 5 >= sizeof(id) || strcmp(de->d_name + len - 5, ".json"))
            continue;
        memcpy(id, de->d_name, len - 5);
        id[len - 5] = '\0';
        if (br_deadletter_id_parse(id, &w) || (webhook != SIZE_MAX && w != webhook))
            continue;
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            char(*grown)[BR_DEAD_ID_MAX] = realloc(*ids, nc * sizeof(**ids));
            if (!grown) {
                rc = SH_ENOMEM;
                break;
            }
            *ids = grown;
            cap = nc;
        }
        memcpy((*ids)[(*n)++], id, sizeof(id));
    }
    closedir(dh);
    if (rc) {
        free(*ids);
        *ids = NULL;
        *n = 0;
        return rc;
    }
    if (*n > 1) /* qsort wants a non-NULL array, even for none */
        qsort(*ids, *n, sizeof(**ids), by_name);
    return SH_OK;
}

int br_deadletter_ids(const char *dir, size_t webhook, uint64_t from_ms, uint64_t to_ms,
                      char (**ids)[BR_DEAD_ID_MAX], size_t *n)
{
    int rc = collect(dir, webhook, ids, n);
    if (rc)
        return rc;
    size_t k = 0;
    for (size_t i = 0; i < *n; i++) {
        uint64_t ms = br_deadletter_id_ms((*ids)[i]);
        if (ms >= from_ms && ms <= to_ms)
            memmove((*ids)[k++], (*ids)[i], BR_DEAD_ID_MAX);
    }
    *n = k;
    return SH_OK;
}

/* [{"shard":N,"first_s":a,"last_s":b}, ...] of the events in body, in order of first sight. */
static cJSON *shard_ranges(const cJSON *body)
{
    cJSON *out = cJSON_CreateArray();
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(body, "events"), *ev;
    cJSON_ArrayForEach(ev, events)
    {
        const cJSON *sh = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ev, "shard"), 0);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(ev, "s");
        if (!cJSON_IsNumber(sh) || !cJSON_IsNumber(s))
            continue;
        cJSON *e = NULL, *it;
        cJSON_ArrayForEach(it, out)
        {
            if (num_field(it, "shard") == sh->valuedouble)
                e = it;
        }
        if (!e) {
            e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "shard", sh->valuedouble);
            cJSON_AddNumberToObject(e, "first_s", s->valuedouble);
            cJSON_AddNumberToObject(e, "last_s", s->valuedouble);
            cJSON_AddItemToArray(out, e);
            continue;
        }
        if (s->valuedouble < num_field(e, "first_s"))
            cJSON_ReplaceItemInObjectCaseSensitive(e, "first_s",
                                                   cJSON_CreateNumber(s->valuedouble));
        if (s->valuedouble > num_field(e, "last_s"))
            cJSON_ReplaceItemInObjectCaseSensitive(e, "last_s", cJSON_CreateNumber(s->valuedouble));
    }
    return out;
}

static void copy_field(cJSON *to, const cJSON *from, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(from, key);
    cJSON_AddItemToObject(to, key, v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
}

/* One entry of the list; NULL when the file is gone (removed meanwhile). */
static cJSON *list_entry(const char *dir, const char *id)
{
    struct br_dead_read r;
    int rc = br_deadletter_read(dir, id, &r);
    if (rc == SH_ENOTFOUND)
        return NULL;
    cJSON *e = cJSON_CreateObject();
    size_t w = 0;
    br_deadletter_id_parse(id, &w);
    cJSON_AddStringToObject(e, "id", id);
    cJSON_AddNumberToObject(e, "webhook", (double)w);
    uint64_t ms = br_deadletter_id_ms(id);
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char when[40], stamp[32];
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when, sizeof(when), "%s.%03uZ", stamp, (unsigned)(ms % 1000));
    cJSON_AddStringToObject(e, "when", when);
    if (rc) {
        cJSON_AddStringToObject(e, "error", "the file cannot be read as a dead letter");
        return e;
    }
    static const char *const keys[] = {"webhook_id", "reason", "status",   "attempts",
                                       "failed_at",  "events", "response", "response_truncated"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        copy_field(e, r.json, keys[i]);
    if (num_field(r.json, "status") == 0) /* no answer came (a full spool share) */
        cJSON_ReplaceItemInObjectCaseSensitive(e, "status", cJSON_CreateNull());
    cJSON_AddNumberToObject(e, "bytes", (double)r.body_len);
    cJSON_AddItemToObject(e, "shards",
                          shard_ranges(cJSON_GetObjectItemCaseSensitive(r.json, "body")));
    br_deadletter_read_free(&r);
    return e;
}

int br_deadletter_list(const char *dir, size_t webhook, const char *after, size_t limit,
                       cJSON **out)
{
    char(*ids)[BR_DEAD_ID_MAX];
    size_t n;
    int rc = collect(dir, webhook, &ids, &n);
    if (rc)
        return rc;
    cJSON *j = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(j, "dead_letters");
    size_t taken = 0, i = n;
    while (i > 0 && after && strcmp(ids[i - 1], after) >= 0)
        i--;
    for (; i > 0 && taken < limit; i--) {
        cJSON *e = list_entry(dir, ids[i - 1]);
        if (e) {
            cJSON_AddItemToArray(arr, e);
            taken++;
        }
    }
    if (i > 0 && taken)
        cJSON_AddStringToObject(j, "next_after", ids[i]);
    else
        cJSON_AddNullToObject(j, "next_after");
    free(ids);
    if (!arr) {
        cJSON_Delete(j);
        return SH_ENOMEM;
    }
    *out = j;
    return SH_OK;
}
