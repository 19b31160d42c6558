#!/usr/bin/env python3
"""bench/shards.py: how many idle shards one shardhook process holds, and at what memory cost.

For each compression (zlib-stream, zstd-stream) and each shard count, it starts the fake Discord
(--shards N, max_concurrency 16, a shortened identify window) and shardhook, waits until the log
says every shard is ready, lets it settle, and reads shardhook's resident memory (VmRSS, and VmHWM
for the peak) from /proc. RSS per idle shard is (RSS(N) - RSS(1)) / (N - 1): the cost of one more
shard beyond the process baseline.

  python3 bench/shards.py [--counts 1,100,1000] [--compress zlib,zstd] [--repeat 3]
      [--interval-ms 100] [--concurrency 16] [--traffic-events N] [--json out.json]

With --traffic-events N, every shard then receives N events (about 860 bytes each, through
the compression) before RSS is read again: a busy shard's decompression window is filled, which
an idle shard's is not.

Loopback only. Prints a Markdown table and the medians over --repeat runs. This is a benchmark,
not a test: nothing here asserts a target; docs/benchmarks.md records the figures.
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from common import cpu_seconds, free_port, raise_fd_limit
from common import proc_kib as rss_kib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD", "build")


def post(port, path, body):
    import urllib.request
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def wait_idle(pid, quiet_s=1.0, limit_s=120):
    """Until the process used no CPU for quiet_s (it has consumed what it was sent)."""
    end = time.monotonic() + limit_s
    last = cpu_seconds(pid)
    while time.monotonic() < end:
        time.sleep(quiet_s)
        now = cpu_seconds(pid)
        if now - last < 0.02:
            return
        last = now


def run_once(n, compress, interval_ms, concurrency, workdir, traffic):
    port = free_port()
    fake = subprocess.Popen(
        [os.path.join(ROOT, BUILD, "fake-discord"), "--port", str(port), "--shards", str(n),
         "--max-concurrency", str(concurrency), "--identify-interval-ms", str(interval_ms),
         "--guilds", "1", "--heartbeat-ms", "41250", "--session-total", "100000",
         "--session-remaining", "100000", "--history", str(max(traffic + 16, 64))],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, preexec_fn=raise_fd_limit)
    line = fake.stdout.readline().decode()
    if "listening" not in line:
        fake.kill()
        raise RuntimeError("fake-discord did not start: %r" % line)
    cfg = {
        "token": "test-token", "api_base": "http://127.0.0.1:%d/api/v10" % port,
        "intents": ["GUILDS"], "compress": compress, "shards": "auto",
        "identify_concurrency": "auto", "webhooks": [],
        "http": {"listen": "127.0.0.1:%d" % free_port()},
        "state_dir": tempfile.mkdtemp(prefix="state-", dir=workdir), "log_level": "info",
        "testing": {"identify_interval_ms": interval_ms},
    }
    path = os.path.join(workdir, "bench-%s-%d.json" % (compress, n))
    with open(path, "w") as f:
        json.dump(cfg, f)
    log_path = path + ".log"
    log = open(log_path, "wb")
    t0 = time.monotonic()
    sh = subprocess.Popen([os.path.join(ROOT, BUILD, "shardhook"), "-c", path],
                          stdout=log, stderr=subprocess.STDOUT, preexec_fn=raise_fd_limit)
    ready_at = None
    deadline = t0 + 60 + n * interval_ms / 1000.0 / concurrency * 2
    try:
        while time.monotonic() < deadline:
            if sh.poll() is not None:
                raise RuntimeError("shardhook exited %s; see %s" % (sh.returncode, log_path))
            with open(log_path, "rb") as f:
                if b'msg="all shards ready"' in f.read():
                    ready_at = time.monotonic()
                    break
            time.sleep(0.05)
        if ready_at is None:
            raise RuntimeError("not all %d shards ready in time; see %s" % (n, log_path))
        time.sleep(2.0)  # settle: allocations of the start-up are returned or reused
        result = {
            "shards": n, "compress": compress,
            "startup_s": ready_at - t0,
            "rss_kib": rss_kib(sh.pid), "peak_rss_kib": rss_kib(sh.pid, "VmHWM"),
            "cpu_s": cpu_seconds(sh.pid),
        }
        if traffic:
            left = traffic
            while left > 0:
                step = min(left, 1000)
                post(port, "/_fake/burst", {"count": step})
                left -= step
            wait_idle(sh.pid)
            result["busy_rss_kib"] = rss_kib(sh.pid)
        sh.send_signal(signal.SIGTERM)
        sh.wait(timeout=30)
        result["exit"] = sh.returncode
        return result
    finally:
        for p in (sh, fake):
            if p.poll() is None:
                p.kill()
                p.wait()
        log.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--counts", default="1,100,1000")
    ap.add_argument("--compress", default="zlib,zstd")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--interval-ms", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--traffic-events", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args()
    raise_fd_limit()
    counts = [int(c) for c in args.counts.split(",")]
    if 1 not in counts:
        counts = [1] + counts
    workdir = tempfile.mkdtemp(prefix="shardhook-bench-")
    rows = []
    ok = False
    try:
        for compress in args.compress.split(","):
            for n in counts:
                runs = [run_once(n, compress, args.interval_ms, args.concurrency, workdir,
                                 args.traffic_events)
                        for _ in range(args.repeat)]
                keys = ["startup_s", "rss_kib", "peak_rss_kib", "cpu_s"]
                keys += ["busy_rss_kib"] if args.traffic_events else []
                med = {k: statistics.median(r[k] for r in runs) for k in keys}
                med.update(shards=n, compress=compress, runs=len(runs))
                rows.append(med)
                print("  %s %5d shards: ready in %.2fs, RSS %d KiB (peak %d), CPU %.2fs"
                      % (compress, n, med["startup_s"], med["rss_kib"], med["peak_rss_kib"],
                         med["cpu_s"]), file=sys.stderr)
        ok = True
    finally:
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print("kept %s for its logs" % workdir, file=sys.stderr)
    base = {r["compress"]: r for r in rows if r["shards"] == 1}

    def per_shard(r, key):
        if r["shards"] == 1:
            return ""
        return "%.1f" % ((r[key] - base[r["compress"]][key]) / (r["shards"] - 1))

    busy = bool(args.traffic_events)
    print("| compress | shards | ready in (s) | RSS (KiB) | peak RSS (KiB) | KiB per idle shard |"
          + (" busy RSS (KiB) | KiB per busy shard |" if busy else ""))
    print("|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if busy else ""))
    for r in rows:
        r["kib_per_shard"] = per_shard(r, "rss_kib")
        line = "| %s-stream | %d | %.2f | %d | %d | %s |" % (
            r["compress"], r["shards"], r["startup_s"], r["rss_kib"], r["peak_rss_kib"],
            r["kib_per_shard"])
        if busy:
            r["kib_per_busy_shard"] = per_shard(r, "busy_rss_kib")
            line += " %d | %s |" % (r["busy_rss_kib"], r["kib_per_busy_shard"])
        print(line)
    print("\nmedians of %d runs; identify window %d ms, max_concurrency %d%s"
          % (args.repeat, args.interval_ms, args.concurrency,
             "; %d events per shard before the busy RSS" % args.traffic_events if busy else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
