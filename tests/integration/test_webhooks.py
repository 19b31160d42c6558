"""The webhook endpoints end to end: GET /v1/webhooks and /v1/webhooks/{name} (the URL without its
secrets, states as the receiver fails and recovers), POST .../pause and .../resume (events kept,
nothing sent, then all of them in order; across a restart), a 429/503 Retry-After holding every
lane of the endpoint, and the webhook's `name` as the metrics label and in config checks."""
import json
import re
import threading
import time
from pathlib import Path

from harness import Receiver, Shardhook, base_config, scale, timeout, wait_for
from delivery_helpers import burst_keys, keys, make_fake, wait_sessions


def assert_shard_order(events):
    last = {}
    for shard, s in keys(events):
        assert s > last.get(shard, 0), "shard %d: s=%d after s=%d" % (shard, s, last[shard])
        last[shard] = s


def msgs(rx):
    return [e for e in rx.events() if e["t"] == "MESSAGE_CREATE"]


def hook(sh, name):
    code, _, data = sh.api("GET", "/v1/webhooks/" + name)
    assert code == 200, (code, data)
    return data


def fast_retries(**extra):
    return dict({"retry_base_ms": 50, "retry_max_ms": 500}, **extra)


FIELDS = {"index", "name", "url", "events", "state", "paused_until", "in_flight", "queued_events",
          "queued_bytes", "spool_bytes", "oldest_unacked_age_ms", "delivered_events",
          "last_success", "last_failure", "retries", "dead_letters"}


# -- GET: the list, one by name or index, URLs without secrets ---------------------------------
def test_list_and_one_by_name_or_index_without_url_secrets(tmp):
    fake = make_fake(tmp)
    rx = Receiver()
    port = rx.url.split(":")[2].split("/")[0]
    secret_url = "http://hookuser:hookpass@127.0.0.1:%s/audit/in?token=qs-secret-1#frag" % port
    cfg = base_config(fake, rx, tmp, webhook={"name": "audit", "url": secret_url,
                                              "events": ["MESSAGE_CREATE", "GUILD_*"]})
    cfg["webhooks"].append({"url": rx.url_for("/second"), "secret": None})
    sh = Shardhook(cfg, tmp)
    wait_sessions(fake)
    want = burst_keys(fake.burst(30, shard=0, t="MESSAGE_CREATE"), 30)
    wait_for(lambda: want <= set(keys(rx.events("/audit/in"))), 10, what="30 events to audit")

    code, _, data = sh.api("GET", "/v1/webhooks")
    assert code == 200, (code, data)
    text = json.dumps(data)
    for secret in ("hookuser", "hookpass", "qs-secret-1", "token=", "frag"):
        assert secret not in text, (secret, text)
    a, b = data["webhooks"]
    assert set(a) == FIELDS and set(b) == FIELDS, (set(a) ^ FIELDS, set(b) ^ FIELDS)
    assert a["index"] == 0 and a["name"] == "audit"
    assert a["url"] == "http://127.0.0.1:%s/audit/in" % port, a["url"]
    assert a["events"] == ["MESSAGE_CREATE", "GUILD_*"]
    assert b["index"] == 1 and b["name"] is None and b["events"] == ["*"]
    assert b["url"] == rx.url_for("/second"), b["url"]
    wait_for(lambda: hook(sh, "audit")["delivered_events"] >= 30, 5, what="30 delivered")
    a = hook(sh, "audit")
    assert a["state"] == "ok" and a["last_success"]["status"] == 200, a
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", a["last_success"]["at"]), a
    assert a["last_failure"] is None and a["retries"] == 0 and a["dead_letters"] == 0, a

    # the index always works too; an unnamed webhook only by its index
    assert hook(sh, "0")["name"] == "audit"
    assert hook(sh, "1")["index"] == 1
    for bad in ("nope", "2", "01", "-1", "audit.x", "a" * 70, "1" * 20):
        code, _, data = sh.api("GET", "/v1/webhooks/" + bad)
        assert code == 404, (bad, code, data)
        assert data["error"]["code"] == "webhook_not_found" or len(bad) > 64, (bad, data)
    code, _, data = sh.api("POST", "/v1/webhooks/nope/pause", {})
    assert code == 404 and data["error"]["code"] == "webhook_not_found", (code, data)
    code, _, data = sh.api("POST", "/v1/webhooks/audit/pause", {"for": 3})
    assert code == 400 and data["error"]["code"] == "unknown_field", (code, data)
    code, _, data = sh.api("GET", "/v1/webhooks/audit/pause")
    assert code == 405, (code, data)

    # the name is the metrics label; the unnamed one keeps its index
    _, _, text = sh.api("GET", "/metrics")
    m = re.search(r'^shardhook_webhook_events_delivered_total\{webhook="audit"\} (\S+)$', text, re.M)
    assert m and float(m.group(1)) >= 30, m
    assert 'shardhook_webhook_events_delivered_total{webhook="1"}' in text
    assert 'webhook="0"' not in text


def test_config_checks_the_name(tmp):
    rx = "http://127.0.0.1:9/"
    for name, why in (("12", "not all digits"), ("a b", "A-Z a-z 0-9"), ("", "A-Z a-z 0-9"),
                      ("x" * 65, "at most"), (7, "string")):
        code, out = Shardhook.check(base_config(None, rx, tmp, webhook={"name": name}), tmp)
        assert code == 78, (name, code, out)
        assert "webhooks[0].name" in out, (name, out)
    cfg = base_config(None, rx, tmp, webhook={"name": "same"})
    cfg["webhooks"].append({"url": rx, "secret": None, "name": "same"})
    code, out = Shardhook.check(cfg, tmp)
    assert code == 78 and "webhooks[1].name" in out and "webhooks[0]" in out, (code, out)
    cfg["webhooks"][1]["name"] = "other.name-2_b"
    code, out = Shardhook.check(cfg, tmp)
    assert code == 0, out


# -- states: retrying while the receiver fails, ok once it recovers ------------------------------
@timeout(120)
def test_states_follow_the_receiver_failing_and_recovering(tmp):
    fake = make_fake(tmp)
    rx = Receiver()
    failing = {"on": True}
    rx.respond(lambda r: (500, {}, "db down") if failing["on"] else 200)
    sh = Shardhook(base_config(fake, rx, tmp, webhook=fast_retries(name="app")), tmp)
    wait_sessions(fake)
    want = burst_keys(fake.burst(20, shard=0, t="MESSAGE_CREATE"), 20)
    rx.wait_requests(3, 10)
    h = wait_for(lambda: (lambda x: x if x["state"] == "retrying" else None)(hook(sh, "app")), 5,
                 what="state retrying")
    assert h["last_failure"]["status"] == 500, h
    assert h["last_failure"]["error"].startswith("HTTP 500"), h
    assert "db down" in h["last_failure"]["error"], h
    assert h["retries"] >= 2 and h["last_success"] is None, h
    assert h["oldest_unacked_age_ms"] is not None and h["oldest_unacked_age_ms"] >= 0, h
    time.sleep(0.5)
    h2 = hook(sh, "app")
    assert h2["oldest_unacked_age_ms"] >= h["oldest_unacked_age_ms"] + 300, (h, h2)

    failing["on"] = False
    wait_for(lambda: want <= set(keys(msgs(rx))), 15, what="every event after the failure")
    h = wait_for(lambda: (lambda x: x if x["state"] == "ok" else None)(hook(sh, "app")), 5,
                 what="state ok")
    assert h["last_success"]["status"] == 200 and h["last_failure"]["status"] == 500, h
    assert h["delivered_events"] >= 20 and h["queued_events"] == 0, h
    wait_for(lambda: hook(sh, "app")["oldest_unacked_age_ms"] is None, 5, what="nothing unacked")


# -- pause and resume ----------------------------------------------------------------------------
def pause(sh, name, what="pause"):
    code, _, data = sh.api("POST", "/v1/webhooks/%s/%s" % (name, what), {})
    assert code == 200, (code, data)
    return data


@timeout(120)
def test_pause_keeps_events_and_resume_sends_all_in_order(tmp):
    fake = make_fake(tmp, shards=2)
    rx = Receiver()
    sh = Shardhook(base_config(fake, rx, tmp, webhook={"max_batch_events": 20}), tmp)
    wait_sessions(fake, 2)
    data = pause(sh, "0")
    assert data["state"] == "paused" and data["paused_until"] is None, data
    assert pause(sh, "0")["state"] == "paused"  # twice is fine
    n_before = len(rx.requests)
    want = burst_keys(fake.burst(150, t="MESSAGE_CREATE"), 150)
    wait_for(lambda: hook(sh, "0")["queued_events"] >= 300, 10, what="300 events queued")
    time.sleep(scale(1.0))
    assert len(rx.requests) == n_before, rx.requests[n_before:]
    h = hook(sh, "0")
    assert h["state"] == "paused" and h["in_flight"] == 0 and h["queued_bytes"] > 0, h
    assert h["oldest_unacked_age_ms"] >= 900, h
    assert 'msg="webhook paused through the control API" webhook=0' in sh.log_text()

    data = pause(sh, "0", "resume")
    assert data["state"] != "paused", data
    wait_for(lambda: want <= set(keys(msgs(rx))), 15, what="every event after resume")
    time.sleep(0.3)
    got = keys(msgs(rx))
    assert len(got) == len(set(got)) == 300  # nothing lost, nothing twice
    assert_shard_order(rx.events())
    assert hook(sh, "0")["state"] == "ok"


@timeout(150)
def test_pause_survives_a_restart(tmp):
    fake = make_fake(tmp)
    rx = Receiver()
    cfg = base_config(fake, rx, tmp, webhook={"name": "app", "max_batch_events": 10})
    sh = Shardhook(cfg, tmp)
    wait_sessions(fake)
    first = burst_keys(fake.burst(10, shard=0, t="MESSAGE_CREATE"), 10)
    wait_for(lambda: first <= set(keys(msgs(rx))), 10, what="events before the pause")
    pause(sh, "app")
    paused_file = Path(tmp) / "state" / "webhooks.json"
    assert paused_file.is_file()
    during = burst_keys(fake.burst(40, shard=0, t="MESSAGE_CREATE"), 40)
    wait_for(lambda: hook(sh, "app")["queued_events"] >= 40, 10, what="40 queued")
    n_before = len(rx.requests)
    assert sh.stop() == 0
    assert len(rx.requests) == n_before, "a paused webhook sent on the way out"
    later = burst_keys(fake.burst(20, shard=0, t="MESSAGE_CREATE"), 20)

    sh.start()
    sh.wait_log(r'msg="webhook paused through the control API; nothing is sent until it is '
                r'resumed" webhook=app', 10)
    fake.wait(lambda f: len(f.received(op=6)) >= 1, 10, what="RESUME")
    wait_for(lambda: hook(sh, "app")["queued_events"] >= 60, 10, what="60 queued after restart")
    h = hook(sh, "app")
    assert h["state"] == "paused", h
    time.sleep(scale(1.0))
    assert len(rx.requests) == n_before, rx.requests[n_before:]

    pause(sh, "app", "resume")
    wait_for(lambda: (first | during | later) <= set(keys(msgs(rx))), 15, what="all events")
    time.sleep(0.3)
    got = keys(msgs(rx))
    assert len(got) == len(set(got)) == 70, len(got)  # nothing lost, nothing twice
    assert_shard_order(rx.events())
    assert json.loads(paused_file.read_text())["paused"] == []


# -- Retry-After holds the whole endpoint -----------------------------------------------------
@timeout(120)
def test_retry_after_holds_every_lane_of_the_endpoint(tmp):
    fake = make_fake(tmp, shards=4)
    rx = Receiver()
    rx.respond(lambda r: (503, {"Retry-After": "2"}, "busy") if r.index == 3 else 200, delay=0.02)
    sh = Shardhook(base_config(fake, rx, tmp, webhook=fast_retries(
        name="app", max_in_flight=4, max_batch_events=5, events=["MESSAGE_CREATE"])), tmp)
    wait_sessions(fake, 4)
    want, stop = set(), threading.Event()

    def feed():  # every shard keeps producing, so every lane has batches to send
        while not stop.is_set():
            want.update(burst_keys(fake.burst(5, t="MESSAGE_CREATE"), 5))
            time.sleep(0.05)
    t = threading.Thread(target=feed, daemon=True)
    t.start()
    try:
        refused = rx.wait_requests(4, 10)[3]
        assert refused.status == 503
        h = wait_for(lambda: (lambda x: x if x["state"] == "paused" else None)(hook(sh, "app")),
                     1.5, what="state paused")
        assert h["paused_until"].endswith("Z"), h
        time.sleep(3.0)
    finally:
        stop.set()
        t.join()
    held_from = refused.answered_at + 0.2  # a request already on its way may still land
    held = [r for r in rx.requests if held_from <= r.time < refused.answered_at + 1.9]
    assert not held, "requests during the Retry-After hold: %r" % held
    after = [r for r in rx.requests if r.time >= refused.answered_at + 1.9]
    assert after, "delivery did not resume after the hold"
    retried = [r for r in after if r.headers["webhook-id"] == refused.headers["webhook-id"]]
    assert retried and retried[0].ok, retried
    wait_for(lambda: want <= set(keys(msgs(rx))), 15, what="every event")
    assert_shard_order(msgs(rx))
    assert hook(sh, "app")["paused_until"] is None
    assert 'msg="webhook asked to wait (Retry-After); no request starts before then" ' \
           'webhook=app' in sh.log_text()
