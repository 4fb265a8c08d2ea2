"""One trial: sample an architecture, train it, measure it, return the objective values.

Everything is stored on the trial through :mod:`optuna_energy.record`; the objective values
and the constraints come from the metric registry (:mod:`optuna_energy.metrics`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import optuna
import torch
from torch import nn

from optuna_energy import record
from optuna_energy.arch import build_model, profile, summarize
from optuna_energy.config import StudyConfig
from optuna_energy.data import DeviceData
from optuna_energy.energy import EnergyMeter, Work
from optuna_energy.measure import (
    ModelUnderTest,
    energy_per_inference,
    measure_inference,
    metered,
)
from optuna_energy.metrics import METRICS
from optuna_energy.space import sample_architecture, sample_training
from optuna_energy.train import (
    TrialFailure,
    evaluate,
    precision_context,
    train,
    trial_failures,
)

LEARNED = "learned"
"""The constraint every trial carries: its accuracy must beat always answering the most frequent
class by at least one evaluation image. A model that does not is no trade-off at any budget,
and without the constraint the cheapest chance-level networks fill every Pareto front and every
sampler's idea of a good trial."""

TrainedModelHook = Callable[[optuna.Trial, nn.Module], None]
"""Called with each trained model before its trial ends (the dashboard's artifact upload)."""


def trial_seed(config: StudyConfig, number: int) -> int:
    """The seed of a trial's weights and batches; export uses it to retrain the same model."""
    return number if config.study.seed is None else config.study.seed + number


class Objective:
    """The callable handed to ``study.optimize``; returns values in ``config.study.objectives`` order."""

    def __init__(self, config: StudyConfig, data: DeviceData, *, meter: EnergyMeter,
                 idle_watts: float = 0.0, on_trained: TrainedModelHook | None = None) -> None:
        self.config = config
        self.data = data
        self.meter = meter
        self.idle_watts = idle_watts
        self.on_trained = on_trained

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        try:
            return self._run(trial)
        except TrialFailure as failure:
            record.write(trial, failure_reason=failure.reason)
            raise

    def _run(self, trial: optuna.Trial) -> tuple[float, ...]:
        config, data = self.config, self.data
        training = sample_training(trial, config.training)
        sampled = sample_architecture(trial, config.space, data.input_shape)
        costs = profile(sampled.spec, data.input_shape, data.n_classes)
        record.write(trial, architecture=sampled.spec, architecture_summary=summarize(sampled.spec),
                     skipped_slots=sampled.skipped_slots, params=costs.params, macs=costs.macs,
                     training=dataclasses.asdict(training), device=str(data.device),
                     eval_split=data.eval_split, precision=config.training.precision)

        seed = trial_seed(config, trial.number)
        torch.manual_seed(seed)
        with trial_failures():
            model = build_model(sampled.spec, data.input_shape, data.n_classes).to(
                data.device, memory_format=data.memory_format)
        precision = config.training.precision
        result, train_window = metered(
            self.meter, "training", data.device,
            lambda: train(model, data, training, epochs=config.training.epochs, seed=seed,
                          precision=precision),
            work=lambda trained: Work(macs=costs.macs, params=costs.params,
                                      activations=costs.activations, batch_size=training.batch_size,
                                      images=trained.images, training=True))
        measure_start = time.perf_counter()
        accuracy = evaluate(model, data, precision=precision)
        with trial_failures():
            inference = measure_inference(
                model, data, batch_size=config.measure.batch_size,
                warmup_batches=config.measure.warmup_batches,
                min_window_seconds=config.measure.min_window_seconds, meter=self.meter,
                costs=costs, autocast=precision_context(data.device, precision))
        gross, net = energy_per_inference(inference, idle_watts=self.idle_watts)
        measured = {
            "accuracy": accuracy,
            "inference_time_s": inference.seconds_per_pass,
            "energy_source": self.meter.source,
            "energy_per_inference_j": net if config.measure.energy == "net" else gross,
            "energy_gross_j": gross,
            "energy_net_j": net,
            "energy_window_s": inference.window_seconds,
            "energy_window_images": inference.images,
            "train_energy_j": train_window.joules,
            "train_window_s": train_window.seconds,
            "train_seconds": result.seconds,
            "idle_watts": self.idle_watts,
        }
        under_test = ModelUnderTest(model=model, data=data, batch_size=config.measure.batch_size,
                                    costs=costs, precision=precision)
        with trial_failures():
            measured |= {entry.field: entry.measure(under_test)
                         for entry in METRICS.values() if entry.measure is not None}
        measured["measure_seconds"] = time.perf_counter() - measure_start
        measured["meter"] = self.meter.info()
        record.write(trial, **measured)
        by_field = {**measured, "params": costs.params}
        self._set_constraints(trial, by_field)
        if self.on_trained is not None:
            self.on_trained(trial, model)
        return tuple(float(by_field[METRICS[name].field]) for name in config.study.objectives)

    def _set_constraints(self, trial: optuna.Trial, measured: dict[str, float]) -> None:
        """Optuna's constraint API, mirrored in the trial record where optuna-dashboard shows it."""
        limits = self.config.constraints
        above_chance = self.data.chance_accuracy + 1 / len(self.data.eval_y)
        violations = {LEARNED: above_chance - measured["accuracy"]}
        for name, entry in METRICS.items():
            limit = getattr(limits, entry.limit) if entry.limit else None
            if limit is not None:
                violations[name] = float(measured[entry.field] - limit)
        for key, violation in violations.items():
            trial.set_constraint(key, violation)
        record.write(trial, constraints=violations, feasible=all(v <= 0 for v in violations.values()))
