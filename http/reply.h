/*
 * http/reply.h: one control API answer under construction (status, body, the few headers
 * the API uses) and the JSON error shape every failure shares:
 *     {"error":{"code":"snake_case","message":"one sentence"}}
 * Owns only the reply's buffer; server.c turns it into an MHD response.
 */
#ifndef SHARDHOOK_HTTP_REPLY_H
#define SHARDHOOK_HTTP_REPLY_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "lib/buf.h"

#define HTTP_MAX_ANSWER ((size_t)64 << 20) /* one answer body: merged member lists are big */

struct http_reply {
    int status;              /* 0 until set */
    struct sh_buf body;      /* capped at HTTP_MAX_ANSWER */
    const char *static_body; /* instead of body: constant text, not copied (status page) */
    size_t static_len;
    const char *content_type; /* default "application/json" */
    char retry_after[16];     /* Retry-After seconds, "" for none */
    char allow[32];           /* Allow header with 405 */
    int www_authenticate;     /* 1: add WWW-Authenticate: Bearer with 401 */
};

void http_reply_init(struct http_reply *r);
void http_reply_free(struct http_reply *r);

/* Set status and the error body; message is printf-formatted and JSON-escaped. */
int http_reply_error(struct http_reply *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/*
 * Same, with the members of extra (an object, may be NULL) added beside "error" (a timeout
 * returns what arrived). Takes ownership of extra.
 */
int http_reply_error_with(struct http_reply *r, int status, const char *code, const char *msg,
                          cJSON *extra);
/* Print j into the body with status; takes ownership of j. 500 when printing fails. */
int http_reply_json(struct http_reply *r, int status, cJSON *j);
/* Retry-After in whole seconds, at least 1. */
void http_reply_retry_after(struct http_reply *r, double seconds);

#endif
