"""The one small interface every energy meter implements.

Modelled on Zeus's ``ZeusMonitor``: a measurement is a named window, opened with
``begin_window`` and closed with ``end_window``, which returns its duration and joules. A meter
only has to say how much energy its hardware has counted so far (``total_joules``); the
windows are the same for every meter. Synchronising the compute device at both edges is the
caller's job (see ``optuna_energy.measuring.measure``): meters know nothing of torch or architectures.
The caller may say what ran in a window (``Work``): hardware meters ignore it, the analytical
estimate (``estimate.EstimateMeter``) computes its joules from it, so that "no hardware meter"
is a meter like the others and not a special case in every caller.
"""

from __future__ import annotations

import abc
import dataclasses
import time
from typing import Any, ClassVar


class EnergyMeterError(RuntimeError):
    """A hardware meter cannot be opened, or it gave a reading that cannot be true."""


@dataclasses.dataclass(frozen=True)
class EnergyWindow:
    """Duration and energy of one closed measurement window."""

    seconds: float
    joules: float

    @property
    def watts(self) -> float:
        return self.joules / self.seconds if self.seconds > 0 else 0.0


@dataclasses.dataclass(frozen=True)
class Work:
    """What ran inside a window, for meters that estimate energy instead of counting it."""

    macs: int
    """Multiply-accumulates of one image's forward pass."""
    params: int
    activations: int
    """Elements one image's forward pass writes."""
    batch_size: int
    images: int
    """Images processed in the window."""
    training: bool = False
    """Forward and backward passes (training) rather than forward passes alone."""


class EnergyMeter(abc.ABC):
    """A hardware energy counter read through named measurement windows.

    Example:
        >>> meter.begin_window("inference")
        >>> run_the_model()
        >>> meter.end_window("inference").joules
    """

    source: str
    """Recorded on every trial as ``energy_source``."""
    counts_hardware: ClassVar[bool] = True
    """Reads a hardware counter (idle power is worth measuring); ``False`` for the estimate."""

    step_timeout_s: float | None = None
    """For counters that move in steps: how long a window edge waits for the next step."""
    step_poll_s: float = 0.001

    def __init__(self) -> None:
        self._open: dict[str, tuple[float, float]] = {}

    @abc.abstractmethod
    def total_joules(self) -> float:
        """Energy counted since an arbitrary origin; never decreases."""

    def info(self) -> dict[str, Any]:
        """What was measured: device name, power limit and the like, for the trial's record."""
        return {}

    def conditions(self) -> dict[str, Any]:
        """What the hardware says of its own state now, where it can tell (a GPU's clocks,
        temperature, throttle reasons): read at the end of every measuring window, so a slow
        window can be told from a slow model. Empty for meters that cannot tell."""
        return {}

    def close(self) -> None:  # noqa: B027 - most meters hold nothing to release
        """Release the hardware handle or background thread."""

    def _await_step(self, since: float) -> tuple[float, float]:
        """The time and reading when the counter first differs from ``since``, or at the timeout."""
        deadline = time.perf_counter() + (self.step_timeout_s or 0.0)
        while True:
            joules = self.total_joules()
            now = time.perf_counter()
            if joules != since or now >= deadline:
                return now, joules
            time.sleep(self.step_poll_s)

    def _edge(self) -> tuple[float, float]:
        """Time and energy at a window's edge.

        A counter that moves in steps is read at the moment it steps, so that a window spans
        whole steps instead of losing up to one step at each edge.
        """
        if self.step_timeout_s is None:
            return time.perf_counter(), self.total_joules()
        return self._await_step(self.total_joules())

    def begin_window(self, name: str) -> None:
        if name in self._open:
            raise ValueError(f"energy window {name!r} is already open")
        self._open[name] = self._edge()

    def end_window(self, name: str, *, work: Work | None = None) -> EnergyWindow:
        """Close the window ``name`` and return its duration and joules (``work`` is a hint that
        only estimating meters use).

        Raises:
            EnergyMeterError: The meter counted no energy: a powered chip always uses some, so
                the counter is stuck and no reading of it can be trusted.
        """
        try:
            start_time, start_joules = self._open.pop(name)
        except KeyError:
            raise ValueError(f"energy window {name!r} was never opened") from None
        end_time, end_joules = self._edge()
        window = EnergyWindow(seconds=end_time - start_time, joules=end_joules - start_joules)
        if window.joules <= 0:
            raise EnergyMeterError(
                f"{self.source} counted {window.joules:g} J in the {window.seconds:.3f} s window "
                f"{name!r}: its counter is not advancing, so its readings cannot be trusted"
            )
        return window

    def cancel_window(self, name: str) -> None:
        """Forget the open window ``name`` (its work failed), so that the name can be used again."""
        self._open.pop(name, None)

    def __enter__(self) -> EnergyMeter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
