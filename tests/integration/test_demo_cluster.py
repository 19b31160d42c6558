"""`make demo-cluster` and what it shares with bench/cluster.py (bench/clusterlab.py): the
throwaway redis-server is what docs/cluster.md asks for (AOF, a password, noeviction) and goes
away by its pid; the audit of the receiver counts a missing event, an announced gap and a
duplicate as such; the demo fails when the killed node's shards stay down (--static, no cluster
block) and, with the cluster, shows them RESUMEd elsewhere with no event missing and no
IDENTIFY after the kill."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

sys.path.insert(0, str(harness.ROOT / "bench"))
import clusterlab as lab  # noqa: E402
from common import stop_all  # noqa: E402

DEMO = harness.ROOT / "scripts" / "demo-cluster"


def test_throwaway_redis_has_aof_password_noeviction_and_stops_by_pid(tmp):
    r = lab.RedisServer(str(tmp))
    try:
        r.start(timeout=harness.scale(10))
        assert r.cmd("CONFIG", "GET", "appendonly") == ["appendonly", "yes"]
        assert r.cmd("CONFIG", "GET", "maxmemory-policy") == ["maxmemory-policy", "noeviction"]
        try:
            lab.RedisClient(r.port).cmd("GET", "x")
            raise AssertionError("redis answered without the password")
        except lab.RedisError as e:
            assert "NOAUTH" in str(e), e
        assert r.password not in " ".join(open("/proc/%d/cmdline" % r.pid).read().split("\0"))
        r.cmd("SET", "k", "1")
        r.kill()  # kill -9, then the same port and folder: AOF brings the key back
        r.start(timeout=harness.scale(10))
        assert r.cmd("GET", "k") == "1"
        pid = r.pid
        r.stop()
        assert not os.path.exists("/proc/%d" % pid), "redis-server still runs after stop()"
    finally:
        stop_all()


def ev(shard, session, s, t="MESSAGE_CREATE", d=None):
    return {"at": 0.0, "shard": shard, "session": session, "s": s, "t": t, "d": d,
            "key": "%d:%s:%s" % (shard, session, s)}


def test_audit_counts_missing_announced_gaps_and_duplicates():
    sessions = [{"session_id": "aa", "shard": 0, "seq": 5},
                {"session_id": "bb", "shard": 1, "seq": 4},
                {"session_id": "cc", "shard": 1, "seq": 2}]
    events = [ev(0, "aa", s) for s in (1, 2, 3, 5)]          # 4 missing
    events += [ev(0, "aa", 3)]                                 # a duplicate
    events += [ev(1, "bb", s) for s in (1, 2)]                 # 3 and 4 lost, announced from 2
    events += [ev(1, "cc", 1, "READY"), ev(1, "cc", 2)]
    lost = ev(1, "cc", 3, "SHARDHOOK_SESSION_LOST",
              {"session_id": "bb", "seq": 2, "reason": "invalid_session"})
    lost["s"], lost["key"] = None, "1:cc:2.1"
    events.append(lost)
    a = lab.audit(events, sessions)
    assert a["missing"] == 1 and a["missing_detail"][0]["first"] == [4], a
    assert a["announced_gap"] == 2, a
    assert a["duplicates"] == 1, a
    assert a["sessions_lost"] == [{"shard": 1, "session_id": "bb", "seq": 2,
                                   "reason": "invalid_session"}], a
    assert lab.key_parts("12:9f2c:42") == (12, "9f2c", "42")
    assert lab.key_parts("3:-:0.2") == (3, "-", "0.2")
    assert lab.key_parts("nope") is None


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
    assert "missing         0" in out, out


@harness.timeout(300)
def test_demo_cluster_resumes_the_killed_nodes_shards_elsewhere_with_nothing_missing(tmp):
    why = lab.cluster_refused(str(harness.build_dir()), str(tmp))
    if why:
        raise harness.Skip("this build has no cluster mode: %s" % why)
    code, out = run_demo(tmp, seconds=4)
    assert code == 0, out
    assert "not running anywhere" not in out, out
    assert "missing         0" in out, out
    assert "IDENTIFYs       0 after the kill" in out, out
    assert "RESUMEd on other nodes" in out, out
