/*
 * bridge/spool.c: append-only segment files of bridge/spool.h. Owns its folder's *.seg
 * files, two descriptors (head for reading, tail for appending) and a list of segments; and,
 * in the folder of every webhook's spool, the CLEAN marker and the stale spools set aside.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <cjson/cJSON.h>

#include "bridge/spool.h"
#include "lib/errors.h"
#include "lib/fileio.h"
#include "lib/log.h"

#define MAGIC 0x31534853u /* "SHS1" little-endian */
#define HEAD_BYTES 20     /* magic, meta_len, body_len, n_events, crc */
#define MAX_META (1 + BR_MSG_ID_MAX + 16 + (size_t)BR_BATCH_MAX_SHARDS * 24)
#define FIRST_NUM ((uint64_t)1 << 32) /* room below for prepended segments */
#define MARKER_MAX ((size_t)8 << 20)
#define MARKER_NAME "CLEAN"
#define STALE_SEGMENT_BYTES ((size_t)16 << 20)

struct seg {
    uint64_t num;
    uint64_t size;
    uint64_t batches, events; /* records in it not yet read */
    int adopted;              /* found at open: an earlier run's */
};

struct br_spool {
    char dir[PATH_MAX - 32];
    size_t seg_bytes, max_body;
    struct seg *segs; /* segs[0] is the head */
    size_t n_segs, cap_segs;
    int rfd, wfd;         /* rfd reads segs[0], wfd appends to segs[n_segs - 1] */
    uint64_t roff;        /* read offset in segs[0] */
    uint64_t adopted_max; /* segments numbered up to this were adopted at open (0: none) */
    struct sh_buf meta;
    struct sh_log_limit lim_write, lim_seg, lim_unlink; /* a full disk fails every append */
};

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void seg_path(const struct br_spool *sp, uint64_t num, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%020" PRIu64 ".seg", sp->dir, num);
}

static int push_seg(struct br_spool *sp, struct seg s, int front)
{
    if (sp->n_segs == sp->cap_segs) {
        size_t ncap = sp->cap_segs ? sp->cap_segs * 2 : 8;
        struct seg *p = realloc(sp->segs, ncap * sizeof(*p));
        if (!p)
            return SH_ENOMEM;
        sp->segs = p;
        sp->cap_segs = ncap;
    }
    if (front) {
        if (sp->n_segs)
            memmove(sp->segs + 1, sp->segs, sp->n_segs * sizeof(*sp->segs));
        sp->segs[0] = s;
    } else {
        sp->segs[sp->n_segs] = s;
    }
    sp->n_segs++;
    return SH_OK;
}

static int cmp_seg(const void *a, const void *b)
{
    uint64_t x = ((const struct seg *)a)->num, y = ((const struct seg *)b)->num;
    return x < y ? -1 : x > y;
}

/* Read exactly n bytes at off; SH_ECORRUPT on a short read (a torn record). */
static int read_at(int fd, void *buf, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return SH_EIO;
        if (r == 0)
            return SH_ECORRUPT;
        got += (size_t)r;
    }
    return SH_OK;
}

struct rec_head {
    uint32_t meta_len, body_len, n_events, crc;
};

static int read_head(const struct br_spool *sp, int fd, uint64_t off, uint64_t size,
                     struct rec_head *h)
{
    unsigned char b[HEAD_BYTES];
    if (size - off < HEAD_BYTES)
        return SH_ECORRUPT;
    int rc = read_at(fd, b, sizeof(b), off);
    if (rc)
        return rc;
    h->meta_len = get32(b + 4);
    h->body_len = get32(b + 8);
    h->n_events = get32(b + 12);
    h->crc = get32(b + 16);
    if (get32(b) != MAGIC || h->meta_len > MAX_META || h->body_len > sp->max_body ||
        size - off - HEAD_BYTES < (uint64_t)h->meta_len + h->body_len)
        return SH_ECORRUPT;
    return SH_OK;
}

/* Read a whole record at off into buf (meta then body) and check its CRC. */
static int read_record(const struct br_spool *sp, int fd, uint64_t off, uint64_t size,
                       struct rec_head *h, char **buf)
{
    int rc = read_head(sp, fd, off, size, h);
    if (rc)
        return rc;
    size_t n = (size_t)h->meta_len + h->body_len;
    char *p = malloc(n ? n : 1);
    if (!p)
        return SH_ENOMEM;
    rc = read_at(fd, p, n, off + HEAD_BYTES);
    if (!rc && (uint32_t)crc32(crc32(0L, Z_NULL, 0), (const Bytef *)p, (uInt)n) != h->crc)
        rc = SH_ECORRUPT;
    if (rc) {
        free(p);
        return rc;
    }
    *buf = p;
    return SH_OK;
}

/* Count the valid records of an adopted segment and cut a torn or corrupt tail. */
static int scan_segment(struct br_spool *sp, struct seg *s,
                        void (*on_record)(void *, const char *, size_t), void *ud)
{
    char path[PATH_MAX];
    seg_path(sp, s->num, path, sizeof(path));
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return SH_EIO;
    struct stat st;
    if (fstat(fd, &st)) {
        close(fd);
        return SH_EIO;
    }
    uint64_t size = (uint64_t)st.st_size, off = 0;
    s->batches = s->events = 0;
    while (off < size) {
        struct rec_head h;
        char *buf = NULL;
        int rc = read_record(sp, fd, off, size, &h, &buf);
        if (!rc && on_record)
            on_record(ud, buf, h.meta_len);
        free(buf);
        if (rc == SH_ECORRUPT) {
            log_error("msg=\"spool segment has a torn or corrupt record; cutting it there\" "
                      "file=\"%s\" offset=%" PRIu64 " bytes_dropped=%" PRIu64,
                      path, off, size - off);
            if (ftruncate(fd, (off_t)off)) {
                close(fd);
                return SH_EIO;
            }
            break;
        }
        if (rc) {
            close(fd);
            return rc;
        }
        s->batches++;
        s->events += h.n_events;
        off += HEAD_BYTES + (uint64_t)h.meta_len + h.body_len;
    }
    s->size = off;
    close(fd);
    return SH_OK;
}

static int adopt(struct br_spool *sp, int keep, void (*on_record)(void *, const char *, size_t),
                 void *ud)
{
    DIR *dp = opendir(sp->dir);
    if (!dp)
        return SH_EIO;
    int rc = SH_OK;
    struct dirent *de;
    while (!rc && (de = readdir(dp))) {
        const char *n = de->d_name;
        size_t l = strlen(n);
        if (l != 24 || strcmp(n + 20, ".seg"))
            continue;
        char *end;
        uint64_t num = strtoull(n, &end, 10);
        if (end != n + 20)
            continue;
        if (!keep) {
            rc = SH_EINVAL;
            break;
        }
        rc = push_seg(sp, (struct seg){.num = num, .adopted = 1}, 0);
    }
    closedir(dp);
    if (rc)
        return rc;
    if (sp->n_segs)
        qsort(sp->segs, sp->n_segs, sizeof(*sp->segs), cmp_seg);
    for (size_t i = 0; i < sp->n_segs && !rc; i++)
        rc = scan_segment(sp, &sp->segs[i], on_record, ud);
    if (sp->n_segs)
        sp->adopted_max = sp->segs[sp->n_segs - 1].num;
    return rc;
}

int br_spool_open(const char *dir, int keep, size_t segment_bytes, size_t max_body,
                  void (*on_record)(void *ud, const char *meta, size_t meta_len), void *ud,
                  struct br_spool **out)
{
    struct br_spool *sp = calloc(1, sizeof(*sp));
    if (!sp)
        return SH_ENOMEM;
    sp->rfd = sp->wfd = -1;
    sp->seg_bytes = segment_bytes;
    sp->max_body = max_body > UINT32_MAX ? UINT32_MAX : max_body;
    sh_buf_init(&sp->meta, MAX_META);
    int rc =
        snprintf(sp->dir, sizeof(sp->dir), "%s", dir) >= (int)sizeof(sp->dir) ? SH_ETOOBIG : SH_OK;
    if (!rc)
        rc = sh_mkdir_p(sp->dir);
    if (!rc)
        rc = adopt(sp, keep, on_record, ud);
    if (rc) {
        br_spool_close(sp);
        return rc;
    }
    *out = sp;
    return SH_OK;
}

void br_spool_close(struct br_spool *sp)
{
    if (!sp)
        return;
    if (sp->rfd >= 0)
        close(sp->rfd);
    if (sp->wfd >= 0)
        close(sp->wfd);
    free(sp->segs);
    sh_buf_free(&sp->meta);
    free(sp);
}

size_t br_spool_record_size(const struct br_batch *b)
{
    return HEAD_BYTES + 1 + strlen(b->msg_id) + 16 + (size_t)b->n_shards * 24 + b->body.len;
}

/* Write one record of b at the end of fd (whose size is *size); undo a partial write. */
static int write_record(struct br_spool *sp, int fd, uint64_t *size, const struct br_batch *b)
{
    sh_buf_reset(&sp->meta);
    int rc = br_batch_encode_meta(b, &sp->meta);
    if (rc)
        return rc;
    if (b->body.len > sp->max_body)
        return SH_ETOOBIG;
    unsigned char head[HEAD_BYTES];
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, (const Bytef *)sp->meta.data, (uInt)sp->meta.len);
    crc = crc32(crc, (const Bytef *)b->body.data, (uInt)b->body.len);
    put32(head, MAGIC);
    put32(head + 4, (uint32_t)sp->meta.len);
    put32(head + 8, (uint32_t)b->body.len);
    put32(head + 12, b->n_events);
    put32(head + 16, (uint32_t)crc);
    struct iovec iov[3] = {
        {head, sizeof(head)}, {sp->meta.data, sp->meta.len}, {b->body.data, b->body.len}};
    size_t total = sizeof(head) + sp->meta.len + b->body.len, done = 0;
    while (done < total) {
        /* skip what was written already */
        struct iovec v[3];
        int nv = 0;
        size_t skip = done;
        for (int i = 0; i < 3; i++) {
            if (skip >= iov[i].iov_len) {
                skip -= iov[i].iov_len;
                continue;
            }
            v[nv].iov_base = (char *)iov[i].iov_base + skip;
            v[nv].iov_len = iov[i].iov_len - skip;
            skip = 0;
            nv++;
        }
        ssize_t w = pwritev(fd, v, nv, (off_t)(*size + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            if (ftruncate(fd, (off_t)*size))
                log_error_limited(&sp->lim_write,
                                  "msg=\"cannot cut a partial spool record\" dir=\"%s\" "
                                  "error=\"%s\"",
                                  sp->dir, strerror(errno));
            log_error_limited(&sp->lim_write, "msg=\"spool write failed\" dir=\"%s\" error=\"%s\"",
                              sp->dir, strerror(e));
            return SH_EIO;
        }
        done += (size_t)w;
    }
    *size += total;
    return SH_OK;
}

static int open_seg(struct br_spool *sp, uint64_t num, int flags)
{
    char path[PATH_MAX];
    seg_path(sp, num, path, sizeof(path));
    return open(path, flags | O_CLOEXEC, 0600);
}

int br_spool_append(struct br_spool *sp, const struct br_batch *b)
{
    size_t rec = br_spool_record_size(b);
    struct seg *tail = sp->n_segs ? &sp->segs[sp->n_segs - 1] : NULL;
    if (!tail || (tail->size && tail->size + rec > sp->seg_bytes) || tail->num <= sp->adopted_max) {
        uint64_t num = tail ? tail->num + 1 : FIRST_NUM;
        int fd = open_seg(sp, num, O_RDWR | O_CREAT | O_TRUNC);
        if (fd < 0) {
            log_error_limited(&sp->lim_seg,
                              "msg=\"cannot create a spool segment\" dir=\"%s\" error=\"%s\"",
                              sp->dir, strerror(errno));
            return SH_EIO;
        }
        int rc = push_seg(sp, (struct seg){.num = num}, 0);
        if (rc) {
            close(fd);
            return rc;
        }
        if (sp->wfd >= 0)
            close(sp->wfd);
        sp->wfd = fd;
        tail = &sp->segs[sp->n_segs - 1];
    } else if (sp->wfd < 0) {
        sp->wfd = open_seg(sp, tail->num, O_RDWR);
        if (sp->wfd < 0)
            return SH_EIO;
    }
    int rc = write_record(sp, sp->wfd, &tail->size, b);
    if (rc)
        return rc;
    tail->batches++;
    tail->events += b->n_events;
    return SH_OK;
}

static void drop_head(struct br_spool *sp)
{
    char path[PATH_MAX];
    seg_path(sp, sp->segs[0].num, path, sizeof(path));
    if (sp->rfd >= 0)
        close(sp->rfd);
    sp->rfd = -1;
    if (sp->n_segs == 1 && sp->wfd >= 0) {
        close(sp->wfd);
        sp->wfd = -1;
    }
    if (unlink(path) && errno != ENOENT)
        log_warn_limited(&sp->lim_unlink,
                         "msg=\"cannot delete a drained spool segment\" file=\"%s\" error=\"%s\"",
                         path, strerror(errno));
    if (sp->n_segs > 1)
        memmove(sp->segs, sp->segs + 1, (sp->n_segs - 1) * sizeof(*sp->segs));
    sp->n_segs--;
    sp->roff = 0;
}

/* Position on the head record: SH_ENOTFOUND when the spool is empty. */
static int head_ready(struct br_spool *sp)
{
    while (sp->n_segs && sp->roff >= sp->segs[0].size)
        drop_head(sp); /* read back entirely (a drained tail too: appends start a new one) */
    if (!sp->n_segs)
        return SH_ENOTFOUND;
    if (sp->rfd < 0) {
        sp->rfd = open_seg(sp, sp->segs[0].num, O_RDONLY);
        if (sp->rfd < 0)
            return SH_EIO;
    }
    return SH_OK;
}

int br_spool_peek(struct br_spool *sp, size_t *record_bytes)
{
    int rc = head_ready(sp);
    if (rc)
        return rc;
    struct rec_head h;
    rc = read_head(sp, sp->rfd, sp->roff, sp->segs[0].size, &h);
    if (rc)
        return rc;
    *record_bytes = HEAD_BYTES + (size_t)h.meta_len + h.body_len;
    return SH_OK;
}

int br_spool_pop(struct br_spool *sp, struct br_batch **out, uint64_t *skipped, int *adopted)
{
    *skipped = 0;
    int rc = head_ready(sp);
    if (rc)
        return rc;
    struct seg *s = &sp->segs[0];
    if (adopted)
        *adopted = s->adopted; /* not by number: an emptied spool numbers from the start */
    struct rec_head h;
    char *buf = NULL;
    rc = read_record(sp, sp->rfd, sp->roff, s->size, &h, &buf);
    if (!rc) {
        rc = br_batch_decode(buf, h.meta_len, buf + h.meta_len, h.body_len, out);
        free(buf);
    }
    if (rc == SH_ECORRUPT || rc == SH_EIO) {
        *skipped = s->size - sp->roff;
        log_error("msg=\"unreadable spool record; skipping the rest of its segment\" "
                  "dir=\"%s\" segment=%" PRIu64 " offset=%" PRIu64 " bytes=%" PRIu64
                  " batches=%" PRIu64 " events=%" PRIu64,
                  sp->dir, s->num, sp->roff, *skipped, s->batches, s->events);
        drop_head(sp);
        return SH_ECORRUPT;
    }
    if (rc)
        return rc;
    sp->roff += HEAD_BYTES + (uint64_t)h.meta_len + h.body_len;
    s->batches--;
    s->events -= h.n_events;
    if (sp->roff >= s->size && sp->n_segs == 1) {
        /* drained: delete it now rather than keep appending behind a read prefix */
        drop_head(sp);
    }
    return SH_OK;
}

int br_spool_prepend(struct br_spool *sp, struct br_batch *const *bs, size_t n)
{
    if (!n)
        return SH_OK;
    /*
     * A partly read head segment would repeat its read records when adopted later: its
     * unread records move into the new segment after bs, and the old file goes.
     */
    struct br_batch **rest = NULL;
    size_t n_rest = 0, cap_rest = 0;
    int rc = SH_OK;
    if (sp->n_segs && sp->roff) {
        uint64_t head = sp->segs[0].num;
        while (!rc && sp->n_segs && sp->segs[0].num == head && sp->roff < sp->segs[0].size) {
            struct br_batch *b;
            uint64_t skipped;
            rc = br_spool_pop(sp, &b, &skipped, NULL);
            if (rc == SH_ECORRUPT) {
                rc = SH_OK;
                continue;
            }
            if (rc)
                break;
            if (n_rest == cap_rest) {
                size_t ncap = cap_rest ? cap_rest * 2 : 16;
                struct br_batch **p = realloc(rest, ncap * sizeof(*p));
                if (!p) {
                    br_batch_free(b);
                    rc = SH_ENOMEM;
                    break;
                }
                rest = p;
                cap_rest = ncap;
            }
            rest[n_rest++] = b;
        }
        if (!rc && sp->n_segs && sp->segs[0].num == head)
            drop_head(sp);
    }
    if (!rc && sp->n_segs && sp->segs[0].num == 0)
        rc = SH_ETOOBIG;
    uint64_t num = sp->n_segs && !rc ? sp->segs[0].num - 1 : FIRST_NUM;
    int fd = rc ? -1 : open_seg(sp, num, O_RDWR | O_CREAT | O_TRUNC);
    if (!rc && fd < 0)
        rc = SH_EIO;
    struct seg s = {.num = num};
    for (size_t i = 0; i < n + n_rest && !rc; i++) {
        const struct br_batch *b = i < n ? bs[i] : rest[i - n];
        rc = write_record(sp, fd, &s.size, b);
        s.batches++;
        s.events += b->n_events;
    }
    if (fd >= 0) {
        if (!rc && fsync(fd))
            rc = SH_EIO;
        close(fd);
    }
    if (!rc)
        rc = push_seg(sp, s, 1);
    if (rc && fd >= 0) {
        char path[PATH_MAX];
        seg_path(sp, num, path, sizeof(path));
        unlink(path);
    }
    for (size_t i = 0; i < n_rest; i++)
        br_batch_free(rest[i]);
    free(rest);
    return rc;
}

int br_spool_sync(struct br_spool *sp)
{
    int rc = SH_OK;
    if (sp->wfd >= 0 && fsync(sp->wfd))
        rc = SH_EIO;
    if (sh_fsync_dir(sp->dir))
        rc = SH_EIO;
    return rc;
}

void br_spool_stats(const struct br_spool *sp, struct br_spool_stats *st)
{
    memset(st, 0, sizeof(*st));
    for (size_t i = 0; i < sp->n_segs; i++) {
        st->bytes += sp->segs[i].size - (i ? 0 : sp->roff);
        st->batches += sp->segs[i].batches;
        st->events += sp->segs[i].events;
    }
    st->segments = sp->n_segs;
}

/* ---- the marker and stale spools ---------------------------------------------------------- */

static void fsync_dir(const char *dir)
{
    static struct sh_log_limit lim;
    if (sh_fsync_dir(dir))
        log_warn_limited(&lim, "msg=\"cannot fsync a folder\" dir=\"%s\" error=\"%s\"", dir,
                         strerror(errno));
}

static void marker_path(const char *root, char *out, size_t cap)
{
    snprintf(out, cap, "%s/" MARKER_NAME, root);
}

static cJSON *read_json(const char *path)
{
    char *buf;
    size_t len;
    if (sh_read_file(path, MARKER_MAX, &buf, &len))
        return NULL;
    cJSON *root = cJSON_ParseWithLength(buf, len);
    free(buf);
    return root;
}

int br_spool_marker_read(const char *root, int total, char *keys, size_t key_cap, size_t max_keys,
                         size_t *n_keys)
{
    char path[PATH_MAX];
    marker_path(root, path, sizeof(path));
    *n_keys = 0;
    if (access(path, F_OK))
        return 0;
    cJSON *json = read_json(path);
    const cJSON *count = cJSON_GetObjectItemCaseSensitive(json, "shard_count");
    const cJSON *hooks = cJSON_GetObjectItemCaseSensitive(json, "webhooks");
    int ok = cJSON_IsNumber(count) && count->valueint == total && cJSON_IsArray(hooks);
    const cJSON *it, *list = ok ? hooks : NULL;
    cJSON_ArrayForEach(it, list)
    {
        if (cJSON_IsString(it) && *n_keys < max_keys && strlen(it->valuestring) < key_cap)
            snprintf(keys + (*n_keys)++ * key_cap, key_cap, "%s", it->valuestring);
    }
    if (!ok)
        log_warn("msg=\"spool marker of the last stop does not fit this run; not adopting the "
                 "spool\" file=\"%s\"",
                 path);
    cJSON_Delete(json);
    return ok;
}

int br_spool_marker_write(const char *root, int total, const char *const *keys, size_t n)
{
    char path[PATH_MAX - 8];
    marker_path(root, path, sizeof(path));
    struct sh_buf b;
    sh_buf_init(&b, MARKER_MAX);
    int rc = sh_buf_printf(&b, "{\"version\":1,\"shard_count\":%d,\"webhooks\":[", total);
    for (size_t i = 0; !rc && i < n; i++)
        rc = sh_buf_printf(&b, "%s\"%s\"", i ? "," : "", keys[i]);
    rc = rc ? rc : sh_buf_append_str(&b, "]}\n");
    rc = rc ? rc : sh_write_file_durable(path, b.data, b.len);
    sh_buf_free(&b);
    if (rc == SH_EUNSYNCED) { /* written and renamed; only the folder's fsync failed */
        log_warn("msg=\"cannot fsync a folder\" dir=\"%s\" error=\"%s\"", root, strerror(errno));
        rc = SH_OK;
    } else if (rc) {
        log_error("msg=\"cannot write the spool marker; the next start sets the spool aside and "
                  "relies on Discord's replay\" file=\"%s\"",
                  path);
    }
    return rc;
}

void br_spool_marker_remove(const char *root)
{
    char path[PATH_MAX];
    marker_path(root, path, sizeof(path));
    if (unlink(path) && errno != ENOENT)
        log_error("msg=\"cannot remove the spool marker\" file=\"%s\" error=\"%s\"", path,
                  strerror(errno));
    fsync_dir(root);
}

void br_spool_set_aside(const char *root, const char *dir, const char *key, size_t webhook)
{
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode))
        return;
    struct br_spool *sp;
    if (br_spool_open(dir, 1, STALE_SEGMENT_BYTES, UINT32_MAX, NULL, NULL, &sp))
        return;
    struct br_spool_stats ss;
    br_spool_stats(sp, &ss);
    br_spool_close(sp);
    if (!ss.segments)
        return;
    char stale[PATH_MAX], stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
    snprintf(stale, sizeof(stale), "%s/stale-%s-%s", root, stamp, key);
    if (rename(dir, stale)) {
        log_error("msg=\"cannot set an earlier run's spool aside\" webhook=%zu dir=\"%s\" "
                  "error=\"%s\"",
                  webhook, dir, strerror(errno));
        return;
    }
    log_warn("msg=\"an earlier run stopped without saving its spool; its batches are kept "
             "aside, not sent: the RESUME from the checkpoint replays what was not "
             "acknowledged\" webhook=%zu batches=%" PRIu64 " events=%" PRIu64 " moved_to=\"%s\"",
             webhook, ss.batches, ss.events, stale);
}
