/* tests/unit/test_batch.c: batch bodies, caps, shard entries and the spool's metadata form. */
#include <string.h>

#include "bridge/batch.h"
#include "lib/errors.h"
#include "tests/unit/test.h"

static const char ev1[] = "{\"shard\":[0,2],\"op\":0,\"t\":\"A\",\"s\":5,\"d\":{}}";
static const char ev2[] = "{\"shard\":[1,2],\"op\":0,\"t\":\"B\",\"s\":9,\"d\":[1,2]}";

TEST(body_is_events_array_of_appended_bytes)
{
    struct br_batch *b;
    ASSERT_EQ(br_batch_new(1024, &b), 0);
    ASSERT(!strncmp(b->msg_id, "msg_", 4));
    int fresh = -1;
    ASSERT_EQ(br_batch_add(b, ev1, strlen(ev1), 0, 0, 5, 100, &fresh), 0);
    ASSERT_EQ(fresh, 1);
    ASSERT_EQ(br_batch_add(b, ev2, strlen(ev2), 1, 0, 9, 90, &fresh), 0);
    ASSERT_EQ(fresh, 1);
    ASSERT_EQ(br_batch_add(b, ev1, strlen(ev1), 0, 0, 6, 120, &fresh), 0);
    ASSERT_EQ(fresh, 0);
    br_batch_close(b);
    br_batch_close(b); /* idempotent */
    char want[512];
    snprintf(want, sizeof(want), "{\"events\":[%s,%s,%s]}", ev1, ev2, ev1);
    ASSERT_STR_EQ(b->body.data, want);
    ASSERT_EQ(b->n_events, 3);
    ASSERT_EQ(b->n_shards, 2);
    ASSERT_EQ(b->shards[0].min_s, 5);
    ASSERT_EQ(b->shards[0].max_s, 6);
    ASSERT_EQ(b->shards[1].shard, 1);
    ASSERT_EQ(b->first_ms, 90);
    ASSERT_EQ(br_batch_add(b, ev1, strlen(ev1), 0, 0, 7, 1, NULL), SH_EINVAL); /* closed */
    br_batch_free(b);
}

TEST(cap_holds_with_room_for_the_tail)
{
    size_t one = BR_BATCH_BODY_FOR(strlen(ev1));
    struct br_batch *b;
    ASSERT_EQ(br_batch_new(one, &b), 0);
    ASSERT(br_batch_fits(b, strlen(ev1)));
    ASSERT_EQ(br_batch_add(b, ev1, strlen(ev1), 0, 0, 5, 1, NULL), 0);
    ASSERT(!br_batch_fits(b, 1));
    size_t len = b->body.len;
    ASSERT_EQ(br_batch_add(b, ev1, strlen(ev1), 0, 0, 6, 1, NULL), SH_ETOOBIG);
    ASSERT_EQ(b->body.len, len); /* unchanged by the failure */
    ASSERT_EQ(b->n_events, 1);
    br_batch_close(b);
    ASSERT_EQ(b->body.len, one);
    br_batch_free(b);
    ASSERT_EQ(br_batch_new(5, &b), SH_EINVAL);
}

TEST(a_new_session_gets_its_own_entry)
{
    struct br_batch *b;
    ASSERT_EQ(br_batch_new(4096, &b), 0);
    int fresh = 0;
    ASSERT_EQ(br_batch_add(b, ev1, strlen(ev1), 3, 0, 500, 1, &fresh), 0);
    ASSERT_EQ(br_batch_add(b, ev1, strlen(ev1), 3, 1, 1, 1, &fresh), 0); /* READY after resume */
    ASSERT_EQ(fresh, 1);
    ASSERT_EQ(b->n_shards, 2);
    ASSERT_EQ(b->shards[1].gen, 1);
    ASSERT_EQ(b->shards[1].min_s, 1);
    br_batch_free(b);
}

TEST(meta_round_trip_and_corruption)
{
    struct br_batch *b, *c;
    ASSERT_EQ(br_batch_new(4096, &b), 0);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(br_batch_add(b, ev2, strlen(ev2), (uint32_t)i % 3, 7, 10 + (uint64_t)i, 50, NULL),
                  0);
    br_batch_close(b);
    struct sh_buf m;
    sh_buf_init(&m, 1 << 16);
    ASSERT_EQ(br_batch_encode_meta(b, &m), 0);
    ASSERT_EQ(br_batch_decode(m.data, m.len, b->body.data, b->body.len, &c), 0);
    ASSERT_STR_EQ(c->msg_id, b->msg_id);
    ASSERT_EQ(c->n_events, 5);
    ASSERT_EQ(c->n_shards, 3);
    ASSERT_EQ(c->shards[2].gen, 7);
    ASSERT_EQ(c->shards[0].min_s, 10);
    ASSERT_EQ(c->shards[0].max_s, 13);
    ASSERT_EQ(c->first_ms, 50);
    ASSERT(c->closed);
    ASSERT_EQ(c->body.len, b->body.len);
    ASSERT(!memcmp(c->body.data, b->body.data, b->body.len));
    br_batch_free(c);
    /* truncated metadata, a body that is not a batch, a bad id length */
    ASSERT_EQ(br_batch_decode(m.data, m.len - 1, b->body.data, b->body.len, &c), SH_ECORRUPT);
    ASSERT_EQ(br_batch_decode(m.data, m.len, "{}", 2, &c), SH_ECORRUPT);
    /* an id that would not be one header value: a NUL, a line break */
    m.data[3] = '\0';
    ASSERT_EQ(br_batch_decode(m.data, m.len, b->body.data, b->body.len, &c), SH_ECORRUPT);
    m.data[3] = '\r';
    m.data[4] = '\n';
    ASSERT_EQ(br_batch_decode(m.data, m.len, b->body.data, b->body.len, &c), SH_ECORRUPT);
    m.data[0] = 0;
    ASSERT_EQ(br_batch_decode(m.data, m.len, b->body.data, b->body.len, &c), SH_ECORRUPT);
    sh_buf_free(&m);
    br_batch_free(b);
}

/* ---- a released shard's events taken out ---- */

/* braces, brackets, quotes and escapes inside strings must not end an event early */
static const char ev3[] = "{\"shard\":[12,16],\"op\":0,\"t\":\"C\",\"s\":null,\"d\":{\"x\":\"}],"
                          "\\\"{[\\\\\",\"y\":[{}]}}";

static int drop_12(void *ud, uint32_t shard)
{
    (void)ud;
    return shard == 12;
}

static int drop_all(void *ud, uint32_t shard)
{
    (void)ud, (void)shard;
    return 1;
}

static struct br_batch *mixed(int close)
{
    struct br_batch *b = NULL;
    if (br_batch_new(4096, &b))
        return NULL;
    br_batch_add(b, ev3, strlen(ev3), 12, 7, 0, 50, NULL);
    br_batch_add(b, ev1, strlen(ev1), 0, 0, 5, 100, NULL);
    br_batch_add(b, ev3, strlen(ev3), 12, 8, 0, 60, NULL);
    br_batch_add(b, ev2, strlen(ev2), 1, 0, 9, 90, NULL);
    if (close)
        br_batch_close(b);
    return b;
}

TEST(dropping_a_shard_keeps_the_others_in_order)
{
    for (int close = 0; close <= 1; close++) {
        struct br_batch *b = mixed(close);
        ASSERT(b && b->n_events == 4 && b->n_shards == 4);
        char id[BR_MSG_ID_MAX];
        snprintf(id, sizeof(id), "%s", b->msg_id);
        uint32_t removed = 0;
        ASSERT_EQ(br_batch_drop_shards(b, drop_12, NULL, &removed), 0);
        ASSERT_EQ(removed, 2);
        ASSERT_EQ(b->n_events, 2);
        ASSERT_EQ(b->n_shards, 2);
        ASSERT_EQ(b->shards[0].shard, 0);
        ASSERT_EQ(b->shards[1].shard, 1);
        ASSERT_STR_EQ(b->msg_id, id); /* the same webhook-id: never sent with other content */
        if (!close)                   /* an open batch goes on taking events */
            ASSERT_EQ(br_batch_add(b, ev1, strlen(ev1), 0, 0, 6, 1, NULL), 0);
        br_batch_close(b);
        char want[512];
        if (close)
            snprintf(want, sizeof(want), "{\"events\":[%s,%s]}", ev1, ev2);
        else
            snprintf(want, sizeof(want), "{\"events\":[%s,%s,%s]}", ev1, ev2, ev1);
        ASSERT_STR_EQ(b->body.data, want);
        ASSERT_EQ(b->body.len, strlen(want));
        /* nothing of a shard it does not hold: unchanged */
        ASSERT_EQ(br_batch_drop_shards(b, drop_12, NULL, &removed), 0);
        ASSERT_EQ(removed, 0);
        ASSERT_STR_EQ(b->body.data, want);
        br_batch_free(b);
    }
}

TEST(dropping_every_shard_leaves_an_empty_batch)
{
    struct br_batch *b = mixed(1);
    ASSERT(b);
    uint32_t removed = 0;
    ASSERT_EQ(br_batch_drop_shards(b, drop_all, NULL, &removed), 0);
    ASSERT_EQ(removed, 4);
    ASSERT_EQ(b->n_events, 0);
    ASSERT_EQ(b->n_shards, 0);
    br_batch_free(b);
}

TEST(an_unreadable_body_is_left_as_it_was)
{
    struct br_batch *b = NULL;
    ASSERT_EQ(br_batch_new(4096, &b), 0);
    static const char odd[] = "{\"t\":\"no shard first\"}";
    ASSERT_EQ(br_batch_add(b, odd, strlen(odd), 12, 0, 1, 1, NULL), 0);
    ASSERT_EQ(br_batch_add(b, ev1, strlen(ev1), 0, 0, 5, 1, NULL), 0);
    br_batch_close(b);
    char before[256];
    snprintf(before, sizeof(before), "%s", b->body.data);
    uint32_t removed = 9;
    ASSERT_EQ(br_batch_drop_shards(b, drop_12, NULL, &removed), SH_EPARSE);
    ASSERT_EQ(removed, 0);
    ASSERT_STR_EQ(b->body.data, before);
    ASSERT_EQ(b->n_events, 2);
    ASSERT_EQ(b->n_shards, 2);
    br_batch_free(b);
}

TEST_MAIN(RUN(body_is_events_array_of_appended_bytes); RUN(cap_holds_with_room_for_the_tail);
          RUN(a_new_session_gets_its_own_entry); RUN(meta_round_trip_and_corruption);
          RUN(dropping_a_shard_keeps_the_others_in_order);
          RUN(dropping_every_shard_leaves_an_empty_batch);
          RUN(an_unreadable_body_is_left_as_it_was);)
