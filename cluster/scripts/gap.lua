-- gap: a session that could not be resumed (rule 4). Guarantees: one entry per lost session in the
-- `gaps` stream, which keeps about the last 10,000.
-- KEYS[1] gaps; ARGV[1] shard, ARGV[2] session_id, ARGV[3] seq, ARGV[4] reason, ARGV[5] node.
-- Returns the entry's id.
local t = redis.call('TIME')
local at = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', '10000', '*', 'shard', ARGV[1], 'session_id',
                  ARGV[2], 'seq', ARGV[3], 'reason', ARGV[4], 'node', ARGV[5], 'at', at)
