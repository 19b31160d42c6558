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

/* Write a dead letter of webhook w holding body; its id (file name without .json) to id. */
static int write_one(const char *dir, size_t w, const char *msg, const char *body, char *id)
{
    struct br_dead_letter dl = {.webhook = w,
                                .webhook_key = "wk",
                                .msg_id = msg,
                                .status = 400,
                                .attempts = 1,
                                .events = 2,
                                .response = "nope",
                                .response_len = 4,
                                .body = body,
                                .body_len = strlen(body)};
    char path[512];
    int rc = br_deadletter_write(dir, &dl, path, sizeof(path));
    if (!rc) {
        const char *base = strrchr(path, '/') + 1;
        snprintf(id, BR_DEAD_ID_MAX, "%.*s", (int)(strlen(base) - 5), base);
    }
    return rc;
}

TEST(ids_parse_and_sort_in_write_order)
{
    size_t w = 99;
    ASSERT_EQ(br_deadletter_id_parse("20261123T134500.123-w12-msg_abc", &w), 0);
    ASSERT_EQ(w, 12);
    const char *bad[] = {"",
                         "x",
                         "20261123T134500.123-w-msg_abc",
                         "20261123T134500.123-w1-",
                         "20261123T134500.123-w1-../x",
                         "20261123T134500.123-w1-a/b",
                         "2026112XT134500.123-w1-msg",
                         "20261123T134500.123-x1-msg"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ASSERT_EQ(br_deadletter_id_parse(bad[i], NULL), SH_EINVAL);
    ASSERT_EQ(br_deadletter_id_ms("19700101T000001.250-w0-msg_a"), 1250);
    char dir[] = "/tmp/shardhook-test-dead-XXXXXX";
    ASSERT(mkdtemp(dir));
    cJSON *j = NULL; /* an empty folder lists nothing */
    ASSERT_EQ(br_deadletter_list(dir, SIZE_MAX, NULL, 50, &j), 0);
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(j, "dead_letters")), 0);
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(j, "next_after")));
    cJSON_Delete(j);
    char ids[20][BR_DEAD_ID_MAX];
    for (int i = 0; i < 20; i++) /* within a few ms: the names still increase strictly */
        ASSERT_EQ(write_one(dir, 0, i % 2 ? "msg_z" : "msg_a", "{\"events\":[]}", ids[i]), 0);
    for (int i = 1; i < 20; i++)
        ASSERT(strcmp(ids[i - 1], ids[i]) < 0);
    rm_rf(dir);
}

TEST(read_gives_the_body_byte_for_byte_and_refusal_again_keeps_name_and_body)
{
    char dir[] = "/tmp/shardhook-test-dead-XXXXXX";
    ASSERT(mkdtemp(dir));
    const char body[] =
        "{\"events\":[{\"shard\":[1,2],\"s\":7,\"d\":{\"x\":1.50,\"u\":\"\\u00e9\"}}]}";
    char id[BR_DEAD_ID_MAX];
    ASSERT_EQ(write_one(dir, 3, "msg_q", body, id), 0);
    struct br_dead_read r;
    ASSERT_EQ(br_deadletter_read(dir, id, &r), 0);
    ASSERT_SPAN_EQ(r.body, r.body_len, body);
    br_deadletter_read_free(&r);
    ASSERT_EQ(br_deadletter_refused_again(dir, id, 422, "again", 5, 0), 0);
    ASSERT_EQ(br_deadletter_read(dir, id, &r), 0);
    ASSERT_SPAN_EQ(r.body, r.body_len, body);
    ASSERT_EQ((int)cJSON_GetObjectItem(r.json, "status")->valuedouble, 422);
    ASSERT_EQ((int)cJSON_GetObjectItem(r.json, "attempts")->valuedouble, 2);
    ASSERT_STR_EQ(cJSON_GetObjectItem(r.json, "response")->valuestring, "again");
    ASSERT_STR_EQ(cJSON_GetObjectItem(r.json, "webhook_id")->valuestring, "msg_q");
    br_deadletter_read_free(&r);
    uint64_t bytes = 0;
    ASSERT_EQ(br_deadletter_remove(dir, id, &bytes), 0);
    ASSERT(bytes > sizeof(body));
    ASSERT_EQ(br_deadletter_read(dir, id, &r), SH_ENOTFOUND);
    ASSERT_EQ(br_deadletter_refused_again(dir, id, 422, "", 0, 0), SH_ENOTFOUND);
    ASSERT_EQ(br_deadletter_remove(dir, id, NULL), SH_ENOTFOUND);
    rm_rf(dir);
}

TEST(list_is_newest_first_paged_by_cursor_with_shard_ranges)
{
    char dir[] = "/tmp/shardhook-test-dead-XXXXXX";
    ASSERT(mkdtemp(dir));
    const char body[] = "{\"events\":[{\"shard\":[0,2],\"s\":5},{\"shard\":[1,2],\"s\":9},"
                        "{\"shard\":[0,2],\"s\":6},{\"shard\":[1,2],\"s\":8}]}";
    char ids[5][BR_DEAD_ID_MAX];
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(write_one(dir, i == 2 ? 1 : 0, "msg_l", body, ids[i]), 0);
    cJSON *j = NULL;
    ASSERT_EQ(br_deadletter_list(dir, SIZE_MAX, NULL, 2, &j), 0);
    cJSON *arr = cJSON_GetObjectItem(j, "dead_letters");
    ASSERT_EQ(cJSON_GetArraySize(arr), 2);
    ASSERT_STR_EQ(cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "id")->valuestring, ids[4]);
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "next_after")->valuestring, ids[3]);
    cJSON *sh = cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "shards");
    ASSERT_EQ(cJSON_GetArraySize(sh), 2);
    ASSERT_EQ((int)cJSON_GetObjectItem(cJSON_GetArrayItem(sh, 1), "first_s")->valuedouble, 8);
    ASSERT_EQ((int)cJSON_GetObjectItem(cJSON_GetArrayItem(sh, 1), "last_s")->valuedouble, 9);
    cJSON_Delete(j);
    ASSERT_EQ(br_deadletter_list(dir, 0, ids[3], 10, &j), 0); /* webhook 0, older than ids[3] */
    arr = cJSON_GetObjectItem(j, "dead_letters");
    ASSERT_EQ(cJSON_GetArraySize(arr), 2);
    ASSERT_STR_EQ(cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "id")->valuestring, ids[1]);
    ASSERT_STR_EQ(cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 1), "id")->valuestring, ids[0]);
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(j, "next_after")));
    cJSON_Delete(j);
    char(*got)[BR_DEAD_ID_MAX] = NULL;
    size_t n = 0;
    ASSERT_EQ(br_deadletter_ids(dir, 0, 0, UINT64_MAX, &got, &n), 0); /* oldest first */
    ASSERT_EQ(n, 4);
    ASSERT_STR_EQ(got[0], ids[0]);
    ASSERT_STR_EQ(got[3], ids[4]);
    free(got);
    uint64_t t = br_deadletter_id_ms(ids[1]);
    ASSERT_EQ(br_deadletter_ids(dir, 0, t, t, &got, &n), 0);
    ASSERT_EQ(n, 1);
    ASSERT_STR_EQ(got[0], ids[1]);
    free(got);
    rm_rf(dir);
}

TEST_MAIN(RUN(file_holds_status_answer_and_body); RUN(ids_parse_and_sort_in_write_order);
          RUN(read_gives_the_body_byte_for_byte_and_refusal_again_keeps_name_and_body);
          RUN(list_is_newest_first_paged_by_cursor_with_shard_ranges);
          RUN(unwritable_folder_fails_and_leaves_nothing);
          RUN(trim_removes_a_webhooks_oldest_files_first);)
