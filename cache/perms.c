/*
 * cache/perms.c: a member's computed permissions by Discord's documented algorithm
 * (developers/topics/permissions.mdx: compute_base_permissions, compute_overwrites, "Implicit
 * Permissions", "Permissions For Timed Out Members"), and the names of the bits. Pure functions:
 * the cache gathers the inputs under its own lock and calls these; nothing here touches it.
 *
 * Where the docs are loose, this file assumes:
 *  - "ALL" is every bit lib/discord.h's SH_PERMISSIONS names; bits Discord has not defined are
 *    not in it. An ordinary member keeps whatever unknown bits its roles carry (Discord rolls new
 *    permissions into the same field, so a bit newer than our table still means something).
 *  - Only the guild-level permissions decide ADMINISTRATOR (compute_overwrites checks
 *    base_permissions); an overwrite that allows the ADMINISTRATOR bit leaves that bit in the
 *    result, as the pseudocode does, without granting everything.
 *  - A timed-out member keeps only VIEW_CHANNEL and READ_MESSAGE_HISTORY of what the steps above
 *    computed (so a channel that denies VIEW_CHANNEL stays hidden), at guild level as in a
 *    channel; the owner and members whose guild-level permissions hold ADMINISTRATOR are exempt.
 *  - The implicit rules apply in a channel only, whatever its type (the input carries none):
 *    without VIEW_CHANNEL nothing is left; without SEND_MESSAGES, MENTION_EVERYONE,
 *    SEND_TTS_MESSAGES, ATTACH_FILES and EMBED_LINKS go. The voice rule ("denying CONNECT
 *    implicitly denies other permissions such as MANAGE_CHANNEL") names no list, so it is not
 *    applied. For a thread the caller passes its parent's overwrites; SEND_MESSAGES_IN_THREADS
 *    is reported as computed, and SEND_MESSAGES' implicit rule is applied as for the parent.
 *  - A role listed twice, or @everyone listed among the member's roles, changes nothing: the
 *    @everyone overwrite is applied once, in its own step.
 */
#include "cache/perms.h"

#include "lib/discord.h"
#include "lib/errors.h"

#define BIT(name) (UINT64_C(1) << SH_PERM_##name)

#define SH_PERM_MASK_(name, bit) | (UINT64_C(1) << (bit))
static const uint64_t all_perms = 0 SH_PERMISSIONS(SH_PERM_MASK_);
#undef SH_PERM_MASK_

#define SH_PERM_NAME_(name, bit) [bit] = #name,
static const char *const perm_names[64] = {SH_PERMISSIONS(SH_PERM_NAME_)};
#undef SH_PERM_NAME_

/* compute_base_permissions: @everyone, then every role OR'd in; the owner and ADMINISTRATOR
   get all. */
static uint64_t base_permissions(const struct ca_perm_input *in)
{
    if (in->user_id == in->owner_id)
        return all_perms;
    uint64_t p = in->everyone;
    for (size_t i = 0; i < in->n_roles; i++)
        p |= in->role_perms[i];
    if (p & BIT(ADMINISTRATOR))
        return all_perms;
    return p;
}

static int has_role(const struct ca_perm_input *in, uint64_t id)
{
    if (id == in->guild_id)
        return 0; /* @everyone's overwrite has its own step */
    for (size_t i = 0; i < in->n_roles; i++)
        if (in->role_ids[i] == id)
            return 1;
    return 0;
}

/* compute_overwrites for a member without ADMINISTRATOR: @everyone's overwrite, then the
   member's roles' overwrites together (denies OR'd, allows OR'd; deny applied first), then the
   member's own. */
static uint64_t apply_overwrites(const struct ca_perm_input *in, uint64_t p)
{
    const struct ca_overwrite *everyone = NULL, *member = NULL;
    uint64_t allow = 0, deny = 0;
    for (size_t i = 0; i < in->n_overwrites; i++) {
        const struct ca_overwrite *o = &in->overwrites[i];
        if (o->type == 0 && o->id == in->guild_id) {
            everyone = o;
        } else if (o->type == 0 && has_role(in, o->id)) {
            allow |= o->allow;
            deny |= o->deny;
        } else if (o->type == 1 && o->id == in->user_id) {
            member = o;
        }
    }
    if (everyone)
        p = (p & ~everyone->deny) | everyone->allow;
    p = (p & ~deny) | allow;
    if (member)
        p = (p & ~member->deny) | member->allow;
    return p;
}

uint64_t ca__permissions(const struct ca_perm_input *in)
{
    uint64_t p = base_permissions(in);
    if (p & BIT(ADMINISTRATOR))
        return p; /* all: the owner or ADMINISTRATOR, untouched by overwrites, timeouts and the
                     implicit rules */
    if (in->in_channel)
        p = apply_overwrites(in, p);
    if (in->timed_out)
        p &= BIT(VIEW_CHANNEL) | BIT(READ_MESSAGE_HISTORY);
    if (in->in_channel) {
        if (!(p & BIT(VIEW_CHANNEL)))
            return 0;
        if (!(p & BIT(SEND_MESSAGES)))
            p &= ~(BIT(MENTION_EVERYONE) | BIT(SEND_TTS_MESSAGES) | BIT(ATTACH_FILES) |
                   BIT(EMBED_LINKS));
    }
    return p;
}

int ca__permission_names(uint64_t bits, struct sh_buf *out)
{
    size_t len0 = out->len;
    int rc = sh_buf_append_str(out, "[");
    for (int b = 0; b < 64 && rc == 0; b++) {
        if (!(bits & (UINT64_C(1) << b)))
            continue;
        const char *sep = out->len > len0 + 1 ? "," : "";
        if (perm_names[b])
            rc = sh_buf_printf(out, "%s\"%s\"", sep, perm_names[b]);
        else
            rc = sh_buf_printf(out, "%s\"BIT_%d\"", sep, b);
    }
    if (rc == 0)
        rc = sh_buf_append_str(out, "]");
    if (rc < 0)
        out->len = len0;
    return rc;
}
