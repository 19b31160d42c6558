/*
 * tests/unit/test_bucket.c: identify bucket arithmetic (gateway/bucket.c). Which bucket a shard
 * is in, the slots planned for queued IDENTIFYs, the margin, and how long an IDENTIFY must wait
 * after the bucket's previous one: one IDENTIFY per bucket per interval, never sooner.
 */
#include <stdint.h>
#include <string.h>

#include "gateway/bucket.h"
#include "tests/unit/test.h"

TEST(bucket_is_shard_id_modulo_max_concurrency)
{
    ASSERT_EQ(gw__bucket_index(0, 4), 0);
    ASSERT_EQ(gw__bucket_index(3, 4), 3);
    ASSERT_EQ(gw__bucket_index(4, 4), 0);
    ASSERT_EQ(gw__bucket_index(13, 4), 1);
    ASSERT_EQ(gw__bucket_index(7, 1), 0);
    ASSERT_EQ(gw__bucket_index(15, 16), 15);
    ASSERT_EQ(gw__bucket_index(1000, 16), 8);
}

TEST(slots_of_one_bucket_are_an_interval_apart)
{
    struct gw__bucket b;
    memset(&b, 0, sizeof(b));
    ASSERT_EQ(gw__bucket_slot(&b, 1000, 5000), 1000);
    ASSERT_EQ(gw__bucket_slot(&b, 1000, 5000), 6000);
    ASSERT_EQ(gw__bucket_slot(&b, 1000, 5000), 11000);
    /* a later not_before wins over the bucket's next free slot, and moves it */
    ASSERT_EQ(gw__bucket_slot(&b, 30000, 5000), 30000);
    ASSERT_EQ(gw__bucket_slot(&b, 31000, 5000), 35000);
    ASSERT_EQ(b.next_slot_ms, 40000);
}

/* sixteen shards over four buckets, planned at once: four rounds, one interval apart */
TEST(sixteen_shards_four_buckets_plan_four_rounds)
{
    struct gw__bucket b[4];
    memset(b, 0, sizeof(b));
    const uint64_t t0 = 500, iv = 5000;
    for (int id = 0; id < 16; id++) {
        uint64_t slot = gw__bucket_slot(&b[gw__bucket_index(id, 4)], t0, iv);
        ASSERT_EQ(slot, t0 + (uint64_t)(id / 4) * iv);
    }
}

TEST(margin_is_two_percent_at_least_25_ms)
{
    ASSERT_EQ(gw__bucket_margin(5000), 100);
    ASSERT_EQ(gw__bucket_margin(2500), 50);
    ASSERT_EQ(gw__bucket_margin(1250), 25);
    ASSERT_EQ(gw__bucket_margin(1000), 25);
    ASSERT_EQ(gw__bucket_margin(200), 25);
    ASSERT_EQ(gw__bucket_margin(0), 25);
}

TEST(a_fresh_bucket_never_waits)
{
    struct gw__bucket b;
    memset(&b, 0, sizeof(b));
    ASSERT_EQ(gw__bucket_wait(&b, 0, 5000), 0);
    ASSERT_EQ(gw__bucket_wait(&b, 123456, 5000), 0);
}

TEST(identify_waits_an_interval_plus_margin_after_the_last)
{
    struct gw__bucket b;
    memset(&b, 0, sizeof(b));
    gw__bucket_stamp(&b, 10000, 5000);
    ASSERT_EQ(b.last_identify_ms, 10000);
    ASSERT_EQ(gw__bucket_wait(&b, 10000, 5000), 5100);
    ASSERT_EQ(gw__bucket_wait(&b, 15000, 5000), 100);
    ASSERT_EQ(gw__bucket_wait(&b, 15099, 5000), 1);
    ASSERT_EQ(gw__bucket_wait(&b, 15100, 5000), 0);
    ASSERT_EQ(gw__bucket_wait(&b, 99999, 5000), 0);
    /* short test windows keep the 25 ms floor */
    gw__bucket_stamp(&b, 20000, 200);
    ASSERT_EQ(gw__bucket_wait(&b, 20000, 200), 225);
}

TEST(stamp_pushes_the_next_slot_but_never_pulls_it_back)
{
    struct gw__bucket b;
    memset(&b, 0, sizeof(b));
    gw__bucket_stamp(&b, 1000, 5000);
    ASSERT_EQ(b.next_slot_ms, 6000);
    /* the next planned IDENTIFY keeps its distance from the stamped one */
    ASSERT_EQ(gw__bucket_slot(&b, 2000, 5000), 6000);
    ASSERT_EQ(b.next_slot_ms, 11000);
    /* a stamp inside already planned slots leaves them where they are */
    gw__bucket_stamp(&b, 3000, 5000);
    ASSERT_EQ(b.last_identify_ms, 3000);
    ASSERT_EQ(b.next_slot_ms, 11000);
    gw__bucket_stamp(&b, 9000, 5000);
    ASSERT_EQ(b.next_slot_ms, 14000);
}

TEST_MAIN(RUN(bucket_is_shard_id_modulo_max_concurrency);
          RUN(slots_of_one_bucket_are_an_interval_apart);
          RUN(sixteen_shards_four_buckets_plan_four_rounds);
          RUN(margin_is_two_percent_at_least_25_ms); RUN(a_fresh_bucket_never_waits);
          RUN(identify_waits_an_interval_plus_margin_after_the_last);
          RUN(stamp_pushes_the_next_slot_but_never_pulls_it_back);)
