"""bench/common.py: the process chores every benchmark script shares: a free loopback port, a
raised file-descriptor limit (1,000 shards need a socket each on both sides), a process's CPU
seconds (its kernel CPU clock) and memory (from /proc), children in process groups of their own
(Proc) that stop_all() ends on the way out, JSON calls and bounded waits."""
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import shutil
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    except (ValueError, OSError):
        pass


def cpu_seconds(pid):
    """User + system CPU seconds of pid so far, to the nanosecond.

    /proc/PID/stat counts in clock ticks (10 ms): a short run that used less than a tick reads
    as 0 CPU seconds, and per-CPU-second figures then go missing (more often under load, when
    the process wakes less often and does more per wake-up). Linux names another process's CPU
    clock as ((~pid) << 3) | 2 (CPUCLOCK_SCHED, the kernel's exact runtime of every thread);
    the ticks stay as the fallback where that clock cannot be read."""
    try:
        return time.clock_gettime_ns(((~pid) << 3) | 2) / 1e9
    except (OSError, OverflowError, AttributeError):
        pass
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_kib(pid, field="VmRSS"):
    """A memory figure of pid in KiB from /proc/PID/status (VmRSS, VmHWM, ...)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


CHILDREN = []  # process groups started here, stopped on the way out


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def call(url, body=None, timeout=30, raw=False):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        out = r.read()
    return out if raw else json.loads(out or b"{}")


def wait(pred, timeout, what, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(interval)


class Proc:
    """A child in its own process group, its output in a log file."""

    def __init__(self, argv, log_path, env=None, stdout_pipe=False):
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE if stdout_pipe else self.log,
                                     stderr=self.log, stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True, preexec_fn=raise_fd_limit)
        CHILDREN.append(self)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def tail(self, n=1500):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def stop(self, grace=20):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # whatever the child started in its group goes too
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()
        if self in CHILDREN:
            CHILDREN.remove(self)


def stop_all():
    for p in list(reversed(CHILDREN)):
        p.stop(grace=5)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def headline(command, repeat, when):
    """The first line of a benchmark's tables: how to reproduce them and when."""
    return "Command: `%s`; medians of %d run%s; %s." % (command, repeat,
                                                       "s" if repeat > 1 else "", when)


def run_parts(script, steps, wanted, prof, repeat, results, keep, after=None):
    """Run each (name, fn) of steps whose name is in wanted, as fn(prof, repeat, tmp, results)
    in one fresh work folder, with its seconds in results["meta"]; then after(). SIGTERM stops
    it like Ctrl-C; every child is stopped at the end; the folder goes once all went through,
    unless keep."""
    tmp = tempfile.mkdtemp(prefix="shardhook-bench-")
    t0 = time.monotonic()
    ok = False

    def on_signal(_sig, _frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for part, fn in steps:
            if part in wanted:
                t = time.monotonic()
                log("%s (%s, %d run%s each)" % (part, results["meta"]["profile"], repeat,
                                                "s" if repeat > 1 else ""))
                fn(prof, repeat, tmp, results)
                results["meta"]["seconds_" + part] = round(time.monotonic() - t, 1)
        if after:
            after()
        results["meta"]["seconds"] = round(time.monotonic() - t0, 1)
        ok = True
    finally:
        stop_all()
        if ok and not keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log("%s: logs kept in %s" % (script, tmp))


def write_results(script, results, md, markdown_path=None, json_path=None):
    """Print the tables, and write them (markdown_path) and every figure (json_path)."""
    print(md)
    log("%s: %.0f s in all" % (script, results["meta"]["seconds"]))
    if markdown_path:
        with open(markdown_path, "w") as f:
            f.write(md)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=1)
