/*
 * config/expand.h: `${NAME}` expansion of config strings from the environment.
 *
 * Owns only the expansion rules; it knows nothing about keys or the config table.
 * `${NAME}` is replaced by getenv("NAME"), `$${` is a literal `${`, any other `$`
 * is kept as it is. The result is not expanded again.
 */
#ifndef SHARDHOOK_CONFIG_EXPAND_H
#define SHARDHOOK_CONFIG_EXPAND_H

#include <stddef.h>

/* Longest variable name accepted inside `${...}`. */
#define CFG_EXPAND_MAX_NAME 128

/*
 * Expand in into a fresh malloc'd string *out of at most max bytes (plus NUL).
 * On failure returns SH_ECONFIG (with a reason such as `environment variable X is
 * not set` in why, never a variable's value), SH_ETOOBIG (result over max) or
 * SH_ENOMEM; *out is then NULL.
 */
int cfg_expand(const char *in, size_t max, char **out, char *why, size_t whylen);

#endif
