/*
 * bridge/deadletter.h: batches a webhook refused for good (a status that is not retried), or
 * that a full spool share moved aside (`when_full: "dead_letter"`), kept in
 * `<state_dir>/dead-letter/` as one JSON file each, written durably (temp file, fsync, rename,
 * fsync of the folder), named `<UTC time>-w<webhook index>-<webhook-id>.json`:
 *
 *   {"webhook":0,"webhook_key":"...","webhook_id":"msg_...","reason":"refused","status":400,
 *    "attempts":1,"failed_at":"2026-11-23T13:45:00Z","events":12,
 *    "response":"first bytes of the answer","response_truncated":false,"body":{"events":[...]}}
 *
 * `body` is the request body exactly as sent (it is JSON). The URL is not written: it may
 * carry credentials. Retention removes a webhook's oldest files past a byte bound. Owns only
 * the files it writes.
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
    const char *reason; /* "refused" (NULL means it) or "spool_full" */
    long status;        /* 0 when no answer came */
    unsigned attempts;
    uint32_t events;
    const char *response; /* may be NULL */
    size_t response_len;
    int response_truncated;
    const char *body;
    size_t body_len;
};

/*
 * Write one dead letter into dir (created if missing) and make it durable; the file name goes
 * to path. Fails with SH_EIO (folder unusable, disk full...) or SH_ETOOBIG, leaving nothing.
 */
int br_deadletter_write(const char *dir, const struct br_dead_letter *dl, char *path,
                        size_t path_cap);

/*
 * Retention: remove webhook's oldest dead letters in dir until the rest take at most max_bytes
 * (UINT64_MAX only measures); the newest file always stays. Counts go to the out-parameters
 * (any may be NULL): files and bytes removed, bytes kept. SH_EIO when dir cannot be read.
 */
int br_deadletter_trim(const char *dir, size_t webhook, uint64_t max_bytes, uint64_t *removed,
                       uint64_t *removed_bytes, uint64_t *kept_bytes);

#endif
