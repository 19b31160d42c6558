/* lib/snowflake.c: the parser of lib/snowflake.h. */
#include "lib/snowflake.h"
#include "lib/errors.h"

int sh_parse_snowflake(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20 || s[0] == '0')
        return SH_EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return SH_EINVAL;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return SH_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return SH_OK;
}
