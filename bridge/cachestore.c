/*
 * bridge/cachestore.c: the entity cache's snapshot storage and warm restarts
 * (bridge/cachestore.h). Owns the state folder's cache/ files, and one worker thread with its
 * queue of handoff snapshots (joined by br_cachestore_free).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bridge/cachestore.h"
#include "cluster/cluster.h"
#include "lib/errors.h"
#include "lib/fileio.h"
#include "lib/log.h"

struct job {
    struct job *next;
    int shard, timeout_ms;
    void (*then)(void *arg);
    void *arg;
};

struct br_cachestore {
    char dir[PATH_MAX]; /* <state_dir>/cache */
    struct cl_cluster *const *cluster;
    struct ca_cache *cache;
    pthread_t thread;
    int started, quit;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *head, *tail;
};

/* ---- single-node mode: files ---------------------------------------------------------------- */

static int file_path(const struct br_cachestore *s, int shard, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/shard-%d.snap", s->dir, shard);
    return n < 0 || (size_t)n >= cap ? SH_ETOOBIG : 0;
}

static int file_put(void *ud, int shard, const void *data, size_t len)
{
    struct br_cachestore *s = ud;
    char path[PATH_MAX];
    int rc = file_path(s, shard, path, sizeof(path));
    rc = rc ? rc : sh_mkdir_p(s->dir);
    return rc ? rc : sh_write_file_durable(path, data, len);
}

static int file_get(void *ud, int shard, struct sh_buf *out)
{
    struct br_cachestore *s = ud;
    char path[PATH_MAX], *data = NULL;
    size_t len = 0;
    struct stat st;
    int rc = file_path(s, shard, path, sizeof(path));
    if (!rc && stat(path, &st))
        rc = errno == ENOENT ? SH_ENOTFOUND : SH_EIO;
    else if (!rc && (uint64_t)st.st_size > BR_CACHE_SNAP_MAX)
        rc = SH_ETOOBIG; /* never read into memory */
    /* the size it has now, with room for a newer file that grew meanwhile */
    size_t cap = rc ? 0 : (size_t)st.st_size * 2 + 4096;
    rc = rc ? rc
            : sh_read_file(path, cap < BR_CACHE_SNAP_MAX ? cap : BR_CACHE_SNAP_MAX, &data, &len);
    if (rc == SH_ETOOBIG)
        log_warn("msg=\"cache snapshot too big; ignored\" shard=%d path=\"%s\" max_bytes=%zu",
                 shard, path, BR_CACHE_SNAP_MAX);
    rc = rc ? rc : sh_buf_append(out, data, len);
    free(data);
    return rc;
}

/* ---- cluster mode: Redis ------------------------------------------------------------------- */

static int redis_put(void *ud, int shard, const void *data, size_t len)
{
    struct br_cachestore *s = ud;
    return *s->cluster ? cl_cluster_cache_put(*s->cluster, shard, data, len) : SH_EFENCED;
}

static int redis_get(void *ud, int shard, struct sh_buf *out)
{
    struct br_cachestore *s = ud;
    return *s->cluster ? cl_cluster_cache_get(*s->cluster, shard, out) : SH_ENOTFOUND;
}

int br_cachestore_new(const char *state_dir, struct cl_cluster *const *cluster,
                      struct br_cachestore **out)
{
    struct br_cachestore *s = calloc(1, sizeof(*s));
    if (!s)
        return SH_ENOMEM;
    snprintf(s->dir, sizeof(s->dir), "%s/cache", state_dir ? state_dir : ".");
    s->cluster = cluster;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    *out = s;
    return 0;
}

struct ca_snapshot_io br_cachestore_io(struct br_cachestore *s)
{
    if (s->cluster)
        return (struct ca_snapshot_io){.put = redis_put, .get = redis_get, .ud = s};
    return (struct ca_snapshot_io){.put = file_put, .get = file_get, .ud = s};
}

/* ---- the handoff worker -------------------------------------------------------------------- */

static void *worker(void *arg)
{
    struct br_cachestore *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->quit)
            pthread_cond_wait(&s->cv, &s->mu);
        struct job *j = s->head;
        if (!j)
            break; /* quit, and nothing left */
        s->head = j->next;
        if (!s->head)
            s->tail = NULL;
        int quit = s->quit;
        pthread_mutex_unlock(&s->mu);
        int rc = quit ? SH_ECLOSED : ca_cache_snapshot(s->cache, j->shard, j->timeout_ms);
        if (rc)
            log_warn("msg=\"cache snapshot not written before the handoff; the next owner's "
                     "cache starts colder\" shard=%d error=\"%s\"",
                     j->shard, sh_strerror(rc));
        else
            log_info("msg=\"cache snapshot written for the handoff\" shard=%d", j->shard);
        j->then(j->arg);
        free(j);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int br_cachestore_start(struct br_cachestore *s, struct ca_cache *cache)
{
    s->cache = cache;
    if (pthread_create(&s->thread, NULL, worker, s))
        return SH_ENOMEM;
    s->started = 1;
    return 0;
}

int br_cachestore_snapshot_then(struct br_cachestore *s, int shard, int timeout_ms,
                                void (*then)(void *arg), void *arg)
{
    struct job *j = malloc(sizeof(*j));
    if (!j)
        return SH_ENOMEM;
    *j = (struct job){.shard = shard, .timeout_ms = timeout_ms, .then = then, .arg = arg};
    pthread_mutex_lock(&s->mu);
    int rc = s->started && !s->quit ? 0 : SH_ECLOSED;
    if (!rc) {
        if (s->tail)
            s->tail->next = j;
        else
            s->head = j;
        s->tail = j;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (rc)
        free(j);
    return rc;
}

void br_cachestore_free(struct br_cachestore *s)
{
    if (!s)
        return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->quit = 1;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- warm restarts ------------------------------------------------------------------------- */

uint64_t br_cache_warm(struct ca_cache *c, int shard, const char *session_id, uint64_t seq)
{
    if (!c || !session_id || !session_id[0])
        return seq; /* IDENTIFY: the new session's GUILD_CREATEs fill the cache */
    struct ca_snapshot_info info;
    memset(&info, 0, sizeof(info));
    int rc = ca_cache_load(c, shard, &info); /* logs what it loaded or why it ignored it */
    if (rc)
        return seq; /* none, or a bad one: the cache of this shard starts empty */
    if (strcmp(info.session_id, session_id)) {
        /* its guilds would be served as current while the events that changed them are lost */
        ca_cache_forget_shard(c, shard);
        log_warn("msg=\"cache snapshot of another session dropped\" shard=%d "
                 "snapshot_session=\"%s\" snapshot_s=%" PRIu64 " session=\"%s\"",
                 shard, info.session_id, info.s, session_id);
        return seq;
    }
    if (info.s < seq) {
        log_info("msg=\"resuming from the cache snapshot's s; the replay brings the cache up to "
                 "date\" shard=%d snapshot_s=%" PRIu64 " checkpoint_seq=%" PRIu64,
                 shard, info.s, seq);
        return info.s;
    }
    return seq;
}
