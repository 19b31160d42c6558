"""Dead letters through the control API: a webhook refusing batches with 400 for a while, then
fixed; GET /v1/dead-letters lists what it refused (newest first, paged), redelivery sends it again
in the original order with the original webhook-id (checked with the npm `standardwebhooks`
verifier), an acknowledged one leaves the folder, one refused again stays with its new answer,
DELETE discards one, and bad ids and parameters get JSON errors."""
import base64
import time
from pathlib import Path

from harness import FakeDiscord, Receiver, Shardhook, base_config, scale, timeout, wait_for
from delivery_helpers import npm_verify

SECRET = "whsec_" + base64.b64encode(b"dead letters come back signed!!!").decode()


def folder(tmp):
    return sorted((Path(tmp) / "state" / "dead-letter").glob("*.json"))


def shard_ranges(events):
    out = {}
    for e in events:
        lo, hi = out.get(e["shard"][0], (e["s"], e["s"]))
        out[e["shard"][0]] = (min(lo, e["s"]), max(hi, e["s"]))
    return out


def listing(sh, query=""):
    code, _, body = sh.api("GET", "/v1/dead-letters" + query)
    assert code == 200, body
    return body


def start_refusing(tmp, **webhook):
    """shardhook with one webhook answering 400 to everything: 16 events over two shards,
    in batches of at most 4, all dead-lettered. Returns (fake, rx, sh, refused requests)."""
    fake = FakeDiscord(tmp, shards=2, identify_interval_ms=200)
    rx = Receiver()
    rx.respond((400, {"Content-Type": "text/plain"}, "no thanks"))
    cfg = base_config(fake, rx, tmp, webhook={"events": ["MESSAGE_CREATE"], "secret": SECRET,
                                              "max_batch_events": 4, "max_in_flight": 1,
                                              "retry_base_ms": 50, "retry_max_ms": 500,
                                              **webhook})
    sh = Shardhook(cfg, tmp)
    fake.wait(lambda f: len(f.sessions()) >= 2 and all(s["seq"] >= 1 for s in f.sessions()), 15,
              what="2 sessions ready")
    fake.burst(10, shard=0, t="MESSAGE_CREATE")
    fake.burst(6, shard=1, t="MESSAGE_CREATE")
    wait_for(lambda: sum(len(r.events) for r in rx.requests if r.status == 400) == 16, scale(15),
             what="16 events refused")
    refused = [r for r in rx.requests if r.status == 400]
    wait_for(lambda: len(folder(tmp)) == len(refused), scale(10), what="every dead letter on disk")
    return fake, rx, sh, refused


@timeout(180)
def test_list_page_redeliver_refuse_again_and_discard(tmp):
    fake, rx, sh, refused = start_refusing(tmp)
    n = len(refused)
    assert n >= 4, refused
    # -- the list: newest first, with what each batch held --------------------------------------
    body = listing(sh)
    got = body["dead_letters"]
    assert body["next_after"] is None and len(got) == n
    assert [e["webhook_id"] for e in got] == [r.headers["webhook-id"] for r in reversed(refused)]
    assert [e["id"] for e in got] == sorted((e["id"] for e in got), reverse=True)
    assert [e["when"] for e in got] == sorted((e["when"] for e in got), reverse=True)
    for e, r in zip(got, reversed(refused)):
        assert e["webhook"] == 0 and e["status"] == 400 and e["reason"] == "refused"
        assert e["response"] == "no thanks" and e["attempts"] == 1
        assert e["events"] == len(r.events) and e["bytes"] == len(r.body)
        want = shard_ranges(r.events)
        assert {x["shard"]: (x["first_s"], x["last_s"]) for x in e["shards"]} == want, (e, want)
    assert listing(sh, "?webhook=0")["dead_letters"] == got
    # -- pages of 3 with the cursor give the same list -------------------------------------------
    pages, after = [], ""
    while True:
        page = listing(sh, "?limit=3" + after)
        assert 1 <= len(page["dead_letters"]) <= 3
        pages += page["dead_letters"]
        if page["next_after"] is None:
            break
        assert page["next_after"] == page["dead_letters"][-1]["id"]
        after = "&after=" + page["next_after"]
    assert [e["id"] for e in pages] == [e["id"] for e in got]
    # -- DELETE discards one (the newest) --------------------------------------------------------
    gone = got[0]
    code, _, text = sh.api("DELETE", "/v1/dead-letters/" + gone["id"])
    assert code == 204 and text in ("", None), text
    assert len(folder(tmp)) == n - 1
    code, _, err = sh.api("DELETE", "/v1/dead-letters/" + gone["id"])
    assert code == 404 and err["error"]["code"] == "dead_letter_not_found"
    kept = list(reversed(got[1:]))  # oldest first, as they were refused
    # -- the endpoint is fixed, except for one batch it refuses again -----------------------------
    stubborn = kept[1]["webhook_id"]
    before = len(rx.requests)
    rx.respond(lambda req: (422, {"Content-Type": "text/plain"}, "still not")
               if req.headers.get("webhook-id") == stubborn else 200)
    code, _, ans = sh.api("POST", "/v1/webhooks/0/redeliver", {"all": True})
    assert code == 202, ans
    assert ans["redelivering"] == len(kept) and ans["ids"] == [e["id"] for e in kept]
    # live traffic is not held behind the redelivery
    fake.burst(3, shard=0, t="MESSAGE_CREATE")
    wait_for(lambda: len([r for r in rx.requests[before:] if r.status is not None
                          and r.headers["webhook-id"] in {e["webhook_id"] for e in kept}])
             == len(kept), scale(15), what="every kept dead letter sent again")
    wait_for(lambda: len(folder(tmp)) == 1, scale(10), what="acknowledged ones removed")
    again = [r for r in rx.requests[before:] if r.headers["webhook-id"] in
             {e["webhook_id"] for e in kept}]
    # in their original order, once each, with the original webhook-id and body, freshly signed
    assert [r.headers["webhook-id"] for r in again] == [e["webhook_id"] for e in kept]
    originals = {r.headers["webhook-id"]: r for r in refused}
    for r in again:
        assert r.body == originals[r.headers["webhook-id"]].body
    npm_verify(again, SECRET)
    live = [e for r in rx.requests[before:] if r.ok and r not in again for e in r.events]
    wait_for(lambda: len([e for r in rx.requests[before:] if r.ok and r.headers["webhook-id"]
                          not in originals for e in r.events]) == 3, scale(10),
             what="the live burst delivered")
    del live
    # the one refused again stays, with its new answer
    left = listing(sh)["dead_letters"]
    assert len(left) == 1 and left[0]["webhook_id"] == stubborn, left
    assert left[0]["status"] == 422 and left[0]["response"] == "still not"
    assert left[0]["attempts"] == 2 and left[0]["id"] == kept[1]["id"]
    # -- one by id, now that the endpoint takes it ----------------------------------------------
    rx.respond(200)
    code, _, ans = sh.api("POST", "/v1/dead-letters/%s/redeliver" % left[0]["id"])
    assert code == 202 and ans["ids"] == [left[0]["id"]] and ans["redelivering"] == 1, ans
    wait_for(lambda: not folder(tmp), scale(10), what="the last dead letter acknowledged")
    assert listing(sh) == {"dead_letters": [], "next_after": None}
    code, _, text = sh.api("GET", "/metrics")
    assert 'shardhook_webhook_redeliveries_total{webhook="0",result="acked"} %d' % len(kept) \
        in text, text
    assert 'shardhook_webhook_redeliveries_total{webhook="0",result="refused"} 1' in text
    sh.wait_log(r'msg="dead letter refused again; it stays in the dead-letter folder" webhook=0',
                1)


@timeout(150)
def test_redeliver_a_time_range_and_bad_input(tmp):
    fake, rx, sh, refused = start_refusing(tmp)
    got = listing(sh)["dead_letters"]
    oldest = got[-1]
    # a range holding only the oldest dead letter; its first attempt meets a 503, then a 200
    before = len(rx.requests)
    rx.respond([(503, {}, "busy")], then=200)
    code, _, ans = sh.api("POST", "/v1/webhooks/0/redeliver",
                          {"from": oldest["when"], "to": oldest["when"]})
    assert code == 202 and ans["ids"] == [oldest["id"]], ans
    wait_for(lambda: len(folder(tmp)) == len(got) - 1, scale(10), what="the oldest redelivered")
    assert oldest["id"] not in [e["id"] for e in listing(sh)["dead_letters"]]
    tries = rx.requests[before:]
    assert [r.status for r in tries] == [503, 200], tries
    assert {r.headers["webhook-id"] for r in tries} == {oldest["webhook_id"]}
    npm_verify(tries, SECRET)
    # a range before any of them
    code, _, ans = sh.api("POST", "/v1/webhooks/0/redeliver",
                          {"from": "2001-01-01T00:00:00Z", "to": "2001-01-02T00:00:00.5Z"})
    assert code == 202 and ans["redelivering"] == 0 and ans["ids"] == [], ans
    missing = "20010101T000000.000-w0-msg_nothere"
    bad = [
        ("GET", "/v1/dead-letters?limit=0", None, 400, "invalid_query"),
        ("GET", "/v1/dead-letters?limit=501", None, 400, "invalid_query"),
        ("GET", "/v1/dead-letters?limit=ten", None, 400, "invalid_query"),
        ("GET", "/v1/dead-letters?after=../../etc", None, 400, "invalid_query"),
        ("GET", "/v1/dead-letters?webhook=7", None, 404, "webhook_not_found"),
        ("POST", "/v1/dead-letters/nope/redeliver", None, 400, "invalid_id"),
        ("POST", "/v1/dead-letters/%s/redeliver" % missing, None, 404, "dead_letter_not_found"),
        ("POST", "/v1/dead-letters/%s/redeliver" % got[0]["id"], {"x": 1}, 400, "unknown_field"),
        ("DELETE", "/v1/dead-letters/shard-0.json", None, 400, "invalid_id"),
        ("DELETE", "/v1/dead-letters/" + missing, None, 404, "dead_letter_not_found"),
        ("POST", "/v1/webhooks/9/redeliver", {"all": True}, 404, "webhook_not_found"),
        ("POST", "/v1/webhooks/0/redeliver", None, 400, "missing_body"),
        ("POST", "/v1/webhooks/0/redeliver", {}, 400, "missing_field"),
        ("POST", "/v1/webhooks/0/redeliver", {"all": False}, 400, "invalid_field"),
        ("POST", "/v1/webhooks/0/redeliver", {"all": True, "from": "2001-01-01T00:00:00Z"}, 400,
         "invalid_field"),
        ("POST", "/v1/webhooks/0/redeliver", {"from": "yesterday"}, 400, "invalid_field"),
        ("POST", "/v1/webhooks/0/redeliver",
         {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, 400, "invalid_field"),
        ("PUT", "/v1/dead-letters/" + missing, None, 405, "method_not_allowed"),
    ]
    for method, path, body, status, code_want in bad:
        code, headers, err = sh.api(method, path, body)
        assert code == status and err["error"]["code"] == code_want, (method, path, code, err)
        if status == 405:
            assert headers["allow"] == "DELETE", headers
    assert sh.alive
    assert len(folder(tmp)) == len(got) - 1  # nothing else was touched


@timeout(120)
def test_a_paused_webhook_holds_its_redelivery_until_resumed(tmp):
    """Pause means nothing is sent to the webhook: redelivered dead letters wait too, and go out
    in order, under their webhook-ids, once it is resumed. The webhook is named: {name} is its
    name as well as its index."""
    fake, rx, sh, refused = start_refusing(tmp, name="audit")
    rx.respond(200)
    code, _, ans = sh.api("POST", "/v1/webhooks/audit/pause")
    assert code == 200 and ans["state"] == "paused", ans
    before = len(rx.requests)
    code, _, ans = sh.api("POST", "/v1/webhooks/audit/redeliver", {"all": True})
    assert code == 202 and ans["redelivering"] == len(refused), ans
    code, _, listed = sh.api("GET", "/v1/dead-letters?webhook=audit")
    assert code == 200 and len(listed["dead_letters"]) == len(refused), listed
    time.sleep(scale(1.5))
    assert len(rx.requests) == before, "a paused webhook got %d redelivered requests" % (
        len(rx.requests) - before)
    assert len(folder(tmp)) == len(refused)
    code, _, ans = sh.api("POST", "/v1/webhooks/audit/resume")
    assert code == 200, ans
    wait_for(lambda: len(folder(tmp)) == 0, scale(15), what="every dead letter redelivered")
    again = [r for r in rx.requests[before:] if r.status == 200]
    assert [r.headers["webhook-id"] for r in again] == [r.headers["webhook-id"] for r in refused]
    npm_verify(again, SECRET)
