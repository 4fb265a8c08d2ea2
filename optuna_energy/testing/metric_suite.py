"""The conformance suite of a metric (``optuna_energy.metrics.Metric``)."""

from __future__ import annotations

import math

import optuna
import pytest
import torch
from torch import nn

from optuna_energy.config import load_config
from optuna_energy.host.meters import EstimateMeter
from optuna_energy.measuring.costs import ModelUnderTest
from optuna_energy.measuring.measure import Workload, measure_passes
from optuna_energy.metrics import ACCURACY, METRICS, Metric
from optuna_energy.model.arch import ArchProfile
from optuna_energy.store import record


def tiny_model_under_test() -> ModelUnderTest:
    """A small CPU model on 20 inputs of shape (1, 8, 8), measured in two windows by the
    analytical estimate: what a metric's ``measure`` and ``spread`` get, in well under a second."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10)).eval()
    inputs = torch.rand(20, 1, 8, 8)
    batches = list(inputs.split(10))
    params = sum(parameter.numel() for parameter in model.parameters())
    workload = Workload(model=model, device=torch.device("cpu"), run_batch=lambda index: model(batches[index]),
                        batches=len(batches), inputs_per_pass=len(inputs), batch_size=10,
                        costs=ArchProfile(params=params, macs=4 * 9 * 64 + 256 * 10, activations=256 * 3 + 10))
    with torch.inference_mode():
        inference = measure_passes(workload, warmup_batches=1, min_window_seconds=0.01, windows=2,
                                   meter=EstimateMeter())
    return ModelUnderTest(workload=workload, inference=inference, idle_watts=0.0)


class MetricSuite:
    """Checks every metric must pass. Subclass it as ``Test<YourMetric>`` and give it a ``metric``
    fixture returning the registered :class:`~optuna_energy.metrics.Metric`."""

    @pytest.fixture
    def under_test(self) -> ModelUnderTest:
        return tiny_model_under_test()

    def test_it_is_registered_with_a_valid_direction(self, metric: Metric) -> None:
        assert METRICS.get(metric.name) is metric, \
            f"metric {metric.name!r} is not registered: optuna_energy.metrics.register it"
        assert metric.direction in ("maximize", "minimize")
        assert metric.is_cost == (metric.name != ACCURACY), "accuracy is the one maximised metric"
        if metric.is_cost:
            config = load_config({"study": {"objectives": [ACCURACY, metric.name]}})
            assert config.directions == ["maximize", "minimize"]

    def test_a_cost_measures_a_finite_number(self, metric: Metric, under_test: ModelUnderTest) -> None:
        if not metric.is_cost:  # accuracy comes from training, never from the untrained model
            assert metric.measure is None
            return
        assert metric.measure is not None, f"the cost {metric.name!r} needs measure="
        value = metric.measure(under_test)
        assert isinstance(value, (int, float)) and not isinstance(value, bool), type(value)
        assert math.isfinite(value) and value >= 0, value

    def test_its_field_round_trips_through_the_trial_record(self, metric: Metric,
                                                            under_test: ModelUnderTest) -> None:
        value = metric.measure(under_test) if metric.measure is not None else 0.75
        study = optuna.create_study()
        trial = study.ask()
        record.write(trial, **{metric.field: value})
        study.tell(trial, 0.0)
        assert record.TrialRecord.of(study.trials[0]).value(metric.name) == pytest.approx(float(value))

    def test_its_spread_if_any_is_a_fraction_that_round_trips(self, metric: Metric,
                                                              under_test: ModelUnderTest) -> None:
        if metric.spread is None:  # exact, or measured once: its spread reads as 0
            assert metric.spread_field is None
            return
        assert metric.measure is not None and metric.spread_field is not None
        value, spread = metric.measure(under_test), metric.spread(under_test)
        assert isinstance(spread, float) and math.isfinite(spread) and spread >= 0, spread
        study = optuna.create_study()
        trial = study.ask()
        record.write(trial, **{metric.field: value, metric.spread_field: spread})
        study.tell(trial, 0.0)
        stored = record.TrialRecord.of(study.trials[0]).value_with_spread(metric.name)
        assert stored == pytest.approx((float(value), spread))

    def test_its_format_renders_values_and_nan(self, metric: Metric, under_test: ModelUnderTest) -> None:
        value = metric.measure(under_test) if metric.measure is not None else 0.75
        for shown in (metric.format(value), metric.format(math.nan)):
            assert isinstance(shown, str) and shown and "\n" not in shown, repr(shown)
        assert metric.format(math.nan) == "n/a"

    def test_its_limit_is_a_constraints_key(self, metric: Metric) -> None:
        if metric.limit is None:  # no [constraints] key bounds it
            assert not any(key.endswith(f"_{metric.name}") for key in vars(load_config({}).constraints))
            return
        assert getattr(load_config({"constraints": {metric.limit: 1.0}}).constraints, metric.limit) == 1.0
        outside = 2.0 if metric.is_cost else 0.5  # a cost's limit is a ceiling, accuracy's a floor
        assert metric.violation(outside, 1.0) > 0 and metric.violation(1.0, 1.0) == 0
