/*
 * cache/cache.h: the entity cache's public face (../docs/cache.md). With a `cache` block in the
 * config, shardhook keeps the guilds, channels and threads, roles, emojis and stickers, members,
 * voice states, presences (when asked for) and users that the gateway's events describe, and
 * answers reads of them in the JSON shapes of Discord's REST API.
 *
 * Threads: one cache thread owns every write. The delivery thread hands it each chunk of
 * encoded events after routing it (ca_cache_push takes ownership; never on the gateway
 * thread); the cache thread parses what it keeps and applies it. Readers (the control API's
 * threads) call the ca_cache_read family at any time: they copy the answer into their own
 * buffer under a short read lock. The cache never holds up delivery: past its queue bound a
 * chunk is dropped for the cache (counted, logged once) and delivery goes on.
 *
 * Snapshots: per shard, the cache writes a zstd-compressed snapshot of what the shard's guilds
 * hold, with the s it reflects, through struct ca_snapshot_io (bridge/main.c fills it: files
 * in state_dir in single-node mode, Redis in cluster mode); periodically, at a graceful stop
 * and at a handoff. ca_cache_load puts one back before its shard starts again.
 *
 * Includes lib/, config/ and gateway/sink.h (the chunk type) only.
 */
#ifndef SHARDHOOK_CA_CACHE_H
#define SHARDHOOK_CA_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "gateway/sink.h"
#include "lib/buf.h"

struct ca_cache;

/* What a read asks for. Paths are those of docs/api.md (under /v1). */
enum ca_what {
    CA_GUILD = 1,    /* /guilds/{id}: REST's guild object (roles, emojis, stickers inside) */
    CA_CHANNELS,     /* /guilds/{id}/channels: array of channel objects, threads not included */
    CA_THREADS,      /* /guilds/{id}/threads: {"threads":[...],"members":[...]} */
    CA_ROLES,        /* /guilds/{id}/roles: array of role objects */
    CA_EMOJIS,       /* /guilds/{id}/emojis: array of emoji objects */
    CA_MEMBERS,      /* /guilds/{id}/members?limit=&after=: array, by user id ascending */
    CA_MEMBER,       /* /guilds/{id}/members/{user_id}: member object with "user" */
    CA_VOICE_STATES, /* /guilds/{id}/voice-states: array of voice state objects */
    CA_VOICE_STATE,  /* /guilds/{id}/voice-states/{user_id}: voice state object */
    CA_CHANNEL,      /* /channels/{id}: channel or thread object (with guild_id) */
    CA_USER,         /* /users/{id}: user object */
    CA_GUILD_LIST,   /* /cache/guilds?limit=&after=: {"guilds":[{id,name,shard,member_count}]} */
    CA_STATS,        /* /cache: counts, bytes per kind, lag (see ca_cache_read) */
    CA_PERMISSIONS,  /* /guilds/{id}/members/{user_id}/permissions?channel_id= */
};

struct ca_query {
    enum ca_what what;
    uint64_t guild_id;   /* the routes under /guilds/{id} */
    uint64_t id;         /* user_id (MEMBER, VOICE_STATE, USER, PERMISSIONS) or channel id */
    uint64_t after;      /* MEMBERS, GUILD_LIST: ids strictly above it (0: from the start) */
    int limit;           /* MEMBERS 1..1000 (REST's default 1), GUILD_LIST 1..1000 */
    uint64_t channel_id; /* PERMISSIONS: 0 for the guild-level permissions */
};

/* Read answers besides 0 (body in out) and SH_ENOMEM / SH_ETOOBIG (out's cap). */
#define CA_NOT_CACHED 1 /* the kind this read needs is not kept (config): a 404 that says so */
#define CA_UNKNOWN 2    /* the cache holds no such entity: 404 */
#define CA_LOADING                                                                                 \
    3 /* the guild is known but not loaded yet (READY listed it, no                                \
         GUILD_CREATE yet, or it is unavailable): 503 with Retry-After */

/*
 * Answer q into out (appended; JSON exactly as Discord's REST API answers the same object).
 * Returns 0, CA_NOT_CACHED, CA_UNKNOWN, CA_LOADING, or a negative SH_E code. Any thread.
 * CA_UNKNOWN for a guild the cache has never seen: the caller decides whether the guild's shard
 * is still starting (a 503 then) from the gateway's status.
 * CA_PERMISSIONS answers {"permissions":"<decimal>","names":["VIEW_CHANNEL",...]}.
 * CA_STATS answers {"kinds":{"guilds":{"enabled":true,"count":N,"bytes":B},...},
 *   "bytes":B,"max_bytes":M,"full":false,"queued_events":N,"lag_ms":L,"dropped_events":N,
 *   "shards":[{"id","s","guilds","loading"}]}.
 */
int ca_cache_read(struct ca_cache *c, const struct ca_query *q, struct sh_buf *out);

/* The shard a guild belongs to in the cache's records, -1 when unknown. Any thread. */
int ca_cache_guild_shard(struct ca_cache *c, uint64_t guild_id);

/* ---- snapshots ---------------------------------------------------------------------------- */

/*
 * Where snapshots go (bridge/main.c fills it). put stores shard's snapshot (len bytes,
 * replacing the last): 0, or negative (SH_EFENCED: another node owns the shard now). get reads
 * it into out: 0, SH_ENOTFOUND, or negative. Both run on the cache thread (put) or on the
 * caller of ca_cache_load (get) and may block briefly.
 */
struct ca_snapshot_io {
    int (*put)(void *ud, int shard, const void *data, size_t len);
    int (*get)(void *ud, int shard, struct sh_buf *out);
    void *ud;
};

/* What a loaded snapshot reflects: the session and the highest s applied. */
struct ca_snapshot_info {
    char session_id[128]; /* "" when the snapshot had none */
    uint64_t s;
};

/* ---- life cycle ----------------------------------------------------------------------------- */

/*
 * A cache for cfg (cfg->cache set) of a bot with total shards; io may be NULL (no snapshots).
 * Starts nothing. On failure returns negative with one line in err.
 */
int ca_cache_new(const struct cfg_config *cfg, int total, const struct ca_snapshot_io *io,
                 struct ca_cache **out, char *err, size_t errlen);
/* Start the cache thread. */
int ca_cache_start(struct ca_cache *c);

/*
 * Before shard (re)starts here: read its snapshot through io->get and queue it for the cache
 * thread, which applies it before any chunk pushed after this call (so before the resumed
 * session's events); until then reads of the shard's guilds answer CA_LOADING. Only the head
 * of the snapshot is read here, so the caller (the cluster's coordination thread on a takeover)
 * waits for the read, not for megabytes of members to be parsed. 0 with *info filled (from the
 * head); SH_ENOTFOUND when there is none; SH_ECORRUPT / SH_EPARSE for a bad one (logged,
 * ignored: the cache stays empty for that shard; a body found bad later is logged the same way).
 * Any thread; without a started cache thread it applies at once.
 */
int ca_cache_load(struct ca_cache *c, int shard, struct ca_snapshot_info *info);

/*
 * Delivery thread, after routing: takes ownership of chunk (frees it with gw_chunk_free, now
 * when dropped or later on the cache thread). Never blocks on the cache.
 */
void ca_cache_push(struct ca_cache *c, struct gw_chunk *chunk);

/*
 * Write shard's snapshot (shard -1: every shard with guilds) once every chunk pushed before
 * this call is applied; wait at most timeout_ms for it. 0 written, SH_ETIMEDOUT, or the put's
 * error. Any thread but the cache thread.
 */
int ca_cache_snapshot(struct ca_cache *c, int shard, int timeout_ms);

/* A shard this node no longer holds (cluster release): forget its guilds. Any thread. */
void ca_cache_forget_shard(struct ca_cache *c, int shard);

/* Stop and join the thread (applies what is queued first); then free. */
void ca_cache_stop(struct ca_cache *c);
void ca_cache_free(struct ca_cache *c);

#endif
