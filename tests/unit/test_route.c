/* tests/unit/test_route.c: webhook event patterns (exact, PREFIX*, *) and the event chunk. */
#include <string.h>

#include "bridge/route.h"
#include "gateway/sink.h"
#include "lib/errors.h"
#include "tests/unit/test.h"

#define M(p, t) br_route_match(p, t, strlen(t))

TEST(patterns)
{
    ASSERT(M("*", "MESSAGE_CREATE"));
    ASSERT(M("MESSAGE_CREATE", "MESSAGE_CREATE"));
    ASSERT(!M("MESSAGE_CREATE", "MESSAGE_CREATED"));
    ASSERT(!M("MESSAGE_CREATE", "MESSAGE_CREAT"));
    ASSERT(M("GUILD_*", "GUILD_CREATE"));
    ASSERT(M("GUILD_*", "GUILD_"));
    ASSERT(!M("GUILD_*", "GUILD"));
    ASSERT(!M("GUILD_*", "MESSAGE_CREATE"));
    char *list[] = {"READY", "MESSAGE_*"};
    ASSERT(br_route_match_any(list, 2, "MESSAGE_DELETE", 14));
    ASSERT(!br_route_match_any(list, 2, "TYPING_START", 12));
    ASSERT(!br_route_match_any(list, 0, "READY", 5));
}

/* shardhook's own events pass every filter: disable_events and each webhook's events */
TEST(shardhook_events_always_pass)
{
    ASSERT(br_route_always("SHARDHOOK_SESSION_LOST", 22));
    ASSERT(br_route_always("SHARDHOOK_EVENT_SKIPPED", 23));
    ASSERT(br_route_always("SHARDHOOK_MEMBERS", 17));
    ASSERT(!br_route_always("SHARDHOOK_", 10)); /* the prefix alone names nothing */
    ASSERT(!br_route_always("SHARDHOOKS_X", 12));
    ASSERT(!br_route_always("MESSAGE_CREATE", 14));
    ASSERT(!br_route_always("shardhook_session_lost", 22));
}

TEST(chunk_encodes_the_envelope_with_d_verbatim)
{
    struct gw_chunk *c = gw_chunk_new(1 << 20);
    const char d[] = "{\"content\":\"h\\u00e9 \\\"x\\\"\", \"n\" : 1}";
    struct gw_key key = {"9f2c", 41, 3}; /* last_s and n count only without s */
    ASSERT_EQ(gw_chunk_append(c, 3, 16, "MESSAGE_CREATE", 14, 42, &key, d, sizeof(d) - 1, 7), 0);
    ASSERT_EQ(c->n, 1);
    const struct gw_event *e = &c->ev[0];
    ASSERT_SPAN_EQ(
        c->data.data + e->off, e->len,
        "{\"shard\":[3,16],\"op\":0,\"t\":\"MESSAGE_CREATE\",\"s\":42,\"key\":\"3:9f2c:42\","
        "\"d\":{\"content\":\"h\\u00e9 \\\"x\\\"\", \"n\" : 1}}");
    ASSERT_SPAN_EQ(c->data.data + e->t_off, e->t_len, "MESSAGE_CREATE");
    ASSERT_EQ(e->shard, 3);
    ASSERT_EQ(e->s, 42);
    gw_chunk_free(c);
}

TEST(chunk_numbers_at_their_limits)
{
    struct gw_chunk *c = gw_chunk_new(1 << 20);
    ASSERT_EQ(gw_chunk_append(c, 0, 1, "A", 1, 0, NULL, "{}", 2, 0), 0);
    struct gw_key key = {"", UINT64_MAX, UINT64_MAX};
    ASSERT_EQ(gw_chunk_append(c, 65535, 65536, "B", 1, UINT64_MAX, &key, "null", 4, 0), 0);
    ASSERT_EQ(gw_chunk_append(c, 65535, 65536, "C", 1, 0, &key, "1", 1, 0), 0);
    ASSERT_SPAN_EQ(
        c->data.data + c->ev[0].off, c->ev[0].len,
        "{\"shard\":[0,1],\"op\":0,\"t\":\"A\",\"s\":null,\"key\":\"0:-:0.0\",\"d\":{}}");
    ASSERT_SPAN_EQ(c->data.data + c->ev[1].off, c->ev[1].len,
                   "{\"shard\":[65535,65536],\"op\":0,\"t\":\"B\",\"s\":18446744073709551615,"
                   "\"key\":\"65535:-:18446744073709551615\",\"d\":null}");
    ASSERT_SPAN_EQ(c->data.data + c->ev[2].off, c->ev[2].len,
                   "{\"shard\":[65535,65536],\"op\":0,\"t\":\"C\",\"s\":null,"
                   "\"key\":\"65535:-:18446744073709551615.18446744073709551615\",\"d\":1}");
    ASSERT_SPAN_EQ(c->data.data + c->ev[1].t_off, c->ev[1].t_len, "B");
    gw_chunk_free(c);
}

/* The key is JSON inside a string whatever a session id holds; events without s count from it. */
TEST(chunk_key_of_events_without_s_and_odd_sessions)
{
    struct gw_chunk *c = gw_chunk_new(1 << 20);
    struct gw_key key = {"a\"b\\c\n", 7, 2};
    ASSERT_EQ(gw_chunk_append(c, 1, 2, "SHARDHOOK_SESSION_LOST", 22, 0, &key, "{}", 2, 0), 0);
    ASSERT_SPAN_EQ(c->data.data + c->ev[0].off, c->ev[0].len,
                   "{\"shard\":[1,2],\"op\":0,\"t\":\"SHARDHOOK_SESSION_LOST\",\"s\":null,"
                   "\"key\":\"1:a\\u0022b\\u005cc\\u000a:7.2\",\"d\":{}}");
    char big[300];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    key.session_id = big; /* longer than any session id: GW_KEY_SESSION_MAX bytes of it */
    ASSERT_EQ(gw_chunk_append(c, 1, 2, "A", 1, 5, &key, "{}", 2, 0), 0);
    ASSERT_EQ(c->ev[1].len, strlen("{\"shard\":[1,2],\"op\":0,\"t\":\"A\",\"s\":5,\"key\":\"1::5\","
                                   "\"d\":{}}") +
                                GW_KEY_SESSION_MAX);
    gw_chunk_free(c);
}

TEST(chunk_cap_leaves_it_unchanged)
{
    struct gw_chunk *c = gw_chunk_new(100);
    ASSERT_EQ(gw_chunk_append(c, 0, 1, "A", 1, 1, NULL, "{}", 2, 0), 0);
    size_t len = c->data.len;
    char big[200];
    memset(big, ' ', sizeof(big));
    big[0] = '{';
    big[199] = '}';
    ASSERT_EQ(gw_chunk_append(c, 0, 1, "B", 1, 2, NULL, big, sizeof(big), 0), SH_ETOOBIG);
    ASSERT_EQ(c->n, 1);
    ASSERT_EQ(c->data.len, len);
    gw_chunk_free(c);
}

/* A READY's session travels with its event, and only with it. */
TEST(chunk_carries_the_session_of_its_ready)
{
    struct gw_chunk *c = gw_chunk_new(1 << 16);
    ASSERT(c);
    struct gw_session sess = {.session_id = "abc", .resume_url = "wss://r.example"};
    ASSERT_EQ(gw_chunk_set_session(c, &sess), SH_EINVAL); /* no event yet */
    ASSERT_EQ(gw_chunk_append(c, 0, 1, "A", 1, 1, NULL, "{}", 2, 0), 0);
    ASSERT_EQ(gw_chunk_append(c, 0, 1, "READY", 5, 1, NULL, "{}", 2, 0), 0);
    ASSERT_EQ(gw_chunk_set_session(c, &sess), 0);
    ASSERT_EQ(gw_chunk_append(c, 0, 1, "B", 1, 2, NULL, "{}", 2, 0), 0);
    ASSERT(gw_chunk_session(c, 0) == NULL);
    ASSERT(gw_chunk_session(c, 2) == NULL);
    const struct gw_session *got = gw_chunk_session(c, 1);
    ASSERT(got);
    ASSERT_STR_EQ(got->session_id, "abc");
    ASSERT_STR_EQ(got->resume_url, "wss://r.example");
    gw_chunk_free(c);
}

TEST_MAIN(RUN(patterns); RUN(shardhook_events_always_pass);
          RUN(chunk_encodes_the_envelope_with_d_verbatim); RUN(chunk_numbers_at_their_limits);
          RUN(chunk_key_of_events_without_s_and_odd_sessions); RUN(chunk_cap_leaves_it_unchanged);
          RUN(chunk_carries_the_session_of_its_ready))
