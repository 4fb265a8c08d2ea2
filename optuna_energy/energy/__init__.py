"""Energy meters behind one interface, and the choice of meter for a device.

| ``energy_source`` | device | what is read |
|---|---|---|
| ``nvml-counter`` | CUDA, Volta and newer | the GPU's energy counter |
| ``nvml-power`` | CUDA without the counter | power sampled every 100 ms, integrated |
| ``rapl`` | CPU | powercap package (+ dram) counters |
| ``estimate`` | anything else | the analytical estimate, never silently |
"""

from __future__ import annotations

import warnings

from optuna_energy.energy import estimate
from optuna_energy.energy.base import EnergyMeter, EnergyMeterError, EnergyWindow
from optuna_energy.energy.nvml import (
    COUNTER_SOURCE,
    POWER_SOURCE,
    GpuId,
    NvmlCounterMeter,
    NvmlPowerMeter,
)
from optuna_energy.energy.rapl import SOURCE as RAPL_SOURCE
from optuna_energy.energy.rapl import RaplMeter

__all__ = [
    "EnergyEstimateWarning",
    "EnergyMeter",
    "EnergyMeterError",
    "EnergyMeterWarning",
    "EnergyWindow",
    "GpuId",
    "METER_CHOICES",
    "NvmlCounterMeter",
    "NvmlPowerMeter",
    "RaplMeter",
    "estimate",
    "select_meter",
]


class EnergyMeterWarning(UserWarning):
    """The best meter for the device could not be used; a less precise one measures instead."""


class EnergyEstimateWarning(EnergyMeterWarning):
    """No hardware meter could be read, so energy is the analytical estimate."""


METER_CHOICES = ("auto", COUNTER_SOURCE, POWER_SOURCE, RAPL_SOURCE, estimate.SOURCE)
"""What ``[measure] meter`` may name: ``auto`` picks the best that works."""

_CANDIDATES = {"cuda": (COUNTER_SOURCE, POWER_SOURCE), "cpu": (RAPL_SOURCE,)}
"""Meters to try for each kind of device, best first."""


def _open(source: str, *, gpu: GpuId | None, power_interval_s: float) -> EnergyMeter:
    if source == RAPL_SOURCE:
        return RaplMeter()
    if source not in (COUNTER_SOURCE, POWER_SOURCE):
        raise ValueError(f"unknown energy meter {source!r}; allowed: {', '.join(METER_CHOICES)}")
    if gpu is None:
        raise EnergyMeterError("NVML meters need a CUDA device and its GpuId")
    if source == COUNTER_SOURCE:
        return NvmlCounterMeter(gpu)
    return NvmlPowerMeter(gpu, interval_s=power_interval_s)


def select_meter(device: str, *, gpu: GpuId | None = None, power_interval_s: float = 0.1,
                 meter: str = "auto") -> EnergyMeter | None:
    """The energy meter for ``device``, or ``None`` for the analytical estimate.

    With ``meter="auto"``, a CUDA device tries ``nvml-counter`` then ``nvml-power``, the CPU
    tries ``rapl``, and every step down warns and says why. A named meter is opened or fails.

    Args:
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``, as ``str(torch.device)`` gives it.
        gpu: For a CUDA device, its UUID or PCI bus id (see ``optuna_energy.measure.gpu_id``).
        power_interval_s: Seconds between power samples of ``nvml-power``.
        meter: ``auto`` or one of the sources; ``estimate`` returns ``None`` without a warning.

    Raises:
        EnergyMeterError: The named meter cannot be opened; the message says why.

    Example:
        >>> meter = select_meter("cpu")  # RaplMeter where the powercap tree is readable
        >>> meter.begin_window("idle"); time.sleep(1); meter.end_window("idle").watts
    """
    if meter == estimate.SOURCE:
        return None
    if meter != "auto":
        return _open(meter, gpu=gpu, power_interval_s=power_interval_s)
    candidates = _CANDIDATES.get(device.split(":")[0], ())
    reason = "no meter knows this kind of device"
    for index, source in enumerate(candidates):
        try:
            return _open(source, gpu=gpu, power_interval_s=power_interval_s)
        except EnergyMeterError as error:
            reason = f"{source}: {error}"
        if index + 1 < len(candidates):
            warnings.warn(f"{reason}; measuring with {candidates[index + 1]} instead",
                          EnergyMeterWarning, stacklevel=2)
    warnings.warn(
        f"no hardware energy meter works for device {device!r} ({reason}); energy per "
        "inference is the analytical estimate (energy_source='estimate')",
        EnergyEstimateWarning,
        stacklevel=2,
    )
    return None
