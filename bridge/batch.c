/* bridge/batch.c: building, closing and (de)serialising the webhook batches of bridge/batch.h. */
#include <stdlib.h>
#include <string.h>

#include "bridge/batch.h"
#include "bridge/sign.h"
#include "lib/errors.h"

int br_batch_new(size_t cap, struct br_batch **out)
{
    if (cap < BR_BATCH_HEAD_LEN + BR_BATCH_TAIL_LEN)
        return SH_EINVAL;
    struct br_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return SH_ENOMEM;
    sh_buf_init(&b->body, cap);
    int rc = br_new_msg_id(b->msg_id, sizeof(b->msg_id));
    if (!rc)
        rc = sh_buf_append(&b->body, BR_BATCH_HEAD, BR_BATCH_HEAD_LEN);
    if (rc) {
        br_batch_free(b);
        return rc == SH_EINVAL ? SH_EIO : rc;
    }
    *out = b;
    return SH_OK;
}

void br_batch_free(struct br_batch *b)
{
    if (!b)
        return;
    sh_buf_free(&b->body);
    free(b->shards);
    free(b->dead_resp);
    free(b);
}

int br_batch_fits(const struct br_batch *b, size_t len)
{
    size_t need = len + (b->n_events ? 1 : 0) + BR_BATCH_TAIL_LEN;
    return !b->closed && need >= len && b->body.len <= b->body.max &&
           need <= b->body.max - b->body.len;
}

static struct br_batch_shard *entry_for(struct br_batch *b, uint32_t shard, uint32_t gen,
                                        int *created)
{
    /* entries are few (one lane's shards); the last one is the likeliest */
    for (uint32_t i = b->n_shards; i-- > 0;)
        if (b->shards[i].shard == shard && b->shards[i].gen == gen)
            return &b->shards[i];
    if (b->n_shards == b->cap_shards) {
        if (b->cap_shards >= BR_BATCH_MAX_SHARDS)
            return NULL;
        uint32_t ncap = b->cap_shards ? b->cap_shards * 2 : 2;
        struct br_batch_shard *p = realloc(b->shards, ncap * sizeof(*p));
        if (!p)
            return NULL;
        b->shards = p;
        b->cap_shards = ncap;
    }
    *created = 1;
    return &b->shards[b->n_shards]; /* counted by the caller once the append succeeded */
}

int br_batch_add(struct br_batch *b, const char *ev, size_t len, uint32_t shard, uint32_t gen,
                 uint64_t s, uint64_t recv_ms, int *new_entry)
{
    if (b->closed)
        return SH_EINVAL;
    if (!br_batch_fits(b, len))
        return SH_ETOOBIG;
    int created = 0;
    struct br_batch_shard *e = entry_for(b, shard, gen, &created);
    if (!e)
        return SH_ENOMEM;
    size_t old = b->body.len;
    int rc = b->n_events ? sh_buf_append(&b->body, ",", 1) : SH_OK;
    if (!rc)
        rc = sh_buf_append(&b->body, ev, len);
    if (rc) {
        b->body.len = old;
        return rc;
    }
    if (created) {
        *e = (struct br_batch_shard){shard, gen, s, s};
        b->n_shards++;
    } else {
        if (s < e->min_s)
            e->min_s = s;
        if (s > e->max_s)
            e->max_s = s;
    }
    if (!b->n_events || recv_ms < b->first_ms)
        b->first_ms = recv_ms;
    b->n_events++;
    if (new_entry)
        *new_entry = created;
    return SH_OK;
}

void br_batch_close(struct br_batch *b)
{
    if (b->closed)
        return;
    /* br_batch_add kept room for these two bytes under the cap */
    int rc = sh_buf_append(&b->body, "]}", 2);
    (void)rc;
    b->closed = 1;
}

/* ---- spool metadata: little-endian fixed-width fields ---- */

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

#define META_FIXED (1 + 4 + 4 + 8)
#define META_ENTRY (4 + 4 + 8 + 8)

int br_batch_encode_meta(const struct br_batch *b, struct sh_buf *out)
{
    size_t idl = strlen(b->msg_id);
    size_t need = META_FIXED + idl + (size_t)b->n_shards * META_ENTRY;
    int rc = sh_buf_reserve(out, need);
    if (rc)
        return rc;
    unsigned char *p = (unsigned char *)out->data + out->len;
    *p++ = (unsigned char)idl;
    memcpy(p, b->msg_id, idl);
    p += idl;
    put32(p, b->n_events);
    put32(p + 4, b->n_shards);
    put64(p + 8, b->first_ms);
    p += 16;
    for (uint32_t i = 0; i < b->n_shards; i++, p += META_ENTRY) {
        put32(p, b->shards[i].shard);
        put32(p + 4, b->shards[i].gen);
        put64(p + 8, b->shards[i].min_s);
        put64(p + 16, b->shards[i].max_s);
    }
    out->len += need;
    out->data[out->len] = '\0';
    return SH_OK;
}

int br_batch_decode_meta(const char *meta, size_t meta_len, struct br_batch *b)
{
    const unsigned char *p = (const unsigned char *)meta;
    if (meta_len < META_FIXED)
        return SH_ECORRUPT;
    size_t idl = p[0];
    if (!idl || idl >= BR_MSG_ID_MAX || meta_len < META_FIXED + idl)
        return SH_ECORRUPT;
    for (size_t i = 0; i < idl; i++) /* it becomes the webhook-id header: no NUL, CR, LF... */
        if (p[1 + i] < 0x21 || p[1 + i] > 0x7e)
            return SH_ECORRUPT;
    uint32_t n_events = get32(p + 1 + idl), n_shards = get32(p + 5 + idl);
    if (n_shards > BR_BATCH_MAX_SHARDS ||
        meta_len != META_FIXED + idl + (size_t)n_shards * META_ENTRY || !n_events)
        return SH_ECORRUPT;
    struct br_batch_shard *sh = n_shards ? malloc(n_shards * sizeof(*sh)) : NULL;
    if (n_shards && !sh)
        return SH_ENOMEM;
    const unsigned char *e = p + META_FIXED + idl;
    for (uint32_t i = 0; i < n_shards; i++, e += META_ENTRY) {
        sh[i].shard = get32(e);
        sh[i].gen = get32(e + 4);
        sh[i].min_s = get64(e + 8);
        sh[i].max_s = get64(e + 16);
    }
    memcpy(b->msg_id, p + 1, idl);
    b->msg_id[idl] = '\0';
    b->shards = sh;
    b->n_shards = b->cap_shards = n_shards;
    b->n_events = n_events;
    b->first_ms = get64(p + 9 + idl);
    return SH_OK;
}

int br_batch_decode(const char *meta, size_t meta_len, const char *body, size_t body_len,
                    struct br_batch **out)
{
    if (body_len < BR_BATCH_HEAD_LEN + BR_BATCH_TAIL_LEN ||
        memcmp(body, BR_BATCH_HEAD, BR_BATCH_HEAD_LEN) || memcmp(body + body_len - 2, "]}", 2))
        return SH_ECORRUPT;
    struct br_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return SH_ENOMEM;
    int rc = br_batch_decode_meta(meta, meta_len, b);
    if (rc) {
        free(b);
        return rc;
    }
    sh_buf_init(&b->body, body_len);
    if (sh_buf_append(&b->body, body, body_len)) {
        br_batch_free(b);
        return SH_ENOMEM;
    }
    b->closed = 1;
    *out = b;
    return SH_OK;
}

/* ---- taking a shard's events out ---- */

/* The end of the JSON value starting at p (an object or array, strings and escapes skipped). */
static const char *value_end(const char *p, const char *end)
{
    int depth = 0;
    for (; p < end; p++) {
        char c = *p;
        if (c == '"') {
            for (p++; p < end && *p != '"'; p++)
                if (*p == '\\')
                    p++;
            if (p >= end)
                return NULL;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (--depth == 0)
                return p + 1;
            if (depth < 0)
                return NULL;
        }
    }
    return NULL;
}

/* The shard of an encoded event: it starts {"shard":[<id>, (gateway/sink.h's encoding). */
static int event_shard(const char *p, const char *end, uint32_t *shard)
{
    static const char pre[] = "{\"shard\":[";
    size_t n = sizeof(pre) - 1;
    if ((size_t)(end - p) <= n || memcmp(p, pre, n))
        return SH_EPARSE;
    uint32_t v = 0;
    const char *q = p + n;
    for (; q < end && *q >= '0' && *q <= '9' && v <= 65535; q++)
        v = v * 10 + (uint32_t)(*q - '0');
    if (q == p + n || q >= end || *q != ',' || v > 65535)
        return SH_EPARSE;
    *shard = v;
    return SH_OK;
}

/* 1 when some entry of b is of a shard drop() names. */
static int any_dropped(const struct br_batch *b, int (*drop)(void *ud, uint32_t shard), void *ud)
{
    for (uint32_t i = 0; i < b->n_shards; i++)
        if (drop(ud, b->shards[i].shard))
            return 1;
    return 0;
}

/* The body without the dropped shards' events into nb; *kept: the events left. */
static int rebuild_body(const struct br_batch *b, int (*drop)(void *ud, uint32_t shard), void *ud,
                        struct sh_buf *nb, uint32_t *kept)
{
    const char *p = b->body.data + BR_BATCH_HEAD_LEN;
    const char *end = b->body.data + b->body.len - (b->closed ? BR_BATCH_TAIL_LEN : 0);
    uint32_t seen = 0;
    int rc = sh_buf_append(nb, BR_BATCH_HEAD, BR_BATCH_HEAD_LEN);
    *kept = 0;
    while (!rc && p < end) {
        const char *e = value_end(p, end);
        uint32_t shard;
        if (!e || event_shard(p, e, &shard))
            return SH_EPARSE;
        seen++;
        if (!drop(ud, shard)) {
            rc = *kept ? sh_buf_append(nb, ",", 1) : SH_OK;
            rc = rc ? rc : sh_buf_append(nb, p, (size_t)(e - p));
            *kept += !rc;
        }
        p = e;
        if (p < end && *p++ != ',')
            return SH_EPARSE;
    }
    if (!rc && seen != b->n_events)
        return SH_EPARSE;
    if (!rc && b->closed)
        rc = sh_buf_append(nb, "]}", 2);
    return rc;
}

int br_batch_drop_shards(struct br_batch *b, int (*drop)(void *ud, uint32_t shard), void *ud,
                         uint32_t *removed)
{
    *removed = 0;
    if (!any_dropped(b, drop, ud))
        return SH_OK;
    struct sh_buf nb;
    sh_buf_init(&nb, b->body.max);
    uint32_t kept = 0;
    int rc = rebuild_body(b, drop, ud, &nb, &kept);
    if (rc) {
        sh_buf_free(&nb);
        return rc;
    }
    sh_buf_free(&b->body);
    b->body = nb;
    *removed = b->n_events - kept;
    b->n_events = kept;
    uint32_t n = 0;
    for (uint32_t i = 0; i < b->n_shards; i++)
        if (!drop(ud, b->shards[i].shard))
            b->shards[n++] = b->shards[i];
    b->n_shards = n;
    return SH_OK;
}
