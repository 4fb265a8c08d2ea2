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
from optuna_energy.energy.nvml import GpuId, NvmlCounterMeter, NvmlPowerMeter
from optuna_energy.energy.rapl import RaplMeter

__all__ = [
    "EnergyEstimateWarning",
    "EnergyMeter",
    "EnergyMeterError",
    "EnergyMeterWarning",
    "EnergyWindow",
    "GpuId",
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


def select_meter(device: str, *, gpu: GpuId | None = None,
                 power_interval_s: float = 0.1) -> EnergyMeter | None:
    """The best hardware meter that works for ``device``, or ``None`` for the estimate.

    A CUDA device tries ``nvml-counter`` then ``nvml-power``; the CPU tries ``rapl``. Every
    step down warns and says why.

    Args:
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``, as ``str(torch.device)`` gives it.
        gpu: For a CUDA device, its UUID or PCI bus id (see ``optuna_energy.measure.gpu_id``).
        power_interval_s: Seconds between power samples of ``nvml-power``.

    Example:
        >>> meter = select_meter("cpu")  # RaplMeter where the powercap tree is readable
        >>> meter.begin_window("idle"); time.sleep(1); meter.end_window("idle").watts
    """
    if device.startswith("cuda"):
        if gpu is None:
            raise ValueError(f"device {device!r} needs its GpuId to find the GPU in NVML")
        try:
            return NvmlCounterMeter(gpu)
        except EnergyMeterError as error:
            warnings.warn(f"nvml-counter: {error}; measuring with nvml-power (power sampled "
                          f"every {power_interval_s:g} s) instead", EnergyMeterWarning, stacklevel=2)
        try:
            return NvmlPowerMeter(gpu, interval_s=power_interval_s)
        except EnergyMeterError as error:
            reason = f"nvml-power: {error}"
    elif device == "cpu":
        try:
            return RaplMeter()
        except EnergyMeterError as error:
            reason = f"rapl: {error}"
    else:
        reason = "no meter knows this kind of device"
    warnings.warn(
        f"no hardware energy meter works for device {device!r} ({reason}); energy per "
        "inference is the analytical estimate (energy_source='estimate')",
        EnergyEstimateWarning,
        stacklevel=2,
    )
    return None
