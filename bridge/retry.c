/* bridge/retry.c: retry decisions and Retry-After parsing of bridge/retry.h. */
#include <ctype.h>
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/retry.h"
#include "lib/errors.h"
#include "lib/rand.h"

enum br_outcome br_classify(long status)
{
    if (status >= 200 && status < 300)
        return BR_ACK;
    if (status == 0 || status == 408 || status == 429 || (status >= 500 && status < 600))
        return BR_RETRY;
    return BR_DEAD;
}

int br_retry_after_parse(const char *value, uint64_t now_wall_ms, uint64_t *out_ms)
{
    if (!value)
        return SH_EINVAL;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t n = strlen(value);
    while (n && (value[n - 1] == ' ' || value[n - 1] == '\t' || value[n - 1] == '\r' ||
                 value[n - 1] == '\n'))
        n--;
    if (!n || n > 64)
        return SH_EINVAL;
    char v[65];
    memcpy(v, value, n);
    v[n] = '\0';
    uint64_t ms;
    if (isdigit((unsigned char)v[0])) {
        uint64_t s = 0;
        for (size_t i = 0; i < n; i++) {
            if (!isdigit((unsigned char)v[i]))
                return SH_EINVAL;
            if (s < BR_RETRY_AFTER_MAX_MS) /* stop growing once past the cap */
                s = s * 10 + (uint64_t)(v[i] - '0');
        }
        ms = s * 1000;
    } else {
        /* curl_getdate understands the three HTTP date forms of RFC 9110 */
        time_t t = curl_getdate(v, NULL);
        if (t == (time_t)-1)
            return SH_EINVAL;
        /* years far ahead (curl takes any) would overflow t * 1000: past the cap is the cap */
        uint64_t now_s = now_wall_ms / 1000;
        if (t < 0)
            ms = 0;
        else if ((uint64_t)t > now_s + BR_RETRY_AFTER_MAX_MS / 1000)
            ms = BR_RETRY_AFTER_MAX_MS;
        else
            ms = (uint64_t)t * 1000 > now_wall_ms ? (uint64_t)t * 1000 - now_wall_ms : 0;
    }
    *out_ms = ms > BR_RETRY_AFTER_MAX_MS ? BR_RETRY_AFTER_MAX_MS : ms;
    return SH_OK;
}

uint64_t br_retry_floor_ms(unsigned attempt, uint64_t base_ms, uint64_t cap_ms)
{
    return sh_backoff_ceiling_ms(attempt, base_ms, cap_ms) / 2;
}

uint64_t br_retry_delay_ms(unsigned attempt, uint64_t base_ms, uint64_t cap_ms,
                           int64_t retry_after_ms, uint64_t retry_after_max_ms)
{
    if (retry_after_ms < 0)
        return sh_backoff_ms(attempt, base_ms, cap_ms);
    uint64_t wait = (uint64_t)retry_after_ms;
    if (wait > retry_after_max_ms)
        wait = retry_after_max_ms;
    uint64_t floor = br_retry_floor_ms(attempt, base_ms, cap_ms);
    return wait < floor ? floor : wait;
}
