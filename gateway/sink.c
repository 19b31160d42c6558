/* gateway/sink.c: building the event chunks of gateway/sink.h. */
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
    free(c->sessions);
    free(c);
}

int gw_chunk_set_session(struct gw_chunk *c, const struct gw_session *session)
{
    if (!c->n)
        return SH_EINVAL;
    struct gw_session *p = realloc(c->sessions, (c->n_sessions + 1) * sizeof(*p));
    if (!p)
        return SH_ENOMEM;
    c->sessions = p;
    p[c->n_sessions] = *session;
    p[c->n_sessions].event = (uint32_t)(c->n - 1);
    c->n_sessions++;
    return SH_OK;
}

const struct gw_session *gw_chunk_session(const struct gw_chunk *c, size_t i)
{
    for (size_t k = 0; k < c->n_sessions; k++)
        if (c->sessions[k].event == i)
            return &c->sessions[k];
    return NULL;
}

/* Decimal digits of v into out (at least 20 bytes); returns the length. */
static size_t put_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

#define PUT_LIT(p, lit)                                                                            \
    do {                                                                                           \
        memcpy((p), (lit), sizeof(lit) - 1);                                                       \
        (p) += sizeof(lit) - 1;                                                                    \
    } while (0)

/* The session id as the inside of a JSON string ("-" when none) at out; returns the length. */
static size_t put_session(char *out, const char *sid)
{
    static const char hex[] = "0123456789abcdef";
    if (!sid || !*sid) {
        *out = '-';
        return 1;
    }
    char *p = out;
    for (size_t i = 0; sid[i] && i < GW_KEY_SESSION_MAX; i++) {
        unsigned char ch = (unsigned char)sid[i];
        if (ch == '"' || ch == '\\' || ch < 0x20) {
            PUT_LIT(p, "\\u00");
            *p++ = hex[ch >> 4];
            *p++ = hex[ch & 15];
        } else {
            *p++ = (char)ch;
        }
    }
    return (size_t)(p - out);
}

int gw_chunk_append(struct gw_chunk *c, int shard, int total, const char *t, size_t t_len,
                    uint64_t s, const struct gw_key *key, const char *d, size_t d_len,
                    uint64_t recv_ms)
{
    if (t_len > UINT16_MAX || shard < 0 || total < 0)
        return SH_ETOOBIG;
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        struct gw_event *p = realloc(c->ev, ncap * sizeof(*p));
        if (!p)
            return SH_ENOMEM;
        c->ev = p;
        c->cap = ncap;
    }
    /* {"shard":[S,T],"op":0,"t":"NAME","s":N,"key":"S:SESSION:N","d":D} built by hand: this
       runs once per event */
    char head[64], mid[128 + 6 * GW_KEY_SESSION_MAX];
    char *h = head, *m = mid;
    PUT_LIT(h, "{\"shard\":[");
    h += put_u64(h, (uint64_t)shard);
    *h++ = ',';
    h += put_u64(h, (uint64_t)total);
    PUT_LIT(h, "],\"op\":0,\"t\":\"");
    PUT_LIT(m, "\",\"s\":");
    if (s)
        m += put_u64(m, s);
    else
        PUT_LIT(m, "null");
    PUT_LIT(m, ",\"key\":\"");
    m += put_u64(m, (uint64_t)shard);
    *m++ = ':';
    m += put_session(m, key ? key->session_id : NULL);
    *m++ = ':';
    if (s) {
        m += put_u64(m, s);
    } else {
        m += put_u64(m, key ? key->last_s : 0);
        *m++ = '.';
        m += put_u64(m, key ? key->n : 0);
    }
    PUT_LIT(m, "\",\"d\":");
    size_t hn = (size_t)(h - head), mn = (size_t)(m - mid);
    size_t need = hn + t_len + mn + d_len + 1;
    if (need > UINT32_MAX || c->data.len > UINT32_MAX - need)
        return SH_ETOOBIG;
    size_t start = c->data.len;
    int rc = sh_buf_reserve(&c->data, need);
    if (rc)
        return rc;
    char *p = c->data.data + start;
    memcpy(p, head, hn);
    p += hn;
    memcpy(p, t, t_len);
    p += t_len;
    memcpy(p, mid, mn);
    p += mn;
    memcpy(p, d, d_len);
    p += d_len;
    *p++ = '}';
    c->data.len += need;
    c->data.data[c->data.len] = '\0';
    struct gw_event *e = &c->ev[c->n++];
    e->off = (uint32_t)start;
    e->len = (uint32_t)need;
    e->t_off = (uint32_t)(start + hn);
    e->t_len = (uint16_t)t_len;
    e->shard = (uint16_t)shard;
    e->s = s;
    e->recv_ms = recv_ms;
    return SH_OK;
}
