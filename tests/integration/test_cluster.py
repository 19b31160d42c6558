"""Cluster mode (docs/cluster.md) against a real redis-server: three shardhook nodes, the fake
Discord and a receiver that checks signatures and records (shard, session, s) per event. Each
scenario asserts what the receiver and the fake saw: IDENTIFYs and RESUMEs per shard as the fake
judged them, close codes and who closed, missing and duplicated events per (shard, session), and
the daemon's own words where a user would read them (its log, its API).

Every test starts its own redis-server (AOF on, a password, noeviction) on a free loopback port
in its folder and stops it by its pid; the nodes reach it each through a TcpForwarder so one node
can be cut off. Skipped only when redis-server is not installed.

Duplicates are allowed where a takeover can cause them (and reported in the test's output and in
cluster-report.json in its folder); a missing event never is, unless a SHARDHOOK_SESSION_LOST
announced exactly that gap."""
import json
import re
import time

import cluster_helpers as ch
import harness

TOTAL = 32
BUCKETS = 8  # max_concurrency: 4 shards per bucket, a cold start of ~2 s per bucket window
LEASE_S = ch.LEASE_MS / 1000.0
STREAM_MS = 100  # the steady stream: one event per shard every 100 ms

# What the daemon's log says, as the scenarios look for it (one line each; cluster/ and gateway/).
LOG = {
    "takeover": r'msg="shard taken over"',  # shard=N from=<dead node> ...
    "lease_lost": r'msg="lease lost',  # the woken node's renewal failed
    "fenced": r'msg="shard released" shard=(\d+) reason=(?:fenced|owned_elsewhere)',
    "handoff": r'msg="shard handed off"',  # shard=N to="<node>" ...
    "lease_ran_out": r'msg="lease ran out; not reconnecting"',  # gateway, fail static
    "budget_stop": r'msg="identify budget at its reserve[^"]*".*resets_at=',
    "session_lost": r'msg="session lost',  # gateway: SHARDHOOK_SESSION_LOST sent
    "redis_down": r'msg="redis unreachable',
    "redis_back": r'msg="redis reachable again',
}


def log_lines(text, what, *words):
    """The lines of text matching LOG[what] that also contain every one of words."""
    pat = re.compile(LOG[what])
    return [line for line in text.splitlines()
            if pat.search(line) and all(w in line for w in words)]


def node_log(node):
    return "\n".join(harness.read_log(p) for p in node.logs)


def start(n=3, fake_opts=None, **cluster_opts):
    """redis-server, the fake (32 shards, 8 buckets, a 500 ms identify window), the receiver and
    n nodes; returns them once every shard is held once and ready."""
    redis = ch.RedisServer()
    fake = harness.FakeDiscord(**dict({"shards": TOTAL, "max_concurrency": BUCKETS,
                                       "identify_interval_ms": ch.IDENTIFY_INTERVAL_MS},
                                      **(fake_opts or {})))
    rx = ch.ClusterReceiver()
    cl = ch.Cluster(n, fake, rx, redis, total=TOTAL, **cluster_opts)
    return redis, fake, rx, cl


def streaming(victim=None, settle_s=1.0):
    """start(), every shard held within one of an even share, the fake streaming for settle_s:
    (redis, fake, rx, cl, held, victim, survivors, lost), victim the node of that index (None:
    no victim, survivors every node, lost empty) and lost the shards it holds."""
    redis, fake, rx, cl = start()
    held = wait_even(cl)
    fake.stream(STREAM_MS)
    time.sleep(settle_s)
    node = cl.nodes[victim] if victim is not None else None
    survivors = [n for n in cl.nodes if n is not node]
    return redis, fake, rx, cl, held, node, survivors, set(held[node.name]) if node else set()


def save_report(name, rep, **extra):
    """Print and keep (cluster-report.json in the test folder) what the receiver saw."""
    data = dict(extra, scenario=name, missing={"%s:%s" % k: v for k, v in rep["missing"].items()},
                duplicates=rep["dup_count"], duplicate_keys=sorted(rep["duplicates"])[:50],
                sessions=len(rep["sessions"]))
    print("cluster-report %s" % json.dumps(data, sort_keys=True))
    with open(harness.test_dir() / "cluster-report.json", "a") as f:
        f.write(json.dumps(data, sort_keys=True) + "\n")


def even_share(counts):
    return ch.even_share(counts, TOTAL)


def no_client_close_1000(fake_log):
    """Connections a node closed with 1000/1001 (which would end the session at Discord)."""
    return [c for c in fake_log["connections"]
            if c["closed_by"] == "client" and c["close_code"] in (1000, 1001)]


def resumes_after(fake_log, t_ms, shards=None, refused=False):
    return [r for r in fake_log["resumes"] if r["t_ms"] > t_ms and bool(r["refused"]) == refused
            and (shards is None or r["shard"] in shards)]


def wait_even(cl, timeout=40):
    """Every shard held once and ready, each live node within one of an even share."""
    return cl.wait_held(timeout=timeout, even=True)


class Marker:
    """A point in time on the fake's clock: the t_ms of the last record before it (everything the
    fake records later has a larger t_ms)."""

    def __init__(self, fake):
        log = fake.log()
        times = [0.0]
        for k in ("received", "identifies", "resumes"):
            times += [e["t_ms"] for e in log[k]]
        times += [c["opened_ms"] for c in log["connections"]]
        times += [c["closed_ms"] for c in log["connections"] if c["closed_ms"] is not None]
        self.t_ms = max(times)


def stream_until_delivered(fake, rx, seconds=1.0):
    """Let the steady stream run a little more, stop it, and wait for the receiver to have every
    current session up to its last s; returns (fake log, {(shard, session): last s})."""
    time.sleep(seconds)
    fake.stream(0)
    return ch.wait_delivered(rx, fake, timeout=30)


# -- 1 -----------------------------------------------------------------------------------------
@harness.timeout(90)
def test_cold_start_identifies_each_shard_once_within_bucket_windows():
    redis, fake, rx, cl = start()
    cl.wait_held(timeout=40)
    held = wait_even(cl)  # within one of an even share (balance may still be moving a shard)
    log, want = ch.wait_delivered(rx, fake, timeout=20)
    # each shard IDENTIFYed once, none refused: never two IDENTIFYs in one bucket window
    assert ch.accepted_identifies(log) == {i: 1 for i in range(TOTAL)}, ch.accepted_identifies(log)
    assert [e for e in log["identifies"] if e["refused"]] == [], log["identifies"]
    assert log["violations"] == [], log["violations"]
    for b in range(BUCKETS):
        times = sorted(e["t_ms"] for e in log["identifies"] if e["bucket"] == b)
        assert len(times) == TOTAL // BUCKETS
        assert all(t2 - t1 >= ch.IDENTIFY_INTERVAL_MS for t1, t2 in zip(times, times[1:])), times
    assert len(held) == 3
    # Redis names the same owners as the nodes' API
    owner = {sid: name for name, ids in held.items() for sid in ids}
    harness.wait_for(lambda: ch.owners(redis, TOTAL) == owner, 10, 0.2, "owners in Redis")
    assert sorted(redis.hgetall(ch.key("nodes"))) == ["node-a", "node-b", "node-c"]
    assert redis.hgetall(ch.key("meta")).get("total") == str(TOTAL)
    # every shard's READY and GUILD_CREATEs reached the receiver, signed and keyed
    assert {r["shard"] for r in rx.of_type("READY")} == set(range(TOTAL))
    rep = rx.report(expected_last=want)
    assert rep["bad_signatures"] == 0 and rep["unkeyed"] == 0, ch.describe(rep)
    assert rep["missing"] == {}, ch.describe(rep)
    save_report("cold_start", rep, held={k: len(v) for k, v in held.items()})
    cl.check_no_secrets()


# -- 2 -----------------------------------------------------------------------------------------
@harness.timeout(90)
def test_kill9_during_steady_stream_resumes_on_the_others_with_nothing_missing():
    redis, fake, rx, cl, held, victim, survivors, lost = streaming(1, settle_s=1.5)
    before = ch.current_sessions(fake.log())
    mark = Marker(fake)
    t_kill = time.monotonic()
    victim.kill()
    # its shards RESUMEd (not IDENTIFYed) on the others within lease + 2 s
    resumed = fake.wait(lambda f: {r["shard"] for r in resumes_after(f.log(), mark.t_ms, lost)}
                        >= lost, LEASE_S + 10, 0.05, what="every lost shard resumed")
    took = time.monotonic() - t_kill
    assert resumed
    assert took <= harness.scale(LEASE_S + 2 + 1), "takeover took %.1fs" % took
    after = cl.wait_held(nodes=survivors, timeout=20)
    assert set(after[survivors[0].name]) | set(after[survivors[1].name]) == set(range(TOTAL))
    log, want = stream_until_delivered(fake, rx)
    assert ch.accepted_identifies(log) == {i: 1 for i in range(TOTAL)}, "an IDENTIFY after kill"
    assert ch.current_sessions(log).keys() == before.keys()
    assert all(ch.current_sessions(log)[i][0] == before[i][0] for i in range(TOTAL)), \
        "a session changed: it was not resumed"
    rep = rx.report(expected_last=want)
    assert rep["missing"] == {}, ch.describe(rep)
    assert rep["bad_signatures"] == 0 and rep["unkeyed"] == 0, ch.describe(rep)
    # a takeover may repeat what the dead node received but had not acknowledged: only its shards
    assert {int(k.split(":")[0]) for k in rep["duplicates"]} <= lost, ch.describe(rep)
    assert rx.of_type("SHARDHOOK_SESSION_LOST") == []
    assert no_client_close_1000(log) == []
    text = "\n".join(node_log(n) for n in survivors)
    for sid in lost:
        assert log_lines(text, "takeover", "shard=%d " % sid, "from=%s" % victim.name), \
            "no takeover of shard %d in the survivors' logs" % sid
    save_report("kill9", rep, takeover_s=round(took, 2), lost=len(lost))


# -- 3 -----------------------------------------------------------------------------------------
@harness.timeout(120)
def test_sigstop_for_three_leases_fences_the_woken_node_out():
    redis, fake, rx, cl, held, victim, survivors, lost = streaming(0)
    log0 = fake.log()
    victim_conns = {c["id"] for c in log0["connections"]
                    if c["closed_ms"] is None and c["shard"] in lost}
    assert len(victim_conns) == len(lost)
    victim.sigstop()
    t_stop = time.monotonic()
    try:
        cl.wait_held(nodes=survivors, timeout=LEASE_S * 3 + 10)  # taken over while it sleeps
        left = LEASE_S * 3 - (time.monotonic() - t_stop)
        if left > 0:
            time.sleep(left)
    finally:
        victim.sigcont()
    mark = Marker(fake)
    # the woken node is fenced out and drops them, closing with 4000, never 1000/1001
    victim.wait_log(LOG["lease_lost"], timeout=LEASE_S * 2 + 5)
    harness.wait_for(lambda: {int(m) for m in re.findall(LOG["fenced"], node_log(victim))} >= lost,
                     10, 0.1, "the woken node dropping every shard it had")
    harness.wait_for(lambda: all(c["closed_ms"] is not None for c in fake.connections()
                                 if c["id"] in victim_conns), 10, 0.1, "its old sockets closed")
    log = fake.log()
    for c in log["connections"]:
        if c["id"] in victim_conns:
            assert c["close_code"] == 4000, c
    assert no_client_close_1000(log) == []
    # no shard bounces: it does not RESUME its old sessions back; balance may move a shard to it
    # once, by handoff (the old socket closed with 4000 first, never "superseded")
    final = wait_even(cl)
    log, want = stream_until_delivered(fake, rx)
    late = [c for c in log["connections"] if c["reason"] == "superseded"
            and c["closed_ms"] > mark.t_ms and c["id"] not in victim_conns]
    assert late == [], "a session went back and forth after SIGCONT: %s" % late[:5]
    per_shard = {}
    for r in resumes_after(log, mark.t_ms):
        per_shard[r["shard"]] = per_shard.get(r["shard"], 0) + 1
    assert all(v <= 1 for v in per_shard.values()), per_shard
    assert ch.accepted_identifies(log) == {i: 1 for i in range(TOTAL)}
    assert even_share([len(v) for v in final.values()]), final
    rep = rx.report(expected_last=want)
    assert rep["missing"] == {}, ch.describe(rep)
    save_report("sigstop", rep, lost=len(lost), moved_back=len(per_shard))


# -- 4 -----------------------------------------------------------------------------------------
def _wait_growing(rx, seconds, what):
    """The receiver keeps getting events for this long (checked every second)."""
    end = time.monotonic() + seconds
    n = len(rx.snapshot())
    while time.monotonic() < end:
        time.sleep(min(1.0, max(0.0, end - time.monotonic())) or 0.01)
        m = len(rx.snapshot())
        assert m > n, "delivery stopped %s" % what
        n = m


@harness.timeout(120)
def test_redis_kill9_and_restart_moves_nothing_and_catches_up():
    redis, fake, rx, cl, held = streaming()[:5]
    log0 = fake.log()
    mark = Marker(fake)
    for outage in (1.0, 3 * LEASE_S):
        redis.kill9()
        _wait_growing(rx, outage, "while Redis was down %.0fs" % outage)
        redis.restart()
        # the quiet period after Redis returns (2 leases), and then some: still nothing moves
        _wait_growing(rx, 2 * LEASE_S + 1, "after Redis came back")
        assert cl.wait_held(timeout=10) == held
    log, want = stream_until_delivered(fake, rx)
    assert ch.accepted_identifies(log) == ch.accepted_identifies(log0), "an IDENTIFY"
    assert resumes_after(log, mark.t_ms) == [], "a shard moved or reconnected"
    assert [c for c in log["connections"] if c["closed_ms"] is not None
            and c["closed_ms"] > mark.t_ms] == [], "a socket closed"
    # checkpoints catch up: each shard's hash holds its owner and the last acknowledged s
    want_owner = {sid: name for name, ids in held.items() for sid in ids}

    def caught_up():
        for sid in range(TOTAL):
            h = redis.shard(sid)
            session, seq = ch.current_sessions(log)[sid]
            if h.get("owner") != want_owner[sid] or h.get("session_id") != session \
                    or int(h.get("seq") or 0) < seq:
                return False
        return True
    harness.wait_for(caught_up, 15, 0.25, "checkpoints in Redis up to the last s")
    for node in cl.nodes:  # each said so, both times
        assert len(log_lines(node_log(node), "redis_down")) >= 2, node.name
        assert len(log_lines(node_log(node), "redis_back")) >= 2, node.name
        assert not log_lines(node_log(node), "takeover"), node.name
    rep = rx.report(expected_last=want)
    assert rep["missing"] == {} and rep["dup_count"] == 0, ch.describe(rep)
    save_report("redis_kill9", rep)


# -- 5 -----------------------------------------------------------------------------------------
@harness.timeout(120)
def test_node_cut_off_from_redis_is_taken_over_then_gets_shards_back_by_handoff():
    redis, fake, rx, cl, held, victim, survivors, lost = streaming(2)
    mark = Marker(fake)
    t_cut = time.monotonic()
    victim.forwarder.cut()
    # the others take its shards over after its lease
    cl.wait_held(nodes=survivors, timeout=LEASE_S + 10)
    took = time.monotonic() - t_cut
    assert took >= LEASE_S * 0.75, "taken over after %.1fs, before its lease ended" % took
    assert took <= harness.scale(LEASE_S + 2 + 1), "takeover took %.1fs" % took
    # the cut-off node stops resuming them: its own lease has ended
    time.sleep(LEASE_S)
    victim.wait_log(LOG["lease_ran_out"], timeout=5)
    assert log_lines(node_log(victim), "redis_down"), "the cut-off node never said Redis is gone"
    log = fake.log()
    per_shard = {}
    for r in resumes_after(log, mark.t_ms, lost):
        per_shard[r["shard"]] = per_shard.get(r["shard"], 0) + 1
    assert per_shard == {s: 1 for s in lost}, "resumes per lost shard while cut off: %s" % per_shard
    assert resumes_after(log, mark.t_ms, set(range(TOTAL)) - lost) == []
    assert victim.alive(), "the cut-off node exited"
    # rejoined, it gets shards back by handoff
    mark2 = Marker(fake)
    victim.forwarder.restore()
    back = wait_even(cl)
    assert len(back[victim.name]) >= TOTAL // 3
    log, want = stream_until_delivered(fake, rx)
    bounced = sorted({c["shard"] for c in log["connections"] if c["reason"] == "superseded"
                      and c["closed_ms"] > mark2.t_ms})
    assert bounced == [], "rejoined, it RESUMEd shards it no longer owns: %s" % bounced
    moved = set(back[victim.name])
    for sid in moved:  # each came back by RESUME after its previous socket closed with 4000
        closes = [c for c in log["connections"] if c["shard"] == sid and c["closed_ms"] is not None
                  and c["closed_ms"] > mark2.t_ms]
        assert closes and all(c["close_code"] == 4000 and c["closed_by"] == "client"
                              for c in closes), closes
    assert ch.accepted_identifies(log) == {i: 1 for i in range(TOTAL)}
    assert no_client_close_1000(log) == []
    handed = "\n".join(node_log(n) for n in survivors)
    for sid in moved:  # the survivors held them all: each was handed off, and logged there
        assert log_lines(handed, "handoff", "shard=%d " % sid, 'to="%s"' % victim.name), sid
    assert log_lines(node_log(victim), "redis_back")
    rep = rx.report(expected_last=want)
    assert rep["missing"] == {}, ch.describe(rep)
    save_report("cut_off", rep, takeover_s=round(took, 2), lost=len(lost), back=len(moved))


# -- 6 -----------------------------------------------------------------------------------------
@harness.timeout(60)
def test_budget_at_reserve_plus_three_identifies_three_then_stops():
    reserve = max(TOTAL, 1000 * 5 // 100)  # max(shards, 5 % of total)
    redis, fake, rx, cl = start(fake_opts={"session_total": 1000,
                                           "session_remaining": reserve + 3})
    harness.wait_for(lambda: cl.check_alive() or len(ch.accepted_identifies(fake.log())) >= 3,
                     20, 0.1, "3 IDENTIFYs")
    stopped = harness.wait_for(
        lambda: cl.check_alive() or [n for n in cl.nodes if log_lines(node_log(n), "budget_stop")],
        15, 0.2, "the logged stop")
    time.sleep(harness.scale(2.0))  # no fourth IDENTIFY comes
    log = fake.log()
    assert sum(ch.accepted_identifies(log).values()) == 3, log["identifies"]
    assert [e for e in log["identifies"] if e["refused"] == "session budget"] == [], \
        "Discord had to refuse: the cluster overspent"
    # logged once (per node), saying when the budget resets; /v1/gateway shows it
    for n in stopped:
        lines = log_lines(node_log(n), "budget_stop")
        assert len(lines) == 1, lines
    code, _, gw = cl.nodes[0].api("GET", "/v1/gateway")
    assert code == 200
    ssl = gw["session_start_limit"]
    assert ssl["reserve"] == reserve and ssl["identify_stopped"] is True, ssl
    # the shards that did IDENTIFY deliver
    started = set(ch.accepted_identifies(log))
    rx.wait_records(lambda rs: {r["shard"] for r in rs if r["t"] == "READY"} >= started, 10,
                    "READY of the identified shards")
    save_report("budget", rx.report(), identifies=3)


# -- 7 -----------------------------------------------------------------------------------------
@harness.timeout(150)
def test_rolling_restart_costs_no_identify_and_no_event():
    redis, fake, rx, cl = streaming()[:4]
    for node in cl.nodes:
        others = [n for n in cl.nodes if n is not node]
        off = node.log_offset()
        assert node.stop(timeout=15) == 0, harness.tail(node.log_text())
        assert re.search(LOG["handoff"], node.log_text()[off:]), "no handoff logged"
        cl.wait_held(nodes=others, timeout=10)
        node.start()
        wait_even(cl)
    log, want = stream_until_delivered(fake, rx)
    assert ch.accepted_identifies(log) == {i: 1 for i in range(TOTAL)}, "an IDENTIFY"
    assert [r for r in log["resumes"] if r["refused"]] == []
    assert no_client_close_1000(log) == []
    assert [c for c in log["connections"] if c["reason"] == "superseded"] == []
    rep = rx.report(expected_last=want)
    assert rep["missing"] == {}, ch.describe(rep)
    assert rx.of_type("SHARDHOOK_SESSION_LOST") == []
    save_report("rolling_restart", rep, resumes=len(log["resumes"]))


# -- 8 -----------------------------------------------------------------------------------------
@harness.timeout(90)
def test_session_expired_before_takeover_sends_session_lost_then_the_new_session():
    redis, fake, rx, cl, held, victim, survivors, lost = streaming(1)
    x = min(lost)
    old_session = ch.current_sessions(fake.log())[x][0]
    victim.kill()
    assert fake.expire(x)["expired"] == [old_session]
    cl.wait_held(nodes=survivors, timeout=LEASE_S + 15)
    log, want = stream_until_delivered(fake, rx)
    # the fake refused the RESUME of x, and x IDENTIFYed anew; the others resumed
    refused = [r for r in log["resumes"] if r["shard"] == x and r["refused"]]
    assert refused and refused[0]["refused"] == "session expired", log["resumes"]
    assert ch.accepted_identifies(log) == {**{i: 1 for i in range(TOTAL)}, x: 2}
    new_session = ch.current_sessions(log)[x][0]
    assert new_session != old_session
    # the receiver: SHARDHOOK_SESSION_LOST for x, then the new session's events
    lost_events = [r for r in rx.of_type("SHARDHOOK_SESSION_LOST")]
    assert [r["shard"] for r in lost_events] == [x], lost_events
    ev = lost_events[0]["event"]
    assert ev["s"] is None and ev["op"] == 0 and ev["shard"] == [x, TOTAL]
    assert ev["d"]["session_id"] == old_session and ev["d"]["reason"] == "invalid_session", ev
    recs = [r for r in rx.snapshot() if r["shard"] == x]
    at_lost = next(i for i, r in enumerate(recs) if r["t"] == "SHARDHOOK_SESSION_LOST")
    first_new = next(i for i, r in enumerate(recs) if r["session"] == new_session)
    assert at_lost < first_new and recs[first_new]["t"] == "READY"
    # nothing missing up to the s the event names; after it, the announced gap only
    rep = rx.report(expected_last=want)
    old_key = (x, old_session)
    gap = rep["missing"].pop(old_key, [])
    assert all(s > ev["d"]["seq"] for s in gap), (ev["d"], gap[:10])
    assert rep["sessions"][old_key][1] >= ev["d"]["seq"], (rep["sessions"][old_key], ev["d"])
    assert rep["missing"] == {}, ch.describe(rep)
    # the gaps stream in Redis says so too
    entries = redis.cmd("XRANGE", ch.key("gaps"), "-", "+") or []
    assert any(old_session in json.dumps(e) for e in entries), entries
    assert log_lines("\n".join(node_log(n) for n in survivors), "session_lost")
    save_report("session_expired", rep, shard=x, announced_gap=len(gap))

