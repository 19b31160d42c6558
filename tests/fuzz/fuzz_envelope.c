/*
 * tests/fuzz/fuzz_envelope.c: libFuzzer harness for gw__envelope_scan (gateway/envelope.c).
 *
 * Feeds the input as one payload and checks what must hold whatever the bytes: on failure
 * env is untouched; on success t and d lie inside the input, t sits between quotes, and d,
 * wrapped alone in an envelope, scans again to the same bytes. Owns nothing else.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/envelope.h"
#include "lib/errors.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char mark[] = "untouched";
    const char *buf = (const char *)data;
    struct gw_envelope env = {
        .op = -7, .t = mark, .t_len = 3, .has_s = 5, .s = 9, .d = mark, .d_len = 4};
    int rc = gw__envelope_scan(buf, size, &env);
    if (rc) {
        CHECK(rc == SH_EPARSE);
        CHECK(env.op == -7 && env.t == mark && env.t_len == 3 && env.has_s == 5 && env.s == 9 &&
              env.d == mark && env.d_len == 4);
        return 0;
    }
    CHECK(env.op >= -1);
    CHECK(env.has_s == 0 || env.has_s == 1);
    if (env.t) {
        CHECK(env.t > buf && env.t + env.t_len < buf + size);
        CHECK(env.t[-1] == '"' && env.t[env.t_len] == '"');
        CHECK(memchr(env.t, '\\', env.t_len) == NULL);
    } else {
        CHECK(env.t_len == 0);
    }
    if (env.d) {
        CHECK(env.d > buf && env.d_len > 0 && env.d + env.d_len < buf + size);
        /* d is a whole JSON value on its own */
        size_t n = env.d_len + 6;
        char *w = malloc(n);
        CHECK(w != NULL);
        memcpy(w, "{\"d\":", 5);
        memcpy(w + 5, env.d, env.d_len);
        w[n - 1] = '}';
        struct gw_envelope again;
        CHECK(gw__envelope_scan(w, n, &again) == 0);
        CHECK(again.d == w + 5 && again.d_len == env.d_len && again.op == -1 && !again.t);
        free(w);
    } else {
        CHECK(env.d_len == 0);
    }
    return 0;
}
