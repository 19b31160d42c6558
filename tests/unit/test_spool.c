/* tests/unit/test_spool.c: segment files keep batches in order, rotate, survive a torn tail. */
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bridge/spool.h"
#include "lib/errors.h"
#include "tests/unit/test.h"
#include "tests/unit/test_fs.h"

static char dir[300], top[256];

/* A new empty test folder; the previous one is removed. */
static void fresh_dir(void)
{
    if (top[0])
        rm_rf(top);
    snprintf(top, sizeof(top), "/tmp/shardhook-test-spool-XXXXXX");
    if (!mkdtemp(top))
        abort();
    snprintf(dir, sizeof(dir), "%s/w0", top);
}

static size_t count_segments(void)
{
    char pat[320];
    snprintf(pat, sizeof(pat), "%s/*.seg", dir);
    glob_t g;
    size_t n = glob(pat, 0, NULL, &g) ? 0 : g.gl_pathc;
    globfree(&g);
    return n;
}

static struct br_batch *make(int n, uint64_t s0)
{
    struct br_batch *b;
    if (br_batch_new(1 << 16, &b))
        abort();
    for (int i = 0; i < n; i++) {
        char ev[96];
        int l = snprintf(ev, sizeof(ev), "{\"t\":\"X\",\"s\":%llu,\"pad\":\"%040d\"}",
                         (unsigned long long)(s0 + (uint64_t)i), i);
        if (br_batch_add(b, ev, (size_t)l, 0, 1, s0 + (uint64_t)i, 1, NULL))
            abort();
    }
    br_batch_close(b);
    return b;
}

struct seen {
    int records;
    uint32_t events;
    uint64_t last_min_s;
};

static void on_record(void *ud, const char *meta, size_t len)
{
    struct seen *s = ud;
    struct br_batch b;
    memset(&b, 0, sizeof(b));
    if (br_batch_decode_meta(meta, len, &b))
        return;
    s->records++;
    s->events += b.n_events;
    s->last_min_s = b.shards[0].min_s;
    free(b.shards);
}

/* Pop one batch and check it is the one that starts at s0; frees it. */
static int pop_is(struct br_spool *sp, uint64_t s0)
{
    struct br_batch *b = NULL;
    uint64_t skipped;
    int rc = br_spool_pop(sp, &b, &skipped, NULL);
    int ok = !rc && b->n_shards == 1 && b->shards[0].min_s == s0;
    br_batch_free(b);
    return ok;
}

TEST(fifo_across_segments_and_cleanup)
{
    fresh_dir();
    struct br_spool *sp;
    ASSERT_EQ(br_spool_open(dir, 0, 1500, 1 << 20, NULL, NULL, &sp), 0);
    struct br_spool_stats st;
    for (int i = 0; i < 10; i++) {
        struct br_batch *b = make(5, (uint64_t)i * 100);
        ASSERT_EQ(br_spool_append(sp, b), 0);
        br_batch_free(b);
    }
    br_spool_stats(sp, &st);
    ASSERT_EQ(st.batches, 10);
    ASSERT_EQ(st.events, 50);
    ASSERT(st.segments > 2); /* 1500-byte segments rotate */
    ASSERT_EQ(count_segments(), st.segments);
    size_t rec;
    ASSERT_EQ(br_spool_peek(sp, &rec), 0);
    ASSERT(rec > 200);
    for (int i = 0; i < 4; i++)
        ASSERT(pop_is(sp, (uint64_t)i * 100));
    struct br_batch *b = make(5, 1000); /* appends go on behind the reader */
    ASSERT_EQ(br_spool_append(sp, b), 0);
    br_batch_free(b);
    for (int i = 4; i < 10; i++)
        ASSERT(pop_is(sp, (uint64_t)i * 100));
    ASSERT(pop_is(sp, 1000));
    struct br_batch *none = NULL;
    uint64_t skipped;
    ASSERT_EQ(br_spool_pop(sp, &none, &skipped, NULL), SH_ENOTFOUND);
    br_spool_stats(sp, &st);
    ASSERT_EQ(st.batches, 0);
    ASSERT_EQ(st.bytes, 0);
    ASSERT_EQ(count_segments(), 0); /* drained segments are deleted */
    b = make(1, 7);                 /* and a drained spool takes appends again */
    ASSERT_EQ(br_spool_append(sp, b), 0);
    br_batch_free(b);
    ASSERT(pop_is(sp, 7));
    br_spool_close(sp);
}

TEST(adopt_keeps_order_and_cuts_a_torn_tail)
{
    fresh_dir();
    struct br_spool *sp;
    ASSERT_EQ(br_spool_open(dir, 0, 1 << 20, 1 << 20, NULL, NULL, &sp), 0);
    for (int i = 0; i < 3; i++) {
        struct br_batch *b = make(2, (uint64_t)i * 10);
        ASSERT_EQ(br_spool_append(sp, b), 0);
        br_batch_free(b);
    }
    br_spool_close(sp);
    /* a crash in the middle of a write leaves half a record */
    char pat[320];
    snprintf(pat, sizeof(pat), "%s/*.seg", dir);
    glob_t g;
    ASSERT_EQ(glob(pat, 0, NULL, &g), 0);
    int fd = open(g.gl_pathv[0], O_WRONLY | O_APPEND);
    globfree(&g);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, "SHS1\x10\x00\x00\x00garbage", 15), 15);
    close(fd);
    /* keep=0 refuses a folder with segments; keep=1 adopts them and shows each record */
    ASSERT_EQ(br_spool_open(dir, 0, 1 << 20, 1 << 20, NULL, NULL, &sp), SH_EINVAL);
    struct seen seen = {0};
    ASSERT_EQ(br_spool_open(dir, 1, 1 << 20, 1 << 20, on_record, &seen, &sp), 0);
    ASSERT_EQ(seen.records, 3);
    ASSERT_EQ(seen.events, 6);
    ASSERT_EQ(seen.last_min_s, 20);
    struct br_spool_stats st;
    br_spool_stats(sp, &st);
    ASSERT_EQ(st.batches, 3);
    ASSERT_EQ(st.events, 6);
    struct br_batch *b = make(1, 99);
    ASSERT_EQ(br_spool_append(sp, b), 0); /* after the cut, not after the garbage */
    br_batch_free(b);
    for (int i = 0; i < 3; i++) {
        struct br_batch *a = NULL;
        uint64_t skipped;
        int adopted = 0;
        ASSERT_EQ(br_spool_pop(sp, &a, &skipped, &adopted), 0);
        ASSERT_EQ(a->shards[0].min_s, (uint64_t)i * 10);
        ASSERT(adopted);
        br_batch_free(a);
    }
    struct br_batch *a = NULL;
    uint64_t skipped;
    int adopted = 1;
    ASSERT_EQ(br_spool_pop(sp, &a, &skipped, &adopted), 0); /* appended after the adoption */
    ASSERT_EQ(a->shards[0].min_s, 99);
    ASSERT(!adopted);
    br_batch_free(a);
    br_spool_close(sp);
}

TEST(batches_spooled_after_the_adopted_ones_drained_are_not_adopted)
{
    fresh_dir();
    struct br_spool *sp;
    ASSERT_EQ(br_spool_open(dir, 0, 1 << 20, 1 << 20, NULL, NULL, &sp), 0);
    struct br_batch *b = make(1, 5);
    ASSERT_EQ(br_spool_append(sp, b), 0);
    br_batch_free(b);
    br_spool_close(sp);
    ASSERT_EQ(br_spool_open(dir, 1, 1 << 20, 1 << 20, NULL, NULL, &sp), 0);
    struct br_batch *a = NULL;
    uint64_t skipped;
    int adopted = 0;
    ASSERT_EQ(br_spool_pop(sp, &a, &skipped, &adopted), 0);
    ASSERT(adopted);
    br_batch_free(a);
    /* the spool is empty now: what this run spools is its own (its lag counts) */
    b = make(1, 7);
    ASSERT_EQ(br_spool_append(sp, b), 0);
    br_batch_free(b);
    adopted = 1;
    ASSERT_EQ(br_spool_pop(sp, &a, &skipped, &adopted), 0);
    ASSERT_EQ(a->shards[0].min_s, 7);
    ASSERT(!adopted);
    ASSERT_EQ(br_spool_prepend(sp, &a, 1), 0);
    br_batch_free(a);
    adopted = 1;
    ASSERT_EQ(br_spool_pop(sp, &a, &skipped, &adopted), 0);
    ASSERT_EQ(a->shards[0].min_s, 7);
    ASSERT(!adopted);
    br_batch_free(a);
    br_spool_close(sp);
}

TEST(corrupt_record_skips_the_rest_of_its_segment)
{
    fresh_dir();
    struct br_spool *sp;
    ASSERT_EQ(br_spool_open(dir, 0, 1 << 20, 1 << 20, NULL, NULL, &sp), 0);
    for (int i = 0; i < 2; i++) {
        struct br_batch *b = make(2, (uint64_t)i * 10);
        ASSERT_EQ(br_spool_append(sp, b), 0);
        br_batch_free(b);
    }
    char pat[320];
    snprintf(pat, sizeof(pat), "%s/*.seg", dir);
    glob_t g;
    ASSERT_EQ(glob(pat, 0, NULL, &g), 0);
    int fd = open(g.gl_pathv[0], O_WRONLY);
    globfree(&g);
    ASSERT(fd >= 0);
    ASSERT_EQ(pwrite(fd, "X", 1, 60), 1); /* flips a byte of the first body: CRC fails */
    close(fd);
    struct br_batch *b = NULL;
    uint64_t skipped = 0;
    ASSERT_EQ(br_spool_pop(sp, &b, &skipped, NULL), SH_ECORRUPT);
    ASSERT(skipped > 0);
    ASSERT_EQ(br_spool_pop(sp, &b, &skipped, NULL), SH_ENOTFOUND);
    b = make(1, 5);
    ASSERT_EQ(br_spool_append(sp, b), 0); /* a fresh segment */
    br_batch_free(b);
    ASSERT(pop_is(sp, 5));
    br_spool_close(sp);
}

TEST(prepend_goes_before_the_head)
{
    fresh_dir();
    struct br_spool *sp;
    ASSERT_EQ(br_spool_open(dir, 0, 1 << 20, 1 << 20, NULL, NULL, &sp), 0);
    for (int i = 0; i < 3; i++) {
        struct br_batch *b = make(1, 100 + (uint64_t)i);
        ASSERT_EQ(br_spool_append(sp, b), 0);
        br_batch_free(b);
    }
    ASSERT(pop_is(sp, 100)); /* the head is partly read */
    struct br_batch *mem[2] = {make(1, 1), make(1, 2)};
    ASSERT_EQ(br_spool_prepend(sp, mem, 2), 0);
    br_batch_free(mem[0]);
    br_batch_free(mem[1]);
    br_spool_close(sp);
    ASSERT_EQ(br_spool_open(dir, 1, 1 << 20, 1 << 20, NULL, NULL, &sp), 0);
    ASSERT(pop_is(sp, 1));
    ASSERT(pop_is(sp, 2));
    ASSERT(pop_is(sp, 101)); /* 100 was read before: not repeated */
    ASSERT(pop_is(sp, 102));
    struct br_batch *none = NULL;
    uint64_t skipped;
    ASSERT_EQ(br_spool_pop(sp, &none, &skipped, NULL), SH_ENOTFOUND);
    ASSERT_EQ(br_spool_sync(sp), 0);
    br_spool_close(sp);
}

TEST(oversize_body_is_refused)
{
    fresh_dir();
    struct br_spool *sp;
    ASSERT_EQ(br_spool_open(dir, 0, 1 << 20, 64, NULL, NULL, &sp), 0);
    struct br_batch *b = make(3, 1);
    ASSERT_EQ(br_spool_append(sp, b), SH_ETOOBIG);
    br_batch_free(b);
    struct br_spool_stats st;
    br_spool_stats(sp, &st);
    ASSERT_EQ(st.batches, 0);
    br_spool_close(sp);
}

TEST_MAIN(RUN(fifo_across_segments_and_cleanup); RUN(adopt_keeps_order_and_cuts_a_torn_tail);
          RUN(batches_spooled_after_the_adopted_ones_drained_are_not_adopted);
          RUN(corrupt_record_skips_the_rest_of_its_segment); RUN(prepend_goes_before_the_head);
          RUN(oversize_body_is_refused); rm_rf(top);)
