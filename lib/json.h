/*
 * lib/json.h: the one JSON string escaper, for the text shardhook writes as JSON by hand
 * (IDENTIFY and RESUME, checkpoints, dead letters). Owns no state.
 */
#ifndef SHARDHOOK_LIB_JSON_H
#define SHARDHOOK_LIB_JSON_H

#include <stddef.h>

#include "lib/buf.h"

enum sh_json_flags {
    /*
     * Copy bytes >= 0x80 as they are, valid UTF-8 or not, so that a reader that keeps bytes
     * (cJSON) gets back exactly what was written. Without it, a byte that starts no valid UTF-8
     * sequence is written as \u00XX, so the output is valid JSON whatever the input.
     */
    SH_JSON_KEEP_BYTES = 1,
};

/*
 * Append the n bytes at p to out as the inside of a JSON string (no quotes): `"` and `\`
 * escaped, control characters and DEL as \u00XX, the rest as flags say. Fails with
 * SH_ETOOBIG or SH_ENOMEM, leaving out as it was.
 */
int sh_json_escape(struct sh_buf *out, const char *p, size_t n, int flags);
/* The same between double quotes: a whole JSON string. */
int sh_json_quote(struct sh_buf *out, const char *p, size_t n, int flags);

#endif
