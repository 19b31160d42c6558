"""The gateway lifecycle, end to end: build/shardhook against the fake Discord, asserting what
the fake recorded on the wire (IDENTIFY, heartbeats, RESUME, close codes) and what the webhook
receiver got."""
import re
import signal
import time

from harness import FakeDiscord, Receiver, Shardhook, base_config, wait_for, run_shardhook


def identifies(fake):
    return fake.received(op=2)


def resumes(fake):
    return fake.received(op=6)


def start(tmp, fake_opts=None, **cfg):
    # the fake enforces the same identify window shardhook is configured with (200 ms)
    fake = FakeDiscord(tmp, **dict({"identify_interval_ms": 200}, **(fake_opts or {})))
    rx = Receiver()
    sh = Shardhook(base_config(fake, rx, tmp, **cfg), tmp)
    return fake, rx, sh


def wait_ready(fake, n=1):
    """Until n sessions exist and each has a READY (seq >= 1)."""
    return fake.wait(lambda f: len(f.sessions()) >= n and all(s["seq"] >= 1 for s in f.sessions()),
                     10, what="%d session(s) ready" % n)


def test_identify_carries_the_configured_fields(tmp):
    presence = {"status": "dnd", "activities": [{"name": "webhooks", "type": 3}]}
    fake, rx, sh = start(tmp, intents=["GUILDS", "GUILD_MESSAGES", "GUILD_VOICE_STATES"],
                         large_threshold=120, presence=presence)
    wait_ready(fake)
    ids = identifies(fake)
    assert len(ids) == 1, ids
    d = ids[0]["payload"]["d"]
    assert d["token"] == "test-token"
    assert d["intents"] == (1 << 0) | (1 << 9) | (1 << 7)
    assert d["shard"] == [0, 1]
    assert d["large_threshold"] == 120
    assert set(d["properties"]) == {"os", "browser", "device"}
    assert d["properties"]["browser"] == "shardhook"
    assert d.get("compress") in (None, False)  # never payload compression
    assert d["presence"]["status"] == "dnd"
    assert d["presence"]["activities"] == [{"name": "webhooks", "type": 3}]
    conn = fake.connections()[0]
    assert conn["path"] == "/"
    q = dict(kv.split("=", 1) for kv in conn["query"].split("&"))
    assert q == {"v": "10", "encoding": "json"}  # compress "none": no compress parameter
    # the token never reaches the log
    assert "test-token" not in sh.log_text()


def test_heartbeats_on_interval_with_last_seq(tmp):
    fake, rx, sh = start(tmp, {"heartbeat_ms": 400})
    wait_ready(fake)
    fake.wait(lambda f: len(f.received(op=1)) >= 2, 5, what="two heartbeats")
    burst = fake.burst(5, shard=0)
    rx.wait_events(5 + 1, timeout=5)  # READY + 5 (guild creates may add more)
    n_before = len(fake.received(op=1))
    fake.wait(lambda f: len(f.received(op=1)) >= n_before + 3, 5, what="three more heartbeats")
    beats = fake.received(op=1)
    hello_t = fake.connections()[0]["opened_ms"]
    # the first beat is jittered inside one interval after HELLO
    assert 0 <= beats[0]["t_ms"] - hello_t <= 400 + 150, (beats[0]["t_ms"], hello_t)
    gaps = [b["t_ms"] - a["t_ms"] for a, b in zip(beats[1:], beats[2:])]
    assert all(300 <= g <= 550 for g in gaps), gaps
    seqs = [b["payload"]["d"] for b in beats]
    assert all(s is None or isinstance(s, int) for s in seqs)
    nums = [s for s in seqs if s is not None]
    assert nums == sorted(nums), seqs
    assert seqs[-1] >= burst["last_s"], (seqs, burst)


def test_server_requested_heartbeat_is_answered_at_once(tmp):
    fake, rx, sh = start(tmp, {"heartbeat_ms": 30000})
    wait_ready(fake)
    before = len(fake.received(op=1))
    t0 = time.monotonic()
    fake.op(0, 1)
    fake.wait(lambda f: len(f.received(op=1)) > before, 2, what="heartbeat after server op 1")
    assert time.monotonic() - t0 < 1.0


def check_resumed(fake, rx, sh, session, min_seq):
    """One more connection on resume_gateway_url with the same query, a RESUME with the
    session and seq, and no second IDENTIFY."""
    fake.wait(lambda f: len(resumes(f)) >= 1, 10, what="RESUME")
    r = resumes(fake)[0]
    assert r["payload"]["d"]["session_id"] == session["session_id"]
    assert r["payload"]["d"]["seq"] >= min_seq
    assert r["payload"]["d"]["token"] == "test-token"
    conns = fake.connections()
    resume_conn = [c for c in conns if c["id"] == r["conn"]][0]
    assert resume_conn["path"].rstrip("/") == "/resume", resume_conn
    assert resume_conn["query"] == conns[0]["query"]
    assert len(identifies(fake)) == 1
    sh.wait_log(r'msg="resumed" shard=0', 5)


def test_op7_reconnect_resumes_and_replays(tmp):
    fake, rx, sh = start(tmp, {"heartbeat_ms": 1000}, compress="zlib")
    wait_ready(fake)
    first = fake.burst(3, shard=0)
    rx.wait_events(4, timeout=5)
    session = fake.sessions()[0]
    fake.op(0, 7)
    # Discord sends nothing after op 7; events that follow the close reach the shard after its
    # RESUME (replayed if it is still away, live if it is back)
    fake.wait(lambda f: f.connections()[0]["closed_ms"] is not None, 5, what="op 7 close")
    fake.burst(4, shard=0)
    check_resumed(fake, rx, sh, session, first["last_s"])
    closed = fake.connections()[0]
    assert closed["closed_by"] == "client" and closed["close_code"] not in (1000, 1001), closed
    wait_for(lambda: len([e for e in rx.events() if e["t"] == "MESSAGE_CREATE"]) >= 7, 10,
             what="all 7 messages")
    msgs = [e for e in rx.events() if e["t"] == "MESSAGE_CREATE"]
    assert [e["d"]["n"] for e in msgs] == [1, 2, 3, 1, 2, 3, 4]
    s = [e["s"] for e in rx.events()]
    assert s == sorted(s) and len(s) == len(set(s)), s


def test_dropped_connection_resumes(tmp):
    fake, rx, sh = start(tmp)
    wait_ready(fake)
    session = fake.sessions()[0]
    fake.close(0, drop=True)
    check_resumed(fake, rx, sh, session, 1)


def test_resumable_close_code_resumes(tmp):
    fake, rx, sh = start(tmp)
    wait_ready(fake)
    session = fake.sessions()[0]
    fake.close(0, 4000)
    check_resumed(fake, rx, sh, session, 1)


def test_invalid_session_true_resumes(tmp):
    fake, rx, sh = start(tmp)
    wait_ready(fake)
    session = fake.sessions()[0]
    fake.op(0, 9, True)
    check_resumed(fake, rx, sh, session, 1)


def test_zombie_connection_is_closed_and_resumed(tmp):
    fake, rx, sh = start(tmp, {"heartbeat_ms": 300})
    wait_ready(fake)
    session = fake.sessions()[0]
    fake.ack(0, True)
    fake.wait(lambda f: f.connections()[0]["closed_ms"] is not None, 5, what="zombie close")
    first = fake.connections()[0]
    assert first["closed_by"] == "client", first
    assert first["close_code"] not in (None, 1000, 1001), first
    beats = [b for b in fake.received(op=1) if b["conn"] == first["id"]]
    # closed when the next beat was due without an ACK: no more than one unanswered beat
    unanswered = [b for b in beats if b["t_ms"] > 0]
    assert len(unanswered) >= 1
    fake.ack(0, False)
    check_resumed(fake, rx, sh, session, 1)
    sh.wait_log(r"zombie", 1)


def test_invalid_session_false_identifies_anew(tmp):
    fake, rx, sh = start(tmp)
    wait_ready(fake)
    old = fake.sessions()[0]["session_id"]
    fake.op(0, 9, False)
    fake.wait(lambda f: len(identifies(f)) == 2, 10, what="second IDENTIFY")
    wait_ready(fake, 2)
    assert not resumes(fake)
    sessions = {s["session_id"] for s in fake.sessions()}
    assert old in sessions and len(sessions) == 2
    # the new session's events flow
    assert not fake.violations(), fake.violations()
    new = [s for s in fake.sessions() if s["session_id"] != old][0]
    fake.dispatch(0, "MESSAGE_CREATE", {"content": "after"})
    wait_for(lambda: any(e["d"].get("content") == "after" for e in rx.events()), 5,
             what="event of the new session")
    assert new["shard"] == 0


def test_close_4007_identifies_anew(tmp):
    fake, rx, sh = start(tmp)
    wait_ready(fake)
    fake.close(0, 4007)
    fake.wait(lambda f: len(identifies(f)) == 2, 10, what="second IDENTIFY")
    assert not resumes(fake)
    second = identifies(fake)[1]
    conn = [c for c in fake.connections() if c["id"] == second["conn"]][0]
    assert conn["path"] == "/"  # a new session starts on the main gateway URL
    wait_ready(fake, 2)
    assert len(identifies(fake)) == 2 and not fake.violations(), fake.violations()


def test_close_4004_exits_with_a_clear_message(tmp):
    fake, rx, sh = start(tmp)
    wait_ready(fake)
    fake.close(0, 4004)  # authentication failed: fatal, never reconnect
    code = sh.wait_exit(10)
    assert code == 1, code
    out = sh.log_text()
    last = out.strip().splitlines()[-1]
    assert last.startswith("shardhook: ") and "4004" in last and "token" in last, last
    assert "test-token" not in out
    assert len(identifies(fake)) == 1
    assert len(fake.connections()) == 1


def test_rest_401_names_the_token(tmp):
    fake = FakeDiscord(tmp)
    sh = Shardhook(base_config(fake, None, tmp, token="not-the-token"), tmp)
    code = sh.wait_exit(10)
    assert code == 1
    out = sh.log_text()
    last = out.strip().splitlines()[-1]
    assert last.startswith("shardhook: ") and "401" in last and "token" in last, last
    assert "not-the-token" not in out


def test_rest_errors_are_retried(tmp):
    fake = FakeDiscord(tmp)
    fake.rest_fail(2, 500)
    rx = Receiver()
    Shardhook(base_config(fake, rx, tmp), tmp)
    wait_ready(fake)
    statuses = [r["status"] for r in fake.rest()]
    assert statuses[:3] == [500, 500, 200], statuses


def test_sigterm_closes_with_4000_and_exits_0(tmp):
    fake, rx, sh = start(tmp)
    wait_ready(fake)
    sh.signal(signal.SIGTERM)
    assert sh.wait_exit(10) == 0
    conn = fake.connections()[0]
    fake.wait(lambda f: f.connections()[0]["closed_ms"] is not None, 5, what="close seen")
    conn = fake.connections()[0]
    assert conn["closed_by"] == "client" and conn["close_code"] == 4000, conn


def events_in_order(tmp, compress, split=None):
    fake, rx, sh = start(tmp, {"shards": 2, "zlib_split": split}, compress=compress,
                         shards={"total": 2})
    wait_ready(fake, 2)
    fake.burst(300)  # 300 events on every shard
    wait_for(lambda: len([e for e in rx.events() if e["t"] == "MESSAGE_CREATE"]) >= 600, 20,
             what="600 messages")
    msgs = [e for e in rx.events() if e["t"] == "MESSAGE_CREATE"]
    assert len(msgs) == 600
    for shard in (0, 1):
        mine = [e for e in msgs if e["shard"] == [shard, 2]]
        assert [e["d"]["n"] for e in mine] == list(range(1, 301))
        s = [e["s"] for e in mine]
        assert s == sorted(s)
    q = fake.connections()[0]["query"]
    assert "compress=%s-stream" % compress in q, q


def test_events_arrive_in_order_zlib_stream(tmp):
    events_in_order(tmp, "zlib", split=3)


def test_events_arrive_in_order_zstd_stream(tmp):
    events_in_order(tmp, "zstd")


def test_oversize_identify_is_refused_at_start(tmp):
    fake = FakeDiscord(tmp)
    presence = {"status": "online",
                "activities": [{"name": "x" * 128, "type": 0, "state": "y" * 128}] * 16}
    sh = Shardhook(base_config(fake, None, tmp, presence=presence), tmp)
    code = sh.wait_exit(10)
    assert code == 78, code  # caught when the config loads (and by --check), naming the key
    assert "presence: too large" in sh.log_text()
    assert not identifies(fake) and not fake.connections()


def test_malformed_payloads_are_logged_and_skipped(tmp):
    fake, rx, sh = start(tmp, compress="zlib")
    wait_ready(fake)
    bad = ["not json at all", '{"op":0,"t":"MESSAGE_CREATE"', "[1,2,3]",
           '{"op":0,"t":"MESSAGE_CREATE","s":"seven","d":{}}', '{"op":0,"t":"X","d":{}} trailing']
    for text in bad:
        fake.raw(0, text=text)
    fake.burst(3, shard=0)
    wait_for(lambda: len([e for e in rx.events() if e["t"] == "MESSAGE_CREATE"]) == 3, 5,
             what="the 3 good events after the bad ones")
    assert sh.log_text().count("malformed gateway payload skipped") == len(bad)
    assert len(fake.connections()) == 1  # skipped, not a reason to reconnect
    assert sh.alive()
    assert not [e for e in rx.events() if e["t"] == "X"]


def corrupt_stream(tmp, compress):
    fake, rx, sh = start(tmp, compress=compress)
    wait_ready(fake)
    session = fake.sessions()[0]
    fake.burst(2, shard=0)
    rx.wait_events(3, timeout=5)
    fake.raw(0, garbage="this is not a %s stream" % compress)
    fake.burst(2, shard=0)  # zlib: the garbage poisons the next message's inflate
    check_resumed(fake, rx, sh, session, 3)
    first = fake.connections()[0]
    # never a session-ending 1000/1001; with the rest of a burst still unread in the socket,
    # the kernel may turn the close into a reset, which Discord treats as resumable too
    assert first["closed_by"] in ("client", "drop"), first
    assert first["close_code"] in (None, 4000), first
    assert "gateway stream unreadable" in sh.log_text()
    # what Discord sent after the last good payload is replayed on the new connection
    wait_for(lambda: len([e for e in rx.events() if e["t"] == "MESSAGE_CREATE"]) == 4, 5,
             what="4 messages")
    assert [e["d"]["n"] for e in rx.events() if e["t"] == "MESSAGE_CREATE"] == [1, 2, 1, 2]


def test_corrupt_zlib_stream_reconnects_and_resumes(tmp):
    corrupt_stream(tmp, "zlib")


def test_corrupt_zstd_stream_reconnects_and_resumes(tmp):
    corrupt_stream(tmp, "zstd")


def test_resume_gives_up_after_max_resume_attempts(tmp):
    fake, rx, sh = start(tmp, max_resume_attempts=2)
    wait_ready(fake)
    fake.resume_fail(10)
    fake.close(0, 4000)
    fake.wait(lambda f: len(identifies(f)) == 2, 10, what="a new IDENTIFY")
    assert len(resumes(fake)) == 2, resumes(fake)  # two attempts, then a new session
    sh.wait_log(r"resume keeps failing, starting a new session", 1)
    wait_ready(fake, 2)
    assert not fake.violations()


def test_unreachable_resume_url_falls_back_to_a_new_session(tmp):
    fake, rx, sh = start(tmp, max_resume_attempts=3)
    wait_ready(fake)
    sh.stop()
    # a checkpoint whose resume_gateway_url points nowhere (a stale session of another gateway)
    state = tmp / "state"
    dead = "ws://127.0.0.1:9/resume"
    for path in state.rglob("*"):
        if path.is_file() and "resume" in path.read_text(errors="replace"):
            path.write_text(path.read_text().replace(fake.gateway_url + "/resume", dead))
    sh.start()
    fake.wait(lambda f: len(identifies(f)) == 2, 15, what="a new IDENTIFY after failed resumes")
    sh.wait_log(r"resume keeps failing, starting a new session", 1)
    assert len(re.findall(r'msg="connecting" shard=0 .*resume=1', sh.log_text())) == 3
    wait_ready(fake, 2)
