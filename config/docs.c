/*
 * config/docs.c: cfg_doc_entry(), the directive tables of config.c read as the rows of
 * docs/configuration.md (key, type, default, one line), so that a unit test can hold the docs
 * to the table.
 */
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "config/config_int.h"
#include "lib/errors.h"

static void doc_type(const struct directive *d, char *buf, size_t n)
{
    if (d->set == cfg__set_int || d->set == cfg__set_size) {
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
    return doc_walk(&cfg__top_section, "", &i, out) ? SH_OK : SH_ENOTFOUND;
}
