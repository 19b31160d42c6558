"""Self-tests of the fake Discord's replay mode (tests/fake/replay.c), the benchmarks' source:
pre-built streams decode to valid events in s order with either compression, live messages
(heartbeat ACKs, other dispatches) fit around them, manual start and pacing work, send times
are recorded and written, the dump holds exactly the bytes the wire carries, and a close in
the middle of a stream still ends on a frame. Every test starts its own fake."""
import json
import os
import struct
import subprocess
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from wsclient import WSClient, WSClosed, _ZstdStream  # noqa: E402

TOKEN = "test-token"
MIX = {"MESSAGE_CREATE", "PRESENCE_UPDATE", "TYPING_START", "GUILD_MEMBER_UPDATE",
       "MESSAGE_REACTION_ADD", "GUILD_CREATE"}


def connect(fake, compress):
    q = "v=10&encoding=json" + ("&compress=" + compress if compress else "")
    return WSClient("ws://127.0.0.1:%d/?%s" % (fake.port, q), timeout=harness.scale(10))


def identify(ws, shard=0, total=1):
    ws.send_json({"op": 2, "d": {"token": TOKEN, "intents": 513, "shard": [shard, total],
                                 "properties": {"os": "linux", "browser": "t", "device": "t"}}})


def replay_state(fake):
    status, body = fake.request("GET", "/_fake/replay")
    assert status == 200, body
    return body


def replay_start(fake, body):
    status, answer = fake.request("POST", "/_fake/replay/start", body)
    assert status == 200, answer
    return answer


def read_dispatches(ws, last_s, timeout=20.0):
    """Payloads until the dispatch with s == last_s: (dispatches, other payloads)."""
    deadline = time.monotonic() + harness.scale(timeout)
    events, others = [], []
    while True:
        p = ws.recv_json(max(0.1, deadline - time.monotonic()))
        if p["op"] != 0:
            others.append(p)
            continue
        events.append(p)
        if p["s"] == last_s:
            return events, others


def records(path):
    data = path.read_bytes()
    off = 0
    while off < len(data):
        n = struct.unpack_from("<I", data, off)[0]
        yield data[off + 4:off + 4 + n]
        off += 4 + n
    assert off == len(data), "a record runs past the end of %s" % path


def decode(messages, compress):
    """Payloads (parsed) of a connection's messages, the way a client inflates them."""
    out, pending = [], b""
    inflate = zlib.decompressobj() if compress == "zlib-stream" else None
    zstd = _ZstdStream() if compress == "zstd-stream" else None
    for m in messages:
        if zstd:
            out.append(json.loads(zstd.decompress(m)))
            continue
        pending += m
        if pending[-4:] == b"\x00\x00\xff\xff":
            out.append(json.loads(inflate.decompress(pending)))
            pending = b""
    assert pending == b"", "a zlib payload was left incomplete"
    if zstd:
        zstd.close()
    return out


@harness.timeout(180)
def test_replay_decodes_in_order_with_both_compressions():
    # 6,000 events reach the first GUILD_CREATE of the realistic mix (event 5,000).
    n = 6000
    for compress in ("zlib-stream", "zstd-stream"):
        # paced, so the heartbeat is read while the stream still runs
        with harness.FakeDiscord(identify_interval_ms=0, replay_events=n, guilds=2,
                                 replay_segment=1000, replay_rate=20000) as fake:
            ws = connect(fake, compress)
            assert ws.recv_json()["op"] == 10
            identify(ws)
            ws.send_json({"op": 1, "d": None})  # answered between segments or after the run
            events, others = read_dispatches(ws, n + 3)
            assert [e["s"] for e in events] == list(range(1, n + 4)), compress
            ready = events[0]
            assert ready["t"] == "READY" and ready["d"]["shard"] == [0, 1]
            assert [e["t"] for e in events[1:3]] == ["GUILD_CREATE", "GUILD_CREATE"]
            types = [e["t"] for e in events[3:]]
            assert set(types) <= MIX and len(set(types)) == len(MIX), set(types)
            big = [e for e in events[3:] if e["t"] == "GUILD_CREATE"]
            assert len(big) == 1 and big[0]["s"] == 3 + 5001
            assert len(json.dumps(big[0]["d"])) >= 100 * 1024
            assert [p["op"] for p in others] == [11], others  # at a boundary, not the end
            sessions = fake.sessions()
            assert ready["d"]["session_id"] in [s["session_id"] for s in sessions], sessions
            # After the run the connection is ordinary: ACKs and other dispatches follow.
            ws.send_json({"op": 1, "d": n + 3})
            assert ws.recv_json()["op"] == 11
            assert fake.dispatch(0, "CUSTOM_EVENT", {"x": 1}) == {"s": [n + 4]}
            after = ws.recv_json()
            assert after["t"] == "CUSTOM_EVENT" and after["s"] == n + 4 and after["d"] == {"x": 1}
            st = replay_state(fake)
            assert st["done"] == 1 and st["payloads"] == n + 3 and st["prelude"] == 3
            sh = st["shards"][0]
            assert sh["state"] == "done" and sh["compress"] == compress
            assert sh["sent"] == n + 3 and sh["bytes_sent"] == sh["bytes_compressed"] > 0
            assert sh["bytes_raw"] > 4 * sh["bytes_compressed"], sh  # real compression
            assert 0 < sh["first_ns"] <= sh["events_first_ns"] <= sh["last_ns"]
            assert sum(t["count"] for t in st["types"]) == n
            ws.close(4000)


def test_replay_dump_holds_the_bytes_of_the_wire(tmp):
    n = 2500
    dump = tmp / "dump"
    with harness.FakeDiscord(identify_interval_ms=0, replay_events=n, guilds=1, zlib_split=1,
                             replay_dump=str(dump)) as fake:
        manifest = json.loads((dump / "replay.json").read_text())
        assert manifest["events"] == n and manifest["payloads"] == n + 2
        for compress in ("zlib-stream", "zstd-stream"):
            recs = list(records(dump / ("%s.bin" % compress)))
            assert len(recs) == manifest["files"][compress]["messages"]
            payloads = decode(recs, compress)
            assert payloads[0]["op"] == 10
            assert [p["s"] for p in payloads[1:]] == list(range(1, n + 3))
            # The same process serves the same bytes: HELLO, then the pre-built messages.
            ws = connect(fake, compress)
            wire = [ws.recv_message()[1]]
            identify(ws)
            while len(wire) < len(recs):
                opcode, data = ws.recv_message()
                assert opcode == 2
                wire.append(data)
            assert wire == recs, compress
            ws.close(4000)


@harness.timeout(180)
def test_replay_manual_start_pacing_and_times(tmp):
    n, rate = 400, 1000
    times = tmp / "times.txt"
    with harness.FakeDiscord(identify_interval_ms=0, shards=2, max_concurrency=2, guilds=1,
                             replay_events=n, replay_start="manual", replay_rate=rate,
                             replay_times=str(times)) as fake:
        conns = {}
        for shard, compress in ((0, "zstd-stream"), (1, "zlib-stream")):
            ws = connect(fake, compress)
            assert ws.recv_json()["op"] == 10
            identify(ws, shard, 2)
            prelude, _ = read_dispatches(ws, 2)
            assert [p["t"] for p in prelude] == ["READY", "GUILD_CREATE"]
            conns[shard] = ws
        fake.wait(lambda f: replay_state(f)["waiting"] == 2, what="both shards waiting")
        # Parked at the boundary: an ACK goes out at once, events do not.
        conns[0].send_json({"op": 1, "d": 2})
        assert conns[0].recv_json()["op"] == 11
        try:
            conns[0].recv_json(0.3)
            assert False, "an event arrived before the start"
        except TimeoutError:
            pass
        assert replay_start(fake, {"shard": 0}) == {"started": 1}
        events, _ = read_dispatches(conns[0], n + 2)
        assert [e["s"] for e in events] == list(range(3, n + 3))
        st = replay_state(fake)
        assert [s["state"] for s in st["shards"]] == ["done", "waiting"]
        sh = st["shards"][0]
        took = (sh["last_ns"] - sh["events_first_ns"]) / 1e9
        assert (n - 1) / rate * 0.9 <= took <= (n - 1) / rate * 3 * harness.scale(1), took
        assert not times.exists()  # written once no replay runs any more
        assert replay_start(fake, {}) == {"started": 1}
        events, _ = read_dispatches(conns[1], n + 2)
        assert len(events) == n
        harness.wait_for(times.exists, what="the times file")
        rows = [tuple(int(x) for x in line.split()) for line in times.read_text().splitlines()]
        assert len(rows) == 2 * (n + 2)
        for shard in (0, 1):
            mine = [r for r in rows if r[0] == shard]
            assert [r[1] for r in mine] == list(range(1, n + 3))
            assert all(a[2] <= b[2] for a, b in zip(mine, mine[1:]))
            assert mine[0][2] == replay_state(fake)["shards"][shard]["first_ns"]
        for ws in conns.values():
            ws.close(4000)


def test_replay_close_mid_stream_ends_on_a_frame():
    n = 5000
    with harness.FakeDiscord(identify_interval_ms=0, replay_events=n, guilds=1,
                             replay_rate=2000) as fake:
        ws = connect(fake, "zstd-stream")
        assert ws.recv_json()["op"] == 10
        identify(ws)
        events, _ = read_dispatches(ws, 200)
        fake.close(0, 4000)
        try:
            while True:
                p = ws.recv_json()  # everything before the close decodes
                assert p["s"] == events[-1]["s"] + 1
                events.append(p)
        except WSClosed as e:
            assert e.code == 4000
        assert 200 <= len(events) < n
        sh = replay_state(fake)["shards"][0]
        assert sh["state"] == "aborted" and sh["sent"] == len(events)
        # No history is kept for the replayed range: a RESUME is refused, IDENTIFY replays again.
        ws = connect(fake, "zlib-stream")
        assert ws.recv_json()["op"] == 10
        sid = events[0]["d"]["session_id"]
        ws.send_json({"op": 6, "d": {"token": TOKEN, "session_id": sid, "seq": len(events)}})
        assert ws.recv_json() == {"t": None, "s": None, "op": 9, "d": False}
        identify(ws)
        again, _ = read_dispatches(ws, 2)
        assert again[0]["t"] == "READY" and again[0]["d"]["session_id"] == sid
        ws.close(4000)


def test_replay_options_are_checked():
    binary = str(harness.build_dir() / "fake-discord")
    for args, code, says in (
            (["--replay-mix", "realistic"], 1, "need --replay-events"),
            (["--replay-events", "10", "--replay-mix", "huge"], 2, "realistic, small or messages"),
            (["--replay-events", "-1"], 2, "--replay-events"),
            (["--replay-events", "10", "--replay-start", "later"], 2, "identify or manual")):
        r = subprocess.run([binary, "--port", "0"] + args, capture_output=True, text=True,
                           timeout=harness.scale(20))
        assert r.returncode == code and says in r.stderr, (args, r.returncode, r.stderr)
