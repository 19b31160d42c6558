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
    if (atomic_load(&c->snap_pending[shard])) { /* the one stored is all there is yet */
        count("skipped");
        return 0;
    }
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

/* The fields before "guilds" of a parsed snapshot or of its header, checked against shard. */
static int header_of(const cJSON *root, int shard, struct ca_snapshot_info *info)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "v");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(root, "shard");
    const cJSON *sid = cJSON_GetObjectItemCaseSensitive(root, "session_id");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "s");
    if (!cJSON_IsNumber(v) || v->valueint != 1 || !cJSON_IsNumber(sh) || sh->valueint != shard ||
        !cJSON_IsNumber(s) || s->valuedouble < 0 || s->valuedouble > 9007199254740992.0)
        return SH_EPARSE;
    memset(info, 0, sizeof *info);
    if (cJSON_IsString(sid))
        snprintf(info->session_id, sizeof info->session_id, "%s", sid->valuestring);
    info->s = (uint64_t)s->valuedouble;
    return 0;
}

/*
 * Read only the head of a snapshot (the writer puts "v", "shard", "session_id" and "s" before
 * "guilds"): the caller learns where the shard resumes without decompressing or parsing the
 * guilds, which the cache thread does later. 0, SH_ECORRUPT, SH_EPARSE or SH_ENOMEM.
 */
static int read_header(const struct sh_buf *z, int shard, struct ca_snapshot_info *info)
{
    unsigned long long size = ZSTD_getFrameContentSize(z->data, z->len);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > SNAP_MAX_BYTES)
        return SH_ECORRUPT;
    char head[1024];
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    if (!dc)
        return SH_ENOMEM;
    ZSTD_inBuffer in = {z->data, z->len, 0};
    ZSTD_outBuffer out = {head, sizeof head - 1, 0};
    size_t r = 1;
    while (r != 0 && out.pos < out.size && in.pos < in.size) {
        r = ZSTD_decompressStream(dc, &out, &in);
        if (ZSTD_isError(r))
            break;
    }
    ZSTD_freeDCtx(dc);
    if (ZSTD_isError(r))
        return SH_ECORRUPT;
    const char *g = memmem(head, out.pos, ",\"guilds\":", 10);
    if (!g)
        return SH_EPARSE;
    size_t n = (size_t)(g - head);
    head[n] = '}'; /* the head alone, closed: {"v":1,"shard":N,"session_id":"...","s":S} */
    cJSON *root = cJSON_ParseWithLength(head, n + 1);
    int rc = root ? header_of(root, shard, info) : SH_EPARSE;
    cJSON_Delete(root);
    return rc;
}

/* 1 when a forget of the load's shard came while it was being applied (c->lock not held). */
static int cancelled(struct ca_cache *c)
{
    pthread_mutex_lock(&c->lock);
    int k = c->load_cancelled;
    pthread_mutex_unlock(&c->lock);
    return k;
}

/*
 * Apply a snapshot of shard (cache thread): its guilds replace what the shard held, one guild
 * per write lock so readers get in between (until the last one, the shard's other guilds answer
 * CA_LOADING). A forget of the shard meanwhile undoes what was applied.
 */
static int apply(struct ca_cache *c, int shard, cJSON *root, struct ca_snapshot_info *info)
{
    cJSON *guilds = cJSON_GetObjectItemCaseSensitive(root, "guilds");
    if (header_of(root, shard, info) || !cJSON_IsArray(guilds))
        return SH_EPARSE;
    pthread_rwlock_wrlock(&c->rw);
    ca__store_forget_shard(&c->st, shard);
    pthread_rwlock_unlock(&c->rw);
    int gone = 0;
    cJSON *g;
    cJSON_ArrayForEach(g, guilds)
    {
        if (!cJSON_IsObject(g))
            continue;
        pthread_rwlock_wrlock(&c->rw);
        ca__apply_guild_create(c, shard, g);
        pthread_rwlock_unlock(&c->rw);
        if ((gone = cancelled(c)))
            break;
    }
    pthread_rwlock_wrlock(&c->rw);
    struct ca__shard *st = &c->st.shards[shard];
    if (gone || cancelled(c)) {
        ca__store_forget_shard(&c->st, shard);
        memset(st, 0, sizeof *st);
        ca__store_check_full(&c->st);
    } else {
        snprintf(st->session_id, sizeof st->session_id, "%s", info->session_id);
        st->s = info->s;
        st->changed = 0;
    }
    pthread_rwlock_unlock(&c->rw);
    ca__clear_lossy(c, shard, UINT64_MAX);
    atomic_fetch_add(&c->dedup_gen, 1);
    return 0;
}

/* Apply one load taken from the queue and account for it. */
static void apply_load(struct ca_cache *c, struct ca__load *l)
{
    struct ca_snapshot_info info;
    int rc;
    cJSON *root = open_snapshot(&l->z, &rc);
    if (root) {
        rc = apply(c, l->shard, root, &info);
        cJSON_Delete(root);
    }
    pthread_mutex_lock(&c->lock);
    int more = c->load_cancelled; /* forgotten meanwhile: nothing of it stays */
    c->applying = -1;
    for (struct ca__load *q = c->loads; q && !more; q = q->next)
        more = q->shard == l->shard;
    if (!more || c->load_cancelled)
        atomic_store(&c->snap_pending[l->shard], 0);
    c->load_cancelled = 0;
    atomic_fetch_sub(&c->n_loads, 1);
    pthread_mutex_unlock(&c->lock);
    count(rc == 0 ? "loaded" : "bad");
    if (rc < 0)
        log_warn("msg=\"cache snapshot ignored\" shard=%d error=\"%s\"", l->shard, sh_strerror(rc));
    else
        log_info("msg=\"cache snapshot loaded\" shard=%d s=%llu", l->shard,
                 (unsigned long long)info.s);
}

void ca__apply_loads(struct ca_cache *c, uint64_t before)
{
    for (;;) {
        pthread_mutex_lock(&c->lock);
        struct ca__load *l = c->loads;
        if (l && l->at < before) {
            if (!(c->loads = l->next))
                c->loads_tail = &c->loads;
            c->applying = l->shard;
            c->load_cancelled = 0;
        } else {
            l = NULL;
        }
        pthread_mutex_unlock(&c->lock);
        if (!l)
            return;
        apply_load(c, l);
        sh_buf_free(&l->z);
        free(l);
    }
}

void ca__drop_loads(struct ca_cache *c, int shard)
{
    for (struct ca__load **p = &c->loads; *p;) {
        struct ca__load *l = *p;
        if (l->shard != shard) {
            p = &l->next;
            continue;
        }
        *p = l->next;
        sh_buf_free(&l->z);
        free(l);
        atomic_fetch_sub(&c->n_loads, 1);
    }
    c->loads_tail = &c->loads;
    while (*c->loads_tail)
        c->loads_tail = &(*c->loads_tail)->next;
    if (c->applying == shard)
        c->load_cancelled = 1;
    else
        atomic_store(&c->snap_pending[shard], 0);
}

void ca__free_loads(struct ca_cache *c)
{
    for (struct ca__load *l = c->loads, *nx; l; l = nx) {
        nx = l->next;
        sh_buf_free(&l->z);
        free(l);
    }
    c->loads = NULL;
    c->loads_tail = &c->loads;
    atomic_store(&c->n_loads, 0);
}

int ca_cache_load(struct ca_cache *c, int shard, struct ca_snapshot_info *info)
{
    if (!c->has_io || !c->io.get || shard < 0 || shard >= c->total)
        return SH_ENOTFOUND;
    struct ca__load *l = calloc(1, sizeof *l);
    if (!l)
        return SH_ENOMEM;
    l->shard = shard;
    sh_buf_init(&l->z, SNAP_MAX_BYTES);
    int rc = c->io.get(c->io.ud, shard, &l->z);
    if (rc == 0)
        rc = read_header(&l->z, shard, info);
    if (rc) {
        sh_buf_free(&l->z);
        free(l);
        if (rc == SH_ENOTFOUND)
            return rc;
        count("bad");
        log_warn("msg=\"cache snapshot ignored\" shard=%d error=\"%s\"", shard, sh_strerror(rc));
        return rc;
    }
    pthread_mutex_lock(&c->lock);
    l->at = c->pushed; /* before every chunk pushed from now on: the shard's resumed events */
    *c->loads_tail = l;
    c->loads_tail = &l->next;
    atomic_fetch_add(&c->n_loads, 1);
    atomic_store(&c->snap_pending[shard], 1);
    int started = c->started;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    if (!started)
        ca__apply_loads(c, UINT64_MAX); /* no cache thread yet: apply it here */
    return 0;
}
