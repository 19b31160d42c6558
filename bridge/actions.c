/*
 * bridge/actions.c: the actions of a receiver's 2xx answer (bridge/actions.h): reading the
 * answer, the once-only record per webhook, counting and logging. Running an action is the
 * control API's (through struct br_action_ops); what happened to the batch is deliver.c's and
 * never changes here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge/actions.h"
#include "bridge/batch.h"
#include "lib/log.h"
#include "lib/metrics.h"

#define MSG_MAX 320 /* why an action did not run, for the log */

struct seen {
    char id[BR_MSG_ID_MAX]; /* "" while unused */
    uint32_t done;          /* its actions 0..done-1 were handled */
};

struct br_actions {
    size_t webhook;
    char label[64];
    struct seen *ring; /* BR_ACTIONS_SEEN, the oldest replaced first */
    size_t next;
    struct sh_metric *m;
    struct sh_log_limit lim_action, lim_answer;
};

static const char *const result_names[BR_ACTION_RESULTS] = {"ok", "invalid", "refused", "error",
                                                            "duplicate"};

struct br_actions *br_actions_new(size_t webhook, const char *label)
{
    struct br_actions *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->ring = calloc(BR_ACTIONS_SEEN, sizeof(*a->ring));
    if (!a->ring) {
        free(a);
        return NULL;
    }
    a->webhook = webhook;
    snprintf(a->label, sizeof(a->label), "%s", label);
    a->m =
        sh_metric_counter("shardhook_webhook_actions_total",
                          "Actions from webhook answers by type and result", "webhook,type,result");
    return a;
}

void br_actions_free(struct br_actions *a)
{
    if (!a)
        return;
    free(a->ring);
    free(a);
}

enum br_action_result br_action_classify(int status)
{
    if (status >= 200 && status <= 299)
        return BR_ACTION_OK;
    if (status == 429 || status == 503)
        return BR_ACTION_REFUSED;
    if (status >= 400 && status <= 499)
        return BR_ACTION_INVALID;
    return BR_ACTION_ERROR;
}

int br_actions_json_type(const char *ctype)
{
    if (!ctype)
        return 0;
    while (*ctype == ' ' || *ctype == '\t')
        ctype++;
    size_t n = strcspn(ctype, "; \t");
    if (n == 16 && !strncasecmp(ctype, "application/json", 16))
        return 1;
    return n > 17 && !strncasecmp(ctype, "application/", 12) &&
           !strncasecmp(ctype + n - 5, "+json", 5);
}

/* msg_id's record (a fresh one, replacing the oldest, when it has none). */
static struct seen *record_of(struct br_actions *a, const char *msg_id)
{
    for (size_t k = 0; k < BR_ACTIONS_SEEN; k++) {
        struct seen *s = &a->ring[(a->next + BR_ACTIONS_SEEN - 1 - k) % BR_ACTIONS_SEEN];
        if (!s->id[0])
            break;
        if (!strcmp(s->id, msg_id))
            return s;
    }
    struct seen *s = &a->ring[a->next];
    a->next = (a->next + 1) % BR_ACTIONS_SEEN;
    snprintf(s->id, sizeof(s->id), "%s", msg_id);
    s->done = 0;
    return s;
}

/* The "actions" array of an answer; NULL (logged when it cannot be read) when there is none. */
static cJSON *parse_answer(struct br_actions *a, const char *msg_id, const char *body, size_t len,
                           int truncated, const cJSON **list)
{
    const char *why = NULL;
    cJSON *j = NULL;
    *list = NULL;
    if (truncated) {
        why = "the answer is larger than 64 KiB";
    } else if (!(j = cJSON_ParseWithLength(body, len))) {
        why = "the answer is not valid JSON";
    } else {
        *list = cJSON_GetObjectItemCaseSensitive(j, "actions");
        if (*list && !cJSON_IsArray(*list))
            why = "\"actions\" is not an array";
    }
    if (why) {
        sh_metric_add(a->m, 1, a->label, "answer", "invalid");
        log_warn_limited(&a->lim_answer,
                         "msg=\"webhook answer's actions ignored\" webhook=%s webhook_id=%s "
                         "error=\"%s\"",
                         a->label, msg_id, why);
        *list = NULL;
    }
    return j;
}

/* One answer's results, for its log line. */
struct tally {
    unsigned n[BR_ACTION_RESULTS];
    char failed[1024]; /* "index type result status code: message; ..." */
    size_t off;
};

/* Add a failed action to t's list (quotes become ' so the log line stays logfmt). */
static void note_failure(struct tally *t, size_t i, const char *type, enum br_action_result res,
                         int status, const char *msg)
{
    char line[MSG_MAX + 64];
    int n = snprintf(line, sizeof(line), "%s%zu %s %s %d %s", t->off ? "; " : "", i, type,
                     result_names[res], status, msg);
    for (char *c = line; *c; c++)
        if (*c == '"' || *c == '\\')
            *c = '\'';
    if (n > 0 && t->off + (size_t)n < sizeof(t->failed)) {
        memcpy(t->failed + t->off, line, (size_t)n + 1);
        t->off += (size_t)n;
    }
}

/* Run action i (not run before) and count it. */
static enum br_action_result run_one(struct br_actions *a, const struct br_action_ops *ops,
                                     size_t i, const cJSON *action, struct tally *t)
{
    const char *type = "unknown";
    char msg[MSG_MAX] = "";
    int status;
    if (i >= BR_ACTIONS_MAX) {
        status = 400;
        snprintf(msg, sizeof(msg), "too_many_actions: at most %d actions per answer",
                 BR_ACTIONS_MAX);
    } else if (!ops || !ops->run) {
        status = 503;
        snprintf(msg, sizeof(msg), "unavailable: the control API is not running");
    } else {
        status = ops->run(ops->ud, action, a->webhook, &type, msg, sizeof(msg));
    }
    enum br_action_result res = br_action_classify(status);
    sh_metric_add(a->m, 1, a->label, type, result_names[res]);
    if (res != BR_ACTION_OK)
        note_failure(t, i, type, res, status, msg);
    return res;
}

/* One line per answer: every failure when some failed (rate-limited), else what ran. */
static void log_answer(struct br_actions *a, const char *msg_id, const struct tally *t)
{
    const unsigned *n = t->n;
    if (t->off)
        log_warn_limited(&a->lim_action,
                         "msg=\"webhook actions not run\" webhook=%s webhook_id=%s ok=%u "
                         "invalid=%u refused=%u error=%u duplicate=%u failed=\"%s\"",
                         a->label, msg_id, n[BR_ACTION_OK], n[BR_ACTION_INVALID],
                         n[BR_ACTION_REFUSED], n[BR_ACTION_ERROR], n[BR_ACTION_DUPLICATE],
                         t->failed);
    else if (n[BR_ACTION_OK] || n[BR_ACTION_DUPLICATE])
        log_info("msg=\"webhook actions run\" webhook=%s webhook_id=%s ok=%u duplicate=%u",
                 a->label, msg_id, n[BR_ACTION_OK], n[BR_ACTION_DUPLICATE]);
}

void br_actions_answer(struct br_actions *a, const struct br_action_ops *ops, const char *msg_id,
                       const char *ctype, const char *body, size_t len, int truncated,
                       unsigned counts[BR_ACTION_RESULTS])
{
    if (counts)
        memset(counts, 0, sizeof(unsigned) * BR_ACTION_RESULTS);
    if (!a || (!len && !truncated) || !br_actions_json_type(ctype))
        return;
    const cJSON *list;
    cJSON *j = parse_answer(a, msg_id, body, len, truncated, &list);
    if (!list) {
        cJSON_Delete(j);
        return;
    }
    struct seen *rec = record_of(a, msg_id);
    struct tally t;
    memset(&t, 0, sizeof(t));
    size_t i = 0;
    for (const cJSON *act = list->child; act; act = act->next, i++) {
        enum br_action_result res = BR_ACTION_DUPLICATE;
        if (i < rec->done) { /* this webhook-id's answer was acted on already */
            sh_metric_add(a->m, 1, a->label, "any", result_names[res]);
        } else {
            res = run_one(a, ops, i, act, &t);
            rec->done = (uint32_t)i + 1;
        }
        t.n[res]++;
    }
    log_answer(a, msg_id, &t);
    if (counts)
        memcpy(counts, t.n, sizeof(t.n));
    cJSON_Delete(j);
}
