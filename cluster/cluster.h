/*
 * cluster/cluster.h: cluster mode's public face (../docs/cluster.md): several nodes hold one
 * bot's shards through one Redis. One coordination thread per node owns the Redis connection,
 * the node lease, shard ownership and fences, the cluster-wide identify slots and budget,
 * checkpoints in Redis, takeovers, handoffs and balance.
 *
 * The gateway and delivery threads never block on Redis: the gateway asks through the identify
 * interface (cl_cluster_identify fills gateway/gateway.h's struct gw_identify), delivery hands
 * checkpoints over with cl_cluster_checkpoint (copied, the newest per shard wins), and the
 * coordination thread acts on the node through struct cl_node_ops, which bridge/main.c fills
 * (gw_gateway_hold/release, br_delivery_hold/release/drain). Nothing here runs without a
 * `cluster` block in the config. Includes lib/, config/ and gateway/gateway.h's types only.
 */
#ifndef SHARDHOOK_CL_CLUSTER_H
#define SHARDHOOK_CL_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "gateway/gateway.h"
#include "lib/buf.h"

struct cl_cluster;

/*
 * A control command's answer as the route would give it locally (cluster/forward.c): status,
 * Retry-After seconds ("" none), the body's JSON text (len bytes); borrowed for the call.
 */
typedef void cl_answer_fn(void *ud, int status, const char *retry_after, const char *body,
                          size_t len);

/*
 * A shard's checkpoint as the cluster keeps it: the resume point, plus the bridge's own
 * encoding of the whole checkpoint (per-webhook acknowledgements), opaque here.
 */
struct cl_checkpoint {
    int shard;
    char session_id[128]; /* "" when the shard has no session to resume */
    char resume_url[512];
    uint64_t seq;     /* the highest s every webhook acknowledged: RESUME starts there */
    const char *blob; /* the bridge's encoding; borrowed for the length of a call */
    size_t blob_len;
};

/*
 * What the coordination thread does to this node's shards; bridge/main.c fills it. Each call
 * only queues work for the gateway or delivery thread and returns at once.
 */
struct cl_node_ops {
    /* Start holding shard from cp (cp->session_id "": IDENTIFY). 0 or a negative SH_E code. */
    int (*hold)(void *ud, const struct cl_checkpoint *cp);
    /* Stop holding shard at once: close with 4000, discard its unacknowledged events. */
    void (*release)(void *ud, int shard);
    /*
     * Handoff, step one: close shard's socket with 4000, and once it is gone wait up to
     * timeout_ms for its in-flight acknowledgements; then call cl_cluster_drained() (any
     * thread) with the final checkpoint (NULL: none; the newest written goes instead). 0, or
     * negative when it cannot start (the shard is then released).
     */
    int (*drain)(void *ud, int shard, int timeout_ms);
    /* Fail static: held shards may connect again only before until_mono_ms (0: no limit). */
    void (*lease_deadline)(void *ud, uint64_t until_mono_ms);
    /*
     * Run a control command another node forwarded for a shard held here, exactly as the API
     * would (route: its label, e.g. "/v1/shards/{id}/send"; param: the path parameter; body:
     * len bytes, 0 none). done(dud, ...) runs once, on any thread, possibly before this
     * returns; a negative return means it will not. NULL: forwarded commands answer 500.
     */
    int (*execute)(void *ud, const char *route, const char *param, const char *body, size_t len,
                   cl_answer_fn *done, void *dud);
    void *ud;
};

/* The cluster as /v1/gateway and /v1/cluster show it (copied under a short lock). */
struct cl_status {
    int reachable;          /* Redis answered the last round trip */
    int degraded;           /* Redis unreachable: held shards run on, nothing moves */
    int shards_held;        /* by this node */
    int nodes_live;         /* nodes with a live lease, this one included */
    int budget_total;       /* the cluster-wide daily budget as Redis holds it, 0 unknown */
    int budget_remaining;   /* ... what is left of it */
    int budget_reserve;     /* IDENTIFYs stop cluster-wide when remaining reaches it */
    int identify_stopped;   /* 1 while the reserve holds IDENTIFYs back */
    uint64_t reset_at_wall; /* wall ms when the budget refills, 0 unknown */
    uint64_t epoch;         /* this node's epoch */
};

/*
 * Check cfg->cluster and connect nothing yet. ops is copied. On failure returns a negative code
 * and writes one line into err naming what is wrong.
 */
int cl_cluster_new(const struct cfg_config *cfg, const struct cl_node_ops *ops,
                   struct cl_cluster **out, char *err, size_t errlen);

/* The identify interface backed by Redis (rule 2); valid until cl_cluster_free. */
void cl_cluster_identify(struct cl_cluster *c, struct gw_identify *out);

/*
 * After the gateway's discovery: the bot's shard count, the shards this node may hold (ids,
 * ascending), the identify bucket count and a fingerprint of the webhook set. Connects, checks
 * `meta` (a node whose total, application or webhooks differ refuses to join: one line in err
 * saying which), registers the node and starts the coordination thread, which claims shards.
 * SH_ECONFIG for a refusal; SH_ENET when Redis cannot be reached at start.
 */
int cl_cluster_start(struct cl_cluster *c, int total, const int *ids, int n, int max_concurrency,
                     const char *webhooks_fingerprint, char *err, size_t errlen);

/* Delivery thread: the newest checkpoint of a held shard (copied; written to Redis, fenced). */
void cl_cluster_checkpoint(struct cl_cluster *c, const struct cl_checkpoint *cp);

/* Any thread: the drain that ops->drain started for shard ended; cp is its final checkpoint. */
void cl_cluster_drained(struct cl_cluster *c, int shard, const struct cl_checkpoint *cp);

/*
 * Any thread: hand shard off (rule 5) to target, or to the best live node with room when target
 * is NULL. 0 once under way; SH_ENOTFOUND when this node does not hold shard, SH_EAGAIN when no
 * other live node has room, SH_EINVAL for an unknown target, SH_ECLOSED when stopping.
 */
int cl_cluster_handoff(struct cl_cluster *c, int shard, const char *target);

/*
 * Graceful stop (SIGTERM): hand every held shard off to live nodes (rule 5) within timeout_ms,
 * write final checkpoints of what could not be handed off (keeping ownership: a restart under
 * the same name RESUMEs them at once), drop the node's registration and join the thread.
 */
void cl_cluster_stop(struct cl_cluster *c, int timeout_ms);

void cl_cluster_status(struct cl_cluster *c, struct cl_status *out);

/*
 * Where the coordination thread reads this node's shard statuses for the cluster's `status`
 * hash (about once a second): gw_gateway_snapshot's shape, called on that thread. Before
 * cl_cluster_start; without it the node writes no statuses (the view still lists the others).
 */
void cl_cluster_set_status_source(struct cl_cluster *c,
                                  int (*snapshot)(void *ud, struct gw_overview *ov,
                                                  struct gw_shard_info *shards, int cap),
                                  void *ud);

/*
 * Any thread, never blocks on Redis: the cluster as the coordination thread last read it (about
 * once a second), a cJSON object the caller frees (cJSON_Delete); NULL when out of memory.
 * {"node","total","degraded","reachable","read_at" (wall ms, 0 never),"redis_rtt_ms","lease_ms",
 *  "unclaimed" (shards this node should hold and does not),
 *  "nodes":[{"name","api","epoch","alive","lease_age_ms","held","max_shards","version",
 *            "started"}],
 *  "statuses":[{"id",...the status entry...,"stale"}],"gaps":[{"id","shard","session_id","seq",
 *  "reason","node"}],"budget":{"total","remaining","reserve","identify_stopped","reset_at"}}
 */
struct cJSON *cl_cluster_view(struct cl_cluster *c);

/* A control command for a shard another node holds (cl_cluster_forward). */
struct cl_forward {
    int shard;
    const char *route; /* the route's label */
    const char *param;
    const char *body; /* copied */
    size_t len;
    int timeout_ms; /* past it: 503 owner_unreachable naming the owner */
};

/*
 * Any thread, never blocks on Redis: send fw to the node holding its shard (read from Redis
 * with its fence, by the forwarding worker), which runs it through ops->execute; done(ud, ...)
 * runs once on the worker with its answer, or 503 owner_unreachable / owner_unknown /
 * cluster_degraded; a `moved` answer is retried once on the new owner. 0 queued; SH_EAGAIN while
 * Redis is unreachable (degraded); SH_ECLOSED when stopping; SH_EINVAL, SH_ENOMEM: done not run.
 */
int cl_cluster_forward(struct cl_cluster *c, const struct cl_forward *fw, cl_answer_fn *done,
                       void *ud);

/*
 * The owner of shard as the coordination thread's latest scan saw it, into name (cap bytes).
 * 0, or SH_ENOTFOUND (no owner known). Any thread; a short lock.
 */
int cl_cluster_owner(struct cl_cluster *c, int shard, char *name, size_t cap);

/* ---- the entity cache's snapshots (../docs/cache.md), key `cache:<id>` ------------------- */

/* Snapshots past this are refused (put) and never read (get): under proto-max-bulk-len. */
#define CL_CACHE_MAX_BYTES ((size_t)256 << 20)

/*
 * Store shard's snapshot (len bytes, replacing the last), written by a script only while this
 * node holds shard under the fence Redis has for it. 0; SH_EFENCED when not held here (or
 * Redis names another fence: the shard moved on); SH_ETOOBIG past CL_CACHE_MAX_BYTES; SH_ENET.
 * Any thread but the gateway's and delivery's: blocks on a connection of its own (up to about
 * 5 s when Redis is slow or gone), never on the coordination thread's.
 */
int cl_cluster_cache_put(struct cl_cluster *c, int shard, const void *data, size_t len);
/*
 * Read shard's snapshot into out (appended). 0; SH_ENOTFOUND when there is none; SH_ETOOBIG
 * (past CL_CACHE_MAX_BYTES, or out's cap); SH_ENET. Blocks like put; any thread, the
 * coordination thread's ops->hold included.
 */
int cl_cluster_cache_get(struct cl_cluster *c, int shard, struct sh_buf *out);

/* After cl_cluster_stop (or when start failed). */
void cl_cluster_free(struct cl_cluster *c);

#endif
