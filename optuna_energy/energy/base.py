"""The one small interface every energy meter implements.

Modelled on Zeus's ``ZeusMonitor``: a measurement is a named window, opened with
``begin_window`` and closed with ``end_window``, which returns its duration and joules. A meter
only has to say how much energy its hardware has counted so far (``total_joules``); the
windows are the same for every meter. Synchronising the compute device at both edges is the
caller's job (see ``optuna_energy.measure``): meters know nothing of torch or architectures.
"""

from __future__ import annotations

import abc
import dataclasses
import time
from typing import Any


@dataclasses.dataclass(frozen=True)
class EnergyWindow:
    seconds: float
    joules: float

    @property
    def watts(self) -> float:
        return self.joules / self.seconds if self.seconds > 0 else 0.0


class EnergyMeter(abc.ABC):
    """A hardware energy counter read through named measurement windows."""

    source: str
    """Recorded on every trial as ``energy_source``."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[float, float]] = {}

    @abc.abstractmethod
    def total_joules(self) -> float:
        """Energy counted since an arbitrary origin; never decreases."""

    def info(self) -> dict[str, Any]:
        """What was measured: device name, power limit and the like, for the trial's record."""
        return {}

    def close(self) -> None:
        """Release the hardware handle or background thread."""

    def begin_window(self, name: str) -> None:
        if name in self._open:
            raise ValueError(f"energy window {name!r} is already open")
        self._open[name] = (time.perf_counter(), self.total_joules())

    def end_window(self, name: str) -> EnergyWindow:
        try:
            start_time, start_joules = self._open.pop(name)
        except KeyError:
            raise ValueError(f"energy window {name!r} was never opened") from None
        joules = self.total_joules() - start_joules
        return EnergyWindow(seconds=time.perf_counter() - start_time, joules=joules)

    def __enter__(self) -> EnergyMeter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
