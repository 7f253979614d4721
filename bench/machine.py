"""How much of the machine other work took while a scenario ran.

On a shared 2-core machine another job (a test suite, a build) skews every timing. :class:`CpuMeter`
compares the CPU time the whole machine spent busy (``/proc/stat``) with the CPU time of this
process and its children (finished ones through :func:`os.times`, running ones such as the registry
through ``/proc/PID/stat``); the difference is what other processes took.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")


def _machine_busy() -> float:
    """CPU seconds the machine spent not idle since boot (steal counted as busy)."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / _TICK


def _live_children() -> float:
    """CPU seconds of this process's running (not yet reaped) children."""
    total = 0
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as handle:
                after = handle.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(after[1]) == me:  # fields after the name: state, ppid, ..., utime (12), stime (13)
            total += int(after[11]) + int(after[12])
    return total / _TICK


def _ours() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system + _live_children()


@dataclass
class CpuMeter:
    """Started by :meth:`start`; :meth:`foreign_share` is the share of all CPUs others used since."""

    wall: float = 0.0
    busy: float = 0.0
    ours: float = 0.0

    def start(self) -> CpuMeter:
        self.wall, self.busy, self.ours = time.monotonic(), _machine_busy(), _ours()
        return self

    def foreign_share(self) -> float:
        wall = time.monotonic() - self.wall
        foreign = (_machine_busy() - self.busy) - (_ours() - self.ours)
        cpus = os.cpu_count() or 1
        return max(0.0, foreign) / (wall * cpus) if wall > 0 else 0.0
