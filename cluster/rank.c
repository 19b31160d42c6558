/*
 * cluster/rank.c: who should hold which shard, as a pure function of the view every node reads
 * from Redis, so that nodes agree without talking: rendezvous scores (highest first), the spread
 * of shards without a live owner over live nodes within one of an even share, and the balance
 * move (rule 6). No Redis, no clock, no state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t cl__rank_score(int shard, const char *node)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a of the name, then mixed with the shard */
    for (const unsigned char *p = (const unsigned char *)node; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return mix64(h ^ mix64((uint64_t)(uint32_t)shard));
}

int cl__node_may(const struct cl__node *node, int shard)
{
    for (int i = 0; i < node->n_ranges; i++)
        if (shard >= node->ranges[i].lo && shard <= node->ranges[i].hi)
            return 1;
    return 0;
}

static int better(int shard, const struct cl__node *a, const struct cl__node *b)
{
    uint64_t sa = cl__rank_score(shard, a->name), sb = cl__rank_score(shard, b->name);
    if (sa != sb)
        return sa > sb;
    return strcmp(a->name, b->name) < 0;
}

/* cl__rank_order with load[i] (NULL: nodes[i].held) as what each node holds. */
static int order_with(int shard, const struct cl__node *nodes, int n, const int *load, int *order)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        const struct cl__node *nd = &nodes[i];
        if (!nd->epoch || (load ? load[i] : nd->held) >= nd->max_shards || !cl__node_may(nd, shard))
            continue;
        int j = k++; /* insertion: n is small */
        while (j > 0 && better(shard, nd, &nodes[order[j - 1]])) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    return k;
}

int cl__rank_order(int shard, const struct cl__node *nodes, int n, int *order)
{
    return order_with(shard, nodes, n, NULL, order);
}

/* Live nodes that may hold anything and the shards they hold. */
static int live_count(const struct cl__node *nodes, int n, long *held)
{
    int live = 0;
    *held = 0;
    for (int i = 0; i < n; i++) {
        if (!nodes[i].epoch || nodes[i].n_ranges == 0 || nodes[i].max_shards <= 0)
            continue;
        live++;
        *held += nodes[i].held;
    }
    return live;
}

void cl__rank_assign(const int *shards, int ns, const struct cl__node *nodes, int n, int *assigned)
{
    long held;
    int load[CL__MAX_NODES], order[CL__MAX_NODES];
    if (n > CL__MAX_NODES)
        n = CL__MAX_NODES;
    int live = live_count(nodes, n, &held);
    long q = live ? (held + ns) / live : 0, rem = live ? (held + ns) % live : 0, over = 0;
    for (int i = 0; i < n; i++) {
        load[i] = nodes[i].held;
        if (nodes[i].epoch && load[i] > q)
            over++; /* already past the floor: takes one of the ceil places */
    }
    for (int k = 0; k < ns; k++) {
        int m = order_with(shards[k], nodes, n, load, order), pick = m ? order[0] : -1;
        for (int j = 0; j < m; j++) {
            int i = order[j];
            if (load[i] < q || (load[i] == q && over < rem)) {
                pick = i;
                break;
            }
        }
        assigned[k] = pick;
        if (pick < 0)
            continue;
        if (load[pick] == q)
            over++;
        load[pick]++;
    }
}

int cl__balance_target(const struct cl__node *nodes, int n, int me)
{
    long held;
    int live = live_count(nodes, n, &held);
    if (me < 0 || me >= n || live < 2 || !nodes[me].epoch)
        return -1;
    long ceil_share = (held + live - 1) / live;
    if (nodes[me].held <= ceil_share)
        return -1;
    int best = -1;
    for (int i = 0; i < n; i++) {
        const struct cl__node *nd = &nodes[i];
        if (i == me || !nd->epoch || nd->n_ranges == 0 || nd->held >= nd->max_shards ||
            nd->held + 1 >= nodes[me].held)
            continue;
        if (best < 0 || nd->held < nodes[best].held ||
            (nd->held == nodes[best].held && strcmp(nd->name, nodes[best].name) < 0))
            best = i;
    }
    return best;
}

int cl__balance_shard(const int *movable, int nm, const struct cl__node *target)
{
    int best = -1;
    uint64_t best_score = 0;
    for (int i = 0; i < nm; i++) {
        if (!cl__node_may(target, movable[i]))
            continue;
        uint64_t s = cl__rank_score(movable[i], target->name);
        if (best < 0 || s > best_score) {
            best = movable[i];
            best_score = s;
        }
    }
    return best;
}

int cl__ranges_parse(const char *s, struct cl__range *out, int cap)
{
    int n = 0;
    while (s && *s && n < cap) {
        char *end;
        long lo = strtol(s, &end, 10), hi = lo;
        if (end == s || lo < 0)
            break;
        s = end;
        if (*s == '-') {
            hi = strtol(s + 1, &end, 10);
            if (end == s + 1 || hi < lo)
                break;
            s = end;
        }
        out[n].lo = (int)lo;
        out[n].hi = (int)(hi > 0x7fffffff ? 0x7fffffff : hi);
        n++;
        if (*s != ',')
            break;
        s++;
    }
    return n;
}

void cl__ranges_format(const int *ids, int n, char *out, size_t cap)
{
    size_t len = 0;
    int ranges = 0;
    out[0] = '\0';
    for (int i = 0; i < n && ranges < CL__MAX_RANGES; ranges++) {
        int j = i;
        while (j + 1 < n && ids[j + 1] == ids[j] + 1)
            j++;
        int w = ids[i] == ids[j]
                    ? snprintf(out + len, cap - len, "%s%d", len ? "," : "", ids[i])
                    : snprintf(out + len, cap - len, "%s%d-%d", len ? "," : "", ids[i], ids[j]);
        if (w < 0 || (size_t)w >= cap - len) {
            out[len] = '\0'; /* cut at the last whole range */
            return;
        }
        len += (size_t)w;
        i = j + 1;
    }
}
