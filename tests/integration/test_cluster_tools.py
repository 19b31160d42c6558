"""`make demo-cluster`, `make bench-cluster` and what they add to the cluster tests' machinery
(bench/clusterlab.py): the audit of the receiver counts a missing event, an announced gap (after a
SHARDHOOK_SESSION_LOST) and a duplicate as such; the demo fails when the killed node's shards
stay down (--static, no cluster block: their events go missing) and, with the cluster, shows
them RESUMEd elsewhere with no event missing and no IDENTIFY after the kill; bench/cluster.py
--quick produces every figure (numbers, never checked against a speed)."""
import json
import math
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cluster_helpers as ch  # noqa: E402
import harness  # noqa: E402

sys.path.insert(0, str(harness.ROOT / "bench"))
import clusterlab as lab  # noqa: E402

DEMO = harness.ROOT / "scripts" / "demo-cluster"


def rec(shard, session, s, t="MESSAGE_CREATE", d=None, key=None):
    key = key or "%d:%s:%d" % (shard, session, s)
    return {"shard": shard, "total": 2, "session": session, "s": s, "key": key, "t": t,
            "node": None, "at": 0.0, "event": {"shard": [shard, 2], "t": t, "s": s, "key": key,
                                                 "d": d or {}}}


def test_audit_counts_missing_announced_gaps_and_duplicates():
    rx = ch.ClusterReceiver()
    fake_log = {"sessions": [{"session_id": "aa", "shard": 0, "seq": 5},
                             {"session_id": "bb", "shard": 1, "seq": 4},
                             {"session_id": "cc", "shard": 1, "seq": 2}]}
    rx.records = [rec(0, "aa", s) for s in (1, 2, 3, 5)]        # s 4 missing
    rx.records += [rec(0, "aa", 3)]                              # a duplicate
    rx.records += [rec(1, "bb", s) for s in (1, 2)]              # 3 and 4 lost, announced
    rx.records += [rec(1, "cc", 1, "READY"), rec(1, "cc", 2)]
    lost = rec(1, "cc", 2, "SHARDHOOK_SESSION_LOST",
               {"session_id": "bb", "seq": 2, "reason": "invalid_session"}, key="1:cc:2.1")
    lost["s"] = lost["event"]["s"] = None
    rx.records.append(lost)
    a = lab.audit(rx, fake_log)
    assert a["missing"] == 1 and "from s=4" in a["missing_detail"][0], a
    assert a["announced_gap"] == 2, a
    assert a["duplicates"] == 1, a
    assert a["sent"] == 11 and a["sessions"] == 3, a
    assert a["sessions_lost"] == [{"shard": 1, "session_id": "bb", "seq": 2,
                                   "reason": "invalid_session"}], a
    # the same session lost without its SHARDHOOK_SESSION_LOST: its gap is missing events
    rx.records.remove(lost)
    assert lab.audit(rx, fake_log)["missing"] == 3


def test_receiver_stays_quiet_when_a_killed_sender_resets_its_connection():
    """A node killed with SIGKILL resets its keep-alive connections to the receiver; the demo's
    and the benchmark's output must not fill with tracebacks for it."""
    import contextlib
    import io
    import socket
    import time
    rx = ch.ClusterReceiver()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        s = socket.create_connection(("127.0.0.1", rx.port))
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        harness.wait_for(lambda: rx.requests, 5, what="the request")
        s.recv(4096)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        s.close()  # an RST, as from a killed process
        time.sleep(0.5)
        rx.stop()
    assert err.getvalue() == "", err.getvalue()


def run_demo(tmp, *args, seconds=3):
    env = dict(os.environ, BUILD=str(harness.build_dir()), DEMO_SECONDS=str(seconds),
               DEMO_SHARDS="6", DEMO_LEASE_MS="2000", TMPDIR=str(tmp))
    r = subprocess.run([sys.executable, str(DEMO)] + list(args), env=env, cwd=str(harness.ROOT),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=harness.scale(240))
    (tmp / "demo-output.txt").write_text(r.stdout)
    return r.returncode, r.stdout


@harness.timeout(300)
def test_demo_without_cluster_fails_when_the_killed_nodes_shards_stay_down(tmp):
    code, out = run_demo(tmp, "--static")
    assert code == 1, out
    assert "kill -9 node" in out, out
    assert out.count("not running anywhere") >= 1, out
    assert "no shard of node" in out and "was RESUMEd elsewhere" in out, out
    # the fake kept streaming to the dead node's sessions, and nobody resumed them
    assert re.search(r"^missing +[1-9][0-9]*$", out, re.M), out


@harness.timeout(300)
def test_demo_cluster_resumes_the_killed_nodes_shards_elsewhere_with_nothing_missing(tmp):
    why = lab.cluster_refused(str(tmp))
    if why:
        raise harness.Skip("this build has no cluster mode: %s" % why)
    code, out = run_demo(tmp, seconds=4)
    assert code == 0, out
    assert "not running anywhere" not in out, out
    assert "missing         0" in out, out
    assert "IDENTIFYs       0 after the kill" in out, out
    assert "RESUMEd on other nodes" in out, out


@harness.timeout(400)
def test_bench_cluster_quick_produces_every_figure(tmp):
    why = lab.cluster_refused(str(tmp))
    if why:
        raise harness.Skip("this build has no cluster mode: %s" % why)
    out = tmp / "cluster.json"
    env = dict(os.environ, BUILD=str(harness.build_dir()))
    r = subprocess.run([sys.executable, str(harness.ROOT / "bench" / "cluster.py"), "--quick",
                        "--json", str(out)], env=env, cwd=str(harness.ROOT),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=harness.scale(380))
    assert r.returncode == 0, harness.tail(r.stdout, 40)
    res = json.loads(out.read_text())

    def number(row, k):
        v = row[k]
        assert isinstance(v, (int, float)) and math.isfinite(v), (k, row)
        return v
    for row, (shards, lease) in zip(res["takeover"], res["meta"]["settings"]["takeover"]):
        assert (row["shards"], row["lease_ms"]) == (shards, lease), row
        assert number(row, "last_resumed_s") > 0 and number(row, "moved") > 0, row
        assert row["identifies_after_kill"] == 0, row  # a takeover RESUMEs
        for run in row["runs"]:
            assert run["missing"] == 0, run
    c = res["coldstart"]
    assert c["identifies"] == c["shards"], c  # every shard identified once, none twice
    for k in ("seconds", "ideal_s", "ideal_slot_s", "redis_idle_per_node", "redis_busy_per_node"):
        assert number(c, k) > 0, k
    assert sum(c["per_node"].values()) == c["shards"], c
    assert "**Takeover**" in r.stdout and "**Redis load**" in r.stdout, r.stdout[-3000:]
