-- renew: the node lease, every lease/5. Guarantees: a lease is extended only while node:<name> still
-- holds this process's epoch; once it expired or another start of the same name registered, the
-- answer is 0 and nothing is written (the caller has lost its shards' ownership and must not act
-- as their owner).
-- KEYS[1] node:<name>, KEYS[2] nodes; ARGV[1] epoch, ARGV[2] lease_ms, ARGV[3] name,
-- ARGV[4] info JSON. Returns 1 renewed, 0 lost.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
return 1
