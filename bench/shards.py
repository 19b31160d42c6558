#!/usr/bin/env python3
"""bench/shards.py: how many idle shards one shardhook process holds, and at what memory cost.

For each compression (zlib-stream, zstd-stream) and each shard count, it starts the fake Discord
(--shards N, max_concurrency 16, a shortened identify window) and shardhook, waits until the log
says every shard is ready, lets it settle, and reads shardhook's resident memory (VmRSS, and VmHWM
for the peak) from /proc. RSS per idle shard is (RSS(N) - RSS(1)) / (N - 1): the cost of one more
shard beyond the process baseline.

  python3 bench/shards.py [--counts 1,100,1000] [--compress zlib,zstd] [--repeat 3]
      [--interval-ms 100] [--concurrency 16] [--json out.json]

Loopback only. Prints a Markdown table and the medians over --repeat runs. This is a benchmark,
not a test: nothing here asserts a target; docs/benchmarks.md records the figures.
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD", "build")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib(pid, field="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(parts[11]) + int(parts[12])) / ticks


def run_once(n, compress, interval_ms, concurrency, workdir):
    port = free_port()
    fake = subprocess.Popen(
        [os.path.join(ROOT, BUILD, "fake-discord"), "--port", str(port), "--shards", str(n),
         "--max-concurrency", str(concurrency), "--identify-interval-ms", str(interval_ms),
         "--guilds", "1", "--heartbeat-ms", "41250", "--session-total", "100000",
         "--session-remaining", "100000"],
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
        "state_dir": os.path.join(workdir, "state"), "log_level": "info",
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
    ap.add_argument("--json")
    args = ap.parse_args()
    raise_fd_limit()
    counts = [int(c) for c in args.counts.split(",")]
    if 1 not in counts:
        counts = [1] + counts
    workdir = tempfile.mkdtemp(prefix="shardhook-bench-")
    rows = []
    try:
        for compress in args.compress.split(","):
            for n in counts:
                runs = [run_once(n, compress, args.interval_ms, args.concurrency, workdir)
                        for _ in range(args.repeat)]
                med = {k: statistics.median(r[k] for r in runs)
                       for k in ("startup_s", "rss_kib", "peak_rss_kib", "cpu_s")}
                med.update(shards=n, compress=compress, runs=len(runs))
                rows.append(med)
                print("  %s %5d shards: ready in %.2fs, RSS %d KiB (peak %d), CPU %.2fs"
                      % (compress, n, med["startup_s"], med["rss_kib"], med["peak_rss_kib"],
                         med["cpu_s"]), file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    base = {r["compress"]: r["rss_kib"] for r in rows if r["shards"] == 1}
    print("| compress | shards | ready in (s) | RSS (KiB) | peak RSS (KiB) | KiB per idle shard |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        per = "" if r["shards"] == 1 else "%.1f" % ((r["rss_kib"] - base[r["compress"]]) /
                                                  (r["shards"] - 1))
        r["kib_per_shard"] = per
        print("| %s-stream | %d | %.2f | %d | %d | %s |" % (
            r["compress"], r["shards"], r["startup_s"], r["rss_kib"], r["peak_rss_kib"], per))
    print("\nmedians of %d runs; identify window %d ms, max_concurrency %d"
          % (args.repeat, args.interval_ms, args.concurrency))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
