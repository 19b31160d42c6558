/* lib/json.c: the escaper of lib/json.h. */
#include <stdint.h>

#include "lib/json.h"
#include "lib/errors.h"

/*
 * Length of the valid UTF-8 sequence starting at p[0] (>= 0x80), 0 when there is none: no
 * overlong form, no surrogate, nothing past U+10FFFF.
 */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    size_t k;
    uint32_t cp, min;
    if (p[0] >= 0xc2 && p[0] < 0xe0)
        k = 1, cp = p[0] & 0x1f, min = 0x80;
    else if (p[0] >= 0xe0 && p[0] < 0xf0)
        k = 2, cp = p[0] & 0x0f, min = 0x800;
    else if (p[0] >= 0xf0 && p[0] < 0xf5)
        k = 3, cp = p[0] & 0x07, min = 0x10000;
    else
        return 0;
    if (k >= n)
        return 0;
    for (size_t j = 1; j <= k; j++) {
        if ((p[j] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[j] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return k + 1;
}

static int escape(struct sh_buf *out, const unsigned char *p, size_t n, int flags)
{
    static const char hex[] = "0123456789abcdef";
    int rc = SH_OK;
    for (size_t i = 0; !rc && i < n;) {
        size_t run = i; /* bytes copied as they are */
        while (run < n && p[run] >= 0x20 && p[run] != '"' && p[run] != '\\' && p[run] != 0x7f &&
               (p[run] < 0x80 || (flags & SH_JSON_KEEP_BYTES)))
            run++;
        if (run > i) {
            rc = sh_buf_append(out, p + i, run - i);
            i = run;
            continue;
        }
        size_t k = p[i] >= 0x80 ? utf8_seq(p + i, n - i) : 0;
        if (k) {
            rc = sh_buf_append(out, p + i, k);
            i += k;
        } else if (p[i] == '"' || p[i] == '\\') {
            char e[2] = {'\\', (char)p[i++]};
            rc = sh_buf_append(out, e, 2);
        } else {
            char e[6] = {'\\', 'u', '0', '0', hex[p[i] >> 4], hex[p[i] & 15]};
            rc = sh_buf_append(out, e, 6);
            i++;
        }
    }
    return rc;
}

int sh_json_escape(struct sh_buf *out, const char *p, size_t n, int flags)
{
    size_t len = out->len;
    int rc = escape(out, (const unsigned char *)p, n, flags);
    if (rc)
        out->len = len;
    return rc;
}

int sh_json_quote(struct sh_buf *out, const char *p, size_t n, int flags)
{
    size_t len = out->len;
    int rc = sh_buf_append(out, "\"", 1);
    rc = rc ? rc : escape(out, (const unsigned char *)p, n, flags);
    rc = rc ? rc : sh_buf_append(out, "\"", 1);
    if (rc)
        out->len = len;
    return rc;
}
