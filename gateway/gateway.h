/*
 * gateway/gateway.h: the gateway room's public face.
 *
 * One gw_gateway holds every shard of this process on one libwebsockets context,
 * served by one thread (the one that calls gw_gateway_run). Other threads may
 * only call gw_gateway_stop (and, later, post commands and read snapshots); they
 * never touch shard state. Dispatches leave through the gw_sink given at creation.
 */
#ifndef SHARDHOOK_GW_GATEWAY_H
#define SHARDHOOK_GW_GATEWAY_H

#include <stddef.h>

#include <stdint.h>

#include "config/config.h"
#include "gateway/rest.h"
#include "gateway/sink.h"

struct gw_gateway;

/*
 * Discover the gateway (`/gateway/bot`, blocking, retried), decide the shard set
 * and prepare every shard. `stop` (may be NULL) is polled while discovery
 * retries. On failure returns a negative code and writes one line into err that
 * says what to fix (SH_EAUTH for a bad token).
 */
int gw_gateway_new(const struct cfg_config *cfg, const struct gw_sink *sink, volatile int *stop,
                   struct gw_gateway **out, char *err, size_t errlen);

/*
 * Run the loop on the calling thread until gw_gateway_stop() was called and every
 * socket is closed (code 4000), or until no shard can run. Returns 0 after a stop,
 * SH_EAUTH/SH_ECONFIG when every shard failed fatally (gw_gateway_fatal() says
 * why), or another negative code when the loop itself failed.
 */
int gw_gateway_run(struct gw_gateway *gw);

/* Thread-safe and async-signal-unsafe: ask the loop to close every shard and end. */
void gw_gateway_stop(struct gw_gateway *gw);

/* One line saying what to fix after a fatal close, or NULL. */
const char *gw_gateway_fatal(const struct gw_gateway *gw);

/* Free everything; only after gw_gateway_run returned (or was never called). */
void gw_gateway_free(struct gw_gateway *gw);

/* ---- facts fixed at creation: any thread ------------------------------------------------ */

/* The bot's shard count (every process of the bot uses it in IDENTIFY). */
int gw_gateway_total(const struct gw_gateway *gw);
/* 1 when shard id runs in this process. */
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

/*
 * Every value gw_shard_info.status takes, in state-machine order (from GW_STATUS_MAP in
 * gateway/shard.h): gw_status_names[0] is "queued", the status before the first connect.
 */
#define GW_STATUS_COUNT 9
extern const char *const gw_status_names[GW_STATUS_COUNT];

struct gw_shard_info {
    int id;
    const char *status;        /* one of gw_status_names */
    int latency_ms;            /* heartbeat to ACK; -1 before the first ACK */
    char session_id[128];      /* "" without a session */
    uint64_t seq;              /* last sequence number seen */
    int guilds;
    int guilds_pending;        /* unavailable guilds still awaited while loading */
    unsigned identifies, resumes;
    uint64_t last_event_at_ms; /* wall clock, 0 before the first dispatch */
    uint64_t events;           /* dispatches received */
    int queued_sends;          /* payloads waiting to be sent */
};

struct gw_overview {
    char url[512];             /* gateway URL from /gateway/bot */
    int total;                 /* the bot's shard count */
    int n_shards;              /* shards run here */
    int recommended_shards;    /* /gateway/bot "shards" */
    int max_concurrency;
    int ready, loading, queued, failed; /* shards in those states; the rest are connecting */
    int64_t next_identify_in_ms; /* -1 when no shard waits to identify */
    int64_t eta_ms;            /* until every shard should have identified; -1 unknown */
    int session_total, session_remaining;
    uint64_t session_reset_at_ms; /* wall clock when the identify budget refills, 0 unknown */
    uint64_t started_at_ms;    /* wall clock */
    uint64_t published_at_ms;  /* wall clock of this snapshot */
};

/*
 * Copy the latest snapshot: *ov, and up to cap shards in id order into shards (may be NULL
 * with cap 0). Returns the number of shards this process runs (which may exceed cap).
 */
int gw_gateway_snapshot(struct gw_gateway *gw, struct gw_overview *ov,
                        struct gw_shard_info *shards, int cap);
/* One shard's snapshot. SH_ENOTFOUND when it does not run here. */
int gw_gateway_shard_info(struct gw_gateway *gw, int shard_id, struct gw_shard_info *out);

#endif
