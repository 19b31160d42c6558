/*
 * gateway/envelope.h: scan a gateway payload's envelope without building a tree.
 *
 * The hot path needs only `op`, `t`, `s` and where `d` lies in the buffer. The
 * scanner walks the top-level object once, skipping nested values by bracket and
 * string state (escapes included), accepts the keys in any order, and rejects
 * anything that is not one well-formed JSON object (trailing garbage included;
 * nested values are checked against the JSON grammar, at most 10,000 levels deep).
 * It never allocates, never copies `d`, and writes *env only on success. The same walk finds
 * named members of any object (gw_json_members).
 */
#ifndef SHARDHOOK_GW_ENVELOPE_H
#define SHARDHOOK_GW_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

struct gw_envelope {
    int op;             /* -1 when absent or null */
    const char *t;      /* event name without quotes, NULL when absent or null */
    size_t t_len;
    int has_s;          /* 1 when s is a number */
    uint64_t s;
    const char *d;      /* raw JSON of d as received (may be "null"), NULL when absent */
    size_t d_len;
};

/*
 * Scan buf[0..len). Returns 0 and fills env, or SH_EPARSE for malformed input
 * (not an object, unterminated string, bad number for op/s, t not a string or
 * null, duplicate envelope keys, trailing bytes other than whitespace).
 * Event names containing escapes are rejected (Discord never sends them).
 */
int gw_envelope_scan(const char *buf, size_t len, struct gw_envelope *env);

/* A member to find in an object: name (raw bytes) in; its raw JSON value out. */
struct gw_json_member {
    const char *name;
    size_t name_len;
    const char *val; /* NULL when absent; the last one when repeated */
    size_t val_len;
};

/*
 * Find the members named in m[0..n) among the top-level members of the JSON object
 * buf[0..len), in one walk with the same checks as gw_envelope_scan and without a tree: what
 * the hot path reads from a multi-megabyte GUILD_CREATE. Returns 0 or SH_EPARSE.
 */
int gw_json_members(const char *buf, size_t len, struct gw_json_member *m, size_t n);

/* A snowflake written as a JSON string ("123"): its value, or 0 when it is anything else. */
uint64_t gw_json_snowflake(const char *val, size_t len);

#endif
