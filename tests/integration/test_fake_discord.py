"""Self-tests of the fake Discord (build/fake-discord): REST bootstrap, the Gateway handshake,
sessions and RESUME, transport compression, the rules it enforces and its control API.
Every test starts its own fake on a free port and stops it at the end."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from fake import FakeError  # noqa: E402
from wsclient import WSClient, WSClosed, _ZstdStream  # noqa: E402

TOKEN = "test-token"


def start(**options):
    return harness.FakeDiscord(**options)


def connect(fake, path="/", compress=None, timeout=5.0):
    q = "v=10&encoding=json" + ("&compress=" + compress if compress else "")
    return WSClient("ws://127.0.0.1:%d%s?%s" % (fake.port, path, q), timeout=harness.scale(timeout))


def identify(ws, shard=0, total=1, token=TOKEN, intents=513):
    ws.send_json({"op": 2, "d": {"token": token, "intents": intents, "shard": [shard, total],
                                 "properties": {"os": "linux", "browser": "t", "device": "t"}}})


def expect_close(ws, code, timeout=5.0):
    try:
        while True:
            ws.recv_json(harness.scale(timeout))
    except WSClosed as e:
        assert e.code == code, "closed with %s, expected %s" % (e.code, code)


def ready_session(fake, shard=0, total=1, compress=None, path="/", unavailable=0):
    """Connect, identify and read READY plus the GUILD_CREATEs; return (ws, ready, creates)."""
    ws = connect(fake, path, compress)
    assert ws.recv_json()["op"] == 10
    identify(ws, shard, total)
    ready = ws.recv_json()
    assert ready["t"] == "READY", ready
    guilds = len(ready["d"]["guilds"]) - unavailable
    creates = [ws.recv_json() for _ in range(guilds)]
    return ws, ready, creates


def test_rest_gateway_bot():
    with start(shards=3, max_concurrency=2, session_total=50, session_remaining=40) as fake:
        code, _, body = harness.http_request(fake.api_base + "/gateway/bot")
        assert code == 401 and body == {"message": "401: Unauthorized", "code": 0}
        auth = {"Authorization": "Bot " + TOKEN}
        code, _, body = harness.http_request(fake.api_base + "/gateway/bot", headers=auth)
        assert code == 200
        assert body["url"] == "ws://127.0.0.1:%d" % fake.port and body["shards"] == 3
        limit = body["session_start_limit"]
        assert (limit["total"], limit["remaining"], limit["max_concurrency"]) == (50, 40, 2)
        assert 0 < limit["reset_after"] <= 14400000
        code, _, body = harness.http_request(fake.api_base + "/gateway")
        assert code == 200 and body == {"url": "ws://127.0.0.1:%d" % fake.port}
        fake.rest_fail(2, 429, retry_after=1.5)
        for _ in range(2):
            code, hdrs, body = harness.http_request(fake.api_base + "/gateway/bot", headers=auth)
            assert code == 429 and body["retry_after"] == 1.5 and hdrs["retry-after"] == "2"
        code, _, _ = harness.http_request(fake.api_base + "/gateway/bot", headers=auth)
        assert code == 200
        fake.rest_fail(1, 502)
        assert harness.http_request(fake.api_base + "/gateway/bot", headers=auth)[0] == 502
        statuses = [r["status"] for r in fake.rest() if r["path"] == "/api/v10/gateway/bot"]
        assert statuses == [401, 200, 429, 429, 200, 502]
        code, _, body = harness.http_request(fake.url + "/nope")
        assert code == 404 and body["message"] == "404: Not Found"
        # The gateway path without an Upgrade is plain HTTP, not a gateway connection.
        assert harness.http_request(fake.url + "/?v=10&encoding=json")[0] == 400
        assert fake.connections() == []


def test_hello_and_heartbeat_ack():
    with start(heartbeat_ms=1234) as fake:
        ws = connect(fake)
        hello = ws.recv_json()
        assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] == 1234
        assert hello["s"] is None and hello["t"] is None
        ws.send_json({"op": 1, "d": None})
        assert ws.recv_json()["op"] == 11
        fake.ack(None, True)
        ws.send_json({"op": 1, "d": None})
        try:
            ws.recv_json(0.3)
            assert False, "an ACK arrived while withheld"
        except TimeoutError:
            pass
        fake.ack(None, False)
        ws.send_json({"op": 1, "d": 5})
        assert ws.recv_json()["op"] == 11
        beats = fake.received(op=1)
        assert [b["payload"]["d"] for b in beats] == [None, None, 5]
        conns = fake.connections()
        assert len(conns) == 1 and conns[0]["path"] == "/"
        assert conns[0]["query"] == "v=10&encoding=json" and conns[0]["closed_ms"] is None
        ws.close(4000)
        fake.wait(lambda f: f.connections()[0]["closed_ms"] is not None, what="close recorded")
        c = fake.connections()[0]
        assert c["close_code"] == 4000 and c["closed_by"] == "client"


def test_identify_ready_guild_create():
    with start(shards=4, guilds=3, unavailable_forever=1, identify_interval_ms=0) as fake:
        ws, ready, creates = ready_session(fake, shard=2, total=4, unavailable=1)
        d = ready["d"]
        assert ready["s"] == 1 and ready["op"] == 0
        assert d["v"] == 10 and d["user"]["bot"] is True and d["shard"] == [2, 4]
        assert len(d["session_id"]) == 32 and int(d["session_id"], 16) >= 0
        assert d["resume_gateway_url"] == "ws://127.0.0.1:%d/resume" % fake.port
        assert len(d["guilds"]) == 3 and all(g["unavailable"] for g in d["guilds"])
        for g in d["guilds"]:
            assert (int(g["id"]) >> 22) % 4 == 2
        assert len(creates) == 2  # the last guild never loads
        assert [c["t"] for c in creates] == ["GUILD_CREATE"] * 2
        assert [c["s"] for c in creates] == [2, 3]
        assert [c["d"]["id"] for c in creates] == [g["id"] for g in d["guilds"][:2]]
        assert all(len(c["d"]["channels"]) >= 2 and "name" in c["d"] for c in creates)
        # Nothing else arrives: the third guild stays unavailable.
        try:
            extra = ws.recv_json(0.3)
            assert False, "unexpected payload %r" % extra
        except TimeoutError:
            pass
        ident = fake.received(op=2)
        assert len(ident) == 1 and ident[0]["payload"]["d"]["shard"] == [2, 4]
        assert fake.connections()[0]["shard"] == 2
        sessions = fake.sessions()
        assert len(sessions) == 1 and sessions[0]["session_id"] == d["session_id"]
        assert sessions[0]["seq"] == 3
        code, _, body = harness.http_request(fake.api_base + "/gateway/bot",
                                             headers={"Authorization": "Bot " + TOKEN})
        assert body["session_start_limit"]["remaining"] == 999
        ws.close(4000)


def test_dispatch_and_burst_in_order():
    with start() as fake:
        ws, ready, creates = ready_session(fake)
        last = creates[-1]["s"]
        r = fake.dispatch(0, "MESSAGE_CREATE", {"content": "hello", "x": [1, 2]})
        assert r == {"s": [last + 1]}
        ev = ws.recv_json()
        assert ev["t"] == "MESSAGE_CREATE" and ev["s"] == last + 1
        assert ev["d"] == {"content": "hello", "x": [1, 2]}
        r = fake.burst(300, shard=0)
        assert (r["first_s"], r["last_s"]) == (last + 2, last + 301)
        got = [ws.recv_json() for _ in range(300)]
        assert [e["s"] for e in got] == list(range(last + 2, last + 302))
        assert [e["d"]["n"] for e in got] == list(range(1, 301))
        assert all(e["t"] == "MESSAGE_CREATE" and e["d"]["guild_id"] for e in got)
        r = fake.burst(2, t="TYPING_START")
        assert r["shards"] == [{"shard": 0, "first_s": last + 302, "last_s": last + 303}]
        assert [ws.recv_json()["t"] for _ in range(2)] == ["TYPING_START"] * 2
        ws.close(4000)


def test_resume_replays_missed_events():
    with start() as fake:
        ws, ready, creates = ready_session(fake)
        sid = ready["d"]["session_id"]
        seen = creates[-1]["s"]
        fake.dispatch(0, "MESSAGE_CREATE", {"k": "live"})
        assert ws.recv_json()["s"] == seen + 1
        ws.close(4000)  # resumable: not 1000/1001
        fake.wait(lambda f: all(c["closed_ms"] is not None for c in f.connections()),
                  what="first connection closed")
        missed = [fake.dispatch(0, "MESSAGE_CREATE", {"k": i})["s"][0] for i in range(3)]
        assert missed == [seen + 2, seen + 3, seen + 4]
        ws2 = connect(fake, path="/resume")
        assert ws2.recv_json()["op"] == 10
        ws2.send_json({"op": 6, "d": {"token": TOKEN, "session_id": sid, "seq": seen + 1}})
        got = [ws2.recv_json() for _ in range(4)]
        assert [e["s"] for e in got] == missed + [seen + 5]
        assert [e["d"].get("k") for e in got[:3]] == [0, 1, 2]
        assert got[3]["t"] == "RESUMED"
        fake.dispatch(0, "MESSAGE_CREATE", {"k": "after"})
        assert ws2.recv_json()["s"] == seen + 6
        conns = fake.connections()
        assert conns[1]["path"] == "/resume" and conns[1]["shard"] == 0
        # A stale or unknown session is refused with op 9 d=false.
        ws3 = connect(fake, path="/resume")
        ws3.recv_json()
        ws3.send_json({"op": 6, "d": {"token": TOKEN, "session_id": "nope", "seq": 1}})
        assert ws3.recv_json() == {"t": None, "s": None, "op": 9, "d": False}
        ws4 = connect(fake, path="/resume")
        ws4.recv_json()
        ws4.send_json({"op": 6, "d": {"token": TOKEN, "session_id": sid, "seq": seen + 99}})
        assert ws4.recv_json()["op"] == 9
        for w in (ws2, ws3, ws4):
            w.close(4000)


def test_client_close_1000_ends_session():
    with start() as fake:
        ws, ready, creates = ready_session(fake)
        ws.close(1000)
        fake.wait(lambda f: f.connections()[0]["closed_ms"] is not None, what="close")
        ws2 = connect(fake, path="/resume")
        ws2.recv_json()
        ws2.send_json({"op": 6, "d": {"token": TOKEN, "session_id": ready["d"]["session_id"],
                                      "seq": creates[-1]["s"]}})
        assert ws2.recv_json()["op"] == 9
        ws2.close(4000)


def test_zlib_stream():
    with start(zlib_split=3) as fake:
        ws = connect(fake, compress="zlib-stream")
        assert ws.recv_json()["op"] == 10
        assert ws.messages == 3  # HELLO came in three websocket messages
        identify(ws)
        ready = ws.recv_json()
        assert ready["t"] == "READY" and ready["s"] == 1
        fake.burst(200, shard=0)
        got = [ws.recv_json() for _ in range(2 + 200)]
        assert [e["s"] for e in got] == list(range(2, 204))
        assert fake.connections()[0]["query"] == "v=10&encoding=json&compress=zlib-stream"
        ws.close(4000)


def test_zstd_stream():
    if not _ZstdStream.available():
        # the C side is still exercised by the zlib and plain tests
        raise harness.Skip("no libzstd to decode zstd-stream with")
    with start() as fake:
        ws = connect(fake, compress="zstd-stream")
        assert ws.recv_json()["op"] == 10 and ws.messages == 1
        identify(ws)
        assert ws.recv_json()["t"] == "READY"
        fake.burst(100, shard=0)
        got = [ws.recv_json() for _ in range(2 + 100)]
        assert [e["s"] for e in got] == list(range(2, 104))
        assert ws.messages == 1 + 1 + 102
        ws.close(4000)


def test_payload_over_4096_closes_4002():
    with start() as fake:
        ws = connect(fake)
        ws.recv_json()
        ws.send_json({"op": 1, "d": "x" * 4100})
        expect_close(ws, 4002)
        c = fake.wait(lambda f: [c for c in f.connections() if c["closed_ms"] is not None],
                      what="close recorded")[0]
        assert c["close_code"] == 4002 and c["closed_by"] == "server"
        ws = connect(fake)
        ws.recv_json()
        ws.send_text("not json")
        expect_close(ws, 4002)


def test_fragmented_and_boundary_payloads():
    with start() as fake:
        ws = connect(fake)
        ws.recv_json()
        text = json.dumps({"op": 2, "d": {"token": TOKEN, "intents": 1, "shard": [0, 1]}})
        third = len(text) // 3
        ws.send_frame(1, text[:third], fin=False)
        ws.send_frame(0, text[third:2 * third], fin=False)
        ws.send_frame(0, text[2 * third:], fin=True)
        assert ws.recv_json()["t"] == "READY"
        beat = json.dumps({"op": 1, "d": None, "pad": ""})
        beat = beat[:-2] + "x" * (4096 - len(beat)) + '"}'
        assert len(beat) == 4096
        ws.send_text(beat)  # exactly at the limit: accepted
        while ws.recv_json()["op"] != 11:
            pass
        ws.close(4000)


def test_bad_token_closes_4004():
    with start() as fake:
        ws = connect(fake)
        ws.recv_json()
        identify(ws, token="wrong")
        expect_close(ws, 4004)


def test_identify_rules():
    with start(shards=2, identify_interval_ms=0) as fake:
        cases = [
            (lambda ws: identify(ws, 0, 3), 4010),
            (lambda ws: identify(ws, 2, 2), 4010),
            (lambda ws: ws.send_json({"op": 2, "d": {"token": TOKEN, "intents": 1}}), 4010),
            (lambda ws: identify(ws, 0, 2, intents=1 << 30), 4013),
            (lambda ws: identify(ws, 0, 2, intents="1"), 4013),
            (lambda ws: ws.send_json({"op": 3, "d": {}}), 4003),
            (lambda ws: ws.send_json({"op": 99, "d": None}), 4003),
            (lambda ws: ws.send_json([1, 2]), 4002),
        ]
        for send, code in cases:
            ws = connect(fake)
            ws.recv_json()
            send(ws)
            expect_close(ws, code)
        ws, _, _ = ready_session(fake, 0, 2)
        ws.send_json({"op": 3, "d": {"since": None, "activities": [], "status": "online",
                                     "afk": False}})
        ws.send_json({"op": 99, "d": None})
        expect_close(ws, 4001)
        ws, _, _ = ready_session(fake, 1, 2)
        identify(ws, 1, 2)
        expect_close(ws, 4005)
        assert [e["op"] for e in fake.received(op=3)] == [3, 3]


def test_identify_bucket_and_budget():
    with start(shards=2, max_concurrency=1, identify_interval_ms=5000,
               session_remaining=2) as fake:
        ws0, _, _ = ready_session(fake, 0, 2)
        ws1 = connect(fake)
        ws1.recv_json()
        identify(ws1, 1, 2)
        assert ws1.recv_json() == {"t": None, "s": None, "op": 9, "d": False}
        v = fake.violations()
        assert len(v) == 1 and v[0]["what"] == "identify bucket" and v[0]["shard"] == 1
    with start(shards=2, max_concurrency=2, identify_interval_ms=5000,
               session_remaining=1) as fake:
        ws0, _, _ = ready_session(fake, 0, 2)
        ws1 = connect(fake)
        ws1.recv_json()
        identify(ws1, 1, 2)  # another bucket, but the budget is spent
        assert ws1.recv_json()["op"] == 9
        assert [x["what"] for x in fake.violations()] == ["session budget"]


def test_send_limit_closes_4008():
    with start(send_limit=5, send_window_ms=60000) as fake:
        ws = connect(fake)
        ws.recv_json()
        for _ in range(5):
            ws.send_json({"op": 1, "d": None})
            assert ws.recv_json()["op"] == 11
        ws.send_json({"op": 1, "d": None})
        expect_close(ws, 4008)


def test_control_op_close_drop():
    with start(identify_interval_ms=0) as fake:
        ws, _, _ = ready_session(fake)
        fake.op(0, 7)
        assert ws.recv_json() == {"t": None, "s": None, "op": 7, "d": None}
        fake.op(0, 9, True)
        assert ws.recv_json()["d"] is True
        fake.op(0, 1)
        assert ws.recv_json()["op"] == 1
        fake.close(0, 4900)
        expect_close(ws, 4900)
        fake.wait(lambda f: f.connections()[0]["closed_ms"] is not None, what="close")
        try:
            fake.op(0, 7)
            assert False, "op on a closed shard should fail"
        except FakeError as e:
            assert e.status == 409
        ws2, _, _ = ready_session(fake)
        fake.close(0, drop=True)
        expect_close(ws2, None)
        c = fake.wait(lambda f: f.connections()[1]["closed_ms"] is not None and f.connections(),
                      what="drop")[1]
        assert c["closed_by"] == "drop" and c["close_code"] is None
        fake.reset_log()
        log = fake.log()
        assert log["connections"] == [] and log["received"] == [] and log["rest"] == []


def test_trickle():
    with start(trickle_ms=20) as fake:
        ws, _, creates = ready_session(fake)
        got = [ws.recv_json() for _ in range(8)]
        assert [e["s"] for e in got] == list(range(creates[-1]["s"] + 1, creates[-1]["s"] + 9))
        assert len({e["t"] for e in got}) >= 3
        ws.close(4000)



def test_answers_to_ops_4_8_31_43():
    with start(members_window_ms=400) as fake:
        ws, ready, creates = ready_session(fake)
        g = ready["d"]["guilds"][0]["id"]
        def recv_t(n):
            out = [ws.recv_json() for _ in range(n)]
            return [(e["t"], e["d"]) for e in out]
        # op 8: chunks carry the nonce; a second all-members request inside the window is refused
        fake.members(chunks=2, count=3)
        ws.send_json({"op": 8, "d": {"guild_id": g, "query": "", "limit": 0, "nonce": "n1"}})
        got = recv_t(2)
        assert [t for t, _ in got] == ["GUILD_MEMBERS_CHUNK"] * 2
        assert [d["chunk_index"] for _, d in got] == [0, 1]
        assert all(d["chunk_count"] == 2 and d["nonce"] == "n1" and d["guild_id"] == g
                   for _, d in got)
        assert sum(len(d["members"]) for _, d in got) == 3
        ws.send_json({"op": 8, "d": {"guild_id": g, "query": "", "limit": 0, "nonce": "n2"}})
        (t, d), = recv_t(1)
        assert t == "RATE_LIMITED" and d["opcode"] == 8 and 0 < d["retry_after"] <= 0.4
        assert d["meta"] == {"guild_id": g, "nonce": "n2"}
        assert [v["what"] for v in fake.violations()] == ["member request window"]
        fake.members(rate_limited=1, retry_after=1.5, not_found=["5"], chunks=1)
        ws.send_json({"op": 8, "d": {"guild_id": g, "user_ids": ["4", "5"], "nonce": "n3"}})
        (t, d), = recv_t(1)
        assert t == "RATE_LIMITED" and d["retry_after"] == 1.5
        ws.send_json({"op": 8, "d": {"guild_id": g, "user_ids": ["4", "5"], "presences": True}})
        (t, d), = recv_t(1)
        assert [m["user"]["id"] for m in d["members"]] == ["4"] and d["not_found"] == ["5"]
        assert [p["user"]["id"] for p in d["presences"]] == ["4"] and "nonce" not in d
        # op 31: one SOUNDBOARD_SOUNDS per guild; op 43: CHANNEL_INFO with the asked fields
        g2 = ready["d"]["guilds"][1]["id"]
        ws.send_json({"op": 31, "d": {"guild_ids": [g, g2]}})
        got = recv_t(2)
        assert [(t, d["guild_id"]) for t, d in got] == [("SOUNDBOARD_SOUNDS", g),
                                                         ("SOUNDBOARD_SOUNDS", g2)]
        ws.send_json({"op": 43, "d": {"guild_id": g, "fields": ["status"]}})
        (t, d), = recv_t(1)
        assert t == "CHANNEL_INFO" and d["guild_id"] == g
        assert d["channels"] == [{"id": str(int(g) + 8192), "status": "fake status"}]
        # op 4: VOICE_STATE_UPDATE, and VOICE_SERVER_UPDATE when joining
        ch = str(int(g) + 8192)
        ws.send_json({"op": 4, "d": {"guild_id": g, "channel_id": ch, "self_mute": True,
                                     "self_deaf": False}})
        got = recv_t(2)
        assert [t for t, _ in got] == ["VOICE_STATE_UPDATE", "VOICE_SERVER_UPDATE"]
        assert got[0][1]["channel_id"] == ch and got[0][1]["self_mute"] is True
        assert got[1][1]["guild_id"] == g and got[1][1]["token"]
        # quiet: recorded, not answered
        fake.quiet(ops=[43])
        ws.send_json({"op": 43, "d": {"guild_id": g, "fields": []}})
        ws.send_json({"op": 4, "d": {"guild_id": g, "channel_id": None, "self_mute": False,
                                     "self_deaf": False}})
        (t, d), = recv_t(1)
        assert t == "VOICE_STATE_UPDATE" and d["channel_id"] is None
        assert len(fake.received(op=43)) == 2 and len(fake.received(op=8)) == 4
        ws.close(4000)


if __name__ == "__main__":
    import tempfile
    import traceback
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    only = sys.argv[1:]
    passed = failed = 0
    for name, fn in tests:
        if only and name not in only:
            continue
        harness.begin_test(tempfile.mkdtemp(prefix="fake-discord-test-"))
        t = time.monotonic()
        try:
            fn()
            problems = harness.end_test()
            if problems:
                raise AssertionError("\n".join(problems))
            passed += 1
            print("ok   %s (%.2fs)" % (name, time.monotonic() - t))
        except Exception as e:  # noqa: BLE001
            harness.end_test()
            failed += 1
            traceback.print_exc()
            print("FAIL %s: %s" % (name, e))
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


# -- what cluster mode's tests rely on ----------------------------------------------------------
def resume(fake, sid, seq, path="/resume"):
    ws = connect(fake, path=path)
    assert ws.recv_json()["op"] == 10
    ws.send_json({"op": 6, "d": {"token": TOKEN, "session_id": sid, "seq": seq}})
    return ws


def test_identify_window_is_per_bucket_across_connections_and_recorded():
    # 4 shards over 2 buckets: shards 0 and 2 share bucket 0, 1 and 3 bucket 1.
    with start(shards=4, max_concurrency=2, identify_interval_ms=int(harness.scale(3000))) as fake:
        a = connect(fake)
        a.recv_json()
        identify(a, 0, 4)
        assert a.recv_json()["t"] == "READY"
        b = connect(fake)  # another connection, same bucket, same window: refused
        b.recv_json()
        identify(b, 2, 4)
        assert b.recv_json() == {"t": None, "s": None, "op": 9, "d": False}
        c = connect(fake)  # the other bucket has its own window
        c.recv_json()
        identify(c, 1, 4)
        assert c.recv_json()["t"] == "READY"
        ids = fake.identifies()
        assert [(e["shard"], e["bucket"], e["refused"]) for e in ids] == [
            (0, 0, None), (2, 0, "identify bucket"), (1, 1, None)]
        assert ids[0]["session_id"] and ids[1]["session_id"] is None
        assert ids[0]["t_ms"] <= ids[1]["t_ms"] <= ids[2]["t_ms"]
        assert len(fake.identifies(refused=False)) == 2 and len(fake.identifies(shard=2)) == 1
        for w in (a, b, c):
            w.close(4000)


def test_budget_refusal_is_recorded():
    with start(session_total=10, session_remaining=1, identify_interval_ms=0) as fake:
        ws, _, _ = ready_session(fake)
        ws2 = connect(fake)
        ws2.recv_json()
        identify(ws2)
        assert ws2.recv_json()["op"] == 9
        assert [e["refused"] for e in fake.identifies()] == [None, "session budget"]
        ws.close(4000)
        ws2.close(4000)


def test_resume_on_a_new_connection_closes_the_older_with_4000():
    with start() as fake:
        ws, ready, creates = ready_session(fake)
        sid = ready["d"]["session_id"]
        last = creates[-1]["s"]
        missed = fake.dispatch(0, "MESSAGE_CREATE", {"k": "x"})["s"][0]
        assert ws.recv_json()["s"] == missed
        # The old connection is still open: a RESUME from elsewhere takes the session over.
        ws2 = resume(fake, sid, last)
        got = ws2.recv_json()
        assert got["s"] == missed and got["d"]["k"] == "x"  # replayed from the given seq
        assert ws2.recv_json()["t"] == "RESUMED"
        expect_close(ws, 4000)
        old = fake.wait(lambda f: f.closes(), what="the older connection closed")
        assert len(old) == 1
        assert old[0]["close_code"] == 4000 and old[0]["closed_by"] == "server"
        assert old[0]["reason"] == "superseded" and old[0]["shard"] == 0
        (r,) = fake.resumes()
        assert r["shard"] == 0 and r["session_id"] == sid and r["seq"] == last
        assert r["replayed"] == 1 and r["refused"] is None
        # Events now go only to the new connection.
        s = fake.dispatch(0, "MESSAGE_CREATE", {"k": "y"})["s"][0]
        assert ws2.recv_json()["s"] == s
        ws2.close(4000)


def test_resume_from_any_connection_replays_from_the_given_seq():
    with start(history=50) as fake:
        ws, ready, creates = ready_session(fake)
        sid = ready["d"]["session_id"]
        ws.close(4000)
        fake.wait(lambda f: f.closes(), what="close")
        b = fake.burst(30, shard=0)
        # Two RESUMEs of one session from different seqs, on "/" and "/resume".
        w1 = resume(fake, sid, b["first_s"] + 9, path="/")
        got = [w1.recv_json()["s"] for _ in range(b["last_s"] - b["first_s"] - 9)]
        assert got == list(range(b["first_s"] + 10, b["last_s"] + 1))
        assert w1.recv_json()["t"] == "RESUMED"
        w2 = resume(fake, sid, b["last_s"] - 2)
        assert [w2.recv_json()["s"] for _ in range(3)] == [b["last_s"] - 1, b["last_s"],
                                                          b["last_s"] + 1]  # incl. RESUMED
        expect_close(w1, 4000)
        # Beyond the history (50 events): refused.
        fake.burst(60, shard=0)
        w3 = resume(fake, sid, b["last_s"])
        assert w3.recv_json()["op"] == 9
        assert fake.resumes()[-1]["refused"] == "seq older than the kept history"
        for w in (w2, w3):
            w.close(4000)


def test_expire_on_demand():
    with start(shards=2, identify_interval_ms=0) as fake:
        s0, r0, c0 = ready_session(fake, 0, 2)
        s1, r1, c1 = ready_session(fake, 1, 2)
        for w in (s0, s1):
            w.close(4000)
        fake.wait(lambda f: len(f.closes()) == 2, what="closes")
        assert fake.expire(0) == {"expired": [r0["d"]["session_id"]]}
        w = resume(fake, r0["d"]["session_id"], c0[-1]["s"])
        assert w.recv_json() == {"t": None, "s": None, "op": 9, "d": False}
        assert fake.resumes(shard=0)[-1]["refused"] == "session expired"
        sessions = {s["session_id"]: s for s in fake.sessions()}
        assert sessions[r0["d"]["session_id"]]["expired"] is True
        assert sessions[r1["d"]["session_id"]]["expired"] is False
        w2 = resume(fake, r1["d"]["session_id"], c1[-1]["s"])  # shard 1 is untouched
        assert w2.recv_json()["t"] == "RESUMED"
        assert fake.expire() == {"expired": [r1["d"]["session_id"]]}  # all: the rest
        for x in (w, w2):
            x.close(4000)


def test_steady_stream_reaches_sessions_without_a_connection():
    with start(shards=2, identify_interval_ms=0) as fake:
        s0, r0, c0 = ready_session(fake, 0, 2)
        s1, r1, c1 = ready_session(fake, 1, 2)
        assert fake.stream(20)["period_ms"] == 20
        first = [s0.recv_json() for _ in range(5)]
        assert [e["t"] for e in first] == ["MESSAGE_CREATE"] * 5
        assert [e["s"] for e in first] == list(range(c0[-1]["s"] + 1, c0[-1]["s"] + 6))
        ns = [e["d"]["n"] for e in first]
        assert ns == sorted(ns) and len(set(ns)) == 5
        s0.close(4000)  # the stream goes on into shard 0's session while nobody is connected
        fake.wait(lambda f: f.closes(), what="close")
        seq_at_close = {s["session_id"]: s["seq"] for s in fake.sessions()}[r0["d"]["session_id"]]
        fake.wait(lambda f: {s["session_id"]: s["seq"] for s in f.sessions()}[
            r0["d"]["session_id"]] >= seq_at_close + 5, what="stream while disconnected")
        fake.stream(0, shard=1)  # shard 1 stops, shard 0 goes on
        w = resume(fake, r0["d"]["session_id"], first[-1]["s"])
        got = []
        while True:
            e = w.recv_json()
            if e["t"] == "RESUMED":
                break
            got.append(e["s"])
        assert got == list(range(first[-1]["s"] + 1, first[-1]["s"] + 1 + len(got)))
        assert len(got) >= 5
        seq1 = {s["session_id"]: s["seq"] for s in fake.sessions()}[r1["d"]["session_id"]]
        time.sleep(0.2)
        assert {s["session_id"]: s["seq"] for s in fake.sessions()}[r1["d"]["session_id"]] == seq1
        assert fake.stream(0)["emitted"] > 10
        log = fake.log()
        assert log["stream"]["period_ms"] == 0
        for x in (s1, w):
            x.close(4000)


def test_scripted_guilds_make_ready_and_guild_creates():
    from cache_truth import Truth
    truth = Truth()
    a = truth.add_guild("Alpha", members=[truth.new_user("m0")])
    b = truth.add_guild("Beta")
    gc_a = truth.guild_create(a)
    with start(guilds=2, identify_interval_ms=1) as fake:
        assert fake.guilds(0, [gc_a, {"id": b, "unavailable": True}]) == {"guilds": 2}
        ws, ready, creates = ready_session(fake, unavailable=1)
        assert ready["d"]["guilds"] == [{"id": a, "unavailable": True},
                                        {"id": b, "unavailable": True}]
        assert ready["d"]["session_id"] and ready["d"]["user"]["id"] == truth.bot_id
        assert [(c["t"], c["d"]) for c in creates] == [("GUILD_CREATE", gc_a)]
        assert creates[0]["s"] == ready["s"] + 1
        ws.close()
        # null: back to the generated guilds (--guilds 2)
        fake.guilds(0, None)
        ws, ready, creates = ready_session(fake)
        assert len(ready["d"]["guilds"]) == 2 and a not in [g["id"] for g in ready["d"]["guilds"]]
        assert [c["d"]["name"] for c in creates] == ["Fake Guild 0-0", "Fake Guild 0-1"]
        ws.close()
        for bad in ({"shard": 0, "guilds": 5}, {"guilds": []}, {"shard": 0, "guilds": [{"x": 1}]}):
            status, _ = fake.ctl.request("POST", "/_fake/guilds", bad)
            assert status == 400, bad
