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
    static _Thread_local char scratch[32768]; /* most entities print here, with no allocation */
    if (cJSON_PrintPreallocated((cJSON *)o, scratch, (int)sizeof scratch, 0))
        return ca__blob_new(scratch, strlen(scratch), strip);
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
    case CA__EMOJI:
        *n = CA__N_EMOJI_DEFAULTS;
        return ca__emoji_defaults;
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
    if (!strcmp(d, "true"))
        return cJSON_IsTrue(v);
    if (!strcmp(d, "[]"))
        return cJSON_IsArray(v) && !v->child;
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
    for (cJSON *v = o ? o->child : NULL, *next; v; v = next) { /* one pass over the keys */
        next = v->next;
        size_t kl = v->string ? strlen(v->string) : 0;
        for (int i = 0; kl && i < n; i++) {
            /* strncmp stops at the default's end, so the two reads after it stay inside */
            if (strncmp(d[i] + 1, v->string, kl) || d[i][kl + 1] != '"' || d[i][kl + 2] != ':')
                continue;
            if (is_default(v, d[i] + kl + 3)) { /* else another default of the key may be */
                cJSON_Delete(cJSON_DetachItemViaPointer(o, v));
                mask |= (uint16_t)(1u << i);
                break;
            }
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

/* The digits at p (at least one); NULL when none. */
static const char *digits(const char *p, const char *e)
{
    const char *q = p;
    while (q < e && *q >= '0' && *q <= '9')
        q++;
    return q > p ? q : NULL;
}

/* p past the literal lit, or NULL. */
static const char *lit(const char *p, const char *e, const char *lit)
{
    size_t n = strlen(lit);
    return (size_t)(e - p) >= n && !memcmp(p, lit, n) ? p + n : NULL;
}

static const char *const ow_parts[4] = {"{\"id\":\"", "\",\"type\":", ",\"allow\":\"",
                                        "\",\"deny\":\""};

/* The compact form of the overwrites list at [p, e) into out (marks included): 0, or -1 when
   the list is not in the exact form (or empty). */
static int ow_pack(const char *p, const char *e, struct sh_buf *out)
{
    if (!(p = lit(p, e, "[")) || p >= e || *p == ']')
        return -1;
    int rc = sh_buf_append(out, "\x01", 1);
    for (int first = 1; rc == 0; first = 0) {
        if (!first && !(p = lit(p, e, ",")))
            return -1;
        for (int i = 0; i < 4; i++) {
            const char *d = (p = lit(p, e, ow_parts[i])) ? digits(p, e) : NULL;
            if (!d)
                return -1;
            rc = rc ?: sh_buf_append(out, i ? "." : first ? "" : ",", i || !first) ?:
                      sh_buf_append(out, p, (size_t)(d - p));
            p = d;
        }
        if (!(p = lit(p, e, "\"}")))
            return -1;
        if (p < e && *p == ']')
            break;
    }
    return rc || p + 1 != e ? -1 : sh_buf_append(out, "\x01", 1);
}

struct ow_find {
    const char *v;
    size_t vl;
};

static void ow_member(void *ud, const char *k, size_t kl, const char *v, size_t vl)
{
    struct ow_find *f = ud;
    if (kl == 21 && !memcmp(k, "permission_overwrites", 21)) {
        f->v = v;
        f->vl = vl;
    }
}

struct ca__blob *ca__compact_overwrites(struct ca__blob *b)
{
    struct ow_find f = {NULL, 0};
    static const char key[] = "\"permission_overwrites\":[{";
    if (!b || !memmem(b->data, b->len, key, sizeof key - 1) ||
        ca__each_member(b->data, b->data + b->len, ow_member, &f) < 0 || !f.v)
        return b;
    struct sh_buf t;
    sh_buf_init(&t, b->len);
    size_t head = (size_t)(f.v - b->data);
    struct ca__blob *nb = NULL;
    if (sh_buf_append(&t, b->data, head) == 0 && ow_pack(f.v, f.v + f.vl, &t) == 0 &&
        sh_buf_append(&t, f.v + f.vl, b->len - head - f.vl) == 0)
        nb = ca__blob_new(t.data, t.len, b->strip);
    sh_buf_free(&t);
    if (!nb)
        return b;
    free(b);
    return nb;
}

/* Append [p, p+n) of a blob's text to out, a compact overwrites list written out in full. */
static int write_text(const char *p, size_t n, struct sh_buf *out)
{
    const char *e = p + n, *m;
    int rc = 0;
    while (rc == 0 && (m = memchr(p, '\x01', (size_t)(e - p)))) {
        const char *end = memchr(m + 1, '\x01', (size_t)(e - m - 1));
        if (!end)
            break;
        rc = sh_buf_append(out, p, (size_t)(m - p)) ?: sh_buf_append(out, "[", 1);
        for (const char *q = m + 1; rc == 0 && q < end;) {
            if (q > m + 1)
                rc = sh_buf_append(out, ",", 1);
            for (int i = 0; rc == 0 && i < 4; i++) {
                const char *d = digits(q, end);
                if (!d)
                    d = q;
                rc = sh_buf_append_str(out, ow_parts[i]) ?: sh_buf_append(out, q, (size_t)(d - q));
                q = d + 1; /* past the '.' (or ',' after the fourth) */
            }
            rc = rc ?: sh_buf_append(out, "\"}", 2);
        }
        rc = rc ?: sh_buf_append(out, "]", 1);
        p = end + 1;
    }
    return rc ?: sh_buf_append(out, p, (size_t)(e - p));
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
        return write_text(b->data, b->len, out);
    int rc = sh_buf_append(out, "{", 1) ?: write_defaults(b, shape, out);
    if (rc == 0 && b->len > 2)
        rc = sep(out) ?: write_text(b->data + 1, b->len - 2, out);
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
        rc = sh_buf_append(out, ",", 1) ?: write_text(b->data + 1, b->len - 2, out);
    return rc ?: sh_buf_append(out, "}", 1);
}

cJSON *ca__blob_tree(const struct ca__blob *b, enum ca__shape shape)
{
    if ((shape == CA__PLAIN || !b->strip) && !memchr(b->data, '\x01', b->len))
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

/* ---- a strict JSON check of a span (no tree built) ---- */

static const char *v_value(const char *p, const char *e, int depth);

static const char *v_string(const char *p, const char *e)
{
    for (p++; p < e; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"')
            return p + 1;
        if (ch < 0x20)
            return NULL;
        if (ch != '\\')
            continue;
        if (++p >= e)
            return NULL;
        if (*p == 'u') {
            for (int i = 0; i < 4; i++)
                if (++p >= e || !strchr("0123456789abcdefABCDEF", *p) || !*p)
                    return NULL;
        } else if (!strchr("\"\\/bfnrt", *p) || !*p) {
            return NULL;
        }
    }
    return NULL;
}

static const char *v_digits(const char *p, const char *e)
{
    const char *s = p;
    while (p < e && *p >= '0' && *p <= '9')
        p++;
    return p > s ? p : NULL;
}

static const char *v_number(const char *p, const char *e)
{
    if (p < e && *p == '-')
        p++;
    if (p < e && *p == '0')
        p++;
    else if (!(p = v_digits(p, e)))
        return NULL;
    if (p < e && *p == '.' && !(p = v_digits(p + 1, e)))
        return NULL;
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (!(p = v_digits(p, e)))
            return NULL;
    }
    return p;
}

/* An object (close '}') or an array (close ']') after its opening bracket. */
static const char *v_container(const char *p, const char *e, char close, int depth)
{
    p = ws(p + 1, e);
    if (p < e && *p == close)
        return p + 1;
    for (;;) {
        if (close == '}') {
            if (p >= e || *p != '"' || !(p = v_string(p, e)))
                return NULL;
            p = ws(p, e);
            if (p >= e || *p != ':')
                return NULL;
            p++;
        }
        if (!(p = v_value(p, e, depth + 1)))
            return NULL;
        p = ws(p, e);
        if (p < e && *p == close)
            return p + 1;
        if (p >= e || *p != ',')
            return NULL;
        p = ws(p + 1, e);
    }
}

static const char *v_value(const char *p, const char *e, int depth)
{
    p = ws(p, e);
    if (p >= e || depth > 64)
        return NULL;
    switch (*p) {
    case '{':
        return v_container(p, e, '}', depth);
    case '[':
        return v_container(p, e, ']', depth);
    case '"':
        return v_string(p, e);
    case 't':
        return e - p >= 4 && !memcmp(p, "true", 4) ? p + 4 : NULL;
    case 'f':
        return e - p >= 5 && !memcmp(p, "false", 5) ? p + 5 : NULL;
    case 'n':
        return e - p >= 4 && !memcmp(p, "null", 4) ? p + 4 : NULL;
    default:
        return v_number(p, e);
    }
}

int ca__json_valid(const char *p, size_t n)
{
    const char *e = p + n, *q = v_value(p, e, 0);
    return q && ws(q, e) == e;
}

/* ---- a blob straight from an object's text ---- */

struct text_blob {
    struct sh_buf out;
    const char *const *dflt;
    int n_dflt;
    const char *const *drop;
    uint16_t mask;
    int err;
};

/* 1 when key k (kl bytes) with value v is default i: `"k":v` is its text exactly. */
static int text_default(const char *d, const char *k, size_t kl, const char *v, size_t vl)
{
    /* no strlen: strncmp stops at d's end (the text is valid JSON: no NUL in k or v) */
    return kl && d[1] == *k && !strncmp(d + 1, k, kl) && d[kl + 1] == '"' && d[kl + 2] == ':' &&
           !strncmp(d + kl + 3, v, vl) && !d[kl + 3 + vl];
}

static void text_member(void *ud, const char *k, size_t kl, const char *v, size_t vl)
{
    struct text_blob *t = ud;
    for (const char *const *d = t->drop; d && *d; d++)
        if (!strncmp(*d, k, kl) && !(*d)[kl])
            return;
    for (int i = 0; i < t->n_dflt; i++)
        if (text_default(t->dflt[i], k, kl, v, vl)) {
            t->mask |= (uint16_t)(1u << i);
            return;
        }
    int rc = t->out.len > 1 ? sh_buf_append(&t->out, ",", 1) : 0;
    rc = rc ?: sh_buf_append(&t->out, "\"", 1) ?: sh_buf_append(&t->out, k, kl);
    rc = rc ?: sh_buf_append(&t->out, "\":", 2) ?: sh_buf_append(&t->out, v, vl);
    if (rc)
        t->err = rc;
}

struct ca__blob *ca__blob_text(const char *p, size_t n, enum ca__shape shape,
                               const char *const *drop)
{
    struct text_blob t = {.drop = drop};
    t.dflt = defaults(shape, &t.n_dflt);
    sh_buf_init(&t.out, n + 2);
    struct ca__blob *b = NULL;
    if (sh_buf_append(&t.out, "{", 1) == 0 && ca__each_member(p, p + n, text_member, &t) == 0 &&
        !t.err && sh_buf_append(&t.out, "}", 1) == 0)
        b = ca__blob_new(t.out.data, t.out.len, t.mask);
    sh_buf_free(&t.out);
    return b;
}
