/*
 * bridge/checkpoint.h: per-shard checkpoints in `<state_dir>/checkpoints/shard-<id>.json`:
 * the session (session_id, resume_gateway_url), the bot's shard count, `seq` (the highest s
 * every webhook acknowledged: RESUME starts there) and, per webhook, what it acknowledged
 * (`acked`: replayed events up to it are not sent to it again) and, after a graceful stop
 * that saved unsent batches to the spool, what the spool already holds (`queued`).
 *
 * Two files per shard hold it. The snapshot, `shard-<id>.json`, is written atomically (a
 * temporary file in the same folder, then rename(2)). The journal, `shard-<id>.journal`, takes
 * the writes in between as appended lines in the same format, one write(2) each: a rename per
 * acknowledgement costs a file creation and, on ext4, a forced writeback. Every line and
 * snapshot carries `n`, a per-shard write counter; the highest complete line wins. A snapshot
 * empties the journal after its rename, so a crash between the two leaves only older lines.
 * Owns only its files; not thread-safe (the delivery thread writes, main reads before it
 * starts).
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
    uint64_t n; /* write counter: between the snapshot and journal lines, the highest wins */
    int clean;  /* 1 when written by a graceful stop */
    size_t n_hooks;
    struct br_ckpt_hook hooks[BR_CKPT_MAX_HOOKS];
};

/* Append cp as one line of JSON to out. */
int br_checkpoint_encode(const struct br_checkpoint *cp, uint64_t wall_ms, struct sh_buf *out);
/* Parse a checkpoint; SH_EPARSE (with nothing written to out) when anything is off. */
int br_checkpoint_parse(const char *json, size_t len, struct br_checkpoint *out);

/* One shard's files: the open journal and the write counter. */
struct br_ckpt_files {
    int shard;
    int journal_fd;       /* -1 until the first journal line or a journal found at read */
    uint64_t n;           /* the last n written or read */
    size_t journal_bytes; /* complete lines in the journal; 0 right after a snapshot */
};

void br_ckpt_files_init(struct br_ckpt_files *f, int shard);
/* Close the journal; an empty one is removed. */
void br_ckpt_files_close(const char *dir, struct br_ckpt_files *f);

/*
 * Snapshot: write dir/shard-<id>.json atomically (dir must exist) with the next n, then empty
 * the journal. sync=1 also fsyncs the file before the rename and the folder after it
 * (sh_write_file_atomic). Returns 0 or SH_EIO/SH_ETOOBIG/SH_ENOMEM, or SH_EUNSYNCED when the
 * snapshot replaced the old one but its folder could not be synced.
 */
int br_checkpoint_write(const char *dir, struct br_ckpt_files *f, struct br_checkpoint *cp,
                        int sync);
/*
 * Journal: append cp with the next n as one line of dir/shard-<id>.journal. A failed append
 * leaves the journal as it was (0 or SH_EIO/SH_ETOOBIG/SH_ENOMEM); write a snapshot then.
 */
int br_checkpoint_append(const char *dir, struct br_ckpt_files *f, struct br_checkpoint *cp);
/*
 * The newest checkpoint of shard f->shard: the snapshot or a later journal line (a torn or
 * unparsable line is skipped). SH_ENOTFOUND when there is none, SH_EPARSE/SH_EIO/SH_ETOOBIG
 * when nothing usable was found. f->n becomes the highest n seen, so later writes win.
 */
int br_checkpoint_read(const char *dir, struct br_ckpt_files *f, struct br_checkpoint *out);

/* The webhook entry of cp with key, or NULL. */
const struct br_ckpt_hook *br_checkpoint_hook(const struct br_checkpoint *cp, const char *key);

#endif
