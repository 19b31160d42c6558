/*
 * lib/discord.h: the Discord Gateway's constants, defined once for every room: opcodes, close
 * codes, the cap on one payload a client sends, and the intent bits with their names. Owns no
 * state and no behaviour; the rules that use these live in gateway/ (see the Gateway docs).
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

#endif
