/* gateway/sink.c: building the event chunks of gateway/sink.h. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/sink.h"
#include "lib/errors.h"

struct gw_chunk *gw_chunk_new(size_t max_bytes)
{
    struct gw_chunk *c = calloc(1, sizeof(*c));
    if (c)
        sh_buf_init(&c->data, max_bytes);
    return c;
}

void gw_chunk_free(struct gw_chunk *c)
{
    if (!c)
        return;
    sh_buf_free(&c->data);
    free(c->ev);
    free(c);
}

int gw_chunk_append(struct gw_chunk *c, int shard, int total, const char *t, size_t t_len,
                    uint64_t s, const char *d, size_t d_len, uint64_t recv_ms)
{
    if (t_len > UINT16_MAX)
        return SH_ETOOBIG;
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        struct gw_event *p = realloc(c->ev, ncap * sizeof(*p));
        if (!p)
            return SH_ENOMEM;
        c->ev = p;
        c->cap = ncap;
    }
    char head[96];
    int hn = snprintf(head, sizeof(head), "{\"shard\":[%d,%d],\"op\":0,\"t\":\"", shard, total);
    char mid[48];
    int mn = snprintf(mid, sizeof(mid), "\",\"s\":%" PRIu64 ",\"d\":", s);
    size_t need = (size_t)hn + t_len + (size_t)mn + d_len + 1;
    if (need > UINT32_MAX || c->data.len > UINT32_MAX - need)
        return SH_ETOOBIG;
    size_t start = c->data.len;
    int rc = sh_buf_reserve(&c->data, need);
    if (rc)
        return rc;
    char *p = c->data.data + start;
    memcpy(p, head, (size_t)hn);
    p += hn;
    memcpy(p, t, t_len);
    p += t_len;
    memcpy(p, mid, (size_t)mn);
    p += mn;
    memcpy(p, d, d_len);
    p += d_len;
    *p++ = '}';
    c->data.len += need;
    c->data.data[c->data.len] = '\0';
    struct gw_event *e = &c->ev[c->n++];
    e->off = (uint32_t)start;
    e->len = (uint32_t)need;
    e->t_off = (uint32_t)(start + (size_t)hn);
    e->t_len = (uint16_t)t_len;
    e->shard = (uint16_t)shard;
    e->s = s;
    e->recv_ms = recv_ms;
    return SH_OK;
}
