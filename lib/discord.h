/*
 * lib/discord.h: the Discord Gateway's constants, defined once for every room: opcodes, close
 * codes, the cap on one payload a client sends, the intent bits and the permission bits with
 * their names. Owns no state and no behaviour; the rules that use these live in gateway/ (see
 * the Gateway docs) and cache/perms.c.
 */
#ifndef SHARDHOOK_LIB_DISCORD_H
#define SHARDHOOK_LIB_DISCORD_H

/* Gateway opcodes. */
enum sh_gw_op {
    SH_OP_DISPATCH = 0,
    SH_OP_HEARTBEAT = 1,
    SH_OP_IDENTIFY = 2,
    SH_OP_PRESENCE_UPDATE = 3,
    SH_OP_VOICE_STATE_UPDATE = 4,
    SH_OP_RESUME = 6,
    SH_OP_RECONNECT = 7,
    SH_OP_REQUEST_GUILD_MEMBERS = 8,
    SH_OP_INVALID_SESSION = 9,
    SH_OP_HELLO = 10,
    SH_OP_HEARTBEAT_ACK = 11,
    SH_OP_REQUEST_SOUNDBOARD_SOUNDS = 31,
    SH_OP_REQUEST_CHANNEL_INFO = 43,
};

/* Websocket close codes: the one shardhook sends, and Discord's. */
enum sh_gw_close {
    SH_CLOSE_NORMAL = 1000,     /* ends the session: shardhook never sends it */
    SH_CLOSE_GOING_AWAY = 1001, /* likewise */
    SH_CLOSE_RESUMABLE = 4000,  /* what shardhook sends: the session stays resumable */
    SH_CLOSE_UNKNOWN_ERROR = 4000,
    SH_CLOSE_UNKNOWN_OPCODE = 4001,
    SH_CLOSE_DECODE_ERROR = 4002,
    SH_CLOSE_NOT_AUTHENTICATED = 4003,
    SH_CLOSE_AUTHENTICATION_FAILED = 4004,
    SH_CLOSE_ALREADY_AUTHENTICATED = 4005,
    SH_CLOSE_INVALID_SEQ = 4007,
    SH_CLOSE_RATE_LIMITED = 4008,
    SH_CLOSE_SESSION_TIMED_OUT = 4009,
    SH_CLOSE_INVALID_SHARD = 4010,
    SH_CLOSE_SHARDING_REQUIRED = 4011,
    SH_CLOSE_INVALID_API_VERSION = 4012,
    SH_CLOSE_INVALID_INTENTS = 4013,
    SH_CLOSE_DISALLOWED_INTENTS = 4014,
};

/* Discord closes a connection that sends a payload over this many bytes (4002). */
#define SH_GW_MAX_SEND_BYTES 4096

/* Intents: X(name, bit, privileged). */
#define SH_INTENTS(X)                                                                              \
    X(GUILDS, 0, 0)                                                                                \
    X(GUILD_MEMBERS, 1, 1)                                                                         \
    X(GUILD_MODERATION, 2, 0)                                                                      \
    X(GUILD_EXPRESSIONS, 3, 0)                                                                     \
    X(GUILD_INTEGRATIONS, 4, 0)                                                                    \
    X(GUILD_WEBHOOKS, 5, 0)                                                                        \
    X(GUILD_INVITES, 6, 0)                                                                         \
    X(GUILD_VOICE_STATES, 7, 0)                                                                    \
    X(GUILD_PRESENCES, 8, 1)                                                                       \
    X(GUILD_MESSAGES, 9, 0)                                                                        \
    X(GUILD_MESSAGE_REACTIONS, 10, 0)                                                              \
    X(GUILD_MESSAGE_TYPING, 11, 0)                                                                 \
    X(DIRECT_MESSAGES, 12, 0)                                                                      \
    X(DIRECT_MESSAGE_REACTIONS, 13, 0)                                                             \
    X(DIRECT_MESSAGE_TYPING, 14, 0)                                                                \
    X(MESSAGE_CONTENT, 15, 1)                                                                      \
    X(GUILD_SCHEDULED_EVENTS, 16, 0)                                                               \
    X(AUTO_MODERATION_CONFIGURATION, 20, 0)                                                        \
    X(AUTO_MODERATION_EXECUTION, 21, 0)                                                            \
    X(GUILD_MESSAGE_POLLS, 24, 0)                                                                  \
    X(DIRECT_MESSAGE_POLLS, 25, 0)

#define SH_INTENT_ENUM_(name, bit, priv) SH_INTENT_##name = bit,
enum sh_intent { SH_INTENTS(SH_INTENT_ENUM_) };
#undef SH_INTENT_ENUM_

/* Permission bits as Discord's permissions topic names them: X(name, bit). Bit 47 is not
   defined (Discord retired it); a bit outside this list is kept but has no name. */
#define SH_PERMISSIONS(X)                                                                          \
    X(CREATE_INSTANT_INVITE, 0)                                                                    \
    X(KICK_MEMBERS, 1)                                                                             \
    X(BAN_MEMBERS, 2)                                                                              \
    X(ADMINISTRATOR, 3)                                                                            \
    X(MANAGE_CHANNELS, 4)                                                                          \
    X(MANAGE_GUILD, 5)                                                                             \
    X(ADD_REACTIONS, 6)                                                                            \
    X(VIEW_AUDIT_LOG, 7)                                                                           \
    X(PRIORITY_SPEAKER, 8)                                                                         \
    X(STREAM, 9)                                                                                   \
    X(VIEW_CHANNEL, 10)                                                                            \
    X(SEND_MESSAGES, 11)                                                                           \
    X(SEND_TTS_MESSAGES, 12)                                                                       \
    X(MANAGE_MESSAGES, 13)                                                                         \
    X(EMBED_LINKS, 14)                                                                             \
    X(ATTACH_FILES, 15)                                                                            \
    X(READ_MESSAGE_HISTORY, 16)                                                                    \
    X(MENTION_EVERYONE, 17)                                                                        \
    X(USE_EXTERNAL_EMOJIS, 18)                                                                     \
    X(VIEW_GUILD_INSIGHTS, 19)                                                                     \
    X(CONNECT, 20)                                                                                 \
    X(SPEAK, 21)                                                                                   \
    X(MUTE_MEMBERS, 22)                                                                            \
    X(DEAFEN_MEMBERS, 23)                                                                          \
    X(MOVE_MEMBERS, 24)                                                                            \
    X(USE_VAD, 25)                                                                                 \
    X(CHANGE_NICKNAME, 26)                                                                         \
    X(MANAGE_NICKNAMES, 27)                                                                        \
    X(MANAGE_ROLES, 28)                                                                            \
    X(MANAGE_WEBHOOKS, 29)                                                                         \
    X(MANAGE_GUILD_EXPRESSIONS, 30)                                                                \
    X(USE_APPLICATION_COMMANDS, 31)                                                                \
    X(REQUEST_TO_SPEAK, 32)                                                                        \
    X(MANAGE_EVENTS, 33)                                                                           \
    X(MANAGE_THREADS, 34)                                                                          \
    X(CREATE_PUBLIC_THREADS, 35)                                                                   \
    X(CREATE_PRIVATE_THREADS, 36)                                                                  \
    X(USE_EXTERNAL_STICKERS, 37)                                                                   \
    X(SEND_MESSAGES_IN_THREADS, 38)                                                                \
    X(USE_EMBEDDED_ACTIVITIES, 39)                                                                 \
    X(MODERATE_MEMBERS, 40)                                                                        \
    X(VIEW_CREATOR_MONETIZATION_ANALYTICS, 41)                                                     \
    X(USE_SOUNDBOARD, 42)                                                                          \
    X(CREATE_GUILD_EXPRESSIONS, 43)                                                                \
    X(CREATE_EVENTS, 44)                                                                           \
    X(USE_EXTERNAL_SOUNDS, 45)                                                                     \
    X(SEND_VOICE_MESSAGES, 46)                                                                     \
    X(SET_VOICE_CHANNEL_STATUS, 48)                                                                \
    X(SEND_POLLS, 49)                                                                              \
    X(USE_EXTERNAL_APPS, 50)                                                                       \
    X(PIN_MESSAGES, 51)                                                                            \
    X(BYPASS_SLOWMODE, 52)

#define SH_PERM_ENUM_(name, bit) SH_PERM_##name = bit,
enum sh_permission { SH_PERMISSIONS(SH_PERM_ENUM_) };
#undef SH_PERM_ENUM_

#endif
