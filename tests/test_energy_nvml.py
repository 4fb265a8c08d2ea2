"""The NVML meters and CUDA meter selection, against a stand-in for the ``pynvml`` module.

The stand-in implements the few NVML functions the meters call, with two GPUs whose energy
counters step every 100 ms and whose power follows a known trace. It is put in
``sys.modules['pynvml']``, where the meters' lazy ``import pynvml`` finds it.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import types
import warnings
from collections.abc import Callable, Iterator

import pytest
import torch

from optuna_energy.energy import (EnergyEstimateWarning, EnergyMeterError, EnergyMeterWarning, GpuId,
                                  NvmlCounterMeter, NvmlPowerMeter, select_meter)
from optuna_energy.measure import gpu_id, open_meter

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


@contextlib.contextmanager
def _no_warnings() -> Iterator[None]:
    """Turn any warning into an error: choosing the best meter is not worth a word."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


SECOND_GPU = GpuId(uuid="2222")  # as torch gives it: no GPU- prefix


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def test_counter_measures_the_known_power_in_windows_aligned_to_its_steps(nvml: FakeNvml) -> None:
    with NvmlCounterMeter(SECOND_GPU) as meter:
        meter.begin_window("w")
        time.sleep(0.55)
        window = meter.end_window("w")
    assert window.watts == pytest.approx(250.0, rel=0.05)
    assert window.seconds == pytest.approx(round(window.seconds, 1), abs=0.03)  # whole steps
    assert nvml.started == 0


def test_counter_does_not_report_zero_for_a_window_shorter_than_a_step(nvml: FakeNvml) -> None:
    with NvmlCounterMeter(SECOND_GPU) as meter:
        meter.begin_window("short")
        window = meter.end_window("short")  # nothing ran in between
    assert window.joules == pytest.approx(25.0, rel=0.05)  # one 100 ms step at 250 W
    assert window.seconds == pytest.approx(0.1, abs=0.03)


def test_counter_that_stops_moving_raises_at_the_window_end(nvml: FakeNvml) -> None:
    with NvmlCounterMeter(SECOND_GPU, step_timeout_s=0.3) as meter:
        meter.begin_window("w")
        nvml.counter_stuck = True
        with pytest.raises(EnergyMeterError, match=r"^nvml-counter counted 0 J in the .* s window "
                                                   "'w': its counter is not advancing"):
            meter.end_window("w")


def test_counter_that_never_moves_is_refused_when_opened(nvml: FakeNvml) -> None:
    nvml.counter_stuck = True
    with pytest.raises(EnergyMeterError, match=r"^the energy counter of Fake H100 did not advance "
                                               r"in 0.3 s$"):
        NvmlCounterMeter(SECOND_GPU, step_timeout_s=0.3)
    assert nvml.started == 0


def test_gpu_is_found_by_uuid_not_by_position(nvml: FakeNvml) -> None:
    """With ``CUDA_VISIBLE_DEVICES=1``, torch's ``cuda:0`` is NVML's second GPU."""
    with NvmlPowerMeter(SECOND_GPU) as meter:
        assert meter.info()["uuid"] == "GPU-2222"
    with NvmlPowerMeter(GpuId(uuid="GPU-1111")) as meter:
        assert meter.info()["uuid"] == "GPU-1111"


def test_gpu_is_found_by_pci_bus_id_when_the_uuid_is_unknown(nvml: FakeNvml) -> None:
    with NvmlPowerMeter(GpuId(uuid="9999", pci_bus_id="0000:5e:00.0")) as meter:
        assert meter.info()["uuid"] == "GPU-2222"


def test_unknown_gpu_names_what_was_tried(nvml: FakeNvml) -> None:
    with pytest.raises(EnergyMeterError) as caught:
        NvmlCounterMeter(GpuId(uuid="9999", pci_bus_id="0000:99:00.0"))
    assert str(caught.value) == ("NVML finds no such GPU (UUID GPU-9999: Not Found; "
                                 "PCI bus id 0000:99:00.0: Not Found)")
    assert nvml.started == 0


def test_info_records_device_driver_and_power_limit(nvml: FakeNvml) -> None:
    with NvmlCounterMeter(SECOND_GPU) as meter:
        assert meter.info() == {"device_name": "Fake H100", "uuid": "GPU-2222",
                                "driver_version": "570.1", "power_limit_w": 700.0}


def test_power_sampler_integrates_a_ramp_with_the_trapezoid_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml(watts=lambda t: 100.0 + 200.0 * t)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    with NvmlPowerMeter(SECOND_GPU, interval_s=0.1) as meter:
        time.sleep(0.1)
        before = nvml.elapsed()
        meter.begin_window("w")
        reads = nvml.power_reads
        time.sleep(0.6)
        window = meter.end_window("w")
        after = nvml.elapsed()
        assert nvml.power_reads - reads >= 5  # sampled in the background, not only at the edges
        assert meter.info()["power_reading"] == "NVML_FI_DEV_POWER_INSTANT"
    # Exact for a linear trace: the mean power is the power at the window's middle.
    assert window.watts == pytest.approx(100.0 + 200.0 * (before + after) / 2, rel=0.02)
    assert window.seconds == pytest.approx(after - before, abs=0.01)


def test_power_sampler_uses_the_plain_reading_without_the_instant_field(nvml: FakeNvml) -> None:
    nvml.instant_error = NOT_SUPPORTED
    with NvmlPowerMeter(SECOND_GPU) as meter:
        meter.begin_window("w")
        time.sleep(0.3)
        window = meter.end_window("w")
        assert meter.info()["power_reading"] == "nvmlDeviceGetPowerUsage"
        assert meter.info()["sample_interval_s"] == 0.1
    assert window.watts == pytest.approx(250.0, rel=1e-9)  # edges are samples: no time is lost


def test_power_reading_that_fails_while_sampling_is_raised_at_the_window_end(nvml: FakeNvml) -> None:
    with NvmlPowerMeter(SECOND_GPU, interval_s=0.02) as meter:
        meter.begin_window("w")
        nvml.instant_error = NOT_SUPPORTED
        time.sleep(0.1)
        with pytest.raises(EnergyMeterError, match="^NVML_FI_DEV_POWER_INSTANT failed while "
                                                   "sampling: Not Supported$"):
            meter.end_window("w")


def test_selection_prefers_the_counter(nvml: FakeNvml) -> None:
    with _no_warnings():
        meter = select_meter("cuda:0", gpu=SECOND_GPU)
    with meter:
        assert meter.source == "nvml-counter"


def test_selection_falls_back_to_power_sampling_without_the_counter(nvml: FakeNvml) -> None:
    nvml.counter_error = NOT_SUPPORTED
    with pytest.warns(EnergyMeterWarning) as caught:
        meter = select_meter("cuda:0", gpu=SECOND_GPU, power_interval_s=0.05)
    with meter:
        assert meter.source == "nvml-power"
        assert meter.info()["sample_interval_s"] == 0.05
    assert [str(warning.message) for warning in caught] == [
        "nvml-counter: nvmlDeviceGetTotalEnergyConsumption failed: Not Supported (the counter "
        "needs a Volta or newer GPU); measuring with nvml-power instead"
    ]


def test_selection_falls_back_to_the_estimate_without_any_power_reading(nvml: FakeNvml) -> None:
    nvml.counter_error = nvml.instant_error = nvml.average_error = NOT_SUPPORTED
    with pytest.warns(EnergyMeterWarning) as caught:
        assert select_meter("cuda:1", gpu=SECOND_GPU) is None
    assert caught[-1].category is EnergyEstimateWarning
    assert str(caught[-1].message) == (
        "no hardware energy meter works for device 'cuda:1' (nvml-power: NVML gives no power "
        "reading for this GPU (NVML_FI_DEV_POWER_INSTANT: Not Supported; nvmlDeviceGetPowerUsage: "
        "Not Supported)); energy per inference is the analytical estimate (energy_source='estimate')"
    )
    assert nvml.started == 0


def test_selection_falls_back_to_the_estimate_when_nvml_cannot_start(nvml: FakeNvml) -> None:
    nvml.init_error = DRIVER_NOT_LOADED
    with pytest.warns(EnergyMeterWarning) as caught:
        assert select_meter("cuda", gpu=SECOND_GPU) is None
    assert [str(warning.message) for warning in caught] == [
        "nvml-counter: NVML cannot start: Driver Not Loaded; measuring with nvml-power instead",
        "no hardware energy meter works for device 'cuda' (nvml-power: NVML cannot start: Driver "
        "Not Loaded); energy per inference is the analytical estimate (energy_source='estimate')",
    ]


def test_selection_falls_back_to_the_estimate_without_nvidia_ml_py(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # what an absent package looks like to import
    with pytest.warns(EnergyMeterWarning) as caught:
        assert select_meter("cuda", gpu=SECOND_GPU) is None
    assert "(nvml-power: the nvidia-ml-py package is not installed (pip install nvidia-ml-py))" in str(
        caught[-1].message)


def test_a_named_meter_is_used_even_where_a_better_one_works(nvml: FakeNvml) -> None:
    with _no_warnings():
        meter = select_meter("cuda:0", gpu=SECOND_GPU, meter="nvml-power")
    with meter:
        assert meter.source == "nvml-power"
    with _no_warnings():
        assert select_meter("cuda:0", gpu=SECOND_GPU, meter="estimate") is None


def test_a_named_meter_that_cannot_open_is_an_error_not_a_fallback(nvml: FakeNvml) -> None:
    nvml.counter_error = NOT_SUPPORTED
    with pytest.raises(EnergyMeterError, match="^nvmlDeviceGetTotalEnergyConsumption failed: Not "
                                               "Supported"):
        select_meter("cuda:0", gpu=SECOND_GPU, meter="nvml-counter")
    with pytest.raises(EnergyMeterError, match="^NVML meters need a CUDA device and its GpuId$"):
        select_meter("cpu", meter="nvml-power")
    with pytest.raises(ValueError, match="unknown energy meter 'nvml'; allowed: auto, nvml-counter, "
                                         "nvml-power, rapl, estimate"):
        select_meter("cuda:0", gpu=SECOND_GPU, meter="nvml")


def test_gpu_id_from_torch_device_properties(nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's ``cuda:0`` under ``CUDA_VISIBLE_DEVICES=1`` reports the second GPU's identity."""
    properties = types.SimpleNamespace(uuid="2222", pci_domain_id=0, pci_bus_id=0x5E, pci_device_id=0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: properties)
    cuda0 = torch.device("cuda:0")
    assert gpu_id(cuda0) == GpuId(uuid="2222", pci_bus_id="0000:5e:00.0")
    with _no_warnings():
        meter = open_meter(cuda0)
    with meter:
        assert meter.info()["uuid"] == "GPU-2222"
        meter.begin_window("w")
        time.sleep(0.2)
        assert meter.end_window("w").watts == pytest.approx(250.0, rel=0.05)
