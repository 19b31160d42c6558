/*
 * bridge/actions.h: the actions a receiver's 2xx answer carries (docs/delivery.md, "Acting
 * from the response"), for webhooks with "actions": true. Owns one webhook's record of the
 * actions it ran (the last BR_ACTIONS_SEEN webhook-ids, each with how many of its actions were
 * handled), so a batch answered again runs none of them twice, and the
 * shardhook_webhook_actions_total counter. It neither checks nor runs an action: that is the
 * control API's code, reached through struct br_action_ops, which bridge/main.c fills. The
 * delivery thread uses it.
 */
#ifndef SHARDHOOK_BR_ACTIONS_H
#define SHARDHOOK_BR_ACTIONS_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define BR_ACTIONS_BODY_MAX ((size_t)64 << 10) /* an answer read for actions; larger: ignored */
#define BR_ACTIONS_SEEN 4096                   /* webhook-ids remembered per webhook */
#define BR_ACTIONS_MAX 100                     /* actions run from one answer */

enum br_action_result {
    BR_ACTION_OK = 0,
    BR_ACTION_INVALID,   /* the API would answer 4xx for it (but 429) */
    BR_ACTION_REFUSED,   /* 429 or 503: a full send queue, a rate limit, a stop */
    BR_ACTION_ERROR,     /* anything else (500: out of memory) */
    BR_ACTION_DUPLICATE, /* this webhook-id's action of this index ran already */
    BR_ACTION_RESULTS
};

/* How actions run; main() fills it on top of the control API. */
struct br_action_ops {
    /*
     * Run action (a JSON object) for webhook `webhook` exactly as the control API runs the
     * same request. Returns the status the API would answer, with "code: message" in msg
     * when it is not 2xx, and *type (a constant string) names the action's type for metrics
     * and logs. A members action's answer comes back as an event (br_delivery_action_event).
     */
    int (*run)(void *ud, const cJSON *action, size_t webhook, const char **type, char *msg,
               size_t cap);
    void *ud;
};

struct br_actions;

/* One webhook's record; label names it in metrics and logs (copied). NULL when out of memory. */
struct br_actions *br_actions_new(size_t webhook, const char *label);
void br_actions_free(struct br_actions *a);

/* The result an API status stands for. */
enum br_action_result br_action_classify(int status);

/* 1 when a Content-Type value says JSON (application/json, application/<x>+json). */
int br_actions_json_type(const char *ctype);

/*
 * The 2xx answer to batch msg_id: content type ctype (may be NULL), the first len bytes of its
 * body, truncated when it was longer than BR_ACTIONS_BODY_MAX. Runs each action not run
 * before for msg_id through ops (in order), counts and logs the results; ops NULL (the control
 * API is not up): the actions count as refused. Never changes what happened to the batch.
 * counts (may be NULL) gets the count of each result.
 */
void br_actions_answer(struct br_actions *a, const struct br_action_ops *ops, const char *msg_id,
                       const char *ctype, const char *body, size_t len, int truncated,
                       unsigned counts[BR_ACTION_RESULTS]);

#endif
