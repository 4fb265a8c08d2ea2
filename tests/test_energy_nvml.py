"""The NVML meters and CUDA meter selection, against a stand-in for the ``pynvml`` module.

The stand-in (``tests/nvml_standin.py``) implements the few NVML functions the meters call, with
two GPUs whose energy counters step every 100 ms and whose power follows a known trace. It is
put in ``sys.modules['pynvml']``, where the meters' lazy ``import pynvml`` finds it.
"""

from __future__ import annotations

import contextlib
import sys
import time
import types
import warnings
from collections.abc import Iterator

import pytest
import torch

from optuna_energy.host.devices import identity as gpu_id
from optuna_energy.host.meters import (
    EnergyEstimateWarning,
    EnergyMeterError,
    EnergyMeterWarning,
    GpuId,
    NvmlCounterMeter,
    NvmlPowerMeter,
    NvmlSettings,
    select_meter,
)
from optuna_energy.measuring.measure import open_meter
from tests.nvml_standin import DRIVER_NOT_LOADED, NOT_SUPPORTED, FakeNvml

# The stand-in's second GPU, as torch gives its UUID (no GPU- prefix).
SECOND_GPU = GpuId(uuid="2222")


@contextlib.contextmanager
def _no_warnings() -> Iterator[None]:
    """Turn any warning into an error: choosing the best meter is not worth a word."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


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
    # Each edge is the moment the poll saw the step: a descheduled poll (a loaded machine) sees it
    # late, so the duration is about one step, not exactly.
    assert 0 < window.seconds < 2 * FakeNvml.COUNTER_STEP_S


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
        meter = select_meter("cuda:0", gpu=SECOND_GPU, settings=[NvmlSettings(power_interval_s=0.05)])
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
        assert select_meter("cuda:1", gpu=SECOND_GPU).source == "estimate"
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
        assert select_meter("cuda", gpu=SECOND_GPU).source == "estimate"
    assert [str(warning.message) for warning in caught] == [
        "nvml-counter: NVML cannot start: Driver Not Loaded; measuring with nvml-power instead",
        "no hardware energy meter works for device 'cuda' (nvml-power: NVML cannot start: Driver "
        "Not Loaded); energy per inference is the analytical estimate (energy_source='estimate')",
    ]


def test_selection_falls_back_to_the_estimate_without_nvidia_ml_py(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # what an absent package looks like to import
    with pytest.warns(EnergyMeterWarning) as caught:
        assert select_meter("cuda", gpu=SECOND_GPU).source == "estimate"
    assert "(nvml-power: the nvidia-ml-py package is not installed (pip install nvidia-ml-py))" in str(
        caught[-1].message)


def test_a_named_meter_is_used_even_where_a_better_one_works(nvml: FakeNvml) -> None:
    with _no_warnings():
        meter = select_meter("cuda:0", gpu=SECOND_GPU, meter="nvml-power")
    with meter:
        assert meter.source == "nvml-power"
    with _no_warnings():
        assert select_meter("cuda:0", gpu=SECOND_GPU, meter="estimate").source == "estimate"


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
