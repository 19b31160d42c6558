/*
 * cache/apply.c: turning a chunk of encoded events into changes of the store. Per chunk: pick
 * the events the cache needs by name (others are not parsed), parse them outside the write lock
 * (MESSAGE_CREATE through the scanner and a dedup table, never as a whole), then apply them in
 * order under it. The events about guilds, channels, threads, roles, emojis and stickers are
 * applied here; members, users, voice states and presences in apply_member.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/apply.h"
#include "lib/clock.h"
#include "lib/errors.h"

static const struct {
    const char *name;
    enum ca__ev ev;
} names[] = {
    {"MESSAGE_CREATE", CA__EV_MESSAGE},
    {"PRESENCE_UPDATE", CA__EV_PRESENCE},
    {"GUILD_MEMBER_UPDATE", CA__EV_MEMBER_UPDATE},
    {"VOICE_STATE_UPDATE", CA__EV_VOICE},
    {"INTERACTION_CREATE", CA__EV_INTERACTION},
    {"GUILD_CREATE", CA__EV_GUILD_CREATE},
    {"GUILD_UPDATE", CA__EV_GUILD_UPDATE},
    {"GUILD_DELETE", CA__EV_GUILD_DELETE},
    {"READY", CA__EV_READY},
    {"CHANNEL_CREATE", CA__EV_CHANNEL_SET},
    {"CHANNEL_UPDATE", CA__EV_CHANNEL_SET},
    {"CHANNEL_DELETE", CA__EV_CHANNEL_DELETE},
    {"CHANNEL_PINS_UPDATE", CA__EV_PINS},
    {"THREAD_CREATE", CA__EV_THREAD_SET},
    {"THREAD_UPDATE", CA__EV_THREAD_SET},
    {"THREAD_DELETE", CA__EV_THREAD_DELETE},
    {"THREAD_LIST_SYNC", CA__EV_THREAD_SYNC},
    {"THREAD_MEMBER_UPDATE", CA__EV_THREAD_MEMBER},
    {"GUILD_ROLE_CREATE", CA__EV_ROLE_SET},
    {"GUILD_ROLE_UPDATE", CA__EV_ROLE_SET},
    {"GUILD_ROLE_DELETE", CA__EV_ROLE_DELETE},
    {"GUILD_EMOJIS_UPDATE", CA__EV_EMOJIS},
    {"GUILD_STICKERS_UPDATE", CA__EV_STICKERS},
    {"GUILD_MEMBER_ADD", CA__EV_MEMBER_ADD},
    {"GUILD_MEMBER_REMOVE", CA__EV_MEMBER_REMOVE},
    {"GUILD_MEMBERS_CHUNK", CA__EV_MEMBERS_CHUNK},
    {"USER_UPDATE", CA__EV_USER_UPDATE},
};

static enum ca__ev lookup(const char *t, size_t n)
{
    if (memchr(t, '\0', n)) /* then strncmp below may stop early */
        return CA__EV_NONE;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strncmp(names[i].name, t, n) && !names[i].name[n]) /* no strlen per name */
            return names[i].ev;
    return CA__EV_NONE;
}

/* Guild keys that REST's guild object does not carry, or that the cache keeps apart. */
static const char *const guild_skip[] = {
    "joined_at",
    "large",
    "unavailable",
    "member_count",
    "voice_states",
    "members",
    "channels",
    "threads",
    "presences",
    "stage_instances",
    "guild_scheduled_events",
    "soundboard_sounds",
    "embedded_activities",
    "lazy",
    "application_command_counts",
    "roles",
    "emojis",
    "stickers",
    "hashes",
    "guild_hashes",
};

static void guild_create(struct ca_cache *c, int shard, cJSON *d, const struct ca__item *it);

int ca__on(const struct ca_cache *c, int kind)
{
    return (c->st.kinds >> kind) & 1u;
}

/* o as a blob without the defaults of shape (they come back on output). */
static struct ca__blob *shaped(cJSON *o, enum ca__shape shape)
{
    struct ca__blob *b = ca__blob_of(o, ca__strip(o, shape));
    return shape == CA__CHANNEL ? ca__compact_overwrites(b) : b;
}

/* The guild of an event's d (its "guild_id"), or NULL. */
struct ca__guild *ca__event_guild(struct ca_cache *c, const cJSON *d)
{
    return ca__guild_get(&c->st, ca__jid(cJSON_GetObjectItemCaseSensitive(d, "guild_id")), -1, 0);
}

/* Put every object of array arr into map i of g, by "id" ("guild_id" left out). */
static void put_list(struct ca_cache *c, struct ca__guild *g, int i, cJSON *arr)
{
    cJSON *o;
    ca__map_reserve(&g->maps[i], g->maps[i].n + (size_t)cJSON_GetArraySize(arr));
    cJSON_ArrayForEach(o, arr)
    {
        if (i == CA__M_THREADS) {
            ca__put_thread(c, g, o);
            continue;
        }
        uint64_t id = ca__jid(cJSON_GetObjectItemCaseSensitive(o, "id"));
        if (!id)
            continue;
        if (i == CA__M_CHANNELS) /* stickers keep theirs, as REST writes them */
            cJSON_DeleteItemFromObjectCaseSensitive(o, "guild_id");
        ca__gput(&c->st, g, i, id, shaped(o, ca__gmap_shape(i)));
    }
}

void ca__put_thread(struct ca_cache *c, struct ca__guild *g, cJSON *o)
{
    uint64_t id = ca__jid(cJSON_GetObjectItemCaseSensitive(o, "id"));
    if (!id)
        return;
    cJSON *m = cJSON_DetachItemFromObjectCaseSensitive(o, "member");
    if (m) {
        cJSON_DeleteItemFromObjectCaseSensitive(m, "guild_id");
        ca__gput(&c->st, g, CA__M_THREAD_MEMBERS, id, ca__blob_of(m, 0));
        cJSON_Delete(m);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(o, "guild_id");
    cJSON_DeleteItemFromObjectCaseSensitive(o, "newly_created");
    ca__gput(&c->st, g, CA__M_THREADS, id, shaped(o, CA__CHANNEL));
}

static void set_name(struct ca__guild *g, const cJSON *d)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(d, "name");
    if (cJSON_IsString(n)) {
        char *dup = strdup(n->valuestring);
        if (dup) {
            free(g->name);
            g->name = dup;
        }
    }
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(d, "owner_id");
    if (o)
        g->owner_id = ca__jid(o);
}

/* The guild's own fields: d without the gateway-only keys and the children (detached). */
static void set_fields(struct ca_cache *c, struct ca__guild *g, cJSON *d)
{
    if (!ca__on(c, CFG_CACHE_GUILDS))
        return;
    for (size_t i = 0; i < sizeof guild_skip / sizeof guild_skip[0]; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(d, guild_skip[i]);
    struct ca__blob *b = ca__blob_of(d, 0);
    if (b)
        ca__set_fields(&c->st, g, b);
}

static void put_children(struct ca_cache *c, struct ca__guild *g, cJSON *d,
                         const struct ca__item *it)
{
    static const struct {
        const char *key;
        int map, kind;
    } kids[] = {
        {"channels", CA__M_CHANNELS, CFG_CACHE_CHANNELS},
        {"threads", CA__M_THREADS, CFG_CACHE_CHANNELS},
        {"roles", CA__M_ROLES, CFG_CACHE_ROLES},
        {"emojis", CA__M_EMOJIS, CFG_CACHE_EMOJIS},
        {"stickers", CA__M_STICKERS, CFG_CACHE_EMOJIS},
    };
    for (size_t i = 0; i < sizeof kids / sizeof kids[0]; i++)
        if (ca__on(c, kids[i].kind))
            put_list(c, g, kids[i].map, cJSON_GetObjectItemCaseSensitive(d, kids[i].key));
    cJSON *o, *members = cJSON_GetObjectItemCaseSensitive(d, "members");
    if (ca__on(c, CFG_CACHE_MEMBERS))
        ca__map_reserve(&g->maps[CA__M_MEMBERS], (size_t)cJSON_GetArraySize(members));
    if (it && it->member_p) /* the members were cut out of the text before parsing */
        ca__put_members_text(c, g, it->member_p, it->member_n);
    else if (ca__on(c, CFG_CACHE_MEMBERS))
        cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(d, "members"))
            ca__put_member(c, g, o, 0, 0);
    else
        cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(d, "members"))
            ca__put_user(c, cJSON_GetObjectItemCaseSensitive(o, "user"));
    cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(d, "voice_states"))
        ca__put_voice(c, g, o);
    cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(d, "presences"))
        ca__put_presence(c, g, o);
}

void ca__apply_guild_create(struct ca_cache *c, int shard, cJSON *d)
{
    guild_create(c, shard, d, NULL);
}

static void guild_create(struct ca_cache *c, int shard, cJSON *d, const struct ca__item *it)
{
    uint64_t id = ca__jid(cJSON_GetObjectItemCaseSensitive(d, "id"));
    struct ca__guild *g = ca__guild_get(&c->st, id, shard, 1);
    if (!g)
        return;
    if (g->shard != shard && shard >= 0 && shard < c->st.total) {
        if (g->shard >= 0 && g->shard < c->st.total)
            c->st.shards[g->shard].guilds--;
        c->st.shards[shard].guilds++;
        g->shard = shard;
    }
    int unavailable = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "unavailable"));
    if (unavailable && !cJSON_GetObjectItemCaseSensitive(d, "name")) {
        g->state = CA__G_LOADING; /* an outage: what is kept stays, reads answer loading */
        return;
    }
    ca__guild_clear(&c->st, g);
    set_name(g, d);
    const cJSON *mc = cJSON_GetObjectItemCaseSensitive(d, "member_count");
    g->member_count = cJSON_IsNumber(mc) ? (long long)mc->valuedouble : 0;
    put_children(c, g, d, it);
    set_fields(c, g, d);
    g->state = unavailable ? CA__G_LOADING : CA__G_LOADED;
    ca__store_check_full(&c->st);
}

static void guild_update(struct ca_cache *c, cJSON *d)
{
    struct ca__guild *g =
        ca__guild_get(&c->st, ca__jid(cJSON_GetObjectItemCaseSensitive(d, "id")), -1, 0);
    if (!g)
        return;
    set_name(g, d);
    if (ca__on(c, CFG_CACHE_ROLES) && cJSON_GetObjectItemCaseSensitive(d, "roles")) {
        ca__gclear(&c->st, g, CA__M_ROLES);
        put_list(c, g, CA__M_ROLES, cJSON_GetObjectItemCaseSensitive(d, "roles"));
    }
    if (ca__on(c, CFG_CACHE_EMOJIS) && cJSON_GetObjectItemCaseSensitive(d, "emojis")) {
        ca__gclear(&c->st, g, CA__M_EMOJIS);
        put_list(c, g, CA__M_EMOJIS, cJSON_GetObjectItemCaseSensitive(d, "emojis"));
    }
    if (!ca__on(c, CFG_CACHE_GUILDS))
        return;
    cJSON *t = g->fields ? ca__blob_tree(g->fields, CA__PLAIN) : cJSON_CreateObject();
    if (!t)
        return;
    for (size_t i = 0; i < sizeof guild_skip / sizeof guild_skip[0]; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(d, guild_skip[i]);
    ca__merge(t, d);
    set_fields(c, g, t);
    cJSON_Delete(t);
}

static void guild_delete(struct ca_cache *c, cJSON *d)
{
    struct ca__guild *g =
        ca__guild_get(&c->st, ca__jid(cJSON_GetObjectItemCaseSensitive(d, "id")), -1, 0);
    if (!g)
        return;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "unavailable")))
        g->state = CA__G_LOADING;
    else
        ca__guild_remove(&c->st, g);
    ca__store_check_full(&c->st);
}

/* READY of a new session: drop the shard's guilds it does not list, list the rest loading. */
static void ready(struct ca_cache *c, const struct ca__item *it)
{
    struct ca__store *s = &c->st;
    struct ca__map keep = {0};
    int err;
    cJSON *o;
    cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(it->d, "guilds"))
    {
        uint64_t id = ca__jid(cJSON_GetObjectItemCaseSensitive(o, "id"));
        if (id)
            ca__map_put(&keep, id, o, &err);
    }
    for (size_t j = 0; j < s->guilds.cap; j++) {
        struct ca__guild *g = s->guilds.keys[j] ? s->guilds.vals[j] : NULL;
        if (g && g->shard == it->shard && !ca__map_get(&keep, g->id)) {
            ca__guild_remove(s, g);
            j--; /* the backward shift may have moved another guild into slot j */
        }
    }
    for (size_t j = 0; j < keep.cap; j++) {
        if (!keep.keys[j])
            continue;
        struct ca__guild *g = ca__guild_get(s, keep.keys[j], it->shard, 1);
        if (g)
            g->state = CA__G_LOADING;
    }
    ca__map_free(&keep);
    ca__put_user(c, cJSON_GetObjectItemCaseSensitive(it->d, "user"));
    ca__clear_lossy(c, it->shard, c->cur_seq); /* a new session: the state comes whole again */
    if (it->sess && it->shard < s->total)
        snprintf(s->shards[it->shard].session_id, sizeof s->shards[0].session_id, "%s",
                 it->sess->session_id);
    ca__store_check_full(s);
}

static void channel_set(struct ca_cache *c, cJSON *d, int map)
{
    struct ca__guild *g = ca__event_guild(c, d);
    if (!g || !ca__on(c, CFG_CACHE_CHANNELS))
        return;
    if (map == CA__M_THREADS) {
        ca__put_thread(c, g, d);
        return;
    }
    uint64_t id = ca__jid(cJSON_GetObjectItemCaseSensitive(d, "id"));
    if (!id)
        return;
    cJSON_DeleteItemFromObjectCaseSensitive(d, "guild_id");
    ca__gput(&c->st, g, map, id, shaped(d, CA__CHANNEL));
}

static void channel_delete(struct ca_cache *c, cJSON *d, int map)
{
    struct ca__guild *g = ca__event_guild(c, d);
    uint64_t id = ca__jid(cJSON_GetObjectItemCaseSensitive(d, "id"));
    if (!g)
        return;
    ca__gdel(&c->st, g, map, id);
    if (map == CA__M_THREADS)
        ca__gdel(&c->st, g, CA__M_THREAD_MEMBERS, id);
}

/* CHANNEL_PINS_UPDATE: the channel's (or thread's) last_pin_timestamp. */
static void pins_update(struct ca_cache *c, cJSON *d)
{
    struct ca__guild *g = ca__event_guild(c, d);
    uint64_t id = ca__jid(cJSON_GetObjectItemCaseSensitive(d, "channel_id"));
    int map = CA__M_CHANNELS;
    const struct ca__blob *b = g ? ca__map_get(&g->maps[map], id) : NULL;
    if (g && !b)
        b = ca__map_get(&g->maps[map = CA__M_THREADS], id);
    cJSON *t = b ? ca__blob_tree(b, CA__CHANNEL) : NULL;
    if (!t)
        return;
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(d, "last_pin_timestamp");
    cJSON *v = ts ? cJSON_Duplicate(ts, 1) : cJSON_CreateNull();
    if (v && cJSON_GetObjectItemCaseSensitive(t, "last_pin_timestamp"))
        cJSON_ReplaceItemInObjectCaseSensitive(t, "last_pin_timestamp", v);
    else if (v)
        cJSON_AddItemToObject(t, "last_pin_timestamp", v);
    ca__gput(&c->st, g, map, id, shaped(t, CA__CHANNEL));
    cJSON_Delete(t);
}

/* 1 when the thread blob's parent_id is among ids (NULL: every parent). */
static int parent_in(const struct ca__blob *b, const cJSON *ids)
{
    if (!ids)
        return 1;
    cJSON *t = ca__blob_tree(b, CA__PLAIN);
    uint64_t parent = ca__jid(cJSON_GetObjectItemCaseSensitive(t, "parent_id"));
    cJSON_Delete(t);
    const cJSON *o;
    cJSON_ArrayForEach(o, ids) if (ca__jid(o) == parent) return 1;
    return 0;
}

static void thread_sync(struct ca_cache *c, cJSON *d)
{
    struct ca__guild *g = ca__event_guild(c, d);
    if (!g || !ca__on(c, CFG_CACHE_CHANNELS))
        return;
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(d, "channel_ids");
    struct ca__map *m = &g->maps[CA__M_THREADS];
    for (size_t j = 0; j < m->cap; j++) {
        if (m->keys[j] && parent_in(m->vals[j], ids)) {
            uint64_t id = m->keys[j];
            ca__gdel(&c->st, g, CA__M_THREADS, id);
            ca__gdel(&c->st, g, CA__M_THREAD_MEMBERS, id);
            j--; /* the backward shift may have moved another thread into slot j */
        }
    }
    put_list(c, g, CA__M_THREADS, cJSON_GetObjectItemCaseSensitive(d, "threads"));
    cJSON *o;
    cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(d, "members"))
    {
        uint64_t id = ca__jid(cJSON_GetObjectItemCaseSensitive(o, "id"));
        if (id && ca__map_get(&g->maps[CA__M_THREADS], id)) {
            cJSON_DeleteItemFromObjectCaseSensitive(o, "guild_id");
            ca__gput(&c->st, g, CA__M_THREAD_MEMBERS, id, ca__blob_of(o, 0));
        }
    }
}

static void thread_member(struct ca_cache *c, cJSON *d)
{
    struct ca__guild *g = ca__event_guild(c, d);
    uint64_t id = ca__jid(cJSON_GetObjectItemCaseSensitive(d, "id"));
    if (!g || !id || !ca__map_get(&g->maps[CA__M_THREADS], id))
        return;
    cJSON_DeleteItemFromObjectCaseSensitive(d, "guild_id");
    ca__gput(&c->st, g, CA__M_THREAD_MEMBERS, id, ca__blob_of(d, 0));
}

static void role_event(struct ca_cache *c, cJSON *d, int del)
{
    struct ca__guild *g = ca__event_guild(c, d);
    if (!g || !ca__on(c, CFG_CACHE_ROLES))
        return;
    if (del) {
        ca__gdel(&c->st, g, CA__M_ROLES, ca__jid(cJSON_GetObjectItemCaseSensitive(d, "role_id")));
        return;
    }
    cJSON *r = cJSON_GetObjectItemCaseSensitive(d, "role");
    uint64_t id = ca__jid(cJSON_GetObjectItemCaseSensitive(r, "id"));
    if (id)
        ca__gput(&c->st, g, CA__M_ROLES, id, shaped(r, CA__ROLE));
}

static void list_replace(struct ca_cache *c, cJSON *d, int map, const char *key)
{
    struct ca__guild *g = ca__event_guild(c, d);
    if (!g || !ca__on(c, CFG_CACHE_EMOJIS))
        return;
    ca__gclear(&c->st, g, map);
    put_list(c, g, map, cJSON_GetObjectItemCaseSensitive(d, key));
}

static void apply_one(struct ca_cache *c, struct ca__item *it)
{
    cJSON *d = it->d;
    switch (it->ev) {
    case CA__EV_READY:
        ready(c, it);
        break;
    case CA__EV_GUILD_CREATE:
        guild_create(c, it->shard, d, it);
        break;
    case CA__EV_GUILD_UPDATE:
        guild_update(c, d);
        break;
    case CA__EV_GUILD_DELETE:
        guild_delete(c, d);
        break;
    case CA__EV_CHANNEL_SET:
        channel_set(c, d, CA__M_CHANNELS);
        break;
    case CA__EV_CHANNEL_DELETE:
        channel_delete(c, d, CA__M_CHANNELS);
        break;
    case CA__EV_PINS:
        pins_update(c, d);
        break;
    case CA__EV_THREAD_SET:
        channel_set(c, d, CA__M_THREADS);
        break;
    case CA__EV_THREAD_DELETE:
        channel_delete(c, d, CA__M_THREADS);
        break;
    case CA__EV_THREAD_SYNC:
        thread_sync(c, d);
        break;
    case CA__EV_THREAD_MEMBER:
        thread_member(c, d);
        break;
    case CA__EV_ROLE_SET:
        role_event(c, d, 0);
        break;
    case CA__EV_ROLE_DELETE:
        role_event(c, d, 1);
        break;
    case CA__EV_EMOJIS:
        list_replace(c, d, CA__M_EMOJIS, "emojis");
        break;
    case CA__EV_STICKERS:
        list_replace(c, d, CA__M_STICKERS, "stickers");
        break;
    default:
        ca__apply_member_event(c, it);
        break;
    }
}

/* GUILD_CREATE's lists read from their text, not through the tree: its members (always) and
   its presences (when they are not kept: nothing of them is). */
struct gc_cut {
    const char *p[2];
    size_t n[2];
    int presences;
};

static void find_members(void *ud, const char *k, size_t kl, const char *v, size_t vl)
{
    struct gc_cut *g = ud;
    int i = kl == 7 && !memcmp(k, "members", 7)                     ? 0
            : g->presences && kl == 9 && !memcmp(k, "presences", 9) ? 1
                                                                    : -1;
    if (i >= 0 && *v == '[') {
        g->p[i] = v;
        g->n[i] = vl;
    }
}

/* GUILD_CREATE: the tree of d without its members (most of its bytes), which are put from
   their text (ca__put_members_text), and without its presences when they are not kept; 0, or
   SH_EPARSE for the whole tree's path. */
static int parse_guild_create(struct ca_cache *c, const char *d, size_t dl, struct ca__item *it)
{
    struct gc_cut g = {.presences = !ca__on(c, CFG_CACHE_PRESENCES)};
    it->member_p = NULL;
    if (ca__each_member(d, d + dl, find_members, &g) < 0 || !g.p[0])
        return SH_EPARSE;
    int k = g.p[1] ? 2 : 1, first = k == 2 && g.p[1] < g.p[0];
    for (int i = 0; i < k; i++)
        if (!ca__json_valid(g.p[i], g.n[i]))
            return SH_EPARSE;
    char *t = malloc(dl + 4), *o = t;
    if (!t)
        return SH_EPARSE;
    const char *from = d;
    for (int j = 0; j < k; j++) { /* the cut spans in the order of the text */
        int i = first ? 1 - j : j;
        memcpy(o, from, (size_t)(g.p[i] - from));
        o += g.p[i] - from;
        memcpy(o, "[]", 2);
        o += 2;
        from = g.p[i] + g.n[i];
    }
    memcpy(o, from, (size_t)(d + dl - from));
    o += d + dl - from;
    it->d = cJSON_ParseWithLength(t, (size_t)(o - t));
    free(t);
    if (!cJSON_IsObject(it->d)) {
        cJSON_Delete(it->d);
        it->d = NULL;
        return SH_EPARSE;
    }
    it->member_p = g.p[0];
    it->member_n = g.n[0];
    return 0;
}

/* Parse event i of chunk into it (no lock held); it->ev NONE when the cache skips it. */
static void parse_one(struct ca_cache *c, const struct gw_chunk *ch, size_t i, struct ca__item *it)
{
    const struct gw_event *e = &ch->ev[i];
    memset(it, 0, sizeof *it);
    it->shard = e->shard;
    it->s = e->s;
    it->ev = lookup(ch->data.data + e->t_off, e->t_len);
    if (it->ev == CA__EV_NONE || !ca__wanted(c, it->ev)) {
        it->ev = CA__EV_NONE;
        return;
    }
    const char *dp;
    size_t dl;
    if (ca__find_d(ch->data.data + e->off, e->len, &dp, &dl) < 0) {
        it->ev = CA__EV_NONE;
        return;
    }
    if (it->ev == CA__EV_MESSAGE) {
        ca__parse_message(c, dp, dl, it);
        return;
    }
    ca__dedup_event(c, it->ev);
    if (it->ev == CA__EV_MEMBER_UPDATE && ca__parse_member_update(c, dp, dl, it) == 0)
        return;
    if (it->ev == CA__EV_GUILD_CREATE && parse_guild_create(c, dp, dl, it) == 0)
        return;
    it->d = cJSON_ParseWithLength(dp, dl);
    if (!cJSON_IsObject(it->d)) {
        cJSON_Delete(it->d);
        it->d = NULL;
        it->ev = CA__EV_NONE;
        return;
    }
    if (it->ev == CA__EV_READY)
        it->sess = gw_chunk_session(ch, i);
}

void ca__apply_chunk(struct ca_cache *c, const struct gw_chunk *ch)
{
    if (ch->n > c->items_cap) { /* kept from chunk to chunk: a large calloc per chunk made
                                   glibc consolidate every small block cJSON had freed */
        size_t cap = ch->n < 256 ? 256 : ch->n;
        struct ca__item *n = realloc(c->items, cap * sizeof *n);
        if (!n)
            return;
        c->items = n;
        c->items_cap = cap;
    }
    struct ca__item *items = c->items;
    for (size_t i = 0; i < ch->n; i++)
        parse_one(c, ch, i, &items[i]);
    pthread_rwlock_wrlock(&c->rw);
    uint64_t held = sh_now_ms();
    for (size_t i = 0; i < ch->n; i++) {
        struct ca__item *it = &items[i];
        uint64_t fmax = atomic_load(&c->forgot_max);
        if (fmax && c->cur_seq <= fmax && ca__forgotten(c, it->shard))
            continue; /* queued before its shard was forgotten (released) */
        if (it->ev != CA__EV_NONE && sh_now_ms() - held >= 5) { /* let readers in meanwhile */
            pthread_rwlock_unlock(&c->rw);
            pthread_rwlock_wrlock(&c->rw);
            held = sh_now_ms();
        }
        if (it->ev != CA__EV_NONE)
            apply_one(c, it);
        if (it->shard < c->st.total) {
            struct ca__shard *sh = &c->st.shards[it->shard];
            if (it->s > sh->s)
                sh->s = it->s;
            sh->changed = 1;
        }
    }
    pthread_rwlock_unlock(&c->rw);
    for (size_t i = 0; i < ch->n; i++)
        ca__item_free(&items[i]);
    if (ch->n)
        atomic_store(&c->lag_ms, sh_now_ms() - ch->ev[ch->n - 1].recv_ms);
}

/* b with the number under key one higher (b freed); b as it was when it has none. */
static struct ca__blob *count_up(struct ca__blob *b, const char *key)
{
    const char *v;
    size_t vl;
    if (!b || ca__blob_find(b, key, &v, &vl) < 0)
        return b;
    char num[32];
    int n = snprintf(num, sizeof num, "%llu", strtoull(v, NULL, 10) + 1);
    struct ca__blob *nb = ca__blob_patch(b, key, num, (size_t)n);
    if (!nb)
        return b;
    free(b);
    return nb;
}

void ca__touch_channel(struct ca_cache *c, uint64_t channel_id, uint64_t msg_id)
{
    struct ca__guild *g = ca__map_get(&c->st.chan, channel_id);
    int map = CA__M_CHANNELS;
    const struct ca__blob *b = g ? ca__map_get(&g->maps[map], channel_id) : NULL;
    if (g && !b)
        b = ca__map_get(&g->maps[map = CA__M_THREADS], channel_id);
    const char *v;
    size_t vl;
    if (!b || ca__blob_find(b, "last_message_id", &v, &vl) < 0 || ca__id(v, vl) >= msg_id)
        return; /* not kept, or a replayed message: counted once */
    char id[32];
    int n = snprintf(id, sizeof id, "\"%llu\"", (unsigned long long)msg_id);
    struct ca__blob *nb = ca__blob_patch(b, "last_message_id", id, (size_t)n);
    if (map == CA__M_THREADS)
        nb = count_up(count_up(nb, "message_count"), "total_message_sent");
    if (nb)
        ca__gput(&c->st, g, map, channel_id, nb);
}
