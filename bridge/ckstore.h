/*
 * bridge/ckstore.h: where checkpoints are kept, behind one small interface, so the ledger
 * (bridge/ledger.h) decides what to checkpoint and when, and the store only keeps it.
 *
 * A store keeps, per shard, the newest checkpoint handed to it. Two kinds of write:
 * - append: a change between snapshots (cheap: the file store appends a journal line);
 *   a store may answer SH_EAGAIN to ask for a snapshot instead;
 * - snapshot: the whole state, durable before it returns when sync=1 (the file store's
 *   atomic rename and fsyncs); it folds the appends in.
 * load returns the newest of both. The store owns its resources; the ledger calls it on the
 * delivery thread only, and bridge/main.c picks the implementation: today the files under
 * `<state_dir>/checkpoints/` (bridge/checkpoint.h); cluster mode adds one in Redis whose
 * writes carry the shard's fence.
 */
#ifndef SHARDHOOK_BR_CKSTORE_H
#define SHARDHOOK_BR_CKSTORE_H

#include "bridge/checkpoint.h"

struct br_ckstore;

struct br_ckstore_ops {
    /* The newest checkpoint of shard: 0, SH_ENOTFOUND (none), or SH_EPARSE/SH_EIO/... */
    int (*load)(struct br_ckstore *st, int shard, struct br_checkpoint *out);
    /* A change since the last write of cp->shard: 0, SH_EAGAIN (write a snapshot), SH_E... */
    int (*append)(struct br_ckstore *st, struct br_checkpoint *cp);
    /* The whole checkpoint of cp->shard; sync=1: durable once it returns 0. */
    int (*snapshot)(struct br_ckstore *st, struct br_checkpoint *cp, int sync);
    /* 1 when appends of shard wait for a durable snapshot (the next sync folds them in). */
    int (*unsynced)(const struct br_ckstore *st, int shard);
    /* Frees the store and what it holds (the file store closes its journals). */
    void (*free)(struct br_ckstore *st);
};

/* Implementations embed this first. `where` names the place in logs (a folder, a URL). */
struct br_ckstore {
    const struct br_ckstore_ops *ops;
    const char *where;
};

/*
 * The file store: `<state_dir>/checkpoints/shard-<id>.json` and its journal (created if
 * missing; a failure logs the folder). Fails with SH_EIO, SH_ETOOBIG or SH_ENOMEM.
 */
int br_ckstore_files_new(const char *state_dir, struct br_ckstore **out);

/*
 * Cluster mode: every write is also handed to put() (the cluster's coordination thread writes
 * the newest per shard to Redis with the shard's fence; put must copy and must not block).
 * Reads and durability are the inner store's (the files). The new store owns inner; on
 * failure (SH_ENOMEM) inner is freed too.
 */
struct br_ckstore_mirror {
    void (*put)(void *ud, const struct br_checkpoint *cp);
    void *ud;
};
int br_ckstore_mirrored_new(struct br_ckstore *inner, const struct br_ckstore_mirror *mirror,
                            struct br_ckstore **out);

static inline void br_ckstore_free(struct br_ckstore *st)
{
    if (st)
        st->ops->free(st);
}

#endif
