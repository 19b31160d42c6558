/*
 * tests/unit/test_cache_perms.c: ca__permissions against Discord's documented algorithm
 * (developers/topics/permissions.mdx), one row per rule, each expected bitset worked out by hand
 * from the docs' steps; and the names ca__permission_names writes for a bitset.
 */
#include <stdint.h>
#include <string.h>

#include "cache/perms.h"
#include "lib/buf.h"
#include "lib/errors.h"
#include "tests/unit/test.h"

/* Bit values written out from the docs' table, not taken from lib/discord.h. */
#define CREATE_INSTANT_INVITE (UINT64_C(1) << 0)
#define KICK_MEMBERS (UINT64_C(1) << 1)
#define BAN_MEMBERS (UINT64_C(1) << 2)
#define ADMINISTRATOR (UINT64_C(1) << 3)
#define MANAGE_GUILD (UINT64_C(1) << 5)
#define ADD_REACTIONS (UINT64_C(1) << 6)
#define VIEW_CHANNEL (UINT64_C(1) << 10)
#define SEND_MESSAGES (UINT64_C(1) << 11)
#define SEND_TTS_MESSAGES (UINT64_C(1) << 12)
#define MANAGE_MESSAGES (UINT64_C(1) << 13)
#define EMBED_LINKS (UINT64_C(1) << 14)
#define ATTACH_FILES (UINT64_C(1) << 15)
#define READ_MESSAGE_HISTORY (UINT64_C(1) << 16)
#define MENTION_EVERYONE (UINT64_C(1) << 17)
#define CONNECT (UINT64_C(1) << 20)
#define BYPASS_SLOWMODE (UINT64_C(1) << 52)
/* Every defined bit: 0..52 without 47, i.e. (1 << 53) - 1 - (1 << 47). */
#define ALL UINT64_C(0x1F7FFFFFFFFFFF)

/* What @everyone may do in a plain community guild. */
#define DEFAULT                                                                                    \
    (VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY | ADD_REACTIONS | EMBED_LINKS |           \
     ATTACH_FILES)

#define GUILD UINT64_C(100) /* also @everyone's id */
#define OWNER UINT64_C(1)
#define USER UINT64_C(7)
#define OTHER UINT64_C(8)
#define R1 UINT64_C(201)
#define R2 UINT64_C(202)
#define R3 UINT64_C(203)

#define OWS(...)                                                                                   \
    .overwrites = (const struct ca_overwrite[]){__VA_ARGS__},                                      \
    .n_overwrites =                                                                                \
        sizeof((const struct ca_overwrite[]){__VA_ARGS__}) / sizeof(struct ca_overwrite)
#define IDS(...)                                                                                   \
    .role_ids = (const uint64_t[])                                                                 \
    {                                                                                              \
        __VA_ARGS__                                                                                \
    }
#define PERMS(...)                                                                                 \
    .role_perms = (const uint64_t[]){__VA_ARGS__},                                                 \
    .n_roles = sizeof((const uint64_t[]){__VA_ARGS__}) / sizeof(uint64_t)
#define ROLE_OW(id, a, d)                                                                          \
    {                                                                                              \
        (id), 0, (a), (d)                                                                          \
    }
#define MEMBER_OW(id, a, d)                                                                        \
    {                                                                                              \
        (id), 1, (a), (d)                                                                          \
    }
#define BASE .guild_id = GUILD, .owner_id = OWNER

struct perm_case {
    const char *name;
    struct ca_perm_input in;
    uint64_t want;
};

static const struct perm_case cases[] = {
    /* Owner: compute_base_permissions returns ALL before looking at anything else, and the
       overwrites, the timeout and the implicit rules never apply to ALL. */
    {"owner",
     {BASE, .user_id = OWNER, .everyone = 0, .in_channel = 1, .timed_out = 1,
      OWS(ROLE_OW(GUILD, 0, VIEW_CHANNEL), MEMBER_OW(OWNER, 0, ALL))},
     ALL},
    /* Owner at guild level, no roles at all: still ALL. */
    {"owner_guild_level", {BASE, .user_id = OWNER}, ALL},
    /* ADMINISTRATOR from a role: base = DEFAULT | ADMINISTRATOR has the bit, so ALL; the
       member overwrite denying everything is skipped by compute_overwrites' first test. */
    {"admin_role",
     {BASE, .user_id = USER, .everyone = DEFAULT, IDS(R1), PERMS(ADMINISTRATOR), .in_channel = 1,
      OWS(ROLE_OW(GUILD, 0, VIEW_CHANNEL), MEMBER_OW(USER, 0, ALL))},
     ALL},
    /* ADMINISTRATOR on @everyone itself: every member's base holds it, so ALL. */
    {"admin_through_everyone",
     {BASE, .user_id = USER, .everyone = ADMINISTRATOR | VIEW_CHANNEL, .in_channel = 1},
     ALL},
    /* Roles OR'd into @everyone at guild level:
       (VIEW|SEND) | (KICK|MANAGE_MESSAGES) | BAN. */
    {"role_grants",
     {BASE, .user_id = USER, .everyone = VIEW_CHANNEL | SEND_MESSAGES, IDS(R1, R2),
      PERMS(KICK_MEMBERS | MANAGE_MESSAGES, BAN_MEMBERS)},
     VIEW_CHANNEL | SEND_MESSAGES | KICK_MEMBERS | MANAGE_MESSAGES | BAN_MEMBERS},
    /* @everyone overwrite denies ADD_REACTIONS: DEFAULT & ~ADD_REACTIONS. */
    {"everyone_overwrite_deny",
     {BASE, .user_id = USER, .everyone = DEFAULT, .in_channel = 1,
      OWS(ROLE_OW(GUILD, 0, ADD_REACTIONS))},
     DEFAULT & ~ADD_REACTIONS},
    /* @everyone overwrite denies SEND_MESSAGES: SEND goes, and with it (implicitly) EMBED_LINKS
       and ATTACH_FILES; VIEW, READ_MESSAGE_HISTORY and ADD_REACTIONS stay. */
    {"everyone_deny_send_drops_implicit",
     {BASE, .user_id = USER, .everyone = DEFAULT, .in_channel = 1,
      OWS(ROLE_OW(GUILD, 0, SEND_MESSAGES))},
     VIEW_CHANNEL | READ_MESSAGE_HISTORY | ADD_REACTIONS},
    /* Role overwrite allow beats the @everyone deny: step 3 removes SEND, step 6 gives it back,
       so DEFAULT whole. */
    {"role_allow_beats_everyone_deny",
     {BASE, .user_id = USER, .everyone = DEFAULT, IDS(R1), PERMS(0), .in_channel = 1,
      OWS(ROLE_OW(GUILD, 0, SEND_MESSAGES), ROLE_OW(R1, SEND_MESSAGES, 0))},
     DEFAULT},
    /* @everyone overwrite allow comes before the role deny: MANAGE_MESSAGES given at step 4 is
       taken at step 5. */
    {"role_deny_beats_everyone_allow",
     {BASE, .user_id = USER, .everyone = DEFAULT, IDS(R1), PERMS(0), .in_channel = 1,
      OWS(ROLE_OW(R1, 0, MANAGE_MESSAGES), ROLE_OW(GUILD, MANAGE_MESSAGES, 0))},
     DEFAULT},
    /* Member overwrite beats the role overwrite: role allows SEND after @everyone denied it,
       the member's own deny takes it again; implicit rule drops EMBED_LINKS and ATTACH_FILES. */
    {"member_deny_beats_role_allow",
     {BASE, .user_id = USER, .everyone = DEFAULT, IDS(R1), PERMS(0), .in_channel = 1,
      OWS(MEMBER_OW(USER, 0, SEND_MESSAGES), ROLE_OW(R1, SEND_MESSAGES, 0),
          ROLE_OW(GUILD, 0, SEND_MESSAGES))},
     VIEW_CHANNEL | READ_MESSAGE_HISTORY | ADD_REACTIONS},
    /* And the other way: the role denies ADD_REACTIONS, the member's overwrite allows it. */
    {"member_allow_beats_role_deny",
     {BASE, .user_id = USER, .everyone = DEFAULT, IDS(R1), PERMS(0), .in_channel = 1,
      OWS(ROLE_OW(R1, 0, ADD_REACTIONS), MEMBER_OW(USER, ADD_REACTIONS, 0))},
     DEFAULT},
    /* The docs' #coolstuff example: @everyone and role A deny VIEW_CHANNEL, role B allows it;
       the role step ORs A's deny and B's allow, applies the deny then the allow, so the member
       sees the channel whatever the roles' positions: DEFAULT. */
    {"roles_together_allow_wins",
     {BASE, .user_id = USER, .everyone = DEFAULT, IDS(R1, R2), PERMS(0, 0), .in_channel = 1,
      OWS(ROLE_OW(GUILD, 0, VIEW_CHANNEL), ROLE_OW(R1, 0, VIEW_CHANNEL),
          ROLE_OW(R2, VIEW_CHANNEL, 0))},
     DEFAULT},
    /* One role denies ADD_REACTIONS and another allows MANAGE_MESSAGES: both hold. */
    {"roles_together_mixed",
     {BASE, .user_id = USER, .everyone = DEFAULT, IDS(R1, R2), PERMS(0, 0), .in_channel = 1,
      OWS(ROLE_OW(R1, 0, ADD_REACTIONS), ROLE_OW(R2, MANAGE_MESSAGES, 0))},
     (DEFAULT & ~ADD_REACTIONS) | MANAGE_MESSAGES},
    /* Overwrites for a role the member lacks and for another member do not apply: DEFAULT. */
    {"others_overwrites_ignored",
     {BASE, .user_id = USER, .everyone = DEFAULT, IDS(R1), PERMS(0), .in_channel = 1,
      OWS(ROLE_OW(R3, 0, SEND_MESSAGES), MEMBER_OW(OTHER, 0, VIEW_CHANNEL),
          MEMBER_OW(R1, 0, VIEW_CHANNEL) /* a member overwrite is not a role's */)},
     DEFAULT},
    /* Timed out at guild level: of DEFAULT | KICK only VIEW_CHANNEL and READ_MESSAGE_HISTORY. */
    {"timeout",
     {BASE, .user_id = USER, .everyone = DEFAULT, IDS(R1), PERMS(KICK_MEMBERS), .timed_out = 1},
     VIEW_CHANNEL | READ_MESSAGE_HISTORY},
    /* Timed out in a channel whose overwrite allows MANAGE_MESSAGES: still only the two. */
    {"timeout_in_channel",
     {BASE, .user_id = USER, .everyone = DEFAULT, .in_channel = 1, .timed_out = 1,
      OWS(MEMBER_OW(USER, MANAGE_MESSAGES, 0))},
     VIEW_CHANNEL | READ_MESSAGE_HISTORY},
    /* Timed out where the channel hides itself: VIEW_CHANNEL is gone before the timeout mask,
       and without it nothing is left. */
    {"timeout_hidden_channel",
     {BASE, .user_id = USER, .everyone = DEFAULT, .in_channel = 1, .timed_out = 1,
      OWS(ROLE_OW(GUILD, 0, VIEW_CHANNEL))},
     0},
    /* Timed out administrators are exempt: ALL. */
    {"timeout_with_admin",
     {BASE, .user_id = USER, .everyone = DEFAULT, IDS(R1), PERMS(ADMINISTRATOR), .in_channel = 1,
      .timed_out = 1},
     ALL},
    /* Timed out owner: exempt too. */
    {"timeout_owner", {BASE, .user_id = OWNER, .timed_out = 1}, ALL},
    /* No VIEW_CHANNEL in the channel: the @everyone overwrite takes it, everything else the
       member holds (even MANAGE_GUILD from a role) is moot: 0. */
    {"no_view_channel",
     {BASE, .user_id = USER, .everyone = DEFAULT, IDS(R1), PERMS(MANAGE_GUILD), .in_channel = 1,
      OWS(ROLE_OW(GUILD, 0, VIEW_CHANNEL))},
     0},
    /* No VIEW_CHANNEL at guild level is no implicit rule: the rest stays. */
    {"no_view_guild_level",
     {BASE, .user_id = USER, .everyone = SEND_MESSAGES | ADD_REACTIONS},
     SEND_MESSAGES | ADD_REACTIONS},
    /* No SEND_MESSAGES anywhere: MENTION_EVERYONE, SEND_TTS_MESSAGES, ATTACH_FILES and
       EMBED_LINKS go; VIEW, READ_MESSAGE_HISTORY, ADD_REACTIONS stay. */
    {"implicit_send_rules",
     {BASE, .user_id = USER,
      .everyone = VIEW_CHANNEL | MENTION_EVERYONE | SEND_TTS_MESSAGES | ATTACH_FILES | EMBED_LINKS |
                  ADD_REACTIONS | READ_MESSAGE_HISTORY,
      .in_channel = 1},
     VIEW_CHANNEL | ADD_REACTIONS | READ_MESSAGE_HISTORY},
    /* With SEND_MESSAGES the same four stay. */
    {"implicit_send_kept",
     {BASE, .user_id = USER,
      .everyone = VIEW_CHANNEL | SEND_MESSAGES | MENTION_EVERYONE | SEND_TTS_MESSAGES |
                  ATTACH_FILES | EMBED_LINKS,
      .in_channel = 1},
     VIEW_CHANNEL | SEND_MESSAGES | MENTION_EVERYONE | SEND_TTS_MESSAGES | ATTACH_FILES |
         EMBED_LINKS},
    /* Guild level ignores the overwrites given: base only (DEFAULT | KICK). */
    {"guild_level_ignores_overwrites",
     {BASE, .user_id = USER, .everyone = DEFAULT, IDS(R1), PERMS(KICK_MEMBERS), .in_channel = 0,
      OWS(ROLE_OW(GUILD, 0, ALL), ROLE_OW(R1, MANAGE_GUILD, 0),
          MEMBER_OW(USER, MANAGE_GUILD, VIEW_CHANNEL))},
     DEFAULT | KICK_MEMBERS},
    /* Bits Discord has not defined (47, 60) that a role carries are kept for an ordinary
       member, next to the defined ones. */
    {"unknown_bits_kept",
     {BASE, .user_id = USER, .everyone = VIEW_CHANNEL, IDS(R1),
      PERMS((UINT64_C(1) << 60) | (UINT64_C(1) << 47) | BYPASS_SLOWMODE)},
     VIEW_CHANNEL | (UINT64_C(1) << 60) | (UINT64_C(1) << 47) | BYPASS_SLOWMODE},
    /* ALL is the defined bits only: an administrator with an unknown bit gets ALL, not more. */
    {"unknown_bits_admin",
     {BASE, .user_id = USER, .everyone = 0, IDS(R1), PERMS(ADMINISTRATOR | (UINT64_C(1) << 60))},
     ALL},
    /* ADMINISTRATOR allowed by a member overwrite grants nothing else (only guild level
       decides ADMINISTRATOR, as compute_overwrites tests base_permissions): DEFAULT plus the
       bit itself. */
    {"admin_bit_in_overwrite_is_not_admin",
     {BASE, .user_id = USER, .everyone = DEFAULT, .in_channel = 1,
      OWS(MEMBER_OW(USER, ADMINISTRATOR, 0))},
     DEFAULT | ADMINISTRATOR},
    /* @everyone listed among the roles changes nothing: its overwrite (deny ADD_REACTIONS,
       allow CONNECT) is applied once, in its own step, and the member overwrite still wins. */
    {"everyone_among_roles",
     {BASE, .user_id = USER, .everyone = DEFAULT, IDS(GUILD, R1), PERMS(DEFAULT, 0),
      .in_channel = 1, OWS(ROLE_OW(GUILD, CONNECT, ADD_REACTIONS), MEMBER_OW(USER, 0, CONNECT))},
     DEFAULT & ~ADD_REACTIONS},
    /* A channel with no overwrites at all: the base, then the implicit rules (DEFAULT has both
       VIEW and SEND, so nothing drops). */
    {"no_overwrites", {BASE, .user_id = USER, .everyone = DEFAULT, .in_channel = 1}, DEFAULT},
    /* CREATE_INSTANT_INVITE on a role, nothing on @everyone, in a channel: no VIEW_CHANNEL,
       so 0. */
    {"role_without_view_in_channel",
     {BASE, .user_id = USER, .everyone = 0, IDS(R1), PERMS(CREATE_INSTANT_INVITE), .in_channel = 1},
     0},
};

TEST(permission_table)
{
    int bad = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t got = ca__permissions(&cases[i].in);
        if (got != cases[i].want) {
            fprintf(stderr, "  case %s: got %#llx, want %#llx\n", cases[i].name,
                    (unsigned long long)got, (unsigned long long)cases[i].want);
            bad++;
        }
    }
    ASSERT_EQ(bad, 0);
    ASSERT(sizeof(cases) / sizeof(cases[0]) >= 15);
}

static const char *names_of(uint64_t bits, struct sh_buf *b)
{
    sh_buf_reset(b);
    if (ca__permission_names(bits, b) < 0 || sh_buf_append(b, "", 1) < 0)
        return NULL;
    return b->data;
}

TEST(names_in_bit_order)
{
    struct sh_buf b;
    sh_buf_init(&b, 1 << 16);
    ASSERT_STR_EQ(names_of(0, &b), "[]");
    ASSERT_STR_EQ(names_of(SEND_MESSAGES | VIEW_CHANNEL, &b),
                  "[\"VIEW_CHANNEL\",\"SEND_MESSAGES\"]");
    ASSERT_STR_EQ(names_of(CREATE_INSTANT_INVITE | (UINT64_C(1) << 47) | (UINT64_C(1) << 63), &b),
                  "[\"CREATE_INSTANT_INVITE\",\"BIT_47\",\"BIT_63\"]");
    ASSERT_STR_EQ(names_of(BYPASS_SLOWMODE | (UINT64_C(1) << 53), &b),
                  "[\"BYPASS_SLOWMODE\",\"BIT_53\"]");
    /* ALL: 52 names, the first and the last of Discord's table, none unnamed. */
    const char *all = names_of(ALL, &b);
    ASSERT(all != NULL);
    int commas = 0;
    for (const char *p = all; *p; p++)
        commas += *p == ',';
    ASSERT_EQ(commas, 51);
    ASSERT(!strstr(all, "BIT_"));
    ASSERT(!strncmp(all, "[\"CREATE_INSTANT_INVITE\",\"KICK_MEMBERS\",", 40));
    ASSERT_CONTAINS(all, ",\"SEND_VOICE_MESSAGES\",\"SET_VOICE_CHANNEL_STATUS\",");
    ASSERT_CONTAINS(all, ",\"PIN_MESSAGES\",\"BYPASS_SLOWMODE\"]");
    sh_buf_free(&b);
}

TEST(names_append_and_fail_cleanly)
{
    struct sh_buf b;
    sh_buf_init(&b, 24);
    ASSERT_EQ(sh_buf_append_str(&b, "x:"), 0);
    ASSERT_EQ(ca__permission_names(ADMINISTRATOR, &b), 0);
    ASSERT_SPAN_EQ(b.data, b.len, "x:[\"ADMINISTRATOR\"]");
    /* Past the buffer's cap: an error, and the buffer as it was. */
    ASSERT_EQ(ca__permission_names(VIEW_CHANNEL | SEND_MESSAGES, &b), SH_ETOOBIG);
    ASSERT_SPAN_EQ(b.data, b.len, "x:[\"ADMINISTRATOR\"]");
    sh_buf_free(&b);
}

TEST_MAIN(RUN(permission_table); RUN(names_in_bit_order); RUN(names_append_and_fail_cleanly);)
