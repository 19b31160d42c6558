/*
 * tests/unit/test_sendq.c: the per-connection send window keeps under Discord's
 * 120 payloads per 60 s with room for heartbeats, and refuses oversize payloads.
 */
#include <string.h>

#include "gateway/sendq.h"
#include "lib/errors.h"
#include "tests/unit/test.h"

TEST(oversize_is_refused_before_the_socket)
{
    struct gw_sendq q;
    gw__sendq_init(&q);
    static char big[SH_GW_MAX_SEND_BYTES + 1];
    memset(big, 'x', sizeof(big));
    ASSERT_EQ(gw__sendq_push(&q, big, sizeof(big)), SH_ETOOBIG);
    ASSERT_EQ(gw__sendq_pending(&q), 0);
    ASSERT_EQ(gw__sendq_push(&q, big, SH_GW_MAX_SEND_BYTES), 0);
    ASSERT_EQ(gw__sendq_pending(&q), 1);
    gw__sendq_reset(&q);
}

TEST(order_and_front)
{
    struct gw_sendq q;
    gw__sendq_init(&q);
    ASSERT_EQ(gw__sendq_push(&q, "a", 1), 0);
    ASSERT_EQ(gw__sendq_push(&q, "b", 1), 0);
    ASSERT_EQ(gw__sendq_push_front(&q, "id", 2), 0);
    size_t len;
    ASSERT_STR_EQ(gw__sendq_peek(&q, &len), "id");
    gw__sendq_pop(&q);
    ASSERT_STR_EQ(gw__sendq_peek(&q, &len), "a");
    gw__sendq_pop(&q);
    ASSERT_STR_EQ(gw__sendq_peek(&q, &len), "b");
    gw__sendq_pop(&q);
    ASSERT(gw__sendq_peek(&q, &len) == NULL);
}

TEST(queue_is_bounded)
{
    struct gw_sendq q;
    gw__sendq_init(&q);
    for (int i = 0; i < GW_SENDQ_MAX; i++)
        ASSERT_EQ(gw__sendq_push(&q, "p", 1), 0);
    ASSERT_EQ(gw__sendq_push(&q, "p", 1), SH_EAGAIN);
    gw__sendq_reset(&q);
    ASSERT_EQ(gw__sendq_pending(&q), 0);
}

TEST(window_keeps_room_for_heartbeats)
{
    struct gw_sendq q;
    gw__sendq_init(&q);
    uint64_t t = 1000000, wait = 0;
    int sent = 0;
    while (gw__sendq_allowed(&q, t, 0, &wait)) {
        gw__sendq_record(&q, t + (uint64_t)sent);
        sent++;
    }
    ASSERT_EQ(sent, GW_SEND_LIMIT - GW_SEND_HEARTBEAT_RESERVE);
    /* the first send leaves the window 60 s after it was made */
    ASSERT_EQ(wait, GW_SEND_WINDOW_MS);
    int beats = 0;
    while (gw__sendq_allowed(&q, t + 200, 1, &wait)) {
        gw__sendq_record(&q, t + 200);
        beats++;
    }
    ASSERT_EQ(beats, GW_SEND_HEARTBEAT_RESERVE);
    ASSERT_EQ(gw__sendq_used(&q, t + 200), GW_SEND_LIMIT);
    /* after the window slides, room again */
    ASSERT(gw__sendq_allowed(&q, t + GW_SEND_WINDOW_MS + 200, 0, &wait));
    ASSERT_EQ(gw__sendq_used(&q, t + GW_SEND_WINDOW_MS + 200), 0);
}

TEST(never_more_than_limit_in_any_window)
{
    struct gw_sendq q;
    gw__sendq_init(&q);
    uint64_t t = 5000, wait;
    uint64_t times[2000];
    int n = 0;
    /* a sender that tries every 100 ms for 5 minutes, heartbeat every 40 s */
    for (uint64_t now = t; now < t + 300000 && n < 2000; now += 100) {
        int hb = (now - t) % 40000 == 0;
        if (gw__sendq_allowed(&q, now, hb, &wait)) {
            gw__sendq_record(&q, now);
            times[n++] = now;
        }
    }
    for (int i = 0; i < n; i++) {
        int in_window = 0;
        for (int j = i; j < n && times[j] < times[i] + GW_SEND_WINDOW_MS; j++)
            in_window++;
        ASSERT(in_window <= GW_SEND_LIMIT);
    }
    ASSERT(n > 500); /* and it does send at the allowed pace */
}

/* A withdrawn payload leaves the queue wherever it is, the others keep their order. */
TEST(withdraw_keeps_the_order_of_the_rest)
{
    struct gw_sendq q;
    gw__sendq_init(&q);
    ASSERT_EQ(gw__sendq_withdraw(&q, "a", 1), SH_ENOTFOUND);
    /* start near the ring's end so that the queue wraps around */
    for (unsigned i = 0; i < GW_SENDQ_MAX - 2; i++) {
        ASSERT_EQ(gw__sendq_push(&q, "x", 1), 0);
        gw__sendq_pop(&q);
    }
    const char *items[] = {"a", "b", "c", "b", "d"};
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(gw__sendq_push(&q, items[i], 1), 0);
    ASSERT_EQ(gw__sendq_withdraw(&q, "b", 1), 0); /* the first "b" only */
    ASSERT_EQ(gw__sendq_withdraw(&q, "bb", 2), SH_ENOTFOUND);
    ASSERT_EQ(gw__sendq_withdraw(&q, "d", 1), 0); /* the last one */
    ASSERT_EQ(gw__sendq_pending(&q), 3);
    const char *want[] = {"a", "c", "b"};
    for (int i = 0; i < 3; i++) {
        size_t len;
        const char *p = gw__sendq_peek(&q, &len);
        ASSERT(p != NULL);
        ASSERT_SPAN_EQ(p, len, want[i]);
        gw__sendq_pop(&q);
    }
    ASSERT_EQ(gw__sendq_pending(&q), 0);
    ASSERT_EQ(gw__sendq_push(&q, "e", 1), 0);
    ASSERT_EQ(gw__sendq_withdraw(&q, "e", 1), 0);
    ASSERT(gw__sendq_peek(&q, &(size_t){0}) == NULL);
    gw__sendq_reset(&q);
}

TEST_MAIN(RUN(oversize_is_refused_before_the_socket); RUN(order_and_front);
          RUN(withdraw_keeps_the_order_of_the_rest); RUN(queue_is_bounded);
          RUN(window_keeps_room_for_heartbeats); RUN(never_more_than_limit_in_any_window))
