/*
 * tests/fuzz/fuzz_config.c: libFuzzer harness for cfg_load_string (config/load.c walking the
 * tables of config/config.c).
 *
 * The input is the config text. What must hold whatever the bytes: a refusal is SH_ECONFIG
 * with one printable line (naming the key) and leaves the output zeroed; an
 * accepted config has every value its own check promises (shards inside the total, backoffs
 * in order, a token, the listen address...). No token or secret of the input is ever echoed
 * into the message: each string under a "token" or "secret" key is swapped for another of the
 * same length, and a message that follows the swap quotes the secret. Owns nothing else.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "config/config.h"
#include "lib/errors.h"
#include "lib/log.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

#define ENV_SECRET "env-secret-VALUE-42"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    sh_log_level = SH_LOG_OFF;
    /* the token's fallback: fixed, so that every run sees the same environment */
    setenv("DISCORD_TOKEN", "fuzz.token.from.the.environment", 1);
    setenv("FUZZ_SECRET", ENV_SECRET, 1); /* for ${FUZZ_SECRET} in any string */
    return 0;
}

static void check_message(const char *in, size_t size, const char *err)
{
    CHECK(err[0] != '\0');
    for (const char *p = err; *p; p++)
        CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
    /* unless the input itself holds them */
    static const char *const env[] = {ENV_SECRET, "fuzz.token.from.the.environment"};
    for (size_t i = 0; i < 2; i++)
        CHECK(!strstr(err, env[i]) || memmem(in, size, env[i], strlen(env[i])));
}

static int is_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

static void check_config(const struct cfg_config *c)
{
    CHECK(c->token && c->token[0]);
    CHECK(c->api_base && c->http_listen && c->state_dir && c->log_level);
    CHECK(sh_log_level_parse(c->log_level) >= 0);
    CHECK(c->large_threshold >= 50 && c->large_threshold <= 250);
    CHECK(c->reconnect_base_ms <= c->reconnect_max_ms);
    CHECK(c->identify_concurrency >= 0);
    switch (c->shards.mode) {
    case CFG_SHARDS_AUTO:
        CHECK(c->shards.total == 0 && !c->shards.ids);
        break;
    case CFG_SHARDS_TOTAL:
        CHECK(c->shards.total >= 1 && c->shards.first == 0 &&
              c->shards.last == c->shards.total - 1);
        break;
    case CFG_SHARDS_RANGE:
        CHECK(c->shards.first >= 0 && c->shards.first <= c->shards.last &&
              c->shards.last < c->shards.total);
        break;
    case CFG_SHARDS_IDS:
        CHECK(c->shards.n_ids >= 1 && c->shards.ids);
        for (size_t i = 0; i < c->shards.n_ids; i++) {
            CHECK(c->shards.ids[i] >= 0 && c->shards.ids[i] < c->shards.total);
            CHECK(i == 0 || c->shards.ids[i - 1] < c->shards.ids[i]);
        }
        break;
    default:
        CHECK(0);
    }
    for (size_t i = 0; i < c->n_webhooks; i++) {
        const struct cfg_webhook *w = &c->webhooks[i];
        CHECK(w->url && w->url[0]);
        CHECK(w->n_secrets > 0 || w->unsigned_ok);
        for (size_t k = 0; k < w->n_secrets; k++)
            CHECK(w->secrets[k] && !strncmp(w->secrets[k], "whsec_", 6));
        CHECK(w->max_batch_events >= 1 && w->max_batch_bytes > 0 && w->max_in_flight >= 1);
        CHECK(w->retry_base_ms <= w->retry_max_ms);
        for (size_t k = 0; k < w->n_headers; k++)
            CHECK(w->headers[k].name && w->headers[k].value);
    }
    CHECK(cfg_least_batch_delay_ms(c) >= -1);
}

/* The strings under "token" and "secret" keys anywhere in the tree, at most cap of them. */
static void collect_secrets(const cJSON *j, int under_secret, const char **out, size_t *n,
                            size_t cap)
{
    for (; j; j = j->next) {
        int named = j->string && (!strcmp(j->string, "token") || !strcmp(j->string, "secret"));
        if (cJSON_IsString(j) && (named || under_secret) && *n < cap)
            out[(*n)++] = j->valuestring;
        collect_secrets(j->child, named && cJSON_IsArray(j), out, n, cap);
    }
}

/* Another byte for c, of the same JSON class (letters stay letters, digits stay digits). */
static char swap(char c)
{
    if (c >= 'a' && c <= 'z')
        return (char)('a' + (c - 'a' + 7) % 26);
    if (c >= 'A' && c <= 'Z')
        return (char)('A' + (c - 'A' + 7) % 26);
    if (c >= '0' && c <= '9')
        return (char)('0' + (c - '0' + 3) % 10);
    return c;
}

/* An error must not change along with a secret: reload with each one swapped and compare. */
static void check_secrets_kept_out(const char *in, size_t size, const char *err)
{
    cJSON *root = cJSON_ParseWithLength(in, size);
    const char *secrets[8];
    size_t n = 0;
    if (root)
        collect_secrets(root, 0, secrets, &n, 8);
    for (size_t i = 0; i < n; i++) {
        const char *s = secrets[i];
        size_t sl = strlen(s);
        if (sl < 8 || !strstr(err, s))
            continue;
        /* only a secret written out plainly, once, can be swapped in the text */
        const char *at = memmem(in, size, s, sl);
        if (!at || memmem(at + 1, size - (size_t)(at + 1 - in), s, sl))
            continue;
        char *copy = malloc(size);
        CHECK(copy != NULL);
        memcpy(copy, in, size);
        char *t = copy + (at - in);
        for (size_t k = 0; k < sl; k++)
            t[k] = swap(t[k]);
        if (memcmp(t, s, sl)) {
            char *swapped = strndup(t, sl);
            CHECK(swapped != NULL);
            struct cfg_config cfg;
            char err2[512];
            int rc = cfg_load_string(copy, size, &cfg, err2, sizeof(err2));
            if (rc == SH_OK)
                cfg_free(&cfg);
            else /* the secret was in the message because it was the secret */
                CHECK(!(strstr(err2, swapped) && !strstr(err2, s)));
            free(swapped);
        }
        free(copy);
    }
    cJSON_Delete(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a private copy of exactly size bytes: reads past it show under ASan */
    char *in = malloc(size ? size : 1);
    CHECK(in != NULL);
    memcpy(in, data, size);
    struct cfg_config cfg;
    char err[512];
    memset(err, 'x', sizeof(err));
    int rc = cfg_load_string(in, size, &cfg, err, sizeof(err));
    CHECK(memchr(err, '\0', sizeof(err)) != NULL);
    if (rc == SH_OK) {
        check_config(&cfg);
        cfg_free(&cfg);
        CHECK(is_zero(&cfg, sizeof(cfg)));
        cfg_free(&cfg); /* safe on a freed one */
    } else {
        CHECK(rc == SH_ECONFIG || rc == SH_ENOMEM);
        CHECK(is_zero(&cfg, sizeof(cfg)));
        check_message(in, size, err);
        check_secrets_kept_out(in, size, err);
    }
    free(in);
    return 0;
}
