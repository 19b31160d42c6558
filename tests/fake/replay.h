/*
 * tests/fake/replay.h: the fake Discord's replay mode (replay.c), the benchmark source.
 *
 * At start the fake pre-builds, per shard, every message a connection receives after IDENTIFY
 * (READY, the guilds' GUILD_CREATEs, then N events of a documented mix) as finished websocket
 * frames, already compressed for zlib-stream, zstd-stream or none. Streaming them is one raw
 * write of whole frames per writeable callback: no compression, allocation or JSON per event.
 * gateway.c calls in at the few points where a session starts, holds, writes and ends;
 * fake_discord.c parses the options and routes the control calls. Test code only.
 */
#ifndef SHARDHOOK_FAKE_REPLAY_H
#define SHARDHOOK_FAKE_REPLAY_H

#include <stdio.h>

#include "lib/buf.h"

struct fk_conn;
struct fk_msg;
struct fk_session;

/* getopt_long codes of the replay options, clear of the fake's own option letters */
#define FK_REPLAY_OPT_BASE 0x1000
#define FK_REPLAY_OPT_END (FK_REPLAY_OPT_BASE + 12)
/* clang-format off */
#define FK_REPLAY_LONG_OPTIONS                                  \
    {"replay-events", 1, 0, FK_REPLAY_OPT_BASE + 0},            \
    {"replay-mix", 1, 0, FK_REPLAY_OPT_BASE + 1},               \
    {"replay-seed", 1, 0, FK_REPLAY_OPT_BASE + 2},              \
    {"replay-rate", 1, 0, FK_REPLAY_OPT_BASE + 3},              \
    {"replay-start", 1, 0, FK_REPLAY_OPT_BASE + 4},             \
    {"replay-times", 1, 0, FK_REPLAY_OPT_BASE + 5},             \
    {"replay-dump", 1, 0, FK_REPLAY_OPT_BASE + 6},              \
    {"replay-dump-only", 1, 0, FK_REPLAY_OPT_BASE + 7},         \
    {"replay-compress", 1, 0, FK_REPLAY_OPT_BASE + 8},          \
    {"replay-segment", 1, 0, FK_REPLAY_OPT_BASE + 9},           \
    {"replay-zlib-level", 1, 0, FK_REPLAY_OPT_BASE + 10},       \
    {"replay-zstd-level", 1, 0, FK_REPLAY_OPT_BASE + 11}
/* clang-format on */

/* One replay option (code from FK_REPLAY_LONG_OPTIONS); -1 after printing what is wrong. */
int fk_replay_option(int code, const char *value);
void fk_replay_usage(FILE *f);
/*
 * Once the listening port is known: check the options, pre-build the streams, write the dump.
 * Returns 0 to serve, 1 when the fake should exit now (--replay-dump-only), -1 on failure.
 */
int fk_replay_init(void);
/* At exit, before the lws context goes: write a pending --replay-times file, free the streams. */
void fk_replay_shutdown(void);

/* The zstd end directive for live messages: every message its own frame in replay mode. */
int fk_replay_zstd_directive(void);
/* After IDENTIFY: 1 when the replay took the session over (it sends READY), else 0. */
int fk_replay_identify(struct fk_conn *c, struct fk_session *s);
/* A live message while c replays: 1 when the replay keeps it (taking a reference) for later. */
int fk_replay_hold(struct fk_conn *c, struct fk_msg *plain);
/* c is writeable with its queue empty: 1 when c has no replay, else what the callback returns. */
int fk_replay_writeable(struct fk_conn *c);
void fk_replay_closed(struct fk_conn *c);
/* The loop's LWS_CALLBACK_EVENT_WAIT_CANCELLED: paced shards whose next event is due go on. */
void fk_replay_wake(void);

/* POST /_fake/replay/start: start the waiting shards (shard < 0: all); *started says how many. */
int fk_replay_start(long shard, long *started);
/* GET /_fake/replay */
int fk_replay_json(struct sh_buf *out);

#endif
