"""Delivery when things fail for longer: a dead-letter folder that cannot be written, dead-letter
retention, receivers that answer Retry-After: 0 (or absurd values), one dead webhook among
healthy ones with a small spool, and checkpoint writes that keep failing (the log stays short)."""
import json
import re
import shutil
import time
from email.utils import formatdate
from pathlib import Path

from harness import Receiver, Shardhook, base_config, free_port, scale, timeout, \
    wait_for
from delivery_helpers import burst_keys, keys, make_fake, wait_sessions


def fast_retries(**extra):
    return dict({"retry_base_ms": 50, "retry_max_ms": 500}, **extra)


def dead_dir(tmp):
    return Path(tmp) / "state" / "dead-letter"


def dead_letters(tmp, webhook=None):
    """Every readable dead letter (of one webhook index, or all), oldest first."""
    out = []
    d = dead_dir(tmp)
    if not d.is_dir():
        return out
    for p in sorted(d.glob("*.json")):
        if webhook is not None and "-w%d-" % webhook not in p.name:
            continue
        try:
            out.append((p, json.loads(p.read_text())))
        except (ValueError, OSError):
            pass
    return out


def dead_keys(tmp, webhook=None):
    return {k for _, dl in dead_letters(tmp, webhook) for k in keys(dl["body"]["events"])}


def read_checkpoint(tmp, shard):
    d = Path(tmp) / "state" / "checkpoints"
    found = []
    snap = d / ("shard-%d.json" % shard)
    if snap.is_file():
        found.append(json.loads(snap.read_text()))
    journal = d / ("shard-%d.journal" % shard)
    if journal.is_file():
        for line in journal.read_text().split("\n")[:-1]:
            try:
                found.append(json.loads(line))
            except ValueError:
                pass
    return max(found, key=lambda cp: cp.get("n", 0)) if found else None


def metric(sh, name, webhook):
    _, _, text = sh.api("GET", "/metrics")
    m = re.search(r'^%s\{webhook="%d"\} (\S+)$' % (re.escape(name), webhook), text, re.M)
    return float(m.group(1)) if m else 0.0


def count_lines(sh, needle):
    return sum(needle in line for line in sh.log_text().splitlines())


# -- a refused batch is settled only once its dead letter is on disk ---------------------------
@timeout(150)
def test_refused_batch_is_kept_until_its_dead_letter_can_be_written(tmp):
    fake = make_fake(tmp)
    rx = Receiver()
    rx.respond(400)
    state = Path(tmp) / "state"
    state.mkdir(parents=True, exist_ok=True)
    # a regular file where the dead-letter folder belongs: every dead-letter write fails
    (state / "dead-letter").write_text("in the way")
    sh = Shardhook(base_config(fake, rx, tmp, webhook=fast_retries(max_batch_events=20)), tmp)
    wait_sessions(fake)
    want = burst_keys(fake.burst(200, shard=0, t="MESSAGE_CREATE"), 200)
    sh.wait_log(r'msg="cannot write a dead letter; the batch is kept', 10)
    n_requests = len(rx.requests)
    time.sleep(scale(3))
    # the refused batch still holds shard 0: not sent again, later batches wait behind it
    assert len(rx.requests) == n_requests, (len(rx.requests), n_requests)
    assert "events lost" not in sh.log_text()
    # the checkpoint did not move past the refused events
    cp = read_checkpoint(tmp, 0)
    assert cp is None or cp["seq"] < min(s for _, s in want), cp
    # logged once, then as a count
    assert count_lines(sh, "cannot write a dead letter") <= 2, count_lines(
        sh, "cannot write a dead letter")
    assert metric(sh, "shardhook_webhook_dead_letter_errors_total", 0) >= 2
    # the folder comes back: every refused event ends up in a dead letter, none lost
    (state / "dead-letter").unlink()
    wait_for(lambda: want <= dead_keys(tmp, 0), 40, what="every event in a dead letter")
    sh.wait_log(r'msg="dead letter written after failed attempts"', 5)
    for _, dl in dead_letters(tmp, 0):
        assert dl["reason"] == "refused" and dl["status"] == 400, dl
    # refused batches are never re-sent: one request per webhook-id
    ids = [r.headers["webhook-id"] for r in rx.requests]
    assert len(ids) == len(set(ids))
    # and now the checkpoint moves on
    wait_for(lambda: (read_checkpoint(tmp, 0) or {}).get("seq", 0) >= max(s for _, s in want), 10,
             what="the checkpoint past the dead-lettered events")


@timeout(150)
def test_dead_letters_stay_within_dead_letter_max_bytes(tmp):
    fake = make_fake(tmp)
    rx = Receiver()
    rx.respond(400)
    bound = 20000
    sh = Shardhook(base_config(fake, rx, tmp, webhook=fast_retries(
        max_batch_events=5, dead_letter_max_bytes=bound)), tmp)
    wait_sessions(fake)
    want = burst_keys(fake.burst(300, shard=0, t="MESSAGE_CREATE"), 300)
    wait_for(lambda: want <= {k for r in rx.requests for k in keys(r.events)}, 30,
             what="every batch sent (and refused)")
    total = len(rx.requests)
    wait_for(lambda: metric(sh, "shardhook_webhook_dead_letters_total", 0) >= total, 15,
             what="every refused batch dead-lettered")
    time.sleep(0.2)  # nothing more is written: the folder is settled
    files = dead_letters(tmp, 0)
    size = sum(p.stat().st_size for p, _ in files)
    assert size <= bound, size
    assert 0 < len(files) < total, (len(files), total)
    # the newest are kept: the last refused batch is there, the first is gone
    kept_ids = {dl["webhook_id"] for _, dl in files}
    assert rx.requests[-1].headers["webhook-id"] in kept_ids
    assert rx.requests[0].headers["webhook-id"] not in kept_ids
    removed = metric(sh, "shardhook_webhook_dead_letters_removed_total", 0)
    assert removed == total - len(files), (removed, total, len(files))
    assert 'msg="dead letters past dead_letter_max_bytes; the oldest were removed"' in sh.log_text()
    # a restart applies the bound to what is there, without removing more than needed
    sh.kill()
    sh.start()
    wait_sessions(fake)
    assert len(dead_letters(tmp, 0)) == len(files)


# -- Retry-After ---------------------------------------------------------------------------
@timeout(120)
def test_retry_after_zero_or_past_date_does_not_flood_the_receiver(tmp):
    fake = make_fake(tmp)
    rx = Receiver()
    window = [None]

    def answer(r):
        if window[0] is None:
            window[0] = time.monotonic() + 3
        if time.monotonic() < window[0]:
            ra = "0" if r.index % 2 == 0 else formatdate(time.time() - 3600, usegmt=True)
            return (503, {"Retry-After": ra}, "busy")
        return 200
    rx.respond(answer)
    sh = Shardhook(base_config(fake, rx, tmp, webhook=fast_retries()), tmp)
    wait_sessions(fake)
    want = burst_keys(fake.burst(50, shard=0, t="MESSAGE_CREATE"), 50)
    wait_for(lambda: want <= set(keys(rx.events())), 30, what="every event after the 503s")
    refused = [r for r in rx.requests if r.status == 503]
    print("503 answers in 3 s: %d" % len(refused))
    assert 3 <= len(refused) <= 30, len(refused)  # the floor allows ~16; unbounded without it
    assert count_lines(sh, "webhook answered; retrying") <= 3


def test_retry_after_is_capped_by_retry_after_max_ms(tmp):
    fake = make_fake(tmp)
    rx = Receiver()
    rx.respond([(503, {"Retry-After": "999999"}, "")])
    Shardhook(base_config(fake, rx, tmp, webhook=fast_retries(retry_after_max_ms=1000)), tmp)
    first, second = rx.wait_requests(2, scale(10))[:2]
    assert first.status == 503 and second.ok
    waited = second.time - first.answered_at
    assert 0.9 <= waited < 3.0, waited


# -- spool shares ----------------------------------------------------------------------------
def two_webhooks(fake, dead_url, rx, tmp, when_full=None):
    dead = fast_retries(max_memory_bytes=65536, max_batch_events=20)
    if when_full:
        dead["when_full"] = when_full
    cfg = base_config(fake, dead_url, tmp, spool_max_bytes=1 << 20, webhook=dead)
    cfg["webhooks"].append(dict(fast_retries(max_memory_bytes=65536, max_batch_events=20),
                                url=rx.url, events=["*"], secret=None))
    return cfg


@timeout(180)
def test_dead_webhook_with_when_full_dead_letter_does_not_stop_the_others(tmp):
    fake = make_fake(tmp, shards=2)
    port = free_port()  # nothing listens: webhook 0 is dead
    rx = Receiver()
    sh = Shardhook(two_webhooks(fake, "http://127.0.0.1:%d/" % port, rx, tmp, "dead_letter"), tmp)
    wait_sessions(fake, 2)
    want = set()
    for _ in range(3):  # about 6 MB, against a 512 KiB share of the spool per webhook
        want |= burst_keys(fake.burst(1000, t="MESSAGE_CREATE"), 1000)
    # the healthy webhook gets everything while the dead one is still dead
    wait_for(lambda: want <= set(keys(rx.events())), 60, what="every event at the healthy webhook")
    shed = [dl for _, dl in dead_letters(tmp, 0) if dl["reason"] == "spool_full"]
    assert shed and all(dl["status"] == 0 for dl in shed)
    assert metric(sh, "shardhook_webhook_spool_full_dead_letters_total", 0) >= len(shed)
    assert not dead_letters(tmp, 1)
    sh.wait_log(r'msg="spool share full \(when_full dead_letter\); oldest batches dead-lettered"', 5)
    # once webhook 0's receiver is back, every event is either delivered or in a dead letter
    rx0 = Receiver(port=port)
    wait_for(lambda: want <= set(keys(rx0.events())) | dead_keys(tmp, 0), 60,
             what="every event of webhook 0 delivered or dead-lettered")
    print("webhook 0: %d batches dead-lettered" % len(shed))


@timeout(180)
def test_dead_webhook_with_when_full_pause_loses_nothing_for_either(tmp):
    fake = make_fake(tmp, shards=2)
    port = free_port()
    rx = Receiver()
    sh = Shardhook(two_webhooks(fake, "http://127.0.0.1:%d/" % port, rx, tmp), tmp)
    wait_sessions(fake, 2)
    want = set()
    for _ in range(3):
        want |= burst_keys(fake.burst(1000, t="MESSAGE_CREATE"), 1000)
    sh.wait_log(r"delivery is behind; asking the gateway to stop reading", 30)
    rx0 = Receiver(port=port)  # the dead receiver comes back
    wait_for(lambda: want <= set(keys(rx0.events())), 90, what="every event at webhook 0")
    wait_for(lambda: want <= set(keys(rx.events())), 30, what="every event at webhook 1")
    assert not dead_letters(tmp)


# -- log floods ------------------------------------------------------------------------------
@timeout(120)
def test_failing_checkpoint_writes_are_logged_once_then_counted(tmp):
    fake = make_fake(tmp)
    rx = Receiver()
    ckpt = Path(tmp) / "state" / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    # folders where shard 0's checkpoint and journal files belong: every write fails
    (ckpt / "shard-0.json").mkdir()
    (ckpt / "shard-0.journal").mkdir()
    sh = Shardhook(base_config(fake, rx, tmp, webhook={"max_batch_events": 10}), tmp)
    wait_sessions(fake)
    sh.wait_log(r'msg="cannot write a checkpoint" shard=0', 10)
    first = time.monotonic()
    end = first + 7
    n = 0
    while time.monotonic() < end:  # acknowledgements all along: each wants a checkpoint
        n += 50
        fake.burst(50, shard=0, t="MESSAGE_CREATE")
        time.sleep(0.1)
    wait_for(lambda: len(rx.events()) >= n, 20, what="the events delivered")
    lines = [l for l in sh.log_text().splitlines() if "cannot write a checkpoint" in l]
    elapsed = time.monotonic() - first
    print("checkpoint error lines in %.1f s: %d" % (elapsed, len(lines)))
    # the first line, then at most one every 5 s (hundreds without the limit)
    assert 2 <= len(lines) <= 2 + elapsed / 5, (len(lines), elapsed)
    assert any(re.search(r"suppressed=\d+", l) for l in lines[1:]), lines
    _, _, text = sh.api("GET", "/metrics")
    m = re.search(r"^shardhook_checkpoint_errors_total (\S+)$", text, re.M)
    assert m and float(m.group(1)) > len(lines), text[:200]
    shutil.rmtree(ckpt / "shard-0.json")
    shutil.rmtree(ckpt / "shard-0.journal")
