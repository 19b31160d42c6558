#!/usr/bin/env python3
"""Runs the integration tests: every module-level test_* function of tests/integration/test_*.py,
by file then definition order, each in a forked process and a fresh temp folder (passed as `tmp`
when the function takes it). Prints `ok   file::name (1.2s)` or `FAIL file::name (1.2s)` with the
traceback and the last lines of every process log the test captured, or `skip file::name (why)`
for a test that raised harness.Skip("why") because this build cannot check its claim; then
exactly one closing line `N passed, M failed` (`, K skipped` added when K > 0). Exits 1 when a
test failed or none ran.

  python3 tests/integration/run.py [-k SUBSTRING] [-x] [-j N] [--timeout S] [--keep] [FILE...]

  -k    run only tests whose `file::name` contains SUBSTRING
  -x    stop at the first failure
  -j N  run up to N test files at once, each in its own worker process
  --timeout S   hard limit per test (default 120 s; a test may set its own with
                @harness.timeout(S)); past it the test fails and its processes are killed
  --keep        keep every test folder (failed tests' folders are always kept)
  --dir D       look for test files in D instead of this folder

Environment: SH_TEST_TIMEOUT_MULTIPLIER (default 1) scales every timeout, including the hard
one; BUILD (default build) names the folder holding shardhook and fake-discord.
"""
import argparse
import faulthandler
import importlib.util
import inspect
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import harness  # noqa: E402  (after the path is set)

LOG_TAIL = 40
RESULT_TAG = "@@result "


class Stop(BaseException):
    """Raised in a worker told to stop (SIGTERM): abort the running test and leave."""


def parse_args(argv):
    ap = argparse.ArgumentParser(description="Run the shardhook integration tests.")
    ap.add_argument("-k", dest="keyword", default="", help="only tests whose file::name contains this")
    ap.add_argument("-x", dest="exitfirst", action="store_true", help="stop at the first failure")
    ap.add_argument("-j", dest="jobs", type=int, default=1, help="test files run at once (default 1)")
    ap.add_argument("--timeout", type=float, default=120.0, help="hard limit per test, seconds (scaled)")
    ap.add_argument("--keep", action="store_true", help="keep the folders of passing tests too")
    ap.add_argument("--dir", default=str(HERE), help="folder holding test_*.py")
    ap.add_argument("--tmp-base", help=argparse.SUPPRESS)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("files", nargs="*", help="test files (default: every test_*.py)")
    return ap.parse_args(argv)


def discover(opts):
    test_dir = Path(opts.dir).resolve()
    if opts.files:
        paths = [Path(f) if Path(f).exists() else test_dir / f for f in opts.files]
        return sorted(p.resolve() for p in paths)
    return sorted(test_dir.glob("test_*.py"))


def load(path):
    """Import a test file; returns (module, None) or (None, traceback text)."""
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        return module, None
    except BaseException:
        return None, traceback.format_exc()


def tests_of(module):
    """Module-level functions named test_*, in definition order."""
    return [(name, fn) for name, fn in vars(module).items()
            if name.startswith("test_") and inspect.isfunction(fn) and fn.__module__ == module.__name__]


# -- one test, in a forked child ----------------------------------------------------------------
def _child(fn, tmp, w):
    """In the forked child: run fn, write a JSON result to w, exit. Never returns."""
    code = 1
    try:
        os.setpgid(0, 0)  # the parent signals this group; the terminal's Ctrl-C goes to the parent
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        out = os.open(str(tmp / "test-output.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        dump = open(tmp / "timeout-traceback.txt", "w")
        faulthandler.register(signal.SIGUSR1, file=dump, all_threads=True)

        def on_term(*_):  # the parent gave up on us: stop what the test started, then go
            harness.end_test()
            os._exit(3)
        signal.signal(signal.SIGTERM, on_term)

        harness.begin_test(tmp)
        ok, text, skipped = True, "", None
        try:
            if "tmp" in inspect.signature(fn).parameters:
                fn(tmp=tmp)
            else:
                fn()
        except harness.Skip as e:
            skipped = str(e) or "no reason given"
        except BaseException:
            ok, text = False, traceback.format_exc()
        problems = harness.end_test()
        if problems:
            ok, text, skipped = False, text + "\n".join(problems), None
        data = json.dumps({"ok": ok, "traceback": text, "skipped": skipped}).encode()
        while data:
            data = data[os.write(w, data):]
        code = 0
    finally:
        os._exit(code)


def _wait_pid(pid, timeout):
    """Reap pid within timeout; True if it exited."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if done:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _alive(pid, binary):
    """pid is still running binary (guards against a recycled pid)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")[0].decode("utf-8", "replace") == binary
    except (OSError, IndexError):
        return False


def _procs(tmp):
    """(pid, binary, log path) of every process the test started, from harness's record."""
    try:
        with open(tmp / harness.PROCS_FILE) as f:
            rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
        return [(int(r[0]), r[1], r[2]) for r in rows if len(r) == 3]
    except OSError:
        return []


def _kill_leftovers(tmp):
    """SIGTERM, then SIGKILL, whatever the test's processes still run (the test child is gone)."""
    left = [(pid, binary) for pid, binary, _ in _procs(tmp) if _alive(pid, binary)]
    for pid, _ in left:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + harness.scale(10)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [(pid, b) for pid, b in left if _alive(pid, b)]
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _abort(pid, tmp, dump_stacks):
    """Stop a test child that overran or was interrupted, and everything it started."""
    try:
        if dump_stacks:
            os.kill(pid, signal.SIGUSR1)
            time.sleep(0.3)
        os.kill(pid, signal.SIGTERM)
    except OSError:
        pass
    if not _wait_pid(pid, harness.scale(15)):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        _wait_pid(pid, 5)
    _kill_leftovers(tmp)


def _details(tmp, text):
    """The traceback, then the tail of every log the test captured."""
    parts = [text.rstrip()]
    seen = set()
    logs = [Path(log) for _, _, log in _procs(tmp)] + [tmp / "test-output.log"]
    for log in logs:
        if log in seen or not log.exists() or log.stat().st_size == 0:
            continue
        seen.add(log)
        lines = harness.read_log(log).splitlines()
        parts.append("--- %s (%s) ---" % (log.name, "last %d of %d lines" % (LOG_TAIL, len(lines))
                                         if len(lines) > LOG_TAIL else "%d lines" % len(lines)))
        parts.append("\n".join(lines[-LOG_TAIL:]))
    parts.append("--- test folder kept: %s ---" % tmp)
    return "\n".join(parts)


def run_test(test_id, fn, opts):
    """Run one test in a forked child; returns {"id", "ok", "secs", "details"}."""
    safe = test_id.replace("::", ".").replace("/", "_")
    tmp = Path(tempfile.mkdtemp(prefix=safe + ".", dir=opts.tmp_base))
    limit = harness.scale(getattr(fn, "timeout", opts.timeout))
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child(fn, tmp, w)
    os.close(w)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass  # the child did it first, or already exited
    data, timed_out, skipped = b"", False, None
    try:
        while True:
            left = start + limit - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([r], [], [], left)
            if ready:
                chunk = os.read(r, 65536)
                if not chunk:
                    break
                data += chunk
    except BaseException:  # Ctrl-C or Stop: take the test down with us
        _abort(pid, tmp, dump_stacks=False)
        raise
    finally:
        os.close(r)
    if timed_out:
        _abort(pid, tmp, dump_stacks=True)
        stacks = harness.read_log(tmp / "timeout-traceback.txt").strip()
        ok, text = False, "test timed out after %.1fs; its processes were killed.\nstacks at the timeout:\n%s" % (
            limit, stacks or "(none recorded)")
    else:
        if not _wait_pid(pid, harness.scale(30)):
            _abort(pid, tmp, dump_stacks=True)
        _kill_leftovers(tmp)
        try:
            result = json.loads(data)
            ok, text, skipped = result["ok"], result["traceback"], result.get("skipped")
        except ValueError:
            ok, text = False, "the test process died without a result"
    secs = time.monotonic() - start
    if ok and not opts.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"id": test_id, "ok": ok, "secs": secs, "details": "" if ok else _details(tmp, text),
            "skipped": skipped}


def run_file(path, opts, report):
    """Run the selected tests of one file, calling report(result) after each. Returns False when
    -x says to stop."""
    module, error = load(path)
    if module is None:
        report({"id": "%s::<import>" % path.name, "ok": False, "secs": 0.0, "details": error.rstrip()})
        return not opts.exitfirst
    for name, fn in tests_of(module):
        test_id = "%s::%s" % (path.name, name)
        if opts.keyword not in test_id:
            continue
        result = run_test(test_id, fn, opts)
        report(result)
        if not result["ok"] and opts.exitfirst:
            return False
    return True


# -- output -------------------------------------------------------------------------------------
def format_result(result):
    if result["ok"] and result.get("skipped"):
        return "skip %s (%s)" % (result["id"], result["skipped"])
    head = "%s %s (%.1fs)" % ("ok  " if result["ok"] else "FAIL", result["id"], result["secs"])
    if result["ok"]:
        return head
    return head + "\n" + "\n".join("    " + line for line in result["details"].splitlines())


class Tally:
    def __init__(self):
        self.passed, self.failed, self.skipped = [], [], []

    def report(self, result):
        if result["ok"] and result.get("skipped"):
            self.skipped.append(result["id"])
        else:
            (self.passed if result["ok"] else self.failed).append(result["id"])
        print(format_result(result), flush=True)


# -- -j: worker processes, one test file each ------------------------------------------------
def worker_main(opts):
    def on_term(*_):
        raise Stop()
    signal.signal(signal.SIGTERM, on_term)

    def emit(result):
        sys.stdout.write(RESULT_TAG + json.dumps(result) + "\n")
        sys.stdout.flush()
    try:
        for path in discover(opts):
            if not run_file(path, opts, emit):
                break
    except (Stop, KeyboardInterrupt):
        return 2
    return 0


def run_parallel(files, opts, tally):
    pending = list(files)
    running = {}  # stdout fd -> (Popen, buffer)
    stop = False
    try:
        while pending or running:
            while pending and not stop and len(running) < opts.jobs:
                argv = [sys.executable, "-u", __file__, "--worker", "--tmp-base", opts.tmp_base,
                        "--timeout", str(opts.timeout), "--dir", opts.dir, "-k", opts.keyword]
                argv += ["-x"] * opts.exitfirst + ["--keep"] * opts.keep + [str(pending.pop(0))]
                p = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
                running[p.stdout.fileno()] = [p, b""]
            if not running:
                break
            ready, _, _ = select.select(list(running), [], [], 1.0)
            for fd in ready:
                p, buf = running[fd]
                chunk = os.read(fd, 65536)
                buf += chunk
                *lines, buf = buf.split(b"\n")
                running[fd][1] = buf
                for line in lines:
                    text = line.decode("utf-8", "replace")
                    if text.startswith(RESULT_TAG):
                        result = json.loads(text[len(RESULT_TAG):])
                        tally.report(result)
                        if not result["ok"] and opts.exitfirst and not stop:
                            stop = True
                            for other, _ in running.values():
                                if other is not p:
                                    other.terminate()
                    elif text:
                        print(text, flush=True)
                if not chunk:
                    p.stdout.close()
                    p.wait()
                    if p.returncode not in (0, 2):
                        tally.report({"id": "worker for %s" % p.args[-1], "ok": False, "secs": 0.0,
                                      "details": "worker exited with code %d" % p.returncode})
                    del running[fd]
    finally:
        for p, _ in running.values():
            p.terminate()
        for p, _ in running.values():
            try:
                p.wait(harness.scale(30))
            except subprocess.TimeoutExpired:
                p.kill()


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    if opts.worker:
        return worker_main(opts)
    files = discover(opts)
    own_base = opts.tmp_base is None
    if own_base:
        opts.tmp_base = tempfile.mkdtemp(prefix="shardhook-it-")
    print("integration: %d files in %s, BUILD=%s, timeout multiplier %g%s" % (
        len(files), opts.dir, os.environ.get("BUILD") or "build", harness.MULTIPLIER,
        ", -j %d" % opts.jobs if opts.jobs > 1 else ""), flush=True)
    tally = Tally()
    interrupted = False
    try:
        if opts.jobs > 1:
            run_parallel(files, opts, tally)
        else:
            for path in files:
                if not run_file(path, opts, tally.report):
                    break
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted", flush=True)
    if own_base:
        try:
            os.rmdir(opts.tmp_base)  # only when every test folder was removed
        except OSError:
            print("test folders kept under %s" % opts.tmp_base)
    if tally.failed:
        print("failed: " + " ".join(tally.failed))
    if not tally.passed and not tally.failed and not tally.skipped:
        print("no tests ran")
    skipped = ", %d skipped" % len(tally.skipped) if tally.skipped else ""
    print("%d passed, %d failed%s" % (len(tally.passed), len(tally.failed), skipped), flush=True)
    if interrupted:
        return 130
    return 1 if tally.failed or not (tally.passed or tally.skipped) else 0


if __name__ == "__main__":
    sys.exit(main())
