/* tests/unit/test_log.c: a rate-limited message gets through once per window and counts the rest. */
#include "lib/log.h"
#include "tests/unit/test.h"

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

TEST_MAIN(RUN(first_passes_then_held_then_counted); RUN(limits_are_independent);)
