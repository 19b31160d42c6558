-- checkpoint: a held shard's resume point (rule 1). Guarantees: written only by the holder of the
-- current fence; a node that lost the shard (its fence is stale) is refused and writes nothing, so
-- a checkpoint in Redis never goes back to an older owner's resume point.
-- KEYS[1] shard:<id>; ARGV[1] fence, ARGV[2] session_id, ARGV[3] resume_url, ARGV[4] seq,
-- ARGV[5] ckpt (the bridge's checkpoint line).
-- Returns 0 written, -1 fenced out, -2 the shard has no owner (Redis lost it: claim again).
local h = redis.call('HMGET', KEYS[1], 'owner', 'fence')
if not h[1] or not h[2] then
    return -2
end
if h[2] ~= ARGV[1] then
    return -1
end
local t = redis.call('TIME')
local at = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', KEYS[1], 'session_id', ARGV[2], 'resume_url', ARGV[3], 'seq', ARGV[4],
           'ckpt', ARGV[5], 'at', at)
return 0
