/*
 * tests/fake/events.c: realistic, small event bodies for the fake Discord, built with
 * snprintf straight into a caller's buffer (no JSON tree per event, so bursts stay cheap).
 * Owns no state: every id is derived from (shard, total, index) so repeated calls agree.
 */
#include <inttypes.h>
#include <stdio.h>

#include "tests/fake/fake.h"

#define BOT_ID "1100000000000000001"
#define APP_ID "1100000000000000001"
#define TS "2025-01-01T00:00:00.000000+00:00"

/* Milliseconds since the Discord epoch (2015) of the fake's "now": mid 2024. */
#define SNOW_T0 ((uint64_t)300000000000)

static int fit(int n, size_t cap)
{
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* Guild snowflakes: (id >> 22) % total == shard, distinct per index. */
uint64_t fk_guild_id(int shard, int total, int index)
{
    uint64_t t = (uint64_t)total;
    uint64_t ts = SNOW_T0 - SNOW_T0 % t + (uint64_t)index * t + (uint64_t)shard;
    return (ts << 22) | ((uint64_t)index & 0xfff);
}

static uint64_t channel_id(uint64_t gid, int k)
{
    return gid + (uint64_t)(k + 1) * 4096u;
}

int fk_ev_ready(char *buf, size_t cap, const struct fk_session *s)
{
    size_t off = 0;
    int n = snprintf(buf, cap,
                     "{\"v\":10,\"user\":{\"id\":\"" BOT_ID "\",\"username\":\"fake-bot\","
                     "\"discriminator\":\"0\",\"global_name\":null,\"avatar\":null,\"bot\":true,"
                     "\"verified\":true,\"flags\":0},\"user_settings\":{},\"private_channels\":[],"
                     "\"guilds\":[");
    if (fit(n, cap) < 0)
        return -1;
    off = (size_t)n;
    for (int i = 0; i < fk.o.guilds; i++) {
        n = snprintf(buf + off, cap - off, "%s{\"id\":\"%" PRIu64 "\",\"unavailable\":true}",
                     i ? "," : "", fk_guild_id(s->shard, s->total, i));
        if (fit(n, cap - off) < 0)
            return -1;
        off += (size_t)n;
    }
    char rurl[600];
    if (fk.o.resume_url)
        snprintf(rurl, sizeof(rurl), "%s", fk.o.resume_url);
    else
        snprintf(rurl, sizeof(rurl), "ws://%s:%d/resume", fk.o.host, fk.port);
    n = snprintf(buf + off, cap - off,
                 "],\"session_type\":\"normal\",\"session_id\":\"%s\","
                 "\"resume_gateway_url\":\"%s\",\"shard\":[%d,%d],"
                 "\"application\":{\"id\":\"" APP_ID "\",\"flags\":0},"
                 "\"_trace\":[\"fake-discord\"]}",
                 s->id, rurl, s->shard, s->total);
    if (fit(n, cap - off) < 0)
        return -1;
    return (int)(off + (size_t)n);
}

int fk_ev_guild_create(char *buf, size_t cap, int shard, int total, int index)
{
    uint64_t gid = fk_guild_id(shard, total, index);
    int n = snprintf(
        buf, cap,
        "{\"id\":\"%" PRIu64 "\",\"name\":\"Fake Guild %d-%d\",\"icon\":null,"
        "\"owner_id\":\"1000000000000000042\",\"member_count\":%d,\"large\":false,"
        "\"unavailable\":false,\"joined_at\":\"" TS
        "\",\"features\":[],\"roles\":[{\"id\":\"%" PRIu64
        "\",\"name\":\"@everyone\",\"permissions\":\"1071698660929\",\"position\":0,"
        "\"color\":0}],\"emojis\":[],\"stickers\":[],\"members\":[],\"presences\":[],"
        "\"voice_states\":[],\"threads\":[],\"stage_instances\":[],"
        "\"guild_scheduled_events\":[],\"soundboard_sounds\":[],\"channels\":["
        "{\"id\":\"%" PRIu64 "\",\"type\":0,\"name\":\"general\",\"position\":0,"
        "\"parent_id\":null,\"topic\":null,\"nsfw\":false,\"permission_overwrites\":[]},"
        "{\"id\":\"%" PRIu64 "\",\"type\":2,\"name\":\"voice\",\"position\":1,"
        "\"parent_id\":null,\"bitrate\":64000,\"user_limit\":0,\"permission_overwrites\":[]}]}",
        gid, shard, index, 10 + (index * 7) % 90, gid, channel_id(gid, 0), channel_id(gid, 1));
    return fit(n, cap);
}

static int guild_index(uint64_t n)
{
    return fk.o.guilds > 0 ? (int)(n % (uint64_t)fk.o.guilds) : 0;
}

int fk_ev_message(char *buf, size_t cap, int shard, int total, uint64_t n, uint64_t salt)
{
    uint64_t gid = fk_guild_id(shard, total, guild_index(n));
    uint64_t mid = ((SNOW_T0 + (uint64_t)86400000 + salt) << 22) | (n & 0x3fffff);
    unsigned user = (unsigned)(n % 50);
    int len = snprintf(
        buf, cap,
        "{\"type\":0,\"tts\":false,\"timestamp\":\"" TS "\",\"pinned\":false,"
        "\"nonce\":\"%" PRIu64 "\",\"mentions\":[],\"mention_roles\":[],"
        "\"mention_everyone\":false,\"member\":{\"roles\":[],\"premium_since\":null,"
        "\"pending\":false,\"nick\":null,\"mute\":false,\"joined_at\":\"" TS "\",\"flags\":0,"
        "\"deaf\":false,\"communication_disabled_until\":null,\"avatar\":null},"
        "\"id\":\"%" PRIu64 "\",\"flags\":0,\"embeds\":[],\"edited_timestamp\":null,"
        "\"content\":\"message %" PRIu64 " from the fake \\\"gateway\\\"\",\"components\":[],"
        "\"channel_type\":0,\"channel_id\":\"%" PRIu64 "\",\"author\":{\"username\":\"user%u\","
        "\"public_flags\":0,\"id\":\"10000000000000%05u\",\"global_name\":\"User %u\","
        "\"discriminator\":\"0\",\"clan\":null,\"avatar_decoration_data\":null,"
        "\"avatar\":null},\"attachments\":[],\"guild_id\":\"%" PRIu64 "\",\"n\":%" PRIu64 "}",
        mid, mid, n, channel_id(gid, 0), user, user, user, gid, n);
    return fit(len, cap);
}

int fk_ev_trickle(char *buf, size_t cap, int shard, int total, uint64_t k, const char **t)
{
    uint64_t gid = fk_guild_id(shard, total, guild_index(k));
    unsigned user = (unsigned)(k % 50);
    int n;
    switch (k % 4) {
    case 0:
        *t = "MESSAGE_CREATE";
        return fk_ev_message(buf, cap, shard, total, k, 7);
    case 1:
        *t = "TYPING_START";
        n = snprintf(buf, cap,
                     "{\"user_id\":\"10000000000000%05u\",\"timestamp\":%" PRIu64 ","
                     "\"member\":{\"roles\":[],\"nick\":null,\"joined_at\":\"" TS "\"},"
                     "\"channel_id\":\"%" PRIu64 "\",\"guild_id\":\"%" PRIu64 "\"}",
                     user, (uint64_t)1735689600 + k, channel_id(gid, 0), gid);
        return fit(n, cap);
    case 2:
        *t = "MESSAGE_REACTION_ADD";
        n = snprintf(
            buf, cap,
            "{\"user_id\":\"10000000000000%05u\",\"type\":0,\"message_id\":\"%" PRIu64
            "\",\"emoji\":{\"name\":\"\\ud83d\\udc4d\",\"id\":null},\"channel_id\":\"%" PRIu64
            "\",\"burst\":false,\"guild_id\":\"%" PRIu64 "\"}",
            user, ((SNOW_T0 + (uint64_t)86400000) << 22) | (k & 0x3fffff), channel_id(gid, 0), gid);
        return fit(n, cap);
    default:
        *t = "PRESENCE_UPDATE";
        n = snprintf(buf, cap,
                     "{\"user\":{\"id\":\"10000000000000%05u\"},\"status\":\"%s\","
                     "\"guild_id\":\"%" PRIu64 "\",\"client_status\":{\"desktop\":\"%s\"},"
                     "\"activities\":[]}",
                     user, (k / 4) % 2 ? "idle" : "online", gid, (k / 4) % 2 ? "idle" : "online");
        return fit(n, cap);
    }
}
