/*
 * bridge/hookauth.h: each webhook's signing secrets and extra request headers, as the
 * delivery thread reads them per attempt, replaceable while it runs (SIGHUP rotates a key).
 *
 * The set holds its own copies. Any thread may queue a replacement (br_hookauth_update);
 * the delivery thread picks every queued one up on its next br_hookauth_current call, so a
 * request started after an update returned is signed with the new secrets. Owns nothing
 * else and touches no other room.
 */
#ifndef SHARDHOOK_BR_HOOKAUTH_H
#define SHARDHOOK_BR_HOOKAUTH_H

#include <stddef.h>

#include "config/config.h"

struct br_hookauth {
    char **secrets; /* newest first; none: unsigned */
    size_t n_secrets;
    struct cfg_header *headers;
    size_t n_headers;
};

struct br_hookauth_set;

/* One entry per webhook of cfg, copied from it. Returns 0 or SH_ENOMEM. */
int br_hookauth_new(const struct cfg_config *cfg, struct br_hookauth_set **out);
/* Queue webhook i's secrets and headers from w (copied). 0, SH_EINVAL (no such webhook) or
 * SH_ENOMEM; on failure what was queued before stays queued. Thread-safe. */
int br_hookauth_update(struct br_hookauth_set *s, size_t i, const struct cfg_webhook *w);
/* The delivery thread's view of webhook i, after taking what was queued; valid until its
 * next call. Only one thread may call it. */
const struct br_hookauth *br_hookauth_current(struct br_hookauth_set *s, size_t i);
void br_hookauth_free(struct br_hookauth_set *s);

#endif
