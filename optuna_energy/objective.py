"""One trial: sample an architecture, train it, measure it, return the objective values.

Everything a later reader needs is stored as user attributes, so that the database alone tells
what each trial was and how it was measured: the architecture spec (rebuildable with
``build_model``), its summary, parameters, MACs, the training hyperparameters, accuracy,
inference time, energy (gross and net, its source and window) and the training energy.
"""

from __future__ import annotations

import dataclasses
import time

import optuna
import torch

from optuna_energy.arch import build_model, profile, summarize
from optuna_energy.config import StudyConfig
from optuna_energy.dashboard import upload_trial_artifacts
from optuna_energy.data import DeviceData
from optuna_energy.energy import EnergyMeter, estimate
from optuna_energy.measure import measure_inference, metered
from optuna_energy.space import sample_architecture, sample_training
from optuna_energy.train import TrialFailure, evaluate, precision_context, train, trial_failures

FAILURE_REASON = "failure_reason"

LEARNED = "learned"
"""The constraint every trial carries: its accuracy must beat always answering the most frequent
class by at least one evaluation image. A model that does not is no trade-off at any budget,
and without the constraint the cheapest chance-level networks fill every Pareto front and every
sampler's idea of a good trial."""

_CONSTRAINTS = {  # constraint key -> (config limit, measured user attribute)
    "params": ("max_params", "params"),
    "energy": ("max_energy", "energy_per_inference_j"),
    "inference_time": ("max_inference_time", "inference_time_s"),
}


def trial_seed(config: StudyConfig, number: int) -> int:
    """The seed of a trial's weights and batches; export uses it to retrain the same model."""
    return number if config.study.seed is None else config.study.seed + number


class Objective:
    """The callable handed to ``study.optimize``; returns values in ``config.study.objectives`` order."""

    def __init__(self, config: StudyConfig, data: DeviceData, *, meter: EnergyMeter | None = None,
                 idle_watts: float = 0.0) -> None:
        self.config = config
        self.data = data
        self.meter = meter
        self.idle_watts = idle_watts

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        try:
            return self._run(trial)
        except TrialFailure as failure:
            trial.set_user_attr(FAILURE_REASON, failure.reason)
            raise

    def _run(self, trial: optuna.Trial) -> tuple[float, ...]:
        config, data = self.config, self.data
        training = sample_training(trial, config.training)
        sampled = sample_architecture(trial, config.space, data.input_shape)
        costs = profile(sampled.spec, data.input_shape, data.n_classes)
        trial.set_user_attr("architecture", sampled.spec)
        trial.set_user_attr("architecture_summary", summarize(sampled.spec))
        trial.set_user_attr("skipped_slots", sampled.skipped_slots)
        trial.set_user_attr("params", costs.params)
        trial.set_user_attr("macs", costs.macs)
        trial.set_user_attr("training", dataclasses.asdict(training))
        trial.set_user_attr("device", str(data.device))
        trial.set_user_attr("eval_split", data.eval_split)
        trial.set_user_attr("precision", config.training.precision)

        seed = trial_seed(config, trial.number)
        torch.manual_seed(seed)
        with trial_failures():
            model = build_model(sampled.spec, data.input_shape, data.n_classes).to(
                data.device, memory_format=data.memory_format)
        precision = config.training.precision
        result, train_window = metered(
            self.meter, "training", data.device,
            lambda: train(model, data, training, epochs=config.training.epochs, seed=seed,
                          precision=precision))
        if train_window is not None:
            train_joules, train_window_s = train_window.joules, train_window.seconds
        else:
            train_window_s = result.seconds
            train_joules = estimate.training_joules(
                macs=costs.macs, params=costs.params, activations=costs.activations,
                batch_size=training.batch_size, images=result.images)
        measure_start = time.perf_counter()
        accuracy = evaluate(model, data, precision=precision)
        with trial_failures():
            inference = measure_inference(
                model, data, batch_size=config.measure.batch_size,
                warmup_batches=config.measure.warmup_batches,
                min_window_seconds=config.measure.min_window_seconds, meter=self.meter,
                autocast=precision_context(data.device, precision))

        if inference.window_joules is None:
            source = estimate.SOURCE
            gross = net = estimate.inference_joules(
                macs=costs.macs, params=costs.params, activations=costs.activations,
                batch_size=config.measure.batch_size)
        else:
            source = self.meter.source
            gross = inference.window_joules / inference.images
            idle = self.idle_watts * inference.window_seconds
            net = max(inference.window_joules - idle, 0.0) / inference.images
        energy = net if config.measure.energy == "net" else gross
        measure_seconds = time.perf_counter() - measure_start

        attrs = {
            "accuracy": accuracy,
            "inference_time_s": inference.seconds_per_pass,
            "energy_source": source,
            "energy_per_inference_j": energy,
            "energy_gross_j": gross,
            "energy_net_j": net,
            "energy_window_s": inference.window_seconds,
            "energy_window_images": inference.images,
            "train_energy_j": train_joules,
            "train_window_s": train_window_s,
            "train_seconds": result.seconds,
            "measure_seconds": measure_seconds,
            "idle_watts": self.idle_watts,
        }
        if self.meter is not None:
            attrs["meter"] = self.meter.info()
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        self._set_constraints(trial, {**attrs, "params": costs.params})
        if config.study.artifact_dir is not None:
            upload_trial_artifacts(trial, model, config.study.artifact_dir,
                                   keep_weights=config.study.keep_weights)

        values = {"accuracy": accuracy, "inference_time": inference.seconds_per_pass,
                  "params": float(costs.params), "energy": energy}
        return tuple(values[name] for name in config.study.objectives)

    def _set_constraints(self, trial: optuna.Trial, measured: dict[str, float]) -> None:
        """Optuna's constraint API, mirrored in user attributes where optuna-dashboard shows them."""
        limits = self.config.constraints
        above_chance = self.data.chance_accuracy + 1 / len(self.data.eval_y)
        violations = {LEARNED: above_chance - measured["accuracy"]}
        for key, (limit_name, attr) in _CONSTRAINTS.items():
            limit = getattr(limits, limit_name)
            if limit is not None:
                violations[key] = float(measured[attr] - limit)
        for key, violation in violations.items():
            trial.set_constraint(key, violation)
        trial.set_user_attr("constraints", violations)
        trial.set_user_attr("feasible", all(value <= 0 for value in violations.values()))
