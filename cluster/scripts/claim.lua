-- claim: take ownership of a shard (rule 1). Guarantees: only a node whose own lease holds its
-- epoch can claim; a shard whose owner's lease still holds owner_epoch is never taken without
-- force; every change of owner raises the fence to max(fence + 1, Redis TIME in microseconds), so a
-- fence never repeats and never goes back, even after Redis lost the hash. Claiming a shard this
-- very epoch already owns changes nothing. A node restarted under its name (older owner_epoch)
-- takes its shards back at once.
-- KEYS[1] shard:<id>, KEYS[2] node:<me>; ARGV[1] me, ARGV[2] my_epoch, ARGV[3] node key prefix,
-- ARGV[4] force "0"/"1".
-- Returns {-2} (my lease is gone), {-1, owner} (a live owner holds it), or
-- {fence, session_id, resume_url, seq, ckpt} ("" for what the hash lacks).
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
    return {-2}
end
local h = redis.call('HMGET', KEYS[1], 'owner', 'owner_epoch', 'fence', 'session_id',
                     'resume_url', 'seq', 'ckpt')
local owner, owner_epoch, fence = h[1], h[2], h[3]
local function s(v)
    if v then
        return v
    end
    return ''
end
if owner == ARGV[1] and owner_epoch == ARGV[2] and fence then
    return {tonumber(fence), s(h[4]), s(h[5]), s(h[6]), s(h[7])}
end
if owner and owner ~= ARGV[1] and ARGV[4] == '0' then
    local live = redis.call('GET', ARGV[3] .. owner)
    if live and live == owner_epoch then
        return {-1, owner}
    end
end
local t = redis.call('TIME')
local next_fence = tonumber(t[1]) * 1000000 + tonumber(t[2])
local old = tonumber(fence or '0') or 0
if old + 1 > next_fence then
    next_fence = old + 1
end
local at = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'owner_epoch', ARGV[2], 'fence',
           string.format('%.0f', next_fence), 'at', at)
return {next_fence, s(h[4]), s(h[5]), s(h[6]), s(h[7])}
