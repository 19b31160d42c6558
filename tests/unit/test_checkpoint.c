/*
 * tests/unit/test_checkpoint.c: checkpoints round-trip through the snapshot and the journal,
 * the newest wins, a torn journal line is skipped, and bad input is refused.
 */
#include <fcntl.h>
#include <stdio.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bridge/checkpoint.h"
#include "lib/errors.h"
#include "tests/unit/test.h"
#include "tests/unit/test_fs.h"

static struct br_checkpoint sample(void)
{
    struct br_checkpoint cp;
    memset(&cp, 0, sizeof(cp));
    cp.shard = 3;
    cp.total = 16;
    snprintf(cp.session_id, sizeof(cp.session_id), "abc\"def\\1");
    snprintf(cp.resume_url, sizeof(cp.resume_url), "wss://gateway-us-east1-b.discord.gg");
    cp.seq = 1234;
    cp.n_hooks = 2;
    snprintf(cp.hooks[0].key, sizeof(cp.hooks[0].key), "w0123456789abcdef");
    cp.hooks[0].acked = 1234;
    snprintf(cp.hooks[1].key, sizeof(cp.hooks[1].key), "w0123456789abcdef-2");
    cp.hooks[1].acked = 1300;
    cp.hooks[1].queued = 1400;
    return cp;
}

static int read_back(const char *dir, int shard, struct br_checkpoint *got, uint64_t *n)
{
    struct br_ckpt_files f;
    br_ckpt_files_init(&f, shard);
    memset(got, 0, sizeof(*got));
    int rc = br_checkpoint_read(dir, &f, got);
    if (n)
        *n = f.n;
    return rc;
}

static off_t file_size(const char *dir, const char *name)
{
    char path[300];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return stat(path, &st) ? -1 : st.st_size;
}

TEST(write_read_round_trip)
{
    char dir[] = "/tmp/shardhook-test-ckpt-XXXXXX";
    ASSERT(mkdtemp(dir));
    struct br_checkpoint cp = sample(), got;
    struct br_ckpt_files f;
    br_ckpt_files_init(&f, 3);
    ASSERT_EQ(read_back(dir, 3, &got, NULL), SH_ENOTFOUND);
    ASSERT_EQ(br_checkpoint_write(dir, &f, &cp, 1), 0);
    cp.seq = 1235;
    ASSERT_EQ(br_checkpoint_write(dir, &f, &cp, 0), 0); /* replaces it */
    ASSERT_EQ(read_back(dir, 3, &got, NULL), 0);
    ASSERT_EQ(got.shard, 3);
    ASSERT_EQ(got.total, 16);
    ASSERT_EQ(got.seq, 1235);
    ASSERT_EQ(got.n, 2);
    ASSERT_STR_EQ(got.session_id, "abc\"def\\1");
    ASSERT_STR_EQ(got.resume_url, "wss://gateway-us-east1-b.discord.gg");
    ASSERT_EQ(got.n_hooks, 2);
    const struct br_ckpt_hook *h = br_checkpoint_hook(&got, "w0123456789abcdef-2");
    ASSERT(h);
    ASSERT_EQ(h->acked, 1300);
    ASSERT_EQ(h->queued, 1400);
    ASSERT(!br_checkpoint_hook(&got, "nope"));
    char tmp[300];
    snprintf(tmp, sizeof(tmp), "%s/.shard-3.json.tmp", dir);
    ASSERT(access(tmp, F_OK) != 0); /* renamed into place, nothing left behind */
    br_ckpt_files_close(dir, &f);
    rm_rf(dir);
}

TEST(journal_lines_win_until_the_next_snapshot)
{
    char dir[] = "/tmp/shardhook-test-ckpt-XXXXXX";
    ASSERT(mkdtemp(dir));
    struct br_checkpoint cp = sample(), got;
    struct br_ckpt_files f;
    br_ckpt_files_init(&f, 3);
    ASSERT_EQ(br_checkpoint_write(dir, &f, &cp, 0), 0);
    for (uint64_t s = 1300; s < 1310; s++) {
        cp.seq = s;
        cp.hooks[0].acked = s;
        ASSERT_EQ(br_checkpoint_append(dir, &f, &cp), 0);
    }
    ASSERT(file_size(dir, "shard-3.journal") > 0);
    ASSERT_EQ(read_back(dir, 3, &got, NULL), 0); /* what a crash here would find */
    ASSERT_EQ(got.seq, 1309);
    ASSERT_EQ(got.n, 11);
    ASSERT_EQ(br_checkpoint_hook(&got, "w0123456789abcdef")->acked, 1309);

    /* a crash mid-append: the torn tail is skipped, the line before it stands */
    char path[300];
    snprintf(path, sizeof(path), "%s/shard-3.journal", dir);
    int fd = open(path, O_WRONLY | O_APPEND);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, "{\"version\":1,\"shard\":3,\"sh", 24), 24);
    close(fd);
    uint64_t n = 0;
    ASSERT_EQ(read_back(dir, 3, &got, &n), 0);
    ASSERT_EQ(got.seq, 1309);
    ASSERT_EQ(n, 11);

    /* the next run reads first, so its lines count from there and end the torn one */
    struct br_ckpt_files g;
    br_ckpt_files_init(&g, 3);
    ASSERT_EQ(br_checkpoint_read(dir, &g, &got), 0);
    cp.seq = 2000;
    ASSERT_EQ(br_checkpoint_append(dir, &g, &cp), 0);
    ASSERT_EQ(read_back(dir, 3, &got, NULL), 0);
    ASSERT_EQ(got.seq, 2000);
    ASSERT_EQ(got.n, 12);

    /* a snapshot takes over and empties the journal */
    cp.seq = 2001;
    ASSERT_EQ(br_checkpoint_write(dir, &g, &cp, 1), 0);
    ASSERT_EQ(file_size(dir, "shard-3.journal"), 0);
    ASSERT_EQ(read_back(dir, 3, &got, NULL), 0);
    ASSERT_EQ(got.seq, 2001);
    br_ckpt_files_close(dir, &g);
    ASSERT_EQ(file_size(dir, "shard-3.journal"), -1); /* an empty journal is removed */
    br_ckpt_files_close(dir, &f);
    rm_rf(dir);
}

TEST(a_stale_journal_loses_to_a_newer_snapshot)
{
    char dir[] = "/tmp/shardhook-test-ckpt-XXXXXX";
    ASSERT(mkdtemp(dir));
    struct br_checkpoint cp = sample(), got;
    struct br_ckpt_files f;
    br_ckpt_files_init(&f, 3);
    ASSERT_EQ(br_checkpoint_write(dir, &f, &cp, 0), 0);
    cp.seq = 1500;
    ASSERT_EQ(br_checkpoint_append(dir, &f, &cp), 0);
    /* a crash between a snapshot's rename and emptying the journal: keep a copy of the lines */
    char jpath[300], lines[4096];
    snprintf(jpath, sizeof(jpath), "%s/shard-3.journal", dir);
    int fd = open(jpath, O_RDONLY);
    ASSERT(fd >= 0);
    ssize_t len = read(fd, lines, sizeof(lines));
    close(fd);
    ASSERT(len > 0);
    cp.seq = 1400; /* older s, newer write: the snapshot still wins by n */
    ASSERT_EQ(br_checkpoint_write(dir, &f, &cp, 0), 0);
    br_ckpt_files_close(dir, &f);
    fd = open(jpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, lines, (size_t)len), len);
    close(fd);
    ASSERT_EQ(read_back(dir, 3, &got, NULL), 0);
    ASSERT_EQ(got.seq, 1400);
    ASSERT_EQ(got.n, 3);
    rm_rf(dir);
}

TEST(a_journal_without_a_snapshot_is_enough)
{
    char dir[] = "/tmp/shardhook-test-ckpt-XXXXXX";
    ASSERT(mkdtemp(dir));
    struct br_checkpoint cp = sample(), got;
    struct br_ckpt_files f;
    br_ckpt_files_init(&f, 3);
    cp.seq = 42;
    ASSERT_EQ(br_checkpoint_append(dir, &f, &cp), 0);
    ASSERT_EQ(read_back(dir, 3, &got, NULL), 0);
    ASSERT_EQ(got.seq, 42);
    /* another shard's files are not this one's */
    ASSERT_EQ(read_back(dir, 4, &got, NULL), SH_ENOTFOUND);
    br_ckpt_files_close(dir, &f);
    rm_rf(dir);
}

TEST(parse_refuses_what_it_cannot_trust)
{
    struct br_checkpoint got;
    const char *bad[] = {
        "",
        "[]",
        "{\"version\":2,\"shard\":0,\"shard_count\":1,\"session_id\":\"a\","
        "\"resume_gateway_url\":\"\",\"seq\":1}",
        "{\"version\":1,\"shard\":1,\"shard_count\":1,\"session_id\":\"a\","
        "\"resume_gateway_url\":\"\",\"seq\":1}",
        "{\"version\":1,\"shard\":0,\"shard_count\":1,\"session_id\":\"\","
        "\"resume_gateway_url\":\"\",\"seq\":1}",
        "{\"version\":1,\"shard\":0,\"shard_count\":1,\"session_id\":\"a\","
        "\"resume_gateway_url\":\"\",\"seq\":-1}",
        "{\"version\":1,\"shard\":0,\"shard_count\":1,\"session_id\":\"a\","
        "\"resume_gateway_url\":\"\",\"seq\":1.5}",
        "{\"version\":1,\"shard\":0,\"shard_count\":1,\"session_id\":\"a\","
        "\"resume_gateway_url\":\"\",\"seq\":1,\"webhooks\":{\"w\":{}}}",
        "{\"version\":1,\"shard\":0,\"shard_count\":1,\"session_id\":\"a\",\"seq\":1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        got.seq = 77;
        int rc = br_checkpoint_parse(bad[i], strlen(bad[i]), &got);
        if (rc != SH_EPARSE)
            T_FAIL_("case %zu parsed (rc %d)", i, rc);
        ASSERT_EQ(got.seq, 77); /* untouched */
    }
    const char *ok = "{\"version\":1,\"shard\":0,\"shard_count\":1,\"session_id\":\"a\","
                     "\"resume_gateway_url\":\"ws://x\",\"seq\":9}";
    ASSERT_EQ(br_checkpoint_parse(ok, strlen(ok), &got), 0);
    ASSERT_EQ(got.n_hooks, 0);
    ASSERT_EQ(got.seq, 9);
}

TEST(a_webhook_key_read_from_a_file_is_written_back_readable)
{
    /* a key with a quote and a backslash (a hand-edited or foreign file) parses ... */
    const char *in = "{\"version\":1,\"shard\":3,\"shard_count\":16,\"session_id\":\"a\","
                     "\"resume_gateway_url\":\"\",\"seq\":9,\"n\":4,"
                     "\"webhooks\":{\"w\\\"x\\\\y\\n\":{\"acked\":5,\"queued\":6}}}";
    struct br_checkpoint cp, got;
    ASSERT_EQ(br_checkpoint_parse(in, strlen(in), &cp), 0);
    ASSERT_EQ(cp.n_hooks, 1);
    ASSERT_STR_EQ(cp.hooks[0].key, "w\"x\\y\n");
    /* ... so the line written from it must parse again, to the same key */
    struct sh_buf b;
    sh_buf_init(&b, BR_CKPT_MAX_BYTES);
    ASSERT_EQ(br_checkpoint_encode(&cp, 0, &b), 0);
    ASSERT_EQ(br_checkpoint_parse(b.data, b.len, &got), 0);
    sh_buf_free(&b);
    ASSERT_EQ(got.n_hooks, 1);
    ASSERT_STR_EQ(got.hooks[0].key, "w\"x\\y\n");
    ASSERT_EQ(got.hooks[0].acked, 5);
    ASSERT_EQ(got.hooks[0].queued, 6);
}

TEST(unwritable_folder_fails_cleanly)
{
    struct br_checkpoint cp = sample();
    struct br_ckpt_files f;
    br_ckpt_files_init(&f, 3);
    ASSERT_EQ(br_checkpoint_write("/nonexistent/shardhook", &f, &cp, 0), SH_EIO);
    ASSERT_EQ(br_checkpoint_append("/nonexistent/shardhook", &f, &cp), SH_EIO);
}

TEST_MAIN(RUN(write_read_round_trip); RUN(journal_lines_win_until_the_next_snapshot);
          RUN(a_stale_journal_loses_to_a_newer_snapshot);
          RUN(a_journal_without_a_snapshot_is_enough); RUN(parse_refuses_what_it_cannot_trust);
          RUN(a_webhook_key_read_from_a_file_is_written_back_readable);
          RUN(unwritable_folder_fails_cleanly);)
