"""The status page (GET /) in headless Chromium against the real daemon: one card per webhook of
GET /v1/webhooks, a failing webhook shown as failing with its last error status, live charts
fed by the page's own polls, and the rest of the page unharmed when /v1/webhooks is missing.
Each test saves a screenshot of the page into its folder and into build/test-artifacts/, and
prints the path (test-output.log; `run.py --keep` keeps the folder)."""
import http.server
import re
import shutil
import subprocess
import tempfile
import threading

import harness
from harness import (FakeDiscord, Receiver, Shardhook, base_config, http_request, scale, timeout,
                     wait_for)


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("chromium is not installed (scripts/install-deps installs it)")


def headless(url, extra, budget_ms):
    """Run headless Chromium on url for budget_ms of virtual time; its stdout."""
    profile = tempfile.mkdtemp(prefix="shardhook-chromium-")
    try:
        p = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                            "--no-first-run", "--disable-background-networking",
                            "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                            "--user-data-dir=" + profile, "--virtual-time-budget=%d" % budget_ms,
                            "--window-size=1280,1400"] + extra + [url],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=scale(90))
        return p.stdout.decode("utf-8", "replace")
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def dump_dom(url, budget_ms=9000):
    return headless(url, ["--dump-dom"], budget_ms)


def screenshot(url, tmp, name, budget_ms=9000):
    """A PNG of the page after budget_ms, in the test folder and in build/test-artifacts/."""
    path = tmp / (name + ".png")
    headless(url, ["--screenshot=" + str(path)], budget_ms)
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "no screenshot"
    keep = harness.build_dir() / "test-artifacts"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, keep / path.name)
    print("status page screenshot: %s (copy: %s)" % (path, keep / path.name), flush=True)
    return path


def cards(dom):
    """{webhook: {"state", "health", "status" (data-last-status), "text"}} from the DOM."""
    out = {}
    for m in re.finditer(r'<div class="hook health-(\w+)" data-webhook="([^"]*)" data-index="(\d+)" '
                         r'data-state="(\w+)" data-health="(\w+)">(.*?)<canvas class="chart" '
                         r'data-samples="(\d+)"', dom, re.S):
        cls, key, _, state, hv, inner, samples = m.groups()
        st = re.search(r'data-last-status="([^"]*)"', inner)
        out[key] = {"class": cls, "state": state, "health": hv, "status": st and st.group(1),
                    "text": re.sub(r"<[^>]+>", " ", inner), "samples": int(samples)}
    return out


@timeout(300)
def test_cards_show_a_failing_webhook_as_failing(tmp):
    api_token = "page-token-5678"
    fake = FakeDiscord(tmp, shards=2, identify_interval_ms=200)
    ok_rx, bad_rx = Receiver(), Receiver(status=500)
    cfg = base_config(fake, ok_rx, tmp, http={"token": api_token})
    cfg["webhooks"].append({"url": bad_rx.url + "hooks?sig=query-secret", "events": ["*"],
                            "secret": None, "retry_base_ms": 200, "retry_max_ms": 1000})
    sh = Shardhook(cfg, tmp)
    sh.wait_ready(timeout=20)
    fake.burst(40)
    ok_rx.wait_events(40, timeout=20)
    wait_for(lambda: len(bad_rx.requests) >= 2, 20, what="the failing receiver answered 500 twice")
    code, _, hooks = sh.api("GET", "/v1/webhooks")
    assert code == 200, hooks
    assert hooks["webhooks"][1]["last_failure"]["status"] == 500, hooks

    url = sh.http_url + "/#token=" + api_token
    stop = threading.Event()
    streamer = threading.Thread(target=stream, args=(fake, stop), daemon=True)
    streamer.start()  # events keep coming while the page polls, so the charts have something
    try:
        check_failing_page(url, tmp, ok_rx, bad_rx, api_token)
    finally:
        stop.set()
        streamer.join(scale(10))


def stream(fake, stop):
    while not stop.wait(0.5):
        try:
            fake.burst(10)
        except Exception:  # the test is ending; the assertions are about the page
            return


def check_failing_page(url, tmp, ok_rx, bad_rx, api_token):
    dom = wait_for(lambda: (lambda d: d if len(cards(d)) == 2 else None)(dump_dom(url)), 120, 1,
                   what="2 webhook cards in the DOM")
    got = cards(dom)
    good, bad = got["0"], got["1"]
    # the failing one shows as failing, with its last error's status; the healthy one as ok
    assert bad["health"] == "failing" and bad["class"] == "failing", bad
    assert bad["state"] in ("ok", "retrying", "paused", "spooling"), bad
    assert bad["status"] == "500" and "HTTP 500" in bad["text"], bad
    assert "failing" in bad["text"], bad
    assert good["health"] == "ok" and good["state"] == "ok" and good["status"] == "", good
    assert "no error since start" in good["text"], good
    # host, no query secret, and the card's figures
    host = bad_rx.url.split("//")[1].rstrip("/")
    assert host in bad["text"] and "query-secret" not in dom and api_token not in dom
    for label in ("events/s", "oldest unacked", "queue", "spool", "last success"):
        assert label in good["text"], (label, good)
    # the charts hold the page's own samples: at least two polls each, and the shard set's chart
    assert good["samples"] >= 2 and bad["samples"] >= 2, got
    shard_chart = re.search(r'<canvas class="chart" id="shard-chart" data-samples="(\d+)"', dom)
    assert shard_chart and int(shard_chart.group(1)) >= 2, dom[:2000]
    # the rest of the page is still there
    assert dom.count('class="shard ') == 2 and "2 of 2 shards ready" in dom
    screenshot(url, tmp, "status-page-failing-webhook")


class _NoWebhooksProxy(http.server.ThreadingHTTPServer):
    """Forwards every GET to the daemon, except /v1/webhooks: 404 as from a shardhook without it."""


def _proxy(target):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path.split("?")[0] == "/v1/webhooks":
                code, ctype, body = 404, "application/json", \
                    b'{"error":{"code":"not_found","message":"no such path"}}'
            else:
                hdrs = {k: v for k, v in self.headers.items() if k.lower() == "authorization"}
                code, rh, data = http_request(target + self.path, "GET", headers=hdrs)
                ctype = rh.get("content-type", "text/plain")
                body = data.encode() if isinstance(data, str) else \
                    __import__("json").dumps(data).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = _NoWebhooksProxy(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@timeout(240)
def test_page_survives_a_missing_webhooks_endpoint(tmp):
    fake = FakeDiscord(tmp, shards=2, identify_interval_ms=200)
    rx = Receiver()
    sh = Shardhook(base_config(fake, rx, tmp), tmp)
    sh.wait_ready(timeout=20)
    rx.wait_events(1, timeout=20)
    srv = _proxy(sh.http_url)
    try:
        url = "http://127.0.0.1:%d/" % srv.server_address[1]
        dom = wait_for(lambda: (lambda d: d if d.count('class="shard ') == 2 else None)(
            dump_dom(url)), 120, 1, what="2 shard tiles in the DOM through the proxy")
        assert "2 of 2 shards ready" in dom
        assert '<div id="hooks" data-state="unavailable">' in dom, dom[dom.find('id="hooks"'):][:500]
        assert "webhook status unavailable" in dom
        assert not cards(dom)
        # the raw delivery figures from /metrics still show
        assert re.findall(r'<tr data-metric="(webhook_[a-z_]+)">', dom)
        assert 'id="progress-bar" style="width: 100%;"' in dom
        screenshot(url, tmp, "status-page-no-webhooks-endpoint")
    finally:
        srv.shutdown()
        srv.server_close()
