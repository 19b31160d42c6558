/*
 * tests/fuzz/fuzz_cache.c: libFuzzer harness for the entity cache's event application and reads
 * (cache/apply.c, apply_member.c, json.c, shape.c, snapshot.c).
 *
 * The first byte picks the event name, the rest is its d, encoded in an envelope as the gateway
 * would; the cache applies it (no thread: ca__apply_chunk), then every read must answer 0 or one
 * of the documented codes with JSON that parses, and a snapshot of what is kept must load into
 * a fresh cache. The cache is made again every 256 inputs, so what it holds stays small.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache_int.h"
#include "lib/errors.h"
#include "lib/log.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static const char *const names[] = {
    "READY",
    "GUILD_CREATE",
    "GUILD_UPDATE",
    "GUILD_DELETE",
    "CHANNEL_CREATE",
    "CHANNEL_DELETE",
    "THREAD_CREATE",
    "THREAD_DELETE",
    "THREAD_LIST_SYNC",
    "THREAD_MEMBER_UPDATE",
    "GUILD_ROLE_CREATE",
    "GUILD_ROLE_DELETE",
    "GUILD_EMOJIS_UPDATE",
    "GUILD_STICKERS_UPDATE",
    "GUILD_MEMBER_ADD",
    "GUILD_MEMBER_UPDATE",
    "GUILD_MEMBER_REMOVE",
    "GUILD_MEMBERS_CHUNK",
    "MESSAGE_CREATE",
    "INTERACTION_CREATE",
    "VOICE_STATE_UPDATE",
    "PRESENCE_UPDATE",
    "USER_UPDATE",
    "TYPING_START",
};

static struct sh_buf snap;

static int put(void *ud, int shard, const void *data, size_t len)
{
    (void)ud;
    (void)shard;
    sh_buf_reset(&snap);
    return sh_buf_append(&snap, data, len);
}

static int get(void *ud, int shard, struct sh_buf *out)
{
    (void)ud;
    (void)shard;
    return snap.len ? sh_buf_append(out, snap.data, snap.len) : SH_ENOTFOUND;
}

static struct cfg_config cfg;
static const struct ca_snapshot_io io = {put, get, NULL};

static struct ca_cache *fresh(size_t max_bytes)
{
    cfg.cache = 1;
    cfg.cache_kinds = (1u << CFG_CACHE_KIND_COUNT_) - 1u;
    cfg.cache_max_bytes = max_bytes;
    struct ca_cache *c = NULL;
    char err[128];
    CHECK(ca_cache_new(&cfg, 2, &io, &c, err, sizeof err) == 0);
    return c;
}

/* Every read of the ids 1..3: an answer code, and JSON that parses on 0. */
static void read_all(struct ca_cache *c)
{
    struct sh_buf out;
    sh_buf_init(&out, 1 << 22);
    for (int w = CA_GUILD; w <= CA_PERMISSIONS; w++)
        for (uint64_t id = 1; id <= 3; id++) {
            struct ca_query q = {.what = w, .guild_id = id, .id = id, .channel_id = id % 2};
            sh_buf_reset(&out);
            int rc = ca_cache_read(c, &q, &out);
            CHECK(rc == 0 || rc == CA_NOT_CACHED || rc == CA_UNKNOWN || rc == CA_LOADING);
            if (rc == 0) {
                cJSON *j = cJSON_ParseWithLength(out.data, out.len);
                CHECK(j != NULL);
                cJSON_Delete(j);
            }
        }
    sh_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ca_cache *c;
    static unsigned runs;
    if (!c) {
        sh_log_level = SH_LOG_OFF;
        sh_buf_init(&snap, 1 << 24);
    }
    if (!c || ++runs % 256 == 0) {
        ca_cache_free(c);
        c = fresh(runs % 3 ? (size_t)1 << 20 : 4096);
    }
    if (size < 1)
        return 0;
    const char *t = names[data[0] % (sizeof names / sizeof names[0])];
    struct gw_chunk *ch = gw_chunk_new(1 << 20);
    CHECK(ch != NULL);
    if (gw_chunk_append(ch, data[0] >> 7, 2, t, strlen(t), runs, NULL, (const char *)data + 1,
                        size - 1, 0) == 0)
        ca__apply_chunk(c, ch);
    gw_chunk_free(ch);
    read_all(c);
    if (runs % 16 == 0 && ca_cache_snapshot(c, 0, 1000) == 0 && snap.len) {
        struct ca_cache *again = fresh((size_t)1 << 20);
        struct ca_snapshot_info info;
        int rc = ca_cache_load(again, 0, &info);
        CHECK(rc == 0);
        read_all(again);
        ca_cache_free(again);
    }
    return 0;
}
