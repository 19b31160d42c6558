/*
 * lib/buf.h: a growable byte buffer with a hard cap chosen by its owner.
 *
 * Growing past the cap is an error (SH_ETOOBIG), never a silent realloc: every
 * frame, inflate output and request body in shardhook has a bound on purpose.
 */
#ifndef SHARDHOOK_LIB_BUF_H
#define SHARDHOOK_LIB_BUF_H

#include <stddef.h>

struct sh_buf {
    char *data;
    size_t len;
    size_t cap; /* allocated */
    size_t max; /* hard cap on len */
};

void sh_buf_init(struct sh_buf *b, size_t max);
/* Make room for n more bytes. Fails with SH_ETOOBIG or SH_ENOMEM, leaving b as it was. */
int sh_buf_reserve(struct sh_buf *b, size_t n);
/* Append n bytes. Fails like sh_buf_reserve, leaving b as it was. */
int sh_buf_append(struct sh_buf *b, const void *p, size_t n);
int sh_buf_append_str(struct sh_buf *b, const char *s);
/* printf-style append; fails like sh_buf_reserve, leaving b as it was. */
int sh_buf_printf(struct sh_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Keep the allocation, forget the content. */
static inline void sh_buf_reset(struct sh_buf *b)
{
    b->len = 0;
}
void sh_buf_free(struct sh_buf *b);

/* Free and NULL in one step (haproxy's ha_free). */
#define SH_FREE(p)                                                                                 \
    do {                                                                                           \
        free(p);                                                                                   \
        (p) = NULL;                                                                                \
    } while (0)

#endif
