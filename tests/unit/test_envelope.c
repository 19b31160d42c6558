/*
 * tests/unit/test_envelope.c: gateway/envelope.c finds op, t, s and the exact span of d, and
 * refuses everything that is not one well-formed JSON object. Every input is copied into a
 * buffer of exactly its length, so a read past the end shows under the address sanitizer.
 */
#include <stdint.h>

#include "gateway/envelope.h"
#include "lib/errors.h"
#include "tests/unit/test.h"

/* Scan s[0..n) from a heap copy of exactly n bytes; env must not point into it afterwards. */
static int scan_n(const char *s, size_t n, struct gw_envelope *env, char **copy)
{
    char *c = malloc(n ? n : 1);
    if (!c)
        abort();
    memcpy(c, s, n);
    int rc = gw__envelope_scan(c, n, env);
    *copy = c;
    return rc;
}

/* Scan a C string; the copy stays alive (freed by the caller) so env's pointers can be read. */
static int scan(const char *s, struct gw_envelope *env, char **copy)
{
    return scan_n(s, strlen(s), env, copy);
}

static int scan_rc(const char *s, size_t n)
{
    struct gw_envelope env;
    char *copy;
    int rc = scan_n(s, n, &env, &copy);
    free(copy);
    return rc;
}

TEST(typical_dispatch)
{
    static const char msg[] =
        "{\"t\":\"MESSAGE_CREATE\",\"s\":42,\"op\":0,\"d\":{\"type\":0,\"tts\":false,"
        "\"timestamp\":\"2025-01-01T00:00:00.000000+00:00\",\"pinned\":false,\"mentions\":[],"
        "\"id\":\"1300000000000000000\",\"flags\":0,\"embeds\":[],\"content\":\"hi there\","
        "\"channel_id\":\"1200000000000000000\",\"author\":{\"username\":\"u\",\"id\":\"1\","
        "\"avatar\":null,\"bot\":true},\"attachments\":[],\"guild_id\":\"1100000000000000000\","
        "\"nonce\":12345,\"edited_timestamp\":null,\"score\":-1.5e+3}}";
    struct gw_envelope env;
    char *c;
    ASSERT_EQ(scan(msg, &env, &c), 0);
    ASSERT_EQ(env.op, 0);
    ASSERT_SPAN_EQ(env.t, env.t_len, "MESSAGE_CREATE");
    ASSERT_EQ(env.has_s, 1);
    ASSERT_EQ(env.s, 42);
    const char *d = strstr(msg, "\"d\":") + 4;
    ASSERT_EQ(env.d_len, strlen(d) - 1);
    ASSERT(memcmp(env.d, d, env.d_len) == 0);
    ASSERT(env.d > c && env.d + env.d_len == c + strlen(msg) - 1); /* points into the input */
    free(c);
}

TEST(keys_in_every_order_with_whitespace)
{
    static const char *members[4] = {"\"op\" : 0", "\"t\":\t\"READY\"", "\n\"s\": 7 ",
                                     "\"d\" :\r\n {\"v\" : 10 , \"x\" : [ 1 , { } , [ ] ] }"};
    int perm[24][4], np = 0;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++)
            for (int c = 0; c < 4; c++)
                for (int d = 0; d < 4; d++)
                    if (a != b && a != c && a != d && b != c && b != d && c != d) {
                        perm[np][0] = a, perm[np][1] = b, perm[np][2] = c, perm[np][3] = d;
                        np++;
                    }
    ASSERT_EQ(np, 24);
    for (int i = 0; i < np; i++) {
        char buf[256];
        snprintf(buf, sizeof(buf), " \n{ %s ,%s,\t%s , %s }\r\n ", members[perm[i][0]],
                 members[perm[i][1]], members[perm[i][2]], members[perm[i][3]]);
        struct gw_envelope env;
        char *c;
        ASSERT_EQ(scan(buf, &env, &c), 0);
        ASSERT_EQ(env.op, 0);
        ASSERT_SPAN_EQ(env.t, env.t_len, "READY");
        ASSERT_EQ(env.has_s, 1);
        ASSERT_EQ(env.s, 7);
        ASSERT_SPAN_EQ(env.d, env.d_len, "{\"v\" : 10 , \"x\" : [ 1 , { } , [ ] ] }");
        free(c);
    }
}

TEST(heartbeat_ack_and_nulls)
{
    struct gw_envelope env;
    char *c;
    ASSERT_EQ(scan("{\"op\":11,\"d\":null}", &env, &c), 0);
    ASSERT_EQ(env.op, 11);
    ASSERT(env.t == NULL);
    ASSERT_EQ(env.has_s, 0);
    ASSERT_SPAN_EQ(env.d, env.d_len, "null");
    free(c);

    ASSERT_EQ(scan("{\"t\":null,\"s\":null,\"op\":10,\"d\":{\"heartbeat_interval\":41250,"
                   "\"_trace\":[\"[\\\"gateway-prd\\\",{\\\"micros\\\":0.0}]\"]}}",
                   &env, &c),
              0);
    ASSERT_EQ(env.op, 10);
    ASSERT(env.t == NULL);
    ASSERT_EQ(env.t_len, 0);
    ASSERT_EQ(env.has_s, 0);
    ASSERT_SPAN_EQ(env.d, env.d_len,
                   "{\"heartbeat_interval\":41250,"
                   "\"_trace\":[\"[\\\"gateway-prd\\\",{\\\"micros\\\":0.0}]\"]}");
    free(c);

    /* op null reads as -1, like an absent op; absent d is NULL */
    ASSERT_EQ(scan("{\"op\":null,\"s\":0}", &env, &c), 0);
    ASSERT_EQ(env.op, -1);
    ASSERT_EQ(env.has_s, 1);
    ASSERT_EQ(env.s, 0);
    ASSERT(env.d == NULL);
    ASSERT_EQ(env.d_len, 0);
    free(c);

    ASSERT_EQ(scan(" { } ", &env, &c), 0);
    ASSERT_EQ(env.op, -1);
    ASSERT(env.t == NULL && env.d == NULL);
    ASSERT_EQ(env.has_s, 0);
    free(c);

    /* d of every kind */
    static const char *ds[] = {"true",    "false", "null", "0",    "-0",    "12.5e-3",
                               "\"str\"", "[]",    "{}",   "\"\"", "1E+10", "[null,true,false]"};
    for (size_t i = 0; i < sizeof(ds) / sizeof(ds[0]); i++) {
        char buf[128];
        snprintf(buf, sizeof(buf), "{\"op\":9,\"d\":%s}", ds[i]);
        ASSERT_EQ(scan(buf, &env, &c), 0);
        ASSERT_EQ(env.op, 9);
        ASSERT_SPAN_EQ(env.d, env.d_len, ds[i]);
        free(c);
    }
}

TEST(integer_limits)
{
    struct gw_envelope env;
    char *c;
    ASSERT_EQ(scan("{\"op\":2147483647,\"s\":18446744073709551615}", &env, &c), 0);
    ASSERT_EQ(env.op, 2147483647);
    ASSERT(env.s == UINT64_MAX);
    free(c);
    ASSERT_EQ(scan("{\"s\":1844674407370955161}", &env, &c), 0);
    ASSERT(env.s == 1844674407370955161ull);
    free(c);
    const char *bad[] = {"{\"op\":2147483648}",
                         "{\"op\":99999999999999999999}",
                         "{\"s\":18446744073709551616}",
                         "{\"s\":184467440737095516150}",
                         "{\"op\":-1}",
                         "{\"s\":-1}",
                         "{\"op\":1.0}",
                         "{\"op\":1e2}",
                         "{\"s\":1.5}",
                         "{\"s\":\"5\"}",
                         "{\"op\":\"0\"}",
                         "{\"op\":01}",
                         "{\"s\":00}",
                         "{\"op\":true}",
                         "{\"s\":-0}",
                         "{\"op\":}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (scan_rc(bad[i], strlen(bad[i])) != SH_EPARSE)
            T_FAIL_("accepted %s", bad[i]);
    }
}

TEST(escapes_in_d_strings)
{
    /* escaped quote and escaped backslash right before closing quotes, and every escape */
    static const char d[] = "{\"a\":\"x\\\"}\",\"b\":\"\\\\\",\"c\":\"\\\\\\\"\",\"e\":\"\\/\\b\\f"
                            "\\n\\r\\t\",\"k\\\"ey\\\\\":\"}]\\\"\"}";
    char buf[256];
    snprintf(buf, sizeof(buf), "{\"op\":0,\"d\":%s,\"s\":3,\"t\":\"X\"}", d);
    struct gw_envelope env;
    char *c;
    ASSERT_EQ(scan(buf, &env, &c), 0);
    ASSERT_SPAN_EQ(env.d, env.d_len, d);
    ASSERT_EQ(env.s, 3);
    ASSERT_SPAN_EQ(env.t, env.t_len, "X");
    free(c);
    /* a string holding only backslashes, then the end of d */
    ASSERT_EQ(scan("{\"d\":\"\\\\\\\\\"}", &env, &c), 0);
    ASSERT_SPAN_EQ(env.d, env.d_len, "\"\\\\\\\\\"");
    free(c);
}

TEST(unicode_raw_and_escaped)
{
    /* raw UTF-8 (2, 3, 4 bytes), \u escapes in both cases, a surrogate pair */
    static const char d[] = "{\"name\":\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x8e\x89\","
                            "\"esc\":\"\\u00e9\\u20AC\\uD83C\\uDF89\\u0000\"}";
    char buf[256];
    snprintf(buf, sizeof(buf), "{\"t\":\"GUILD_UPDATE\",\"d\":%s,\"op\":0}", d);
    struct gw_envelope env;
    char *c;
    ASSERT_EQ(scan(buf, &env, &c), 0);
    ASSERT_SPAN_EQ(env.d, env.d_len, d);
    free(c);
    /* raw UTF-8 across the 16-byte stride of the string scanner */
    for (int pad = 0; pad < 40; pad++) {
        char s[128] = "{\"d\":\"";
        size_t n = strlen(s);
        for (int i = 0; i < pad; i++)
            s[n++] = 'a';
        memcpy(s + n, "\xf0\x9f\x8e\x89\"}", 6);
        n += 6;
        ASSERT_EQ(scan_n(s, n, &env, &c), 0);
        ASSERT_EQ(env.d_len, (size_t)pad + 6);
        free(c);
    }
}

TEST(key_matching_is_exact)
{
    struct gw_envelope env;
    char *c;
    ASSERT_EQ(scan("{\"opx\":1,\"o\":2,\"OP\":3,\"tt\":\"A\",\"\":4,\"sd\":5,\"dd\":6,"
                   "\"\\u006fp\":7,\"op\":8,\"\\u0074\":9}",
                   &env, &c),
              0);
    ASSERT_EQ(env.op, 8);
    ASSERT(env.t == NULL);
    ASSERT_EQ(env.has_s, 0);
    ASSERT(env.d == NULL);
    free(c);
    /* unknown keys repeat freely; their values are skipped whatever they hold */
    ASSERT_EQ(scan("{\"_trace\":[\"a\",{\"b\":[1,2,{\"c\":null}]}],\"_trace\":{\"op\":5},"
                   "\"op\":10,\"d\":{\"op\":1,\"t\":\"x\"}}",
                   &env, &c),
              0);
    ASSERT_EQ(env.op, 10);
    ASSERT(env.t == NULL);
    ASSERT_SPAN_EQ(env.d, env.d_len, "{\"op\":1,\"t\":\"x\"}");
    free(c);
}

TEST(nesting_and_depth_cap)
{
    struct gw_envelope env;
    char *c;
    ASSERT_EQ(scan("{\"op\":0,\"d\":[[{\"a\":[{\"b\":{\"c\":[[],{},[{}]]}}]}],[[[1]]]]}", &env, &c),
              0);
    ASSERT_SPAN_EQ(env.d, env.d_len, "[[{\"a\":[{\"b\":{\"c\":[[],{},[{}]]}}]}],[[[1]]]]");
    free(c);
    /* 10,000 levels inside d are fine, 10,001 are refused, 200,000 do not blow the stack */
    size_t depths[] = {10000, 10001, 200000};
    for (int i = 0; i < 3; i++) {
        size_t n = depths[i];
        /* alternate arrays and objects: [ {"":[ {"": ... 1 ... }] }] */
        char *t = malloc(4 * n + 16);
        size_t len = 5;
        memcpy(t, "{\"d\":", 5);
        for (size_t k = 0; k < n; k++) {
            if (k % 2) {
                memcpy(t + len, "{\"\":", 4);
                len += 4;
            } else {
                t[len++] = '[';
            }
        }
        t[len++] = '1';
        for (size_t k = n; k-- > 0;)
            t[len++] = k % 2 ? '}' : ']';
        t[len++] = '}';
        int rc = scan_n(t, len, &env, &c);
        free(c);
        free(t);
        if (i == 0)
            ASSERT_EQ(rc, 0);
        else
            ASSERT_EQ(rc, SH_EPARSE);
    }
}

TEST(huge_d)
{
    /* a GUILD_CREATE-like payload of several MB */
    size_t cap = 6u << 20, n = 0;
    char *s = malloc(cap + 1024);
    n += (size_t)sprintf(s, "{\"t\":\"GUILD_CREATE\",\"s\":2,\"op\":0,\"d\":{\"members\":[");
    size_t d_at = strlen("{\"t\":\"GUILD_CREATE\",\"s\":2,\"op\":0,\"d\":");
    for (unsigned i = 0; n < cap; i++)
        n += (size_t)sprintf(
            s + n,
            "%s{\"user\":{\"id\":\"%u\",\"username\":\"member \\\"%u\\\" \xc3\xa9\","
            "\"bot\":false,\"avatar\":null},\"roles\":[\"1\",\"2\"],"
            "\"joined_at\":\"2024-01-01T00:00:00+00:00\",\"deaf\":false}",
            i ? "," : "", 100000 + i, i);
    n += (size_t)sprintf(s + n, "],\"id\":\"42\"}}");
    struct gw_envelope env;
    char *c;
    ASSERT_EQ(scan_n(s, n, &env, &c), 0);
    ASSERT_SPAN_EQ(env.t, env.t_len, "GUILD_CREATE");
    ASSERT_EQ(env.s, 2);
    ASSERT(env.d == c + d_at);
    ASSERT_EQ(env.d_len, n - d_at - 1);
    ASSERT(memcmp(env.d, s + d_at, env.d_len) == 0);
    free(c);
    /* cut anywhere inside, it is refused */
    for (size_t cut = n - 1; cut > n - 300; cut -= 7)
        ASSERT_EQ(scan_rc(s, cut), SH_EPARSE);
    ASSERT_EQ(scan_rc(s, n / 2), SH_EPARSE);
    free(s);
}

TEST(every_prefix_is_refused)
{
    static const char msg[] = "{\"t\":\"MESSAGE_CREATE\",\"s\":12,\"op\":0,\"d\":{\"a\":[1,-2.5e3,"
                              "true,false,null,\"s\\\"\\u00e9\"],\"b\":{}}}";
    size_t n = strlen(msg);
    ASSERT_EQ(scan_rc(msg, n), 0);
    for (size_t k = 0; k < n; k++)
        if (scan_rc(msg, k) != SH_EPARSE)
            T_FAIL_("prefix of length %zu accepted", k);
}

TEST(garbage_is_refused)
{
    static const char *bad[] = {
        "",
        " ",
        "\n\t",
        "[]",
        "null",
        "\"op\"",
        "1",
        "{",
        "}",
        "{{}}",
        "{\"op\":1",
        "{\"op\":1}x",
        "{\"op\":1}}",
        "{\"op\":1} {}",
        "{\"op\":1,}",
        "{,}",
        "{,\"op\":1}",
        "{\"op\"}",
        "{\"op\" 1}",
        "{\"op\"::1}",
        "{op:1}",
        "{'op':1}",
        "{\"op\":1 \"s\":2}",
        "\xef\xbb\xbf{}", /* BOM */
        /* strings */
        "{\"t\":\"MESSAGE",
        "{\"t\":\"A\\\"}",
        "{\"d\":\"abc}",
        "{\"d\":\"\\",
        "{\"op\":0,\"d\":\"a\\x\"}",
        "{\"d\":\"\\u12G4\"}",
        "{\"d\":\"\\u12\"}",
        "{\"d\":\"\\u\"}",
        "{\"d\":\"\\U0041\"}",
        "{\"d\":\"\\'\"}",
        "{\"t\":\"A\\u0042\"}",
        "{\"t\":1}",
        "{\"t\":true}",
        "{\"t\":[\"A\"]}",
        "{\"t\":nul}",
        "{\"d\":nulll}",
        "{\"d\":tru}",
        "{\"d\":True}",
        "{\"d\":fals}",
        "{\"d\":undefined}",
        "{\"ke\ny\":1}",
        "{\"d\":\"tab\there\"}",
        /* numbers */
        "{\"d\":01}",
        "{\"d\":1.}",
        "{\"d\":.5}",
        "{\"d\":-}",
        "{\"d\":+1}",
        "{\"d\":1e}",
        "{\"d\":1e+}",
        "{\"d\":--1}",
        "{\"d\":0x10}",
        "{\"d\":NaN}",
        "{\"d\":Infinity}",
        "{\"d\":-Infinity}",
        "{\"d\":1.5.5}",
        "{\"d\":[1 2]}",
        "{\"d\":1 2}",
        /* structure */
        "{\"d\":[}",
        "{\"d\":{]}",
        "{\"d\":[1,]}",
        "{\"d\":{\"a\":1,}}",
        "{\"d\":{\"a\" 1}}",
        "{\"d\":{1:2}}",
        "{\"d\":{\"a\"}}",
        "{\"d\":{\"a\":}}",
        "{\"d\":[,1]}",
        "{\"d\":[1}",
        "{\"d\":{\"a\":[1]]}",
        "{\"d\":[[]}",
        "{\"d\":]",
        "{\"d\":}",
        "{\"d\":{}}}",
        "{\"d\":{\"a\":1}]}",
        "{\"d\":[{]}",
        "{\"d\":{,}}",
        /* duplicates */
        "{\"op\":1,\"op\":1}",
        "{\"t\":\"A\",\"t\":\"A\"}",
        "{\"s\":1,\"s\":null}",
        "{\"d\":null,\"op\":0,\"d\":null}",
        "{\"op\":null,\"op\":null}",
        "{\"t\":null,\"t\":\"A\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (scan_rc(bad[i], strlen(bad[i])) != SH_EPARSE)
            T_FAIL_("accepted \"%s\"", bad[i]);
    /* control characters, NUL included, inside strings and outside */
    for (int ch = 0; ch < 0x20; ch++) {
        char s1[] = "{\"t\":\"AB\",\"d\":\"0123456789abcdefXYZ\"}";
        s1[7] = (char)ch; /* inside t */
        ASSERT_EQ(scan_rc(s1, sizeof(s1) - 1), SH_EPARSE);
        char s2[] = "{\"t\":\"AB\",\"d\":\"0123456789abcdefXYZ\"}";
        s2[30] = (char)ch; /* inside d, past the first 16-byte stride */
        ASSERT_EQ(scan_rc(s2, sizeof(s2) - 1), SH_EPARSE);
        char s3[] = "{\"t\":\"AB\",\"d\":\"0123456789abcdefXYZ\"}";
        s3[16] = (char)ch; /* inside d, within the first stride */
        ASSERT_EQ(scan_rc(s3, sizeof(s3) - 1), SH_EPARSE);
    }
    /* NULL with a length is refused; NULL env too */
    struct gw_envelope env;
    ASSERT_EQ(gw__envelope_scan(NULL, 3, &env), SH_EPARSE);
    ASSERT_EQ(gw__envelope_scan(NULL, 0, &env), SH_EPARSE);
    ASSERT_EQ(gw__envelope_scan("{}", 2, NULL), SH_EPARSE);
}

TEST(failure_leaves_env_alone)
{
    struct gw_envelope env = {
        .op = 77, .t = "keep", .t_len = 4, .has_s = 1, .s = 5, .d = "x", .d_len = 1};
    /* fails only at the very end, after every member has been read */
    static const char msg[] = "{\"op\":0,\"t\":\"A\",\"s\":9,\"d\":{}} x";
    ASSERT_EQ(gw__envelope_scan(msg, sizeof(msg) - 1, &env), SH_EPARSE);
    ASSERT_EQ(env.op, 77);
    ASSERT_SPAN_EQ(env.t, env.t_len, "keep");
    ASSERT_EQ(env.s, 5);
    ASSERT_SPAN_EQ(env.d, env.d_len, "x");
}

TEST(length_bounds_the_scan)
{
    /* bytes past len are never part of the payload */
    static const char msg[] = "{\"op\":1}trailing garbage";
    struct gw_envelope env;
    ASSERT_EQ(gw__envelope_scan(msg, 8, &env), 0);
    ASSERT_EQ(env.op, 1);
    ASSERT_EQ(gw__envelope_scan(msg, 9, &env), SH_EPARSE);
    static const char msg2[] = "{\"op\":12}";
    ASSERT_EQ(gw__envelope_scan(msg2, 7, &env), SH_EPARSE); /* {"op":1 */
}

TEST(guild_id_and_unavailable_from_d)
{
    static const char msg[] =
        "{\"t\":\"GUILD_CREATE\",\"s\":3,\"op\":0,\"d\":{\"channels\":[{\"id\":\"1\",\"name\":"
        "\"a}\\\"\"}],\"unavailable\":false,\"members\":{\"id\":\"9\"},"
        "\"id\" : \"81384788765712384\"}}";
    struct gw_envelope env;
    ASSERT_EQ(gw__envelope_scan(msg, sizeof(msg) - 1, &env), 0);
    ASSERT_SPAN_EQ(env.d_id, env.d_id_len, "\"81384788765712384\""); /* top level only */
    ASSERT_EQ(gw_json_snowflake(env.d_id, env.d_id_len), 81384788765712384ULL);
    ASSERT_EQ(env.d_unavailable, 0);
    ASSERT(env.d == strstr(msg, "\"d\":") + 4); /* d itself is untouched */
    ASSERT_EQ(env.d_len, (size_t)(msg + sizeof(msg) - 2 - env.d));

    static const char gone[] =
        "{\"op\":0,\"t\":\"GUILD_DELETE\",\"d\":{\"id\":\"42\",\"unavailable\":true},\"s\":4}";
    ASSERT_EQ(gw__envelope_scan(gone, sizeof(gone) - 1, &env), 0);
    ASSERT_EQ(gw_json_snowflake(env.d_id, env.d_id_len), 42);
    ASSERT_EQ(env.d_unavailable, 1);
    ASSERT_SPAN_EQ(env.d, env.d_len, "{\"id\":\"42\",\"unavailable\":true}");

    /* d that is no object, or has neither: nothing noted */
    static const char arr[] = "{\"op\":0,\"d\":[{\"id\":\"5\"}]}";
    ASSERT_EQ(gw__envelope_scan(arr, sizeof(arr) - 1, &env), 0);
    ASSERT(!env.d_id);
    ASSERT_EQ(env.d_unavailable, 0);
    static const char bad[] = "{\"op\":0,\"d\":{\"id\":\"5\",}}";
    ASSERT_EQ(gw__envelope_scan(bad, sizeof(bad) - 1, &env), SH_EPARSE);

    const char *not_ids[] = {"42", "\"\"", "\"4a\"", "\"-1\"", "\"18446744073709551616\"", "null"};
    for (size_t i = 0; i < sizeof(not_ids) / sizeof(not_ids[0]); i++)
        ASSERT_EQ(gw_json_snowflake(not_ids[i], strlen(not_ids[i])), 0);
    ASSERT_EQ(gw_json_snowflake(NULL, 0), 0);
    ASSERT_EQ(gw_json_snowflake("\"18446744073709551615\"", 22), UINT64_MAX);
}

/* peek over every prefix of s: op, t and s are reported only once they are whole */
TEST(peek_reads_the_front_of_a_cut_payload)
{
    static const char full[] =
        "{\"t\":\"GUILD_CREATE\",\"s\":123,\"op\":0,\"d\":{\"id\":\"1\",\"x\":[1,2";
    for (size_t n = 0; n <= sizeof(full) - 1; n++) {
        char *c = malloc(n ? n : 1);
        memcpy(c, full, n);
        struct gw_envelope env;
        int rc = gw__envelope_peek(c, n, &env);
        if (n == 0) {
            ASSERT_EQ(rc, SH_EPARSE);
            free(c);
            continue;
        }
        ASSERT_EQ(rc, 0);
        ASSERT(env.d == NULL);
        if (env.t)
            ASSERT_SPAN_EQ(env.t, env.t_len, "GUILD_CREATE");
        if (env.has_s)
            ASSERT_EQ(env.s, 123); /* never 1 or 12 from a cut "123" */
        if (env.op != -1)
            ASSERT_EQ(env.op, 0);
        if (n >= sizeof("{\"t\":\"GUILD_CREATE\",\"s\":123,\"op\":0,") - 1) {
            ASSERT(env.t && env.has_s && env.op == 0);
        }
        free(c);
    }
    /* d first: what follows a d cut short is out of reach, but a whole d is skipped */
    struct gw_envelope env;
    ASSERT_EQ(gw__envelope_peek("{\"d\":{\"a\":1},\"s\":7,\"t\":\"X\",", 27, &env), 0);
    ASSERT(env.has_s && env.s == 7 && env.t && env.t_len == 1);
    ASSERT_EQ(gw__envelope_peek("{\"d\":{\"a\":[1,2,3", 16, &env), 0);
    ASSERT(!env.has_s && !env.t && env.op == -1);
    ASSERT_EQ(gw__envelope_peek("[1,2]", 5, &env), SH_EPARSE);
}

TEST_MAIN(RUN(typical_dispatch); RUN(keys_in_every_order_with_whitespace);
          RUN(heartbeat_ack_and_nulls); RUN(integer_limits); RUN(escapes_in_d_strings);
          RUN(unicode_raw_and_escaped); RUN(key_matching_is_exact); RUN(nesting_and_depth_cap);
          RUN(huge_d); RUN(every_prefix_is_refused); RUN(garbage_is_refused);
          RUN(failure_leaves_env_alone); RUN(length_bounds_the_scan);
          RUN(guild_id_and_unavailable_from_d); RUN(peek_reads_the_front_of_a_cut_payload);)
