/* tests/unit/test_retry.c: which answers are retried, Retry-After in both forms, backoff. */
#include "bridge/retry.h"
#include "lib/errors.h"
#include "tests/unit/test.h"

TEST(classify_statuses)
{
    ASSERT_EQ(br_classify(200), BR_ACK);
    ASSERT_EQ(br_classify(204), BR_ACK);
    ASSERT_EQ(br_classify(0), BR_RETRY); /* connection error or timeout */
    ASSERT_EQ(br_classify(408), BR_RETRY);
    ASSERT_EQ(br_classify(429), BR_RETRY);
    ASSERT_EQ(br_classify(500), BR_RETRY);
    ASSERT_EQ(br_classify(503), BR_RETRY);
    ASSERT_EQ(br_classify(599), BR_RETRY);
    ASSERT_EQ(br_classify(301), BR_DEAD);
    ASSERT_EQ(br_classify(400), BR_DEAD);
    ASSERT_EQ(br_classify(401), BR_DEAD);
    ASSERT_EQ(br_classify(404), BR_DEAD);
    ASSERT_EQ(br_classify(413), BR_DEAD);
}

TEST(retry_after_seconds)
{
    uint64_t ms = 7;
    ASSERT_EQ(br_retry_after_parse("2", 0, &ms), 0);
    ASSERT_EQ(ms, 2000);
    ASSERT_EQ(br_retry_after_parse("  0 \r\n", 0, &ms), 0);
    ASSERT_EQ(ms, 0);
    ASSERT_EQ(br_retry_after_parse("99999999999999999999999", 0, &ms), 0);
    ASSERT_EQ(ms, BR_RETRY_AFTER_MAX_MS);
    ms = 7;
    ASSERT_EQ(br_retry_after_parse("1.5", 0, &ms), SH_EINVAL);
    ASSERT_EQ(br_retry_after_parse("-1", 0, &ms), SH_EINVAL);
    ASSERT_EQ(br_retry_after_parse("", 0, &ms), SH_EINVAL);
    ASSERT_EQ(br_retry_after_parse(NULL, 0, &ms), SH_EINVAL);
    ASSERT_EQ(br_retry_after_parse("soon", 0, &ms), SH_EINVAL);
    ASSERT_EQ(ms, 7); /* unchanged on failure */
}

TEST(retry_after_http_dates)
{
    /* 1445412480 = Wed, 21 Oct 2015 07:28:00 GMT */
    uint64_t now = 1445412480000ull - 3500, ms = 0;
    ASSERT_EQ(br_retry_after_parse("Wed, 21 Oct 2015 07:28:00 GMT", now, &ms), 0);
    ASSERT_EQ(ms, 3500);
    ASSERT_EQ(br_retry_after_parse("Wednesday, 21-Oct-15 07:28:00 GMT", now, &ms), 0); /* RFC 850 */
    ASSERT_EQ(ms, 3500);
    ASSERT_EQ(br_retry_after_parse("Wed Oct 21 07:28:00 2015", now, &ms), 0); /* asctime */
    ASSERT_EQ(ms, 3500);
    ASSERT_EQ(br_retry_after_parse("Wed, 21 Oct 2015 07:28:00 GMT", now + 10000, &ms), 0);
    ASSERT_EQ(ms, 0); /* in the past: go now */
    ASSERT_EQ(br_retry_after_parse("Wed, 21 Oct 2035 07:28:00 GMT", now, &ms), 0);
    ASSERT_EQ(ms, BR_RETRY_AFTER_MAX_MS);
}

TEST(retry_after_far_future_date_waits_the_cap)
{
    /* years past 2^63 ms: the wait is the cap, never "retry now" (t * 1000 overflowed) */
    const uint64_t now = 1764000000000ull;
    uint64_t ms = 7;
    ASSERT_EQ(br_retry_after_parse("Sun, 06 Nov 999999999 08:49:37 GMT", now, &ms), 0);
    ASSERT_EQ(ms, BR_RETRY_AFTER_MAX_MS);
    ms = 7;
    ASSERT_EQ(br_retry_after_parse("Sun, 06 Nov 9999999 08:49:37 GMT", now, &ms), 0);
    ASSERT_EQ(ms, BR_RETRY_AFTER_MAX_MS);
    ms = 7;
    ASSERT_EQ(br_retry_after_parse("Sun Nov  6 08:49:37 999989996", now, &ms), 0);
    ASSERT_EQ(ms, BR_RETRY_AFTER_MAX_MS);
}

TEST(delay_prefers_retry_after_else_full_jitter)
{
    ASSERT_EQ(br_retry_delay_ms(3, 100, 1000, 2500, 60000), 2500);
    for (int i = 0; i < 200; i++) {
        ASSERT(br_retry_delay_ms(0, 100, 1000, -1, 60000) <= 100);
        ASSERT(br_retry_delay_ms(2, 100, 1000, -1, 60000) <= 400);
        ASSERT(br_retry_delay_ms(30, 100, 1000, -1, 60000) <= 1000);
    }
    int varied = 0;
    uint64_t first = br_retry_delay_ms(5, 100, 100000, -1, 60000);
    for (int i = 0; i < 50; i++)
        varied |= br_retry_delay_ms(5, 100, 100000, -1, 60000) != first;
    ASSERT(varied);
}

/* Retry-After: 0 or a past date must not make retries faster than the backoff allows */
TEST(retry_after_never_below_the_backoff_floor)
{
    ASSERT_EQ(br_retry_floor_ms(0, 100, 1000), 50);
    ASSERT_EQ(br_retry_floor_ms(2, 100, 1000), 200);
    ASSERT_EQ(br_retry_floor_ms(30, 100, 1000), 500);
    ASSERT_EQ(br_retry_delay_ms(0, 100, 1000, 0, 60000), 50);
    ASSERT_EQ(br_retry_delay_ms(3, 100, 1000, 0, 60000), 400);
    ASSERT_EQ(br_retry_delay_ms(9, 100, 1000, 10, 60000), 500);
    /* a date in the past parses to 0, which then meets the floor */
    uint64_t ms = 99;
    ASSERT_EQ(br_retry_after_parse("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480000ull + 60000, &ms),
              0);
    ASSERT_EQ(ms, 0);
    ASSERT_EQ(br_retry_delay_ms(1, 500, 60000, (int64_t)ms, 300000), 500);
    /* a longer Retry-After than the floor is honoured as given */
    ASSERT_EQ(br_retry_delay_ms(0, 100, 1000, 2500, 60000), 2500);
}

/* a bogus Retry-After waits retry_after_max_ms, not an hour */
TEST(retry_after_capped_by_retry_after_max_ms)
{
    uint64_t ms = 0;
    ASSERT_EQ(br_retry_after_parse("999999", 0, &ms), 0);
    ASSERT_EQ(br_retry_delay_ms(0, 50, 500, (int64_t)ms, 1000), 1000);
    ASSERT_EQ(br_retry_delay_ms(0, 50, 500, 3600000, 300000), 300000);
    /* the cap never undercuts the floor either */
    ASSERT_EQ(br_retry_delay_ms(10, 1000, 60000, 3600000, 100), 30000);
    for (int i = 0; i < 100; i++) /* without Retry-After the cap plays no part */
        ASSERT(br_retry_delay_ms(10, 1000, 60000, -1, 100) <= 60000);
}

TEST_MAIN(RUN(classify_statuses); RUN(retry_after_seconds); RUN(retry_after_http_dates);
          RUN(retry_after_far_future_date_waits_the_cap);
          RUN(delay_prefers_retry_after_else_full_jitter);
          RUN(retry_after_never_below_the_backoff_floor);
          RUN(retry_after_capped_by_retry_after_max_ms);)
