-- budget: what a node read from /gateway/bot (rule 2). Guarantees: a fresh period (no budget yet,
-- or its reset time passed) is written whole; within a period the count only goes down, so a node
-- with an older reading never gives back sessions that others spent.
-- KEYS[1] budget; ARGV[1] total, ARGV[2] remaining, ARGV[3] reset_at (wall ms), ARGV[4] now
-- (wall ms). Returns 1 written whole, 0 merged.
local b = redis.call('HMGET', KEYS[1], 'remaining', 'reset_at')
local reset_at = tonumber(b[2])
if not reset_at or reset_at <= tonumber(ARGV[4]) or not b[1] then
    redis.call('HSET', KEYS[1], 'total', ARGV[1], 'remaining', ARGV[2], 'reset_at', ARGV[3])
    return 1
end
if tonumber(ARGV[2]) < tonumber(b[1]) then
    redis.call('HSET', KEYS[1], 'remaining', ARGV[2])
end
return 0
