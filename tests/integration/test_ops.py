"""Operating shardhook: SIGHUP reloads the config, --check and the README's example, log lines
(escaped logfmt, JSON), and what a start-up's readiness polls log."""
import base64
import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

from harness import (ROOT, FakeDiscord, Receiver, Shardhook, base_config, build_dir,
                     parse_logfmt, scale, verify_signature)

SECRET_OLD = "whsec_" + base64.b64encode(b"the key before the rotation....").decode()
SECRET_NEW = "whsec_" + base64.b64encode(b"the key after the rotation!!!!!").decode()


def start(tmp, webhook=None, **cfg):
    fake = FakeDiscord(tmp, identify_interval_ms=200)
    rx = Receiver()
    config = base_config(fake, rx, tmp, webhook=webhook, **cfg)
    sh = Shardhook(config, tmp)
    sh.wait_ready(timeout=20)
    return fake, rx, sh, config


def rewrite(sh, config):
    """Write config (a dict, or raw text) over the running daemon's file."""
    with open(sh.config_path, "w") as f:
        f.write(config if isinstance(config, str) else json.dumps(config, indent=2))


def hup(sh, since):
    """SIGHUP, then wait for the reload's outcome line; return the log from since."""
    sh.signal(signal.SIGHUP)
    sh.wait_log(r'config reload(ed| failed)', 10, since)
    return sh.log_text()[since:]


def stop_cleanly(sh):
    assert sh.alive(), "shardhook died: %s" % sh.log_text()[-2000:]
    sh.signal(signal.SIGTERM)
    assert sh.wait_exit(20) == 0


# ---- SIGHUP ------------------------------------------------------------------------------------

def test_sighup_rotates_the_webhook_secret(tmp):
    # only the bursts' events: no start-up event still on its way when the key changes
    fake, rx, sh, config = start(tmp, webhook={"secret": SECRET_OLD, "headers": {"X-Key": "one"},
                                               "events": ["MESSAGE_CREATE"]})
    accept = {"secret": SECRET_OLD}
    bad = []

    def answer(request):
        if verify_signature(accept["secret"], request.headers, request.body):
            return 200
        bad.append(request)
        return 500  # retried, and signed again
    rx.respond(answer)
    fake.burst(3, shard=0)
    rx.wait_events(3, 10)
    assert all(r.headers.get("x-key") == "one" for r in rx.requests) and not bad

    config["webhooks"][0]["secret"] = SECRET_NEW
    config["webhooks"][0]["headers"] = {"X-Key": "two"}
    rewrite(sh, config)
    accept["secret"] = SECRET_NEW  # from here on only the new key verifies
    before = len(rx.requests)
    text = hup(sh, sh.log_offset())
    assert re.search(r'msg="config reloaded".*applied="webhooks\[0\]\.secret,webhooks\[0\]\.headers"',
                     text), text
    assert "restart" not in text.split("config reloaded")[0], text  # nothing needs a restart

    fake.burst(5, shard=0)
    rx.wait_events(8, 10)
    later = rx.requests[before:]
    assert later and not bad, "%d requests failed the new key" % len(bad)
    assert all(verify_signature(SECRET_NEW, r.headers, r.body) for r in later)
    assert not any(verify_signature(SECRET_OLD, r.headers, r.body) for r in later)
    assert all(r.headers.get("x-key") == "two" for r in later)
    log = sh.log_text()
    for secret in (SECRET_OLD, SECRET_NEW, SECRET_NEW[6:]):
        assert secret not in log
    stop_cleanly(sh)


def test_sighup_replaces_the_api_token(tmp):
    fake, rx, sh, config = start(tmp, http={"token": "token-before-1234"})
    assert sh.api("GET", "/v1/shards")[0] == 200
    config["http"]["token"] = "token-after-5678"
    rewrite(sh, config)
    text = hup(sh, sh.log_offset())
    assert re.search(r'msg="config reloaded".*applied="http\.token"', text), text
    assert sh.api("GET", "/v1/shards", token="token-before-1234")[0] == 401
    assert sh.api("GET", "/v1/shards", token="token-after-5678")[0] == 200
    assert sh.api("GET", "/metrics", token="token-after-5678")[0] == 200
    assert "token-after-5678" not in sh.log_text() and "token-before-1234" not in sh.log_text()
    stop_cleanly(sh)


def test_sighup_with_an_invalid_file_keeps_the_running_config(tmp):
    fake, rx, sh, config = start(tmp, http={"token": "token-kept-1234"}, log_level="info")
    broken = json.loads(json.dumps(config))
    broken["webhooks"][0]["max_in_flight"] = 0
    broken["http"]["token"] = "token-never-used"
    for text_of_file in (json.dumps(broken), '{"webhooks": [', ):
        rewrite(sh, text_of_file)
        since = sh.log_offset()
        text = hup(sh, since)
        errors = [l for l in text.splitlines() if "level=error" in l]
        assert len(errors) == 1 and "config reload failed" in errors[0], text
        if text_of_file.startswith("{\"token"):
            assert "webhooks[0].max_in_flight: must be an integer from 1 to 64" in errors[0]
        else:
            assert "invalid JSON at line 1" in errors[0]
        assert "config reloaded" not in text
    # the old config still runs: its token, its webhook
    assert sh.api("GET", "/v1/shards", token="token-kept-1234")[0] == 200
    assert sh.api("GET", "/v1/shards", token="token-never-used")[0] == 401
    fake.burst(4, shard=0)
    rx.wait_events(4, 10)
    stop_cleanly(sh)


def test_sighup_names_the_keys_that_need_a_restart(tmp):
    fake, rx, sh, config = start(tmp)
    config["intents"] = ["GUILDS"]
    config["shards"] = {"total": 2}
    config["webhooks"][0]["max_batch_events"] = 7
    rewrite(sh, config)
    text = hup(sh, sh.log_offset())
    lines = [l for l in text.splitlines() if "need a restart" in l]
    assert len(lines) == 1, text
    assert 'keys="intents,shards,webhooks[0].max_batch_events"' in lines[0]
    assert "level=warn" in lines[0]
    assert re.search(r'msg="config reloaded".*applied="" restart_needed=3', text), text
    # nothing of it was applied: still one shard, still delivering
    assert len(fake.sessions()) == 1
    fake.burst(3, shard=0)
    rx.wait_events(3, 10)
    stop_cleanly(sh)


def test_sighup_changes_log_level_and_format(tmp):
    fake, rx, sh, config = start(tmp, log_level="info")
    since = sh.log_offset()
    sh.api("GET", "/healthz")
    time.sleep(scale(0.2))
    assert 'msg="control request"' not in sh.log_text()[since:]  # a debug line

    config["log_level"] = "debug"
    rewrite(sh, config)
    hup(sh, sh.log_offset())
    since = sh.log_offset()
    sh.api("GET", "/healthz")
    sh.wait_log(r'level=debug msg="control request" route="/healthz"', 5, since)

    config["log_format"] = "json"
    rewrite(sh, config)
    since = sh.log_offset()
    sh.signal(signal.SIGHUP)
    sh.wait_log(r'"msg":"config reloaded"', 10, since)
    sh.api("GET", "/healthz")
    sh.wait_log(r'"route":"/healthz"', 5, since)
    lines = [l for l in sh.log_text()[since:].splitlines() if l.startswith("{")]
    records = [json.loads(l) for l in lines]
    reloaded = [r for r in records if r.get("msg") == "config reloaded"]
    assert reloaded and reloaded[0]["level"] == "info" and reloaded[0]["applied"] == "log_format"
    assert any(r.get("route") == "/healthz" and r["level"] == "debug" for r in records)
    assert all(set(r) >= {"ts", "level"} for r in records)
    stop_cleanly(sh)


# ---- log lines -------------------------------------------------------------------------------

def test_log_values_with_quotes_stay_one_field(tmp):
    # a value that holds quotes (here a config error's text) is escaped, not cut short
    fake, rx, sh, config = start(tmp, log_level="info")
    rewrite(sh, '{"token": "t", "intents": ["GUILD_MESAGES"]}')
    text = hup(sh, sh.log_offset())
    line = [l for l in text.splitlines() if "config reload failed" in l][0]
    rec = parse_logfmt(line)
    assert rec["level"] == "error", rec
    assert rec["error"] == ('intents[0]: unknown intent "GUILD_MESAGES" '
                            '(did you mean "GUILD_MESSAGES"?)'), line
    stop_cleanly(sh)


def test_readyz_polls_during_start_up_are_not_warnings(tmp):
    # shard 0's second guild never arrives: /readyz answers 503 for the whole test
    fake = FakeDiscord(tmp, identify_interval_ms=200, unavailable_forever=1)
    rx = Receiver()
    sh = Shardhook(base_config(fake, rx, tmp, guild_create_timeout_ms=60000, log_level="info"), tmp)
    sh.wait_http("/healthz")
    since = sh.log_offset()
    codes = [sh.api("GET", "/readyz")[0] for _ in range(20)]
    assert codes == [503] * 20
    time.sleep(scale(0.2))
    text = sh.log_text()[since:]
    assert "level=warn" not in text, text
    stop_cleanly(sh)


# ---- --check and the README ------------------------------------------------------------------

def test_check_names_the_file_once(tmp):
    for text in ('{"token": "t", "webhooks": [', '{"token": "t", "intents": ["NOPE"]}'):
        code, out = Shardhook.check(text, tmp)
        assert code == 78, out
        lines = out.strip().splitlines()
        assert len(lines) == 1, out
        path = lines[0].split(": ")[1]
        assert path.endswith(".json") and lines[0].count(path) == 1, out
    code, out = Shardhook.check({"token": "t"}, tmp)
    assert code == 0 and out.strip().endswith(": ok") and out.count(".json") == 1, out


def readme_commands():
    """The shell block of README.md's "Running it for a bot": its export and --check lines."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Running it for a bot", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    lines = [l for l in block.splitlines() if l.strip()]
    exports = [l for l in lines if l.startswith("export ")]
    checks = [l for l in lines if "--check" in l]
    assert exports and len(checks) == 1, block
    return exports, checks[0]


def test_readme_check_example_passes_as_written(tmp):
    exports, check = readme_commands()
    exe = str(build_dir() / "shardhook")
    script = "\n".join(exports + [check.replace("build/shardhook", shlex.quote(exe), 1)])
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISCORD_TOKEN", "WEBHOOK_SECRET", "AUDIT_WEBHOOK_SECRET",
                        "SHARDHOOK_API_TOKEN")}
    p = subprocess.run(["bash", "-euc", script], cwd=str(ROOT), env=env, capture_output=True,
                       text=True, timeout=scale(30))
    assert p.returncode == 0, (script, p.stdout, p.stderr)
    assert p.stdout.strip() == "shardhook: examples/config.json: ok", p.stdout
