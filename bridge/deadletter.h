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
 *
 * A dead letter's id is its file name without ".json". The times in the names of one process
 * strictly increase (a write in the same millisecond as the last takes the next one), so the
 * names sort in the order the batches were dead-lettered: listing, retention and redelivery
 * all use that order. Files are replaced atomically, so any thread may read the folder.
 */
#ifndef SHARDHOOK_BR_DEADLETTER_H
#define SHARDHOOK_BR_DEADLETTER_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define BR_DEAD_RESPONSE_MAX 4096 /* bytes of the answer kept */
#define BR_DEAD_ID_MAX 96         /* "<time>-w<webhook>-<webhook-id>" and its NUL */
#define BR_DEAD_LIST_MAX 500      /* the most dead letters one list answer holds */

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

/* 0 when id is a well-formed dead-letter id (its webhook in *webhook, may be NULL), else SH_EINVAL.
 */
int br_deadletter_id_parse(const char *id, size_t *webhook);

/* One dead letter read back: the file's text, its JSON, and where the body lies in the text. */
struct br_dead_read {
    char *text;
    size_t len;
    cJSON *json;
    const char *body; /* in text: the request body byte for byte as it was sent */
    size_t body_len;
};

/* Read dead letter id from dir. 0, SH_ENOTFOUND, SH_EPARSE (not a dead letter), SH_EIO, SH_ENOMEM.
 */
int br_deadletter_read(const char *dir, const char *id, struct br_dead_read *out);
void br_deadletter_read_free(struct br_dead_read *r);

/*
 * Dead letter id was refused again: its status, answer and failed_at are replaced, attempts
 * grows by one, its name (and so its place in the order) and body stay. SH_ENOTFOUND when it
 * was removed meanwhile; otherwise fails like br_deadletter_write, leaving the old file.
 */
int br_deadletter_refused_again(const char *dir, const char *id, long status, const char *resp,
                                size_t resp_len, int resp_truncated);

/* Remove dead letter id (its size into *bytes, may be NULL): 0, SH_ENOTFOUND or SH_EIO. */
int br_deadletter_remove(const char *dir, const char *id, uint64_t *bytes);

/*
 * List dead letters, newest first: webhook's (SIZE_MAX: every webhook's), only those older
 * than the id `after` (NULL: from the newest), at most limit. *out gets
 * {"dead_letters":[...],"next_after":id or null} (docs/api.md has the entry's fields).
 * 0, SH_EIO (the folder cannot be read) or SH_ENOMEM.
 */
int br_deadletter_list(const char *dir, size_t webhook, const char *after, size_t limit,
                       cJSON **out);

/*
 * The ids of webhook's dead letters dead-lettered from from_ms to to_ms (wall clock,
 * inclusive), oldest first, into a malloc'ed array (*n entries; free it). 0, SH_EIO, SH_ENOMEM.
 */
int br_deadletter_ids(const char *dir, size_t webhook, uint64_t from_ms, uint64_t to_ms,
                      char (**ids)[BR_DEAD_ID_MAX], size_t *n);

/* The wall-clock ms an id's time says, 0 when it is malformed. */
uint64_t br_deadletter_id_ms(const char *id);

#endif
