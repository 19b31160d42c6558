/*
 * tests/unit/test_cluster_status.c: cluster/status.c's pure parts: a shard's status entry
 * carries its owner first (the conditional delete matches on that prefix) and every field the
 * API shows, and round-trips through a JSON parser; an entry is stale when older than 3 s or
 * when its owner's lease is gone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cluster/internal.h"
#include "tests/unit/test.h"

TEST(status_entry_names_its_owner_first_and_round_trips)
{
    struct gw_shard_info s = {.id = 3,
                              .status = "ready",
                              .latency_ms = 41,
                              .seq = 77,
                              .guilds = 5,
                              .identifies = 1,
                              .resumes = 2,
                              .last_event_at_ms = 1700000000123ull,
                              .events = 9};
    snprintf(s.session_id, sizeof(s.session_id), "abc");
    char *txt = cl__status_encode("node \"a\"", &s, 1700000000456ull);
    ASSERT(txt != NULL);
    ASSERT(!strncmp(txt, "{\"node\":\"node \\\"a\\\"\",", 21));
    cJSON *o = cJSON_Parse(txt);
    ASSERT(o != NULL);
    ASSERT_STR_EQ(cJSON_GetObjectItem(o, "node")->valuestring, "node \"a\"");
    ASSERT_STR_EQ(cJSON_GetObjectItem(o, "status")->valuestring, "ready");
    ASSERT_STR_EQ(cJSON_GetObjectItem(o, "session_id")->valuestring, "abc");
    ASSERT_EQ(cJSON_GetObjectItem(o, "latency_ms")->valueint, 41);
    ASSERT_EQ(cJSON_GetObjectItem(o, "seq")->valueint, 77);
    ASSERT_EQ(cJSON_GetObjectItem(o, "resumes")->valueint, 2);
    ASSERT_EQ((uint64_t)cJSON_GetObjectItem(o, "last_event_at")->valuedouble, 1700000000123ull);
    ASSERT_EQ((uint64_t)cJSON_GetObjectItem(o, "at")->valuedouble, 1700000000456ull);
    const char *fields[] = {"guilds", "guilds_pending", "identifies", "events", "queued_sends"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        ASSERT(cJSON_IsNumber(cJSON_GetObjectItem(o, fields[i])));
    cJSON_Delete(o);
    cJSON_free(txt);
    struct gw_shard_info none = {.id = 0, .latency_ms = -1}; /* before any status */
    txt = cl__status_encode("b", &none, 1);
    ASSERT_CONTAINS(txt, "\"status\":\"");
    cJSON_free(txt);
}

TEST(stale_after_three_seconds_or_without_a_lease)
{
    uint64_t at = 1000000;
    ASSERT_EQ(cl__status_stale(at, at, 1), 0);
    ASSERT_EQ(cl__status_stale(at, at + CL__STATUS_STALE_MS, 1), 0);
    ASSERT_EQ(cl__status_stale(at, at + CL__STATUS_STALE_MS + 1, 1), 1);
    ASSERT_EQ(cl__status_stale(at, at - 500, 1), 0); /* a clock a little behind the writer's */
    ASSERT_EQ(cl__status_stale(at, at, 0), 1);       /* owner's lease gone */
    ASSERT_EQ(cl__status_stale(0, at, 1), 1);        /* never written */
}

TEST_MAIN(RUN(status_entry_names_its_owner_first_and_round_trips);
          RUN(stale_after_three_seconds_or_without_a_lease);)
