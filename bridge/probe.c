/*
 * bridge/probe.c: `shardhook --probe URL` (bridge/probe.h). A blocking libcurl easy
 * transfer in the calling thread, before anything else of the daemon starts.
 */
#include "bridge/probe.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

/* The Authorization header from BR_PROBE_TOKEN_ENV, or NULL (none, or out of memory). */
static struct curl_slist *auth_header(void)
{
    const char *token = getenv(BR_PROBE_TOKEN_ENV);
    if (!token || !*token)
        return NULL;
    size_t len = strlen("Authorization: Bearer ") + strlen(token) + 1;
    char *line = malloc(len);
    if (!line)
        return NULL;
    snprintf(line, len, "Authorization: Bearer %s", token);
    struct curl_slist *h = curl_slist_append(NULL, line);
    memset(line, 0, len);
    free(line);
    return h;
}

int br_probe(const char *url, long timeout_ms)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
        fprintf(stderr, "shardhook: --probe: cannot initialise libcurl\n");
        return 1;
    }
    CURL *c = curl_easy_init();
    if (!c) {
        fprintf(stderr, "shardhook: --probe: cannot initialise libcurl\n");
        curl_global_cleanup();
        return 1;
    }
    char err[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdrs = auth_header();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*"); /* the daemon itself, never through a proxy */
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "shardhook-probe");
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    int code = 1;
    if (rc != CURLE_OK)
        fprintf(stderr, "shardhook: --probe: %s\n", err[0] ? err : curl_easy_strerror(rc));
    else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (status / 100 == 2)
            code = 0;
        else
            fprintf(stderr, "shardhook: --probe: HTTP %ld\n", status);
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    curl_global_cleanup();
    return code;
}
