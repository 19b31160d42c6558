/*
 * config/config.h: the daemon's configuration, loaded once at start-up from JSON.
 *
 * cfg_load() parses the file (cJSON), expands `${NAME}` from the environment in
 * every string, applies defaults and validates; the result is immutable and read
 * by every room. On SIGHUP the file is loaded again and cfg_diff() tells which
 * changes can be applied while running; the running struct itself never changes. Every problem is
 * reported as one line that names the key, e.g. `webhooks[0].max_batch_events: must be an integer
 * from 1 to 10000 (got 0)`. docs/configuration.md describes every key; config/listen.h parses the
 * `http.listen` form for whoever binds it. This room includes none of the others.
 */
#ifndef SHARDHOOK_CONFIG_CONFIG_H
#define SHARDHOOK_CONFIG_CONFIG_H

#include <stddef.h>
#include <stdint.h>

enum cfg_compress {
    CFG_COMPRESS_AUTO = 0,
    CFG_COMPRESS_ZSTD,
    CFG_COMPRESS_ZLIB,
    CFG_COMPRESS_NONE
};

enum cfg_shards_mode {
    CFG_SHARDS_AUTO = 0, /* "auto": Discord's recommended count, every shard */
    CFG_SHARDS_TOTAL,    /* {"total":N}: shards 0..N-1 */
    CFG_SHARDS_RANGE,    /* {"total":N,"first":a,"last":b} */
    CFG_SHARDS_IDS,      /* {"total":N,"ids":[...]} */
};

struct cfg_header {
    char *name;
    char *value;
};

#define CFG_WEBHOOK_NAME_MAX 64 /* webhooks[].name: [A-Za-z0-9_.-], not all digits */

struct cfg_webhook {
    char *url;
    char *name;    /* NULL when the config gives none */
    char **events; /* exact names, "PREFIX*", or "*" */
    size_t n_events;
    char **secrets; /* "whsec_<base64>" strings, newest first; n_secrets 0 only if unsigned */
    size_t n_secrets;
    int unsigned_ok; /* 1 when the config said "secret": null */
    int max_batch_events;
    size_t max_batch_bytes;
    int max_batch_delay_ms;
    int max_in_flight;
    int timeout_ms;
    size_t max_memory_bytes; /* closed batches kept in memory; past it they spill to the spool */
    int retry_base_ms;       /* first retry backoff ceiling */
    int retry_max_ms;        /* retry backoff cap */
    int retry_after_max_ms;  /* a longer Retry-After waits this long */
    size_t spool_max_bytes;  /* this webhook's spool share; 0 when unset: an equal share */
    char *when_full;         /* "pause" or "dead_letter": what a full spool share does */
    size_t dead_letter_max_bytes; /* dead letters kept for this webhook, oldest go; 0: no bound */
    int actions;                  /* 1: run the actions a 2xx answer carries (docs/delivery.md) */
    struct cfg_header *headers;
    size_t n_headers;
};

struct cfg_config {
    char *token; /* bot token, without the "Bot " prefix */
    char *api_base;
    uint64_t intents; /* bit mask; default GUILDS only */
    enum cfg_compress compress;
    struct {
        enum cfg_shards_mode mode;
        int total;       /* 0 with CFG_SHARDS_AUTO */
        int first, last; /* RANGE as given; TOTAL: 0 and total-1; otherwise 0 */
        int *ids;        /* CFG_SHARDS_IDS only: unique, sorted ascending, each < total */
        size_t n_ids;
    } shards;
    int identify_concurrency; /* 0 = "auto" */
    int large_threshold;      /* 50..250 */
    int guild_create_timeout_ms;
    char *presence_json; /* the presence object re-serialised compactly, or NULL */
    char *values;        /* every key as loaded, for cfg_diff (holds secrets: never log) */
    struct cfg_webhook *webhooks;
    size_t n_webhooks;
    char **disable_events; /* event names dropped before routing */
    size_t n_disable_events;
    char *http_listen;           /* "host:port"; default "127.0.0.1:7878" */
    char *http_token;            /* NULL when unset */
    int http_request_timeout_ms; /* default wait for gateway replies to control requests */
    char **http_allowed_hosts;   /* extra Host names the API answers to ("name" or "name:port") */
    size_t n_http_allowed_hosts;
    int http_max_connections;         /* open control connections at once; default 1024 */
    int http_max_connections_per_ip;  /* from one client address; default 256 */
    int http_connection_timeout_ms;   /* idle or silent connection closed after; default 10000 */
    int http_reconnect_interval_ms;   /* least time between two reconnects of one shard */
    char *state_dir;                  /* default "./state" */
    char *log_level;                  /* debug|info|warn|error; default info */
    char *log_format;                 /* logfmt|json; default logfmt */
    int max_resume_attempts;          /* resumes in a row before a fresh IDENTIFY; default 5 */
    int shutdown_timeout_ms;          /* default 10000 */
    int reconnect_base_ms;            /* first reconnect backoff ceiling; default 1000 */
    int reconnect_max_ms;             /* backoff cap; default 60000 */
    int connect_timeout_ms;           /* TCP, TLS and websocket upgrade of one attempt; 10000 */
    size_t max_payload_bytes;         /* cap on one inflated gateway payload; default 64 MiB */
    size_t spool_max_bytes;           /* disk spool of every webhook together; 0: no spool */
    int testing_identify_interval_ms; /* "testing.identify_interval_ms": default 5000; tests only */
    int testing_member_window_ms;     /* "testing.member_window_ms": default 30000; tests only */
    int testing_send_window_ms;       /* "testing.send_window_ms": default 60000; tests only */
    /* cluster mode (CLUSTER.md): all unset without a "cluster" block */
    int cluster;             /* 1 when the config has a "cluster" block */
    char *cluster_redis;     /* "redis://[:password@]host:port[/db]" or "unix:/path"; secret */
    char *cluster_node;      /* unique among live nodes; default the host name */
    int cluster_lease_ms;    /* node lease; default 10000, at least 1000 */
    int cluster_max_shards;  /* the most this node holds; default 2000 */
    char *cluster_advertise; /* how other nodes reach this node's API, or NULL */
    /* entity cache (docs/cache.md): all unset without a "cache" block */
    int cache;                      /* 1 when the config has a "cache" block */
    unsigned cache_kinds;           /* (1u << CFG_CACHE_<KIND>) for every kind kept */
    size_t cache_max_bytes;         /* hard bound on what the cache holds; default 1 GiB */
    int cache_snapshot_interval_ms; /* periodic snapshots; default 60000, 0: only at stops */
};

/*
 * The entity cache's kinds: X(ID, config key, intent it needs). A kind left out of the block
 * is kept when the bot asks for its intent (presences: only when set true); a kind set true
 * without its intent is refused at --check with one line naming the intent. Users are kept
 * with any kind (every user object the kept entities carry).
 */
#define CFG_CACHE_KINDS(X)                                                                         \
    X(GUILDS, "guilds", GUILDS)                                                                    \
    X(CHANNELS, "channels", GUILDS)                                                                \
    X(ROLES, "roles", GUILDS)                                                                      \
    X(EMOJIS, "emojis", GUILD_EXPRESSIONS)                                                         \
    X(MEMBERS, "members", GUILD_MEMBERS)                                                           \
    X(VOICE_STATES, "voice_states", GUILD_VOICE_STATES)                                            \
    X(PRESENCES, "presences", GUILD_PRESENCES)
enum cfg_cache_kind {
#define CFG_CACHE_ENUM_(id, key, intent) CFG_CACHE_##id,
    CFG_CACHE_KINDS(CFG_CACHE_ENUM_)
#undef CFG_CACHE_ENUM_
        CFG_CACHE_KIND_COUNT_
};

/* A config file larger than this is refused. */
#define CFG_MAX_FILE_BYTES (1024 * 1024)

/*
 * Load and validate path into *out. On failure returns SH_ECONFIG (SH_ENOMEM when
 * memory ran out), writes one line (no trailing newline) naming the key and the
 * problem into err, and leaves *out zeroed. Never prints secrets into err.
 */
int cfg_load(const char *path, struct cfg_config *out, char *err, size_t errlen);
/* Same, from a string in memory (tests, fuzzing); messages name the source "config". */
int cfg_load_string(const char *json, size_t len, struct cfg_config *out, char *err, size_t errlen);
/* Free everything cfg holds and zero it; safe on a zeroed or already freed struct. */
void cfg_free(struct cfg_config *cfg);

/*
 * What a reload would change (SIGHUP), compared key by key from the config table: the keys
 * that take effect while running go in live (log_level, log_format, http.token,
 * webhooks[i].secret, webhooks[i].headers; a webhook's only while its URL stays), every other
 * changed key in restart (a list that grew or shrank is named once: "webhooks"), each list
 * comma-separated ("intents,shards"; "" for none, cut to the buffer). Returns the number of keys in
 * restart. Never writes a value.
 */
int cfg_diff(const struct cfg_config *running, const struct cfg_config *loaded, char *live,
             size_t livelen, char *restart, size_t restartlen);
/*
 * After a reload applied the live keys of loaded to the running process: record them in
 * running, so that the next cfg_diff compares live keys against what runs now and every
 * other key against what the process started with. SH_ENOMEM leaves running as it was.
 */
int cfg_take_live(struct cfg_config *running, const struct cfg_config *loaded);
/* 1 when webhook i exists in both and has the same URL: only then may its secret and headers
 * change live (a secret or header meant for another URL must not reach this one). */
int cfg_webhook_same_target(const struct cfg_config *a, const struct cfg_config *b, size_t i);

/* The least max_batch_delay_ms of the webhooks (how long an event may wait), -1 for none. */
int cfg_least_batch_delay_ms(const struct cfg_config *cfg);

/*
 * One documented key, straight from the directive table that loading uses, so that
 * docs/configuration.md can be checked against it.
 */
struct cfg_doc {
    char key[80];         /* "webhooks[].max_in_flight" */
    char type[96];        /* "integer 1..64" */
    const char *def;      /* default as JSON text, NULL when the key has none */
    const char *def_note; /* the default in words when it is not JSON ("`$DISCORD_TOKEN`") */
    int required;         /* 1 when the key must be given */
    const char *doc;      /* one line */
};
/* Fill *out with the i-th key, in table order. Returns 0, or SH_ENOTFOUND past the end. */
int cfg_doc_entry(size_t i, struct cfg_doc *out);

/*
 * The presence rules, one function for the config's `presence` and the control API's
 * POST /v1/presence: presence (a JSON object) is checked against the table's presence keys
 * (status, since, afk, activities[] of name, type, state, url; no other key) and given back in
 * *out_json (malloc'd) compact, in Discord's field order, with the defaults filled in, at most
 * 3072 bytes so that it fits in IDENTIFY. With CFG_PRESENCE_LITERAL strings are taken as given
 * (no `${NAME}` expansion: a request body must not read the environment). On failure *out_json
 * is NULL and err holds one line naming the key ("presence.activities[0].type: ..."); returns
 * SH_ENOTFOUND (a key the table does not know), SH_ETOOBIG (too large), SH_ECONFIG (any other
 * broken rule) or SH_ENOMEM.
 */
#define CFG_PRESENCE_LITERAL 1u
struct cJSON;
int cfg_presence_parse(const struct cJSON *presence, unsigned flags, char **out_json, char *err,
                       size_t errlen);

/* Intent name ("GUILD_MESSAGES") to its bit number, -1 if unknown. */
int cfg_intent_bit(const char *name);
/* Name of an intent bit, or NULL. */
const char *cfg_intent_name(int bit);
/* 1 when bit is privileged (GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT). */
int cfg_intent_privileged(int bit);

#endif
