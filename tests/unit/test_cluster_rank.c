/*
 * tests/unit/test_cluster_rank.c: cluster/rank.c, who holds what: rendezvous ranking is stable
 * and does not depend on the order nodes are listed in; shards without a live owner spread
 * within one of an even share (32 over 3, 1000 over 3, and a dead node's shards over the two
 * left); only live nodes that may hold a shard and have room get it; the balance move picks the
 * node holding the fewest and stops once everyone is within one; shard id ranges round-trip.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"
#include "tests/unit/test.h"

static void node(struct cl__node *nd, const char *name, int held, int max, int lo, int hi)
{
    memset(nd, 0, sizeof(*nd));
    snprintf(nd->name, sizeof(nd->name), "%s", name);
    nd->epoch = 7;
    nd->held = held;
    nd->max_shards = max;
    nd->n_ranges = 1;
    nd->ranges[0].lo = lo;
    nd->ranges[0].hi = hi;
}

/* Assign shards 0..total-1 over nodes; count what each node got. */
static void spread(int total, struct cl__node *nodes, int n, int *count)
{
    int *ids = malloc(sizeof(int) * (size_t)total), *got = malloc(sizeof(int) * (size_t)total);
    for (int i = 0; i < total; i++)
        ids[i] = i;
    cl__rank_assign(ids, total, nodes, n, got);
    memset(count, 0, sizeof(int) * (size_t)n);
    for (int i = 0; i < total; i++)
        if (got[i] >= 0)
            count[got[i]]++;
    free(ids);
    free(got);
}

TEST(ranking_is_stable_and_independent_of_listing_order)
{
    struct cl__node a[3], b[3];
    node(&a[0], "node-a", 0, 100, 0, 99);
    node(&a[1], "node-b", 0, 100, 0, 99);
    node(&a[2], "node-c", 0, 100, 0, 99);
    b[0] = a[2], b[1] = a[0], b[2] = a[1];
    int tops[3] = {0};
    for (int shard = 0; shard < 60; shard++) {
        int oa[3], ob[3], oa2[3];
        ASSERT_EQ(cl__rank_order(shard, a, 3, oa), 3);
        ASSERT_EQ(cl__rank_order(shard, a, 3, oa2), 3);
        ASSERT_EQ(cl__rank_order(shard, b, 3, ob), 3);
        for (int j = 0; j < 3; j++) {
            ASSERT_EQ(oa[j], oa2[j]);
            ASSERT_STR_EQ(a[oa[j]].name, b[ob[j]].name);
        }
        ASSERT(cl__rank_score(shard, "node-a") == cl__rank_score(shard, "node-a"));
        tops[oa[0]]++;
    }
    for (int j = 0; j < 3; j++) /* each node ranks first for some shards */
        ASSERT(tops[j] >= 8);
}

TEST(cold_start_spreads_32_and_1000_over_3_within_one)
{
    int totals[2] = {32, 1000};
    for (int t = 0; t < 2; t++) {
        struct cl__node nodes[3];
        node(&nodes[0], "alpha", 0, 2000, 0, totals[t] - 1);
        node(&nodes[1], "bravo", 0, 2000, 0, totals[t] - 1);
        node(&nodes[2], "charlie", 0, 2000, 0, totals[t] - 1);
        int count[3];
        spread(totals[t], nodes, 3, count);
        int lo = totals[t] / 3, hi = (totals[t] + 2) / 3;
        ASSERT_EQ(count[0] + count[1] + count[2], totals[t]);
        for (int j = 0; j < 3; j++)
            ASSERT(count[j] >= lo && count[j] <= hi);
    }
}

TEST(a_dead_nodes_shards_go_to_the_two_left_evenly)
{
    struct cl__node nodes[3];
    node(&nodes[0], "alpha", 11, 2000, 0, 31);
    node(&nodes[1], "bravo", 11, 2000, 0, 31);
    node(&nodes[2], "charlie", 0, 2000, 0, 31);
    nodes[2].epoch = 0; /* its lease is gone */
    int orphans[10], got[10], count[3] = {0};
    for (int i = 0; i < 10; i++)
        orphans[i] = 3 * i + 2;
    cl__rank_assign(orphans, 10, nodes, 3, got);
    for (int i = 0; i < 10; i++) {
        ASSERT(got[i] == 0 || got[i] == 1);
        count[got[i]]++;
    }
    ASSERT_EQ(count[0], 5);
    ASSERT_EQ(count[1], 5);
}

TEST(only_eligible_nodes_with_room_get_shards)
{
    struct cl__node nodes[3];
    node(&nodes[0], "alpha", 0, 2000, 0, 31);
    node(&nodes[1], "bravo", 0, 4, 0, 31);     /* room for 4 */
    node(&nodes[2], "charlie", 0, 2000, 0, 9); /* may hold 0..9 only */
    int ids[32], got[32], count[3] = {0};
    for (int i = 0; i < 32; i++)
        ids[i] = i;
    cl__rank_assign(ids, 32, nodes, 3, got);
    for (int i = 0; i < 32; i++) {
        ASSERT(got[i] >= 0);
        count[got[i]]++;
        if (got[i] == 2)
            ASSERT(i <= 9);
    }
    ASSERT(count[1] <= 4);
    ASSERT_EQ(count[0] + count[1] + count[2], 32);
    /* a full node is not ranked at all */
    nodes[1].held = 4;
    int order[3];
    int m = cl__rank_order(20, nodes, 3, order);
    ASSERT_EQ(m, 1); /* bravo full, charlie may not hold 20 */
    ASSERT_EQ(order[0], 0);
}

TEST(balance_moves_to_the_fewest_until_within_one)
{
    struct cl__node nodes[3];
    node(&nodes[0], "alpha", 32, 2000, 0, 31);
    node(&nodes[1], "bravo", 0, 2000, 0, 31);
    node(&nodes[2], "charlie", 0, 2000, 0, 31);
    ASSERT_EQ(cl__balance_target(nodes, 3, 0), 1); /* tie: by name */
    ASSERT_EQ(cl__balance_target(nodes, 3, 1), -1);
    int moves = 0;
    for (;;) { /* every node moves one at a time, as each would once a second */
        int moved = 0;
        for (int me = 0; me < 3; me++) {
            int t = cl__balance_target(nodes, 3, me);
            if (t < 0)
                continue;
            nodes[me].held--;
            nodes[t].held++;
            moved = 1;
            moves++;
        }
        if (!moved)
            break;
        ASSERT(moves < 100);
    }
    for (int j = 0; j < 3; j++)
        ASSERT(nodes[j].held >= 10 && nodes[j].held <= 11);
    ASSERT_EQ(moves, 21);
    /* the shard moved is one the target may hold */
    node(&nodes[1], "bravo", 0, 2000, 16, 31);
    int movable[4] = {1, 2, 17, 3};
    ASSERT_EQ(cl__balance_shard(movable, 4, &nodes[1]), 17);
    ASSERT_EQ(cl__balance_shard(movable, 2, &nodes[1]), -1);
}

TEST(shard_ranges_round_trip)
{
    int ids[] = {0, 1, 2, 3, 7, 9, 10, 11};
    char s[64];
    cl__ranges_format(ids, 8, s, sizeof(s));
    ASSERT_STR_EQ(s, "0-3,7,9-11");
    struct cl__range r[8];
    ASSERT_EQ(cl__ranges_parse(s, r, 8), 3);
    ASSERT_EQ(r[0].lo, 0);
    ASSERT_EQ(r[0].hi, 3);
    ASSERT_EQ(r[1].lo, 7);
    ASSERT_EQ(r[1].hi, 7);
    ASSERT_EQ(r[2].hi, 11);
    ASSERT_EQ(cl__ranges_parse("", r, 8), 0);
    ASSERT_EQ(cl__ranges_parse("5-2", r, 8), 0);
    cl__ranges_format(ids, 8, s, 5); /* cut at a whole range */
    ASSERT_STR_EQ(s, "0-3");
}

TEST_MAIN(RUN(ranking_is_stable_and_independent_of_listing_order);
          RUN(cold_start_spreads_32_and_1000_over_3_within_one);
          RUN(a_dead_nodes_shards_go_to_the_two_left_evenly);
          RUN(only_eligible_nodes_with_room_get_shards);
          RUN(balance_moves_to_the_fewest_until_within_one); RUN(shard_ranges_round_trip);)
