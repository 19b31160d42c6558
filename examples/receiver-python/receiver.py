#!/usr/bin/env python3
"""examples/receiver-python/receiver.py: a webhook receiver for shardhook in plain Python (standard
library only), verifying Standard Webhooks signatures from the specification rather than with a
library. `handle()` is the part a serverless function needs; the HTTP server is for running it
locally:

    WEBHOOK_SECRET=whsec_... PORT=8080 python3 receiver.py

Verification (https://www.standardwebhooks.com): the key is the base64 after "whsec_"; the signed
content is "{webhook-id}.{webhook-timestamp}.{raw body}"; its HMAC-SHA256, base64-encoded, must equal
one of the space-separated "v1,<base64>" values of webhook-signature (several while keys rotate);
the timestamp must be within 5 minutes of now. Compare in constant time, and use the raw bytes.

shardhook delivers at least once: a batch whose answer got lost comes again with the same
webhook-id, so handle each webhook-id once; events replayed after a restart or a takeover come
in new batches, with the same "key" as the first time, so handle each event key once. Answer 2xx
only once the batch is handled.
"""
import base64
import hashlib
import hmac
import json
import os
import signal
import sys
import threading
import time
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_S = 5 * 60
MAX_BODY = 16 << 20
SECRET = os.environ.get("WEBHOOK_SECRET", "")
_recent = OrderedDict()  # webhook-id -> time handled; in production, a shared store
_seen_keys = OrderedDict()  # event keys handled, the latest MAX_KEYS; likewise
MAX_KEYS = 100000  # duplicates come within minutes of the first delivery
_lock = threading.Lock()


class Invalid(Exception):
    pass


def verify(secret, headers, body):
    """Return the parsed batch when the signature and timestamp hold, else raise Invalid."""
    msg_id = headers.get("webhook-id")
    ts = headers.get("webhook-timestamp")
    sigs = headers.get("webhook-signature")
    if not msg_id or not ts or not sigs:
        raise Invalid("missing webhook headers")
    try:
        ts_i = int(ts)
    except ValueError:
        raise Invalid("bad timestamp")
    if abs(time.time() - ts_i) > TOLERANCE_S:
        raise Invalid("timestamp outside the tolerance")
    key = base64.b64decode(secret[len("whsec_"):] if secret.startswith("whsec_") else secret)
    signed = ("%s.%s." % (msg_id, ts)).encode() + body
    want = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for versioned in sigs.split(" "):
        version, _, sig = versioned.partition(",")
        if version == "v1" and hmac.compare_digest(sig, want):
            return json.loads(body)
    raise Invalid("no matching signature")


def first_time(key):
    """True the first time an event key is seen (events without a key: always); lock held."""
    if key is None:
        return True
    if key in _seen_keys:
        return False
    _seen_keys[key] = True
    while len(_seen_keys) > MAX_KEYS:
        _seen_keys.popitem(last=False)
    return True


def handle_event(ev):
    """Your bot logic.
    ev: {"shard":[id,count],"op":0,"t":"MESSAGE_CREATE","s":42,"key":"3:9f2c...:42","d":{...}}
    SHARDHOOK_SESSION_LOST (d: session_id, seq, reason) says events after d.seq may be missing:
    resynchronise what depends on them."""
    d = ev.get("d") or {}
    what = json.dumps(str(d["content"])[:60]) if "content" in d else ""
    print("  %s shard=%d s=%s %s" % (ev["t"], ev["shard"][0], ev["s"], what), flush=True)


def handle(body, headers):
    """(status, response dict) for one request; body is the raw bytes, headers lower-case."""
    try:
        batch = verify(SECRET, headers, body)
    except (Invalid, ValueError) as e:
        print("rejected: %s" % e, flush=True)
        return 401, {"error": "invalid signature"}
    msg_id = headers["webhook-id"]
    with _lock:
        if msg_id in _recent:
            print("duplicate batch webhook-id=%s: already handled, acknowledged again" % msg_id,
                  flush=True)
            return 200, {"ok": True, "duplicate": True}
        print("verified batch webhook-id=%s events=%d" % (msg_id, len(batch["events"])),
              flush=True)
        for ev in batch["events"]:
            if first_time(ev.get("key")):
                handle_event(ev)
            else:
                print("duplicate event key=%s: already handled, skipped" % ev["key"], flush=True)
        _recent[msg_id] = time.time()
        while len(_recent) > 10000:
            _recent.popitem(last=False)
    return 200, {"ok": True}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.send_error(413)
            return
        body = self.rfile.read(length)
        status, out = handle(body, {k.lower(): v for k, v in self.headers.items()})
        data = json.dumps(out).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main():
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print("receiver-python listening on http://%s:%d/" % (host, port), flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
