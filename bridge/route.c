/* bridge/route.c: event-name patterns of bridge/route.h. */
#include <string.h>

#include "bridge/route.h"

int br_route_match(const char *pattern, const char *t, size_t t_len)
{
    size_t pl = strlen(pattern);
    if (pl && pattern[pl - 1] == '*')
        return t_len >= pl - 1 && !memcmp(pattern, t, pl - 1);
    return pl == t_len && !memcmp(pattern, t, t_len);
}

int br_route_match_any(char *const *patterns, size_t n, const char *t, size_t t_len)
{
    for (size_t i = 0; i < n; i++)
        if (br_route_match(patterns[i], t, t_len))
            return 1;
    return 0;
}

int br_route_always(const char *t, size_t t_len)
{
    return t_len > 10 && !memcmp(t, "SHARDHOOK_", 10);
}
