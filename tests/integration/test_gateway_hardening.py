"""Gateway hardening, end to end: connections that never finish their handshake, payloads over
max_payload_bytes, dispatches without `s`, presence kept for a new session, and close codes
counted in /metrics. build/shardhook against the fake Discord (and, where the gateway must stay
silent, a plain TCP listener that accepts and never answers)."""
import json
import signal
import socket
import threading
import time

from harness import FakeDiscord, Receiver, Shardhook, base_config, wait_for


class SilentListener:
    """Accepts TCP connections on 127.0.0.1 and never answers them: a gateway (or a middlebox)
    that completes TCP and then says nothing, not even to the websocket upgrade."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = "ws://127.0.0.1:%d" % self.port
        self.accepted = []
        self.lock = threading.Lock()
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted.append(conn)  # kept open, never read, never answered

    def count(self):
        with self.lock:
            return len(self.accepted)

    def stop(self):
        self.stopped = True
        self.sock.close()
        with self.lock:
            for c in self.accepted:
                c.close()


def shards(sh):
    status, _, body = sh.api("GET", "/v1/shards")
    assert status == 200, (status, body)
    return body["shards"]


def check_keeps_trying_and_stops_cleanly(sh, silent, since=0, attempts=3):
    """The shard keeps connecting to the silent listener, answers reconnect with 202 without
    crashing, and SIGTERM ends the process with 0."""
    seen = set()
    wait_for(lambda: silent.count() > since, 40, what="a connection to the silent listener")

    def tried():
        seen.add(shards(sh)[0]["status"])
        return silent.count() >= since + attempts

    wait_for(tried, 40, interval=0.05, what="%d connections to the silent listener" % attempts)
    assert seen <= {"queued", "connecting", "disconnected"}, seen
    status, _, body = sh.api("POST", "/v1/shards/0/reconnect", {"resume": True})
    assert status == 202, (status, body)
    n = silent.count()
    wait_for(lambda: silent.count() > n, 20, what="a connection after the reconnect request")
    assert sh.alive()
    sh.signal(signal.SIGTERM)
    assert sh.wait_exit(15) == 0


def test_silent_gateway_url_is_retried(tmp):
    silent = SilentListener()
    try:
        fake = FakeDiscord(tmp, gateway_url=silent.url)
        rx = Receiver()
        sh = Shardhook(base_config(fake, rx, tmp, connect_timeout_ms=500), tmp)
        check_keeps_trying_and_stops_cleanly(sh, silent)
        sh.wait_log(r'msg="gateway did not finish the handshake in time', 1)
        assert not fake.received(op=2)
    finally:
        silent.stop()


def test_silent_gateway_ended_by_libwebsockets_is_retried(tmp):
    # connect_timeout_ms longer than libwebsockets' own wait for the upgrade (about 5 s): the
    # library ends the connection itself, through callbacks that used to leave the shard holding
    # a freed connection, stuck in "connecting"
    silent = SilentListener()
    try:
        fake = FakeDiscord(tmp, gateway_url=silent.url)
        rx = Receiver()
        sh = Shardhook(base_config(fake, rx, tmp, connect_timeout_ms=600000), tmp)
        check_keeps_trying_and_stops_cleanly(sh, silent, attempts=2)
    finally:
        silent.stop()


def test_silent_resume_url_is_retried(tmp):
    silent = SilentListener()
    try:
        fake = FakeDiscord(tmp, resume_url=silent.url, identify_interval_ms=200)
        rx = Receiver()
        sh = Shardhook(base_config(fake, rx, tmp, connect_timeout_ms=500, max_resume_attempts=100),
                       tmp)
        fake.wait(lambda f: f.sessions() and f.sessions()[0]["seq"] >= 1, 10, what="READY")
        fake.close(0, 4000)  # resumable: the shard resumes on resume_gateway_url (silent)
        check_keeps_trying_and_stops_cleanly(sh, silent)
        assert len(fake.received(op=2)) == 1  # still resuming: no new IDENTIFY
    finally:
        silent.stop()


def wait_ready(fake, n=1):
    return fake.wait(lambda f: len(f.sessions()) >= n and all(s["seq"] >= 1 for s in f.sessions()),
                     10, what="%d session(s) ready" % n)


def test_dispatch_without_s_is_delivered_with_null_s(tmp):
    fake = FakeDiscord(tmp, identify_interval_ms=200)
    rx = Receiver()
    cfg = base_config(fake, rx, tmp)
    sh = Shardhook(cfg, tmp)
    wait_ready(fake)
    a = fake.dispatch(0, "MESSAGE_CREATE", {"n": 1})["s"][0]
    fake.raw(0, text=json.dumps({"op": 0, "t": "NO_S_EVENT", "d": {"n": 2}}))
    fake.raw(0, text=json.dumps({"op": 0, "t": "NULL_S_EVENT", "s": None, "d": {"n": 3}}))
    b = fake.dispatch(0, "MESSAGE_CREATE", {"n": 4})["s"][0]
    wait_for(lambda: any(e["d"].get("n") == 4 for e in rx.events()), 10, what="the last event")
    got = [(e["t"], e["s"], e["d"]["n"]) for e in rx.events()
           if e["t"] in ("MESSAGE_CREATE", "NO_S_EVENT", "NULL_S_EVENT")]
    assert got == [("MESSAGE_CREATE", a, 1), ("NO_S_EVENT", None, 2), ("NULL_S_EVENT", None, 3),
                   ("MESSAGE_CREATE", b, 4)], got
    real = [e["s"] for e in rx.events() if e["s"] is not None]
    assert len(real) == len(set(real)), real  # no two events share an s
    sh.signal(signal.SIGTERM)
    assert sh.wait_exit(15) == 0
    # the checkpoint holds the last real s: the next start resumes from it
    Shardhook(cfg, tmp)
    r = fake.wait(lambda f: f.received(op=6), 10, what="RESUME after the restart")
    assert r[0]["payload"]["d"]["seq"] == b, (r[0]["payload"]["d"], b)


def metrics_text(sh):
    status, _, body = sh.api("GET", "/metrics")
    assert status == 200, status
    return body if isinstance(body, str) else json.dumps(body)


def oversized_payload_costs_only_itself(tmp, compress):
    fake = FakeDiscord(tmp, identify_interval_ms=200)
    rx = Receiver()
    # the webhook routes only MESSAGE_CREATE and GUILD_CREATE is disabled: the synthetic event
    # reaches it all the same
    sh = Shardhook(base_config(fake, rx, tmp, compress=compress, max_payload_bytes=65536,
                               disable_events=["GUILD_CREATE"], webhook={"events": ["MESSAGE_CREATE"]}),
                   tmp)
    wait_ready(fake)
    first = fake.dispatch(0, "MESSAGE_CREATE", {"n": 1})["s"][0]
    big_d = {"id": "1", "blob": "x" * 100000}
    big = fake.dispatch(0, "GUILD_CREATE", big_d)["s"][0]
    burst = fake.burst(100, shard=0)  # MESSAGE_CREATE with d.n 1..100
    later = list(range(burst["first_s"], burst["last_s"] + 1))
    wait_for(lambda: sum(e["t"] == "MESSAGE_CREATE" for e in rx.events()) >= 101, 10,
             what="the 100 events after the oversized one")
    size = len('{"t":"GUILD_CREATE","s":%d,"op":0,"d":' % big) + \
        len(json.dumps(big_d, separators=(",", ":"))) + 1
    got = [(e["t"], e["s"]) for e in rx.events()]
    assert got == [("MESSAGE_CREATE", first), ("SHARDHOOK_EVENT_SKIPPED", big)] + \
        [("MESSAGE_CREATE", s) for s in later], got
    skipped = [e for e in rx.events() if e["t"] == "SHARDHOOK_EVENT_SKIPPED"][0]
    assert skipped["shard"] == [0, 1] and skipped["op"] == 0, skipped
    assert skipped["d"] == {"shard": 0, "s": big, "t": "GUILD_CREATE", "size": size}, skipped
    assert [e["d"]["n"] for e in rx.events() if e["t"] == "MESSAGE_CREATE"] == \
        [1] + list(range(1, 101))
    # the session went on: one connection, one IDENTIFY, no RESUME
    assert len(fake.received(op=2)) == 1 and not fake.received(op=6)
    assert len(fake.connections()) == 1, fake.connections()
    sh.wait_log(r'msg="gateway payload over max_payload_bytes skipped; the session goes on" '
                r'shard=0 bytes=%d max_payload_bytes=65536 op=0 t="GUILD_CREATE" s=%d' % (size, big),
                5)
    assert "shardhook_gateway_payloads_skipped_total 1" in metrics_text(sh)


def test_oversized_payload_zlib(tmp):
    oversized_payload_costs_only_itself(tmp, "zlib")


def test_oversized_payload_zstd(tmp):
    oversized_payload_costs_only_itself(tmp, "zstd")


def test_oversized_payload_uncompressed(tmp):
    oversized_payload_costs_only_itself(tmp, "none")


def test_presence_from_the_api_survives_a_new_session(tmp):
    fake = FakeDiscord(tmp, identify_interval_ms=200)
    rx = Receiver()
    sh = Shardhook(base_config(fake, rx, tmp, presence={"status": "online", "activities": []}),
                   tmp)
    wait_ready(fake)
    body = {"status": "idle", "activities": [{"name": "the API", "type": 0}]}
    status, _, answer = sh.api("POST", "/v1/presence", body)
    assert status == 202, (status, answer)
    fake.wait(lambda f: f.received(op=3), 10, what="op 3")
    fake.op(0, 9, False)  # invalid session, not resumable: a new IDENTIFY
    ids = fake.wait(lambda f: len(f.received(op=2)) >= 2 and f.received(op=2), 10,
                    what="second IDENTIFY")
    assert ids[0]["payload"]["d"]["presence"]["status"] == "online"
    p = ids[1]["payload"]["d"]["presence"]
    assert p["status"] == "idle" and p["activities"] == [{"name": "the API", "type": 0}], p
    assert p["afk"] is False and p["since"] is None, p


def test_gateway_closes_are_counted_by_code(tmp):
    fake = FakeDiscord(tmp, identify_interval_ms=200)
    rx = Receiver()
    sh = Shardhook(base_config(fake, rx, tmp), tmp)
    wait_ready(fake)
    fake.close(0, 4000)
    fake.wait(lambda f: len(f.received(op=6)) >= 1, 10, what="RESUME after the close")
    wait_ready(fake)
    sh.wait_log(r'msg="resumed" shard=0', 5)
    fake.close(0, 4009)  # session timed out: a new session
    fake.wait(lambda f: len(f.received(op=2)) >= 2, 10, what="IDENTIFY after 4009")
    fake.close(0, drop=True)
    fake.wait(lambda f: len(f.received(op=6)) >= 2, 10, what="RESUME after the drop")
    text = metrics_text(sh)
    assert 'shardhook_gateway_closes_total{code="4000"} 1' in text, text
    assert 'shardhook_gateway_closes_total{code="4009"} 1' in text, text
    assert 'shardhook_gateway_closes_total{code="none"} 1' in text, text
    # shardhook's own closes (SIGTERM's 4000) are not the gateway's
    sh.signal(signal.SIGTERM)
    assert sh.wait_exit(15) == 0
