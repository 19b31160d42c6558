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
#include "bridge/ckstore.h"
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

/* Cluster mode keeps the encoded line in Redis as an opaque blob and parses it back at a hold. */
TEST(the_encoded_line_parses_back_to_the_same_checkpoint)
{
    struct br_checkpoint cp = sample(), got;
    cp.shard = 65535;
    cp.total = 65536;
    memset(cp.session_id, 'S', sizeof(cp.session_id) - 1); /* the longest that fits */
    cp.session_id[sizeof(cp.session_id) - 1] = '\0';
    memset(cp.resume_url, 'u', sizeof(cp.resume_url) - 1);
    cp.resume_url[sizeof(cp.resume_url) - 1] = '\0';
    cp.seq = 9007199254740992ull; /* 2^53: the largest a JSON reader keeps exact */
    cp.n = 77;
    cp.clean = 1;
    cp.n_hooks = BR_CKPT_MAX_HOOKS;
    for (size_t i = 0; i < cp.n_hooks; i++) {
        snprintf(cp.hooks[i].key, sizeof(cp.hooks[i].key), "w%016zx-%02u", i * 977,
                 (unsigned)(i % 100)); /* 23 characters: the key's whole room */
        cp.hooks[i].acked = cp.seq - i;
        cp.hooks[i].queued = i;
    }
    struct sh_buf out;
    sh_buf_init(&out, BR_CKPT_MAX_BYTES);
    ASSERT_EQ(br_checkpoint_encode(&cp, 1700000000000ull, &out), 0);
    ASSERT(memchr(out.data, '\n', out.len) == out.data + out.len - 1); /* one line */
    memset(&got, 0x5a, sizeof(got));
    ASSERT_EQ(br_checkpoint_parse(out.data, out.len, &got), 0);
    ASSERT_EQ(got.shard, cp.shard);
    ASSERT_EQ(got.total, cp.total);
    ASSERT_STR_EQ(got.session_id, cp.session_id);
    ASSERT_STR_EQ(got.resume_url, cp.resume_url);
    ASSERT(got.seq == cp.seq);
    ASSERT_EQ(got.n, cp.n);
    ASSERT_EQ(got.clean, 1);
    ASSERT_EQ(got.n_hooks, cp.n_hooks);
    for (size_t i = 0; i < cp.n_hooks; i++) {
        ASSERT_STR_EQ(got.hooks[i].key, cp.hooks[i].key);
        ASSERT(got.hooks[i].acked == cp.hooks[i].acked);
        ASSERT_EQ(got.hooks[i].queued, cp.hooks[i].queued);
    }
    /* without the newline too (a store may trim it) */
    ASSERT_EQ(br_checkpoint_parse(out.data, out.len - 1, &got), 0);
    ASSERT_EQ(got.n_hooks, cp.n_hooks);
    sh_buf_free(&out);
    /* a checkpoint without a session does not parse: the cluster passes no blob for one */
    struct br_checkpoint none = sample();
    none.session_id[0] = '\0';
    sh_buf_init(&out, BR_CKPT_MAX_BYTES);
    ASSERT_EQ(br_checkpoint_encode(&none, 0, &out), 0);
    ASSERT_EQ(br_checkpoint_parse(out.data, out.len, &got), SH_EPARSE);
    sh_buf_free(&out);
}

/* ---- the mirrored store ---- */

struct mirror_seen {
    int puts;
    struct br_checkpoint last;
};

static void record_put(void *ud, const struct br_checkpoint *cp)
{
    struct mirror_seen *m = ud;
    m->puts++;
    m->last = *cp;
}

TEST(the_mirrored_store_writes_the_files_and_hands_every_write_over)
{
    char dir[] = "/tmp/shardhook-test-ckpt-XXXXXX";
    ASSERT(mkdtemp(dir));
    struct br_ckstore *files = NULL, *st = NULL;
    ASSERT_EQ(br_ckstore_files_new(dir, &files), 0);
    struct mirror_seen seen = {0};
    struct br_ckstore_mirror mirror = {record_put, &seen};
    ASSERT_EQ(br_ckstore_mirrored_new(files, &mirror, &st), 0);
    ASSERT_STR_EQ(st->where, files->where);
    struct br_checkpoint cp = sample(), got;
    ASSERT_EQ(st->ops->load(st, 3, &got), SH_ENOTFOUND);
    /* the file store's first write is a snapshot: the append is refused, nothing handed over */
    ASSERT_EQ(st->ops->append(st, &cp), SH_EAGAIN);
    ASSERT_EQ(seen.puts, 0);
    ASSERT_EQ(st->ops->snapshot(st, &cp, 1), 0);
    ASSERT_EQ(seen.puts, 1);
    ASSERT_EQ(seen.last.seq, 1234);
    cp.seq = 1250;
    ASSERT_EQ(st->ops->append(st, &cp), 0);
    ASSERT_EQ(seen.puts, 2);
    ASSERT_EQ(seen.last.seq, 1250);
    ASSERT_STR_EQ(seen.last.session_id, "abc\"def\\1");
    ASSERT_EQ(st->ops->unsynced(st, 3), 1); /* the inner store's journal waits for a sync */
    /* reads are the files' */
    ASSERT_EQ(st->ops->load(st, 3, &got), 0);
    ASSERT_EQ(got.seq, 1250);
    char path[300];
    snprintf(path, sizeof(path), "%s/checkpoints/shard-3.json", dir);
    ASSERT(access(path, F_OK) == 0);
    br_ckstore_free(st);
    /* a failed file write is still handed over: the cluster's copy stays current */
    ASSERT_EQ(br_ckstore_files_new(dir, &files), 0);
    ASSERT_EQ(br_ckstore_mirrored_new(files, &mirror, &st), 0);
    rm_rf(dir);
    cp.seq = 1300;
    ASSERT(st->ops->snapshot(st, &cp, 1) < 0);
    ASSERT_EQ(seen.puts, 3);
    ASSERT_EQ(seen.last.seq, 1300);
    br_ckstore_free(st);
    /* no put: refused, and inner is freed (no leak under the sanitizer) */
    char dir2[] = "/tmp/shardhook-test-ckpt-XXXXXX";
    ASSERT(mkdtemp(dir2));
    ASSERT_EQ(br_ckstore_files_new(dir2, &files), 0);
    struct br_ckstore_mirror empty = {NULL, NULL};
    st = NULL;
    ASSERT_EQ(br_ckstore_mirrored_new(files, &empty, &st), SH_EINVAL);
    ASSERT(st == NULL);
    rm_rf(dir2);
}

TEST_MAIN(RUN(write_read_round_trip); RUN(journal_lines_win_until_the_next_snapshot);
          RUN(a_stale_journal_loses_to_a_newer_snapshot);
          RUN(a_journal_without_a_snapshot_is_enough); RUN(parse_refuses_what_it_cannot_trust);
          RUN(a_webhook_key_read_from_a_file_is_written_back_readable);
          RUN(unwritable_folder_fails_cleanly);
          RUN(the_encoded_line_parses_back_to_the_same_checkpoint);
          RUN(the_mirrored_store_writes_the_files_and_hands_every_write_over);)
