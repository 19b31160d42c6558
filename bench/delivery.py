#!/usr/bin/env python3
"""bench/delivery.py: delivery throughput and latency, fake Discord -> shardhook -> a C sink.

For each shard count and batch size it starts build/fake-discord (--shards N), build/bench/sink
(checks every Standard Webhooks signature, counts events, checks per-shard order) and
build/shardhook between them, on loopback, with zlib-stream transport compression. Then:

  throughput  the fake bursts --events MESSAGE_CREATE events (about 1.3 KB each once inflated),
              spread over the shards; measured from the first burst call to the sink's last
              batch: events/s, MB/s of inflated event JSON, shardhook's CPU seconds (utime+stime
              from /proc) per million events;
  latency     a paced load (--latency-rate events/s for --latency-seconds) with probe events
              every 10 ms whose d carries the wall-clock send time; the sink reports p50/p99
              from the fake's send to its receipt (max_batch_delay_ms is 25, the default);
  memory      shardhook's peak RSS (VmHWM) over the whole run.

  python3 bench/delivery.py [--shards 1,16] [--batch 100,1000] [--events 200000]
      [--latency-rate 5000] [--latency-seconds 3] [--repeat 1] [--json FILE] [--smoke]

The fake builds and compresses each burst in real time here, so at high rates the generator
can be the limit: `make bench` runs bench/run.py instead, which drives shardhook with the fake's
pre-compressed replay and measures every figure in one run. This script stays for the figures
of docs/benchmarks.md's "Delivery" section (MESSAGE_CREATE only, probe latency). This is a
benchmark, not a test: it asserts nothing about speed, only that every event arrived once, in
order, correctly signed. Loopback only; every wait is bounded.
"""
import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD", "build")
SECRET = "whsec_" + base64.b64encode(b"bench secret for shardhook sink!").decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url, body=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"{}")


def wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise SystemExit("bench: timed out after %.0fs waiting for %s" % (timeout, what))


def spawn(argv, log, env=None):
    f = open(log, "wb")
    p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         env=env, start_new_session=True)
    f.close()
    return p


def read_port(log, pattern, proc, timeout=10):
    def found():
        if proc.poll() is not None:
            raise SystemExit("bench: %s exited:\n%s" % (log, open(log).read()[-2000:]))
        m = re.search(pattern, open(log).read())
        return m and int(m.group(1))
    return wait(found, timeout, log)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def stop(p):
    if p and p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def scenario(shards, batch, events, rate, lat_seconds, tmp):
    bins = os.path.join(ROOT, BUILD)
    sink = fake = sh = None
    try:
        sink = spawn([os.path.join(bins, "bench", "sink"), "--secret", SECRET, "--port", "0"],
                     os.path.join(tmp, "sink.log"))
        sink_url = "http://127.0.0.1:%d" % read_port(os.path.join(tmp, "sink.log"),
                                                    r"sink listening port=(\d+)", sink)
        fake = spawn([os.path.join(bins, "fake-discord"), "--port", "0", "--shards", str(shards),
                      "--max-concurrency", "16", "--identify-interval-ms", "0", "--guilds", "1",
                      "--token", "bench-token"],
                     os.path.join(tmp, "fake.log"))
        fake_url = "http://127.0.0.1:%d" % read_port(os.path.join(tmp, "fake.log"),
                                                    r"fake-discord listening port=(\d+)", fake)
        cfg = {
            "token": "bench-token", "api_base": fake_url + "/api/v10", "compress": "zlib",
            "intents": ["GUILDS", "GUILD_MESSAGES"], "shards": "auto",
            "webhooks": [{"url": sink_url + "/hook", "events": ["MESSAGE_CREATE"],
                          "secret": SECRET, "max_batch_events": batch,
                          "max_batch_bytes": 16 << 20}],
            "http": {"listen": "127.0.0.1:%d" % free_port()},
            "state_dir": os.path.join(tmp, "state"), "log_level": "warn",
            "testing": {"identify_interval_ms": 0},
        }
        with open(os.path.join(tmp, "shardhook.json"), "w") as f:
            json.dump(cfg, f)
        env = dict(os.environ)
        env.pop("DISCORD_TOKEN", None)
        sh = spawn([os.path.join(bins, "shardhook"), "-c", os.path.join(tmp, "shardhook.json")],
                   os.path.join(tmp, "shardhook.log"), env)
        def ready():
            if sh.poll() is not None:
                raise SystemExit("bench: shardhook exited:\n" +
                                 open(os.path.join(tmp, "shardhook.log")).read()[-2000:])
            sessions = call(fake_url + "/_fake/log")["sessions"]
            return len([s for s in sessions if s["seq"] >= 1]) >= shards
        wait(ready, 60, "%d shards ready" % shards)
        time.sleep(0.5)
        call(sink_url + "/reset", {})

        # throughput
        per_shard = events // shards
        total = per_shard * shards
        cpu0, t0 = cpu_seconds(sh.pid), time.time()
        left = per_shard
        while left:
            n = min(left, max(1, 20000 // shards))
            call(fake_url + "/_fake/burst", {"count": n}, timeout=120)
            left -= n
        st = wait(lambda: (lambda s: s if s["events"] >= total else None)(
            call(sink_url + "/stats")), 600, "%d events at the sink" % total)
        cpu1 = cpu_seconds(sh.pid)
        dt = st["last_ms"] / 1000.0 - t0
        out = {"shards": shards, "batch": batch, "events": total,
               "seconds": round(dt, 3),
               "events_per_s": round(total / dt),
               "mb_per_s": round(st["event_bytes"] / dt / 1e6, 1),
               "cpu_s_per_million": round((cpu1 - cpu0) / total * 1e6, 2),
               "batches": st["batches"],
               "bad_signatures": st["bad_signatures"], "order_errors": st["order_errors"]}
        if st["events"] != total or st["bad_signatures"] or st["order_errors"]:
            raise SystemExit("bench: delivery was wrong: %s" % st)

        # latency under a paced load
        call(sink_url + "/reset", {})
        per_tick = max(1, int(rate * 0.01) // shards)
        probes = 0
        end = time.monotonic() + lat_seconds
        next_tick = time.monotonic()
        while time.monotonic() < end:
            call(fake_url + "/_fake/burst", {"count": per_tick})
            # a string: the fake re-serialises d, and a double would lose the digits
            d = {"bench_t_us": str(int(time.time() * 1e6)), "content": "probe"}
            call(fake_url + "/_fake/dispatch",
                 {"shard": probes % shards, "t": "MESSAGE_CREATE", "d": d})
            probes += 1
            next_tick += 0.01
            pause = next_tick - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        st = wait(lambda: (lambda s: s if s["probes"] >= probes else None)(
            call(sink_url + "/stats")), 60, "%d probes at the sink" % probes)
        out.update({"latency_load_events_per_s": round(st["events"] / lat_seconds),
                    "probes": st["probes"], "p50_ms": st["p50_ms"], "p99_ms": st["p99_ms"],
                    "peak_rss_kib": peak_rss_kib(sh.pid)})
        return out
    finally:
        for p in (sh, fake, sink):
            stop(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", default="1,16")
    ap.add_argument("--batch", default="100,1000")
    ap.add_argument("--events", type=int, default=200000)
    ap.add_argument("--latency-rate", type=int, default=5000)
    ap.add_argument("--latency-seconds", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json")
    ap.add_argument("--smoke", action="store_true", help="tiny run: does the harness work")
    args = ap.parse_args()
    if args.smoke:
        args.shards, args.batch, args.events = "2", "100", 4000
        args.latency_seconds, args.latency_rate = 1.0, 1000
    rows = []
    for shards in [int(x) for x in args.shards.split(",")]:
        for batch in [int(x) for x in args.batch.split(",")]:
            runs = []
            for _ in range(args.repeat):
                tmp = tempfile.mkdtemp(prefix="shardhook-bench-")
                try:
                    runs.append(scenario(shards, batch, args.events, args.latency_rate,
                                         args.latency_seconds, tmp))
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            row = dict(runs[0])
            for k in ("seconds", "events_per_s", "mb_per_s", "cpu_s_per_million", "p50_ms",
                      "p99_ms", "peak_rss_kib"):
                row[k] = statistics.median(r[k] for r in runs)
            rows.append(row)
            print("shards=%(shards)d batch=%(batch)d events=%(events)d: %(events_per_s)d ev/s "
                  "%(mb_per_s).1f MB/s cpu=%(cpu_s_per_million).2f s/M p50=%(p50_ms).1f ms "
                  "p99=%(p99_ms).1f ms peak_rss=%(peak_rss_kib)d KiB" % row, flush=True)
    print()
    print("| shards | batch | events/s | MB/s | CPU s per M events | p50 ms | p99 ms | "
          "peak RSS KiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print("| %(shards)d | %(batch)d | %(events_per_s)d | %(mb_per_s).1f | "
              "%(cpu_s_per_million).2f | %(p50_ms).1f | %(p99_ms).1f | %(peak_rss_kib)d |" % r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
