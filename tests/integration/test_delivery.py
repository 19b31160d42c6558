"""Webhook delivery end to end: build/shardhook against the fake Discord and scripted receivers.
Batches, Standard Webhooks signatures checked with the npm reference library, retries,
Retry-After, timeouts, dead letters, the disk spool with flow control, and checkpoints across
kill -9 and SIGTERM restarts."""
import base64
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from harness import (ROOT, Receiver, Shardhook, base_config, free_port, scale, sign,
                     timeout, wait_for)
from delivery_helpers import burst_keys, keys, make_fake, npm_verify, wait_sessions

SECRET_A = "whsec_" + base64.b64encode(bytes(range(32))).decode()
SECRET_B_NEW = "whsec_" + base64.b64encode(b"rotated-in key for webhook b!!!!").decode()
SECRET_B_OLD = "whsec_" + base64.b64encode(b"the older key of webhook b").decode()


# -- helpers -----------------------------------------------------------------------------------


def ok_requests(rx, path=None):
    return [r for r in rx.requests if r.ok and (path is None or r.path.split("?")[0] == path)]


def assert_shard_order(events):
    """Within each shard, s strictly increases in arrival order (no repeat, no reordering)."""
    last = {}
    for shard, s in keys(events):
        assert s > last.get(shard, 0), "shard %d: s=%d after s=%d" % (shard, s, last[shard])
        last[shard] = s


def spool_segments(tmp):
    return list((Path(tmp) / "state" / "spool").glob("w*/*.seg"))


def fast_retries(**extra):
    return dict({"retry_base_ms": 50, "retry_max_ms": 500}, **extra)


# -- routing, batches, signatures --------------------------------------------------------------
@timeout(180)
def test_ten_thousand_events_over_four_shards_to_two_webhooks(tmp):
    fake = make_fake(tmp, shards=4, guilds=4)
    rx = Receiver()
    cfg = base_config(fake, rx, tmp, compress="zlib")
    cfg["webhooks"] = [
        {"url": rx.url_for("/a"), "events": ["MESSAGE_CREATE"], "secret": SECRET_A,
         "max_batch_events": 100},
        {"url": rx.url_for("/b"), "events": ["TYPING_*", "GUILD_*"],
         "secret": [SECRET_B_NEW, SECRET_B_OLD], "max_batch_events": 250},
    ]
    sh = Shardhook(cfg, tmp)
    wait_sessions(fake, 4)
    want_a, want_b = set(), set()
    for _ in range(5):  # 5 rounds x 4 shards x (250 + 250) = 10,000 events
        want_a |= burst_keys(fake.burst(250, t="MESSAGE_CREATE"), 250)
        want_b |= burst_keys(fake.burst(250, t="TYPING_START"), 250)
    assert len(want_a) + len(want_b) == 10000
    rx.wait_events(len(want_a), 60, path="/a")
    wait_for(lambda: len([e for e in rx.events("/b") if e["t"] == "TYPING_START"]) >= len(want_b),
             60, what="webhook b's 5,000 TYPING_START events")
    time.sleep(0.3)  # nothing more may come
    a, b = rx.events("/a"), rx.events("/b")
    assert all(e["t"] == "MESSAGE_CREATE" for e in a)
    assert set(keys(a)) == want_a and len(a) == len(want_a)  # exactly its events, once each
    typing = [e for e in b if e["t"] == "TYPING_START"]
    assert set(keys(typing)) == want_b and len(typing) == len(want_b)
    assert all(e["t"] == "TYPING_START" or e["t"].startswith("GUILD_") for e in b)
    assert any(e["t"] == "GUILD_CREATE" for e in b)
    assert_shard_order(a)
    assert_shard_order(b)
    # the event is the dispatch as the fake sent it, with the shard added
    first = a[0]
    assert set(first) == {"shard", "op", "t", "s", "key", "d"} and first["op"] == 0
    assert first["shard"][1] == 4 and isinstance(first["d"]["n"], int)
    # every batch, checked by the reference verifier; b with each of its two keys
    ra, rb = ok_requests(rx, "/a"), ok_requests(rx, "/b")
    assert len(ra) >= len(want_a) / 100 and max(len(r.events) for r in ra) <= 100
    assert max(len(r.events) for r in rb) <= 250
    npm_verify(ra, SECRET_A)
    npm_verify(rb, [SECRET_B_NEW, SECRET_B_OLD])
    assert all(len(r.headers["webhook-signature"].split()) == 2 for r in rb)
    assert len({r.headers["webhook-id"] for r in ra + rb}) == len(ra) + len(rb)
    assert all(r.headers["content-type"] == "application/json" for r in ra)
    code, _, text = sh.api("GET", "/metrics")
    assert code == 200
    assert 'shardhook_webhook_events_delivered_total{webhook="0"} %d' % len(want_a) in text, text


def test_batches_close_at_events_bytes_and_delay(tmp):
    fake = make_fake(tmp)
    rx = Receiver()
    cfg = base_config(fake, rx, tmp)
    cfg["webhooks"] = [
        {"url": rx.url_for("/count"), "events": ["MESSAGE_CREATE"], "secret": SECRET_A,
         "max_batch_events": 10, "max_batch_delay_ms": 10000},
        {"url": rx.url_for("/bytes"), "events": ["MESSAGE_CREATE"], "secret": SECRET_A,
         "max_batch_bytes": 4096, "max_batch_delay_ms": 10000},
        {"url": rx.url_for("/delay"), "events": ["TYPING_START"], "secret": SECRET_A,
         "max_batch_delay_ms": 400},
    ]
    sh = Shardhook(cfg, tmp)
    wait_sessions(fake)
    fake.burst(95, shard=0)
    rx.wait_events(90, 10, path="/count")
    counts = [len(r.events) for r in ok_requests(rx, "/count")]
    assert counts[:9] == [10] * 9, counts  # the last 5 wait for the delay
    rx.wait_events(90, 10, path="/bytes")
    sizes = [len(r.body) for r in ok_requests(rx, "/bytes")]
    assert all(s <= 4096 for s in sizes) and max(sizes) > 2048, sizes
    t0 = time.monotonic()
    fake.dispatch(0, "TYPING_START", {"user_id": "1", "channel_id": "2"})
    (req,) = [r for r in rx.wait_requests(len(rx.requests) + 1, 5) if r.path == "/delay"]
    assert req.time - t0 >= 0.35, req.time - t0
    npm_verify(ok_requests(rx), SECRET_A)
    sh.stop()  # open batches are flushed on the way out
    assert len(rx.events("/count")) == 95 and len(rx.events("/bytes")) == 95


def test_disable_events_drop_before_routing(tmp):
    fake = make_fake(tmp)
    rx = Receiver()
    sh = Shardhook(base_config(fake, rx, tmp, disable_events=["TYPING_START"]), tmp)
    wait_sessions(fake)
    fake.burst(5, shard=0, t="TYPING_START")
    fake.burst(3, shard=0)
    wait_for(lambda: sum(e["t"] == "MESSAGE_CREATE" for e in rx.events()) == 3, 10)
    assert not [e for e in rx.events() if e["t"] == "TYPING_START"]


@timeout(120)
def test_max_in_flight_requests_run_at_once_and_never_share_a_shard(tmp):
    fake = make_fake(tmp, shards=4)
    rx = Receiver(delay=0.15)
    cfg = base_config(fake, rx, tmp, webhook={"max_in_flight": 2, "max_batch_events": 25,
                                              "events": ["MESSAGE_CREATE"]})
    Shardhook(cfg, tmp)
    wait_sessions(fake, 4)
    want = burst_keys(fake.burst(100, t="MESSAGE_CREATE"), 100)
    wait_for(lambda: want <= set(keys(rx.events())), 30, what="400 events")
    reqs = [r for r in rx.requests if r.ok]
    spans = [(r.time, r.answered_at, {e["shard"][0] for e in r.events}) for r in reqs]
    for i, (a0, a1, sa) in enumerate(spans):
        together = [sb for j, (b0, b1, sb) in enumerate(spans) if j != i and b0 < a1 and a0 < b1]
        assert all(not (sa & sb) for sb in together), "concurrent batches share a shard"
    at_once, most = 0, 0  # sweep: requests being handled at the same moment
    for _, step in sorted([(a0, 1) for a0, _, _ in spans] + [(a1, -1) for _, a1, _ in spans]):
        at_once += step
        most = max(most, at_once)
    assert most == 2, most  # max_in_flight, and no more
    assert_shard_order(rx.events())


@timeout(120)
def test_an_event_travelling_alone_does_not_hold_the_other_shards_of_its_lane(tmp):
    """4 shards over 2 lanes (shards 0 and 2 share one): an event larger than max_batch_bytes
    travels alone, and while the receiver holds it, the events of shard 2 that came after it
    are still delivered; those of shard 0 wait for it, in order."""
    fake = make_fake(tmp, shards=4)
    rx = Receiver()
    held = threading.Event()

    def answer(req):
        if not held.is_set() and any(e["t"] == "GUILD_UPDATE" for e in req.events):
            held.set()
            rx._stopping.wait(scale(4.0))  # hold the large one once; stop() cuts it short
        return 200

    rx.respond(answer)
    cfg = base_config(fake, rx, tmp, webhook={"max_in_flight": 2, "max_batch_events": 1000,
                                              "max_batch_bytes": 8192, "timeout_ms": 60000,
                                              "events": ["MESSAGE_CREATE", "GUILD_UPDATE"]})
    Shardhook(cfg, tmp)
    wait_sessions(fake, 4)
    fake.dispatch(0, "GUILD_UPDATE", {"id": "1", "description": "x" * 10000})
    assert held.wait(scale(10)), "the large event never reached the receiver"
    # both shards' events fit one batch together: before, shard 2's waited with shard 0's
    want0 = burst_keys(fake.burst(3, shard=0, t="MESSAGE_CREATE"), 3)
    want2 = {(2, s) for _, s in burst_keys(fake.burst(3, shard=2, t="MESSAGE_CREATE"), 3)}
    wait_for(lambda: want2 <= set(keys(rx.events())), 3, what="shard 2 while shard 0 waits")
    big = [r for r in rx.requests if any(e["t"] == "GUILD_UPDATE" for e in r.events)]
    assert len(big) == 1 and len(big[0].events) == 1, "the large event travels alone"
    assert big[0].answered_at is None, "shard 2 waited for shard 0's large event"
    assert not want0 & set(keys(rx.events())), "shard 0's later events went before its large one"
    wait_for(lambda: want0 <= set(keys(rx.events())), 15, what="shard 0 after it")
    assert_shard_order(rx.events())


class _PortRecorder(ThreadingHTTPServer):
    """A keep-alive receiver that notes the client port of every request."""
    daemon_threads = True

    def __init__(self):
        self.ports = []
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.ports.append(self.client_address[1])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
        super().__init__(("127.0.0.1", 0), H)


def test_connections_are_reused(tmp):
    srv = _PortRecorder()
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        fake = make_fake(tmp)
        cfg = base_config(fake, "http://127.0.0.1:%d/" % srv.server_address[1], tmp,
                          webhook={"max_batch_events": 5, "max_in_flight": 1})
        Shardhook(cfg, tmp)
        wait_sessions(fake)
        fake.burst(200, shard=0)
        wait_for(lambda: len(srv.ports) >= 40, 15, what="40 requests")
        assert len(set(srv.ports)) <= 2, "connections not reused: %d for %d requests" % (
            len(set(srv.ports)), len(srv.ports))
    finally:
        srv.shutdown()
        srv.server_close()


# -- retries -----------------------------------------------------------------------------------
@timeout(150)
def test_receiver_answers_500_for_20_seconds_then_recovers(tmp):
    fake = make_fake(tmp, shards=2)
    rx = Receiver()
    sh = Shardhook(base_config(fake, rx, tmp, webhook=dict(fast_retries(retry_max_ms=2000),
                                                           secret=SECRET_A)), tmp)
    wait_sessions(fake, 2)
    outage_end = time.monotonic() + 20
    rx.respond(lambda r: 500 if time.monotonic() < outage_end else 200)
    want = set()
    while time.monotonic() < outage_end - 2:
        want |= burst_keys(fake.burst(100, t="MESSAGE_CREATE"), 100)
        time.sleep(2)
    assert not ok_requests(rx)[-1:] or ok_requests(rx)[-1].time < outage_end - 20 + 0.5
    failed = [r for r in rx.requests if r.status == 500]
    assert len(failed) >= 10, len(failed)
    wait_for(lambda: want <= set(keys(rx.events())), 30, what="every event after the outage")
    time.sleep(0.3)
    msgs = [e for e in rx.events() if e["t"] == "MESSAGE_CREATE"]
    assert set(keys(msgs)) == want and len(msgs) == len(want)  # nothing lost, nothing twice
    assert_shard_order(rx.events())
    # a failed batch is retried under the same webhook-id
    ids = {r.headers["webhook-id"] for r in failed}
    assert ids & {r.headers["webhook-id"] for r in ok_requests(rx)}
    npm_verify(ok_requests(rx), SECRET_A)
    assert "msg=\"webhook answered; retrying\"" in sh.log_text()


def test_429_retry_after_seconds_is_honoured(tmp):
    fake = make_fake(tmp)
    rx = Receiver()
    rx.respond([(429, {"Retry-After": "2"}, "slow down")])
    Shardhook(base_config(fake, rx, tmp, webhook=fast_retries()), tmp)
    first, second = rx.wait_requests(2, 10)[:2]
    assert first.status == 429 and second.ok
    assert second.time - first.answered_at >= 2.0, second.time - first.answered_at
    assert second.time - first.answered_at < 4.0
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    assert second.body == first.body
    # a fresh timestamp (and so a fresh signature) on each attempt
    assert int(second.headers["webhook-timestamp"]) >= int(first.headers["webhook-timestamp"]) + 1


def test_503_retry_after_http_date_is_honoured(tmp):
    fake = make_fake(tmp)
    rx = Receiver()
    rx.respond(lambda r: (503, {"Retry-After": formatdate(time.time() + 3, usegmt=True)}, "")
               if r.index == 0 else 200)
    Shardhook(base_config(fake, rx, tmp, webhook=fast_retries()), tmp)
    first, second = rx.wait_requests(2, 10)[:2]
    assert first.status == 503 and second.ok
    # the date has whole seconds: 3 s ahead, truncated, is at least 2 s
    assert 1.9 <= second.time - first.answered_at < 5.0, second.time - first.answered_at


def test_hung_receiver_times_out_and_is_retried(tmp):
    fake = make_fake(tmp)
    rx = Receiver()

    def answer(r):
        if r.index == 0:
            time.sleep(scale(3))  # far past timeout_ms: shardhook gives up on this attempt
        return 200
    rx.respond(answer)
    sh = Shardhook(base_config(fake, rx, tmp, webhook=fast_retries(timeout_ms=400)), tmp)
    reqs = rx.wait_requests(2, 10, answered=False)
    assert reqs[1].headers["webhook-id"] == reqs[0].headers["webhook-id"]
    assert 0.35 <= reqs[1].time - reqs[0].time < 2.5, reqs[1].time - reqs[0].time
    wait_for(lambda: any(r.ok and r.index >= 1 for r in rx.requests), 5)
    sh.wait_log(r'msg="webhook attempt failed; retrying".*error="[^"]*timed out', 5)


def test_400_dead_letters_the_batch_and_later_batches_go_on(tmp):
    fake = make_fake(tmp)
    rx = Receiver()
    rx.respond([(400, {"Content-Type": "text/plain"}, "bad request: nope")])
    sh = Shardhook(base_config(fake, rx, tmp, webhook=fast_retries()), tmp)
    first = rx.wait_requests(1, 10)[0]
    assert first.status == 400
    sh.wait_log(r'msg="webhook refused a batch; dead-lettered" webhook=0 status=400', 5)
    wait_sessions(fake)
    fake.burst(20, shard=0)
    wait_for(lambda: sum(e["t"] == "MESSAGE_CREATE" for e in rx.events()) == 20, 10)
    files = list((Path(tmp) / "state" / "dead-letter").glob("*.json"))
    assert len(files) == 1, files
    dl = json.loads(files[0].read_text())
    assert dl["status"] == 400 and dl["attempts"] == 1 and dl["webhook"] == 0
    assert dl["response"] == "bad request: nope"
    assert dl["webhook_id"] == first.headers["webhook-id"]
    assert dl["body"] == first.json and dl["events"] == len(first.events)
    assert len(rx.requests) == len(ok_requests(rx)) + 1  # the refused batch was not retried
    code, _, text = sh.api("GET", "/metrics")
    assert 'shardhook_webhook_dead_letters_total{webhook="0"} 1' in text


# -- memory limit, spool, flow control ---------------------------------------------------------
@timeout(150)
def test_receiver_down_spool_fills_pauses_the_gateway_and_drains_in_order(tmp):
    fake = make_fake(tmp, shards=2)
    port = free_port()  # nothing listens there yet: the receiver is down
    url = "http://127.0.0.1:%d/" % port
    cfg = base_config(fake, url, tmp, spool_max_bytes=1 << 20,
                      webhook=fast_retries(max_memory_bytes=65536, secret=SECRET_A,
                                           max_batch_events=20))
    sh = Shardhook(cfg, tmp)
    wait_sessions(fake, 2)
    want = set()
    for _ in range(3):  # about 6 MB of events, against 64 KiB of memory and 1 MiB of spool
        want |= burst_keys(fake.burst(1000, t="MESSAGE_CREATE"), 1000)
    sh.wait_log(r"delivery is behind; asking the gateway to stop reading", 20)
    assert spool_segments(tmp), "no spool segment while the receiver is down"
    sh.wait_log(r'msg="pausing reading the gateway"', 5)
    rx = Receiver(port=port)
    wait_for(lambda: want <= set(keys(rx.events())), 60, what="every event after the outage")
    time.sleep(0.3)
    msgs = [e for e in rx.events() if e["t"] == "MESSAGE_CREATE"]
    assert set(keys(msgs)) == want and len(msgs) == len(want)
    assert_shard_order(rx.events())
    sh.wait_log(r"delivery caught up; the gateway reads again", 10)
    wait_for(lambda: not spool_segments(tmp), 10, what="the spool to be empty")
    npm_verify(ok_requests(rx)[-200:], SECRET_A)


@timeout(120)
def test_without_a_spool_the_memory_limit_pauses_the_gateway(tmp):
    fake = make_fake(tmp)
    port = free_port()
    cfg = base_config(fake, "http://127.0.0.1:%d/" % port, tmp, spool_max_bytes=0,
                      webhook=fast_retries(max_memory_bytes=65536, max_batch_events=20))
    sh = Shardhook(cfg, tmp)
    wait_sessions(fake)
    want = burst_keys(fake.burst(1500, shard=0), 1500)
    sh.wait_log(r"delivery is behind; asking the gateway to stop reading", 20)
    assert not spool_segments(tmp)
    rx = Receiver(port=port)
    wait_for(lambda: want <= set(keys(rx.events())), 30, what="every event after the outage")
    time.sleep(0.3)
    msgs = keys([e for e in rx.events() if e["t"] == "MESSAGE_CREATE"])
    assert sorted(msgs) == sorted(want)
    assert_shard_order(rx.events())
    sh.wait_log(r"delivery caught up; the gateway reads again", 10)


# -- checkpoints and restarts ------------------------------------------------------------------
def read_checkpoint(tmp, shard):
    """The newest checkpoint of a shard, as shardhook reads it at start: the snapshot
    shard-N.json or a later complete line of shard-N.journal (highest "n" wins)."""
    d = Path(tmp) / "state" / "checkpoints"
    found = []
    snap = d / ("shard-%d.json" % shard)
    if snap.exists():
        found.append(json.loads(snap.read_text()))
    journal = d / ("shard-%d.journal" % shard)
    if journal.exists():
        for line in journal.read_text().split("\n")[:-1]:  # the last piece has no newline
            try:
                found.append(json.loads(line))
            except ValueError:
                pass
    if not found:
        raise FileNotFoundError(snap)
    return max(found, key=lambda cp: cp.get("n", 0))


@timeout(150)
def test_kill9_restart_resumes_from_the_checkpoint(tmp):
    fake = make_fake(tmp, shards=2)
    rx = Receiver(delay=0.01)
    cfg = base_config(fake, rx, tmp, webhook={"max_batch_events": 50, "secret": SECRET_A})
    sh = Shardhook(cfg, tmp)
    wait_sessions(fake, 2)
    want = burst_keys(fake.burst(3000, t="MESSAGE_CREATE"), 3000)
    wait_for(lambda: len(rx.events()) >= 1500, 30, what="half of the events")
    sh.kill()
    before = rx.requests
    n_identify = len(fake.received(op=2))
    assert n_identify == 2
    cps = [read_checkpoint(tmp, i) for i in range(2)]
    assert all(cp["shard_count"] == 2 and cp["seq"] > 0 for cp in cps)
    sh.start()
    fake.wait(lambda f: len(f.received(op=6)) >= 2, 15, what="two RESUMEs")
    assert len(fake.received(op=2)) == n_identify  # no IDENTIFY: the sessions resumed
    by_shard = {r["payload"]["d"]["session_id"]: r["payload"]["d"]["seq"]
                for r in fake.received(op=6)}
    assert by_shard == {cp["session_id"]: cp["seq"] for cp in cps}
    wait_for(lambda: want <= set(keys(rx.events())), 60, what="every event after the restart")
    time.sleep(0.3)
    msgs = [e for e in rx.events() if e["t"] == "MESSAGE_CREATE"]
    assert set(keys(msgs)) == want
    # duplicates only from what was in flight at the kill: per shard, its last batch before it
    seen, dups = set(), []
    for e in msgs:
        k = (e["shard"][0], e["s"])
        if k in seen:
            dups.append(k)
        seen.add(k)
    last_batch = {}
    for r in before:
        for e in r.events:
            last_batch[e["shard"][0]] = r.index
    in_flight = {(e["shard"][0], e["s"]) for r in before for e in r.events
                 if last_batch.get(e["shard"][0]) == r.index}
    assert set(dups) <= in_flight, (len(dups), sorted(set(dups) - in_flight)[:10])
    print("duplicates after kill -9: %d (batches in flight held %d events)" % (len(dups),
                                                                             len(in_flight)))
    assert len(dups) <= 2 * 50
    after = [e for r in rx.requests[len(before):] if r.ok for e in r.events]
    assert_shard_order(after)


@timeout(120)
def test_sigterm_flushes_exits_0_and_the_restart_resumes(tmp):
    fake = make_fake(tmp)
    rx = Receiver()
    cfg = base_config(fake, rx, tmp, webhook={"max_batch_delay_ms": 5000, "secret": SECRET_A,
                                              "max_batch_events": 10000})
    sh = Shardhook(cfg, tmp)
    wait_sessions(fake)
    first = burst_keys(fake.burst(40, shard=0), 40)
    time.sleep(0.3)
    assert not rx.events(), "the batch should still be open (max_batch_delay_ms 5000)"
    assert sh.stop() == 0
    assert first <= set(keys(rx.events()))  # flushed on the way out
    conn = fake.connections()[0]
    assert conn["closed_by"] == "client" and conn["close_code"] == 4000, conn
    cp = read_checkpoint(tmp, 0)
    assert cp["seq"] == max(s for _, s in first) or cp["seq"] >= max(s for _, s in first)
    sh.wait_log(r'msg="stopped" exit_code=0', 1)
    # events that happen while shardhook is down are replayed after the RESUME
    later = burst_keys(fake.burst(25, shard=0), 25)
    n_before = len(rx.events())
    sh.start()
    fake.wait(lambda f: len(f.received(op=6)) >= 1, 10, what="RESUME")
    assert len(fake.received(op=2)) == 1
    resume = fake.received(op=6)[0]["payload"]["d"]
    assert resume["session_id"] == cp["session_id"] and resume["seq"] == cp["seq"]
    wait_for(lambda: later <= set(keys(rx.events())), 15, what="events sent while down")
    time.sleep(0.3)
    msgs = keys([e for e in rx.events() if e["t"] == "MESSAGE_CREATE"])
    assert len(msgs) == len(set(msgs)) == 65  # nothing lost, nothing twice
    assert len(rx.events()) > n_before
    sh.wait_log(r'msg="resuming from checkpoint" shard=0', 1)


@timeout(120)
def test_a_webhook_never_gets_again_what_it_acknowledged(tmp):
    """Two webhooks, one refusing with 503 at SIGTERM: its unsent batches are saved in the spool
    and come first after the restart, under their webhook-id; the replay from the checkpoint
    (what the slow one acknowledged) sends neither webhook anything again."""
    fake = make_fake(tmp)
    rx = Receiver()
    rx.respond(503, path="/slow")
    cfg = base_config(fake, None, tmp, shutdown_timeout_ms=300)
    cfg["webhooks"] = [
        {"url": rx.url_for("/fast"), "events": ["MESSAGE_CREATE"], "secret": SECRET_A},
        dict(fast_retries(), url=rx.url_for("/slow"), events=["MESSAGE_CREATE"], secret=SECRET_A),
    ]
    sh = Shardhook(cfg, tmp)
    wait_sessions(fake)
    want = burst_keys(fake.burst(60, shard=0), 60)
    rx.wait_events(60, 10, path="/fast")
    wait_for(lambda: [r for r in rx.requests if r.path == "/slow"], 5)
    assert sh.stop() == 0
    assert "unsent batches saved in the spool; the next start sends them first" in sh.log_text()
    assert "events not delivered" not in sh.log_text()
    assert (Path(tmp) / "state" / "spool" / "CLEAN").exists()
    cp = read_checkpoint(tmp, 0)
    acked = sorted(h["acked"] for h in cp["webhooks"].values())
    assert cp["seq"] == acked[0] < acked[1], cp  # RESUME from what the slow webhook acknowledged
    assert cp["clean"] is True
    assert max(h["queued"] for h in cp["webhooks"].values()) == max(s for _, s in want)
    refused_ids = {r.headers["webhook-id"] for r in rx.requests if r.path == "/slow"}
    rx.respond(200, path="/slow")
    sh.start()
    fake.wait(lambda f: len(f.received(op=6)) >= 1, 10, what="RESUME")
    wait_for(lambda: want <= set(keys(rx.events("/slow"))), 15, what="the slow webhook's events")
    time.sleep(0.5)
    assert sorted(keys(rx.events("/fast"))) == sorted(want)  # not one again
    assert sorted(keys(rx.events("/slow"))) == sorted(want)
    first_ok = [r for r in ok_requests(rx, "/slow")][0]
    assert first_ok.headers["webhook-id"] in refused_ids  # the saved batch itself
    assert not (Path(tmp) / "state" / "spool" / "CLEAN").exists()
    sh.wait_log(r'msg="sending the batches the last stop saved first" webhook=1', 1)
    npm_verify(ok_requests(rx), SECRET_A)


@timeout(120)
def test_a_crash_sets_the_spool_aside_and_the_replay_delivers(tmp):
    fake = make_fake(tmp)
    port = free_port()
    url = "http://127.0.0.1:%d/" % port
    cfg = base_config(fake, url, tmp, webhook=fast_retries(max_memory_bytes=65536,
                                                           max_batch_events=10))
    sh = Shardhook(cfg, tmp)
    wait_sessions(fake)
    wait_for(lambda: read_checkpoint(tmp, 0)["seq"] == 0, 5, what="the session's checkpoint")
    want = burst_keys(fake.burst(400, shard=0), 400)
    wait_for(lambda: spool_segments(tmp), 10, what="batches in the spool")
    sh.kill()
    rx = Receiver(port=port)
    sh.start()
    sh.wait_log(r"an earlier run stopped without saving its spool.*webhook=0", 10)
    fake.wait(lambda f: len(f.received(op=6)) >= 1, 10, what="RESUME")
    wait_for(lambda: want <= set(keys(rx.events())), 20, what="every event from the replay")
    time.sleep(0.3)
    msgs = keys([e for e in rx.events() if e["t"] == "MESSAGE_CREATE"])
    assert sorted(msgs) == sorted(want)  # nothing lost, nothing twice
    assert_shard_order(rx.events())
    assert list((Path(tmp) / "state" / "spool").glob("stale-*"))


def test_checkpoint_for_another_shard_count_is_ignored(tmp):
    d = Path(tmp) / "state" / "checkpoints"
    d.mkdir(parents=True)
    (d / "shard-0.json").write_text(json.dumps({
        "version": 1, "shard": 0, "shard_count": 2, "session_id": "0123456789abcdef",
        "resume_gateway_url": "ws://127.0.0.1:9/", "seq": 5, "webhooks": {}}))
    fake = make_fake(tmp)
    rx = Receiver()
    sh = Shardhook(base_config(fake, rx, tmp), tmp)
    sh.wait_log(r'checkpoint for another shard count ignored.*shard=0 '
                r'checkpoint_shard_count=2 shard_count=1', 10)
    wait_sessions(fake)
    assert len(fake.received(op=2)) == 1 and not fake.received(op=6)
    wait_for(lambda: read_checkpoint(tmp, 0)["shard_count"] == 1, 10,
             what="a checkpoint for the new session")


# -- example receivers -------------------------------------------------------------------------
def start_example(tmp, argv, port, secret, name):
    log = Path(tmp) / ("%s.log" % name)
    env = dict(os.environ, PORT=str(port), WEBHOOK_SECRET=secret, HOST="127.0.0.1",
               NODE_PATH=str(ROOT / "tests" / "node_modules"))
    f = open(log, "wb")
    p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT),
                         start_new_session=True)
    f.close()
    wait_for(lambda: "listening" in log.read_text(), 10, what="%s to listen" % name)
    return p, log


def check_example(tmp, argv, name):
    port = free_port()
    p, log = start_example(tmp, argv, port, SECRET_A, name)
    try:
        fake = make_fake(tmp)
        cfg = base_config(fake, "http://127.0.0.1:%d/discord/events" % port, tmp,
                          webhook={"secret": SECRET_A})
        Shardhook(cfg, tmp)
        wait_sessions(fake)
        first = fake.burst(12, shard=0)["first_s"]
        wait_for(lambda: log.read_text().count("MESSAGE_CREATE") >= 12, 15,
                 what="the example to print 12 messages")
        text = log.read_text()
        assert "verified" in text and "rejected" not in text, text[-2000:]
        # an event it handled, replayed in a new batch (as after a takeover): skipped by its key
        key = "0:%s:%d" % (fake.sessions()[0]["session_id"], first)
        body = json.dumps({"events": [{"shard": [0, 1], "op": 0, "t": "MESSAGE_CREATE",
                                       "s": first, "key": key, "d": {"n": 1}}]}).encode()
        ts = str(int(time.time()))
        import urllib.request
        req = urllib.request.Request("http://127.0.0.1:%d/discord/events" % port, data=body,
                                     method="POST",
                                     headers={"webhook-id": "msg_replayed",
                                              "webhook-timestamp": ts,
                                              "webhook-signature": sign(SECRET_A, "msg_replayed",
                                                                        ts, body),
                                              "Content-Type": "application/json"})
        assert urllib.request.urlopen(req, timeout=5).status == 200
        wait_for(lambda: "duplicate event key=%s" % key in log.read_text(), 5,
                 what="the replayed event skipped")
        assert log.read_text().count("MESSAGE_CREATE") == 12
        # a forged request is refused with 401
        import urllib.request
        import urllib.error
        req = urllib.request.Request("http://127.0.0.1:%d/discord/events" % port,
                                     data=b'{"events":[]}', method="POST",
                                     headers={"webhook-id": "msg_x",
                                              "webhook-timestamp": str(int(time.time())),
                                              "webhook-signature": "v1,AAAA",
                                              "Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=5)
            raise AssertionError("a forged request was accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 401
        wait_for(lambda: "rejected" in log.read_text(), 5)
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(10)


def test_node_example_receiver_verifies_with_standardwebhooks(tmp):
    check_example(tmp, ["node", str(ROOT / "examples" / "receiver-node" / "server.js")], "node")


def test_python_example_receiver_verifies_from_the_spec(tmp):
    check_example(tmp, ["python3", str(ROOT / "examples" / "receiver-python" / "receiver.py")],
                  "python")
