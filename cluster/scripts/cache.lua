-- cache: a held shard's entity cache snapshot (docs/cache.md). Guarantees: written only by the
-- holder of the current fence, so a node that lost the shard never overwrites the snapshot of
-- its new owner with an older one.
-- KEYS[1] shard:<id>, KEYS[2] cache:<id>; ARGV[1] fence, ARGV[2] the snapshot (zstd bytes).
-- Returns 0 written, -1 fenced out, -2 the shard has no owner.
local h = redis.call('HMGET', KEYS[1], 'owner', 'fence')
if not h[1] or not h[2] then
    return -2
end
if h[2] ~= ARGV[1] then
    return -1
end
redis.call('SET', KEYS[2], ARGV[2])
return 0
