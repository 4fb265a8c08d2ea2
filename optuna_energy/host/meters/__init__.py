"""Energy meters behind one interface, registered with the device kinds they can read and the
settings they take, and the choice of meter for a device. A meter for another vendor is one
module implementing ``EnergyMeter`` (with, if it has settings, a frozen dataclass of them) plus
one :func:`register` call (and, for a new kind of device, one backend in
``optuna_energy.host.devices``); ``optuna_energy.testing.meter_suite`` checks it.

A meter's settings dataclass names its config table in a ``table`` class variable: the config
reads it from ``[measure.<table>]`` (``[measure.nvml] power_interval_s = 0.1``), validated by the
dataclass itself (it raises ``ValueError`` on a bad value), ``EnergyMonitor`` takes its fields as
keyword arguments, and :func:`select_meter` hands the meter its instance.

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
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from optuna_energy.host.meters import estimate
from optuna_energy.host.meters.base import EnergyMeter, EnergyMeterError, EnergyWindow, Work
from optuna_energy.host.meters.estimate import EstimateMeter
from optuna_energy.host.meters.nvml import (
    COUNTER_SOURCE,
    POWER_SOURCE,
    GpuId,
    NvmlCounterMeter,
    NvmlPowerMeter,
    NvmlSettings,
    gpu_at_index,
)
from optuna_energy.host.meters.rapl import SOURCE as RAPL_SOURCE
from optuna_energy.host.meters.rapl import RaplMeter, RaplSettings

__all__ = [
    "EnergyEstimateWarning",
    "EnergyMeter",
    "EnergyMeterError",
    "EnergyMeterWarning",
    "EnergyWindow",
    "EstimateMeter",
    "GpuId",
    "METERS",
    "MeterEntry",
    "MeterRequest",
    "NvmlCounterMeter",
    "NvmlPowerMeter",
    "NvmlSettings",
    "RaplMeter",
    "RaplSettings",
    "estimate",
    "gpu_at_index",
    "meter_choices",
    "register",
    "select_meter",
    "settings_from_keywords",
    "settings_tables",
    "Work",
]


class EnergyMeterWarning(UserWarning):
    """The best meter for the device could not be used; a less precise one measures instead."""


class EnergyEstimateWarning(EnergyMeterWarning):
    """No hardware meter could be read, so energy is the analytical estimate."""


@dataclasses.dataclass(frozen=True)
class MeterRequest:
    """What opening a meter may need: the device, its GPU identity, the meter's settings."""

    device: str
    gpu: GpuId | None
    settings: Any
    """An instance of the entry's ``settings`` dataclass (its defaults unless given); ``None``
    for a meter without settings."""


@dataclasses.dataclass(frozen=True)
class MeterEntry:
    """A registered hardware meter: the device kinds it reads, how to open it, its settings.

    ``open`` is also the availability probe: it raises ``EnergyMeterError`` saying why the meter
    cannot read this device (no library, no driver, no permission, no counter).
    """

    device_kinds: tuple[str, ...]
    open: Callable[[MeterRequest], EnergyMeter]
    settings: type | None = None
    """A frozen dataclass with defaults for every field and a ``table`` class variable naming its
    config table (``[measure.<table>]``); meters may share one (both NVML meters read ``nvml``)."""


def _nvml(kind: type[NvmlCounterMeter] | type[NvmlPowerMeter]) -> Callable[[MeterRequest], EnergyMeter]:
    def open_(request: MeterRequest) -> EnergyMeter:
        if request.gpu is None:
            raise EnergyMeterError("NVML meters need a CUDA device and its GpuId")
        if kind is NvmlPowerMeter:
            return NvmlPowerMeter(request.gpu, interval_s=request.settings.power_interval_s)
        return kind(request.gpu)

    return open_


METERS: dict[str, MeterEntry] = {
    COUNTER_SOURCE: MeterEntry(("cuda",), _nvml(NvmlCounterMeter), NvmlSettings),
    POWER_SOURCE: MeterEntry(("cuda",), _nvml(NvmlPowerMeter), NvmlSettings),
    RAPL_SOURCE: MeterEntry(("cpu",), lambda request: RaplMeter(request.settings.powercap_root),
                            RaplSettings),
}
"""Hardware meters by ``energy_source``, best first for each kind of device; add with
:func:`register` and read when needed."""


def register(source: str, entry: MeterEntry) -> None:
    """Add a hardware meter, tried after the registered ones for its device kinds.

    ``source`` is its ``energy_source``: what ``[measure] meter`` and ``EnergyMonitor(meter=)``
    name, and what every trial it measures stores.

    Raises:
        ValueError: The source is taken, or the settings class is not a frozen dataclass with
            defaults and a ``table`` name, or shares a table or a field name with another meter's
            settings; the message says which.

    Example:
        >>> @dataclasses.dataclass(frozen=True)
        ... class AcmeSettings:
        ...     table: ClassVar[str] = "acme"
        ...     sensor: str = "/dev/acme0"
        >>> meters.register("acme", MeterEntry(("cuda",), open_acme, AcmeSettings))
    """
    if source in METERS or source in ("auto", estimate.SOURCE):
        raise ValueError(f"energy meter {source!r} is registered already; taken: {', '.join(meter_choices())}")
    if not isinstance(entry, MeterEntry):
        raise ValueError(f"a meter entry must be a MeterEntry, got {type(entry).__name__}")
    if entry.settings is not None:
        _check_settings(entry.settings)
    METERS[source] = entry


def _check_settings(settings: type) -> None:
    table = getattr(settings, "table", None)
    if not (dataclasses.is_dataclass(settings) and settings.__dataclass_params__.frozen  # type: ignore[attr-defined]
            and isinstance(table, str) and table):
        raise ValueError(f"meter settings {settings.__name__} must be a frozen dataclass with a "
                         "'table' class variable naming its config table")
    try:
        settings()
    except TypeError:
        raise ValueError(f"meter settings {settings.__name__} need a default for every field") from None
    known = settings_tables()
    if table in known and known[table] is not settings:
        raise ValueError(f"settings table {table!r} of {settings.__name__} is taken by {known[table].__name__}")
    mine = {field.name for field in dataclasses.fields(settings)}
    for other in known.values():
        shared = mine & {field.name for field in dataclasses.fields(other)} if other is not settings else set()
        if shared:
            raise ValueError(f"setting {sorted(shared)[0]!r} of {settings.__name__} is also one of "
                             f"{other.__name__}: EnergyMonitor takes settings by field name")


def meter_choices() -> tuple[str, ...]:
    """What ``[measure] meter`` may name: ``auto`` (the best that works), every registered meter,
    and the estimate."""
    return ("auto", *METERS, estimate.SOURCE)


def settings_tables() -> dict[str, type]:
    """Each registered settings dataclass by its config table name (``nvml``, ``rapl``...)."""
    return {entry.settings.table: entry.settings  # type: ignore[attr-defined]
            for entry in METERS.values() if entry.settings is not None}


def settings_from_keywords(keywords: Mapping[str, Any]) -> list[Any]:
    """The settings dataclasses filled from keyword arguments named as their fields (what
    ``EnergyMonitor`` takes, e.g. ``power_interval_s=0.05``); the others keep their defaults.

    Raises:
        ValueError: A keyword no meter takes, or a value its dataclass refuses, naming it.
    """
    tables = settings_tables()
    owner = {field.name: settings for settings in tables.values() for field in dataclasses.fields(settings)}
    unknown = sorted(set(keywords) - set(owner))
    if unknown:
        raise ValueError(f"no energy meter has a setting {unknown[0]!r}; allowed: {', '.join(sorted(owner))}")
    return [settings(**{name: value for name, value in keywords.items() if owner[name] is settings})
            for settings in tables.values()]


def select_meter(device: str, *, gpu: GpuId | None = None, settings: Iterable[Any] = (),
                 meter: str = "auto") -> EnergyMeter:
    """The energy meter for ``device``: the best registered meter that opens, else the estimate.

    With ``meter="auto"``, the meters registered for the device's kind are tried best first
    (a CUDA device: ``nvml-counter`` then ``nvml-power``; the CPU: ``rapl``), and every step
    down warns and says why; when none opens, the analytical estimate (``EstimateMeter``)
    measures, with an ``EnergyEstimateWarning``. A named meter is opened or fails.

    Args:
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``, as ``str(torch.device)`` gives it.
        gpu: For a CUDA device, its UUID or PCI bus id (see ``optuna_energy.host.devices.identity``).
        settings: Instances of meters' settings dataclasses (``NvmlSettings(power_interval_s=0.05)``);
            a meter whose settings are not among them gets the defaults.
        meter: ``auto`` or one of :func:`meter_choices`; ``estimate`` gives the estimate
            without a warning.

    Raises:
        EnergyMeterError: The named meter cannot be opened; the message says why.
        ValueError: ``meter`` is not one of :func:`meter_choices`.

    Example:
        >>> meter = select_meter("cpu")  # RaplMeter where the powercap tree is readable
        >>> meter.begin_window("idle"); time.sleep(1); meter.end_window("idle").watts
    """
    given = {type(item): item for item in settings}

    def open_(source: str) -> EnergyMeter:
        entry = METERS[source]
        chosen = None if entry.settings is None else given.get(entry.settings) or entry.settings()
        return entry.open(MeterRequest(device=device, gpu=gpu, settings=chosen))

    if meter == estimate.SOURCE:
        return EstimateMeter()
    if meter != "auto":
        if meter not in METERS:
            raise ValueError(f"unknown energy meter {meter!r}; allowed: {', '.join(meter_choices())}")
        return open_(meter)
    candidates = [source for source, entry in METERS.items() if device.split(":")[0] in entry.device_kinds]
    reason = "no meter knows this kind of device"
    for index, source in enumerate(candidates):
        try:
            return open_(source)
        except EnergyMeterError as error:
            reason = f"{source}: {error}"
        if index + 1 < len(candidates):
            _warn(f"{reason}; measuring with {candidates[index + 1]} instead", EnergyMeterWarning)
    _warn(f"no hardware energy meter works for device {device!r} ({reason}); energy per "
          "inference is the analytical estimate (energy_source='estimate')", EnergyEstimateWarning)
    return EstimateMeter()


_WARNED: dict = {}
"""The meter warnings already shown (``warnings``' registry: each message once, as with ``warn``)."""


def _warn(message: str, category: type[Warning]) -> None:
    """Warn about the machine, not about a line of code: attributed to this module at line 0, the
    warning prints as one message with no source line under it (``warnings.warn`` would print
    the package's line that selected the meter, which means nothing to the user)."""
    warnings.warn_explicit(message, category, filename=__name__, lineno=0, module=__name__,
                           registry=_WARNED)
