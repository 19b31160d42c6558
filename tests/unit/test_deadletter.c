/* tests/unit/test_deadletter.c: a dead letter is one JSON file holding the body as sent. */
#include <cjson/cJSON.h>
#include <ftw.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

TEST_MAIN(RUN(file_holds_status_answer_and_body);)
