/*
 * gateway/envelope.h: scan a gateway payload's envelope without building a tree.
 *
 * The hot path needs only `op`, `t`, `s` and where `d` lies in the buffer. The
 * scanner walks the top-level object once, skipping nested values by bracket and
 * string state (escapes included), accepts the keys in any order, and rejects
 * anything that is not one well-formed JSON object (trailing garbage included;
 * nested values are checked against the JSON grammar, at most 10,000 levels deep).
 * It never allocates, never copies `d`, and writes *env only on success.
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

#endif
