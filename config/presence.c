/*
 * config/presence.c: the one presence validation: the `presence` key of the config and the
 * body of POST /v1/presence go through the same table (status, since, activities, afk) and come
 * out as the compact JSON an IDENTIFY or an op 3 carries. Start-up, SIGHUP and control requests;
 * keeps no state.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "config/config.h"
#include "config/config_int.h"
#include "lib/errors.h"

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
        return cfg__fail(c, "must be null or a unix time in milliseconds (got %s)",
                         cfg__describe(v, 0, buf, sizeof(buf)));
    p->has_since = 1;
    p->since = v->valuedouble;
    return SH_OK;
}

static int set_activities(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    struct presence_tmp *p = base;
    size_t n;
    int rc = cfg__get_list(c, v, MAX_ACTIVITIES, 1, "activity objects", &n);
    if (rc)
        return rc;
    p->acts = calloc(n ? n : 1, sizeof(*p->acts));
    if (!p->acts)
        return cfg__oom(c);
    p->n_acts = n;
    size_t i = 0;
    for (const cJSON *it = v->child; it && !rc; it = it->next, i++) {
        size_t mark = cfg__push_index(c, i);
        rc = cfg__set_section(c, d, it, &p->acts[i]);
        cfg__pop(c, mark);
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
        return cfg__oom(c);
    size_t len = strlen(text);
    *out = len <= MAX_PRESENCE_JSON ? strdup(text) : NULL;
    cJSON_free(text);
    if (len > MAX_PRESENCE_JSON) {
        cfg__fail(c,
                  "too large: %zu bytes once serialised (at most %d, so that it fits in "
                  "a gateway payload)",
                  len, MAX_PRESENCE_JSON);
        return SH_ETOOBIG;
    }
    return *out ? SH_OK : cfg__oom(c);
}

static const char *const statuses[] = {"online", "dnd", "idle", "invisible", "offline", NULL};

#define A_OFF(f) offsetof(struct activity_tmp, f)
static const struct directive activity_dirs[] = {
    {.name = "name",
     .set = cfg__set_str,
     .off = A_OFF(name),
     .min = 1,
     .max = 128,
     .flags = D_REQUIRED,
     .type = "string",
     .doc = "activity name shown in Discord"},
    {.name = "type",
     .set = cfg__set_int,
     .off = A_OFF(type),
     .min = 0,
     .max = 5,
     .flags = D_REQUIRED,
     .doc = "0 playing, 1 streaming, 2 listening, 3 watching, 4 custom, 5 competing"},
    {.name = "state",
     .set = cfg__set_str,
     .off = A_OFF(state),
     .min = 0,
     .max = 128,
     .flags = D_NULL_OK,
     .type = "string",
     .doc = "optional status text (the text of a custom status, type 4)"},
    {.name = "url",
     .set = cfg__set_url,
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
     .set = cfg__set_choice,
     .off = P_OFF(status),
     .choices = statuses,
     .def = "\"online\"",
     .doc = "online status"},
    {.name = "afk",
     .set = cfg__set_bool,
     .off = P_OFF(afk),
     .def = "false",
     .type = "boolean",
     .doc = "whether the bot is AFK"},
};
const struct section cfg__presence_section = {presence_dirs, COUNT(presence_dirs), NULL};
_Static_assert(COUNT(presence_dirs) <= 64 && COUNT(activity_dirs) <= 64,
               "a section has at most 64 keys (a bit mask marks the ones seen)");

/*
 * The one presence validation, for the config's `presence` and the control API's body: v
 * through the presence table (defaults filled in), re-serialised compactly into *json.
 */
static int parse_presence(struct ctx *c, const cJSON *v, char **json)
{
    char buf[80];
    *json = NULL;
    if (!cJSON_IsObject(v))
        return cfg__fail(c, "must be an object or null (got %s)",
                         cfg__describe(v, 0, buf, sizeof(buf)));
    struct presence_tmp p = {0};
    int rc = cfg__process_object(c, &cfg__presence_section, v, &p);
    if (!rc)
        rc = build_presence(c, &p, json);
    presence_tmp_free(&p);
    return rc;
}

int cfg__set_presence(struct ctx *c, const struct directive *d, const cJSON *v, void *base)
{
    char *json;
    int rc = parse_presence(c, v, &json);
    if (!rc)
        cfg__store_str(AT(base, d, char *), json);
    return rc == SH_ETOOBIG ? SH_ECONFIG : rc;
}

int cfg_presence_parse(const cJSON *presence, unsigned flags, char **out_json, char *err,
                       size_t errlen)
{
    struct ctx c = {.err = err, .errlen = errlen, .literal = !!(flags & CFG_PRESENCE_LITERAL)};
    cfg__push_key(&c, "presence");
    int rc = parse_presence(&c, presence, out_json);
    free(c.values);
    cfg__free_expansions(&c);
    return rc == SH_ECONFIG && c.unknown_key ? SH_ENOTFOUND : rc;
}
