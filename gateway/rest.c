/*
 * gateway/rest.c: the blocking `/gateway/bot` call of gateway/rest.h (libcurl easy,
 * cJSON for the small answer). Owns no state between calls.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/rest.h"
#include "lib/buf.h"
#include "lib/errors.h"
#include "lib/log.h"
#include "lib/rand.h"

#define BODY_CAP (64 * 1024)

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct sh_buf *b = ud;
    return sh_buf_append(b, p, size * n) ? 0 : size * n;
}

int gw__rest_parse_bot(const char *body, size_t len, struct gw_bot_info *out)
{
    memset(out, 0, sizeof(*out));
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root)
        return SH_EPARSE;
    int rc = SH_EPARSE;
    cJSON *url = cJSON_GetObjectItemCaseSensitive(root, "url");
    cJSON *shards = cJSON_GetObjectItemCaseSensitive(root, "shards");
    cJSON *ssl = cJSON_GetObjectItemCaseSensitive(root, "session_start_limit");
    if (!cJSON_IsString(url) || strlen(url->valuestring) >= sizeof(out->url) ||
        !cJSON_IsNumber(shards) || shards->valuedouble < 1 || !cJSON_IsObject(ssl))
        goto out;
    snprintf(out->url, sizeof(out->url), "%s", url->valuestring);
    out->shards = (int)shards->valuedouble;
    cJSON *v;
    v = cJSON_GetObjectItemCaseSensitive(ssl, "total");
    out->session_total = cJSON_IsNumber(v) ? (int)v->valuedouble : 1000;
    v = cJSON_GetObjectItemCaseSensitive(ssl, "remaining");
    out->session_remaining = cJSON_IsNumber(v) ? (int)v->valuedouble : out->session_total;
    v = cJSON_GetObjectItemCaseSensitive(ssl, "reset_after");
    out->reset_after_ms = cJSON_IsNumber(v) && v->valuedouble > 0 ? (uint64_t)v->valuedouble : 0;
    v = cJSON_GetObjectItemCaseSensitive(ssl, "max_concurrency");
    out->max_concurrency = cJSON_IsNumber(v) && v->valuedouble >= 1 ? (int)v->valuedouble : 1;
    rc = SH_OK;
out:
    cJSON_Delete(root);
    return rc;
}

/* retry_after seconds from a 429 body, or -1. */
static double body_retry_after(const struct sh_buf *b)
{
    if (!b->len)
        return -1;
    cJSON *root = cJSON_ParseWithLength(b->data, b->len);
    double ra = -1;
    cJSON *v = root ? cJSON_GetObjectItemCaseSensitive(root, "retry_after") : NULL;
    if (cJSON_IsNumber(v) && v->valuedouble >= 0)
        ra = v->valuedouble;
    cJSON_Delete(root);
    return ra;
}

/* libcurl calls this about once a second even while no byte moves: a stop ends the request. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    volatile int *stop = ud;
    return stop && *stop;
}

static void sleep_ms(uint64_t ms, volatile int *stop)
{
    while (ms > 0 && !(stop && *stop)) {
        uint64_t step = ms < 100 ? ms : 100;
        struct timespec ts = {(time_t)(step / 1000), (long)(step % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

/* One GET of url: headers, body into body, timeouts, and a stop that ends it. */
static void set_request(CURL *c, const char *url, struct curl_slist *hdrs, struct sh_buf *body,
                        volatile int *stop)
{
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 15000L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, stop);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
}

/* After a 429: the body's retry_after, else the Retry-After header, plus 50 ms; else wait. */
static uint64_t retry_after_ms(CURL *c, const struct sh_buf *body, uint64_t wait)
{
    curl_off_t ra_hdr = -1;
    double ra = body_retry_after(body);
    if (ra < 0 && curl_easy_getinfo(c, CURLINFO_RETRY_AFTER, &ra_hdr) == CURLE_OK && ra_hdr >= 0)
        ra = (double)ra_hdr;
    return ra >= 0 ? (uint64_t)(ra * 1000.0) + 50 : wait;
}

int gw__rest_gateway_bot(const char *api_base, const char *token, int max_attempts,
                         volatile int *stop, struct gw_bot_info *out, char *err, size_t errlen)
{
    char url[1024], auth[1024];
    snprintf(url, sizeof(url), "%s/gateway/bot", api_base);
    if ((size_t)snprintf(auth, sizeof(auth), "Authorization: Bot %s", token) >= sizeof(auth)) {
        snprintf(err, errlen, "token: too long");
        return SH_EINVAL;
    }
    CURL *c = curl_easy_init();
    if (!c)
        return SH_ENOMEM;
    struct curl_slist *hdrs = curl_slist_append(NULL, auth);
    hdrs = curl_slist_append(hdrs, "User-Agent: DiscordBot (https://github.com/shardhook, 0.1)");
    struct sh_buf body;
    sh_buf_init(&body, BODY_CAP);
    int rc = SH_ENET;
    for (int attempt = 0; attempt < max_attempts; attempt++) {
        if (stop && *stop) {
            rc = SH_ECLOSED;
            snprintf(err, errlen, "stopped while fetching %s", url);
            break;
        }
        sh_buf_reset(&body);
        set_request(c, url, hdrs, &body, stop);
        CURLcode cc = curl_easy_perform(c);
        if (stop && *stop) {
            rc = SH_ECLOSED;
            snprintf(err, errlen, "stopped while fetching %s", url);
            break;
        }
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        uint64_t wait = sh_backoff_ms((unsigned)attempt, 500, 30000);
        if (cc != CURLE_OK) {
            rc = SH_ENET;
            snprintf(err, errlen, "GET %s failed: %s", url, curl_easy_strerror(cc));
        } else if (status == 200) {
            rc = gw__rest_parse_bot(body.data, body.len, out);
            if (rc)
                snprintf(err, errlen, "GET %s: answer not understood", url);
            break;
        } else if (status == 401) {
            rc = SH_EAUTH;
            snprintf(err, errlen,
                     "GET %s answered 401 Unauthorized: the bot token is wrong or was reset; "
                     "set \"token\" (or DISCORD_TOKEN) to the token from the developer portal",
                     url);
            break;
        } else if (status == 429) {
            rc = SH_ERATELIMIT;
            wait = retry_after_ms(c, &body, wait);
            snprintf(err, errlen, "GET %s answered 429; retrying in %llu ms", url,
                     (unsigned long long)wait);
        } else if (status >= 500 || status == 408) {
            rc = SH_EHTTP;
            snprintf(err, errlen, "GET %s answered %ld", url, status);
        } else {
            rc = SH_EHTTP;
            snprintf(err, errlen, "GET %s answered %ld; not retrying", url, status);
            break;
        }
        if (attempt + 1 < max_attempts) {
            log_warn(
                "msg=\"gateway discovery failed, retrying\" error=\"%s\" attempt=%d wait_ms=%llu",
                err, attempt + 1, (unsigned long long)wait);
            sleep_ms(wait, stop);
        }
    }
    sh_buf_free(&body);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return rc;
}
