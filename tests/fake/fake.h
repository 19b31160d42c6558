/*
 * tests/fake/fake.h: state shared by the fake Discord's source files: options,
 * outgoing messages, gateway connections, sessions and the recorded log. Test code only:
 * nothing outside tests/fake includes it, and it touches no daemon state.
 *
 *   fake_discord.c  main, options, the lws context, REST and the control API
 *   gateway.c       gateway connections and sessions: compression, client payloads, dispatch
 *   events.c        realistic event bodies built with snprintf (no JSON trees on the hot path)
 *   replies.c       answers to ops 4, 8, 31 and 43, and the scripts that shape them
 *   record.c        the log served by GET /_fake/log
 */
#ifndef SHARDHOOK_FAKE_H
#define SHARDHOOK_FAKE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <libwebsockets.h>
#include <zlib.h>
#include <zstd.h>

#include "lib/buf.h"

#define FK_MAX_PAYLOAD 4096                    /* a client payload (Discord's limit) */
#define FK_MAX_QUEUE_BYTES ((size_t)512 << 20) /* one connection's unsent backlog */
#define FK_MAX_BODY ((size_t)1 << 20)          /* control request body */
#define FK_MAX_LOG_JSON ((size_t)512 << 20)    /* GET /_fake/log answer */
#define FK_MAX_RECEIVED 500000                 /* received entries kept in the log */
#define FK_MAX_RECORDS 200000                  /* connection, rest and violation entries */
#define FK_MAX_SESSIONS 4096                   /* sessions kept for RESUME */
#define FK_MAX_BURST 2000000                   /* events in one burst call */
#define FK_MAX_EVENT 65536                     /* one event built by the fake */
#define FK_MAX_SHARDS 65536
#define FK_NONE_INT (-2147483647 - 1) /* "null" for int fields in the log */

struct fk_opts {
    int port;
    const char *host;
    const char *token;
    int shards;
    int max_concurrency;
    long session_total;
    long session_remaining;
    long reset_after_ms;
    long heartbeat_ms;
    long identify_interval_ms;
    int guilds;
    int unavailable_forever;
    long trickle_ms;
    int zlib_split;
    long send_limit;
    long send_window_ms;
    long history;
    long members_window_ms;  /* one all-members request per guild per this (Discord: 30 s) */
    const char *gateway_url; /* /gateway/bot's url instead of this fake's own, or NULL */
    const char *resume_url;  /* READY's resume_gateway_url instead of ws://HOST:PORT/resume */
};

/* One websocket message, shared by reference between a session's history and send queues. */
struct fk_msg {
    unsigned refs;
    unsigned char binary;
    size_t len;
    unsigned char data[]; /* LWS_PRE bytes of headroom, then len bytes */
};
#define FK_MSG_BODY(m) ((m)->data + LWS_PRE)

struct fk_msg *fk_msg_new(size_t len, int binary);
static inline struct fk_msg *fk_msg_ref(struct fk_msg *m)
{
    m->refs++;
    return m;
}
void fk_msg_unref(struct fk_msg *m);

enum fk_compress { FK_PLAIN = 0, FK_ZLIB, FK_ZSTD };

/* A connection as the log shows it; outlives the connection until reset-log. */
struct fk_conn_rec {
    uint64_t id;
    char *path;
    char *query;
    int shard; /* -1: not known yet */
    double opened_ms;
    double closed_ms;      /* < 0: open */
    int close_code;        /* FK_NONE_INT: none */
    const char *closed_by; /* NULL, "client", "server", "drop" */
    const char *reason;    /* a server close's why (static text), or NULL */
};

struct fk_session;

struct fk_conn {
    struct lws *wsi;
    struct fk_conn_rec *rec;
    struct fk_conn *prev, *next; /* live connections, newest first */
    int shard;                   /* -1 until an IDENTIFY names one or a RESUME attaches */
    int authed;                  /* identified or resumed */
    int withhold_ack;            /* -1: follow the shard's setting */
    enum fk_compress comp;
    z_stream z;
    int z_ready;
    ZSTD_CCtx *zc;
    /* outgoing queue: a ring of messages */
    struct fk_msg **q;
    size_t q_head, q_len, q_cap, q_bytes;
    /* incoming reassembly */
    unsigned char rx[FK_MAX_PAYLOAD];
    size_t rx_len;
    int rx_overflow;
    /* send-rate window */
    double win_start;
    long win_count;
    struct fk_session *sess;
    int close_code; /* pending server close, 0: none */
    int drop;       /* pending drop without a close frame */
};

struct fk_session {
    char id[33];
    int shard;
    int total;
    uint64_t seq;
    int ended;            /* the client closed with 1000/1001 */
    int expired;          /* expired by POST /_fake/expire: a RESUME gets op 9 false */
    struct fk_msg **hist; /* ring of plain-JSON events, s = seq - h_len + 1 .. seq */
    size_t h_head, h_len, h_cap;
    struct fk_conn *conn; /* live connection receiving its events, or NULL */
    struct fk_session *next;
};

struct fk_shard {
    struct fk_session *cur;
    int withhold_ack;
    /* POST /_fake/guilds: the GUILD_CREATE bodies a new session of this shard lists in READY and
       sends (an {"id","unavailable":true} entry: listed only); NULL: the generated guilds */
    cJSON *guilds;
};

struct fk_state {
    struct fk_opts o;
    struct lws_context *ctx;
    int port;
    struct fk_conn *conns;
    struct fk_session *sessions; /* newest first */
    int n_sessions;
    struct fk_shard *shards; /* o.shards entries */
    double *bucket_last;     /* o.max_concurrency entries, < 0: never */
    long remaining;
    double reset_at_ms;
    int withhold_all;
    int resume_fail_count; /* the next N valid RESUMEs are closed with 4000 */
    int rest_fail_count;
    int rest_fail_status;
    double rest_fail_retry_after; /* < 0: none */
    int rest_hold_count;          /* the next N calls of /gateway/bot are never answered */
    uint64_t next_conn_id;
    uint64_t burst_id;
    long stream_ms;           /* steady stream period, 0: off (POST /_fake/stream) */
    unsigned char *streaming; /* o.shards flags: this shard's current session gets the stream */
    uint64_t stream_n;        /* events the stream emitted */
};

extern struct fk_state fk;

/* fake_discord.c */
double fk_now_ms(void); /* since start, monotonic */

/* gateway.c */
struct fk_conn *fk_conn_open(struct lws *wsi);
void fk_conn_receive(struct fk_conn *c, const void *in, size_t len, int last);
int fk_conn_writeable(struct fk_conn *c);
void fk_conn_peer_close(struct fk_conn *c, const unsigned char *in, size_t len);
void fk_conn_closed(struct fk_conn *c);
/* Queue a raw gateway payload (plain JSON) on a connection, compressing as it asked. */
int fk_conn_send(struct fk_conn *c, const char *json, size_t len);
/* One websocket message of exactly these bytes, bypassing compression (corrupt streams). */
int fk_conn_send_raw(struct fk_conn *c, const void *data, size_t len, int binary);
void fk_conn_request_close(struct fk_conn *c, int code, int drop);
/* Emit one dispatch to a session (stored, and sent when live); returns its s or 0 on failure. */
uint64_t fk_emit(struct fk_session *s, const char *t, const char *d, size_t dlen);
struct fk_conn *fk_shard_conn(int shard);
struct fk_conn *fk_conn_by_id(uint64_t id);
int fk_conn_withheld(const struct fk_conn *c);
void fk_trickle_tick(void);
/* One event of the steady stream to every streaming shard's current session, live or not. */
void fk_stream_tick(void);
/* Expire the sessions of shard (-1: every shard); their ids go to out as a JSON array. */
int fk_expire(long shard, struct sh_buf *out);
/* Set (guilds an array, taken over) or clear (NULL) shard's scripted guilds (struct fk_shard). */
void fk_set_guilds(int shard, cJSON *guilds);
void fk_budget_refresh(void);

/* events.c: each writes JSON into buf (cap bytes) and returns its length, or -1 if too long. */
uint64_t fk_guild_id(int shard, int total, int index);
int fk_ev_ready(char *buf, size_t cap, const struct fk_session *s);
int fk_ev_guild_create(char *buf, size_t cap, int shard, int total, int index);
int fk_ev_message(char *buf, size_t cap, int shard, int total, uint64_t n, uint64_t salt);
/* A realistic event of a type chosen by k; *t receives its name. */
int fk_ev_trickle(char *buf, size_t cap, int shard, int total, uint64_t k, const char **t);

/* replies.c: answers to ops 4, 8, 31, 43 (each returns 0) and the scripts tests set */
int fk_on_voice_state(struct fk_conn *c, const cJSON *d);
int fk_on_request_members(struct fk_conn *c, const cJSON *d);
int fk_on_soundboard(struct fk_conn *c, const cJSON *d);
int fk_on_channel_info(struct fk_conn *c, const cJSON *d);
/* POST /_fake/members and /_fake/quiet: 0 with the new state as JSON in out, -1 with why. */
int fk_ctl_members(const cJSON *body, char *out, size_t cap);
int fk_ctl_quiet(const cJSON *body, char *out, size_t cap);

/* record.c */
/* The log takes ownership of r; fails (SH_ETOOBIG) when full, leaving r to the caller. */
int fk_rec_conn_add(struct fk_conn_rec *r);
void fk_rec_received(uint64_t conn, int op, const char *payload, size_t len);
void fk_rec_rest(const char *path, int status);
void fk_rec_violation(int shard, const char *what);
/* An IDENTIFY: its bucket, and why it was refused (NULL: accepted, session names the new one). */
void fk_rec_identify(uint64_t conn, int shard, long bucket, const char *refused,
                     const char *session);
/* A RESUME: the session and seq it named, why it was refused (NULL: resumed), events replayed. */
void fk_rec_resume(uint64_t conn, int shard, const char *session, long seq, const char *refused,
                   size_t replayed);
void fk_rec_reset(void);
int fk_rec_json(struct sh_buf *out);
/* Append s as a JSON string literal. */
int fk_json_str(struct sh_buf *out, const char *s);

#endif
