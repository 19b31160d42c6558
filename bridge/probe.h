/*
 * bridge/probe.h: `shardhook --probe URL`, a health check for container engines and
 * supervisors that have no curl: one GET, and an exit code. Owns nothing once it returns.
 */
#ifndef SHARDHOOK_BR_PROBE_H
#define SHARDHOOK_BR_PROBE_H

/* The environment variable whose value, when set and not empty, goes out as
 * `Authorization: Bearer <value>` (the `http.token`, for routes that need it). */
#define BR_PROBE_TOKEN_ENV "SHARDHOOK_API_TOKEN"

/*
 * GET url (http or https) within timeout_ms, no proxy, no redirect followed, the body
 * discarded. Returns the process exit code: 0 when the answer is 2xx, else 1 after one line
 * on stderr saying why (the status, or the transfer error); the token is never printed.
 */
int br_probe(const char *url, long timeout_ms);

#endif
