/*
 * bridge/ledger.c: the acknowledgement ledger of bridge/ledger.h. Owns the per-shard session
 * state and the per webhook x shard acknowledgement state; reaches the checkpoints only
 * through the store it was given.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/ledger.h"
#include "lib/errors.h"
#include "lib/log.h"

#define NO_GEN UINT32_MAX /* a session generation no shard has */

struct wsh { /* one webhook x one shard run here */
    uint32_t pending;
    uint64_t last_acked;
    uint64_t floor;
    uint64_t routed_max; /* highest s routed to the webhook in the current session */
};

struct lshard {
    int id;
    int held;         /* cluster mode: 0 until br_ledger_hold (and after a release) */
    uint32_t gen;     /* session_gen() of the current session: batches name it */
    int have_session; /* READY seen, or a checkpoint loaded */
    int from_checkpoint;
    char session_id[128];
    char resume_url[512];
    uint64_t seen;     /* highest s routed in the current session */
    uint64_t ckpt_seq; /* seq of the checkpoint loaded at start */
    int dirty;         /* its checkpoint may have changed */
    uint64_t written_seq, written_sum;
    uint32_t written_gen;
    int written;
    int snapshotted; /* this process wrote its snapshot: later writes may be appends */
    struct sh_log_limit lim_ckpt;
};

struct br_ledger {
    int total, n_local;
    struct lshard *shards;
    int32_t *local_of; /* shard id -> index in shards, -1 when not run here */
    size_t n_hooks;
    char (*keys)[BR_CKPT_KEY_MAX];
    int *saved;     /* per webhook: a graceful stop saved its unsent batches */
    struct wsh *ws; /* [hook * n_local + li] */
    struct br_ckstore *store;
    int urgent;       /* an acknowledgement or a new session: write before the next request */
    int any_dirty;    /* some shard's checkpoint may have changed */
    int any_unsynced; /* some shard's appends wait for the next durable snapshot */
    uint32_t holds;   /* holds so far: each one's generation differs from earlier ones */
    uint64_t last_ms, last_sync_ms;
    struct sh_metric_series *m_writes, *m_errors;
};

static struct wsh *ws_of(const struct br_ledger *l, size_t hook, int li)
{
    return &l->ws[hook * (size_t)l->n_local + (size_t)li];
}

/*
 * A session's generation, named in every batch entry: FNV-1a of its session_id, so batches a
 * stop saved still name the session after a restart. Never NO_GEN, never `differ_from`.
 */
static uint32_t session_gen(const char *session_id, uint32_t differ_from)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)session_id; *p; p++)
        h = (h ^ *p) * 16777619u;
    if (h == NO_GEN)
        h--;
    if (h == differ_from)
        h = h == 0 ? 1 : h - 1;
    return h;
}

int br_ledger_new(int total, const int *shard_ids, int n, const char *const *hook_keys,
                  size_t n_hooks, struct br_ckstore *store, struct br_ledger **out)
{
    if (total < 1 || n < 0 || n > total || n_hooks > BR_CKPT_MAX_HOOKS)
        return SH_EINVAL;
    struct br_ledger *l = calloc(1, sizeof(*l));
    if (!l)
        return SH_ENOMEM;
    l->total = total;
    l->n_local = n;
    l->n_hooks = n_hooks;
    l->store = store;
    l->shards = calloc(n ? (size_t)n : 1, sizeof(*l->shards));
    l->local_of = malloc((size_t)total * sizeof(*l->local_of));
    l->keys = calloc(n_hooks ? n_hooks : 1, sizeof(*l->keys));
    l->saved = calloc(n_hooks ? n_hooks : 1, sizeof(*l->saved));
    l->ws = calloc(n_hooks && n ? n_hooks * (size_t)n : 1, sizeof(*l->ws));
    if (!l->shards || !l->local_of || !l->keys || !l->saved || !l->ws) {
        br_ledger_free(l);
        return SH_ENOMEM;
    }
    for (int i = 0; i < total; i++)
        l->local_of[i] = -1;
    for (int i = 0; i < n; i++) {
        if (shard_ids[i] < 0 || shard_ids[i] >= total || l->local_of[shard_ids[i]] >= 0) {
            br_ledger_free(l);
            return SH_EINVAL;
        }
        l->shards[i].id = shard_ids[i];
        l->shards[i].held = 1;
        l->local_of[shard_ids[i]] = i;
    }
    for (size_t i = 0; i < n_hooks; i++)
        snprintf(l->keys[i], sizeof(l->keys[i]), "%s", hook_keys[i]);
    *out = l;
    return SH_OK;
}

void br_ledger_free(struct br_ledger *l)
{
    if (!l)
        return;
    free(l->shards);
    free(l->local_of);
    free(l->keys);
    free(l->saved);
    free(l->ws);
    free(l);
}

void br_ledger_set_metrics(struct br_ledger *l, struct sh_metric_series *writes,
                           struct sh_metric_series *errors)
{
    l->m_writes = writes;
    l->m_errors = errors;
}

int br_ledger_local(const struct br_ledger *l, uint32_t shard)
{
    return shard < (uint32_t)l->total ? l->local_of[shard] : -1;
}

int br_ledger_shard_id(const struct br_ledger *l, int li)
{
    return l->shards[li].id;
}

uint32_t br_ledger_gen(const struct br_ledger *l, int li)
{
    return l->shards[li].gen;
}

/* ---- start: checkpoints and adopted batches ---------------------------------------------- */

static void restore(struct br_ledger *l, int li, const struct br_checkpoint *cp, const int *adopted)
{
    struct lshard *s = &l->shards[li];
    s->have_session = s->from_checkpoint = 1;
    snprintf(s->session_id, sizeof(s->session_id), "%s", cp->session_id);
    snprintf(s->resume_url, sizeof(s->resume_url), "%s", cp->resume_url);
    s->seen = s->ckpt_seq = cp->seq;
    s->gen = session_gen(cp->session_id, NO_GEN);
    for (size_t i = 0; i < l->n_hooks; i++) {
        const struct br_ckpt_hook *e = br_checkpoint_hook(cp, l->keys[i]);
        uint64_t acked = e && e->acked > cp->seq ? e->acked : cp->seq, floor = acked;
        /* what the saved spool holds is not to come again from the replay either */
        if (e && e->queued > floor && adopted && adopted[i])
            floor = e->queued;
        ws_of(l, i, li)->last_acked = acked;
        ws_of(l, i, li)->floor = floor;
    }
    s->written = 1;
    s->written_seq = cp->seq;
}

void br_ledger_load(struct br_ledger *l, const int *adopted)
{
    struct br_checkpoint *cp = calloc(1, sizeof(*cp));
    for (int li = 0; cp && li < l->n_local; li++) {
        struct lshard *s = &l->shards[li];
        memset(cp, 0, sizeof(*cp));
        int rc = l->store->ops->load(l->store, s->id, cp);
        if (rc == SH_ENOTFOUND)
            continue;
        if (rc) {
            log_warn("msg=\"unreadable checkpoint ignored; the shard identifies\" shard=%d "
                     "dir=\"%s\" error=\"%s\"",
                     s->id, l->store->where, sh_strerror(rc));
        } else if (cp->total != l->total || cp->shard != s->id) {
            log_warn("msg=\"checkpoint for another shard count ignored; the shard identifies\" "
                     "shard=%d checkpoint_shard_count=%d shard_count=%d",
                     s->id, cp->total, l->total);
        } else {
            restore(l, li, cp, adopted);
            log_info("msg=\"checkpoint loaded\" shard=%d seq=%" PRIu64, s->id, cp->seq);
        }
    }
    free(cp);
}

void br_ledger_adopt(struct br_ledger *l, size_t hook, const struct br_batch *b)
{
    for (uint32_t i = 0; i < b->n_shards; i++) {
        int li = br_ledger_local(l, b->shards[i].shard);
        if (li < 0 || !l->shards[li].held || !l->shards[li].from_checkpoint ||
            b->shards[i].gen != l->shards[li].gen)
            continue;
        struct wsh *ws = ws_of(l, hook, li);
        ws->pending++;
        if (b->shards[i].max_s > ws->routed_max)
            ws->routed_max = b->shards[i].max_s;
    }
}

int br_ledger_resume_info(const struct br_ledger *l, int shard_id, char *session_id, size_t sid_cap,
                          char *resume_url, size_t url_cap, uint64_t *seq)
{
    int li = shard_id < 0 ? -1 : br_ledger_local(l, (uint32_t)shard_id);
    if (li < 0 || !l->shards[li].from_checkpoint)
        return SH_ENOTFOUND;
    const struct lshard *s = &l->shards[li];
    snprintf(session_id, sid_cap, "%s", s->session_id);
    snprintf(resume_url, url_cap, "%s", s->resume_url);
    *seq = s->ckpt_seq;
    return SH_OK;
}

/* ---- cluster mode: shards held and released ------------------------------------------------ */

/* The shard's session and acknowledgements are forgotten: its batches no longer count. */
static void forget(struct br_ledger *l, int li)
{
    struct lshard *s = &l->shards[li];
    s->have_session = s->from_checkpoint = 0;
    s->session_id[0] = s->resume_url[0] = '\0';
    s->seen = s->ckpt_seq = 0;
    s->dirty = 0;
    s->written = 0;
    for (size_t i = 0; i < l->n_hooks; i++)
        *ws_of(l, i, li) = (struct wsh){0, 0, 0, 0};
}

/*
 * A hold's generation: unlike session_gen(), different for every hold of the same session, so
 * batches an earlier hold left (in flight, or in the spool) never count for this one.
 */
static uint32_t hold_gen(struct br_ledger *l, const char *session_id, uint32_t old)
{
    uint32_t g = session_gen(session_id, NO_GEN) ^ (++l->holds * 2654435761u);
    if (g == NO_GEN)
        g--;
    if (g == old)
        g = g == 0 ? 1 : g - 1;
    return g;
}

void br_ledger_hold(struct br_ledger *l, int li, const struct br_checkpoint *cp)
{
    struct lshard *s = &l->shards[li];
    forget(l, li);
    s->held = 1;
    if (cp && (!cp->session_id[0] || cp->total != l->total || cp->shard != s->id)) {
        if (cp->session_id[0])
            log_warn("msg=\"checkpoint for another shard count ignored; the shard identifies\" "
                     "shard=%d checkpoint_shard_count=%d shard_count=%d",
                     s->id, cp->total, l->total);
        cp = NULL;
    }
    s->gen = hold_gen(l, cp ? cp->session_id : "", s->gen);
    if (!cp)
        return; /* nothing to resume: the READY of the IDENTIFY starts the session */
    s->have_session = s->from_checkpoint = 1;
    snprintf(s->session_id, sizeof(s->session_id), "%s", cp->session_id);
    snprintf(s->resume_url, sizeof(s->resume_url), "%s", cp->resume_url);
    s->seen = s->ckpt_seq = cp->seq;
    for (size_t i = 0; i < l->n_hooks; i++) {
        /* `queued` is ignored: this process's spool does not hold what another one saved */
        const struct br_ckpt_hook *e = br_checkpoint_hook(cp, l->keys[i]);
        uint64_t acked = e && e->acked > cp->seq ? e->acked : cp->seq;
        ws_of(l, i, li)->last_acked = ws_of(l, i, li)->floor = acked;
    }
    s->dirty = l->any_dirty = 1; /* the first write of this hold: a snapshot here too */
}

void br_ledger_release(struct br_ledger *l, int li)
{
    forget(l, li);
    l->shards[li].held = 0;
}

int br_ledger_held(const struct br_ledger *l, int li)
{
    return l->shards[li].held;
}

uint64_t br_ledger_pending(const struct br_ledger *l, int li)
{
    uint64_t n = 0;
    for (size_t i = 0; i < l->n_hooks; i++)
        n += ws_of(l, i, li)->pending;
    return n;
}

/* ---- events and acknowledgements ---------------------------------------------------------- */

int br_ledger_session(struct br_ledger *l, int li, const char *session_id, const char *resume_url)
{
    struct lshard *s = &l->shards[li];
    if (s->have_session && !strcmp(session_id, s->session_id))
        return 0; /* replayed by a RESUME from 0: the same session goes on */
    s->gen = session_gen(session_id, s->gen);
    s->seen = 0;
    s->from_checkpoint = 0;
    for (size_t i = 0; i < l->n_hooks; i++)
        *ws_of(l, i, li) = (struct wsh){0, 0, 0, 0};
    if (*session_id && strlen(session_id) < sizeof(s->session_id)) {
        snprintf(s->session_id, sizeof(s->session_id), "%s", session_id);
        snprintf(s->resume_url, sizeof(s->resume_url), "%s",
                 strlen(resume_url) < sizeof(s->resume_url) ? resume_url : "");
        s->have_session = 1;
        l->urgent = 1; /* a crash from now on resumes this session */
    } else {
        s->have_session = 0;
        log_warn("msg=\"READY without a usable session_id; no checkpoint for this session\" "
                 "shard=%d",
                 s->id);
    }
    s->dirty = l->any_dirty = 1;
    return 1;
}

void br_ledger_seen(struct br_ledger *l, int li, uint64_t s)
{
    struct lshard *sh = &l->shards[li];
    if (s > sh->seen)
        sh->seen = s;
    sh->dirty = l->any_dirty = 1;
}

int br_ledger_wanted(const struct br_ledger *l, size_t hook, int li, uint64_t s)
{
    return !s || s > ws_of(l, hook, li)->floor; /* s 0: "s":null, nothing to compare */
}

void br_ledger_routed(struct br_ledger *l, size_t hook, int li, uint64_t s, int first)
{
    struct wsh *ws = ws_of(l, hook, li);
    if (s > ws->routed_max)
        ws->routed_max = s;
    if (!first)
        return;
    /* W's first unacknowledged batch of X: everything of X before it is settled (for an
       event without s, all that was seen: it must not pull the floor back) */
    if (!ws->pending) {
        const struct lshard *sh = &l->shards[li];
        uint64_t before = s ? s - 1 : (sh->seen > ws->floor ? sh->seen : ws->floor);
        if (before > ws->last_acked)
            ws->last_acked = before;
    }
    ws->pending++;
}

void br_ledger_settle(struct br_ledger *l, size_t hook, const struct br_batch *b)
{
    for (uint32_t i = 0; i < b->n_shards; i++) {
        const struct br_batch_shard *e = &b->shards[i];
        int li = br_ledger_local(l, e->shard);
        if (li < 0 || !l->shards[li].held || e->gen != l->shards[li].gen)
            continue; /* an earlier session's, or of a shard released: no longer counts */
        struct wsh *ws = ws_of(l, hook, li);
        if (ws->pending)
            ws->pending--;
        if (e->max_s > ws->last_acked)
            ws->last_acked = e->max_s;
        l->shards[li].dirty = l->any_dirty = 1;
    }
    l->urgent = 1;
}

void br_ledger_saved(struct br_ledger *l, size_t hook)
{
    l->saved[hook] = 1;
}

uint64_t br_ledger_acked(const struct br_ledger *l, size_t hook, int li)
{
    const struct wsh *ws = ws_of(l, hook, li);
    uint64_t seen = l->shards[li].seen;
    return ws->pending ? ws->last_acked : (seen > ws->floor ? seen : ws->floor);
}

uint64_t br_ledger_floor(const struct br_ledger *l, int li)
{
    uint64_t seq = l->shards[li].seen;
    for (size_t i = 0; i < l->n_hooks; i++) {
        uint64_t a = br_ledger_acked(l, i, li);
        if (i == 0 || a < seq)
            seq = a;
    }
    return seq;
}

/* ---- writing ------------------------------------------------------------------------------ */

/* cp from the ledger; *sum sums what each webhook acknowledged (a change in any shows). */
static void fill(const struct br_ledger *l, int li, int clean, struct br_checkpoint *cp,
                 uint64_t *sum)
{
    memset(cp, 0, sizeof(*cp));
    const struct lshard *s = &l->shards[li];
    cp->shard = s->id;
    cp->total = l->total;
    snprintf(cp->session_id, sizeof(cp->session_id), "%s", s->session_id);
    snprintf(cp->resume_url, sizeof(cp->resume_url), "%s", s->resume_url);
    *sum = 0;
    for (size_t i = 0; i < l->n_hooks; i++) {
        uint64_t a = br_ledger_acked(l, i, li);
        snprintf(cp->hooks[i].key, sizeof(cp->hooks[i].key), "%s", l->keys[i]);
        cp->hooks[i].acked = a;
        /* saved by this stop: the next start sends these from the spool, not from the replay */
        cp->hooks[i].queued =
            l->saved[i] && ws_of(l, i, li)->pending ? ws_of(l, i, li)->routed_max : 0;
        cp->n_hooks++;
        *sum = *sum * 1000003u + a;
    }
    cp->seq = br_ledger_floor(l, li);
    cp->clean = clean;
}

/*
 * Between durable ticks, a change is one append; the tick, the store's first write and a
 * graceful stop write the snapshot. Returns 0 when nothing was to write or it was written.
 */
static int write_shard(struct br_ledger *l, int li, int sync, int final)
{
    struct lshard *s = &l->shards[li];
    if (!s->have_session || !s->held)
        return SH_OK; /* cluster mode: a shard not held here writes nothing */
    struct br_checkpoint *cp = calloc(1, sizeof(*cp));
    if (!cp)
        return SH_ENOMEM;
    uint64_t sum;
    fill(l, li, final, cp, &sum);
    /* seq 0 too: nothing acknowledged yet, a RESUME from 0 still replays the whole session */
    int changed = !s->written || s->written_seq != cp->seq || s->written_sum != sum ||
                  s->written_gen != s->gen;
    int snapshot =
        final || !s->snapshotted || (sync && (changed || l->store->ops->unsynced(l->store, s->id)));
    int rc = SH_OK;
    if (snapshot || changed) {
        rc = snapshot ? SH_EAGAIN : l->store->ops->append(l->store, cp);
        if (rc)
            rc = l->store->ops->snapshot(l->store, cp, sync);
        if (!rc && snapshot)
            s->snapshotted = 1;
        if (rc) {
            sh_series_add(l->m_errors, 1);
            log_error_limited(&s->lim_ckpt,
                              "msg=\"cannot write a checkpoint\" shard=%d dir=\"%s\" error=\"%s\"",
                              s->id, l->store->where, sh_strerror(rc));
        } else {
            sh_series_add(l->m_writes, 1);
            s->written = 1;
            s->written_seq = cp->seq;
            s->written_sum = sum;
            s->written_gen = s->gen;
        }
    }
    free(cp);
    return rc;
}

void br_ledger_flush(struct br_ledger *l, uint64_t now, int final)
{
    if (!final && !l->urgent && now - l->last_ms < BR_LEDGER_LAZY_MS)
        return;
    l->urgent = 0;
    int sync = final || now - l->last_sync_ms >= BR_LEDGER_FSYNC_MS;
    int wrote = 0;
    for (int i = 0; i < l->n_local; i++) {
        struct lshard *s = &l->shards[i];
        if (!final && !s->dirty && !(sync && l->store->ops->unsynced(l->store, s->id)))
            continue;
        if (!write_shard(l, i, sync, final))
            s->dirty = 0;
        wrote = 1;
    }
    l->last_ms = now;
    l->any_dirty = l->any_unsynced = 0;
    for (int i = 0; i < l->n_local; i++) {
        l->any_dirty |= l->shards[i].dirty; /* a write failed: try again later */
        l->any_unsynced |= l->store->ops->unsynced(l->store, l->shards[i].id);
    }
    if (sync && wrote)
        l->last_sync_ms = now;
}

void br_ledger_checkpoint(const struct br_ledger *l, int li, struct br_checkpoint *cp)
{
    uint64_t sum;
    fill(l, li, 0, cp, &sum);
    for (size_t i = 0; i < cp->n_hooks; i++)
        cp->hooks[i].queued = 0; /* never more than acknowledged: the next owner replays it */
}

uint64_t br_ledger_next_ms(const struct br_ledger *l)
{
    uint64_t next = UINT64_MAX;
    if (l->any_dirty)
        next = l->last_ms + BR_LEDGER_LAZY_MS;
    if (l->any_unsynced && l->last_sync_ms + BR_LEDGER_FSYNC_MS < next)
        next = l->last_sync_ms + BR_LEDGER_FSYNC_MS;
    return next;
}
