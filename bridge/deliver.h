/*
 * bridge/deliver.h: the delivery thread: takes event chunks from the gateway sink
 * and POSTs them to every webhook whose `events` patterns match.
 *
 * This is the seam where batching across chunks, retries with dead-lettering,
 * the disk spool, flow control and checkpoints plug in. Today each chunk becomes
 * at most a few batches per webhook (split at max_batch_events/max_batch_bytes),
 * signed with Standard Webhooks headers, posted in order, and retried with
 * capped full-jitter backoff until acknowledged (2xx) or the stop deadline.
 */
#ifndef SHARDHOOK_BR_DELIVER_H
#define SHARDHOOK_BR_DELIVER_H

#include <stdint.h>

#include "config/config.h"
#include "gateway/sink.h"

struct br_delivery;

int br_delivery_new(const struct cfg_config *cfg, struct br_delivery **out);
/* The sink to hand to the gateway; pushes are thread-safe. */
struct gw_sink br_delivery_sink(struct br_delivery *d);
int br_delivery_start(struct br_delivery *d);
/*
 * Deliver what is queued for at most timeout_ms more, then end the thread.
 * Returns the number of events left undelivered (0 when all were acknowledged).
 */
uint64_t br_delivery_stop(struct br_delivery *d, int timeout_ms);
void br_delivery_free(struct br_delivery *d);

#endif
