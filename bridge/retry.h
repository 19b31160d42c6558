/*
 * bridge/retry.h: what to do after one webhook attempt: which answers are retried, how
 * long to wait (exponential backoff with full jitter, or the receiver's Retry-After),
 * and parsing Retry-After in both of its forms (delay-seconds or an HTTP date).
 * Pure functions: no state, no I/O.
 */
#ifndef SHARDHOOK_BR_RETRY_H
#define SHARDHOOK_BR_RETRY_H

#include <stdint.h>

/* The longest Retry-After the parser reports; a webhook's retry_after_max_ms caps it further. */
#define BR_RETRY_AFTER_MAX_MS (3600u * 1000u)

enum br_outcome {
    BR_ACK = 0, /* 2xx */
    BR_RETRY,   /* connection error, timeout, 408, 429, 5xx */
    BR_DEAD,    /* any other status: dead-letter */
};

/* status 0 means no HTTP answer (connection error or timeout). */
enum br_outcome br_classify(long status);

/*
 * Parse a Retry-After value: delay-seconds ("120") or an IMF-fixdate / RFC 850 / asctime
 * date, relative to now_wall_ms (a date in the past gives 0). Writes milliseconds into *out_ms,
 * capped at BR_RETRY_AFTER_MAX_MS. Returns 0, or SH_EINVAL for anything else (out unchanged).
 */
int br_retry_after_parse(const char *value, uint64_t now_wall_ms, uint64_t *out_ms);

/*
 * The least wait after attempt number `attempt` (from 0) failed when the receiver sent a
 * Retry-After: half the backoff ceiling min(cap_ms, base_ms * 2^attempt). A Retry-After of 0
 * or a date in the past never makes retries faster than this floor.
 */
uint64_t br_retry_floor_ms(unsigned attempt, uint64_t base_ms, uint64_t cap_ms);

/*
 * The wait before attempt number `attempt + 1` after `attempt` (from 0) failed. Without a
 * Retry-After (retry_after_ms < 0): a full-jitter draw in [0, min(cap_ms, base_ms * 2^attempt)].
 * With one: retry_after_ms capped at retry_after_max_ms, and never below br_retry_floor_ms().
 */
uint64_t br_retry_delay_ms(unsigned attempt, uint64_t base_ms, uint64_t cap_ms,
                           int64_t retry_after_ms, uint64_t retry_after_max_ms);

#endif
