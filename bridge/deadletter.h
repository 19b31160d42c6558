/*
 * bridge/deadletter.h: batches a webhook refused for good (a status that is not retried),
 * kept in `<state_dir>/dead-letter/` as one JSON file each, written atomically:
 *
 *   {"webhook":0,"webhook_key":"...","webhook_id":"msg_...","status":400,"attempts":1,
 *    "failed_at":"2026-11-23T13:45:00Z","events":12,"response":"first bytes of the answer",
 *    "response_truncated":false,"body":{"events":[...]}}
 *
 * `body` is the request body exactly as sent (it is JSON). The URL is not written: it may
 * carry credentials. Owns only the files it writes.
 */
#ifndef SHARDHOOK_BR_DEADLETTER_H
#define SHARDHOOK_BR_DEADLETTER_H

#include <stddef.h>
#include <stdint.h>

#define BR_DEAD_RESPONSE_MAX 4096 /* bytes of the answer kept */

struct br_dead_letter {
    size_t webhook;
    const char *webhook_key;
    const char *msg_id;
    long status;
    unsigned attempts;
    uint32_t events;
    const char *response; /* may be NULL */
    size_t response_len;
    int response_truncated;
    const char *body;
    size_t body_len;
};

/* Write one dead letter into dir (created if missing); the file name goes to path. */
int br_deadletter_write(const char *dir, const struct br_dead_letter *dl, char *path,
                        size_t path_cap);

#endif
