"""A stand-in for the ``pynvml`` module (nvidia-ml-py), for machines without an NVIDIA GPU.

It implements the few NVML functions the meters and the GPU benchmark call, with two GPUs
whose energy counters step every 100 ms and whose power follows a known trace. Put it in
``sys.modules['pynvml']``, where the meters' lazy ``import pynvml`` finds it. Used by the NVML
meter tests and by the dry run of ``bench/gpu`` (its CPU-side parts without a GPU).
"""

from __future__ import annotations

import math
import time
import types
from collections.abc import Callable

NOT_SUPPORTED, NOT_FOUND, DRIVER_NOT_LOADED = 3, 6, 9


class NVMLError(Exception):
    _names = {NOT_SUPPORTED: "Not Supported", NOT_FOUND: "Not Found",
              DRIVER_NOT_LOADED: "Driver Not Loaded"}

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return self._names[self.value]


class FakeGpu:
    def __init__(self, uuid: str, pci_bus_id: str, watts: Callable[[float], float]) -> None:
        self.uuid, self.pci_bus_id, self.watts = uuid, pci_bus_id, watts


class FakeNvml(types.ModuleType):
    """``pynvml`` with two GPUs; power is ``watts(seconds since creation)``."""

    NVMLError = NVMLError
    NVML_SUCCESS = 0
    NVML_FI_DEV_POWER_INSTANT = 186
    COUNTER_STEP_S = 0.1

    def __init__(self, *, watts: Callable[[float], float] = lambda t: 250.0) -> None:
        super().__init__("pynvml")
        self.start = time.perf_counter()
        self.gpus = [FakeGpu("GPU-1111", "00000000:3b:00.0", lambda t: 60.0),
                     FakeGpu("GPU-2222", "00000000:5e:00.0", watts)]
        self.started = 0
        self.init_error: int | None = None
        self.counter_error: int | None = None
        self.counter_stuck = False
        self.counter_last = 123_456
        self.instant_error: int | None = None
        self.average_error: int | None = None
        self.power_reads = 0
        self.utilization_percent = 37  # what nvmlDeviceGetUtilizationRates reports
        self.sm_clock_mhz = 1980
        self.temperature_c = 45
        self.clock_event_reasons = 0
        self.conditions_error: int | None = None  # an old GPU that tells neither clock nor reasons

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.started += 1

    def nvmlShutdown(self) -> None:
        self.started -= 1

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeGpu:
        return self._find(lambda gpu: gpu.uuid == uuid)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NOT_FOUND)
        return self.gpus[index]

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str) -> FakeGpu:
        domain, rest = bus_id.lower().split(":", 1)  # NVML takes 4- or 8-digit domains
        return self._find(lambda gpu: gpu.pci_bus_id == f"{int(domain, 16):08x}:{rest}")

    def _find(self, match: Callable[[FakeGpu], bool]) -> FakeGpu:
        for gpu in self.gpus:
            if match(gpu):
                return gpu
        raise NVMLError(NOT_FOUND)

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> str:
        return "Fake H100"

    def nvmlDeviceGetUUID(self, gpu: FakeGpu) -> str:
        return gpu.uuid

    def nvmlSystemGetDriverVersion(self) -> str:
        return "570.1"

    def nvmlDeviceGetEnforcedPowerLimit(self, gpu: FakeGpu) -> int:
        return 700_000

    def nvmlDeviceGetTotalEnergyConsumption(self, gpu: FakeGpu) -> int:
        """Millijoules, updated only every ``COUNTER_STEP_S``: the exact integral at the last step."""
        if self.counter_error is not None:
            raise NVMLError(self.counter_error)
        if self.counter_stuck:
            return self.counter_last
        step = math.floor(self.elapsed() / self.COUNTER_STEP_S) * self.COUNTER_STEP_S
        samples = 200
        joules = sum(gpu.watts(step * (i + 0.5) / samples) for i in range(samples)) * step / samples
        self.counter_last = 123_456 + round(joules * 1000)
        return self.counter_last

    def nvmlDeviceGetFieldValues(self, gpu: FakeGpu, field_ids: list[int]) -> list:
        assert field_ids == [self.NVML_FI_DEV_POWER_INSTANT]
        self.power_reads += 1
        status = self.instant_error if self.instant_error is not None else self.NVML_SUCCESS
        value = types.SimpleNamespace(uiVal=round(gpu.watts(self.elapsed()) * 1000))
        return [types.SimpleNamespace(nvmlReturn=status, valueType=1, value=value)]

    def nvmlDeviceGetPowerUsage(self, gpu: FakeGpu) -> int:
        if self.average_error is not None:
            raise NVMLError(self.average_error)
        self.power_reads += 1
        return round(gpu.watts(self.elapsed()) * 1000)

    def nvmlDeviceGetUtilizationRates(self, gpu: FakeGpu) -> types.SimpleNamespace:
        """Percent of the last sample period a kernel ran (``gpu``) and memory was busy."""
        return types.SimpleNamespace(gpu=self.utilization_percent, memory=self.utilization_percent // 2)

    def nvmlDeviceGetClockInfo(self, gpu: FakeGpu, clock_type: int) -> int:
        if self.conditions_error is not None:
            raise NVMLError(self.conditions_error)
        assert clock_type == 1  # NVML_CLOCK_SM
        return self.sm_clock_mhz

    def nvmlDeviceGetTemperature(self, gpu: FakeGpu, sensor: int) -> int:
        assert sensor == 0  # NVML_TEMPERATURE_GPU
        return self.temperature_c

    def nvmlDeviceGetCurrentClocksEventReasons(self, gpu: FakeGpu) -> int:
        if self.conditions_error is not None:
            raise NVMLError(self.conditions_error)
        return self.clock_event_reasons
