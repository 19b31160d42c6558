"""What the integration tests use: ports, bounded waits, the fake Discord, the webhook receiver
and the shardhook process, each started in the current test's folder and stopped after it.

Every timeout is multiplied by SH_TEST_TIMEOUT_MULTIPLIER (default 1). BUILD (default build,
relative to the repository root) names the folder holding shardhook and fake-discord.

run.py calls begin_test(tmp) before and end_test() after each test; end_test() stops whatever
the test left running and, under sanitizers, reports sanitizer errors found in the logs.
Standard library only.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import receiver as _receiver

ROOT = Path(__file__).resolve().parents[2]
MULTIPLIER = float(os.environ.get("SH_TEST_TIMEOUT_MULTIPLIER") or 1)
PROCS_FILE = ".procs"  # in each test folder: "pid<TAB>binary<TAB>log" per started process
SANITIZER_PATTERNS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                      "WARNING: ThreadSanitizer")
DELETE = object()  # base_config(..., key=DELETE) removes key


def scale(seconds):
    """A timeout in seconds, scaled by SH_TEST_TIMEOUT_MULTIPLIER."""
    return seconds * MULTIPLIER


def build_dir():
    b = Path(os.environ.get("BUILD") or "build")
    return b if b.is_absolute() else ROOT / b


def sanitized():
    return "sanitize" in (os.environ.get("BUILD") or "")


class Skip(Exception):
    """raise harness.Skip("why") when this build or machine cannot check what the test claims
    (a library missing, a figure a sanitizer distorts): the runner prints `skip file::name (why)`
    and counts it apart, never as passed."""


def timeout(seconds):
    """Decorator: this test's hard timeout in seconds (scaled) instead of run.py's default."""
    def mark(fn):
        fn.timeout = seconds
        return fn
    return mark


# -- the current test ------------------------------------------------------------------------
class _Context:
    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.procs = []
        self.receivers = []
        self.names = {}

    def unique(self, stem, suffix):
        n = self.names.get((stem, suffix), 0) + 1
        self.names[(stem, suffix)] = n
        return self.tmp / ("%s%s" % (stem, suffix) if n == 1 else "%s-%d%s" % (stem, n, suffix))


_ctx = None


def begin_test(tmp):
    global _ctx
    _ctx = _Context(tmp)
    return _ctx


def test_dir():
    """The current test's folder (a fresh temp folder when used outside run.py)."""
    global _ctx
    if _ctx is None:
        _ctx = _Context(tempfile.mkdtemp(prefix="shardhook-test-"))
    return _ctx.tmp


def _context(tmp):
    test_dir()
    if tmp is not None and Path(tmp) != _ctx.tmp:
        Path(tmp).mkdir(parents=True, exist_ok=True)
    return _ctx, Path(tmp) if tmp is not None else _ctx.tmp


def end_test():
    """Stop every process the test started (SIGTERM, then SIGKILL after a grace period), then
    every receiver, and return a list of problems: sanitizer reports found in the process logs."""
    global _ctx
    ctx, _ctx = _ctx, None
    if ctx is None:
        return []
    for p in reversed(ctx.procs):  # shardhook before the fake; receivers still take its last batches
        p._terminate(grace=scale(10))
    for r in ctx.receivers:
        r.stop()
    problems = []
    if sanitized():
        for p in ctx.procs:
            for run_log in p.logs:
                found = scan_sanitizer(read_log(run_log))
                if found:
                    problems.append("%s: sanitizer report in %s:\n%s" % (p.name, run_log, found))
    return problems


def scan_sanitizer(text, context_lines=30):
    """The first sanitizer report in text (with the lines after it), or "" when there is none."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if any(p in line for p in SANITIZER_PATTERNS):
            return "\n".join(lines[i:i + context_lines])
    return ""


def read_log(path):
    """A log file as text (invalid UTF-8 replaced); "" when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def tail(text, n=40):
    return "\n".join(text.splitlines()[-n:])


# -- small helpers ---------------------------------------------------------------------------
_handed_out = set()


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (never the same one twice per process)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port")


class GiveUp(AssertionError):
    """Raised by a wait_for predicate to stop waiting at once (say, the process died)."""


def wait_for(pred, timeout=5.0, interval=0.02, what=None):
    """Call pred() until it returns something truthy and return that. Exceptions from pred count
    as not yet, except GiveUp, which is raised at once. After timeout (scaled) raise
    AssertionError naming what and the last exception."""
    limit = scale(timeout)
    deadline = time.monotonic() + limit
    last_exc = None
    while True:
        try:
            value = pred()
            if value:
                return value
        except GiveUp:
            raise
        except Exception as e:
            last_exc = e
        if time.monotonic() >= deadline:
            what = what or getattr(pred, "__qualname__", repr(pred))
            msg = "timed out after %.1fs waiting for %s" % (limit, what)
            if last_exc is not None:
                msg += " (last error: %r)" % (last_exc,)
            raise AssertionError(msg)
        time.sleep(interval)


def parse_logfmt(line):
    """`ts=... level=info msg="shard ready" shard=3` -> dict of strings."""
    out = {}
    for m in re.finditer(r'([\w.\-]+)=("(?:[^"\\]|\\.)*"|\S*)', line):
        value = m.group(2)
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                value = value[1:-1]
        out[m.group(1)] = value
    return out


def http_request(url, method="GET", body=None, headers=None, timeout=5.0):
    """(status, headers dict lower-case, parsed JSON or text) for one request on loopback."""
    m = re.match(r"http://([^/:]+):(\d+)(/.*)?$", url)
    if not m:
        raise ValueError("not a loopback http URL: %s" % url)
    conn = http.client.HTTPConnection(m.group(1), int(m.group(2)), timeout=scale(timeout))
    try:
        hdrs = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, m.group(3) or "/", body=body, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        rh = {k.lower(): v for k, v in resp.getheaders()}
        data = raw.decode("utf-8", "replace")
        if "json" in rh.get("content-type", ""):
            try:
                data = json.loads(raw)
            except ValueError:
                pass
        return resp.status, rh, data
    finally:
        conn.close()


# -- the webhook receiver ----------------------------------------------------------------------
class Receiver(_receiver.Receiver):
    """receiver.Receiver, stopped after the test, with waits scaled by the multiplier."""

    def __init__(self, status=200, delay=0.0, port=0, **kw):
        super().__init__(status=status, delay=delay, port=port, **kw)
        test_dir()
        _ctx.receivers.append(self)

    def wait_events(self, n, timeout=5.0, path=None):
        return super().wait_events(n, scale(timeout), path)

    def wait_requests(self, n, timeout=5.0, answered=True):
        return super().wait_requests(n, scale(timeout), answered)


Request = _receiver.Request
sign = _receiver.sign
verify_signature = _receiver.verify_signature


# -- processes ---------------------------------------------------------------------------------
def _sanitizer_env(env):
    if sanitized():
        env["ASAN_OPTIONS"] = ("abort_on_error=1:halt_on_error=1:detect_leaks=1:print_summary=1:"
                               + env.get("ASAN_OPTIONS", "")).rstrip(":")
        env["UBSAN_OPTIONS"] = ("abort_on_error=1:halt_on_error=1:print_stacktrace=1:"
                                + env.get("UBSAN_OPTIONS", "")).rstrip(":")
    return env


class Process:
    """A binary started in the test folder with stdout and stderr in one log file per run."""

    def __init__(self, name, tmp=None):
        self.name = name
        self.ctx, self.dir = _context(tmp)
        self.proc = None
        self.logs = []  # one log file per start(); log_text() reads the latest
        self.args = None

    def spawn(self, args, env=None):
        """Start args with stdout and stderr in a new log file; registered for cleanup."""
        env = dict(os.environ) if env is None else env
        log = self.ctx.unique(self.name, ".log")
        self.logs.append(log)
        self.args = [str(a) for a in args]
        with open(log, "ab") as f:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                         env=_sanitizer_env(env), cwd=str(self.dir), start_new_session=True)
        if self not in self.ctx.procs:
            self.ctx.procs.append(self)
        with open(self.ctx.tmp / PROCS_FILE, "a") as f:
            f.write("%d\t%s\t%s\n" % (self.proc.pid, self.args[0], log))

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def log_path(self):
        return self.logs[-1] if self.logs else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def returncode(self):
        return self.proc.poll() if self.proc else None

    def log_text(self):
        return read_log(self.log_path) if self.log_path else ""

    def log_offset(self):
        """Where the log ends now: pass as since= to wait_log to look only at what follows."""
        return len(self.log_text())

    def log_records(self):
        """The log parsed as logfmt, one dict per line."""
        return [parse_logfmt(line) for line in self.log_text().splitlines() if "=" in line]

    def wait_log(self, regex, timeout=5.0, since=0):
        """Wait until the log (from offset since) matches regex; return the match object."""
        pattern = re.compile(regex) if isinstance(regex, str) else regex
        limit = scale(timeout)
        deadline = time.monotonic() + limit
        while True:
            exited = not self.alive()
            m = pattern.search(self.log_text(), since)
            if m:
                return m
            if exited:
                raise AssertionError("%s exited (code %s) before its log matched %r; log tail:\n%s" % (
                    self.name, self.returncode(), pattern.pattern, tail(self.log_text(), 20)))
            if time.monotonic() >= deadline:
                raise AssertionError("timed out after %.1fs waiting for %s log to match %r; log tail:\n%s" % (
                    limit, self.name, pattern.pattern, tail(self.log_text(), 20)))
            time.sleep(0.02)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=10.0):
        """Wait for the process to exit and return its code (negative: killed by that signal)."""
        try:
            return self.proc.wait(scale(timeout))
        except subprocess.TimeoutExpired:
            raise AssertionError("%s (pid %d) still running after %.1fs; log tail:\n%s" % (
                self.name, self.proc.pid, scale(timeout), tail(self.log_text(), 20))) from None

    def kill(self):
        """SIGKILL (a crash, as far as the process can tell) and reap."""
        if self.alive():
            self.proc.kill()
        if self.proc:
            self.proc.wait()

    def stop(self, timeout=10.0):
        """SIGTERM and wait for the exit code."""
        if self.alive():
            self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def _terminate(self, grace):
        if not self.alive():
            return
        try:
            self.proc.terminate()
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._terminate(scale(10))


class FakeDiscord(Process):
    """build/fake-discord on a free port (or port=). Options become flags: heartbeat_ms=500 ->
    --heartbeat-ms 500, zlib_split=True -> --zlib-split, a list -> comma-separated, None/False
    -> left out. The fake's control API (tests/integration/fake.py) is .ctl, and its methods
    are reachable on this object too: fake.dispatch(...) is fake.ctl.dispatch(...)."""

    LISTENING = re.compile(r"fake-discord listening port=(\d+)")

    def __init__(self, tmp=None, port=None, token="test-token", args=(), env=None, binary=None,
                 start_timeout=10.0, **options):
        super().__init__("fake-discord", tmp)
        self.binary = Path(binary) if binary else build_dir() / "fake-discord"
        self.options = dict(options, token=token)
        self._ctl = None
        # --port 0: the fake binds a free port itself and names it, so no other process can
        # take it between our choice and its bind.
        argv = [self.binary, "--port", port or 0] + _flags(self.options) + list(args)
        self.spawn(argv, dict(os.environ, **(env or {})))
        self.port = int(self.wait_log(self.LISTENING, start_timeout).group(1))
        self.url = "http://127.0.0.1:%d" % self.port
        self.api_base = self.url + "/api/v10"
        self.gateway_url = "ws://127.0.0.1:%d" % self.port

    @property
    def ctl(self):
        if self._ctl is None:
            import fake  # written alongside; imported late so the harness works without it
            self._ctl = fake.Fake(self.port)
        return self._ctl

    def __getattr__(self, name):
        if name.startswith("_") or "_ctl" not in self.__dict__ or "port" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.ctl, name)


def _flags(options):
    out = []
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif isinstance(value, (list, tuple)):
            out += [flag, ",".join(str(v) for v in value)]
        else:
            out += [flag, str(value)]
    return out


def _merge(base, overrides):
    for key, value in overrides.items():
        if value is DELETE:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def base_config(fake, receiver, tmp=None, webhook=None, **overrides):
    """A config for shardhook against fake (a FakeDiscord, or None: nothing listens) delivering
    to receiver (a Receiver or a URL; None: nothing listens). Overrides merge into it, dicts
    key by key; webhook={...} merges into webhooks[0]; key=DELETE removes key."""
    _, d = _context(tmp)
    dead = "http://127.0.0.1:9"
    url = receiver if isinstance(receiver, str) or receiver is None else receiver.url
    cfg = {
        "token": "test-token",
        "api_base": fake.api_base if fake is not None else dead + "/api/v10",
        "intents": ["GUILDS", "GUILD_MESSAGES"],
        "compress": "none",
        "shards": "auto",
        "webhooks": [{"url": url or dead + "/", "events": ["*"], "secret": None}],
        "http": {"listen": "127.0.0.1:%d" % free_port()},
        "state_dir": str(d / "state"),
        "log_level": "debug",
        "reconnect_base_ms": 50,
        "reconnect_max_ms": 500,
        "testing": {"identify_interval_ms": 200},
    }
    if webhook:
        _merge(cfg["webhooks"][0], webhook)
    return _merge(cfg, overrides)


def _write_config(config, ctx, d):
    """config: a dict (written as JSON), a str (written as is) or a Path (used as is)."""
    if isinstance(config, Path):
        return config
    path, n = d / "shardhook.json", 1
    while path.exists():
        n += 1
        path = d / ("shardhook-%d.json" % n)
    with open(path, "w") as f:
        f.write(config if isinstance(config, str) else json.dumps(config, indent=2))
    return path


def _env(env, token):
    e = dict(os.environ)
    e.pop("DISCORD_TOKEN", None)
    if token is not None:
        e["DISCORD_TOKEN"] = token
    e.update(env or {})
    return e


def run_shardhook(*args, env=None, token=None, timeout=10.0, binary=None):
    """Run shardhook with args to completion: (exit code, stdout+stderr)."""
    exe = str(binary or build_dir() / "shardhook")
    try:
        p = subprocess.run([exe] + [str(a) for a in args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=_sanitizer_env(_env(env, token)),
                           timeout=scale(timeout))
    except subprocess.TimeoutExpired as e:
        raise AssertionError("shardhook %s did not exit within %.1fs; output:\n%s" % (
            " ".join(map(str, args)), scale(timeout), (e.output or b"").decode("utf-8", "replace"))) from None
    out = p.stdout.decode("utf-8", "replace")
    if sanitized() and scan_sanitizer(out):
        raise AssertionError("sanitizer report from shardhook %s:\n%s" % (" ".join(map(str, args)),
                                                                         scan_sanitizer(out)))
    return p.returncode, out


class Shardhook(Process):
    """build/shardhook -c CONFIG, with DISCORD_TOKEN removed from the environment unless token=
    (or env=) gives one. config: a dict, raw text, or a Path. start=False to start() later;
    start() after stop() runs it again with the same config into a new log file."""

    def __init__(self, config, tmp=None, env=None, token=None, args=(), start=True, binary=None):
        super().__init__("shardhook", tmp)
        self.binary = Path(binary) if binary else build_dir() / "shardhook"
        self.config = config
        self.config_path = _write_config(config, self.ctx, self.dir)
        self.env = _env(env, token)
        self.extra_args = list(args)
        http = (config.get("http") or {}) if isinstance(config, dict) else {}
        self.http_url = "http://%s" % http.get("listen", "127.0.0.1:7878")
        self.api_token = http.get("token")
        if start:
            self.start()

    def start(self):
        if self.alive():
            raise AssertionError("shardhook is already running (pid %d)" % self.pid)
        self.spawn([self.binary, "-c", self.config_path] + self.extra_args, self.env)
        return self

    @classmethod
    def check(cls, config, tmp=None, env=None, token=None, binary=None):
        """shardhook --check -c FILE: (exit code, output)."""
        ctx, d = _context(tmp)
        path = _write_config(config, ctx, d)
        return run_shardhook("--check", "-c", path, env=env, token=token, binary=binary)

    def api(self, method, path, body=None, token=None, headers=None, timeout=5.0):
        """A control API call: (status, headers, JSON or text). token defaults to http.token."""
        h = dict(headers or {})
        token = token if token is not None else self.api_token
        if token:
            h.setdefault("Authorization", "Bearer " + token)
        return http_request(self.http_url + path, method, body, h, timeout)

    def wait_http(self, path="/healthz", status=200, timeout=10.0):
        """Wait until GET path answers status; return the parsed body."""
        def probe():
            if not self.alive():
                raise GiveUp("shardhook exited with code %s:\n%s" % (self.returncode(),
                                                                            tail(self.log_text(), 20)))
            code, _, data = self.api("GET", path, timeout=1.0)
            return (data,) if code == status else None
        try:
            return wait_for(probe, timeout, 0.05, "GET %s -> %d" % (path, status))[0]
        except AssertionError as e:
            raise AssertionError("%s; log tail:\n%s" % (e, tail(self.log_text(), 20))) from None

    def wait_ready(self, timeout=15.0):
        """Wait until /readyz answers 200 (every shard ready)."""
        return self.wait_http("/readyz", 200, timeout)
