"""bench/clusterlab.py: what `make demo-cluster` (scripts/demo-cluster) and bench/cluster.py
share to run a shardhook cluster on loopback: a throwaway redis-server (a temp folder, a free
port, AOF on, a password, noeviction), the fake Discord, a webhook receiver that verifies every
signature and records each event's (shard, session, s, key), shardhook nodes with a `cluster`
block, who holds which shard, and the audit of what the receiver got against what the fake sent.

Every process is a bench/common.py Proc in a process group of its own, stopped by its pid
(stop_all() on the way out); nothing touches the system's Redis service. Standard library only.
docs/cluster.md describes the cluster; this module only drives and watches it.
"""
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict

from common import Proc, free_port, wait

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from receiver import Receiver, verify_signature  # noqa: E402

TOKEN = "test-token"  # not a bot token: the application id is its hash (docs/cluster.md)
HELD = ("ready",)  # a shard counts as running on a node in this status


# -- Redis ---------------------------------------------------------------------------------------
class RedisError(Exception):
    pass


class RedisClient:
    """A blocking RESP2 client, enough for PING, AUTH, INFO and the odd key look-up."""

    def __init__(self, port, password=None, host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.rf = self.sock.makefile("rb")
        if password:
            self.cmd("AUTH", password)

    def close(self):
        self.rf.close()
        self.sock.close()

    def cmd(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def _reply(self):
        line = self.rf.readline()
        if not line.endswith(b"\r\n"):
            raise RedisError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.rf.read(n + 2)[:-2]
            return data.decode("utf-8", "replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RedisError("unexpected reply %r" % line)


def parse_info(text):
    """INFO's `name:value` lines -> dict (numbers as numbers; `a=1,b=2` values as dicts)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        name, value = line.split(":", 1)
        if "=" in value and "," in value or name.startswith("cmdstat_"):
            fields = {}
            for part in value.split(","):
                k, _, v = part.partition("=")
                fields[k] = _number(v)
            out[name] = fields
        else:
            out[name] = _number(value)
    return out


def _number(v):
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
    return v


class RedisServer:
    """redis-server on a free loopback port, its data in workdir/redis: AOF (everysec) on, a
    password from the config file (never the command line), maxmemory-policy noeviction, no
    RDB snapshots. start() waits for PING; stop() ends it by its pid."""

    def __init__(self, workdir, binary="redis-server", password=None, appendonly=True):
        self.dir = os.path.join(workdir, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.binary = binary
        self.password = password or secrets.token_hex(16)
        self.appendonly = appendonly
        self.port = None
        self.proc = None

    def start(self, port=None, timeout=10):
        """Start (or start again on the same port and data, after stop() or kill())."""
        self.port = port or self.port or free_port()
        conf = os.path.join(self.dir, "redis.conf")
        with open(conf, "w") as f:
            f.write("port %d\nbind 127.0.0.1\nprotected-mode yes\ndir %s\n"
                    "appendonly %s\nappendfsync everysec\nsave \"\"\n"
                    "maxmemory-policy noeviction\nrequirepass %s\ndaemonize no\n"
                    % (self.port, self.dir, "yes" if self.appendonly else "no", self.password))
        os.chmod(conf, 0o600)
        self.proc = Proc([self.binary, conf], os.path.join(self.dir, "redis.log"))

        def up():
            if not self.proc.alive():
                raise RuntimeError("redis-server exited: " + self.proc.tail())
            try:
                return self.cmd("PING") == "PONG"
            except (OSError, RedisError):
                return False
        wait(up, timeout, "redis-server on port %d" % self.port, interval=0.05)
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return bool(self.proc) and self.proc.alive()

    def url(self, password="${SHARDHOOK_REDIS_PASSWORD}"):
        """The `cluster.redis` value; by default the password comes from the environment."""
        return "redis://:%s@127.0.0.1:%d/0" % (password, self.port)

    def env(self):
        return {"SHARDHOOK_REDIS_PASSWORD": self.password}

    def cmd(self, *args):
        c = RedisClient(self.port, self.password)
        try:
            return c.cmd(*args)
        finally:
            c.close()

    def info(self, section=None):
        return parse_info(self.cmd("INFO", section) if section else self.cmd("INFO"))

    def stop(self, grace=5):
        if self.proc:
            self.proc.stop(grace=grace)

    def kill(self):
        """SIGKILL by pid, as a crash would."""
        if self.proc and self.proc.alive():
            os.kill(self.proc.pid, 9)
            self.proc.proc.wait()
        self.stop(grace=0)


# -- the fake Discord ----------------------------------------------------------------------------
class Fake:
    """build/fake-discord on a free port; options as its --flags, e.g. shards=8, trickle_ms=200."""

    def __init__(self, build, workdir, **options):
        argv = [os.path.join(build, "fake-discord"), "--port", "0", "--token", TOKEN]
        for k, v in options.items():
            argv += ["--" + k.replace("_", "-"), str(v)]
        self.proc = Proc(argv, os.path.join(workdir, "fake-discord.log"), stdout_pipe=True)
        line = self.proc.proc.stdout.readline().decode()
        if "listening" not in line:
            raise RuntimeError("fake-discord did not start: " + self.proc.tail())
        self.port = int(line.rsplit("=", 1)[1])
        self.url = "http://127.0.0.1:%d" % self.port

    def call(self, path, body=None, timeout=60):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def log(self):
        return self.call("/_fake/log")

    def stop(self):
        self.proc.stop(grace=5)


def identifies(fake_log):
    """IDENTIFY payloads the fake received, as (conn, t_ms, shard)."""
    out = []
    for e in fake_log["received"]:
        if e["op"] == 2:
            d = (e.get("payload") or {}).get("d") or {}
            shard = d.get("shard") or [None]
            out.append((e["conn"], e["t_ms"], shard[0]))
    return out


# -- the receiver --------------------------------------------------------------------------------
def key_parts(key):
    """"3:9f2c:42" -> (3, "9f2c", "42"); None when the key is not of that form."""
    if not isinstance(key, str):
        return None
    first, _, rest = key.partition(":")
    session, _, last = rest.rpartition(":")
    if not first.isdigit() or not session or not last:
        return None
    return int(first), session, last


class EventLog:
    """A webhook receiver that answers 401 to a batch whose Standard Webhooks signature does not
    verify and 200 otherwise, and records every event of a verified batch as a dict: at (arrival,
    time.monotonic()), shard, session, s, key, t, and d for READY, RESUMED and
    SHARDHOOK_SESSION_LOST. The session comes from the event's idempotency key
    ("<shard>:<session_id>:<s>"), or, for a build without keys, from the shard's last READY."""

    def __init__(self, secret):
        self.secret = secret
        self.lock = threading.Lock()
        self.events = []
        self.batches = 0
        self.bad_signatures = 0
        self.keyless = 0
        self._ready_session = {}
        self.rx = Receiver(status=self._answer)
        self.url = self.rx.url_for("/events")

    def _answer(self, request):
        if not verify_signature(self.secret, request.headers, request.body):
            with self.lock:
                self.bad_signatures += 1
            return 401
        now = time.monotonic()
        with self.lock:
            self.batches += 1
            for ev in request.events:
                self._record(ev, now)
        return 200

    def _record(self, ev, now):
        shard = (ev.get("shard") or [None])[0]
        t, s, key = ev.get("t"), ev.get("s"), ev.get("key")
        d = ev.get("d") if isinstance(ev.get("d"), dict) else {}
        parts = key_parts(key)
        if t == "READY" and d.get("session_id"):
            self._ready_session[shard] = d["session_id"]
        if parts:
            session = parts[1]
        else:
            self.keyless += 1
            session = self._ready_session.get(shard, "-")
        rec = {"at": now, "shard": shard, "session": session, "s": s, "key": key, "t": t}
        if t in ("READY", "RESUMED", "SHARDHOOK_SESSION_LOST"):
            rec["d"] = d
        self.events.append(rec)

    def snapshot(self):
        with self.lock:
            return list(self.events)

    def count(self):
        with self.lock:
            return len(self.events)

    def stop(self):
        self.rx.stop()


def audit(events, sessions):
    """What the receiver got against what the fake sent.

    sessions: the fake log's "sessions" (session_id, shard, seq: the last s it sent in that
    session). For each, every s from 1 to seq must have arrived; an s missing after the seq of a
    SHARDHOOK_SESSION_LOST for that session is an announced gap, any other is missing.
    Duplicates: events whose key (or, without keys, (shard, session, s)) arrived before."""
    got = defaultdict(set)
    seen = Counter()
    lost = {}
    for e in events:
        if e["s"] is not None:
            got[(e["shard"], e["session"])].add(e["s"])
        ident = e["key"] or ("%s:%s:%s" % (e["shard"], e["session"], e["s"])
                             if e["s"] is not None else None)
        if ident:
            seen[ident] += 1
        if e["t"] == "SHARDHOOK_SESSION_LOST":
            d = e.get("d") or {}
            lost[(e["shard"], d.get("session_id"))] = (d.get("seq") or 0, d.get("reason"))
    missing, announced, detail = 0, 0, []
    for sess in sessions:
        k = (sess["shard"], sess["session_id"])
        have = got.get(k, set())
        gap = [s for s in range(1, sess["seq"] + 1) if s not in have]
        floor = lost[k][0] if k in lost else None
        told = [s for s in gap if floor is not None and s > floor]
        untold = [s for s in gap if floor is None or s <= floor]
        missing += len(untold)
        announced += len(told)
        if untold:
            detail.append({"shard": sess["shard"], "session_id": sess["session_id"],
                           "sent": sess["seq"], "missing": len(untold), "first": untold[:10]})
    return {
        "events": len(events),
        "sessions": len(sessions),
        "sent": sum(s["seq"] for s in sessions),
        "missing": missing,
        "announced_gap": announced,
        "duplicates": sum(n - 1 for n in seen.values()),
        "sessions_lost": [{"shard": k[0], "session_id": k[1], "seq": v[0], "reason": v[1]}
                          for k, v in sorted(lost.items(), key=lambda kv: str(kv[0]))],
        "missing_detail": detail[:20],
    }


def settle(fake, log, timeout, quiet=2.0):
    """The fake's sessions once the receiver has every s the fake had sent when this was
    called (or nothing new arrived for `quiet` seconds, or timeout): the audit's yardstick."""
    sessions = fake.log()["sessions"]
    deadline = time.monotonic() + timeout
    last_count, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        top = defaultdict(int)
        for e in log.snapshot():
            if e["s"] is not None:
                top[(e["shard"], e["session"])] = max(top[(e["shard"], e["session"])], e["s"])
        if all(top[(s["shard"], s["session_id"])] >= s["seq"] for s in sessions):
            break
        n = log.count()
        if n != last_count:
            last_count, last_change = n, time.monotonic()
        elif time.monotonic() - last_change > quiet:
            break
        time.sleep(0.1)
    return sessions


# -- shardhook nodes -----------------------------------------------------------------------------
class Node:
    """One shardhook process with its own config, state folder, API port and log (JSON lines)."""

    def __init__(self, build, workdir, name, config, env=None):
        self.build, self.name, self.config = build, name, config
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.config_path = os.path.join(self.dir, "shardhook.json")
        self.log_path = os.path.join(self.dir, "shardhook.log")
        self.api_url = "http://%s" % config["http"]["listen"]
        self.env = dict(os.environ)
        self.env.pop("DISCORD_TOKEN", None)
        self.env.update(env or {})
        self.proc = None
        self.killed_at = None

    def start(self):
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=1)
        self.proc = Proc([os.path.join(self.build, "shardhook"), "-c", self.config_path],
                         self.log_path, env=self.env)
        self.killed_at = None
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return bool(self.proc) and self.proc.alive()

    def api(self, path, body=None, timeout=5.0):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api_url + path, data=data,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"{}")

    def kill(self, sig=9):
        """A signal by pid (SIGKILL by default: a crash); returns time.monotonic() of it."""
        self.killed_at = time.monotonic()
        os.kill(self.proc.pid, sig)
        if sig == 9:
            self.proc.proc.wait()
        return self.killed_at

    def stop(self, grace=15):
        if self.proc:
            self.proc.stop(grace=grace)

    def records(self):
        """The log's JSON lines as dicts (other lines are skipped)."""
        out = []
        try:
            with open(self.log_path, errors="replace") as f:
                for line in f:
                    if line.startswith("{"):
                        try:
                            out.append(json.loads(line))
                        except ValueError:
                            pass
        except OSError:
            pass
        return out

    def tail(self, n=3000):
        return self.proc.tail(n) if self.proc else ""


def node_config(name, fake, receiver_url, secret, workdir, redis=None, lease_ms=None,
                total=None, ids=None, interval_ms=None, max_shards=None, log_level="info",
                batch_delay_ms=25):
    """A node's config: every event to one webhook, logs as JSON, the API on a free port, and a
    `cluster` block when redis is given (else, with ids, a static share of the shards)."""
    port = free_port()
    shards = "auto"
    if total is not None:
        shards = {"total": total}
        if ids is not None:
            shards["ids"] = list(ids)
    cfg = {
        "token": TOKEN, "api_base": fake.url + "/api/v10",
        "intents": ["GUILDS", "GUILD_MESSAGES"], "shards": shards,
        "identify_concurrency": "auto",
        "webhooks": [{"url": receiver_url, "events": ["*"], "secret": secret,
                      "max_batch_events": 100, "max_batch_delay_ms": batch_delay_ms}],
        "http": {"listen": "127.0.0.1:%d" % port},
        "state_dir": os.path.join(workdir, name, "state"),
        "log_level": log_level, "log_format": "json", "shutdown_timeout_ms": 5000,
    }
    if interval_ms is not None:
        cfg["testing"] = {"identify_interval_ms": interval_ms}
    if redis is not None:
        cfg["cluster"] = {"redis": redis.url(), "node": name,
                          "advertise": "http://127.0.0.1:%d" % port}
        if lease_ms is not None:
            cfg["cluster"]["lease_ms"] = lease_ms
        if max_shards is not None:
            cfg["cluster"]["max_shards"] = max_shards
    return cfg


def holdings(nodes):
    """{shard: node name} of the shards running (status ready) on the live nodes, from each
    node's GET /v1/shards. An entry naming another node (the cluster-wide view) is left to that
    node's own answer; a shard two nodes claim goes to the list of conflicts."""
    owner, conflicts = {}, []
    for n in nodes:
        if not n.alive():
            continue
        try:
            ans = n.api("/v1/shards")
        except (OSError, ValueError, urllib.error.URLError):
            continue
        for e in ans.get("shards", []):
            if e.get("node", n.name) != n.name or e.get("stale"):
                continue
            if e.get("status") in HELD:
                if e["id"] in owner and owner[e["id"]] != n.name:
                    conflicts.append((e["id"], owner[e["id"]], n.name))
                owner[e["id"]] = n.name
    return owner, conflicts


def cluster_refused(build, workdir):
    """None when this build accepts a `cluster` block, else the check's one line saying why."""
    cfg = {"token": TOKEN, "webhooks": [], "state_dir": os.path.join(workdir, "probe"),
           "cluster": {"redis": "redis://127.0.0.1:1/0", "node": "probe"}}
    path = os.path.join(workdir, "probe.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    r = subprocess.run([os.path.join(build, "shardhook"), "--check", "-c", path],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    return None if r.returncode == 0 else (r.stdout.strip().splitlines() or ["?"])[-1]


def by_node(owner):
    out = defaultdict(list)
    for shard, name in owner.items():
        out[name].append(shard)
    return {k: sorted(v) for k, v in sorted(out.items())}


def ranges(ids):
    """[0,1,2,5,7,8] -> "0-2,5,7-8"."""
    out, ids = [], sorted(ids)
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(str(ids[i]) if i == j else "%d-%d" % (ids[i], ids[j]))
        i = j + 1
    return ",".join(out) or "-"


def takeover(log, shards, since):
    """{shard: seconds from `since` to its first RESUMED event at the receiver after since} for
    the shards that have one, and {shard: seconds} for those that got a READY instead."""
    resumed, ready = {}, {}
    want = set(shards)
    for e in log.snapshot():
        if e["at"] < since or e["shard"] not in want:
            continue
        if e["t"] == "RESUMED" and e["shard"] not in resumed:
            resumed[e["shard"]] = e["at"] - since
        elif e["t"] == "READY" and e["shard"] not in ready:
            ready[e["shard"]] = e["at"] - since
    return resumed, ready
