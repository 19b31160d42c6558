"""Deployment: `shardhook --probe` against a running daemon, and what can be checked of docker/
and examples/systemd/ without a container engine or systemd running the unit: compose.yaml
parses and says what docker/README.md says, every config it mounts passes --check with the
environment it sets, the Dockerfile's user, entrypoint, health check and labels are the
README's, and the systemd unit passes `systemd-analyze verify`."""
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import harness
from harness import (ROOT, FakeDiscord, Receiver, Shardhook, base_config, build_dir,
                     run_shardhook, scale)

DOCKER = ROOT / "docker"
API_TOKEN = "probe-token-4f1c9a7e"


# ---- shardhook --probe -------------------------------------------------------------------------

def probe(url, token=None, env=None):
    e = dict(env or {})
    e["SHARDHOOK_API_TOKEN"] = token or ""
    return run_shardhook("--probe", url, env=e, timeout=10)


def test_help_lists_probe(tmp):
    code, out = run_shardhook("--help")
    assert code == 0 and "--probe URL" in out, out
    code, out = run_shardhook("--probe")
    assert code == 64, out


def test_probe_exit_codes_against_a_daemon(tmp):
    fake = FakeDiscord(tmp, identify_interval_ms=200)
    sh = Shardhook(base_config(fake, Receiver(), tmp, http={"token": API_TOKEN}), tmp)
    sh.wait_ready(timeout=20)
    base = sh.http_url
    # a proxy in the environment is not used: the probe talks to the daemon itself
    proxy = {"http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    outputs = []

    def run(path, token=None, env=None):
        code, out = probe(base + path, token, env)
        outputs.append(out)
        return code, out

    assert run("/healthz") == (0, "")
    assert run("/healthz", env=proxy) == (0, "")
    assert run("/readyz") == (0, "")
    code, out = run("/v1/shards")  # the API token is required there
    assert code == 1 and out.strip() == "shardhook: --probe: HTTP 401", out
    assert run("/v1/shards", token=API_TOKEN) == (0, "")
    code, out = run("/v1/no-such-route", token=API_TOKEN)
    assert code == 1 and out.strip() == "shardhook: --probe: HTTP 404", out
    sh.signal(15)
    assert sh.wait_exit(20) == 0
    code, out = run("/healthz", token=API_TOKEN)
    assert code == 1 and len(out.strip().splitlines()) == 1, out
    assert out.startswith("shardhook: --probe: ") and "HTTP" not in out, out
    for out in outputs:
        assert API_TOKEN not in out, out
    assert API_TOKEN not in sh.log_text()


def test_probe_gives_up_within_its_timeout(tmp):
    # a listener that accepts and never answers: the probe fails after about 3 s, not never
    import socket
    import time
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        t0 = time.monotonic()
        code, out = probe("http://127.0.0.1:%d/healthz" % srv.getsockname()[1])
        took = time.monotonic() - t0
    finally:
        srv.close()
    assert code == 1 and "timed out" in out.lower(), out
    assert 2.0 < took < scale(8), took


# ---- the Dockerfile ----------------------------------------------------------------------------

def dockerfile():
    """The final stage's instructions: a list of (INSTRUCTION, argument text), continuation
    lines joined, comments dropped."""
    lines, cur = [], ""
    for raw in (DOCKER / "Dockerfile").read_text().splitlines():
        if not cur and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.rstrip().endswith("\\"):
            cur += raw.rstrip()[:-1] + " "
            continue
        lines.append(cur + raw)
        cur = ""
    steps = [tuple((l.strip().split(None, 1) + [""])[:2]) for l in lines]
    steps = [(k.upper(), v.strip()) for k, v in steps]
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    return steps[last_from:]


def one(steps, key):
    found = [v for k, v in steps if k == key]
    assert len(found) == 1, (key, found)
    return found[0]


def labels(steps):
    out = {}
    for k, v in steps:
        if k == "LABEL":
            for pair in shlex.split(v):
                name, _, value = pair.partition("=")
                out[name] = value
    return out


def healthcheck_cmd(steps):
    text = one(steps, "HEALTHCHECK")
    opts, _, cmd = text.partition("CMD ")
    assert opts.strip() and cmd, text
    return json.loads(cmd)


def readme():
    return (DOCKER / "README.md").read_text()


def readme_says(pattern):
    m = re.search(pattern, readme())
    assert m, "docker/README.md does not say %r" % pattern
    return m.group(1)


def test_dockerfile_matches_the_readme(tmp):
    steps = dockerfile()
    entry = json.loads(one(steps, "ENTRYPOINT"))
    assert entry == [readme_says(r"\*\*Entrypoint\*\* `([^`]+)`")], entry
    cmd = json.loads(one(steps, "CMD"))
    assert " ".join(cmd) == readme_says(r"default command `([^`]+)`"), cmd
    uid = readme_says(r"uid and gid \*\*(\d+)\*\*")
    user = readme_says(r"\*\*User\*\* `([^`]+)`")
    assert one(steps, "USER") == "%s:%s" % (uid, uid)
    run = " ".join(v for k, v in steps if k == "RUN")
    assert re.search(r"useradd [^&]*--uid %s [^&]*\b%s\b" % (uid, user), run), run
    assert re.search(r"groupadd [^&]*--gid %s\b" % uid, run), run
    workdir = readme_says(r"\*\*Working directory\*\* `([^`]+)`")
    assert one(steps, "WORKDIR") == workdir
    vol = one(steps, "VOLUME")
    assert workdir in (json.loads(vol) if vol.startswith("[") else vol.split()), vol
    assert "chown %s:%s %s" % (uid, uid, workdir) in run, run
    # the user may write its working directory, and the default state_dir is inside it
    assert readme_says(r"default `(\./state)`") == "./state"
    hc = healthcheck_cmd(steps)
    said = readme_says(r"\*\*Health check\*\* `([^`]+)`").split()
    assert hc[0] == entry[0] and [Path(hc[0]).name] + hc[1:] == said, (hc, said)
    assert one(steps, "EXPOSE") == "7878"
    assert one(steps, "STOPSIGNAL") == "SIGTERM"


def test_dockerfile_labels(tmp):
    found = labels(dockerfile())
    version = re.search(r'SHARDHOOK_VERSION "([^"]+)"',
                        (ROOT / "lib/version.h").read_text()).group(1)
    want = {"title", "description", "version", "source", "licenses"}
    assert {"org.opencontainers.image." + w for w in want} <= set(found), found
    assert found["org.opencontainers.image.title"] == "shardhook"
    assert found["org.opencontainers.image.version"] == version, (found, version)
    assert found["org.opencontainers.image.description"]
    assert "--build-arg SOURCE=" in readme() and "--build-arg LICENSES=" in readme()


def test_image_runtime_has_hiredis_and_ignores_secrets(tmp):
    text = (DOCKER / "Dockerfile").read_text()
    assert "libhiredis-dev" in text and "libhiredis0.14" in text
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    assert "**/.env" in ignore and "build" in ignore, ignore


# ---- compose.yaml ------------------------------------------------------------------------------

FAKE_ENV = {
    "DISCORD_TOKEN": "MTIzNDU2Nzg5MDEyMzQ1Njc4.fake.token",
    "WEBHOOK_URL": "https://receiver.example.com/discord",
    "WEBHOOK_SECRET": "whsec_dGhlIGtleSBvZiB0aGUgY29tcG9zZSB0ZXN0Lg==",
    "SHARDHOOK_API_TOKEN": "0123456789abcdef0123456789abcdef",
    "REDIS_PASSWORD": "fedcba9876543210fedcba9876543210",
}
REF = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[?-])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def compose_refs(text):
    """Every variable compose.yaml takes from the environment (comment lines left out)."""
    text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
    return {m.group(1) or m.group(4) for m in REF.finditer(text.replace("$$", ""))}


def interpolate(value, env):
    """compose's ${NAME}, ${NAME:?err}, ${NAME:-default}, $NAME and $$ in every string."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m):
        name = m.group(1) or m.group(4)
        if name in env and (env[name] or not (m.group(2) or "").startswith(":")):
            return env[name]
        if (m.group(2) or "").endswith("?"):
            raise AssertionError("compose.yaml needs %s: %s" % (name, m.group(3)))
        return m.group(3) or ""
    parts = value.split("$$")
    return "$".join(REF.sub(sub, p) for p in parts)


def compose():
    try:
        import yaml
    except ImportError:
        raise harness.Skip("python3-yaml is not installed (scripts/install-deps)")
    text = (DOCKER / "compose.yaml").read_text()
    raw = yaml.safe_load(text)
    return raw, interpolate(raw, FAKE_ENV)


def nodes(doc):
    """The services built from the project's Dockerfile."""
    return {name: s for name, s in doc["services"].items()
            if (s.get("build") or {}).get("dockerfile") == "docker/Dockerfile"}


def env_of(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: str(v) for k, v in env.items()}


def mounts(service):
    """(source, target) of each volume entry, sources relative to docker/ resolved."""
    out = []
    for v in service.get("volumes") or []:
        parts = v.split(":")
        src, target = parts[0], parts[1]
        out.append((DOCKER / src if src.startswith((".", "/")) else src, target))
    return out


def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m)", str(text))
    assert m, text
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def test_compose_redis_settings(tmp):
    raw, doc = compose()
    redis = doc["services"]["redis"]
    assert redis["image"].startswith("redis:7"), redis["image"]
    assert "redis:7.2-bookworm" in readme() and redis["image"] == "redis:7.2-bookworm"
    cmd = redis["command"]
    assert cmd[0] == "redis-server", cmd
    pairs = dict(zip(cmd[1::2], cmd[2::2]))
    assert pairs.get("--appendonly") == "yes", cmd
    assert pairs.get("--appendfsync") == "everysec", cmd
    assert pairs.get("--maxmemory-policy") == "noeviction", cmd
    assert pairs.get("--requirepass") == FAKE_ENV["REDIS_PASSWORD"], cmd
    # the password is the environment's, never written in the file
    rawcmd = raw["services"]["redis"]["command"]
    assert re.fullmatch(r"\$\{REDIS_PASSWORD(:\?[^}]*)?\}", rawcmd[rawcmd.index("--requirepass") + 1])
    assert FAKE_ENV["REDIS_PASSWORD"] not in (DOCKER / "compose.yaml").read_text()
    assert "ports" not in redis, "Redis must not be published (no TLS)"
    assert [t for _, t in mounts(redis)] == ["/data"], redis.get("volumes")
    assert mounts(redis)[0][0] in doc["volumes"]
    assert redis.get("healthcheck", {}).get("test"), redis


def test_compose_nodes(tmp):
    raw, doc = compose()
    steps = dockerfile()
    hc = healthcheck_cmd(steps)
    workdir = one(steps, "WORKDIR")
    found = nodes(doc)
    assert len(found) == 3, sorted(found)
    names, volumes, ports = set(), set(), set()
    for name, s in found.items():
        assert s["build"]["context"] == ".." and s["healthcheck"]["test"] == ["CMD"] + hc, s
        assert (s["depends_on"]["redis"] or {}).get("condition") == "service_healthy", s
        env = env_of(s)
        names.add(env["SHARDHOOK_NODE"])
        assert s["hostname"] == name == env["SHARDHOOK_NODE"], (name, s["hostname"])
        for k in FAKE_ENV:  # every secret from the environment, none written in the file
            assert re.fullmatch(r"\$\{%s(:\?[^}]*)?\}" % k, env_of(raw["services"][name])[k]), k
        state = [src for src, t in mounts(s) if t == workdir]
        assert len(state) == 1 and state[0] in doc["volumes"], s["volumes"]
        volumes.add(state[0])
        ports.update(s.get("ports") or [])
        assert all(p.startswith("127.0.0.1:") for p in s.get("ports") or []), s["ports"]
    assert len(names) == 3 and len(volumes) == 3, (names, volumes)
    assert len(ports) == 3, ports


def node_config(service):
    [src] = [src for src, t in mounts(service) if t == "/etc/shardhook.json"]
    assert isinstance(src, Path) and src.is_file(), src
    return src


def test_compose_configs_pass_check(tmp):
    raw, doc = compose()
    steps = dockerfile()
    hc_port = re.match(r"http://127\.0\.0\.1:(\d+)/", healthcheck_cmd(steps)[-1]).group(1)
    grace_ok = 0
    for name, s in nodes(doc).items():
        path = node_config(s)
        env = dict(env_of(s), HOSTNAME=s.get("hostname", name))
        text = path.read_text()
        # every variable the config reads is one this service sets (not the test machine's)
        wanted = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))
        assert wanted <= set(env), (name, wanted - set(env))
        code, out = run_shardhook("--check", "-c", path, env=env)
        assert code == 0 and out.strip().endswith(": ok"), (name, out)
        for secret in FAKE_ENV.values():
            assert secret not in out
        cfg = json.loads(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env[m.group(1)], text))
        assert cfg["http"]["listen"] == "0.0.0.0:%s" % hc_port, cfg["http"]
        assert cfg["state_dir"] == one(steps, "WORKDIR"), cfg["state_dir"]
        assert cfg["cluster"]["node"] == name
        assert cfg["cluster"]["advertise"] == "http://%s:%s" % (name, hc_port)
        assert re.fullmatch(r"redis://:%s@redis:6379/\d+" % FAKE_ENV["REDIS_PASSWORD"],
                            cfg["cluster"]["redis"]), "cluster.redis"
        # SIGTERM: handoffs, then the webhooks' flush, each up to shutdown_timeout_ms
        assert seconds(s["stop_grace_period"]) > 2 * cfg.get("shutdown_timeout_ms", 10000) / 1000
        grace_ok += 1
    assert grace_ok == 3


def test_compose_env_example_names_every_variable(tmp):
    compose()  # skipped without YAML, like the other compose tests
    refs = compose_refs((DOCKER / "compose.yaml").read_text())
    example = {l.split("=", 1)[0] for l in (DOCKER / "env.example").read_text().splitlines()
               if l and not l.startswith("#")}
    assert refs == example == set(FAKE_ENV), (refs, example)
    assert "/docker/.env" in (ROOT / ".gitignore").read_text().split()


# ---- examples/systemd --------------------------------------------------------------------------

UNIT = ROOT / "examples/systemd/shardhook.service"


def unit_settings():
    """{(section, key): [values]} of the unit, comments left out."""
    out, section = {}, None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault((section, key.strip()), []).append(value.strip())
    return out


def default_shutdown_timeout_ms():
    row = [l for l in (ROOT / "docs/configuration.md").read_text().splitlines()
           if l.startswith("| `shutdown_timeout_ms` |")]
    return int(re.search(r"\| `(\d+)` \|", row[0]).group(1))


def test_systemd_unit_verifies(tmp):
    exe = shutil.which("systemd-analyze")
    if not exe:
        raise harness.Skip("systemd-analyze is not installed")
    binary = (build_dir() / "shardhook").resolve()
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/shardhook " in text
    d = Path(tmp) / "unit"
    d.mkdir()
    (d / "shardhook.service").write_text(text.replace("/usr/local/bin/shardhook", str(binary)))
    p = subprocess.run([exe, "verify", str(d / "shardhook.service")], capture_output=True,
                       text=True, timeout=scale(60), env=dict(os.environ, SYSTEMD_LOG_COLOR="0"))
    # verify answers 0 even for unknown keys and unparsable values: it must say nothing at all
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), (p.stdout, p.stderr)


def test_systemd_unit_settings(tmp):
    u = unit_settings()

    def get(key, section="Service"):
        v = u.get((section, key))
        assert v, "%s= missing" % key
        return v[-1]
    assert get("Type") == "simple"
    assert get("Restart") == "on-failure"
    assert set(get("RestartPreventExitStatus").split()) == {"64", "78"}
    assert get("KillSignal") == "SIGTERM"
    assert seconds(get("TimeoutStopSec")) > 2 * default_shutdown_timeout_ms() / 1000
    assert get("ExecStart").split()[1:] == ["-c", "/etc/shardhook/config.json"]
    assert get("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert get("EnvironmentFile").startswith("/etc/shardhook/")
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices"):
        assert get(key) == "yes", key
    assert get("ProtectSystem") == "strict"
    assert get("StateDirectory") == "shardhook"
    assert get("WorkingDirectory") == "/var/lib/shardhook"
    assert get("DynamicUser") == "yes" or u.get(("Service", "User"))
    families = get("RestrictAddressFamilies").split()
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= set(families) and "AF_PACKET" not in families
    fd_want = int(re.search(r"#define FD_WANT (\d+)", (ROOT / "bridge/main.c").read_text()).group(1))
    assert int(get("LimitNOFILE")) >= fd_want
    # setrlimit (the daemon raises its open-file limit) is in @system-service, not filtered out
    assert "@resources" not in " ".join(u.get(("Service", "SystemCallFilter"), []))
    assert get("WantedBy", "Install") == "multi-user.target"
    # examples/config.json, which the unit's README installs, keeps its state where the unit
    # lets it write
    assert json.loads((ROOT / "examples/config.json").read_text())["state_dir"] == \
        get("WorkingDirectory")
