/*
 * cluster/internal.h: what the files of cluster/ share about one node's coordination: struct
 * cl_cluster, the per-shard state the coordination thread keeps, the view of the other nodes,
 * and the functions each file offers the others (cl__ prefix). rank.c is pure (no Redis, no
 * clock); coord.c runs the thread (lease, fail static); scan.c reads `nodes` and the shards and
 * claims; move.c writes checkpoints and hands shards off; cluster.c is the public face. Nothing
 * outside cluster/ includes this.
 */
#ifndef SHARDHOOK_CL_INTERNAL_H
#define SHARDHOOK_CL_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/cluster.h"
#include "cluster/identify.h"
#include "cluster/redis.h"

#define CL__NAME_MAX 128  /* a node name, NUL included */
#define CL__MAX_NODES 64  /* nodes the view keeps; more are ignored */
#define CL__MAX_RANGES 64 /* ranges of shard ids a node announces it may hold */
#define CL__CLAIM_STEP_MS 300
#define CL__WRITE_EVERY_MS 1000 /* at most one checkpoint write per shard this often */
#define CL__DRAIN_MS 5000       /* rule 5: in-flight acknowledgements awaited this long */
#define CL__RECONNECT_MS 500
#define CL__SCAN_MS 500           /* `nodes` and the node keys */
#define CL__SWEEP_LEASES 3        /* every shard's owner every 3 x lease_ms when nothing changed */
#define CL__BALANCE_MS 1000       /* rule 6: at most one move per second */
#define CL__CACHE_TIMEOUT_MS 5000 /* a snapshot of megabytes: connect and each command */

/* ---- rank.c: who should hold what (pure) ----------------------------------------------- */

struct cl__range {
    int lo, hi; /* inclusive */
};

/* A node as the view knows it: from `nodes` (its JSON), its node key, and the shard scan. */
struct cl__node {
    char name[CL__NAME_MAX];
    uint64_t epoch; /* what node:<name> holds; 0: the key is gone (not live) */
    int held;       /* shards the last scan found owned by it under that epoch */
    int max_shards;
    int n_ranges; /* 0: may hold none */
    struct cl__range ranges[CL__MAX_RANGES];
    char api[256];
};

/* The rendezvous score of node for shard: higher ranks first. */
uint64_t cl__rank_score(int shard, const char *node);
/* 1 when node announced it may hold shard. */
int cl__node_may(const struct cl__node *node, int shard);
/*
 * Indices of live nodes that may hold shard and have room (held < max_shards), best first
 * (score descending, name breaking ties), into order (room for n). Returns their count.
 */
int cl__rank_order(int shard, const struct cl__node *nodes, int n, int *order);
/*
 * Spread the shards (ascending) over live nodes, counting what they hold already: each node ends
 * within one of an even share where eligibility and room allow, each shard going to the best
 * ranked node still under its share. assigned[i] is the node index for shards[i], or -1.
 */
void cl__rank_assign(const int *shards, int ns, const struct cl__node *nodes, int n, int *assigned);
/*
 * Rule 6: when node `me` holds more than ceil(share) of what live nodes hold, the live node with
 * room holding the fewest (at least two fewer than me), else -1.
 */
int cl__balance_target(const struct cl__node *nodes, int n, int me);
/* Of the shards movable[0..nm), the one target ranks best; -1 when none is eligible there. */
int cl__balance_shard(const int *movable, int nm, const struct cl__node *target);
/* "0-15,20" into ranges (at most cap; the rest dropped). Returns the count. */
int cl__ranges_parse(const char *s, struct cl__range *out, int cap);
/* ids (ascending) as "0-15,20" into out; ranges past CL__MAX_RANGES are dropped. */
void cl__ranges_format(const int *ids, int n, char *out, size_t cap);

/* ---- the node's state ------------------------------------------------------------------ */

/* A checkpoint owned by the cluster (the blob copied). */
struct cl__ck {
    int valid;
    char session_id[128];
    char resume_url[512];
    uint64_t seq;
    char *blob;
    size_t blob_len;
};

enum cl__state {
    CL__FREE = 0, /* not held here */
    CL__HELD,     /* held: checkpoints written with fence */
    CL__DRAINING, /* handoff under way: ops->drain called, waiting for cl_cluster_drained */
};

struct cl__shard {
    /* coordination thread only */
    int may;        /* this node may hold it */
    uint64_t fence; /* while held */
    uint64_t since_ms;
    uint64_t last_write_ms;
    struct cl__ck cur;        /* the newest checkpoint the thread knows */
    int unwritten;            /* cur not yet in Redis */
    char owner[CL__NAME_MAX]; /* the last scan's owner ("" none) */
    uint64_t owner_epoch;
    uint64_t orphan_ms;    /* when the owner was first seen gone; 0 owned by a live node */
    uint64_t claim_due_ms; /* when this node claims it (its rank's wait); 0 not a candidate */
    int claim_rank;        /* with claim_due_ms: this node's rank for it (0: first in line) */
    char target[CL__NAME_MAX];
    uint64_t drain_deadline_ms;
    uint64_t move_started_ms;
    /* under cl_cluster.mu */
    enum cl__state state;
    struct cl__ck pending; /* newest from cl_cluster_checkpoint */
    int dirty;
    struct cl__ck final; /* from cl_cluster_drained */
    int drained;
    uint64_t pub_fence;            /* fence while held here, 0 free: cache.c's snapshot writes */
    int req;                       /* cl_cluster_handoff asked */
    char req_target[CL__NAME_MAX]; /* "" best */
};

struct cl_cluster {
    const struct cfg_config *cfg;
    struct cl_node_ops ops;
    struct cl__redis *redis;
    struct cl__identify *ident;
    char prefix[96]; /* "shardhook:{app}:" */
    char app[40];
    char name[CL__NAME_MAX];
    int lease_ms, max_shards;
    /* set by start */
    int total, max_concurrency;
    struct cl__shard *shards; /* total of them */
    char may_ranges[1024];
    char fingerprint[256];
    uint64_t epoch;
    uint64_t started_wall_ms;
    /* coordination thread only */
    uint64_t registered_ms, last_renew_ms, last_ok_ms, next_reconnect_ms, quiet_until_ms;
    uint64_t next_scan_ms, next_shard_scan_ms, next_balance_ms, degraded_since_ms;
    int nodes_changed; /* the live set differs from the last shard scan's */
    int lease_gone;    /* a claim found node:<me> no longer ours: register again */
    int orphans;       /* shards the last scan found without a live owner */
    char last_cmd_id[64];
    struct cl__node nodes[CL__MAX_NODES];
    int n_nodes, me; /* me: index of this node in nodes, -1 absent */
    /* under mu */
    pthread_mutex_t mu;
    pthread_t thread;
    int thread_started;
    int stopping; /* cl_cluster_stop: hand off, then end */
    uint64_t stop_deadline_ms;
    int quit; /* end now (stop's end, or free without stop) */
    int degraded, reachable, held, live;
    struct cl__node pub_nodes[CL__MAX_NODES]; /* the view for cl_cluster_handoff */
    int pub_n;
    /* status.c: the status hash and the cluster view */
    int (*status_src)(void *ud, struct gw_overview *ov, struct gw_shard_info *s, int cap);
    void *status_ud;
    uint64_t next_status_ms;    /* coordination thread only */
    unsigned char *status_mine; /* per shard: this node wrote its entry; coordination thread */
    char *view;                 /* under mu: the last cluster view read (JSON text), NULL none */
    int unclaimed;              /* under mu: shards this node should hold and does not */
    struct sh_metric *m_budget, *m_nodes_live;
    /* metrics */
    struct sh_metric *m_renewals, *m_lease_failures, *m_claims, *m_takeovers, *m_handoffs;
    struct sh_metric *m_releases, *m_rtt, *m_held, *m_degraded;
    struct cl__fwd *fwd; /* forwarded control commands (forward.c) */
    /* cache.c: entity cache snapshots, on a connection of their own (never this thread's) */
    pthread_mutex_t cache_mu;
    struct cl__redis *cache_redis; /* under cache_mu */
};

/* ms from then to now; 0 when then is later (a time taken after now was read). */
static inline uint64_t cl__since(uint64_t now, uint64_t then)
{
    return now > then ? now - then : 0;
}

/* cluster.c: copy a checkpoint in (blob copied; 0 or SH_ENOMEM) / free what it holds. */
int cl__ck_set(struct cl__ck *dst, const struct cl_checkpoint *src);
void cl__ck_move(struct cl__ck *dst, struct cl__ck *src);
void cl__ck_clear(struct cl__ck *ck);
/* The public form of ck for shard (blob borrowed). */
void cl__ck_view(const struct cl__ck *ck, int shard, struct cl_checkpoint *out);
/* this node's `nodes` JSON into out. */
void cl__node_info(struct cl_cluster *c, char *out, size_t cap);
/* Change shard's state under mu (and the held count); a shard held publishes its fence. */
void cl__set_state(struct cl_cluster *c, int shard, enum cl__state st);
/* Coordination thread: shard's fence changed while held; publish it for cache.c. */
void cl__publish_fence(struct cl_cluster *c, int shard);

/* coord.c: the thread. */
void *cl__coord_main(void *arg);
/* A Redis call failed (reply NULL): degraded from now on until it answers again. */
void cl__redis_lost(struct cl_cluster *c, const char *what);
/* register with this node's epoch; 0, SH_ENET. */
int cl__register(struct cl_cluster *c);
/* The `meta` check (one line in err on refusal: SH_ECONFIG); SH_ENET. */
int cl__meta_check(struct cl_cluster *c, char *err, size_t errlen);
/* Let go of shard here (ops->release) and log why. */
void cl__release(struct cl_cluster *c, int shard, const char *reason);

/* scan.c: the view, the claims, balance. */
int cl__scan_nodes(struct cl_cluster *c);
int cl__scan_shards(struct cl_cluster *c);
/* Claim shard (force 0) and hold it; kind names the log line. 0, 1 refused, SH_ENET. */
int cl__claim(struct cl_cluster *c, int shard, const char *kind, const char *from,
              uint64_t took_ms);
void cl__claims(struct cl_cluster *c, uint64_t now);
void cl__balance(struct cl_cluster *c, uint64_t now);
/* The best live node with room for shard other than this one, or -1. */
int cl__pick_target(struct cl_cluster *c, int shard);
int cl__find_node(const struct cl_cluster *c, const char *name);

/* move.c: checkpoints and handoffs. */
int cl__write_checkpoints(struct cl_cluster *c, uint64_t now, int all);
/* Write shard's newest checkpoint with its fence: 0, 1 released or reclaimed, SH_ENET. */
int cl__write_one(struct cl_cluster *c, int shard);
int cl__reassert(struct cl_cluster *c);
int cl__start_handoff(struct cl_cluster *c, int shard, const char *target, uint64_t now);
int cl__handoffs(struct cl_cluster *c, uint64_t now);
/* A drain's final checkpoint, when it came, becomes the shard's newest. */
void cl__take_final(struct cl_cluster *c, int shard);
int cl__read_commands(struct cl_cluster *c, int block_ms);

/* status.c: the status hash and the cluster view. */
#define CL__STATUS_MS 1000       /* status written and the view read this often */
#define CL__STATUS_STALE_MS 3000 /* a status older than this is stale */
/* Write this node's shards' statuses and read the cluster view when due; SH_ENET when lost. */
int cl__status_pass(struct cl_cluster *c, uint64_t now);
/* A shard's status entry: {"node",...the snapshot's fields...,"at"} (malloc'd; NULL: no memory). */
char *cl__status_encode(const char *node, const struct gw_shard_info *s, uint64_t at_wall_ms);
/* 1 when a status written at at_wall_ms by an owner whose lease is (alive) is stale at now. */
int cl__status_stale(uint64_t at_wall_ms, uint64_t now_wall_ms, int owner_alive);
void cl__status_free(struct cl_cluster *c);

#endif
