/*
 * tests/unit/test_hookauth.c: a webhook's secrets and headers as the delivery thread sees them:
 * copied at start, replaced only when it next asks, and independent of the config they came from.
 */
#include <pthread.h>
#include <string.h>

#include "bridge/hookauth.h"
#include "config/config.h"
#include "lib/errors.h"
#include "tests/unit/test.h"

#define S1 "whsec_QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"
#define S2 "whsec_QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJC"

static int load(const char *json, struct cfg_config *cfg)
{
    char err[256];
    int rc = cfg_load_string(json, strlen(json), cfg, err, sizeof(err));
    if (rc)
        fprintf(stderr, "  %s\n", err);
    return rc;
}

TEST(copied_at_start_then_replaced_on_next_use)
{
    struct cfg_config a, b;
    ASSERT_EQ(load("{\"token\":\"t\",\"webhooks\":[{\"url\":\"http://h/a\",\"secret\":\"" S1 "\","
                   "\"headers\":{\"X-K\":\"1\"}},{\"url\":\"http://h/b\",\"secret\":null}]}",
                   &a),
              0);
    ASSERT_EQ(load("{\"token\":\"t\",\"webhooks\":[{\"url\":\"http://h/a\",\"secret\":[\"" S2
                   "\",\"" S1 "\"]},{\"url\":\"http://h/b\",\"secret\":\"" S2 "\"}]}",
                   &b),
              0);
    struct br_hookauth_set *s = NULL;
    ASSERT_EQ(br_hookauth_new(&a, &s), 0);
    cfg_free(&a); /* the set holds its own copies */
    const struct br_hookauth *x = br_hookauth_current(s, 0);
    ASSERT_EQ(x->n_secrets, 1);
    ASSERT_STR_EQ(x->secrets[0], S1);
    ASSERT_EQ(x->n_headers, 1);
    ASSERT_STR_EQ(x->headers[0].name, "X-K");
    ASSERT_STR_EQ(x->headers[0].value, "1");
    ASSERT_EQ(br_hookauth_current(s, 1)->n_secrets, 0); /* unsigned */

    ASSERT_EQ(br_hookauth_update(s, 0, &b.webhooks[0]), 0);
    ASSERT_EQ(br_hookauth_update(s, 1, &b.webhooks[1]), 0);
    ASSERT_EQ(br_hookauth_update(s, 2, &b.webhooks[1]), SH_EINVAL);
    ASSERT_EQ(br_hookauth_update(s, 1, &b.webhooks[1]), 0); /* a second update replaces the first */
    cfg_free(&b);
    x = br_hookauth_current(s, 0);
    ASSERT_EQ(x->n_secrets, 2);
    ASSERT_STR_EQ(x->secrets[0], S2);
    ASSERT_STR_EQ(x->secrets[1], S1);
    ASSERT_EQ(x->n_headers, 0);
    x = br_hookauth_current(s, 1);
    ASSERT_EQ(x->n_secrets, 1);
    ASSERT_STR_EQ(x->secrets[0], S2);
    br_hookauth_free(s);
}

struct racer {
    struct br_hookauth_set *s;
    const struct cfg_webhook *w[2];
};

static void *updater(void *arg)
{
    struct racer *r = arg;
    for (int i = 0; i < 2000; i++)
        br_hookauth_update(r->s, 0, r->w[i & 1]);
    return NULL;
}

/* updates from another thread while this one reads: always one whole version (sanitizers) */
TEST(updates_race_with_reads)
{
    struct cfg_config a, b;
    ASSERT_EQ(
        load("{\"token\":\"t\",\"webhooks\":[{\"url\":\"http://h/a\",\"secret\":\"" S1 "\"}]}", &a),
        0);
    ASSERT_EQ(load("{\"token\":\"t\",\"webhooks\":[{\"url\":\"http://h/a\",\"secret\":\"" S2 "\","
                   "\"headers\":{\"X\":\"y\"}}]}",
                   &b),
              0);
    struct racer r = {.w = {&a.webhooks[0], &b.webhooks[0]}};
    ASSERT_EQ(br_hookauth_new(&a, &r.s), 0);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, updater, &r), 0);
    int bad = 0;
    for (int i = 0; i < 20000; i++) {
        const struct br_hookauth *x = br_hookauth_current(r.s, 0);
        int one = !strcmp(x->secrets[0], S1) && x->n_headers == 0;
        int two = !strcmp(x->secrets[0], S2) && x->n_headers == 1;
        bad += !(one || two);
    }
    pthread_join(th, NULL);
    ASSERT_EQ(bad, 0);
    ASSERT_STR_EQ(br_hookauth_current(r.s, 0)->secrets[0], S2); /* the last update won */
    br_hookauth_free(r.s);
    cfg_free(&a);
    cfg_free(&b);
}

TEST_MAIN(RUN(copied_at_start_then_replaced_on_next_use); RUN(updates_race_with_reads);)
