/*
 * cache/perms_read.c: the permissions read (CA_PERMISSIONS): gathers from the store what
 * cache/perms.h computes over (the guild's owner, @everyone's and the member's roles'
 * permissions, the channel's overwrites, a thread's from its parent, whether the member is
 * timed out) and writes {"permissions":"<decimal>","names":[...]}.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache_int.h"
#include "cache/perms.h"
#include "lib/clock.h"
#include "lib/errors.h"

#define MAX_ROLES 256
#define MAX_OVERWRITES 512

uint64_t ca__iso8601_ms(const char *s)
{
    struct tm tm = {0};
    int n = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    const char *p = s + n;
    long ms = 0, scale = 100;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
            ms += scale ? (*p - '0') * scale : 0;
    long off = 0;
    if (*p == '+' || *p == '-') {
        int oh = 0, om = 0;
        if (sscanf(p + 1, "%2d:%2d", &oh, &om) < 1)
            return 0;
        off = (oh * 60L + om) * 60L * (*p == '-' ? -1 : 1);
    }
    time_t t = timegm(&tm);
    if (t < 0)
        return 0;
    return (uint64_t)(t - off) * 1000u + (uint64_t)ms;
}

static uint64_t perm_bits(const cJSON *v)
{
    if (cJSON_IsString(v))
        return strtoull(v->valuestring, NULL, 10);
    return cJSON_IsNumber(v) && v->valuedouble > 0 ? (uint64_t)v->valuedouble : 0;
}

static uint64_t role_perms(const struct ca__guild *g, uint64_t id, int *found)
{
    const struct ca__blob *b = ca__map_get(&g->maps[CA__M_ROLES], id);
    *found = b != NULL;
    if (!b)
        return 0;
    cJSON *t = ca__blob_tree(b, CA__PLAIN);
    uint64_t bits = perm_bits(cJSON_GetObjectItemCaseSensitive(t, "permissions"));
    cJSON_Delete(t);
    return bits;
}

/* The channel's overwrites into ow (a thread: its parent's). Count, or -1: no such channel. */
static long overwrites(const struct ca__guild *g, uint64_t channel_id, struct ca_overwrite *ow)
{
    const struct ca__blob *b = ca__map_get(&g->maps[CA__M_CHANNELS], channel_id);
    cJSON *t = NULL;
    if (!b && (b = ca__map_get(&g->maps[CA__M_THREADS], channel_id))) {
        t = ca__blob_tree(b, CA__PLAIN);
        b = ca__map_get(&g->maps[CA__M_CHANNELS],
                        ca__jid(cJSON_GetObjectItemCaseSensitive(t, "parent_id")));
        cJSON_Delete(t);
    }
    if (!b)
        return -1;
    t = ca__blob_tree(b, CA__PLAIN);
    long n = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(t, "permission_overwrites"))
    {
        if (n == MAX_OVERWRITES)
            break;
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
        ow[n].id = ca__jid(cJSON_GetObjectItemCaseSensitive(o, "id"));
        ow[n].type = cJSON_IsNumber(type)                                           ? type->valueint
                     : cJSON_IsString(type) && !strcmp(type->valuestring, "member") ? 1
                                                                                    : 0;
        ow[n].allow = perm_bits(cJSON_GetObjectItemCaseSensitive(o, "allow"));
        ow[n].deny = perm_bits(cJSON_GetObjectItemCaseSensitive(o, "deny"));
        n++;
    }
    cJSON_Delete(t);
    return n;
}

int ca__read_permissions(struct ca_cache *c, const struct ca__guild *g, const struct ca_query *q,
                         struct sh_buf *out)
{
    (void)c;
    const struct ca__blob *mb = ca__map_get(&g->maps[CA__M_MEMBERS], q->id);
    if (!mb)
        return CA_UNKNOWN;
    static _Thread_local uint64_t ids[MAX_ROLES], perms[MAX_ROLES];
    static _Thread_local struct ca_overwrite ow[MAX_OVERWRITES];
    struct ca_perm_input in = {.guild_id = g->id, .owner_id = g->owner_id, .user_id = q->id};
    int found;
    in.everyone = role_perms(g, g->id, &found);
    cJSON *m = ca__blob_tree(mb, CA__MEMBER);
    if (!m)
        return SH_ENOMEM;
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(m, "roles"))
    {
        uint64_t id = ca__jid(r);
        uint64_t bits = role_perms(g, id, &found);
        if (found && id != g->id && in.n_roles < MAX_ROLES) {
            ids[in.n_roles] = id;
            perms[in.n_roles++] = bits;
        }
    }
    const cJSON *until = cJSON_GetObjectItemCaseSensitive(m, "communication_disabled_until");
    in.timed_out = cJSON_IsString(until) && ca__iso8601_ms(until->valuestring) > sh_wall_ms();
    cJSON_Delete(m);
    in.role_ids = ids;
    in.role_perms = perms;
    if (q->channel_id) {
        long n = overwrites(g, q->channel_id, ow);
        if (n < 0)
            return CA_UNKNOWN;
        in.overwrites = ow;
        in.n_overwrites = (size_t)n;
        in.in_channel = 1;
    }
    uint64_t bits = ca__permissions(&in);
    int rc = sh_buf_printf(out, "{\"permissions\":\"%llu\",\"names\":", (unsigned long long)bits);
    rc = rc ?: ca__permission_names(bits, out);
    return rc ?: sh_buf_append(out, "}", 1);
}
