/*
 * cache/snapshot.c: a shard's snapshot, written and read through struct ca_snapshot_io: zstd of
 * one JSON object {"v":1,"shard":N,"session_id":"...","s":S,"guilds":[...]} whose guilds are
 * GUILD_CREATE-shaped (members with their user, channels, threads, roles, emojis, stickers,
 * voice states, presences); loading applies each guild as a GUILD_CREATE would.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "cache/cache_int.h"
#include "lib/errors.h"
#include "lib/json.h"
#include "lib/log.h"
#include "lib/metrics.h"

#define SNAP_MAX_BYTES ((size_t)4 << 30) /* decompressed; larger is refused as corrupt */

static void count(const char *result)
{
    static struct sh_metric *m;
    if (!m)
        m = sh_metric_counter("shardhook_cache_snapshots_total",
                              "Entity cache snapshots written or loaded, by result", "result");
    sh_metric_add(m, 1, result);
}

/* The snapshot JSON of shard (read lock held). */
static int build(struct ca_cache *c, int shard, struct sh_buf *out)
{
    struct ca__shard *sh = &c->st.shards[shard];
    int rc = sh_buf_printf(out, "{\"v\":1,\"shard\":%d,\"session_id\":", shard);
    rc = rc ?: sh_json_quote(out, sh->session_id, strlen(sh->session_id), 0);
    rc = rc ?: sh_buf_printf(out, ",\"s\":%llu,\"guilds\":[", (unsigned long long)sh->s);
    uint64_t *keys = NULL;
    long n = rc ? 0 : ca__map_sorted_keys(&c->st.guilds, 0, 0, &keys);
    if (n < 0)
        return (int)n;
    for (long k = 0, w = 0; rc == 0 && k < n; k++) {
        const struct ca__guild *g = ca__map_get(&c->st.guilds, keys[k]);
        if (g->shard != shard)
            continue;
        rc = w++ ? sh_buf_append(out, ",", 1) : 0;
        rc = rc ?: ca__write_guild_full(&c->st, g, out);
    }
    free(keys);
    sh->changed = 0;
    return rc ?: sh_buf_append_str(out, "]}");
}

int ca__snapshot_write(struct ca_cache *c, int shard)
{
    if (!c->has_io || !c->io.put || shard < 0 || shard >= c->total)
        return 0;
    if (ca__lossy(c, shard)) { /* the last snapshot written stays: it is still consistent */
        static struct sh_log_limit lim;
        log_warn_limited(&lim,
                         "msg=\"cache snapshot held back: events of the shard were dropped "
                         "for the cache; its next session rebuilds it\" shard=%d",
                         shard);
        count("skipped");
        return 0;
    }
    struct sh_buf json;
    sh_buf_init(&json, SNAP_MAX_BYTES);
    pthread_rwlock_rdlock(&c->rw);
    int rc = build(c, shard, &json);
    pthread_rwlock_unlock(&c->rw);
    void *z = NULL;
    size_t zl = 0;
    if (rc == 0) {
        z = malloc(ZSTD_compressBound(json.len));
        zl = z ? ZSTD_compress(z, ZSTD_compressBound(json.len), json.data, json.len, 3) : 0;
        rc = !z || ZSTD_isError(zl) ? SH_ENOMEM : 0;
    }
    sh_buf_free(&json);
    if (rc == 0)
        rc = c->io.put(c->io.ud, shard, z, zl);
    free(z);
    count(rc == 0 ? "ok" : "error");
    if (rc < 0) {
        static struct sh_log_limit lim;
        log_warn_limited(&lim, "msg=\"cache snapshot not written\" shard=%d error=\"%s\"", shard,
                         sh_strerror(rc));
    }
    return rc;
}

int ca__snapshot_shards(struct ca_cache *c, int shard)
{
    if (shard >= 0)
        return ca__snapshot_write(c, shard);
    int first = 0;
    for (int i = 0; i < c->total; i++) {
        pthread_rwlock_rdlock(&c->rw);
        long long guilds = c->st.shards[i].guilds;
        pthread_rwlock_unlock(&c->rw);
        int rc = guilds > 0 ? ca__snapshot_write(c, i) : 0;
        if (rc < 0 && !first)
            first = rc;
    }
    return first;
}

/* Decompress and parse a snapshot; NULL when it is not one (*rc says why). */
static cJSON *open_snapshot(const struct sh_buf *z, int *rc)
{
    unsigned long long size = ZSTD_getFrameContentSize(z->data, z->len);
    *rc = SH_ECORRUPT;
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > SNAP_MAX_BYTES)
        return NULL;
    char *text = malloc(size ? size : 1);
    if (!text) {
        *rc = SH_ENOMEM;
        return NULL;
    }
    size_t got = ZSTD_decompress(text, size, z->data, z->len);
    cJSON *root = NULL;
    if (!ZSTD_isError(got) && got == size) {
        *rc = SH_EPARSE;
        root = cJSON_ParseWithLength(text, got);
    }
    free(text);
    return root;
}

/* Apply a parsed snapshot of shard (write lock taken here). */
static int apply(struct ca_cache *c, int shard, cJSON *root, struct ca_snapshot_info *info)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "v");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(root, "shard");
    const cJSON *sid = cJSON_GetObjectItemCaseSensitive(root, "session_id");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "s");
    cJSON *guilds = cJSON_GetObjectItemCaseSensitive(root, "guilds");
    if (!cJSON_IsNumber(v) || v->valueint != 1 || !cJSON_IsNumber(sh) || sh->valueint != shard ||
        !cJSON_IsNumber(s) || s->valuedouble < 0 || !cJSON_IsArray(guilds))
        return SH_EPARSE;
    memset(info, 0, sizeof *info);
    if (cJSON_IsString(sid))
        snprintf(info->session_id, sizeof info->session_id, "%s", sid->valuestring);
    info->s = (uint64_t)s->valuedouble;
    pthread_rwlock_wrlock(&c->rw);
    ca__store_forget_shard(&c->st, shard);
    cJSON *g;
    cJSON_ArrayForEach(g, guilds) if (cJSON_IsObject(g)) ca__apply_guild_create(c, shard, g);
    struct ca__shard *st = &c->st.shards[shard];
    snprintf(st->session_id, sizeof st->session_id, "%s", info->session_id);
    st->s = info->s;
    st->changed = 0;
    pthread_rwlock_unlock(&c->rw);
    ca__clear_lossy(c, shard, UINT64_MAX);
    atomic_fetch_add(&c->dedup_gen, 1);
    return 0;
}

int ca_cache_load(struct ca_cache *c, int shard, struct ca_snapshot_info *info)
{
    if (!c->has_io || !c->io.get || shard < 0 || shard >= c->total)
        return SH_ENOTFOUND;
    struct sh_buf z;
    sh_buf_init(&z, SNAP_MAX_BYTES);
    int rc = c->io.get(c->io.ud, shard, &z);
    cJSON *root = rc == 0 ? open_snapshot(&z, &rc) : NULL;
    sh_buf_free(&z);
    if (root) {
        rc = apply(c, shard, root, info);
        cJSON_Delete(root);
    }
    if (rc == SH_ENOTFOUND)
        return rc;
    count(rc == 0 ? "loaded" : "bad");
    if (rc < 0)
        log_warn("msg=\"cache snapshot ignored\" shard=%d error=\"%s\"", shard, sh_strerror(rc));
    else
        log_info("msg=\"cache snapshot loaded\" shard=%d s=%llu", shard,
                 (unsigned long long)info->s);
    return rc;
}
