/*
 * gateway/sendq.h: what one gateway connection may send, and when. Internal to the
 * gateway room (gw__ prefix); other rooms use gateway/gateway.h.
 *
 * Discord allows 120 payloads per connection per 60 s (over it: close 4008) and
 * 4,096 bytes per payload (over it: close 4002). The queue refuses oversize
 * payloads before they reach the socket, holds others in order (bounded), and
 * keeps a few slots of every window for heartbeats, which are built at send time
 * and never queued. Owned by one shard on the gateway thread; not thread-safe.
 */
#ifndef SHARDHOOK_GW_SENDQ_H
#define SHARDHOOK_GW_SENDQ_H

#include <stddef.h>
#include <stdint.h>

#include "lib/discord.h" /* SH_GW_MAX_SEND_BYTES: the cap on one payload */

#define GW_SEND_LIMIT 120
#define GW_SEND_WINDOW_MS 60000
#define GW_SEND_HEARTBEAT_RESERVE 5
#define GW_SENDQ_MAX 512

struct gw_sendq {
    uint64_t sent_at[GW_SEND_LIMIT]; /* ring of the last sends, oldest at head */
    unsigned sent_head, sent_count;
    struct {
        char *data;
        size_t len;
    } q[GW_SENDQ_MAX];
    unsigned q_head, q_len;
    int limit;     /* GW_SEND_LIMIT unless a test lowers it */
    int window_ms; /* GW_SEND_WINDOW_MS unless a test lowers it */
};

void gw__sendq_init(struct gw_sendq *q);
/* Drop queued payloads and forget the window. */
void gw__sendq_reset(struct gw_sendq *q);
/* Forget the window only (a new connection); queued payloads stay. */
void gw__sendq_new_window(struct gw_sendq *q);
/* Drop queued payloads but keep the window accounting. */
void gw__sendq_clear(struct gw_sendq *q);

/* Queue a copy of p. SH_ETOOBIG over 4,096 bytes, SH_EAGAIN when full; q unchanged then. */
int gw__sendq_push(struct gw_sendq *q, const char *p, size_t len);
/* Queue in front (an IDENTIFY or RESUME must go before anything queued). */
int gw__sendq_push_front(struct gw_sendq *q, const char *p, size_t len);

/*
 * May a payload go now? heartbeat=1 may use the reserved slots. Returns 1, or 0
 * with *wait_ms set to when a slot frees.
 */
int gw__sendq_allowed(const struct gw_sendq *q, uint64_t now_ms, int heartbeat, uint64_t *wait_ms);
/* Record a send at now_ms. */
void gw__sendq_record(struct gw_sendq *q, uint64_t now_ms);
/* Sends within the window ending at now_ms. */
unsigned gw__sendq_used(const struct gw_sendq *q, uint64_t now_ms);

/* Remove the first queued payload equal to p (order kept). SH_OK, or SH_ENOTFOUND. */
int gw__sendq_withdraw(struct gw_sendq *q, const char *p, size_t len);

/* The oldest queued payload, or NULL. */
const char *gw__sendq_peek(const struct gw_sendq *q, size_t *len);
void gw__sendq_pop(struct gw_sendq *q);
static inline unsigned gw__sendq_pending(const struct gw_sendq *q)
{
    return q->q_len;
}

#endif
