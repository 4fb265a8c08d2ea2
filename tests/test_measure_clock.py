"""Which clock times an inference pass: ``[measure] clock``, the thread count it sets, the record."""

from __future__ import annotations

import time

import optuna
import pytest
import torch
from torch import nn

import optuna_energy
from optuna_energy import study as study_module
from optuna_energy.config import ConfigError, load_config
from optuna_energy.host.meters import EstimateMeter
from optuna_energy.measuring.costs import measure_costs
from optuna_energy.measuring.measure import (
    PASS_QUANTILE,
    Workload,
    measure_interleaved,
    measure_passes,
    resolve_clock,
)
from optuna_energy.measuring.statistic import quantile
from optuna_energy.model.arch import ArchProfile
from optuna_energy.reading.analysis import clock_units, format_table
from optuna_energy.store import record
from tests.helpers import tiny_config

SLEEP_S = 0.004
"""Each batch of the sleeping workload waits this long: wall time that is no CPU time."""


def _workload(threads_seen: list[int], *, sleep: float = 0.0, device: str = "cpu",
              fail: bool = False) -> Workload:
    """A small model whose batches note torch's intra-op thread count (and sleep, or raise)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10)).eval()
    batches = list(torch.rand(40, 1, 8, 8).split(20))

    def run_batch(index: int) -> object:
        threads_seen.append(torch.get_num_threads())
        if fail:
            raise RuntimeError("out of memory")
        time.sleep(sleep)
        return model(batches[index])

    return Workload(model=model, device=torch.device(device), run_batch=run_batch, batches=2,
                    inputs_per_pass=40, batch_size=20,
                    costs=ArchProfile(params=sum(p.numel() for p in model.parameters()), macs=592,
                                      activations=18))


@pytest.fixture
def two_threads():
    """Torch on two intra-op threads (the caller's setting the cpu clock must restore)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


@pytest.mark.parametrize(("clock", "device", "resolved"), [
    ("auto", "cpu", "cpu"), ("auto", "cuda:0", "wall"), ("wall", "cpu", "wall"),
    ("wall", "cuda", "wall"), ("cpu", "cpu", "cpu"),
])
def test_auto_is_cpu_time_on_a_cpu_and_the_wall_clock_on_a_gpu(clock, device, resolved):
    assert resolve_clock(clock, torch.device(device)) == resolved


@pytest.mark.parametrize(("clock", "device", "message"), [
    ("cpu", "cuda:0", r"^clock 'cpu' counts the host thread's CPU time, not the work of cuda:0; "
                      r"allowed on cuda: auto, wall$"),
    ("process", "cpu", r"^clock is 'process'; allowed: auto, wall, cpu$"),
])
def test_a_clock_that_cannot_time_the_device_is_refused_in_one_line(clock, device, message):
    with pytest.raises(ValueError, match=message):
        resolve_clock(clock, torch.device(device))


def test_the_cpu_clock_measures_on_one_thread_and_restores_the_callers_count(two_threads):
    seen: list[int] = []
    with torch.inference_mode():
        measured = measure_passes(_workload(seen, sleep=SLEEP_S), warmup_batches=1,
                                  min_window_seconds=0.02, windows=2, meter=EstimateMeter(), clock="cpu")
    assert set(seen) == {1}  # warm-up and every window
    assert torch.get_num_threads() == two_threads
    assert measured.clock == "cpu"
    cpu = [seconds for window in measured.windows for seconds in window.pass_cpu_seconds]
    wall = [seconds for window in measured.windows for seconds in window.pass_seconds]
    assert measured.seconds_per_pass == quantile(cpu, PASS_QUANTILE)
    # A pass sleeps 2 x SLEEP_S: wall time, not CPU time, so the CPU clock reads less.
    assert min(wall) >= 2 * SLEEP_S > measured.seconds_per_pass


def test_the_wall_clock_keeps_the_callers_threads_and_times_the_sleep(two_threads):
    seen: list[int] = []
    with torch.inference_mode():
        measured = measure_passes(_workload(seen, sleep=SLEEP_S), warmup_batches=1,
                                  min_window_seconds=0.02, windows=2, meter=EstimateMeter(), clock="wall")
    assert set(seen) == {two_threads}
    assert measured.clock == "wall"
    wall = [seconds for window in measured.windows for seconds in window.pass_seconds]
    assert measured.seconds_per_pass == quantile(wall, PASS_QUANTILE) >= 2 * SLEEP_S


def test_the_callers_thread_count_is_restored_when_a_pass_fails(two_threads):
    with torch.inference_mode(), pytest.raises(RuntimeError, match="out of memory"):
        measure_interleaved([_workload([], fail=True)], warmup_batches=1, windows=1,
                            min_window_seconds=0.0, meter=EstimateMeter(), clock="auto")
    assert torch.get_num_threads() == two_threads


def test_workloads_a_clock_resolves_differently_for_are_refused():
    with pytest.raises(ValueError, match="^workloads on a CPU and on an accelerator cannot share clock 'auto'"):
        measure_interleaved([_workload([]), _workload([], device="cuda")], warmup_batches=0,
                            windows=1, min_window_seconds=0.0, meter=EstimateMeter())


def test_the_clock_reaches_the_trial_record_and_the_reports_unit():
    study = optuna.create_study()
    for clock in ("cpu", "wall"):
        with torch.inference_mode():
            fields = measure_costs(_workload([]), meter=EstimateMeter(), idle_watts=0.0,
                                   warmup_batches=0, min_window_seconds=0.0, windows=1, clock=clock)
        trial = study.ask()
        record.write(trial, **fields)
        study.tell(trial, 0.0)
    cpu, wall = study.trials
    assert [record.TrialRecord.of(trial).inference_clock for trial in study.trials] == ["cpu", "wall"]
    assert clock_units([cpu]) == {"inference_time": "CPU s, 1 thread"}
    assert clock_units([cpu, wall]) == {"inference_time": "s or CPU s, 1 thread"}
    older = optuna.trial.create_trial(value=0.0, user_attrs={"inference_time_s": 0.1})
    assert clock_units([wall, older]) == {}  # a trial naming no clock was timed on the wall clock
    study.set_metric_names(["inference_time"])
    note = "inference time: CPU s, 1 thread, per pass over the evaluation set ([measure] clock)"
    assert format_table(study, [cpu]).splitlines()[-1] == note  # the run's table says it too
    assert note not in format_table(study, [wall])


def test_the_monitor_takes_the_clock_and_says_which_measured(two_threads):
    with optuna_energy.EnergyMonitor(device="cpu", meter="estimate", idle_seconds=0) as monitor:
        inputs = torch.rand(8, 4)
        measured = monitor.measure_inference(nn.Linear(4, 2), inputs, batch_size=8, warmup_batches=0,
                                             min_window_seconds=0.0, windows=1)
        timed_on_wall = monitor.measure_inference(nn.Linear(4, 2), inputs, batch_size=8,
                                                  warmup_batches=0, min_window_seconds=0.0,
                                                  windows=1, clock="wall")
        with pytest.raises(ValueError, match=r"^clock is 'gpu'; allowed: auto, wall, cpu$"):
            monitor.measure_inference(nn.Linear(4, 2), inputs, clock="gpu")
    assert (measured.clock, measured.fields["inference_clock"]) == ("cpu", "cpu")
    assert (timed_on_wall.clock, timed_on_wall.fields["inference_clock"]) == ("wall", "wall")
    assert torch.get_num_threads() == two_threads


def test_an_unknown_clock_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match=r"^\[measure\] clock is 'gpu'; allowed: auto, wall, cpu$"):
        load_config({"measure": {"clock": "gpu"}})
    assert load_config(None).measure.clock == "auto"


def test_the_cpu_clock_on_a_gpu_study_fails_before_any_trial(tmp_path, monkeypatch):
    monkeypatch.setattr(study_module, "resolve_device", lambda name: torch.device("cuda:0"))
    config = tiny_config(tmp_path, n_trials=1)
    config["measure"] = {**config["measure"], "clock": "cpu"}
    with pytest.raises(ConfigError, match=r"^\[measure\] clock 'cpu' counts the host thread's CPU time"):
        optuna_energy.run_study(config, show_progress_bar=False)


def test_a_study_keeps_the_clock_that_timed_its_first_trial(tmp_path):
    config = tiny_config(tmp_path, n_trials=1)
    study = optuna_energy.run_study(config, show_progress_bar=False)
    assert record.TrialRecord.of(study.trials[0]).inference_clock == "cpu"  # auto, on the CPU
    on_the_wall = {**config, "measure": {**config["measure"], "clock": "wall"}}
    with pytest.raises(ConfigError, match=r"^study 'tiny' timed its trials on the cpu clock and this run "
                                          r"would time them on the wall clock \(cpu\); a study keeps one clock"):
        optuna_energy.run_study(on_the_wall, n_trials=2, show_progress_bar=False)
    resumed = optuna_energy.run_study(config, n_trials=2, show_progress_bar=False)
    assert record.TrialRecord.of(resumed.trials[1]).inference_clock == "cpu"


def test_a_study_timed_before_the_clock_was_recorded_goes_on_on_the_wall_clock(tmp_path):
    config = tiny_config(tmp_path, n_trials=1)
    study = optuna_energy.run_study(config, show_progress_bar=False)
    first = study.trials[0]
    old = optuna.create_study(storage=config["study"]["storage"], study_name="old",
                              directions=study.directions)
    old.add_trial(optuna.trial.create_trial(  # what an older version stored: no inference_clock
        values=first.values, params=first.params, distributions=first.distributions,
        user_attrs={key: value for key, value in first.user_attrs.items() if key != "inference_clock"}))
    renamed = {**config, "study": {**config["study"], "name": "old"}}
    with pytest.raises(ConfigError, match=r"timed its trials on the wall clock .* set \[measure\] clock = 'wall'"):
        optuna_energy.run_study(renamed, n_trials=2, show_progress_bar=False)
    on_the_wall = {**renamed, "measure": {**renamed["measure"], "clock": "wall"}}
    resumed = optuna_energy.run_study(on_the_wall, n_trials=2, show_progress_bar=False)
    assert record.TrialRecord.of(resumed.trials[1]).inference_clock == "wall"
