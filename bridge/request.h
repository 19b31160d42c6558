/*
 * bridge/request.h: one webhook attempt as a libcurl easy handle: a closed batch and its
 * webhook's config and auth in, a handle ready for the multi loop out: the Standard Webhooks
 * headers (webhook-id, a fresh webhook-timestamp, webhook-signature), the webhook's extra
 * headers, timeouts, and the answer's body (kept up to BR_DEAD_RESPONSE_MAX for a dead
 * letter, and up to BR_ACTIONS_BODY_MAX for a webhook's actions) and Retry-After collected as
 * it arrives. Handles are reused through a pool, so
 * connections and buffers are too. Owns no delivery state; the delivery thread uses it.
 */
#ifndef SHARDHOOK_BR_REQUEST_H
#define SHARDHOOK_BR_REQUEST_H

#include <curl/curl.h>
#include <stdint.h>

#include "bridge/actions.h"
#include "bridge/batch.h"
#include "bridge/deadletter.h"
#include "bridge/hookauth.h"
#include "config/config.h"
#include "lib/buf.h"

struct br_request {
    struct br_request *next; /* the pool's free list */
    CURL *easy;              /* CURLOPT_PRIVATE points back here */
    struct curl_slist *headers;
    void *owner; /* the caller's (its webhook) */
    struct br_batch *b;
    char resp[BR_DEAD_RESPONSE_MAX];
    size_t resp_len;
    int resp_truncated;
    int64_t retry_after_ms; /* -1: no usable Retry-After */
    int want_actions;       /* the webhook runs the actions of 2xx answers: keep the body */
    struct sh_buf act;      /* the answer's body, up to BR_ACTIONS_BODY_MAX */
    int act_truncated;      /* the body was longer */
    char err[CURL_ERROR_SIZE];
};

struct br_request_pool {
    struct br_request *free;
};

/*
 * A handle for one attempt of b to w (webhook number `webhook`, for logs) signed with a's
 * secrets. Returns 0, or SH_ENOMEM (out of memory, a header too long, signing failed: logged).
 */
int br_request_new(struct br_request_pool *pool, const struct cfg_webhook *w,
                   const struct br_hookauth *a, size_t webhook, struct br_batch *b,
                   struct br_request **out);
/* Back to the pool (removed from any multi handle first by the caller). */
void br_request_release(struct br_request_pool *pool, struct br_request *r);
void br_request_pool_free(struct br_request_pool *pool);

#endif
