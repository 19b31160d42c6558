/*
 * config/expand.c: `${NAME}` expansion of config strings (see expand.h).
 *
 * Reads the environment, writes nothing but the returned string. Reasons never
 * contain a variable's value, since values are often secrets.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/expand.h"
#include "lib/buf.h"
#include "lib/errors.h"

static int name_char(char ch, int first)
{
    if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_')
        return 1;
    return !first && ch >= '0' && ch <= '9';
}

static int fail(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *why, size_t whylen, const char *fmt, ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return SH_ECONFIG;
}

int cfg_expand(const char *in, size_t max, char **out, char *why, size_t whylen)
{
    struct sh_buf b;
    int rc = SH_OK;

    *out = NULL;
    if (why && whylen)
        why[0] = '\0';
    sh_buf_init(&b, max);
    /* an empty result still needs a string: appending nothing allocates and terminates */
    if ((rc = sh_buf_append(&b, "", 0)))
        goto done;
    for (const char *p = in; *p && !rc;) {
        if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
            rc = sh_buf_append(&b, "${", 2);
            p += 3;
            continue;
        }
        if (p[0] != '$' || p[1] != '{') {
            const char *q = p + 1;
            while (*q && *q != '$')
                q++;
            rc = sh_buf_append(&b, p, (size_t)(q - p));
            p = q;
            continue;
        }
        const char *name = p + 2, *end = strchr(name, '}');
        if (!end) {
            rc = fail(why, whylen, "unterminated \"${\" (write \"$${\" for a literal \"${\")");
            break;
        }
        size_t n = (size_t)(end - name);
        if (n == 0) {
            rc = fail(why, whylen, "empty variable name in \"${}\"");
            break;
        }
        int ok = n <= CFG_EXPAND_MAX_NAME;
        for (size_t i = 0; ok && i < n; i++)
            ok = name_char(name[i], i == 0);
        if (!ok) {
            rc = fail(why, whylen,
                      "invalid variable name in \"${...}\" (letters, digits and _ only)");
            break;
        }
        char var[CFG_EXPAND_MAX_NAME + 1];
        memcpy(var, name, n);
        var[n] = '\0';
        const char *val = getenv(var);
        if (!val) {
            rc = fail(why, whylen, "environment variable %s is not set", var);
            break;
        }
        rc = sh_buf_append_str(&b, val);
        p = end + 1;
    }
done:
    if (rc) {
        if (rc == SH_ETOOBIG && why && whylen && !why[0])
            snprintf(why, whylen, "longer than %zu bytes after expansion", max);
        sh_buf_free(&b);
        return rc;
    }
    *out = b.data;
    return SH_OK;
}
