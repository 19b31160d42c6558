-- register: a node's start. Guarantees: node:<name> holds this start's epoch for lease_ms whatever it
-- held before (a node restarted under its own name replaces its older self at once, and its shards'
-- owner_epoch no longer matches, so claim gives them back to it), and `nodes` describes the node.
-- KEYS[1] node:<name>, KEYS[2] nodes; ARGV[1] epoch, ARGV[2] lease_ms, ARGV[3] name,
-- ARGV[4] info JSON. Returns 1.
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
return 1
