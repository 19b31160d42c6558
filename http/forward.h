/*
 * http/forward.h: what the files of http/ share about cluster mode's forwarded commands
 * (http/forward.c): taking a request for another node's shard, running a forwarded one here,
 * and merging the answers of a request split by owner (pure, unit-tested).
 */
#ifndef SHARDHOOK_HTTP_FORWARD_H
#define SHARDHOOK_HTTP_FORWARD_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "http/handlers.h"
#include "http/server.h"

/* One part's answer of a split request. */
struct http__part {
    int status;
    char retry_after[16];
    const char *body; /* JSON text, len bytes */
    size_t len;
};

/*
 * Merge the answers of a presence or soundboard request split by owner, as one node merges
 * them: all 2xx: the first one's status, with every part's "shards" (sorted) and "guilds";
 * else the first failure's status, error and Retry-After, with every other part's shards added
 * to its "queued" (sorted) and every part's "guilds" and "missing", in the order of the
 * request's guild ids (order, a JSON array; NULL: as they come). *body (cJSON_free it) holds
 * out->body. 0, SH_EINVAL (the base answer is not a JSON object), SH_ENOMEM.
 */
int http__merge_answers(const struct http__part *parts, int n, const cJSON *order,
                        struct http__part *out, char **body);

/*
 * From http_handle: when route targets a shard (or guilds, or shards) another node holds and
 * the cluster ops can forward, suspend the call and answer through the owners: returns 1 (the
 * answer follows by resume, or is in *r with call->suspended 0). 0: answer here as usual.
 */
int http__forward(struct http_ctx *ctx, struct http_call *call, enum http_route route,
                  const char *param, const char *body, size_t len, const cJSON *j,
                  struct http_reply *r);

/*
 * The server stops: every forwarded request still waiting answers 503 shutting_down and is
 * resumed now (answers that come later are dropped); new ones answer the same at once.
 */
void http__forward_stop(struct http_ctx *ctx);

/* http_server_execute on ctx. */
int http__execute(struct http_ctx *ctx, const char *route, const char *param, const char *body,
                  size_t len, http_answer_fn *done, void *ud);

#endif
