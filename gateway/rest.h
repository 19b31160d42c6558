/*
 * gateway/rest.h: Discord REST discovery, `GET {api_base}/gateway/bot`. Internal to the
 * gateway room (gw__ prefix).
 *
 * Blocking (libcurl easy); called at start-up and when the session budget must be
 * refreshed, never on the hot path. Retries 429 (honouring retry_after) and 5xx or
 * connection errors with capped full-jitter backoff; a 401 is final (SH_EAUTH).
 */
#ifndef SHARDHOOK_GW_REST_H
#define SHARDHOOK_GW_REST_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/gateway.h" /* struct gw_bot_info */

/*
 * Fetch the bot gateway info. `stop` (may be NULL) is polled between retries and
 * while a request waits for its answer (about once a second), so a stop ends the call
 * within a second. Returns 0, SH_EAUTH (401: the token is wrong), SH_EPARSE
 * (answer not understood), SH_ECLOSED (stopped), or SH_EHTTP/SH_ENET after
 * max_attempts. err gets one line without the token.
 */
int gw__rest_gateway_bot(const char *api_base, const char *token, int max_attempts,
                         volatile int *stop, struct gw_bot_info *out, char *err, size_t errlen);

/* Parse a /gateway/bot answer body (exposed for tests). */
int gw__rest_parse_bot(const char *body, size_t len, struct gw_bot_info *out);

#endif
