/*
 * tests/unit/test_cluster_forward.c: forwarded control commands without a network: a command
 * encoded as cmd stream fields decodes to what was sent (body bytes included), a reply entry
 * decodes to its answer or `moved`, malformed entries are refused; the answers of a presence or
 * soundboard request split by owner merge as one node answers.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cluster/forward.h"
#include "http/forward.h"
#include "lib/errors.h"
#include "test.h"

/* A hiredis array of n string replies (what XREAD gives for an entry's fields). */
struct fields {
    redisReply top;
    redisReply items[32];
    redisReply *ptrs[32];
};

static void make_fields(struct fields *f, const char **argv, const size_t *lens, int n)
{
    memset(f, 0, sizeof(*f));
    f->top.type = REDIS_REPLY_ARRAY;
    f->top.elements = (size_t)n;
    f->top.element = f->ptrs;
    for (int i = 0; i < n; i++) {
        f->items[i].type = REDIS_REPLY_STRING;
        f->items[i].str = (char *)argv[i];
        f->items[i].len = lens[i];
        f->ptrs[i] = &f->items[i];
    }
}

TEST(a_command_round_trips_through_stream_fields)
{
    static const char body[] = "{\"op\":3,\"d\":{\"status\":\"idle\"}}";
    struct cl__api_cmd in = {.fence = 1732900000123456ULL,
                             .shard = 7,
                             .timeout_ms = 12000,
                             .body = body,
                             .len = sizeof(body) - 1};
    strcpy(in.id, "42:1");
    strcpy(in.from, "node-b");
    strcpy(in.route, "/v1/shards/{id}/send");
    strcpy(in.param, "7");
    const char *argv[32];
    size_t lens[32];
    char bufs[96];
    int n = cl__api_encode(&in, argv, lens, bufs, sizeof(bufs));
    ASSERT_EQ(n, 18);
    ASSERT_STR_EQ(argv[0], "type");
    ASSERT_STR_EQ(argv[1], "api");
    struct fields f;
    make_fields(&f, argv, lens, n);
    struct cl__api_cmd out;
    ASSERT_EQ(cl__api_decode(&f.top, &out), 0);
    ASSERT_STR_EQ(out.id, "42:1");
    ASSERT_STR_EQ(out.from, "node-b");
    ASSERT_STR_EQ(out.route, "/v1/shards/{id}/send");
    ASSERT_STR_EQ(out.param, "7");
    ASSERT(out.fence == 1732900000123456ULL);
    ASSERT_EQ(out.shard, 7);
    ASSERT_EQ(out.timeout_ms, 12000);
    ASSERT_EQ((int)out.len, (int)(sizeof(body) - 1));
    ASSERT(!memcmp(out.body, body, out.len));
    /* without its requester there is nobody to answer: refused */
    make_fields(&f, argv, lens, 4);
    ASSERT_EQ(cl__api_decode(&f.top, &out), SH_EINVAL);
}

TEST(a_reply_decodes_to_its_answer_or_moved)
{
    const char *a[] = {"id", "42:1", "status", "429", "retry_after", "1", "body", "{\"x\":1}"};
    size_t la[8];
    for (int i = 0; i < 8; i++)
        la[i] = strlen(a[i]);
    struct fields f;
    make_fields(&f, a, la, 8);
    char id[64];
    struct cl_answer ans;
    int moved = -1;
    ASSERT_EQ(cl__answer_decode(&f.top, id, sizeof(id), &ans, &moved), 0);
    ASSERT_STR_EQ(id, "42:1");
    ASSERT_EQ(ans.status, 429);
    ASSERT_STR_EQ(ans.retry_after, "1");
    ASSERT_EQ((int)ans.len, 7);
    ASSERT_EQ(moved, 0);
    const char *m[] = {"id", "42:2", "moved", "1", "retry_after", "", "body", ""};
    size_t lm[8];
    for (int i = 0; i < 8; i++)
        lm[i] = strlen(m[i]);
    make_fields(&f, m, lm, 8);
    ASSERT_EQ(cl__answer_decode(&f.top, id, sizeof(id), &ans, &moved), 0);
    ASSERT_EQ(moved, 1);
    const char *bad[] = {"id", "42:3", "status", "abc"};
    size_t lb[4] = {2, 4, 6, 3};
    make_fields(&f, bad, lb, 4);
    ASSERT_EQ(cl__answer_decode(&f.top, id, sizeof(id), &ans, &moved), SH_EINVAL);
}

static struct http__part part(int status, const char *ra, const char *body)
{
    struct http__part p = {.status = status, .body = body, .len = strlen(body)};
    strcpy(p.retry_after, ra);
    return p;
}

TEST(presence_parts_merge_their_shards_or_say_what_was_queued)
{
    struct http__part ok[] = {part(202, "", "{\"shards\":[3,1]}"),
                              part(202, "", "{\"shards\":[0,2]}")};
    struct http__part out;
    char *body = NULL;
    ASSERT_EQ(http__merge_answers(ok, 2, NULL, &out, &body), 0);
    ASSERT_EQ(out.status, 202);
    ASSERT_STR_EQ(body, "{\"shards\":[0,1,2,3]}");
    cJSON_free(body);
    struct http__part mixed[] = {
        part(202, "", "{\"shards\":[0]}"),
        part(429, "1",
             "{\"error\":{\"code\":\"send_queue_full\",\"message\":\"m\"},\"queued\":[2]}"),
        part(202, "", "{\"shards\":[3]}")};
    ASSERT_EQ(http__merge_answers(mixed, 3, NULL, &out, &body), 0);
    ASSERT_EQ(out.status, 429);
    ASSERT_STR_EQ(out.retry_after, "1");
    ASSERT_STR_EQ(body, "{\"error\":{\"code\":\"send_queue_full\",\"message\":\"m\"},"
                        "\"queued\":[0,2,3]}");
    cJSON_free(body);
    struct http__part junk[] = {part(200, "", "not json")};
    ASSERT_EQ(http__merge_answers(junk, 1, NULL, &out, &body), SH_EINVAL);
}

TEST(soundboard_parts_merge_in_the_requests_order_with_partial_results)
{
    cJSON *order = cJSON_Parse("[\"30\",\"10\",\"20\"]");
    struct http__part ok[] = {
        part(200, "", "{\"guilds\":[{\"guild_id\":\"10\"},{\"guild_id\":\"20\"}]}"),
        part(200, "", "{\"guilds\":[{\"guild_id\":\"30\"}]}")};
    struct http__part out;
    char *body = NULL;
    ASSERT_EQ(http__merge_answers(ok, 2, order, &out, &body), 0);
    ASSERT_EQ(out.status, 200);
    ASSERT_STR_EQ(body, "{\"guilds\":[{\"guild_id\":\"30\"},{\"guild_id\":\"10\"},"
                        "{\"guild_id\":\"20\"}]}");
    cJSON_free(body);
    struct http__part part504[] = {
        part(200, "", "{\"guilds\":[{\"guild_id\":\"30\"}]}"),
        part(504, "",
             "{\"error\":{\"code\":\"timeout\",\"message\":\"m\"},\"guilds\":[{\"guild_id\":"
             "\"10\"}],\"missing\":[\"20\"]}")};
    ASSERT_EQ(http__merge_answers(part504, 2, order, &out, &body), 0);
    ASSERT_EQ(out.status, 504);
    ASSERT_STR_EQ(body, "{\"error\":{\"code\":\"timeout\",\"message\":\"m\"},\"guilds\":[{"
                        "\"guild_id\":\"30\"},{\"guild_id\":\"10\"}],\"missing\":[\"20\"]}");
    cJSON_free(body);
    cJSON_Delete(order);
}

TEST_MAIN(RUN(a_command_round_trips_through_stream_fields);
          RUN(a_reply_decodes_to_its_answer_or_moved);
          RUN(presence_parts_merge_their_shards_or_say_what_was_queued);
          RUN(soundboard_parts_merge_in_the_requests_order_with_partial_results);)
