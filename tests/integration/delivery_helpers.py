"""What the delivery tests share (test_delivery, test_delivery_failures, test_webhooks,
test_dead_letters): the fake Discord with base_config's identify window, waiting for its
sessions, an event's (shard, s), the (shard, s) of a fake burst, and checking signatures with
the npm `standardwebhooks` reference verifier."""
import base64
import json
import subprocess
from pathlib import Path

from harness import FakeDiscord, scale

VERIFIER = Path(__file__).resolve().parent / "verify_standardwebhooks.js"


def make_fake(tmp, **opts):
    """The fake Discord with the same 200 ms identify window base_config gives shardhook."""
    return FakeDiscord(tmp, **dict({"identify_interval_ms": 200}, **opts))


def wait_sessions(fake, n=1):
    return fake.wait(lambda f: len(f.sessions()) >= n and all(s["seq"] >= 1 for s in f.sessions()),
                     15, what="%d session(s) ready" % n)


def keys(events):
    return [(e["shard"][0], e["s"]) for e in events]


def burst_keys(result, count):
    """(shard, s) of every event of a burst answer (one shard or {"shards": [...]})."""
    out = set()
    for b in result.get("shards", [result]):
        shard = b.get("shard", 0)
        assert b["last_s"] - b["first_s"] + 1 == count, b
        out |= {(shard, s) for s in range(b["first_s"], b["last_s"] + 1)}
    return out


def npm_verify(requests, secret):
    """Every request must verify with the npm `standardwebhooks` package (every key of a list).
    Returns how many verified."""
    lines = [json.dumps({"secret": secret,
                         "headers": {k: r.headers.get(k, "") for k in
                                     ("webhook-id", "webhook-timestamp", "webhook-signature")},
                         "body_b64": base64.b64encode(r.body).decode()}) for r in requests]
    assert lines, "no request to verify"
    p = subprocess.run(["node", str(VERIFIER)], input="\n".join(lines) + "\n", capture_output=True,
                       text=True, timeout=scale(60))
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert not result["failed"], result["failed"][:5]
    assert result["verified"] == len(requests), result
    return result["verified"]
