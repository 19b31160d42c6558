/*
 * cache/apply_member.c: the events that carry members, users, voice states and presences
 * (GUILD_MEMBER_*, GUILD_MEMBERS_CHUNK, MESSAGE_CREATE, INTERACTION_CREATE, VOICE_STATE_UPDATE,
 * PRESENCE_UPDATE, USER_UPDATE), and MESSAGE_CREATE's fast path: the scanner finds guild_id,
 * author and member without parsing the message, and a dedup table skips the update when
 * those bytes are what the last message of that (guild, author) carried.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/apply.h"
#include "lib/errors.h"

void ca__item_free(struct ca__item *it)
{
    cJSON_Delete(it->d);
    free(it->ublob);
    free(it->mblob);
}

void ca__merge(cJSON *dst, const cJSON *src)
{
    const cJSON *o;
    cJSON_ArrayForEach(o, src)
    {
        if (!o->string)
            continue;
        cJSON *dup = cJSON_Duplicate(o, 1);
        if (!dup)
            continue;
        if (cJSON_GetObjectItemCaseSensitive(dst, o->string))
            cJSON_ReplaceItemInObjectCaseSensitive(dst, o->string, dup);
        else
            cJSON_AddItemToObject(dst, o->string, dup);
    }
}

static int same(const struct ca__blob *a, const struct ca__blob *b)
{
    return a && b && a->len == b->len && a->strip == b->strip && !memcmp(a->data, b->data, a->len);
}

const char *const ca__user_private[] = {"email",  "verified",     "mfa_enabled",
                                        "locale", "premium_type", NULL};

void ca__put_user(struct ca_cache *c, cJSON *u)
{
    uint64_t id = ca__jid(cJSON_GetObjectItemCaseSensitive(u, "id"));
    if (!id || !cJSON_IsObject(u))
        return;
    for (const char *const *k = ca__user_private; *k; k++)
        cJSON_DeleteItemFromObjectCaseSensitive(u, *k);
    uint16_t mask = ca__strip(u, CA__USER);
    struct ca__blob *old = ca__map_get(&c->st.users, id), *b = ca__blob_of(u, mask);
    if (same(old, b)) { /* the same user as kept: nothing to merge */
        free(b);
        return;
    }
    if (old) { /* a partial user merges into what is kept */
        free(b);
        cJSON *t = ca__blob_tree(old, CA__USER);
        if (!t)
            return;
        ca__unstrip(u, mask, CA__USER);
        ca__merge(t, u);
        mask = ca__strip(t, CA__USER);
        b = ca__blob_of(t, mask);
        cJSON_Delete(t);
    }
    if (same(old, b))
        free(b);
    else
        ca__uput(&c->st, id, b);
}

void ca__put_member(struct ca_cache *c, struct ca__guild *g, cJSON *m, uint64_t uid, int merge)
{
    cJSON *u = cJSON_GetObjectItemCaseSensitive(m, "user");
    if (!uid)
        uid = ca__jid(cJSON_GetObjectItemCaseSensitive(u, "id"));
    if (!uid || !cJSON_IsObject(m))
        return;
    if (u)
        ca__put_user(c, u);
    if (!ca__on(c, CFG_CACHE_MEMBERS))
        return;
    cJSON_DeleteItemFromObjectCaseSensitive(m, "user");
    cJSON_DeleteItemFromObjectCaseSensitive(m, "guild_id");
    struct ca__blob *old = ca__map_get(&g->maps[CA__M_MEMBERS], uid);
    cJSON *t = m, *owned = NULL;
    if (merge && old) {
        if (!(owned = ca__blob_tree(old, CA__MEMBER)))
            return;
        ca__merge(owned, m);
        t = owned;
    }
    uint16_t strip = ca__strip(t, CA__MEMBER);
    struct ca__blob *b = ca__blob_of(t, strip);
    cJSON_Delete(owned);
    if (same(old, b))
        free(b);
    else
        ca__gput(&c->st, g, CA__M_MEMBERS, uid, b);
}

void ca__put_voice(struct ca_cache *c, struct ca__guild *g, cJSON *v)
{
    uint64_t uid = ca__jid(cJSON_GetObjectItemCaseSensitive(v, "user_id"));
    if (!uid)
        return;
    cJSON *m = cJSON_GetObjectItemCaseSensitive(v, "member");
    if (m)
        ca__put_member(c, g, m, uid, 1);
    if (!ca__on(c, CFG_CACHE_VOICE_STATES))
        return;
    cJSON_DeleteItemFromObjectCaseSensitive(v, "member");
    cJSON_DeleteItemFromObjectCaseSensitive(v, "guild_id");
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(v, "channel_id");
    if (!ch || cJSON_IsNull(ch))
        ca__gdel(&c->st, g, CA__M_VOICE, uid);
    else
        ca__gput(&c->st, g, CA__M_VOICE, uid, ca__blob_of(v, 0));
}

void ca__put_presence(struct ca_cache *c, struct ca__guild *g, cJSON *p)
{
    if (!ca__on(c, CFG_CACHE_PRESENCES))
        return;
    cJSON *u = cJSON_GetObjectItemCaseSensitive(p, "user");
    uint64_t uid = ca__jid(cJSON_GetObjectItemCaseSensitive(u, "id"));
    if (!uid)
        return;
    if (cJSON_GetArraySize(u) > 1) {
        ca__put_user(c, u); /* a partial user: what changed (defaults it held taken out) */
        cJSON *keep = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(u, "id"), 1);
        cJSON *only = cJSON_CreateObject();
        if (!keep || !only) {
            cJSON_Delete(keep);
            cJSON_Delete(only);
            return;
        }
        cJSON_AddItemToObject(only, "id", keep);
        cJSON_ReplaceItemInObjectCaseSensitive(p, "user", only);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(p, "guild_id");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(p, "status");
    if (cJSON_IsString(st) && !strcmp(st->valuestring, "offline"))
        ca__gdel(&c->st, g, CA__M_PRESENCES, uid);
    else
        ca__gput(&c->st, g, CA__M_PRESENCES, uid, ca__blob_of(p, 0));
}

static void member_add(struct ca_cache *c, struct ca__guild *g, cJSON *d)
{
    uint64_t uid = ca__jid(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(d, "user"), "id"));
    if (!ca__on(c, CFG_CACHE_MEMBERS) || !ca__map_get(&g->maps[CA__M_MEMBERS], uid))
        g->member_count++;
    ca__put_member(c, g, d, 0, 0);
}

static void member_remove(struct ca_cache *c, struct ca__guild *g, cJSON *d)
{
    cJSON *u = cJSON_GetObjectItemCaseSensitive(d, "user");
    ca__put_user(c, u);
    int had =
        ca__gdel(&c->st, g, CA__M_MEMBERS, ca__jid(cJSON_GetObjectItemCaseSensitive(u, "id")));
    if ((had || !ca__on(c, CFG_CACHE_MEMBERS)) && g->member_count > 0)
        g->member_count--;
    ca__store_check_full(&c->st);
}

static void members_chunk(struct ca_cache *c, struct ca__guild *g, cJSON *d)
{
    cJSON *o;
    cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(d, "members"))
        ca__put_member(c, g, o, 0, 0);
    cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(d, "presences"))
        ca__put_presence(c, g, o);
}

/* The id in a user object's text, when its first "id" key is a string (only a guess: the
   known table checks the text's hash); 0 when none. */
static uint64_t id_in(const char *p, size_t n)
{
    const char *k = memmem(p, n, "\"id\":\"", 6), *e = p + n;
    if (!k)
        return 0;
    const char *v = k + 6, *q = memchr(v, '"', (size_t)(e - v));
    return q ? ca__id(v, (size_t)(q - v)) : 0;
}

static uint64_t *known_slot(struct ca__store *s, uint64_t uid)
{
    if (!s->known_users && !(s->known_users = calloc(CA__KNOWN_USERS, sizeof *s->known_users)))
        return NULL;
    return s->known_users[ca__known_slot(uid)];
}

/* The id of the user of text hashing to h (its id in the text guessed) when the user kept was
   made from that text and has not changed since; 0 when unknown. */
static uint64_t known_user(struct ca__store *s, uint64_t guess, uint64_t h)
{
    const uint64_t *k = guess ? known_slot(s, guess) : NULL;
    return k && k[0] == guess && k[1] == h ? guess : 0;
}

static void know_user(struct ca__store *s, uint64_t h, uint64_t uid)
{
    uint64_t *k = known_slot(s, uid);
    if (k) {
        k[0] = uid;
        k[1] = h;
    }
}

/* The user object at [p, p+n) into it: its id, and its blob unless that text is known to be
   kept; check: validate the text first (it is not part of validated text). */
static void author_of(struct ca_cache *c, struct ca__item *it, const char *p, size_t n, int check)
{
    const char *v;
    size_t vl;
    it->author_p = p;
    it->author_n = n;
    it->uhash = ca__hash(0, p, n);
    if ((it->uid = known_user(&c->st, id_in(p, n), it->uhash)))
        return;
    if (check && (*p != '{' || !ca__json_valid(p, n)))
        return;
    it->ublob = ca__blob_text(p, n, CA__USER, ca__user_private);
    if (it->ublob && ca__blob_find(it->ublob, "id", &v, &vl) == 0)
        it->uid = ca__id(v, vl);
}

/* MESSAGE_CREATE's author: known, new, the same, or merged into what is kept. */
static void message_user(struct ca_cache *c, struct ca__item *it)
{
    if (!it->ublob) { /* known when parsed: still so unless a user changed meanwhile */
        if (known_user(&c->st, it->uid, it->uhash))
            return;
        if (!(it->ublob = ca__blob_text(it->author_p, it->author_n, CA__USER, ca__user_private)))
            return;
    }
    const struct ca__blob *old = ca__map_get(&c->st.users, it->uid);
    if (!old) {
        int rc = ca__uput(&c->st, it->uid, it->ublob); /* takes it */
        it->ublob = NULL;
        if (rc == 0)
            know_user(&c->st, it->uhash, it->uid);
    } else if (!same(old, it->ublob)) {
        cJSON *u = cJSON_ParseWithLength(it->author_p, it->author_n);
        ca__put_user(c, u);
        cJSON_Delete(u);
    } else {
        know_user(&c->st, it->uhash, it->uid);
    }
}

struct key_seq {
    const char *k[24];
    size_t kl[24];
    int n;
};

static void key_of(void *ud, const char *k, size_t kl, const char *v, size_t vl)
{
    struct key_seq *s = ud;
    (void)v;
    (void)vl;
    if (s->n < 24) {
        s->k[s->n] = k;
        s->kl[s->n] = kl;
    }
    s->n++;
}

/* 1 when b has the keys of a, in a's order, and the same defaults left out: merging b into a
   then gives b. */
static int same_keys(const struct ca__blob *a, const struct ca__blob *b)
{
    struct key_seq ka = {.n = 0}, kb = {.n = 0};
    if (!a || !b || a->strip != b->strip ||
        ca__each_member(a->data, a->data + a->len, key_of, &ka) < 0 ||
        ca__each_member(b->data, b->data + b->len, key_of, &kb) < 0 || ka.n != kb.n || ka.n > 24)
        return 0;
    for (int i = 0; i < ka.n; i++)
        if (ka.kl[i] != kb.kl[i] || memcmp(ka.k[i], kb.k[i], ka.kl[i]))
            return 0;
    return 1;
}

/* MESSAGE_CREATE's member (a partial member: merged into what is kept). */
static void message_member(struct ca_cache *c, struct ca__guild *g, struct ca__item *it)
{
    const struct ca__blob *old = ca__map_get(&g->maps[CA__M_MEMBERS], it->uid);
    if (!old || (!same(old, it->mblob) && same_keys(old, it->mblob))) {
        ca__gput(&c->st, g, CA__M_MEMBERS, it->uid, it->mblob); /* takes it */
        it->mblob = NULL;
    } else if (!same(old, it->mblob)) {
        cJSON *m = cJSON_ParseWithLength(it->member_p, it->member_n);
        if (m)
            ca__put_member(c, g, m, it->uid, 1);
        cJSON_Delete(m);
    }
}

static void message(struct ca_cache *c, struct ca__item *it)
{
    if (it->channel_id && it->msg_id)
        ca__touch_channel(c, it->channel_id, it->msg_id);
    if (!it->uid)
        return;
    message_user(c, it);
    struct ca__guild *g = ca__guild_get(&c->st, it->guild_id, -1, 0);
    if (g && it->mblob)
        message_member(c, g, it);
}

/* GUILD_MEMBER_UPDATE read by ca__parse_member_update: the same as the tree path, which runs
   only when what is kept must merge it. */
static void member_update_text(struct ca_cache *c, struct ca__item *it)
{
    if (!it->uid)
        return;
    message_user(c, it);
    struct ca__guild *g = ca__guild_get(&c->st, it->guild_id, -1, 0);
    if (g && it->mblob)
        message_member(c, g, it);
}

void ca__apply_member_event(struct ca_cache *c, struct ca__item *it)
{
    if (it->ev == CA__EV_MESSAGE) {
        message(c, it);
        return;
    }
    if (it->ev == CA__EV_MEMBER_UPDATE && !it->d) {
        member_update_text(c, it);
        return;
    }
    cJSON *d = it->d;
    if (it->ev == CA__EV_USER_UPDATE) {
        ca__put_user(c, d);
        return;
    }
    struct ca__guild *g = ca__event_guild(c, d);
    if (it->ev == CA__EV_INTERACTION)
        ca__put_user(c, cJSON_GetObjectItemCaseSensitive(d, "user"));
    if (!g) {
        if (it->ev == CA__EV_INTERACTION || it->ev == CA__EV_MEMBER_UPDATE)
            ca__put_user(c, cJSON_GetObjectItemCaseSensitive(
                                cJSON_GetObjectItemCaseSensitive(d, "member"), "user"));
        return;
    }
    switch (it->ev) {
    case CA__EV_MEMBER_ADD:
        member_add(c, g, d);
        break;
    case CA__EV_MEMBER_UPDATE:
        ca__put_member(c, g, d, 0, 1);
        break;
    case CA__EV_MEMBER_REMOVE:
        member_remove(c, g, d);
        break;
    case CA__EV_MEMBERS_CHUNK:
        members_chunk(c, g, d);
        break;
    case CA__EV_INTERACTION: {
        cJSON *m = cJSON_GetObjectItemCaseSensitive(d, "member");
        cJSON_DeleteItemFromObjectCaseSensitive(m,
                                                "permissions"); /* the interaction's, not REST's */
        if (m)
            ca__put_member(c, g, m, 0, 1);
        break;
    }
    case CA__EV_VOICE:
        ca__put_voice(c, g, d);
        break;
    case CA__EV_PRESENCE:
        ca__put_presence(c, g, d);
        break;
    default:
        break;
    }
}

int ca__wanted(const struct ca_cache *c, enum ca__ev ev)
{
    switch (ev) {
    case CA__EV_PRESENCE:
        return ca__on(c, CFG_CACHE_PRESENCES);
    case CA__EV_VOICE:
        return ca__on(c, CFG_CACHE_VOICE_STATES) || ca__on(c, CFG_CACHE_MEMBERS);
    case CA__EV_CHANNEL_SET:
    case CA__EV_CHANNEL_DELETE:
    case CA__EV_PINS:
    case CA__EV_THREAD_SET:
    case CA__EV_THREAD_DELETE:
    case CA__EV_THREAD_SYNC:
    case CA__EV_THREAD_MEMBER:
        return ca__on(c, CFG_CACHE_CHANNELS);
    case CA__EV_ROLE_SET:
    case CA__EV_ROLE_DELETE:
        return ca__on(c, CFG_CACHE_ROLES);
    case CA__EV_EMOJIS:
    case CA__EV_STICKERS:
        return ca__on(c, CFG_CACHE_EMOJIS);
    default:
        return 1;
    }
}

int ca__find_d(const char *env, size_t len, const char **d, size_t *dl)
{
    const char *p = env, *end = env + len;
    while (end > p && end[-1] != '}')
        end--;
    if (end == p || *p != '{')
        return SH_EPARSE;
    end--; /* the envelope's closing brace */
    for (p++; p < end;) {
        if (*p == ',' || *p == ' ') {
            p++;
            continue;
        }
        const char *ke = *p == '"' ? ca__skip_value(p, end) : NULL;
        if (!ke || ke >= end || *ke != ':')
            return SH_EPARSE;
        if (ke - p == 3 && p[1] == 'd') { /* "d" is the envelope's last member */
            *d = ke + 1;
            *dl = (size_t)(end - *d);
            return 0;
        }
        if (!(p = ca__skip_value(ke + 1, end)))
            return SH_EPARSE;
    }
    return SH_EPARSE;
}

struct msg_spans {
    const char *gid, *author, *member, *id, *cid, *user;
    size_t gl, al, ml, il, cl, ul;
};

static void msg_member(void *ud, const char *k, size_t kl, const char *v, size_t vl)
{
    struct msg_spans *m = ud;
    if (kl == 8 && !memcmp(k, "guild_id", 8)) {
        m->gid = v;
        m->gl = vl;
    } else if (kl == 6 && !memcmp(k, "author", 6)) {
        m->author = v;
        m->al = vl;
    } else if (kl == 6 && !memcmp(k, "member", 6)) {
        m->member = v;
        m->ml = vl;
    } else if (kl == 2 && !memcmp(k, "id", 2)) {
        m->id = v;
        m->il = vl;
    } else if (kl == 10 && !memcmp(k, "channel_id", 10)) {
        m->cid = v;
        m->cl = vl;
    } else if (kl == 4 && !memcmp(k, "user", 4)) {
        m->user = v;
        m->ul = vl;
    }
}

void ca__dedup_event(struct ca_cache *c, enum ca__ev ev)
{
    switch (ev) {
    case CA__EV_READY:
    case CA__EV_GUILD_CREATE:
    case CA__EV_GUILD_DELETE:
    case CA__EV_MEMBER_ADD:
    case CA__EV_MEMBER_UPDATE:
    case CA__EV_MEMBER_REMOVE:
    case CA__EV_MEMBERS_CHUNK:
    case CA__EV_INTERACTION:
    case CA__EV_VOICE:
    case CA__EV_USER_UPDATE:
        c->dedup_seen++;
        break;
    default:
        break;
    }
}

/* The author and member of a message as blobs, straight from their text once it is valid JSON
   (no author blob when that text is known to be the user kept). */
static void parse_people(struct ca_cache *c, struct ca__item *it, const struct msg_spans *m,
                         int want_member)
{
    static const char *const member_drop[] = {"user", "guild_id", NULL};
    author_of(c, it, m->author, m->al, 1);
    if (!it->uid)
        return;
    if (want_member && *m->member == '{' && ca__json_valid(m->member, m->ml)) {
        it->member_p = m->member;
        it->member_n = m->ml;
        it->mblob = ca__blob_text(m->member, m->ml, CA__MEMBER, member_drop);
    }
}

/* 1 when (key, h) is remembered; else remember it. Two ways per set, the newest first. */
static int dedup_seen(struct ca_cache *c, uint64_t key, uint64_t h)
{
    uint64_t(*set)[2] = &c->dedup[(key >> 32) & (CA__DEDUP_SLOTS - 2)];
    for (int w = 0; w < 2; w++)
        if (set[w][0] == key && set[w][1] == h)
            return 1;
    set[1][0] = set[0][0];
    set[1][1] = set[0][1];
    set[0][0] = key;
    set[0][1] = h;
    return 0;
}

void ca__parse_message(struct ca_cache *c, const char *d, size_t dl, struct ca__item *it)
{
    struct msg_spans m = {0};
    it->ev = CA__EV_NONE;
    if (ca__each_member(d, d + dl, msg_member, &m) < 0 || !m.author)
        return;
    uint64_t gid = m.gid ? ca__id(m.gid, m.gl) : 0;
    int want_member = gid && m.member && ca__on(c, CFG_CACHE_MEMBERS);
    if (gid && m.id && m.cid && ca__on(c, CFG_CACHE_CHANNELS)) {
        it->ev = CA__EV_MESSAGE; /* the channel's last_message_id, even when the rest is known */
        it->channel_id = ca__id(m.cid, m.cl);
        it->msg_id = ca__id(m.id, m.il);
    }
    if (c->dedup) {
        uint64_t gen = c->dedup_seen ^ ((uint64_t)atomic_load(&c->dedup_gen) << 32);
        uint64_t key = ca__hash(ca__hash(0, &gid, sizeof gid), m.author, m.al);
        key = ca__hash(key, &gen, sizeof gen) | 1;
        uint64_t h = want_member ? ca__hash(0, m.member, m.ml) : 1;
        if (dedup_seen(c, key, h))
            return; /* the same author and member as this (guild, author)'s last message */
    }
    it->ev = CA__EV_MESSAGE;
    it->guild_id = gid;
    parse_people(c, it, &m, want_member);
}

int ca__parse_member_update(struct ca_cache *c, const char *d, size_t dl, struct ca__item *it)
{
    struct msg_spans m = {0};
    if (!ca__json_valid(d, dl) || ca__each_member(d, d + dl, msg_member, &m) < 0 || !m.gid ||
        !m.user || *m.user != '{')
        return SH_EPARSE; /* the tree path says what to make of it */
    static const char *const member_drop[] = {"user", "guild_id", NULL};
    it->guild_id = ca__id(m.gid, m.gl);
    author_of(c, it, m.user, m.ul, 0);
    if (ca__on(c, CFG_CACHE_MEMBERS)) {
        it->member_p = d;
        it->member_n = dl;
        it->mblob = ca__blob_text(d, dl, CA__MEMBER, member_drop);
    }
    return 0;
}

/* One member object's text of a GUILD_CREATE (no merge: the guild was just cleared). */
static void put_member_text(struct ca_cache *c, struct ca__guild *g, const char *p, size_t n)
{
    static const char *const member_drop[] = {"user", "guild_id", NULL};
    struct msg_spans m = {0};
    if (*p != '{' || ca__each_member(p, p + n, msg_member, &m) < 0 || !m.user || *m.user != '{')
        return;
    struct ca__item it = {.ev = CA__EV_NONE};
    author_of(c, &it, m.user, m.ul, 0);
    if (it.uid) {
        message_user(c, &it);
        if (ca__on(c, CFG_CACHE_MEMBERS)) {
            struct ca__blob *b = ca__blob_text(p, n, CA__MEMBER, member_drop);
            const struct ca__blob *old = ca__map_get(&g->maps[CA__M_MEMBERS], it.uid);
            if (b && same(old, b))
                free(b);
            else if (b)
                ca__gput(&c->st, g, CA__M_MEMBERS, it.uid, b);
        }
    }
    ca__item_free(&it);
}

void ca__put_members_text(struct ca_cache *c, struct ca__guild *g, const char *p, size_t n)
{
    const char *end = p + n;
    while (p < end && *p != '[')
        p++;
    for (p++; p < end;) {
        while (p < end && (*p == ' ' || *p == ',' || *p == '\n' || *p == '\t' || *p == '\r'))
            p++;
        if (p >= end || *p == ']')
            return;
        const char *e = ca__skip_value(p, end);
        if (!e)
            return;
        put_member_text(c, g, p, (size_t)(e - p));
        p = e;
    }
}
