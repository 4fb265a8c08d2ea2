"""Repeated, interleaved measuring windows: the stored value, its spread, what disturbed the
machine, and where they are recorded."""

from __future__ import annotations

import math
import sys

import numpy as np
import optuna
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import optuna_energy
from optuna_energy.config import ConfigError, load_config
from optuna_energy.host import load
from optuna_energy.host.meters import EstimateMeter, NvmlCounterMeter
from optuna_energy.measuring.costs import measure_costs
from optuna_energy.measuring.measure import (
    PASS_QUANTILE,
    InferenceMeasurement,
    Window,
    Workload,
    measure_interleaved,
    measure_passes,
)
from optuna_energy.measuring.statistic import quantile, relative_spread
from optuna_energy.model.arch import ArchProfile
from optuna_energy.store import record
from tests.nvml_standin import NOT_SUPPORTED, FakeNvml
from tests.test_energy_nvml import SECOND_GPU

finite = st.floats(min_value=1e-6, max_value=1e3, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=40), st.floats(min_value=0, max_value=1))
def test_the_quantile_is_numpys_and_lies_between_the_extremes(values, q):
    value = quantile(values, q)
    assert value == pytest.approx(float(np.quantile(values, q)), rel=1e-9)
    assert min(values) <= value <= max(values)
    assert quantile(values, 0.0) == min(values) and quantile(values, 1.0) == max(values)


@given(st.lists(finite, min_size=2, max_size=40), st.floats(min_value=1e-3, max_value=1e3))
def test_the_spread_is_scale_free_and_zero_only_for_equal_values(values, scale):
    spread = relative_spread(values)
    assert spread is not None and spread >= 0
    assert relative_spread([value * scale for value in values]) == pytest.approx(spread, rel=1e-9, abs=1e-12)
    assert (spread == 0) == (min(values) == max(values))


def test_a_single_value_has_no_spread_and_no_values_no_quantile():
    assert relative_spread([1.0]) is None
    with pytest.raises(ValueError, match="no values"):
        quantile([], 0.5)


def _workload(name: str, log: list[str], *, width: int = 8) -> Workload:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10)).eval()
    batches = list(torch.rand(40, 1, 8, 8).split(20))

    def run_batch(index: int) -> object:
        log.append(name)
        return model(batches[index])

    return Workload(model=model, device=torch.device("cpu"), run_batch=run_batch, batches=2,
                    inputs_per_pass=40, batch_size=20,
                    costs=ArchProfile(params=sum(p.numel() for p in model.parameters()),
                                      macs=64 * width + width * 10, activations=width + 10))


def test_the_stored_time_is_the_quantile_of_every_pass_and_the_spread_the_windows_disagreement():
    with torch.inference_mode():
        measured = measure_passes(_workload("a", []), warmup_batches=1, min_window_seconds=0.02,
                                  windows=3, meter=EstimateMeter())
    assert len(measured.windows) == 3
    assert measured.clock == "cpu"  # auto, on the CPU: the measuring thread's CPU time
    passes = [seconds for window in measured.windows for seconds in window.pass_cpu_seconds]
    assert measured.seconds_per_pass == quantile(passes, PASS_QUANTILE)
    assert measured.passes == len(passes) and measured.images == 40 * len(passes)
    assert all(window.seconds >= 0.02 and len(window.pass_cpu_seconds) == len(window.pass_seconds)
               for window in measured.windows)
    assert measured.seconds_per_pass_spread == relative_spread(
        [quantile(window.pass_cpu_seconds, PASS_QUANTILE) for window in measured.windows])
    # Energy stays what the meter counted over all the windows, per image.
    assert measured.window_joules == pytest.approx(sum(window.joules for window in measured.windows))
    assert measured.energy_spread == relative_spread(
        [window.joules / window.images for window in measured.windows])
    assert set(measured.load) == {"load_1min", "cpu_steal", "cpu_others"}


def _window(per_pass: float, joules_per_image: float, *, images: int = 100, clock: str = "cpu") -> Window:
    return Window(pass_seconds=(per_pass, per_pass * 2), pass_cpu_seconds=(per_pass, per_pass * 2),
                  seconds=1.0, joules=joules_per_image * images, images=images, clock=clock)


def test_a_pooled_measurement_is_the_union_of_both_runs_windows():
    first = InferenceMeasurement(windows=(_window(0.1, 0.8), _window(0.1, 0.9)),
                                 load={"load_1min": 0.5, "cpu_others": 0.1})
    later = InferenceMeasurement(windows=(_window(0.2, 1.0),) * 4, load={"load_1min": 3.0, "cpu_others": 0.7})
    pooled = first.pooled(later)
    union = InferenceMeasurement(windows=first.windows + later.windows)
    assert pooled.windows == union.windows and pooled.runs == 2
    assert pooled.seconds_per_pass == union.seconds_per_pass
    assert pooled.seconds_per_pass_spread == union.seconds_per_pass_spread
    assert pooled.energy_spread == relative_spread([0.8, 0.9, 1.0, 1.0, 1.0, 1.0])
    assert pooled.window_joules / pooled.images == pytest.approx((0.8 + 0.9 + 4 * 1.0) / 6)
    assert pooled.load == {"load_1min": [0.5, 3.0], "cpu_others": [0.1, 0.7]}
    thrice = pooled.pooled(InferenceMeasurement(windows=(_window(0.2, 1.0),), load={"load_1min": 1.0}))
    assert thrice.load == {"load_1min": [0.5, 3.0, 1.0], "cpu_others": [0.1, 0.7, None]}
    with pytest.raises(ValueError, match="cpu clock with passes timed on the wall clock"):
        first.pooled(InferenceMeasurement(windows=(_window(0.1, 1.0, clock="wall"),)))


def test_several_models_take_turns_window_by_window():
    log: list[str] = []
    with torch.inference_mode():
        measured = measure_interleaved([_workload("a", log), _workload("b", log)], warmup_batches=0,
                                       min_window_seconds=0.0, windows=3, meter=EstimateMeter())
    # With no minimum length each window is one pass of two batches.
    assert log == ["a", "a", "b", "b"] * 3
    assert [len(one.windows) for one in measured] == [3, 3]


def test_costs_spreads_and_conditions_reach_the_trial_record():
    with torch.inference_mode():
        fields = measure_costs(_workload("a", []), meter=EstimateMeter(), idle_watts=0.0,
                               warmup_batches=1, min_window_seconds=0.01, windows=2)
    study = optuna.create_study()
    trial = study.ask()
    record.write(trial, **fields)
    study.tell(trial, 0.0)
    stored = record.TrialRecord.of(study.trials[0])
    assert stored.measure_windows == 2
    assert set(stored.measure_conditions) == {"load_1min", "cpu_steal", "cpu_others"}
    assert stored.value_with_spread("inference_time") == (fields["inference_time_s"],
                                                          fields["inference_time_spread"])
    assert stored.value_with_spread("energy") == (fields["energy_per_inference_j"], fields["energy_spread"])
    assert stored.value_with_spread("params") == (fields["params"], 0.0)  # a count is exact


def test_one_window_records_no_spread_and_an_unmeasured_metric_reads_nan():
    with torch.inference_mode():
        fields = measure_costs(_workload("a", []), meter=EstimateMeter(), idle_watts=0.0,
                               warmup_batches=0, min_window_seconds=0.0, windows=1)
    assert "inference_time_spread" not in fields and fields["measure_windows"] == 1
    stored = record.TrialRecord(**{"inference_time_s": fields["inference_time_s"]})
    value, spread = stored.value_with_spread("inference_time")
    assert value == fields["inference_time_s"] and math.isnan(spread)
    assert all(math.isnan(number) for number in record.TrialRecord().value_with_spread("params"))


def test_the_cpu_shares_come_from_the_proc_stat_deltas():
    cpus = load.os.cpu_count() or 1
    ticks = load._TICKS
    # Over 1 s, every CPU ticked ``ticks`` times: a tenth stolen, half of the rest busy, a tenth
    # of one CPU of it ours.
    total = ticks * cpus
    steal, busy, idle = total // 10, total * 45 // 100, total - total // 10 - total * 45 // 100
    before = load.LoadSnapshot(wall=0.0, own_cpu=0.0, ticks=(0,) * 8)
    after = load.LoadSnapshot(wall=1.0, own_cpu=0.1, ticks=(busy, 0, 0, idle, 0, 0, 0, steal))
    shares = load.disturbance(before, after)
    assert shares["cpu_steal"] == pytest.approx(steal / total, abs=1e-4)
    assert shares["cpu_others"] == pytest.approx((busy / ticks - 0.1) / cpus, abs=1e-4)
    unreadable = load.LoadSnapshot(wall=1.0, own_cpu=0.1, ticks=None)
    assert load.disturbance(before, unreadable)["cpu_others"] is None


def test_a_gpu_meter_records_clock_temperature_and_throttle_reasons_per_window(monkeypatch):
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    nvml.clock_event_reasons = 0x4 | 0x40  # power cap, hardware thermal slowdown
    with NvmlCounterMeter(SECOND_GPU) as meter, torch.inference_mode():
        fields = measure_costs(_workload("a", []), meter=meter, idle_watts=0.0, warmup_batches=0,
                               min_window_seconds=0.0, windows=2)
        nvml.conditions_error = NOT_SUPPORTED
        untold = meter.conditions()
    conditions = fields["measure_conditions"]
    assert conditions["sm_clock_mhz"] == [1980, 1980] and conditions["temperature_c"] == [45, 45]
    assert conditions["throttle_reasons"] == [["sw_power_cap", "hw_thermal_slowdown"]] * 2
    assert untold == {"sm_clock_mhz": None, "temperature_c": 45, "throttle_reasons": None}


@pytest.mark.parametrize(("windows", "message"), [
    (0, r"^\[measure\] windows must be >= 1 and <= 100, got 0$"),
    (101, r"^\[measure\] windows must be >= 1 and <= 100, got 101$"),
    (2.5, r"^\[measure\] windows must be int, got 2.5$"),
])
def test_a_bad_window_count_is_a_one_line_config_error(windows, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"measure": {"windows": windows}})


def test_the_monitor_measures_several_models_in_turns():
    log: list[str] = []

    class Logged(nn.Module):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name, self.layer = name, nn.Linear(4, 2)

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            log.append(self.name)
            return self.layer(inputs)

    with optuna_energy.EnergyMonitor(device="cpu", meter="estimate", idle_seconds=0) as monitor:
        first, second = monitor.measure_models([Logged("a"), Logged("b")], torch.rand(8, 4), batch_size=8,
                                               warmup_batches=0, min_window_seconds=0.0, windows=2)
        with pytest.raises(ValueError, match="windows must be an integer >= 1, got 0"):
            monitor.measure_inference(Logged("c"), torch.rand(8, 4), windows=0)
    assert log[-4:] == ["a", "b", "a", "b"]
    assert first.fields["measure_windows"] == second.fields["measure_windows"] == 2
    assert first.params == second.params == 10
