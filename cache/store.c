/*
 * cache/store.c: the entity cache's containers (cache/store.h): the snowflake-keyed hash maps,
 * the guild records and their child maps, the users map, and the byte accounting that enforces
 * max_bytes. Knows no JSON beyond blobs as text; callers hold the cache's write lock.
 */
#include "cache/store.h"

#include <stdio.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "config/config.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/metrics.h"

const char *const ca__kind_names[CA__K_COUNT] = {
    "guilds",   "channels", "threads",      "roles",     "emojis",
    "stickers", "members",  "voice_states", "presences", "users",
};

const char *const ca__member_defaults[CA__N_MEMBER_DEFAULTS] = {
    "\"nick\":null",
    "\"avatar\":null",
    "\"banner\":null",
    "\"premium_since\":null",
    "\"communication_disabled_until\":null",
    "\"pending\":false",
    "\"deaf\":false",
    "\"mute\":false",
    "\"flags\":0",
    "\"avatar_decoration_data\":null",
};

const char *const ca__user_defaults[CA__N_USER_DEFAULTS] = {
    "\"global_name\":null",
    "\"avatar\":null",
    "\"discriminator\":\"0\"",
    "\"public_flags\":0",
    "\"flags\":0",
    "\"avatar_decoration_data\":null",
    "\"banner\":null",
    "\"accent_color\":null",
    "\"clan\":null",
    "\"primary_guild\":null",
    "\"collectibles\":null",
    "\"bot\":false",
    "\"system\":false",
    "\"display_name_styles\":null",
};

const char *const ca__channel_defaults[CA__N_CHANNEL_DEFAULTS] = {
    "\"topic\":null",
    "\"nsfw\":false",
    "\"last_pin_timestamp\":null",
    "\"rate_limit_per_user\":0",
    "\"flags\":0",
    "\"default_thread_rate_limit_per_user\":0",
    "\"icon_emoji\":null",
    "\"theme_color\":null",
    "\"user_limit\":0",
    "\"rtc_region\":null",
    "\"video_quality_mode\":1",
    "\"bitrate\":64000",
    "\"permission_overwrites\":[]",
    "\"topic\":\"\"",
    "\"parent_id\":null",
};

const char *const ca__emoji_defaults[CA__N_EMOJI_DEFAULTS] = {
    "\"roles\":[]",       "\"require_colons\":true", "\"managed\":false",
    "\"animated\":false", "\"available\":true",
};

const char *const ca__role_defaults[CA__N_ROLE_DEFAULTS] = {
    "\"icon\":null",         "\"unicode_emoji\":null",
    "\"hoist\":false",       "\"managed\":false",
    "\"mentionable\":false", "\"flags\":0",
    "\"description\":null",  "\"color\":0",
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

size_t ca__known_slot(uint64_t id)
{
    return (size_t)(mix(id) & (CA__KNOWN_USERS - 1));
}

void *ca__map_get(const struct ca__map *m, uint64_t key)
{
    if (!m->cap || !key)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
        if (m->keys[i] == key)
            return m->vals[i];
        if (!m->keys[i])
            return NULL;
    }
}

/* Slot arrays of TABLE_MMAP bytes or more come from mmap: a large calloc makes glibc
   consolidate every small block freed since the last one (the cache frees many), and a
   table's pages come zeroed from the kernel anyway. The size decides, so free knows. */
#define TABLE_MMAP ((size_t)4 << 10)

static void *table_alloc(size_t cap)
{
    size_t bytes = cap * sizeof(uint64_t);
    if (bytes < TABLE_MMAP)
        return calloc(cap, sizeof(uint64_t));
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void table_free(void *p, size_t cap)
{
    size_t bytes = cap * sizeof(uint64_t);
    if (!p)
        return;
    if (bytes < TABLE_MMAP)
        free(p);
    else
        munmap(p, bytes);
}

static int grow_to(struct ca__map *m, size_t cap)
{
    _Static_assert(sizeof(void *) == sizeof(uint64_t), "slots of one size");
    if (cap > UINT32_MAX)
        return SH_ENOMEM;
    uint64_t *keys = table_alloc(cap);
    void **vals = table_alloc(cap);
    if (!keys || !vals) {
        table_free(keys, cap);
        table_free(vals, cap);
        return SH_ENOMEM;
    }
    for (size_t j = 0; j < m->cap; j++) {
        if (!m->keys[j])
            continue;
        size_t i = mix(m->keys[j]) & (cap - 1);
        while (keys[i])
            i = (i + 1) & (cap - 1);
        keys[i] = m->keys[j];
        vals[i] = m->vals[j];
    }
    table_free(m->keys, m->cap);
    table_free(m->vals, m->cap);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

static int grow(struct ca__map *m)
{
    return grow_to(m, m->cap ? m->cap * 2 : 8);
}

int ca__map_reserve(struct ca__map *m, size_t n)
{
    size_t cap = m->cap ? m->cap : 8;
    while ((n + 1) * 2 > cap)
        cap *= 2;
    return cap > m->cap ? grow_to(m, cap) : 0;
}

void *ca__map_put(struct ca__map *m, uint64_t key, void *val, int *err)
{
    *err = 0;
    if (!key) {
        *err = SH_EINVAL;
        return NULL;
    }
    if ((m->n + 1) * 2 > m->cap && (*err = grow(m)) < 0)
        return NULL;
    size_t mask = m->cap - 1, i = mix(key) & mask;
    while (m->keys[i] && m->keys[i] != key)
        i = (i + 1) & mask;
    void *old = m->keys[i] ? m->vals[i] : NULL;
    if (!m->keys[i])
        m->n++;
    m->keys[i] = key;
    m->vals[i] = val;
    return old;
}

void *ca__map_del(struct ca__map *m, uint64_t key)
{
    if (!m->cap || !key)
        return NULL;
    size_t mask = m->cap - 1, i = mix(key) & mask;
    while (m->keys[i] != key) {
        if (!m->keys[i])
            return NULL;
        i = (i + 1) & mask;
    }
    void *old = m->vals[i];
    m->n--;
    /* backward-shift: move later entries of the run into the hole when their home allows */
    for (size_t j = (i + 1) & mask; m->keys[j]; j = (j + 1) & mask) {
        size_t home = mix(m->keys[j]) & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->keys[i] = m->keys[j];
            m->vals[i] = m->vals[j];
            i = j;
        }
    }
    m->keys[i] = 0;
    m->vals[i] = NULL;
    return old;
}

void ca__map_free(struct ca__map *m)
{
    table_free(m->keys, m->cap);
    table_free(m->vals, m->cap);
    memset(m, 0, sizeof *m);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void swap_u64(uint64_t *a, uint64_t *b)
{
    uint64_t t = *a;
    *a = *b;
    *b = t;
}

/* Move the k smallest of a[0..n) (0 < k < n) to its front, in any order (quickselect). */
static void select_smallest(uint64_t *a, size_t n, size_t k)
{
    size_t lo = 0, hi = n; /* what is left to split: [lo, hi) */
    while (hi - lo > 1) {
        swap_u64(&a[lo + (hi - lo) / 2], &a[hi - 1]);
        uint64_t pivot = a[hi - 1];
        size_t at = lo;
        for (size_t i = lo; i < hi - 1; i++)
            if (a[i] < pivot)
                swap_u64(&a[i], &a[at++]);
        swap_u64(&a[at], &a[hi - 1]); /* below at: smaller; above: larger */
        if (at == k || at + 1 == k)
            return;
        if (at > k)
            hi = at;
        else
            lo = at + 1;
    }
}

long ca__map_sorted_keys(const struct ca__map *m, uint64_t after, size_t limit, uint64_t **out)
{
    *out = malloc((m->n ? m->n : 1) * sizeof **out);
    if (!*out)
        return SH_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i] && m->keys[i] > after)
            (*out)[n++] = m->keys[i];
    if (limit && n > limit) { /* a page of a large map: select, then sort only the page */
        select_smallest(*out, n, limit);
        n = limit;
    }
    qsort(*out, n, sizeof **out, cmp_u64);
    return (long)n;
}

struct ca__blob *ca__blob_new(const char *text, size_t len, uint16_t strip)
{
    if (len > UINT32_MAX)
        return NULL;
    struct ca__blob *b = malloc(sizeof *b + len);
    if (!b)
        return NULL;
    b->len = (uint32_t)len;
    b->strip = strip;
    memcpy(b->data, text, len);
    return b;
}

enum ca__kind ca__gmap_kind(int i)
{
    static const enum ca__kind k[CA__M_COUNT] = {
        CA__K_CHANNELS, CA__K_THREADS, CA__K_ROLES,     CA__K_EMOJIS,  CA__K_STICKERS,
        CA__K_MEMBERS,  CA__K_VOICE,   CA__K_PRESENCES, CA__K_THREADS,
    };
    return k[i];
}

static void account(struct ca__store *s, enum ca__kind k, long long entries, long long bytes)
{
    s->count[k] += entries;
    s->kbytes[k] += bytes;
    s->bytes = (size_t)((long long)s->bytes + bytes);
}

/* The heap chunk of blob b (0 for none). */
static long long chunk(const struct ca__blob *b)
{
    return b ? (long long)malloc_usable_size((void *)b) + 8 : 0;
}

/* What an entry of kind k really costs: its blob's heap chunk (the usable size and the
   chunk's 8-byte header) and a slot of each map it is in (channels and threads are also in
   the channel-to-guild index). */
static long long cost(const struct ca__blob *b, enum ca__kind k)
{
    if (!b)
        return 0;
    int slots = k == CA__K_CHANNELS || k == CA__K_THREADS ? 2 : 1;
    return chunk(b) + slots * CA__SLOT_BYTES;
}

struct ca__guild *ca__guild_get(struct ca__store *s, uint64_t id, int shard, int create)
{
    struct ca__guild *g = ca__map_get(&s->guilds, id);
    if (g || !create || !id)
        return g;
    g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->id = id;
    g->shard = shard;
    g->state = CA__G_LOADING;
    int err;
    ca__map_put(&s->guilds, id, g, &err);
    if (err < 0) {
        free(g);
        return NULL;
    }
    account(s, CA__K_GUILDS, 1, CA__GUILD_BYTES);
    if (shard >= 0 && shard < s->total)
        s->shards[shard].guilds++;
    return g;
}

void ca__gclear(struct ca__store *s, struct ca__guild *g, int i)
{
    struct ca__map *m = &g->maps[i];
    for (size_t j = 0; j < m->cap; j++) {
        if (!m->keys[j])
            continue;
        account(s, ca__gmap_kind(i), -1, -cost(m->vals[j], ca__gmap_kind(i)));
        if (i == CA__M_CHANNELS || i == CA__M_THREADS)
            ca__map_del(&s->chan, m->keys[j]);
        free(m->vals[j]);
    }
    ca__map_free(m);
}

void ca__guild_clear(struct ca__store *s, struct ca__guild *g)
{
    for (int i = 0; i < CA__M_COUNT; i++)
        ca__gclear(s, g, i);
    ca__set_fields(s, g, NULL);
}

void ca__guild_remove(struct ca__store *s, struct ca__guild *g)
{
    ca__guild_clear(s, g);
    ca__map_del(&s->guilds, g->id);
    account(s, CA__K_GUILDS, -1, -CA__GUILD_BYTES);
    if (g->shard >= 0 && g->shard < s->total)
        s->shards[g->shard].guilds--;
    free(g->name);
    free(g);
}

void ca__store_forget_shard(struct ca__store *s, int shard)
{
    for (size_t j = 0; j < s->guilds.cap; j++) {
        struct ca__guild *g = s->guilds.keys[j] ? s->guilds.vals[j] : NULL;
        if (g && g->shard == shard) {
            ca__guild_remove(s, g);
            j--; /* backward shift may have moved another entry into slot j */
        }
    }
}

void ca__store_free(struct ca__store *s)
{
    for (size_t j = 0; j < s->guilds.cap; j++) {
        struct ca__guild *g = s->guilds.keys[j] ? s->guilds.vals[j] : NULL;
        if (g) {
            ca__guild_remove(s, g);
            j--;
        }
    }
    for (size_t j = 0; j < s->users.cap; j++)
        if (s->users.keys[j])
            free(s->users.vals[j]);
    ca__map_free(&s->users);
    ca__map_free(&s->guilds);
    ca__map_free(&s->chan);
    free(s->shards);
    free(s->known_users);
    memset(s, 0, sizeof *s);
}

static void set_full(struct ca__store *s, int full)
{
    static struct sh_metric *m_full;
    if (!m_full)
        m_full = sh_metric_gauge("shardhook_cache_full",
                                 "1 while the entity cache is at cache.max_bytes", "");
    if (full && !s->full)
        log_warn("msg=\"entity cache full: new members and users are no longer kept\" "
                 "bytes=%zu max_bytes=%zu",
                 s->bytes, s->max_bytes);
    else if (!full && s->full)
        log_info("msg=\"entity cache below its bound again\" bytes=%zu", s->bytes);
    s->full = full;
    sh_metric_set(m_full, full);
}

/* New entries of these kinds stop at max_bytes; the rest is always kept. */
static int bounded(enum ca__kind k)
{
    return k != CA__K_CHANNELS && k != CA__K_THREADS && k != CA__K_ROLES && k != CA__K_GUILDS;
}

static int put_in(struct ca__store *s, struct ca__map *m, enum ca__kind k, uint64_t id,
                  struct ca__blob *b)
{
    struct ca__blob *old = ca__map_get(m, id);
    if (!old && bounded(k) && s->bytes + (size_t)cost(b, k) > s->max_bytes) {
        free(b);
        set_full(s, 1);
        return SH_ETOOBIG;
    }
    int err;
    ca__map_put(m, id, b, &err);
    if (err < 0) {
        free(b);
        return err;
    }
    account(s, k, old ? 0 : 1, cost(b, k) - cost(old, k));
    free(old);
    return 0;
}

int ca__gput(struct ca__store *s, struct ca__guild *g, int i, uint64_t id, struct ca__blob *b)
{
    if (!b)
        return SH_ENOMEM;
    int rc = put_in(s, &g->maps[i], ca__gmap_kind(i), id, b);
    if (rc == 0 && (i == CA__M_CHANNELS || i == CA__M_THREADS)) {
        int err;
        ca__map_put(&s->chan, id, g, &err);
    }
    return rc;
}

int ca__gdel(struct ca__store *s, struct ca__guild *g, int i, uint64_t id)
{
    struct ca__blob *old = ca__map_del(&g->maps[i], id);
    if (!old)
        return 0;
    account(s, ca__gmap_kind(i), -1, -cost(old, ca__gmap_kind(i)));
    free(old);
    if ((i == CA__M_CHANNELS || i == CA__M_THREADS) && ca__map_get(&s->chan, id) == g)
        ca__map_del(&s->chan, id);
    return 1;
}

void ca__set_fields(struct ca__store *s, struct ca__guild *g, struct ca__blob *b)
{
    account(s, CA__K_GUILDS, 0, chunk(b) - chunk(g->fields));
    free(g->fields);
    g->fields = b;
}

int ca__uput(struct ca__store *s, uint64_t id, struct ca__blob *b)
{
    if (s->known_users && s->known_users[ca__known_slot(id)][0] == id)
        s->known_users[ca__known_slot(id)][0] = 0; /* no longer known to be that text */
    if (!b)
        return SH_ENOMEM;
    return put_in(s, &s->users, CA__K_USERS, id, b);
}

void ca__store_check_full(struct ca__store *s)
{
    if (s->full && s->bytes + s->max_bytes / 20 < s->max_bytes)
        set_full(s, 0); /* 5 % below the bound: taking new entries again */
}

uint64_t ca__id(const char *p, size_t n)
{
    if (n >= 2 && p[0] == '"' && p[n - 1] == '"') {
        p++;
        n -= 2;
    }
    if (!n || n > 20)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        uint64_t d = (uint64_t)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    return v;
}
