"""The control API end to end: build/shardhook against the fake Discord, asserting the exact gateway
payload the fake received for every endpoint and the answer the API gave; every class of bad input;
/metrics through a real Prometheus text parser; the status page in headless Chromium; and 200
concurrent control requests while 16 shards stream events."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

from harness import (DELETE, FakeDiscord, Receiver, Shardhook, base_config, http_request, scale,
                     timeout, wait_for)

SNOW_T0 = 300000000000


def guild_id(shard, total, index=0):
    """The fake's guild snowflakes (tests/fake/events.c fk_guild_id): (id >> 22) % total == shard."""
    ts = SNOW_T0 - SNOW_T0 % total + index * total + shard
    return str((ts << 22) | (index & 0xfff))


def start(tmp, n=1, fake_opts=None, **cfg):
    """The fake with n shards, a receiver, and shardhook (cfg merged into its config), ready."""
    fake = FakeDiscord(tmp, **dict({"identify_interval_ms": 200, "shards": n},
                                   **(fake_opts or {})))
    rx = Receiver()
    cfg.setdefault("intents", ["GUILDS", "GUILD_MESSAGES", "GUILD_MEMBERS", "GUILD_PRESENCES"])
    sh = Shardhook(base_config(fake, rx, tmp, **cfg), tmp)
    sh.wait_ready(timeout=20)
    return fake, rx, sh


def shard_of_conn(fake):
    return {c["id"]: c["shard"] for c in fake.connections()}


def sent(fake, op, shard=None):
    """Payloads with opcode op the fake received (on shard's connections when given)."""
    conns = shard_of_conn(fake)
    return [e["payload"] for e in fake.received(op=op)
            if shard is None or conns.get(e["conn"]) == shard]


def wait_sent(fake, op, n=1, shard=None, timeout_s=5.0):
    return wait_for(lambda: len(sent(fake, op, shard)) >= n and sent(fake, op, shard), timeout_s,
                    what="%d op %d payload(s)" % (n, op))


def is_error(body, code):
    return (isinstance(body, dict) and isinstance(body.get("error"), dict)
            and body["error"].get("code") == code and isinstance(body["error"].get("message"), str)
            and body["error"]["message"])


# ---- status ------------------------------------------------------------------------------------

def test_shards_and_one_shard(tmp):
    fake, rx, sh = start(tmp, n=2)
    code, _, body = sh.api("GET", "/v1/shards")
    assert code == 200, body
    assert body["shard_count"] == 2
    assert [s["id"] for s in body["shards"]] == [0, 1]
    sessions = {s["shard"]: s for s in fake.sessions()}
    for s in body["shards"]:
        assert set(s) >= {"id", "status", "latency_ms", "session_id", "seq", "guilds", "identifies",
                          "resumes", "last_event_at"}
        assert s["status"] == "ready"
        assert s["session_id"] == sessions[s["id"]]["session_id"]
        assert s["seq"] == sessions[s["id"]]["seq"]
        assert s["guilds"] == 2 and s["identifies"] == 1 and s["resumes"] == 0
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", s["last_event_at"])
    code, _, one = sh.api("GET", "/v1/shards/1")
    assert code == 200 and one["id"] == 1 and one["session_id"] == sessions[1]["session_id"]
    code, _, body = sh.api("GET", "/v1/shards/7")
    assert code == 404 and is_error(body, "shard_not_found"), body
    code, _, body = sh.api("GET", "/v1/shards/x1")
    assert code == 400 and is_error(body, "invalid_shard_id"), body


def test_gateway_info_and_health(tmp):
    fake, rx, sh = start(tmp, n=2)
    code, _, gw = sh.api("GET", "/v1/gateway")
    assert code == 200, gw
    assert gw["url"] == fake.gateway_url
    assert gw["shard_count"] == 2 and gw["shards_here"] == 2
    limit = gw["session_start_limit"]
    assert limit["total"] == 1000 and limit["max_concurrency"] == 1
    assert limit["remaining"] in (998, 1000), limit  # the fake counts two identifies
    assert 0 < limit["reset_after"] <= 14400000
    assert gw["startup"]["ready"] == 2
    assert sh.api("GET", "/healthz")[:1] == (200,)
    code, _, body = sh.api("GET", "/readyz")
    assert code == 200 and body["ready"] is True and body["shards"] == 2


def test_readyz_lists_shards_not_ready(tmp):
    # shard 0's second guild never arrives: it stays "loading" for the whole test
    fake = FakeDiscord(tmp, identify_interval_ms=200, unavailable_forever=1)
    rx = Receiver()
    sh = Shardhook(base_config(fake, rx, tmp, guild_create_timeout_ms=60000), tmp)
    sh.wait_http("/healthz")
    def loading():  # the first 503s may still show the shard connecting or identifying
        code, _, body = sh.api("GET", "/readyz")
        return (code == 503 and body.get("not_ready")
                and body["not_ready"][0].get("status") == "loading" and body)
    body = wait_for(loading, 10, what="readyz 503 with a loading shard")
    assert is_error(body, "not_ready")
    assert body["ready"] is False
    assert body["not_ready"] == [{"id": 0, "status": "loading"}]


# ---- auth --------------------------------------------------------------------------------------

def test_bearer_auth(tmp):
    api_token = "api-token-5f8e2c"
    fake, rx, sh = start(tmp, http={"token": api_token})
    for path in ("/v1/shards", "/v1/gateway", "/metrics"):
        code, headers, body = sh.api("GET", path, token="")
        assert code == 401, (path, code)
        assert headers.get("www-authenticate", "").startswith("Bearer"), headers
        assert is_error(body, "unauthorized")
        for wrong in ("wrong", api_token + "x", api_token[:-1], "Bearer " + api_token):
            code, _, _ = sh.api("GET", path, token=wrong)
            assert code == 401, (path, wrong)
        code, _, _ = sh.api("GET", path, headers={"Authorization": "Basic " + api_token}, token="")
        assert code == 401
        assert sh.api("GET", path)[0] == 200, path
    code, _, body = sh.api("POST", "/v1/shards/0/send", {"op": 3, "d": None}, token="")
    assert code == 401
    assert sent(fake, 3) == []
    # liveness, readiness and the page itself are open
    for path in ("/healthz", "/readyz", "/"):
        assert sh.api("GET", path, token="")[0] == 200, path
    # no answer carries a secret
    for path in ("/v1/shards", "/v1/gateway", "/metrics", "/", "/v1/shards/0"):
        text = json.dumps(sh.api("GET", path)[2])
        assert api_token not in text and "test-token" not in text, path


# ---- commands ----------------------------------------------------------------------------------

def test_reconnect_with_and_without_resume(tmp):
    fake, rx, sh = start(tmp, http={"reconnect_interval_ms": 0})  # no per-shard limit here
    session = fake.sessions()[0]["session_id"]
    code, _, body = sh.api("POST", "/v1/shards/0/reconnect", {"resume": True})
    assert code == 202 and body == {"shard": 0, "resume": True}, body
    resume = wait_sent(fake, 6)[0]
    assert resume["d"]["session_id"] == session and resume["d"]["token"] == "test-token"
    assert len(sent(fake, 2)) == 1
    code, _, body = sh.api("POST", "/v1/shards/0/reconnect")  # empty body: resume
    assert code == 202 and body["resume"] is True
    wait_sent(fake, 6, 2)
    code, _, body = sh.api("POST", "/v1/shards/0/reconnect", {"resume": False})
    assert code == 202 and body == {"shard": 0, "resume": False}
    wait_sent(fake, 2, 2)
    sh.wait_ready()
    assert len(sent(fake, 6)) == 2
    closes = [c["close_code"] for c in fake.connections() if c["closed_by"] == "client"]
    assert closes and all(c == 4000 for c in closes), closes
    code, _, body = sh.api("POST", "/v1/shards/0/reconnect", {"resume": "yes"})
    assert code == 400 and is_error(body, "invalid_field")
    code, _, body = sh.api("POST", "/v1/shards/3/reconnect", {})
    assert code == 404 and is_error(body, "shard_not_found")


def test_raw_send(tmp):
    fake, rx, sh = start(tmp)
    d = {"since": None, "activities": [{"name": "raw", "type": 0}], "status": "dnd", "afk": False}
    code, _, body = sh.api("POST", "/v1/shards/0/send", {"op": 3, "d": d})
    assert code == 202 and body["shard"] == 0 and body["op"] == 3, body
    assert wait_sent(fake, 3)[0] == {"op": 3, "d": d}
    for op, name in ((2, "IDENTIFY"), (6, "RESUME")):
        code, _, body = sh.api("POST", "/v1/shards/0/send", {"op": op, "d": {}})
        assert code == 400 and is_error(body, "forbidden_op") and name in body["error"]["message"]
    for op in (0, 7, 9, 10, 11):
        code, _, body = sh.api("POST", "/v1/shards/0/send", {"op": op, "d": None})
        assert code == 400 and is_error(body, "forbidden_op"), op
    bad = [({"op": 3}, "missing_field"), ({"d": {}}, "missing_field"),
           ({"op": "3", "d": {}}, "invalid_field"), ({"op": 3.5, "d": {}}, "invalid_field"),
           ({"op": 3, "d": {}, "x": 1}, "unknown_field")]
    for payload, err in bad:
        code, _, body = sh.api("POST", "/v1/shards/0/send", payload)
        assert code == 400 and is_error(body, err), (payload, body)
    code, _, body = sh.api("POST", "/v1/shards/0/send", {"op": 3, "d": {"pad": "x" * 4100}})
    assert code == 413 and is_error(body, "payload_too_large"), body
    # exactly 4096 bytes goes through
    filler = 4096 - len('{"op":3,"d":{"pad":""}}')
    code, _, body = sh.api("POST", "/v1/shards/0/send", {"op": 3, "d": {"pad": "y" * filler}})
    assert code == 202 and body["bytes"] == 4096, body
    wait_sent(fake, 3, 2)
    time.sleep(0.2)
    assert len(sent(fake, 3)) == 2  # nothing refused reached Discord
    assert fake.violations() == []


def test_presence_to_all_and_to_a_subset(tmp):
    fake, rx, sh = start(tmp, n=3)
    presence = {"status": "idle", "activities": [{"name": "the API", "type": 3}], "since": 1700000000000,
                "afk": True}
    code, _, body = sh.api("POST", "/v1/presence", dict(presence, shards=[1, 2]))
    assert code == 202 and body == {"shards": [1, 2]}, body
    expected = {"op": 3, "d": {"since": 1700000000000, "activities": [{"name": "the API", "type": 3}],
                               "status": "idle", "afk": True}}
    assert wait_sent(fake, 3, 1, shard=1) == [expected]
    assert wait_sent(fake, 3, 1, shard=2) == [expected]
    time.sleep(0.2)
    assert sent(fake, 3, shard=0) == []
    code, _, body = sh.api("POST", "/v1/presence", {"status": "online"})
    assert code == 202 and body == {"shards": [0, 1, 2]}
    minimal = {"op": 3, "d": {"since": None, "activities": [], "status": "online", "afk": False}}
    for s in range(3):
        assert wait_sent(fake, 3, 1 if s == 0 else 2, shard=s)[-1] == minimal
    bad = [({"status": "busy"}, 400, "invalid_field"), ({"activities": []}, 400, "missing_field"),
           ({"status": "online", "shards": [5]}, 404, "shard_not_found"),
           ({"status": "online", "shards": []}, 400, "invalid_field"),
           ({"status": "online", "activities": [{"name": "x"}]}, 400, "invalid_field"),
           ({"status": "online", "activities": [{"name": "x", "type": 9}]}, 400, "invalid_field"),
           ({"status": "online", "activities": [{"name": "x", "type": 0, "emoji": 1}]}, 400,
            "unknown_field"),
           ({"status": "online", "game": {}}, 400, "unknown_field"),
           ({"status": "online", "afk": "no"}, 400, "invalid_field")]
    for payload, status, err in bad:
        code, _, body = sh.api("POST", "/v1/presence", payload)
        assert code == status and is_error(body, err), (payload, code, body)
    time.sleep(0.2)
    assert sum(len(sent(fake, 3, shard=s)) for s in range(3)) == 5


def test_commands_over_the_send_budget_queue_instead_of_dropping(tmp):
    fake, rx, sh = start(tmp)
    n = 130  # Discord allows 120 payloads per connection per 60 s
    for i in range(n):
        code, _, body = sh.api("POST", "/v1/presence",
                               {"status": "online", "activities": [{"name": "n%d" % i, "type": 0}]})
        assert code == 202, (i, body)
    wait_for(lambda: len(sent(fake, 3)) >= 100, 5, what="the first presence updates")
    time.sleep(0.5)
    got = len(sent(fake, 3))
    assert 100 <= got < n, got  # the rest waits for the window to reopen
    names = [p["d"]["activities"][0]["name"] for p in sent(fake, 3)]
    assert names == ["n%d" % i for i in range(got)]  # in order, none skipped
    wait_for(lambda: sh.api("GET", "/v1/shards/0")[2]["queued_sends"] == n - got, 5,
             what="%d payloads queued" % (n - got))
    assert fake.violations() == []
    assert not [c for c in fake.connections() if c["close_code"] == 4008]


def test_voice_state_routed_to_the_guilds_shard(tmp):
    fake, rx, sh = start(tmp, n=2)
    g = guild_id(1, 2)
    channel = str(int(g) + 2 * 4096)
    code, _, body = sh.api("POST", "/v1/guilds/%s/voice-state" % g,
                           {"channel_id": channel, "self_mute": True})
    assert code == 202 and body == {"guild_id": g, "shard": 1}, body
    assert wait_sent(fake, 4, shard=1) == [{"op": 4, "d": {"guild_id": g, "channel_id": channel,
                                                            "self_mute": True, "self_deaf": False}}]
    assert sent(fake, 4, shard=0) == []
    # Discord's answers reach the webhooks like any event
    wait_for(lambda: {"VOICE_STATE_UPDATE", "VOICE_SERVER_UPDATE"}
             <= {e["t"] for e in rx.events()}, 5, what="voice events at the receiver")
    code, _, body = sh.api("POST", "/v1/guilds/%s/voice-state" % g, {"channel_id": None})
    assert code == 202
    assert wait_sent(fake, 4, 2, shard=1)[-1]["d"]["channel_id"] is None
    for payload, err in (({}, "missing_field"), ({"channel_id": 123}, "invalid_field"),
                         ({"channel_id": None, "self_deaf": 1}, "invalid_field"),
                         ({"channel_id": None, "mute": True}, "unknown_field")):
        code, _, body = sh.api("POST", "/v1/guilds/%s/voice-state" % g, payload)
        assert code == 400 and is_error(body, err), (payload, body)
    code, _, body = sh.api("POST", "/v1/guilds/0123/voice-state", {"channel_id": None})
    assert code == 400 and is_error(body, "invalid_guild_id")


def test_voice_state_for_a_shard_run_elsewhere_is_404(tmp):
    fake, rx, sh = start(tmp, n=2, shards={"total": 2, "ids": [0]})
    code, _, body = sh.api("POST", "/v1/guilds/%s/voice-state" % guild_id(1, 2),
                           {"channel_id": None})
    assert code == 404 and is_error(body, "shard_not_found") and "shard 1" in body["error"]["message"]
    assert sent(fake, 4) == []


# ---- members -----------------------------------------------------------------------------------

def test_members_three_chunks_after_a_rate_limited_reply(tmp):
    fake, rx, sh = start(tmp, n=2)
    fake.members(chunks=3, count=7, rate_limited=1, retry_after=0.4)
    g = guild_id(1, 2)
    t0 = time.monotonic()
    code, _, body = sh.api("POST", "/v1/guilds/%s/members" % g, {"query": "", "limit": 0},
                           timeout=10)
    took = time.monotonic() - t0
    assert code == 200, body
    assert body["guild_id"] == g and body["chunk_count"] == 3
    assert [m["user"]["username"] for m in body["members"]] == ["member-%d" % k for k in range(1, 8)]
    assert body["not_found"] == [] and "presences" not in body
    assert took >= 0.4, took  # the retry waited retry_after
    ops = sent(fake, 8, shard=1)
    assert len(ops) == 2 and sent(fake, 8, shard=0) == []
    for op in ops:
        d = op["d"]
        assert set(op) == {"op", "d"} and op["op"] == 8
        assert d["guild_id"] == g and d["query"] == "" and d["limit"] == 0
        assert d["presences"] is False
        assert isinstance(d["nonce"], str) and 0 < len(d["nonce"]) <= 32
    assert ops[0]["d"]["nonce"] == ops[1]["d"]["nonce"]
    # the RATE_LIMITED dispatch was delivered to the webhook like any event
    wait_for(lambda: [e for e in rx.events() if e["t"] == "RATE_LIMITED"], 5,
             what="RATE_LIMITED at the receiver")
    assert not [v for v in fake.violations() if v["what"] == "member request window"]


def test_members_nonces_are_unique_and_replies_do_not_mix(tmp):
    fake, rx, sh = start(tmp)
    g = guild_id(0, 1)
    fake.members(chunks=2)
    results = {}
    def ask(name, query):
        results[name] = sh.api("POST", "/v1/guilds/%s/members" % g, {"query": query, "limit": 3})
    threads = [threading.Thread(target=ask, args=("q%d" % i, "q%d" % i)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(6):
        code, _, body = results["q%d" % i]
        assert code == 200, body
        assert [m["user"]["username"] for m in body["members"]] == \
            ["q%d-member-%d" % (i, k) for k in (1, 2, 3)]
    nonces = [op["d"]["nonce"] for op in sent(fake, 8)]
    assert len(nonces) == 6 and len(set(nonces)) == 6


def test_members_user_ids_presences_and_not_found(tmp):
    fake, rx, sh = start(tmp)
    g = guild_id(0, 1)
    ids = ["1200000000000000101", "1200000000000000102", "1200000000000000103"]
    fake.members(not_found=[ids[1]])
    code, _, body = sh.api("POST", "/v1/guilds/%s/members" % g, {"user_ids": ids, "presences": True})
    assert code == 200, body
    assert [m["user"]["id"] for m in body["members"]] == [ids[0], ids[2]]
    assert body["not_found"] == [ids[1]]
    assert [p["user"]["id"] for p in body["presences"]] == [ids[0], ids[2]]
    op = sent(fake, 8)[0]
    assert op == {"op": 8, "d": {"guild_id": g, "user_ids": ids, "presences": True,
                                 "nonce": op["d"]["nonce"]}}


def test_members_rate_limited_four_times_answers_429(tmp):
    fake, rx, sh = start(tmp)
    fake.members(rate_limited=4, retry_after=0.2)
    code, headers, body = sh.api("POST", "/v1/guilds/%s/members" % guild_id(0, 1), {}, timeout=10)
    assert code == 429 and is_error(body, "rate_limited"), body
    assert headers.get("retry-after") == "1"
    assert len(sent(fake, 8)) == 4  # the first try and three retries


def test_members_repeat_waits_for_the_window_client_side(tmp):
    window = 1500
    fake, rx, sh = start(tmp, fake_opts={"members_window_ms": window},
                         testing={"member_window_ms": window})
    g = guild_id(0, 1)
    code, _, _ = sh.api("POST", "/v1/guilds/%s/members" % g, {"query": "", "limit": 0})
    assert code == 200
    t_first = time.monotonic()
    answers = {}
    def second():
        answers["second"] = sh.api("POST", "/v1/guilds/%s/members" % g, {}, timeout=10)
        answers["t"] = time.monotonic()
    th = threading.Thread(target=second)
    th.start()
    time.sleep(0.3)
    # a third one while the second waits: 429 at once, with when to come back
    code, headers, body = sh.api("POST", "/v1/guilds/%s/members" % g, {})
    assert code == 429 and is_error(body, "rate_limited") and int(headers["retry-after"]) >= 1
    # a query for the same guild is not held back by the window
    code, _, body = sh.api("POST", "/v1/guilds/%s/members" % g, {"query": "a", "limit": 1})
    assert code == 200 and len(body["members"]) == 1
    th.join(scale(10))
    code, _, body = answers["second"]
    assert code == 200 and len(body["members"]) == 5, body
    assert answers["t"] - t_first >= window / 1000.0 - 0.15
    assert not fake.violations(), fake.violations()  # the fake never saw a repeat inside 1.5 s


def test_members_timeout_answers_504_with_what_arrived(tmp):
    fake, rx, sh = start(tmp)
    fake.members(chunks=3, count=6, send_chunks=1)
    t0 = time.monotonic()
    code, _, body = sh.api("POST", "/v1/guilds/%s/members" % guild_id(0, 1),
                           {"query": "", "limit": 0, "timeout_ms": 600})
    assert code == 504 and is_error(body, "timeout"), body
    assert 0.55 <= time.monotonic() - t0 < 5
    assert body["chunk_count"] == 3 and body["chunks_received"] == 1
    assert [m["user"]["username"] for m in body["members"]] == ["member-1", "member-2"]
    assert "1 of 3" in body["error"]["message"]
    fake.members(silent=True)
    code, _, body = sh.api("POST", "/v1/guilds/%s/members" % guild_id(0, 1),
                           {"query": "x", "limit": 1, "timeout_ms": 300})
    assert code == 504 and body["members"] == [] and body["chunks_received"] == 0


def test_members_bad_input(tmp):
    fake, rx, sh = start(tmp, n=2, intents=["GUILDS"], shards={"total": 2, "ids": [0]})
    g = guild_id(0, 2)
    path = "/v1/guilds/%s/members" % g
    cases = [
        ({"user_ids": [str(10**17 + i) for i in range(101)]}, 400, "too_many_user_ids"),
        ({"user_ids": []}, 400, "invalid_field"),
        ({"user_ids": [123]}, 400, "invalid_field"),
        ({"query": "ab"}, 400, "missing_field"),
        ({"limit": 5}, 400, "missing_field"),
        ({"query": "ab", "limit": 101}, 400, "invalid_field"),
        ({"query": "ab", "limit": 1, "user_ids": ["1"]}, 400, "invalid_request"),
        ({"query": 5, "limit": 1}, 400, "invalid_field"),
        ({"query": "a", "limit": 1, "timeout_ms": 0}, 400, "invalid_field"),
        ({"query": "a", "limit": 1, "nonce": "mine"}, 400, "unknown_field"),
        ({}, 400, "missing_intent"),
        ({"query": "", "limit": 0}, 400, "missing_intent"),
        ({"query": "a", "limit": 1, "presences": True}, 400, "missing_intent"),
    ]
    for payload, status, err in cases:
        code, _, body = sh.api("POST", path, payload)
        assert code == status and is_error(body, err), (payload, code, body)
    code, _, body = sh.api("POST", path, {})
    assert "GUILD_MEMBERS" in body["error"]["message"]
    code, _, body = sh.api("POST", path, {"query": "a", "limit": 1, "presences": True})
    assert "GUILD_PRESENCES" in body["error"]["message"]
    code, _, body = sh.api("POST", "/v1/guilds/%s/members" % guild_id(1, 2), {"query": "a", "limit": 1})
    assert code == 404 and is_error(body, "shard_not_found")
    code, _, body = sh.api("POST", "/v1/guilds/abc/members", {"query": "a", "limit": 1})
    assert code == 400 and is_error(body, "invalid_guild_id")
    time.sleep(0.2)
    assert sent(fake, 8) == []


# ---- channel info and soundboard ---------------------------------------------------------------

def test_channel_info(tmp):
    fake, rx, sh = start(tmp, n=2)
    g = guild_id(1, 2)
    code, _, body = sh.api("POST", "/v1/guilds/%s/channel-info" % g)
    assert code == 200, body
    assert body == {"guild_id": g, "channels": [{"id": str(int(g) + 8192), "status": "fake status",
                                                 "voice_start_time": 1735689600}]}
    assert sent(fake, 43, shard=1) == [{"op": 43, "d": {"guild_id": g,
                                                        "fields": ["status", "voice_start_time"]}}]
    code, _, body = sh.api("POST", "/v1/guilds/%s/channel-info" % g, {"fields": ["status"]})
    assert code == 200 and body["channels"] == [{"id": str(int(g) + 8192), "status": "fake status"}]
    assert sent(fake, 43, shard=1)[-1]["d"]["fields"] == ["status"]
    for payload in ({"fields": ["topic"]}, {"fields": []}, {"fields": "status"},
                    {"fields": ["status", "status"]}):
        code, _, body = sh.api("POST", "/v1/guilds/%s/channel-info" % g, payload)
        assert code == 400 and is_error(body, "invalid_field"), payload
    fake.quiet(ops=[43])
    code, _, body = sh.api("POST", "/v1/guilds/%s/channel-info" % g, {"timeout_ms": 300})
    assert code == 504 and is_error(body, "timeout") and body["guild_id"] == g, body
    assert len(sent(fake, 43)) == 3


def test_soundboard_sounds_across_shards(tmp):
    fake, rx, sh = start(tmp, n=2)
    g0, g1, g0b = guild_id(0, 2), guild_id(1, 2), guild_id(0, 2, 1)
    code, _, body = sh.api("POST", "/v1/soundboard-sounds", {"guild_ids": [g1, g0, g0b]})
    assert code == 200, body
    assert [g["guild_id"] for g in body["guilds"]] == [g1, g0, g0b]
    for g in body["guilds"]:
        assert [s["name"] for s in g["soundboard_sounds"]] == ["sound-1", "sound-2"]
        assert all(s["guild_id"] == g["guild_id"] for s in g["soundboard_sounds"])
    assert sent(fake, 31, shard=0) == [{"op": 31, "d": {"guild_ids": [g0, g0b]}}]
    assert sent(fake, 31, shard=1) == [{"op": 31, "d": {"guild_ids": [g1]}}]
    fake.quiet(guild_ids=[g0b])
    code, _, body = sh.api("POST", "/v1/soundboard-sounds",
                           {"guild_ids": [g0, g0b], "timeout_ms": 400})
    assert code == 504 and is_error(body, "timeout"), body
    assert [g["guild_id"] for g in body["guilds"]] == [g0] and body["missing"] == [g0b]
    for payload, err in (({}, "missing_field"), ({"guild_ids": []}, "invalid_field"),
                         ({"guild_ids": [g0, g0]}, "invalid_field"),
                         ({"guild_ids": [int(g0)]}, "invalid_field"),
                         ({"guild_ids": [g0], "extra": 1}, "unknown_field")):
        code, _, body = sh.api("POST", "/v1/soundboard-sounds", payload)
        assert code == 400 and is_error(body, err), (payload, body)


# ---- bad input ---------------------------------------------------------------------------------

def test_bad_input_classes_and_the_daemon_keeps_serving(tmp):
    fake, rx, sh = start(tmp)
    raw = [("{", "invalid_json"), ('{"status":"online"} x', "invalid_json"),
           ("[1,2]", "invalid_body"), ('"online"', "invalid_body"), ("\x00", "invalid_json")]
    for text, err in raw:
        code, headers, body = sh.api("POST", "/v1/presence", text,
                                     headers={"Content-Type": "application/json"})
        assert code == 400 and is_error(body, err), (text, body)
        assert headers["content-type"] == "application/json"
    code, _, body = sh.api("POST", "/v1/presence", "{" + " " * (64 * 1024) + "}")
    assert code == 413 and is_error(body, "body_too_large"), body
    code, _, body = sh.api("POST", "/v1/shards/0/send",
                           json.dumps({"op": 3, "d": {"x": "y" * 70000}}))
    assert code == 413 and is_error(body, "body_too_large")
    for method, path in (("GET", "/v2/shards"), ("GET", "/v1/shard"), ("POST", "/v1/guilds/1/bans"),
                         ("GET", "/v1/shards/0/send/x"), ("GET", "/" + "a" * 300)):
        code, _, body = sh.api(method, path, {} if method == "POST" else None)
        assert code == 404 and is_error(body, "not_found"), (path, body)
    for method, path, allow in (("POST", "/v1/shards", "GET, HEAD"), ("GET", "/v1/presence", "POST"),
                                ("DELETE", "/v1/shards/0", "GET, HEAD"),
                                ("PUT", "/v1/shards/0/send", "POST"), ("POST", "/healthz", "GET, HEAD")):
        code, headers, body = sh.api(method, path)
        assert code == 405 and is_error(body, "method_not_allowed"), (method, path, body)
        assert headers.get("allow") == allow, (path, headers)
    assert sh.api("GET", "/healthz")[0] == 200
    code, _, body = sh.api("GET", "/v1/shards")
    assert code == 200 and body["shards"][0]["status"] == "ready"
    assert sent(fake, 3) == [] and fake.violations() == []
    assert sh.alive()


# ---- metrics -----------------------------------------------------------------------------------

def prometheus_parser():
    """Debian's python3-prometheus-client, also when the tests run under another Python."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        import sys
        sys.path.append("/usr/lib/python3/dist-packages")
        from prometheus_client.parser import text_string_to_metric_families
    return text_string_to_metric_families


def test_metrics_parse_with_prometheus_client(tmp):
    text_string_to_metric_families = prometheus_parser()
    fake, rx, sh = start(tmp, n=2)
    sh.api("GET", "/v1/shards")
    sh.api("GET", "/v1/shards/9")
    code, headers, text = sh.api("GET", "/metrics")
    assert code == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    def samples(name, **labels):
        return [s for s in families[name].samples
                if all(s.labels.get(k) == v for k, v in labels.items())]
    assert families["shardhook_shard_ready"].type == "gauge"
    assert [s.value for s in samples("shardhook_shard_ready")] == [1.0, 1.0]
    for shard in ("0", "1"):
        assert samples("shardhook_shard_status", shard=shard, status="ready")[0].value == 1
        assert samples("shardhook_shard_status", shard=shard, status="failed")[0].value == 0
        assert samples("shardhook_shard_guilds", shard=shard)[0].value == 2
        assert samples("shardhook_shard_identifies", shard=shard)[0].value == 1
    assert samples("shardhook_shards_by_status", status="ready")[0].value == 2
    assert samples("shardhook_gateway_bot_shards")[0].value == 2
    assert samples("shardhook_session_start_limit_max")[0].value == 1000
    # promtool's lint: no _count suffix on a gauge, no _total on a gauge (renamed names)
    assert "shardhook_gateway_shard_count" not in text
    assert "shardhook_session_start_limit_total" not in text
    for f in families.values():
        if f.type == "gauge":
            assert not re.search(r"_(count|total|sum|bucket)$", f.name), f.name
    build = samples("shardhook_build_info")
    assert len(build) == 1 and build[0].value == 1 and re.match(r"\d+\.\d+\.\d+$",
                                                                build[0].labels["version"])
    # the standard process_* metrics, from /proc of the daemon itself
    assert families["process_cpu_seconds"].type == "counter"
    assert samples("process_cpu_seconds")[0].value >= 0
    rss = samples("process_resident_memory_bytes")[0].value
    assert 1 << 20 < rss < 1 << 32 and samples("process_virtual_memory_bytes")[0].value > rss
    assert 5 < samples("process_open_fds")[0].value < samples("process_max_fds")[0].value
    started = samples("process_start_time_seconds")[0].value
    assert time.time() - scale(120) < started <= time.time() + 1, started
    assert families["shardhook_api_requests"].type == "counter"
    assert samples("shardhook_api_requests", route="/v1/shards/{id}", code="404")[0].value == 1
    hist = families["shardhook_api_request_duration_seconds"]
    assert hist.type == "histogram"
    count = [s for s in hist.samples if s.name.endswith("_count") and s.labels["route"] == "/v1/shards"]
    assert count and count[0].value >= 1


# ---- status page -------------------------------------------------------------------------------

def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("chromium is not installed (scripts/install-deps installs it)")


def dump_dom(url, budget_ms=4000):
    profile = tempfile.mkdtemp(prefix="shardhook-chromium-")
    try:
        p = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                            "--no-first-run", "--disable-background-networking",
                            "--disable-component-update", "--disable-sync",
                            "--user-data-dir=" + profile, "--virtual-time-budget=%d" % budget_ms,
                            "--dump-dom", url],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=scale(60))
        return p.stdout.decode("utf-8", "replace")
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@timeout(180)
def test_status_page_in_headless_chromium(tmp):
    api_token = "page-token-1234"
    fake, rx, sh = start(tmp, n=3, http={"token": api_token})
    code, headers, page = sh.api("GET", "/", token="")
    assert code == 200 and headers["content-type"].startswith("text/html")
    assert api_token not in page
    dom = wait_for(lambda: (lambda d: d if d.count('class="shard ') == 3 else None)(
        dump_dom(sh.http_url + "/#token=" + api_token)), 90, 1, what="3 shard tiles in the DOM")
    tiles = re.findall(r'<div class="shard s-(\w+)" data-shard="(\d+)" data-status="(\w+)"', dom)
    assert sorted((int(i), st) for _, i, st in tiles) == [(0, "ready"), (1, "ready"), (2, "ready")]
    assert "3 of 3 shards ready" in dom
    assert fake.gateway_url in dom  # the gateway table
    assert 'id="progress-bar" style="width: 100%;"' in dom
    # delivery figures from /metrics: the webhook queue and request counts
    rows = re.findall(r'<tr data-metric="(webhook_[a-z_]+)">', dom)
    assert rows, dom[dom.find('id="webhooks"'):][:500]


# ---- load --------------------------------------------------------------------------------------

@timeout(300)
def test_200_concurrent_requests_while_16_shards_stream(tmp):
    fake, rx, sh = start(tmp, n=16, fake_opts={"guilds": 1})
    base_events = len(rx.wait_events(16 * 2, timeout=20))  # READY + GUILD_CREATE per shard
    per_shard = 300
    burst = {}
    def stream():
        burst["r"] = fake.burst(per_shard)
    results = [None] * 200
    def call(i):
        shard = i % 16
        kind = i % 5
        try:
            if kind == 0:
                results[i] = sh.api("GET", "/v1/shards", timeout=30)
            elif kind == 1:
                results[i] = sh.api("GET", "/metrics", timeout=30)
            elif kind == 2:
                results[i] = sh.api("POST", "/v1/presence",
                                    {"status": "online", "shards": [shard]}, timeout=30)
            elif kind == 3:
                results[i] = sh.api("POST", "/v1/guilds/%s/members" % guild_id(shard, 16),
                                    {"query": "c%d" % i, "limit": 2}, timeout=30)
            else:
                results[i] = sh.api("POST", "/v1/guilds/%s/channel-info" % guild_id(shard, 16),
                                    timeout=30)
        except Exception as e:  # recorded: every request must be answered
            results[i] = ("error", repr(e))
    streamer = threading.Thread(target=stream)
    threads = [threading.Thread(target=call, args=(i,)) for i in range(200)]
    streamer.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(scale(120))
    streamer.join(scale(120))
    failures = [(i, r) for i, r in enumerate(results) if r is None or r[0] not in (200, 202)]
    assert not failures, failures[:5]
    for i in range(3, 200, 5):
        assert [m["user"]["username"] for m in results[i][2]["members"]] == \
            ["c%d-member-1" % i, "c%d-member-2" % i]
    assert len(burst["r"]["shards"]) == 16
    streamed = sum(s["last_s"] - s["first_s"] + 1 for s in burst["r"]["shards"])
    assert streamed == 16 * per_shard
    # the receiver gets every event: the burst, the replies to the requests, nothing lost
    replies = 40 * 1 + 40 * 1  # one GUILD_MEMBERS_CHUNK and one CHANNEL_INFO per request
    events = rx.wait_events(base_events + streamed + replies, timeout=60)
    per = {}
    for e in events:
        per.setdefault(e["shard"][0], []).append(e["s"])
    for shard, seqs in per.items():
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), shard
    assert sum(len(v) for v in per.values()) == base_events + streamed + replies
    assert fake.violations() == []
