/*
 * cache/cache_int.h: the cache object and the functions the files of cache/ share: the thread
 * and its queue (cache.c), applying events (apply.c), the JSON text helpers (json.c), the read
 * shapes (shape.c) and snapshots (snapshot.c). Lock order: c->lock (queue) is never held while
 * taking c->rw.
 */
#ifndef SHARDHOOK_CA_CACHE_INT_H
#define SHARDHOOK_CA_CACHE_INT_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>

#include "cache/cache.h"
#include "cache/store.h"

/* Bytes of chunks waiting for the cache thread; past it a chunk is dropped for the cache. */
#define CA__QUEUE_MAX_BYTES ((size_t)64 << 20)
/* Slots of the MESSAGE_CREATE dedup table (a power of two; 16 bytes each, two per set). */
#define CA__DEDUP_SLOTS 262144

struct ca__snapreq;
struct ca__item;

/* A snapshot read by ca_cache_load, waiting for the cache thread to apply it (snapshot.c). */
struct ca__load {
    struct ca__load *next;
    int shard;
    uint64_t at;     /* c->pushed when it was read: it goes before the chunks pushed after */
    struct sh_buf z; /* the snapshot as stored (zstd) */
};

struct ca_cache {
    const struct cfg_config *cfg;
    int total;
    struct ca_snapshot_io io;
    int has_io;

    pthread_rwlock_t rw; /* readers: ca_cache_read; writer: whoever applies */
    struct ca__store st;

    pthread_mutex_t lock; /* the queue, its totals, snapshot requests, stopping */
    pthread_cond_t wake;  /* the cache thread waits on it */
    pthread_cond_t done;  /* snapshot requesters wait on it */
    struct sh_queue q;
    size_t q_bytes, q_events;
    uint64_t pushed, applied; /* chunks queued / applied, in order */
    uint64_t *lossy_at; /* [shard]: 0, or the chunk number after which events of the shard were
                           dropped: its snapshots would claim an s the cache does not reflect, so
                           none is written until a READY at or after it */
    uint64_t cur_seq;   /* the number of the chunk being applied (cache thread) */
    _Atomic uint64_t *forgot_at; /* [shard]: c->pushed when the shard was last forgotten: its
                                    events in chunks up to that one are dropped (queued before
                                    the forget, they would bring its guilds back) */
    _Atomic uint64_t forgot_max; /* the highest of them (0: none), checked per chunk */
    int stopping, started;
    int dropping; /* within a drop episode (one log line each) */
    pthread_t th;
    struct ca__snapreq *reqs;
    struct ca__load *loads, **loads_tail; /* in `at` order, under c->lock */
    _Atomic int n_loads;                  /* how many wait (checked per chunk without the lock) */
    _Atomic unsigned char *snap_pending;  /* [shard]: 1 while a snapshot of it waits to apply */
    int applying;       /* the shard whose snapshot the cache thread applies now, -1 none */
    int load_cancelled; /* that shard was forgotten meanwhile (under c->lock) */

    _Atomic uint64_t lag_ms;
    _Atomic uint64_t dropped;
    _Atomic unsigned dedup_gen; /* bumped to clear the dedup table (other threads) */
    unsigned dedup_seen;
    uint64_t (*dedup)[2]; /* [slot] = {guild ^ user key, hash}; cache thread only */
    uint64_t next_snap_ms;
    struct ca__item *items; /* the chunk being applied (cache thread; kept between chunks) */
    size_t items_cap;
};

/* 1 when kind (CFG_CACHE_<KIND>) is kept (apply.c). */
int ca__on(const struct ca_cache *c, int kind);

/* ---- json.c: scanning encoded events and the text of blobs ---- */

/* The end of the JSON value starting at p (whitespace skipped first), or NULL when malformed. */
const char *ca__skip_value(const char *p, const char *end);
/*
 * Walk the top-level members of the object at [p, end): for each, fn(ud, key, klen, value,
 * vlen) (key without quotes, value as its text). 0, or SH_EPARSE when not an object.
 */
int ca__each_member(const char *p, const char *end,
                    void (*fn)(void *ud, const char *k, size_t kl, const char *v, size_t vl),
                    void *ud);
/* A 64-bit hash of n bytes, continuing from h (start with 0); not for adversaries' use. */
uint64_t ca__hash(uint64_t h, const void *p, size_t n);

/* A snowflake from a cJSON string or number item (0 when neither). */
uint64_t ca__jid(const cJSON *item);
/* Blob of o printed compactly (strip as given); NULL when out of memory. */
struct ca__blob *ca__blob_of(const cJSON *o, uint16_t strip);
/* Which defaults a blob's strip bits name. */
enum ca__shape { CA__PLAIN = 0, CA__MEMBER, CA__USER, CA__CHANNEL, CA__ROLE, CA__EMOJI };
/* The defaults of shape left out of o (removed from it), as a strip mask. */
uint16_t ca__strip(cJSON *o, enum ca__shape shape);
/* Put the defaults of mask back into o (what ca__strip took out). */
void ca__unstrip(cJSON *o, uint16_t mask, enum ca__shape shape);
/* Append b as an object of shape: the defaults it left out, then its own members. */
int ca__write_blob(const struct ca__blob *b, enum ca__shape shape, struct sh_buf *out);
/* Append blob b as a member object: the defaults it left out, "user" when known, the rest. */
int ca__write_member(const struct ca__store *s, uint64_t uid, const struct ca__blob *b,
                     struct sh_buf *out);
/* Append b (of shape) with "guild_id":"gid" put back as its first key. */
int ca__write_with_gid(const struct ca__blob *b, enum ca__shape shape, uint64_t gid,
                       struct sh_buf *out);
/* The shape of what map i (enum ca__gmap) of a guild holds. */
enum ca__shape ca__gmap_shape(int i);
/* Parse blob b of shape back into a tree (its defaults restored); NULL on error. */
cJSON *ca__blob_tree(const struct ca__blob *b, enum ca__shape shape);

/* The value of top-level key (a key of b's, by text: blobs are compact JSON) in v and vl:
   0, SH_ENOTFOUND or SH_EPARSE. */
int ca__blob_find(const struct ca__blob *b, const char *key, const char **v, size_t *vl);
/* A copy of b with key's value replaced by the len bytes at val; NULL when absent / no memory. */
struct ca__blob *ca__blob_patch(const struct ca__blob *b, const char *key, const char *val,
                                size_t len);

/* 1 when [p, p+n) is one whole valid JSON value (strict: strings, escapes, numbers). */
int ca__json_valid(const char *p, size_t n);
/* A blob of the valid object text [p, p+n), written as given but for the top-level keys that
   hold their default of shape (noted in the mask) and those named in drop (NULL-ended, or
   NULL); NULL when out of memory. Same answer as ca__blob_of over its tree, without one. */
struct ca__blob *ca__blob_text(const char *p, size_t n, enum ca__shape shape,
                               const char *const *drop);

/* ---- apply.c ---- */

/* Apply every event of chunk (cache thread): parse outside the write lock, apply under it. */
void ca__apply_chunk(struct ca_cache *c, const struct gw_chunk *chunk);
/* Apply d as a GUILD_CREATE of shard (write lock held). */
void ca__apply_guild_create(struct ca_cache *c, int shard, cJSON *d);

/* ---- shape.c ---- */

/* Append the guild as a GUILD_CREATE-shaped object (snapshots; read lock held). */
int ca__write_guild_full(const struct ca__store *s, const struct ca__guild *g, struct sh_buf *out);

/* ---- perms_read.c: CA_PERMISSIONS of member q->id in g (read lock held) ---- */
int ca__read_permissions(struct ca_cache *c, const struct ca__guild *g, const struct ca_query *q,
                         struct sh_buf *out);
/* Wall-clock ms of an ISO 8601 timestamp ("2021-12-01T12:00:00.000000+00:00"), 0 when bad. */
uint64_t ca__iso8601_ms(const char *s);

/* ---- cache.c ---- */
/* A READY (seq: its chunk's number; UINT64_MAX: a load or forget) ends shard's lossy state when
   it came after the drop. */
void ca__clear_lossy(struct ca_cache *c, int shard, uint64_t seq);
/* 1 when an event of shard in the chunk being applied came before the shard was forgotten. */
int ca__forgotten(struct ca_cache *c, int shard);
/* 1 while shard's snapshots are held back (events of it were dropped). */
int ca__lossy(struct ca_cache *c, int shard);
/* CA_STATS (takes the locks it needs). */
int ca__read_stats(struct ca_cache *c, struct sh_buf *out);

/* ---- snapshot.c ---- */

/* Apply the loads queued before chunk number before (those whose at < before); cache thread. */
void ca__apply_loads(struct ca_cache *c, uint64_t before);
/* Forget the loads of shard still waiting (c->lock held). */
void ca__drop_loads(struct ca_cache *c, int shard);
/* Free every load still waiting (stopping). */
void ca__free_loads(struct ca_cache *c);

/* Write shard's snapshot through c->io (cache thread or a caller; takes the read lock). */
int ca__snapshot_write(struct ca_cache *c, int shard);
/* The same for shard, or (-1) every shard holding guilds: 0 or the first error. */
int ca__snapshot_shards(struct ca_cache *c, int shard);

#endif
