#!/usr/bin/env python3
"""A webhook receiver on loopback: records every request shardhook sends and answers as scripted.

Used two ways:
  - in-process by the integration tests (harness.Receiver wraps Receiver below);
  - standalone for the demo and for poking by hand:
        python3 tests/integration/receiver.py --port 8080 [--print] [--status 200]
    prints `receiver listening port=N url=...`, then one line per batch
    (`batch events=3 bytes=1234 webhook-id=... status=200`) and, with --print, one line per event
    (`shard=[0,2] s=17 MESSAGE_CREATE guild=... "hello from the fake"`); on SIGINT/SIGTERM
    it prints `receiver stopped batches=N events=M` and exits 0.

Python 3 standard library only. Binds 127.0.0.1 unless told otherwise.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 64 << 20  # a receiver for tests: refuse anything larger than this


class _TooLarge(ValueError):
    pass


class Request:
    """One request as the receiver saw it. status is None until it has been answered."""

    def __init__(self, index, method, path, headers, body):
        self.index = index
        self.method = method
        self.path = path
        self.headers = headers  # dict, lower-case names
        self.body = body  # raw bytes
        self.time = time.monotonic()  # arrival, monotonic clock
        self.wall_time = time.time()  # arrival, unix seconds
        self.status = None  # status sent back; None while delayed or if never answered
        self.answered_at = None
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    @property
    def events(self):
        """The `events` array of the body, or [] when the body is not a webhook batch."""
        if isinstance(self.json, dict) and isinstance(self.json.get("events"), list):
            return self.json["events"]
        return []

    @property
    def ok(self):
        return self.status is not None and 200 <= self.status < 300

    def __repr__(self):
        return "<Request #%d %s %s status=%s bytes=%d events=%d>" % (
            self.index, self.method, self.path, self.status, len(self.body), len(self.events))


class _Rule:
    """How to answer: a fixed status, a callable, or a script of answers consumed in order."""

    def __init__(self, spec, delay, then):
        self.delay = float(delay or 0)
        self.then = then
        self.script = None
        self.spec = spec
        if isinstance(spec, (list, tuple)) and not _is_answer_tuple(spec):
            self.script = list(spec)
            self.spec = None


def _is_answer_tuple(spec):
    return isinstance(spec, tuple) and len(spec) == 3 and isinstance(spec[0], int)


def _normalise(answer, request):
    """Turn an answer spec into (status, headers dict, body bytes)."""
    if callable(answer):
        answer = answer(request)
    if isinstance(answer, int):
        return answer, {"Content-Type": "application/json"}, json.dumps({"status": answer}).encode()
    if _is_answer_tuple(answer):
        status, headers, body = answer
        headers = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        elif body is None:
            body = b""
        return status, headers, body
    raise TypeError("answer must be an int, a (status, headers, body) tuple or a callable "
                    "returning one, got %r" % (answer,))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as libcurl expects
    timeout = 120  # idle keep-alive connections do not linger forever
    server_version = "shardhook-test-receiver"

    def log_message(self, format, *args):  # quiet: the receiver records, it does not log
        pass

    def _read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                total += size
                if total > MAX_BODY:
                    raise _TooLarge()
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise _TooLarge()
        return self.rfile.read(length) if length else b""

    def _handle(self):
        receiver = self.server.receiver
        try:
            body = self._read_body()
        except _TooLarge:
            self.close_connection = True
            self.send_error(413)
            return
        except (ValueError, OSError):
            self.close_connection = True
            self.send_error(400)
            return
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = headers[name] + ", " + value if name in headers else value
        request = receiver._arrive(self.command, self.path, headers, body)
        status, out_headers, out_body, delay = receiver._decide(request)
        if delay > 0 and receiver._stopping.wait(delay):
            self.close_connection = True  # stopped while "hung": never answer
            return
        if receiver._stopping.is_set():
            self.close_connection = True
            return
        receiver._answered(request, status)
        receiver._notify(request)  # before the answer leaves: a client that saw it finds it counted
        try:
            self.send_response(status)
            for name, value in out_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(out_body)))
            self.end_headers()
            self.wfile.write(out_body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, receiver):
        self.receiver = receiver
        self.open_sockets = set()
        self.sockets_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def process_request(self, request, client_address):
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        """A sender that went away mid-request (a killed shardhook) is not the receiver's error:
        the connection just ends. Anything else is printed as before."""
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)

    def drop_connections(self):
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Receiver:
    """An HTTP server on host:port (0 = any free port) recording every request.

    Answers (see respond()): a fixed status, a callable (request) -> (status, headers, body)
    or an int, or a script of answers consumed in arrival order, each optionally per path and
    with a delay (a delay longer than the client's timeout simulates a hung receiver).
    """

    def __init__(self, status=200, delay=0.0, host="127.0.0.1", port=0, on_answer=None):
        self._cond = threading.Condition()
        self._requests = []
        self._default = _Rule(status, delay, 200)
        self._rules = {}
        self._stopping = threading.Event()
        self.on_answer = on_answer  # called with each Request once its answer is decided, before it is sent
        self._server = _Server((host, port), self)
        self.host = host
        self.port = self._server.server_address[1]
        self.url = "http://%s:%d/" % (host, self.port)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="receiver-%d" % self.port, daemon=True)
        self._thread.start()

    def url_for(self, path):
        return "http://%s:%d/%s" % (self.host, self.port, path.lstrip("/"))

    # -- configuration -------------------------------------------------------------------
    def respond(self, spec, path=None, delay=0.0, then=200):
        """Set how to answer requests to path (None: every path without its own rule).

        spec: an int status; a (status, headers, body) tuple (body bytes, str, dict or list);
        a callable (request) -> either of those; or a list of any of those, used one per
        request in arrival order and followed by `then` once used up.
        delay: seconds to wait before answering (stop() cuts it short and never answers).
        """
        rule = _Rule(spec, delay, then)
        with self._cond:
            if path is None:
                self._default = rule
            else:
                self._rules[_strip_query(path)] = rule

    # -- what arrived -------------------------------------------------------------------
    @property
    def requests(self):
        """A copy of every request so far, in arrival order."""
        with self._cond:
            return list(self._requests)

    def events(self, path=None):
        """Every event of every body answered with 2xx, in arrival order."""
        out = []
        for r in self.requests:
            if r.ok and r.method == "POST" and (path is None or _strip_query(r.path) == _strip_query(path)):
                out.extend(r.events)
        return out

    def wait_requests(self, n, timeout=5.0, answered=True):
        """Wait until n requests have arrived (and, by default, been answered); return them."""
        def count():
            return sum(1 for r in self._requests if r.status is not None or not answered)
        with self._cond:
            if not self._cond.wait_for(lambda: count() >= n, timeout):
                raise AssertionError("receiver: timed out after %.1fs waiting for %d requests (got %d)"
                                     % (timeout, n, count()))
            return list(self._requests)

    def wait_events(self, n, timeout=5.0, path=None):
        """Wait until events() holds at least n events; return events()."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = self.events(path)
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("receiver: timed out after %.1fs waiting for %d events (got %d in "
                                         "%d requests)" % (timeout, n, len(got), len(self._requests)))
                self._cond.wait(left)

    def clear(self):
        with self._cond:
            self._requests = []

    def stop(self):
        """Stop listening, drop open connections, cut delays short. Safe to call twice."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._server.drop_connections()
        with self._cond:
            self._cond.notify_all()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- called from handler threads ----------------------------------------------------
    def _arrive(self, method, path, headers, body):
        with self._cond:
            request = Request(len(self._requests), method, path, headers, body)
            self._requests.append(request)
            self._cond.notify_all()
            return request

    def _decide(self, request):
        with self._cond:
            rule = self._rules.get(_strip_query(request.path), self._default)
            if rule.script is not None:
                answer = rule.script.pop(0) if rule.script else rule.then
            else:
                answer = rule.spec
            delay = rule.delay
        try:
            status, headers, body = _normalise(answer, request)
        except Exception as e:  # a broken responder in a test: answer 599 so the test notices
            status, headers, body = 599, {}, ("responder failed: %r" % (e,)).encode()
        return status, headers, body, delay

    def _answered(self, request, status):
        with self._cond:
            request.status = status
            request.answered_at = time.monotonic()
            self._cond.notify_all()

    def _notify(self, request):
        if self.on_answer is not None:
            self.on_answer(request)


def _strip_query(path):
    return path.split("?", 1)[0]


# -- Standard Webhooks signatures ---------------------------------------------------------
def _secret_key(secret):
    if secret.startswith("whsec_"):
        secret = secret[len("whsec_"):]
    return base64.b64decode(secret)


def sign(secret, msg_id, timestamp, body):
    """The `v1,<base64>` signature Standard Webhooks defines for id.timestamp.body."""
    if isinstance(body, str):
        body = body.encode()
    mac = hmac.new(_secret_key(secret), ("%s.%s." % (msg_id, timestamp)).encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def verify_signature(secret, headers, body, tolerance_s=None, now=None):
    """True when webhook-signature holds a v1 signature by secret (or any of a list of secrets)
    over webhook-id.webhook-timestamp.body, and, with tolerance_s, the timestamp is that fresh."""
    msg_id = headers.get("webhook-id")
    ts = headers.get("webhook-timestamp")
    sigs = (headers.get("webhook-signature") or "").split()
    if not msg_id or not ts or not sigs:
        return False
    if tolerance_s is not None:
        try:
            if abs((time.time() if now is None else now) - int(ts)) > tolerance_s:
                return False
        except ValueError:
            return False
    secrets = [secret] if isinstance(secret, str) else list(secret)
    for s in secrets:
        want = sign(s, msg_id, ts, body)
        if any(hmac.compare_digest(want, got) for got in sigs):
            return True
    return False


# -- one-line summaries --------------------------------------------------------------------
def _short(text, limit=60):
    text = str(text)
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return json.dumps(text, ensure_ascii=False)


def _get(d, *path):
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def format_event(event):
    """`shard=[0,2] s=17 MESSAGE_CREATE guild=G channel=C user=U "content"`"""
    if not isinstance(event, dict):
        return "event %s" % _short(json.dumps(event), 100)
    d = event.get("d")
    t = event.get("t") or "op=%s" % event.get("op")
    parts = ["shard=%s" % json.dumps(event.get("shard"), separators=(",", ":")), "s=%s" % event.get("s"), t]
    if isinstance(d, dict):
        guild = d.get("guild_id") or (d.get("id") if str(t).startswith("GUILD_") else None)
        if guild is not None:
            parts.append("guild=%s" % guild)
        if d.get("channel_id") is not None:
            parts.append("channel=%s" % d["channel_id"])
        user = _get(d, "author", "id") or _get(d, "user", "id") or _get(d, "member", "user", "id")
        if user is not None:
            parts.append("user=%s" % user)
        if d.get("session_id") is not None:
            parts.append("session=%s" % d["session_id"])
        if d.get("content") is not None:
            parts.append(_short(d["content"]))
        elif d.get("name") is not None:
            parts.append(_short(d["name"]))
        elif isinstance(d.get("guilds"), list):
            parts.append("guilds=%d" % len(d["guilds"]))
    elif d is not None:
        parts.append(_short(json.dumps(d), 60))
    return " ".join(parts)


def format_batch(request, secret=None):
    """`batch events=3 bytes=1234 webhook-id=msg_x status=200 [sig=ok|BAD|none]`"""
    h = request.headers
    if request.json is None and request.body:
        head = "batch invalid-json"
    else:
        head = "batch events=%d" % len(request.events)
    line = "%s bytes=%d webhook-id=%s status=%s" % (head, len(request.body), h.get("webhook-id", "-"),
                                                      request.status)
    if secret:
        line += " sig=" + ("ok" if verify_signature(secret, h, request.body) else "BAD")
    elif "webhook-signature" not in h:
        line += " sig=none"
    if request.method != "POST":
        line += " %s %s" % (request.method, request.path)
    return line


# -- standalone ------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description="Record and print webhook batches from shardhook.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080, help="0 picks a free port (printed)")
    ap.add_argument("--print", dest="print_events", action="store_true", help="one line per event")
    ap.add_argument("--status", type=int, default=200, help="status to answer with")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds to wait before answering")
    ap.add_argument("--secret", help="whsec_... secret to verify webhook-signature with")
    ap.add_argument("--stats-file", help="keep {batches, events} in this JSON file, updated per batch")
    args = ap.parse_args(argv)

    out_lock = threading.Lock()
    counts = {"batches": 0, "events": 0, "bad_signatures": 0}

    def write_stats():
        if not args.stats_file:
            return
        tmp = args.stats_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(counts, f)
        os.replace(tmp, args.stats_file)

    def on_answer(request):
        with out_lock:
            lines = [format_batch(request, args.secret)]
            if request.ok:
                counts["batches"] += 1
                counts["events"] += len(request.events)
                if args.secret and not verify_signature(args.secret, request.headers, request.body):
                    counts["bad_signatures"] += 1
            if args.print_events:
                lines.extend("  " + format_event(e) for e in request.events)
            write_stats()  # before printing: who read the lines finds the counts up to date
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()

    receiver = Receiver(status=args.status, delay=args.delay, host=args.host, port=args.port,
                        on_answer=on_answer)
    write_stats()
    print("receiver listening port=%d url=%s" % (receiver.port, receiver.url), flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) != signal.SIG_IGN:  # started in the background: leave Ctrl-C to the parent
            signal.signal(sig, lambda *_: done.set())
    while not done.wait(0.5):
        pass
    receiver.stop()
    with out_lock:
        print("receiver stopped batches=%d events=%d" % (counts["batches"], counts["events"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
