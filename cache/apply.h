/*
 * cache/apply.h: what the two halves of event application (apply.c: guilds, channels, threads,
 * roles, emojis; apply_member.c: members, users, voice states, presences, messages) share.
 * Everything but the parse-phase helpers runs under the cache's write lock.
 */
#ifndef SHARDHOOK_CA_APPLY_H
#define SHARDHOOK_CA_APPLY_H

#include "cache/cache_int.h"

enum ca__ev {
    CA__EV_NONE = 0,
    CA__EV_READY,
    CA__EV_GUILD_CREATE,
    CA__EV_GUILD_UPDATE,
    CA__EV_GUILD_DELETE,
    CA__EV_CHANNEL_SET,
    CA__EV_CHANNEL_DELETE,
    CA__EV_PINS,
    CA__EV_THREAD_SET,
    CA__EV_THREAD_DELETE,
    CA__EV_THREAD_SYNC,
    CA__EV_THREAD_MEMBER,
    CA__EV_ROLE_SET,
    CA__EV_ROLE_DELETE,
    CA__EV_EMOJIS,
    CA__EV_STICKERS,
    CA__EV_MEMBER_ADD,
    CA__EV_MEMBER_UPDATE,
    CA__EV_MEMBER_REMOVE,
    CA__EV_MEMBERS_CHUNK,
    CA__EV_MESSAGE,
    CA__EV_INTERACTION,
    CA__EV_VOICE,
    CA__EV_PRESENCE,
    CA__EV_USER_UPDATE,
};

/* One event as parsed before the write lock. */
struct ca__item {
    enum ca__ev ev;
    int shard;
    uint64_t s;
    cJSON *d;                      /* the event's d (not MESSAGE_CREATE) */
    const struct gw_session *sess; /* READY: the session it opened */
    uint64_t guild_id;             /* MESSAGE_CREATE */
    uint64_t channel_id, msg_id;   /* MESSAGE_CREATE: the channel's last_message_id */
    /* MESSAGE_CREATE: the author and member as blobs made from their text (the spans stay in
       the chunk, which outlives the item: parsed only when what is kept must merge them) */
    const char *author_p, *member_p;
    size_t author_n, member_n;
    struct ca__blob *ublob, *mblob;
    uint64_t uid;
    uint64_t uhash; /* of the author's text: no ublob when that text is known to be kept */
};

void ca__item_free(struct ca__item *it);

/* 1 when some part of ev is kept with this config (parse phase). */
int ca__wanted(const struct ca_cache *c, enum ca__ev ev);
/* The d of the encoded envelope at [env, env+len): 0 or SH_EPARSE. */
int ca__find_d(const char *env, size_t len, const char **d, size_t *dl);
/* MESSAGE_CREATE's guild_id, author and member, unless they are what was seen last time. */
void ca__parse_message(struct ca_cache *c, const char *d, size_t dl, struct ca__item *it);
/* GUILD_MEMBER_UPDATE's user and member as blobs from their text (no tree): 0, or SH_EPARSE
   when the event must take the tree path. */
int ca__parse_member_update(struct ca_cache *c, const char *d, size_t dl, struct ca__item *it);
/* Parse phase: an event that changes members forgets what the dedup table remembers. */
void ca__dedup_event(struct ca_cache *c, enum ca__ev ev);

struct ca__guild *ca__event_guild(struct ca_cache *c, const cJSON *d);
/* Replace dst's members by those of src (a partial update). */
void ca__merge(cJSON *dst, const cJSON *src);

void ca__put_thread(struct ca_cache *c, struct ca__guild *g, cJSON *o);
/* Keep member object m (its user apart) of user uid (0: m's user's id); merge: a partial
   update of what is kept. */
void ca__put_member(struct ca_cache *c, struct ca__guild *g, cJSON *m, uint64_t uid, int merge);
/* The user fields only the user itself sees (USER_UPDATE and READY's user carry them for the
   bot); REST's user object as others see it has none, so they are not kept. NULL-ended. */
extern const char *const ca__user_private[];
/* GUILD_CREATE's members from the text of their (valid) array: users and members as blobs
   made from it, a tree only for a user that merges into what is kept. */
void ca__put_members_text(struct ca_cache *c, struct ca__guild *g, const char *p, size_t n);
/* Keep user u (merged into what is kept; u's defaults and private fields are taken out). */
void ca__put_user(struct ca_cache *c, cJSON *u);
void ca__put_voice(struct ca_cache *c, struct ca__guild *g, cJSON *v);
void ca__put_presence(struct ca_cache *c, struct ca__guild *g, cJSON *p);
/* MESSAGE_CREATE in a kept channel or thread: its last_message_id (a thread's message counts). */
void ca__touch_channel(struct ca_cache *c, uint64_t channel_id, uint64_t msg_id);
/* The events of apply_member.c. */
void ca__apply_member_event(struct ca_cache *c, struct ca__item *it);

#endif
