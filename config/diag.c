/*
 * config/diag.c: what a config error message is made of: the key path ("webhooks[0].url"),
 * the first failure written as one printable line, a short description of the bad value
 * (redacted for secrets), did-you-mean hints for unknown keys and names, and for text that is
 * not JSON the line, column and a hint. Holds no config state of its own.
 */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "config/config.h"
#include "config/config_int.h"
#include "lib/errors.h"

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

int cfg__utf8_ok(const char *s)
{
    for (size_t n; *s; s += n)
        if (!(n = utf8_seq((const unsigned char *)s)))
            return 0;
    return 1;
}

/* Messages are one printable UTF-8 line: control characters and stray bytes become '?'. */
void cfg__sanitize(char *s)
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

size_t cfg__push_key(struct ctx *c, const char *key)
{
    size_t mark = c->plen;
    size_t n = strlen(key);
    path_append(c, "%s%.*s%s", c->plen ? "." : "", n > 64 ? 64 : (int)n, key, n > 64 ? "..." : "");
    return mark;
}

size_t cfg__push_index(struct ctx *c, size_t i)
{
    size_t mark = c->plen;
    path_append(c, "[%zu]", i);
    return mark;
}

void cfg__pop(struct ctx *c, size_t mark)
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
    cfg__sanitize(c->err);
    return rc;
}

int cfg__fail(struct ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail(c, SH_ECONFIG, fmt, ap);
    va_end(ap);
    return rc;
}

/* cfg__fail() with key appended to the current path, for checks made after a whole object. */
int cfg__fail_key(struct ctx *c, const char *key, const char *fmt, ...)
{
    size_t mark = cfg__push_key(c, key);
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail(c, SH_ECONFIG, fmt, ap);
    va_end(ap);
    cfg__pop(c, mark);
    return rc;
}

int cfg__oom(struct ctx *c)
{
    cfg__fail(c, "out of memory");
    return SH_ENOMEM;
}

/* What a value is, for "(got ...)": quoted strings are cut short; redact hides values. */
const char *cfg__describe_str(const char *s, int redact, char *buf, size_t n)
{
    if (redact)
        return "a string";
    size_t len = strlen(s);
    snprintf(buf, n, "\"%.*s%s\"", len > 48 ? 48 : (int)len, s, len > 48 ? "..." : "");
    return buf;
}

const char *cfg__describe_val(const struct ctx *c, const char *s, char *buf, size_t n)
{
    for (size_t i = 0; i < c->n_exp; i++)
        if (!strcmp(c->exp[i].value, s))
            return cfg__describe_str(c->exp[i].raw, 0, buf, n);
    return cfg__describe_str(s, 0, buf, n);
}

int cfg__note_expansion(struct ctx *c, const char *raw, const char *value)
{
    if (!strstr(raw, "${") || !strcmp(raw, value))
        return SH_OK;
    struct expansion *e = realloc(c->exp, (c->n_exp + 1) * sizeof(*e));
    if (!e)
        return SH_ENOMEM;
    c->exp = e;
    if (!(e[c->n_exp].value = strdup(value)))
        return SH_ENOMEM;
    e[c->n_exp++].raw = raw;
    return SH_OK;
}

void cfg__free_expansions(struct ctx *c)
{
    for (size_t i = 0; i < c->n_exp; i++)
        free(c->exp[i].value);
    free(c->exp);
    c->exp = NULL;
    c->n_exp = 0;
}

const char *cfg__describe(const cJSON *v, int redact, char *buf, size_t n)
{
    if (cJSON_IsString(v))
        return cfg__describe_str(v->valuestring, redact, buf, n);
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

void cfg__consider(struct hint *h, const char *key, const char *cand)
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

const char *cfg__hint_text(const struct hint *h, char *buf, size_t n)
{
    if (!h->best)
        return "";
    snprintf(buf, n, " (did you mean \"%s\"?)", h->best);
    return buf;
}

/* ---- JSON syntax: where the text stops being JSON ---- */

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

/* The JSON itself: no NUL, nothing after the end, an object; where it breaks, said in words. */
int cfg__parse_json(const char *json, size_t len, const char *where, cJSON **root, char *err,
                    size_t errlen)
{
    size_t pos, line, col;
    *root = NULL;
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
    cJSON *r = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!r) {
        pos = end && end >= json && end <= json + len ? (size_t)(end - json) : len;
        pos = truncated(json, len) ? len : key_error_pos(json, pos);
        line_col(json, pos, &line, &col);
        snprintf(err, errlen, "%s: invalid JSON at line %zu, column %zu%s", where, line, col,
                 syntax_hint(json, len, pos));
        cfg__sanitize(err);
        return SH_ECONFIG;
    }
    pos = end ? (size_t)(end - json) : len;
    while (pos < len && strchr(" \t\r\n", json[pos]))
        pos++;
    if (pos < len) {
        line_col(json, pos, &line, &col);
        snprintf(err, errlen,
                 "%s: invalid JSON at line %zu, column %zu (unexpected text "
                 "after the end)",
                 where, line, col);
        cJSON_Delete(r);
        return SH_ECONFIG;
    }
    if (!cJSON_IsObject(r)) {
        char buf[80];
        snprintf(err, errlen, "%s: must be a JSON object (got %s)", where,
                 cfg__describe(r, 1, buf, sizeof(buf)));
        cJSON_Delete(r);
        return SH_ECONFIG;
    }
    *root = r;
    return SH_OK;
}
