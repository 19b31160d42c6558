"""Every delivered event carries an idempotency key, "<shard>:<session_id>:<s>" (events without
s: "<shard>:<session_id>:<last s>.<n>"), and a session that could not be resumed is announced to
every webhook with SHARDHOOK_SESSION_LOST: build/shardhook against the fake Discord in
single-node mode, asserting what the receiver got."""
import json
import re
import time
from pathlib import Path

from harness import Receiver, Shardhook, base_config, wait_for
from delivery_helpers import burst_keys, keys, make_fake, wait_sessions

LOST = "SHARDHOOK_SESSION_LOST"


def session_of(fake, shard=0):
    """The session id of the shard's newest session at the fake."""
    return [s for s in fake.sessions() if s["shard"] == shard][-1]["session_id"]


def assert_keys_name_their_event(events, session_by_shard):
    """Each event's key is its shard, its session and its s; events without s count from the
    last s; no two different events share a key."""
    seen = {}
    for e in events:
        shard, s, key = e["shard"][0], e["s"], e["key"]
        if s is not None:
            assert key == "%d:%s:%d" % (shard, session_by_shard[shard], s), e
        else:
            assert re.fullmatch(r"%d:[^:]+:\d+\.\d+" % shard, key), e
        body = json.dumps(e, sort_keys=True)
        assert seen.setdefault(key, body) == body, ("two events share a key", key)


def write_checkpoint(tmp, shard, total, session_id, resume_url, seq):
    d = Path(tmp) / "state" / "checkpoints"
    d.mkdir(parents=True, exist_ok=True)
    (d / ("shard-%d.json" % shard)).write_text(json.dumps({
        "version": 1, "shard": shard, "shard_count": total, "session_id": session_id,
        "resume_gateway_url": resume_url, "seq": seq, "webhooks": {}}))


# -- the idempotency key -----------------------------------------------------------------------
def test_every_event_has_a_key_unique_per_shard_session_and_s(tmp):
    fake = make_fake(tmp, shards=2)
    rx = Receiver()
    sh = Shardhook(base_config(fake, rx, tmp), tmp)
    wait_sessions(fake, 2)
    want = burst_keys(fake.burst(50, t="MESSAGE_CREATE"), 50)
    # two events without s after s: keys "<shard>:<session>:<last s>.1" and ".2"
    last = fake.dispatch(0, "MESSAGE_CREATE", {"n": "last"})["s"][0]
    for n in (1, 2):
        fake.raw(0, text=json.dumps({"op": 0, "t": "NULL_S_EVENT", "s": None, "d": {"n": n}}))
    wait_for(lambda: want <= set(keys(rx.events())) and
             len([e for e in rx.events() if e["t"] == "NULL_S_EVENT"]) == 2, 10,
             what="every event")
    events = rx.events()
    assert all("key" in e for e in events), [e for e in events if "key" not in e][:3]
    # "key" comes right after "s" in the bytes on the wire
    body = [r for r in rx.requests if r.ok][0].body.decode()
    assert re.search(r'"s":(\d+|null),"key":"\d+:[^"]+","d":', body), body[:300]
    sessions = {0: session_of(fake, 0), 1: session_of(fake, 1)}
    assert_keys_name_their_event(events, sessions)
    null_s = [e["key"] for e in events if e["t"] == "NULL_S_EVENT"]
    assert null_s == ["0:%s:%d.1" % (sessions[0], last), "0:%s:%d.2" % (sessions[0], last)]
    assert len({e["key"] for e in events}) == len(events)
    sh.stop()


def test_a_retry_sends_the_same_keys(tmp):
    fake = make_fake(tmp)
    rx = Receiver()
    rx.respond([500], then=200)  # the first request fails, its retry succeeds
    Shardhook(base_config(fake, rx, tmp, webhook={"retry_base_ms": 50, "retry_max_ms": 200}), tmp)
    wait_sessions(fake)
    rx.wait_requests(2, timeout=10)
    first, retry = rx.requests[0], rx.requests[1]
    assert first.status == 500 and retry.ok, (first, retry)
    assert [e["key"] for e in first.events] == [e["key"] for e in retry.events]
    assert first.body == retry.body  # the same bytes, key included


def test_events_replayed_after_a_restart_keep_their_keys(tmp):
    """Events delivered (but not acknowledged) before a kill -9 come again after the restart's
    RESUME with the keys they had the first time."""
    fake = make_fake(tmp)
    rx = Receiver()
    cfg = base_config(fake, rx, tmp, webhook={"retry_base_ms": 50, "retry_max_ms": 200})
    sh = Shardhook(cfg, tmp)
    wait_sessions(fake)
    rx.wait_events(1, timeout=10)  # READY acknowledged: the checkpoint holds the session
    session = session_of(fake)
    rx.respond(500)
    want = burst_keys(fake.burst(20, shard=0), 20)
    wait_for(lambda: any(want <= set(keys(r.events)) for r in rx.requests if r.status == 500),
             10, what="a refused delivery of the burst")
    refused = {(e["shard"][0], e["s"]): e["key"] for r in rx.requests if r.status == 500
               for e in r.events}
    sh.kill()
    rx.respond(200)
    n_identify = len(fake.received(op=2))
    sh.start()
    fake.wait(lambda f: len(f.received(op=6)) >= 1, 15, what="RESUME")
    wait_for(lambda: want <= set(keys(rx.events())), 20, what="the burst after the restart")
    assert len(fake.received(op=2)) == n_identify  # resumed, not identified
    got = [e for e in rx.events() if (e["shard"][0], e["s"]) in want]
    for e in got:
        assert e["key"] == refused[(e["shard"][0], e["s"])] == "0:%s:%d" % (session, e["s"]), e
    assert not [e for e in rx.events() if e["t"] == LOST]


# -- SHARDHOOK_SESSION_LOST ----------------------------------------------------------------------
def test_a_checkpoint_session_the_gateway_rejects_is_announced_as_lost(tmp):
    fake = make_fake(tmp)
    write_checkpoint(tmp, 0, 1, "deadbeef0123", fake.gateway_url, 41)
    rx = Receiver()
    sh = Shardhook(base_config(fake, rx, tmp), tmp)
    fake.wait(lambda f: f.received(op=6), 10, what="the RESUME of the checkpoint's session")
    wait_sessions(fake)
    fake.dispatch(0, "MESSAGE_CREATE", {"content": "new session"})
    wait_for(lambda: any(e["t"] == "MESSAGE_CREATE" for e in rx.events()), 10,
             what="an event of the new session")
    events = rx.events()
    lost = [e for e in events if e["t"] == LOST]
    assert len(lost) == 1, lost
    ev = lost[0]
    assert ev["shard"] == [0, 1] and ev["op"] == 0 and ev["s"] is None
    assert ev["d"] == {"session_id": "deadbeef0123", "seq": 41, "reason": "invalid_session"}
    assert ev["key"] == "0:deadbeef0123:41.1"
    order = [e["t"] for e in events]
    assert order.index(LOST) < order.index("READY") < order.index("MESSAGE_CREATE"), order
    new = session_of(fake)
    assert all(e["key"].startswith("0:%s:" % new) for e in events if e["t"] != LOST)
    sh.wait_log(r'msg="session lost: .*shard=0 session_id="deadbeef0123" seq=41 '
                r'reason=invalid_session', 1)
    sh.stop()


def test_a_session_timed_out_close_is_announced_once(tmp):
    fake = make_fake(tmp)
    rx = Receiver()
    Shardhook(base_config(fake, rx, tmp), tmp)
    wait_sessions(fake)
    old = session_of(fake)
    last = fake.dispatch(0, "MESSAGE_CREATE", {"n": 1})["s"][0]
    rx.wait_events(2, timeout=10)
    fake.close(0, 4009)
    fake.wait(lambda f: len(f.received(op=2)) == 2, 10, what="a new IDENTIFY")
    wait_sessions(fake, 2)
    wait_for(lambda: [e for e in rx.events() if e["t"] == "READY"][1:], 10, what="second READY")
    lost = [e for e in rx.events() if e["t"] == LOST]
    assert [e["d"] for e in lost] == [{"session_id": old, "seq": last,
                                       "reason": "session_timed_out"}]


def test_a_restart_that_resumes_announces_nothing(tmp):
    fake = make_fake(tmp)
    rx = Receiver()
    sh = Shardhook(base_config(fake, rx, tmp), tmp)
    wait_sessions(fake)
    rx.wait_events(1, timeout=10)
    assert sh.stop() == 0
    sh.start()
    fake.wait(lambda f: f.received(op=6), 10, what="RESUME")
    sh.wait_log(r'msg="resumed" shard=0', 10)
    fake.dispatch(0, "MESSAGE_CREATE", {"n": "after"})
    wait_for(lambda: any(e["t"] == "MESSAGE_CREATE" for e in rx.events()), 10, what="event")
    time.sleep(0.3)
    assert not [e for e in rx.events() if e["t"] == LOST]
    assert len(fake.received(op=2)) == 1
