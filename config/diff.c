/*
 * config/diff.c: what a reload (SIGHUP) would change. Loading recorded every key as
 * "Fpath\tjson" (F: L applied live, R needs a restart, from the D_LIVE flag of the table), so
 * two configs are compared key by key without anyone listing the keys again; cfg_take_live()
 * records in the running config the live keys a reload applied. Never writes a value.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/config_int.h"
#include "lib/errors.h"

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
    *l = (struct vline){s[0],
                        s + 1,
                        tab + 1,
                        (size_t)(tab - s - 1),
                        (size_t)(nl - tab - 1),
                        s,
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
