#!/usr/bin/env python3
"""bench/cluster.py: cluster mode's figures (`make bench-cluster`; docs/benchmarks.md, "Cluster
mode"). Three nodes, one throwaway redis-server, the fake Discord and a recording receiver, all on
loopback, started by the cluster tests' machinery (bench/clusterlab.py,
tests/integration/cluster_helpers.py; each node reaches Redis through a TCP forwarder of its own);
every process is stopped by its pid at the end of each run.

  takeover  16 and 256 shards, lease_ms 10000 (the default) and 2000 (a test lease): every shard
            ready, a steady trickle of events, then `kill -9` of the node holding the most
            shards; the time from the kill to the last of its shards RESUMED (the RESUMED event
            at the receiver, max_batch_delay_ms 5), the IDENTIFYs after the kill, and the
            receiver's audit (a run with a missing event fails: the figure would not count).
  coldstart 1,000 shards over 3 nodes started together, max_concurrency 16, identify window
            testing.identify_interval_ms 500 (the cluster's identify slot lives that + 500 ms):
            the time from the nodes' start to the last READY at the receiver, against the
            identify rule's ideal, ceil(1000 / 16) x the window, and the same with the slot's
            lifetime; IDENTIFYs (expected exactly 1,000), the fake's violations, shards per node.
  balance   after the cold start: the shards per node right after the last READY, and the time
            until balance (rule 6) has every node within one of an even share (the Redis
            commands meanwhile).
  redis     on the same 1,000 shards once started and balanced: Redis commands per second per node at steady
            state (INFO stats total_commands_processed over a window, less this script's own
            INFO calls, divided by 3), idle and with one event per shard per second
            (the fake's stream), and the commands that make it up (INFO commandstats).

  python3 bench/cluster.py [--quick] [--repeat N] [--parts takeover,coldstart]
      [--json FILE] [--markdown FILE] [--keep]

Medians over --repeat runs (3 by default; --quick: one run of each, 16 shards on the short lease
only and 96 shards for the cold start, for a smoke run in a minute or two). This is a benchmark,
not a test: it asserts no speed, only that no event went missing. Needs build/shardhook and
build/fake-discord (`make bench-cluster` builds them) and redis-server.
"""
import argparse
import math
import os
import shutil
import sys
import tempfile
import time

from common import headline, log, median, raise_fd_limit, run_parts, write_results
import clusterlab as lab
from clusterlab import ch, harness

NODES = 3

PROFILES = {
    "full": dict(takeover=[(16, 10000), (16, 2000), (256, 10000), (256, 2000)], repeat=3,
                 cold_shards=1000, concurrency=16, cold_interval_ms=500, window_s=30,
                 stream_ms=500, steady_s=3, balance_s=400),
    "quick": dict(takeover=[(16, 2000)], repeat=1, cold_shards=96, concurrency=16,
                  cold_interval_ms=500, window_s=5, stream_ms=500, steady_s=2, balance_s=120),
}


def parse_info(text):
    """INFO's `name:value` lines -> dict; `a=1,b=2` values (commandstats) as dicts."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        name, value = line.split(":", 1)
        if name.startswith("cmdstat_"):
            out[name] = {k: float(v) for k, _, v in (p.partition("=") for p in value.split(","))}
        else:
            try:
                out[name] = float(value)
            except ValueError:
                out[name] = value
    return out


def cluster(tmp, name, shards, lease_ms, interval_ms, concurrency, batch_delay_ms=25,
            start=True):
    """In a fresh folder: redis-server, the fake (no stream yet), the receiver, three nodes
    (started unless start is False)."""
    lab.begin(tempfile.mkdtemp(prefix=name + "-", dir=tmp))
    redis = ch.RedisServer()
    fake = harness.FakeDiscord(shards=shards, max_concurrency=concurrency, guilds=1,
                               identify_interval_ms=interval_ms, heartbeat_ms=41250,
                               session_total=100000, session_remaining=100000)
    rx = ch.ClusterReceiver()
    cl = lab.start_nodes(NODES, fake, rx, redis, shards, lease_ms, interval_ms,
                         webhook={"max_batch_delay_ms": batch_delay_ms}, start=start)
    return redis, fake, rx, cl.nodes


def check_alive(nodes, fake, dead=()):
    if not fake.alive():
        raise RuntimeError("fake-discord exited: " + harness.tail(fake.log_text(), 20))
    for n in nodes:
        if n not in dead and not n.alive():
            raise RuntimeError("%s exited: %s" % (n.name, harness.tail(n.log_text(), 20)))


def all_held(nodes, fake, shards, timeout):
    def held():
        check_alive(nodes, fake)
        owner, _ = lab.holdings(nodes)
        return owner if len(owner) == shards else None
    return harness.wait_for(held, timeout, 0.25, "all %d shards ready on the nodes" % shards)


def audited(fake, rx, what):
    a = lab.audit(rx, lab.settle(fake, rx, timeout=15))
    if a["missing"] or a["bad_signatures"]:
        raise RuntimeError("%s: the receiver is missing %d events (%s), %d bad signatures"
                           % (what, a["missing"], a["missing_detail"][:3], a["bad_signatures"]))
    return a


# -- takeover -------------------------------------------------------------------------------------
def takeover_run(tmp, shards, lease_ms, prof):
    try:
        redis, fake, rx, nodes = cluster(tmp, "takeover-%d-%d" % (shards, lease_ms), shards,
                                         lease_ms, 100, 16, batch_delay_ms=5)
        all_held(nodes, fake, shards, 60 + shards * 0.1)
        fake.stream(prof["stream_ms"])
        time.sleep(prof["steady_s"])
        per = lab.by_node(lab.holdings(nodes)[0])
        victim = max(nodes, key=lambda n: len(per.get(n.name, [])))
        moved = per.get(victim.name, [])
        before = lab.identifies(fake)
        t_kill = time.monotonic()
        victim.proc.kill()

        def done():
            check_alive(nodes, fake, dead=(victim,))
            resumed, ready = lab.takeover(rx, moved, t_kill)
            return len(resumed) + len(ready) >= len(moved)
        harness.wait_for(done, (lease_ms + 2000) / 1000.0 * 3 + 30, 0.05,
                         "the takeover of %d shards" % len(moved))
        resumed, ready = lab.takeover(rx, moved, t_kill)
        time.sleep(1.0)
        after = lab.identifies(fake) - before
        a = audited(fake, rx, "takeover %d shards" % shards)
        return {
            "shards": shards, "lease_ms": lease_ms, "moved": len(moved),
            "resumed": len(resumed), "new_sessions": len(ready),
            "last_resumed_s": max(resumed.values()) if resumed else None,
            "first_resumed_s": min(resumed.values()) if resumed else None,
            "identifies_after_kill": after, "missing": a["missing"],
            "duplicates": a["duplicates"], "announced_gap": a["announced_gap"],
            "events": a["events"],
        }
    finally:
        lab.end()


def part_takeover(prof, repeat, tmp, results):
    rows = []
    for shards, lease_ms in prof["takeover"]:
        runs = [takeover_run(tmp, shards, lease_ms, prof) for _ in range(repeat)]
        row = {"shards": shards, "lease_ms": lease_ms, "runs": runs}
        for k in ("moved", "last_resumed_s", "first_resumed_s", "identifies_after_kill",
                  "duplicates", "new_sessions"):
            row[k] = median(r[k] for r in runs)
        row["last_resumed_all"] = [r["last_resumed_s"] for r in runs]
        rows.append(row)
        log("  takeover %3d shards, lease %5d ms: last RESUMED %.2f s after the kill (runs %s), "
            "IDENTIFYs after %s, duplicates %s"
            % (shards, lease_ms, row["last_resumed_s"] or -1,
               ", ".join("%.2f" % (v or -1) for v in row["last_resumed_all"]),
               row["identifies_after_kill"], row["duplicates"]))
    results["takeover"] = rows


# -- cold start and Redis load ----------------------------------------------------------------------
def redis_counts(redis):
    return parse_info(redis.cmd("INFO", "stats")), parse_info(redis.cmd("INFO", "commandstats"))


def redis_rates(before, after, took):
    """Commands per second between two redis_counts (less the two INFO calls of `before` that
    `after` counts), and the calls per second of each command."""
    (s0, c0), (s1, c1) = before, after
    ours = 2  # s0's INFO and c0's come after s0's count; s1's own is not in it yet
    total = s1["total_commands_processed"] - s0["total_commands_processed"] - ours
    calls = {}
    for name, f in c1.items():
        n = f.get("calls", 0) - c0.get(name, {}).get("calls", 0) - (2 if name == "cmdstat_info"
                                                                     else 0)
        if n > 0:
            calls[name[len("cmdstat_"):]] = n / took
    return total / took, calls


def redis_window(redis, fake, seconds, stream_ms):
    """Commands Redis processed per second over `seconds` (less this function's own INFO
    calls), the fake streaming one event per shard every stream_ms (0: idle); and the calls per
    second of each command."""
    if stream_ms:
        fake.stream(stream_ms)
    before, t0 = redis_counts(redis), time.monotonic()
    time.sleep(seconds)
    after, took = redis_counts(redis), time.monotonic() - t0
    if stream_ms:
        fake.stream(0)
    return redis_rates(before, after, took)


def balanced(nodes, fake, shards, timeout):
    """Wait (up to timeout s) until balance (rule 6) has every node within one of an even share:
    (seconds waited or None when it did not get there, shards per node then)."""
    t0, share = time.monotonic(), shards / float(NODES)
    while True:
        check_alive(nodes, fake)
        per = {k: len(v) for k, v in lab.by_node(lab.holdings(nodes)[0]).items()}
        if sum(per.values()) == shards and all(
                math.floor(share) - 1 <= v <= math.ceil(share) + 1 for v in per.values()):
            return time.monotonic() - t0, per
        if time.monotonic() - t0 > timeout:
            return None, per
        time.sleep(1)


def coldstart_run(tmp, prof):
    shards, conc, interval = prof["cold_shards"], prof["concurrency"], prof["cold_interval_ms"]
    try:
        redis, fake, rx, nodes = cluster(tmp, "cold-%d" % shards, shards, 10000, interval, conc,
                                         start=False)
        t0 = time.monotonic()
        for n in nodes:
            n.start()

        def readies():
            check_alive(nodes, fake)
            got = {}
            for r in rx.of_type("READY"):
                got.setdefault(r["shard"], r["at"] - t0)
            return got if len(got) >= shards else None
        rounds = math.ceil(shards / conc)
        got = harness.wait_for(readies, 120 + rounds * (interval + 500) / 1000.0 * 3, 0.25,
                               "READY of all %d shards" % shards)
        flog = fake.log()
        owner = all_held(nodes, fake, shards, 60)
        row = {
            "shards": shards, "nodes": NODES, "max_concurrency": conc,
            "window_ms": interval, "slot_px_ms": interval + 500,
            "seconds": max(got.values()),
            "ideal_s": rounds * interval / 1000.0,
            "ideal_slot_s": rounds * (interval + 500) / 1000.0,
            "identifies": len(fake.identifies(refused=False, log=flog)),
            "refused_identifies": len(fake.identifies(refused=True, log=flog)),
            "violations": len(flog.get("violations", [])),
            "per_node": {k: len(v) for k, v in lab.by_node(owner).items()},
        }
        row["per_node_start"] = row["per_node"]
        before, t0 = redis_counts(redis), time.monotonic()
        row["balanced_s"], row["per_node"] = balanced(nodes, fake, shards, prof["balance_s"])
        row["redis_balance_per_s"], row["redis_balance_calls"] = redis_rates(
            before, redis_counts(redis), time.monotonic() - t0)
        time.sleep(5)  # let start-up's checkpoints and status writes settle
        row["redis_idle_per_s"], row["redis_idle_calls"] = redis_window(
            redis, fake, prof["window_s"], 0)
        row["redis_busy_per_s"], row["redis_busy_calls"] = redis_window(
            redis, fake, prof["window_s"], 1000)
        row["redis_idle_per_node"] = row["redis_idle_per_s"] / NODES
        row["redis_busy_per_node"] = row["redis_busy_per_s"] / NODES
        audited(fake, rx, "cold start")
        return row
    finally:
        lab.end()


def part_coldstart(prof, repeat, tmp, results):
    runs = [coldstart_run(tmp, prof) for _ in range(repeat)]
    row = dict(runs[0])
    for k in ("seconds", "identifies", "refused_identifies", "violations", "redis_idle_per_s",
              "redis_busy_per_s", "redis_idle_per_node", "redis_busy_per_node"):
        row[k] = median(r[k] for r in runs)
    row["seconds_all"] = [r["seconds"] for r in runs]
    row["runs"] = runs
    log("  cold start %d shards: %.1f s (runs %s); ideal %.1f s (window), %.1f s (slot); "
        "IDENTIFYs %s (refused %s), violations %s; Redis %.0f / %.0f commands/s per node "
        "(idle / busy)" % (row["shards"], row["seconds"],
                           ", ".join("%.1f" % v for v in row["seconds_all"]), row["ideal_s"],
                           row["ideal_slot_s"], row["identifies"], row["refused_identifies"],
                           row["violations"], row["redis_idle_per_node"],
                           row["redis_busy_per_node"]))
    results["coldstart"] = row


# -- output ---------------------------------------------------------------------------------------
def top(calls, n=5):
    return ", ".join("%s %.1f" % (k, v) for k, v in
                     sorted(calls.items(), key=lambda kv: -kv[1])[:n]) or "-"


def markdown(results, repeat, command):
    L = [headline(command, repeat, results["meta"]["when"])]
    if results.get("takeover"):
        L += ["", "**Takeover** (`kill -9` of the node holding the most shards, 3 nodes; from the "
              "kill to the last of its shards RESUMED at the receiver):", "",
              "| shards | lease_ms | shards moved | last RESUMED, s (each run) | lease + 2 s | "
              "first RESUMED, s | IDENTIFYs after the kill | new sessions | duplicates |",
              "|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
        for r in results["takeover"]:
            L.append("| %d | %d | %s | %.2f (%s) | %.1f | %.2f | %s | %s | %s |" % (
                r["shards"], r["lease_ms"], r["moved"], r["last_resumed_s"] or -1,
                ", ".join("%.2f" % (v or -1) for v in r["last_resumed_all"]),
                r["lease_ms"] / 1000.0 + 2, r["first_resumed_s"] or -1,
                r["identifies_after_kill"], r["new_sessions"], r["duplicates"]))
    c = results.get("coldstart")
    if c:
        L += ["", "**Cold start** (3 nodes started together; the nodes' start to the last READY "
              "at the receiver):", "",
              "| shards | max_concurrency | window ms | slot PX ms | measured s (each run) | "
              "ideal s: ceil(shards/mc) x window | ideal s with the slot's PX | IDENTIFYs "
              "accepted / refused | violations |",
              "|---:|---:|---:|---:|---|---:|---:|---|---:|"]
        L.append("| %d | %d | %d | %d | %.1f (%s) | %.1f | %.1f | %s / %s | %s |" % (
            c["shards"], c["max_concurrency"], c["window_ms"], c["slot_px_ms"], c["seconds"],
            ", ".join("%.1f" % v for v in c["seconds_all"]), c["ideal_s"], c["ideal_slot_s"],
            c["identifies"], c["refused_identifies"], c["violations"]))
        L += ["", "**Balance after the cold start** (rule 6; shards per node right after the last "
              "READY, then once every node is within one of an even share):", "",
              "| run | right after the start | balanced | seconds to balance | Redis commands/s "
              "per node meanwhile | the largest, per s |", "|---:|---|---|---:|---:|---|"]
        for i, r in enumerate(c["runs"]):
            per = lambda d: " / ".join("%s %d" % kv for kv in sorted(d.items()))
            took = r["balanced_s"]
            quick = took is not None and took < 1  # balanced at once: no window to speak of
            L.append("| %d | %s | %s | %s | %s | %s |" % (
                i + 1, per(r["per_node_start"]), per(r["per_node"]),
                "%.0f" % took if took is not None else "not within %d s"
                % results["meta"]["settings"]["balance_s"],
                "-" if quick else "%.1f" % (r["redis_balance_per_s"] / NODES),
                "-" if quick else top(r["redis_balance_calls"], 4)))
        L += ["", "**Redis load** (%d shards held by 3 nodes, balanced; INFO stats "
              "total_commands_processed over %d s):"
              % (c["shards"], results["meta"]["settings"]["window_s"]), "",
              "| traffic | commands/s, all nodes | per node | the largest, per s (first run) |",
              "|---|---:|---:|---|"]
        L.append("| idle | %.1f | %.1f | %s |" % (c["redis_idle_per_s"], c["redis_idle_per_node"],
                                                  top(c["runs"][0]["redis_idle_calls"])))
        L.append("| 1 event per shard per s | %.1f | %.1f | %s |" % (
            c["redis_busy_per_s"], c["redis_busy_per_node"],
            top(c["runs"][0]["redis_busy_calls"])))
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one short run of each part")
    ap.add_argument("--repeat", type=int, help="runs per figure, medians reported (default 3)")
    ap.add_argument("--parts", default="takeover,coldstart")
    ap.add_argument("--json", help="write every figure and every run here")
    ap.add_argument("--markdown", help="write the tables here too")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = ap.parse_args()
    name = "quick" if args.quick else "full"
    prof = PROFILES[name]
    repeat = args.repeat or prof["repeat"]
    for b in ("shardhook", "fake-discord"):
        if not os.access(str(harness.build_dir() / b), os.X_OK):
            sys.exit("bench/cluster.py: %s is missing: run `make bench-cluster`"
                     % (harness.build_dir() / b))
    if not shutil.which("redis-server"):
        sys.exit("bench/cluster.py: redis-server is missing (scripts/install-deps installs it)")
    raise_fd_limit()
    tmp = tempfile.mkdtemp(prefix="shardhook-bench-cluster-")
    why = lab.cluster_refused(tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    if why:
        sys.exit("bench/cluster.py: this build has no cluster mode: %s" % why)
    command = "python3 bench/cluster.py" + (" --quick" if args.quick else "") + (
        " --repeat %d" % args.repeat if args.repeat else "")
    results = {"meta": {"profile": name, "repeat": repeat, "command": command,
                        "when": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(),
                        "settings": prof}}

    run_parts("bench/cluster.py", (("takeover", part_takeover), ("coldstart", part_coldstart)),
              args.parts.split(","), prof, repeat, results, args.keep)
    write_results("bench/cluster.py", results, markdown(results, repeat, command), args.markdown,
                  args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
