/*
 * gateway/gateway.h: the gateway room's public face.
 *
 * One gw_gateway holds every shard of this process on one libwebsockets context,
 * served by one thread (the one that calls gw_gateway_run). Other threads call only
 * the functions marked "any thread" below (stop, commands, snapshots); they never
 * touch shard state. Dispatches leave through the gw_sink given at creation. Where a
 * shard gets permission to IDENTIFY and where the daily session budget is kept is the
 * gw_identify interface below, which bridge/main.c fills.
 */
#ifndef SHARDHOOK_GW_GATEWAY_H
#define SHARDHOOK_GW_GATEWAY_H

#include <stddef.h>

#include <stdint.h>

#include "config/config.h"
#include "gateway/sink.h"

struct gw_gateway;

/* ---- shard status names ------------------------------------------------------------------ */

/*
 * A shard's status, in the order of its life (docs/architecture.md); X(NAME, "name"). The names
 * are what gw_shard_info.status holds and what the API, metrics and status page show.
 */
#define GW_STATUS_MAP(X)                                                                           \
    X(QUEUED, "queued")                                                                            \
    X(CONNECTING, "connecting")                                                                    \
    X(HANDSHAKING, "handshaking")                                                                  \
    X(IDENTIFYING, "identifying")                                                                  \
    X(RESUMING, "resuming")                                                                        \
    X(LOADING, "loading")                                                                          \
    X(READY, "ready")                                                                              \
    X(DISCONNECTED, "disconnected")                                                                \
    X(FAILED, "failed")

enum gw_status {
#define GW_STATUS_ENUM_(n, s) GW_##n,
    GW_STATUS_MAP(GW_STATUS_ENUM_)
#undef GW_STATUS_ENUM_
};

/* How many statuses there are. */
#define GW_STATUS_COUNT_(n, s) +1
enum { GW_STATUS_COUNT = 0 GW_STATUS_MAP(GW_STATUS_COUNT_) };
#undef GW_STATUS_COUNT_

/* gw_status_names[st] is the name of status st. */
extern const char *const gw_status_names[GW_STATUS_COUNT];

/* ---- identify slots and the session budget: an interface bridge/main.c fills --------------- */

/* What `GET /gateway/bot` answered (gateway/rest.c fetches it). */
struct gw_bot_info {
    char url[512];           /* gateway URL, e.g. wss://gateway.discord.gg */
    int shards;              /* recommended shard count */
    int session_total;       /* session_start_limit.total */
    int session_remaining;   /* session_start_limit.remaining */
    uint64_t reset_after_ms; /* session_start_limit.reset_after */
    int max_concurrency;     /* session_start_limit.max_concurrency */
};

/* The daily session budget (Discord's session_start_limit) as an implementation keeps it. */
struct gw_budget {
    int total; /* sessions per reset period; 0 unknown */
    int remaining;
    uint64_t reset_at_ms; /* monotonic ms when it refills; 0 unknown */
    int reserve;          /* cluster mode: IDENTIFYs stop when remaining reaches it; 0 otherwise */
};

/* What wait() answers when the budget is at its reserve: close, hold the shard until it refills. */
#define GW_IDENTIFY_REFUSED UINT64_MAX

/*
 * Where a shard gets permission to IDENTIFY and where the session budget is kept. The gateway
 * calls these on its own thread (start from gw_gateway_new, stop also from gw_gateway_free), one
 * shard at a time; nothing of a shard's state crosses. gw_identify_local_new() fills it for one
 * process (buckets in memory, the budget read from /gateway/bot); cluster mode fills it from Redis.
 * RESUMEs never ask.
 */
struct gw_identify_ops {
    /* After discovery: the bucket count and the budget /gateway/bot announced. */
    int (*start)(void *ud, int max_concurrency, const struct gw_bot_info *bot);
    /* Plan an IDENTIFY connection of shard_id no earlier than not_before_ms: its slot (ms). */
    uint64_t (*plan)(void *ud, int shard_id, uint64_t not_before_ms);
    /*
     * Right before IDENTIFY (socket open, HELLO in): ms until shard_id's bucket allows it (0: now;
     * the gateway asks again after that long), or GW_IDENTIFY_REFUSED when the budget may not be
     * spent (the gateway closes with 4000 and holds the shard as when take() fails).
     */
    uint64_t (*wait)(void *ud, int shard_id, uint64_t now_ms);
    /* An IDENTIFY of shard_id was queued (its bucket is reserved) or written at now_ms. */
    void (*stamp)(void *ud, int shard_id, uint64_t now_ms);
    /* Reserve one session of the budget: 0, or SH_EAGAIN while it is spent or being re-read. */
    int (*take)(void *ud);
    /* A reserved session went unused (the connection ended before its IDENTIFY was written). */
    void (*give_back)(void *ud);
    /* An IDENTIFY went out without a reservation: count it. */
    void (*spend)(void *ud);
    /* The budget as it stands. */
    void (*budget)(void *ud, struct gw_budget *out);
    /*
     * Re-read the budget (its reset time passed). Returns 0 once under way; done(arg, rc) then
     * runs exactly once, on any thread, before stop returns (rc 0: read; budget() has it).
     * Negative when it cannot start now.
     */
    int (*refresh)(void *ud, void (*done)(void *arg, int rc), void *arg);
    /* End background work and wait for it to end: no done() after this. Idempotent. */
    void (*stop)(void *ud);
    /*
     * May be NULL. shard_id's session could not be resumed (why: "invalid_session",
     * "session_timed_out", "invalid_seq", "not_authenticated", "resume_failed"); seq is its last
     * s. The gateway has emitted SHARDHOOK_SESSION_LOST and will IDENTIFY through wait().
     */
    void (*lost)(void *ud, int shard_id, const char *session_id, uint64_t seq, const char *why);
};

struct gw_identify {
    const struct gw_identify_ops *ops;
    void *ud;
};

/*
 * The single-process implementation: buckets of cfg->testing_identify_interval_ms (5 s), the
 * budget counted here and re-read from {api_base}/gateway/bot on a thread of its own, which
 * stop() ends and joins. cfg must outlive it. Returns 0 or SH_ENOMEM.
 */
int gw_identify_local_new(const struct cfg_config *cfg, struct gw_identify *out);
/* Stop and free; after gw_gateway_free of every gateway that used it. */
void gw_identify_local_free(struct gw_identify *ident);

/* ---- life ------------------------------------------------------------------------------ */

/*
 * Discover the gateway (`/gateway/bot`, blocking, retried), decide the shard set
 * and prepare every shard; ident decides when shards may IDENTIFY (it must outlive
 * the gateway). `stop` (may be NULL) is polled while discovery retries. On failure
 * returns a negative code and writes one line into err that says what to fix
 * (SH_EAUTH for a bad token).
 */
int gw_gateway_new(const struct cfg_config *cfg, const struct gw_sink *sink,
                   const struct gw_identify *ident, volatile int *stop, struct gw_gateway **out,
                   char *err, size_t errlen);

/*
 * Run the loop on the calling thread until gw_gateway_stop() was called and every
 * socket is closed (code 4000), or until no shard can run. Returns 0 after a stop,
 * SH_EAUTH/SH_ECONFIG when every shard failed fatally (gw_gateway_fatal() says
 * why), or another negative code when the loop itself failed.
 */
int gw_gateway_run(struct gw_gateway *gw);

/* Any thread, not async-signal-safe: ask the loop to close every shard and end. */
void gw_gateway_stop(struct gw_gateway *gw);

/* One line saying what to fix after a fatal close, or NULL. */
const char *gw_gateway_fatal(const struct gw_gateway *gw);

/*
 * Free everything; only after gw_gateway_run returned (or was never called). Background work
 * the gateway started (a budget re-read) has ended by then: ident's stop() joined it.
 */
void gw_gateway_free(struct gw_gateway *gw);

/* ---- facts fixed at creation: any thread ------------------------------------------------ */

/* The bot's shard count (every process of the bot uses it in IDENTIFY). */
int gw_gateway_total(const struct gw_gateway *gw);
/* The identify bucket count in use (max_concurrency, or identify_concurrency when set). */
int gw_gateway_max_concurrency(const struct gw_gateway *gw);
/* 1 when shard id runs in this process: it is held here now (cluster mode: between hold and
   release; set when gw_gateway_hold/release is called, before the loop acts on it). */
int gw_gateway_runs(const struct gw_gateway *gw, int shard_id);
/* The shard a guild's events and requests belong to: (guild_id >> 22) % total. */
int gw_gateway_shard_for_guild(const struct gw_gateway *gw, uint64_t guild_id);

/* ---- before gw_gateway_run ---------------------------------------------------------------- */

/*
 * Give shard_id a session to RESUME instead of identifying (from a checkpoint).
 * SH_ENOTFOUND when the shard does not run here, SH_EINVAL for empty or oversize values.
 */
int gw_gateway_seed(struct gw_gateway *gw, int shard_id, const char *session_id,
                    const char *resume_url, uint64_t seq);

/*
 * Replies for the control API: on_dispatch runs on the gateway thread for every dispatch
 * (before it reaches the sink), with d as received. It must be quick and must not block.
 */
struct gw_observer {
    void (*on_dispatch)(void *ud, int shard, const char *t, size_t t_len, uint64_t seq,
                        const char *d, size_t d_len);
    void *ud;
};
void gw_gateway_set_observer(struct gw_gateway *gw, const struct gw_observer *obs);

/* ---- cluster mode: which shards this process holds (any thread) ---------------------------- */

/*
 * With a `cluster` block, gw_gateway_new prepares every shard this process may hold (the
 * config's first/last/ids within the total) but starts none: the cluster's coordination thread
 * holds and releases them. Without it every shard is held from the start, as always.
 * gw_gateway_runs() answers for held shards; snapshots list held shards only.
 */

/* Where a held shard starts: RESUME session_id on resume_url from seq; "" session: IDENTIFY. */
struct gw_resume_point {
    char session_id[128];
    char resume_url[512];
    uint64_t seq;
};

/* 1 when shard_id is one this process may hold (cluster mode) or runs (single mode). */
int gw_gateway_may_hold(const struct gw_gateway *gw, int shard_id);
/*
 * Start holding shard_id: RESUME from *from (NULL or empty session: IDENTIFY through the
 * identify interface). SH_ENOTFOUND when this process may not hold it, SH_EEXIST when held,
 * SH_ECLOSED when stopping, SH_ENOMEM.
 */
int gw_gateway_hold(struct gw_gateway *gw, int shard_id, const struct gw_resume_point *from);
/*
 * Stop holding shard_id at once: close with 4000 (the session stays resumable, never
 * 1000/1001), drop its queued sends, and forget it (it leaves the snapshots). Idempotent;
 * SH_ENOTFOUND when this process may not hold it.
 */
int gw_gateway_release(struct gw_gateway *gw, int shard_id);
/*
 * The same, and then closed(arg, shard_id) runs once, on the gateway thread, when the shard's
 * socket is gone (its close handshake done, or dropped after a grace period; at once when it
 * had none or was not held): a handoff must not let the next owner RESUME while this
 * connection is still open. closed must not block. SH_ENOTFOUND/SH_ENOMEM (closed never runs).
 */
struct gw_released {
    void (*closed)(void *arg, int shard_id);
    void *arg;
};
int gw_gateway_release_then(struct gw_gateway *gw, int shard_id, const struct gw_released *then);
/*
 * Fail static: a held shard whose socket drops may connect again (RESUME or IDENTIFY) only
 * before until_mono_ms (sh_now_ms clock); later it waits, disconnected, until the deadline moves
 * past now again. 0: no deadline (the default).
 */
void gw_gateway_set_lease_deadline(struct gw_gateway *gw, uint64_t until_mono_ms);

/* ---- commands: any thread, carried out on the gateway thread ------------------------------ */

/*
 * Queue a raw gateway payload (`{"op":N,"d":...}`, already JSON) for shard_id. It goes out
 * in order once the shard's session is up (after READY or RESUMED), inside the shard's
 * 120-per-60-s window, and survives reconnects. Returns 0, SH_ENOTFOUND (not run here),
 * SH_ETOOBIG (over 4,096 bytes), SH_EAGAIN (the shard's queue is full), SH_ECLOSED (stopping).
 */
int gw_gateway_send(struct gw_gateway *gw, int shard_id, const char *payload, size_t len);
/*
 * Take back a payload given to gw_gateway_send that has not gone out yet: the first queued
 * payload of shard_id with exactly these bytes leaves the queue (a request that gave up waiting
 * for its reply must not spend the shard's send budget). Nothing happens when it was sent
 * already. Returns 0, SH_ENOTFOUND (not run here) or SH_ENOMEM.
 */
int gw_gateway_withdraw(struct gw_gateway *gw, int shard_id, const char *payload, size_t len);
/* Close shard_id's connection (code 4000) and reconnect: resume=1 keeps the session. */
int gw_gateway_reconnect(struct gw_gateway *gw, int shard_id, int resume);
/*
 * Flow control for delivery: paused=1 stops reading every gateway socket (Discord keeps
 * the events; heartbeats still go out, zombie detection waits), 0 reads again.
 */
void gw_gateway_pause_reading(struct gw_gateway *gw, int paused);

/* ---- status snapshots: any thread, copied under a short lock ------------------------------ */

struct gw_shard_info {
    int id;
    const char *status;   /* one of gw_status_names */
    int latency_ms;       /* heartbeat to ACK; -1 before the first ACK */
    char session_id[128]; /* "" without a session */
    uint64_t seq;         /* last sequence number seen */
    int guilds;
    int guilds_pending; /* unavailable guilds still awaited while loading */
    unsigned identifies, resumes;
    uint64_t last_event_at_ms; /* wall clock, 0 before the first dispatch */
    uint64_t events;           /* dispatches received */
    int queued_sends;          /* payloads waiting to be sent */
};

struct gw_overview {
    char url[512];          /* gateway URL from /gateway/bot */
    int total;              /* the bot's shard count */
    int n_shards;           /* shards run here */
    int recommended_shards; /* /gateway/bot "shards" */
    int max_concurrency;
    int ready, loading, queued, failed; /* shards in those states; the rest are connecting */
    int64_t next_identify_in_ms;        /* -1 when no shard waits to identify */
    int64_t eta_ms;                     /* until every shard should have identified; -1 unknown */
    int session_total, session_remaining;
    int session_reserve;          /* cluster mode: IDENTIFYs stop at this remaining; 0 */
    int identify_stopped;         /* 1 while shards wait because the budget is at its reserve */
    uint64_t session_reset_at_ms; /* wall clock when the identify budget refills, 0 unknown */
    uint64_t started_at_ms;       /* wall clock */
    uint64_t published_at_ms;     /* wall clock of this snapshot */
};

/*
 * Copy the latest snapshot: *ov, and up to cap shards in id order into shards (may be NULL
 * with cap 0). Returns the number of shards this process runs (which may exceed cap).
 */
int gw_gateway_snapshot(struct gw_gateway *gw, struct gw_overview *ov, struct gw_shard_info *shards,
                        int cap);
/* One shard's snapshot. SH_ENOTFOUND when it does not run here. */
int gw_gateway_shard_info(struct gw_gateway *gw, int shard_id, struct gw_shard_info *out);

#endif
