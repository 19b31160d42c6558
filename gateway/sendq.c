/* gateway/sendq.c: the per-connection send queue and rate window of gateway/sendq.h. */
#include <stdlib.h>
#include <string.h>

#include "gateway/sendq.h"
#include "lib/errors.h"

void gw__sendq_init(struct gw_sendq *q)
{
    memset(q, 0, sizeof(*q));
    q->limit = GW_SEND_LIMIT;
    q->window_ms = GW_SEND_WINDOW_MS;
}

void gw__sendq_clear(struct gw_sendq *q)
{
    while (q->q_len)
        gw__sendq_pop(q);
}

void gw__sendq_new_window(struct gw_sendq *q)
{
    q->sent_head = 0;
    q->sent_count = 0;
}

void gw__sendq_reset(struct gw_sendq *q)
{
    gw__sendq_clear(q);
    gw__sendq_new_window(q);
}

static void expire(struct gw_sendq *q, uint64_t now_ms)
{
    while (q->sent_count && q->sent_at[q->sent_head] + (uint64_t)q->window_ms <= now_ms) {
        q->sent_head = (q->sent_head + 1) % GW_SEND_LIMIT;
        q->sent_count--;
    }
}

unsigned gw__sendq_used(const struct gw_sendq *q, uint64_t now_ms)
{
    unsigned n = 0;
    for (unsigned i = 0; i < q->sent_count; i++)
        if (q->sent_at[(q->sent_head + i) % GW_SEND_LIMIT] + (uint64_t)q->window_ms > now_ms)
            n++;
    return n;
}

int gw__sendq_allowed(const struct gw_sendq *q, uint64_t now_ms, int heartbeat, uint64_t *wait_ms)
{
    expire((struct gw_sendq *)q, now_ms);
    int cap = q->limit - (heartbeat ? 0 : GW_SEND_HEARTBEAT_RESERVE);
    if (cap < 1)
        cap = 1;
    if ((int)q->sent_count < cap)
        return 1;
    /* the slot frees when the (count - cap + 1)-th oldest send leaves the window */
    unsigned idx = (q->sent_head + (q->sent_count - (unsigned)cap)) % GW_SEND_LIMIT;
    uint64_t at = q->sent_at[idx] + (uint64_t)q->window_ms;
    *wait_ms = at > now_ms ? at - now_ms : 1;
    return 0;
}

void gw__sendq_record(struct gw_sendq *q, uint64_t now_ms)
{
    expire(q, now_ms);
    if (q->sent_count == GW_SEND_LIMIT) { /* cannot happen when callers ask first */
        q->sent_head = (q->sent_head + 1) % GW_SEND_LIMIT;
        q->sent_count--;
    }
    q->sent_at[(q->sent_head + q->sent_count) % GW_SEND_LIMIT] = now_ms;
    q->sent_count++;
}

static int push_at(struct gw_sendq *q, const char *p, size_t len, int front)
{
    if (len > SH_GW_MAX_SEND_BYTES)
        return SH_ETOOBIG;
    if (q->q_len == GW_SENDQ_MAX)
        return SH_EAGAIN;
    char *copy = malloc(len + 1);
    if (!copy)
        return SH_ENOMEM;
    memcpy(copy, p, len);
    copy[len] = '\0';
    unsigned slot;
    if (front) {
        q->q_head = (q->q_head + GW_SENDQ_MAX - 1) % GW_SENDQ_MAX;
        slot = q->q_head;
    } else {
        slot = (q->q_head + q->q_len) % GW_SENDQ_MAX;
    }
    q->q[slot].data = copy;
    q->q[slot].len = len;
    q->q_len++;
    return SH_OK;
}

int gw__sendq_push(struct gw_sendq *q, const char *p, size_t len)
{
    return push_at(q, p, len, 0);
}

int gw__sendq_push_front(struct gw_sendq *q, const char *p, size_t len)
{
    return push_at(q, p, len, 1);
}

const char *gw__sendq_peek(const struct gw_sendq *q, size_t *len)
{
    if (!q->q_len)
        return NULL;
    *len = q->q[q->q_head].len;
    return q->q[q->q_head].data;
}

void gw__sendq_pop(struct gw_sendq *q)
{
    if (!q->q_len)
        return;
    free(q->q[q->q_head].data);
    q->q[q->q_head].data = NULL;
    q->q_head = (q->q_head + 1) % GW_SENDQ_MAX;
    q->q_len--;
}

int gw__sendq_withdraw(struct gw_sendq *q, const char *p, size_t len)
{
    for (unsigned i = 0; i < q->q_len; i++) {
        unsigned at = (q->q_head + i) % GW_SENDQ_MAX;
        if (q->q[at].len != len || memcmp(q->q[at].data, p, len))
            continue;
        free(q->q[at].data);
        for (unsigned k = i; k + 1 < q->q_len; k++) { /* close the gap: later ones move up */
            unsigned to = (q->q_head + k) % GW_SENDQ_MAX, from = (to + 1) % GW_SENDQ_MAX;
            q->q[to] = q->q[from];
        }
        unsigned last = (q->q_head + q->q_len - 1) % GW_SENDQ_MAX;
        q->q[last].data = NULL;
        q->q[last].len = 0;
        q->q_len--;
        return SH_OK;
    }
    return SH_ENOTFOUND;
}
