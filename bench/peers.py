#!/usr/bin/env python3
"""bench/peers.py: the Node gateway libraries people use, on the same replay shardhook reads.

For each peer, compression and shard count it starts the fake Discord in replay mode (events
pre-built and pre-compressed, --replay-start manual, --zlib-split 1, identify window 0) and one
client process, which connects every shard, waits until the fake has them all parked after
READY, starts the replay, counts dispatches and reports CPU seconds, wall time and RSS:

  discordjs    @discordjs/ws 2.0.4 + @discordjs/rest (bench/peers/discordjs.mjs); zlib-stream
               through node:zlib. It has no zstd-stream: that combination is skipped.
  discordeno   @discordeno/gateway 21.0.0 (bench/peers/discordeno.mjs); zstd-stream through
               fzstd, zlib-stream through node:zlib. fzstd hands over one zstd block (at most
               128 KiB) at a time and discordeno parses each as a whole payload, so a larger
               payload kills it: with zstd it runs the "small" mix (the realistic mix without
               GUILD_CREATE), which the table says.
  shardhook    build/shardhook with no webhooks: the gateway side only (discovery, inflate,
               envelope scan, routing to nobody). CPU and RSS come from /proc; the end is when
               GET /v1/shards reports every shard at the last s. Delivery is measured elsewhere.

  python3 bench/peers.py [--peers discordjs,discordeno,shardhook] [--shards 1,16]
      [--compress zlib,zstd] [--events 200000] [--mix realistic] [--rate 0] [--repeat 3]
      [--timeout 300] [--json out.json]

--events is the total over all shards (each shard gets events/N). --rate paces the fake (total
events per second, 0: as fast as the client reads). Loopback only; every process is stopped at
the end of its run. Prints a Markdown table of medians; this is a benchmark, not a test.
Needs `npm ci` in bench/peers (the versions are pinned in package-lock.json).
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from common import cpu_seconds as proc_cpu_s, free_port, proc_kib, raise_fd_limit, wait

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD", "build")
PEERS = os.path.join(ROOT, "bench", "peers")
TOKEN = "test-token"


def get_json(url, timeout=5.0, method="GET", body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


class Fake:
    """build/fake-discord in manual-start replay mode on a free port."""

    def __init__(self, shards, events, mix, compress, rate, token, workdir):
        self.log_path = os.path.join(workdir, "fake-discord.log")
        self.log = open(self.log_path, "wb")
        argv = [os.path.join(ROOT, BUILD, "fake-discord"), "--port", "0", "--token", token,
                "--shards", str(shards), "--max-concurrency", str(max(16, shards)),
                "--identify-interval-ms", "0", "--zlib-split", "1",
                "--replay-events", str(events), "--replay-mix", mix,
                "--replay-start", "manual", "--replay-compress", compress]
        if rate:
            argv += ["--replay-rate", "%g" % rate]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log,
                                     preexec_fn=raise_fd_limit)
        line = self.proc.stdout.readline().decode()  # after the streams are built
        if "listening" not in line:
            self.stop()
            raise RuntimeError("fake-discord did not start; see %s" % self.log_path)
        self.port = int(line.rsplit("=", 1)[1])
        self.url = "http://127.0.0.1:%d" % self.port

    def replay(self):
        return get_json(self.url + "/_fake/replay")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def run_node(peer, fake, shards, compress, timeout, workdir):
    err_path = os.path.join(workdir, "%s.stderr" % peer)
    with open(err_path, "wb") as err:
        try:
            r = subprocess.run(["node", "--expose-gc", os.path.join(PEERS, peer + ".mjs"),
                                "--port", str(fake.port), "--shards", str(shards), "--compress",
                                compress, "--timeout", str(timeout)],
                               stdout=subprocess.PIPE, stderr=err, timeout=timeout + 30,
                               cwd=PEERS)
        except subprocess.TimeoutExpired:
            raise RuntimeError("%s did not finish; see %s" % (peer, err_path))
    lines = [ln for ln in r.stdout.decode().splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        with open(err_path, errors="replace") as f:
            tail = f.read()[-600:]
        raise RuntimeError("%s exited %d: %s" % (peer, r.returncode, tail.strip()))
    return json.loads(lines[-1])


def run_shardhook(fake, shards, compress, timeout, workdir):
    """shardhook with no webhooks: the gateway's cost alone, measured from /proc."""
    http_port = free_port()
    cfg = {
        "token": TOKEN, "api_base": fake.url + "/api/v10", "intents": ["GUILDS"],
        "compress": compress, "shards": "auto", "identify_concurrency": "auto", "webhooks": [],
        "http": {"listen": "127.0.0.1:%d" % http_port},
        "state_dir": os.path.join(workdir, "state"), "log_level": "warn",
        "testing": {"identify_interval_ms": 0},
    }
    path = os.path.join(workdir, "shardhook.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    log = open(os.path.join(workdir, "shardhook.log"), "wb")
    sh = subprocess.Popen([os.path.join(ROOT, BUILD, "shardhook"), "-c", path], stdout=log,
                          stderr=subprocess.STDOUT, preexec_fn=raise_fd_limit)
    try:
        wait(lambda: sh.poll() is not None or fake.replay()["waiting"] == shards, timeout,
                   "every shard parked after READY")
        if sh.poll() is not None:
            raise RuntimeError("shardhook exited %s" % sh.returncode)
        time.sleep(0.2)
        idle = proc_kib(sh.pid, "VmRSS")
        state = fake.replay()
        last_s = state["payloads"]
        cpu0, t0 = proc_cpu_s(sh.pid), time.monotonic()
        get_json(fake.url + "/_fake/replay/start", method="POST", body={})

        def finished():
            if sh.poll() is not None:
                raise RuntimeError("shardhook exited %s" % sh.returncode)
            got = get_json("http://127.0.0.1:%d/v1/shards" % http_port)["shards"]
            return len(got) == shards and all(s["seq"] == last_s for s in got)

        wait(finished, timeout, "shardhook to reach the last s", interval=0.01)
        wall = time.monotonic() - t0
        cpu = proc_cpu_s(sh.pid) - cpu0
        events = state["events"] * shards
        return {"peer": "shardhook", "shards": shards, "compress": compress, "events": events,
                "wall_s": wall, "cpu_s": cpu, "events_per_s": events / wall,
                "events_per_cpu_s": events / cpu if cpu > 0 else float("inf"),
                "rss_idle_kib": idle, "rss_end_kib": proc_kib(sh.pid, "VmRSS"),
                "peak_rss_kib": proc_kib(sh.pid, "VmHWM"), "library": "shardhook (gateway only)"}
    finally:
        if sh.poll() is None:
            sh.send_signal(signal.SIGTERM)
            try:
                sh.wait(timeout=15)
            except subprocess.TimeoutExpired:
                sh.kill()
                sh.wait()
        log.close()


def run_once(peer, compress, shards, args, mix, workdir):
    token = "Bot " + TOKEN if peer == "discordeno" else TOKEN  # it prefixes IDENTIFY's token
    per_shard = max(1, args.events // shards)
    fake = Fake(shards, per_shard, mix, compress, args.rate / shards if args.rate else 0, token,
                workdir)
    try:
        if peer == "shardhook":
            result = run_shardhook(fake, shards, compress, args.timeout, workdir)
        else:
            result = run_node(peer, fake, shards, compress, args.timeout, workdir)
        st = fake.replay()
        if st["done"] != shards:
            raise RuntimeError("the fake finished %d of %d shards" % (st["done"], shards))
        result["mix"] = mix
        result["bytes_raw"] = sum(s["bytes_raw"] for s in st["shards"])
        return result
    finally:
        fake.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers", default="discordjs,discordeno,shardhook")
    ap.add_argument("--shards", default="1,16")
    ap.add_argument("--compress", default="zlib,zstd")
    ap.add_argument("--events", type=int, default=200000, help="total over all shards")
    ap.add_argument("--mix", default="realistic")
    ap.add_argument("--rate", type=float, default=0, help="total events/s; 0: unpaced")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--json")
    args = ap.parse_args()
    raise_fd_limit()
    if not os.path.isdir(os.path.join(PEERS, "node_modules")):
        sys.exit("bench/peers.py: run `npm ci` in bench/peers first")
    rows, skipped = [], []
    workdir = tempfile.mkdtemp(prefix="shardhook-peers-")
    try:
        for peer in args.peers.split(","):
            for compress in args.compress.split(","):
                if peer == "discordjs" and compress == "zstd":
                    skipped.append("discordjs/zstd: @discordjs/ws has no zstd-stream")
                    continue
                mix = args.mix
                if peer == "discordeno" and compress == "zstd" and mix == "realistic":
                    mix = "small"  # fzstd + discordeno cannot take payloads over 128 KiB
                for shards in (int(n) for n in args.shards.split(",")):
                    runs = []
                    for i in range(args.repeat):
                        d = os.path.join(workdir, "%s-%s-%d-%d" % (peer, compress, shards, i))
                        os.makedirs(d)
                        runs.append(run_once(peer, compress, shards, args, mix, d))
                        r = runs[-1]
                        print("  %s %s-stream %s %2d shards: %7.0f events/s, %7.0f events/CPU-s,"
                              " CPU %.2fs, RSS idle %d KiB, peak %d KiB"
                              % (peer, compress, mix, shards, r["events_per_s"],
                                 r["events_per_cpu_s"], r["cpu_s"], r["rss_idle_kib"],
                                 r["peak_rss_kib"]), file=sys.stderr)
                    med = {k: statistics.median(r[k] for r in runs)
                           for k in ("events_per_s", "events_per_cpu_s", "cpu_s", "wall_s",
                                     "rss_idle_kib", "peak_rss_kib")}
                    med.update(peer=peer, compress=compress, shards=shards, mix=mix,
                               events=runs[0]["events"], runs=len(runs),
                               library=runs[0].get("library", peer))
                    rows.append(med)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    idle1 = {(r["peer"], r["compress"]): r["rss_idle_kib"] for r in rows if r["shards"] == 1}
    print("| peer | compress | mix | shards | events/s | events per CPU-s | CPU s | "
          "RSS idle (KiB) | peak RSS (KiB) | peak RSS per shard (KiB) | idle KiB per extra shard |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        base = idle1.get((r["peer"], r["compress"]))
        extra = ("%.0f" % ((r["rss_idle_kib"] - base) / (r["shards"] - 1))
                 if base is not None and r["shards"] > 1 else "")
        r["idle_kib_per_extra_shard"] = extra
        print("| %s | %s-stream | %s | %d | %.0f | %.0f | %.2f | %d | %d | %.0f | %s |" % (
            r["library"], r["compress"], r["mix"], r["shards"], r["events_per_s"],
            r["events_per_cpu_s"], r["cpu_s"], r["rss_idle_kib"], r["peak_rss_kib"],
            r["peak_rss_kib"] / r["shards"], extra))
    for s in skipped:
        print("skipped: " + s)
    print("\nmedians of %d runs; %d events in total per run, rate %s"
          % (args.repeat, args.events, "unpaced" if not args.rate else "%g/s" % args.rate))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "skipped": skipped}, f, indent=2)


if __name__ == "__main__":
    main()
