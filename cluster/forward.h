/*
 * cluster/forward.h: forwarded control commands inside cluster/ (forward.c): the worker's life,
 * the owning side's reader of `api` entries, and the encoding of a command and its answer as
 * stream fields (pure: the unit tests check them). Nothing outside cluster/ includes this.
 *
 * cmd:<owner> entry: type api, id <epoch>:<n> (the requester's epoch is unique), from <node>, fence
 * <owner's fence as the requester read it>, shard <id>, route <the route's label>, param <path
 * parameter>, timeout_ms <what is left of the requester's wait>, body <request body, may be empty>.
 * reply:<from> entry (MAXLEN ~ 1000, PEXPIRE 60 s): id, status <HTTP status> or moved 1,
 * retry_after <seconds or "">, body <the answer's JSON>.
 */
#ifndef SHARDHOOK_CL_FORWARD_H
#define SHARDHOOK_CL_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "cluster/cluster.h"

struct cl_cluster;

/* An answer as a reply entry carries it (borrowed from the entry). */
struct cl_answer {
    int status;
    const char *retry_after;
    const char *body;
    size_t len;
};

struct cl__api_cmd {
    char id[64];
    char from[128];
    uint64_t fence;
    int shard;
    char route[64];
    char param[128];
    int timeout_ms;
    const char *body; /* borrowed */
    size_t len;
};

/*
 * The field/value pairs of cmd into argv/lens (room for 18); bufs (cap >= 48) holds the numbers
 * printed. Returns the count.
 */
int cl__api_encode(const struct cl__api_cmd *cmd, const char **argv, size_t *lens, char *bufs,
                   size_t cap);
/* An `api` entry's fields into out (body borrowed from fields). 0, or SH_EINVAL. */
int cl__api_decode(const redisReply *fields, struct cl__api_cmd *out);
/* A reply entry's fields: its id, the answer (borrowed) or *moved. 0, or SH_EINVAL. */
int cl__answer_decode(const redisReply *fields, char *id, size_t idcap, struct cl_answer *a,
                      int *moved);

/* Start / stop (answering what waits with 503) / free the worker of c. */
int cl__fwd_start(struct cl_cluster *c);
void cl__fwd_stop(struct cl_cluster *c);
void cl__fwd_free(struct cl_cluster *c);
/* Coordination thread, after a shard scan: copy the owners for cl_cluster_owner. */
void cl__fwd_publish(struct cl_cluster *c);
/* Coordination thread: one `api` entry of cmd:<me>. */
void cl__api_command(struct cl_cluster *c, const redisReply *fields);

#endif
