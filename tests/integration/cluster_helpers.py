"""What the cluster tests use (test_cluster.py): a throwaway redis-server, a TCP forwarder per node
(so one node can be cut off from Redis), a receiver that checks signatures and finds gaps per
(shard, session), and a Cluster of shardhook nodes that share one Redis.

    redis = RedisServer()                       # Debian's redis-server on a free loopback port
    redis.cmd("HGETALL", "shardhook:{...}:shard:3")
    redis.kill9(); redis.restart()              # same port, same folder: the AOF comes back
    fwd = TcpForwarder(redis.port); fwd.cut(); fwd.restore()
    rx = ClusterReceiver()
    cl = Cluster(3, fake, rx, redis)            # node-a, node-b, node-c, each through a forwarder
    held = cl.wait_held()                       # {"node-a": [0, 3, ...], ...}: every shard ready
    rx.report()                                 # missing s and duplicates per (shard, session)

Everything started here is stopped after the test (harness.end_test), redis-server by its pid.
Standard library only: Redis is spoken to through a small RESP client below.
"""
import base64
import hashlib
import os
import secrets
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import harness

APP_TOKEN = "test-token"
LEASE_MS = 2000
IDENTIFY_INTERVAL_MS = 500


def app_id(token=APP_TOKEN):
    """The cluster's key tag for token (docs/cluster.md): the token's first part base64-decoded
    when that is all digits, else the first 16 hex digits of its SHA-256."""
    first = token.split(".", 1)[0]
    try:
        decoded = base64.b64decode(first + "=" * (-len(first) % 4), validate=True).decode()
        if decoded.isdigit():
            return decoded
    except (ValueError, UnicodeDecodeError):
        pass
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def key(name, token=APP_TOKEN):
    """shardhook:{app}:<name>, e.g. key("shard:3")."""
    return "shardhook:{%s}:%s" % (app_id(token), name)


def require_redis():
    """harness.Skip when Debian's redis-server is not installed (scripts/install-deps installs it)."""
    exe = shutil.which("redis-server")
    if not exe:
        raise harness.Skip("redis-server is not installed (scripts/install-deps installs it)")
    return exe


def _register(obj):
    """Stopped by harness.end_test() with the receivers (anything with stop())."""
    harness.test_dir()
    harness._ctx.receivers.append(obj)


# -- a small RESP client -----------------------------------------------------------------------
class RedisError(Exception):
    """An error reply (-ERR ...) from Redis."""


class RespClient:
    """One connection speaking RESP2. cmd() sends a command and returns its reply: str for simple
    and bulk strings (None for nil), int, list; an error reply raises RedisError."""

    def __init__(self, host, port, password=None, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=harness.scale(timeout))
        self.buf = b""
        if password:
            self.cmd("AUTH", password)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def cmd(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode("utf-8", "replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RedisError("unexpected reply %r" % line)


# -- redis-server --------------------------------------------------------------------------------
class RedisServer(harness.Process):
    """Debian's redis-server on a free loopback port in its own folder of the test folder, with
    AOF (everysec), no RDB snapshots, noeviction and a random password, started and stopped by
    its pid. kill9() crashes it; restart() starts it again on the same port and folder (what the
    AOF kept comes back)."""

    def __init__(self, tmp=None, port=None, start=True):
        super().__init__("redis-server", tmp)
        self.exe = require_redis()
        self.port = port or harness.free_port()
        self.password = secrets.token_hex(16)
        self.data_dir = self.ctx.unique("redis", "")
        self.data_dir.mkdir(parents=True)
        self.conf = self.data_dir / "redis.conf"
        # The password in a file of the test folder rather than on the command line.
        self.conf.write_text("\n".join([
            "bind 127.0.0.1", "port %d" % self.port, "dir %s" % self.data_dir,
            "appendonly yes", "appendfsync everysec", 'save ""', "maxmemory-policy noeviction",
            "requirepass %s" % self.password, "daemonize no", "protected-mode yes",
            'logfile ""', ""]))
        self._client = None
        if start:
            self.start()

    @property
    def url(self):
        """redis://:PASSWORD@127.0.0.1:PORT/0 (the password itself: keep it out of configs)."""
        return "redis://:%s@127.0.0.1:%d/0" % (self.password, self.port)

    def start(self, timeout=10.0):
        if self.alive():
            raise AssertionError("redis-server is already running (pid %d)" % self.pid)
        self._drop_client()
        self.spawn([self.exe, str(self.conf)])
        since = 0
        self.wait_log(r"Ready to accept connections", timeout, since)
        harness.wait_for(lambda: self.cmd("PING") == "PONG", timeout, 0.05, "redis PING")
        return self

    def restart(self, timeout=10.0):
        """Start again on the same port and folder (after kill9() or stop())."""
        return self.start(timeout)

    def kill9(self):
        """SIGKILL, as a crash; the AOF keeps what was fsynced (everysec)."""
        self._drop_client()
        self.kill()

    def client(self):
        """A new RespClient, authenticated."""
        return RespClient("127.0.0.1", self.port, self.password)

    def cmd(self, *args):
        """One command on a kept connection (reconnecting once if it broke)."""
        for attempt in (0, 1):
            try:
                if self._client is None:
                    self._client = self.client()
                return self._client.cmd(*args)
            except (OSError, ConnectionError):
                self._drop_client()
                if attempt:
                    raise

    def hgetall(self, name):
        flat = self.cmd("HGETALL", name) or []
        return dict(zip(flat[0::2], flat[1::2]))

    def shard(self, shard_id, token=APP_TOKEN):
        """The shard:<id> hash as a dict (owner, owner_epoch, fence, session_id, seq, ...)."""
        return self.hgetall(key("shard:%d" % shard_id, token))

    def _drop_client(self):
        if self._client is not None:
            self._client.close()
            self._client = None

    def stop(self, timeout=10.0):
        self._drop_client()
        return super().stop(timeout)


# -- a TCP forwarder ---------------------------------------------------------------------------
class TcpForwarder:
    """127.0.0.1:<port> forwarded to target (a loopback port), one thread per direction per
    connection. cut() cuts it: "close" (default) closes every connection and refuses new ones
    (the port stops listening), "blackhole" keeps connections open and accepts new ones but
    forwards nothing either way (a partition that no socket notices). restore() forwards again
    on the same port."""

    def __init__(self, target_port, target_host="127.0.0.1", port=None):
        self.target = (target_host, int(target_port))
        self.port = port or harness.free_port()
        self._lock = threading.Lock()
        self._pairs = set()
        self._mode = None  # None: forwarding; "close" or "blackhole": cut
        self._listener = None
        self._stopping = False
        self.accepted = 0  # connections accepted so far
        self._listen()
        _register(self)

    # -- control --------------------------------------------------------------------------
    @property
    def is_cut(self):
        return self._mode is not None

    def cut(self, mode="close"):
        if mode not in ("close", "blackhole"):
            raise ValueError("mode: close or blackhole")
        with self._lock:
            self._mode = mode
            pairs = list(self._pairs)
        if mode == "close":
            self._close_listener()
            for pair in pairs:
                self._close_pair(pair)

    def restore(self):
        with self._lock:
            mode, self._mode = self._mode, None
            pairs = list(self._pairs)
        if mode == "blackhole":
            for pair in pairs:  # what was held during the partition is stale: start afresh
                self._close_pair(pair)
        if self._listener is None:
            self._listen()

    def connections(self):
        with self._lock:
            return len(self._pairs)

    def stop(self):
        self._stopping = True
        self._close_listener()
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            self._close_pair(pair)

    # -- machinery ------------------------------------------------------------------------
    def _listen(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + harness.scale(5)
        while True:
            try:
                s.bind(("127.0.0.1", self.port))
                break
            except OSError:
                if time.monotonic() >= deadline:
                    s.close()
                    raise
                time.sleep(0.05)
        s.listen(64)
        self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True,
                         name="forwarder-%d" % self.port).start()

    def _close_listener(self):
        s, self._listener = self._listener, None
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by cut() or stop()
            if self._stopping:
                client.close()
                return
            self.accepted += 1
            upstream = None
            if self._mode is None:
                try:
                    upstream = socket.create_connection(self.target, timeout=harness.scale(5))
                    upstream.settimeout(None)
                except OSError:
                    client.close()  # nothing listens behind: the client sees the close
                    continue
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._pump, args=(client, upstream, pair), daemon=True).start()
            if upstream is not None:
                threading.Thread(target=self._pump, args=(upstream, client, pair),
                                 daemon=True).start()

    def _pump(self, src, dst, pair):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self._mode is not None or dst is None:
                    continue  # blackhole: swallowed
                dst.sendall(data)
        except OSError:
            pass
        self._close_pair(pair)

    def _close_pair(self, pair):
        with self._lock:
            self._pairs.discard(pair)
        for s in pair:
            if s is None:
                continue
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


# -- the receiver ------------------------------------------------------------------------------
def parse_key(k):
    """"<shard>:<session>:<s>" or "<shard>:<session>:<last s>.<n>" -> (shard, session, s, n):
    s an int (None for "-"), n 0 for an event with an s. ValueError when malformed."""
    shard, rest = k.split(":", 1)
    session, tail = rest.rsplit(":", 1)
    if "." in tail:
        s, n = tail.split(".", 1)
        return int(shard), session, (None if s == "-" else int(s)), int(n)
    return int(shard), session, int(tail), 0


class ClusterReceiver(harness.Receiver):
    """A receiver that checks every request's Standard Webhooks signature against secret and
    records every event of the 2xx-answered batches as a dict: shard, total, session (from the
    event's idempotency key), s, key, t, node (a header naming the sending node, if any), at.

    report() says, for every (shard, session), which s are missing between the first and the
    last seen (or from 1 up to a given last), and how many events came more than once."""

    NODE_HEADERS = ("shardhook-node", "x-shardhook-node")

    def __init__(self, secret=None, **kw):
        self.secret = secret or "whsec_" + base64.b64encode(os.urandom(32)).decode()
        self.bad_signatures = []
        self.records = []
        self.unkeyed = []  # events without a usable "key"
        self._rec_lock = threading.Lock()
        super().__init__(on_answer=self._on_answer, **kw)

    def _on_answer(self, request):
        if request.method != "POST":
            return
        if not harness.verify_signature(self.secret, request.headers, request.body):
            with self._rec_lock:
                self.bad_signatures.append(request)
            return
        if not request.ok:
            return
        node = next((request.headers[h] for h in self.NODE_HEADERS if h in request.headers), None)
        for e in request.events:
            self._record(e, node, request.time)

    def _record(self, e, node, at):
        rec = {"shard": None, "total": None, "session": None, "s": e.get("s"), "key": e.get("key"),
               "t": e.get("t"), "node": node, "at": at, "event": e}
        sh = e.get("shard")
        if isinstance(sh, list) and len(sh) == 2:
            rec["shard"], rec["total"] = sh
        try:
            kshard, rec["session"], ks, kn = parse_key(e["key"])
            if kshard != rec["shard"] or (kn == 0 and ks != rec["s"]):
                raise ValueError("key disagrees with the event")
        except (KeyError, TypeError, ValueError, AttributeError):
            with self._rec_lock:
                self.unkeyed.append(e)
            return
        with self._rec_lock:
            self.records.append(rec)

    def wait_records(self, pred, timeout=10.0, what="events"):
        """Wait until pred(records copy) is truthy; return it."""
        return harness.wait_for(lambda: pred(self.snapshot()), timeout, 0.05, what)

    def snapshot(self):
        with self._rec_lock:
            return list(self.records)

    def of_type(self, t):
        return [r for r in self.snapshot() if r["t"] == t]

    def last_s(self):
        """{(shard, session): highest s seen}."""
        out = {}
        for r in self.snapshot():
            if r["s"] is not None:
                k = (r["shard"], r["session"])
                out[k] = max(out.get(k, 0), r["s"])
        return out

    def report(self, expected_last=None, from_one=True):
        """{"missing": {(shard, session): [s, ...]}, "duplicates": {key: times seen - 1},
        "dup_count": total extra copies, "sessions": {(shard, session): (first, last, count)},
        "unkeyed": n, "bad_signatures": n}. Missing s run from 1 (from_one) or the first seen to
        the last seen, or to expected_last[(shard, session)] when given (a session the receiver
        never saw then misses everything)."""
        seen, counts = {}, {}
        for r in self.snapshot():
            counts[r["key"]] = counts.get(r["key"], 0) + 1
            if r["s"] is not None:
                seen.setdefault((r["shard"], r["session"]), set()).add(r["s"])
        missing, sessions = {}, {}
        keys = set(seen) | set(expected_last or {})
        for k in keys:
            got = seen.get(k, set())
            first = 1 if from_one or not got else min(got)
            last = (expected_last or {}).get(k, max(got) if got else 0)
            gap = [s for s in range(first, last + 1) if s not in got]
            if gap:
                missing[k] = gap
            sessions[k] = (min(got) if got else None, max(got) if got else None, len(got))
        dups = {k: n - 1 for k, n in counts.items() if n > 1}
        with self._rec_lock:
            unkeyed, bad = len(self.unkeyed), len(self.bad_signatures)
        return {"missing": missing, "duplicates": dups, "dup_count": sum(dups.values()),
                "sessions": sessions, "unkeyed": unkeyed, "bad_signatures": bad}


def describe(report, limit=10):
    """A short text of a report for assertion messages."""
    miss = sorted(report["missing"].items())[:limit]
    return ("missing in %d sessions %s; duplicates %d; unkeyed %d; bad signatures %d" % (
        len(report["missing"]), ["%s:%s.. %d gone %s" % (k[0], str(k[1])[:8], len(v), v[:8])
                                 for k, v in miss],
        report["dup_count"], report["unkeyed"], report["bad_signatures"]))


# -- the cluster -------------------------------------------------------------------------------
class Node:
    """One shardhook node: its name, its forwarder to Redis, its folder and process."""

    def __init__(self, cluster, name, config, forwarder, tmp):
        self.cluster = cluster
        self.name = name
        self.forwarder = forwarder
        self.dir = tmp
        self.proc = harness.Shardhook(config, tmp=tmp, env=cluster.env, start=False)
        self.proc.name = "shardhook-" + name  # log files per node: shardhook-node-a.log, ...
        self.config = config

    def __getattr__(self, attr):
        proc = self.__dict__.get("proc")
        if proc is None or attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(proc, attr)

    def shards(self, timeout=2.0):
        """GET /v1/shards on this node: the "shards" list, or None when it does not answer."""
        try:
            code, _, data = self.proc.api("GET", "/v1/shards", timeout=timeout)
        except OSError:
            return None
        return data.get("shards") if code == 200 and isinstance(data, dict) else None

    def held(self, answer=None):
        """Shards this node's own answer says it holds: {id: entry} (no "node" field: held)."""
        answer = self.shards() if answer is None else answer
        return {e["id"]: e for e in answer or [] if e.get("node", self.name) == self.name}

    def sigstop(self):
        self.proc.signal(signal.SIGSTOP)

    def sigcont(self):
        self.proc.signal(signal.SIGCONT)


class Cluster:
    """n shardhook nodes (node-a, node-b, ...) against fake and one Redis, each through its own
    TcpForwarder, delivering to receiver (its secret). Config per node: cluster {redis through
    the forwarder with ${REDIS_PASSWORD}, node, lease_ms}, shards {"total": total},
    testing.identify_interval_ms, a loopback http port and state folder of its own; overrides
    merge into every node's config (harness.base_config's rules)."""

    def __init__(self, n, fake, receiver, redis, total=32, lease_ms=LEASE_MS,
                 identify_interval_ms=IDENTIFY_INTERVAL_MS, start=True, **overrides):
        self.fake = fake
        self.receiver = receiver
        self.redis = redis
        self.total = total
        self.lease_ms = lease_ms
        self.identify_interval_ms = identify_interval_ms
        self.overrides = overrides
        self.env = {"REDIS_PASSWORD": redis.password}
        self.nodes = []
        for i in range(n):
            self.add_node(chr(ord("a") + i), start=False)
        if start:
            for node in self.nodes:
                node.start()

    def config(self, name, fwd, tmp):
        cfg = harness.base_config(
            self.fake, self.receiver, tmp,
            webhook={"secret": self.receiver.secret},
            shards={"total": self.total},
            testing={"identify_interval_ms": self.identify_interval_ms},
            cluster={"redis": "redis://:${REDIS_PASSWORD}@127.0.0.1:%d/0" % fwd.port,
                     "node": name, "lease_ms": self.lease_ms},
            log_level="info")
        return harness._merge(cfg, dict(self.overrides))

    def add_node(self, letter, start=True):
        name = "node-" + letter
        tmp = harness.test_dir() / name
        fwd = TcpForwarder(self.redis.port)
        node = Node(self, name, self.config(name, fwd, tmp), fwd, tmp)
        self.nodes.append(node)
        if start:
            node.start()
        return node

    def check_alive(self, nodes=None):
        """harness.GiveUp (stop waiting) when one of nodes (default: all) has exited."""
        for node in self.nodes if nodes is None else nodes:
            if not node.alive():
                raise harness.GiveUp("%s exited (code %s):\n%s" % (
                    node.name, node.returncode(), harness.tail(node.log_text(), 20)))

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    def live(self):
        return [n for n in self.nodes if n.alive()]

    def held(self, nodes=None):
        """{node name: sorted shard ids} from each node's own answer; raises AssertionError
        unless every shard is held exactly once, by one of nodes, ready and not stale."""
        nodes = self.live() if nodes is None else nodes
        owner, out = {}, {}
        for node in nodes:
            answer = node.shards()
            if answer is None:
                raise AssertionError("%s does not answer GET /v1/shards" % node.name)
            mine = node.held(answer)
            for sid, e in mine.items():
                if sid in owner:
                    raise AssertionError("shard %d held by %s and %s" % (sid, owner[sid],
                                                                          node.name))
                if e.get("status") != "ready" or e.get("stale"):
                    raise AssertionError("shard %d on %s is %s%s" % (
                        sid, node.name, e.get("status"), " (stale)" if e.get("stale") else ""))
                owner[sid] = node.name
            out[node.name] = sorted(mine)
        absent = sorted(set(range(self.total)) - set(owner))
        if absent:
            raise AssertionError("shards held by no live node: %s" % absent)
        return out

    def wait_held(self, timeout=30.0, nodes=None, even=False):
        """Wait until every shard is held exactly once, ready (see held()), and with even=True
        each node within one of an even share (rule 6); return held(). Gives up at once when a
        node exits."""
        watch = self.live() if nodes is None else nodes

        def probe():
            self.check_alive(watch)
            held = self.held(nodes)
            if even and not even_share([len(v) for v in held.values()], self.total):
                raise AssertionError("shares not even: %s" % {k: len(v) for k, v in held.items()})
            return held
        what = "every shard held once" + (", shares even" if even else "")
        return harness.wait_for(probe, timeout, 0.1, what)

    def logs(self):
        """Every node's log text, all runs, joined."""
        out = []
        for node in self.nodes:
            for path in node.logs:
                out.append(harness.read_log(path))
        return "\n".join(out)

    def check_no_secrets(self):
        """The Redis password and the webhook secret appear in no node's log."""
        text = self.logs()
        for secret in (self.redis.password, self.receiver.secret.split("_", 1)[-1]):
            assert secret not in text, "a secret appears in a node's log"


def even_share(counts, total):
    """Every count within one of total / len(counts)."""
    lo, hi = total // len(counts), -(-total // len(counts))
    return all(lo <= c <= hi for c in counts)


def owners(redis, total, token=APP_TOKEN):
    """{shard: owner} from the shard hashes in Redis ("" when none)."""
    return {i: redis.shard(i, token).get("owner", "") for i in range(total)}


def current_sessions(fake_log):
    """{shard: (session_id, seq)} of the fake's current sessions."""
    return {s["shard"]: (s["session_id"], s["seq"]) for s in fake_log["sessions"] if s["current"]}


def accepted_identifies(fake_log):
    """{shard: count} of IDENTIFYs the fake accepted."""
    out = {}
    for e in fake_log["identifies"]:
        if not e["refused"]:
            out[e["shard"]] = out.get(e["shard"], 0) + 1
    return out


def wait_delivered(receiver, fake, timeout=20.0, shards=None):
    """Wait until the receiver has seen, for every current session of the fake (of shards), its
    last s; return (fake log, {(shard, session): last s}) for receiver.report()."""
    state = {}

    def done():
        log = fake.log()
        want = {(sh, sid): seq for sh, (sid, seq) in current_sessions(log).items()
                if shards is None or sh in shards}
        got = receiver.last_s()
        state["log"], state["want"] = log, want
        return all(got.get(k, 0) >= v for k, v in want.items())
    try:
        harness.wait_for(done, timeout, 0.1, "the receiver to catch up with every session")
    except AssertionError as e:
        got = receiver.last_s()
        behind = {k: (got.get(k, 0), v) for k, v in state.get("want", {}).items()
                  if got.get(k, 0) < v}
        raise AssertionError("%s; behind (got, sent): %s" % (e, sorted(behind.items())[:10]))
    return state["log"], state["want"]
