/*
 * config/config.c: turns the JSON config into the immutable struct cfg_config.
 *
 * Owns the directive tables (name, handler, offset, range, default, doc) for every
 * key, the handlers that expand `${NAME}`, validate and store each value, and the
 * intents table. Defaults are JSON text run through the same handler as a user's
 * value, so a default cannot break the rules its key enforces, and cfg_doc_entry()
 * reads the same tables, so the docs cannot drift from them. Start-up only; touches
 * no other room and never writes a token or secret into a message.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "config/config.h"
#include "config/expand.h"
#include "lib/discord.h"
#include "config/listen.h"
#include "lib/buf.h"
#include "lib/errors.h"

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
    int literal;     /* strings are taken as given, no ${NAME} (control API bodies) */
    int unknown_key; /* the failure is a key the table does not know */
};

/* Length of the valid UTF-8 sequence at s (not NUL), 0 when the bytes there are not one. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned c = s[0], cp, min;
    size_t n;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, min = 0x10000;
    else
        return 0;
    cp = c & (0xffu >> (n + 1));
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    return cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ? 0 : n;
}

static int utf8_ok(const char *s)
{
    for (size_t n; *s; s += n)
        if (!(n = utf8_seq((const unsigned char *)s)))
            return 0;
    return 1;
}

/* Messages are one printable UTF-8 line: control characters and stray bytes become '?'. */
static void sanitize(char *s)
{
    while (*s) {
        size_t n = utf8_seq((const unsigned char *)s);
        if (!n || (unsigned char)*s < 0x20 || *s == 0x7f) {
            *s++ = '?';
            continue;
        }
        s += n;
    }
}

static void path_append(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void path_append(struct ctx *c, const char *fmt, ...)
{
    size_t room = sizeof(c->path) - c->plen;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->path + c->plen, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        c->plen += (size_t)n < room ? (size_t)n : room - 1;
}

static size_t push_key(struct ctx *c, const char *key)
{
    size_t mark = c->plen;
    size_t n = strlen(key);
    path_append(c, "%s%.*s%s", c->plen ? "." : "", n > 64 ? 64 : (int)n, key, n > 64 ? "..." : "");
    return mark;
}

static size_t push_index(struct ctx *c, size_t i)
{
    size_t mark = c->plen;
    path_append(c, "[%zu]", i);
    return mark;
}

static void pop(struct ctx *c, size_t mark)
{
    c->plen = mark;
    c->path[mark] = '\0';
}

static int vfail(struct ctx *c, int rc, const char *fmt, va_list ap)
{
    if (c->failed || !c->err || !c->errlen)
        return rc;
    c->failed = 1;
    int n = snprintf(c->err, c->errlen, "%s: ", c->plen ? c->path : "config");
    if (n >= 0 && (size_t)n < c->errlen)
        vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    sanitize(c->err);
    return rc;
}

static int fail(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail(c, SH_ECONFIG, fmt, ap);
    va_end(ap);
    return rc;
}

/* fail() with key appended to the current path, for checks made after a whole object. */
static int fail_key(struct ctx *c, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_key(struct ctx *c, const char *key, const char *fmt, ...)
{
    size_t mark = push_key(c, key);
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail(c, SH_ECONFIG, fmt, ap);
    va_end(ap);
    pop(c, mark);
    return rc;
}

static int oom(struct ctx *c)
{
    fail(c, "out of memory");
    return SH_ENOMEM;
}

/* What a value is, for "(got ...)": quoted strings are cut short; redact hides values. */
static const char *describe_str(const char *s, int redact, char *buf, size_t n)
{
    if (redact)
        return "a string";
    size_t len = strlen(s);
    snprintf(buf, n, "\"%.*s%s\"", len > 48 ? 48 : (int)len, s, len > 48 ? "..." : "");
    return buf;
}

static const char *describe(const cJSON *v, int redact, char *buf, size_t n)
{
    if (cJSON_IsString(v))
        return describe_str(v->valuestring, redact, buf, n);
    if (cJSON_IsNumber(v)) {
        if (redact)
            return "a number";
        if (!isfinite(v->valuedouble))
            return "a number out of range";
        snprintf(buf, n, "%.15g", v->valuedouble);
        return buf;
    }
    if (cJSON_IsTrue(v))
        return redact ? "a boolean" : "true";
    if (cJSON_IsFalse(v))
        return redact ? "a boolean" : "false";
    if (cJSON_IsNull(v))
        return "null";
    if (cJSON_IsArray(v))
        return "a list";
    if (cJSON_IsObject(v))
        return "an object";
    return "an invalid value";
}

/* ---- did-you-mean ---- */

static int lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

/* Case-insensitive edit distance with transpositions; (size_t)-1 for long inputs. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return (size_t)-1;
    size_t d[65][65];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = lower(a[i - 1]) != lower(b[j - 1]);
            size_t best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < best)
                best = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
                lower(a[i - 2]) == lower(b[j - 1]) && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

struct hint {
    const char *best;
    size_t dist;
};

static void consider(struct hint *h, const char *key, const char *cand)
{
    size_t d = distance(key, cand), len = strlen(cand);
    size_t limit = len < 5 ? 1 : 2;
    if (d == (size_t)-1 || d >= strlen(key) || (d > limit && d * 4 > len))
        return;
    if (!h->best || d < h->dist) {
        h->best = cand;
        h->dist = d;
    }
}

static const char *hint_text(const struct hint *h, char *buf, size_t n)
{
    if (!h->best)
        return "";
    snprintf(buf, n, " (did you mean \"%s\"?)", h->best);
    return buf;
}

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

static int process_object(struct ctx *c, const struct section *sec, const cJSON *obj, void *base);

/* ---- value helpers ---- */

static int has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

/* s copied into a fresh *out when it is at most max bytes: SH_OK, SH_ETOOBIG or SH_ENOMEM. */
static int copy_literal(const char *s, size_t max, char **out)
{
    if (strlen(s) > max)
        return SH_ETOOBIG;
    *out = strdup(s);
    return *out ? SH_OK : SH_ENOMEM;
}

/* Expand v (a string) into a fresh *out of at most maxlen bytes, without control characters. */
static int get_string(struct ctx *c, const cJSON *v, size_t maxlen, int redact, char **out)
{
    char why[160], buf[80];
    *out = NULL;
    if (!cJSON_IsString(v))
        return fail(c, "must be a string (got %s)", describe(v, redact, buf, sizeof(buf)));
    int rc = c->literal ? copy_literal(v->valuestring, maxlen, out)
                        : cfg_expand(v->valuestring, maxlen, out, why, sizeof(why));
    if (rc == SH_ENOMEM)
        return oom(c);
    if (rc == SH_ETOOBIG)
        return fail(c, "must be at most %zu bytes long", maxlen);
    if (rc)
        return fail(c, "%s", why);
    if (has_control(*out)) {
        SH_FREE(*out);
        return fail(c, "must not contain control characters such as newlines");
    }
    if (!utf8_ok(*out)) {
        SH_FREE(*out);
        return fail(c, "must be valid UTF-8 text");
    }
    return SH_OK;
}

static int get_int(struct ctx *c, const struct directive *d, const cJSON *v, long long *out)
{
    char buf[80];
    if (cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble == floor(v->valuedouble) &&
        v->valuedouble >= (double)d->min && v->valuedouble <= (double)d->max) {
        *out = (long long)v->valuedouble;
        return SH_OK;
    }
    return fail(c, "must be an integer from %lld to %lld (got %s)", d->min, d->max,
                describe(v, d->flags & D_SECRET, buf, sizeof(buf)));
}

static void store_str(char **slot, char *s)
{
    free(*slot);
    *slot = s;
}

/* An event name as Discord spells it: A-Z, 0-9 and _; with star, also "PREFIX*" and "*". */
static int event_pattern_ok(const char *s, int star)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_EVENT_NAME)
        return 0;
    if (star && s[n - 1] == '*')
        n--; /* "*" alone leaves nothing to check */
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
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

/* ---- generic handlers ---- */

static int set_str(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    char *s;
    int rc = get_string(c, v, (size_t)d->max, d->flags & D_SECRET, &s);
    if (rc)
        return rc;
    if ((long long)strlen(s) < d->min) {
        free(s);
        return fail(c, "must not be empty");
    }
    store_str(AT(base, d, char *), s);
    return SH_OK;
}

static int set_choice(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    char *s, list[160] = "", buf[80];
    int rc = get_string(c, v, MAX_STRING, 0, &s);
    if (rc)
        return rc;
    for (size_t i = 0; d->choices[i]; i++) {
        if (!strcmp(s, d->choices[i])) {
            store_str(AT(base, d, char *), s);
            return SH_OK;
        }
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
                 d->choices[i]);
    }
    rc = fail(c, "must be one of %s (got %s)", list, describe_str(s, 0, buf, sizeof(buf)));
    free(s);
    return rc;
}

static int set_int(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    long long n;
    int rc = get_int(c, d, v, &n);
    if (!rc)
        *AT(base, d, int) = (int)n;
    return rc;
}

static int set_size(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    long long n;
    int rc = get_int(c, d, v, &n);
    if (!rc)
        *AT(base, d, size_t) = (size_t)n;
    return rc;
}

static int set_bool(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    char buf[80];
    if (!cJSON_IsBool(v))
        return fail(c, "must be true or false (got %s)", describe(v, 0, buf, sizeof(buf)));
    *AT(base, d, int) = cJSON_IsTrue(v);
    return SH_OK;
}

/*
 * What libcurl's URL parser says about s (the parser every request goes through), so a URL
 * that could never be requested fails at load time rather than on every retry. Returns 0 when
 * libcurl takes it and finds a host.
 */
static int url_parse_error(const char *s, char *why, size_t n)
{
    CURLU *u = curl_url();
    if (!u) {
        snprintf(why, n, "cannot be checked (out of memory)");
        return 1;
    }
    char *host = NULL;
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, s, 0);
    if (!uc)
        uc = curl_url_get(u, CURLUPART_HOST, &host, 0);
    if (uc)
        snprintf(why, n, "is not a URL libcurl can use: %s", curl_url_strerror(uc));
    else if (!host || !*host)
        snprintf(why, n, "must be an http:// or https:// URL with a host");
    int bad = uc || !host || !*host;
    curl_free(host);
    curl_url_cleanup(u);
    return bad;
}

static int set_url(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    int redact = d->flags & D_SECRET;
    char *s, buf[80];
    int rc = get_string(c, v, MAX_URL, redact, &s);
    if (rc)
        return rc;
    const char *why = NULL, *rest = NULL;
    if (!strncasecmp(s, "https://", 8))
        rest = s + 8;
    else if (!strncasecmp(s, "http://", 7))
        rest = s + 7;
    if (!rest)
        why = "must be an http:// or https:// URL";
    else if (!*rest || strchr("/?#:", *rest))
        why = "must be an http:// or https:// URL with a host";
    else if (strpbrk(s, " \t"))
        why = "must be a URL without spaces";
    char curl_why[160];
    if (!why && url_parse_error(s, curl_why, sizeof(curl_why)))
        why = curl_why;
    if (why) {
        rc = redact ? fail(c, "%s", why)
                    : fail(c, "%s (got %s)", why, describe_str(s, 0, buf, sizeof(buf)));
        free(s);
        return rc;
    }
    if (d->flags & D_STRIP_SLASH) {
        size_t n = strlen(s);
        while (n > (size_t)(rest - s) + 1 && s[n - 1] == '/')
            s[--n] = '\0';
    }
    store_str(AT(base, d, char *), s);
    return SH_OK;
}

/* Tokens go into HTTP headers: no spaces, no control characters, and never echoed. */
static int set_token(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    char *s;
    int rc = get_string(c, v, MAX_TOKEN, 1, &s);
    if (rc)
        return rc;
    if (d->flags & D_STRIP_BOT && !strncmp(s, "Bot ", 4)) /* "Bot <token>" pasted whole */
        memmove(s, s + 4, strlen(s + 4) + 1);
    if (!*s)
        rc = fail(c, "%s", d->missing);
    else if (strpbrk(s, " \t"))
        rc = fail(c, "must not contain spaces");
    if (rc) {
        free(s);
        return rc;
    }
    store_str(AT(base, d, char *), s);
    return SH_OK;
}

static int set_section(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    char buf[80];
    if (!cJSON_IsObject(v))
        return fail(c, "must be an object (got %s)", describe(v, 0, buf, sizeof(buf)));
    return process_object(c, d->sub, v, base);
}

/* Check v is a list of 1 (or 0 when empty_ok) to max items; its length goes in *n. */
static int get_list(struct ctx *c, const cJSON *v, size_t max, int empty_ok, const char *what,
                    size_t *n)
{
    char buf[80];
    if (!cJSON_IsArray(v))
        return fail(c, "must be a list of %s (got %s)", what, describe(v, 0, buf, sizeof(buf)));
    *n = (size_t)cJSON_GetArraySize(v);
    if (*n == 0 && !empty_ok)
        return fail(c, "must not be empty");
    if (*n > max)
        return fail(c, "must have at most %zu items (got %zu)", max, *n);
    return SH_OK;
}

/* A list of event names into the (char **, size_t) pair at d->off and d->off_n. */
static int set_event_list(struct ctx *c, const struct directive *d, const cJSON *v, void *base,
                          int star, int empty_ok)
{
    char ***list = AT(base, d, char **);
    size_t *count = (size_t *)(void *)((char *)base + d->off_n);
    size_t n;
    int rc = get_list(c, v, MAX_LIST, empty_ok, "event names", &n);
    if (rc)
        return rc;
    char **items = calloc(n ? n : 1, sizeof(*items));
    if (!items)
        return oom(c);
    *list = items;
    *count = n;
    size_t i = 0;
    for (const cJSON *it = v->child; it && !rc; it = it->next, i++) {
        char buf[80];
        size_t mark = push_index(c, i);
        rc = get_string(c, it, MAX_EVENT_NAME, 0, &items[i]);
        if (!rc && !event_pattern_ok(items[i], star))
            rc = fail(c, "must be an event name in upper case like \"MESSAGE_CREATE\"%s (got %s)",
                      star ? ", a prefix like \"GUILD_*\", or \"*\"" : "",
                      describe_str(items[i], 0, buf, sizeof(buf)));
        pop(c, mark);
    }
    return rc;
}

static int set_events(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    return set_event_list(c, d, v, base, 1, 0);
}

static int set_event_names(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    return set_event_list(c, d, v, base, 0, 1);
}

/*
 * http.allowed_hosts: host names as a Host header carries them, "name" (any port) or
 * "name:port", lower-cased; an IPv6 address in brackets.
 */
static int host_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 255)
        return 0;
    for (const char *p = s; *p; p++)
        if (!(isalnum((unsigned char)*p) || strchr(".-_:[]", *p)))
            return 0;
    return s[0] != ':';
}

static int set_host_list(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    char ***list = AT(base, d, char **);
    size_t *count = (size_t *)(void *)((char *)base + d->off_n);
    size_t n;
    int rc = get_list(c, v, 64, 1, "host names", &n);
    if (rc)
        return rc;
    char **items = calloc(n ? n : 1, sizeof(*items));
    if (!items)
        return oom(c);
    *list = items;
    *count = n;
    size_t i = 0;
    for (const cJSON *it = v->child; it && !rc; it = it->next, i++) {
        char buf[80];
        size_t mark = push_index(c, i);
        rc = get_string(c, it, 300, 0, &items[i]);
        if (!rc && !host_name_ok(items[i]))
            rc = fail(c, "must be a host name as a Host header carries it, like "
                         "\"shardhook.internal\" or \"shardhook.internal:7878\" (got %s)",
                      describe_str(items[i], 0, buf, sizeof(buf)));
        for (char *q = items[i]; !rc && *q; q++)
            *q = (char)tolower((unsigned char)*q);
        pop(c, mark);
    }
    return rc;
}

/* ---- top-level special keys ---- */

static int set_intents(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    uint64_t *mask = AT(base, d, uint64_t);
    char buf[80], hbuf[80];
    if (cJSON_IsNumber(v)) {
        double x = v->valuedouble;
        if (!isfinite(x) || x != floor(x) || x < 0 || x >= MAX_INT53)
            return fail(c, "must be a non-negative integer or a list of intent names (got %s)",
                        describe(v, 0, buf, sizeof(buf)));
        uint64_t m = (uint64_t)x;
        for (int bit = 0; bit < 64; bit++)
            if ((m >> bit & 1) && !cfg_intent_name(bit))
                return fail(c, "bit %d (%llu) is not a known intent", bit,
                            (unsigned long long)1 << bit);
        *mask = m;
        return SH_OK;
    }
    if (!cJSON_IsArray(v))
        return fail(c, "must be an integer or a list of intent names (got %s)",
                    describe(v, 0, buf, sizeof(buf)));
    size_t n;
    int rc = get_list(c, v, MAX_LIST, 1, "intent names", &n);
    if (rc)
        return rc;
    uint64_t m = 0;
    size_t i = 0;
    for (const cJSON *it = v->child; it; it = it->next, i++) {
        char *s;
        size_t mark = push_index(c, i);
        rc = get_string(c, it, MAX_STRING, 0, &s);
        if (!rc) {
            int bit = cfg_intent_bit(s);
            if (bit < 0) {
                struct hint h = {0};
                for (size_t k = 0; k < N_INTENTS; k++)
                    consider(&h, s, intents[k].name);
                rc = fail(c, "unknown intent %s%s", describe_str(s, 0, buf, sizeof(buf)),
                          hint_text(&h, hbuf, sizeof(hbuf)));
            } else {
                m |= (uint64_t)1 << bit;
            }
            free(s);
        }
        pop(c, mark);
        if (rc)
            return rc;
    }
    *mask = m;
    return SH_OK;
}

static int set_compress(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    static const char *const names[] = {"auto", "zstd", "zlib", "none"};
    enum cfg_compress *out = AT(base, d, enum cfg_compress);
    char buf[80];
    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v) ? CFG_COMPRESS_AUTO : CFG_COMPRESS_NONE;
        return SH_OK;
    }
    if (!cJSON_IsString(v))
        return fail(c, "must be \"auto\", \"zstd\", \"zlib\", \"none\", true or false (got %s)",
                    describe(v, 0, buf, sizeof(buf)));
    char *s;
    int rc = get_string(c, v, MAX_STRING, 0, &s);
    if (rc)
        return rc;
    for (size_t i = 0; i < COUNT(names); i++) {
        if (!strcmp(s, names[i])) {
            *out = (enum cfg_compress)i;
            free(s);
            return SH_OK;
        }
    }
    rc = fail(c, "must be \"auto\", \"zstd\", \"zlib\", \"none\", true or false (got %s)",
              describe_str(s, 0, buf, sizeof(buf)));
    free(s);
    return rc;
}

/* "auto" (stored as 0) or an integer in the directive's range. */
static int set_auto_int(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    char buf[80];
    long long n;
    if (cJSON_IsNumber(v) && get_int(&(struct ctx){0}, d, v, &n) == SH_OK) {
        *AT(base, d, int) = (int)n;
        return SH_OK;
    }
    if (cJSON_IsString(v)) {
        char *s;
        int rc = get_string(c, v, MAX_STRING, 0, &s);
        if (rc)
            return rc;
        int is_auto = !strcmp(s, "auto");
        if (!is_auto)
            rc = fail(c, "must be \"auto\" or an integer from %lld to %lld (got %s)", d->min,
                      d->max, describe_str(s, 0, buf, sizeof(buf)));
        free(s);
        if (!rc)
            *AT(base, d, int) = 0;
        return rc;
    }
    return fail(c, "must be \"auto\" or an integer from %lld to %lld (got %s)", d->min, d->max,
                describe(v, 0, buf, sizeof(buf)));
}

/* shards: "auto" or an object read into this scratch form, then checked as a whole. */
struct shards_tmp {
    int total, first, last; /* first/last -1 when absent */
    int *ids;
    size_t n_ids;
};

static int set_shard_ids(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    struct shards_tmp *t = base;
    size_t n;
    (void)d;
    int rc = get_list(c, v, MAX_SHARDS, 0, "shard ids", &n);
    if (rc)
        return rc;
    t->ids = calloc(n, sizeof(*t->ids));
    if (!t->ids)
        return oom(c);
    t->n_ids = n;
    struct directive id = {.min = 0, .max = MAX_SHARDS - 1};
    size_t i = 0;
    for (const cJSON *it = v->child; it && !rc; it = it->next, i++) {
        long long x = 0;
        size_t mark = push_index(c, i);
        rc = get_int(c, &id, it, &x);
        t->ids[i] = (int)x;
        pop(c, mark);
    }
    return rc;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int check_shards(struct ctx *c, void *base)
{
    struct shards_tmp *t = base;
    if (t->ids && (t->first >= 0 || t->last >= 0))
        return fail(c, "use either \"first\" and \"last\", or \"ids\", not both");
    if ((t->first >= 0) != (t->last >= 0))
        return fail_key(c, t->first >= 0 ? "last" : "first",
                        "missing (\"first\" and \"last\" go together)");
    if (t->first >= 0) {
        if (t->first >= t->total)
            return fail_key(c, "first", "must be less than shards.total (%d) (got %d)", t->total,
                            t->first);
        if (t->last >= t->total)
            return fail_key(c, "last", "must be less than shards.total (%d) (got %d)", t->total,
                            t->last);
        if (t->last < t->first)
            return fail_key(c, "last", "must not be less than shards.first (%d) (got %d)", t->first,
                            t->last);
    }
    if (t->ids) {
        unsigned char *seen = calloc((size_t)t->total, 1);
        if (!seen)
            return oom(c);
        for (size_t i = 0; i < t->n_ids; i++) {
            int id = t->ids[i], bad = id >= t->total || seen[id];
            if (bad) {
                size_t mark = push_key(c, "ids");
                push_index(c, i);
                if (id >= t->total)
                    fail(c, "must be less than shards.total (%d) (got %d)", t->total, id);
                else
                    fail(c, "duplicate shard id %d", id);
                pop(c, mark);
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

static int set_shards(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    struct cfg_config *cfg = base;
    const char *form = "must be \"auto\" or an object such as {\"total\": 16}";
    char buf[80];
    (void)d;
    if (cJSON_IsString(v)) {
        char *s;
        int rc = get_string(c, v, MAX_STRING, 0, &s);
        if (rc)
            return rc;
        if (strcmp(s, "auto"))
            rc = fail(c, "%s (got %s)", form, describe_str(s, 0, buf, sizeof(buf)));
        free(s);
        if (!rc) {
            free(cfg->shards.ids);
            memset(&cfg->shards, 0, sizeof(cfg->shards));
        }
        return rc;
    }
    if (!cJSON_IsObject(v))
        return fail(c, "%s (got %s)", form, describe(v, 0, buf, sizeof(buf)));
    struct shards_tmp t = {.first = -1, .last = -1};
    int rc = process_object(c, d->sub, v, &t);
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
    if (len > MAX_PRESENCE_JSON) {
        fail(c,
             "too large: %zu bytes once serialised (at most %d, so that it fits in "
             "a gateway payload)",
             len, MAX_PRESENCE_JSON);
        return SH_ETOOBIG;
    }
    return *out ? SH_OK : oom(c);
}

static const struct section presence_section;

/*
 * The one presence validation, for the config's `presence` and the control API's body: v
 * through presence_section (defaults filled in), re-serialised compactly into *json.
 */
static int parse_presence(struct ctx *c, const cJSON *v, char **json)
{
    char buf[80];
    *json = NULL;
    if (!cJSON_IsObject(v))
        return fail(c, "must be an object or null (got %s)", describe(v, 0, buf, sizeof(buf)));
    struct presence_tmp p = {0};
    int rc = process_object(c, &presence_section, v, &p);
    if (!rc)
        rc = build_presence(c, &p, json);
    presence_tmp_free(&p);
    return rc;
}

static int set_presence(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    char *json;
    int rc = parse_presence(c, v, &json);
    if (!rc)
        store_str(AT(base, d, char *), json);
    return rc == SH_ETOOBIG ? SH_ECONFIG : rc;
}

int cfg_presence_parse(const cJSON *presence, unsigned flags, char **out_json, char *err,
                       size_t errlen)
{
    struct ctx c = {.err = err, .errlen = errlen, .literal = !!(flags & CFG_PRESENCE_LITERAL)};
    push_key(&c, "presence");
    int rc = parse_presence(&c, presence, out_json);
    free(c.values);
    return rc == SH_ECONFIG && c.unknown_key ? SH_ENOTFOUND : rc;
}

/* ---- webhooks ---- */

static int set_webhooks(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    struct cfg_config *cfg = base;
    size_t n;
    char buf[80];
    int rc = get_list(c, v, MAX_WEBHOOKS, 1, "webhook objects", &n);
    if (rc)
        return rc;
    cfg->webhooks = calloc(n ? n : 1, sizeof(*cfg->webhooks));
    if (!cfg->webhooks)
        return oom(c);
    cfg->n_webhooks = n;
    size_t i = 0;
    for (const cJSON *it = v->child; it && !rc; it = it->next, i++) {
        size_t mark = push_index(c, i);
        if (!cJSON_IsObject(it))
            rc = fail(c, "must be an object (got %s)", describe(it, 0, buf, sizeof(buf)));
        else
            rc = process_object(c, d->sub, it, &cfg->webhooks[i]);
        pop(c, mark);
    }
    return rc;
}

static int secret_one(struct ctx *c, const cJSON *v, char **out)
{
    int rc = get_string(c, v, MAX_STRING, 1, out);
    if (rc)
        return rc;
    long n = strncmp(*out, "whsec_", 6) ? -2 : base64_decoded_len(*out + 6);
    if (n == -2)
        rc = fail(c, "must start with \"whsec_\" followed by the base64 key");
    else if (n < 0)
        rc = fail(c, "the part after \"whsec_\" must be standard base64 (A-Z a-z 0-9 + /, "
                     "optional = padding)");
    else if (n < 1 || n > MAX_SECRET_BYTES)
        rc = fail(c, "the base64 after \"whsec_\" must decode to 1 to %d bytes (decodes to %ld)",
                  MAX_SECRET_BYTES, n);
    if (rc)
        SH_FREE(*out);
    return rc;
}

static int set_secret(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
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
            return oom(c);
        w->n_secrets = 1;
        return secret_one(c, v, &w->secrets[0]);
    }
    if (!cJSON_IsArray(v))
        return fail(c, "must be a \"whsec_...\" string, a list of them, or null (got %s)",
                    describe(v, 1, buf, sizeof(buf)));
    size_t n;
    int rc = get_list(c, v, MAX_SECRETS, 0, "\"whsec_...\" strings", &n);
    if (rc)
        return rc;
    w->secrets = calloc(n, sizeof(*w->secrets));
    if (!w->secrets)
        return oom(c);
    w->n_secrets = n;
    size_t i = 0;
    for (const cJSON *it = v->child; it && !rc; it = it->next, i++) {
        size_t mark = push_index(c, i);
        rc = secret_one(c, it, &w->secrets[i]);
        pop(c, mark);
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

static int set_headers(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    /* set per request by the bridge, or by libcurl: overriding them would break delivery */
    static const char *const reserved[] = {
        "content-type", "content-length", "transfer-encoding", "host",
        "connection",   "webhook-id",     "webhook-timestamp", "webhook-signature"};
    struct cfg_webhook *w = base;
    char buf[80];
    (void)d;
    if (!cJSON_IsObject(v))
        return fail(c, "must be an object of header names to string values (got %s)",
                    describe(v, 0, buf, sizeof(buf)));
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n > MAX_HEADERS)
        return fail(c, "must have at most %d headers (got %zu)", MAX_HEADERS, n);
    w->headers = calloc(n ? n : 1, sizeof(*w->headers));
    if (!w->headers)
        return oom(c);
    w->n_headers = n;
    size_t i = 0;
    int rc = SH_OK;
    for (const cJSON *it = v->child; it && !rc; it = it->next, i++) {
        const char *name = it->string;
        size_t mark = push_key(c, name);
        if (!header_name_ok(name))
            rc = fail(c, "not a valid header name (letters, digits and !#$%%&'*+-.^_`|~ only)");
        for (size_t k = 0; !rc && k < COUNT(reserved); k++)
            if (!strcasecmp(name, reserved[k]))
                rc = fail(c, "set by shardhook itself; it cannot be configured");
        for (const cJSON *p = v->child; !rc && p != it; p = p->next)
            if (!strcasecmp(p->string, name))
                rc = fail(c, "duplicate header (names are case-insensitive)");
        if (!rc) /* values may hold credentials: never echoed */
            rc = get_string(c, it, MAX_HEADER_VALUE, 1, &w->headers[i].value);
        if (!rc && !(w->headers[i].name = strdup(name)))
            rc = oom(c);
        pop(c, mark);
    }
    return rc;
}

/* ---- http ---- */

static int set_listen(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    struct cfg_listen l;
    char *s, why[200], buf[80];
    int rc = get_string(c, v, 300, 0, &s);
    if (rc)
        return rc;
    if (cfg_listen_parse(s, &l, why, sizeof(why))) {
        rc = fail(c, "%s (got %s)", why, describe_str(s, 0, buf, sizeof(buf)));
        free(s);
        return rc;
    }
    store_str(AT(base, d, char *), s);
    return SH_OK;
}

static int check_http(struct ctx *c, void *base)
{
    struct cfg_config *cfg = base;
    struct cfg_listen l;
    char buf[80];
    if (cfg_listen_parse(cfg->http_listen, &l, NULL, 0) == 0 && !l.loopback && !cfg->http_token)
        return fail_key(c, "token",
                        "required when http.listen is not a loopback address "
                        "(listen is %s)",
                        describe_str(cfg->http_listen, 0, buf, sizeof(buf)));
    return SH_OK;
}

/* ---- top-level cross-key rules ---- */

static int check_top(struct ctx *c, void *base)
{
    struct cfg_config *cfg = base;
    if (!cfg->token) {
        const char *env = getenv("DISCORD_TOKEN");
        if (env && !strncmp(env, "Bot ", 4))
            env += 4;
        if (!env || !*env)
            return fail_key(c, "token", "missing (set \"token\" or DISCORD_TOKEN)");
        if (strlen(env) > MAX_TOKEN || has_control(env) || strpbrk(env, " \t"))
            return fail_key(c, "token",
                            "DISCORD_TOKEN must be at most %d bytes, without spaces "
                            "or control characters",
                            MAX_TOKEN);
        if (!(cfg->token = strdup(env)))
            return oom(c);
    }
    if (cfg->reconnect_max_ms < cfg->reconnect_base_ms)
        return fail_key(c, "reconnect_max_ms",
                        "must not be less than reconnect_base_ms (%d) "
                        "(got %d)",
                        cfg->reconnect_base_ms, cfg->reconnect_max_ms);
    return SH_OK;
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
     .flags = D_NULL_OK,
     .type = "string",
     .doc = "optional status text (the text of a custom status, type 4)"},
    {.name = "url",
     .set = set_url,
     .off = A_OFF(url),
     .flags = D_NULL_OK,
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

#define W_OFF(f) offsetof(struct cfg_webhook, f)
static const struct directive webhook_dirs[] = {
    {.name = "url",
     .set = set_url,
     .off = W_OFF(url),
     .flags = D_REQUIRED | D_SECRET,
     .type = "http(s) URL",
     .doc = "where batches are POSTed",
     .missing = "missing"},
    {.name = "events",
     .set = set_events,
     .off = W_OFF(events),
     .off_n = W_OFF(n_events),
     .def = "[\"*\"]",
     .type = "list of strings",
     .doc = "events to deliver: exact names (`MESSAGE_CREATE`), prefixes (`GUILD_*`) or `*`"},
    {.name = "secret",
     .set = set_secret,
     .flags = D_REQUIRED | D_SECRET | D_LIVE,
     .type = "string, list of strings, or null",
     .doc = "`whsec_<base64>` signing key (1 to 64 bytes), a list while keys rotate "
            "(first is newest), or `null` to send unsigned requests; SIGHUP applies a change",
     .missing = "missing: set a \"whsec_...\" secret, or \"secret\": null to send unsigned "
                "requests"},
    {.name = "max_batch_events",
     .set = set_int,
     .off = W_OFF(max_batch_events),
     .min = 1,
     .max = 10000,
     .def = "100",
     .doc = "a batch closes when it holds this many events"},
    {.name = "max_batch_bytes",
     .set = set_size,
     .off = W_OFF(max_batch_bytes),
     .min = 1024,
     .max = 16777216,
     .def = "262144",
     .doc = "a batch closes before its body exceeds this size"},
    {.name = "max_batch_delay_ms",
     .set = set_int,
     .off = W_OFF(max_batch_delay_ms),
     .min = 0,
     .max = 60000,
     .def = "25",
     .doc = "a batch closes this long after its first event"},
    {.name = "max_in_flight",
     .set = set_int,
     .off = W_OFF(max_in_flight),
     .min = 1,
     .max = 64,
     .def = "4",
     .doc = "requests to this URL at once"},
    {.name = "timeout_ms",
     .set = set_int,
     .off = W_OFF(timeout_ms),
     .min = 100,
     .max = 300000,
     .def = "10000",
     .doc = "time allowed for one request, connection included"},
    {.name = "max_memory_bytes",
     .set = set_size,
     .off = W_OFF(max_memory_bytes),
     .min = 65536,
     .max = 68719476736LL,
     .def = "33554432",
     .doc = "closed batches held in memory for this URL; past it they spill to the disk spool"},
    {.name = "retry_base_ms",
     .set = set_int,
     .off = W_OFF(retry_base_ms),
     .min = 10,
     .max = 60000,
     .def = "500",
     .doc = "first retry backoff ceiling (full jitter, doubling per attempt)"},
    {.name = "retry_max_ms",
     .set = set_int,
     .off = W_OFF(retry_max_ms),
     .min = 100,
     .max = 3600000,
     .def = "60000",
     .doc = "retry backoff cap; a `Retry-After` from the receiver may wait longer"},
    {.name = "retry_after_max_ms",
     .set = set_int,
     .off = W_OFF(retry_after_max_ms),
     .min = 100,
     .max = 3600000,
     .def = "300000",
     .doc = "a longer `Retry-After` waits this long; a shorter one never undercuts half the "
            "backoff ceiling"},
    {.name = "spool_max_bytes",
     .set = set_size,
     .off = W_OFF(spool_max_bytes),
     .min = 65536,
     .max = 1099511627776LL,
     .def_note = "an equal share of `spool_max_bytes`",
     .doc = "this webhook's part of the disk spool; `when_full` says what happens past it"},
    {.name = "when_full",
     .set = set_choice,
     .off = W_OFF(when_full),
     .choices = when_full_choices,
     .def = "\"pause\"",
     .doc = "its spool share full: `pause` stops reading the gateway (nothing lost, every "
            "webhook waits), `dead_letter` moves its oldest batches to the dead-letter folder"},
    {.name = "dead_letter_max_bytes",
     .set = set_size,
     .off = W_OFF(dead_letter_max_bytes),
     .min = 0,
     .max = 1099511627776LL,
     .def = "1073741824",
     .doc = "dead-letter files kept for this webhook; past it the oldest are removed; 0: no "
            "bound"},
    {.name = "headers",
     .set = set_headers,
     .flags = D_LIVE,
     .def = "{}",
     .type = "object of strings",
     .doc = "extra request headers; values are never logged; SIGHUP applies a change"},
};
static const struct section webhook_section = {webhook_dirs, COUNT(webhook_dirs), NULL};

#define S_OFF(f) offsetof(struct shards_tmp, f)
static const struct directive shards_dirs[] = {
    {.name = "total",
     .set = set_int,
     .off = S_OFF(total),
     .min = 1,
     .max = MAX_SHARDS,
     .flags = D_REQUIRED,
     .doc = "shard count of the whole bot (every process agrees on it)",
     .missing = "missing (an object for \"shards\" needs \"total\")"},
    {.name = "first",
     .set = set_int,
     .off = S_OFF(first),
     .min = 0,
     .max = MAX_SHARDS - 1,
     .doc = "first shard id this process runs (with `last`)"},
    {.name = "last",
     .set = set_int,
     .off = S_OFF(last),
     .min = 0,
     .max = MAX_SHARDS - 1,
     .doc = "last shard id this process runs, inclusive (with `first`)"},
    {.name = "ids",
     .set = set_shard_ids,
     .type = "list of integers",
     .doc = "the shard ids this process runs, instead of `first`/`last`"},
};
static const struct section shards_section = {shards_dirs, COUNT(shards_dirs), check_shards};

#define C_OFF(f) offsetof(struct cfg_config, f)
static const struct directive http_dirs[] = {
    {.name = "listen",
     .set = set_listen,
     .off = C_OFF(http_listen),
     .def = "\"127.0.0.1:7878\"",
     .type = "string `\"host:port\"`",
     .doc = "control API address: IPv4, [IPv6] or localhost; port 0 picks a free one"},
    {.name = "token",
     .set = set_token,
     .off = C_OFF(http_token),
     .flags = D_SECRET | D_NULL_OK | D_LIVE,
     .type = "string or null",
     .doc = "bearer token for `/v1/*` and `/metrics`; required when listen is not loopback; "
            "SIGHUP applies a change",
     .missing = "must not be empty (leave it out, or null, to turn authentication off)"},
    {.name = "request_timeout_ms",
     .set = set_int,
     .off = C_OFF(http_request_timeout_ms),
     .min = 1,
     .max = 120000,
     .def = "10000",
     .doc = "how long members, channel-info and soundboard requests wait for Discord's reply; "
            "a body's `timeout_ms` overrides it"},
    {.name = "allowed_hosts",
     .set = set_host_list,
     .off = C_OFF(http_allowed_hosts),
     .off_n = C_OFF(n_http_allowed_hosts),
     .def = "[]",
     .type = "list of strings",
     .doc = "Host header values answered besides the listen address (`name` or `name:port`)"},
    {.name = "max_connections",
     .set = set_int,
     .off = C_OFF(http_max_connections),
     .min = 16,
     .max = 65536,
     .def = "1024",
     .doc = "control connections open at once; more wait for the ones open to close"},
    {.name = "max_connections_per_ip",
     .set = set_int,
     .off = C_OFF(http_max_connections_per_ip),
     .min = 1,
     .max = 65536,
     .def = "256",
     .doc = "control connections from one client address; more are closed at once"},
    {.name = "connection_timeout_ms",
     .set = set_int,
     .off = C_OFF(http_connection_timeout_ms),
     .min = 1000,
     .max = 600000,
     .def = "10000",
     .doc = "a control connection that sends nothing for this long is closed (whole seconds, "
            "rounded up)"},
    {.name = "reconnect_interval_ms",
     .set = set_int,
     .off = C_OFF(http_reconnect_interval_ms),
     .min = 0,
     .max = 3600000,
     .def = "10000",
     .doc = "least time between two accepted reconnect calls for one shard (429 sooner); "
            "0 allows every call"},
};
static const struct section http_section = {http_dirs, COUNT(http_dirs), check_http};

static const struct directive testing_dirs[] = {
    {.name = "identify_interval_ms",
     .set = set_int,
     .off = C_OFF(testing_identify_interval_ms),
     .min = 0,
     .max = 5000,
     .def = "5000",
     .doc = "test-only: shortens Discord's 5 s identify window; for fake gateways only"},
    {.name = "member_window_ms",
     .set = set_int,
     .off = C_OFF(testing_member_window_ms),
     .min = 100,
     .max = 30000,
     .def = "30000",
     .doc = "test-only: shortens Discord's 30 s window between all-members requests for one "
            "guild; for fake gateways only"},
    {.name = "send_window_ms",
     .set = set_int,
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
     .set = set_token,
     .off = C_OFF(token),
     .flags = D_SECRET | D_STRIP_BOT,
     .type = "string",
     .def_note = "`$DISCORD_TOKEN`",
     .doc = "bot token (a leading `Bot ` is dropped); an empty value is an error",
     .missing = "missing (set \"token\" or DISCORD_TOKEN)"},
    {.name = "api_base",
     .set = set_url,
     .off = C_OFF(api_base),
     .flags = D_STRIP_SLASH,
     .def = "\"https://discord.com/api/v10\"",
     .type = "http(s) URL",
     .doc = "Discord REST base; a trailing slash is dropped"},
    {.name = "intents",
     .set = set_intents,
     .off = C_OFF(intents),
     .def = "[\"GUILDS\"]",
     .type = "list of names or integer",
     .doc = "gateway intents, by name or as a bit mask"},
    {.name = "compress",
     .set = set_compress,
     .off = C_OFF(compress),
     .def = "\"auto\"",
     .type = "string or boolean",
     .doc = "transport compression: `auto` (zstd, else zlib), `zstd`, `zlib`, `none`; "
            "`true` means auto, `false` none"},
    {.name = "shards",
     .set = set_shards,
     .sub = &shards_section,
     .def = "\"auto\"",
     .type = "`\"auto\"` or object",
     .doc = "`\"auto\"` runs Discord's recommended count"},
    {.name = "identify_concurrency",
     .set = set_auto_int,
     .off = C_OFF(identify_concurrency),
     .min = 1,
     .max = 1024,
     .def = "\"auto\"",
     .type = "`\"auto\"` or integer 1..1024",
     .doc = "identify buckets; `\"auto\"` uses Discord's `max_concurrency`"},
    {.name = "large_threshold",
     .set = set_int,
     .off = C_OFF(large_threshold),
     .min = 50,
     .max = 250,
     .def = "50",
     .doc = "member count above which Discord omits offline members"},
    {.name = "guild_create_timeout_ms",
     .set = set_int,
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
     .set = set_webhooks,
     .sub = &webhook_section,
     .def = "[]",
     .flags = D_LIST,
     .type = "list of objects",
     .doc = "where events go (at most 64)"},
    {.name = "disable_events",
     .set = set_event_names,
     .off = C_OFF(disable_events),
     .off_n = C_OFF(n_disable_events),
     .def = "[]",
     .type = "list of strings",
     .doc = "event names dropped before routing"},
    {.name = "http",
     .set = set_section,
     .sub = &http_section,
     .def = "{}",
     .type = "object",
     .doc = "the control API"},
    {.name = "state_dir",
     .set = set_str,
     .off = C_OFF(state_dir),
     .min = 1,
     .max = MAX_STRING,
     .def = "\"./state\"",
     .type = "string",
     .doc = "checkpoints, spool and dead letters live here"},
    {.name = "log_level",
     .set = set_choice,
     .flags = D_LIVE,
     .off = C_OFF(log_level),
     .choices = log_levels,
     .def = "\"info\"",
     .doc = "least severe level logged; SIGHUP applies a change"},
    {.name = "log_format",
     .set = set_choice,
     .flags = D_LIVE,
     .off = C_OFF(log_format),
     .choices = log_formats,
     .def = "\"logfmt\"",
     .doc = "log lines as `key=value` (logfmt) or one JSON object each; SIGHUP applies a change"},
    {.name = "max_resume_attempts",
     .set = set_int,
     .off = C_OFF(max_resume_attempts),
     .min = 1,
     .max = 100,
     .def = "5",
     .doc = "resumes in a row before a fresh IDENTIFY"},
    {.name = "shutdown_timeout_ms",
     .set = set_int,
     .off = C_OFF(shutdown_timeout_ms),
     .min = 0,
     .max = 600000,
     .def = "10000",
     .doc = "time allowed to flush batches on SIGTERM"},
    {.name = "reconnect_base_ms",
     .set = set_int,
     .off = C_OFF(reconnect_base_ms),
     .min = 10,
     .max = 60000,
     .def = "1000",
     .doc = "first reconnect backoff ceiling"},
    {.name = "reconnect_max_ms",
     .set = set_int,
     .off = C_OFF(reconnect_max_ms),
     .min = 100,
     .max = 3600000,
     .def = "60000",
     .doc = "reconnect backoff cap; at least `reconnect_base_ms`"},
    {.name = "connect_timeout_ms",
     .set = set_int,
     .off = C_OFF(connect_timeout_ms),
     .min = 100,
     .max = 600000,
     .def = "10000",
     .doc = "one gateway connection attempt (TCP, TLS, websocket upgrade) may take this long"},
    {.name = "max_payload_bytes",
     .set = set_size,
     .off = C_OFF(max_payload_bytes),
     .min = 65536,
     .max = 1073741824,
     .def = "67108864",
     .doc = "cap on one inflated gateway payload"},
    {.name = "spool_max_bytes",
     .set = set_size,
     .off = C_OFF(spool_max_bytes),
     .min = 0,
     .max = 1099511627776LL,
     .def = "1073741824",
     .doc = "disk spool of all webhooks together; past it the gateway stops reading; 0: no "
            "spool"},
    {.name = "testing",
     .set = set_section,
     .sub = &testing_section,
     .def = "{}",
     .type = "object",
     .doc = "settings for tests against fake servers; leave out in production"},
};
static const struct section top_section = {top_dirs, COUNT(top_dirs), check_top};

/* process_object() tracks the keys it saw in a 64-bit mask */
_Static_assert(COUNT(top_dirs) <= 64 && COUNT(webhook_dirs) <= 64 && COUNT(presence_dirs) <= 64 &&
                   COUNT(activity_dirs) <= 64 && COUNT(shards_dirs) <= 64 &&
                   COUNT(http_dirs) <= 64 && COUNT(testing_dirs) <= 64,
               "a directive table outgrew the seen mask");

/* ---- walking an object against a table ---- */

/* A key that belongs one level down ("listen" for "http.listen"): hint at its full name. */
static const char *nested_hint(const struct section *sec, const char *key, char *buf, size_t n)
{
    for (size_t i = 0; i < sec->n; i++) {
        const struct directive *d = &sec->dirs[i];
        for (size_t k = 0; d->sub && k < d->sub->n; k++) {
            if (!strcasecmp(d->sub->dirs[k].name, key)) {
                snprintf(buf, n, " (did you mean \"%s%s.%s\"?)", d->name,
                         d->flags & D_LIST ? "[]" : "", d->sub->dirs[k].name);
                return buf;
            }
        }
    }
    return "";
}

/*
 * Note what a leaf key (or a key of a nested section given a plain value) was set to, as the JSON of the file or
 * of its default, so that cfg_diff can compare two loads key by key from the table itself:
 * a key added to the table is compared without anyone listing it again.
 */
static int record(struct ctx *c, const struct directive *d, const cJSON *v)
{
    if (d->sub && (cJSON_IsObject(v) || cJSON_IsArray(v)))
        return SH_OK; /* its keys are noted one by one */
    char *json = cJSON_PrintUnformatted(v);
    if (!json)
        return oom(c);
    size_t need = c->vlen + strlen(c->path) + strlen(json) + 4;
    if (need > c->vcap) {
        size_t cap = need > 2 * c->vcap ? need : 2 * c->vcap;
        char *nv = realloc(c->values, cap);
        if (!nv) {
            cJSON_free(json);
            return oom(c);
        }
        c->values = nv;
        c->vcap = cap;
    }
    c->vlen += (size_t)sprintf(c->values + c->vlen, "%c%s\t%s\n", d->flags & D_LIVE ? 'L' : 'R',
                               c->path, json);
    cJSON_free(json);
    return SH_OK;
}

static int apply_default(struct ctx *c, const struct directive *d, void *base)
{
    cJSON *v = cJSON_Parse(d->def);
    if (!v)
        return oom(c);
    size_t mark = push_key(c, d->name);
    int rc = record(c, d, v);
    if (!rc)
        rc = d->set(c, d, v, base);
    pop(c, mark);
    cJSON_Delete(v);
    return rc;
}

static int process_object(struct ctx *c, const struct section *sec, const cJSON *obj, void *base)
{
    uint64_t seen = 0;
    char buf[80], hbuf[80];
    if (!cJSON_IsObject(obj))
        return fail(c, "must be an object (got %s)", describe(obj, 0, buf, sizeof(buf)));
    for (const cJSON *it = obj->child; it; it = it->next) {
        size_t mark = push_key(c, it->string);
        int rc = SH_OK;
        for (const cJSON *p = obj->child; p != it; p = p->next)
            if (!strcmp(p->string, it->string))
                rc = fail(c, "duplicate key");
        size_t i = 0;
        while (!rc && i < sec->n && strcmp(sec->dirs[i].name, it->string))
            i++;
        if (!rc && i == sec->n) {
            struct hint h = {0};
            c->unknown_key |= !c->failed;
            for (size_t k = 0; k < sec->n; k++)
                consider(&h, it->string, sec->dirs[k].name);
            rc = fail(c, "unknown key%s",
                      h.best ? hint_text(&h, hbuf, sizeof(hbuf))
                             : nested_hint(sec, it->string, hbuf, sizeof(hbuf)));
        }
        if (!rc) {
            const struct directive *d = &sec->dirs[i];
            seen |= (uint64_t)1 << i;
            rc = record(c, d, it);
            if (!rc && !(cJSON_IsNull(it) && (d->flags & D_NULL_OK)))
                rc = d->set(c, d, it, base);
        }
        pop(c, mark);
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < sec->n; i++) {
        const struct directive *d = &sec->dirs[i];
        if (seen >> i & 1)
            continue;
        int rc = SH_OK;
        if (d->flags & D_REQUIRED)
            rc = fail_key(c, d->name, "%s", d->missing ? d->missing : "missing");
        else if (d->def)
            rc = apply_default(c, d, base);
        if (rc)
            return rc;
    }
    return sec->check ? sec->check(c, base) : SH_OK;
}

/* ---- loading ---- */

static void line_col(const char *s, size_t pos, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < pos; i++) {
        if (s[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

/* 1 when the text ends inside a string or an unclosed object or list. */
static int truncated(const char *s, size_t len)
{
    int in_str = 0;
    long depth = 0;
    for (size_t i = 0; i < len; i++) {
        if (in_str) {
            if (s[i] == '\\')
                i++;
            else if (s[i] == '"')
                in_str = 0;
        } else if (s[i] == '"') {
            in_str = 1;
        } else if (s[i] == '{' || s[i] == '[') {
            depth++;
        } else if (s[i] == '}' || s[i] == ']') {
            depth--;
        }
    }
    return in_str || depth > 0;
}

/*
 * cJSON reports a bad object key one byte past its first character; point at the
 * character itself, so that `{a: 1}` and `{// x` report the column of `a` and `/`.
 */
static size_t key_error_pos(const char *s, size_t pos)
{
    char stack[1100];
    size_t depth = 0, last = (size_t)-1; /* last non-space byte outside strings before pos-1 */
    int in_str = 0;
    if (pos == 0 || strchr(" \t\r\n\"", s[pos - 1]))
        return pos;
    for (size_t i = 0; i + 1 < pos; i++) {
        char ch = s[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = 0;
            continue;
        }
        if (ch == '"')
            in_str = 1;
        else if ((ch == '{' || ch == '[') && depth < sizeof(stack))
            stack[depth++] = ch;
        else if ((ch == '}' || ch == ']') && depth > 0)
            depth--;
        if (!strchr(" \t\r\n", ch))
            last = i;
    }
    if (in_str || depth == 0 || stack[depth - 1] != '{' || last == (size_t)-1)
        return pos;
    return s[last] == '{' || s[last] == ',' ? pos - 1 : pos;
}

static const char *syntax_hint(const char *s, size_t len, size_t pos)
{
    if (pos >= len)
        return " (unexpected end of input)";
    if (s[pos] == '/' || s[pos] == '#')
        return " (comments are not allowed in JSON)";
    if (s[pos] == '\'')
        return " (strings need double quotes)";
    if (s[pos] == '}' || s[pos] == ']') {
        size_t i = pos;
        while (i > 0 && strchr(" \t\r\n", s[i - 1]))
            i--;
        if (i > 0 && s[i - 1] == ',')
            return " (trailing comma)";
    }
    return "";
}

/* NUL bytes (raw or \u0000) would silently cut a string short: refuse them. */
static int find_nul(const char *s, size_t len, size_t *pos)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\0' ||
            (s[i] == '\\' && i + 5 < len && s[i + 1] == 'u' && !memcmp(s + i + 2, "0000", 4))) {
            *pos = i;
            return 1;
        }
        if (s[i] == '\\')
            i++;
    }
    return 0;
}

static int load(const char *json, size_t len, const char *where, struct cfg_config *out, char *err,
                size_t errlen)
{
    struct ctx c = {.err = err, .errlen = errlen};
    struct cfg_config cfg;
    size_t pos, line, col;
    int rc;

    memset(&cfg, 0, sizeof(cfg));
    if (len > CFG_MAX_FILE_BYTES) {
        snprintf(err, errlen, "%s: larger than %d bytes", where, CFG_MAX_FILE_BYTES);
        return SH_ECONFIG;
    }
    if (find_nul(json, len, &pos)) {
        line_col(json, pos, &line, &col);
        snprintf(err, errlen, "%s: NUL character at line %zu, column %zu", where, line, col);
        return SH_ECONFIG;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (root) {
        pos = end ? (size_t)(end - json) : len;
        while (pos < len && strchr(" \t\r\n", json[pos]))
            pos++;
        if (pos < len) {
            line_col(json, pos, &line, &col);
            snprintf(err, errlen,
                     "%s: invalid JSON at line %zu, column %zu (unexpected text "
                     "after the end)",
                     where, line, col);
            cJSON_Delete(root);
            return SH_ECONFIG;
        }
    } else {
        pos = end && end >= json && end <= json + len ? (size_t)(end - json) : len;
        pos = truncated(json, len) ? len : key_error_pos(json, pos);
        line_col(json, pos, &line, &col);
        snprintf(err, errlen, "%s: invalid JSON at line %zu, column %zu%s", where, line, col,
                 syntax_hint(json, len, pos));
        sanitize(err);
        return SH_ECONFIG;
    }
    if (!cJSON_IsObject(root)) {
        char buf[80];
        snprintf(err, errlen, "%s: must be a JSON object (got %s)", where,
                 describe(root, 1, buf, sizeof(buf)));
        cJSON_Delete(root);
        return SH_ECONFIG;
    }
    rc = process_object(&c, &top_section, root, &cfg);
    cJSON_Delete(root);
    if (rc) {
        free(c.values);
        cfg_free(&cfg);
        return rc;
    }
    cfg.values = c.values;
    *out = cfg;
    return SH_OK;
}

int cfg_load_string(const char *json, size_t len, struct cfg_config *out, char *err, size_t errlen)
{
    char dummy[1];
    memset(out, 0, sizeof(*out));
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    if (!json) {
        snprintf(err, errlen, "config: no input");
        return SH_ECONFIG;
    }
    return load(json, len, "config", out, err, errlen);
}

int cfg_load(const char *path, struct cfg_config *out, char *err, size_t errlen)
{
    char dummy[1], ebuf[128];
    memset(out, 0, sizeof(*out));
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror_r(errno, ebuf, sizeof(ebuf)));
        sanitize(err);
        return SH_ECONFIG;
    }
    char *data = malloc((size_t)CFG_MAX_FILE_BYTES + 1);
    size_t len = 0;
    int rc = data ? SH_OK : SH_ENOMEM;
    while (!rc && len <= CFG_MAX_FILE_BYTES) {
        ssize_t n = read(fd, data + len, (size_t)CFG_MAX_FILE_BYTES + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "%s: cannot read: %s", path,
                     strerror_r(errno, ebuf, sizeof(ebuf)));
            rc = SH_ECONFIG;
        }
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (rc == SH_ENOMEM)
        snprintf(err, errlen, "%s: out of memory", path);
    else if (!rc && len > CFG_MAX_FILE_BYTES) {
        snprintf(err, errlen, "%s: larger than %d bytes", path, CFG_MAX_FILE_BYTES);
        rc = SH_ECONFIG;
    }
    if (!rc)
        rc = load(data, len, path, out, err, errlen);
    free(data);
    sanitize(err);
    return rc;
}

int cfg_least_batch_delay_ms(const struct cfg_config *cfg)
{
    int least = -1;
    for (size_t i = 0; i < cfg->n_webhooks; i++)
        if (least < 0 || cfg->webhooks[i].max_batch_delay_ms < least)
            least = cfg->webhooks[i].max_batch_delay_ms;
    return least;
}

void cfg_free(struct cfg_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->token);
    free(cfg->values);
    free(cfg->api_base);
    free(cfg->shards.ids);
    free(cfg->presence_json);
    for (size_t i = 0; cfg->webhooks && i < cfg->n_webhooks; i++) {
        struct cfg_webhook *w = &cfg->webhooks[i];
        free(w->url);
        for (size_t k = 0; w->events && k < w->n_events; k++)
            free(w->events[k]);
        free(w->events);
        for (size_t k = 0; w->secrets && k < w->n_secrets; k++)
            free(w->secrets[k]);
        free(w->secrets);
        for (size_t k = 0; w->headers && k < w->n_headers; k++) {
            free(w->headers[k].name);
            free(w->headers[k].value);
        }
        free(w->headers);
        free(w->when_full);
    }
    free(cfg->webhooks);
    for (size_t i = 0; cfg->disable_events && i < cfg->n_disable_events; i++)
        free(cfg->disable_events[i]);
    free(cfg->disable_events);
    for (size_t i = 0; cfg->http_allowed_hosts && i < cfg->n_http_allowed_hosts; i++)
        free(cfg->http_allowed_hosts[i]);
    free(cfg->http_allowed_hosts);
    free(cfg->http_listen);
    free(cfg->http_token);
    free(cfg->state_dir);
    free(cfg->log_level);
    free(cfg->log_format);
    memset(cfg, 0, sizeof(*cfg));
}

/* ---- reload: what changed ---- */

static int str_eq(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

static void note(char *list, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Append an item to a comma-separated list, once; cut where the buffer ends. */
static void note(char *list, size_t n, const char *fmt, ...)
{
    char item[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(item, sizeof(item), fmt, ap);
    va_end(ap);
    size_t len = strlen(list), il = strlen(item);
    for (const char *p = list; *p;) { /* once, and not under a key named already */
        size_t n = strcspn(p, ",");
        if ((n == il || (n < il && item[n] == '.')) && !memcmp(p, item, n))
            return;
        p += n + (p[n] == ',');
    }
    if (len + il + 2 >= n)
        return;
    if (len)
        list[len++] = ',';
    memcpy(list + len, item, il + 1);
}

int cfg_webhook_same_target(const struct cfg_config *a, const struct cfg_config *b, size_t i)
{
    return i < a->n_webhooks && i < b->n_webhooks && str_eq(a->webhooks[i].url, b->webhooks[i].url);
}

/* One recorded key: flag ('L' or 'R'), path and JSON value, as spans of cfg->values. */
struct vline {
    char flag;
    const char *path, *json;
    size_t plen, jlen;
    const char *start; /* the whole line, newline included */
    size_t len;
};

static int next_vline(const char **p, struct vline *l)
{
    const char *s = *p, *tab, *nl;
    if (!s || !*s || !(tab = strchr(s, '\t')) || !(nl = strchr(tab, '\n')))
        return 0;
    *l = (struct vline){s[0], s + 1, tab + 1, (size_t)(tab - s - 1), (size_t)(nl - tab - 1), s,
                        (size_t)(nl - s + 1)};
    *p = nl + 1;
    return 1;
}

static int find_vline(const char *values, const struct vline *want, struct vline *out)
{
    const char *p = values;
    while (next_vline(&p, out))
        if (out->plen == want->plen && !memcmp(out->path, want->path, want->plen))
            return 1;
    return 0;
}

/* Webhook index of a path "webhooks[i]....", or -1. */
static long webhook_of(const struct vline *l)
{
    if (l->plen < 10 || memcmp(l->path, "webhooks[", 9))
        return -1;
    return strtol(l->path + 9, NULL, 10);
}

/* A live key is applied unless it belongs to a webhook that now points elsewhere. */
static int applies_live(const struct cfg_config *a, const struct cfg_config *b,
                        const struct vline *l)
{
    long w = webhook_of(l);
    return l->flag == 'L' && (w < 0 || cfg_webhook_same_target(a, b, (size_t)w));
}

/* Note a key that differs: its path, or for a key only one side has, the list holding it. */
static void note_change(const struct vline *l, int both, char *list, size_t n)
{
    size_t len = l->plen;
    const char *br = both ? NULL : memchr(l->path, '[', l->plen);
    if (br)
        len = (size_t)(br - l->path);
    note(list, n, "%.*s", (int)len, l->path);
}

int cfg_diff(const struct cfg_config *a, const struct cfg_config *b, char *live, size_t llen,
             char *restart, size_t rlen)
{
    live[0] = restart[0] = '\0';
    const struct cfg_config *side[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        const char *p = side[k]->values;
        struct vline l, o;
        while (next_vline(&p, &l)) {
            int both = find_vline(side[!k]->values, &l, &o);
            if (both && (k || (o.jlen == l.jlen && !memcmp(o.json, l.json, l.jlen))))
                continue; /* the same, or (second pass) compared already */
            if (l.flag == 'L' && both)
                applies_live(a, b, &l) ? note_change(&l, both, live, llen) : (void)0;
            else
                note_change(&l, both, restart, rlen);
        }
    }
    int n = 0;
    for (const char *p = restart; *p; p++)
        n += *p == ',';
    return n + (restart[0] != '\0');
}

int cfg_take_live(struct cfg_config *running, const struct cfg_config *loaded)
{
    size_t cap = 1;
    const char *p = running->values;
    struct vline l, o;
    while (next_vline(&p, &l))
        cap += l.len;
    p = loaded->values;
    while (next_vline(&p, &l))
        cap += l.len;
    char *out = malloc(cap), *w = out;
    if (!out)
        return SH_ENOMEM;
    p = running->values;
    while (next_vline(&p, &l)) {
        const struct vline *use = &l;
        if (applies_live(running, loaded, &l) && find_vline(loaded->values, &l, &o))
            use = &o;
        memcpy(w, use->start, use->len);
        w += use->len;
    }
    *w = '\0';
    free(running->values);
    running->values = out;
    return SH_OK;
}

/* ---- docs ---- */

static void doc_type(const struct directive *d, char *buf, size_t n)
{
    if (d->set == set_int || d->set == set_size) {
        snprintf(buf, n, "integer %lld..%lld", d->min, d->max);
    } else if (d->choices) {
        size_t len = 0;
        buf[0] = '\0';
        for (size_t i = 0; d->choices[i] && len < n; i++)
            len +=
                (size_t)snprintf(buf + len, n - len, "%s`%s`", i ? ", " : "one of ", d->choices[i]);
    } else {
        snprintf(buf, n, "%s", d->type ? d->type : "");
    }
}

/* Find entry *i in sec (and below it); counts *i down as it passes entries. */
static int doc_walk(const struct section *sec, const char *prefix, size_t *i, struct cfg_doc *out)
{
    for (size_t k = 0; k < sec->n; k++) {
        const struct directive *d = &sec->dirs[k];
        char key[sizeof(out->key)];
        snprintf(key, sizeof(key), "%s%s", prefix, d->name);
        if ((*i)-- == 0) {
            snprintf(out->key, sizeof(out->key), "%s", key);
            doc_type(d, out->type, sizeof(out->type));
            out->def = d->def;
            out->required = (d->flags & D_REQUIRED) != 0;
            out->def_note = d->def_note;
            out->doc = d->doc;
            return 1;
        }
        if (d->sub) {
            char sub[sizeof(out->key) + 4];
            snprintf(sub, sizeof(sub), "%s%s.", key, d->flags & D_LIST ? "[]" : "");
            if (doc_walk(d->sub, sub, i, out))
                return 1;
        }
    }
    return 0;
}

int cfg_doc_entry(size_t i, struct cfg_doc *out)
{
    memset(out, 0, sizeof(*out));
    return doc_walk(&top_section, "", &i, out) ? SH_OK : SH_ENOTFOUND;
}
