/* tests/unit/test_backoff.c: full-jitter backoff stays under its doubling, capped ceiling. */
#include "lib/rand.h"
#include "tests/unit/test.h"

TEST(ceiling_doubles_then_caps)
{
    ASSERT_EQ(sh_backoff_ceiling_ms(0, 1000, 60000), 1000);
    ASSERT_EQ(sh_backoff_ceiling_ms(1, 1000, 60000), 2000);
    ASSERT_EQ(sh_backoff_ceiling_ms(5, 1000, 60000), 32000);
    ASSERT_EQ(sh_backoff_ceiling_ms(6, 1000, 60000), 60000);
    ASSERT_EQ(sh_backoff_ceiling_ms(200, 1000, 60000), 60000);
}

TEST(draws_stay_in_range_and_spread)
{
    uint64_t lo = UINT64_MAX, hi = 0, sum = 0;
    for (int i = 0; i < 10000; i++) {
        uint64_t d = sh_backoff_ms(3, 100, 60000);
        ASSERT(d <= 800);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
        sum += d;
    }
    /* full jitter: the draws cover the range, mean near the middle */
    ASSERT(lo < 40);
    ASSERT(hi > 760);
    ASSERT(sum / 10000 > 340 && sum / 10000 < 460);
}

TEST(zero_base_is_zero)
{
    ASSERT_EQ(sh_backoff_ms(4, 0, 100), 0);
}

TEST(unit_interval)
{
    for (int i = 0; i < 10000; i++) {
        double u = sh_rand_unit();
        ASSERT(u >= 0.0 && u < 1.0);
    }
}

TEST_MAIN(RUN(ceiling_doubles_then_caps); RUN(draws_stay_in_range_and_spread);
          RUN(zero_base_is_zero); RUN(unit_interval))
