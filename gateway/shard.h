/*
 * gateway/shard.h: one shard's connection and session, and the state the gateway
 * loop keeps for all shards. Internal to the gateway room (its functions carry the
 * gw__ prefix): bridge/ and http/ use gateway/gateway.h.
 *
 * Life of a shard:
 *   queued -> connecting -> handshaking (socket open, waiting for HELLO)
 *          -> identifying (waiting for its identify bucket, then IDENTIFY)
 *             or resuming (RESUME sent at once, on resume_gateway_url)
 *          -> loading (READY seen, guilds still arriving) -> ready
 *   any -> disconnected (socket gone, reconnect scheduled) -> connecting ...
 *   any -> failed (fatal close: 4004, 4010-4014; never reconnects)
 *
 * Held and unheld (cluster mode): a prepared shard that is not held has no connection, no
 * inflate context and no send queue (gw__shard_prepare allocates them on hold, gw__shard_release
 * frees them), and is left out of the snapshots.
 */
#ifndef SHARDHOOK_GW_SHARD_H
#define SHARDHOOK_GW_SHARD_H

#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "config/config.h"
#include "gateway/gateway.h"
#include "gateway/inflate.h"
#include "gateway/rest.h"
#include "gateway/sendq.h"
#include "lib/buf.h"
#include "lib/metrics.h"
#include "lib/queue.h"

struct gw_shard {
    struct gw_gateway *gw;
    int id;
    enum gw_status status;
    int held;        /* this process holds it (gateway thread's view) */
    atomic_int runs; /* held, as other threads see it: set by hold/release at the call */
    int lease_wait;  /* held back by the lease deadline (logged once per hold-up) */

    /* connection */
    struct lws *wsi;   /* the live connection, NULL once it ended (see wsi_gone) */
    unsigned conn_gen; /* bumps per connection attempt */
    unsigned lost_gen; /* the attempt whose loss was handled */
    int established;   /* websocket handshake done */
    unsigned rx_pass;  /* the service pass rx_pass_bytes counts for */
    size_t rx_pass_bytes;
    struct gw_inflate *z;
    int close_code;        /* >0: close with this code at the next writeable */
    int peer_close_code;   /* code of the server's close frame, 0 if none */
    int reconnect_resume;  /* after this connection ends: 1 resume, 0 identify */
    int self_close;        /* this side started the close */
    int64_t next_delay_ms; /* >= 0: delay before the next connect, instead of backoff */
    int saw_hello;

    /* session */
    char session_id[128];
    char resume_url[512];
    uint64_t seq;
    int has_seq;
    int resume_attempts; /* RESUMEs in a row without a READY/RESUMED */
    uint64_t sless_n;    /* dispatches without s since the last s (their idempotency keys) */
    unsigned reconnect_attempt;

    /* heartbeat */
    uint64_t hb_interval_ms;
    int ack_pending;
    int heartbeat_due; /* a heartbeat waits for the writeable callback */
    uint64_t hb_sent_ms;
    int latency_ms; /* -1 until the first ACK */

    /* readiness */
    uint64_t *pending_guilds; /* sorted ids from READY not yet created */
    size_t n_pending;
    int guilds;

    /* counters */
    unsigned identifies, resumes;
    uint64_t last_event_at_ms; /* wall clock */
    uint64_t events;

    /* sending: IDENTIFY/RESUME in their own slot, then heartbeats, then user payloads
       (held until the session is up, kept across reconnects) */
    char *handshake;
    size_t handshake_len;
    int handshake_identify;  /* the handshake slot holds an IDENTIFY */
    int budget_token;        /* one session of the daily budget is reserved for this shard */
    struct gw_sendq *sendq;  /* while held */
    atomic_int queued_sends; /* user payloads accepted and not yet written (any thread reads) */
    uint64_t identify_at_ms; /* planned connect for an IDENTIFY while queued, 0 otherwise */
    int budget_hold;         /* waiting for the daily identify budget to refill */
    char *presence;          /* d of the latest op 3 sent through the API, for IDENTIFY */

    lws_sorted_usec_list_t sul_heartbeat;
    lws_sorted_usec_list_t sul_connect;  /* delayed (re)connect */
    lws_sorted_usec_list_t sul_identify; /* waiting for the identify bucket */
    lws_sorted_usec_list_t sul_guilds;   /* guild_create_timeout_ms */
    lws_sorted_usec_list_t sul_write;    /* send window reopens */
    lws_sorted_usec_list_t sul_kill;     /* a close that takes too long */
    lws_sorted_usec_list_t sul_open;     /* connect_timeout_ms: TCP, TLS and upgrade */
};

/* A released shard's socket still closing, and who waits for it to be gone. */
struct gw_orphan {
    struct lws *wsi;
    int shard;
    struct gw_released then;
    uint64_t deadline_ms; /* told then even if libwebsockets never reports the end */
};

struct gw_cmd {
    struct sh_qnode node;
    int kind; /* GW_CMD_* in gateway.c */
    int shard;
    int arg;
    size_t len;
    char data[];
};

struct gw_gateway {
    const struct cfg_config *cfg;
    struct gw_sink sink;
    struct lws_context *ctx;
    struct gw_bot_info bot;
    enum gw_compress compress;
    int total; /* shard count of the whole bot */
    struct gw_shard *shards;
    int n_shards; /* shards this process may hold (all of them held in single mode) */
    int cluster;  /* cfg->cluster: shards start unheld */
    _Atomic uint64_t lease_until; /* gw_gateway_set_lease_deadline's, 0: none */
    struct gw_orphan *orphans;    /* sockets of released shards still closing, with their then */
    size_t n_orphans, cap_orphans;
    lws_sorted_usec_list_t sul_orphans; /* the earliest orphan's grace runs out */
    struct gw_identify ident; /* identify slots and the session budget (bridge/main.c's) */
    int max_concurrency;
    struct gw_chunk *pending;  /* events of this service pass */
    unsigned pass_no;          /* counts service passes */
    size_t pass_rx_bytes;      /* websocket bytes received in this service pass ... */
    size_t pass_rx_max;        /* ... and the most of them one shard received */
    uint64_t paused_from_ms;   /* the pause before this pass began then (0: no pause) ... */
    uint64_t resumed_ms;       /* ... and ended then */
    unsigned char *txbuf;      /* LWS_PRE + SH_GW_MAX_SEND_BYTES, shared: writes are serial */
    atomic_int stop_requested; /* set by other threads */
    int stopping;
    int done;
    struct gw_observer observer;
    struct sh_queue cmds; /* struct gw_cmd: other threads push, the loop takes */
    atomic_int pause_requested;
    int paused;                /* applied to the sockets by the loop */
    pthread_mutex_t snap_lock; /* guards the snapshot below */
    struct gw_overview snap_ov;
    struct gw_shard_info *snap_shards; /* held shards only, in id order ... */
    int snap_n;                        /* ... this many */
    int snap_dirty;                    /* something changed since the last publish */
    uint64_t started_wall_ms;
    uint64_t last_progress_ms;
    int all_ready_logged;
    int budget_refreshing;           /* ident.ops->refresh is under way (its done is not in yet) */
    lws_sorted_usec_list_t sul_tick; /* publish + progress, every 250 ms */
    lws_sorted_usec_list_t sul_budget; /* the identify budget refills */
    int fatal_rc;
    char fatal[512];
    lws_sorted_usec_list_t sul_stop_deadline;
    struct sh_metric *m_skipped; /* payloads over max_payload_bytes skipped */
    struct sh_metric *m_closes;  /* closes the gateway sent, by code */
};

/* shard.c */
/* Prepare shard id, unheld: nothing allocated (see gw__shard_prepare). */
void gw__shard_init(struct gw_shard *s, struct gw_gateway *gw, int id);
void gw__shard_destroy(struct gw_shard *s);
/* What a held shard needs (its inflate context and send queue): 0 or SH_ENOMEM. */
int gw__shard_prepare(struct gw_shard *s);
/* Hold a prepared shard: RESUME from *from (NULL or "" session: IDENTIFY), then start it. */
void gw__shard_hold(struct gw_shard *s, const struct gw_resume_point *from);
/* Stop holding: close with 4000, cancel timers, drop queued sends, forget the session. */
void gw__shard_release(struct gw_shard *s, const struct gw_released *then);
/* A connection let go by a release ended (WSI_DESTROY of a shardless wsi): run its then. */
void gw__orphan_gone(struct gw_gateway *gw, struct lws *wsi);
/* The gateway is freed (its context destroyed): every release still waiting is told now. */
void gw__orphans_flush(struct gw_gateway *gw);
/* The lease deadline moved: a shard it held back tries to connect again. */
void gw__shard_lease_moved(struct gw_shard *s);
/* Plan the first connection (identify through the bucket, or resume with a session). */
void gw__shard_start(struct gw_shard *s);
/* Close the socket with 4000 and do not reconnect. */
void gw__shard_shutdown(struct gw_shard *s);
/* The IDENTIFY payload for shard_id into out (cap bytes). SH_ETOOBIG when it does not fit. */
int gw__shard_build_identify(const struct gw_gateway *gw, int shard_id, char *out, size_t cap,
                             size_t *len);
int gw__shard_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len);

/* gateway.c, for shard.c: identify slots and the budget go through gw->ident */
/* Plan an IDENTIFY connection no earlier than not_before_ms; returns the slot time. */
uint64_t gw__identify_slot(struct gw_gateway *gw, int shard_id, uint64_t not_before_ms);
/* When the shard's bucket next allows an IDENTIFY (0 = now). */
uint64_t gw__identify_wait(struct gw_gateway *gw, int shard_id, uint64_t now_ms);
/* An IDENTIFY was queued (reserve the bucket) or written (stamp it): both set the bucket time. */
void gw__identify_stamp(struct gw_gateway *gw, int shard_id, uint64_t now_ms);
/* An IDENTIFY reached the socket: spend the shard's budget token. */
void gw__identify_sent(struct gw_gateway *gw, struct gw_shard *s, uint64_t now_ms);
/* The shard's connection ended before its IDENTIFY was written: give the token back. */
void gw__budget_return(struct gw_gateway *gw, struct gw_shard *s);
/*
 * wait() answered GW_IDENTIFY_REFUSED: give back the shard's budget token and hold it as when
 * take() fails (its connection is closed by the caller and not reconnected).
 */
void gw__budget_refused(struct gw_gateway *gw, struct gw_shard *s);
/* Called when a shard failed fatally; ends the run when none can run. */
void gw__shard_failed(struct gw_gateway *gw, struct gw_shard *s, int code, const char *why);
/*
 * When a payload handled at now reached the socket, as far as the gateway can tell: right after
 * a coalescing pause, the start of that pause (it may have waited in the socket all along), now
 * otherwise. Batch deadlines count from it, so the pause comes out of max_batch_delay_ms.
 */
uint64_t gw__rx_ms(const struct gw_gateway *gw, uint64_t now);
/* Append one dispatch to the current pass's chunk; session: what a READY opened, else NULL. */
void gw__emit(struct gw_gateway *gw, struct gw_shard *s, const char *t, size_t t_len, uint64_t seq,
              const char *d, size_t d_len, uint64_t now_ms, const struct gw_session *session);
/*
 * Before an IDENTIFY connection: 1 when the daily budget is spent and the gateway holds the
 * shard until it refills (it restarts the shard then), 0 to go ahead.
 */
int gw__budget_hold(struct gw_gateway *gw, struct gw_shard *s);
/* shard.c: a user payload is accepted into the shard's queue (gateway thread). */
void gw__shard_queue_user(struct gw_shard *s, const char *p, size_t len);
/* shard.c: reconnect on request; resume=0 drops the session first. */
void gw__shard_reconnect(struct gw_shard *s, int resume);
/* shard.c: the shard's snapshot (gateway thread). */
void gw__shard_fill_info(const struct gw_shard *s, struct gw_shard_info *out);

#endif
