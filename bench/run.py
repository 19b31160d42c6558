#!/usr/bin/env python3
"""bench/run.py: every figure of the performance issue in one run (`make bench`).

One entry point, five parts, all on loopback, every process stopped at the end:

  delivery  fake Discord in replay mode (pre-built, pre-compressed realistic mix, manual start)
            -> build/shardhook -> build/bench/sink (checks every signature, counts, keeps the
            receipt time of every (shard, s)). For zlib-stream and zstd-stream, 1 and 16 shards,
            max_batch_events 100 (and 1,000 as an extra row), unpaced: events/s, decompressed
            MB/s, shardhook's CPU seconds per million events (utime+stime from /proc over the
            replay only), idle and peak RSS (VmHWM). Then paced (--replay-rate) at 50% and 90% of
            the median unpaced peak: p50/p99/max latency from the fake's send time
            (--replay-times) to the sink's receipt, joined on (shard, s), prelude left out.
  roof      build/bench/inflate_roof on a dump of the same replay (same seed, mix and events as
            shard 0 of the 1-shard runs): inflate-only, signed-roof (inflate plus SHA-256 over
            every decompressed byte) and hot-path ns per event; shardhook's CPU per event through
            delivery as a multiple of the signed roof (the target) and of the inflate-only roof.
  peers     bench/peers.py: @discordjs/ws on zlib-stream, @discordeno/gateway on zstd-stream
            (its "small" mix: it cannot take payloads over 128 KiB), unpaced and at a steady
            --steady-rate events/s; shardhook through delivery on the same mix and rate. Ratio
            of events per CPU-second and of peak RSS per shard.
  shards    bench/shards.py: RSS per idle shard at 1, 100 and 1,000 shards.
  summary   the issue's targets with the medians and PASS/MISS.

  python3 bench/run.py [--repeat 3] [--quick | --smoke] [--json FILE] [--markdown FILE]
      [--parts delivery,roof,peers,shards] [--keep]

--repeat runs every measurement that many times and reports medians (default 3); --quick is one
run with fewer events (for iteration); --smoke is the smallest run that still produces every
figure (`make bench-smoke`, and tests/integration/test_bench_smoke.py). This is a benchmark, not a
test: it asserts no speed, only that every event arrived once, in order, correctly signed.
Needs build/shardhook, build/fake-discord, build/bench/* (`make bench-bin`) and `npm ci` in
bench/peers (`make bench` does both).
"""
import argparse
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from common import Proc, call, cpu_seconds, free_port, log, median, proc_kib, raise_fd_limit
from common import headline, run_parts, wait, write_results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD", "build")
BIN = os.path.join(ROOT, BUILD)
SECRET = "whsec_" + base64.b64encode(b"bench secret for shardhook sink!").decode()
TOKEN = "bench-token"
MAX_BATCH_DELAY_MS = 25  # shardhook's default, which the delivery runs keep

# The targets.
ROOF_MAX = 1.5  # CPU per event at most 1.5x the signed roof (inflate + SHA-256 of every byte)
PEER_MIN = 5.0  # at least 5x the peer's events per CPU-second
LATENCY_SLACK_MS = 5.0  # p99 at most max_batch_delay_ms + 5 ms at half the peak rate
IDLE_SHARD_MAX_KIB = 100.0  # under 100 KiB per idle zlib-stream shard

PROFILES = {
    # events: unpaced events in total per delivery run; paced_s: seconds of a paced run;
    # peer_events / steady_events: totals for the peers' unpaced and steady runs
    "full": dict(shards=[1, 16], batches=[100, 1000], events=200000, paced_s=4.0,
                 min_paced_events=2000, steady_rate=10000, steady_events=50000,
                 peer_shards=[1, 16], peer_events=100000, shard_counts=[1, 100, 1000],
                 roof_runs=5, repeat=3, timeout=300),
    "quick": dict(shards=[1, 16], batches=[100], events=100000, paced_s=2.0,
                  min_paced_events=2000, steady_rate=10000, steady_events=20000,
                  peer_shards=[1, 16], peer_events=40000, shard_counts=[1, 100, 1000],
                  roof_runs=3, repeat=1, timeout=180),
    "smoke": dict(shards=[1, 2], batches=[100, 1000], events=4000, paced_s=0.5,
                  min_paced_events=500, steady_rate=2000, steady_events=1000,
                  peer_shards=[1, 2], peer_events=4000, shard_counts=[1, 3],
                  roof_runs=1, repeat=1, timeout=60),
}

def pct(sorted_values, q):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1))))]


# -- delivery: fake (replay) -> shardhook -> sink -------------------------------------------------
def read_pairs(text):
    """'shard s ns' lines -> {(shard, s): ns}."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            out[(int(parts[0]), int(parts[1]))] = int(parts[2])
    return out


def delivery_run(compress, shards, batch, events_per_shard, rate_per_shard, mix, timeout, tmp,
                 extra_cfg=None, settle=None):
    """One run; returns its figures. Raises when delivery was wrong or a wait timed out.
    extra_cfg is merged into shardhook's config; settle(cfg, pid), when given, is called once
    every event reached the sink and before shardhook's CPU clock is read again (bench/cache.py
    waits there for the cache to apply what it was handed)."""
    times_path = os.path.join(tmp, "replay-times.txt")
    sink = fake = sh = None
    try:
        sink = Proc([os.path.join(BIN, "bench", "sink"), "--secret", SECRET, "--port", "0"],
                    os.path.join(tmp, "sink.log"))

        def sink_port():
            if not sink.alive():
                raise RuntimeError("sink exited: " + sink.tail())
            m = re.search(r"sink listening port=(\d+)", sink.tail(10000))
            return m and int(m.group(1))
        sink_url = "http://127.0.0.1:%d" % wait(sink_port, 10, "the sink")

        argv = [os.path.join(BIN, "fake-discord"), "--port", "0", "--token", TOKEN,
                "--shards", str(shards), "--max-concurrency", str(max(16, shards)),
                "--identify-interval-ms", "0", "--zlib-split", "1",
                "--replay-events", str(events_per_shard), "--replay-mix", mix,
                "--replay-start", "manual", "--replay-compress", compress]
        if rate_per_shard:
            argv += ["--replay-rate", "%.3f" % rate_per_shard, "--replay-times", times_path]
        fake = Proc(argv, os.path.join(tmp, "fake.log"), stdout_pipe=True)
        line = fake.proc.stdout.readline().decode()  # printed once the streams are built
        if "listening" not in line:
            raise RuntimeError("fake-discord did not start: " + fake.tail())
        fake_url = "http://127.0.0.1:%d" % int(line.rsplit("=", 1)[1])

        cfg = {
            "token": TOKEN, "api_base": fake_url + "/api/v10", "compress": compress,
            "intents": ["GUILDS", "GUILD_MESSAGES"], "shards": "auto",
            "identify_concurrency": "auto",
            "webhooks": [{"url": sink_url + "/hook", "events": ["*"], "secret": SECRET,
                          "max_batch_events": batch}],
            "http": {"listen": "127.0.0.1:%d" % free_port()},
            "state_dir": os.path.join(tmp, "state"), "log_level": "warn",
            "testing": {"identify_interval_ms": 0},
        }
        cfg.update(extra_cfg or {})
        if batch > 100:  # let the event count close the batch, not the default 256 KiB
            cfg["webhooks"][0]["max_batch_bytes"] = 4 << 20
        cfg_path = os.path.join(tmp, "shardhook.json")
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        env = dict(os.environ)
        env.pop("DISCORD_TOKEN", None)
        sh = Proc([os.path.join(BIN, "shardhook"), "-c", cfg_path],
                  os.path.join(tmp, "shardhook.log"), env)

        def check_alive():
            for p, name in ((sh, "shardhook"), (fake, "fake-discord"), (sink, "sink")):
                if not p.alive():
                    raise RuntimeError("%s exited: %s" % (name, p.tail()))

        def parked():
            check_alive()
            st = call(fake_url + "/_fake/replay")
            return st if st["waiting"] == shards else None
        state = wait(parked, 60, "every shard parked after its prelude")
        payloads, prelude = state["payloads"], state["prelude"]

        # the prelude is delivered before the clock starts, so the run measures the replay only
        def prelude_in():
            check_alive()
            return call(sink_url + "/stats")["events"] >= shards * prelude
        wait(prelude_in, 30, "the prelude at the sink")
        time.sleep(0.3)
        idle_rss = proc_kib(sh.pid, "VmRSS")
        base = call(sink_url + "/stats")["events"]
        expected = shards * payloads

        cpu0 = cpu_seconds(sh.pid)
        others0 = cpu_seconds(fake.pid), cpu_seconds(sink.pid)
        t0 = time.time_ns()
        call(fake_url + "/_fake/replay/start", {})
        lim = timeout + (events_per_shard / rate_per_shard if rate_per_shard else 0)

        def all_in():
            check_alive()
            st = call(sink_url + "/stats")
            return st if st["events"] >= expected else None
        st = wait(all_in, lim, "%d events at the sink" % expected, interval=0.01)
        if settle:
            settle(cfg, sh.pid)
        cpu1 = cpu_seconds(sh.pid)
        others1 = cpu_seconds(fake.pid), cpu_seconds(sink.pid)
        peak_rss = proc_kib(sh.pid, "VmHWM")
        time.sleep(0.05)
        st = call(sink_url + "/stats")
        if st["events"] != expected or st["bad_signatures"] or st["order_errors"]:
            raise RuntimeError("delivery was wrong: expected %d events, sink: %s"
                               % (expected, json.dumps(st)))
        replay = call(fake_url + "/_fake/replay")
        events = shards * events_per_shard
        seconds = (st["last_ns"] - t0) / 1e9
        raw = sum(s["bytes_raw"] for s in replay["shards"])
        cpu = cpu1 - cpu0
        out = {
            "compress": compress, "shards": shards, "batch": batch, "mix": mix,
            "rate_per_shard": rate_per_shard, "events": events, "seconds": seconds,
            "events_per_s": events / seconds, "mb_per_s": raw / seconds / 1e6,
            "cpu_s": cpu, "cpu_s_per_million": cpu / events * 1e6,
            "events_per_cpu_s": events / cpu if cpu > 0 else None,
            "rss_idle_kib": idle_rss, "peak_rss_kib": peak_rss, "batches": st["batches"],
            # the generator's and the sink's share of the two cores over the same window
            "fake_cpu_s": others1[0] - others0[0], "sink_cpu_s": others1[1] - others0[1],
            "prelude_events_before_start": base,
        }
        if rate_per_shard:
            def times_written():
                check_alive()
                return os.path.exists(times_path)
            wait(times_written, 30, "the fake's --replay-times file")
            with open(times_path) as f:
                sent = read_pairs(f.read())
            got = read_pairs(call(sink_url + "/receipts", raw=True, timeout=60).decode())
            lat = sorted((got[k] - ns) / 1e6 for k, ns in sent.items()
                         if k[1] > prelude and k in got)
            want = shards * (payloads - prelude)
            if len(lat) != want:
                raise RuntimeError("latency join found %d of %d events" % (len(lat), want))
            out.update(samples=len(lat), p50_ms=pct(lat, 0.50), p99_ms=pct(lat, 0.99),
                       max_ms=lat[-1], offered_per_s=rate_per_shard * shards)
        return out
    finally:
        for p in (sh, fake, sink):
            if p:
                p.stop()


MEDIAN_KEYS = ("seconds", "events_per_s", "mb_per_s", "cpu_s", "cpu_s_per_million",
               "events_per_cpu_s", "fake_cpu_s", "sink_cpu_s", "rss_idle_kib", "peak_rss_kib",
               "batches", "p50_ms", "p99_ms", "max_ms", "samples", "offered_per_s")


def delivery_case(name, prof, repeat, tmp, compress, shards, batch, mix, rate_total, events):
    """Runs one case --repeat times; returns a row of medians with every run kept."""
    runs = []
    per_shard_rate = rate_total / shards if rate_total else 0
    per_shard = max(1, events // shards)
    for i in range(repeat):
        d = tempfile.mkdtemp(dir=tmp, prefix="%s-%s-%d-%d-%s-%d-" % (name, compress, shards,
                                                                      batch, mix, i))
        r = delivery_run(compress, shards, batch, per_shard, per_shard_rate, mix, prof["timeout"],
                         d)
        runs.append(r)
        msg = ("  %-8s %s-stream %-9s %2d shards batch %4d: %8.0f ev/s %6.1f MB/s "
               "cpu %.2f s/M, peak RSS %d KiB" % (name, compress, mix, shards, batch,
                                                  r["events_per_s"], r["mb_per_s"],
                                                  r["cpu_s_per_million"], r["peak_rss_kib"]))
        if "p99_ms" in r:
            msg += ", offered %.0f/s: p50 %.1f p99 %.1f max %.1f ms" % (
                r["offered_per_s"], r["p50_ms"], r["p99_ms"], r["max_ms"])
        log(msg)
    row = {k: median(r.get(k) for r in runs) for k in MEDIAN_KEYS if k in runs[0]}
    row.update(case=name, compress=compress, shards=shards, batch=batch, mix=mix,
               events=runs[0]["events"], rate_total=rate_total, runs=runs)
    return row


def part_delivery(prof, repeat, tmp, results):
    peak, latency = [], []
    for compress in ("zlib", "zstd"):
        for shards in prof["shards"]:
            for batch in prof["batches"]:
                peak.append(delivery_case("peak", prof, repeat, tmp, compress, shards, batch,
                                          "realistic", 0, prof["events"]))
    results["delivery"] = peak
    for row in [r for r in peak if r["batch"] == 100]:
        for frac in (0.5, 0.9):
            rate = row["events_per_s"] * frac
            events = max(prof["min_paced_events"], int(rate * prof["paced_s"]))
            lr = delivery_case("paced", prof, repeat, tmp, row["compress"], row["shards"], 100,
                               "realistic", rate, events)
            lr["fraction_of_peak"] = frac
            lr["peak_events_per_s"] = row["events_per_s"]
            latency.append(lr)
    results["latency"] = latency


# -- the roof -------------------------------------------------------------------------------------
def part_roof(prof, repeat, tmp, results):
    d = os.path.join(tmp, "roof-dump")
    subprocess.run([os.path.join(BIN, "fake-discord"), "--port", "0", "--zlib-split", "1",
                    "--replay-events", str(prof["events"]), "--replay-mix", "realistic",
                    "--replay-dump-only", d], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=600)
    runs = []
    for i in range(repeat):
        j = os.path.join(tmp, "roof-%d.json" % i)
        subprocess.run([os.path.join(BIN, "bench", "inflate_roof"), "--runs",
                        str(prof["roof_runs"]), "--json", j, d], check=True,
                       stdout=subprocess.DEVNULL, timeout=1200)
        with open(j) as f:
            runs.append(json.load(f))
    roof = {}
    for name, key in (("zlib-stream", "zlib"), ("zstd-stream", "zstd")):
        rs = [r[name] for r in runs]
        roof[key] = {
            "events": rs[0]["events"], "raw_bytes": rs[0]["raw_bytes"],
            "compressed_bytes": rs[0]["compressed_bytes"],
            "inflate_ns_per_event": median(r["inflate_only"]["ns_per_event"] for r in rs),
            "inflate_mb_per_s": median(r["inflate_only"]["mb_per_s"] for r in rs),
            "signed_ns_per_event": median(r["signed_roof"]["ns_per_event"] for r in rs),
            "hot_ns_per_event": median(r["hot_path"]["ns_per_event"] for r in rs),
            "runs": rs,
        }
        log("  roof %s-stream: inflate only %.0f ns/event (%.0f MB/s), signed %.0f ns/event, "
            "hot path %.0f ns/event"
            % (key, roof[key]["inflate_ns_per_event"], roof[key]["inflate_mb_per_s"],
               roof[key]["signed_ns_per_event"], roof[key]["hot_ns_per_event"]))
    results["roof"] = roof


# -- the peers ------------------------------------------------------------------------------------
def run_peers(peer, compress, prof, repeat, rate, events, tmp):
    j = os.path.join(tmp, "peers-%s-%s-%s.json" % (peer, compress, rate or "unpaced"))
    argv = [sys.executable, os.path.join(ROOT, "bench", "peers.py"), "--peers", peer,
            "--compress", compress, "--shards", ",".join(map(str, prof["peer_shards"])),
            "--events", str(events), "--repeat", str(repeat), "--rate", str(rate),
            "--timeout", str(prof["timeout"]), "--json", j]
    p = Proc(argv, j + ".log")
    try:
        rc = p.proc.wait(prof["timeout"] * repeat * len(prof["peer_shards"]) + 120)
    except subprocess.TimeoutExpired:
        rc = None
    tail = p.tail(3000)
    p.stop()
    if rc != 0:
        raise RuntimeError("bench/peers.py %s %s failed (%s):\n%s" % (peer, compress, rc, tail))
    with open(j) as f:
        rows = json.load(f)["rows"]
    for r in rows:
        log("  peer %-10s %s-stream %-9s %2d shards %s: %7.0f events/CPU-s, peak RSS %d KiB"
            % (peer, compress, r["mix"], r["shards"], "unpaced" if not rate else "%d/s" % rate,
               r["events_per_cpu_s"], r["peak_rss_kib"]))
    return rows


def part_peers(prof, repeat, tmp, results):
    if not os.path.isdir(os.path.join(ROOT, "bench", "peers", "node_modules")):
        raise RuntimeError("bench/peers/node_modules is missing: run `npm ci` in bench/peers "
                           "(make bench does)")
    # (peer, compression, the mix it can read)
    pairs = (("discordjs", "zlib", "realistic"), ("discordeno", "zstd", "small"))
    peers, ours = [], []
    for peer, compress, mix in pairs:
        for rate, events, mode in ((0, prof["peer_events"], "unpaced"),
                                   (prof["steady_rate"], prof["steady_events"], "steady")):
            for r in run_peers(peer, compress, prof, repeat, rate, events, tmp):
                r["mode"] = mode
                r["rate_total"] = rate
                peers.append(r)
            for shards in prof["peer_shards"]:
                # shardhook through delivery on the same mix and rate; the unpaced realistic
                # rows are the peak runs of the delivery part when they exist
                have = [d for d in results.get("delivery", []) if not rate and d["batch"] == 100
                        and d["compress"] == compress and d["shards"] == shards
                        and d["mix"] == mix]
                if have:
                    row = dict(have[0])
                else:
                    row = delivery_case("peer" if not rate else "steady", prof, repeat, tmp,
                                        compress, shards, 100, mix, rate,
                                        prof["events"] if not rate else events)
                row["mode"] = mode
                ours.append(row)
    results["peers"] = peers
    results["peers_shardhook"] = ours


# -- idle shards ----------------------------------------------------------------------------------
def part_shards(prof, repeat, tmp, results):
    j = os.path.join(tmp, "shards.json")
    argv = [sys.executable, os.path.join(ROOT, "bench", "shards.py"), "--counts",
            ",".join(map(str, prof["shard_counts"])), "--compress", "zlib,zstd",
            "--repeat", str(repeat), "--json", j]
    p = Proc(argv, j + ".log")
    try:
        rc = p.proc.wait(600 * repeat)
    except subprocess.TimeoutExpired:
        rc = None
    tail = p.tail(3000)
    p.stop()
    if rc != 0:
        raise RuntimeError("bench/shards.py failed (%s):\n%s" % (rc, tail))
    with open(j) as f:
        rows = json.load(f)
    for r in rows:
        log("  idle %s-stream %4d shards: RSS %d KiB, %s KiB per idle shard"
            % (r["compress"], r["shards"], r["rss_kib"], r["kib_per_shard"] or "-"))
    results["shards"] = rows


# -- the summary ----------------------------------------------------------------------------------
def find(rows, **kw):
    for r in rows:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def summarize(results, prof):
    out = []
    roof = results.get("roof", {})
    for r in results.get("delivery", []):
        if r["batch"] != 100 or r["compress"] not in roof:
            continue
        ns = r["cpu_s_per_million"] * 1e3  # s per 1e6 events -> ns per event
        r["ns_per_event"] = ns
        r["x_roof"] = ns / roof[r["compress"]]["inflate_ns_per_event"]
        r["x_signed"] = ns / roof[r["compress"]]["signed_ns_per_event"]
        r["x_hot_path"] = ns / roof[r["compress"]]["hot_ns_per_event"]
        ok = r["x_signed"] <= ROOF_MAX
        out.append({
            "key": "roof",
            "target": "CPU per event <= %gx signed roof" % ROOF_MAX,
            "case": "%s-stream, %d shard%s" % (r["compress"], r["shards"],
                                                "s" if r["shards"] > 1 else ""),
            "measured": "%.0f ns = %.2fx signed roof (%.0f ns)" % (
                ns, r["x_signed"], roof[r["compress"]]["signed_ns_per_event"]),
            "value": r["x_signed"], "limit": ROOF_MAX, "pass": ok,
            "margin": ("%.0f%% under" % ((1 - r["x_signed"] / ROOF_MAX) * 100)) if ok else
                      ("%.2fx over (%.0f%% above)" % (r["x_signed"] / ROOF_MAX,
                                                       (r["x_signed"] / ROOF_MAX - 1) * 100)),
        })
    comp = []
    for p in results.get("peers", []):
        ours = find(results.get("peers_shardhook", []), compress=p["compress"],
                    shards=p["shards"], mix=p["mix"], mode=p["mode"])
        if not ours or not ours.get("events_per_cpu_s"):
            continue
        c = {"peer": p["library"], "compress": p["compress"], "mix": p["mix"],
             "shards": p["shards"], "mode": p["mode"], "rate_total": p["rate_total"],
             "peer_events_per_cpu_s": p["events_per_cpu_s"],
             "shardhook_events_per_cpu_s": ours["events_per_cpu_s"],
             "ratio": ours["events_per_cpu_s"] / p["events_per_cpu_s"],
             "peer_rss_per_shard_kib": p["peak_rss_kib"] / p["shards"],
             "shardhook_rss_per_shard_kib": ours["peak_rss_kib"] / p["shards"],
             "peer_rss_idle_kib": p["rss_idle_kib"],
             "shardhook_rss_idle_kib": ours["rss_idle_kib"]}
        c["rss_ratio"] = c["peer_rss_per_shard_kib"] / c["shardhook_rss_per_shard_kib"]
        comp.append(c)
        ok = c["ratio"] >= PEER_MIN
        out.append({
            "key": "peers",
            "target": ">= %gx the peer's events per CPU-second" % PEER_MIN,
            "case": "vs %s, %s-stream%s, %d shard%s, %s" % (
                p["peer"], p["compress"], "" if p["mix"] == "realistic" else " (%s mix)" % p["mix"],
                p["shards"], "s" if p["shards"] > 1 else "",
                "unpaced" if p["mode"] == "unpaced" else "%d events/s" % p["rate_total"]),
            "measured": "%.1fx (%.0f vs %.0f)" % (c["ratio"], c["shardhook_events_per_cpu_s"],
                                                  c["peer_events_per_cpu_s"]),
            "value": c["ratio"], "limit": PEER_MIN, "pass": ok,
            "margin": ("%.0f%% above" % ((c["ratio"] / PEER_MIN - 1) * 100)) if ok else
                      ("%.0f%% short" % ((1 - c["ratio"] / PEER_MIN) * 100)),
        })
    results["peer_comparison"] = comp
    limit = MAX_BATCH_DELAY_MS + LATENCY_SLACK_MS
    for r in results.get("latency", []):
        if r["fraction_of_peak"] != 0.5:
            continue
        ok = r["p99_ms"] <= limit
        out.append({
            "key": "latency",
            "target": "p99 <= max_batch_delay_ms + %g ms (%g ms) at half the peak"
                      % (LATENCY_SLACK_MS, limit),
            "case": "%s-stream, %d shard%s, %.0f events/s" % (
                r["compress"], r["shards"], "s" if r["shards"] > 1 else "", r["offered_per_s"]),
            "measured": "p99 %.1f ms (p50 %.1f, max %.1f)" % (r["p99_ms"], r["p50_ms"],
                                                              r["max_ms"]),
            "value": r["p99_ms"], "limit": limit, "pass": ok,
            "margin": ("%.1f ms under" % (limit - r["p99_ms"])) if ok else
                      ("%.1f ms over" % (r["p99_ms"] - limit)),
        })
    for r in results.get("shards", []):
        if r["compress"] != "zlib" or r["shards"] != max(prof["shard_counts"]):
            continue
        v = float(r["kib_per_shard"])
        ok = v < IDLE_SHARD_MAX_KIB
        out.append({
            "key": "idle_shard",
            "target": "< %g KiB per idle zlib-stream shard" % IDLE_SHARD_MAX_KIB,
            "case": "zlib-stream, %d shards" % r["shards"],
            "measured": "%.1f KiB" % v, "value": v, "limit": IDLE_SHARD_MAX_KIB, "pass": ok,
            "margin": ("%.1f KiB under" % (IDLE_SHARD_MAX_KIB - v)) if ok else
                      ("%.1f KiB over" % (v - IDLE_SHARD_MAX_KIB)),
        })
    results["summary"] = out


def fmt(v, spec="%.0f"):
    return "" if v is None else spec % v


def markdown(results, prof, repeat, command):
    L = [headline(command, repeat, results["meta"]["when"])]
    if results.get("delivery"):
        L += ["", "**Through delivery, unpaced** (fake replay -> shardhook -> C sink, realistic "
              "mix, every event to one webhook):", "",
              "| compress | shards | batch | events | events/s | MB/s decompressed | "
              "CPU s per M events | events per CPU-s | RSS idle KiB | peak RSS KiB |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in results["delivery"]:
            L.append("| %s-stream | %d | %d | %d | %s | %s | %s | %s | %s | %s |" % (
                r["compress"], r["shards"], r["batch"], r["events"], fmt(r["events_per_s"]),
                fmt(r["mb_per_s"], "%.1f"), fmt(r["cpu_s_per_million"], "%.2f"),
                fmt(r["events_per_cpu_s"]), fmt(r["rss_idle_kib"]), fmt(r["peak_rss_kib"])))
    if results.get("latency"):
        L += ["", "**Latency, paced** (fake's send -> sink's receipt, every event after the "
              "prelude, batch 100, max_batch_delay_ms %d):" % MAX_BATCH_DELAY_MS, "",
              "| compress | shards | % of peak | events/s offered | events | p50 ms | p99 ms | "
              "max ms | CPU s per M events | peak RSS KiB | fake / sink CPU, % of a core |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in results["latency"]:
            L.append("| %s-stream | %d | %.0f%% | %s | %d | %s | %s | %s | %s | %s | %.0f / %.0f |"
                     % (r["compress"], r["shards"], r["fraction_of_peak"] * 100,
                        fmt(r["offered_per_s"]), r["events"], fmt(r["p50_ms"], "%.1f"),
                        fmt(r["p99_ms"], "%.1f"), fmt(r["max_ms"], "%.1f"),
                        fmt(r["cpu_s_per_million"], "%.2f"), fmt(r["peak_rss_kib"]),
                        r["fake_cpu_s"] / r["seconds"] * 100,
                        r["sink_cpu_s"] / r["seconds"] * 100))
    if results.get("roof"):
        roof = results["roof"]
        L += ["", "**The roof** (inflate_roof on a dump of the same replay, %d events, one "
              "thread):" % roof["zlib"]["events"], "",
              "| compress | inflate only ns/event | MB/s | signed roof ns/event | hot path "
              "ns/event | shards | shardhook ns/event (delivery) | x signed roof | "
              "x inflate-only roof | x hot path |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in results.get("delivery", []):
            if r["batch"] != 100 or "x_roof" not in r:
                continue
            f = roof[r["compress"]]
            L.append("| %s-stream | %.0f | %.0f | %.0f | %.0f | %d | %.0f | %.2fx | %.2fx | %.2fx |"
                     % (r["compress"], f["inflate_ns_per_event"], f["inflate_mb_per_s"],
                        f["signed_ns_per_event"], f["hot_ns_per_event"], r["shards"],
                        r["ns_per_event"], r["x_signed"], r["x_roof"], r["x_hot_path"]))
    if results.get("peer_comparison"):
        L += ["", "**Against the peers** (the same replay; shardhook through delivery to the "
              "sink, the peers only count dispatches):", "",
              "| peer | compress (mix) | shards | rate | peer events per CPU-s | shardhook "
              "events per CPU-s | ratio | peer peak RSS per shard KiB | shardhook peak RSS per "
              "shard KiB | ratio | RSS idle KiB peer / shardhook |",
              "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
        for c in results["peer_comparison"]:
            L.append("| %s | %s-stream (%s) | %d | %s | %.0f | %.0f | %.1fx | %.0f | %.0f | "
                     "%.1fx | %d / %d |" % (
                         c["peer"], c["compress"], c["mix"], c["shards"],
                         "unpaced" if c["mode"] == "unpaced" else "%d/s" % c["rate_total"],
                         c["peer_events_per_cpu_s"], c["shardhook_events_per_cpu_s"],
                         c["ratio"], c["peer_rss_per_shard_kib"],
                         c["shardhook_rss_per_shard_kib"], c["rss_ratio"],
                         c["peer_rss_idle_kib"], c["shardhook_rss_idle_kib"]))
    if results.get("shards"):
        L += ["", "**Idle shards** (bench/shards.py):", "",
              "| compress | shards | ready in s | RSS KiB | KiB per idle shard |",
              "|---|---:|---:|---:|---:|"]
        for r in results["shards"]:
            L.append("| %s-stream | %d | %.2f | %d | %s |" % (
                r["compress"], r["shards"], r["startup_s"], r["rss_kib"], r["kib_per_shard"]))
    if results.get("summary"):
        L += ["", "**Targets** (medians):", "", "| target | case | measured | result |",
              "|---|---|---|---|"]
        for s in results["summary"]:
            L.append("| %s | %s | %s | %s (%s) |" % (s["target"], s["case"], s["measured"],
                                                     "PASS" if s["pass"] else "MISS",
                                                     s["margin"]))
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, help="runs per figure, medians reported (default 3)")
    ap.add_argument("--quick", action="store_true", help="one run, fewer events")
    ap.add_argument("--smoke", action="store_true", help="the smallest run: does it all work")
    ap.add_argument("--parts", default="delivery,roof,peers,shards")
    ap.add_argument("--json", help="write every figure and every run here")
    ap.add_argument("--markdown", help="write the tables here too")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = ap.parse_args()
    name = "smoke" if args.smoke else "quick" if args.quick else "full"
    prof = PROFILES[name]
    repeat = args.repeat or prof["repeat"]
    parts = args.parts.split(",")
    for b in ("shardhook", "fake-discord", "bench/sink", "bench/inflate_roof"):
        if not os.access(os.path.join(BIN, b), os.X_OK):
            sys.exit("bench/run.py: %s/%s is missing: run `make bench-bin`" % (BUILD, b))
    raise_fd_limit()
    command = "python3 bench/run.py" + ("" if name == "full" else " --" + name) + (
        " --repeat %d" % args.repeat if args.repeat else "")
    results = {"meta": {"profile": name, "repeat": repeat, "command": command,
                        "when": time.strftime("%Y-%m-%d %H:%M"),
                        "cpus": os.cpu_count(), "settings": prof}}
    steps = (("delivery", part_delivery), ("roof", part_roof), ("peers", part_peers),
             ("shards", part_shards))
    run_parts("bench/run.py", steps, parts, prof, repeat, results, args.keep,
              after=lambda: summarize(results, prof))
    write_results("bench/run.py", results, markdown(results, prof, repeat, command),
                  args.markdown, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
