/*
 * bridge/ckstore.c: the file implementation of bridge/ckstore.h: one snapshot and one journal
 * per shard (bridge/checkpoint.h). The first write of this process for a shard is a snapshot,
 * so a journal never extends a snapshot an earlier run left.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/ckstore.h"
#include "lib/errors.h"
#include "lib/fileio.h"
#include "lib/log.h"

struct file_slot {
    int used;
    int snapshotted; /* this process wrote its snapshot: appends may go to the journal */
    struct br_ckpt_files f;
};

struct file_store {
    struct br_ckstore base;
    char dir[PATH_MAX - 64]; /* room for "/shard-<id>.journal" */
    struct file_slot *slots; /* by shard id */
    size_t n_slots;
};

/* The shard's slot, grown on first use; NULL for a bad id or out of memory. */
static struct file_slot *slot(struct file_store *fs, int shard)
{
    if (shard < 0 || shard > 65535)
        return NULL;
    if ((size_t)shard >= fs->n_slots) {
        size_t n = (size_t)shard + 1;
        struct file_slot *p = realloc(fs->slots, n * sizeof(*p));
        if (!p)
            return NULL;
        memset(p + fs->n_slots, 0, (n - fs->n_slots) * sizeof(*p));
        fs->slots = p;
        fs->n_slots = n;
    }
    struct file_slot *s = &fs->slots[shard];
    if (!s->used) {
        s->used = 1;
        br_ckpt_files_init(&s->f, shard);
    }
    return s;
}

static int files_load(struct br_ckstore *st, int shard, struct br_checkpoint *out)
{
    struct file_store *fs = (struct file_store *)st;
    struct file_slot *s = slot(fs, shard);
    return s ? br_checkpoint_read(fs->dir, &s->f, out) : SH_ENOMEM;
}

static int files_append(struct br_ckstore *st, struct br_checkpoint *cp)
{
    struct file_store *fs = (struct file_store *)st;
    struct file_slot *s = slot(fs, cp->shard);
    if (!s)
        return SH_ENOMEM;
    if (!s->snapshotted)
        return SH_EAGAIN;
    return br_checkpoint_append(fs->dir, &s->f, cp);
}

static int files_snapshot(struct br_ckstore *st, struct br_checkpoint *cp, int sync)
{
    struct file_store *fs = (struct file_store *)st;
    struct file_slot *s = slot(fs, cp->shard);
    if (!s)
        return SH_ENOMEM;
    int rc = br_checkpoint_write(fs->dir, &s->f, cp, sync);
    if (!rc)
        s->snapshotted = 1;
    return rc;
}

static int files_unsynced(const struct br_ckstore *st, int shard)
{
    const struct file_store *fs = (const struct file_store *)st;
    return shard >= 0 && (size_t)shard < fs->n_slots && fs->slots[shard].used &&
           fs->slots[shard].f.journal_bytes > 0;
}

static void files_free(struct br_ckstore *st)
{
    struct file_store *fs = (struct file_store *)st;
    for (size_t i = 0; i < fs->n_slots; i++)
        if (fs->slots[i].used)
            br_ckpt_files_close(fs->dir, &fs->slots[i].f);
    free(fs->slots);
    free(fs);
}

static const struct br_ckstore_ops files_ops = {
    .load = files_load,
    .append = files_append,
    .snapshot = files_snapshot,
    .unsynced = files_unsynced,
    .free = files_free,
};

int br_ckstore_files_new(const char *state_dir, struct br_ckstore **out)
{
    if (!state_dir)
        return SH_EINVAL;
    struct file_store *fs = calloc(1, sizeof(*fs));
    if (!fs)
        return SH_ENOMEM;
    const char *sd = state_dir;
    if (snprintf(fs->dir, sizeof(fs->dir), "%s/checkpoints", sd) >= (int)sizeof(fs->dir)) {
        log_error("msg=\"state_dir path too long\" state_dir=\"%s\"", sd);
        free(fs);
        return SH_ETOOBIG;
    }
    if (sh_mkdir_p(fs->dir)) {
        log_error("msg=\"cannot create a state folder\" dir=\"%s\" error=\"%s\"", fs->dir,
                  strerror(errno));
        free(fs);
        return SH_EIO;
    }
    fs->base.ops = &files_ops;
    fs->base.where = fs->dir;
    *out = &fs->base;
    return SH_OK;
}

/* ---- the mirrored store: the files, and every write handed to the cluster too ------------- */

struct mirror_store {
    struct br_ckstore base;
    struct br_ckstore *inner;
    struct br_ckstore_mirror mirror;
};

static int mirror_load(struct br_ckstore *st, int shard, struct br_checkpoint *out)
{
    struct br_ckstore *in = ((struct mirror_store *)st)->inner;
    return in->ops->load(in, shard, out);
}

/*
 * put() sees every checkpoint the ledger writes, even when the file write failed: the cluster's
 * copy is worth keeping current when the disk is not (the ledger tries the file again later).
 */
static int mirror_append(struct br_ckstore *st, struct br_checkpoint *cp)
{
    struct mirror_store *ms = (struct mirror_store *)st;
    int rc = ms->inner->ops->append(ms->inner, cp);
    if (rc != SH_EAGAIN) /* SH_EAGAIN: nothing written, a snapshot follows at once */
        ms->mirror.put(ms->mirror.ud, cp);
    return rc;
}

static int mirror_snapshot(struct br_ckstore *st, struct br_checkpoint *cp, int sync)
{
    struct mirror_store *ms = (struct mirror_store *)st;
    int rc = ms->inner->ops->snapshot(ms->inner, cp, sync);
    ms->mirror.put(ms->mirror.ud, cp);
    return rc;
}

static int mirror_unsynced(const struct br_ckstore *st, int shard)
{
    const struct br_ckstore *in = ((const struct mirror_store *)st)->inner;
    return in->ops->unsynced(in, shard);
}

static void mirror_free(struct br_ckstore *st)
{
    struct mirror_store *ms = (struct mirror_store *)st;
    br_ckstore_free(ms->inner);
    free(ms);
}

static const struct br_ckstore_ops mirror_ops = {
    .load = mirror_load,
    .append = mirror_append,
    .snapshot = mirror_snapshot,
    .unsynced = mirror_unsynced,
    .free = mirror_free,
};

int br_ckstore_mirrored_new(struct br_ckstore *inner, const struct br_ckstore_mirror *mirror,
                            struct br_ckstore **out)
{
    if (!inner || !mirror || !mirror->put) {
        br_ckstore_free(inner);
        return SH_EINVAL;
    }
    struct mirror_store *ms = calloc(1, sizeof(*ms));
    if (!ms) {
        br_ckstore_free(inner);
        return SH_ENOMEM;
    }
    ms->base.ops = &mirror_ops;
    ms->base.where = inner->where;
    ms->inner = inner;
    ms->mirror = *mirror;
    *out = &ms->base;
    return SH_OK;
}
