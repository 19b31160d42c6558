"""Tests of the test tooling itself (receiver, waits, process handling, run.py); they need
neither shardhook nor the fake Discord: stand-in scripts play the binaries."""
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import harness
import receiver

HERE = Path(__file__).resolve().parent


def post(url, body, headers=None, timeout=5.0):
    """POST body (bytes, or anything JSON) and return (status, response body)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers=dict({"Content-Type": "application/json"}, **(headers or {})))
    try:
        with urllib.request.urlopen(req, timeout=harness.scale(timeout)) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def batch(*seqs, shard=(0, 1)):
    return {"events": [{"shard": list(shard), "op": 0, "t": "MESSAGE_CREATE", "s": s,
                        "d": {"id": str(s), "content": "m%d" % s}} for s in seqs]}


def executable(path, text):
    path.write_text(textwrap.dedent(text).lstrip())
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_receiver_records_body_headers_and_time(tmp):
    r = harness.Receiver()
    body = json.dumps(batch(1, 2)).encode()
    before = time.monotonic()
    status, _ = post(r.url_for("/hook?x=1"), body, {"Webhook-Id": "msg_1", "X-Custom": "yes"})
    assert status == 200
    (req,) = r.requests
    assert req.method == "POST" and req.path == "/hook?x=1"
    assert req.headers["webhook-id"] == "msg_1" and req.headers["x-custom"] == "yes"
    assert req.headers["content-type"] == "application/json"
    assert all(k == k.lower() for k in req.headers)
    assert req.body == body
    assert req.json == batch(1, 2)
    assert before <= req.time <= time.monotonic()
    assert abs(req.wall_time - time.time()) < 5
    assert req.status == 200
    assert [e["s"] for e in r.events()] == [1, 2]
    assert r.events(path="/hook") == r.events() and r.events(path="/other") == []


def test_scripted_statuses_are_consumed_in_order():
    r = harness.Receiver()
    r.respond([500, 503, (429, {"Retry-After": "1"}, "slow down"), 200], then=204)
    got = [post(r.url, batch(i))[0] for i in range(6)]
    assert got == [500, 503, 429, 200, 204, 204]
    assert [q.status for q in r.requests] == got
    assert [q.index for q in r.requests] == list(range(6))


def test_events_only_come_from_2xx_answers():
    r = harness.Receiver()
    r.respond([500, 200, 404, 201])
    for seqs in ([1], [2, 3], [4], [5]):
        post(r.url, batch(*seqs))
    assert [e["s"] for e in r.events()] == [2, 3, 5]
    assert [e["s"] for e in r.wait_events(3, timeout=1)] == [2, 3, 5]
    try:
        r.wait_events(4, timeout=0.2)
    except AssertionError as e:
        assert "4 events" in str(e) and "got 3" in str(e)
    else:
        raise AssertionError("wait_events did not time out")


def test_answers_per_path_and_from_a_callable():
    r = harness.Receiver(status=202)
    seen = []

    def answer(request):
        seen.append(request.json)
        return 429, {"Retry-After": "7"}, {"retry": True}
    r.respond(answer, path="/slow")
    r.respond([500], path="/flaky", then=200)
    req = urllib.request.Request(r.url_for("/slow"), data=b'{"events":[]}', method="POST")
    try:
        urllib.request.urlopen(req, timeout=harness.scale(5))
        raise AssertionError("expected 429")
    except urllib.error.HTTPError as e:
        assert e.code == 429 and e.headers["Retry-After"] == "7"
        assert json.loads(e.read()) == {"retry": True}
    assert seen == [{"events": []}]
    assert [post(r.url_for("/flaky"), batch(1))[0] for _ in range(2)] == [500, 200]
    assert post(r.url_for("/anything"), batch(2))[0] == 202


def test_delay_holds_the_answer_and_stop_cuts_it_short():
    threads_before = threading.active_count()
    r = harness.Receiver()
    r.respond(200, delay=0.3)
    t0 = time.monotonic()
    assert post(r.url, batch(1))[0] == 200
    assert time.monotonic() - t0 >= 0.3
    r.respond(200, delay=30)  # a hung receiver
    try:
        post(r.url, batch(2), timeout=0.3)
        raise AssertionError("the hung receiver answered")
    except OSError:
        pass  # the client timed out
    assert len(r.requests) == 2 and r.requests[1].status is None
    assert [e["s"] for e in r.events()] == [1], "an unanswered batch must not count"
    t0 = time.monotonic()
    r.stop()
    assert time.monotonic() - t0 < 2, "stop() waited for the delay"
    harness.wait_for(lambda: threading.active_count() <= threads_before, timeout=2,
                     what="the hung request's thread to end after stop()")
    try:
        post(r.url, batch(3), timeout=1)
        raise AssertionError("a stopped receiver answered")
    except OSError:
        pass


def test_wait_for_returns_the_value_or_names_what_it_waited_for():
    calls = []
    assert harness.wait_for(lambda: calls.append(1) or len(calls) >= 3 and "done", timeout=2) == "done"

    def broken():
        raise ValueError("boom")
    t0 = time.monotonic()
    try:
        harness.wait_for(broken, timeout=0.2, what="the moon to rise")
        raise AssertionError("wait_for returned")
    except AssertionError as e:
        assert "the moon to rise" in str(e) and "boom" in str(e), str(e)
    assert time.monotonic() - t0 >= harness.scale(0.2)

    def give_up():
        raise harness.GiveUp("dead")
    t0 = time.monotonic()
    try:
        harness.wait_for(give_up, timeout=5)
        raise AssertionError("wait_for returned")
    except harness.GiveUp:
        assert time.monotonic() - t0 < 1


def test_signatures_match_the_standard_webhooks_vector():
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    want = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert harness.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == want
    h = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
         "webhook-signature": "v1,bm90IGl0 " + want}
    assert harness.verify_signature(secret, h, body)
    assert harness.verify_signature(["whsec_c2VjcmV0", secret], h, body)
    assert not harness.verify_signature(secret, h, body + b" ")
    assert not harness.verify_signature("whsec_c2VjcmV0", h, body)
    assert not harness.verify_signature(secret, h, body, tolerance_s=300)  # 2021 is stale
    assert harness.verify_signature(secret, h, body, tolerance_s=300, now=1614265330 + 10)


def test_free_port_is_bindable_and_never_repeated():
    ports = [harness.free_port() for _ in range(20)]
    assert len(set(ports)) == 20
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))


def test_logfmt_and_sanitizer_scan():
    rec = harness.parse_logfmt('ts=2026-01-01T00:00:00Z level=info msg="shard \\"ready\\"" shard=3 empty=')
    assert rec == {"ts": "2026-01-01T00:00:00Z", "level": "info", "msg": 'shard "ready"', "shard": "3",
                   "empty": ""}
    assert harness.scan_sanitizer("ok\nall good\n") == ""
    log = "a\n==1==ERROR: AddressSanitizer: heap-use-after-free\n#0 x\n"
    assert harness.scan_sanitizer(log).startswith("==1==ERROR: AddressSanitizer")
    assert "runtime error:" in harness.scan_sanitizer("gateway/x.c:3:5: runtime error: signed overflow")


def test_base_config_defaults_and_overrides(tmp):
    r = harness.Receiver()
    cfg = harness.base_config(None, r, webhook={"max_batch_events": 1}, http={"token": "t"},
                              log_level=harness.DELETE, shards={"total": 2})
    assert cfg["token"] == "test-token" and cfg["compress"] == "none"
    assert cfg["webhooks"] == [{"url": r.url, "events": ["*"], "secret": None, "max_batch_events": 1}]
    assert re.fullmatch(r"127\.0\.0\.1:\d+", cfg["http"]["listen"]) and cfg["http"]["token"] == "t"
    assert "log_level" not in cfg and cfg["shards"] == {"total": 2}
    assert cfg["state_dir"] == str(tmp / "state")
    assert cfg["testing"]["identify_interval_ms"] <= 500 and cfg["reconnect_base_ms"] <= 100


def test_processes_with_stand_in_binaries(tmp):
    fake_bin = executable(tmp / "fake-discord", """
        #!/bin/bash
        echo "argv: $*" >&2
        echo "fake-discord listening port=$(($2 ? $2 : 40404))"
        trap 'echo "fake got TERM"; exit 0' TERM
        while :; do sleep 0.05; done
        """)
    fake = harness.FakeDiscord(binary=fake_bin, heartbeat_ms=500, shards=2, zlib_split=True,
                               unavailable_forever=False, guilds=[1, 2])
    assert fake.port == 40404, "the port the fake names is the port used"
    assert fake.alive() and fake.url == "http://127.0.0.1:%d" % fake.port
    assert fake.api_base == fake.url + "/api/v10"
    argv = fake.wait_log(r"argv: (.*)").group(1)
    assert argv == "--port 0 --heartbeat-ms 500 --shards 2 --zlib-split --guilds 1,2 --token test-token", argv
    assert fake.stop() == 0 and "fake got TERM" in fake.log_text()

    sh_bin = executable(tmp / "shardhook", """
        #!/bin/bash
        if [ "$1" = --check ]; then echo "webhooks[0].url: must be http(s)"; exit 78; fi
        echo "argv: $*"
        echo "token=${DISCORD_TOKEN-unset}"
        tr -d '\\n' < "$2"; echo
        echo 'level=info msg="ready" shards=2'
        trap 'echo "level=info msg=stopping"; exit 0' TERM
        while :; do sleep 0.05; done
        """)
    cfg = harness.base_config(fake, harness.Receiver())
    os.environ["DISCORD_TOKEN"] = "leaked"  # the harness must not pass it on
    try:
        sh = harness.Shardhook(cfg, binary=sh_bin)
    finally:
        del os.environ["DISCORD_TOKEN"]
    m = sh.wait_log(r'msg="ready" shards=(\d)')
    assert m.group(1) == "2"
    assert "token=unset" in sh.log_text()
    assert "argv: -c %s" % sh.config_path in sh.log_text()
    assert json.loads(sh.log_text().splitlines()[2]) == cfg
    assert sh.http_url == "http://" + cfg["http"]["listen"]
    since = sh.log_offset()
    sh.signal(signal.SIGTERM)
    assert sh.wait_exit(5) == 0
    sh.wait_log("stopping", since=since)
    try:
        sh.wait_log("never printed", timeout=5)
        raise AssertionError("wait_log matched")
    except AssertionError as e:
        assert "exited (code 0)" in str(e), str(e)
    sh2 = harness.Shardhook(cfg, token="given", binary=sh_bin)
    sh2.wait_log("token=given")
    sh2.kill()
    assert not sh2.alive() and sh2.returncode() == -signal.SIGKILL
    code, out = harness.Shardhook.check({"webhooks": []}, binary=sh_bin)
    assert code == 78 and out.strip() == "webhooks[0].url: must be http(s)"
    procs = (tmp / harness.PROCS_FILE).read_text().splitlines()
    assert [p.split("\t")[0] for p in procs] == [str(fake.pid), str(sh.pid), str(sh2.pid)]


def test_receiver_standalone_prints_batches_and_events(tmp):
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    stats = tmp / "stats.json"
    p = subprocess.Popen([sys.executable, "-u", str(HERE / "receiver.py"), "--port", "0", "--print",
                          "--secret", secret, "--stats-file", str(stats)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = p.stdout.readline()
        port = int(re.match(r"receiver listening port=(\d+) url=http://127\.0\.0\.1:\d+/", first).group(1))
        body = json.dumps({"events": [
            {"shard": [0, 2], "op": 0, "t": "MESSAGE_CREATE", "s": 17,
             "d": {"guild_id": "81", "channel_id": "82", "author": {"id": "83"}, "content": "hello from the fake"}},
            {"shard": [1, 2], "op": 0, "t": "GUILD_CREATE", "s": 3, "d": {"id": "90", "name": "Guild"}}]}).encode()
        h = {"webhook-id": "msg_abc", "webhook-timestamp": str(int(time.time()))}
        h["webhook-signature"] = harness.sign(secret, h["webhook-id"], h["webhook-timestamp"], body)
        assert post("http://127.0.0.1:%d/" % port, body, h)[0] == 200
        lines = [p.stdout.readline().rstrip("\n") for _ in range(3)]
        assert lines[0] == "batch events=2 bytes=%d webhook-id=msg_abc status=200 sig=ok" % len(body), lines
        assert lines[1] == '  shard=[0,2] s=17 MESSAGE_CREATE guild=81 channel=82 user=83 "hello from the fake"'
        assert lines[2] == '  shard=[1,2] s=3 GUILD_CREATE guild=90 "Guild"'
        assert json.loads(stats.read_text()) == {"batches": 1, "events": 2, "bad_signatures": 0}
        p.send_signal(signal.SIGTERM)
        rest, _ = p.communicate(timeout=harness.scale(5))
        assert p.returncode == 0
        assert rest.strip() == "receiver stopped batches=1 events=2"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


SAMPLE_TESTS = '''
import os, signal, time, harness

def test_passes():
    assert 1 + 1 == 2

def test_fails_with_logs(tmp):
    fake = harness.Process("stand-in")
    fake.spawn(["sh", "-c", "echo a line the runner must show; exec sleep 30"])
    fake.wait_log("a line")
    print("printed by the test")
    assert False, "deliberate failure"

@harness.timeout(1)
def test_hangs(tmp):
    p = harness.Process("sleeper")
    p.spawn(["sleep", "60"])
    (tmp / "pid").write_text(str(p.pid))
    (tmp.parent / "hung-pid").write_text(str(p.pid))
    time.sleep(60)

def test_sanitizer_report():
    p = harness.Process("shardhook")
    p.spawn(["sh", "-c", 'echo "opts=$ASAN_OPTIONS"; echo "==7==ERROR: AddressSanitizer: heap-use-after-free"'])
    p.wait_exit(5)
'''


def run_runner(args, timeout=60, env=None):
    # the sample suites' expectations hold for a plain build; a test asks for another explicitly
    e = dict(os.environ, BUILD="build")
    e.update(env or {})
    p = subprocess.run([sys.executable, str(HERE / "run.py")] + args, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=harness.scale(timeout),
                       env=e)
    return p.returncode, p.stdout


def test_runner_reports_failures_timeouts_and_log_tails(tmp):
    d = tmp / "suite"
    d.mkdir()
    (d / "test_sample.py").write_text(SAMPLE_TESTS)
    (d / "test_broken.py").write_text("import nonexistent_module_xyz\n")
    base = tmp / "base"
    base.mkdir()
    code, out = run_runner(["--dir", str(d), "--tmp-base", str(base)], env={"BUILD": "build/sanitize"})
    lines = out.splitlines()
    assert code == 1, out
    assert lines[-1] == "1 passed, 4 failed", out
    assert sum(bool(re.match(r"\d+ passed, \d+ failed$", line)) for line in lines) == 1
    assert "FAIL test_broken.py::<import> (0.0s)" in lines
    assert re.search(r"^ok   test_sample\.py::test_passes \(\d+\.\ds\)$", out, re.M), out
    fail = out.split("FAIL test_sample.py::test_fails_with_logs", 1)[1].split("\nFAIL", 1)[0]
    assert "AssertionError: deliberate failure" in fail
    assert "--- stand-in.log (1 lines) ---\n    a line the runner must show" in fail, fail
    assert "printed by the test" in fail
    hang = out.split("FAIL test_sample.py::test_hangs", 1)[1]
    assert "timed out after %.1fs" % harness.scale(1) in hang, hang
    assert re.search(r'test_sample\.py", line \d+ in test_hangs', hang), hang
    pid = int((base / "hung-pid").read_text())
    harness.wait_for(lambda: not os.path.exists("/proc/%d" % pid) or
                     open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0] == "Z",
                     timeout=5, what="the hung test's process to be killed")
    san = out.split("FAIL test_sample.py::test_sanitizer_report", 1)[1]
    assert "shardhook: sanitizer report in" in san and "heap-use-after-free" in san, san
    assert re.search(r"opts=abort_on_error=1:halt_on_error=1:", san), san
    assert not list(base.glob("test_sample.py.test_passes.*")), "a passing test's folder was kept"
    assert list(base.glob("test_sample.py.test_fails_with_logs.*")), "a failing test's folder was removed"


def test_runner_filters_stops_early_and_runs_files_in_parallel(tmp):
    d = tmp / "suite"
    d.mkdir()
    (d / "test_sample.py").write_text(SAMPLE_TESTS)
    (d / "test_other.py").write_text("def test_a():\n    pass\n\ndef test_b():\n    assert 0\n")
    base = ["--dir", str(d), "--tmp-base", str(tmp)]
    code, out = run_runner(base + ["-k", "passes"])
    assert code == 0 and out.splitlines()[-1] == "1 passed, 0 failed", out
    code, out = run_runner(base + ["-x"])
    assert code == 1 and out.splitlines()[-1] == "1 passed, 1 failed", out
    assert "test_sample.py::" not in out, "-x ran past the first failure"
    code, out = run_runner(base + ["-j", "2"])
    assert code == 1 and out.splitlines()[-1] == "3 passed, 3 failed", out
    for name in ("test_other.py::test_a", "test_other.py::test_b", "test_sample.py::test_passes",
                 "test_sample.py::test_fails_with_logs", "test_sample.py::test_hangs",
                 "test_sample.py::test_sanitizer_report"):
        assert re.search(r"^(ok  |FAIL) %s \(" % re.escape(name), out, re.M), (name, out)


SKIP_TESTS = '''
import harness

def test_passes():
    pass

def test_cannot_check_here():
    raise harness.Skip("mallinfo2 cannot see the heap under ASan")
    assert False, "never reached"

def test_only_skips():
    raise harness.Skip()
'''


def test_runner_says_skipped_never_ok_and_counts_it_apart(tmp):
    d = tmp / "suite"
    d.mkdir()
    (d / "test_skips.py").write_text(SKIP_TESTS)
    for jobs in (["-j", "1"], ["-j", "2"]):
        code, out = run_runner(["--dir", str(d), "--tmp-base", str(tmp)] + jobs)
        lines = out.splitlines()
        assert code == 0, out
        assert "skip test_skips.py::test_cannot_check_here (mallinfo2 cannot see the heap under " \
               "ASan)" in lines, out
        assert "skip test_skips.py::test_only_skips (no reason given)" in lines, out
        assert not re.search(r"^ok   test_skips\.py::test_(cannot|only)", out, re.M), out
        assert lines[-1] == "1 passed, 0 failed, 2 skipped", out
    # a run in which every selected test skipped ran something: exit 0, not "no tests ran"
    code, out = run_runner(["--dir", str(d), "--tmp-base", str(tmp), "-k", "cannot"])
    assert code == 0 and out.splitlines()[-1] == "0 passed, 0 failed, 1 skipped", out
    # scripts/run-tests reads the closing line with its skipped count
    fake_unit = tmp / "build" / "tests"
    fake_unit.mkdir(parents=True)
    (fake_unit / "test_x").write_text("#!/bin/sh\necho 'ok   a'\necho 'skip b (why)'\n"
                                      "echo '1 passed, 0 failed, 1 skipped'\n")
    (fake_unit / "test_x").chmod(0o755)
    r = subprocess.run([str(harness.ROOT / "scripts" / "run-tests"), "unit"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       env=dict(os.environ, BUILD=str(tmp / "build")), timeout=harness.scale(30))
    last = r.stdout.splitlines()[-1]
    assert r.returncode == 0 and last == "1 passed, 0 failed, 1 skipped", r.stdout
    assert "skip b (why)" in r.stdout, r.stdout


# -- cluster_helpers: forwarder, receiver gaps, redis-server ------------------------------------
import cluster_helpers as ch  # noqa: E402


class _Echo:
    """A loopback TCP server that echoes what it gets, one thread per connection."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    @staticmethod
    def _echo(c):
        with c:
            while True:
                try:
                    data = c.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                c.sendall(data)

    def close(self):
        self.sock.close()


def _roundtrip(port, data=b"ping", timeout=2.0):
    with socket.create_connection(("127.0.0.1", port), timeout=harness.scale(timeout)) as s:
        s.sendall(data)
        return s.recv(4096)


def test_forwarder_forwards_cuts_and_restores():
    echo = _Echo()
    try:
        fwd = ch.TcpForwarder(echo.port)
        assert _roundtrip(fwd.port) == b"ping"
        held = socket.create_connection(("127.0.0.1", fwd.port), timeout=harness.scale(2))
        held.sendall(b"a")
        assert held.recv(10) == b"a"
        harness.wait_for(lambda: fwd.connections() == 1, what="one open connection")
        fwd.cut()
        assert fwd.is_cut
        assert held.recv(10) == b""  # the open connection was closed
        held.close()
        try:
            socket.create_connection(("127.0.0.1", fwd.port), timeout=harness.scale(2)).close()
            raise AssertionError("a cut forwarder accepted a connection")
        except ConnectionRefusedError:
            pass
        fwd.restore()
        assert not fwd.is_cut
        assert _roundtrip(fwd.port, b"again") == b"again"  # same port
    finally:
        echo.close()


def test_forwarder_blackhole_keeps_sockets_open_and_forwards_nothing():
    echo = _Echo()
    try:
        fwd = ch.TcpForwarder(echo.port)
        s = socket.create_connection(("127.0.0.1", fwd.port), timeout=0.3)
        s.sendall(b"x")
        assert s.recv(10) == b"x"
        fwd.cut("blackhole")
        s.sendall(b"lost")
        try:
            got = s.recv(10)
            raise AssertionError("a blackholed connection answered %r" % got)
        except socket.timeout:
            pass
        s2 = socket.create_connection(("127.0.0.1", fwd.port), timeout=0.3)  # still accepted
        s2.sendall(b"y")
        try:
            raise AssertionError("answered %r" % s2.recv(10))
        except socket.timeout:
            pass
        fwd.restore()  # the stale connections are closed; new ones work
        assert s.recv(10) == b""
        s.close()
        s2.close()
        assert _roundtrip(fwd.port, b"z") == b"z"
    finally:
        echo.close()


def test_forwarder_closes_clients_when_nothing_listens_behind():
    port = harness.free_port()
    fwd = ch.TcpForwarder(port)
    with socket.create_connection(("127.0.0.1", fwd.port), timeout=harness.scale(2)) as s:
        try:
            s.sendall(b"x")
            assert s.recv(10) == b""
        except ConnectionResetError:
            pass  # closed before our bytes arrived: a reset, as good as an end of stream


def _signed_post(rx, events, secret=None):
    body = json.dumps({"events": events}).encode()
    mid, ts = "msg_%d" % len(rx.requests), str(int(time.time()))
    sig = receiver.sign(secret or rx.secret, mid, ts, body)
    return post(rx.url, body, {"webhook-id": mid, "webhook-timestamp": ts,
                               "webhook-signature": sig})[0]


def _ev(shard, session, s, n=0, t="MESSAGE_CREATE"):
    k = "%d:%s:%s" % (shard, session, s if not n else "%s.%d" % (s, n))
    return {"shard": [shard, 4], "op": 0, "t": t, "s": None if n else s, "key": k, "d": {}}


def test_cluster_receiver_finds_gaps_and_duplicates_per_session():
    rx = ch.ClusterReceiver()
    assert _signed_post(rx, [_ev(0, "aa", s) for s in (1, 2, 3, 5, 6)]) == 200
    assert _signed_post(rx, [_ev(0, "aa", 3), _ev(0, "aa", 6), _ev(0, "aa", 6)]) == 200
    assert _signed_post(rx, [_ev(1, "bb", s) for s in (1, 2)]) == 200
    assert _signed_post(rx, [_ev(1, "bb", 2, n=1, t="SHARDHOOK_SESSION_LOST"),
                             _ev(1, "cc", 1), _ev(1, "cc", 2)]) == 200
    # a forged batch is counted, never recorded
    assert _signed_post(rx, [_ev(2, "zz", 1)], secret="whsec_" + "QUJD" * 8) == 200
    # an event whose key disagrees with its s is set apart
    bad = _ev(3, "dd", 1)
    bad["s"] = 2
    assert _signed_post(rx, [bad, {"shard": [3, 4], "op": 0, "t": "X", "s": 9, "d": {}}]) == 200
    rep = rx.report()
    assert rep["missing"] == {(0, "aa"): [4]}
    assert rep["duplicates"] == {"0:aa:3": 1, "0:aa:6": 2} and rep["dup_count"] == 3
    assert rep["sessions"][(1, "bb")] == (1, 2, 2) and rep["sessions"][(1, "cc")] == (1, 2, 2)
    assert rep["bad_signatures"] == 1 and rep["unkeyed"] == 2
    assert [r["t"] for r in rx.of_type("SHARDHOOK_SESSION_LOST")] == ["SHARDHOOK_SESSION_LOST"]
    # against what was sent: the tail and unseen sessions count as missing too
    rep = rx.report(expected_last={(0, "aa"): 8, (1, "cc"): 2, (2, "ee"): 2})
    assert rep["missing"][(0, "aa")] == [4, 7, 8] and rep["missing"][(2, "ee")] == [1, 2]
    assert (1, "cc") not in rep["missing"]
    assert rx.last_s()[(0, "aa")] == 6
    assert "missing in" in ch.describe(rep)


def test_parse_key_and_app_id():
    assert ch.parse_key("3:9f2c:42") == (3, "9f2c", 42, 0)
    assert ch.parse_key("3:9f2c:42.2") == (3, "9f2c", 42, 2)
    assert ch.parse_key("0:-:-.1") == (0, "-", None, 1)
    for bad in ("3:42", "x:a:1", "3:a:b"):
        try:
            ch.parse_key(bad)
            raise AssertionError("parsed %r" % bad)
        except ValueError:
            pass
    # "test-token" is no base64 of digits: the hash decides
    assert ch.app_id("test-token") == __import__("hashlib").sha256(b"test-token").hexdigest()[:16]
    # a real token's first part is the application id in base64
    assert ch.app_id("MTEwMDAwMDAwMDAwMDAwMDAwMQ.Gabc.def") == "1100000000000000001"
    assert ch.key("shard:3").startswith("shardhook:{") and ch.key("shard:3").endswith("}:shard:3")


def test_redis_server_auth_aof_kill9_restart():
    redis = ch.RedisServer()
    assert redis.cmd("PING") == "PONG"
    # the password is required, and not on the command line
    with socket.create_connection(("127.0.0.1", redis.port), timeout=harness.scale(2)) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert s.recv(100).startswith(b"-NOAUTH")
    assert redis.password not in " ".join(redis.args)
    cfg = dict(zip(*[iter(redis.cmd("CONFIG", "GET", "*"))] * 2))
    assert cfg["appendonly"] == "yes" and cfg["appendfsync"] == "everysec"
    assert cfg["maxmemory-policy"] == "noeviction" and cfg["save"] == ""
    assert cfg["bind"].startswith("127.0.0.1")
    assert redis.cmd("HSET", ch.key("shard:1"), "owner", "node-a", "fence", 7) == 2
    assert redis.shard(1) == {"owner": "node-a", "fence": "7"}
    try:
        redis.cmd("NOSUCHCOMMAND")
        raise AssertionError("no error reply")
    except ch.RedisError as e:
        assert "unknown command" in str(e)
    time.sleep(1.5)  # appendfsync everysec
    pid = redis.pid
    redis.kill9()
    assert redis.returncode() == -signal.SIGKILL
    try:
        redis.client()
        raise AssertionError("redis still answers after kill -9")
    except OSError:
        pass
    redis.restart()
    assert redis.pid != pid
    assert redis.shard(1) == {"owner": "node-a", "fence": "7"}  # the AOF brought it back
    # through a forwarder, as the nodes reach it
    fwd = ch.TcpForwarder(redis.port)
    c = ch.RespClient("127.0.0.1", fwd.port, redis.password)
    assert c.cmd("HGET", ch.key("shard:1"), "owner") == "node-a"
    fwd.cut()
    try:
        c.cmd("PING")
        raise AssertionError("a cut forwarder passed a command")
    except (OSError, ConnectionError):
        pass
    fwd.restore()
    assert ch.RespClient("127.0.0.1", fwd.port, redis.password).cmd("PING") == "PONG"
    assert redis.stop() == 0
