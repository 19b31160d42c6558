/*
 * tests/fuzz/fuzz_retry_after.c: libFuzzer harness for br_retry_after_parse (bridge/retry.c).
 *
 * The input is a Retry-After header value (up to its first NUL), parsed at a fixed wall clock.
 * What must hold whatever the bytes: only 0 or SH_EINVAL; a refusal leaves the output alone;
 * an answer is at most BR_RETRY_AFTER_MAX_MS; whole seconds give exactly seconds * 1000 (capped);
 * blanks around the value change nothing; and the answer never grows with a later clock.
 * Owns nothing else; any broken promise aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/retry.h"
#include "lib/errors.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

#define NOW_MS 1764000000000ull /* 2025-11-24T16:00:00Z */
#define UNTOUCHED 0xdeadbeefull

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse(const char *v, uint64_t now, uint64_t *ms)
{
    *ms = UNTOUCHED;
    int rc = br_retry_after_parse(v, now, ms);
    CHECK(rc == 0 || rc == SH_EINVAL);
    if (rc)
        CHECK(*ms == UNTOUCHED);
    else
        CHECK(*ms <= BR_RETRY_AFTER_MAX_MS);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exactly the string and its NUL: reads past it show under ASan */
    size_t n = strnlen((const char *)data, size);
    char *v = malloc(n + 1);
    CHECK(v != NULL);
    memcpy(v, data, n);
    v[n] = '\0';

    uint64_t ms, ms2;
    int rc = parse(v, NOW_MS, &ms);

    /* whole seconds: the exact product, capped */
    size_t b = strspn(v, " \t"), e = n;
    while (e > b && strchr(" \t\r\n", v[e - 1]))
        e--;
    if (e > b && e - b <= 64 && strspn(v + b, "0123456789") == e - b) {
        CHECK(rc == 0);
        uint64_t s = 0;
        for (size_t i = b; i < e && s <= BR_RETRY_AFTER_MAX_MS; i++)
            s = s * 10 + (uint64_t)(v[i] - '0');
        CHECK(ms == (s * 1000 > BR_RETRY_AFTER_MAX_MS ? BR_RETRY_AFTER_MAX_MS : s * 1000));
    }

    /* blanks around it change nothing (as long as the trimmed value is the same) */
    char *w = malloc(n + 5);
    CHECK(w != NULL);
    memcpy(w, " \t", 2);
    memcpy(w + 2, v, n);
    memcpy(w + 2 + n, "\r\n", 3);
    int rc2 = parse(w, NOW_MS, &ms2);
    CHECK(rc2 == rc && (rc || ms2 == ms));
    free(w);

    /* a later clock never asks for a longer wait */
    if (!rc) {
        CHECK(parse(v, NOW_MS + 5000, &ms2) == 0);
        CHECK(ms2 <= ms);
    }
    CHECK(br_retry_after_parse(NULL, NOW_MS, &ms) == SH_EINVAL);
    free(v);
    return 0;
}
