/*
 * tests/unit/test_cache.c: the entity cache (cache/cache.h) fed real envelopes through chunks,
 * asserting what ca_cache_read answers: guilds, channels, threads, roles, emojis, members,
 * voice states, users, permissions, READY dropping stale guilds, loading guilds, disabled
 * kinds, max_bytes, snapshots round-tripped through an in-memory store, bad input.
 */
#include <cjson/cJSON.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache.h"
#include "lib/errors.h"
#include "lib/metrics.h"
#include "tests/unit/test.h"

#define ALL_KINDS ((1u << CFG_CACHE_KIND_COUNT_) - 1u)

/* An in-memory snapshot store: one slot per shard. */
struct mem_io {
    struct sh_buf snap[4];
    int puts;
};

static int mem_put(void *ud, int shard, const void *data, size_t len)
{
    struct mem_io *m = ud;
    sh_buf_reset(&m->snap[shard]);
    m->puts++;
    return sh_buf_append(&m->snap[shard], data, len);
}

static int mem_get(void *ud, int shard, struct sh_buf *out)
{
    struct mem_io *m = ud;
    if (!m->snap[shard].len)
        return SH_ENOTFOUND;
    return sh_buf_append(out, m->snap[shard].data, m->snap[shard].len);
}

static struct mem_io mem;
static struct cfg_config cfg;
static uint64_t seq;

static int no_start; /* set: new_cache leaves the thread unstarted */

static struct ca_cache *new_cache(unsigned kinds, size_t max_bytes)
{
    for (int i = 0; i < 4; i++) {
        sh_buf_free(&mem.snap[i]);
        sh_buf_init(&mem.snap[i], 1 << 24);
    }
    mem.puts = 0;
    memset(&cfg, 0, sizeof cfg);
    cfg.cache = 1;
    cfg.cache_kinds = kinds;
    cfg.cache_max_bytes = max_bytes;
    struct ca_snapshot_io io = {mem_put, mem_get, &mem};
    struct ca_cache *c = NULL;
    char err[128];
    if (ca_cache_new(&cfg, 2, &io, &c, err, sizeof err) < 0 || (!no_start && ca_cache_start(c) < 0))
        return NULL;
    seq = 0;
    return c;
}

/* Push one event of shard as the gateway would, and wait until it is applied. */
static void feed(struct ca_cache *c, int shard, const char *t, const char *d)
{
    struct gw_chunk *ch = gw_chunk_new(1 << 22);
    struct gw_key k = {"sess", seq, 0};
    gw_chunk_append(ch, shard, 2, t, strlen(t), ++seq, &k, d, strlen(d), 0);
    if (!strcmp(t, "READY")) {
        struct gw_session s = {.event = 0, .session_id = "sess-new"};
        gw_chunk_set_session(ch, &s);
    }
    ca_cache_push(c, ch);
    ca_cache_snapshot(c, -1, 5000); /* returns once everything pushed is applied */
}

static char got[1 << 16];

/* Read q into got; returns the answer code. */
static int rd(struct ca_cache *c, enum ca_what w, uint64_t gid, uint64_t id)
{
    struct ca_query q = {.what = w, .guild_id = gid, .id = id, .limit = 1000};
    struct sh_buf b;
    sh_buf_init(&b, sizeof got - 1);
    int rc = ca_cache_read(c, &q, &b);
    memcpy(got, b.data ? b.data : "", b.len);
    got[b.len] = 0;
    sh_buf_free(&b);
    return rc;
}

/* Wait until guild gid's shard's snapshot is applied: reads say CA_LOADING meanwhile, never
   CA_UNKNOWN. 1 once the guild reads, 0 otherwise. */
static int wait_loaded(struct ca_cache *c, uint64_t gid)
{
    for (int i = 0; i < 5000; i++) {
        int rc = rd(c, CA_GUILD, gid, 0);
        if (rc == 0)
            return 1;
        if (rc != CA_LOADING)
            return 0;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int json_eq(const char *a, const char *b)
{
    cJSON *x = cJSON_Parse(a), *y = cJSON_Parse(b);
    int eq = x && y && cJSON_Compare(x, y, 1);
    if (!eq)
        fprintf(stderr, "  got:    %s\n  wanted: %s\n", a, b);
    cJSON_Delete(x);
    cJSON_Delete(y);
    return eq;
}

#define ASSERT_READ(c, w, gid, id, want)                                                           \
    do {                                                                                           \
        ASSERT_EQ(rd((c), (w), (gid), (id)), 0);                                                   \
        ASSERT(json_eq(got, (want)));                                                              \
    } while (0)

#define USER1 "{\"id\":\"11\",\"username\":\"ann\",\"global_name\":null,\"avatar\":null}"
#define USER2 "{\"id\":\"12\",\"username\":\"bob\",\"global_name\":\"Bob\",\"avatar\":\"ab\"}"
#define MEMBER1                                                                                    \
    "{\"user\":" USER1 ",\"nick\":null,\"avatar\":null,\"roles\":[\"200\"],"                       \
    "\"joined_at\":\"2020-01-01T00:00:00+00:00\",\"premium_since\":null,\"deaf\":false,"           \
    "\"mute\":false,\"flags\":0,\"pending\":false,\"communication_disabled_until\":null}"
#define CHAN1                                                                                      \
    "{\"id\":\"300\",\"type\":0,\"name\":\"general\",\"position\":0,\"parent_id\":null,"           \
    "\"topic\":null,\"nsfw\":false,\"rate_limit_per_user\":0,"                                     \
    "\"permission_overwrites\":[{\"id\":\"100\",\"type\":0,\"allow\":\"0\",\"deny\":\"1024\"},"    \
    "{\"id\":\"200\",\"type\":0,\"allow\":\"1024\",\"deny\":\"0\"}]}"
#define ROLE_EVERYONE                                                                              \
    "{\"id\":\"100\",\"name\":\"@everyone\",\"permissions\":\"1024\",\"position\":0}"
#define ROLE_MOD                                                                                   \
    "{\"id\":\"200\",\"name\":\"mod\",\"permissions\":\"8192\",\"position\":1,\"hoist\":false,"    \
    "\"color\":0,\"icon\":null}"
#define GUILD1                                                                                     \
    "{\"id\":\"100\",\"name\":\"G\",\"owner_id\":\"12\",\"icon\":null,\"member_count\":2,"         \
    "\"joined_at\":\"2020-01-01T00:00:00+00:00\",\"large\":false,\"unavailable\":false,"           \
    "\"roles\":[" ROLE_MOD "," ROLE_EVERYONE "],\"emojis\":[{\"id\":\"400\",\"name\":\"e\"}],"     \
    "\"stickers\":[],\"channels\":[" CHAN1 "],"                                                    \
    "\"threads\":[{\"id\":\"301\",\"guild_id\":\"100\",\"parent_id\":\"300\",\"type\":11,"         \
    "\"name\":\"t\"}],\"members\":[" MEMBER1 "],\"voice_states\":[{\"user_id\":\"11\","            \
    "\"channel_id\":\"300\",\"session_id\":\"v\",\"deaf\":false,\"mute\":false}],"                 \
    "\"presences\":[]}"

/* What the allocator really takes for n bytes (its usable size and its 8-byte header). */
static size_t heap_chunk(size_t n)
{
    void *p = malloc(n);
    size_t u = p ? malloc_usable_size(p) + 8 : 0;
    free(p);
    return u;
}

static struct ca_cache *with_guild(unsigned kinds)
{
    struct ca_cache *c = new_cache(kinds, 1 << 26);
    if (c)
        feed(c, 0, "GUILD_CREATE", GUILD1);
    return c;
}

TEST(guild_create_answers_rest_shapes)
{
    struct ca_cache *c = with_guild(ALL_KINDS);
    ASSERT(c);
    ASSERT_READ(c, CA_GUILD, 100, 0,
                "{\"id\":\"100\",\"name\":\"G\",\"owner_id\":\"12\",\"icon\":null,"
                "\"roles\":[" ROLE_EVERYONE "," ROLE_MOD "],\"emojis\":[{\"id\":\"400\","
                "\"name\":\"e\"}],\"stickers\":[]}");
    ASSERT_READ(c, CA_CHANNELS, 100, 0,
                "[{\"id\":\"300\",\"guild_id\":\"100\",\"type\":0,\"name\":\"general\","
                "\"position\":0,\"parent_id\":null,\"topic\":null,\"nsfw\":false,"
                "\"rate_limit_per_user\":0,\"permission_overwrites\":[{\"id\":\"100\","
                "\"type\":0,\"allow\":\"0\",\"deny\":\"1024\"},{\"id\":\"200\",\"type\":0,"
                "\"allow\":\"1024\",\"deny\":\"0\"}]}]");
    ASSERT_READ(c, CA_CHANNEL, 0, 301,
                "{\"id\":\"301\",\"guild_id\":\"100\",\"parent_id\":\"300\",\"type\":11,"
                "\"name\":\"t\"}");
    ASSERT_READ(c, CA_MEMBER, 100, 11, MEMBER1);
    ASSERT_READ(c, CA_USER, 0, 11, USER1);
    ASSERT_READ(c, CA_VOICE_STATE, 100, 11,
                "{\"guild_id\":\"100\",\"user_id\":\"11\",\"channel_id\":\"300\","
                "\"session_id\":\"v\",\"deaf\":false,\"mute\":false}");
    ASSERT_READ(c, CA_ROLES, 100, 0, "[" ROLE_EVERYONE "," ROLE_MOD "]");
    ASSERT_READ(c, CA_EMOJIS, 100, 0, "[{\"id\":\"400\",\"name\":\"e\"}]");
    ASSERT_READ(c, CA_GUILD_LIST, 0, 0,
                "{\"guilds\":[{\"id\":\"100\",\"name\":\"G\",\"shard\":0,\"member_count\":2}]}");
    ASSERT_EQ(ca_cache_guild_shard(c, 100), 0);
    ASSERT_EQ(ca_cache_guild_shard(c, 999), -1);
    ASSERT_EQ(rd(c, CA_MEMBER, 100, 99), CA_UNKNOWN);
    ASSERT_EQ(rd(c, CA_GUILD, 999, 0), CA_UNKNOWN);
    ASSERT_EQ(rd(c, CA_CHANNEL, 0, 999), CA_UNKNOWN);
    ASSERT_EQ(rd(c, CA_USER, 0, 999), CA_UNKNOWN);
    ca_cache_free(c);
}

TEST(partial_updates_merge_and_deletes_remove)
{
    struct ca_cache *c = with_guild(ALL_KINDS);
    ASSERT(c);
    feed(c, 0, "GUILD_UPDATE", "{\"id\":\"100\",\"name\":\"G2\",\"owner_id\":\"12\"}");
    ASSERT_EQ(rd(c, CA_GUILD, 100, 0), 0);
    ASSERT_CONTAINS(got, "\"name\":\"G2\"");
    ASSERT_CONTAINS(got, "\"icon\":null");
    feed(c, 0, "CHANNEL_UPDATE",
         "{\"id\":\"300\",\"guild_id\":\"100\",\"type\":0,\"name\":\"renamed\"}");
    ASSERT_READ(c, CA_CHANNEL, 0, 300,
                "{\"id\":\"300\",\"guild_id\":\"100\",\"type\":0,\"name\":\"renamed\"}");
    feed(c, 0, "CHANNEL_PINS_UPDATE",
         "{\"guild_id\":\"100\",\"channel_id\":\"300\",\"last_pin_timestamp\":\"2024-01-01\"}");
    ASSERT_READ(c, CA_CHANNEL, 0, 300,
                "{\"id\":\"300\",\"guild_id\":\"100\",\"type\":0,\"name\":\"renamed\","
                "\"last_pin_timestamp\":\"2024-01-01\"}");
    feed(c, 0, "CHANNEL_CREATE", "{\"id\":\"302\",\"guild_id\":\"100\",\"type\":2}");
    feed(c, 0, "CHANNEL_DELETE", "{\"id\":\"300\",\"guild_id\":\"100\",\"type\":0}");
    ASSERT_READ(c, CA_CHANNELS, 100, 0, "[{\"id\":\"302\",\"guild_id\":\"100\",\"type\":2}]");
    ASSERT_EQ(rd(c, CA_CHANNEL, 0, 300), CA_UNKNOWN);
    feed(
        c, 0, "GUILD_ROLE_UPDATE",
        "{\"guild_id\":\"100\",\"role\":{\"id\":\"200\",\"name\":\"mods\",\"permissions\":\"0\"}}");
    feed(c, 0, "GUILD_ROLE_CREATE", "{\"guild_id\":\"100\",\"role\":{\"id\":\"201\"}}");
    feed(c, 0, "GUILD_ROLE_DELETE", "{\"guild_id\":\"100\",\"role_id\":\"100\"}");
    ASSERT_READ(c, CA_ROLES, 100, 0,
                "[{\"id\":\"200\",\"name\":\"mods\",\"permissions\":\"0\"},{\"id\":\"201\"}]");
    feed(c, 0, "GUILD_EMOJIS_UPDATE", "{\"guild_id\":\"100\",\"emojis\":[{\"id\":\"401\"}]}");
    ASSERT_READ(c, CA_EMOJIS, 100, 0, "[{\"id\":\"401\"}]");
    feed(c, 0, "GUILD_STICKERS_UPDATE",
         "{\"guild_id\":\"100\",\"stickers\":[{\"id\":\"500\",\"guild_id\":\"100\"}]}");
    ASSERT_EQ(rd(c, CA_GUILD, 100, 0), 0);
    ASSERT_CONTAINS(got, "\"stickers\":[{\"id\":\"500\",\"guild_id\":\"100\"}]");
    feed(c, 0, "GUILD_DELETE", "{\"id\":\"100\"}");
    ASSERT_EQ(rd(c, CA_GUILD, 100, 0), CA_UNKNOWN);
    ASSERT_EQ(ca_cache_guild_shard(c, 100), -1);
    ASSERT_EQ(rd(c, CA_CHANNEL, 0, 302), CA_UNKNOWN);
    ca_cache_free(c);
}

TEST(members_add_update_remove_chunk_and_count)
{
    struct ca_cache *c = with_guild(ALL_KINDS);
    ASSERT(c);
    feed(c, 0, "GUILD_MEMBER_ADD",
         "{\"guild_id\":\"100\",\"user\":" USER2 ",\"roles\":[],\"nick\":\"b\",\"deaf\":false,"
         "\"mute\":true,\"joined_at\":\"2021-01-01T00:00:00+00:00\"}");
    ASSERT_READ(c, CA_MEMBER, 100, 12,
                "{\"user\":" USER2 ",\"roles\":[],\"nick\":\"b\",\"deaf\":false,\"mute\":true,"
                "\"joined_at\":\"2021-01-01T00:00:00+00:00\"}");
    feed(c, 0, "GUILD_MEMBER_UPDATE",
         "{\"guild_id\":\"100\",\"user\":{\"id\":\"12\",\"username\":\"bobby\"},"
         "\"roles\":[\"200\"],\"nick\":null}");
    ASSERT_READ(c, CA_MEMBER, 100, 12,
                "{\"user\":{\"id\":\"12\",\"username\":\"bobby\",\"global_name\":\"Bob\","
                "\"avatar\":\"ab\"},\"roles\":[\"200\"],\"nick\":null,\"deaf\":false,"
                "\"mute\":true,\"joined_at\":\"2021-01-01T00:00:00+00:00\"}");
    ASSERT_EQ(rd(c, CA_GUILD_LIST, 0, 0), 0);
    ASSERT_CONTAINS(got, "\"member_count\":3");
    struct ca_query q = {.what = CA_MEMBERS, .guild_id = 100, .after = 11, .limit = 5};
    struct sh_buf b;
    sh_buf_init(&b, 1 << 16);
    ASSERT_EQ(ca_cache_read(c, &q, &b), 0);
    ASSERT(b.len > 10 && !strncmp(b.data, "[{", 2) && strstr(b.data, "bobby") &&
           !memmem(b.data, b.len, "\"ann\"", 5));
    sh_buf_free(&b);
    feed(c, 0, "USER_UPDATE", "{\"id\":\"12\",\"avatar\":null,\"global_name\":\"B\"}");
    ASSERT_READ(c, CA_USER, 0, 12, /* back to a default, and away from one: both kept */
                "{\"id\":\"12\",\"username\":\"bobby\",\"global_name\":\"B\",\"avatar\":null}");
    feed(c, 0, "GUILD_MEMBER_REMOVE", "{\"guild_id\":\"100\",\"user\":" USER1 "}");
    ASSERT_EQ(rd(c, CA_MEMBER, 100, 11), CA_UNKNOWN);
    ASSERT_READ(c, CA_USER, 0, 11, USER1); /* the user stays known */
    feed(c, 0, "GUILD_MEMBERS_CHUNK",
         "{\"guild_id\":\"100\",\"chunk_index\":0,\"chunk_count\":1,\"members\":[{\"user\":"
         "{\"id\":\"13\",\"username\":\"cy\"},\"roles\":[],\"pending\":true}]}");
    ASSERT_READ(c, CA_MEMBER, 100, 13,
                "{\"user\":{\"id\":\"13\",\"username\":\"cy\"},\"roles\":[],\"pending\":true}");
    ASSERT_READ(c, CA_GUILD_LIST, 0, 0,
                "{\"guilds\":[{\"id\":\"100\",\"name\":\"G\",\"shard\":0,\"member_count\":2}]}");
    ca_cache_free(c);
}

TEST(message_and_interaction_members)
{
    struct ca_cache *c = with_guild(ALL_KINDS);
    ASSERT(c);
    const char *msg = "{\"id\":\"900\",\"channel_id\":\"300\",\"guild_id\":\"100\",\"content\":"
                      "\"hi \\\"member\\\": {}\",\"author\":{\"id\":\"14\",\"username\":\"dee\"},"
                      "\"member\":{\"roles\":[\"200\"],\"nick\":\"D\",\"deaf\":false},"
                      "\"embeds\":[{\"member\":1}]}";
    feed(c, 0, "MESSAGE_CREATE", msg);
    ASSERT_READ(c, CA_MEMBER, 100, 14,
                "{\"user\":{\"id\":\"14\",\"username\":\"dee\"},\"roles\":[\"200\"],"
                "\"nick\":\"D\",\"deaf\":false}");
    feed(c, 0, "CHANNEL_UPDATE",
         "{\"id\":\"300\",\"guild_id\":\"100\",\"type\":0,\"last_message_id\":null}");
    feed(c, 0, "THREAD_UPDATE",
         "{\"id\":\"301\",\"guild_id\":\"100\",\"type\":11,\"last_message_id\":\"5\","
         "\"message_count\":1,\"total_message_sent\":1}");
    feed(c, 0, "MESSAGE_CREATE", msg); /* the same author and member: the channel still moves */
    ASSERT_READ(c, CA_CHANNEL, 0, 300,
                "{\"id\":\"300\",\"guild_id\":\"100\",\"type\":0,\"last_message_id\":\"900\"}");
    for (int i = 0; i < 2; i++) /* a replay counts once */
        feed(c, 0, "MESSAGE_CREATE",
             "{\"id\":\"902\",\"channel_id\":\"301\",\"guild_id\":\"100\",\"author\":"
             "{\"id\":\"14\",\"username\":\"dee\"}}");
    ASSERT_READ(c, CA_CHANNEL, 0, 301,
                "{\"id\":\"301\",\"guild_id\":\"100\",\"type\":11,\"last_message_id\":\"902\","
                "\"message_count\":2,\"total_message_sent\":2}");
    feed(c, 0, "GUILD_MEMBER_REMOVE", "{\"guild_id\":\"100\",\"user\":{\"id\":\"14\"}}");
    feed(c, 0, "MESSAGE_CREATE", msg); /* the same bytes again after a removal: kept again */
    ASSERT_EQ(rd(c, CA_MEMBER, 100, 14), 0);
    feed(c, 0, "MESSAGE_CREATE",
         "{\"id\":\"901\",\"channel_id\":\"1\",\"author\":{\"id\":\"15\",\"username\":\"dm\"}}");
    ASSERT_READ(c, CA_USER, 0, 15, "{\"id\":\"15\",\"username\":\"dm\"}");
    feed(c, 0, "INTERACTION_CREATE",
         "{\"id\":\"1\",\"type\":2,\"guild_id\":\"100\",\"member\":{\"user\":{\"id\":\"16\","
         "\"username\":\"int\"},\"roles\":[],\"permissions\":\"8\"}}");
    ASSERT_READ(c, CA_MEMBER, 100, 16, /* without the interaction's own "permissions" */
                "{\"user\":{\"id\":\"16\",\"username\":\"int\"},\"roles\":[]}");
    ca_cache_free(c);
}

TEST(voice_join_move_leave)
{
    struct ca_cache *c = with_guild(ALL_KINDS);
    ASSERT(c);
    feed(c, 0, "VOICE_STATE_UPDATE",
         "{\"guild_id\":\"100\",\"user_id\":\"12\",\"channel_id\":\"300\",\"session_id\":\"a\","
         "\"member\":{\"user\":" USER2 ",\"roles\":[]}}");
    ASSERT_READ(c, CA_VOICE_STATE, 100, 12,
                "{\"guild_id\":\"100\",\"user_id\":\"12\",\"channel_id\":\"300\","
                "\"session_id\":\"a\"}");
    ASSERT_EQ(rd(c, CA_MEMBER, 100, 12), 0);
    feed(c, 0, "VOICE_STATE_UPDATE",
         "{\"guild_id\":\"100\",\"user_id\":\"12\",\"channel_id\":\"302\",\"session_id\":\"a\"}");
    ASSERT_EQ(rd(c, CA_VOICE_STATES, 100, 0), 0);
    ASSERT_CONTAINS(got, "\"channel_id\":\"302\"");
    feed(c, 0, "VOICE_STATE_UPDATE",
         "{\"guild_id\":\"100\",\"user_id\":\"12\",\"channel_id\":null,\"session_id\":\"a\"}");
    ASSERT_EQ(rd(c, CA_VOICE_STATE, 100, 12), CA_UNKNOWN);
    ASSERT_READ(c, CA_VOICE_STATES, 100, 0,
                "[{\"guild_id\":\"100\",\"user_id\":\"11\",\"channel_id\":\"300\","
                "\"session_id\":\"v\",\"deaf\":false,\"mute\":false}]");
    ca_cache_free(c);
}

TEST(threads_and_thread_list_sync)
{
    struct ca_cache *c = with_guild(ALL_KINDS);
    ASSERT(c);
    feed(c, 0, "THREAD_CREATE",
         "{\"id\":\"305\",\"guild_id\":\"100\",\"parent_id\":\"300\",\"type\":11,"
         "\"newly_created\":true,\"member\":{\"id\":\"305\",\"user_id\":\"1\",\"flags\":0}}");
    ASSERT_READ(c, CA_THREADS, 100, 0,
                "{\"threads\":[{\"guild_id\":\"100\",\"id\":\"301\",\"parent_id\":\"300\","
                "\"type\":11,\"name\":\"t\"},{\"guild_id\":\"100\",\"id\":\"305\","
                "\"parent_id\":\"300\",\"type\":11}],\"members\":[{\"id\":\"305\","
                "\"user_id\":\"1\",\"flags\":0}]}");
    feed(c, 0, "THREAD_LIST_SYNC",
         "{\"guild_id\":\"100\",\"channel_ids\":[\"300\"],\"threads\":[{\"id\":\"306\","
         "\"guild_id\":\"100\",\"parent_id\":\"300\",\"type\":11}],\"members\":[]}");
    ASSERT_READ(c, CA_THREADS, 100, 0,
                "{\"threads\":[{\"guild_id\":\"100\",\"id\":\"306\",\"parent_id\":\"300\","
                "\"type\":11}],\"members\":[]}");
    ASSERT_EQ(rd(c, CA_CHANNEL, 0, 301), CA_UNKNOWN);
    feed(c, 0, "THREAD_DELETE",
         "{\"id\":\"306\",\"guild_id\":\"100\",\"parent_id\":\"300\",\"type\":11}");
    ASSERT_READ(c, CA_THREADS, 100, 0, "{\"threads\":[],\"members\":[]}");
    ca_cache_free(c);
}

TEST(permissions_from_roles_and_overwrites)
{
    struct ca_cache *c = with_guild(ALL_KINDS);
    ASSERT(c);
    struct ca_query q = {.what = CA_PERMISSIONS, .guild_id = 100, .id = 11};
    struct sh_buf b;
    sh_buf_init(&b, 1 << 16);
    ASSERT_EQ(ca_cache_read(c, &q, &b), 0); /* guild level: @everyone 1024 | mod 8192 */
    ASSERT_CONTAINS(b.data, "\"permissions\":\"9216\"");
    ASSERT_CONTAINS(b.data, "\"MANAGE_MESSAGES\"");
    sh_buf_reset(&b);
    q.channel_id = 301; /* a thread: its parent's overwrites (deny @everyone, allow mod) */
    ASSERT_EQ(ca_cache_read(c, &q, &b), 0);
    ASSERT_CONTAINS(b.data, "\"VIEW_CHANNEL\"");
    sh_buf_reset(&b);
    q.channel_id = 999;
    ASSERT_EQ(ca_cache_read(c, &q, &b), CA_UNKNOWN);
    q.id = 12; /* the owner, not a cached member */
    ASSERT_EQ(ca_cache_read(c, &q, &b), CA_UNKNOWN);
    sh_buf_free(&b);
    ca_cache_free(c);
}

TEST(ready_drops_stale_guilds_and_lists_loading)
{
    struct ca_cache *c = with_guild(ALL_KINDS);
    ASSERT(c);
    feed(c, 1, "GUILD_CREATE", "{\"id\":\"101\",\"name\":\"other shard\"}");
    feed(c, 0, "READY",
         "{\"v\":10,\"user\":{\"id\":\"1\",\"username\":\"bot\",\"bot\":true},\"session_id\":"
         "\"x\",\"guilds\":[{\"id\":\"102\",\"unavailable\":true}]}");
    ASSERT_EQ(rd(c, CA_GUILD, 100, 0), CA_UNKNOWN);
    ASSERT_EQ(rd(c, CA_CHANNEL, 0, 300), CA_UNKNOWN);
    ASSERT_EQ(rd(c, CA_GUILD, 102, 0), CA_LOADING);
    ASSERT_EQ(rd(c, CA_MEMBERS, 102, 0), CA_LOADING);
    ASSERT_EQ(rd(c, CA_GUILD, 101, 0), 0); /* another shard's guild stays */
    ASSERT_EQ(rd(c, CA_USER, 0, 1), 0);
    feed(c, 0, "GUILD_CREATE", "{\"id\":\"102\",\"name\":\"back\"}");
    ASSERT_EQ(rd(c, CA_GUILD, 102, 0), 0);
    feed(c, 0, "GUILD_DELETE", "{\"id\":\"102\",\"unavailable\":true}");
    ASSERT_EQ(rd(c, CA_GUILD, 102, 0), CA_LOADING);
    ASSERT_READ(c, CA_GUILD_LIST, 0, 0, /* only available guilds are listed */
                "{\"guilds\":[{\"id\":\"101\",\"name\":\"other shard\",\"shard\":1,"
                "\"member_count\":0}]}");
    ASSERT_EQ(rd(c, CA_STATS, 0, 0), 0);
    ASSERT_CONTAINS(got, "{\"id\":0,\"s\":");
    ASSERT_CONTAINS(got, "\"loading\":1}");
    /* both guilds are held, one is loading: the list's one guild is count - loading */
    ASSERT_CONTAINS(got, "\"guilds\":{\"enabled\":true,\"count\":2,\"loading\":1,");
    ca_cache_free(c);
}

TEST(disabled_kinds_answer_not_cached)
{
    unsigned kinds = ALL_KINDS & ~(1u << CFG_CACHE_MEMBERS) & ~(1u << CFG_CACHE_VOICE_STATES);
    struct ca_cache *c = with_guild(kinds);
    ASSERT(c);
    ASSERT_EQ(rd(c, CA_MEMBER, 100, 11), CA_NOT_CACHED);
    ASSERT_EQ(rd(c, CA_MEMBERS, 100, 0), CA_NOT_CACHED);
    ASSERT_EQ(rd(c, CA_VOICE_STATES, 100, 0), CA_NOT_CACHED);
    ASSERT_EQ(rd(c, CA_PERMISSIONS, 100, 11), CA_NOT_CACHED);
    ASSERT_READ(c, CA_USER, 0, 11, USER1); /* users come with any kind */
    ASSERT_EQ(rd(c, CA_STATS, 0, 0), 0);
    ASSERT_CONTAINS(got, "\"members\":{\"enabled\":false,\"count\":0,\"bytes\":0}");
    ASSERT_CONTAINS(got, "\"guilds\":{\"enabled\":true,\"count\":1,\"loading\":0,");
    ca_cache_free(c);
}

/* The account fields only the user itself sees are not kept: REST's user object as another
   user sees it has none, so /users/{id} and a member's "user" answer without them. */
TEST(users_keep_no_private_fields)
{
    struct ca_cache *c = with_guild(~0u);
    ASSERT(c);
    feed(c, 0, "USER_UPDATE",
         "{\"id\":\"11\",\"username\":\"ann\",\"global_name\":null,\"avatar\":null,"
         "\"email\":\"a@example.com\",\"verified\":true,\"mfa_enabled\":true,"
         "\"locale\":\"en-US\",\"premium_type\":2}");
    ASSERT_READ(c, CA_USER, 0, 11, USER1);
    ASSERT_READ(c, CA_MEMBER, 100, 11, MEMBER1);
    /* the same from a member update's and a message's text */
    feed(c, 0, "GUILD_MEMBER_UPDATE",
         "{\"guild_id\":\"100\",\"user\":{\"id\":\"12\",\"username\":\"bob\","
         "\"global_name\":\"Bob\",\"avatar\":\"ab\",\"email\":null,\"verified\":true},"
         "\"roles\":[],\"joined_at\":\"2020-01-01T00:00:00+00:00\",\"deaf\":false,"
         "\"mute\":false,\"flags\":0}");
    ASSERT_READ(c, CA_USER, 0, 12, USER2);
    feed(c, 0, "MESSAGE_CREATE",
         "{\"id\":\"900\",\"channel_id\":\"300\",\"guild_id\":\"100\",\"author\":"
         "{\"id\":\"13\",\"username\":\"cy\",\"locale\":\"fr\",\"mfa_enabled\":false},"
         "\"content\":\"x\"}");
    ASSERT_READ(c, CA_USER, 0, 13, "{\"id\":\"13\",\"username\":\"cy\"}");
    ca_cache_free(c);
}

TEST(max_bytes_stops_new_members_not_channels)
{
    struct ca_cache *c = new_cache(ALL_KINDS, 3000);
    ASSERT(c);
    feed(c, 0, "GUILD_CREATE", GUILD1);
    char d[512];
    for (int i = 0; i < 40; i++) {
        snprintf(d, sizeof d,
                 "{\"guild_id\":\"100\",\"user\":{\"id\":\"%d\",\"username\":\"user%d\"},"
                 "\"roles\":[],\"joined_at\":\"2021-01-01T00:00:00+00:00\"}",
                 1000 + i, i);
        feed(c, 0, "GUILD_MEMBER_ADD", d);
    }
    ASSERT_EQ(rd(c, CA_MEMBER, 100, 1000), 0);
    ASSERT_EQ(rd(c, CA_MEMBER, 100, 1039), CA_UNKNOWN);
    feed(c, 0, "CHANNEL_CREATE",
         "{\"id\":\"399\",\"guild_id\":\"100\",\"type\":0,\"name\":\"a channel past the bound\"}");
    ASSERT_EQ(rd(c, CA_CHANNEL, 0, 399), 0);
    ASSERT_EQ(rd(c, CA_STATS, 0, 0), 0);
    ASSERT_CONTAINS(got, "\"full\":true");
    ca_cache_free(c);
}

TEST(snapshot_round_trip_gives_the_same_answers)
{
    struct ca_cache *c = with_guild(ALL_KINDS);
    ASSERT(c);
    feed(c, 0, "THREAD_CREATE",
         "{\"id\":\"305\",\"guild_id\":\"100\",\"parent_id\":\"300\",\"type\":11,"
         "\"member\":{\"id\":\"305\",\"user_id\":\"1\",\"flags\":0}}");
    feed(c, 0, "READY", "{\"guilds\":[{\"id\":\"100\"},{\"id\":\"103\"}]}");
    feed(c, 0, "GUILD_CREATE", GUILD1);
    ASSERT_EQ(ca_cache_snapshot(c, 0, 5000), 0);
    static const enum ca_what whats[] = {CA_GUILD,  CA_CHANNELS, CA_THREADS,     CA_ROLES,
                                         CA_EMOJIS, CA_MEMBERS,  CA_VOICE_STATES};
    static char before[8][sizeof got];
    for (size_t i = 0; i < 7; i++) {
        ASSERT_EQ(rd(c, whats[i], 100, 0), 0);
        snprintf(before[i], sizeof before[i], "%s", got);
    }
    ASSERT_EQ(rd(c, CA_MEMBER, 100, 11), 0);
    snprintf(before[7], sizeof before[7], "%s", got);
    uint64_t s_before = seq;
    struct mem_io keep = mem;
    memset(&mem, 0, sizeof mem); /* new_cache must not free the snapshot */
    ca_cache_free(c);
    c = new_cache(ALL_KINDS, 1 << 26);
    ASSERT(c);
    sh_buf_append(&mem.snap[0], keep.snap[0].data, keep.snap[0].len);
    struct ca_snapshot_info info;
    ASSERT_EQ(ca_cache_load(c, 0, &info), 0);
    ASSERT_STR_EQ(info.session_id, "sess-new");
    ASSERT_EQ(info.s, s_before);
    ASSERT(wait_loaded(c, 100));
    for (size_t i = 0; i < 7; i++) {
        ASSERT_EQ(rd(c, whats[i], 100, 0), 0);
        ASSERT_STR_EQ(got, before[i]);
    }
    ASSERT_READ(c, CA_MEMBER, 100, 11, before[7]);
    ASSERT_EQ(rd(c, CA_GUILD, 103, 0), CA_LOADING);
    ASSERT_EQ(ca_cache_load(c, 1, &info), SH_ENOTFOUND);
    for (int i = 0; i < 4; i++)
        sh_buf_free(&keep.snap[i]);
    sh_buf_reset(&mem.snap[1]);
    sh_buf_append(&mem.snap[1], "not zstd", 8);
    ASSERT(ca_cache_load(c, 1, &info) < 0);
    ca_cache_free(c);
}

/* A snapshot of shard 0 holding GUILD1, kept in *z (the caller frees it). */
static int snapshot_of_guild1(struct sh_buf *z)
{
    struct ca_cache *c = new_cache(ALL_KINDS, 1 << 26);
    if (!c)
        return -1;
    feed(c, 0, "READY", "{\"guilds\":[{\"id\":\"100\"}]}");
    feed(c, 0, "GUILD_CREATE", GUILD1);
    int rc = ca_cache_snapshot(c, 0, 5000);
    sh_buf_init(z, 1 << 24);
    rc = rc ?: sh_buf_append(z, mem.snap[0].data, mem.snap[0].len);
    ca_cache_free(c);
    return rc;
}

/* A snapshot is read at once but applied by the cache thread: before the chunks pushed after
   it (the resumed session's events win over it), and a forget of its shard undoes it. */
TEST(a_loaded_snapshot_goes_before_later_events_and_a_forget_undoes_it)
{
    struct sh_buf z;
    ASSERT_EQ(snapshot_of_guild1(&z), 0);
    struct ca_cache *c = new_cache(ALL_KINDS, 1 << 26);
    ASSERT(c);
    sh_buf_append(&mem.snap[0], z.data, z.len);
    struct ca_snapshot_info info;
    ASSERT_EQ(ca_cache_load(c, 0, &info), 0);
    feed(c, 0, "GUILD_UPDATE", "{\"id\":\"100\",\"name\":\"Renamed\"}");
    ASSERT_EQ(rd(c, CA_GUILD, 100, 0), 0);
    ASSERT_CONTAINS(got, "\"name\":\"Renamed\"");
    ASSERT_EQ(rd(c, CA_CHANNEL, 0, 300), 0); /* the rest came from the snapshot */
    ca_cache_free(c);

    c = new_cache(ALL_KINDS, 1 << 26);
    ASSERT(c);
    sh_buf_append(&mem.snap[0], z.data, z.len);
    ASSERT_EQ(ca_cache_load(c, 0, &info), 0);
    ca_cache_forget_shard(c, 0);
    ASSERT_EQ(ca_cache_snapshot(c, 1, 5000), 0); /* everything queued is applied */
    ASSERT_EQ(rd(c, CA_GUILD, 100, 0), CA_UNKNOWN);
    ASSERT_EQ(rd(c, CA_CHANNEL, 0, 300), CA_UNKNOWN);
    ca_cache_free(c);
    sh_buf_free(&z);
}

/* Push one event without waiting. */
/* One chunk of events (t[i], d[i]) of shard 0, applied before it returns. */
static void feed_chunk(struct ca_cache *c, const char *const *t, const char *const *d, int n)
{
    struct gw_chunk *ch = gw_chunk_new(1 << 22);
    for (int i = 0; i < n; i++) {
        struct gw_key k = {"sess", seq, 0};
        gw_chunk_append(ch, 0, 2, t[i], strlen(t[i]), ++seq, &k, d[i], strlen(d[i]), 0);
    }
    ca_cache_push(c, ch);
    ca_cache_snapshot(c, -1, 5000);
}

/* An author's text seen before is skipped only while the user kept is still what it made:
   a USER_UPDATE between (in another chunk or the same one) brings the message's user back. */
TEST(known_author_text_follows_user_changes)
{
    struct ca_cache *c = with_guild(ALL_KINDS);
    ASSERT(c);
    char m1[256], m2[256];
    const char *author = "{\"id\":\"14\",\"username\":\"dee\"}";
    snprintf(m1, sizeof m1, "{\"id\":\"900\",\"channel_id\":\"1\",\"author\":%s}", author);
    snprintf(m2, sizeof m2, "{\"id\":\"901\",\"channel_id\":\"1\",\"author\":%s}", author);
    const char *upd = "{\"id\":\"14\",\"username\":\"zed\"}";
    feed(c, 0, "MESSAGE_CREATE", m1);
    feed(c, 0, "USER_UPDATE", upd);
    ASSERT_READ(c, CA_USER, 0, 14, upd);
    feed(c, 0, "MESSAGE_CREATE", m2);
    ASSERT_READ(c, CA_USER, 0, 14, author);
    const char *t[] = {"USER_UPDATE", "MESSAGE_CREATE"}, *d[] = {upd, m1};
    feed_chunk(c, t, d, 2);
    ASSERT_READ(c, CA_USER, 0, 14, author);
    const char *t2[] = {"MESSAGE_CREATE", "USER_UPDATE"}, *d2[] = {m2, upd};
    feed_chunk(c, t2, d2, 2);
    ASSERT_READ(c, CA_USER, 0, 14, upd);
    ca_cache_free(c);
}

/* A message's member with the keys of the one kept replaces it; with fewer keys it merges. */
TEST(message_members_replace_or_merge)
{
    struct ca_cache *c = with_guild(ALL_KINDS);
    ASSERT(c);
    const char *head = "{\"id\":\"900\",\"channel_id\":\"300\",\"guild_id\":\"100\","
                       "\"author\":{\"id\":\"14\",\"username\":\"dee\"},\"member\":";
    char msg[512];
    snprintf(msg, sizeof msg, "%s{\"roles\":[\"200\"],\"nick\":\"D\",\"deaf\":false}}", head);
    feed(c, 0, "MESSAGE_CREATE", msg);
    snprintf(msg, sizeof msg, "%s{\"roles\":[],\"nick\":\"E\",\"deaf\":true}}", head);
    feed(c, 0, "MESSAGE_CREATE", msg);
    ASSERT_READ(c, CA_MEMBER, 100, 14,
                "{\"user\":{\"id\":\"14\",\"username\":\"dee\"},\"roles\":[],"
                "\"nick\":\"E\",\"deaf\":true}");
    snprintf(msg, sizeof msg, "%s{\"nick\":\"F\"}}", head);
    feed(c, 0, "MESSAGE_CREATE", msg);
    ASSERT_READ(c, CA_MEMBER, 100, 14,
                "{\"user\":{\"id\":\"14\",\"username\":\"dee\"},\"roles\":[],"
                "\"nick\":\"F\",\"deaf\":true}");
    ca_cache_free(c);
}

/* With presences not kept, GUILD_CREATE's presences are passed over unparsed, but must still
   be valid JSON: a malformed list makes the event skipped, as a malformed event is. */
TEST(guild_create_presences_not_kept_are_checked_not_parsed)
{
    struct ca_cache *c = new_cache(ALL_KINDS & ~(1u << CFG_CACHE_PRESENCES), 1u << 30);
    ASSERT(c);
    feed(c, 0, "GUILD_CREATE",
         "{\"id\":\"100\",\"name\":\"g\",\"presences\":[{\"user\":{\"id\":\"11\","
         "\"username\":\"p\"},\"status\":\"online\"}],\"members\":[{\"user\":" USER1
         ",\"roles\":[]}],\"roles\":[]}");
    ASSERT_READ(c, CA_USER, 0, 11, USER1); /* the presence's user is not taken */
    feed(c, 0, "GUILD_CREATE",
         "{\"id\":\"101\",\"name\":\"h\",\"members\":[],\"presences\":[{\"user\":}]}");
    ASSERT_EQ(rd(c, CA_GUILD, 101, 0), CA_UNKNOWN);
    ca_cache_free(c);
}

/* A channel's overwrites in Discord's exact form are kept as their digits only, and written
   back byte for byte (reads, merges, permissions); any other form is kept as sent. */
TEST(channel_overwrites_kept_compactly_read_back_exactly)
{
    struct ca_cache *c = with_guild(ALL_KINDS);
    ASSERT(c);
    const char *ow = "\"permission_overwrites\":[{\"id\":\"100\",\"type\":0,\"allow\":\"0\","
                     "\"deny\":\"1024\"},{\"id\":\"11\",\"type\":1,\"allow\":\"1024\","
                     "\"deny\":\"0\"}]";
    char d[512], want[512];
    snprintf(d, sizeof d, "{\"id\":\"310\",\"guild_id\":\"100\",\"type\":0,\"name\":\"x\",%s}", ow);
    feed(c, 0, "CHANNEL_CREATE", d);
    snprintf(want, sizeof want,
             "{\"guild_id\":\"100\",\"id\":\"310\",\"type\":0,\"name\":\"x\",%s}", ow);
    ASSERT_EQ(rd(c, CA_CHANNEL, 0, 310), 0);
    ASSERT_STR_EQ(got, want);
    feed(c, 0, "CHANNEL_PINS_UPDATE",
         "{\"channel_id\":\"310\",\"guild_id\":\"100\",\"last_pin_timestamp\":\"t\"}");
    snprintf(want, sizeof want,
             "{\"guild_id\":\"100\",\"id\":\"310\",\"type\":0,\"name\":\"x\",%s,"
             "\"last_pin_timestamp\":\"t\"}",
             ow);
    ASSERT_EQ(rd(c, CA_CHANNEL, 0, 310), 0);
    ASSERT_STR_EQ(got, want);
    const char *odd = "{\"id\":\"311\",\"guild_id\":\"100\",\"type\":0,\"permission_overwrites\":"
                      "[{\"id\":\"100\",\"type\":\"role\",\"allow\":\"0\",\"deny\":\"1024\"}]}";
    feed(c, 0, "CHANNEL_CREATE", odd);
    ASSERT_EQ(rd(c, CA_CHANNEL, 0, 311), 0);
    ASSERT_STR_EQ(got, "{\"guild_id\":\"100\",\"id\":\"311\",\"type\":0,\"permission_overwrites\":"
                       "[{\"id\":\"100\",\"type\":\"role\",\"allow\":\"0\",\"deny\":\"1024\"}]}");
    ca_cache_free(c);
}

static void push_only(struct ca_cache *c, int shard, const char *t, const char *d, size_t n)
{
    struct gw_chunk *ch = gw_chunk_new(4u << 20);
    struct gw_key k = {"sess", seq, 0};
    gw_chunk_append(ch, shard, 2, t, strlen(t), ++seq, &k, d, n, 0);
    ca_cache_push(c, ch);
}

/* Past its queue bound the cache drops chunks (counted), and holds back the shard's snapshots
   until a new session's READY came after the drop. */
TEST(a_full_queue_drops_for_the_cache_and_holds_snapshots_back)
{
    no_start = 1; /* nothing applies while the queue fills */
    struct ca_cache *c = new_cache(ALL_KINDS, 1 << 26);
    no_start = 0;
    ASSERT(c);
    static char big[1 << 20];
    memset(big, 'x', sizeof big);
    memcpy(big, "{\"content\":\"", 12);
    memcpy(big + sizeof big - 2, "\"}", 2);
    for (int i = 0; i < 70; i++)
        push_only(c, 0, "MESSAGE_CREATE", big, sizeof big);
    ASSERT_EQ(rd(c, CA_STATS, 0, 0), 0);
    ASSERT_CONTAINS(got, "\"dropped_events\":");
    ASSERT(!strstr(got, "\"dropped_events\":0,"));
    ASSERT(!strstr(got, "\"queued_events\":0,")); /* the first 64 MiB wait in the queue */
    ASSERT_EQ(ca_cache_start(c), 0);
    feed(c, 0, "GUILD_CREATE", GUILD1);
    int puts = mem.puts;
    ASSERT_EQ(ca_cache_snapshot(c, 0, 5000), 0);
    ASSERT_EQ(mem.puts, puts); /* held back */
    feed(c, 0, "READY", "{\"guilds\":[{\"id\":\"100\"}]}");
    feed(c, 0, "GUILD_CREATE", GUILD1);
    puts = mem.puts;
    ASSERT_EQ(ca_cache_snapshot(c, 0, 5000), 0);
    ASSERT_EQ(mem.puts, puts + 1);
    ca_cache_free(c);
}

/* A released shard's chunks still queued do not bring its guilds back: the forget is ordered
   with the queue (the other shard's events and those pushed after it apply). */
TEST(forget_drops_the_shards_chunks_queued_before_it)
{
    no_start = 1; /* the chunks wait in the queue */
    struct ca_cache *c = new_cache(ALL_KINDS, 1 << 26);
    no_start = 0;
    ASSERT(c);
    push_only(c, 0, "GUILD_CREATE", GUILD1, strlen(GUILD1));
    push_only(c, 1, "GUILD_CREATE", "{\"id\":\"101\",\"name\":\"H\"}", 23);
    ca_cache_forget_shard(c, 0);
    ASSERT_EQ(ca_cache_start(c), 0);
    ASSERT_EQ(ca_cache_snapshot(c, -1, 5000), 0); /* everything pushed is applied */
    ASSERT_EQ(rd(c, CA_GUILD, 100, 0), CA_UNKNOWN);
    ASSERT_EQ(rd(c, CA_CHANNEL, 0, 300), CA_UNKNOWN);
    ASSERT_EQ(rd(c, CA_GUILD_LIST, 0, 0), 0);
    ASSERT_CONTAINS(got, "\"101\"");
    ASSERT(!strstr(got, "\"100\""));
    feed(c, 0, "GUILD_CREATE", GUILD1); /* the shard held again: its new events apply */
    ASSERT_EQ(rd(c, CA_GUILD, 100, 0), 0);
    ca_cache_free(c);
}

/* Restorable defaults of channels (no overwrites, an empty topic, no parent) and emojis are
   not held, and come back on every read. */
TEST(channel_and_emoji_defaults_are_left_out_and_restored)
{
    struct ca_cache *c = new_cache(ALL_KINDS, 1 << 26);
    ASSERT(c);
    const char *chan = "{\"id\":\"300\",\"type\":0,\"name\":\"general\",\"position\":0,"
                       "\"parent_id\":null,\"topic\":\"\",\"nsfw\":false,"
                       "\"permission_overwrites\":[]}";
    const char *emoji = "{\"id\":\"400\",\"name\":\"e\",\"roles\":[],\"require_colons\":true,"
                        "\"managed\":false,\"animated\":false,\"available\":true}";
    char gc[1024];
    snprintf(gc, sizeof gc,
             "{\"id\":\"100\",\"name\":\"G\",\"roles\":[],\"emojis\":[%s],"
             "\"channels\":[%s],\"members\":[]}",
             emoji, chan);
    feed(c, 0, "GUILD_CREATE", gc);
    char want[1024];
    snprintf(want, sizeof want, "[%s]", emoji);
    ASSERT_READ(c, CA_EMOJIS, 100, 0, want);
    snprintf(want, sizeof want, "{\"guild_id\":\"100\",%s", chan + 1);
    ASSERT_READ(c, CA_CHANNEL, 0, 300, want);
    ASSERT_EQ(rd(c, CA_STATS, 0, 0), 0);
    /* {"id":"300","type":0,"name":"general","position":0} (51 bytes) and {"id":"400","name":"e"}
       (23) as real memory: the blob's heap chunk (an 8-byte header and the text) and 40 bytes
       a map slot, two for a channel (its guild's map and the channel index) */
    char bytes[128];
    snprintf(bytes, sizeof bytes, "\"channels\":{\"enabled\":true,\"count\":1,\"bytes\":%zu}",
             heap_chunk(8 + 51) + 80);
    ASSERT_CONTAINS(got, bytes);
    snprintf(bytes, sizeof bytes, "\"emojis\":{\"enabled\":true,\"count\":1,\"bytes\":%zu}",
             heap_chunk(8 + 23) + 40);
    ASSERT_CONTAINS(got, bytes);
    ca_cache_free(c);
}

TEST(timed_out_members_keep_only_view_and_history)
{
    struct ca_cache *c = with_guild(ALL_KINDS);
    ASSERT(c);
    feed(c, 0, "GUILD_MEMBER_UPDATE",
         "{\"guild_id\":\"100\",\"user\":" USER1 ",\"roles\":[\"200\"],"
         "\"communication_disabled_until\":\"2999-01-01T00:00:00.000000+00:00\"}");
    ASSERT_READ(c, CA_PERMISSIONS, 100, 11,
                "{\"permissions\":\"1024\",\"names\":[\"VIEW_CHANNEL\"]}");
    feed(c, 0, "GUILD_MEMBER_UPDATE",
         "{\"guild_id\":\"100\",\"user\":" USER1 ",\"roles\":[\"200\"],"
         "\"communication_disabled_until\":\"2001-01-01T00:00:00+00:00\"}");
    ASSERT_EQ(rd(c, CA_PERMISSIONS, 100, 11), 0);
    ASSERT_CONTAINS(got, "\"permissions\":\"9216\"");
    ca_cache_free(c);
}

static atomic_int reading, bad_reads, reads;

/* Read while the cache thread writes: every answer is a code, every 200 body parses. */
static void *reader(void *arg)
{
    struct ca_cache *c = arg;
    static const enum ca_what whats[] = {CA_GUILD,       CA_MEMBERS,    CA_MEMBER, CA_STATS,
                                         CA_PERMISSIONS, CA_GUILD_LIST, CA_USER,   CA_CHANNEL};
    struct sh_buf b;
    sh_buf_init(&b, 1 << 22);
    for (unsigned i = 0; atomic_load(&reading); i++) {
        struct ca_query q = {.what = whats[i % 8],
                             .guild_id = 100,
                             .id = 1000 + i % 50,
                             .limit = 100,
                             .channel_id = i % 3 ? 300 : 0};
        if (q.what == CA_CHANNEL)
            q.id = 300;
        sh_buf_reset(&b);
        int rc = ca_cache_read(c, &q, &b);
        cJSON *j = rc == 0 ? cJSON_ParseWithLength(b.data, b.len) : NULL;
        if ((rc == 0 && !j) || (rc != 0 && rc != CA_UNKNOWN && rc != CA_LOADING))
            atomic_fetch_add(&bad_reads, 1);
        cJSON_Delete(j);
        atomic_fetch_add(&reads, 1);
    }
    sh_buf_free(&b);
    return NULL;
}

TEST(reads_while_events_apply)
{
    struct ca_cache *c = with_guild(ALL_KINDS);
    ASSERT(c);
    pthread_t th;
    atomic_store(&reading, 1);
    atomic_store(&reads, 0);
    ASSERT_EQ(pthread_create(&th, NULL, reader, c), 0);
    char d[512];
    for (int i = 0; i < 600; i++) {
        int u = 1000 + i % 50;
        const char *t = i % 3 == 0   ? "GUILD_MEMBER_ADD"
                        : i % 3 == 1 ? "MESSAGE_CREATE"
                                     : "GUILD_MEMBER_REMOVE";
        snprintf(d, sizeof d,
                 "{\"guild_id\":\"100\",\"id\":\"%d\",\"channel_id\":\"300\",\"user\":"
                 "{\"id\":\"%d\",\"username\":\"u%d\"},\"author\":{\"id\":\"%d\","
                 "\"username\":\"u%d\"},\"member\":{\"roles\":[\"200\"]},\"roles\":[]}",
                 5000 + i, u, i, u, i);
        struct gw_chunk *ch = gw_chunk_new(1 << 16);
        gw_chunk_append(ch, 0, 2, t, strlen(t), ++seq, NULL, d, strlen(d), 0);
        ca_cache_push(c, ch);
    }
    ca_cache_snapshot(c, -1, 10000);
    for (int i = 0; i < 500 && atomic_load(&reads) < 200; i++) /* a slow machine: let it read */
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    atomic_store(&reading, 0);
    pthread_join(th, NULL);
    ASSERT(atomic_load(&reads) > 0);
    ASSERT_EQ(atomic_load(&bad_reads), 0);
    ca_cache_free(c);
}

TEST(malformed_events_are_skipped)
{
    struct ca_cache *c = with_guild(ALL_KINDS);
    ASSERT(c);
    static const char *const bad[][2] = {
        {"GUILD_CREATE", "{\"id\":"},
        {"GUILD_MEMBER_ADD", "[1,2]"},
        {"MESSAGE_CREATE", "{\"author\":}"},
        {"MESSAGE_CREATE", "{\"author\":[],\"x\":1}"},
        {"CHANNEL_CREATE", "{\"id\":{}}"},
        {"VOICE_STATE_UPDATE", "null"},
        {"GUILD_ROLE_CREATE", "{\"guild_id\":\"100\",\"role\":7}"},
        {"THREAD_LIST_SYNC", "{\"guild_id\":\"100\",\"threads\":{\"a\":1}}"},
        {"READY", "{\"guilds\":5}"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        feed(c, 1, bad[i][0], bad[i][1]);
    ASSERT_READ(c, CA_MEMBER, 100, 11, MEMBER1);
    /* what the message scanner passes but is not JSON is never kept as text */
    static const char *const bad_authors[] = {
        "{\"id\":\"77\",\"username\":tru}", "{\"id\":\"77\",\"x\":\"\\u12\"}",
        "{\"id\":\"77\",\"x\":[1,}",        "{\"id\":\"77\",\"x\":01}",
        "{\"id\":\"77\",\"x\":\"\t\"}",
    };
    char d[256];
    for (size_t i = 0; i < sizeof bad_authors / sizeof bad_authors[0]; i++) {
        snprintf(d, sizeof d, "{\"guild_id\":\"100\",\"author\":%s,\"member\":%s}", bad_authors[i],
                 bad_authors[i]);
        feed(c, 0, "MESSAGE_CREATE", d);
        ASSERT_EQ(rd(c, CA_USER, 0, 77), CA_UNKNOWN);
        ASSERT_EQ(rd(c, CA_MEMBER, 100, 77), CA_UNKNOWN);
    }
    feed(c, 0, "MESSAGE_CREATE",
         "{\"guild_id\":\"100\",\"author\": {\"id\" : \"77\", \"avatar\": null, \"n\":-1.5e3,"
         "\"s\":\"\\u00e9\\n\"}, \"member\":{\"roles\":[ ],\"nick\":null}}");
    ASSERT_READ(c, CA_USER, 0, 77,
                "{\"id\":\"77\",\"avatar\":null,\"n\":-1.5e3,\"s\":\"\\u00e9\\n\"}");
    ASSERT_READ(c, CA_MEMBER, 100, 77,
                "{\"user\":{\"id\":\"77\",\"avatar\":null,\"n\":-1.5e3,\"s\":\"\\u00e9\\n\"},"
                "\"roles\":[],\"nick\":null}");
    ca_cache_free(c);
}

TEST_MAIN({
    RUN(guild_create_answers_rest_shapes);
    RUN(partial_updates_merge_and_deletes_remove);
    RUN(members_add_update_remove_chunk_and_count);
    RUN(message_and_interaction_members);
    RUN(known_author_text_follows_user_changes);
    RUN(message_members_replace_or_merge);
    RUN(guild_create_presences_not_kept_are_checked_not_parsed);
    RUN(channel_overwrites_kept_compactly_read_back_exactly);
    RUN(voice_join_move_leave);
    RUN(threads_and_thread_list_sync);
    RUN(permissions_from_roles_and_overwrites);
    RUN(ready_drops_stale_guilds_and_lists_loading);
    RUN(disabled_kinds_answer_not_cached);
    RUN(users_keep_no_private_fields);
    RUN(max_bytes_stops_new_members_not_channels);
    RUN(snapshot_round_trip_gives_the_same_answers);
    RUN(a_full_queue_drops_for_the_cache_and_holds_snapshots_back);
    RUN(forget_drops_the_shards_chunks_queued_before_it);
    RUN(a_loaded_snapshot_goes_before_later_events_and_a_forget_undoes_it);
    RUN(channel_and_emoji_defaults_are_left_out_and_restored);
    RUN(timed_out_members_keep_only_view_and_history);
    RUN(reads_while_events_apply);
    RUN(malformed_events_are_skipped);
    for (int i = 0; i < 4; i++)
        sh_buf_free(&mem.snap[i]);
})
