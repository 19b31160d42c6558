/*
 * gateway/envelope.h: scan a gateway payload's envelope without building a tree. Internal to the
 * gateway room (gw__ prefix); other rooms use gateway/gateway.h.
 *
 * The hot path needs only `op`, `t`, `s` and where `d` lies in the buffer. The
 * scanner walks the top-level object once, skipping nested values by bracket and
 * string state (escapes included), accepts the keys in any order, and rejects
 * anything that is not one well-formed JSON object (trailing garbage included;
 * nested values are checked against the JSON grammar, at most 10,000 levels deep).
 * It never allocates, never copies `d`, and writes *env only on success. When d is an object,
 * its top-level `id` and `unavailable` are noted on the way: what guild readiness needs from a
 * multi-megabyte GUILD_CREATE, without a second pass or a tree.
 */
#ifndef SHARDHOOK_GW_ENVELOPE_H
#define SHARDHOOK_GW_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

struct gw_envelope {
    int op;        /* -1 when absent or null */
    const char *t; /* event name without quotes, NULL when absent or null */
    size_t t_len;
    int has_s; /* 1 when s is a number */
    uint64_t s;
    const char *d; /* raw JSON of d as received (may be "null"), NULL when absent */
    size_t d_len;
    /* from d's top level, read on the way (guild readiness): NULL / 0 when absent */
    const char *d_id; /* raw JSON of d.id */
    size_t d_id_len;
    int d_unavailable; /* d.unavailable is true */
};

/*
 * Scan buf[0..len). Returns 0 and fills env, or SH_EPARSE for malformed input
 * (not an object, unterminated string, bad number for op/s, t not a string or
 * null, duplicate envelope keys, trailing bytes other than whitespace).
 * Event names containing escapes are rejected (Discord never sends them).
 */
int gw__envelope_scan(const char *buf, size_t len, struct gw_envelope *env);

/*
 * Best effort on the front of a payload cut short (one over max_payload_bytes): the top-level
 * op, t and s that come before the point where buf[0..len) ends or stops making sense. Fills
 * env (d stays NULL; t points into buf) and returns 0, or SH_EPARSE when buf is not the start
 * of an object.
 */
int gw__envelope_peek(const char *buf, size_t len, struct gw_envelope *env);

/* A snowflake written as a JSON string ("123"): its value, or 0 when it is anything else. */
uint64_t gw_json_snowflake(const char *val, size_t len);

#endif
