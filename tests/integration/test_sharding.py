"""Sharding as large bots need it: identify buckets, the daily session budget, shard ranges split
across processes, readiness, and reconnect storms. Each test asserts what the fake Discord
recorded (IDENTIFY timestamps and shard fields, RESUMEs, bucket violations) and what shardhook
logged."""
import re
import signal

from harness import FakeDiscord, Receiver, Shardhook, base_config, wait_for, parse_logfmt


def ms(ts):
    """Milliseconds of the day from a log timestamp like 2026-11-23T14:00:13.748Z."""
    hms = ts.split("T")[1].rstrip("Z")
    h, m, sec = hms.split(":")
    return (int(h) * 3600 + int(m) * 60 + float(sec)) * 1000


def identifies(fake):
    return fake.received(op=2)


def shard_of(entry):
    return entry["payload"]["d"]["shard"][0]


def test_identify_buckets_start_in_order_and_on_time(tmp):
    interval = 500
    fake = FakeDiscord(tmp, shards=16, max_concurrency=4, identify_interval_ms=interval, guilds=1)
    rx = Receiver()
    Shardhook(base_config(fake, rx, tmp, testing={"identify_interval_ms": interval}), tmp)
    fake.wait(lambda f: len(identifies(f)) == 16, 15, what="16 IDENTIFYs")
    ids = identifies(fake)
    assert sorted(shard_of(i) for i in ids) == list(range(16))
    assert all(i["payload"]["d"]["shard"][1] == 16 for i in ids)
    for bucket in range(4):
        times = [i["t_ms"] for i in ids if shard_of(i) % 4 == bucket]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert len(times) == 4 and all(g >= interval for g in gaps), (bucket, gaps)
    # buckets start in order: shard k of a round identifies before shard k+4
    order = [shard_of(i) for i in sorted(ids, key=lambda i: i["t_ms"])]
    assert [s // 4 for s in order] == sorted(s // 4 for s in order), order
    # ceil(16 / 4) = 4 rounds: the last round starts 3 intervals after the first
    span = ids[-1]["t_ms"] - ids[0]["t_ms"]
    assert 3 * interval <= span <= 3 * interval + 600, span
    assert not fake.violations(), fake.violations()


def test_spent_budget_waits_for_the_reset(tmp):
    fake = FakeDiscord(tmp, shards=8, max_concurrency=8, identify_interval_ms=200,
                       session_remaining=3, session_total=1000, reset_after_ms=2500, guilds=1)
    rx = Receiver()
    sh = Shardhook(base_config(fake, rx, tmp), tmp)
    fake.wait(lambda f: len(identifies(f)) == 3, 10, what="3 IDENTIFYs")
    sh.wait_log(r"daily identify budget spent", 5)
    sh.wait_log(r"daily identify budget running low", 1)
    # the others wait: no IDENTIFY while the budget is spent (the fake would refuse it)
    wait_for(lambda: None if len(identifies(fake)) > 3 else True, 1.0, what="still 3")
    assert len(identifies(fake)) == 3
    # after reset_after, shardhook asks /gateway/bot again and the rest identify
    fake.wait(lambda f: len(identifies(f)) == 8, 15, what="8 IDENTIFYs after the reset")
    sh.wait_log(r"identify budget refreshed", 1)
    first, later = identifies(fake)[:3], identifies(fake)[3:]
    assert min(i["t_ms"] for i in later) - max(i["t_ms"] for i in first) >= 2000
    assert sorted(shard_of(i) for i in identifies(fake)) == list(range(8))
    # no op 9: nothing was refused for the budget
    assert not fake.violations(), fake.violations()


def test_two_processes_split_one_bot(tmp):
    fake = FakeDiscord(tmp, shards=4, max_concurrency=4, identify_interval_ms=200, guilds=1)
    rx = Receiver()
    a = Shardhook(base_config(fake, rx, tmp, shards={"total": 4, "first": 0, "last": 1}), tmp)
    b = Shardhook(base_config(fake, rx, tmp, shards={"total": 4, "ids": [3, 2]}), tmp)
    fake.wait(lambda f: len(identifies(f)) == 4, 10, what="4 IDENTIFYs")
    shards = sorted(tuple(i["payload"]["d"]["shard"]) for i in identifies(fake))
    assert shards == [(0, 4), (1, 4), (2, 4), (3, 4)]
    fake.burst(5)
    wait_for(lambda: len([e for e in rx.events() if e["t"] == "MESSAGE_CREATE"]) == 20, 10,
             what="5 messages from each of 4 shards")
    seen = {tuple(e["shard"]) for e in rx.events() if e["t"] == "MESSAGE_CREATE"}
    assert seen == {(0, 4), (1, 4), (2, 4), (3, 4)}
    assert "shard=2" not in a.log_text() and "shard=0 " not in b.log_text()


def test_reconnect_storm_resumes_without_identifying(tmp):
    fake = FakeDiscord(tmp, shards=64, max_concurrency=16, identify_interval_ms=200, guilds=1)
    rx = Receiver()
    sh = Shardhook(base_config(fake, rx, tmp, reconnect_base_ms=1000, reconnect_max_ms=5000), tmp)
    fake.wait(lambda f: len(identifies(f)) == 64, 20, what="64 IDENTIFYs")
    sh.wait_log(r"all shards ready", 10)
    assert not fake.violations(), fake.violations()
    before = {c["id"] for c in fake.connections()}
    for shard in range(64):
        fake.close(shard, drop=True)
    fake.wait(lambda f: len(f.received(op=6)) == 64, 20, what="64 RESUMEs")
    assert len(identifies(fake)) == 64  # not one more
    new = [c for c in fake.connections() if c["id"] not in before]
    assert len(new) == 64 and all(c["path"].rstrip("/") == "/resume" for c in new)
    opened = sorted(c["opened_ms"] for c in new)
    spread = opened[-1] - opened[0]
    # full jitter over [0, 1000 ms]: spread out, not all at once, and none waits much longer
    assert 400 <= spread <= 1500, spread
    print("reconnect spread for 64 shards: %.0f ms" % spread)
    sh.wait_log(r'msg="resumed" shard=63|msg="all shards ready"', 10)


def test_guild_create_timeout_marks_the_shard_ready(tmp):
    fake = FakeDiscord(tmp, guilds=3, unavailable_forever=1, identify_interval_ms=200)
    rx = Receiver()
    sh = Shardhook(base_config(fake, rx, tmp, guild_create_timeout_ms=600), tmp)
    sh.wait_log(r"from=identifying to=loading", 5)
    sh.wait_log(r"from=loading to=ready", 5)
    recs = [r for r in sh.log_records() if r.get("msg") == "shard status"]
    loading = [r for r in recs if r.get("to") == "loading"][0]
    ready = [r for r in recs if r.get("to") == "ready"][0]
    waited = ms(ready["ts"]) - ms(loading["ts"])
    # two guilds arrive at once, the third never: ready guild_create_timeout_ms after the last
    assert 550 <= waited <= 1500, waited
    assert "guilds still unavailable" in sh.log_text()
    gcs = [e for e in rx.events() if e["t"] == "GUILD_CREATE"]
    assert len(gcs) == 2


def test_progress_summary_while_starting(tmp):
    fake = FakeDiscord(tmp, shards=6, max_concurrency=1, identify_interval_ms=300, guilds=1)
    rx = Receiver()
    sh = Shardhook(base_config(fake, rx, tmp, testing={"identify_interval_ms": 300}), tmp)
    m = sh.wait_log(r'msg="progress" ready=(\d+)/6 .*queued=(\d+) .*next_identify_in=(\S+) eta=(\S+)', 5)
    assert int(m.group(2)) >= 3, m.group(0)
    assert m.group(3).endswith("s") and m.group(4).endswith("s"), m.group(0)
    sh.wait_log(r'msg="all shards ready" shards=6', 10)


def test_sigterm_during_a_budget_reread_stops_promptly(tmp):
    """The budget is spent; at its reset shardhook asks /gateway/bot again on a thread of its own,
    and that request never gets an answer. SIGTERM must still end the process promptly with 0:
    the re-read gives up and its thread is joined before the gateway is freed (under ASan: no use
    of freed memory), instead of running on after the gateway is gone."""
    fake = FakeDiscord(tmp, shards=2, max_concurrency=2, identify_interval_ms=200,
                       session_remaining=0, session_total=1000, reset_after_ms=1000, guilds=1)
    rx = Receiver()
    sh = Shardhook(base_config(fake, rx, tmp), tmp)
    sh.wait_log(r"daily identify budget spent", 5)
    fake.rest_hold(1000)  # every later /gateway/bot call is read and never answered
    fake.wait(lambda f: any(r["status"] == 0 for r in f.rest()), 10, what="the re-read held")
    sh.signal(signal.SIGTERM)
    # a re-read left to libcurl's 15 s timeout (4 attempts) would hold the stop for a minute
    assert sh.wait_exit(5) == 0
    log = sh.log_text()
    assert "identify budget refreshed" not in log
    assert 'msg="stopped" exit_code=0' in log
    assert not identifies(fake)
