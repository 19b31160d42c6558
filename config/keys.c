/*
 * config/keys.c: the handlers of keys with a shape of their own: intents (names or a bit
 * mask, from the SH_INTENTS table of lib/discord.h), compress, shards ("auto" or an object
 * checked as a whole), webhooks with their signing secrets and headers, http.listen, the cluster
 * block (its Redis address and node name), the cache block (which kinds it keeps, from the
 * intents); and the cross-key rules of the shards, http, cluster and top-level sections.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "config/config.h"
#include "config/config_int.h"
#include "config/listen.h"
#include "config/redis_url.h"
#include "lib/buf.h"
#include "lib/discord.h"
#include "lib/errors.h"

/* ---- intents ---- */

#define INTENT_ROW(name, bit, priv) {bit, #name, priv},
static const struct {
    int bit;
    const char *name;
    int privileged;
} intents[] = {SH_INTENTS(INTENT_ROW)};
#undef INTENT_ROW
#define N_INTENTS (sizeof(intents) / sizeof(intents[0]))

int cfg_intent_bit(const char *name)
{
    for (size_t i = 0; name && i < N_INTENTS; i++)
        if (!strcmp(intents[i].name, name))
            return intents[i].bit;
    return -1;
}

const char *cfg_intent_name(int bit)
{
    for (size_t i = 0; i < N_INTENTS; i++)
        if (intents[i].bit == bit)
            return intents[i].name;
    return NULL;
}

int cfg_intent_privileged(int bit)
{
    for (size_t i = 0; i < N_INTENTS; i++)
        if (intents[i].bit == bit)
            return intents[i].privileged;
    return 0;
}

/* ---- top-level special keys ---- */

int cfg__set_intents(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    uint64_t *mask = AT(base, d, uint64_t);
    char buf[80], hbuf[80];
    if (cJSON_IsNumber(v)) {
        double x = v->valuedouble;
        if (!isfinite(x) || x != floor(x) || x < 0 || x >= MAX_INT53)
            return cfg__fail(c, "must be a non-negative integer or a list of intent names (got %s)",
                             cfg__describe(v, 0, buf, sizeof(buf)));
        uint64_t m = (uint64_t)x;
        for (int bit = 0; bit < 64; bit++)
            if ((m >> bit & 1) && !cfg_intent_name(bit))
                return cfg__fail(c, "bit %d (%llu) is not a known intent", bit,
                                 (unsigned long long)1 << bit);
        *mask = m;
        return SH_OK;
    }
    if (!cJSON_IsArray(v))
        return cfg__fail(c, "must be an integer or a list of intent names (got %s)",
                         cfg__describe(v, 0, buf, sizeof(buf)));
    size_t n;
    int rc = cfg__get_list(c, v, MAX_LIST, 1, "intent names", &n);
    if (rc)
        return rc;
    uint64_t m = 0;
    size_t i = 0;
    for (const cJSON *it = v->child; it; it = it->next, i++) {
        char *s;
        size_t mark = cfg__push_index(c, i);
        rc = cfg__get_string(c, it, MAX_STRING, 0, &s);
        if (!rc) {
            int bit = cfg_intent_bit(s);
            if (bit < 0) {
                struct hint h = {0};
                for (size_t k = 0; k < N_INTENTS; k++)
                    cfg__consider(&h, s, intents[k].name);
                rc = cfg__fail(c, "unknown intent %s%s", cfg__describe_val(c, s, buf, sizeof(buf)),
                               cfg__hint_text(&h, hbuf, sizeof(hbuf)));
            } else {
                m |= (uint64_t)1 << bit;
            }
            free(s);
        }
        cfg__pop(c, mark);
        if (rc)
            return rc;
    }
    *mask = m;
    return SH_OK;
}

int cfg__set_compress(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    static const char *const names[] = {"auto", "zstd", "zlib", "none"};
    enum cfg_compress *out = AT(base, d, enum cfg_compress);
    char buf[80];
    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v) ? CFG_COMPRESS_AUTO : CFG_COMPRESS_NONE;
        return SH_OK;
    }
    if (!cJSON_IsString(v))
        return cfg__fail(c,
                         "must be \"auto\", \"zstd\", \"zlib\", \"none\", true or false (got %s)",
                         cfg__describe(v, 0, buf, sizeof(buf)));
    char *s;
    int rc = cfg__get_string(c, v, MAX_STRING, 0, &s);
    if (rc)
        return rc;
    for (size_t i = 0; i < COUNT(names); i++) {
        if (!strcmp(s, names[i])) {
            *out = (enum cfg_compress)i;
            free(s);
            return SH_OK;
        }
    }
    rc = cfg__fail(c, "must be \"auto\", \"zstd\", \"zlib\", \"none\", true or false (got %s)",
                   cfg__describe_val(c, s, buf, sizeof(buf)));
    free(s);
    return rc;
}

/* ---- shards ---- */

int cfg__set_shard_ids(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    struct shards_tmp *t = base;
    size_t n;
    (void)d;
    int rc = cfg__get_list(c, v, MAX_SHARDS, 0, "shard ids", &n);
    if (rc)
        return rc;
    t->ids = calloc(n, sizeof(*t->ids));
    if (!t->ids)
        return cfg__oom(c);
    t->n_ids = n;
    struct directive id = {.min = 0, .max = MAX_SHARDS - 1};
    size_t i = 0;
    for (const cJSON *it = v->child; it && !rc; it = it->next, i++) {
        long long x = 0;
        size_t mark = cfg__push_index(c, i);
        rc = cfg__get_int(c, &id, it, &x);
        t->ids[i] = (int)x;
        cfg__pop(c, mark);
    }
    return rc;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int cfg__check_shards(struct ctx *c, void *base)
{
    struct shards_tmp *t = base;
    if (t->ids && (t->first >= 0 || t->last >= 0))
        return cfg__fail(c, "use either \"first\" and \"last\", or \"ids\", not both");
    if ((t->first >= 0) != (t->last >= 0))
        return cfg__fail_key(c, t->first >= 0 ? "last" : "first",
                             "missing (\"first\" and \"last\" go together)");
    if (t->first >= 0) {
        if (t->first >= t->total)
            return cfg__fail_key(c, "first", "must be less than shards.total (%d) (got %d)",
                                 t->total, t->first);
        if (t->last >= t->total)
            return cfg__fail_key(c, "last", "must be less than shards.total (%d) (got %d)",
                                 t->total, t->last);
        if (t->last < t->first)
            return cfg__fail_key(c, "last", "must not be less than shards.first (%d) (got %d)",
                                 t->first, t->last);
    }
    if (t->ids) {
        unsigned char *seen = calloc((size_t)t->total, 1);
        if (!seen)
            return cfg__oom(c);
        for (size_t i = 0; i < t->n_ids; i++) {
            int id = t->ids[i], bad = id >= t->total || seen[id];
            if (bad) {
                size_t mark = cfg__push_key(c, "ids");
                cfg__push_index(c, i);
                if (id >= t->total)
                    cfg__fail(c, "must be less than shards.total (%d) (got %d)", t->total, id);
                else
                    cfg__fail(c, "duplicate shard id %d", id);
                cfg__pop(c, mark);
                free(seen);
                return SH_ECONFIG;
            }
            seen[id] = 1;
        }
        free(seen);
        qsort(t->ids, t->n_ids, sizeof(*t->ids), cmp_int);
    }
    return SH_OK;
}

int cfg__set_shards(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    struct cfg_config *cfg = base;
    const char *form = "must be \"auto\" or an object such as {\"total\": 16}";
    char buf[80];
    (void)d;
    if (cJSON_IsString(v)) {
        char *s;
        int rc = cfg__get_string(c, v, MAX_STRING, 0, &s);
        if (rc)
            return rc;
        if (strcmp(s, "auto"))
            rc = cfg__fail(c, "%s (got %s)", form, cfg__describe_val(c, s, buf, sizeof(buf)));
        free(s);
        if (!rc) {
            free(cfg->shards.ids);
            memset(&cfg->shards, 0, sizeof(cfg->shards));
        }
        return rc;
    }
    if (!cJSON_IsObject(v))
        return cfg__fail(c, "%s (got %s)", form, cfg__describe(v, 0, buf, sizeof(buf)));
    struct shards_tmp t = {.first = -1, .last = -1};
    int rc = cfg__process_object(c, d->sub, v, &t);
    if (rc) {
        free(t.ids);
        return rc;
    }
    free(cfg->shards.ids);
    cfg->shards.total = t.total;
    cfg->shards.ids = t.ids;
    cfg->shards.n_ids = t.n_ids;
    if (t.ids) {
        cfg->shards.mode = CFG_SHARDS_IDS;
        cfg->shards.first = cfg->shards.last = 0;
    } else if (t.first >= 0) {
        cfg->shards.mode = CFG_SHARDS_RANGE;
        cfg->shards.first = t.first;
        cfg->shards.last = t.last;
    } else {
        cfg->shards.mode = CFG_SHARDS_TOTAL;
        cfg->shards.first = 0;
        cfg->shards.last = t.total - 1;
    }
    return SH_OK;
}

/* ---- webhooks ---- */

/* Two webhooks may not share a name: it picks one in the API and in metrics. */
static int check_names_unique(struct ctx *c, const struct cfg_config *cfg)
{
    for (size_t i = 0; i < cfg->n_webhooks; i++)
        for (size_t j = 0; cfg->webhooks[i].name && j < i; j++)
            if (cfg->webhooks[j].name && !strcmp(cfg->webhooks[i].name, cfg->webhooks[j].name)) {
                size_t mark = cfg__push_index(c, i);
                int rc = cfg__fail_key(c, "name", "\"%s\" is already the name of webhooks[%zu]",
                                       cfg->webhooks[i].name, j);
                cfg__pop(c, mark);
                return rc;
            }
    return SH_OK;
}

int cfg__set_webhooks(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    struct cfg_config *cfg = base;
    size_t n;
    char buf[80];
    int rc = cfg__get_list(c, v, MAX_WEBHOOKS, 1, "webhook objects", &n);
    if (rc)
        return rc;
    cfg->webhooks = calloc(n ? n : 1, sizeof(*cfg->webhooks));
    if (!cfg->webhooks)
        return cfg__oom(c);
    cfg->n_webhooks = n;
    size_t i = 0;
    for (const cJSON *it = v->child; it && !rc; it = it->next, i++) {
        size_t mark = cfg__push_index(c, i);
        if (!cJSON_IsObject(it))
            rc = cfg__fail(c, "must be an object (got %s)", cfg__describe(it, 0, buf, sizeof(buf)));
        else
            rc = cfg__process_object(c, d->sub, it, &cfg->webhooks[i]);
        cfg__pop(c, mark);
    }
    return rc ? rc : check_names_unique(c, cfg);
}

/* webhooks[].name: 1 to CFG_WEBHOOK_NAME_MAX of [A-Za-z0-9_.-], not all digits (an index). */
int cfg__set_webhook_name(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    char *s;
    int rc = cfg__get_string(c, v, (size_t)d->max, 0, &s);
    if (rc)
        return rc;
    size_t n = strlen(s), digits = strspn(s, "0123456789");
    size_t ok = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-");
    if (n == 0 || ok != n || digits == n) {
        char buf[80];
        rc =
            cfg__fail(c, "must be 1 to %d characters of A-Z a-z 0-9 _ . -, not all digits (got %s)",
                      CFG_WEBHOOK_NAME_MAX, cfg__describe_val(c, s, buf, sizeof(buf)));
        free(s);
        return rc;
    }
    cfg__store_str(AT(base, d, char *), s);
    return SH_OK;
}

/* Length of the base64 text's decoded bytes, or -1 when it is not standard base64. */
static long base64_decoded_len(const char *s)
{
    size_t n = strlen(s), pad = 0;
    while (n > 0 && s[n - 1] == '=' && pad < 2) {
        n--;
        pad++;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '+' || ch == '/'))
            return -1;
    }
    if (n % 4 == 1 || (pad && (n + pad) % 4 != 0))
        return -1;
    return (long)(n * 6 / 8);
}

static int secret_one(struct ctx *c, const cJSON *v, char **out)
{
    int rc = cfg__get_string(c, v, MAX_STRING, 1, out);
    if (rc)
        return rc;
    long n = strncmp(*out, "whsec_", 6) ? -2 : base64_decoded_len(*out + 6);
    if (n == -2)
        rc = cfg__fail(c, "must start with \"whsec_\" followed by the base64 key");
    else if (n < 0)
        rc = cfg__fail(c, "the part after \"whsec_\" must be standard base64 (A-Z a-z 0-9 + /, "
                          "optional = padding)");
    else if (n < 1 || n > MAX_SECRET_BYTES)
        rc = cfg__fail(c,
                       "the base64 after \"whsec_\" must decode to 1 to %d bytes (decodes to %ld)",
                       MAX_SECRET_BYTES, n);
    if (rc)
        SH_FREE(*out);
    return rc;
}

int cfg__set_secret(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    struct cfg_webhook *w = base;
    char buf[80];
    (void)d;
    if (cJSON_IsNull(v)) {
        w->unsigned_ok = 1;
        return SH_OK;
    }
    if (cJSON_IsString(v)) {
        w->secrets = calloc(1, sizeof(*w->secrets));
        if (!w->secrets)
            return cfg__oom(c);
        w->n_secrets = 1;
        return secret_one(c, v, &w->secrets[0]);
    }
    if (!cJSON_IsArray(v))
        return cfg__fail(c, "must be a \"whsec_...\" string, a list of them, or null (got %s)",
                         cfg__describe(v, 1, buf, sizeof(buf)));
    size_t n;
    int rc = cfg__get_list(c, v, MAX_SECRETS, 0, "\"whsec_...\" strings", &n);
    if (rc)
        return rc;
    w->secrets = calloc(n, sizeof(*w->secrets));
    if (!w->secrets)
        return cfg__oom(c);
    w->n_secrets = n;
    size_t i = 0;
    for (const cJSON *it = v->child; it && !rc; it = it->next, i++) {
        size_t mark = cfg__push_index(c, i);
        rc = secret_one(c, it, &w->secrets[i]);
        cfg__pop(c, mark);
    }
    return rc;
}

static int header_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_HEADER_NAME)
        return 0;
    for (; *s; s++) /* RFC 9110 token characters */
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *s)))
            return 0;
    return 1;
}

int cfg__set_headers(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    /* set per request by the bridge, or by libcurl: overriding them would break delivery */
    static const char *const reserved[] = {
        "content-type", "content-length", "transfer-encoding", "host",
        "connection",   "webhook-id",     "webhook-timestamp", "webhook-signature"};
    struct cfg_webhook *w = base;
    char buf[80];
    (void)d;
    if (!cJSON_IsObject(v))
        return cfg__fail(c, "must be an object of header names to string values (got %s)",
                         cfg__describe(v, 0, buf, sizeof(buf)));
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n > MAX_HEADERS)
        return cfg__fail(c, "must have at most %d headers (got %zu)", MAX_HEADERS, n);
    w->headers = calloc(n ? n : 1, sizeof(*w->headers));
    if (!w->headers)
        return cfg__oom(c);
    w->n_headers = n;
    size_t i = 0;
    int rc = SH_OK;
    for (const cJSON *it = v->child; it && !rc; it = it->next, i++) {
        const char *name = it->string;
        size_t mark = cfg__push_key(c, name);
        if (!header_name_ok(name))
            rc =
                cfg__fail(c, "not a valid header name (letters, digits and !#$%%&'*+-.^_`|~ only)");
        for (size_t k = 0; !rc && k < COUNT(reserved); k++)
            if (!strcasecmp(name, reserved[k]))
                rc = cfg__fail(c, "set by shardhook itself; it cannot be configured");
        for (const cJSON *p = v->child; !rc && p != it; p = p->next)
            if (!strcasecmp(p->string, name))
                rc = cfg__fail(c, "duplicate header (names are case-insensitive)");
        if (!rc) /* values may hold credentials: never echoed */
            rc = cfg__get_string(c, it, MAX_HEADER_VALUE, 1, &w->headers[i].value);
        if (!rc && !(w->headers[i].name = strdup(name)))
            rc = cfg__oom(c);
        cfg__pop(c, mark);
    }
    return rc;
}

/* ---- http ---- */

int cfg__set_listen(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    struct cfg_listen l;
    char *s, why[200], buf[80];
    int rc = cfg__get_string(c, v, 300, 0, &s);
    if (rc)
        return rc;
    if (cfg_listen_parse(s, &l, why, sizeof(why))) {
        rc = cfg__fail(c, "%s (got %s)", why, cfg__describe_val(c, s, buf, sizeof(buf)));
        free(s);
        return rc;
    }
    cfg__store_str(AT(base, d, char *), s);
    return SH_OK;
}

int cfg__check_http(struct ctx *c, void *base)
{
    struct cfg_config *cfg = base;
    struct cfg_listen l;
    char buf[80];
    if (cfg_listen_parse(cfg->http_listen, &l, NULL, 0) == 0 && !l.loopback && !cfg->http_token)
        return cfg__fail_key(c, "token",
                             "required when http.listen is not a loopback address "
                             "(listen is %s)",
                             cfg__describe_val(c, cfg->http_listen, buf, sizeof(buf)));
    return SH_OK;
}

/* ---- cluster ---- */

int cfg__set_cluster(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    char buf[80];
    if (!cJSON_IsObject(v))
        return cfg__fail(c, "must be an object (got %s)", cfg__describe(v, 0, buf, sizeof(buf)));
    ((struct cfg_config *)base)->cluster = 1;
    return cfg__process_object(c, d->sub, v, base);
}

/* The Redis address may hold its password: never echoed. */
int cfg__set_redis_url(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    struct cfg_redis_url u;
    char *s, why[200];
    int rc = cfg__get_string(c, v, MAX_URL, 1, &s);
    if (rc)
        return rc;
    if (cfg_redis_url_parse(s, &u, why, sizeof(why))) {
        free(s);
        return cfg__fail(c, "%s", why);
    }
    memset(u.password, 0, sizeof(u.password));
    cfg__store_str(AT(base, d, char *), s);
    return SH_OK;
}

/* A node name: 1..64 of A-Z a-z 0-9 . _ - (it goes into Redis key names and log lines). */
static const char *node_name_problem(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return "must be 1 to 64 characters";
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return "may hold only A-Z a-z 0-9 . _ -";
    return NULL;
}

int cfg__set_node_name(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    char *s, buf[80];
    int rc = cfg__get_string(c, v, 256, 0, &s);
    if (rc)
        return rc;
    const char *why = node_name_problem(s);
    if (why) {
        rc = cfg__fail(c, "%s (got %s)", why, cfg__describe_val(c, s, buf, sizeof(buf)));
        free(s);
        return rc;
    }
    cfg__store_str(AT(base, d, char *), s);
    return SH_OK;
}

/* cluster.node left out: the host name, when it makes a valid node name. */
int cfg__check_cluster(struct ctx *c, void *base)
{
    struct cfg_config *cfg = base;
    if (cfg->cluster_node)
        return SH_OK;
    char host[256] = "", buf[80];
    if (gethostname(host, sizeof(host) - 1))
        return cfg__fail_key(c, "node", "missing, and the host name cannot be read: set it");
    const char *why = node_name_problem(host);
    if (why)
        return cfg__fail_key(c, "node", "missing, and the host name %s %s: set it",
                             cfg__describe_str(host, 0, buf, sizeof(buf)), why);
    if (!(cfg->cluster_node = strdup(host)))
        return cfg__oom(c);
    return SH_OK;
}

/* ---- cache ---- */

int cfg__set_cache(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    char buf[80];
    if (!cJSON_IsObject(v))
        return cfg__fail(c, "must be an object (got %s)", cfg__describe(v, 0, buf, sizeof(buf)));
    ((struct cfg_config *)base)->cache = 1;
    return cfg__process_object(c, d->sub, v, base);
}

/* One kind's boolean (d->min is its CFG_CACHE_<KIND>): noted as set true or set false. */
int cfg__set_cache_kind(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    struct cfg_config *cfg = base;
    char buf[80];
    if (!cJSON_IsBool(v))
        return cfg__fail(c, "must be true or false (got %s)",
                         cfg__describe(v, 0, buf, sizeof(buf)));
    int k = (int)d->min;
    cfg->cache_kinds |= 1u << (cJSON_IsTrue(v) ? k : CFG__CACHE_OFF + k);
    return SH_OK;
}

/*
 * The kinds kept: a kind set true needs its intent (refused without it), a kind left out is kept
 * when the intents have it (presences only when set true).
 */
static int check_cache(struct ctx *c, struct cfg_config *cfg)
{
#define CACHE_KIND_(id, key, intent) {CFG_CACHE_##id, key, #intent},
    static const struct {
        int kind;
        const char *key, *intent;
    } kinds[] = {CFG_CACHE_KINDS(CACHE_KIND_)};
#undef CACHE_KIND_
    unsigned set = cfg->cache_kinds, kept = 0;
    for (size_t i = 0; cfg->cache && i < COUNT(kinds); i++) {
        int k = kinds[i].kind, bit = cfg_intent_bit(kinds[i].intent);
        int has = bit >= 0 && (cfg->intents >> bit & 1);
        int on = set >> k & 1, off = set >> (CFG__CACHE_OFF + k) & 1;
        if (on && !has) {
            char key[64];
            snprintf(key, sizeof(key), "cache.%s", kinds[i].key);
            return cfg__fail_key(c, key,
                                 "needs the %s intent (add it to \"intents\" or set \"%s\": false)",
                                 kinds[i].intent, kinds[i].key);
        }
        if (on || (!off && has && k != CFG_CACHE_PRESENCES))
            kept |= 1u << k;
    }
    cfg->cache_kinds = kept;
    return SH_OK;
}

/* ---- top-level cross-key rules ---- */

int cfg__check_top(struct ctx *c, void *base)
{
    struct cfg_config *cfg = base;
    if (!cfg->token) {
        const char *env = getenv("DISCORD_TOKEN");
        if (env && !strncmp(env, "Bot ", 4))
            env += 4;
        if (!env || !*env)
            return cfg__fail_key(c, "token", "missing (set \"token\" or DISCORD_TOKEN)");
        if (strlen(env) > MAX_TOKEN || cfg__has_control(env) || strpbrk(env, " \t"))
            return cfg__fail_key(c, "token",
                                 "DISCORD_TOKEN must be at most %d bytes, without spaces "
                                 "or control characters",
                                 MAX_TOKEN);
        if (!(cfg->token = strdup(env)))
            return cfg__oom(c);
    }
    if (cfg->reconnect_max_ms < cfg->reconnect_base_ms)
        return cfg__fail_key(c, "reconnect_max_ms",
                             "must not be less than reconnect_base_ms (%d) "
                             "(got %d)",
                             cfg->reconnect_base_ms, cfg->reconnect_max_ms);
    return check_cache(c, cfg);
}
