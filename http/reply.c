/*
 * http/reply.c: building answers for http/reply.h. Owns nothing beyond each reply's buffer.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/reply.h"
#include "lib/errors.h"

void http_reply_init(struct http_reply *r)
{
    memset(r, 0, sizeof(*r));
    sh_buf_init(&r->body, HTTP_MAX_ANSWER);
    r->content_type = "application/json";
}

void http_reply_free(struct http_reply *r)
{
    sh_buf_free(&r->body);
    r->status = 0;
}

static int put_json(struct http_reply *r, int status, cJSON *j)
{
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    sh_buf_reset(&r->body);
    r->static_body = NULL;
    r->content_type = "application/json";
    if (!text) {
        r->status = 500;
        sh_buf_append_str(&r->body, "{\"error\":{\"code\":\"internal\","
                                    "\"message\":\"out of memory while building the answer\"}}");
        return SH_ENOMEM;
    }
    int rc = sh_buf_append_str(&r->body, text);
    cJSON_free(text);
    if (rc) {
        sh_buf_reset(&r->body);
        r->status = 500;
        sh_buf_append_str(&r->body, "{\"error\":{\"code\":\"answer_too_large\","
                                    "\"message\":\"the answer exceeds the server's cap\"}}");
        return rc;
    }
    r->status = status;
    return 0;
}

int http_reply_json(struct http_reply *r, int status, cJSON *j)
{
    return put_json(r, status, j);
}

int http_reply_error_with(struct http_reply *r, int status, const char *code, const char *msg,
                          cJSON *extra)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *err = cJSON_CreateObject();
    if (!root || !err) {
        cJSON_Delete(root);
        cJSON_Delete(err);
        cJSON_Delete(extra);
        return put_json(r, 500, NULL);
    }
    cJSON_AddStringToObject(err, "code", code);
    cJSON_AddStringToObject(err, "message", msg);
    cJSON_AddItemToObject(root, "error", err);
    if (extra) {
        while (extra->child) {
            cJSON *item = cJSON_DetachItemViaPointer(extra, extra->child);
            cJSON_AddItemToObject(root, item->string, item);
        }
        cJSON_Delete(extra);
    }
    return put_json(r, status, root);
}

int http_reply_error(struct http_reply *r, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return http_reply_error_with(r, status, code, msg, NULL);
}

void http_reply_retry_after(struct http_reply *r, double seconds)
{
    double s = ceil(seconds);
    if (!(s >= 1))
        s = 1;
    if (s > 86400)
        s = 86400;
    snprintf(r->retry_after, sizeof(r->retry_after), "%.0f", s);
}
