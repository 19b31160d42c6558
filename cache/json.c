/*
 * cache/json.c: the JSON text work of the entity cache: a small scanner over encoded events
 * (value spans of an object's top-level members, without building a tree), and turning entity
 * trees into blobs and blobs back into Discord's shapes (cache/cache_int.h).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache_int.h"
#include "lib/errors.h"

static const char *ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end;) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (!q)
            return NULL;
        size_t bs = 0; /* backslashes right before the quote: odd means it is escaped */
        while (q - bs > p && q[-1 - (ptrdiff_t)bs] == '\\')
            bs++;
        if (!(bs & 1))
            return q + 1;
        p = q + 1;
    }
    return NULL;
}

/* Skip an object or array: strings skipped whole, brackets counted (depth bounded). */
static const char *skip_nested(const char *p, const char *end)
{
    int depth = 0;
    while (p < end) {
        char ch = *p;
        if (ch == '"') {
            if (!(p = skip_string(p, end)))
                return NULL;
            continue;
        }
        if (ch == '{' || ch == '[') {
            if (++depth > 1000)
                return NULL;
        } else if (ch == '}' || ch == ']') {
            if (--depth == 0)
                return p + 1;
        }
        p++;
    }
    return NULL;
}

const char *ca__skip_value(const char *p, const char *end)
{
    p = ws(p, end);
    if (p >= end)
        return NULL;
    if (*p == '"')
        return skip_string(p, end);
    if (*p == '{' || *p == '[')
        return skip_nested(p, end);
    const char *q = p;
    while (q < end && *q != ',' && *q != '}' && *q != ']' && *q != ' ' && *q != '\n' &&
           *q != '\r' && *q != '\t')
        q++;
    return q > p ? q : NULL;
}

int ca__each_member(const char *p, const char *end,
                    void (*fn)(void *ud, const char *k, size_t kl, const char *v, size_t vl),
                    void *ud)
{
    p = ws(p, end);
    if (p >= end || *p != '{')
        return SH_EPARSE;
    p = ws(p + 1, end);
    if (p < end && *p == '}')
        return 0;
    while (p < end) {
        if (*p != '"')
            return SH_EPARSE;
        const char *k = p + 1, *ke = skip_string(p, end);
        if (!ke)
            return SH_EPARSE;
        p = ws(ke, end);
        if (p >= end || *p != ':')
            return SH_EPARSE;
        const char *v = ws(p + 1, end), *ve = ca__skip_value(v, end);
        if (!ve)
            return SH_EPARSE;
        fn(ud, k, (size_t)(ke - 1 - k), v, (size_t)(ve - v));
        p = ws(ve, end);
        if (p < end && *p == '}')
            return 0;
        if (p >= end || *p != ',')
            return SH_EPARSE;
        p = ws(p + 1, end);
    }
    return SH_EPARSE;
}

uint64_t ca__hash(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    h ^= 0xcbf29ce484222325ULL + n;
    for (; n >= 8; b += 8, n -= 8) { /* a word at a time; the tail byte by byte */
        uint64_t w;
        memcpy(&w, b, 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
        h ^= h >> 29;
    }
    for (; n; b++, n--)
        h = (h ^ *b) * 0x100000001b3ULL;
    return h;
}

uint64_t ca__jid(const cJSON *item)
{
    if (cJSON_IsString(item))
        return ca__id(item->valuestring, strlen(item->valuestring));
    if (cJSON_IsNumber(item) && item->valuedouble >= 1 && item->valuedouble < 1.8e19)
        return (uint64_t)item->valuedouble;
    return 0;
}

struct ca__blob *ca__blob_of(const cJSON *o, uint16_t strip)
{
    char *text = cJSON_PrintUnformatted(o);
    if (!text)
        return NULL;
    struct ca__blob *b = ca__blob_new(text, strlen(text), strip);
    cJSON_free(text);
    return b;
}

static const char *const *defaults(enum ca__shape shape, int *n)
{
    switch (shape) {
    case CA__MEMBER:
        *n = CA__N_MEMBER_DEFAULTS;
        return ca__member_defaults;
    case CA__USER:
        *n = CA__N_USER_DEFAULTS;
        return ca__user_defaults;
    case CA__CHANNEL:
        *n = CA__N_CHANNEL_DEFAULTS;
        return ca__channel_defaults;
    case CA__ROLE:
        *n = CA__N_ROLE_DEFAULTS;
        return ca__role_defaults;
    default:
        *n = 0;
        return ca__user_defaults;
    }
}

/* 1 when v is the default value text d (`null`, `false`, `0` or `"0"`) stands for. */
static int is_default(const cJSON *v, const char *d)
{
    if (!strcmp(d, "null"))
        return cJSON_IsNull(v);
    if (!strcmp(d, "false"))
        return cJSON_IsFalse(v);
    if (*d == '"')
        return cJSON_IsString(v) && !strncmp(v->valuestring, d + 1, strlen(d) - 2) &&
               strlen(v->valuestring) == strlen(d) - 2;
    return cJSON_IsNumber(v) && v->valuedouble == strtod(d, NULL);
}

/* The key of default text d (`"key":value`) into key; the value text's start. */
static const char *split(const char *d, char *key, size_t cap)
{
    const char *colon = strchr(d, ':');
    size_t kl = (size_t)(colon - d) - 2;
    if (kl >= cap)
        kl = cap - 1;
    memcpy(key, d + 1, kl);
    key[kl] = 0;
    return colon + 1;
}

uint16_t ca__strip(cJSON *o, enum ca__shape shape)
{
    int n;
    const char *const *d = defaults(shape, &n);
    uint16_t mask = 0;
    char key[64];
    for (int i = 0; i < n; i++) {
        const char *val = split(d[i], key, sizeof key);
        cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        if (v && is_default(v, val)) {
            cJSON_DeleteItemFromObjectCaseSensitive(o, key);
            mask |= (uint16_t)(1u << i);
        }
    }
    return mask;
}

void ca__unstrip(cJSON *o, uint16_t mask, enum ca__shape shape)
{
    int n;
    const char *const *d = defaults(shape, &n);
    char key[64];
    for (int i = 0; i < n; i++) {
        if (!(mask & (1u << i)))
            continue;
        cJSON *v = cJSON_Parse(split(d[i], key, sizeof key));
        if (v && !cJSON_GetObjectItemCaseSensitive(o, key))
            cJSON_AddItemToObject(o, key, v);
        else
            cJSON_Delete(v);
    }
}

/* Append a comma unless out just opened the object. */
static int sep(struct sh_buf *out)
{
    return out->len && out->data[out->len - 1] != '{' ? sh_buf_append(out, ",", 1) : 0;
}

/* Append the defaults of b's strip bits, each after a comma when needed. */
static int write_defaults(const struct ca__blob *b, enum ca__shape shape, struct sh_buf *out)
{
    int n, rc = 0;
    const char *const *d = defaults(shape, &n);
    for (int i = 0; rc == 0 && i < n; i++)
        if (b->strip & (1u << i))
            rc = sep(out) ?: sh_buf_append_str(out, d[i]);
    return rc;
}

int ca__write_blob(const struct ca__blob *b, enum ca__shape shape, struct sh_buf *out)
{
    if (shape == CA__PLAIN || !b->strip)
        return sh_buf_append(out, b->data, b->len);
    int rc = sh_buf_append(out, "{", 1) ?: write_defaults(b, shape, out);
    if (rc == 0 && b->len > 2)
        rc = sep(out) ?: sh_buf_append(out, b->data + 1, b->len - 2);
    return rc ?: sh_buf_append(out, "}", 1);
}

int ca__write_member(const struct ca__store *s, uint64_t uid, const struct ca__blob *b,
                     struct sh_buf *out)
{
    int rc = sh_buf_append(out, "{", 1) ?: write_defaults(b, CA__MEMBER, out);
    const struct ca__blob *u = ca__map_get(&s->users, uid);
    if (rc == 0 && u)
        rc = sep(out) ?: sh_buf_append_str(out, "\"user\":") ?: ca__write_blob(u, CA__USER, out);
    if (rc == 0 && b->len > 2)
        rc = sep(out) ?: sh_buf_append(out, b->data + 1, b->len - 2);
    return rc ?: sh_buf_append(out, "}", 1);
}

int ca__write_with_gid(const struct ca__blob *b, enum ca__shape shape, uint64_t gid,
                       struct sh_buf *out)
{
    int rc = sh_buf_printf(out, "{\"guild_id\":\"%llu\"", (unsigned long long)gid);
    rc = rc ?: write_defaults(b, shape, out);
    if (rc == 0 && b->len > 2)
        rc = sh_buf_append(out, ",", 1) ?: sh_buf_append(out, b->data + 1, b->len - 2);
    return rc ?: sh_buf_append(out, "}", 1);
}

cJSON *ca__blob_tree(const struct ca__blob *b, enum ca__shape shape)
{
    if (shape == CA__PLAIN || !b->strip)
        return cJSON_ParseWithLength(b->data, b->len);
    struct sh_buf t;
    sh_buf_init(&t, (size_t)b->len + 1024);
    cJSON *o = NULL;
    if (ca__write_blob(b, shape, &t) == 0)
        o = cJSON_ParseWithLength(t.data, t.len);
    sh_buf_free(&t);
    return o;
}

/* b grown to hold n bytes (its length set to n); NULL (b freed) when out of memory. */
static struct ca__blob *realloc_blob(struct ca__blob *b, size_t n)
{
    struct ca__blob *nb = realloc(b, sizeof *b + n);
    if (!nb) {
        free(b);
        return NULL;
    }
    nb->len = (uint32_t)n;
    return nb;
}

int ca__blob_find(const struct ca__blob *b, const char *key, const char **v, size_t *vl)
{
    char pat[64];
    int n = snprintf(pat, sizeof pat, "\"%s\":", key);
    if (n < 0 || (size_t)n >= sizeof pat)
        return SH_EINVAL;
    /* a quote inside a string is written \", so `"key":` only ever matches a key */
    const char *p = memmem(b->data, b->len, pat, (size_t)n), *end = b->data + b->len;
    if (!p)
        return SH_ENOTFOUND;
    *v = p + n;
    const char *ve = ca__skip_value(*v, end);
    if (!ve)
        return SH_EPARSE;
    *vl = (size_t)(ve - *v);
    return 0;
}

struct ca__blob *ca__blob_patch(const struct ca__blob *b, const char *key, const char *val,
                                size_t len)
{
    const char *v;
    size_t vl;
    if (ca__blob_find(b, key, &v, &vl) < 0)
        return NULL;
    size_t head = (size_t)(v - b->data), n = b->len - vl + len;
    struct ca__blob *nb = ca__blob_new(b->data, head, b->strip);
    if (nb && !(nb = realloc_blob(nb, n)))
        return NULL;
    if (!nb)
        return NULL;
    memcpy(nb->data + head, val, len);
    memcpy(nb->data + head + len, v + vl, b->len - head - vl);
    return nb;
}
