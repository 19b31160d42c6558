"""bench/clusterlab.py: what `make demo-cluster` (scripts/demo-cluster) and bench/cluster.py add
to the cluster tests' machinery (tests/integration/cluster_helpers.py: a throwaway redis-server
with AOF, a password and noeviction; a receiver that checks signatures and records (shard,
session, s, key); nodes sharing one Redis): a run's folder, a static split without a cluster
block for comparison, who holds what, the takeover as the receiver saw it, and the audit of what
the receiver got against what the fake sent, with gaps announced by SHARDHOOK_SESSION_LOST
apart from missing events.

Every process is started through tests/integration/harness.py in the run's folder and stopped by
its pid in end() (redis-server included); nothing touches the system's Redis service.
"""
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import cluster_helpers as ch  # noqa: E402
import harness  # noqa: E402


def begin(folder):
    """Processes started from here on live in folder (logs, configs, state, Redis data)."""
    os.makedirs(folder, exist_ok=True)
    harness.begin_test(folder)


def end():
    """Stop every process begin() has seen started (SIGTERM, then SIGKILL) and the receiver;
    the problems found in their logs (sanitizer reports), as a list."""
    return harness.end_test()


def cluster_refused(folder):
    """None when this build accepts a `cluster` block, else the check's last line saying why."""
    cfg = {"token": ch.APP_TOKEN, "webhooks": [], "state_dir": os.path.join(folder, "probe"),
           "cluster": {"redis": "redis://127.0.0.1:1/0", "node": "probe"}}
    path = os.path.join(folder, "probe.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    code, out = harness.run_shardhook("--check", "-c", path, timeout=30)
    return None if code == 0 else (out.strip().splitlines() or ["?"])[-1]


def start_nodes(n, fake, rx, redis, total, lease_ms, interval_ms, static=False, webhook=None,
                start=True, **overrides):
    """n nodes (node-a, ...) as cluster_helpers.Cluster makes them, started unless start is
    False; webhook merges into each node's webhook. static: no cluster block; node i holds shards i, i + n, ... of total,
    fixed, as before cluster mode."""
    cl = ch.Cluster(n, fake, rx, redis, total=total, lease_ms=lease_ms,
                    identify_interval_ms=interval_ms, start=False, **overrides)
    for i, node in enumerate(cl.nodes):
        if static:
            node.config.pop("cluster", None)
            node.config["shards"] = {"total": total, "ids": list(range(i, total, n))}
        node.config["webhooks"][0].update(webhook or {})
        with open(node.proc.config_path, "w") as f:
            json.dump(node.config, f, indent=2)
        if start:
            node.start()
    return cl


def holdings(nodes):
    """({shard: node name} of the shards ready and not stale on the live nodes, by each node's
    own GET /v1/shards; [(shard, node, other node)] held twice)."""
    owner, twice = {}, []
    for node in nodes:
        if not node.alive():
            continue
        for sid, e in node.held().items():
            if e.get("status") != "ready" or e.get("stale"):
                continue
            if sid in owner:
                twice.append((sid, owner[sid], node.name))
            owner[sid] = node.name
    return owner, twice


def by_node(owner):
    out = {}
    for shard, name in owner.items():
        out.setdefault(name, []).append(shard)
    return {k: sorted(v) for k, v in sorted(out.items())}


def ranges(ids):
    """[0,1,2,5,7,8] -> "0-2,5,7-8"."""
    out, ids, i = [], sorted(ids), 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(str(ids[i]) if i == j else "%d-%d" % (ids[i], ids[j]))
        i = j + 1
    return ",".join(out) or "-"


def identifies(fake):
    """IDENTIFYs the fake accepted so far (a refused one is not a session)."""
    return len(fake.identifies(refused=False))


def takeover(rx, shards, since):
    """({shard: seconds from since to its first RESUMED at the receiver}, the same for READY:
    shards that started a new session instead)."""
    resumed, ready, want = {}, {}, set(shards)
    for r in rx.snapshot():
        if r["at"] < since or r["shard"] not in want:
            continue
        if r["t"] == "RESUMED":
            resumed.setdefault(r["shard"], r["at"] - since)
        elif r["t"] == "READY":
            ready.setdefault(r["shard"], r["at"] - since)
    return resumed, ready


def settle(fake, rx, timeout, quiet=2.0):
    """The fake's log once the receiver has every s the fake had sent when this was called, or
    the sessions still behind made no progress for quiet seconds, or timeout: the audit's
    yardstick. (A session nobody holds keeps receiving from the fake's stream and never catches
    up: that is what the audit then shows.)"""
    log = fake.log()
    want = {(s["shard"], s["session_id"]): s["seq"] for s in log["sessions"]}
    deadline = time.monotonic() + harness.scale(timeout)
    last, changed = None, time.monotonic()
    while time.monotonic() < deadline:
        got = rx.last_s()
        behind = {k: got.get(k, 0) for k, v in want.items() if got.get(k, 0) < v}
        if not behind:
            break
        if behind != last:
            last, changed = behind, time.monotonic()
        elif time.monotonic() - changed > quiet:
            break
        time.sleep(0.1)
    return log


def audit(rx, fake_log):
    """What the receiver got against what the fake sent: for every session of the fake, every s
    from 1 to its last must have arrived. An s missing after the seq of a SHARDHOOK_SESSION_LOST
    for that session is an announced gap; any other is missing."""
    sent = {(s["shard"], s["session_id"]): s["seq"] for s in fake_log["sessions"]}
    rep = rx.report(expected_last=sent)
    lost = {}
    for r in rx.of_type("SHARDHOOK_SESSION_LOST"):
        d = r["event"].get("d") or {}
        lost[(r["shard"], d.get("session_id"))] = (d.get("seq") or 0, d.get("reason"))
    missing, announced, detail = 0, 0, []
    for k, gap in sorted(rep["missing"].items(), key=lambda kv: str(kv[0])):
        floor = lost[k][0] if k in lost else None
        untold = [s for s in gap if floor is None or s <= floor]
        missing += len(untold)
        announced += len(gap) - len(untold)
        if untold:
            detail.append("shard %s session %s..: %d of %d missing, from s=%d"
                          % (k[0], str(k[1])[:8], len(untold), sent.get(k, 0), untold[0]))
    return {
        "events": len(rx.snapshot()), "sessions": len(sent), "sent": sum(sent.values()),
        "missing": missing, "announced_gap": announced, "duplicates": rep["dup_count"],
        "unkeyed": rep["unkeyed"], "bad_signatures": rep["bad_signatures"],
        "sessions_lost": [{"shard": k[0], "session_id": k[1], "seq": v[0], "reason": v[1]}
                          for k, v in sorted(lost.items(), key=lambda kv: str(kv[0]))],
        "missing_detail": detail[:10],
    }


MOVES = ("taken", "claimed", "received", "handed", "released", "resumed", "lost", "identif")


def log_lines(node, shards, since_wall):
    """The node's log lines about shards at or after since_wall ("YYYY-MM-DDTHH:MM:SS") that say
    a shard moved, resumed or lost its session, as short strings."""
    out = []
    for line in node.log_text().splitlines():
        r = harness.parse_logfmt(line)
        try:
            shard = int(r.get("shard", ""))
        except ValueError:
            continue
        if shard not in shards or r.get("ts", "") < since_wall:
            continue
        if not any(w in r.get("msg", "") for w in MOVES):
            continue
        rest = " ".join("%s=%s" % (k, v) for k, v in r.items()
                        if k not in ("ts", "level", "msg", "shard"))
        out.append("%s %s shard=%d %s" % (r.get("ts", "")[11:23], r.get("msg"), shard, rest))
    return out
