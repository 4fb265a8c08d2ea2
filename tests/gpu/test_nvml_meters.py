"""The NVML meters on a real GPU: counter steps and windows, idle power, cancelled windows, and
the energy counter against 100 ms power sampling over the same windows.

The stand-in tests (tests/test_energy_nvml.py) prove the logic against a trace they invent;
these prove the assumptions behind it hold on hardware: the counter steps often and never runs
backwards, an edge-aligned window is never empty, load shows up as power, and two meters read
over one window agree. Figures are recorded with ``record_property`` for bench/gpu's report.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from optuna_energy.host.meters import GpuId, NvmlCounterMeter, NvmlPowerMeter
from optuna_energy.measuring.measure import measure_idle_watts, metered
from optuna_energy.trial.train import TrialFailure, trial_failures

MATRIX = 8192  # one fp32 product is about 1.1 TFLOP: tens of ms, enough to load any GPU


def keep_busy(device: torch.device, seconds: float) -> int:
    """Back-to-back matrix products for at least ``seconds``; returns how many ran."""
    a = torch.randn(MATRIX, MATRIX, device=device)
    out = torch.empty_like(a)
    done = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(4):
            torch.mm(a, a, out=out)
        torch.cuda.synchronize(device)
        done += 4
    return done


def test_counter_steps_often_never_runs_backwards_and_no_window_is_empty(
        gpu: GpuId, record_property: pytest.RecordProperty) -> None:
    with NvmlCounterMeter(gpu) as meter:
        readings = []
        end = time.perf_counter() + 1.5
        while time.perf_counter() < end:
            readings.append((time.perf_counter(), meter.total_joules()))
            time.sleep(0.001)
        meter.begin_window("empty")  # nothing runs: the edges are two consecutive steps
        empty = meter.end_window("empty")
    values = [joules for _, joules in readings]
    assert all(later >= earlier for earlier, later in zip(values, values[1:]))
    steps = [now for (now, joules), (_, before) in zip(readings[1:], readings) if joules != before]
    # The meters wait up to step_timeout_s = 1 s for a step; they assume far more frequent ones.
    assert len(steps) >= 5
    step = statistics.median(later - earlier for earlier, later in zip(steps, steps[1:]))
    record_property("median_counter_step_ms", round(1000 * step, 1))
    record_property("empty_window_ms", round(1000 * empty.seconds, 1))
    assert step < 0.3
    assert empty.joules > 0
    assert 0.5 * step <= empty.seconds <= 2 * step + 0.01


def test_load_draws_more_than_idle_and_no_more_than_the_power_limit(
        gpu: GpuId, device: torch.device, record_property: pytest.RecordProperty) -> None:
    with NvmlCounterMeter(gpu) as meter:
        idle = measure_idle_watts(meter, 1.0)
        products, busy = metered(meter, "busy", device, lambda: keep_busy(device, 1.0))
        limit = meter.info()["power_limit_w"]
    record_property("idle_w", round(idle, 1))
    record_property("busy_w", round(busy.watts, 1))
    record_property("power_limit_w", limit)
    assert products > 0
    assert busy.seconds >= 1.0
    assert 0 < idle < busy.watts
    assert busy.watts <= 1.1 * limit  # the limit is enforced on an average: brief excursions only


@pytest.mark.parametrize("load", ["idle", "busy"])
def test_counter_and_100ms_power_sampling_agree_on_the_same_window(
        gpu: GpuId, device: torch.device, load: str, record_property: pytest.RecordProperty) -> None:
    torch.cuda.synchronize(device)
    with NvmlCounterMeter(gpu) as counter, NvmlPowerMeter(gpu, interval_s=0.1) as power:
        limit = power.info()["power_limit_w"]
        counter.begin_window("same")  # waits for a counter step; sampling starts right after
        power.begin_window("same")
        if load == "idle":
            time.sleep(2.0)
        else:
            keep_busy(device, 2.0)
        counted = counter.end_window("same")
        sampled = power.end_window("same")
        reading = power.info()["power_reading"]
    ratio = sampled.joules / counted.joules
    record_property("counter_w", round(counted.watts, 1))
    record_property("sampled_w", round(sampled.watts, 1))
    record_property("sampled_over_counter", round(ratio, 4))
    record_property("power_reading", reading)
    assert 0 < counted.watts <= 1.1 * limit
    if load == "idle":
        assert counted.watts < limit / 2  # a GPU idles far below its limit (an H100: ~10 %)
    assert 0.8 <= ratio <= 1.25


def test_a_window_cancelled_by_a_real_out_of_memory_opens_again(gpu: GpuId, device: torch.device) -> None:
    def allocate_a_pebibyte() -> torch.Tensor:
        with trial_failures():  # as training does: out of memory ends the trial, not the study
            return torch.empty(2**50, dtype=torch.uint8, device=device)

    with NvmlCounterMeter(gpu) as meter:
        with pytest.raises(TrialFailure, match="^out of memory"):
            metered(meter, "training", device, allocate_a_pebibyte)
        products, window = metered(meter, "training", device, lambda: keep_busy(device, 0.3))
    assert products > 0
    assert window.seconds >= 0.3 and window.joules > 0
