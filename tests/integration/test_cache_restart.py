"""The entity cache stays warm across restarts and takeovers (docs/cache.md, "Restarts and
takeovers"): build/shardhook against the fake Discord (and, in cluster mode, a real
redis-server). RESUME does not resend GUILD_CREATE, so each test reads, after the restart or
the move, an entity that only a GUILD_CREATE sent before it carried, and checks what the fake
saw (a RESUME from which s, no IDENTIFY) and what the webhook received (no acknowledged event
twice, by the event keys)."""
import json
import os
import time
from pathlib import Path

import cluster_helpers as ch
import harness
from delivery_helpers import make_fake, wait_sessions
from harness import Receiver, Shardhook, base_config, scale, wait_for

CACHE = {"guilds": True, "channels": True, "roles": True}


def guild_id(shard, total, k=7):
    """A guild id whose events belong to shard of total, unlike any the fake makes."""
    return ((900000 + k) * total + shard) << 22


def guild(gid, name, role="warm-role"):
    """A GUILD_CREATE's d: the guild, one role and one text channel of its own."""
    return {"id": str(gid), "name": name, "icon": None, "owner_id": "1000000000000000042",
            "member_count": 1, "large": False, "unavailable": False,
            "joined_at": "2024-01-01T00:00:00.000000+00:00", "features": [],
            "roles": [{"id": str(gid), "name": "@everyone", "permissions": "1071698660929",
                       "position": 0, "color": 0},
                      {"id": str(gid + 1), "name": role, "permissions": "8", "position": 1,
                       "color": 0}],
            "emojis": [], "stickers": [], "members": [], "presences": [], "voice_states": [],
            "threads": [], "stage_instances": [], "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "channels": [{"id": str(gid + 2), "type": 0, "name": "warm-channel", "position": 0,
                          "parent_id": None, "topic": None, "nsfw": False,
                          "permission_overwrites": []}]}


def config(fake, rx, tmp, **cache):
    return base_config(fake, rx, tmp, cache=dict(CACHE, **cache),
                       webhook={"retry_base_ms": 50, "retry_max_ms": 200})


def read_guild(sh, gid):
    """GET /v1/guilds/{gid}: (status, body)."""
    code, _, body = sh.api("GET", "/v1/guilds/%d" % gid)
    return code, body


def wait_unknown(sh, gid, timeout=10):
    """Until /v1/guilds/{gid} answers 404 unknown_guild (503 guild_loading may come first while
    the shard is getting ready)."""
    def probe():
        code, body = read_guild(sh, gid)
        assert code in (404, 503), (code, body)
        return code == 404 and body["error"]["code"] == "unknown_guild"
    wait_for(probe, timeout, 0.05, "guild %d unknown" % gid)


def wait_guild(sh, gid, name, timeout=10):
    """Until /v1/guilds/{gid} answers 200 with name; returns the body."""
    got = {}

    def probe():
        code, body = read_guild(sh, gid)
        got["last"] = (code, body)
        return code == 200 and body.get("name") == name and body
    try:
        return wait_for(probe, timeout, 0.05, "guild %d named %r" % (gid, name))
    except AssertionError:
        raise AssertionError("guild %d: last answer %r" % (gid, got.get("last")))


def snap_path(tmp, shard=0):
    return Path(tmp) / "state" / "cache" / ("shard-%d.snap" % shard)


def checkpoint_seq(tmp, shard=0):
    """The seq of the shard's checkpoint (its file and journal lines: the highest)."""
    d = Path(tmp) / "state" / "checkpoints"
    seq = None
    for name in sorted(os.listdir(d)):
        if not name.startswith("shard-%d." % shard):
            continue
        for line in (d / name).read_text().splitlines():
            try:
                cp = json.loads(line)
            except ValueError:
                continue
            if isinstance(cp, dict) and isinstance(cp.get("seq"), int):
                seq = max(seq or 0, cp["seq"])
    return seq


def acked_keys(rx):
    """Keys of every event the receiver answered 2xx for."""
    return [e["key"] for r in rx.requests if r.ok for e in r.events]


def start_warm(tmp, fake, rx, gid, name, **cache):
    """shardhook with a cache; GUILD_CREATE of gid (name) dispatched and read back."""
    sh = Shardhook(config(fake, rx, tmp, **cache), tmp)
    wait_sessions(fake)
    s = fake.dispatch(0, "GUILD_CREATE", guild(gid, name))["s"][0]
    wait_for(lambda: any(e["s"] == s for e in rx.events()), 10, what="the GUILD_CREATE delivered")
    wait_guild(sh, gid, name)
    return sh, s


# -- single-node mode ----------------------------------------------------------------------------
def test_a_restart_resumes_with_a_warm_cache(tmp):
    fake = make_fake(tmp)
    rx = Receiver()
    gid = guild_id(0, 1)
    sh, _ = start_warm(tmp, fake, rx, gid, "before the restart", snapshot_interval_ms=0)
    sh.stop()  # SIGTERM: the gateway stops, delivery flushes, then the snapshot is written
    assert snap_path(tmp).is_file(), "no snapshot written at SIGTERM"
    n_identify = len(fake.identifies())
    fake.reset_log()
    sh.start()
    fake.wait(lambda f: f.resumes(refused=False), 15, what="the RESUME")
    body = wait_guild(sh, gid, "before the restart")
    assert [r["name"] for r in body["roles"]] == ["@everyone", "warm-role"], body
    code, _, chans = sh.api("GET", "/v1/guilds/%d/channels" % gid)
    assert code == 200 and [c["name"] for c in chans] == ["warm-channel"], (code, chans)
    assert len(fake.identifies()) == 0 and n_identify == 1, fake.identifies()
    assert not fake.resumes(refused=True)
    sh.wait_log(r'msg="cache snapshot loaded" shard=0', 5)
    sh.stop()


def test_kill9_resumes_from_the_periodic_snapshots_s_and_redelivers_nothing_acknowledged(tmp):
    fake = make_fake(tmp, guilds=0)  # the GUILD_CREATE below is the first thing to snapshot
    rx = Receiver()
    gid = guild_id(0, 1)
    interval_ms = int(scale(3) * 1000)
    sh, s_create = start_warm(tmp, fake, rx, gid, "snapshotted", snapshot_interval_ms=interval_ms)
    # the first periodic snapshot: it holds the GUILD_CREATE
    path = snap_path(tmp)
    wait_for(lambda: path.is_file(), scale(3) + 10, 0.01, "the periodic snapshot")
    # then, before the next one: events the webhook acknowledges, a rename among them
    fake.burst(10, shard=0, t="MESSAGE_CREATE")
    s_update = fake.dispatch(0, "GUILD_UPDATE", guild(gid, "renamed"))["s"][0]
    fake.burst(5, shard=0, t="MESSAGE_CREATE")
    last = s_update + 5
    wait_for(lambda: any(e["s"] == last for e in rx.events()), 10, what="the burst acknowledged")
    wait_for(lambda: (checkpoint_seq(tmp) or 0) >= last, 5, what="the checkpoint at the last s")
    wait_guild(sh, gid, "renamed")
    sh.kill()  # kill -9: no snapshot at exit; the periodic one is older than the checkpoint
    acked = acked_keys(rx)
    fake.reset_log()
    n_events = len(rx.events())
    sh.start()
    fake.wait(lambda f: f.resumes(refused=False), 15, what="the RESUME")
    resume = fake.resumes(refused=False)[0]
    line = sh.wait_log(r'msg="resuming from the cache snapshot.s s[^"]*" shard=0 '
                       r'snapshot_s=(\d+) checkpoint_seq=(\d+)', 10)
    snap_s, ck_s = int(line.group(1)), int(line.group(2))
    assert s_create <= snap_s < s_update, (s_create, snap_s, s_update)
    assert ck_s >= last and resume["seq"] == snap_s, (resume, snap_s, ck_s)
    assert resume["replayed"] >= last - snap_s, resume
    # the replay brought the cache up to date ...
    wait_guild(sh, gid, "renamed")
    assert not fake.identifies()
    # ... and sent the webhook nothing it had acknowledged
    fake.dispatch(0, "MESSAGE_CREATE", {"content": "after"})
    wait_for(lambda: len(rx.events()) > n_events, 10, what="an event after the restart")
    time.sleep(scale(0.5))
    again = [k for k in acked_keys(rx)[len(acked):] if k in set(acked)]
    assert not again, ("acknowledged events delivered again", again[:5])
    sh.stop()


def test_a_failed_resume_rebuilds_from_the_new_sessions_guild_creates(tmp):
    fake = make_fake(tmp, guilds=1)
    rx = Receiver()
    gid = guild_id(0, 1)
    sh, _ = start_warm(tmp, fake, rx, gid, "of the lost session", snapshot_interval_ms=0)
    sh.stop()
    fake.expire(0)  # the RESUME gets op 9: a new session
    fake.reset_log()
    sh.start()
    fake.wait(lambda f: f.resumes(refused=True) and f.identifies(refused=False), 15,
              what="the refused RESUME and the IDENTIFY")
    wait_sessions(fake)
    # the fake's own guild comes with the new session's GUILD_CREATE
    new = [s for s in fake.sessions() if s["shard"] == 0][-1]["session_id"]
    created = wait_for(lambda: [e["d"] for e in rx.events() if e["t"] == "GUILD_CREATE"
                                and e["key"].startswith("0:%s:" % new)], 10,
                       what="the new session's GUILD_CREATE")
    wait_guild(sh, int(created[0]["id"]), created[0]["name"])
    gid2 = guild_id(0, 1, k=8)
    fake.dispatch(0, "GUILD_CREATE", guild(gid2, "of the new session"))
    wait_guild(sh, gid2, "of the new session")
    # the lost session's guild was not in the new READY: gone
    wait_unknown(sh, gid)
    sh.stop()


def test_a_corrupt_snapshot_is_logged_and_ignored(tmp):
    fake = make_fake(tmp)
    rx = Receiver()
    gid = guild_id(0, 1)
    sh, _ = start_warm(tmp, fake, rx, gid, "warm", snapshot_interval_ms=0)
    sh.stop()
    path = snap_path(tmp)
    assert path.is_file()
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2] + b"\x00garbage" * 64)  # torn and scribbled
    fake.reset_log()
    sh.start()
    fake.wait(lambda f: f.resumes(refused=False), 15, what="the RESUME")
    sh.wait_log(r'msg="cache snapshot ignored" shard=0 '
                r'error="(corrupt compressed stream|malformed payload)"', 10)
    assert sh.alive()
    wait_unknown(sh, gid)
    # the cache works on: a new GUILD_CREATE is kept
    fake.dispatch(0, "GUILD_CREATE", guild(gid, "rebuilt"))
    wait_guild(sh, gid, "rebuilt")
    sh.stop()


def test_a_snapshot_of_another_session_is_dropped(tmp):
    """A stale cache would answer for guilds as if current while the events that changed them
    were lost; the shard's guilds say guild_loading/unknown until GUILD_CREATE instead."""
    fake = make_fake(tmp, guilds=0)
    rx = Receiver()
    gid = guild_id(0, 1)
    sh, _ = start_warm(tmp, fake, rx, gid, "session one", snapshot_interval_ms=0)
    sh.stop()
    old = snap_path(tmp).read_bytes()
    fake.expire(0)
    sh.start()  # session two: identifies, its snapshot replaces the first
    fake.wait(lambda f: len(f.identifies(refused=False)) >= 2, 15, what="the second IDENTIFY")
    wait_sessions(fake)
    gid2 = guild_id(0, 1, k=9)
    fake.dispatch(0, "GUILD_CREATE", guild(gid2, "session two"))
    wait_guild(sh, gid2, "session two")
    sh.stop()
    snap_path(tmp).write_bytes(old)  # session one's snapshot beside session two's checkpoint
    fake.reset_log()
    sh.start()
    fake.wait(lambda f: f.resumes(refused=False), 15, what="the RESUME of session two")
    sh.wait_log(r'msg="cache snapshot of another session dropped" shard=0 ', 10)
    for g in (gid, gid2):
        wait_unknown(sh, g)
    assert not fake.identifies()
    sh.stop()


# -- cluster mode ------------------------------------------------------------------------------
TOTAL = 4


def cluster(n=2, **cache):
    redis = ch.RedisServer()
    fake = harness.FakeDiscord(shards=TOTAL, max_concurrency=TOTAL, guilds=0,
                               identify_interval_ms=ch.IDENTIFY_INTERVAL_MS)
    rx = ch.ClusterReceiver()
    cl = ch.Cluster(n, fake, rx, redis, total=TOTAL, cache=dict(CACHE, **cache))
    held = cl.wait_held(30)
    return redis, fake, rx, cl, held


def owner_of(cl, held, shard):
    return next(cl.node(name) for name, ids in held.items() if shard in ids)


def warm_shard(fake, cl, held, shard, name):
    """GUILD_CREATE of a guild of shard, read back on its owner: (gid, owner)."""
    gid = guild_id(shard, TOTAL)
    owner = owner_of(cl, held, shard)
    fake.dispatch(shard, "GUILD_CREATE", guild(gid, name))
    wait_guild(owner, gid, name)
    return gid, owner


@harness.timeout(120)
def test_cluster_takeover_keeps_the_cache_warm(tmp):
    ch.require_redis()
    redis, fake, rx, cl, held = cluster(snapshot_interval_ms=300)
    gid, victim = warm_shard(fake, cl, held, 1, "taken over")
    key = ch.key("cache:1")
    wait_for(lambda: redis.cmd("EXISTS", key) == 1, 10, what="the snapshot in Redis")
    time.sleep(0.5)  # one more period: the snapshot holds the GUILD_CREATE
    fake.reset_log()
    victim.kill()
    survivor = next(n for n in cl.nodes if n is not victim)
    cl.wait_held(30, nodes=[survivor])
    fake.wait(lambda f: f.resumes(shard=1, refused=False), 15, what="shard 1 resumed")
    wait_guild(survivor, gid, "taken over")
    assert not fake.identifies(shard=1)


@harness.timeout(120)
def test_cluster_handoff_keeps_the_cache_warm(tmp):
    ch.require_redis()
    # no periodic snapshot: only the handoff's own can make the new owner warm
    redis, fake, rx, cl, held = cluster(snapshot_interval_ms=0)
    gid, owner = warm_shard(fake, cl, held, 2, "handed off")
    other = next(n for n in cl.nodes if n is not owner)
    fake.reset_log()
    code, _, body = owner.api("POST", "/v1/shards/2/handoff", {"to": other.name})
    assert code == 202, (code, body)
    wait_for(lambda: 2 in other.held(), 20, what="shard 2 on %s" % other.name)
    fake.wait(lambda f: f.resumes(shard=2, refused=False), 15, what="shard 2 resumed")
    owner.wait_log(r'msg="cache snapshot written for the handoff" shard=2', 10)
    wait_guild(other, gid, "handed off")
    assert not fake.identifies(shard=2)
    # what the new owner loaded: the handoff's snapshot in Redis
    assert redis.cmd("EXISTS", ch.key("cache:2")) == 1
    owner.wait_log(r'msg="shard handed off" shard=2 ', 5)
