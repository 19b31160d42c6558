"""`make bench-smoke` in the suite: bench/run.py in its smallest mode runs every part of the
benchmark (delivery through the C sink with the replay, paced latency, the inflate roof, the Node
peers, idle shards) and writes every figure `make bench` reports. Only that the harness works is
checked -- that each figure is there and is a number -- never a value: timing stays out of the
test suite. Needs build/bench/* (`make tests-bin`); the peers' part also needs
bench/peers/node_modules (`make bench-peers`, npm), and without it the test checks every other
figure and then says "skipped", since its claim (every figure) was not checked."""
import json
import math
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

RUN = harness.ROOT / "bench" / "run.py"


def number(row, key):
    v = row.get(key)
    assert isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v), \
        "%s missing or not a number in %s" % (key, json.dumps(row)[:400])
    return v


@harness.timeout(400)
def test_bench_smoke_produces_every_figure(tmp):
    peers = (harness.ROOT / "bench" / "peers" / "node_modules").is_dir()
    parts = "delivery,roof,peers,shards" if peers else "delivery,roof,shards"
    out = tmp / "bench.json"
    env = dict(os.environ, BUILD=str(harness.build_dir()))
    r = subprocess.run([sys.executable, str(RUN), "--smoke", "--parts", parts, "--json", str(out)],
                       env=env,
                       cwd=str(harness.ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=harness.scale(380))
    assert r.returncode == 0, "bench/run.py --smoke exited %d:\n%s" % (
        r.returncode, harness.tail(r.stderr.decode(errors="replace"), 30))
    res = json.loads(out.read_text())
    settings = res["meta"]["settings"]

    # through delivery, unpaced: both compressions, every shard count and batch size
    for compress in ("zlib", "zstd"):
        for shards in settings["shards"]:
            for batch in settings["batches"]:
                rows = [d for d in res["delivery"] if (d["compress"], d["shards"], d["batch"])
                        == (compress, shards, batch)]
                assert len(rows) == 1, (compress, shards, batch)
                for key in ("events_per_s", "mb_per_s", "cpu_s_per_million", "peak_rss_kib",
                            "rss_idle_kib"):
                    assert number(rows[0], key) > 0, key
            # paced at 50% and 90% of the peak: latency from the fake's send to the sink
            for frac in (0.5, 0.9):
                rows = [d for d in res["latency"] if (d["compress"], d["shards"],
                                                      d["fraction_of_peak"]) == (compress, shards,
                                                                                 frac)]
                assert len(rows) == 1, (compress, shards, frac)
                lat = rows[0]
                assert number(lat, "samples") == lat["events"]
                assert 0 < number(lat, "p50_ms") <= number(lat, "p99_ms") <= number(lat, "max_ms")
        # the roof, and shardhook's CPU per event as a multiple of it
        assert number(res["roof"][compress], "inflate_ns_per_event") > 0
        assert number(res["roof"][compress], "hot_ns_per_event") > 0
        assert number(res["roof"][compress], "signed_ns_per_event") > 0
        for d in res["delivery"]:
            if d["compress"] == compress and d["batch"] == 100:
                assert number(d, "x_roof") > 0
                assert number(d, "x_signed") > 0

    # the peers, unpaced and at a steady rate, each against shardhook on the same mix and rate
    if peers:
        seen = set()
        for c in res["peer_comparison"]:
            for key in ("peer_events_per_cpu_s", "shardhook_events_per_cpu_s", "ratio",
                        "peer_rss_per_shard_kib", "shardhook_rss_per_shard_kib", "rss_ratio"):
                assert number(c, key) > 0, key
            seen.add((c["compress"], c["shards"], c["mode"]))
        want = {(compress, shards, mode) for compress in ("zlib", "zstd")
                for shards in settings["peer_shards"] for mode in ("unpaced", "steady")}
        assert seen == want, sorted(want - seen)

    # RSS per idle shard, both compressions, every count beyond 1
    for compress in ("zlib", "zstd"):
        for n in settings["shard_counts"]:
            rows = [s for s in res["shards"] if (s["compress"], s["shards"]) == (compress, n)]
            assert len(rows) == 1, (compress, n)
            assert number(rows[0], "rss_kib") > 0
            if n > 1:
                float(rows[0]["kib_per_shard"])

    # the summary: every target, each with a verdict
    assert {s["key"] for s in res["summary"]} == {"roof", "latency", "idle_shard"} | (
        {"peers"} if peers else set())
    for s in res["summary"]:
        assert isinstance(s["pass"], bool) and s["margin"] and s["measured"], s
        number(s, "value")

    # the Markdown tables went to stdout
    text = r.stdout.decode()
    for heading in ("Through delivery", "Latency, paced", "The roof", "Idle shards", "Targets") + (
            ("Against the peers",) if peers else ()):
        assert heading in text, heading
    if not peers:
        raise harness.Skip("bench/peers/node_modules is missing (make bench-peers): every figure "
                           "but the Node peers' checked")


CACHE = harness.ROOT / "bench" / "cache.py"


@harness.timeout(300)
def test_cache_bench_smoke_produces_every_figure(tmp):
    """bench/cache.py --smoke: the cache's memory per kind against the JSON, CPU per event with
    the cache on and off, and the read routes' latency, each a number (no value asserted)."""
    out = tmp / "cache.json"
    env = dict(os.environ, BUILD=str(harness.build_dir()))
    r = subprocess.run([sys.executable, str(CACHE), "--smoke", "--json", str(out)], env=env,
                       cwd=str(harness.ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=harness.scale(280))
    assert r.returncode == 0, "bench/cache.py --smoke exited %d:\n%s" % (
        r.returncode, harness.tail(r.stderr.decode(errors="replace"), 30))
    res = json.loads(out.read_text())
    mem = res["memory"]
    assert [row["kind"] for row in mem["rows"]] == ["guilds", "channels", "roles", "emojis",
                                                    "members"]
    for row in mem["rows"]:
        assert number(row, "count") > 0
        for key in ("held_per", "json_per", "ratio"):
            assert number(row, key) > 0, (row["kind"], key)
    assert number(mem, "rss_growth_bytes") > 0
    cpu = res["cpu"]
    for key in ("off_cpu_s_per_million", "on_cpu_s_per_million", "ratio"):
        assert number(cpu, key) > 0, key
    assert number(cpu, "on_cache_members") > 0  # the "on" runs did cache what the replay sent
    rows = res["reads"]["rows"]
    assert {(x["route"], x["conns"], x["traffic"]) for x in rows} == {
        (route, conns, traffic) for route in ("member", "permissions")
        for conns, traffic in ((1, False), (4, False), (4, True))}
    for x in rows:
        assert 0 < number(x, "p50_us") <= number(x, "p99_us") <= number(x, "max_us")
        assert number(x, "per_s") > 0
        if x["traffic"]:
            assert number(x, "events_per_s") > 0
    assert len(res["summary"]) == 5  # four kinds' bytes and the CPU ratio, each PASS or MISS
    text = r.stdout.decode()
    for heading in ("**Memory**", "**CPU per event", "**Reads under load**", "**Targets:**"):
        assert heading in text, heading
