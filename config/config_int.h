/*
 * config/config_int.h: what the files of config/ share and no other room may include: the
 * directive and section types of the config table, the error context that turns a problem into
 * one line naming the key, and the cfg__ helpers and handlers the files call across. The public
 * face of the room is config/config.h (with config/listen.h and config/expand.h).
 *
 *   config.c  the directive tables: every key, its handler, range, default and doc line
 *   values.c  handlers for plain values (strings, choices, integers, URLs, tokens, lists)
 *   keys.c    handlers for keys with a shape of their own (intents, compress, shards,
 *             webhooks, secrets, headers, http.listen, cluster) and the cross-key rules
 *   load.c    walking a JSON object against a table, cfg_load(), cfg_free()
 *   diag.c    the key path, one-line messages, did-you-mean hints, JSON syntax positions
 *   diff.c    cfg_diff() and cfg_take_live() for reloads
 *   docs.c    cfg_doc_entry(), the table as docs/configuration.md lists it
 */
#ifndef SHARDHOOK_CONFIG_CONFIG_INT_H
#define SHARDHOOK_CONFIG_CONFIG_INT_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "config/config.h"

#define MAX_STRING 4096 /* any string value after expansion, unless its key says less */
#define MAX_TOKEN 1024  /* bot token, http.token */
#define MAX_URL 2048
#define MAX_EVENT_NAME 128
#define MAX_LIST 1024 /* events, disable_events, intents */
#define MAX_WEBHOOKS 64
#define MAX_SECRETS 16
#define MAX_HEADERS 64
#define MAX_HEADER_NAME 256
#define MAX_HEADER_VALUE 8192
#define MAX_ACTIVITIES 16
#define MAX_PRESENCE_JSON 3072 /* leaves room in a 4096-byte gateway payload */
#define MAX_SHARDS 65536
#define MAX_SECRET_BYTES 64
#define MAX_INT53 9007199254740992.0

/* ---- error context: the key path and the first message ---- */

struct ctx {
    char *err;
    size_t errlen;
    char path[256];
    size_t plen;
    int failed;
    char *values; /* "Fpath\tjson\n" per leaf key set (F: L live, R restart), for cfg_diff */
    size_t vlen, vcap;
    struct expansion *exp; /* strings that used ${NAME}: messages show them as written */
    size_t n_exp;
    int literal;     /* strings are taken as given, no ${NAME} (control API bodies) */
    int unknown_key; /* the failure is a key the table does not know */
};

struct expansion {
    char *value;     /* the expanded text (a copy) */
    const char *raw; /* as written in the file (the cJSON tree lives through the load) */
};

/* ---- directive tables: types ---- */

enum {
    D_REQUIRED = 1 << 0,    /* absent is an error (message in .missing) */
    D_SECRET = 1 << 1,      /* never echo the value in a message */
    D_NULL_OK = 1 << 2,     /* null means "not set" and skips the default */
    D_STRIP_SLASH = 1 << 3, /* URL: drop trailing slashes */
    D_LIST = 1 << 4,        /* a list of objects described by .sub (docs say "key[]") */
    D_STRIP_BOT = 1 << 5,   /* token: drop a leading "Bot " */
    D_LIVE = 1 << 6,        /* a reload (SIGHUP) applies a change while running */
};

struct directive;

struct section {
    const struct directive *dirs;
    size_t n;
    int (*check)(struct ctx *c, void *base); /* cross-key rules, after defaults */
};

struct directive {
    const char *name;
    int (*set)(struct ctx *c, const struct directive *d, const cJSON *v, void *base);
    size_t off;                 /* where the value goes, from the base the section is given */
    size_t off_n;               /* lists of strings: where their count goes */
    long long min, max;         /* integers: range; strings: length */
    const char *const *choices; /* string choices, NULL-terminated */
    const struct section *sub;  /* a nested object, or the items of a D_LIST */
    const char *def;            /* default as JSON text; NULL: none */
    const char *def_note;       /* for docs, when the default is not a JSON value */
    unsigned flags;
    const char *type;    /* for docs; integers and choices describe themselves */
    const char *doc;     /* one line for docs */
    const char *missing; /* message for an absent D_REQUIRED key, or an empty token */
};

#define AT(base, d, type) ((type *)(void *)((char *)(base) + (d)->off))
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* The top-level table (config.c): what cfg_load() walks and cfg_doc_entry() lists. */
extern const struct section cfg__top_section;

/* Apply the table sec to the JSON object obj, storing into base (load.c). */
int cfg__process_object(struct ctx *c, const struct section *sec, const cJSON *obj, void *base);

/* ---- diag.c: messages ---- */

/* Add ".key" or "[i]" to the key path; returns the mark that cfg__pop() goes back to. */
size_t cfg__push_key(struct ctx *c, const char *key);
size_t cfg__push_index(struct ctx *c, size_t i);
void cfg__pop(struct ctx *c, size_t mark);
/* Write "path: message" into the error buffer (the first failure only); SH_ECONFIG. */
int cfg__fail(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* cfg__fail() with key appended to the current path, for checks made after a whole object. */
int cfg__fail_key(struct ctx *c, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "out of memory" at the current path; SH_ENOMEM. */
int cfg__oom(struct ctx *c);
/* What a value is, for "(got ...)": quoted strings are cut short; redact hides values. */
const char *cfg__describe_str(const char *s, int redact, char *buf, size_t n);
const char *cfg__describe(const cJSON *v, int redact, char *buf, size_t n);
/*
 * An expanded string value for "(got ...)": as written in the file when it came from ${NAME},
 * so that a message never shows what the environment holds (the bot token, a secret).
 */
const char *cfg__describe_val(const struct ctx *c, const char *s, char *buf, size_t n);
/* Remember that raw expanded to value (only when it named a variable); SH_ENOMEM. */
int cfg__note_expansion(struct ctx *c, const char *raw, const char *value);
void cfg__free_expansions(struct ctx *c);
int cfg__utf8_ok(const char *s);
/* Messages are one printable UTF-8 line: control characters and stray bytes become '?'. */
void cfg__sanitize(char *s);

/* did-you-mean: offer each candidate to cfg__consider(), then print the closest. */
struct hint {
    const char *best;
    size_t dist;
};
void cfg__consider(struct hint *h, const char *key, const char *cand);
const char *cfg__hint_text(const struct hint *h, char *buf, size_t n);

/*
 * Parse json (len bytes, from where) into *root, a JSON object. On failure writes one line
 * with the line and column and a hint ("trailing comma") into err and returns SH_ECONFIG.
 */
int cfg__parse_json(const char *json, size_t len, const char *where, cJSON **root, char *err,
                    size_t errlen);

/* ---- values.c: plain values ---- */

int cfg__has_control(const char *s);
/* Expand v (a string) into a fresh *out of at most maxlen bytes, without control characters. */
int cfg__get_string(struct ctx *c, const cJSON *v, size_t maxlen, int redact, char **out);
/* v as an integer within d->min..d->max. */
int cfg__get_int(struct ctx *c, const struct directive *d, const cJSON *v, long long *out);
void cfg__store_str(char **slot, char *s);
/* Check v is a list of 1 (or 0 when empty_ok) to max items; its length goes in *n. */
int cfg__get_list(struct ctx *c, const cJSON *v, size_t max, int empty_ok, const char *what,
                  size_t *n);

/* Handlers: check the value v of directive d and store it at base + d->off. */
#define CFG__HANDLER(name)                                                                         \
    int name(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
CFG__HANDLER(cfg__set_str);
CFG__HANDLER(cfg__set_choice);
CFG__HANDLER(cfg__set_int);
CFG__HANDLER(cfg__set_size);
CFG__HANDLER(cfg__set_bool);
CFG__HANDLER(cfg__set_url);
CFG__HANDLER(cfg__set_token);
CFG__HANDLER(cfg__set_section);
CFG__HANDLER(cfg__set_events);
CFG__HANDLER(cfg__set_event_names);
CFG__HANDLER(cfg__set_host_list);
CFG__HANDLER(cfg__set_auto_int);

/* ---- keys.c: keys with a shape of their own ---- */

/* shards: "auto" or an object read into this scratch form, then checked as a whole. */
struct shards_tmp {
    int total, first, last; /* first/last -1 when absent */
    int *ids;
    size_t n_ids;
};

CFG__HANDLER(cfg__set_intents);
CFG__HANDLER(cfg__set_compress);
CFG__HANDLER(cfg__set_shard_ids);
CFG__HANDLER(cfg__set_shards);
CFG__HANDLER(cfg__set_webhooks);
CFG__HANDLER(cfg__set_webhook_name);
CFG__HANDLER(cfg__set_secret);
CFG__HANDLER(cfg__set_headers);
CFG__HANDLER(cfg__set_listen);
CFG__HANDLER(cfg__set_cluster);
CFG__HANDLER(cfg__set_redis_url);
CFG__HANDLER(cfg__set_node_name);
CFG__HANDLER(cfg__set_cache);
CFG__HANDLER(cfg__set_cache_kind);
/* Cross-key rules, run once a section's keys and defaults are in. */
int cfg__check_shards(struct ctx *c, void *base);
int cfg__check_http(struct ctx *c, void *base);
int cfg__check_cluster(struct ctx *c, void *base);
int cfg__check_top(struct ctx *c, void *base);
/*
 * While loading, cache_kinds holds the kinds set true (bit k) and set false (bit
 * CFG__CACHE_OFF + k); cfg__check_top turns it into the kinds kept, from the intents.
 */
#define CFG__CACHE_OFF 16

/* presence (presence.c): its table, and the handler of the config's `presence` key. */
extern const struct section cfg__presence_section;
int cfg__set_presence(struct ctx *c, const struct directive *d, const cJSON *v, void *base);

#endif
