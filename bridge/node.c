/*
 * bridge/node.c: cluster mode's hands on this node (bridge/node.h). The coordination thread
 * calls the ops below; each only queues work for the gateway or delivery thread. Order matters
 * once: delivery learns of a held shard before the gateway starts it, so the shard's first event
 * finds its ledger state in place (both hand-offs are queues that the delivery thread drains in
 * order: its command queue before the next chunk).
 */
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/node.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/log.h"

/* The cluster's view of a bridge checkpoint; blob points into buf (kept by the caller). */
static int to_cluster(const struct br_checkpoint *b, struct sh_buf *buf, struct cl_checkpoint *out)
{
    size_t len = 0;
    if (b->session_id[0]) { /* without a session there is nothing to resume: no blob */
        int rc = br_checkpoint_encode(b, sh_wall_ms(), buf);
        if (rc)
            return rc;
        len = buf->len;
        while (len && (buf->data[len - 1] == '\n'))
            len--;
    }
    memset(out, 0, sizeof(*out));
    out->shard = b->shard;
    snprintf(out->session_id, sizeof(out->session_id), "%s", b->session_id);
    snprintf(out->resume_url, sizeof(out->resume_url), "%s", b->resume_url);
    out->seq = b->seq;
    out->blob = len ? (const char *)buf->data : NULL;
    out->blob_len = len;
    return SH_OK;
}

/*
 * The bridge checkpoint a claim brought: the blob when it parses and is the same resume point for
 * this shard and shard count, else just the resume point (no per-webhook floors: every webhook
 * starts at seq). Returns 1 when *out holds something to resume from, 0 when the shard identifies.
 */
static int from_cluster(const struct cl_checkpoint *cp, int total, struct br_checkpoint *out)
{
    memset(out, 0, sizeof(*out));
    if (!cp->session_id[0])
        return 0;
    if (cp->blob_len) {
        int rc = br_checkpoint_parse(cp->blob, cp->blob_len, out);
        if (!rc && out->shard == cp->shard && out->total == total &&
            !strcmp(out->session_id, cp->session_id) && out->seq == cp->seq)
            return 1;
        log_warn("msg=\"cluster checkpoint not usable; using its resume point\" shard=%d "
                 "error=\"%s\"",
                 cp->shard, rc ? sh_strerror(rc) : "another shard or shard count");
        memset(out, 0, sizeof(*out));
    }
    out->shard = cp->shard;
    out->total = total;
    snprintf(out->session_id, sizeof(out->session_id), "%s", cp->session_id);
    snprintf(out->resume_url, sizeof(out->resume_url), "%s", cp->resume_url);
    out->seq = cp->seq;
    return 1;
}

static int node_hold(void *ud, const struct cl_checkpoint *cp)
{
    struct br_node *n = ud;
    struct br_checkpoint b;
    int resume = from_cluster(cp, gw_gateway_total(n->gw), &b);
    int rc = br_delivery_hold(n->delivery, cp->shard, resume ? &b : NULL);
    if (rc)
        return rc;
    struct gw_resume_point rp;
    memset(&rp, 0, sizeof(rp));
    if (resume) {
        snprintf(rp.session_id, sizeof(rp.session_id), "%s", b.session_id);
        snprintf(rp.resume_url, sizeof(rp.resume_url), "%s", b.resume_url);
        /* the cache's snapshot may be older: the replay from there brings it up to date, and
           the ledger (held at b.seq) keeps what webhooks acknowledged from coming again */
        rp.seq = br_cache_warm(n->cache, cp->shard, b.session_id, b.seq);
    }
    rc = gw_gateway_hold(n->gw, cp->shard, resume ? &rp : NULL);
    if (rc && rc != SH_EEXIST)
        br_delivery_release(n->delivery, cp->shard);
    return rc == SH_EEXIST ? SH_OK : rc;
}

static void node_release(void *ud, int shard)
{
    struct br_node *n = ud;
    gw_gateway_release(n->gw, shard);
    br_delivery_release(n->delivery, shard);
    if (n->cache)
        ca_cache_forget_shard(n->cache, shard); /* its owner's cache answers for it now */
}

/* The drain of a handoff ended (and the cache's snapshot is written): pass ownership on. */
static void pass_on(struct br_node *n, const struct br_checkpoint *b)
{
    struct sh_buf buf;
    sh_buf_init(&buf, BR_CKPT_MAX_BYTES);
    struct cl_checkpoint cp;
    if (to_cluster(b, &buf, &cp)) {
        /* without the blob the resume point still carries the handoff */
        memset(&cp, 0, sizeof(cp));
        cp.shard = b->shard;
        snprintf(cp.session_id, sizeof(cp.session_id), "%s", b->session_id);
        snprintf(cp.resume_url, sizeof(cp.resume_url), "%s", b->resume_url);
        cp.seq = b->seq;
    }
    cl_cluster_drained(n->cluster, b->shard, &cp);
    sh_buf_free(&buf);
}

struct after_snapshot {
    struct br_node *n;
    struct br_checkpoint b;
};

/* Cache worker: the handoff's snapshot is in Redis (or could not be written). */
static void snapshot_done(void *arg)
{
    struct after_snapshot *a = arg;
    pass_on(a->n, &a->b);
    free(a);
}

/*
 * Delivery thread: the drain of a handoff ended. With a cache, its snapshot of the shard goes
 * to Redis first (on the cache store's worker, bounded by BR_NODE_CACHE_SNAPSHOT_MS, inside the
 * coordination thread's wait for the drain), so the next owner loads it warm.
 */
static void drained(void *arg, int rc, const struct br_checkpoint *b)
{
    struct br_node *n = arg;
    if (rc)
        log_warn("msg=\"handoff drain ended before every event was acknowledged\" shard=%d "
                 "seq=%" PRIu64 " error=\"%s\"",
                 b->shard, b->seq, sh_strerror(rc));
    struct after_snapshot *a = n->cache && n->snaps ? malloc(sizeof(*a)) : NULL;
    if (a) {
        a->n = n;
        a->b = *b;
        if (br_cachestore_snapshot_then(n->snaps, b->shard, BR_NODE_CACHE_SNAPSHOT_MS,
                                        snapshot_done, a) == 0)
            return;
        free(a);
    }
    pass_on(n, b);
}

/*
 * A handoff's drain waits for the shard's socket to be gone (the close with 4000 done), so the
 * next owner's RESUME never meets this connection still open and nothing new arrives here.
 */
struct drain_wait {
    struct br_node *n;
    int timeout_ms;
};

/* Gateway thread: the released shard's socket is gone; delivery drains it now. */
static void socket_closed(void *arg, int shard)
{
    struct drain_wait *w = arg;
    struct br_node *n = w->n;
    int rc = br_delivery_drain(n->delivery, shard, w->timeout_ms, drained, n);
    free(w);
    if (rc) {
        log_error("msg=\"handoff drain could not start; the newest checkpoint goes instead\" "
                  "shard=%d error=\"%s\"",
                  shard, sh_strerror(rc));
        br_delivery_release(n->delivery, shard);
        cl_cluster_drained(n->cluster, shard, NULL);
    }
}

static int node_drain(void *ud, int shard, int timeout_ms)
{
    struct br_node *n = ud;
    struct drain_wait *w = malloc(sizeof(*w));
    if (!w) {
        node_release(n, shard);
        return SH_ENOMEM;
    }
    *w = (struct drain_wait){.n = n, .timeout_ms = timeout_ms};
    struct gw_released then = {.closed = socket_closed, .arg = w};
    int rc = gw_gateway_release_then(n->gw, shard, &then); /* closes with 4000 */
    if (rc) {
        free(w);
        node_release(n, shard);
    }
    return rc;
}

static void node_lease_deadline(void *ud, uint64_t until_mono_ms)
{
    struct br_node *n = ud;
    gw_gateway_set_lease_deadline(n->gw, until_mono_ms);
}

struct cl_node_ops br_node_ops(struct br_node *n)
{
    return (struct cl_node_ops){
        .hold = node_hold,
        .release = node_release,
        .drain = node_drain,
        .lease_deadline = node_lease_deadline,
        .ud = n,
    };
}

/* Delivery thread: a checkpoint the ledger wrote goes to the cluster too (copied there). */
static void mirror_put(void *ud, const struct br_checkpoint *b)
{
    struct br_node *n = ud;
    if (!n->cluster)
        return;
    struct sh_buf buf;
    sh_buf_init(&buf, BR_CKPT_MAX_BYTES);
    struct cl_checkpoint cp;
    if (!to_cluster(b, &buf, &cp))
        cl_cluster_checkpoint(n->cluster, &cp);
    else
        log_warn("msg=\"checkpoint not mirrored to the cluster\" shard=%d", b->shard);
    sh_buf_free(&buf);
}

struct br_ckstore_mirror br_node_mirror(struct br_node *n)
{
    return (struct br_ckstore_mirror){.put = mirror_put, .ud = n};
}

void br_node_webhooks_fingerprint(const struct cfg_config *cfg, char *out, size_t cap)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (size_t i = 0; ok && i < cfg->n_webhooks; i++) {
        const char *url = cfg->webhooks[i].url;
        ok = EVP_DigestUpdate(ctx, url, strlen(url) + 1); /* the NUL separates the URLs */
    }
    ok = ok && EVP_DigestFinal_ex(ctx, md, &md_len);
    EVP_MD_CTX_free(ctx);
    if (!ok)
        md_len = 0; /* "" then: the join check compares the other facts */
    size_t o = 0;
    for (size_t i = 0; i < 8 && i < md_len && o + 3 <= cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%02x", md[i]);
    if (cap)
        out[o < cap ? o : cap - 1] = 0;
}
