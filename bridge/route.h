/*
 * bridge/route.h: which webhooks an event goes to.
 *
 * A webhook's `events` patterns are exact names, a `PREFIX*` prefix, or `*`.
 */
#ifndef SHARDHOOK_BR_ROUTE_H
#define SHARDHOOK_BR_ROUTE_H

#include <stddef.h>

/* 1 when the event name t (t_len bytes, not NUL-terminated) matches pattern. */
int br_route_match(const char *pattern, const char *t, size_t t_len);
/* 1 when any of n patterns matches. */
int br_route_match_any(char *const *patterns, size_t n, const char *t, size_t t_len);
/*
 * 1 for shardhook's own events (SHARDHOOK_*, e.g. SHARDHOOK_EVENT_SKIPPED): every webhook gets
 * them, whatever its `events` and the config's `disable_events` say.
 */
int br_route_always(const char *t, size_t t_len);

#endif
