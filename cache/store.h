/*
 * cache/store.h: what the entity cache holds, shared by the files of cache/ only (docs/cache.md).
 *
 * Every entity is a blob: compact JSON text in Discord's REST shape with what can be restored
 * left out (a member's user, which lives once in the users map; a child's guild_id; a member's
 * keys that hold their documented default, noted in the blob's strip mask). Maps are
 * open-addressing hash tables keyed by the snowflake (linear probing, backward-shift delete,
 * key 0 marks a free slot). Bytes are counted per kind as the memory really taken: each
 * blob's heap chunk (malloc_usable_size plus its 8-byte header) and CA__SLOT_BYTES for each map
 * holding it. Callers hold the cache's write lock to change anything, its read lock to read.
 */
#ifndef SHARDHOOK_CA_STORE_H
#define SHARDHOOK_CA_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* Bytes counted for each map slot an entry takes: 16-byte slots at 25-50 % fill (the maps
   double when half full) cost 32-64 bytes an entry, measured about 40 on a large population. */
#define CA__SLOT_BYTES 40
/* Bytes counted for a guild record besides its fields blob: the record and its slot. */
#define CA__GUILD_BYTES ((long long)sizeof(struct ca__guild) + 8 + CA__SLOT_BYTES)

/* What the cache counts bytes and entries of (CA_STATS, metrics). */
enum ca__kind {
    CA__K_GUILDS = 0,
    CA__K_CHANNELS,
    CA__K_THREADS,
    CA__K_ROLES,
    CA__K_EMOJIS,
    CA__K_STICKERS,
    CA__K_MEMBERS,
    CA__K_VOICE,
    CA__K_PRESENCES,
    CA__K_USERS,
    CA__K_COUNT
};
extern const char *const ca__kind_names[CA__K_COUNT];

/* One entity: len bytes of JSON text (no NUL), strip notes what the output restores. */
struct ca__blob {
    uint32_t len;
    uint16_t strip; /* bit i set: defaults[i] of the blob's kind was left out */
    char data[];
};

struct ca__map {
    uint64_t *keys; /* 0: free */
    void **vals;
    uint32_t cap, n; /* cap a power of two, or 0 */
};

void *ca__map_get(const struct ca__map *m, uint64_t key);
/* Put (replace) key -> val; returns the old value or NULL. SH_ENOMEM: *err set, nothing put. */
void *ca__map_put(struct ca__map *m, uint64_t key, void *val, int *err);
/* Room for n entries without growing again: 0 or SH_ENOMEM (the map unchanged). */
int ca__map_reserve(struct ca__map *m, size_t n);
/* Remove key; returns its value or NULL. */
void *ca__map_del(struct ca__map *m, uint64_t key);
void ca__map_free(struct ca__map *m);
/* The keys held, sorted ascending, those > after only, the first limit of them (0: all); caller
   frees *out. Count or negative. */
long ca__map_sorted_keys(const struct ca__map *m, uint64_t after, size_t limit, uint64_t **out);

enum ca__gstate { CA__G_LOADED = 0, CA__G_LOADING };

enum ca__gmap {
    CA__M_CHANNELS = 0,
    CA__M_THREADS,
    CA__M_ROLES,
    CA__M_EMOJIS,
    CA__M_STICKERS,
    CA__M_MEMBERS,
    CA__M_VOICE,
    CA__M_PRESENCES,
    CA__M_THREAD_MEMBERS, /* the bot's thread member object, by thread id */
    CA__M_COUNT
};

struct ca__guild {
    uint64_t id;
    int shard;
    int state;               /* enum ca__gstate */
    char *name;              /* for CA_GUILD_LIST; NULL when unknown */
    uint64_t owner_id;       /* for permissions */
    long long member_count;  /* as GUILD_CREATE said, then +1/-1 */
    struct ca__blob *fields; /* the guild object without children and gateway-only keys */
    struct ca__map maps[CA__M_COUNT];
};

struct ca__shard {
    char session_id[128];
    uint64_t s;       /* highest s applied */
    int changed;      /* something applied since its last snapshot */
    long long guilds; /* guild records of this shard */
};

struct ca__store {
    struct ca__map guilds; /* id -> struct ca__guild */
    struct ca__map chan;   /* channel or thread id -> struct ca__guild */
    struct ca__map users;  /* id -> struct ca__blob */
    unsigned kinds;        /* 1u << CFG_CACHE_<KIND> kept */
    size_t max_bytes;      /* hard bound */
    size_t bytes;          /* all kinds together */
    int full;              /* past max_bytes: no new members, users, ... */
    long long count[CA__K_COUNT];
    long long kbytes[CA__K_COUNT];
    struct ca__shard *shards;
    int total;
    /* Users' texts known to be what is kept (apply_member.c): [slot of the user id] = {user id,
       hash of the text its blob was made from}; a change of that user forgets it. */
    uint64_t (*known_users)[2];
};

/* Documented member defaults left out of member blobs ("nick":null, ...), restored on output. */
#define CA__N_MEMBER_DEFAULTS 10
extern const char *const ca__member_defaults[CA__N_MEMBER_DEFAULTS]; /* `"key":value` text */
/* The same for users (kept once, whatever guilds they are in). */
#define CA__N_USER_DEFAULTS 14
extern const char *const ca__user_defaults[CA__N_USER_DEFAULTS];
/* Channels and threads; roles. */
#define CA__N_CHANNEL_DEFAULTS 15
extern const char *const ca__channel_defaults[CA__N_CHANNEL_DEFAULTS];
#define CA__N_EMOJI_DEFAULTS 5
extern const char *const ca__emoji_defaults[CA__N_EMOJI_DEFAULTS];
#define CA__N_ROLE_DEFAULTS 8
extern const char *const ca__role_defaults[CA__N_ROLE_DEFAULTS];

/* A new blob holding text (len bytes); NULL when out of memory. */
struct ca__blob *ca__blob_new(const char *text, size_t len, uint16_t strip);

/*
 * A channel blob whose top-level "permission_overwrites" is a list of objects written exactly
 * {"id":"<digits>","type":<digits>,"allow":"<digits>","deny":"<digits>"} keeps only their
 * digits: the value becomes \x01id.type.allow.deny[,...]\x01 (a raw control byte never occurs
 * in JSON text), and every writer of blobs (ca__write_blob, ca__blob_tree, ...) writes the
 * list back byte for byte. b itself when it has no such list (or out of memory), else b freed
 * and the shorter blob returned.
 */
struct ca__blob *ca__compact_overwrites(struct ca__blob *b);

/* The kind the bytes of map i of a guild count under. */
enum ca__kind ca__gmap_kind(int i);

/* A guild record (created LOADING when absent and create is set); NULL when absent / no memory. */
struct ca__guild *ca__guild_get(struct ca__store *s, uint64_t id, int shard, int create);
/* Drop every child of g (maps and fields), keeping the record. */
void ca__guild_clear(struct ca__store *s, struct ca__guild *g);
/* Remove g and everything it holds. */
void ca__guild_remove(struct ca__store *s, struct ca__guild *g);
/* Remove every guild of shard. */
void ca__store_forget_shard(struct ca__store *s, int shard);
void ca__store_free(struct ca__store *s);

/*
 * Put blob b under id in map i of g (replacing; the old one freed), counting bytes. A new
 * entry of a kind that the bound stops (anything but channels, threads, roles) is refused
 * past max_bytes: b freed, SH_ETOOBIG. 0, SH_ETOOBIG or SH_ENOMEM (b freed).
 */
int ca__gput(struct ca__store *s, struct ca__guild *g, int i, uint64_t id, struct ca__blob *b);
/* Empty map i of g. */
void ca__gclear(struct ca__store *s, struct ca__guild *g, int i);
/* Remove id from map i of g; 1 when it was there. */
int ca__gdel(struct ca__store *s, struct ca__guild *g, int i, uint64_t id);
/* The guild's fields blob replaced by b (NULL: none). */
void ca__set_fields(struct ca__store *s, struct ca__guild *g, struct ca__blob *b);
/* Put a user (same rules as ca__gput, users being stopped by the bound). */
int ca__uput(struct ca__store *s, uint64_t id, struct ca__blob *b);
/* After removals: leave the full state once 5 % below the bound (logged, metric). */
void ca__store_check_full(struct ca__store *s);

/* The slot of known_users for user id (CA__KNOWN_USERS of them, a power of two). */
#define CA__KNOWN_USERS 32768
size_t ca__known_slot(uint64_t id);

/* Parse a snowflake string ("123") or number; 0 when it is not one. */
uint64_t ca__id(const char *p, size_t n);

#endif
