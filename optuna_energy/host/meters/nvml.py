"""NVIDIA GPU energy through NVML: the energy counter, or power sampled in the background.

NVML comes from the ``nvidia-ml-py`` package (import name ``pynvml``), imported only when a GPU
meter is opened, so the CPU path needs no driver. NVML numbers GPUs its own way, not as CUDA
does under ``CUDA_VISIBLE_DEVICES``, so a GPU is found by its UUID or PCI bus id (a
:class:`GpuId`, filled in by the caller from ``torch.cuda.get_device_properties``), never by
position.

- ``nvml-counter``: ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules, Volta and newer). It
  steps about every 100 ms, so each window edge waits for the next step: a window then spans
  whole steps instead of losing up to one step at either end.
- ``nvml-power``: instantaneous power (the instant-power field where the driver has it, else
  ``nvmlDeviceGetPowerUsage``, which is a one-second average on Ampere and newer) sampled
  every ``interval_s`` (100 ms, as in the paper) and integrated with the trapezoid rule.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, ClassVar

from optuna_energy.host.meters.base import EnergyMeter, EnergyMeterError

COUNTER_SOURCE = "nvml-counter"
POWER_SOURCE = "nvml-power"

CLOCK_SM = 1
"""``NVML_CLOCK_SM`` of ``nvmlClockType_t``."""
TEMPERATURE_GPU = 0
"""``NVML_TEMPERATURE_GPU`` of ``nvmlTemperatureSensors_t``."""
CLOCK_EVENT_REASONS = {
    0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap", 0x8: "hw_slowdown",
    0x10: "sync_boost", 0x20: "sw_thermal_slowdown", 0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown", 0x100: "display_clock_setting",
}
"""NVML's clock event (throttle) reason bits, ``nvmlClocksEventReason*`` in ``nvml.h``, by the
names ``nvidia-smi -q -d PERFORMANCE`` gives them."""

_REASON_FUNCTIONS = ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons")

_VALUE_MEMBERS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}
"""``nvmlValueType_t`` -> the member of the ``c_nvmlValue_t`` union that holds the value."""


@dataclasses.dataclass(frozen=True)
class NvmlSettings:
    """``[measure.nvml]``: the NVML meters' settings."""

    table: ClassVar[str] = "nvml"
    power_interval_s: float = 0.1
    """Seconds between power samples of ``nvml-power`` (where a GPU has no energy counter)."""

    def __post_init__(self) -> None:
        if isinstance(self.power_interval_s, bool) or not isinstance(self.power_interval_s, (int, float)) \
                or not 0 < self.power_interval_s <= 3600:  # also refuses nan
            raise ValueError(f"power_interval_s must be a number of seconds > 0 and <= 3600, "
                             f"got {self.power_interval_s!r}")


@dataclasses.dataclass(frozen=True)
class GpuId:
    """How NVML finds the GPU that CUDA calls ``cuda:N``, whatever ``CUDA_VISIBLE_DEVICES`` says.

    Attributes:
        uuid: As ``nvidia-smi -L`` prints it (``GPU-8b2c…``); a bare UUID gets the ``GPU-`` prefix.
        pci_bus_id: ``domain:bus:device.function`` in hexadecimal, e.g. ``0000:3b:00.0``.
    """

    uuid: str | None = None
    pci_bus_id: str | None = None


def _import_nvml() -> ModuleType:
    try:
        import pynvml
    except ImportError:
        raise EnergyMeterError(
            "the nvidia-ml-py package is not installed (pip install nvidia-ml-py)"
        ) from None
    return pynvml


def _find_handle(nvml: ModuleType, gpu: GpuId) -> Any:
    failures = []
    if gpu.uuid:
        uuid = gpu.uuid if gpu.uuid.startswith(("GPU-", "MIG-")) else f"GPU-{gpu.uuid}"
        try:
            return nvml.nvmlDeviceGetHandleByUUID(uuid)
        except nvml.NVMLError as error:
            failures.append(f"UUID {uuid}: {error}")
    if gpu.pci_bus_id:
        try:
            return nvml.nvmlDeviceGetHandleByPciBusId(gpu.pci_bus_id)
        except nvml.NVMLError as error:
            failures.append(f"PCI bus id {gpu.pci_bus_id}: {error}")
    if not failures:
        raise EnergyMeterError("the GPU has neither a UUID nor a PCI bus id to find it by in NVML")
    raise EnergyMeterError(f"NVML finds no such GPU ({'; '.join(failures)})")


def gpu_at_index(index: int) -> GpuId:
    """The GPU ``nvidia-smi`` numbers ``index`` (NVML's order: PCI bus order, as the launcher's
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` makes CUDA's), by its UUID.

    Raises:
        EnergyMeterError: NVML cannot start or has no GPU at ``index``.
    """
    nvml = _import_nvml()
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as error:
        raise EnergyMeterError(f"NVML cannot start: {error}") from None
    try:
        return GpuId(uuid=str(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(index))))
    except nvml.NVMLError as error:
        raise EnergyMeterError(f"NVML finds no GPU {index}: {error}") from None
    finally:
        nvml.nvmlShutdown()


class _Session:
    """NVML started, and the handle of one GPU; ``close`` stops NVML again (it counts starts)."""

    def __init__(self, gpu: GpuId) -> None:
        nvml = _import_nvml()
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as error:
            raise EnergyMeterError(f"NVML cannot start: {error}") from None
        self.nvml = nvml
        self._open = True
        try:
            self.handle = _find_handle(nvml, gpu)
        except EnergyMeterError:
            self.close()
            raise

    def query(self, function: str) -> Any:
        """``nvml.<function>(handle)``, or ``None`` where this GPU or driver does not support it."""
        try:
            return getattr(self.nvml, function)(self.handle)
        except self.nvml.NVMLError:
            return None

    def info(self) -> dict[str, Any]:
        limit_mw = self.query("nvmlDeviceGetEnforcedPowerLimit")
        try:
            driver = self.nvml.nvmlSystemGetDriverVersion()
        except self.nvml.NVMLError:
            driver = None
        return {"device_name": self.query("nvmlDeviceGetName"),
                "uuid": self.query("nvmlDeviceGetUUID"), "driver_version": driver,
                "power_limit_w": limit_mw / 1000 if limit_mw is not None else None}

    def conditions(self) -> dict[str, Any]:
        """The SM clock (MHz), temperature (°C) and why the clocks are held down, now; ``None``
        for what this GPU or driver cannot tell."""
        try:
            clock = self.nvml.nvmlDeviceGetClockInfo(self.handle, CLOCK_SM)
        except self.nvml.NVMLError:
            clock = None
        try:
            temperature = self.nvml.nvmlDeviceGetTemperature(self.handle, TEMPERATURE_GPU)
        except self.nvml.NVMLError:
            temperature = None
        # Drivers and bindings before 535 have only the older name, "throttle" reasons.
        reasons = next((value for value in (self.query(function) for function in _REASON_FUNCTIONS
                                            if hasattr(self.nvml, function)) if value is not None), None)
        return {"sm_clock_mhz": clock, "temperature_c": temperature,
                "throttle_reasons": None if reasons is None else
                [name for bit, name in CLOCK_EVENT_REASONS.items() if reasons & bit]}

    def close(self) -> None:
        if self._open:
            self._open = False
            self.nvml.nvmlShutdown()


class NvmlCounterMeter(EnergyMeter):
    """The GPU's own energy counter (Volta and newer), read at window edges.

    Args:
        gpu: Which GPU.
        step_timeout_s: How long to wait for the counter to step; it steps about every 100 ms,
            so a counter that does not step within this time is stuck.

    Raises:
        EnergyMeterError: NVML or the GPU cannot be found, the GPU has no energy counter, or
            the counter did not advance while the meter was being opened.
    """

    source = COUNTER_SOURCE
    step_poll_s = 0.002  # one read takes about as long

    def __init__(self, gpu: GpuId, *, step_timeout_s: float = 1.0) -> None:
        super().__init__()
        self._session = _Session(gpu)
        self.step_timeout_s = step_timeout_s
        try:
            start = self.total_joules()
            if self._await_step(start)[1] == start:
                raise EnergyMeterError(
                    f"the energy counter of {self._session.query('nvmlDeviceGetName')} did not "
                    f"advance in {step_timeout_s:g} s"
                )
        except EnergyMeterError:
            self._session.close()
            raise

    def _millijoules(self) -> int:
        try:
            return self._session.nvml.nvmlDeviceGetTotalEnergyConsumption(self._session.handle)
        except self._session.nvml.NVMLError as error:
            raise EnergyMeterError(
                f"nvmlDeviceGetTotalEnergyConsumption failed: {error} (the counter needs a Volta "
                "or newer GPU)"
            ) from None

    def total_joules(self) -> float:
        return self._millijoules() / 1000

    def info(self) -> dict[str, Any]:
        return self._session.info()

    def conditions(self) -> dict[str, Any]:
        return self._session.conditions()

    def close(self) -> None:
        self._session.close()


class NvmlPowerMeter(EnergyMeter):
    """GPU power sampled by a background thread and integrated with the trapezoid rule.

    Args:
        gpu: Which GPU.
        interval_s: Seconds between samples; every window edge takes one more sample.

    Raises:
        EnergyMeterError: NVML or the GPU cannot be found, or it gives no power reading.
    """

    source = POWER_SOURCE

    def __init__(self, gpu: GpuId, *, interval_s: float = 0.1) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        super().__init__()
        self._session = _Session(gpu)
        try:
            self._read_milliwatts, self._reading = self._choose_reading()
        except EnergyMeterError:
            self._session.close()
            raise
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._failure: EnergyMeterError | None = None
        self._joules = 0.0
        self._last = (time.perf_counter(), self._read_milliwatts() / 1000)
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._run, name="nvml-power-sampler", daemon=True)
        self._sampler.start()

    def _instant_milliwatts(self) -> float:
        nvml = self._session.nvml
        field = nvml.nvmlDeviceGetFieldValues(self._session.handle, [nvml.NVML_FI_DEV_POWER_INSTANT])[0]
        if field.nvmlReturn != nvml.NVML_SUCCESS:
            raise nvml.NVMLError(field.nvmlReturn)
        return getattr(field.value, _VALUE_MEMBERS[field.valueType])

    def _average_milliwatts(self) -> float:
        return self._session.nvml.nvmlDeviceGetPowerUsage(self._session.handle)

    def _choose_reading(self) -> tuple[Callable[[], float], str]:
        """The instant-power field where the driver has it, else the plain power reading."""
        nvml = self._session.nvml
        readings = [("nvmlDeviceGetPowerUsage", self._average_milliwatts)]
        if hasattr(nvml, "NVML_FI_DEV_POWER_INSTANT"):
            readings.insert(0, ("NVML_FI_DEV_POWER_INSTANT", self._instant_milliwatts))
        failures = []
        for name, read in readings:
            try:
                read()
            except nvml.NVMLError as error:
                failures.append(f"{name}: {error}")
            else:
                return read, name
        raise EnergyMeterError(f"NVML gives no power reading for this GPU ({'; '.join(failures)})")

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._sample()
            except EnergyMeterError:
                return  # kept in self._failure: the next window edge raises it

    def _sample(self) -> tuple[float, float]:
        """Take one sample now; return its time and the energy integrated up to it."""
        with self._lock:
            if self._failure is not None:
                raise self._failure
            try:
                watts = self._read_milliwatts() / 1000
            except self._session.nvml.NVMLError as error:
                self._failure = EnergyMeterError(f"{self._reading} failed while sampling: {error}")
                raise self._failure from None
            now = time.perf_counter()
            last_time, last_watts = self._last
            self._joules += (now - last_time) * (last_watts + watts) / 2
            self._last = (now, watts)
            return now, self._joules

    def _edge(self) -> tuple[float, float]:
        return self._sample()

    def total_joules(self) -> float:
        """Energy integrated up to a sample taken now."""
        return self._sample()[1]

    def info(self) -> dict[str, Any]:
        return {**self._session.info(), "power_reading": self._reading,
                "sample_interval_s": self._interval_s}

    def conditions(self) -> dict[str, Any]:
        return self._session.conditions()

    def close(self) -> None:
        self._stop.set()
        self._sampler.join()
        self._session.close()
