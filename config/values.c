/*
 * config/values.c: the handlers for plain values: strings, choices, integers and sizes,
 * booleans, URLs (checked by libcurl's own parser), tokens, nested objects, lists of event
 * names and of host names, "auto" or an integer. Each expands `${NAME}`, checks the value
 * against its directive and stores it; on failure it stores nothing and names the key.
 */
#include <ctype.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "config/config.h"
#include "config/config_int.h"
#include "config/expand.h"
#include "lib/buf.h"
#include "lib/errors.h"

/* ---- value helpers ---- */

int cfg__has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

/* Expand v (a string) into a fresh *out of at most maxlen bytes, without control characters. */
/* s copied into a fresh *out when it is at most max bytes: SH_OK, SH_ETOOBIG or SH_ENOMEM. */
static int copy_literal(const char *s, size_t max, char **out)
{
    if (strlen(s) > max)
        return SH_ETOOBIG;
    *out = strdup(s);
    return *out ? SH_OK : SH_ENOMEM;
}

int cfg__get_string(struct ctx *c, const cJSON *v, size_t maxlen, int redact, char **out)
{
    char why[160], buf[80];
    *out = NULL;
    if (!cJSON_IsString(v))
        return cfg__fail(c, "must be a string (got %s)",
                         cfg__describe(v, redact, buf, sizeof(buf)));
    int rc = c->literal ? copy_literal(v->valuestring, maxlen, out)
                        : cfg_expand(v->valuestring, maxlen, out, why, sizeof(why));
    if (rc == SH_ENOMEM)
        return cfg__oom(c);
    if (rc == SH_ETOOBIG)
        return cfg__fail(c, "must be at most %zu bytes long", maxlen);
    if (rc)
        return cfg__fail(c, "%s", why);
    if (cfg__has_control(*out)) {
        SH_FREE(*out);
        return cfg__fail(c, "must not contain control characters such as newlines");
    }
    if (!cfg__utf8_ok(*out)) {
        SH_FREE(*out);
        return cfg__fail(c, "must be valid UTF-8 text");
    }
    if (cfg__note_expansion(c, v->valuestring, *out)) {
        SH_FREE(*out);
        return cfg__oom(c);
    }
    return SH_OK;
}

int cfg__get_int(struct ctx *c, const struct directive *d, const cJSON *v, long long *out)
{
    char buf[80];
    if (cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble == floor(v->valuedouble) &&
        v->valuedouble >= (double)d->min && v->valuedouble <= (double)d->max) {
        *out = (long long)v->valuedouble;
        return SH_OK;
    }
    return cfg__fail(c, "must be an integer from %lld to %lld (got %s)", d->min, d->max,
                     cfg__describe(v, d->flags & D_SECRET, buf, sizeof(buf)));
}

void cfg__store_str(char **slot, char *s)
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

/* ---- generic handlers ---- */

int cfg__set_str(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    char *s;
    int rc = cfg__get_string(c, v, (size_t)d->max, d->flags & D_SECRET, &s);
    if (rc)
        return rc;
    if ((long long)strlen(s) < d->min) {
        free(s);
        return cfg__fail(c, "must not be empty");
    }
    cfg__store_str(AT(base, d, char *), s);
    return SH_OK;
}

int cfg__set_choice(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    char *s, list[160] = "", buf[80];
    int rc = cfg__get_string(c, v, MAX_STRING, 0, &s);
    if (rc)
        return rc;
    for (size_t i = 0; d->choices[i]; i++) {
        if (!strcmp(s, d->choices[i])) {
            cfg__store_str(AT(base, d, char *), s);
            return SH_OK;
        }
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
                 d->choices[i]);
    }
    rc =
        cfg__fail(c, "must be one of %s (got %s)", list, cfg__describe_val(c, s, buf, sizeof(buf)));
    free(s);
    return rc;
}

int cfg__set_int(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    long long n;
    int rc = cfg__get_int(c, d, v, &n);
    if (!rc)
        *AT(base, d, int) = (int)n;
    return rc;
}

int cfg__set_size(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    long long n;
    int rc = cfg__get_int(c, d, v, &n);
    if (!rc)
        *AT(base, d, size_t) = (size_t)n;
    return rc;
}

int cfg__set_bool(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    char buf[80];
    if (!cJSON_IsBool(v))
        return cfg__fail(c, "must be true or false (got %s)",
                         cfg__describe(v, 0, buf, sizeof(buf)));
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

int cfg__set_url(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    int redact = d->flags & D_SECRET;
    char *s, buf[80];
    int rc = cfg__get_string(c, v, MAX_URL, redact, &s);
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
        rc = redact ? cfg__fail(c, "%s", why)
                    : cfg__fail(c, "%s (got %s)", why, cfg__describe_val(c, s, buf, sizeof(buf)));
        free(s);
        return rc;
    }
    if (d->flags & D_STRIP_SLASH) {
        size_t n = strlen(s);
        while (n > (size_t)(rest - s) + 1 && s[n - 1] == '/')
            s[--n] = '\0';
    }
    cfg__store_str(AT(base, d, char *), s);
    return SH_OK;
}

/* Tokens go into HTTP headers: no spaces, no control characters, and never echoed. */
int cfg__set_token(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    char *s;
    int rc = cfg__get_string(c, v, MAX_TOKEN, 1, &s);
    if (rc)
        return rc;
    if (d->flags & D_STRIP_BOT && !strncmp(s, "Bot ", 4)) /* "Bot <token>" pasted whole */
        memmove(s, s + 4, strlen(s + 4) + 1);
    if (!*s)
        rc = cfg__fail(c, "%s", d->missing);
    else if (strpbrk(s, " \t"))
        rc = cfg__fail(c, "must not contain spaces");
    if (rc) {
        free(s);
        return rc;
    }
    cfg__store_str(AT(base, d, char *), s);
    return SH_OK;
}

int cfg__set_section(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    char buf[80];
    if (!cJSON_IsObject(v))
        return cfg__fail(c, "must be an object (got %s)", cfg__describe(v, 0, buf, sizeof(buf)));
    return cfg__process_object(c, d->sub, v, base);
}

/* Check v is a list of 1 (or 0 when empty_ok) to max items; its length goes in *n. */
int cfg__get_list(struct ctx *c, const cJSON *v, size_t max, int empty_ok, const char *what,
                  size_t *n)
{
    char buf[80];
    if (!cJSON_IsArray(v))
        return cfg__fail(c, "must be a list of %s (got %s)", what,
                         cfg__describe(v, 0, buf, sizeof(buf)));
    *n = (size_t)cJSON_GetArraySize(v);
    if (*n == 0 && !empty_ok)
        return cfg__fail(c, "must not be empty");
    if (*n > max)
        return cfg__fail(c, "must have at most %zu items (got %zu)", max, *n);
    return SH_OK;
}

/*
 * A list of strings into the (char **, size_t) pair at d->off and d->off_n: each item at most
 * max_len bytes and accepted by ok(item, arg), else "must be <form> (got ...)". what names the
 * items in the message about the list itself.
 */
struct str_list_rule {
    const char *what;
    size_t max_items, max_len;
    int empty_ok;
    int (*ok)(char *item, int arg); /* may rewrite the item in place (lower-case it) */
    int arg;
    const char *form;
};

static int set_str_list(struct ctx *c, const struct directive *d, const cJSON *v, void *base,
                        const struct str_list_rule *rule)
{
    char ***list = AT(base, d, char **);
    size_t *count = (size_t *)(void *)((char *)base + d->off_n);
    size_t n;
    int rc = cfg__get_list(c, v, rule->max_items, rule->empty_ok, rule->what, &n);
    if (rc)
        return rc;
    char **items = calloc(n ? n : 1, sizeof(*items));
    if (!items)
        return cfg__oom(c);
    *list = items;
    *count = n;
    size_t i = 0;
    for (const cJSON *it = v->child; it && !rc; it = it->next, i++) {
        char buf[80];
        size_t mark = cfg__push_index(c, i);
        rc = cfg__get_string(c, it, rule->max_len, 0, &items[i]);
        if (!rc && !rule->ok(items[i], rule->arg))
            rc = cfg__fail(c, "must be %s (got %s)", rule->form,
                           cfg__describe_val(c, items[i], buf, sizeof(buf)));
        cfg__pop(c, mark);
    }
    return rc;
}

static int event_item_ok(char *s, int star)
{
    return event_pattern_ok(s, star);
}

int cfg__set_events(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    static const struct str_list_rule rule = {
        .what = "event names",
        .max_items = MAX_LIST,
        .max_len = MAX_EVENT_NAME,
        .ok = event_item_ok,
        .arg = 1,
        .form = "an event name in upper case like \"MESSAGE_CREATE\", a prefix like "
                "\"GUILD_*\", or \"*\""};
    return set_str_list(c, d, v, base, &rule);
}

int cfg__set_event_names(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    static const struct str_list_rule rule = {
        .what = "event names",
        .max_items = MAX_LIST,
        .max_len = MAX_EVENT_NAME,
        .empty_ok = 1,
        .ok = event_item_ok,
        .form = "an event name in upper case like \"MESSAGE_CREATE\""};
    return set_str_list(c, d, v, base, &rule);
}

/*
 * http.allowed_hosts: host names as a Host header carries them, "name" (any port) or
 * "name:port", lower-cased; an IPv6 address in brackets.
 */
static int host_item_ok(char *s, int unused)
{
    (void)unused;
    size_t n = strlen(s);
    if (n == 0 || n > 255 || s[0] == ':')
        return 0;
    for (char *p = s; *p; p++) {
        if (!(isalnum((unsigned char)*p) || strchr(".-_:[]", *p)))
            return 0;
        *p = (char)tolower((unsigned char)*p);
    }
    return 1;
}

int cfg__set_host_list(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    static const struct str_list_rule rule = {
        .what = "host names",
        .max_items = 64,
        .max_len = 300,
        .empty_ok = 1,
        .ok = host_item_ok,
        .form = "a host name as a Host header carries it, like \"shardhook.internal\" or "
                "\"shardhook.internal:7878\""};
    return set_str_list(c, d, v, base, &rule);
}

/* "auto" (stored as 0) or an integer in the directive's range. */
int cfg__set_auto_int(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    char buf[80];
    long long n;
    if (cJSON_IsNumber(v) && cfg__get_int(&(struct ctx){0}, d, v, &n) == SH_OK) {
        *AT(base, d, int) = (int)n;
        return SH_OK;
    }
    if (cJSON_IsString(v)) {
        char *s;
        int rc = cfg__get_string(c, v, MAX_STRING, 0, &s);
        if (rc)
            return rc;
        int is_auto = !strcmp(s, "auto");
        if (!is_auto)
            rc = cfg__fail(c, "must be \"auto\" or an integer from %lld to %lld (got %s)", d->min,
                           d->max, cfg__describe_val(c, s, buf, sizeof(buf)));
        free(s);
        if (!rc)
            *AT(base, d, int) = 0;
        return rc;
    }
    return cfg__fail(c, "must be \"auto\" or an integer from %lld to %lld (got %s)", d->min, d->max,
                     cfg__describe(v, 0, buf, sizeof(buf)));
}
