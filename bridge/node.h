/*
 * bridge/node.h: this node's shards as cluster mode moves them. Fills cluster/cluster.h's
 * struct cl_node_ops from the gateway (gw_gateway_hold/release/set_lease_deadline) and delivery
 * (br_delivery_hold/release/drain), and the checkpoint mirror (bridge/ckstore.h) that hands
 * every checkpoint delivery writes to the cluster, translating between the bridge's checkpoint
 * and the cluster's (whose blob is the bridge's one-line encoding). Owns no thread and no state
 * beyond its handles; with a cache, a held shard's snapshot is loaded first (RESUME from its s
 * when that is lower) and a shard handed off is snapshotted before ownership passes.
 * bridge/main.c keeps it alive until every thread that calls it ended.
 */
#ifndef SHARDHOOK_BR_NODE_H
#define SHARDHOOK_BR_NODE_H

#include "bridge/cachestore.h"
#include "bridge/ckstore.h"
#include "bridge/deliver.h"
#include "cluster/cluster.h"
#include "gateway/gateway.h"

struct http_server;

struct br_node {
    struct br_delivery *delivery;
    struct gw_gateway *gw;       /* set once the gateway exists, before the cluster starts */
    struct cl_cluster *cluster;  /* set once created, before any checkpoint is written */
    struct http_server *api;     /* set once the control API serves (forwarded commands) */
    struct ca_cache *cache;      /* with a `cache` block: loaded on hold, forgotten on release */
    struct br_cachestore *snaps; /* ... and its worker, which snapshots a shard handed off */
};

/* A handoff's cache snapshot waits this long at most (the drain's 5 s leave room for it). */
#define BR_NODE_CACHE_SNAPSHOT_MS 2000

/* The ops the cluster's coordination thread acts through; n must outlive the cluster. */
struct cl_node_ops br_node_ops(struct br_node *n);
/* The mirror for br_ckstore_mirrored_new; n must outlive delivery. */
struct br_ckstore_mirror br_node_mirror(struct br_node *n);
/* A fingerprint of the webhook set (their URLs in order), for the cluster's join check. */
void br_node_webhooks_fingerprint(const struct cfg_config *cfg, char *out, size_t cap);

#endif
