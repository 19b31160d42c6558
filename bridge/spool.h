/*
 * bridge/spool.h: one webhook's disk spool: closed batches past the webhook's memory limit,
 * kept in order in append-only segment files `<dir>/<20-digit number>.seg` and read back
 * head first. A segment is deleted once every record in it was read back.
 *
 * Record: "SHS1", meta length, body length, CRC-32 of meta+body (little-endian u32 each),
 * then the batch metadata (bridge/batch.h) and the body. A torn or corrupt record ends what
 * can be read of its segment; opening a spool truncates a torn tail.
 *
 * fsync policy: appends are never fsync'ed while running. The spool extends memory; it is
 * not what makes delivery crash-safe (checkpoints only advance on acknowledgements, so after
 * a crash Discord replays everything unacknowledged). br_spool_sync() fsyncs the segments
 * and the folder; delivery calls it at a graceful stop, before it marks the spool clean.
 *
 * Not thread-safe: the delivery thread owns it.
 */
#ifndef SHARDHOOK_BR_SPOOL_H
#define SHARDHOOK_BR_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "bridge/batch.h"

struct br_spool;

struct br_spool_stats {
    uint64_t bytes; /* on disk, records not yet read back */
    uint64_t batches;
    uint64_t events;
    uint64_t segments;
};

/*
 * Open the spool in dir (created if missing). keep=1 adopts segments already there (their
 * records come first; on_record, when not NULL, sees each one's metadata, oldest first);
 * keep=0 requires dir to hold none (SH_EINVAL otherwise). A new segment starts once the
 * current one would pass segment_bytes. Records whose body exceeds max_body are refused
 * (append) or treated as corrupt (read).
 */
int br_spool_open(const char *dir, int keep, size_t segment_bytes, size_t max_body,
                  void (*on_record)(void *ud, const char *meta, size_t meta_len), void *ud,
                  struct br_spool **out);
void br_spool_close(struct br_spool *sp);

/* Append a closed batch at the tail. SH_EIO (disk full...) leaves the spool as it was. */
int br_spool_append(struct br_spool *sp, const struct br_batch *b);
/*
 * Write n closed batches as a new segment before the head (a graceful stop saves the
 * batches that were in memory, which are older than everything spooled).
 */
int br_spool_prepend(struct br_spool *sp, struct br_batch *const *bs, size_t n);

/* Body+record bytes of the head record; SH_ENOTFOUND when empty. */
int br_spool_peek(struct br_spool *sp, size_t *record_bytes);
/*
 * Read and remove the head record into a new closed batch. SH_ENOTFOUND when empty;
 * SH_ECORRUPT when the head is unreadable: the rest of that segment is skipped (its bytes
 * reported in *skipped) and the next call goes on with the following segment. *adopted (may
 * be NULL) says whether the record was in a segment adopted at open (appends never go there).
 */
int br_spool_pop(struct br_spool *sp, struct br_batch **out, uint64_t *skipped, int *adopted);

int br_spool_sync(struct br_spool *sp);
void br_spool_stats(const struct br_spool *sp, struct br_spool_stats *st);

/* Record bytes a batch takes in the spool. */
size_t br_spool_record_size(const struct br_batch *b);

/*
 * The spool marker, `<root>/CLEAN` (root: the folder holding every webhook's spool), written
 * last by a graceful stop that saved unsent batches: {"version":1,"shard_count":N,
 * "webhooks":["key",...]}, the webhooks whose spool holds every batch they had not settled.
 * Only a marked spool is adopted at the next start.
 *
 * br_spool_marker_read: 1 when the marker is there and was written for shard_count total;
 * its keys (each under key_cap bytes) go to keys[i * key_cap], at most max_keys, *n_keys of
 * them. 0 otherwise (logged when it is there but does not fit).
 */
int br_spool_marker_read(const char *root, int total, char *keys, size_t key_cap, size_t max_keys,
                         size_t *n_keys);
/* Write the marker durably; a failure is logged (the next start then relies on the replay). */
int br_spool_marker_write(const char *root, int total, const char *const *keys, size_t n);
/* Remove the marker (adopted: a crash from here on must not adopt it again). */
void br_spool_marker_remove(const char *root);
/*
 * A spool folder dir an earlier run left without a marker: renamed to
 * `<root>/stale-<UTC time>-<key>` for the operator, never replayed. Logged, never fails.
 */
void br_spool_set_aside(const char *root, const char *dir, const char *key, size_t webhook);

#endif
