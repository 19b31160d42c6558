/*
 * lib/snowflake.h: the one reader of Discord ids (snowflakes) written as text, for every room
 * (the gateway's READY and GUILD_CREATE, the control API's paths and bodies, the replies the
 * waiting requests match). Owns no state.
 */
#ifndef SHARDHOOK_LIB_SNOWFLAKE_H
#define SHARDHOOK_LIB_SNOWFLAKE_H

#include <stddef.h>
#include <stdint.h>

/*
 * The snowflake spelled by the n bytes at s: 1 to 20 decimal digits, nothing else (no sign,
 * space or quote), no leading zero, fitting in 64 bits; so never 0. 0 with the value in *out,
 * or SH_EINVAL leaving *out as it was. s may be NULL when n is 0.
 */
int sh_parse_snowflake(const char *s, size_t n, uint64_t *out);

#endif
