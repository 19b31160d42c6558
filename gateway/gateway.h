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

#include "config/config.h"
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

#endif
