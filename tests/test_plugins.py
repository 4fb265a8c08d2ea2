"""Plug-ins from outside the package: a metric and a meter with a setting of its own are each one
registry entry, work in ``run``, in ``report`` and in your own objective, and pass the
conformance suites (``optuna_energy.testing``)."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import optuna_energy
from optuna_energy import cli, metrics
from optuna_energy.config import ConfigError, load_config
from optuna_energy.host import meters
from optuna_energy.host.meters import EnergyMeter, MeterEntry, MeterRequest
from optuna_energy.measuring.costs import ModelUnderTest
from optuna_energy.metrics import Metric
from optuna_energy.reading.report import table_csv, table_text
from optuna_energy.testing import MeterSuite, MetricSuite
from tests.helpers import tiny_config


def count_flops(under_test: ModelUnderTest) -> float:
    """Floating-point operations of one input's forward pass."""
    with FlopCounterMode(display=False) as counter:
        under_test.forward()
    return counter.get_total_flops() / under_test.workload.batch_size


FLOPS = Metric("flops", "minimize", "flops", "FLOPs", "FLOPs per input", lambda value: f"{value:,.0f}"
               if value == value else "n/a", limit="max_flops", measure=count_flops)


@pytest.fixture
def flops() -> Iterator[Metric]:
    metrics.register(FLOPS)
    yield FLOPS
    metrics.unregister(FLOPS.name)


class TestFlops(MetricSuite):
    @pytest.fixture
    def metric(self, flops: Metric) -> Metric:
        return flops


def test_a_registered_metric_is_measured_recorded_and_reported_by_run(flops, tmp_path, capsys):
    config = load_config(tiny_config(tmp_path, learns=True, objectives=["accuracy", "flops"]))
    study = optuna_energy.run_study(config, show_progress_bar=False)
    for trial in study.trials:
        assert trial.values[1] == trial.user_attrs["flops"] > 0
    assert cli.main(["report", "--storage", config.study.storage, "--study-name", "tiny",
                     "--out", str(tmp_path / "report")]) == 0
    assert "FLOPs" in capsys.readouterr().out
    assert "flops" in (tmp_path / "report" / "table.csv").read_text().splitlines()[0].split(",")


def test_a_registered_metric_is_recorded_from_your_own_objective(flops):
    monitor = optuna_energy.EnergyMonitor(device="cpu", meter="estimate", idle_seconds=0)
    study = optuna_energy.create_study(objectives=["accuracy", "flops"])
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    inference = monitor.measure_inference(model, torch.rand(50, 1, 8, 8), batch_size=25, min_window_seconds=0.01)
    trial = study.ask()
    values = optuna_energy.record_measurement(trial, inference, accuracy=0.5)
    assert values == (0.5, 2 * 64 * 10) == (0.5, trial.user_attrs["flops"])
    study.tell(trial, values)
    report = optuna_energy.build_report(study)
    assert report.rows[0].metrics["flops"] == 1280
    assert "FLOPs" in table_text(report) and "1,280" in table_text(report) and ",1280,0.5," in table_csv(report)


def test_a_registered_metric_is_a_config_objective_and_constraint_until_removed(flops):
    config = load_config({"study": {"objectives": ["accuracy", "flops"]}, "constraints": {"max_flops": 1e6}})
    assert config.directions == ["maximize", "minimize"] and config.constraints.max_flops == 1e6
    metrics.unregister("flops")
    with pytest.raises(ConfigError, match="objectives entry is 'flops'; allowed: accuracy, inference_time"):
        load_config({"study": {"objectives": ["accuracy", "flops"]}})
    metrics.register(FLOPS)


@pytest.mark.parametrize(("entry", "message"), [
    (FLOPS, "name 'flops' is taken"),
    (dataclasses.replace(FLOPS, name="flops2"), "field 'flops' is taken by metric 'flops'"),
    (dataclasses.replace(FLOPS, name="speed", direction="maximize"), "direction must be 'minimize'"),
    (dataclasses.replace(FLOPS, name="size", field="size", limit=None, measure=None), "needs measure="),
])
def test_a_metric_that_cannot_be_told_apart_or_measured_is_refused(flops, entry, message):
    with pytest.raises(ValueError, match=message):
        metrics.register(entry)


def test_built_in_metrics_cannot_be_removed():
    with pytest.raises(ValueError, match="'energy' is not a registered plug-in metric; registered: none"):
        metrics.unregister("energy")


def test_an_entry_point_registers_its_metric(monkeypatch):
    point = importlib.metadata.EntryPoint(name="flops", value="tests.test_plugins:FLOPS",
                                          group=metrics.ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [point] if group == metrics.ENTRY_POINT_GROUP else [])
    metrics.register_entry_points()
    try:
        assert metrics.METRICS["flops"] is FLOPS
        with pytest.raises(ValueError, match=r"^entry point 'flops' \(tests.test_plugins:FLOPS\): metric 'flops'"):
            metrics.register_entry_points()
    finally:
        metrics.unregister("flops")


@dataclasses.dataclass(frozen=True)
class ClockSettings:
    """A meter's setting of its own: the power it assumes."""

    table: ClassVar[str] = "clock"
    watts: float = 10.0

    def __post_init__(self) -> None:
        if not self.watts > 0:
            raise ValueError(f"watts must be > 0, got {self.watts!r}")


class ClockMeter(EnergyMeter):
    """Constant power times the clock: a counter any machine has."""

    source = "clock"

    def __init__(self, settings: ClockSettings) -> None:
        super().__init__()
        self.watts, self._start = settings.watts, time.perf_counter()

    def total_joules(self) -> float:
        return self.watts * (time.perf_counter() - self._start)

    def info(self) -> dict[str, Any]:
        return {"watts": self.watts}


@dataclasses.dataclass(frozen=True)
class OtherClockSettings:
    """Another meter's settings claiming the same table."""

    table: ClassVar[str] = "clock"
    hertz: float = 1.0


def _open_clock(request: MeterRequest) -> EnergyMeter:
    return ClockMeter(request.settings)


@pytest.fixture
def clock() -> Iterator[None]:
    meters.register("clock", MeterEntry(("cpu",), _open_clock, ClockSettings))
    yield
    del meters.METERS["clock"]


class TestClockMeter(MeterSuite):
    @pytest.fixture
    def meter(self, clock: None) -> EnergyMeter:
        return ClockMeter(ClockSettings())

    @pytest.fixture
    def settings(self, clock: None) -> ClockSettings:
        return ClockSettings(watts=42.0)


def test_a_registered_meter_gets_its_settings_from_the_config_in_run(clock, tmp_path):
    raw = tiny_config(tmp_path, n_trials=1)
    raw["measure"] |= {"meter": "clock", "clock": {"watts": 50}}
    study = optuna_energy.run_study(load_config(raw), show_progress_bar=False)
    attrs = study.trials[0].user_attrs
    assert attrs["energy_source"] == "clock" and attrs["meter"] == {"watts": 50.0}
    assert attrs["energy_gross_j"] * attrs["energy_window_images"] == pytest.approx(
        50.0 * attrs["energy_window_s"], rel=1e-3)  # joules and seconds are read a moment apart


def test_a_registered_meter_gets_its_settings_from_energy_monitor_keywords(clock):
    with optuna_energy.EnergyMonitor(device="cpu", meter="clock", idle_seconds=0, watts=40) as monitor:
        assert monitor.source == "clock" and monitor.meter.info() == {"watts": 40}
    with pytest.raises(ValueError, match="no energy meter has a setting 'wats'; allowed: "):
        optuna_energy.EnergyMonitor(device="cpu", meter="clock", wats=40)


def test_a_bad_meter_setting_is_a_one_line_config_error(clock):
    with pytest.raises(ConfigError, match=r"^\[measure.clock\] watts must be > 0, got -1.0$"):
        load_config({"measure": {"clock": {"watts": -1}}})
    with pytest.raises(ConfigError, match=r"^\[measure.clock\] watts must be float, got 'hot'$"):
        load_config({"measure": {"clock": {"watts": "hot"}}})


@pytest.mark.parametrize(("source", "entry", "message"), [
    ("rapl", MeterEntry(("cpu",), _open_clock), "'rapl' is registered already"),
    ("clock2", MeterEntry(("cpu",), _open_clock, dataclasses.make_dataclass("Loose", [("watts", float, 1.0)])),
     "must be a frozen dataclass with a 'table'"),
    ("clock2", MeterEntry(("cpu",), _open_clock, OtherClockSettings),
     "table 'clock' of OtherClockSettings is taken by ClockSettings"),
])
def test_a_meter_that_cannot_be_told_apart_is_refused(clock, source, entry, message):
    with pytest.raises(ValueError, match=message):
        meters.register(source, entry)
