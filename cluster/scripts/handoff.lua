-- handoff: pass a shard to a live node (rule 5). Guarantees: only the holder of the current fence
-- can hand off; the final checkpoint and the new owner are written together, under a fence higher
-- than any before (max(fence + 1, Redis TIME in microseconds)), so the old owner's later writes
-- are refused; the target gets a `hold` command in its stream, and only while its lease is live.
-- KEYS[1] shard:<id>, KEYS[2] node:<target>, KEYS[3] cmd:<target>; ARGV[1] fence, ARGV[2] target,
-- ARGV[3] session_id, ARGV[4] resume_url, ARGV[5] seq, ARGV[6] ckpt.
-- Returns the new fence, -1 stale fence (or no owner), -2 the target has no live lease.
local h = redis.call('HMGET', KEYS[1], 'owner', 'fence')
if not h[1] or not h[2] or h[2] ~= ARGV[1] then
    return -1
end
local target_epoch = redis.call('GET', KEYS[2])
if not target_epoch then
    return -2
end
local t = redis.call('TIME')
local next_fence = tonumber(t[1]) * 1000000 + tonumber(t[2])
local old = tonumber(h[2]) or 0
if old + 1 > next_fence then
    next_fence = old + 1
end
local fence = string.format('%.0f', next_fence)
local at = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'owner_epoch', target_epoch, 'fence', fence,
           'session_id', ARGV[3], 'resume_url', ARGV[4], 'seq', ARGV[5], 'ckpt', ARGV[6], 'at', at)
local shard = string.match(KEYS[1], '(%d+)$') or ''
redis.call('XADD', KEYS[3], 'MAXLEN', '~', '1000', '*', 'type', 'hold', 'shard', shard,
           'fence', fence)
return next_fence
