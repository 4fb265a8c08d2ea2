"""What else ran on the machine while something was measured: load average, CPU steal, the
share of the CPUs other processes used.

A measured inference time on a shared machine is partly a measure of the machine's load; these
numbers, taken at both edges of a measurement, say how much (``/proc/stat`` and
``os.getloadavg``; on a system without them, the numbers it cannot read are ``None``).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

_STAT = "/proc/stat"
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclasses.dataclass(frozen=True)
class LoadSnapshot:
    """The machine's CPU counters at one moment (:func:`snapshot`)."""

    wall: float
    """``time.perf_counter()``."""
    own_cpu: float
    """CPU seconds this process has used (all its threads)."""
    ticks: tuple[int, ...] | None
    """The aggregate ``cpu`` line of ``/proc/stat`` (user nice system idle iowait irq softirq
    steal ...), in clock ticks; ``None`` where it cannot be read."""


def _cpu_ticks() -> tuple[int, ...] | None:
    try:
        with open(_STAT) as stat:
            first = stat.readline().split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    return tuple(int(value) for value in first[1:9])


def snapshot() -> LoadSnapshot:
    """The CPU counters now: one edge of :func:`disturbance`."""
    return LoadSnapshot(wall=time.perf_counter(), own_cpu=time.process_time(), ticks=_cpu_ticks())


def disturbance(before: LoadSnapshot, after: LoadSnapshot) -> dict[str, Any]:
    """What disturbed the machine between two snapshots, as trial record values.

    - ``load_1min``: the one-minute load average at the end (runnable processes, ours included);
    - ``cpu_steal``: the share of CPU time the hypervisor gave to other machines;
    - ``cpu_others``: the share of all CPUs that other processes of this machine kept busy,
      from 0 (nothing else ran) to 1 (every CPU busy with others' work).

    The shares are ``None`` where ``/proc/stat`` cannot be read or did not advance.
    """
    try:
        load: float | None = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    steal = others = None
    if before.ticks is not None and after.ticks is not None:
        delta = [end - start for start, end in zip(before.ticks, after.ticks)]
        total = sum(delta)
        if total > 0:
            idle, iowait, stolen = delta[3], delta[4], delta[7]
            steal = round(stolen / total, 4)
            cpus = os.cpu_count() or 1
            wall = after.wall - before.wall
            busy_seconds = (total - idle - iowait - stolen) / _TICKS
            own = after.own_cpu - before.own_cpu
            if wall > 0:
                # Ticks are counted at 100 Hz: a short span reads up to a tick off, never below 0.
                others = round(min(max((busy_seconds - own) / (wall * cpus), 0.0), 1.0), 4)
    return {"load_1min": load, "cpu_steal": steal, "cpu_others": others}
