#!/usr/bin/env python3
"""bench/cache.py: the entity cache's figures (issue: memory, speed, bounds), in `make bench`.

Three parts, all on loopback, every process stopped at the end:

  memory   bench/cachegen.py's population (1,000 guilds, 1,000,000 members, 100,000 channels,
           about 20 roles a guild; members as Discord sends them, users shared across guilds)
           piped as events into build/bench/cache_mem, which feeds a ca_cache as the delivery
           thread does and reads GET /v1/cache's figures and its own RSS. Bytes the cache
           holds per guild, channel, role, emoji and member (a member's user counted with it)
           against the bytes of the JSON Discord sent for it; the same for the RSS growth.
  cpu      bench/run.py's replay run (fake Discord in replay mode, realistic mix, zlib-stream,
           1 shard, batch 100 -> shardhook -> C sink), the same run with and without a
           `cache` block (same intents both times), alternated, --repeat times each:
           shardhook's CPU seconds per million events, the cache's lag waited out before the
           clock is read; the ratio on / off.
  reads    fake Discord (normal mode) -> shardhook with a cache; a population of its own pushed
           through /_fake/dispatch (GUILD_CREATE, GUILD_MEMBERS_CHUNK); then build/bench/
           http_load (closed loop, keep-alive) on GET /v1/guilds/{id}/members/{user_id} and on
           .../permissions?channel_id=, with 1 and 4 connections, and with 4 while the fake
           sends MESSAGE_CREATEs as fast as shardhook delivers them (bursts of --burst events,
           the next once the sink has the last): p50/p90/p99, requests/s, events/s meanwhile.

  python3 bench/cache.py [--quick | --smoke] [--repeat N] [--parts memory,cpu,reads]
      [--json FILE] [--markdown FILE] [--keep]

--quick is a tenth of the population and one run; --smoke the smallest run that produces every
figure (tests/integration/test_bench_smoke.py). A benchmark, not a test: it asserts no speed,
only that the cache took everything (no dropped events, the counts it reports) and that every
read answered 200.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from common import Proc, call, cpu_seconds, free_port, log, median, raise_fd_limit
from common import headline, run_parts, wait, write_results
import cachegen
import run as runbench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD", "build")
BIN = os.path.join(ROOT, BUILD)
TOKEN = "bench-token"

CPU_MAX = 1.20  # cache on: under 20 % more CPU per event
HELD_MAX = 1.0  # bytes held per entity at most the JSON Discord sent for it

CACHE_BLOCK = {"guilds": True, "channels": True, "roles": True, "emojis": True,
               "members": True, "voice_states": True, "presences": False,
               "max_bytes": 64 << 30}
INTENTS = ["GUILDS", "GUILD_MEMBERS", "GUILD_EXPRESSIONS", "GUILD_VOICE_STATES",
           "GUILD_MESSAGES"]

PROFILES = {
    "full": dict(guilds=1000, members=1000000, channels=100000, roles=20, cpu_events=200000,
                 read_guilds=50, read_members=100000, read_channels=5000, read_s=5.0,
                 burst=20000, repeat=3, timeout=300),
    "quick": dict(guilds=100, members=100000, channels=10000, roles=20, cpu_events=100000,
                  read_guilds=20, read_members=20000, read_channels=1000, read_s=3.0,
                  burst=20000, repeat=1, timeout=180),
    "smoke": dict(guilds=10, members=3000, channels=300, roles=20, cpu_events=4000,
                  read_guilds=4, read_members=2000, read_channels=100, read_s=0.5,
                  burst=1000, repeat=1, timeout=60),
}
KINDS = ("guilds", "channels", "roles", "emojis", "members")


def cache_config(tmp, extra=None):
    cfg = {"token": TOKEN, "intents": INTENTS, "cache": dict(CACHE_BLOCK),
           "webhooks": [{"url": "http://127.0.0.1:9/hook", "events": ["*"],
                         "secret": runbench.SECRET}],
           "state_dir": os.path.join(tmp, "state"), "log_level": "warn"}
    cfg.update(extra or {})
    return cfg


def kind_stats(stats, kind):
    k = stats.get("kinds", {}).get(kind) or {}
    return k.get("count", 0), k.get("bytes", 0)


# -- memory ---------------------------------------------------------------------------------------
def memory_once(prof, tmp, i):
    path = os.path.join(tmp, "cache-mem.json")
    with open(path, "w") as f:
        json.dump(cache_config(tmp), f)
    gen = {}
    log_path = os.path.join(tmp, "cache_mem-%d.log" % i)
    with open(log_path, "wb") as err:
        child = subprocess.Popen([os.path.join(BIN, "bench", "cache_mem"), "--config", path],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
    t0 = time.monotonic()
    try:
        w = child.stdin
        for t, d in cachegen.population(prof["guilds"], prof["members"], prof["channels"],
                                        prof["roles"], seed=1, stats=gen):
            w.write(("%s\t%s\n" % (t, d)).encode())
        w.close()
        out = child.stdout.read()
        rc = child.wait(prof["timeout"] * 4)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if rc != 0:
        with open(log_path, errors="replace") as f:
            raise RuntimeError("cache_mem exited %s: %s" % (rc, f.read()[-2000:]))
    res = json.loads(out)
    res["gen_seconds"] = time.monotonic() - t0
    res["gen"] = {k: v for k, v in gen.items() if isinstance(v, dict)}
    return res


def part_memory(prof, repeat, tmp, results):
    r = memory_once(prof, tmp, 0)  # one run: the same population gives the same bytes
    st, gen = r["stats"], r["gen"]
    if st.get("dropped_events"):
        raise RuntimeError("the cache dropped %s events" % st["dropped_events"])
    rows = []
    for kind in KINDS:
        count, held = kind_stats(st, kind)
        g = gen[kind]
        if kind == "members":  # a member's user is kept apart (users kind): count it here
            held += kind_stats(st, "users")[1]
        if count != g["count"]:
            raise RuntimeError("the cache holds %d %s, the population has %d"
                               % (count, kind, g["count"]))
        rows.append({"kind": kind, "count": count, "held_bytes": held,
                     "json_bytes": g["json_bytes"],
                     "held_per": held / count if count else None,
                     "json_per": g["json_bytes"] / g["count"] if g["count"] else None,
                     "ratio": held / g["json_bytes"] if g["json_bytes"] else None})
    users, user_bytes = kind_stats(st, "users")
    total_json = sum(gen[k]["json_bytes"] for k in KINDS)
    rss = (r["rss_kib"] - r["rss_base_kib"]) * 1024
    results["memory"] = {
        "rows": rows, "users": users, "user_bytes": user_bytes,
        "distinct_users": gen["users"]["count"], "cache_bytes": st.get("bytes"),
        "json_bytes": total_json, "rss_growth_bytes": rss, "rss_ratio": rss / total_json,
        "events": r["events"], "bytes_in": r["bytes_in"],
        "apply_wall_s": r["apply_wall_s"], "apply_cpu_s": r["apply_cpu_s"],
        "apply_mb_per_cpu_s": r["bytes_in"] / 1e6 / r["apply_cpu_s"] if r["apply_cpu_s"] else None,
        "stats": st, "population": dict(guilds=prof["guilds"], members=prof["members"],
                                        channels=prof["channels"], roles=prof["roles"]),
    }
    for row in rows:
        log("  memory %-8s %8d held %7.1f B each, JSON %7.1f B: %.2fx"
            % (row["kind"], row["count"], row["held_per"], row["json_per"], row["ratio"]))
    log("  memory RSS growth %.0f MB for %.0f MB of JSON: %.2fx"
        % (rss / 1e6, total_json / 1e6, rss / total_json))


# -- cpu: the replay with and without the cache ---------------------------------------------------
def settle_cache(cfg, pid):
    """Wait until the cache took up every chunk (its queue empty), then until shardhook is idle
    (the last chunk applied). Both modes wait the same way, so both pay the same idle time."""
    if "cache" in cfg:
        url = "http://%s/v1/cache" % cfg["http"]["listen"]

        def taken():
            st = call(url)
            return st if not st.get("queued_events") else None
        wait(taken, 120, "the cache's queue to empty", interval=0.01)
    deadline = time.monotonic() + 60
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = cpu_seconds(pid)
        if now - last < 0.002:
            break
        last = now
    if "cache" in cfg:
        settle_cache.last = call("http://%s/v1/cache" % cfg["http"]["listen"])


def part_cpu(prof, repeat, tmp, results):
    runs = {"off": [], "on": []}
    for i in range(repeat):
        for mode in ("off", "on"):
            d = tempfile.mkdtemp(dir=tmp, prefix="cpu-%s-%d-" % (mode, i))
            extra = {"intents": INTENTS}
            if mode == "on":
                extra["cache"] = dict(CACHE_BLOCK)
            settle_cache.last = None
            r = runbench.delivery_run("zlib", 1, 100, prof["cpu_events"], 0, "realistic",
                                      prof["timeout"], d, extra_cfg=extra, settle=settle_cache)
            if mode == "on":
                st = settle_cache.last or {}
                r["cache_dropped"] = st.get("dropped_events")
                r["cache_members"] = kind_stats(st, "members")[0]
                r["cache_bytes"] = st.get("bytes")
                if st.get("dropped_events"):
                    raise RuntimeError("the cache dropped %s events" % st["dropped_events"])
            runs[mode].append(r)
            log("  cpu cache %-3s: %.2f CPU s per M events, %.0f events/s, peak RSS %d KiB"
                % (mode, r["cpu_s_per_million"], r["events_per_s"], r["peak_rss_kib"]))
    off = median(r["cpu_s_per_million"] for r in runs["off"])
    on = median(r["cpu_s_per_million"] for r in runs["on"])
    results["cpu"] = {
        "events": prof["cpu_events"], "off_cpu_s_per_million": off,
        "on_cpu_s_per_million": on, "ratio": on / off,
        "off_peak_rss_kib": median(r["peak_rss_kib"] for r in runs["off"]),
        "on_peak_rss_kib": median(r["peak_rss_kib"] for r in runs["on"]),
        "on_cache_members": runs["on"][0].get("cache_members"),
        "on_cache_bytes": runs["on"][0].get("cache_bytes"), "runs": runs,
    }
    log("  cpu: %.2f vs %.2f CPU s per M events: %.2fx" % (on, off, on / off))


# -- reads under load ------------------------------------------------------------------------------
def start_stack(tmp, prof):
    """fake Discord (1 shard) -> shardhook with a cache -> C sink; returns (fake_url, api, procs)."""
    procs = []
    sink = Proc([os.path.join(BIN, "bench", "sink"), "--secret", runbench.SECRET, "--port", "0"],
                os.path.join(tmp, "sink.log"))
    procs.append(sink)

    def sink_port():
        import re
        m = re.search(r"sink listening port=(\d+)", sink.tail(10000))
        return m and int(m.group(1))
    sink_url = "http://127.0.0.1:%d" % wait(sink_port, 10, "the sink")
    fport = free_port()
    fake = Proc([os.path.join(BIN, "fake-discord"), "--port", str(fport), "--token", TOKEN,
                 "--shards", "1"], os.path.join(tmp, "fake.log"))
    procs.append(fake)
    fake_url = "http://127.0.0.1:%d" % fport

    def fake_up():
        try:
            return call(fake_url + "/_fake/log") is not None
        except OSError:
            return False
    wait(fake_up, 20, "fake-discord")
    api = "127.0.0.1:%d" % free_port()
    cfg = cache_config(tmp, {"api_base": fake_url + "/api/v10", "shards": "auto",
                             "webhooks": [{"url": sink_url + "/hook", "events": ["*"],
                                           "secret": runbench.SECRET}],
                             "http": {"listen": api}, "testing": {"identify_interval_ms": 0}})
    path = os.path.join(tmp, "shardhook.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    env = dict(os.environ)
    env.pop("DISCORD_TOKEN", None)
    sh = Proc([os.path.join(BIN, "shardhook"), "-c", path], os.path.join(tmp, "shardhook.log"),
              env)
    procs.append(sh)

    def ready():
        if not sh.alive():
            raise RuntimeError("shardhook exited: " + sh.tail())
        try:
            return call("http://%s/readyz" % api, timeout=2) is not None
        except OSError:
            return False
    wait(ready, 60, "shardhook ready")
    return fake_url, "http://" + api, sink_url, sh, procs


def populate(prof, fake_url, api):
    gen = {}
    members, channels = {}, {}
    for t, d in cachegen.population(prof["read_guilds"], prof["read_members"],
                                    prof["read_channels"], prof["roles"], seed=2, stats=gen,
                                    in_create=100, chunk=1000):
        if t == "READY":
            continue  # the fake sends its own
        obj = json.loads(d)
        if t == "GUILD_CREATE":
            gid = obj["id"]
            channels[gid] = [c["id"] for c in obj["channels"] if c["type"] in (0, 5)]
            members[gid] = [m["user"]["id"] for m in obj["members"]]
        else:
            members[obj["guild_id"]] += [m["user"]["id"] for m in obj["members"]]
        call(fake_url + "/_fake/dispatch", {"shard": 0, "t": t, "d": obj}, timeout=60)
    want = gen["members"]["count"]

    def applied():
        st = call(api + "/v1/cache")
        return st if kind_stats(st, "members")[0] >= want and not st.get("queued_events") \
            else None
    st = wait(applied, 120, "%d members in the cache" % want, interval=0.05)
    return members, channels, st


def load(api, paths, conns, seconds, tmp, name):
    pf = os.path.join(tmp, "%s.paths" % name)
    with open(pf, "w") as f:
        f.write("\n".join(paths) + "\n")
    port = api.rsplit(":", 1)[1]
    out = subprocess.run([os.path.join(BIN, "bench", "http_load"), "--port", port, "--paths",
                          pf, "--conns", str(conns), "--seconds", str(seconds)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=seconds + 60,
                         check=True)
    r = json.loads(out.stdout)
    if r["non_200"] or r["errors"] or not r["requests"]:
        raise RuntimeError("%s: %d answers not 200, %d errors of %d requests"
                           % (name, r["non_200"], r["errors"], r["requests"]))
    return r


class Traffic:
    """MESSAGE_CREATEs from the fake as fast as shardhook delivers them, on a thread: a burst,
    then the next once the sink holds all but a tenth of what was sent."""

    def __init__(self, fake_url, sink_url, burst):
        import threading
        self.fake_url, self.sink_url, self.burst = fake_url, sink_url, burst
        self.halt = threading.Event()
        self.base = call(sink_url + "/stats")["events"]
        self.sent = 0
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        while not self.halt.is_set():
            call(self.fake_url + "/_fake/burst", {"shard": 0, "count": self.burst})
            self.sent += self.burst
            while not self.halt.is_set():
                got = call(self.sink_url + "/stats")["events"] - self.base
                if got >= self.sent - self.burst // 10:
                    break
                time.sleep(0.005)

    def stop(self):
        """Stop sending; the events the sink received meanwhile."""
        got = call(self.sink_url + "/stats")["events"] - self.base
        self.halt.set()
        self.th.join()
        return got


def part_reads(prof, repeat, tmp, results):
    import random
    procs = []
    try:
        fake_url, api, sink_url, sh, procs = start_stack(tmp, prof)
        members, channels, st = populate(prof, fake_url, api)
        r = random.Random(3)
        gids = sorted(members)
        mpaths, ppaths = [], []
        for _ in range(20000 if prof is not PROFILES["smoke"] else 2000):
            g = r.choice(gids)
            u = r.choice(members[g])
            mpaths.append("/v1/guilds/%s/members/%s" % (g, u))
            ppaths.append("/v1/guilds/%s/members/%s/permissions?channel_id=%s"
                          % (g, u, r.choice(channels[g])))
        rows = []
        for name, paths in (("member", mpaths), ("permissions", ppaths)):
            for conns, traffic in ((1, False), (4, False), (4, True)):
                runs = []
                for i in range(repeat):
                    cpu0 = cpu_seconds(sh.pid)
                    feeder = Traffic(fake_url, sink_url, prof["burst"]) if traffic else None
                    try:
                        res = load(api, paths, conns, prof["read_s"], tmp, "%s-%d" % (name, i))
                    finally:
                        if feeder:
                            res_events = feeder.stop()
                    res["shardhook_cpu_s"] = cpu_seconds(sh.pid) - cpu0
                    res["events_per_s"] = res_events / res["seconds"] if traffic else 0
                    runs.append(res)
                row = {k: median(x[k] for x in runs) for k in
                       ("per_s", "p50_us", "p90_us", "p99_us", "max_us", "requests",
                        "events_per_s")}
                row.update(route=name, conns=conns, traffic=traffic, runs=runs)
                rows.append(row)
                log("  reads %-11s %d conn%s%s: %6.0f req/s, p50 %.0f us, p99 %.0f us"
                    % (name, conns, "s" if conns > 1 else " ",
                       ", %.0f events/s meanwhile" % row["events_per_s"] if traffic else "",
                       row["per_s"], row["p50_us"], row["p99_us"]))
        results["reads"] = {"rows": rows, "members": kind_stats(st, "members")[0],
                            "guilds": len(gids)}
    finally:
        for p in reversed(procs):
            p.stop()


# -- report ---------------------------------------------------------------------------------------
def summarize(results):
    out = []
    m = results.get("memory")
    if m:
        for row in m["rows"]:
            if row["kind"] == "emojis":
                continue
            ok = row["ratio"] <= HELD_MAX
            out.append({"target": "bytes held per %s <= the JSON Discord sent"
                        % row["kind"][:-1], "measured": "%.0f B vs %.0f B: %.2fx of the JSON "
                        "(half would be 0.50x)" % (row["held_per"], row["json_per"], row["ratio"]),
                        "pass": ok})
    c = results.get("cpu")
    if c:
        out.append({"target": "CPU per event with the cache < %.0f%% more" % ((CPU_MAX - 1) * 100),
                    "measured": "%.2f vs %.2f CPU s per M events: %+.0f%%"
                    % (c["on_cpu_s_per_million"], c["off_cpu_s_per_million"],
                       (c["ratio"] - 1) * 100), "pass": c["ratio"] < CPU_MAX})
    results["summary"] = out


def markdown(results, command, repeat):
    L = [headline(command, repeat, results["meta"]["when"])]
    m = results.get("memory")
    if m:
        p = m["population"]
        L += ["", "**Memory** (%d guilds, %d members of %d distinct users, %d channels, about "
              "%d roles a guild; build/bench/cache_mem, the cache's own accounting):"
              % (p["guilds"], p["members"], m["distinct_users"], p["channels"], p["roles"]), "",
              "| kind | count | bytes held each | JSON bytes each | held / JSON |",
              "|---|---:|---:|---:|---:|"]
        for r in m["rows"]:
            L.append("| %s%s | %d | %.0f | %.0f | %.2fx |" % (
                r["kind"], " (with its user)" if r["kind"] == "members" else "", r["count"],
                r["held_per"], r["json_per"], r["ratio"]))
        L += ["", "Resident memory grew by %.0f MB for %.0f MB of entity JSON (%.2fx); the "
              "cache's accounting says %.0f MB. Applying the %d events (%.0f MB) took %.1f CPU-s "
              "(%.0f MB/s)." % (m["rss_growth_bytes"] / 1e6, m["json_bytes"] / 1e6,
                                m["rss_ratio"], (m["cache_bytes"] or 0) / 1e6, m["events"],
                                m["bytes_in"] / 1e6, m["apply_cpu_s"],
                                m["apply_mb_per_cpu_s"] or 0)]
    c = results.get("cpu")
    if c:
        L += ["", "**CPU per event, cache on against off** (replay, realistic mix, zlib-stream, "
              "1 shard, batch 100, %d events; medians):" % c["events"], "",
              "| cache | CPU s per M events | peak RSS KiB |", "|---|---:|---:|",
              "| off | %.2f | %d |" % (c["off_cpu_s_per_million"], c["off_peak_rss_kib"]),
              "| on | %.2f | %d |" % (c["on_cpu_s_per_million"], c["on_peak_rss_kib"]),
              "", "Ratio on / off: %.2fx." % c["ratio"]]
    rd = results.get("reads")
    if rd:
        L += ["", "**Reads under load** (%d guilds, %d members; build/bench/http_load, "
              "keep-alive, closed loop; medians):" % (rd["guilds"], rd["members"]), "",
              "| route | connections | events/s delivered meanwhile | requests/s | p50 us | "
              "p90 us | p99 us | max us |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rd["rows"]:
            L.append("| %s | %d | %d | %.0f | %.0f | %.0f | %.0f | %.0f |" % (
                "GET /v1/guilds/{id}/members/{user_id}" if r["route"] == "member" else
                "GET .../members/{user_id}/permissions?channel_id=", r["conns"],
                r["events_per_s"], r["per_s"], r["p50_us"], r["p90_us"], r["p99_us"],
                r["max_us"]))
    if results.get("summary"):
        L += ["", "**Targets:**", "", "| target | measured | result |", "|---|---|---|"]
        for s in results["summary"]:
            L.append("| %s | %s | %s |" % (s["target"], s["measured"],
                                            "PASS" if s["pass"] else "MISS"))
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--parts", default="memory,cpu,reads")
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    name = "smoke" if args.smoke else "quick" if args.quick else "full"
    prof = PROFILES[name]
    repeat = args.repeat or prof["repeat"]
    for b in ("shardhook", "fake-discord", "bench/sink", "bench/cache_mem", "bench/http_load"):
        if not os.access(os.path.join(BIN, b), os.X_OK):
            sys.exit("bench/cache.py: %s/%s is missing: run `make bench-bin`" % (BUILD, b))
    raise_fd_limit()
    command = "python3 bench/cache.py" + ("" if name == "full" else " --" + name) + (
        " --repeat %d" % args.repeat if args.repeat else "")
    results = {"meta": {"profile": name, "repeat": repeat, "command": command,
                        "when": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(),
                        "settings": prof}}
    steps = (("memory", part_memory), ("cpu", part_cpu), ("reads", part_reads))
    run_parts("bench/cache.py", steps, args.parts.split(","), prof, repeat, results, args.keep,
              after=lambda: summarize(results))
    write_results("bench/cache.py", results, markdown(results, command, repeat), args.markdown,
                  args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
