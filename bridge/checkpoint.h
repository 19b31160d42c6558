/*
 * bridge/checkpoint.h: per-shard checkpoints in `<state_dir>/checkpoints/shard-<id>.json`:
 * the session (session_id, resume_gateway_url), the bot's shard count, `seq` (the highest s
 * every webhook acknowledged: RESUME starts there) and, per webhook, what it acknowledged
 * (`acked`: replayed events up to it are not sent to it again) and, after a graceful stop
 * that saved unsent batches to the spool, what the spool already holds (`queued`).
 *
 * Written atomically: a temporary file in the same folder, then rename(2). Owns only
 * its files; not thread-safe (the delivery thread writes, main reads before it starts).
 */
#ifndef SHARDHOOK_BR_CHECKPOINT_H
#define SHARDHOOK_BR_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define BR_CKPT_MAX_HOOKS 64 /* the config's limit on webhooks */
#define BR_CKPT_KEY_MAX 24
#define BR_CKPT_MAX_BYTES 65536 /* a checkpoint file larger than this is refused */

struct br_ckpt_hook {
    char key[BR_CKPT_KEY_MAX]; /* webhook key: hash of its URL (bridge/deliver.c) */
    uint64_t acked;
    uint64_t queued; /* 0 when nothing was saved in the spool */
};

struct br_checkpoint {
    int shard;
    int total;
    char session_id[128];
    char resume_url[512];
    uint64_t seq;
    int clean; /* 1 when written by a graceful stop */
    size_t n_hooks;
    struct br_ckpt_hook hooks[BR_CKPT_MAX_HOOKS];
};

/* Append cp as one line of JSON to out. */
int br_checkpoint_encode(const struct br_checkpoint *cp, uint64_t wall_ms, struct sh_buf *out);
/* Parse a checkpoint; SH_EPARSE (with nothing written to out) when anything is off. */
int br_checkpoint_parse(const char *json, size_t len, struct br_checkpoint *out);

/*
 * Write dir/shard-<id>.json atomically (dir must exist). sync=1 also fsyncs the file before
 * the rename and the folder after it. Returns 0 or SH_EIO/SH_ETOOBIG/SH_ENOMEM.
 */
int br_checkpoint_write(const char *dir, const struct br_checkpoint *cp, int sync);
/* Read dir/shard-<id>.json: SH_ENOTFOUND when absent, SH_EPARSE/SH_EIO/SH_ETOOBIG otherwise. */
int br_checkpoint_read(const char *dir, int shard, struct br_checkpoint *out);

/* The webhook entry of cp with key, or NULL. */
const struct br_ckpt_hook *br_checkpoint_hook(const struct br_checkpoint *cp, const char *key);

#endif
