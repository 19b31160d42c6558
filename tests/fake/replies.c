/*
 * tests/fake/replies.c: the fake Discord's answers to the client ops that ask for something:
 * op 4 (VOICE_STATE_UPDATE, then VOICE_SERVER_UPDATE when joining), op 8 (GUILD_MEMBERS_CHUNK
 * in chunks carrying the nonce, or RATE_LIMITED), op 31 (one SOUNDBOARD_SOUNDS per guild) and
 * op 43 (CHANNEL_INFO), plus the scripts tests set through POST /_fake/members and
 * POST /_fake/quiet. Op 3 is only recorded (Discord does not answer it).
 *
 * Discord's 2025 rule is enforced: one all-members request (query "", limit 0) per guild per
 * --members-window-ms (30 s); a repeat inside it gets RATE_LIMITED and a "member request
 * window" violation in the log, so tests can assert a client never ran into it.
 * Owns only the scripts and the per-guild window below; runs on the fake's one lws thread.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/errors.h"
#include "tests/fake/fake.h"

#define BOT_ID "1100000000000000001"
#define TS "2025-01-01T00:00:00.000000+00:00"
#define MAX_LIST 100
#define MAX_WINDOWS 4096
#define MAX_MEMBERS 100000

static struct {
    long chunks;        /* chunks per answer (>= 1) */
    long count;         /* members in a guild (all-members answers) */
    long rate_limited;  /* the next N member requests get RATE_LIMITED instead */
    double retry_after; /* seconds, in those RATE_LIMITED replies */
    long send_chunks;   /* -1: all; else only the first N chunks go out (timeouts) */
    int silent;         /* member requests get no answer at all */
    uint64_t not_found[MAX_LIST];
    int n_not_found;
    long requests; /* op 8 payloads seen */
} ms = {1, 5, 0, 0.2, -1, 0, {0}, 0, 0};

static struct {
    int ops[16];
    int n_ops;
    uint64_t guilds[MAX_LIST];
    int n_guilds;
} quiet;

static struct {
    uint64_t guild;
    double at;
} windows[MAX_WINDOWS];
static int n_windows;

static int is_quiet_op(int op)
{
    for (int i = 0; i < quiet.n_ops; i++)
        if (quiet.ops[i] == op)
            return 1;
    return 0;
}

static int is_quiet_guild(uint64_t g)
{
    for (int i = 0; i < quiet.n_guilds; i++)
        if (quiet.guilds[i] == g)
            return 1;
    return 0;
}

static int snowflake(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsString(j) || !j->valuestring[0] || strlen(j->valuestring) > 20)
        return -1;
    char *end;
    unsigned long long v = strtoull(j->valuestring, &end, 10);
    if (*end)
        return -1;
    *out = v;
    return 0;
}

/* Emit t with the JSON of d on the connection's session; frees d. */
static void emit_json(struct fk_conn *c, const char *t, cJSON *d)
{
    char *text = d ? cJSON_PrintUnformatted(d) : NULL;
    cJSON_Delete(d);
    if (text && c->sess)
        fk_emit(c->sess, t, text, strlen(text));
    cJSON_free(text);
}

static void add_id(cJSON *o, const char *key, uint64_t id)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, id);
    cJSON_AddStringToObject(o, key, buf);
}

/* ---- op 4 ---- */

int fk_on_voice_state(struct fk_conn *c, const cJSON *d)
{
    uint64_t gid, cid = 0;
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(d, "channel_id");
    if (snowflake(cJSON_GetObjectItemCaseSensitive(d, "guild_id"), &gid) ||
        (!cJSON_IsNull(ch) && snowflake(ch, &cid))) {
        fk_rec_violation(c->shard, "voice state payload");
        return 0;
    }
    if (is_quiet_op(4) || is_quiet_guild(gid))
        return 0;
    cJSON *vs = cJSON_CreateObject();
    add_id(vs, "guild_id", gid);
    if (cid)
        add_id(vs, "channel_id", cid);
    else
        cJSON_AddNullToObject(vs, "channel_id");
    cJSON_AddStringToObject(vs, "user_id", BOT_ID);
    cJSON_AddStringToObject(vs, "session_id", c->sess ? c->sess->id : "");
    cJSON_AddFalseToObject(vs, "deaf");
    cJSON_AddFalseToObject(vs, "mute");
    cJSON_AddBoolToObject(vs, "self_deaf",
                          cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "self_deaf")));
    cJSON_AddBoolToObject(vs, "self_mute",
                          cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "self_mute")));
    cJSON_AddFalseToObject(vs, "self_video");
    cJSON_AddFalseToObject(vs, "suppress");
    cJSON_AddNullToObject(vs, "request_to_speak_timestamp");
    emit_json(c, "VOICE_STATE_UPDATE", vs);
    if (!cid)
        return 0;
    cJSON *srv = cJSON_CreateObject();
    char token[48];
    snprintf(token, sizeof(token), "fake-voice-%" PRIx64, gid ^ cid);
    cJSON_AddStringToObject(srv, "token", token);
    add_id(srv, "guild_id", gid);
    cJSON_AddStringToObject(srv, "endpoint", "fake-voice.invalid:443");
    emit_json(c, "VOICE_SERVER_UPDATE", srv);
    return 0;
}

/* ---- op 8 ---- */

static uint64_t member_id(uint64_t gid, long k)
{
    return 1200000000000000000ULL + (gid & 0xffff) * 1000000ULL + (uint64_t)k;
}

static cJSON *member_json(uint64_t uid, const char *username)
{
    cJSON *m = cJSON_CreateObject();
    cJSON *u = cJSON_AddObjectToObject(m, "user");
    add_id(u, "id", uid);
    cJSON_AddStringToObject(u, "username", username);
    cJSON_AddStringToObject(u, "discriminator", "0");
    cJSON_AddNullToObject(u, "global_name");
    cJSON_AddNullToObject(u, "avatar");
    cJSON_AddFalseToObject(u, "bot");
    cJSON_AddNullToObject(m, "nick");
    cJSON_AddArrayToObject(m, "roles");
    cJSON_AddStringToObject(m, "joined_at", TS);
    cJSON_AddFalseToObject(m, "deaf");
    cJSON_AddFalseToObject(m, "mute");
    cJSON_AddNumberToObject(m, "flags", 0);
    return m;
}

static cJSON *presence_json(uint64_t uid)
{
    cJSON *p = cJSON_CreateObject();
    cJSON *u = cJSON_AddObjectToObject(p, "user");
    add_id(u, "id", uid);
    cJSON_AddStringToObject(p, "status", "online");
    cJSON_AddArrayToObject(p, "activities");
    cJSON *cs = cJSON_AddObjectToObject(p, "client_status");
    cJSON_AddStringToObject(cs, "desktop", "online");
    return p;
}

static void rate_limited(struct fk_conn *c, uint64_t gid, const cJSON *nonce, double secs)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "opcode", 8);
    cJSON_AddNumberToObject(d, "retry_after", floor(secs * 1000.0 + 0.5) / 1000.0);
    cJSON *meta = cJSON_AddObjectToObject(d, "meta");
    add_id(meta, "guild_id", gid);
    if (cJSON_IsString(nonce))
        cJSON_AddStringToObject(meta, "nonce", nonce->valuestring);
    emit_json(c, "RATE_LIMITED", d);
}

/* Seconds left in gid's all-members window (0: outside), and start a new window when 0. */
static double window_check(uint64_t gid)
{
    double now = fk_now_ms(), span = (double)fk.o.members_window_ms;
    int free_i = -1;
    for (int i = 0; i < n_windows; i++) {
        if (windows[i].guild == gid) {
            if (now - windows[i].at < span)
                return (span - (now - windows[i].at)) / 1000.0;
            windows[i].at = now;
            return 0;
        }
        if (free_i < 0 && now - windows[i].at >= span)
            free_i = i;
    }
    if (free_i < 0 && n_windows < MAX_WINDOWS)
        free_i = n_windows++;
    if (free_i >= 0) {
        windows[free_i].guild = gid;
        windows[free_i].at = now;
    }
    return 0;
}

int fk_on_request_members(struct fk_conn *c, const cJSON *d)
{
    uint64_t gid;
    ms.requests++;
    const cJSON *nonce = cJSON_GetObjectItemCaseSensitive(d, "nonce");
    const cJSON *query = cJSON_GetObjectItemCaseSensitive(d, "query");
    const cJSON *limit = cJSON_GetObjectItemCaseSensitive(d, "limit");
    const cJSON *uids = cJSON_GetObjectItemCaseSensitive(d, "user_ids");
    int presences = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "presences"));
    if (snowflake(cJSON_GetObjectItemCaseSensitive(d, "guild_id"), &gid) ||
        (cJSON_IsString(nonce) && strlen(nonce->valuestring) > 32) ||
        (!cJSON_IsString(query) && !cJSON_IsArray(uids)) ||
        (cJSON_IsArray(uids) && cJSON_GetArraySize(uids) > 100)) {
        fk_rec_violation(c->shard, "request guild members payload");
        return 0;
    }
    int all = cJSON_IsString(query) && !query->valuestring[0] && cJSON_IsNumber(limit) &&
              limit->valuedouble == 0;
    if (ms.rate_limited > 0) { /* scripted: does not open the guild's window */
        ms.rate_limited--;
        rate_limited(c, gid, nonce, ms.retry_after);
        return 0;
    }
    if (all) {
        double left = window_check(gid);
        if (left > 0) {
            fk_rec_violation(c->shard, "member request window");
            rate_limited(c, gid, nonce, left);
            return 0;
        }
    }
    if (ms.silent || is_quiet_op(8) || is_quiet_guild(gid))
        return 0;

    /* the member list this request matches */
    cJSON *members = cJSON_CreateArray(), *not_found = cJSON_CreateArray();
    if (cJSON_IsArray(uids)) {
        for (const cJSON *u = uids->child; u; u = u->next) {
            uint64_t uid;
            if (snowflake(u, &uid))
                continue;
            int missing = 0;
            for (int i = 0; i < ms.n_not_found; i++)
                missing |= ms.not_found[i] == uid;
            if (missing) {
                char buf[24];
                snprintf(buf, sizeof(buf), "%" PRIu64, uid);
                cJSON_AddItemToArray(not_found, cJSON_CreateString(buf));
                continue;
            }
            char name[32];
            snprintf(name, sizeof(name), "user-%" PRIu64, uid % 100000);
            cJSON_AddItemToArray(members, member_json(uid, name));
        }
    } else {
        long n = ms.count;
        const char *q = query->valuestring;
        if (cJSON_IsNumber(limit) && limit->valuedouble > 0 && limit->valuedouble < n)
            n = (long)limit->valuedouble;
        for (long k = 1; k <= n; k++) {
            char name[160];
            snprintf(name, sizeof(name), "%.100s%smember-%ld", q, q[0] ? "-" : "", k);
            cJSON_AddItemToArray(members, member_json(member_id(gid, k), name));
        }
    }

    long chunks = ms.chunks, total = cJSON_GetArraySize(members);
    long per = (total + chunks - 1) / chunks;
    long send = ms.send_chunks >= 0 && ms.send_chunks < chunks ? ms.send_chunks : chunks;
    for (long i = 0; i < send; i++) {
        cJSON *chunk = cJSON_CreateObject();
        add_id(chunk, "guild_id", gid);
        cJSON *arr = cJSON_AddArrayToObject(chunk, "members");
        cJSON *pres = presences ? cJSON_AddArrayToObject(chunk, "presences") : NULL;
        for (long k = i * per; k < (i + 1) * per && k < total; k++) {
            cJSON *m = cJSON_GetArrayItem(members, (int)k);
            cJSON_AddItemToArray(arr, cJSON_Duplicate(m, 1));
            if (pres) {
                uint64_t uid;
                const cJSON *u = cJSON_GetObjectItemCaseSensitive(m, "user");
                if (!snowflake(cJSON_GetObjectItemCaseSensitive(u, "id"), &uid))
                    cJSON_AddItemToArray(pres, presence_json(uid));
            }
        }
        cJSON_AddNumberToObject(chunk, "chunk_index", (double)i);
        cJSON_AddNumberToObject(chunk, "chunk_count", (double)chunks);
        if (i == 0 && cJSON_GetArraySize(not_found) > 0)
            cJSON_AddItemToObject(chunk, "not_found", cJSON_Duplicate(not_found, 1));
        if (cJSON_IsString(nonce))
            cJSON_AddStringToObject(chunk, "nonce", nonce->valuestring);
        emit_json(c, "GUILD_MEMBERS_CHUNK", chunk);
    }
    cJSON_Delete(members);
    cJSON_Delete(not_found);
    return 0;
}

/* ---- op 31 ---- */

int fk_on_soundboard(struct fk_conn *c, const cJSON *d)
{
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(d, "guild_ids");
    if (!cJSON_IsArray(ids) || cJSON_GetArraySize(ids) < 1) {
        fk_rec_violation(c->shard, "soundboard payload");
        return 0;
    }
    if (is_quiet_op(31))
        return 0;
    for (const cJSON *g = ids->child; g; g = g->next) {
        uint64_t gid;
        if (snowflake(g, &gid) || is_quiet_guild(gid))
            continue;
        cJSON *o = cJSON_CreateObject();
        add_id(o, "guild_id", gid);
        cJSON *arr = cJSON_AddArrayToObject(o, "soundboard_sounds");
        for (int k = 1; k <= 2; k++) {
            cJSON *s = cJSON_CreateObject();
            char name[32];
            snprintf(name, sizeof(name), "sound-%d", k);
            cJSON_AddStringToObject(s, "name", name);
            add_id(s, "sound_id", gid + (uint64_t)k * 8192u);
            cJSON_AddNumberToObject(s, "volume", 1.0);
            cJSON_AddNullToObject(s, "emoji_id");
            cJSON_AddNullToObject(s, "emoji_name");
            add_id(s, "guild_id", gid);
            cJSON_AddTrueToObject(s, "available");
            cJSON_AddItemToArray(arr, s);
        }
        emit_json(c, "SOUNDBOARD_SOUNDS", o);
    }
    return 0;
}

/* ---- op 43 ---- */

int fk_on_channel_info(struct fk_conn *c, const cJSON *d)
{
    uint64_t gid;
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(d, "fields");
    if (snowflake(cJSON_GetObjectItemCaseSensitive(d, "guild_id"), &gid) ||
        !cJSON_IsArray(fields)) {
        fk_rec_violation(c->shard, "channel info payload");
        return 0;
    }
    if (is_quiet_op(43) || is_quiet_guild(gid))
        return 0;
    int want_status = 0, want_start = 0;
    for (const cJSON *f = fields->child; f; f = f->next) {
        want_status |= cJSON_IsString(f) && !strcmp(f->valuestring, "status");
        want_start |= cJSON_IsString(f) && !strcmp(f->valuestring, "voice_start_time");
    }
    cJSON *o = cJSON_CreateObject();
    add_id(o, "guild_id", gid);
    cJSON *arr = cJSON_AddArrayToObject(o, "channels");
    cJSON *ch = cJSON_CreateObject();
    add_id(ch, "id", gid + 2 * 4096u); /* the guild's voice channel (events.c channel_id(gid, 1)) */
    if (want_status)
        cJSON_AddStringToObject(ch, "status", "fake status");
    if (want_start)
        cJSON_AddNumberToObject(ch, "voice_start_time", 1735689600);
    cJSON_AddItemToArray(arr, ch);
    emit_json(c, "CHANNEL_INFO", o);
    return 0;
}

/* ---- control ---- */

static int get_long(const cJSON *body, const char *key, long lo, long hi, long *out)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(body, key);
    if (!j)
        return 0;
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || j->valuedouble < lo ||
        j->valuedouble > hi)
        return -1;
    *out = (long)j->valuedouble;
    return 0;
}

int fk_ctl_members(const cJSON *body, char *out, size_t cap)
{
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "reset"))) {
        ms.chunks = 1, ms.count = 5, ms.rate_limited = 0, ms.retry_after = 0.2;
        ms.send_chunks = -1, ms.silent = 0, ms.n_not_found = 0;
        n_windows = 0;
    }
    long chunks = ms.chunks, count = ms.count, rl = ms.rate_limited, send = ms.send_chunks;
    if (get_long(body, "chunks", 1, 1000, &chunks)) {
        snprintf(out, cap, "chunks: an integer from 1 to 1000");
        return -1;
    }
    if (get_long(body, "count", 0, MAX_MEMBERS, &count)) {
        snprintf(out, cap, "count: an integer from 0 to 100000");
        return -1;
    }
    if (get_long(body, "rate_limited", 0, 1000, &rl)) {
        snprintf(out, cap, "rate_limited: an integer from 0 to 1000");
        return -1;
    }
    if (get_long(body, "send_chunks", -1, 1000, &send)) {
        snprintf(out, cap, "send_chunks: an integer from -1 (all) to 1000");
        return -1;
    }
    const cJSON *ra = cJSON_GetObjectItemCaseSensitive(body, "retry_after");
    if (ra && (!cJSON_IsNumber(ra) || ra->valuedouble < 0 || ra->valuedouble > 3600)) {
        snprintf(out, cap, "retry_after: seconds from 0 to 3600");
        return -1;
    }
    const cJSON *silent = cJSON_GetObjectItemCaseSensitive(body, "silent");
    if (silent && !cJSON_IsBool(silent)) {
        snprintf(out, cap, "silent: true or false");
        return -1;
    }
    const cJSON *nf = cJSON_GetObjectItemCaseSensitive(body, "not_found");
    uint64_t ids[MAX_LIST];
    int n = 0;
    if (nf) {
        if (!cJSON_IsArray(nf) || cJSON_GetArraySize(nf) > MAX_LIST) {
            snprintf(out, cap, "not_found: an array of at most 100 user id strings");
            return -1;
        }
        for (const cJSON *u = nf->child; u; u = u->next)
            if (snowflake(u, &ids[n++])) {
                snprintf(out, cap, "not_found: user ids are strings");
                return -1;
            }
    }
    ms.chunks = chunks, ms.count = count, ms.rate_limited = rl, ms.send_chunks = send;
    if (ra)
        ms.retry_after = ra->valuedouble;
    if (silent)
        ms.silent = cJSON_IsTrue(silent);
    if (nf) {
        memcpy(ms.not_found, ids, (size_t)n * sizeof(ids[0]));
        ms.n_not_found = n;
    }
    snprintf(out, cap,
             "{\"chunks\":%ld,\"count\":%ld,\"rate_limited\":%ld,\"retry_after\":%.3f,"
             "\"send_chunks\":%ld,\"silent\":%s,\"not_found\":%d,\"requests\":%ld}",
             ms.chunks, ms.count, ms.rate_limited, ms.retry_after, ms.send_chunks,
             ms.silent ? "true" : "false", ms.n_not_found, ms.requests);
    return 0;
}

int fk_ctl_quiet(const cJSON *body, char *out, size_t cap)
{
    const cJSON *ops = cJSON_GetObjectItemCaseSensitive(body, "ops");
    const cJSON *guilds = cJSON_GetObjectItemCaseSensitive(body, "guild_ids");
    if (ops && (!cJSON_IsArray(ops) || cJSON_GetArraySize(ops) > 16)) {
        snprintf(out, cap, "ops: an array of at most 16 opcodes");
        return -1;
    }
    if (guilds && (!cJSON_IsArray(guilds) || cJSON_GetArraySize(guilds) > MAX_LIST)) {
        snprintf(out, cap, "guild_ids: an array of at most 100 guild id strings");
        return -1;
    }
    int new_ops[16], n_ops = 0;
    uint64_t new_guilds[MAX_LIST];
    int n_guilds = 0;
    for (const cJSON *o = ops ? ops->child : NULL; o; o = o->next) {
        if (!cJSON_IsNumber(o)) {
            snprintf(out, cap, "ops: opcodes are integers");
            return -1;
        }
        new_ops[n_ops++] = (int)o->valuedouble;
    }
    for (const cJSON *g = guilds ? guilds->child : NULL; g; g = g->next)
        if (snowflake(g, &new_guilds[n_guilds++])) {
            snprintf(out, cap, "guild_ids: guild ids are strings");
            return -1;
        }
    if (ops) {
        memcpy(quiet.ops, new_ops, sizeof(new_ops));
        quiet.n_ops = n_ops;
    }
    if (guilds) {
        memcpy(quiet.guilds, new_guilds, (size_t)n_guilds * sizeof(uint64_t));
        quiet.n_guilds = n_guilds;
    }
    snprintf(out, cap, "{\"ops\":%d,\"guild_ids\":%d}", quiet.n_ops, quiet.n_guilds);
    return 0;
}
