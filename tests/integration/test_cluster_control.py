"""Cluster mode's control plane (docs/cluster.md, "Control plane"): every command that targets a
shard or a guild, called on a node that does not hold the shard, answers as the owner answers,
and the op arrives on the owner's socket (the fake's log of what each connection received).
Two nodes, four shards, a real redis-server each test."""
import threading
import time

import cluster_helpers as ch
import harness

TOTAL = 4
SNOW_T0 = 1420070400000 + 10 ** 11


def guild_id(shard, index=0):
    """The fake's guild snowflakes: (id >> 22) % TOTAL == shard."""
    ts = SNOW_T0 - SNOW_T0 % TOTAL + index * TOTAL + shard
    return str((ts << 22) | (index & 0xfff))


def start(n=2, fake_opts=None, **opts):
    redis = ch.RedisServer()
    fake = harness.FakeDiscord(**dict({"shards": TOTAL, "max_concurrency": 1,
                                       "identify_interval_ms": ch.IDENTIFY_INTERVAL_MS},
                                      **(fake_opts or {})))
    rx = ch.ClusterReceiver()
    opts.setdefault("intents", ["GUILDS", "GUILD_MESSAGES", "GUILD_MEMBERS", "GUILD_PRESENCES"])
    cl = ch.Cluster(n, fake, rx, redis, total=TOTAL, **opts)
    held = cl.wait_held(timeout=40)
    return redis, fake, cl, held


def owner_and_other(cl, held, shard):
    own = next(n for n in cl.nodes if shard in held[n.name])
    return own, next(n for n in cl.nodes if n is not own)


def sent(fake, op, shard):
    conns = {c["id"]: c["shard"] for c in fake.connections()}
    return [e["payload"] for e in fake.received(op=op) if conns.get(e["conn"]) == shard]


def is_error(body, code):
    return isinstance(body, dict) and body.get("error", {}).get("code") == code


def test_single_shard_commands_from_the_other_node_reach_the_owners_socket():
    redis, fake, cl, held = start()
    own, other = owner_and_other(cl, held, 1)
    g = guild_id(1)
    # send: the op lands on shard 1's connection, and the answer is the owner's
    payload = {"op": 3, "d": {"since": None, "activities": [], "status": "idle", "afk": False}}
    code, _, body = other.api("POST", "/v1/shards/1/send", payload)
    assert code == 202, body
    harness.wait_for(lambda: sent(fake, 3, 1), 5, what="op 3 on shard 1")
    code2, _, body2 = own.api("POST", "/v1/shards/1/send", payload)
    assert (code2, body2) == (code, body)
    # voice state
    vs = {"channel_id": None}
    code, _, body = other.api("POST", "/v1/guilds/%s/voice-state" % g, vs)
    assert code == 202 and body == {"guild_id": g, "shard": 1}, body
    harness.wait_for(lambda: sent(fake, 4, 1), 5, what="op 4 on shard 1")
    assert own.api("POST", "/v1/guilds/%s/voice-state" % g, vs)[2] == body
    # members with chunks, through the forward
    fake.members(chunks=3, count=7)
    code, _, body = other.api("POST", "/v1/guilds/%s/members" % g, {"query": "", "limit": 0},
                              timeout=15)
    assert code == 200, body
    assert body["guild_id"] == g and body["chunk_count"] == 3
    assert [m["user"]["username"] for m in body["members"]] == ["member-%d" % k
                                                               for k in range(1, 8)]
    assert [op["d"]["guild_id"] for op in sent(fake, 8, 1)] == [g]
    # channel info
    code, _, body = other.api("POST", "/v1/guilds/%s/channel-info" % g, {"fields": ["status"]})
    assert code == 200 and body["guild_id"] == g and body["channels"][0]["status"] == \
        "fake status", body
    assert sent(fake, 43, 1)[-1]["d"] == {"guild_id": g, "fields": ["status"]}
    # an error answer comes back as is
    code, _, body = other.api("POST", "/v1/guilds/%s/channel-info" % g, {"fields": ["topic"]})
    assert code == 400 and is_error(body, "invalid_field"), body
    # reconnect: run on the owner, whose once-per-interval limit then refuses the next one
    code, _, body = other.api("POST", "/v1/shards/1/reconnect")
    assert code == 202, body
    code2, headers, body2 = own.api("POST", "/v1/shards/1/reconnect")
    assert code2 == 429 and is_error(body2, "rate_limited") and headers.get("retry-after"), body2
    code3, headers3, body3 = other.api("POST", "/v1/shards/1/reconnect")
    assert code3 == 429 and is_error(body3, "rate_limited") and headers3.get("retry-after"), body3
    harness.wait_for(lambda: own.api("GET", "/v1/shards/1")[2].get("status") == "ready", 20,
                     what="shard 1 ready again")
    # handoff, asked of the node that does not hold it: the owner hands it off
    code, _, body = other.api("POST", "/v1/shards/1/handoff", {"to": other.name})
    assert code == 202 and body.get("handoff") == "started", body
    harness.wait_for(lambda: 1 in other.held(), 20, what="shard 1 handed to the asker")
    # the asker counted what it forwarded and how it was answered
    code, _, text = other.api("GET", "/metrics")
    assert 'shardhook_cluster_commands_forwarded_total{route="/v1/shards/{id}/send"} 1' in text
    assert 'shardhook_cluster_commands_answered_total{outcome="answered"}' in text
    assert "shardhook_cluster_forward_seconds_count" in text
    cl.check_no_secrets()


def test_a_command_with_a_stale_fence_answers_moved():
    redis, fake, cl, held = start()
    own, other = owner_and_other(cl, held, 0)
    fence = int(redis.shard(0)["fence"])
    redis.cmd("XADD", ch.key("cmd:" + own.name), "*", "type", "api", "id", "1:1", "from", "probe",
              "fence", str(fence - 1), "shard", "0", "route", "/v1/shards/{id}/send",
              "param", "0", "timeout_ms", "1000", "body",
              '{"op":3,"d":{"since":null,"activities":[],"status":"invisible","afk":false}}')

    def reply():
        got = redis.cmd("XRANGE", ch.key("reply:probe"), "-", "+")
        return got and dict(zip(got[0][1][::2], got[0][1][1::2]))
    entry = harness.wait_for(reply, 5, what="the owner's reply")
    assert entry.get(b"moved", entry.get("moved")) in (b"1", "1"), entry
    time.sleep(0.5)
    assert [p for p in sent(fake, 3, 0) if p["d"]["status"] == "invisible"] == []  # not run
    assert 0 < int(redis.cmd("PTTL", ch.key("reply:probe"))) <= 60000


def test_members_429_comes_back_with_retry_after():
    redis, fake, cl, held = start()
    own, other = owner_and_other(cl, held, 2)
    fake.members(rate_limited=4, retry_after=0.2)
    code, headers, body = other.api("POST", "/v1/guilds/%s/members" % guild_id(2), {},
                                    timeout=15)
    assert code == 429 and is_error(body, "rate_limited"), body
    assert headers.get("retry-after") == "1"
    assert len(sent(fake, 8, 2)) == 4


def test_presence_and_soundboard_split_by_owner_and_merged():
    redis, fake, cl, held = start()
    a = cl.nodes[0]
    p = {"status": "dnd", "activities": [], "afk": False}
    code, _, body = a.api("POST", "/v1/presence", p)
    assert code == 202 and body == {"shards": [0, 1, 2, 3]}, body
    for s in range(TOTAL):
        harness.wait_for(lambda: sent(fake, 3, s), 5, what="op 3 on shard %d" % s)
    code, _, body = a.api("POST", "/v1/presence", dict(p, shards=[3, 0]))
    assert code == 202 and body == {"shards": [0, 3]}, body
    gs = [guild_id(s) for s in range(TOTAL)]
    code, _, body = a.api("POST", "/v1/soundboard-sounds", {"guild_ids": gs}, timeout=15)
    assert code == 200, body
    assert [g["guild_id"] for g in body["guilds"]] == gs
    for s in range(TOTAL):
        assert sent(fake, 31, s) == [{"op": 31, "d": {"guild_ids": [gs[s]]}}]


def test_in_flight_during_takeover_is_answered_or_503():
    redis, fake, cl, held = start()
    own, other = owner_and_other(cl, held, 3)
    fake.quiet(ops=[43])  # the owner waits for Discord; then it dies
    out = {}
    th = threading.Thread(target=lambda: out.update(r=other.api(
        "POST", "/v1/guilds/%s/channel-info" % guild_id(3), {"timeout_ms": 1500}, timeout=20)))
    th.start()
    time.sleep(0.5)
    own.kill()
    th.join(25)
    code, _, body = out["r"]
    assert code in (504, 503), (code, body)
    if code == 503:
        assert is_error(body, "owner_unreachable") and own.name in body["error"]["message"]


def test_redis_down_answers_degraded_for_other_nodes_shards_only():
    redis, fake, cl, held = start()
    a = cl.nodes[0]
    mine = held[a.name][0]
    theirs = next(s for s in range(TOTAL) if s not in held[a.name])
    redis.kill9()
    harness.wait_for(lambda: "redis unreachable" in harness.read_log(a.logs[-1]), 10,
                     what="node a degraded")
    payload = {"op": 3, "d": {"since": None, "activities": [], "status": "idle", "afk": False}}
    code, _, body = a.api("POST", "/v1/shards/%d/send" % theirs, payload)
    assert code == 503 and is_error(body, "cluster_degraded") and body["cluster"] == "degraded", \
        body
    code, _, body = a.api("POST", "/v1/shards/%d/send" % mine, payload)
    assert code == 202, body
