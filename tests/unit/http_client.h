/*
 * tests/unit/http_client.h: the control API's unit tests talk to a real server through libcurl:
 * one blocking request, its status, body (cut at 64 KiB) and the few headers the tests read
 * (Retry-After, ETag, Allow, WWW-Authenticate: Bearer). Static functions: each test file that
 * includes it gets its own copy.
 */
#ifndef SHARDHOOK_TESTS_UNIT_HTTP_CLIENT_H
#define SHARDHOOK_TESTS_UNIT_HTTP_CLIENT_H

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

struct resp {
    long status; /* 0 when the request failed */
    char body[1 << 16];
    size_t len;
    char retry_after[32];
    char etag[64];
    char allow[64];
    int www_auth; /* WWW-Authenticate: Bearer came */
};

static size_t t_http_on_body(char *p, size_t size, size_t n, void *ud)
{
    struct resp *r = ud;
    size_t k = size * n;
    if (r->len + k >= sizeof(r->body))
        k = sizeof(r->body) - 1 - r->len;
    memcpy(r->body + r->len, p, k);
    r->len += k;
    r->body[r->len] = '\0';
    return size * n;
}

/* The value of header line p (k bytes) into out when it is name's ("Name: "). */
static void t_http_take(const char *p, size_t k, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    if (k > n && !strncasecmp(p, name, n))
        snprintf(out, cap, "%.*s", (int)strcspn(p + n, "\r\n"), p + n);
}

static size_t t_http_on_header(char *p, size_t size, size_t n, void *ud)
{
    struct resp *r = ud;
    size_t k = size * n;
    t_http_take(p, k, "Retry-After: ", r->retry_after, sizeof(r->retry_after));
    t_http_take(p, k, "ETag: ", r->etag, sizeof(r->etag));
    t_http_take(p, k, "Allow: ", r->allow, sizeof(r->allow));
    if (k >= 24 && !strncasecmp(p, "WWW-Authenticate: Bearer", 24))
        r->www_auth = 1;
    return k;
}

/*
 * One request to url: method (HEAD asks for no body), body (NULL: none), headers (full header
 * lines, NULL-terminated; the array may be NULL). Fills *r; r->status 0 when it failed.
 */
static void t_http(const char *url, const char *method, const char *body,
                   const char *const *headers, struct resp *r)
{
    memset(r, 0, sizeof(*r));
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    for (size_t i = 0; headers && headers[i]; i++)
        h = curl_slist_append(h, headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, t_http_on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, t_http_on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

#endif
