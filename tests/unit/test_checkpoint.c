/* tests/unit/test_checkpoint.c: checkpoint files round-trip, are atomic, and refuse bad input. */
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

TEST(write_read_round_trip)
{
    char dir[] = "/tmp/shardhook-test-ckpt-XXXXXX";
    ASSERT(mkdtemp(dir));
    struct br_checkpoint cp = sample(), got;
    ASSERT_EQ(br_checkpoint_read(dir, 3, &got), SH_ENOTFOUND);
    ASSERT_EQ(br_checkpoint_write(dir, &cp, 1), 0);
    cp.seq = 1235;
    ASSERT_EQ(br_checkpoint_write(dir, &cp, 0), 0); /* replaces it */
    memset(&got, 0, sizeof(got));
    ASSERT_EQ(br_checkpoint_read(dir, 3, &got), 0);
    ASSERT_EQ(got.shard, 3);
    ASSERT_EQ(got.total, 16);
    ASSERT_EQ(got.seq, 1235);
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

TEST(unwritable_folder_fails_cleanly)
{
    struct br_checkpoint cp = sample();
    ASSERT_EQ(br_checkpoint_write("/nonexistent/shardhook", &cp, 0), SH_EIO);
}

TEST_MAIN(RUN(write_read_round_trip); RUN(parse_refuses_what_it_cannot_trust);
          RUN(unwritable_folder_fails_cleanly);)
