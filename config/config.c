/*
 * config/config.c: the config table, the truth about every key: its name, the handler that
 * checks and stores it, where it goes in struct cfg_config, its range, its default (JSON text
 * run through the same handler as a user's value, so a default cannot break its own rules),
 * whether a reload applies it live, and its line in docs/configuration.md. load.c walks these
 * tables over the JSON, docs.c lists them and diff.c compares two loads key by key with them;
 * the handlers are in values.c and keys.c. Start-up only; touches no other room.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "config/config.h"
#include "config/config_int.h"
#include "lib/errors.h"

/*
 * presence (its validation moves to a file of its own): its handlers and tables below were
 * written with the short names of the helpers they call.
 */
#define fail cfg__fail
#define describe cfg__describe
#define oom cfg__oom
#define get_list cfg__get_list
#define push_index cfg__push_index
#define pop cfg__pop
#define process_object cfg__process_object
#define store_str cfg__store_str
#define set_section cfg__set_section
#define set_str cfg__set_str
#define set_int cfg__set_int
#define set_url cfg__set_url
#define set_choice cfg__set_choice
#define set_bool cfg__set_bool

/* presence: read into this scratch form, then re-serialised for the gateway. */
struct activity_tmp {
    char *name;
    int type;
    char *state;
    char *url;
};

struct presence_tmp {
    char *status;
    int has_since;
    double since;
    int afk;
    struct activity_tmp *acts;
    size_t n_acts;
};

static void presence_tmp_free(struct presence_tmp *p)
{
    for (size_t i = 0; i < p->n_acts; i++) {
        free(p->acts[i].name);
        free(p->acts[i].state);
        free(p->acts[i].url);
    }
    free(p->acts);
    free(p->status);
}

static int set_since(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    struct presence_tmp *p = base;
    char buf[80];
    (void)d;
    if (cJSON_IsNull(v)) {
        p->has_since = 0;
        return SH_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
        v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble >= MAX_INT53)
        return fail(c, "must be null or a unix time in milliseconds (got %s)",
                    describe(v, 0, buf, sizeof(buf)));
    p->has_since = 1;
    p->since = v->valuedouble;
    return SH_OK;
}

static int set_activities(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    struct presence_tmp *p = base;
    size_t n;
    int rc = get_list(c, v, MAX_ACTIVITIES, 1, "activity objects", &n);
    if (rc)
        return rc;
    p->acts = calloc(n ? n : 1, sizeof(*p->acts));
    if (!p->acts)
        return oom(c);
    p->n_acts = n;
    size_t i = 0;
    for (const cJSON *it = v->child; it && !rc; it = it->next, i++) {
        size_t mark = push_index(c, i);
        rc = set_section(c, d, it, &p->acts[i]);
        pop(c, mark);
    }
    return rc;
}

static int build_presence(struct ctx *c, const struct presence_tmp *p, char **out)
{
    cJSON *o = cJSON_CreateObject(), *acts = NULL;
    int ok = o != NULL;
    ok = ok && (p->has_since ? cJSON_AddNumberToObject(o, "since", p->since)
                             : cJSON_AddNullToObject(o, "since"));
    ok = ok && (acts = cJSON_AddArrayToObject(o, "activities"));
    for (size_t i = 0; ok && i < p->n_acts; i++) {
        const struct activity_tmp *a = &p->acts[i];
        cJSON *ao = cJSON_CreateObject();
        ok = ao && cJSON_AddItemToArray(acts, ao);
        if (!ok) {
            cJSON_Delete(ao);
            break;
        }
        ok = cJSON_AddStringToObject(ao, "name", a->name) &&
             cJSON_AddNumberToObject(ao, "type", a->type) &&
             (!a->state || cJSON_AddStringToObject(ao, "state", a->state)) &&
             (!a->url || cJSON_AddStringToObject(ao, "url", a->url));
    }
    ok = ok && cJSON_AddStringToObject(o, "status", p->status);
    ok = ok && cJSON_AddBoolToObject(o, "afk", p->afk);
    char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!text)
        return oom(c);
    size_t len = strlen(text);
    *out = len <= MAX_PRESENCE_JSON ? strdup(text) : NULL;
    cJSON_free(text);
    if (len > MAX_PRESENCE_JSON)
        return fail(c,
                    "too large: %zu bytes once serialised (at most %d, so that it fits in "
                    "a gateway payload)",
                    len, MAX_PRESENCE_JSON);
    return *out ? SH_OK : oom(c);
}

static int set_presence(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    char buf[80], *json = NULL;
    if (!cJSON_IsObject(v))
        return fail(c, "must be an object or null (got %s)", describe(v, 0, buf, sizeof(buf)));
    struct presence_tmp p = {0};
    int rc = process_object(c, d->sub, v, &p);
    if (!rc)
        rc = build_presence(c, &p, &json);
    presence_tmp_free(&p);
    if (!rc)
        store_str(AT(base, d, char *), json);
    return rc;
}

/* ---- the tables ---- */

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"logfmt", "json", NULL};
static const char *const when_full_choices[] = {"pause", "dead_letter", NULL};
static const char *const statuses[] = {"online", "dnd", "idle", "invisible", "offline", NULL};

#define A_OFF(f) offsetof(struct activity_tmp, f)
static const struct directive activity_dirs[] = {
    {.name = "name",
     .set = set_str,
     .off = A_OFF(name),
     .min = 1,
     .max = 128,
     .flags = D_REQUIRED,
     .type = "string",
     .doc = "activity name shown in Discord"},
    {.name = "type",
     .set = set_int,
     .off = A_OFF(type),
     .min = 0,
     .max = 5,
     .flags = D_REQUIRED,
     .doc = "0 playing, 1 streaming, 2 listening, 3 watching, 4 custom, 5 competing"},
    {.name = "state",
     .set = set_str,
     .off = A_OFF(state),
     .min = 0,
     .max = 128,
     .type = "string",
     .doc = "optional status text (the text of a custom status, type 4)"},
    {.name = "url",
     .set = set_url,
     .off = A_OFF(url),
     .type = "http(s) URL",
     .doc = "optional stream URL (type 1)"},
};
static const struct section activity_section = {activity_dirs, COUNT(activity_dirs), NULL};

#define P_OFF(f) offsetof(struct presence_tmp, f)
static const struct directive presence_dirs[] = {
    {.name = "since",
     .set = set_since,
     .def = "null",
     .type = "integer or null",
     .doc = "unix time in ms since the bot went idle, or `null`"},
    {.name = "activities",
     .set = set_activities,
     .sub = &activity_section,
     .def = "[]",
     .flags = D_LIST,
     .type = "list of objects",
     .doc = "activities to show (at most 16)"},
    {.name = "status",
     .set = set_choice,
     .off = P_OFF(status),
     .choices = statuses,
     .def = "\"online\"",
     .doc = "online status"},
    {.name = "afk",
     .set = set_bool,
     .off = P_OFF(afk),
     .def = "false",
     .type = "boolean",
     .doc = "whether the bot is AFK"},
};
static const struct section presence_section = {presence_dirs, COUNT(presence_dirs), NULL};

#undef fail
#undef describe
#undef oom
#undef get_list
#undef push_index
#undef pop
#undef process_object
#undef store_str
#undef set_section
#undef set_str
#undef set_int
#undef set_url
#undef set_choice
#undef set_bool

#define W_OFF(f) offsetof(struct cfg_webhook, f)
static const struct directive webhook_dirs[] = {
    {.name = "url",
     .set = cfg__set_url,
     .off = W_OFF(url),
     .flags = D_REQUIRED | D_SECRET,
     .type = "http(s) URL",
     .doc = "where batches are POSTed",
     .missing = "missing"},
    {.name = "events",
     .set = cfg__set_events,
     .off = W_OFF(events),
     .off_n = W_OFF(n_events),
     .def = "[\"*\"]",
     .type = "list of strings",
     .doc = "events to deliver: exact names (`MESSAGE_CREATE`), prefixes (`GUILD_*`) or `*`"},
    {.name = "secret",
     .set = cfg__set_secret,
     .flags = D_REQUIRED | D_SECRET | D_LIVE,
     .type = "string, list of strings, or null",
     .doc = "`whsec_<base64>` signing key (1 to 64 bytes), a list while keys rotate "
            "(first is newest), or `null` to send unsigned requests; SIGHUP applies a change",
     .missing = "missing: set a \"whsec_...\" secret, or \"secret\": null to send unsigned "
                "requests"},
    {.name = "max_batch_events",
     .set = cfg__set_int,
     .off = W_OFF(max_batch_events),
     .min = 1,
     .max = 10000,
     .def = "100",
     .doc = "a batch closes when it holds this many events"},
    {.name = "max_batch_bytes",
     .set = cfg__set_size,
     .off = W_OFF(max_batch_bytes),
     .min = 1024,
     .max = 16777216,
     .def = "262144",
     .doc = "a batch closes before its body exceeds this size"},
    {.name = "max_batch_delay_ms",
     .set = cfg__set_int,
     .off = W_OFF(max_batch_delay_ms),
     .min = 0,
     .max = 60000,
     .def = "25",
     .doc = "a batch closes this long after its first event"},
    {.name = "max_in_flight",
     .set = cfg__set_int,
     .off = W_OFF(max_in_flight),
     .min = 1,
     .max = 64,
     .def = "4",
     .doc = "requests to this URL at once"},
    {.name = "timeout_ms",
     .set = cfg__set_int,
     .off = W_OFF(timeout_ms),
     .min = 100,
     .max = 300000,
     .def = "10000",
     .doc = "time allowed for one request, connection included"},
    {.name = "max_memory_bytes",
     .set = cfg__set_size,
     .off = W_OFF(max_memory_bytes),
     .min = 65536,
     .max = 68719476736LL,
     .def = "33554432",
     .doc = "closed batches held in memory for this URL; past it they spill to the disk spool"},
    {.name = "retry_base_ms",
     .set = cfg__set_int,
     .off = W_OFF(retry_base_ms),
     .min = 10,
     .max = 60000,
     .def = "500",
     .doc = "first retry backoff ceiling (full jitter, doubling per attempt)"},
    {.name = "retry_max_ms",
     .set = cfg__set_int,
     .off = W_OFF(retry_max_ms),
     .min = 100,
     .max = 3600000,
     .def = "60000",
     .doc = "retry backoff cap; a `Retry-After` from the receiver may wait longer"},
    {.name = "retry_after_max_ms",
     .set = cfg__set_int,
     .off = W_OFF(retry_after_max_ms),
     .min = 100,
     .max = 3600000,
     .def = "300000",
     .doc = "a longer `Retry-After` waits this long; a shorter one never undercuts half the "
            "backoff ceiling"},
    {.name = "spool_max_bytes",
     .set = cfg__set_size,
     .off = W_OFF(spool_max_bytes),
     .min = 65536,
     .max = 1099511627776LL,
     .def_note = "an equal share of `spool_max_bytes`",
     .doc = "this webhook's part of the disk spool; `when_full` says what happens past it"},
    {.name = "when_full",
     .set = cfg__set_choice,
     .off = W_OFF(when_full),
     .choices = when_full_choices,
     .def = "\"pause\"",
     .doc = "its spool share full: `pause` stops reading the gateway (nothing lost, every "
            "webhook waits), `dead_letter` moves its oldest batches to the dead-letter folder"},
    {.name = "dead_letter_max_bytes",
     .set = cfg__set_size,
     .off = W_OFF(dead_letter_max_bytes),
     .min = 0,
     .max = 1099511627776LL,
     .def = "1073741824",
     .doc = "dead-letter files kept for this webhook; past it the oldest are removed; 0: no "
            "bound"},
    {.name = "headers",
     .set = cfg__set_headers,
     .flags = D_LIVE,
     .def = "{}",
     .type = "object of strings",
     .doc = "extra request headers; values are never logged; SIGHUP applies a change"},
};
static const struct section webhook_section = {webhook_dirs, COUNT(webhook_dirs), NULL};

#define S_OFF(f) offsetof(struct shards_tmp, f)
static const struct directive shards_dirs[] = {
    {.name = "total",
     .set = cfg__set_int,
     .off = S_OFF(total),
     .min = 1,
     .max = MAX_SHARDS,
     .flags = D_REQUIRED,
     .doc = "shard count of the whole bot (every process agrees on it)",
     .missing = "missing (an object for \"shards\" needs \"total\")"},
    {.name = "first",
     .set = cfg__set_int,
     .off = S_OFF(first),
     .min = 0,
     .max = MAX_SHARDS - 1,
     .doc = "first shard id this process runs (with `last`)"},
    {.name = "last",
     .set = cfg__set_int,
     .off = S_OFF(last),
     .min = 0,
     .max = MAX_SHARDS - 1,
     .doc = "last shard id this process runs, inclusive (with `first`)"},
    {.name = "ids",
     .set = cfg__set_shard_ids,
     .type = "list of integers",
     .doc = "the shard ids this process runs, instead of `first`/`last`"},
};
static const struct section shards_section = {shards_dirs, COUNT(shards_dirs), cfg__check_shards};

#define C_OFF(f) offsetof(struct cfg_config, f)
static const struct directive http_dirs[] = {
    {.name = "listen",
     .set = cfg__set_listen,
     .off = C_OFF(http_listen),
     .def = "\"127.0.0.1:7878\"",
     .type = "string `\"host:port\"`",
     .doc = "control API address: IPv4, [IPv6] or localhost; port 0 picks a free one"},
    {.name = "token",
     .set = cfg__set_token,
     .off = C_OFF(http_token),
     .flags = D_SECRET | D_NULL_OK | D_LIVE,
     .type = "string or null",
     .doc = "bearer token for `/v1/*` and `/metrics`; required when listen is not loopback; "
            "SIGHUP applies a change",
     .missing = "must not be empty (leave it out, or null, to turn authentication off)"},
    {.name = "request_timeout_ms",
     .set = cfg__set_int,
     .off = C_OFF(http_request_timeout_ms),
     .min = 1,
     .max = 120000,
     .def = "10000",
     .doc = "how long members, channel-info and soundboard requests wait for Discord's reply; "
            "a body's `timeout_ms` overrides it"},
    {.name = "allowed_hosts",
     .set = cfg__set_host_list,
     .off = C_OFF(http_allowed_hosts),
     .off_n = C_OFF(n_http_allowed_hosts),
     .def = "[]",
     .type = "list of strings",
     .doc = "Host header values answered besides the listen address (`name` or `name:port`)"},
    {.name = "max_connections",
     .set = cfg__set_int,
     .off = C_OFF(http_max_connections),
     .min = 16,
     .max = 65536,
     .def = "1024",
     .doc = "control connections open at once; more wait for the ones open to close"},
    {.name = "max_connections_per_ip",
     .set = cfg__set_int,
     .off = C_OFF(http_max_connections_per_ip),
     .min = 1,
     .max = 65536,
     .def = "256",
     .doc = "control connections from one client address; more are closed at once"},
    {.name = "connection_timeout_ms",
     .set = cfg__set_int,
     .off = C_OFF(http_connection_timeout_ms),
     .min = 1000,
     .max = 600000,
     .def = "10000",
     .doc = "a control connection that sends nothing for this long is closed (whole seconds, "
            "rounded up)"},
    {.name = "reconnect_interval_ms",
     .set = cfg__set_int,
     .off = C_OFF(http_reconnect_interval_ms),
     .min = 0,
     .max = 3600000,
     .def = "10000",
     .doc = "least time between two accepted reconnect calls for one shard (429 sooner); "
            "0 allows every call"},
};
static const struct section http_section = {http_dirs, COUNT(http_dirs), cfg__check_http};

static const struct directive testing_dirs[] = {
    {.name = "identify_interval_ms",
     .set = cfg__set_int,
     .off = C_OFF(testing_identify_interval_ms),
     .min = 0,
     .max = 5000,
     .def = "5000",
     .doc = "test-only: shortens Discord's 5 s identify window; for fake gateways only"},
    {.name = "member_window_ms",
     .set = cfg__set_int,
     .off = C_OFF(testing_member_window_ms),
     .min = 100,
     .max = 30000,
     .def = "30000",
     .doc = "test-only: shortens Discord's 30 s window between all-members requests for one "
            "guild; for fake gateways only"},
    {.name = "send_window_ms",
     .set = cfg__set_int,
     .off = C_OFF(testing_send_window_ms),
     .min = 1000,
     .max = 60000,
     .def = "60000",
     .doc = "test-only: shortens Discord's 60 s window of 120 payloads per connection; for fake "
            "gateways only"},
};
static const struct section testing_section = {testing_dirs, COUNT(testing_dirs), NULL};

static const struct directive top_dirs[] = {
    {.name = "token",
     .set = cfg__set_token,
     .off = C_OFF(token),
     .flags = D_SECRET | D_STRIP_BOT,
     .type = "string",
     .def_note = "`$DISCORD_TOKEN`",
     .doc = "bot token (a leading `Bot ` is dropped); an empty value is an error",
     .missing = "missing (set \"token\" or DISCORD_TOKEN)"},
    {.name = "api_base",
     .set = cfg__set_url,
     .off = C_OFF(api_base),
     .flags = D_STRIP_SLASH,
     .def = "\"https://discord.com/api/v10\"",
     .type = "http(s) URL",
     .doc = "Discord REST base; a trailing slash is dropped"},
    {.name = "intents",
     .set = cfg__set_intents,
     .off = C_OFF(intents),
     .def = "[\"GUILDS\"]",
     .type = "list of names or integer",
     .doc = "gateway intents, by name or as a bit mask"},
    {.name = "compress",
     .set = cfg__set_compress,
     .off = C_OFF(compress),
     .def = "\"auto\"",
     .type = "string or boolean",
     .doc = "transport compression: `auto` (zstd, else zlib), `zstd`, `zlib`, `none`; "
            "`true` means auto, `false` none"},
    {.name = "shards",
     .set = cfg__set_shards,
     .sub = &shards_section,
     .def = "\"auto\"",
     .type = "`\"auto\"` or object",
     .doc = "`\"auto\"` runs Discord's recommended count"},
    {.name = "identify_concurrency",
     .set = cfg__set_auto_int,
     .off = C_OFF(identify_concurrency),
     .min = 1,
     .max = 1024,
     .def = "\"auto\"",
     .type = "`\"auto\"` or integer 1..1024",
     .doc = "identify buckets; `\"auto\"` uses Discord's `max_concurrency`"},
    {.name = "large_threshold",
     .set = cfg__set_int,
     .off = C_OFF(large_threshold),
     .min = 50,
     .max = 250,
     .def = "50",
     .doc = "member count above which Discord omits offline members"},
    {.name = "guild_create_timeout_ms",
     .set = cfg__set_int,
     .off = C_OFF(guild_create_timeout_ms),
     .min = 0,
     .max = 600000,
     .def = "2000",
     .doc = "a shard counts as ready when no GUILD_CREATE came for this long"},
    {.name = "presence",
     .set = set_presence,
     .off = C_OFF(presence_json),
     .sub = &presence_section,
     .flags = D_NULL_OK,
     .type = "object or null",
     .doc = "presence sent with IDENTIFY; none when absent"},
    {.name = "webhooks",
     .set = cfg__set_webhooks,
     .sub = &webhook_section,
     .def = "[]",
     .flags = D_LIST,
     .type = "list of objects",
     .doc = "where events go (at most 64)"},
    {.name = "disable_events",
     .set = cfg__set_event_names,
     .off = C_OFF(disable_events),
     .off_n = C_OFF(n_disable_events),
     .def = "[]",
     .type = "list of strings",
     .doc = "event names dropped before routing"},
    {.name = "http",
     .set = cfg__set_section,
     .sub = &http_section,
     .def = "{}",
     .type = "object",
     .doc = "the control API"},
    {.name = "state_dir",
     .set = cfg__set_str,
     .off = C_OFF(state_dir),
     .min = 1,
     .max = MAX_STRING,
     .def = "\"./state\"",
     .type = "string",
     .doc = "checkpoints, spool and dead letters live here"},
    {.name = "log_level",
     .set = cfg__set_choice,
     .flags = D_LIVE,
     .off = C_OFF(log_level),
     .choices = log_levels,
     .def = "\"info\"",
     .doc = "least severe level logged; SIGHUP applies a change"},
    {.name = "log_format",
     .set = cfg__set_choice,
     .flags = D_LIVE,
     .off = C_OFF(log_format),
     .choices = log_formats,
     .def = "\"logfmt\"",
     .doc = "log lines as `key=value` (logfmt) or one JSON object each; SIGHUP applies a change"},
    {.name = "max_resume_attempts",
     .set = cfg__set_int,
     .off = C_OFF(max_resume_attempts),
     .min = 1,
     .max = 100,
     .def = "5",
     .doc = "resumes in a row before a fresh IDENTIFY"},
    {.name = "shutdown_timeout_ms",
     .set = cfg__set_int,
     .off = C_OFF(shutdown_timeout_ms),
     .min = 0,
     .max = 600000,
     .def = "10000",
     .doc = "time allowed to flush batches on SIGTERM"},
    {.name = "reconnect_base_ms",
     .set = cfg__set_int,
     .off = C_OFF(reconnect_base_ms),
     .min = 10,
     .max = 60000,
     .def = "1000",
     .doc = "first reconnect backoff ceiling"},
    {.name = "reconnect_max_ms",
     .set = cfg__set_int,
     .off = C_OFF(reconnect_max_ms),
     .min = 100,
     .max = 3600000,
     .def = "60000",
     .doc = "reconnect backoff cap; at least `reconnect_base_ms`"},
    {.name = "connect_timeout_ms",
     .set = cfg__set_int,
     .off = C_OFF(connect_timeout_ms),
     .min = 100,
     .max = 600000,
     .def = "10000",
     .doc = "one gateway connection attempt (TCP, TLS, websocket upgrade) may take this long"},
    {.name = "max_payload_bytes",
     .set = cfg__set_size,
     .off = C_OFF(max_payload_bytes),
     .min = 65536,
     .max = 1073741824,
     .def = "67108864",
     .doc = "cap on one inflated gateway payload"},
    {.name = "spool_max_bytes",
     .set = cfg__set_size,
     .off = C_OFF(spool_max_bytes),
     .min = 0,
     .max = 1099511627776LL,
     .def = "1073741824",
     .doc = "disk spool of all webhooks together; past it the gateway stops reading; 0: no "
            "spool"},
    {.name = "testing",
     .set = cfg__set_section,
     .sub = &testing_section,
     .def = "{}",
     .type = "object",
     .doc = "settings for tests against fake servers; leave out in production"},
};
const struct section cfg__top_section = {top_dirs, COUNT(top_dirs), cfg__check_top};

/* cfg__process_object() tracks the keys it saw in a 64-bit mask */
_Static_assert(COUNT(top_dirs) <= 64 && COUNT(webhook_dirs) <= 64 && COUNT(presence_dirs) <= 64 &&
                   COUNT(activity_dirs) <= 64 && COUNT(shards_dirs) <= 64 &&
                   COUNT(http_dirs) <= 64 && COUNT(testing_dirs) <= 64,
               "a directive table outgrew the seen mask");
