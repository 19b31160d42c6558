/* bridge/request.c: building webhook attempts (bridge/request.h). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge/request.h"
#include "bridge/retry.h"
#include "bridge/sign.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/log.h"

#define CONNECT_TIMEOUT_MS 10000
#define HEADER_LINE_MAX 8448 /* a header name and an 8192-byte value */
#define SIG_MAX 1024         /* 16 keys x "v1,<44 base64>" */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct br_request *r = ud;
    size_t len = size * n, room = sizeof(r->resp) - r->resp_len;
    size_t take = len < room ? len : room;
    memcpy(r->resp + r->resp_len, p, take);
    r->resp_len += take;
    if (take < len)
        r->resp_truncated = 1;
    if (r->want_actions && !r->act_truncated && sh_buf_append(&r->act, p, len))
        r->act_truncated = 1;
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct br_request *r = ud;
    size_t len = size * n;
    static const char name[] = "retry-after:";
    if (len > sizeof(name) - 1 && len < 256 && !strncasecmp(p, name, sizeof(name) - 1)) {
        char v[256];
        memcpy(v, p + sizeof(name) - 1, len - (sizeof(name) - 1));
        v[len - (sizeof(name) - 1)] = '\0';
        uint64_t ms;
        if (!br_retry_after_parse(v, sh_wall_ms(), &ms))
            r->retry_after_ms = (int64_t)ms;
    }
    return len;
}

static struct br_request *take(struct br_request_pool *pool)
{
    struct br_request *r = pool->free;
    if (r) {
        pool->free = r->next;
    } else {
        r = calloc(1, sizeof(*r));
        if (!r)
            return NULL;
        r->easy = curl_easy_init();
        if (!r->easy) {
            free(r);
            return NULL;
        }
        sh_buf_init(&r->act, BR_ACTIONS_BODY_MAX);
    }
    r->next = NULL;
    r->resp_len = 0;
    r->resp_truncated = 0;
    r->retry_after_ms = -1;
    r->want_actions = 0;
    sh_buf_reset(&r->act);
    r->act_truncated = 0;
    r->err[0] = '\0';
    return r;
}

void br_request_release(struct br_request_pool *pool, struct br_request *r)
{
    curl_slist_free_all(r->headers);
    r->headers = NULL;
    r->b = NULL;
    r->owner = NULL;
    r->next = pool->free;
    pool->free = r;
}

void br_request_pool_free(struct br_request_pool *pool)
{
    for (struct br_request *r = pool->free, *nx; r; r = nx) {
        nx = r->next;
        curl_easy_cleanup(r->easy);
        sh_buf_free(&r->act);
        free(r);
    }
    pool->free = NULL;
}

static struct curl_slist *add_header(struct curl_slist *list, int *ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static struct curl_slist *add_header(struct curl_slist *list, int *ok, const char *fmt, ...)
{
    char line[HEADER_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line)) {
        *ok = 0;
        return list;
    }
    struct curl_slist *l = curl_slist_append(list, line);
    if (!l) {
        *ok = 0;
        return list;
    }
    return l;
}

/* The attempt's headers; NULL-safe list in *out, 0 or SH_ENOMEM (a header did not fit). */
static int build_headers(const struct br_hookauth *a, size_t webhook, const struct br_batch *b,
                         struct curl_slist **out)
{
    int64_t ts = (int64_t)(sh_wall_ms() / 1000);
    int ok = 1;
    struct curl_slist *hl = NULL;
    hl = add_header(hl, &ok, "Content-Type: application/json");
    hl = add_header(hl, &ok, "User-Agent: shardhook/0.1");
    hl = add_header(hl, &ok, "Expect:");
    hl = add_header(hl, &ok, "webhook-id: %s", b->msg_id);
    hl = add_header(hl, &ok, "webhook-timestamp: %" PRId64, ts);
    if (a->n_secrets) {
        char sig[SIG_MAX];
        int rc = br_sign(a->secrets, a->n_secrets, b->msg_id, ts, b->body.data, b->body.len, sig,
                         sizeof(sig));
        if (rc) {
            static struct sh_log_limit lim;
            log_error_limited(&lim, "msg=\"cannot sign a batch\" webhook=%zu error=\"%s\"", webhook,
                              sh_strerror(rc));
            ok = 0;
        } else {
            hl = add_header(hl, &ok, "webhook-signature: %s", sig);
        }
    }
    for (size_t i = 0; i < a->n_headers; i++)
        hl = add_header(hl, &ok, "%s: %s", a->headers[i].name, a->headers[i].value);
    *out = hl;
    return ok ? SH_OK : SH_ENOMEM;
}

static void set_options(struct br_request *r, const struct cfg_webhook *w, const struct br_batch *b)
{
    CURL *c = r->easy;
    curl_easy_setopt(c, CURLOPT_URL, w->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, b->body.data);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)b->body.len);
    /*
     * libcurl copies a body through its upload buffer, one buffer per turn of the multi loop:
     * with the default 64 KiB a 4 MiB GUILD_CREATE took some 60 turns and twice the time on
     * loopback, while the shard's later batches waited for it. 2 MiB is libcurl's maximum; it
     * is allocated once per handle and only touched as far as the bodies it carried.
     */
    curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 2L << 20);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)w->timeout_ms);
    curl_easy_setopt(
        c, CURLOPT_CONNECTTIMEOUT_MS,
        (long)(w->timeout_ms < CONNECT_TIMEOUT_MS ? w->timeout_ms : CONNECT_TIMEOUT_MS));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->err);
    curl_easy_setopt(c, CURLOPT_PRIVATE, r);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
}

int br_request_new(struct br_request_pool *pool, const struct cfg_webhook *w,
                   const struct br_hookauth *a, size_t webhook, struct br_batch *b,
                   struct br_request **out)
{
    struct br_request *r = take(pool);
    if (!r)
        return SH_ENOMEM;
    int rc = build_headers(a, webhook, b, &r->headers);
    if (rc) {
        br_request_release(pool, r);
        return rc;
    }
    set_options(r, w, b);
    r->want_actions = w->actions;
    r->b = b;
    *out = r;
    return SH_OK;
}
