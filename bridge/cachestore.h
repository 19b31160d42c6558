/*
 * bridge/cachestore.h: where the entity cache's snapshots are kept, and the warm restart
 * (../docs/cache.md, "Restarts and takeovers"). Fills cache/cache.h's struct ca_snapshot_io:
 * single-node mode writes `<state_dir>/cache/shard-<id>.snap` durably (lib/fileio.h's one
 * helper) and reads it back under a size cap; cluster mode keeps Redis's `cache:<id>` through
 * cl_cluster_cache_put/get (a fenced write). Decides where a shard RESUMEs from once its
 * snapshot is loaded, and runs the snapshot a handoff takes on a worker thread of its own, so
 * the delivery thread that ends the drain never waits for the cache or for Redis.
 */
#ifndef SHARDHOOK_BR_CACHESTORE_H
#define SHARDHOOK_BR_CACHESTORE_H

#include <stdint.h>

#include "cache/cache.h"

struct cl_cluster;
struct br_cachestore;

/* Snapshot files bigger than this are not read (a corrupt or foreign file): as cluster's cap. */
#define BR_CACHE_SNAP_MAX ((size_t)256 << 20)

/*
 * A store in state_dir (cluster NULL: single-node mode), or in Redis through *cluster, read
 * when called (it may be set after this, before the first snapshot or load). SH_ENOMEM.
 */
int br_cachestore_new(const char *state_dir, struct cl_cluster *const *cluster,
                      struct br_cachestore **out);
/* The io for ca_cache_new; valid until br_cachestore_free. */
struct ca_snapshot_io br_cachestore_io(struct br_cachestore *s);

/* Start the worker thread that takes handoff snapshots of cache (which must outlive it). */
int br_cachestore_start(struct br_cachestore *s, struct ca_cache *cache);
/*
 * Any thread: on the worker, write shard's snapshot (waiting at most timeout_ms), then call
 * then(arg) whatever came of it. 0 queued; SH_ECLOSED (not started, or stopping) or SH_ENOMEM:
 * then is not called, the caller goes on without the snapshot.
 */
int br_cachestore_snapshot_then(struct br_cachestore *s, int shard, int timeout_ms,
                                void (*then)(void *arg), void *arg);
/* Join the worker (jobs still queued run their then() without a snapshot) and free. */
void br_cachestore_free(struct br_cachestore *s);

/*
 * Before shard (re)starts from a checkpoint of session_id at seq ("" session: it identifies):
 * load its snapshot into c and answer the s to RESUME from: the snapshot's s when it is of
 * the same session and lower, else seq. A snapshot of another session is dropped (a stale
 * cache is served as if current, a cold one says `guild_loading` until GUILD_CREATE); a shard
 * that identifies loads none. Logs what it did. Any thread but the cache thread.
 */
uint64_t br_cache_warm(struct ca_cache *c, int shard, const char *session_id, uint64_t seq);

#endif
