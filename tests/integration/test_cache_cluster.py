"""The entity cache's reads in cluster mode (docs/api.md, "Entity cache"): every node answers. Two
nodes, four shards (two guilds each from the fake's GUILD_CREATEs), a real redis-server: a guild
held by the other node reads the same through either node (ETag included, and If-None-Match
answers 304 on both), a channel this node does not hold is found on the other, and the guild list
merges both nodes' guilds by id."""
import cluster_helpers as ch
import harness

TOTAL = 4
SNOW_T0 = 300000000000  # tests/fake/events.c
CACHE_INTENTS = ["GUILDS", "GUILD_MESSAGES", "GUILD_MEMBERS"]


def guild_id(shard, index=0):
    """The fake's guild snowflakes: (id >> 22) % TOTAL == shard."""
    ts = SNOW_T0 - SNOW_T0 % TOTAL + index * TOTAL + shard
    return str((ts << 22) | (index & 0xfff))


def channel_id(gid, k=0):
    return str(int(gid) + (k + 1) * 4096)


def start():
    redis = ch.RedisServer()
    fake = harness.FakeDiscord(shards=TOTAL, max_concurrency=1,
                               identify_interval_ms=ch.IDENTIFY_INTERVAL_MS)
    rx = ch.ClusterReceiver()
    cl = ch.Cluster(2, fake, rx, redis, total=TOTAL, intents=CACHE_INTENTS, cache={})
    held = cl.wait_held(timeout=40)
    return cl, held


def owner_and_other(cl, held, shard):
    own = next(n for n in cl.nodes if shard in held[n.name])
    return own, next(n for n in cl.nodes if n is not own)


def read(node, path, **kw):
    """(status, headers, body) of a GET, waiting until it answers 200 (the cache thread applies
    GUILD_CREATE shortly after the gateway delivered it)."""
    def probe():
        code, headers, body = node.api("GET", path, **kw)
        return (code, headers, body) if code == 200 else None
    return harness.wait_for(probe, 15, 0.1, "GET %s on %s" % (path, node.name))


def header(headers, name):
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def test_a_guild_held_by_the_other_node_reads_the_same_through_either_node():
    cl, held = start()
    own, other = owner_and_other(cl, held, 1)
    g = guild_id(1)
    code, h_own, body_own = read(own, "/v1/guilds/%s" % g)
    assert code == 200, body_own
    assert body_own["id"] == g and body_own["name"] == "Fake Guild 1-0", body_own
    assert [r["name"] for r in body_own["roles"]] == ["@everyone"]
    code, h_other, body_other = read(other, "/v1/guilds/%s" % g)
    assert code == 200 and body_other == body_own, body_other
    tag = header(h_own, "ETag")
    assert tag and len(tag) == 18 and header(h_other, "ETag") == tag
    for node in (own, other):
        code, _, body = node.api("GET", "/v1/guilds/%s" % g, headers={"If-None-Match": tag})
        assert code == 304, (node.name, code, body)
    # the channels, through the forwarded path, in id order
    code, _, chans = read(other, "/v1/guilds/%s/channels" % g)
    assert code == 200 and [c["id"] for c in chans] == [channel_id(g, 0), channel_id(g, 1)], chans
    assert all(c["guild_id"] == g for c in chans)
    # a member list's query travels with it: a bad one is refused, by the owner or here alike
    code, _, body = other.api("GET", "/v1/guilds/%s/members?limit=0" % g)
    assert code == 400 and body["error"]["code"] == "invalid_query", body
    # a guild nobody holds
    missing = str(int(guild_id(1, 7)))
    code, _, body = other.api("GET", "/v1/guilds/%s" % missing)
    assert code == 404 and body["error"]["code"] == "unknown_guild", body


def test_channels_and_the_guild_list_come_from_every_node():
    cl, held = start()
    own, other = owner_and_other(cl, held, 2)
    g = guild_id(2, 1)
    read(own, "/v1/guilds/%s" % g)  # loaded on its owner
    code, _, chan = read(other, "/v1/channels/%s" % channel_id(g, 1))
    assert code == 200 and chan["id"] == channel_id(g, 1) and chan["guild_id"] == g, chan
    assert chan["name"] == "voice"
    code, _, body = other.api("GET", "/v1/channels/%s" % channel_id(g, 9))
    assert code == 404 and body["error"]["code"] == "unknown_channel", body
    # every shard's guilds, from either node, merged by id; limit applies after merging
    want = sorted((guild_id(s, i) for s in range(TOTAL) for i in range(2)), key=int)

    def full():
        code, _, body = cl.nodes[0].api("GET", "/v1/cache/guilds?limit=1000")
        ids = [x["id"] for x in body.get("guilds", [])] if code == 200 else []
        return ids if ids == want else None
    harness.wait_for(full, 15, 0.1, "every guild in the merged list")
    for node in cl.nodes:
        code, _, body = node.api("GET", "/v1/cache/guilds?limit=3&after=%s" % want[0])
        assert code == 200 and [x["id"] for x in body["guilds"]] == want[1:4], body
        code, _, stats = node.api("GET", "/v1/cache")
        assert code == 200 and stats["node"] == node.name, stats
