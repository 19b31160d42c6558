/*
 * gateway/envelope.c: the single-pass envelope scanner of gateway/envelope.h.
 *
 * Owns nothing at run time: it reads the caller's buffer once, writes *env only on success,
 * allocates nothing and never recurses. It is on the hot path of every event.
 *
 * Every value, d included, is checked against the JSON grammar (RFC 8259), not merely
 * bracket-matched: d is forwarded byte for byte inside webhook bodies, and one malformed d
 * would spoil the whole batch it lands in. Nesting is tracked with a depth counter and one bit
 * per level (object or array), capped at MAX_DEPTH. Not checked: UTF-8 validity of raw bytes
 * >= 0x80 and the pairing of \u surrogates (only their \uXXXX form).
 *
 * Keys are matched on their raw bytes: "op", "t", "s", "d" exactly; a key written with escapes
 * ("\u006fp") is an unknown key and skipped like any other.
 */
#include <limits.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "gateway/envelope.h"
#include "lib/errors.h"
#include "lib/snowflake.h"

enum { MAX_DEPTH = 10000 }; /* nesting levels inside one value */

enum { KEY_OTHER = 0, KEY_OP = 1, KEY_T = 2, KEY_S = 4, KEY_D = 8 };

/* Bytes that end a run of plain string content: '"', '\\' and the control characters. */
static const unsigned char str_stop[256] = {
    [0x00] = 1, [0x01] = 1, [0x02] = 1, [0x03] = 1, [0x04] = 1, [0x05] = 1, [0x06] = 1,
    [0x07] = 1, [0x08] = 1, [0x09] = 1, [0x0a] = 1, [0x0b] = 1, [0x0c] = 1, [0x0d] = 1,
    [0x0e] = 1, [0x0f] = 1, [0x10] = 1, [0x11] = 1, [0x12] = 1, [0x13] = 1, [0x14] = 1,
    [0x15] = 1, [0x16] = 1, [0x17] = 1, [0x18] = 1, [0x19] = 1, [0x1a] = 1, [0x1b] = 1,
    [0x1c] = 1, [0x1d] = 1, [0x1e] = 1, [0x1f] = 1, ['"'] = 1,  ['\\'] = 1,
};

static const unsigned char hex_digit[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
};

static inline int is_digit(char c)
{
    return (unsigned char)(c - '0') < 10;
}

static inline const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (unsigned char)*p <= ' ' &&
           (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

/* First byte in [p, end) that is '"', '\\' or a control character; end when there is none. */
static inline const char *find_stop(const char *p, const char *end)
{
#ifdef __SSE2__
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i bslash = _mm_set1_epi8('\\');
    const __m128i ctl_max = _mm_set1_epi8(0x1f);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i hit = _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash));
        /* unsigned v <= 0x1f  <=>  min(v, 0x1f) == v */
        hit = _mm_or_si128(hit, _mm_cmpeq_epi8(_mm_min_epu8(v, ctl_max), v));
        unsigned mask = (unsigned)_mm_movemask_epi8(hit);
        if (mask)
            return p + __builtin_ctz(mask);
        p += 16;
    }
#endif
    while (p < end && !str_stop[(unsigned char)*p])
        p++;
    return p;
}

/*
 * p is just past an opening quote. Returns the byte after the closing quote, or NULL for an
 * unterminated string, a raw control character or a bad escape. Sets *escaped when the
 * string holds at least one escape.
 */
static const char *skip_string(const char *p, const char *end, int *escaped)
{
    for (;;) {
        p = find_stop(p, end);
        if (p == end)
            return NULL;
        if (*p == '"')
            return p + 1;
        if (*p != '\\' || end - p < 2)
            return NULL;
        *escaped = 1;
        switch (p[1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            p += 2;
            break;
        case 'u':
            if (end - p < 6 || !hex_digit[(unsigned char)p[2]] || !hex_digit[(unsigned char)p[3]] ||
                !hex_digit[(unsigned char)p[4]] || !hex_digit[(unsigned char)p[5]])
                return NULL;
            p += 6;
            break;
        default:
            return NULL;
        }
    }
}

/* p is at a '-' or a digit. Returns the byte after the number, or NULL. */
static const char *skip_number(const char *p, const char *end)
{
    if (*p == '-' && ++p == end)
        return NULL;
    if (*p == '0') {
        p++;
    } else if (is_digit(*p)) {
        do
            p++;
        while (p < end && is_digit(*p));
    } else {
        return NULL;
    }
    if (p < end && *p == '.') {
        if (++p == end || !is_digit(*p))
            return NULL;
        do
            p++;
        while (p < end && is_digit(*p));
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        if (++p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || !is_digit(*p))
            return NULL;
        do
            p++;
        while (p < end && is_digit(*p));
    }
    return p;
}

/* Returns the byte after the literal word at p, or NULL when p does not start with it. */
static inline const char *skip_word(const char *p, const char *end, const char *word, size_t n)
{
    return (size_t)(end - p) >= n && memcmp(p, word, n) == 0 ? p + n : NULL;
}

/*
 * Skip one JSON value starting at p (whitespace already skipped), checking its grammar.
 * Returns the byte after it, or NULL when it is malformed, unterminated or nested deeper
 * than MAX_DEPTH. Iterative: `objects` holds one bit per open level (1 object, 0 array).
 */
static const char *skip_value(const char *p, const char *end)
{
    uint64_t objects[(MAX_DEPTH + 63) / 64];
    size_t depth = 0;
    int escaped;

value:
    if (p == end)
        return NULL;
    switch (*p) {
    case '"':
        p = skip_string(p + 1, end, &escaped);
        break;
    case '{':
    case '[': {
        int is_object = *p == '{';
        if (depth == MAX_DEPTH)
            return NULL;
        if (is_object)
            objects[depth / 64] |= (uint64_t)1 << (depth % 64);
        else
            objects[depth / 64] &= ~((uint64_t)1 << (depth % 64));
        depth++;
        p = skip_ws(p + 1, end);
        if (p == end)
            return NULL;
        if (*p == (is_object ? '}' : ']')) { /* empty */
            depth--;
            p++;
            goto after;
        }
        if (is_object)
            goto key;
        goto value;
    }
    case 't':
        p = skip_word(p, end, "true", 4);
        break;
    case 'f':
        p = skip_word(p, end, "false", 5);
        break;
    case 'n':
        p = skip_word(p, end, "null", 4);
        break;
    default:
        p = skip_number(p, end);
        break;
    }
    if (!p)
        return NULL;

after:
    if (depth == 0)
        return p;
    p = skip_ws(p, end);
    if (p == end)
        return NULL;
    {
        int in_object = (objects[(depth - 1) / 64] >> ((depth - 1) % 64)) & 1;
        if (*p == ',') {
            p = skip_ws(p + 1, end);
            if (in_object)
                goto key;
            goto value;
        }
        if (*p != (in_object ? '}' : ']'))
            return NULL;
        depth--;
        p++;
        goto after;
    }

key:
    if (p == end || *p != '"')
        return NULL;
    p = skip_string(p + 1, end, &escaped);
    if (!p)
        return NULL;
    p = skip_ws(p, end);
    if (p == end || *p != ':')
        return NULL;
    p = skip_ws(p + 1, end);
    goto value;
}

/* A JSON integer in [0, max]: "0" or [1-9][0-9]*. Returns the byte after it, or NULL. */
static const char *parse_uint(const char *p, const char *end, uint64_t max, uint64_t *out)
{
    if (p == end || !is_digit(*p))
        return NULL;
    uint64_t v = (uint64_t)(*p++ - '0');
    if (v != 0) {
        while (p < end && is_digit(*p)) {
            uint64_t d = (uint64_t)(*p - '0');
            if (v > (max - d) / 10)
                return NULL;
            v = v * 10 + d;
            p++;
        }
    }
    if (v > max)
        return NULL;
    *out = v;
    return p;
}

static inline int key_of(const char *k, size_t n)
{
    if (n == 1) {
        switch (*k) {
        case 't':
            return KEY_T;
        case 's':
            return KEY_S;
        case 'd':
            return KEY_D;
        }
    } else if (n == 2 && k[0] == 'o' && k[1] == 'p') {
        return KEY_OP;
    }
    return KEY_OTHER;
}

/*
 * Walk the members of the JSON object at p ('{'): for each, visit(ctx, key, key_len, value)
 * scans the value and returns the byte after it (NULL: malformed). Keys are raw bytes: one
 * spelled with escapes holds a backslash and matches no name. Returns the byte after the
 * closing brace, or NULL when the object is malformed.
 */
typedef const char *(*member_fn)(void *ctx, const char *key, size_t key_len, const char *p,
                                 const char *end);

static const char *walk_members(const char *p, const char *end, member_fn visit, void *ctx)
{
    if (p == end || *p != '{')
        return NULL;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}')
        return p + 1;
    for (;;) {
        if (p == end || *p != '"')
            return NULL;
        const char *k = p + 1;
        int escaped = 0;
        p = skip_string(k, end, &escaped);
        if (!p)
            return NULL;
        size_t k_len = (size_t)(p - 1 - k);
        p = skip_ws(p, end);
        if (p == end || *p != ':')
            return NULL;
        p = visit(ctx, k, k_len, skip_ws(p + 1, end), end);
        if (!p)
            return NULL;
        p = skip_ws(p, end);
        if (p == end)
            return NULL;
        if (*p == '}')
            return p + 1;
        if (*p != ',')
            return NULL;
        p = skip_ws(p + 1, end);
    }
}

/* d's members the gateway reads itself (guild readiness), found while d is skipped anyway */
static const char *d_member(void *ctx, const char *k, size_t k_len, const char *p, const char *end)
{
    struct gw_envelope *e = ctx;
    const char *after = skip_value(p, end);
    if (!after)
        return NULL;
    if (k_len == 2 && !memcmp(k, "id", 2)) {
        e->d_id = p;
        e->d_id_len = (size_t)(after - p);
    } else if (k_len == 11 && !memcmp(k, "unavailable", 11)) {
        e->d_unavailable = after - p == 4 && !memcmp(p, "true", 4);
    }
    return after;
}

/* Scan the value of one envelope key at p into e. Returns the byte after it, or NULL. */
static const char *scan_member(int key, const char *p, const char *end, struct gw_envelope *e)
{
    const char *after_null = skip_word(p, end, "null", 4);
    uint64_t v;
    int escaped = 0;

    switch (key) {
    case KEY_OP:
        if (after_null)
            return after_null; /* op stays -1 */
        p = parse_uint(p, end, INT_MAX, &v);
        if (p)
            e->op = (int)v;
        return p;
    case KEY_S:
        if (after_null)
            return after_null;
        p = parse_uint(p, end, UINT64_MAX, &e->s);
        e->has_s = p != NULL;
        return p;
    case KEY_T:
        if (after_null)
            return after_null;
        if (p == end || *p != '"')
            return NULL;
        e->t = p + 1;
        p = skip_string(p + 1, end, &escaped);
        if (!p || escaped)
            return NULL;
        e->t_len = (size_t)(p - 1 - e->t);
        return p;
    case KEY_D:
        e->d = p;
        e->d_id = NULL;
        e->d_id_len = 0;
        e->d_unavailable = 0;
        p = p < end && *p == '{' ? walk_members(p, end, d_member, e) : skip_value(p, end);
        if (p)
            e->d_len = (size_t)(p - e->d);
        return p;
    default:
        return skip_value(p, end);
    }
}

struct envelope_walk {
    struct gw_envelope e;
    unsigned seen;
};

static const char *envelope_member(void *ctx, const char *k, size_t k_len, const char *p,
                                   const char *end)
{
    struct envelope_walk *w = ctx;
    int key = key_of(k, k_len);
    if (w->seen & (unsigned)key)
        return NULL; /* duplicate envelope key */
    w->seen |= (unsigned)key;
    return scan_member(key, p, end, &w->e);
}

int gw__envelope_scan(const char *buf, size_t len, struct gw_envelope *env)
{
    struct envelope_walk w = {.e = {.op = -1}};
    if (!env || !buf)
        return SH_EPARSE;
    const char *end = buf + len;
    const char *p = walk_members(skip_ws(buf, end), end, envelope_member, &w);
    if (!p || skip_ws(p, end) != end)
        return SH_EPARSE; /* not one object, or trailing bytes */
    *env = w.e;
    return SH_OK;
}

int gw__envelope_peek(const char *buf, size_t len, struct gw_envelope *env)
{
    if (!env || !buf)
        return SH_EPARSE;
    const char *end = buf + len, *p = skip_ws(buf, end);
    if (p == end || *p != '{')
        return SH_EPARSE;
    struct gw_envelope e = {.op = -1};
    unsigned seen = 0;
    p = skip_ws(p + 1, end);
    while (p < end && *p == '"') {
        const char *k = p + 1;
        int escaped = 0;
        p = skip_string(k, end, &escaped);
        if (!p)
            break;
        int key = key_of(k, (size_t)(p - 1 - k));
        p = skip_ws(p, end);
        if (p == end || *p != ':' || (seen & (unsigned)key))
            break;
        seen |= (unsigned)key;
        struct gw_envelope v = e;
        p = key == KEY_D ? skip_value(skip_ws(p + 1, end), end)
                         : scan_member(key, skip_ws(p + 1, end), end, &v);
        p = p ? skip_ws(p, end) : NULL;
        if (!p || p == end)
            break; /* cut inside or right after this value ("s":12 of 123): not trusted */
        if (key != KEY_D)
            e = v;
        if (*p != ',')
            break;
        p = skip_ws(p + 1, end);
    }
    e.d = NULL;
    e.d_len = 0;
    *env = e;
    return SH_OK;
}

uint64_t gw_json_snowflake(const char *val, size_t len)
{
    uint64_t v = 0;
    if (!val || len < 2 || val[0] != '"' || val[len - 1] != '"' ||
        sh_parse_snowflake(val + 1, len - 2, &v))
        return 0;
    return v;
}
