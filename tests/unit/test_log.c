/*
 * tests/unit/test_log.c: a rate-limited message gets through once per window and counts the
 * rest; lines are rendered escaped (logfmt and JSON) whatever the values hold.
 */
#include <cjson/cJSON.h>

#include "lib/log.h"
#include "tests/unit/test.h"

static const char *render(int format, const char *fields)
{
    static char line[8192];
    sh_log_render(format, "2026-11-23T13:45:00.123Z", "warn", fields, line, sizeof(line));
    return line;
}

TEST(first_passes_then_held_then_counted)
{
    struct sh_log_limit lim = SH_LOG_LIMIT_INIT;
    unsigned long long held = 99;
    ASSERT(sh_log_limit_pass(&lim, &held));
    ASSERT_EQ(held, 0);
    for (int i = 0; i < 1000; i++)
        ASSERT(!sh_log_limit_pass(&lim, &held));
    lim.next_ms = 0; /* the window has passed */
    ASSERT(sh_log_limit_pass(&lim, &held));
    ASSERT_EQ(held, 1000);
    ASSERT(!sh_log_limit_pass(&lim, &held));
    lim.next_ms = 0;
    ASSERT(sh_log_limit_pass(&lim, &held));
    ASSERT_EQ(held, 1);
}

TEST(limits_are_independent)
{
    struct sh_log_limit a = SH_LOG_LIMIT_INIT, b = SH_LOG_LIMIT_INIT;
    unsigned long long held;
    ASSERT(sh_log_limit_pass(&a, &held));
    ASSERT(sh_log_limit_pass(&b, &held));
    ASSERT(!sh_log_limit_pass(&a, &held));
}

TEST(logfmt_plain_fields_unchanged)
{
    ASSERT_STR_EQ(render(SH_LOG_LOGFMT, "msg=\"shard ready\" shard=3 url=http://x/y"),
                  "ts=2026-11-23T13:45:00.123Z level=warn msg=\"shard ready\" shard=3 "
                  "url=http://x/y");
}

TEST(logfmt_quotes_inside_a_value_are_escaped)
{
    ASSERT_STR_EQ(render(SH_LOG_LOGFMT, "msg=\"request failed\" error=\"... set \"token\" ...\" "
                                        "webhook=0"),
                  "ts=2026-11-23T13:45:00.123Z level=warn msg=\"request failed\" "
                  "error=\"... set \\\"token\\\" ...\" webhook=0");
    /* a value ending in a quoted word, and one that is only a quote */
    ASSERT_STR_EQ(render(SH_LOG_LOGFMT, "error=\"bad \"x\"\" a=\"\"\""),
                  "ts=2026-11-23T13:45:00.123Z level=warn error=\"bad \\\"x\\\"\" "
                  "a=\"\\\"\"");
}

TEST(logfmt_backslashes_and_control_characters_are_escaped)
{
    ASSERT_STR_EQ(render(SH_LOG_LOGFMT, "error=\"a\\b\nc\td\x01\" k=v w x"),
                  "ts=2026-11-23T13:45:00.123Z level=warn error=\"a\\\\b\\nc\\td\\u0001\" "
                  "k=\"v w x\"");
}

TEST(logfmt_unquoted_value_with_spaces_gets_quoted)
{
    ASSERT_STR_EQ(render(SH_LOG_LOGFMT, "error=connection refused (111) shard=1"),
                  "ts=2026-11-23T13:45:00.123Z level=warn error=\"connection refused (111)\" "
                  "shard=1");
    ASSERT_STR_EQ(render(SH_LOG_LOGFMT, "just text here"),
                  "ts=2026-11-23T13:45:00.123Z level=warn msg=\"just text here\"");
}

TEST(invalid_utf8_becomes_replacement)
{
    ASSERT_STR_EQ(render(SH_LOG_LOGFMT, "v=\"caf\xc3\xa9 \xff\""),
                  "ts=2026-11-23T13:45:00.123Z level=warn v=\"caf\xc3\xa9 \\ufffd\"");
}

/* every line in JSON form parses, and gives back exactly the values callers formatted */
TEST(json_lines_parse_with_values_intact)
{
    const char *line = render(SH_LOG_JSON, "msg=\"request failed\" error=\"... set \"token\" "
                                           "\\ ...\nnext\" webhook=0 ms=1.5 id=007 s=-2 t=x");
    cJSON *j = cJSON_Parse(line);
    ASSERT(j != NULL);
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "ts")->valuestring, "2026-11-23T13:45:00.123Z");
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "level")->valuestring, "warn");
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "msg")->valuestring, "request failed");
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "error")->valuestring, "... set \"token\" \\ ...\nnext");
    ASSERT(cJSON_IsNumber(cJSON_GetObjectItem(j, "webhook")));
    ASSERT(cJSON_GetObjectItem(j, "ms")->valuedouble == 1.5);
    ASSERT_EQ(cJSON_GetObjectItem(j, "s")->valueint, -2);
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "id")->valuestring, "007"); /* not a JSON number */
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "t")->valuestring, "x");
    cJSON_Delete(j);
}

TEST(json_line_cut_short_stays_valid)
{
    static char fields[4000], line[600];
    memcpy(fields, "a=\"", 3);
    memset(fields + 3, '"', sizeof(fields) - 5); /* every byte needs an escape */
    fields[sizeof(fields) - 2] = '"';
    sh_log_render(SH_LOG_JSON, "t", "info", "x=1 b=2", line, sizeof(line));
    ASSERT_STR_EQ(line, "{\"ts\":\"t\",\"level\":\"info\",\"x\":1,\"b\":2}");
    sh_log_render(SH_LOG_JSON, "t", "info", fields, line, sizeof(line));
    cJSON *j = cJSON_Parse(line);
    ASSERT(j != NULL);
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(j, "truncated")));
    cJSON_Delete(j);
}

TEST(format_names)
{
    ASSERT_EQ(sh_log_format_parse("logfmt"), SH_LOG_LOGFMT);
    ASSERT_EQ(sh_log_format_parse("json"), SH_LOG_JSON);
    ASSERT_EQ(sh_log_format_parse("xml"), -1);
}

TEST_MAIN(RUN(first_passes_then_held_then_counted); RUN(limits_are_independent);
          RUN(logfmt_plain_fields_unchanged); RUN(logfmt_quotes_inside_a_value_are_escaped);
          RUN(logfmt_backslashes_and_control_characters_are_escaped);
          RUN(logfmt_unquoted_value_with_spaces_gets_quoted); RUN(invalid_utf8_becomes_replacement);
          RUN(json_lines_parse_with_values_intact); RUN(json_line_cut_short_stays_valid);
          RUN(format_names);)
