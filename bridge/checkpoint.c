/* bridge/checkpoint.c: encoding, parsing and atomic files of bridge/checkpoint.h. */
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

static int put_str(struct sh_buf *out, const char *s)
{
    int rc = sh_buf_append(out, "\"", 1);
    for (; !rc && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            rc = sh_buf_printf(out, "\\%c", c);
        else if (c < 0x20)
            rc = sh_buf_printf(out, "\\u%04x", c);
        else
            rc = sh_buf_append(out, s, 1);
    }
    return rc ? rc : sh_buf_append(out, "\"", 1);
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
                            ",\"seq\":%" PRIu64 ",\"clean\":%s,\"written_at\":\"%s\","
                            "\"webhooks\":{",
                            cp->seq, cp->clean ? "true" : "false", when);
    for (size_t i = 0; !rc && i < cp->n_hooks; i++) {
        const struct br_ckpt_hook *h = &cp->hooks[i];
        rc = sh_buf_printf(out, "%s\"%s\":{\"acked\":%" PRIu64 ",\"queued\":%" PRIu64 "}",
                           i ? "," : "", h->key, h->acked, h->queued);
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

int br_checkpoint_write(const char *dir, const struct br_checkpoint *cp, int sync)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/shard-%d.json", dir, cp->shard) >= (int)sizeof(path) ||
        snprintf(tmp, sizeof(tmp), "%s/.shard-%d.json.tmp", dir, cp->shard) >= (int)sizeof(tmp))
        return SH_ETOOBIG;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct sh_buf b;
    sh_buf_init(&b, BR_CKPT_MAX_BYTES);
    int rc = br_checkpoint_encode(cp, (uint64_t)ts.tv_sec * 1000, &b);
    if (rc) {
        sh_buf_free(&b);
        return rc;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        sh_buf_free(&b);
        return SH_EIO;
    }
    rc = sh_write_all(fd, b.data, b.len);
    sh_buf_free(&b);
    if (!rc && sync && fsync(fd))
        rc = SH_EIO;
    if (close(fd) && !rc)
        rc = SH_EIO;
    if (!rc && rename(tmp, path))
        rc = SH_EIO;
    if (rc) {
        unlink(tmp);
        return rc;
    }
    if (sync) {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            if (fsync(dfd))
                rc = SH_EIO;
            close(dfd);
        }
    }
    return rc;
}

int br_checkpoint_read(const char *dir, int shard, struct br_checkpoint *out)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/shard-%d.json", dir, shard) >= (int)sizeof(path))
        return SH_ETOOBIG;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? SH_ENOTFOUND : SH_EIO;
    char *buf = malloc(BR_CKPT_MAX_BYTES + 1);
    size_t len = 0;
    int rc = buf ? SH_OK : SH_ENOMEM;
    while (!rc) {
        ssize_t r = read(fd, buf + len, BR_CKPT_MAX_BYTES + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rc = SH_EIO;
        else if (r == 0)
            break;
        else if ((len += (size_t)r) > BR_CKPT_MAX_BYTES)
            rc = SH_ETOOBIG;
    }
    close(fd);
    if (!rc)
        rc = br_checkpoint_parse(buf, len, out);
    free(buf);
    return rc;
}
