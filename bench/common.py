"""bench/common.py: the process chores every benchmark script shares: a free loopback port, a
raised file-descriptor limit (1,000 shards need a socket each on both sides), and a process's CPU
seconds (its kernel CPU clock) and memory (from /proc)."""
import os
import resource
import socket
import time


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
