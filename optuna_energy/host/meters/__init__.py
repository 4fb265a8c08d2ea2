"""Energy meters behind one interface, registered with the device kinds they can read, and the
choice of meter for a device. A meter for another vendor is one module implementing
``EnergyMeter`` plus one :data:`METERS` entry (and, for a new kind of device, one backend in
``optuna_energy.host.devices``).

| ``energy_source`` | device | what is read |
|---|---|---|
| ``nvml-counter`` | CUDA, Volta and newer | the GPU's energy counter |
| ``nvml-power`` | CUDA without the counter | power sampled every 100 ms, integrated |
| ``rapl`` | CPU | powercap package (+ dram) counters |
| ``estimate`` | anything else | the analytical estimate, never silently |
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable

from optuna_energy.host.meters import estimate
from optuna_energy.host.meters.base import EnergyMeter, EnergyMeterError, EnergyWindow, Work
from optuna_energy.host.meters.estimate import EstimateMeter
from optuna_energy.host.meters.nvml import (
    COUNTER_SOURCE,
    POWER_SOURCE,
    GpuId,
    NvmlCounterMeter,
    NvmlPowerMeter,
    gpu_at_index,
)
from optuna_energy.host.meters.rapl import SOURCE as RAPL_SOURCE
from optuna_energy.host.meters.rapl import RaplMeter

__all__ = [
    "EnergyEstimateWarning",
    "EnergyMeter",
    "EnergyMeterError",
    "EnergyMeterWarning",
    "EnergyWindow",
    "EstimateMeter",
    "GpuId",
    "METERS",
    "METER_CHOICES",
    "MeterEntry",
    "NvmlCounterMeter",
    "NvmlPowerMeter",
    "RaplMeter",
    "estimate",
    "gpu_at_index",
    "select_meter",
    "Work",
]


class EnergyMeterWarning(UserWarning):
    """The best meter for the device could not be used; a less precise one measures instead."""


class EnergyEstimateWarning(EnergyMeterWarning):
    """No hardware meter could be read, so energy is the analytical estimate."""


@dataclasses.dataclass(frozen=True)
class MeterRequest:
    """What opening a meter may need: the device, its GPU identity, the sampling interval."""

    device: str
    gpu: GpuId | None
    power_interval_s: float


@dataclasses.dataclass(frozen=True)
class MeterEntry:
    """A registered hardware meter: the device kinds it reads and how to open it.

    ``open`` is also the availability probe: it raises ``EnergyMeterError`` saying why the meter
    cannot read this device (no library, no driver, no permission, no counter).
    """

    device_kinds: tuple[str, ...]
    open: Callable[[MeterRequest], EnergyMeter]


def _nvml(kind: type[NvmlCounterMeter] | type[NvmlPowerMeter]) -> Callable[[MeterRequest], EnergyMeter]:
    def open_(request: MeterRequest) -> EnergyMeter:
        if request.gpu is None:
            raise EnergyMeterError("NVML meters need a CUDA device and its GpuId")
        if kind is NvmlPowerMeter:
            return NvmlPowerMeter(request.gpu, interval_s=request.power_interval_s)
        return kind(request.gpu)

    return open_


METERS: dict[str, MeterEntry] = {
    COUNTER_SOURCE: MeterEntry(("cuda",), _nvml(NvmlCounterMeter)),
    POWER_SOURCE: MeterEntry(("cuda",), _nvml(NvmlPowerMeter)),
    RAPL_SOURCE: MeterEntry(("cpu",), lambda request: RaplMeter()),
}
"""Hardware meters by ``energy_source``, best first for each kind of device."""

METER_CHOICES = ("auto", *METERS, estimate.SOURCE)
"""What ``[measure] meter`` may name: ``auto`` picks the best that works."""


def select_meter(device: str, *, gpu: GpuId | None = None, power_interval_s: float = 0.1,
                 meter: str = "auto") -> EnergyMeter:
    """The energy meter for ``device``: the best registered meter that opens, else the estimate.

    With ``meter="auto"``, the meters registered for the device's kind are tried best first
    (a CUDA device: ``nvml-counter`` then ``nvml-power``; the CPU: ``rapl``), and every step
    down warns and says why; when none opens, the analytical estimate (``EstimateMeter``)
    measures, with an ``EnergyEstimateWarning``. A named meter is opened or fails.

    Args:
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``, as ``str(torch.device)`` gives it.
        gpu: For a CUDA device, its UUID or PCI bus id (see ``optuna_energy.host.devices.identity``).
        power_interval_s: Seconds between power samples of ``nvml-power``.
        meter: ``auto`` or one of :data:`METER_CHOICES`; ``estimate`` gives the estimate
            without a warning.

    Raises:
        EnergyMeterError: The named meter cannot be opened; the message says why.
        ValueError: ``meter`` is not one of :data:`METER_CHOICES`.

    Example:
        >>> meter = select_meter("cpu")  # RaplMeter where the powercap tree is readable
        >>> meter.begin_window("idle"); time.sleep(1); meter.end_window("idle").watts
    """
    request = MeterRequest(device=device, gpu=gpu, power_interval_s=power_interval_s)
    if meter == estimate.SOURCE:
        return EstimateMeter()
    if meter != "auto":
        if meter not in METERS:
            raise ValueError(f"unknown energy meter {meter!r}; allowed: {', '.join(METER_CHOICES)}")
        return METERS[meter].open(request)
    candidates = [source for source, entry in METERS.items() if device.split(":")[0] in entry.device_kinds]
    reason = "no meter knows this kind of device"
    for index, source in enumerate(candidates):
        try:
            return METERS[source].open(request)
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
    return EstimateMeter()
