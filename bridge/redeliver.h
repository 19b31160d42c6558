/*
 * bridge/redeliver.h: sending dead letters again (bridge/ only; deliver.c drives it). Per
 * webhook, one redelivery stream: the dead-letter ids asked for, in the order they were asked
 * (each request's ids oldest first), sent one at a time beside the webhook's live batches,
 * never waiting for them and never counted in its max_in_flight. Each is signed afresh with its
 * original webhook-id; an acknowledged one leaves the dead-letter folder, a refused one stays
 * with its new answer, a retryable failure is retried with the webhook's backoff before the
 * stream moves on. Redelivered batches never touch the ledger: their events were settled when
 * they were dead-lettered. Owns the streams and the queue of requests from other threads.
 */
#ifndef SHARDHOOK_BR_REDELIVER_H
#define SHARDHOOK_BR_REDELIVER_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/deadletter.h"
#include "bridge/hook.h"
#include "bridge/hookauth.h"
#include "bridge/request.h"

/* What the streams use of the delivery thread (pointers that outlive them). */
struct br__redeliver_env {
    CURLM *multi;
    struct br_request_pool *reqs;
    struct br_hookauth_set *auth;
    struct br__hook *hooks;
    size_t n_hooks;
    const char *dir; /* the dead-letter folder */
};

struct br__redeliver;

int br__redeliver_new(const struct br__redeliver_env *env, struct br__redeliver **out);
/* Removes its requests from the multi handle first. NULL is ignored. */
void br__redeliver_free(struct br__redeliver *rd);

/* Any thread: queue ids (oldest first) of webhook; the caller wakes the delivery thread.
 * Ids already queued or on their way are not queued twice. 0 or SH_ENOMEM (nothing queued). */
int br__redeliver_post(struct br__redeliver *rd, size_t webhook, const char (*ids)[BR_DEAD_ID_MAX],
                       size_t n);

/* Delivery thread: take what was posted and start what may go (nothing new while stopping).
 * Returns the earliest time a retry waits for, UINT64_MAX when none. */
uint64_t br__redeliver_pass(struct br__redeliver *rd, uint64_t now, int stopping);

/* Delivery thread, for a finished request: 1 when it was a redelivery (handled and released). */
int br__redeliver_finish(struct br__redeliver *rd, struct br_request *r, CURLcode result,
                         uint64_t now);

#endif
