/*
 * cluster/redis.h: the coordination thread's one Redis connection (hiredis 0.14, synchronous):
 * the `cluster.redis` URL, connect and command timeouts so a dead Redis never blocks longer than
 * about the timeout, AUTH and SELECT on every (re)connect, and the Lua scripts of
 * cluster/scripts/ (embedded in the binary, SCRIPT LOADed once per connection, run by EVALSHA and
 * loaded again after NOSCRIPT). Internal to cluster/; used on the coordination thread only (and
 * by tests). Key names: every key is "shardhook:{<app>}:<name>" (cl__app_id), one hash tag.
 *
 * The scripts' contracts (KEYS and ARGV are strings; "P" below is "shardhook:{app}:"):
 *
 * register   KEYS P node:<name>, P nodes; ARGV epoch, lease_ms, name, info_json.
 *            SET node epoch PX lease (unconditionally), HSET nodes name info. Returns 1.
 * renew      KEYS P node:<name>, P nodes; ARGV epoch, lease_ms, name, info_json.
 *            GET node == epoch: SET node epoch PX lease, HSET nodes name info, return 1;
 *            else 0 (the lease was lost or another start replaced it).
 * claim      KEYS P shard:<id>, P node:<me>; ARGV me, my_epoch, node key prefix (P "node:"),
 *            force ("0"/"1"). {-2} when GET node:<me> ~= my_epoch. Owner == me with owner_epoch ==
 *            my_epoch: {fence, session_id, resume_url, seq, ckpt} unchanged. Another owner whose
 *            node key still holds owner_epoch and force "0": {-1, owner}. Otherwise (no owner,
 *            owner dead, forced, or me with an older epoch): fence = max(fence + 1, TIME µs),
 *            HSET owner, owner_epoch, fence, at; {fence, session_id, resume_url, seq, ckpt}.
 *            fence is an integer reply; the other four are strings ("" when absent).
 * checkpoint KEYS P shard:<id>; ARGV fence, session_id, resume_url, seq, ckpt.
 *            -2 when the hash has no owner/fence; -1 when its fence ~= ARGV fence (fenced out);
 *            else HSET the four fields and at, return 0.
 * handoff    KEYS P shard:<id>, P node:<target>, P cmd:<target>; ARGV fence, target,
 *            session_id, resume_url, seq, ckpt. -1 when fence is stale (or no owner); -2 when
 *            node:<target> holds no epoch. Else fence' = max(fence + 1, TIME µs), HSET owner
 *            target, owner_epoch <its epoch>, fence', the checkpoint fields, at;
 *            XADD cmd:<target> MAXLEN ~ 1000 * type hold shard <id> fence <fence'>; returns fence'.
 * identify   KEYS P budget, P idslot:<bucket>; ARGV reserve, slot_px, holder ("<node>:<shard>").
 *            Budget known and remaining <= reserve: {-2, remaining, reset_at}. SET idslot holder
 *            NX PX slot_px; busy: {-1, PTTL}. Else HINCRBY remaining -1 when known;
 *            {0, remaining after, or -1 when unknown}.
 * budget     KEYS P budget; ARGV total, remaining, reset_at_wall_ms, now_wall_ms. Hash missing or
 *            reset_at <= now: HSET all three, return 1; else remaining = min(stored, ARGV), 0.
 * gap        KEYS P gaps; ARGV shard, session_id, seq, reason, node.
 *            XADD gaps MAXLEN ~ 10000 * shard .. session_id .. seq .. reason .. node .. ; returns
 *            the entry id.
 * cache      KEYS P shard:<id>, P cache:<id>; ARGV fence, snapshot bytes. -2 when the hash has no
 *            owner/fence; -1 when its fence ~= ARGV fence; else SET cache:<id>, return 0.
 *
 * A fence is an integer reply up to 2^63: read it with reply->integer (claim: element[0]).
 */
#ifndef SHARDHOOK_CL_REDIS_H
#define SHARDHOOK_CL_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

/* Every script: X(NAME, file stem in cluster/scripts/). */
#define CL_SCRIPTS(X)                                                                              \
    X(REGISTER, register)                                                                          \
    X(RENEW, renew)                                                                                \
    X(CLAIM, claim)                                                                                \
    X(CHECKPOINT, checkpoint)                                                                      \
    X(HANDOFF, handoff)                                                                            \
    X(IDENTIFY, identify)                                                                          \
    X(BUDGET, budget)                                                                              \
    X(GAP, gap)                                                                                    \
    X(CACHE, cache)

enum cl__script {
#define CL_SCRIPT_ENUM_(name, file) CL_SCRIPT_##name,
    CL_SCRIPTS(CL_SCRIPT_ENUM_)
#undef CL_SCRIPT_ENUM_
        CL_SCRIPT_COUNT
};

/* The name of script s ("claim"); "?" out of range. */
const char *cl__script_name(enum cl__script s);

/* One connection; reconnects on demand (cl__redis_connect). */
struct cl__redis;

/*
 * Parse url (config's cluster.redis: "redis://[:password@]host:port[/db]" or "unix:/path") and
 * make a connection object, not connected yet. timeout_ms bounds the connect and every command
 * (1000 is a good value). SH_ECONFIG with one line in err (never the password), SH_ENOMEM.
 */
int cl__redis_new(const char *url, int timeout_ms, struct cl__redis **out, char *err,
                  size_t errlen);

/*
 * (Re)connect: TCP or unix socket, AUTH, SELECT, SCRIPT LOAD of every script. 0, SH_ENET (cannot
 * reach, timed out, or a script failed to load) or SH_EAUTH (AUTH refused). Drops a connection
 * that is up first.
 */
int cl__redis_connect(struct cl__redis *r);
/* 1 while a connection is up (it may still turn out dead on the next command). */
int cl__redis_connected(const struct cl__redis *r);

/*
 * A command (hiredis format string). NULL on a connection error: the connection is dropped and
 * cl__redis_connect must be called again. A Redis error answer is a REDIS_REPLY_ERROR reply,
 * not NULL. The caller frees a reply with freeReplyObject.
 */
redisReply *cl__redis_cmd(struct cl__redis *r, const char *fmt, ...);
redisReply *cl__redis_argv(struct cl__redis *r, int argc, const char **argv, const size_t *lens);

/*
 * Pipelining: append N commands (0, or SH_ENET when not connected / SH_ENOMEM), then read N
 * replies with cl__redis_read (NULL on a connection error, which drops the connection).
 */
int cl__redis_append(struct cl__redis *r, const char *fmt, ...);
int cl__redis_append_argv(struct cl__redis *r, int argc, const char **argv, const size_t *lens);
redisReply *cl__redis_read(struct cl__redis *r);

/*
 * EVALSHA of script s with nkeys keys followed by the arguments: argv[0..nkeys) are the keys,
 * argv[nkeys..argc) the ARGV (lens NULL: strlen of each). On NOSCRIPT (Redis restarted or
 * flushed its scripts) loads every script again and retries once. NULL on a connection error.
 */
redisReply *cl__redis_script(struct cl__redis *r, enum cl__script s, int nkeys, int argc,
                             const char **argv, const size_t *lens);

/* The SHA1 of script s as loaded (for an EVALSHA in a pipeline; NOSCRIPT then means: call
   cl__redis_script, which loads them again). */
const char *cl__redis_script_sha(const struct cl__redis *r, enum cl__script s);

/* Round-trip time of the last command (or pipeline read), ms; -1 before any. */
int cl__redis_rtt_ms(const struct cl__redis *r);
/* A short description of the last error ("connect: Connection refused"), "" none; no secrets. */
const char *cl__redis_error(const struct cl__redis *r);
/* Where it connects, without the password ("10.0.0.5:6379/0", "unix:/run/redis.sock"). */
const char *cl__redis_where(const struct cl__redis *r);

/* Close and free; NULL is fine. */
void cl__redis_free(struct cl__redis *r);

/*
 * The application id for key names into out (cap >= 32): the token's first dot-separated part
 * base64-decoded when that is all digits, else the first 16 hex digits of SHA-256 of the token.
 */
void cl__app_id(const char *token, char *out, size_t cap);

/* "shardhook:{<app id>}:" for token into out (cap >= 64). */
void cl__key_prefix(const char *token, char *out, size_t cap);

#endif
