/*
 * tests/unit/test_presence.c: cfg_presence_parse (config/config.h), the one presence validation
 * that the config's `presence` and the control API's POST /v1/presence share: the same message
 * for the same fault whichever way it comes in, the codes the API maps to its answers, and
 * strings taken literally for request bodies.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "config/config.h"
#include "lib/errors.h"
#include "test.h"

static char err[512];

/* s with ' turned into " (JSON in C strings without escapes). */
static const char *q(const char *s)
{
    static char buf[8192];
    size_t i = 0;
    for (; s[i] && i < sizeof(buf) - 1; i++)
        buf[i] = s[i] == '\'' ? '"' : s[i];
    buf[i] = '\0';
    return buf;
}

/* cfg_presence_parse on the JSON text p; *json as it returns it (NULL on failure). */
static int parse(const char *p, unsigned flags, char **json)
{
    cJSON *j = cJSON_Parse(q(p));
    err[0] = '\0';
    int rc = cfg_presence_parse(j, flags, json, err, sizeof(err));
    cJSON_Delete(j);
    return rc;
}

/* The message cfg_load gives for {"presence": p}. */
static const char *config_error(const char *p)
{
    static char cfg_err[512];
    char text[8300];
    snprintf(text, sizeof(text), "{\"token\":\"t\",\"presence\":%s}", q(p));
    struct cfg_config cfg;
    cfg_err[0] = '\0';
    if (cfg_load_string(text, strlen(text), &cfg, cfg_err, sizeof(cfg_err)) == 0) {
        cfg_free(&cfg);
        return "(loaded)";
    }
    return cfg_err;
}

TEST(same_message_from_the_config_and_from_the_api)
{
    static const char *const bad[] = {
        "{'status':'away'}",
        "{'activities':'x'}",
        "{'activities':[5]}",
        "{'activities':[{'type':1}]}",
        "{'activities':[{'name':'x'}]}",
        "{'activities':[{'name':'x','type':6}]}",
        "{'activities':[{'name':'x','type':0,'emoji':1}]}",
        "{'activities':[{'name':'x','type':1,'url':'ftp://x'}]}",
        "{'since':'x'}",
        "{'afk':1}",
        "{'stauts':'idle'}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *json = (char *)"untouched";
        ASSERT(parse(bad[i], CFG_PRESENCE_LITERAL, &json) < 0);
        ASSERT(json == NULL);
        ASSERT_STR_EQ(err, config_error(bad[i]));
    }
    ASSERT_STR_EQ(config_error("{'stauts':'idle'}"),
                  "presence.stauts: unknown key (did you mean \"status\"?)");
}

TEST(codes_say_what_kind_of_fault)
{
    char *json;
    ASSERT_EQ(parse("{'status':'online','game':{}}", CFG_PRESENCE_LITERAL, &json), SH_ENOTFOUND);
    ASSERT_STR_EQ(err, "presence.game: unknown key");
    ASSERT_EQ(parse("{'activities':[{'name':'x','type':0,'emoji':1}]}", 0, &json), SH_ENOTFOUND);
    ASSERT_EQ(parse("{'status':'busy','game':{}}", 0, &json), SH_ECONFIG); /* the first fault */
    ASSERT_EQ(parse("{'activities':[{'name':'x'}]}", 0, &json), SH_ECONFIG);
    char big[8192];
    size_t n = (size_t)snprintf(big, sizeof(big), "{'activities':[");
    for (int i = 0; i < 12; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n,
                              "%s{'name':'%0128d','type':0,'state':'%0100d'}", i ? "," : "", i, i);
    snprintf(big + n, sizeof(big) - n, "]}");
    ASSERT_EQ(parse(big, 0, &json), SH_ETOOBIG);
    ASSERT_CONTAINS(err, "presence: too large: ");
    ASSERT_CONTAINS(err, "(at most 3072, so that it fits in a gateway payload)");
    ASSERT_CONTAINS(config_error(big),
                    "presence: too large: "); /* cfg_load: still a config error */
}

TEST(defaults_filled_in_and_null_state_is_absent)
{
    char *json = NULL;
    ASSERT_EQ(parse("{}", 0, &json), 0);
    ASSERT_STR_EQ(json, "{\"since\":null,\"activities\":[],\"status\":\"online\",\"afk\":false}");
    free(json);
    ASSERT_EQ(parse("{'afk':true,'activities':[{'type':3,'name':'w','state':null,'url':null}],"
                    "'status':'idle','since':1700000000000}",
                    0, &json),
              0);
    ASSERT_STR_EQ(json, "{\"since\":1700000000000,\"activities\":[{\"name\":\"w\",\"type\":3}],"
                        "\"status\":\"idle\",\"afk\":true}");
    free(json);
    ASSERT_STR_EQ(config_error("{'activities':[{'name':'w','type':4,'state':null}]}"), "(loaded)");
}

TEST(literal_strings_are_not_expanded)
{
    char *json = NULL;
    setenv("SH_TEST_PRESENCE", "secret-value", 1);
    ASSERT_EQ(parse("{'activities':[{'name':'${SH_TEST_PRESENCE}','type':0}]}",
                    CFG_PRESENCE_LITERAL, &json),
              0);
    ASSERT_CONTAINS(json, "\"name\":\"${SH_TEST_PRESENCE}\"");
    free(json);
    ASSERT_EQ(parse("{'activities':[{'name':'${SH_TEST_PRESENCE}','type':0}]}", 0, &json), 0);
    ASSERT_CONTAINS(json, "\"name\":\"secret-value\"");
    free(json);
    ASSERT_EQ(parse("{'activities':[{'name':'${SH_TEST_UNSET_VAR}','type':0}]}",
                    CFG_PRESENCE_LITERAL, &json),
              0);
    free(json);
    unsetenv("SH_TEST_PRESENCE");
}

TEST_MAIN(RUN(same_message_from_the_config_and_from_the_api); RUN(codes_say_what_kind_of_fault);
          RUN(defaults_filled_in_and_null_state_is_absent); RUN(literal_strings_are_not_expanded);)
