/* lib/buf.c: the capped byte buffer of lib/buf.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/errors.h"

void sh_buf_init(struct sh_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

int sh_buf_reserve(struct sh_buf *b, size_t n)
{
    if (n > b->max || b->len > b->max - n)
        return SH_ETOOBIG;
    size_t need = b->len + n + 1; /* keep room for a terminating NUL */
    if (need <= b->cap)
        return SH_OK;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < need)
        ncap = ncap > ((size_t)-1) / 2 ? need : ncap * 2;
    if (ncap > b->max + 1)
        ncap = b->max + 1;
    char *p = realloc(b->data, ncap);
    if (!p)
        return SH_ENOMEM;
    b->data = p;
    b->cap = ncap;
    return SH_OK;
}

int sh_buf_append(struct sh_buf *b, const void *p, size_t n)
{
    int rc = sh_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return SH_OK;
}

int sh_buf_append_str(struct sh_buf *b, const char *s)
{
    return sh_buf_append(b, s, strlen(s));
}

int sh_buf_printf(struct sh_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return SH_EINVAL;
    int rc = sh_buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return SH_OK;
}

void sh_buf_free(struct sh_buf *b)
{
    SH_FREE(b->data);
    b->len = 0;
    b->cap = 0;
}
