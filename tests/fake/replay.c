/*
 * tests/fake/replay.c: the fake Discord's replay mode, the source of every throughput benchmark.
 *
 * Owns the replay options, the event-mix generator, the pre-built streams and the state of each
 * shard's replay run. It touches a connection only through what fake.h exposes (its wsi, its
 * compression context at the moments named below, fk_conn_send, fk_conn_request_close) and
 * never the send queue or the session list.
 *
 * Build (at start, one thread per core): for each shard the payloads a session receives after
 * IDENTIFY -- READY, a GUILD_CREATE per available guild (the prelude), then --replay-events
 * events of the mix -- are generated once from (seed, shard) and compressed into finished
 * websocket frames for each compression asked for. A stream is cut into segments (the prelude,
 * then every --replay-segment events) that share no compression history: zlib-stream segments
 * are raw deflate started from an empty window (the zlib header already went out with HELLO),
 * and every zstd-stream segment is its own frame, ended by its last payload. So the bytes of a
 * segment decode the same wherever they land, and live messages (a heartbeat ACK) can go out
 * between two segments: compressed from an empty zlib window, or as a whole zstd frame.
 *
 * Streaming: one lws_write of whole frames (up to CHUNK bytes, at least one payload) per
 * writeable callback, never across a segment boundary, paced per shard with --replay-rate. Each
 * payload's send time (CLOCK_REALTIME ns of the write that completed it) is kept per shard, for
 * GET /_fake/replay and the --replay-times file a sink joins on (shard, s) for latency. While a
 * run streams, live messages of the connection wait: non-dispatch ones (ACKs, ops) go out at the
 * next segment boundary, dispatches of the fake's other sources after the run, so s stays in
 * order. A RESUME into the replayed range is refused (op 9), since no history is kept for it.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/errors.h"
#include "tests/fake/fake.h"
#include "tests/fake/replay.h"

#define MAX_EVENTS 50000000L                /* --replay-events */
#define MAX_PAYLOAD ((size_t)8 << 20)       /* one generated payload */
#define MAX_COMPRESSED ((size_t)16 << 20)   /* one payload once compressed */
#define MAX_STREAM ((size_t)4 << 30)        /* one shard's stream for one compression */
#define MAX_TOTAL ((size_t)12 << 30)        /* every pre-built stream together */
#define MAX_HELD 65536                      /* live messages kept while a run streams */
#define MAX_TIMES_LINES ((size_t)200000000) /* lines in one --replay-times file */
#define CHUNK ((size_t)64 << 10)            /* whole frames written per callback */
#define GC_EVERY 10000                      /* the realistic mix: one GUILD_CREATE per ... */
#define GC_MIN ((size_t)100 << 10)          /* ... of 100 KiB ... */
#define GC_MAX ((size_t)4 << 20)            /* ... to 4 MiB, log-uniform */
#define USERS 5000                          /* active users per shard */
#define GUILDS 64                           /* guilds events come from, per shard */
#define NOW_UNIX_MS 1735689600000ull        /* 2025-01-01: the replay's clock starts here */
#define DISCORD_EPOCH_MS 1420070400000ull

enum mix { MIX_REALISTIC, MIX_SMALL, MIX_MESSAGES };
static const char *const mix_names[] = {"realistic", "small", "messages"};

enum ev_type {
    EV_MESSAGE_CREATE,
    EV_PRESENCE_UPDATE,
    EV_TYPING_START,
    EV_GUILD_MEMBER_UPDATE,
    EV_MESSAGE_REACTION_ADD,
    EV_GUILD_CREATE,
    EV_TYPES
};
static const char *const type_names[] = {
    "MESSAGE_CREATE",      "PRESENCE_UPDATE",      "TYPING_START",
    "GUILD_MEMBER_UPDATE", "MESSAGE_REACTION_ADD", "GUILD_CREATE",
};

enum run_state { RUN_IDLE, RUN_PRELUDE, RUN_WAITING, RUN_STREAMING, RUN_DONE, RUN_ABORTED };
static const char *const state_names[] = {"idle",      "prelude", "waiting",
                                          "streaming", "done",    "aborted"};

static const char *const kind_names[] = {"none", "zlib-stream", "zstd-stream"};
#define KINDS 3

struct type_stats {
    uint64_t count, bytes, min, max; /* bytes of d */
};

/* One shard's payloads for one compression: immutable once built, shared by its runs. */
struct stream {
    struct sh_buf bytes; /* finished websocket frames, back to back */
    uint64_t *ends;      /* ends[i]: offset just past payload i's last frame; payload i has s i+1 */
    size_t n;            /* payloads */
    uint64_t messages;   /* websocket messages */
    uint64_t raw;        /* payload bytes before compression */
};

struct shard {
    int pace_wait; /* streaming, parked until its next event is due */
    struct stream *built[KINDS];
    char session_id[33];
    struct type_stats stats[EV_TYPES];
    /* the current (or last) run */
    enum run_state state;
    struct fk_conn *conn; /* while the run is active */
    struct stream *st;
    int kind;
    uint64_t conn_id;
    size_t next;       /* next payload to write */
    size_t pos;        /* its offset in st->bytes */
    size_t bound_seen; /* the last segment boundary handled */
    uint64_t *sent_ns; /* per payload: CLOCK_REALTIME ns of the write that completed it */
    size_t sent_cap;
    uint64_t t0_ns; /* CLOCK_MONOTONIC ns when the events began: pacing starts here */
    uint64_t bytes_sent;
    struct fk_msg **held;
    size_t n_held, held_cap;
    int flushing; /* held messages are being sent: let them through */
};

static struct {
    long events; /* per shard; 0: replay mode off */
    int any_option;
    enum mix mix;
    uint64_t seed;
    double rate; /* events per second per shard; 0: as fast as the socket takes them */
    int manual;
    const char *times_path;
    const char *dump_dir;
    int dump_only;
    unsigned prebuild; /* bit per enum fk_compress */
    long segment;
    int zlib_level, zstd_level;
    struct shard *shards;
    size_t prelude; /* payloads before the events: READY and the GUILD_CREATEs */
    size_t n;       /* payloads per shard */
    int times_dirty;
    atomic_size_t total_bytes;
    /* pacing: a thread wakes the lws loop (lws_cancel_service) while shards are parked */
    atomic_int pace_waiting;
    atomic_int pacer_stop;
    pthread_t pacer;
    int pacer_running;
    long pace_period_ns;
} rp = {
    .mix = MIX_REALISTIC,
    .seed = 1,
    .prebuild = (1u << FK_ZLIB) | (1u << FK_ZSTD),
    .segment = 10000,
    .zlib_level = 6,
    .zstd_level = 3,
};

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- deterministic randomness and text ---- */

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A payload being generated: its buffer, the first error, the shard's random stream. */
struct gen {
    struct sh_buf *b;
    int err;
    uint64_t rs;
    int shard, total;
    uint64_t i; /* event index: the replay's clock */
};

/*
 * Where a shard's GUILD_CREATEs fall: one every GC_EVERY events, shard k's shifted by k/total of
 * that, as guilds join (or come back) on different shards at different moments. Unshifted, the
 * 16 shards of a run all received their multi-megabyte GUILD_CREATE at the same index, a burst
 * Discord has no reason to send.
 */
static uint64_t gc_clock(const struct gen *g)
{
    return g->i + (uint64_t)g->shard * GC_EVERY / (uint64_t)(g->total > 0 ? g->total : 1);
}

static uint64_t rnd(struct gen *g)
{
    g->rs += 0x9e3779b97f4a7c15ull;
    return mix64(g->rs);
}

static uint64_t below(struct gen *g, uint64_t n)
{
    return n ? rnd(g) % n : 0;
}

static double unit(struct gen *g)
{
    return (double)(rnd(g) >> 11) * (1.0 / 9007199254740992.0);
}

static void put(struct gen *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct gen *g, const char *fmt, ...)
{
    if (g->err)
        return;
    struct sh_buf *b = g->b;
    size_t room = b->cap > b->len ? b->cap - b->len : 0;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
        g->err = SH_EINVAL;
        return;
    }
    if ((size_t)n >= room) {
        if ((g->err = sh_buf_reserve(b, (size_t)n)))
            return;
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

static void lit(struct gen *g, const char *s)
{
    if (!g->err)
        g->err = sh_buf_append(g->b, s, strlen(s));
}

static const char *const words[] = {
    "the",    "a",    "lol",     "yeah",    "i",        "you",     "it",    "is",      "that",
    "what",   "no",   "ok",      "just",    "like",     "game",    "play",  "tonight", "anyone",
    "server", "bot",  "update",  "thanks",  "good",     "gg",      "nice",  "when",    "does",
    "know",   "link", "here",    "voice",   "chat",     "now",     "wait",  "really",  "same",
    "think",  "want", "done",    "new",     "patch",    "rank",    "match", "team",    "win",
    "lost",   "meme", "help",    "please",  "why",      "how",     "can",   "we",      "go",
    "for",    "with", "this",    "my",      "they",     "get",     "one",   "time",    "day",
    "see",    "back", "stream",  "ranked",  "build",    "queue",   "lag",   "ping",    "event",
    "role",   "mods", "channel", "discord", "tomorrow", "weekend", "raid",  "boss",    "loot",
};
#define N_WORDS (sizeof(words) / sizeof(words[0]))

static const char *const adjectives[] = {"sleepy", "quiet", "lucky",  "brave",  "tiny",  "cosmic",
                                         "salty",  "happy", "silent", "rapid",  "fuzzy", "neon",
                                         "frozen", "wild",  "golden", "hollow", "spicy", "lazy"};
static const char *const nouns[] = {"otter", "falcon", "panda",  "wizard", "noodle", "ghost",
                                    "tiger", "comet",  "pixel",  "badger", "maple",  "raven",
                                    "koala", "ember",  "walrus", "cactus", "lynx",   "moth"};
#define N_ADJ (sizeof(adjectives) / sizeof(adjectives[0]))
#define N_NOUN (sizeof(nouns) / sizeof(nouns[0]))

/* Emoji as JSON escapes, the way Discord sends non-BMP characters. */
static const char *const emoji[] = {"\\ud83d\\udc4d", "\\ud83d\\ude02", "\\ud83d\\udd25",
                                    "\\u2764\\ufe0f", "\\ud83c\\udf89", "\\ud83d\\udc40",
                                    "\\ud83d\\ude2d", "\\ud83d\\udcaf"};
#define N_EMOJI (sizeof(emoji) / sizeof(emoji[0]))

static void text(struct gen *g, uint64_t nwords)
{
    for (uint64_t k = 0; k < nwords; k++) {
        uint64_t x = rnd(g);
        if (k)
            lit(g, x % 11 == 0 ? ", " : x % 17 == 0 ? ". " : " ");
        if (x % 41 == 0)
            lit(g, emoji[(x >> 8) % N_EMOJI]);
        else if (x % 53 == 0)
            put(g, "\\\"%s\\\"", words[(x >> 8) % N_WORDS]);
        else
            lit(g, words[(x >> 8) % N_WORDS]);
    }
}

static void iso_time(struct gen *g, uint64_t unix_ms)
{
    time_t secs = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    put(g, "%04d-%02d-%02dT%02d:%02d:%02d.%03u000+00:00", tm.tm_year + 1900, tm.tm_mon + 1,
        tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(unix_ms % 1000));
}

/* A snowflake of a unix time in ms. */
static uint64_t flake(uint64_t unix_ms, uint64_t low)
{
    return ((unix_ms - DISCORD_EPOCH_MS) << 22) | (low & 0x3fffff);
}

/* The replay's clock: three milliseconds per event. */
static uint64_t now_ms(const struct gen *g)
{
    return NOW_UNIX_MS + g->i * 3;
}

/* Users are numbered; the same number always gives the same account. */
static uint64_t user_id(unsigned u)
{
    uint64_t h = mix64(0x75736572ull ^ u);
    return flake(DISCORD_EPOCH_MS + 31536000000ull + h % 250000000000ull, h >> 40);
}

/* Who acts: skewed, a few users are much more active than the rest. */
static unsigned pick_user(struct gen *g)
{
    return (unsigned)below(g, below(g, USERS) + 1);
}

static uint64_t pick_guild(struct gen *g)
{
    return fk_guild_id(g->shard, g->total, (int)below(g, GUILDS));
}

static uint64_t channel_of(uint64_t gid, uint64_t k)
{
    return gid + (k + 1) * 4096u;
}

static uint64_t role_of(uint64_t gid, uint64_t k)
{
    return gid + (k + 1) * 1048576u;
}

static void user_obj(struct gen *g, unsigned u)
{
    uint64_t h = mix64(0x6e616d65ull ^ u);
    const char *adj = adjectives[h % N_ADJ], *noun = nouns[(h >> 8) % N_NOUN];
    put(g,
        "{\"username\":\"%s_%s%u\",\"public_flags\":%u,\"primary_guild\":null,\"id\":\"%" PRIu64
        "\",\"global_name\":",
        adj, noun, (unsigned)(h >> 16) % 1000, (unsigned)(h >> 26) % 2 * 64, user_id(u));
    if ((h >> 30) % 4)
        put(g, "\"%c%s %s\"", adj[0] - 32, adj + 1, noun);
    else
        lit(g, "null");
    lit(g, ",\"discriminator\":\"0\",\"collectibles\":null,\"clan\":null,"
           "\"avatar_decoration_data\":null,\"avatar\":");
    if ((h >> 34) % 5)
        put(g, "\"%016" PRIx64 "%016" PRIx64 "\"}", mix64(h), mix64(h + 1));
    else
        lit(g, "null}");
}

static void roles_list(struct gen *g, uint64_t gid, uint64_t n)
{
    for (uint64_t k = 0; k < n; k++)
        put(g, "%s\"%" PRIu64 "\"", k ? "," : "", role_of(gid, below(g, 40)));
}

/* A guild member; with_user adds the nested user object (typing, reactions, member updates). */
static void member_obj(struct gen *g, uint64_t gid, unsigned u, int with_user)
{
    uint64_t h = mix64(0x6d656d62ull ^ u);
    lit(g, "{");
    if (with_user) {
        lit(g, "\"user\":");
        user_obj(g, u);
        lit(g, ",");
    }
    lit(g, "\"roles\":[");
    roles_list(g, gid, h % 7);
    lit(g, "],\"premium_since\":null,\"pending\":false,\"nick\":");
    if (h % 5 == 0)
        put(g, "\"%s\"", words[(h >> 8) % N_WORDS]);
    else
        lit(g, "null");
    lit(g, ",\"mute\":false,\"joined_at\":\"");
    iso_time(g, NOW_UNIX_MS - 86400000ull * (1 + (h >> 12) % 2500) - (h >> 24) % 86400000);
    lit(g, "\",\"flags\":0,\"deaf\":false,\"communication_disabled_until\":null,\"banner\":null,"
           "\"avatar\":null}");
}

/* ---- the events ---- */

static void ev_message(struct gen *g)
{
    uint64_t gid = pick_guild(g), ch = channel_of(gid, below(g, 8));
    uint64_t mid = flake(now_ms(g), g->i);
    unsigned u = pick_user(g);
    int reply = below(g, 100) < 15;
    lit(g, "{\"type\":");
    put(g, "%d,\"tts\":false,\"timestamp\":\"", reply ? 19 : 0);
    iso_time(g, now_ms(g));
    put(g, "\",\"pinned\":false,\"nonce\":\"%" PRIu64 "\",\"mentions\":[", mid - below(g, 4096));
    uint64_t mentions = below(g, 10) == 0 ? 1 + below(g, 2) : 0;
    for (uint64_t k = 0; k < mentions; k++) {
        if (k)
            lit(g, ",");
        user_obj(g, pick_user(g));
    }
    lit(g, "],\"mention_roles\":[],\"mention_everyone\":false,\"member\":");
    member_obj(g, gid, u, 0);
    put(g, ",\"id\":\"%" PRIu64 "\",\"flags\":0,\"embeds\":[", mid);
    if (below(g, 10) == 0) {
        uint64_t h = rnd(g);
        put(g, "{\"type\":\"%s\",\"url\":\"https://example.com/%s/%" PRIu64 "\",\"title\":\"",
            h % 2 ? "article" : "link", words[h % N_WORDS], h >> 20);
        text(g, 3 + below(g, 8));
        lit(g, "\",\"description\":\"");
        text(g, 10 + below(g, 40));
        put(g,
            "\",\"color\":%u,\"thumbnail\":{\"url\":\"https://example.com/img/%" PRIx64
            ".png\",\"proxy_url\":\"https://images-ext-1.discordapp.net/external/%016" PRIx64
            "/https/example.com/img/%" PRIx64 ".png\",\"width\":%u,\"height\":%u,\"flags\":0,"
            "\"content_type\":\"image/png\",\"placeholder\":\"%010" PRIx64 "\","
            "\"placeholder_version\":1},\"provider\":{\"name\":\"Example\"}}",
            (unsigned)(h >> 8) & 0xffffff, h, mix64(h), h, 200 + (unsigned)(h % 1000),
            100 + (unsigned)(h % 700), h >> 24);
    }
    lit(g, "],\"edited_timestamp\":null,\"content\":\"");
    uint64_t size = below(g, 100);
    text(g, size < 55 ? 1 + below(g, 8) : size < 90 ? 8 + below(g, 32) : 40 + below(g, 210));
    put(g,
        "\",\"components\":[],\"channel_type\":0,\"channel_id\":\"%" PRIu64 "\",\"author\":", ch);
    user_obj(g, u);
    lit(g, ",\"attachments\":[");
    if (below(g, 20) == 0) {
        uint64_t h = rnd(g), aid = flake(now_ms(g), h);
        put(g,
            "{\"id\":\"%" PRIu64 "\",\"filename\":\"image%u.png\",\"size\":%u,"
            "\"url\":\"https://cdn.discordapp.com/attachments/%" PRIu64 "/%" PRIu64
            "/image.png?ex=%08x&is=%08x&hm=%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64
            "&\",\"proxy_url\":\"https://media.discordapp.net/attachments/%" PRIu64 "/%" PRIu64
            "/image.png\",\"width\":%u,\"height\":%u,\"content_type\":\"image/png\","
            "\"placeholder\":\"%012" PRIx64 "\",\"placeholder_version\":1,\"flags\":0}",
            aid, (unsigned)(h % 100), 10000 + (unsigned)(h % 5000000), ch, aid, (unsigned)h,
            (unsigned)(h >> 32), mix64(h), mix64(h + 1), mix64(h + 2), mix64(h + 3), ch, aid,
            320 + (unsigned)(h % 1600), 240 + (unsigned)(h % 900), h >> 16);
    }
    put(g, "],\"guild_id\":\"%" PRIu64 "\"", gid);
    if (reply)
        put(g,
            ",\"message_reference\":{\"type\":0,\"channel_id\":\"%" PRIu64
            "\",\"message_id\":\"%" PRIu64 "\",\"guild_id\":\"%" PRIu64 "\"}",
            ch, mid - (1 + below(g, 1000000)) * 4194304u, gid);
    lit(g, "}");
}

static void activity(struct gen *g, unsigned u, uint64_t k)
{
    uint64_t h = mix64(u * 31 + k), started = now_ms(g) - (h % 7200000);
    switch (h % 3) {
    case 0:
        lit(g, "{\"type\":4,\"state\":\"");
        text(g, 1 + h % 6);
        put(g,
            "\",\"name\":\"Custom Status\",\"id\":\"custom\",\"emoji\":{\"name\":\"%s\"},"
            "\"created_at\":%" PRIu64 "}",
            emoji[(h >> 8) % N_EMOJI], started);
        break;
    case 1:
        put(g,
            "{\"type\":0,\"timestamps\":{\"start\":%" PRIu64 "},\"state\":\"%s %s\","
            "\"name\":\"%s %s\",\"id\":\"%016" PRIx64
            "\",\"details\":\"%s\",\"created_at\":%" PRIu64
            ",\"assets\":{\"large_text\":\"%s\",\"large_image\":\"%" PRIu64 "\"},"
            "\"application_id\":\"%" PRIu64 "\",\"flags\":0}",
            started, words[h % N_WORDS], words[(h >> 6) % N_WORDS], adjectives[(h >> 12) % N_ADJ],
            nouns[(h >> 16) % N_NOUN], h, words[(h >> 20) % N_WORDS], started + 1000,
            nouns[(h >> 16) % N_NOUN], h >> 4,
            flake(NOW_UNIX_MS - 200000000000ull, h % 4096) + (h % 64) * 4194304u);
        break;
    default:
        put(g,
            "{\"type\":2,\"timestamps\":{\"start\":%" PRIu64 ",\"end\":%" PRIu64 "},"
            "\"sync_id\":\"%016" PRIx64 "%06x\",\"state\":\"%s %s\",\"session_id\":\"%016" PRIx64
            "%016" PRIx64 "\",\"party\":{\"id\":\"spotify:%" PRIu64 "\"},\"name\":\"Spotify\","
            "\"id\":\"spotify:1\",\"flags\":48,\"details\":\"%s %s %s\",\"created_at\":%" PRIu64
            ",\"assets\":{\"large_text\":\"%s\",\"large_image\":\"spotify:ab67616d0000b273%"
            "016" PRIx64 "%08x\"}}",
            started, started + 180000 + h % 120000, mix64(h), (unsigned)(h & 0xffffff),
            adjectives[(h >> 8) % N_ADJ], nouns[(h >> 12) % N_NOUN], mix64(h + 7), mix64(h + 9),
            user_id(u), words[(h >> 16) % N_WORDS], words[(h >> 22) % N_WORDS],
            words[(h >> 28) % N_WORDS], started, nouns[(h >> 34) % N_NOUN], mix64(h + 11),
            (unsigned)(h >> 40));
        break;
    }
}

static const char *const statuses[] = {"online", "idle", "dnd", "offline"};

/* A presence; guild_id is omitted inside GUILD_CREATE's presences. */
static void presence(struct gen *g, unsigned u, uint64_t gid)
{
    uint64_t x = below(g, 100);
    const char *status = statuses[x < 55 ? 0 : x < 75 ? 1 : x < 85 ? 2 : 3];
    put(g, "{\"user\":{\"id\":\"%" PRIu64 "\"},\"status\":\"%s\",", user_id(u), status);
    if (gid)
        put(g, "\"guild_id\":\"%" PRIu64 "\",", gid);
    if (x >= 85) {
        lit(g, "\"client_status\":{},\"broadcast\":null,\"activities\":[]}");
        return;
    }
    static const char *const clients[] = {"desktop", "mobile", "web"};
    put(g, "\"client_status\":{\"%s\":\"%s\"},\"broadcast\":null,\"activities\":[",
        clients[below(g, 3)], status);
    uint64_t n = below(g, 4), k0 = below(g, 64);
    for (uint64_t k = 0; k < n; k++) {
        if (k)
            lit(g, ",");
        activity(g, u, k0 + k);
    }
    lit(g, "]}");
}

static void ev_presence(struct gen *g)
{
    presence(g, pick_user(g), pick_guild(g));
}

static void ev_typing(struct gen *g)
{
    uint64_t gid = pick_guild(g);
    unsigned u = pick_user(g);
    put(g, "{\"user_id\":\"%" PRIu64 "\",\"timestamp\":%" PRIu64 ",\"member\":", user_id(u),
        now_ms(g) / 1000);
    member_obj(g, gid, u, 1);
    put(g, ",\"channel_id\":\"%" PRIu64 "\",\"guild_id\":\"%" PRIu64 "\"}",
        channel_of(gid, below(g, 8)), gid);
}

static void ev_member_update(struct gen *g)
{
    uint64_t gid = pick_guild(g);
    unsigned u = pick_user(g);
    /* a member object with the user, plus guild_id: reuse member_obj and reopen its end */
    member_obj(g, gid, u, 1);
    if (!g->err) {
        g->b->len--; /* the closing brace */
        put(g, ",\"guild_id\":\"%" PRIu64 "\"}", gid);
    }
}

static void ev_reaction(struct gen *g)
{
    uint64_t gid = pick_guild(g), ch = channel_of(gid, below(g, 8));
    unsigned u = pick_user(g);
    uint64_t mid = flake(now_ms(g) - below(g, 3600000), rnd(g));
    put(g,
        "{\"user_id\":\"%" PRIu64 "\",\"type\":0,\"message_id\":\"%" PRIu64
        "\",\"message_author_id\":\"%" PRIu64 "\",\"member\":",
        user_id(u), mid, user_id(pick_user(g)));
    member_obj(g, gid, u, 1);
    uint64_t e = rnd(g);
    if (e % 4)
        put(g, ",\"emoji\":{\"name\":\"%s\",\"id\":null}", emoji[(e >> 8) % N_EMOJI]);
    else
        put(g, ",\"emoji\":{\"name\":\"%s\",\"id\":\"%" PRIu64 "\",\"animated\":%s}",
            words[(e >> 8) % N_WORDS], role_of(gid, 100 + e % 50), e % 8 == 0 ? "true" : "false");
    put(g,
        ",\"channel_id\":\"%" PRIu64 "\",\"burst\":false,\"guild_id\":\"%" PRIu64
        "\",\"burst_colors\":[]}",
        ch, gid);
}

/* A guild joining, of about target bytes: roles, emojis, channels, members, presences. */
static void ev_guild_create(struct gen *g, size_t target)
{
    size_t start = g->b->len;
    uint64_t gidx = GUILDS + gc_clock(g) / GC_EVERY;
    uint64_t gid = fk_guild_id(g->shard, g->total, (int)(gidx % 4096));
    uint64_t roles = target / 16000, chans = target / 5000, emojis = target / 12000;
    roles = roles < 5 ? 5 : roles > 250 ? 250 : roles;
    chans = chans < 8 ? 8 : chans > 500 ? 500 : chans;
    emojis = emojis > 250 ? 250 : emojis;
    put(g,
        "{\"id\":\"%" PRIu64 "\",\"name\":\"%s %s Community\",\"icon\":\"%016" PRIx64 "%016" PRIx64
        "\",\"description\":\"",
        gid, adjectives[gidx % N_ADJ], nouns[(gidx / N_ADJ) % N_NOUN], mix64(gid), mix64(gid + 1));
    text(g, 12);
    put(g,
        "\",\"splash\":null,\"discovery_splash\":null,\"banner\":null,\"owner_id\":\"%" PRIu64
        "\",\"application_id\":null,\"region\":\"deprecated\",\"afk_channel_id\":null,"
        "\"afk_timeout\":300,\"system_channel_id\":\"%" PRIu64 "\",\"widget_enabled\":false,"
        "\"verification_level\":2,\"default_message_notifications\":1,"
        "\"explicit_content_filter\":2,\"mfa_level\":1,\"premium_tier\":3,"
        "\"premium_subscription_count\":%u,\"preferred_locale\":\"en-US\","
        "\"rules_channel_id\":\"%" PRIu64 "\",\"public_updates_channel_id\":\"%" PRIu64 "\","
        "\"nsfw_level\":0,\"features\":[\"COMMUNITY\",\"NEWS\",\"ANIMATED_ICON\",\"INVITE_SPLASH\","
        "\"ROLE_ICONS\",\"DISCOVERABLE\",\"WELCOME_SCREEN_ENABLED\",\"MEMBER_VERIFICATION_GATE_"
        "ENABLED\"],\"max_members\":500000,\"max_video_channel_users\":25,"
        "\"vanity_url_code\":null,\"joined_at\":\"",
        user_id((unsigned)gidx), channel_of(gid, 0), 14 + (unsigned)(gid % 300), channel_of(gid, 1),
        channel_of(gid, 2));
    iso_time(g, now_ms(g));
    put(g, "\",\"large\":true,\"unavailable\":false,\"member_count\":%u,\"lazy\":true,\"roles\":[",
        (unsigned)(target / 40) + (unsigned)below(g, 10000));
    for (uint64_t k = 0; k < roles; k++)
        put(g,
            "%s{\"id\":\"%" PRIu64 "\",\"name\":\"%s %s\",\"description\":null,"
            "\"permissions\":\"%" PRIu64 "\",\"position\":%u,\"color\":%u,\"colors\":{"
            "\"primary_color\":%u,\"secondary_color\":null,\"tertiary_color\":null},"
            "\"hoist\":%s,\"managed\":false,\"mentionable\":%s,\"icon\":null,"
            "\"unicode_emoji\":null,\"flags\":0}",
            k ? "," : "", k ? role_of(gid, k) : gid, adjectives[k % N_ADJ],
            nouns[(k / N_ADJ) % N_NOUN], (uint64_t)(mix64(k) & 0x1ffffffffffull), (unsigned)k,
            (unsigned)(mix64(k + 1) & 0xffffff), (unsigned)(mix64(k + 1) & 0xffffff),
            k % 7 == 0 ? "true" : "false", k % 5 == 0 ? "true" : "false");
    lit(g, "],\"emojis\":[");
    for (uint64_t k = 0; k < emojis; k++)
        put(g,
            "%s{\"id\":\"%" PRIu64 "\",\"name\":\"%s%s\",\"roles\":[],\"require_colons\":true,"
            "\"managed\":false,\"animated\":%s,\"available\":true}",
            k ? "," : "", role_of(gid, 100 + k), words[k % N_WORDS], nouns[(k / 7) % N_NOUN],
            k % 6 == 0 ? "true" : "false");
    lit(g, "],\"stickers\":[],\"channels\":[");
    for (uint64_t k = 0; k < chans; k++) {
        uint64_t h = mix64(gid ^ k);
        int type = k % 10 == 0 ? 4 : k % 10 == 9 ? 2 : 0;
        put(g,
            "%s{\"id\":\"%" PRIu64 "\",\"type\":%d,\"name\":\"%s-%s\",\"position\":%u,"
            "\"parent_id\":",
            k ? "," : "", channel_of(gid, k), type, words[h % N_WORDS], nouns[(h >> 8) % N_NOUN],
            (unsigned)k);
        if (type == 4)
            lit(g, "null");
        else
            put(g, "\"%" PRIu64 "\"", channel_of(gid, k - k % 10));
        if (type == 0) {
            lit(g, ",\"topic\":\"");
            text(g, h % 12);
            put(g,
                "\",\"nsfw\":false,\"rate_limit_per_user\":0,\"last_message_id\":\"%" PRIu64 "\"",
                flake(now_ms(g) - h % 864000000, h));
        } else if (type == 2) {
            lit(g, ",\"bitrate\":64000,\"user_limit\":0,\"rtc_region\":null");
        }
        lit(g, ",\"flags\":0,\"permission_overwrites\":[");
        for (uint64_t o = 0; o < h % 4; o++)
            put(g,
                "%s{\"id\":\"%" PRIu64 "\",\"type\":0,\"allow\":\"%" PRIu64 "\",\"deny\":\"%" PRIu64
                "\"}",
                o ? "," : "", o ? role_of(gid, o) : gid, (h >> o) & 0x3ffff,
                (h >> (o + 20)) & 0x7fff);
        lit(g, "]}");
    }
    lit(g, "],\"threads\":[],\"stage_instances\":[],\"guild_scheduled_events\":[],"
           "\"soundboard_sounds\":[],\"voice_states\":[],\"members\":[");
    /* members up to 60% of the target, then their presences up to the target */
    unsigned m = 0;
    while (!g->err && g->b->len - start < target * 3 / 5) {
        if (m)
            lit(g, ",");
        member_obj(g, gid, 100000u + (unsigned)(gc_clock(g) / GC_EVERY) * 65536u + m, 1);
        m++;
    }
    lit(g, "],\"presences\":[");
    for (unsigned k = 0; k < m && !g->err && g->b->len - start < target; k++) {
        if (k)
            lit(g, ",");
        presence(g, 100000u + (unsigned)(gc_clock(g) / GC_EVERY) * 65536u + k, 0);
    }
    lit(g, "]}");
}

static enum ev_type pick_type(struct gen *g)
{
    if (rp.mix == MIX_MESSAGES)
        return EV_MESSAGE_CREATE;
    if (rp.mix == MIX_REALISTIC && gc_clock(g) % GC_EVERY == GC_EVERY / 2)
        return EV_GUILD_CREATE;
    uint64_t x = below(g, 10000);
    return x < 3000   ? EV_MESSAGE_CREATE
           : x < 6500 ? EV_PRESENCE_UPDATE
           : x < 8000 ? EV_TYPING_START
           : x < 9000 ? EV_GUILD_MEMBER_UPDATE
                      : EV_MESSAGE_REACTION_ADD;
}

/*
 * Payload index p of a shard (s = p + 1) as a whole gateway payload into b. Every index draws
 * from its own random stream, so a payload depends only on (seed, shard, index).
 */
static int gen_payload(struct sh_buf *b, int shard, size_t p, struct type_stats *stats)
{
    struct gen g = {.b = b, .shard = shard, .total = fk.o.shards};
    sh_buf_reset(b);
    if (p == 0) {
        struct fk_session s;
        memset(&s, 0, sizeof(s));
        snprintf(s.id, sizeof(s.id), "%s", rp.shards[shard].session_id);
        s.shard = shard;
        s.total = fk.o.shards;
        size_t cap = 1024 + (size_t)fk.o.guilds * 64;
        put(&g, "{\"t\":\"READY\",\"s\":1,\"op\":0,\"d\":");
        if (!g.err && !(g.err = sh_buf_reserve(b, cap))) {
            int n = fk_ev_ready(b->data + b->len, cap, &s);
            if (n < 0)
                return SH_ETOOBIG;
            b->len += (size_t)n;
        }
        lit(&g, "}");
        return g.err;
    }
    if (p < rp.prelude) {
        char one[4096];
        int n = fk_ev_guild_create(one, sizeof(one), shard, fk.o.shards, (int)p - 1);
        if (n < 0)
            return SH_ETOOBIG;
        put(&g, "{\"t\":\"GUILD_CREATE\",\"s\":%zu,\"op\":0,\"d\":%s}", p + 1, one);
        return g.err;
    }
    g.i = p - rp.prelude;
    g.rs = mix64(rp.seed * 0x100000001b3ull ^ ((uint64_t)shard << 40) ^ g.i);
    enum ev_type t = pick_type(&g);
    put(&g, "{\"t\":\"%s\",\"s\":%zu,\"op\":0,\"d\":", type_names[t], p + 1);
    size_t head = b->len;
    switch (t) {
    case EV_MESSAGE_CREATE:
        ev_message(&g);
        break;
    case EV_PRESENCE_UPDATE:
        ev_presence(&g);
        break;
    case EV_TYPING_START:
        ev_typing(&g);
        break;
    case EV_GUILD_MEMBER_UPDATE:
        ev_member_update(&g);
        break;
    case EV_MESSAGE_REACTION_ADD:
        ev_reaction(&g);
        break;
    default:
        ev_guild_create(
            &g, (size_t)((double)GC_MIN * exp(unit(&g) * log((double)GC_MAX / (double)GC_MIN))));
        break;
    }
    if (g.err)
        return g.err;
    uint64_t dlen = b->len - head;
    lit(&g, "}");
    if (stats && !g.err) {
        struct type_stats *ts = &stats[t];
        ts->min = ts->count == 0 || dlen < ts->min ? dlen : ts->min;
        ts->max = dlen > ts->max ? dlen : ts->max;
        ts->count++;
        ts->bytes += dlen;
    }
    return g.err;
}

/* ---- building the streams ---- */

static size_t next_bound(size_t p)
{
    size_t b = p < rp.prelude
                   ? rp.prelude
                   : rp.prelude + ((p - rp.prelude) / (size_t)rp.segment + 1) * (size_t)rp.segment;
    return b < rp.n ? b : rp.n;
}

static int is_bound(size_t p)
{
    return p == rp.prelude || (p > rp.prelude && (p - rp.prelude) % (size_t)rp.segment == 0);
}

static void stream_free(struct stream *st)
{
    if (!st)
        return;
    sh_buf_free(&st->bytes);
    free(st->ends);
    free(st);
}

/* Append one unmasked server frame holding p[0..n). */
static int frame(struct stream *st, int opcode, const void *p, size_t n)
{
    unsigned char h[10];
    size_t hn;
    h[0] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        h[1] = (unsigned char)n;
        hn = 2;
    } else if (n < 65536) {
        h[1] = 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        hn = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
        hn = 10;
    }
    if (atomic_fetch_add(&rp.total_bytes, hn + n) + hn + n > MAX_TOTAL)
        return SH_ETOOBIG;
    int rc = sh_buf_reserve(&st->bytes, hn + n);
    if (rc)
        return rc;
    memcpy(st->bytes.data + st->bytes.len, h, hn);
    memcpy(st->bytes.data + st->bytes.len + hn, p, n);
    st->bytes.len += hn + n;
    st->messages++;
    return 0;
}

static int ends_with_flush(const unsigned char *p, size_t n)
{
    return n >= 4 && p[n - 4] == 0 && p[n - 3] == 0 && p[n - 2] == 0xff && p[n - 1] == 0xff;
}

/* Compressed bytes as --zlib-split messages; only the last may end with 00 00 ff ff. */
static int zlib_frames(struct stream *st, const unsigned char *z, size_t out)
{
    size_t parts = (size_t)fk.o.zlib_split, start = 0;
    if (parts > out)
        parts = out;
    for (size_t i = 1; i <= parts; i++) {
        size_t end = i == parts ? out : out * i / parts;
        if (i < parts && end > start + 1 && ends_with_flush(z + start, end - start))
            end--;
        int rc = frame(st, 2, z + start, end - start);
        if (rc)
            return rc;
        start = end;
    }
    return 0;
}

/* Raw deflate, sync-flushed: the bytes of one payload in a zlib-stream segment. */
static int deflate_payload(z_stream *z, struct sh_buf *out, const char *p, size_t n)
{
    sh_buf_reset(out);
    z->next_in = (Bytef *)(uintptr_t)p;
    z->avail_in = (uInt)n;
    do {
        int rc = sh_buf_reserve(out, n / 4 + 65536);
        if (rc)
            return rc;
        size_t room = out->cap - out->len - 1;
        z->next_out = (Bytef *)out->data + out->len;
        z->avail_out = (uInt)room;
        if (deflate(z, Z_SYNC_FLUSH) == Z_STREAM_ERROR)
            return SH_ECORRUPT;
        out->len += room - z->avail_out;
    } while (z->avail_out == 0);
    return 0;
}

/* zstd, flushed (or, for a segment's last payload, ending the frame). */
static int zstd_payload(ZSTD_CCtx *zc, struct sh_buf *out, const char *p, size_t n, int end)
{
    ZSTD_inBuffer ib = {p, n, 0};
    size_t left;
    sh_buf_reset(out);
    do {
        int rc = sh_buf_reserve(out, n / 4 + 65536);
        if (rc)
            return rc;
        ZSTD_outBuffer ob = {out->data, out->cap - 1, out->len};
        left = ZSTD_compressStream2(zc, &ob, &ib, end ? ZSTD_e_end : ZSTD_e_flush);
        if (ZSTD_isError(left))
            return SH_ECORRUPT;
        out->len = ob.pos;
    } while (left != 0 || ib.pos < ib.size);
    return 0;
}

/* Build the streams of one shard for the compressions in kinds (bit per enum fk_compress). */
static int build_shard(int shard, unsigned kinds)
{
    struct shard *rs = &rp.shards[shard];
    struct stream *out[KINDS] = {0};
    struct type_stats stats[EV_TYPES];
    struct sh_buf ev, zb;
    z_stream z;
    ZSTD_CCtx *zc = NULL;
    int z_ready = 0, rc = 0;
    memset(stats, 0, sizeof(stats));
    memset(&z, 0, sizeof(z));
    sh_buf_init(&ev, MAX_PAYLOAD);
    sh_buf_init(&zb, MAX_COMPRESSED);
    for (int k = 0; k < KINDS && !rc; k++) {
        if (!(kinds & (1u << k)))
            continue;
        out[k] = calloc(1, sizeof(*out[k]));
        if (!out[k] || !(out[k]->ends = malloc(rp.n * sizeof(uint64_t))))
            rc = SH_ENOMEM;
        else
            sh_buf_init(&out[k]->bytes, MAX_STREAM);
    }
    if (!rc && (kinds & (1u << FK_ZLIB))) {
        if (deflateInit2(&z, rp.zlib_level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            rc = SH_ENOMEM;
        else
            z_ready = 1;
    }
    if (!rc && (kinds & (1u << FK_ZSTD))) {
        zc = ZSTD_createCCtx();
        if (!zc || ZSTD_isError(ZSTD_CCtx_setParameter(zc, ZSTD_c_compressionLevel, rp.zstd_level)))
            rc = SH_ENOMEM;
    }
    for (size_t p = 0; p < rp.n && !rc; p++) {
        if ((rc = gen_payload(&ev, shard, p, stats)))
            break;
        int seg_end = p + 1 == rp.n || is_bound(p + 1);
        for (int k = 0; k < KINDS && !rc; k++) {
            struct stream *st = out[k];
            if (!st)
                continue;
            if (k == FK_PLAIN) {
                rc = frame(st, 1, ev.data, ev.len);
            } else if (k == FK_ZLIB) {
                rc = deflate_payload(&z, &zb, ev.data, ev.len);
                rc = rc ? rc : zlib_frames(st, (unsigned char *)zb.data, zb.len);
            } else {
                rc = zstd_payload(zc, &zb, ev.data, ev.len, seg_end);
                rc = rc ? rc : frame(st, 2, zb.data, zb.len);
            }
            st->ends[p] = st->bytes.len;
            st->raw += ev.len;
            st->n = p + 1;
        }
        if (!rc && seg_end && z_ready && deflateReset(&z) != Z_OK)
            rc = SH_ECORRUPT;
    }
    if (z_ready)
        deflateEnd(&z);
    ZSTD_freeCCtx(zc);
    sh_buf_free(&ev);
    sh_buf_free(&zb);
    for (int k = 0; k < KINDS; k++) {
        if (!out[k])
            continue;
        if (rc) {
            stream_free(out[k]);
            continue;
        }
        /* give back what doubling left unused */
        char *p = realloc(out[k]->bytes.data, out[k]->bytes.len + 1);
        if (p) {
            out[k]->bytes.data = p;
            out[k]->bytes.cap = out[k]->bytes.len + 1;
        }
        rs->built[k] = out[k];
    }
    if (!rc)
        memcpy(rs->stats, stats, sizeof(stats));
    return rc;
}

struct build_job {
    atomic_int next;
    atomic_int err;
    unsigned kinds;
};

static void *build_worker(void *arg)
{
    struct build_job *job = arg;
    for (;;) {
        int shard = atomic_fetch_add(&job->next, 1);
        if (shard >= fk.o.shards || atomic_load(&job->err))
            return NULL;
        int rc = build_shard(shard, job->kinds);
        if (rc) {
            int zero = 0;
            atomic_compare_exchange_strong(&job->err, &zero, rc);
        }
    }
}

/* Every shard's streams for kinds, one worker thread per core. */
static int build_all(unsigned kinds)
{
    struct build_job job;
    atomic_init(&job.next, 0);
    atomic_init(&job.err, 0);
    job.kinds = kinds;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int n = cores < 1 ? 1 : cores > 16 ? 16 : (int)cores;
    if (n > fk.o.shards)
        n = fk.o.shards;
    pthread_t tids[16];
    int started = 0;
    for (int i = 1; i < n; i++) {
        if (pthread_create(&tids[started], NULL, build_worker, &job))
            break;
        started++;
    }
    build_worker(&job);
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    return atomic_load(&job.err);
}

/* ---- the dump: shard 0's messages for the roof benchmark ---- */

static int put_record(FILE *f, const void *p, size_t n)
{
    unsigned char len[4] = {(unsigned char)n, (unsigned char)(n >> 8), (unsigned char)(n >> 16),
                            (unsigned char)(n >> 24)};
    return fwrite(len, 1, 4, f) == 4 && fwrite(p, 1, n, f) == n ? 0 : SH_EIO;
}

static int hello_json(char *buf, size_t cap)
{
    /* the same bytes fk_conn_open sends */
    return snprintf(buf, cap,
                    "{\"t\":null,\"s\":null,\"op\":10,\"d\":{\"heartbeat_interval\":%ld,"
                    "\"_trace\":[\"fake-discord\"]}}",
                    fk.o.heartbeat_ms);
}

/* HELLO as a live connection gets it: the zlib header and first block, or a zstd frame. */
static int dump_hello(FILE *f, int kind, struct stream *tmp)
{
    char hello[256];
    int hn = hello_json(hello, sizeof(hello));
    struct sh_buf zb;
    int rc = 0;
    sh_buf_init(&zb, MAX_COMPRESSED);
    if (kind == FK_PLAIN) {
        rc = put_record(f, hello, (size_t)hn);
    } else if (kind == FK_ZLIB) {
        z_stream z;
        memset(&z, 0, sizeof(z));
        if (deflateInit(&z, Z_BEST_SPEED) != Z_OK)
            return SH_ENOMEM;
        rc = deflate_payload(&z, &zb, hello, (size_t)hn);
        deflateEnd(&z);
        /* split the way live messages are, then peel the frames off again */
        memset(tmp, 0, sizeof(*tmp));
        sh_buf_init(&tmp->bytes, MAX_COMPRESSED);
        rc = rc ? rc : zlib_frames(tmp, (unsigned char *)zb.data, zb.len);
        for (size_t off = 0; !rc && off < tmp->bytes.len;) {
            const unsigned char *h = (const unsigned char *)tmp->bytes.data + off;
            size_t n = h[1] & 0x7f, hl = n == 126 ? 4 : 2;
            if (n == 126)
                n = (size_t)h[2] << 8 | h[3];
            rc = put_record(f, h + hl, n);
            off += hl + n;
        }
        sh_buf_free(&tmp->bytes);
    } else {
        ZSTD_CCtx *zc = ZSTD_createCCtx();
        if (!zc)
            return SH_ENOMEM;
        ZSTD_CCtx_setParameter(zc, ZSTD_c_compressionLevel, 1);
        rc = zstd_payload(zc, &zb, hello, (size_t)hn, 1);
        ZSTD_freeCCtx(zc);
        rc = rc ? rc : put_record(f, zb.data, zb.len);
    }
    sh_buf_free(&zb);
    return rc;
}

static int dump_stream(const char *dir, int kind, const struct stream *st, uint64_t *messages)
{
    char path[4096], tmpath[4200];
    struct stream tmp;
    snprintf(path, sizeof(path), "%s/%s.bin", dir, kind_names[kind]);
    snprintf(tmpath, sizeof(tmpath), "%s.tmp", path);
    FILE *f = fopen(tmpath, "wb");
    if (!f)
        return SH_EIO;
    int rc = dump_hello(f, kind, &tmp);
    *messages = 0;
    const unsigned char *b = (const unsigned char *)st->bytes.data;
    for (size_t off = 0; !rc && off < st->bytes.len; (*messages)++) {
        size_t n = b[off + 1] & 0x7f, hl = 2;
        if (n == 126) {
            n = (size_t)b[off + 2] << 8 | b[off + 3];
            hl = 4;
        } else if (n == 127) {
            n = 0;
            for (int i = 0; i < 8; i++)
                n = n << 8 | b[off + 2 + i];
            hl = 10;
        }
        rc = put_record(f, b + off + hl, n);
        off += hl + n;
    }
    if (fclose(f) && !rc)
        rc = SH_EIO;
    if (!rc && rename(tmpath, path))
        rc = SH_EIO;
    return rc;
}

static int dump_all(void)
{
    char path[4096];
    mkdir(rp.dump_dir, 0777); /* may exist */
    struct sh_buf j;
    sh_buf_init(&j, 1 << 20);
    int rc =
        sh_buf_printf(&j,
                      "{\"shard\":0,\"shards\":%d,\"events\":%ld,\"payloads\":%zu,"
                      "\"prelude\":%zu,\"mix\":\"%s\",\"seed\":%" PRIu64 ",\"segment\":%ld,"
                      "\"zlib_split\":%d,\"zlib_level\":%d,\"zstd_level\":%d,"
                      "\"heartbeat_ms\":%ld,\"files\":{",
                      fk.o.shards, rp.events, rp.n, rp.prelude, mix_names[rp.mix], rp.seed,
                      rp.segment, fk.o.zlib_split, rp.zlib_level, rp.zstd_level, fk.o.heartbeat_ms);
    int first = 1;
    for (int k = 0; k < KINDS && !rc; k++) {
        const struct stream *st = rp.shards[0].built[k];
        uint64_t messages;
        if (!st)
            continue;
        rc = dump_stream(rp.dump_dir, k, st, &messages);
        rc = rc ? rc
                : sh_buf_printf(&j,
                                "%s\"%s\":{\"file\":\"%s.bin\",\"messages\":%" PRIu64
                                ",\"bytes\":%zu,\"raw_bytes\":%" PRIu64 "}",
                                first ? "" : ",", kind_names[k], kind_names[k], messages + 1,
                                st->bytes.len, st->raw);
        first = 0;
    }
    rc = rc ? rc : sh_buf_append_str(&j, "}}\n");
    if (!rc) {
        snprintf(path, sizeof(path), "%s/replay.json", rp.dump_dir);
        FILE *f = fopen(path, "w");
        if (!f || fwrite(j.data, 1, j.len, f) != j.len)
            rc = SH_EIO;
        if (f && fclose(f))
            rc = SH_EIO;
    }
    sh_buf_free(&j);
    return rc;
}

/* ---- streaming ---- */

static int active(const struct shard *rs)
{
    return rs->state == RUN_PRELUDE || rs->state == RUN_WAITING || rs->state == RUN_STREAMING;
}

static struct shard *replaying(const struct fk_conn *c)
{
    if (!rp.events || c->shard < 0 || c->shard >= fk.o.shards)
        return NULL;
    struct shard *rs = &rp.shards[c->shard];
    return rs->conn == c && active(rs) ? rs : NULL;
}

static int is_dispatch(const struct fk_msg *m)
{
    static const char prefix[] = "{\"t\":\""; /* fk_emit's; others start {"t":null */
    return m->len >= sizeof(prefix) - 1 && !memcmp(FK_MSG_BODY(m), prefix, sizeof(prefix) - 1);
}

/* Live messages follow: zlib compresses them from an empty window (zstd: own frames). */
static void to_live(struct fk_conn *c)
{
    if (c->comp == FK_ZLIB && c->z_ready)
        deflateReset(&c->z);
}

/* Send what was held (only the non-dispatch ones unless all), in order. */
static void flush_held(struct shard *rs, struct fk_conn *c, int all)
{
    size_t keep = 0;
    int live = 0;
    rs->flushing = 1;
    for (size_t i = 0; i < rs->n_held; i++) {
        struct fk_msg *m = rs->held[i];
        if (!all && is_dispatch(m)) {
            rs->held[keep++] = m;
            continue;
        }
        if (!live)
            to_live(c);
        live = 1;
        fk_conn_send(c, (const char *)FK_MSG_BODY(m), m->len);
        fk_msg_unref(m);
    }
    rs->n_held = keep;
    rs->flushing = 0;
}

static void drop_held(struct shard *rs)
{
    for (size_t i = 0; i < rs->n_held; i++)
        fk_msg_unref(rs->held[i]);
    rs->n_held = 0;
}

static int any_active(void)
{
    for (int i = 0; i < fk.o.shards; i++)
        if (active(&rp.shards[i]))
            return 1;
    return 0;
}

/* The --replay-times file, once no run is active: "shard s send_ns" per sent payload. */
static void write_times(void)
{
    if (!rp.times_path || !rp.times_dirty || any_active())
        return;
    char tmpath[4200];
    snprintf(tmpath, sizeof(tmpath), "%s.tmp", rp.times_path);
    FILE *f = fopen(tmpath, "w");
    if (!f) {
        fprintf(stderr, "fake-discord: replay: cannot write %s\n", tmpath);
        return;
    }
    static char buf[1 << 16];
    setvbuf(f, buf, _IOFBF, sizeof(buf));
    size_t lines = 0;
    for (int i = 0; i < fk.o.shards && lines < MAX_TIMES_LINES; i++) {
        const struct shard *rs = &rp.shards[i];
        for (size_t p = 0; rs->st && p < rs->st->n && lines < MAX_TIMES_LINES; p++) {
            if (!rs->sent_ns[p])
                continue;
            fprintf(f, "%d %zu %" PRIu64 "\n", i, p + 1, rs->sent_ns[p]);
            lines++;
        }
    }
    int bad = ferror(f);
    if (fclose(f) || bad || rename(tmpath, rp.times_path)) {
        fprintf(stderr, "fake-discord: replay: cannot write %s\n", rp.times_path);
        return;
    }
    rp.times_dirty = 0;
    fprintf(stderr, "fake-discord: replay times written path=%s lines=%zu\n", rp.times_path, lines);
}

static void unpark(struct shard *rs)
{
    if (rs->pace_wait) {
        rs->pace_wait = 0;
        atomic_fetch_sub(&rp.pace_waiting, 1);
    }
}

static void run_end(struct shard *rs, int done)
{
    struct fk_conn *c = rs->conn;
    unpark(rs);
    rs->state = done ? RUN_DONE : RUN_ABORTED;
    rs->conn = NULL; /* from here on, c's messages take the ordinary path */
    if (done && c) {
        to_live(c); /* whatever comes later, held or not, starts from an empty window */
        flush_held(rs, c, 1);
    }
    drop_held(rs);
    const struct stream *st = rs->st;
    uint64_t first = rs->sent_ns[0], last = rs->next ? rs->sent_ns[rs->next - 1] : 0;
    double secs = last > first ? (double)(last - first) / 1e9 : 0;
    fprintf(stderr,
            "fake-discord: conn=%" PRIu64 " replay %s shard=%d compress=%s sent=%zu/%zu "
            "bytes=%" PRIu64 " seconds=%.3f eps=%.0f\n",
            rs->conn_id, done ? "done" : "aborted", (int)(rs - rp.shards), kind_names[rs->kind],
            rs->next, st->n, rs->bytes_sent, secs, secs > 0 ? (double)rs->next / secs : 0.0);
    rp.times_dirty = 1;
    write_times();
}

/*
 * The pacing clock. lws 4.1 turns a timer less than a millisecond away into a zero poll
 * timeout, so per-event lws timers spin a core at high rates; this thread sleeps instead and
 * wakes the loop about once per due event (never more often than every 50 us), and the loop's
 * LWS_CALLBACK_EVENT_WAIT_CANCELLED calls fk_replay_wake. Touches nothing but atomics.
 */
static void *pacer(void *arg)
{
    (void)arg;
    prctl(PR_SET_TIMERSLACK, 1UL); /* sleeps of 50 us mean 50 us, not 100 */
    while (!atomic_load(&rp.pacer_stop)) {
        int waiting = atomic_load(&rp.pace_waiting) > 0;
        struct timespec t = {0, waiting ? rp.pace_period_ns : 1000000};
        nanosleep(&t, NULL);
        if (waiting)
            lws_cancel_service(fk.ctx);
    }
    return NULL;
}

/* Seconds after the events began when the shard's next event is due. */
static double due_s(const struct shard *rs)
{
    return (double)(rs->next - rp.prelude) / rp.rate;
}

/* Not due yet: the pacer's wake-up brings it back. */
static void park(struct shard *rs)
{
    if (!rs->pace_wait) {
        rs->pace_wait = 1;
        atomic_fetch_add(&rp.pace_waiting, 1);
    }
}

void fk_replay_wake(void)
{
    if (!rp.events || !atomic_load(&rp.pace_waiting))
        return;
    uint64_t now = clock_ns(CLOCK_MONOTONIC);
    for (int i = 0; i < fk.o.shards; i++) {
        struct shard *rs = &rp.shards[i];
        if (!rs->pace_wait || due_s(rs) > (double)(now - rs->t0_ns) / 1e9)
            continue;
        unpark(rs);
        if (rs->conn && rs->state == RUN_STREAMING)
            lws_callback_on_writable(rs->conn->wsi);
    }
}

int fk_replay_zstd_directive(void)
{
    return rp.events ? ZSTD_e_end : ZSTD_e_flush;
}

int fk_replay_identify(struct fk_conn *c, struct fk_session *s)
{
    if (!rp.events)
        return 0;
    struct shard *rs = &rp.shards[s->shard];
    int kind = c->comp;
    if (rs->conn && rs->conn != c) {
        struct fk_conn *old = rs->conn;
        run_end(rs, 0); /* mid-segment: the old connection cannot carry anything else */
        fk_conn_request_close(old, 4000, 0);
    }
    if (!rs->built[kind]) {
        uint64_t t = clock_ns(CLOCK_MONOTONIC);
        int rc = build_shard(s->shard, 1u << kind);
        fprintf(stderr, "fake-discord: replay built shard=%d compress=%s on demand in %.2fs%s%s\n",
                s->shard, kind_names[kind], (double)(clock_ns(CLOCK_MONOTONIC) - t) / 1e9,
                rc ? ": " : "", rc ? sh_strerror(rc) : "");
        if (rc) {
            fk_conn_request_close(c, 4000, 0);
            return 1;
        }
    }
    struct stream *st = rs->built[kind];
    if (rs->sent_cap < st->n) {
        uint64_t *p = realloc(rs->sent_ns, st->n * sizeof(*p));
        if (!p) {
            fk_conn_request_close(c, 4000, 0);
            return 1;
        }
        rs->sent_ns = p;
        rs->sent_cap = st->n;
    }
    memset(rs->sent_ns, 0, st->n * sizeof(*rs->sent_ns));
    if (kind == FK_ZLIB) {
        /* HELLO carried the zlib header; from here on the stream is raw deflate blocks */
        if (c->z_ready)
            deflateEnd(&c->z);
        memset(&c->z, 0, sizeof(c->z));
        c->z_ready =
            deflateInit2(&c->z, Z_BEST_SPEED, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK;
        if (!c->z_ready) {
            fk_conn_request_close(c, 0, 1);
            return 1;
        }
    }
    snprintf(s->id, sizeof(s->id), "%s", rs->session_id); /* the id READY carries */
    s->seq = st->n; /* dispatches of other sources follow the replay */
    rs->state = RUN_PRELUDE;
    rs->conn = c;
    rs->conn_id = c->rec->id;
    rs->st = st;
    rs->kind = kind;
    rs->next = rs->pos = 0;
    rs->bound_seen = 0;
    rs->bytes_sent = 0;
    rs->t0_ns = 0;
    drop_held(rs);
    fprintf(stderr,
            "fake-discord: conn=%" PRIu64 " replay shard=%d compress=%s payloads=%zu bytes=%zu\n",
            c->rec->id, s->shard, kind_names[kind], st->n, st->bytes.len);
    lws_callback_on_writable(c->wsi);
    return 1;
}

int fk_replay_hold(struct fk_conn *c, struct fk_msg *plain)
{
    struct shard *rs = replaying(c);
    if (!rs || rs->flushing)
        return 0;
    if (rs->state == RUN_WAITING && !is_dispatch(plain))
        return 0; /* parked at a boundary: it goes out now */
    if (rs->n_held == rs->held_cap) {
        size_t ncap = rs->held_cap ? rs->held_cap * 2 : 16;
        struct fk_msg **p = ncap <= MAX_HELD ? realloc(rs->held, ncap * sizeof(*p)) : NULL;
        if (!p) {
            fprintf(stderr, "fake-discord: conn=%" PRIu64 " replay: too much held, dropping\n",
                    c->rec->id);
            fk_conn_request_close(c, 0, 1);
            return 1;
        }
        rs->held = p;
        rs->held_cap = ncap;
    }
    rs->held[rs->n_held++] = fk_msg_ref(plain);
    return 1;
}

/* The events start: from the prelude's end, or from POST /_fake/replay/start. */
static void begin_events(struct shard *rs)
{
    rs->state = RUN_STREAMING;
    rs->t0_ns = clock_ns(CLOCK_MONOTONIC);
}

/* One write of whole payloads: up to CHUNK bytes (at least one), due ones only, one segment. */
static int write_chunk(struct shard *rs, struct fk_conn *c)
{
    const struct stream *st = rs->st;
    size_t limit = next_bound(rs->next);
    if (rs->state == RUN_STREAMING && rp.rate > 0) {
        double elapsed = (double)(clock_ns(CLOCK_MONOTONIC) - rs->t0_ns) / 1e9;
        if (due_s(rs) > elapsed) {
            park(rs);
            return 0;
        }
        double allowed = (double)rp.prelude + floor(elapsed * rp.rate) + 1;
        if (allowed < (double)limit)
            limit = (size_t)allowed;
    }
    size_t j = rs->next + 1;
    while (j < limit && st->ends[j] - rs->pos <= CHUNK)
        j++;
    size_t end = st->ends[j - 1];
    int n =
        lws_write(c->wsi, (unsigned char *)st->bytes.data + rs->pos, end - rs->pos, LWS_WRITE_RAW);
    if (n < 0)
        return -1;
    uint64_t t = clock_ns(CLOCK_REALTIME);
    for (size_t p = rs->next; p < j; p++)
        rs->sent_ns[p] = t;
    rs->bytes_sent += end - rs->pos;
    rs->pos = end;
    rs->next = j;
    if (j == st->n)
        run_end(rs, 1);
    else if (rs->state == RUN_STREAMING && rp.rate > 0 && !is_bound(j) &&
             due_s(rs) > (double)(clock_ns(CLOCK_MONOTONIC) - rs->t0_ns) / 1e9)
        park(rs); /* not due yet: skip the writeable round trip */
    else
        lws_callback_on_writable(c->wsi);
    return 0;
}

int fk_replay_writeable(struct fk_conn *c)
{
    struct shard *rs = replaying(c);
    if (!rs)
        return 1;
    if (c->close_code) {
        run_end(rs, 0); /* every write ends on a frame: the close frame can follow */
        return 1;
    }
    if (rs->state == RUN_WAITING)
        return 0;
    if (lws_send_pipe_choked(c->wsi)) {
        lws_callback_on_writable(c->wsi);
        return 0;
    }
    if (rs->next > 0 && rs->next != rs->bound_seen && is_bound(rs->next)) {
        rs->bound_seen = rs->next;
        if (rs->next == rp.prelude) {
            if (rp.manual) {
                rs->state = RUN_WAITING;
                to_live(c); /* while parked, live messages go straight out */
                flush_held(rs, c, 0);
                return 0;
            }
            begin_events(rs);
        }
        size_t before = rs->n_held;
        flush_held(rs, c, 0);
        if (rs->n_held != before)
            return 0; /* they went to the queue, which writes them before we go on */
    }
    return write_chunk(rs, c);
}

void fk_replay_closed(struct fk_conn *c)
{
    struct shard *rs = replaying(c);
    if (!rs)
        return;
    rs->conn = NULL; /* c is going away: nothing may be sent on it */
    drop_held(rs);
    unpark(rs);
    rs->state = RUN_ABORTED;
    fprintf(stderr, "fake-discord: conn=%" PRIu64 " replay aborted shard=%d sent=%zu/%zu\n",
            rs->conn_id, c->shard, rs->next, rs->st->n);
    rp.times_dirty = 1;
    write_times();
}

int fk_replay_start(long shard, long *started)
{
    *started = 0;
    if (!rp.events)
        return SH_EINVAL;
    for (int i = 0; i < fk.o.shards; i++) {
        struct shard *rs = &rp.shards[i];
        if ((shard >= 0 && i != shard) || rs->state != RUN_WAITING)
            continue;
        begin_events(rs);
        lws_callback_on_writable(rs->conn->wsi);
        (*started)++;
    }
    return 0;
}

int fk_replay_json(struct sh_buf *out)
{
    if (!rp.events)
        return sh_buf_append_str(out, "{\"enabled\":false}");
    long counts[RUN_ABORTED + 1] = {0};
    for (int i = 0; i < fk.o.shards; i++)
        counts[rp.shards[i].state]++;
    int rc = sh_buf_printf(
        out,
        "{\"enabled\":true,\"events\":%ld,\"mix\":\"%s\",\"seed\":%" PRIu64 ",\"rate\":%g,"
        "\"start\":\"%s\",\"segment\":%ld,\"payloads\":%zu,\"prelude\":%zu,\"idle\":%ld,"
        "\"prelude_running\":%ld,\"waiting\":%ld,\"streaming\":%ld,\"done\":%ld,\"aborted\":%ld,"
        "\"shards\":[",
        rp.events, mix_names[rp.mix], rp.seed, rp.rate, rp.manual ? "manual" : "identify",
        rp.segment, rp.n, rp.prelude, counts[RUN_IDLE], counts[RUN_PRELUDE], counts[RUN_WAITING],
        counts[RUN_STREAMING], counts[RUN_DONE], counts[RUN_ABORTED]);
    struct type_stats total[EV_TYPES];
    memset(total, 0, sizeof(total));
    for (int i = 0; i < fk.o.shards && !rc; i++) {
        const struct shard *rs = &rp.shards[i];
        const struct stream *st = rs->st;
        for (int t = 0; t < EV_TYPES; t++) {
            const struct type_stats *s = &rs->stats[t];
            if (!s->count)
                continue;
            total[t].min = !total[t].count || s->min < total[t].min ? s->min : total[t].min;
            total[t].max = s->max > total[t].max ? s->max : total[t].max;
            total[t].count += s->count;
            total[t].bytes += s->bytes;
        }
        rc = sh_buf_printf(out, "%s{\"shard\":%d,\"state\":\"%s\"", i ? "," : "", i,
                           state_names[rs->state]);
        if (!rc && st) {
            size_t ev0 = rp.prelude < st->n ? rp.prelude : st->n - 1;
            rc = sh_buf_printf(
                out,
                ",\"compress\":\"%s\",\"conn\":%" PRIu64 ",\"payloads\":%zu,\"sent\":%zu,"
                "\"last_s\":%zu,\"first_ns\":%" PRIu64 ",\"events_first_ns\":%" PRIu64
                ",\"last_ns\":%" PRIu64 ",\"bytes_raw\":%" PRIu64 ",\"bytes_compressed\":%zu,"
                "\"bytes_sent\":%" PRIu64 ",\"messages\":%" PRIu64,
                kind_names[rs->kind], rs->conn_id, st->n, rs->next, rs->next, rs->sent_ns[0],
                rs->sent_ns[ev0], rs->next ? rs->sent_ns[rs->next - 1] : 0, st->raw, st->bytes.len,
                rs->bytes_sent, st->messages);
        }
        rc = rc ? rc : sh_buf_append_str(out, "}");
    }
    rc = rc ? rc : sh_buf_append_str(out, "],\"types\":[");
    int first = 1;
    for (int t = 0; t < EV_TYPES && !rc; t++) {
        if (!total[t].count)
            continue;
        rc = sh_buf_printf(out,
                           "%s{\"t\":\"%s\",\"count\":%" PRIu64 ",\"bytes\":%" PRIu64
                           ",\"min\":%" PRIu64 ",\"max\":%" PRIu64 "}",
                           first ? "" : ",", type_names[t], total[t].count, total[t].bytes,
                           total[t].min, total[t].max);
        first = 0;
    }
    return rc ? rc : sh_buf_append_str(out, "]}");
}

/* ---- options, start and stop ---- */

void fk_replay_usage(FILE *f)
{
    fputs(
        "replay mode (benchmarks; see docs/performance.md):\n"
        "  --replay-events N      per shard: after IDENTIFY send READY, a GUILD_CREATE per\n"
        "                         guild, then N events, all pre-built and pre-compressed\n"
        "  --replay-mix M         realistic (default): 30% MESSAGE_CREATE, 35% PRESENCE_UPDATE,\n"
        "                         15% TYPING_START, 10% GUILD_MEMBER_UPDATE, 10%\n"
        "                         MESSAGE_REACTION_ADD, and one GUILD_CREATE of 100 KiB-4 MiB\n"
        "                         per 10,000 events; small: the same without GUILD_CREATE;\n"
        "                         messages: MESSAGE_CREATE only\n"
        "  --replay-seed N        the events are a function of (seed, shard, index); default 1\n"
        "  --replay-rate EPS      events per second per shard; 0 (default): as fast as the\n"
        "                         socket takes them\n"
        "  --replay-start WHEN    identify (default): events follow READY at once; manual:\n"
        "                         they wait for POST /_fake/replay/start {\"shard\":N}\n"
        "  --replay-times FILE    when no replay runs any more, write \"shard s send_ns\" lines\n"
        "                         (CLOCK_REALTIME of the write that sent payload s)\n"
        "  --replay-dump DIR      write shard 0's messages per compression to DIR/<compress>.bin\n"
        "                         (u32 little-endian length + bytes, HELLO first) and\n"
        "                         DIR/replay.json; --replay-dump-only DIR: then exit\n"
        "  --replay-compress L    compressions built at start: zlib,zstd (default), none;\n"
        "                         others are built when a connection first asks\n"
        "  --replay-segment N     events per segment (default 10000): live messages such as\n"
        "                         heartbeat ACKs go out between segments\n"
        "  --replay-zlib-level N  deflate level of the stream (default 6)\n"
        "  --replay-zstd-level N  zstd level of the stream (default 3)\n"
        "  GET /_fake/replay: per shard state, payloads sent, first/last send time (ns),\n"
        "  bytes raw and compressed, and the mix's counts and sizes\n",
        f);
}

static int parse_num(const char *name, const char *v, double lo, double hi, double *out)
{
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "fake-discord: --%s: expected a number from %g to %g, got \"%s\"\n", name,
                lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_kinds(const char *v, unsigned *out)
{
    char buf[64];
    snprintf(buf, sizeof(buf), "%s", v);
    *out = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "zlib") || !strcmp(t, "zlib-stream"))
            *out |= 1u << FK_ZLIB;
        else if (!strcmp(t, "zstd") || !strcmp(t, "zstd-stream"))
            *out |= 1u << FK_ZSTD;
        else if (!strcmp(t, "none"))
            *out |= 1u << FK_PLAIN;
        else {
            fprintf(stderr, "fake-discord: --replay-compress: zlib, zstd or none, got \"%s\"\n", t);
            return -1;
        }
    }
    return 0;
}

int fk_replay_option(int code, const char *v)
{
    double x;
    rp.any_option = 1;
    switch (code - FK_REPLAY_OPT_BASE) {
    case 0:
        if (parse_num("replay-events", v, 0, MAX_EVENTS, &x) || x != floor(x))
            return -1;
        rp.events = (long)x;
        return 0;
    case 1:
        for (int m = 0; m < 3; m++)
            if (!strcmp(v, mix_names[m])) {
                rp.mix = (enum mix)m;
                return 0;
            }
        fprintf(stderr, "fake-discord: --replay-mix: realistic, small or messages\n");
        return -1;
    case 2:
        if (parse_num("replay-seed", v, 0, 9007199254740992.0, &x) || x != floor(x))
            return -1;
        rp.seed = (uint64_t)x;
        return 0;
    case 3:
        return parse_num("replay-rate", v, 0, 1e9, &rp.rate);
    case 4:
        if (strcmp(v, "identify") && strcmp(v, "manual")) {
            fprintf(stderr, "fake-discord: --replay-start: identify or manual\n");
            return -1;
        }
        rp.manual = !strcmp(v, "manual");
        return 0;
    case 5:
        rp.times_path = v;
        return 0;
    case 6:
    case 7:
        rp.dump_dir = v;
        rp.dump_only = code - FK_REPLAY_OPT_BASE == 7;
        return 0;
    case 8:
        return parse_kinds(v, &rp.prebuild);
    case 9:
        if (parse_num("replay-segment", v, 1, 100000000, &x) || x != floor(x))
            return -1;
        rp.segment = (long)x;
        return 0;
    case 10:
        if (parse_num("replay-zlib-level", v, 0, 9, &x) || x != floor(x))
            return -1;
        rp.zlib_level = (int)x;
        return 0;
    case 11:
        if (parse_num("replay-zstd-level", v, 1, 19, &x) || x != floor(x))
            return -1;
        rp.zstd_level = (int)x;
        return 0;
    default:
        return -1;
    }
}

int fk_replay_init(void)
{
    if (!rp.events) {
        if (rp.any_option) {
            fprintf(stderr, "fake-discord: the --replay-* options need --replay-events N\n");
            return -1;
        }
        return 0;
    }
    rp.prelude = 1 + (size_t)(fk.o.guilds - fk.o.unavailable_forever);
    rp.n = rp.prelude + (size_t)rp.events;
    rp.shards = calloc((size_t)fk.o.shards, sizeof(*rp.shards));
    if (!rp.shards) {
        fprintf(stderr, "fake-discord: replay: out of memory\n");
        return -1;
    }
    for (int i = 0; i < fk.o.shards; i++)
        snprintf(rp.shards[i].session_id, sizeof(rp.shards[i].session_id),
                 "%016" PRIx64 "%016" PRIx64, mix64(rp.seed ^ 0x5e55ull ^ ((uint64_t)i << 24)),
                 mix64(rp.seed + (uint64_t)i));
    unsigned kinds = rp.prebuild;
    if (rp.dump_dir)
        kinds |= (1u << FK_ZLIB) | (1u << FK_ZSTD);
    uint64_t t = clock_ns(CLOCK_MONOTONIC);
    int rc = build_all(kinds);
    if (rc) {
        fprintf(stderr, "fake-discord: replay: building the streams failed: %s\n", sh_strerror(rc));
        return -1;
    }
    uint64_t raw = 0, bytes[KINDS] = {0};
    struct type_stats total[EV_TYPES];
    memset(total, 0, sizeof(total));
    for (int i = 0; i < fk.o.shards; i++) {
        for (int k = 0; k < KINDS; k++) {
            const struct stream *st = rp.shards[i].built[k];
            if (st) {
                bytes[k] += st->bytes.len;
                raw = st->raw;
            }
        }
        for (int e = 0; e < EV_TYPES; e++) {
            const struct type_stats *s = &rp.shards[i].stats[e];
            total[e].min = !total[e].count || s->min < total[e].min ? s->min : total[e].min;
            total[e].max = s->max > total[e].max ? s->max : total[e].max;
            total[e].count += s->count;
            total[e].bytes += s->bytes;
        }
    }
    fprintf(stderr,
            "fake-discord: replay built shards=%d payloads=%zu raw_mb_per_shard=%.1f "
            "zlib_mb=%.1f zstd_mb=%.1f none_mb=%.1f seconds=%.2f\n",
            fk.o.shards, rp.n, (double)raw / 1e6, (double)bytes[FK_ZLIB] / 1e6,
            (double)bytes[FK_ZSTD] / 1e6, (double)bytes[FK_PLAIN] / 1e6,
            (double)(clock_ns(CLOCK_MONOTONIC) - t) / 1e9);
    for (int e = 0; e < EV_TYPES; e++)
        if (total[e].count)
            fprintf(stderr,
                    "fake-discord: replay mix t=%s count=%" PRIu64 " mean_bytes=%.0f min=%" PRIu64
                    " max=%" PRIu64 "\n",
                    type_names[e], total[e].count, (double)total[e].bytes / (double)total[e].count,
                    total[e].min, total[e].max);
    if (rp.dump_dir) {
        if ((rc = dump_all())) {
            fprintf(stderr, "fake-discord: replay: writing the dump to %s failed: %s\n",
                    rp.dump_dir, sh_strerror(rc));
            return -1;
        }
        fprintf(stderr, "fake-discord: replay dumped dir=%s\n", rp.dump_dir);
        if (rp.dump_only)
            return 1;
    }
    if (rp.rate > 0) {
        double period = 1e9 / (rp.rate * fk.o.shards); /* about one wake-up per due event */
        rp.pace_period_ns = period < 50000 ? 50000 : period > 1000000 ? 1000000 : (long)period;
        if (pthread_create(&rp.pacer, NULL, pacer, NULL)) {
            fprintf(stderr, "fake-discord: replay: cannot start the pacing thread\n");
            return -1;
        }
        rp.pacer_running = 1;
    }
    return 0;
}

void fk_replay_shutdown(void)
{
    if (!rp.events || !rp.shards)
        return;
    if (rp.pacer_running) {
        atomic_store(&rp.pacer_stop, 1);
        pthread_join(rp.pacer, NULL);
        rp.pacer_running = 0;
    }
    for (int i = 0; i < fk.o.shards; i++) {
        struct shard *rs = &rp.shards[i];
        unpark(rs);
        if (active(rs)) {
            rs->state = RUN_ABORTED;
            rp.times_dirty = 1;
        }
        rs->conn = NULL;
    }
    write_times();
    for (int i = 0; i < fk.o.shards; i++) {
        struct shard *rs = &rp.shards[i];
        drop_held(rs);
        free(rs->held);
        free(rs->sent_ns);
        for (int k = 0; k < KINDS; k++)
            stream_free(rs->built[k]);
    }
    SH_FREE(rp.shards);
    rp.events = 0; /* connections closed after this take the ordinary path */
}
