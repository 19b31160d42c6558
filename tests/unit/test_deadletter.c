/* tests/unit/test_deadletter.c: a dead letter is one JSON file holding the body as sent, written
 * durably or not at all, and kept within a per-webhook byte bound, oldest removed first. */
#include <cjson/cJSON.h>
#include <ftw.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge/deadletter.h"
#include "lib/errors.h"
#include "tests/unit/test.h"
#include "tests/unit/test_fs.h"

TEST(file_holds_status_answer_and_body)
{
    char dir[] = "/tmp/shardhook-test-dead-XXXXXX";
    ASSERT(mkdtemp(dir));
    char sub[300];
    snprintf(sub, sizeof(sub), "%s/dead-letter", dir);
    const char body[] = "{\"events\":[{\"shard\":[0,1],\"op\":0,\"t\":\"A\",\"s\":1,\"d\":{}}]}";
    const char resp[] = "no \"thanks\"\n\x01\xff\xc3\xa9";
    struct br_dead_letter dl = {.webhook = 2,
                                .webhook_key = "wabc",
                                .msg_id = "msg_x",
                                .status = 422,
                                .attempts = 1,
                                .events = 1,
                                .response = resp,
                                .response_len = sizeof(resp) - 1,
                                .body = body,
                                .body_len = sizeof(body) - 1};
    char path[512];
    ASSERT_EQ(br_deadletter_write(sub, &dl, path, sizeof(path)), 0);
    ASSERT_CONTAINS(path, "-w2-msg_x.json");
    FILE *f = fopen(path, "rb");
    ASSERT(f);
    char text[4096];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    cJSON *j = cJSON_Parse(text);
    ASSERT(j);
    ASSERT_EQ(cJSON_GetObjectItem(j, "status")->valueint, 422);
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "webhook_id")->valuestring, "msg_x");
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "response")->valuestring,
                  "no \"thanks\"\n\x01\xc3\xbf\xc3\xa9"); /* a stray byte as U+00FF */
    char *b = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "body"));
    ASSERT_STR_EQ(b, body);
    free(b);
    cJSON_Delete(j);
    rm_rf(dir);
}

static void put_file(const char *dir, const char *name, size_t bytes)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    for (size_t i = 0; f && i < bytes; i++)
        fputc('x', f);
    if (f)
        fclose(f);
}

static int exists(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* a folder that cannot be written (here: a file in its place) fails the write, leaves nothing */
TEST(unwritable_folder_fails_and_leaves_nothing)
{
    char dir[] = "/tmp/shardhook-test-dead-XXXXXX";
    ASSERT(mkdtemp(dir));
    put_file(dir, "dead-letter", 3);
    char sub[300], path[512];
    snprintf(sub, sizeof(sub), "%s/dead-letter", dir);
    struct br_dead_letter dl = {.webhook = 0,
                                .webhook_key = "wabc",
                                .msg_id = "msg_y",
                                .status = 400,
                                .attempts = 1,
                                .events = 1,
                                .body = "{}",
                                .body_len = 2};
    ASSERT_EQ(br_deadletter_write(sub, &dl, path, sizeof(path)), SH_EIO);
    uint64_t kept = 1;
    ASSERT(br_deadletter_trim(sub, 0, 10, NULL, NULL, &kept) != 0);
    /* once the folder is back, the same call writes it, with the reason */
    snprintf(path, sizeof(path), "%s/dead-letter", dir);
    ASSERT_EQ(unlink(path), 0);
    ASSERT_EQ(br_deadletter_write(sub, &dl, path, sizeof(path)), 0);
    FILE *f = fopen(path, "rb");
    ASSERT(f);
    char text[1024];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    ASSERT_CONTAINS(text, "\"reason\":\"refused\"");
    rm_rf(dir);
}

TEST(trim_removes_a_webhooks_oldest_files_first)
{
    char dir[] = "/tmp/shardhook-test-dead-XXXXXX";
    ASSERT(mkdtemp(dir));
    put_file(dir, "20261123T134500.001-w0-msg_a.json", 100);
    put_file(dir, "20261123T134500.002-w0-msg_b.json", 100);
    put_file(dir, "20261123T134501.000-w1-msg_c.json", 100); /* another webhook's */
    put_file(dir, "20261123T134502.000-w0-msg_d.json", 100);
    put_file(dir, "20261123T134503.000-w0-msg_e.json", 100);
    put_file(dir, "20261123T134504.000-w10-msg_f.json", 100); /* w10 is not w1 */
    put_file(dir, "notes.txt", 1000);
    uint64_t removed = 0, removed_bytes = 0, kept = 0;
    ASSERT_EQ(br_deadletter_trim(dir, 0, UINT64_MAX, &removed, &removed_bytes, &kept), 0);
    ASSERT_EQ(removed, 0);
    ASSERT_EQ(kept, 400);
    ASSERT_EQ(br_deadletter_trim(dir, 0, 250, &removed, &removed_bytes, &kept), 0);
    ASSERT_EQ(removed, 2);
    ASSERT_EQ(removed_bytes, 200);
    ASSERT_EQ(kept, 200);
    ASSERT(!exists(dir, "20261123T134500.001-w0-msg_a.json"));
    ASSERT(!exists(dir, "20261123T134500.002-w0-msg_b.json"));
    ASSERT(exists(dir, "20261123T134502.000-w0-msg_d.json"));
    ASSERT(exists(dir, "20261123T134503.000-w0-msg_e.json"));
    ASSERT(exists(dir, "20261123T134501.000-w1-msg_c.json"));
    ASSERT(exists(dir, "20261123T134504.000-w10-msg_f.json"));
    ASSERT(exists(dir, "notes.txt"));
    /* a bound smaller than one file keeps the newest */
    ASSERT_EQ(br_deadletter_trim(dir, 0, 10, &removed, NULL, &kept), 0);
    ASSERT_EQ(removed, 1);
    ASSERT_EQ(kept, 100);
    ASSERT(exists(dir, "20261123T134503.000-w0-msg_e.json"));
    rm_rf(dir);
}

TEST_MAIN(RUN(file_holds_status_answer_and_body); RUN(unwritable_folder_fails_and_leaves_nothing);
          RUN(trim_removes_a_webhooks_oldest_files_first);)
