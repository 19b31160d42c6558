-- identify: permission for one IDENTIFY (rule 2). Guarantees: at most one holder per bucket per
-- window (SET NX PX), across every node; no IDENTIFY once the cluster-wide budget is at its
-- reserve (so a full re-identify of every shard stays possible); each grant spends one session of
-- the budget, in the same step as the slot, so nodes cannot overspend together.
-- KEYS[1] budget, KEYS[2] idslot:<bucket>; ARGV[1] reserve, ARGV[2] slot_px, ARGV[3] holder.
-- Returns {-2, remaining, reset_at} at the reserve, {-1, pttl} slot busy, {0, remaining after}
-- granted (-1 when the budget is unknown).
local b = redis.call('HMGET', KEYS[1], 'remaining', 'reset_at')
local remaining = tonumber(b[1])
if remaining and remaining <= tonumber(ARGV[1]) then
    return {-2, remaining, tonumber(b[2] or '0') or 0}
end
if not redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[2]) then
    return {-1, redis.call('PTTL', KEYS[2])}
end
if remaining then
    return {0, redis.call('HINCRBY', KEYS[1], 'remaining', -1)}
end
return {0, -1}
