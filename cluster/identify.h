/*
 * cluster/identify.h: rule 2 through Redis: the gw_identify ops (gateway/gateway.h) that the
 * gateway thread calls, answered from Redis by the coordination thread without the gateway ever
 * waiting on it. wait() posts a request into a table and answers "ask again in 50 ms" until the
 * coordination thread, on its loop pass (cl__identify_serve), has run the `identify` script for
 * it: a granted slot answers 0 once, a busy one its PTTL plus jitter, a budget at its reserve
 * GW_IDENTIFY_REFUSED (and take() refuses until a refresh). plan()/stamp() spread shards over
 * buckets locally (a wrapped gw_identify_local, so the gateway's ETA stays meaningful), and its
 * /gateway/bot re-read feeds the cluster's `budget` hash when the reset time passed. Internal to
 * cluster/.
 */
#ifndef SHARDHOOK_CL_IDENTIFY_H
#define SHARDHOOK_CL_IDENTIFY_H

#include <stdint.h>

#include "cluster/redis.h"
#include "config/config.h"
#include "gateway/gateway.h"

struct cl__identify;

/*
 * The identify table for cfg (its token names the keys, cluster_node the slot holder,
 * testing_identify_interval_ms + 500 is the slot's PX). cfg must outlive it. 0 or SH_ENOMEM.
 */
int cl__identify_new(const struct cfg_config *cfg, struct cl__identify **out);
/* The ops for the gateway (valid until cl__identify_free). */
void cl__identify_ops(struct cl__identify *id, struct gw_identify *out);
/* The bot's shard count (the reserve is max(total, 5 % of the budget)); before the gateway runs. */
void cl__identify_set_total(struct cl__identify *id, int total);
/*
 * wake(arg) runs (on the gateway thread, briefly) whenever a request waits for the coordination
 * thread, so that its loop may run cl__identify_serve sooner. Optional; set before use.
 */
void cl__identify_set_wake(struct cl__identify *id, void (*wake)(void *arg), void *arg);
/* 1 when a request waits for cl__identify_serve. Any thread. */
int cl__identify_pending(struct cl__identify *id);
/*
 * Coordination thread, each loop pass while Redis is connected: push a budget the gateway read,
 * re-read `budget` when asked, run `identify` for waiting shards, write lost sessions to `gaps`.
 * 0, or SH_ENET when the connection broke (requests stay queued; call again once reconnected).
 */
int cl__identify_serve(struct cl__identify *id, struct cl__redis *r);
/*
 * The budget as Redis last said (reset_at_ms on the monotonic clock as gw_budget has it; total 0
 * unknown) and whether the reserve stopped IDENTIFYs (for cl_status). Any thread.
 */
void cl__identify_status(struct cl__identify *id, struct gw_budget *out, int *stopped,
                         uint64_t *reset_at_wall_ms);
/* After gw_gateway_free of the gateway that used it (stop() ends the wrapped refresh). */
void cl__identify_free(struct cl__identify *id);

#endif
