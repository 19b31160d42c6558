/*
 * lib/metrics.c: the registry behind lib/metrics.h. One mutex guards every family and
 * series; updates hold it for a lookup and an addition, renders for one pass over the tables.
 * Families and series are allocated once and freed only by sh_metrics_reset(), so handles
 * given out stay valid. Owns nothing outside this file.
 */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/errors.h"
#include "lib/log.h"
#include "lib/metrics.h"

const double sh_metric_buckets_seconds[14] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                              0.25,  0.5,    1,     2.5,  5,     10,   30};

#define MAX_NAME 128
#define MAX_HELP 256

struct sh_metric_series {
    struct sh_metric *m;
    uint32_t hash;
    char *key;                          /* label values joined by '\x1f' (lookup) */
    char *values[SH_METRIC_MAX_LABELS]; /* each NUL-terminated, capped */
    double value;                       /* counter/gauge; histogram sum */
    uint64_t count;                     /* histogram observations */
    uint64_t *buckets;                  /* histogram: n_bounds non-cumulative counts */
};

struct sh_metric {
    enum sh_metric_kind kind;
    char name[MAX_NAME];
    char help[MAX_HELP];
    int n_labels;
    char labels[SH_METRIC_MAX_LABELS][MAX_NAME];
    double bounds[SH_METRIC_MAX_BUCKETS];
    int n_bounds;
    struct sh_metric_series **series; /* in creation order (exposition order) */
    int n_series, cap_series;
    int *index;    /* open addressing on hash: series position + 1 */
    int index_cap; /* a power of two, at least twice n_series */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct sh_metric *families[SH_METRIC_MAX_FAMILIES];
static int n_families;
static struct {
    void (*fn)(void *);
    void *ud;
} collectors[SH_METRIC_MAX_COLLECTORS];
static int n_collectors;
static double dropped_series; /* label sets refused because a metric was full */

static int valid_name(const char *s, int colon_ok)
{
    if (!s || !*s || strlen(s) >= MAX_NAME)
        return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        int alpha =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_ok && c == ':');
        if (!alpha && (p == s || c < '0' || c > '9'))
            return 0;
    }
    return 1;
}

/* Split "a,b" into m->labels; 0 or -1. */
static int parse_labels(struct sh_metric *m, const char *labels)
{
    m->n_labels = 0;
    if (!labels || !*labels)
        return 0;
    const char *p = labels;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n && *p == ' ')
            p++, n--;
        while (n && p[n - 1] == ' ')
            n--;
        if (m->n_labels == SH_METRIC_MAX_LABELS || n == 0 || n >= MAX_NAME)
            return -1;
        memcpy(m->labels[m->n_labels], p, n);
        m->labels[m->n_labels][n] = '\0';
        if (!valid_name(m->labels[m->n_labels], 0) || !strcmp(m->labels[m->n_labels], "le"))
            return -1;
        m->n_labels++;
        if (!end)
            return 0;
        p = end + 1;
    }
}

static struct sh_metric *find_family(const char *name)
{
    for (int i = 0; i < n_families; i++)
        if (!strcmp(families[i]->name, name))
            return families[i];
    return NULL;
}

static int same_shape(const struct sh_metric *a, const struct sh_metric *b)
{
    if (a->kind != b->kind || a->n_labels != b->n_labels || a->n_bounds != b->n_bounds)
        return 0;
    for (int i = 0; i < a->n_labels; i++)
        if (strcmp(a->labels[i], b->labels[i]))
            return 0;
    for (int i = 0; i < a->n_bounds; i++)
        if (a->bounds[i] != b->bounds[i])
            return 0;
    return 1;
}

static struct sh_metric *do_register(enum sh_metric_kind kind, const char *name, const char *help,
                                     const char *labels, const double *bounds, int n_bounds)
{
    struct sh_metric tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.kind = kind;
    if (!valid_name(name, 1) || parse_labels(&tmp, labels) || n_bounds < 0 ||
        n_bounds > SH_METRIC_MAX_BUCKETS) {
        log_error("msg=\"metric refused: bad name, labels or buckets\" metric=\"%.100s\"",
                  name ? name : "");
        return NULL;
    }
    for (int i = 0; i < n_bounds; i++) {
        if (isnan(bounds[i]) || (i && bounds[i] <= bounds[i - 1]) || isinf(bounds[i])) {
            log_error("msg=\"metric refused: buckets must increase\" metric=%s", name);
            return NULL;
        }
        tmp.bounds[i] = bounds[i];
    }
    tmp.n_bounds = kind == SH_METRIC_HISTOGRAM ? n_bounds : 0;
    snprintf(tmp.name, sizeof(tmp.name), "%s", name);
    snprintf(tmp.help, sizeof(tmp.help), "%s", help ? help : "");

    pthread_mutex_lock(&lock);
    struct sh_metric *m = find_family(name);
    if (m) {
        if (!same_shape(m, &tmp)) {
            log_error("msg=\"metric registered twice with different kinds or labels\" metric=%s",
                      name);
            m = NULL;
        }
        pthread_mutex_unlock(&lock);
        return m;
    }
    if (n_families == SH_METRIC_MAX_FAMILIES || !(m = malloc(sizeof(*m)))) {
        pthread_mutex_unlock(&lock);
        log_error("msg=\"metric refused: registry full\" metric=%s", name);
        return NULL;
    }
    *m = tmp;
    families[n_families++] = m;
    pthread_mutex_unlock(&lock);
    return m;
}

struct sh_metric *sh_metric_counter(const char *name, const char *help, const char *labels)
{
    return do_register(SH_METRIC_COUNTER, name, help, labels, NULL, 0);
}

struct sh_metric *sh_metric_gauge(const char *name, const char *help, const char *labels)
{
    return do_register(SH_METRIC_GAUGE, name, help, labels, NULL, 0);
}

struct sh_metric *sh_metric_histogram(const char *name, const char *help, const char *labels,
                                      const double *bounds, int n_bounds)
{
    if (!bounds || n_bounds < 1)
        return NULL;
    return do_register(SH_METRIC_HISTOGRAM, name, help, labels, bounds, n_bounds);
}

/* Join capped values into key; returns its length. */
static size_t join_key(const struct sh_metric *m, const char *const *values, char *key, size_t cap)
{
    size_t len = 0;
    for (int i = 0; i < m->n_labels; i++) {
        const char *v = values[i] ? values[i] : "";
        size_t n = strnlen(v, SH_METRIC_MAX_VALUE);
        if (len + n + 2 > cap)
            n = cap - len - 2;
        memcpy(key + len, v, n);
        len += n;
        key[len++] = '\x1f';
    }
    key[len] = '\0';
    return len;
}

static uint32_t fnv1a(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* Position of key in m->series via the hash index, or -1. Caller holds the lock. */
static int find_series(const struct sh_metric *m, const char *key, uint32_t h)
{
    if (!m->index_cap)
        return -1;
    for (int i = (int)(h & (uint32_t)(m->index_cap - 1));; i = (i + 1) & (m->index_cap - 1)) {
        int slot = m->index[i];
        if (!slot)
            return -1;
        const struct sh_metric_series *s = m->series[slot - 1];
        if (s->hash == h && !strcmp(s->key, key))
            return slot - 1;
    }
}

/* Make room for one more series: grow the array and rebuild the index at half load. */
static int grow(struct sh_metric *m)
{
    if (m->n_series == m->cap_series) {
        int cap = m->cap_series ? m->cap_series * 2 : 16;
        if (cap > SH_METRIC_MAX_SERIES)
            cap = SH_METRIC_MAX_SERIES;
        struct sh_metric_series **p = realloc(m->series, (size_t)cap * sizeof(*p));
        if (!p)
            return -1;
        m->series = p;
        m->cap_series = cap;
    }
    if ((m->n_series + 1) * 2 > m->index_cap) {
        int cap = m->index_cap ? m->index_cap * 2 : 32;
        int *idx = calloc((size_t)cap, sizeof(*idx));
        if (!idx)
            return -1;
        for (int k = 0; k < m->n_series; k++) {
            int i = (int)(m->series[k]->hash & (uint32_t)(cap - 1));
            while (idx[i])
                i = (i + 1) & (cap - 1);
            idx[i] = k + 1;
        }
        free(m->index);
        m->index = idx;
        m->index_cap = cap;
    }
    return 0;
}

/* Find or create; caller holds the lock. NULL when full or out of memory. */
static struct sh_metric_series *lookup(struct sh_metric *m, const char *const *values)
{
    char key[SH_METRIC_MAX_LABELS * (SH_METRIC_MAX_VALUE + 1) + 1];
    size_t klen = join_key(m, values, key, sizeof(key));
    uint32_t h = fnv1a(key, klen);
    int at = find_series(m, key, h);
    if (at >= 0)
        return m->series[at];
    if (m->n_series == SH_METRIC_MAX_SERIES) {
        dropped_series++;
        return NULL;
    }
    if (grow(m))
        return NULL;
    struct sh_metric_series *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->m = m;
    s->hash = h;
    s->key = malloc(klen + 1);
    if (m->kind == SH_METRIC_HISTOGRAM)
        s->buckets = calloc((size_t)m->n_bounds, sizeof(*s->buckets));
    int ok = s->key && (m->kind != SH_METRIC_HISTOGRAM || s->buckets);
    for (int i = 0; ok && i < m->n_labels; i++) {
        const char *v = values[i] ? values[i] : "";
        s->values[i] = strndup(v, SH_METRIC_MAX_VALUE);
        ok = s->values[i] != NULL;
    }
    if (!ok) {
        for (int i = 0; i < m->n_labels; i++)
            free(s->values[i]);
        free(s->key);
        free(s->buckets);
        free(s);
        return NULL;
    }
    memcpy(s->key, key, klen + 1);
    m->series[m->n_series++] = s;
    int i = (int)(h & (uint32_t)(m->index_cap - 1));
    while (m->index[i])
        i = (i + 1) & (m->index_cap - 1);
    m->index[i] = m->n_series;
    return s;
}

static void collect_values(struct sh_metric *m, va_list ap, const char **values)
{
    for (int i = 0; i < m->n_labels; i++)
        values[i] = va_arg(ap, const char *);
}

enum op { OP_ADD, OP_SET, OP_OBSERVE };

static void apply(struct sh_metric_series *s, enum op op, double v)
{
    struct sh_metric *m = s->m;
    switch (op) {
    case OP_ADD:
        if (m->kind == SH_METRIC_HISTOGRAM || (m->kind == SH_METRIC_COUNTER && !(v >= 0)))
            return;
        s->value += v;
        break;
    case OP_SET:
        if (m->kind != SH_METRIC_HISTOGRAM)
            s->value = v;
        break;
    case OP_OBSERVE:
        if (m->kind != SH_METRIC_HISTOGRAM || isnan(v))
            return;
        for (int i = 0; i < m->n_bounds; i++)
            if (v <= m->bounds[i]) {
                s->buckets[i]++;
                break;
            }
        s->count++;
        s->value += v;
        break;
    }
}

static void update(struct sh_metric *m, enum op op, double v, va_list ap)
{
    const char *values[SH_METRIC_MAX_LABELS];
    collect_values(m, ap, values);
    pthread_mutex_lock(&lock);
    struct sh_metric_series *s = lookup(m, values);
    if (s)
        apply(s, op, v);
    pthread_mutex_unlock(&lock);
}

void sh_metric_add(struct sh_metric *m, double v, ...)
{
    if (!m)
        return;
    va_list ap;
    va_start(ap, v);
    update(m, OP_ADD, v, ap);
    va_end(ap);
}

void sh_metric_set(struct sh_metric *m, double v, ...)
{
    if (!m)
        return;
    va_list ap;
    va_start(ap, v);
    update(m, OP_SET, v, ap);
    va_end(ap);
}

void sh_metric_observe(struct sh_metric *m, double v, ...)
{
    if (!m)
        return;
    va_list ap;
    va_start(ap, v);
    update(m, OP_OBSERVE, v, ap);
    va_end(ap);
}

struct sh_metric_series *sh_metric_series_v(struct sh_metric *m, const char *const *values)
{
    if (!m)
        return NULL;
    pthread_mutex_lock(&lock);
    struct sh_metric_series *s = lookup(m, values);
    pthread_mutex_unlock(&lock);
    return s;
}

struct sh_metric_series *sh_metric_series(struct sh_metric *m, ...)
{
    if (!m)
        return NULL;
    const char *values[SH_METRIC_MAX_LABELS];
    va_list ap;
    va_start(ap, m);
    collect_values(m, ap, values);
    va_end(ap);
    return sh_metric_series_v(m, values);
}

static void series_op(struct sh_metric_series *s, enum op op, double v)
{
    if (!s)
        return;
    pthread_mutex_lock(&lock);
    apply(s, op, v);
    pthread_mutex_unlock(&lock);
}

void sh_series_add(struct sh_metric_series *s, double v)
{
    series_op(s, OP_ADD, v);
}
void sh_series_set(struct sh_metric_series *s, double v)
{
    series_op(s, OP_SET, v);
}
void sh_series_observe(struct sh_metric_series *s, double v)
{
    series_op(s, OP_OBSERVE, v);
}

double sh_metric_value(struct sh_metric *m, ...)
{
    if (!m)
        return 0;
    const char *values[SH_METRIC_MAX_LABELS];
    va_list ap;
    va_start(ap, m);
    collect_values(m, ap, values);
    va_end(ap);
    char key[SH_METRIC_MAX_LABELS * (SH_METRIC_MAX_VALUE + 1) + 1];
    size_t klen = join_key(m, values, key, sizeof(key));
    double v = 0;
    pthread_mutex_lock(&lock);
    int at = find_series(m, key, fnv1a(key, klen));
    if (at >= 0)
        v = m->kind == SH_METRIC_HISTOGRAM ? (double)m->series[at]->count : m->series[at]->value;
    pthread_mutex_unlock(&lock);
    return v;
}

int sh_metrics_on_collect(void (*fn)(void *ud), void *ud)
{
    pthread_mutex_lock(&lock);
    int rc = SH_ETOOBIG;
    if (n_collectors < SH_METRIC_MAX_COLLECTORS) {
        collectors[n_collectors].fn = fn;
        collectors[n_collectors].ud = ud;
        n_collectors++;
        rc = 0;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

void sh_metrics_off_collect(void (*fn)(void *ud), void *ud)
{
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_collectors; i++) {
        if (collectors[i].fn == fn && collectors[i].ud == ud) {
            memmove(&collectors[i], &collectors[i + 1],
                    (size_t)(n_collectors - i - 1) * sizeof(collectors[0]));
            n_collectors--;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
}

/* ---- rendering --------------------------------------------------------------------------- */

/* The shortest of %.15g..%.17g that reads back as v. */
static void fmt_double(char *dst, size_t cap, double v)
{
    if (isnan(v)) {
        snprintf(dst, cap, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(dst, cap, "%s", v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        snprintf(dst, cap, "%.0f", v);
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(dst, cap, "%.*g", prec, v);
        if (strtod(dst, NULL) == v)
            return;
    }
}

static int put_number(struct sh_buf *out, double v)
{
    char tmp[64];
    fmt_double(tmp, sizeof(tmp), v);
    return sh_buf_append_str(out, tmp);
}

/* Escape for HELP (\\ and \n) or label values (also "). */
static int put_escaped(struct sh_buf *out, const char *s, int quote)
{
    int rc = 0;
    for (const char *p = s; *p && !rc; p++) {
        if (*p == '\\')
            rc = sh_buf_append(out, "\\\\", 2);
        else if (*p == '\n')
            rc = sh_buf_append(out, "\\n", 2);
        else if (quote && *p == '"')
            rc = sh_buf_append(out, "\\\"", 2);
        else
            rc = sh_buf_append(out, p, 1);
    }
    return rc;
}

/* `name{labels[,le="x"]} ` */
static int put_sample_head(struct sh_buf *out, const struct sh_metric *m,
                           const struct sh_metric_series *s, const char *suffix, const char *le)
{
    int rc = sh_buf_printf(out, "%s%s", m->name, suffix);
    if (!rc && (m->n_labels || le)) {
        rc = sh_buf_append(out, "{", 1);
        for (int i = 0; !rc && i < m->n_labels; i++) {
            rc = sh_buf_printf(out, "%s%s=\"", i ? "," : "", m->labels[i]);
            if (!rc)
                rc = put_escaped(out, s->values[i], 1);
            if (!rc)
                rc = sh_buf_append(out, "\"", 1);
        }
        if (!rc && le)
            rc = sh_buf_printf(out, "%sle=\"%s\"", m->n_labels ? "," : "", le);
        if (!rc)
            rc = sh_buf_append(out, "}", 1);
    }
    if (!rc)
        rc = sh_buf_append(out, " ", 1);
    return rc;
}

static int render_family(struct sh_buf *out, const struct sh_metric *m)
{
    static const char *kinds[] = {"counter", "gauge", "histogram"};
    int rc = sh_buf_printf(out, "# HELP %s ", m->name);
    if (!rc)
        rc = put_escaped(out, m->help, 0);
    if (!rc)
        rc = sh_buf_printf(out, "\n# TYPE %s %s\n", m->name, kinds[m->kind]);
    for (int i = 0; !rc && i < m->n_series; i++) {
        const struct sh_metric_series *s = m->series[i];
        if (m->kind != SH_METRIC_HISTOGRAM) {
            rc = put_sample_head(out, m, s, "", NULL);
            if (!rc)
                rc = put_number(out, s->value);
            if (!rc)
                rc = sh_buf_append(out, "\n", 1);
            continue;
        }
        uint64_t cum = 0;
        for (int b = 0; !rc && b <= m->n_bounds; b++) {
            char le[64];
            if (b < m->n_bounds) {
                cum += s->buckets[b];
                fmt_double(le, sizeof(le), m->bounds[b]);
            } else {
                cum = s->count;
                snprintf(le, sizeof(le), "+Inf");
            }
            rc = put_sample_head(out, m, s, "_bucket", le);
            if (!rc)
                rc = sh_buf_printf(out, "%llu\n", (unsigned long long)cum);
        }
        if (!rc)
            rc = put_sample_head(out, m, s, "_sum", NULL);
        if (!rc)
            rc = put_number(out, s->value);
        if (!rc)
            rc = sh_buf_append(out, "\n", 1);
        if (!rc)
            rc = put_sample_head(out, m, s, "_count", NULL);
        if (!rc)
            rc = sh_buf_printf(out, "%llu\n", (unsigned long long)s->count);
    }
    return rc;
}

int sh_metrics_render(struct sh_buf *out)
{
    void (*fns[SH_METRIC_MAX_COLLECTORS])(void *);
    void *uds[SH_METRIC_MAX_COLLECTORS];
    pthread_mutex_lock(&lock);
    int n = n_collectors;
    for (int i = 0; i < n; i++) {
        fns[i] = collectors[i].fn;
        uds[i] = collectors[i].ud;
    }
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < n; i++)
        fns[i](uds[i]);

    pthread_mutex_lock(&lock);
    int rc = 0;
    for (int i = 0; !rc && i < n_families; i++)
        rc = render_family(out, families[i]);
    if (!rc)
        rc = sh_buf_printf(out,
                           "# HELP shardhook_metrics_dropped_series_total Label sets refused "
                           "because a metric held %d already\n"
                           "# TYPE shardhook_metrics_dropped_series_total counter\n"
                           "shardhook_metrics_dropped_series_total ",
                           SH_METRIC_MAX_SERIES);
    if (!rc)
        rc = put_number(out, dropped_series);
    if (!rc)
        rc = sh_buf_append(out, "\n", 1);
    pthread_mutex_unlock(&lock);
    return rc;
}

void sh_metrics_reset(void)
{
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_families; i++) {
        struct sh_metric *m = families[i];
        for (int j = 0; j < m->n_series; j++) {
            struct sh_metric_series *s = m->series[j];
            for (int k = 0; k < m->n_labels; k++)
                free(s->values[k]);
            free(s->key);
            free(s->buckets);
            free(s);
        }
        free(m->series);
        free(m->index);
        free(m);
        families[i] = NULL;
    }
    n_families = 0;
    n_collectors = 0;
    dropped_series = 0;
    pthread_mutex_unlock(&lock);
}
