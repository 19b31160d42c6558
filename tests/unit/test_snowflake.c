/*
 * tests/unit/test_snowflake.c: the one snowflake reader (lib/snowflake.h) takes what Discord
 * writes as an id and refuses everything else, whichever room calls it.
 */
#include <stdint.h>
#include <string.h>

#include "lib/errors.h"
#include "lib/snowflake.h"
#include "tests/unit/test.h"

static int parse(const char *s, uint64_t *v)
{
    return sh_parse_snowflake(s, strlen(s), v);
}

TEST(ids_parse)
{
    uint64_t v = 0;
    ASSERT_EQ(parse("81384788765712384", &v), 0);
    ASSERT(v == 81384788765712384ULL);
    ASSERT_EQ(parse("18446744073709551615", &v), 0);
    ASSERT(v == UINT64_MAX);
    ASSERT_EQ(parse("1", &v), 0);
    ASSERT_EQ(v, 1);
    ASSERT_EQ(parse("10000000000000000000", &v), 0); /* 20 digits, under the top */
    ASSERT(v == 10000000000000000000ULL);
    /* only the n bytes given count: an id inside a longer text */
    ASSERT_EQ(sh_parse_snowflake("\"42\",", 3, &v), SH_EINVAL);
    ASSERT_EQ(sh_parse_snowflake("\"42\"," + 1, 2, &v), 0);
    ASSERT_EQ(v, 42);
}

TEST(everything_else_is_refused_and_leaves_the_value)
{
    const char *bad[] = {"",
                         "0",
                         "012",
                         "00",
                         "18446744073709551616",
                         "99999999999999999999",
                         "123456789012345678901",
                         "12a",
                         "-5",
                         "+5",
                         "1.0",
                         " 1",
                         "1 ",
                         "1e3",
                         "\"1\"",
                         "0x1f",
                         "1:",
                         "/1",
                         "١٢"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 7;
        ASSERT_EQ(parse(bad[i], &v), SH_EINVAL);
        ASSERT_EQ(v, 7);
    }
    uint64_t v = 7;
    ASSERT_EQ(sh_parse_snowflake(NULL, 0, &v), SH_EINVAL);
    ASSERT_EQ(sh_parse_snowflake("12\0"
                                 "3",
                                 4, &v),
              SH_EINVAL); /* a NUL inside */
    ASSERT_EQ(v, 7);
}

TEST_MAIN(RUN(ids_parse); RUN(everything_else_is_refused_and_leaves_the_value);)
