/* bridge/checkpoint.c: encoding, parsing, the snapshot and the journal of bridge/checkpoint.h. */
#include <cjson/cJSON.h>
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

#include "bridge/checkpoint.h"
#include "lib/errors.h"
#include "lib/fileio.h"
#include "lib/json.h"

/* bytes kept: a checkpoint reads back exactly as written */
static int put_str(struct sh_buf *out, const char *s)
{
    return sh_json_quote(out, s, strlen(s), SH_JSON_KEEP_BYTES);
}

int br_checkpoint_encode(const struct br_checkpoint *cp, uint64_t wall_ms, struct sh_buf *out)
{
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    char when[32];
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    int rc = sh_buf_printf(out, "{\"version\":1,\"shard\":%d,\"shard_count\":%d,\"session_id\":",
                           cp->shard, cp->total);
    rc = rc ? rc : put_str(out, cp->session_id);
    rc = rc ? rc : sh_buf_append_str(out, ",\"resume_gateway_url\":");
    rc = rc ? rc : put_str(out, cp->resume_url);
    rc = rc ? rc
            : sh_buf_printf(out,
                            ",\"seq\":%" PRIu64 ",\"n\":%" PRIu64
                            ",\"clean\":%s,\"written_at\":\"%s\",\"webhooks\":{",
                            cp->seq, cp->n, cp->clean ? "true" : "false", when);
    for (size_t i = 0; !rc && i < cp->n_hooks; i++) {
        const struct br_ckpt_hook *h = &cp->hooks[i];
        rc = i ? sh_buf_append(out, ",", 1) : SH_OK;
        rc = rc ? rc : put_str(out, h->key); /* read back from any file: may need escapes */
        rc = rc ? rc
                : sh_buf_printf(out, ":{\"acked\":%" PRIu64 ",\"queued\":%" PRIu64 "}", h->acked,
                                h->queued);
    }
    return rc ? rc : sh_buf_append_str(out, "}}\n");
}

static int get_u64(const cJSON *o, const char *name, uint64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != (double)(uint64_t)v->valuedouble)
        return SH_EPARSE;
    *out = (uint64_t)v->valuedouble;
    return SH_OK;
}

static int get_str(const cJSON *o, const char *name, char *out, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap)
        return SH_EPARSE;
    snprintf(out, cap, "%s", v->valuestring);
    return SH_OK;
}

int br_checkpoint_parse(const char *json, size_t len, struct br_checkpoint *out)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    struct br_checkpoint *cp = calloc(1, sizeof(*cp));
    int rc = root && cJSON_IsObject(root) && cp ? SH_OK : SH_EPARSE;
    uint64_t version = 0, shard = 0, total = 0;
    if (!rc)
        rc = get_u64(root, "version", &version);
    if (!rc && version != 1)
        rc = SH_EPARSE;
    if (!rc)
        rc = get_u64(root, "shard", &shard);
    if (!rc)
        rc = get_u64(root, "shard_count", &total);
    if (!rc && (total < 1 || total > 65536 || shard >= total))
        rc = SH_EPARSE;
    if (!rc)
        rc = get_str(root, "session_id", cp->session_id, sizeof(cp->session_id));
    if (!rc)
        rc = get_str(root, "resume_gateway_url", cp->resume_url, sizeof(cp->resume_url));
    if (!rc)
        rc = get_u64(root, "seq", &cp->seq);
    if (!rc && !cp->session_id[0])
        rc = SH_EPARSE;
    if (!rc && cJSON_GetObjectItemCaseSensitive(root, "n"))
        rc = get_u64(root, "n", &cp->n); /* absent in files written before the journal */
    const cJSON *hooks = root ? cJSON_GetObjectItemCaseSensitive(root, "webhooks") : NULL;
    if (!rc && hooks && !cJSON_IsObject(hooks))
        rc = SH_EPARSE;
    const cJSON *h, *walk = rc ? NULL : hooks;
    cJSON_ArrayForEach(h, walk)
    {
        if (cp->n_hooks == BR_CKPT_MAX_HOOKS || !cJSON_IsObject(h) ||
            strlen(h->string) >= BR_CKPT_KEY_MAX) {
            rc = SH_EPARSE;
            break;
        }
        struct br_ckpt_hook *e = &cp->hooks[cp->n_hooks];
        snprintf(e->key, sizeof(e->key), "%s", h->string);
        rc = get_u64(h, "acked", &e->acked);
        if (!rc && get_u64(h, "queued", &e->queued))
            e->queued = 0;
        if (rc)
            break;
        cp->n_hooks++;
    }
    if (!rc) {
        cp->shard = (int)shard;
        cp->total = (int)total;
        cp->clean = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "clean"));
        *out = *cp;
    }
    free(cp);
    cJSON_Delete(root);
    return rc;
}

const struct br_ckpt_hook *br_checkpoint_hook(const struct br_checkpoint *cp, const char *key)
{
    for (size_t i = 0; i < cp->n_hooks; i++)
        if (!strcmp(cp->hooks[i].key, key))
            return &cp->hooks[i];
    return NULL;
}

#define JOURNAL_MAX ((size_t)1 << 20) /* past this, the next write is a snapshot */

void br_ckpt_files_init(struct br_ckpt_files *f, int shard)
{
    memset(f, 0, sizeof(*f));
    f->shard = shard;
    f->journal_fd = -1;
}

static int file_path(char *out, size_t cap, const char *dir, const char *fmt, int shard)
{
    int n = snprintf(out, cap, "%s/", dir);
    if (n < 0 || (size_t)n >= cap)
        return SH_ETOOBIG;
    int m = snprintf(out + n, cap - (size_t)n, fmt, shard);
    return m < 0 || (size_t)m >= cap - (size_t)n ? SH_ETOOBIG : SH_OK;
}

void br_ckpt_files_close(const char *dir, struct br_ckpt_files *f)
{
    if (f->journal_fd < 0)
        return;
    char path[PATH_MAX];
    if (!f->journal_bytes && !file_path(path, sizeof(path), dir, "shard-%d.journal", f->shard))
        unlink(path);
    close(f->journal_fd);
    f->journal_fd = -1;
}

/* cp with the next n, encoded as one line */
static int encode_next(struct br_ckpt_files *f, struct br_checkpoint *cp, struct sh_buf *b)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    cp->n = f->n + 1;
    return br_checkpoint_encode(cp, (uint64_t)ts.tv_sec * 1000, b);
}

int br_checkpoint_write(const char *dir, struct br_ckpt_files *f, struct br_checkpoint *cp,
                        int sync)
{
    char path[PATH_MAX];
    int rc = file_path(path, sizeof(path), dir, "shard-%d.json", cp->shard);
    if (rc)
        return rc;
    struct sh_buf b;
    sh_buf_init(&b, BR_CKPT_MAX_BYTES);
    rc = encode_next(f, cp, &b);
    if (rc) {
        sh_buf_free(&b);
        return rc;
    }
    rc = sh_write_file_atomic(path, b.data, b.len, sync);
    sh_buf_free(&b);
    if (rc && rc != SH_EUNSYNCED) /* not renamed: the old snapshot stands */
        return rc;
    f->n = cp->n;
    /* every journal line is older now; emptied after the rename, so a crash keeps the newest */
    if (f->journal_fd >= 0 && f->journal_bytes) {
        if (ftruncate(f->journal_fd, 0) == 0)
            f->journal_bytes = 0;
        else
            rc = SH_EIO; /* harmless for the state (older lines lose), but say so */
    }
    return rc;
}

int br_checkpoint_append(const char *dir, struct br_ckpt_files *f, struct br_checkpoint *cp)
{
    char path[PATH_MAX];
    int rc = file_path(path, sizeof(path), dir, "shard-%d.journal", cp->shard);
    if (rc)
        return rc;
    if (f->journal_fd < 0) {
        f->journal_fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (f->journal_fd < 0)
            return SH_EIO;
        /* lines of an earlier run stay: their n is lower (read first), the snapshot empties them */
        struct stat st;
        char last = '\n';
        if (fstat(f->journal_fd, &st) ||
            (st.st_size > 0 && pread(f->journal_fd, &last, 1, st.st_size - 1) != 1) ||
            (last != '\n' && sh_write_all(f->journal_fd, "\n", 1))) { /* end a torn line */
            close(f->journal_fd);
            f->journal_fd = -1;
            return SH_EIO;
        }
        f->journal_bytes = (size_t)st.st_size + (last != '\n');
    }
    struct sh_buf b;
    sh_buf_init(&b, BR_CKPT_MAX_BYTES);
    uint64_t n = f->n;
    rc = encode_next(f, cp, &b);
    if (!rc && f->journal_bytes + b.len > JOURNAL_MAX)
        rc = SH_ETOOBIG;
    if (!rc) {
        rc = sh_write_all(f->journal_fd, b.data, b.len);
        if (rc && ftruncate(f->journal_fd, (off_t)f->journal_bytes)) {
            /* a torn line would swallow the next one: start over at the snapshot */
            close(f->journal_fd);
            f->journal_fd = -1;
        }
    }
    if (rc) {
        cp->n = n;
    } else {
        f->n = cp->n;
        f->journal_bytes += b.len;
    }
    sh_buf_free(&b);
    return rc;
}

/* Read up to max bytes of fd into a new buffer (NUL-terminated): 0, SH_EIO, SH_ENOMEM. */
static int read_some(int fd, size_t max, char **out, size_t *out_len)
{
    char *buf = malloc(max + 1);
    size_t len = 0;
    if (!buf)
        return SH_ENOMEM;
    while (len < max) {
        ssize_t r = read(fd, buf + len, max - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            return SH_EIO;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return SH_OK;
}

static int read_snapshot(const char *path, struct br_checkpoint *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? SH_ENOTFOUND : SH_EIO;
    char *buf = NULL;
    size_t len = 0;
    int rc = read_some(fd, BR_CKPT_MAX_BYTES + 1, &buf, &len);
    close(fd);
    if (!rc && len > BR_CKPT_MAX_BYTES)
        rc = SH_ETOOBIG;
    if (!rc)
        rc = br_checkpoint_parse(buf, len, out);
    free(buf);
    return rc;
}

int br_checkpoint_read(const char *dir, struct br_ckpt_files *f, struct br_checkpoint *out)
{
    char path[PATH_MAX], jpath[PATH_MAX];
    int rc = file_path(path, sizeof(path), dir, "shard-%d.json", f->shard);
    if (!rc)
        rc = file_path(jpath, sizeof(jpath), dir, "shard-%d.journal", f->shard);
    if (rc)
        return rc;
    struct br_checkpoint *cp = calloc(1, sizeof(*cp));
    if (!cp)
        return SH_ENOMEM;
    rc = read_snapshot(path, out);
    int found = !rc;
    if (found && out->n > f->n)
        f->n = out->n;
    int fd = open(jpath, O_RDONLY | O_CLOEXEC);
    char *buf = NULL;
    size_t len = 0;
    if (fd >= 0) {
        int jrc = read_some(fd, JOURNAL_MAX + BR_CKPT_MAX_BYTES, &buf, &len);
        close(fd);
        if (jrc && rc == SH_ENOTFOUND)
            rc = jrc;
    }
    /* complete lines only: a crash mid-append leaves a tail without its newline */
    for (char *line = buf, *nl; line && (nl = memchr(line, '\n', len - (size_t)(line - buf)));
         line = nl + 1) {
        if (br_checkpoint_parse(line, (size_t)(nl - line), cp) || cp->shard != f->shard)
            continue;
        if (cp->n > f->n)
            f->n = cp->n;
        if (!found || cp->n >= out->n) {
            *out = *cp;
            found = 1;
        }
    }
    free(buf);
    free(cp);
    return found ? SH_OK : rc;
}
