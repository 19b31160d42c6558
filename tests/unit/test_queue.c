/*
 * tests/unit/test_queue.c: the cross-thread queue of lib/queue.h hands items over in push order,
 * says "was empty" exactly when a consumer must be woken, and loses nothing when several
 * threads push at once while the consumer takes.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/queue.h"
#include "tests/unit/test.h"

struct item {
    int producer;
    int seq;
    struct sh_qnode node; /* not first: SH_QUEUE_ITEM must step back to the item */
};

static int seq_of(struct sh_qnode *n)
{
    return SH_QUEUE_ITEM(n, struct item, node)->seq;
}

TEST(empty_queue_takes_nothing)
{
    struct sh_queue q;
    sh_queue_init(&q);
    ASSERT(sh_queue_empty(&q));
    ASSERT(sh_queue_take(&q) == NULL);
    sh_queue_destroy(&q);
}

TEST(take_returns_everything_in_push_order)
{
    struct sh_queue q;
    sh_queue_init(&q);
    struct item it[5];
    for (int i = 0; i < 5; i++) {
        it[i].seq = i;
        it[i].node.next = &it[0].node;                     /* stale: push must reset it */
        ASSERT_EQ(sh_queue_push(&q, &it[i].node), i == 0); /* only the first found it empty */
        ASSERT(!sh_queue_empty(&q));
    }
    struct sh_qnode *n = sh_queue_take(&q);
    for (int i = 0; i < 5; i++, n = n->next) {
        ASSERT(n != NULL);
        ASSERT(SH_QUEUE_ITEM(n, struct item, node) == &it[i]);
    }
    ASSERT(n == NULL);
    ASSERT(sh_queue_empty(&q));
    ASSERT(sh_queue_take(&q) == NULL);

    /* after a take the queue starts over: empty again, and the old items are not linked in */
    ASSERT_EQ(sh_queue_push(&q, &it[3].node), 1);
    ASSERT_EQ(sh_queue_push(&q, &it[1].node), 0);
    n = sh_queue_take(&q);
    ASSERT(n && seq_of(n) == 3 && n->next && seq_of(n->next) == 1 && !n->next->next);
    sh_queue_destroy(&q);
}

/* ---- several producers, one consumer woken only when a push found the queue empty ---- */

#define PRODUCERS 4
#define PER_PRODUCER 50000
#define ROUNDS 20

struct shared {
    struct sh_queue q;
    pthread_mutex_t m;
    pthread_cond_t cond;
    int woken;  /* set by a push that found the queue empty, cleared by the consumer */
    long wakes; /* pushes that said "was empty" */
    struct item *items;
};

struct producer {
    struct shared *sh;
    int id;
};

static void *produce(void *arg)
{
    struct producer *pr = arg;
    struct shared *sh = pr->sh;
    for (int i = 0; i < PER_PRODUCER; i++) {
        struct item *it = &sh->items[pr->id * PER_PRODUCER + i];
        it->producer = pr->id;
        it->seq = i;
        if (sh_queue_push(&sh->q, &it->node)) {
            pthread_mutex_lock(&sh->m);
            sh->wakes++;
            sh->woken = 1;
            pthread_cond_signal(&sh->cond);
            pthread_mutex_unlock(&sh->m);
        }
    }
    return NULL;
}

static double timeout_multiplier(void)
{
    const char *m = getenv("SH_TEST_TIMEOUT_MULTIPLIER");
    double v = m ? atof(m) : 1;
    return v >= 1 ? v : 1;
}

/* Sleep until woken (generous bound): 0, or -1 when no wake-up came. */
static int wait_woken(struct shared *sh)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(10 * timeout_multiplier());
    int rc = 0;
    pthread_mutex_lock(&sh->m);
    while (!sh->woken && rc == 0)
        rc = pthread_cond_timedwait(&sh->cond, &sh->m, &ts);
    int ok = sh->woken;
    sh->woken = 0;
    pthread_mutex_unlock(&sh->m);
    return ok ? 0 : -1;
}

struct round {
    long got, tail, takes, empty_takes, out_of_order, lost_wake, wakes;
    int next[PRODUCERS];
};

/* The consumer sleeps until a push says it must wake, then takes everything. */
static void consume(struct shared *sh, struct round *r)
{
    while (r->got < PRODUCERS * PER_PRODUCER) {
        if (wait_woken(sh)) {
            r->lost_wake = 1;
            return;
        }
        struct sh_qnode *n = sh_queue_take(&sh->q);
        r->takes++;
        r->empty_takes += n == NULL;
        for (; n; n = n->next, r->got++) {
            struct item *it = SH_QUEUE_ITEM(n, struct item, node);
            r->out_of_order += it->seq != r->next[it->producer];
            r->next[it->producer] = it->seq + 1;
        }
    }
}

static int run_round(struct round *r)
{
    struct shared sh = {.woken = 0, .wakes = 0};
    sh_queue_init(&sh.q);
    pthread_mutex_init(&sh.m, NULL);
    pthread_cond_init(&sh.cond, NULL);
    sh.items = calloc(PRODUCERS * PER_PRODUCER, sizeof(*sh.items));
    if (!sh.items)
        return -1;
    struct producer pr[PRODUCERS];
    pthread_t th[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        pr[i] = (struct producer){&sh, i};
        if (pthread_create(&th[i], NULL, produce, &pr[i]))
            abort();
    }
    consume(&sh, r);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    for (struct sh_qnode *n = sh_queue_take(&sh.q); n; n = n->next)
        r->tail++;
    r->wakes = sh.wakes;
    free(sh.items);
    pthread_cond_destroy(&sh.cond);
    pthread_mutex_destroy(&sh.m);
    sh_queue_destroy(&sh.q);
    return 0;
}

/* Several rounds: a race shows in some rounds only. */
TEST(concurrent_pushes_arrive_whole_in_order_with_one_wake_per_take)
{
    for (int round = 0; round < ROUNDS; round++) {
        struct round r;
        memset(&r, 0, sizeof(r));
        ASSERT_EQ(run_round(&r), 0);
        ASSERT_EQ(r.lost_wake, 0);                  /* every item came with a wake-up */
        ASSERT_EQ(r.got, PRODUCERS * PER_PRODUCER); /* none lost */
        ASSERT_EQ(r.tail, 0);                       /* none left behind */
        ASSERT_EQ(r.out_of_order, 0);               /* each producer's items in its order */
        ASSERT_EQ(r.empty_takes, 0);                /* never woken for nothing */
        ASSERT_EQ(r.wakes, r.takes);                /* exactly one wake per take */
        for (int i = 0; i < PRODUCERS; i++)
            ASSERT_EQ(r.next[i], PER_PRODUCER);
    }
}

TEST_MAIN(RUN(empty_queue_takes_nothing); RUN(take_returns_everything_in_push_order);
          RUN(concurrent_pushes_arrive_whole_in_order_with_one_wake_per_take);)
