/*
 * gateway/shard.h: one shard's connection and session, and the state the gateway
 * loop keeps for all shards. Internal to the gateway room: bridge/ and http/ use
 * gateway/gateway.h.
 *
 * Life of a shard:
 *   queued -> connecting -> handshaking (socket open, waiting for HELLO)
 *          -> identifying (waiting for its identify bucket, then IDENTIFY)
 *             or resuming (RESUME sent at once, on resume_gateway_url)
 *          -> loading (READY seen, guilds still arriving) -> ready
 *   any -> disconnected (socket gone, reconnect scheduled) -> connecting ...
 *   any -> failed (fatal close: 4004, 4010-4014; never reconnects)
 */
#ifndef SHARDHOOK_GW_SHARD_H
#define SHARDHOOK_GW_SHARD_H

#include <libwebsockets.h>
#include <stdatomic.h>
#include <stdint.h>

#include "config/config.h"
#include "gateway/gateway.h"
#include "gateway/inflate.h"
#include "gateway/rest.h"
#include "gateway/sendq.h"
#include "lib/buf.h"

#define GW_STATUS_MAP(X)                                                       \
    X(QUEUED, "queued")                                                        \
    X(CONNECTING, "connecting")                                                \
    X(HANDSHAKING, "handshaking")                                              \
    X(IDENTIFYING, "identifying")                                              \
    X(RESUMING, "resuming")                                                    \
    X(LOADING, "loading")                                                      \
    X(READY, "ready")                                                          \
    X(DISCONNECTED, "disconnected")                                            \
    X(FAILED, "failed")

enum gw_status {
#define GW_STATUS_ENUM_(n, s) GW_##n,
    GW_STATUS_MAP(GW_STATUS_ENUM_)
#undef GW_STATUS_ENUM_
};

const char *gw_status_name(enum gw_status st);

struct gw_shard {
    struct gw_gateway *gw;
    int id;
    enum gw_status status;

    /* connection */
    struct lws *wsi;
    unsigned conn_gen;        /* bumps per connection attempt */
    unsigned lost_gen;        /* the attempt whose loss was handled */
    int established;          /* websocket handshake done */
    struct gw_inflate *z;
    struct sh_buf frame;      /* one websocket message being reassembled */
    int frame_binary;
    int in_message;
    int close_code;           /* >0: close with this code at the next writeable */
    int peer_close_code;      /* code of the server's close frame, 0 if none */
    int reconnect_resume;     /* after this connection ends: 1 resume, 0 identify */
    int self_close;           /* this side started the close */
    int64_t next_delay_ms;    /* >= 0: delay before the next connect, instead of backoff */
    int saw_hello;

    /* session */
    char session_id[128];
    char resume_url[512];
    uint64_t seq;
    int has_seq;
    int resume_attempts;      /* RESUMEs in a row without a READY/RESUMED */
    unsigned reconnect_attempt;

    /* heartbeat */
    uint64_t hb_interval_ms;
    int ack_pending;
    int heartbeat_due;        /* a heartbeat waits for the writeable callback */
    uint64_t hb_sent_ms;
    int latency_ms;           /* -1 until the first ACK */

    /* readiness */
    uint64_t *pending_guilds; /* sorted ids from READY not yet created */
    size_t n_pending;
    int guilds;

    /* counters */
    unsigned identifies, resumes;
    uint64_t last_event_at_ms; /* wall clock */

    struct gw_sendq sendq;

    lws_sorted_usec_list_t sul_heartbeat;
    lws_sorted_usec_list_t sul_connect;  /* delayed (re)connect */
    lws_sorted_usec_list_t sul_identify; /* waiting for the identify bucket */
    lws_sorted_usec_list_t sul_guilds;   /* guild_create_timeout_ms */
    lws_sorted_usec_list_t sul_write;    /* send window reopens */
    lws_sorted_usec_list_t sul_kill;     /* a close that takes too long */
};

struct gw_bucket {
    uint64_t next_slot_ms;     /* the earliest time the next queued identify may be planned */
    uint64_t last_identify_ms; /* when this bucket last sent IDENTIFY (0: never) */
};

struct gw_gateway {
    const struct cfg_config *cfg;
    struct gw_sink sink;
    struct lws_context *ctx;
    struct gw_bot_info bot;
    enum gw_compress compress;
    int total;                 /* shard count of the whole bot */
    struct gw_shard *shards;
    int n_shards;              /* shards run by this process */
    struct gw_bucket *buckets;
    int max_concurrency;
    uint64_t identify_interval_ms;
    int session_remaining;
    struct gw_chunk *pending;  /* events of this service pass */
    unsigned char *txbuf;      /* LWS_PRE + GW_SEND_MAX_PAYLOAD, shared: writes are serial */
    atomic_int stop_requested; /* set by other threads */
    int stopping;
    int done;
    int fatal_rc;
    char fatal[512];
    lws_sorted_usec_list_t sul_stop_deadline;
};

/* shard.c */
int gw_shard_init(struct gw_shard *s, struct gw_gateway *gw, int id);
void gw_shard_destroy(struct gw_shard *s);
/* Plan the first connection (identify through the bucket, or resume with a session). */
void gw_shard_start(struct gw_shard *s);
/* Close the socket with 4000 and do not reconnect. */
void gw_shard_shutdown(struct gw_shard *s);
/* The IDENTIFY payload for shard_id into out (cap bytes). SH_ETOOBIG when it does not fit. */
int gw_shard_build_identify(const struct gw_gateway *gw, int shard_id, char *out, size_t cap,
                            size_t *len);
int gw_shard_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len);

/* gateway.c, for shard.c */
/* Plan an IDENTIFY connection no earlier than not_before_ms; returns the slot time. */
uint64_t gw_gateway_identify_slot(struct gw_gateway *gw, int shard_id, uint64_t not_before_ms);
/* When the shard's bucket next allows an IDENTIFY (0 = now). */
uint64_t gw_gateway_identify_wait(struct gw_gateway *gw, int shard_id, uint64_t now_ms);
void gw_gateway_identify_sent(struct gw_gateway *gw, int shard_id, uint64_t now_ms);
/* Called when a shard failed fatally; ends the run when none can run. */
void gw_gateway_shard_failed(struct gw_gateway *gw, struct gw_shard *s, int code,
                             const char *why);
/* Append one dispatch to the current pass's chunk. */
void gw_gateway_emit(struct gw_gateway *gw, struct gw_shard *s, const char *t, size_t t_len,
                     uint64_t seq, const char *d, size_t d_len, uint64_t now_ms);

#endif
