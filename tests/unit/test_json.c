/*
 * tests/unit/test_json.c: the one JSON string escaper (lib/json.h) writes what a JSON reader
 * turns back into the input: quotes, backslashes and control characters escaped, UTF-8 kept,
 * other bytes as \u00XX or kept as they are when asked; a full buffer leaves it as it was.
 */
#include <cjson/cJSON.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/errors.h"
#include "lib/json.h"
#include "tests/unit/test.h"

/* s (n bytes) escaped with flags, as a C string in a static buffer ("(error)" on failure) */
static const char *esc(const char *s, size_t n, int flags)
{
    static char out[512];
    struct sh_buf b;
    sh_buf_init(&b, sizeof(out) - 1);
    int rc = sh_json_escape(&b, s, n, flags);
    snprintf(out, sizeof(out), "%.*s", rc ? 7 : (int)b.len, rc ? "(error)" : b.data ? b.data : "");
    sh_buf_free(&b);
    return out;
}

#define ESC(lit, flags) esc(lit, sizeof(lit) - 1, flags)

TEST(specials_are_escaped)
{
    ASSERT_STR_EQ(ESC("", 0), "");
    ASSERT_STR_EQ(ESC("plain text", 0), "plain text");
    ASSERT_STR_EQ(ESC("a\"b\\c", 0), "a\\\"b\\\\c");
    ASSERT_STR_EQ(ESC("\n\r\t\x01\x1f\x7f", 0), "\\u000a\\u000d\\u0009\\u0001\\u001f\\u007f");
    ASSERT_STR_EQ(esc("a\0b", 3, 0), "a\\u0000b");
    ASSERT_STR_EQ(ESC("/ ~", 0), "/ ~");
}

TEST(utf8_is_kept_and_stray_bytes_become_escapes)
{
    ASSERT_STR_EQ(ESC("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 0),
                  "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    ASSERT_STR_EQ(ESC("\xff", 0), "\\u00ff");
    ASSERT_STR_EQ(ESC("\xc3", 0), "\\u00c3");   /* cut short at the end */
    ASSERT_STR_EQ(ESC("\xc3(", 0), "\\u00c3("); /* not a continuation */
    /* overlong forms of '/' */
    ASSERT_STR_EQ(ESC("\xc0\xaf", 0), "\\u00c0\\u00af");
    ASSERT_STR_EQ(ESC("\xe0\x80\xaf", 0), "\\u00e0\\u0080\\u00af");
    ASSERT_STR_EQ(ESC("\xed\xa0\x80", 0), "\\u00ed\\u00a0\\u0080");            /* a surrogate */
    ASSERT_STR_EQ(ESC("\xf4\x90\x80\x80", 0), "\\u00f4\\u0090\\u0080\\u0080"); /* > U+10FFFF */
    ASSERT_STR_EQ(ESC("\xf5\x80\x80\x80", 0), "\\u00f5\\u0080\\u0080\\u0080");
    /* kept as they are on request, specials still escaped */
    ASSERT_STR_EQ(ESC("\xff\xc3\"\x01", SH_JSON_KEEP_BYTES), "\xff\xc3\\\"\\u0001");
}

/* Every byte value, quoted, reads back through cJSON as the input (bytes kept) */
TEST(quoted_strings_read_back)
{
    char in[255];
    for (int i = 0; i < 255; i++)
        in[i] = (char)(i + 1); /* cJSON strings end at NUL */
    struct sh_buf b;
    sh_buf_init(&b, 4096);
    ASSERT_EQ(sh_json_quote(&b, in, sizeof(in), SH_JSON_KEEP_BYTES), 0);
    cJSON *j = cJSON_ParseWithLength(b.data, b.len);
    ASSERT(cJSON_IsString(j));
    ASSERT_EQ(strlen(j->valuestring), sizeof(in));
    ASSERT(!memcmp(j->valuestring, in, sizeof(in)));
    cJSON_Delete(j);
    /* without the flag: valid UTF-8 survives, the rest reads back as U+00XX */
    sh_buf_reset(&b);
    static const char mixed[] = "\"q\" caf\xc3\xa9 \xff";
    ASSERT_EQ(sh_json_quote(&b, mixed, sizeof(mixed) - 1, 0), 0);
    j = cJSON_ParseWithLength(b.data, b.len);
    ASSERT(cJSON_IsString(j));
    ASSERT_STR_EQ(j->valuestring, "\"q\" caf\xc3\xa9 \xc3\xbf");
    cJSON_Delete(j);
    sh_buf_free(&b);
}

TEST(a_full_buffer_is_left_as_it_was)
{
    struct sh_buf b;
    sh_buf_init(&b, 10);
    ASSERT_EQ(sh_buf_append_str(&b, "ab"), 0);
    /* "1234" fits, its \u0001 does not: none of it stays */
    ASSERT_EQ(sh_json_escape(&b, "1234\x01", 5, 0), SH_ETOOBIG);
    ASSERT_SPAN_EQ(b.data, b.len, "ab");
    ASSERT_EQ(sh_json_quote(&b, "1234567", 7, 0),
              SH_ETOOBIG); /* the closing quote is one too many */
    ASSERT_SPAN_EQ(b.data, b.len, "ab");
    ASSERT_EQ(sh_json_quote(&b, "123456", 6, 0), 0);
    ASSERT_SPAN_EQ(b.data, b.len, "ab\"123456\"");
    sh_buf_free(&b);
}

TEST_MAIN(RUN(specials_are_escaped); RUN(utf8_is_kept_and_stray_bytes_become_escapes);
          RUN(quoted_strings_read_back); RUN(a_full_buffer_is_left_as_it_was);)
