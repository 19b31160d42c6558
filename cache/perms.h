/*
 * cache/perms.h: a member's computed permissions, by Discord's documented algorithm
 * (developers/topics/permissions.mdx): base permissions from @everyone and the member's roles,
 * the owner and ADMINISTRATOR shortcuts, channel overwrites in Discord's order (@everyone, then
 * the member's roles together, then the member), timeouts, and the implicit rules. Pure
 * functions over the inputs below: no cache state, no locks, no JSON trees.
 */
#ifndef SHARDHOOK_CA_PERMS_H
#define SHARDHOOK_CA_PERMS_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* One permission overwrite of a channel: type 0 a role (id = role id; the guild id is
   @everyone), 1 a member (id = user id). */
struct ca_overwrite {
    uint64_t id;
    int type;
    uint64_t allow, deny;
};

struct ca_perm_input {
    uint64_t guild_id;          /* also the @everyone role's id */
    uint64_t owner_id;          /* the guild's owner */
    uint64_t user_id;           /* the member */
    uint64_t everyone;          /* the @everyone role's permissions */
    const uint64_t *role_ids;   /* the member's roles (@everyone not among them) */
    const uint64_t *role_perms; /* role_perms[i]: permissions of role_ids[i] */
    size_t n_roles;
    const struct ca_overwrite *overwrites; /* the channel's (a thread: its parent's) */
    size_t n_overwrites;
    int in_channel; /* 1: compute for a channel (overwrites apply), 0: guild level */
    int timed_out;  /* communication_disabled_until lies in the future */
};

/* The member's permissions for in. */
uint64_t ca__permissions(const struct ca_perm_input *in);

/*
 * Append the names of the bits set in bits, as a JSON array of strings in bit order
 * (["CREATE_INSTANT_INVITE","KICK_MEMBERS",...]; an unknown bit as "BIT_<n>"). 0 or SH_E.
 */
int ca__permission_names(uint64_t bits, struct sh_buf *out);

#endif
