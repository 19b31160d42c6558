"""Acting from the response (docs/delivery.md): a receiver's 2xx answer carrying {"actions": [...]}
reaches the fake Discord as the same gateway payloads the control API sends, a members action's
answer comes back to that webhook as a SHARDHOOK_MEMBERS event, actions run once across a
retried batch, a bad entry is counted and logged without touching the batch, and nothing runs
unless the webhook's config says "actions": true."""
import json
import re
import time
from pathlib import Path

from harness import FakeDiscord, Receiver, Shardhook, base_config, scale, timeout, wait_for

SNOW_T0 = 300000000000
PRESENCE = {"status": "idle", "activities": [{"name": "from a webhook", "type": 3}],
            "since": None, "afk": False}


def guild_id(shard, total, index=0):
    """The fake's guild snowflakes (tests/fake/events.c fk_guild_id): (id >> 22) % total == shard."""
    ts = SNOW_T0 - SNOW_T0 % total + index * total + shard
    return str((ts << 22) | (index & 0xfff))


def start(tmp, answer, n=2, actions=True):
    """The fake with n shards, a receiver answering batches that hold a MESSAGE_CREATE "act"
    with answer (a list: one per attempt, then 200), and shardhook."""
    fake = FakeDiscord(tmp, identify_interval_ms=200, shards=n)
    rx = Receiver()
    script = list(answer)

    def respond(request):
        if any(e.get("t") == "MESSAGE_CREATE" and e["d"].get("content") == "act"
               for e in request.events):
            return script.pop(0) if script else 200
        return 200
    rx.respond(respond)
    webhook = {"actions": True} if actions else {}
    cfg = base_config(fake, rx, tmp, webhook=dict(webhook, retry_base_ms=50, retry_max_ms=200),
                      intents=["GUILDS", "GUILD_MESSAGES", "GUILD_MEMBERS", "GUILD_PRESENCES"])
    sh = Shardhook(cfg, tmp)
    sh.wait_ready(timeout=20)
    return fake, rx, sh


def sent(fake, op, shard=None):
    conns = {c["id"]: c["shard"] for c in fake.connections()}
    return [e["payload"] for e in fake.received(op=op)
            if shard is None or conns.get(e["conn"]) == shard]


def act_requests(rx):
    return [r for r in rx.requests
            if any(e.get("t") == "MESSAGE_CREATE" and e["d"].get("content") == "act"
                   for e in r.events)]


def actions_metric(sh, type_, result):
    _, _, text = sh.api("GET", "/metrics")
    m = re.search(r'^shardhook_webhook_actions_total\{webhook="0",type="%s",result="%s"\} (\S+)$'
                  % (type_, result), text, re.M)
    return float(m.group(1)) if m else 0.0


def answer(actions, status=200):
    return (status, {"Content-Type": "application/json"}, {"actions": actions})


@timeout(90)
def test_actions_reach_discord_as_the_right_ops(tmp):
    g = guild_id(1, 2)
    channel = str(int(g) + 2 * 4096)
    actions = [
        {"type": "presence", "body": PRESENCE},
        {"type": "voice_state", "guild_id": g, "body": {"channel_id": channel, "self_mute": True}},
        {"type": "members", "guild_id": g, "nonce": "ask-1", "body": {"query": "", "limit": 0}},
        {"type": "send", "shard": 0, "body": {"op": 31, "d": {"guild_ids": [guild_id(0, 2)]}}},
    ]
    fake, rx, sh = start(tmp, [answer(actions)])
    fake.members(chunks=2, count=3)
    fake.dispatch(0, "MESSAGE_CREATE", {"content": "act"})
    p3 = wait_for(lambda: sent(fake, 3), 5 * scale(1), what="op 3")
    assert p3 == [{"op": 3, "d": PRESENCE}, {"op": 3, "d": PRESENCE}] or \
        all(p == {"op": 3, "d": PRESENCE} for p in p3), p3
    wait_for(lambda: len(sent(fake, 3)) == 2, 5, what="op 3 on both shards")
    assert sent(fake, 3, shard=0) == [{"op": 3, "d": PRESENCE}]
    assert sent(fake, 3, shard=1) == [{"op": 3, "d": PRESENCE}]
    assert wait_for(lambda: sent(fake, 4, shard=1), 5, what="op 4") == [
        {"op": 4, "d": {"guild_id": g, "channel_id": channel, "self_mute": True,
                        "self_deaf": False}}]
    op8 = wait_for(lambda: sent(fake, 8, shard=1), 5, what="op 8")
    assert len(op8) == 1 and op8[0]["d"]["guild_id"] == g and op8[0]["d"]["query"] == "" \
        and op8[0]["d"]["limit"] == 0, op8
    assert wait_for(lambda: sent(fake, 31, shard=0), 5, what="op 31") == [
        {"op": 31, "d": {"guild_ids": [guild_id(0, 2)]}}]
    assert sent(fake, 4, shard=0) == [] and sent(fake, 8, shard=0) == []
    # the members answer comes back to the webhook, merged as the API merges it
    ev = wait_for(lambda: [e for e in rx.events() if e["t"] == "SHARDHOOK_MEMBERS"], 10,
                  what="SHARDHOOK_MEMBERS at the receiver")
    assert len(ev) == 1, ev
    e = ev[0]
    assert e["shard"] == [1, 2] and e["s"] is None and e["op"] == 0, e
    d = e["d"]
    assert d["guild_id"] == g and d["nonce"] == "ask-1" and d["status"] == 200, d
    assert d["chunk_count"] == 2 and d["not_found"] == []
    assert [m["user"]["username"] for m in d["members"]] == ["member-%d" % k for k in (1, 2, 3)]
    for t in ("presence", "voice_state", "members", "send"):
        assert actions_metric(sh, t, "ok") == 1, t
    sh.wait_log(r'msg="webhook actions run" webhook=0 webhook_id=msg_\S+ ok=4 duplicate=0', 5)
    assert fake.violations() == []


@timeout(90)
def test_actions_run_once_across_a_retried_batch(tmp):
    acts = [{"type": "presence", "body": PRESENCE}]
    # a 500 carrying actions is not acknowledged: its actions are ignored; the retry's 200 runs
    # them, once
    fake, rx, sh = start(tmp, [answer(acts, 500), answer(acts, 503), answer(acts)], n=1)
    fake.dispatch(0, "MESSAGE_CREATE", {"content": "act"})
    wait_for(lambda: len([r for r in act_requests(rx) if r.status is not None]) >= 3, 10,
             what="three attempts")
    reqs = act_requests(rx)
    assert [r.status for r in reqs] == [500, 503, 200], reqs
    assert len({r.headers["webhook-id"] for r in reqs}) == 1  # the same batch each time
    wait_for(lambda: sent(fake, 3), 5, what="op 3")
    time.sleep(scale(0.5))
    assert sent(fake, 3) == [{"op": 3, "d": PRESENCE}]
    assert actions_metric(sh, "presence", "ok") == 1
    assert len(act_requests(rx)) == 3  # acknowledged: not sent again


@timeout(90)
def test_one_bad_action_is_counted_and_the_batch_stays_acknowledged(tmp):
    g = guild_id(0, 1)
    acts = [{"type": "presence", "body": PRESENCE},
            {"type": "voice_state", "guild_id": g, "body": {"channel_id": 123}},
            {"type": "reboot"},
            {"type": "send", "shard": 0, "body": {"op": 2, "d": {}}},
            {"type": "send", "shard": 0, "body": {"op": 31, "d": {"guild_ids": [g]}}}]
    fake, rx, sh = start(tmp, [answer(acts)], n=1)
    s = fake.dispatch(0, "MESSAGE_CREATE", {"content": "act"})["s"][0]
    wait_for(lambda: sent(fake, 31), 5, what="op 31 after the bad entries")
    assert sent(fake, 3) == [{"op": 3, "d": PRESENCE}]
    assert sent(fake, 4) == [] and len(sent(fake, 2)) == 1  # only its own IDENTIFY
    line = sh.wait_log(r'msg="webhook actions not run" webhook=0 webhook_id=msg_\S+ ok=2 '
                       r'invalid=3 refused=0 error=0 duplicate=0 failed="([^"]*)"', 5).group(1)
    failed = line.split("; ")
    assert len(failed) == 3, failed
    assert failed[0].startswith("1 voice_state invalid 400 invalid_field: channel_id"), failed
    assert failed[1].startswith("2 unknown invalid 400 invalid_type: type: one of"), failed
    assert failed[2].startswith("3 send invalid 400 forbidden_op: op 2 (IDENTIFY)"), failed
    assert actions_metric(sh, "voice_state", "invalid") == 1
    assert actions_metric(sh, "unknown", "invalid") == 1
    assert actions_metric(sh, "send", "invalid") == 1
    assert actions_metric(sh, "send", "ok") == 1 and actions_metric(sh, "presence", "ok") == 1
    # the batch was acknowledged once: no retry, no dead letter, the checkpoint moved past it
    fake.dispatch(0, "MESSAGE_CREATE", {"content": "after"})
    wait_for(lambda: any(e["d"].get("content") == "after" for e in rx.events()), 5,
             what="the next event")
    assert len(act_requests(rx)) == 1 and act_requests(rx)[0].status == 200
    dead = Path(tmp) / "state" / "dead-letter"
    assert not dead.exists() or not any(p.suffix == ".json" for p in dead.rglob("*"))
    wait_for(lambda: read_checkpoint_seq(tmp) >= s + 1, 5, what="checkpoint past the batch")


def read_checkpoint_seq(tmp):
    d = Path(tmp) / "state" / "checkpoints"
    found = []
    for p in (d / "shard-0.json", d / "shard-0.journal"):
        if p.exists():
            for line in p.read_text().split("\n"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    pass
    return max((cp.get("seq", 0) for cp in found), default=0)


@timeout(90)
def test_actions_are_off_unless_the_config_says_so(tmp):
    fake, rx, sh = start(tmp, [answer([{"type": "presence", "body": PRESENCE}])], n=1,
                         actions=False)
    fake.dispatch(0, "MESSAGE_CREATE", {"content": "act"})
    wait_for(lambda: act_requests(rx) and act_requests(rx)[0].status == 200, 5,
             what="the batch answered")
    time.sleep(scale(1.0))
    assert sent(fake, 3) == []
    _, _, text = sh.api("GET", "/metrics")
    assert 'shardhook_webhook_actions_total{' not in text


@timeout(90)
def test_answers_not_read_for_actions(tmp):
    big = [{"type": "presence", "body": dict(PRESENCE, pad="x" * 70000)}]
    plain = (200, {"Content-Type": "text/plain"},
             json.dumps({"actions": [{"type": "presence", "body": PRESENCE}]}))
    fake, rx, sh = start(tmp, [], n=1)
    for i, ans in enumerate([plain, answer(big), (200, {"Content-Type": "application/json"},
                                                  "{not json")]):
        rx.respond(lambda request, a=ans: a if any(
            e.get("t") == "MESSAGE_CREATE" for e in request.events) else 200)
        fake.dispatch(0, "MESSAGE_CREATE", {"content": "n%d" % i})
        wait_for(lambda: any(e["d"].get("content") == "n%d" % i for e in rx.events()), 5,
                 what="batch %d" % i)
    sh.wait_log(r'msg="webhook answer\'s actions ignored" webhook=0 webhook_id=msg_\S+ '
                r'error="the answer is larger than 64 KiB"', 5)
    wait_for(lambda: actions_metric(sh, "answer", "invalid") == 2, 5,
             what="two unreadable answers counted")
    time.sleep(scale(0.5))
    assert sent(fake, 3) == []


@timeout(90)
def test_a_members_action_refused_by_discord_comes_back_as_its_error(tmp):
    g = guild_id(0, 1)
    acts = [{"type": "members", "guild_id": g, "body": {"user_ids": ["80351110224678912"]}}]
    fake, rx, sh = start(tmp, [answer(acts)], n=1)
    fake.members(rate_limited=4, retry_after=0.1)
    fake.dispatch(0, "MESSAGE_CREATE", {"content": "act"})
    ev = wait_for(lambda: [e for e in rx.events() if e["t"] == "SHARDHOOK_MEMBERS"], 10,
                  what="SHARDHOOK_MEMBERS at the receiver")
    d = ev[0]["d"]
    assert ev[0]["shard"] == [0, 1] and ev[0]["s"] is None
    assert d["guild_id"] == g and d["status"] == 429 and "nonce" not in d, d
    assert d["error"]["code"] == "rate_limited", d
    assert len(sent(fake, 8)) == 4  # the first request and the API's three retries
    assert actions_metric(sh, "members", "ok") == 1
