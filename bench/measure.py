"""What the benchmarks read off the processes: resident memory and CPU time of a process, CPU the whole machine
used, and whether something else keeps it busy (all from /proc; 0 or nothing where it is missing)."""

from __future__ import annotations

import os


def _page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default), from /proc; peak RSS where /proc is missing."""
    try:
        with open(f"/proc/{pid or 'self'}/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * _page_size()
    except OSError:
        if pid is not None:
            return 0
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process, from /proc (0 where /proc is missing)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_busy_seconds() -> float:
    """CPU time all processes on the machine have used (every core), from /proc/stat; 0 where missing."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            values = [int(v) for v in fh.readline().split()[1:9]]  # user .. steal (guest is inside user)
    except (OSError, ValueError):
        return 0.0
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


def machine_busy() -> str | None:
    """A note if the machine is already busy (1-minute load average ≥ 0.5), else None."""
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        return None
    return f"the 1-minute load average is {load1:.2f} before the run" if load1 >= 0.5 else None


def mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"
