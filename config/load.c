/*
 * config/load.c: cfg_load() and cfg_load_string(): read the file, parse it (diag.c says where
 * the JSON is wrong), and walk the top-level table of config.c over it: every key found goes to
 * its handler, every key left out gets its default from the table, run through the same
 * handler, then each section's cross-key check. Also records what each key was set to (for
 * cfg_diff) and frees what loading built. Never writes a token or secret into a message.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "config/config.h"
#include "config/config_int.h"
#include "lib/errors.h"

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
 * Note what a leaf key (or a key of a nested section given a plain value) was set to, as the JSON
 * of the file or of its default, so that cfg_diff can compare two loads key by key from the table
 * itself: a key added to the table is compared without anyone listing it again.
 */
static int record(struct ctx *c, const struct directive *d, const cJSON *v)
{
    if (d->sub && (cJSON_IsObject(v) || cJSON_IsArray(v)))
        return SH_OK; /* its keys are noted one by one */
    char *json = cJSON_PrintUnformatted(v);
    if (!json)
        return cfg__oom(c);
    size_t need = c->vlen + strlen(c->path) + strlen(json) + 4;
    if (need > c->vcap) {
        size_t cap = need > 2 * c->vcap ? need : 2 * c->vcap;
        char *nv = realloc(c->values, cap);
        if (!nv) {
            cJSON_free(json);
            return cfg__oom(c);
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
        return cfg__oom(c);
    size_t mark = cfg__push_key(c, d->name);
    int rc = record(c, d, v);
    if (!rc)
        rc = d->set(c, d, v, base);
    cfg__pop(c, mark);
    cJSON_Delete(v);
    return rc;
}

int cfg__process_object(struct ctx *c, const struct section *sec, const cJSON *obj, void *base)
{
    uint64_t seen = 0;
    char buf[80], hbuf[80];
    if (!cJSON_IsObject(obj))
        return cfg__fail(c, "must be an object (got %s)", cfg__describe(obj, 0, buf, sizeof(buf)));
    for (const cJSON *it = obj->child; it; it = it->next) {
        size_t mark = cfg__push_key(c, it->string);
        int rc = SH_OK;
        for (const cJSON *p = obj->child; p != it; p = p->next)
            if (!strcmp(p->string, it->string))
                rc = cfg__fail(c, "duplicate key");
        size_t i = 0;
        while (!rc && i < sec->n && strcmp(sec->dirs[i].name, it->string))
            i++;
        if (!rc && i == sec->n) {
            struct hint h = {0};
            c->unknown_key |= !c->failed;
            for (size_t k = 0; k < sec->n; k++)
                cfg__consider(&h, it->string, sec->dirs[k].name);
            rc = cfg__fail(c, "unknown key%s",
                           h.best ? cfg__hint_text(&h, hbuf, sizeof(hbuf))
                                  : nested_hint(sec, it->string, hbuf, sizeof(hbuf)));
        }
        if (!rc) {
            const struct directive *d = &sec->dirs[i];
            seen |= (uint64_t)1 << i;
            rc = record(c, d, it);
            if (!rc && !(cJSON_IsNull(it) && (d->flags & D_NULL_OK)))
                rc = d->set(c, d, it, base);
        }
        cfg__pop(c, mark);
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < sec->n; i++) {
        const struct directive *d = &sec->dirs[i];
        if (seen >> i & 1)
            continue;
        int rc = SH_OK;
        if (d->flags & D_REQUIRED)
            rc = cfg__fail_key(c, d->name, "%s", d->missing ? d->missing : "missing");
        else if (d->def)
            rc = apply_default(c, d, base);
        if (rc)
            return rc;
    }
    return sec->check ? sec->check(c, base) : SH_OK;
}

/* ---- loading ---- */

static int load(const char *json, size_t len, const char *where, struct cfg_config *out, char *err,
                size_t errlen)
{
    struct ctx c = {.err = err, .errlen = errlen};
    struct cfg_config cfg;
    cJSON *root;

    memset(&cfg, 0, sizeof(cfg));
    int rc = cfg__parse_json(json, len, where, &root, err, errlen);
    if (rc)
        return rc;
    rc = cfg__process_object(&c, &cfg__top_section, root, &cfg);
    cfg__free_expansions(&c);
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
        cfg__sanitize(err);
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
    cfg__sanitize(err);
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
        free(w->name);
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
    free(cfg->cluster_redis);
    free(cfg->cluster_node);
    free(cfg->cluster_advertise);
    memset(cfg, 0, sizeof(*cfg));
}
