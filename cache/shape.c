/*
 * cache/shape.c: the reads of cache/cache.h (ca_cache_read, ca_cache_guild_shard): every
 * answer in the JSON shape of Discord's REST API, lists sorted by id ascending, written from
 * the blobs under the read lock; and the GUILD_CREATE-shaped guild that snapshots hold.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache_int.h"
#include "lib/errors.h"
#include "lib/json.h"

enum wr { WR_RAW = 0, WR_GID, WR_MEMBER };

enum ca__shape ca__gmap_shape(int i)
{
    if (i == CA__M_CHANNELS || i == CA__M_THREADS)
        return CA__CHANNEL;
    return i == CA__M_ROLES     ? CA__ROLE
           : i == CA__M_MEMBERS ? CA__MEMBER
           : i == CA__M_EMOJIS  ? CA__EMOJI
                                : CA__PLAIN;
}

static int write_one(const struct ca__store *s, const struct ca__guild *g, int map, enum wr how,
                     uint64_t id, const struct ca__blob *b, struct sh_buf *out)
{
    if (how == WR_MEMBER)
        return ca__write_member(s, id, b, out);
    if (how == WR_GID)
        return ca__write_with_gid(b, ca__gmap_shape(map), g->id, out);
    return ca__write_blob(b, ca__gmap_shape(map), out);
}

/* Append map i of g as a JSON array (ids above after, at most limit when limit > 0). */
static int write_map(const struct ca__store *s, const struct ca__guild *g, int i, enum wr how,
                     uint64_t after, long limit, struct sh_buf *out)
{
    uint64_t *keys;
    long n = ca__map_sorted_keys(&g->maps[i], after, limit > 0 ? (size_t)limit : 0, &keys);
    if (n < 0)
        return (int)n;
    int rc = sh_buf_append(out, "[", 1);
    for (long k = 0; rc == 0 && k < n; k++) {
        if (k && (rc = sh_buf_append(out, ",", 1)) < 0)
            break;
        rc = write_one(s, g, i, how, keys[k], ca__map_get(&g->maps[i], keys[k]), out);
    }
    free(keys);
    return rc ? rc : sh_buf_append(out, "]", 1);
}

/* Append the guild's own fields without the closing brace. */
static int open_fields(const struct ca__guild *g, struct sh_buf *out)
{
    if (g->fields && g->fields->len >= 2)
        return sh_buf_append(out, g->fields->data, g->fields->len - 1);
    int rc = sh_buf_printf(out, "{\"id\":\"%llu\"", (unsigned long long)g->id);
    if (rc == 0 && g->name)
        rc =
            sh_buf_append_str(out, ",\"name\":") ?: sh_json_quote(out, g->name, strlen(g->name), 0);
    if (rc == 0 && g->owner_id)
        rc = sh_buf_printf(out, ",\"owner_id\":\"%llu\"", (unsigned long long)g->owner_id);
    return rc;
}

static int sep(struct sh_buf *out)
{
    return out->data[out->len - 1] != '{' ? sh_buf_append(out, ",", 1) : 0;
}

static int write_guild(const struct ca__store *s, const struct ca__guild *g, struct sh_buf *out)
{
    int rc = open_fields(g, out);
    rc = rc ?: sep(out) ?: sh_buf_append_str(out, "\"roles\":");
    rc = rc ?: write_map(s, g, CA__M_ROLES, WR_RAW, 0, 0, out);
    rc = rc ?: sh_buf_append_str(out, ",\"emojis\":");
    rc = rc ?: write_map(s, g, CA__M_EMOJIS, WR_RAW, 0, 0, out);
    rc = rc ?: sh_buf_append_str(out, ",\"stickers\":");
    rc = rc ?: write_map(s, g, CA__M_STICKERS, WR_RAW, 0, 0, out);
    return rc ?: sh_buf_append(out, "}", 1);
}

/* Threads with the bot's thread member inside as "member" (GUILD_CREATE's shape). */
static int write_threads_full(const struct ca__guild *g, struct sh_buf *out)
{
    uint64_t *keys;
    long n = ca__map_sorted_keys(&g->maps[CA__M_THREADS], 0, 0, &keys);
    if (n < 0)
        return (int)n;
    int rc = sh_buf_append(out, "[", 1);
    for (long k = 0; rc == 0 && k < n; k++) {
        const struct ca__blob *b = ca__map_get(&g->maps[CA__M_THREADS], keys[k]);
        const struct ca__blob *m = ca__map_get(&g->maps[CA__M_THREAD_MEMBERS], keys[k]);
        rc = k ? sh_buf_append(out, ",", 1) : 0;
        rc = rc ?: ca__write_blob(b, CA__CHANNEL, out);
        if (rc == 0)
            out->len--; /* reopened for its member */
        if (rc == 0 && m)
            rc = sep(out) ?: sh_buf_append_str(out, "\"member\":") ?: sh_buf_append(out, m->data, m->len);
        rc = rc ?: sh_buf_append(out, "}", 1);
    }
    free(keys);
    return rc ?: sh_buf_append(out, "]", 1);
}

int ca__write_guild_full(const struct ca__store *s, const struct ca__guild *g, struct sh_buf *out)
{
    static const struct {
        const char *key;
        int map;
        enum wr how;
    } parts[] = {
        {"roles", CA__M_ROLES, WR_RAW},         {"emojis", CA__M_EMOJIS, WR_RAW},
        {"stickers", CA__M_STICKERS, WR_RAW},   {"channels", CA__M_CHANNELS, WR_RAW},
        {"members", CA__M_MEMBERS, WR_MEMBER},  {"voice_states", CA__M_VOICE, WR_RAW},
        {"presences", CA__M_PRESENCES, WR_RAW},
    };
    if (g->state == CA__G_LOADING && !g->fields && !g->name)
        return sh_buf_printf(out, "{\"id\":\"%llu\",\"unavailable\":true}",
                             (unsigned long long)g->id);
    int rc = open_fields(g, out);
    rc = rc ?: sh_buf_printf(out, ",\"member_count\":%lld", g->member_count);
    if (rc == 0 && g->state == CA__G_LOADING)
        rc = sh_buf_append_str(out, ",\"unavailable\":true");
    for (size_t i = 0; rc == 0 && i < sizeof parts / sizeof parts[0]; i++) {
        rc = sh_buf_printf(out, ",\"%s\":", parts[i].key);
        rc = rc ?: write_map(s, g, parts[i].map, parts[i].how, 0, 0, out);
    }
    rc = rc ?: sh_buf_append_str(out, ",\"threads\":") ?: write_threads_full(g, out);
    return rc ?: sh_buf_append(out, "}", 1);
}

static int write_guild_list(struct ca__store *s, const struct ca_query *q, struct sh_buf *out)
{
    uint64_t *keys;
    long n = ca__map_sorted_keys(&s->guilds, q->after, 0, &keys);
    if (n < 0)
        return (int)n;
    long limit = q->limit > 0 ? q->limit : 100, w = 0;
    int rc = sh_buf_append_str(out, "{\"guilds\":[");
    for (long k = 0; rc == 0 && k < n && w < limit; k++) {
        const struct ca__guild *g = ca__map_get(&s->guilds, keys[k]);
        if (g->state == CA__G_LOADING)
            continue; /* listed once it is available */
        rc = sh_buf_printf(out, "%s{\"id\":\"%llu\",\"name\":", w++ ? "," : "",
                           (unsigned long long)g->id);
        if (rc == 0)
            rc = g->name ? sh_json_quote(out, g->name, strlen(g->name), 0)
                         : sh_buf_append_str(out, "null");
        rc = rc
                 ?: sh_buf_printf(out, ",\"shard\":%d,\"member_count\":%lld}", g->shard,
                                  g->member_count);
    }
    free(keys);
    return rc ?: sh_buf_append_str(out, "]}");
}

/* The kind (CFG_CACHE_<KIND>) a read needs, or -1 for none. */
static int needed_kind(enum ca_what w)
{
    switch (w) {
    case CA_GUILD:
        return CFG_CACHE_GUILDS;
    case CA_CHANNELS:
    case CA_THREADS:
    case CA_CHANNEL:
        return CFG_CACHE_CHANNELS;
    case CA_ROLES:
        return CFG_CACHE_ROLES;
    case CA_EMOJIS:
        return CFG_CACHE_EMOJIS;
    case CA_MEMBERS:
    case CA_MEMBER:
    case CA_PERMISSIONS:
        return CFG_CACHE_MEMBERS;
    case CA_VOICE_STATES:
    case CA_VOICE_STATE:
        return CFG_CACHE_VOICE_STATES;
    default:
        return -1;
    }
}

static int read_channel(struct ca__store *s, uint64_t id, struct sh_buf *out)
{
    struct ca__guild *g = ca__map_get(&s->chan, id);
    if (!g)
        return CA_UNKNOWN;
    const struct ca__blob *b = ca__map_get(&g->maps[CA__M_CHANNELS], id);
    if (!b)
        b = ca__map_get(&g->maps[CA__M_THREADS], id);
    return b ? ca__write_with_gid(b, CA__CHANNEL, g->id, out) : CA_UNKNOWN;
}

static int read_threads(struct ca__store *s, struct ca__guild *g, struct sh_buf *out)
{
    int rc = sh_buf_append_str(out, "{\"threads\":");
    rc = rc ?: write_map(s, g, CA__M_THREADS, WR_GID, 0, 0, out);
    rc = rc ?: sh_buf_append_str(out, ",\"members\":");
    rc = rc ?: write_map(s, g, CA__M_THREAD_MEMBERS, WR_RAW, 0, 0, out);
    return rc ?: sh_buf_append(out, "}", 1);
}

static int read_one(struct ca__store *s, struct ca__guild *g, int map, enum wr how, uint64_t id,
                    struct sh_buf *out)
{
    const struct ca__blob *b = ca__map_get(&g->maps[map], id);
    return b ? write_one(s, g, map, how, id, b, out) : CA_UNKNOWN;
}

static int read_guild_scoped(struct ca_cache *c, const struct ca_query *q, struct sh_buf *out)
{
    struct ca__store *s = &c->st;
    struct ca__guild *g = ca__map_get(&s->guilds, q->guild_id);
    if (!g) /* its shard's snapshot, still waiting to apply, may bring it */
        return atomic_load(&c->snap_pending[(q->guild_id >> 22) % (uint64_t)c->total]) ? CA_LOADING
                                                                                       : CA_UNKNOWN;
    if (g->state == CA__G_LOADING)
        return CA_LOADING;
    long limit = q->limit > 0 ? q->limit : 1;
    switch (q->what) {
    case CA_GUILD:
        return write_guild(s, g, out);
    case CA_CHANNELS:
        return write_map(s, g, CA__M_CHANNELS, WR_GID, 0, 0, out);
    case CA_THREADS:
        return read_threads(s, g, out);
    case CA_ROLES:
        return write_map(s, g, CA__M_ROLES, WR_RAW, 0, 0, out);
    case CA_EMOJIS:
        return write_map(s, g, CA__M_EMOJIS, WR_RAW, 0, 0, out);
    case CA_MEMBERS:
        return write_map(s, g, CA__M_MEMBERS, WR_MEMBER, q->after, limit, out);
    case CA_MEMBER:
        return read_one(s, g, CA__M_MEMBERS, WR_MEMBER, q->id, out);
    case CA_VOICE_STATES:
        return write_map(s, g, CA__M_VOICE, WR_GID, 0, 0, out);
    case CA_VOICE_STATE:
        return read_one(s, g, CA__M_VOICE, WR_GID, q->id, out);
    case CA_PERMISSIONS:
        return ca__read_permissions(c, g, q, out);
    default:
        return SH_EINVAL;
    }
}

int ca_cache_read(struct ca_cache *c, const struct ca_query *q, struct sh_buf *out)
{
    int kind = needed_kind(q->what);
    if (kind >= 0 && !ca__on(c, kind))
        return CA_NOT_CACHED;
    if (q->what == CA_PERMISSIONS &&
        (!ca__on(c, CFG_CACHE_ROLES) || (q->channel_id && !ca__on(c, CFG_CACHE_CHANNELS))))
        return CA_NOT_CACHED;
    if (q->what == CA_STATS)
        return ca__read_stats(c, out);
    size_t len0 = out->len;
    pthread_rwlock_rdlock(&c->rw);
    int rc;
    if (q->what == CA_CHANNEL) {
        rc = read_channel(&c->st, q->id, out);
    } else if (q->what == CA_USER) {
        const struct ca__blob *b = ca__map_get(&c->st.users, q->id);
        rc = b ? ca__write_blob(b, CA__USER, out) : CA_UNKNOWN;
    } else if (q->what == CA_GUILD_LIST) {
        rc = write_guild_list(&c->st, q, out);
    } else {
        rc = read_guild_scoped(c, q, out);
    }
    pthread_rwlock_unlock(&c->rw);
    if (rc != 0)
        out->len = len0; /* no half answer */
    return rc;
}

int ca_cache_guild_shard(struct ca_cache *c, uint64_t guild_id)
{
    pthread_rwlock_rdlock(&c->rw);
    const struct ca__guild *g = ca__map_get(&c->st.guilds, guild_id);
    int shard = g ? g->shard : -1;
    pthread_rwlock_unlock(&c->rw);
    return shard;
}
